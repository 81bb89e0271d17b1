//! The HTTP/1.1 request head parser: bytes in, a `Head` out (the
//! protocol-neutral `Request` and how this connection frames it). httparse checks the
//! syntax (request line, header tokens, no control bytes, no obs-fold); this
//! module adds what httparse leaves to the server: message framing
//! (Content-Length vs Transfer-Encoding, RFC 9112 §6), Host, keep-alive,
//! path decoding, and the head size limits. The reactor calls `parse_head`
//! each time bytes arrive until it returns a request; `body` decodes what
//! follows when the request is chunked.

use std::fmt;

use super::message::{text, trim, Request};

/// How the body after the head is framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyKind {
    /// Neither Content-Length nor Transfer-Encoding: no body.
    None,
    Length(u64),
    Chunked,
}

#[derive(Clone, Copy, Debug)]
pub struct HeadLimits {
    /// Request line, headers and blank line together; beyond it, 431.
    pub max_head_bytes: usize,
    /// Header lines; beyond it, 431.
    pub max_headers: usize,
}

impl Default for HeadLimits {
    /// 8 KiB and 64 headers: what browsers send fits many times over, and a
    /// head can be parsed again as it grows without that costing much.
    fn default() -> Self {
        HeadLimits {
            max_head_bytes: 8192,
            max_headers: 64,
        }
    }
}

/// A parsed HTTP/1.1 head: the request, and what only this protocol needs
/// to know about it (its framing on the connection).
#[derive(Debug, Clone)]
pub struct Head {
    pub request: Request,
    /// 0 or 1.
    pub minor_version: u8,
    pub body: BodyKind,
    /// HTTP/1.1: true unless a `Connection: close` token; HTTP/1.0: false
    /// unless a `Connection: keep-alive` token.
    pub keep_alive: bool,
    /// `Expect: 100-continue` on an HTTP/1.1 request.
    pub expect_continue: bool,
    /// Bytes of the head, including any empty lines before the request line
    /// and the blank line after the headers; the body starts here.
    pub head_len: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadError {
    /// 400: bad syntax, a bad path, or Transfer-Encoding in HTTP/1.0.
    Malformed,
    /// 431: no complete head within the byte limit, or too many headers.
    TooLarge,
    /// 505: a well-formed request for HTTP/2 or later.
    VersionNotSupported,
    /// 400: HTTP/1.1 without Host, or more than one Host.
    MissingHost,
    /// 400: both Content-Length and Transfer-Encoding, or two different lengths.
    ConflictingLength,
    /// 400: a Content-Length that is not a plain decimal fitting in u64.
    BadLength,
    /// 501: a transfer coding other than exactly "chunked".
    UnsupportedTransferEncoding,
}

impl HeadError {
    pub fn status(self) -> u16 {
        match self {
            HeadError::Malformed
            | HeadError::MissingHost
            | HeadError::ConflictingLength
            | HeadError::BadLength => 400,
            HeadError::TooLarge => 431,
            HeadError::VersionNotSupported => 505,
            HeadError::UnsupportedTransferEncoding => 501,
        }
    }

    /// Short human text for the error page.
    pub fn reason(self) -> &'static str {
        match self {
            HeadError::Malformed => "malformed request",
            HeadError::TooLarge => "request headers too large",
            HeadError::VersionNotSupported => "HTTP version not supported",
            HeadError::MissingHost => "missing or repeated Host header",
            HeadError::ConflictingLength => "conflicting message length",
            HeadError::BadLength => "invalid Content-Length",
            HeadError::UnsupportedTransferEncoding => "unsupported transfer encoding",
        }
    }
}

impl fmt::Display for HeadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

/// Headers parsed into a stack array up to this many; a larger limit uses the heap.
const STACK_HEADERS: usize = 64;

