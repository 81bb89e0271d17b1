//! A request head from a decoded HTTP/2 field list: the checks of RFC 9113
//! §8.2 (field validity, connection-specific fields) and §8.3 (request
//! pseudo-header fields), pure. `conn` feeds it what `hpack` decoded and
//! resets the stream (PROTOCOL_ERROR) when it says `Malformed`.

/// Why a request is malformed (§8.1.1): the stream is reset, the service
/// never sees it. The text is for logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

/// A request's head, checked. Names are lowercase; values are read as
/// UTF-8, invalid bytes (obs-text) replaced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    pub method: String,
    pub scheme: String,
    /// The raw `:path`, query included; starts with '/' or is "*".
    pub path: String,
    /// `:authority`, or the `host` field when it is absent.
    pub authority: Option<String>,
    /// Regular fields in order; cookie crumbs joined into one `cookie`
    /// field at the first crumb's place (§8.2.3).
    pub headers: Vec<(String, String)>,
    /// `content-length`, which the DATA frames must add up to (§8.1.1).
    pub content_length: Option<u64>,
    /// A CONNECT request (§8.5): well-formed, but we tunnel nothing.
    pub connect: bool,
}

/// Fields that only mean something to one HTTP/1.1 hop (§8.2.2).
const CONNECTION_SPECIFIC: [&[u8]; 5] = [
    b"connection",
    b"keep-alive",
    b"proxy-connection",
    b"transfer-encoding",
    b"upgrade",
];

/// True for a field name that HTTP/2 forbids (§8.2.2); a response drops it.
pub fn is_connection_specific(name: &[u8]) -> bool {
    CONNECTION_SPECIFIC
        .iter()
        .any(|c| c.eq_ignore_ascii_case(name))
}

/// §8.2.1: no controls, space, uppercase, DEL or non-ASCII in a name, and
/// no colon outside the leading one of a pseudo-header.
fn valid_name(name: &[u8]) -> bool {
    !name.is_empty()
        && name
            .iter()
            .all(|&b| b > 0x20 && b < 0x7f && !b.is_ascii_uppercase() && b != b':')
}

/// §8.2.1: no NUL, CR or LF; no leading or trailing space or tab.
fn valid_value(value: &[u8]) -> bool {
    let edge = |b: Option<&u8>| matches!(b, Some(b' ' | b'\t'));
    !value.iter().any(|&b| b == 0 || b == b'\r' || b == b'\n')
        && !edge(value.first())
        && !edge(value.last())
}

