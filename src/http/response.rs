//! Response heads: the status line, `date`, `server`, the caller's headers,
//! `content-length` and `connection: close`, written into an output buffer
//! the reactor then sends. Also the IMF-fixdate `Date` value and a cache of
//! it, since every response carries one and the second rarely changes.

use std::time::{SystemTime, UNIX_EPOCH};

/// Writes a response head into `out`: `HTTP/1.1 {status} {reason}`, `date`,
/// `server: watercooler`, each of `headers` in order, `content-length` if
/// given, `connection: close` unless `keep_alive`, then the blank line.
///
/// A header whose name or value contains CR or LF is left out rather than
/// let it split the response.
pub fn write_head(
    out: &mut Vec<u8>,
    status: u16,
    headers: &[(&str, &str)],
    content_length: Option<usize>,
    keep_alive: bool,
    date: &str,
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    push_decimal(out, u64::from(status));
    out.push(b' ');
    out.extend_from_slice(reason(status).as_bytes());
    out.extend_from_slice(b"\r\n");
    push_header(out, "date", date);
    push_header(out, "server", "watercooler");
    for (name, value) in headers {
        push_header(out, name, value);
    }
    if let Some(length) = content_length {
        out.extend_from_slice(b"content-length: ");
        push_decimal(out, length as u64);
        out.extend_from_slice(b"\r\n");
    }
    if !keep_alive {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

fn push_header(out: &mut Vec<u8>, name: &str, value: &str) {
    let splits = |s: &str| s.bytes().any(|b| b == b'\r' || b == b'\n');
    if splits(name) || splits(value) {
        return;
    }
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Appends `n` in decimal without allocating.
fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        if let Some(slot) = digits.get_mut(start) {
            *slot = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(digits.get(start..).unwrap_or(&[]));
}

/// The standard reason phrase for the statuses watercooler sends, else "Unknown".
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        421 => "Misdirected Request",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

const WEEKDAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// IMF-fixdate (RFC 9110 §5.6.7), e.g. "Sun, 06 Nov 1994 08:49:37 GMT", for
/// seconds since the Unix epoch.
pub fn http_date(unix_secs: u64) -> String {
    let days = unix_secs / 86_400;
    let secs_of_day = unix_secs % 86_400;
    // 1970-01-01 was a Thursday.
    let weekday = WEEKDAYS.get(((days + 4) % 7) as usize).unwrap_or(&"Sun");
    let (year, month, day) = civil_from_days(days);
    let month = MONTHS.get((month - 1) as usize).unwrap_or(&"Jan");
    format!(
        "{weekday}, {day:02} {month} {year:04} {:02}:{:02}:{:02} GMT",
        secs_of_day / 3600,
        secs_of_day / 60 % 60,
        secs_of_day % 60
    )
}

/// RFC 3339 UTC to the second, e.g. "1994-11-06T08:49:37Z" (a page's
/// `<time datetime>`).
pub fn iso_time(unix_secs: u64) -> String {
    let (year, month, day) = civil_from_days(unix_secs / 86_400);
    let s = unix_secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// (year, month 1..=12, day 1..=31) for days since 1970-01-01, by Howard
/// Hinnant's days-to-civil algorithm (eras of 400 years starting in March).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// The formatted `Date` of the current second, recomputed only when the
/// second changes; the reactor asks for it once per response.
#[derive(Debug, Default)]
pub struct DateCache {
    /// The second `text` was made for; `None` before the first call.
    secs: Option<u64>,
    text: String,
}

impl DateCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// The date for `now`. A clock before 1970 reads as the epoch.
    pub fn get(&mut self, now: SystemTime) -> &str {
        let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if self.secs != Some(secs) {
            self.secs = Some(secs);
            self.text = http_date(secs);
        }
        &self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn iso_times() {
        assert_eq!(iso_time(784_111_777), "1994-11-06T08:49:37Z");
        assert_eq!(iso_time(0), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn dates() {
        let cases: &[(&str, u64, &str)] = &[
            ("epoch", 0, "Thu, 01 Jan 1970 00:00:00 GMT"),
            ("rfc example", 784_111_777, "Sun, 06 Nov 1994 08:49:37 GMT"),
            (
                "leap day 2000",
                951_782_400,
                "Tue, 29 Feb 2000 00:00:00 GMT",
            ),
            ("end of 1999", 946_684_799, "Fri, 31 Dec 1999 23:59:59 GMT"),
            (
                "2038 boundary",
                2_147_483_648,
                "Tue, 19 Jan 2038 03:14:08 GMT",
            ),
            (
                "leap day 2024",
                1_709_164_800,
                "Thu, 29 Feb 2024 00:00:00 GMT",
            ),
            ("march 2100", 4_107_542_400, "Mon, 01 Mar 2100 00:00:00 GMT"),
        ];
        for (name, secs, expected) in cases {
            assert_eq!(http_date(*secs), *expected, "case {name}");
        }
        // Far future must not panic.
        let _ = http_date(u64::MAX);
    }

    #[test]
    fn date_cache_follows_the_second() {
        let mut cache = DateCache::new();
        let t = UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(cache.get(t), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(
            cache.get(t + Duration::from_millis(999)),
            "Sun, 06 Nov 1994 08:49:37 GMT"
        );
        assert_eq!(
            cache.get(t + Duration::from_secs(1)),
            "Sun, 06 Nov 1994 08:49:38 GMT"
        );
        assert_eq!(
            cache.get(UNIX_EPOCH - Duration::from_secs(5)),
            "Thu, 01 Jan 1970 00:00:00 GMT"
        );
    }

    #[test]
    fn heads() {
        let date = "Sun, 06 Nov 1994 08:49:37 GMT";
        type Case<'a> = (
            &'a str,
            u16,
            &'a [(&'a str, &'a str)],
            Option<usize>,
            bool,
            &'a str,
        );
        let cases: &[Case] = &[
            (
                "ok with length",
                200,
                &[("content-type", "text/html")],
                Some(12),
                true,
                "HTTP/1.1 200 OK\r\ndate: Sun, 06 Nov 1994 08:49:37 GMT\r\nserver: watercooler\r\n\
                 content-type: text/html\r\ncontent-length: 12\r\n\r\n",
            ),
            (
                "redirect and close",
                303,
                &[("location", "/")],
                Some(0),
                false,
                "HTTP/1.1 303 See Other\r\ndate: Sun, 06 Nov 1994 08:49:37 GMT\r\nserver: watercooler\r\n\
                 location: /\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            ),
            (
                "stream without length",
                200,
                &[("content-type", "text/event-stream"), ("cache-control", "no-cache")],
                None,
                true,
                "HTTP/1.1 200 OK\r\ndate: Sun, 06 Nov 1994 08:49:37 GMT\r\nserver: watercooler\r\n\
                 content-type: text/event-stream\r\ncache-control: no-cache\r\n\r\n",
            ),
            (
                "unknown status, split header dropped",
                599,
                &[("x-evil", "a\r\nset-cookie: b")],
                Some(18_446_744),
                true,
                "HTTP/1.1 599 Unknown\r\ndate: Sun, 06 Nov 1994 08:49:37 GMT\r\nserver: watercooler\r\n\
                 content-length: 18446744\r\n\r\n",
            ),
        ];
        for (name, status, headers, length, keep_alive, expected) in cases {
            let mut out = Vec::new();
            write_head(&mut out, *status, headers, *length, *keep_alive, date);
            assert_eq!(String::from_utf8_lossy(&out), *expected, "case {name}");
        }
    }

    #[test]
    fn decimals() {
        for n in [0u64, 7, 10, 999, u64::MAX] {
            let mut out = Vec::new();
            push_decimal(&mut out, n);
            assert_eq!(out, n.to_string().into_bytes());
        }
    }

    #[test]
    fn reasons() {
        let cases: &[(u16, &str)] = &[
            (200, "OK"),
            (304, "Not Modified"),
            (405, "Method Not Allowed"),
            (431, "Request Header Fields Too Large"),
            (505, "HTTP Version Not Supported"),
            (299, "Unknown"),
        ];
        for (status, expected) in cases {
            assert_eq!(reason(*status), *expected, "status {status}");
        }
    }
}
