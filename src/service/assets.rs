//! What the node serves that is not a message: the pages of `templates/` and
//! the files of `public/`, embedded at build time so the binary is all a host
//! needs. Each file's headers (type, `ETag`) are made once at start.

use std::fmt::Write as _;
use std::rc::Rc;

use crate::http::response::{http_date, iso_time};
use crate::room::{Entry, Tag};

include!(concat!(env!("OUT_DIR"), "/public_files.rs"));

const HOME: &str = include_str!("../../templates/home.html");
const NOT_FOUND: &str = include_str!("../../templates/404.html");

pub struct StaticFile {
    pub path: String,
    pub content_type: &'static str,
    pub etag: String,
    pub body: &'static [u8],
}

pub struct Assets {
    /// The page with the node's name filled in; the room is per request.
    pub home: String,
    pub not_found: Vec<u8>,
    pub files: Vec<StaticFile>,
}

impl Assets {
    pub fn new(node: &str) -> Assets {
        let name = escape_html(node);
        Assets {
            home: HOME.replace("{{node}}", &name),
            not_found: NOT_FOUND.replace("{{node}}", &name).into_bytes(),
            files: PUBLIC
                .iter()
                .map(|(name, body)| StaticFile {
                    path: format!("/{name}"),
                    content_type: content_type(name),
                    etag: format!("\"{:016x}\"", fnv1a(body)),
                    body,
                })
                .collect(),
        }
    }

    /// The page of `room` (a valid room name): its title, where its form
    /// posts, the room the script follows first, and `recent`, the room's
    /// last messages (oldest first), rendered newest first so they show
    /// without JavaScript; the script takes them in and the stream's
    /// backlog does not repeat them. `names` says which node a tag is.
    pub fn page(&self, room: &str, recent: &[Rc<Entry>], names: &[(Tag, &str)]) -> Vec<u8> {
        let mut items = String::with_capacity(recent.len() * 200);
        for e in recent.iter().rev() {
            let tag = format!("{:08x}", e.origin);
            let origin = names
                .iter()
                .find(|(t, _)| *t == e.origin)
                .map_or(tag.as_str(), |(_, n)| n);
            let secs = e.seq / 1_000_000;
            let _ = write!(
                items,
                "<li class=\"msg earlier\" data-id=\"{}\"><div class=\"meta\"><span class=\"origin\" data-tag=\"{tag}\">{}</span><time datetime=\"{}\">{}</time></div><p class=\"text\">{}</p></li>",
                escape_html(e.id()),
                escape_html(origin),
                iso_time(secs),
                http_date(secs),
                escape_html(&e.text)
            );
        }
        let room = escape_html(room);
        let publish = if room == crate::room::LOBBY {
            "/publish".to_string()
        } else {
            format!("/r/{room}/publish")
        };
        self.home
            .replace("{{room}}", &room)
            .replace("{{publish}}", &publish)
            .replace("{{messages}}", &items)
            .into_bytes()
    }

    pub fn file(&self, path: &str) -> Option<&StaticFile> {
        self.files.iter().find(|f| f.path == path)
    }
}

/// True when an `If-None-Match` value names `etag` (or is `*`).
pub fn etag_matches(if_none_match: &str, etag: &str) -> bool {
    if_none_match.split(',').any(|t| {
        let t = t.trim();
        t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag
    })
}

pub fn content_type(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("json") => "application/json",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn home_escapes_the_name() {
        let a = Assets::new("a<b>&\"c");
        let home = String::from_utf8(a.page("general", &[], &[])).unwrap();
        assert!(home.contains("action=\"/r/general/publish\""), "{home}");
        assert!(String::from_utf8(a.page("lobby", &[], &[]))
            .unwrap()
            .contains("action=\"/publish\""));
        assert!(home.contains("<h2>Node: a&lt;b&gt;&amp;&quot;c</h2>"));
    }

    #[test]
    fn public_files_are_embedded_with_types() {
        let a = Assets::new("n");
        let css = a.file("/main.css").expect("main.css");
        assert_eq!(css.content_type, "text/css; charset=utf-8");
        assert!(a.file("/main.js").is_some());
        assert!(a.file("/nope").is_none());
        assert!(etag_matches(&css.etag, &css.etag));
        assert!(etag_matches(&format!("W/{}, \"x\"", css.etag), &css.etag));
        assert!(!etag_matches("\"x\"", &css.etag));
    }
}
