//! The Redis bus, node side (`bus = redis://…` in the cluster file): what
//! goes to Redis and what comes back, over two connections (`client`).
//!
//! - The **writer** adds our messages to one Redis Stream, in order
//!   (`XADD … MAXLEN ~ N * o TAG s SEQ r ROOM t TEXT`), and once a second
//!   says who we are and how many listen (a sorted set of nodes scored by
//!   when they expire, a hash of their counts), reading everyone's back.
//!   A message stays in the outbox until its XADD is acknowledged; after a
//!   reconnect every unacknowledged one is sent again (the others drop the
//!   copy: they accept a message only when its origin's sequence is newer).
//!   While Redis is away the outbox holds at most `MAX_OUTBOX`; beyond,
//!   publishes are refused 503 (`outbox_room`), never taken and lost.
//! - The **reader** reads the stream from the last id it has seen (`XREAD
//!   BLOCK`), so what was added while it was away still arrives, exactly
//!   once and in each origin's order (the rooms drop what they have).
//!   From `0-0` at start: a node joining gets the recent history.
//!
//! Lost data is found, not papered over: an epoch key (set once, `NX`)
//! that changes means Redis restarted empty or was flushed, and a last id
//! no longer in the stream means entries we had not read may be gone
//! (trimmed, or a replica behind), and so does an oldest entry newer than
//! our last one before a read (we fell behind the trim). Either way the
//! listeners get `event: missed`; when the epoch changed, the reader starts
//! again from the stream's beginning and we add our own messages still in
//! memory again, for the nodes that lost them. The reading side (where to
//! start, the entries, the gaps) is `node/reader.rs`.

use std::collections::VecDeque;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mio::Token;

use super::resp::{self, Value};
use super::stream::{self, StreamId};
use super::url::RedisUrl;
use crate::conn::Env;
use crate::room::{tag_of, Entry, Tag};
use crate::service::presence::Peer;
use crate::service::Service;
use crate::{debug, info, warn};

mod reader;

/// How long one XREAD waits for new entries before it is sent again.
pub const BLOCK: Duration = Duration::from_secs(2);
/// Our messages held while Redis is away; beyond, publishes get 503.
pub const MAX_OUTBOX: usize = 10_000;
const STREAM: &[u8] = b"watercooler:messages";
const EPOCH: &[u8] = b"watercooler:epoch";
const NODES: &[u8] = b"watercooler:nodes";
const COUNTS: &[u8] = b"watercooler:listeners";
/// A node that has not refreshed its entry for this long is gone.
const PRESENCE_TTL_MS: u64 = 5_000;
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Writer,
    Reader,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Writer => "writer",
            Role::Reader => "reader",
        }
    }
}

/// What a reply answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    Auth,
    Select,
    /// The PING after AUTH and SELECT: the connection is usable.
    Ping,
    EpochSet,
    EpochGet,
    /// `XRANGE STREAM last last`: is our last entry still there?
    Still,
    /// `XINFO STREAM` before each read: were entries after our last one
    /// trimmed before we read them (we fell more than MAXLEN behind)?
    Trimmed,
    Xread,
    Xadd,
    /// The live nodes (ZRANGE).
    Alive,
    /// Every node's counts (HGETALL).
    Counts,
    /// The stream's newest entry (XREVRANGE + - COUNT 1): how far behind
    /// the reader is.
    Newest,
    /// Anything else: only an error reply matters.
    Done,
}

#[derive(Default)]
struct Link {
    token: Option<Token>,
    up: bool,
    dial_at: Option<Instant>,
    backoff: Duration,
    /// A failure was logged and no success since (one line per streak).
    failing: bool,
    queue: Vec<(Expect, Vec<u8>)>,
}

impl Link {
    fn new(now: Instant) -> Link {
        Link {
            dial_at: Some(now),
            backoff: BACKOFF_MIN,
            ..Link::default()
        }
    }
}

#[derive(Debug, Default, Clone)]
pub struct RedisStats {
    pub read: u64,
    pub added: u64,
    pub reconnects: u64,
    pub data_lost: u64,
    /// The stream's newest entry is this much newer than the last one read
    /// (by their ids' milliseconds), as of the last presence tick.
    pub behind_ms: u64,
}

