//! The Huffman code of HPACK string literals (RFC 7541 §5.2 and Appendix B).
//!
//! `hpack` calls [`decode`] for every string whose H bit is set and may call
//! [`encode`] when that makes a string shorter. Both are pure functions of
//! bytes. Decoding is table-driven over the canonical form of the code: the
//! code lengths alone locate a symbol, so each symbol costs a few compares
//! rather than one step per bit.

use std::fmt;

/// The symbol that marks the end of a string; it must never appear in one.
const EOS: u16 = 256;
/// Shortest and longest code lengths in Appendix B.
const MIN_CODE_BITS: usize = 5;
const MAX_CODE_BITS: usize = 30;
/// Bits the decoder looks at to find the next symbol: the longest code, rounded
/// up to a machine word so the window is a plain `u32`.
const WINDOW_BITS: usize = 32;
/// A string ends with the most significant bits of EOS (all ones) to fill its
/// last byte, so at most 7 of them (§5.2).
const MAX_PADDING_BITS: u32 = 7;

/// Why a Huffman string was rejected; both are COMPRESSION_ERRORs to HTTP/2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HuffmanError {
    /// The string ends with more than 7 bits that are not a symbol, or with
    /// bits that are not all ones.
    Padding,
    /// The EOS symbol appears inside the string.
    Eos,
}

impl fmt::Display for HuffmanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HuffmanError::Padding => "invalid Huffman padding",
            HuffmanError::Eos => "EOS symbol inside a Huffman string",
        })
    }
}

/// Appends the Huffman code of `src` to `out`, padded with ones to a byte.
pub fn encode(src: &[u8], out: &mut Vec<u8>) {
    out.reserve(encoded_len(src));
    // Holds fewer than 8 + MAX_CODE_BITS pending bits, so never overflows.
    let mut bits: u64 = 0;
    let mut pending: u32 = 0;
    for &byte in src {
        let (code, len) = CODES[usize::from(byte)];
        bits = (bits << len) | u64::from(code);
        pending += u32::from(len);
        while pending >= 8 {
            pending -= 8;
            out.push((bits >> pending) as u8);
        }
    }
    if pending > 0 {
        out.push((bits << (8 - pending)) as u8 | (0xff >> pending));
    }
}

/// The length in bytes of `encode(src)`.
pub fn encoded_len(src: &[u8]) -> usize {
    let bits: usize = src
        .iter()
        .map(|&byte| usize::from(CODES[usize::from(byte)].1))
        .sum();
    bits.div_ceil(8)
}

/// Appends the decoded form of the Huffman string `src` to `out`.
///
/// On error `out` holds whatever was decoded before the fault; callers drop it.
/// The output is at most `src.len() * 8 / 5` bytes (no code is shorter than
/// five bits), so memory stays bounded by the input.
pub fn decode(src: &[u8], out: &mut Vec<u8>) -> Result<(), HuffmanError> {
    out.reserve(src.len() * 8 / MIN_CODE_BITS);
    let mut input = src.iter();
    // The low `avail` bits of `bits` are input not yet decoded, oldest first.
    let mut bits: u64 = 0;
    let mut avail: u32 = 0;
    loop {
        while avail <= 56 {
            match input.next() {
                Some(&byte) => {
                    bits = (bits << 8) | u64::from(byte);
                    avail += 8;
                }
                None => break,
            }
        }
        if avail == 0 {
            return Ok(());
        }
        // Only the end of input leaves fewer than 57 bits here.
        if avail <= MAX_PADDING_BITS {
            let mask = (1u64 << avail) - 1;
            if bits & mask == mask {
                // All ones and shorter than a byte: padding, since no code of
                // 7 bits or fewer is all ones (they would prefix EOS).
                return Ok(());
            }
        }
        // The next WINDOW_BITS bits, zero-filled past the end of input.
        let window = if avail >= WINDOW_BITS as u32 {
            (bits >> (avail - WINDOW_BITS as u32)) as u32
        } else {
            (bits << (WINDOW_BITS as u32 - avail)) as u32
        };
        let (symbol, len) = CANONICAL.lookup(window);
        if u32::from(len) > avail {
            // The input ended inside a code: over-long or non-ones padding.
            return Err(HuffmanError::Padding);
        }
        match u8::try_from(symbol) {
            Ok(byte) => out.push(byte),
            Err(_) => return Err(HuffmanError::Eos),
        }
        avail -= u32::from(len);
    }
}

