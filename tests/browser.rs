//! The page in a real browser: Debian's `chromium`, headless, driven through
//! `chromedriver` over the WebDriver HTTP protocol (a tiny client below, on
//! std's `TcpStream` and serde_json).
//!
//! Two nodes from one sys.conf, a browser window on each, and the tutorial's
//! demo checked end to end: names, publishing with Enter, delivery across the
//! cluster, escaping, long and non-ASCII text, reload, HTTPS, a frozen node
//! leaving and coming back. Then rooms from the page across two nodes
//! (joining, unread counts, no leaks between rooms, Back and Forward, a room
//! past `--max-rooms`), and ten tabs of one browser sharing one SSE stream
//! over plain http, with the hand-over when the tab holding it closes (and
//! the fallback to a stream per tab without Web Locks). The scenarios run
//! one at a time; the newer ones are bounded to 60 s each.
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
    let _one = scenario(None);
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
        // The reloaded page came with the conversation so far (rendered
        // by the node): the stream's backlog and the fetched messages do
        // not show it twice.
        thread::sleep(Duration::from_millis(500));
        let once = w2.exec(
            "return timesShown('hello from node1') + ',' + timesShown('hello from node2')",
            json!([]),
        );
        assert_eq!(once, json!("1,1"), "earlier messages after the reload");
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
function messagesShown() {
  return Array.prototype.map.call(document.querySelectorAll('#messages li.msg .text'),
    function (p) { return p.textContent; });
}
function timesShown(text) {
  return messagesShown().filter(function (t) { return t === text; }).length;
}
function followedShown() {
  return Array.prototype.map.call(document.querySelectorAll('#followed a[data-room]'),
    function (a) { return a.dataset.room; });
}
function unreadShown(room) {
  var a = document.querySelector('#followed a[data-room="' + room + '"]');
  if (!a) return null;
  var u = a.querySelector('.unread');
  return u && !u.hidden ? Number(u.firstChild.textContent) : 0;
}
function roomListenersShown() {
  var p = document.getElementById('room-presence');
  var t = document.getElementById('room-listeners').textContent;
  return p && !p.hidden && /^\d+$/.test(t) ? Number(t) : null;
}
"#;

/// How long each of the scenarios below may take in all; every wait of
/// theirs stops at it (see `wait_for`).
const SCENARIO: Duration = Duration::from_secs(60);

thread_local! {
    /// When the running scenario's time is up, if it has a bound.
    static SCENARIO_DEADLINE: std::cell::Cell<Option<Instant>> = const { std::cell::Cell::new(None) };
}

/// One browser scenario at a time: each starts a Chromium and nodes, and on
/// a small machine two at once make each other's waits flaky. Returns the
/// guard, and starts the scenario's time budget.
fn scenario(bound: Option<Duration>) -> std::sync::MutexGuard<'static, ()> {
    static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let guard = ONE.lock().unwrap_or_else(|e| e.into_inner());
    SCENARIO_DEADLINE.with(|d| d.set(bound.map(|b| Instant::now() + b)));
    guard
}

