//! Chunked request bodies (RFC 9112 §7.1), decoded from the start of a
//! buffer. The reactor calls `decode_chunked` each time more body bytes
//! arrive for a request whose head said `Transfer-Encoding: chunked`; the
//! decoder keeps no state between calls, so it sees the whole body so far.

use std::fmt;

use super::form::hex_value;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyError {
    /// Not valid chunked framing: 400.
    Malformed,
    /// The decoded body, or the framing around it, exceeds the limit: 413.
    TooLarge,
}

impl BodyError {
    pub fn status(self) -> u16 {
        match self {
            BodyError::Malformed => 400,
            BodyError::TooLarge => 413,
        }
    }
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BodyError::Malformed => "malformed chunked body",
            BodyError::TooLarge => "request body too large",
        })
    }
}

/// Why a step of the decoder stopped: more bytes needed, or an error.
enum Stop {
    Incomplete,
    Error(BodyError),
}

impl From<BodyError> for Stop {
    fn from(e: BodyError) -> Self {
        Stop::Error(e)
    }
}

/// Decode a chunked body at the start of `buf`.
///
/// `Ok(None)`: incomplete, call again with more bytes. `Ok(Some((body,
/// consumed)))`: complete; `consumed` counts everything up to and including
/// the CRLF that ends the (possibly empty) trailer section, so bytes after it
/// belong to the next request. `Err(TooLarge)` as soon as the decoded size
/// would exceed `max_body`, or when the encoded body passes
/// `max_body * 3 + 4096` bytes: that bounds the chunk extensions, tiny chunks
/// and trailers a client can make us scan. Extensions and trailers are
/// checked for syntax and ignored.
pub fn decode_chunked(buf: &[u8], max_body: usize) -> Result<Option<(Vec<u8>, usize)>, BodyError> {
    let max_encoded = max_body.saturating_mul(3).saturating_add(4096);
    let mut body = Vec::new();
    match decode_into(buf, max_body, &mut body) {
        Ok(consumed) if consumed > max_encoded => Err(BodyError::TooLarge),
        Ok(consumed) => Ok(Some((body, consumed))),
        Err(Stop::Incomplete) if buf.len() > max_encoded => Err(BodyError::TooLarge),
        Err(Stop::Incomplete) => Ok(None),
        Err(Stop::Error(e)) => Err(e),
    }
}

/// Appends the decoded body to `body` and returns the bytes consumed.
fn decode_into(buf: &[u8], max_body: usize, body: &mut Vec<u8>) -> Result<usize, Stop> {
    let mut pos = 0;
    loop {
        let room = max_body.saturating_sub(body.len());
        let (size, after_size) = chunk_size(buf, pos, room)?;
        pos = skip_extensions(buf, after_size)?;
        pos = expect_crlf(buf, pos)?;
        if size == 0 {
            return trailers(buf, pos);
        }
        let end = pos.checked_add(size).ok_or(BodyError::TooLarge)?;
        let data = buf.get(pos..end).ok_or(Stop::Incomplete)?;
        body.extend_from_slice(data);
        pos = expect_crlf(buf, end)?;
    }
}

/// Parses the hex chunk size at `pos`; returns it and the position after it.
/// The running value only grows with each digit, so it is checked against
/// `room` (what is left of `max_body`) digit by digit.
fn chunk_size(buf: &[u8], mut pos: usize, room: usize) -> Result<(usize, usize), Stop> {
    let start = pos;
    let mut size: usize = 0;
    loop {
        let b = *buf.get(pos).ok_or(Stop::Incomplete)?;
        let Some(digit) = hex_value(b) else {
            if pos == start {
                return Err(BodyError::Malformed.into());
            }
            return Ok((size, pos));
        };
        size = size
            .checked_mul(16)
            .and_then(|s| s.checked_add(usize::from(digit)))
            .ok_or(BodyError::Malformed)?;
        if size > room {
            return Err(BodyError::TooLarge.into());
        }
        pos += 1;
    }
}

