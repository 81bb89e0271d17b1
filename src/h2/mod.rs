//! HTTP/2 (RFC 9113) as a sans-IO server core: bytes in, events out, bytes
//! to send; the socket glue is `conn::h2`. Split by what changes together:
//! `frame` (the frame layer, pure), `hpack` and `huffman` (RFC 7541, written
//! here and bounded: every crate checked panicked on hostile input),
//! `conn` (the connection: settings, the stream table, flood and reset
//! budgets), `incoming` (header blocks, CONTINUATION, request bodies,
//! receive windows), `outgoing` (responses, DATA cut from shared chunks as
//! windows allow, timers), `stream` (one stream and its outbox), `request`
//! (the §8.3 request checks) and `limits` (every count a client controls).

pub mod conn;
pub mod frame;
pub mod hpack;
pub mod huffman;
pub mod incoming;
pub mod limits;
pub mod outgoing;
pub mod request;
pub mod stream;