/// Rooms from the page (issue 13): a room made on node1's page, written in
/// from node2's page for it; node1 back in the lobby without a reload sees
/// the room's unread count; a message never shows in another room; the
/// room's listeners, the browser's Back and Forward, the rooms followed
/// kept across a visit, and stopping following.
#[test]
fn rooms_across_nodes() {
    let Some(tools) = find_tools() else { return };
    let _one = scenario(Some(SCENARIO));
    let started = Instant::now();
    let cluster = Cluster::start(&[NODE1, NODE2]);
    let (n1, n2) = (&cluster.nodes[0], &cluster.nodes[1]);
    let driver = Driver::start(&tools);
    let w1 = driver.window("rooms-node1", 1280, 800);
    let w2 = driver.window("rooms-node2", 390, 844);
    let windows = [&w1, &w2];

    let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
        w1.goto(&format!("http://{}/", n1.http_addr()));
        w1.wait_live();
        // Gone if the page ever reloads.
        w1.exec("window.samePage = true", json!([]));

        // A name outside the rule is refused, saying the rule.
        w1.type_keys("#room-name", &format!("no_such room!{ENTER}"));
        let err = w1.wait_for(
            "an error for a bad room name",
            SHORT,
            "return document.getElementById('join-error').textContent",
            json!([]),
        );
        assert!(err.as_str().unwrap().contains("a–z, 0–9 and -"), "{err}");
        assert_eq!(w1.exec("return location.pathname", json!([])), json!("/"));

        // Create "team-x" from the page ("#Team-X" as typed).
        w1.exec("document.getElementById('room-name').value = ''", json!([]));
        w1.type_keys("#room-name", &format!("#Team-X{ENTER}"));
        let room = w1.wait_for(
            "the page of #team-x, live",
            SHORT,
            "return location.pathname === '/r/team-x' && document.body.dataset.state === 'live' &&
                    {title: document.title, action: document.getElementById('publish').getAttribute('action'),
                     followed: followedShown(), samePage: window.samePage === true,
                     heading: document.getElementById('room-title').textContent}",
            json!([]),
        );
        assert_eq!(room["samePage"], json!(true), "joining reloaded the page");
        assert_eq!(room["action"], json!("/r/team-x/publish"), "{room}");
        assert_eq!(room["heading"], json!("#team-x"), "{room}");
        assert!(
            room["title"].as_str().unwrap().starts_with("#team-x"),
            "{room}"
        );
        assert_eq!(room["followed"], json!(["lobby", "team-x"]), "{room}");
        w1.publish("first words in team-x");
        expect_top(&[&w1], "first words in team-x", NODE1);

        // node2's page for the room shows what was said, and writes in it.
        w2.goto(&format!("http://{}/r/team-x", n2.http_addr()));
        w2.wait_live();
        expect_top(&[&w2], "first words in team-x", NODE1);

        // node1 back to the lobby by its link: no reload, the URL says so,
        // and the room's messages are not in the lobby.
        w1.click("#followed a[data-room='lobby']");
        w1.wait_for(
            "the lobby again, same page",
            SHORT,
            "return location.pathname === '/' && document.body.dataset.room === 'lobby' &&
                    document.getElementById('publish').getAttribute('action') === '/publish' &&
                    document.title.indexOf('#lobby') >= 0 && window.samePage === true",
            json!([]),
        );
        w1.wait_live();
        assert_eq!(
            w1.exec("return timesShown('first words in team-x')", json!([])),
            json!(0),
            "a message of #team-x shows in the lobby"
        );

        w2.publish("news from node2 in team-x");
        expect_top(&[&w2], "news from node2 in team-x", NODE2);
        w1.wait_for(
            "1 unread in #team-x",
            SHORT,
            "return unreadShown('team-x') === 1",
            json!([]),
        );
        w1.publish("lobby only");
        expect_top(&[&w1], "lobby only", NODE1);
        // node2's page follows the lobby too: an unread count there, and
        // the lobby's message not in #team-x.
        w2.wait_for(
            "1 unread in the lobby on node2's page",
            SHORT,
            "return unreadShown('lobby') === 1",
            json!([]),
        );
        let shown = w1.exec("return messagesShown()", json!([]));
        assert!(
            !shown.to_string().contains("team-x"),
            "node1's lobby shows {shown}"
        );
        let shown = w2.exec("return messagesShown()", json!([]));
        assert_eq!(
            shown,
            json!(["news from node2 in team-x", "first words in team-x"]),
            "node2's #team-x"
        );
        assert_eq!(
            w1.exec("return unreadShown('team-x')", json!([])),
            json!(1),
            "a lobby message counted in #team-x"
        );

        // Presence per room: both pages' streams follow #team-x.
        w2.wait_for(
            "2 listening in #team-x",
            MEMBERSHIP,
            "return roomListenersShown() === 2",
            json!([]),
        );

        // Back in #team-x: its two messages, nothing else, count cleared.
        w1.click("#followed a[data-room='team-x']");
        w1.wait_for(
            "#team-x with its two messages",
            SHORT,
            "return location.pathname === '/r/team-x' && unreadShown('team-x') === 0 &&
                    messagesShown().join('|') === arguments[0]",
            json!(["news from node2 in team-x|first words in team-x"]),
        );
        expect_top(&[&w1], "news from node2 in team-x", NODE2);

        // The browser's Back and Forward move between rooms too.
        w1.cmd("POST", "/back", json!({}));
        w1.wait_for(
            "the lobby after Back",
            SHORT,
            "return location.pathname === '/' && document.body.dataset.room === 'lobby' &&
                    timesShown('lobby only') === 1 && window.samePage === true",
            json!([]),
        );
        w1.cmd("POST", "/forward", json!({}));
        w1.wait_for(
            "#team-x after Forward",
            SHORT,
            "return location.pathname === '/r/team-x' && timesShown('news from node2 in team-x') === 1",
            json!([]),
        );

        // A new visit keeps the rooms followed; its room's messages come
        // back (recent messages), each once.
        w1.goto(&format!("http://{}/", n1.http_addr()));
        w1.wait_live();
        let followed = w1.exec("return followedShown()", json!([]));
        assert_eq!(followed, json!(["lobby", "team-x"]), "after a new visit");
        w1.click("#followed a[data-room='team-x']");
        w1.wait_for(
            "#team-x's messages after a new visit",
            SHORT,
            "return messagesShown().join('|') === arguments[0]",
            json!(["news from node2 in team-x|first words in team-x"]),
        );

        // Stop following: back to the lobby, the room under "On the
        // cluster" (node2's page still listens there).
        w1.click("#leave");
        w1.wait_for(
            "#team-x no longer followed, listed on the cluster",
            MEMBERSHIP,
            "return location.pathname === '/' && followedShown().join(',') === 'lobby' &&
                    !!document.querySelector('#others a[data-room=\"team-x\"]')",
            json!([]),
        );
        w2.publish("said after node1 left");
        expect_top(&[&w2], "said after node1 left", NODE2);
        thread::sleep(Duration::from_millis(300));
        assert_eq!(
            w1.exec("return timesShown('said after node1 left')", json!([])),
            json!(0),
            "a room no longer followed still shows"
        );
        // Joined again from the cluster's list: what was said meanwhile too.
        w1.click("#others a[data-room='team-x']");
        w1.wait_for(
            "#team-x joined again, with what was said meanwhile",
            SHORT,
            "return location.pathname === '/r/team-x' && followedShown().join(',') === 'lobby,team-x' &&
                    timesShown('said after node1 left') === 1 && document.body.dataset.state === 'live'",
            json!([]),
        );
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
    eprintln!("rooms scenario took {:?}", started.elapsed());
}

