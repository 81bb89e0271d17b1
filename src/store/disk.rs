//! The segment files on disk: their names, listing them, creating one, and
//! reading one through the pure scanner in `segment.rs` with one buffer.
//! `log.rs` decides when each happens and what to do with what is found.

use std::fs::{self, File, OpenOptions};
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::header::{HeaderError, SegmentHeader, MAX_HEADER};
use super::record::{RecordRef, MAX_RECORD};
use super::segment::{ScanEnd, Scanner};

/// Digits in a segment's number: names sort in the order numbers do.
const NAME_DIGITS: usize = 20;
const SUFFIX: &str = ".log";

/// The first read buffer for a segment is its size (at least this much).
const MIN_WINDOW: usize = 64 << 10;
/// A window this large can decide any header, then any record, so a scan
/// always progresses; a smaller one that fills up without progress grows
/// to it (a file longer than its size hint, or a read cut short).
const FULL_WINDOW: usize = MAX_HEADER + MAX_RECORD;
/// The most it holds: a larger segment (a bigger `segment_bytes` in an
/// earlier run, or a stray file) is read in pieces, so memory stays bounded.
const MAX_WINDOW: usize = 16 << 20;

/// `00000000000000000042.log` for segment 42.
pub fn segment_name(number: u64) -> String {
    format!("{number:0NAME_DIGITS$}{SUFFIX}")
}

pub fn segment_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(segment_name(number))
}

/// The number in a segment's file name; `None` for any other file.
pub fn parse_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SUFFIX)?;
    if digits.len() != NAME_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The segments in `dir`, by number. Other files are ignored.
pub fn list_segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut numbers = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if let Some(n) = entry.file_name().to_str().and_then(parse_name) {
            if entry.file_type()?.is_file() {
                numbers.push(n);
            }
        }
    }
    numbers.sort_unstable();
    Ok(numbers)
}

/// Makes the directory's entries durable: a created or removed segment
/// survives power loss only after this.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// A fresh salt for a segment header: unpredictable from outside the node
/// (std's hasher keys come from the OS's random source).
pub fn new_salt() -> u32 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    h.write_u128(now);
    h.write_u32(std::process::id());
    h.finish() as u32
}

/// Creates segment `number` holding only `header` (replacing a leftover of
/// a creation that failed before), made durable with the directory entry
/// when `sync`. Returns the file, open for writing, and its length. On
/// error the file is removed again, best effort.
pub fn create_segment(
    dir: &Path,
    number: u64,
    header: &SegmentHeader,
    sync: bool,
) -> io::Result<(File, u64)> {
    let path = segment_path(dir, number);
    let mut bytes = Vec::new();
    header.encode(&mut bytes);
    let made = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .and_then(|file| {
            file.write_all_at(&bytes, 0)?;
            if sync {
                file.sync_data()?;
                sync_dir(dir)?;
            }
            Ok(file)
        });
    match made {
        Ok(file) => Ok((file, bytes.len() as u64)),
        Err(e) => {
            let _ = fs::remove_file(&path);
            Err(e)
        }
    }
}

/// What reading a segment found.
#[derive(Debug)]
pub enum Loaded {
    /// The header, its length, and where the scan of the records ended.
    Scanned {
        header: SegmentHeader,
        header_len: u64,
        end: ScanEnd,
    },
    /// The file is shorter than its header: torn while being created. It
    /// holds no record.
    TornHeader,
    /// The header is not one this build reads.
    Unreadable(HeaderError),
}

