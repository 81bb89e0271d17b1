//! The answering half of an HTTP/1.1 connection: a complete request goes to
//! the service, and what it answers is written in HTTP/1.1 framing (status
//! line, `date`, length, keep-alive or close), or the stream's head; every
//! request is logged in one line. `mod.rs` reads requests and drives the
//! connection's states.

use std::time::{Instant, SystemTime};

use super::{Http1, State};
use crate::conn::output::Chunk;
use crate::conn::Env;
use crate::conn::Stream;
use crate::http::response::write_head;
use crate::http::{Head, Method, Response};
use crate::info;
use crate::service::listeners::Listener;
use crate::service::Answer;

impl<S: Stream> Http1<S> {
    /// Runs one complete request through the service; returns the next state.
    pub(super) fn handle(
        &mut self,
        head: &Head,
        body: &[u8],
        since: Instant,
        env: &mut Env,
    ) -> State {
        let who = Listener {
            conn: env.token,
            stream: 0,
        };
        match env.service.handle(&head.request, body, who, env.now) {
            Answer::Respond(resp) => {
                let keep = self.answer(head, resp, since, env);
                self.pipe.hold_if_waiting(env);
                if keep {
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
            Answer::Stream {
                key,
                first,
                replay,
                mark,
            } => {
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
                    if let Some(mark) = &mark {
                        self.pipe.output.push(Chunk::Shared(mark.clone()));
                    }
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
    pub(super) fn answer(
        &mut self,
        head: &Head,
        resp: Response,
        since: Instant,
        env: &mut Env,
    ) -> bool {
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
    pub(super) fn fail(&mut self, status: u16, why: &str, since: Instant, env: &mut Env) {
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

    pub(super) fn log_line(
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
            "{} {method} {target} {status} {bytes}B {:.1}ms http/1.1{}",
            self.peer,
            took.as_secs_f64() * 1000.0,
            if self.is_tls() { " tls" } else { "" }
        );
    }
}
