//! The page in a real browser: Debian's `chromium`, headless, driven through
//! `chromedriver` over the WebDriver HTTP protocol (a tiny client below, on
//! std's `TcpStream` and serde_json).
//!
//! Two nodes from one sys.conf, a browser window on each, and the tutorial's
//! demo checked end to end: names, publishing with Enter, delivery across the
//! cluster, escaping, long and non-ASCII text, reload, HTTPS, a frozen node
//! leaving and coming back.
//!
//! Without `chromium` or `chromedriver` on the PATH the test prints why and
//! passes, so plain `cargo test` works anywhere; `./test.sh` installs them
//! and sets `WATERCOOLER_REQUIRE_BROWSER=1`, which turns the skip into a
//! failure. Every wait is bounded; on failure each window's screenshot is
//! saved in `target/browser-failures/`.
//!
//! `cargo test --test browser -- --ignored screenshots` refreshes the
//! screenshots of `docs/`.

mod common;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::Node;
use serde_json::{json, Value};

/// Bound on one WebDriver command (a new session starts a browser).
const DRIVER_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on a message showing up, the page going live, and the like.
const SHORT: Duration = Duration::from_secs(10);
/// Bound on cluster membership changes: 3 s dead-peer timeout or redial
/// backoff, plus the once-a-second presence refresh, plus slack.
const MEMBERSHIP: Duration = Duration::from_secs(10);

const NODE1: &str = "node1@127.0.0.1";
const NODE2: &str = "node2@127.0.0.1";
const ENTER: &str = "\u{E007}";

// ---------------------------------------------------------------------------
// The scenario
// ---------------------------------------------------------------------------

