//! Counters the node keeps about itself, for logs now and `/metrics` later.

#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub accepted: u64,
    pub refused_full: u64,
    pub published_local: u64,
    pub published_remote: u64,
    pub streams_opened: u64,
    /// Publishes answered 429 (the client's rate).
    pub publishes_limited: u64,
    /// Publishes answered 503 because the bus is away and its outbox full.
    pub publishes_unsent: u64,
    /// Publishes answered 503 because the history log cannot be written.
    pub publishes_unstored: u64,
    pub evicted: u64,
    pub timeouts: u64,
    pub deliveries: u64,
    pub peer_links_up: u64,
    pub peer_refused: u64,
    pub peer_protocol_errors: u64,
    pub peer_reconnects: u64,
    pub bytes_out: u64,
    /// Open connections now (gauges, kept by the reactor).
    pub open_plain: u64,
    pub open_tls: u64,
    pub open_peers: u64,
    /// Connections that speak HTTP/2 (also counted as plain or TLS), and
    /// their open streams.
    pub open_h2: u64,
    pub h2_streams: u64,
    /// HTTP/2 streams reset, by cause: the client reset it, it read too
    /// slowly, or it broke the protocol (or was over the stream limit).
    pub h2_resets_client: u64,
    pub h2_resets_slow: u64,
    pub h2_resets_error: u64,
    /// Responses by status class: 1xx … 5xx.
    pub status_classes: [u64; 5],
}

impl Stats {
    pub fn count_status(&mut self, status: u16) {
        let class = (status / 100).clamp(1, 5) as usize - 1;
        self.status_classes[class] += 1;
    }
}
