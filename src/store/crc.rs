//! CRC-32C (Castagnoli, the iSCSI/ext4 checksum), table-driven with
//! slicing-by-8. The log's records and segment headers carry it; see
//! `record.rs` for what each checksum covers. Tables are built at compile
//! time, so there is nothing to initialise and no `unsafe`.

/// The reflected Castagnoli polynomial.
const POLY: u32 = 0x82F6_3B78;

/// `TABLES[k][b]`: the CRC register after byte `b` followed by `k` zero
/// bytes. Slicing-by-8 folds eight input bytes per step (about 4x the speed
/// of the one-table loop), which is most of the cost of `Log::open`.
static TABLES: [[u32; 256]; 8] = make_tables();

const fn make_tables() -> [[u32; 256]; 8] {
    let mut t = [[0u32; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ POLY } else { c >> 1 };
            k += 1;
        }
        t[0][i] = c;
        i += 1;
    }
    let mut i = 0;
    while i < 256 {
        let mut k = 1;
        while k < 8 {
            let prev = t[k - 1][i];
            t[k][i] = (prev >> 8) ^ t[0][(prev & 0xff) as usize];
            k += 1;
        }
        i += 1;
    }
    t
}

/// The CRC-32C of `data`.
pub fn checksum(data: &[u8]) -> u32 {
    extend(0, data)
}

/// The CRC-32C of `a ‖ data`, given `crc` = the CRC-32C of `a`; so
/// `extend(checksum(a), b) == checksum(a ‖ b)`.
pub fn extend(crc: u32, data: &[u8]) -> u32 {
    let t = &TABLES;
    let mut c = !crc;
    let mut words = data.chunks_exact(8);
    for w in &mut words {
        let lo = u32::from_le_bytes([w[0], w[1], w[2], w[3]]) ^ c;
        let hi = u32::from_le_bytes([w[4], w[5], w[6], w[7]]);
        c = t[7][(lo & 0xff) as usize]
            ^ t[6][((lo >> 8) & 0xff) as usize]
            ^ t[5][((lo >> 16) & 0xff) as usize]
            ^ t[4][(lo >> 24) as usize]
            ^ t[3][(hi & 0xff) as usize]
            ^ t[2][((hi >> 8) & 0xff) as usize]
            ^ t[1][((hi >> 16) & 0xff) as usize]
            ^ t[0][(hi >> 24) as usize];
    }
    for &b in words.remainder() {
        c = t[0][((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bit at a time, straight from the definition: the reference.
    fn bitwise(data: &[u8]) -> u32 {
        let mut c = !0u32;
        for &b in data {
            c ^= u32::from(b);
            for _ in 0..8 {
                c = if c & 1 != 0 { (c >> 1) ^ POLY } else { c >> 1 };
            }
        }
        !c
    }

    #[test]
    fn known_vectors() {
        // The check value of the CRC catalogue, and RFC 3720 B.4.
        let ascending: Vec<u8> = (0u8..32).collect();
        let descending: Vec<u8> = (0u8..32).rev().collect();
        let cases: [(&str, &[u8], u32); 6] = [
            ("empty", b"", 0),
            ("check", b"123456789", 0xE306_9283),
            ("32 zeros", &[0u8; 32], 0x8A91_36AA),
            ("32 ones", &[0xffu8; 32], 0x62A8_AB43),
            ("ascending", &ascending, 0x46DD_794E),
            ("descending", &descending, 0x113F_DB5C),
        ];
        for (name, input, want) in cases {
            assert_eq!(checksum(input), want, "{name}");
        }
    }

    #[test]
    fn matches_bitwise_at_every_length_and_alignment() {
        let data: Vec<u8> = (0..300u32).map(|i| (i * 7919 % 251) as u8).collect();
        for start in 0..9 {
            for end in start..data.len() {
                let s = &data[start..end];
                assert_eq!(checksum(s), bitwise(s), "{start}..{end}");
            }
        }
    }

    #[test]
    fn extend_chains() {
        let data = b"the quick brown fox jumps over the lazy dog";
        for cut in 0..data.len() {
            let (a, b) = data.split_at(cut);
            assert_eq!(extend(checksum(a), b), checksum(data), "cut {cut}");
        }
    }
}
