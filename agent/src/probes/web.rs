//! `web` probe: the web-connectivity composite for one URL. DNS (our own UDP
//! query to the given resolver, or the system one, recording every reply) ->
//! TCP to each resolved address until one connects -> TLS for https -> HTTP
//! GET with redirects, all into one `WebResult`. `failure` is the first
//! failure on the path that stopped the measurement.
//!
//! Target policy (same rule as `tcp.rs`): a forbidden resolver or a forbidden
//! literal IP host in the URL is a refusal; a forbidden resolved address or
//! redirect target is a `Failure` (`unknown_failure: forbidden_target: ...`,
//! operation `connect`).

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use hyper::Uri;
use vantage_proto::failure::{self, failure, op};
use vantage_proto::v1::{measurement, DnsInput, HttpInput, TcpResult, WebInput, WebResult};

use super::{dns, http, tcp, ProbeContext, ProbeOutput, Steps};

/// How long the DNS step keeps listening for extra (injected) replies.
const WEB_DNS_LISTEN_MS: u32 = 500;

/// Runs the `web` probe.
pub async fn run(input: &WebInput, ctx: &ProbeContext) -> ProbeOutput {
    tcp::within_deadline(ctx, run_inner(input, ctx), |f| {
        measurement::Result::Web(WebResult {
            failure: Some(f),
            ..Default::default()
        })
    })
    .await
}

async fn run_inner(input: &WebInput, ctx: &ProbeContext) -> ProbeOutput {
    let mut steps = Steps::new();
    match measure(input, ctx, &mut steps).await {
        Ok(r) => ProbeOutput {
            result: measurement::Result::Web(r),
            steps: steps.into_vec(),
        },
        Err(reason) => ProbeOutput::refused(reason),
    }
}

async fn measure(
    input: &WebInput,
    ctx: &ProbeContext,
    steps: &mut Steps,
) -> Result<WebResult, String> {
    let uri: Uri = input
        .url
        .parse()
        .map_err(|e| format!("malformed_input: bad url {:?}: {e}", input.url))?;
    let https = match uri.scheme_str() {
        Some(s) if s.eq_ignore_ascii_case("http") => false,
        Some(s) if s.eq_ignore_ascii_case("https") => true,
        _ => {
            return Err(format!(
                "malformed_input: url {:?} is not http(s)",
                input.url
            ))
        }
    };
    let host = uri
        .host()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| format!("malformed_input: url {:?} has no host", input.url))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let mut result = WebResult::default();

    // DNS.
    let addrs: Vec<IpAddr> = match tcp::parse_ip(&host) {
        Some(ip) => {
            ctx.policy.check(ip)?;
            vec![ip]
        }
        None => {
            let dns_input = DnsInput {
                domain: host.clone(),
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
    let mut connected = None;
    for ip in addrs {
        let mut t = TcpResult {
            ip: ip.to_string(),
            port: port.into(),
            ..Default::default()
        };
        let started = Instant::now();
        if let Err(reason) = ctx.policy.check(ip) {
            t.failure = Some(tcp::forbidden(&reason));
            steps.record("connect", started, t.failure.clone());
            result.tcp.push(t);
            continue;
        }
        match tcp::connect(SocketAddr::new(ip, port), ctx.remaining()).await {
            Ok((s, us)) => {
                steps.record("connect", started, None);
                t.connect_us = us;
                result.tcp.push(t);
                connected = Some((ip, s));
                break;
            }
            Err(f) => {
                steps.record("connect", started, Some(f.clone()));
                t.failure = Some(f);
                result.tcp.push(t);
            }
        }
        if ctx.remaining().is_zero() {
            break;
        }
    }
    let Some((ip, stream)) = connected else {
        result.failure = result
            .tcp
            .last()
            .and_then(|t| t.failure.clone())
            .or_else(|| Some(failure(failure::GENERIC_TIMEOUT, op::CONNECT)));
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
