//! A socket's pending output: a queue of byte chunks, either owned (a
//! response) or shared (an SSE frame, one allocation for every listener). It
//! counts its bytes so the reactor can bound it; an empty queue allocates
//! nothing, which is what most idle listeners hold.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::rc::Rc;

pub enum Chunk {
    Owned(Vec<u8>),
    Shared(Rc<[u8]>),
    /// Part of a shared frame (`start..end`): what an HTTP/2 stream sends
    /// when its window takes only part of a frame.
    Slice(Rc<[u8]>, usize, usize),
}

impl Chunk {
    /// The bytes of the chunk (an out-of-range slice reads as empty).
    pub fn bytes(&self) -> &[u8] {
        match self {
            Chunk::Owned(v) => v,
            Chunk::Shared(r) => r,
            Chunk::Slice(r, start, end) => r.get(*start..*end).unwrap_or(&[]),
        }
    }
}

#[derive(Default)]
pub struct Output {
    /// The front chunk, held inline: a listener that keeps up has at most
    /// one frame pending, so the common case allocates no queue at all.
    head: Option<Chunk>,
    /// Chunks behind the head; its storage is released when it empties.
    rest: VecDeque<Chunk>,
    /// Bytes of the head already written.
    offset: usize,
    len: usize,
}

/// Most slices handed to one `writev` (Linux's IOV_MAX is 1024).
pub const MAX_SLICES: usize = 64;

impl Output {
    pub fn push(&mut self, chunk: Chunk) {
        let n = chunk.bytes().len();
        if n == 0 {
            return;
        }
        self.len += n;
        let tail = match self.rest.back_mut() {
            Some(t) => Some(t),
            None => self.head.as_mut(),
        };
        let Some(tail) = tail else {
            self.head = Some(chunk);
            return;
        };
        // Small owned chunks merge into an owned tail: fewer slices to write.
        if let (Chunk::Owned(new), Chunk::Owned(tail)) = (&chunk, tail) {
            if tail.len() + new.len() <= 16 * 1024 {
                tail.extend_from_slice(new);
                return;
            }
        }
        self.rest.push_back(chunk);
    }

    /// Pending bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Fills `dst` with slices of what is pending, in order; returns how many.
    pub fn slices<'a>(&'a self, dst: &mut [IoSlice<'a>; MAX_SLICES]) -> usize {
        let Some(head) = &self.head else {
            return 0;
        };
        dst[0] = IoSlice::new(&head.bytes()[self.offset..]);
        let mut n = 1;
        for (slot, c) in dst[1..].iter_mut().zip(self.rest.iter()) {
            *slot = IoSlice::new(c.bytes());
            n += 1;
        }
        n
    }

    /// All that is pending, when it is one chunk.
    pub fn single(&self) -> Option<&[u8]> {
        match (&self.head, self.rest.is_empty()) {
            (Some(head), true) => Some(&head.bytes()[self.offset..]),
            _ => None,
        }
    }

    /// The front of what is pending, for transports that copy (TLS).
    pub fn front(&self) -> &[u8] {
        self.head
            .as_ref()
            .map(|c| &c.bytes()[self.offset..])
            .unwrap_or(&[])
    }

    /// Drops `n` written bytes from the front.
    pub fn consume(&mut self, mut n: usize) {
        self.len -= n.min(self.len);
        while n > 0 {
            let Some(head) = &self.head else {
                break;
            };
            let left = head.bytes().len() - self.offset;
            if n >= left {
                n -= left;
                self.offset = 0;
                self.head = self.rest.pop_front();
            } else {
                self.offset += n;
                n = 0;
            }
        }
        if self.rest.is_empty() && self.rest.capacity() > 0 {
            // Release the ring's storage: an idle listener should hold none.
            self.rest = VecDeque::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat(o: &Output) -> Vec<u8> {
        let mut s = [IoSlice::new(&[]); MAX_SLICES];
        let n = o.slices(&mut s);
        s[..n].iter().flat_map(|s| s.iter().copied()).collect()
    }

    #[test]
    fn partial_writes_keep_order() {
        let mut o = Output::default();
        let shared: Rc<[u8]> = Rc::from(&b"shared"[..]);
        o.push(Chunk::Owned(b"ab".to_vec()));
        o.push(Chunk::Shared(shared.clone()));
        o.push(Chunk::Owned(b"cd".to_vec()));
        o.push(Chunk::Owned(b"ef".to_vec()));
        assert_eq!(o.len(), 12);
        assert_eq!(flat(&o), b"absharedcdef");
        o.consume(3);
        assert_eq!(flat(&o), b"haredcdef");
        assert_eq!(o.front(), b"hared");
        o.consume(9);
        assert!(o.is_empty());
        assert_eq!(flat(&o), b"");
    }
}
