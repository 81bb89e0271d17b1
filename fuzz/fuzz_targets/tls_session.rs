//! `tls_session::TlsSession` (our buffers around rustls's unbuffered API)
//! against a real rustls client, in memory. The wire between them cuts the
//! client's bytes into input-chosen pieces, takes the server's writes only up
//! to an input-chosen budget before `WouldBlock`, and lets the input inject
//! or drop bytes on the way to the server. Checked:
//! - no panic; `buffered() <= INCOMING_MAX` after every read that returns Ok;
//! - `read`: `Full` only at `into.len() >= limit`, `Drained` only below it
//!   and with nothing left on the wire; what it reads is, in order, a prefix
//!   of what the client sent (all of it once the wire is quiet, unless bytes
//!   were tampered with), up to our close_notify (after it a closing session
//!   may hand up bytes as is, to be discarded);
//! - `write`: `Ok(true)` leaves nothing for `wants_write`; what the client
//!   decrypts is exactly the bytes `write` took from the `Output`, in order
//!   (all that was queued, unless tampered with), followed by a clean
//!   close_notify when one was asked for;
//! - with an honest client (nothing injected or dropped) no read or write
//!   fails and the handshake completes.
//!
//! An error from a read or write ends the iteration.
//!
//! Input: byte 0 picks the mode. `& 3` = 0: no client, the rest after two
//! bytes (piece size, write budget) is the whole client stream, so
//! ClientHello parsing is fuzzed; 1, 2, 3: a rustls client offering TLS 1.2
//! and 1.3, 1.2 only, 1.3 only. `>> 2 & 3`: its cipher suites (all, AES-128
//! only, ChaCha20 only). `& 16`: run the operations from the first flight
//! instead of after a completed handshake. `& 32`: resume a session from an
//! earlier connection. Then operations, one byte each plus arguments (see
//! `Op`), at most `MAX_OPS`.
#![no_main]

#[path = "tls_session_support.rs"]
mod support;

use std::io::{self, ErrorKind, Read, Write};
use std::rc::Rc;
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection};
use support::*;
use watercooler::conn::output::{Chunk, Output};
use watercooler::conn::tls_session::{TlsSession, INCOMING_MAX};
use watercooler::conn::io::ReadEnd;

/// One client, one server session, the wire between, and what each side
/// sent and got.
struct Pair {
    client: ClientConnection,
    server: TlsSession,
    wire: Wire,
    out: Output,
    scratch: Vec<u8>,
    /// Plaintext the client accepted, and the part the server read.
    sent: Vec<u8>,
    got: Vec<u8>,
    /// Plaintext pushed into `out`, and what the client decrypted.
    queued: Vec<u8>,
    decrypted: Vec<u8>,
    /// Bytes were injected into or dropped from the client's stream.
    tampered: bool,
    /// A read or write failed (or the client rejected what it got): stop.
    failed: bool,
    /// The client sends nothing more (close_notify or TCP shutdown).
    client_done: bool,
    close_asked: bool,
    /// A write ran with a close_notify asked for: from then on the session
    /// may hand up what the client sends as is, undecrypted (a closing
    /// connection only discards it), so reads are no longer compared.
    close_may_be_sent: bool,
    saw_close_notify: bool,
    key_updates: u8,
}

impl Pair {
    fn new(config: Arc<ClientConfig>) -> Pair {
        let name = ServerName::try_from("localhost").expect("server name");
        Pair {
            client: ClientConnection::new(config, name).expect("client"),
            server: TlsSession::new(server_config()).expect("server session"),
            wire: Wire {
                chunk: usize::MAX,
                ..Wire::default()
            },
            out: Output::default(),
            scratch: vec![0; SCRATCH],
            sent: Vec::new(),
            got: Vec::new(),
            queued: Vec::new(),
            decrypted: Vec::new(),
            tampered: false,
            failed: false,
            client_done: false,
            close_asked: false,
            close_may_be_sent: false,
            saw_close_notify: false,
            key_updates: 0,
        }
    }

    fn server_failed(&mut self, what: &str, e: io::Error) {
        assert!(
            self.tampered,
            "server {what} failed with an honest client: {e}"
        );
        self.failed = true;
    }

    fn client_failed(&mut self, e: impl std::fmt::Display) {
        assert!(self.tampered, "client rejected the server's bytes: {e}");
        self.failed = true;
    }

