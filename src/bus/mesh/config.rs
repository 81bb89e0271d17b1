//! `sys.conf`, the cluster file (the README's "Running a cluster"): `key = value` lines,
//! `#` comments, entries separated by commas or spaces. The same file serves
//! every node; a node finds itself in `nodes` by its `--name`, and its
//! cluster port is that entry's port. Every problem names the file and line.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

use crate::bus::redis::url::RedisUrl;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// `node1@127.0.0.1`
    pub name: String,
    /// Where its cluster port listens: the host of the name, the entry's port.
    pub addr: SocketAddr,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// `bus = redis://…`: messages and presence go through Redis; `nodes`
    /// and `cookie` are then not needed. `None`: the mesh.
    pub redis: Option<RedisUrl>,
    pub nodes: Vec<Member>,
    pub sync_nodes_timeout: Duration,
    pub cookie: String,
    /// Links run over TLS 1.3 (`link_tls = on`, the default); `off` keeps
    /// them in clear, for loopback demos.
    pub link_tls: bool,
}

/// Shortest cookie accepted when a node is beyond loopback.
pub const MIN_COOKIE: usize = 16;
/// The README's old sample, refused beyond loopback.
pub const SAMPLE_COOKIE: &str = "change-me";

/// A strong cookie: 32 random bytes as 43 characters of URL-safe base64.
pub fn gen_cookie() -> String {
    use ring::rand::{SecureRandom, SystemRandom};
    let mut bytes = [0u8; 32];
    // The system RNG does not fail on Linux; if it did, say so rather than
    // print a weak cookie.
    if SystemRandom::new().fill(&mut bytes).is_err() {
        return String::new();
    }
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(43);
    let mut acc = 0u32;
    let mut bits = 0;
    for b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 6 {
            bits -= 6;
            out.push(ABC[((acc >> bits) & 63) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ABC[((acc << (6 - bits)) & 63) as usize] as char);
    }
    out
}

/// Parses `text` (the contents of `file`, named in errors) for the node `me`.
pub fn parse(file: &str, text: &str, me: &str) -> Result<ClusterConfig, String> {
    let mut nodes: Option<(Vec<Member>, usize)> = None;
    let mut sync = None;
    let mut cookie = None;
    let mut redis: Option<Option<RedisUrl>> = None;
    let mut link_tls = None;
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!("{file}:{n}: expected `key = value`, got {line:?}"));
        };
        let (key, value) = (key.trim(), value.trim());
        let dup = |seen: bool| {
            if seen {
                Err(format!("{file}:{n}: `{key}` is set twice"))
            } else {
                Ok(())
            }
        };
        match key {
            "nodes" => {
                dup(nodes.is_some())?;
                let mut list = Vec::new();
                for entry in value.split([',', ' ', '\t']).filter(|e| !e.is_empty()) {
                    let m = member(entry).map_err(|e| format!("{file}:{n}: {e}"))?;
                    if list.iter().any(|o: &Member| o.name == m.name) {
                        return Err(format!("{file}:{n}: {} is listed twice", m.name));
                    }
                    list.push(m);
                }
                if list.is_empty() {
                    return Err(format!("{file}:{n}: `nodes` lists no node"));
                }
                nodes = Some((list, n));
            }
            "sync_nodes_timeout" => {
                dup(sync.is_some())?;
                let ms: u64 = value.parse().map_err(|_| {
                    format!("{file}:{n}: sync_nodes_timeout must be milliseconds, got {value:?}")
                })?;
                sync = Some(Duration::from_millis(ms));
            }
            "cookie" => {
                dup(cookie.is_some())?;
                if value.is_empty() || value.len() > 1024 {
                    return Err(format!("{file}:{n}: the cookie must be 1 to 1024 bytes"));
                }
                cookie = Some((value.to_string(), n));
            }
            "link_tls" => {
                dup(link_tls.is_some())?;
                link_tls = Some(match value {
                    "on" => true,
                    "off" => false,
                    _ => return Err(format!("{file}:{n}: link_tls is on or off, got {value:?}")),
                });
            }
            "bus" => {
                dup(redis.is_some())?;
                redis = Some(match value {
                    "mesh" => None,
                    url => Some(RedisUrl::parse(url).map_err(|e| format!("{file}:{n}: bus: {e}"))?),
                });
            }
            _ => return Err(format!("{file}:{n}: unknown key `{key}`")),
        }
    }
    let sync_nodes_timeout = sync.unwrap_or(Duration::from_millis(5000));
    if let Some(Some(url)) = redis {
        return Ok(ClusterConfig {
            redis: Some(url),
            nodes: nodes.map(|(n, _)| n).unwrap_or_default(),
            sync_nodes_timeout,
            cookie: cookie.map(|(c, _)| c).unwrap_or_default(),
            link_tls: link_tls.unwrap_or(true),
        });
    }
    let Some((nodes, line)) = nodes else {
        return Err(format!("{file}: no `nodes` line"));
    };
    if !nodes.iter().any(|m| m.name == me) {
        return Err(format!("{file}:{line}: this node ({me}) is not in `nodes`"));
    }
    let Some((cookie, cookie_line)) = cookie else {
        return Err(format!(
            "{file}: no `cookie` line (the cluster's shared secret)"
        ));
    };
    let loopback = nodes.iter().all(|m| m.addr.ip().is_loopback());
    if !loopback && (cookie.len() < MIN_COOKIE || cookie == SAMPLE_COOKIE) {
        return Err(format!(
            "{file}:{cookie_line}: the cookie is weak ({}): a cluster beyond this machine needs one of at least {MIN_COOKIE} characters; `watercooler --gen-cookie` prints one",
            if cookie == SAMPLE_COOKIE { "the sample `change-me`".to_string() } else { format!("{} characters", cookie.len()) }
        ));
    }
    Ok(ClusterConfig {
        redis: None,
        nodes,
        sync_nodes_timeout,
        cookie,
        link_tls: link_tls.unwrap_or(true),
    })
}

