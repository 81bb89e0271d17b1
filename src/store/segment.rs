//! The scan of a segment's records: it separates good records from damage.
//! Pure, like `record.rs` below it and `header.rs` beside it; `disk.rs`
//! feeds it a file and `log.rs` decides what to do with what it finds.
//!
//! Records are decoded one after another. Where none decodes, the scan
//! looks for the next offset where one does (header check first, so a
//! wrong offset costs 12 bytes of reading). The bytes in between are a
//! corrupt span when a good record follows them, and the torn tail when
//! none does: the end of a write that never finished.

use std::ops::Range;

use super::header::{HeaderError, SegmentHeader};
use super::record::{self, RecordRef};

/// One step of a scan over the bytes at the scan's position.
#[derive(Debug, PartialEq, Eq)]
pub enum Step<'a> {
    /// A good record, `usize` bytes long.
    Record(RecordRef<'a>, usize),
    /// This many bytes hold no record start: damage (or a torn tail).
    Skip(usize),
    /// Give me more bytes (never returned at end of file).
    More,
    /// Nothing left (only at end of file).
    End,
}

/// The next step over `buf`, the bytes at the scan position; `eof`: `buf`
/// reaches the end of the file. Every `Skip` is at least one byte, and a
/// caller holding `record::MAX_RECORD` bytes or more never gets `More`, so
/// a scan always progresses.
pub fn step(buf: &[u8], salt: u32, eof: bool) -> Step<'_> {
    if buf.is_empty() {
        return if eof { Step::End } else { Step::More };
    }
    match record::decode_ref(buf, salt) {
        Ok(Some((rec, n))) => return Step::Record(rec, n),
        Ok(None) if !eof => return Step::More,
        _ => {}
    }
    // Resync: the first later offset where a record decodes. An offset that
    // cannot be decided yet ends the skip there, and the caller comes back
    // to it with more bytes.
    for at in 1..buf.len() {
        match record::decode_ref(&buf[at..], salt) {
            Ok(Some(_)) => return Step::Skip(at),
            Ok(None) if !eof => return Step::Skip(at),
            _ => {}
        }
    }
    Step::Skip(buf.len())
}

/// Where a segment's scan ended.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScanEnd {
    /// Offset just past the last good record (or the header): where a
    /// writer continues.
    pub good_end: u64,
    /// Damaged spans with a good record after them.
    pub skipped: Vec<Range<u64>>,
    /// Bytes after the last good record, if any: `good_end..file length`.
    pub torn: Option<Range<u64>>,
}

/// The scan of one segment's records, fed in chunks. Owns the bookkeeping
/// (offsets, skipped spans, the torn tail); `step` does the decoding.
#[derive(Debug)]
pub struct Scanner {
    salt: u32,
    pos: u64,
    end: ScanEnd,
    /// Start of the run of skipped bytes not yet followed by a record.
    junk_from: Option<u64>,
}

impl Scanner {
    /// A scan starting at `offset` (the header's length) of a segment
    /// whose header carries `salt`.
    pub fn new(offset: u64, salt: u32) -> Scanner {
        Scanner {
            salt,
            pos: offset,
            end: ScanEnd {
                good_end: offset,
                ..ScanEnd::default()
            },
            junk_from: None,
        }
    }

    /// Scans `buf`, the file's bytes from `self.pos()` on (`eof`: through the
    /// end of the file), calling `on_record(offset, record)` for each good
    /// record. Returns how many bytes it is done with: the caller drops them
    /// and calls again with the rest plus more. At `eof` that is all of them.
    pub fn feed<'b>(
        &mut self,
        buf: &'b [u8],
        eof: bool,
        on_record: &mut impl FnMut(u64, RecordRef<'b>),
    ) -> usize {
        let mut at = 0;
        loop {
            match step(&buf[at..], self.salt, eof) {
                Step::Record(rec, n) => {
                    if let Some(from) = self.junk_from.take() {
                        self.end.skipped.push(from..self.pos);
                    }
                    on_record(self.pos, rec);
                    at += n;
                    self.pos += n as u64;
                    self.end.good_end = self.pos;
                }
                Step::Skip(n) => {
                    self.junk_from.get_or_insert(self.pos);
                    at += n;
                    self.pos += n as u64;
                }
                Step::More | Step::End => return at,
            }
        }
    }

    /// The file offset the next `feed` starts at.
    pub fn pos(&self) -> u64 {
        self.pos
    }

