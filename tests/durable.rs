//! The durable history (issue 15) on real nodes: `--data DIR` and
//! `--fsync`. A node restarted (SIGTERM or `kill -9`) keeps its
//! conversation; `kill -9` in the middle of a burst loses no acknowledged
//! message under every `--fsync`; a torn tail is cut and a corrupt record
//! skipped, each with one warning, never a garbled message; a second node
//! on the same directory is refused; a cluster member restarted from its
//! log gets the rest from its peer, exactly once; a full disk refuses
//! publishes with 503 until it has room again; a file system turned
//! read-only refuses them too and keeps what was acknowledged; a
//! read-only log directory at start is one clear line.
//!
//! Every test has its own `TempDir` for `--data` and its own ports. The
//! file-system tests mount a small tmpfs (or an ext4 image on a loop
//! device) and skip, saying why, when they cannot (not root, or a
//! container that forbids it).

mod common;

use std::collections::HashSet;
use std::fs;
use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::{
    conf_text, form_message, post_form_bytes, run, try_post_form, Conn, Event, Member, Node,
    Response, SseClient, TempDir,
};

/// Bound on links forming.
const LINK: Duration = Duration::from_secs(10);
/// How long a stream must stay quiet to show nothing more is coming.
const QUIET: Duration = Duration::from_millis(500);
/// Bound on the node logging its startup line, or anything it must log.
const LOGGED: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// A lone node keeping its log in `data`, plus `extra`.
fn start_on(data: &Path, extra: &[&str]) -> Node {
    let data = data.to_str().expect("UTF-8 temp path");
    let mut args = vec!["--data", data];
    args.extend_from_slice(extra);
    Node::start(&args)
}

/// SIGTERM, then a clean exit; the `Node` can be `restart`ed after it.
fn stop(node: &mut Node) {
    node.signal(libc::SIGTERM);
    match node.wait_exit(Duration::from_secs(8)) {
        Some(status) if status.success() => {}
        other => node.fail("clean exit after SIGTERM", format!("{other:?}")),
    }
}

/// Waits for the startup line of the log and returns it.
fn loaded_line(node: &Node) -> String {
    node.wait_log_match(LOGGED, |l| l.contains("loaded ") && l.contains("--fsync"))
        .unwrap_or_else(|| node.fail("no \"loaded …\" line", "within 5 s"))
}

/// Checks the startup line: `records` records from `segments` segments in
/// `data`, `in_memory` messages in memory.
fn expect_loaded(node: &Node, data: &Path, records: usize, segments: usize, in_memory: usize) {
    let line = loaded_line(node);
    let want = format!(
        "loaded {records} records from {segments} segments in {}",
        data.display()
    );
    assert!(line.contains(&want), "want {want:?} in {line:?}");
    assert!(
        line.contains(&format!(
            " ms; {in_memory} messages kept in memory (--history); --fsync "
        )),
        "want {in_memory} messages in memory in {line:?}"
    );
}

/// The node's log lines that say it repaired something.
fn damage_lines(node: &Node) -> Vec<String> {
    node.log_lines()
        .into_iter()
        .filter(|l| l.contains("log: cut a torn tail") || l.contains("log: skipped"))
        .collect()
}

/// Publishes in `room` (the lobby's path for "lobby") and asserts the 303.
fn publish_in(node: &Node, room: &str, text: &str) {
    let path = if room == "lobby" {
        "/publish".to_string()
    } else {
        format!("/r/{room}/publish")
    };
    let r = try_post_form(node.http_addr(), &path, &form_message(text), &[])
        .unwrap_or_else(|e| node.fail(&format!("publish {text:?} in {room}"), e));
    assert_eq!(r.status, 303, "publish {text:?} in {room}: {r:?}");
}

/// `GET /r/ROOM/messages`: (id, text), oldest first.
fn messages(node: &Node, room: &str) -> Vec<(String, String)> {
    let r = node.get(&format!("/r/{room}/messages"));
    assert_eq!(r.status, 200, "GET /r/{room}/messages: {r:?}");
    let v: serde_json::Value =
        serde_json::from_slice(&r.body).unwrap_or_else(|e| node.fail("messages JSON", e));
    assert_eq!(v["room"], room, "{v}");
    v["messages"]
        .as_array()
        .unwrap_or_else(|| node.fail("messages JSON", &v))
        .iter()
        .map(|m| {
            let s = |k: &str| {
                m[k].as_str()
                    .unwrap_or_else(|| panic!("{k} in {m}"))
                    .to_string()
            };
            (s("id"), s("text"))
        })
        .collect()
}

fn texts(msgs: &[(String, String)]) -> Vec<&str> {
    msgs.iter().map(|(_, t)| t.as_str()).collect()
}

fn data_of(events: &[Event]) -> Vec<&str> {
    events.iter().map(|e| e.data.as_str()).collect()
}

/// Everything a stream gets (presence left out) until it has been quiet
/// for `QUIET`.
fn read_until_quiet(l: &mut SseClient<TcpStream>) -> Vec<Event> {
    let mut got = Vec::new();
    let mut quiet_at = Instant::now() + QUIET;
    let give_up = Instant::now() + Duration::from_secs(10);
    loop {
        let now = Instant::now();
        if now >= quiet_at || now >= give_up {
            return got;
        }
        match l.next_any_event(quiet_at - now) {
            Some(e) if e.event.as_deref() == Some("presence") => {}
            Some(e) => {
                got.push(e);
                quiet_at = Instant::now() + QUIET;
            }
            None => return got,
        }
    }
}

