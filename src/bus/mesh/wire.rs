//! The peer link's frames, without sockets. A frame is a 4-byte big-endian
//! length, then a 1-byte kind, then the fields: integers big-endian, strings
//! as a length (u16, or u32 for message text) and UTF-8 bytes. `decode` takes
//! bytes as they come and never trusts a length: every field is checked
//! against what is left of the frame, and a frame longer than the caller's
//! cap is an error (the link closes, never the node).

use std::fmt;

pub const NONCE_LEN: usize = 32;
pub const MAC_LEN: usize = 32;
/// A key-exchange share: an X25519 u-coordinate.
pub const SHARE_LEN: usize = 32;
/// Until a peer has proved the cookie, it may send only small frames.
pub const MAX_HANDSHAKE_FRAME: usize = 1024;
/// After: a message at the largest `--max-message` plus its fields.
pub const MAX_FRAME: usize = (1 << 20) + 1024;
/// Most origins in a `State` and most nodes in a `Nodes` frame.
pub const MAX_LIST: usize = 256;
/// 2: messages carry their room; presence carries room listener counts.
/// 3: `State` carries what left the sender's history (its floors).
pub const VERSION: u8 = 6;
/// Most rooms a `Presence` frame names.
pub const MAX_ROOMS: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Dialer → acceptor: who I am, where my cluster port is, my challenge.
    Hello {
        version: u8,
        name: String,
        addr: String,
        nonce: [u8; NONCE_LEN],
    },
    /// Acceptor → dialer: who I am, my challenge, my key-exchange share.
    Challenge {
        name: String,
        nonce: [u8; NONCE_LEN],
        share: [u8; SHARE_LEN],
    },
    /// My share and my confirmation of the key: the dialer's first, then
    /// the acceptor's (see `handshake`).
    Proof {
        share: [u8; SHARE_LEN],
        mac: [u8; MAC_LEN],
    },
    /// Either side: the link is refused, and why.
    Refuse {
        reason: String,
    },
    /// After the handshake: what I have from each origin, what has left my
    /// history from each (my replay starts after it), and my listeners.
    State {
        clock: Vec<(u32, u64)>,
        floors: Vec<(u32, u64)>,
        listeners: u32,
    },
    /// The replay that answers a `State` is complete.
    Synced,
    /// One chat message, in its room.
    Message {
        origin: u32,
        seq: u64,
        room: String,
        text: String,
    },
    /// The nodes I know: (name, cluster address).
    Nodes {
        nodes: Vec<(String, String)>,
    },
    /// My listeners, and the busiest of my rooms with theirs.
    Presence {
        listeners: u32,
        rooms: Vec<(String, u32)>,
    },
    Ping,
    Pong,
    /// I am shutting down on purpose: not a failure.
    Leave,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    TooLarge,
    UnknownKind(u8),
    Truncated,
    TrailingBytes,
    BadUtf8,
    TooManyItems,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            WireError::TooLarge => write!(f, "frame too large"),
            WireError::UnknownKind(k) => write!(f, "unknown frame kind {k}"),
            WireError::Truncated => write!(f, "field runs past the end of the frame"),
            WireError::TrailingBytes => write!(f, "bytes left over after the fields"),
            WireError::BadUtf8 => write!(f, "string is not UTF-8"),
            WireError::TooManyItems => write!(f, "list too long"),
        }
    }
}

const HELLO: u8 = 1;
const CHALLENGE: u8 = 2;
const PROOF: u8 = 3;
const REFUSE: u8 = 4;
const STATE: u8 = 10;
const SYNCED: u8 = 11;
const MESSAGE: u8 = 12;
const NODES: u8 = 13;
const PRESENCE: u8 = 14;
const PING: u8 = 15;
const PONG: u8 = 16;
const LEAVE: u8 = 17;

