//! What each frame does on a link: the handshake's steps (Hello, Challenge,
//! Proof, State), then a linked peer's frames (replay, messages, members,
//! presence, pings, leave). `mod.rs` moves the bytes and keeps the time.

use std::net::SocketAddr;

use super::{PeerLink, Phase, PING_EVERY};
use crate::bus::mesh::handshake::{self, Role, Transcript};
use crate::bus::mesh::wire::{self, Frame, VERSION};
use crate::bus::mesh::Mesh;
use crate::conn::output::Chunk;
use crate::conn::Env;
use crate::conn::Stream;
use crate::{info, warn};

impl<S: Stream> PeerLink<S> {
    /// What the proofs bind to: the TLS session's exporter value, or
    /// nothing on a clear link. A TLS link gets here only after its
    /// handshake (frames are its application data).
    fn exporter(&self) -> Result<Vec<u8>, String> {
        if !self.pipe.transport.is_tls() {
            return Ok(Vec::new());
        }
        self.pipe
            .transport
            .exporter(handshake::EXPORTER_LABEL)
            .map(|e| e.to_vec())
            .ok_or_else(|| "no TLS exporter".to_string())
    }

    /// Says plainly that the two nodes hold different cookies: at WARN the
    /// first time, then at debug while it goes on (redials back off to a
    /// minute meanwhile).
    fn cookie_mismatch(&self, first: bool, how: &str) {
        let text = format!(
            "{} does not know our cookie: it holds a different one than this node's cluster \
             file ({how}); link refused; both nodes need the same `cookie` line",
            self.who()
        );
        if first {
            warn!("{text}");
        } else {
            crate::debug!("{text}");
        }
    }

    /// `name`'s proof does not match our cookie: say so, count it, refuse.
    fn wrong_proof(&mut self, name: &str, env: &mut Env, mesh: &mut Mesh) {
        let first = mesh.members.cookie_refused(name);
        self.cookie_mismatch(first, "its proof does not match our cookie");
        env.service.stats.peer_refused += 1;
        self.refuse("wrong cookie");
    }

    fn refuse(&mut self, reason: &str) {
        self.send(&Frame::Refuse {
            reason: reason.to_string(),
        });
        self.phase = Phase::Closing;
    }

