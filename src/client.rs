//! One HTTP connection, plain or TLS, from its first byte to its close:
//! reads requests (pipelined ones answered in order), answers them, and may
//! turn into an SSE stream. `ready` and `expired` report what should happen
//! next (`Step`); the reactor decides, and removes closed sockets after the
//! event batch. Everything the connection holds is bounded: its input by the
//! head and body limits, its output by `OUTPUT_PAUSE` for responses and by
//! the listener caps for streams.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use crate::health::{self, Phase};
use crate::http::body::decode_chunked;
use crate::http::response::{write_head, DateCache};
use crate::http::{parse_head, BodyKind, HeadLimits, Method, Request};
use crate::output::{Chunk, Output};
use crate::presence::Presence;
use crate::room::Room;
use crate::routes::{self, Response, Route, Site};
use crate::sse;
use crate::stats::Stats;
use crate::timer::{Deadline, Timers};
use crate::transport::{ReadEnd, Transport};
use crate::{debug, info};

/// Stop reading requests while this much response output waits: a client
/// that pipelines without reading can't make us buffer without bound.
const OUTPUT_PAUSE: usize = 64 * 1024;

/// A listener whose queue passes `HARD_CAP` bytes, or stays above `SOFT_CAP`
/// for `SOFT_TIME`, is closed; its browser resumes from history. Frames are
/// shared, so a queue costs ~32 bytes per message whatever their size.
pub const HARD_CAP: usize = 1024 * 1024;
pub const SOFT_CAP: usize = 128 * 1024;
pub const SOFT_TIME: Duration = Duration::from_secs(5);
/// Bytes a stream or closing connection may send before it is cut off.
const DISCARD_LIMIT: usize = 64 * 1024;
/// A connection closing after an error gets this long to take its answer.
const LINGER: Duration = Duration::from_secs(5);

/// What a handler wants next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Keep,
    Close,
}

pub enum State {
    /// Waiting for a request head. `since` is when its first byte came.
    Head { since: Option<Instant> },
    /// Head read, waiting for the body.
    Body { req: Box<Request>, since: Instant },
    /// An SSE stream; `slot` is its index in the reactor's listener list.
    Stream { slot: usize },
    /// Answer queued; close when written (or after `LINGER`).
    Closing,
}

pub struct Client {
    pub stream: TcpStream,
    pub transport: Transport,
    pub peer: SocketAddr,
    pub state: State,
    pub input: Vec<u8>,
    pub output: Output,
    pub deadline: Deadline,
    /// Reading stopped at `OUTPUT_PAUSE`; resume once output drains.
    paused: bool,
    /// WRITABLE is registered (only after a write hit `WouldBlock`).
    writable: bool,
    /// The stream has been over `SOFT_CAP` since then.
    over_soft: Option<Instant>,
    /// Our side is shut down; waiting for the client's end (lingering close).
    shut: bool,
    /// A complete request waits for the node to start serving.
    pub held: bool,
    /// A request has been answered: from now on silence is keep-alive idle
    /// time, not a request that is late.
    served: bool,
    /// Bytes read and dropped since the connection stopped taking requests.
    discarded: usize,
    /// A stream to end once its output is written (shutdown).
    ending: bool,
    last_status: u16,
}

/// What handlers may touch besides their own connection.
pub struct Ctx<'a> {
    pub now: Instant,
    pub token: Token,
    pub registry: &'a Registry,
    pub timers: &'a mut Timers,
    pub scratch: &'a mut [u8],
    pub room: &'a mut Room,
    pub listeners: &'a mut Vec<usize>,
    pub site: &'a Site<'a>,
    pub presence: &'a Presence,
    pub date: &'a mut DateCache,
    pub stats: &'a mut Stats,
    pub request_timeout: Duration,
    pub idle_timeout: Duration,
    pub retry_ms: u64,
    pub phase: Phase,
    pub started: Instant,
}

impl Client {
    pub fn new(stream: TcpStream, transport: Transport, peer: SocketAddr) -> Client {
        Client {
            stream,
            transport,
            peer,
            state: State::Head { since: None },
            input: Vec::new(),
            output: Output::default(),
            deadline: Deadline::default(),
            paused: false,
            writable: false,
            over_soft: None,
            shut: false,
            held: false,
            served: false,
            discarded: 0,
            ending: false,
            last_status: 0,
        }
    }