/// A new stream on `path` is shown `want` (id, text) as its backlog, and
/// nothing else.
fn expect_backlog(node: &Node, path: &str, want: &[(String, String)]) {
    let mut l = node.listen_path(path, &[]);
    let got = read_until_quiet(&mut l);
    for e in &got {
        assert_eq!(e.event.as_deref(), Some("backlog"), "{path}: {e:?}");
        assert!(e.own_id, "{path}: backlog event without its id: {e:?}");
    }
    let got: Vec<(String, String)> = got
        .into_iter()
        .map(|e| (e.id.unwrap_or_default(), e.data))
        .collect();
    assert_eq!(got, want, "{path}: backlog of a new stream");
}

/// A stream on `path` resuming after `last_id` gets exactly `want` (id,
/// text) as plain messages: no `missed`, no backlog, nothing twice.
fn expect_resume(
    node: &Node,
    path: &str,
    last_id: &str,
    want: &[(String, String)],
) -> SseClient<TcpStream> {
    let mut l = node.listen_path(path, &[("Last-Event-ID", last_id)]);
    let got = read_until_quiet(&mut l);
    for e in &got {
        assert!(
            e.event.is_none(),
            "{path} resumed after {last_id}: not a plain message: {e:?} in {:?}",
            data_of(&got)
        );
    }
    let got: Vec<(String, String)> = got
        .into_iter()
        .map(|e| (e.id.unwrap_or_default(), e.data))
        .collect();
    assert_eq!(got, want, "{path} resumed after {last_id}");
    l
}

/// The segment files in `data`, oldest first.
fn segments(data: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs::read_dir(data)
        .unwrap_or_else(|e| panic!("read_dir {data:?}: {e}"))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    out.sort();
    out
}

/// The only segment in `data`.
fn only_segment(data: &Path) -> PathBuf {
    let segs = segments(data);
    assert_eq!(segs.len(), 1, "segments in {data:?}: {segs:?}");
    segs.into_iter().next().unwrap()
}

/// The byte range of each record of a whole segment, read with the format
/// of `src/store` (a contract with every log on disk). Header: magic (8),
/// version u16, count u16, salt u32, count × 12 bytes of floor, crc u32.
/// Record: len u32, two u32 checksums, `len` bytes of body.
fn record_spans(bytes: &[u8]) -> Vec<Range<usize>> {
    assert_eq!(&bytes[..8], b"wclog\r\n\0", "not a segment");
    let count = u16::from_le_bytes([bytes[10], bytes[11]]) as usize;
    let mut at = 16 + 12 * count + 4;
    let mut spans = Vec::new();
    while at < bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        let end = at + 12 + len;
        assert!(end <= bytes.len(), "record at {at} runs past the end");
        spans.push(at..end);
        at = end;
    }
    spans
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Appends `bytes` to the file at `path`.
fn append(path: &Path, bytes: &[u8]) {
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {path:?}: {e}"));
    f.write_all(bytes)
        .unwrap_or_else(|e| panic!("append to {path:?}: {e}"));
}

/// Checks `msgs` (a room's messages) for exactly once per origin in order:
/// each text is `ORIGIN-I`; `want` gives each origin's range of I.
fn check_once_in_order(msgs: &[(String, String)], want: &[(&str, Range<usize>)], what: &str) {
    let ids: HashSet<&str> = msgs.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids.len(), msgs.len(), "{what}: an id twice in {msgs:?}");
    let all: Vec<&str> = msgs.iter().map(|(_, t)| t.as_str()).collect();
    common::assert_origins_in_order(what, &all, want);
}

/// Polls `GET /r/lobby/messages` until `done` holds.
fn wait_messages(
    node: &Node,
    what: &str,
    timeout: Duration,
    mut done: impl FnMut(&[(String, String)]) -> bool,
) -> Vec<(String, String)> {
    let deadline = Instant::now() + timeout;
    loop {
        let msgs = messages(node, "lobby");
        if done(&msgs) {
            return msgs;
        }
        if Instant::now() >= deadline {
            node.fail(&format!("{what} within {timeout:?}"), format!("{msgs:?}"));
        }
        thread::sleep(Duration::from_millis(100));
    }
}

// ---------------------------------------------------------------------------
// 1. A lone node restarted keeps its conversation
// ---------------------------------------------------------------------------

fn lone_node_keeps_its_conversation(kill9: bool) {
    let dir = TempDir::new(if kill9 { "keep-kill" } else { "keep-term" });
    let data = dir.0.join("data");
    let mut node = start_on(&data, &[]);
    expect_loaded(&node, &data, 0, 0, 0);

    // Interleaved in two rooms; non-ASCII and a newline survive the log.
    for i in 1..=5 {
        publish_in(&node, "lobby", &format!("m{i}"));
        if i <= 3 {
            publish_in(&node, "general", &format!("g{i} ✓ é\nline two"));
        }
    }
    let lobby = messages(&node, "lobby");
    let general = messages(&node, "general");
    assert_eq!(texts(&lobby), ["m1", "m2", "m3", "m4", "m5"]);
    assert_eq!(general.len(), 3, "{general:?}");

    if kill9 {
        node.kill();
    } else {
        stop(&mut node);
    }
    node.restart();
    expect_loaded(&node, &data, 8, 1, 8);
    assert_eq!(damage_lines(&node), Vec::<String>::new());

    // The same messages under the same ids.
    assert_eq!(messages(&node, "lobby"), lobby);
    assert_eq!(messages(&node, "general"), general);
    expect_backlog(&node, "/listen", &lobby);
    expect_backlog(&node, "/r/general/listen", &general);

    // A browser that saw the 2nd message before the restart resumes.
    let mut l = expect_resume(&node, "/listen", &lobby[1].0, &lobby[2..]);
    expect_resume(&node, "/r/general/listen", &general[1].0, &general[2..]);

    // Life goes on: a new message is new, and live on the resumed stream.
    node.publish_ok("m6");
    let e = l.expect_event("m6 after the restart");
    assert_eq!(e.data, "m6", "{e:?}");
    let id6 = e.id.clone().unwrap();
    assert!(
        lobby.iter().all(|(id, _)| *id != id6),
        "m6 took an old id {id6}"
    );
    drop(l);

    // And it all survives one more restart.
    node.restart();
    expect_loaded(&node, &data, 9, 1, 9);
    let mut want = lobby.clone();
    want.push((id6, "m6".into()));
    assert_eq!(messages(&node, "lobby"), want);
    assert_eq!(messages(&node, "general"), general);
}

