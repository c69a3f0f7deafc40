//! The TLS client configurations of the https, pops and imaps checks: one of each per runner,
//! shared by every check. (ldaps verifies nothing, as Net::LDAP: see `ldap`.)
//!
//! As ldirectord on Debian 12 (LWP 6.68, IO::Socket::SSL 2.081, OpenSSL 3): the server's
//! certificate chain is verified against the system's CA store, and its name is not checked.
//! ldirectord asks LWP for `verify_hostname => 0`, which LWP turns into "no name check" only;
//! it leaves `SSL_verify_mode` unset, and IO::Socket::SSL's client default is
//! `SSL_VERIFY_PEER` with the CAs OpenSSL finds (`SSL_CERT_FILE`, `SSL_CERT_DIR`, else
//! `/etc/ssl/certs`). So a self-signed or expired certificate is down ("certificate verify
//! failed"), and a certificate from a trusted CA is up whatever name it carries. The evidence
//! is in docs/health-checks.md.
//!
//! A certificate that is itself in the store is trusted as it stands (while valid), as OpenSSL
//! trusts it: operators add a real's self-signed certificate to the store to make ldirectord's
//! check pass.
//!
//! The store is read once, when the runner starts (`rustls-native-certs`, which looks where
//! OpenSSL looks and honours the same two variables); ldirectord re-reads it on every check.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{verify_server_cert_signed_by_trust_anchor, verify_server_name};
use rustls::crypto::{
    CryptoProvider, WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature,
};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

/// The certificate authorities https, pops and imaps checks trust.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum TrustedCas {
    /// The system's store, found as OpenSSL finds it: `SSL_CERT_FILE` and `SSL_CERT_DIR` when
    /// set, else the usual places (on Debian `/etc/ssl/certs`, from the package
    /// ca-certificates). What ldirectord trusts.
    #[default]
    System,
    /// Only these certificates (DER): a private CA, or a test's.
    Only(Vec<Vec<u8>>),
}

impl TrustedCas {
    /// The store and its certificates (sorted), with what could not be used logged. An empty
    /// store fails every https, pops and imaps check, as it does in ldirectord.
    fn load(&self) -> (RootCertStore, Vec<Vec<u8>>) {
        let certs: Vec<CertificateDer<'static>> = match self {
            TrustedCas::System => {
                let found = rustls_native_certs::load_native_certs();
                for error in &found.errors {
                    tracing::warn!(%error, "reading the system's CA certificates");
                }
                found.certs
            }
            TrustedCas::Only(ders) => ders
                .iter()
                .map(|der| CertificateDer::from(der.clone()))
                .collect(),
        };
        let mut roots = RootCertStore::empty();
        let (added, ignored) = roots.add_parsable_certificates(certs.iter().cloned());
        if ignored > 0 {
            tracing::warn!(ignored, "CA certificates that cannot be used were skipped");
        }
        if added == 0 {
            tracing::warn!(
                "no trusted CA certificates (install the package ca-certificates): \
                 every https, pops and imaps check will be down, as in ldirectord"
            );
        }
        let mut certs: Vec<Vec<u8>> = certs.iter().map(|c| c.to_vec()).collect();
        certs.sort_unstable();
        certs.dedup();
        (roots, certs)
    }
}

/// The shared client configurations: ring provider, TLS 1.2 and 1.3, no client certificate,
/// no ALPN, the chain verified against `trusted`. https's does not check the name (LWP's
/// `verify_hostname => 0`); that of pops and imaps checks it against the real's address, as
/// IO::Socket::SSL does by default for Mail::POP3Client and Net::IMAP::Simple::SSL.
pub(crate) struct ClientConfigs {
    pub(crate) chain_only: Arc<ClientConfig>,
    pub(crate) chain_and_name: Arc<ClientConfig>,
}

pub(crate) fn client_configs(trusted: &TrustedCas) -> ClientConfigs {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let (roots, certificates) = trusted.load();
    let trust = Arc::new(Trust {
        roots,
        certificates,
        algorithms: provider.signature_verification_algorithms,
    });
    let config = |check_name| {
        let verifier = Arc::new(Verifier {
            trust: Arc::clone(&trust),
            check_name,
        });
        let config =
            ClientConfig::builder_with_provider(Arc::clone(&provider) as Arc<CryptoProvider>)
                .with_protocol_versions(rustls::ALL_VERSIONS)
                .expect("the ring provider supports every rustls protocol version")
                .dangerous()
                .with_custom_certificate_verifier(verifier)
                .with_no_client_auth();
        Arc::new(config)
    };
    ClientConfigs {
        chain_only: config(false),
        chain_and_name: config(true),
    }
}

/// The trusted CAs, loaded once for both configurations.
#[derive(Debug)]
struct Trust {
    roots: RootCertStore,
    /// The store's certificates as they are, sorted: a server certificate found here is
    /// trusted itself.
    certificates: Vec<Vec<u8>>,
    algorithms: WebPkiSupportedAlgorithms,
}

/// Verifies the chain up to a trusted CA (signatures, validity dates, basic constraints, key
/// usage) and the handshake signatures; the name too when `check_name`.
#[derive(Debug)]
struct Verifier {
    trust: Arc<Trust>,
    check_name: bool,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        let trust = &self.trust;
        match verify_server_cert_signed_by_trust_anchor(
            &cert,
            &trust.roots,
            intermediates,
            now,
            trust.algorithms.all,
        ) {
            Ok(()) => {}
            // A self-signed certificate made with `openssl req -x509` says it is a CA, which
            // webpki refuses as a server's; it checks the validity dates before that, so this
            // error also says the certificate is valid now. OpenSSL trusts such a certificate
            // when the store holds it.
            Err(e)
                if is_ca_used_as_end_entity(&e)
                    && trust
                        .certificates
                        .binary_search_by(|c| c.as_slice().cmp(end_entity))
                        .is_ok() => {}
            Err(e) => return Err(e),
        }
        if self.check_name {
            verify_server_name(&cert, server_name)?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.trust.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.trust.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.trust.algorithms.supported_schemes()
    }
}

fn is_ca_used_as_end_entity(error: &rustls::Error) -> bool {
    match error {
        rustls::Error::InvalidCertificate(CertificateError::Other(other)) => matches!(
            other.0.downcast_ref::<webpki::Error>(),
            Some(webpki::Error::CaUsedAsEndEntity)
        ),
        _ => false,
    }
}
