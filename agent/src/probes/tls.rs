//! `tls` probe: TCP connect, then a TLS handshake with a chosen SNI (and an
//! optional second handshake with an innocuous control SNI), recording the
//! certificate chain fingerprints, what WebPKI would have decided, the
//! negotiated version, cipher suite and ALPN, and the handshake time.
//!
//! Also owns the TLS machinery the http, web, DoH and tor code share: the
//! system root store, and [`RecordingVerifier`], the certificate check (a
//! `vantage_proto::tls::CertCheck`, so ring checks the handshake signatures)
//! that asks the WebPKI verifier, records the chain and its verdict, and then
//! accepts (so an invalid certificate is data, not an abort) unless it was
//! built `strict`.
//!
//! Target policy: a forbidden `ip` in the input is a refusal (see `target.rs`).

// Proto messages are always built with `..Default::default()` so fields added
// later never break the build, even where every field is set today.
#![allow(clippy::needless_update)]

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rustls::client::danger::ServerCertVerified;
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{CertificateError, ClientConfig, RootCertStore};
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use vantage_proto::failure::{self, classify_io, failure, op};
use vantage_proto::tls::{CertCheck, Presented};
use vantage_proto::v1::{measurement, Failure, TlsHandshake, TlsInput, TlsResult};

use super::{measured, net, target, ProbeContext, Probed, Steps};

/// Where Debian keeps the system trust store as one PEM bundle.
const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Runs the `tls` probe.
pub async fn run(input: &TlsInput, ctx: &ProbeContext) -> Probed {
    let mut steps = Steps::new();
    let addr = target::ip_port("tls", &input.ip, input.port, Some(443), &ctx.policy)?;
    let has_control = !input.control_sni.is_empty();
    // With a control handshake to do, the sensitive one may use at most half
    // of the remaining time, so a blackholed handshake leaves room for the control.
    let first_budget = if has_control {
        ctx.remaining() / 2
    } else {
        ctx.remaining()
    };
    let handshake = attempt(addr, &input.sni, &input.alpn, first_budget, &mut steps, "").await;
    let control = if has_control {
        Some(
            attempt(
                addr,
                &input.control_sni,
                &input.alpn,
                ctx.remaining(),
                &mut steps,
                "control_",
            )
            .await,
        )
    } else {
        None
    };
    let result = TlsResult {
        ip: addr.ip().to_string(),
        port: addr.port().into(),
        handshake: Some(handshake),
        control,
        ..Default::default()
    };
    measured(measurement::Result::Tls(result), steps)
}

/// One connect + handshake within `budget`, with steps named
/// `<prefix>connect` and `<prefix>tls_handshake`.
async fn attempt(
    addr: SocketAddr,
    sni: &str,
    alpn: &[String],
    budget: Duration,
    steps: &mut Steps,
    prefix: &str,
) -> TlsHandshake {
    let deadline = Instant::now() + budget;
    let connected = net::connect(addr, budget);
    let tcp = match steps.run(&format!("{prefix}connect"), connected).await {
        Ok((s, _)) => s,
        Err(f) => {
            return TlsHandshake {
                sni: sni.to_string(),
                failure: Some(f),
                ..Default::default()
            };
        }
    };
    let started = Instant::now();
    let remaining = deadline.saturating_duration_since(Instant::now());
    let (hs, _stream) = handshake(tcp, addr.ip(), sni, alpn, remaining, false).await;
    steps.record(
        &format!("{prefix}tls_handshake"),
        started,
        hs.failure.clone(),
    );
    hs
}

/// What the recording verifier saw.
#[derive(Debug, Default, Clone)]
struct Seen {
    chain_sha256: Vec<String>,
    webpki: String,
    leaf_spki_sha256: String,
    issuer: String,
}

/// Wraps the WebPKI verifier: records the chain and the verdict, then accepts
/// (or, when `strict`, fails the way WebPKI would).
#[derive(Debug)]
pub(crate) struct RecordingVerifier {
    inner: Option<Arc<WebPkiServerVerifier>>,
    seen: Arc<Mutex<Seen>>,
    strict: bool,
}

