//! The connection fed bytes in memory: a test client builds frames with
//! the frame encoders and `hpack::encode`, and every frame we write is
//! decoded back and compared. Each test names the RFC 9113 section (or the
//! defence) it checks.

use std::io::IoSlice;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::*;
use crate::conn::output::{Chunk, Output, MAX_SLICES};
use crate::h2::frame::{flag, kind, ErrorCode::*, PREFACE};
use crate::h2::limits::{MAX_BLOCK_SLACK, MAX_CONTINUATIONS};

/// A frame the connection wrote, owned, for assertions.
#[derive(Clone, Debug, PartialEq, Eq)]
enum F {
    Settings(bool, Vec<(u16, u32)>),
    Ping(bool, [u8; 8]),
    GoAway(u32, ErrorCode),
    Rst(u32, ErrorCode),
    Window(u32, u32),
    /// HEADERS (joined with its CONTINUATIONs), decoded; END_STREAM.
    Headers(u32, Vec<(String, String)>, bool),
    Data(u32, Vec<u8>, bool),
}

fn flat(o: &Output) -> Vec<u8> {
    let mut all = Vec::new();
    let mut s = [IoSlice::new(&[]); MAX_SLICES];
    let n = o.slices(&mut s);
    for sl in &s[..n] {
        all.extend_from_slice(sl);
    }
    all
}

/// Decodes everything we wrote. HEADERS blocks are stateless literals, so
/// a fresh decoder reads each.
fn parse(mut buf: &[u8]) -> Vec<F> {
    let mut frames = Vec::new();
    let mut block: Option<(u32, Vec<u8>, bool)> = None;
    while !buf.is_empty() {
        let (f, n) = frame::decode(buf, frame::MAX_MAX_FRAME_SIZE)
            .unwrap()
            .expect("whole frames");
        buf = &buf[n..];
        let done = match f {
            Frame::Settings { ack, params } => F::Settings(ack, params.iter().collect()),
            Frame::Ping { ack, data } => F::Ping(ack, data),
            Frame::GoAway {
                last_stream, code, ..
            } => F::GoAway(last_stream, code),
            Frame::RstStream { stream, code } => F::Rst(stream, code),
            Frame::WindowUpdate { stream, increment } => F::Window(stream, increment),
            Frame::Data {
                stream,
                end_stream,
                data,
                ..
            } => F::Data(stream, data.to_vec(), end_stream),
            Frame::Headers {
                stream,
                end_stream,
                end_headers,
                block: b,
                ..
            } => {
                block = Some((stream, b.to_vec(), end_stream));
                if !end_headers {
                    continue;
                }
                headers_frame(block.take().unwrap())
            }
            Frame::Continuation {
                end_headers,
                block: b,
                ..
            } => {
                block.as_mut().unwrap().1.extend_from_slice(b);
                if !end_headers {
                    continue;
                }
                headers_frame(block.take().unwrap())
            }
            f => panic!("unexpected {f:?}"),
        };
        frames.push(done);
    }
    frames
}

fn headers_frame((stream, block, end): (u32, Vec<u8>, bool)) -> F {
    let mut fields = Vec::new();
    hpack::Decoder::new(4096)
        .decode(&block, usize::MAX, &mut fields)
        .unwrap();
    let fields = fields
        .into_iter()
        .map(|(n, v)| (String::from_utf8(n).unwrap(), String::from_utf8(v).unwrap()))
        .collect();
    F::Headers(stream, fields, end)
}

fn raw(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = frame::header(payload.len(), kind, flags, stream).to_vec();
    v.extend_from_slice(payload);
    v
}

fn block(fields: &[(&str, &str)]) -> Vec<u8> {
    let f: Vec<(&[u8], &[u8])> = fields
        .iter()
        .map(|(n, v)| (n.as_bytes(), v.as_bytes()))
        .collect();
    let mut b = Vec::new();
    hpack::encode(&f, &mut b);
    b
}

fn headers(stream: u32, fields: &[(&str, &str)], end_stream: bool) -> Vec<u8> {
    let mut v = Vec::new();
    frame::write_headers(&mut v, stream, &block(fields), end_stream, 16_384);
    v
}

const GET: [(&str, &str); 4] = [
    (":method", "GET"),
    (":scheme", "https"),
    (":path", "/"),
    (":authority", "example.org"),
];

fn get(stream: u32) -> Vec<u8> {
    headers(stream, &GET, true)
}

fn post(stream: u32, extra: &[(&str, &str)]) -> Vec<u8> {
    let mut f = vec![
        (":method", "POST"),
        (":scheme", "https"),
        (":path", "/publish"),
    ];
    f.extend_from_slice(extra);
    headers(stream, &f, false)
}

fn data(stream: u32, bytes: &[u8], end: bool) -> Vec<u8> {
    let mut v = Vec::new();
    frame::write_data(&mut v, stream, bytes, end);
    v
}

fn settings(params: &[(u16, u32)]) -> Vec<u8> {
    let mut v = Vec::new();
    frame::write_settings(&mut v, params);
    v
}

fn ping(d: [u8; 8]) -> Vec<u8> {
    let mut v = Vec::new();
    frame::write_ping(&mut v, false, d);
    v
}

fn rst(stream: u32, code: ErrorCode) -> Vec<u8> {
    let mut v = Vec::new();
    frame::write_rst_stream(&mut v, stream, code);
    v
}

fn window(stream: u32, inc: u32) -> Vec<u8> {
    let mut v = Vec::new();
    frame::write_window_update(&mut v, stream, inc);
    v
}

fn small() -> Config {
    Config {
        max_concurrent_streams: 4,
        max_resets: 5,
        max_control_frames: 5,
        ..Config::default()
    }
}

fn shared(s: &str) -> Chunk {
    Chunk::Shared(Rc::from(s.as_bytes()))
}

/// The client end: keeps unconsumed input as a socket glue would.
struct Peer {
    conn: Connection,
    now: Instant,
    input: Vec<u8>,
}

impl Peer {
    fn new(cfg: Config) -> Peer {
        let now = Instant::now();
        Peer {
            conn: Connection::new(cfg, now),
            now,
            input: Vec::new(),
        }
    }

    /// Past the preface and SETTINGS exchange, output drained.
    fn open(cfg: Config) -> Peer {
        let mut p = Peer::new(cfg);
        let mut hello = PREFACE.to_vec();
        hello.extend(settings(&[]));
        assert_eq!(p.feed(&hello), []);
        let out = p.out();
        assert!(
            matches!(out.first(), Some(F::Settings(false, _))),
            "{out:?}"
        );
        assert_eq!(out.last(), Some(&F::Settings(true, vec![])));
        p
    }

    fn feed(&mut self, bytes: &[u8]) -> Vec<Event> {
        self.input.extend_from_slice(bytes);
        let mut events = Vec::new();
        let n = self.conn.receive(&self.input, self.now, &mut events);
        self.input.drain(..n);
        assert!(self.input.len() <= self.conn.input_limit());
        events
    }

