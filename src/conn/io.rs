//! The two socket calls everything here is built on, with mio's rules in one
//! place: `Interrupted` retries, `WouldBlock` means "drained", `Ok(0)` is the
//! end of the stream. `transport` (plain) and `tls_session` (TLS records)
//! both read through `read_once`, and report how a read loop ended with
//! `ReadEnd`.

use std::io::{self, ErrorKind, Read};

/// What a read loop found besides bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadEnd {
    /// Everything available was read.
    Drained,
    /// `limit` bytes were buffered: call again once they are consumed.
    Full,
    /// The peer closed (or TLS close_notify).
    Eof,
}

/// One read into `buf`: `Ok(Some(n))` with `n > 0` bytes, `Ok(Some(0))` at
/// the end of the stream, `Ok(None)` when nothing is there now.
pub fn read_once(stream: &mut impl Read, buf: &mut [u8]) -> io::Result<Option<usize>> {
    loop {
        match stream.read(buf) {
            Ok(n) => return Ok(Some(n)),
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(None),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}
