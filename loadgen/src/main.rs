//! `loadgen`: opens N SSE listeners on one or more loopback servers, publishes
//! M numbered messages at rate R to one of them over P connections, and
//! reports connects, server memory and CPU, delivery (lost, duplicated, out
//! of order) and latency, as a table and one `JSON {...}` line. Each message
//! carries its due time (`start + i / R`) and its send time; latency counts
//! from the due time, so a server that holds publishers back shows its
//! queue (see `schedule.rs`), and the report says how late publishes left.
//! Per message it also gives the first delivery (send to the earliest
//! listener) and the spread (earliest to latest listener: the fan-out).
//! Receive times are taken once per socket read. The listeners (or the
//! pipes to listener processes) are one mio loop on the main thread; the
//! publishers are another on a thread of their own, so that reading a
//! fan-out never delays a publish. When N exceeds what one process may
//! open (the RLIMIT_NOFILE hard limit), it re-runs itself as `--child`
//! processes that each hold a share of the listeners and speak a line
//! protocol on their stdin/stdout: the child prints `READY ...` once
//! connected, the parent publishes, writes `END <owed> <per room>` (the
//! messages the server took or may have taken, in all and per room), and
//! the child drains and prints one
//! `STATS ...` line (with its latency histograms and each message's first
//! and last receipt and delivery count) that the parent merges.
//! With `--rooms R` the listeners are spread over R rooms (listener `j` in
//! room `j % R`, `{room}` in the URLs replaced by its name) and message `i`
//! is published in room `i % K` (`--publish-rooms K`, default R); loss,
//! duplicates and order are counted per room, and a message that reaches
//! another room's listener is counted as leaked.
//! Everything is bounded: connect timeout, publish grace, drain timeout,
//! and an overall deadline. Exit 0 with a report, 2 on setup errors.

mod conn;
mod engine;
mod h2;
mod report;
mod schedule;
mod stats;
mod timer;

use std::io::Write;
use std::os::fd::AsRawFd;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use conn::Target;
use engine::{Engine, Mode, Schedule};
use mio::Waker;
use report::{Asked, Report, Sample};
use schedule::Outcome;
use stats::{cpu_s, own_cpu_s, rss_kib, sum, Tally};

const USAGE: &str = "usage: loadgen --listen URL [--listen URL ...] --publish URL --listeners N
               --messages M --rate R [--size BYTES] [--mode watercooler|nchan]
               [--server-pid PID ...] [--connect-timeout-s 60] [--drain-timeout-s 10]
               [--idle-s 0] [--publishers 4] [--publish-grace-s S] [--wave 500]
               [--deadline-s 900] [--json-only] [--rooms R [--publish-rooms K]]
               [--h2 [--streams-per-conn 100]]

  URLs must be http:// or https:// on 127.0.0.0/8 (or localhost).
  watercooler mode: GET /listen, POST /publish as a form (expects 303).
  nchan mode: GET the listen URL, POST the raw text (expects 201 or 202).
  Message i is due at start + i/R and goes on publisher connection i % P,
  each connection with one request in flight at most (no pipelining).
  Latency counts from the due time. No message is sent later than
  --publish-grace-s after the last one was due (default: M/R + 30 s);
  the rest are reported as not sent.
  --rooms R: listener j joins room j % R and message i is published in room
  i % K (--publish-rooms K, default R, at most R); `{room}` in the listen
  and publish URLs becomes the room's name (bench-0, bench-1, ...). A
  listener expects exactly its room's messages.
  --h2: the listeners are HTTP/2 streams, S to a connection
  (--streams-per-conn S, default 100): TLS with ALPN h2 on https URLs,
  prior knowledge on http URLs. Each stream counts as one listener.";

struct Args {
    listen: Vec<Target>,
    publish: Option<Target>,
    listeners: usize,
    messages: u32,
    rate: f64,
    size: usize,
    mode: Mode,
    server_pids: Vec<u32>,
    connect_timeout: Duration,
    drain_timeout: Duration,
    idle: Duration,
    publishers: usize,
    publish_grace: Option<Duration>,
    wave: usize,
    deadline: Duration,
    json_only: bool,
    max_per_process: Option<usize>,
    child: bool,
    src_base: u32,
    rooms: u32,
    publish_rooms: Option<u32>,
    /// The first listener of this process, counted over the whole run.
    listener_base: usize,
    /// HTTP/2 streams per connection; 0 without `--h2`.
    h2_streams: usize,
    raw: Vec<String>,
}

