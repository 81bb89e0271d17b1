//! The link handshake (`bus::mesh::handshake`: a password-authenticated key
//! exchange on the cookie) against frames a hostile peer sends. The socket
//! side lives in `link/`; this target plays its checks on the frames decoded
//! from the input:
//! - an acceptor (cookie `COOKIE`) answers each `Hello` with a `Challenge`
//!   and its share; a `Proof` is accepted only if its MAC is the dialer's
//!   confirmation of the key its share agrees on, which the input can
//!   produce only by running the exchange with the cookie (the target does
//!   so with the guess: accepted exactly when the guess is the cookie);
//! - the acceptor's own confirmation never passes as a dialer's (no
//!   reflection), nor on another TLS session (another exporter value);
//! - no share, however malformed (small order included), panics.
//!
//! Input: byte 0 = length of the guessed cookie, then the guess, then frames
//! (as `wire` encodes them, under the handshake cap).
#![no_main]

use libfuzzer_sys::fuzz_target;
use watercooler::bus::mesh::handshake::{
    generator, mac, secret, session_key, share, verify, Role, Transcript,
};
use watercooler::bus::mesh::wire::{decode, Frame, MAX_HANDSHAKE_FRAME, NONCE_LEN};

const COOKIE: &str = "change-me";
const ME: &str = "node1@127.0.0.1";
const SESSION: &[u8] = &[0x11; 32];
const RELAYED: &[u8] = &[0x22; 32];

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let (guess, mut frames) = rest.split_at(usize::from(n).min(rest.len()));
    let guess = String::from_utf8_lossy(guess);

    let my_nonce = [0x5a; NONCE_LEN];
    let my_secret = [0x42; 32];
    // The acceptor's state after a `Hello`: the dialer's name and nonce.
    let mut hello: Option<(String, [u8; NONCE_LEN])> = None;
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
                let mine = share(&my_secret, &generator(COOKIE, &t));
                // A dialer that knows only `guess` runs the exchange.
                let theirs_secret = secret();
                let theirs = share(&theirs_secret, &generator(&guess, &t));
                let dialer_key = session_key(&theirs_secret, &mine, &theirs, &mine);
                let acceptor_key = session_key(&my_secret, &theirs, &theirs, &mine);
                if let (Some(d), Some(a)) = (dialer_key, acceptor_key) {
                    let proof = mac(&d, Role::Dialer, &t);
                    assert_eq!(verify(&a, Role::Dialer, &t, &proof), guess == COOKIE);
                    let ours = mac(&a, Role::Acceptor, &t);
                    assert!(!verify(&a, Role::Dialer, &t, &ours), "reflected");
                    let relayed = Transcript {
                        exporter: RELAYED,
                        ..t
                    };
                    assert!(!verify(&a, Role::Dialer, &relayed, &proof), "relayed");
                }
                hello = Some((name, nonce));
            }
            Frame::Proof { share: theirs, mac: got } => {
                // Whatever share and MAC the input sends: no panic, and a
                // MAC under a key the acceptor derives passes only if it is
                // that key's dialer confirmation.
                let Some((name, nonce)) = &hello else {
                    continue;
                };
                let t = Transcript {
                    exporter: SESSION,
                    dialer: name,
                    acceptor: ME,
                    dialer_nonce: nonce,
                    acceptor_nonce: &my_nonce,
                };
                let mine = share(&my_secret, &generator(COOKIE, &t));
                if let Some(key) = session_key(&my_secret, &theirs, &theirs, &mine) {
                    let real = mac(&key, Role::Dialer, &t);
                    assert_eq!(verify(&key, Role::Dialer, &t, &got), got == real);
                }
            }
            Frame::Challenge { share: theirs, .. } => {
                let _ = session_key(&my_secret, &theirs, &theirs, &theirs);
            }
            _ => {}
        }
    }
});
