//! One record of the history log: a chat message as the node holds it, and
//! its bytes on disk. Pure: bytes in, records out. `segment.rs` frames
//! records into segment files and scans them; `log.rs` does the I/O.
//!
//! A record on disk (all integers little-endian):
//!
//! ```text
//! len    u32   body length, MIN_BODY..=MAX_BODY
//! hcrc   u32   CRC-32C(salt ‖ len)          the header check
//! bcrc   u32   CRC-32C(salt ‖ len ‖ body)   the record check
//! body:
//!   kind      u8    1 = chat message (other values are reserved)
//!   room_len  u8    1..=32
//!   room      room_len bytes, [a-z0-9-]
//!   origin    u32
//!   seq       u64
//!   text      the rest: UTF-8, at most MAX_TEXT bytes
//! ```
//!
//! Why two checksums and a salt. After a damaged record the scanner looks
//! for the next record at every following byte offset. The header check lets
//! it reject an offset after reading 12 bytes, so a resync never checksums a
//! megabyte per offset, and a length is trusted (and bounded) before any
//! byte is read past the header. The salt is a random number from the
//! segment's header: message text is chosen by users, and a text holding a
//! well-formed record must not come back as a record of its own when the
//! scanner resyncs through it. Without the salt nobody outside the node can
//! compute a valid header check, so a forged record passes with odds 2^-32.

use std::fmt;

use super::crc;

/// Bytes before the body: `len`, `hcrc`, `bcrc`.
pub const HEADER_LEN: usize = 12;
/// Longest room name, in bytes.
pub const MAX_ROOM: usize = 32;
/// Longest message text, in bytes: the node's message limit.
pub const MAX_TEXT: usize = 1 << 20;
/// kind + room_len + origin + seq.
const FIXED_BODY: usize = 1 + 1 + 4 + 8;
/// Shortest body: a one-byte room and an empty text.
pub const MIN_BODY: usize = FIXED_BODY + 1;
/// Longest body. A length outside `MIN_BODY..=MAX_BODY` is corruption; it is
/// rejected before anything is read or allocated by it.
pub const MAX_BODY: usize = FIXED_BODY + MAX_ROOM + MAX_TEXT;
/// Longest record, header included. A reader holding this many bytes from a
/// record's start can always decide that record.
pub const MAX_RECORD: usize = HEADER_LEN + MAX_BODY;

const KIND_MESSAGE: u8 = 1;

/// A chat message as the log stores it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// `[a-z0-9-]{1,32}`; the default room is "lobby".
    pub room: String,
    /// The tag of the node that published the message.
    pub origin: u32,
    /// The origin's sequence number (also its publish time in µs).
    pub seq: u64,
    /// At most `MAX_TEXT` bytes.
    pub text: String,
}

/// A decoded record borrowing the buffer it was decoded from: the scanner
/// validates without allocating, and copies only what it keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordRef<'a> {
    pub room: &'a str,
    pub origin: u32,
    pub seq: u64,
    pub text: &'a str,
}

impl RecordRef<'_> {
    pub fn to_record(self) -> Record {
        Record {
            room: self.room.to_owned(),
            origin: self.origin,
            seq: self.seq,
            text: self.text.to_owned(),
        }
    }
}

impl Record {
    pub fn as_ref(&self) -> RecordRef<'_> {
        RecordRef {
            room: &self.room,
            origin: self.origin,
            seq: self.seq,
            text: &self.text,
        }
    }
}

/// Why bytes are not a record (decode), or a record cannot be stored
/// (encode: `Room`, `TextTooLong`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordError {
    /// `len` outside `MIN_BODY..=MAX_BODY`.
    Length,
    /// `hcrc` does not match `len`: not a record start.
    HeaderChecksum,
    /// `bcrc` does not match: the body (or the header) is damaged.
    Checksum,
    /// An unknown record kind.
    Kind,
    /// The room name is empty, too long or not `[a-z0-9-]`.
    Room,
    /// The text is not UTF-8, or its length disagrees with `len`.
    Text,
    /// The text is over `MAX_TEXT` bytes.
    TextTooLong,
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RecordError::Length => "record length out of bounds",
            RecordError::HeaderChecksum => "record header checksum mismatch",
            RecordError::Checksum => "record checksum mismatch",
            RecordError::Kind => "unknown record kind",
            RecordError::Room => "invalid room name",
            RecordError::Text => "record text is not UTF-8",
            RecordError::TextTooLong => "message text over 1 MiB",
        })
    }
}

