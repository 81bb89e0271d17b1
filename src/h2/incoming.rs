//! A client's requests arriving on an HTTP/2 connection
//! (`conn::Connection`): header blocks (HEADERS and its CONTINUATION
//! frames, §6.2, §6.10) decoded by HPACK, new streams opened or refused
//! (§5.1, §5.1.2), request heads checked (`request.rs`), trailers, and
//! bodies under receive flow control (§6.9) handed to the service once
//! END_STREAM arrives. `conn.rs` dispatches the frames and holds the state;
//! `outgoing.rs` is the answering half.

use std::time::Instant;

use crate::h2::conn::{conn_err, stream_err, Connection, Event};
use crate::h2::frame::{self, ErrorCode, FrameError, MAX_WINDOW};
use crate::h2::hpack::HpackError;
use crate::h2::limits::MAX_CONTINUATIONS;
use crate::h2::request;
use crate::h2::stream::Stream;

/// A header block waiting for its CONTINUATION frames (§6.10): nothing
/// else may arrive until it ends.
pub(crate) struct Block {
    pub(crate) stream: u32,
    end_stream: bool,
    self_dependent: bool,
    buf: Vec<u8>,
    frames: u32,
}

impl Connection {
    /// HEADERS: a whole block goes to `on_header_block`, the start of one
    /// waits for its CONTINUATION frames.
    pub(crate) fn on_headers(
        &mut self,
        stream: u32,
        end_stream: bool,
        end_headers: bool,
        block: &[u8],
        depends_on: Option<u32>,
        events: &mut Vec<Event>,
    ) -> Result<(), FrameError> {
        if stream.is_multiple_of(2) {
            return Err(conn_err(
                ErrorCode::ProtocolError,
                "HEADERS on an even stream",
            ));
        }
        let self_dependent = depends_on == Some(stream);
        if end_headers {
            return self.on_header_block(stream, end_stream, self_dependent, block, events);
        }
        if block.len() > self.cfg.max_header_block() {
            return Err(conn_err(
                ErrorCode::EnhanceYourCalm,
                "header block too large",
            ));
        }
        self.block = Some(Block {
            stream,
            end_stream,
            self_dependent,
            buf: block.to_vec(),
            frames: 0,
        });
        Ok(())
    }

    /// A CONTINUATION of the waiting block (`on_frame` checked its
    /// stream): counted and bounded before it is buffered; END_HEADERS
    /// hands the whole block on.
    pub(crate) fn on_continuation(
        &mut self,
        fragment: &[u8],
        end_headers: bool,
        events: &mut Vec<Event>,
    ) -> Result<(), FrameError> {
        let max = self.cfg.max_header_block();
        let Some(b) = self.block.as_mut() else {
            return Err(conn_err(
                ErrorCode::ProtocolError,
                "CONTINUATION without HEADERS",
            ));
        };
        // CONTINUATION flood: refused before the block is buffered whole.
        b.frames += 1;
        if b.frames > MAX_CONTINUATIONS {
            return Err(conn_err(
                ErrorCode::EnhanceYourCalm,
                "too many CONTINUATION frames",
            ));
        }
        if b.buf.len() + fragment.len() > max {
            return Err(conn_err(
                ErrorCode::EnhanceYourCalm,
                "header block too large",
            ));
        }
        b.buf.extend_from_slice(fragment);
        if !end_headers {
            return Ok(());
        }
        match self.block.take() {
            Some(b) => {
                self.on_header_block(b.stream, b.end_stream, b.self_dependent, &b.buf, events)
            }
            None => Ok(()),
        }
    }

    /// A whole header block: a new request, trailers, or an error. HPACK
    /// decodes it first whatever happens next, to keep its table in step.
    fn on_header_block(
        &mut self,
        id: u32,
        end_stream: bool,
        self_dependent: bool,
        block: &[u8],
        events: &mut Vec<Event>,
    ) -> Result<(), FrameError> {
        let mut fields = Vec::new();
        let max_list = self.cfg.max_header_list_size as usize;
        let too_large = match self.decoder.decode(block, max_list, &mut fields) {
            Ok(()) => false,
            Err(HpackError::ListTooLarge) => true,
            Err(_) => {
                return Err(conn_err(
                    ErrorCode::CompressionError,
                    "HPACK decoding failed",
                ))
            }
        };
        let malformed = |m: request::Malformed| stream_err(id, ErrorCode::ProtocolError, m.0);
        if let Some(st) = self.streams.get(&id) {
            if !st.remote_open {
                return Err(stream_err(
                    id,
                    ErrorCode::StreamClosed,
                    "HEADERS after END_STREAM",
                ));
            }
            // Trailers (§8.1): they end the request, and we read none.
            if !end_stream {
                return Err(stream_err(
                    id,
                    ErrorCode::ProtocolError,
                    "trailers without END_STREAM",
                ));
            }
            if !too_large {
                request::check_trailers(&fields).map_err(malformed)?;
            }
            return self.end_request(id, events);
        }
        if id < self.highest {
            // §5.1.1: ids only grow; a lower one was never opened or is
            // long closed, and we keep no history to tell.
            return Err(conn_err(
                ErrorCode::ProtocolError,
                "HEADERS on a stream id lower than the last",
            ));
        }
        if id == self.highest {
            // §5.1: the newest stream, known to be closed (after END_STREAM
            // or RST_STREAM): a connection error STREAM_CLOSED.
            return Err(conn_err(
                ErrorCode::StreamClosed,
                "HEADERS on a closed stream",
            ));
        }
        self.highest = id;
        if self.ignored(id) {
            return Ok(());
        }
        if self_dependent {
            return Err(stream_err(
                id,
                ErrorCode::ProtocolError,
                "stream depends on itself",
            ));
        }
        if self.streams.len() >= self.cfg.max_concurrent_streams as usize {
            return Err(stream_err(
                id,
                ErrorCode::RefusedStream,
                "over SETTINGS_MAX_CONCURRENT_STREAMS",
            ));
        }
        let mut st = Stream::new(self.recv_initial(), i64::from(self.peer_initial_window));
        st.remote_open = !end_stream;
        let refuse = if too_large {
            Some(431)
        } else {
            let head = request::parse(fields).map_err(malformed)?;
            let length = head.content_length;
            if end_stream && length.is_some_and(|n| n != 0) {
                return Err(stream_err(
                    id,
                    ErrorCode::ProtocolError,
                    "content-length without DATA",
                ));
            }
            st.inc().content_length = length;
            if head.connect {
                Some(405)
            } else if length.is_some_and(|n| n > self.cfg.max_request_body as u64) {
                Some(413)
            } else {
                st.inc().head = Some(Box::new(head));
                None
            }
        };
        st.inc().refused = refuse.is_some();
        self.streams.insert(id, st);
        if let Some(status) = refuse {
            events.push(Event::Refused { stream: id, status });
            return Ok(());
        }
        if end_stream {
            return self.end_request(id, events);
        }
        Ok(())
    }