fn parse_args() -> Result<Args, lexopt::Error> {
    use lexopt::prelude::*;
    let mut a = Args {
        listen: Vec::new(),
        publish: None,
        listeners: 0,
        messages: 0,
        rate: 0.0,
        size: 64,
        mode: Mode::Watercooler,
        server_pids: Vec::new(),
        connect_timeout: Duration::from_secs(60),
        drain_timeout: Duration::from_secs(10),
        idle: Duration::ZERO,
        publishers: 4,
        publish_grace: None,
        wave: 500,
        deadline: Duration::from_secs(900),
        json_only: false,
        max_per_process: None,
        child: false,
        src_base: 2,
        rooms: 1,
        publish_rooms: None,
        listener_base: 0,
        h2_streams: 0,
        raw: std::env::args().skip(1).collect(),
    };
    let (mut h2, mut streams_per_conn) = (false, 100usize);
    let secs = |v: f64| Duration::from_secs_f64(v.clamp(0.0, 86_400.0));
    let mut p = lexopt::Parser::from_env();
    while let Some(arg) = p.next()? {
        match arg {
            Long("listen") => a.listen.push(Target::parse(&p.value()?.string()?)?),
            Long("publish") => a.publish = Some(Target::parse(&p.value()?.string()?)?),
            Long("listeners") => a.listeners = p.value()?.parse()?,
            Long("messages") => a.messages = p.value()?.parse()?,
            Long("rate") => a.rate = p.value()?.parse()?,
            Long("size") => a.size = p.value()?.parse()?,
            Long("mode") => {
                a.mode = match p.value()?.string()?.as_str() {
                    "watercooler" => Mode::Watercooler,
                    "nchan" => Mode::Nchan,
                    m => return Err(format!("unknown mode {m}").into()),
                }
            }
            Long("server-pid") => a.server_pids.push(p.value()?.parse()?),
            Long("connect-timeout-s") => a.connect_timeout = secs(p.value()?.parse()?),
            Long("drain-timeout-s") => a.drain_timeout = secs(p.value()?.parse()?),
            Long("idle-s") => a.idle = secs(p.value()?.parse()?),
            Long("publishers") => a.publishers = p.value()?.parse::<usize>()?.max(1),
            Long("publish-grace-s") => a.publish_grace = Some(secs(p.value()?.parse()?)),
            Long("wave") => a.wave = p.value()?.parse()?,
            Long("deadline-s") => a.deadline = secs(p.value()?.parse()?),
            Long("json-only") => a.json_only = true,
            Long("max-per-process") => a.max_per_process = Some(p.value()?.parse()?),
            Long("child") => a.child = true,
            Long("src-base") => a.src_base = p.value()?.parse()?,
            Long("rooms") => a.rooms = p.value()?.parse::<u32>()?.max(1),
            Long("publish-rooms") => a.publish_rooms = Some(p.value()?.parse::<u32>()?.max(1)),
            Long("listener-base") => a.listener_base = p.value()?.parse()?,
            Long("h2") => h2 = true,
            Long("streams-per-conn") => streams_per_conn = p.value()?.parse::<usize>()?.max(1),
            Long("help") | Short('h') => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            _ => return Err(arg.unexpected()),
        }
    }
    if h2 {
        a.h2_streams = streams_per_conn;
    }
    let k = a.publish_rooms.unwrap_or(a.rooms);
    if k > a.rooms {
        return Err(format!("--publish-rooms {k} is more than --rooms {}", a.rooms).into());
    }
    a.publish_rooms = Some(k);
    if a.rooms > 1 {
        let paths = a.listen.iter().chain(&a.publish);
        if let Some(t) = paths.into_iter().find(|t| !t.path.contains("{room}")) {
            return Err(
                format!("--rooms {}: {} has no {{room}} to replace", a.rooms, t.path).into(),
            );
        }
    }
    Ok(a)
}

