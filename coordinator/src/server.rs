//! Serving: our own TLS acceptor (so every refused handshake is logged with
//! its reason and bounded in time) feeding tonic's HTTP/2 server.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::PrivateKeyDer;
use rustls::server::WebPkiClientVerifier;
use tokio::net::TcpListener;
use tokio_stream::wrappers::ReceiverStream;
use vantage_proto::v1::{
    admin_service_server::AdminServiceServer, agent_service_server::AgentServiceServer,
    query_service_server::QueryServiceServer,
};

use crate::api::{admin::AdminApi, agent::AgentApi, query::QueryApi};
use crate::config::Config;
use crate::pki::{self, files, Ca};
use crate::state::{Shared, State};
use crate::store::{CommitHandle, Store};

/// Serving failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Pki(#[from] pki::PkiError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("TLS setup: {0}")]
    Tls(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("server error: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Opens the store and loads the CA: everything `serve` needs.
pub fn open_state(data_dir: &Path, config: Config) -> Result<Shared, ServeError> {
    let store = Store::open(&data_dir.join("store"))?;
    let commit = CommitHandle::start(store.clone(), crate::http::record_commit_group);
    Ok(Arc::new(State {
        ca: Ca::load(data_dir)?,
        admin_fingerprint: pki::admin_fingerprint(data_dir)?,
        hub: Default::default(),
        store,
        commit,
        config,
        data_dir: data_dir.to_path_buf(),
        sent_log: Default::default(),
    }))
}

fn tls_config(dir: &Path) -> Result<rustls::ServerConfig, ServeError> {
    let read = |f: &str| {
        std::fs::read_to_string(dir.join(f)).map_err(|e| ServeError::Tls(format!("{f}: {e}")))
    };
    let ca = vantage_proto::client::parse_certs(&read(files::CA_CERT)?)
        .map_err(|e| ServeError::Tls(e.to_string()))?;
    let mut chain = vantage_proto::client::parse_certs(&read(files::SERVER_CERT)?)
        .map_err(|e| ServeError::Tls(e.to_string()))?;
    // The CA travels with the server certificate so agents can check it
    // against the fingerprint they pinned.
    chain.extend(ca.iter().cloned());
    let key = PrivateKeyDer::from_pem_slice(read(files::SERVER_KEY)?.as_bytes())
        .map_err(|e| ServeError::Tls(format!("server.key: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in ca {
        roots.add(c).map_err(|e| ServeError::Tls(e.to_string()))?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| ServeError::Tls(e.to_string()))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| ServeError::Tls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| ServeError::Tls(e.to_string()))?;
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(cfg)
}

/// Binds the listener (so callers learn the port before serving).
pub async fn bind(addr: &str) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind {
            addr: addr.into(),
            source,
        })
}

/// Serves gRPC over TLS on `listener` until `shutdown` resolves.
pub async fn serve(
    shared: Shared,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let tls = Arc::new(tls_config(&shared.data_dir)?);
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let handshake_timeout = Duration::from_secs(shared.config.handshake_timeout_s.max(1));
    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    let counter = shared.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            let counter = counter.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let _ = tx.send(Ok::<_, std::io::Error>(stream)).await;
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(%peer, "TLS handshake refused: {e}");
                        counter.count("tls_refused");
                    }
                    Err(_) => {
                        tracing::warn!(%peer, "TLS handshake timed out");
                        counter.count("tls_timeout");
                    }
                }
            });
        }
    });
    crate::campaigns::spawn(shared.clone());
    crate::http::spawn(shared.clone()).await?;
    let max = shared.config.max_message_bytes;
    let agent = AgentServiceServer::new(AgentApi {
        shared: shared.clone(),
    })
    .max_decoding_message_size(max);
    let admin = AdminServiceServer::new(AdminApi {
        shared: shared.clone(),
    });
    let query = QueryServiceServer::new(QueryApi {
        shared: shared.clone(),
    });
    let router = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(60)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .max_concurrent_streams(Some(64))
        .add_service(agent)
        .add_service(admin)
        .add_service(query);
    // grpc.health.v1 and server reflection.
    crate::http::grpc::standard_services(router)
        .await
        .serve_with_incoming_shutdown(ReceiverStream::new(rx), shutdown)
        .await?;
    Ok(())
}

/// The address a listener actually bound.
pub fn local_addr(l: &TcpListener) -> Option<SocketAddr> {
    l.local_addr().ok()
}
