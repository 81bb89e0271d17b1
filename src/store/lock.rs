//! The log directory's lock: a `LOCK` file held with `flock` (std's
//! `File::try_lock`) for as long as the `Log` lives. It keeps a second
//! process (or a second `Log` in this one) from writing the same segments.
//! The kernel drops the lock when the process dies, `kill -9` included, so
//! a stale lock never needs cleaning up.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

pub const LOCK_FILE: &str = "LOCK";

/// Holds the lock until dropped.
#[derive(Debug)]
pub struct DirLock {
    file: File,
}

impl Drop for DirLock {
    /// Unlocks explicitly rather than by closing: a `flock` belongs to the
    /// open file description, which a child process forked by another
    /// thread shares until it execs, so closing our descriptor alone can
    /// leave the directory locked for a moment (seen in the tests, whose
    /// threads run `mount`). The unlock takes effect at once.
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}

impl DirLock {
    /// Takes the lock on `dir` without waiting. The error is one readable
    /// line naming the directory and, when the holder wrote it, its pid.
    pub fn acquire(dir: &Path) -> Result<DirLock, String> {
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| format!("cannot open lock file {}: {e}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                // Best effort: the pid is only there to help the operator.
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                let who = if holder.is_empty() {
                    String::from("another process")
                } else {
                    format!("process {holder}")
                };
                return Err(format!(
                    "log directory {} is in use by another watercooler (give each node its own --data): {who} holds {}",
                    dir.display(),
                    path.display()
                ));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(format!("cannot lock {}: {e}", path.display()));
            }
        }
        // Ours now: record who holds it (not needed for correctness).
        let _ = file
            .set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| writeln!(file, "{}", std::process::id()));
        Ok(DirLock { file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_is_refused_until_the_first_is_dropped() {
        let dir = std::env::temp_dir().join(format!("wc-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let first = DirLock::acquire(&dir).expect("first lock");
        let err = DirLock::acquire(&dir).expect_err("second lock");
        assert!(err.contains(&dir.display().to_string()), "{err}");
        assert!(err.contains(LOCK_FILE), "{err}");
        assert!(
            err.contains(&format!("process {}", std::process::id())),
            "{err}"
        );
        drop(first);
        DirLock::acquire(&dir).expect("lock after release");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