impl std::error::Error for RecordError {}

/// True for a room name the log accepts: `[a-z0-9-]{1,32}`.
pub fn valid_room(room: &str) -> bool {
    (1..=MAX_ROOM).contains(&room.len())
        && room
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Appends the bytes of `rec` for a segment salted with `salt` to `out`.
/// On error (a room or text the format cannot hold) `out` is unchanged.
pub fn encode(rec: &Record, salt: u32, out: &mut Vec<u8>) -> Result<(), RecordError> {
    encode_ref(rec.as_ref(), salt, out)
}

/// `encode` for a borrowed record.
pub fn encode_ref(rec: RecordRef<'_>, salt: u32, out: &mut Vec<u8>) -> Result<(), RecordError> {
    if !valid_room(rec.room) {
        return Err(RecordError::Room);
    }
    if rec.text.len() > MAX_TEXT {
        return Err(RecordError::TextTooLong);
    }
    let body_len = FIXED_BODY + rec.room.len() + rec.text.len();
    // Both bounds hold by the checks above; the cast cannot truncate.
    let len = body_len as u32;
    let start = out.len();
    out.reserve(HEADER_LEN + body_len);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&[0; 8]); // hcrc, bcrc: filled in below
    out.push(KIND_MESSAGE);
    out.push(rec.room.len() as u8);
    out.extend_from_slice(rec.room.as_bytes());
    out.extend_from_slice(&rec.origin.to_le_bytes());
    out.extend_from_slice(&rec.seq.to_le_bytes());
    out.extend_from_slice(rec.text.as_bytes());
    let hcrc = header_crc(salt, len);
    let bcrc = crc::extend(hcrc, &out[start + HEADER_LEN..]);
    out[start + 4..start + 8].copy_from_slice(&hcrc.to_le_bytes());
    out[start + 8..start + 12].copy_from_slice(&bcrc.to_le_bytes());
    Ok(())
}

/// The record at the start of `buf`, and how many bytes it takes.
/// `Ok(None)`: `buf` ends before the record does (its header, if complete,
/// is valid); more bytes may complete it. `Err`: no record starts here.
pub fn decode(buf: &[u8], salt: u32) -> Result<Option<(Record, usize)>, RecordError> {
    Ok(decode_ref(buf, salt)?.map(|(r, n)| (r.to_record(), n)))
}

/// `decode` without copying: the record borrows `buf`.
pub fn decode_ref(buf: &[u8], salt: u32) -> Result<Option<(RecordRef<'_>, usize)>, RecordError> {
    let Some(head) = buf.get(..HEADER_LEN) else {
        return Ok(None);
    };
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
    let hcrc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    let bcrc = u32::from_le_bytes([head[8], head[9], head[10], head[11]]);
    let body_len = len as usize;
    if !(MIN_BODY..=MAX_BODY).contains(&body_len) {
        return Err(RecordError::Length);
    }
    let expect = header_crc(salt, len);
    if hcrc != expect {
        return Err(RecordError::HeaderChecksum);
    }
    let total = HEADER_LEN + body_len;
    let Some(body) = buf.get(HEADER_LEN..total) else {
        return Ok(None);
    };
    if crc::extend(expect, body) != bcrc {
        return Err(RecordError::Checksum);
    }
    parse_body(body).map(|r| Some((r, total)))
}

/// The header check: CRC-32C of the salt and the length, little-endian.
fn header_crc(salt: u32, len: u32) -> u32 {
    let mut b = [0u8; 8];
    b[..4].copy_from_slice(&salt.to_le_bytes());
    b[4..].copy_from_slice(&len.to_le_bytes());
    crc::checksum(&b)
}

