//! One HTTP/2 connection: the socket glue around the sans-IO core (`h2`).
//! Bytes read go to the core; each request it reports goes to the same
//! service as over HTTP/1.1, and the answer comes back as HEADERS and DATA;
//! an SSE stream is one HTTP/2 stream, so one connection carries every tab's
//! streams and one write carries all their frames. A connection becomes
//! this when an HTTP/1.1 one sees the HTTP/2 preface (plain port, prior
//! knowledge) or TLS chose `h2` by ALPN (`Http1` reports `Step::Upgrade`).
//! Every stream is bounded like an HTTP/1.1 listener (hard cap, soft cap
//! held too long) and reset alone; the core bounds the rest.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::output::Chunk;
use super::{Env, Got, Pipe, Ready, Step, Stream};
use crate::h2::conn::{Connection, Event, Reason};
use crate::h2::limits::Config;
use crate::h2::outgoing::SendError;
use crate::http::Request;
use crate::service::listeners::{Listener, ListenerKey};
use crate::service::{Answer, Service};
use crate::{debug, info};

/// Most bytes of replay (or backlog) a new stream queues at once: well under
/// the stream's hard cap, which applies before a byte is written.
const REPLAY_MAX: usize = 512 * 1024;
/// Most bytes read per readiness event (the rest on the next turn).
const READ_BUDGET: usize = 256 * 1024;
/// Most bytes the core moves into the socket's output at once: frames wait
/// in their streams (shared, flow-controlled) rather than in one queue.
const OUTPUT_WINDOW: usize = 256 * 1024;

pub struct H2Conn<S> {
    pipe: Pipe<S>,
    pub peer: SocketAddr,
    core: Connection,
    /// The listeners on this connection: (stream, key).
    listeners: Vec<(u32, ListenerKey)>,
    /// Streams the fan-out found gone (reset for a slow reader): they leave
    /// the service at the next handler, which has the service at hand.
    gone: Vec<u32>,
    /// Requests that came while the node waited for its cluster (stream,
    /// request, body): served by `resume` once it serves, as over HTTP/1.1.
    /// At most one per open stream, so bounded by the core's stream limit.
    held: Vec<(u32, Request, Vec<u8>)>,
    /// The connection closes at this time: idle (no stream open) after
    /// `idle_timeout`; with only requests open (no listener, none held)
    /// and no progress, after `request_timeout`, as over HTTP/1.1.
    idle_until: Option<Instant>,
    /// Open streams last counted in the node's stats.
    counted: usize,
    events: Vec<Event>,
}

impl<S: Stream> H2Conn<S> {
    /// Takes over an HTTP/1.1 connection's bytes (the preface, if read, is
    /// still in its input).
    pub fn new(pipe: Pipe<S>, peer: SocketAddr, service: &Service, now: Instant) -> H2Conn<S> {
        let cfg = Config {
            max_request_body: service.max_body(),
            ..Config::default()
        };
        H2Conn {
            pipe,
            peer,
            core: Connection::new(cfg, now),
            listeners: Vec::new(),
            gone: Vec::new(),
            held: Vec::new(),
            idle_until: Some(now + service.config.idle_timeout),
            counted: 0,
            events: Vec::new(),
        }
    }

    pub fn stream(&mut self) -> &mut S {
        &mut self.pipe.stream
    }

    pub fn is_tls(&self) -> bool {
        self.pipe.transport.is_tls()
    }

    pub fn wants_write(&self) -> bool {
        self.pipe.wants_write() || self.core.wants_write()
    }

    pub fn deadline(&self) -> Option<Instant> {
        match (self.core.next_deadline(), self.idle_until) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Open streams this connection counts in the node's stats (its
    /// share to take back when it closes).
    pub fn counted_streams(&self) -> usize {
        self.counted
    }

    /// The listeners to forget when the connection closes.
    pub fn listeners(&self) -> impl Iterator<Item = ListenerKey> + '_ {
        self.listeners.iter().map(|&(_, key)| key)
    }

    pub fn ready(&mut self, ready: Ready, env: &mut Env) -> Step {
        if ready.readable && self.read(env) == Step::Close {
            return Step::Close;
        }
        self.flush(env)
    }

    fn read(&mut self, env: &mut Env) -> Step {
        let mut budget = READ_BUDGET;
        loop {
            let limit = self.core.input_limit().max(64 * 1024);
            let got = match self.pipe.read(env.scratch, limit, &mut budget) {
                Ok(got) => got,
                Err(e) => {
                    debug!("{} h2 closed: {e}", self.peer);
                    return Step::Close;
                }
            };
            let used = self
                .core
                .receive(&self.pipe.input, env.now, &mut self.events);
            self.pipe.input.drain(..used.min(self.pipe.input.len()));
            self.pipe.release_input();
            if self.handle_events(env) == Step::Close {
                return Step::Close;
            }
            match got {
                Got::Drained => return Step::Keep,
                Got::Eof => return Step::Close,
                Got::Spent => {
                    env.more = true;
                    return Step::Keep;
                }
                Got::Full if used == 0 => return Step::Close,
                Got::Full => {}
            }
        }
    }