#[test]
fn lone_node_keeps_its_conversation_across_sigterm() {
    lone_node_keeps_its_conversation(false);
}

#[test]
fn lone_node_keeps_its_conversation_across_kill_9() {
    lone_node_keeps_its_conversation(true);
}

// ---------------------------------------------------------------------------
// 2. kill -9 in the middle of a burst
// ---------------------------------------------------------------------------

/// What one publisher thread did.
#[derive(Debug)]
struct Publisher {
    /// Messages `t{k}-0 .. t{k}-{acked}` got their 303.
    acked: usize,
    /// One more was sent and not answered (the kill came first).
    in_flight: bool,
    /// Anything unexpected (a status other than 303, an error before the kill).
    trouble: Option<String>,
}

fn burst_then_kill_9(fsync: &str) {
    const THREADS: usize = 4;
    /// Most messages per thread: all of them fit in `--backlog`.
    const CAP: usize = 240;
    /// The kill comes once this many are acknowledged in all.
    const KILL_AT: usize = 160;

    let dir = TempDir::new(&format!("burst-{fsync}"));
    let data = dir.0.join("data");
    let mut node = start_on(
        &data,
        &["--fsync", fsync, "--backlog", "1000", "--history", "2000"],
    );
    let addr = node.http_addr();
    let acked_total = Arc::new(AtomicUsize::new(0));
    let killed = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..THREADS)
        .map(|k| {
            let acked_total = Arc::clone(&acked_total);
            let killed = Arc::clone(&killed);
            thread::spawn(move || publisher(addr, k, CAP, &acked_total, &killed))
        })
        .collect();

    let deadline = Instant::now() + Duration::from_secs(20);
    while acked_total.load(Ordering::SeqCst) < KILL_AT
        && Instant::now() < deadline
        && !threads.iter().all(|t| t.is_finished())
    {
        thread::sleep(Duration::from_millis(2));
    }
    killed.store(true, Ordering::SeqCst);
    node.kill();
    let pubs: Vec<Publisher> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    for (k, p) in pubs.iter().enumerate() {
        assert!(p.trouble.is_none(), "publisher {k}: {p:?}");
    }
    assert!(
        pubs.iter().any(|p| p.in_flight),
        "the kill came after the burst, not in it: {pubs:?}"
    );
    let acked: usize = pubs.iter().map(|p| p.acked).sum();
    assert!(acked >= KILL_AT, "only {acked} acknowledged: {pubs:?}");

    node.restart();
    let line = loaded_line(&node);
    let msgs = messages(&node, "lobby");
    assert!(
        line.contains(&format!("loaded {} records", msgs.len())),
        "{line:?} but {} messages",
        msgs.len()
    );
    assert!(
        node.log_count("log: skipped") == 0,
        "{:?}",
        damage_lines(&node)
    );
    let all = texts(&msgs);
    let ids: HashSet<&str> = msgs.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids.len(), msgs.len(), "an id twice");
    let mut per_thread: Vec<Vec<usize>> = vec![Vec::new(); THREADS];
    for t in &all {
        let (k, i) = t
            .strip_prefix('t')
            .and_then(|t| t.split_once('-'))
            .and_then(|(k, i)| Some((k.parse::<usize>().ok()?, i.parse::<usize>().ok()?)))
            .filter(|(k, _)| *k < THREADS)
            .unwrap_or_else(|| panic!("a message nobody published: {t:?}"));
        per_thread[k].push(i);
    }
    for (k, (got, p)) in per_thread.iter().zip(&pubs).enumerate() {
        // Each thread's messages in order, once each: every acknowledged
        // one, and perhaps the one in flight at the kill (it may have been
        // written before its 303 could leave).
        let n = got.len();
        let upper = p.acked + usize::from(p.in_flight);
        assert!(
            (p.acked..=upper).contains(&n) && got.iter().copied().eq(0..n),
            "--fsync {fsync}: thread {k} had {} acknowledged (in flight: {}); \
             after the restart: {got:?}",
            p.acked,
            p.in_flight
        );
    }
    eprintln!(
        "--fsync {fsync}: {acked} acknowledged before kill -9, {} after the restart",
        msgs.len()
    );

    // Publishing goes on, after what was there. Polled: under `always`
    // (as without a log) the 303 leaves at once, and a request accepted
    // later in the same turn's accept loop is answered before the turn
    // hands the message to fan-out; `/messages` leaves out what is not
    // handed yet.
    node.publish_ok("after the crash");
    let again = wait_messages(&node, "the message after the crash", LOGGED, |m| {
        m.len() > msgs.len()
    });
    assert_eq!(
        again.last().map(|(_, t)| t.as_str()),
        Some("after the crash")
    );
    assert_eq!(again.len(), msgs.len() + 1);
}

