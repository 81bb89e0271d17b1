//! Log lines on stderr: one per request and one per notable event, never one
//! per SSE event. A line is `TIME LEVEL message`; the level threshold is set
//! once at start (`--log`). Kept dependency-free: the node writes a few lines
//! per request, so a global level and a locked stderr are all it needs.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error = 0,
    Warn = 1,
    Info = 2,
    Debug = 3,
}

impl Level {
    pub fn parse(s: &str) -> Option<Level> {
        match s {
            "error" => Some(Level::Error),
            "warn" => Some(Level::Warn),
            "info" => Some(Level::Info),
            "debug" => Some(Level::Debug),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Level::Error => "ERROR",
            Level::Warn => "WARN",
            Level::Info => "INFO",
            Level::Debug => "DEBUG",
        }
    }
}

static THRESHOLD: AtomicU8 = AtomicU8::new(Level::Info as u8);
static JSON: AtomicBool = AtomicBool::new(false);
/// The worker a line comes from (`--workers`; 0: not a worker).
static WORKER: AtomicUsize = AtomicUsize::new(0);

/// Lines of worker `k` say so (the workers of a node share its stderr).
pub fn set_worker(k: usize) {
    WORKER.store(k, Ordering::Relaxed);
}

/// One JSON object per line (`ts`, `level`, `msg`) instead of text.
pub fn set_json(json: bool) {
    JSON.store(json, Ordering::Relaxed);
}

pub fn set_level(level: Level) {
    THRESHOLD.store(level as u8, Ordering::Relaxed);
}

pub fn enabled(level: Level) -> bool {
    level as u8 <= THRESHOLD.load(Ordering::Relaxed)
}

/// Writes one line; errors writing to stderr are ignored (a closed stderr must
/// not take the node down).
pub fn write(level: Level, args: std::fmt::Arguments) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    let ms = now.subsec_millis();
    let worker = WORKER.load(Ordering::Relaxed);
    // One write per line: the workers of a node write to one stderr, and
    // a single write of a short line is not interleaved with another's.
    let line = if JSON.load(Ordering::Relaxed) {
        let msg = crate::service::presence::json_string(&args.to_string());
        let worker = match worker {
            0 => String::new(),
            k => format!(",\"worker\":{k}"),
        };
        format!(
            "{{\"ts\":{}.{ms:03},\"level\":\"{}\"{worker},\"msg\":{msg}}}\n",
            now.as_secs(),
            level.name().to_ascii_lowercase()
        )
    } else {
        let worker = match worker {
            0 => String::new(),
            k => format!("w{k} "),
        };
        format!(
            "{h:02}:{m:02}:{s:02}.{ms:03} {:5} {worker}{args}\n",
            level.name()
        )
    };
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

#[macro_export]
macro_rules! log {
    ($level:expr, $($arg:tt)*) => {
        if $crate::log::enabled($level) {
            $crate::log::write($level, format_args!($($arg)*));
        }
    };
}
#[macro_export]
macro_rules! info { ($($arg:tt)*) => { $crate::log!($crate::log::Level::Info, $($arg)*) }; }
#[macro_export]
macro_rules! warn { ($($arg:tt)*) => { $crate::log!($crate::log::Level::Warn, $($arg)*) }; }
#[macro_export]
macro_rules! error { ($($arg:tt)*) => { $crate::log!($crate::log::Level::Error, $($arg)*) }; }
#[macro_export]
macro_rules! debug { ($($arg:tt)*) => { $crate::log!($crate::log::Level::Debug, $($arg)*) }; }
