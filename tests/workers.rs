//! `--workers 3` with the real binary (issue 17): the supervisor starts
//! three workers sharing the ports; connections spread over them (each
//! holds some listeners); a message published on any reaches every
//! listener once; a worker killed with `kill -9` comes back and a stream
//! that was on it resumes with `Last-Event-ID` without a gap; SIGTERM
//! drains every worker and the node exits 0, leaving no worker behind.

mod common;

use std::collections::HashMap;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{Node, SseClient};

const LISTENERS: usize = 30;
const WAIT: Duration = Duration::from_secs(10);

/// `--workers 3` with its three workers serving.
fn start() -> Node {
    let node = Node::start(&["--workers", "3", "--name", "wk"]);
    for k in 1..=3 {
        let linked = |l: &str| l.contains(&format!("w{k} ")) && l.contains("serving HTTP: 2 of 2");
        if node.wait_log_match(WAIT, linked).is_none() {
            node.fail(
                &format!("worker {k} serving with its 2 siblings"),
                "timeout",
            );
        }
    }
    node
}

/// The PID the supervisor logged for worker `k` (the last one started).
fn worker_pid(node: &Node, k: usize) -> u32 {
    let lines = node.log_lines();
    let line = lines
        .iter()
        .rev()
        .find(|l| l.contains(&format!("worker {k} started")))
        .unwrap_or_else(|| node.fail(&format!("worker {k}'s pid"), "not logged"));
    let pid = line
        .rsplit("pid ")
        .next()
        .unwrap_or("")
        .trim_end_matches(')');
    pid.parse().unwrap_or_else(|e| node.fail("pid", e))
}

fn alive(pid: u32) -> bool {
    // SAFETY: kill(2) with signal 0 only checks that the process exists.
    unsafe { libc::kill(pid as libc::pid_t, 0) == 0 }
}

/// `/healthz` asked on new connections until every worker answered:
/// worker name -> its listeners.
fn listeners_per_worker(node: &Node) -> HashMap<String, u64> {
    let mut seen = HashMap::new();
    let deadline = Instant::now() + WAIT;
    while seen.len() < 3 && Instant::now() < deadline {
        let body = node.get("/healthz").text();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        if let (Some(name), Some(n)) = (v["node"].as_str(), v["listeners"].as_u64()) {
            seen.insert(name.to_string(), n);
        }
    }
    seen
}

#[test]
fn workers_share_the_ports_and_every_listener_gets_every_message_once() {
    let node = start();
    let mut streams: Vec<SseClient<TcpStream>> = (0..LISTENERS).map(|_| node.listen(&[])).collect();
    let per = listeners_per_worker(&node);
    assert_eq!(
        per.len(),
        3,
        "every worker answers on the shared port: {per:?}"
    );
    assert!(
        per.values().all(|&n| n > 0),
        "each worker holds some of the {LISTENERS} listeners: {per:?}"
    );
    assert_eq!(per.values().sum::<u64>(), LISTENERS as u64, "{per:?}");
    assert!(per
        .keys()
        .all(|n| n.starts_with("wk+") && n.ends_with("@127.0.0.1")));
    // The page and /cluster show the node once, with all its listeners.
    let cluster: serde_json::Value =
        serde_json::from_str(&node.get("/cluster").text()).unwrap_or_default();
    assert_eq!(cluster["nodes"], serde_json::json!(["wk"]), "{cluster}");
    assert!(
        node.get("/").text().contains("Node: wk<"),
        "the page names the node"
    );

    for i in 0..5 {
        node.publish_ok(&format!("m-{i}"));
    }
    // Each publish may land on another worker (another origin), so the
    // order across them is not fixed: each arrives once.
    let want: Vec<String> = (0..5).map(|i| format!("m-{i}")).collect();
    for (n, s) in streams.iter_mut().enumerate() {
        let mut got: Vec<String> = (0..5)
            .map(|i| s.expect_event(&format!("message {i} on listener {n}")).data)
            .collect();
        got.sort();
        assert_eq!(got, want, "listener {n}");
        assert!(
            s.next_event(Duration::from_millis(100)).is_none(),
            "listener {n}: a copy"
        );
    }
}

#[test]
fn a_killed_worker_comes_back_and_its_listeners_resume_without_a_gap() {
    let node = start();
    let mut streams: Vec<SseClient<TcpStream>> = (0..LISTENERS).map(|_| node.listen(&[])).collect();
    node.publish_ok("before");
    let mut last_ids = Vec::new();
    for s in &mut streams {
        let e = s.expect_event("before");
        assert_eq!(e.data, "before");
        last_ids.push(e.id.unwrap_or_default());
    }
    let victim = worker_pid(&node, 2);
    // SAFETY: kill(2) on a worker of the node this test started.
    assert_eq!(
        unsafe { libc::kill(victim as libc::pid_t, libc::SIGKILL) },
        0
    );
    // Its streams end; the others go on.
    let mut cut = Vec::new();
    for (i, s) in streams.iter_mut().enumerate() {
        s.wait_until(Duration::from_millis(1500), |s| s.closed);
        if s.closed {
            cut.push(i);
        }
    }
    assert!(!cut.is_empty(), "worker 2 held none of the streams");
    assert!(cut.len() < LISTENERS, "every stream was on worker 2");
    // Published while the worker is down: on the live workers.
    node.publish_ok("while down");
    let back = |l: &str| l.contains("worker 2 started again");
    if node.wait_log_match(WAIT, back).is_none() {
        node.fail("worker 2 started again", "not logged");
    }
    let again = worker_pid(&node, 2);
    assert_ne!(again, victim);
    assert!(alive(again));
    // The cut streams resume wherever the kernel puts them: exactly what
    // they missed, no `missed`, no copy.
    for &i in &cut {
        let mut s = node.listen(&[("Last-Event-ID", &last_ids[i])]);
        let e = s.expect_event("what the resumed stream missed");
        assert_eq!(
            (e.event.as_deref(), e.data.as_str()),
            (None, "while down"),
            "stream {i}"
        );
        assert!(
            s.next_event(Duration::from_millis(200)).is_none(),
            "stream {i}: more"
        );
    }
    for (i, s) in streams.iter_mut().enumerate() {
        if !cut.contains(&i) {
            assert_eq!(
                s.expect_event("while down").data,
                "while down",
                "stream {i}"
            );
        }
    }
}

#[test]
fn sigterm_drains_every_worker_and_the_node_exits_zero() {
    let mut node = start();
    let pids: Vec<u32> = (1..=3).map(|k| worker_pid(&node, k)).collect();
    let mut s = node.listen(&[]);
    node.signal(libc::SIGTERM);
    // Streams get the reconnect hint and end.
    s.wait_until(WAIT, |s| s.closed);
    assert!(s.closed, "the stream did not end");
    match node.wait_exit(WAIT) {
        Some(status) => assert!(status.success(), "exit: {status:?}\n{}", node.stderr_tail()),
        None => node.fail("exit after SIGTERM", "still running"),
    }
    for pid in pids {
        assert!(!alive(pid), "worker {pid} still running");
    }
    assert!(node
        .log_lines()
        .iter()
        .any(|l| l.contains("all workers stopped")));
}
