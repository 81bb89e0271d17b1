//! The node's history log on a directory: open (load and repair), append,
//! commit, roll, drop old segments. The only part of `store` that writes;
//! the formats are in `record.rs` and `segment.rs`, file handling in
//! `disk.rs`, the drop rule in `retention.rs`.
//!
//! Durability contract. `append` only buffers. `commit` writes everything
//! buffered with one `pwrite` at the end of the last good record, then,
//! unless `Fsync::Off`, one `fdatasync`. When `commit` returns `Ok`, every
//! record appended before it survives `kill -9`, and with `Always`/`Batch`
//! power loss too. When it returns `Err` (ENOSPC, EROFS, EIO...), none of
//! the buffered records counts as written: the file is cut back to its last
//! good length, so no half record stays, and the buffer is kept; the next
//! `commit` writes it again, whole, at the same offset (rewriting, not just
//! re-syncing, because after a failed fsync the kernel may have dropped the
//! dirty pages). So a record is on disk once whether the first try failed
//! or not.
//!
//! `Always` and `Batch` make the same `commit`: the difference is how often
//! the node calls it. Under `Always` it commits after every append (one
//! fdatasync per message); under `Batch` once per loop turn that appended,
//! before it acknowledges that turn's publishes.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::disk;
use super::header::{HeaderError, SegmentHeader};
use super::lock::DirLock;
use super::record::{self, Record, RecordRef};
use super::report::{Damage, Report};
use super::retention::{self, Summary};

/// When the log calls `fdatasync`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fsync {
    /// Every commit, and the node commits every message.
    Always,
    /// Every commit, and the node commits once per loop turn.
    Batch,
    /// Never: a commit survives `kill -9` (the page cache does) but not
    /// power loss.
    Off,
}

impl Fsync {
    /// As `--fsync` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Fsync::Always => "always",
            Fsync::Batch => "batch",
            Fsync::Off => "off",
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Options {
    pub fsync: Fsync,
    /// A new segment starts at the first commit after the current one
    /// passes this size (so a segment ends within one commit past it).
    pub segment_bytes: u64,
}

pub const DEFAULT_SEGMENT_BYTES: u64 = 8 << 20;

/// Most bytes `append` buffers. Reached only while commits keep failing:
/// the node is refusing publishes then, and peers' messages wait in their
/// own queues; beyond it `append` refuses rather than grow without bound.
pub const MAX_PENDING: usize = 16 << 20;

impl Default for Options {
    fn default() -> Options {
        Options {
            fsync: Fsync::Batch,
            segment_bytes: DEFAULT_SEGMENT_BYTES,
        }
    }
}

struct Segment {
    number: u64,
    summary: Summary,
}

pub struct Log {
    dir: PathBuf,
    opts: Options,
    /// Segments oldest first; the last is the one being written.
    segments: Vec<Segment>,
    file: File,
    /// Length of the current segment up to its last committed record.
    len: u64,
    header_len: u64,
    salt: u32,
    /// A failed commit may have left bytes past `len` that could not be cut
    /// at once; the next commit cuts them first.
    dirty_tail: bool,
    /// Encoded records waiting for `commit`, and what they add to the
    /// summary and the high-water marks once written.
    pending: Vec<u8>,
    pending_records: usize,
    pending_rooms: Summary,
    pending_high: BTreeMap<u32, u64>,
    /// Highest committed seq per origin, including records in segments
    /// since dropped (carried in each new segment's header).
    high_water: BTreeMap<u32, u64>,
    _lock: DirLock,
}

/// What `open` found of the last segment, which becomes the current one.
#[derive(Clone, Copy)]
enum Tail {
    Good {
        number: u64,
        salt: u32,
        header_len: u64,
        good_end: u64,
        cut: bool,
    },
    TornHeader(u64),
    /// No segment yet, or the last one is unreadable: start segment N.
    New(u64),
}

impl Log {
    /// Opens (creating if missing) the log in `dir`, locks it for this
    /// process, and loads it: every good record in file order, and a report
    /// of what was damaged. A torn tail of the last segment is cut off; a
    /// corrupt span elsewhere is skipped and left on disk. `Err` is one
    /// readable line: the directory cannot be created or locked (another
    /// process has it), a segment cannot be read, or it is from a newer
    /// format.
    pub fn open(dir: &Path, opts: Options) -> Result<(Log, Vec<Record>, Report), String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create log directory {}: {e}", dir.display()))?;
        let lock = DirLock::acquire(dir)?;
        let mut report = Report {
            dir: dir.to_path_buf(),
            ..Report::default()
        };
        let mut loaded = load(dir, &mut report)?;
        report.records = loaded.records.len();
        let sync = opts.fsync != Fsync::Off;
        let current = open_current(dir, &mut loaded, sync, &mut report)?;
        let log = Log {
            dir: dir.to_path_buf(),
            opts,
            segments: loaded.segments,
            file: current.file,
            len: current.len,
            header_len: current.header_len,
            salt: current.salt,
            dirty_tail: false,
            pending: Vec::new(),
            pending_records: 0,
            pending_rooms: Summary::known(),
            pending_high: BTreeMap::new(),
            high_water: loaded.high_water,
            _lock: lock,
        };
        Ok((log, loaded.records, report))
    }

