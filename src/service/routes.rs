//! What each request means, without sockets: a request (and its body) in, a
//! `Route` out — a response to send, a message to publish, or a stream to
//! open. The service (`mod.rs`) carries the route out; this file is the
//! table of the README's "HTTP" section.

use super::assets::{etag_matches, Assets};
use crate::http::form;
use crate::http::{Method, Request, Response};
use crate::room::name::{self, Action};

#[derive(Debug)]
pub enum Route {
    Respond(Response),
    /// A room's page.
    Page(String),
    /// A room's recent messages, as JSON.
    Messages(String),
    /// Publish the text in the room, then answer 303 to its page.
    Publish {
        room: String,
        text: String,
    },
    /// Open an SSE stream on these rooms, resuming after this id if any.
    Listen {
        rooms: Vec<String>,
        last_id: Option<String>,
    },
    /// `GET /cluster`: the caller fills in the presence JSON.
    Cluster,
    /// `GET /rooms`: the rooms of the cluster and their listeners.
    Rooms,
    /// `GET /healthz` and `GET /metrics`: the caller reports on the node.
    Health,
    Metrics,
}

/// What routing needs to know about the node.
pub struct Site<'a> {
    pub assets: &'a Assets,
    pub max_message: usize,
}

/// Most rooms one stream may follow.
pub const MAX_STREAM_ROOMS: usize = 16;

/// The most bytes a `POST /publish` body may have: a message at the limit
/// with every byte percent-encoded, plus room for the field name and others.
pub fn max_body(max_message: usize) -> usize {
    max_message * 3 + 1024
}

pub fn route(req: &Request, body: &[u8], site: &Site) -> Route {
    let get = matches!(req.method, Method::Get | Method::Head);
    if let Some(room_path) = name::parse_path(&req.path) {
        let Ok((room, action)) = room_path else {
            return Route::Respond(Response::error(
                404,
                &format!("no such room: {}", name::RULE),
            ));
        };
        return match action {
            Action::Page if get => Route::Page(room.to_string()),
            Action::Publish if req.method == Method::Post => publish(req, room, body, site),
            Action::Publish => method_not_allowed("POST"),
            Action::Listen if get => listen(req, room),
            Action::Messages if get => Route::Messages(room.to_string()),
            Action::Page | Action::Listen | Action::Messages => method_not_allowed("GET, HEAD"),
        };
    }
    match req.path.as_str() {
        "/cluster" if get => Route::Cluster,
        "/rooms" if get => Route::Rooms,
        "/healthz" if get => Route::Health,
        "/metrics" if get => Route::Metrics,
        "/cluster" | "/rooms" | "/healthz" | "/metrics" => method_not_allowed("GET, HEAD"),
        path => match site.assets.file(path) {
            Some(_) if !get => method_not_allowed("GET, HEAD"),
            Some(file) => {
                let not_modified = req
                    .if_none_match
                    .as_deref()
                    .is_some_and(|v| etag_matches(v, &file.etag));
                let resp = if not_modified {
                    Response {
                        status: 304,
                        headers: Vec::new(),
                        body: Vec::new(),
                    }
                } else {
                    Response::new(200, file.content_type, file.body)
                };
                Route::Respond(
                    resp.with_header("etag", file.etag.clone())
                        .with_header("cache-control", "no-cache"),
                )
            }
            None => Route::Respond(Response::new(
                404,
                "text/html; charset=utf-8",
                site.assets.not_found.clone(),
            )),
        },
    }
}

/// The rooms a stream follows: `room=` in the query (the path's room too
/// under `/r/NAME/listen`; the lobby only when named), else the path's.
fn listen(req: &Request, path_room: &str) -> Route {
    let query = req.query.as_deref().unwrap_or("").as_bytes();
    let (named, more) = match form::fields(query, "room", MAX_STREAM_ROOMS) {
        Ok(found) => found,
        Err(e) => return Route::Respond(Response::error(400, &format!("bad query: {e}"))),
    };
    let mut rooms: Vec<String> = Vec::new();
    if named.is_empty() || req.path.starts_with("/r/") {
        rooms.push(path_room.to_string());
    }
    for room in named {
        if !name::valid(&room) {
            return Route::Respond(Response::error(
                400,
                &format!("bad room {room:?}: {}", name::RULE),
            ));
        }
        if !rooms.contains(&room) {
            rooms.push(room);
        }
    }
    if more || rooms.len() > MAX_STREAM_ROOMS {
        let why = format!("a stream follows at most {MAX_STREAM_ROOMS} rooms");
        return Route::Respond(Response::error(400, &why));
    }
    Route::Listen {
        rooms,
        last_id: last_event_id(req),
    }
}

fn method_not_allowed(allow: &str) -> Route {
    Route::Respond(Response::error(405, "method not allowed").with_header("allow", allow))
}

