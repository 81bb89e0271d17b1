//! What requests mean and do, whichever protocol carried them: the pages and
//! static files, publishing in a room, opening a stream on one or more
//! rooms, presence, health and metrics. A connection (HTTP/1.1 in
//! `conn::http1`, HTTP/2 in `conn::h2`) parses a request into
//! `http::Request`, calls `handle`, and writes the `Answer` its own way; a
//! listener is a (connection, stream) pair, so one connection can carry many
//! streams. After each loop turn the reactor takes what the rooms accepted
//! (`take_outbox`, by room) and what the node-level ticks made (heartbeat,
//! presence) and delivers each to the listeners it is for. No sockets here.

pub mod assets;
pub mod durable;
pub mod health;
pub mod limit;
pub mod listeners;
pub mod presence;
pub mod routes;
pub mod stats;

use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::http::{Method, Request, Response};
use crate::room::{self, RoomId, Rooms, LOBBY};
use crate::sse;
use assets::Assets;
use durable::Durable;
use health::Phase;
use listeners::{Listener, ListenerKey, Listeners};
use presence::{json_string, Peer, Presence};
use routes::{Route, Site};
use stats::Stats;

/// The reconnect delay a new stream suggests to its browser.
const RETRY_MS: u64 = 2000;
/// The reconnect delay hinted to browsers when the node shuts down.
pub const DRAIN_RETRY_MS: u64 = 1000;
/// The pages' policy: their own scripts, styles and images only (no inline
/// script), and no framing by another site.
const CSP: &str = "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";
/// A resume that needs what this node no longer has, or never had.
const MISSED_OLD: &str =
    "some messages were missed: they are older than this node's history or it never had them";
/// The bus lost messages (Redis restarted empty, or trimmed what a node had
/// not read yet).
const MISSED_BUS: &str =
    "some messages were missed: the cluster's message bus lost some; what follows is live";

/// What a presence broadcast may cost per stream, in time between them.
const PRESENCE_COST: Duration = Duration::from_micros(50);

/// Rooms listed by `GET /rooms`.
const LISTED_ROOMS: usize = 200;
/// A node tells the others about this many of its busiest rooms.
pub const TOLD_ROOMS: usize = 64;

/// What the service needs from the command line.
#[derive(Debug, Clone)]
pub struct Config {
    pub max_message: usize,
    pub request_timeout: Duration,
    pub idle_timeout: Duration,
    pub rooms: room::Limits,
    /// Messages per room a new stream (no `Last-Event-ID`) gets first.
    pub backlog: usize,
    /// Publishes per second per client, and at once (0: no limit).
    pub publish_rate: u32,
    pub publish_burst: u32,
    /// A reverse proxy whose `X-Forwarded-For` names the client.
    pub trust_proxy: Option<std::net::IpAddr>,
    /// Tell browsers to use HTTPS only (`Strict-Transport-Security` on the
    /// secure port): set when a real certificate is given (`--cert`).
    pub hsts: bool,
}

impl Config {
    /// Small limits for unit tests.
    #[cfg(test)]
    pub fn for_tests() -> Config {
        Config {
            max_message: 64,
            request_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            rooms: room::Limits {
                history: 100,
                max_rooms: 8,
                max_bytes: 1 << 20,
                idle_micros: 600_000_000,
            },
            backlog: 0,
            publish_rate: 0,
            publish_burst: 20,
            trust_proxy: None,
            hsts: false,
        }
    }
}

/// What a request gets.
pub enum Answer {
    Respond(Response),
    /// A stream is open and listening (`key` leaves it). `first` is what it
    /// sends before anything else (retry hint, missed signal, presence),
    /// `replay` the messages it resumes with, shared with the history; with
    /// `mark`, each of them goes after it (`event: backlog`: the earlier
    /// conversation a new stream is shown, not a new message).
    Stream {
        key: ListenerKey,
        first: Vec<u8>,
        replay: Vec<Rc<[u8]>>,
        mark: Option<Rc<[u8]>>,
    },
}

