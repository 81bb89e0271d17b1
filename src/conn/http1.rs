//! One HTTP/1.1 connection, plain or TLS, from its first byte to its close:
//! reads requests (pipelined ones answered in order), hands each to the
//! service, writes the answer in HTTP/1.1 framing, and may turn into an SSE
//! stream (one listener, stream 0). Handlers report a `Step`; the reactor
//! derives interest from `wants_write` and the timer from `deadline`.
//! Everything the connection holds is bounded: its input by the head and
//! body limits, its output by `OUTPUT_PAUSE` for responses and by the
//! listener caps for a stream.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use mio::Token;

use super::output::{Chunk, Output};
use super::transport::Transport;
use super::{Got, Pipe, Ready, Step, Stream};
use crate::http::body::decode_chunked;
use crate::http::response::{write_head, DateCache};
use crate::http::{parse_head, BodyKind, Head, HeadLimits, Method, Response};
use crate::service::listeners::{Listener, ListenerKey};
use crate::service::{Answer, Service};
use crate::{debug, info};

/// Stop reading requests while this much response output waits: a client
/// that pipelines without reading can't make us buffer without bound.
const OUTPUT_PAUSE: usize = 64 * 1024;
/// Most bytes read per readiness event, so one busy client can't hold the
/// loop; the rest is read on the next turn (the pending list).
const READ_BUDGET: usize = 256 * 1024;

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
/// Input taken (and dropped) per read from a stream or a closing connection.
const DISCARD_BITE: usize = 4096;

/// What a handler may use besides its connection.
pub struct Env<'a> {
    pub now: Instant,
    pub token: Token,
    pub scratch: &'a mut [u8],
    pub service: &'a mut Service,
    pub date: &'a mut DateCache,
    /// Set when reading stopped with bytes possibly left (read budget spent,
    /// or answers left after a pause): the loop calls `ready` again before
    /// it sleeps.
    pub more: bool,
}

enum State {
    /// Waiting for a request head. `since`: when its first byte came;
    /// `kept`: an earlier request was answered, so silence is keep-alive
    /// idle time rather than a request that is late.
    Head { since: Option<Instant>, kept: bool },
    /// A whole head is in `input` but the node is not serving yet: it is
    /// parsed again once the node serves (`resume`).
    Held { since: Instant },
    /// Head read, waiting for the body.
    Body { head: Box<Head>, since: Instant },
    /// An SSE stream. `over_soft`: above `SOFT_CAP` since then; `ending`:
    /// close once the output is written (shutdown); `discarded`: bytes the
    /// client sent since, read and dropped.
    Stream {
        key: ListenerKey,
        over_soft: Option<Instant>,
        ending: bool,
        discarded: usize,
    },
    /// The last answer is queued: close once written (or after `LINGER`).
    /// `shut`: our side is shut down and we read until the client's end, so
    /// unread request bytes don't turn our answer into a reset.
    Closing { shut: bool, discarded: usize },
}

pub struct Http1<S> {
    pipe: Pipe<S>,
    pub peer: SocketAddr,
    state: State,
    /// When the current state's time runs out.
    deadline: Option<Instant>,
    /// Reading stopped at `OUTPUT_PAUSE`; resumes once the answers left.
    read_stopped: bool,
}

impl<S: Stream> Http1<S> {
    /// A new connection gets the request timeout: one that connects and
    /// says nothing is closed then (a TLS handshake included).
    pub fn new(
        stream: S,
        transport: Transport,
        peer: SocketAddr,
        now: Instant,
        request_timeout: Duration,
    ) -> Http1<S> {
        Http1 {
            pipe: Pipe::new(stream, transport),
            peer,
            state: State::Head {
                since: None,
                kept: false,
            },
            deadline: Some(now + request_timeout),
            read_stopped: false,
        }
    }

    pub fn stream(&mut self) -> &mut S {
        &mut self.pipe.stream
    }