    /// Carries out what the core reported.
    fn handle_events(&mut self, env: &mut Env) -> Step {
        for stream in std::mem::take(&mut self.gone) {
            self.forget(stream, env);
            env.service.stats.h2_resets_slow += 1;
        }
        for event in std::mem::take(&mut self.events) {
            match event {
                Event::Request {
                    stream,
                    method,
                    path,
                    authority,
                    headers,
                    body,
                    ..
                } => self.request(stream, &method, &path, authority, &headers, &body, env),
                Event::Refused { stream, status } => {
                    let resp = crate::http::Response::error(status, refusal(status));
                    env.service.stats.count_status(status);
                    self.respond(stream, resp);
                }
                Event::StreamClosed { stream, reason } => {
                    self.forget(stream, env);
                    let stats = &mut env.service.stats;
                    match reason {
                        Reason::ClientReset(_) => stats.h2_resets_client += 1,
                        Reason::SlowReader => stats.h2_resets_slow += 1,
                        Reason::Refused | Reason::Error(_) => stats.h2_resets_error += 1,
                    }
                }
                Event::Closed { reason } => {
                    info!("{} h2 connection closed: {reason}", self.peer);
                    self.core.write_to(&mut self.pipe.output, OUTPUT_WINDOW);
                    let _ = self.pipe.flush();
                    return Step::Close;
                }
            }
        }
        let open = self.core.stream_count();
        let stats = &mut env.service.stats;
        stats.h2_streams = (stats.h2_streams + open as u64).saturating_sub(self.counted as u64);
        self.counted = open;
        let config = &env.service.config;
        self.idle_until = if !self.listeners.is_empty() || !self.held.is_empty() {
            None
        } else if open == 0 {
            Some(env.now + config.idle_timeout)
        } else {
            Some(env.now + config.request_timeout)
        };
        Step::Keep
    }

    #[allow(clippy::too_many_arguments)]
    fn request(
        &mut self,
        stream: u32,
        method: &str,
        path: &str,
        authority: Option<String>,
        headers: &[(String, String)],
        body: &[u8],
        env: &mut Env,
    ) {
        let Ok(mut req) = Request::new(method, path) else {
            env.service.stats.count_status(400);
            self.respond(
                stream,
                crate::http::Response::error(400, "malformed request"),
            );
            return;
        };
        req.host = authority.or(req.host);
        req.secure = self.is_tls();
        req.client = Some(self.peer.ip());
        for (name, value) in headers {
            if name == "host" && req.host.is_none() {
                req.host = Some(value.clone());
            } else if req.add_field(name, value.as_bytes()).is_err() {
                env.service.stats.count_status(400);
                self.respond(
                    stream,
                    crate::http::Response::error(400, "malformed request"),
                );
                return;
            }
        }
        if env.service.holds(&req) {
            // The node waits for its cluster first; `resume` serves it.
            self.held.push((stream, req, body.to_vec()));
            return;
        }
        self.serve(stream, &req, body, env);
    }

    /// The log committed what this connection's answers acknowledge.
    pub fn release(&mut self, env: &mut Env) -> Step {
        self.pipe.hold = false;
        self.flush(env)
    }

    /// The node serves now: answer the requests held until now.
    pub fn resume(&mut self, env: &mut Env) -> Step {
        for (stream, req, body) in std::mem::take(&mut self.held) {
            self.serve(stream, &req, &body, env);
        }
        self.flush(env)
    }

    pub fn is_held(&self) -> bool {
        !self.held.is_empty()
    }

    /// Runs one request through the service and answers on its stream.
    fn serve(&mut self, stream: u32, req: &Request, body: &[u8], env: &mut Env) {
        let who = Listener {
            conn: env.token,
            stream,
        };
        let since = env.now;
        match env.service.handle(req, body, who, env.now) {
            Answer::Respond(resp) => {
                let (status, n) = (resp.status, resp.body.len());
                let head = req.method == crate::http::Method::Head || status == 304;
                if head {
                    let headers: Vec<(&str, &str)> =
                        resp.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
                    self.core.respond(stream, status, &headers, None, true);
                } else {
                    self.respond(stream, resp);
                }
                self.pipe.hold_if_waiting(env);
                self.log(req, status, n, since, env);
            }
            Answer::Stream {
                key,
                first,
                replay,
                mark,
            } => {
                let headers = [
                    ("content-type", "text/event-stream"),
                    ("cache-control", "no-cache"),
                ];
                self.core.respond(stream, 200, &headers, None, false);
                self.listeners.push((stream, key));
                // A stream's queue is capped before anything is written:
                // a replay (or backlog) past it would be reset at once, and
                // again on every reconnect. Keep its newest part and say
                // the rest was missed.
                let mut first = first;
                let mut size = 0;
                let keep = replay
                    .iter()
                    .rev()
                    .take_while(|f| {
                        size += f.len() + mark.as_ref().map_or(0, |m| m.len());
                        size <= REPLAY_MAX
                    })
                    .count();
                if keep < replay.len() {
                    crate::sse::encode(
                        &mut first,
                        None,
                        Some("missed"),
                        "some messages were missed: more than one stream may be sent at once",
                    );
                }
                let mut chunks = vec![Chunk::Owned(first)];
                let skip = replay.len() - keep;
                for f in replay.into_iter().skip(skip) {
                    if let Some(mark) = &mark {
                        chunks.push(Chunk::Shared(mark.clone()));
                    }
                    chunks.push(Chunk::Shared(f));
                }
                for c in chunks {
                    match self.core.send(stream, c, env.now) {
                        Ok(()) => {}
                        Err(SendError::SlowReader) => {
                            self.gone.push(stream);
                            break;
                        }
                        Err(_) => {
                            self.forget(stream, env);
                            break;
                        }
                    }
                }
                self.log(req, 200, 0, since, env);
            }
        }
    }

