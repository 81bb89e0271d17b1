//! `loadgen`: opens N SSE listeners on one or more loopback servers, publishes
//! M numbered, timestamped messages at rate R to one of them, and reports
//! connects, server memory and CPU, delivery (lost, duplicated, out of
//! order) and latency, as a table and one `JSON {...}` line. Latency is
//! reported per delivery and, per message, as the first delivery (publish to
//! the earliest listener) and the spread (earliest to latest listener: the
//! fan-out). Receive times are taken once per socket read. One thread, one
//! mio loop per process; when N exceeds what one process may open (the
//! RLIMIT_NOFILE hard limit), it re-runs itself as `--child` processes that
//! each hold a share of the listeners and speak a line protocol on their
//! stdin/stdout: the child prints `READY ...` once connected, the parent
//! publishes, writes `END <published>`, and the child drains and prints one
//! `STATS ...` line (with its latency histogram and each message's first and
//! last delivery) that the parent merges.
//! Everything is bounded: connect timeout, publish deadline, drain timeout,
//! and an overall deadline. Exit 0 with a report, 2 on setup errors.

mod conn;
mod engine;
mod stats;

use std::io::Write;
use std::os::fd::AsRawFd;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use conn::Target;
use engine::{Engine, Mode};
use stats::{cpu_s, own_cpu_s, rss_kib, sum, Tally};

const USAGE: &str = "usage: loadgen --listen URL [--listen URL ...] --publish URL --listeners N
               --messages M --rate R [--size BYTES] [--mode watercooler|nchan]
               [--server-pid PID ...] [--connect-timeout-s 60] [--drain-timeout-s 10]
               [--idle-s 0] [--publishers 4] [--wave 500] [--deadline-s 900] [--json-only]

  URLs must be http:// or https:// on 127.0.0.0/8 (or localhost).
  watercooler mode: GET /listen, POST /publish as a form (expects 303).
  nchan mode: GET the listen URL, POST the raw text (expects 201 or 202).";

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
    wave: usize,
    deadline: Duration,
    json_only: bool,
    max_per_process: Option<usize>,
    child: bool,
    src_base: u32,
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
        wave: 500,
        deadline: Duration::from_secs(900),
        json_only: false,
        max_per_process: None,
        child: false,
        src_base: 2,
        raw: std::env::args().skip(1).collect(),
    };
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
            Long("publishers") => a.publishers = p.value()?.parse()?,
            Long("wave") => a.wave = p.value()?.parse()?,
            Long("deadline-s") => a.deadline = secs(p.value()?.parse()?),
            Long("json-only") => a.json_only = true,
            Long("max-per-process") => a.max_per_process = Some(p.value()?.parse()?),
            Long("child") => a.child = true,
            Long("src-base") => a.src_base = p.value()?.parse()?,
            Long("help") | Short('h') => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            _ => return Err(arg.unexpected()),
        }
    }
    Ok(a)
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
    let mut eng = Engine::new(a.mode, a.messages, a.wave)?;
    eng.add_pipe(0).map_err(|e| format!("stdin: {e}"))?;
    eng.add_listeners(&a.listen, a.listeners, a.src_base);
    connect_all(&mut eng, a, deadline)?;
    println!(
        "READY connected={} connect_s={}",
        eng.tally.connected, eng.tally.connect_s
    );
    let mut published = None;
    run_until(&mut eng, deadline, |e| {
        while let Some(line) = e.pipes[0].lines.pop_front() {
            if let Some(n) = line.strip_prefix("END ") {
                published = n.trim().parse::<u64>().ok();
            }
        }
        published.is_some() || e.pipes[0].eof
    })?;
    let published = published.ok_or("the parent went away")?;
    let until = (Instant::now() + a.drain_timeout).min(deadline);
    run_until(&mut eng, until, |e| {
        e.tally.distinct >= published * e.alive()
    })?;
    println!("{}", eng.tally.encode());
    Ok(())
}

struct Sample {
    rss_kib: Option<u64>,
    cpu_s: Option<f64>,
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
    }
    Ok(children)
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
    let per_process = a.max_per_process.unwrap_or(hard.saturating_sub(100)).max(1);
    let split = a.listeners > per_process;
    let before = sample(&a.server_pids);
    let mut eng = Engine::new(a.mode, a.messages, a.wave)?;
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
        eng.add_listeners(&a.listen, a.listeners, a.src_base);
        connect_all(&mut eng, a, deadline)?;
    }
    let connected_at = Instant::now();
    eng.set_publisher(publish, a.publishers);
    run_until(&mut eng, (connected_at + a.idle).min(deadline), |_| false)?;
    let idle = sample(&a.server_pids);

    eng.start_publishing(a.messages, a.rate, a.size);
    let span = Duration::from_secs_f64(f64::from(a.messages) / a.rate.max(0.001));
    let until = (Instant::now() + span * 2 + Duration::from_secs(30)).min(deadline);
    run_until(&mut eng, until, |e| e.publishing_done())?;
    let sched = eng.schedule.take().expect("publishing started");
    let published = sched.ok;

    let mut tally = Tally::default();
    if split {
        for c in &mut children {
            if let Some(stdin) = c.stdin.as_mut() {
                let _ = writeln!(stdin, "END {published}");
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
            e.alive() == 0 || e.tally.distinct >= published * e.alive()
        })?;
        tally = eng.tally.clone();
    }
    let after = sample(&a.server_pids);

    let r = Report::new(
        a,
        children.len().max(1),
        &tally,
        &sched,
        &before,
        &idle,
        &after,
    );
    if !a.json_only {
        r.print_table();
    }
    println!("JSON {}", r.json());
    Ok(())
}

