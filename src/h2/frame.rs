//! The HTTP/2 frame layer (RFC 9113 §4 and §6), pure: `decode` turns client
//! bytes into one borrowed `Frame` after checking every length and field
//! rule of §6 (a failure is a `FrameError` that says whether it is a
//! connection or a stream error, §5.4), and the `write_*` functions append
//! the frames a server sends to a `Vec<u8>`. It knows nothing of streams or
//! windows: `conn` (the connection) interprets frames, `hpack` decodes the
//! header blocks they carry.

use std::fmt;

/// Every frame starts with this many bytes (§4.1).
pub const HEADER_LEN: usize = 9;
/// The client connection preface (§3.4).
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// SETTINGS_MAX_FRAME_SIZE bounds (§6.5.2); the lower is also the default.
pub const MIN_MAX_FRAME_SIZE: u32 = 16_384;
pub const MAX_MAX_FRAME_SIZE: u32 = 16_777_215;
/// The largest flow-control window (§6.9.1) and the default one (§6.9.2).
pub const MAX_WINDOW: u32 = (1 << 31) - 1;
pub const DEFAULT_WINDOW: u32 = 65_535;

/// Frame types (§6).
pub mod kind {
    pub const DATA: u8 = 0x0;
    pub const HEADERS: u8 = 0x1;
    pub const PRIORITY: u8 = 0x2;
    pub const RST_STREAM: u8 = 0x3;
    pub const SETTINGS: u8 = 0x4;
    pub const PUSH_PROMISE: u8 = 0x5;
    pub const PING: u8 = 0x6;
    pub const GOAWAY: u8 = 0x7;
    pub const WINDOW_UPDATE: u8 = 0x8;
    pub const CONTINUATION: u8 = 0x9;
}

/// Frame flags (§6); ACK shares its bit with END_STREAM.
pub mod flag {
    pub const END_STREAM: u8 = 0x1;
    pub const ACK: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;
    pub const PADDED: u8 = 0x8;
    pub const PRIORITY: u8 = 0x20;
}

/// SETTINGS identifiers (§6.5.2).
pub mod setting {
    pub const HEADER_TABLE_SIZE: u16 = 0x1;
    pub const ENABLE_PUSH: u16 = 0x2;
    pub const MAX_CONCURRENT_STREAMS: u16 = 0x3;
    pub const INITIAL_WINDOW_SIZE: u16 = 0x4;
    pub const MAX_FRAME_SIZE: u16 = 0x5;
    pub const MAX_HEADER_LIST_SIZE: u16 = 0x6;
}

/// Error codes (§7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    NoError = 0x0,
    ProtocolError = 0x1,
    InternalError = 0x2,
    FlowControlError = 0x3,
    SettingsTimeout = 0x4,
    StreamClosed = 0x5,
    FrameSizeError = 0x6,
    RefusedStream = 0x7,
    Cancel = 0x8,
    CompressionError = 0x9,
    ConnectError = 0xa,
    EnhanceYourCalm = 0xb,
    InadequateSecurity = 0xc,
    Http11Required = 0xd,
}

impl ErrorCode {
    /// Unknown codes read as INTERNAL_ERROR, which §7 allows: they must not
    /// trigger anything special.
    pub fn from_u32(v: u32) -> ErrorCode {
        use ErrorCode::*;
        match v {
            0x0 => NoError,
            0x1 => ProtocolError,
            0x3 => FlowControlError,
            0x4 => SettingsTimeout,
            0x5 => StreamClosed,
            0x6 => FrameSizeError,
            0x7 => RefusedStream,
            0x8 => Cancel,
            0x9 => CompressionError,
            0xa => ConnectError,
            0xb => EnhanceYourCalm,
            0xc => InadequateSecurity,
            0xd => Http11Required,
            _ => InternalError,
        }
    }