    /// Buffers `rec` for the next `commit`; no I/O. Refused (InvalidInput)
    /// for a room or text the format cannot hold, and (Other) when
    /// `MAX_PENDING` bytes already wait because commits keep failing.
    pub fn append(&mut self, rec: &Record) -> io::Result<()> {
        self.append_ref(rec.as_ref())
    }

    /// `append` without owning the strings (the node appends what its
    /// rooms hold).
    pub fn append_ref(&mut self, rec: RecordRef<'_>) -> io::Result<()> {
        if self.pending.len() >= MAX_PENDING {
            return Err(io::Error::other(
                "log write buffer full: commits are failing",
            ));
        }
        record::encode_ref(rec, self.salt, &mut self.pending)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        self.pending_records += 1;
        self.pending_rooms.add(rec.room, 1);
        raise(&mut self.pending_high, rec.origin, rec.seq);
        Ok(())
    }

    /// Writes every appended record, then syncs per `Fsync` (see the module
    /// doc for the contract). Nothing to write: `Ok` without a syscall.
    pub fn commit(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        if self.dirty_tail {
            self.file.set_len(self.len)?;
            self.dirty_tail = false;
        }
        if self.len >= self.opts.segment_bytes && self.len > self.header_len {
            self.roll()?;
        }
        let written = self
            .file
            .write_all_at(&self.pending, self.len)
            .and_then(|()| {
                if self.syncs() {
                    self.file.sync_data()
                } else {
                    Ok(())
                }
            });
        if let Err(e) = written {
            // Nothing of this batch counts: cut what may have reached the
            // file (freeing its blocks on a full disk), keep the batch.
            if self.file.set_len(self.len).is_err() {
                self.dirty_tail = true;
            }
            return Err(e);
        }
        self.len += self.pending.len() as u64;
        self.pending.clear();
        self.pending_records = 0;
        let written_rooms = std::mem::take(&mut self.pending_rooms.rooms);
        if let Some(current) = self.segments.last_mut() {
            for (room, n) in written_rooms {
                current.summary.add(&room, n);
            }
        }
        for (origin, seq) in std::mem::take(&mut self.pending_high) {
            raise(&mut self.high_water, origin, seq);
        }
        Ok(())
    }

    /// Starts the next segment. Its header carries the salt (unchanged, so
    /// records already encoded for the buffer stay valid) and the committed
    /// high-water marks. On error the current segment stays current.
    fn roll(&mut self) -> io::Result<()> {
        let number = self
            .current_number()
            .checked_add(1)
            .ok_or_else(|| io::Error::other("log segment numbers exhausted"))?;
        let header = SegmentHeader {
            salt: self.salt,
            floor: self.high_water(),
        };
        let (file, len) = disk::create_segment(&self.dir, number, &header, self.syncs())?;
        self.file = file;
        self.len = len;
        self.header_len = len;
        self.segments.push(Segment {
            number,
            summary: Summary::known(),
        });
        Ok(())
    }

