//! The server side of one HTTP/2 connection (RFC 9113), sans-IO in the
//! manner of Python's hyper-h2: `receive` takes client bytes and reports
//! `Event`s, `respond`/`send`/`end_stream` queue the answers, `write_to`
//! moves the bytes to send into the socket's `Output`. It owns no socket
//! and reads no clock (the caller passes `now`). This file holds the
//! connection state and the frame dispatch: the preface (§3.4), SETTINGS,
//! PING, RST_STREAM, WINDOW_UPDATE, GOAWAY, connection errors, and the
//! budgets against floods and resets. `incoming.rs` takes requests in
//! (header blocks, bodies, receive flow control), `outgoing.rs` sends the
//! answers (responses, the DATA round robin, caps and timers); `stream.rs`
//! is one stream, `request.rs` the §8.3 checks, `frame.rs` the wire
//! format, `limits.rs` the bounds, `hpack.rs` header compression.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use crate::h2::frame::{self, setting, ErrorCode, Frame, FrameError, Params, MAX_WINDOW};
use crate::h2::hpack;
use crate::h2::incoming::Block;
use crate::h2::limits::Budget;
use crate::h2::stream::Stream;

pub use crate::h2::limits::Config;
pub use crate::h2::outgoing::SendError;

/// What the caller learns from `receive` and `on_timer`.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// A complete request: headers checked (§8.2, §8.3), body whole,
    /// END_STREAM seen. The caller answers with `respond`.
    Request {
        stream: u32,
        method: String,
        /// The raw `:path`, query included.
        path: String,
        authority: Option<String>,
        scheme: String,
        /// Regular fields, lowercase names, cookie crumbs joined.
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// A request we refused before it reached the service; the caller
    /// answers it with `status` through `respond` (413: body over
    /// `max_request_body`; 431: header list over `max_header_list_size`;
    /// 405: CONNECT). Request body bytes still coming are dropped.
    Refused { stream: u32, status: u16 },
    /// A stream ended by the client (RST_STREAM) or by us (a stream error
    /// the client caused, a slow reader): the caller forgets its listener.
    /// Also reported for streams the caller never saw (a refused or
    /// malformed request), so it can count resets by cause.
    StreamClosed { stream: u32, reason: Reason },
    /// The connection failed (we sent GOAWAY with an error, or it stalled):
    /// the caller writes what `write_to` gives and closes. A graceful end
    /// shows as `is_closed()`.
    Closed { reason: String },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The client sent RST_STREAM with this code.
    ClientReset(ErrorCode),
    /// Its queue passed the hard cap or stayed above the soft cap.
    SlowReader,
    /// Over SETTINGS_MAX_CONCURRENT_STREAMS (REFUSED_STREAM).
    Refused,
    /// A stream error the client caused (§5.4.2): a malformed request is
    /// PROTOCOL_ERROR.
    Error(ErrorCode),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Waiting for the client preface (§3.4).
    Preface,
    /// Preface read; the next frame must be SETTINGS.
    Settings,
    Open,
    /// A connection error: GOAWAY queued, input ignored.
    Failed,
}

pub struct Connection {
    pub(crate) cfg: Config,
    pub(crate) phase: Phase,
    pub(crate) decoder: hpack::Decoder,
    pub(crate) streams: HashMap<u32, Stream>,
    /// Streams with output waiting, in round-robin order.
    pub(crate) ring: VecDeque<u32>,
    /// The highest client stream id seen: lower ids not in `streams` are
    /// closed, higher ones idle (§5.1.1). Nothing else of a closed stream
    /// is kept.
    pub(crate) highest: u32,
    pub(crate) block: Option<Block>,
    /// Control frames to send before any stream's frames.
    pub(crate) control: Vec<u8>,
    pub(crate) conn_recv_window: i64,
    /// DATA bytes received and not yet granted back.
    pub(crate) conn_consumed: i64,
    pub(crate) conn_send_window: i64,
    pub(crate) peer_initial_window: u32,
    pub(crate) peer_max_frame: u32,
    pub(crate) settings_acked: bool,
    /// The last stream id of the GOAWAY we sent.
    pub(crate) goaway_sent: Option<u32>,
    /// The highest stream id when the client sent GOAWAY: it opens no
    /// more, and any it does are ignored.
    pub(crate) goaway_received: Option<u32>,
    resets: Budget,
    control_frames: Budget,
    /// Since when the connection window has been shut with data waiting.
    pub(crate) stall_since: Option<Instant>,
}