    pub fn name(self) -> &'static str {
        use ErrorCode::*;
        match self {
            NoError => "NO_ERROR",
            ProtocolError => "PROTOCOL_ERROR",
            InternalError => "INTERNAL_ERROR",
            FlowControlError => "FLOW_CONTROL_ERROR",
            SettingsTimeout => "SETTINGS_TIMEOUT",
            StreamClosed => "STREAM_CLOSED",
            FrameSizeError => "FRAME_SIZE_ERROR",
            RefusedStream => "REFUSED_STREAM",
            Cancel => "CANCEL",
            CompressionError => "COMPRESSION_ERROR",
            ConnectError => "CONNECT_ERROR",
            EnhanceYourCalm => "ENHANCE_YOUR_CALM",
            InadequateSecurity => "INADEQUATE_SECURITY",
            Http11Required => "HTTP_1_1_REQUIRED",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A broken rule (§5.4): a connection error ends the connection with GOAWAY,
/// a stream error ends one stream with RST_STREAM. `why` is for logs and
/// GOAWAY debug data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    Connection {
        code: ErrorCode,
        why: &'static str,
    },
    Stream {
        stream: u32,
        code: ErrorCode,
        why: &'static str,
    },
}

impl FrameError {
    pub fn code(&self) -> ErrorCode {
        match *self {
            FrameError::Connection { code, .. } | FrameError::Stream { code, .. } => code,
        }
    }

    pub fn why(&self) -> &'static str {
        match *self {
            FrameError::Connection { why, .. } | FrameError::Stream { why, .. } => why,
        }
    }
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Connection { code, why } => write!(f, "connection error {code}: {why}"),
            FrameError::Stream { stream, code, why } => {
                write!(f, "stream {stream} error {code}: {why}")
            }
        }
    }
}

fn conn_err(code: ErrorCode, why: &'static str) -> FrameError {
    FrameError::Connection { code, why }
}

/// One frame, its payload borrowed from the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// `data` has its padding stripped; `flow_len` is the whole payload,
    /// padding included, which is what flow control counts (§6.1).
    Data {
        stream: u32,
        end_stream: bool,
        data: &'a [u8],
        flow_len: u32,
    },
    /// `block` is the field block fragment, padding and priority fields
    /// stripped; `depends_on` is the priority field's stream, if present
    /// (only checked for self-dependency, §5.3.1).
    Headers {
        stream: u32,
        end_stream: bool,
        end_headers: bool,
        block: &'a [u8],
        depends_on: Option<u32>,
    },
    Priority {
        stream: u32,
        depends_on: u32,
    },
    RstStream {
        stream: u32,
        code: ErrorCode,
    },
    Settings {
        ack: bool,
        params: Params<'a>,
    },
    /// Never valid from a client (§8.4): the connection treats it as a
    /// PROTOCOL_ERROR.
    PushPromise {
        stream: u32,
    },
    Ping {
        ack: bool,
        data: [u8; 8],
    },
    GoAway {
        last_stream: u32,
        code: ErrorCode,
        debug: &'a [u8],
    },
    WindowUpdate {
        stream: u32,
        increment: u32,
    },
    Continuation {
        stream: u32,
        end_headers: bool,
        block: &'a [u8],
    },
    /// A frame type this endpoint does not know: ignored (§4.1, §5.5).
    Unknown {
        kind: u8,
        stream: u32,
    },
}

/// The parameters of a SETTINGS frame, already checked by `decode` (a
/// payload of whole 6-byte entries with valid values).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Params<'a>(&'a [u8]);

