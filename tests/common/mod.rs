//! Shared harness of the integration tests: starts the real `watercooler`
//! binary on port 0, reads the URLs it prints, talks to it over real sockets
//! (plain TCP or rustls), and kills it by PID when the `Node` is dropped.
//!
//! Every wait is bounded: reads time out after `IO_TIMEOUT`, startup after
//! `START_TIMEOUT`. Panics carry the last lines of the node's stderr.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};

mod accept_any_cert;
use accept_any_cert::AcceptAnyCert;

/// Bound on every single read or write of a test socket.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on the node printing both of its `listening on` lines.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How many lines of the node's stderr are kept for panic messages.
const STDERR_LINES: usize = 60;
/// How many stderr lines are kept in full for `Node::log_lines`.
const LOG_LINES: usize = 20_000;

const BIN: &str = env!("CARGO_BIN_EXE_watercooler");

// ---------------------------------------------------------------------------
// Nodes
// ---------------------------------------------------------------------------

/// A running node. Dropping it kills the process and reaps it.
pub struct Node {
    child: Child,
    http: SocketAddr,
    https: SocketAddr,
    stderr: Arc<Mutex<VecDeque<String>>>,
    /// Every stderr line (up to `LOG_LINES`), for `wait_log` and friends.
    log: Arc<Mutex<Vec<String>>>,
    /// The arguments it was started with (for `restart`).
    args: Vec<String>,
}

