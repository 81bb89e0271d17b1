//! What is counted and how it is merged: a log-bucketed latency histogram
//! (exact below 2 ms, within 0.1 % above, so per-process histograms merge
//! without keeping raw samples), per-listener order tracking (one sequence
//! per publisher connection; duplicates and out-of-order arrivals told apart
//! exactly, with a list of gaps instead of a bitmap), each message's first
//! and last receive time and delivery count (the fan-out of one message,
//! kept per message and merged by min/max/sum, never by averaging
//! percentiles), the `Tally` a listener process reports to its parent as one
//! text line, and the server figures read from `/proc`. Latencies count from
//! a message's due time (see `schedule.rs`); the send time is kept beside it
//! so the old send-stamped figure can be shown for comparison.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

pub fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

const LINEAR: u64 = 2048;
const SUB_BITS: u32 = 10;

/// Latencies in microseconds.
#[derive(Default, Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    pub total: u64,
    pub max: u64,
}

fn bucket(v: u64) -> usize {
    if v < LINEAR {
        return v as usize;
    }
    let e = 63 - v.leading_zeros(); // >= 11
    let sub = (v >> (e - SUB_BITS)) & ((1 << SUB_BITS) - 1);
    (LINEAR + (u64::from(e) - 11) * (1 << SUB_BITS) + sub) as usize
}

fn bucket_value(i: usize) -> u64 {
    let i = i as u64;
    if i < LINEAR {
        return i;
    }
    let j = i - LINEAR;
    let e = j / (1 << SUB_BITS) + 11;
    let sub = j % (1 << SUB_BITS);
    (1 << e) + (sub << (e - u64::from(SUB_BITS)))
}

impl Histogram {
    pub fn record(&mut self, v: u64) {
        self.add(bucket(v), 1);
        self.max = self.max.max(v);
    }

    fn add(&mut self, i: usize, n: u64) {
        if i >= self.counts.len() {
            self.counts.resize(i + 1, 0);
        }
        self.counts[i] += n;
        self.total += n;
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (i, &n) in other.counts.iter().enumerate() {
            if n > 0 {
                self.add(i, n);
            }
        }
        self.max = self.max.max(other.max);
    }

    /// The value at quantile `q` (0..=1), in microseconds.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let want = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        if want == self.total {
            return self.max;
        }
        let mut seen = 0;
        for (i, &n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= want {
                return bucket_value(i).min(self.max);
            }
        }
        self.max
    }

    /// `bucket:count,...` (only non-empty buckets), then `max`.
    pub fn encode(&self) -> String {
        let mut s = format!("{}", self.max);
        for (i, &n) in self.counts.iter().enumerate() {
            if n > 0 {
                s.push_str(&format!(",{i}:{n}"));
            }
        }
        s
    }

    pub fn decode(s: &str) -> Option<Histogram> {
        let mut h = Histogram::default();
        let mut parts = s.split(',');
        let max = parts.next()?.parse().ok()?;
        for p in parts {
            let (i, n) = p.split_once(':')?;
            h.add(i.parse().ok()?, n.parse().ok()?);
        }
        h.max = max;
        Some(h)
    }
}

pub enum Seen {
    New,
    Late,
    Duplicate,
}

/// One listener's view of the sequence numbers it has received.
#[derive(Default)]
pub struct Order {
    last: Option<u32>,
    /// Inclusive ranges skipped over and not yet received.
    gaps: Vec<(u32, u32)>,
}

