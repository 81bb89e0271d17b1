//! Rooms on real nodes (issue 13): two rooms on a three-node cluster never
//! leak into each other; a stream that follows both gets both, each event
//! saying its room; resuming a room on another node; the backlog of a new
//! stream; and a flood of made-up room names refused past `--max-rooms`
//! with memory bounded and the existing rooms unaffected.

mod common;

use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{conf_text, form_message, post_form, Event, Member, Node, SseClient, TempDir};

const LINK: Duration = Duration::from_secs(10);
const DELIVERY: Duration = Duration::from_secs(10);
const QUIET: Duration = Duration::from_millis(600);

fn cluster(tag: &str, shorts: &[&str], extra: &[&str]) -> (TempDir, Vec<Node>) {
    let dir = TempDir::new(tag);
    let members: Vec<Member> = shorts.iter().map(|s| Member::new(s)).collect();
    let refs: Vec<&Member> = members.iter().collect();
    let conf = dir.write(
        "sys.conf",
        &conf_text(&refs, 1500, &format!("{tag}-cookie")),
    );
    let nodes: Vec<Node> = members
        .iter()
        .map(|m| Node::start_member(&m.name, &conf, extra))
        .collect();
    for (i, node) in nodes.iter().enumerate() {
        let others: Vec<&Member> = (0..members.len())
            .filter(|&j| j != i)
            .map(|j| &members[j])
            .collect();
        node.wait_peers(&others, LINK);
    }
    (dir, nodes)
}

fn publish(node: &Node, room: &str, message: &str) {
    let path = if room == "lobby" {
        "/publish".to_string()
    } else {
        format!("/r/{room}/publish")
    };
    let r = post_form(node.http_addr(), &path, &form_message(message), &[]);
    assert_eq!(r.status, 303, "publish {message} in {room}: {r:?}");
}

fn room_of(e: &Event) -> &str {
    let id = e.id.as_deref().unwrap_or_default();
    id.split_once('/').map_or("", |(room, _)| room)
}

/// Checks that the events of `room` are exactly `{p}{node}-{k}` for three
/// nodes and k in 0..2, each once, each node's in order, every event of
/// that prefix saying that room.
fn check_room(events: &[Event], room: &str, p: char) {
    for e in events.iter().filter(|e| e.data.starts_with(p)) {
        assert_eq!(room_of(e), room, "{e:?} leaked");
    }
    for node in 0..3 {
        let mine: Vec<&str> = events
            .iter()
            .filter(|e| room_of(e) == room)
            .map(|e| e.data.as_str())
            .filter(|d| d.starts_with(&format!("{p}{node}-")))
            .collect();
        let want: Vec<String> = (0..2).map(|k| format!("{p}{node}-{k}")).collect();
        assert_eq!(mine, want, "{room}: node {node}'s messages once, in order");
    }
}

/// Reads exactly `n` messages, then checks that nothing more comes.
fn exactly(node: &Node, l: &mut SseClient<TcpStream>, n: usize, what: &str) -> Vec<Event> {
    let got = l.collect(n, DELIVERY);
    if got.len() < n {
        node.fail(&format!("{what}: {} of {n}", got.len()), format!("{got:?}"));
    }
    if let Some(extra) = l.next_event(QUIET) {
        node.fail(&format!("{what}: one more than {n}"), format!("{extra:?}"));
    }
    got
}

#[test]
fn two_rooms_on_three_nodes_never_leak_and_resume_on_another_node() {
    let (_dir, nodes) = cluster("rooms3", &["r1", "r2", "r3"], &["--backlog", "0"]);
    let mut general = nodes[1].listen_path("/r/general/listen", &[]);
    let mut random = nodes[2].listen_path("/r/random/listen", &[]);
    let mut both = nodes[0].listen_path("/listen?room=general&room=random", &[]);
    let mut lobby = nodes[0].listen(&[]);
    // Each node publishes two messages in each room: `g{node}-{k}` and
    // `r{node}-{k}`. Only each origin's own order is promised.
    for k in 0..2 {
        for (i, node) in nodes.iter().enumerate() {
            publish(node, "general", &format!("g{i}-{k}"));
            publish(node, "random", &format!("r{i}-{k}"));
        }
    }
    let g = exactly(&nodes[1], &mut general, 6, "general on r2");
    check_room(&g, "general", 'g');
    let r = exactly(&nodes[2], &mut random, 6, "random on r3");
    check_room(&r, "random", 'r');
    let b = exactly(&nodes[0], &mut both, 12, "both on r1");
    check_room(&b, "general", 'g');
    check_room(&b, "random", 'r');
    assert!(
        lobby.next_event(QUIET).is_none(),
        "nothing leaked into the lobby"
    );

    // The two-room stream saw g0; it resumes on another node from that id:
    // the rest of both rooms, nothing twice.
    let after = b.iter().position(|e| e.data == "g0-0").expect("g0-0");
    let id = b[after].id.clone().unwrap();
    let path = format!(
        "/listen?room=general&room=random&lastEventId={}",
        urlencoding::encode(&id)
    );
    let mut resumed = nodes[2].listen_path(&path, &[]);
    let rest = exactly(&nodes[2], &mut resumed, 11 - after, "resumed on r3");
    let mut want: Vec<&str> = b[after + 1..].iter().map(|e| e.data.as_str()).collect();
    let mut got: Vec<&str> = rest.iter().map(|e| e.data.as_str()).collect();
    want.sort();
    got.sort();
    assert_eq!(got, want, "resume of both rooms on another node");

    // An id from one room is not valid in another: missed, then what the room has.
    let g_id = g[0].id.clone().unwrap();
    let path = format!(
        "/r/random/listen?lastEventId={}",
        urlencoding::encode(&g_id)
    );
    let mut wrong = nodes[1].listen_path(&path, &[]);
    let first = wrong.expect_event("missed");
    assert_eq!(first.event.as_deref(), Some("missed"), "{first:?}");
}