/// Reads a segment from `r` (about `size_hint` bytes long), calling
/// `on_record(offset, record)` for each good record in file order. `window`
/// is the read buffer, kept by the caller across segments: a segment up to
/// `MAX_WINDOW` bytes is read with one read call and decoded in place.
pub fn read_segment(
    mut r: impl Read,
    size_hint: u64,
    window: &mut Vec<u8>,
    mut on_record: impl FnMut(u64, RecordRef<'_>),
) -> io::Result<Loaded> {
    let want = usize::try_from(size_hint.saturating_add(1)).unwrap_or(MAX_WINDOW);
    let mut cap = want.clamp(MIN_WINDOW, MAX_WINDOW);
    let mut filled = 0;
    let mut eof = fill(&mut r, window, cap, &mut filled)?;
    let (header, header_len) = loop {
        match SegmentHeader::parse(&window[..filled]) {
            Ok(Some(h)) => break h,
            Ok(None) if eof => return Ok(Loaded::TornHeader),
            Ok(None) => cap = grow(cap)?,
            Err(e) => return Ok(Loaded::Unreadable(e)),
        }
        eof = fill(&mut r, window, cap, &mut filled)?;
    };
    let mut scanner = Scanner::new(header_len as u64, header.salt);
    let mut start = header_len;
    loop {
        start += scanner.feed(&window[start..filled], eof, &mut on_record);
        if eof {
            break;
        }
        if start == 0 {
            cap = grow(cap)?;
        } else {
            window.copy_within(start..filled, 0);
            filled -= start;
            start = 0;
        }
        eof = fill(&mut r, window, cap, &mut filled)?;
    }
    Ok(Loaded::Scanned {
        header,
        header_len: header_len as u64,
        end: scanner.finish(),
    })
}

/// The window after one that filled up without the scan progressing.
fn grow(cap: usize) -> io::Result<usize> {
    if cap >= FULL_WINDOW {
        // Cannot happen (see `segment::step`); an error beats a loop that
        // never ends.
        return Err(io::Error::other("log scan made no progress"));
    }
    Ok(FULL_WINDOW)
}

/// Reads until `window` holds `cap` bytes or the input ends; true at the
/// end. Grows `window` to `cap` first (its bytes past `filled` are spare).
fn fill(
    r: &mut impl Read,
    window: &mut Vec<u8>,
    cap: usize,
    filled: &mut usize,
) -> io::Result<bool> {
    if window.len() < cap {
        window.resize(cap, 0);
    }
    while *filled < cap {
        match r.read(&mut window[*filled..cap]) {
            Ok(0) => return Ok(true),
            Ok(n) => *filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::record::{encode, Record};
    use crate::store::segment::scan;

    #[test]
    fn names() {
        assert_eq!(segment_name(42), "00000000000000000042.log");
        assert_eq!(segment_name(u64::MAX), "18446744073709551615.log");
        for (name, want) in [
            ("00000000000000000042.log", Some(42)),
            ("18446744073709551615.log", Some(u64::MAX)),
            ("99999999999999999999.log", None), // past u64
            ("0000000000000000042.log", None),
            ("00000000000000000042.tmp", None),
            ("0000000000000000004x.log", None),
            ("LOCK", None),
        ] {
            assert_eq!(parse_name(name), want, "{name}");
        }
    }

    /// Hands out at most `step` bytes per read: a file read in pieces.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let n = self.step.min(out.len()).min(self.data.len());
            out[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    #[test]
    fn read_in_pieces_equals_scan_in_memory() {
        let salt = 77;
        let mut b = Vec::new();
        SegmentHeader {
            salt,
            floor: vec![],
        }
        .encode(&mut b);
        for i in 0..200u64 {
            let r = Record {
                room: "lobby".into(),
                origin: 1,
                seq: i,
                // About 3 MB in all: more than one window, so the read
                // slides its buffer.
                // One record larger than the first window, which must grow.
                text: "x".repeat(if i == 100 {
                    300_000
                } else {
                    (i * 7919 % 30_000) as usize
                }),
            };
            encode(&r, salt, &mut b).expect("valid");
        }
        assert!(b.len() > 2 * FULL_WINDOW);
        b[5000] ^= 0xff;
        b.extend_from_slice(b"torn");
        let whole = scan(&b).expect("ok").expect("complete");
        // Size hints: none (the window grows), and exact (one read).
        for (step, hint) in [
            (1, 0),
            (3, 0),
            (4096, 0),
            (usize::MAX, 0),
            (usize::MAX, b.len()),
        ] {
            let mut got = Vec::new();
            let mut window = Vec::new();
            let data = Trickle { data: &b, step };
            let loaded = read_segment(data, hint as u64, &mut window, |at, r| {
                got.push((at, r.to_record()))
            })
            .expect("read");
            let Loaded::Scanned { end, .. } = loaded else {
                panic!("step {step}: {loaded:?}");
            };
            let want: Vec<(u64, Record)> = whole
                .records
                .iter()
                .map(|(at, r)| (*at, r.to_record()))
                .collect();
            assert_eq!(got, want, "step {step}");
            assert_eq!(end, whole.end, "step {step}");
        }
    }
}
