//! The client side of HTTP/2 (RFC 9113) that SSE listeners need, sans IO:
//! the connection preface (with a large initial window and a connection
//! WINDOW_UPDATE), GET requests encoded in HPACK as literals without
//! indexing with raw strings (RFC 7541 6.2.2; no dynamic table, no
//! Huffman), and a frame reader that turns the server's bytes into events
//! per stream (response began, DATA payload, stream ended) while it answers
//! SETTINGS and PING and returns flow-control credit as DATA arrives. The
//! server's header blocks are not decoded: only a leading `:status` is read
//! when it is cheap (an indexed static entry, or a literal with a raw value).
//! Streams are numbered by their index `k`: stream id `2k + 1`.

pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const PING: u8 = 0x6;
pub const GOAWAY: u8 = 0x7;
pub const WINDOW_UPDATE: u8 = 0x8;

pub const END_STREAM: u8 = 0x1;
pub const ACK: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;
pub const PADDED: u8 = 0x8;
pub const PRIORITY: u8 = 0x20;

/// The stream window we announce (SETTINGS_INITIAL_WINDOW_SIZE): 16 MiB.
pub const STREAM_WINDOW: u32 = 16 << 20;
/// The connection window after our first WINDOW_UPDATE: the maximum.
pub const CONN_WINDOW: u32 = (1 << 31) - 1;
/// Credit is returned once this much of a window has been used.
const RETURN_AT: u32 = STREAM_WINDOW / 2;
/// SETTINGS_MAX_FRAME_SIZE, which we leave at its default: a longer frame
/// is a protocol error (and catches an HTTP/1.1 answer to the preface).
const MAX_FRAME: usize = 16_384;

pub fn frame_header(len: usize, ty: u8, flags: u8, id: u32) -> [u8; 9] {
    let l = (len as u32).to_be_bytes();
    let s = (id & 0x7fff_ffff).to_be_bytes();
    [l[1], l[2], l[3], ty, flags, s[0], s[1], s[2], s[3]]
}

pub fn window_update(id: u32, increment: u32) -> [u8; 13] {
    let mut f = [0; 13];
    f[..9].copy_from_slice(&frame_header(4, WINDOW_UPDATE, 0, id));
    f[9..].copy_from_slice(&(increment & 0x7fff_ffff).to_be_bytes());
    f
}

/// The client preface, then SETTINGS (ENABLE_PUSH 0, INITIAL_WINDOW_SIZE
/// `STREAM_WINDOW`) and a WINDOW_UPDATE raising the connection window to
/// `CONN_WINDOW`.
pub fn preface() -> Vec<u8> {
    let mut out = PREFACE.to_vec();
    out.extend_from_slice(&frame_header(12, SETTINGS, 0, 0));
    out.extend_from_slice(&[0, 2, 0, 0, 0, 0]);
    out.extend_from_slice(&[0, 4]);
    out.extend_from_slice(&STREAM_WINDOW.to_be_bytes());
    out.extend_from_slice(&window_update(0, CONN_WINDOW - 65_535));
    out
}

/// An HPACK integer with an `n`-bit prefix, the high bits of the first byte
/// set to `first` (RFC 7541 5.1).
fn hpack_int(out: &mut Vec<u8>, first: u8, n: u8, mut v: usize) {
    let max = (1usize << n) - 1;
    if v < max {
        out.push(first | v as u8);
        return;
    }
    out.push(first | max as u8);
    v -= max;
    while v >= 128 {
        out.push((v % 128) as u8 | 0x80);
        v /= 128;
    }
    out.push(v as u8);
}

/// A literal header field without indexing, its name a static-table entry
/// (RFC 7541 6.2.2), the value a raw string.
fn literal(out: &mut Vec<u8>, name_index: usize, value: &str) {
    hpack_int(out, 0x00, 4, name_index);
    hpack_int(out, 0x00, 7, value.len());
    out.extend_from_slice(value.as_bytes());
}