#[test]
fn a_new_stream_gets_the_backlog_of_each_room() {
    let node = Node::start(&["--backlog", "2"]);
    // A witness: once it has o1, every message before it has been handed to
    // fan-out (one published in the same loop turn as a stream opens comes
    // to that stream live, not in its backlog).
    let mut witness = node.listen_path("/listen?room=other", &[]);
    for m in ["a1", "a2", "a3"] {
        publish(&node, "lobby", m);
    }
    publish(&node, "other", "o1");
    assert_eq!(witness.expect_event("o1").data, "o1");
    let mut l = node.listen_path("/listen?room=lobby&room=other", &[]);
    let mut backlog = Vec::new();
    while let Some(e) = l.next_any_event(Duration::from_secs(2)) {
        if e.event.as_deref() == Some("backlog") {
            backlog.push(e.data.clone());
            if backlog.len() == 3 {
                break;
            }
        }
    }
    assert_eq!(backlog, ["a2", "a3", "o1"]);
    publish(&node, "other", "live");
    let e = l.expect_event("live");
    assert_eq!((e.event.as_deref(), e.data.as_str()), (None, "live"));
    let json = node.get("/r/other/messages").text();
    assert!(
        json.contains("\"text\":\"o1\"") && json.contains("\"text\":\"live\""),
        "{json}"
    );
}

#[test]
fn bad_room_names_are_never_rooms() {
    let node = Node::start(&[]);
    for path in [
        "/r/General",
        "/r/a_b",
        "/r/",
        "/r/x/y",
        &format!("/r/{}", "a".repeat(33)),
    ] {
        let r = node.get(path);
        assert_eq!(r.status, 404, "{path}: {r:?}");
        assert!(r.text().contains("a room name is"), "{path}: {}", r.text());
    }
    let r = node.get("/listen?room=Bad");
    assert_eq!(r.status, 400, "{r:?}");
    let rooms = node.get("/rooms").text();
    assert!(
        !rooms.contains("General") && !rooms.contains("a_b"),
        "{rooms}"
    );
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
fn ten_thousand_made_up_rooms_are_refused_past_the_limit_with_memory_bounded() {
    let node = Node::start(&["--max-rooms", "100", "--history", "10", "--backlog", "0"]);
    let mut general = node.listen_path("/r/general/listen", &[]);
    publish(&node, "general", "before");
    assert_eq!(general.expect_event("before").data, "before");
    let before = rss_kib(node.pid());
    let mut conn = node.connect();
    let body = form_message(&"x".repeat(1000));
    let (mut ok, mut refused) = (0, 0);
    let started = Instant::now();
    for i in 0..10_000 {
        let raw = format!(
            "POST /r/made-up-{i}/publish HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            conn.host(),
            body.len()
        );
        let r = conn
            .roundtrip(raw.as_bytes())
            .unwrap_or_else(|e| node.fail("flood", e));
        match r.status {
            303 => ok += 1,
            503 => {
                refused += 1;
                assert!(r.text().contains("too many rooms"), "{}", r.text());
                conn = node.connect();
            }
            s => node.fail("flood", format!("status {s}: {r:?}")),
        }
    }
    let after = rss_kib(node.pid());
    println!(
        "10,000 made-up rooms in {:.1}s: {ok} made, {refused} refused; RSS {before} -> {after} KiB",
        started.elapsed().as_secs_f64()
    );
    // The lobby and general exist; 98 more fit under 100.
    assert_eq!(ok, 98, "rooms made");
    assert_eq!(refused, 10_000 - 98);
    assert!(
        after < before + 8 * 1024,
        "RSS grew from {before} to {after} KiB"
    );
    publish(&node, "general", "after");
    assert_eq!(general.expect_event("after").data, "after");
}