impl Order {
    pub fn see(&mut self, s: u32) -> Seen {
        match self.last {
            None => {
                if s > 0 {
                    self.gaps.push((0, s - 1));
                }
                self.last = Some(s);
                Seen::New
            }
            Some(l) if s > l => {
                if s > l + 1 {
                    self.gaps.push((l + 1, s - 1));
                }
                self.last = Some(s);
                Seen::New
            }
            Some(l) if s == l => Seen::Duplicate,
            Some(_) => match self.gaps.iter().position(|&(a, b)| a <= s && s <= b) {
                None => Seen::Duplicate,
                Some(i) => {
                    let (a, b) = self.gaps[i];
                    match (s == a, s == b) {
                        (true, true) => {
                            self.gaps.remove(i);
                        }
                        (true, false) => self.gaps[i].0 = s + 1,
                        (false, true) => self.gaps[i].1 = s - 1,
                        (false, false) => {
                            self.gaps[i].1 = s - 1;
                            self.gaps.insert(i + 1, (s + 1, b));
                        }
                    }
                    Seen::Late
                }
            },
        }
    }
}

/// One listener's `Order`s, one per publisher connection. Message `seq`
/// is the `seq / n`-th of publisher `seq % n` (round-robin, `schedule.rs`).
/// Only one connection's messages have an order: each carries one request
/// at a time, so the server saw them in sequence; messages sent on
/// different connections at once may rightly arrive either way round.
pub struct Orders(Vec<Order>);

impl Orders {
    pub fn new(publishers: u32) -> Orders {
        Orders((0..publishers.max(1)).map(|_| Order::default()).collect())
    }

    pub fn see(&mut self, seq: u32) -> Seen {
        let n = self.0.len() as u32;
        self.0[(seq % n) as usize].see(seq / n)
    }
}

/// One message over all listeners: the wall-clock times (µs) of its earliest
/// and latest receipt, and how many listeners received it (duplicates
/// excluded).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Span {
    pub first: u64,
    pub last: u64,
    pub count: u64,
}

/// The `Span` of every message delivered at least once, indexed by sequence
/// number. The caller keeps sequence numbers below the message count, so
/// this stays O(messages) however many listeners there are.
#[derive(Default, Clone)]
pub struct Fanout {
    spans: Vec<Option<Span>>,
}

impl Fanout {
    /// One listener's first receipt of message `seq`, at `rx_us`.
    pub fn record(&mut self, seq: u32, rx_us: u64) {
        self.widen(
            seq as usize,
            Span {
                first: rx_us,
                last: rx_us,
                count: 1,
            },
        );
    }

    fn widen(&mut self, i: usize, s: Span) {
        if i >= self.spans.len() {
            self.spans.resize(i + 1, None);
        }
        let slot = &mut self.spans[i];
        *slot = Some(match *slot {
            None => s,
            Some(o) => Span {
                first: o.first.min(s.first),
                last: o.last.max(s.last),
                count: o.count + s.count,
            },
        });
    }

    /// Another process's listeners: earliest of the firsts, latest of the
    /// lasts, sum of the counts, per message.
    pub fn merge(&mut self, other: &Fanout) {
        for (i, s) in other.spans.iter().enumerate() {
            if let Some(s) = *s {
                self.widen(i, s);
            }
        }
    }

    pub fn get(&self, seq: u32) -> Option<Span> {
        self.spans.get(seq as usize).copied().flatten()
    }

    /// From `base(seq)` (a send or due time, µs; `None` skips the message)
    /// to the first listener's receipt, one sample per message.
    pub fn first_delivery(&self, base: impl Fn(u32) -> Option<u64>) -> Histogram {
        let mut h = Histogram::default();
        for (i, s) in self.spans.iter().enumerate() {
            if let (Some(s), Some(b)) = (s, base(i as u32)) {
                h.record(s.first.saturating_sub(b));
            }
        }
        h
    }

    /// Last minus first receipt of the same message, one sample per message.
    pub fn spread(&self) -> Histogram {
        let mut h = Histogram::default();
        for s in self.spans.iter().flatten() {
            h.record(s.last - s.first);
        }
        h
    }

