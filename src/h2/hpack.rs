//! HPACK header compression for HTTP/2 (RFC 7541): a decoder with its
//! dynamic table, and a stateless encoder.
//!
//! The HTTP/2 connection hands [`Decoder::decode`] each whole header block
//! (a HEADERS payload joined with its CONTINUATIONs) and gets back the
//! header list; it turns [`HpackError`] into COMPRESSION_ERROR, except
//! [`HpackError::ListTooLarge`], which concerns one stream only. [`encode`]
//! writes response headers without ever inserting into the peer's dynamic
//! table, so the encoder keeps no state. Strings use `super::huffman`.
//! Everything here is a pure function of bytes; every count and length the
//! peer controls is checked against a named limit before memory is committed.

use super::huffman::{self, HuffmanError};
use std::collections::VecDeque;
use std::fmt;

/// The largest integer accepted (§5.1): 2^28 - 1. HPACK integers are indexes,
/// string lengths and table sizes, all bounded by the block length or by our
/// settings, which are far smaller; a larger value can only be hostile.
pub const MAX_INTEGER: usize = (1 << 28) - 1;
/// Continuation bytes needed for MAX_INTEGER (7 bits each). A fifth one is
/// rejected even if it is zero, so the shift never passes 28 bits.
const MAX_INTEGER_CONTINUATIONS: u32 = 4;
/// What each entry adds to the dynamic table size (§4.1) and to the header
/// list size (RFC 9113 §6.5.2), on top of its name and value.
pub const ENTRY_OVERHEAD: usize = 32;
/// Size updates allowed at the start of a block: two, so that an encoder can
/// report a shrink and a regrowth made between two blocks (§4.2).
const MAX_SIZE_UPDATES: usize = 2;
/// The number of entries in the static table (Appendix A); dynamic entries
/// are numbered from STATIC_ENTRIES + 1.
const STATIC_ENTRIES: usize = 61;

/// Why a header block was rejected. Every variant but `ListTooLarge` leaves
/// the dynamic table out of step with the peer's encoder, so the connection
/// must end with COMPRESSION_ERROR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HpackError {
    /// An integer above MAX_INTEGER, or with more continuation bytes than it
    /// needs.
    IntegerOverflow,
    /// The block ends inside a field representation.
    Truncated,
    /// A string's declared length runs past the end of the block.
    StringOverrun,
    /// Index 0, which names no entry (§6.1).
    IndexZero,
    /// An index past the static and dynamic tables (§2.3.3).
    IndexOutOfRange,
    /// A dynamic table size update after the first field of a block (§4.2).
    SizeUpdateMisplaced,
    /// More than MAX_SIZE_UPDATES size updates at the start of a block.
    TooManySizeUpdates,
    /// A size update above our SETTINGS_HEADER_TABLE_SIZE (§6.3).
    SizeUpdateTooLarge,
    /// Huffman padding longer than 7 bits or not all ones (§5.2).
    HuffmanPadding,
    /// The Huffman EOS symbol inside a string (§5.2).
    HuffmanEos,
    /// The header list is larger than the caller's limit. The whole block was
    /// still decoded, so the connection can go on: the caller may refuse the
    /// stream (431) and keep the connection.
    ListTooLarge,
}

impl HpackError {
    /// Whether the error must end the connection (COMPRESSION_ERROR) rather
    /// than only the stream.
    pub fn is_connection_error(self) -> bool {
        self != HpackError::ListTooLarge
    }
}

impl fmt::Display for HpackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HpackError::IntegerOverflow => "HPACK integer too large",
            HpackError::Truncated => "header block ends inside a field",
            HpackError::StringOverrun => "HPACK string longer than the rest of the block",
            HpackError::IndexZero => "HPACK index 0",
            HpackError::IndexOutOfRange => "HPACK index past the header tables",
            HpackError::SizeUpdateMisplaced => "table size update after a header field",
            HpackError::TooManySizeUpdates => "more than two table size updates in a row",
            HpackError::SizeUpdateTooLarge => "table size update above our setting",
            HpackError::HuffmanPadding => "invalid Huffman padding",
            HpackError::HuffmanEos => "EOS symbol inside a Huffman string",
            HpackError::ListTooLarge => "header list too large",
        })
    }
}

impl From<HuffmanError> for HpackError {
    fn from(error: HuffmanError) -> HpackError {
        match error {
            HuffmanError::Padding => HpackError::HuffmanPadding,
            HuffmanError::Eos => HpackError::HuffmanEos,
        }
    }
}

/// One decoded header field: (name, value), both as sent.
pub type Field = (Vec<u8>, Vec<u8>);

/// The decoding side of one HTTP/2 connection: the dynamic table the peer's
/// encoder fills. Blocks must be decoded in the order they arrive, every one
/// of them (even for streams being refused), or the table drifts.
#[derive(Clone, Debug)]
pub struct Decoder {
    table: DynamicTable,
    /// Our SETTINGS_HEADER_TABLE_SIZE: the largest size update we accept.
    max_table_size: usize,
}