    /// Deletes the old segments whose every record has left the node's
    /// in-memory history, when that keeps `history` messages per room (the
    /// rule is in `retention.rs`). Returns how many went. Cheap: it works
    /// from per-segment summaries; the node may call it after any commit.
    pub fn drop_segments(&mut self, history: usize) -> io::Result<usize> {
        let summaries: Vec<Summary> = self.segments.iter().map(|s| s.summary.clone()).collect();
        let doomed = retention::droppable(&summaries, history);
        let mut gone = Vec::new();
        let mut failed = None;
        for i in doomed {
            let number = self.segments[i].number;
            match std::fs::remove_file(disk::segment_path(&self.dir, number)) {
                Ok(()) => gone.push(number),
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        self.segments.retain(|s| !gone.contains(&s.number));
        if !gone.is_empty() && self.syncs() {
            disk::sync_dir(&self.dir)?;
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(gone.len()),
        }
    }

    /// Highest committed seq per origin, sorted by origin, including
    /// origins whose records are in segments since dropped: what the node
    /// seeds its clock (and its own next seq) with after `open`.
    pub fn high_water(&self) -> Vec<(u32, u64)> {
        self.high_water.iter().map(|(&o, &s)| (o, s)).collect()
    }

    /// Records appended and not yet committed.
    pub fn pending(&self) -> usize {
        self.pending_records
    }

    /// Segment files the log holds now (including unreadable ones).
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn options(&self) -> Options {
        self.opts
    }

    fn current_number(&self) -> u64 {
        self.segments.last().map_or(0, |s| s.number)
    }

    fn syncs(&self) -> bool {
        self.opts.fsync != Fsync::Off
    }
}

/// Everything `open` read from the segments.
struct Loaded {
    records: Vec<Record>,
    segments: Vec<Segment>,
    high_water: BTreeMap<u32, u64>,
    tail: Tail,
}

/// Reads every segment in order, filling in `report`; decides nothing
/// about the files yet except refusing a newer format.
fn load(dir: &Path, report: &mut Report) -> Result<Loaded, String> {
    let at = |e: io::Error, what: &Path| format!("log {}: {e}", what.display());
    let numbers = disk::list_segments(dir).map_err(|e| at(e, dir))?;
    report.segments = numbers.len();
    let mut out = Loaded {
        records: Vec::new(),
        segments: Vec::with_capacity(numbers.len() + 1),
        high_water: BTreeMap::new(),
        tail: Tail::New(1),
    };
    let mut window = Vec::new();
    for (i, &number) in numbers.iter().enumerate() {
        let last = i + 1 == numbers.len();
        let path = disk::segment_path(dir, number);
        let file = File::open(&path).map_err(|e| at(e, &path))?;
        let size = file.metadata().map_err(|e| at(e, &path))?.len();
        let mut summary = Summary::known();
        let (records, high_water) = (&mut out.records, &mut out.high_water);
        let read = disk::read_segment(&file, size, &mut window, |_, r| {
            summary.add(r.room, 1);
            raise(high_water, r.origin, r.seq);
            records.push(r.to_record());
        })
        .map_err(|e| at(e, &path))?;
        match read {
            disk::Loaded::Scanned {
                header,
                header_len,
                end,
            } => {
                for (origin, seq) in header.floor {
                    raise(&mut out.high_water, origin, seq);
                }
                let damage = |r: std::ops::Range<u64>| Damage {
                    segment: path.clone(),
                    offset: r.start,
                    bytes: r.end - r.start,
                };
                report
                    .skipped
                    .extend(end.skipped.iter().cloned().map(damage));
                let cut = last && end.torn.is_some();
                match end.torn {
                    Some(t) if last => report.torn = Some(damage(t)),
                    Some(t) => report.skipped.push(damage(t)),
                    None => {}
                }
                out.tail = Tail::Good {
                    number,
                    salt: header.salt,
                    header_len,
                    good_end: end.good_end,
                    cut,
                };
            }
            disk::Loaded::TornHeader if last => out.tail = Tail::TornHeader(number),
            disk::Loaded::TornHeader => report
                .unreadable
                .push((path.clone(), "torn inside its header (empty)".into())),
            disk::Loaded::Unreadable(e @ HeaderError::Version(_)) => {
                return Err(format!("log {}: {e}; refusing to open", path.display()));
            }
            disk::Loaded::Unreadable(e) => {
                report.unreadable.push((path.clone(), e.to_string()));
                summary.known = false;
                let next = number.checked_add(1);
                out.tail = Tail::New(next.ok_or_else(|| {
                    format!("log {}: no segment number after it", path.display())
                })?);
            }
        }
        out.segments.push(Segment { number, summary });
    }
    Ok(out)
}

/// The segment `open` leaves open for writing.
struct Current {
    file: File,
    salt: u32,
    header_len: u64,
    len: u64,
}

/// Makes the last segment writable: cuts its torn tail, or writes its torn
/// header again, or starts a new segment (none yet, or the last one is
/// unreadable), whose header carries the high-water marks loaded.
fn open_current(
    dir: &Path,
    loaded: &mut Loaded,
    sync: bool,
    report: &mut Report,
) -> Result<Current, String> {
    match loaded.tail {
        Tail::Good {
            number,
            salt,
            header_len,
            good_end,
            cut,
        } => {
            let path = disk::segment_path(dir, number);
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(|e| format!("log {}: {e}", path.display()))?;
            if cut {
                file.set_len(good_end)
                    .and_then(|()| if sync { file.sync_data() } else { Ok(()) })
                    .map_err(|e| format!("cannot cut the torn tail of {}: {e}", path.display()))?;
            }
            Ok(Current {
                file,
                salt,
                header_len,
                len: good_end,
            })
        }
        Tail::TornHeader(number) | Tail::New(number) => {
            let header = SegmentHeader {
                salt: disk::new_salt(),
                floor: loaded.high_water.iter().map(|(&o, &s)| (o, s)).collect(),
            };
            let path = disk::segment_path(dir, number);
            let (file, len) = disk::create_segment(dir, number, &header, sync)
                .map_err(|e| format!("cannot create log segment {}: {e}", path.display()))?;
            if matches!(loaded.tail, Tail::TornHeader(_)) {
                report.rewrote_header = Some(path);
                loaded.segments.pop();
            }
            loaded.segments.push(Segment {
                number,
                summary: Summary::known(),
            });
            Ok(Current {
                file,
                salt: header.salt,
                header_len: len,
                len,
            })
        }
    }
}

fn raise(map: &mut BTreeMap<u32, u64>, origin: u32, seq: u64) {
    let e = map.entry(origin).or_insert(seq);
    *e = (*e).max(seq);
}