/// Skips `*( BWS ";" BWS name [ BWS "=" BWS value ] )` up to the CR that ends
/// the chunk-size line, allowing any visible bytes in it.
fn skip_extensions(buf: &[u8], mut pos: usize) -> Result<usize, Stop> {
    match *buf.get(pos).ok_or(Stop::Incomplete)? {
        b'\r' => return Ok(pos),
        b';' | b' ' | b'\t' => {}
        _ => return Err(BodyError::Malformed.into()),
    }
    loop {
        match *buf.get(pos).ok_or(Stop::Incomplete)? {
            b'\r' => return Ok(pos),
            b'\t' | b' '..=0x7e | 0x80..=0xff => pos += 1,
            _ => return Err(BodyError::Malformed.into()),
        }
    }
}

/// Requires CRLF at `pos` (a bare LF is malformed); returns the position after it.
fn expect_crlf(buf: &[u8], pos: usize) -> Result<usize, Stop> {
    match (buf.get(pos), buf.get(pos + 1)) {
        (Some(b'\r'), Some(b'\n')) => Ok(pos + 2),
        (Some(b'\r'), None) | (None, _) => Err(Stop::Incomplete),
        _ => Err(BodyError::Malformed.into()),
    }
}

/// Skips the trailer field lines and the final CRLF; returns the position
/// after it. Each field line needs a token name and a colon.
fn trailers(buf: &[u8], mut pos: usize) -> Result<usize, Stop> {
    loop {
        let line_start = pos;
        let mut colon = None;
        loop {
            match *buf.get(pos).ok_or(Stop::Incomplete)? {
                b'\r' => break,
                b':' if colon.is_none() => colon = Some(pos),
                b'\t' | b' '..=0x7e | 0x80..=0xff => {}
                _ => return Err(BodyError::Malformed.into()),
            }
            pos += 1;
        }
        let after = expect_crlf(buf, pos)?;
        if pos == line_start {
            return Ok(after);
        }
        let name = buf
            .get(line_start..colon.unwrap_or(line_start))
            .unwrap_or(&[]);
        if name.is_empty() || !name.iter().all(|&b| is_token(b)) {
            return Err(BodyError::Malformed.into());
        }
        pos = after;
    }
}

