//! `http::parse_head` on arbitrary bytes: never panics, a parsed head lies
//! inside the input, its path starts with '/', and the bytes after the head
//! (the body) do not change how the head parses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use watercooler::http::{parse_head, HeadLimits};

fuzz_target!(|data: &[u8]| {
    let limits = HeadLimits::default();
    let Ok(Some(req)) = parse_head(data, &limits) else {
        return;
    };
    assert!(
        req.head_len <= data.len(),
        "head_len {} > input",
        req.head_len
    );
    assert!(req.head_len <= limits.max_head_bytes);
    assert!(req.request.path.starts_with('/'), "path {:?}", req.request.path);
    assert!(req.minor_version <= 1);
    assert!(req.request.method_name.chars().count() <= 16);
    assert!(req.request.target.chars().count() <= 256);

    let head = data.get(..req.head_len).unwrap_or(data);
    let again = parse_head(head, &limits);
    let again = again.as_ref().ok().and_then(Option::as_ref);
    assert_eq!(
        again.map(|r| (r.head_len, &r.request.path)),
        Some((req.head_len, &req.request.path))
    );
});
