//! Where sockets come from: connections accepted on the ports, links the
//! bus asks to dial, and an HTTP/1.1 connection that turns out to speak
//! HTTP/2. Each is registered with the poll and its first handler run (data
//! may already be waiting: edge-triggered, no event will say so).

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Instant;

use mio::net::TcpStream;
use mio::Token;

use super::listen::{self, Accepted, Kind};
use super::sockets::Socket;
use super::timers::Key;
use super::{Server, ACCEPT_PAUSE};
use crate::bus::mesh::link::PeerLink;
use crate::bus::redis::client::RedisConn;
use crate::bus::redis::node::Role;
use crate::bus::{Bus, Dial};
use crate::conn::h2::H2Conn;
use crate::conn::http1::Http1;
use crate::conn::tls_buffered::TlsBuffered;
use crate::conn::tls_session::TlsSession;
use crate::conn::transport::Transport;
use crate::conn::Ready;
use crate::service::health::Phase;
use crate::{debug, warn};

impl Server {
    /// An HTTP/1.1 connection turned out to speak HTTP/2: the same socket
    /// and bytes go on as an `H2Conn`, which reads what is already there.
    pub(super) fn upgrade(&mut self, t: Token, now: Instant) {
        let service = &self.service;
        let replaced = self.sockets.replace(t, |socket| match socket {
            Socket::Http(h1) => {
                let peer = h1.peer;
                Socket::H2(Box::new(H2Conn::new(h1.into_pipe(), peer, service, now)))
            }
            other => other,
        });
        self.service.stats.open_h2 += 1;
        let Some(new) = replaced else {
            return;
        };
        if new != t {
            let registered = self.sockets.get_mut(new).map(|slot| {
                let interest = slot.interest;
                self.poll
                    .registry()
                    .reregister(slot.socket.stream(), new, interest)
            });
            if !matches!(registered, Some(Ok(()))) {
                self.closing.push(new);
                return;
            }
        }
        self.with_socket(new, now, |s, cx| s.ready(Ready::READ, cx));
    }

    /// Registers a new socket and runs its first handler (data may already
    /// be waiting: edge-triggered, no event will say so).
    pub(super) fn add_socket(&mut self, socket: Socket, now: Instant) -> Option<Token> {
        let interest = socket.interest();
        let t = self.sockets.next_token();
        let mut socket = socket;
        if let Err(e) = self.poll.registry().register(socket.stream(), t, interest) {
            warn!("register failed: {e}");
            return None;
        }
        let t = self.sockets.insert(socket, interest);
        self.with_socket(t, now, |s, cx| s.ready(Ready::READ, cx));
        Some(t)
    }

    pub(super) fn accept(&mut self, i: usize, now: Instant) {
        while !self.accept_paused {
            let Some(port) = self.ports.get(i) else {
                return;
            };
            let kind = port.kind;
            let (stream, peer) = match port.accept() {
                Accepted::Conn(stream, peer) => (stream, peer),
                Accepted::Drained => return,
                Accepted::Exhausted(e) => {
                    warn!("accept paused for {ACCEPT_PAUSE:?}: {e}");
                    self.accept_paused = true;
                    self.timers.schedule(now + ACCEPT_PAUSE, Key::Accept);
                    return;
                }
            };
            self.service.stats.accepted += 1;
            if self.sockets.len() >= self.opts.max_connections {
                listen::refuse(kind, stream);
                self.service.stats.refused_full += 1;
                continue;
            }
            let _ = stream.set_nodelay(true);
            let socket = match kind {
                Kind::Cluster => {
                    if let Bus::Mesh(m) = &self.bus {
                        if let Some(wait) = m.guesses.blocked(peer.ip(), now) {
                            debug!(
                                "{peer}: link refused for {}s more (wrong cookie proofs)",
                                wait.as_secs()
                            );
                            continue;
                        }
                    }
                    let transport = match &self.link_tls {
                        Some(tls) => match TlsBuffered::server(tls.server.clone()) {
                            Ok(s) => Transport::Buffered(Box::new(s)),
                            Err(e) => {
                                warn!("{peer} link tls setup failed: {e}");
                                continue;
                            }
                        },
                        None => Transport::Plain,
                    };
                    Socket::Peer(Box::new(PeerLink::accept(stream, transport, peer, now)))
                }
                Kind::Http | Kind::Https => {
                    let Some(transport) = self.transport(kind, peer) else {
                        continue;
                    };
                    let timeout = self.opts.request_timeout;
                    Socket::Http(Box::new(Http1::new(stream, transport, peer, now, timeout)))
                }
            };
            let Some(t) = self.add_socket(socket, now) else {
                continue;
            };
            let stats = &mut self.service.stats;
            match kind {
                Kind::Cluster => {
                    stats.open_peers += 1;
                    self.bus.accepted(t);
                }
                Kind::Https => stats.open_tls += 1,
                Kind::Http => stats.open_plain += 1,
            }
        }
    }

