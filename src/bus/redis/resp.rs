//! RESP2, the Redis wire protocol, without sockets. The bus's connections
//! feed what they read into a [`Decoder`] and take whole replies out; they
//! encode requests with [`command`]. Every length the server sends is checked
//! against [`Limits`] before memory is committed, nesting is kept on an
//! explicit stack (a hostile server cannot drive recursion), and any
//! malformed byte is a [`RespError`] that closes that connection, never the
//! node. `stream` turns the decoded [`Value`]s into typed stream replies.

use std::fmt;

/// One RESP2 reply. Simple strings and errors are decoded lossily (invalid
/// UTF-8 becomes U+FFFD): Redis may echo a client's bytes in an error, and
/// such a reply should still read as an error, not break the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Simple(String),
    Error(String),
    Integer(i64),
    /// `None` is the null bulk string (`$-1`), e.g. GET of a missing key.
    Bulk(Option<Vec<u8>>),
    /// `None` is the null array (`*-1`), e.g. XREAD BLOCK timing out.
    Array(Option<Vec<Value>>),
}

/// Largest bulk string: the largest `--max-message` plus room for the
/// fields that travel with it (as the mesh's `MAX_FRAME`).
pub const MAX_BULK: usize = (1 << 20) + 1024;
/// Most elements in one array.
pub const MAX_ARRAY: usize = 100_000;
/// Most arrays open at once. The bus's deepest reply, XREAD inside
/// MULTI/EXEC, nests 6 deep: `EXEC[XREAD[[key, [[id, [fields]]]]]]`.
pub const MAX_DEPTH: usize = 8;
/// Longest simple string, error, integer or length line (without the type
/// byte and CRLF).
pub const MAX_LINE: usize = 64 * 1024;
/// Most one reply may cost (see [`Limits::max_total`]): 16 replies of the
/// largest bulk fit, so an XREAD needs `COUNT` ≤ 15 at the largest messages.
pub const MAX_TOTAL: usize = 16 << 20;
/// What each element is charged against `max_total` besides its bytes: the
/// memory of its `Value`.
pub const ELEMENT_COST: usize = std::mem::size_of::<Value>();
/// Most array slots allocated before their elements arrive.
const PREALLOCATE: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest bulk string, in bytes.
    pub max_bulk: usize,
    /// Most elements in one array.
    pub max_array: usize,
    /// Most arrays open at once: a scalar is depth 0, `*1\r\n:1\r\n` depth 1.
    /// A null array is not a level.
    pub max_depth: usize,
    /// Longest line of a simple string, error, integer or length.
    pub max_line: usize,
    /// Most one reply may cost: every byte on the wire, plus [`ELEMENT_COST`]
    /// for every element (charged for a whole array when its header
    /// arrives, before any slot is allocated). It bounds both what one
    /// reply makes the caller buffer and what it decodes into (array slots
    /// grow by doubling, so up to twice their charge).
    pub max_total: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_bulk: MAX_BULK,
            max_array: MAX_ARRAY,
            max_depth: MAX_DEPTH,
            max_line: MAX_LINE,
            max_total: MAX_TOTAL,
        }
    }
}

/// Why a reply was refused. After one, the stream is out of step: close the
/// connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RespError {
    /// The first byte of an element is not one of `+ - : $ *`.
    BadType(u8),
    /// A CR not followed by LF, a bare LF, or bulk data not followed by CRLF.
    BadLineEnd,
    /// A line longer than `max_line`.
    LineTooLong,
    /// An integer that is not an optional sign and decimal digits.
    BadInteger,
    /// An integer outside i64.
    IntegerOverflow,
    /// A bulk or array length that is not decimal digits or `-1`.
    BadLength,
    /// A bulk string longer than `max_bulk` (its announced length).
    BulkTooLong(u64),
    /// An array longer than `max_array` (its announced length).
    ArrayTooLong(u64),
    /// More than `max_depth` arrays open at once.
    TooDeep,
    /// A reply costing more than `max_total`.
    TooLarge,
}