fn publish(req: &Request, room: &str, body: &[u8], site: &Site) -> Route {
    if !same_origin(req) {
        return Route::Respond(Response::error(403, "cross-site publish refused"));
    }
    if let Some(ct) = &req.content_type {
        let essence = ct.split(';').next().unwrap_or("").trim();
        if !essence.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
            return Route::Respond(Response::error(
                415,
                "send the message as application/x-www-form-urlencoded",
            ));
        }
    }
    match form::field(body, "message") {
        Err(e) => Route::Respond(Response::error(e.status(), &format!("bad form: {e}"))),
        Ok(None) => Route::Respond(Response::error(400, "no message field")),
        Ok(Some(m)) if m.trim().is_empty() => {
            Route::Respond(Response::error(400, "the message is empty"))
        }
        Ok(Some(m)) if m.len() > site.max_message => Route::Respond(Response::error(
            413,
            &format!("the message is longer than {} bytes", site.max_message),
        )),
        Ok(Some(m)) => Route::Publish {
            room: room.to_string(),
            text: m,
        },
    }
}

/// A publish is refused when its `Origin` names another site than the one
/// it was sent to (a form on some other page posting here). No `Origin` —
/// curl, old browsers, same-origin GET-less forms in some browsers — passes.
fn same_origin(req: &Request) -> bool {
    let Some(origin) = req.origin.as_deref() else {
        return true;
    };
    let Some(host) = req.host.as_deref() else {
        return false;
    };
    let origin_host = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    origin_host.is_some_and(|o| o.eq_ignore_ascii_case(host))
}

/// `Last-Event-ID` header, else the `lastEventId` query parameter (for a
/// first connection that wants to resume, which EventSource can't send).
/// An empty id means "no id" (WHATWG: a stream that never got an id sends
/// an empty `Last-Event-ID`), not an unknown one.
fn last_event_id(req: &Request) -> Option<String> {
    let id = match &req.last_event_id {
        Some(id) => Some(id.clone()),
        None => {
            let query = req.query.as_deref()?;
            form::field(query.as_bytes(), "lastEventId").ok().flatten()
        }
    };
    id.filter(|id| !id.trim().is_empty())
}

