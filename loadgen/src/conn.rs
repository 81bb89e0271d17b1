//! One client connection and the byte-level protocols on it: loopback URLs,
//! a non-blocking connect from a chosen source address (so more than ~28k
//! sockets fit: ports are per source/destination pair), a transport that is
//! either plain TCP or rustls over it, an HTTP/1.1 body decoder (identity or
//! chunked), and an SSE parser that hands the first `data:` line of each
//! `message` event to the caller and ignores comments, `retry:` and other
//! event types (watercooler's `presence`, `missed`).

use std::io::{self, Read, Write};
use std::mem::size_of;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::FromRawFd;
use std::sync::Arc;

use mio::net::TcpStream;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection};

#[path = "../../tests/common/accept_any_cert.rs"]
mod accept_any_cert;
use accept_any_cert::AcceptAnyCert;

/// A parsed `http://` or `https://` URL whose host is an IPv4 loopback
/// address (127.0.0.0/8) or `localhost`; anything else is refused.
#[derive(Clone, Debug)]
pub struct Target {
    pub tls: bool,
    pub addr: SocketAddrV4,
    /// `host:port` as written, for the Host header.
    pub authority: String,
    pub path: String,
}

impl Target {
    pub fn parse(url: &str) -> Result<Target, String> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else {
            return Err(format!("{url}: only http:// and https:// URLs"));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, p.parse::<u16>().map_err(|_| format!("{url}: bad port"))?),
            None => (authority, if tls { 443 } else { 80 }),
        };
        let ip: Ipv4Addr = if host.eq_ignore_ascii_case("localhost") {
            Ipv4Addr::LOCALHOST
        } else {
            host.parse()
                .map_err(|_| format!("{url}: the host must be a 127.x.x.x address or localhost"))?
        };
        if !ip.is_loopback() {
            return Err(format!(
                "{url}: refused, loopback (127.0.0.0/8) targets only"
            ));
        }
        Ok(Target {
            tls,
            addr: SocketAddrV4::new(ip, port),
            authority: authority.to_string(),
            path: path.to_string(),
        })
    }
}

/// Room `r`'s name on the server: `bench-R`, a valid room name
/// (`[a-z0-9-]{1,32}`).
pub fn room_name(r: u32) -> String {
    format!("bench-{r}")
}

/// `path` with every `{room}` replaced by room `r`'s name; unchanged when it
/// has none (one room: the URL as given).
pub fn room_path(path: &str, r: u32) -> String {
    if path.contains("{room}") {
        path.replace("{room}", &room_name(r))
    } else {
        path.to_string()
    }
}

/// Starts a non-blocking connect to `dst`, bound first to `src` when given.
/// `IP_BIND_ADDRESS_NO_PORT` defers the port choice to `connect`, so each
/// (source, destination) pair gets the whole ephemeral range.
pub fn connect_from(src: Option<Ipv4Addr>, dst: SocketAddrV4) -> io::Result<TcpStream> {
    fn sockaddr(ip: Ipv4Addr, port: u16) -> libc::sockaddr_in {
        libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(ip).to_be(),
            },
            sin_zero: [0; 8],
        }
    }
    let len = size_of::<libc::sockaddr_in>() as libc::socklen_t;
    let one: libc::c_int = 1;
    let optlen = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: plain socket syscalls on a descriptor we create and hand to
    // `std::net::TcpStream` at once, which closes it on every error path.
    unsafe {
        let fd = libc::socket(
            libc::AF_INET,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        );
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let std = std::net::TcpStream::from_raw_fd(fd);
        let opt = &one as *const libc::c_int as *const libc::c_void;
        libc::setsockopt(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, opt, optlen);
        if let Some(src) = src {
            libc::setsockopt(
                fd,
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                opt,
                optlen,
            );
            let sa = sockaddr(src, 0);
            if libc::bind(fd, &sa as *const _ as *const libc::sockaddr, len) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        let sa = sockaddr(*dst.ip(), dst.port());
        if libc::connect(fd, &sa as *const _ as *const libc::sockaddr, len) != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINPROGRESS) {
                return Err(e);
            }
        }
        Ok(TcpStream::from_std(std))
    }
}

pub fn tls_config() -> Result<Arc<ClientConfig>, String> {
    tls_config_alpn(&[])
}