impl Node {
    /// Starts a node on 127.0.0.1 with both ports 0, no publish rate
    /// limit (tests publish fast from one address; `args` may set one) and
    /// no history log (unless `args` has `--data`), plus `args`.
    pub fn start(args: &[&str]) -> Node {
        let mut full = vec![
            "--bind",
            "127.0.0.1",
            "--port",
            "0",
            "--secure-port",
            "0",
            "--publish-rate",
            "0",
        ];
        // Memory only unless the test names a log directory: the default
        // (watercooler-data/NAME) would land in the source tree.
        if !args.contains(&"--data") {
            full.extend_from_slice(&["--data", "none"]);
        }
        full.extend_from_slice(args);
        let mut child = Command::new(BIN)
            .args(&full)
            .env_remove("PORT")
            .env_remove("SECURE_PORT")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {BIN}: {e}"));

        let stderr = Arc::new(Mutex::new(VecDeque::new()));
        let tail = Arc::clone(&stderr);
        let log = Arc::new(Mutex::new(Vec::new()));
        let all = Arc::clone(&log);
        let err_pipe = child.stderr.take().expect("stderr piped");
        thread::spawn(move || {
            for line in BufReader::new(err_pipe).lines() {
                let Ok(line) = line else { break };
                {
                    let mut all = all.lock().unwrap();
                    if all.len() < LOG_LINES {
                        all.push(line.clone());
                    }
                }
                let mut tail = tail.lock().unwrap();
                if tail.len() == STDERR_LINES {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
        });

        // stdout is drained for the node's whole life so it never blocks.
        let (tx, rx) = mpsc::channel::<String>();
        let out_pipe = child.stdout.take().expect("stdout piped");
        thread::spawn(move || {
            for line in BufReader::new(out_pipe).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });

        let mut node = Node {
            child,
            http: "0.0.0.0:0".parse().unwrap(),
            https: "0.0.0.0:0".parse().unwrap(),
            stderr,
            log,
            args: args.iter().map(|a| a.to_string()).collect(),
        };
        let (mut http, mut https) = (None, None);
        let deadline = Instant::now() + START_TIMEOUT;
        while http.is_none() || https.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(a) = listening_addr(&line, "http://") {
                        http = Some(a);
                    } else if let Some(a) = listening_addr(&line, "https://") {
                        https = Some(a);
                    }
                }
                Err(e) => {
                    thread::sleep(Duration::from_millis(100));
                    let status = node.child.try_wait().ok().flatten();
                    panic!(
                        "node {full:?} did not print both listening lines ({e}; exit: {status:?})\n\
                         stderr:\n{}",
                        node.stderr_tail()
                    );
                }
            }
        }
        node.http = http.unwrap();
        node.https = https.unwrap();
        node
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http
    }

    pub fn https_addr(&self) -> SocketAddr {
        self.https
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last lines the node wrote on stderr.
    pub fn stderr_tail(&self) -> String {
        let tail = self.stderr.lock().unwrap();
        tail.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    /// Panics with `what`, the error and the node's stderr.
    pub fn fail(&self, what: &str, e: impl std::fmt::Display) -> ! {
        panic!("{what}: {e}\n--- node stderr ---\n{}", self.stderr_tail())
    }

    /// Is the process still running?
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// One request on a fresh plain connection.
    pub fn request(&self, raw: &[u8]) -> Response {
        try_request(self.http, raw).unwrap_or_else(|e| self.fail("request", e))
    }

    pub fn get(&self, path: &str) -> Response {
        self.request(get_bytes(self.http, path).as_slice())
    }

    pub fn publish(&self, message: &str) -> Response {
        let body = form_message(message);
        try_post_form(self.http, "/publish", &body, &[]).unwrap_or_else(|e| self.fail("publish", e))
    }

    /// Publishes and asserts the 303.
    pub fn publish_ok(&self, message: &str) {
        let r = self.publish(message);
        assert_eq!(
            r.status,
            303,
            "publish {message:?}: {r:?}\n{}",
            self.stderr_tail()
        );
    }

    /// A fresh plain keep-alive connection.
    pub fn connect(&self) -> Conn<TcpStream> {
        Conn::plain(self.http).unwrap_or_else(|e| self.fail("connect", e))
    }

    /// A fresh TLS connection to the secure port.
    pub fn connect_tls(&self) -> Conn<TlsStream> {
        Conn::tls(self.https).unwrap_or_else(|e| self.fail("tls connect", e))
    }

    /// `GET /listen` over plain TCP with `extra` headers.
    pub fn listen(&self, extra: &[(&str, &str)]) -> SseClient<TcpStream> {
        self.listen_path("/listen", extra)
    }

    pub fn listen_path(&self, path: &str, extra: &[(&str, &str)]) -> SseClient<TcpStream> {
        let conn = self.connect();
        SseClient::open(conn, path, extra).unwrap_or_else(|e| self.fail("listen", e))
    }

    /// `GET /listen` over TLS.
    pub fn listen_tls(&self, extra: &[(&str, &str)]) -> SseClient<TlsStream> {
        let conn = self.connect_tls();
        SseClient::open(conn, "/listen", extra).unwrap_or_else(|e| self.fail("tls listen", e))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // Child::kill sends SIGKILL to this child's PID.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Parses `listening on http://127.0.0.1:PORT` (with `scheme` = "http://").
fn listening_addr(line: &str, scheme: &str) -> Option<SocketAddr> {
    let at = line.find("listening on ")?;
    let rest = line[at + "listening on ".len()..].trim_start();
    let rest = rest.strip_prefix(scheme)?;
    let addr = rest.split_whitespace().next()?.trim_end_matches('/');
    addr.parse().ok()
}

/// What a finished run of the binary produced.
#[derive(Debug)]
pub struct Output {
    /// `None` if it had to be killed at the timeout.
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs the binary with exactly `args` and waits at most `timeout`.
pub fn run(args: &[&str], timeout: Duration) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .env_remove("PORT")
        .env_remove("SECURE_PORT")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn {BIN}: {e}"));
    let collect = |mut pipe: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut s = Vec::new();
            let _ = pipe.read_to_end(&mut s);
            String::from_utf8_lossy(&s).into_owned()
        })
    };
    let out = collect(Box::new(child.stdout.take().unwrap()));
    let err = collect(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

// ---------------------------------------------------------------------------
// Requests and responses
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct Response {
    pub version: String,
    pub status: u16,
    pub reason: String,
    /// Names lowercased, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A socket the harness can put a read timeout on.
pub trait Stream: Read + Write {
    fn set_timeout(&self, d: Duration) -> io::Result<()>;
}

impl Stream for TcpStream {
    fn set_timeout(&self, d: Duration) -> io::Result<()> {
        self.set_read_timeout(Some(d))
    }
}

pub type TlsStream = StreamOwned<ClientConnection, TcpStream>;

impl Stream for TlsStream {
    fn set_timeout(&self, d: Duration) -> io::Result<()> {
        self.sock.set_read_timeout(Some(d))
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// One client connection with its unread input.
pub struct Conn<S: Stream> {
    pub stream: S,
    buf: Vec<u8>,
    host: String,
}

impl Conn<TcpStream> {
    pub fn plain(addr: SocketAddr) -> io::Result<Self> {
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        stream.set_nodelay(true)?;
        Ok(Conn::new(stream, addr))
    }
}

impl Conn<TlsStream> {
    pub fn tls(addr: SocketAddr) -> io::Result<Self> {
        Self::tls_with(addr, tls_config(None), "localhost")
    }

    /// TLS with a given client config and server name; completes the
    /// handshake before returning.
    pub fn tls_with(addr: SocketAddr, config: Arc<ClientConfig>, name: &str) -> io::Result<Self> {
        let sock = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
        sock.set_read_timeout(Some(IO_TIMEOUT))?;
        sock.set_write_timeout(Some(IO_TIMEOUT))?;
        sock.set_nodelay(true)?;
        let name = ServerName::try_from(name.to_string())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let conn = ClientConnection::new(config, name).map_err(io::Error::other)?;
        let mut stream = StreamOwned::new(conn, sock);
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock)?;
        }
        Ok(Conn::new(stream, addr))
    }
}

impl<S: Stream> Conn<S> {
    fn new(stream: S, addr: SocketAddr) -> Self {
        Conn {
            stream,
            buf: Vec::new(),
            host: addr.to_string(),
        }
    }

    /// The `Host` header value for this server.
    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn send(&mut self, raw: &[u8]) -> io::Result<()> {
        self.stream.write_all(raw)?;
        self.stream.flush()
    }

    fn read_more(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream.read(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    fn fill_to(&mut self, len: usize) -> io::Result<()> {
        while self.buf.len() < len {
            if self.read_more()? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("eof after {} of {len} bytes", self.buf.len()),
                ));
            }
        }
        Ok(())
    }

    fn take_line(&mut self) -> io::Result<Vec<u8>> {
        loop {
            if let Some(i) = find(&self.buf, b"\r\n") {
                let line = self.buf[..i].to_vec();
                self.buf.drain(..i + 2);
                return Ok(line);
            }
            if self.read_more()? == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "eof in line"));
            }
        }
    }

    /// Reads a response head (status line and headers).
    pub fn read_head(&mut self) -> io::Result<Response> {
        let end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i;
            }
            if self.read_more()? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "connection closed before a response head (got {:?})",
                        String::from_utf8_lossy(&self.buf)
                    ),
                ));
            }
        };
        let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
        self.buf.drain(..end + 4);
        let bad = |m: String| io::Error::new(io::ErrorKind::InvalidData, m);
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default().to_string();
        let status = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad(format!("bad status line {status_line:?}")))?;
        let reason = parts.next().unwrap_or_default().to_string();
        let mut headers = Vec::new();
        for line in lines {
            let (n, v) = line
                .split_once(':')
                .ok_or_else(|| bad(format!("bad header line {line:?}")))?;
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
        Ok(Response {
            version,
            status,
            reason,
            headers,
            body: Vec::new(),
        })
    }

    /// Reads one whole response; `head_request` says the request was HEAD
    /// (so there is no body whatever the headers say).
    pub fn read_response(&mut self, head_request: bool) -> io::Result<Response> {
        let mut r = self.read_head()?;
        if head_request || r.status / 100 == 1 || r.status == 204 || r.status == 304 {
            return Ok(r);
        }
        let chunked = r
            .header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        if chunked {
            loop {
                let line = self.take_line()?;
                let line = String::from_utf8_lossy(&line).into_owned();
                let size = line.split(';').next().unwrap_or("").trim();
                let size = usize::from_str_radix(size, 16).map_err(|_| {
                    io::Error::new(io::ErrorKind::InvalidData, format!("bad chunk {line:?}"))
                })?;
                if size == 0 {
                    while !self.take_line()?.is_empty() {}
                    break;
                }
                self.fill_to(size + 2)?;
                r.body.extend_from_slice(&self.buf[..size]);
                self.buf.drain(..size + 2);
            }
        } else if let Some(len) = r.header("content-length") {
            let len: usize = len.parse().map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("content-length {len:?}"),
                )
            })?;
            self.fill_to(len)?;
            r.body = self.buf.drain(..len).collect();
        } else {
            while self.read_more()? > 0 {}
            r.body = std::mem::take(&mut self.buf);
        }
        Ok(r)
    }

    /// Sends a request and reads its response.
    pub fn roundtrip(&mut self, raw: &[u8]) -> io::Result<Response> {
        self.send(raw)?;
        self.read_response(raw.starts_with(b"HEAD "))
    }

    /// `GET path` with keep-alive.
    pub fn get(&mut self, path: &str) -> io::Result<Response> {
        let raw = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n", self.host);
        self.roundtrip(raw.as_bytes())
    }

    /// `POST /publish` with `message`, keep-alive.
    pub fn publish(&mut self, message: &str) -> io::Result<Response> {
        let raw = post_form_bytes(&self.host, "/publish", &form_message(message), &[]);
        self.roundtrip(&raw)
    }

    /// Waits up to `timeout` for the peer to close; bytes that arrive first
    /// are kept in the buffer (see `pending`). True if it closed (EOF or
    /// any error other than a timeout).
    pub fn wait_closed(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let closed = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break false;
            }
            let _ = self.stream.set_timeout(left);
            match self.read_more() {
                Ok(0) => break true,
                Ok(_) => continue,
                Err(e) if is_timeout(&e) => break false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break true,
            }
        };
        let _ = self.stream.set_timeout(IO_TIMEOUT);
        closed
    }

    /// Bytes received but not consumed by a response.
    pub fn pending(&self) -> &[u8] {
        &self.buf
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Writes `raw` on a fresh connection and reads one response.
pub fn try_request(addr: SocketAddr, raw: &[u8]) -> io::Result<Response> {
    let mut c = Conn::plain(addr)?;
    // The server may answer and close before reading all of a hostile
    // request: still try to read what it said.
    let sent = c.send(raw);
    match c.read_response(raw.starts_with(b"HEAD ")) {
        Ok(r) => Ok(r),
        Err(e) => Err(match sent {
            Err(s) => io::Error::new(s.kind(), format!("write: {s}; read: {e}")),
            Ok(()) => e,
        }),
    }
}

pub fn request(addr: SocketAddr, raw: &[u8]) -> Response {
    try_request(addr, raw).unwrap_or_else(|e| panic!("request to {addr}: {e}"))
}

pub fn get_bytes(addr: SocketAddr, path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").into_bytes()
}

pub fn get(addr: SocketAddr, path: &str) -> Response {
    request(addr, &get_bytes(addr, path))
}

/// A form POST request, with `extra` headers after the standard ones.
pub fn post_form_bytes(host: &str, path: &str, body: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    let mut raw = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (n, v) in extra {
        raw.push_str(&format!("{n}: {v}\r\n"));
    }
    raw.push_str("\r\n");
    raw.push_str(body);
    raw.into_bytes()
}

pub fn try_post_form(
    addr: SocketAddr,
    path: &str,
    body: &str,
    extra: &[(&str, &str)],
) -> io::Result<Response> {
    try_request(addr, &post_form_bytes(&addr.to_string(), path, body, extra))
}

pub fn post_form(addr: SocketAddr, path: &str, body: &str, extra: &[(&str, &str)]) -> Response {
    try_post_form(addr, path, body, extra).unwrap_or_else(|e| panic!("POST {path}: {e}"))
}

/// `message=<urlencoded>`.
pub fn form_message(message: &str) -> String {
    format!("message={}", urlencoding::encode(message))
}

// ---------------------------------------------------------------------------
// Server-Sent Events
// ---------------------------------------------------------------------------

/// One dispatched event, as a browser's EventSource would see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The last event ID at dispatch time (browsers carry it over).
    pub id: Option<String>,
    /// Whether this event's own block had an `id:` field.
    pub own_id: bool,
    /// `event:` field; `None` means the default type "message".
    pub event: Option<String>,
    pub data: String,
}

