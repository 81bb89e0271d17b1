//! Clusters of real `watercooler` processes on loopback (issue 3): sys.conf,
//! cookie-authenticated links, full mesh with transitive discovery,
//! exactly-once per-origin-ordered delivery, catch-up after a freeze or a
//! restart, resume on another node, hostile input on the cluster port.
//!
//! Every test builds its own cluster on its own ports with its own cookie,
//! so they run in parallel. Messages are named `ORIGIN-I` so a listener's
//! stream can be checked for "each exactly once, per-origin order".

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use common::{conf_text, run, Event, Member, Node, SseClient, TempDir};
use watercooler::bus::mesh::wire::{self, Frame};

/// Bound on links forming (dial, handshake, discovery, presence refresh).
const LINK: Duration = Duration::from_secs(10);
/// Bound on a batch of messages reaching a listener.
const DELIVERY: Duration = Duration::from_secs(10);
/// How long a listener must stay quiet to show nothing more (no duplicate)
/// is coming.
const QUIET: Duration = Duration::from_millis(600);
/// sync_nodes_timeout for nodes started one after the other.
const SYNC_MS: u64 = 1500;

/// A cluster whose members all share one sys.conf, started one by one.
fn mesh(tag: &str, shorts: &[&str]) -> (TempDir, Vec<Member>, Vec<Node>) {
    mesh_with(tag, shorts, "")
}

/// `mesh`, with `extra` lines in the cluster file.
fn mesh_with(tag: &str, shorts: &[&str], extra: &str) -> (TempDir, Vec<Member>, Vec<Node>) {
    let dir = TempDir::new(tag);
    let members: Vec<Member> = shorts.iter().map(|s| Member::new(s)).collect();
    let refs: Vec<&Member> = members.iter().collect();
    let conf = dir.write(
        "sys.conf",
        &(conf_text(&refs, SYNC_MS, &format!("{tag}-cookie")) + extra),
    );
    let nodes: Vec<Node> = members
        .iter()
        .map(|m| Node::start_member(&m.name, &conf, &[]))
        .collect();
    for (i, node) in nodes.iter().enumerate() {
        let others: Vec<&Member> = members
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, m)| m)
            .collect();
        node.wait_peers(&others, LINK);
    }
    (dir, members, nodes)
}

/// Reads exactly `n` messages, failing with the node's stderr if they don't
/// come, then checks that nothing more arrives for `QUIET`.
fn read_exactly(node: &Node, l: &mut SseClient<TcpStream>, n: usize, what: &str) -> Vec<Event> {
    let got = l.collect(n, DELIVERY);
    if got.len() < n {
        node.fail(
            &format!("{what}: {} of {n} messages within {DELIVERY:?}", got.len()),
            format!("{:?}", data_of(&got)),
        );
    }
    if let Some(extra) = l.next_event(QUIET) {
        node.fail(
            &format!("{what}: a message beyond the {n} expected"),
            format!("{extra:?} after {:?}", data_of(&got)),
        );
    }
    got
}

fn data_of(events: &[Event]) -> Vec<&str> {
    events.iter().map(|e| e.data.as_str()).collect()
}

/// Checks that `events` hold exactly the messages `ORIGIN-I` for each
/// `(ORIGIN, RANGE)` of `want`, each once, in increasing I per origin, with
/// ids that are present and unique.
fn check_once_in_order(events: &[Event], want: &[(&str, std::ops::Range<usize>)], what: &str) {
    common::assert_unique_ids(what, events);
    common::assert_origins_in_order(what, &data_of(events), want);
}

#[test]
fn two_node_demo_both_directions() {
    let (_dir, _m, nodes) = mesh("demo", &["node1", "node2"]);
    let (n1, n2) = (&nodes[0], &nodes[1]);
    let info = n1.cluster_info();
    assert_eq!(info.node, "node1@127.0.0.1", "{info:?}");
    assert_eq!(
        info.nodes,
        ["node1@127.0.0.1", "node2@127.0.0.1"],
        "{info:?}"
    );

    let mut l1 = n1.listen(&[]);
    let mut l2 = n2.listen(&[]);
    n1.publish_ok("hello from node1");
    let e = l2.expect_event("node1's message on node2");
    assert_eq!(e.data, "hello from node1");
    assert_eq!(l1.expect_event("own message").data, "hello from node1");

    n2.publish_ok("hello from node2");
    let e = l1.expect_event("node2's message on node1");
    assert_eq!(e.data, "hello from node2");
    assert_eq!(l2.expect_event("own message").data, "hello from node2");

    assert!(l1.next_event(QUIET).is_none(), "duplicate on node1");
    assert!(l2.next_event(QUIET).is_none(), "duplicate on node2");

    // Presence: both listeners are counted cluster-wide.
    n2.wait_cluster("2 listeners cluster-wide", LINK, |i| {
        i.listeners == 2 && i.local_listeners == 1
    });
}

