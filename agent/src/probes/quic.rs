//! `quic` probe: a QUIC (v1, TLS 1.3) handshake to ip:port with a chosen SNI
//! and ALPN, using quinn 0.11 over rustls with the ring provider. Any
//! certificate is accepted (the probe asks "does the handshake get through",
//! not "is the server authentic"); handshake time and negotiated ALPN are
//! recorded. With no ALPN in the input, `h3` is offered (servers commonly
//! abort a handshake that offers none).
//!
//! Failures, all with the operation `quic_handshake`: no answer ->
//! `generic_timeout_error`; a TLS alert inside QUIC ->
//! `ssl_failed_handshake`; a stateless reset -> `connection_reset`; an ICMP
//! error for our datagrams -> its `classify_io` mapping (port unreachable ->
//! `connection_refused`, admin-prohibited/host unreachable ->
//! `host_unreachable`); anything else `unknown_failure: ...`.
//!
//! ICMP errors: quinn's own tokio socket is unconnected and drops receive
//! errors, so the probe hands quinn an [`IcmpAwareSocket`]: a UDP socket
//! *connected* to the target (Linux then reports ICMP errors for it on
//! send/recv), which records the first such error and wakes the handshake.
//!
//! Target policy: a forbidden `ip` in the input is a refusal (see `target.rs`).

#![allow(clippy::needless_update)]

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Instant;

use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};

use rustls::client::danger::ServerCertVerified;
use vantage_proto::failure::{self, failure, op};
use vantage_proto::tls::{CertCheck, Presented};
use vantage_proto::v1::{measurement, Failure, QuicInput, QuicResult};

use super::{measured, target, ProbeContext, Probed, Steps};

/// Accepts any certificate ([`vantage_proto::tls::Verifier`] still checks
/// the handshake signatures, so the peer must hold the key of the
/// certificate it presented).
#[derive(Debug)]
pub(crate) struct AcceptAnyCert;

impl CertCheck for AcceptAnyCert {
    fn check(&self, _: &Presented<'_>) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
}

/// A quinn client config: TLS 1.3, ring, any certificate, `alpn`.
fn client_config(alpn: &[String]) -> Result<quinn::ClientConfig, String> {
    let mut tls = vantage_proto::tls::client_builder(&[&rustls::version::TLS13], AcceptAnyCert)
        .map_err(|e| e.to_string())?
        .with_no_client_auth();
    tls.alpn_protocols = if alpn.is_empty() {
        vec![b"h3".to_vec()]
    } else {
        alpn.iter().map(|a| a.as_bytes().to_vec()).collect()
    };
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).map_err(|e| e.to_string())?;
    Ok(quinn::ClientConfig::new(Arc::new(quic)))
}

/// Maps a quinn connection error to the vocabulary.
fn classify(e: &quinn::ConnectionError) -> String {
    use quinn::ConnectionError as E;
    match e {
        E::TimedOut => failure::GENERIC_TIMEOUT.into(),
        E::Reset => failure::CONNECTION_RESET.into(),
        E::TransportError(t) if t.code.to_string().contains("crypto") => {
            failure::SSL_FAILED_HANDSHAKE.into()
        }
        E::ConnectionClosed(c) if c.error_code.to_string().contains("crypto") => {
            failure::SSL_FAILED_HANDSHAKE.into()
        }
        other => format!("unknown_failure: {other}"),
    }
}

/// Runs the `quic` probe.
pub async fn run(input: &QuicInput, ctx: &ProbeContext) -> Probed {
    let mut steps = Steps::new();
    let addr = target::ip_port("quic", &input.ip, input.port, Some(443), &ctx.policy)?;
    let mut result = QuicResult {
        ip: addr.ip().to_string(),
        port: addr.port().into(),
        sni: input.sni.clone(),
        ..Default::default()
    };
    let started = Instant::now();
    let outcome = handshake(addr, &input.sni, &input.alpn, ctx).await;
    result.handshake_us = started.elapsed().as_micros() as i64;
    match outcome {
        Ok(alpn) => {
            steps.record("quic_handshake", started, None);
            result.alpn = alpn;
        }
        Err(f) => {
            steps.record("quic_handshake", started, Some(f.clone()));
            result.failure = Some(f);
        }
    }
    measured(measurement::Result::Quic(result), steps)
}

/// A UDP socket connected to the probe's target, for quinn, that keeps the
/// first ICMP-reported error (as a vocabulary string) instead of dropping it.
#[derive(Debug)]
pub(crate) struct IcmpAwareSocket {
    io: tokio::net::UdpSocket,
    peer: SocketAddr,
    icmp: Mutex<Option<String>>,
    wake: tokio::sync::Notify,
}

