//! One server TLS session on rustls's unbuffered API. We own both byte
//! buffers, so they exist only while bytes are in flight: an idle listener
//! holds none (rustls's buffered `ServerConnection` keeps a 4 KiB read buffer
//! per connection for its whole life).

use std::io::{self, ErrorKind, Read, Write};
use std::sync::Arc;

use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncryptError, UnbufferedStatus, WriteTraffic,
};
use rustls::ServerConfig;

use crate::output::Output;
use crate::transport::ReadEnd;

/// Most TLS bytes waiting for rustls: a handshake message may span records
/// up to 64 KiB (rustls's own limit), plus one full record behind it.
pub const INCOMING_MAX: usize = 64 * 1024 + 18 * 1024;

/// Most plaintext encrypted per round; the rest waits in `Output`, where
/// frames are shared, not copied.
const SEND_WINDOW: usize = 16 * 1024;

/// Room for one record's header, content type, padding and tag.
const RECORD_OVERHEAD: usize = 64;

/// The socket under a session: a non-blocking TCP stream in the node, bytes
/// in memory in the fuzz target.
pub trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

pub struct TlsSession {
    conn: UnbufferedServerConnection,
    /// TLS bytes read and not yet used by rustls (a partial record).
    incoming: Vec<u8>,
    /// Records to send; `sent` of them have left.
    outgoing: Vec<u8>,
    sent: usize,
    /// The handshake is done: application data may be encrypted.
    open: bool,
    /// A close_notify was asked for and is not yet encoded.
    close_asked: bool,
    /// The client sent close_notify.
    peer_closed: bool,
}

/// What `drive` does with the plaintext.
enum Io<'a> {
    /// Appends what the client sent.
    Read(&'a mut Vec<u8>),
    /// Encrypts from here (and a close_notify asked for once it drains).
    Write(&'a mut Output),
}

/// Where rustls stopped.
#[derive(PartialEq)]
enum Stop {
    /// It needs more bytes from the client.
    NeedInput,
    /// It may encrypt application data now.
    CanWrite,
    /// Both sides said close_notify: nothing more moves.
    Closed,
}

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(ErrorKind::InvalidData, e.to_string())
}

impl TlsSession {
    pub fn new(config: Arc<ServerConfig>) -> Result<TlsSession, rustls::Error> {
        Ok(TlsSession {
            conn: UnbufferedServerConnection::new(config)?,
            incoming: Vec::new(),
            outgoing: Vec::new(),
            sent: 0,
            open: false,
            close_asked: false,
            peer_closed: false,
        })
    }