    pub(super) fn on_frame(
        &mut self,
        frame: Frame,
        env: &mut Env,
        mesh: &mut Mesh,
    ) -> Result<(), String> {
        let me = mesh.members.me.clone();
        match (&self.phase, frame) {
            (_, Frame::Refuse { reason }) => {
                if reason == "wrong cookie" {
                    let first = mesh
                        .members
                        .cookie_refused(self.name.as_deref().unwrap_or(""));
                    self.cookie_mismatch(first, "it refused our proof");
                } else if reason.starts_with("simultaneous dial") || reason == "already linked" {
                    // The normal race of two nodes dialling each other.
                    crate::debug!("{} refused the link: {reason}", self.who());
                } else {
                    warn!("{} refused the link: {reason}", self.who());
                }
                Err(format!("refused: {reason}"))
            }
            (
                Phase::AwaitHello,
                Frame::Hello {
                    version,
                    name,
                    addr,
                    nonce,
                },
            ) => {
                self.name = Some(name.clone());
                if version != VERSION {
                    self.refuse("unsupported protocol version");
                    return Err(format!("protocol version {version}"));
                }
                if name == me {
                    self.refuse("that name is mine");
                    return Err("claims this node's name".into());
                }
                if let Some(k) = mesh.members.get(&name) {
                    if k.link.is_some() {
                        warn!("{} claims a name already linked: refused", self.who());
                        self.refuse("already linked");
                        return Ok(());
                    }
                    // Both dialled at once: the link dialled by the smaller
                    // name survives, on both sides.
                    if k.dialing.is_some() && me < name {
                        self.refuse("simultaneous dial: the other link wins");
                        return Ok(());
                    }
                }
                mesh.members.incoming(&name, env.token.0 as u64);
                let mine = handshake::nonce();
                let exporter = self.exporter()?;
                let t = Transcript {
                    exporter: &exporter,
                    dialer: &name,
                    acceptor: &me,
                    dialer_nonce: &nonce,
                    acceptor_nonce: &mine,
                };
                let secret = handshake::secret();
                let share = handshake::share(&secret, &handshake::generator(&mesh.cookie, &t));
                self.send(&Frame::Challenge {
                    name: me.clone(),
                    nonce: mine,
                    share,
                });
                self.phase = Phase::AwaitProof {
                    addr,
                    theirs: nonce,
                    mine,
                    secret,
                    share,
                };
                Ok(())
            }
            (
                Phase::AwaitChallenge { nonce },
                Frame::Challenge {
                    name,
                    nonce: theirs,
                    share: their_share,
                },
            ) => {
                let nonce = *nonce;
                if self.name.as_deref() != Some(name.as_str()) {
                    return Err(format!("answered as {name}"));
                }
                let exporter = self.exporter()?;
                let t = Transcript {
                    exporter: &exporter,
                    dialer: &me,
                    acceptor: &name,
                    dialer_nonce: &nonce,
                    acceptor_nonce: &theirs,
                };
                let secret = handshake::secret();
                let share = handshake::share(&secret, &handshake::generator(&mesh.cookie, &t));
                let Some(key) = handshake::session_key(&secret, &their_share, &share, &their_share)
                else {
                    return Err("a key-exchange share of small order".into());
                };
                let mac = handshake::mac(&key, Role::Dialer, &t);
                self.send(&Frame::Proof { share, mac });
                self.phase = Phase::AwaitTheirProof {
                    mine: nonce,
                    theirs,
                    key,
                    their_share,
                };
                Ok(())
            }
            (
                Phase::AwaitTheirProof {
                    mine,
                    theirs,
                    key,
                    their_share,
                },
                Frame::Proof { share, mac },
            ) => {
                let name = self.name.clone().unwrap_or_default();
                let exporter = self.exporter()?;
                let t = Transcript {
                    exporter: &exporter,
                    dialer: &me,
                    acceptor: &name,
                    dialer_nonce: mine,
                    acceptor_nonce: theirs,
                };
                if share != *their_share || !handshake::verify(key, Role::Acceptor, &t, &mac) {
                    self.wrong_proof(&name, env, mesh);
                    return Ok(());
                }
                self.phase = Phase::AwaitState;
                Ok(())
            }
            (
                Phase::AwaitProof {
                    addr,
                    theirs,
                    mine,
                    secret,
                    share: my_share,
                },
                Frame::Proof { share, mac },
            ) => {
                let name = self.name.clone().unwrap_or_default();
                let exporter = self.exporter()?;
                let t = Transcript {
                    exporter: &exporter,
                    dialer: &name,
                    acceptor: &me,
                    dialer_nonce: theirs,
                    acceptor_nonce: mine,
                };
                let key = handshake::session_key(secret, &share, &share, my_share);
                let proven = key.filter(|k| handshake::verify(k, Role::Dialer, &t, &mac));
                let Some(key) = proven else {
                    mesh.guess_failed(self.addr.ip(), env.now);
                    self.wrong_proof(&name, env, mesh);
                    return Ok(());
                };
                mesh.guess_passed(self.addr.ip());
                if mesh.members.get(&name).is_some_and(|k| k.link.is_some()) {
                    self.refuse("already linked");
                    return Ok(());
                }
                let Ok(addr) = addr.parse::<SocketAddr>() else {
                    self.refuse("bad cluster address");
                    return Ok(());
                };
                let mac = handshake::mac(&key, Role::Acceptor, &t);
                let share = *my_share;
                self.send(&Frame::Proof { share, mac });
                mesh.members.learn(&name, addr, false, env.now);
                self.up(env, mesh);
                Ok(())
            }
            (Phase::AwaitState, frame @ Frame::State { .. }) => {
                let name = self.name.clone().unwrap_or_default();
                if mesh.members.get(&name).is_some_and(|k| k.link.is_some()) {
                    // An accepted link from the same node won meanwhile.
                    self.phase = Phase::Closing;
                    return Ok(());
                }
                self.up(env, mesh);
                self.on_frame(frame, env, mesh)
            }
            (Phase::Up { .. }, frame) => self.on_link_frame(frame, env, mesh),
            (_, frame) => Err(format!("unexpected {} during the handshake", kind(&frame))),
        }
    }