/// HEADERS (END_HEADERS | END_STREAM) for `GET path` on stream `id`.
pub fn request(id: u32, https: bool, authority: &str, path: &str) -> Vec<u8> {
    let mut block = Vec::with_capacity(64 + authority.len() + path.len());
    literal(&mut block, 2, "GET"); // :method
    literal(
        &mut block,
        if https { 7 } else { 6 },
        if https { "https" } else { "http" },
    ); // :scheme
    literal(&mut block, 1, authority); // :authority
    literal(&mut block, 4, path); // :path
    literal(&mut block, 19, "text/event-stream"); // accept
    let mut out = frame_header(block.len(), HEADERS, END_HEADERS | END_STREAM, id).to_vec();
    out.extend_from_slice(&block);
    out
}

/// The `:status` at the start of a header block when cheap to read: an
/// indexed static entry (8-14), or a literal with static name 8 and a raw
/// (non-Huffman) value. `None` otherwise.
pub fn leading_status(block: &[u8]) -> Option<u16> {
    const INDEXED: [u16; 7] = [200, 204, 206, 304, 400, 404, 500];
    let b = *block.first()?;
    if (0x88..=0x8e).contains(&b) {
        return Some(INDEXED[(b - 0x88) as usize]);
    }
    // Literal with incremental indexing (01 + 6-bit index 8), without
    // indexing (0000 + 8) or never indexed (0001 + 8).
    if b != 0x48 && b != 0x08 && b != 0x18 {
        return None;
    }
    let len = *block.get(1)?;
    if len & 0x80 != 0 || len != 3 {
        return None; // Huffman, or not three digits
    }
    std::str::from_utf8(block.get(2..5)?).ok()?.parse().ok()
}

/// The payload of a DATA or HEADERS frame without its padding (and, for
/// HEADERS, its priority fields). `None` if the padding does not fit.
fn unpadded(ty: u8, flags: u8, p: &[u8]) -> Option<&[u8]> {
    let (mut start, mut end) = (0, p.len());
    if flags & PADDED != 0 {
        let pad = *p.first()? as usize;
        start = 1;
        end = end.checked_sub(pad)?;
    }
    if ty == HEADERS && flags & PRIORITY != 0 {
        start += 5;
    }
    p.get(start..end)
}