    fn out_max(&mut self, max: usize) -> Vec<F> {
        let mut o = Output::default();
        self.conn.write_to(&mut o, max);
        parse(&flat(&o))
    }

    fn out(&mut self) -> Vec<F> {
        self.out_max(usize::MAX)
    }

    fn timer(&mut self, after: Duration) -> Vec<Event> {
        let mut events = Vec::new();
        self.conn.on_timer(self.now + after, &mut events);
        events
    }

    /// A GET on `stream` answered with 200 and an open SSE body.
    fn listen(&mut self, stream: u32) {
        let ev = self.feed(&get(stream));
        assert!(
            matches!(ev[..], [Event::Request { stream: s, .. }] if s == stream),
            "{ev:?}"
        );
        assert!(self.conn.respond(
            stream,
            200,
            &[("content-type", "text/event-stream")],
            None,
            false
        ));
    }
}

fn closed(ev: &[Event]) -> bool {
    matches!(ev.last(), Some(Event::Closed { .. }))
}

fn goaway(frames: &[F]) -> Option<ErrorCode> {
    frames.iter().find_map(|f| match f {
        F::GoAway(_, c) => Some(*c),
        _ => None,
    })
}

fn status(code: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v = vec![(":status".to_string(), code.to_string())];
    v.extend(extra.iter().map(|(n, v)| (n.to_string(), v.to_string())));
    v
}

// ---- §3.4 preface and SETTINGS ----

/// §3.4: our SETTINGS are the first thing we send, before any input.
#[test]
fn our_settings_come_first() {
    let mut p = Peer::new(Config::default());
    assert!(p.conn.wants_write());
    assert_eq!(
        p.out(),
        [
            F::Settings(false, vec![(2, 0), (3, 256), (4, 65_535), (6, 16 << 10)]),
            F::Window(0, (1 << 20) - 65_535),
        ]
    );
}

/// §3.4: the preface split at every point gives the same result.
#[test]
fn preface_split_anywhere() {
    let mut all = PREFACE.to_vec();
    all.extend(settings(&[]));
    all.extend(get(1));
    for cut in 0..all.len() {
        let mut p = Peer::new(Config::default());
        let mut ev = p.feed(&all[..cut]);
        ev.extend(p.feed(&all[cut..]));
        assert!(
            matches!(ev[..], [Event::Request { stream: 1, .. }]),
            "cut {cut}: {ev:?}"
        );
    }
}

/// A whole request fed one byte at a time.
#[test]
fn request_fed_one_byte_at_a_time() {
    let mut all = PREFACE.to_vec();
    all.extend(settings(&[]));
    all.extend(post(1, &[("content-length", "5")]));
    all.extend(data(1, b"hello", true));
    let mut p = Peer::new(Config::default());
    let mut ev = Vec::new();
    for b in &all {
        ev.extend(p.feed(std::slice::from_ref(b)));
    }
    assert!(
        matches!(&ev[..], [Event::Request { stream: 1, body, .. }] if body == b"hello"),
        "{ev:?}"
    );
}

/// §3.4: an invalid preface (here HTTP/1.1) is a PROTOCOL_ERROR.
#[test]
fn invalid_preface() {
    let mut p = Peer::new(Config::default());
    let ev = p.feed(b"GET / HTTP/1.1\r\n");
    assert!(closed(&ev));
    assert_eq!(goaway(&p.out()), Some(ProtocolError));
    assert!(p.conn.is_closed());
    // Input after the error is taken and ignored.
    assert_eq!(p.feed(&get(1)), []);
}

/// §3.4: the client's preface ends with SETTINGS.
#[test]
fn first_frame_must_be_settings() {
    let mut p = Peer::new(Config::default());
    let mut hello = PREFACE.to_vec();
    hello.extend(ping(*b"12345678"));
    assert!(closed(&p.feed(&hello)));
    assert_eq!(goaway(&p.out()), Some(ProtocolError));
}

/// §6.5.3: SETTINGS are acknowledged after being applied; an ACK from the
/// client for ours is not answered; unknown settings are ignored.
#[test]
fn settings_ack() {
    let mut p = Peer::open(Config::default());
    p.feed(&settings(&[
        (0x99, 1),
        (frame::setting::MAX_FRAME_SIZE, 20_000),
    ]));
    assert_eq!(p.out(), [F::Settings(true, vec![])]);
    assert_eq!(p.conn.peer_max_frame, 20_000);
    p.feed(&raw(kind::SETTINGS, flag::ACK, 0, &[]));
    assert_eq!(p.out(), []);
}

// ---- requests and responses (§8) ----

/// §8.3: a GET reaches the service with its fields; the response is
/// HEADERS (`:status` first, names lowercased, connection fields dropped,
/// content-length added) then DATA with END_STREAM, and the stream is gone.
#[test]
fn get_and_response() {
    let mut p = Peer::open(Config::default());
    let mut f = GET.to_vec();
    f.extend([
        ("accept", "text/html"),
        ("cookie", "a=1"),
        ("cookie", "b=2"),
    ]);
    let ev = p.feed(&headers(1, &f, true));
    assert_eq!(
        ev,
        [Event::Request {
            stream: 1,
            method: "GET".into(),
            path: "/".into(),
            authority: Some("example.org".into()),
            scheme: "https".into(),
            headers: vec![
                ("accept".into(), "text/html".into()),
                ("cookie".into(), "a=1; b=2".into())
            ],
            body: vec![],
        }]
    );
    let page = Chunk::Owned(b"<p>hi</p>".to_vec());
    let hs = [
        ("Content-Type", "text/html"),
        ("Connection", "close"),
        ("transfer-encoding", "chunked"),
    ];
    assert!(p.conn.respond(1, 200, &hs, Some(page), true));
    assert!(!p.conn.respond(1, 200, &[], None, true), "answered twice");
    assert_eq!(
        p.out(),
        [
            F::Headers(
                1,
                status(
                    "200",
                    &[("content-type", "text/html"), ("content-length", "9")]
                ),
                false
            ),
            F::Data(1, b"<p>hi</p>".to_vec(), true),
        ]
    );
    assert_eq!(p.conn.stream_count(), 0);
}

/// §8.1: a response without a body ends on its HEADERS.
#[test]
fn response_without_body() {
    let mut p = Peer::open(Config::default());
    p.feed(&get(1));
    assert!(p.conn.respond(1, 303, &[("location", "/")], None, true));
    assert_eq!(
        p.out(),
        [F::Headers(1, status("303", &[("location", "/")]), true)]
    );
    assert_eq!(p.conn.stream_count(), 0);
}