    pub fn is_tls(&self) -> bool {
        self.pipe.transport.is_tls()
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    pub fn wants_write(&self) -> bool {
        self.pipe.wants_write()
    }

    /// The listener this connection is, once it streams.
    pub fn listener(&self) -> Option<ListenerKey> {
        match self.state {
            State::Stream { key, .. } => Some(key),
            _ => None,
        }
    }

    pub fn is_held(&self) -> bool {
        matches!(self.state, State::Held { .. })
    }

    pub fn ready(&mut self, ready: Ready, env: &mut Env) -> Step {
        if ready.writable && self.flush(env) == Step::Close {
            return Step::Close;
        }
        if ready.readable {
            self.read_stopped = false;
            if self.on_readable(env) == Step::Close {
                return Step::Close;
            }
        }
        self.settle(env)
    }

    /// Writes what is queued. When answers that paused reading have left,
    /// asks the loop to read again (`Env::more`); it never reads itself.
    pub fn flush(&mut self, env: &mut Env) -> Step {
        match self.pipe.flush() {
            Ok((n, _)) => {
                env.service.stats.bytes_out += n as u64;
                if self.read_stopped && self.pipe.output.len() <= OUTPUT_PAUSE {
                    env.more = true;
                }
                Step::Keep
            }
            Err(e) => {
                debug!("{} write failed: {e}", self.peer);
                Step::Close
            }
        }
    }

    /// Adds shared frames to a stream's queue. Close when over the hard cap.
    pub fn push(&mut self, frames: &[Rc<[u8]>]) -> Step {
        for f in frames {
            self.pipe.output.push(Chunk::Shared(f.clone()));
        }
        if self.pipe.output.len() > HARD_CAP {
            info!(
                "{} slow listener closed: {} bytes waiting",
                self.peer,
                self.pipe.output.len()
            );
            // Closing writes no more of it.
            self.pipe.output = Output::default();
            return Step::Close;
        }
        Step::Keep
    }

    /// After a fan-out: write, then settle.
    pub fn flush_and_settle(&mut self, env: &mut Env) -> Step {
        if self.flush(env) == Step::Close {
            return Step::Close;
        }
        self.settle(env)
    }

    /// The node started serving: answer the request held until now.
    pub fn resume(&mut self, env: &mut Env) -> Step {
        if let State::Held { since } = self.state {
            self.state = State::Head {
                since: Some(since),
                kept: false,
            };
            self.process(env);
        }
        self.flush_and_settle(env)
    }

    /// Shutdown: end a stream once `last` (a reconnect hint) and what is
    /// queued before it are written; close an idle keep-alive connection
    /// now; let a request in progress finish (without keep-alive).
    pub fn drain(&mut self, last: &Rc<[u8]>, env: &mut Env) -> Step {
        match &mut self.state {
            State::Held { since } => {
                // Held while the node was starting: it will never serve it.
                let since = *since;
                self.fail(503, "the node is shutting down", since, env);
            }
            State::Stream { ending, .. } => {
                *ending = true;
                if self.push(std::slice::from_ref(last)) == Step::Close {
                    return Step::Close;
                }
            }
            State::Head { since: None, .. }
                if self.pipe.input.is_empty() && self.pipe.output.is_empty() =>
            {
                return Step::Close
            }
            _ => {}
        }
        self.flush_and_settle(env)
    }

    /// The deadline came. What it means depends on the state.
    pub fn expired(&mut self, env: &mut Env) -> Step {
        if self.deadline.is_none_or(|at| at > env.now) {
            return Step::Keep;
        }
        match &self.state {
            State::Head {
                since: Some(since), ..
            }
            | State::Body { since, .. } => {
                let since = *since;
                env.service.stats.timeouts += 1;
                self.fail(408, "the request did not arrive in time", since, env);
                self.flush_and_settle(env)
            }
            State::Stream { .. } => {
                info!(
                    "{} slow listener closed: {} bytes waiting for {:?}",
                    self.peer,
                    self.pipe.output.len(),
                    SOFT_TIME
                );
                env.service.stats.evicted += 1;
                Step::Close
            }
            State::Head { since: None, .. } | State::Held { .. } | State::Closing { .. } => {
                Step::Close
            }
        }
    }

    /// Best-effort goodbye before the socket is dropped.
    pub fn close(&mut self) {
        self.pipe.transport.close_notify();
        let _ = self.pipe.flush();
    }

    /// After handling: close if done, watch a stream's backlog, arm the
    /// deadline that fits the state.
    fn settle(&mut self, env: &mut Env) -> Step {
        let pending = self.pipe.wants_write();
        match &mut self.state {
            State::Stream { ending: true, .. } if !pending => {
                self.pipe.transport.close_notify();
                let _ = self.pipe.flush();
                return Step::Close;
            }
            State::Closing { shut, .. } if !*shut && !pending => {
                *shut = true;
                self.pipe.transport.close_notify();
                if self.flush(env) == Step::Close {
                    return Step::Close;
                }
                self.pipe.stream.shut_write();
            }
            State::Stream { over_soft, .. } => {
                if self.pipe.output.len() > SOFT_CAP {
                    over_soft.get_or_insert(env.now);
                } else {
                    *over_soft = None;
                }
            }
            _ => {}
        }
        let limits = &env.service.config;
        self.deadline = match &self.state {
            State::Head { since: Some(t), .. } => Some(*t + limits.request_timeout),
            // A new connection (or TLS handshake) keeps the request timeout
            // it got at accept: saying nothing is not idling.
            State::Head {
                since: None,
                kept: false,
            } => self.deadline,
            State::Head {
                since: None,
                kept: true,
            } => Some(env.now + limits.idle_timeout),
            // Held until the node serves, which `sync_nodes_timeout` bounds.
            State::Held { .. } => None,
            State::Body { since, .. } => Some(*since + limits.request_timeout),
            State::Stream { over_soft, .. } => over_soft.map(|t| t + SOFT_TIME),
            State::Closing { .. } => Some(
                self.deadline
                    .unwrap_or(env.now + LINGER)
                    .min(env.now + LINGER),
            ),
        };
        Step::Keep
    }

    fn on_readable(&mut self, env: &mut Env) -> Step {
        let mut budget = READ_BUDGET;
        loop {
            let discarding = matches!(self.state, State::Stream { .. } | State::Closing { .. });
            if !discarding && self.pipe.output.len() > OUTPUT_PAUSE {
                self.read_stopped = true;
                return Step::Keep;
            }
            let limit = if discarding {
                DISCARD_BITE
            } else {
                HeadLimits::default().max_head_bytes + env.service.max_body()
            };
            let before = self.pipe.input.len();
            let got = match self.pipe.read(env.scratch, limit, &mut budget) {
                Ok(got) => got,
                Err(e) => {
                    info!("{} closed: {e}", self.peer);
                    return Step::Close;
                }
            };
            if discarding {
                // Nothing more is expected from a stream or a closing
                // connection: a client that keeps sending is cut off rather
                // than allowed to keep the loop reading.
                let n = self.pipe.input.len();
                self.pipe.input = Vec::new();
                if let State::Stream { discarded, .. } | State::Closing { discarded, .. } =
                    &mut self.state
                {
                    *discarded += n;
                    if *discarded > DISCARD_LIMIT {
                        debug!("{} closed: kept sending after its request", self.peer);
                        return Step::Close;
                    }
                }
            } else if !self.pipe.input.is_empty() {
                // New bytes, or requests left unanswered when reading paused.
                if let State::Head {
                    since: since @ None,
                    ..
                } = &mut self.state
                {
                    if self.pipe.input.len() > before {
                        *since = Some(env.now);
                    }
                }
                self.process(env);
            }
            // TLS handshake bytes and answers leave at once (eager writes).
            if self.flush(env) == Step::Close {
                return Step::Close;
            }
            match got {
                Got::Drained => return Step::Keep,
                Got::Eof => return self.on_eof(),
                Got::Spent => {
                    env.more = true;
                    return Step::Keep;
                }
                // No progress is possible (process() answers over-limit
                // input with an error, so this is defensive).
                Got::Full if self.pipe.input.len() >= limit => return Step::Close,
                Got::Full => {}
            }
        }
    }

    fn on_eof(&mut self) -> Step {
        match self.state {
            // Finish writing what was asked for, then close.
            State::Head { .. } if !self.pipe.output.is_empty() => {
                self.state = State::Closing {
                    shut: false,
                    discarded: 0,
                };
                Step::Keep
            }
            State::Closing { .. } if !self.pipe.output.is_empty() => Step::Keep,
            _ => Step::Close,
        }
    }

    /// Answers every complete request in `input`, in order.
    fn process(&mut self, env: &mut Env) {
        loop {
            match std::mem::replace(
                &mut self.state,
                State::Closing {
                    shut: false,
                    discarded: 0,
                },
            ) {
                State::Head { since, kept } => {
                    let since = since.unwrap_or(env.now);
                    let head = match parse_head(&self.pipe.input, &HeadLimits::default()) {
                        Ok(Some(head)) => head,
                        Ok(None) => {
                            let since = (!self.pipe.input.is_empty()).then_some(since);
                            self.state = State::Head { since, kept };
                            return;
                        }
                        Err(e) => {
                            self.log_line("-", "-", e.status(), 0, since, env);
                            self.fail(e.status(), e.reason(), since, env);
                            return;
                        }
                    };
                    if env.service.holds(&head.request) {
                        // The node waits for its cluster first; the reactor
                        // calls `resume` once it serves.
                        self.state = State::Held { since };
                        return;
                    }
                    self.pipe.input.drain(..head.head_len);
                    let refuse = match head.body {
                        BodyKind::None if head.request.method == Method::Post => {
                            Some((411, "a body needs a Content-Length"))
                        }
                        BodyKind::Length(n) if n > env.service.max_body() as u64 => {
                            Some((413, "the request body is too large"))
                        }
                        _ => None,
                    };
                    if let Some((status, why)) = refuse {
                        env.service.stats.count_status(status);
                        self.answer(&head, Response::error(status, why), since, env);
                        self.state = State::Closing {
                            shut: false,
                            discarded: 0,
                        };
                        return;
                    }
                    if head.expect_continue
                        && head.body != BodyKind::None
                        && self.pipe.input.is_empty()
                    {
                        self.pipe
                            .output
                            .push(Chunk::Owned(b"HTTP/1.1 100 Continue\r\n\r\n".to_vec()));
                    }
                    self.state = State::Body {
                        head: Box::new(head),
                        since,
                    };
                }
                State::Body { head, since } => {
                    let input = &self.pipe.input;
                    let (body, used) = match head.body {
                        BodyKind::None => (Vec::new(), 0),
                        BodyKind::Length(n) => {
                            let n = n as usize;
                            match input.get(..n) {
                                Some(body) => (body.to_vec(), n),
                                None => {
                                    self.state = State::Body { head, since };
                                    return;
                                }
                            }
                        }
                        BodyKind::Chunked => match decode_chunked(input, env.service.max_body()) {
                            Ok(Some(done)) => done,
                            Ok(None) => {
                                self.state = State::Body { head, since };
                                return;
                            }
                            Err(e) => {
                                env.service.stats.count_status(e.status());
                                let resp = Response::error(e.status(), &e.to_string());
                                self.answer(&head, resp, since, env);
                                self.state = State::Closing {
                                    shut: false,
                                    discarded: 0,
                                };
                                return;
                            }
                        },
                    };
                    self.pipe.input.drain(..used);
                    self.state = self.handle(&head, &body, since, env);
                    if !matches!(self.state, State::Head { .. }) {
                        // A stream or a close: whatever else was sent is not read.
                        self.pipe.input = Vec::new();
                        return;
                    }
                    if self.pipe.input.is_empty() {
                        self.pipe.release_input();
                        return;
                    }
                    if self.pipe.output.len() > OUTPUT_PAUSE {
                        // Resumed once the answers have left (`flush`).
                        self.read_stopped = true;
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

    /// Runs one complete request through the service; returns the next state.
    fn handle(&mut self, head: &Head, body: &[u8], since: Instant, env: &mut Env) -> State {
        let who = Listener {
            conn: env.token,
            stream: 0,
        };
        match env.service.handle(&head.request, body, who, env.now) {
            Answer::Respond(resp) => {
                if self.answer(head, resp, since, env) {
                    State::Head {
                        since: None,
                        kept: true,
                    }
                } else {
                    State::Closing {
                        shut: false,
                        discarded: 0,
                    }
                }
            }
            Answer::Stream { key, first, replay } => {
                let date = env.date.get(SystemTime::now()).to_string();
                let mut out = Vec::with_capacity(256 + first.len());
                let headers = [
                    ("content-type", "text/event-stream"),
                    ("cache-control", "no-cache"),
                    ("x-accel-buffering", "no"),
                ];
                write_head(&mut out, 200, &headers, None, false, &date);
                out.extend_from_slice(&first);
                self.pipe.output.push(Chunk::Owned(out));
                for f in replay {
                    self.pipe.output.push(Chunk::Shared(f));
                }
                let r = &head.request;
                self.log_line(&r.method_name, &r.target, 200, 0, since, env);
                State::Stream {
                    key,
                    over_soft: None,
                    ending: false,
                    discarded: 0,
                }
            }
        }
    }

    /// Queues `resp` (no body for HEAD) and logs the request. True when the
    /// connection stays open for the next request.
    fn answer(&mut self, head: &Head, resp: Response, since: Instant, env: &mut Env) -> bool {
        let r = &head.request;
        let head_only = r.method == Method::Head || resp.status == 304;
        // After bad input the connection is not trusted further.
        let keep =
            head.keep_alive && !env.service.draining() && (resp.status < 400 || resp.status == 404);
        let status = resp.status;
        let n = self.queue_response(resp, head_only, keep, env);
        self.log_line(&r.method_name, &r.target, status, n, since, env);
        keep
    }

    /// A request we could not parse or take: answer, then close.
    fn fail(&mut self, status: u16, why: &str, since: Instant, env: &mut Env) {
        if status == 408 || status == 503 {
            self.log_line("-", "-", status, 0, since, env);
        }
        env.service.stats.count_status(status);
        self.queue_response(Response::error(status, why), false, false, env);
        self.state = State::Closing {
            shut: false,
            discarded: 0,
        };
        self.pipe.input = Vec::new();
    }

    fn queue_response(
        &mut self,
        resp: Response,
        head_only: bool,
        keep_alive: bool,
        env: &mut Env,
    ) -> usize {
        let date = env.date.get(SystemTime::now());
        let headers: Vec<(&str, &str)> =
            resp.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let mut out = Vec::with_capacity(256 + if head_only { 0 } else { resp.body.len() });
        let length = (resp.status != 304).then_some(resp.body.len());
        write_head(&mut out, resp.status, &headers, length, keep_alive, date);
        if !head_only {
            out.extend_from_slice(&resp.body);
        }
        let n = out.len();
        self.pipe.output.push(Chunk::Owned(out));
        n
    }

    fn log_line(
        &self,
        method: &str,
        target: &str,
        status: u16,
        bytes: usize,
        since: Instant,
        env: &Env,
    ) {
        let took = env.now.saturating_duration_since(since);
        info!(
            "{} {method} {target} {status} {bytes}B {:.1}ms{}",
            self.peer,
            took.as_secs_f64() * 1000.0,
            if self.is_tls() { " tls" } else { "" }
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::mem::MemStream;
    use super::*;
    use crate::service::health::Phase;
    use crate::service::Config;

    struct Rig {
        conn: Http1<MemStream>,
        service: Service,
        date: DateCache,
        scratch: Vec<u8>,
        now: Instant,
        more: bool,
    }

    impl Rig {
        fn new() -> Rig {
            let now = Instant::now();
            let config = Config {
                max_message: 64,
                request_timeout: Duration::from_secs(10),
                idle_timeout: Duration::from_secs(60),
            };
            let mut service = Service::new("n1", 100, config, now);
            service.phase = Phase::Serving;
            let peer = "127.0.0.1:9".parse().unwrap();
            let conn = Http1::new(
                MemStream::default(),
                Transport::Plain,
                peer,
                now,
                Duration::from_secs(10),
            );
            Rig {
                conn,
                service,
                date: DateCache::new(),
                scratch: vec![0; 16 * 1024],
                now,
                more: false,
            }
        }

        fn run(&mut self, f: impl FnOnce(&mut Http1<MemStream>, &mut Env) -> Step) -> Step {
            let mut env = Env {
                now: self.now,
                token: Token(1),
                scratch: &mut self.scratch,
                service: &mut self.service,
                date: &mut self.date,
                more: false,
            };
            let step = f(&mut self.conn, &mut env);
            self.more = env.more;
            step
        }

        fn send(&mut self, bytes: &[u8]) -> Step {
            self.conn.stream().send(bytes);
            self.run(|c, env| c.ready(Ready::READ, env))
        }

        fn written(&mut self) -> String {
            self.conn.stream().take_written()
        }
    }

    fn statuses(text: &str) -> Vec<&str> {
        text.match_indices("HTTP/1.1 ")
            .map(|(i, _)| &text[i + 9..i + 12])
            .collect()
    }

    const GET: &[u8] = b"GET /main.css HTTP/1.1\r\nHost: h\r\n\r\n";

    #[test]
    fn pipelined_requests_are_answered_in_order() {
        let mut rig = Rig::new();
        let mut all = GET.to_vec();
        all.extend_from_slice(b"GET /nope HTTP/1.1\r\nHost: h\r\n\r\n");
        all.extend_from_slice(
            b"POST /publish HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nmessage=hi",
        );
        assert_eq!(rig.send(&all), Step::Keep);
        assert_eq!(statuses(&rig.written()), ["200", "404", "303"]);
        assert_eq!(rig.service.take_outbox().len(), 1);
    }

    #[test]
    fn a_request_one_byte_at_a_time() {
        let mut rig = Rig::new();
        let req = b"POST /publish HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nmessa\r\n5\r\nge=yo\r\n0\r\n\r\n";
        for b in req.iter() {
            assert_eq!(rig.send(&[*b]), Step::Keep);
        }
        assert_eq!(statuses(&rig.written()), ["303"]);
        assert!(rig.conn.deadline().is_some(), "idle timeout armed");
    }

    #[test]
    fn bad_input_is_answered_then_closed() {
        let mut rig = Rig::new();
        assert_eq!(rig.send(b"GET / HTTP/1.1\r\n\r\n"), Step::Keep);
        let out = rig.written();
        assert_eq!(statuses(&out), ["400"]);
        assert!(out.contains("connection: close"));
        assert!(rig.conn.stream().shut, "lingering close shut our side");
        // What the client still sends is read and dropped, up to a limit.
        assert_eq!(rig.send(&[b'x'; 1000]), Step::Keep);
        assert_eq!(rig.send(&[b'x'; DISCARD_LIMIT]), Step::Close);
    }

    #[test]
    fn a_slow_reader_stream_is_closed_past_the_hard_cap() {
        let mut rig = Rig::new();
        rig.conn.stream().room = Some(0);
        assert_eq!(
            rig.send(b"GET /listen HTTP/1.1\r\nHost: h\r\n\r\n"),
            Step::Keep
        );
        assert!(rig.conn.listener().is_some());
        assert!(rig.conn.wants_write());
        let frame: Rc<[u8]> = vec![b'x'; 1024].into();
        let mut pushed = 0;
        let step = loop {
            let step = rig.conn.push(std::slice::from_ref(&frame));
            pushed += 1;
            if step == Step::Close || pushed > 2000 {
                break step;
            }
        };
        assert_eq!(step, Step::Close);
        // The stream's head waits in the queue too.
        assert_eq!(pushed, HARD_CAP / 1024);
    }

    #[test]
    fn a_stream_over_the_soft_cap_for_too_long_is_closed() {
        let mut rig = Rig::new();
        rig.conn.stream().room = Some(0);
        rig.send(b"GET /listen HTTP/1.1\r\nHost: h\r\n\r\n");
        let frame: Rc<[u8]> = vec![b'x'; SOFT_CAP + 1].into();
        assert_eq!(rig.conn.push(std::slice::from_ref(&frame)), Step::Keep);
        rig.run(|c, env| c.flush_and_settle(env));
        let at = rig.conn.deadline().expect("soft cap armed");
        assert_eq!(at, rig.now + SOFT_TIME);
        assert_eq!(rig.run(|c, env| c.expired(env)), Step::Keep, "not yet");
        rig.now = at;
        assert_eq!(rig.run(|c, env| c.expired(env)), Step::Close);
        assert_eq!(rig.service.stats.evicted, 1);
    }

    #[test]
    fn a_pipelining_client_that_does_not_read_is_paused_then_resumed() {
        let mut rig = Rig::new();
        rig.conn.stream().room = Some(0);
        let many: Vec<u8> = GET.repeat(2000);
        rig.send(&many);
        let queued = rig.conn.pipe.output.len();
        assert!(
            queued > OUTPUT_PAUSE && queued < OUTPUT_PAUSE + 8192,
            "{queued}"
        );
        assert!(rig.conn.read_stopped);
        // The client reads everything: the flush asks the loop to read on.
        rig.conn.stream().room = None;
        rig.run(|c, env| c.ready(Ready::WRITE, env));
        assert!(rig.more);
        while rig.more {
            rig.run(|c, env| c.ready(Ready::READ, env));
        }
        assert_eq!(statuses(&rig.written()).len(), 2000);
    }

    #[test]
    fn held_requests_wait_for_the_node_and_fail_on_drain() {
        let mut rig = Rig::new();
        rig.service.phase = Phase::Starting;
        rig.send(GET);
        assert!(rig.conn.is_held());
        assert_eq!(rig.conn.deadline(), None);
        assert!(rig.written().is_empty());
        rig.service.phase = Phase::Serving;
        rig.run(|c, env| c.resume(env));
        assert_eq!(statuses(&rig.written()), ["200"]);

        let mut rig = Rig::new();
        rig.service.phase = Phase::Starting;
        rig.send(GET);
        rig.service.phase = Phase::Draining;
        let last = Service::drain_frame();
        rig.run(|c, env| c.drain(&last, env));
        assert_eq!(statuses(&rig.written()), ["503"]);
    }

    #[test]
    fn a_stream_ends_after_its_last_hint_on_drain() {
        let mut rig = Rig::new();
        rig.send(b"GET /listen HTTP/1.1\r\nHost: h\r\n\r\n");
        assert!(rig.written().contains("text/event-stream"));
        let last = Service::drain_frame();
        assert_eq!(rig.run(|c, env| c.drain(&last, env)), Step::Close);
        assert_eq!(rig.written(), "retry: 1000\n\n");
    }

    #[test]
    fn silence_after_connect_times_out_without_an_answer() {
        let mut rig = Rig::new();
        rig.now += Duration::from_secs(10);
        assert_eq!(rig.run(|c, env| c.expired(env)), Step::Close);
        assert!(rig.written().is_empty());
        // A request begun and not finished gets a 408.
        let mut rig = Rig::new();
        rig.send(b"GET / HTTP/1.1\r\n");
        rig.now += Duration::from_secs(10);
        rig.run(|c, env| c.expired(env));
        assert_eq!(statuses(&rig.written()), ["408"]);
    }
}
