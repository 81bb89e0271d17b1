//! `cluster::config::parse` on arbitrary text: never panics, and a file it
//! accepts lists the node it was parsed for, no name twice, and a cookie of
//! 1 to 1024 bytes.
//!
//! Input: the first line is the node's `--name`, the rest is the file.
//! Inputs naming a host that is neither an IP literal nor `localhost` are
//! skipped, so the fuzzer never waits on (or sends) DNS queries.
#![no_main]

use std::net::IpAddr;

use libfuzzer_sys::fuzz_target;
use watercooler::bus::mesh::config::parse;

/// Would `parse` have to ask DNS about a host in this file? Mirrors how
/// `parse` splits lines and entries; a miss only costs speed, not truth.
fn needs_dns(text: &str) -> bool {
    text.lines()
        .filter_map(|line| line.split('#').next()?.split_once('='))
        .filter(|(key, _)| key.trim() == "nodes")
        .flat_map(|(_, value)| value.trim().split([',', ' ', '\t']))
        .filter_map(|entry| entry.rsplit_once(':')?.0.split_once('@'))
        .map(|(_, host)| host.trim_start_matches('[').trim_end_matches(']'))
        .any(|host| !host.is_empty() && host != "localhost" && host.parse::<IpAddr>().is_err())
}

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let (me, text) = input.split_once('\n').unwrap_or((input, ""));
    if needs_dns(text) {
        return;
    }
    let Ok(config) = parse("sys.conf", text, me) else {
        return;
    };
    assert!(
        config.nodes.iter().any(|m| m.name == me),
        "{me:?} not in {:?}",
        config.nodes
    );
    for (i, m) in config.nodes.iter().enumerate() {
        assert!(
            config.nodes[..i].iter().all(|o| o.name != m.name),
            "{} twice",
            m.name
        );
    }
    assert!((1..=1024).contains(&config.cookie.len()));
});
