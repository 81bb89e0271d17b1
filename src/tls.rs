//! The secure port's rustls configuration: a certificate chain and key from
//! PEM files, or a self-signed certificate for localhost made at start. Built
//! with the ring provider explicitly (see NOTES: two providers make the
//! implicit builder panic).

use std::path::Path;
use std::sync::Arc;

use rustls::crypto::ring;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;

pub struct Identity {
    pub config: Arc<ServerConfig>,
    /// SHA-256 of the leaf certificate, `AB:CD:…`, for the start-up log.
    pub fingerprint: String,
}

pub fn load(cert: &Path, key: &Path) -> Result<Identity, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("{}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("{}: no certificate in the file", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    build(chain, key)
}

/// A certificate for localhost, 127.0.0.1 and ::1, valid from yesterday for
/// 90 days (rcgen's default runs to the year 4096).
pub fn self_signed() -> Result<Identity, String> {
    let names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    let mut params =
        rcgen::CertificateParams::new(names).map_err(|e| format!("self-signed: {e}"))?;
    let now = std::time::SystemTime::now();
    params.not_before = (now - std::time::Duration::from_secs(86_400)).into();
    params.not_after = (now + std::time::Duration::from_secs(90 * 86_400)).into();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "watercooler self-signed");
    let key = rcgen::KeyPair::generate().map_err(|e| format!("self-signed key: {e}"))?;
    let cert = params
        .self_signed(&key)
        .map_err(|e| format!("self-signed: {e}"))?;
    let key = PrivateKeyDer::try_from(key.serialize_der())
        .map_err(|e| format!("self-signed key: {e}"))?;
    build(vec![cert.der().clone()], key)
}

fn build(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Identity, String> {
    let fingerprint = fingerprint(&chain[0]);
    let mut config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("tls certificate: {e}"))?;
    // HTTP/2 first: every tab, publish and stream on one connection.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // Our preference order (rustls's: AEADs, forward secrecy) wins over the
    // client's; testssl.sh rates the opposite HIGH.
    config.ignore_client_order = true;
    // No session cache per connection beyond rustls's small shared one; tickets
    // would cost memory per connection for little gain here.
    Ok(Identity {
        config: Arc::new(config),
        fingerprint,
    })
}

/// The links' TLS, both ends: TLS 1.3 only, a certificate made at start
/// and never checked by the other side. The trust is the cookie: each side's
/// proof covers this session's exporter (`TlsBuffered::exporter`), so a
/// relay that ends TLS on both sides cannot pass a proof through.
pub struct LinkTls {
    pub server: Arc<ServerConfig>,
    pub client: Arc<rustls::ClientConfig>,
}

/// The name a dialling node gives (the certificate is not checked).
pub const LINK_SERVER_NAME: &str = "watercooler-link";

pub fn link_tls() -> Result<LinkTls, String> {
    let provider = Arc::new(ring::default_provider());
    let key = rcgen::KeyPair::generate().map_err(|e| format!("link key: {e}"))?;
    let cert = rcgen::CertificateParams::new(vec![LINK_SERVER_NAME.to_string()])
        .and_then(|p| p.self_signed(&key))
        .map_err(|e| format!("link certificate: {e}"))?;
    let key = PrivateKeyDer::try_from(key.serialize_der()).map_err(|e| format!("link key: {e}"))?;
    let server = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| format!("tls: {e}"))?
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key)
        .map_err(|e| format!("link certificate: {e}"))?;
    let client = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| format!("tls: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    Ok(LinkTls {
        server: Arc::new(server),
        client: Arc::new(client),
    })
}

/// Takes any certificate (the cookie proof authenticates the peer) but
/// still checks the handshake's signatures with it.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn fingerprint(cert: &CertificateDer) -> String {
    let digest = ::ring::digest::digest(&::ring::digest::SHA256, cert.as_ref());
    digest
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    #[test]
    fn self_signed_builds() {
        let id = super::self_signed().unwrap();
        assert_eq!(id.fingerprint.len(), 32 * 3 - 1);
    }
}
