//! Server-Sent Events framing (WHATWG HTML §9.2), both ways: `encode` builds
//! the bytes of one event as the node sends them, `Parser` reads a stream the
//! way a browser's `EventSource` does (used by tests and the fuzz target to
//! check that what we encode is what a browser sees).

/// Appends one event. `data` is split on `\r\n`, `\r` and `\n`, one `data:`
/// line per line, so a browser reassembles it joined by `\n`. `id` and `event`
/// must not contain line breaks (the caller makes them; they are ids and names
/// of our own, never client text) and `id` no NUL.
pub fn encode(out: &mut Vec<u8>, id: Option<&str>, event: Option<&str>, data: &str) {
    if let Some(event) = event {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(event.as_bytes());
        out.push(b'\n');
    }
    if let Some(id) = id {
        out.extend_from_slice(b"id: ");
        out.extend_from_slice(id.as_bytes());
        out.push(b'\n');
    }
    for line in lines(data) {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
    out.push(b'\n');
}

/// A comment line: browsers ignore it; it keeps proxies and NATs from
/// closing an idle stream.
pub fn comment(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(b": ");
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(b"\n\n");
}

/// How long the browser waits before reconnecting.
pub fn retry(out: &mut Vec<u8>, millis: u64) {
    out.extend_from_slice(format!("retry: {millis}\n\n").as_bytes());
}

/// Splits on CRLF, CR or LF, as the SSE parser does; an empty text is one
/// empty line (so the event still has a `data:` line and is dispatched).
fn lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let s = rest?;
        match s.find(['\r', '\n']) {
            None => {
                rest = None;
                Some(s)
            }
            Some(i) => {
                let skip = if s[i..].starts_with("\r\n") { 2 } else { 1 };
                rest = Some(&s[i + skip..]);
                Some(&s[..i])
            }
        }
    })
}

/// Normalises line breaks to `\n`: what the node stores is what browsers show.
pub fn normalize(text: &str) -> String {
    lines(text).collect::<Vec<_>>().join("\n")
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Event {
    pub event: String,
    pub data: String,
    pub id: String,
}

/// A browser-like event-stream parser. `feed` takes bytes as they come and
/// returns the events completed by them; comments are counted.
#[derive(Debug, Default)]
pub struct Parser {
    line: Vec<u8>,
    last_cr: bool,
    event: String,
    data: String,
    has_data: bool,
    pub last_id: String,
    pub retry: Option<u64>,
    pub comments: usize,
}

impl Parser {
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Event> {
        let mut events = Vec::new();
        for &b in bytes {
            if self.last_cr && b == b'\n' {
                self.last_cr = false;
                continue;
            }
            self.last_cr = b == b'\r';
            if b == b'\r' || b == b'\n' {
                let line = std::mem::take(&mut self.line);
                if let Some(e) = self.line_done(&line) {
                    events.push(e);
                }
            } else {
                self.line.push(b);
            }
        }
        events
    }

    fn line_done(&mut self, raw: &[u8]) -> Option<Event> {
        let line = String::from_utf8_lossy(raw);
        if line.is_empty() {
            let event = Event {
                event: if self.event.is_empty() {
                    "message".into()
                } else {
                    std::mem::take(&mut self.event)
                },
                data: std::mem::take(&mut self.data),
                id: self.last_id.clone(),
            };
            self.event.clear();
            let dispatch = self.has_data;
            self.has_data = false;
            return dispatch.then_some(event);
        }
        if line.starts_with(':') {
            self.comments += 1;
            return None;
        }
        let (field, value) = match line.find(':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(' ').unwrap_or(v))
            }
            None => (&line[..], ""),
        };
        match field {
            "event" => self.event = value.to_string(),
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "id" if !value.contains('\0') => self.last_id = value.to_string(),
            "retry" => {
                if let Ok(ms) = value.parse() {
                    self.retry = Some(ms);
                }
            }
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(data: &str) -> Event {
        let mut out = Vec::new();
        encode(&mut out, Some("x1"), None, data);
        let mut p = Parser::default();
        let mut events = p.feed(&out);
        assert_eq!(events.len(), 1, "{out:?}");
        events.remove(0)
    }

    #[test]
    fn encoding_table() {
        let cases: &[(&str, &str, &str)] = &[
            ("plain", "hello", "id: x1\ndata: hello\n\n"),
            ("multi-line", "a\nb", "id: x1\ndata: a\ndata: b\n\n"),
            ("crlf", "a\r\nb", "id: x1\ndata: a\ndata: b\n\n"),
            ("lone cr", "a\rb", "id: x1\ndata: a\ndata: b\n\n"),
            (
                "empty lines",
                "a\n\nb",
                "id: x1\ndata: a\ndata: \ndata: b\n\n",
            ),
            ("trailing newline", "a\n", "id: x1\ndata: a\ndata: \n\n"),
            ("empty", "", "id: x1\ndata: \n\n"),
            (
                "data prefix inside",
                "data: x\nid: y",
                "id: x1\ndata: data: x\ndata: id: y\n\n",
            ),
            (
                "leading colon",
                ":not a comment",
                "id: x1\ndata: :not a comment\n\n",
            ),
        ];
        for (name, data, want) in cases {
            let mut out = Vec::new();
            encode(&mut out, Some("x1"), None, data);
            assert_eq!(String::from_utf8(out).unwrap(), *want, "{name}");
            let e = roundtrip(data);
            assert_eq!(e.data, normalize(data), "{name}");
            assert_eq!(e.id, "x1");
        }
    }

    #[test]
    fn named_events_comments_and_retry() {
        let mut out = Vec::new();
        retry(&mut out, 2000);
        comment(&mut out, "hi");
        encode(&mut out, None, Some("missed"), "gone");
        let mut p = Parser::default();
        // Byte by byte: the parser must not care how the stream is cut.
        let events: Vec<Event> = out.iter().flat_map(|b| p.feed(&[*b])).collect();
        assert_eq!(p.retry, Some(2000));
        assert_eq!(p.comments, 1);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].event, "missed");
        assert_eq!(events[0].data, "gone");
    }

    #[test]
    fn normalize_matches_browser() {
        assert_eq!(normalize("a\r\nb\rc\nd"), "a\nb\nc\nd");
        assert_eq!(normalize("héllo 世界 🚀"), "héllo 世界 🚀");
    }
}
