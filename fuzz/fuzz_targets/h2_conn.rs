//! The connection core fed the preface, then arbitrary client bytes cut
//! into pieces chosen by the input, interleaved with what a caller does
//! (respond, send, end, reset, write_to with a byte budget, timers,
//! shutdown). Checked: no panic; never more DATA than the windows the
//! client granted (tracked by a shadow reading the same client frames);
//! each write_to stays near its budget; queued control output and the
//! stream table stay bounded.
//!
//! Input: byte 0 picks the config; then ops. Op byte `o`:
//! `o % 8` in 0..=3: feed the next `len` bytes (`len` = next byte + 1);
//! 4: write_to with budget `next byte * 64` (0xff: unlimited);
//! 5: act on a stream the caller knows (next byte: index + action);
//! 6: time passes (next byte * 50 ms) and `on_timer`;
//! 7: `shutdown` if the next byte is 0xff, else time passes a little.
#![no_main]

use std::collections::HashMap;
use std::io::IoSlice;
use std::rc::Rc;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use watercooler::conn::output::{Chunk, Output, MAX_SLICES};
use watercooler::h2::conn::{Config, Connection, Event};
use watercooler::h2::frame::{self, setting, ErrorCode, Frame};

/// What the client granted, as read from the frames the connection took.
struct Shadow {
    conn_window: i64,
    initial: i64,
    streams: HashMap<u32, i64>,
    /// Our output not yet parsed (write_to may cut a frame).
    pending: Vec<u8>,
    preface_seen: bool,
}

impl Shadow {
    fn client_frames(&mut self, mut bytes: &[u8]) {
        loop {
            let f = match frame::decode(bytes, frame::MAX_MAX_FRAME_SIZE) {
                Ok(Some((f, n))) => {
                    bytes = &bytes[n..];
                    f
                }
                // The connection reset that stream and went on.
                Err(frame::FrameError::Stream { .. }) => {
                    let n = frame::frame_len(bytes).unwrap_or(bytes.len());
                    bytes = &bytes[n..];
                    continue;
                }
                // A connection error: it sends no DATA any more.
                _ => return,
            };
            match f {
                Frame::WindowUpdate {
                    stream: 0,
                    increment,
                } => self.conn_window += i64::from(increment),
                Frame::WindowUpdate { stream, increment } => {
                    if let Some(w) = self.streams.get_mut(&stream) {
                        *w += i64::from(increment);
                    }
                }
                Frame::Settings { ack: false, params } => {
                    for (id, v) in params.iter() {
                        if id == setting::INITIAL_WINDOW_SIZE {
                            let delta = i64::from(v) - self.initial;
                            self.initial = i64::from(v);
                            self.streams.values_mut().for_each(|w| *w += delta);
                        }
                    }
                }
                Frame::Headers { stream, .. } => {
                    let initial = self.initial;
                    self.streams.entry(stream).or_insert(initial);
                }
                _ => {}
            }
        }
    }

    /// Our frames: DATA within both windows.
    fn our_frames(&mut self) {
        let mut at = 0;
        while let Ok(Some((f, n))) = frame::decode(&self.pending[at..], frame::MAX_MAX_FRAME_SIZE) {
            at += n;
            if let Frame::Data {
                stream, flow_len, ..
            } = f
            {
                let len = i64::from(flow_len);
                self.conn_window -= len;
                assert!(self.conn_window >= 0, "DATA past the connection window");
                let w = self
                    .streams
                    .get_mut(&stream)
                    .expect("DATA on a stream the client opened");
                *w -= len;
                assert!(*w >= 0, "DATA past the stream window");
            }
        }
        self.pending.drain(..at);
    }
}

