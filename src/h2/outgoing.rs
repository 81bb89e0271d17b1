//! The sending half of an HTTP/2 connection (`conn::Connection`):
//! responses and SSE data queued per stream, `write_to` which moves
//! control frames first and then DATA in a round robin over the streams as
//! the windows allow (each stream's queued chunks leave behind one DATA
//! header, never copied), the slow-reader caps and their timers, and the
//! graceful GOAWAY. `conn.rs` holds the receiving half and the state.

use std::time::Instant;

use crate::conn::output::{Chunk, Output};
use crate::h2::conn::{Connection, Event, Phase, Reason};
use crate::h2::frame::{self, ErrorCode};
use crate::h2::hpack;
use crate::h2::request::is_connection_specific;

/// Why `send` took nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendError {
    /// No such open response: never opened, reset, or already ended.
    Closed,
    /// The chunk would take the stream's queue past `stream_hard_cap`: the
    /// stream was reset (RST_STREAM CANCEL); the caller forgets it and
    /// counts a slow reader.
    SlowReader,
}

impl Connection {
    /// Queues the response HEADERS (`:status` first, names lowercased,
    /// connection-specific fields dropped, §8.2.2) and `body` if any;
    /// `end_stream` ends the response after them. A body that ends the
    /// response gets a `content-length` unless `headers` has one. False if
    /// the stream is gone or was answered already.
    pub fn respond(
        &mut self,
        stream: u32,
        status: u16,
        headers: &[(&str, &str)],
        body: Option<Chunk>,
        end_stream: bool,
    ) -> bool {
        let Some(st) = self.streams.get_mut(&stream) else {
            return false;
        };
        if st.responded {
            return false;
        }
        let status = status.to_string();
        let names: Vec<String> = headers
            .iter()
            .map(|(n, _)| n.to_ascii_lowercase())
            .collect();
        let mut fields: Vec<(&[u8], &[u8])> = vec![(b":status", status.as_bytes())];
        for (name, (_, value)) in names.iter().zip(headers) {
            if !name.starts_with(':') && !is_connection_specific(name.as_bytes()) {
                fields.push((name.as_bytes(), value.as_bytes()));
            }
        }
        let length = body.as_ref().map(|b| b.bytes().len().to_string());
        if let Some(length) = &length {
            if end_stream && !names.iter().any(|n| n == "content-length") {
                fields.push((b"content-length", length.as_bytes()));
            }
        }
        let mut block = Vec::new();
        hpack::encode(&fields, &mut block);
        st.responded = true;
        st.headers = Some(block);
        if let Some(body) = body {
            st.outbox.push(body);
        }
        st.end_queued = end_stream;
        self.enqueue(stream);
        true
    }

    /// Queues `data` (an SSE event, shared by every listener) on an open
    /// response.
    pub fn send(&mut self, stream: u32, data: Chunk, now: Instant) -> Result<(), SendError> {
        let (hard, soft) = (self.cfg.stream_hard_cap, self.cfg.stream_soft_cap);
        let Some(st) = self.streams.get_mut(&stream) else {
            return Err(SendError::Closed);
        };
        if !st.responded || st.end_queued {
            return Err(SendError::Closed);
        }
        if st.outbox.len() + data.bytes().len() > hard {
            self.remove_stream(stream);
            frame::write_rst_stream(&mut self.control, stream, ErrorCode::Cancel);
            return Err(SendError::SlowReader);
        }
        st.outbox.push(data);
        if st.outbox.len() > soft {
            st.over_soft.get_or_insert(now);
        }
        if self.conn_send_window <= 0 && st.send_window > 0 {
            // Only the connection window holds it back (O(1): a broadcast
            // calls this for every stream).
            self.stall_since.get_or_insert(now);
        }
        self.enqueue(stream);
        Ok(())
    }

    /// Ends the response after what is queued (END_STREAM). False if there
    /// is no open response on `stream`.
    pub fn end_stream(&mut self, stream: u32) -> bool {
        let Some(st) = self.streams.get_mut(&stream) else {
            return false;
        };
        if !st.responded || st.end_queued {
            return false;
        }
        st.end_queued = true;
        self.enqueue(stream);
        true
    }

    /// Resets a stream from our side (the service gave up on it); what it
    /// had queued is dropped.
    pub fn reset(&mut self, stream: u32, code: ErrorCode) {
        if self.streams.contains_key(&stream) {
            self.remove_stream(stream);
            frame::write_rst_stream(&mut self.control, stream, code);
        }
    }

    /// Graceful shutdown (SIGTERM): GOAWAY with the last stream we
    /// accepted and NO_ERROR; streams above it are ignored, those open go on
    /// until the caller ends them, and then `is_closed()`.
    pub fn shutdown(&mut self) {
        if self.phase == Phase::Failed || self.goaway_sent.is_some() {
            return;
        }
        self.goaway_sent = Some(self.highest);
        frame::write_goaway(
            &mut self.control,
            self.highest,
            ErrorCode::NoError,
            b"shutdown",
        );
    }

