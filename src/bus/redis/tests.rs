//! The Redis bus and its connections over streams in memory: what is sent
//! on connecting (AUTH, SELECT, PING, the epoch), a message into XADD and
//! out of the outbox once acknowledged, entries read into the rooms, the
//! first read without BLOCK and the next with it, an epoch that changed,
//! a full outbox, and replies that close the connection (garbage, a wrong
//! password, a reply nobody asked for).

use std::time::{Duration, Instant};

use mio::Token;

use super::client::RedisConn;
use super::node::{RedisBus, Role, MAX_OUTBOX};
use super::url::RedisUrl;
use crate::conn::mem::MemStream;
use crate::conn::transport::Transport;
use crate::conn::{Env, Ready, Step};
use crate::http::response::DateCache;
use crate::room::LOBBY;
use crate::service::{Config, Service};

struct Rig {
    service: Service,
    bus: RedisBus,
    scratch: Vec<u8>,
    date: DateCache,
    now: Instant,
}

impl Rig {
    fn new(url: &str) -> Rig {
        let now = Instant::now();
        let url = RedisUrl::parse(url).unwrap();
        Rig {
            service: Service::new("a", Config::for_tests(), now),
            bus: RedisBus::new(
                url,
                "a",
                10_000,
                4096,
                now + Duration::from_secs(60),
                7,
                now,
            ),
            scratch: vec![0; 4096],
            date: DateCache::new(),
            now,
        }
    }

    fn conn(&self, role: Role) -> RedisConn<MemStream> {
        let addr = "127.0.0.1:6379".parse().unwrap();
        RedisConn::dial(MemStream::default(), Transport::Plain, role, addr, self.now)
    }

    fn run(
        &mut self,
        conn: &mut RedisConn<MemStream>,
        f: impl FnOnce(&mut RedisConn<MemStream>, &mut Env, &mut RedisBus) -> Step,
    ) -> Step {
        let mut env = Env {
            now: self.now,
            token: Token(1),
            scratch: &mut self.scratch,
            service: &mut self.service,
            date: &mut self.date,
            more: false,
            hold: false,
        };
        f(conn, &mut env, &mut self.bus)
    }

    /// The server says `bytes`; returns the step and what we wrote.
    fn feed(&mut self, conn: &mut RedisConn<MemStream>, bytes: &[u8]) -> (Step, String) {
        conn.stream().send(bytes);
        let step = self.run(conn, |c, env, bus| c.ready(Ready::READ, env, bus));
        (step, conn.stream().take_written())
    }

    fn open(&mut self, conn: &mut RedisConn<MemStream>) -> String {
        let step = self.run(conn, |c, env, bus| c.ready(Ready::WRITE, env, bus));
        assert_eq!(step, Step::Keep);
        conn.stream().take_written()
    }

    fn publish(&mut self, text: &str) {
        let lobby = self.service.rooms.find(LOBBY).unwrap();
        self.service.rooms.publish(lobby, text, 1_000_000);
        self.bus.outgoing(&mut self.service, false);
    }
}