pub(crate) fn conn_err(code: ErrorCode, why: &'static str) -> FrameError {
    FrameError::Connection { code, why }
}

pub(crate) fn stream_err(stream: u32, code: ErrorCode, why: &'static str) -> FrameError {
    FrameError::Stream { stream, code, why }
}

impl Connection {
    /// A connection whose first output is our SETTINGS (§3.4) and, when
    /// `connection_window` is larger than the default, a WINDOW_UPDATE.
    pub fn new(cfg: Config, now: Instant) -> Connection {
        let mut control = Vec::new();
        let mut params = vec![
            (setting::ENABLE_PUSH, 0),
            (setting::MAX_CONCURRENT_STREAMS, cfg.max_concurrent_streams),
            (
                setting::INITIAL_WINDOW_SIZE,
                cfg.initial_window_size.min(MAX_WINDOW),
            ),
            (setting::MAX_HEADER_LIST_SIZE, cfg.max_header_list_size),
        ];
        if cfg.max_frame_size != frame::MIN_MAX_FRAME_SIZE {
            params.push((setting::MAX_FRAME_SIZE, cfg.max_frame_size));
        }
        let table = cfg.header_table_size.max(4096);
        if table != 4096 {
            params.push((setting::HEADER_TABLE_SIZE, table));
        }
        frame::write_settings(&mut control, &params);
        let window = cfg
            .connection_window
            .clamp(frame::DEFAULT_WINDOW, MAX_WINDOW);
        if window > frame::DEFAULT_WINDOW {
            frame::write_window_update(&mut control, 0, window - frame::DEFAULT_WINDOW);
        }
        Connection {
            decoder: hpack::Decoder::new(table as usize),
            phase: Phase::Preface,
            streams: HashMap::new(),
            ring: VecDeque::new(),
            highest: 0,
            block: None,
            control,
            conn_recv_window: i64::from(window),
            conn_consumed: 0,
            conn_send_window: i64::from(frame::DEFAULT_WINDOW),
            peer_initial_window: frame::DEFAULT_WINDOW,
            peer_max_frame: frame::MIN_MAX_FRAME_SIZE,
            settings_acked: false,
            goaway_sent: None,
            goaway_received: None,
            resets: Budget::new(cfg.max_resets, cfg.reset_interval, now),
            control_frames: Budget::new(cfg.max_control_frames, cfg.control_interval, now),
            stall_since: None,
            cfg,
        }
    }

    /// The most unconsumed input the caller ever needs to hold: one frame
    /// at our max frame size (or the preface).
    pub fn input_limit(&self) -> usize {
        frame::HEADER_LEN + self.cfg.max_frame_size as usize
    }

    /// Feeds client bytes (the preface first) and returns how many were
    /// used: whole frames only, so the caller keeps the rest (at most one
    /// partial frame, `input_limit()`) and feeds it again with more. After
    /// a connection error all input is taken and ignored.
    pub fn receive(&mut self, input: &[u8], now: Instant, events: &mut Vec<Event>) -> usize {
        if self.phase == Phase::Failed {
            return input.len();
        }
        let mut used = 0;
        if self.phase == Phase::Preface {
            let n = input.len().min(frame::PREFACE.len());
            if input.get(..n) != frame::PREFACE.get(..n) {
                self.fail(
                    ErrorCode::ProtocolError,
                    "invalid connection preface",
                    events,
                );
                return input.len();
            }
            if n < frame::PREFACE.len() {
                return 0;
            }
            used = n;
            self.phase = Phase::Settings;
        }
        while self.phase != Phase::Failed {
            let rest = input.get(used..).unwrap_or(&[]);
            let result = match frame::decode(rest, self.cfg.max_frame_size) {
                Ok(None) => break,
                Ok(Some((f, n))) => {
                    used += n;
                    self.on_frame(f, now, events)
                }
                Err(e) => {
                    // A stream error leaves its frame whole in `rest`.
                    used += frame::frame_len(rest).unwrap_or(rest.len());
                    Err(e)
                }
            };
            if let Err(e) = result {
                self.on_error(e, now, events);
            }
            if self.control.len() > self.cfg.max_control_output {
                self.fail(
                    ErrorCode::EnhanceYourCalm,
                    "control frames not read",
                    events,
                );
            }
        }
        self.update_stall(now);
        match self.phase {
            Phase::Failed => input.len(),
            _ => used,
        }
    }

