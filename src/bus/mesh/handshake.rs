//! The link handshake: a password-authenticated key exchange on the cookie
//! (in the manner of CPace, over X25519 with a generator mapped from the
//! cookie by Elligator 2: `x25519.rs`), bound to the link's TLS session, then
//! each side confirms the key it got.
//!
//! ```text
//! dialer   → Hello { name_d, nonce_d }
//! acceptor → Challenge { name_a, nonce_a, Yb }           Yb = yb·G
//! dialer   → Proof { Ya, mac_K("dialer") }               Ya = ya·G, K = ya·Yb
//! acceptor → Proof { Yb, mac_K("acceptor") }, State …    K = yb·Ya (or Refuse)
//! dialer   → State …                                     (or Refuse)
//! ```
//!
//! G comes from the cookie, both names, both nonces and the TLS exporter
//! value, so it is fresh per link and per TLS session. The shares are random
//! points that say nothing of the cookie, and K agrees only when both sides
//! used the same G: whoever talks to a node — a stranger who calls, a node
//! that is dialled, a man in the middle — can test one cookie guess per link
//! attempt (the one it built its share with), and nothing it records lets it
//! test another guess offline (that would take a discrete logarithm). The
//! acceptor slows wrong guesses down per address (`guesses.rs`). The cookie
//! never crosses the wire; the proofs cannot be replayed (fresh nonces and
//! shares) or reflected (the role is in the MAC), nor passed through a relay
//! that ends TLS on both sides (its sessions have other exporters).

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

use ring::digest::{digest, SHA512};

use super::wire::{MAC_LEN, NONCE_LEN, SHARE_LEN};
use super::x25519;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Dialer,
    Acceptor,
}

/// The TLS exporter label links use (RFC 8446 §7.5).
pub const EXPORTER_LABEL: &[u8] = b"EXPORTER-watercooler-link-proof";

pub struct Transcript<'a> {
    /// The link's TLS exporter value; empty on a clear link (`link_tls = off`).
    pub exporter: &'a [u8],
    pub dialer: &'a str,
    pub acceptor: &'a str,
    pub dialer_nonce: &'a [u8; NONCE_LEN],
    pub acceptor_nonce: &'a [u8; NONCE_LEN],
}

pub fn nonce() -> [u8; NONCE_LEN] {
    let mut n = [0; NONCE_LEN];
    // The system RNG failing is not something a link can recover from;
    // a zero nonce would still only weaken replay protection, not the cookie.
    let _ = SystemRandom::new().fill(&mut n);
    n
}

fn transcript(role: Role, t: &Transcript) -> Vec<u8> {
    let mut m = Vec::with_capacity(128);
    m.extend_from_slice(match role {
        Role::Dialer => b"watercooler-3 dialer\0",
        Role::Acceptor => b"watercooler-3 acceptor",
    });
    m.extend_from_slice(&(t.exporter.len() as u32).to_be_bytes());
    m.extend_from_slice(t.exporter);
    for name in [t.dialer, t.acceptor] {
        m.extend_from_slice(&(name.len() as u32).to_be_bytes());
        m.extend_from_slice(name.as_bytes());
    }
    m.extend_from_slice(t.dialer_nonce);
    m.extend_from_slice(t.acceptor_nonce);
    m
}

/// The exchange's generator for this link: the cookie and the transcript
/// hashed, mapped to a point.
pub fn generator(cookie: &str, t: &Transcript) -> [u8; SHARE_LEN] {
    let mut m = transcript(Role::Dialer, t);
    m.extend_from_slice(b"\0generator\0");
    m.extend_from_slice(&(cookie.len() as u32).to_be_bytes());
    m.extend_from_slice(cookie.as_bytes());
    let h = digest(&SHA512, &m);
    let mut r = [0u8; SHARE_LEN];
    r.copy_from_slice(&h.as_ref()[..SHARE_LEN]);
    r[SHARE_LEN - 1] &= 0x7f;
    x25519::elligator2(&r)
}