/// A client config offering `alpn` (e.g. `[b"h2"]`) in the handshake.
pub fn tls_config_alpn(alpn: &[&[u8]]) -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// A socket, plain or TLS. Bytes sent before the TCP connect completes (or
/// before the handshake does) wait in a buffer.
pub struct Transport {
    pub sock: TcpStream,
    tls: Option<Box<ClientConnection>>,
    out: Vec<u8>,
    pub established: bool,
}

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

impl Transport {
    pub fn new(sock: TcpStream, tls: Option<&Arc<ClientConfig>>, ip: Ipv4Addr) -> io::Result<Self> {
        let tls = match tls {
            None => None,
            Some(cfg) => {
                let name = ServerName::IpAddress(std::net::IpAddr::V4(ip).into());
                let c = ClientConnection::new(cfg.clone(), name)
                    .map_err(|e| io::Error::other(e.to_string()))?;
                Some(Box::new(c))
            }
        };
        Ok(Transport {
            sock,
            tls,
            out: Vec::new(),
            established: false,
        })
    }

    /// Whether a finished TLS handshake chose some protocol other than
    /// `want` by ALPN (or none); `false` on plain TCP and while handshaking.
    pub fn alpn_mismatch(&self, want: &[u8]) -> bool {
        match &self.tls {
            Some(t) => !t.is_handshaking() && t.alpn_protocol() != Some(want),
            None => false,
        }
    }