impl Args {
    fn engine(&self) -> Result<Engine, String> {
        let mut eng = Engine::new(self.mode, self.messages, self.publishers, self.wave)?;
        eng.set_rooms(self.rooms, self.publish_rooms.unwrap_or(self.rooms));
        eng.set_h2(self.h2_streams);
        Ok(eng)
    }
}

/// `END <owed> <owed in room 0>,<room 1>,...`: what the parent tells a
/// listener process once publishing is over.
fn end_line(owed: u64, per_room: &[u64]) -> String {
    let rooms: Vec<String> = per_room.iter().map(u64::to_string).collect();
    format!("END {owed} {}", rooms.join(","))
}

/// The per-room counts of an `END` line; `None` unless well formed.
fn parse_end(line: &str) -> Option<Vec<u64>> {
    let rest = line.strip_prefix("END ")?;
    let (total, rooms) = rest.trim().split_once(' ')?;
    let total: u64 = total.parse().ok()?;
    let per_room: Vec<u64> = rooms
        .split(',')
        .map(|n| n.parse().ok())
        .collect::<Option<_>>()?;
    (per_room.iter().sum::<u64>() == total).then_some(per_room)
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("loadgen: {e}\n{USAGE}");
            std::process::exit(2);
        }
    };
    let result = if args.child { child(&args) } else { run(&args) };
    if let Err(e) = result {
        eprintln!("loadgen: {e}");
        std::process::exit(2);
    }
}

/// Raises the soft RLIMIT_NOFILE to the hard limit; returns the hard limit.
fn raise_nofile() -> u64 {
    // SAFETY: get/setrlimit on a struct we own.
    unsafe {
        let mut r: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
            return 1024;
        }
        r.rlim_cur = r.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        r.rlim_max
    }
}

/// Runs the loop until `done` or `until` (or the overall deadline).
fn run_until(
    eng: &mut Engine,
    until: Instant,
    mut done: impl FnMut(&mut Engine) -> bool,
) -> Result<(), String> {
    while !done(eng) && Instant::now() < until {
        eng.turn(until).map_err(|e| format!("poll: {e}"))?;
    }
    Ok(())
}

/// Connects this process's listeners; the connect time is set in the tally.
fn connect_all(eng: &mut Engine, a: &Args, deadline: Instant) -> Result<(), String> {
    let until = (Instant::now() + a.connect_timeout).min(deadline);
    run_until(eng, until, |e| !e.connecting())?;
    eng.abandon_connecting();
    eng.tally.connect_s = eng
        .last_connected
        .map_or(0.0, |t| t.duration_since(eng.connect_start).as_secs_f64());
    Ok(())
}

/// A listener process: connect, say READY, wait for END, drain, say STATS.
fn child(a: &Args) -> Result<(), String> {
    let deadline = Instant::now() + a.deadline;
    raise_nofile();
    let mut eng = a.engine()?;
    eng.add_pipe(0).map_err(|e| format!("stdin: {e}"))?;
    eng.add_listeners(&a.listen, a.listeners, a.src_base, a.listener_base);
    connect_all(&mut eng, a, deadline)?;
    println!(
        "READY connected={} connect_s={}",
        eng.tally.connected, eng.tally.connect_s
    );
    let mut owed = None;
    run_until(&mut eng, deadline, |e| {
        while let Some(line) = e.pipes[0].lines.pop_front() {
            if line.starts_with("END ") {
                owed = parse_end(&line);
            }
        }
        owed.is_some() || e.pipes[0].eof
    })?;
    let owed = owed.ok_or("the parent went away")?;
    let until = (Instant::now() + a.drain_timeout).min(deadline);
    run_until(&mut eng, until, |e| {
        e.tally.distinct >= e.tally.owed_deliveries(&owed)
    })?;
    println!("{}", eng.tally.encode());
    Ok(())
}

fn sample(pids: &[u32]) -> Sample {
    Sample {
        rss_kib: sum(pids, rss_kib),
        cpu_s: sum(pids, cpu_s),
    }
}

