//! `tcp` probe: connect to host:port and record how long the handshake took
//! or how it failed (refused, reset, blackholed, unreachable).
//!
//! Also owns the helpers the other core probes (tls, http, web, dns over TCP)
//! share: name resolution through the system resolver with every address
//! checked by the target policy, and a deadline-bound connect that maps errors
//! into the failure vocabulary.
//!
//! Target-policy rule for the core probes (dns, dns_injection, tcp, tls,
//! http, web): an address written literally in the input that the policy
//! forbids makes the probe a [`ProbeOutput::refused`] before any packet is
//! sent. An address discovered while probing (a resolved name, a redirect
//! target) that the policy forbids is a `Failure` with
//! `unknown_failure: forbidden_target: ...` and the operation that would have
//! used it (`connect`), so the data gathered so far is kept.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use vantage_proto::failure::{self, classify_io, failure, op};
use vantage_proto::v1::{measurement, Failure, TcpInput, TcpResult};

use super::{ProbeContext, ProbeOutput, Steps};

/// Runs the `tcp` probe.
pub async fn run(input: &TcpInput, ctx: &ProbeContext) -> ProbeOutput {
    within_deadline(ctx, run_inner(input, ctx), |f| {
        measurement::Result::Tcp(TcpResult {
            ip: input.host.clone(),
            port: input.port,
            failure: Some(f),
            ..Default::default()
        })
    })
    .await
}

async fn run_inner(input: &TcpInput, ctx: &ProbeContext) -> ProbeOutput {
    let mut steps = Steps::new();
    let port = match u16::try_from(input.port) {
        Ok(p) if p != 0 => p,
        _ => return ProbeOutput::refused("malformed_input: tcp port must be 1-65535"),
    };
    let host = input.host.trim();
    if host.is_empty() {
        return ProbeOutput::refused("malformed_input: tcp host is empty");
    }
    let mut result = TcpResult {
        port: input.port,
        ..Default::default()
    };
    let addrs: Vec<IpAddr> = match parse_ip(host) {
        Some(ip) => {
            if let Err(reason) = ctx.policy.check(ip) {
                return ProbeOutput::refused(reason);
            }
            vec![ip]
        }
        None => {
            let started = Instant::now();
            match resolve_system(host, ctx).await {
                Ok(list) => {
                    steps.record("resolve", started, None);
                    result.resolved = list.iter().map(|a| a.to_string()).collect();
                    list
                }
                Err(f) => {
                    steps.record("resolve", started, Some(f.clone()));
                    result.ip = String::new();
                    result.failure = Some(f);
                    return finish(result, steps);
                }
            }
        }
    };
    for ip in addrs {
        result.ip = ip.to_string();
        if let Err(reason) = ctx.policy.check(ip) {
            let f = forbidden(&reason);
            steps.record("connect", Instant::now(), Some(f.clone()));
            result.failure = Some(f);
            continue;
        }
        let started = Instant::now();
        match connect(SocketAddr::new(ip, port), ctx.remaining()).await {
            Ok((_stream, us)) => {
                steps.record("connect", started, None);
                result.connect_us = us;
                result.failure = None;
                break;
            }
            Err(f) => {
                steps.record("connect", started, Some(f.clone()));
                result.failure = Some(f);
            }
        }
        if ctx.remaining().is_zero() {
            break;
        }
    }
    finish(result, steps)
}

/// How long after the deadline [`within_deadline`]'s guard fires.
const DEADLINE_GRACE: std::time::Duration = std::time::Duration::from_millis(250);

/// The safety net every core probe runs under: the whole probe is cut
/// [`DEADLINE_GRACE`] after `ctx.deadline`, whatever the per-operation
/// timeouts did. (Per-operation timeouts use the deadline itself, so they
/// fire first and keep the partial data and the step that timed out; this
/// only guards against a missed one.)
pub(crate) async fn within_deadline<F>(
    ctx: &ProbeContext,
    fut: F,
    on_timeout: impl FnOnce(Failure) -> measurement::Result,
) -> ProbeOutput
where
    F: std::future::Future<Output = ProbeOutput>,
{
    // The guard fires a little after the deadline, so the per-operation
    // timeouts (at the deadline) win the race and keep the partial data
    // and the step that was running.
    let guard = ctx.deadline + DEADLINE_GRACE;
    match tokio::time::timeout_at(tokio::time::Instant::from_std(guard), fut).await {
        Ok(out) => out,
        Err(_) => ProbeOutput {
            result: on_timeout(failure(failure::GENERIC_TIMEOUT, op::CONNECT)),
            steps: Vec::new(),
        },
    }
}

fn finish(result: TcpResult, steps: Steps) -> ProbeOutput {
    ProbeOutput {
        result: measurement::Result::Tcp(result),
        steps: steps.into_vec(),
    }
}

/// Parses an IP literal, also in `[v6]` form.
pub(crate) fn parse_ip(host: &str) -> Option<IpAddr> {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.parse().ok()
}

/// The failure for an address the policy refused while probing.
pub(crate) fn forbidden(reason: &str) -> Failure {
    failure(&format!("unknown_failure: {reason}"), op::CONNECT)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probes::TargetPolicy;

    #[tokio::test]
    async fn literal_forbidden_target_is_refused() {
        let ctx = ProbeContext::with_budget(TargetPolicy::default(), Duration::from_secs(2));
        let out = run(
            &TcpInput {
                host: "127.0.0.1".into(),
                port: 80,
            },
            &ctx,
        )
        .await;
        match out.result {
            measurement::Result::Refused(r) => {
                assert!(r.reason.starts_with("forbidden_target: "), "{}", r.reason)
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn loopback_connect_refused_is_classified() {
        let ctx = ProbeContext::with_budget(
            TargetPolicy {
                allow_private_targets: true,
            },
            Duration::from_secs(2),
        );
        // Bind then drop to find a port nobody listens on.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let out = run(
            &TcpInput {
                host: "127.0.0.1".into(),
                port: port.into(),
            },
            &ctx,
        )
        .await;
        match out.result {
            measurement::Result::Tcp(t) => {
                let f = t.failure.expect("a failure");
                assert_eq!(f.failure, "connection_refused");
                assert_eq!(f.operation, "connect");
            }
            other => panic!("expected tcp, got {other:?}"),
        }
    }
}