#[test]
fn third_node_discovers_the_mesh_and_every_listener_gets_every_message_once() {
    let dir = TempDir::new("three");
    let m: Vec<Member> = ["n1", "n2", "n3"].iter().map(|s| Member::new(s)).collect();
    let cookie = "three-cookie";
    let conf12 = dir.write("n12.conf", &conf_text(&[&m[0], &m[1]], SYNC_MS, cookie));
    // node3 knows only node1 (and itself).
    let conf3 = dir.write("n3.conf", &conf_text(&[&m[0], &m[2]], SYNC_MS, cookie));
    let nodes = [
        Node::start_member(&m[0].name, &conf12, &[]),
        Node::start_member(&m[1].name, &conf12, &[]),
        Node::start_member(&m[2].name, &conf3, &[]),
    ];
    nodes[2].wait_peers(&[&m[0], &m[1]], LINK);
    nodes[1].wait_peers(&[&m[0], &m[2]], LINK);
    nodes[0].wait_peers(&[&m[1], &m[2]], LINK);

    let mut listeners: Vec<_> = nodes.iter().map(|n| n.listen(&[])).collect();
    for i in 0..5 {
        for (k, n) in nodes.iter().enumerate() {
            n.publish_ok(&format!("o{k}-{i}"));
        }
    }
    for (k, l) in listeners.iter_mut().enumerate() {
        let got = read_exactly(&nodes[k], l, 15, &format!("listener on n{}", k + 1));
        check_once_in_order(
            &got,
            &[("o0", 0..5), ("o1", 0..5), ("o2", 0..5)],
            &format!("listener on n{}", k + 1),
        );
    }
}

#[test]
fn wrong_cookie_is_refused_and_no_message_crosses() {
    let dir = TempDir::new("cookie");
    let m: Vec<Member> = ["c1", "c2"].iter().map(|s| Member::new(s)).collect();
    let good = dir.write("good.conf", &conf_text(&[&m[0], &m[1]], 1000, "right"));
    let bad = dir.write("bad.conf", &conf_text(&[&m[0], &m[1]], 1000, "wrong"));
    let n1 = Node::start_member(&m[0].name, &good, &[]);
    let n2 = Node::start_member(&m[1].name, &bad, &[]);

    let refused =
        |l: &str| l.contains("does not know our cookie") || l.contains("refused the link");
    for (n, name) in [(&n1, "c1"), (&n2, "c2")] {
        if n.wait_log_match(LINK, refused).is_none() {
            n.fail(&format!("{name} did not log the refusal"), "");
        }
    }

    // Both serve (after sync_nodes_timeout) alone.
    for n in [&n1, &n2] {
        let info = n.cluster_info();
        assert!(
            info.peers().is_empty(),
            "linked despite the cookie: {info:?}"
        );
    }
    let mut l1 = n1.listen(&[]);
    let mut l2 = n2.listen(&[]);
    n1.publish_ok("secret-1");
    n2.publish_ok("secret-2");
    assert_eq!(l1.expect_event("own message").data, "secret-1");
    assert_eq!(l2.expect_event("own message").data, "secret-2");
    let leaked1 = l1.next_event(Duration::from_millis(1500));
    let leaked2 = l2.next_event(Duration::from_millis(100));
    assert!(leaked1.is_none(), "crossed a refused link: {leaked1:?}");
    assert!(leaked2.is_none(), "crossed a refused link: {leaked2:?}");
    for n in [&n1, &n2] {
        assert_eq!(n.log_count("link up with"), 0, "{}", n.stderr_tail());
    }
}

