//! watercooler: a multi-node chatroom server on one thread and one `mio`
//! event loop. The pure parts (`http`, `sse`, `room`, `routes`) take bytes
//! and return values, so they are unit-tested and fuzzed without sockets;
//! `reactor`, `client` and `transport` own the sockets.

pub mod assets;
pub mod cli;
pub mod client;
pub mod cluster;
pub mod health;
pub mod http;
pub mod log;
pub mod output;
pub mod peer;
pub mod presence;
pub mod reactor;
pub mod room;
pub mod routes;
pub mod sse;
pub mod stats;
pub mod timer;
pub mod tls;
pub mod tls_session;
pub mod transport;