/// Appends `frame` to `out`.
pub fn encode(frame: &Frame, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    match frame {
        Frame::Hello {
            version,
            name,
            addr,
            nonce,
        } => {
            out.push(HELLO);
            out.push(*version);
            put_str(out, name);
            put_str(out, addr);
            out.extend_from_slice(nonce);
        }
        Frame::Challenge { name, nonce, share } => {
            out.push(CHALLENGE);
            put_str(out, name);
            out.extend_from_slice(nonce);
            out.extend_from_slice(share);
        }
        Frame::Proof { share, mac } => {
            out.push(PROOF);
            out.extend_from_slice(share);
            out.extend_from_slice(mac);
        }
        Frame::Refuse { reason } => {
            out.push(REFUSE);
            put_str(out, reason);
        }
        Frame::State {
            clock,
            floors,
            listeners,
        } => {
            out.push(STATE);
            out.extend_from_slice(&listeners.to_be_bytes());
            for list in [clock, floors] {
                out.extend_from_slice(&(list.len().min(MAX_LIST) as u16).to_be_bytes());
                for (tag, seq) in list.iter().take(MAX_LIST) {
                    out.extend_from_slice(&tag.to_be_bytes());
                    out.extend_from_slice(&seq.to_be_bytes());
                }
            }
        }
        Frame::Synced => out.push(SYNCED),
        Frame::Message {
            origin,
            seq,
            room,
            text,
        } => {
            out.truncate(start);
            return encode_message(*origin, *seq, room, text, out);
        }
        Frame::Nodes { nodes } => {
            out.push(NODES);
            out.extend_from_slice(&(nodes.len().min(MAX_LIST) as u16).to_be_bytes());
            for (name, addr) in nodes.iter().take(MAX_LIST) {
                put_str(out, name);
                put_str(out, addr);
            }
        }
        Frame::Presence { listeners, rooms } => {
            out.push(PRESENCE);
            out.extend_from_slice(&listeners.to_be_bytes());
            out.push(rooms.len().min(MAX_ROOMS) as u8);
            for (room, n) in rooms.iter().take(MAX_ROOMS) {
                put_str(out, room);
                out.extend_from_slice(&n.to_be_bytes());
            }
        }
        Frame::Ping => out.push(PING),
        Frame::Pong => out.push(PONG),
        Frame::Leave => out.push(LEAVE),
    }
    let len = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

/// Appends a `Message` frame without building a `Frame` (no copy of the
/// text): what the node sends for every message, live and in replays. The
/// room is a valid room name (at most 32 bytes).
pub fn encode_message(origin: u32, seq: u64, room: &str, text: &str, out: &mut Vec<u8>) {
    let room = room.get(..room.len().min(u8::MAX as usize)).unwrap_or("");
    let len = 1 + 4 + 8 + 1 + room.len() + 4 + text.len();
    out.extend_from_slice(&(len as u32).to_be_bytes());
    out.push(MESSAGE);
    out.extend_from_slice(&origin.to_be_bytes());
    out.extend_from_slice(&seq.to_be_bytes());
    out.push(room.len() as u8);
    out.extend_from_slice(room.as_bytes());
    out.extend_from_slice(&(text.len() as u32).to_be_bytes());
    out.extend_from_slice(text.as_bytes());
}

/// Strings longer than a u16 length are cut (names and reasons are short).
fn put_str(out: &mut Vec<u8>, s: &str) {
    let mut end = s.len().min(u16::MAX as usize);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    out.extend_from_slice(&(end as u16).to_be_bytes());
    out.extend_from_slice(&s.as_bytes()[..end]);
}

/// Decodes the frame at the start of `buf`. Ok(None): not all here yet.
/// Ok(Some((frame, used))): `used` bytes make the frame.
pub fn decode(buf: &[u8], max_frame: usize) -> Result<Option<(Frame, usize)>, WireError> {
    let Some(len) = buf.get(..4) else {
        return Ok(None);
    };
    let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
    if len > max_frame || len == 0 {
        return Err(if len == 0 {
            WireError::Truncated
        } else {
            WireError::TooLarge
        });
    }
    let Some(body) = buf.get(4..4 + len) else {
        return Ok(None);
    };
    let mut r = Reader { buf: body };
    let kind = r.u8()?;
    let frame = match kind {
        HELLO => Frame::Hello {
            version: r.u8()?,
            name: r.str16()?,
            addr: r.str16()?,
            nonce: r.array()?,
        },
        CHALLENGE => Frame::Challenge {
            name: r.str16()?,
            nonce: r.array()?,
            share: r.array()?,
        },
        PROOF => Frame::Proof {
            share: r.array()?,
            mac: r.array()?,
        },
        REFUSE => Frame::Refuse { reason: r.str16()? },
        STATE => {
            let listeners = r.u32()?;
            let clock = r.clock()?;
            let floors = r.clock()?;
            Frame::State {
                clock,
                floors,
                listeners,
            }
        }
        SYNCED => Frame::Synced,
        MESSAGE => {
            let origin = r.u32()?;
            let seq = r.u64()?;
            let room = r.str8()?;
            let n = r.u32()? as usize;
            Frame::Message {
                origin,
                seq,
                room,
                text: r.string(n)?,
            }
        }
        NODES => {
            let n = r.u16()? as usize;
            if n > MAX_LIST {
                return Err(WireError::TooManyItems);
            }
            let mut nodes = Vec::with_capacity(n);
            for _ in 0..n {
                nodes.push((r.str16()?, r.str16()?));
            }
            Frame::Nodes { nodes }
        }
        PRESENCE => {
            let listeners = r.u32()?;
            let n = r.u8()? as usize;
            if n > MAX_ROOMS {
                return Err(WireError::TooManyItems);
            }
            let mut rooms = Vec::with_capacity(n);
            for _ in 0..n {
                rooms.push((r.str16()?, r.u32()?));
            }
            Frame::Presence { listeners, rooms }
        }
        PING => Frame::Ping,
        PONG => Frame::Pong,
        LEAVE => Frame::Leave,
        k => return Err(WireError::UnknownKind(k)),
    };
    if !r.buf.is_empty() {
        return Err(WireError::TrailingBytes);
    }
    Ok(Some((frame, 4 + len)))
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], WireError> {
        if self.buf.len() < n {
            return Err(WireError::Truncated);
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let mut a = [0; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.array::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, WireError> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_be_bytes(self.array()?))
    }
    fn string(&mut self, n: usize) -> Result<String, WireError> {
        let bytes = self.take(n)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| WireError::BadUtf8)
    }
    fn str16(&mut self) -> Result<String, WireError> {
        let n = self.u16()? as usize;
        self.string(n)
    }
    /// A list of (origin, sequence), at most `MAX_LIST`.
    fn clock(&mut self) -> Result<Vec<(u32, u64)>, WireError> {
        let n = self.u16()? as usize;
        if n > MAX_LIST {
            return Err(WireError::TooManyItems);
        }
        let mut list = Vec::with_capacity(n);
        for _ in 0..n {
            list.push((self.u32()?, self.u64()?));
        }
        Ok(list)
    }
    fn str8(&mut self) -> Result<String, WireError> {
        let n = self.u8()? as usize;
        self.string(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Vec<Frame> {
        vec![
            Frame::Hello {
                version: VERSION,
                name: "node1@127.0.0.1".into(),
                addr: "127.0.0.1:4371".into(),
                nonce: [7; NONCE_LEN],
            },
            Frame::Challenge {
                name: "n2".into(),
                nonce: [1; NONCE_LEN],
                share: [4; SHARE_LEN],
            },
            Frame::Proof {
                share: [5; SHARE_LEN],
                mac: [3; MAC_LEN],
            },
            Frame::Refuse {
                reason: "cookie".into(),
            },
            Frame::State {
                clock: vec![(1, 2), (3, u64::MAX)],
                floors: vec![(3, 7)],
                listeners: 9,
            },
            Frame::Synced,
            Frame::Message {
                origin: 0xdead_beef,
                seq: 42,
                room: "general".into(),
                text: "héllo\nworld 🚀".into(),
            },
            Frame::Nodes {
                nodes: vec![("a@h".into(), "127.0.0.1:1".into())],
            },
            Frame::Presence {
                listeners: 3,
                rooms: vec![("lobby".into(), 2), ("x".into(), 1)],
            },
            Frame::Ping,
            Frame::Pong,
            Frame::Leave,
        ]
    }

    #[test]
    fn roundtrip_and_every_prefix_is_incomplete() {
        for f in all() {
            let mut buf = Vec::new();
            encode(&f, &mut buf);
            for cut in 0..buf.len() {
                assert_eq!(decode(&buf[..cut], MAX_FRAME), Ok(None), "{f:?} cut {cut}");
            }
            buf.extend_from_slice(b"next");
            let (back, used) = decode(&buf, MAX_FRAME).unwrap().unwrap();
            assert_eq!(back, f);
            assert_eq!(used, buf.len() - 4);
        }
    }

    #[test]
    fn hostile_frames_are_errors() {
        let cases: &[(&str, &[u8], WireError)] = &[
            (
                "huge length",
                &[0xff, 0xff, 0xff, 0xff],
                WireError::TooLarge,
            ),
            ("empty frame", &[0, 0, 0, 0], WireError::Truncated),
            (
                "unknown kind",
                &[0, 0, 0, 1, 99],
                WireError::UnknownKind(99),
            ),
            ("short proof", &[0, 0, 0, 2, PROOF, 1], WireError::Truncated),
            ("trailing", &[0, 0, 0, 2, PING, 0], WireError::TrailingBytes),
            (
                "bad utf8",
                &[0, 0, 0, 4, REFUSE, 0, 1, 0xff],
                WireError::BadUtf8,
            ),
            (
                "text past end",
                &[
                    0, 0, 0, 18, MESSAGE, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0xff, 0xff, 0xff,
                    0xff,
                ],
                WireError::Truncated,
            ),
            (
                "too many",
                &[0, 0, 0, 3, NODES, 0xff, 0xff],
                WireError::TooManyItems,
            ),
        ];
        for (name, bytes, want) in cases {
            assert_eq!(decode(bytes, MAX_FRAME), Err(*want), "{name}");
        }
        let mut big = Vec::new();
        encode(
            &Frame::Refuse {
                reason: "x".repeat(2000),
            },
            &mut big,
        );
        assert_eq!(decode(&big, MAX_HANDSHAKE_FRAME), Err(WireError::TooLarge));
    }
}