/// Parses the request head at the start of `buf`.
///
/// `Ok(None)`: the head is not complete yet (and `buf.len() <
/// max_head_bytes`). `Ok(Some(req))`: complete; the body, if any, starts at
/// `req.head_len`. `Err(HeadError::TooLarge)` when there is no complete head
/// within `max_head_bytes`, or more than `max_headers` headers. Only the
/// first `max_head_bytes` are ever looked at.
pub fn parse_head(buf: &[u8], limits: &HeadLimits) -> Result<Option<Head>, HeadError> {
    let window = buf.get(..limits.max_head_bytes).unwrap_or(buf);
    let mut stack = [httparse::EMPTY_HEADER; STACK_HEADERS];
    let mut heap;
    let headers = match stack.get_mut(..limits.max_headers) {
        Some(headers) => headers,
        None => {
            heap = vec![httparse::EMPTY_HEADER; limits.max_headers];
            heap.as_mut_slice()
        }
    };
    let mut parsed = httparse::Request::new(headers);
    let head_len = match parsed.parse(window) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if window.len() >= limits.max_head_bytes => {
            return Err(HeadError::TooLarge)
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(httparse::Error::Version) if is_later_version(window) => {
            return Err(HeadError::VersionNotSupported)
        }
        Err(_) => return Err(HeadError::Malformed),
    };
    let (Some(method), Some(target), Some(minor_version)) =
        (parsed.method, parsed.path, parsed.version)
    else {
        return Err(HeadError::Malformed);
    };
    let mut request = Request::new(method, target).map_err(|_| HeadError::Malformed)?;
    let mut fields = Fields::default();
    for header in parsed.headers.iter() {
        fields.add(&mut request, header.name, header.value)?;
    }
    let body = fields.body_kind(minor_version)?;
    match (fields.host_count, minor_version) {
        (0, 1) | (2.., _) => return Err(HeadError::MissingHost),
        // An absolute-form target's authority wins (RFC 9112 §3.2.2).
        _ => request.host = request.host.take().or(fields.host),
    }
    let keep_alive = !fields.close && (minor_version == 1 || fields.keep_alive);
    Ok(Some(Head {
        request,
        minor_version,
        body,
        keep_alive,
        expect_continue: fields.expect_continue && minor_version == 1,
        head_len,
    }))
}

/// Whether the request line (after any leading empty lines) ends in
/// "HTTP/" and a major version of 2 or more, which httparse reports as a
/// version error like any other: those get 505 rather than 400.
fn is_later_version(window: &[u8]) -> bool {
    let start = window
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(window.len());
    let line = window.get(start..).unwrap_or(&[]);
    let line = line
        .split(|&b| b == b'\r' || b == b'\n')
        .next()
        .unwrap_or(&[]);
    let version = line.rsplit(|&b| b == b' ').next().unwrap_or(&[]);
    matches!(version, [b'H', b'T', b'T', b'P', b'/', b'2'..=b'9', ..])
}

/// What the header lines say, gathered one line at a time.
#[derive(Default)]
struct Fields {
    host: Option<String>,
    host_count: usize,
    content_length: Option<u64>,
    transfer_encoding: bool,
    chunked_count: usize,
    other_coding: bool,
    close: bool,
    keep_alive: bool,
    expect_continue: bool,
}