/// §8.1: a POST body split over DATA frames arrives whole, once.
#[test]
fn post_body_over_data_frames() {
    let mut p = Peer::open(Config::default());
    assert_eq!(p.feed(&post(1, &[("content-length", "11")])), []);
    assert_eq!(p.feed(&data(1, b"hello ", false)), []);
    let ev = p.feed(&data(1, b"world", true));
    assert!(
        matches!(&ev[..], [Event::Request { stream: 1, method, body, .. }]
        if method == "POST" && body == b"hello world"),
        "{ev:?}"
    );
}

/// §8.1: trailers end the request; trailers without END_STREAM are
/// malformed.
#[test]
fn trailers() {
    let mut p = Peer::open(Config::default());
    p.feed(&post(1, &[]));
    p.feed(&data(1, b"x", false));
    let ev = p.feed(&headers(1, &[("x-sum", "1")], true));
    assert!(matches!(&ev[..], [Event::Request { stream: 1, body, .. }] if body == b"x"));
    p.feed(&post(3, &[]));
    let ev = p.feed(&headers(3, &[("x-sum", "1")], false));
    assert_eq!(
        ev,
        [Event::StreamClosed {
            stream: 3,
            reason: Reason::Error(ProtocolError)
        }]
    );
    assert!(p.out().contains(&F::Rst(3, ProtocolError)));
}

/// §8.1.1: content-length must match the DATA; malformed requests are
/// reset with PROTOCOL_ERROR and never reach the service.
#[test]
fn content_length_must_match() {
    let mut p = Peer::open(Config::default());
    p.feed(&post(1, &[("content-length", "3")]));
    let ev = p.feed(&data(1, b"ab", true));
    assert_eq!(
        ev,
        [Event::StreamClosed {
            stream: 1,
            reason: Reason::Error(ProtocolError)
        }]
    );
    p.feed(&post(3, &[("content-length", "1")]));
    let ev = p.feed(&data(3, b"ab", false));
    assert_eq!(
        ev,
        [Event::StreamClosed {
            stream: 3,
            reason: Reason::Error(ProtocolError)
        }]
    );
    let mut f = GET.to_vec();
    f.push(("content-length", "2"));
    let ev = p.feed(&headers(5, &f, true));
    assert_eq!(
        ev,
        [Event::StreamClosed {
            stream: 5,
            reason: Reason::Error(ProtocolError)
        }]
    );
    assert_eq!(
        p.out(),
        [
            F::Rst(1, ProtocolError),
            F::Rst(3, ProtocolError),
            F::Rst(5, ProtocolError)
        ]
    );
}

/// §8.2, §8.3: malformed heads are reset, the connection lives on.
#[test]
fn malformed_requests_are_reset() {
    let mut p = Peer::open(Config {
        max_resets: 100,
        ..Config::default()
    });
    let bad: [&[(&str, &str)]; 4] = [
        &[(":method", "GET"), (":scheme", "https")],
        &[
            (":method", "GET"),
            (":scheme", "https"),
            (":path", "/"),
            ("UPPER", "x"),
        ],
        &[
            (":method", "GET"),
            (":scheme", "https"),
            (":path", "/"),
            ("connection", "close"),
        ],
        &[
            (":method", "GET"),
            (":scheme", "https"),
            (":path", "/"),
            ("te", "gzip"),
        ],
    ];
    for (i, f) in bad.iter().enumerate() {
        let id = 1 + 2 * i as u32;
        let ev = p.feed(&headers(id, f, true));
        assert_eq!(
            ev,
            [Event::StreamClosed {
                stream: id,
                reason: Reason::Error(ProtocolError)
            }]
        );
    }
    assert!(matches!(
        p.feed(&get(9))[..],
        [Event::Request { stream: 9, .. }]
    ));
}

/// §8.5: CONNECT is refused (we tunnel nothing): the service answers 405.
#[test]
fn connect_is_refused() {
    let mut p = Peer::open(Config::default());
    let ev = p.feed(&headers(
        1,
        &[(":method", "CONNECT"), (":authority", "a:443")],
        false,
    ));
    assert_eq!(
        ev,
        [Event::Refused {
            stream: 1,
            status: 405
        }]
    );
    assert!(p.conn.respond(1, 405, &[], None, true));
    // Answered before the client ended its side: RST_STREAM NO_ERROR (§8.1).
    assert_eq!(
        p.out(),
        [F::Headers(1, status("405", &[]), true), F::Rst(1, NoError)]
    );
    assert_eq!(p.conn.stream_count(), 0);
}

/// Request body at `max_request_body` passes; one byte more is refused
/// with 413, the rest of its DATA dropped, the service answers.
#[test]
fn request_body_limit() {
    let cfg = Config {
        max_request_body: 10,
        ..Config::default()
    };
    let mut p = Peer::open(cfg);
    p.feed(&post(1, &[]));
    let ev = p.feed(&data(1, b"0123456789", true));
    assert!(matches!(&ev[..], [Event::Request { body, .. }] if body.len() == 10));
    p.feed(&post(3, &[]));
    assert_eq!(p.feed(&data(3, b"0123456789", false)), []);
    assert_eq!(
        p.feed(&data(3, b"x", false)),
        [Event::Refused {
            stream: 3,
            status: 413
        }]
    );
    assert_eq!(p.feed(&data(3, b"more", true)), []);
    // Announced too long: refused at once.
    assert_eq!(
        p.feed(&post(5, &[("content-length", "11")])),
        [Event::Refused {
            stream: 5,
            status: 413
        }]
    );
    assert!(p.conn.respond(3, 413, &[], None, true));
    assert!(p.conn.respond(5, 413, &[], None, true));
    let out = p.out();
    assert!(out.contains(&F::Headers(3, status("413", &[]), true)));
    assert!(out.contains(&F::Rst(5, NoError)), "{out:?}");
}

/// RFC 9113 §6.5.2 / RFC 7541 §4.1: a header list at
/// `max_header_list_size` passes, one byte more is refused with 431.
#[test]
fn header_list_limit() {
    // name + value + 32 each: :method GET, :scheme https, :path /, x.
    let base = (7 + 3 + 32) + (7 + 5 + 32) + (5 + 1 + 32) + (1 + 32);
    let limit = 400;
    let cfg = Config {
        max_header_list_size: limit,
        ..Config::default()
    };
    let mut p = Peer::open(cfg);
    let fill = "v".repeat(limit as usize - base);
    let at = [
        (":method", "GET"),
        (":scheme", "https"),
        (":path", "/"),
        ("x", fill.as_str()),
    ];
    assert!(matches!(
        p.feed(&headers(1, &at, true))[..],
        [Event::Request { .. }]
    ));
    let over_fill = format!("{fill}v");
    let over = [
        (":method", "GET"),
        (":scheme", "https"),
        (":path", "/"),
        ("x", over_fill.as_str()),
    ];
    assert_eq!(
        p.feed(&headers(3, &over, true)),
        [Event::Refused {
            stream: 3,
            status: 431
        }]
    );
    assert!(p.conn.respond(3, 431, &[], None, true));
    assert_eq!(p.out(), [F::Headers(3, status("431", &[]), true)]);
}

