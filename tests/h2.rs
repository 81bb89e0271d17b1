//! HTTP/2 (issue 12) against clients that are not ours: curl (`--http2`
//! over TLS with ALPN, and with prior knowledge on the plain port), nghttp,
//! Python's h2 (`tests/h2/h2_client.py`: many streams, flow control, PING,
//! rapid reset) and the httpwg conformance suite; the same service answers
//! both protocols, so a message published over HTTP/2 reaches an HTTP/1.1
//! listener and the other way round. A test whose tool is missing says so
//! and passes; `./test.sh` installs them all.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Node;

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs `curl ARGS` (bounded by `--max-time`); its stdout.
fn curl(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .output()
        .expect("curl runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn curl_speaks_http2_over_tls_and_with_prior_knowledge() {
    if !have("curl") {
        eprintln!("skipped: curl is not installed");
        return;
    }
    let node = Node::start(&["--backlog", "0"]);
    let https = format!("https://{}", node.https_addr());
    let http = format!("http://{}", node.http_addr());
    let fmt = "%{http_version} %{http_code}";
    let got = curl(&[
        "--http2",
        "-k",
        "-o",
        "/dev/null",
        "-w",
        fmt,
        &format!("{https}/"),
    ]);
    assert_eq!(got, "2 200", "GET / over TLS with ALPN h2");
    let got = curl(&[
        "--http2-prior-knowledge",
        "-o",
        "/dev/null",
        "-w",
        fmt,
        &format!("{http}/main.css"),
    ]);
    assert_eq!(got, "2 200", "GET /main.css with prior knowledge");
    // A listener over HTTP/2 (curl -N) and one over HTTP/1.1.
    let mut h1 = node.listen(&[]);
    let listen = Command::new("curl")
        .args([
            "-sSN",
            "--http2",
            "-k",
            "--max-time",
            "4",
            &format!("{https}/listen"),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("curl runs");
    std::thread::sleep(Duration::from_millis(800));
    let got = curl(&[
        "--http2",
        "-k",
        "-o",
        "/dev/null",
        "-w",
        fmt,
        "-d",
        "message=over+h2",
        &format!("{https}/publish"),
    ]);
    assert_eq!(got, "2 303", "publish over HTTP/2");
    assert_eq!(h1.expect_event("over h2").data, "over h2");
    let out = listen.wait_with_output().expect("curl ends");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("data: over h2"),
        "the HTTP/2 listener: {text}"
    );
    let logs = node.log_lines();
    assert!(
        logs.iter()
            .any(|l| l.contains("GET /listen 200") && l.contains(" h2")),
        "request log says h2"
    );
    let metrics = node.get("/metrics").text();
    assert!(
        metrics.contains("watercooler_connections_by_protocol{protocol=\"h2\"}"),
        "{metrics}"
    );
}

#[test]
fn nghttp_gets_the_page_and_a_stream_on_one_connection() {
    if !have("nghttp") {
        eprintln!("skipped: nghttp is not installed (Debian nghttp2-client)");
        return;
    }
    let node = Node::start(&[]);
    let base = format!("http://{}", node.http_addr());
    let out = Command::new("nghttp")
        .args([
            "-n",
            "-s",
            "-t",
            "5",
            &format!("{base}/"),
            &format!("{base}/main.css"),
            &format!("{base}/main.js"),
        ])
        .output()
        .expect("nghttp runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "nghttp: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // -s prints one line per stream: three requests, all 200, on one connection.
    assert_eq!(text.matches(" 200 ").count(), 3, "{text}");
}

#[test]
fn python_h2_many_streams_flow_control_ping_and_rapid_reset() {
    let python = std::env::var("WATERCOOLER_PYTHON").unwrap_or_else(|_| "python3".into());
    let has_h2 = Command::new(&python)
        .args(["-c", "import h2"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !has_h2 {
        eprintln!(
            "skipped: no Python with the h2 package (./test.sh makes one: WATERCOOLER_PYTHON)"
        );
        return;
    }
    let node = Node::start(&["--backlog", "0"]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/h2/h2_client.py");
    let out = Command::new(&python)
        .args([script, &node.http_addr().port().to_string()])
        .output()
        .expect("python runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "h2 checks:\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(text.matches("ok ").count(), 7, "{text}");
}

/// httpwg cases this node fails on purpose, with the RFC section and why.
const EXPECTED_FAILURES: &[&str] = &[
    // RFC 9113 §8.2.2: `te: trailers` is allowed, and is; the case sends it
    // on `POST /` and wants 200, but this node answers `POST /` with 405
    // (the page is GET; publishing is `POST /publish`).
    "sends headers frame with te trailers",
];

#[test]
fn httpwg_conformance() {
    if !have("httpwg") {
        eprintln!("skipped: httpwg is not installed (cargo install --locked httpwg-cli)");
        return;
    }
    let node = Node::start(&[]);
    let started = Instant::now();
    let out = Command::new("httpwg")
        .args(["-a", &node.http_addr().to_string()])
        .env("NO_COLOR", "1")
        .output()
        .expect("httpwg runs");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let passed = text.matches("Test passed").count();
    println!(
        "httpwg: {passed} passed in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    assert!(
        passed >= 100,
        "httpwg ran: {passed} passed\n{}",
        tail(&text)
    );
    let total: usize = text
        .lines()
        .find_map(|l| {
            let l = strip_ansi(l);
            let at = l.find("Passed ")?;
            let rest = &l[at + 7..];
            rest.split('/')
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0);
    assert_eq!(
        total - passed,
        EXPECTED_FAILURES.len(),
        "httpwg: {passed}/{total}; the expected failures are {EXPECTED_FAILURES:?}\n{}",
        tail(&text)
    );
    for name in EXPECTED_FAILURES {
        assert!(!text.contains(&format!(
            "Test passed: RFC 9113 :: 8. expressing http semantics in http2 :: {name}"
        )));
    }
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut esc = false;
    for c in s.chars() {
        match (esc, c) {
            (false, '\u{1b}') => esc = true,
            (true, 'm') => esc = false,
            (true, _) => {}
            (false, c) => out.push(c),
        }
    }
    out
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.contains("DEBUG")).collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

#[test]
fn sigterm_ends_http2_streams_like_http1_ones() {
    if !have("curl") {
        eprintln!("skipped: curl is not installed");
        return;
    }
    let mut node = Node::start(&["--backlog", "0"]);
    let url = format!("https://{}/listen", node.https_addr());
    let listen = Command::new("curl")
        .args(["-sSN", "--http2", "-k", "--max-time", "10", &url])
        .stdout(Stdio::piped())
        .spawn()
        .expect("curl runs");
    let deadline = Instant::now() + Duration::from_secs(5);
    while node
        .get("/metrics")
        .text()
        .contains("watercooler_h2_streams 0")
    {
        assert!(Instant::now() < deadline, "the HTTP/2 stream never opened");
        std::thread::sleep(Duration::from_millis(50));
    }
    node.signal(libc::SIGTERM);
    let status = node.wait_exit(Duration::from_secs(6));
    assert!(status.is_some_and(|s| s.success()), "node exit: {status:?}");
    let out = listen.wait_with_output().expect("curl ends");
    let text = String::from_utf8_lossy(&out.stdout);
    // The stream got its last reconnect hint and ended cleanly (curl exits 0
    // only when the response ended; a cut connection is an error).
    assert!(text.trim_end().ends_with("retry: 1000"), "{text}");
    assert!(
        out.status.success(),
        "curl: {:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Regression (review): over HTTP/2 a publish was served while the node
/// still waited for its cluster (over HTTP/1.1 it is held until then).
#[test]
fn http2_requests_wait_while_the_node_starts() {
    if !have("curl") {
        eprintln!("skipped: curl is not installed");
        return;
    }
    let dir = common::TempDir::new("h2hold");
    let (me, away) = (common::Member::new("h2a"), common::Member::new("h2b"));
    let conf = dir.write(
        "sys.conf",
        &common::conf_text(&[&me, &away], 1500, "h2hold-cookie-16+"),
    );
    let node = Node::start_member(&me.name, &conf, &["--backlog", "0"]);
    let started = Instant::now();
    let got = curl(&[
        "--http2-prior-knowledge",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-d",
        "message=early",
        &format!("http://{}/publish", node.http_addr()),
    ]);
    assert_eq!(got, "303");
    assert!(
        node.log_lines().iter().any(|l| l.contains("serving HTTP")),
        "answered before the node served ({:?} after start)",
        started.elapsed()
    );
}

/// Regression (review): an HTTP/2 stream whose replay passed the stream's
/// cap was reset before it sent a byte, and again on every reconnect.
#[test]
fn a_replay_bigger_than_a_stream_may_queue_is_cut_and_says_missed() {
    if !have("curl") {
        eprintln!("skipped: curl is not installed");
        return;
    }
    let node = Node::start(&["--backlog", "0"]);
    let text = "x".repeat(4000);
    for i in 0..300 {
        node.publish_ok(&format!("{i} {text}"));
    }
    let out = Command::new("curl")
        .args([
            "-sSN",
            "--http2-prior-knowledge",
            "--max-time",
            "3",
            "-H",
            "Last-Event-ID: lobby/zz.1",
            &format!("http://{}/listen", node.http_addr()),
        ])
        .output()
        .expect("curl runs");
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(
        body.contains("event: missed"),
        "{}",
        &body[..body.len().min(500)]
    );
    let n = body.matches("\ndata: ").count();
    assert!(n > 100, "only {n} events came");
    assert!(body.contains("data: 299 "), "the newest is there");
}

/// Regression (review): an HTTP/2 request whose body never comes held its
/// connection forever; like an HTTP/1.1 one it gets `--request-timeout-ms`.
#[test]
fn a_stalled_http2_request_is_closed_after_the_request_timeout() {
    use std::io::{Read, Write};
    let node = Node::start(&["--request-timeout-ms", "300", "--idle-timeout-ms", "60000"]);
    let mut sock = std::net::TcpStream::connect(node.http_addr()).expect("connect");
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]); // SETTINGS, empty
                                                         // POST http://x/publish, END_HEADERS but no END_STREAM: the body never comes.
    let mut block = vec![0x83, 0x86, 0x04, 8];
    block.extend_from_slice(b"/publish");
    block.extend_from_slice(&[0x01, 1, b'x']);
    out.extend_from_slice(&[0, 0, block.len() as u8, 1, 0x4, 0, 0, 0, 1]);
    out.extend_from_slice(&block);
    sock.write_all(&out).expect("write");
    let started = Instant::now();
    let mut got = Vec::new();
    let _ = sock.read_to_end(&mut got);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "still open after {took:?}");
    // Frames: 9-byte headers; a GOAWAY (type 7) says why it closed.
    let mut at = 0;
    let mut goaway = false;
    while at + 9 <= got.len() {
        let len = (got[at] as usize) << 16 | (got[at + 1] as usize) << 8 | got[at + 2] as usize;
        goaway |= got[at + 3] == 7;
        at += 9 + len;
    }
    assert!(goaway, "no GOAWAY in {got:?}");
    assert!(
        node.get("/metrics")
            .text()
            .contains("watercooler_request_timeouts_total 1"),
        "the timeout is not counted"
    );
}