#[test]
fn simultaneous_start_makes_one_link_per_pair() {
    let dir = TempDir::new("simul");
    let m: Vec<Member> = ["s1", "s2", "s3"].iter().map(|s| Member::new(s)).collect();
    let conf = dir.write(
        "sys.conf",
        &conf_text(&[&m[0], &m[1], &m[2]], 5000, "simul-cookie"),
    );
    let barrier = Arc::new(Barrier::new(m.len()));
    let handles: Vec<_> = m
        .iter()
        .map(|member| {
            let (name, conf, barrier) = (member.name.clone(), conf.clone(), Arc::clone(&barrier));
            thread::spawn(move || {
                barrier.wait();
                Node::start_member(&name, &conf, &[])
            })
        })
        .collect();
    let nodes: Vec<Node> = handles.into_iter().map(|h| h.join().unwrap()).collect();

    for (i, n) in nodes.iter().enumerate() {
        let others: Vec<&Member> = (0..3).filter(|j| *j != i).map(|j| &m[j]).collect();
        let info = n.wait_peers(&others, LINK);
        assert_eq!(info.nodes.len(), 3, "{info:?}");
        assert_eq!(info.nodes[0], m[i].name, "{info:?}");
    }

    let mut listeners: Vec<_> = nodes.iter().map(|n| n.listen(&[])).collect();
    for i in 0..3 {
        for (k, n) in nodes.iter().enumerate() {
            n.publish_ok(&format!("s{k}-{i}"));
        }
    }
    for (k, l) in listeners.iter_mut().enumerate() {
        let got = read_exactly(&nodes[k], l, 9, &format!("listener on s{}", k + 1));
        check_once_in_order(
            &got,
            &[("s0", 0..3), ("s1", 0..3), ("s2", 0..3)],
            &format!("listener on s{}", k + 1),
        );
    }

    // One link per pair, settled: still exactly the two others, and no link
    // that came up was torn down again.
    for (i, n) in nodes.iter().enumerate() {
        let info = n.cluster_info();
        assert_eq!(info.peers().len(), 2, "{info:?}");
        let downs: Vec<String> = n
            .log_lines()
            .into_iter()
            .filter(|l| l.contains("link to") && l.contains("down"))
            .collect();
        assert!(downs.is_empty(), "s{}: links went down: {downs:?}", i + 1);
        for (j, other) in m.iter().enumerate() {
            if j != i {
                let ups = n.log_count(&format!("link up with {}", other.name));
                assert_eq!(
                    ups,
                    1,
                    "s{}: {ups} links up with {}\n{}",
                    i + 1,
                    other.name,
                    n.log_lines().join("\n")
                );
            }
        }
    }
}

#[test]
fn frozen_node_gets_everything_it_missed_once_after_sigcont() {
    let (_dir, m, nodes) = mesh("freeze", &["f1", "f2", "f3"]);
    let (n1, n2, n3) = (&nodes[0], &nodes[1], &nodes[2]);
    let mut l1 = n1.listen(&[]);
    let mut l3 = n3.listen(&[]);
    n1.publish_ok("a-0");
    assert_eq!(l3.expect_event("before the freeze").data, "a-0");
    assert_eq!(l1.expect_event("before the freeze").data, "a-0");

    let frozen_at = Instant::now();
    n3.signal(libc::SIGSTOP);
    // Some while the others still think f3 is up (they go into its socket
    // buffer or its peers' output)...
    for i in 1..3 {
        n1.publish_ok(&format!("a-{i}"));
        n2.publish_ok(&format!("b-{i}"));
    }
    // ...some after they have declared it down.
    let down = n1.wait_log(&format!("link to {}", m[2].name), Duration::from_secs(5));
    for i in 3..5 {
        n1.publish_ok(&format!("a-{i}"));
        n2.publish_ok(&format!("b-{i}"));
    }
    thread::sleep(Duration::from_millis(4500).saturating_sub(frozen_at.elapsed()));
    n3.signal(libc::SIGCONT);
    assert!(
        down,
        "f1 did not declare the frozen f3 down\n{}",
        n1.stderr_tail()
    );

    let got = read_exactly(n3, &mut l3, 8, "f3's listener after SIGCONT");
    check_once_in_order(&got, &[("a", 1..5), ("b", 1..5)], "f3's listener");
    let got = read_exactly(n1, &mut l1, 8, "f1's listener");
    check_once_in_order(&got, &[("a", 1..5), ("b", 1..5)], "f1's listener");
    n3.wait_peers(&[&m[0], &m[1]], LINK);
}

#[test]
fn restarted_node_serves_a_resuming_listener_what_it_missed() {
    let (_dir, m, mut nodes) = mesh("restart", &["r1", "r2"]);
    let mut l1 = nodes[0].listen(&[]);
    let mut l2 = nodes[1].listen(&[]);
    nodes[0].publish_ok("a-0");
    nodes[1].publish_ok("b-0");
    let seen = read_exactly(&nodes[1], &mut l2, 2, "r2's listener before the kill");
    check_once_in_order(&seen, &[("a", 0..1), ("b", 0..1)], "r2 before the kill");
    let last = seen[1].id.clone().unwrap();
    drop(l2);

    nodes[1].kill();
    for i in 1..4 {
        nodes[0].publish_ok(&format!("a-{i}"));
    }
    nodes[1].restart();
    let (n1, n2) = (&nodes[0], &nodes[1]);

    // HTTP is served only after the restarted node has its history back.
    let mut l2 = n2.listen(&[("Last-Event-ID", &last)]);
    let got = read_exactly(n2, &mut l2, 3, "resumed listener on the restarted r2");
    check_once_in_order(&got, &[("a", 1..4)], "resumed listener on r2");
    n2.wait_peers(&[&m[0]], LINK);

    // The restarted node's own new messages are not mistaken for the ones
    // it published before the kill.
    n2.publish_ok("b-1");
    assert_eq!(l2.expect_event("r2's message after restart").data, "b-1");
    let got = read_exactly(n1, &mut l1, 6, "r1's listener");
    check_once_in_order(&got, &[("a", 0..4), ("b", 0..2)], "r1's listener");
}