pub struct Service {
    pub rooms: Rooms,
    pub listeners: Listeners,
    pub assets: Assets,
    pub stats: Stats,
    pub presence: Presence,
    pub phase: Phase,
    pub started: Instant,
    pub config: Config,
    limiter: limit::Limiter,
    /// The history log (`--data`); `None`: memory only.
    pub durable: Option<Durable>,
    /// What the bus says of itself (connected, outbox, and why a publish
    /// must be refused now); set by the reactor after each turn.
    pub bus: Option<crate::bus::BusStatus>,
    /// The last request's answer may leave only after the turn's commit.
    answer_waits: bool,
    heartbeat: Rc<[u8]>,
    /// `event: backlog`, put before each message of a new stream's backlog.
    backlog_mark: Rc<[u8]>,
    /// No message went out since the last heartbeat tick.
    quiet: bool,
    /// When presence was last broadcast, and whether a change waits for
    /// the next one (see `refresh_presence`).
    presence_sent: Option<Instant>,
    presence_owed: bool,
}

/// Microseconds since the epoch: message sequences and room activity.
pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as u64
}

impl Service {
    pub fn new(name: &str, config: Config, now: Instant) -> Service {
        let mut heartbeat = Vec::new();
        sse::comment(&mut heartbeat, "heartbeat");
        Service {
            rooms: Rooms::new(name, config.rooms),
            listeners: Listeners::default(),
            assets: Assets::new(presence::node_of(name)),
            stats: Stats::default(),
            presence: Presence {
                node: name.to_string(),
                ..Presence::default()
            },
            phase: Phase::Starting,
            started: now,
            limiter: limit::Limiter::new(config.publish_rate, config.publish_burst),
            config,
            durable: None,
            bus: None,
            answer_waits: false,
            heartbeat: heartbeat.into(),
            backlog_mark: Rc::from(&b"event: backlog\n"[..]),
            quiet: true,
            presence_sent: None,
            presence_owed: false,
        }
    }

    /// Opens the history log in `dir` and loads it (before serving).
    pub fn open_log(
        &mut self,
        dir: &std::path::Path,
        fsync: crate::store::log::Fsync,
        now: Instant,
    ) -> Result<(), String> {
        let history = self.config.rooms.history;
        self.durable = Some(Durable::open(dir, fsync, history, &mut self.rooms, now)?);
        Ok(())
    }

    /// True once after a request whose answer must wait for the turn's
    /// commit (a publish under `--fsync batch` or `off`): the connection
    /// holds its output until the reactor's `commit` lets it go.
    pub fn take_answer_waits(&mut self) -> bool {
        std::mem::take(&mut self.answer_waits)
    }

    /// The end of a turn: what the rooms accepted goes into the log, which
    /// commits. True when nothing waits (held answers may go).
    pub fn commit(&mut self, now: Instant) -> bool {
        match &mut self.durable {
            None => true,
            Some(d) => d.commit(&self.rooms.take_unstored(), now),
        }
    }

    /// The most bytes a request body may have.
    pub fn max_body(&self) -> usize {
        routes::max_body(self.config.max_message)
    }

    /// True while the node waits for its cluster and `req` is one that must
    /// wait too (all but health and metrics): the connection keeps it and
    /// asks again once the node serves.
    pub fn holds(&self, req: &Request) -> bool {
        self.phase == Phase::Starting && !routes::answered_while_starting(&req.path)
    }

    pub fn draining(&self) -> bool {
        self.phase == Phase::Draining
    }