/// Ten tabs of one browser on plain http (issue 12): browsers keep six
/// HTTP/1.1 connections per host, so ten streams would starve the tabs.
/// The page shares one: all ten load, receive and publish while the node
/// sees one SSE stream; when the tab holding it closes, another takes over
/// and a message published right then reaches every other tab once.
#[test]
fn ten_tabs_share_one_stream() {
    let Some(tools) = find_tools() else { return };
    let _one = scenario(Some(SCENARIO));
    let started = Instant::now();
    let node = Node::start(&["--name", NODE1]);
    let driver = Driver::start(&tools);
    let w = driver.window("tabs", 1024, 700);
    let url = format!("http://127.0.0.1:{}/", node.http_addr().port());

    let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
        // A tab starved of connections never finishes loading.
        w.cmd("POST", "/timeouts", json!({"pageLoad": 10_000}));
        let load = |i: usize| {
            if let Err(e) = w.try_cmd("POST", "/url", Some(json!({ "url": url }))) {
                panic!(
                    "tab {i} did not load: {e}\n(a browser keeps six HTTP/1.1 connections \
                     per host: do the tabs share one stream?)"
                );
            }
        };
        load(0);
        let mut tabs = vec![w.handle()];
        for i in 1..10 {
            let tab = w.new_tab();
            w.switch_to(&tab);
            load(i);
            tabs.push(tab);
        }
        for (i, tab) in tabs.iter().enumerate() {
            w.switch_to(tab);
            w.wait_for(
                &format!("tab {i} live"),
                SHORT,
                "return document.body.dataset.state === 'live'",
                json!([]),
            );
        }
        wait_sse_streams(&node, 1, "ten tabs open");
        assert_eq!(holders(&w, &tabs).len(), 1, "one tab holds the stream");

        for (i, tab) in tabs.iter().enumerate() {
            w.switch_to(tab);
            w.publish(&format!("from tab {i}"));
        }
        let all: Vec<String> = (0..tabs.len()).map(|i| format!("from tab {i}")).collect();
        for (i, tab) in tabs.iter().enumerate() {
            w.switch_to(tab);
            w.wait_for(
                &format!("the ten messages, each once, in tab {i}"),
                SHORT,
                "return arguments[0].every(function (t) { return timesShown(t) === 1; })",
                json!([all]),
            );
        }
        assert_eq!(sse_streams(&node), 1, "one stream after ten publishes");

        // Close the tab that holds the stream; publish at once.
        let holder = holders(&w, &tabs)[0];
        let streams_before = node.log_count("GET /listen?");
        w.switch_to(&tabs[holder]);
        w.close_tab();
        let rest: Vec<String> = tabs
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != holder)
            .map(|(_, t)| t.clone())
            .collect();
        node.publish_ok("right after the hand-over");
        node.publish_ok("right after the hand-over, again");
        for (i, tab) in rest.iter().enumerate() {
            w.switch_to(tab);
            w.wait_for(
                &format!("the message after the hand-over in remaining tab {i}"),
                SHORT,
                "return timesShown('right after the hand-over') === 1 &&
                        timesShown('right after the hand-over, again') === 1 &&
                        document.body.dataset.state === 'live'",
                json!([]),
            );
        }
        wait_sse_streams(&node, 1, "after the hand-over");
        assert_eq!(holders(&w, &rest).len(), 1, "one tab took over");
        // It resumed from the last id seen, not from nothing.
        let reopened: Vec<String> = node
            .log_lines()
            .into_iter()
            .filter(|l| l.contains("GET /listen?"))
            .skip(streams_before)
            .collect();
        assert!(
            !reopened.is_empty() && reopened.iter().all(|l| l.contains("lastEventId=lobby%2F")),
            "the new holder's stream: {reopened:?}"
        );
        // The new holder resumed from the last id: nothing shown twice.
        w.switch_to(&rest[rest.len() - 1]);
        w.publish("after the hand-over, from a tab");
        for (i, tab) in rest.iter().enumerate() {
            w.switch_to(tab);
            w.wait_for(
                &format!("every message once in remaining tab {i}"),
                SHORT,
                "var texts = messagesShown();
                 return timesShown('after the hand-over, from a tab') === 1 &&
                        texts.length === new Set(texts).size",
                json!([]),
            );
        }

        // A tab joins a room: every tab follows it (the rooms followed are
        // the person's), the one stream now carries it too, and the others
        // count what is said there as unread.
        w.switch_to(&rest[0]);
        w.type_keys("#room-name", &format!("side{ENTER}"));
        w.wait_for(
            "#side joined, live",
            SHORT,
            "return location.pathname === '/r/side' && document.body.dataset.state === 'live'",
            json!([]),
        );
        wait_sse_streams(&node, 1, "after a tab joined a room");
        let r = common::post_form(
            node.http_addr(),
            "/r/side/publish",
            &common::form_message("said in #side"),
            &[],
        );
        assert_eq!(r.status, 303, "{r:?}");
        expect_top(&[&w], "said in #side", NODE1);
        for (i, tab) in rest.iter().enumerate().skip(1) {
            w.switch_to(tab);
            w.wait_for(
                &format!("1 unread in #side, none shown, in remaining tab {i}"),
                SHORT,
                "return unreadShown('side') === 1 && timesShown('said in #side') === 0",
                json!([]),
            );
        }
    }));
    if let Err(e) = outcome {
        w.save_failure_screenshot();
        eprintln!("--- node stderr ---\n{}", node.stderr_tail());
        panic::resume_unwind(e);
    }
    eprintln!("ten tabs scenario took {:?}", started.elapsed());
}