/// A checksummed body can still be one this build must not accept (a kind
/// from a future version, a room the node would refuse); such a record is
/// treated as corrupt, never as a message.
fn parse_body(body: &[u8]) -> Result<RecordRef<'_>, RecordError> {
    let [kind, room_len, rest @ ..] = body else {
        return Err(RecordError::Length);
    };
    if *kind != KIND_MESSAGE {
        return Err(RecordError::Kind);
    }
    let room_len = usize::from(*room_len);
    if !(1..=MAX_ROOM).contains(&room_len) || rest.len() < room_len + 12 {
        return Err(RecordError::Room);
    }
    let (room, rest) = rest.split_at(room_len);
    let room = std::str::from_utf8(room).map_err(|_| RecordError::Room)?;
    if !valid_room(room) {
        return Err(RecordError::Room);
    }
    let (origin, rest) = rest.split_at(4);
    let (seq, text) = rest.split_at(8);
    let origin = u32::from_le_bytes([origin[0], origin[1], origin[2], origin[3]]);
    let seq = u64::from_le_bytes([
        seq[0], seq[1], seq[2], seq[3], seq[4], seq[5], seq[6], seq[7],
    ]);
    if text.len() > MAX_TEXT {
        return Err(RecordError::TextTooLong);
    }
    let text = std::str::from_utf8(text).map_err(|_| RecordError::Text)?;
    Ok(RecordRef {
        room,
        origin,
        seq,
        text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SALT: u32 = 0x5eed_1234;

    fn rec(room: &str, origin: u32, seq: u64, text: &str) -> Record {
        Record {
            room: room.into(),
            origin,
            seq,
            text: text.into(),
        }
    }

    fn bytes(r: &Record) -> Vec<u8> {
        let mut out = Vec::new();
        encode(r, SALT, &mut out).expect("valid record");
        out
    }

    /// Encodes a body with the given header fields, checksums computed.
    fn raw(body: &[u8]) -> Vec<u8> {
        let len = body.len() as u32;
        let hcrc = header_crc(SALT, len);
        let bcrc = crc::extend(hcrc, body);
        let mut out = Vec::new();
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&hcrc.to_le_bytes());
        out.extend_from_slice(&bcrc.to_le_bytes());
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn round_trips() {
        let long_room = "a".repeat(MAX_ROOM);
        let max_text = "x".repeat(MAX_TEXT);
        let cases = [
            ("lobby", rec("lobby", 7, 1, "hello")),
            ("empty text", rec("a", 0, 0, "")),
            ("extremes", rec("0-9", u32::MAX, u64::MAX, "é ✓ 𝄞 \0\r\n")),
            ("longest room", rec(&long_room, 1, 2, "t")),
            ("longest text", rec("lobby", 1, 2, &max_text)),
        ];
        for (name, r) in cases {
            let b = bytes(&r);
            assert_eq!(
                b.len(),
                HEADER_LEN + FIXED_BODY + r.room.len() + r.text.len()
            );
            assert_eq!(decode(&b, SALT), Ok(Some((r.clone(), b.len()))), "{name}");
            // Trailing bytes are the next record's business.
            let mut more = b.clone();
            more.extend_from_slice(b"trailing");
            assert_eq!(
                decode(&more, SALT),
                Ok(Some((r, b.len()))),
                "{name} + trailing"
            );
        }
    }

    #[test]
    fn fixed_bytes() {
        // The format is a contract with every log already on disk.
        let b = bytes(&rec("ab", 0x0102_0304, 5, "hi"));
        let body = [
            1, 2, b'a', b'b', 4, 3, 2, 1, 5, 0, 0, 0, 0, 0, 0, 0, b'h', b'i',
        ];
        assert_eq!(&b[..4], &(body.len() as u32).to_le_bytes());
        assert_eq!(&b[HEADER_LEN..], &body);
        assert_eq!(b, raw(&body));
    }

    #[test]
    fn encode_refuses_what_decode_would() {
        let too_long = "x".repeat(MAX_TEXT + 1);
        let long_room = "a".repeat(MAX_ROOM + 1);
        let cases = [
            ("empty room", rec("", 1, 1, "t"), RecordError::Room),
            (
                "room too long",
                rec(&long_room, 1, 1, "t"),
                RecordError::Room,
            ),
            ("upper case", rec("Lobby", 1, 1, "t"), RecordError::Room),
            ("space", rec("a b", 1, 1, "t"), RecordError::Room),
            ("non-ascii", rec("é", 1, 1, "t"), RecordError::Room),
            (
                "text too long",
                rec("a", 1, 1, &too_long),
                RecordError::TextTooLong,
            ),
        ];
        for (name, r, want) in cases {
            let mut out = vec![9];
            assert_eq!(encode(&r, SALT, &mut out), Err(want), "{name}");
            assert_eq!(out, [9], "{name}: output untouched");
        }
    }

    #[test]
    fn every_prefix_is_incomplete() {
        let b = bytes(&rec("lobby", 3, 99, "a message"));
        for cut in 0..b.len() {
            assert_eq!(decode(&b[..cut], SALT), Ok(None), "prefix of {cut}");
        }
    }

    #[test]
    fn every_flipped_bit_is_caught() {
        let b = bytes(&rec("lobby", 3, 99, "a message"));
        for i in 0..b.len() * 8 {
            let mut bad = b.clone();
            bad[i / 8] ^= 1 << (i % 8);
            match decode(&bad, SALT) {
                Err(_) => {}
                // A flipped length bit can make the record look longer.
                Ok(None) => assert!(i < 32, "bit {i}: incomplete"),
                Ok(Some(r)) => panic!("bit {i}: decoded {r:?}"),
            }
        }
    }

    #[test]
    fn another_salt_is_not_a_record() {
        let b = bytes(&rec("lobby", 3, 99, "x"));
        assert_eq!(decode(&b, SALT ^ 1), Err(RecordError::HeaderChecksum));
    }

    #[test]
    fn length_limits() {
        // At the limits the header is judged by its checksum; one past, by
        // its length alone, before any byte of the body is needed.
        let head = |len: u32| {
            let mut h = len.to_le_bytes().to_vec();
            h.extend_from_slice(&header_crc(SALT, len).to_le_bytes());
            h.extend_from_slice(&[0; 4]);
            h
        };
        let cases = [
            ("zero", 0, Err(RecordError::Length)),
            ("min - 1", MIN_BODY as u32 - 1, Err(RecordError::Length)),
            ("min", MIN_BODY as u32, Ok(None)),
            ("max", MAX_BODY as u32, Ok(None)),
            ("max + 1", MAX_BODY as u32 + 1, Err(RecordError::Length)),
            ("u32::MAX", u32::MAX, Err(RecordError::Length)),
        ];
        for (name, len, want) in cases {
            assert_eq!(decode(&head(len), SALT), want, "{name}");
        }
        // The longest text decodes (round_trips); one byte more, checksummed
        // correctly, is still refused.
        let mut body = vec![KIND_MESSAGE, 1, b'a'];
        body.extend_from_slice(&[0; 12]);
        body.extend(std::iter::repeat_n(b'x', MAX_TEXT + 1));
        assert_eq!(decode(&raw(&body), SALT), Err(RecordError::TextTooLong));
    }

    #[test]
    fn checksummed_but_invalid_bodies() {
        let body = |kind: u8, room: &[u8], text: &[u8]| {
            let mut b = vec![kind, room.len() as u8];
            b.extend_from_slice(room);
            b.extend_from_slice(&[0; 12]);
            b.extend_from_slice(text);
            b
        };
        let mut short_room = body(1, b"ab", b"");
        short_room[1] = 40; // room_len past the body
        let cases = [
            ("kind 0", body(0, b"a", b"t"), RecordError::Kind),
            ("kind 2", body(2, b"a", b"t"), RecordError::Kind),
            ("empty room", body(1, b"", b"ttttt"), RecordError::Room),
            ("room charset", body(1, b"A", b"t"), RecordError::Room),
            ("room utf8", body(1, b"\xff", b"t"), RecordError::Room),
            ("room past body", short_room, RecordError::Room),
            ("text utf8", body(1, b"a", b"\xc3"), RecordError::Text),
        ];
        for (name, b, want) in cases {
            assert_eq!(decode(&raw(&b), SALT), Err(want), "{name}");
        }
    }

    #[test]
    fn garbage() {
        let cases: [(&str, &[u8]); 4] = [
            ("zeros", &[0; 64]),
            ("ones", &[0xff; 64]),
            ("text", b"this is not a record, it is a sentence."),
            (
                "huge length",
                &[0xff, 0xff, 0xff, 0x7f, 1, 2, 3, 4, 5, 6, 7, 8],
            ),
        ];
        for (name, input) in cases {
            assert!(decode(input, SALT).is_err(), "{name}");
        }
    }

    #[test]
    fn valid_rooms() {
        for (room, ok) in [
            ("lobby", true),
            ("a", true),
            ("room-42", true),
            ("-", true),
            ("", false),
            ("Lobby", false),
            ("a_b", false),
            ("a.b", false),
            ("ü", false),
        ] {
            assert_eq!(valid_room(room), ok, "{room:?}");
        }
        assert!(valid_room(&"z".repeat(32)));
        assert!(!valid_room(&"z".repeat(33)));
    }
}
