//! The report: every figure of one run, computed from the merged listener
//! `Tally`, the publisher's `Log` and the server samples, printed as a
//! two-column table and as one `JSON {...}` line (the keys `bench/run.sh`
//! and `bench/table.py` read). Latency counts from each message's due time;
//! the per-message figures split it: how late the publish left (send − due),
//! the first delivery (send to the earliest listener: the publish path) and
//! the spread (earliest to latest listener: the fan-out).

use crate::engine::Mode;
use crate::schedule::{Log, Outcome};
use crate::stats::{own_cpu_s, Histogram, RoomCount, Tally};

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
    /// Rooms the listeners were spread over (1: the URL as given).
    pub rooms: u32,
    /// HTTP/2 streams per connection (0: one HTTP/1.1 connection each).
    pub h2_streams: usize,
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
/// each of those was owed to every connected listener of its room.
/// Deliveries of messages without an answer (in flight when publishing
/// ended) are counted apart.
#[derive(Default, PartialEq, Eq, Debug)]
struct Deliveries {
    /// Deliveries owed: acknowledged messages × their room's listeners.
    expected: u64,
    delivered: u64,
    lost: u64,
    unacked: u64,
    /// Rooms where some listener missed an acknowledged message.
    rooms_with_loss: u64,
}

fn deliveries(t: &Tally, log: &Log) -> Deliveries {
    let mut d = Deliveries::default();
    let mut lost_in = vec![0u64; log.plan.rooms as usize];
    for seq in 0..log.plan.total {
        let got = t.fanout.get(seq).map_or(0, |s| s.count);
        let room = log.plan.room_of(seq);
        match log.get(seq).map(|m| m.outcome) {
            Some(Outcome::Acked) => {
                let owed = t.room(room).connected;
                d.expected += owed;
                d.delivered += got;
                d.lost += owed.saturating_sub(got);
                lost_in[room as usize] += owed.saturating_sub(got);
            }
            _ => d.unacked += got,
        }
    }
    d.rooms_with_loss = lost_in.iter().filter(|&&n| n > 0).count() as u64;
    d
}

/// Rooms whose listeners saw a duplicate, an out-of-order message, or
/// another room's message.
fn rooms_with(t: &Tally, bad: impl Fn(&RoomCount) -> bool) -> u64 {
    t.rooms.iter().filter(|r| bad(r)).count() as u64
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
        let d = deliveries(t, log);
        let (delivered, lost, unacked) = (d.delivered, d.lost, d.unacked);
        // Listeners of the rooms that got messages, per such room.
        let publish_rooms = plan.rooms.min(a.rooms.max(1));
        let per_room_listeners = (0..publish_rooms).map(|r| t.room(r).connected).sum::<u64>()
            as f64
            / f64::from(publish_rooms.max(1));
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
        // Per message acknowledged: the publish, the fan-out to its room,
        // and whatever else the server did meanwhile.
        let cpu_msg = match (idle.cpu_s, after.cpu_s) {
            (Some(b), Some(e)) if acked > 0 => Float((e - b) * 1e6 / acked as f64, 2),
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
                    "h2_streams_per_conn",
                    "HTTP/2 streams per connection (0: HTTP/1.1)",
                    Int(a.h2_streams as u64),
                ),
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
                (
                    "rooms",
                    "rooms (listeners spread over)",
                    Int(u64::from(a.rooms.max(1))),
                ),
                (
                    "publish_rooms",
                    "rooms published in",
                    Int(u64::from(publish_rooms)),
                ),
                ("expected", "expected", Int(d.expected)),
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
                ("leaked", "another room's messages", Int(t.leaked)),
                ("rooms_with_loss", "rooms with loss", Int(d.rooms_with_loss)),
                (
                    "rooms_with_dup_or_ooo",
                    "rooms with dup or out-of-order",
                    Int(rooms_with(t, |r| r.duplicated + r.out_of_order > 0)),
                ),
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
                    Float(a.rate * per_room_listeners, 0),
                ),
                ("deliveries_per_s", "deliveries per s", per_s),
                ("server_cpu_s", "server CPU (s)", cpu),
                (
                    "server_cpu_us_per_delivery",
                    "server CPU per delivery (µs)",
                    cpu_run,
                ),
                (
                    "server_cpu_us_per_message",
                    "server CPU per message (µs)",
                    cpu_msg,
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
            t.record(0, Seen::New, seq, 3_000, 1_000, 2_000);
        }
        t.record(0, Seen::New, 0, 3_000, 1_000, 2_000);
        t.rooms = vec![RoomCount {
            connected: 2,
            ..RoomCount::default()
        }];
        let d = deliveries(&t, &log);
        assert_eq!((d.delivered, d.lost, d.unacked), (3, 1, 1));
        let json = Report::new(
            &Asked {
                mode: Mode::Nchan,
                listeners: 2,
                rate: 100.0,
                processes: 1,
                rooms: 1,
                h2_streams: 0,
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

    #[test]
    fn loss_is_owed_per_room() {
        // 6 messages over 3 rooms (message i in room i % 3), all
        // acknowledged. Room 0: 2 listeners, room 1: 1, room 2: 3 listeners
        // of which one misses message 5; room 1's listener gets 1 twice;
        // a listener in room 3 (which gets no messages) sees 0: leaked.
        let mut log = Log::new(Plan::new(6, 100.0, 1, Instant::now(), 1_000).with_rooms(3));
        for i in 0..6 {
            log.sent(i, 0, 2_000);
            log.answered(i, 2_100, true);
        }
        let mut t = Tally::default();
        for (room, n) in [(0, 2), (1, 1), (2, 3), (3, 1)] {
            for _ in 0..n {
                t.joined(room);
            }
        }
        for seq in 0..6u32 {
            let room = seq % 3;
            let got = [2, 1, 3][room as usize] - u64::from(seq == 5);
            for _ in 0..got {
                t.record(room, Seen::New, seq, 3_000, 1_000, 2_000);
            }
        }
        t.record(1, Seen::Duplicate, 1, 3_000, 1_000, 2_000);
        t.leak(3);
        let d = deliveries(&t, &log);
        assert_eq!(
            d,
            Deliveries {
                expected: 12,
                delivered: 11,
                lost: 1,
                unacked: 0,
                rooms_with_loss: 1,
            }
        );
        assert_eq!(rooms_with(&t, |r| r.duplicated > 0), 1);
        assert_eq!(rooms_with(&t, |r| r.leaked > 0), 1);
        let json = Report::new(
            &Asked {
                mode: Mode::Watercooler,
                listeners: 7,
                rate: 100.0,
                processes: 1,
                rooms: 4,
                h2_streams: 0,
            },
            &t,
            &log,
            &Sample {
                rss_kib: None,
                cpu_s: None,
            },
            &Sample {
                rss_kib: None,
                cpu_s: Some(1.0),
            },
            &Sample {
                rss_kib: None,
                cpu_s: Some(1.003),
            },
            None,
        )
        .json();
        for want in [
            "\"rooms\":4,",
            "\"publish_rooms\":3,",
            "\"expected\":12,",
            "\"lost\":1,",
            "\"leaked\":1,",
            "\"rooms_with_loss\":1,",
            "\"rooms_with_dup_or_ooo\":1,",
            // 100/s × 2 listeners per published room on average.
            "\"deliveries_per_s_offered\":200,",
            // 3 ms over 6 messages.
            "\"server_cpu_us_per_message\":500.00,",
        ] {
            assert!(json.contains(want), "{want} in {json}");
        }
    }
}
