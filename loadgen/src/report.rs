//! The report: every figure of one run, computed from the merged listener
//! `Tally`, the publisher's `Log` and the server samples, printed as a
//! two-column table and as one `JSON {...}` line (the keys `bench/run.sh`
//! and `bench/table.py` read). Latency counts from each message's due time;
//! the per-message figures split it: how late the publish left (send − due),
//! the first delivery (send to the earliest listener: the publish path) and
//! the spread (earliest to latest listener: the fan-out).

use crate::engine::Mode;
use crate::schedule::{Log, Outcome};
use crate::stats::{own_cpu_s, Histogram, Tally};

/// Server memory and CPU at one moment (summed over the server PIDs).
pub struct Sample {
    pub rss_kib: Option<u64>,
    pub cpu_s: Option<f64>,
}

/// What the run was asked to do.
pub struct Asked {
    pub mode: Mode,
    pub listeners: usize,
    pub rate: f64,
    pub processes: usize,
}

pub struct Report {
    fields: Vec<(&'static str, &'static str, Value)>,
}

enum Value {
    Int(u64),
    Float(f64, usize),
    Missing,
    Text(String),
}

use Value::*;

/// Milliseconds with two decimals, or missing for an empty histogram.
fn ms(h: &Histogram, q: f64) -> Value {
    if h.total > 0 {
        Float(h.quantile(q) as f64 / 1000.0, 2)
    } else {
        Missing
    }
}

/// Delivered and lost, over the messages the server acknowledged only:
/// each of those was owed to every connected listener. Deliveries of
/// messages without an answer (in flight when publishing ended) are
/// counted apart.
fn deliveries(t: &Tally, log: &Log) -> (u64, u64, u64) {
    let (mut delivered, mut lost, mut unacked) = (0, 0, 0);
    for seq in 0..log.plan.total {
        let got = t.fanout.get(seq).map_or(0, |s| s.count);
        match log.get(seq).map(|m| m.outcome) {
            Some(Outcome::Acked) => {
                delivered += got;
                lost += t.connected.saturating_sub(got);
            }
            _ => unacked += got,
        }
    }
    (delivered, lost, unacked)
}

