//! One server TLS session on rustls's unbuffered API. We own both byte
//! buffers, so they exist only while bytes are in flight: an idle listener
//! holds none (rustls's buffered `ServerConnection` keeps a 4 KiB read buffer
//! per connection for its whole life). The socket is any `Read + Write`: a
//! non-blocking TCP stream in the node, bytes in memory in the fuzz target.

use std::io::{self, ErrorKind, IoSlice, Read, Write};
use std::sync::Arc;

use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncryptError, UnbufferedStatus, WriteTraffic,
};
use rustls::ServerConfig;

use super::io::{read_once, ReadEnd};
use super::output::{Output, MAX_SLICES};

/// Most TLS bytes waiting for rustls: one partial record (at most 18,437
/// bytes: a header, 2^14 of content and 2,048 of expansion), or a
/// ClientHello that spans records. No browser sends a ClientHello near
/// 16 KiB (rustls would join one up to 64 KiB), so a client stalling
/// mid-handshake holds at most this much, not 64 KiB.
pub const INCOMING_MAX: usize = 20 * 1024;

/// Most plaintext encrypted per round, and the most one record carries
/// (2^14); the rest waits in `Output`, where frames are shared, not copied.
const SEND_WINDOW: usize = 16 * 1024;

/// Room for one record's header, content type, padding and tag.
const RECORD_OVERHEAD: usize = 64;

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
    /// Our close_notify is encoded: rustls is given no more input.
    close_sent: bool,
    /// The client sent close_notify.
    peer_closed: bool,
    /// rustls failed: only what is already encoded (its alert) is sent.
    failed: bool,
}