    pub(super) fn transport(&self, kind: Kind, peer: SocketAddr) -> Option<Transport> {
        if kind != Kind::Https {
            return Some(Transport::Plain);
        }
        match TlsSession::new(self.tls.clone()) {
            Ok(session) => Some(Transport::Tls(Box::new(session))),
            Err(e) => {
                warn!("{peer} tls setup failed: {e}");
                None
            }
        }
    }

    /// Opens one of the Redis bus's connections (resolving its host now:
    /// an address may change between reconnects).
    fn dial_redis(&mut self, role: Role, now: Instant) -> Result<Token, String> {
        let Bus::Redis(bus) = &self.bus else {
            return Err("not a Redis bus".into());
        };
        let url = &bus.url;
        let addr = (url.host.as_str(), url.port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {}: {e}", url.host))?
            .next()
            .ok_or_else(|| format!("cannot resolve {}", url.host))?;
        let transport = match &bus.tls {
            Some(config) => {
                Transport::Buffered(Box::new(TlsBuffered::client(config.clone(), &url.host)?))
            }
            None => Transport::Plain,
        };
        let stream =
            TcpStream::connect(addr).map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        let _ = stream.set_nodelay(true);
        let conn = RedisConn::dial(stream, transport, role, addr, now);
        self.add_socket(Socket::Redis(Box::new(conn)), now)
            .ok_or_else(|| "cannot register the socket".to_string())
    }

    /// Opens the connections the bus asks for (a non-blocking connect: the
    /// link learns the outcome when its socket turns writable).
    pub(super) fn dial(&mut self, now: Instant) {
        // A draining node said goodbye: it links to no one again.
        if self.service.phase == Phase::Draining {
            return;
        }
        for dial in self.bus.due(now) {
            let (token, why) = match &dial {
                Dial::Peer { name, addr } => match TcpStream::connect(*addr) {
                    Ok(stream) => {
                        let _ = stream.set_nodelay(true);
                        let transport = match &self.link_tls {
                            Some(tls) => {
                                let host = crate::tls::LINK_SERVER_NAME;
                                match TlsBuffered::client(tls.client.clone(), host) {
                                    Ok(c) => Transport::Buffered(Box::new(c)),
                                    Err(e) => {
                                        warn!("link tls setup failed: {e}");
                                        self.bus.dialing(&dial, None, None, now);
                                        continue;
                                    }
                                }
                            }
                            None => Transport::Plain,
                        };
                        let link = PeerLink::dial(stream, transport, *addr, name, now);
                        self.service.stats.open_peers += 1;
                        (self.add_socket(Socket::Peer(Box::new(link)), now), None)
                    }
                    Err(e) => {
                        debug!("dial {name} ({addr}) failed: {e}");
                        (None, None)
                    }
                },
                Dial::Redis(role) => match self.dial_redis(*role, now) {
                    Ok(t) => (Some(t), None),
                    Err(why) => (None, Some(why)),
                },
            };
            self.bus.dialing(&dial, token, why.as_deref(), now);
        }
        let serving = self.service.phase != Phase::Starting;
        let next = self.bus.next_deadline(serving);
        self.bus_deadline.set(next, &mut self.timers, Key::Bus);
    }
}
