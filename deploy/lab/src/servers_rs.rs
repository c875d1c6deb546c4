//! The lab's small Rust servers, for targets Debian has no package for:
//! a QUIC server (quinn; completes handshakes and echoes bidirectional
//! streams), a plain TCP echo server (the peer of the fully-encrypted
//! traffic test) and a silent server (accepts TCP, never answers).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Errors starting a server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot read {path}: {msg}")]
    Pem { path: String, msg: String },
    #[error("TLS configuration: {0}")]
    Tls(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// ALPN protocols the QUIC server accepts.
pub const QUIC_ALPN: &[&[u8]] = &[b"h3", b"vantage", b"hq-interop"];

fn tls_config(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, ServerError> {
    let pem_err = |p: &Path, e: rustls::pki_types::pem::Error| ServerError::Pem {
        path: p.display().to_string(),
        msg: e.to_string(),
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| pem_err(cert, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_err(cert, e))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| pem_err(key, e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| ServerError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| ServerError::Tls(e.to_string()))?;
    cfg.alpn_protocols = QUIC_ALPN.iter().map(|a| a.to_vec()).collect();
    Ok(cfg)
}

/// Serves QUIC on every address until the process is killed.
pub async fn quic_server(
    listen: &[SocketAddr],
    cert: &Path,
    key: &Path,
) -> Result<(), ServerError> {
    let tls = tls_config(cert, key)?;
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .map_err(|e| ServerError::Tls(e.to_string()))?;
    let cfg = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut tasks = Vec::new();
    for addr in listen {
        let endpoint =
            quinn::Endpoint::server(cfg.clone(), *addr).map_err(|source| ServerError::Bind {
                addr: *addr,
                source,
            })?;
        eprintln!("quic-server: listening on udp {addr}");
        tasks.push(tokio::spawn(async move {
            while let Some(incoming) = endpoint.accept().await {
                tokio::spawn(async move {
                    let Ok(conn) = incoming.await else { return };
                    while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                        tokio::spawn(async move {
                            if let Ok(data) = recv.read_to_end(64 * 1024).await {
                                let _ = send.write_all(&data).await;
                                let _ = send.finish();
                            }
                        });
                    }
                });
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    Ok(())
}

/// Accepts TCP on every address until the process is killed, handing each
/// connection to `handle` on its own task.
async fn serve_tcp<H, F>(name: &str, listen: &[SocketAddr], handle: H) -> Result<(), ServerError>
where
    H: Fn(tokio::net::TcpStream) -> F + Clone + Send + 'static,
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let mut tasks = Vec::new();
    for addr in listen {
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Bind {
                addr: *addr,
                source,
            })?;
        eprintln!("{name}: listening on tcp {addr}");
        let handle = handle.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let Ok((s, _)) = l.accept().await else {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    continue;
                };
                tokio::spawn(handle(s));
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    Ok(())
}

/// Echoes TCP on every address until the process is killed.
pub async fn echo_server(listen: &[SocketAddr]) -> Result<(), ServerError> {
    serve_tcp("echo-server", listen, |mut s| async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        }
    })
    .await
}

/// Accepts TCP on every address and never sends a byte (condition 22: a
/// server that takes the connection and then hangs). What the client sends
/// is read and discarded, so its writes never block; the connection is held
/// until the client closes it.
pub async fn silent_server(listen: &[SocketAddr]) -> Result<(), ServerError> {
    serve_tcp("silent-server", listen, |mut s| async move {
        let mut buf = vec![0u8; 16 * 1024];
        while let Ok(n) = s.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
    .await
}
