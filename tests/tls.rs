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