    fn on_error(&mut self, e: FrameError, now: Instant, events: &mut Vec<Event>) {
        match e {
            FrameError::Connection { code, why } => self.fail(code, why, events),
            FrameError::Stream { stream, code, .. } => {
                let reason = match code {
                    ErrorCode::RefusedStream => Reason::Refused,
                    code => Reason::Error(code),
                };
                self.remove_stream(stream);
                frame::write_rst_stream(&mut self.control, stream, code);
                events.push(Event::StreamClosed { stream, reason });
                // MadeYouReset: resets the client provokes share its budget.
                if !self.resets.spend(now) {
                    self.fail(ErrorCode::EnhanceYourCalm, "too many stream errors", events);
                }
            }
        }
    }

    /// A connection error (§5.4.1): GOAWAY, drop every stream, ignore all
    /// further input.
    pub(crate) fn fail(&mut self, code: ErrorCode, why: &str, events: &mut Vec<Event>) {
        if self.phase == Phase::Failed {
            return;
        }
        self.phase = Phase::Failed;
        self.streams.clear();
        self.ring.clear();
        self.block = None;
        frame::write_goaway(&mut self.control, self.highest, code, why.as_bytes());
        events.push(Event::Closed {
            reason: format!("{code}: {why}"),
        });
    }

    pub(crate) fn remove_stream(&mut self, id: u32) {
        if let Some(st) = self.streams.remove(&id) {
            if st.in_ring {
                self.ring.retain(|&x| x != id);
            }
        }
    }

    /// A stream opened after a GOAWAY, ours (§6.8: the client may not have
    /// read it yet) or the client's: its frames are ignored.
    pub(crate) fn ignored(&self, id: u32) -> bool {
        let after = |goaway: Option<u32>| goaway.is_some_and(|last| id > last);
        after(self.goaway_sent) || after(self.goaway_received)
    }

    /// The receive window a new stream starts with: ours once the client
    /// acknowledged our SETTINGS, until then the larger of ours and the
    /// default it may still be using.
    pub(crate) fn recv_initial(&self) -> i64 {
        let ours = i64::from(self.cfg.initial_window_size.min(MAX_WINDOW));
        match self.settings_acked {
            true => ours,
            false => ours.max(i64::from(frame::DEFAULT_WINDOW)),
        }
    }

    fn on_frame(
        &mut self,
        f: Frame<'_>,
        now: Instant,
        events: &mut Vec<Event>,
    ) -> Result<(), FrameError> {
        if self.block.is_some() {
            // §6.10: nothing but CONTINUATION of the same stream may follow
            // a HEADERS without END_HEADERS.
            return match f {
                Frame::Continuation {
                    stream,
                    end_headers,
                    block,
                } if self.block.as_ref().is_some_and(|b| b.stream == stream) => {
                    self.on_continuation(block, end_headers, events)
                }
                _ => Err(conn_err(ErrorCode::ProtocolError, "expected CONTINUATION")),
            };
        }
        if self.phase == Phase::Settings {
            // §3.4: the preface ends with the client's SETTINGS.
            if !matches!(f, Frame::Settings { ack: false, .. }) {
                return Err(conn_err(
                    ErrorCode::ProtocolError,
                    "first frame not SETTINGS",
                ));
            }
            self.phase = Phase::Open;
        }
        match f {
            Frame::Data {
                stream,
                end_stream,
                data,
                flow_len,
            } => self.on_data(stream, end_stream, data, flow_len, now, events),
            Frame::Headers {
                stream,
                end_stream,
                end_headers,
                block,
                depends_on,
            } => self.on_headers(stream, end_stream, end_headers, block, depends_on, events),
            Frame::Priority { stream, depends_on } if stream == depends_on => Err(stream_err(
                stream,
                ErrorCode::ProtocolError,
                "stream depends on itself",
            )),
            Frame::Priority { .. } | Frame::Unknown { .. } => Ok(()),
            Frame::RstStream { stream, code } => {
                if stream > self.highest {
                    return Err(conn_err(
                        ErrorCode::ProtocolError,
                        "RST_STREAM on an idle stream",
                    ));
                }
                if self.streams.contains_key(&stream) {
                    self.remove_stream(stream);
                    events.push(Event::StreamClosed {
                        stream,
                        reason: Reason::ClientReset(code),
                    });
                }
                // Rapid reset (CVE-2023-44487).
                match self.resets.spend(now) {
                    true => Ok(()),
                    false => Err(conn_err(ErrorCode::EnhanceYourCalm, "too many resets")),
                }
            }
            Frame::Settings { ack, params } => self.on_settings(ack, params, now),
            Frame::PushPromise { .. } => Err(conn_err(
                ErrorCode::ProtocolError,
                "PUSH_PROMISE from a client",
            )),
            Frame::Ping { ack, data } => {
                if !ack {
                    self.spend_control(now, "PING flood")?;
                    frame::write_ping(&mut self.control, true, data);
                }
                Ok(())
            }
            Frame::GoAway { .. } => {
                // The client opens no more streams; those open finish. The
                // connection stays until the client closes it (it usually
                // does at once; the caller's idle timeout covers the rest).
                self.goaway_received.get_or_insert(self.highest);
                Ok(())
            }
            Frame::WindowUpdate { stream, increment } => self.on_window_update(stream, increment),
            Frame::Continuation { .. } => Err(conn_err(
                ErrorCode::ProtocolError,
                "CONTINUATION without HEADERS",
            )),
        }
    }

