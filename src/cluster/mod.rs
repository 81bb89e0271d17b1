//! Clustering, the pure parts: the cluster file (`config`), the peer link's
//! frames (`wire`), the cookie handshake's proofs (`handshake`) and who the
//! node knows and when to dial them (`members`). The socket side of a link is
//! `crate::peer`.

pub mod config;
pub mod handshake;
pub mod members;
pub mod wire;