    /// Called once after registration: a new connection gets the request
    /// timeout (a client that connects and says nothing is closed then).
    pub fn start(&mut self, cx: &mut Ctx) {
        self.deadline.set(
            Some(cx.now + cx.request_timeout),
            cx.timers,
            cx.token.0 as u64,
        );
    }

    pub fn is_stream(&self) -> bool {
        matches!(self.state, State::Stream { .. })
    }

    pub fn ready(&mut self, readable: bool, writable: bool, cx: &mut Ctx) -> Step {
        if writable && self.flush(cx) == Step::Close {
            return Step::Close;
        }
        if readable && self.on_readable(cx) == Step::Close {
            return Step::Close;
        }
        self.settle(cx)
    }

    /// Writes what is queued; after a `WouldBlock` asks for WRITABLE.
    pub fn flush(&mut self, cx: &mut Ctx) -> Step {
        loop {
            let before = self.output.len();
            let result = self.transport.write(&mut self.stream, &mut self.output);
            cx.stats.bytes_out += (before - self.output.len()) as u64;
            match result {
                Ok(true) if self.paused => {
                    // Answers have left: go on with the requests already
                    // read (their answers are written on the next round),
                    // then read more.
                    self.paused = false;
                    if !self.input.is_empty() {
                        self.process(cx);
                    }
                    if self.paused {
                        continue;
                    }
                    return self.on_readable(cx);
                }
                Ok(_) => return Step::Keep,
                Err(e) => {
                    debug!("{} write failed: {e}", self.peer);
                    return Step::Close;
                }
            }
        }
    }

    /// The node started serving: answer the requests held until now.
    pub fn resume(&mut self, cx: &mut Ctx) -> Step {
        self.held = false;
        self.process(cx);
        self.flush_and_settle(cx)
    }

    /// Shutdown: end a stream once what is queued for it is written (the
    /// caller queues a last `retry:` hint first); close an idle keep-alive
    /// connection now; let a request in progress finish (without keep-alive).
    pub fn drain(&mut self, cx: &mut Ctx) -> Step {
        if self.held {
            // Held while the node was starting: it will never serve it.
            self.held = false;
            self.fail(503, "the node is shutting down", cx);
            return self.flush_and_settle(cx);
        }
        match self.state {
            State::Stream { .. } => self.ending = true,
            State::Head { since: None } if self.input.is_empty() && self.output.is_empty() => {
                return Step::Close
            }
            _ => {}
        }
        self.flush_and_settle(cx)
    }