/// What `drive` does with the plaintext.
enum Io<'a> {
    /// Appends what the client sent.
    Read(&'a mut Vec<u8>),
    /// Encrypts from here (and a close_notify asked for once it drains).
    Write(&'a mut Output),
}

/// Where rustls stopped.
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

/// Why rustls did not fill a buffer: too small (it says how much it needs),
/// or anything else.
enum Short {
    Room(usize),
    Failed(String),
}

impl From<EncodeError> for Short {
    fn from(e: EncodeError) -> Short {
        match e {
            EncodeError::InsufficientSize(s) => Short::Room(s.required_size),
            e => Short::Failed(e.to_string()),
        }
    }
}

impl From<EncryptError> for Short {
    fn from(e: EncryptError) -> Short {
        match e {
            EncryptError::InsufficientSize(s) => Short::Room(s.required_size),
            e => Short::Failed(e.to_string()),
        }
    }
}

/// Appends what `make` writes to `outgoing`, starting with room for `guess`
/// bytes and growing it to what rustls asks for when that is more.
fn append(
    outgoing: &mut Vec<u8>,
    guess: usize,
    mut make: impl FnMut(&mut [u8]) -> Result<usize, Short>,
) -> io::Result<()> {
    let start = outgoing.len();
    let mut room = guess;
    loop {
        outgoing.resize(start + room, 0);
        match make(&mut outgoing[start..]) {
            Ok(n) => {
                outgoing.truncate(start + n);
                return Ok(());
            }
            Err(Short::Room(needed)) if needed > room => room = needed,
            Err(Short::Room(needed)) => {
                outgoing.truncate(start);
                return Err(invalid(format!("TLS record needs {needed} bytes")));
            }
            Err(Short::Failed(e)) => {
                outgoing.truncate(start);
                return Err(invalid(e));
            }
        }
    }
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
            close_sent: false,
            peer_closed: false,
            failed: false,
        })
    }

    /// Reads until drained, end of stream, or `into.len() >= limit`; the
    /// plaintext goes to `into` and any handshake answer waits for `write`.
    /// After our close_notify (or a failure) what arrives is not decrypted
    /// but appended as is: the caller only counts and discards it then.
    pub fn read(
        &mut self,
        stream: &mut (impl Read + Write),
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
            let n = match read_once(stream, scratch)? {
                None => return Ok(ReadEnd::Drained),
                Some(0) => return Ok(ReadEnd::Eof),
                Some(n) => n,
            };
            if self.close_sent || self.failed {
                // We said goodbye: whatever the client still sends is not
                // decrypted (rustls could only fail on it) but handed up as
                // is, so the caller's limit on discarded bytes applies.
                into.extend_from_slice(&scratch[..n]);
                continue;
            }
            self.incoming.extend_from_slice(&scratch[..n]);
            let result = self.drive(Io::Read(into)).and_then(|_| {
                if self.incoming.len() > INCOMING_MAX {
                    return Err(invalid("TLS input beyond any record or handshake message"));
                }
                Ok(())
            });
            if let Err(e) = result {
                self.fail();
                let _ = self.flush(stream);
                return Err(e);
            }
        }
    }

    /// Writes what rustls and `out` have to send. Ok(true) once everything,
    /// handshake records and close_notify included, has left.
    pub fn write(&mut self, stream: &mut impl Write, out: &mut Output) -> io::Result<bool> {
        loop {
            if !self.flush(stream)? {
                return Ok(false);
            }
            if self.failed {
                return Ok(true);
            }
            let close = self.close_asked && out.is_empty();
            if (out.is_empty() && !close) || !self.open {
                return Ok(out.is_empty());
            }
            match self.drive(Io::Write(out)) {
                Ok(Stop::CanWrite) if self.close_sent => {
                    // rustls gets no more input: a record half read stays
                    // unused, so it need not be kept.
                    self.incoming = Vec::new();
                }
                Ok(Stop::CanWrite) => {}
                // rustls waits for the client (it never does once open):
                // like the handshake, the output waits for the next read.
                Ok(Stop::NeedInput) => return Ok(out.is_empty()),
                // Both sides said close_notify: what is still queued can
                // never be sent, and the connection is over.
                Ok(Stop::Closed) => return Ok(true),
                Err(e) => {
                    self.failed = true;
                    return Err(e);
                }
            }
        }
    }

    /// Queues a close_notify, sent by the next `write` after `out` drains.
    pub fn close_notify(&mut self) {
        if !self.close_sent && !self.failed {
            self.close_asked = true;
        }
    }

    /// TLS bytes held for rustls (bounded by `INCOMING_MAX`).
    pub fn buffered(&self) -> usize {
        self.incoming.len()
    }

    /// The protocol the handshake chose by ALPN (`h2`, `http/1.1`), once
    /// it is done.
    pub fn alpn(&self) -> Option<&[u8]> {
        if self.open {
            self.conn.alpn_protocol()
        } else {
            None
        }
    }

    /// True when records wait to be written (or a close_notify to be made).
    pub fn wants_write(&self) -> bool {
        self.sent < self.outgoing.len() || (self.close_asked && self.open && !self.failed)
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
    /// `outgoing`. Stops where rustls needs the caller, or at an error; the
    /// bytes rustls is done with are dropped from `incoming` either way, as
    /// its handshake deframer expects.
    fn drive(&mut self, mut io: Io) -> io::Result<Stop> {
        // Bytes at the front of `incoming` that rustls is done with: passing
        // it what follows is the same as removing them, without moving the
        // buffer once per record.
        let mut used = 0;
        let result = loop {
            let UnbufferedStatus { discard, state } =
                self.conn.process_tls_records(&mut self.incoming[used..]);
            let mut extra = 0;
            let step = match state {
                Err(e) => Err(invalid(e)),
                Ok(ConnectionState::ReadTraffic(mut traffic)) => match &mut io {
                    Io::Read(into) => {
                        let mut read = Ok(None);
                        while let Some(record) = traffic.next_record() {
                            match record {
                                Ok(record) => {
                                    extra += record.discard;
                                    into.extend_from_slice(record.payload);
                                }
                                Err(e) => {
                                    read = Err(invalid(e));
                                    break;
                                }
                            }
                        }
                        read
                    }
                    // `read` lets rustls use every whole record, so a write
                    // never finds one waiting.
                    Io::Write(_) => Err(invalid("TLS application data outside a read")),
                },
                Ok(ConnectionState::EncodeTlsData(mut encode)) => {
                    append(&mut self.outgoing, RECORD_OVERHEAD, |buf| {
                        Ok(encode.encode(buf)?)
                    })
                    .map(|()| None)
                }
                // The records wait in `outgoing`, ahead of anything later.
                Ok(ConnectionState::TransmitTlsData(transmit)) => {
                    transmit.done();
                    Ok(None)
                }
                Ok(ConnectionState::BlockedHandshake) => Ok(Some(Stop::NeedInput)),
                Ok(ConnectionState::WriteTraffic(mut traffic)) => {
                    self.open = true;
                    match &mut io {
                        Io::Write(out) => {
                            let close = &mut self.close_asked;
                            send(&mut traffic, out, &mut self.outgoing, close).map(|sent_close| {
                                self.close_sent |= sent_close;
                                Some(Stop::CanWrite)
                            })
                        }
                        Io::Read(_) => Ok(Some(Stop::CanWrite)),
                    }
                }
                Ok(ConnectionState::PeerClosed) => {
                    self.peer_closed = true;
                    Ok(None)
                }
                Ok(ConnectionState::Closed) => {
                    self.peer_closed = true;
                    Ok(Some(Stop::Closed))
                }
                // Early data is never enabled in our ServerConfig.
                Ok(_) => Err(invalid("unexpected TLS state")),
            };
            used += discard + extra;
            match step {
                Ok(None) => continue,
                Ok(Some(stop)) => break Ok(stop),
                Err(e) => break Err(e),
            }
        };
        self.incoming.drain(..used);
        if self.incoming.is_empty() {
            self.incoming = Vec::new();
        }
        result
    }

    /// After an error: encode the alert rustls queued, if any, and use no
    /// more input. rustls hands out queued records before it parses input
    /// again, and it is asked once only, so a record that failed is never
    /// parsed (and alerted on) twice. The price: when a KeyUpdate answer was
    /// queued ahead of the alert, only the KeyUpdate goes out.
    fn fail(&mut self) {
        self.failed = true;
        let UnbufferedStatus { state, .. } = self.conn.process_tls_records(&mut self.incoming);
        if let Ok(ConnectionState::EncodeTlsData(mut encode)) = state {
            let _ = append(&mut self.outgoing, RECORD_OVERHEAD, |buf| {
                Ok(encode.encode(buf)?)
            });
        }
        self.incoming = Vec::new();
    }
}