#[test]
fn two_windows_on_two_nodes() {
    let Some(tools) = find_tools() else { return };
    let started = Instant::now();
    let cluster = Cluster::start(&[NODE1, NODE2]);
    let (n1, n2) = (&cluster.nodes[0], &cluster.nodes[1]);
    let driver = Driver::start(&tools);
    let w1 = driver.window("node1", 1280, 800);
    let w2 = driver.window("node2", 390, 844);
    let windows = [&w1, &w2];

    let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
        w1.goto(&format!("http://{}/", n1.http_addr()));
        w2.goto(&format!("http://{}/", n2.http_addr()));
        for (w, name) in [(&w1, NODE1), (&w2, NODE2)] {
            let h2 = w.exec("return document.querySelector('h2').textContent", json!([]));
            assert_eq!(h2, json!(format!("Node: {name}")), "{}: node name", w.name);
            w.wait_live();
            // The input is labelled and has the focus.
            let input = w.exec(
                "var i = document.getElementById('message');
                 var l = document.querySelector('label[for=message]');
                 return {focused: document.activeElement === i,
                         label: l ? l.textContent.trim() : ''};",
                json!([]),
            );
            assert_eq!(input["focused"], json!(true), "{}: input focus", w.name);
            assert_ne!(input["label"], json!(""), "{}: input label", w.name);
        }
        // Both pages see both nodes and both listeners, live.
        for w in windows {
            w.wait_for(
                "both nodes linked and 2 listening",
                MEMBERSHIP,
                "return nodesShown().sort().join(',') === arguments[0] && listenersShown() === 2",
                json!([format!("{NODE1},{NODE2}")]),
            );
        }

        // Publish in node1's window: at the top of both lists, from node1.
        w1.publish("hello from node1");
        expect_top(&windows, "hello from node1", NODE1);
        // And in node2's window: at the top of node1's list, from node2.
        w2.publish("hello from node2");
        expect_top(&windows, "hello from node2", NODE2);

        // Markup is shown as text.
        let title = w1.exec("return document.title", json!([]));
        let evil = r#"<img src=x onerror="document.title='pwned'">"#;
        w1.publish(evil);
        expect_top(&windows, evil, NODE1);
        thread::sleep(Duration::from_millis(300));
        for w in windows {
            let imgs = w.exec("return document.querySelectorAll('img').length", json!([]));
            assert_eq!(imgs, json!(0), "{}: an element was created", w.name);
        }
        assert_eq!(w1.exec("return document.title", json!([])), title);

        // Long and non-ASCII text arrives intact.
        let long: String = (0..2000)
            .map(|i| char::from(b"abcdefghijklmnopqrstuvwxyz0123456789 "[i % 37]))
            .collect();
        w2.publish(&long);
        expect_top(&windows, &long, NODE2);
        let intl = "Grüße, señor Ålesund: 你好，世界 · こんにちは · 🎉👋🏽 ☕ naïve café";
        w1.publish(intl);
        expect_top(&windows, intl, NODE1);

        // A refused message shows why and is kept in the input.
        w1.press_enter_with("   ");
        let err = w1.wait_for(
            "an error for an empty message",
            SHORT,
            "return document.getElementById('error').textContent",
            json!([]),
        );
        assert!(err.as_str().unwrap().contains("Not sent"), "{err}");
        w1.press_enter_with(&"x".repeat(5000));
        let err = w1.wait_for(
            "an error for a too long message",
            SHORT,
            "var e = document.getElementById('error').textContent;
             return e.indexOf('413') >= 0 && e",
            json!([]),
        );
        assert!(err.as_str().unwrap().contains("longer"), "{err}");
        let kept = w1.exec(
            "return document.getElementById('message').value.length",
            json!([]),
        );
        assert_eq!(
            kept,
            json!(5000),
            "a refused message must stay in the input"
        );
        w1.exec("document.getElementById('message').value = ''", json!([]));

        // After a reload the page still receives.
        w2.reload();
        w2.wait_live();
        w1.publish("after the reload");
        expect_top(&windows, "after the reload", NODE1);
        // The stream of the page before the reload no longer counts.
        w1.wait_for(
            "2 listening after the reload",
            SHORT,
            "return listenersShown() === 2",
            json!([]),
        );

        // The HTTPS page works the same (self-signed certificate accepted).
        w1.goto(&format!("https://127.0.0.1:{}/", n1.https_addr().port()));
        w1.wait_live();
        w1.publish("over https");
        expect_top(&windows, "over https", NODE1);
        w2.publish("to the https page");
        expect_top(&windows, "to the https page", NODE2);
        w2.wait_for(
            "2 listening after the move to https",
            SHORT,
            "return listenersShown() === 2",
            json!([]),
        );

        // Freeze node2: node1's page shows it gone; thaw it: back again, and
        // what node1 published meanwhile reaches node2's page.
        signal(n2.pid(), libc::SIGSTOP);
        w1.wait_for(
            "node2 gone from node1's page",
            MEMBERSHIP,
            "return nodesShown().sort().join(',') === arguments[0]",
            json!([NODE1]),
        );
        w1.publish("while node2 was frozen");
        expect_top(&[&w1], "while node2 was frozen", NODE1);
        signal(n2.pid(), libc::SIGCONT);
        w1.wait_for(
            "node2 back on node1's page",
            MEMBERSHIP,
            "return nodesShown().sort().join(',') === arguments[0]",
            json!([format!("{NODE1},{NODE2}")]),
        );
        w2.wait_for(
            "the message from the freeze replayed to node2's page",
            MEMBERSHIP,
            "return topMessage() && topMessage().text === arguments[0]",
            json!(["while node2 was frozen"]),
        );
        expect_top(&[&w2], "while node2 was frozen", NODE1);
        w2.wait_live();
    }));
    if let Err(e) = outcome {
        for w in windows {
            w.save_failure_screenshot();
        }
        for n in &cluster.nodes {
            eprintln!("--- {} stderr ---\n{}", n.http_addr(), n.stderr_tail());
        }
        panic::resume_unwind(e);
    }
    eprintln!("browser scenario took {:?}", started.elapsed());
}

/// Checks that `text` is the newest message of each window, exactly once,
/// from `origin`, with a publish time close to now.
fn expect_top(windows: &[&Window], text: &str, origin: &str) {
    for w in windows {
        let top = w.wait_for(
            &format!("{:?} at the top", abbreviate(text)),
            SHORT,
            "var t = topMessage(); return t && t.text === arguments[0] && t",
            json!([text]),
        );
        assert_eq!(
            top["origin"],
            json!(origin),
            "{}: origin of {text:?}",
            w.name
        );
        assert_eq!(top["count"], json!(1), "{}: {text:?} shown once", w.name);
        let skew = top["skewMs"].as_f64().unwrap_or(f64::MAX);
        assert!(skew.abs() < 60_000.0, "{}: time of {text:?}: {top}", w.name);
    }
}

