//! One client TLS session, for the node's few outgoing connections that
//! need it (`rediss://`): rustls's buffered `ClientConnection`, whose
//! per-connection buffers do not matter for two sockets (the many server
//! sessions use the unbuffered API in `tls_session`). The same calls as
//! the server side: read what is there, write what is queued, say goodbye.
//! `config` builds the client configuration: the roots of a CA file, or
//! the system's (Debian's bundle).

use std::io::{self, ErrorKind, Read, Write};
use std::path::Path;
use std::sync::Arc;

use rustls::crypto::ring;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};

use super::io::ReadEnd;
use super::output::Output;

/// Where Debian (and most Linux distributions) keep the system's CA bundle.
pub const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Most plaintext rustls holds for sending before `write` stops handing
/// it more (the rest waits in `Output`).
const SEND_BUFFER: usize = 64 * 1024;

pub struct TlsClient {
    conn: ClientConnection,
}

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

impl TlsClient {
    /// A session to `host` (a DNS name or an IP address, checked against
    /// the server's certificate).
    pub fn new(config: Arc<ClientConfig>, host: &str) -> Result<TlsClient, String> {
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| format!("{host}: not a name TLS can check: {e}"))?;
        let mut conn = ClientConnection::new(config, name).map_err(|e| format!("tls: {e}"))?;
        conn.set_buffer_limit(Some(SEND_BUFFER));
        Ok(TlsClient { conn })
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

    pub fn close_notify(&mut self) {
        self.conn.send_close_notify();
    }

    pub fn wants_write(&self) -> bool {
        self.conn.wants_write()
    }
}