/// Paths answered while the node is still starting (waiting for its
/// cluster): the ones that report on the node itself.
pub fn answered_while_starting(path: &str) -> bool {
    matches!(path, "/healthz" | "/metrics")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{parse_head, HeadLimits};

    fn run(raw: &str, body: &str) -> Route {
        let assets = Assets::new("n1");
        let site = Site {
            assets: &assets,
            max_message: 10,
        };
        let head = parse_head(raw.as_bytes(), &HeadLimits::default())
            .unwrap()
            .unwrap();
        route(&head.request, body.as_bytes(), &site)
    }

    fn status(r: Route) -> u16 {
        match r {
            Route::Respond(r) => r.status,
            Route::Page(_) | Route::Messages(_) => 200,
            Route::Publish { .. } => 303,
            Route::Listen { .. } => 1,
            Route::Cluster | Route::Rooms | Route::Health | Route::Metrics => 2,
        }
    }

    #[test]
    fn table() {
        let h = "Host: a:1\r\n";
        let cases: &[(&str, String, &str, u16)] = &[
            ("home", format!("GET / HTTP/1.1\r\n{h}\r\n"), "", 200),
            (
                "room page",
                format!("GET /r/general HTTP/1.1\r\n{h}\r\n"),
                "",
                200,
            ),
            (
                "bad room page",
                format!("GET /r/Gen HTTP/1.1\r\n{h}\r\n"),
                "",
                404,
            ),
            (
                "room below",
                format!("GET /r/a/x HTTP/1.1\r\n{h}\r\n"),
                "",
                404,
            ),
            (
                "room publish",
                format!("POST /r/general/publish HTTP/1.1\r\n{h}\r\n"),
                "message=hi",
                303,
            ),
            (
                "room listen",
                format!("GET /r/x/listen HTTP/1.1\r\n{h}\r\n"),
                "",
                1,
            ),
            (
                "listen to two",
                format!("GET /listen?room=a&room=b HTTP/1.1\r\n{h}\r\n"),
                "",
                1,
            ),
            (
                "listen to a bad name",
                format!("GET /listen?room=A HTTP/1.1\r\n{h}\r\n"),
                "",
                400,
            ),
            ("rooms", format!("GET /rooms HTTP/1.1\r\n{h}\r\n"), "", 2),
            ("head home", format!("HEAD / HTTP/1.1\r\n{h}\r\n"), "", 200),
            ("css", format!("GET /main.css HTTP/1.1\r\n{h}\r\n"), "", 200),
            ("missing", format!("GET /nope HTTP/1.1\r\n{h}\r\n"), "", 404),
            (
                "delete home",
                format!("DELETE / HTTP/1.1\r\n{h}\r\n"),
                "",
                405,
            ),
            (
                "get publish",
                format!("GET /publish HTTP/1.1\r\n{h}\r\n"),
                "",
                405,
            ),
            (
                "publish",
                format!("POST /publish HTTP/1.1\r\n{h}\r\n"),
                "message=hi",
                303,
            ),
            (
                "empty",
                format!("POST /publish HTTP/1.1\r\n{h}\r\n"),
                "message=",
                400,
            ),
            (
                "blank",
                format!("POST /publish HTTP/1.1\r\n{h}\r\n"),
                "message=+%20",
                400,
            ),
            (
                "absent",
                format!("POST /publish HTTP/1.1\r\n{h}\r\n"),
                "x=1",
                400,
            ),
            (
                "too long",
                format!("POST /publish HTTP/1.1\r\n{h}\r\n"),
                "message=12345678901",
                413,
            ),
            (
                "at limit",
                format!("POST /publish HTTP/1.1\r\n{h}\r\n"),
                "message=%21%21%21%21%21%21%21%21%21%21",
                303,
            ),
            (
                "bad escape",
                format!("POST /publish HTTP/1.1\r\n{h}\r\n"),
                "message=%zz",
                400,
            ),
            (
                "bad utf8",
                format!("POST /publish HTTP/1.1\r\n{h}\r\n"),
                "message=%ff",
                400,
            ),
            (
                "same origin",
                format!("POST /publish HTTP/1.1\r\n{h}Origin: http://a:1\r\n\r\n"),
                "message=x",
                303,
            ),
            (
                "cross site",
                format!("POST /publish HTTP/1.1\r\n{h}Origin: http://evil\r\n\r\n"),
                "message=x",
                403,
            ),
            (
                "null origin",
                format!("POST /publish HTTP/1.1\r\n{h}Origin: null\r\n\r\n"),
                "message=x",
                403,
            ),
            (
                "json",
                format!("POST /publish HTTP/1.1\r\n{h}Content-Type: application/json\r\n\r\n"),
                "{}",
                415,
            ),
            ("listen", format!("GET /listen HTTP/1.1\r\n{h}\r\n"), "", 1),
        ];
        for (name, head, body, want) in cases {
            let head = if head.ends_with("\r\n\r\n") {
                head.clone()
            } else {
                format!("{head}\r\n")
            };
            assert_eq!(status(run(&head, body)), *want, "{name}");
        }
    }

    #[test]
    fn etag_gives_304() {
        let assets = Assets::new("n1");
        let etag = &assets.file("/main.js").unwrap().etag;
        let raw = format!("GET /main.js HTTP/1.1\r\nHost: a\r\nIf-None-Match: {etag}\r\n\r\n");
        assert_eq!(status(run(&raw, "")), 304);
    }

    #[test]
    fn resume_id_from_header_or_query() {
        let r = run(
            "GET /listen?lastEventId=a%2Db HTTP/1.1\r\nHost: a\r\n\r\n",
            "",
        );
        assert!(matches!(r, Route::Listen { last_id: Some(ref id), .. } if id == "a-b"));
        let r = run(
            "GET /listen HTTP/1.1\r\nHost: a\r\nLast-Event-ID: x\r\n\r\n",
            "",
        );
        assert!(matches!(r, Route::Listen { last_id: Some(ref id), .. } if id == "x"));
        let r = run(
            "GET /listen HTTP/1.1\r\nHost: a\r\nLast-Event-ID: \r\n\r\n",
            "",
        );
        assert!(
            matches!(r, Route::Listen { last_id: None, .. }),
            "empty id is no id"
        );
    }

    #[test]
    fn the_rooms_a_stream_follows() {
        let rooms =
            |target: &str| match run(&format!("GET {target} HTTP/1.1\r\nHost: a\r\n\r\n"), "") {
                Route::Listen { rooms, .. } => rooms,
                other => panic!("{target}: {other:?}"),
            };
        assert_eq!(rooms("/listen"), ["lobby"]);
        assert_eq!(rooms("/listen?room=b&room=a&room=b"), ["b", "a"]);
        assert_eq!(rooms("/r/x/listen"), ["x"]);
        assert_eq!(rooms("/r/x/listen?room=lobby"), ["x", "lobby"]);
        assert_eq!(rooms("/r/lobby/listen"), ["lobby"]);
        let many: String = (0..17).map(|i| format!("room=r{i}&")).collect();
        assert_eq!(
            status(run(
                &format!("GET /listen?{many} HTTP/1.1\r\nHost: a\r\n\r\n"),
                ""
            )),
            400
        );
    }
}