fn abbreviate(text: &str) -> String {
    match text.char_indices().nth(40) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) on the PID of a child this test spawned.
    let rc = unsafe { libc::kill(pid as libc::pid_t, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig}): {}", io::Error::last_os_error());
}

/// Page helpers injected before each script: what the page shows.
const PAGE_HELPERS: &str = r#"
function nodesShown() {
  return Array.prototype.map.call(document.querySelectorAll('#nodes li[data-node]'),
    function (li) { return li.dataset.node; });
}
function listenersShown() {
  var t = document.getElementById('listeners').textContent;
  return /^\d+$/.test(t) ? Number(t) : null;
}
function topMessage() {
  var li = document.querySelector('#messages li.msg');
  if (!li) return null;
  var text = li.querySelector('.text').textContent;
  var count = Array.prototype.filter.call(document.querySelectorAll('#messages li.msg .text'),
    function (p) { return p.textContent === text; }).length;
  var time = li.querySelector('time');
  return { text: text, origin: li.querySelector('.origin').textContent, id: li.dataset.id,
           count: count, skewMs: Date.parse(time.dateTime) - Date.now() };
}
"#;

// ---------------------------------------------------------------------------
// Screenshots for the README (run on demand)
// ---------------------------------------------------------------------------

#[test]
#[ignore = "writes docs/*.png; run with --ignored to refresh them"]
fn screenshots() {
    let Some(tools) = find_tools() else { return };
    let names = ["node1@127.0.0.1", "node2@127.0.0.1", "node3@127.0.0.1"];
    let cluster = Cluster::start(&names);
    let n1 = &cluster.nodes[0];
    // A few more listeners, as on a real day.
    let _others: Vec<_> = (0..4).map(|i| cluster.nodes[i % 3].listen(&[])).collect();
    let driver = Driver::start(&tools);
    let w = driver.window("docs", 1280, 800);
    w.goto(&format!("http://{}/", n1.http_addr()));
    w.wait_live();
    w.wait_for(
        "three nodes",
        MEMBERSHIP,
        "return nodesShown().length === 3 && listenersShown() === 5",
        json!([]),
    );
    let said: [(usize, &str); 6] = [
        (
            1,
            "Morning! Is the coffee machine on the 3rd floor fixed yet?",
        ),
        (0, "Yes, since yesterday ☕ — the descaling did it."),
        (
            2,
            "Reminder: demo of the multi-node setup at 14:00, room Ålesund.",
        ),
        (
            1,
            "I'll bring the Raspberry Pi running node2, it has held 2,000 listeners all week.",
        ),
        (
            0,
            "<b>tags</b> stay text, by the way: no HTML from the network.",
        ),
        (2, "See you there 👋 / では、また / à tout à l'heure"),
    ];
    for (i, text) in said {
        cluster.nodes[i].publish_ok(text);
        thread::sleep(Duration::from_millis(150));
    }
    w.wait_for(
        "six messages",
        SHORT,
        "return document.querySelectorAll('#messages li.msg').length === 6",
        json!([]),
    );
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    w.cdp("Emulation.setScrollbarsHidden", json!({"hidden": true}));
    for dark in [false, true] {
        let scheme = if dark { "dark" } else { "light" };
        w.cdp(
            "Emulation.setEmulatedMedia",
            json!({"features": [{"name": "prefers-color-scheme", "value": scheme}]}),
        );
        for (size, width, height, mobile) in
            [("desktop", 1280, 800, false), ("phone", 390, 844, true)]
        {
            w.cdp(
                "Emulation.setDeviceMetricsOverride",
                json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}),
            );
            w.exec("document.getElementById('message').blur()", json!([]));
            thread::sleep(Duration::from_millis(400));
            let suffix = if dark { "-dark" } else { "" };
            let path = docs.join(format!("{size}{suffix}.png"));
            w.screenshot(&path).unwrap();
            eprintln!("wrote {}", path.display());
        }
    }
    // Not for the README: the refused-message and reconnecting states, to
    // look at when changing the page.
    w.press_enter_with("   ");
    signal(n1.pid(), libc::SIGKILL);
    w.wait_for(
        "reconnecting",
        SHORT,
        "return document.body.dataset.state === 'reconnecting'",
        json!([]),
    );
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("page-states-phone-dark.png");
    w.screenshot(&path).unwrap();
    eprintln!("wrote {}", path.display());
}