// ---- §5.1 stream states ----

/// §5.1.1: client streams are odd and increase (a lower id is a
/// PROTOCOL_ERROR); §5.1: a HEADERS on the newest stream once closed is a
/// connection error STREAM_CLOSED (we keep no history of older ones).
#[test]
fn stream_ids() {
    let mut p = Peer::open(Config::default());
    assert!(closed(&p.feed(&get(2))));
    assert_eq!(goaway(&p.out()), Some(ProtocolError));

    let mut p = Peer::open(Config::default());
    p.feed(&get(5));
    assert!(closed(&p.feed(&get(3))));
    assert_eq!(goaway(&p.out()), Some(ProtocolError));

    let mut p = Peer::open(Config::default());
    p.feed(&get(1));
    p.conn.respond(1, 204, &[], None, true);
    p.out();
    assert!(closed(&p.feed(&get(1))));
    assert_eq!(p.out(), [F::GoAway(1, StreamClosed)]);

    let mut p = Peer::open(Config::default());
    p.feed(&post(1, &[]));
    p.feed(&rst(1, Cancel));
    assert!(closed(&p.feed(&get(1))));
    assert_eq!(p.out(), [F::GoAway(1, StreamClosed)]);
}

/// §5.1: idle streams take only HEADERS and PRIORITY.
#[test]
fn frames_on_idle_streams() {
    for f in [data(1, b"x", false), rst(1, Cancel), window(1, 1)] {
        let mut p = Peer::open(Config::default());
        assert!(closed(&p.feed(&f)));
        assert_eq!(goaway(&p.out()), Some(ProtocolError));
    }
    let mut p = Peer::open(Config::default());
    assert_eq!(p.feed(&raw(kind::PRIORITY, 0, 7, &[0, 0, 0, 1, 16])), []);
    // PRIORITY does not open the stream: 3 is still usable.
    assert!(matches!(p.feed(&get(3))[..], [Event::Request { .. }]));
}

/// §5.1 half-closed (remote): DATA or HEADERS after END_STREAM is a stream
/// error STREAM_CLOSED; §5.1 closed: DATA on a closed stream too.
#[test]
fn frames_after_end_stream() {
    let mut p = Peer::open(Config::default());
    p.listen(1);
    let ev = p.feed(&data(1, b"x", false));
    assert_eq!(
        ev,
        [Event::StreamClosed {
            stream: 1,
            reason: Reason::Error(StreamClosed)
        }]
    );
    p.listen(3);
    let ev = p.feed(&get(3));
    assert_eq!(
        ev,
        [Event::StreamClosed {
            stream: 3,
            reason: Reason::Error(StreamClosed)
        }]
    );
    let ev = p.feed(&data(3, b"x", true));
    assert_eq!(
        ev,
        [Event::StreamClosed {
            stream: 3,
            reason: Reason::Error(StreamClosed)
        }]
    );
    let out = p.out();
    assert_eq!(
        out.iter()
            .filter(|f| matches!(f, F::Rst(_, StreamClosed)))
            .count(),
        3,
        "{out:?}"
    );
    // WINDOW_UPDATE and RST_STREAM on a closed stream are ignored.
    assert_eq!(p.feed(&window(1, 5)), []);
    assert_eq!(p.feed(&rst(1, Cancel)), []);
    assert_eq!(goaway(&p.out()), None);
}

/// §5.1: nothing of a closed stream is kept, whatever the client does.
#[test]
fn closed_streams_leave_nothing() {
    let mut p = Peer::open(Config {
        max_resets: 10_000,
        ..Config::default()
    });
    for i in 0..2000u32 {
        let id = 1 + 2 * i;
        p.feed(&get(id));
        match i % 3 {
            0 => assert!(p.conn.respond(id, 200, &[], Some(shared("x")), true)),
            1 => {
                p.feed(&rst(id, Cancel));
            }
            _ => p.conn.reset(id, Cancel),
        }
        p.out();
    }
    assert_eq!(p.conn.stream_count(), 0);
    assert!(p.conn.ring.is_empty());
    assert_eq!(p.conn.highest, 3999);
}

/// Stream id exhaustion: the last odd id (2^31 - 1) works, and nothing
/// can follow it.
#[test]
fn last_stream_id() {
    let mut p = Peer::open(Config::default());
    assert!(matches!(
        p.feed(&get(0x7fff_ffff))[..],
        [Event::Request {
            stream: 0x7fff_ffff,
            ..
        }]
    ));
    // With the reserved bit set the id reads as 1: below the last.
    assert!(closed(&p.feed(&get(0x8000_0001))));
    assert_eq!(p.out(), [F::GoAway(0x7fff_ffff, ProtocolError)]);
}

/// §5.1.2: a stream over SETTINGS_MAX_CONCURRENT_STREAMS is refused
/// (REFUSED_STREAM, retried by the client); at the limit it is not.
#[test]
fn concurrent_stream_limit() {
    let mut p = Peer::open(small());
    for id in [1, 3, 5, 7] {
        p.listen(id);
    }
    let ev = p.feed(&get(9));
    assert_eq!(
        ev,
        [Event::StreamClosed {
            stream: 9,
            reason: Reason::Refused
        }]
    );
    assert!(p.out().contains(&F::Rst(9, RefusedStream)));
    p.conn.end_stream(1);
    p.out();
    assert!(matches!(
        p.feed(&get(11))[..],
        [Event::Request { stream: 11, .. }]
    ));
}

// ---- §6.10 CONTINUATION ----

/// §6.10: a block split over CONTINUATION frames is one request; anything
/// else between them is a PROTOCOL_ERROR.
#[test]
fn continuation() {
    let b = block(&GET);
    let (a, rest) = b.split_at(3);
    let mut p = Peer::open(Config::default());
    assert_eq!(p.feed(&raw(kind::HEADERS, flag::END_STREAM, 1, a)), []);
    let ev = p.feed(&raw(kind::CONTINUATION, flag::END_HEADERS, 1, rest));
    assert!(matches!(ev[..], [Event::Request { stream: 1, .. }]));

    let interlopers = [
        ping(*b"abcdefgh"),
        raw(kind::CONTINUATION, flag::END_HEADERS, 5, rest),
        get(5),
    ];
    for f in interlopers {
        let mut p = Peer::open(Config::default());
        p.feed(&raw(kind::HEADERS, 0, 1, a));
        assert!(closed(&p.feed(&f)));
        assert_eq!(goaway(&p.out()), Some(ProtocolError));
    }
    let mut p = Peer::open(Config::default());
    assert!(closed(&p.feed(&raw(
        kind::CONTINUATION,
        flag::END_HEADERS,
        1,
        &b
    ))));
}