    /// Carries out one complete request. `who` is where a stream would go.
    pub fn handle(&mut self, req: &Request, body: &[u8], who: Listener, now: Instant) -> Answer {
        let site = Site {
            assets: &self.assets,
            max_message: self.config.max_message,
        };
        let resp = match routes::route(req, body, &site) {
            Route::Respond(resp) => resp,
            Route::Page(room) => Response::new(200, "text/html; charset=utf-8", self.page(&room)),
            Route::Publish { room, text } => match self.client_of(req) {
                Some(client) => match self.limiter.take(client, now) {
                    Ok(()) => self.publish(&room, &text, now),
                    Err(wait) => {
                        self.stats.publishes_limited += 1;
                        let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
                        Response::error(429, "too many messages from this address: wait a moment")
                            .with_header("retry-after", secs.to_string())
                    }
                },
                None => self.publish(&room, &text, now),
            },
            Route::Messages(room) => {
                Response::new(200, "application/json", self.messages_json(&room))
                    .with_header("cache-control", "no-store")
            }
            Route::Cluster => {
                let presence = Presence {
                    listeners: self.listeners.len(),
                    ..self.presence.clone()
                };
                Response::new(200, "application/json", presence.json())
            }
            Route::Rooms => Response::new(200, "application/json", self.rooms_json())
                .with_header("cache-control", "no-store"),
            Route::Health | Route::Metrics => {
                let snap = health::Snapshot {
                    phase: self.phase,
                    uptime: now.saturating_duration_since(self.started),
                    presence: &self.presence,
                    local_listeners: self.listeners.len(),
                    stats: &self.stats,
                    rooms: &self.rooms,
                    durable: self.durable.as_ref(),
                    bus: self.bus.as_ref(),
                };
                let resp = if req.path == "/healthz" {
                    let (status, body) = health::healthz(&snap);
                    Response::new(status, "application/json", body)
                } else {
                    Response::new(
                        200,
                        "text/plain; version=0.0.4; charset=utf-8",
                        health::metrics(&snap),
                    )
                };
                resp.with_header("cache-control", "no-store")
            }
            Route::Listen { .. } if req.method == Method::Head => stream_head(),
            // Its streams are ending: a new one would wait out the drain.
            Route::Listen { .. } if self.phase == Phase::Draining => {
                Response::error(503, "the node is shutting down").with_header("retry-after", "1")
            }
            Route::Listen { rooms, last_id } => {
                match self.listen(&rooms, last_id.as_deref(), who) {
                    Ok(answer) => return answer,
                    Err(resp) => resp,
                }
            }
        };
        self.stats.count_status(resp.status);
        Answer::Respond(self.secure_headers(resp, req.secure))
    }

    /// A room's page, with its last `--backlog` messages (at least 50)
    /// rendered in it.
    fn page(&self, room: &str) -> Vec<u8> {
        let recent = match self.rooms.find(room) {
            Some(id) => self.rooms.latest(id, self.config.backlog.max(50)),
            None => Vec::new(),
        };
        let mut names: Vec<(room::Tag, &str)> = vec![(self.rooms.tag, &self.presence.node)];
        for p in &self.presence.peers {
            names.push((room::tag_of(&p.name), &p.name));
        }
        self.assets.page(room, &recent, &names)
    }

    /// What every answer says about itself: no sniffing, no referrer; a
    /// page runs only its own files and is never framed by another site;
    /// with a real certificate, HTTPS only from now on.
    fn secure_headers(&self, resp: Response, secure: bool) -> Response {
        let page = resp
            .headers
            .iter()
            .any(|(k, v)| *k == "content-type" && v.starts_with("text/html"));
        let mut resp = resp
            .with_header("x-content-type-options", "nosniff")
            .with_header("referrer-policy", "no-referrer");
        if page {
            resp = resp.with_header("content-security-policy", CSP);
        }
        if secure && self.config.hsts {
            resp = resp.with_header("strict-transport-security", "max-age=31536000");
        }
        resp
    }

    /// The client a publish is counted against: the connection's peer, or
    /// the last address the trusted proxy added to `X-Forwarded-For`.
    fn client_of(&self, req: &Request) -> Option<std::net::IpAddr> {
        let peer = req.client?;
        if Some(peer) != self.config.trust_proxy {
            return Some(peer);
        }
        let forwarded = req.forwarded_for.as_deref().unwrap_or("");
        let last = forwarded.rsplit(',').next().map(str::trim).unwrap_or("");
        Some(last.parse().unwrap_or(peer))
    }