/// Publishes `t{k}-0`, `t{k}-1`… on one keep-alive connection until `cap`
/// or the connection fails; `killed` says a failure is the expected kill.
fn publisher(
    addr: SocketAddr,
    k: usize,
    cap: usize,
    acked_total: &AtomicUsize,
    killed: &AtomicBool,
) -> Publisher {
    let mut p = Publisher {
        acked: 0,
        in_flight: false,
        trouble: None,
    };
    let mut conn = match Conn::plain(addr) {
        Ok(c) => c,
        Err(e) => {
            p.trouble = Some(format!("connect: {e}"));
            return p;
        }
    };
    for i in 0..cap {
        match conn.publish(&format!("t{k}-{i}")) {
            Ok(r) if r.status == 303 => {
                p.acked = i + 1;
                acked_total.fetch_add(1, Ordering::SeqCst);
                if r.header("connection")
                    .is_some_and(|v| v.eq_ignore_ascii_case("close"))
                {
                    match Conn::plain(addr) {
                        Ok(c) => conn = c,
                        Err(e) => {
                            if !killed.load(Ordering::SeqCst) {
                                p.trouble = Some(format!("reconnect: {e}"));
                            }
                            return p;
                        }
                    }
                }
            }
            Ok(r) => {
                p.trouble = Some(format!("t{k}-{i}: {r:?}"));
                return p;
            }
            Err(e) => {
                if killed.load(Ordering::SeqCst) {
                    p.in_flight = true;
                } else {
                    p.trouble = Some(format!("t{k}-{i} before the kill: {e}"));
                }
                return p;
            }
        }
    }
    p
}

#[test]
fn kill_9_mid_burst_loses_no_acknowledged_message_fsync_batch() {
    burst_then_kill_9("batch");
}

#[test]
fn kill_9_mid_burst_loses_no_acknowledged_message_fsync_always() {
    burst_then_kill_9("always");
}

/// `off` never syncs, but a 303 still waits for the write: `kill -9` keeps
/// the page cache, so nothing acknowledged is lost either.
#[test]
fn kill_9_mid_burst_loses_no_acknowledged_message_fsync_off() {
    burst_then_kill_9("off");
}

// ---------------------------------------------------------------------------
// 3. A torn tail is cut
// ---------------------------------------------------------------------------

#[test]
fn torn_tail_is_cut_once_and_publishing_goes_on() {
    let dir = TempDir::new("torn");
    let data = dir.0.join("data");
    let mut node = start_on(&data, &[]);
    let want: Vec<String> = (0..6).map(|i| format!("a-{i}")).collect();
    for t in &want {
        node.publish_ok(t);
    }
    stop(&mut node);

    // A crash in the middle of writing the next record: a truncated copy
    // of the last one after it.
    let seg = only_segment(&data);
    let bytes = fs::read(&seg).unwrap();
    let spans = record_spans(&bytes);
    assert_eq!(spans.len(), 6, "records in {seg:?}");
    let last = spans.last().unwrap().clone();
    let torn = &bytes[last.start..last.end - 3];
    append(&seg, torn);

    node.restart();
    expect_loaded(&node, &data, 6, 1, 6);
    let want_line = format!(
        "log: cut a torn tail of {} bytes at offset {} of {}",
        torn.len(),
        bytes.len(),
        seg.display()
    );
    let damage = damage_lines(&node);
    assert_eq!(damage.len(), 1, "{damage:?}");
    assert!(
        damage[0].contains(&want_line),
        "want {want_line:?}: {damage:?}"
    );
    assert_eq!(
        fs::metadata(&seg).unwrap().len(),
        bytes.len() as u64,
        "the tail is cut off the file"
    );
    assert_eq!(texts(&messages(&node, "lobby")), want);

    // The log takes new records after the cut, and they survive.
    node.publish_ok("a-6");
    stop(&mut node);
    let bytes = fs::read(&seg).unwrap();
    assert_eq!(record_spans(&bytes).len(), 7);

    // Plain garbage after the last record: cut the same way.
    append(&seg, b"\x07garbage\xff");
    node.restart();
    expect_loaded(&node, &data, 7, 1, 7);
    let damage = damage_lines(&node);
    let want_line = format!(
        "log: cut a torn tail of 9 bytes at offset {} of {}",
        bytes.len(),
        seg.display()
    );
    assert_eq!(damage.len(), 1, "{damage:?}");
    assert!(
        damage[0].contains(&want_line),
        "want {want_line:?}: {damage:?}"
    );
    node.publish_ok("a-7");

    // A clean restart after that: no warning, everything there.
    stop(&mut node);
    node.restart();
    expect_loaded(&node, &data, 8, 1, 8);
    assert_eq!(damage_lines(&node), Vec::<String>::new());
    let all = messages(&node, "lobby");
    check_once_in_order(&all, &[("a", 0..8)], "after the repairs");
}

// ---------------------------------------------------------------------------
// 4. A corrupt record in the middle is skipped
// ---------------------------------------------------------------------------

