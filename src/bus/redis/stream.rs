//! Typed views of the Redis Stream replies the bus reads, from decoded
//! [`Value`]s: XADD's id, XRANGE's entries, and XREAD's entries per stream
//! key. The bus carries its messages in a stream, so these are the only
//! shapes it needs. A reply of any other shape is an error (the connection
//! is then out of step with its commands and is closed), never a panic; the
//! sizes were bounded by `resp::Limits` while decoding. Values are taken by
//! value so message bytes move instead of being copied.

use std::fmt;
use std::str::FromStr;

use super::resp::Value;

/// A stream entry id, `<ms>-<seq>`: milliseconds of the Redis clock and a
/// sequence within that millisecond. Ordered as Redis orders them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct StreamId {
    pub ms: u64,
    pub seq: u64,
}

/// Longest id text: two u64s and the dash.
const MAX_ID_LEN: usize = 20 + 1 + 20;

impl StreamId {
    /// `0-0`, before every entry: XREAD from it reads the whole stream.
    pub const ZERO: StreamId = StreamId { ms: 0, seq: 0 };

    /// Parses the full form Redis replies with, `<ms>-<seq>` in decimal.
    pub fn parse(text: &[u8]) -> Result<StreamId, StreamError> {
        if text.len() > MAX_ID_LEN {
            return Err(StreamError::BadId);
        }
        let dash = text
            .iter()
            .position(|&b| b == b'-')
            .ok_or(StreamError::BadId)?;
        let (ms, seq) = (&text[..dash], &text[dash + 1..]);
        Ok(StreamId {
            ms: parse_u64(ms).ok_or(StreamError::BadId)?,
            seq: parse_u64(seq).ok_or(StreamError::BadId)?,
        })
    }

    /// The smallest id after this one, `None` after the largest: an
    /// exclusive start for XRANGE, and what follows `self` with no gap.
    pub fn successor(self) -> Option<StreamId> {
        match self.seq.checked_add(1) {
            Some(seq) => Some(StreamId { ms: self.ms, seq }),
            None => Some(StreamId {
                ms: self.ms.checked_add(1)?,
                seq: 0,
            }),
        }
    }
}

fn parse_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &b| {
        n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

impl FromStr for StreamId {
    type Err = StreamError;

    fn from_str(s: &str) -> Result<StreamId, StreamError> {
        StreamId::parse(s.as_bytes())
    }
}

/// One entry: its id and its field/value pairs in the order XADD gave them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEntry {
    pub id: StreamId,
    pub fields: Vec<(Vec<u8>, Vec<u8>)>,
}

impl StreamEntry {
    /// The value of the first field called `name`.
    pub fn field(&self, name: &[u8]) -> Option<&[u8]> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamError {
    /// The reply (or an element of it) is an error reply: match
    /// `Value::Error` before calling to log its text.
    ErrorReply,
    /// Not the shape the command replies with; says which part.
    Shape(&'static str),
    /// An entry id that is not `<ms>-<seq>` in decimal u64s.
    BadId,
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            StreamError::ErrorReply => write!(f, "error reply inside a stream reply"),
            StreamError::Shape(what) => write!(f, "malformed stream reply: {what}"),
            StreamError::BadId => write!(f, "stream id is not <ms>-<seq>"),
        }
    }
}

impl std::error::Error for StreamError {}

/// XADD's reply: the id of the new entry. (A nil reply, which only
/// `NOMKSTREAM` can give, is a shape error.)
pub fn xadd(reply: Value) -> Result<StreamId, StreamError> {
    StreamId::parse(&bulk(reply, "XADD did not reply with an id")?)
}

/// XRANGE's (and XREVRANGE's) reply: the entries, in the order sent.
pub fn xrange(reply: Value) -> Result<Vec<StreamEntry>, StreamError> {
    array(reply, "XRANGE reply is not an array")?
        .into_iter()
        .map(entry)
        .collect()
}

/// The entries XREAD returned for one stream key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEntries {
    pub key: Vec<u8>,
    pub entries: Vec<StreamEntry>,
}

/// XREAD's reply: for each stream key that has new entries, the key and
/// its entries. A nil reply (BLOCK timed out) is no entries.
pub fn xread(reply: Value) -> Result<Vec<StreamEntries>, StreamError> {
    if reply == Value::Array(None) {
        return Ok(Vec::new());
    }
    array(reply, "XREAD reply is not an array or nil")?
        .into_iter()
        .map(|stream| {
            let (key, entries) = pair(stream, "XREAD stream is not [key, entries]")?;
            let key = bulk(key, "XREAD stream key is not a bulk string")?;
            let entries = xrange(entries)?;
            Ok(StreamEntries { key, entries })
        })
        .collect()
}