impl Report {
    /// `window` is the publish-and-drain phase: its wall time and loadgen's
    /// CPU time in it (seconds), from which both sides' CPU share follows.
    /// A side near 100 % set the pace; a server well under 100 % that still
    /// falls behind was short of CPU (other work on its core) or waiting.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        a: &Asked,
        t: &Tally,
        log: &Log,
        before: &Sample,
        idle: &Sample,
        after: &Sample,
        window: Option<(f64, f64)>,
    ) -> Report {
        let plan = &log.plan;
        let acked = log.count(Outcome::Acked);
        let errors = log.count(Outcome::Refused) + log.count(Outcome::Broken);
        let unanswered = log.count(Outcome::InFlight);
        let unsent = log.count(Outcome::Unsent);
        let (delivered, lost, unacked) = deliveries(t, log);
        let rss = |x: Option<u64>| x.map_or(Missing, Int);
        let per_listener = match (before.rss_kib, idle.rss_kib) {
            (Some(b), Some(i)) if t.connected > 0 => {
                Float((i as f64 - b as f64) * 1024.0 / t.connected as f64, 0)
            }
            _ => Missing,
        };
        let achieved = log.achieved_rate().map_or(Missing, |r| Float(r, 1));
        let deliver_span = t.last_rx_us.saturating_sub(plan.start_us) as f64 / 1e6;
        let per_s = if t.received > 0 && deliver_span > 0.0 {
            Float(t.received as f64 / deliver_span, 0)
        } else {
            Missing
        };
        let from_send = t.fanout.first_delivery(|seq| {
            log.get(seq)
                .filter(|m| m.outcome != Outcome::Unsent)
                .map(|m| m.sent_us)
        });
        let from_due = t.fanout.first_delivery(|seq| Some(plan.due_us(seq)));
        let spread = t.fanout.spread();
        let (late, own, ack) = (log.late(), log.own_delay(), log.ack());
        let cpu = match (before.cpu_s, after.cpu_s) {
            (Some(b), Some(e)) => Float(e - b, 2),
            _ => Missing,
        };
        let cpu_run = match (idle.cpu_s, after.cpu_s) {
            (Some(b), Some(e)) if t.received > 0 => Float((e - b) * 1e6 / t.received as f64, 2),
            _ => Missing,
        };
        let share = |cpu: Option<f64>| match (cpu, window) {
            (Some(c), Some((wall, _))) if wall > 0.0 => Float(c * 100.0 / wall, 0),
            _ => Missing,
        };
        let server_busy = share(idle.cpu_s.zip(after.cpu_s).map(|(b, e)| e - b));
        let loadgen_busy = share(window.map(|(_, c)| c));
        let mode = match a.mode {
            Mode::Watercooler => "watercooler",
            Mode::Nchan => "nchan",
        };
        let lat = &t.latency;
        let lat_send = &t.latency_send;
        Report {
            fields: vec![
                ("mode", "mode", Text(mode.into())),
                ("processes", "loadgen processes", Int(a.processes as u64)),
                (
                    "listeners_requested",
                    "listeners requested",
                    Int(a.listeners as u64),
                ),
                (
                    "listeners_connected",
                    "listeners connected",
                    Int(t.connected),
                ),
                (
                    "connect_errors",
                    "connect errors (retried)",
                    Int(t.connect_errors),
                ),
                ("connect_time_s", "connect time (s)", Float(t.connect_s, 2)),
                (
                    "server_rss_before_kib",
                    "server RSS before (KiB)",
                    rss(before.rss_kib),
                ),
                (
                    "server_rss_idle_kib",
                    "server RSS idle (KiB)",
                    rss(idle.rss_kib),
                ),
                (
                    "server_rss_after_kib",
                    "server RSS after (KiB)",
                    rss(after.rss_kib),
                ),
                (
                    "rss_per_listener_bytes",
                    "RSS per listener (bytes)",
                    per_listener,
                ),
                (
                    "publishers",
                    "publisher connections",
                    Int(u64::from(plan.publishers)),
                ),
                (
                    "in_flight_per_publisher",
                    "requests in flight each (max)",
                    Int(1),
                ),
                ("offered", "messages offered", Int(u64::from(plan.total))),
                ("sent", "sent", Int(u64::from(plan.total) - unsent)),
                ("published", "published (acknowledged)", Int(acked)),
                ("publish_errors", "publish errors", Int(errors)),
                ("unanswered", "sent, never answered", Int(unanswered)),
                ("unsent", "not sent before the cutoff", Int(unsent)),
                (
                    "publish_rate_target",
                    "publish rate offered (/s)",
                    Float(a.rate, 1),
                ),
                (
                    "publish_rate_achieved",
                    "publish rate acknowledged (/s)",
                    achieved,
                ),
                (
                    "publish_late_p50_ms",
                    "publish late p50 (ms)",
                    ms(&late, 0.50),
                ),
                (
                    "publish_late_p99_ms",
                    "publish late p99 (ms)",
                    ms(&late, 0.99),
                ),
                (
                    "publish_late_max_ms",
                    "publish late max (ms)",
                    ms(&late, 1.0),
                ),
                (
                    "publish_late_own_p99_ms",
                    "  of it loadgen's own, p99 (ms)",
                    ms(&own, 0.99),
                ),
                ("ack_p50_ms", "publish answer p50 (ms)", ms(&ack, 0.50)),
                ("ack_p99_ms", "publish answer p99 (ms)", ms(&ack, 0.99)),
                ("expected", "expected", Int(acked * t.connected)),
                ("delivered", "delivered", Int(delivered)),
                ("lost", "lost", Int(lost)),
                ("duplicated", "duplicated", Int(t.duplicated)),
                (
                    "out_of_order",
                    "out-of-order (per publisher)",
                    Int(t.out_of_order),
                ),
                (
                    "delivered_unacked",
                    "delivered, unacknowledged msgs",
                    Int(unacked),
                ),
                ("foreign", "other messages (not ours)", Int(t.foreign)),
                (
                    "disconnected",
                    "listeners dropped mid-run",
                    Int(t.disconnected),
                ),
                ("latency_from", "latency counted from", Text("due".into())),
                ("latency_p50_ms", "latency p50 (ms)", ms(lat, 0.50)),
                ("latency_p90_ms", "latency p90 (ms)", ms(lat, 0.90)),
                ("latency_p99_ms", "latency p99 (ms)", ms(lat, 0.99)),
                ("latency_max_ms", "latency max (ms)", ms(lat, 1.0)),
                (
                    "latency_send_p50_ms",
                    "from send time p50 (ms)",
                    ms(lat_send, 0.50),
                ),
                (
                    "latency_send_p99_ms",
                    "from send time p99 (ms)",
                    ms(lat_send, 0.99),
                ),
                (
                    "first_delivery_p50_ms",
                    "first delivery p50 (ms)",
                    ms(&from_send, 0.50),
                ),
                (
                    "first_delivery_p99_ms",
                    "first delivery p99 (ms)",
                    ms(&from_send, 0.99),
                ),
                (
                    "first_delivery_due_p50_ms",
                    "first delivery from due p50",
                    ms(&from_due, 0.50),
                ),
                (
                    "first_delivery_due_p99_ms",
                    "first delivery from due p99",
                    ms(&from_due, 0.99),
                ),
                (
                    "spread_p50_ms",
                    "fan-out spread p50 (ms)",
                    ms(&spread, 0.50),
                ),
                (
                    "spread_p99_ms",
                    "fan-out spread p99 (ms)",
                    ms(&spread, 0.99),
                ),
                (
                    "deliveries_per_s_offered",
                    "deliveries per s offered",
                    Float(a.rate * t.connected as f64, 0),
                ),
                ("deliveries_per_s", "deliveries per s", per_s),
                ("server_cpu_s", "server CPU (s)", cpu),
                (
                    "server_cpu_us_per_delivery",
                    "server CPU per delivery (µs)",
                    cpu_run,
                ),
                ("loadgen_cpu_s", "loadgen CPU (s)", Float(own_cpu_s(), 2)),
                (
                    "server_busy_pct",
                    "server CPU, publish+drain (%)",
                    server_busy,
                ),
                (
                    "loadgen_busy_pct",
                    "loadgen CPU, publish+drain (%)",
                    loadgen_busy,
                ),
            ],
        }
    }

    pub fn print_table(&self) {
        for (_, label, v) in &self.fields {
            let v = match v {
                Int(n) => n.to_string(),
                Float(x, d) => format!("{x:.d$}", d = *d),
                Missing => "-".into(),
                Text(s) => s.clone(),
            };
            println!("{label:<32} {v:>14}");
        }
    }

    pub fn json(&self) -> String {
        let parts: Vec<String> = self
            .fields
            .iter()
            .map(|(k, _, v)| {
                let v = match v {
                    Int(n) => n.to_string(),
                    Float(x, d) if x.is_finite() => format!("{x:.d$}", d = *d),
                    Float(..) | Missing => "null".into(),
                    Text(s) => format!("\"{s}\""),
                };
                format!("\"{k}\":{v}")
            })
            .collect();
        format!("{{{}}}", parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::Plan;
    use crate::stats::Seen;
    use std::time::Instant;

    #[test]
    fn loss_counts_acknowledged_messages_only() {
        // 4 messages, 2 listeners: 0 and 1 acknowledged, 2 sent but never
        // answered, 3 never sent. Listener A gets 0, 1, 2; B gets 0 only.
        let mut log = Log::new(Plan::new(4, 100.0, 2, Instant::now(), 1_000));
        for i in 0..3 {
            log.sent(i, 0, 2_000);
        }
        log.answered(0, 2_500, true);
        log.answered(1, 2_600, true);
        let mut t = Tally {
            connected: 2,
            ..Tally::default()
        };
        for seq in [0, 1, 2] {
            t.record(Seen::New, seq, 3_000, 1_000, 2_000);
        }
        t.record(Seen::New, 0, 3_000, 1_000, 2_000);
        assert_eq!(deliveries(&t, &log), (3, 1, 1));
        let json = Report::new(
            &Asked {
                mode: Mode::Nchan,
                listeners: 2,
                rate: 100.0,
                processes: 1,
            },
            &t,
            &log,
            &Sample {
                rss_kib: None,
                cpu_s: None,
            },
            &Sample {
                rss_kib: None,
                cpu_s: None,
            },
            &Sample {
                rss_kib: None,
                cpu_s: None,
            },
            Some((2.0, 0.5)),
        )
        .json();
        for want in [
            "\"published\":2,",
            "\"lost\":1,",
            "\"unanswered\":1,",
            "\"unsent\":1,",
            "\"expected\":4,",
            "\"publish_rate_achieved\":10000.0,",
            "\"latency_from\":\"due\"",
            "\"server_busy_pct\":null,",
            "\"loadgen_busy_pct\":25",
        ] {
            assert!(json.contains(want), "{want} in {json}");
        }
    }
}