impl IcmpAwareSocket {
    /// Binds an ephemeral port and connects it to `peer`.
    pub(crate) async fn connect(peer: SocketAddr) -> io::Result<Self> {
        let io = tokio::net::UdpSocket::bind(super::net::any_port_for(peer)).await?;
        io.connect(peer).await?;
        Ok(IcmpAwareSocket {
            io,
            peer,
            icmp: Mutex::new(None),
            wake: tokio::sync::Notify::new(),
        })
    }

    fn note(&self, e: &io::Error) {
        if let Ok(mut slot) = self.icmp.lock() {
            if slot.is_none() {
                *slot = Some(failure::classify_io(e));
            }
        }
        self.wake.notify_one();
    }

    /// Resolves with the first ICMP-reported error.
    pub(crate) async fn icmp_error(&self) -> String {
        loop {
            if let Some(f) = self.icmp.lock().ok().and_then(|s| s.clone()) {
                return f;
            }
            self.wake.notified().await;
        }
    }
}

#[derive(Debug)]
struct Writable(Arc<IcmpAwareSocket>);

impl UdpPoller for Writable {
    fn poll_writable(self: Pin<&mut Self>, cx: &mut Context) -> Poll<io::Result<()>> {
        self.0.io.poll_send_ready(cx)
    }
}

impl AsyncUdpSocket for IcmpAwareSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        Box::pin(Writable(self))
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        match self.io.try_send(transmit.contents) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(e),
            // A pending ICMP error surfaces here too; quinn retransmits.
            Err(e) => {
                self.note(&e);
                Ok(())
            }
        }
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let (Some(buf), Some(m)) = (bufs.first_mut(), meta.first_mut()) else {
            return Poll::Ready(Ok(0));
        };
        loop {
            ready!(self.io.poll_recv_ready(cx))?;
            match self.io.try_recv(buf) {
                Ok(n) => {
                    *m = RecvMeta {
                        addr: self.peer,
                        len: n,
                        stride: n,
                        ecn: None,
                        dst_ip: None,
                    };
                    return Poll::Ready(Ok(1));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => self.note(&e),
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.local_addr()
    }
}

/// One handshake within the deadline; returns the negotiated ALPN.
async fn handshake(
    addr: SocketAddr,
    sni: &str,
    alpn: &[String],
    ctx: &ProbeContext,
) -> Result<String, Failure> {
    let fail = |s: &str| failure(s, op::QUIC_HANDSHAKE);
    let cfg =
        client_config(alpn).map_err(|e| fail(&format!("unknown_failure: quic config: {e}")))?;
    let socket = Arc::new(
        IcmpAwareSocket::connect(addr)
            .await
            .map_err(|e| fail(&failure::classify_io(&e)))?,
    );
    let mut endpoint = quinn::Endpoint::new_with_abstract_socket(
        quinn::EndpointConfig::default(),
        None,
        socket.clone(),
        Arc::new(quinn::TokioRuntime),
    )
    .map_err(|e| fail(&format!("unknown_failure: quic socket: {e}")))?;
    endpoint.set_default_client_config(cfg);
    // quinn needs some server name; an IP literal works when no SNI is given.
    let name = if sni.is_empty() {
        addr.ip().to_string()
    } else {
        sni.to_string()
    };
    let connecting = endpoint
        .connect(addr, &name)
        .map_err(|e| fail(&format!("unknown_failure: quic connect: {e}")))?;
    let res = tokio::time::timeout(ctx.remaining(), async {
        tokio::select! {
            r = connecting => r.map_err(|e| classify(&e)),
            icmp = socket.icmp_error() => Err(icmp),
        }
    })
    .await;
    let out = match res {
        Err(_) => Err(fail(failure::GENERIC_TIMEOUT)),
        Ok(Err(e)) => Err(fail(&e)),
        Ok(Ok(conn)) => {
            let alpn = conn
                .handshake_data()
                .and_then(|h| h.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
                .and_then(|h| h.protocol)
                .map(|p| String::from_utf8_lossy(&p).into_owned())
                .unwrap_or_default();
            conn.close(0u32.into(), b"vantage probe done");
            Ok(alpn)
        }
    };
    endpoint.close(0u32.into(), b"");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_config_builds_with_ring() {
        assert!(client_config(&[]).is_ok());
        assert!(client_config(&["h3".into(), "hq-interop".into()]).is_ok());
    }

    #[test]
    fn timeouts_and_resets_map_into_the_vocabulary() {
        assert_eq!(
            classify(&quinn::ConnectionError::TimedOut),
            "generic_timeout_error"
        );
        assert_eq!(classify(&quinn::ConnectionError::Reset), "connection_reset");
    }
}