    /// Reads until drained, end of stream, or `into.len() >= limit`; the
    /// plaintext goes to `into` and any handshake answer waits for `write`.
    pub fn read(
        &mut self,
        stream: &mut impl ReadWrite,
        scratch: &mut [u8],
        into: &mut Vec<u8>,
        limit: usize,
    ) -> io::Result<ReadEnd> {
        loop {
            if self.peer_closed {
                return Ok(ReadEnd::Eof);
            }
            if into.len() >= limit {
                return Ok(ReadEnd::Full);
            }
            let n = match stream.read(scratch) {
                Ok(0) => return Ok(ReadEnd::Eof),
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(ReadEnd::Drained),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.incoming.extend_from_slice(&scratch[..n]);
            if let Err(e) = self.drive(Io::Read(into)) {
                // Tell the client why (rustls queued an alert) before we
                // close; the bytes that failed are not looked at again.
                self.incoming = Vec::new();
                self.encode_alerts();
                let _ = self.flush(stream);
                return Err(e);
            }
            if self.incoming.len() > INCOMING_MAX {
                return Err(invalid("TLS input beyond any record or handshake message"));
            }
        }
    }

    /// Writes what rustls and `out` have to send. Ok(true) once everything,
    /// handshake records and close_notify included, has left.
    pub fn write(&mut self, stream: &mut impl ReadWrite, out: &mut Output) -> io::Result<bool> {
        loop {
            if !self.flush(stream)? {
                return Ok(false);
            }
            let close = self.close_asked && out.is_empty();
            if (out.is_empty() && !close) || !self.open {
                return Ok(out.is_empty());
            }
            if self.drive(Io::Write(out))? != Stop::CanWrite {
                // Closed: nothing more can be sent.
                return Ok(true);
            }
        }
    }

    /// Queues a close_notify, sent by the next `write` after `out` drains.
    pub fn close_notify(&mut self) {
        self.close_asked = true;
    }

    /// TLS bytes held for rustls (bounded by `INCOMING_MAX`).
    pub fn buffered(&self) -> usize {
        self.incoming.len()
    }

    /// True when records wait to be written (or a close_notify to be made).
    pub fn wants_write(&self) -> bool {
        self.sent < self.outgoing.len() || (self.close_asked && self.open)
    }

    /// Writes `outgoing` until it is empty (true) or the socket is full.
    fn flush(&mut self, stream: &mut impl Write) -> io::Result<bool> {
        while self.sent < self.outgoing.len() {
            match stream.write(&self.outgoing[self.sent..]) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        // Release the buffer: an idle connection holds no TLS bytes.
        self.outgoing = Vec::new();
        self.sent = 0;
        Ok(true)
    }

    /// Lets rustls use what `incoming` holds: decrypted application data goes
    /// to a read's buffer, handshake records and a write's records to
    /// `outgoing`. Stops where rustls needs the caller.
    fn drive(&mut self, mut io: Io) -> io::Result<Stop> {
        loop {
            let UnbufferedStatus { mut discard, state } =
                self.conn.process_tls_records(&mut self.incoming);
            let stop = match state.map_err(invalid)? {
                ConnectionState::ReadTraffic(mut traffic) => {
                    // Only a read gets here: `read` lets rustls use every
                    // whole record, so `write` finds none waiting.
                    let Io::Read(into) = &mut io else {
                        return Err(invalid("TLS application data outside a read"));
                    };
                    while let Some(record) = traffic.next_record() {
                        let record = record.map_err(invalid)?;
                        discard += record.discard;
                        into.extend_from_slice(record.payload);
                    }
                    None
                }
                ConnectionState::EncodeTlsData(mut encode) => {
                    let start = self.outgoing.len();
                    let mut room = RECORD_OVERHEAD;
                    loop {
                        self.outgoing.resize(start + room, 0);
                        match encode.encode(&mut self.outgoing[start..]) {
                            Ok(n) => {
                                self.outgoing.truncate(start + n);
                                break;
                            }
                            Err(EncodeError::InsufficientSize(e)) if e.required_size > room => {
                                room = e.required_size;
                            }
                            Err(e) => {
                                self.outgoing.truncate(start);
                                return Err(invalid(e));
                            }
                        }
                    }
                    None
                }
                // The records wait in `outgoing`, ahead of anything later.
                ConnectionState::TransmitTlsData(transmit) => {
                    transmit.done();
                    None
                }
                ConnectionState::BlockedHandshake => Some(Stop::NeedInput),
                ConnectionState::WriteTraffic(mut traffic) => {
                    self.open = true;
                    if let Io::Write(out) = &mut io {
                        encrypt(&mut traffic, out, &mut self.outgoing)?;
                        if self.close_asked && out.is_empty() {
                            self.close_asked = false;
                            let start = self.outgoing.len();
                            self.outgoing.resize(start + RECORD_OVERHEAD, 0);
                            let made = traffic.queue_close_notify(&mut self.outgoing[start..]);
                            self.outgoing.truncate(start + made.unwrap_or(0));
                        }
                    }
                    Some(Stop::CanWrite)
                }
                ConnectionState::PeerClosed => {
                    self.peer_closed = true;
                    None
                }
                ConnectionState::Closed => {
                    self.peer_closed = true;
                    Some(Stop::Closed)
                }
                // Early data is never enabled in our ServerConfig.
                _ => return Err(invalid("unexpected TLS state")),
            };
            self.incoming.drain(..discard);
            if let Some(stop) = stop {
                if self.incoming.is_empty() {
                    self.incoming = Vec::new();
                }
                return Ok(stop);
            }
        }
    }

    /// After an error: encode the alert rustls queued, if any.
    fn encode_alerts(&mut self) {
        for _ in 0..4 {
            match self.drive_alert() {
                Some(()) => continue,
                None => return,
            }
        }
    }

    fn drive_alert(&mut self) -> Option<()> {
        let UnbufferedStatus { state, .. } = self.conn.process_tls_records(&mut self.incoming);
        match state.ok()? {
            ConnectionState::EncodeTlsData(mut encode) => {
                let start = self.outgoing.len();
                self.outgoing.resize(start + 256, 0);
                let n = encode.encode(&mut self.outgoing[start..]).unwrap_or(0);
                self.outgoing.truncate(start + n);
                Some(())
            }
            ConnectionState::TransmitTlsData(transmit) => {
                transmit.done();
                Some(())
            }
            _ => None,
        }
    }
}

/// Encrypts up to `SEND_WINDOW` bytes of `out` into `outgoing`, one record
/// per frame.
fn encrypt(
    traffic: &mut WriteTraffic<ServerConnectionData>,
    out: &mut Output,
    outgoing: &mut Vec<u8>,
) -> io::Result<()> {
    let mut moved = 0;
    while moved < SEND_WINDOW && !out.is_empty() {
        let front = out.front();
        let take = front.len().min(SEND_WINDOW - moved);
        let start = outgoing.len();
        let mut room = take + RECORD_OVERHEAD;
        loop {
            outgoing.resize(start + room, 0);
            match traffic.encrypt(&front[..take], &mut outgoing[start..]) {
                Ok(n) => {
                    outgoing.truncate(start + n);
                    break;
                }
                Err(EncryptError::InsufficientSize(e)) if e.required_size > room => {
                    room = e.required_size;
                }
                Err(e) => {
                    outgoing.truncate(start);
                    return Err(invalid(e));
                }
            }
        }
        out.consume(take);
        moved += take;
    }
    Ok(())
}