    fn publish(&mut self, room: &str, text: &str, now: Instant) -> Response {
        if self.phase == Phase::Draining {
            // Its listeners' streams have ended: the message would reach
            // no one here. The client retries on another node.
            return Response::error(503, "the node is shutting down")
                .with_header("retry-after", "1");
        }
        if let Some(why) = self.durable.as_ref().and_then(Durable::failing) {
            self.stats.publishes_unstored += 1;
            return Response::error(
                503,
                &format!("this node cannot store messages now ({why}); try again soon"),
            )
            .with_header("retry-after", durable::RETRY.as_secs().to_string());
        }
        let room_left = self.bus.as_ref().and_then(|b| b.outbox_room);
        if room_left.is_some_and(|left| self.rooms.unsent() >= left) {
            self.stats.publishes_unsent += 1;
            return Response::error(
                503,
                "the cluster's bus (Redis) is unreachable and this node holds as many messages for it as it may; try again soon",
            )
            .with_header("retry-after", "5");
        }
        let micros = now_micros();
        let Ok(id) = self.rooms.open(room, micros) else {
            return too_many_rooms();
        };
        let text = sse::normalize(text);
        self.rooms.publish(id, &text, micros);
        self.stats.published_local += 1;
        if let Some(d) = &mut self.durable {
            let stored = d.commits_each() && d.commit(&self.rooms.take_unstored(), now);
            self.answer_waits = !stored;
        }
        let page = if room == LOBBY {
            "/".to_string()
        } else {
            format!("/r/{room}")
        };
        Response::error(303, "published").with_header("location", page)
    }

    fn listen(
        &mut self,
        names: &[String],
        last_id: Option<&str>,
        who: Listener,
    ) -> Result<Answer, Response> {
        let micros = now_micros();
        let mut ids: Vec<RoomId> = Vec::with_capacity(names.len());
        for name in names {
            match self.rooms.open(name, micros) {
                Ok(id) => ids.push(id),
                Err(_) => return Err(too_many_rooms()),
            }
        }
        let mut first = Vec::with_capacity(256);
        sse::retry(&mut first, RETRY_MS);
        let mut replay = Vec::new();
        let mut mark = None;
        if last_id.is_none() && self.config.backlog > 0 {
            let recent = self.rooms.recent(&ids, self.config.backlog);
            replay = recent.iter().map(|e| e.frame.clone()).collect();
            mark = Some(self.backlog_mark.clone());
        }
        if let Some(id) = last_id {
            let resume = self.rooms.resume(&ids, id);
            if resume.missed {
                sse::encode(&mut first, None, Some("missed"), MISSED_OLD);
            }
            replay = resume.frames;
        }
        for &id in &ids {
            self.rooms.join(id);
        }
        let key = self.listeners.add(who, &ids);
        // The broadcast presence is refreshed once a second; this stream's
        // first one counts the stream itself.
        let presence = Presence {
            listeners: self.listeners.len(),
            ..self.presence.clone()
        };
        sse::encode(&mut first, None, Some("presence"), &presence.json());
        self.stats.streams_opened += 1;
        self.stats.count_status(200);
        Ok(Answer::Stream {
            key,
            first,
            replay,
            mark,
        })
    }

    /// A stream ended (its connection closed, or it was reset or evicted).
    pub fn leave(&mut self, key: ListenerKey) {
        let micros = now_micros();
        for room in self.listeners.remove(key) {
            self.rooms.leave(room, micros);
        }
    }

    /// Frames accepted since the last call, by room, for that room's
    /// listeners.
    pub fn take_outbox(&mut self) -> Vec<(RoomId, Vec<Rc<[u8]>>)> {
        let frames = self.rooms.take_outbox();
        if !frames.is_empty() {
            self.quiet = false;
        }
        frames
    }

    /// The heartbeat tick: a comment for every stream if none was sent a
    /// message since the last tick.
    pub fn heartbeat(&mut self) -> Option<Rc<[u8]>> {
        let quiet = std::mem::replace(&mut self.quiet, true);
        quiet.then(|| self.heartbeat.clone())
    }

    /// This node's rooms with listeners, busiest first, at most `n`.
    pub fn busiest_rooms(&self, n: usize) -> Vec<(String, usize)> {
        let mut rooms: Vec<(String, usize)> = self
            .rooms
            .iter()
            .filter(|(_, r)| r.listeners > 0)
            .map(|(_, r)| (r.name.to_string(), r.listeners))
            .collect();
        rooms.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        rooms.truncate(n);
        rooms
    }

