//! What requests mean and do, whichever protocol carried them: the page and
//! static files, publishing, opening a stream, presence, health and metrics.
//! A connection (HTTP/1.1 in `conn::http1`, HTTP/2 in `conn::h2`) parses a
//! request into `http::Request`, calls `handle`, and writes the `Answer` its
//! own way; a listener is a (connection, stream) pair, so one connection can
//! carry many streams. After each loop turn the reactor takes what the room
//! accepted (`take_outbox`) and what the node-level ticks made (heartbeat,
//! presence) and delivers it to every listener. No sockets here.

pub mod assets;
pub mod health;
pub mod listeners;
pub mod presence;
pub mod routes;
pub mod stats;

use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::http::{Method, Request, Response};
use crate::room::Room;
use crate::sse;
use assets::Assets;
use health::Phase;
use listeners::{Listener, ListenerKey, Listeners};
use presence::Presence;
use routes::{Route, Site};
use stats::Stats;

/// The reconnect delay a new stream suggests to its browser.
const RETRY_MS: u64 = 2000;
/// The reconnect delay hinted to browsers when the node shuts down.
pub const DRAIN_RETRY_MS: u64 = 1000;

/// What the service needs from the command line.
#[derive(Debug, Clone)]
pub struct Config {
    pub max_message: usize,
    pub request_timeout: Duration,
    pub idle_timeout: Duration,
}

/// What a request gets.
pub enum Answer {
    Respond(Response),
    /// A stream is open and listening (`key` leaves it). `first` is what it
    /// sends before anything else (retry hint, missed signal, presence),
    /// `replay` the messages it resumes with, shared with the history.
    Stream {
        key: ListenerKey,
        first: Vec<u8>,
        replay: Vec<Rc<[u8]>>,
    },
}

pub struct Service {
    pub room: Room,
    pub listeners: Listeners,
    pub assets: Assets,
    pub stats: Stats,
    pub presence: Presence,
    pub phase: Phase,
    pub started: Instant,
    pub config: Config,
    heartbeat: Rc<[u8]>,
    /// No message went out since the last heartbeat tick.
    quiet: bool,
}

