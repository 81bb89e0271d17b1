//! The HTTP/1.1 connection over a stream in memory: pipelining, a request
//! byte by byte, bad input, slow readers, held requests, drain, timeouts.

use super::super::mem::MemStream;
use super::*;
use crate::http::response::DateCache;
use crate::service::health::Phase;
use crate::service::Config;
use crate::service::Service;
use mio::Token;

struct Rig {
    conn: Http1<MemStream>,
    service: Service,
    date: DateCache,
    scratch: Vec<u8>,
    now: Instant,
    more: bool,
}

impl Rig {
    fn new() -> Rig {
        let now = Instant::now();
        let mut service = Service::new("n1", Config::for_tests(), now);
        service.phase = Phase::Serving;
        let peer = "127.0.0.1:9".parse().unwrap();
        let conn = Http1::new(
            MemStream::default(),
            Transport::Plain,
            peer,
            now,
            Duration::from_secs(10),
        );
        Rig {
            conn,
            service,
            date: DateCache::new(),
            scratch: vec![0; 16 * 1024],
            now,
            more: false,
        }
    }

    fn run(&mut self, f: impl FnOnce(&mut Http1<MemStream>, &mut Env) -> Step) -> Step {
        let mut env = Env {
            now: self.now,
            token: Token(1),
            scratch: &mut self.scratch,
            service: &mut self.service,
            date: &mut self.date,
            more: false,
            hold: false,
        };
        let step = f(&mut self.conn, &mut env);
        self.more = env.more;
        step
    }

    fn send(&mut self, bytes: &[u8]) -> Step {
        self.conn.stream().send(bytes);
        self.run(|c, env| c.ready(Ready::READ, env))
    }

    fn written(&mut self) -> String {
        self.conn.stream().take_written()
    }
}

fn statuses(text: &str) -> Vec<&str> {
    text.match_indices("HTTP/1.1 ")
        .map(|(i, _)| &text[i + 9..i + 12])
        .collect()
}

const GET: &[u8] = b"GET /main.css HTTP/1.1\r\nHost: h\r\n\r\n";

#[test]
fn pipelined_requests_are_answered_in_order() {
    let mut rig = Rig::new();
    let mut all = GET.to_vec();
    all.extend_from_slice(b"GET /nope HTTP/1.1\r\nHost: h\r\n\r\n");
    all.extend_from_slice(
        b"POST /publish HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nmessage=hi",
    );
    assert_eq!(rig.send(&all), Step::Keep);
    assert_eq!(statuses(&rig.written()), ["200", "404", "303"]);
    assert_eq!(rig.service.take_outbox().len(), 1);
}

#[test]
fn a_request_one_byte_at_a_time() {
    let mut rig = Rig::new();
    let req = b"POST /publish HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nmessa\r\n5\r\nge=yo\r\n0\r\n\r\n";
    for b in req.iter() {
        assert_eq!(rig.send(&[*b]), Step::Keep);
    }
    assert_eq!(statuses(&rig.written()), ["303"]);
    assert!(rig.conn.deadline().is_some(), "idle timeout armed");
}

#[test]
fn bad_input_is_answered_then_closed() {
    let mut rig = Rig::new();
    assert_eq!(rig.send(b"GET / HTTP/1.1\r\n\r\n"), Step::Keep);
    let out = rig.written();
    assert_eq!(statuses(&out), ["400"]);
    assert!(out.contains("connection: close"));
    assert!(rig.conn.stream().shut, "lingering close shut our side");
    // What the client still sends is read and dropped, up to a limit.
    assert_eq!(rig.send(&[b'x'; 1000]), Step::Keep);
    // A client still sending its request gets to read the answer first; past
    // the lingering limit it is cut off (in read-budget rounds).
    let mut step = rig.send(&[b'x'; LINGER_LIMIT]);
    while step == Step::Keep && rig.more {
        step = rig.run(|c, env| c.ready(Ready::READ, env));
    }
    assert_eq!(step, Step::Close);
}