impl fmt::Display for RespError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            RespError::BadType(b) => write!(f, "unknown RESP type byte 0x{b:02x}"),
            RespError::BadLineEnd => write!(f, "line not ended by CRLF"),
            RespError::LineTooLong => write!(f, "line too long"),
            RespError::BadInteger => write!(f, "integer is not decimal digits"),
            RespError::IntegerOverflow => write!(f, "integer out of range"),
            RespError::BadLength => write!(f, "length is not decimal digits or -1"),
            RespError::BulkTooLong(n) => write!(f, "bulk string of {n} bytes over the limit"),
            RespError::ArrayTooLong(n) => write!(f, "array of {n} elements over the limit"),
            RespError::TooDeep => write!(f, "arrays nested too deep"),
            RespError::TooLarge => write!(f, "reply too large"),
        }
    }
}

impl std::error::Error for RespError {}

/// Decodes the first reply in `buf`: `Ok(Some((value, used)))` when it is
/// whole, `Ok(None)` when more bytes are needed (every prefix of a valid
/// reply is incomplete, never an error).
///
/// Each call starts from the beginning of `buf`, so a caller that retries
/// after every read of a large reply re-parses it each time; [`Decoder`]
/// keeps its place instead and is what a connection should use.
pub fn decode(buf: &[u8], limits: &Limits) -> Result<Option<(Value, usize)>, RespError> {
    let mut parser = Parser::new();
    let mut pos = 0;
    Ok(parser.advance(buf, &mut pos, limits)?.map(|v| (v, pos)))
}

/// A resumable decoder: bytes in with [`feed`](Decoder::feed), whole replies
/// out with [`next`](Decoder::next). Elements already complete are never
/// parsed again, and a line is searched for its CRLF only once, so a reply
/// that arrives one byte at a time costs no more than one that arrives whole.
///
/// Call `next` until it returns `Ok(None)` after each `feed`: the bytes held
/// are then only the unfinished element (at most a `max_line` line or a
/// `max_bulk` body). After an error the decoder stays failed, returns the
/// same error, and drops what it is fed.
#[derive(Debug)]
pub struct Decoder {
    buf: Vec<u8>,
    /// Start of the unparsed bytes in `buf`.
    pos: usize,
    parser: Parser,
    limits: Limits,
    failed: Option<RespError>,
}

impl Decoder {
    pub fn new(limits: Limits) -> Decoder {
        Decoder {
            buf: Vec::new(),
            pos: 0,
            parser: Parser::new(),
            limits,
            failed: None,
        }
    }