    /// The presence tick: when the linked peers or the listener counts
    /// changed, the new presence event for every stream.
    ///
    /// The broadcast costs a write per stream, so with many streams it goes
    /// out less often: at most once per `PRESENCE_COST` × streams (1 s up to
    /// 20,000 streams, 50 s at a million), while `/cluster` and each new
    /// stream's first event are always current. Measured: 100,000 listeners
    /// connecting, with presence every second, kept 8 workers busy writing
    /// it instead of accepting.
    pub fn refresh_presence(&mut self, mut peers: Vec<Peer>, now: Instant) -> Option<Rc<[u8]>> {
        peers.sort();
        let next = Presence {
            node: self.presence.node.clone(),
            peers,
            listeners: self.listeners.len(),
            rooms: self.busiest_rooms(TOLD_ROOMS),
        };
        if next == self.presence && !self.presence_owed {
            return None;
        }
        self.presence = next;
        let every = PRESENCE_COST * self.listeners.len().min(u32::MAX as usize) as u32;
        if self
            .presence_sent
            .is_some_and(|at| now.saturating_duration_since(at) < every)
        {
            self.presence_owed = true;
            return None;
        }
        self.presence_owed = false;
        self.presence_sent = Some(now);
        let mut f = Vec::new();
        sse::encode(&mut f, None, Some("presence"), &self.presence.json());
        Some(f.into())
    }

    /// `GET /rooms`: the rooms of the cluster (this node's, and the busiest
    /// of each peer's), with listeners across the cluster and the messages
    /// this node holds: `{"rooms":[{"name":…,"listeners":…,"messages":…}]}`.
    fn rooms_json(&self) -> String {
        let mut listed = self.presence.cluster_rooms(LISTED_ROOMS);
        for (_, r) in self.rooms.iter() {
            if listed.len() >= LISTED_ROOMS {
                break;
            }
            if !listed.iter().any(|(n, _)| **n == *r.name) && !r.is_empty() {
                listed.push((r.name.to_string(), 0));
            }
        }
        let items: Vec<String> = listed
            .iter()
            .map(|(name, listeners)| {
                let messages = self
                    .rooms
                    .find(name)
                    .and_then(|id| self.rooms.get(id))
                    .map_or(0, |r| r.len());
                format!(
                    "{{\"name\":{},\"listeners\":{listeners},\"messages\":{messages}}}",
                    json_string(name)
                )
            })
            .collect();
        format!("{{\"rooms\":[{}]}}\n", items.join(","))
    }

    /// `GET /r/NAME/messages`: the room's last `--backlog` messages (at
    /// least 50), oldest first: `{"room":…,"messages":[{"id":…,"text":…}]}`.
    fn messages_json(&self, room: &str) -> String {
        let n = self.config.backlog.max(50);
        let recent = match self.rooms.find(room) {
            Some(id) => self.rooms.latest(id, n),
            None => Vec::new(),
        };
        let items: Vec<String> = recent
            .iter()
            .map(|e| {
                format!(
                    "{{\"id\":{},\"text\":{}}}",
                    json_string(e.id()),
                    json_string(&e.text)
                )
            })
            .collect();
        format!(
            "{{\"room\":{},\"messages\":[{}]}}\n",
            json_string(room),
            items.join(",")
        )
    }

    /// For every stream when the bus lost messages some may not have got.
    pub fn missed_frame() -> Rc<[u8]> {
        let mut f = Vec::new();
        sse::encode(&mut f, None, Some("missed"), MISSED_BUS);
        f.into()
    }

    /// The last thing each stream gets before the node shuts down: a hint
    /// to reconnect soon (to another node, or to this one once back).
    pub fn drain_frame() -> Rc<[u8]> {
        let mut last = Vec::new();
        sse::retry(&mut last, DRAIN_RETRY_MS);
        last.into()
    }
}

fn too_many_rooms() -> Response {
    Response::error(
        503,
        "too many rooms: this node holds as many as it may (--max-rooms); existing rooms still work",
    )
    .with_header("retry-after", "60")
}

/// `HEAD /listen`: the stream's headers, no stream.
fn stream_head() -> Response {
    Response::new(200, "text/event-stream", Vec::new())
        .with_header("cache-control", "no-cache")
        .with_header("x-accel-buffering", "no")
}

#[cfg(test)]
mod tests;