/// A `GET /listen` stream, parsed per the HTML standard's SSE rules.
pub struct SseClient<S: Stream> {
    pub conn: Conn<S>,
    pub response: Response,
    /// Last `retry:` value seen.
    pub retry: Option<u64>,
    /// Comment lines, without the leading ':'.
    pub comments: Vec<String>,
    pub closed: bool,
    queue: VecDeque<Event>,
    line: Vec<u8>,
    after_cr: bool,
    // Event block being built.
    data: String,
    has_data: bool,
    event: Option<String>,
    own_id: bool,
    last_id: Option<String>,
}

impl<S: Stream> SseClient<S> {
    /// Sends `GET path`, checks the 200 and content type, and waits (up to
    /// 3 s) for the `retry:` line so the listener is surely registered.
    pub fn open(mut conn: Conn<S>, path: &str, extra: &[(&str, &str)]) -> io::Result<Self> {
        let mut raw = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n",
            conn.host
        );
        for (n, v) in extra {
            raw.push_str(&format!("{n}: {v}\r\n"));
        }
        raw.push_str("\r\n");
        conn.send(raw.as_bytes())?;
        let response = conn.read_head()?;
        let bad = |m: String| Err(io::Error::new(io::ErrorKind::InvalidData, m));
        if response.status != 200 {
            return bad(format!(
                "GET {path}: status {}: {response:?}",
                response.status
            ));
        }
        if !response
            .header("content-type")
            .is_some_and(|v| v.starts_with("text/event-stream"))
        {
            return bad(format!("GET {path}: not an event stream: {response:?}"));
        }
        let mut sse = SseClient {
            conn,
            response,
            retry: None,
            comments: Vec::new(),
            closed: false,
            queue: VecDeque::new(),
            line: Vec::new(),
            after_cr: false,
            data: String::new(),
            has_data: false,
            event: None,
            own_id: false,
            last_id: None,
        };
        sse.wait_until(Duration::from_secs(3), |s| s.retry.is_some());
        Ok(sse)
    }

    /// Parses what is buffered, then reads until `done` or the timeout.
    /// Returns whether `done` held.
    pub fn wait_until(&mut self, timeout: Duration, mut done: impl FnMut(&Self) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            self.parse_buffered();
            if done(self) {
                return true;
            }
            if self.closed {
                return false;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            let _ = self.conn.stream.set_timeout(left);
            match self.conn.read_more() {
                Ok(0) => self.closed = true,
                Ok(_) => {}
                Err(e) if is_timeout(&e) => return done(self),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => self.closed = true,
            }
        }
    }

    /// Next event of any type, `presence` included.
    pub fn next_any_event(&mut self, timeout: Duration) -> Option<Event> {
        self.wait_until(timeout, |s| !s.queue.is_empty());
        self.queue.pop_front()
    }

    /// Next event that is not `presence` nor `backlog` (the earlier
    /// conversation a new stream is shown first).
    pub fn next_event(&mut self, timeout: Duration) -> Option<Event> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let e = self.next_any_event(left)?;
            if !matches!(e.event.as_deref(), Some("presence" | "backlog")) {
                return Some(e);
            }
        }
    }

    /// Next non-presence event, or a panic naming what was expected.
    pub fn expect_event(&mut self, what: &str) -> Event {
        match self.next_event(IO_TIMEOUT) {
            Some(e) => e,
            None => panic!(
                "no event ({what}) within {IO_TIMEOUT:?}; closed: {}, comments: {:?}",
                self.closed, self.comments
            ),
        }
    }

    fn parse_buffered(&mut self) {
        let bytes = std::mem::take(&mut self.conn.buf);
        for b in bytes {
            if self.after_cr {
                self.after_cr = false;
                if b == b'\n' {
                    continue;
                }
            }
            match b {
                b'\n' => self.end_line(),
                b'\r' => {
                    self.after_cr = true;
                    self.end_line();
                }
                _ => self.line.push(b),
            }
        }
    }

    fn end_line(&mut self) {
        let raw = std::mem::take(&mut self.line);
        let line = String::from_utf8(raw)
            .unwrap_or_else(|e| panic!("event stream line is not UTF-8: {e}"));
        if line.is_empty() {
            self.dispatch();
            return;
        }
        if let Some(comment) = line.strip_prefix(':') {
            self.comments.push(comment.to_string());
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line.as_str(), ""),
        };
        match field {
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "event" => self.event = Some(value.to_string()),
            "id" if !value.contains('\0') => {
                self.last_id = Some(value.to_string());
                self.own_id = true;
            }
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                self.retry = value.parse().ok();
            }
            _ => {}
        }
    }

    fn dispatch(&mut self) {
        let event = self.event.take();
        let own_id = std::mem::take(&mut self.own_id);
        if !std::mem::take(&mut self.has_data) {
            self.data.clear();
            return;
        }
        let data = std::mem::take(&mut self.data);
        self.queue.push_back(Event {
            id: self.last_id.clone(),
            own_id,
            event: event.filter(|e| !e.is_empty()),
            data,
        });
    }
}