    pub fn feed(&mut self, bytes: &[u8]) {
        if self.failed.is_some() {
            return;
        }
        // Move the unparsed tail to the front only once it is no longer than
        // what is dropped, so each byte is moved O(1) times on average.
        if self.pos > 0 && self.pos >= self.buf.len() - self.pos {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole reply, `Ok(None)` until one has arrived.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Value>, RespError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let result = self.parser.advance(&self.buf, &mut self.pos, &self.limits);
        if let Err(e) = result {
            self.failed = Some(e);
            self.buf = Vec::new();
            self.pos = 0;
            self.parser = Parser::new();
        }
        result
    }

    /// Bytes fed and not yet part of a returned reply or an element of the
    /// reply in progress.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }
}

/// Appends a command, an array of bulk strings (`*2\r\n$4\r\nLLEN\r\n…`).
pub fn command(args: &[&[u8]], out: &mut Vec<u8>) {
    push_header(out, b'*', args.len() as u64);
    for arg in args {
        push_header(out, b'$', arg.len() as u64);
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

impl Value {
    /// Appends the RESP2 encoding. Simple strings and errors must not hold
    /// CR or LF (decoded ones never do). Nesting is walked with an explicit
    /// stack, like decoding.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut open: Vec<std::slice::Iter<Value>> = Vec::new();
        let mut next = Some(self);
        loop {
            let value = match next.take() {
                Some(v) => v,
                None => match open.last_mut() {
                    None => return,
                    Some(items) => match items.next() {
                        Some(v) => v,
                        None => {
                            open.pop();
                            continue;
                        }
                    },
                },
            };
            match value {
                Value::Simple(s) => push_line(out, b'+', s.as_bytes()),
                Value::Error(s) => push_line(out, b'-', s.as_bytes()),
                Value::Integer(n) => {
                    out.push(b':');
                    if *n < 0 {
                        out.push(b'-');
                    }
                    push_decimal(out, n.unsigned_abs());
                    out.extend_from_slice(b"\r\n");
                }
                Value::Bulk(None) => out.extend_from_slice(b"$-1\r\n"),
                Value::Bulk(Some(data)) => {
                    push_header(out, b'$', data.len() as u64);
                    out.extend_from_slice(data);
                    out.extend_from_slice(b"\r\n");
                }
                Value::Array(None) => out.extend_from_slice(b"*-1\r\n"),
                Value::Array(Some(items)) => {
                    push_header(out, b'*', items.len() as u64);
                    open.push(items.iter());
                }
            }
        }
    }
}

fn push_line(out: &mut Vec<u8>, kind: u8, line: &[u8]) {
    out.push(kind);
    out.extend_from_slice(line);
    out.extend_from_slice(b"\r\n");
}

fn push_header(out: &mut Vec<u8>, kind: u8, n: u64) {
    out.push(kind);
    push_decimal(out, n);
    out.extend_from_slice(b"\r\n");
}

fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// The state of one reply in progress: the arrays still open, whether a
/// bulk body is awaited, how far the current line has been searched, and
/// the reply's cost so far. All positions are relative to the caller's
/// `pos`, so the caller may move its unparsed bytes between calls.
#[derive(Debug)]
struct Parser {
    open: Vec<OpenArray>,
    /// A bulk header was consumed: its body of this many bytes, then CRLF.
    bulk: Option<usize>,
    /// Bytes of the current line already searched for CR.
    scanned: usize,
    cost: usize,
}

#[derive(Debug)]
struct OpenArray {
    items: Vec<Value>,
    len: usize,
}

/// What one element's bytes gave.
enum Step {
    Done(Value),
    /// An array or bulk header: what follows completes it.
    Opened,
}

impl Parser {
    fn new() -> Parser {
        Parser {
            open: Vec::new(),
            bulk: None,
            scanned: 0,
            cost: ELEMENT_COST,
        }
    }

    /// Parses on from `input[*pos..]`, moving `*pos` past each element it
    /// completes. Returns the reply once its last element is in.
    fn advance(
        &mut self,
        input: &[u8],
        pos: &mut usize,
        limits: &Limits,
    ) -> Result<Option<Value>, RespError> {
        loop {
            let rest = input.get(*pos..).unwrap_or_default();
            let Some((step, used)) = self.element(rest, limits)? else {
                return Ok(None);
            };
            *pos += used;
            let Step::Done(mut value) = step else {
                continue;
            };
            loop {
                let Some(mut top) = self.open.pop() else {
                    self.cost = ELEMENT_COST;
                    return Ok(Some(value));
                };
                top.items.push(value);
                if top.items.len() < top.len {
                    self.open.push(top);
                    break;
                }
                value = Value::Array(Some(top.items));
            }
        }
    }

    /// One element header, scalar, or bulk body from the start of `rest`,
    /// and the bytes it used.
    fn element(
        &mut self,
        rest: &[u8],
        limits: &Limits,
    ) -> Result<Option<(Step, usize)>, RespError> {
        if let Some(len) = self.bulk {
            let Some(body) = rest.get(..len.saturating_add(2)) else {
                return Ok(None);
            };
            let (data, end) = body.split_at(len);
            if end != b"\r\n" {
                return Err(RespError::BadLineEnd);
            }
            self.bulk = None;
            return Ok(Some((
                Step::Done(Value::Bulk(Some(data.to_vec()))),
                len + 2,
            )));
        }
        let Some(end) = self.line_end(rest, limits)? else {
            return Ok(None);
        };
        let (kind, line) = (rest[0], &rest[1..end]);
        let used = end + 2;
        self.charge(used, limits)?;
        let step = match kind {
            b'+' => Step::Done(Value::Simple(self.text(line, limits)?)),
            b'-' => Step::Done(Value::Error(self.text(line, limits)?)),
            b':' => Step::Done(Value::Integer(parse_integer(line)?)),
            b'$' => match parse_length(line)? {
                None => Step::Done(Value::Bulk(None)),
                Some(n) => {
                    let len = checked_len(n, limits.max_bulk, RespError::BulkTooLong(n))?;
                    self.charge(len.saturating_add(2), limits)?;
                    self.bulk = Some(len);
                    Step::Opened
                }
            },
            b'*' => match parse_length(line)? {
                None => Step::Done(Value::Array(None)),
                Some(n) => {
                    let len = checked_len(n, limits.max_array, RespError::ArrayTooLong(n))?;
                    if self.open.len() >= limits.max_depth {
                        return Err(RespError::TooDeep);
                    }
                    if len == 0 {
                        Step::Done(Value::Array(Some(Vec::new())))
                    } else {
                        self.charge(len.saturating_mul(ELEMENT_COST), limits)?;
                        // Slots grow as elements arrive: a header alone
                        // commits little, whatever it announces.
                        self.open.push(OpenArray {
                            items: Vec::with_capacity(len.min(PREALLOCATE)),
                            len,
                        });
                        Step::Opened
                    }
                }
            },
            other => return Err(RespError::BadType(other)),
        };
        Ok(Some((step, used)))
    }

    /// Where the CR of the line starting `rest` is, once its LF is in too.
    /// The search resumes where the last call stopped.
    fn line_end(&mut self, rest: &[u8], limits: &Limits) -> Result<Option<usize>, RespError> {
        let Some(&kind) = rest.first() else {
            return Ok(None);
        };
        if !matches!(kind, b'+' | b'-' | b':' | b'$' | b'*') {
            return Err(RespError::BadType(kind));
        }
        // The type byte and `max_line` bytes: the CR is at `last_cr` or before.
        let last_cr = limits.max_line.saturating_add(1);
        let from = self.scanned.max(1);
        let to = rest.len().min(last_cr.saturating_add(1));
        let found = rest
            .get(from..to)
            .and_then(|window| window.iter().position(|&b| b == b'\r' || b == b'\n'));
        if let Some(i) = found.map(|i| from + i) {
            if rest[i] == b'\n' {
                return Err(RespError::BadLineEnd);
            }
            return match rest.get(i + 1) {
                None => {
                    self.scanned = i;
                    Ok(None)
                }
                Some(b'\n') => {
                    self.scanned = 0;
                    Ok(Some(i))
                }
                Some(_) => Err(RespError::BadLineEnd),
            };
        }
        if rest.len() > last_cr {
            return Err(RespError::LineTooLong);
        }
        self.scanned = rest.len();
        Ok(None)
    }

    fn text(&mut self, line: &[u8], limits: &Limits) -> Result<String, RespError> {
        match String::from_utf8(line.to_vec()) {
            Ok(s) => Ok(s),
            Err(e) => {
                let s = String::from_utf8_lossy(e.as_bytes()).into_owned();
                // U+FFFD takes 3 bytes where the invalid byte took 1.
                self.charge(s.len().saturating_sub(line.len()), limits)?;
                Ok(s)
            }
        }
    }

    fn charge(&mut self, n: usize, limits: &Limits) -> Result<(), RespError> {
        self.cost = self.cost.saturating_add(n);
        if self.cost > limits.max_total {
            return Err(RespError::TooLarge);
        }
        Ok(())
    }
}

fn checked_len(n: u64, max: usize, too_long: RespError) -> Result<usize, RespError> {
    match usize::try_from(n) {
        Ok(len) if len <= max => Ok(len),
        _ => Err(too_long),
    }
}

/// `-1` is `None`; otherwise one or more decimal digits.
fn parse_length(line: &[u8]) -> Result<Option<u64>, RespError> {
    if line == b"-1" {
        return Ok(None);
    }
    if line.is_empty() {
        return Err(RespError::BadLength);
    }
    let mut n: u64 = 0;
    for &b in line {
        if !b.is_ascii_digit() {
            return Err(RespError::BadLength);
        }
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(b - b'0')))
            .ok_or(RespError::BadLength)?;
    }
    Ok(Some(n))
}