pub struct RedisBus {
    pub url: RedisUrl,
    /// For `rediss://`: the client configuration (its CA roots).
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    me: String,
    tag: Tag,
    maxlen: usize,
    read_count: usize,
    writer: Link,
    reader: Link,
    /// Our messages not yet acknowledged, oldest first; the first `sent`
    /// of them are on the writer awaiting their XADD reply.
    outbox: VecDeque<Rc<Entry>>,
    sent: usize,
    last_id: StreamId,
    epoch: Option<Vec<u8>>,
    /// The reader has read to the end of the stream once.
    caught_up: bool,
    /// The newest of our own messages found in the stream.
    own_seen: u64,
    pub sync_until: Instant,
    alive: Vec<String>,
    peers: Vec<Peer>,
    /// Listeners are to be told some messages were missed.
    missed: bool,
    /// Our messages in memory are to be added again (Redis lost data).
    resync: bool,
    rng: u64,
    pub stats: RedisStats,
}

impl RedisBus {
    /// `maxlen`: entries the stream keeps (about); `max_message`: the
    /// longest text, which bounds how many entries one XREAD may ask for.
    pub fn new(
        url: RedisUrl,
        me: &str,
        maxlen: usize,
        max_message: usize,
        sync_until: Instant,
        seed: u64,
        now: Instant,
    ) -> RedisBus {
        let per_entry = max_message + 512;
        let read_count = (resp::MAX_TOTAL / 2 / per_entry).clamp(1, 500);
        RedisBus {
            tls: None,
            url,
            me: me.to_string(),
            tag: tag_of(me),
            maxlen,
            read_count,
            writer: Link::new(now),
            reader: Link::new(now),
            outbox: VecDeque::new(),
            sent: 0,
            last_id: StreamId::ZERO,
            epoch: None,
            caught_up: false,
            own_seen: 0,
            sync_until,
            alive: Vec::new(),
            peers: Vec::new(),
            missed: false,
            resync: false,
            rng: seed | 1,
            stats: RedisStats::default(),
        }
    }

    fn link(&mut self, role: Role) -> &mut Link {
        match role {
            Role::Writer => &mut self.writer,
            Role::Reader => &mut self.reader,
        }
    }

    pub fn connected_both(&self) -> bool {
        self.writer.up && self.reader.up
    }

    pub fn outbox_len(&self) -> usize {
        self.outbox.len()
    }

    /// How many more of our messages the outbox takes: the service
    /// refuses a publish once as many were published since the last turn.
    pub fn outbox_room(&self) -> usize {
        MAX_OUTBOX.saturating_sub(self.outbox.len())
    }

    /// The node may serve: it is connected and has read the stream to its
    /// end once, or the wait at start is over.
    pub fn synced(&self, now: Instant) -> bool {
        now >= self.sync_until || (self.writer.up && self.caught_up)
    }

