//! How often one client may publish: a token bucket per client address
//! (`--publish-rate` per second, `--publish-burst` at once), so one client
//! cannot push a room's whole history out in a blink and make every
//! reconnecting browser miss messages. Bounded: a client whose bucket has
//! refilled is the same as one never seen, so when the table is full those
//! are forgotten first; if none has refilled, the table is cleared (a
//! flood from that many addresses at once is let through, not buffered).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Most clients remembered at once.
pub const MAX_CLIENTS: usize = 65_536;

pub struct Limiter {
    /// Tokens per second; 0 turns the limit off.
    rate: f64,
    burst: f64,
    buckets: HashMap<IpAddr, (f64, Instant)>,
}

/// Who a limit counts: the address, or for IPv6 its /64 (one host usually
/// has a whole one, so counting single addresses would not limit it).
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(a) => IpAddr::V6((u128::from(a) & !((1u128 << 64) - 1)).into()),
        v4 => v4,
    }
}

impl Limiter {
    pub fn new(rate: u32, burst: u32) -> Limiter {
        Limiter {
            rate: f64::from(rate),
            burst: f64::from(burst.max(1)),
            buckets: HashMap::new(),
        }
    }

    /// Takes a token for `client`: Ok, or how long until one is there.
    /// An IPv6 client counts as its /64: one host usually has a whole one.
    pub fn take(&mut self, client: IpAddr, now: Instant) -> Result<(), Duration> {
        if self.rate <= 0.0 {
            return Ok(());
        }
        let client = client_key(client);
        if self.buckets.len() >= MAX_CLIENTS && !self.buckets.contains_key(&client) {
            self.forget_refilled(now);
        }
        let (rate, burst) = (self.rate, self.burst);
        let (tokens, at) = self.buckets.entry(client).or_insert((burst, now));
        let elapsed = now.saturating_duration_since(*at).as_secs_f64();
        *tokens = (*tokens + elapsed * rate).min(burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - *tokens) / rate))
        }
    }

    fn forget_refilled(&mut self, now: Instant) {
        let (rate, burst) = (self.rate, self.burst);
        self.buckets.retain(|_, (tokens, at)| {
            *tokens + now.saturating_duration_since(*at).as_secs_f64() * rate < burst
        });
        if self.buckets.len() >= MAX_CLIENTS {
            self.buckets.clear();
        }
    }

    pub fn clients(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate() {
        let mut l = Limiter::new(5, 3);
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(l.take(a, t0).is_ok());
        }
        let wait = l.take(a, t0).unwrap_err();
        assert!(
            wait > Duration::from_millis(150) && wait <= Duration::from_millis(200),
            "{wait:?}"
        );
        assert!(l.take(b, t0).is_ok(), "another client is not limited");
        assert!(l.take(a, t0 + Duration::from_millis(200)).is_ok());
        assert!(l.take(a, t0 + Duration::from_millis(200)).is_err());
        assert!(Limiter::new(0, 1).take(a, t0).is_ok(), "0 is off");
    }

    #[test]
    fn an_ipv6_client_is_its_slash_64() {
        let mut l = Limiter::new(1, 1);
        let t0 = Instant::now();
        let one: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let same: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert!(l.take(one, t0).is_ok());
        assert!(l.take(same, t0).is_err(), "the same /64");
        assert!(l.take(other, t0).is_ok(), "another /64");
    }

    #[test]
    fn the_table_is_bounded() {
        let mut l = Limiter::new(1, 2);
        let t0 = Instant::now();
        for i in 0..(MAX_CLIENTS as u32 + 10) {
            let _ = l.take(IpAddr::from(i.to_be_bytes()), t0);
        }
        assert!(l.clients() <= MAX_CLIENTS);
        // Later, every bucket has refilled: they are forgotten for new ones.
        let later = t0 + Duration::from_secs(5);
        let _ = l.take(IpAddr::from([255, 0, 0, 1]), later);
        assert!(l.clients() < 100, "{}", l.clients());
    }
}