/// A raw connection to a cluster port.
struct Raw {
    stream: TcpStream,
    what: &'static str,
}

impl Raw {
    fn open(addr: std::net::SocketAddr, what: &'static str, first: &[u8]) -> Raw {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("{what}: connect {addr}: {e}"));
        stream
            .set_write_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        if !first.is_empty() {
            // The node may close before reading it all: not an error here.
            let _ = stream.write_all(first);
        }
        Raw { stream, what }
    }

    fn port(&self) -> u16 {
        self.stream.local_addr().unwrap().port()
    }

    /// Reads one frame (during a handshake the node answers small frames).
    fn read_frame(&mut self) -> Frame {
        self.stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            if let Some((frame, _)) = wire::decode(&buf, wire::MAX_FRAME).unwrap() {
                return frame;
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => panic!("{}: closed before a frame", self.what),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) => panic!("{}: no frame: {e}", self.what),
            }
        }
    }

    /// Whether the node closes the connection before `deadline`.
    fn closed_by(&mut self, deadline: Instant) -> bool {
        let mut chunk = [0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            self.stream.set_read_timeout(Some(left)).unwrap();
            match self.stream.read(&mut chunk) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return false
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => return true, // reset
            }
        }
    }
}

fn frame(f: &Frame) -> Vec<u8> {
    let mut out = Vec::new();
    wire::encode(f, &mut out);
    out
}