/// `*2\r\n$4\r\nPING\r\n…` as words, for asserting on what was sent
/// (XADD's `*` id reads as a header and is left out).
fn words(wire: &str) -> String {
    wire.split("\r\n")
        .filter(|l| !l.starts_with('*') && !l.starts_with('$') && !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn the_writer_logs_in_then_adds_each_message_until_acknowledged() {
    let mut rig = Rig::new("redis://:pw@h/3");
    rig.publish("early"); // Redis not there yet: it waits in the outbox
    let mut w = rig.conn(Role::Writer);
    let sent = words(&rig.open(&mut w));
    assert!(
        sent.starts_with("AUTH pw SELECT 3 PING XADD watercooler:messages MAXLEN ~ 10000 o "),
        "{sent}"
    );
    assert!(sent.ends_with("r lobby t early"), "{sent}");
    let (step, _) = rig.feed(&mut w, b"+OK\r\n+OK\r\n+PONG\r\n");
    assert_eq!(step, Step::Keep);
    assert!(!rig.bus.connected_both(), "the reader is not up yet");
    assert_eq!(rig.bus.outbox_len(), 1, "not acknowledged yet");
    rig.feed(&mut w, b"$15\r\n1700000000000-0\r\n");
    assert_eq!(rig.bus.outbox_len(), 0);
    rig.publish("later");
    let step = rig.run(&mut w, |c, env, bus| c.flush(env, bus));
    assert_eq!(step, Step::Keep);
    let sent = words(&w.stream().take_written());
    assert!(sent.starts_with("XADD watercooler:messages"), "{sent}");
    assert!(sent.ends_with("t later"), "{sent}");
}

#[test]
fn the_reader_reads_at_once_to_the_end_then_waits() {
    let mut rig = Rig::new("redis://h");
    let mut r = rig.conn(Role::Reader);
    let sent = words(&rig.open(&mut r));
    assert!(sent.starts_with("PING SET watercooler:epoch "), "{sent}");
    assert!(sent.ends_with(" NX GET watercooler:epoch"), "{sent}");
    let (_, sent) = rig.feed(&mut r, b"+PONG\r\n+OK\r\n$2\r\ne1\r\n");
    assert_eq!(
        words(&sent),
        "XREAD COUNT 500 STREAMS watercooler:messages 0-0"
    );
    // One entry from node b: into the room; then a read that waits.
    let entry = b"*1\r\n*2\r\n$20\r\nwatercooler:messages\r\n*1\r\n*2\r\n$3\r\n5-1\r\n*8\r\n\
$1\r\no\r\n$8\r\n0000000b\r\n$1\r\ns\r\n$2\r\n42\r\n$1\r\nr\r\n$5\r\nlobby\r\n$1\r\nt\r\n$2\r\nhi\r\n";
    let (step, sent) = rig.feed(&mut r, entry);
    assert_eq!(step, Step::Keep);
    assert_eq!(
        words(&sent),
        "XINFO STREAM watercooler:messages XREAD COUNT 500 BLOCK 2000 STREAMS watercooler:messages 5-1"
    );
    let texts: Vec<String> = rig
        .service
        .rooms
        .history()
        .map(|e| e.text.to_string())
        .collect();
    assert_eq!(texts, ["hi"]);
    assert!(!rig.bus.synced(rig.now), "the writer is not up");
    // The same entry again (a resend after a reconnect): not taken twice.
    rig.feed(&mut r, entry);
    assert_eq!(rig.service.rooms.len(), 1);
}

#[test]
fn a_changed_epoch_tells_listeners_and_reads_again_from_the_start() {
    let mut rig = Rig::new("redis://h");
    let mut r = rig.conn(Role::Reader);
    rig.open(&mut r);
    rig.feed(&mut r, b"+PONG\r\n+OK\r\n$2\r\ne1\r\n");
    rig.feed(&mut r, b"*-1\r\n");
    assert!(!rig.bus.take_missed());
    // Redis came back empty: a new connection finds another epoch.
    let mut again = rig.conn(Role::Reader);
    rig.open(&mut again);
    let (_, sent) = rig.feed(&mut again, b"+PONG\r\n+OK\r\n$2\r\ne2\r\n");
    assert!(rig.bus.take_missed(), "listeners are told");
    assert!(!rig.bus.take_missed(), "once");
    assert!(
        words(&sent).ends_with("STREAMS watercooler:messages 0-0"),
        "{sent}"
    );
}

#[test]
fn a_last_entry_gone_from_the_stream_is_a_gap() {
    let mut rig = Rig::new("redis://h");
    let mut r = rig.conn(Role::Reader);
    rig.open(&mut r);
    rig.feed(&mut r, b"+PONG\r\n+OK\r\n$2\r\ne1\r\n");
    let entry = b"*1\r\n*2\r\n$20\r\nwatercooler:messages\r\n*1\r\n*2\r\n$3\r\n9-0\r\n*2\r\n$1\r\nx\r\n$1\r\ny\r\n";
    rig.feed(&mut r, entry);
    let mut again = rig.conn(Role::Reader);
    rig.open(&mut again);
    let (_, sent) = rig.feed(&mut again, b"+PONG\r\n+OK\r\n$2\r\ne1\r\n");
    assert!(
        words(&sent).starts_with(
            "XRANGE watercooler:messages 9-0 9-0 XINFO STREAM watercooler:messages XREAD"
        ),
        "{sent}"
    );
    rig.feed(&mut again, b"*0\r\n");
    assert!(rig.bus.take_missed());
}

#[test]
fn garbage_a_wrong_password_or_an_unasked_reply_close_the_connection() {
    for (url, reply) in [
        ("redis://h", &b"!!!\r\n"[..]),
        ("redis://h", b"$999999999999\r\n"),
        (
            "redis://:bad@h",
            b"-WRONGPASS invalid username-password pair\r\n",
        ),
        ("redis://h", b"+PONG\r\n+OK\r\n+OK\r\n"),
    ] {
        let mut rig = Rig::new(url);
        let mut w = rig.conn(Role::Writer);
        rig.open(&mut w);
        let (step, _) = rig.feed(&mut w, reply);
        assert_eq!(step, Step::Close, "{url} {reply:?}");
    }
}

#[test]
fn a_full_outbox_refuses_publishes() {
    let mut rig = Rig::new("redis://h");
    for i in 0..MAX_OUTBOX {
        rig.publish(&format!("m{i}"));
    }
    assert_eq!(rig.bus.outbox_len(), MAX_OUTBOX);
    assert_eq!(rig.bus.outbox_room(), 0);
}

#[test]
fn a_reader_behind_the_trim_is_a_gap() {
    let mut rig = Rig::new("redis://h");
    let mut r = rig.conn(Role::Reader);
    rig.open(&mut r);
    rig.feed(&mut r, b"+PONG\r\n+OK\r\n$2\r\ne1\r\n");
    let entry = b"*1\r\n*2\r\n$20\r\nwatercooler:messages\r\n*1\r\n*2\r\n$3\r\n9-0\r\n*2\r\n$1\r\nx\r\n$1\r\ny\r\n";
    let (_, sent) = rig.feed(&mut r, entry);
    assert!(
        words(&sent).starts_with("XINFO STREAM watercooler:messages XREAD"),
        "{sent}"
    );
    // The oldest entry is still ours: nothing skipped.
    let ours = b"*4\r\n$6\r\nlength\r\n:5\r\n$11\r\nfirst-entry\r\n*2\r\n$3\r\n9-0\r\n*0\r\n";
    rig.feed(&mut r, ours);
    assert!(!rig.bus.take_missed());
    rig.feed(&mut r, b"*-1\r\n"); // the read timed out: read again
    let newer = b"*4\r\n$6\r\nlength\r\n:5\r\n$11\r\nfirst-entry\r\n*2\r\n$4\r\n12-0\r\n*0\r\n";
    rig.feed(&mut r, newer);
    assert!(rig.bus.take_missed(), "entries after ours were trimmed");
    // No stream at all (an error reply) is not a failure.
    rig.feed(&mut r, b"*-1\r\n");
    let (step, _) = rig.feed(&mut r, b"-ERR no such key\r\n");
    assert_eq!(step, Step::Keep);
}

/// At start, our messages newer than the newest of ours in the stream
/// (an outbox cut short by a stop; they came back from the log) go out.
#[test]
fn our_messages_the_stream_lacks_go_out_after_the_first_read() {
    let mut rig = Rig::new("redis://h");
    let lobby = rig.service.rooms.find(LOBBY).unwrap();
    let first = rig
        .service
        .rooms
        .publish(lobby, "reached", 1_000_000)
        .unwrap();
    rig.service.rooms.publish(lobby, "never reached", 2_000_000);
    rig.service.rooms.take_peer_outbox(); // as after a restart: in history only
    let mut r = rig.conn(Role::Reader);
    rig.open(&mut r);
    rig.feed(&mut r, b"+PONG\r\n+OK\r\n$2\r\ne1\r\n");
    let tag = format!("{:08x}", first.origin);
    let seq = first.seq.to_string();
    let entry = format!(
        "*1\r\n*2\r\n$20\r\nwatercooler:messages\r\n*1\r\n*2\r\n$3\r\n7-0\r\n*8\r\n$1\r\no\r\n$8\r\n{tag}\r\n$1\r\ns\r\n${}\r\n{seq}\r\n$1\r\nr\r\n$5\r\nlobby\r\n$1\r\nt\r\n$7\r\nreached\r\n",
        seq.len()
    );
    rig.feed(&mut r, entry.as_bytes());
    assert_eq!(rig.bus.outbox_len(), 1, "only the one the stream lacks");
}
