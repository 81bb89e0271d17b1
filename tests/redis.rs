//! Nodes on a Redis bus (issue 14): `bus = redis://…` in the cluster file,
//! against a real `redis-server` each test starts on its own free port in
//! its own directory (and kills when done): delivery through the stream,
//! presence, Redis restarted with and without its data, Redis away (the
//! outbox, its bound and 503), a node killed and resumed, a wrong password,
//! a server that answers garbage, and `rediss://` (TLS, the URL's CA).
//!
//! Without `redis-server` on PATH the tests that need it say why (on
//! stderr) and pass, unless `WATERCOOLER_REQUIRE_REDIS=1` (set it where
//! Redis must be there, e.g. CI), when they fail.
//!
//! Messages are named `ORIGIN-I` so a listener's stream can be checked for
//! "each exactly once, in its origin's order". Two tests at the end are
//! regressions: a reader that falls behind the stream's trim is told it
//! missed messages, and the outbox bound holds within one loop turn.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::{form_message, free_port, try_post_form, Conn, Event, Node, SseClient, TempDir};

/// Bound on a node's connections coming up again, presence refreshing.
const LINK: Duration = Duration::from_secs(10);
/// Bound on a batch of messages reaching a listener.
const DELIVERY: Duration = Duration::from_secs(10);
/// How long a listener must stay quiet to show nothing more is coming.
const QUIET: Duration = Duration::from_millis(600);
/// `sync_nodes_timeout` of the nodes: they serve as soon as they have read
/// the stream, so this only bounds a start without Redis.
const SYNC_MS: u64 = 5000;
/// The node's bound on messages waiting for Redis (`MAX_OUTBOX`).
const MAX_OUTBOX: usize = 10_000;

// ---------------------------------------------------------------------------
// redis-server
// ---------------------------------------------------------------------------

/// Whether this test can run: `redis-server` is on PATH. If not, says so
/// and returns false, or panics when `WATERCOOLER_REQUIRE_REDIS=1`.
fn have_redis(test: &str) -> bool {
    let found = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return true;
    }
    let why = "redis-server is not on PATH (e.g. apt-get install redis-server)";
    if std::env::var("WATERCOOLER_REQUIRE_REDIS").is_ok_and(|v| v == "1") {
        panic!("{test}: {why}, and WATERCOOLER_REQUIRE_REDIS=1");
    }
    // Straight to stderr: the test harness captures eprintln!, and a skip
    // should show in a normal run.
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: {why}; set WATERCOOLER_REQUIRE_REDIS=1 to fail instead"
    );
    false
}

/// A `redis-server` of this test, on 127.0.0.1, in its own directory.
/// Dropping it kills it (SIGKILL, by PID) and removes the directory.
struct Redis {
    child: Option<Child>,
    port: u16,
    args: Vec<String>,
    log: String,
    dir: TempDir,
}

impl Redis {
    /// Starts one with `extra` arguments (`--appendonly …`, `--requirepass
    /// …`) and waits until it answers PING. A port taken between
    /// `free_port` and the bind (by another process) means another port.
    fn start(tag: &str, extra: &[&str]) -> Redis {
        let dir = TempDir::new(&format!("redis-{tag}"));
        let log = dir.0.join("redis.log").to_string_lossy().into_owned();
        let mut redis = Redis {
            child: None,
            port: 0,
            args: Vec::new(),
            log,
            dir,
        };
        for attempt in 1..=3 {
            redis.port = free_port();
            redis.args = [
                "--port",
                &redis.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--dir",
                &redis.dir.0.to_string_lossy(),
                "--save",
                "",
                "--logfile",
                &redis.log,
                "--daemonize",
                "no",
            ]
            .iter()
            .map(|s| s.to_string())
            .chain(extra.iter().map(|s| s.to_string()))
            .collect();
            match redis.run() {
                Ok(()) => return redis,
                Err(e) if attempt < 3 && redis.log_tail().contains("Address already in use") => {
                    eprintln!("redis-server: port {} taken, another: {e}", redis.port);
                    let _ = std::fs::remove_file(&redis.log);
                }
                Err(e) => panic!("{e}"),
            }
        }
        unreachable!()
    }

    /// Starts it again with the same arguments: same port, same directory.
    fn start_again(&mut self) {
        self.run().unwrap_or_else(|e| panic!("{e}"));
    }