    /// `seq:first:last:count,...` for the delivered messages only.
    pub fn encode(&self) -> String {
        let parts: Vec<String> = self
            .spans
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.map(|s| format!("{i}:{}:{}:{}", s.first, s.last, s.count)))
            .collect();
        parts.join(",")
    }

    /// `None` on a malformed entry or a sequence number not below `messages`.
    pub fn decode(text: &str, messages: u32) -> Option<Fanout> {
        let mut f = Fanout::default();
        for p in text.split(',').filter(|p| !p.is_empty()) {
            let mut it = p.split(':');
            let seq: u32 = it.next()?.parse().ok()?;
            let first = it.next()?.parse().ok()?;
            let last = it.next()?.parse().ok()?;
            let count = it.next()?.parse().ok()?;
            if seq >= messages || first > last || count == 0 || it.next().is_some() {
                return None;
            }
            f.widen(seq as usize, Span { first, last, count });
        }
        Some(f)
    }
}

/// One room's listeners in one process: how many connected and dropped,
/// and what they received of the room's own messages (a listener expects
/// exactly its room's messages; another room's are counted as leaked).
#[derive(Default, Clone, Copy, PartialEq, Eq, Debug)]
pub struct RoomCount {
    pub connected: u64,
    pub disconnected: u64,
    pub distinct: u64,
    pub duplicated: u64,
    pub out_of_order: u64,
    pub leaked: u64,
}

impl RoomCount {
    fn add(&mut self, o: &RoomCount) {
        self.connected += o.connected;
        self.disconnected += o.disconnected;
        self.distinct += o.distinct;
        self.duplicated += o.duplicated;
        self.out_of_order += o.out_of_order;
        self.leaked += o.leaked;
    }

    pub fn alive(&self) -> u64 {
        self.connected.saturating_sub(self.disconnected)
    }
}

/// Counts from the listener side of one process.
#[derive(Default, Clone)]
pub struct Tally {
    pub connected: u64,
    pub failed: u64,
    pub connect_errors: u64,
    pub disconnected: u64,
    pub connect_s: f64,
    /// Message events received, duplicates included.
    pub received: u64,
    pub distinct: u64,
    pub duplicated: u64,
    pub out_of_order: u64,
    /// Message events whose text is not one of ours (other chatters).
    pub foreign: u64,
    /// Our messages that reached a listener of another room: never allowed.
    pub leaked: u64,
    /// Per room (index = room number), for the listeners of this process.
    pub rooms: Vec<RoomCount>,
    pub first_rx_us: u64,
    pub last_rx_us: u64,
    /// Due time to receipt, one sample per delivery, duplicates included.
    pub latency: Histogram,
    /// Send time to receipt, likewise: the figure loadgen reported before it
    /// stamped due times, kept for comparison.
    pub latency_send: Histogram,
    /// First and last delivery per message, duplicates excluded.
    pub fanout: Fanout,
}

impl Tally {
    pub fn room_mut(&mut self, room: u32) -> &mut RoomCount {
        let i = room as usize;
        if i >= self.rooms.len() {
            self.rooms.resize(i + 1, RoomCount::default());
        }
        &mut self.rooms[i]
    }

    pub fn room(&self, room: u32) -> RoomCount {
        self.rooms.get(room as usize).copied().unwrap_or_default()
    }

    /// A listener of `room` has its stream.
    pub fn joined(&mut self, room: u32) {
        self.connected += 1;
        self.room_mut(room).connected += 1;
    }

    /// A listener of `room` lost its stream mid-run.
    pub fn left(&mut self, room: u32) {
        self.disconnected += 1;
        self.room_mut(room).disconnected += 1;
    }

    /// A listener of `room` received one of our messages that belongs to
    /// another room.
    pub fn leak(&mut self, room: u32) {
        self.leaked += 1;
        self.room_mut(room).leaked += 1;
    }

    /// The distinct deliveries this process's live listeners owe, when
    /// `owed[r]` messages of room `r` were published (rooms past the end of
    /// `owed` got none).
    pub fn owed_deliveries(&self, owed: &[u64]) -> u64 {
        self.rooms
            .iter()
            .zip(owed)
            .map(|(r, &n)| r.alive() * n)
            .sum()
    }

