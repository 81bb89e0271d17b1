//! The link handshake's proofs: each side shows it knows the cookie by an
//! HMAC-SHA256 over both nonces, both names, its role and the link's TLS
//! exporter value, so the cookie never crosses the wire, a proof can't be
//! replayed on another link (fresh nonces), a side's own proof can't be
//! reflected back to it (the role differs), and a relay that ends TLS on
//! both sides can't pass a proof through (each side's exporter differs).
//!
//! ```text
//! dialer   → Hello { name_d, nonce_d }
//! acceptor → Challenge { name_a, nonce_a }
//! dialer   → Proof { mac("dialer") }
//! acceptor → Proof { mac("acceptor") }, State …   (or Refuse: wrong cookie)
//! dialer   → State …                              (or Refuse: wrong cookie)
//! ```
//!
//! The dialer proves first, so a stranger who calls learns nothing it could
//! test cookie guesses against: it must guess online, one link attempt per
//! guess, and the acceptor slows those down per address (`Mesh::guesses`).
//! What stays open without a password-authenticated key exchange: whoever a
//! node dials (an address in its cluster file or learnt from a peer, or a
//! man in the middle on that path, since link certificates are not checked)
//! receives the dialer's proof, and could test guesses against it offline.
//! Hence strong cookies beyond loopback (`--gen-cookie`: 256 random bits).

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

use super::wire::{MAC_LEN, NONCE_LEN};

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
        Role::Dialer => b"watercooler-2 dialer\0",
        Role::Acceptor => b"watercooler-2 acceptor",
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

pub fn mac(cookie: &str, role: Role, t: &Transcript) -> [u8; MAC_LEN] {
    let key = hmac::Key::new(hmac::HMAC_SHA256, cookie.as_bytes());
    let tag = hmac::sign(&key, &transcript(role, t));
    let mut out = [0; MAC_LEN];
    out.copy_from_slice(tag.as_ref());
    out
}

/// Checks a peer's proof (in constant time, by ring).
pub fn verify(cookie: &str, role: Role, t: &Transcript, got: &[u8; MAC_LEN]) -> bool {
    let key = hmac::Key::new(hmac::HMAC_SHA256, cookie.as_bytes());
    hmac::verify(&key, &transcript(role, t), got).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proofs_bind_cookie_role_and_nonces() {
        let (nd, na) = (nonce(), nonce());
        let t = Transcript {
            exporter: b"session one",
            dialer: "a",
            acceptor: "b",
            dialer_nonce: &nd,
            acceptor_nonce: &na,
        };
        let m = mac("secret", Role::Dialer, &t);
        assert!(verify("secret", Role::Dialer, &t, &m));
        assert!(!verify("other", Role::Dialer, &t, &m));
        assert!(!verify("secret", Role::Acceptor, &t, &m));
        let other = nonce();
        let t2 = Transcript {
            dialer_nonce: &other,
            ..t
        };
        assert!(!verify("secret", Role::Dialer, &t2, &m));
        assert_ne!(nd, na);
        // The same proof on another TLS session (a relay) fails.
        let relayed = Transcript {
            exporter: b"session two",
            ..t
        };
        assert!(!verify("secret", Role::Dialer, &relayed, &m));
    }
}
