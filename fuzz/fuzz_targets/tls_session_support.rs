//! The `tls_session` fuzz target's setup: bounds, the server and client
//! configurations (the client accepts any certificate), the in-memory wire
//! and the input reader.

use std::collections::VecDeque;
use std::io::{self, ErrorKind, Read, Write};
use std::sync::{Arc, OnceLock};

use rustls::client::Resumption;
use rustls::{ClientConfig, ServerConfig};

#[path = "../../tests/common/accept_any_cert.rs"]
mod accept_any_cert;
use accept_any_cert::AcceptAnyCert;

/// Bounds per iteration, so one runs in milliseconds.
pub const MAX_OPS: usize = 64;
pub const MAX_CLIENT_BYTES: usize = 64 * 1024;
pub const MAX_SERVER_BYTES: usize = 128 * 1024;
pub const MAX_ONE_SEND: usize = 20_000;
pub const MAX_KEY_UPDATES: u8 = 16;
/// The reactor's read buffer.
pub const SCRATCH: usize = 16 * 1024;
/// Largest record on the wire: 2^14 plaintext plus TLS 1.2's expansion room.
pub const MAX_RECORD: usize = 16 * 1024 + 2048;

pub fn server_config() -> Arc<ServerConfig> {
    static CONFIG: OnceLock<Arc<ServerConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            watercooler::tls::self_signed()
                .expect("self-signed identity")
                .config
        })
        .clone()
}

/// A client config: `versions` 1 both, 2 TLS 1.2, 3 TLS 1.3; `suites` 1
/// AES-128 only, 2 ChaCha20 only, else all. Resumption needs a session store
/// of its own per iteration, or one iteration would resume another's session.
pub fn client_config(versions: u8, suites: u8, resume: bool) -> Arc<ClientConfig> {
    let mut provider = rustls::crypto::ring::default_provider();
    let keep = match suites {
        1 => "AES_128",
        2 => "CHACHA20",
        _ => "",
    };
    provider
        .cipher_suites
        .retain(|s| format!("{:?}", s.suite()).contains(keep));
    let provider = Arc::new(provider);
    let builder = ClientConfig::builder_with_provider(provider.clone());
    let builder = match versions {
        2 => builder.with_protocol_versions(&[&rustls::version::TLS12]),
        3 => builder.with_protocol_versions(&[&rustls::version::TLS13]),
        _ => builder.with_safe_default_protocol_versions(),
    }
    .expect("protocol versions");
    let mut config = builder
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config.resumption = if resume {
        Resumption::in_memory_sessions(4)
    } else {
        Resumption::disabled()
    };
    Arc::new(config)
}

pub fn cached_client_config(versions: u8, suites: u8) -> Arc<ClientConfig> {
    static CONFIGS: OnceLock<Vec<Arc<ClientConfig>>> = OnceLock::new();
    let all = CONFIGS.get_or_init(|| {
        (0..12)
            .map(|i| client_config(1 + i / 4, i % 4, false))
            .collect()
    });
    all[usize::from((versions - 1) * 4 + suites)].clone()
}

/// The TCP connection in memory, as the server's end sees it.
#[derive(Default)]
pub struct Wire {
    pub to_server: VecDeque<u8>,
    pub to_client: Vec<u8>,
    /// Most bytes one read returns.
    pub chunk: usize,
    /// Bytes the socket takes before `WouldBlock`.
    pub budget: usize,
    /// The client shut its side: reads return Ok(0) once `to_server` drains.
    pub eof: bool,
    /// The next read and the next write fail once with `Interrupted`.
    pub interrupt_read: bool,
    pub interrupt_write: bool,
}

impl Read for Wire {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if std::mem::take(&mut self.interrupt_read) {
            return Err(ErrorKind::Interrupted.into());
        }
        if self.to_server.is_empty() {
            return match self.eof {
                true => Ok(0),
                false => Err(ErrorKind::WouldBlock.into()),
            };
        }
        let n = buf.len().min(self.chunk);
        self.to_server.read(&mut buf[..n])
    }
}

impl Write for Wire {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if std::mem::take(&mut self.interrupt_write) {
            return Err(ErrorKind::Interrupted.into());
        }
        if self.budget == 0 {
            return Err(ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(self.budget);
        self.budget -= n;
        self.to_client.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A piece size or a read limit: 1–100 byte by byte, then steps of 211 to
/// past a full record, else unbounded.
pub fn size(b: u8) -> usize {
    match b {
        0..=99 => usize::from(b) + 1,
        100..=199 => (usize::from(b) - 99) * 211,
        _ => usize::MAX,
    }
}

/// A write budget: like `size`, but 0 (a full socket) is possible.
pub fn budget(b: u8) -> usize {
    match b {
        0..=99 => usize::from(b),
        _ => size(b),
    }
}

pub fn limit(b: u8) -> usize {
    const LIMITS: [usize; 11] = [
        0,
        1,
        2,
        17,
        100,
        1000,
        4096,
        16384,
        16385,
        65536,
        usize::MAX,
    ];
    LIMITS[usize::from(b) % LIMITS.len()]
}

/// Plaintext made up by the harness: no short period, so a lost or doubled
/// span shows.
pub fn pattern(pos: usize, salt: u32) -> u8 {
    ((pos as u32 ^ salt).wrapping_mul(2_654_435_761) >> 24) as u8
}

/// Well-formed TLS records, the last one possibly cut short by the budget.
pub fn check_records(mut bytes: &[u8]) {
    while bytes.len() >= 5 {
        let version = u16::from_be_bytes([bytes[1], bytes[2]]);
        let len = usize::from(u16::from_be_bytes([bytes[3], bytes[4]]));
        assert!((20..=23).contains(&bytes[0]), "record type {}", bytes[0]);
        assert!(
            (0x0301..=0x0304).contains(&version),
            "record version {version:#x}"
        );
        assert!(len <= MAX_RECORD, "record of {len} bytes");
        bytes = bytes.get(5 + len..).unwrap_or_default();
    }
}

/// Input reader; an exhausted input ends the operations.
pub struct Input<'a>(pub &'a [u8]);

impl<'a> Input<'a> {
    pub fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    pub fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes([self.byte()?, self.byte()?]))
    }

    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        head
    }
}