/// Without Web Locks (an old browser, or a plain-http page on a name that is
/// not a secure context) each tab keeps a stream of its own, as before
/// sharing: here the page is made to see no `navigator.locks`.
#[test]
fn tabs_without_web_locks_stream_each() {
    let Some(tools) = find_tools() else { return };
    let _one = scenario(Some(SCENARIO));
    let node = Node::start(&["--name", NODE1]);
    let driver = Driver::start(&tools);
    let w = driver.window("no-locks", 1024, 700);
    let url = format!("http://127.0.0.1:{}/", node.http_addr().port());
    let hide = "Object.defineProperty(Navigator.prototype, 'locks', \
                {get: function () { return undefined; }});";

    let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
        let tabs = [w.handle(), w.new_tab(), w.new_tab()];
        for (i, tab) in tabs.iter().enumerate() {
            w.switch_to(tab);
            w.cdp(
                "Page.addScriptToEvaluateOnNewDocument",
                json!({ "source": hide }),
            );
            w.goto(&url);
            w.wait_live();
            let role = w.exec(
                "return [typeof navigator.locks, document.body.dataset.stream]",
                json!([]),
            );
            assert_eq!(role, json!(["undefined", "own"]), "tab {i}");
        }
        wait_sse_streams(&node, 3, "three tabs without Web Locks");
        w.switch_to(&tabs[1]);
        w.publish("each tab its own stream");
        for (i, tab) in tabs.iter().enumerate() {
            w.switch_to(tab);
            w.wait_for(
                &format!("the message once in tab {i}"),
                SHORT,
                "return timesShown('each tab its own stream') === 1",
                json!([]),
            );
        }
    }));
    if let Err(e) = outcome {
        w.save_failure_screenshot();
        eprintln!("--- node stderr ---\n{}", node.stderr_tail());
        panic::resume_unwind(e);
    }
}