    /// Moves the client's pending records onto the wire (lost after a TCP
    /// shutdown).
    fn client_flush(&mut self) {
        let mut tls = Vec::new();
        while self.client.wants_write() {
            match self.client.write_tls(&mut tls) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        if !self.wire.eof {
            self.wire.to_server.extend(tls);
        }
    }

    fn client_send(&mut self, data: &[u8]) {
        if self.client_done {
            return;
        }
        let data = &data[..data.len().min(MAX_CLIENT_BYTES - self.sent.len())];
        let mut off = 0;
        while off < data.len() {
            // Before the handshake ends rustls buffers up to its limit.
            let n = self.client.writer().write(&data[off..]).unwrap_or(0);
            if n == 0 {
                break;
            }
            self.sent.extend_from_slice(&data[off..off + n]);
            off += n;
            self.client_flush();
        }
    }

    fn client_read(&mut self) {
        let mut pos = 0;
        loop {
            self.drain_plaintext();
            if self.failed || pos == self.wire.to_client.len() {
                break;
            }
            match self.client.read_tls(&mut &self.wire.to_client[pos..]) {
                // After a close_notify rustls reads nothing more.
                Ok(0) => pos = self.wire.to_client.len(),
                Ok(n) => pos += n,
                Err(e) => return self.client_failed(e),
            }
            match self.client.process_new_packets() {
                Ok(state) => self.saw_close_notify |= state.peer_has_closed(),
                Err(e) => return self.client_failed(e),
            }
        }
        self.wire.to_client.drain(..pos);
        assert!(
            self.queued.starts_with(&self.decrypted),
            "client decrypted bytes the server never queued, or out of order"
        );
        self.client_flush();
    }

    fn drain_plaintext(&mut self) {
        let mut buf = [0; 4096];
        loop {
            match self.client.reader().read(&mut buf) {
                Ok(0) => return,
                Ok(n) => self.decrypted.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) => return self.client_failed(e),
            }
        }
    }

    fn server_read(&mut self, limit: usize) -> Option<ReadEnd> {
        let mut into = Vec::new();
        let result = self
            .server
            .read(&mut self.wire, &mut self.scratch, &mut into, limit);
        if !self.close_may_be_sent {
            let at = self.got.len();
            assert!(
                self.sent.get(at..at + into.len()) == Some(&into[..]),
                "server read {} bytes at {at} that the client did not send there",
                into.len()
            );
            self.got.extend_from_slice(&into);
        }
        match result {
            Ok(end) => {
                assert!(self.server.buffered() <= INCOMING_MAX);
                match end {
                    ReadEnd::Full => assert!(into.len() >= limit, "Full below the limit"),
                    ReadEnd::Drained => {
                        assert!(into.len() < limit, "Drained at the limit");
                        assert!(self.wire.to_server.is_empty(), "Drained with bytes waiting");
                    }
                    ReadEnd::Eof => {}
                }
                Some(end)
            }
            Err(e) => {
                self.server_failed("read", e);
                None
            }
        }
    }

    fn server_write(&mut self, budget: usize) -> Option<bool> {
        self.close_may_be_sent |= self.close_asked;
        self.wire.budget = budget;
        match self.server.write(&mut self.wire, &mut self.out) {
            Ok(true) => {
                assert!(!self.server.wants_write(), "write done with records left");
                Some(true)
            }
            Ok(false) => {
                assert!(
                    self.wire.budget == 0 || !self.out.is_empty(),
                    "write stopped with room on the socket"
                );
                Some(false)
            }
            Err(e) => {
                self.server_failed("write", e);
                None
            }
        }
    }

    fn server_push(&mut self, len: usize, shared: bool) {
        if self.close_asked {
            return;
        }
        let start = self.queued.len();
        let len = len.min(MAX_SERVER_BYTES - start);
        let frame: Vec<u8> = (start..start + len).map(|p| pattern(p, 0x5e)).collect();
        self.queued.extend_from_slice(&frame);
        self.out.push(match shared {
            true => Chunk::Shared(Rc::from(frame)),
            false => Chunk::Owned(frame),
        });
    }

    /// One round trip with an unbounded socket.
    fn pump(&mut self) {
        self.client_flush();
        if self.server_read(usize::MAX).is_none() || self.server_write(usize::MAX).is_none() {
            return;
        }
        self.client_read();
    }

    fn quiet(&self) -> bool {
        self.wire.to_server.is_empty()
            && self.wire.to_client.is_empty()
            && !self.server.wants_write()
            && !self.client.wants_write()
    }

    /// Pumps until nothing moves (or the round cap).
    fn settle(&mut self) {
        for _ in 0..16 {
            self.pump();
            if self.failed || (self.quiet() && !self.client.is_handshaking()) {
                return;
            }
        }
    }