// ---------------------------------------------------------------------------
// TLS
// ---------------------------------------------------------------------------

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client config that trusts any certificate; `versions` None means the
/// safe defaults (TLS 1.2 and 1.3).
pub fn tls_config(
    versions: Option<&[&'static rustls::SupportedProtocolVersion]>,
) -> Arc<ClientConfig> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider));
    let builder = match versions {
        Some(v) => builder.with_protocol_versions(v),
        None => builder.with_safe_default_protocol_versions(),
    }
    .expect("protocol versions");
    Arc::new(
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
            .with_no_client_auth(),
    )
}

/// Writes `raw` over a fresh TLS connection and reads one response.
pub fn tls_request(addr: SocketAddr, raw: &[u8]) -> io::Result<Response> {
    let mut c = Conn::tls(addr)?;
    c.roundtrip(raw)
}

// ---------------------------------------------------------------------------
// Clusters
// ---------------------------------------------------------------------------

/// Cluster ports are picked below Linux's default ephemeral range
/// (32768–60999), so an outgoing connection of another test can't take one
/// between the check below and the node binding it; ports handed out are
/// remembered so two tests of one process never get the same one.
const CLUSTER_PORTS: std::ops::Range<u16> = 20_000..32_000;

static PORTS_GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());

/// A port on 127.0.0.1 that was free a moment ago and that no other test of
/// this process has been given.
pub fn free_port() -> u16 {
    let mut given = PORTS_GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let span = (CLUSTER_PORTS.end - CLUSTER_PORTS.start) as u64;
    let seed = std::process::id() as u64 * 7919
        + std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() as u64)
            .unwrap_or(0);
    for i in 0..span {
        let port = CLUSTER_PORTS.start + ((seed + i * 101) % span) as u16;
        if given.contains(&port) {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.push(port);
            return port;
        }
    }
    // Fall back to what the kernel hands out.
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let port = l.local_addr().unwrap().port();
    given.push(port);
    port
}