/// An optional `+` or `-`, then one or more decimal digits, within i64.
fn parse_integer(line: &[u8]) -> Result<i64, RespError> {
    let (negative, digits) = match line.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, line),
    };
    if digits.is_empty() {
        return Err(RespError::BadInteger);
    }
    let mut n: i64 = 0;
    for &b in digits {
        if !b.is_ascii_digit() {
            return Err(RespError::BadInteger);
        }
        let d = i64::from(b - b'0');
        // Accumulate toward the sign so that i64::MIN parses.
        n = n
            .checked_mul(10)
            .and_then(|n| {
                if negative {
                    n.checked_sub(d)
                } else {
                    n.checked_add(d)
                }
            })
            .ok_or(RespError::IntegerOverflow)?;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Value::*;

    fn bulk(s: &[u8]) -> Value {
        Bulk(Some(s.to_vec()))
    }

    fn array(items: Vec<Value>) -> Value {
        Array(Some(items))
    }

    fn small(f: impl FnOnce(&mut Limits)) -> Limits {
        let mut limits = Limits::default();
        f(&mut limits);
        limits
    }

    /// Every example of the RESP2 part of the spec, and replies this bus
    /// sees: (name, bytes, value). Each is also the canonical encoding.
    fn examples() -> Vec<(&'static str, &'static [u8], Value)> {
        vec![
            ("simple OK", b"+OK\r\n", Simple("OK".into())),
            ("simple empty", b"+\r\n", Simple(String::new())),
            (
                "error",
                b"-Error message\r\n",
                Error("Error message".into()),
            ),
            (
                "error unknown command",
                b"-ERR unknown command 'asdf'\r\n",
                Error("ERR unknown command 'asdf'".into()),
            ),
            (
                "error wrongtype",
                b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
                Error("WRONGTYPE Operation against a key holding the wrong kind of value".into()),
            ),
            ("integer 0", b":0\r\n", Integer(0)),
            ("integer 1000", b":1000\r\n", Integer(1000)),
            ("integer LLEN", b":48293\r\n", Integer(48293)),
            ("integer negative", b":-52\r\n", Integer(-52)),
            (
                "integer max",
                b":9223372036854775807\r\n",
                Integer(i64::MAX),
            ),
            (
                "integer min",
                b":-9223372036854775808\r\n",
                Integer(i64::MIN),
            ),
            ("bulk hello", b"$5\r\nhello\r\n", bulk(b"hello")),
            ("bulk empty", b"$0\r\n\r\n", bulk(b"")),
            ("bulk null", b"$-1\r\n", Bulk(None)),
            ("bulk with CRLF", b"$4\r\n\r\n\r\n\r\n", bulk(b"\r\n\r\n")),
            ("bulk binary", b"$3\r\n\0\xff\r\r\n", bulk(b"\0\xff\r")),
            ("array empty", b"*0\r\n", array(vec![])),
            (
                "array two bulks",
                b"*2\r\n$5\r\nhello\r\n$5\r\nworld\r\n",
                array(vec![bulk(b"hello"), bulk(b"world")]),
            ),
            (
                "array three integers",
                b"*3\r\n:1\r\n:2\r\n:3\r\n",
                array(vec![Integer(1), Integer(2), Integer(3)]),
            ),
            (
                "array mixed",
                b"*5\r\n:1\r\n:2\r\n:3\r\n:4\r\n$5\r\nhello\r\n",
                array(vec![
                    Integer(1),
                    Integer(2),
                    Integer(3),
                    Integer(4),
                    bulk(b"hello"),
                ]),
            ),
            (
                "array nested",
                b"*2\r\n*3\r\n:1\r\n:2\r\n:3\r\n*2\r\n+Hello\r\n-World\r\n",
                array(vec![
                    array(vec![Integer(1), Integer(2), Integer(3)]),
                    array(vec![Simple("Hello".into()), Error("World".into())]),
                ]),
            ),
            ("array null", b"*-1\r\n", Array(None)),
            (
                "array null element",
                b"*3\r\n$5\r\nhello\r\n$-1\r\n$5\r\nworld\r\n",
                array(vec![bulk(b"hello"), Bulk(None), bulk(b"world")]),
            ),
            (
                "command LLEN",
                b"*2\r\n$4\r\nLLEN\r\n$6\r\nmylist\r\n",
                array(vec![bulk(b"LLEN"), bulk(b"mylist")]),
            ),
            (
                "XREAD reply",
                b"*1\r\n*2\r\n$2\r\nwc\r\n*1\r\n*2\r\n$15\r\n1700000000000-3\r\n\
                  *2\r\n$1\r\nm\r\n$2\r\nhi\r\n",
                array(vec![array(vec![
                    bulk(b"wc"),
                    array(vec![array(vec![
                        bulk(b"1700000000000-3"),
                        array(vec![bulk(b"m"), bulk(b"hi")]),
                    ])]),
                ])]),
            ),
        ]
    }

    #[test]
    fn spec_examples_decode_and_encode() {
        for (name, input, want) in examples() {
            let got = decode(input, &Limits::default());
            assert_eq!(got, Ok(Some((want.clone(), input.len()))), "{name}");
            let mut out = Vec::new();
            want.encode(&mut out);
            assert_eq!(out, input, "{name}: encoding");
        }
    }

    #[test]
    fn every_prefix_is_incomplete() {
        for (name, input, _) in examples() {
            for n in 0..input.len() {
                let got = decode(&input[..n], &Limits::default());
                assert_eq!(got, Ok(None), "{name}: prefix of {n} bytes");
            }
        }
    }

    #[test]
    fn decoder_byte_at_a_time_and_all_at_once() {
        let mut all = Vec::new();
        let mut want = Vec::new();
        for (_, input, value) in examples() {
            all.extend_from_slice(input);
            want.push(value);
        }
        // One feed, pipelined replies come out in order.
        let mut decoder = Decoder::new(Limits::default());
        decoder.feed(&all);
        let mut got = Vec::new();
        while let Some(v) = decoder.next().expect("valid") {
            got.push(v);
        }
        assert_eq!(got, want);
        assert_eq!(decoder.buffered(), 0);
        // One byte per feed: each reply appears exactly when its last byte does.
        let mut decoder = Decoder::new(Limits::default());
        let mut got = Vec::new();
        for b in &all {
            decoder.feed(std::slice::from_ref(b));
            while let Some(v) = decoder.next().expect("valid") {
                got.push(v);
            }
        }
        assert_eq!(got, want);
        assert_eq!(decoder.buffered(), 0);
    }

    #[test]
    fn lenient_but_valid_forms() {
        let cases: &[(&str, &[u8], Value)] = &[
            ("integer with plus", b":+5\r\n", Integer(5)),
            ("integer minus zero", b":-0\r\n", Integer(0)),
            ("leading zeros", b"$003\r\nabc\r\n", bulk(b"abc")),
            (
                "invalid UTF-8 error",
                b"-ERR bad \xff\r\n",
                Error("ERR bad \u{fffd}".into()),
            ),
        ];
        for (name, input, want) in cases {
            let got = decode(input, &Limits::default());
            assert_eq!(got, Ok(Some((want.clone(), input.len()))), "{name}");
        }
    }

    #[test]
    fn malformed_replies_are_errors() {
        use RespError::*;
        let cases: &[(&str, &[u8], RespError)] = &[
            ("unknown type", b"?x\r\n", BadType(b'?')),
            ("RESP3 null", b"_\r\n", BadType(b'_')),
            ("RESP3 map", b"%1\r\n", BadType(b'%')),
            ("inline text", b"PONG\r\n", BadType(b'P')),
            ("bad type in array", b"*1\r\n#t\r\n", BadType(b'#')),
            ("bare LF", b"+OK\n", BadLineEnd),
            ("CR then other", b"+OK\rX", BadLineEnd),
            ("LF inside line", b"+O\nK\r\n", BadLineEnd),
            ("bulk body too long", b"$3\r\nabcd\r\n", BadLineEnd),
            ("bulk body no CRLF", b"$3\r\nabcXY", BadLineEnd),
            ("empty length", b"$\r\n", BadLength),
            ("letter length", b"$a\r\n", BadLength),
            ("space in length", b"$ 3\r\n", BadLength),
            ("plus length", b"$+3\r\n", BadLength),
            ("minus two", b"$-2\r\n", BadLength),
            ("minus zero", b"$-0\r\n", BadLength),
            ("array minus two", b"*-2\r\n", BadLength),
            ("array minus", b"*-\r\n", BadLength),
            ("length past u64", b"$18446744073709551616\r\n", BadLength),
            (
                "length u64 max",
                b"$18446744073709551615\r\n",
                BulkTooLong(u64::MAX),
            ),
            (
                "array u64 max",
                b"*18446744073709551615\r\n",
                ArrayTooLong(u64::MAX),
            ),
            ("empty integer", b":\r\n", BadInteger),
            ("lone minus", b":-\r\n", BadInteger),
            ("letter in integer", b":1a\r\n", BadInteger),
            ("float", b":1.5\r\n", BadInteger),
            (
                "integer past max",
                b":9223372036854775808\r\n",
                IntegerOverflow,
            ),
            (
                "integer past min",
                b":-9223372036854775809\r\n",
                IntegerOverflow,
            ),
        ];
        for (name, input, want) in cases {
            assert_eq!(decode(input, &Limits::default()), Err(*want), "{name}");
            let mut decoder = Decoder::new(Limits::default());
            for b in *input {
                decoder.feed(std::slice::from_ref(b));
                if decoder.next().is_err() {
                    break;
                }
            }
            assert_eq!(decoder.next(), Err(*want), "{name}: byte at a time");
        }
    }

    /// (name, limits, accepted at the limit, refused at limit + 1, error).
    #[test]
    fn each_limit_at_limit_and_limit_plus_one() {
        use RespError::*;
        type Case = (&'static str, Limits, Vec<u8>, Vec<u8>, RespError);
        let cases: Vec<Case> = vec![
            (
                "max_bulk",
                small(|l| l.max_bulk = 5),
                b"$5\r\nhello\r\n".to_vec(),
                b"$6\r\n".to_vec(),
                BulkTooLong(6),
            ),
            (
                "max_array",
                small(|l| l.max_array = 3),
                b"*3\r\n:1\r\n:2\r\n:3\r\n".to_vec(),
                b"*4\r\n".to_vec(),
                ArrayTooLong(4),
            ),
            (
                "max_line, whole",
                small(|l| l.max_line = 4),
                b"+abcd\r\n".to_vec(),
                b"+abcde\r\n".to_vec(),
                LineTooLong,
            ),
            (
                "max_line, before the CR arrives",
                small(|l| l.max_line = 4),
                b"-abcd\r\n".to_vec(),
                b"-abcde".to_vec(),
                LineTooLong,
            ),
            (
                "max_line, integer",
                small(|l| l.max_line = 4),
                b":1234\r\n".to_vec(),
                b":12345\r\n".to_vec(),
                LineTooLong,
            ),
            (
                "max_line, length",
                small(|l| l.max_line = 4),
                b"$0001\r\nx\r\n".to_vec(),
                b"$00001".to_vec(),
                LineTooLong,
            ),
            (
                "max_depth 3",
                small(|l| l.max_depth = 3),
                b"*1\r\n*1\r\n*1\r\n:1\r\n".to_vec(),
                b"*1\r\n*1\r\n*1\r\n*0\r\n".to_vec(),
                TooDeep,
            ),
            (
                "max_depth 0",
                small(|l| l.max_depth = 0),
                b":1\r\n".to_vec(),
                b"*0\r\n".to_vec(),
                TooDeep,
            ),
            (
                "max_depth default",
                Limits::default(),
                [&b"*1\r\n".repeat(MAX_DEPTH)[..], b":1\r\n"].concat(),
                b"*1\r\n".repeat(MAX_DEPTH + 1),
                TooDeep,
            ),
        ];
        for (name, limits, ok, refused, err) in cases {
            assert!(
                matches!(decode(&ok, &limits), Ok(Some((_, n))) if n == ok.len()),
                "{name}: at the limit"
            );
            assert_eq!(decode(&refused, &limits), Err(err), "{name}: limit + 1");
        }
    }

    /// A reply's cost is its bytes plus ELEMENT_COST per element; at
    /// `max_total` = cost it is accepted, at cost - 1 refused, and a bulk or
    /// array header that announces too much is refused before its body.
    #[test]
    fn max_total_at_limit_and_limit_plus_one() {
        let cases: &[(&str, &[u8], usize)] = &[
            ("integer", b":1\r\n", 4),
            ("bulk", b"$5\r\nhello\r\n", 11),
            ("array", b"*2\r\n$5\r\nhello\r\n:1\r\n", 19),
            ("nested", b"*2\r\n*1\r\n+a\r\n*0\r\n", 16),
            ("invalid UTF-8 costs its U+FFFD", b"+\xff\r\n", 4 + 2),
        ];
        let elements = |input: &[u8]| {
            let (v, _) = decode(input, &Limits::default())
                .ok()
                .flatten()
                .expect("valid");
            let mut n = 0;
            let mut stack = vec![v];
            while let Some(v) = stack.pop() {
                n += 1;
                if let Array(Some(items)) = v {
                    stack.extend(items);
                }
            }
            n
        };
        for &(name, input, bytes) in cases {
            let cost = bytes + elements(input) * ELEMENT_COST;
            let at = small(|l| l.max_total = cost);
            let below = small(|l| l.max_total = cost - 1);
            assert!(
                matches!(decode(input, &at), Ok(Some(_))),
                "{name}: at {cost}"
            );
            assert_eq!(
                decode(input, &below),
                Err(RespError::TooLarge),
                "{name}: {cost} - 1"
            );
        }
        // Refused from the header alone.
        let limits = small(|l| l.max_total = 1000);
        assert_eq!(decode(b"$1000\r\n", &limits), Err(RespError::TooLarge));
        assert_eq!(decode(b"*100\r\n", &limits), Err(RespError::TooLarge));
        // Each reply of a pipeline has its own budget.
        let limits = small(|l| l.max_total = ELEMENT_COST + 4);
        let mut decoder = Decoder::new(limits);
        decoder.feed(&b":1\r\n".repeat(1000));
        for _ in 0..1000 {
            assert_eq!(decoder.next(), Ok(Some(Integer(1))));
        }
    }

    fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(f)
            .expect("spawn")
            .join()
            .expect("no stack overflow")
    }

    #[test]
    fn hundred_thousand_deep_nesting_is_refused_without_recursion() {
        let deep = [&b"*1\r\n".repeat(100_000)[..], b":1\r\n"].concat();
        let input = deep.clone();
        let got = on_small_stack(move || decode(&input, &Limits::default()));
        assert_eq!(got, Err(RespError::TooDeep));
        let got = on_small_stack(move || {
            let mut decoder = Decoder::new(Limits::default());
            decoder.feed(&deep);
            decoder.next()
        });
        assert_eq!(got, Err(RespError::TooDeep));
        // With no depth limit, the parser itself still keeps 100,000 open
        // arrays on the heap, not the stack (no leaf: nothing deep is built).
        let got = on_small_stack(|| {
            let limits = small(|l| l.max_depth = usize::MAX);
            decode(&b"*1\r\n".repeat(100_000), &limits)
        });
        assert_eq!(got, Ok(None));
    }

    #[test]
    fn large_replies_fed_in_small_pieces_are_linear() {
        // A 1 MiB bulk one byte at a time, and a MAX_LINE simple string one
        // byte at a time: quadratic re-scanning would take minutes here.
        let mut input = Vec::new();
        command(&[&vec![b'x'; MAX_BULK]], &mut input);
        input.extend_from_slice(b"+");
        input.extend_from_slice(&vec![b'y'; MAX_LINE]);
        input.extend_from_slice(b"\r\n");
        let mut decoder = Decoder::new(Limits::default());
        let mut got = Vec::new();
        for b in &input {
            decoder.feed(std::slice::from_ref(b));
            while let Some(v) = decoder.next().expect("valid") {
                got.push(v);
            }
        }
        assert_eq!(
            got,
            vec![
                array(vec![bulk(&vec![b'x'; MAX_BULK])]),
                Simple("y".repeat(MAX_LINE))
            ]
        );
    }

    #[test]
    fn a_failed_decoder_stays_failed() {
        let mut decoder = Decoder::new(Limits::default());
        decoder.feed(b"+OK\r\n!oops\r\n+OK\r\n");
        assert_eq!(decoder.next(), Ok(Some(Simple("OK".into()))));
        assert_eq!(decoder.next(), Err(RespError::BadType(b'!')));
        decoder.feed(b"+OK\r\n");
        assert_eq!(decoder.next(), Err(RespError::BadType(b'!')));
        assert_eq!(decoder.buffered(), 0);
    }

    #[test]
    fn commands_encode_as_arrays_of_bulks() {
        type Case<'a> = (&'a str, &'a [&'a [u8]], &'a [u8]);
        let cases: &[Case] = &[
            ("no args", &[], b"*0\r\n"),
            (
                "LLEN",
                &[b"LLEN", b"mylist"],
                b"*2\r\n$4\r\nLLEN\r\n$6\r\nmylist\r\n",
            ),
            (
                "empty arg",
                &[b"GET", b""],
                b"*2\r\n$3\r\nGET\r\n$0\r\n\r\n",
            ),
            ("binary arg", &[b"\r\n\0"], b"*1\r\n$3\r\n\r\n\0\r\n"),
        ];
        for (name, args, want) in cases {
            let mut out = b"prefix".to_vec();
            command(args, &mut out);
            assert_eq!(&out[6..], *want, "{name}");
            assert!(matches!(decode(&out[6..], &Limits::default()), Ok(Some(_))));
        }
    }

    #[test]
    fn display_names_the_problem() {
        assert_eq!(
            RespError::BadType(b'!').to_string(),
            "unknown RESP type byte 0x21"
        );
        assert_eq!(
            RespError::BulkTooLong(7).to_string(),
            "bulk string of 7 bytes over the limit"
        );
    }
}
