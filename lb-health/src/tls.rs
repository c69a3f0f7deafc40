//! The TLS client configuration of https checks: one per runner, shared by every check.
//!
//! No certificate or hostname verification: any chain is accepted for any name, so a real
//! with a self-signed, expired or mismatched certificate is up as long as it answers. This is
//! what ldirectord means to do (`verify_hostname => 0`) and what the project chose. Note that
//! ldirectord on a current Perl stack is stricter than it looks: LWP leaves
//! `SSL_verify_mode` unset, and IO::Socket::SSL (>= 1.950, e.g. 2.081 on Debian 12) then
//! defaults to verifying the chain against the system CAs, hostname aside. A self-signed real
//! is down there ("certificate verify failed") and up here; a real ldirectord finds up is
//! never down here. See docs/health-checks.md.
//!
//! The verifier still checks the handshake signatures against the presented certificate, so
//! a broken TLS stack on the real fails the check; that is protocol integrity, not trust.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{
    CryptoProvider, WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature,
};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};

/// The shared client configuration: ring provider, TLS 1.2 and 1.3, no client certificate,
/// no ALPN (the checks speak HTTP/1.1), any server certificate accepted.
pub(crate) fn client_config() -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(AcceptAnyCertificate {
        algorithms: provider.signature_verification_algorithms,
    });
    let config = ClientConfig::builder_with_provider(Arc::clone(&provider) as Arc<CryptoProvider>)
        .with_protocol_versions(rustls::ALL_VERSIONS)
        .expect("the ring provider supports every rustls protocol version")
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Arc::new(config)
}

#[derive(Debug)]
struct AcceptAnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AcceptAnyCertificate {
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
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