fn entry(value: Value) -> Result<StreamEntry, StreamError> {
    let (id, fields) = pair(value, "entry is not [id, fields]")?;
    let id = StreamId::parse(&bulk(id, "entry id is not a bulk string")?)?;
    let flat = array(fields, "entry fields are not an array")?;
    if flat.len() % 2 != 0 {
        return Err(StreamError::Shape("entry fields are not name/value pairs"));
    }
    let mut fields = Vec::with_capacity(flat.len() / 2);
    let mut flat = flat.into_iter();
    while let (Some(name), Some(value)) = (flat.next(), flat.next()) {
        fields.push((
            bulk(name, "field name is not a bulk string")?,
            bulk(value, "field value is not a bulk string")?,
        ));
    }
    Ok(StreamEntry { id, fields })
}

fn array(value: Value, what: &'static str) -> Result<Vec<Value>, StreamError> {
    match value {
        Value::Array(Some(items)) => Ok(items),
        Value::Error(_) => Err(StreamError::ErrorReply),
        _ => Err(StreamError::Shape(what)),
    }
}

fn pair(value: Value, what: &'static str) -> Result<(Value, Value), StreamError> {
    let items = array(value, what)?;
    let mut items = items.into_iter();
    match (items.next(), items.next(), items.next()) {
        (Some(a), Some(b), None) => Ok((a, b)),
        _ => Err(StreamError::Shape(what)),
    }
}

fn bulk(value: Value, what: &'static str) -> Result<Vec<u8>, StreamError> {
    match value {
        Value::Bulk(Some(bytes)) => Ok(bytes),
        Value::Error(_) => Err(StreamError::ErrorReply),
        _ => Err(StreamError::Shape(what)),
    }
}

#[cfg(test)]
mod tests {
    use super::super::resp::{decode, Limits};
    use super::*;

