//! The secure port: the same HTTP and SSE over TLS 1.2 and 1.3 with the
//! self-signed certificate a node makes at start.

mod common;

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::{Conn, Node};
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, ProtocolVersion, RootCertStore};

fn get_over(c: &mut Conn<common::TlsStream>, node: &Node, path: &str) -> common::Response {
    c.get(path)
        .unwrap_or_else(|e| node.fail(&format!("TLS GET {path}"), e))
}

#[test]
fn home_page_over_tls() {
    let node = Node::start(&["--name", "secure@test"]);
    let mut c = node.connect_tls();
    let r = get_over(&mut c, &node, "/");
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        r.text().contains("<h2>Node: secure@test</h2>"),
        "{}",
        r.text()
    );
    assert_eq!(
        c.stream.conn.protocol_version(),
        Some(ProtocolVersion::TLSv1_3)
    );
    // Keep-alive works over TLS too.
    let r = get_over(&mut c, &node, "/main.css");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/css; charset=utf-8"));
}

#[test]
fn tls_1_2_is_accepted() {
    let node = Node::start(&[]);
    let config = common::tls_config(Some(&[&rustls::version::TLS12]));
    let mut c = Conn::tls_with(node.https_addr(), config, "localhost")
        .unwrap_or_else(|e| node.fail("TLS 1.2 handshake", e));
    assert_eq!(
        c.stream.conn.protocol_version(),
        Some(ProtocolVersion::TLSv1_2)
    );
    assert_eq!(get_over(&mut c, &node, "/").status, 200);
}