/// A directory under the system temp dir, removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("watercooler-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {dir:?}: {e}"));
        TempDir(dir)
    }

    /// Writes `file` in the directory and returns its path as a string.
    pub fn write(&self, file: &str, text: &str) -> String {
        let path = self.0.join(file);
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {path:?}: {e}"));
        path.to_string_lossy().into_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One member of a test cluster: `name@127.0.0.1` and its cluster port.
#[derive(Debug, Clone)]
pub struct Member {
    pub name: String,
    pub port: u16,
}

impl Member {
    /// `short@127.0.0.1` on a fresh free port.
    pub fn new(short: &str) -> Member {
        Member {
            name: format!("{short}@127.0.0.1"),
            port: free_port(),
        }
    }

    pub fn entry(&self) -> String {
        format!("{}:{}", self.name, self.port)
    }

    pub fn cluster_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

/// The text of a sys.conf listing `members`.
pub fn conf_text(members: &[&Member], sync_ms: u64, cookie: &str) -> String {
    let nodes: Vec<String> = members.iter().map(|m| m.entry()).collect();
    format!(
        "# written by the cluster tests\nnodes = {}\nsync_nodes_timeout = {sync_ms}\ncookie = {cookie}\n",
        nodes.join(", ")
    )
}

/// What `GET /cluster` said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterInfo {
    pub node: String,
    pub nodes: Vec<String>,
    pub listeners: u64,
    pub local_listeners: u64,
    pub raw: String,
}

impl ClusterInfo {
    /// Parses the flat JSON of `GET /cluster` (strings without escapes:
    /// test node names are plain).
    pub fn parse(raw: &str) -> Option<ClusterInfo> {
        let string_after = |key: &str| -> Option<String> {
            let at = raw.find(&format!("\"{key}\":\""))? + key.len() + 4;
            let end = raw[at..].find('"')?;
            Some(raw[at..at + end].to_string())
        };
        let number_after = |key: &str| -> Option<u64> {
            let at = raw.find(&format!("\"{key}\":"))? + key.len() + 3;
            let digits: String = raw[at..]
                .chars()
                .take_while(|c| c.is_ascii_digit())
                .collect();
            digits.parse().ok()
        };
        let at = raw.find("\"nodes\":[")? + "\"nodes\":[".len();
        let end = raw[at..].find(']')?;
        let nodes = raw[at..at + end]
            .split(',')
            .map(|s| s.trim().trim_matches('"').to_string())
            .filter(|s| !s.is_empty())
            .collect();
        Some(ClusterInfo {
            node: string_after("node")?,
            nodes,
            listeners: number_after("listeners")?,
            local_listeners: number_after("local_listeners")?,
            raw: raw.to_string(),
        })
    }

    /// The linked peers, sorted.
    pub fn peers(&self) -> Vec<String> {
        let mut p: Vec<String> = self.nodes.iter().skip(1).cloned().collect();
        p.sort();
        p
    }
}

impl Node {
    /// Starts cluster member `name` with the sys.conf at `conf`, plus `extra`.
    pub fn start_member(name: &str, conf: &str, extra: &[&str]) -> Node {
        let mut args = vec!["--name", name, "--config", conf];
        args.extend_from_slice(extra);
        Node::start(&args)
    }

    /// SIGKILL and reap, leaving the `Node` to be `restart`ed.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Kills this node (SIGKILL) if it still runs and starts it again with
    /// the same arguments; the ports given as 0 are new ones.
    pub fn restart(&mut self) {
        self.kill();
        let args: Vec<String> = self.args.clone();
        let refs: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        *self = Node::start(&refs);
    }

    /// Sends `signal` (e.g. `libc::SIGSTOP`) to the node's PID.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on the PID of our own, not yet reaped, child.
        let rc = unsafe { libc::kill(self.pid() as libc::pid_t, signal) };
        assert_eq!(rc, 0, "kill({}, {signal}) failed", self.pid());
    }

    /// `GET /cluster` once (it may be queued until the node serves HTTP).
    pub fn try_cluster_info(&self) -> io::Result<ClusterInfo> {
        let r = try_request(self.http, &get_bytes(self.http, "/cluster"))?;
        if r.status != 200 {
            return Err(io::Error::other(format!("GET /cluster: {r:?}")));
        }
        ClusterInfo::parse(&r.text())
            .ok_or_else(|| io::Error::other(format!("GET /cluster: bad JSON {:?}", r.text())))
    }

    pub fn cluster_info(&self) -> ClusterInfo {
        self.try_cluster_info()
            .unwrap_or_else(|e| self.fail("GET /cluster", e))
    }

    /// Polls `GET /cluster` until `done` holds; panics with `what`, the last
    /// answer and the node's stderr at the timeout.
    pub fn wait_cluster(
        &self,
        what: &str,
        timeout: Duration,
        mut done: impl FnMut(&ClusterInfo) -> bool,
    ) -> ClusterInfo {
        let deadline = Instant::now() + timeout;
        let mut last;
        loop {
            match self.try_cluster_info() {
                Ok(info) if done(&info) => return info,
                Ok(info) => last = info.raw,
                Err(e) => last = e.to_string(),
            }
            if Instant::now() >= deadline {
                self.fail(&format!("{what} within {timeout:?}"), last);
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until `/cluster` lists exactly `peers` (any order) as linked.
    pub fn wait_peers(&self, peers: &[&Member], timeout: Duration) -> ClusterInfo {
        let mut want: Vec<String> = peers.iter().map(|m| m.name.clone()).collect();
        want.sort();
        self.wait_cluster(&format!("peers {want:?}"), timeout, |i| i.peers() == want)
    }

    /// Every stderr line so far.
    pub fn log_lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// How many stderr lines contain `needle`.
    pub fn log_count(&self, needle: &str) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// Waits until a stderr line satisfies `pred`; returns it.
    pub fn wait_log_match(
        &self,
        timeout: Duration,
        mut pred: impl FnMut(&str) -> bool,
    ) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self.log.lock().unwrap().iter().find(|l| pred(l)) {
                return Some(l.clone());
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until a stderr line contains `needle`.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        self.wait_log_match(timeout, |l| l.contains(needle))
            .is_some()
    }
}

impl<S: Stream> SseClient<S> {
    /// Collects non-presence events until `n` have come or `timeout` passes.
    pub fn collect(&mut self, n: usize, timeout: Duration) -> Vec<Event> {
        let deadline = Instant::now() + timeout;
        let mut got = Vec::new();
        while got.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match self.next_event(left) {
                Some(e) => got.push(e),
                None => break,
            }
        }
        got
    }
}

impl Node {
    /// Waits up to `timeout` for the process to exit by itself (after a
    /// signal); its status, or `None` if it still runs then.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(5)),
                _ => return None,
            }
        }
    }
}