#[test]
fn corrupt_record_is_skipped_never_garbled() {
    let dir = TempDir::new("corrupt");
    let data = dir.0.join("data");
    let mut node = start_on(&data, &[]);
    let published: Vec<String> = (0..20).map(|i| format!("c-{i}")).collect();
    for t in &published {
        node.publish_ok(t);
    }
    stop(&mut node);

    // One flipped byte in the text of the 11th record: "c-10" → "C-10".
    let seg = only_segment(&data);
    let mut bytes = fs::read(&seg).unwrap();
    let spans = record_spans(&bytes);
    assert_eq!(spans.len(), 20);
    let victim = spans[10].clone();
    let at =
        victim.start + find(&bytes[victim.clone()], b"c-10").expect("the text of the 11th record");
    bytes[at] = b'C';
    fs::write(&seg, &bytes).unwrap();

    node.restart();
    expect_loaded(&node, &data, 19, 1, 19);
    let want_line = format!(
        "log: skipped {} corrupt bytes at offset {} of {}",
        victim.len(),
        victim.start,
        seg.display()
    );
    let damage = damage_lines(&node);
    assert_eq!(damage.len(), 1, "{damage:?}");
    assert!(
        damage[0].contains(&want_line),
        "want {want_line:?}: {damage:?}"
    );

    // Every other message, and only published texts.
    let mut want: Vec<&str> = published.iter().map(String::as_str).collect();
    want.remove(10);
    let msgs = messages(&node, "lobby");
    assert_eq!(texts(&msgs), want);
    expect_backlog(&node, "/listen", &msgs);

    // The node serves and writes on; the damaged span stays skipped.
    node.publish_ok("c-20");
    node.restart();
    expect_loaded(&node, &data, 20, 1, 20);
    assert_eq!(damage_lines(&node).len(), 1, "{:?}", damage_lines(&node));
    let msgs = messages(&node, "lobby");
    want.push("c-20");
    assert_eq!(texts(&msgs), want);
}

// ---------------------------------------------------------------------------
// 5. One node per directory
// ---------------------------------------------------------------------------

#[test]
fn second_node_on_the_same_directory_is_refused() {
    let dir = TempDir::new("lock");
    let data = dir.0.join("data");
    let data_s = data.to_str().unwrap();
    let mut node = start_on(&data, &[]);
    node.publish_ok("first");
    let seg = only_segment(&data);
    let before = fs::read(&seg).unwrap();

    let out = run(
        &[
            "--bind",
            "127.0.0.1",
            "--port",
            "0",
            "--secure-port",
            "0",
            "--data",
            data_s,
        ],
        Duration::from_secs(10),
    );
    let status = out
        .status
        .unwrap_or_else(|| panic!("the second node still runs: {out:?}"));
    assert!(!status.success(), "second node: {status:?}: {out:?}");
    let want = format!(
        "log directory {data_s} is in use by another watercooler (give each node its own --data)"
    );
    assert!(
        out.stderr.contains(&want),
        "want {want:?} in {:?}",
        out.stderr
    );
    assert!(!out.stdout.contains("listening"), "{:?}", out.stdout);
    assert_eq!(fs::read(&seg).unwrap(), before, "the refused node wrote");

    // The first one keeps serving and writing.
    node.publish_ok("still here");
    assert_eq!(texts(&messages(&node, "lobby")), ["first", "still here"]);
    let health = node.get("/healthz");
    assert_eq!(health.status, 200, "{health:?}");
    assert!(
        health.text().contains("\"log\":\"ok\""),
        "{}",
        health.text()
    );

    // kill -9 releases the lock: the next node takes the directory.
    node.restart();
    expect_loaded(&node, &data, 2, 1, 2);
    assert_eq!(texts(&messages(&node, "lobby")), ["first", "still here"]);
}

// ---------------------------------------------------------------------------
// 6. A cluster: the log, then the peer's replay
// ---------------------------------------------------------------------------

#[test]
fn cluster_member_restarts_from_its_log_and_the_peers_replay() {
    let dir = TempDir::new("mesh");
    let (m1, m2) = (Member::new("d1"), Member::new("d2"));
    let conf = dir.write("sys.conf", &conf_text(&[&m1, &m2], 1500, "durable-mesh"));
    let (data1, data2) = (dir.0.join("d1"), dir.0.join("d2"));
    let (d1, d2) = (data1.to_str().unwrap(), data2.to_str().unwrap());
    let mut n1 = Node::start_member(&m1.name, &conf, &["--data", d1]);
    let mut n2 = Node::start_member(&m2.name, &conf, &["--data", d2]);
    n1.wait_peers(&[&m2], LINK);
    n2.wait_peers(&[&m1], LINK);

    n1.publish_ok("a-0");
    n2.publish_ok("b-0");
    for n in [&n1, &n2] {
        wait_messages(n, "a-0 and b-0 on both", LINK, |m| m.len() == 2);
    }

    // (a) n2 dies; n1 goes on; n2 comes back from its log (a-0, b-0) and
    // gets the rest from n1's replay.
    n2.kill();
    for i in 1..4 {
        n1.publish_ok(&format!("a-{i}"));
    }
    n2.restart();
    expect_loaded(&n2, &data2, 2, 1, 2);
    let got = wait_messages(&n2, "n2 caught up", LINK, |m| m.len() >= 5);
    check_once_in_order(&got, &[("a", 0..4), ("b", 0..1)], "n2 after its restart");
    n2.wait_peers(&[&m1], LINK);
    thread::sleep(QUIET);
    let got = messages(&n2, "lobby");
    check_once_in_order(&got, &[("a", 0..4), ("b", 0..1)], "n2 a moment later");

    n2.publish_ok("b-1");
    let got = wait_messages(&n1, "b-1 on n1", LINK, |m| m.len() >= 6);
    check_once_in_order(&got, &[("a", 0..4), ("b", 0..2)], "n1");
    wait_messages(&n2, "b-1 on n2", LINK, |m| m.len() >= 6);

    // (b) Both stop and come back: each has every message in its own log,
    // once (its own and the peer's).
    stop(&mut n1);
    stop(&mut n2);
    n1.restart();
    n2.restart();
    for (n, data) in [(&n1, &data1), (&n2, &data2)] {
        expect_loaded(n, data, 6, 1, 6);
        let got = messages(n, "lobby");
        check_once_in_order(&got, &[("a", 0..4), ("b", 0..2)], "after both restarted");
    }
    n1.wait_peers(&[&m2], LINK);
    n2.wait_peers(&[&m1], LINK);
    n1.publish_ok("a-4");
    let got = wait_messages(&n2, "a-4 on n2", LINK, |m| m.len() >= 7);
    thread::sleep(QUIET);
    check_once_in_order(&got, &[("a", 0..5), ("b", 0..2)], "n2 at the end");
    let got = messages(&n1, "lobby");
    check_once_in_order(&got, &[("a", 0..5), ("b", 0..2)], "n1 at the end");
}

