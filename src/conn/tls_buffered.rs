//! A TLS session on rustls's buffered API, for the node's few connections
//! that are not browsers': the Redis bus (`rediss://`, a client) and the
//! links between nodes (client or server). Its buffers per connection do
//! not matter for a handful of sockets (the many browser sessions use the
//! unbuffered API in `tls_session`), and it offers what links need: the
//! session's exporter (RFC 8446 §7.5), which binds the cookie proof to this
//! one TLS session. The same calls as the other transports: read what is
//! there, write what is queued, say goodbye. `config` builds the Redis
//! client configuration: the roots of a CA file, or the system's.

use std::io::{self, ErrorKind, Read, Write};
use std::path::Path;
use std::sync::Arc;

use rustls::crypto::ring;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{
    ClientConfig, ClientConnection, Connection, RootCertStore, ServerConfig, ServerConnection,
};

use super::io::ReadEnd;
use super::output::Output;

/// Where Debian (and most Linux distributions) keep the system's CA bundle.
pub const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Most plaintext rustls holds for sending before `write` stops handing
/// it more (the rest waits in `Output`).
const SEND_BUFFER: usize = 64 * 1024;

pub struct TlsBuffered {
    conn: Connection,
}

/// Bytes of the exporter value a link's proof covers.
pub const EXPORTER_LEN: usize = 32;

/// A client configuration trusting the CAs of `ca_file`, or the system's.
pub fn config(ca_file: Option<&str>) -> Result<Arc<ClientConfig>, String> {
    let path = Path::new(ca_file.unwrap_or(SYSTEM_ROOTS));
    let mut roots = RootCertStore::empty();
    let certs =
        CertificateDer::pem_file_iter(path).map_err(|e| format!("{}: {e}", path.display()))?;
    for cert in certs {
        let cert = cert.map_err(|e| format!("{}: {e}", path.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("{}: no CA certificate in the file", path.display()));
    }
    let config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

impl TlsBuffered {
    /// A client session to `host` (a DNS name or an IP address, checked
    /// against the server's certificate by `config`'s verifier).
    pub fn client(config: Arc<ClientConfig>, host: &str) -> Result<TlsBuffered, String> {
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| format!("{host}: not a name TLS can check: {e}"))?;
        let mut conn = ClientConnection::new(config, name).map_err(|e| format!("tls: {e}"))?;
        conn.set_buffer_limit(Some(SEND_BUFFER));
        Ok(TlsBuffered { conn: conn.into() })
    }

    /// A server session (a link accepted on the cluster port).
    pub fn server(config: Arc<ServerConfig>) -> Result<TlsBuffered, String> {
        let mut conn = ServerConnection::new(config).map_err(|e| format!("tls: {e}"))?;
        conn.set_buffer_limit(Some(SEND_BUFFER));
        Ok(TlsBuffered { conn: conn.into() })
    }

    /// The session's exporter value for `label`, once the handshake is
    /// done: both ends get the same bytes, and a relay that ends TLS on
    /// both sides gets different ones on each.
    pub fn exporter(&self, label: &[u8]) -> Option<[u8; EXPORTER_LEN]> {
        if self.conn.is_handshaking() {
            return None;
        }
        self.conn
            .export_keying_material([0u8; EXPORTER_LEN], label, None)
            .ok()
    }

    /// Reads records and appends their plaintext to `into` until drained,
    /// the end of the stream, or `into.len() >= limit`.
    pub fn read(
        &mut self,
        stream: &mut impl Read,
        scratch: &mut [u8],
        into: &mut Vec<u8>,
        limit: usize,
    ) -> io::Result<ReadEnd> {
        loop {
            loop {
                if into.len() >= limit {
                    return Ok(ReadEnd::Full);
                }
                let want = scratch.len().min(limit - into.len());
                match self.conn.reader().read(&mut scratch[..want]) {
                    Ok(0) => return Ok(ReadEnd::Eof),
                    Ok(n) => into.extend_from_slice(&scratch[..n]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(ReadEnd::Eof),
                    Err(e) => return Err(e),
                }
            }
            match self.conn.read_tls(stream) {
                Ok(0) => return Ok(ReadEnd::Eof),
                Ok(_) => {
                    self.conn
                        .process_new_packets()
                        .map_err(|e| io::Error::new(ErrorKind::InvalidData, e))?;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(ReadEnd::Drained),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Hands rustls what `out` holds (as much as it buffers) and writes the
    /// records. Ok(true) when everything has left.
    pub fn write(&mut self, stream: &mut impl Write, out: &mut Output) -> io::Result<bool> {
        loop {
            let mut moved = 0;
            while !out.is_empty() {
                let n = self.conn.writer().write(out.front())?;
                if n == 0 {
                    break;
                }
                moved += n;
                out.consume(n);
            }
            let mut sent = 0;
            while self.conn.wants_write() {
                match self.conn.write_tls(stream) {
                    Ok(0) => return Err(ErrorKind::WriteZero.into()),
                    Ok(n) => sent += n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            if out.is_empty() {
                return Ok(true);
            }
            if moved == 0 && sent == 0 {
                // rustls holds all it takes until the handshake is done.
                return Ok(false);
            }
        }
    }

    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    pub fn close_notify(&mut self) {
        self.conn.send_close_notify();
    }

    pub fn wants_write(&self) -> bool {
        self.conn.wants_write()
    }
}