fn spawn_children(a: &Args, per_process: usize, eng: &mut Engine) -> Result<Vec<Child>, String> {
    let k = a.listeners.div_ceil(per_process);
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    // The child's arguments: ours, less those a child must not inherit.
    let mut base = Vec::new();
    let mut it = a.raw.iter();
    while let Some(s) = it.next() {
        let name = s.split('=').next().unwrap_or("");
        let with_value = [
            "--listeners",
            "--max-per-process",
            "--src-base",
            "--publish",
            "--server-pid",
            "--idle-s",
            "--listener-base",
        ];
        if with_value.contains(&name) {
            if !s.contains('=') {
                it.next();
            }
        } else if name != "--json-only" {
            base.push(s.clone());
        }
    }
    let mut children = Vec::new();
    let mut src = a.src_base;
    let mut first = a.listener_base;
    for c in 0..k {
        let share = a.listeners / k + usize::from(c < a.listeners % k);
        let child = Command::new(&exe)
            .args(&base)
            .args([
                "--child",
                "--listeners",
                &share.to_string(),
                "--src-base",
                &src.to_string(),
                "--listener-base",
                &first.to_string(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("spawn: {e}"))?;
        let fd = child
            .stdout
            .as_ref()
            .map(|o| o.as_raw_fd())
            .ok_or("no child stdout")?;
        eng.add_pipe(fd).map_err(|e| format!("pipe: {e}"))?;
        children.push(child);
        src += Engine::sources_needed(share, a.listen.len());
        first += share;
    }
    Ok(children)
}

/// The publishers' engine on a thread of its own: it connects at once,
/// keeps its connections served until `go`, then follows the plan and
/// hands back the schedule (and wakes the main loop) when done.
struct PublishThread {
    handle: JoinHandle<Result<Schedule, String>>,
    go: Arc<AtomicBool>,
    waker: Arc<Waker>,
}

/// How long publishing waits for its connections after `go`.
const PUBLISHERS_CONNECT_WAIT: Duration = Duration::from_secs(5);

impl PublishThread {
    fn spawn(
        a: &Args,
        target: Target,
        main: Arc<Waker>,
        deadline: Instant,
    ) -> Result<Self, String> {
        let mut eng = a.engine()?;
        let waker = eng.waker().map_err(|e| format!("waker: {e}"))?;
        eng.set_publisher(target, a.publishers);
        let go = Arc::new(AtomicBool::new(false));
        let go_seen = go.clone();
        let (messages, rate, size) = (a.messages, a.rate, a.size);
        let grace = a.publish_grace.unwrap_or_else(|| {
            Duration::from_secs_f64(f64::from(messages) / rate.max(0.001)) + Duration::from_secs(30)
        });
        let handle = std::thread::Builder::new()
            .name("publishers".into())
            .spawn(move || {
                let published = (|| {
                    run_until(&mut eng, deadline, |_| go_seen.load(Ordering::Acquire))?;
                    let until = (Instant::now() + PUBLISHERS_CONNECT_WAIT).min(deadline);
                    run_until(&mut eng, until, |e| e.publishers_ready())?;
                    eng.start_publishing(messages, rate, size, grace);
                    run_until(&mut eng, deadline, |e| e.publishing_done())?;
                    eng.schedule
                        .take()
                        .ok_or_else(|| "publishing never started".to_string())
                })();
                let _ = main.wake();
                published
            })
            .map_err(|e| format!("thread: {e}"))?;
        Ok(PublishThread { handle, go, waker })
    }

    fn go(&self) {
        self.go.store(true, Ordering::Release);
        let _ = self.waker.wake();
    }

    fn join(self) -> Result<Schedule, String> {
        self.handle
            .join()
            .map_err(|_| "the publisher thread panicked".to_string())?
    }
}

fn run(a: &Args) -> Result<(), String> {
    let start = Instant::now();
    let deadline = start + a.deadline;
    if a.listen.is_empty() || a.listeners == 0 {
        return Err("give --listen URL and --listeners N".into());
    }
    let publish = a.publish.clone().ok_or("give --publish URL")?;
    if a.messages > 0 && a.rate <= 0.0 {
        return Err("give --rate R (messages per second)".into());
    }
    let hard = raise_nofile() as usize;
    // The limit is on descriptors: with HTTP/2 a connection holds S listeners.
    let per_process = a
        .max_per_process
        .unwrap_or(hard.saturating_sub(100) * a.h2_streams.max(1))
        .max(1);
    let split = a.listeners > per_process;
    let before = sample(&a.server_pids);
    let mut eng = a.engine()?;
    let main_waker = eng.waker().map_err(|e| format!("waker: {e}"))?;
    let mut children = Vec::new();
    if split {
        children = spawn_children(a, per_process, &mut eng)?;
        let until = (Instant::now() + a.connect_timeout + Duration::from_secs(30)).min(deadline);
        run_until(&mut eng, until, |e| {
            e.pipes
                .iter()
                .all(|p| p.eof || p.lines.iter().any(|l| l.starts_with("READY")))
        })?;
        if eng.pipes.iter().any(|p| p.eof) {
            eprintln!("loadgen: a listener process exited early");
        }
        for p in &mut eng.pipes {
            p.lines.retain(|l| !l.starts_with("READY"));
        }
    } else {
        eng.add_listeners(&a.listen, a.listeners, a.src_base, a.listener_base);
        connect_all(&mut eng, a, deadline)?;
    }
    let connected_at = Instant::now();
    let publisher = PublishThread::spawn(a, publish, main_waker, deadline)?;
    run_until(&mut eng, (connected_at + a.idle).min(deadline), |_| false)?;
    let idle = sample(&a.server_pids);

    let (window_t0, window_cpu0) = (Instant::now(), own_cpu_s());
    publisher.go();
    run_until(&mut eng, deadline, |_| publisher.handle.is_finished())?;
    let log = publisher.join()?.log;
    // What the server took or may have taken: the listeners wait for these.
    let owed = log.count(Outcome::Acked) + log.count(Outcome::InFlight);
    let owed_rooms = log.owed_per_room();

    let mut tally = Tally::default();
    if split {
        for c in &mut children {
            if let Some(stdin) = c.stdin.as_mut() {
                let _ = writeln!(stdin, "{}", end_line(owed, &owed_rooms));
            }
        }
        let until = (Instant::now() + a.drain_timeout + Duration::from_secs(30)).min(deadline);
        run_until(&mut eng, until, |e| {
            e.pipes
                .iter()
                .all(|p| p.eof || p.lines.iter().any(|l| l.starts_with("STATS")))
        })?;
        for (k, p) in eng.pipes.iter().enumerate() {
            match p.lines.iter().find_map(|l| Tally::decode(l, a.messages)) {
                Some(t) => tally.merge(&t),
                None => eprintln!("loadgen: listener process {k} sent no stats"),
            }
        }
        for c in &mut children {
            let _ = c.kill(); // our own child, by its pid; a no-op once it exited
            let _ = c.wait();
        }
    } else {
        let until = (Instant::now() + a.drain_timeout).min(deadline);
        run_until(&mut eng, until, |e| {
            e.alive() == 0 || e.tally.distinct >= e.tally.owed_deliveries(&owed_rooms)
        })?;
        tally = eng.tally.clone();
    }
    let after = sample(&a.server_pids);
    // Children's CPU is only counted once they are waited for, above.
    let window = Some((window_t0.elapsed().as_secs_f64(), own_cpu_s() - window_cpu0));

    let asked = Asked {
        mode: a.mode,
        listeners: a.listeners,
        rate: a.rate,
        processes: children.len().max(1),
        rooms: a.rooms,
        h2_streams: a.h2_streams,
    };
    let r = Report::new(&asked, &tally, &log, &before, &idle, &after, window);
    if !a.json_only {
        r.print_table();
    }
    println!("JSON {}", r.json());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_line_round_trips() {
        assert_eq!(end_line(7, &[3, 2, 2]), "END 7 3,2,2");
        assert_eq!(parse_end("END 7 3,2,2"), Some(vec![3, 2, 2]));
        assert_eq!(parse_end(&end_line(0, &[0])), Some(vec![0]));
        for bad in ["END 7", "END 7 3,2", "END x 1", "END 1 1,y", "7 7"] {
            assert_eq!(parse_end(bad), None, "{bad}");
        }
    }
}