    /// After handling: close if done, derive interest, arm the deadline.
    fn settle(&mut self, cx: &mut Ctx) -> Step {
        let mut pending = !self.output.is_empty() || self.transport.wants_write();
        if self.ending && !pending {
            self.transport.close_notify();
            let _ = self.transport.write(&mut self.stream, &mut self.output);
            return Step::Close;
        }
        if matches!(self.state, State::Closing) && !pending && !self.shut {
            // Lingering close: shut our side, then read until the client's
            // end, so unread request bytes don't turn our answer into a reset.
            self.shut = true;
            self.transport.close_notify();
            if self.flush(cx) == Step::Close {
                return Step::Close;
            }
            let _ = self.stream.shutdown(std::net::Shutdown::Write);
            pending = false;
        }
        if pending != self.writable {
            let interest = if pending {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            if let Err(e) = cx.registry.reregister(&mut self.stream, cx.token, interest) {
                debug!("{} reregister failed: {e}", self.peer);
                return Step::Close;
            }
            self.writable = pending;
        }
        if let State::Stream { .. } = self.state {
            self.watch_backlog(cx.now);
        }
        self.arm(cx);
        Step::Keep
    }

    /// The deadline that fits the state.
    fn arm(&mut self, cx: &mut Ctx) {
        let at = match &self.state {
            // Held until the node serves, which `sync_nodes_timeout` bounds.
            State::Head { .. } if self.held => None,
            State::Head { since: Some(t) } => Some(*t + cx.request_timeout),
            // A new connection (or TLS handshake) keeps the request timeout
            // it got at accept: saying nothing is not idling.
            State::Head { since: None } if !self.served => self.deadline.at,
            State::Head { since: None } => Some(cx.now + cx.idle_timeout),
            State::Body { since, .. } => Some(*since + cx.request_timeout),
            State::Stream { .. } => self.over_soft.map(|t| t + SOFT_TIME),
            State::Closing => Some(
                self.deadline
                    .at
                    .unwrap_or(cx.now + LINGER)
                    .min(cx.now + LINGER),
            ),
        };
        self.deadline.set(at, cx.timers, cx.token.0 as u64);
    }

    fn watch_backlog(&mut self, now: Instant) {
        if self.output.len() > SOFT_CAP {
            self.over_soft.get_or_insert(now);
        } else {
            self.over_soft = None;
        }
    }

    /// A queued deadline fired. Close unless it was re-armed later.
    pub fn expired(&mut self, cx: &mut Ctx) -> Step {
        if !self.deadline.fired(cx.now, cx.timers, cx.token.0 as u64) {
            return Step::Keep;
        }
        match &self.state {
            State::Head { since: Some(_) } | State::Body { .. } => {
                cx.stats.timeouts += 1;
                self.fail(408, "the request did not arrive in time", cx);
                self.flush(cx);
                self.settle(cx)
            }
            State::Stream { .. } => {
                info!(
                    "{} slow listener closed: {} bytes waiting for {:?}",
                    self.peer,
                    self.output.len(),
                    SOFT_TIME
                );
                cx.stats.evicted += 1;
                Step::Close
            }
            State::Head { since: None } | State::Closing => Step::Close,
        }
    }

    /// Adds a shared frame to a stream's queue. Close when over the hard cap.
    pub fn push_frame(&mut self, frame: &Rc<[u8]>) -> Step {
        self.output.push(Chunk::Shared(frame.clone()));
        if self.output.len() > HARD_CAP {
            info!(
                "{} slow listener closed: {} bytes waiting",
                self.peer,
                self.output.len()
            );
            return Step::Close;
        }
        Step::Keep
    }

    /// Called after fan-out: write, then settle interest and deadlines.
    pub fn flush_and_settle(&mut self, cx: &mut Ctx) -> Step {
        if self.flush(cx) == Step::Close {
            return Step::Close;
        }
        self.settle(cx)
    }

    fn on_readable(&mut self, cx: &mut Ctx) -> Step {
        loop {
            if self.output.len() > OUTPUT_PAUSE && !self.is_stream() {
                self.paused = true;
                return Step::Keep;
            }
            let limit = match self.state {
                State::Head { .. } | State::Body { .. } => {
                    HeadLimits::default().max_head_bytes + routes::max_body(cx.site.max_message)
                }
                // Nothing more is read from a stream or a closing connection:
                // take it in small bites and drop it.
                State::Stream { .. } | State::Closing => 4096,
            };
            let before = self.input.len();
            let end =
                match self
                    .transport
                    .read(&mut self.stream, cx.scratch, &mut self.input, limit)
                {
                    Ok(end) => end,
                    Err(e) => {
                        info!("{} closed: {e}", self.peer);
                        return Step::Close;
                    }
                };
            if matches!(self.state, State::Stream { .. } | State::Closing) {
                // Nothing more is expected from a stream or a closing
                // connection: a client that keeps sending is cut off rather
                // than allowed to keep the loop reading.
                self.discarded += self.input.len();
                self.input = Vec::new();
                if self.discarded > DISCARD_LIMIT {
                    debug!("{} closed: kept sending after its request", self.peer);
                    return Step::Close;
                }
            } else if self.input.len() > before {
                if let State::Head {
                    since: since @ None,
                } = &mut self.state
                {
                    *since = Some(cx.now);
                }
                self.process(cx);
            }
            // TLS handshake bytes to send, responses written eagerly.
            if self.flush(cx) == Step::Close {
                return Step::Close;
            }
            match end {
                ReadEnd::Drained => return Step::Keep,
                ReadEnd::Eof => return self.on_eof(),
                ReadEnd::Full => {
                    if self.input.len() >= limit {
                        // No progress is possible (process() answers over-limit
                        // input with an error, so this is defensive).
                        return Step::Close;
                    }
                }
            }
        }
    }

    fn on_eof(&mut self) -> Step {
        match self.state {
            // Finish writing what was asked for, then close.
            State::Head { .. } if !self.output.is_empty() => {
                self.state = State::Closing;
                Step::Keep
            }
            State::Closing if !self.output.is_empty() => Step::Keep,
            _ => Step::Close,
        }
    }

    /// Answers every complete request in `input`, in order.
    fn process(&mut self, cx: &mut Ctx) {
        loop {
            match std::mem::replace(&mut self.state, State::Closing) {
                State::Head { since } => {
                    let since = since.unwrap_or(cx.now);
                    let req = match parse_head(&self.input, &HeadLimits::default()) {
                        Ok(Some(req)) => req,
                        Ok(None) => {
                            self.state = State::Head {
                                since: (!self.input.is_empty()).then_some(since),
                            };
                            return;
                        }
                        Err(e) => {
                            self.log_line("-", "-", e.status(), 0, since, cx);
                            self.fail(e.status(), e.reason(), cx);
                            return;
                        }
                    };
                    if cx.phase == Phase::Starting && !routes::answered_while_starting(&req.path) {
                        // Held until the node serves (it waits for its cluster
                        // first); the reactor calls `resume` then.
                        self.state = State::Head { since: None };
                        self.held = true;
                        return;
                    }
                    self.input.drain(..req.head_len);
                    if req.method == Method::Post && req.body == BodyKind::None {
                        self.answer(
                            &req,
                            Response::error(411, "a body needs a Content-Length"),
                            since,
                            cx,
                        );
                        self.state = State::Closing;
                        return;
                    }
                    if let BodyKind::Length(n) = req.body {
                        if n > routes::max_body(cx.site.max_message) as u64 {
                            self.answer(
                                &req,
                                Response::error(413, "the request body is too large"),
                                since,
                                cx,
                            );
                            self.state = State::Closing;
                            return;
                        }
                    }
                    if req.expect_continue && req.body != BodyKind::None && self.input.is_empty() {
                        self.output
                            .push(Chunk::Owned(b"HTTP/1.1 100 Continue\r\n\r\n".to_vec()));
                    }
                    self.state = State::Body {
                        req: Box::new(req),
                        since,
                    };
                }
                State::Body { req, since } => {
                    let max = routes::max_body(cx.site.max_message);
                    let (body, used) = match req.body {
                        BodyKind::None => (Vec::new(), 0),
                        BodyKind::Length(n) => {
                            let n = n as usize;
                            if self.input.len() < n {
                                self.state = State::Body { req, since };
                                return;
                            }
                            (self.input[..n].to_vec(), n)
                        }
                        BodyKind::Chunked => match decode_chunked(&self.input, max) {
                            Ok(Some(done)) => done,
                            Ok(None) => {
                                self.state = State::Body { req, since };
                                return;
                            }
                            Err(e) => {
                                self.answer(
                                    &req,
                                    Response::error(e.status(), &e.to_string()),
                                    since,
                                    cx,
                                );
                                self.state = State::Closing;
                                return;
                            }
                        },
                    };
                    self.input.drain(..used);
                    self.state = self.handle(&req, &body, since, cx);
                    if !matches!(self.state, State::Head { .. }) {
                        // A stream or a close: whatever else was sent is not read.
                        self.input = Vec::new();
                        return;
                    }
                    if self.input.is_empty() {
                        self.input = Vec::new();
                        return;
                    }
                    if self.output.len() > OUTPUT_PAUSE {
                        // Resumed by `flush` once the answers have left.
                        self.paused = true;
                        return;
                    }
                }
                other => {
                    self.state = other;
                    return;
                }
            }
        }
    }

    /// Runs one complete request; returns the next state.
    fn handle(&mut self, req: &Request, body: &[u8], since: Instant, cx: &mut Ctx) -> State {
        self.served = true;
        let keep = if req.keep_alive && cx.phase != Phase::Draining {
            State::Head { since: None }
        } else {
            State::Closing
        };
        match routes::route(req, body, cx.site) {
            Route::Respond(resp) => {
                self.answer(req, resp, since, cx);
                keep
            }
            Route::Publish(_) if cx.phase == Phase::Draining => {
                // Its listeners' streams have ended: the message would reach
                // no one here. The client retries on another node.
                let resp = Response::error(503, "the node is shutting down")
                    .with_header("retry-after", "1");
                self.answer(req, resp, since, cx);
                keep
            }
            Route::Publish(text) => {
                let text = sse::normalize(&text);
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default();
                cx.room.publish(&text, now.as_micros() as u64);
                cx.stats.published_local += 1;
                let resp = Response::error(303, "published").with_header("location", "/");
                self.answer(req, resp, since, cx);
                keep
            }
            Route::Cluster => {
                let presence = Presence {
                    listeners: cx.listeners.len(),
                    ..cx.presence.clone()
                };
                let resp = Response::new(200, "application/json", presence.json());
                self.answer(req, resp, since, cx);
                keep
            }
            Route::Health | Route::Metrics => {
                let snap = health::Snapshot {
                    phase: cx.phase,
                    uptime: cx.now.saturating_duration_since(cx.started),
                    presence: cx.presence,
                    local_listeners: cx.listeners.len(),
                    stats: cx.stats,
                    history: cx.room.len(),
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
                self.answer(
                    req,
                    resp.with_header("cache-control", "no-store"),
                    since,
                    cx,
                );
                keep
            }
            Route::Listen(last_id) => self.open_stream(req, last_id, since, cx),
        }
    }

    fn open_stream(
        &mut self,
        req: &Request,
        last_id: Option<String>,
        since: Instant,
        cx: &mut Ctx,
    ) -> State {
        let date = cx.date.get(SystemTime::now()).to_string();
        let mut head = Vec::with_capacity(256);
        let headers = [
            ("content-type", "text/event-stream"),
            ("cache-control", "no-cache"),
            ("x-accel-buffering", "no"),
        ];
        write_head(&mut head, 200, &headers, None, false, &date);
        self.log_line(&req.method_name, &req.target, 200, 0, since, cx);
        if req.method == Method::Head {
            self.output.push(Chunk::Owned(head));
            return State::Closing;
        }
        sse::retry(&mut head, cx.retry_ms);
        let mut frames = Vec::new();
        if let Some(id) = last_id.as_deref() {
            let resume = cx.room.resume(id);
            if resume.missed {
                sse::encode(
                    &mut head,
                    None,
                    Some("missed"),
                    "some messages were missed: they are older than this node's history or it never had them",
                );
            }
            frames = resume.frames;
        }
        // The broadcast presence is refreshed once a second; this stream's
        // first one counts the stream itself.
        let presence = Presence {
            listeners: cx.listeners.len() + 1,
            ..cx.presence.clone()
        };
        sse::encode(&mut head, None, Some("presence"), &presence.json());
        self.output.push(Chunk::Owned(head));
        for f in frames {
            self.output.push(Chunk::Shared(f));
        }
        cx.listeners.push(cx.token.0 & 0xffff_ffff);
        cx.stats.streams_opened += 1;
        State::Stream {
            slot: cx.listeners.len() - 1,
        }
    }

    /// Queues `resp` (no body for HEAD) and logs the request.
    fn answer(&mut self, req: &Request, resp: Response, since: Instant, cx: &mut Ctx) {
        let head_only = req.method == Method::Head || resp.status == 304;
        // After bad input the connection is not trusted further.
        let keep = req.keep_alive
            && cx.phase != Phase::Draining
            && (resp.status < 400 || resp.status == 404);
        let n = self.queue_response(resp, head_only, keep, cx);
        self.log_line(
            &req.method_name,
            &req.target,
            self.last_status,
            n,
            since,
            cx,
        );
    }

    /// A request we could not parse: answer, then close.
    fn fail(&mut self, status: u16, why: &str, cx: &mut Ctx) {
        if status == 408 {
            self.log_line("-", "-", 408, 0, cx.now, cx);
        }
        self.queue_response(Response::error(status, why), false, false, cx);
        self.state = State::Closing;
        self.input = Vec::new();
    }

    fn queue_response(
        &mut self,
        resp: Response,
        head_only: bool,
        keep_alive: bool,
        cx: &mut Ctx,
    ) -> usize {
        let date = cx.date.get(SystemTime::now());
        let headers: Vec<(&str, &str)> =
            resp.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let mut out = Vec::with_capacity(256 + if head_only { 0 } else { resp.body.len() });
        let length = (resp.status != 304).then_some(resp.body.len());
        write_head(&mut out, resp.status, &headers, length, keep_alive, date);
        if !head_only {
            out.extend_from_slice(&resp.body);
        }
        let n = out.len();
        self.last_status = resp.status;
        cx.stats.count_status(resp.status);
        self.output.push(Chunk::Owned(out));
        n
    }

    fn log_line(
        &self,
        method: &str,
        target: &str,
        status: u16,
        bytes: usize,
        since: Instant,
        cx: &Ctx,
    ) {
        let took = cx.now.saturating_duration_since(since);
        info!(
            "{} {method} {target} {status} {bytes}B {:.1}ms{}",
            self.peer,
            took.as_secs_f64() * 1000.0,
            if self.transport.is_tls() { " tls" } else { "" }
        );
    }

    /// Best-effort goodbye before the socket is dropped.
    pub fn close(&mut self) {
        self.transport.close_notify();
        let _ = self.transport.write(&mut self.stream, &mut self.output);
    }
}