// ---------------------------------------------------------------------------
// Nodes
// ---------------------------------------------------------------------------

/// Nodes started from one sys.conf; killed by PID when dropped.
struct Cluster {
    nodes: Vec<Node>,
    dir: PathBuf,
}

impl Cluster {
    fn start(names: &[&str]) -> Cluster {
        let dir = temp_dir("cluster");
        let entries: Vec<String> = names
            .iter()
            .map(|n| format!("{n}:{}", free_port()))
            .collect();
        let conf = dir.join("sys.conf");
        std::fs::write(
            &conf,
            format!(
                "nodes = {}\nsync_nodes_timeout = 1000\ncookie = browser-test\n",
                entries.join(", ")
            ),
        )
        .unwrap();
        let conf = conf.to_str().unwrap().to_string();
        let nodes = names
            .iter()
            .map(|n| Node::start(&["--name", n, "--config", &conf]))
            .collect();
        Cluster { nodes, dir }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.nodes.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn temp_dir(what: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!(
        "watercooler-browser-{}-{what}-{n}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

// ---------------------------------------------------------------------------
// chromium + chromedriver
// ---------------------------------------------------------------------------

struct Tools {
    chromium: PathBuf,
    chromedriver: PathBuf,
}

/// Both programs, or `None` after printing why the test is skipped (a
/// failure instead when `WATERCOOLER_REQUIRE_BROWSER` is set).
fn find_tools() -> Option<Tools> {
    let chromium = which("chromium").or_else(|| which("chromium-browser"));
    let chromedriver = which("chromedriver");
    match (chromium, chromedriver) {
        (Some(chromium), Some(chromedriver)) => Some(Tools {
            chromium,
            chromedriver,
        }),
        (chromium, _) => {
            let missing = if chromium.is_none() {
                "chromium"
            } else {
                "chromedriver"
            };
            let why = format!(
                "browser test skipped: `{missing}` is not on the PATH \
                 (install Debian's chromium and chromium-driver, or run ./test.sh)"
            );
            if std::env::var_os("WATERCOOLER_REQUIRE_BROWSER").is_some_and(|v| v != "0") {
                panic!("{why}, and WATERCOOLER_REQUIRE_BROWSER is set");
            }
            // Straight to stderr: the test harness does not capture this, so
            // a plain `cargo test` shows why the browser test did nothing.
            let _ = writeln!(io::stderr(), "{why}");
            None
        }
    }
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// A chromedriver process on a free port; killed by PID when dropped, after
/// the windows (which hold a reference to it) have closed their browsers.
struct Driver {
    child: Child,
    addr: SocketAddr,
    chromium: PathBuf,
    log: PathBuf,
}

impl Driver {
    fn start(tools: &Tools) -> Driver {
        let port = free_port();
        let log = temp_dir("driver").join("chromedriver.log");
        let child = Command::new(&tools.chromedriver)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", tools.chromedriver.display()));
        let driver = Driver {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            chromium: tools.chromium.clone(),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match driver.call("GET", "/status", None) {
                Ok(v) if v["ready"] == json!(true) => break,
                r if Instant::now() > deadline => {
                    panic!("chromedriver not ready within 10 s: {r:?}")
                }
                _ => thread::sleep(Duration::from_millis(50)),
            }
        }
        driver
    }

    /// Opens a headless browser window (its own session and profile).
    fn window(&self, name: &str, width: u32, height: u32) -> Window<'_> {
        let profile = temp_dir(&format!("profile-{name}"));
        let args = [
            "--headless".to_string(),
            "--no-sandbox".to_string(),
            "--disable-dev-shm-usage".to_string(),
            "--disable-gpu".to_string(),
            "--no-first-run".to_string(),
            "--no-default-browser-check".to_string(),
            "--disable-background-networking".to_string(),
            "--disable-component-update".to_string(),
            "--disable-sync".to_string(),
            "--disable-extensions".to_string(),
            // A page left for another must close its EventSource at once, not
            // linger in the back-forward cache (the listener counts assert it).
            "--disable-features=BackForwardCache".to_string(),
            "--ignore-certificate-errors".to_string(),
            format!("--window-size={width},{height}"),
            format!("--user-data-dir={}", profile.display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "acceptInsecureCerts": true,
            "pageLoadStrategy": "normal",
            "goog:chromeOptions": {"binary": self.chromium, "args": args},
        }}});
        let v = self
            .call("POST", "/session", Some(&caps))
            .unwrap_or_else(|e| {
                panic!("new session: {e}\nchromedriver log: {}", self.log.display())
            });
        let id = v["sessionId"].as_str().expect("sessionId").to_string();
        let w = Window {
            driver: self,
            id,
            name: name.to_string(),
            profile,
        };
        w.cmd(
            "POST",
            "/timeouts",
            json!({"script": 10_000, "pageLoad": 20_000, "implicit": 0}),
        );
        w
    }

    /// One WebDriver command; `Err` carries the driver's error message.
    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let raw = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json; charset=utf-8\r\n\
             Content-Length: {}\r\n\r\n{body}",
            self.addr,
            body.len()
        );
        let response = http_roundtrip(self.addr, raw.as_bytes())
            .map_err(|e| format!("{method} {path}: {e}"))?;
        let (status, body) = response;
        let v: Value = serde_json::from_slice(&body).map_err(|e| {
            format!(
                "{method} {path}: status {status}, bad JSON ({e}): {}",
                String::from_utf8_lossy(&body)
            )
        })?;
        let value = v.get("value").cloned().unwrap_or(Value::Null);
        if status != 200 {
            return Err(format!(
                "{method} {path}: status {status}: {} {}",
                value["error"], value["message"]
            ));
        }
        Ok(value)
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(dir) = self.log.parent() {
            if !thread::panicking() {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }
}

/// Writes a request and reads one answer: (status, body), de-chunked if
/// need be. chromedriver keeps connections open, so the body is framed by
/// its length, not by the end of the stream.
fn http_roundtrip(addr: SocketAddr, raw: &[u8]) -> io::Result<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(DRIVER_TIMEOUT))?;
    s.set_write_timeout(Some(DRIVER_TIMEOUT))?;
    s.write_all(raw)?;
    let mut all = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidData, m.to_string());
    let mut more = |all: &mut Vec<u8>| -> io::Result<()> {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed early"));
        }
        all.extend_from_slice(&chunk[..n]);
        Ok(())
    };
    let end = loop {
        if let Some(end) = all.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        more(&mut all)?;
    };
    let head = String::from_utf8_lossy(&all[..end]).to_ascii_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status"))?;
    let header = |name: &str| {
        head.lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
    };
    let body_at = end + 4;
    if let Some(len) = header("content-length:") {
        let len: usize = len.parse().map_err(|_| bad("bad content-length"))?;
        while all.len() < body_at + len {
            more(&mut all)?;
        }
        return Ok((status, all[body_at..body_at + len].to_vec()));
    }
    if !header("transfer-encoding:").is_some_and(|v| v.contains("chunked")) {
        return Err(bad("neither content-length nor chunked"));
    }
    let mut body = Vec::new();
    let mut at = body_at;
    loop {
        let eol = loop {
            if let Some(i) = all[at..].windows(2).position(|w| w == b"\r\n") {
                break at + i;
            }
            more(&mut all)?;
        };
        let size = String::from_utf8_lossy(&all[at..eol]).into_owned();
        let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| bad("bad chunk size"))?;
        if size == 0 {
            return Ok((status, body));
        }
        while all.len() < eol + 2 + size + 2 {
            more(&mut all)?;
        }
        body.extend_from_slice(&all[eol + 2..eol + 2 + size]);
        at = eol + 2 + size + 2;
    }
}