/// CONTINUATION flood: a block of `max_header_list_size + MAX_BLOCK_SLACK`
/// bytes is buffered, one more byte is refused (ENHANCE_YOUR_CALM) before
/// it is; `MAX_CONTINUATIONS` frames pass, one more is refused.
#[test]
fn continuation_flood() {
    let cfg = Config {
        max_header_list_size: 1000,
        ..Config::default()
    };
    let max = 1000 + MAX_BLOCK_SLACK as usize;
    // A valid block padded out with table size updates? Simpler: a literal
    // whose value fills the block exactly.
    let fill = |n: usize| {
        let mut f = GET.to_vec();
        let v = "v".repeat(n);
        f.push(("x", Box::leak(v.into_boxed_str())));
        block(&f)
    };
    let mut n = max - 200;
    while fill(n).len() < max {
        n += 1;
    }
    let at = fill(n);
    assert_eq!(at.len(), max);
    for (b, ok) in [(at.clone(), true), (fill(n + 1), false)] {
        let mut p = Peer::open(cfg.clone());
        let (a, rest) = b.split_at(100);
        p.feed(&raw(kind::HEADERS, flag::END_STREAM, 1, a));
        let ev = p.feed(&raw(kind::CONTINUATION, flag::END_HEADERS, 1, rest));
        if ok {
            assert_eq!(
                ev,
                [Event::Refused {
                    stream: 1,
                    status: 431
                }]
            );
        } else {
            assert!(closed(&ev));
            assert_eq!(goaway(&p.out()), Some(EnhanceYourCalm));
        }
        assert!(p.conn.block.is_none());
    }
    for (count, ok) in [(MAX_CONTINUATIONS, true), (MAX_CONTINUATIONS + 1, false)] {
        let mut p = Peer::open(Config::default());
        let b = block(&GET);
        p.feed(&raw(kind::HEADERS, flag::END_STREAM, 1, &b));
        let mut ev = Vec::new();
        for _ in 1..count {
            ev.extend(p.feed(&raw(kind::CONTINUATION, 0, 1, &[])));
        }
        ev.extend(p.feed(&raw(kind::CONTINUATION, flag::END_HEADERS, 1, &[])));
        assert_eq!(closed(&ev), !ok, "{count}: {ev:?}");
    }
}

// ---- flow control (§5.2, §6.9) ----

/// §6.9.1: DATA up to the stream window passes, one byte more is a stream
/// FLOW_CONTROL_ERROR; past the connection window a connection error.
#[test]
fn receive_windows() {
    let cfg = Config {
        initial_window_size: 100,
        max_request_body: 1000,
        ..Config::default()
    };
    let mut p = Peer::open(cfg);
    p.feed(&raw(kind::SETTINGS, flag::ACK, 0, &[]));
    p.feed(&post(1, &[]));
    // Padding counts (§6.1): 1 + 89 + 10 = 100 bytes of window.
    let mut padded = vec![10];
    padded.extend([b'a'; 89]);
    padded.extend([0; 10]);
    assert_eq!(p.feed(&raw(kind::DATA, flag::PADDED, 1, &padded)), []);
    // The window was used up, and granted back as the body was taken.
    assert_eq!(p.out(), [F::Window(1, 100)]);
    p.conn.streams.get_mut(&1).unwrap().recv_window = 0;
    let ev = p.feed(&data(1, b"x", false));
    assert_eq!(
        ev,
        [Event::StreamClosed {
            stream: 1,
            reason: Reason::Error(FlowControlError)
        }]
    );

    let cfg = Config {
        initial_window_size: 1 << 20,
        connection_window: 65_535,
        max_request_body: 1 << 20,
        ..Config::default()
    };
    let mut p = Peer::open(cfg);
    p.feed(&post(1, &[]));
    let chunk = vec![0; 16_383];
    for _ in 0..4 {
        p.feed(&data(1, &chunk, false));
    }
    // The connection granted back what it had taken once over half.
    assert_eq!(p.out(), [F::Window(0, 3 * 16_383)]);
    p.conn.conn_recv_window = 3;
    assert_eq!(p.feed(&data(1, b"abc", false)), []);
    assert!(closed(&p.feed(&data(1, b"d", false))));
    assert_eq!(goaway(&p.out()), Some(FlowControlError));
}

/// §6.9: request bodies are granted back as they are consumed, stream and
/// connection.
#[test]
fn windows_replenished() {
    let cfg = Config {
        max_request_body: 1 << 20,
        ..Config::default()
    };
    let mut p = Peer::open(cfg);
    p.feed(&post(1, &[]));
    for _ in 0..2 {
        p.feed(&data(1, &[1; 16_384], false));
        assert_eq!(p.out(), []);
    }
    p.feed(&data(1, &[1; 16_384], false));
    // 16,383 of 65,535 left: under half, the stream gets the rest back.
    assert_eq!(p.out(), [F::Window(1, 49_152)]);
    // The connection grants back at half its 1 MiB window.
    for _ in 0..29 {
        p.feed(&data(1, &[1; 16_384], false));
    }
    let out = p.out();
    assert!(out.contains(&F::Window(0, 32 * 16_384)), "{out:?}");
}

/// §6.9.1: never more DATA than the stream window; WINDOW_UPDATE resumes.
/// §6.9.2: a smaller INITIAL_WINDOW_SIZE can make a window negative.
#[test]
fn send_window_exhaustion_and_resume() {
    let mut p = Peer::open(Config::default());
    p.feed(&settings(&[(frame::setting::INITIAL_WINDOW_SIZE, 10)]));
    p.out();
    p.listen(1);
    p.conn.send(1, shared("0123456789abcdef"), p.now).unwrap();
    assert_eq!(
        p.out(),
        [
            F::Headers(
                1,
                status("200", &[("content-type", "text/event-stream")]),
                false
            ),
            F::Data(1, b"0123456789".to_vec(), false)
        ]
    );
    assert!(!p.conn.wants_write());
    assert_eq!(p.out(), []);
    p.feed(&window(1, 4));
    assert!(p.conn.wants_write());
    assert_eq!(p.out(), [F::Data(1, b"abcd".to_vec(), false)]);
    // The window is 0; SETTINGS takes it to -5.
    p.feed(&settings(&[(frame::setting::INITIAL_WINDOW_SIZE, 5)]));
    assert_eq!(p.out(), [F::Settings(true, vec![])]);
    assert_eq!(p.conn.streams[&1].send_window, -5);
    p.feed(&window(1, 5));
    assert_eq!(p.out(), []);
    p.feed(&window(1, 1));
    assert_eq!(p.out(), [F::Data(1, b"e".to_vec(), false)]);
}

/// §6.5: SETTINGS values apply in order; the last INITIAL_WINDOW_SIZE
/// wins for open streams (§6.9.2).
#[test]
fn settings_in_order() {
    let mut p = Peer::open(Config::default());
    p.listen(1);
    p.feed(&settings(&[
        (frame::setting::INITIAL_WINDOW_SIZE, 100),
        (frame::setting::INITIAL_WINDOW_SIZE, 3),
    ]));
    assert_eq!(p.conn.streams[&1].send_window, 3);
    p.listen(3);
    assert_eq!(p.conn.streams[&3].send_window, 3);
}

