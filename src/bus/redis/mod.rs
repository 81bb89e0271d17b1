//! The pure pieces of the Redis bus (issue 14), each a function of bytes:
//! RESP2 replies and commands (`resp`, bounded, no recursion a server can
//! drive deep), `redis://` and `rediss://` URLs (`url`, never printing the
//! password), and the Stream replies the bus reads (`stream`: XADD, XRANGE,
//! XREAD); these are unit-tested against real redis-server replies and
//! fuzzed (`resp`). On them: `client` (one connection as a socket of the
//! reactor) and `node` (the bus: what goes to Redis, what comes back).

pub mod client;
pub mod node;
pub mod resp;
pub mod stream;
pub mod url;

#[cfg(test)]
mod tests;
