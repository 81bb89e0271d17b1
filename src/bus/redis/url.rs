//! The `bus = redis://…` setting: `redis://[[user]:password@]host[:port][/db]`,
//! or `rediss://…` for TLS with an optional `?ca=/path/to/ca.pem` (system
//! roots otherwise). User and password are percent-decoded; an IPv6 host goes
//! in brackets. The password never leaves this module in text meant for
//! people: errors do not quote the input, and `Display` and `Debug` print
//! `***` in its place. The reactor's Redis connection reads the fields.

use std::fmt;
use std::net::Ipv6Addr;
use std::str::FromStr;

pub const DEFAULT_PORT: u16 = 6379;

#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl {
    /// `rediss://`: connect with TLS.
    pub tls: bool,
    /// A name, an IPv4 address, or an IPv6 address (without brackets).
    pub host: String,
    pub port: u16,
    /// For `AUTH user password` (Redis 6 ACLs); `None`: `AUTH password`.
    pub user: Option<String>,
    pub password: Option<String>,
    /// For `SELECT`; Redis has 16 by default (0–15) but may be configured
    /// with more, so any u32 is accepted here and the server has the say.
    pub db: u32,
    /// PEM file of the CA to trust for `rediss://` instead of system roots.
    pub ca_file: Option<String>,
}

impl RedisUrl {
    /// Parses the setting; the error is one readable sentence that never
    /// contains the password.
    pub fn parse(s: &str) -> Result<RedisUrl, String> {
        let (scheme, rest) = s
            .split_once("://")
            .ok_or("a Redis URL starts with redis:// or rediss://")?;
        let tls = if scheme.eq_ignore_ascii_case("redis") {
            false
        } else if scheme.eq_ignore_ascii_case("rediss") {
            true
        } else if scheme.len() <= 16 && scheme.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(format!(
                "unknown scheme {scheme}:// (want redis:// or rediss://)"
            ));
        } else {
            return Err("a Redis URL starts with redis:// or rediss://".into());
        };
        if rest.contains('#') {
            return Err(
                "a Redis URL has no #fragment (percent-encode # in a password as %23)".into(),
            );
        }
        let (rest, query) = match rest.split_once('?') {
            Some((rest, query)) => (rest, Some(query)),
            None => (rest, None),
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if path.contains('@') || query.is_some_and(|q| q.contains('@')) {
            return Err(
                "the URL has an '@' after the host: percent-encode '/', '?', '#' \
                        and '@' in the password (%2F, %3F, %23, %40)"
                    .into(),
            );
        }
        // The last '@' ends the credentials, so a raw '@' in a password works.
        let (userinfo, hostport) = match authority.rfind('@') {
            Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
            None => (None, authority),
        };
        let (user, password) = match userinfo {
            None => (None, None),
            Some(info) => {
                let (user, password) = match info.split_once(':') {
                    Some((user, password)) => (user, Some(password)),
                    None => (info, None),
                };
                let user = percent_decode(user).map_err(|e| format!("user: {e}"))?;
                let password = match password {
                    Some(p) => percent_decode(p).map_err(|e| format!("password: {e}"))?,
                    None => String::new(),
                };
                (non_empty(user), non_empty(password))
            }
        };
        let (host, port) = parse_host_port(hostport)?;
        let db = parse_db(path)?;
        let ca_file = match query {
            None => None,
            Some(query) => parse_query(query, tls)?,
        };
        Ok(RedisUrl {
            tls,
            host,
            port,
            user,
            password,
            db,
            ca_file,
        })
    }
}

impl FromStr for RedisUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<RedisUrl, String> {
        RedisUrl::parse(s)
    }
}

/// The URL with `***` for the password: `redis://:***@host:6379/0`. It
/// parses back to the same URL apart from the password.
impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(if self.tls { "rediss://" } else { "redis://" })?;
        if self.user.is_some() || self.password.is_some() {
            if let Some(user) = &self.user {
                f.write_str(&percent_encode(user, false))?;
            }
            if self.password.is_some() {
                f.write_str(":***")?;
            }
            f.write_str("@")?;
        }
        if self.host.contains(':') {
            write!(f, "[{}]", self.host)?;
        } else {
            f.write_str(&self.host)?;
        }
        write!(f, ":{}/{}", self.port, self.db)?;
        if let Some(ca) = &self.ca_file {
            write!(f, "?ca={}", percent_encode(ca, true))?;
        }
        Ok(())
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.debug_struct("RedisUrl")
            .field("tls", &self.tls)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("db", &self.db)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

fn parse_host_port(hostport: &str) -> Result<(String, u16), String> {
    let (host, port) = if let Some(bracketed) = hostport.strip_prefix('[') {
        let (inside, after) = bracketed
            .split_once(']')
            .ok_or("an IPv6 host needs its closing ']'")?;
        if inside.parse::<Ipv6Addr>().is_err() {
            return Err("the host in [brackets] is not an IPv6 address".into());
        }
        let port = match after {
            "" => None,
            _ => Some(
                after
                    .strip_prefix(':')
                    .ok_or("after ']' comes ':port' or nothing")?,
            ),
        };
        (inside, port)
    } else {
        match hostport.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err("the Redis URL has no host".into());
    }
    if !hostport.starts_with('[')
        && !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
    {
        return Err("the host is not a name or an address".into());
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => n,
            // Not quoted: `redis://user:password` (no host) puts the
            // password here.
            _ => return Err("the port is not a number from 1 to 65535".into()),
        },
    };
    Ok((host.to_ascii_lowercase(), port))
}

