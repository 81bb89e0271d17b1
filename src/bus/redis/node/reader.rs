//! The Redis bus's reading side (`RedisBus`'s reader connection): where
//! reading starts after a connect (the epoch, the last entry read, the
//! trim), each XREAD's entries into the rooms, the first read to the end of
//! the stream (then our own messages the stream lacks), and what a gap
//! means for the listeners. `node.rs` has the rest of the bus.

use std::rc::Rc;

use super::super::resp::Value;
use super::super::stream::{self, StreamEntry, StreamId};
use super::{cmd, Expect, RedisBus, BLOCK, MAX_OUTBOX, STREAM};
use crate::conn::Env;
use crate::room::Entry;
use crate::{debug, info, warn};

impl RedisBus {
    /// A reply on the reader's connection about where and what it reads.
    pub(super) fn read_reply(
        &mut self,
        expect: Expect,
        value: Value,
        env: &mut Env,
    ) -> Result<(), String> {
        match expect {
            Expect::EpochGet => {
                let Value::Bulk(Some(epoch)) = value else {
                    return Err("the epoch key vanished".into());
                };
                if self.epoch.as_ref().is_some_and(|e| *e != epoch) {
                    self.lost("its epoch changed: it restarted empty or was flushed");
                    // Everyone lost our messages too: add them again.
                    self.resync = true;
                    self.last_id = StreamId::ZERO;
                }
                self.epoch = Some(epoch);
                if self.last_id == StreamId::ZERO {
                    self.queue_xread();
                } else {
                    let id = self.last_id.to_string();
                    self.reader.queue.push((
                        Expect::Still,
                        cmd(&[b"XRANGE", STREAM, id.as_bytes(), id.as_bytes()]),
                    ));
                    self.queue_xread();
                }
            }
            Expect::Still => {
                let entries = stream::xrange(value).map_err(|e| e.to_string())?;
                if entries.is_empty() {
                    self.lost("the last entry this node read is gone from the stream");
                }
            }
            Expect::Trimmed if trimmed_past(&value, self.last_id) => {
                self.lost("entries this node had not read were trimmed from the stream (it fell more than MAXLEN behind)");
            }
            Expect::Xread => {
                let streams = stream::xread(value).map_err(|e| e.to_string())?;
                let mut n = 0;
                for s in streams {
                    for entry in s.entries {
                        n += 1;
                        self.take(entry, env);
                    }
                }
                if n < self.read_count && !self.caught_up {
                    self.caught_up = true;
                    self.catch_up_own(env);
                }
                self.queue_xread();
            }
            _ => {}
        }
        Ok(())
    }

    /// Entries we may not have read are gone: tell the listeners (the
    /// caller decides where reading resumes, and whether our own messages
    /// must be added again).
    fn lost(&mut self, why: &str) {
        warn!("redis: {why}; listeners are told some messages were missed");
        self.stats.data_lost += 1;
        self.missed = true;
    }

    /// At start, once the stream was read to its end: our messages that
    /// are newer than the newest of ours in it never reached Redis (the
    /// node stopped with them in its outbox; they are in its log): add them
    /// now, oldest first, ahead of what was published since.
    fn catch_up_own(&mut self, env: &mut Env) {
        let tag = self.tag;
        let seen = self.own_seen;
        let queued: Vec<u64> = self.outbox.iter().map(|e| e.seq).collect();
        let missing: Vec<Rc<Entry>> = env
            .service
            .rooms
            .history()
            .filter(|e| e.origin == tag && e.seq > seen && !queued.contains(&e.seq))
            .take(MAX_OUTBOX)
            .cloned()
            .collect();
        if missing.is_empty() {
            return;
        }
        info!(
            "redis: {} messages of this node never reached Redis; adding them now",
            missing.len()
        );
        // Unsent ones go first (none of the outbox is on the wire yet, or
        // the writer is up and `sent` counts from the front: put them after).
        let at = self.sent;
        for (i, e) in missing.into_iter().enumerate() {
            self.outbox.insert(at + i, e);
        }
    }

    /// The next read: at once until the stream's end was reached once (so
    /// a node starts serving without waiting out a BLOCK), then waiting.
    fn queue_xread(&mut self) {
        let id = self.last_id.to_string();
        let count = self.read_count.to_string();
        let block = BLOCK.as_millis().to_string();
        let mut args: Vec<&[u8]> = vec![b"XREAD", b"COUNT", count.as_bytes()];
        if self.caught_up {
            args.extend_from_slice(&[b"BLOCK", block.as_bytes()]);
        }
        args.extend_from_slice(&[b"STREAMS", STREAM, id.as_bytes()]);
        if self.last_id != StreamId::ZERO {
            self.reader
                .queue
                .push((Expect::Trimmed, cmd(&[b"XINFO", b"STREAM", STREAM])));
        }
        self.reader.queue.push((Expect::Xread, cmd(&args)));
    }

    /// One entry from the stream into the rooms (dropped there if not newer
    /// than what we have from its origin). An entry we cannot read (not
    /// written by a node) is skipped with a line at debug.
    fn take(&mut self, entry: StreamEntry, env: &mut Env) {
        self.last_id = self.last_id.max(entry.id);
        self.stats.read += 1;
        let fields = (
            entry.field(b"o").and_then(|o| std::str::from_utf8(o).ok()),
            entry.field(b"s").and_then(|s| std::str::from_utf8(s).ok()),
            entry.field(b"r").and_then(|r| std::str::from_utf8(r).ok()),
            entry.field(b"t").and_then(|t| std::str::from_utf8(t).ok()),
        );
        let (Some(o), Some(s), Some(room), Some(text)) = fields else {
            debug!("redis: skipped entry {}: not a message", entry.id);
            return;
        };
        let (Ok(origin), Ok(seq)) = (u32::from_str_radix(o, 16), s.parse::<u64>()) else {
            debug!("redis: skipped entry {}: bad origin or sequence", entry.id);
            return;
        };
        if origin == self.tag {
            self.own_seen = self.own_seen.max(seq);
        }
        let micros = crate::service::now_micros();
        let service = &mut *env.service;
        if service
            .rooms
            .accept(origin, seq, room, text.into(), micros)
            .is_some()
            && origin != self.tag
        {
            service.stats.published_remote += 1;
        }
    }
}

/// From XINFO STREAM's reply (a flat list of names and values): the
/// stream's oldest entry is newer than `last`, the last one this node read,
/// so the next read would skip whatever was trimmed after it. (Redis 7's
/// `max-deleted-entry-id` counts only XDEL, not trimming.) If trimming cut
/// exactly up to our last entry nothing was lost, but that cannot be told
/// apart: the listeners are warned either way.
fn trimmed_past(info: &Value, last: StreamId) -> bool {
    let Value::Array(Some(items)) = info else {
        return false;
    };
    let mut items = items.iter();
    while let (Some(name), Some(value)) = (items.next(), items.next()) {
        let Value::Bulk(Some(name)) = name else {
            continue;
        };
        let first = match (name.as_slice(), value) {
            (b"first-entry", Value::Array(Some(entry))) => match entry.first() {
                Some(Value::Bulk(Some(id))) => StreamId::parse(id).ok(),
                _ => None,
            },
            _ => continue,
        };
        return first.is_some_and(|id| id > last);
    }
    false
}
