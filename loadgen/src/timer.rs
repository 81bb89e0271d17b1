//! A Linux timerfd as a mio source, so that the publishers' loop wakes at a
//! message's due time to the microsecond: `Poll::poll` hands its timeout to
//! `epoll_wait` in whole milliseconds, rounded up, which alone would make
//! every publish leave up to 1 ms late.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

pub struct Timer {
    fd: OwnedFd,
}

impl Timer {
    /// A monotonic-clock timer, readable once it fires.
    pub fn new(registry: &Registry, token: Token) -> io::Result<Timer> {
        // SAFETY: timerfd_create has no memory preconditions; the descriptor
        // it returns is owned by the `OwnedFd` at once.
        let fd = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        registry.register(&mut SourceFd(&fd.as_raw_fd()), token, Interest::READABLE)?;
        Ok(Timer { fd })
    }

    /// Fires once, `after` from now (at least 1 µs: zero would disarm it).
    /// Setting it again replaces the previous deadline.
    pub fn arm(&self, after: Duration) -> io::Result<()> {
        let after = after.max(Duration::from_micros(1));
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: after.as_secs().min(i32::MAX as u64) as libc::time_t,
                tv_nsec: after.subsec_nanos() as libc::c_long,
            },
        };
        self.clear();
        // SAFETY: settime on our own descriptor with a struct we own.
        let rc =
            unsafe { libc::timerfd_settime(self.fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Consumes an expiry, so that the next one is a new edge for epoll.
    pub fn clear(&self) {
        let mut ticks = [0u8; 8];
        // SAFETY: a read of 8 bytes into our own buffer; on a non-blocking
        // timerfd it fails with EAGAIN when the timer has not fired.
        unsafe { libc::read(self.fd.as_raw_fd(), ticks.as_mut_ptr().cast(), ticks.len()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::{Events, Poll};
    use std::time::Instant;

    #[test]
    fn wakes_the_poll_at_its_deadline() {
        let mut poll = Poll::new().unwrap();
        let timer = Timer::new(poll.registry(), Token(7)).unwrap();
        let mut events = Events::with_capacity(4);
        for _ in 0..3 {
            let t0 = Instant::now();
            timer.arm(Duration::from_micros(300)).unwrap();
            poll.poll(&mut events, Some(Duration::from_secs(2)))
                .unwrap();
            let took = t0.elapsed();
            assert!(events.iter().any(|e| e.token() == Token(7)));
            assert!(took >= Duration::from_micros(300), "{took:?}");
            assert!(took < Duration::from_millis(50), "{took:?}");
            timer.clear();
        }
    }
}
