//! Serving: our own TLS acceptor (so every refused handshake is logged with
//! its reason and bounded in time) feeding tonic's HTTP/2 server.
//!
//! Slow and hostile clients: a new connection has `handshake_timeout_s` to
//! finish TLS *and* send the HTTP/2 connection preface (hyper itself waits
//! for a preface forever); an open connection must answer the server's
//! PINGs (`http2_keepalive_*`); header lists over `max_header_list_bytes`
//! are refused by h2 (431, or GOAWAY for an abusive CONTINUATION flood);
//! gRPC messages over `max_message_bytes` end the stream with OUT_OF_RANGE.

use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::PrivateKeyDer;
use rustls::server::WebPkiClientVerifier;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;
use vantage_proto::v1::{
    admin_service_server::AdminServiceServer, agent_service_server::AgentServiceServer,
    query_service_server::QueryServiceServer,
};

use crate::api::{admin::AdminApi, agent::AgentApi, query::QueryApi};
use crate::config::Config;
pub use crate::errors::ServeError;
use crate::pki::{self, files, Ca};
use crate::state::{Shared, State};
use crate::store::{CommitHandle, Store};

/// A fresh coordinator state in `dir` (CA, store, commit thread) for unit
/// tests: nothing listens.
#[cfg(test)]
pub(crate) fn test_state(dir: &Path) -> Shared {
    pki::init(dir, &["localhost".into()]).expect("pki init");
    open_state(dir, Config::new("127.0.0.1:0".into(), vec![])).expect("open state")
}

/// Opens the store and loads the CA: everything `serve` needs.
pub fn open_state(data_dir: &Path, config: Config) -> Result<Shared, ServeError> {
    let store = Store::open(&data_dir.join("store"))?;
    let commit = CommitHandle::start(store.clone(), crate::metrics::record_commit_group);
    let sink = match &config.sink.clickhouse {
        Some(c) => Some(crate::sink::status_for(&store, c)?),
        None => None,
    };
    Ok(Arc::new(State {
        sink,
        ca: Ca::load(data_dir)?,
        admin_fingerprint: pki::admin_fingerprint(data_dir)?,
        hub: Default::default(),
        store,
        commit,
        config,
        data_dir: data_dir.to_path_buf(),
        sent_log: Default::default(),
        dirty_runs: Default::default(),
        verdict_backoff: Default::default(),
        pending_marks: Default::default(),
        task_cache: Default::default(),
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

/// Pending connections the kernel queues for `accept` (tokio's default is
/// 1,024; a burst of new connections beyond the queue is dropped by the
/// kernel before the handshake timeout can see it). Linux caps it at
/// `net.core.somaxconn`.
const LISTEN_BACKLOG: u32 = 4096;

/// Binds the listener (so callers learn the port before serving).
pub async fn bind(addr: &str) -> Result<TcpListener, ServeError> {
    let err = |source| ServeError::Bind {
        addr: addr.into(),
        source,
    };
    let mut last = None;
    for sa in tokio::net::lookup_host(addr).await.map_err(err)? {
        let socket = if sa.is_ipv4() {
            tokio::net::TcpSocket::new_v4()
        } else {
            tokio::net::TcpSocket::new_v6()
        }
        .map_err(err)?;
        socket.set_reuseaddr(true).map_err(err)?;
        match socket.bind(sa).and_then(|()| socket.listen(LISTEN_BACKLOG)) {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
    }
    Err(err(last.unwrap_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "no address to bind")
    })))
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
                let deadline = tokio::time::Instant::now() + handshake_timeout;
                let tls = match tokio::time::timeout_at(deadline, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(e)) => {
                        tracing::warn!(%peer, "TLS handshake refused: {e}");
                        counter.count("tls_refused");
                        return;
                    }
                    Err(_) => {
                        tracing::warn!(%peer, "TLS handshake timed out");
                        counter.count("tls_timeout");
                        return;
                    }
                };
                match tokio::time::timeout_at(deadline, Prefaced::read(tls)).await {
                    Ok(Ok(stream)) => {
                        let _ = tx.send(Ok::<_, std::io::Error>(stream)).await;
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(%peer, "HTTP/2 preface refused: {e}");
                        counter.count("h2_preface_refused");
                    }
                    Err(_) => {
                        tracing::warn!(%peer, "HTTP/2 preface timed out after TLS");
                        counter.count("h2_preface_timeout");
                    }
                }
            });
        }
    });
    crate::campaigns::spawn(shared.clone());
    crate::sink::spawn(&shared);
    crate::alerts::spawn(&shared);
    // Read tokens, their buckets and the live feed, shared by both read faces.
    let reads = crate::query::Reads::start(&shared).map_err(|message| {
        ServeError::Config(crate::config::ConfigError::Parse {
            path: shared.data_dir.join(crate::config::FILE),
            message,
        })
    })?;
    crate::http::spawn(shared.clone(), reads.clone()).await?;
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
        reads,
    });
    let router = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(
            shared.config.http2_keepalive_interval_s.max(1),
        )))
        .http2_keepalive_timeout(Some(Duration::from_secs(
            shared.config.http2_keepalive_timeout_s.max(1),
        )))
        .http2_max_header_list_size(shared.config.max_header_list_bytes.max(1024))
        .max_concurrent_streams(Some(64))
        .add_service(agent)
        .add_service(admin)
        .add_service(query);
    // grpc.health.v1 and server reflection.
    crate::api::standard::standard_services(router)
        .await
        .serve_with_incoming_shutdown(ReceiverStream::new(rx), shutdown)
        .await?;
    Ok(())
}

/// The HTTP/2 client connection preface (RFC 9113, section 3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A TLS stream whose HTTP/2 preface the acceptor already read (within the
/// handshake deadline); the preface is replayed to hyper before the rest.
struct Prefaced {
    inner: TlsStream<TcpStream>,
    replayed: usize,
}

impl Prefaced {
    async fn read(mut inner: TlsStream<TcpStream>) -> std::io::Result<Prefaced> {
        let mut head = [0u8; 24];
        inner.read_exact(&mut head).await?;
        if &head != H2_PREFACE {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "not an HTTP/2 connection preface",
            ));
        }
        Ok(Prefaced { inner, replayed: 0 })
    }
}

impl AsyncRead for Prefaced {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.replayed < H2_PREFACE.len() {
            let rest = &H2_PREFACE[self.replayed..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            self.replayed += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Prefaced {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl Connected for Prefaced {
    // The TLS stream's own info, so `Request::peer_certs` keeps working.
    type ConnectInfo = <TlsStream<TcpStream> as Connected>::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

/// The address a listener actually bound.
pub fn local_addr(l: &TcpListener) -> Option<SocketAddr> {
    l.local_addr().ok()
}