/// Encrypts up to `SEND_WINDOW` bytes of `out` into `outgoing` (a frame
/// alone, or the frames that wait together as one record), then a close_notify if one is asked for and `out` drained.
/// Returns whether the close_notify was encoded.
fn send(
    traffic: &mut WriteTraffic<ServerConnectionData>,
    out: &mut Output,
    outgoing: &mut Vec<u8>,
    close_asked: &mut bool,
) -> io::Result<bool> {
    let mut moved = 0;
    while moved < SEND_WINDOW && !out.is_empty() {
        let window = SEND_WINDOW - moved;
        let front = out.front();
        let take = if front.len() >= window || out.single().is_some() {
            let take = front.len().min(window);
            append(outgoing, take + RECORD_OVERHEAD, |buf| {
                Ok(traffic.encrypt(&front[..take], buf)?)
            })?;
            take
        } else {
            // Several frames wait (a listener behind): one record for as
            // many as fit, so fewer seals and record headers, and fewer of
            // TLS 1.2's 2^24 records per connection.
            let mut plain = Vec::with_capacity(out.len().min(window));
            let mut slices = [IoSlice::new(&[]); MAX_SLICES];
            let n = out.slices(&mut slices);
            for s in &slices[..n] {
                let room = window - plain.len();
                plain.extend_from_slice(&s[..s.len().min(room)]);
                if plain.len() == window {
                    break;
                }
            }
            append(outgoing, plain.len() + RECORD_OVERHEAD, |buf| {
                Ok(traffic.encrypt(&plain, buf)?)
            })?;
            plain.len()
        };
        out.consume(take);
        moved += take;
    }
    if !*close_asked || !out.is_empty() {
        return Ok(false);
    }
    *close_asked = false;
    append(outgoing, RECORD_OVERHEAD, |buf| {
        Ok(traffic.queue_close_notify(buf)?)
    })?;
    Ok(true)
}
