//! What an outside probe found (issue 16, the HTTP part): a request after a
//! `connection: close` answer is never read nor acted on; pages carry
//! security headers; a client still sending an oversized request gets to
//! read the 413 or 431 (a lingering close, not a reset); an empty
//! `Last-Event-ID` is no id.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{form_message, Node};

#[test]
fn nothing_after_a_connection_close_answer_is_read_or_acted_on() {
    let node = Node::start(&["--backlog", "0"]);
    let mut listener = node.listen(&[]);
    let host = node.http_addr().to_string();
    let body = |m: &str| form_message(m);
    let post = |m: &str, origin: &str| {
        let b = body(m);
        format!(
            "POST /publish HTTP/1.1\r\nHost: {host}\r\nOrigin: {origin}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        )
    };
    let pipelined =
        post("first", "http://evil.example") + &post("after", &format!("http://{host}"));
    let mut s = TcpStream::connect(node.http_addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(pipelined.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 403"), "{text}");
    assert!(text.contains("connection: close"), "{text}");
    assert_eq!(
        text.matches("HTTP/1.1 ").count(),
        1,
        "one answer only: {text}"
    );
    assert!(
        listener.next_event(Duration::from_millis(500)).is_none(),
        "nothing was published"
    );
}

#[test]
fn pages_carry_security_headers() {
    let node = Node::start(&[]);
    for path in ["/", "/r/general", "/nope"] {
        let r = node.get(path);
        let csp = r.header("content-security-policy").unwrap_or_default();
        assert!(
            csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"),
            "{path}: {r:?}"
        );
        assert_eq!(
            r.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(r.header("referrer-policy"), Some("no-referrer"), "{path}");
        // A self-signed certificate: no HSTS (it would lock browsers out).
        assert!(r.header("strict-transport-security").is_none(), "{path}");
    }
    let css = node.get("/main.css");
    assert_eq!(css.header("x-content-type-options"), Some("nosniff"));
}

#[test]
fn a_client_still_sending_an_oversized_request_reads_the_answer() {
    let node = Node::start(&[]);
    for (what, head_too_large) in [("413", false), ("431", true)] {
        let mut s = TcpStream::connect(node.http_addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let request = if head_too_large {
            format!(
                "GET / HTTP/1.1\r\nHost: h\r\nX-Big: {}\r\n\r\n",
                "a".repeat(200_000)
            )
        } else {
            format!(
                "POST /publish HTTP/1.1\r\nHost: h\r\nContent-Length: 300000\r\n\r\n{}",
                "m".repeat(300_000)
            )
        };
        // Write all of it before reading, as a simple client does.
        s.write_all(request.as_bytes())
            .unwrap_or_else(|e| panic!("{what}: reset while sending: {e}"));
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        let text = String::from_utf8_lossy(&answer);
        assert!(
            text.starts_with(&format!("HTTP/1.1 {what}")),
            "{what}: {text}"
        );
    }
}

#[test]
fn an_empty_last_event_id_is_no_id() {
    let node = Node::start(&["--backlog", "0"]);
    let mut l = node.listen(&[("Last-Event-ID", "")]);
    let e = l.next_any_event(Duration::from_secs(2)).expect("an event");
    assert_ne!(e.event.as_deref(), Some("missed"), "{e:?}");
}

#[test]
fn the_cluster_port_listens_on_its_own_entry_host_only() {
    let dir = common::TempDir::new("bindhost");
    let me = common::Member::new("solo");
    let conf = dir.write(
        "sys.conf",
        &common::conf_text(&[&me], 100, "bindhost-cookie"),
    );
    let node = Node::start_member(&me.name, &conf, &[]);
    node.wait_log("serving HTTP", Duration::from_secs(5));
    assert!(
        TcpStream::connect(me.cluster_addr()).is_ok(),
        "reachable on its entry's host"
    );
    // 127.0.0.2 is loopback too: a port bound to every interface answers there.
    let other = std::net::SocketAddr::from(([127, 0, 0, 2], me.port));
    assert!(
        TcpStream::connect(other).is_err(),
        "the cluster port answers on 127.0.0.2"
    );
}

#[test]
fn weak_cookies_are_refused_beyond_loopback_and_gen_cookie_makes_a_strong_one() {
    let dir = common::TempDir::new("weakcookie");
    let conf = dir.write(
        "sys.conf",
        "nodes = a@127.0.0.1:1, b@192.0.2.7:2\ncookie = change-me\n",
    );
    let out = common::run(
        &["--name", "a@127.0.0.1", "--config", &conf],
        Duration::from_secs(5),
    );
    assert!(out.status.is_some_and(|s| !s.success()));
    assert!(out.stderr.contains("the cookie is weak"), "{}", out.stderr);
    let out = common::run(&["--gen-cookie"], Duration::from_secs(5));
    let cookie = out.stdout.trim();
    assert!(
        out.status.is_some_and(|s| s.success()) && cookie.len() >= 32,
        "{cookie:?}"
    );
}

#[test]
fn a_publish_flood_meets_429_while_others_and_listeners_go_on() {
    // Clients are told apart by X-Forwarded-For from a trusted proxy (this
    // test's loopback address), as behind nginx.
    let node = Node::start(&[
        "--publish-rate",
        "2",
        "--publish-burst",
        "3",
        "--trust-proxy",
        "127.0.0.1",
        "--backlog",
        "0",
    ]);
    let mut listener = node.listen(&[]);
    let publish = |client: &str, m: &str| {
        common::post_form(
            node.http_addr(),
            "/publish",
            &form_message(m),
            &[("X-Forwarded-For", client)],
        )
    };
    let mut statuses = Vec::new();
    for i in 0..10 {
        statuses.push(publish("203.0.113.9", &format!("flood{i}")).status);
    }
    assert_eq!(&statuses[..3], [303, 303, 303], "the burst: {statuses:?}");
    assert!(statuses[3..].iter().all(|&s| s == 429), "{statuses:?}");
    let limited = publish("203.0.113.9", "more");
    assert_eq!(limited.status, 429);
    assert!(
        limited
            .header("retry-after")
            .is_some_and(|v| v.parse::<u64>().is_ok()),
        "{limited:?}"
    );
    // Another client publishes at once; the listener got the burst and it.
    assert_eq!(publish("198.51.100.1", "other client").status, 303);
    let got: Vec<String> = listener
        .collect(4, Duration::from_secs(5))
        .into_iter()
        .map(|e| e.data)
        .collect();
    assert_eq!(got, ["flood0", "flood1", "flood2", "other client"]);
    let metrics = node.get("/metrics").text();
    assert!(
        metrics.contains("watercooler_publishes_limited_total 8\n"),
        "{metrics}"
    );
    // After a second the flooding client may publish again.
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(publish("203.0.113.9", "later").status, 303);
}