fn config(sel: u8) -> Config {
    Config {
        max_concurrent_streams: 1 + u32::from(sel & 7),
        initial_window_size: [0, 1, 100, 65_535][usize::from(sel >> 3 & 3)],
        connection_window: 65_535,
        max_header_list_size: 2000,
        max_request_body: 1000,
        stream_hard_cap: 2000,
        stream_soft_cap: 300,
        soft_time: Duration::from_secs(1),
        conn_stall_time: Duration::from_secs(3),
        max_resets: 20,
        max_control_frames: 30,
        max_control_output: 4000,
        ..Config::default()
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, mut ops)) = data.split_first() else {
        return;
    };
    let cfg = config(sel);
    let max_streams = cfg.max_concurrent_streams as usize;
    let mut now = Instant::now();
    let mut conn = Connection::new(cfg, now);
    let mut shadow = Shadow {
        conn_window: 65_535,
        initial: 65_535,
        streams: HashMap::new(),
        pending: Vec::new(),
        preface_seen: false,
    };
    let mut input = frame::PREFACE.to_vec();
    let mut events = Vec::new();
    let mut known: Vec<u32> = Vec::new();
    let mut out = Output::default();
    let next = |ops: &mut &[u8]| -> Option<u8> {
        let (&b, rest) = ops.split_first()?;
        *ops = rest;
        Some(b)
    };
    while let Some(op) = next(&mut ops) {
        let arg = next(&mut ops).unwrap_or(0);
        match op % 8 {
            0..=3 => {
                let n = (usize::from(arg) + 1).min(ops.len());
                input.extend_from_slice(&ops[..n]);
                ops = &ops[n..];
                let used = conn.receive(&input, now, &mut events);
                assert!(used <= input.len());
                let mut taken = &input[..used];
                if !shadow.preface_seen && used > 0 {
                    shadow.preface_seen = true;
                    taken = taken.get(frame::PREFACE.len()..).unwrap_or(&[]);
                }
                shadow.client_frames(taken);
                input.drain(..used);
                assert!(input.len() <= conn.input_limit().max(frame::PREFACE.len()));
            }
            4 => {
                let max = if arg == 0xff {
                    usize::MAX
                } else {
                    usize::from(arg) * 64
                };
                let before = out.len();
                conn.write_to(&mut out, max);
                assert!(
                    out.len() - before <= max.saturating_add(4096),
                    "write_to far past its budget"
                );
            }
            5 => {
                if known.is_empty() {
                    continue;
                }
                let id = known[usize::from(arg & 0x3f) % known.len()];
                match arg >> 6 {
                    0 => {
                        conn.respond(
                            id,
                            200,
                            &[("content-type", "text/event-stream")],
                            None,
                            false,
                        );
                    }
                    1 => {
                        let len = usize::from(next(&mut ops).unwrap_or(0)) * 8;
                        let chunk: Rc<[u8]> = Rc::from(vec![b'x'; len]);
                        let _ = conn.send(id, Chunk::Shared(chunk), now);
                    }
                    2 => {
                        conn.end_stream(id);
                    }
                    _ => conn.reset(id, ErrorCode::Cancel),
                }
            }
            6 => {
                now += Duration::from_millis(u64::from(arg) * 50);
                conn.on_timer(now, &mut events);
            }
            _ => {
                if arg == 0xff {
                    conn.shutdown();
                } else {
                    now += Duration::from_millis(u64::from(arg));
                }
            }
        }
        for ev in events.drain(..) {
            match ev {
                Event::Request { stream, .. } | Event::Refused { stream, .. } => known.push(stream),
                Event::StreamClosed { stream, .. } => known.retain(|&s| s != stream),
                Event::Closed { .. } => {}
            }
        }
        known.truncate(64);
        assert!(conn.stream_count() <= max_streams);
        drain(&mut out, &mut shadow);
    }
});

/// The socket takes everything; the shadow checks the DATA.
fn drain(out: &mut Output, shadow: &mut Shadow) {
    while !out.is_empty() {
        let mut s = [IoSlice::new(&[]); MAX_SLICES];
        let n = out.slices(&mut s);
        let mut taken = 0;
        for sl in &s[..n] {
            shadow.pending.extend_from_slice(sl);
            taken += sl.len();
        }
        out.consume(taken);
    }
    shadow.our_frames();
}