/// §6.9.1: the connection window bounds all streams together.
#[test]
fn connection_send_window() {
    let mut p = Peer::open(Config::default());
    p.feed(&settings(&[(frame::setting::INITIAL_WINDOW_SIZE, 1 << 20)]));
    p.out();
    p.listen(1);
    let big: Rc<[u8]> = Rc::from(vec![7u8; 70_000]);
    p.conn.send(1, Chunk::Shared(big.clone()), p.now).unwrap();
    let out = p.out();
    let sent: usize = out
        .iter()
        .map(|f| if let F::Data(_, d, _) = f { d.len() } else { 0 })
        .sum();
    assert_eq!(sent, 65_535);
    assert!(out
        .iter()
        .all(|f| !matches!(f, F::Data(_, d, _) if d.len() > 16_384)));
    p.feed(&window(0, 10_000));
    assert_eq!(p.out(), [F::Data(1, vec![7; 4465], false)]);
}

/// §6.9.1: WINDOW_UPDATE past 2^31-1 is FLOW_CONTROL_ERROR: a stream error
/// for a stream window, a connection error for the connection's.
#[test]
fn window_update_overflow() {
    let mut p = Peer::open(Config::default());
    p.listen(1);
    assert_eq!(p.feed(&window(1, MAX_WINDOW - 65_535)), []);
    let ev = p.feed(&window(1, 1));
    assert_eq!(
        ev,
        [Event::StreamClosed {
            stream: 1,
            reason: Reason::Error(FlowControlError)
        }]
    );
    assert_eq!(p.feed(&window(0, MAX_WINDOW - 65_535)), []);
    assert!(closed(&p.feed(&window(0, 1))));
    assert_eq!(goaway(&p.out()), Some(FlowControlError));
}

/// §6.9.2: an INITIAL_WINDOW_SIZE that takes an open stream's window past
/// 2^31-1 is a connection FLOW_CONTROL_ERROR.
#[test]
fn initial_window_overflow() {
    let mut p = Peer::open(Config::default());
    p.listen(1);
    p.feed(&window(1, MAX_WINDOW - 65_535 - 1));
    assert_eq!(
        p.feed(&settings(&[(frame::setting::INITIAL_WINDOW_SIZE, 65_536)])),
        []
    );
    assert!(closed(&p.feed(&settings(&[
        (frame::setting::INITIAL_WINDOW_SIZE, 65_538),
        (frame::setting::INITIAL_WINDOW_SIZE, 0)
    ]))));
    assert_eq!(goaway(&p.out()), Some(FlowControlError));
}

/// §6.5.2: the client's MAX_FRAME_SIZE bounds our DATA frames.
#[test]
fn peer_max_frame_size() {
    let mut p = Peer::open(Config::default());
    p.feed(&settings(&[
        (frame::setting::MAX_FRAME_SIZE, 20_000),
        (frame::setting::INITIAL_WINDOW_SIZE, 1 << 20),
    ]));
    p.feed(&window(0, 1 << 20));
    p.out();
    p.listen(1);
    p.conn
        .send(1, Chunk::Owned(vec![1; 50_000]), p.now)
        .unwrap();
    let sizes: Vec<usize> = p
        .out()
        .iter()
        .filter_map(|f| {
            if let F::Data(_, d, _) = f {
                Some(d.len())
            } else {
                None
            }
        })
        .collect();
    assert_eq!(sizes, [20_000, 20_000, 10_000]);
}

/// §4.2: a frame above our SETTINGS_MAX_FRAME_SIZE is a FRAME_SIZE_ERROR.
#[test]
fn frame_above_max_frame_size() {
    let mut p = Peer::open(Config::default());
    p.feed(&post(1, &[]));
    assert_eq!(p.feed(&data(1, &[0; 16_384], false)), []);
    assert!(closed(&p.feed(&frame::header(16_385, kind::DATA, 0, 1))));
    assert_eq!(goaway(&p.out()), Some(FrameSizeError));
}

// ---- output: order and fairness ----

/// SSE: three events queued on a stream leave in one DATA frame (one header,
/// the shared chunks behind it, not copied).
#[test]
fn waiting_events_leave_together() {
    let mut p = Peer::open(Config::default());
    p.listen(1);
    p.out();
    let events: Vec<Rc<[u8]>> = ["data: a\n\n", "data: bb\n\n", "data: ccc\n\n"]
        .iter()
        .map(|s| Rc::from(s.as_bytes()))
        .collect();
    for e in &events {
        p.conn.send(1, Chunk::Shared(e.clone()), p.now).unwrap();
    }
    let mut o = Output::default();
    p.conn.write_to(&mut o, usize::MAX);
    // The frame header, then the three shared events, as they were.
    let mut s = [IoSlice::new(&[]); MAX_SLICES];
    assert_eq!(o.slices(&mut s), 4);
    assert!(events.iter().all(|e| Rc::strong_count(e) == 2));
    assert_eq!(
        parse(&flat(&o)),
        [F::Data(
            1,
            b"data: a\n\ndata: bb\n\ndata: ccc\n\n".to_vec(),
            false
        )]
    );
}

/// Streams take turns, one DATA frame each; a long queue does not starve
/// a short one.
#[test]
fn round_robin() {
    let mut p = Peer::open(Config::default());
    p.feed(&settings(&[(frame::setting::INITIAL_WINDOW_SIZE, 1 << 20)]));
    p.feed(&window(0, 1 << 20));
    p.listen(1);
    p.listen(3);
    p.out();
    p.conn
        .send(1, Chunk::Owned(vec![1; 40_000]), p.now)
        .unwrap();
    p.conn.send(3, shared("three"), p.now).unwrap();
    let order: Vec<(u32, usize)> = p
        .out()
        .iter()
        .filter_map(|f| {
            if let F::Data(s, d, _) = f {
                Some((*s, d.len()))
            } else {
                None
            }
        })
        .collect();
    assert_eq!(order, [(1, 16_384), (3, 5), (1, 16_384), (1, 7232)]);
}

/// Control frames leave before DATA that waited longer.
#[test]
fn control_before_data() {
    let mut p = Peer::open(Config::default());
    p.listen(1);
    p.conn.send(1, shared("x"), p.now).unwrap();
    p.feed(&ping(*b"pingpong"));
    let out = p.out();
    assert_eq!(out[0], F::Ping(true, *b"pingpong"));
    assert!(matches!(out[1], F::Headers(1, ..)));
}

