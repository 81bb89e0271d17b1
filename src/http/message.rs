//! What a request and a response are, whatever carries them: HTTP/1.1
//! (`request` parses its head, `response` writes its) or HTTP/2 (`h2`).
//! The service sees only these types, so both protocols reach the same
//! code with the same values. Header fields the service reads are gathered
//! here with one rule for both protocols (`Request::add_field`).

use std::fmt;

use super::form::percent_decode;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    /// A valid method token that watercooler does not route (PUT, DELETE,
    /// OPTIONS...): the router answers 405.
    Other,
}

impl Method {
    /// Methods are case-sensitive (RFC 9110 §9.1): "get" is `Other`.
    pub fn from_token(token: &str) -> Self {
        match token {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            _ => Method::Other,
        }
    }
}

/// Longest method and target kept for logs.
pub const MAX_METHOD_CHARS: usize = 16;
pub const MAX_TARGET_CHARS: usize = 256;

/// One request as the service sees it. The body travels beside it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: Method,
    /// As sent, for logs (at most 16 characters).
    pub method_name: String,
    /// The raw request-target, for logs (at most 256 characters).
    pub target: String,
    /// The path of the target, percent-decoded; starts with '/'.
    pub path: String,
    /// The raw part of the target after '?', not decoded.
    pub query: Option<String>,
    /// The Host header, the authority of an absolute-form target (HTTP/1.1,
    /// RFC 9112 §3.2.2) or `:authority` (HTTP/2).
    pub host: Option<String>,
    pub origin: Option<String>,
    pub last_event_id: Option<String>,
    /// Repeated fields are joined with ", ".
    pub if_none_match: Option<String>,
    pub content_type: Option<String>,
    /// Repeated fields are joined with ", ".
    pub accept: Option<String>,
    /// It came over TLS (the connection says so, not the client).
    pub secure: bool,
    /// The connection's peer address (the connection says so).
    pub client: Option<std::net::IpAddr>,
    /// Repeated fields are joined with ", ".
    pub forwarded_for: Option<String>,
}

/// A header field the service reads came twice where once is the rule, or
/// is not UTF-8.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldError;

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a repeated or non-UTF-8 header field")
    }
}

impl Request {
    /// A request for `method` and `target`, its fields still empty.
    /// `Err` when the target is not origin- or absolute-form (see
    /// `parse_target`); the authority of an absolute-form target becomes
    /// the host.
    pub fn new(method: &str, target: &str) -> Result<Request, FieldError> {
        let parts = parse_target(target)?;
        Ok(Request {
            method: Method::from_token(method),
            method_name: method.chars().take(MAX_METHOD_CHARS).collect(),
            target: target.chars().take(MAX_TARGET_CHARS).collect(),
            path: parts.path,
            query: parts.query.map(str::to_owned),
            host: parts.authority.map(str::to_owned),
            origin: None,
            last_event_id: None,
            if_none_match: None,
            content_type: None,
            accept: None,
            secure: false,
            client: None,
            forwarded_for: None,
        })
    }

    /// Records one header field (name in any case, value trimmed) if the
    /// service reads it; others are ignored. `Host` is the caller's: its
    /// rules differ between protocols.
    pub fn add_field(&mut self, name: &str, value: &[u8]) -> Result<(), FieldError> {
        let is = |known: &str| name.eq_ignore_ascii_case(known);
        if is("origin") {
            set_once(&mut self.origin, value)
        } else if is("last-event-id") {
            set_once(&mut self.last_event_id, value)
        } else if is("content-type") {
            set_once(&mut self.content_type, value)
        } else if is("if-none-match") {
            join(&mut self.if_none_match, value)
        } else if is("accept") {
            join(&mut self.accept, value)
        } else if is("x-forwarded-for") {
            join(&mut self.forwarded_for, value)
        } else {
            Ok(())
        }
    }
}

/// A response the service made. HTTP/1.1 and HTTP/2 each write it their way.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            headers: vec![("content-type", content_type.to_string())],
            body: body.into(),
        }
    }

    /// A short plain-text error, the body saying what was wrong.
    pub fn error(status: u16, why: &str) -> Response {
        Response::new(status, "text/plain; charset=utf-8", format!("{why}\n"))
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }
}

pub struct TargetParts<'a> {
    pub path: String,
    pub query: Option<&'a str>,
    pub authority: Option<&'a str>,
}

/// Splits an origin-form ("/path?query") or absolute-form
/// ("http://host/path?query") target. Anything else (asterisk-form,
/// authority-form, a relative path), a bad escape, decoded bytes that are
/// not UTF-8, or a decoded NUL is an error.
pub fn parse_target(target: &str) -> Result<TargetParts<'_>, FieldError> {
    let (authority, rest) = if target.starts_with('/') {
        (None, target)
    } else {
        let (scheme, rest) = target.split_once("://").ok_or(FieldError)?;
        if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
            return Err(FieldError);
        }
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, rest) = rest.split_at(end);
        if authority.is_empty() {
            return Err(FieldError);
        }
        (Some(authority), rest)
    };
    let (raw_path, query) = match rest.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (rest, None),
    };
    let raw_path = if raw_path.is_empty() { "/" } else { raw_path };
    let decoded = percent_decode(raw_path.as_bytes(), false).map_err(|_| FieldError)?;
    let path = String::from_utf8(decoded).map_err(|_| FieldError)?;
    if !path.starts_with('/') || path.contains('\0') {
        return Err(FieldError);
    }
    Ok(TargetParts {
        path,
        query,
        authority,
    })
}

/// Trims optional whitespace (SP, HTAB) from both ends.
pub fn trim(mut value: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = value {
        value = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = value {
        value = rest;
    }
    value
}

pub fn text(value: &[u8]) -> Result<String, FieldError> {
    std::str::from_utf8(trim(value))
        .map(str::to_owned)
        .map_err(|_| FieldError)
}

/// For fields that must appear at most once: a repeat is an error, so that
/// no two parts of the server can read different values.
fn set_once(slot: &mut Option<String>, value: &[u8]) -> Result<(), FieldError> {
    if slot.is_some() {
        return Err(FieldError);
    }
    *slot = Some(text(value)?);
    Ok(())
}

/// For list-valued fields: repeats are joined with ", " (RFC 9110 §5.3).
fn join(slot: &mut Option<String>, value: &[u8]) -> Result<(), FieldError> {
    let value = text(value)?;
    match slot {
        Some(joined) => {
            joined.push_str(", ");
            joined.push_str(&value);
        }
        None => *slot = Some(value),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_follow_one_rule() {
        let mut r = Request::new("GET", "/listen?x=1").unwrap();
        assert_eq!(
            (r.path.as_str(), r.query.as_deref()),
            ("/listen", Some("x=1"))
        );
        r.add_field("Accept", b" a ").unwrap();
        r.add_field("accept", b"b").unwrap();
        assert_eq!(r.accept.as_deref(), Some("a, b"));
        r.add_field("Origin", b"http://h").unwrap();
        assert_eq!(r.add_field("origin", b"http://h"), Err(FieldError));
        assert_eq!(r.add_field("content-type", b"\xff"), Err(FieldError));
        r.add_field("x-other", b"\xff").unwrap();
        let abs = Request::new("GET", "http://h:1/a").unwrap();
        assert_eq!(
            (abs.host.as_deref(), abs.path.as_str()),
            (Some("h:1"), "/a")
        );
        for bad in ["*", "h:1", "a", "/%zz", "/%00", "ftp://h/"] {
            assert!(Request::new("GET", bad).is_err(), "{bad}");
        }
    }
}