impl CertCheck for RecordingVerifier {
    fn check(&self, presented: &Presented<'_>) -> Result<ServerCertVerified, rustls::Error> {
        let (end_entity, intermediates) = (presented.end_entity, presented.intermediates);
        let verdict = match &self.inner {
            Some(v) => presented.verify_with(v.as_ref(), intermediates),
            None => Err(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer,
            )),
        };
        if let Ok(mut seen) = self.seen.lock() {
            seen.chain_sha256 = std::iter::once(end_entity)
                .chain(intermediates.iter())
                .map(|c| hex::encode(Sha256::digest(c.as_ref())))
                .collect();
            seen.leaf_spki_sha256 =
                super::x509::spki_sha256(end_entity.as_ref()).unwrap_or_default();
            seen.issuer = super::x509::issuer(end_entity.as_ref()).unwrap_or_default();
            seen.webpki = match &verdict {
                Ok(_) => "valid".to_string(),
                Err(e) => classify_webpki(e),
            };
        }
        match verdict {
            Err(e) if self.strict => Err(e),
            _ => Ok(ServerCertVerified::assertion()),
        }
    }
}

/// Maps what WebPKI said to the failure vocabulary.
fn classify_webpki(e: &rustls::Error) -> String {
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer => failure::SSL_UNKNOWN_AUTHORITY.into(),
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                failure::SSL_INVALID_HOSTNAME.into()
            }
            _ => failure::SSL_INVALID_CERTIFICATE.into(),
        },
        _ => failure::SSL_INVALID_CERTIFICATE.into(),
    }
}

/// Extra trust anchors (PEM files) set once at start from `agent.toml`'s
/// `extra_ca_files`: a lab's CA, a corporate proxy's.
static EXTRA_CA_FILES: OnceLock<Vec<std::path::PathBuf>> = OnceLock::new();

/// Why the trust store could not be built as configured.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrustError {
    #[error("CA file {0}: {1}")]
    Read(String, String),
    #[error("CA file {0} holds no certificate")]
    Empty(String),
    #[error("the extra CA files were already set for this process")]
    AlreadySet,
}

/// Reads every certificate of a PEM file.
fn pem_certs(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, TrustError> {
    use rustls::pki_types::pem::PemObject;
    let shown = path.display().to_string();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| TrustError::Read(shown.clone(), e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| TrustError::Read(shown.clone(), e.to_string()))?;
    if certs.is_empty() {
        return Err(TrustError::Empty(shown));
    }
    Ok(certs)
}

/// Checks the extra CA files and makes the probes trust them, besides the
/// system roots. Call once, before the first probe. Returns how many
/// certificates were added.
pub fn set_extra_ca_files(files: &[std::path::PathBuf]) -> Result<usize, TrustError> {
    let mut n = 0;
    for f in files {
        n += pem_certs(f)?.len();
    }
    EXTRA_CA_FILES
        .set(files.to_vec())
        .map_err(|_| TrustError::AlreadySet)?;
    Ok(n)
}

/// The bundle the system roots come from: `SSL_CERT_FILE` when set (the
/// OpenSSL convention labs and corporate proxies use), else Debian's.
fn system_roots_file() -> std::path::PathBuf {
    std::env::var_os("SSL_CERT_FILE")
        .filter(|v| !v.is_empty())
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| SYSTEM_ROOTS.into())
}

/// The system roots (see [`system_roots_file`]) plus the extra CA files,
/// or an empty store when there are none.
fn roots() -> Arc<RootCertStore> {
    static R: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    R.get_or_init(|| {
        let mut store = RootCertStore::empty();
        let extra = EXTRA_CA_FILES.get().cloned().unwrap_or_default();
        for f in std::iter::once(system_roots_file()).chain(extra) {
            match pem_certs(&f) {
                Ok(certs) => {
                    let _ = store.add_parsable_certificates(certs);
                }
                Err(e) => tracing::debug!("trust store: {e}"),
            }
        }
        Arc::new(store)
    })
    .clone()
}

/// A fresh client config whose verifier records into `seen`.
fn client_config(
    alpn: &[String],
    enable_sni: bool,
    strict: bool,
    seen: Arc<Mutex<Seen>>,
) -> Result<ClientConfig, rustls::Error> {
    let inner = WebPkiServerVerifier::builder_with_provider(roots(), vantage_proto::tls::ring())
        .build()
        .ok();
    let verifier = RecordingVerifier {
        inner,
        seen,
        strict,
    };
    let mut cfg = vantage_proto::tls::client_builder(rustls::DEFAULT_VERSIONS, verifier)?
        .with_no_client_auth();
    cfg.enable_sni = enable_sni;
    cfg.alpn_protocols = alpn.iter().map(|a| a.as_bytes().to_vec()).collect();
    Ok(cfg)
}

