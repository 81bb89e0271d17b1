//! `routes::route` for whatever request head the input starts with, the
//! bytes after the head as its body: never panics, and a message it hands
//! to the room is non-blank and within `max_message`.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use watercooler::service::assets::Assets;
use watercooler::http::{parse_head, HeadLimits};
use watercooler::service::routes::{route, Route, Site};

const MAX_MESSAGE: usize = 64;

fuzz_target!(|data: &[u8]| {
    static ASSETS: OnceLock<Assets> = OnceLock::new();
    let assets = ASSETS.get_or_init(|| Assets::new("n"));
    let site = Site {
        assets,
        max_message: MAX_MESSAGE,
    };
    let Ok(Some(req)) = parse_head(data, &HeadLimits::default()) else {
        return;
    };
    let body = data.get(req.head_len..).unwrap_or(&[]);
    if let Route::Publish { text: message, .. } = route(&req.request, body, &site) {
        assert!(
            message.len() <= MAX_MESSAGE,
            "message of {} bytes",
            message.len()
        );
        assert!(!message.trim().is_empty());
    }
});
