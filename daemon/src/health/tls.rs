//! TLS for `https` checks (rustls, ring provider).
//!
//! Real servers behind a director commonly carry certificates for the
//! service's name, not for their own addresses, or self-signed ones: a
//! check that verified by default would fail on most of them. So without
//! `--check-ca` the chain and the name are not verified (the handshake's
//! signatures still are, so the server must hold the key it presents);
//! with it, the certificate must chain to that CA and match the SNI name
//! (`--check-host`, else the server's address).

use std::net::{IpAddr, TcpStream};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, StreamOwned};
use xvs_config::check::CheckSpec;

/// A TLS stream over the probe's TCP connection.
pub type Stream = StreamOwned<ClientConnection, TcpStream>;

/// Accepts any certificate, checks the handshake signatures.
#[derive(Debug)]
struct AnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
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
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
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

fn config(ca: Option<&str>) -> Result<ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls: {e}"))?;
    Ok(match ca {
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
            .with_no_client_auth(),
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(path).map_err(|e| format!("{path}: {e}"))? {
                let cert = cert.map_err(|e| format!("{path}: {e}"))?;
                roots.add(cert).map_err(|e| format!("{path}: {e}"))?;
            }
            if roots.is_empty() {
                return Err(format!("{path}: no certificate"));
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    })
}

/// Start TLS on `tcp` to server `ip` as `spec` says (SNI: `--check-host`).
/// The handshake runs on the first write or read.
pub fn connect(tcp: TcpStream, ip: IpAddr, spec: &CheckSpec) -> Result<Stream, String> {
    let cfg = config(spec.ca.as_deref())?;
    let name = match &spec.host {
        // A Host with a port (`www:8443`) names the host before it.
        Some(h) => {
            let h = h.rsplit_once(':').map_or(h.as_str(), |(n, p)| {
                if p.bytes().all(|b| b.is_ascii_digit()) && !n.contains(':') {
                    n
                } else {
                    h
                }
            });
            ServerName::try_from(h.to_string()).map_err(|e| format!("tls: server name {h}: {e}"))?
        }
        None => ServerName::IpAddress(ip.into()),
    };
    let conn = ClientConnection::new(Arc::new(cfg), name).map_err(|e| format!("tls: {e}"))?;
    Ok(StreamOwned::new(conn, tcp))
}