/// RFC 9110 `tchar`.
fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 64;

    /// (name, encoded, decoded body, consumed)
    #[rustfmt::skip]
    const VALID: &[(&str, &[u8], &[u8], usize)] = &[
        ("one chunk", b"5\r\nhello\r\n0\r\n\r\n", b"hello", 15),
        ("two chunks", b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", b"hello world", 26),
        ("empty body", b"0\r\n\r\n", b"", 5),
        ("uppercase hex", b"A\r\n0123456789\r\n0\r\n\r\n", b"0123456789", 20),
        ("lowercase hex", b"a\r\n0123456789\r\n0\r\n\r\n", b"0123456789", 20),
        ("leading zeros", b"005\r\nhello\r\n000\r\n\r\n", b"hello", 19),
        ("extensions", b"5;name=value\r\nhello\r\n0;last\r\n\r\n", b"hello", 31),
        ("quoted extension", b"5 ; a=\"b;c\"\r\nhello\r\n0\r\n\r\n", b"hello", 25),
        ("trailers", b"5\r\nhello\r\n0\r\nX-Sum: 1\r\nX-Other:\r\n\r\n", b"hello", 35),
        ("next request follows", b"1\r\nx\r\n0\r\n\r\nGET / HTTP/1.1\r\n", b"x", 11),
        ("exactly max", b"40\r\naaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n0\r\n\r\n", &[b'a'; 64], 75),
    ];

    #[test]
    fn valid_bodies() {
        for (name, input, body, consumed) in VALID {
            let got = decode_chunked(input, MAX);
            assert_eq!(got, Ok(Some((body.to_vec(), *consumed))), "case {name}");
        }
    }

    #[test]
    fn every_prefix_is_incomplete() {
        for (name, input, _, consumed) in VALID {
            for end in 0..*consumed {
                let prefix = input.get(..end).unwrap_or(&[]);
                assert_eq!(
                    decode_chunked(prefix, MAX),
                    Ok(None),
                    "case {name}, prefix {end}"
                );
            }
        }
    }

    #[test]
    fn invalid_bodies() {
        let long_ext = [b"1;".as_slice(), &[b'x'; 5000], b"\r\n"].concat();
        let trailer_flood = [b"0\r\n".as_slice(), &b"X: y\r\n".repeat(1000)].concat();
        #[rustfmt::skip]
        let cases: &[(&str, &[u8], BodyError)] = &[
            ("bad hex", b"5g\r\nhello\r\n0\r\n\r\n", BodyError::Malformed),
            ("not hex at all", b"zz\r\n", BodyError::Malformed),
            ("empty size", b"\r\nhello\r\n0\r\n\r\n", BodyError::Malformed),
            ("sign", b"+5\r\nhello\r\n0\r\n\r\n", BodyError::Malformed),
            ("missing crlf after data", b"5\r\nhelloX\r\n0\r\n\r\n", BodyError::Malformed),
            ("data longer than size", b"3\r\nhello\r\n0\r\n\r\n", BodyError::Malformed),
            ("bare lf after size", b"5\nhello\r\n0\r\n\r\n", BodyError::Malformed),
            ("bare lf after data", b"5\r\nhello\n0\r\n\r\n", BodyError::Malformed),
            ("bare lf at end", b"0\r\n\n", BodyError::Malformed),
            ("cr without lf", b"5\r\rhello", BodyError::Malformed),
            ("control in extension", b"5;a\x00\r\nhello\r\n0\r\n\r\n", BodyError::Malformed),
            ("trailer without colon", b"0\r\nNoColon\r\n\r\n", BodyError::Malformed),
            ("trailer obs-fold", b"0\r\nA: b\r\n c\r\n\r\n", BodyError::Malformed),
            ("trailer empty name", b"0\r\n: b\r\n\r\n", BodyError::Malformed),
            ("oversize chunk", b"41\r\n", BodyError::TooLarge),
            ("oversize in total", b"20\r\naaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n21\r\n", BodyError::TooLarge),
            ("oversize before digits end", b"FFFF", BodyError::TooLarge),
            ("overflow", b"FFFFFFFFFFFFFFFFFFFFFFFF\r\n", BodyError::TooLarge),
            ("extension flood", &long_ext, BodyError::TooLarge),
            ("trailer flood", &trailer_flood, BodyError::TooLarge),
        ];
        for (name, input, expected) in cases {
            assert_eq!(decode_chunked(input, MAX), Err(*expected), "case {name}");
        }
        // Tiny chunks cost six framing bytes per body byte; past
        // max_body * 3 + 4096 encoded bytes they are refused even though the
        // decoded size still fits.
        let tiny_chunks = b"1\r\nx\r\n".repeat(1500);
        assert_eq!(decode_chunked(&tiny_chunks, 1500), Err(BodyError::TooLarge));
        assert_eq!(
            decode_chunked(tiny_chunks.get(..8000).unwrap_or(&[]), 1500),
            Ok(None)
        );
    }

    #[test]
    fn overflow_without_limit_is_malformed() {
        assert_eq!(
            decode_chunked(b"FFFFFFFFFFFFFFFFFFFFFFFF\r\n", usize::MAX),
            Err(BodyError::Malformed)
        );
    }

    #[test]
    fn statuses() {
        assert_eq!(BodyError::Malformed.status(), 400);
        assert_eq!(BodyError::TooLarge.status(), 413);
        assert_eq!(BodyError::TooLarge.to_string(), "request body too large");
    }
}
