//! The TLS client pieces every TLS user in Vantage shares (the pinned-CA
//! coordinator client, the agent's tls/http/DoH/tor and quic probes): the
//! ring crypto provider, and [`Verifier`], a rustls `ServerCertVerifier`
//! whose certificate decision is a [`CertCheck`] and whose handshake
//! signatures are always checked with ring's algorithms, so even a check
//! that accepts any certificate makes the peer prove it holds the key of
//! the certificate it presented.

use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WantsClientCert;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, ConfigBuilder, DigitallySignedStruct, SignatureScheme, SupportedProtocolVersion,
};

/// The ring provider (never aws-lc), one per process.
pub fn ring() -> Arc<CryptoProvider> {
    static P: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    P.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// What the server presented: the arguments of rustls'
/// `ServerCertVerifier::verify_server_cert`.
#[derive(Debug)]
pub struct Presented<'a> {
    pub end_entity: &'a CertificateDer<'a>,
    pub intermediates: &'a [CertificateDer<'a>],
    pub server_name: &'a ServerName<'a>,
    pub ocsp_response: &'a [u8],
    pub now: UnixTime,
}

impl Presented<'_> {
    /// What `verifier` (WebPKI's, say) decides about it, with
    /// `intermediates` in place of the presented ones.
    pub fn verify_with(
        &self,
        verifier: &dyn ServerCertVerifier,
        intermediates: &[CertificateDer<'_>],
    ) -> Result<ServerCertVerified, rustls::Error> {
        verifier.verify_server_cert(
            self.end_entity,
            intermediates,
            self.server_name,
            self.ocsp_response,
            self.now,
        )
    }
}

/// What a [`Verifier`] decides about the server's certificate chain.
pub trait CertCheck: std::fmt::Debug + Send + Sync {
    fn check(&self, presented: &Presented<'_>) -> Result<ServerCertVerified, rustls::Error>;
}

/// A server certificate verifier: the chain by its [`CertCheck`], the
/// handshake signatures by ring.
#[derive(Debug)]
pub struct Verifier<C> {
    check: C,
    provider: Arc<CryptoProvider>,
}

impl<C: CertCheck> Verifier<C> {
    pub fn new(check: C) -> Self {
        Verifier {
            check,
            provider: ring(),
        }
    }
}

impl<C: CertCheck> ServerCertVerifier for Verifier<C> {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check.check(&Presented {
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        })
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A ring client config for `versions` whose server certificates are
/// decided by `check`, still wanting its client authentication.
pub fn client_builder<C: CertCheck + 'static>(
    versions: &[&'static SupportedProtocolVersion],
    check: C,
) -> Result<ConfigBuilder<ClientConfig, WantsClientCert>, rustls::Error> {
    Ok(ClientConfig::builder_with_provider(ring())
        .with_protocol_versions(versions)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Verifier::new(check))))
}
