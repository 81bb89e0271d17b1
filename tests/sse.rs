//! Server-Sent Events on a lone node: delivery, framing of multi-line and
//! non-ASCII text, resume from history, heartbeats, and slow listeners.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::{Node, IO_TIMEOUT};

/// Publishes `n` messages "m1".."mn" and returns their ids, read from a
/// listener opened first.
fn publish_numbered(node: &Node, n: usize) -> Vec<String> {
    let mut l = node.listen(&[]);
    let mut pub_conn = node.connect();
    let mut ids = Vec::new();
    for i in 1..=n {
        let r = pub_conn.publish(&format!("m{i}")).unwrap();
        assert_eq!(r.status, 303, "{r:?}");
    }
    for i in 1..=n {
        let e = l.expect_event(&format!("m{i}"));
        assert_eq!(e.data, format!("m{i}"));
        ids.push(e.id.expect("message without id"));
    }
    ids
}

fn expect_data(l: &mut common::SseClient<impl common::Stream>, want: &str) -> common::Event {
    let e = l.expect_event(want);
    assert_eq!(e.data, want, "{e:?}");
    assert!(
        e.event.is_none() || e.event.as_deref() == Some("message"),
        "{e:?}"
    );
    e
}

#[test]
fn listen_headers_and_retry() {
    let node = Node::start(&[]);
    let l = node.listen(&[]);
    let r = &l.response;
    assert_eq!(r.header("cache-control"), Some("no-cache"), "{r:?}");
    assert!(r.header("content-length").is_none(), "{r:?}");
    assert!(
        r.header("transfer-encoding").is_none(),
        "stream should be close-delimited: {r:?}"
    );
    assert!(l.retry.is_some(), "no retry: line at the start");
}

#[test]
fn published_message_reaches_listener() {
    let node = Node::start(&[]);
    let mut l = node.listen(&[]);
    node.publish_ok("hello");
    let e = expect_data(&mut l, "hello");
    assert!(e.own_id, "event without its own id: {e:?}");
    assert!(!e.id.unwrap().is_empty());
}

#[test]
fn messages_arrive_in_order_with_unique_ids() {
    let node = Node::start(&[]);
    let ids = publish_numbered(&node, 20);
    let unique: HashSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "duplicate ids: {ids:?}");
}

#[test]
fn two_listeners_both_get_every_message() {
    let node = Node::start(&[]);
    let mut a = node.listen(&[]);
    let mut b = node.listen(&[]);
    for i in 0..5 {
        node.publish_ok(&format!("x{i}"));
    }
    for l in [&mut a, &mut b] {
        let mut ids = Vec::new();
        for i in 0..5 {
            ids.push(expect_data(l, &format!("x{i}")).id);
        }
        let unique: HashSet<_> = ids.iter().collect();
        assert_eq!(unique.len(), 5);
    }
}

#[test]
fn multi_line_message_is_one_data_line_per_line() {
    let node = Node::start(&[]);
    let mut l = node.listen(&[]);
    node.publish_ok("a\nb\r\nc");
    expect_data(&mut l, "a\nb\nc");
    node.publish_ok("x\n\ny");
    expect_data(&mut l, "x\n\ny");
    // A lone CR is a line break to an EventSource too.
    node.publish_ok("p\rq");
    expect_data(&mut l, "p\nq");
}

#[test]
fn message_that_looks_like_sse_fields_is_data() {
    // Injection: a message must never end the event or add fields.
    let node = Node::start(&[]);
    let mut l = node.listen(&[]);
    node.publish_ok("hi\n\nevent: evil\ndata: injected\nid: 666");
    let e = expect_data(&mut l, "hi\n\nevent: evil\ndata: injected\nid: 666");
    assert_ne!(e.id.as_deref(), Some("666"));
    node.publish_ok(": not a comment");
    expect_data(&mut l, ": not a comment");
}

#[test]
fn non_ascii_text_is_intact() {
    let node = Node::start(&[]);
    let mut l = node.listen(&[]);
    node.publish_ok("héllo 世界 🚀");
    expect_data(&mut l, "héllo 世界 🚀");
    node.publish_ok("<b>&amp;</b> \"quotes\" + plus %25");
    expect_data(&mut l, "<b>&amp;</b> \"quotes\" + plus %25");
}

#[test]
fn resume_by_last_event_id_header() {
    let node = Node::start(&[]);
    let ids = publish_numbered(&node, 5);
    let mut l = node.listen(&[("Last-Event-ID", &ids[1])]);
    for i in 3..=5 {
        let e = expect_data(&mut l, &format!("m{i}"));
        assert_eq!(e.id.as_ref(), Some(&ids[i - 1]));
    }
    node.publish_ok("m6");
    expect_data(&mut l, "m6");
}

#[test]
fn resume_by_query_parameter() {
    let node = Node::start(&[]);
    let ids = publish_numbered(&node, 5);
    let path = format!("/listen?lastEventId={}", urlencoding::encode(&ids[2]));
    let mut l = node.listen_path(&path, &[]);
    expect_data(&mut l, "m4");
    expect_data(&mut l, "m5");
    node.publish_ok("m6");
    expect_data(&mut l, "m6");
}

