//! The node's life: starting (requests held until the cluster has synced),
//! serving, and draining on SIGTERM or SIGINT (streams get a last reconnect
//! hint and end, requests in flight finish, peers hear `Leave`), until every
//! connection is closed or `--drain-ms` is up; a second signal exits at once.

use std::time::Instant;

use super::timers::Key;
use super::Server;
use crate::service::health::Phase;
use crate::service::Service;
use crate::{info, warn};

impl Server {
    /// The node serves once the bus has synced (every listed node linked
    /// and sent its replay, or `sync_nodes_timeout` passed: the tutorial's
    /// sync), so a restarting node fills its history first. Until then
    /// requests are held (only `/healthz` and `/metrics` answer).
    pub(super) fn start_serving_when_synced(&mut self, now: Instant) {
        if self.service.phase != Phase::Starting || !self.bus.synced(now) {
            return;
        }
        self.bus.log_serving();
        self.service.phase = Phase::Serving;
        for t in self.sockets.tokens() {
            self.with_socket(t, now, |s, cx| s.resume(cx));
        }
    }

    /// True when a signal came and false otherwise; a second one exits.
    pub(super) fn on_signal(&mut self, now: Instant) {
        let mut got = false;
        for sig in self.signals.pending() {
            info!("signal {sig} received");
            got = true;
        }
        if !got {
            return;
        }
        if self.service.phase == Phase::Draining {
            warn!("second signal: exiting now");
            self.exit = true;
            return;
        }
        self.begin_drain(now);
    }

    /// Stop accepting, tell the peers we leave (so they don't count it as a
    /// failure), send every stream a last `retry:` hint and end it once
    /// written, finish requests in flight; `finished` says when all is done.
    pub(super) fn begin_drain(&mut self, now: Instant) {
        self.service.phase = Phase::Draining;
        self.timers.schedule(now + self.opts.drain, Key::Drain);
        for mut port in std::mem::take(&mut self.ports) {
            let _ = self.poll.registry().deregister(&mut port.listener);
        }
        let (l, c) = (self.service.listeners.len(), self.sockets.len());
        info!(
            "draining: {l} {}, {c} {} (at most {:?})",
            if l == 1 { "listener" } else { "listeners" },
            if c == 1 { "connection" } else { "connections" },
            self.opts.drain
        );
        self.deliver(now);
        let last = Service::drain_frame();
        for t in self.sockets.tokens() {
            self.with_socket(t, now, |s, cx| s.drain(&last, cx));
        }
    }

    /// Draining is over: every connection closed, or the time is up.
    pub(super) fn finished(&self) -> bool {
        self.exit || (self.service.phase == Phase::Draining && self.sockets.is_empty())
    }
}
