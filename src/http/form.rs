//! `application/x-www-form-urlencoded` bodies and query strings: find a
//! field and decode its value (or every value of a repeated field).
//! `POST /publish` reads `message` with it, `GET /listen` its `room`s; the
//! request parser borrows `percent_decode` for the path (without `+`).

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FormError {
    /// A `%` not followed by two hex digits.
    BadEscape,
    /// The decoded value is not UTF-8.
    InvalidUtf8,
}

impl FormError {
    /// Both mean the client sent a malformed form: 400.
    pub fn status(self) -> u16 {
        400
    }
}

impl fmt::Display for FormError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FormError::BadEscape => "bad percent-escape in form data",
            FormError::InvalidUtf8 => "form data is not valid UTF-8",
        })
    }
}

/// The first value of field `name` in a urlencoded string, decoded.
///
/// Pairs are split on `&`; a key without `=` has the value `""`. Every key up
/// to the match is decoded (a bad escape in one is an error), but only the
/// chosen value is: a bad escape in another field's value is ignored.
/// `Ok(None)` when the field is absent.
pub fn field(encoded: &[u8], name: &str) -> Result<Option<String>, FormError> {
    let mut found = None;
    each(encoded, name, |value| {
        found = Some(value);
        false
    })?;
    Ok(found)
}

/// Every value of field `name`, decoded, in order; at most `max` (a
/// query with more yields its first `max`, and `true` to say it had more).
pub fn fields(encoded: &[u8], name: &str, max: usize) -> Result<(Vec<String>, bool), FormError> {
    let mut values = Vec::new();
    let mut more = false;
    each(encoded, name, |value| {
        if values.len() < max {
            values.push(value);
            true
        } else {
            more = true;
            false
        }
    })?;
    Ok((values, more))
}

/// Calls `f` with each decoded value of `name` until it returns false.
fn each(encoded: &[u8], name: &str, mut f: impl FnMut(String) -> bool) -> Result<(), FormError> {
    for pair in encoded.split(|&b| b == b'&') {
        let (key, value) = match pair.iter().position(|&b| b == b'=') {
            Some(eq) => (
                pair.get(..eq).unwrap_or(&[]),
                pair.get(eq + 1..).unwrap_or(&[]),
            ),
            None => (pair, &[][..]),
        };
        if percent_decode(key, true)? == name.as_bytes() {
            let value = percent_decode(value, true)?;
            let value = String::from_utf8(value).map_err(|_| FormError::InvalidUtf8)?;
            if !f(value) {
                break;
            }
        }
    }
    Ok(())
}

/// Decodes `%XX` escapes (either case of hex digit), and `+` as a space when
/// `plus_as_space` (forms and queries, not paths). The result may not be UTF-8.
pub(crate) fn percent_decode(input: &[u8], plus_as_space: bool) -> Result<Vec<u8>, FormError> {
    let mut out = Vec::with_capacity(input.len());
    let mut bytes = input.iter().copied();
    while let Some(b) = bytes.next() {
        match b {
            b'%' => {
                let hi = bytes.next().and_then(hex_value);
                let lo = bytes.next().and_then(hex_value);
                match (hi, lo) {
                    (Some(hi), Some(lo)) => out.push(hi << 4 | lo),
                    _ => return Err(FormError::BadEscape),
                }
            }
            b'+' if plus_as_space => out.push(b' '),
            _ => out.push(b),
        }
    }
    Ok(out)
}

/// The value of one hex digit, if `b` is one.
pub(crate) fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_table() {
        type Expected = Result<Option<&'static str>, FormError>;
        #[rustfmt::skip]
        let cases: &[(&str, &[u8], &str, Expected)] = &[
            ("plus and escape", b"message=hello+world%21", "message", Ok(Some("hello world!"))),
            ("multibyte", b"message=%E2%82%AC", "message", Ok(Some("\u{20ac}"))),
            ("lowercase hex", b"message=%e2%82%ac", "message", Ok(Some("\u{20ac}"))),
            ("bad hex", b"message=%ZZ", "message", Err(FormError::BadEscape)),
            ("half a character", b"message=%C3", "message", Err(FormError::InvalidUtf8)),
            ("truncated escape", b"message=%4", "message", Err(FormError::BadEscape)),
            ("lone percent", b"message=%", "message", Err(FormError::BadEscape)),
            ("absent", b"a=1&b=2", "message", Ok(None)),
            ("empty input", b"", "message", Ok(None)),
            ("empty value", b"a=1&message=&b", "message", Ok(Some(""))),
            ("key without =", b"a=1&message&b", "message", Ok(Some(""))),
            ("first wins", b"message=one&message=two", "message", Ok(Some("one"))),
            ("escaped key", b"m%65ssage=x", "message", Ok(Some("x"))),
            ("plus in key", b"my+field=x", "my field", Ok(Some("x"))),
            ("other value bad", b"a=%ZZ&message=ok", "message", Ok(Some("ok"))),
            ("other value not utf8", b"a=%FF&message=ok", "message", Ok(Some("ok"))),
            ("equals in value", b"message=a=b", "message", Ok(Some("a=b"))),
            ("encoded ampersand", b"message=a%26b", "message", Ok(Some("a&b"))),
            ("raw utf8", "message=caf\u{e9}".as_bytes(), "message", Ok(Some("caf\u{e9}"))),
            ("raw invalid utf8", b"message=\xff", "message", Err(FormError::InvalidUtf8)),
            ("empty pairs", b"&&message=x&&", "message", Ok(Some("x"))),
            ("prefix of name", b"messages=x", "message", Ok(None)),
        ];
        for (name, input, field_name, expected) in cases {
            let got = field(input, field_name);
            let got = got.as_ref().map(|v| v.as_deref()).map_err(|e| *e);
            assert_eq!(got, *expected, "case {name}");
        }
    }

    #[test]
    fn all_values_up_to_a_bound() {
        let q = b"room=a&x=1&room=b&room=c";
        let got = fields(q, "room", 2).unwrap();
        assert_eq!(got, (vec!["a".to_string(), "b".to_string()], true));
        assert!(!fields(q, "room", 3).unwrap().1);
        assert_eq!(fields(b"", "room", 3).unwrap(), (vec![], false));
        assert_eq!(fields(b"room=%zz", "room", 3), Err(FormError::BadEscape));
    }

    #[test]
    fn errors_are_400() {
        assert_eq!(FormError::BadEscape.status(), 400);
        assert_eq!(FormError::InvalidUtf8.status(), 400);
        assert!(!FormError::BadEscape.to_string().is_empty());
    }

    #[test]
    fn path_decoding_keeps_plus() {
        assert_eq!(percent_decode(b"/a+b%20c", false), Ok(b"/a+b c".to_vec()));
    }

    #[test]
    fn every_prefix_never_panics() {
        let input = b"a=%E2%82%AC&message=hello+world%21&b";
        for end in 0..=input.len() {
            let _ = field(input.get(..end).unwrap_or(&[]), "message");
        }
    }
}