impl Fields {
    /// Framing and Host are read here; what the service reads goes to
    /// `request`.
    fn add(&mut self, request: &mut Request, name: &str, value: &[u8]) -> Result<(), HeadError> {
        let value = trim(value);
        let is = |known: &str| name.eq_ignore_ascii_case(known);
        if is("host") {
            self.host_count += 1;
            self.host = Some(text(value).map_err(|_| HeadError::Malformed)?);
        } else if is("content-length") {
            for element in value.split(|&b| b == b',') {
                let length = decimal(trim(element)).ok_or(HeadError::BadLength)?;
                match self.content_length {
                    Some(seen) if seen != length => return Err(HeadError::ConflictingLength),
                    _ => self.content_length = Some(length),
                }
            }
        } else if is("transfer-encoding") {
            self.transfer_encoding = true;
            for coding in list(value) {
                if coding.eq_ignore_ascii_case(b"chunked") {
                    self.chunked_count += 1;
                } else {
                    self.other_coding = true;
                }
            }
        } else if is("connection") {
            for option in list(value) {
                self.close |= option.eq_ignore_ascii_case(b"close");
                self.keep_alive |= option.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if is("expect") {
            self.expect_continue |= value.eq_ignore_ascii_case(b"100-continue");
        } else {
            request
                .add_field(name, value)
                .map_err(|_| HeadError::Malformed)?;
        }
        Ok(())
    }

    /// The framing of the body (RFC 9112 §6.1-6.3). Transfer-Encoding must be
    /// exactly "chunked": with anything else the end of the body is unknown.
    fn body_kind(&self, minor_version: u8) -> Result<BodyKind, HeadError> {
        if !self.transfer_encoding {
            return Ok(self.content_length.map_or(BodyKind::None, BodyKind::Length));
        }
        if minor_version == 0 {
            return Err(HeadError::Malformed);
        }
        if self.content_length.is_some() {
            return Err(HeadError::ConflictingLength);
        }
        if self.other_coding {
            return Err(HeadError::UnsupportedTransferEncoding);
        }
        if self.chunked_count != 1 {
            return Err(HeadError::Malformed);
        }
        Ok(BodyKind::Chunked)
    }
}

/// The non-empty elements of a comma-separated list, trimmed.
fn list(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim)
        .filter(|element| !element.is_empty())
}

/// A plain non-empty decimal that fits in u64.
fn decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &b| {
        let digit = b.is_ascii_digit().then(|| u64::from(b - b'0'))?;
        n.checked_mul(10)?.checked_add(digit)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::message::Method;

    fn parse(input: &[u8]) -> Result<Option<Head>, HeadError> {
        parse_head(input, &HeadLimits::default())
    }

    const GET: &[u8] = b"GET /listen?x=1 HTTP/1.1\r\nHost: example.com:8080\r\n\
        Accept: text/event-stream\r\nLast-Event-ID: node1-42\r\n\
        If-None-Match: \"abc\"\r\nOrigin: http://example.com:8080\r\n\r\n";
    const POST: &[u8] = b"POST /publish HTTP/1.1\r\nhost: h\r\n\
        content-type: application/x-www-form-urlencoded\r\ncontent-length: 13\r\n\
        expect: 100-continue\r\n\r\nmessage=hello";
    const HTTP10: &[u8] = b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n";
    const CHUNKED: &[u8] =
        b"POST /publish HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\n";
    const LEADING_CRLF: &[u8] = b"\r\nGET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";
    const BARE_LF: &[u8] = b"GET / HTTP/1.1\nHost: h\n\n";

    fn head_len(input: &[u8]) -> usize {
        input
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(input.len(), |i| i + 4)
    }

    #[test]
    fn valid_heads() {
        let get = parse(GET).ok().flatten();
        let get = get.as_ref();
        assert_eq!(get.map(|r| r.request.method), Some(Method::Get));
        assert_eq!(get.map(|r| r.request.path.as_str()), Some("/listen"));
        assert_eq!(get.and_then(|r| r.request.query.as_deref()), Some("x=1"));
        assert_eq!(get.map(|r| r.request.target.as_str()), Some("/listen?x=1"));
        assert_eq!(
            get.and_then(|r| r.request.host.as_deref()),
            Some("example.com:8080")
        );
        assert_eq!(
            get.and_then(|r| r.request.accept.as_deref()),
            Some("text/event-stream")
        );
        assert_eq!(
            get.and_then(|r| r.request.last_event_id.as_deref()),
            Some("node1-42")
        );
        assert_eq!(
            get.and_then(|r| r.request.if_none_match.as_deref()),
            Some("\"abc\"")
        );
        assert_eq!(
            get.and_then(|r| r.request.origin.as_deref()),
            Some("http://example.com:8080")
        );
        assert_eq!(
            get.map(|r| (r.keep_alive, r.body, r.minor_version)),
            Some((true, BodyKind::None, 1))
        );
        assert_eq!(get.map(|r| r.head_len), Some(GET.len()));

        let post = parse(POST).ok().flatten();
        let post = post.as_ref();
        assert_eq!(post.map(|r| r.request.method), Some(Method::Post));
        assert_eq!(post.map(|r| r.body), Some(BodyKind::Length(13)));
        assert_eq!(post.map(|r| r.expect_continue), Some(true));
        assert_eq!(
            post.and_then(|r| r.request.content_type.as_deref()),
            Some("application/x-www-form-urlencoded")
        );
        assert_eq!(post.map(|r| r.head_len), Some(POST.len() - 13));

        let old = parse(HTTP10).ok().flatten();
        let old = old.as_ref();
        assert_eq!(
            old.map(|r| (r.minor_version, r.keep_alive, r.request.host.is_none())),
            Some((0, true, true))
        );

        let chunked = parse(CHUNKED).ok().flatten();
        assert_eq!(chunked.map(|r| r.body), Some(BodyKind::Chunked));

        let leading = parse(LEADING_CRLF).ok().flatten();
        let leading = leading.as_ref();
        assert_eq!(
            leading.map(|r| (r.keep_alive, r.head_len)),
            Some((false, LEADING_CRLF.len()))
        );

        let bare = parse(BARE_LF).ok().flatten();
        assert_eq!(bare.map(|r| r.head_len), Some(BARE_LF.len()));
    }

    #[test]
    fn every_prefix_is_incomplete() {
        for input in [GET, POST, HTTP10, CHUNKED, LEADING_CRLF, BARE_LF] {
            let complete = if input == BARE_LF {
                input.len()
            } else {
                head_len(input)
            };
            for end in 0..complete {
                let prefix = input.get(..end).unwrap_or(&[]);
                assert!(
                    matches!(parse(prefix), Ok(None)),
                    "prefix {end} of {:?}",
                    String::from_utf8_lossy(input)
                );
            }
            let full = parse(input).ok().flatten();
            assert_eq!(full.map(|r| r.head_len), Some(complete));
        }
    }

    /// (name, head, expected field) for heads that parse.
    #[test]
    fn field_table() {
        type Pick = fn(&Head) -> String;
        let path: Pick = |r| r.request.path.clone();
        let query: Pick = |r| format!("{:?}", r.request.query);
        let host: Pick = |r| format!("{:?}", r.request.host);
        let body: Pick = |r| format!("{:?}", r.body);
        let keep: Pick = |r| r.keep_alive.to_string();
        let method: Pick = |r| format!("{:?} {}", r.request.method, r.request.method_name);
        let accept: Pick = |r| format!("{:?}", r.request.accept);
        let expect: Pick = |r| r.expect_continue.to_string();
        #[rustfmt::skip]
        let cases: &[(&str, &[u8], Pick, &str)] = &[
            ("decoded path", b"GET /%C3%A9 HTTP/1.1\r\nHost: h\r\n\r\n", path, "/\u{e9}"),
            ("encoded slash", b"GET /a%2Fb HTTP/1.1\r\nHost: h\r\n\r\n", path, "/a/b"),
            ("plus stays", b"GET /a+b HTTP/1.1\r\nHost: h\r\n\r\n", path, "/a+b"),
            ("empty query", b"GET /? HTTP/1.1\r\nHost: h\r\n\r\n", query, "Some(\"\")"),
            ("query not decoded", b"GET /?a=%20 HTTP/1.1\r\nHost: h\r\n\r\n", query, "Some(\"a=%20\")"),
            ("no query", b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", query, "None"),
            ("absolute form", b"GET http://Example.com:81/main.css?v=1 HTTP/1.1\r\nHost: other\r\n\r\n", path, "/main.css"),
            ("absolute form host", b"GET http://example.com:81/x HTTP/1.1\r\nHost: other\r\n\r\n", host, "Some(\"example.com:81\")"),
            ("absolute form no path", b"GET HTTPS://example.com HTTP/1.1\r\nHost: h\r\n\r\n", path, "/"),
            ("absolute form query only", b"GET http://h?q HTTP/1.1\r\nHost: h\r\n\r\n", query, "Some(\"q\")"),
            ("empty host allowed", b"GET / HTTP/1.1\r\nHost:\r\n\r\n", host, "Some(\"\")"),
            ("same length twice", b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", body, "Length(5)"),
            ("same length listed", b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 5\r\n\r\n", body, "Length(5)"),
            ("zero length", b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n", body, "Length(0)"),
            ("leading zeros", b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 007\r\n\r\n", body, "Length(7)"),
            ("max length", b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 18446744073709551615\r\n\r\n", body, "Length(18446744073709551615)"),
            ("chunked in a list", b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: , chunked\r\n\r\n", body, "Chunked"),
            ("close among tokens", b"GET / HTTP/1.1\r\nHost: h\r\nConnection: upgrade, CLOSE\r\n\r\n", keep, "false"),
            ("close in second header", b"GET / HTTP/1.1\r\nHost: h\r\nConnection: x\r\nConnection: close\r\n\r\n", keep, "false"),
            ("1.1 keep-alive by default", b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", keep, "true"),
            ("1.0 close by default", b"GET / HTTP/1.0\r\n\r\n", keep, "false"),
            ("1.0 close wins", b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", keep, "false"),
            ("1.0 expect ignored", b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n", expect, "false"),
            ("other method", b"DELETE / HTTP/1.1\r\nHost: h\r\n\r\n", method, "Other DELETE"),
            ("lowercase method", b"get / HTTP/1.1\r\nHost: h\r\n\r\n", method, "Other get"),
            ("head method", b"HEAD / HTTP/1.1\r\nHost: h\r\n\r\n", method, "Head HEAD"),
            ("long method truncated", b"ABCDEFGHIJKLMNOPQRSTU / HTTP/1.1\r\nHost: h\r\n\r\n", method, "Other ABCDEFGHIJKLMNOP"),
            ("accept joined", b"GET / HTTP/1.1\r\nHost: h\r\nAccept: a\r\naccept: b\r\n\r\n", accept, "Some(\"a, b\")"),
            ("value trimmed", b"GET / HTTP/1.1\r\nHost: h\r\nAccept: \t a b \t\r\n\r\n", accept, "Some(\"a b\")"),
        ];
        for (name, input, pick, expected) in cases {
            match parse(input) {
                Ok(Some(request)) => assert_eq!(pick(&request), *expected, "case {name}"),
                other => panic!("case {name}: {other:?}"),
            }
        }
    }

    #[test]
    fn long_target_is_truncated_for_logs() {
        let input = [
            b"GET /".as_slice(),
            &[b'a'; 1000],
            b" HTTP/1.1\r\nHost: h\r\n\r\n",
        ]
        .concat();
        let request = parse(&input).ok().flatten();
        assert_eq!(request.as_ref().map(|r| r.request.target.len()), Some(256));
        assert_eq!(request.map(|r| r.request.path.len()), Some(1001));
    }

    #[test]
    fn error_table() {
        use HeadError::*;
        let too_many = [
            b"GET / HTTP/1.1\r\nHost: h\r\n".as_slice(),
            &b"X-A: b\r\n".repeat(64),
            b"\r\n",
        ]
        .concat();
        let huge_head = [
            b"GET / HTTP/1.1\r\nHost: h\r\nX-A: ".as_slice(),
            &[b'b'; 9000],
            b"\r\n\r\n",
        ]
        .concat();
        let huge_line = [
            b"GET /".as_slice(),
            &[b'a'; 100_000],
            b" HTTP/1.1\r\nHost: h\r\n\r\n",
        ]
        .concat();
        let huge_partial = [b"GET /".as_slice(), &[b'a'; 100_000]].concat();
        #[rustfmt::skip]
        let cases: &[(&str, &[u8], HeadError)] = &[
            ("header without colon", b"GET / HTTP/1.1\r\nHost: h\r\nNoColon\r\n\r\n", Malformed),
            ("obs-fold", b"GET / HTTP/1.1\r\nHost: h\r\nX-A: b\r\n c\r\n\r\n", Malformed),
            ("NUL in value", b"GET / HTTP/1.1\r\nHost: h\r\nX-A: b\x00c\r\n\r\n", Malformed),
            ("control in value", b"GET / HTTP/1.1\r\nHost: h\r\nX-A: \x01\r\n\r\n", Malformed),
            ("bad method", b"G(T / HTTP/1.1\r\nHost: h\r\n\r\n", Malformed),
            ("space in name", b"GET / HTTP/1.1\r\nHost : h\r\n\r\n", Malformed),
            ("no target", b"GET  HTTP/1.1\r\nHost: h\r\n\r\n", Malformed),
            ("bad version", b"GET / HTTP/1.2\r\nHost: h\r\n\r\n", Malformed),
            ("not http", b"GET / FTP/1.1\r\nHost: h\r\n\r\n", Malformed),
            ("HTTP/0.9 line", b"GET /\r\n\r\n", Malformed),
            ("http/2", b"GET / HTTP/2.0\r\nHost: h\r\n\r\n", VersionNotSupported),
            ("http/3 partial line", b"GET / HTTP/3", VersionNotSupported),
            ("missing host", b"GET / HTTP/1.1\r\n\r\n", MissingHost),
            ("two hosts", b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", MissingHost),
            ("two hosts 1.0", b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", MissingHost),
            ("host not utf8", b"GET / HTTP/1.1\r\nHost: \xff\r\n\r\n", Malformed),
            ("origin not utf8", b"GET / HTTP/1.1\r\nHost: h\r\nOrigin: \xc3\r\n\r\n", Malformed),
            ("last-event-id not utf8", b"GET / HTTP/1.1\r\nHost: h\r\nLast-Event-ID: \xff\r\n\r\n", Malformed),
            ("two origins", b"POST / HTTP/1.1\r\nHost: h\r\nOrigin: a\r\nOrigin: b\r\n\r\n", Malformed),
            ("CL and TE", b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", ConflictingLength),
            ("two lengths", b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", ConflictingLength),
            ("two lengths listed", b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 6\r\n\r\n", ConflictingLength),
            ("negative length", b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n", BadLength),
            ("plus length", b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +5\r\n\r\n", BadLength),
            ("exponent length", b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1e3\r\n\r\n", BadLength),
            ("overflow length", b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999999\r\n\r\n", BadLength),
            ("u64 max + 1", b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 18446744073709551616\r\n\r\n", BadLength),
            ("empty length", b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length:\r\n\r\n", BadLength),
            ("space inside length", b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1 2\r\n\r\n", BadLength),
            ("trailing comma length", b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5,\r\n\r\n", BadLength),
            ("hex length", b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0x5\r\n\r\n", BadLength),
            ("TE gzip", b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n", UnsupportedTransferEncoding),
            ("TE chunked, gzip", b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", UnsupportedTransferEncoding),
            ("TE gzip, chunked", b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", UnsupportedTransferEncoding),
            ("TE split gzip", b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n", UnsupportedTransferEncoding),
            ("TE with parameter", b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked;x=1\r\n\r\n", UnsupportedTransferEncoding),
            ("TE chunked twice", b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", Malformed),
            ("TE empty", b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\r\n\r\n", Malformed),
            ("TE in 1.0", b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", Malformed),
            ("bad escape", b"GET /%zz HTTP/1.1\r\nHost: h\r\n\r\n", Malformed),
            ("truncated escape", b"GET /%4 HTTP/1.1\r\nHost: h\r\n\r\n", Malformed),
            ("escape not utf8", b"GET /%FF HTTP/1.1\r\nHost: h\r\n\r\n", Malformed),
            ("raw path not utf8", b"GET /\xff HTTP/1.1\r\nHost: h\r\n\r\n", Malformed),
            ("encoded NUL", b"GET /a%00b HTTP/1.1\r\nHost: h\r\n\r\n", Malformed),
            ("relative path", b"GET main.css HTTP/1.1\r\nHost: h\r\n\r\n", Malformed),
            ("asterisk form", b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", Malformed),
            ("authority form", b"CONNECT h:443 HTTP/1.1\r\nHost: h\r\n\r\n", Malformed),
            ("other scheme", b"GET ftp://h/x HTTP/1.1\r\nHost: h\r\n\r\n", Malformed),
            ("empty authority", b"GET http:///x HTTP/1.1\r\nHost: h\r\n\r\n", Malformed),
            ("65 headers", &too_many, TooLarge),
            ("9000-byte head", &huge_head, TooLarge),
            ("100 KB request line", &huge_line, TooLarge),
            ("100 KB partial line", &huge_partial, TooLarge),
        ];
        for (name, input, expected) in cases {
            assert_eq!(
                parse(input).map(|r| r.map(|r| r.head_len)),
                Err(*expected),
                "case {name}"
            );
        }
    }

    #[test]
    fn limits() {
        let small = HeadLimits {
            max_head_bytes: 32,
            max_headers: 1,
        };
        let exact = b"GET / HTTP/1.1\r\nHost: hhhhhhh\r\n\r\n";
        assert_eq!(exact.len(), 33);
        assert_eq!(
            parse_head(exact, &small).map(|r| r.is_some()),
            Err(HeadError::TooLarge)
        );
        let fits = b"GET / HTTP/1.1\r\nHost: hhhhhh\r\n\r\nbody after the head";
        assert_eq!(
            parse_head(fits, &small).map(|r| r.map(|r| r.head_len)),
            Ok(Some(32))
        );
        let two = b"GET / HTTP/1.1\r\nA: b\r\nC: d\r\n\r\n";
        assert_eq!(
            parse_head(two, &small).map(|r| r.is_some()),
            Err(HeadError::TooLarge)
        );
        let many = HeadLimits {
            max_head_bytes: 1 << 20,
            max_headers: 100,
        };
        let ninety = [
            b"GET / HTTP/1.1\r\nHost: h\r\n".as_slice(),
            &b"X-A: b\r\n".repeat(89),
            b"\r\n",
        ]
        .concat();
        assert!(matches!(parse_head(&ninety, &many), Ok(Some(_))));
        let none = HeadLimits {
            max_head_bytes: 0,
            max_headers: 0,
        };
        assert_eq!(
            parse_head(b"", &none).map(|r| r.is_some()),
            Err(HeadError::TooLarge)
        );
    }

    #[test]
    fn statuses() {
        use HeadError::*;
        let cases: &[(HeadError, u16)] = &[
            (Malformed, 400),
            (TooLarge, 431),
            (VersionNotSupported, 505),
            (MissingHost, 400),
            (ConflictingLength, 400),
            (BadLength, 400),
            (UnsupportedTransferEncoding, 501),
        ];
        for (error, status) in cases {
            assert_eq!(error.status(), *status, "{error:?}");
            assert_eq!(error.to_string(), error.reason());
        }
    }

    #[test]
    fn prefixes_of_invalid_heads_never_panic() {
        let inputs: &[&[u8]] = &[
            b"GET /%zz HTTP/1.1\r\nHost: \xff\r\n\r\n",
            b"\r\n\r\nPOST http://h HTTP/2.0\r\n\r\n",
            b"GET / HTTP/1.1\r\nTransfer-Encoding: gzip\r\nContent-Length: x\r\n\r\n",
        ];
        for input in inputs {
            for end in 0..=input.len() {
                let _ = parse(input.get(..end).unwrap_or(&[]));
            }
        }
    }
}