impl Decoder {
    /// `max_table_size` is our SETTINGS_HEADER_TABLE_SIZE, the most a peer
    /// may ask for; the table starts at that size. Use at least 4096 (the
    /// protocol default): the peer encodes its first blocks for 4096 before
    /// it has read our SETTINGS, and a table that starts smaller would lose
    /// entries it still refers to. A larger table is always safe, since
    /// eviction takes the oldest entries and indexes count from the newest.
    pub fn new(max_table_size: usize) -> Decoder {
        Decoder {
            table: DynamicTable::new(max_table_size),
            max_table_size,
        }
    }

    /// Decodes one whole header block (HEADERS + CONTINUATION payloads
    /// joined), appending (name, value) to `out`.
    ///
    /// The header list size (RFC 9113 §6.5.2: the sum of name + value + 32)
    /// is checked against `max_list_size`: past it the rest of the block is
    /// still decoded, so the dynamic table stays in step with the peer's
    /// encoder, but nothing more is collected, and the result is
    /// `Err(ListTooLarge)`, a stream-level problem (the caller may answer
    /// 431). Every other error is a connection error (COMPRESSION_ERROR),
    /// after which the decoder must not be used again. On any error `out`
    /// may hold the fields collected before it; the caller drops them.
    pub fn decode(
        &mut self,
        block: &[u8],
        max_list_size: usize,
        out: &mut Vec<Field>,
    ) -> Result<(), HpackError> {
        let mut input = block;
        let mut list = HeaderList {
            out,
            size: 0,
            limit: max_list_size,
        };
        let mut size_updates = 0;
        let mut seen_field = false;
        while let Some(&first) = input.first() {
            if first & 0x80 != 0 {
                // Indexed field (§6.1).
                let index = integer(&mut input, 7)?;
                let (name, value) = self.entry(index)?;
                if list.admits(name, value) {
                    list.out.push((name.to_vec(), value.to_vec()));
                }
            } else if first & 0xc0 == 0x40 {
                // Literal with incremental indexing (§6.2.1).
                let (name, value) = self.literal(&mut input, 6)?;
                if list.admits(&name, &value) {
                    list.out.push((name.clone(), value.clone()));
                }
                self.table.insert(name, value);
            } else if first & 0xe0 == 0x20 {
                // Dynamic table size update (§6.3).
                if seen_field {
                    return Err(HpackError::SizeUpdateMisplaced);
                }
                size_updates += 1;
                if size_updates > MAX_SIZE_UPDATES {
                    return Err(HpackError::TooManySizeUpdates);
                }
                let size = integer(&mut input, 5)?;
                if size > self.max_table_size {
                    return Err(HpackError::SizeUpdateTooLarge);
                }
                self.table.resize(size);
                continue;
            } else {
                // Literal without indexing (0000) or never indexed (0001),
                // §6.2.2 and §6.2.3: the same to a decoder that forwards
                // nothing.
                let (name, value) = self.literal(&mut input, 4)?;
                if list.admits(&name, &value) {
                    list.out.push((name, value));
                }
            }
            seen_field = true;
        }
        if list.size > list.limit {
            return Err(HpackError::ListTooLarge);
        }
        Ok(())
    }

    /// The entry at a 1-based `index` into the static then the dynamic table.
    fn entry(&self, index: usize) -> Result<(&[u8], &[u8]), HpackError> {
        if index == 0 {
            return Err(HpackError::IndexZero);
        }
        if let Some(&(name, value)) = STATIC_TABLE.get(index - 1) {
            return Ok((name, value));
        }
        self.table
            .get(index - 1 - STATIC_ENTRIES)
            .ok_or(HpackError::IndexOutOfRange)
    }

    /// A literal field whose name index has `prefix_bits` bits (0: the name
    /// follows as a string).
    fn literal(&self, input: &mut &[u8], prefix_bits: u32) -> Result<Field, HpackError> {
        let index = integer(input, prefix_bits)?;
        let name = if index == 0 {
            string(input)?
        } else {
            self.entry(index)?.0.to_vec()
        };
        let value = string(input)?;
        Ok((name, value))
    }
}

/// The header list being collected, and its size as RFC 9113 counts it.
struct HeaderList<'a> {
    out: &'a mut Vec<Field>,
    size: usize,
    limit: usize,
}

impl HeaderList<'_> {
    /// Counts a field; true while the list is still within its limit. Once
    /// false, it stays false for the rest of the block.
    fn admits(&mut self, name: &[u8], value: &[u8]) -> bool {
        self.size = self
            .size
            .saturating_add(name.len() + value.len() + ENTRY_OVERHEAD);
        self.size <= self.limit
    }
}

/// The dynamic table (§4): newest entry first, bounded by `capacity` bytes
/// as §4.1 counts them, so it holds at most capacity / 32 entries.
#[derive(Clone, Debug)]
struct DynamicTable {
    entries: VecDeque<Field>,
    size: usize,
    capacity: usize,
}

impl DynamicTable {
    fn new(capacity: usize) -> DynamicTable {
        DynamicTable {
            entries: VecDeque::new(),
            size: 0,
            capacity,
        }
    }

    /// The entry at a 0-based position, newest first.
    fn get(&self, position: usize) -> Option<(&[u8], &[u8])> {
        self.entries
            .get(position)
            .map(|(name, value)| (&name[..], &value[..]))
    }

