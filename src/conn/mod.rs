//! Per-socket state machines over a `Transport` (plain or TLS), and what
//! they share. A connection owns its stream and a `Pipe` (its input and
//! output bytes and its transport); the reactor calls its handlers (`ready`,
//! `expired`, …), each of which reports a `Step`; the reactor then derives
//! the socket's interest from `wants_write` and its timer from `deadline`,
//! and removes closed sockets after the batch. Nothing here registers with
//! mio or touches the timer queue, so every connection is unit-tested over
//! bytes in memory.
//!
//! - `http1`: an HTTP/1.1 connection (framing only; the service answers);
//! - `h2`: an HTTP/2 connection around the sans-IO core in `crate::h2`;
//! - `transport`, `tls_session`, `tls_buffered`: plain TCP or rustls (the
//!   browsers' server sessions; the buffered ones of links and Redis) under
//!   one interface;
//! - `output`: a socket's pending output (shared SSE frames, vectored writes);
//! - `io`: the read call everything is built on.

pub mod h2;
pub mod http1;
pub mod io;
pub mod output;
pub mod tls_buffered;
pub mod tls_session;
pub mod transport;

use std::io::{Read, Write};
use std::time::Instant;

use mio::Token;

use crate::http::response::DateCache;
use crate::service::Service;
use io::ReadEnd;
use output::Output;
use transport::Transport;

/// What a handler wants next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Keep,
    Close,
    /// An HTTP/1.1 connection turns out to speak HTTP/2 (its preface, or
    /// ALPN `h2`): the loop hands its bytes to an `h2::H2Conn`.
    Upgrade,
}

/// What a connection's handlers may use besides the connection.
pub struct Env<'a> {
    pub now: Instant,
    /// The connection's own token (a listener names its connection by it).
    pub token: Token,
    /// The one read buffer every socket reads through.
    pub scratch: &'a mut [u8],
    pub service: &'a mut Service,
    pub date: &'a mut DateCache,
    /// Set when reading stopped with bytes possibly left (read budget spent,
    /// or answers left after a pause): the loop calls `ready` again before
    /// it sleeps (mio will not say so again).
    pub more: bool,
    /// Set when the connection started holding its output for the turn's
    /// log commit: the loop releases it once the commit succeeded.
    pub hold: bool,
}

/// What the poll said of a socket (or the loop, for the pending list).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ready {
    pub readable: bool,
    pub writable: bool,
}

impl Ready {
    pub const READ: Ready = Ready {
        readable: true,
        writable: false,
    };
    pub const WRITE: Ready = Ready {
        readable: false,
        writable: true,
    };
}

/// A byte stream a connection can run over: a non-blocking socket in the
/// node, bytes in memory in tests.
pub trait Stream: Read + Write {
    /// Shuts our sending side (a lingering close); errors are ignored.
    fn shut_write(&mut self);

    /// For a non-blocking connect: Ok(true) once connected, Ok(false)
    /// while it is still under way, the error if it failed.
    fn connected(&mut self) -> std::io::Result<bool>;
}

impl Stream for mio::net::TcpStream {
    fn shut_write(&mut self) {
        let _ = self.shutdown(std::net::Shutdown::Write);
    }