/// Appendix B in canonical form: codes of one length are consecutive integers,
/// and every code of length L, left-aligned in a 32-bit window, is smaller
/// than every code of length L + 1 (`canonical_form_matches_appendix_b`
/// checks both against `CODES`).
struct Canonical {
    /// `limit[L]`: one past the last code of length L, left-aligned to
    /// WINDOW_BITS. A window below `limit[L]` holds a code of length <= L.
    limit: [u64; MAX_CODE_BITS + 1],
    /// `first[L]`: the smallest code of length L.
    first: [u32; MAX_CODE_BITS + 1],
    /// `offset[L]`: where the symbols of length L start in `symbols`.
    offset: [u16; MAX_CODE_BITS + 1],
    /// All 257 symbols ordered by (code length, code).
    symbols: [u16; 257],
}

impl Canonical {
    const fn new() -> Canonical {
        let mut table = Canonical {
            limit: [0; MAX_CODE_BITS + 1],
            first: [0; MAX_CODE_BITS + 1],
            offset: [0; MAX_CODE_BITS + 1],
            symbols: [0; 257],
        };
        let mut next = 0;
        let mut len = 0;
        while len <= MAX_CODE_BITS {
            table.offset[len] = next as u16;
            table.first[len] = u32::MAX;
            let mut end = 0u64;
            // Appendix B numbers codes of one length in symbol order, so
            // listing symbols in order lists codes in order.
            let mut symbol = 0;
            while symbol < CODES.len() {
                let (code, bits) = CODES[symbol];
                if bits as usize == len {
                    table.symbols[next] = symbol as u16;
                    next += 1;
                    if code < table.first[len] {
                        table.first[len] = code;
                    }
                    end = code as u64 + 1;
                }
                symbol += 1;
            }
            table.limit[len] = if end == 0 {
                if len == 0 {
                    0
                } else {
                    table.limit[len - 1]
                }
            } else {
                end << (WINDOW_BITS - len)
            };
            len += 1;
        }
        table
    }

    /// The symbol whose code starts `window` (left-aligned) and its length.
    fn lookup(&self, window: u32) -> (u16, u8) {
        let window = u64::from(window);
        let mut len = MIN_CODE_BITS;
        // limit[MAX_CODE_BITS] is 2^32: every window stops by then.
        while len < MAX_CODE_BITS && window >= self.limit[len] {
            len += 1;
        }
        let code = (window >> (WINDOW_BITS - len)) as u32;
        let index = usize::from(self.offset[len]) + code.wrapping_sub(self.first[len]) as usize;
        // The code is complete (Kraft sum 1), so the index is always in range;
        // EOS stands in for the impossible miss and is rejected by the caller.
        let symbol = self.symbols.get(index).copied().unwrap_or(EOS);
        (symbol, len as u8)
    }
}

static CANONICAL: Canonical = Canonical::new();

