//! `store::log::Log::open` on arbitrary segment files. Input: a mode byte,
//! a split point (2 bytes), then the bytes, written as one segment file or
//! two (mode bit 1), each behind a valid header (mode bit 0) or raw. Bits
//! 2..: the segment size, so some runs roll. No panic; an open that
//! succeeds reports what it loaded, appending and committing afterwards
//! works, and a reopen sees exactly the same records plus the new one, and
//! no torn tail. Memory stays bounded by the window, whatever the lengths
//! in the bytes say.
#![no_main]

use libfuzzer_sys::fuzz_target;
use watercooler::store::header::SegmentHeader;
use watercooler::store::log::{Fsync, Log, Options};
use watercooler::store::record::Record;

fuzz_target!(|data: &[u8]| {
    let [mode, hi, lo, bytes @ ..] = data else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("wc-fuzz-log-scan-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");

    let split = usize::from(u16::from_be_bytes([*hi, *lo])) % (bytes.len() + 1);
    let parts: Vec<&[u8]> = if mode & 2 == 2 {
        vec![&bytes[..split], &bytes[split..]]
    } else {
        vec![bytes]
    };
    for (i, part) in parts.iter().enumerate() {
        let mut file = Vec::new();
        if mode & 1 == 1 {
            SegmentHeader {
                salt: 0x5eed,
                floor: vec![],
            }
            .encode(&mut file);
        }
        file.extend_from_slice(part);
        let name = format!("{:020}.log", i + 1);
        std::fs::write(dir.join(name), &file).expect("write segment");
    }
    let opts = Options {
        fsync: Fsync::Off,
        segment_bytes: u64::from(*mode >> 2) * 16,
    };

    if let Ok((mut log, records, report)) = Log::open(&dir, opts) {
        assert_eq!(report.records, records.len());
        assert!(
            records.len() <= bytes.len() / 27,
            "a record takes 27 bytes at least"
        );
        let new = Record {
            room: "lobby".into(),
            origin: 1,
            seq: u64::MAX,
            text: "after".into(),
        };
        log.append(&new).expect("append");
        log.commit().expect("commit");
        drop(log);
        let (_log, again, report) = Log::open(&dir, opts).expect("reopen");
        assert_eq!(again.len(), records.len() + 1);
        assert_eq!(again[..records.len()], records[..]);
        assert_eq!(again.last(), Some(&new));
        assert_eq!(report.torn, None);
    }
    let _ = std::fs::remove_dir_all(&dir);
});