    pub fn next_dial(&self) -> Option<Instant> {
        let at = |l: &Link| l.dial_at.filter(|_| l.token.is_none());
        match (at(&self.writer), at(&self.reader)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The connections to open now.
    pub fn due(&mut self, now: Instant) -> Vec<Role> {
        let mut out = Vec::new();
        for role in [Role::Writer, Role::Reader] {
            let l = self.link(role);
            if l.token.is_none() && l.dial_at.is_some_and(|at| at <= now) {
                l.dial_at = None;
                out.push(role);
            }
        }
        out
    }

    /// A dial is under way on `token`, or could not start (`None`).
    pub fn dialing(&mut self, role: Role, token: Option<Token>, why: Option<&str>, now: Instant) {
        match token {
            Some(t) => self.link(role).token = Some(t),
            None => {
                self.failed(role, why.unwrap_or("cannot dial"));
                self.retry(role, now);
            }
        }
    }

    /// One of our connections is gone (after `failed`, or cut by the loop).
    pub fn closed(&mut self, token: Token, now: Instant) {
        for role in [Role::Writer, Role::Reader] {
            if self.link(role).token == Some(token) {
                self.link(role).token = None;
                self.link(role).up = false;
                self.link(role).queue.clear();
                if role == Role::Writer {
                    self.sent = 0;
                }
                self.retry(role, now);
            }
        }
    }

    fn retry(&mut self, role: Role, now: Instant) {
        let l = match role {
            Role::Writer => &mut self.writer,
            Role::Reader => &mut self.reader,
        };
        l.dial_at = Some(now + crate::bus::jittered(&mut self.rng, l.backoff));
        l.backoff = (l.backoff * 2).min(BACKOFF_MAX);
        self.stats.reconnects += 1;
    }

    /// A connection failed: say why once per streak (then at debug).
    pub fn failed(&mut self, role: Role, why: &str) {
        let outbox = self.outbox.len();
        if role == Role::Writer {
            // Without Redis this node sees no one: the page says so.
            self.peers.clear();
        }
        let l = self.link(role);
        l.up = false;
        if l.failing {
            debug!("redis {}: {why}", role.name());
        } else {
            l.failing = true;
            warn!(
                "redis {}: {why}; retrying (the node serves its own listeners; {outbox} messages wait)",
                role.name()
            );
        }
    }

    /// The connection is open: log in, pick the database, then per role.
    pub fn connected(&mut self, role: Role) {
        let mut q = Vec::new();
        if let Some(pass) = &self.url.password {
            match &self.url.user {
                Some(user) => q.push((
                    Expect::Auth,
                    cmd(&[b"AUTH", user.as_bytes(), pass.as_bytes()]),
                )),
                None => q.push((Expect::Auth, cmd(&[b"AUTH", pass.as_bytes()]))),
            }
        }
        if self.url.db != 0 {
            q.push((
                Expect::Select,
                cmd(&[b"SELECT", self.url.db.to_string().as_bytes()]),
            ));
        }
        q.push((Expect::Ping, cmd(&[b"PING"])));
        if role == Role::Reader {
            let mine = format!("{:016x}", self.rng.rotate_left(17) ^ now_ms());
            q.push((
                Expect::EpochSet,
                cmd(&[b"SET", EPOCH, mine.as_bytes(), b"NX"]),
            ));
            q.push((Expect::EpochGet, cmd(&[b"GET", EPOCH])));
        }
        self.link(role).queue = q;
        if role == Role::Writer {
            self.sent = 0;
            self.queue_xadds();
        }
    }

    /// What `role`'s connection is to write now.
    pub fn take_commands(&mut self, role: Role) -> Vec<(Expect, Vec<u8>)> {
        std::mem::take(&mut self.link(role).queue)
    }

    /// Tokens whose connection has commands waiting.
    pub fn to_flush(&self) -> Vec<Token> {
        [&self.writer, &self.reader]
            .iter()
            .filter(|l| !l.queue.is_empty())
            .filter_map(|l| l.token)
            .collect()
    }

    /// Every message not yet sent goes on the writer (once it is usable).
    fn queue_xadds(&mut self) {
        let maxlen = self.maxlen.to_string();
        while self.sent < self.outbox.len() {
            let Some(e) = self.outbox.get(self.sent) else {
                break;
            };
            let tag = format!("{:08x}", e.origin);
            let seq = e.seq.to_string();
            let c = cmd(&[
                b"XADD",
                STREAM,
                b"MAXLEN",
                b"~",
                maxlen.as_bytes(),
                b"*",
                b"o",
                tag.as_bytes(),
                b"s",
                seq.as_bytes(),
                b"r",
                e.room.as_bytes(),
                b"t",
                e.text.as_bytes(),
            ]);
            self.writer.queue.push((Expect::Xadd, c));
            self.sent += 1;
        }
    }

    /// After a turn: our new messages into the outbox (and onto the writer
    /// when it is up); on the presence tick, our counts and everyone's.
    pub fn outgoing(&mut self, service: &mut Service, presence_tick: bool) {
        if std::mem::take(&mut self.resync) {
            let tag = self.tag;
            let mine: Vec<Rc<Entry>> = service
                .rooms
                .history()
                .filter(|e| e.origin == tag)
                .cloned()
                .collect();
            // The newest that fit: the outbox stays bounded.
            let room = MAX_OUTBOX.saturating_sub(self.outbox.len());
            let skip = mine.len().saturating_sub(room);
            self.outbox.extend(mine.into_iter().skip(skip));
        }
        self.outbox.extend(service.rooms.take_peer_outbox());
        if !self.writer.up {
            return;
        }
        self.queue_xadds();
        if presence_tick {
            let p = &service.presence;
            let mut counts = p.listeners.to_string();
            for (room, n) in &p.rooms {
                counts.push_str(&format!(" {room}={n}"));
            }
            let now = now_ms();
            let until = (now + PRESENCE_TTL_MS).to_string();
            let q = &mut self.writer.queue;
            q.push((
                Expect::Done,
                cmd(&[b"ZADD", NODES, until.as_bytes(), self.me.as_bytes()]),
            ));
            q.push((
                Expect::Done,
                cmd(&[b"HSET", COUNTS, self.me.as_bytes(), counts.as_bytes()]),
            ));
            let dead = now.to_string();
            q.push((
                Expect::Done,
                cmd(&[b"ZREMRANGEBYSCORE", NODES, b"-inf", dead.as_bytes()]),
            ));
            q.push((Expect::Alive, cmd(&[b"ZRANGE", NODES, b"0", b"-1"])));
            q.push((Expect::Counts, cmd(&[b"HGETALL", COUNTS])));
            q.push((
                Expect::Newest,
                cmd(&[b"XREVRANGE", STREAM, b"+", b"-", b"COUNT", b"1"]),
            ));
        }
    }

    /// Listeners are to get `event: missed` (once).
    pub fn take_missed(&mut self) -> bool {
        std::mem::take(&mut self.missed)
    }

    pub fn peers(&self) -> Vec<Peer> {
        self.peers.clone()
    }

    /// A reply was over the decoder's bound: for the reader, ask for fewer
    /// entries next time (other nodes may send longer messages than ours).
    pub fn reply_too_large(&mut self, role: Role) {
        if role == Role::Reader && self.read_count > 1 {
            self.read_count /= 2;
            warn!(
                "redis reader: a reply over the bound; reading {} entries at a time",
                self.read_count
            );
        }
    }

    /// One reply on `role`'s connection. `Err` closes that connection.
    pub fn reply(
        &mut self,
        role: Role,
        expect: Expect,
        value: Value,
        env: &mut Env,
    ) -> Result<(), String> {
        if let (Expect::Trimmed, Value::Error(_)) = (expect, &value) {
            return Ok(()); // no stream yet: nothing was trimmed
        }
        if let Value::Error(e) = &value {
            return Err(match expect {
                Expect::Auth => format!("Redis refused the password: {e}"),
                Expect::Select => format!("Redis refused the database: {e}"),
                other => format!("{other:?} failed: {e}"),
            });
        }
        match expect {
            Expect::Auth | Expect::Select | Expect::EpochSet | Expect::Done => {}
            Expect::Ping => {
                let l = self.link(role);
                l.up = true;
                l.backoff = BACKOFF_MIN;
                let again = std::mem::take(&mut l.failing);
                info!(
                    "redis {}: {} {}",
                    role.name(),
                    if again {
                        "connected again to"
                    } else {
                        "connected to"
                    },
                    self.url
                );
            }
            Expect::EpochGet | Expect::Still | Expect::Trimmed | Expect::Xread => {
                self.read_reply(expect, value, env)?;
            }
            Expect::Xadd => {
                stream::xadd(value).map_err(|e| e.to_string())?;
                if self.sent > 0 {
                    self.outbox.pop_front();
                    self.sent -= 1;
                    self.stats.added += 1;
                }
            }
            Expect::Newest => {
                let newest = stream::xrange(value).map_err(|e| e.to_string())?;
                self.stats.behind_ms = newest
                    .first()
                    .map_or(0, |e| e.id.ms.saturating_sub(self.last_id.ms));
            }
            Expect::Alive => {
                self.alive = strings(value);
            }
            Expect::Counts => {
                let flat = strings(value);
                let mut peers = Vec::new();
                for pair in flat.chunks(2) {
                    let [name, counts] = pair else { continue };
                    if !self.alive.contains(name) {
                        self.writer
                            .queue
                            .push((Expect::Done, cmd(&[b"HDEL", COUNTS, name.as_bytes()])));
                        continue;
                    }
                    if *name != self.me {
                        peers.push(parse_counts(name, counts));
                    }
                }
                peers.sort();
                self.peers = peers;
            }
        }
        Ok(())
    }

    pub fn log_serving(&self) {
        info!(
            "serving HTTP: Redis {} ({} other nodes seen)",
            if self.connected_both() {
                "connected"
            } else {
                "not connected yet"
            },
            self.peers.len()
        );
    }
}

fn cmd(args: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    resp::command(args, &mut out);
    out
}

/// An array of bulk strings as text (anything else is left out).
fn strings(value: Value) -> Vec<String> {
    let Value::Array(Some(items)) = value else {
        return Vec::new();
    };
    items
        .into_iter()
        .filter_map(|v| match v {
            Value::Bulk(Some(b)) => String::from_utf8(b).ok(),
            _ => None,
        })
        .collect()
}

/// "N room=n room=n" as a peer.
fn parse_counts(name: &str, counts: &str) -> Peer {
    let mut parts = counts.split(' ');
    let listeners = parts.next().and_then(|n| n.parse().ok()).unwrap_or(0);
    let rooms = parts
        .filter_map(|p| {
            let (room, n) = p.split_once('=')?;
            Some((room.to_string(), n.parse().ok()?))
        })
        .take(crate::service::TOLD_ROOMS)
        .collect();
    Peer {
        name: name.to_string(),
        listeners,
        rooms,
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}