    /// One arrival at a listener of `room` of message `seq` (of that room),
    /// due at `due_us`, sent at `sent_us`, read at `now_us`.
    #[allow(clippy::too_many_arguments)]
    pub fn record(
        &mut self,
        room: u32,
        seen: Seen,
        seq: u32,
        now_us: u64,
        due_us: u64,
        sent_us: u64,
    ) {
        self.received += 1;
        let r = self.room_mut(room);
        match seen {
            Seen::New => r.distinct += 1,
            Seen::Late => {
                r.distinct += 1;
                r.out_of_order += 1;
            }
            Seen::Duplicate => r.duplicated += 1,
        }
        match seen {
            Seen::New => self.distinct += 1,
            Seen::Late => {
                self.distinct += 1;
                self.out_of_order += 1;
            }
            Seen::Duplicate => self.duplicated += 1,
        }
        if !matches!(seen, Seen::Duplicate) {
            self.fanout.record(seq, now_us);
        }
        if self.first_rx_us == 0 {
            self.first_rx_us = now_us;
        }
        self.last_rx_us = now_us;
        self.latency.record(now_us.saturating_sub(due_us));
        self.latency_send.record(now_us.saturating_sub(sent_us));
    }

    pub fn merge(&mut self, o: &Tally) {
        self.connected += o.connected;
        self.failed += o.failed;
        self.connect_errors += o.connect_errors;
        self.disconnected += o.disconnected;
        self.connect_s = self.connect_s.max(o.connect_s);
        self.received += o.received;
        self.distinct += o.distinct;
        self.duplicated += o.duplicated;
        self.out_of_order += o.out_of_order;
        self.foreign += o.foreign;
        self.leaked += o.leaked;
        for (i, r) in o.rooms.iter().enumerate() {
            self.room_mut(i as u32).add(r);
        }
        if o.first_rx_us != 0 && (self.first_rx_us == 0 || o.first_rx_us < self.first_rx_us) {
            self.first_rx_us = o.first_rx_us;
        }
        self.last_rx_us = self.last_rx_us.max(o.last_rx_us);
        self.latency.merge(&o.latency);
        self.latency_send.merge(&o.latency_send);
        self.fanout.merge(&o.fanout);
    }

    /// One line, `STATS key=value ...`, for a child to print to its parent.
    pub fn encode(&self) -> String {
        format!(
            "STATS connected={} failed={} connect_errors={} disconnected={} connect_s={} received={} distinct={} duplicated={} out_of_order={} foreign={} leaked={} first_rx_us={} last_rx_us={} latency={} latency_send={} fanout={} rooms={}",
            self.connected, self.failed, self.connect_errors, self.disconnected, self.connect_s,
            self.received, self.distinct, self.duplicated, self.out_of_order, self.foreign, self.leaked,
            self.first_rx_us, self.last_rx_us, self.latency.encode(), self.latency_send.encode(), self.fanout.encode(),
            self.encode_rooms()
        )
    }

    /// `room:connected:disconnected:distinct:duplicated:out_of_order:leaked`
    /// for each room with listeners here, joined by commas.
    fn encode_rooms(&self) -> String {
        let parts: Vec<String> = self
            .rooms
            .iter()
            .enumerate()
            .filter(|(_, r)| **r != RoomCount::default())
            .map(|(i, r)| {
                format!(
                    "{i}:{}:{}:{}:{}:{}:{}",
                    r.connected, r.disconnected, r.distinct, r.duplicated, r.out_of_order, r.leaked
                )
            })
            .collect();
        parts.join(",")
    }

    fn decode_rooms(text: &str) -> Option<Vec<RoomCount>> {
        let mut t = Tally::default();
        for p in text.split(',').filter(|p| !p.is_empty()) {
            let v: Vec<u64> = p
                .split(':')
                .map(|x| x.parse().ok())
                .collect::<Option<_>>()?;
            let [i, connected, disconnected, distinct, duplicated, out_of_order, leaked] = v[..]
            else {
                return None;
            };
            let i = u32::try_from(i).ok().filter(|&i| i < 1 << 24)?;
            t.room_mut(i).add(&RoomCount {
                connected,
                disconnected,
                distinct,
                duplicated,
                out_of_order,
                leaked,
            });
        }
        Some(t.rooms)
    }