    /// The handshake is done: say what we have, whom we know, and start pinging.
    fn up(&mut self, env: &mut Env, mesh: &mut Mesh) {
        let name = self.name.clone().unwrap_or_default();
        if mesh.members.link_up(&name, env.token.0 as u64) {
            env.service.stats.peer_reconnects += 1;
        }
        self.phase = Phase::Up { replayed: false };
        self.was_up = true;
        info!(
            "link up with {} ({})",
            self.who(),
            if self.dialed { "dialled" } else { "accepted" }
        );
        env.service.stats.peer_links_up += 1;
        self.send(&Frame::State {
            clock: env.service.rooms.clock().entries().to_vec(),
            floors: env.service.rooms.floors().entries().to_vec(),
            listeners: env.service.listeners.len() as u32,
        });
        self.send(&mesh.nodes_frame());
        self.deadline = env.now + PING_EVERY;
    }

    fn on_link_frame(
        &mut self,
        frame: Frame,
        env: &mut Env,
        mesh: &mut Mesh,
    ) -> Result<(), String> {
        let name = self.name.clone().unwrap_or_default();
        match frame {
            Frame::State {
                clock,
                floors,
                listeners,
            } => {
                mesh.members.set_listeners(&name, listeners as usize, None);
                self.peer_floors = crate::room::Clock::from_entries(&floors);
                // Replay what the peer has not seen, in our history's order.
                let seen = crate::room::Clock::from_entries(&clock);
                let mut sent = 0;
                let mut buf = Vec::new();
                for e in env.service.rooms.history() {
                    if e.seq > seen.get(e.origin) {
                        wire::encode_message(e.origin, e.seq, &e.room, &e.text, &mut buf);
                        sent += 1;
                    }
                }
                wire::encode(&Frame::Synced, &mut buf);
                self.pipe.output.push(Chunk::Owned(buf));
                self.phase = Phase::Up { replayed: true };
                if sent > 0 {
                    info!("replayed {sent} messages to {}", self.who());
                }
                Ok(())
            }
            Frame::Synced => {
                mesh.members.synced(&name);
                Ok(())
            }
            Frame::Message {
                origin,
                seq,
                room,
                text,
            } => {
                let now = crate::service::now_micros();
                let rooms = &mut env.service.rooms;
                // The peer's history lost what it had of this origin up to
                // its floor; taking a newer one means never taking those:
                // remember, so a resume behind them says missed.
                let floor = self.peer_floors.get(origin);
                if rooms.clock().get(origin) < floor && seq > floor {
                    rooms.mark_lost(origin, floor);
                }
                if rooms.accept(origin, seq, &room, text.into(), now).is_some() {
                    env.service.stats.published_remote += 1;
                }
                Ok(())
            }
            Frame::Nodes { nodes } => {
                for (name, addr) in nodes {
                    if let Ok(addr) = addr.parse::<SocketAddr>() {
                        if mesh.members.learn(&name, addr, false, env.now) {
                            info!("learned of {name} ({addr}) from {}", self.who());
                        }
                    }
                }
                Ok(())
            }
            Frame::Presence { listeners, rooms } => {
                let rooms = rooms.into_iter().map(|(r, n)| (r, n as usize)).collect();
                mesh.members
                    .set_listeners(&name, listeners as usize, Some(rooms));
                Ok(())
            }
            Frame::Ping => {
                self.send(&Frame::Pong);
                Ok(())
            }
            Frame::Pong => Ok(()),
            Frame::Leave => {
                info!("{} is leaving the cluster", self.who());
                self.left = true;
                Ok(())
            }
            other => Err(format!("unexpected {} on a linked peer", kind(&other))),
        }
    }
}

fn kind(f: &Frame) -> &'static str {
    match f {
        Frame::Hello { .. } => "Hello",
        Frame::Challenge { .. } => "Challenge",
        Frame::Proof { .. } => "Proof",
        Frame::Refuse { .. } => "Refuse",
        Frame::State { .. } => "State",
        Frame::Synced => "Synced",
        Frame::Message { .. } => "Message",
        Frame::Nodes { .. } => "Nodes",
        Frame::Presence { .. } => "Presence",
        Frame::Ping => "Ping",
        Frame::Pong => "Pong",
        Frame::Leave => "Leave",
    }
}