#[test]
fn hostile_input_on_the_cluster_port_closes_only_that_connection() {
    // Clear links, to speak frames directly (tests/links.rs: the same under TLS).
    let (_dir, m, mut nodes) = mesh_with("hostile", &["h1", "h2"], "link_tls = off\n");
    let mut l1 = nodes[0].listen(&[]);
    let mut l2 = nodes[1].listen(&[]);
    let n1 = &nodes[0];
    let target = m[0].cluster_addr();

    let hello = |name: &str| Frame::Hello {
        version: wire::VERSION,
        name: name.to_string(),
        addr: "127.0.0.1:1".to_string(),
        nonce: [0; 32],
    };
    let sneaky = Frame::Message {
        origin: 1,
        seq: 1,
        room: "lobby".to_string(),
        text: "sneaky".to_string(),
    };
    let mut oversized_hello = vec![0, 0, 8, 0, 1, 1];
    oversized_hello.resize(4 + 2048, b'x');

    let start = Instant::now();
    let mut raws = vec![
        Raw::open(target, "http garbage", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
        Raw::open(target, "unknown kind", &[0, 0, 0, 5, 0xEE, 1, 2, 3, 4]),
        Raw::open(target, "zero length", &[0, 0, 0, 0, 1, 2, 3]),
        Raw::open(
            target,
            "length 0xFFFFFFFF",
            &[0xFF, 0xFF, 0xFF, 0xFF, 12, 0, 0],
        ),
        Raw::open(target, "2 KiB hello", &oversized_hello),
        Raw::open(target, "silent", b""),
        Raw::open(target, "message before hello", &frame(&sneaky)),
        Raw::open(target, "hello as linked h2", &frame(&hello(&m[1].name))),
    ];
    // Hello, then a message instead of the proof.
    let mut out_of_turn = Raw::open(
        target,
        "message instead of proof",
        &frame(&hello("x@127.0.0.1")),
    );
    match out_of_turn.read_frame() {
        Frame::Challenge { .. } => {}
        other => panic!("answer to a hello: {other:?}"),
    }
    let sneaky2 = Frame::Message {
        origin: 1,
        seq: 2,
        room: "lobby".to_string(),
        text: "sneaky".to_string(),
    };
    let _ = out_of_turn.stream.write_all(&frame(&sneaky2));
    raws.push(out_of_turn);

    // Silent ones are cut after the ~3 s handshake timeout; allow 6 s.
    let deadline = start + Duration::from_secs(6);
    for raw in &mut raws {
        if !raw.closed_by(deadline) {
            n1.fail(
                &format!(
                    "{}: connection still open after {:?}",
                    raw.what,
                    start.elapsed()
                ),
                "",
            );
        }
    }
    // Each close is logged with the connection's address.
    for raw in &raws {
        let needle = format!("127.0.0.1:{}", raw.port());
        if !n1.wait_log(&needle, Duration::from_secs(2)) {
            n1.fail(&format!("{}: no log line naming {needle}", raw.what), "");
        }
    }

    assert!(nodes[0].alive(), "h1 died");
    let n1 = &nodes[0];
    assert_eq!(n1.get("/").status, 200, "h1 stopped serving HTTP");
    let info = n1.cluster_info();
    assert_eq!(info.peers(), [m[1].name.clone()], "{info:?}");
    assert_eq!(
        n1.log_count(&format!("link to {}", m[1].name)),
        0,
        "the real link went down\n{}",
        n1.stderr_tail()
    );
    n1.publish_ok("after the attack");
    // Nothing the intruders sent was delivered, on either node.
    for (n, l) in [(&nodes[0], &mut l1), (&nodes[1], &mut l2)] {
        let got = read_exactly(n, l, 1, "listener after the attack");
        assert_eq!(data_of(&got), ["after the attack"]);
    }
}

#[test]
fn last_event_id_from_node1_resumes_on_node2() {
    let (_dir, _m, nodes) = mesh("resume", &["e1", "e2"]);
    let (n1, n2) = (&nodes[0], &nodes[1]);
    let mut l1 = n1.listen(&[]);
    let mut l2 = n2.listen(&[]);
    // Mixed origins; each message seen on both nodes before the next one,
    // so both nodes hold them in the same order.
    let plan = [(0, "a-0"), (0, "a-1"), (1, "b-0"), (0, "a-2"), (1, "b-1")];
    let mut ids = Vec::new();
    for (k, text) in plan {
        nodes[k].publish_ok(text);
        let e = l1.expect_event(text);
        assert_eq!(e.data, text);
        assert_eq!(l2.expect_event(text).data, text);
        ids.push(e.id.unwrap());
    }
    drop(l1);

    // Seen a-0 and a-1 on node1; resume on node2.
    let mut r = n2.listen(&[("Last-Event-ID", &ids[1])]);
    let got = read_exactly(n2, &mut r, 3, "resume on e2");
    assert_eq!(data_of(&got), ["b-0", "a-2", "b-1"]);

    // Seen everything up to b-0 (an e2 message, id from e1's stream).
    let mut r = n2.listen(&[("Last-Event-ID", &ids[2])]);
    let got = read_exactly(n2, &mut r, 2, "resume on e2 after b-0");
    assert_eq!(data_of(&got), ["a-2", "b-1"]);

    // Live delivery continues on the resumed stream.
    n1.publish_ok("a-3");
    assert_eq!(r.expect_event("live after resume").data, "a-3");
}

#[test]
fn config_errors_exit_non_zero_naming_file_and_line() {
    let dir = TempDir::new("conf");
    let me = "me@127.0.0.1";
    let port = common::free_port();
    let cases = [
        (
            "unknown.conf",
            format!("# ok\nnodes = {me}:{port}\ncolour = blue\ncookie = c\n"),
            3,
            "unknown key",
        ),
        (
            "malformed.conf",
            format!("nodes = {me}:{port}\nthis line has no equals sign\ncookie = c\n"),
            2,
            "",
        ),
        (
            "missing.conf",
            format!("cookie = c\n\nnodes = other@127.0.0.1:{port}\n"),
            3,
            "",
        ),
    ];
    for (file, text, line, words) in cases {
        let path = dir.write(file, &text);
        let out = run(
            &[
                "--name",
                me,
                "--config",
                &path,
                "--bind",
                "127.0.0.1",
                "--port",
                "0",
                "--secure-port",
                "0",
            ],
            Duration::from_secs(10),
        );
        let status = out
            .status
            .unwrap_or_else(|| panic!("{file}: still running: {out:?}"));
        assert!(!status.success(), "{file}: exit {status:?}");
        let lines: Vec<&str> = out
            .stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        assert_eq!(lines.len(), 1, "{file}: stderr {:?}", out.stderr);
        assert!(
            lines[0].contains(&format!("{file}:{line}:")),
            "{file}: expected {file}:{line}: in {:?}",
            lines[0]
        );
        assert!(lines[0].contains(words), "{file}: {:?}", lines[0]);
        assert!(
            !out.stdout.contains("listening"),
            "{file}: {:?}",
            out.stdout
        );
    }
}