/// RFC 9110 §5.6.2 token characters, for `:method`.
fn is_token(s: &[u8]) -> bool {
    !s.is_empty()
        && s.iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn text(v: Vec<u8>) -> String {
    String::from_utf8(v).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Checks a request's field list (pseudo-headers first) and builds its head.
pub fn parse(fields: Vec<(Vec<u8>, Vec<u8>)>) -> Result<Head, Malformed> {
    let mut method = None;
    let mut scheme = None;
    let mut path = None;
    let mut authority = None;
    let mut host = None;
    let mut content_length = None;
    let mut headers: Vec<(String, String)> = Vec::new();
    let mut cookie_at: Option<usize> = None;
    let mut regular_seen = false;
    for (name, value) in fields {
        if !valid_value(&value) {
            return Err(Malformed("invalid field value"));
        }
        if let Some(pseudo) = name.strip_prefix(b":") {
            if regular_seen {
                return Err(Malformed("pseudo-header after a regular field"));
            }
            let slot = match pseudo {
                b"method" => &mut method,
                b"scheme" => &mut scheme,
                b"path" => &mut path,
                b"authority" => &mut authority,
                _ => return Err(Malformed("unknown pseudo-header")),
            };
            if slot.replace(value).is_some() {
                return Err(Malformed("repeated pseudo-header"));
            }
            continue;
        }
        regular_seen = true;
        if !valid_name(&name) {
            return Err(Malformed("invalid field name"));
        }
        if is_connection_specific(&name) {
            return Err(Malformed("connection-specific field"));
        }
        match &name[..] {
            b"te" if !value.eq_ignore_ascii_case(b"trailers") => {
                return Err(Malformed("te other than trailers"));
            }
            b"content-length" => {
                let n = parse_length(&value).ok_or(Malformed("invalid content-length"))?;
                if content_length.is_some_and(|m| m != n) {
                    return Err(Malformed("conflicting content-length"));
                }
                content_length = Some(n);
            }
            b"host" if host.is_none() => host = Some(value.clone()),
            b"cookie" => {
                if let Some(i) = cookie_at {
                    if let Some((_, joined)) = headers.get_mut(i) {
                        joined.push_str("; ");
                        joined.push_str(&text(value));
                    }
                    continue;
                }
                cookie_at = Some(headers.len());
            }
            _ => {}
        }
        headers.push((text(name), text(value)));
    }
    let method = method.ok_or(Malformed("no :method"))?;
    if !is_token(&method) {
        return Err(Malformed("invalid :method"));
    }
    let connect = method == b"CONNECT";
    if connect {
        // §8.5: only :method and :authority.
        if scheme.is_some() || path.is_some() || authority.is_none() {
            return Err(Malformed("CONNECT with :scheme or :path, or no :authority"));
        }
    } else {
        let p = path.as_deref().ok_or(Malformed("no :path"))?;
        let s = scheme.as_deref().ok_or(Malformed("no :scheme"))?;
        if !(p.starts_with(b"/") || (p == b"*" && method == b"OPTIONS")) {
            return Err(Malformed("invalid :path"));
        }
        if s.is_empty() {
            return Err(Malformed("empty :scheme"));
        }
    }
    if let (Some(a), Some(h)) = (&authority, &host) {
        // §8.3.1: a host that names another entity than :authority.
        if !a.eq_ignore_ascii_case(h) {
            return Err(Malformed("host differs from :authority"));
        }
    }
    Ok(Head {
        method: text(method),
        scheme: text(scheme.unwrap_or_default()),
        path: text(path.unwrap_or_default()),
        authority: authority.or(host).map(text),
        headers,
        content_length,
        connect,
    })
}

/// A trailer section (§8.1): regular fields only, checked like a head's,
/// then dropped (the service reads none).
pub fn check_trailers(fields: &[(Vec<u8>, Vec<u8>)]) -> Result<(), Malformed> {
    for (name, value) in fields {
        if name.first() == Some(&b':') {
            return Err(Malformed("pseudo-header in trailers"));
        }
        if !valid_name(name) || !valid_value(value) || is_connection_specific(name) {
            return Err(Malformed("invalid trailer field"));
        }
    }
    Ok(())
}

/// Decimal digits only, at most 19 (fits u64 with room).
fn parse_length(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(v.iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0')))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(list: &[(&str, &str)]) -> Vec<(Vec<u8>, Vec<u8>)> {
        list.iter()
            .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect()
    }

    const GET: [(&str, &str); 4] = [
        (":method", "GET"),
        (":scheme", "https"),
        (":path", "/listen?room=a"),
        (":authority", "example.org"),
    ];

    #[test]
    fn valid_get() {
        let mut f = GET.to_vec();
        f.extend([
            ("accept", "text/event-stream"),
            ("cookie", "a=1"),
            ("x", "y"),
            ("cookie", "b=2"),
        ]);
        let h = parse(fields(&f)).unwrap();
        assert_eq!(h.method, "GET");
        assert_eq!(h.scheme, "https");
        assert_eq!(h.path, "/listen?room=a");
        assert_eq!(h.authority.as_deref(), Some("example.org"));
        assert_eq!(
            h.headers,
            [
                ("accept".to_string(), "text/event-stream".to_string()),
                ("cookie".to_string(), "a=1; b=2".to_string()),
                ("x".to_string(), "y".to_string())
            ]
        );
        assert!(!h.connect);
    }

    #[test]
    fn host_stands_in_for_authority() {
        let f = fields(&[
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/"),
            ("host", "h:1"),
        ]);
        assert_eq!(parse(f).unwrap().authority.as_deref(), Some("h:1"));
    }

    /// §8.2 and §8.3, table-style: each case is malformed.
    #[test]
    fn malformed_requests() {
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut f = GET.to_vec();
            f.extend_from_slice(extra);
            f
        };
        let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
            ("§8.3.1 no :method", GET[1..].to_vec()),
            ("§8.3.1 no :scheme", vec![GET[0], GET[2]]),
            ("§8.3.1 no :path", vec![GET[0], GET[1]]),
            ("§8.3.1 empty :path", vec![GET[0], GET[1], (":path", "")]),
            (
                "§8.3.1 relative :path",
                vec![GET[0], GET[1], (":path", "x")],
            ),
            ("§8.3 repeated :path", with(&[(":path", "/")])),
            ("§8.3 unknown pseudo", with(&[(":status", "200")])),
            ("§8.3 :protocol", with(&[(":protocol", "websocket")])),
            (
                "§8.3 pseudo after regular",
                vec![GET[0], GET[1], ("a", "b"), GET[2]],
            ),
            ("§8.2.1 uppercase", with(&[("UPPERCASE", "x")])),
            ("§8.2.1 space in name", with(&[("space force", "x")])),
            ("§8.2.1 control in name", with(&[("\x01x", "x")])),
            ("§8.2.1 DEL in name", with(&[("\x7fx", "x")])),
            ("§8.2.1 non-ASCII name", with(&[("inválid", "x")])),
            ("§8.2.1 colon in name", with(&[("a:b", "x")])),
            ("§8.2.1 LF in value", with(&[("a", "x\ny")])),
            ("§8.2.1 CR in value", with(&[("a", "x\ry")])),
            ("§8.2.1 NUL in value", with(&[("a", "x\0y")])),
            ("§8.2.1 leading space", with(&[("a", " x")])),
            ("§8.2.1 trailing tab", with(&[("a", "x\t")])),
            ("§8.2.2 connection", with(&[("connection", "keep-alive")])),
            ("§8.2.2 keep-alive", with(&[("keep-alive", "5")])),
            (
                "§8.2.2 proxy-connection",
                with(&[("proxy-connection", "x")]),
            ),
            (
                "§8.2.2 transfer-encoding",
                with(&[("transfer-encoding", "chunked")]),
            ),
            ("§8.2.2 upgrade", with(&[("upgrade", "h2c")])),
            ("§8.2.2 te gzip", with(&[("te", "trailers, gzip")])),
            (
                "§8.1.1 content-length text",
                with(&[("content-length", "1x")]),
            ),
            (
                "§8.1.1 content-length conflict",
                with(&[("content-length", "1"), ("content-length", "2")]),
            ),
            (
                "§8.5 CONNECT with :path",
                vec![
                    (":method", "CONNECT"),
                    (":authority", "a:1"),
                    (":path", "/"),
                ],
            ),
            (
                "§8.5 CONNECT without :authority",
                vec![(":method", "CONNECT")],
            ),
            (
                "§8.3.1 bad method",
                vec![(":method", "G T"), GET[1], GET[2]],
            ),
        ];
        for (name, f) in cases {
            assert!(parse(fields(&f)).is_err(), "{name} passed");
        }
    }

    #[test]
    fn accepted_edges() {
        let ok = |f: Vec<(&str, &str)>| parse(fields(&f)).unwrap();
        let mut te = GET.to_vec();
        te.push(("te", "trailers"));
        ok(te);
        let mut cl = GET.to_vec();
        cl.extend([
            ("content-length", "5"),
            ("content-length", "5"),
            ("host", "Example.org"),
        ]);
        assert_eq!(ok(cl).content_length, Some(5));
        let c = ok(vec![(":method", "CONNECT"), (":authority", "a:443")]);
        assert!(c.connect);
        ok(vec![
            (":method", "OPTIONS"),
            (":scheme", "https"),
            (":path", "*"),
        ]);
    }

    #[test]
    fn trailers() {
        assert!(check_trailers(&fields(&[("x-checksum", "1")])).is_ok());
        assert!(check_trailers(&fields(&[(":path", "/")])).is_err());
        assert!(check_trailers(&fields(&[("X", "1")])).is_err());
    }

    #[test]
    fn content_length_digits() {
        assert_eq!(parse_length(b"0"), Some(0));
        assert_eq!(
            parse_length(b"9999999999999999999"),
            Some(9_999_999_999_999_999_999)
        );
        assert_eq!(parse_length(b"99999999999999999999"), None);
        assert_eq!(parse_length(b"+1"), None);
        assert_eq!(parse_length(b""), None);
    }
}