/// One side's secret scalar for one link attempt.
pub fn secret() -> [u8; 32] {
    let mut s = [0; 32];
    // As for nonces: the system RNG does not fail on Linux.
    let _ = SystemRandom::new().fill(&mut s);
    s
}

/// The share sent: `secret`·G.
pub fn share(secret: &[u8; 32], generator: &[u8; SHARE_LEN]) -> [u8; SHARE_LEN] {
    x25519::x25519(secret, generator)
}

/// The key both sides confirm: a hash of `secret`·`theirs` and both shares;
/// `None` when `theirs` is a point of small order (the result is zero).
pub fn session_key(
    secret: &[u8; 32],
    theirs: &[u8; SHARE_LEN],
    dialer_share: &[u8; SHARE_LEN],
    acceptor_share: &[u8; SHARE_LEN],
) -> Option<[u8; 32]> {
    let k = x25519::x25519(secret, theirs);
    if k == [0; 32] {
        return None;
    }
    let mut m = Vec::with_capacity(32 * 3 + 24);
    m.extend_from_slice(b"watercooler-3 link key\0");
    m.extend_from_slice(&k);
    m.extend_from_slice(dialer_share);
    m.extend_from_slice(acceptor_share);
    let h = digest(&SHA512, &m);
    let mut key = [0u8; 32];
    key.copy_from_slice(&h.as_ref()[..32]);
    Some(key)
}

/// A side's confirmation: an HMAC under the session key.
pub fn mac(key: &[u8; 32], role: Role, t: &Transcript) -> [u8; MAC_LEN] {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    let tag = hmac::sign(&key, &transcript(role, t));
    let mut out = [0; MAC_LEN];
    out.copy_from_slice(tag.as_ref());
    out
}

/// Checks a peer's confirmation (in constant time, by ring).
pub fn verify(key: &[u8; 32], role: Role, t: &Transcript, got: &[u8; MAC_LEN]) -> bool {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    hmac::verify(&key, &transcript(role, t), got).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transcript_of<'a>(nd: &'a [u8; 32], na: &'a [u8; 32], exporter: &'a [u8]) -> Transcript<'a> {
        Transcript {
            exporter,
            dialer: "a",
            acceptor: "b",
            dialer_nonce: nd,
            acceptor_nonce: na,
        }
    }

    /// Both sides run the exchange on `cookie_d` and `cookie_a`: the keys
    /// each ends with.
    fn exchange(cookie_d: &str, cookie_a: &str, t: &Transcript) -> ([u8; 32], [u8; 32]) {
        let (yd, ya) = (secret(), secret());
        let sd = share(&yd, &generator(cookie_d, t));
        let sa = share(&ya, &generator(cookie_a, t));
        (
            session_key(&yd, &sa, &sd, &sa).unwrap(),
            session_key(&ya, &sd, &sd, &sa).unwrap(),
        )
    }

    #[test]
    fn the_same_cookie_agrees_another_does_not() {
        let (nd, na) = (nonce(), nonce());
        let t = transcript_of(&nd, &na, b"session one");
        let (kd, ka) = exchange("secret", "secret", &t);
        assert_eq!(kd, ka);
        let m = mac(&kd, Role::Dialer, &t);
        assert!(verify(&ka, Role::Dialer, &t, &m));
        assert!(!verify(&ka, Role::Acceptor, &t, &m), "reflected");
        let relayed = transcript_of(&nd, &na, b"session two");
        assert!(
            !verify(&ka, Role::Dialer, &relayed, &m),
            "another TLS session"
        );
        let (kd, ka) = exchange("secret", "other", &t);
        assert_ne!(kd, ka);
        assert_ne!(generator("secret", &t), generator("secret", &relayed));
    }

    #[test]
    fn a_small_order_share_is_refused() {
        let zero = [0u8; 32];
        let mut one = [0u8; 32];
        one[0] = 1;
        for bad in [zero, one] {
            assert_eq!(session_key(&secret(), &bad, &bad, &bad), None);
        }
    }
}