#[test]
fn certificate_is_valid_for_localhost_and_loopback() {
    let node = Node::start(&[]);
    let c = node.connect_tls();
    let cert: CertificateDer<'static> = c
        .stream
        .conn
        .peer_certificates()
        .and_then(|certs| certs.first())
        .expect("a server certificate")
        .clone()
        .into_owned();
    // Trust exactly that certificate, then verify names the normal way.
    let mut roots = RootCertStore::empty();
    roots
        .add(cert)
        .expect("certificate parses as a trust anchor");
    let config = Arc::new(
        ClientConfig::builder_with_provider(common::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );
    for name in ["localhost", "127.0.0.1"] {
        let mut c = Conn::tls_with(node.https_addr(), Arc::clone(&config), name)
            .unwrap_or_else(|e| node.fail(&format!("verified handshake as {name}"), e));
        assert_eq!(get_over(&mut c, &node, "/").status, 200);
    }
    assert!(
        Conn::tls_with(node.https_addr(), config, "example.com").is_err(),
        "certificate accepted for example.com"
    );
}

#[test]
fn fingerprint_is_logged() {
    let node = Node::start(&[]);
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let log = node.stderr_tail().to_ascii_lowercase();
        if log.contains("sha-256") || log.contains("sha256") {
            break;
        }
        assert!(Instant::now() < deadline, "no SHA-256 fingerprint: {log}");
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn publish_plain_listen_tls() {
    let node = Node::start(&[]);
    let mut l = node.listen_tls(&[]);
    node.publish_ok("plain to tls");
    let e = l.expect_event("over TLS");
    assert_eq!(e.data, "plain to tls");
}

#[test]
fn publish_tls_listen_plain() {
    let node = Node::start(&[]);
    let mut l = node.listen(&[]);
    let mut c = node.connect_tls();
    let r = c
        .publish("tls to plain")
        .unwrap_or_else(|e| node.fail("TLS publish", e));
    assert_eq!(r.status, 303, "{r:?}");
    assert_eq!(r.header("location"), Some("/"));
    let e = l.expect_event("over plain");
    assert_eq!(e.data, "tls to plain");
}

#[test]
fn tls_listener_resumes_and_gets_heartbeats() {
    let node = Node::start(&["--heartbeat-ms", "200"]);
    let mut first = node.listen(&[]);
    node.publish_ok("one");
    node.publish_ok("two");
    let id = first.expect_event("one").id.expect("id");
    let mut l = node.listen_tls(&[("Last-Event-ID", &id)]);
    assert_eq!(l.expect_event("two").data, "two");
    let before = l.comments.len();
    assert!(
        l.wait_until(Duration::from_millis(1500), |s| s.comments.len() > before),
        "no heartbeat over TLS"
    );
}

#[test]
fn plain_http_on_secure_port_is_dropped() {
    let node = Node::start(&[]);
    let mut c = Conn::plain(node.https_addr()).unwrap();
    let raw = format!("GET / HTTP/1.1\r\nHost: {}\r\n\r\n", c.host());
    let _ = c.send(raw.as_bytes());
    assert!(
        c.wait_closed(Duration::from_secs(3)),
        "plain HTTP on the TLS port left open"
    );
    assert!(
        !c.pending().starts_with(b"HTTP/"),
        "answered plain HTTP on the TLS port"
    );
    let mut t = node.connect_tls();
    assert_eq!(get_over(&mut t, &node, "/").status, 200);
}

#[test]
fn half_done_handshake_does_not_stall_others() {
    // A client that opens the TLS port and says nothing must not hold up
    // anyone else.
    let node = Node::start(&["--request-timeout-ms", "300"]);
    let _silent = Conn::plain(node.https_addr()).unwrap();
    let mut c = node.connect_tls();
    assert_eq!(get_over(&mut c, &node, "/").status, 200);
    let mut silent = _silent;
    assert!(
        silent.wait_closed(Duration::from_secs(3)),
        "silent TLS connection never timed out"
    );
}

#[test]
fn same_origin_publish_over_tls() {
    // The page served over TLS posts with an https Origin.
    let node = Node::start(&[]);
    let mut l = node.listen(&[]);
    let mut c = node.connect_tls();
    let origin = format!("https://{}", c.host());
    let raw = common::post_form_bytes(
        c.host(),
        "/publish",
        "message=from%20the%20tls%20page",
        &[("Origin", &origin)],
    );
    let r = c
        .roundtrip(&raw)
        .unwrap_or_else(|e| node.fail("TLS publish", e));
    assert_eq!(r.status, 303, "{origin}: {r:?}");
    assert_eq!(l.expect_event("tls page").data, "from the tls page");
    let raw = common::post_form_bytes(
        c.host(),
        "/publish",
        "message=x",
        &[("Origin", "https://evil.example")],
    );
    let r = c
        .roundtrip(&raw)
        .unwrap_or_else(|e| node.fail("TLS publish", e));
    assert_eq!(r.status, 403, "{r:?}");
}

/// A text of `len` characters that says where it is, so a lost, repeated
/// or reordered slice of it cannot compare equal.
fn marked(tag: &str, len: usize) -> String {
    let mut s = String::with_capacity(len + 16);
    let mut i = 0;
    while s.len() < len {
        s.push_str(&format!("{tag}.{i} "));
        i += 1;
    }
    s.truncate(len);
    s
}

#[test]
fn big_posts_and_a_big_replay_cross_many_tls_records() {
    // A 50 KB publish spans several TLS records and reads; a resume of 1.2 MB
    // spans many 16 KiB send rounds and outlasts the socket buffers.
    let node = Node::start(&["--max-message", "60000", "--history", "200"]);
    let mut first = node.listen(&[]);
    node.publish_ok("first");
    let id = first.expect_event("first").id.expect("an id");
    let mut c = node.connect_tls();
    let big = marked("big", 50_000);
    let r = c
        .publish(&big)
        .unwrap_or_else(|e| node.fail("50 KB TLS publish", e));
    assert_eq!(r.status, 303, "{r:?}");
    let mut want = vec![big];
    for i in 0..40 {
        let m = marked(&format!("m{i}"), 30_000);
        let r = c
            .publish(&m)
            .unwrap_or_else(|e| node.fail("TLS publish", e));
        assert_eq!(r.status, 303, "{r:?}");
        want.push(m);
    }
    // Small ones too: replayed together, they share TLS records.
    for i in 0..100 {
        let m = format!("small {i}");
        let r = c
            .publish(&m)
            .unwrap_or_else(|e| node.fail("TLS publish", e));
        assert_eq!(r.status, 303, "{r:?}");
        want.push(m);
    }
    // The client reads nothing for a while: the node must wait, not drop.
    let mut l = node.listen_tls(&[("Last-Event-ID", &id)]);
    thread::sleep(Duration::from_millis(300));
    for (i, w) in want.iter().enumerate() {
        let e = l.expect_event(&format!("replayed message {i}"));
        assert!(
            e.data == *w,
            "message {i} differs: {} bytes, starts {:?}",
            e.data.len(),
            &e.data[..e.data.len().min(40)]
        );
    }
    // The same connection still carries live messages.
    node.publish_ok("live");
    assert_eq!(l.expect_event("live").data, "live");
}

#[test]
fn shutdown_ends_a_tls_stream_with_close_notify() {
    let node = Node::start(&[]);
    let mut l = node.listen_tls(&[]);
    node.publish_ok("before");
    assert_eq!(l.expect_event("before").data, "before");
    node.signal(libc::SIGTERM);
    // rustls reports a clean close_notify as Ok(0) and a bare TCP close as
    // UnexpectedEof.
    let mut chunk = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        assert!(Instant::now() < deadline, "stream not ended after SIGTERM");
        match std::io::Read::read(&mut l.conn.stream, &mut chunk) {
            Ok(0) => break,
            Ok(_) => continue,
            Err(e) => panic!("TLS stream ended without close_notify: {e}"),
        }
    }
}

#[test]
fn oversized_and_forged_tls_records_close_only_their_connection() {
    let node = Node::start(&[]);
    let mut l = node.listen(&[]);
    // After a good handshake: a record header claiming 64 KiB (the most is
    // 16 KiB plus expansion), then one whose authentication tag is forged.
    let oversized: &[u8] = &[0x17, 0x03, 0x03, 0xff, 0xff, 0, 0, 0];
    let mut forged = vec![0x17, 0x03, 0x03, 0x00, 0x30];
    forged.extend((0u8..0x30).map(|i| i.wrapping_mul(37)));
    for (what, bytes) in [("oversized record", oversized), ("forged record", &forged)] {
        let mut c = node.connect_tls();
        std::io::Write::write_all(&mut c.stream.sock, bytes).unwrap_or_else(|e| node.fail(what, e));
        assert!(
            c.wait_closed(Duration::from_secs(3)),
            "{what}: connection left open"
        );
    }
    // A record cut short stays pending without holding anyone up.
    let mut partial = node.connect_tls();
    std::io::Write::write_all(
        &mut partial.stream.sock,
        &[0x17, 0x03, 0x03, 0x00, 0x40, 1, 2],
    )
    .unwrap_or_else(|e| node.fail("partial record", e));
    node.publish_ok("still serving");
    assert_eq!(l.expect_event("after bad records").data, "still serving");
    let mut c = node.connect_tls();
    assert_eq!(get_over(&mut c, &node, "/").status, 200);
}

#[test]
fn malformed_handshake_records_are_refused_and_the_node_lives_on() {
    // Each of these once crashed the node: rustls's handshake deframer keeps
    // positions into our input buffer, which the error path replaced.
    let node = Node::start(&[]);
    let cases: [(&str, &[u8]); 4] = [
        (
            "handshake message claiming 64 KiB",
            &[22, 3, 1, 0, 4, 1, 1, 0, 0],
        ),
        (
            "half a ClientHello, then an alert",
            &[22, 3, 1, 0, 4, 1, 0, 0, 100, 21, 3, 1, 0, 2, 1, 0],
        ),
        (
            "two bogus handshake messages in one record",
            &[22, 3, 1, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0],
        ),
        ("unknown record type", &[99, 3, 1, 0, 2, 1, 0]),
    ];
    for (what, bytes) in cases {
        let mut c = Conn::plain(node.https_addr()).unwrap_or_else(|e| node.fail(what, e));
        c.send(bytes).unwrap_or_else(|e| node.fail(what, e));
        assert!(c.wait_closed(Duration::from_secs(3)), "{what}: left open");
        let mut t = node.connect_tls();
        assert_eq!(
            get_over(&mut t, &node, "/healthz").status,
            200,
            "after {what}"
        );
    }
}

#[test]
fn records_after_our_close_notify_are_dropped_unread() {
    // A bad request is answered and the connection closed with close_notify;
    // rustls must not be handed what the client sends after that (a forged
    // record made it send a second fatal alert, a panic in debug builds).
    let node = Node::start(&[]);
    let mut c = node.connect_tls();
    let r = c
        .roundtrip(b"GET / HTTP/1.1\r\nHost: localhost\r\nContent-Length: x\r\n\r\n")
        .unwrap_or_else(|e| node.fail("bad request over TLS", e));
    assert_eq!(r.status, 400, "{r:?}");
    let mut forged = vec![0x17, 0x03, 0x03, 0x00, 0x30];
    forged.extend((0u8..0x30).map(|i| i.wrapping_mul(29)));
    let _ = std::io::Write::write_all(&mut c.stream.sock, &forged);
    assert!(c.wait_closed(Duration::from_secs(3)), "left open");
    let mut t = node.connect_tls();
    assert_eq!(get_over(&mut t, &node, "/healthz").status, 200);
}

#[test]
fn a_huge_client_hello_is_refused_before_it_is_whole() {
    // rustls would join a handshake message of up to 64 KiB; a client that
    // announces a 40 KB ClientHello and stalls must not get to park that
    // much with us (the request timeout here is far away).
    let node = Node::start(&["--request-timeout-ms", "30000"]);
    let mut c = Conn::plain(node.https_addr()).unwrap_or_else(|e| node.fail("connect", e));
    let mut first = vec![22, 3, 1, 0x40, 0x00, 1, 0x00, 0x9c, 0x40];
    first.resize(5 + 16 * 1024, 0x41);
    let mut second = vec![22, 3, 1, 0x40, 0x00];
    second.resize(5 + 16 * 1024, 0x42);
    c.send(&first)
        .unwrap_or_else(|e| node.fail("first record", e));
    let _ = c.send(&second);
    assert!(
        c.wait_closed(Duration::from_secs(3)),
        "a stalled 40 KB ClientHello was kept"
    );
    let mut t = node.connect_tls();
    assert_eq!(get_over(&mut t, &node, "/healthz").status, 200);
}
