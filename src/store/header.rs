//! A segment file's header: what identifies a file as a log segment, the
//! format version, the salt that keys its records' checksums, and the
//! high-water marks of the segments before it. Pure; `segment.rs` scans the
//! records after it, `disk.rs` writes it when a segment is created.
//!
//! Layout (integers little-endian):
//!
//! ```text
//! magic    8 bytes  "wclog\r\n\0"
//! version  u16      1
//! count    u16      floor entries, at most MAX_FLOOR
//! salt     u32      keys every record's checksums (see record.rs)
//! floor    count × (origin u32, seq u64): the highest seq per origin in
//!          every earlier segment, so dropping old segments never loses
//!          the node's per-origin high-water marks
//! hcrc     u32      CRC-32C of all the header bytes before it
//! ```
//!
//! The records follow, back to back, to the end of the file.

use super::crc;

pub const MAGIC: [u8; 8] = *b"wclog\r\n\0";
/// The format this build writes and reads.
pub const VERSION: u16 = 1;
/// Most origins a header's floor holds (the node's clock holds 256).
pub const MAX_FLOOR: usize = 1024;
/// magic, version, count, salt.
const FIXED: usize = 16;
/// The longest header.
pub const MAX_HEADER: usize = FIXED + 12 * MAX_FLOOR + 4;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    pub salt: u32,
    /// (origin, highest seq) sorted by origin, at most `MAX_FLOOR` entries.
    pub floor: Vec<(u32, u64)>,
}

/// Why a segment's header is unreadable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// Not a log segment (or its first bytes are damaged).
    Magic,
    /// A format this build does not read (or a damaged version field).
    Version(u16),
    /// More floor entries than `MAX_FLOOR`.
    Count,
    /// The header checksum does not match.
    Checksum,
}

impl std::fmt::Display for HeaderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeaderError::Magic => f.write_str("not a log segment (bad magic)"),
            HeaderError::Version(v) => write!(
                f,
                "format version {v}, this build reads version {VERSION} \
                 (a newer watercooler wrote it, or the file is damaged)"
            ),
            HeaderError::Count => f.write_str("segment header damaged (floor count)"),
            HeaderError::Checksum => f.write_str("segment header damaged (checksum)"),
        }
    }
}

impl SegmentHeader {
    /// Appends the header's bytes. A floor over `MAX_FLOOR` entries keeps
    /// the entries with the highest seqs (the ones still in play).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut floor = self.floor.clone();
        if floor.len() > MAX_FLOOR {
            floor.sort_by_key(|&(_, seq)| std::cmp::Reverse(seq));
            floor.truncate(MAX_FLOOR);
        }
        floor.sort_unstable();
        let start = out.len();
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&(floor.len() as u16).to_le_bytes());
        out.extend_from_slice(&self.salt.to_le_bytes());
        for (origin, seq) in floor {
            out.extend_from_slice(&origin.to_le_bytes());
            out.extend_from_slice(&seq.to_le_bytes());
        }
        let hcrc = crc::checksum(&out[start..]);
        out.extend_from_slice(&hcrc.to_le_bytes());
    }

    /// The header at the start of a segment, and its length. `Ok(None)`:
    /// `buf` is a proper prefix of a header (a segment torn while it was
    /// being created).
    pub fn parse(buf: &[u8]) -> Result<Option<(SegmentHeader, usize)>, HeaderError> {
        let magic_len = buf.len().min(MAGIC.len());
        if buf[..magic_len] != MAGIC[..magic_len] {
            return Err(HeaderError::Magic);
        }
        let Some(fixed) = buf.get(..FIXED) else {
            return Ok(None);
        };
        let version = u16::from_le_bytes([fixed[8], fixed[9]]);
        if version != VERSION {
            return Err(HeaderError::Version(version));
        }
        let count = usize::from(u16::from_le_bytes([fixed[10], fixed[11]]));
        if count > MAX_FLOOR {
            return Err(HeaderError::Count);
        }
        let salt = u32::from_le_bytes([fixed[12], fixed[13], fixed[14], fixed[15]]);
        let len = FIXED + 12 * count + 4;
        let Some(all) = buf.get(..len) else {
            return Ok(None);
        };
        let (body, sum) = all.split_at(len - 4);
        if crc::checksum(body) != u32::from_le_bytes([sum[0], sum[1], sum[2], sum[3]]) {
            return Err(HeaderError::Checksum);
        }
        let floor = body[FIXED..]
            .chunks_exact(12)
            .map(|e| {
                let origin = u32::from_le_bytes([e[0], e[1], e[2], e[3]]);
                let seq = u64::from_le_bytes([e[4], e[5], e[6], e[7], e[8], e[9], e[10], e[11]]);
                (origin, seq)
            })
            .collect();
        Ok(Some((SegmentHeader { salt, floor }, len)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SALT: u32 = 0xa5a5_0001;

    fn header() -> SegmentHeader {
        SegmentHeader {
            salt: SALT,
            floor: vec![(1, 5), (7, u64::MAX)],
        }
    }

    #[test]
    fn header_round_trip_and_prefixes() {
        let mut b = Vec::new();
        header().encode(&mut b);
        assert_eq!(b.len(), FIXED + 24 + 4);
        assert_eq!(SegmentHeader::parse(&b), Ok(Some((header(), b.len()))));
        for cut in 0..b.len() {
            assert_eq!(SegmentHeader::parse(&b[..cut]), Ok(None), "prefix {cut}");
        }
    }

    #[test]
    fn header_damage() {
        let mut good = Vec::new();
        header().encode(&mut good);
        for i in 0..good.len() * 8 {
            let mut bad = good.clone();
            bad[i / 8] ^= 1 << (i % 8);
            let got = SegmentHeader::parse(&bad);
            let byte = i / 8;
            match byte {
                0..8 => assert_eq!(got, Err(HeaderError::Magic), "bit {i}"),
                8..10 => assert!(matches!(got, Err(HeaderError::Version(_))), "bit {i}"),
                // A larger count makes the header look longer than the file.
                10..12 => assert!(matches!(got, Ok(None) | Err(_)), "bit {i}: {got:?}"),
                _ => assert_eq!(got, Err(HeaderError::Checksum), "bit {i}"),
            }
        }
        let mut b = good.clone();
        b[10..12].copy_from_slice(&(MAX_FLOOR as u16 + 1).to_le_bytes());
        assert_eq!(SegmentHeader::parse(&b), Err(HeaderError::Count));
        assert_eq!(SegmentHeader::parse(b"garbage!"), Err(HeaderError::Magic));
    }

    #[test]
    fn floor_is_bounded_keeping_the_highest() {
        let floor: Vec<(u32, u64)> = (0..MAX_FLOOR as u32 + 10)
            .map(|o| (o, u64::from(o)))
            .collect();
        let mut b = Vec::new();
        SegmentHeader { salt: 1, floor }.encode(&mut b);
        let (h, len) = SegmentHeader::parse(&b).expect("valid").expect("complete");
        assert_eq!(len, MAX_HEADER);
        assert_eq!(h.floor.len(), MAX_FLOOR);
        assert_eq!(h.floor[0], (10, 10));
    }
}