    fn op(&mut self, input: &mut Input) -> Option<()> {
        match input.byte()? % 17 {
            0 => {
                let n = usize::from(input.byte()?) + 1;
                self.client_send(input.take(n));
            }
            1 => {
                let n = usize::from(input.u16()?).min(MAX_ONE_SEND);
                let start = self.sent.len();
                let data: Vec<u8> = (start..start + n).map(|p| pattern(p, 0xc1)).collect();
                self.client_send(&data);
            }
            2 => {
                let n = usize::from(input.byte()?) + 1;
                self.wire.to_server.extend(input.take(n));
                self.tampered = true;
            }
            3 => {
                // A record header of any type and length, then filler: an
                // oversized record, or a long handshake record, from a few
                // input bytes.
                let typ = input.byte()?;
                let len = input.u16()?;
                let fill = input.byte()?;
                let [hi, lo] = len.to_be_bytes();
                self.wire.to_server.extend([typ, 3, 3, hi, lo]);
                let n = usize::from(len).min(MAX_RECORD + 16);
                self.wire.to_server.extend(std::iter::repeat_n(fill, n));
                self.tampered = true;
            }
            4 => {
                let n = usize::from(input.byte()?) + 1;
                let keep = self.wire.to_server.len().saturating_sub(n);
                self.tampered |= keep < self.wire.to_server.len();
                self.wire.to_server.truncate(keep);
            }
            5 => self.wire.chunk = size(input.byte()?),
            6 => self.wire.budget = budget(input.byte()?),
            7 => {
                let limit = limit(input.byte()?);
                self.server_read(limit);
            }
            8 => {
                let shared = input.byte()? & 1 == 1;
                let n = usize::from(input.u16()?).min(MAX_ONE_SEND);
                self.server_push(n, shared);
            }
            9 => {
                let budget = self.wire.budget;
                self.server_write(budget);
            }
            10 => self.client_read(),
            11 => {
                self.server.close_notify();
                self.close_asked = true;
            }
            12 => {
                // Only after the handshake: rustls would send the alert
                // ahead of plaintext it still holds.
                if !self.client_done && !self.client.is_handshaking() {
                    self.client.send_close_notify();
                    self.client_flush();
                    self.client_done = true;
                }
            }
            13 => {
                if !self.client_done
                    && !self.client.is_handshaking()
                    && self.key_updates < MAX_KEY_UPDATES
                {
                    self.key_updates += 1;
                    // TLS 1.2 has no key update: Err, nothing sent.
                    let _ = self.client.refresh_traffic_keys();
                    self.client_flush();
                }
            }
            14 => {
                // TCP shutdown, once the client has said all it had to.
                if !self.client.is_handshaking() && !self.client.wants_write() {
                    self.wire.eof = true;
                    self.client_done = true;
                }
            }
            15 => self.pump(),
            _ => {
                self.wire.interrupt_read = true;
                self.wire.interrupt_write = true;
            }
        }
        Some(())
    }

    /// The checks once the wire is quiet.
    fn check_end(&mut self) {
        let taken = self.queued.len() - self.out.len();
        assert!(
            self.decrypted == self.queued[..taken],
            "client decrypted {} bytes, write took {taken} from the queue",
            self.decrypted.len()
        );
        if self.tampered {
            return;
        }
        assert!(!self.client.is_handshaking(), "handshake did not finish");
        if !self.close_may_be_sent {
            assert_eq!(self.got.len(), self.sent.len(), "server did not read all");
        }
        assert!(self.out.is_empty(), "queued bytes never written");
        // After our close_notify the session stops feeding rustls, and a
        // record cut in two by that moment stays in its buffer until it is
        // dropped: the idle-holds-nothing check stops there.
        if !self.close_may_be_sent {
            assert_eq!(
                self.server.buffered(),
                0,
                "TLS bytes held after a quiet wire"
            );
        }
        if self.close_asked {
            assert!(
                self.saw_close_notify,
                "close_notify asked for, not received"
            );
        }
    }
}

/// The input is the client's whole stream: ClientHello parsing and the
/// handshake's first flight. No plaintext may come out of it.
fn raw_client(data: &[u8]) {
    let [chunk, write_budget, stream @ ..] = data else {
        return;
    };
    let mut server = TlsSession::new(server_config()).expect("server session");
    let mut wire = Wire {
        to_server: stream.iter().copied().collect(),
        chunk: size(*chunk),
        ..Wire::default()
    };
    let mut out = Output::default();
    out.push(Chunk::Owned(b"HTTP/1.1 200 OK\r\n\r\n".to_vec()));
    let mut scratch = vec![0; SCRATCH];
    let mut into = Vec::new();
    for _ in 0..2 {
        let read = server.read(&mut wire, &mut scratch, &mut into, usize::MAX);
        assert!(into.is_empty(), "plaintext from a client without keys");
        match read {
            Ok(_) => assert!(server.buffered() <= INCOMING_MAX),
            Err(_) => break,
        }
        wire.budget = budget(*write_budget);
        if server.write(&mut wire, &mut out).is_err() {
            break;
        }
        wire.eof = true;
    }
    check_records(&wire.to_client);
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let Some(mode) = input.byte() else {
        return;
    };
    let versions = mode & 3;
    if versions == 0 {
        return raw_client(input.0);
    }
    let suites = (mode >> 2) & 3;
    let config = match mode & 32 != 0 {
        true => {
            // A first connection leaves a session (ticket or id) to resume.
            let config = client_config(versions, suites, true);
            let mut first = Pair::new(config.clone());
            first.settle();
            first.check_end();
            config
        }
        false => cached_client_config(versions, suites),
    };
    let mut pair = Pair::new(config);
    if mode & 16 == 0 {
        pair.settle();
        assert!(!pair.failed && !pair.client.is_handshaking(), "handshake");
    }
    for _ in 0..MAX_OPS {
        if pair.failed || pair.op(&mut input).is_none() {
            break;
        }
    }
    if !pair.failed {
        pair.settle();
    }
    if !pair.failed {
        pair.check_end();
    }
});