/// One browser window: a WebDriver session with its own profile.
struct Window<'d> {
    driver: &'d Driver,
    id: String,
    name: String,
    profile: PathBuf,
}

impl Window<'_> {
    fn try_cmd(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let path = format!("/session/{}{path}", self.id);
        self.driver.call(method, &path, body.as_ref())
    }

    fn cmd(&self, method: &str, path: &str, body: Value) -> Value {
        let body = (method == "POST").then_some(body);
        self.try_cmd(method, path, body)
            .unwrap_or_else(|e| panic!("{}: {e}", self.name))
    }

    fn goto(&self, url: &str) {
        self.cmd("POST", "/url", json!({ "url": url }));
    }

    fn reload(&self) {
        self.cmd("POST", "/refresh", json!({}));
    }

    /// Runs `script` (a function body, with the page helpers in scope).
    fn exec(&self, script: &str, args: Value) -> Value {
        let script = format!("{PAGE_HELPERS}\n{script}");
        self.cmd(
            "POST",
            "/execute/sync",
            json!({ "script": script, "args": args }),
        )
    }

    /// Polls `script` until it returns something truthy, which is returned;
    /// panics after `timeout` with the last value.
    fn wait_for(&self, what: &str, timeout: Duration, script: &str, args: Value) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.exec(script, args.clone());
            let truthy = match &v {
                Value::Null | Value::Bool(false) => false,
                Value::String(s) => !s.is_empty(),
                Value::Number(n) => n.as_f64() != Some(0.0),
                _ => true,
            };
            if truthy {
                return v;
            }
            if Instant::now() > deadline {
                let seen = self.exec(
                    "return {state: document.body.dataset.state, nodes: nodesShown(),
                             listeners: listenersShown(), top: topMessage(),
                             error: document.getElementById('error').textContent}",
                    json!([]),
                );
                panic!(
                    "{}: no {what} within {timeout:?} (last: {v}); page shows {seen}",
                    self.name
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for the page's EventSource to be open.
    fn wait_live(&self) {
        self.wait_for(
            "live connection",
            SHORT,
            "return document.body.dataset.state === 'live'",
            json!([]),
        );
    }

    fn element(&self, css: &str) -> String {
        let v = self.cmd(
            "POST",
            "/element",
            json!({"using": "css selector", "value": css}),
        );
        v.as_object()
            .and_then(|o| o.values().next())
            .and_then(|v| v.as_str())
            .unwrap_or_else(|| panic!("{}: no element id in {v}", self.name))
            .to_string()
    }

    fn type_keys(&self, css: &str, text: &str) {
        let el = self.element(css);
        self.cmd(
            "POST",
            &format!("/element/{el}/value"),
            json!({ "text": text }),
        );
    }

    /// Types `text` and Enter into the message input, then waits for the
    /// input to be cleared (the node answered 303). Characters outside the
    /// Basic Multilingual Plane cannot be typed through chromedriver, so such
    /// text is put in the input directly and only Enter is typed.
    fn publish(&self, text: &str) {
        if text.chars().all(|c| (c as u32) < 0x10000) {
            self.type_keys("#message", &format!("{text}{ENTER}"));
        } else {
            self.press_enter_with(text);
        }
        self.wait_for(
            "cleared input after sending",
            SHORT,
            "return document.getElementById('message').value === '' &&
                    document.getElementById('error').textContent === ''",
            json!([]),
        );
    }

    /// Sets the input's value, then types Enter.
    fn press_enter_with(&self, text: &str) {
        self.exec(
            "var i = document.getElementById('message'); i.value = arguments[0]; i.focus();",
            json!([text]),
        );
        self.type_keys("#message", ENTER);
    }

    /// A Chrome DevTools command through chromedriver.
    fn cdp(&self, cmd: &str, params: Value) -> Value {
        self.cmd(
            "POST",
            "/goog/cdp/execute",
            json!({"cmd": cmd, "params": params}),
        )
    }

    fn screenshot(&self, path: &Path) -> Result<(), String> {
        let v = self.try_cmd("GET", "/screenshot", None)?;
        let png = base64_decode(v.as_str().ok_or("screenshot is not a string")?)?;
        std::fs::write(path, png).map_err(|e| format!("{}: {e}", path.display()))
    }

    fn save_failure_screenshot(&self) {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .unwrap_or(Path::new("target"))
            .join("browser-failures");
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join(format!("{}.png", self.name));
        match self.screenshot(&path) {
            Ok(()) => eprintln!("{}: screenshot saved in {}", self.name, path.display()),
            Err(e) => eprintln!("{}: no screenshot: {e}", self.name),
        }
    }
}

impl Drop for Window<'_> {
    fn drop(&mut self) {
        // Closes the browser; chromedriver reaps it.
        let _ = self
            .driver
            .call("DELETE", &format!("/session/{}", self.id), None);
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

fn base64_decode(s: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for b in s.bytes() {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' | b'\r' | b'\n' => continue,
            _ => return Err(format!("bad base64 byte {b}")),
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Ok(out)
}