    fn respond(&mut self, stream: u32, resp: crate::http::Response) {
        let headers: Vec<(&str, &str)> =
            resp.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let body = Chunk::Owned(resp.body);
        self.core
            .respond(stream, resp.status, &headers, Some(body), true);
    }

    /// A stream is over: its listener (if it was one) leaves the service.
    fn forget(&mut self, stream: u32, env: &mut Env) {
        if let Some(i) = self.listeners.iter().position(|&(s, _)| s == stream) {
            let (_, key) = self.listeners.swap_remove(i);
            env.service.leave(key);
        }
    }

    /// Queues shared frames on a listener's stream (fan-out).
    pub fn push(&mut self, stream: u32, frames: &[Rc<[u8]>], now: Instant) -> Step {
        for f in frames {
            match self.core.send(stream, Chunk::Shared(f.clone()), now) {
                Ok(()) => {}
                Err(SendError::SlowReader) => {
                    info!("{} slow h2 listener reset (stream {stream})", self.peer);
                    self.gone.push(stream);
                    break;
                }
                Err(_) => break,
            }
        }
        Step::Keep
    }

    /// Moves what windows allow into the socket's output and writes it.
    pub fn flush(&mut self, env: &mut Env) -> Step {
        if self.handle_events(env) == Step::Close {
            return Step::Close;
        }
        loop {
            let room = OUTPUT_WINDOW.saturating_sub(self.pipe.output.len());
            self.core.write_to(&mut self.pipe.output, room);
            match self.pipe.flush() {
                Ok((n, done)) => {
                    env.service.stats.bytes_out += n as u64;
                    if !done || !self.core.wants_write() {
                        break;
                    }
                }
                Err(e) => {
                    debug!("{} h2 write failed: {e}", self.peer);
                    return Step::Close;
                }
            }
        }
        if self.core.is_closed() && !self.pipe.wants_write() {
            return Step::Close;
        }
        Step::Keep
    }

    pub fn expired(&mut self, env: &mut Env) -> Step {
        self.core.on_timer(env.now, &mut self.events);
        if self.idle_until.is_some_and(|t| t <= env.now) {
            if self.core.stream_count() > 0 {
                env.service.stats.timeouts += 1;
                info!("{} h2 request stalled: closing", self.peer);
            }
            self.core.shutdown();
            let _ = self.flush(env);
            return Step::Close;
        }
        self.flush(env)
    }

    /// Shutdown: GOAWAY (requests in flight finish); every SSE stream gets
    /// `last` (a reconnect hint) and ends, as over HTTP/1.1.
    pub fn drain(&mut self, last: &Rc<[u8]>, env: &mut Env) -> Step {
        for (stream, _, _) in std::mem::take(&mut self.held) {
            // Held while the node was starting: it will never serve them.
            env.service.stats.count_status(503);
            self.respond(
                stream,
                crate::http::Response::error(503, "the node is shutting down"),
            );
        }
        self.core.shutdown();
        for (stream, key) in std::mem::take(&mut self.listeners) {
            let _ = self.core.send(stream, Chunk::Shared(last.clone()), env.now);
            self.core.end_stream(stream);
            env.service.leave(key);
        }
        self.flush(env)
    }

    /// Best-effort goodbye before the socket is dropped.
    pub fn close(&mut self) {
        self.core.shutdown();
        self.core.write_to(&mut self.pipe.output, OUTPUT_WINDOW);
        self.pipe.transport.close_notify();
        let _ = self.pipe.flush();
    }

    fn log(&self, req: &Request, status: u16, bytes: usize, since: Instant, env: &Env) {
        let took: Duration = env.now.saturating_duration_since(since);
        info!(
            "{} {} {} {status} {bytes}B {:.1}ms h2{}",
            self.peer,
            req.method_name,
            req.target,
            took.as_secs_f64() * 1000.0,
            if self.is_tls() { " tls" } else { "" }
        );
    }
}

fn refusal(status: u16) -> &'static str {
    match status {
        413 => "the request body is too large",
        431 => "request headers too large",
        405 => "method not allowed",
        _ => "refused",
    }
}