    /// `None` unless `line` is a whole `STATS` line whose sequence numbers
    /// are all below `messages`.
    pub fn decode(line: &str, messages: u32) -> Option<Tally> {
        let rest = line.strip_prefix("STATS ")?;
        let kv: BTreeMap<&str, &str> = rest.split(' ').filter_map(|p| p.split_once('=')).collect();
        let n = |k: &str| kv.get(k).and_then(|v| v.parse::<u64>().ok());
        Some(Tally {
            connected: n("connected")?,
            failed: n("failed")?,
            connect_errors: n("connect_errors")?,
            disconnected: n("disconnected")?,
            connect_s: kv.get("connect_s")?.parse().ok()?,
            received: n("received")?,
            distinct: n("distinct")?,
            duplicated: n("duplicated")?,
            out_of_order: n("out_of_order")?,
            foreign: n("foreign")?,
            leaked: n("leaked")?,
            rooms: Tally::decode_rooms(kv.get("rooms")?)?,
            first_rx_us: n("first_rx_us")?,
            last_rx_us: n("last_rx_us")?,
            latency: Histogram::decode(kv.get("latency")?)?,
            latency_send: Histogram::decode(kv.get("latency_send")?)?,
            fanout: Fanout::decode(kv.get("fanout")?, messages)?,
        })
    }
}

/// `VmRSS` of a process, KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU time of a process, seconds: the sum of its threads' on-CPU time in
/// nanoseconds (`/proc/PID/task/*/schedstat`), or else utime + stime in
/// clock ticks (10 ms here, too coarse for a run of a few thousand
/// deliveries).
pub fn cpu_s(pid: u32) -> Option<f64> {
    schedstat_s(pid).or_else(|| ticks_s(pid))
}

fn schedstat_s(pid: u32) -> Option<f64> {
    let mut ns = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let s = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
        ns += s.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    (ns > 0).then_some(ns as f64 / 1e9)
}

fn ticks_s(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which may hold spaces and parentheses.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state); utime and stime are fields 14 and 15.
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1);
    Some(ticks as f64 / hz as f64)
}

/// Sum over the given servers; `None` if any cannot be read.
pub fn sum<F: Fn(u32) -> Option<T>, T: std::iter::Sum<T>>(pids: &[u32], f: F) -> Option<T> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|&p| f(p)).sum()
}

