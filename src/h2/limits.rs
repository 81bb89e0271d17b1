//! What an HTTP/2 connection allows a client: `Config` holds every count,
//! length and rate a client controls (and the caps on what we queue for a
//! slow one), `Budget` counts events per interval for the flood defences.
//! `conn` checks them before it commits memory; nothing here does I/O.

use std::time::{Duration, Instant};

/// A header block spread over CONTINUATION frames is buffered whole before
/// HPACK decodes it; past `max_header_list_size + MAX_BLOCK_SLACK` bytes it
/// is refused (CONTINUATION flood). Literal fields cost less encoded than
/// the 32 bytes per field the list size adds (RFC 7541 §4.1), so a block
/// over this bound always decodes to a list over the limit; the slack
/// leaves room for table size updates.
pub const MAX_BLOCK_SLACK: u32 = 1024;

/// Most CONTINUATION frames after one HEADERS: empty ones pass the byte
/// bound, so they are counted too. Clients split only at their max frame
/// size, so a block within bounds needs a handful.
pub const MAX_CONTINUATIONS: u32 = 64;

/// The issue asks for room for a browser with 100 tabs; `Config` below
/// this is for tests.
pub const MIN_CONCURRENT_STREAMS: u32 = 128;

#[derive(Clone, Debug)]
pub struct Config {
    /// SETTINGS_MAX_CONCURRENT_STREAMS (§5.1.2): a stream over it is
    /// refused with REFUSED_STREAM.
    pub max_concurrent_streams: u32,
    /// SETTINGS_INITIAL_WINDOW_SIZE we announce: the most request body a
    /// client may send on a stream before we grant more (§6.9.2).
    pub initial_window_size: u32,
    /// Our connection receive window (§6.9): announced with a
    /// WINDOW_UPDATE after SETTINGS when above 65,535.
    pub connection_window: u32,
    /// SETTINGS_MAX_FRAME_SIZE we announce; a larger frame is a
    /// FRAME_SIZE_ERROR. A caller holds at most `HEADER_LEN + this` bytes of
    /// unconsumed input.
    pub max_frame_size: u32,
    /// SETTINGS_MAX_HEADER_LIST_SIZE (RFC 7541 §4.1 size); a request over
    /// it is refused with 431.
    pub max_header_list_size: u32,
    /// SETTINGS_HEADER_TABLE_SIZE: the HPACK dynamic table we keep per
    /// connection. Values below 4,096 are raised to it (what a client may
    /// use before it reads our SETTINGS).
    pub header_table_size: u32,
    /// The most request body buffered for one stream; more is refused with
    /// 413. A connection holds at most `max_concurrent_streams` of these.
    pub max_request_body: usize,
    /// A stream whose queued response bytes pass `stream_hard_cap`, or stay
    /// above `stream_soft_cap` for `soft_time`, is reset (slow reader).
    pub stream_hard_cap: usize,
    pub stream_soft_cap: usize,
    pub soft_time: Duration,
    /// A connection whose send window stays shut this long while data
    /// waits is closed with GOAWAY.
    pub conn_stall_time: Duration,
    /// RST_STREAMs per `reset_interval`: sent by the client (rapid reset,
    /// CVE-2023-44487) plus those it provoked us into sending (MadeYouReset,
    /// CVE-2025-8671). One more is answered with GOAWAY ENHANCE_YOUR_CALM.
    pub max_resets: u32,
    pub reset_interval: Duration,
    /// SETTINGS and PING frames (each makes us answer) per
    /// `control_interval`; one more is ENHANCE_YOUR_CALM.
    pub max_control_frames: u32,
    pub control_interval: Duration,
    /// Control frames (ACKs, WINDOW_UPDATE, RST_STREAM) waiting for the
    /// client to read; more is ENHANCE_YOUR_CALM.
    pub max_control_output: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            max_concurrent_streams: 256,
            initial_window_size: 65_535,
            connection_window: 1 << 20,
            max_frame_size: 16_384,
            max_header_list_size: 16 << 10,
            header_table_size: 4096,
            max_request_body: 64 << 10,
            // The HTTP/1.1 listener caps (client.rs) apply to a stream.
            stream_hard_cap: 1 << 20,
            stream_soft_cap: 128 << 10,
            soft_time: Duration::from_secs(5),
            conn_stall_time: Duration::from_secs(30),
            max_resets: 200,
            reset_interval: Duration::from_secs(10),
            max_control_frames: 1000,
            control_interval: Duration::from_secs(10),
            max_control_output: 64 << 10,
        }
    }
}

impl Config {
    /// The largest header block buffered across CONTINUATION frames.
    pub fn max_header_block(&self) -> usize {
        self.max_header_list_size.saturating_add(MAX_BLOCK_SLACK) as usize
    }
}

/// Counts events in fixed intervals: `limit` per `interval` pass, the next
/// one fails until the interval ends.
#[derive(Clone, Debug)]
pub struct Budget {
    limit: u32,
    interval: Duration,
    start: Instant,
    used: u32,
}

impl Budget {
    pub fn new(limit: u32, interval: Duration, now: Instant) -> Budget {
        Budget {
            limit,
            interval,
            start: now,
            used: 0,
        }
    }

    /// Counts one event; false when it is over the limit.
    pub fn spend(&mut self, now: Instant) -> bool {
        if now.saturating_duration_since(self.start) >= self.interval {
            self.start = now;
            self.used = 0;
        }
        self.used = self.used.saturating_add(1);
        self.used <= self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_at_limit_and_over_then_next_interval() {
        let t0 = Instant::now();
        let mut b = Budget::new(3, Duration::from_secs(1), t0);
        assert!(b.spend(t0) && b.spend(t0) && b.spend(t0));
        assert!(!b.spend(t0 + Duration::from_millis(999)));
        assert!(b.spend(t0 + Duration::from_secs(1)));
    }
}