/// `write_to` moves about `max_bytes`: DATA is cut to fit, the rest waits.
#[test]
fn write_to_is_bounded() {
    let mut p = Peer::open(Config::default());
    p.listen(1);
    p.out();
    p.conn.send(1, Chunk::Owned(vec![5; 1000]), p.now).unwrap();
    assert_eq!(p.out_max(9 + 100), [F::Data(1, vec![5; 100], false)]);
    assert_eq!(p.out_max(9), []);
    assert_eq!(p.out_max(9 + 900), [F::Data(1, vec![5; 900], false)]);
    // Control bytes are cut too, and nothing passes them.
    p.feed(&ping(*b"12345678"));
    p.conn.send(1, shared("y"), p.now).unwrap();
    let mut o = Output::default();
    p.conn.write_to(&mut o, 10);
    assert_eq!(o.len(), 10);
    p.conn.write_to(&mut o, usize::MAX);
    assert_eq!(
        parse(&flat(&o)),
        [
            F::Ping(true, *b"12345678"),
            F::Data(1, b"y".to_vec(), false)
        ]
    );
}

// ---- §6.7 PING, §6.8 GOAWAY, §6.4 RST_STREAM, §8.4 push ----

/// §6.7: PING is answered with the same data; an ACK is not answered.
#[test]
fn ping_answered() {
    let mut p = Peer::open(Config::default());
    p.feed(&ping(*b"abcdefgh"));
    p.feed(&raw(kind::PING, flag::ACK, 0, b"ABCDEFGH"));
    assert_eq!(p.out(), [F::Ping(true, *b"abcdefgh")]);
}

/// §6.4: RST_STREAM from the client closes the stream and tells the
/// caller; sending on it fails.
#[test]
fn client_reset() {
    let mut p = Peer::open(Config::default());
    p.listen(1);
    let ev = p.feed(&rst(1, Cancel));
    assert_eq!(
        ev,
        [Event::StreamClosed {
            stream: 1,
            reason: Reason::ClientReset(Cancel)
        }]
    );
    assert_eq!(p.conn.send(1, shared("x"), p.now), Err(SendError::Closed));
    assert_eq!(p.out(), []);
}

/// §8.4: a client never sends PUSH_PROMISE.
#[test]
fn push_promise_from_client() {
    let mut p = Peer::open(Config::default());
    assert!(closed(&p.feed(&raw(
        kind::PUSH_PROMISE,
        flag::END_HEADERS,
        1,
        &[0, 0, 0, 2]
    ))));
    assert_eq!(goaway(&p.out()), Some(ProtocolError));
}

/// §5.3.1: a stream cannot depend on itself (PRIORITY or HEADERS).
#[test]
fn self_dependency() {
    let mut p = Peer::open(Config::default());
    let ev = p.feed(&raw(kind::PRIORITY, 0, 1, &[0, 0, 0, 1, 16]));
    assert_eq!(
        ev,
        [Event::StreamClosed {
            stream: 1,
            reason: Reason::Error(ProtocolError)
        }]
    );
    let mut payload = vec![0, 0, 0, 3, 16];
    payload.extend(block(&GET));
    let ev = p.feed(&raw(
        kind::HEADERS,
        flag::PRIORITY | flag::END_HEADERS | flag::END_STREAM,
        3,
        &payload,
    ));
    assert_eq!(
        ev,
        [Event::StreamClosed {
            stream: 3,
            reason: Reason::Error(ProtocolError)
        }]
    );
}

/// §4.1, §5.5: unknown frame types are ignored, even between requests.
#[test]
fn unknown_frames_ignored() {
    let mut p = Peer::open(Config::default());
    assert_eq!(p.feed(&raw(0xfa, 0xff, 0, b"whatever")), []);
    assert!(matches!(p.feed(&get(1))[..], [Event::Request { .. }]));
}

/// §6.8: after the client's GOAWAY (any code, §7) open streams finish and
/// new ones are ignored; the connection answers PING until the client
/// closes it.
#[test]
fn goaway_from_client() {
    let mut p = Peer::open(Config::default());
    p.listen(1);
    let mut g = Vec::new();
    frame::write_goaway(&mut g, 0, NoError, b"");
    g.extend(raw(kind::GOAWAY, 0, 0, &[0, 0, 0, 0, 0, 0, 0, 0xff]));
    assert_eq!(p.feed(&g), []);
    assert_eq!(p.feed(&post(3, &[])), []);
    assert_eq!(p.feed(&data(3, b"ignored", true)), []);
    p.conn.send(1, shared("data: last\n\n"), p.now).unwrap();
    assert!(p.conn.end_stream(1));
    let out = p.out();
    assert_eq!(
        out.last(),
        Some(&F::Data(1, b"data: last\n\n".to_vec(), true))
    );
    assert_eq!(p.conn.stream_count(), 0);
    p.feed(&ping(*b"stillher"));
    assert_eq!(p.out(), [F::Ping(true, *b"stillher")]);
    assert!(!p.conn.is_closed());
}

/// Graceful shutdown: GOAWAY(last stream, NO_ERROR) first; streams open go
/// on; streams above the last are ignored (HPACK still in step); closed
/// once the last stream ends.
#[test]
fn graceful_shutdown() {
    let mut p = Peer::open(Config::default());
    p.listen(1);
    p.out();
    p.conn.shutdown();
    assert_eq!(p.out(), [F::GoAway(1, NoError)]);
    assert!(!p.conn.is_closed());
    // A stream the client opened before it read our GOAWAY, with a body.
    assert_eq!(p.feed(&post(3, &[])), []);
    assert_eq!(p.feed(&data(3, b"ignored", true)), []);
    p.conn.send(1, shared("retry: 1000\n\n"), p.now).unwrap();
    p.conn.end_stream(1);
    assert_eq!(p.out(), [F::Data(1, b"retry: 1000\n\n".to_vec(), true)]);
    assert!(p.conn.is_closed());
    assert_eq!(goaway(&p.out()), None);
}

// ---- defences ----

/// Rapid reset (CVE-2023-44487): `max_resets` client resets per interval
/// pass, one more is GOAWAY ENHANCE_YOUR_CALM; a new interval starts over.
#[test]
fn rapid_reset() {
    let mut p = Peer::open(small());
    for i in 0..5 {
        p.feed(&get(1 + 2 * i));
        p.feed(&rst(1 + 2 * i, Cancel));
    }
    assert_eq!(goaway(&p.out()), None);
    p.now += small().reset_interval;
    for i in 5..10 {
        p.feed(&get(1 + 2 * i));
        p.feed(&rst(1 + 2 * i, Cancel));
    }
    assert_eq!(goaway(&p.out()), None);
    p.feed(&get(21));
    assert!(closed(&p.feed(&rst(21, Cancel))));
    assert_eq!(goaway(&p.out()), Some(EnhanceYourCalm));
}