    /// END_STREAM from the client: the request is whole (half-closed
    /// remote); unless we refused it, the service gets it.
    fn end_request(&mut self, id: u32, events: &mut Vec<Event>) -> Result<(), FrameError> {
        let Some(st) = self.streams.get_mut(&id) else {
            return Ok(());
        };
        st.remote_open = false;
        let inc = st.inc();
        if inc.content_length.is_some_and(|n| n != inc.received) {
            return Err(stream_err(
                id,
                ErrorCode::ProtocolError,
                "content-length mismatch",
            ));
        }
        if inc.refused {
            return Ok(());
        }
        if let Some(head) = inc.head.take() {
            let head = *head;
            events.push(Event::Request {
                stream: id,
                method: head.method,
                path: head.path,
                authority: head.authority,
                scheme: head.scheme,
                headers: head.headers,
                body: std::mem::take(&mut inc.body),
            });
            // Handed over: the stream keeps none of the request.
            st.req = None;
        }
        Ok(())
    }

    /// DATA: counted against the connection window whatever its stream
    /// (§6.9), then against the stream's; the body is buffered up to
    /// `max_request_body` (past it: 413, and the rest dropped) and granted
    /// back as it is taken.
    pub(crate) fn on_data(
        &mut self,
        id: u32,
        end_stream: bool,
        data: &[u8],
        flow_len: u32,
        now: Instant,
        events: &mut Vec<Event>,
    ) -> Result<(), FrameError> {
        let flow = i64::from(flow_len);
        // §6.9: every DATA counts against the connection window, whatever
        // its stream's state. Bodies are bounded per stream, so the bytes
        // are granted back at once.
        if flow > self.conn_recv_window {
            return Err(conn_err(
                ErrorCode::FlowControlError,
                "DATA beyond the connection window",
            ));
        }
        self.conn_recv_window -= flow;
        self.conn_consumed += flow;
        let target = self
            .cfg
            .connection_window
            .clamp(frame::DEFAULT_WINDOW, MAX_WINDOW);
        if self.conn_consumed >= i64::from(target / 2) {
            frame::write_window_update(&mut self.control, 0, self.conn_consumed as u32);
            self.conn_recv_window += self.conn_consumed;
            self.conn_consumed = 0;
        }
        if data.is_empty() && !end_stream {
            // Empty DATA frames cost work and carry nothing (CVE-2019-9518).
            self.spend_control(now, "empty DATA flood")?;
        }
        let max_body = self.cfg.max_request_body;
        let initial = self.recv_initial();
        let Some(st) = self.streams.get_mut(&id) else {
            if id > self.highest {
                return Err(conn_err(ErrorCode::ProtocolError, "DATA on an idle stream"));
            }
            if self.ignored(id) {
                return Ok(());
            }
            return Err(stream_err(
                id,
                ErrorCode::StreamClosed,
                "DATA on a closed stream",
            ));
        };
        if !st.remote_open {
            return Err(stream_err(
                id,
                ErrorCode::StreamClosed,
                "DATA after END_STREAM",
            ));
        }
        if flow > st.recv_window {
            return Err(stream_err(
                id,
                ErrorCode::FlowControlError,
                "DATA beyond the stream window",
            ));
        }
        st.recv_window -= flow;
        let inc = st.inc();
        inc.received += data.len() as u64;
        if inc.content_length.is_some_and(|n| inc.received > n) {
            return Err(stream_err(
                id,
                ErrorCode::ProtocolError,
                "DATA beyond content-length",
            ));
        }
        if !inc.refused {
            if inc.body.len() + data.len() > max_body {
                inc.refused = true;
                inc.body = Vec::new();
                inc.head = None;
                events.push(Event::Refused {
                    stream: id,
                    status: 413,
                });
            } else {
                inc.body.extend_from_slice(data);
            }
        }
        if end_stream {
            return self.end_request(id, events);
        }
        // More window while the body is wanted; a refused one stalls.
        if !st.inc().refused && st.recv_window < initial / 2 {
            let grant = initial - st.recv_window;
            st.recv_window += grant;
            frame::write_window_update(&mut self.control, id, grant as u32);
        }
        Ok(())
    }
}