// ---------------------------------------------------------------------------
// 7. A full disk, and a read-only one
// ---------------------------------------------------------------------------

/// A file system mounted for one test, unmounted when dropped. Declare it
/// before the nodes that use it, so they are killed first.
struct Mounted {
    dir: PathBuf,
}

impl Mounted {
    /// `mount ARGS DIR`; `Err` says why not (not root, a container that
    /// forbids it, no loop device).
    fn mount(args: &[&str], dir: &Path) -> Result<Mounted, String> {
        fs::create_dir_all(dir).map_err(|e| format!("mkdir {dir:?}: {e}"))?;
        mount_cmd(args, dir)?;
        Ok(Mounted {
            dir: dir.to_path_buf(),
        })
    }

    /// A tmpfs with `options` (e.g. `size=256k`) on `dir`.
    fn tmpfs(dir: &Path, options: &str) -> Result<Mounted, String> {
        Mounted::mount(&["-t", "tmpfs", "-o", options, "tmpfs"], dir)
    }

    /// `mount -o remount,OPTS DIR`.
    fn remount(&self, opts: &str) -> Result<(), String> {
        mount_cmd(&["-o", &format!("remount,{opts}")], &self.dir)
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.dir)
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            // Something still holds it: detach it anyway, never leave it.
            let _ = Command::new("umount").arg("-l").arg(&self.dir).output();
        }
    }
}

fn mount_cmd(args: &[&str], dir: &Path) -> Result<(), String> {
    let out = Command::new("mount")
        .args(args)
        .arg(dir)
        .output()
        .map_err(|e| format!("cannot run mount: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "mount {args:?} {dir:?}: {} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Writes `path` until the file system is full; returns how much it wrote.
fn fill(path: &Path) -> u64 {
    let mut f = fs::File::create(path).unwrap_or_else(|e| panic!("create {path:?}: {e}"));
    let chunk = vec![0xa5u8; 4096];
    let mut n = 0u64;
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(k) => n += k as u64,
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("filling {path:?}: {e}"),
        }
    }
    n
}

/// A publish in the lobby with its own read timeout. `Ok(None)`: no answer
/// within it (the answer is held until the log can be written).
fn publish_within(addr: SocketAddr, text: &str, timeout: Duration) -> io::Result<Option<Response>> {
    let mut c = Conn::plain(addr)?;
    c.stream.set_read_timeout(Some(timeout))?;
    let host = c.host().to_string();
    c.send(&post_form_bytes(
        &host,
        "/publish",
        &form_message(text),
        &[],
    ))?;
    match c.read_response(false) {
        Ok(r) => Ok(Some(r)),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// The value of the metric line `name` (with its labels, if any).
fn metric(node: &Node, name: &str) -> f64 {
    let r = node.get("/metrics");
    assert_eq!(r.status, 200, "{r:?}");
    let text = r.text();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} in\n{text}"))
}

/// What publishes did while the log could not be written.
#[derive(Default, Debug)]
struct Refused {
    /// Texts answered 303.
    acked: Vec<String>,
    /// Texts sent but not answered in time (held): they may be stored.
    unanswered: Vec<String>,
    /// How many were refused 503.
    refused: usize,
}

/// Publishes `{tag}-{i}` (padded so a few fill a page) until `want_refused`
/// have been refused with 503 (checking its Retry-After); at most 200
/// tries in 10 s (a file system may take a moment to turn read-only).
fn publish_until_refused(node: &Node, tag: &str, want_refused: usize, out: &mut Refused) {
    let pad = "x".repeat(1500);
    let deadline = Instant::now() + Duration::from_secs(10);
    for i in 0..200 {
        if out.refused >= want_refused || Instant::now() >= deadline {
            break;
        }
        let text = format!("{tag}-{i} {pad}");
        match publish_within(node.http_addr(), &text, Duration::from_millis(1500)) {
            Ok(Some(r)) if r.status == 303 => out.acked.push(text),
            Ok(Some(r)) if r.status == 503 => {
                assert_eq!(r.header("retry-after"), Some("1"), "{r:?}");
                assert!(
                    r.text().contains("cannot store messages now"),
                    "{}",
                    r.text()
                );
                out.refused += 1;
            }
            Ok(Some(r)) => node.fail(&format!("publish {tag}-{i}"), format!("{r:?}")),
            Ok(None) => out.unanswered.push(text),
            Err(e) => node.fail(&format!("publish {tag}-{i}"), e),
        }
    }
    if out.refused < want_refused {
        node.fail(
            &format!("{want_refused} publishes refused 503"),
            format!(
                "{} answered 303, {} unanswered, {} refused",
                out.acked.len(),
                out.unanswered.len(),
                out.refused
            ),
        );
    }
}

/// While the log fails: `/healthz` 200 saying so, the metrics (`refused`:
/// every 503 for it so far), and the listener still open (it gets
/// heartbeats).
fn check_failing(node: &Node, l: &mut SseClient<TcpStream>, why: &str, refused: usize) {
    let h = node.get("/healthz");
    assert_eq!(h.status, 200, "{h:?}");
    let body = h.text();
    assert!(
        body.contains("\"log\":\"failing: ") && body.contains(why),
        "want failing: …{why}… in {body}"
    );
    assert_eq!(metric(node, "watercooler_log_ok"), 0.0);
    assert!(metric(node, "watercooler_log_commits_total{outcome=\"failed\"}") >= 1.0);
    assert_eq!(
        metric(node, "watercooler_publishes_unstored_total"),
        refused as f64
    );
    let before = l.comments.len();
    let beat = l.wait_until(Duration::from_secs(3), |s| s.comments.len() > before);
    assert!(
        beat && !l.closed,
        "the listener's stream went quiet or closed"
    );
}

/// Waits for the `n`th "publishing resumes" line, then checks the node
/// says all is well.
fn expect_resumed(node: &Node, n: usize) {
    let deadline = Instant::now() + LOGGED;
    while node.log_count("publishing resumes") < n {
        if Instant::now() >= deadline {
            node.fail("publishing resumes", "not logged within 5 s");
        }
        thread::sleep(Duration::from_millis(50));
    }
    let h = node.get("/healthz");
    assert!(h.text().contains("\"log\":\"ok\""), "{}", h.text());
    assert_eq!(metric(node, "watercooler_log_ok"), 1.0);
}

/// Reads `l` until `text` arrives; every text it gets must be in `allowed`.
fn expect_live(node: &Node, l: &mut SseClient<TcpStream>, text: &str, allowed: &HashSet<String>) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match l.next_event(left) {
            Some(e) if e.data == text => return,
            Some(e) => assert!(allowed.contains(&e.data), "listener got {:?}", e.data),
            None => node.fail(&format!("{text:?} on the listener"), "not within 5 s"),
        }
    }
}