    fn connected(&mut self) -> std::io::Result<bool> {
        if let Some(e) = self.take_error()? {
            return Err(e);
        }
        match self.peer_addr() {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotConnected => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// How a read round ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Got {
    /// Everything available was read.
    Drained,
    /// The peer closed.
    Eof,
    /// The input holds `limit` bytes: consume some before reading more.
    Full,
    /// This turn's read budget is spent and bytes may be waiting: the loop
    /// reads again before it sleeps (mio will not say so again).
    Spent,
}

/// A connection's bytes: its stream, the transport over it, what was read
/// and not yet used, and what waits to be written.
pub struct Pipe<S> {
    pub stream: S,
    pub transport: Transport,
    pub input: Vec<u8>,
    pub output: Output,
    /// Nothing is written while set: an answer in `output` acknowledges a
    /// message the history log has not committed yet (`service::durable`).
    pub hold: bool,
}

impl<S: Stream> Pipe<S> {
    pub fn new(stream: S, transport: Transport) -> Pipe<S> {
        Pipe {
            stream,
            transport,
            input: Vec::new(),
            output: Output::default(),
            hold: false,
        }
    }

    /// Reads until drained, the end of the stream, `limit` bytes of input
    /// held, or `budget` bytes read (counted down). `scratch` is the
    /// reactor's one read buffer, so an idle connection holds none.
    pub fn read(
        &mut self,
        scratch: &mut [u8],
        limit: usize,
        budget: &mut usize,
    ) -> std::io::Result<Got> {
        let cap = limit.min(self.input.len().saturating_add(*budget));
        let before = self.input.len();
        let end = self
            .transport
            .read(&mut self.stream, scratch, &mut self.input, cap)?;
        *budget = budget.saturating_sub(self.input.len().saturating_sub(before));
        Ok(match end {
            ReadEnd::Drained => Got::Drained,
            ReadEnd::Eof => Got::Eof,
            ReadEnd::Full if self.input.len() >= limit => Got::Full,
            ReadEnd::Full => Got::Spent,
        })
    }

    /// Writes what is queued; returns the bytes that left, and whether
    /// everything (TLS records included) has.
    pub fn flush(&mut self) -> std::io::Result<(usize, bool)> {
        if self.hold {
            return Ok((0, false));
        }
        let before = self.output.len();
        let done = self.transport.write(&mut self.stream, &mut self.output)?;
        Ok((before - self.output.len(), done))
    }

    /// Holds the output if the answer just made must wait for the turn's
    /// log commit; the loop is told (`Env::hold`) so it lets it go after.
    pub fn hold_if_waiting(&mut self, env: &mut Env) {
        if env.service.take_answer_waits() && !self.hold {
            self.hold = true;
            env.hold = true;
        }
    }

    /// Bytes wait to be written: the loop asks for WRITABLE.
    pub fn wants_write(&self) -> bool {
        !self.output.is_empty() || self.transport.wants_write()
    }

    /// Drops the input buffer's storage once it is used up: an idle
    /// connection holds no buffer.
    pub fn release_input(&mut self) {
        if self.input.is_empty() {
            self.input = Vec::new();
        }
    }
}

#[cfg(test)]
pub mod mem {
    //! A stream in memory for the connection tests: what the client sends
    //! is read in pieces of `chunk` bytes (`WouldBlock` when none is left);
    //! what we write is kept, `room` bytes at a time (a slow reader).

    use std::io::{self, ErrorKind, Read, Write};

    #[derive(Default)]
    pub struct MemStream {
        pub incoming: Vec<u8>,
        pub read_at: usize,
        /// Most bytes one read returns (0 = all).
        pub chunk: usize,
        /// The client closed its side once `incoming` is read.
        pub eof: bool,
        pub written: Vec<u8>,
        /// Bytes a write may still put; `None` = unlimited.
        pub room: Option<usize>,
        pub shut: bool,
    }

    impl MemStream {
        pub fn send(&mut self, bytes: &[u8]) {
            self.incoming.extend_from_slice(bytes);
        }

        pub fn take_written(&mut self) -> String {
            String::from_utf8_lossy(&std::mem::take(&mut self.written)).into_owned()
        }
    }

    impl Read for MemStream {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let left = self.incoming.len() - self.read_at;
            if left == 0 {
                return if self.eof {
                    Ok(0)
                } else {
                    Err(ErrorKind::WouldBlock.into())
                };
            }
            let mut n = left.min(buf.len());
            if self.chunk > 0 {
                n = n.min(self.chunk);
            }
            buf[..n].copy_from_slice(&self.incoming[self.read_at..self.read_at + n]);
            self.read_at += n;
            Ok(n)
        }
    }

    impl Write for MemStream {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = match self.room {
                Some(0) => return Err(ErrorKind::WouldBlock.into()),
                Some(r) => r.min(buf.len()),
                None => buf.len(),
            };
            if let Some(r) = &mut self.room {
                *r -= n;
            }
            self.written.extend_from_slice(&buf[..n]);
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl super::Stream for MemStream {
        fn shut_write(&mut self) {
            self.shut = true;
        }

        fn connected(&mut self) -> io::Result<bool> {
            Ok(true)
        }
    }
}