/// CPU seconds this process and its waited-for children used.
pub fn own_cpu_s() -> f64 {
    let mut total = 0.0;
    for who in [libc::RUSAGE_SELF, libc::RUSAGE_CHILDREN] {
        // SAFETY: getrusage fills the struct we pass.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        if unsafe { libc::getrusage(who, &mut ru) } == 0 {
            let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
            total += tv(ru.ru_utime) + tv(ru.ru_stime);
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_close_and_monotonic() {
        let mut prev = 0;
        for v in (0..5_000_000u64).step_by(997) {
            let b = bucket(v);
            assert!(b >= prev);
            prev = b;
            let back = bucket_value(b);
            assert!(back <= v && v - back <= v / 1000 + 1, "{v} -> {back}");
        }
    }

    #[test]
    fn histogram_round_trips_and_merges() {
        let mut a = Histogram::default();
        for v in 1..=100 {
            a.record(v * 1000);
        }
        let b = Histogram::decode(&a.encode()).unwrap();
        let mut c = a.clone();
        c.merge(&b);
        assert_eq!(c.total, 200);
        let p50 = c.quantile(0.5);
        assert!((49_900..=50_000).contains(&p50), "{p50}");
        assert_eq!(c.quantile(1.0), 100_000);
    }

    #[test]
    fn order_tells_late_from_duplicate() {
        let mut o = Order::default();
        let kinds: Vec<u8> = [0, 1, 3, 2, 2, 3, 6, 4, 5, 4]
            .iter()
            .map(|&s| match o.see(s) {
                Seen::New => b'n',
                Seen::Late => b'l',
                Seen::Duplicate => b'd',
            })
            .collect();
        assert_eq!(kinds, b"nnnlddnlld");
    }

    #[test]
    fn order_is_kept_per_publisher() {
        // Three publishers: 0, 3, 6 are publisher 0's; 1, 4 publisher 1's;
        // 2, 5 publisher 2's. Across publishers any order is fine.
        let mut o = Orders::new(3);
        let kinds: Vec<u8> = [1, 0, 2, 5, 3, 4, 6, 3, 10, 7]
            .iter()
            .map(|&s| match o.see(s) {
                Seen::New => b'n',
                Seen::Late => b'l',
                Seen::Duplicate => b'd',
            })
            .collect();
        // 3 again is a duplicate; 7 after 10 is late (both publisher 1's).
        assert_eq!(kinds, b"nnnnnnndnl");
        // One publisher: the global order, as before.
        let mut one = Orders::new(1);
        assert!(matches!(one.see(1), Seen::New));
        assert!(matches!(one.see(0), Seen::Late));
        assert!(matches!(Orders::new(0).see(4), Seen::New));
    }

    #[test]
    fn tally_line_round_trips() {
        let mut t = Tally {
            connected: 3,
            connect_s: 1.5,
            ..Tally::default()
        };
        // Message 0 due at 1000, sent at 1200; message 2 due and sent at 1000.
        t.record(0, Seen::New, 0, 2000, 1000, 1200);
        t.record(0, Seen::New, 2, 2500, 1000, 1000);
        let u = Tally::decode(&t.encode(), 3).unwrap();
        assert_eq!((u.connected, u.distinct, u.latency.max), (3, 2, 1500));
        assert_eq!(
            (u.latency.quantile(0.5), u.latency_send.quantile(0.5)),
            (1000, 800)
        );
        assert_eq!(u.fanout.encode(), "0:2000:2000:1,2:2500:2500:1");
        assert!(
            Tally::decode(&t.encode(), 2).is_none(),
            "seq 2 of 2 messages"
        );
    }

    #[test]
    fn fanout_merges_by_min_max_and_sum_per_message() {
        // Two listener processes: message 0 (due at 1000) reaches the first
        // process's listeners at 1300 and 1900, the other's at 1500 and 2200.
        let mut a = Tally::default();
        let mut b = Tally::default();
        a.record(0, Seen::New, 0, 1300, 1000, 1000);
        a.record(0, Seen::New, 0, 1900, 1000, 1000);
        a.record(0, Seen::New, 1, 5100, 5000, 5000);
        b.record(0, Seen::New, 0, 1500, 1000, 1000);
        b.record(0, Seen::New, 0, 2200, 1000, 1000);
        // A duplicate arrives later but is not a delivery to a new listener.
        b.record(0, Seen::Duplicate, 0, 9000, 1000, 1000);
        a.merge(&Tally::decode(&b.encode(), 2).unwrap());
        let spans: Vec<_> = a.fanout.spans.clone();
        assert_eq!(
            spans,
            [
                Some(Span {
                    first: 1300,
                    last: 2200,
                    count: 4
                }),
                Some(Span {
                    first: 5100,
                    last: 5100,
                    count: 1
                })
            ]
        );
        let from = |s: u32| Some([1000, 5000][s as usize]);
        assert_eq!(a.fanout.first_delivery(from).quantile(1.0), 300);
        assert_eq!(a.fanout.first_delivery(from).quantile(0.5), 100);
        // A message without a base (never sent, say) is left out.
        let only_0 = a.fanout.first_delivery(|s| (s == 0).then_some(1000));
        assert_eq!(only_0.total, 1);
        assert_eq!(a.fanout.spread().quantile(0.5), 0);
        assert_eq!(a.fanout.spread().quantile(1.0), 900);
        assert_eq!(a.fanout.get(0).map(|s| s.count), Some(4));
        assert_eq!(a.fanout.get(7), None);
    }

    #[test]
    fn rooms_are_counted_apart_and_round_trip() {
        // Two listener processes, three rooms, messages in room i % 3.
        // Process a: two listeners in room 0, one in room 1 (later dropped);
        // process b: one in room 0, one in room 2.
        let mut a = Tally::default();
        let mut b = Tally::default();
        for room in [0, 0, 1] {
            a.joined(room);
        }
        b.joined(0);
        b.joined(2);
        // Room 0 gets 0 and 3, room 1 gets 1; 3 reaches one room-0
        // listener of a twice and one after 0 (fine: new); 4 (room 1's)
        // also reaches a room-2 listener: a leak.
        a.record(0, Seen::New, 0, 1_100, 1_000, 1_000);
        a.record(0, Seen::New, 0, 1_200, 1_000, 1_000);
        a.record(0, Seen::New, 3, 4_100, 4_000, 4_000);
        a.record(0, Seen::Duplicate, 3, 4_300, 4_000, 4_000);
        a.record(1, Seen::New, 1, 2_100, 2_000, 2_000);
        a.left(1);
        b.record(0, Seen::Late, 0, 1_500, 1_000, 1_000);
        b.leak(2);
        let mut m = a.clone();
        m.merge(&Tally::decode(&b.encode(), 5).unwrap());
        let again = Tally::decode(&m.encode(), 5).unwrap();
        for t in [&m, &again] {
            assert_eq!((t.connected, t.disconnected, t.leaked), (5, 1, 1));
            assert_eq!(
                t.room(0),
                RoomCount {
                    connected: 3,
                    distinct: 4,
                    duplicated: 1,
                    out_of_order: 1,
                    ..RoomCount::default()
                }
            );
            assert_eq!(
                t.room(1),
                RoomCount {
                    connected: 1,
                    disconnected: 1,
                    distinct: 1,
                    ..RoomCount::default()
                }
            );
            assert_eq!(t.room(2).leaked, 1);
            assert_eq!(t.room(2).distinct, 0);
            assert_eq!(t.room(9), RoomCount::default());
            // Room 0 owes 2 messages to 3 listeners, room 1 one to none
            // left alive, room 2 one to one listener.
            assert_eq!(t.owed_deliveries(&[2, 1, 1]), 7);
            // Rooms past the end of `owed` got no messages.
            assert_eq!(t.owed_deliveries(&[2]), 6);
            assert_eq!(t.fanout.get(0).map(|s| s.count), Some(3));
        }
        // A tally without rooms (one room, the URL as given) round-trips.
        let plain = Tally::default();
        assert!(Tally::decode(&plain.encode(), 1).unwrap().rooms.is_empty());
    }

    #[test]
    fn room_counts_refuse_bad_entries() {
        assert!(Tally::decode_rooms("0:1:0:2:0:0:0,7:1:1:0:0:0:3").is_some());
        for bad in [
            "0:1:0:2:0:0",
            "0:1:0:2:0:0:0:9",
            "x:1:0:2:0:0:0",
            "99999999:1:0:0:0:0:0",
        ] {
            assert!(Tally::decode_rooms(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn fanout_decode_refuses_bad_entries() {
        let cases: &[(&str, Option<&str>)] = &[
            ("", Some("")),
            ("0:1:2:1", Some("0:1:2:1")),
            ("0:1:2:1,,3:4:4:2", Some("0:1:2:1,3:4:4:2")),
            ("4:1:2:1", None),
            ("0:2:1:1", None),
            ("0:1:2:0", None),
            ("0:1:2", None),
            ("0:1:2:3:4", None),
            ("x:1:2:1", None),
            ("0:-1:2:1", None),
        ];
        for (text, want) in cases {
            let got = Fanout::decode(text, 4).map(|f| f.encode());
            assert_eq!(got.as_deref(), *want, "{text:?}");
        }
    }
}