struct Report {
    fields: Vec<(&'static str, &'static str, Value)>,
}

enum Value {
    Int(u64),
    Float(f64, usize),
    Missing,
    Text(String),
}

impl Report {
    #[allow(clippy::too_many_arguments)]
    fn new(
        a: &Args,
        processes: usize,
        t: &Tally,
        s: &engine::Schedule,
        before: &Sample,
        idle: &Sample,
        after: &Sample,
    ) -> Report {
        use Value::*;
        let published = s.ok;
        let expected = published * t.connected;
        let rss = |x: Option<u64>| x.map_or(Missing, Int);
        let per_listener = match (before.rss_kib, idle.rss_kib) {
            (Some(b), Some(i)) if t.connected > 0 => {
                Float((i as f64 - b as f64) * 1024.0 / t.connected as f64, 0)
            }
            _ => Missing,
        };
        let send_span = s.last_send_us.saturating_sub(s.first_send_us) as f64 / 1e6;
        let achieved = if s.next > 1 && send_span > 0.0 {
            Float(f64::from(s.next - 1) / send_span, 1)
        } else {
            Missing
        };
        let deliver_span = t.last_rx_us.saturating_sub(s.first_send_us) as f64 / 1e6;
        let per_s = if t.received > 0 && deliver_span > 0.0 {
            Float(t.received as f64 / deliver_span, 0)
        } else {
            Missing
        };
        let ms = |us: u64| {
            if t.latency.total > 0 {
                Float(us as f64 / 1000.0, 2)
            } else {
                Missing
            }
        };
        let first = t.fanout.first_delivery();
        let spread = t.fanout.spread();
        let per_message = |h: &stats::Histogram, q: f64| {
            if h.total > 0 {
                Float(h.quantile(q) as f64 / 1000.0, 2)
            } else {
                Missing
            }
        };
        let cpu = match (before.cpu_s, after.cpu_s) {
            (Some(b), Some(e)) => Float(e - b, 2),
            _ => Missing,
        };
        let cpu_run = match (idle.cpu_s, after.cpu_s) {
            (Some(b), Some(e)) if t.received > 0 => Float((e - b) * 1e6 / t.received as f64, 2),
            _ => Missing,
        };
        let mode = match a.mode {
            Mode::Watercooler => "watercooler",
            Mode::Nchan => "nchan",
        };
        Report {
            fields: vec![
                ("mode", "mode", Text(mode.into())),
                ("processes", "loadgen processes", Int(processes as u64)),
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
                ("published", "published", Int(published)),
                ("publish_errors", "publish errors", Int(s.errors)),
                (
                    "publish_rate_target",
                    "publish rate asked (/s)",
                    Float(a.rate, 1),
                ),
                (
                    "publish_rate_achieved",
                    "publish rate achieved (/s)",
                    achieved,
                ),
                ("expected", "expected", Int(expected)),
                ("delivered", "delivered", Int(t.distinct)),
                ("lost", "lost", Int(expected.saturating_sub(t.distinct))),
                ("duplicated", "duplicated", Int(t.duplicated)),
                ("out_of_order", "out-of-order", Int(t.out_of_order)),
                ("foreign", "other messages (not ours)", Int(t.foreign)),
                (
                    "disconnected",
                    "listeners dropped mid-run",
                    Int(t.disconnected),
                ),
                (
                    "latency_p50_ms",
                    "latency p50 (ms)",
                    ms(t.latency.quantile(0.50)),
                ),
                (
                    "latency_p90_ms",
                    "latency p90 (ms)",
                    ms(t.latency.quantile(0.90)),
                ),
                (
                    "latency_p99_ms",
                    "latency p99 (ms)",
                    ms(t.latency.quantile(0.99)),
                ),
                ("latency_max_ms", "latency max (ms)", ms(t.latency.max)),
                (
                    "first_delivery_p50_ms",
                    "first delivery p50 (ms)",
                    per_message(&first, 0.50),
                ),
                (
                    "first_delivery_p99_ms",
                    "first delivery p99 (ms)",
                    per_message(&first, 0.99),
                ),
                (
                    "spread_p50_ms",
                    "fan-out spread p50 (ms)",
                    per_message(&spread, 0.50),
                ),
                (
                    "spread_p99_ms",
                    "fan-out spread p99 (ms)",
                    per_message(&spread, 0.99),
                ),
                ("deliveries_per_s", "deliveries per s", per_s),
                ("server_cpu_s", "server CPU (s)", cpu),
                (
                    "server_cpu_us_per_delivery",
                    "server CPU per delivery (µs)",
                    cpu_run,
                ),
                ("loadgen_cpu_s", "loadgen CPU (s)", Float(own_cpu_s(), 2)),
            ],
        }
    }

    fn print_table(&self) {
        for (_, label, v) in &self.fields {
            let v = match v {
                Value::Int(n) => n.to_string(),
                Value::Float(x, d) => format!("{x:.d$}", d = *d),
                Value::Missing => "-".into(),
                Value::Text(s) => s.clone(),
            };
            println!("{label:<30} {v:>14}");
        }
    }

    fn json(&self) -> String {
        let parts: Vec<String> = self
            .fields
            .iter()
            .map(|(k, _, v)| {
                let v = match v {
                    Value::Int(n) => n.to_string(),
                    Value::Float(x, d) if x.is_finite() => format!("{x:.d$}", d = *d),
                    Value::Float(..) | Value::Missing => "null".into(),
                    Value::Text(s) => format!("\"{s}\""),
                };
                format!("\"{k}\":{v}")
            })
            .collect();
        format!("{{{}}}", parts.join(","))
    }
}
