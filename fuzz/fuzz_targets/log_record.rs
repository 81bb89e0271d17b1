//! `store::record::decode` and `store::segment::scan` on arbitrary bytes.
//! Input: a mode byte, a salt (4 bytes LE), then the bytes. Odd mode: the
//! bytes follow a valid segment header with that salt (so the fuzzer
//! spends its time on records); even: the bytes are the whole segment.
//! No panic; a decoded record re-encodes to exactly the bytes it came
//! from; a scan's good records re-encode to the bytes at their offsets,
//! and with the skipped spans and the torn tail they tile the file after
//! the header; reading the file in pieces finds the same as the scan.
#![no_main]

use std::io::Read;

use libfuzzer_sys::fuzz_target;
use watercooler::store::disk::{read_segment, Loaded};
use watercooler::store::header::SegmentHeader;
use watercooler::store::record::{decode, encode, encode_ref};
use watercooler::store::segment::scan;

/// Hands out at most `step` bytes per read.
struct Trickle<'a> {
    data: &'a [u8],
    step: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let n = self.step.min(out.len()).min(self.data.len());
        out[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

thread_local! {
    /// The read buffer, kept across runs as `Log::open` keeps it across
    /// segments.
    static WINDOW: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

fuzz_target!(|data: &[u8]| {
    let [mode, s0, s1, s2, s3, bytes @ ..] = data else {
        return;
    };
    let salt = u32::from_le_bytes([*s0, *s1, *s2, *s3]);

    if let Ok(Some((rec, n))) = decode(bytes, salt) {
        let mut again = Vec::new();
        encode(&rec, salt, &mut again).expect("a decoded record encodes");
        assert_eq!(again, bytes[..n]);
    }

    let mut file = Vec::new();
    if mode & 1 == 1 {
        SegmentHeader {
            salt,
            floor: vec![(1, 2)],
        }
        .encode(&mut file);
    }
    file.extend_from_slice(bytes);
    let Ok(Some(s)) = scan(&file) else {
        return;
    };
    let mut spans: Vec<(u64, u64)> = Vec::new();
    for (at, r) in &s.records {
        let mut again = Vec::new();
        encode_ref(*r, s.header.salt, &mut again).expect("a scanned record encodes");
        let at = *at as usize;
        assert_eq!(
            file.get(at..at + again.len()),
            Some(&again[..]),
            "record at {at}"
        );
        spans.push((at as u64, (at + again.len()) as u64));
    }
    spans.extend(s.end.skipped.iter().map(|r| (r.start, r.end)));
    spans.extend(s.end.torn.iter().map(|r| (r.start, r.end)));
    spans.sort_unstable();
    let mut pos = file.len() as u64 - spans.iter().map(|(a, b)| b - a).sum::<u64>();
    for (a, b) in spans {
        assert_eq!(a, pos, "spans tile the file");
        assert!(b > a);
        pos = b;
    }
    assert_eq!(pos, file.len() as u64);
    assert!(s.end.good_end <= file.len() as u64);

    let step = usize::from(*mode >> 1).max(1);
    let mut got = Vec::new();
    let loaded = WINDOW
        .with_borrow_mut(|window| {
            read_segment(Trickle { data: &file, step }, 0, window, |at, r| {
                got.push((at, r.to_record()))
            })
        })
        .expect("in-memory read");
    let Loaded::Scanned { end, .. } = loaded else {
        panic!("read_segment disagrees on the header: {loaded:?}");
    };
    let want: Vec<_> = s
        .records
        .iter()
        .map(|(at, r)| (*at, r.to_record()))
        .collect();
    assert_eq!(got, want);
    assert_eq!(end, s.end);
});
