//! The service without sockets: publishing and listening per room, holding
//! while starting, refusing while draining, presence only when it changed,
//! and the room limit.

use super::*;
use mio::Token;

fn service_with(max_rooms: usize) -> Service {
    let config = Config {
        max_message: 100,
        request_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(1),
        rooms: room::Limits {
            history: 10,
            max_rooms,
            max_bytes: 1 << 20,
            idle_micros: 600_000_000,
        },
        backlog: 0,
        publish_rate: 0,
        publish_burst: 20,
        trust_proxy: None,
        hsts: false,
    };
    let mut s = Service::new("n1", config, Instant::now());
    s.phase = Phase::Serving;
    s
}

fn service() -> Service {
    service_with(8)
}

fn req(method: &str, target: &str) -> Request {
    Request::new(method, target).unwrap()
}

const WHO: Listener = Listener {
    conn: Token(7),
    stream: 3,
};

fn status(a: Answer) -> u16 {
    match a {
        Answer::Respond(r) => r.status,
        Answer::Stream { .. } => 200,
    }
}

#[test]
fn publish_reaches_its_room_and_a_stream_leaves() {
    let mut s = service();
    let Answer::Stream {
        key, first, replay, ..
    } = s.handle(&req("GET", "/r/general/listen"), b"", WHO, Instant::now())
    else {
        panic!("no stream");
    };
    assert!(replay.is_empty());
    assert!(String::from_utf8_lossy(&first).contains("event: presence"));
    let general = s.rooms.find("general").unwrap();
    assert_eq!(s.listeners.in_room(general).collect::<Vec<_>>(), [WHO]);
    let publish = |s: &mut Service, path| {
        status(s.handle(&req("POST", path), b"message=hi", WHO, Instant::now()))
    };
    assert_eq!(publish(&mut s, "/r/general/publish"), 303);
    assert_eq!(publish(&mut s, "/publish"), 303);
    let out = s.take_outbox();
    assert_eq!(out.len(), 2);
    assert!(out
        .iter()
        .any(|(room, frames)| *room == general && frames.len() == 1));
    assert!(s.heartbeat().is_none(), "a message went out");
    assert!(s.heartbeat().is_some(), "quiet since");
    assert_eq!(s.busiest_rooms(5), [("general".to_string(), 1)]);
    s.leave(key);
    assert!(s.listeners.is_empty());
    assert_eq!(s.rooms.get(general).unwrap().listeners, 0);
}

#[test]
fn starting_holds_all_but_health_and_draining_refuses_publish() {
    let mut s = service();
    s.phase = Phase::Starting;
    assert!(s.holds(&req("GET", "/")));
    assert!(!s.holds(&req("GET", "/healthz")));
    s.phase = Phase::Draining;
    let answer = s.handle(&req("POST", "/publish"), b"message=hi", WHO, Instant::now());
    assert_eq!(status(answer), 503);
    assert!(s.take_outbox().is_empty());
}

#[test]
fn presence_is_sent_only_when_it_changed() {
    let mut s = service();
    assert!(s.refresh_presence(vec![], Instant::now()).is_none());
    let peer = Peer {
        name: "b".into(),
        listeners: 2,
        rooms: vec![],
    };
    assert!(s
        .refresh_presence(vec![peer.clone()], Instant::now())
        .is_some());
    assert!(s.refresh_presence(vec![peer], Instant::now()).is_none());
}

/// Regression (the million-listener benchmark): with many streams the
/// presence broadcast waits, and a change made meanwhile is not lost.
#[test]
fn presence_goes_out_less_often_to_many_streams() {
    let mut s = service();
    let lobby = s.rooms.find(LOBBY).unwrap();
    for i in 0..40_000 {
        let who = Listener {
            conn: Token(i),
            stream: 0,
        };
        s.listeners.add(who, &[lobby]);
    }
    let t0 = Instant::now();
    let peer = |n: usize| Peer {
        name: "b".into(),
        listeners: n,
        rooms: vec![],
    };
    assert!(s.refresh_presence(vec![peer(1)], t0).is_some());
    // 40,000 streams: at most one broadcast per 2 s.
    let t1 = t0 + Duration::from_secs(1);
    assert!(s.refresh_presence(vec![peer(2)], t1).is_none());
    assert!(
        s.presence.json().contains("\"listeners\":40002"),
        "current for /cluster"
    );
    let t2 = t0 + Duration::from_millis(2100);
    let owed = s
        .refresh_presence(vec![peer(2)], t2)
        .expect("the change owed");
    assert!(String::from_utf8_lossy(&owed).contains("\"listeners\":40002"));
    assert!(s
        .refresh_presence(vec![peer(2)], t2 + Duration::from_secs(3))
        .is_none());
}