#[test]
fn full_disk_refuses_publishes_until_it_has_room() {
    let dir = TempDir::new("full");
    let mnt = dir.0.join("mnt");
    let fs_guard = match Mounted::tmpfs(&mnt, "size=256k") {
        Ok(m) => m,
        Err(why) => {
            eprintln!("SKIPPED full_disk_refuses_publishes_until_it_has_room: {why}");
            return;
        }
    };
    let data = mnt.join("data");
    let mut node = start_on(&data, &["--backlog", "1000", "--heartbeat-ms", "300"]);
    let mut published: HashSet<String> = HashSet::new();
    let mut acked: Vec<String> = Vec::new();
    for i in 0..3 {
        let t = format!("pre-{i}");
        node.publish_ok(&t);
        published.insert(t.clone());
        acked.push(t);
    }
    let mut l = node.listen(&[]);
    assert_eq!(
        data_of(&read_until_quiet(&mut l)),
        ["pre-0", "pre-1", "pre-2"]
    );

    // The disk fills up. The segment's last page may take a message or
    // two more; then one publish's answer is held (its commit failed) and
    // the next ones are refused.
    let filler = mnt.join("filler");
    let filled = fill(&filler);
    assert!(filled > 0, "nothing written to fill {mnt:?}");
    let mut full = Refused::default();
    publish_until_refused(&node, "full", 3, &mut full);
    eprintln!(
        "disk full: {} answered 303, {} held, {} refused 503",
        full.acked.len(),
        full.unanswered.len(),
        full.refused
    );
    published.extend(full.acked.iter().cloned());
    published.extend(full.unanswered.iter().cloned());
    acked.extend(full.acked.iter().cloned());
    assert!(
        node.wait_log("log: cannot write to", LOGGED),
        "no error line\n{}",
        node.stderr_tail()
    );
    check_failing(&node, &mut l, "No space left on device", full.refused);
    assert_eq!(node.log_count("log: cannot write to"), 1, "one error line");

    // Room again: the retry (every second) commits and publishing resumes.
    fs::remove_file(&filler).unwrap();
    expect_resumed(&node, 1);
    node.publish_ok("after-full");
    published.insert("after-full".into());
    acked.push("after-full".into());
    expect_live(&node, &mut l, "after-full", &published);

    drop(l);

    // A read-only remount is not tried here: the kernel refuses it (EBUSY)
    // while a file is open for writing, and the node keeps its segment
    // open. See `file_system_turned_read_only_…` for EROFS.

    node.restart();
    check_after_restart(&node, &published, &acked);
    drop(node);
    drop(fs_guard);
}

/// After a restart: every message answered 303 is there, in the order
/// published; nothing is there twice; nothing there was never published.
fn check_after_restart(node: &Node, published: &HashSet<String>, acked: &[String]) {
    loaded_line(node);
    let msgs = messages(node, "lobby");
    let all = texts(&msgs);
    let mut seen = HashSet::new();
    for t in &all {
        let head: String = t.chars().take(40).collect();
        assert!(published.contains(*t), "never published: {head:?}…");
        assert!(seen.insert(*t), "twice: {head:?}…");
    }
    // Compared by their first word (`full-3`, not its padding).
    let short = |t: &str| t.split(' ').next().unwrap_or_default().to_string();
    let stored_acked: Vec<String> = all
        .iter()
        .filter(|t| acked.iter().any(|a| a == *t))
        .map(|t| short(t))
        .collect();
    let acked: Vec<String> = acked.iter().map(|t| short(t)).collect();
    assert_eq!(
        stored_acked, acked,
        "acknowledged messages after the restart"
    );
}