    /// Ends the scan at end of file: skipped bytes not followed by a record
    /// are the torn tail.
    pub fn finish(mut self) -> ScanEnd {
        if let Some(from) = self.junk_from.take() {
            self.end.torn = Some(from..self.pos);
        }
        self.end
    }
}

/// A whole segment, scanned.
#[derive(Debug, PartialEq, Eq)]
pub struct Scan<'a> {
    pub header: SegmentHeader,
    /// Good records with their offsets, in file order.
    pub records: Vec<(u64, RecordRef<'a>)>,
    pub end: ScanEnd,
}

/// Scans a whole segment held in memory. `Ok(None)`: the file is a torn
/// header. Tests and fuzz targets use it; `disk.rs` reads files in chunks
/// through the same `Scanner`.
pub fn scan(bytes: &[u8]) -> Result<Option<Scan<'_>>, HeaderError> {
    let Some((header, len)) = SegmentHeader::parse(bytes)? else {
        return Ok(None);
    };
    let mut records = Vec::new();
    let mut scanner = Scanner::new(len as u64, header.salt);
    scanner.feed(&bytes[len..], true, &mut |at, rec| records.push((at, rec)));
    Ok(Some(Scan {
        header,
        records,
        end: scanner.finish(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::record::{encode, Record, HEADER_LEN};

    const SALT: u32 = 0xa5a5_0001;

    fn rec(i: u64) -> Record {
        Record {
            room: ["lobby", "dev", "x-1"][i as usize % 3].into(),
            origin: 10 + (i % 2) as u32,
            seq: 1000 + i,
            text: format!("message number {i}"),
        }
    }

    fn header() -> SegmentHeader {
        SegmentHeader {
            salt: SALT,
            floor: vec![(1, 5), (7, u64::MAX)],
        }
    }

    /// A segment of `n` records; also the byte range of each record.
    fn segment(n: u64) -> (Vec<u8>, Vec<Range<usize>>) {
        let mut b = Vec::new();
        header().encode(&mut b);
        let mut spans = Vec::new();
        for i in 0..n {
            let start = b.len();
            encode(&rec(i), SALT, &mut b).expect("valid");
            spans.push(start..b.len());
        }
        (b, spans)
    }

    /// The seqs a scan of `bytes` keeps.
    fn seqs(bytes: &[u8]) -> Vec<u64> {
        let s = scan(bytes).expect("header").expect("complete header");
        s.records.iter().map(|(_, r)| r.seq).collect()
    }

    fn all_but(n: u64, lost: &[u64]) -> Vec<u64> {
        (0..n)
            .filter(|i| !lost.contains(i))
            .map(|i| 1000 + i)
            .collect()
    }

    #[test]
    fn clean_segment() {
        let (b, spans) = segment(5);
        let s = scan(&b).expect("ok").expect("complete");
        assert_eq!(s.header, header());
        let offsets: Vec<u64> = s.records.iter().map(|(at, _)| *at).collect();
        let want: Vec<u64> = spans.iter().map(|r| r.start as u64).collect();
        assert_eq!(offsets, want);
        for (i, (_, r)) in s.records.iter().enumerate() {
            assert_eq!(r.to_record(), rec(i as u64));
        }
        assert_eq!(s.end.good_end, b.len() as u64);
        assert_eq!(s.end.torn, None);
        assert!(s.end.skipped.is_empty());
    }

    #[test]
    fn every_cut_of_the_last_record_is_a_torn_tail() {
        let (b, spans) = segment(4);
        let last = spans[3].clone();
        for cut in last.start..last.end {
            let s = scan(&b[..cut]).expect("ok").expect("complete");
            assert_eq!(s.records.len(), 3, "cut {cut}");
            assert_eq!(s.end.good_end, last.start as u64, "cut {cut}");
            let torn = (cut > last.start).then_some(last.start as u64..cut as u64);
            assert_eq!(s.end.torn, torn, "cut {cut}");
            assert!(s.end.skipped.is_empty(), "cut {cut}");
        }
    }

    #[test]
    fn a_flipped_bit_anywhere_loses_one_record_at_most() {
        let (b, spans) = segment(5);
        for i in spans[0].start * 8..b.len() * 8 {
            let mut bad = b.clone();
            bad[i / 8] ^= 1 << (i % 8);
            let hit = spans
                .iter()
                .position(|r| r.contains(&(i / 8)))
                .expect("in a record");
            let s = scan(&bad).expect("ok").expect("complete");
            let got: Vec<u64> = s.records.iter().map(|(_, r)| r.seq).collect();
            assert_eq!(got, all_but(5, &[hit as u64]), "bit {i}");
            let span = spans[hit].start as u64..spans[hit].end as u64;
            if hit == 4 {
                assert_eq!(s.end.torn, Some(span), "bit {i}");
            } else {
                assert_eq!(s.end.skipped, vec![span], "bit {i}");
            }
        }
    }

    #[test]
    fn zeroed_block_in_the_middle() {
        let (mut b, spans) = segment(8);
        // From inside record 2 to inside record 4: 2, 3 and 4 are lost.
        let from = spans[2].start + 5;
        let to = spans[4].end - 3;
        b[from..to].fill(0);
        assert_eq!(seqs(&b), all_but(8, &[2, 3, 4]));
        let s = scan(&b).expect("ok").expect("complete");
        assert_eq!(
            s.end.skipped,
            vec![spans[2].start as u64..spans[5].start as u64]
        );
        assert_eq!(s.end.good_end, b.len() as u64);
    }

    #[test]
    fn garbage_between_and_after() {
        let (b, spans) = segment(3);
        let mut g = b[..spans[1].end].to_vec();
        g.extend_from_slice(b"\xff\xff\x00\x01 garbage garbage garbage");
        g.extend_from_slice(&b[spans[2].clone()]);
        g.extend_from_slice(&[0x42; 100]);
        let s = scan(&g).expect("ok").expect("complete");
        assert_eq!(s.records.len(), 3);
        assert_eq!(s.end.skipped.len(), 1);
        assert_eq!(s.end.torn.map(|t| t.end - t.start), Some(100));
    }

    #[test]
    fn only_garbage_after_the_header() {
        let mut b = Vec::new();
        header().encode(&mut b);
        let h = b.len() as u64;
        b.extend((0..5000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
        let s = scan(&b).expect("ok").expect("complete");
        assert!(s.records.is_empty());
        assert_eq!(s.end.good_end, h);
        assert_eq!(s.end.torn, Some(h..b.len() as u64));
    }

    #[test]
    fn a_record_forged_without_the_salt_is_not_resynced_to() {
        // A user controls message text, so text can hold the bytes of a
        // record. When the record around it is damaged, the resync passes
        // through those bytes: only the segment's secret salt keeps them
        // from decoding as a record of their own.
        let forged = |salt: u32| {
            let mut b = Vec::new();
            let r = Record {
                room: "lobby".into(),
                origin: 99,
                seq: u64::MAX,
                text: "forged".into(),
            };
            encode(&r, salt, &mut b).expect("valid");
            b
        };
        let (mut b, spans) = segment(2);
        b[spans[1].start] ^= 0x01; // the record that "held" it is damaged
        let mut guessed = b.clone();
        guessed.extend_from_slice(&forged(SALT ^ 0xdead));
        assert_eq!(seqs(&guessed), vec![1000]);
        let mut known = b;
        known.extend_from_slice(&forged(SALT));
        assert_eq!(seqs(&known), vec![1000, u64::MAX]);
    }

    #[test]
    fn chunked_feed_equals_whole_scan() {
        let (mut b, spans) = segment(6);
        b[spans[2].start + 14] ^= 0x10;
        b.truncate(b.len() - 3);
        let whole = scan(&b).expect("ok").expect("complete");
        let (h, hlen) = SegmentHeader::parse(&b).expect("ok").expect("complete");
        for chunk in [1, 2, 7, HEADER_LEN, 50] {
            let mut got = Vec::new();
            let mut sc = Scanner::new(hlen as u64, h.salt);
            let mut window = hlen..hlen;
            loop {
                window.end = (window.end + chunk).min(b.len());
                let eof = window.end == b.len();
                let used = sc.feed(&b[window.clone()], eof, &mut |at, r| got.push((at, r)));
                window.start += used;
                if eof {
                    break;
                }
            }
            assert_eq!(got, whole.records, "chunk {chunk}");
            assert_eq!(sc.finish(), whole.end, "chunk {chunk}");
        }
    }

    #[test]
    fn step_always_progresses() {
        let cases: [(&[u8], bool); 4] = [
            (&[0; 40], false),
            (&[0; 40], true),
            (&[0xff; 3], true),
            (b"0123456789abcdef", false),
        ];
        for (buf, eof) in cases {
            match step(buf, SALT, eof) {
                Step::Skip(n) => assert!(n >= 1),
                Step::More => assert!(!eof),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(step(b"", SALT, true), Step::End);
        assert_eq!(step(b"", SALT, false), Step::More);
    }
}
