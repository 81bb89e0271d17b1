//! The cookie handshake's proofs (`cluster::handshake`) against frames a
//! hostile peer sends. The socket side lives in `peer.rs`; this target plays
//! its checks on the frames decoded from the input:
//! - an acceptor (cookie `COOKIE`) answers each `Hello` with a `Challenge`
//!   (no proof); a `Proof` verifies only if it is the real dialer MAC, the
//!   acceptor's own MAC never verifies as a dialer's (no reflection), and
//!   no proof verifies on another TLS session (another exporter value);
//! - a dialer, after a `Challenge`, verifies a `Proof` only if it is the
//!   real acceptor MAC;
//! - a peer that guessed a cookie passes only if its guess is the cookie
//!   (or one HMAC cannot tell apart: the same bytes plus trailing NULs).
//!
//! Input: byte 0 = length of the guessed cookie, then the guess, then frames
//! (as `wire` encodes them, under the handshake cap).
#![no_main]

use libfuzzer_sys::fuzz_target;
use watercooler::bus::mesh::handshake::{mac, verify, Role, Transcript};
use watercooler::bus::mesh::wire::{decode, Frame, MAX_HANDSHAKE_FRAME, NONCE_LEN};

const COOKIE: &str = "change-me";
const ME: &str = "node1@127.0.0.1";
const SESSION: &[u8] = &[0x11; 32];
const RELAYED: &[u8] = &[0x22; 32];

/// HMAC-SHA256 pads keys of up to 64 bytes with zeros, so such keys that
/// differ only in trailing NULs are the same key.
fn same_key(a: &str, b: &str) -> bool {
    if a.len() <= 64 && b.len() <= 64 {
        a.trim_end_matches('\0') == b.trim_end_matches('\0')
    } else {
        a == b
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let (guess, mut frames) = rest.split_at(usize::from(n).min(rest.len()));
    let guess = String::from_utf8_lossy(guess);
    let guess_ok = same_key(&guess, COOKIE);

    let my_nonce = [0x5a; NONCE_LEN];
    // The acceptor's state: the dialer's name and nonce from its `Hello`.
    let mut hello: Option<(String, [u8; NONCE_LEN])> = None;
    // The dialer's state: the acceptor's name and nonce from its `Challenge`.
    let mut challenge: Option<(String, [u8; NONCE_LEN])> = None;
    while let Ok(Some((frame, used))) = decode(frames, MAX_HANDSHAKE_FRAME) {
        frames = frames.get(used..).unwrap_or_default();
        match frame {
            Frame::Hello { name, nonce, .. } => {
                let t = Transcript {
                    exporter: SESSION,
                    dialer: &name,
                    acceptor: ME,
                    dialer_nonce: &nonce,
                    acceptor_nonce: &my_nonce,
                };
                let ours = mac(COOKIE, Role::Acceptor, &t);
                assert!(verify(COOKIE, Role::Acceptor, &t, &ours));
                assert_eq!(verify(&guess, Role::Acceptor, &t, &ours), guess_ok);
                assert!(!verify(COOKIE, Role::Dialer, &t, &ours), "reflected");
                let forged = mac(&guess, Role::Dialer, &t);
                assert_eq!(verify(COOKIE, Role::Dialer, &t, &forged), guess_ok);
                let relayed = Transcript {
                    exporter: RELAYED,
                    ..t
                };
                assert!(!verify(COOKIE, Role::Dialer, &relayed, &forged), "relayed");
                hello = Some((name, nonce));
            }
            Frame::Proof { mac: got } => {
                if let Some((name, nonce)) = &hello {
                    let t = Transcript {
                        exporter: SESSION,
                        dialer: name,
                        acceptor: ME,
                        dialer_nonce: nonce,
                        acceptor_nonce: &my_nonce,
                    };
                    let real = mac(COOKIE, Role::Dialer, &t);
                    assert_eq!(verify(COOKIE, Role::Dialer, &t, &got), got == real);
                }
                if let Some((name, nonce)) = &challenge {
                    let t = Transcript {
                        exporter: SESSION,
                        dialer: ME,
                        acceptor: name,
                        dialer_nonce: &my_nonce,
                        acceptor_nonce: nonce,
                    };
                    let real = mac(COOKIE, Role::Acceptor, &t);
                    assert_eq!(verify(COOKIE, Role::Acceptor, &t, &got), got == real);
                }
            }
            Frame::Challenge { name, nonce } => {
                challenge = Some((name, nonce));
            }
            _ => {}
        }
    }
});
