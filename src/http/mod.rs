//! HTTP as pure functions of bytes. `message` is what a request and a
//! response are for the service, whichever protocol carried them; the rest
//! is HTTP/1.1: the head parser (`request`), the chunked body decoder
//! (`body`), response heads with the cached `Date` (`response`); `form`
//! decodes urlencoded form and query fields for both. Nothing here touches a
//! socket.

pub mod body;
pub mod form;
pub mod message;
pub mod request;
pub mod response;

pub use message::{Method, Request, Response};
pub use request::{parse_head, BodyKind, Head, HeadError, HeadLimits};
