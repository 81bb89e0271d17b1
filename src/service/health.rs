//! What the node says about itself: `GET /healthz` (a small JSON body, 200
//! while serving, 503 while starting or draining) and `GET /metrics`
//! (Prometheus text exposition format 0.0.4, written by hand: it is a few
//! lines of text). Both are built from the counters in `Stats`, the presence
//! and the process's own `/proc/self` figures.

use std::fmt::Write as _;
use std::time::Duration;

use super::durable::Durable;
#[cfg(test)]
use super::presence::Peer;
use super::presence::{json_string, Presence};
use super::stats::Stats;
use crate::bus::BusStatus;
use crate::room::Rooms;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for the cluster at start (`sync_nodes_timeout`).
    Starting,
    Serving,
    /// A shutdown signal came: finishing what is in flight.
    Draining,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Serving => "serving",
            Phase::Draining => "draining",
        }
    }
}

/// Everything the two endpoints report.
pub struct Snapshot<'a> {
    pub phase: Phase,
    pub uptime: Duration,
    pub presence: &'a Presence,
    pub local_listeners: usize,
    pub stats: &'a Stats,
    pub rooms: &'a Rooms,
    /// The history log, when the node keeps one.
    pub durable: Option<&'a Durable>,
    /// The bus, when the node has one.
    pub bus: Option<&'a BusStatus>,
}

/// Rooms named in `/metrics` (labels stay bounded: the busiest, then a total).
const METRIC_ROOMS: usize = 10;

/// The `/healthz` status and body.
pub fn healthz(s: &Snapshot) -> (u16, String) {
    let status = if s.phase == Phase::Serving { 200 } else { 503 };
    let peers: Vec<String> = s
        .presence
        .peers
        .iter()
        .map(|p| json_string(&p.name))
        .collect();
    // Still 200 while the log cannot be written: the node serves its
    // listeners; the body says publishes are refused.
    let log = match s.durable {
        None => "\"memory\"".to_string(),
        Some(d) => match d.failing() {
            None => "\"ok\"".to_string(),
            Some(why) => json_string(&format!("failing: {why}")),
        },
    };
    // Still 200 while Redis is away: the node serves its own listeners.
    let bus = match s.bus {
        None => String::new(),
        Some(b) => format!(
            ",\"bus\":{{\"kind\":\"{}\",\"connected\":{},\"outbox\":{},\"behind_ms\":{}}}",
            b.kind, b.connected, b.outbox, b.behind_ms
        ),
    };
    let body = format!(
        "{{\"status\":\"{}\",\"node\":{},\"uptime_seconds\":{},\"peers\":[{}],\"listeners\":{},\"log\":{}{}}}\n",
        s.phase.name(),
        json_string(&s.presence.node),
        s.uptime.as_secs(),
        peers.join(","),
        s.local_listeners,
        log,
        bus
    );
    (status, body)
}