/// The block device mounted on `dir`, from /proc/self/mounts.
fn mounted_device(dir: &Path) -> Option<String> {
    let mounts = fs::read_to_string("/proc/self/mounts").ok()?;
    let dir = dir.to_str()?;
    mounts.lines().find_map(|l| {
        let mut f = l.split_whitespace();
        let (source, at) = (f.next()?, f.next()?);
        (at == dir).then(|| source.to_string())
    })
}

/// A file system the kernel turns read-only under a running node: ext4
/// with `errors=remount-ro` on a loop device, after an error (injected
/// through `/sys/fs/ext4/DEV/trigger_fs_error`). Publishes are refused 503
/// saying so, the commit is retried every second, listeners stay; after a
/// crash and the file system mounted again, every acknowledged message is
/// there. (A read-only remount by hand is refused while the node holds its
/// segment open for writing, so this is how a running node meets EROFS;
/// such a file system stays read-only until it is unmounted.) Skipped
/// where loop devices, mkfs.ext4 or the error trigger are missing.
#[test]
fn file_system_turned_read_only_refuses_publishes_and_keeps_what_was_acknowledged() {
    let skip = |why: String| {
        eprintln!("SKIPPED file_system_turned_read_only_…: {why}");
    };
    let dir = TempDir::new("ext4");
    let (img, mnt) = (dir.0.join("img"), dir.0.join("mnt"));
    let img_s = img.to_str().unwrap();
    if let Err(e) = fs::File::create(&img).and_then(|f| f.set_len(8 << 20)) {
        return skip(format!("image {img:?}: {e}"));
    }
    match Command::new("mkfs.ext4").args(["-q", "-F", img_s]).output() {
        Ok(o) if o.status.success() => {}
        Ok(o) => return skip(format!("mkfs.ext4: {}", String::from_utf8_lossy(&o.stderr))),
        Err(e) => return skip(format!("mkfs.ext4: {e}")),
    }
    let mount_args = ["-o", "loop,errors=remount-ro", img_s];
    let mut fs_guard = match Mounted::mount(&mount_args, &mnt) {
        Ok(m) => m,
        Err(why) => return skip(why),
    };
    let device = mounted_device(&mnt).unwrap_or_default();
    let name = device.rsplit('/').next().unwrap_or_default();
    let trigger = PathBuf::from(format!("/sys/fs/ext4/{name}/trigger_fs_error"));
    if name.is_empty() || !trigger.exists() {
        return skip(format!("no {trigger:?} for {device:?}"));
    }

    let data = mnt.join("data");
    let mut node = start_on(&data, &["--backlog", "1000", "--heartbeat-ms", "300"]);
    let mut published: HashSet<String> = HashSet::new();
    let mut acked: Vec<String> = Vec::new();
    for i in 0..3 {
        let t = format!("pre-{i}");
        node.publish_ok(&t);
        published.insert(t.clone());
        acked.push(t);
    }
    let mut l = node.listen(&[]);
    assert_eq!(read_until_quiet(&mut l).len(), 3);

    fs::write(&trigger, "watercooler durable test")
        .unwrap_or_else(|e| panic!("write {trigger:?}: {e}"));
    let mut ro = Refused::default();
    publish_until_refused(&node, "ro", 2, &mut ro);
    published.extend(ro.acked.iter().cloned());
    published.extend(ro.unanswered.iter().cloned());
    acked.extend(ro.acked.iter().cloned());
    assert!(
        node.wait_log("log: cannot write to", LOGGED),
        "no error line\n{}",
        node.stderr_tail()
    );
    check_failing(&node, &mut l, "Read-only file system", ro.refused);

    // Tried again every second, still failing, still one error line.
    let failed = "watercooler_log_commits_total{outcome=\"failed\"}";
    let before = metric(&node, failed);
    thread::sleep(Duration::from_millis(1300));
    assert!(metric(&node, failed) > before, "no retry within 1.3 s");
    assert_eq!(metric(&node, "watercooler_log_ok"), 0.0);
    assert_eq!(node.log_count("log: cannot write to"), 1, "one error line");
    drop(l);

    // A crash; the file system is mounted again (its journal replayed).
    node.kill();
    drop(fs_guard);
    fs_guard = Mounted::mount(&mount_args, &mnt).expect("mount the image again");
    node.restart();
    check_after_restart(&node, &published, &acked);
    node.publish_ok("after the remount");
    drop(node);
    drop(fs_guard);
}

/// A log directory on a file system mounted read-only: the node does not
/// start without its history; it says why in one line and exits non-zero.
#[test]
fn read_only_data_directory_at_start_is_one_clear_line() {
    let dir = TempDir::new("ro-start");
    let mnt = dir.0.join("mnt");
    let fs_guard = match Mounted::tmpfs(&mnt, "size=64k") {
        Ok(m) => m,
        Err(why) => {
            eprintln!("SKIPPED read_only_data_directory_at_start_is_one_clear_line: {why}");
            return;
        }
    };
    let data = mnt.join("data");
    fs::create_dir(&data).unwrap();
    fs_guard
        .remount("ro")
        .expect("remount read-only with no writer");
    let data_s = data.to_str().unwrap();
    let out = run(
        &[
            "--bind",
            "127.0.0.1",
            "--port",
            "0",
            "--secure-port",
            "0",
            "--data",
            data_s,
        ],
        Duration::from_secs(10),
    );
    let status = out
        .status
        .unwrap_or_else(|| panic!("still running: {out:?}"));
    assert!(!status.success(), "{status:?}: {out:?}");
    let lines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(lines.len(), 1, "{:?}", out.stderr);
    assert!(
        lines[0].contains(data_s) && lines[0].contains("Read-only file system"),
        "{:?}",
        lines[0]
    );
    assert!(!out.stdout.contains("listening"), "{:?}", out.stdout);
}