/// What the server's frames mean to the listeners.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// Stream `k`'s response began, with its `:status` if read.
    Response(usize, Option<u16>),
    /// SSE bytes on stream `k`.
    Data(usize, &'a [u8]),
    /// Stream `k` ended (END_STREAM or RST_STREAM).
    Ended(usize, &'static str),
    /// GOAWAY: every stream above `last` is refused and the connection ends.
    GoAway(u32),
}

/// One connection's reader state: a partial frame, whether each stream's
/// response began, the flow-control credit not yet returned, and the bytes
/// to send back (ACKs, WINDOW_UPDATEs).
pub struct Conn {
    partial: Vec<u8>,
    began: Vec<bool>,
    ended: Vec<bool>,
    conn_used: u32,
    stream_used: Vec<u32>,
    pub out: Vec<u8>,
}

impl Conn {
    pub fn new(streams: usize) -> Conn {
        Conn {
            partial: Vec::new(),
            began: vec![false; streams],
            ended: vec![false; streams],
            conn_used: 0,
            stream_used: vec![0; streams],
            out: Vec::new(),
        }
    }

    /// Everything a connection sends at once: the preface, then a GET of
    /// `paths[k]` on stream `2k + 1` for each of its listeners.
    pub fn opening(https: bool, authority: &str, paths: &[String]) -> Vec<u8> {
        let mut out = preface();
        for (k, path) in paths.iter().enumerate() {
            out.extend_from_slice(&request(2 * k as u32 + 1, https, authority, path));
        }
        out
    }

    fn stream(&self, id: u32) -> Option<usize> {
        let k = (id as usize).checked_sub(1)? / 2;
        (id % 2 == 1 && k < self.began.len()).then_some(k)
    }

    /// Feeds bytes from the server; frames complete in them become events.
    /// An error means the connection is unusable (a protocol violation).
    pub fn feed(&mut self, data: &[u8], on: &mut impl FnMut(Event)) -> Result<(), String> {
        if self.partial.is_empty() {
            let used = self.frames(data, on)?;
            self.partial.extend_from_slice(&data[used..]);
        } else {
            let mut buf = std::mem::take(&mut self.partial);
            buf.extend_from_slice(data);
            let used = self.frames(&buf, on)?;
            buf.drain(..used);
            self.partial = buf;
        }
        Ok(())
    }

    /// Handles the whole frames at the start of `buf`; returns the bytes used.
    fn frames(&mut self, buf: &[u8], on: &mut impl FnMut(Event)) -> Result<usize, String> {
        let mut at = 0;
        while buf.len() - at >= 9 {
            let h = &buf[at..at + 9];
            let len = u32::from_be_bytes([0, h[0], h[1], h[2]]) as usize;
            if len > MAX_FRAME {
                return Err(format!("frame of {len} bytes"));
            }
            if buf.len() - at < 9 + len {
                break;
            }
            let (ty, flags) = (h[3], h[4]);
            let id = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
            self.frame(ty, flags, id, &buf[at + 9..at + 9 + len], on)?;
            at += 9 + len;
        }
        Ok(at)
    }

    fn end(&mut self, k: usize, why: &'static str, on: &mut impl FnMut(Event)) {
        if !self.ended[k] {
            self.ended[k] = true;
            on(Event::Ended(k, why));
        }
    }

    fn frame(
        &mut self,
        ty: u8,
        flags: u8,
        id: u32,
        p: &[u8],
        on: &mut impl FnMut(Event),
    ) -> Result<(), String> {
        match ty {
            DATA => {
                // Flow control counts the whole payload, padding included.
                self.conn_used += p.len() as u32;
                if self.conn_used >= RETURN_AT {
                    self.out
                        .extend_from_slice(&window_update(0, self.conn_used));
                    self.conn_used = 0;
                }
                let Some(k) = self.stream(id) else {
                    return Ok(());
                };
                let data = unpadded(ty, flags, p).ok_or("bad DATA padding")?;
                if !self.ended[k] {
                    if !data.is_empty() {
                        on(Event::Data(k, data));
                    }
                    self.stream_used[k] += p.len() as u32;
                    if self.stream_used[k] >= RETURN_AT && flags & END_STREAM == 0 {
                        let id = 2 * k as u32 + 1;
                        self.out
                            .extend_from_slice(&window_update(id, self.stream_used[k]));
                        self.stream_used[k] = 0;
                    }
                }
                if flags & END_STREAM != 0 {
                    self.end(k, "END_STREAM", on);
                }
            }
            HEADERS => {
                let Some(k) = self.stream(id) else {
                    return Ok(());
                };
                let block = unpadded(ty, flags, p).ok_or("bad HEADERS padding")?;
                if !self.began[k] {
                    self.began[k] = true;
                    on(Event::Response(k, leading_status(block)));
                }
                if flags & END_STREAM != 0 {
                    self.end(k, "END_STREAM", on);
                }
            }
            RST_STREAM => {
                if let Some(k) = self.stream(id) {
                    self.end(k, "RST_STREAM", on);
                }
            }
            SETTINGS if flags & ACK == 0 => {
                self.out
                    .extend_from_slice(&frame_header(0, SETTINGS, ACK, 0));
            }
            PING if flags & ACK == 0 => {
                self.out
                    .extend_from_slice(&frame_header(p.len(), PING, ACK, 0));
                self.out.extend_from_slice(p);
            }
            GOAWAY => {
                let last = p.get(..4).map_or(0, |b| {
                    u32::from_be_bytes([b[0], b[1], b[2], b[3]]) & 0x7fff_ffff
                });
                on(Event::GoAway(last));
                for k in 0..self.ended.len() {
                    self.end(k, "GOAWAY", on);
                }
            }
            // WINDOW_UPDATE, PRIORITY, CONTINUATION (of a block we do not
            // decode), acknowledgements, unknown types: nothing to do.
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(c: &mut Conn, bytes: &[u8], piece: usize) -> Vec<String> {
        let mut got = Vec::new();
        for p in bytes.chunks(piece) {
            c.feed(p, &mut |e| got.push(format!("{e:?}"))).unwrap();
        }
        got
    }

    fn frame(ty: u8, flags: u8, id: u32, payload: &[u8]) -> Vec<u8> {
        let mut f = frame_header(payload.len(), ty, flags, id).to_vec();
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn preface_bytes() {
        let p = preface();
        assert!(p.starts_with(PREFACE));
        let rest = &p[PREFACE.len()..];
        assert_eq!(
            rest,
            [
                0, 0, 12, 4, 0, 0, 0, 0, 0, // SETTINGS, 12 bytes, stream 0
                0, 2, 0, 0, 0, 0, // ENABLE_PUSH 0
                0, 4, 0x01, 0, 0, 0, // INITIAL_WINDOW_SIZE 16 MiB
                0, 0, 4, 8, 0, 0, 0, 0, 0, // WINDOW_UPDATE, stream 0
                0x7f, 0xff, 0, 0, // 2^31 - 1 - 65,535
            ]
        );
    }

    #[test]
    fn request_encoding() {
        let r = request(3, true, "127.0.0.1:8443", "/listen");
        let block: &[u8] = &[
            0x02, 3, b'G', b'E', b'T', // :method GET (name index 2)
            0x07, 5, b'h', b't', b't', b'p', b's', // :scheme https (7)
            0x01, 14, b'1', b'2', b'7', b'.', b'0', b'.', b'0', b'.', b'1', b':', b'8', b'4', b'4',
            b'3', // :authority (1)
            0x04, 7, b'/', b'l', b'i', b's', b't', b'e', b'n', // :path (4)
            0x0f, 0x04, 17, b't', b'e', b'x', b't', b'/', b'e', b'v', b'e', b'n', b't', b'-', b's',
            b't', b'r', b'e', b'a', b'm', // accept (19 = 15 + 4)
        ];
        assert_eq!(&r[..9], &[0, 0, block.len() as u8, 1, 5, 0, 0, 0, 3]);
        assert_eq!(&r[9..], block);
        let plain = request(1, false, "h", "/");
        assert_eq!(&plain[9 + 5..9 + 5 + 6], &[0x06, 4, b'h', b't', b't', b'p']);
        // Integers past the prefix (RFC 7541 C.1.2: 1337 with a 5-bit prefix).
        let mut v = Vec::new();
        hpack_int(&mut v, 0, 5, 1337);
        assert_eq!(v, [31, 154, 10]);
        let long = "/".repeat(200);
        let r = request(1, false, "h", &long);
        assert!(r.windows(3).any(|w| w == [0x04, 0x7f, 200 - 127]));
    }

    #[test]
    fn opening_has_one_request_per_stream() {
        let paths = ["/a".to_string(), "/b".to_string()];
        let o = Conn::opening(false, "h", &paths);
        let p = preface();
        assert!(o.starts_with(&p));
        let mut rest = o[p.len()..].to_vec();
        for (id, path) in [(1, "/a"), (3, "/b")] {
            let r = request(id, false, "h", path);
            assert_eq!(&rest[..r.len()], &r[..]);
            rest.drain(..r.len());
        }
        assert!(rest.is_empty());
    }

    #[test]
    fn statuses() {
        assert_eq!(leading_status(&[0x88, 0x5f]), Some(200));
        assert_eq!(leading_status(&[0x8d]), Some(404));
        assert_eq!(leading_status(b"\x08\x03503"), Some(503));
        assert_eq!(leading_status(&[0x08, 0x82, 0x10, 0x01]), None); // Huffman
        assert_eq!(leading_status(&[0x5f]), None);
        assert_eq!(leading_status(&[]), None);
    }

    #[test]
    fn frames_become_events() {
        let mut bytes = frame(SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 128]);
        bytes.extend(frame(SETTINGS, ACK, 0, &[]));
        bytes.extend(frame(HEADERS, END_HEADERS, 1, &[0x88, 0x5f, 0x87]));
        bytes.extend(frame(
            HEADERS,
            END_HEADERS | PADDED | PRIORITY,
            3,
            &[2, 0, 0, 0, 0, 9, 0x8d, 0, 0],
        ));
        bytes.extend(frame(DATA, 0, 1, b"data: 1 2 3\n\n"));
        bytes.extend(frame(DATA, PADDED, 1, b"\x03data: x\n\n\0\0\0"));
        bytes.extend(frame(PING, 0, 0, b"12345678"));
        bytes.extend(frame(WINDOW_UPDATE, 0, 0, &[0, 0, 1, 0]));
        bytes.extend(frame(DATA, 0, 2, b"even: not ours"));
        bytes.extend(frame(DATA, 0, 99, b"past our streams"));
        bytes.extend(frame(RST_STREAM, 0, 3, &[0, 0, 0, 8]));
        bytes.extend(frame(DATA, END_STREAM, 1, b""));
        bytes.extend(frame(DATA, 0, 1, b"after the end"));
        let want = [
            "Response(0, Some(200))",
            "Response(1, Some(404))",
            "Data(0, [100, 97, 116, 97, 58, 32, 49, 32, 50, 32, 51, 10, 10])",
            "Data(0, [100, 97, 116, 97, 58, 32, 120, 10, 10])",
            "Ended(1, \"RST_STREAM\")",
            "Ended(0, \"END_STREAM\")",
        ];
        for piece in [1, 7, bytes.len()] {
            let mut c = Conn::new(2);
            assert_eq!(events(&mut c, &bytes, piece), want, "pieces of {piece}");
            let mut acks = frame(SETTINGS, ACK, 0, &[]);
            acks.extend(frame(PING, ACK, 0, b"12345678"));
            assert_eq!(c.out, acks);
        }
    }

    #[test]
    fn goaway_ends_every_stream() {
        let mut c = Conn::new(3);
        let mut bytes = frame(RST_STREAM, 0, 5, &[0, 0, 0, 8]);
        bytes.extend(frame(GOAWAY, 0, 0, &[0, 0, 0, 3, 0, 0, 0, 0]));
        assert_eq!(
            events(&mut c, &bytes, 5),
            [
                "Ended(2, \"RST_STREAM\")",
                "GoAway(3)",
                "Ended(0, \"GOAWAY\")",
                "Ended(1, \"GOAWAY\")",
            ]
        );
    }

    #[test]
    fn credit_is_returned() {
        let mut c = Conn::new(1);
        let chunk = frame(DATA, 0, 1, &vec![b':'; 16_384]);
        let n = (RETURN_AT as usize).div_ceil(16_384);
        for _ in 0..n {
            c.feed(&chunk, &mut |_| {}).unwrap();
        }
        let used = (n * 16_384) as u32;
        let mut want = window_update(0, used).to_vec();
        want.extend(window_update(1, used));
        assert_eq!(c.out, want);
    }

    #[test]
    fn bad_frames_are_errors() {
        let mut c = Conn::new(1);
        assert!(c
            .feed(b"HTTP/1.1 400 Bad Request\r\n", &mut |_| {})
            .is_err());
        let mut c = Conn::new(1);
        let bad = frame(DATA, PADDED, 1, &[9, 1, 2]);
        assert!(c.feed(&bad, &mut |_| {}).is_err());
    }
}