/// The `/metrics` body.
pub fn metrics(s: &Snapshot) -> String {
    let st = s.stats;
    let mut m = Metrics(String::with_capacity(4096));
    m.gauge(
        "watercooler_connections",
        "Open connections by kind.",
        &[
            ("kind=\"http\"", st.open_plain as f64),
            ("kind=\"https\"", st.open_tls as f64),
            ("kind=\"sse\"", s.local_listeners as f64),
            ("kind=\"peer\"", st.open_peers as f64),
        ],
    );
    m.gauge(
        "watercooler_connections_by_protocol",
        "Open HTTP connections by protocol.",
        &[
            (
                "protocol=\"http/1.1\"",
                (st.open_plain + st.open_tls).saturating_sub(st.open_h2) as f64,
            ),
            ("protocol=\"h2\"", st.open_h2 as f64),
        ],
    );
    m.gauge(
        "watercooler_h2_streams",
        "Open HTTP/2 streams.",
        &[("", st.h2_streams as f64)],
    );
    m.counter(
        "watercooler_h2_resets_total",
        "HTTP/2 streams reset, by cause.",
        &[
            ("cause=\"client\"", st.h2_resets_client as f64),
            ("cause=\"slow_reader\"", st.h2_resets_slow as f64),
            ("cause=\"protocol\"", st.h2_resets_error as f64),
        ],
    );
    // Which process answered: with --workers, a scrape reaches one worker
    // (its figures are its own; `watercooler_cluster_listeners` counts the
    // node's and the cluster's).
    let label = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
    let node = &s.presence.node;
    let who = format!(
        "node=\"{}\",process=\"{}\"",
        label(super::presence::node_of(node)),
        label(node)
    );
    m.gauge(
        "watercooler_info",
        "The node, and the process of it that answered (a worker of --workers).",
        &[(&who, 1.0)],
    );
    m.gauge(
        "watercooler_listeners",
        "SSE listeners on this node.",
        &[("", s.local_listeners as f64)],
    );
    m.gauge(
        "watercooler_cluster_listeners",
        "SSE listeners across the linked cluster.",
        &[("", s.presence.total_listeners() as f64)],
    );
    m.counter(
        "watercooler_messages_published_total",
        "Messages accepted into the room, by origin.",
        &[
            ("origin=\"local\"", st.published_local as f64),
            ("origin=\"remote\"", st.published_remote as f64),
        ],
    );
    m.counter(
        "watercooler_deliveries_total",
        "SSE frames queued to listeners (messages, heartbeats, presence).",
        &[("", st.deliveries as f64)],
    );
    m.counter(
        "watercooler_bytes_out_total",
        "Bytes written to sockets (after TLS, for plain; plaintext for TLS).",
        &[("", st.bytes_out as f64)],
    );
    m.counter(
        "watercooler_slow_listeners_evicted_total",
        "Listeners closed for falling too far behind.",
        &[("", st.evicted as f64)],
    );
    let classes = ["1xx", "2xx", "3xx", "4xx", "5xx"];
    let by_class: Vec<(String, f64)> = classes
        .iter()
        .zip(st.status_classes.iter())
        .map(|(c, n)| (format!("class=\"{c}\""), *n as f64))
        .collect();
    let by_class: Vec<(&str, f64)> = by_class.iter().map(|(l, n)| (l.as_str(), *n)).collect();
    m.counter(
        "watercooler_requests_total",
        "HTTP responses by status class.",
        &by_class,
    );
    m.counter(
        "watercooler_connections_accepted_total",
        "Connections accepted on the HTTP ports.",
        &[("", st.accepted as f64)],
    );
    m.counter(
        "watercooler_connections_refused_total",
        "Connections refused at the connection limit.",
        &[("", st.refused_full as f64)],
    );
    m.counter(
        "watercooler_publishes_limited_total",
        "Publishes refused 429: the client published faster than --publish-rate.",
        &[("", st.publishes_limited as f64)],
    );
    m.counter(
        "watercooler_publishes_unsent_total",
        "Publishes refused 503: the bus (Redis) is away and this node's outbox for it is full.",
        &[("", st.publishes_unsent as f64)],
    );
    m.counter(
        "watercooler_publishes_unstored_total",
        "Publishes refused 503: the history log could not be written (disk full, read-only).",
        &[("", st.publishes_unstored as f64)],
    );
    if let Some(b) = s.bus {
        let kind = format!("bus=\"{}\"", b.kind);
        m.gauge(
            "watercooler_bus_connected",
            "1 while the bus is connected (Redis: both connections; mesh: any link).",
            &[(&kind, if b.connected { 1.0 } else { 0.0 })],
        );
        m.gauge(
            "watercooler_bus_outbox",
            "Our messages not yet acknowledged by the bus (Redis), at most 10,000.",
            &[(&kind, b.outbox as f64)],
        );
        m.gauge(
            "watercooler_bus_behind_seconds",
            "How much newer the bus's newest entry is than the last one this node read (Redis).",
            &[(&kind, b.behind_ms as f64 / 1000.0)],
        );
        m.counter(
            "watercooler_bus_reconnects_total",
            "Connections to the bus that failed and were dialled again (Redis).",
            &[(&kind, b.reconnects as f64)],
        );
        m.counter(
            "watercooler_bus_data_lost_total",
            "Times the bus lost messages a node may not have read (listeners were told: missed).",
            &[(&kind, b.data_lost as f64)],
        );
    }
    if let Some(d) = s.durable {
        m.gauge(
            "watercooler_log_ok",
            "1 while the history log is being written, 0 while its commits fail.",
            &[("", if d.failing().is_some() { 0.0 } else { 1.0 })],
        );
        m.counter(
            "watercooler_log_commits_total",
            "History log commits (write, then fsync per --fsync), by outcome.",
            &[
                ("outcome=\"ok\"", d.commits as f64),
                ("outcome=\"failed\"", d.failures as f64),
            ],
        );
        m.gauge(
            "watercooler_log_loaded_records",
            "Records loaded from the history log at start.",
            &[("", d.loaded as f64)],
        );
    }
    m.counter(
        "watercooler_streams_opened_total",
        "SSE streams opened.",
        &[("", st.streams_opened as f64)],
    );
    m.counter(
        "watercooler_request_timeouts_total",
        "Requests that came too late: answered 408 (HTTP/1.1), connection closed (HTTP/2).",
        &[("", st.timeouts as f64)],
    );
    m.counter(
        "watercooler_peer_links_established_total",
        "Peer links that finished the handshake.",
        &[("", st.peer_links_up as f64)],
    );
    m.counter(
        "watercooler_peer_protocol_errors_total",
        "Peer links closed for a malformed frame.",
        &[("", st.peer_protocol_errors as f64)],
    );
    m.gauge(
        "watercooler_peer_links_up",
        "Peer links with a finished handshake.",
        &[("", s.presence.peers.len() as f64)],
    );
    m.counter(
        "watercooler_peer_reconnects_total",
        "Peer links established again after one was lost.",
        &[("", st.peer_reconnects as f64)],
    );
    m.counter(
        "watercooler_peer_links_refused_total",
        "Peer links refused for a wrong cookie.",
        &[("", st.peer_refused as f64)],
    );
    m.gauge(
        "watercooler_history_messages",
        "Messages held for resume and replay, across rooms.",
        &[("", s.rooms.len() as f64)],
    );
    m.gauge(
        "watercooler_rooms",
        "Rooms this node holds.",
        &[("", s.rooms.count() as f64)],
    );
    let mut busiest: Vec<_> = s.rooms.iter().map(|(_, r)| r).collect();
    busiest.sort_by(|a, b| {
        (b.listeners, b.messages)
            .cmp(&(a.listeners, a.messages))
            .then_with(|| a.name.cmp(&b.name))
    });
    busiest.truncate(METRIC_ROOMS);
    let labels: Vec<String> = busiest
        .iter()
        .map(|r| format!("room={}", json_string(&r.name)))
        .collect();
    let listeners: Vec<(&str, f64)> = labels
        .iter()
        .zip(&busiest)
        .map(|(l, r)| (l.as_str(), r.listeners as f64))
        .collect();
    m.gauge(
        "watercooler_room_listeners",
        "Listeners of the busiest rooms on this node (at most 10 rooms).",
        &listeners,
    );
    let messages: Vec<(&str, f64)> = labels
        .iter()
        .zip(&busiest)
        .map(|(l, r)| (l.as_str(), r.messages as f64))
        .collect();
    m.counter(
        "watercooler_room_messages_total",
        "Messages accepted into the busiest rooms on this node (at most 10 rooms).",
        &messages,
    );
    m.counter(
        "watercooler_room_messages_dropped_total",
        "Messages from other nodes that found no room (all in use).",
        &[("", s.rooms.dropped as f64)],
    );
    m.gauge(
        "watercooler_uptime_seconds",
        "Seconds since the node started.",
        &[("", s.uptime.as_secs_f64())],
    );
    if let Some(rss) = proc_rss_bytes() {
        m.gauge(
            "watercooler_process_resident_memory_bytes",
            "Resident set size of the process.",
            &[("", rss as f64)],
        );
    }
    if let Some(fds) = proc_open_fds() {
        m.gauge(
            "watercooler_process_open_fds",
            "Open file descriptors of the process.",
            &[("", fds as f64)],
        );
    }
    m.0
}

