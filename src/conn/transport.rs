//! Plain TCP or rustls under the same three calls (read what is there,
//! write what is queued, say goodbye), so the HTTP state machine above is the
//! same on both ports. Everything drains to `WouldBlock`, as mio's
//! edge-triggered readiness requires. The stream is any `Read + Write`: a
//! non-blocking socket in the node, bytes in memory in unit tests.

use std::io::{self, ErrorKind, IoSlice, Read, Write};

use super::io::{read_once, ReadEnd};
use super::output::{Output, MAX_SLICES};
use super::tls_buffered::TlsBuffered;
use super::tls_session::TlsSession;

pub enum Transport {
    Plain,
    Tls(Box<TlsSession>),
    /// A link's TLS (either end), or an outgoing one (`rediss://`).
    Buffered(Box<TlsBuffered>),
}

impl Transport {
    /// Reads into `into` until drained, end of stream, or `into.len() >= limit`.
    /// `scratch` is the reactor's one read buffer, so an idle connection holds
    /// none of its own.
    pub fn read(
        &mut self,
        stream: &mut (impl Read + Write),
        scratch: &mut [u8],
        into: &mut Vec<u8>,
        limit: usize,
    ) -> io::Result<ReadEnd> {
        match self {
            Transport::Plain => loop {
                if into.len() >= limit {
                    return Ok(ReadEnd::Full);
                }
                let want = scratch.len().min(limit - into.len());
                match read_once(stream, &mut scratch[..want])? {
                    None => return Ok(ReadEnd::Drained),
                    Some(0) => return Ok(ReadEnd::Eof),
                    Some(n) => into.extend_from_slice(&scratch[..n]),
                }
            },
            Transport::Tls(tls) => tls.read(stream, scratch, into, limit),
            Transport::Buffered(tls) => tls.read(stream, scratch, into, limit),
        }
    }

    /// Writes as much of `out` as the socket takes. Ok(true) when everything
    /// (including TLS records and handshake messages) has left.
    pub fn write(&mut self, stream: &mut impl Write, out: &mut Output) -> io::Result<bool> {
        match self {
            Transport::Plain => {
                while !out.is_empty() {
                    let written = match out.single() {
                        // The common case, a listener that keeps up: one
                        // frame, one plain write (no slice array to fill).
                        Some(bytes) => stream.write(bytes),
                        None => {
                            let mut slices = [IoSlice::new(&[]); MAX_SLICES];
                            let n = out.slices(&mut slices);
                            stream.write_vectored(&slices[..n])
                        }
                    };
                    let n = match written {
                        Ok(0) => return Err(ErrorKind::WriteZero.into()),
                        Ok(n) => n,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
                        Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                        Err(e) => return Err(e),
                    };
                    out.consume(n);
                }
                Ok(true)
            }
            Transport::Tls(tls) => tls.write(stream, out),
            Transport::Buffered(tls) => tls.write(stream, out),
        }
    }

    /// TLS: queue a close_notify (sent by the next `write`). Plain: nothing.
    pub fn close_notify(&mut self) {
        match self {
            Transport::Plain => {}
            Transport::Tls(tls) => tls.close_notify(),
            Transport::Buffered(tls) => tls.close_notify(),
        }
    }

    /// TLS chose HTTP/2 by ALPN.
    pub fn chose_h2(&self) -> bool {
        match self {
            Transport::Plain | Transport::Buffered(_) => false,
            Transport::Tls(tls) => tls.alpn() == Some(b"h2"),
        }
    }

    /// A buffered TLS session (a link's) has not finished its handshake.
    pub fn handshaking(&self) -> bool {
        matches!(self, Transport::Buffered(tls) if tls.is_handshaking())
    }

    /// A link's TLS exporter value (`None`: plain, or still handshaking).
    pub fn exporter(&self, label: &[u8]) -> Option<[u8; super::tls_buffered::EXPORTER_LEN]> {
        match self {
            Transport::Buffered(tls) => tls.exporter(label),
            _ => None,
        }
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, Transport::Tls(_) | Transport::Buffered(_))
    }

    /// True when rustls has records to send that `write` has not flushed.
    pub fn wants_write(&self) -> bool {
        match self {
            Transport::Plain => false,
            Transport::Tls(tls) => tls.wants_write(),
            Transport::Buffered(tls) => tls.wants_write(),
        }
    }
}