/// Maps a handshake error (as tokio-rustls reports it) to the vocabulary.
fn classify_handshake(e: &std::io::Error) -> String {
    if let Some(inner) = e.get_ref() {
        if let Some(tls) = inner.downcast_ref::<rustls::Error>() {
            return match tls {
                rustls::Error::InvalidCertificate(_) => classify_webpki(tls),
                _ => failure::SSL_FAILED_HANDSHAKE.into(),
            };
        }
    }
    classify_io(e)
}

fn version_name(v: rustls::ProtocolVersion) -> String {
    match v {
        rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3".into(),
        rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2".into(),
        other => format!("{other:?}"),
    }
}

/// Runs a TLS handshake over `tcp` within `budget`. An empty `sni` sends no
/// SNI (the certificate is then checked against `ip`). With `strict`, an
/// invalid certificate aborts the handshake (used by DoH); otherwise it is
/// recorded and accepted. Returns the record and, on success, the stream.
pub(crate) async fn handshake(
    tcp: TcpStream,
    ip: IpAddr,
    sni: &str,
    alpn: &[String],
    budget: Duration,
    strict: bool,
) -> (TlsHandshake, Option<TlsStream<TcpStream>>) {
    let mut hs = TlsHandshake {
        sni: sni.to_string(),
        ..Default::default()
    };
    let fail = |mut hs: TlsHandshake, f: Failure| {
        hs.failure = Some(f);
        (hs, None)
    };
    let server_name: ServerName<'static> = if sni.is_empty() {
        ServerName::IpAddress(ip.into())
    } else {
        match ServerName::try_from(sni.to_string()) {
            Ok(n) => n,
            Err(_) => {
                return fail(
                    hs,
                    failure(
                        &format!("unknown_failure: invalid sni {sni:?}"),
                        op::TLS_HANDSHAKE,
                    ),
                )
            }
        }
    };
    let seen = Arc::new(Mutex::new(Seen::default()));
    let cfg = match client_config(alpn, !sni.is_empty(), strict, seen.clone()) {
        Ok(c) => c,
        Err(e) => {
            return fail(
                hs,
                failure(
                    &format!("unknown_failure: tls config: {e}"),
                    op::TLS_HANDSHAKE,
                ),
            )
        }
    };
    let connector = TlsConnector::from(Arc::new(cfg));
    let started = Instant::now();
    let res = tokio::time::timeout(budget, connector.connect(server_name, tcp)).await;
    hs.handshake_us = started.elapsed().as_micros() as i64;
    if let Ok(seen) = seen.lock() {
        hs.chain_sha256 = seen.chain_sha256.clone();
        hs.webpki = seen.webpki.clone();
        hs.leaf_spki_sha256 = seen.leaf_spki_sha256.clone();
        hs.issuer = seen.issuer.clone();
    }
    match res {
        Err(_) => fail(hs, failure(failure::GENERIC_TIMEOUT, op::TLS_HANDSHAKE)),
        Ok(Err(e)) => {
            let f = classify_handshake(&e);
            fail(hs, failure(&f, op::TLS_HANDSHAKE))
        }
        Ok(Ok(stream)) => {
            let (_, conn) = stream.get_ref();
            hs.version = conn
                .protocol_version()
                .map(version_name)
                .unwrap_or_default();
            hs.cipher = conn
                .negotiated_cipher_suite()
                .map(|s| format!("{:?}", s.suite()))
                .unwrap_or_default();
            hs.alpn = conn
                .alpn_protocol()
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .unwrap_or_default();
            (hs, Some(stream))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webpki_errors_map_into_the_vocabulary() {
        let e = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        assert_eq!(classify_webpki(&e), "ssl_unknown_authority");
        let e = rustls::Error::InvalidCertificate(CertificateError::NotValidForName);
        assert_eq!(classify_webpki(&e), "ssl_invalid_hostname");
        let e = rustls::Error::InvalidCertificate(CertificateError::Expired);
        assert_eq!(classify_webpki(&e), "ssl_invalid_certificate");
    }

    #[test]
    fn extra_ca_files_must_hold_certificates() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("missing.pem");
        assert!(matches!(pem_certs(&missing), Err(TrustError::Read(..))));
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").expect("write");
        assert!(matches!(pem_certs(&empty), Err(TrustError::Empty(_))));
        let ca = rcgen::generate_simple_self_signed(vec!["ca.example".to_string()]).expect("rcgen");
        let good = dir.path().join("ca.pem");
        std::fs::write(&good, ca.cert.pem()).expect("write");
        assert_eq!(pem_certs(&good).map(|c| c.len()).ok(), Some(1));
    }
}