struct Metrics(String);

impl Metrics {
    fn family(&mut self, name: &str, help: &str, kind: &str, samples: &[(&str, f64)]) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
        for (labels, value) in samples {
            if labels.is_empty() {
                let _ = writeln!(self.0, "{name} {value}");
            } else {
                let _ = writeln!(self.0, "{name}{{{labels}}} {value}");
            }
        }
    }
    fn gauge(&mut self, name: &str, help: &str, samples: &[(&str, f64)]) {
        self.family(name, help, "gauge", samples);
    }
    fn counter(&mut self, name: &str, help: &str, samples: &[(&str, f64)]) {
        self.family(name, help, "counter", samples);
    }
}

/// VmRSS from `/proc/self/status`, in bytes.
pub fn proc_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

pub fn proc_open_fds() -> Option<usize> {
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_prometheus_text() {
        let presence = Presence {
            node: "n".into(),
            peers: vec![Peer {
                name: "p".into(),
                listeners: 2,
                rooms: Vec::new(),
            }],
            listeners: 1,
            rooms: Vec::new(),
        };
        let stats = Stats {
            published_local: 3,
            ..Stats::default()
        };
        let limits = crate::room::Limits {
            history: 5,
            max_rooms: 5,
            max_bytes: 1 << 20,
            idle_micros: 1,
        };
        let mut rooms = Rooms::new("n", limits);
        let general = rooms.open("general", 1).unwrap();
        rooms.publish(general, "hi", 1);
        let s = Snapshot {
            phase: Phase::Serving,
            uptime: Duration::from_secs(5),
            presence: &presence,
            local_listeners: 1,
            stats: &stats,
            rooms: &rooms,
            durable: None,
            bus: None,
        };
        let text = metrics(&s);
        assert!(text.contains("watercooler_messages_published_total{origin=\"local\"} 3\n"));
        assert!(
            text.contains("watercooler_room_messages_total{room=\"general\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("watercooler_rooms 2\n"));
        assert!(text.contains(
            "# TYPE watercooler_cluster_listeners gauge\nwatercooler_cluster_listeners 3\n"
        ));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (name, value) = line.rsplit_once(' ').unwrap();
            assert!(name.starts_with("watercooler_"), "{line}");
            value.parse::<f64>().unwrap();
        }
        let (code, body) = healthz(&s);
        assert_eq!(code, 200);
        assert!(
            body.starts_with("{\"status\":\"serving\",\"node\":\"n\""),
            "{body}"
        );
        let draining = Snapshot {
            phase: Phase::Draining,
            ..s
        };
        assert_eq!(healthz(&draining).0, 503);
    }
}