    fn value(bytes: &[u8]) -> Value {
        match decode(bytes, &Limits::default()) {
            Ok(Some((v, n))) if n == bytes.len() => v,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(bytes)),
        }
    }

    fn id(ms: u64, seq: u64) -> StreamId {
        StreamId { ms, seq }
    }

    fn entry(ms: u64, seq: u64, fields: &[(&[u8], &[u8])]) -> StreamEntry {
        StreamEntry {
            id: id(ms, seq),
            fields: fields
                .iter()
                .map(|(k, v)| (k.to_vec(), v.to_vec()))
                .collect(),
        }
    }

    fn keyed(key: &[u8], entries: Vec<StreamEntry>) -> StreamEntries {
        StreamEntries {
            key: key.to_vec(),
            entries,
        }
    }

    const TWO_ENTRIES: &[u8] = b"*2\r\n\
        *2\r\n$15\r\n1700000000000-0\r\n*4\r\n$1\r\no\r\n$2\r\nn1\r\n$1\r\nm\r\n$2\r\nhi\r\n\
        *2\r\n$15\r\n1700000000000-1\r\n*0\r\n";

    fn two_entries() -> Vec<StreamEntry> {
        vec![
            entry(1_700_000_000_000, 0, &[(b"o", b"n1"), (b"m", b"hi")]),
            entry(1_700_000_000_000, 1, &[]),
        ]
    }

    #[test]
    fn ids_parse_format_and_order() {
        let cases: &[(&str, Option<StreamId>)] = &[
            ("1700000000000-3", Some(id(1_700_000_000_000, 3))),
            ("0-0", Some(StreamId::ZERO)),
            ("0-1", Some(id(0, 1))),
            (
                "18446744073709551615-18446744073709551615",
                Some(id(u64::MAX, u64::MAX)),
            ),
            ("18446744073709551616-0", None),
            ("1", None),
            ("1-", None),
            ("-1", None),
            ("1-2-3", None),
            ("+1-0", None),
            (" 1-0", None),
            ("1-0 ", None),
            ("a-b", None),
            ("", None),
            ("000000000000000000001-0", Some(id(1, 0))),
            ("0000000000000000000000-00000000000000000000", None),
        ];
        for (text, want) in cases {
            assert_eq!(text.parse::<StreamId>().ok(), *want, "{text:?}");
            if let Some(want) = want.filter(|_| !text.starts_with("00")) {
                assert_eq!(want.to_string(), *text);
            }
        }
        let mut ids = vec![id(2, 0), id(1, 10), id(1, 9), StreamId::ZERO];
        ids.sort();
        assert_eq!(ids, vec![StreamId::ZERO, id(1, 9), id(1, 10), id(2, 0)]);
        assert_eq!(id(1, 9).successor(), Some(id(1, 10)));
        assert_eq!(id(1, u64::MAX).successor(), Some(id(2, 0)));
        assert_eq!(id(u64::MAX, u64::MAX).successor(), None);
    }

    #[test]
    fn xadd_replies() {
        let cases: &[(&[u8], Result<StreamId, StreamError>)] = &[
            (b"$15\r\n1700000000000-3\r\n", Ok(id(1_700_000_000_000, 3))),
            (
                b"-ERR The ID specified in XADD is equal or smaller\r\n",
                Err(StreamError::ErrorReply),
            ),
            (
                b"$-1\r\n",
                Err(StreamError::Shape("XADD did not reply with an id")),
            ),
            (
                b"+1-0\r\n",
                Err(StreamError::Shape("XADD did not reply with an id")),
            ),
            (b"$3\r\nx-1\r\n", Err(StreamError::BadId)),
        ];
        for (bytes, want) in cases {
            assert_eq!(
                xadd(value(bytes)),
                *want,
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn xrange_replies() {
        use StreamError::*;
        type Case<'a> = (&'a str, &'a [u8], Result<Vec<StreamEntry>, StreamError>);
        let cases: Vec<Case> = vec![
            ("empty", b"*0\r\n", Ok(vec![])),
            ("two entries", TWO_ENTRIES, Ok(two_entries())),
            ("error", b"-WRONGTYPE x\r\n", Err(ErrorReply)),
            (
                "nil",
                b"*-1\r\n",
                Err(Shape("XRANGE reply is not an array")),
            ),
            (
                "entry not a pair",
                b"*1\r\n*1\r\n$3\r\n1-0\r\n",
                Err(Shape("entry is not [id, fields]")),
            ),
            (
                "entry of three",
                b"*1\r\n*3\r\n$3\r\n1-0\r\n*0\r\n*0\r\n",
                Err(Shape("entry is not [id, fields]")),
            ),
            (
                "id integer",
                b"*1\r\n*2\r\n:1\r\n*0\r\n",
                Err(Shape("entry id is not a bulk string")),
            ),
            ("bad id", b"*1\r\n*2\r\n$1\r\n1\r\n*0\r\n", Err(BadId)),
            (
                "fields nil",
                b"*1\r\n*2\r\n$3\r\n1-0\r\n*-1\r\n",
                Err(Shape("entry fields are not an array")),
            ),
            (
                "odd fields",
                b"*1\r\n*2\r\n$3\r\n1-0\r\n*1\r\n$1\r\nm\r\n",
                Err(Shape("entry fields are not name/value pairs")),
            ),
            (
                "field value nil",
                b"*1\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\nm\r\n$-1\r\n",
                Err(Shape("field value is not a bulk string")),
            ),
            (
                "field name array",
                b"*1\r\n*2\r\n$3\r\n1-0\r\n*2\r\n*0\r\n$1\r\nm\r\n",
                Err(Shape("field name is not a bulk string")),
            ),
            (
                "error inside",
                b"*1\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\nm\r\n-ERR x\r\n",
                Err(ErrorReply),
            ),
        ];
        for (name, bytes, want) in cases {
            assert_eq!(xrange(value(bytes)), want, "{name}");
        }
    }

    #[test]
    fn xread_replies() {
        use StreamError::*;
        let one = [b"*1\r\n*2\r\n$2\r\nwc\r\n", TWO_ENTRIES].concat();
        let two = [
            b"*2\r\n*2\r\n$1\r\na\r\n*0\r\n*2\r\n$1\r\nb\r\n",
            TWO_ENTRIES,
        ]
        .concat();
        type Case<'a> = (&'a str, &'a [u8], Result<Vec<StreamEntries>, StreamError>);
        let cases: Vec<Case> = vec![
            ("BLOCK timed out", b"*-1\r\n", Ok(vec![])),
            ("empty", b"*0\r\n", Ok(vec![])),
            ("one stream", &one, Ok(vec![keyed(b"wc", two_entries())])),
            (
                "two streams",
                &two,
                Ok(vec![keyed(b"a", vec![]), keyed(b"b", two_entries())]),
            ),
            (
                "error",
                b"-NOAUTH Authentication required.\r\n",
                Err(ErrorReply),
            ),
            (
                "bulk",
                b"$2\r\nhi\r\n",
                Err(Shape("XREAD reply is not an array or nil")),
            ),
            (
                "key only",
                b"*1\r\n*1\r\n$2\r\nwc\r\n",
                Err(Shape("XREAD stream is not [key, entries]")),
            ),
            (
                "key nil",
                b"*1\r\n*2\r\n$-1\r\n*0\r\n",
                Err(Shape("XREAD stream key is not a bulk string")),
            ),
            (
                "entries nil",
                b"*1\r\n*2\r\n$2\r\nwc\r\n*-1\r\n",
                Err(Shape("XRANGE reply is not an array")),
            ),
        ];
        for (name, bytes, want) in cases {
            assert_eq!(xread(value(bytes)), want, "{name}");
        }
    }

    #[test]
    fn fields_are_found_by_name() {
        let e = entry(1, 0, &[(b"o", b"n1"), (b"m", b"hi"), (b"m", b"second")]);
        assert_eq!(e.field(b"m"), Some(&b"hi"[..]));
        assert_eq!(e.field(b"x"), None);
    }
}
