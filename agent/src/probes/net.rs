//! Deadline-bound socket operations the probes share, their errors mapped
//! into the failure vocabulary: a TCP connect, a write, a connected UDP
//! socket, waiting for a reply, and name resolution through the system
//! resolver. The target policy is not applied here: see `target.rs`.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use vantage_proto::failure::{self, classify_io, failure, op};
use vantage_proto::v1::Failure;

use super::{ProbeContext, Steps};

/// The unspecified address of `peer`'s family, port 0: where a socket that
/// talks to `peer` binds.
pub(crate) fn any_port_for(peer: SocketAddr) -> SocketAddr {
    let ip = match peer.ip() {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    SocketAddr::new(ip, 0)
}

/// `op` if it ends before the deadline, else `generic_timeout_error` with
/// `operation`.
pub(crate) async fn before_deadline<T>(
    ctx: &ProbeContext,
    operation: &str,
    op: impl Future<Output = Result<T, Failure>>,
) -> Result<T, Failure> {
    match tokio::time::timeout(ctx.remaining(), op).await {
        Err(_) => Err(failure(failure::GENERIC_TIMEOUT, operation)),
        Ok(r) => r,
    }
}

/// The failure for an I/O error during `operation`.
pub(crate) fn io_failure(operation: &str) -> impl Fn(std::io::Error) -> Failure + '_ {
    move |e| failure(&classify_io(&e), operation)
}

/// Writes all of `data` before the deadline; a failure carries `write`.
pub(crate) async fn write_all<W: AsyncWrite + Unpin>(
    w: &mut W,
    data: &[u8],
    ctx: &ProbeContext,
) -> Result<(), Failure> {
    before_deadline(ctx, op::WRITE, async {
        w.write_all(data).await.map_err(io_failure(op::WRITE))
    })
    .await
}

/// A UDP socket connected to `peer` (the step `connect`; Linux then reports
/// ICMP errors for it), with `packet` sent (the step `write`).
pub(crate) async fn udp_send(
    peer: SocketAddr,
    packet: &[u8],
    steps: &mut Steps,
) -> Result<UdpSocket, Failure> {
    let sock = steps
        .run("connect", async {
            let sock = UdpSocket::bind(any_port_for(peer))
                .await
                .map_err(io_failure(op::CONNECT))?;
            sock.connect(peer).await.map_err(io_failure(op::CONNECT))?;
            Ok(sock)
        })
        .await?;
    steps
        .run("write", async {
            sock.send(packet).await.map_err(io_failure(op::WRITE))
        })
        .await?;
    Ok(sock)
}

/// Waits before the deadline for `reply` to find the answer it looks for,
/// the step `read`: the time since `sent` in µs, or the failure (none in
/// time: `generic_timeout_error` / `read`).
pub(crate) async fn await_reply(
    sent: Instant,
    ctx: &ProbeContext,
    steps: &mut Steps,
    reply: impl Future<Output = Result<(), Failure>>,
) -> Result<i64, Failure> {
    let rtt = async {
        reply.await?;
        Ok(sent.elapsed().as_micros() as i64)
    };
    steps.run("read", before_deadline(ctx, op::READ, rtt)).await
}
/// Connects within `budget`; returns the stream and the connect time in µs.
pub(crate) async fn connect(
    addr: SocketAddr,
    budget: Duration,
) -> Result<(TcpStream, i64), Failure> {
    let started = Instant::now();
    match tokio::time::timeout(budget, TcpStream::connect(addr)).await {
        Err(_) => Err(failure(failure::GENERIC_TIMEOUT, op::CONNECT)),
        Ok(Err(e)) => Err(failure(&classify_io(&e), op::CONNECT)),
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            Ok((s, started.elapsed().as_micros() as i64))
        }
    }
}

/// Resolves `host` with the system resolver (getaddrinfo) within the
/// deadline. Returns the addresses in the resolver's order, deduplicated.
/// The policy is NOT applied here: callers check each address before use.
pub(crate) async fn resolve_system(host: &str, ctx: &ProbeContext) -> Result<Vec<IpAddr>, Failure> {
    let lookup = tokio::net::lookup_host((host.to_string(), 0u16));
    match tokio::time::timeout(ctx.remaining(), lookup).await {
        Err(_) => Err(failure(failure::GENERIC_TIMEOUT, op::RESOLVE)),
        Ok(Err(e)) => Err(failure(&classify_resolve(&e), op::RESOLVE)),
        Ok(Ok(it)) => {
            let mut out: Vec<IpAddr> = Vec::new();
            for sa in it {
                if !out.contains(&sa.ip()) {
                    out.push(sa.ip());
                }
            }
            if out.is_empty() {
                Err(failure(failure::DNS_NO_ANSWER, op::RESOLVE))
            } else {
                Ok(out)
            }
        }
    }
}

/// Maps a getaddrinfo error (only its message is available) to the vocabulary.
fn classify_resolve(e: &std::io::Error) -> String {
    let msg = e.to_string().to_ascii_lowercase();
    if msg.contains("name or service not known") || msg.contains("not known") {
        failure::DNS_NXDOMAIN.into()
    } else if msg.contains("no address associated") {
        failure::DNS_NO_ANSWER.into()
    } else if msg.contains("temporary failure") {
        failure::DNS_SERVFAIL.into()
    } else {
        format!("unknown_failure: {e}")
    }
}
