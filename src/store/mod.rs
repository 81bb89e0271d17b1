//! The durable history (issue 15): an append-only log of every message a
//! node accepts, its own and its peers', on a directory of its own.
//! Records are length-prefixed with CRC-32C checksums (`record`, `crc`),
//! segments roll at a size and carry the high-water mark of those before
//! them (`segment`, `header`, `disk`), old segments go once the history no
//! longer needs them (`retention`), a lock file keeps a second process off
//! the directory (`lock`), and `log` ties it together: open (scan, cut a
//! torn tail, skip a corrupt record), append, commit with the chosen fsync
//! policy (`report` says what opening found). The node does not write it
//! yet: this is the tested, fuzzed core the next step wires in.

pub mod crc;
pub mod disk;
pub mod header;
pub mod lock;
pub mod log;
pub mod record;
pub mod report;
pub mod retention;
pub mod segment;