#[test]
fn a_slow_reader_stream_is_closed_past_the_hard_cap() {
    let mut rig = Rig::new();
    rig.conn.stream().room = Some(0);
    assert_eq!(
        rig.send(b"GET /listen HTTP/1.1\r\nHost: h\r\n\r\n"),
        Step::Keep
    );
    assert!(rig.conn.listener().is_some());
    assert!(rig.conn.wants_write());
    let frame: Rc<[u8]> = vec![b'x'; 1024].into();
    let mut pushed = 0;
    let step = loop {
        let step = rig.conn.push(std::slice::from_ref(&frame));
        pushed += 1;
        if step == Step::Close || pushed > 2000 {
            break step;
        }
    };
    assert_eq!(step, Step::Close);
    // The stream's head waits in the queue too.
    assert_eq!(pushed, HARD_CAP / 1024);
}

#[test]
fn a_stream_over_the_soft_cap_for_too_long_is_closed() {
    let mut rig = Rig::new();
    rig.conn.stream().room = Some(0);
    rig.send(b"GET /listen HTTP/1.1\r\nHost: h\r\n\r\n");
    let frame: Rc<[u8]> = vec![b'x'; SOFT_CAP + 1].into();
    assert_eq!(rig.conn.push(std::slice::from_ref(&frame)), Step::Keep);
    rig.run(|c, env| c.flush_and_settle(env));
    let at = rig.conn.deadline().expect("soft cap armed");
    assert_eq!(at, rig.now + SOFT_TIME);
    assert_eq!(rig.run(|c, env| c.expired(env)), Step::Keep, "not yet");
    rig.now = at;
    assert_eq!(rig.run(|c, env| c.expired(env)), Step::Close);
    assert_eq!(rig.service.stats.evicted, 1);
}

#[test]
fn a_pipelining_client_that_does_not_read_is_paused_then_resumed() {
    let mut rig = Rig::new();
    rig.conn.stream().room = Some(0);
    let many: Vec<u8> = GET.repeat(2000);
    rig.send(&many);
    let queued = rig.conn.pipe.output.len();
    assert!(
        queued > OUTPUT_PAUSE && queued < OUTPUT_PAUSE + 8192,
        "{queued}"
    );
    assert!(rig.conn.read_stopped);
    // The client reads everything: the flush asks the loop to read on.
    rig.conn.stream().room = None;
    rig.run(|c, env| c.ready(Ready::WRITE, env));
    assert!(rig.more);
    while rig.more {
        rig.run(|c, env| c.ready(Ready::READ, env));
    }
    assert_eq!(statuses(&rig.written()).len(), 2000);
}

#[test]
fn held_requests_wait_for_the_node_and_fail_on_drain() {
    let mut rig = Rig::new();
    rig.service.phase = Phase::Starting;
    rig.send(GET);
    assert!(rig.conn.is_held());
    assert_eq!(rig.conn.deadline(), None);
    assert!(rig.written().is_empty());
    rig.service.phase = Phase::Serving;
    rig.run(|c, env| c.resume(env));
    assert_eq!(statuses(&rig.written()), ["200"]);

    let mut rig = Rig::new();
    rig.service.phase = Phase::Starting;
    rig.send(GET);
    rig.service.phase = Phase::Draining;
    let last = Service::drain_frame();
    rig.run(|c, env| c.drain(&last, env));
    assert_eq!(statuses(&rig.written()), ["503"]);
}

#[test]
fn a_stream_ends_after_its_last_hint_on_drain() {
    let mut rig = Rig::new();
    rig.send(b"GET /listen HTTP/1.1\r\nHost: h\r\n\r\n");
    assert!(rig.written().contains("text/event-stream"));
    let last = Service::drain_frame();
    assert_eq!(rig.run(|c, env| c.drain(&last, env)), Step::Close);
    assert_eq!(rig.written(), "retry: 1000\n\n");
}

#[test]
fn silence_after_connect_times_out_without_an_answer() {
    let mut rig = Rig::new();
    rig.now += Duration::from_secs(10);
    assert_eq!(rig.run(|c, env| c.expired(env)), Step::Close);
    assert!(rig.written().is_empty());
    // A request begun and not finished gets a 408.
    let mut rig = Rig::new();
    rig.send(b"GET / HTTP/1.1\r\n");
    rig.now += Duration::from_secs(10);
    rig.run(|c, env| c.expired(env));
    assert_eq!(statuses(&rig.written()), ["408"]);
}
