//! HTTP/1.x as pure functions of bytes: the request head parser (`request`),
//! the chunked body decoder (`body`), urlencoded form and query fields
//! (`form`), and response head writing with the cached `Date` (`response`).
//! Nothing here touches a socket; the reactor feeds these its buffers and the
//! router decides what each parsed request means.

pub mod body;
pub mod form;
pub mod request;
pub mod response;

pub use request::{parse_head, BodyKind, HeadError, HeadLimits, Method, Request};