#[test]
fn new_rooms_past_the_limit_are_refused_and_old_ones_still_work() {
    let mut s = service_with(3);
    let publish = |s: &mut Service, room: &str| {
        let path = format!("/r/{room}/publish");
        status(s.handle(&req("POST", &path), b"message=hi", WHO, Instant::now()))
    };
    assert_eq!(publish(&mut s, "a"), 303);
    assert_eq!(publish(&mut s, "b"), 303);
    assert_eq!(publish(&mut s, "c"), 503);
    let listen = s.handle(
        &req("GET", "/listen?room=a&room=zz"),
        b"",
        WHO,
        Instant::now(),
    );
    assert_eq!(status(listen), 503);
    assert_eq!(publish(&mut s, "a"), 303);
    assert_eq!(s.rooms.count(), 3);
    let rooms = s.rooms_json();
    assert!(
        rooms.contains("{\"name\":\"a\",\"listeners\":0,\"messages\":2}"),
        "{rooms}"
    );
}

#[test]
fn a_new_stream_gets_the_backlog_marked_and_a_resuming_one_does_not() {
    let mut s = service();
    s.config.backlog = 2;
    for m in ["message=a", "message=b", "message=c"] {
        s.handle(
            &req("POST", "/r/x/publish"),
            m.as_bytes(),
            WHO,
            Instant::now(),
        );
    }
    s.take_outbox();
    let Answer::Stream { replay, mark, .. } =
        s.handle(&req("GET", "/r/x/listen"), b"", WHO, Instant::now())
    else {
        panic!("no stream");
    };
    assert_eq!(replay.len(), 2);
    assert_eq!(mark.as_deref(), Some(&b"event: backlog\n"[..]));
    let json = match s.handle(&req("GET", "/r/x/messages"), b"", WHO, Instant::now()) {
        Answer::Respond(r) => String::from_utf8(r.body).unwrap(),
        Answer::Stream { .. } => panic!(),
    };
    assert!(
        json.starts_with("{\"room\":\"x\",\"messages\":[{\"id\":\"x/"),
        "{json}"
    );
    assert!(json.contains("\"text\":\"c\"}]}"), "{json}");
    let mut listen = req("GET", "/r/x/listen");
    listen.last_event_id = Some("x/nonsense".into());
    let Answer::Stream { mark, .. } = s.handle(&listen, b"", WHO, Instant::now()) else {
        panic!("no stream");
    };
    assert!(mark.is_none());
}

/// With a history log under `--fsync batch`, a publish's answer waits for
/// the turn's commit (and only a publish's); what was committed is there
/// after a restart; a second service on the same directory is refused.
#[test]
fn a_publish_waits_for_the_commit_and_survives_a_restart() {
    use crate::store::log::Fsync;
    let dir = std::env::temp_dir().join(format!("wc-service-log-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let now = Instant::now();
    {
        let mut s = service();
        s.open_log(&dir, Fsync::Batch, now).unwrap();
        let answer = s.handle(&req("POST", "/publish"), b"message=kept", WHO, now);
        assert_eq!(status(answer), 303);
        assert!(s.take_answer_waits(), "a 303 waits for the commit");
        assert!(!s.take_answer_waits(), "told once");
        assert_eq!(status(s.handle(&req("GET", "/"), b"", WHO, now)), 200);
        assert!(!s.take_answer_waits(), "a page does not wait");
        let mut other = service();
        let refused = other.open_log(&dir, Fsync::Batch, now).unwrap_err();
        assert!(refused.contains("in use"), "{refused}");
        assert!(s.commit(now));
    }
    let mut s = service();
    s.open_log(&dir, Fsync::Always, now).unwrap();
    assert_eq!(s.rooms.len(), 1);
    let answer = s.handle(&req("POST", "/publish"), b"message=again", WHO, now);
    assert_eq!(status(answer), 303);
    assert!(!s.take_answer_waits(), "always: committed on the spot");
    let _ = std::fs::remove_dir_all(&dir);
}