/// A node at its `--max-rooms` refuses a new room (503): the page says
/// why, stays in its room and keeps receiving; a URL naming such a room
/// lands in the lobby, saying why.
#[test]
fn a_room_past_max_rooms_is_refused_clearly() {
    let Some(tools) = find_tools() else { return };
    let _one = scenario(Some(SCENARIO));
    let node = Node::start(&["--name", NODE1, "--max-rooms", "2"]);
    let driver = Driver::start(&tools);
    let w = driver.window("max-rooms", 1024, 700);
    let base = format!("http://{}", node.http_addr());

    let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
        w.goto(&format!("{base}/"));
        w.wait_live();
        w.type_keys("#room-name", &format!("first{ENTER}"));
        w.wait_for(
            "#first, live",
            SHORT,
            "return location.pathname === '/r/first' && document.body.dataset.state === 'live'",
            json!([]),
        );
        w.type_keys("#room-name", &format!("second{ENTER}"));
        let err = w.wait_for(
            "an error for a room past --max-rooms",
            SHORT,
            "return document.getElementById('join-error').textContent",
            json!([]),
        );
        assert!(
            err.as_str().unwrap().contains("too many rooms") && err.to_string().contains("503"),
            "{err}"
        );
        let state = w.exec(
            "return [location.pathname, followedShown(), document.body.dataset.state]",
            json!([]),
        );
        assert_eq!(state, json!(["/r/first", ["lobby", "first"], "live"]));
        w.publish("still in #first");
        expect_top(&[&w], "still in #first", NODE1);

        w.goto(&format!("{base}/r/third"));
        w.wait_for(
            "the lobby, saying why #third is not open",
            SHORT,
            "return location.pathname === '/' && document.body.dataset.state === 'live' &&
                    document.getElementById('join-error').textContent.indexOf('too many rooms') >= 0",
            json!([]),
        );
        assert_eq!(
            w.exec("return followedShown()", json!([])),
            json!(["lobby", "first"])
        );
    }));
    if let Err(e) = outcome {
        w.save_failure_screenshot();
        eprintln!("--- node stderr ---\n{}", node.stderr_tail());
        panic::resume_unwind(e);
    }
}

/// The tabs (by index) whose page holds the shared stream.
fn holders(w: &Window, tabs: &[String]) -> Vec<usize> {
    let mut found = Vec::new();
    for (i, tab) in tabs.iter().enumerate() {
        w.switch_to(tab);
        let role = w.exec("return document.body.dataset.stream", json!([]));
        if role == json!("holder") || role == json!("own") {
            found.push(i);
        }
    }
    found
}