    /// Adds an entry, evicting the oldest ones to make room; an entry larger
    /// than the whole table empties it and is not kept (§4.4).
    fn insert(&mut self, name: Vec<u8>, value: Vec<u8>) {
        let size = name.len() + value.len() + ENTRY_OVERHEAD;
        match self.capacity.checked_sub(size) {
            Some(room) => {
                self.evict_to(room);
                self.size += size;
                self.entries.push_front((name, value));
            }
            None => self.evict_to(0),
        }
    }

    /// Applies a size update, evicting what no longer fits (§4.3).
    fn resize(&mut self, capacity: usize) {
        self.capacity = capacity;
        self.evict_to(capacity);
    }

    fn evict_to(&mut self, target: usize) {
        while self.size > target {
            match self.entries.pop_back() {
                Some((name, value)) => self.size -= name.len() + value.len() + ENTRY_OVERHEAD,
                None => break,
            }
        }
    }
}

/// Reads an integer with a `prefix_bits`-bit prefix (§5.1) from the front
/// of `input`, advancing it. The bits above the prefix are the caller's.
fn integer(input: &mut &[u8], prefix_bits: u32) -> Result<usize, HpackError> {
    let (&first, mut rest) = input.split_first().ok_or(HpackError::Truncated)?;
    let prefix_max = (1usize << prefix_bits) - 1;
    let mut value = usize::from(first) & prefix_max;
    if value == prefix_max {
        let mut shift = 0;
        loop {
            let (&byte, tail) = rest.split_first().ok_or(HpackError::Truncated)?;
            rest = tail;
            if shift == 7 * MAX_INTEGER_CONTINUATIONS {
                return Err(HpackError::IntegerOverflow);
            }
            // Below 2^28 + 2^28 at worst: no overflow even in 32 bits.
            value += usize::from(byte & 0x7f) << shift;
            if value > MAX_INTEGER {
                return Err(HpackError::IntegerOverflow);
            }
            shift += 7;
            if byte & 0x80 == 0 {
                break;
            }
        }
    }
    *input = rest;
    Ok(value)
}

/// Reads a string literal (§5.2) from the front of `input`, advancing it.
/// The declared length is checked against what remains of the block before
/// anything is allocated.
fn string(input: &mut &[u8]) -> Result<Vec<u8>, HpackError> {
    let huffman_coded = input.first().ok_or(HpackError::Truncated)? & 0x80 != 0;
    let len = integer(input, 7)?;
    let (raw, rest) = input
        .split_at_checked(len)
        .ok_or(HpackError::StringOverrun)?;
    *input = rest;
    if huffman_coded {
        let mut decoded = Vec::new();
        huffman::decode(raw, &mut decoded)?;
        Ok(decoded)
    } else {
        Ok(raw.to_vec())
    }
}

/// Appends the header block for `headers` to `out`, without touching the
/// peer's dynamic table: an exact static-table match becomes an indexed
/// field, a static name match a literal with that name index, anything else
/// a literal with a new name; all literals are "without indexing". Strings
/// are Huffman-coded when that is shorter. Names are written as given:
/// HTTP/2 wants them in lowercase, which is the caller's business.
pub fn encode(headers: &[(&[u8], &[u8])], out: &mut Vec<u8>) {
    for &(name, value) in headers {
        let mut name_index = 0;
        let mut field_index = 0;
        for (position, &(static_name, static_value)) in STATIC_TABLE.iter().enumerate() {
            if static_name == name {
                if static_value == value {
                    field_index = position + 1;
                    break;
                }
                if name_index == 0 {
                    name_index = position + 1;
                }
            }
        }
        if field_index != 0 {
            put_integer(field_index, 7, 0x80, out);
        } else {
            put_integer(name_index, 4, 0x00, out);
            if name_index == 0 {
                put_string(name, out);
            }
            put_string(value, out);
        }
    }
}

/// Writes `value` with a `prefix_bits`-bit prefix (§5.1); `flags` holds the
/// bits above the prefix.
fn put_integer(value: usize, prefix_bits: u32, flags: u8, out: &mut Vec<u8>) {
    let prefix_max = (1usize << prefix_bits) - 1;
    if value < prefix_max {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | prefix_max as u8);
    let mut rest = value - prefix_max;
    while rest >= 0x80 {
        out.push(0x80 | (rest & 0x7f) as u8);
        rest >>= 7;
    }
    out.push(rest as u8);
}

/// Writes a string literal (§5.2), Huffman-coded when that is shorter.
fn put_string(src: &[u8], out: &mut Vec<u8>) {
    let coded_len = huffman::encoded_len(src);
    if coded_len < src.len() {
        put_integer(coded_len, 7, 0x80, out);
        huffman::encode(src, out);
    } else {
        put_integer(src.len(), 7, 0x00, out);
        out.extend_from_slice(src);
    }
}