impl<'a> Params<'a> {
    /// `(identifier, value)` pairs in the order sent (§6.5: in order).
    pub fn iter(&self) -> impl Iterator<Item = (u16, u32)> + 'a {
        self.0.chunks_exact(6).map(|c| {
            let id = u16::from_be_bytes([c[0], c[1]]);
            let value = u32::from_be_bytes([c[2], c[3], c[4], c[5]]);
            (id, value)
        })
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The length of the frame at the front of `buf` (header included), once
/// its header is there. A stream error leaves the frame whole in `buf`;
/// the caller skips this many bytes.
pub fn frame_len(buf: &[u8]) -> Option<usize> {
    let h = buf.get(..3)?;
    if buf.len() < HEADER_LEN {
        return None;
    }
    Some(HEADER_LEN + (u32::from_be_bytes([0, h[0], h[1], h[2]]) as usize))
}

fn be32(b: &[u8]) -> u32 {
    match b {
        [a, b, c, d, ..] => u32::from_be_bytes([*a, *b, *c, *d]),
        _ => 0,
    }
}

/// Decodes the frame at the front of `buf`. `Ok(None)`: the frame is not
/// whole yet (at most `HEADER_LEN + max_frame_size` bytes are ever needed:
/// a longer frame is refused as soon as its header is in). `Ok(Some((f,
/// n)))`: `n` bytes were used. A stream error is returned only once the
/// whole frame is in `buf` (see `frame_len`).
pub fn decode(buf: &[u8], max_frame_size: u32) -> Result<Option<(Frame<'_>, usize)>, FrameError> {
    use ErrorCode::*;
    let Some(head) = buf.get(..HEADER_LEN) else {
        return Ok(None);
    };
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]);
    let kind = head[3];
    let flags = head[4];
    let stream = be32(&head[5..]) & MAX_WINDOW;
    if len > max_frame_size {
        return Err(conn_err(
            FrameSizeError,
            "frame larger than SETTINGS_MAX_FRAME_SIZE",
        ));
    }
    let total = HEADER_LEN + len as usize;
    let Some(payload) = buf.get(HEADER_LEN..total) else {
        return Ok(None);
    };
    let frame = match kind {
        kind::DATA => {
            if stream == 0 {
                return Err(conn_err(ProtocolError, "DATA on stream 0"));
            }
            Frame::Data {
                stream,
                end_stream: flags & flag::END_STREAM != 0,
                data: strip_padding(flags, payload)?,
                flow_len: len,
            }
        }
        kind::HEADERS => {
            if stream == 0 {
                return Err(conn_err(ProtocolError, "HEADERS on stream 0"));
            }
            // Layout (§6.2): [pad length] [priority: 5] block [padding].
            let pad_field = usize::from(flags & flag::PADDED != 0);
            let prio_field = if flags & flag::PRIORITY != 0 { 5 } else { 0 };
            if payload.len() < pad_field + prio_field {
                return Err(conn_err(FrameSizeError, "HEADERS too short for its fields"));
            }
            let pad = match pad_field {
                0 => 0,
                _ => payload.first().copied().unwrap_or(0) as usize,
            };
            let fields = payload.get(pad_field..).unwrap_or(&[]);
            let block = fields
                .len()
                .checked_sub(prio_field + pad)
                .and_then(|n| fields.get(prio_field..prio_field + n))
                .ok_or(conn_err(
                    ProtocolError,
                    "padding longer than the field block",
                ))?;
            let depends_on = match prio_field {
                0 => None,
                _ => Some(be32(fields) & MAX_WINDOW),
            };
            Frame::Headers {
                stream,
                end_stream: flags & flag::END_STREAM != 0,
                end_headers: flags & flag::END_HEADERS != 0,
                block,
                depends_on,
            }
        }
        kind::PRIORITY => {
            if stream == 0 {
                return Err(conn_err(ProtocolError, "PRIORITY on stream 0"));
            }
            if len != 5 {
                return Err(FrameError::Stream {
                    stream,
                    code: FrameSizeError,
                    why: "PRIORITY not 5 bytes",
                });
            }
            Frame::Priority {
                stream,
                depends_on: be32(payload) & MAX_WINDOW,
            }
        }
        kind::RST_STREAM => {
            if stream == 0 {
                return Err(conn_err(ProtocolError, "RST_STREAM on stream 0"));
            }
            if len != 4 {
                return Err(conn_err(FrameSizeError, "RST_STREAM not 4 bytes"));
            }
            Frame::RstStream {
                stream,
                code: ErrorCode::from_u32(be32(payload)),
            }
        }
        kind::SETTINGS => {
            if stream != 0 {
                return Err(conn_err(ProtocolError, "SETTINGS on a stream"));
            }
            let ack = flags & flag::ACK != 0;
            if ack && len != 0 {
                return Err(conn_err(FrameSizeError, "SETTINGS ACK with a payload"));
            }
            if !len.is_multiple_of(6) {
                return Err(conn_err(
                    FrameSizeError,
                    "SETTINGS length not a multiple of 6",
                ));
            }
            let params = Params(payload);
            for (id, value) in params.iter() {
                check_setting(id, value)?;
            }
            Frame::Settings { ack, params }
        }
        kind::PUSH_PROMISE => Frame::PushPromise { stream },
        kind::PING => {
            if stream != 0 {
                return Err(conn_err(ProtocolError, "PING on a stream"));
            }
            let data: [u8; 8] = payload
                .try_into()
                .map_err(|_| conn_err(FrameSizeError, "PING not 8 bytes"))?;
            Frame::Ping {
                ack: flags & flag::ACK != 0,
                data,
            }
        }
        kind::GOAWAY => {
            if stream != 0 {
                return Err(conn_err(ProtocolError, "GOAWAY on a stream"));
            }
            if len < 8 {
                return Err(conn_err(FrameSizeError, "GOAWAY shorter than 8 bytes"));
            }
            Frame::GoAway {
                last_stream: be32(payload) & MAX_WINDOW,
                code: ErrorCode::from_u32(be32(payload.get(4..).unwrap_or(&[]))),
                debug: payload.get(8..).unwrap_or(&[]),
            }
        }
        kind::WINDOW_UPDATE => {
            if len != 4 {
                return Err(conn_err(FrameSizeError, "WINDOW_UPDATE not 4 bytes"));
            }
            let increment = be32(payload) & MAX_WINDOW;
            if increment == 0 {
                return Err(match stream {
                    0 => conn_err(ProtocolError, "WINDOW_UPDATE of 0"),
                    _ => FrameError::Stream {
                        stream,
                        code: ProtocolError,
                        why: "WINDOW_UPDATE of 0",
                    },
                });
            }
            Frame::WindowUpdate { stream, increment }
        }
        kind::CONTINUATION => {
            if stream == 0 {
                return Err(conn_err(ProtocolError, "CONTINUATION on stream 0"));
            }
            Frame::Continuation {
                stream,
                end_headers: flags & flag::END_HEADERS != 0,
                block: payload,
            }
        }
        _ => Frame::Unknown { kind, stream },
    };
    Ok(Some((frame, total)))
}

