//! The service's side of the durable history (`--data`, `--fsync`): the
//! node's log (`crate::store::log`) opened and loaded at start, every
//! message the rooms accept (ours and peers') appended to it, and the
//! commit that makes a turn's publishes durable before their 303s leave.
//!
//! The promise: a publish is acknowledged only once its record is written
//! (and, unless `--fsync off`, synced). With `always` the publish commits on
//! the spot; with `batch` and `off` the connection holds its answer
//! (`Pipe::hold`) and the reactor commits once at the end of the turn, then
//! lets every held answer go. When a commit fails (a full disk, a read-only
//! directory, an I/O error) the records stay buffered in the log, the held
//! answers keep waiting, new publishes are refused with 503, and the
//! commit is tried again every `RETRY`; the first success lets everything
//! go and publishing resumes. Listeners keep receiving throughout.

use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::room::{Entry, Rooms};
use crate::store::log::{Fsync, Log, Options};
use crate::store::record::RecordRef;
use crate::{error, info, warn};

/// How often a failing commit is tried again.
pub const RETRY: Duration = Duration::from_secs(1);
/// How often old segments are looked at for dropping.
const TIDY_EVERY: Duration = Duration::from_secs(10);

pub struct Durable {
    log: Log,
    fsync: Fsync,
    /// Why the last commit failed: publishes are refused while it is set.
    failing: Option<String>,
    /// No commit is tried before then (after a failure).
    retry_at: Option<Instant>,
    tidy_at: Instant,
    /// Messages per room the node keeps (`--history`): older segments go.
    history: usize,
    /// This node's origin tag: its own messages are the acknowledged ones.
    tag: crate::room::Tag,
    /// Our messages that did not fit in the log's buffer (commits failing):
    /// appended first at the next commit. At most one turn's publishes,
    /// since publishes are refused while commits fail.
    overflow: Vec<Rc<Entry>>,
    /// Records loaded at start.
    pub loaded: usize,
    pub commits: u64,
    pub failures: u64,
    /// Messages that could not be buffered at all (the buffer is full
    /// because commits keep failing): held in memory only.
    pub unbuffered: u64,
}

impl Durable {
    /// Opens the log in `dir` and loads it into `rooms`; says what it found
    /// (and each damaged place) in the node's log. `Err` is one line:
    /// another process holds the directory, or it cannot be used.
    pub fn open(
        dir: &Path,
        fsync: Fsync,
        history: usize,
        rooms: &mut Rooms,
        now: Instant,
    ) -> Result<Durable, String> {
        let opts = Options {
            fsync,
            ..Options::default()
        };
        let started = Instant::now();
        let (log, records, report) = Log::open(dir, opts)?;
        for line in report.warnings() {
            warn!("{line}");
        }
        let messages = records
            .iter()
            .map(|r| (r.room.as_str(), r.origin, r.seq, r.text.as_str()));
        rooms.restore(messages, &log.high_water(), super::now_micros());
        rooms.start_storing();
        let loaded = records.len();
        drop(records);
        give_back_memory();
        info!(
            "{report}; read in {} ms; {} messages kept in memory (--history); --fsync {}",
            started.elapsed().as_millis(),
            rooms.len(),
            fsync.name()
        );
        Ok(Durable {
            log,
            fsync,
            failing: None,
            retry_at: None,
            tidy_at: now + TIDY_EVERY,
            history,
            tag: rooms.tag,
            overflow: Vec::new(),
            loaded,
            commits: 0,
            failures: 0,
            unbuffered: 0,
        })
    }

    /// Why publishing is refused now, if it is.
    pub fn failing(&self) -> Option<&str> {
        self.failing.as_deref()
    }

    /// True when a publish's answer may leave as soon as `commit` returned
    /// true at once (`always`); otherwise it is held for the turn's commit.
    pub fn commits_each(&self) -> bool {
        self.fsync == Fsync::Always
    }

    pub fn fsync(&self) -> Fsync {
        self.fsync
    }

    pub fn dir(&self) -> &Path {
        self.log.dir()
    }

    /// When the next try of a failed commit is due.
    pub fn retry_at(&self) -> Option<Instant> {
        self.retry_at
    }

    /// Appends `entries` and commits what the log holds. True when nothing
    /// waits any more (every held answer may go).
    pub fn commit(&mut self, entries: &[Rc<Entry>], now: Instant) -> bool {
        // Ours that did not fit before go first: their publishers wait.
        let mut todo = std::mem::take(&mut self.overflow);
        todo.extend(entries.iter().cloned());
        for e in &todo {
            let rec = RecordRef {
                room: &e.room,
                origin: e.origin,
                seq: e.seq,
                text: &e.text,
            };
            let mut appended = self.log.append_ref(rec);
            if appended.is_err() && self.failing.is_none() {
                // The buffer is full (a turn that took a large replay): write
                // what it holds now, then this record again.
                if self.log.commit().is_ok() {
                    self.commits += 1;
                    appended = self.log.append_ref(rec);
                }
            }
            if let Err(err) = appended {
                // Not storable at all (cannot happen for a message the node
                // accepted) is counted, never retried: only a full buffer is.
                let full = err.kind() != std::io::ErrorKind::InvalidInput;
                if e.origin == self.tag && full {
                    // Acknowledged only once written: kept for the next try.
                    self.overflow.push(e.clone());
                    continue;
                }
                if self.unbuffered == 0 {
                    warn!("log: a message from another node kept in memory only: {err}");
                }
                self.unbuffered += 1;
            }
        }
        // Some of ours not in the log yet: their publishers' answers wait
        // (the next turn appends them first; publishes are refused while
        // commits fail, so there are at most one turn's).
        let complete = self.overflow.is_empty();
        if self.log.pending() == 0 {
            return complete;
        }
        if self.retry_at.is_some_and(|at| now < at) {
            return false;
        }
        match self.log.commit() {
            Ok(()) => {
                self.commits += 1;
                self.retry_at = None;
                if self.failing.take().is_some() {
                    info!(
                        "log: writing to {} again; publishing resumes",
                        self.log.dir().display()
                    );
                }
                if now >= self.tidy_at {
                    self.tidy_at = now + TIDY_EVERY;
                    if let Err(e) = self.log.drop_segments(self.history) {
                        warn!("log: cannot drop an old segment: {e}");
                    }
                }
                complete
            }
            Err(e) => {
                self.failures += 1;
                self.retry_at = Some(now + RETRY);
                if self.failing.is_none() {
                    error!(
                        "log: cannot write to {}: {e}; publishes are refused (503) until it can, listeners keep receiving",
                        self.log.dir().display()
                    );
                }
                self.failing = Some(e.to_string());
                false
            }
        }
    }
}

/// Hands the memory of the loaded records (all of the log, most of which
/// the rooms did not keep) back to the system: glibc keeps freed memory
/// otherwise, and a node that loaded 100,000 records would sit at several
/// times the memory it needs.
fn give_back_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free heap memory; no pointer is touched.
    unsafe {
        libc::malloc_trim(0);
    }
}