/// `name@host:port`, where the name is `name@host` (host may be `[v6]`).
pub fn member(entry: &str) -> Result<Member, String> {
    let (name, port) = entry
        .rsplit_once(':')
        .filter(|(name, _)| !name.ends_with(':'))
        .ok_or_else(|| format!("{entry:?}: expected name@host:port"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("{entry:?}: bad port {port:?}"))?;
    let addr = resolve(name, port).map_err(|e| format!("{entry:?}: {e}"))?;
    Ok(Member {
        name: name.to_string(),
        addr,
    })
}

fn resolve(name: &str, port: u16) -> Result<SocketAddr, String> {
    let (node, host) = name
        .rsplit_once('@')
        .ok_or_else(|| "a node name is name@host".to_string())?;
    if node.is_empty() || host.is_empty() {
        return Err("a node name is name@host".into());
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("cannot resolve {host}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEMO: &str = "\
# the nodes of this cluster
nodes = node1@127.0.0.1:4371, node2@127.0.0.1:4372
sync_nodes_timeout = 5000  # ms
cookie = change-me
";

    #[test]
    fn the_demo_file() {
        let c = parse("sys.conf", DEMO, "node2@127.0.0.1").unwrap();
        assert_eq!(c.nodes.len(), 2);
        assert_eq!(c.nodes[1].addr, "127.0.0.1:4372".parse().unwrap());
        assert_eq!(c.sync_nodes_timeout, Duration::from_millis(5000));
        assert_eq!(c.cookie, "change-me");
        assert!(c.link_tls, "links are encrypted unless said otherwise");
        let off = parse("f", &format!("{DEMO}link_tls = off\n"), "node1@127.0.0.1").unwrap();
        assert!(!off.link_tls);
        let bad = parse("f", &format!("{DEMO}link_tls = maybe\n"), "node1@127.0.0.1");
        assert!(bad.unwrap_err().starts_with("f:5: link_tls is on or off"));
        let v6 = parse("f", "nodes = a@[::1]:7 b@127.0.0.1:8\ncookie=x", "a@[::1]").unwrap();
        assert_eq!(v6.nodes[0].addr, "[::1]:7".parse().unwrap());
    }

    #[test]
    fn errors_name_file_and_line() {
        let cases = [
            (
                "nodes = a@127.0.0.1:1\ncookie = x\ncolor = blue",
                "f:3: unknown key",
            ),
            ("nodes = a@127.0.0.1:1\njunk", "f:2: expected"),
            ("nodes = b@127.0.0.1:1\ncookie = x", "f:1: this node"),
            ("nodes = a@127.0.0.1:x\ncookie = x", "f:1:"),
            ("nodes = a127.0.0.1:1\ncookie = x", "f:1:"),
            (
                "nodes = a@127.0.0.1:1\nsync_nodes_timeout = soon\ncookie = x",
                "f:2:",
            ),
            ("nodes = a@127.0.0.1:1", "no `cookie`"),
            ("cookie = x", "no `nodes`"),
            (
                "nodes = a@127.0.0.1:1 a@127.0.0.1:2\ncookie = x",
                "listed twice",
            ),
        ];
        for (text, want) in cases {
            let err = parse("f", text, "a@127.0.0.1").unwrap_err();
            assert!(
                err.starts_with(want) || err.contains(want),
                "{text:?}: {err}"
            );
        }
    }

    #[test]
    fn a_redis_bus_needs_no_nodes_or_cookie() {
        let c = parse("f", "bus = redis://:s3cret@127.0.0.1:6380/2\n", "x@h").unwrap();
        let url = c.redis.unwrap();
        assert_eq!((url.port, url.db), (6380, 2));
        assert!(c.nodes.is_empty());
        let mesh = parse(
            "f",
            "bus = mesh\nnodes = a@127.0.0.1:1\ncookie = x",
            "a@127.0.0.1",
        );
        assert!(mesh.unwrap().redis.is_none());
        let err = parse("f", "bus = http://x", "a").unwrap_err();
        assert!(err.starts_with("f:1: bus: unknown scheme"), "{err}");
        assert!(!parse("f", "bus = redis://:hunter2@h:x", "a")
            .unwrap_err()
            .contains("hunter2"));
    }

    #[test]
    fn weak_cookies_only_on_loopback() {
        let wide = "nodes = a@127.0.0.1:1, b@10.0.0.2:2\ncookie = ";
        for weak in ["change-me", "x", "fifteen-chars-x"] {
            let err = parse("f", &format!("{wide}{weak}"), "a@127.0.0.1").unwrap_err();
            assert!(err.starts_with("f:2: the cookie is weak"), "{weak}: {err}");
        }
        assert!(parse("f", &format!("{wide}sixteen-chars-xx"), "a@127.0.0.1").is_ok());
        let strong = gen_cookie();
        assert_eq!(strong.len(), 43);
        assert_ne!(strong, gen_cookie());
        assert!(parse("f", &format!("{wide}{strong}"), "a@127.0.0.1").is_ok());
    }
}
