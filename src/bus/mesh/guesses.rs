//! Online cookie guesses, limited per source address (an IPv6 source
//! counts as its /64). A caller that sends wrong proofs gets `FREE` of
//! them; after that each further wrong proof makes the node refuse link
//! attempts from that address for twice as long as the last (1 s, 2 s, …
//! up to `MAX_WAIT`), with one log line per new wait. A right proof clears
//! the address. Bounded: at most `MAX_ADDRS` addresses are remembered.
//! No sockets: the link reports outcomes, the reactor asks before it lets
//! a connection on the cluster port in.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::service::limit::client_key;

/// Wrong proofs an address may send before waits begin.
pub const FREE: u32 = 5;
/// The longest wait imposed after wrong proofs.
pub const MAX_WAIT: Duration = Duration::from_secs(64);
const MAX_ADDRS: usize = 4096;

struct Strikes {
    failures: u32,
    until: Instant,
}

#[derive(Default)]
pub struct Guesses {
    by_addr: HashMap<IpAddr, Strikes>,
}

impl Guesses {
    /// How much longer link attempts from `ip` are refused, if they are.
    pub fn blocked(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let s = self.by_addr.get(&client_key(ip))?;
        (s.until > now).then(|| s.until - now)
    }

    /// A wrong proof from `ip`. Returns the wait it now has, when this
    /// failure started one (for the log).
    pub fn failed(&mut self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let key = client_key(ip);
        if self.by_addr.len() >= MAX_ADDRS && !self.by_addr.contains_key(&key) {
            self.by_addr.retain(|_, s| s.until > now);
            if self.by_addr.len() >= MAX_ADDRS {
                // Flooded from everywhere at once: forget the oldest half.
                let mut untils: Vec<Instant> = self.by_addr.values().map(|s| s.until).collect();
                untils.sort();
                let cut = untils[untils.len() / 2];
                self.by_addr.retain(|_, s| s.until > cut);
            }
        }
        let s = self.by_addr.entry(key).or_insert(Strikes {
            failures: 0,
            until: now,
        });
        s.failures = s.failures.saturating_add(1);
        if s.failures <= FREE {
            return None;
        }
        let shift = (s.failures - FREE - 1).min(6);
        let wait = Duration::from_secs(1 << shift).min(MAX_WAIT);
        s.until = now + wait;
        Some(wait)
    }

    /// A right proof from `ip`: its strikes are forgotten.
    pub fn passed(&mut self, ip: IpAddr) {
        self.by_addr.remove(&client_key(ip));
    }

    pub fn len(&self) -> usize {
        self.by_addr.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_addr.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_after_the_free_guesses_and_a_right_proof_clears() {
        let mut g = Guesses::default();
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let t = Instant::now();
        for _ in 0..FREE {
            assert_eq!(g.failed(ip, t), None);
            assert_eq!(g.blocked(ip, t), None);
        }
        assert_eq!(g.failed(ip, t), Some(Duration::from_secs(1)));
        assert_eq!(g.blocked(ip, t), Some(Duration::from_secs(1)));
        assert_eq!(g.blocked(ip, t + Duration::from_secs(1)), None);
        assert_eq!(g.failed(ip, t), Some(Duration::from_secs(2)));
        for _ in 0..20 {
            g.failed(ip, t);
        }
        assert_eq!(g.blocked(ip, t), Some(MAX_WAIT));
        let other: IpAddr = "192.0.2.8".parse().unwrap();
        assert_eq!(g.blocked(other, t), None, "per address");
        g.passed(ip);
        assert_eq!(g.blocked(ip, t), None);
    }

    #[test]
    fn an_ipv6_source_counts_as_its_64_and_memory_is_bounded() {
        let mut g = Guesses::default();
        let t = Instant::now();
        for i in 0..=FREE {
            let ip: IpAddr = format!("2001:db8::{i:x}").parse().unwrap();
            g.failed(ip, t);
        }
        let again: IpAddr = "2001:db8::ffff".parse().unwrap();
        assert!(g.blocked(again, t).is_some(), "the same /64");
        for i in 0..(MAX_ADDRS as u32 * 2) {
            g.failed(IpAddr::from(i.to_be_bytes()), t);
        }
        assert!(g.len() <= MAX_ADDRS);
    }
}