/// The static table (RFC 7541 Appendix A); index i is entry i + 1.
#[rustfmt::skip]
static STATIC_TABLE: [(&[u8], &[u8]); STATIC_ENTRIES] = [
    (b":authority", b""),
    (b":method", b"GET"),
    (b":method", b"POST"),
    (b":path", b"/"),
    (b":path", b"/index.html"),
    (b":scheme", b"http"),
    (b":scheme", b"https"),
    (b":status", b"200"),
    (b":status", b"204"),
    (b":status", b"206"),
    (b":status", b"304"),
    (b":status", b"400"),
    (b":status", b"404"),
    (b":status", b"500"),
    (b"accept-charset", b""),
    (b"accept-encoding", b"gzip, deflate"),
    (b"accept-language", b""),
    (b"accept-ranges", b""),
    (b"accept", b""),
    (b"access-control-allow-origin", b""),
    (b"age", b""),
    (b"allow", b""),
    (b"authorization", b""),
    (b"cache-control", b""),
    (b"content-disposition", b""),
    (b"content-encoding", b""),
    (b"content-language", b""),
    (b"content-length", b""),
    (b"content-location", b""),
    (b"content-range", b""),
    (b"content-type", b""),
    (b"cookie", b""),
    (b"date", b""),
    (b"etag", b""),
    (b"expect", b""),
    (b"expires", b""),
    (b"from", b""),
    (b"host", b""),
    (b"if-match", b""),
    (b"if-modified-since", b""),
    (b"if-none-match", b""),
    (b"if-range", b""),
    (b"if-unmodified-since", b""),
    (b"last-modified", b""),
    (b"link", b""),
    (b"location", b""),
    (b"max-forwards", b""),
    (b"proxy-authenticate", b""),
    (b"proxy-authorization", b""),
    (b"range", b""),
    (b"referer", b""),
    (b"refresh", b""),
    (b"retry-after", b""),
    (b"server", b""),
    (b"set-cookie", b""),
    (b"strict-transport-security", b""),
    (b"transfer-encoding", b""),
    (b"user-agent", b""),
    (b"vary", b""),
    (b"via", b""),
    (b"www-authenticate", b""),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(text: &str) -> Vec<u8> {
        let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        digits
            .chunks(2)
            .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
            .collect()
    }

    fn owned(fields: &[(&str, &str)]) -> Vec<Field> {
        fields
            .iter()
            .map(|&(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect()
    }

    /// One block of an Appendix C sequence: its bytes, the header list, and
    /// the dynamic table afterwards (newest first) with its size.
    struct Block {
        hex: &'static str,
        fields: &'static [(&'static str, &'static str)],
        table: &'static [(&'static str, &'static str)],
        table_size: usize,
    }

    /// Blocks decoded in order by one decoder.
    struct Sequence {
        name: &'static str,
        max_table_size: usize,
        blocks: &'static [Block],
    }

    const C3_1: &[(&str, &str)] = &[
        (":method", "GET"),
        (":scheme", "http"),
        (":path", "/"),
        (":authority", "www.example.com"),
    ];
    const C3_2: &[(&str, &str)] = &[
        (":method", "GET"),
        (":scheme", "http"),
        (":path", "/"),
        (":authority", "www.example.com"),
        ("cache-control", "no-cache"),
    ];
    const C3_3: &[(&str, &str)] = &[
        (":method", "GET"),
        (":scheme", "https"),
        (":path", "/index.html"),
        (":authority", "www.example.com"),
        ("custom-key", "custom-value"),
    ];
    const C3_TABLE_1: &[(&str, &str)] = &[(":authority", "www.example.com")];
    const C3_TABLE_2: &[(&str, &str)] = &[
        ("cache-control", "no-cache"),
        (":authority", "www.example.com"),
    ];
    const C3_TABLE_3: &[(&str, &str)] = &[
        ("custom-key", "custom-value"),
        ("cache-control", "no-cache"),
        (":authority", "www.example.com"),
    ];
    const DATE_21: &str = "Mon, 21 Oct 2013 20:13:21 GMT";
    const DATE_22: &str = "Mon, 21 Oct 2013 20:13:22 GMT";
    const LOCATION: &str = "https://www.example.com";
    const COOKIE: &str = "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1";
    const C5_1: &[(&str, &str)] = &[
        (":status", "302"),
        ("cache-control", "private"),
        ("date", DATE_21),
        ("location", LOCATION),
    ];
    const C5_2: &[(&str, &str)] = &[
        (":status", "307"),
        ("cache-control", "private"),
        ("date", DATE_21),
        ("location", LOCATION),
    ];
    const C5_3: &[(&str, &str)] = &[
        (":status", "200"),
        ("cache-control", "private"),
        ("date", DATE_22),
        ("location", LOCATION),
        ("content-encoding", "gzip"),
        ("set-cookie", COOKIE),
    ];
    const C5_TABLE_1: &[(&str, &str)] = &[
        ("location", LOCATION),
        ("date", DATE_21),
        ("cache-control", "private"),
        (":status", "302"),
    ];
    const C5_TABLE_2: &[(&str, &str)] = &[
        (":status", "307"),
        ("location", LOCATION),
        ("date", DATE_21),
        ("cache-control", "private"),
    ];
    const C5_TABLE_3: &[(&str, &str)] = &[
        ("set-cookie", COOKIE),
        ("content-encoding", "gzip"),
        ("date", DATE_22),
    ];

    /// RFC 7541 Appendix C.2 to C.6, hex as printed in the RFC.
    const APPENDIX_C: &[Sequence] = &[
        Sequence {
            name: "C.2.1 literal with indexing",
            max_table_size: 4096,
            blocks: &[Block {
                hex: "400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572",
                fields: &[("custom-key", "custom-header")],
                table: &[("custom-key", "custom-header")],
                table_size: 55,
            }],
        },
        Sequence {
            name: "C.2.2 literal without indexing",
            max_table_size: 4096,
            blocks: &[Block {
                hex: "040c 2f73 616d 706c 652f 7061 7468",
                fields: &[(":path", "/sample/path")],
                table: &[],
                table_size: 0,
            }],
        },
        Sequence {
            name: "C.2.3 literal never indexed",
            max_table_size: 4096,
            blocks: &[Block {
                hex: "1008 7061 7373 776f 7264 0673 6563 7265 74",
                fields: &[("password", "secret")],
                table: &[],
                table_size: 0,
            }],
        },
        Sequence {
            name: "C.2.4 indexed field",
            max_table_size: 4096,
            blocks: &[Block {
                hex: "82",
                fields: &[(":method", "GET")],
                table: &[],
                table_size: 0,
            }],
        },
        Sequence {
            name: "C.3 requests without Huffman",
            max_table_size: 4096,
            blocks: &[
                Block {
                    hex: "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
                    fields: C3_1,
                    table: C3_TABLE_1,
                    table_size: 57,
                },
                Block {
                    hex: "8286 84be 5808 6e6f 2d63 6163 6865",
                    fields: C3_2,
                    table: C3_TABLE_2,
                    table_size: 110,
                },
                Block {
                    hex: "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
                    fields: C3_3,
                    table: C3_TABLE_3,
                    table_size: 164,
                },
            ],
        },
        Sequence {
            name: "C.4 requests with Huffman",
            max_table_size: 4096,
            blocks: &[
                Block {
                    hex: "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
                    fields: C3_1,
                    table: C3_TABLE_1,
                    table_size: 57,
                },
                Block {
                    hex: "8286 84be 5886 a8eb 1064 9cbf",
                    fields: C3_2,
                    table: C3_TABLE_2,
                    table_size: 110,
                },
                Block {
                    hex: "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
                    fields: C3_3,
                    table: C3_TABLE_3,
                    table_size: 164,
                },
            ],
        },
        Sequence {
            name: "C.5 responses without Huffman, table size 256",
            max_table_size: 256,
            blocks: &[
                Block {
                    hex: "4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 \
                          3230 3133 2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 \
                          7777 2e65 7861 6d70 6c65 2e63 6f6d",
                    fields: C5_1,
                    table: C5_TABLE_1,
                    table_size: 222,
                },
                Block {
                    hex: "4803 3330 37c1 c0bf",
                    fields: C5_2,
                    table: C5_TABLE_2,
                    table_size: 222,
                },
                Block {
                    hex: "88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 \
                          3220 474d 54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a \
                          584f 5157 454f 5049 5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 \
                          3630 303b 2076 6572 7369 6f6e 3d31",
                    fields: C5_3,
                    table: C5_TABLE_3,
                    table_size: 215,
                },
            ],
        },
        Sequence {
            name: "C.6 responses with Huffman, table size 256",
            max_table_size: 256,
            blocks: &[
                Block {
                    hex: "4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 \
                          66e0 82a6 2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3",
                    fields: C5_1,
                    table: C5_TABLE_1,
                    table_size: 222,
                },
                Block {
                    hex: "4883 640e ffc1 c0bf",
                    fields: C5_2,
                    table: C5_TABLE_2,
                    table_size: 222,
                },
                Block {
                    hex: "88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a \
                          839b d9ab 77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 \
                          72c1 ab27 0fb5 291f 9587 3160 65c0 03ed 4ee5 b106 3d50 07",
                    fields: C5_3,
                    table: C5_TABLE_3,
                    table_size: 215,
                },
            ],
        },
    ];

    #[test]
    fn appendix_c_examples() {
        for sequence in APPENDIX_C {
            let mut decoder = Decoder::new(sequence.max_table_size);
            for (n, block) in sequence.blocks.iter().enumerate() {
                let name = format!("{} block {}", sequence.name, n + 1);
                let mut out = Vec::new();
                assert_eq!(
                    decoder.decode(&hex(block.hex), usize::MAX, &mut out),
                    Ok(()),
                    "{name}"
                );
                assert_eq!(out, owned(block.fields), "{name}");
                let table: Vec<Field> = decoder.table.entries.iter().cloned().collect();
                assert_eq!(table, owned(block.table), "{name}");
                assert_eq!(decoder.table.size, block.table_size, "{name}");
            }
        }
    }

    #[test]
    fn appendix_c_every_prefix_fails_cleanly() {
        for sequence in APPENDIX_C {
            let mut decoder = Decoder::new(sequence.max_table_size);
            for (n, block) in sequence.blocks.iter().enumerate() {
                let bytes = hex(block.hex);
                let expected = owned(block.fields);
                for len in 0..bytes.len() {
                    let name = format!("{} block {} prefix {len}", sequence.name, n + 1);
                    let mut out = Vec::new();
                    // A prefix that ends between fields is a valid, shorter
                    // block; any other ends inside an integer or a string.
                    match decoder.clone().decode(&bytes[..len], usize::MAX, &mut out) {
                        Ok(()) => assert_eq!(out[..], expected[..out.len()], "{name}"),
                        Err(e) => assert!(
                            matches!(e, HpackError::Truncated | HpackError::StringOverrun),
                            "{name}: {e:?}"
                        ),
                    }
                }
                let mut out = Vec::new();
                assert_eq!(decoder.decode(&bytes, usize::MAX, &mut out), Ok(()));
                assert_eq!(out, expected);
            }
        }
    }

    #[test]
    fn integer_examples_c1() {
        // (name, prefix bits, value, encoding); C.1.3 sits on an octet
        // boundary, an 8-bit prefix.
        let cases: &[(&str, u32, usize, &[u8])] = &[
            ("C.1.1 10 in 5 bits", 5, 10, &[0x0a]),
            ("C.1.2 1337 in 5 bits", 5, 1337, &[0x1f, 0x9a, 0x0a]),
            ("C.1.3 42 in 8 bits", 8, 42, &[0x2a]),
            ("prefix filled exactly", 5, 31, &[0x1f, 0x00]),
            (
                "MAX_INTEGER in 7 bits",
                7,
                MAX_INTEGER,
                &[0x7f, 0x80, 0xff, 0xff, 0x7f],
            ),
        ];
        for &(name, prefix_bits, value, bytes) in cases {
            let mut out = Vec::new();
            put_integer(value, prefix_bits, 0, &mut out);
            assert_eq!(out, bytes, "{name}");
            let mut input = bytes;
            assert_eq!(integer(&mut input, prefix_bits), Ok(value), "{name}");
            assert!(input.is_empty(), "{name}");
            // The bits above the prefix belong to the caller.
            let mut flagged = bytes.to_vec();
            flagged[0] |= !(((1u16 << prefix_bits) - 1) as u8);
            assert_eq!(integer(&mut &flagged[..], prefix_bits), Ok(value), "{name}");
        }
    }

    #[test]
    fn integer_limits() {
        let mut over = Vec::new();
        put_integer(MAX_INTEGER + 1, 7, 0, &mut over);
        let cases: &[(&str, &[u8], Result<usize, HpackError>)] = &[
            (
                "MAX_INTEGER",
                &[0x7f, 0x80, 0xff, 0xff, 0x7f],
                Ok(MAX_INTEGER),
            ),
            ("MAX_INTEGER + 1", &over, Err(HpackError::IntegerOverflow)),
            (
                "four continuation bytes",
                &[0x7f, 0x80, 0x80, 0x80, 0x00],
                Ok(127),
            ),
            (
                "five continuation bytes",
                &[0x7f, 0x80, 0x80, 0x80, 0x80, 0x00],
                Err(HpackError::IntegerOverflow),
            ),
            (
                "endless continuation",
                &[
                    0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
                ],
                Err(HpackError::IntegerOverflow),
            ),
            ("empty", &[], Err(HpackError::Truncated)),
            (
                "prefix full, no continuation",
                &[0x7f],
                Err(HpackError::Truncated),
            ),
            (
                "continuation cut off",
                &[0x7f, 0x80],
                Err(HpackError::Truncated),
            ),
        ];
        for &(name, bytes, expected) in cases {
            assert_eq!(integer(&mut &bytes[..], 7), expected, "{name}");
        }
    }

    /// Decodes one block with a fresh decoder; the result and the fields.
    fn decode_one(max_table_size: usize, block: &[u8]) -> (Result<(), HpackError>, Vec<Field>) {
        let mut decoder = Decoder::new(max_table_size);
        let mut out = Vec::new();
        let result = decoder.decode(block, usize::MAX, &mut out);
        (result, out)
    }

    type Outcome = Result<(), HpackError>;

    #[test]
    fn rejects() {
        let mut max_index = vec![0x80];
        put_integer(MAX_INTEGER, 7, 0x80, &mut max_index);
        max_index.remove(0);
        let mut over_max_index = Vec::new();
        put_integer(MAX_INTEGER + 1, 7, 0x80, &mut over_max_index);
        // (name, max_table_size, block, expected); each limit at the
        // limit and one past it. After `0x00 0x01 'a'` comes a value string.
        let cases: Vec<(&str, usize, Vec<u8>, Outcome)> = vec![
            ("index 0", 4096, vec![0x80], Err(HpackError::IndexZero)),
            ("last static index", 4096, vec![0xbd], Ok(())),
            (
                "index past the tables",
                4096,
                vec![0xbe],
                Err(HpackError::IndexOutOfRange),
            ),
            (
                "name index past the tables",
                4096,
                vec![0x0f, 0x2f, 0x00],
                Err(HpackError::IndexOutOfRange),
            ),
            (
                "index MAX_INTEGER",
                4096,
                max_index,
                Err(HpackError::IndexOutOfRange),
            ),
            (
                "index MAX_INTEGER + 1",
                4096,
                over_max_index,
                Err(HpackError::IntegerOverflow),
            ),
            ("size update at the limit", 100, vec![0x3f, 0x45], Ok(())),
            (
                "size update past the limit",
                100,
                vec![0x3f, 0x46],
                Err(HpackError::SizeUpdateTooLarge),
            ),
            (
                "size update after a field",
                4096,
                vec![0x82, 0x20],
                Err(HpackError::SizeUpdateMisplaced),
            ),
            (
                "two size updates",
                4096,
                vec![0x20, 0x3f, 0xe1, 0x1f, 0x82],
                Ok(()),
            ),
            (
                "three size updates",
                4096,
                vec![0x20, 0x20, 0x20, 0x82],
                Err(HpackError::TooManySizeUpdates),
            ),
            (
                "string fills the block",
                4096,
                vec![0x00, 0x01, b'a', 0x01, b'b'],
                Ok(()),
            ),
            (
                "value one past the block",
                4096,
                vec![0x00, 0x01, b'a', 0x02, b'b'],
                Err(HpackError::StringOverrun),
            ),
            (
                "name one past the block",
                4096,
                vec![0x00, 0x02, b'a'],
                Err(HpackError::StringOverrun),
            ),
            (
                "huge string length",
                4096,
                vec![0x00, 0x7f, 0xff, 0xff, 0xff, 0x0f],
                Err(HpackError::StringOverrun),
            ),
            (
                "ends before the name",
                4096,
                vec![0x40],
                Err(HpackError::Truncated),
            ),
            (
                "ends before the value",
                4096,
                vec![0x00, 0x01, b'a'],
                Err(HpackError::Truncated),
            ),
            (
                "ends after an indexed name",
                4096,
                vec![0x04],
                Err(HpackError::Truncated),
            ),
            (
                "ends inside an index",
                4096,
                vec![0xff],
                Err(HpackError::Truncated),
            ),
            (
                "ends inside a size update",
                4096,
                vec![0x3f, 0x80],
                Err(HpackError::Truncated),
            ),
            (
                "Huffman, 3 bits of padding",
                4096,
                vec![0x00, 0x01, b'a', 0x81, 0x07],
                Ok(()),
            ),
            (
                "Huffman, 8 bits of padding",
                4096,
                vec![0x00, 0x01, b'a', 0x81, 0xff],
                Err(HpackError::HuffmanPadding),
            ),
            (
                "Huffman padding not all ones",
                4096,
                vec![0x00, 0x01, b'a', 0x81, 0x06],
                Err(HpackError::HuffmanPadding),
            ),
            (
                "Huffman EOS",
                4096,
                vec![0x00, 0x01, b'a', 0x84, 0xff, 0xff, 0xff, 0xff],
                Err(HpackError::HuffmanEos),
            ),
            (
                "Huffman EOS in a name",
                4096,
                vec![0x00, 0x85, 0xff, 0xff, 0xff, 0xfc, 0x1f, 0x00],
                Err(HpackError::HuffmanEos),
            ),
            (
                "empty Huffman string",
                4096,
                vec![0x00, 0x01, b'a', 0x80],
                Ok(()),
            ),
            ("empty block", 4096, vec![], Ok(())),
        ];
        for (name, max_table_size, block, expected) in cases {
            let (result, _) = decode_one(max_table_size, &block);
            assert_eq!(result, expected, "{name}");
            if let Err(error) = expected {
                assert!(error.is_connection_error(), "{name}");
            }
        }
    }

    #[test]
    fn list_size_limit_keeps_the_table_in_step() {
        // Two literals with incremental indexing, 1 + 1 + 32 = 34 bytes each.
        let block = [0x40, 0x01, b'a', 0x01, b'b', 0x40, 0x01, b'c', 0x01, b'd'];
        let mut decoder = Decoder::new(4096);
        let mut out = Vec::new();
        assert_eq!(decoder.decode(&block, 68, &mut out), Ok(()));
        assert_eq!(out, owned(&[("a", "b"), ("c", "d")]));

        let mut decoder = Decoder::new(4096);
        let mut out = Vec::new();
        let result = decoder.decode(&block, 67, &mut out);
        assert_eq!(result, Err(HpackError::ListTooLarge));
        assert!(!HpackError::ListTooLarge.is_connection_error());
        assert_eq!(out, owned(&[("a", "b")]));
        // Both entries went into the table all the same: the next block can
        // refer to them.
        let mut out = Vec::new();
        assert_eq!(decoder.decode(&[0xbe, 0xbf], 68, &mut out), Ok(()));
        assert_eq!(out, owned(&[("c", "d"), ("a", "b")]));
        // Fields past the limit are not collected, indexed ones included,
        // and a later connection error still wins.
        let mut out = Vec::new();
        assert_eq!(
            decoder.decode(&[0xbe, 0xbf, 0x82], 67, &mut out),
            Err(HpackError::ListTooLarge)
        );
        assert_eq!(out, owned(&[("c", "d")]));
        let mut out = Vec::new();
        assert_eq!(
            decoder.decode(&[0xbe, 0xbf, 0x80], 40, &mut out),
            Err(HpackError::IndexZero)
        );
    }

    #[test]
    fn dynamic_table_eviction_and_resizing() {
        // An entry larger than the table empties it and is not kept (§4.4).
        let mut decoder = Decoder::new(4096);
        let mut out = Vec::new();
        decoder
            .decode(
                &hex("400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572"),
                usize::MAX,
                &mut out,
            )
            .unwrap();
        assert_eq!(decoder.table.size, 55);
        decoder.decode(&[0x20], usize::MAX, &mut out).unwrap();
        assert_eq!((decoder.table.size, decoder.table.entries.len()), (0, 0));
        // Size 54 holds nothing of 55 bytes; 55 holds exactly one entry.
        let entry = [
            0x40, 0x03, b'a', b'b', b'c', 0x14, b'x', b'x', b'x', b'x', b'x', b'x', b'x', b'x',
            b'x', b'x', b'x', b'x', b'x', b'x', b'x', b'x', b'x', b'x', b'x', b'x',
        ];
        let mut small = vec![0x3f, 0x17]; // size update: 31 + 23 = 54
        small.extend_from_slice(&entry);
        let mut decoder = Decoder::new(4096);
        decoder.decode(&small, usize::MAX, &mut out).unwrap();
        assert_eq!((decoder.table.size, decoder.table.entries.len()), (0, 0));
        assert_eq!(
            decoder.decode(&[0xbe], usize::MAX, &mut out),
            Err(HpackError::IndexOutOfRange)
        );
        let mut exact = vec![0x3f, 0x18]; // 55
        exact.extend_from_slice(&entry);
        exact.extend_from_slice(&entry);
        let mut decoder = Decoder::new(4096);
        decoder.decode(&exact, usize::MAX, &mut out).unwrap();
        assert_eq!((decoder.table.size, decoder.table.entries.len()), (55, 1));
        // Shrinking evicts the oldest entries first (§4.3).
        let mut decoder = Decoder::new(4096);
        for block in APPENDIX_C[4].blocks {
            decoder
                .decode(&hex(block.hex), usize::MAX, &mut out)
                .unwrap();
        }
        assert_eq!(decoder.table.size, 164);
        decoder.decode(&[0x3f, 0x4f], usize::MAX, &mut out).unwrap(); // 110
        let table: Vec<Field> = decoder.table.entries.iter().cloned().collect();
        assert_eq!(table, owned(&C3_TABLE_3[..2]));
        assert_eq!(decoder.table.size, 107);
    }

    #[test]
    fn round_trips() {
        let binary: Vec<u8> = (0..=255).collect();
        let long = vec![b'a'; 20_000];
        let lists: Vec<Vec<(&[u8], &[u8])>> = vec![
            vec![],
            vec![(b":status", b"200")],
            vec![
                (b":status", b"418"),
                (b"content-type", b"text/event-stream"),
                (b"cache-control", b"no-cache"),
            ],
            vec![
                (b"accept-encoding", b"gzip, deflate"),
                (b"x-custom", b"value"),
                (b"x-empty", b""),
                (b"", b""),
            ],
            vec![(&binary, &binary), (b"set-cookie", &binary)],
            vec![(b"x-long", &long), (b":path", &long)],
            vec![
                (b":method", b"GET"),
                (b":method", b"PUT"),
                (b":authority", b"chat.example"),
            ],
        ];
        for list in lists {
            let mut block = Vec::new();
            encode(&list, &mut block);
            let (result, out) = decode_one(0, &block);
            assert_eq!(result, Ok(()), "{list:?}");
            let expected: Vec<Field> = list
                .iter()
                .map(|&(n, v)| (n.to_vec(), v.to_vec()))
                .collect();
            assert_eq!(out, expected);
        }
    }

    type Headers<'a> = &'a [(&'a [u8], &'a [u8])];

    #[test]
    fn encoder_representations() {
        let cases: &[(&str, Headers, &[u8])] = &[
            ("exact static match", &[(b":status", b"200")], &[0x88]),
            (
                "static match, 4-bit index",
                &[(b"accept-encoding", b"gzip, deflate")],
                &[0x90],
            ),
            (
                "static name",
                &[(b":status", b"418")],
                &[0x08, 0x03, b'4', b'1', b'8'],
            ),
            (
                "static name past 15",
                &[(b"vary", b"*")],
                &[0x0f, 0x2c, 0x01, b'*'],
            ),
            ("new name", &[(b"x", b"")], &[0x00, 0x01, b'x', 0x00]),
            (
                "Huffman when shorter",
                &[(b"cache-control", b"no-cache")],
                &[0x0f, 0x09, 0x86, 0xa8, 0xeb, 0x10, 0x64, 0x9c, 0xbf],
            ),
        ];
        for &(name, headers, expected) in cases {
            let mut out = Vec::new();
            encode(headers, &mut out);
            assert_eq!(out, expected, "{name}");
        }
    }

    #[test]
    fn errors_display() {
        let all = [
            HpackError::IntegerOverflow,
            HpackError::Truncated,
            HpackError::StringOverrun,
            HpackError::IndexZero,
            HpackError::IndexOutOfRange,
            HpackError::SizeUpdateMisplaced,
            HpackError::TooManySizeUpdates,
            HpackError::SizeUpdateTooLarge,
            HpackError::HuffmanPadding,
            HpackError::HuffmanEos,
            HpackError::ListTooLarge,
        ];
        let texts: std::collections::HashSet<String> = all.iter().map(|e| e.to_string()).collect();
        assert_eq!(texts.len(), all.len());
    }
}