/// The node's open SSE streams (`watercooler_listeners` in /metrics).
fn sse_streams(node: &Node) -> u64 {
    let metrics = node.get("/metrics").text();
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("watercooler_listeners "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no watercooler_listeners in /metrics:\n{metrics}"))
}

fn wait_sse_streams(node: &Node, want: u64, when: &str) {
    let deadline = Instant::now() + SHORT;
    loop {
        let n = sse_streams(node);
        if n == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{when}: the node sees {n} SSE streams, not {want}, within {SHORT:?}"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

// ---------------------------------------------------------------------------
// Screenshots for the README (run on demand)
// ---------------------------------------------------------------------------

#[test]
#[ignore = "writes docs/*.png; run with --ignored to refresh them"]
fn screenshots() {
    let Some(tools) = find_tools() else { return };
    let _one = scenario(None);
    let names = ["node1@127.0.0.1", "node2@127.0.0.1", "node3@127.0.0.1"];
    let cluster = Cluster::start(&names);
    let n1 = &cluster.nodes[0];
    // A few more listeners in a few rooms, as on a real day.
    let _others: Vec<_> = [
        "/listen",
        "/listen?room=lobby&room=general",
        "/r/general/listen",
        "/r/design/listen",
        "/listen?room=lobby&room=release-42",
    ]
    .iter()
    .enumerate()
    .map(|(i, path)| cluster.nodes[i % 3].listen_path(path, &[]))
    .collect();
    let in_room = |node: usize, room: &str, text: &str| {
        let path = format!("/r/{room}/publish");
        let r = common::post_form(
            cluster.nodes[node].http_addr(),
            &path,
            &common::form_message(text),
            &[],
        );
        assert_eq!(r.status, 303, "{path}: {r:?}");
    };
    let said_before: [(usize, &str); 2] = [
        (
            1,
            "Morning! Is the coffee machine on the 3rd floor fixed yet?",
        ),
        (0, "Yes, since yesterday ☕ — the descaling did it."),
    ];
    for (i, text) in said_before {
        cluster.nodes[i].publish_ok(text);
        thread::sleep(Duration::from_millis(150));
    }
    in_room(2, "general", "The all-hands moved to Thursday.");
    let driver = Driver::start(&tools);
    let w = driver.window("docs", 1280, 800);
    // This person follows two rooms besides the lobby.
    w.goto(&format!("http://{}/404", n1.http_addr()));
    w.exec(
        "localStorage.setItem('watercooler.rooms', JSON.stringify(['lobby', 'general', 'random']))",
        json!([]),
    );
    w.goto(&format!("http://{}/", n1.http_addr()));
    w.wait_live();
    w.wait_for(
        "three nodes",
        MEMBERSHIP,
        "return nodesShown().length === 3 && listenersShown() === 6 && roomListenersShown() === 4",
        json!([]),
    );
    let said: [(usize, &str); 4] = [
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
    in_room(
        1,
        "general",
        "Slides for Thursday are in the shared folder.",
    );
    in_room(0, "general", "Thanks! I'll add the benchmark table.");
    w.wait_for(
        "six messages, two unread in #general, the rooms of the cluster",
        SHORT,
        "return document.querySelectorAll('#messages li.msg').length === 6 &&
                unreadShown('general') === 2 &&
                document.querySelectorAll('#others a[data-room]').length === 2",
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
            w.exec(
                "document.getElementById('message').blur(); window.scrollTo(0, 0)",
                json!([]),
            );
            thread::sleep(Duration::from_millis(400));
            let suffix = if dark { "-dark" } else { "" };
            let path = docs.join(format!("{size}{suffix}.png"));
            w.screenshot(&path).unwrap();
            eprintln!("wrote {}", path.display());
        }
    }
    // Not for the README, to look at when changing the page: a room with
    // its messages (desktop, light), a refused room name (phone, dark),
    // the refused-message and reconnecting states (phone, dark).
    let states = Path::new(env!("CARGO_TARGET_TMPDIR"));
    w.cdp(
        "Emulation.setEmulatedMedia",
        json!({"features": [{"name": "prefers-color-scheme", "value": "light"}]}),
    );
    w.cdp(
        "Emulation.setDeviceMetricsOverride",
        json!({"width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": false}),
    );
    w.click("#followed a[data-room='general']");
    w.wait_for(
        "#general's three messages",
        SHORT,
        "return messagesShown().length === 3",
        json!([]),
    );
    thread::sleep(Duration::from_millis(400));
    let path = states.join("page-room-desktop.png");
    w.screenshot(&path).unwrap();
    eprintln!("wrote {}", path.display());
    w.cdp(
        "Emulation.setEmulatedMedia",
        json!({"features": [{"name": "prefers-color-scheme", "value": "dark"}]}),
    );
    w.cdp(
        "Emulation.setDeviceMetricsOverride",
        json!({"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": true}),
    );
    // After the page folded it for the phone's width.
    thread::sleep(Duration::from_millis(300));
    w.exec("document.getElementById('discover').open = true", json!([]));
    w.type_keys("#room-name", &format!("Not a room!{ENTER}"));
    w.wait_for(
        "a refused room name",
        SHORT,
        "return document.getElementById('join-error').textContent",
        json!([]),
    );
    let path = states.join("page-join-phone-dark.png");
    w.screenshot(&path).unwrap();
    eprintln!("wrote {}", path.display());
    w.click("#followed a[data-room='lobby']");
    w.press_enter_with("   ");
    signal(n1.pid(), libc::SIGKILL);
    w.wait_for(
        "reconnecting",
        SHORT,
        "return document.body.dataset.state === 'reconnecting'",
        json!([]),
    );
    let path = states.join("page-states-phone-dark.png");
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
        let mut deadline = Instant::now() + timeout;
        let scenario_end = SCENARIO_DEADLINE.with(|d| d.get());
        if let Some(end) = scenario_end.filter(|&end| end < deadline) {
            deadline = end;
        }
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
                let why = if scenario_end == Some(deadline) {
                    format!("before the scenario's {SCENARIO:?} ran out")
                } else {
                    format!("within {timeout:?}")
                };
                panic!(
                    "{}: no {what} {why} (last: {v}); page shows {seen}",
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

    fn click(&self, css: &str) {
        let el = self.element(css);
        self.cmd("POST", &format!("/element/{el}/click"), json!({}));
    }

    /// The handle of the current tab.
    fn handle(&self) -> String {
        let v = self.cmd("GET", "/window", json!(null));
        v.as_str()
            .unwrap_or_else(|| panic!("{}: no window handle in {v}", self.name))
            .to_string()
    }

    /// Opens a tab of the same browser (same profile, same origin's
    /// storage, locks and channels); returns its handle.
    fn new_tab(&self) -> String {
        let v = self.cmd("POST", "/window/new", json!({"type": "tab"}));
        v["handle"]
            .as_str()
            .unwrap_or_else(|| panic!("{}: no handle in {v}", self.name))
            .to_string()
    }

    fn switch_to(&self, handle: &str) {
        self.cmd("POST", "/window", json!({ "handle": handle }));
    }

    /// Closes the current tab (its page unloads, its locks are released).
    fn close_tab(&self) {
        self.cmd("DELETE", "/window", json!(null));
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

/// Issue 12: over https the browser speaks HTTP/2, so ten tabs (their
/// pages, files, publishes and the stream) travel on ONE TCP connection.
#[test]
fn ten_tabs_on_https_use_one_connection() {
    let Some(tools) = find_tools() else { return };
    let _one = scenario(Some(SCENARIO));
    let node = Node::start(&["--name", NODE1]);
    let driver = Driver::start(&tools);
    let w = driver.window("https-tabs", 1024, 700);
    let url = format!("https://127.0.0.1:{}/", node.https_addr().port());
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
        w.cmd("POST", "/timeouts", json!({"pageLoad": 10_000}));
        let mut tabs = Vec::new();
        for i in 0..10 {
            if i > 0 {
                let tab = w.new_tab();
                w.switch_to(&tab);
            }
            if let Err(e) = w.try_cmd("POST", "/url", Some(json!({ "url": url }))) {
                panic!("https tab {i} did not load: {e}");
            }
            tabs.push(w.handle());
        }
        for (i, tab) in tabs.iter().enumerate() {
            w.switch_to(tab);
            w.wait_for(
                &format!("https tab {i} live"),
                SHORT,
                "return document.body.dataset.state === 'live'",
                json!([]),
            );
        }
        w.switch_to(&tabs[3]);
        w.publish("from an https tab");
        for (i, tab) in tabs.iter().enumerate() {
            w.switch_to(tab);
            w.wait_for(
                &format!("the message in https tab {i}"),
                SHORT,
                "return timesShown('from an https tab') === 1",
                json!([]),
            );
        }
        // Every request of the ten tabs came on one connection (the request
        // log names the peer of each); Chromium may open a spare socket it
        // never uses, so idle ones are not counted.
        let peers: std::collections::BTreeSet<String> = node
            .log_lines()
            .iter()
            .filter(|l| l.contains(" h2 tls"))
            .filter_map(|l| l.split_whitespace().nth(2).map(str::to_string))
            .collect();
        assert_eq!(
            peers.len(),
            1,
            "one TCP connection carried every request: {peers:?}"
        );
        let metrics = node.get("/metrics").text();
        assert!(
            !metrics.contains("watercooler_connections_by_protocol{protocol=\"h2\"} 0\n"),
            "and it speaks HTTP/2:\n{metrics}"
        );
    }));
    if let Err(e) = outcome {
        w.save_failure_screenshot();
        eprintln!("--- node stderr ---\n{}", node.stderr_tail());
        panic::resume_unwind(e);
    }
}
