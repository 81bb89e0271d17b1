//! One HTTP/2 stream as the server sees it (RFC 9113 §5.1): the request
//! half (its head until END_STREAM, its body, our receive window) and the
//! response half (HEADERS waiting to leave, the queued body or SSE chunks,
//! the client's send window, END_STREAM). A stream exists only while it is
//! open or half-closed; `conn` drops it when both halves are done and keeps
//! no trace of it but the highest stream id. `Outbox` cuts DATA payloads
//! from the queued chunks without copying shared ones.

use std::collections::VecDeque;
use std::time::Instant;

use crate::conn::output::{Chunk, Output};
use crate::h2::frame;
use crate::h2::request::Head;

/// Response bytes waiting for window: shared chunks stay shared, and a
/// frame that takes part of one gets a `Chunk::Slice` of it.
#[derive(Default)]
pub struct Outbox {
    chunks: VecDeque<Chunk>,
    /// Bytes of the front chunk already sent.
    offset: usize,
    len: usize,
}

impl Outbox {
    pub fn push(&mut self, chunk: Chunk) {
        let n = chunk.bytes().len();
        if n > 0 {
            self.len += n;
            self.chunks.push_back(chunk);
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Moves the first `n` bytes (at most `len()`) to `out`. Whole chunks
    /// move as they are; a shared chunk cut by `n` leaves as a slice, an
    /// owned one (a response body) is copied in part.
    pub fn move_to(&mut self, out: &mut Output, mut n: usize) {
        n = n.min(self.len);
        self.len -= n;
        while n > 0 {
            let Some(front) = self.chunks.pop_front() else {
                break;
            };
            let size = front.bytes().len();
            let left = size - self.offset;
            let take = left.min(n);
            if self.offset == 0 && take == size {
                out.push(front);
            } else {
                let (start, end) = (self.offset, self.offset + take);
                out.push(match &front {
                    Chunk::Shared(rc) => Chunk::Slice(rc.clone(), start, end),
                    Chunk::Slice(rc, s, _) => Chunk::Slice(rc.clone(), s + start, s + end),
                    Chunk::Owned(v) => Chunk::Owned(v.get(start..end).unwrap_or(&[]).to_vec()),
                });
                if take < left {
                    self.offset += take;
                    self.chunks.push_front(front);
                    break;
                }
            }
            self.offset = 0;
            n -= take;
        }
        if self.chunks.is_empty() && self.chunks.capacity() > 0 {
            // An idle stream holds no ring storage.
            self.chunks = VecDeque::new();
        }
    }
}

/// A request as it comes in on a stream.
#[derive(Default)]
pub struct Incoming {
    /// The request head until END_STREAM hands it to the service.
    pub head: Option<Box<Head>>,
    pub body: Vec<u8>,
    /// DATA bytes received (padding excluded), and what content-length
    /// said they would add up to.
    pub received: u64,
    pub content_length: Option<u64>,
    /// We refused the request (413, 431, CONNECT): DATA is counted and
    /// dropped, and the service answers.
    pub refused: bool,
}

pub struct Stream {
    /// The client may still send DATA or trailers (open); false once
    /// END_STREAM came (half-closed remote).
    pub remote_open: bool,
    /// The request while it comes in; dropped once it is handed over, so
    /// an open SSE stream holds none of it.
    pub req: Option<Box<Incoming>>,
    /// What the client may still send on this stream (§6.9); negative
    /// after our SETTINGS shrink it.
    pub recv_window: i64,
    /// What we may still send (§6.9); may go negative after the client's
    /// SETTINGS shrink it (§6.9.2).
    pub send_window: i64,
    /// `respond` was called.
    pub responded: bool,
    /// Our HEADERS block (HPACK), until `write_to` frames it.
    pub headers: Option<Vec<u8>>,
    pub outbox: Outbox,
    /// END_STREAM goes out after the outbox empties.
    pub end_queued: bool,
    /// The outbox has held more than the soft cap since then.
    pub over_soft: Option<Instant>,
    /// In the connection's round-robin ring.
    pub in_ring: bool,
}

/// What one turn in the round robin did for a stream.
#[derive(Debug, PartialEq, Eq)]
pub struct Turn {
    pub bytes: usize,
    /// END_STREAM left: our half is closed.
    pub ended: bool,
}

impl Stream {
    pub fn new(recv_window: i64, send_window: i64) -> Stream {
        Stream {
            remote_open: true,
            req: None,
            recv_window,
            send_window,
            responded: false,
            headers: None,
            outbox: Outbox::default(),
            end_queued: false,
            over_soft: None,
            in_ring: false,
        }
    }

    /// The request coming in (made on first use).
    pub fn inc(&mut self) -> &mut Incoming {
        self.req.get_or_insert_with(Box::default)
    }

    /// Something could leave now: HEADERS, DATA the windows allow, or a
    /// last empty DATA with END_STREAM.
    pub fn can_write(&self, conn_window: i64) -> bool {
        self.headers.is_some()
            || (!self.outbox.is_empty() && self.send_window > 0 && conn_window > 0)
            || (self.outbox.is_empty() && self.end_queued)
    }

    /// Something waits to leave, whatever the windows.
    pub fn has_output(&self) -> bool {
        self.headers.is_some() || !self.outbox.is_empty() || self.end_queued
    }

    /// One turn: our HEADERS if they wait, then one DATA frame with all the
    /// queued bytes the windows, `max_frame` and `budget` allow (one 9-byte
    /// header, the chunks behind it shared), END_STREAM on it when it
    /// empties the outbox. Headers are whole frames, so they may pass
    /// `budget` by one block.
    pub fn write_turn(
        &mut self,
        id: u32,
        out: &mut Output,
        budget: usize,
        conn_window: &mut i64,
        max_frame: u32,
    ) -> Turn {
        let mut turn = Turn {
            bytes: 0,
            ended: false,
        };
        if budget == 0 {
            return turn;
        }
        if let Some(block) = self.headers.take() {
            let end = self.end_queued && self.outbox.is_empty();
            let mut v = Vec::with_capacity(block.len() + frame::HEADER_LEN);
            frame::write_headers(&mut v, id, &block, end, max_frame);
            turn.bytes += v.len();
            out.push(Chunk::Owned(v));
            if end {
                turn.ended = true;
                return turn;
            }
        }
        let room = budget.saturating_sub(turn.bytes + frame::HEADER_LEN);
        let window = self.send_window.min(*conn_window).max(0) as usize;
        let n = self
            .outbox
            .len()
            .min(window)
            .min(max_frame as usize)
            .min(room);
        let end = self.end_queued && n == self.outbox.len();
        if n == 0 && !(end && budget >= turn.bytes + frame::HEADER_LEN) {
            return turn;
        }
        out.push(Chunk::Owned(frame::data_header(id, n, end).to_vec()));
        self.outbox.move_to(out, n);
        self.send_window -= n as i64;
        *conn_window -= n as i64;
        turn.bytes += frame::HEADER_LEN + n;
        turn.ended = end;
        turn
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::IoSlice;
    use std::rc::Rc;

    fn flat(o: &Output) -> Vec<u8> {
        let mut s = [IoSlice::new(&[]); crate::conn::output::MAX_SLICES];
        let n = o.slices(&mut s);
        s[..n].iter().flat_map(|s| s.iter().copied()).collect()
    }

    #[test]
    fn outbox_cuts_shared_chunks_into_slices() {
        let a: Rc<[u8]> = Rc::from(&b"abcdef"[..]);
        let mut ob = Outbox::default();
        ob.push(Chunk::Shared(a.clone()));
        ob.push(Chunk::Owned(b"gh".to_vec()));
        ob.push(Chunk::Slice(a.clone(), 1, 4));
        assert_eq!(ob.len(), 11);
        let mut out = Output::default();
        ob.move_to(&mut out, 4);
        ob.move_to(&mut out, 3);
        ob.move_to(&mut out, 2);
        ob.move_to(&mut out, 100);
        assert_eq!(flat(&out), b"abcdefghbcd");
        assert!(ob.is_empty());
        // The four cuts of the shared frame refer to it, none copied it.
        assert_eq!(Rc::strong_count(&a), 5);
    }

    /// The budget is 512 bytes for an extra stream on a live
    /// connection; the struct is well inside it (the table entry adds a
    /// key and a hash slot).
    #[test]
    fn a_stream_is_small() {
        assert!(
            std::mem::size_of::<Stream>() <= 256,
            "{}",
            std::mem::size_of::<Stream>()
        );
    }

    #[test]
    fn a_turn_sends_all_that_fits_in_one_frame() {
        let mut s = Stream::new(65_535, 10);
        s.responded = true;
        for c in [&b"data: 1\n\n"[..], b"data: 2\n\n"] {
            s.outbox.push(Chunk::Shared(Rc::from(c)));
        }
        let mut out = Output::default();
        let mut conn = 100;
        let t = s.write_turn(1, &mut out, 1000, &mut conn, 16_384);
        assert_eq!(
            t,
            Turn {
                bytes: 19,
                ended: false
            }
        );
        assert_eq!(
            flat(&out),
            [&frame::data_header(1, 10, false)[..], b"data: 1\n\nd"].concat()
        );
        assert_eq!((s.send_window, conn, s.outbox.len()), (0, 90, 8));
        assert!(!s.can_write(conn));
        s.send_window = 100;
        s.end_queued = true;
        let mut out = Output::default();
        let t = s.write_turn(1, &mut out, 1000, &mut conn, 16_384);
        assert_eq!(
            t,
            Turn {
                bytes: 17,
                ended: true
            }
        );
        assert_eq!(
            flat(&out),
            [&frame::data_header(1, 8, true)[..], b"ata: 2\n\n"].concat()
        );
    }
}