/// The payload of a PADDED frame without its pad length byte and padding
/// (§6.1, §6.2): padding as long as the payload or longer is a
/// PROTOCOL_ERROR, a PADDED frame without room for the pad length a
/// FRAME_SIZE_ERROR.
fn strip_padding(flags: u8, payload: &[u8]) -> Result<&[u8], FrameError> {
    if flags & flag::PADDED == 0 {
        return Ok(payload);
    }
    let Some((&pad, rest)) = payload.split_first() else {
        return Err(conn_err(
            ErrorCode::FrameSizeError,
            "PADDED frame without a pad length",
        ));
    };
    rest.len()
        .checked_sub(pad as usize)
        .and_then(|n| rest.get(..n))
        .ok_or(conn_err(
            ErrorCode::ProtocolError,
            "padding as long as the payload",
        ))
}

/// The value checks of §6.5.2; unknown identifiers pass (ignored).
fn check_setting(id: u16, value: u32) -> Result<(), FrameError> {
    match id {
        setting::ENABLE_PUSH if value > 1 => Err(conn_err(
            ErrorCode::ProtocolError,
            "SETTINGS_ENABLE_PUSH not 0 or 1",
        )),
        setting::INITIAL_WINDOW_SIZE if value > MAX_WINDOW => Err(conn_err(
            ErrorCode::FlowControlError,
            "SETTINGS_INITIAL_WINDOW_SIZE above 2^31-1",
        )),
        setting::MAX_FRAME_SIZE if !(MIN_MAX_FRAME_SIZE..=MAX_MAX_FRAME_SIZE).contains(&value) => {
            Err(conn_err(
                ErrorCode::ProtocolError,
                "SETTINGS_MAX_FRAME_SIZE out of range",
            ))
        }
        _ => Ok(()),
    }
}

// ---- Encoders: what a server sends. Each appends whole frames to `out`. ----