/// (code, length in bits) for symbols 0..=255 and EOS (256), RFC 7541 Appendix B.
#[rustfmt::skip]
const CODES: [(u32, u8); 257] = [
    (0x1ff8, 13), (0x7fffd8, 23), (0xfffffe2, 28), (0xfffffe3, 28),
    (0xfffffe4, 28), (0xfffffe5, 28), (0xfffffe6, 28), (0xfffffe7, 28),
    (0xfffffe8, 28), (0xffffea, 24), (0x3ffffffc, 30), (0xfffffe9, 28),
    (0xfffffea, 28), (0x3ffffffd, 30), (0xfffffeb, 28), (0xfffffec, 28),
    (0xfffffed, 28), (0xfffffee, 28), (0xfffffef, 28), (0xffffff0, 28),
    (0xffffff1, 28), (0xffffff2, 28), (0x3ffffffe, 30), (0xffffff3, 28),
    (0xffffff4, 28), (0xffffff5, 28), (0xffffff6, 28), (0xffffff7, 28),
    (0xffffff8, 28), (0xffffff9, 28), (0xffffffa, 28), (0xffffffb, 28),
    (0x14, 6), (0x3f8, 10), (0x3f9, 10), (0xffa, 12),
    (0x1ff9, 13), (0x15, 6), (0xf8, 8), (0x7fa, 11),
    (0x3fa, 10), (0x3fb, 10), (0xf9, 8), (0x7fb, 11),
    (0xfa, 8), (0x16, 6), (0x17, 6), (0x18, 6),
    (0x0, 5), (0x1, 5), (0x2, 5), (0x19, 6),
    (0x1a, 6), (0x1b, 6), (0x1c, 6), (0x1d, 6),
    (0x1e, 6), (0x1f, 6), (0x5c, 7), (0xfb, 8),
    (0x7ffc, 15), (0x20, 6), (0xffb, 12), (0x3fc, 10),
    (0x1ffa, 13), (0x21, 6), (0x5d, 7), (0x5e, 7),
    (0x5f, 7), (0x60, 7), (0x61, 7), (0x62, 7),
    (0x63, 7), (0x64, 7), (0x65, 7), (0x66, 7),
    (0x67, 7), (0x68, 7), (0x69, 7), (0x6a, 7),
    (0x6b, 7), (0x6c, 7), (0x6d, 7), (0x6e, 7),
    (0x6f, 7), (0x70, 7), (0x71, 7), (0x72, 7),
    (0xfc, 8), (0x73, 7), (0xfd, 8), (0x1ffb, 13),
    (0x7fff0, 19), (0x1ffc, 13), (0x3ffc, 14), (0x22, 6),
    (0x7ffd, 15), (0x3, 5), (0x23, 6), (0x4, 5),
    (0x24, 6), (0x5, 5), (0x25, 6), (0x26, 6),
    (0x27, 6), (0x6, 5), (0x74, 7), (0x75, 7),
    (0x28, 6), (0x29, 6), (0x2a, 6), (0x7, 5),
    (0x2b, 6), (0x76, 7), (0x2c, 6), (0x8, 5),
    (0x9, 5), (0x2d, 6), (0x77, 7), (0x78, 7),
    (0x79, 7), (0x7a, 7), (0x7b, 7), (0x7ffe, 15),
    (0x7fc, 11), (0x3ffd, 14), (0x1ffd, 13), (0xffffffc, 28),
    (0xfffe6, 20), (0x3fffd2, 22), (0xfffe7, 20), (0xfffe8, 20),
    (0x3fffd3, 22), (0x3fffd4, 22), (0x3fffd5, 22), (0x7fffd9, 23),
    (0x3fffd6, 22), (0x7fffda, 23), (0x7fffdb, 23), (0x7fffdc, 23),
    (0x7fffdd, 23), (0x7fffde, 23), (0xffffeb, 24), (0x7fffdf, 23),
    (0xffffec, 24), (0xffffed, 24), (0x3fffd7, 22), (0x7fffe0, 23),
    (0xffffee, 24), (0x7fffe1, 23), (0x7fffe2, 23), (0x7fffe3, 23),
    (0x7fffe4, 23), (0x1fffdc, 21), (0x3fffd8, 22), (0x7fffe5, 23),
    (0x3fffd9, 22), (0x7fffe6, 23), (0x7fffe7, 23), (0xffffef, 24),
    (0x3fffda, 22), (0x1fffdd, 21), (0xfffe9, 20), (0x3fffdb, 22),
    (0x3fffdc, 22), (0x7fffe8, 23), (0x7fffe9, 23), (0x1fffde, 21),
    (0x7fffea, 23), (0x3fffdd, 22), (0x3fffde, 22), (0xfffff0, 24),
    (0x1fffdf, 21), (0x3fffdf, 22), (0x7fffeb, 23), (0x7fffec, 23),
    (0x1fffe0, 21), (0x1fffe1, 21), (0x3fffe0, 22), (0x1fffe2, 21),
    (0x7fffed, 23), (0x3fffe1, 22), (0x7fffee, 23), (0x7fffef, 23),
    (0xfffea, 20), (0x3fffe2, 22), (0x3fffe3, 22), (0x3fffe4, 22),
    (0x7ffff0, 23), (0x3fffe5, 22), (0x3fffe6, 22), (0x7ffff1, 23),
    (0x3ffffe0, 26), (0x3ffffe1, 26), (0xfffeb, 20), (0x7fff1, 19),
    (0x3fffe7, 22), (0x7ffff2, 23), (0x3fffe8, 22), (0x1ffffec, 25),
    (0x3ffffe2, 26), (0x3ffffe3, 26), (0x3ffffe4, 26), (0x7ffffde, 27),
    (0x7ffffdf, 27), (0x3ffffe5, 26), (0xfffff1, 24), (0x1ffffed, 25),
    (0x7fff2, 19), (0x1fffe3, 21), (0x3ffffe6, 26), (0x7ffffe0, 27),
    (0x7ffffe1, 27), (0x3ffffe7, 26), (0x7ffffe2, 27), (0xfffff2, 24),
    (0x1fffe4, 21), (0x1fffe5, 21), (0x3ffffe8, 26), (0x3ffffe9, 26),
    (0xffffffd, 28), (0x7ffffe3, 27), (0x7ffffe4, 27), (0x7ffffe5, 27),
    (0xfffec, 20), (0xfffff3, 24), (0xfffed, 20), (0x1fffe6, 21),
    (0x3fffe9, 22), (0x1fffe7, 21), (0x1fffe8, 21), (0x7ffff3, 23),
    (0x3fffea, 22), (0x3fffeb, 22), (0x1ffffee, 25), (0x1ffffef, 25),
    (0xfffff4, 24), (0xfffff5, 24), (0x3ffffea, 26), (0x7ffff4, 23),
    (0x3ffffeb, 26), (0x7ffffe6, 27), (0x3ffffec, 26), (0x3ffffed, 26),
    (0x7ffffe7, 27), (0x7ffffe8, 27), (0x7ffffe9, 27), (0x7ffffea, 27),
    (0x7ffffeb, 27), (0xffffffe, 28), (0x7ffffec, 27), (0x7ffffed, 27),
    (0x7ffffee, 27), (0x7ffffef, 27), (0x7fffff0, 27), (0x3ffffee, 26),
    (0x3fffffff, 30),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_form_matches_appendix_b() {
        // Kraft sum exactly 1: the code is complete, every window decodes.
        let kraft: u64 = CODES.iter().map(|&(_, len)| 1u64 << (30 - len)).sum();
        assert_eq!(kraft, 1 << 30);
        assert_eq!(CODES[usize::from(EOS)], ((1 << 30) - 1, 30));
        // Every symbol's own code, left-aligned and padded with zeros or
        // ones, looks up to that symbol.
        for (symbol, &(code, len)) in CODES.iter().enumerate() {
            let left = code << (32 - u32::from(len));
            let ones = left | (u32::MAX >> len);
            assert_eq!(CANONICAL.lookup(left), (symbol as u16, len), "{symbol}");
            assert_eq!(CANONICAL.lookup(ones), (symbol as u16, len), "{symbol}");
        }
    }

    #[test]
    fn round_trip_every_byte() {
        let all: Vec<u8> = (0..=255).collect();
        for src in [&all[..], b"", b"a", b"www.example.com", &[0xff; 100]] {
            let mut encoded = Vec::new();
            encode(src, &mut encoded);
            assert_eq!(encoded.len(), encoded_len(src));
            let mut decoded = Vec::new();
            assert_eq!(decode(&encoded, &mut decoded), Ok(()));
            assert_eq!(decoded, src);
        }
    }

    #[test]
    fn appendix_c_strings() {
        let cases: &[(&[u8], &[u8])] = &[
            (
                b"www.example.com",
                &[
                    0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab, 0x90, 0xf4, 0xff,
                ],
            ),
            (b"no-cache", &[0xa8, 0xeb, 0x10, 0x64, 0x9c, 0xbf]),
            (
                b"custom-key",
                &[0x25, 0xa8, 0x49, 0xe9, 0x5b, 0xa9, 0x7d, 0x7f],
            ),
            (
                b"custom-value",
                &[0x25, 0xa8, 0x49, 0xe9, 0x5b, 0xb8, 0xe8, 0xb4, 0xbf],
            ),
            (b"302", &[0x64, 0x02]),
            (b"307", &[0x64, 0x0e, 0xff]),
            (b"gzip", &[0x9b, 0xd9, 0xab]),
        ];
        for &(plain, coded) in cases {
            let mut out = Vec::new();
            encode(plain, &mut out);
            assert_eq!(out, coded);
            out.clear();
            assert_eq!(decode(coded, &mut out), Ok(()));
            assert_eq!(out, plain);
        }
    }

    /// `count` copies of '0', whose code is 00000: 5 * `count` bits, which
    /// places the padding exactly.
    fn bits_of_zeros(count: usize) -> Vec<u8> {
        vec![b'0'; count]
    }

    type Decoded = Result<&'static [u8], HuffmanError>;

    #[test]
    fn rejects() {
        // (name, input, expected). '0' = 00000, '%' = 010101 (6 bits).
        let cases: &[(&str, &[u8], Decoded)] = &[
            ("empty", &[], Ok(b"")),
            ("3 bits of padding", &[0x07], Ok(b"0")),
            ("padding not all ones", &[0x06], Err(HuffmanError::Padding)),
            ("padding all zeros", &[0x00], Err(HuffmanError::Padding)),
            // '0' '0' '%' = 5 + 5 + 6 = 16 bits, then a whole byte of ones.
            (
                "8 bits of padding",
                &[0x00, 0x15, 0xff],
                Err(HuffmanError::Padding),
            ),
            ("only padding, 8 bits", &[0xff], Err(HuffmanError::Padding)),
            (
                "only padding, 16 bits",
                &[0xff, 0xff],
                Err(HuffmanError::Padding),
            ),
            // EOS (30 ones), then '0' and 5 bits of padding.
            (
                "EOS then a symbol",
                &[0xff, 0xff, 0xff, 0xfc, 0x1f],
                Err(HuffmanError::Eos),
            ),
            // EOS as 30 of 32 bits of "padding".
            (
                "EOS as padding",
                &[0xff, 0xff, 0xff, 0xff],
                Err(HuffmanError::Eos),
            ),
        ];
        for &(name, input, expected) in cases {
            let mut out = Vec::new();
            let got = decode(input, &mut out).map(|()| &out[..]);
            assert_eq!(got, expected, "{name}");
        }
    }

    #[test]
    fn padding_of_seven_bits_is_allowed() {
        // 5-bit symbols: 5 * 5 = 25 bits, 7 of padding make 32.
        let src = bits_of_zeros(5);
        let mut coded = Vec::new();
        encode(&src, &mut coded);
        assert_eq!(coded, [0x00, 0x00, 0x00, 0x7f]);
        let mut out = Vec::new();
        assert_eq!(decode(&coded, &mut out), Ok(()));
        assert_eq!(out, src);
        // One more padding bit (a whole extra byte of ones after 8 bits of
        // symbols) is one too many.
        coded.clear();
        encode(&bits_of_zeros(8), &mut coded);
        coded.push(0xff);
        assert_eq!(decode(&coded, &mut out), Err(HuffmanError::Padding));
    }

    /// `cargo test --release -- --ignored --nocapture huffman_speed`
    #[test]
    #[ignore]
    fn huffman_speed() {
        let text: Vec<u8> = (0..1_000_000u32)
            .map(|i| b"abcdefghijklmnopqrstuvwxyz0123456789-_./:; ="[(i % 43) as usize])
            .collect();
        let mut coded = Vec::new();
        encode(&text, &mut coded);
        let start = std::time::Instant::now();
        let rounds = 100;
        let mut out = Vec::with_capacity(text.len());
        for _ in 0..rounds {
            out.clear();
            decode(std::hint::black_box(&coded), &mut out).unwrap();
        }
        let secs = start.elapsed().as_secs_f64();
        assert_eq!(out, text);
        let mb = (coded.len() * rounds) as f64 / 1e6;
        println!("huffman decode: {:.0} MB/s of input", mb / secs);
    }
}