impl Service {
    pub fn new(name: &str, history: usize, config: Config, now: Instant) -> Service {
        let mut heartbeat = Vec::new();
        sse::comment(&mut heartbeat, "heartbeat");
        Service {
            room: Room::new(name, history),
            listeners: Listeners::default(),
            assets: Assets::new(name),
            stats: Stats::default(),
            presence: Presence {
                node: name.to_string(),
                ..Presence::default()
            },
            phase: Phase::Starting,
            started: now,
            config,
            heartbeat: heartbeat.into(),
            quiet: true,
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
            Route::Publish(_) if self.phase == Phase::Draining => {
                // Its listeners' streams have ended: the message would reach
                // no one here. The client retries on another node.
                Response::error(503, "the node is shutting down").with_header("retry-after", "1")
            }
            Route::Publish(text) => {
                let text = sse::normalize(&text);
                let micros = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_micros() as u64;
                self.room.publish(&text, micros);
                self.stats.published_local += 1;
                Response::error(303, "published").with_header("location", "/")
            }
            Route::Cluster => {
                let presence = Presence {
                    listeners: self.listeners.len(),
                    ..self.presence.clone()
                };
                Response::new(200, "application/json", presence.json())
            }
            Route::Health | Route::Metrics => {
                let snap = health::Snapshot {
                    phase: self.phase,
                    uptime: now.saturating_duration_since(self.started),
                    presence: &self.presence,
                    local_listeners: self.listeners.len(),
                    stats: &self.stats,
                    history: self.room.len(),
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
            Route::Listen(_) if req.method == Method::Head => stream_head(),
            Route::Listen(last_id) => return self.listen(last_id.as_deref(), who),
        };
        self.stats.count_status(resp.status);
        Answer::Respond(resp)
    }

    fn listen(&mut self, last_id: Option<&str>, who: Listener) -> Answer {
        let mut first = Vec::with_capacity(256);
        sse::retry(&mut first, RETRY_MS);
        let mut replay = Vec::new();
        if let Some(id) = last_id {
            let resume = self.room.resume(id);
            if resume.missed {
                sse::encode(
                    &mut first,
                    None,
                    Some("missed"),
                    "some messages were missed: they are older than this node's history or it never had them",
                );
            }
            replay = resume.frames;
        }
        let key = self.listeners.add(who);
        // The broadcast presence is refreshed once a second; this stream's
        // first one counts the stream itself.
        let presence = Presence {
            listeners: self.listeners.len(),
            ..self.presence.clone()
        };
        sse::encode(&mut first, None, Some("presence"), &presence.json());
        self.stats.streams_opened += 1;
        self.stats.count_status(200);
        Answer::Stream { key, first, replay }
    }

    /// A stream ended (its connection closed, or it was reset or evicted).
    pub fn leave(&mut self, key: ListenerKey) {
        self.listeners.remove(key);
    }

    /// Frames accepted into the room since the last call, for every listener.
    pub fn take_outbox(&mut self) -> Vec<Rc<[u8]>> {
        let frames = self.room.take_outbox();
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

    /// The presence tick: when the linked peers or the listener counts
    /// changed, the new presence event for every stream.
    pub fn refresh_presence(&mut self, mut peers: Vec<(String, usize)>) -> Option<Rc<[u8]>> {
        peers.sort();
        let listeners = self.listeners.len();
        if peers == self.presence.peers && listeners == self.presence.listeners {
            return None;
        }
        self.presence.peers = peers;
        self.presence.listeners = listeners;
        let mut f = Vec::new();
        sse::encode(&mut f, None, Some("presence"), &self.presence.json());
        Some(f.into())
    }

    /// The last thing each stream gets before the node shuts down: a hint
    /// to reconnect soon (to another node, or to this one once back).
    pub fn drain_frame() -> Rc<[u8]> {
        let mut last = Vec::new();
        sse::retry(&mut last, DRAIN_RETRY_MS);
        last.into()
    }
}

/// `HEAD /listen`: the stream's headers, no stream.
fn stream_head() -> Response {
    Response::new(200, "text/event-stream", Vec::new())
        .with_header("cache-control", "no-cache")
        .with_header("x-accel-buffering", "no")
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::Token;

    fn service() -> Service {
        let config = Config {
            max_message: 100,
            request_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(1),
        };
        let mut s = Service::new("n1", 10, config, Instant::now());
        s.phase = Phase::Serving;
        s
    }

    fn req(method: &str, target: &str) -> Request {
        Request::new(method, target).unwrap()
    }

    const WHO: Listener = Listener {
        conn: Token(7),
        stream: 3,
    };

    #[test]
    fn publish_reaches_the_outbox_and_a_stream_resumes() {
        let mut s = service();
        let Answer::Stream { key, first, replay } =
            s.handle(&req("GET", "/listen"), b"", WHO, Instant::now())
        else {
            panic!("no stream");
        };
        assert!(replay.is_empty());
        assert!(String::from_utf8_lossy(&first).contains("event: presence"));
        assert_eq!(s.listeners.iter().collect::<Vec<_>>(), [WHO]);
        match s.handle(&req("POST", "/publish"), b"message=hi", WHO, Instant::now()) {
            Answer::Respond(r) => assert_eq!(r.status, 303),
            Answer::Stream { .. } => panic!("publish opened a stream"),
        }
        assert_eq!(s.take_outbox().len(), 1);
        assert!(s.heartbeat().is_none(), "a message went out");
        assert!(s.heartbeat().is_some(), "quiet since");
        s.leave(key);
        assert!(s.listeners.is_empty());
    }

    #[test]
    fn starting_holds_all_but_health_and_draining_refuses_publish() {
        let mut s = service();
        s.phase = Phase::Starting;
        assert!(s.holds(&req("GET", "/")));
        assert!(!s.holds(&req("GET", "/healthz")));
        s.phase = Phase::Draining;
        match s.handle(&req("POST", "/publish"), b"message=hi", WHO, Instant::now()) {
            Answer::Respond(r) => assert_eq!(r.status, 503),
            Answer::Stream { .. } => panic!(),
        }
        assert!(s.take_outbox().is_empty());
    }

    #[test]
    fn presence_is_sent_only_when_it_changed() {
        let mut s = service();
        assert!(s.refresh_presence(vec![]).is_none());
        assert!(s.refresh_presence(vec![("b".into(), 2)]).is_some());
        assert!(s.refresh_presence(vec![("b".into(), 2)]).is_none());
    }
}