/// A frame header (§4.1). `len` must fit 24 bits (callers pass at most the
/// peer's max frame size); the reserved bit of `stream` is cleared.
pub fn header(len: usize, kind: u8, flags: u8, stream: u32) -> [u8; HEADER_LEN] {
    let l = (len as u32).to_be_bytes();
    let s = (stream & MAX_WINDOW).to_be_bytes();
    [l[1], l[2], l[3], kind, flags, s[0], s[1], s[2], s[3]]
}

/// SETTINGS with `params` in order.
pub fn write_settings(out: &mut Vec<u8>, params: &[(u16, u32)]) {
    out.extend_from_slice(&header(params.len() * 6, kind::SETTINGS, 0, 0));
    for (id, value) in params {
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&value.to_be_bytes());
    }
}

pub fn write_settings_ack(out: &mut Vec<u8>) {
    out.extend_from_slice(&header(0, kind::SETTINGS, flag::ACK, 0));
}

/// PING; a server only sends ACKs (§6.7), tests send the other kind.
pub fn write_ping(out: &mut Vec<u8>, ack: bool, data: [u8; 8]) {
    let flags = if ack { flag::ACK } else { 0 };
    out.extend_from_slice(&header(8, kind::PING, flags, 0));
    out.extend_from_slice(&data);
}

pub fn write_goaway(out: &mut Vec<u8>, last_stream: u32, code: ErrorCode, debug: &[u8]) {
    out.extend_from_slice(&header(8 + debug.len(), kind::GOAWAY, 0, 0));
    out.extend_from_slice(&(last_stream & MAX_WINDOW).to_be_bytes());
    out.extend_from_slice(&(code as u32).to_be_bytes());
    out.extend_from_slice(debug);
}

pub fn write_rst_stream(out: &mut Vec<u8>, stream: u32, code: ErrorCode) {
    out.extend_from_slice(&header(4, kind::RST_STREAM, 0, stream));
    out.extend_from_slice(&(code as u32).to_be_bytes());
}

pub fn write_window_update(out: &mut Vec<u8>, stream: u32, increment: u32) {
    out.extend_from_slice(&header(4, kind::WINDOW_UPDATE, 0, stream));
    out.extend_from_slice(&(increment & MAX_WINDOW).to_be_bytes());
}

/// A field block as HEADERS followed by as many CONTINUATION frames as
/// `max_frame_size` (the peer's) requires (§4.3); END_HEADERS on the last.
pub fn write_headers(
    out: &mut Vec<u8>,
    stream: u32,
    block: &[u8],
    end_stream: bool,
    max_frame_size: u32,
) {
    let max = (max_frame_size.max(MIN_MAX_FRAME_SIZE)) as usize;
    let mut pieces = block.chunks(max).peekable();
    let first = pieces.next().unwrap_or(&[]);
    let mut flags = if end_stream { flag::END_STREAM } else { 0 };
    if pieces.peek().is_none() {
        flags |= flag::END_HEADERS;
    }
    out.extend_from_slice(&header(first.len(), kind::HEADERS, flags, stream));
    out.extend_from_slice(first);
    while let Some(piece) = pieces.next() {
        let flags = if pieces.peek().is_none() {
            flag::END_HEADERS
        } else {
            0
        };
        out.extend_from_slice(&header(piece.len(), kind::CONTINUATION, flags, stream));
        out.extend_from_slice(piece);
    }
}

/// The header of a DATA frame whose `len` payload bytes follow as separate
/// (shared) chunks.
pub fn data_header(stream: u32, len: usize, end_stream: bool) -> [u8; HEADER_LEN] {
    let flags = if end_stream { flag::END_STREAM } else { 0 };
    header(len, kind::DATA, flags, stream)
}

/// A whole DATA frame (tests and fuzz targets build client frames with it).
pub fn write_data(out: &mut Vec<u8>, stream: u32, data: &[u8], end_stream: bool) {
    out.extend_from_slice(&data_header(stream, data.len(), end_stream));
    out.extend_from_slice(data);
}

#[cfg(test)]
mod tests;
