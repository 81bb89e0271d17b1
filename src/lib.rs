//! watercooler: a multi-node chatroom server on one thread and one `mio`
//! event loop.
//!
//! - `reactor`: the loop, the slab of sockets, the ports, every timer;
//! - `conn`: per-socket state machines (HTTP/1.1) over a plain or TLS
//!   transport;
//! - `service`: what requests mean and do, whichever protocol carried them;
//! - `bus`: how messages reach the other nodes (the mesh of peer links);
//! - pure cores, unit-tested and fuzzed without sockets: `http` (parsing and
//!   writing), `sse`, `room` (ids, history, resume), `bus::mesh::wire`.

pub mod bus;
pub mod cli;
pub mod conn;
pub mod h2;
pub mod http;
pub mod log;
pub mod reactor;
pub mod room;
pub mod service;
pub mod sse;
pub mod store;
pub mod tls;
pub mod workers;