    pub(crate) fn spend_control(
        &mut self,
        now: Instant,
        why: &'static str,
    ) -> Result<(), FrameError> {
        match self.control_frames.spend(now) {
            true => Ok(()),
            false => Err(conn_err(ErrorCode::EnhanceYourCalm, why)),
        }
    }

    fn on_settings(
        &mut self,
        ack: bool,
        params: Params<'_>,
        now: Instant,
    ) -> Result<(), FrameError> {
        if ack {
            if !self.settings_acked {
                self.settings_acked = true;
                // Streams opened under the default window now have ours.
                let shrink = i64::from(frame::DEFAULT_WINDOW) - self.recv_initial();
                if shrink > 0 {
                    for st in self.streams.values_mut() {
                        st.recv_window -= shrink;
                    }
                }
            }
            return Ok(());
        }
        self.spend_control(now, "SETTINGS flood")?;
        let old = self.peer_initial_window;
        let (mut window, mut top) = (old, old);
        for (id, value) in params.iter() {
            match id {
                setting::INITIAL_WINDOW_SIZE => {
                    window = value;
                    top = top.max(value);
                }
                setting::MAX_FRAME_SIZE => self.peer_max_frame = value,
                // Our HPACK encoder is stateless (table size irrelevant),
                // we never push, start streams, or send large headers.
                _ => {}
            }
        }
        if top > old {
            // §6.9.2: a change that takes a stream window past 2^31-1, at
            // any step of the frame, is a FLOW_CONTROL_ERROR.
            let widest = self
                .streams
                .values()
                .map(|s| s.send_window)
                .max()
                .unwrap_or(0);
            if widest + i64::from(top - old) > i64::from(MAX_WINDOW) {
                return Err(conn_err(
                    ErrorCode::FlowControlError,
                    "INITIAL_WINDOW_SIZE overflows a window",
                ));
            }
        }
        let delta = i64::from(window) - i64::from(old);
        for st in self.streams.values_mut() {
            st.send_window += delta;
        }
        self.peer_initial_window = window;
        frame::write_settings_ack(&mut self.control);
        Ok(())
    }

    fn on_window_update(&mut self, id: u32, increment: u32) -> Result<(), FrameError> {
        let inc = i64::from(increment);
        if id == 0 {
            self.conn_send_window += inc;
            if self.conn_send_window > i64::from(MAX_WINDOW) {
                return Err(conn_err(
                    ErrorCode::FlowControlError,
                    "connection window over 2^31-1",
                ));
            }
            return Ok(());
        }
        if id > self.highest {
            return Err(conn_err(
                ErrorCode::ProtocolError,
                "WINDOW_UPDATE on an idle stream",
            ));
        }
        let Some(st) = self.streams.get_mut(&id) else {
            return Ok(()); // closed: a late update (§5.1)
        };
        st.send_window += inc;
        if st.send_window > i64::from(MAX_WINDOW) {
            return Err(stream_err(
                id,
                ErrorCode::FlowControlError,
                "stream window over 2^31-1",
            ));
        }
        Ok(())
    }

    /// Tracks how long the connection window has been shut with data
    /// waiting (`conn_stall_time`).
    pub(crate) fn update_stall(&mut self, now: Instant) {
        let waiting = self.conn_send_window <= 0
            && self
                .streams
                .values()
                .any(|s| !s.outbox.is_empty() && s.send_window > 0);
        match waiting {
            true => {
                self.stall_since.get_or_insert(now);
            }
            false => self.stall_since = None,
        }
    }
}

#[cfg(test)]
mod tests;