fn parse_db(path: &str) -> Result<u32, String> {
    let db = path.strip_prefix('/').unwrap_or(path);
    if db.is_empty() {
        return Ok(0);
    }
    match db.parse::<u32>() {
        Ok(n) if db.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
        _ => Err(format!(
            "database {db:?} is not a number (the path is /0, /1, …)"
        )),
    }
}

fn parse_query(query: &str, tls: bool) -> Result<Option<String>, String> {
    let mut ca = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "ca" if !tls => return Err("?ca= is for rediss:// (TLS) only".into()),
            "ca" if ca.is_some() => return Err("?ca= given twice".into()),
            "ca" => {
                let path = percent_decode(value).map_err(|e| format!("ca: {e}"))?;
                if path.is_empty() {
                    return Err("?ca= needs the path of a PEM file".into());
                }
                ca = Some(path);
            }
            _ => {
                return Err(format!(
                    "unknown URL option {:?} (known: ca)",
                    percent_decode(key).unwrap_or_default()
                ))
            }
        }
    }
    Ok(ca)
}

/// `%XX` to bytes, then UTF-8. The message never includes the input.
fn percent_decode(s: &str) -> Result<String, &'static str> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b != b'%' {
            out.push(b);
            continue;
        }
        let hi = bytes.next().and_then(hex);
        let lo = bytes.next().and_then(hex);
        match (hi, lo) {
            (Some(hi), Some(lo)) => out.push(hi << 4 | lo),
            _ => return Err("'%' must be followed by two hex digits"),
        }
    }
    String::from_utf8(out).map_err(|_| "not UTF-8 once percent-decoded")
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-encodes all but RFC 3986 unreserved bytes (and '/' for a path).
fn percent_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || (keep_slash && b == b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(tls: bool, host: &str, port: u16, db: u32) -> RedisUrl {
        RedisUrl {
            tls,
            host: host.into(),
            port,
            user: None,
            password: None,
            db,
            ca_file: None,
        }
    }

    fn with(mut u: RedisUrl, f: impl FnOnce(&mut RedisUrl)) -> RedisUrl {
        f(&mut u);
        u
    }

    fn pw(u: RedisUrl, user: Option<&str>, password: Option<&str>) -> RedisUrl {
        with(u, |u| {
            u.user = user.map(Into::into);
            u.password = password.map(Into::into);
        })
    }

    #[test]
    fn valid_urls() {
        let cases: Vec<(&str, &str, RedisUrl)> = vec![
            (
                "host only",
                "redis://localhost",
                url(false, "localhost", 6379, 0),
            ),
            (
                "port and db",
                "redis://r.internal:6380/3",
                url(false, "r.internal", 6380, 3),
            ),
            ("trailing slash", "redis://h/", url(false, "h", 6379, 0)),
            (
                "db above 15",
                "redis://h/4294967295",
                url(false, "h", 6379, u32::MAX),
            ),
            (
                "uppercase",
                "REDIS://Host.Example",
                url(false, "host.example", 6379, 0),
            ),
            (
                "ipv4",
                "redis://10.0.0.1:7000",
                url(false, "10.0.0.1", 7000, 0),
            ),
            ("ipv6", "redis://[::1]:6380/2", url(false, "::1", 6380, 2)),
            (
                "ipv6 no port",
                "redis://[fe80::1]",
                url(false, "fe80::1", 6379, 0),
            ),
            (
                "ipv6 with db",
                "redis://[2001:db8::7]/5",
                url(false, "2001:db8::7", 6379, 5),
            ),
            (
                "tls",
                "rediss://r.example:6390",
                url(true, "r.example", 6390, 0),
            ),
            (
                "password only",
                "redis://:s3cret@h:6379/0",
                pw(url(false, "h", 6379, 0), None, Some("s3cret")),
            ),
            (
                "user and password",
                "redis://bus:s3cret@h",
                pw(url(false, "h", 6379, 0), Some("bus"), Some("s3cret")),
            ),
            (
                "user only",
                "redis://bus@h",
                pw(url(false, "h", 6379, 0), Some("bus"), None),
            ),
            (
                "empty credentials",
                "redis://:@h",
                pw(url(false, "h", 6379, 0), None, None),
            ),
            (
                "percent-encoded @ : / % in password",
                "redis://:p%40ss%3Aw%2Frd%25@h",
                pw(url(false, "h", 6379, 0), None, Some("p@ss:w/rd%")),
            ),
            (
                "raw @ and : in password",
                "redis://u:p@ss:word@h:1",
                pw(url(false, "h", 1, 0), Some("u"), Some("p@ss:word")),
            ),
            (
                "percent-encoded user",
                "redis://a%20b:x@h",
                pw(url(false, "h", 6379, 0), Some("a b"), Some("x")),
            ),
            (
                "UTF-8 password",
                "redis://:%C3%A9t%C3%A9@h",
                pw(url(false, "h", 6379, 0), None, Some("été")),
            ),
            (
                "ca file",
                "rediss://:pw@h/1?ca=/etc/wc/ca%20file.pem",
                with(pw(url(true, "h", 6379, 1), None, Some("pw")), |u| {
                    u.ca_file = Some("/etc/wc/ca file.pem".into())
                }),
            ),
            ("empty query", "redis://h?", url(false, "h", 6379, 0)),
        ];
        for (name, input, want) in cases {
            assert_eq!(RedisUrl::parse(input), Ok(want.clone()), "{name}");
            // Display parses back to the same URL but for the password.
            let shown = want.to_string();
            let back = RedisUrl::parse(&shown).map(|u| pw(u.clone(), u.user.as_deref(), None));
            let want_back = pw(want.clone(), want.user.as_deref(), None);
            assert_eq!(back, Ok(want_back), "{name}: {shown}");
        }
    }

    #[test]
    fn invalid_urls() {
        let cases: &[(&str, &str, &str)] = &[
            ("unknown scheme", "http://h", "unknown scheme http://"),
            ("no scheme", "h:6379", "starts with redis://"),
            (
                "unix socket",
                "unix:///tmp/redis.sock",
                "unknown scheme unix://",
            ),
            ("empty host", "redis://", "no host"),
            ("empty host with port", "redis://:6379", "no host"),
            ("empty host with password", "redis://:pw@/0", "no host"),
            ("port zero", "redis://h:0", "port is not"),
            ("port too big", "redis://h:65536", "port is not"),
            ("port empty", "redis://h:", "port is not"),
            ("port sign", "redis://h:+80", "port is not"),
            ("bad db", "redis://h/abc", "database \"abc\""),
            ("negative db", "redis://h/-1", "database \"-1\""),
            (
                "db too big",
                "redis://h/4294967296",
                "database \"4294967296\"",
            ),
            ("db with slash", "redis://h/1/2", "database \"1/2\""),
            ("ipv6 unclosed", "redis://[::1:6379", "closing ']'"),
            ("ipv6 not an address", "redis://[xyz]:1", "not an IPv6"),
            ("ipv6 junk after", "redis://[::1]x", "after ']'"),
            ("bad host char", "redis://h st", "not a name"),
            ("raw ? in password", "redis://:a?b@h", "percent-encode"),
            ("raw / in password", "redis://:a/b@h", "percent-encode"),
            ("ca without tls", "redis://h?ca=/x.pem", "rediss://"),
            ("ca empty", "rediss://h?ca=", "needs the path"),
            ("ca twice", "rediss://h?ca=/a&ca=/b", "twice"),
            (
                "unknown option",
                "redis://h?db=1",
                "unknown URL option \"db\"",
            ),
            ("bad percent", "redis://:%zz@h", "password: '%'"),
            ("truncated percent", "redis://:ab%4@h", "password: '%'"),
            ("not UTF-8", "redis://:%ff@h", "password: not UTF-8"),
            ("fragment", "redis://:a#b@h", "#fragment"),
        ];
        for (name, input, want) in cases {
            match RedisUrl::parse(input) {
                Ok(u) => panic!("{name}: accepted as {u:?}"),
                Err(e) => assert!(e.contains(want), "{name}: {e:?} lacks {want:?}"),
            }
        }
    }

    #[test]
    fn errors_and_display_never_show_the_password() {
        let secret = "Zq9secretZq9";
        let cases = [
            format!("redis://:{secret}@h:99999"),
            format!("redis://u:{secret}"),
            format!("redis://{secret}:{secret}"),
            format!("redis://{secret} x"),
            format!("redis://[{secret}]"),
            format!("redis://:{secret}/x@h"),
            format!("redis://:{secret}?x@h"),
            format!("redis://u:{secret}@h/db"),
            format!("redis://u:{secret}%@h"),
            format!("redis://u:{secret}@[::1"),
            format!("redis://u:{secret}@h?ca=/x"),
            format!("redis://u:{secret}@h#frag"),
            format!("{secret}@h"),
            format!("redis//:{secret}@h"),
        ];
        for input in &cases {
            let e = RedisUrl::parse(input).expect_err(input);
            assert!(!e.contains(secret), "{input}: {e}");
        }
        let u = RedisUrl::parse(&format!("redis://:{secret}@h:6379/0")).expect("valid");
        assert_eq!(u.to_string(), "redis://:***@h:6379/0");
        assert!(!format!("{u:?}").contains(secret));
        let u =
            RedisUrl::parse(&format!("rediss://bus:{secret}@[::1]/2?ca=/c.pem")).expect("valid");
        assert_eq!(u.to_string(), "rediss://bus:***@[::1]:6379/2?ca=/c.pem");
    }
}