    /// After a WRITABLE event on a connecting socket: `Ok(true)` once connected.
    pub fn check_connected(&mut self) -> io::Result<bool> {
        if self.established {
            return Ok(true);
        }
        if let Some(e) = self.sock.take_error()? {
            return Err(e);
        }
        match self.sock.peer_addr() {
            Ok(_) => {
                self.established = true;
                self.flush()?;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub fn send(&mut self, data: &[u8]) -> io::Result<()> {
        match &mut self.tls {
            Some(t) => t.writer().write_all(data)?,
            None => self.out.extend_from_slice(data),
        }
        if self.established {
            self.flush()
        } else {
            Ok(())
        }
    }

    pub fn flush(&mut self) -> io::Result<()> {
        if !self.established {
            return Ok(());
        }
        let Transport { sock, tls, out, .. } = self;
        match tls {
            Some(t) => {
                while t.wants_write() {
                    match t.write_tls(sock) {
                        Ok(_) => {}
                        Err(e) if would_block(&e) => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            None => {
                while !out.is_empty() {
                    match sock.write(out) {
                        Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                        Ok(n) => {
                            out.drain(..n);
                        }
                        Err(e) if would_block(&e) => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        Ok(())
    }

    /// Reads everything available (edge-triggered), passing plaintext to
    /// `f`. `Ok(true)` when the peer closed the stream.
    pub fn read(&mut self, buf: &mut [u8], mut f: impl FnMut(&[u8])) -> io::Result<bool> {
        if !self.established {
            return Ok(false);
        }
        let Transport { sock, tls, .. } = self;
        let Some(t) = tls else {
            loop {
                match sock.read(buf) {
                    Ok(0) => return Ok(true),
                    Ok(n) => f(&buf[..n]),
                    Err(e) if would_block(&e) => return Ok(false),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        };
        let mut eof = false;
        while !eof {
            match t.read_tls(sock) {
                Ok(0) => eof = true,
                Ok(_) => {}
                Err(e) if would_block(&e) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            if let Err(e) = t.process_new_packets() {
                let _ = t.write_tls(sock); // the alert, best effort
                return Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string()));
            }
            loop {
                match t.reader().read(buf) {
                    Ok(0) => {
                        eof = true;
                        break;
                    }
                    Ok(n) => f(&buf[..n]),
                    Err(e) if would_block(&e) => break,
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                        eof = true;
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        self.flush()?;
        Ok(eof)
    }
}

/// Response head fields the load generator cares about.
pub struct Head {
    pub len: usize,
    pub status: u16,
    pub event_stream: bool,
    pub chunked: bool,
    pub content_length: Option<usize>,
    pub close: bool,
}

/// `Ok(None)` while the head is incomplete.
pub fn parse_head(buf: &[u8]) -> Result<Option<Head>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 48];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > 64 * 1024 => {
            return Err("head too long".into())
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("bad response head: {e}")),
    };
    let mut head = Head {
        len,
        status: resp.code.unwrap_or(0),
        event_stream: false,
        chunked: false,
        content_length: None,
        close: resp.version == Some(0),
    };
    for h in resp.headers.iter() {
        let v = String::from_utf8_lossy(h.value).to_ascii_lowercase();
        if h.name.eq_ignore_ascii_case("content-type") {
            head.event_stream = v.trim_start().starts_with("text/event-stream");
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            head.chunked = v.contains("chunked");
        } else if h.name.eq_ignore_ascii_case("content-length") {
            head.content_length = v.trim().parse().ok();
        } else if h.name.eq_ignore_ascii_case("connection") {
            head.close = v.contains("close");
        }
    }
    Ok(Some(head))
}

/// An HTTP/1.1 response body: identity (close-delimited or counted; the
/// caller counts) or chunked.
#[derive(Default)]
pub enum Body {
    #[default]
    Identity,
    Chunked(Chunk),
}

#[derive(Default, Clone, Copy)]
pub enum Chunk {
    #[default]
    Size,
    SizeDigits(u64, bool),
    Data(u64),
    DataEnd,
    Done,
}

impl Body {
    pub fn chunked() -> Body {
        Body::Chunked(Chunk::Size)
    }

    /// Passes decoded body bytes to `out`. Returns how many input bytes were
    /// consumed once the last chunk has been seen (trailers are not read:
    /// the streams here have none), else `None`.
    pub fn feed(&mut self, data: &[u8], out: &mut impl FnMut(&[u8])) -> Option<usize> {
        let state = match self {
            Body::Identity => {
                out(data);
                return None;
            }
            Body::Chunked(s) => s,
        };
        let mut i = 0;
        while i < data.len() {
            match *state {
                Chunk::Size => *state = Chunk::SizeDigits(0, false),
                Chunk::SizeDigits(n, ext) => {
                    let b = data[i];
                    i += 1;
                    if b == b'\n' {
                        *state = if n == 0 { Chunk::Done } else { Chunk::Data(n) };
                        if n == 0 {
                            // Skip the blank line ending the (empty) trailer.
                            while i < data.len() && (data[i] == b'\r' || data[i] == b'\n') {
                                i += 1;
                            }
                            return Some(i);
                        }
                    } else if !ext && b.is_ascii_hexdigit() {
                        let d = (b as char).to_digit(16).unwrap_or(0) as u64;
                        *state = Chunk::SizeDigits(n.saturating_mul(16).saturating_add(d), false);
                    } else if b != b'\r' {
                        *state = Chunk::SizeDigits(n, true);
                    }
                }
                Chunk::Data(n) => {
                    let take = (n as usize).min(data.len() - i);
                    out(&data[i..i + take]);
                    i += take;
                    let left = n - take as u64;
                    *state = if left == 0 {
                        Chunk::DataEnd
                    } else {
                        Chunk::Data(left)
                    };
                }
                Chunk::DataEnd => {
                    if data[i] == b'\n' {
                        *state = Chunk::Size;
                    }
                    i += 1;
                }
                Chunk::Done => return Some(i),
            }
        }
        None
    }
}

/// The SSE line protocol as `EventSource` reads it, keeping only what the
/// load generator needs: whether an event is a `message` and its first
/// `data:` line (at most 64 bytes of it).
pub struct Sse {
    line: Vec<u8>,
    data: Vec<u8>,
    has_data: bool,
    is_message: bool,
}

impl Default for Sse {
    fn default() -> Self {
        Sse {
            line: Vec::new(),
            data: Vec::new(),
            has_data: false,
            is_message: true,
        }
    }
}

const MAX_LINE: usize = 1 << 20;

impl Sse {
    pub fn feed(&mut self, mut bytes: &[u8], on_message: &mut impl FnMut(&[u8])) {
        while !bytes.is_empty() {
            match bytes.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    if self.line.is_empty() {
                        self.line_done(&bytes[..i], on_message);
                    } else {
                        let mut line = std::mem::take(&mut self.line);
                        line.extend_from_slice(&bytes[..i]);
                        self.line_done(&line, on_message);
                        line.clear();
                        self.line = line;
                    }
                    bytes = &bytes[i + 1..];
                }
                None => {
                    // Long `data:` padding: only the start matters.
                    let room = MAX_LINE.saturating_sub(self.line.len());
                    self.line.extend_from_slice(&bytes[..bytes.len().min(room)]);
                    break;
                }
            }
        }
    }

    fn line_done(&mut self, line: &[u8], on_message: &mut impl FnMut(&[u8])) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            if self.has_data && self.is_message {
                on_message(&self.data);
            }
            self.data.clear();
            self.has_data = false;
            self.is_message = true;
            return;
        }
        if line[0] == b':' {
            return;
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"event" => self.is_message = value.is_empty() || value == b"message",
            b"data" if !self.has_data => {
                self.has_data = true;
                self.data.extend_from_slice(&value[..value.len().min(64)]);
            }
            _ => {}
        }
    }
}

/// What loadgen writes at the start of each message: its sequence number,
/// when it was due and when it was sent (wall-clock microseconds).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Stamp {
    pub seq: u32,
    pub due_us: u64,
    pub sent_us: u64,
}

impl Stamp {
    /// `"{seq} {due} {sent} "`; the caller pads it to the message size.
    pub fn text(&self) -> String {
        format!("{} {} {} ", self.seq, self.due_us, self.sent_us)
    }

    /// The stamp at the start of a message text; `None` if it is not ours.
    pub fn parse(data: &[u8]) -> Option<Stamp> {
        let s = std::str::from_utf8(data).ok()?;
        let mut it = s.split(' ');
        Some(Stamp {
            seq: it.next()?.parse().ok()?,
            due_us: it.next()?.parse().ok()?,
            sent_us: it.next()?.parse().ok()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(body: &mut Body, sse: &mut Sse, pieces: &[&[u8]]) -> Vec<String> {
        let mut got = Vec::new();
        for p in pieces {
            body.feed(p, &mut |d| {
                sse.feed(d, &mut |m| {
                    got.push(String::from_utf8_lossy(m).into_owned())
                })
            });
        }
        got
    }

    #[test]
    fn sse_keeps_messages_only() {
        let stream = b"retry: 2000\n\nevent: presence\ndata: {\"n\":1}\n\n: heartbeat\n\nid: a\ndata: 1 2 xx\n\nevent: message\r\ndata: 3 4\r\ndata: more\r\n\r\n";
        // Byte by byte, to exercise every split.
        let pieces: Vec<&[u8]> = stream.chunks(1).collect();
        let got = events(&mut Body::Identity, &mut Sse::default(), &pieces);
        assert_eq!(got, ["1 2 xx", "3 4"]);
    }

    #[test]
    fn chunked_bodies_decode() {
        let stream = b"7\r\ndata: 5\r\n4;x=y\r\n 6\n\n\r\n0\r\n\r\n";
        for size in [1, 3, stream.len()] {
            let pieces: Vec<&[u8]> = stream.chunks(size).collect();
            let got = events(&mut Body::chunked(), &mut Sse::default(), &pieces);
            assert_eq!(got, ["5 6"], "pieces of {size}");
        }
        let mut b = Body::chunked();
        assert_eq!(b.feed(b"0\r\n\r\n", &mut |_| {}), Some(5));
    }

    #[test]
    fn only_loopback_targets() {
        assert!(Target::parse("http://127.0.0.1:8080/listen").is_ok());
        assert!(Target::parse("https://localhost/x").unwrap().tls);
        assert!(Target::parse("http://10.0.0.1:80/").is_err());
        assert!(Target::parse("http://example.com/").is_err());
    }

    #[test]
    fn room_paths() {
        assert_eq!(room_path("/r/{room}/listen", 7), "/r/bench-7/listen");
        assert_eq!(room_path("/listen", 7), "/listen");
        let t = Target::parse("http://127.0.0.1:8080/r/{room}/publish").unwrap();
        assert_eq!(room_path(&t.path, 0), "/r/bench-0/publish");
    }

    #[test]
    fn stamps_round_trip() {
        let st = Stamp {
            seq: 12,
            due_us: 345,
            sent_us: 678,
        };
        assert_eq!(st.text(), "12 345 678 ");
        assert_eq!(Stamp::parse(b"12 345 678 xxx"), Some(st));
        assert_eq!(Stamp::parse(b"12 345 678"), Some(st));
        for theirs in [&b"hello"[..], b"12 345 xxx", b"12 345", b"-1 2 3 ", b""] {
            assert_eq!(Stamp::parse(theirs), None, "{theirs:?}");
        }
    }
}