    fn enqueue(&mut self, stream: u32) {
        if let Some(st) = self.streams.get_mut(&stream) {
            if !st.in_ring {
                st.in_ring = true;
                self.ring.push_back(stream);
            }
        }
    }

    /// Moves what may be sent into `out`, about `max_bytes` of it (a
    /// stream's HEADERS leave whole and may pass it): control frames first,
    /// then the streams in turn, each turn one DATA frame with all the
    /// stream's queued bytes the windows and the client's max frame size
    /// allow. Never more DATA than the connection and stream windows.
    pub fn write_to(&mut self, out: &mut Output, max_bytes: usize) {
        let mut budget = max_bytes;
        if !self.move_control(out, &mut budget) {
            return;
        }
        let soft = self.cfg.stream_soft_cap;
        loop {
            let mut moved = false;
            for _ in 0..self.ring.len() {
                if budget == 0 {
                    break;
                }
                let Some(id) = self.ring.pop_front() else {
                    break;
                };
                let Some(st) = self.streams.get_mut(&id) else {
                    continue;
                };
                let turn = st.write_turn(
                    id,
                    out,
                    budget,
                    &mut self.conn_send_window,
                    self.peer_max_frame,
                );
                budget = budget.saturating_sub(turn.bytes);
                moved |= turn.bytes > 0;
                if st.outbox.len() <= soft {
                    st.over_soft = None;
                }
                if turn.ended {
                    let remote_open = st.remote_open;
                    self.streams.remove(&id);
                    if remote_open {
                        // §8.1: answered before the request was whole; the
                        // client may stop sending it.
                        let mut rst = Vec::new();
                        frame::write_rst_stream(&mut rst, id, ErrorCode::NoError);
                        out.push(Chunk::Owned(rst));
                    }
                } else if st.has_output() {
                    self.ring.push_back(id);
                } else {
                    st.in_ring = false;
                }
            }
            if !moved || budget == 0 {
                break;
            }
        }
    }

    /// Moves the control frames, or as much of them as `budget` allows;
    /// true when all left (nothing may pass a frame cut in two).
    fn move_control(&mut self, out: &mut Output, budget: &mut usize) -> bool {
        if self.control.len() > *budget {
            out.push(Chunk::Owned(self.control.drain(..*budget).collect()));
            *budget = 0;
            return false;
        }
        *budget -= self.control.len();
        if !self.control.is_empty() {
            out.push(Chunk::Owned(std::mem::take(&mut self.control)));
        }
        true
    }

    /// Something could be written now.
    pub fn wants_write(&self) -> bool {
        !self.control.is_empty()
            || self.ring.iter().any(|id| {
                self.streams
                    .get(id)
                    .is_some_and(|s| s.can_write(self.conn_send_window))
            })
    }

    /// When `on_timer` has work: a stream's soft cap held too long, or the
    /// connection window shut too long.
    pub fn next_deadline(&self) -> Option<Instant> {
        let soft = self.cfg.soft_time;
        let streams = self
            .streams
            .values()
            .filter_map(|s| s.over_soft.map(|t| t + soft));
        let stall = self.stall_since.map(|t| t + self.cfg.conn_stall_time);
        streams.chain(stall).min()
    }

    /// Resets the streams above their soft cap for `soft_time`
    /// (`Reason::SlowReader`) and closes the connection whose window has
    /// been shut with data waiting for `conn_stall_time`.
    pub fn on_timer(&mut self, now: Instant, events: &mut Vec<Event>) {
        if self.phase == Phase::Failed {
            return;
        }
        let soft = self.cfg.soft_time;
        let due: Vec<u32> = self
            .streams
            .iter()
            .filter(|(_, s)| s.over_soft.is_some_and(|t| now >= t + soft))
            .map(|(&id, _)| id)
            .collect();
        for stream in due {
            self.remove_stream(stream);
            frame::write_rst_stream(&mut self.control, stream, ErrorCode::Cancel);
            events.push(Event::StreamClosed {
                stream,
                reason: Reason::SlowReader,
            });
        }
        self.update_stall(now);
        if self
            .stall_since
            .is_some_and(|t| now >= t + self.cfg.conn_stall_time)
        {
            self.fail(
                ErrorCode::EnhanceYourCalm,
                "connection window shut too long",
                events,
            );
        }
    }

    /// GOAWAY sent (after an error or `shutdown`), no stream left and nothing left to hand to `write_to`: close the
    /// socket once `Output` is written.
    pub fn is_closed(&self) -> bool {
        let done = match self.phase {
            Phase::Failed => true,
            _ => self.goaway_sent.is_some() && self.streams.is_empty(),
        };
        done && self.control.is_empty()
    }

    /// Open and half-closed streams.
    pub fn stream_count(&self) -> usize {
        self.streams.len()
    }
}