#[test]
fn resume_from_latest_id_replays_nothing() {
    let node = Node::start(&[]);
    let ids = publish_numbered(&node, 3);
    let mut l = node.listen(&[("Last-Event-ID", &ids[2])]);
    node.publish_ok("live");
    expect_data(&mut l, "live");
}

#[test]
fn listener_without_id_gets_only_live_messages() {
    let node = Node::start(&[]);
    publish_numbered(&node, 3);
    let mut l = node.listen(&[]);
    node.publish_ok("live");
    expect_data(&mut l, "live");
}

#[test]
fn unknown_last_event_id_gets_missed_event() {
    let node = Node::start(&[]);
    publish_numbered(&node, 2);
    let mut l = node.listen(&[("Last-Event-ID", "nonsense")]);
    let deadline = Instant::now() + IO_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let e = l
            .next_event(left)
            .unwrap_or_else(|| node.fail("missed event", "none arrived"));
        if e.event.as_deref() == Some("missed") {
            assert!(!e.data.is_empty(), "{e:?}");
            break;
        }
    }
}

#[test]
fn small_history_resume_gets_missed_then_what_is_kept() {
    let node = Node::start(&["--history", "3"]);
    let ids = publish_numbered(&node, 10);
    let mut l = node.listen(&[("Last-Event-ID", &ids[0])]);
    let e = l.expect_event("missed");
    assert_eq!(e.event.as_deref(), Some("missed"), "{e:?}");
    for i in 8..=10 {
        let e = expect_data(&mut l, &format!("m{i}"));
        assert_eq!(e.id.as_ref(), Some(&ids[i - 1]));
    }
    node.publish_ok("m11");
    expect_data(&mut l, "m11");
}

#[test]
fn idle_stream_gets_heartbeat_comments() {
    let node = Node::start(&["--heartbeat-ms", "200"]);
    let mut l = node.listen(&[]);
    let before = l.comments.len();
    let got = l.wait_until(Duration::from_millis(1500), |s| {
        s.comments.len() >= before + 2
    });
    assert!(
        got,
        "{} heartbeat(s) in 1.5 s at 200 ms (closed: {})",
        l.comments.len() - before,
        l.closed
    );
    // The stream is still usable after heartbeats.
    node.publish_ok("after heartbeats");
    expect_data(&mut l, "after heartbeats");
}

#[test]
fn chunked_publish_is_decoded() {
    let node = Node::start(&[]);
    let mut l = node.listen(&[]);
    let mut c = node.connect();
    let raw = format!(
        "POST /publish HTTP/1.1\r\nHost: {}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n\
         b\r\nmessage=hel\r\n9;ext=1\r\nlo%20worl\r\n1\r\nd\r\n0\r\n\r\n",
        c.host()
    );
    let r = c
        .roundtrip(raw.as_bytes())
        .unwrap_or_else(|e| node.fail("chunked", e));
    assert_eq!(r.status, 303, "{r:?}");
    expect_data(&mut l, "hello world");
    // The connection is still in step after the chunked body.
    assert_eq!(c.get("/").unwrap().status, 200);
}

#[test]
fn slow_listener_does_not_block_others() {
    // A listener that never reads must cost neither the publisher nor the
    // other listeners their progress.
    let node = Node::start(&[]);
    let _stalled = node.listen(&[]);
    let mut reader = node.listen(&[]);
    let mut c = node.connect();
    let text = "z".repeat(4000);
    let n = 500;
    let started = Instant::now();
    for i in 0..n {
        let r = c
            .publish(&format!("{i} {text}"))
            .unwrap_or_else(|e| node.fail(&format!("publish {i}"), e));
        assert_eq!(r.status, 303);
        // Keep the reader drained as we go, as a browser would.
        if i % 10 == 9 {
            for j in i - 9..=i {
                let e = reader.expect_event("reader");
                assert_eq!(e.data, format!("{j} {text}"));
            }
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(node.get("/").status, 200);
}

#[test]
fn listener_disconnect_is_harmless() {
    let node = Node::start(&[]);
    for _ in 0..20 {
        drop(node.listen(&[]));
    }
    let mut l = node.listen(&[]);
    node.publish_ok("still fine");
    expect_data(&mut l, "still fine");
}

#[test]
fn listen_after_get_on_same_connection() {
    // Browsers reuse a keep-alive connection for the EventSource.
    let node = Node::start(&[]);
    let mut c = node.connect();
    assert_eq!(c.get("/").unwrap().status, 200);
    let mut l = common::SseClient::open(c, "/listen", &[])
        .unwrap_or_else(|e| node.fail("listen on a reused connection", e));
    node.publish_ok("reused");
    expect_data(&mut l, "reused");
}

#[test]
fn long_replay_arrives_whole_and_in_order() {
    let node = Node::start(&[]);
    let mut first = node.listen(&[]);
    let mut c = node.connect();
    let n = 300;
    let text = "r".repeat(1000);
    for i in 0..n {
        assert_eq!(c.publish(&format!("{i} {text}")).unwrap().status, 303);
    }
    let id0 = first.expect_event("first").id.expect("id");
    let mut l = node.listen(&[("Last-Event-ID", &id0)]);
    for i in 1..n {
        expect_data(&mut l, &format!("{i} {text}"));
    }
    node.publish_ok("live after replay");
    expect_data(&mut l, "live after replay");
}
