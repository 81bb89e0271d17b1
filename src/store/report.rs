//! What `Log::open` found: counts for the startup line, and one warning per
//! damaged place for the node's log. Plain data; `log.rs` fills it in.

use std::fmt;
use std::path::PathBuf;

/// A damaged byte range in a segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Damage {
    pub segment: PathBuf,
    pub offset: u64,
    pub bytes: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub dir: PathBuf,
    /// Segment files read (including unreadable ones).
    pub segments: usize,
    /// Good records loaded.
    pub records: usize,
    /// The torn tail cut off the last segment: the end of a write that never
    /// finished (a crash, or power loss under `--fsync off`).
    pub torn: Option<Damage>,
    /// Corrupt spans skipped, with good records after them; left on disk.
    pub skipped: Vec<Damage>,
    /// Whole segments skipped: the file and why. Left on disk, never
    /// dropped by retention.
    pub unreadable: Vec<(PathBuf, String)>,
    /// The last segment ended inside its header (a crash while it was being
    /// created) and was written again, empty.
    pub rewrote_header: Option<PathBuf>,
}

impl Report {
    /// True when nothing was damaged.
    pub fn is_clean(&self) -> bool {
        self.torn.is_none()
            && self.skipped.is_empty()
            && self.unreadable.is_empty()
            && self.rewrote_header.is_none()
    }

    /// One line per damaged place, for the node's log.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(t) = &self.torn {
            out.push(format!(
                "log: cut a torn tail of {} bytes at offset {} of {} (a write that never finished)",
                t.bytes,
                t.offset,
                t.segment.display()
            ));
        }
        for s in &self.skipped {
            out.push(format!(
                "log: skipped {} corrupt bytes at offset {} of {}",
                s.bytes,
                s.offset,
                s.segment.display()
            ));
        }
        for (path, why) in &self.unreadable {
            out.push(format!("log: skipped segment {}: {why}", path.display()));
        }
        if let Some(p) = &self.rewrote_header {
            out.push(format!(
                "log: {} was torn inside its header; written again, empty",
                p.display()
            ));
        }
        out
    }
}

impl fmt::Display for Report {
    /// The startup line: "loaded N records from S segments in DIR".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "loaded {} records from {} segments in {}",
            self.records,
            self.segments,
            self.dir.display()
        )?;
        let n = self.warnings().len();
        if n > 0 {
            write!(f, " ({n} warnings)")?;
        }
        Ok(())
    }
}
