//! `web` probe: the web-connectivity composite for one URL. DNS (our own UDP
//! query to the given resolver, or the system one, recording every reply) ->
//! TCP to each resolved address until one connects -> TLS for https -> HTTP
//! GET with redirects, all into one `WebResult`. `failure` is the first
//! failure on the path that stopped the measurement.
//!
//! Target policy (see `target.rs`): a forbidden resolver or a forbidden
//! literal IP host in the URL is a refusal; a forbidden resolved address or
//! redirect target is a `Failure` (`unknown_failure: forbidden_target: ...`,
//! operation `connect`).

use std::net::IpAddr;

use vantage_proto::failure::{self, failure, op};
use vantage_proto::v1::{measurement, DnsInput, HttpInput, TcpResult, WebInput, WebResult};

use super::target::{self, UrlTarget};
use super::{dns, http, measured, ProbeContext, Probed, Steps};

/// How long the DNS step keeps listening for extra (injected) replies.
const WEB_DNS_LISTEN_MS: u32 = 500;

/// Runs the `web` probe.
pub async fn run(input: &WebInput, ctx: &ProbeContext) -> Probed {
    let mut steps = Steps::new();
    let r = measure(input, ctx, &mut steps).await?;
    measured(measurement::Result::Web(r), steps)
}

async fn measure(
    input: &WebInput,
    ctx: &ProbeContext,
    steps: &mut Steps,
) -> Result<WebResult, String> {
    let url = UrlTarget::parse(&input.url)?;
    let mut result = WebResult::default();

    // DNS.
    let addrs: Vec<IpAddr> = match target::literal(&url.host, &ctx.policy)? {
        Some(ip) => vec![ip],
        None => {
            let dns_input = DnsInput {
                domain: url.host.clone(),
                resolver: input.resolver.clone(),
                qtype: "A".into(),
                transport: "udp".into(),
                listen_ms: WEB_DNS_LISTEN_MS,
                ..Default::default()
            };
            let r = dns::query(&dns_input, ctx, steps).await?;
            let addrs = dns::first_addresses(&r);
            let dns_failure = r.failure.clone();
            result.dns = Some(r);
            if addrs.is_empty() {
                result.failure = Some(
                    dns_failure.unwrap_or_else(|| failure(failure::DNS_NO_ANSWER, op::RESOLVE)),
                );
                return Ok(result);
            }
            addrs
        }
    };

    // TCP, address by address.
    let (attempts, connected) = target::connect_first(&addrs, url.port, ctx, steps).await;
    let unconnected = target::last_failure(&attempts);
    result.tcp = attempts
        .into_iter()
        .map(|a| tcp_result(a, url.port))
        .collect();
    let Some((ip, stream)) = connected else {
        result.failure = Some(unconnected);
        return Ok(result);
    };

    // TLS + HTTP over the connected stream.
    let http_input = HttpInput {
        url: input.url.clone(),
        ip: ip.to_string(),
        ..Default::default()
    };
    let h = http::fetch(&http_input, Some((ip, stream)), ctx, steps).await?;
    result.tls = h.tls.clone();
    result.failure = h.failure.clone();
    result.http = Some(h);
    Ok(result)
}

/// One connection attempt as the web result records it.
fn tcp_result(a: target::Attempt, port: u16) -> TcpResult {
    TcpResult {
        ip: a.ip.to_string(),
        port: port.into(),
        connect_us: *a.outcome.as_ref().unwrap_or(&0),
        failure: a.outcome.err(),
        ..Default::default()
    }
}
