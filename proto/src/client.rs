//! A gRPC channel to the coordinator over our own rustls stream, so the agent
//! trusts exactly one CA, pinned by its SHA-256 fingerprint (the
//! `kubeadm join --discovery-token-ca-cert-hash` pattern), and can present its
//! client certificate.

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::client::danger::ServerCertVerified;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tonic::transport::{Channel, Endpoint};

use crate::tls::{CertCheck, Presented};

/// Why a connection could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    #[error("bad coordinator address {0:?}: expected host:port")]
    BadAddress(String),
    #[error("bad TLS material: {0}")]
    Tls(String),
    #[error("could not connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: tonic::transport::Error,
    },
}

/// Client certificate chain and key (PEM).
#[derive(Clone)]
pub struct ClientIdentity {
    pub cert_pem: String,
    pub key_pem: String,
}

/// Connection settings.
#[derive(Clone)]
pub struct ConnectOptions {
    /// Lower-case hex SHA-256 of the coordinator CA certificate (DER).
    pub ca_sha256: String,
    pub identity: Option<ClientIdentity>,
    pub connect_timeout: Duration,
    /// Source address to dial from (None: the system picks). One source
    /// address has one ephemeral port range (~28,000 ports on Debian) per
    /// coordinator address, so the sessions benchmark spreads 50,000
    /// sessions over several loopback sources.
    pub bind: Option<std::net::IpAddr>,
}

/// Accepts a server chain only if it carries the pinned CA and the end
/// certificate verifies against that CA for the name dialled.
#[derive(Debug)]
struct PinnedCa {
    pin: String,
}

impl CertCheck for PinnedCa {
    fn check(&self, presented: &Presented<'_>) -> Result<ServerCertVerified, rustls::Error> {
        let ca = presented
            .intermediates
            .iter()
            .find(|c| crate::cert_fingerprint(c) == self.pin)
            .ok_or_else(|| {
                rustls::Error::General(
                    "coordinator CA does not match the pinned fingerprint".into(),
                )
            })?;
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(ca.clone().into_owned())
            .map_err(|e| rustls::Error::General(format!("pinned CA unusable: {e}")))?;
        let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            crate::tls::ring(),
        )
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))?;
        presented.verify_with(inner.as_ref(), &[])
    }
}

fn tls_config(opts: &ConnectOptions) -> Result<rustls::ClientConfig, ClientError> {
    let pinned = PinnedCa {
        pin: opts.ca_sha256.to_ascii_lowercase(),
    };
    let builder = crate::tls::client_builder(&[&rustls::version::TLS13], pinned)
        .map_err(|e| ClientError::Tls(e.to_string()))?;
    let mut cfg = match &opts.identity {
        None => builder.with_no_client_auth(),
        Some(id) => {
            let chain = parse_certs(&id.cert_pem)?;
            let key = parse_key(&id.key_pem)?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| ClientError::Tls(e.to_string()))?
        }
    };
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(cfg)
}

/// Parses every certificate in a PEM bundle.
pub fn parse_certs(pem: &str) -> Result<Vec<CertificateDer<'static>>, ClientError> {
    use rustls::pki_types::pem::PemObject;
    let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(pem.as_bytes()).collect();
    let certs = certs.map_err(|e| ClientError::Tls(format!("certificate PEM: {e}")))?;
    if certs.is_empty() {
        return Err(ClientError::Tls("no certificate in PEM".into()));
    }
    Ok(certs)
}

fn parse_key(pem: &str) -> Result<PrivateKeyDer<'static>, ClientError> {
    use rustls::pki_types::pem::PemObject;
    PrivateKeyDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| ClientError::Tls(format!("private key PEM: {e}")))
}

fn server_name(addr: &str) -> Result<ServerName<'static>, ClientError> {
    let host = match addr.rsplit_once(':') {
        Some((h, p)) if p.parse::<u16>().is_ok() => h.trim_start_matches('[').trim_end_matches(']'),
        _ => return Err(ClientError::BadAddress(addr.to_string())),
    };
    ServerName::try_from(host.to_string()).map_err(|_| ClientError::BadAddress(addr.to_string()))
}

/// Opens an HTTP/2 channel to `addr` ("host:port") over TLS 1.3 with the
/// pinned CA. The connection is made lazily on first use and re-made after
/// failures, always through the same verifier.
pub async fn connect(addr: &str, opts: &ConnectOptions) -> Result<Channel, ClientError> {
    let name = server_name(addr)?;
    let cfg = Arc::new(tls_config(opts)?);
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|_| ClientError::BadAddress(addr.to_string()))?
        .connect_timeout(opts.connect_timeout)
        .tcp_nodelay(true)
        // A dead connection is noticed within 25 s (the coordinator's own
        // PINGs notice it within 15 s, `http2_keepalive_*`).
        .http2_keep_alive_interval(Duration::from_secs(15))
        .keep_alive_timeout(Duration::from_secs(10));
    let dial = addr.to_string();
    let timeout = opts.connect_timeout;
    let bind = opts.bind;
    let connector = tower::service_fn(move |_uri: tonic::transport::Uri| {
        let cfg = cfg.clone();
        let name = name.clone();
        let dial = dial.clone();
        async move {
            let tcp = tokio::time::timeout(timeout, dial_tcp(&dial, bind))
                .await
                .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
            tcp.set_nodelay(true)?;
            let tls = tokio::time::timeout(
                timeout,
                tokio_rustls::TlsConnector::from(cfg).connect(name, tcp),
            )
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
            Ok::<_, std::io::Error>(TokioIo::new(tls))
        }
    });
    endpoint
        .connect_with_connector(connector)
        .await
        .map_err(|source| ClientError::Connect {
            addr: addr.to_string(),
            source,
        })
}

/// Connects to `dial`, from `bind` when given (port chosen by the system).
async fn dial_tcp(
    dial: &str,
    bind: Option<std::net::IpAddr>,
) -> std::io::Result<tokio::net::TcpStream> {
    let Some(local) = bind else {
        return tokio::net::TcpStream::connect(dial).await;
    };
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address");
    for peer in tokio::net::lookup_host(dial).await? {
        if peer.is_ipv4() != local.is_ipv4() {
            continue;
        }
        let sock = if local.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        sock.bind(std::net::SocketAddr::new(local, 0))?;
        match sock.connect(peer).await {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Tries each address in turn and returns the first channel that connects.
pub async fn connect_any(addrs: &[String], opts: &ConnectOptions) -> Result<Channel, ClientError> {
    let mut last = ClientError::BadAddress("no coordinator address".into());
    for a in addrs {
        match connect(a, opts).await {
            Ok(c) => return Ok(c),
            Err(e) => last = e,
        }
    }
    Err(last)
}