/// Each text is `ORIGIN-I`: asserts that for each `(ORIGIN, RANGE)` of
/// `want` the texts hold exactly RANGE, each I once and in increasing order,
/// and nothing from any other origin.
pub fn assert_origins_in_order(
    what: &str,
    texts: &[&str],
    want: &[(&str, std::ops::Range<usize>)],
) {
    let mut per_origin: std::collections::HashMap<&str, Vec<usize>> = Default::default();
    for t in texts {
        let (origin, i) = t
            .rsplit_once('-')
            .and_then(|(o, i)| Some((o, i.parse::<usize>().ok()?)))
            .unwrap_or_else(|| panic!("{what}: unexpected message {t:?}"));
        per_origin.entry(origin).or_default().push(i);
    }
    for (origin, range) in want {
        let got = per_origin.remove(origin).unwrap_or_default();
        let expected: Vec<usize> = range.clone().collect();
        if got != expected {
            let distinct: std::collections::HashSet<&usize> = got.iter().collect();
            let missing = expected.iter().filter(|i| !got.contains(i)).count();
            panic!(
                "{what}: messages of {origin} (exactly once, in order): {} got, {} expected, \
                 {} duplicates, {missing} missing; got {:?}",
                got.len(),
                expected.len(),
                got.len() - distinct.len(),
                &got[..got.len().min(60)],
            );
        }
    }
    assert!(
        per_origin.is_empty(),
        "{what}: messages from unexpected origins {:?}",
        per_origin.keys().collect::<Vec<_>>()
    );
}

/// Asserts every event carries its own id and no id comes twice.
pub fn assert_unique_ids(what: &str, events: &[Event]) {
    let mut ids = std::collections::HashSet::new();
    for e in events {
        let id =
            e.id.clone()
                .unwrap_or_else(|| panic!("{what}: no id: {e:?}"));
        assert!(e.own_id, "{what}: event without its own id: {e:?}");
        assert!(ids.insert(id.clone()), "{what}: id {id} twice");
    }
}