    /// Spawns it and waits until it answers PING (or NOAUTH: it wants a
    /// password); reaps it if it does not.
    fn run(&mut self) -> Result<(), String> {
        assert!(self.child.is_none(), "redis-server already running");
        let child = Command::new("redis-server")
            .args(&self.args)
            .current_dir(&self.dir.0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn redis-server: {e}"));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut last;
        loop {
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                self.child = None;
                return Err(format!(
                    "redis-server {:?} exited: {status}\n{}",
                    self.args,
                    self.log_tail()
                ));
            }
            match self.command(&["PING"]) {
                Ok(r) if r.starts_with("+PONG") || r.starts_with("-NOAUTH") => return Ok(()),
                Ok(r) => last = r,
                Err(e) => last = e.to_string(),
            }
            if Instant::now() >= deadline {
                if let Some(mut c) = self.child.take() {
                    let _ = c.kill();
                    let _ = c.wait();
                }
                return Err(format!(
                    "redis-server on {} not ready: {last}\n{}",
                    self.port,
                    self.log_tail()
                ));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The last lines of its log file, for panic messages.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// One command on a fresh connection; the first line of the reply.
    fn command(&self, args: &[&str]) -> std::io::Result<String> {
        let mut s = TcpStream::connect_timeout(
            &SocketAddr::from(([127, 0, 0, 1], self.port)),
            Duration::from_secs(1),
        )?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        let mut raw = format!("*{}\r\n", args.len());
        for a in args {
            raw.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(raw.as_bytes())?;
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line)?;
        Ok(line.trim_end().to_string())
    }

    /// SIGTERM (a clean SHUTDOWN: the AOF, if on, is written and synced)
    /// and waits for it to exit.
    fn stop(&mut self) {
        let mut child = self.child.take().expect("redis-server running");
        // SAFETY: kill(2) on the PID of our own, not yet reaped, child.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match child.try_wait() {
                Ok(Some(_)) => return,
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("redis-server did not stop on SIGTERM\n{}", self.log_tail());
                }
            }
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

// ---------------------------------------------------------------------------
// Nodes on the bus
// ---------------------------------------------------------------------------

/// A cluster file naming only the bus.
fn bus_conf(dir: &TempDir, url: &str, sync_ms: u64) -> String {
    dir.write(
        "sys.conf",
        &format!("# written by the redis tests\nbus = {url}\nsync_nodes_timeout = {sync_ms}\n"),
    )
}

/// Nodes `NAME@127.0.0.1` on the bus at `url`, started one by one.
fn nodes_on(dir: &TempDir, url: &str, names: &[&str], extra: &[&str]) -> Vec<Node> {
    let conf = bus_conf(dir, url, SYNC_MS);
    names
        .iter()
        .map(|n| Node::start_member(&format!("{n}@127.0.0.1"), &conf, extra))
        .collect()
}

/// `GET /healthz`: the status and the JSON body.
fn healthz(node: &Node) -> (u16, serde_json::Value) {
    let r = node.get("/healthz");
    let json = serde_json::from_slice(&r.body)
        .unwrap_or_else(|e| node.fail("/healthz is not JSON", format!("{e}: {:?}", r.text())));
    (r.status, json)
}

/// Polls `/healthz` until its status and body satisfy `done`.
fn wait_healthz(
    node: &Node,
    what: &str,
    timeout: Duration,
    mut done: impl FnMut(u16, &serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + timeout;
    loop {
        let (status, json) = healthz(node);
        if done(status, &json) {
            return json;
        }
        if Instant::now() >= deadline {
            node.fail(&format!("/healthz: {what} within {timeout:?}"), json);
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until both of the node's Redis connections are up.
fn wait_connected(node: &Node, timeout: Duration) {
    wait_healthz(node, "bus connected", timeout, |s, j| {
        s == 200 && j["bus"]["connected"] == true
    });
}

/// A sample of `/metrics`, e.g. `watercooler_bus_outbox{bus="redis"}`.
fn metric(node: &Node, sample: &str) -> f64 {
    let text = node.get("/metrics").text();
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| node.fail(&format!("no metric {sample}"), text))
}

const RECONNECTS: &str = "watercooler_bus_reconnects_total{bus=\"redis\"}";
const DATA_LOST: &str = "watercooler_bus_data_lost_total{bus=\"redis\"}";

// ---------------------------------------------------------------------------
// Listeners and what they got
// ---------------------------------------------------------------------------

/// Reads exactly `n` messages, failing with the node's stderr if they don't
/// come, then checks that nothing more arrives for `QUIET`.
fn read_exactly(node: &Node, l: &mut SseClient<TcpStream>, n: usize, what: &str) -> Vec<Event> {
    let got = l.collect(n, DELIVERY);
    if got.len() < n {
        node.fail(
            &format!("{what}: {} of {n} messages within {DELIVERY:?}", got.len()),
            format!("{:?}", brief(&got)),
        );
    }
    if let Some(extra) = l.next_event(QUIET) {
        node.fail(
            &format!("{what}: an event beyond the {n} expected"),
            format!("{extra:?} after {:?}", brief(&got)),
        );
    }
    got
}

/// The events as `TYPE:data` (`TYPE` left out for plain messages).
fn brief(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .map(|e| match &e.event {
            None => e.data.clone(),
            Some(t) => format!("{t}:{}", e.data),
        })
        .collect()
}

/// Checks that `events` are plain messages holding exactly `ORIGIN-I` for
/// each `(ORIGIN, RANGE)` of `want`, each once, in increasing I per origin,
/// with ids that are present and unique.
fn check_once_in_order(events: &[Event], want: &[(&str, std::ops::Range<usize>)], what: &str) {
    for e in events {
        assert!(e.event.is_none(), "{what}: not a message: {e:?}");
    }
    common::assert_unique_ids(what, events);
    let all: Vec<&str> = events.iter().map(|e| e.data.as_str()).collect();
    common::assert_origins_in_order(what, &all, want);
}

/// A listener read on its own thread, so that it keeps up with a flood and
/// the test can look at what came while doing something else.
struct Drain {
    events: Arc<Mutex<Vec<Event>>>,
    closed: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Drain {
    fn new(mut l: SseClient<TcpStream>) -> Drain {
        let events = Arc::new(Mutex::new(Vec::new()));
        let closed = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (ev, cl, st) = (events.clone(), closed.clone(), stop.clone());
        let handle = thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                match l.next_event(Duration::from_millis(100)) {
                    Some(e) => ev.lock().unwrap().push(e),
                    None if l.closed => {
                        cl.store(true, Ordering::Relaxed);
                        return;
                    }
                    None => {}
                }
            }
        });
        Drain {
            events,
            closed,
            stop,
            handle: Some(handle),
        }
    }

    fn count(&self) -> usize {
        self.events.lock().unwrap().len()
    }

    fn snapshot(&self) -> Vec<Event> {
        self.events.lock().unwrap().clone()
    }

    /// Waits until `n` events came; false at the timeout or if the stream
    /// closed.
    fn wait_for(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.count() < n {
            if Instant::now() >= deadline || self.closed.load(Ordering::Relaxed) {
                return self.count() >= n;
            }
            thread::sleep(Duration::from_millis(20));
        }
        true
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }
}

impl Drop for Drain {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[test]
fn five_nodes_on_one_redis_every_listener_gets_every_message_once_in_order() {
    if !have_redis("five_nodes") {
        return;
    }
    let redis = Redis::start("five", &["--appendonly", "no"]);
    let dir = TempDir::new("redis-five");
    let names = ["p1", "p2", "p3", "p4", "p5"];
    let nodes = nodes_on(&dir, &redis.url(), &names, &[]);

    // Presence through Redis: every node is listed, with every listener.
    let mut listeners: Vec<_> = nodes.iter().map(|n| n.listen(&[])).collect();
    let mut all: Vec<String> = names.iter().map(|n| format!("{n}@127.0.0.1")).collect();
    all.sort();
    let info = nodes[0].wait_cluster("all five nodes and listeners", LINK, |i| {
        let mut seen = i.nodes.clone();
        seen.sort();
        seen == all && i.listeners == 5 && i.local_listeners == 1
    });
    assert_eq!(info.node, "p1@127.0.0.1", "{info:?}");

    const EACH: usize = 20;
    for i in 0..EACH {
        for (k, n) in nodes.iter().enumerate() {
            n.publish_ok(&format!("o{k}-{i}"));
        }
    }
    let want: Vec<(String, std::ops::Range<usize>)> = (0..names.len())
        .map(|k| (format!("o{k}"), 0..EACH))
        .collect();
    let want: Vec<(&str, std::ops::Range<usize>)> =
        want.iter().map(|(o, r)| (o.as_str(), r.clone())).collect();
    for (k, l) in listeners.iter_mut().enumerate() {
        let what = format!("listener on {}", names[k]);
        let got = read_exactly(&nodes[k], l, EACH * names.len(), &what);
        check_once_in_order(&got, &want, &what);
    }
}

#[test]
fn redis_restarted_with_its_aof_delivers_every_accepted_publish_exactly_once() {
    if !have_redis("restart_with_aof") {
        return;
    }
    let mut redis = Redis::start("aof", &["--appendonly", "yes", "--appendfsync", "always"]);
    let dir = TempDir::new("redis-aof");
    let nodes = nodes_on(&dir, &redis.url(), &["w1", "w2"], &[]);
    let listeners: Vec<Drain> = nodes.iter().map(|n| Drain::new(n.listen(&[]))).collect();

    // A steady stream of publishes, alternately on each node, while Redis
    // goes away and comes back with its data. Each publish notes the phase
    // it was answered in: 0 before the stop, 1 while Redis is away, 2 after.
    let addrs = [nodes[0].http_addr(), nodes[1].http_addr()];
    let phase = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = {
        let (stop, phase) = (stop.clone(), phase.clone());
        thread::spawn(move || {
            let mut answers = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                for (k, addr) in addrs.iter().enumerate() {
                    let text = format!("{}-{i}", ["a", "b"][k]);
                    let before = phase.load(Ordering::SeqCst);
                    let status = try_post_form(*addr, "/publish", &form_message(&text), &[])
                        .map(|r| r.status)
                        .unwrap_or_else(|e| panic!("publish {text}: {e}"));
                    let after = phase.load(Ordering::SeqCst);
                    answers.push((k, text, status, before, after));
                }
                i += 1;
                thread::sleep(Duration::from_millis(25));
            }
            (i, answers)
        })
    };
    thread::sleep(Duration::from_millis(600));
    redis.stop();
    phase.store(1, Ordering::SeqCst);
    thread::sleep(Duration::from_millis(1200));
    // What the listeners had while Redis was away, just before it returns.
    let before_back: Vec<Vec<String>> = listeners.iter().map(|l| brief(&l.snapshot())).collect();
    phase.store(2, Ordering::SeqCst);
    redis.start_again();
    for n in &nodes {
        wait_connected(n, LINK);
    }
    thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let (rounds, answers) = publisher.join().expect("publisher");

    let refused: Vec<_> = answers.iter().filter(|a| a.2 != 303).collect();
    assert!(refused.is_empty(), "publishes not accepted: {refused:?}");
    // Published on one node entirely while Redis was away: on the other
    // node only once it is back.
    let in_gap: Vec<&(usize, String, u16, usize, usize)> =
        answers.iter().filter(|a| a.3 == 1 && a.4 == 1).collect();
    assert!(
        in_gap.len() >= 10,
        "only {} publishes while Redis was away",
        in_gap.len()
    );
    for (k, seen) in before_back.iter().enumerate() {
        let crossed: Vec<&String> = in_gap
            .iter()
            .filter(|a| a.0 != k && seen.contains(&a.1))
            .map(|a| &a.1)
            .collect();
        assert!(
            crossed.is_empty(),
            "w{} got {crossed:?} from the other node while Redis was away",
            k + 1
        );
    }
    for (k, l) in listeners.iter().enumerate() {
        let what = format!("listener on w{}", k + 1);
        if !l.wait_for(2 * rounds, DELIVERY) {
            nodes[k].fail(
                &format!("{what}: {} of {} messages", l.count(), 2 * rounds),
                format!("{:?}", brief(&l.snapshot())),
            );
        }
        thread::sleep(QUIET);
        check_once_in_order(&l.snapshot(), &[("a", 0..rounds), ("b", 0..rounds)], &what);
    }
    for n in &nodes {
        assert_eq!(metric(n, DATA_LOST), 0.0, "{}", n.stderr_tail());
        assert!(
            n.log_count("connected again to") >= 1,
            "no reconnection logged\n{}",
            n.stderr_tail()
        );
    }
}

#[test]
fn redis_restarted_empty_tells_listeners_they_missed_messages() {
    if !have_redis("restart_empty") {
        return;
    }
    let mut redis = Redis::start("empty", &["--appendonly", "no"]);
    let dir = TempDir::new("redis-empty");
    let nodes = nodes_on(&dir, &redis.url(), &["e1", "e2"], &[]);
    let mut listeners: Vec<_> = nodes.iter().map(|n| n.listen(&[])).collect();
    nodes[0].publish_ok("a-0");
    nodes[1].publish_ok("b-0");
    for (k, l) in listeners.iter_mut().enumerate() {
        let got = read_exactly(&nodes[k], l, 2, "before the restart");
        check_once_in_order(&got, &[("a", 0..1), ("b", 0..1)], "before the restart");
    }

    redis.stop();
    redis.start_again();
    for (k, l) in listeners.iter_mut().enumerate() {
        let e = l
            .next_event(LINK)
            .unwrap_or_else(|| nodes[k].fail("no event: missed", "after Redis lost its data"));
        assert_eq!(e.event.as_deref(), Some("missed"), "{e:?}");
    }
    for n in &nodes {
        wait_connected(n, LINK);
        assert!(metric(n, DATA_LOST) >= 1.0, "{}", n.stderr_tail());
    }

    // Live messages after; the ones the nodes added again for Redis are
    // not delivered a second time.
    nodes[0].publish_ok("a-1");
    nodes[1].publish_ok("b-1");
    for (k, l) in listeners.iter_mut().enumerate() {
        let what = format!("listener on e{} after the loss", k + 1);
        let got = read_exactly(&nodes[k], l, 2, &what);
        check_once_in_order(&got, &[("a", 1..2), ("b", 1..2)], &what);
    }

    // A node that joins now reads from the (new) stream's start: the
    // messages from before the loss are there again, each once.
    let late = Node::start_member("e3@127.0.0.1", &bus_conf(&dir, &redis.url(), SYNC_MS), &[]);
    let r = late.get("/r/lobby/messages");
    let json: serde_json::Value = serde_json::from_slice(&r.body)
        .unwrap_or_else(|e| late.fail("/r/lobby/messages", format!("{e}: {}", r.text())));
    let mut texts: Vec<&str> = json["messages"]
        .as_array()
        .unwrap_or_else(|| late.fail("/r/lobby/messages", r.text()))
        .iter()
        .filter_map(|m| m["text"].as_str())
        .collect();
    texts.sort();
    assert_eq!(texts, ["a-0", "a-1", "b-0", "b-1"], "{}", r.text());
}

#[test]
fn redis_away_own_listeners_served_outbox_bounded_by_503_nothing_accepted_is_lost() {
    if !have_redis("redis_away") {
        return;
    }
    let mut redis = Redis::start("away", &["--appendonly", "yes"]);
    let dir = TempDir::new("redis-away");
    // A long history, so the stream keeps (MAXLEN ~ 10 x history) all the
    // flood below for the reader on the other node.
    let nodes = nodes_on(&dir, &redis.url(), &["a", "b"], &["--history", "5000"]);
    let (a, b) = (&nodes[0], &nodes[1]);
    let mut la = a.listen(&[]);
    let lb = Drain::new(b.listen(&[]));
    a.publish_ok("warm-0");
    assert_eq!(la.expect_event("warm-0 on a").data, "warm-0");
    assert!(lb.wait_for(1, DELIVERY), "warm-0 did not reach b");
    assert_eq!(brief(&lb.snapshot()), ["warm-0"]);

    redis.stop();
    let away = Instant::now();
    let health = wait_healthz(a, "connected false, still 200", LINK, |s, j| {
        s == 200 && j["bus"]["connected"] == false
    });
    assert_eq!(health["bus"]["kind"], "redis", "{health}");

    // A's own listener gets A's message at once.
    a.publish_ok("down-0");
    let e = la
        .next_event(Duration::from_secs(1))
        .unwrap_or_else(|| a.fail("own listener while Redis is away", "nothing within 1 s"));
    assert_eq!(e.data, "down-0");
    drop(la);

    // Fill the outbox from several connections until the node refuses.
    const THREADS: usize = 4;
    let full = Arc::new(AtomicBool::new(false));
    let refusal: Arc<Mutex<Option<common::Response>>> = Arc::new(Mutex::new(None));
    let flood: Vec<_> = (0..THREADS)
        .map(|t| {
            let (full, refusal) = (full.clone(), refusal.clone());
            let mut conn = a.connect();
            thread::spawn(move || {
                let mut accepted = 0;
                while !full.load(Ordering::Relaxed) && accepted <= MAX_OUTBOX {
                    let text = format!("f{t}-{accepted}");
                    let r = conn
                        .publish(&text)
                        .unwrap_or_else(|e| panic!("publish {text}: {e}"));
                    if r.header("connection") == Some("close") {
                        conn = Conn::plain(conn_addr(&conn)).expect("reconnect");
                    }
                    match r.status {
                        303 => accepted += 1,
                        503 => {
                            full.store(true, Ordering::Relaxed);
                            refusal.lock().unwrap().get_or_insert(r);
                        }
                        _ => panic!("publish {text}: {r:?}"),
                    }
                }
                accepted
            })
        })
        .collect();
    let accepted: Vec<usize> = flood
        .into_iter()
        .map(|h| h.join().expect("flood"))
        .collect();
    let total: usize = accepted.iter().sum();
    let refusal = refusal.lock().unwrap().take();
    let Some(refusal) = refusal else {
        a.fail(
            "no 503 while Redis is away",
            format!("{total} publishes accepted"),
        );
    };
    let retry = refusal.header("retry-after").unwrap_or("");
    assert!(
        !retry.is_empty() && retry.bytes().all(|b| b.is_ascii_digit()),
        "503 without a Retry-After: {refusal:?}"
    );
    // The outbox holds down-0 and every accepted one: refused only once
    // full. The node checks the bound as it stood after its previous loop
    // turn, so each of the THREADS connections (one request in flight
    // each) may get one more in; see `pipelined_publishes_overshoot…`.
    let held = total + 1;
    assert!(
        (MAX_OUTBOX..MAX_OUTBOX + THREADS).contains(&held),
        "{held} messages held for Redis (accepted {accepted:?})"
    );
    let health = wait_healthz(a, "outbox full", LINK, |s, _| s == 200);
    assert_eq!(health["bus"]["outbox"], held, "{health}");
    assert_eq!(a.publish("one more").status, 503, "full outbox took more");

    // Nothing crossed while Redis was away.
    assert_eq!(
        brief(&lb.snapshot()),
        ["warm-0"],
        "b got messages while Redis was away"
    );
    thread::sleep(Duration::from_secs(6).saturating_sub(away.elapsed()));
    redis.start_again();

    // Every accepted message reaches b, once, in a's order.
    let want = 2 + total;
    if !lb.wait_for(want, Duration::from_secs(30)) {
        b.fail(
            &format!(
                "{} of {want} messages on b after Redis came back (closed: {})",
                lb.count(),
                lb.is_closed()
            ),
            a.stderr_tail(),
        );
    }
    thread::sleep(QUIET);
    let got = lb.snapshot();
    let mut expected: Vec<(String, std::ops::Range<usize>)> = (0..THREADS)
        .map(|t| (format!("f{t}"), 0..accepted[t]))
        .collect();
    expected.push(("warm".into(), 0..1));
    expected.push(("down".into(), 0..1));
    let expected: Vec<(&str, std::ops::Range<usize>)> = expected
        .iter()
        .map(|(o, r)| (o.as_str(), r.clone()))
        .collect();
    check_once_in_order(&got, &expected, "b's listener");
    assert_eq!(got[1].data, "down-0", "a's messages out of order on b");

    let health = wait_healthz(a, "connected, outbox empty", LINK, |s, j| {
        s == 200 && j["bus"]["connected"] == true && j["bus"]["outbox"] == 0
    });
    assert_eq!(health["bus"]["kind"], "redis");
    assert!(metric(a, RECONNECTS) >= 1.0);
    a.publish_ok("after-0");
}

/// The address a harness connection talks to.
fn conn_addr(conn: &Conn<TcpStream>) -> SocketAddr {
    conn.stream.peer_addr().expect("peer addr")
}

#[test]
fn killed_node_restarts_and_a_resuming_client_gets_what_it_missed_once() {
    if !have_redis("kill_node") {
        return;
    }
    let redis = Redis::start("kill", &["--appendonly", "no"]);
    let dir = TempDir::new("redis-kill");
    let mut nodes = nodes_on(&dir, &redis.url(), &["k1", "k2", "k3"], &[]);
    let mut lb = nodes[1].listen(&[]);
    let mut lc = nodes[2].listen(&[]);
    nodes[0].publish_ok("a-0");
    nodes[2].publish_ok("c-0");
    let seen = read_exactly(&nodes[2], &mut lc, 2, "k3's listener before the kill");
    check_once_in_order(&seen, &[("a", 0..1), ("c", 0..1)], "k3 before the kill");
    let last = seen[1].id.clone().unwrap();
    drop(lc);
    let got = read_exactly(&nodes[1], &mut lb, 2, "k2's listener");
    check_once_in_order(&got, &[("a", 0..1), ("c", 0..1)], "k2 before the kill");

    nodes[2].kill();
    // The others go on.
    for i in 1..4 {
        nodes[0].publish_ok(&format!("a-{i}"));
        nodes[1].publish_ok(&format!("b-{i}"));
    }
    let got = read_exactly(&nodes[1], &mut lb, 6, "k2's listener while k3 is down");
    check_once_in_order(&got, &[("a", 1..4), ("b", 1..4)], "k2 while k3 is down");

    nodes[2].restart();
    let (k2, k3) = (&nodes[1], &nodes[2]);
    let mut lc = k3.listen(&[("Last-Event-ID", &last)]);
    let got = read_exactly(k3, &mut lc, 6, "resumed listener on the restarted k3");
    check_once_in_order(&got, &[("a", 1..4), ("b", 1..4)], "resumed on k3");

    // The restarted node's new messages are newer than its old ones.
    k3.publish_ok("c-1");
    let got = read_exactly(k3, &mut lc, 1, "k3's own message after the restart");
    check_once_in_order(&got, &[("c", 1..2)], "k3 after the restart");
    let got = read_exactly(k2, &mut lb, 1, "k3's message on k2");
    check_once_in_order(&got, &[("c", 1..2)], "k2 after k3's restart");
}

#[test]
fn wrong_password_node_serves_logs_the_refusal_and_keeps_retrying() {
    if !have_redis("wrong_password") {
        return;
    }
    let redis = Redis::start(
        "auth",
        &["--appendonly", "no", "--requirepass", "right-pass"],
    );
    let dir = TempDir::new("redis-auth");
    let url = format!("redis://:wrong-pass-7f3a@127.0.0.1:{}", redis.port);
    let conf = bus_conf(&dir, &url, 1000);
    let node = Node::start_member("pw@127.0.0.1", &conf, &[]);

    let refused = |l: &str| l.contains("WRONGPASS") || l.contains("refused the password");
    if node.wait_log_match(LINK, refused).is_none() {
        node.fail("no line about the refused password", "");
    }
    // It serves (after sync_nodes_timeout), saying Redis is not connected.
    wait_healthz(&node, "200, not connected", LINK, |s, j| {
        s == 200 && j["bus"]["connected"] == false
    });
    let mut l = node.listen(&[]);
    node.publish_ok("alone-0");
    assert_eq!(l.expect_event("own message").data, "alone-0");

    // It keeps dialling, without a line per attempt.
    let before = metric(&node, RECONNECTS);
    let deadline = Instant::now() + LINK;
    while metric(&node, RECONNECTS) <= before {
        if Instant::now() >= deadline {
            node.fail("reconnects_total did not grow", before);
        }
        thread::sleep(Duration::from_millis(100));
    }
    let mut node = node;
    assert!(node.alive(), "the node exited");
    let lines = node.log_lines();
    let warned = lines.iter().filter(|l| refused(l)).count();
    assert!(
        (1..=2).contains(&warned),
        "{warned} lines about the password (one per connection and streak expected)\n{}",
        lines.join("\n")
    );
    let leaked: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("wrong-pass-7f3a"))
        .collect();
    assert!(leaked.is_empty(), "the password is logged: {leaked:?}");
}

/// A fake Redis: answers each connection's first bytes with one of
/// `answers` (in turn), then waits for the node to close.
struct Fake {
    port: u16,
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Fake {
    fn start(answers: &'static [&'static [u8]]) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind fake redis");
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (acc, st) = (accepted.clone(), stop.clone());
        let handle = thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut s, _)) => {
                        let n = acc.fetch_add(1, Ordering::Relaxed);
                        let answer = answers[n % answers.len()];
                        thread::spawn(move || {
                            let _ = s.set_nonblocking(false);
                            let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
                            let mut buf = [0u8; 4096];
                            if matches!(s.read(&mut buf), Ok(n) if n > 0) {
                                let _ = s.write_all(answer);
                                while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
                            }
                        });
                    }
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Fake {
            port,
            accepted,
            stop,
            handle: Some(handle),
        }
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[test]
fn garbage_from_redis_is_logged_and_the_node_dials_again() {
    // No redis-server needed: the server is a fake in this test.
    const ANSWERS: &[&[u8]] = &[b"!!!\r\n", b"$999999999999\r\n"];
    let fake = Fake::start(ANSWERS);
    let dir = TempDir::new("redis-garbage");
    let conf = bus_conf(&dir, &format!("redis://127.0.0.1:{}", fake.port), 1000);
    // At debug, every failure is logged, not only the first of a streak.
    let mut node = Node::start_member("junk@127.0.0.1", &conf, &["--log", "debug"]);

    if !node.wait_log("malformed reply", LINK) {
        node.fail("no line saying the reply was malformed", "");
    }
    let warn = node
        .wait_log_match(LINK, |l| {
            l.contains("WARN") && l.contains("malformed reply")
        })
        .unwrap_or_else(|| node.fail("no WARN line for the malformed reply", ""));
    assert!(warn.contains("retrying"), "{warn}");

    // It dials again, and each answer (both kinds) is found malformed.
    let deadline = Instant::now() + LINK;
    while fake.accepted.load(Ordering::Relaxed) < 6 || node.log_count("malformed reply") < 5 {
        if Instant::now() >= deadline {
            node.fail(
                &format!(
                    "{} connections, {} malformed-reply lines",
                    fake.accepted.load(Ordering::Relaxed),
                    node.log_count("malformed reply")
                ),
                "",
            );
        }
        thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        node.log_count("no reply in time"),
        0,
        "a garbage answer was waited on instead of refused\n{}",
        node.stderr_tail()
    );
    assert!(node.alive(), "the node exited");
    // It serves after sync_nodes_timeout, saying Redis is not connected.
    wait_healthz(&node, "200, not connected", LINK, |s, j| {
        s == 200 && j["bus"]["connected"] == false
    });
    assert!(metric(&node, RECONNECTS) >= 4.0);
    let mut l = node.listen(&[]);
    node.publish_ok("still-here");
    assert_eq!(l.expect_event("own message").data, "still-here");
}

// ---------------------------------------------------------------------------
// Regressions: a reader behind the trim, and the outbox bound within a turn
// ---------------------------------------------------------------------------

/// Publishes `count` messages `PREFIX{t}-{i}` on `node` from `threads`
/// keep-alive connections; each must be answered 303.
fn flood(node: &Node, prefix: &str, threads: usize, count: usize) {
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let mut conn = node.connect();
            let prefix = prefix.to_string();
            thread::spawn(move || {
                for i in 0..count {
                    let text = format!("{prefix}{t}-{i}");
                    let r = conn
                        .publish(&text)
                        .unwrap_or_else(|e| panic!("publish {text}: {e}"));
                    assert_eq!(r.status, 303, "publish {text}: {r:?}");
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("flood");
    }
}

/// Regression: a reader that fell more than MAXLEN behind on a live
/// connection lost messages without a word.
#[test]
fn reader_behind_the_trim_is_told_it_missed_messages() {
    if !have_redis("reader_behind_the_trim") {
        return;
    }
    let redis = Redis::start("trim", &["--appendonly", "no"]);
    let dir = TempDir::new("redis-trim");
    // Default --history 1000: the stream keeps about 10,000 entries.
    let nodes = nodes_on(&dir, &redis.url(), &["t1", "t2"], &[]);
    let (a, b) = (&nodes[0], &nodes[1]);
    let lb = Drain::new(b.listen(&[]));
    a.publish_ok("warm-0");
    assert!(lb.wait_for(1, DELIVERY), "warm-0 did not reach t2");

    // b stops reading (a pause shorter than its reply timeout, so its
    // connection stays up) while a adds more than the stream keeps.
    const THREADS: usize = 4;
    const EACH: usize = 3_000;
    b.signal(libc::SIGSTOP);
    let paused = Instant::now();
    flood(a, "f", THREADS, EACH);
    let pause = paused.elapsed();
    b.signal(libc::SIGCONT);
    let want = 1 + THREADS * EACH;

    // Wait until b's listener has everything, or stops getting more.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = (lb.count(), Instant::now());
    while lb.count() < want && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(100));
        if lb.count() != last.0 {
            last = (lb.count(), Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(3) {
            break;
        }
    }
    let got = lb.snapshot();
    let missed = got.iter().any(|e| e.event.as_deref() == Some("missed"));
    let messages = got.iter().filter(|e| e.event.is_none()).count();
    assert!(
        missed || messages == want,
        "t2 (paused {pause:?}) got {messages} of {want} messages and no event: missed; \
         data_lost_total {}",
        metric(b, DATA_LOST)
    );
}

/// Regression: every publish of one turn passed the bound, which was
/// checked as of the previous turn.
#[test]
fn pipelined_publishes_stop_at_the_outbox_bound() {
    if !have_redis("outbox_overshoot") {
        return;
    }
    let mut redis = Redis::start("overshoot", &["--appendonly", "no"]);
    let dir = TempDir::new("redis-overshoot");
    let nodes = nodes_on(&dir, &redis.url(), &["o1"], &[]);
    let a = &nodes[0];
    redis.stop();
    wait_healthz(a, "not connected", LINK, |s, j| {
        s == 200 && j["bus"]["connected"] == false
    });
    flood(a, "f", 4, (MAX_OUTBOX - 1) / 4);
    let filled = (MAX_OUTBOX - 1) / 4 * 4;
    let mut fill = a.connect();
    for i in filled..MAX_OUTBOX - 1 {
        assert_eq!(fill.publish(&format!("g0-{i}")).unwrap().status, 303);
    }
    // One more fits; 200 pipelined in one write should get one 303.
    let mut conn = a.connect();
    let host = conn.host().to_string();
    let mut raw = Vec::new();
    for i in 0..200 {
        raw.extend(common::post_form_bytes(
            &host,
            "/publish",
            &form_message(&format!("p-{i}")),
            &[],
        ));
    }
    conn.send(&raw).expect("send");
    // A 503 may end the connection (what was pipelined after it is not
    // read): take answers until it closes.
    let statuses: Vec<u16> = (0..200)
        .map_while(|_| conn.read_response(false).ok().map(|r| r.status))
        .collect();
    let accepted = statuses.iter().filter(|s| **s == 303).count();
    assert_eq!(statuses.get(1), Some(&503), "{statuses:?}");
    let (_, health) = healthz(a);
    assert_eq!(
        accepted, 1,
        "{accepted} of 200 pipelined publishes accepted at 9,999 held; /healthz {health}"
    );
}

/// A CA, and a certificate for localhost it signed: (CA PEM, cert PEM, key PEM).
fn tls_files() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::new(Vec::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).expect("CA");
    let issuer = Issuer::new(ca, &ca_key);
    let key = KeyPair::generate().expect("key");
    let leaf = CertificateParams::new(vec!["localhost".to_string()])
        .expect("params")
        .signed_by(&key, &issuer)
        .expect("certificate");
    (ca_cert.pem(), leaf.pem(), key.serialize_pem())
}

/// `rediss://`: nodes reach Redis over TLS, trusting the CA file the URL
/// names; a node given another CA says why, keeps serving, and retries.
#[test]
fn rediss_carries_messages_over_tls_trusting_the_urls_ca() {
    if !have_redis("rediss") {
        return;
    }
    let dir = TempDir::new("rediss");
    let (ca, cert, key) = tls_files();
    let (ca, cert, key) = (
        dir.write("ca.pem", &ca),
        dir.write("cert.pem", &cert),
        dir.write("key.pem", &key),
    );
    let other_ca = dir.write("other-ca.pem", &tls_files().0);
    let tls_port = free_port().to_string();
    let _redis = Redis::start(
        "tls",
        &[
            "--tls-port",
            &tls_port,
            "--tls-cert-file",
            &cert,
            "--tls-key-file",
            &key,
            "--tls-auth-clients",
            "no",
        ],
    );
    let url = format!("rediss://localhost:{tls_port}?ca={ca}");
    let nodes = nodes_on(&dir, &url, &["s1", "s2"], &[]);
    for n in &nodes {
        wait_healthz(n, "connected over TLS", LINK, |s, j| {
            s == 200 && j["bus"]["connected"] == true
        });
    }
    let mut l = nodes[1].listen(&[]);
    nodes[0].publish_ok("over tls");
    assert_eq!(l.expect_event("over tls").data, "over tls");

    let other = TempDir::new("rediss-other");
    let bad = nodes_on(
        &other,
        &format!("rediss://localhost:{tls_port}?ca={other_ca}"),
        &["s3"],
        &[],
    );
    let said = bad[0].wait_log_match(LINK, |l| l.contains("redis") && l.contains("certificate"));
    assert!(
        said.is_some(),
        "no line about the certificate\n{}",
        bad[0].stderr_tail()
    );
    // It serves once the wait for the bus at start is over.
    wait_healthz(&bad[0], "serving without Redis", LINK, |s, j| {
        s == 200 && j["bus"]["connected"] == false
    });
    assert_eq!(bad[0].get("/").status, 200);
}
