//! Deadline-bound socket operations the probes share, their errors mapped
//! into the failure vocabulary: a TCP connect and name resolution through
//! the system resolver. The target policy is not applied here: see
//! [`super::target`].

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use vantage_proto::failure::{self, classify_io, failure, op};
use vantage_proto::v1::Failure;

use super::ProbeContext;

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