/// MadeYouReset (CVE-2025-8671): resets the client provokes (malformed
/// requests, WINDOW_UPDATE of 0, DATA on a closed stream, refused streams)
/// count in the same budget as its own.
#[test]
fn made_you_reset() {
    let mut p = Peer::open(small());
    p.listen(1);
    p.feed(&rst(1, Cancel));
    p.feed(&headers(3, &[(":method", "GET")], true));
    p.feed(&raw(kind::WINDOW_UPDATE, 0, 1, &[0; 4]));
    p.feed(&data(1, b"x", false));
    p.feed(&raw(kind::PRIORITY, 0, 5, &[0, 0, 0, 5, 0]));
    assert_eq!(goaway(&p.out()), None);
    assert!(closed(&p.feed(&headers(7, &[(":method", "GET")], true))));
    assert_eq!(goaway(&p.out()), Some(EnhanceYourCalm));
}

/// SETTINGS flood: `max_control_frames` per interval, then
/// ENHANCE_YOUR_CALM.
#[test]
fn settings_flood() {
    let mut p = Peer::open(small());
    // The preface SETTINGS was the first of five.
    for _ in 0..4 {
        p.feed(&settings(&[]));
    }
    assert_eq!(goaway(&p.out()), None);
    assert!(closed(&p.feed(&settings(&[]))));
    assert_eq!(goaway(&p.out()), Some(EnhanceYourCalm));
}

/// PING flood, and empty DATA frames, share the budget.
#[test]
fn ping_flood() {
    let mut p = Peer::open(small());
    p.now += small().control_interval;
    for _ in 0..4 {
        p.feed(&ping(*b"12345678"));
    }
    p.feed(&post(1, &[]));
    p.feed(&data(1, b"", false));
    assert_eq!(goaway(&p.out()), None);
    assert!(closed(&p.feed(&ping(*b"12345678"))));
    assert_eq!(goaway(&p.out()), Some(EnhanceYourCalm));
}

/// A client that sends PINGs and never reads: our queued control output
/// is capped (`max_control_output`), at the limit it is kept.
#[test]
fn control_output_cap() {
    let cfg = Config {
        max_control_output: 17 * 10,
        max_control_frames: 1000,
        ..Config::default()
    };
    let mut p = Peer::open(cfg);
    for _ in 0..10 {
        assert_eq!(p.feed(&ping(*b"12345678")), []);
    }
    assert!(closed(&p.feed(&ping(*b"12345678"))));
    assert_eq!(goaway(&p.out()), Some(EnhanceYourCalm));
}

/// Slow reader, hard cap: a stream's queue may reach `stream_hard_cap`;
/// a chunk past it resets that stream (CANCEL) and no other.
#[test]
fn stream_hard_cap() {
    let cfg = Config {
        stream_hard_cap: 100,
        stream_soft_cap: 1000,
        ..Config::default()
    };
    let mut p = Peer::open(cfg);
    p.feed(&settings(&[(frame::setting::INITIAL_WINDOW_SIZE, 0)]));
    p.listen(1);
    p.listen(3);
    p.out();
    let c: Rc<[u8]> = Rc::from(vec![1u8; 50]);
    for _ in 0..2 {
        p.conn.send(1, Chunk::Shared(c.clone()), p.now).unwrap();
    }
    assert_eq!(
        p.conn.send(1, shared("x"), p.now),
        Err(SendError::SlowReader)
    );
    assert_eq!(p.conn.send(3, shared("fine"), p.now), Ok(()));
    assert_eq!(p.out(), [F::Rst(1, Cancel)]);
    assert_eq!(Rc::strong_count(&c), 1, "the reset stream's queue is freed");
    p.feed(&window(3, 4));
    assert_eq!(p.out(), [F::Data(3, b"fine".to_vec(), false)]);
}

/// Slow reader, soft cap: above `stream_soft_cap` for `soft_time` resets
/// the stream; draining below it in time clears the timer.
#[test]
fn stream_soft_cap() {
    let cfg = Config {
        stream_hard_cap: 1000,
        stream_soft_cap: 10,
        ..Config::default()
    };
    let soft = cfg.soft_time;
    let mut p = Peer::open(cfg);
    p.feed(&settings(&[(frame::setting::INITIAL_WINDOW_SIZE, 0)]));
    p.listen(1);
    p.listen(3);
    p.out();
    assert_eq!(p.conn.next_deadline(), None);
    p.conn.send(1, shared("0123456789"), p.now).unwrap();
    assert_eq!(p.conn.next_deadline(), None, "at the soft cap");
    p.conn.send(1, shared("a"), p.now).unwrap();
    p.conn
        .send(3, shared("0123456789a"), p.now + Duration::from_secs(1))
        .unwrap();
    assert_eq!(p.conn.next_deadline(), Some(p.now + soft));
    assert_eq!(p.timer(soft - Duration::from_millis(1)), []);
    // Stream 3 drains below the cap in time.
    p.feed(&window(3, 5));
    p.out();
    let ev = p.timer(soft + Duration::from_secs(1));
    assert_eq!(
        ev,
        [Event::StreamClosed {
            stream: 1,
            reason: Reason::SlowReader
        }]
    );
    assert_eq!(p.out(), [F::Rst(1, Cancel)]);
    assert_eq!(p.conn.stream_count(), 1);
    assert_eq!(p.conn.next_deadline(), None);
}

/// A connection whose own window stays shut with data waiting for
/// `conn_stall_time` is closed (GOAWAY); a WINDOW_UPDATE in time saves it.
#[test]
fn connection_stall() {
    let cfg = Config::default();
    let stall = cfg.conn_stall_time;
    let mut p = Peer::open(cfg);
    p.listen(1);
    p.conn.conn_send_window = 0;
    p.conn.send(1, shared("x"), p.now).unwrap();
    assert_eq!(p.conn.next_deadline(), Some(p.now + stall));
    assert_eq!(p.timer(stall - Duration::from_millis(1)), []);
    p.feed(&window(0, 1));
    assert_eq!(p.conn.next_deadline(), None);
    p.out();
    p.conn.send(1, shared("y"), p.now).unwrap();
    let ev = p.timer(stall);
    assert!(closed(&ev), "{ev:?}");
    assert_eq!(goaway(&p.out()), Some(EnhanceYourCalm));
    assert!(p.conn.is_closed());
}

/// Our INITIAL_WINDOW_SIZE below the default applies once the client
/// acknowledged it (§6.9.2); before, the default is allowed.
#[test]
fn our_smaller_window_after_ack() {
    let cfg = Config {
        initial_window_size: 1000,
        max_request_body: 1 << 20,
        ..Config::default()
    };
    let mut p = Peer::open(cfg);
    p.feed(&post(1, &[]));
    assert_eq!(p.feed(&data(1, &[0; 2000], false)), []);
    p.feed(&raw(kind::SETTINGS, flag::ACK, 0, &[]));
    // 65,535 - 2,000 left under the default, shrunk by 64,535.
    assert_eq!(p.conn.streams[&1].recv_window, -1000);
    p.out();
    let ev = p.feed(&data(1, b"x", false));
    assert_eq!(
        ev,
        [Event::StreamClosed {
            stream: 1,
            reason: Reason::Error(FlowControlError)
        }]
    );
}
