//! `http` probe: a GET over the probe's own TCP (and TLS for https) stream,
//! with the IP to connect to, the Host header and the SNI chosen
//! independently. Records every hop of the redirect chain: status, headers,
//! body length, body SHA-256, `<title>` and whether the body was truncated at
//! the byte cap, with the time the body took (a throttle shows as a low
//! rate). TLS is verified as a browser would: a certificate WebPKI rejects
//! ends the chain with its `ssl_*` failure at `tls_handshake` (the chain,
//! issuer and key are still recorded), so interception and broken sites
//! are failures, never a page. A redirect loop, or a chain longer than
//! `max_redirects`, ends with `http_too_many_redirects`.
//!
//! Target policy (see `target.rs`): a forbidden literal `ip` in the
//! input, or a forbidden literal host in the first URL, is a refusal. An
//! address found by resolving a name, or a redirect target, that the policy
//! forbids ends the chain with `unknown_failure: forbidden_target: ...`
//! (operation `connect`); the hops fetched so far are kept.

use std::net::IpAddr;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper::{header, Request};
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use vantage_proto::failure::{self, classify_io, failure, op};
use vantage_proto::v1::{measurement, Failure, HttpHeader, HttpInput, HttpResponse, HttpResult};

use super::target::{self, parse_ip, UrlTarget};
use super::{measured, tls, ProbeContext, Probed, Steps};

/// Redirects followed when the input says 0: OONI's Go client stops
/// after 10 (browsers after 20). Running out is the failure
/// `http_too_many_redirects`, never success.
const DEFAULT_MAX_REDIRECTS: u32 = 10;
/// How much of the body is searched for a `<title>`.
const TITLE_SCAN_BYTES: usize = 64 * 1024;
/// Body bytes kept as `body_head` on the final response (block-page
/// fingerprints are matched against it).
const BODY_HEAD_BYTES: usize = 4 * 1024;
/// Longest title kept.
const TITLE_MAX_CHARS: usize = 256;

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Runs the `http` probe.
pub async fn run(input: &HttpInput, ctx: &ProbeContext) -> Probed {
    let mut steps = Steps::new();
    let r = fetch(input, None, ctx, &mut steps).await?;
    measured(measurement::Result::Http(r), steps)
}

/// Fetches `input.url` and follows redirects. `first` is an already connected
/// stream for the first hop (used by `web`). `Err` is a refusal reason.
pub(crate) async fn fetch(
    input: &HttpInput,
    first: Option<(IpAddr, TcpStream)>,
    ctx: &ProbeContext,
    steps: &mut Steps,
) -> Result<HttpResult, String> {
    let (result, _) = fetch_keeping(input, first, ctx, steps, TITLE_SCAN_BYTES).await?;
    Ok(result)
}

/// [`fetch`], also returning the first `keep` bytes of the final response's
/// body (empty when no response came): for probes that read what the
/// page says (`app_store`), within the same caps.
pub(crate) async fn fetch_keeping(
    input: &HttpInput,
    first: Option<(IpAddr, TcpStream)>,
    ctx: &ProbeContext,
    steps: &mut Steps,
    keep: usize,
) -> Result<(HttpResult, Vec<u8>), String> {
    let mut target = UrlTarget::parse(&input.url)?;
    // The IP to connect to for the first hop: the input's, else the URL's
    // literal host (both checked by the policy: a refusal), else resolved.
    let fixed = if input.ip.is_empty() {
        target::literal(&target.host, &ctx.policy)?;
        None
    } else {
        let ip = target::literal(&input.ip, &ctx.policy)?.ok_or_else(|| {
            format!(
                "malformed_input: http ip {:?} is not an IP address",
                input.ip
            )
        })?;
        Some(ip)
    };
    target.port = target::port("http", input.port, Some(target.port))?;
    let max_redirects = if input.max_redirects == 0 {
        DEFAULT_MAX_REDIRECTS
    } else {
        input.max_redirects
    };
    let max_body = if input.max_body_bytes == 0 {
        ctx.max_read_bytes
    } else {
        input.max_body_bytes.min(ctx.max_read_bytes)
    };

    let mut result = HttpResult::default();
    let mut kept = Vec::new();
    let mut first = first;
    let mut hop = 0u32;
    let first_host = target.host.to_ascii_lowercase();
    let mut visited: std::collections::HashSet<String> = std::collections::HashSet::new();
    loop {
        visited.insert(target.url.clone());
        // The input's overrides (ip, Host header, SNI) apply to the first hop
        // and to redirects that stay on the same host name; a redirect to
        // another host is resolved afresh and checked by the policy.
        let is_first = hop == 0 || target.host.eq_ignore_ascii_case(&first_host);
        let host_header = if is_first && !input.host_header.is_empty() {
            input.host_header.clone()
        } else {
            target.authority()
        };
        let sni = if is_first && !input.sni.is_empty() {
            input.sni.clone()
        } else if parse_ip(&target.host).is_some() {
            String::new()
        } else {
            target.host.clone()
        };
        // Connect.
        let (ip, stream) = match first.take() {
            Some(pre) => pre,
            None => {
                let fixed = if is_first { fixed } else { None };
                match connect_hop(&target, fixed, ctx, steps).await {
                    Ok(c) => c,
                    Err(f) => {
                        result.failure = Some(f);
                        return Ok((result, kept));
                    }
                }
            }
        };
        // TLS.
        let io: Box<dyn Io> = if target.https {
            let started = Instant::now();
            let alpn = vec!["http/1.1".to_string()];
            let (hs, tls_stream) =
                tls::handshake(stream, ip, &sni, &alpn, ctx.remaining(), true).await;
            steps.record("tls_handshake", started, hs.failure.clone());
            let hs_failure = hs.failure.clone();
            if result.tls.is_none() {
                result.tls = Some(hs);
            }
            match tls_stream {
                Some(s) => Box::new(s),
                None => {
                    result.failure = hs_failure;
                    return Ok((result, kept));
                }
            }
        } else {
            Box::new(stream)
        };
        // Round trip.
        let (resp, next) =
            match round_trip(io, &target, &host_header, max_body, keep, ctx, steps).await {
                Ok(r) => r,
                Err(f) => {
                    result.failure = Some(f);
                    return Ok((result, kept));
                }
            };
        let read_failure = resp.1.clone();
        if let Some(prev) = result.chain.last_mut() {
            // Only the final response keeps its body head.
            prev.body_head.clear();
        }
        result.chain.push(resp.0);
        kept = resp.2;
        if let Some(f) = read_failure {
            result.failure = Some(f);
            return Ok((result, kept));
        }
        let Some(location) = next else {
            return Ok((result, kept));
        };
        let next = match target.redirect(&location) {
            Ok(t) => t,
            Err(reason) => {
                result.failure = Some(failure(
                    &format!("unknown_failure: bad redirect: {reason}"),
                    op::HTTP_ROUND_TRIP,
                ));
                return Ok((result, kept));
            }
        };
        // A loop never ends, and a chain past the limit never reached a
        // page: both are a failure with its own name.
        if hop >= max_redirects || visited.contains(&next.url) {
            result.failure = Some(failure(failure::TOO_MANY_REDIRECTS, op::HTTP_ROUND_TRIP));
            return Ok((result, kept));
        }
        target = next;
        hop += 1;
    }
}

/// Finds the addresses for a hop (the fixed IP, the literal host, or the
/// system resolver), applies the policy to each and connects to the first
/// that answers.
async fn connect_hop(
    target: &UrlTarget,
    fixed: Option<IpAddr>,
    ctx: &ProbeContext,
    steps: &mut Steps,
) -> Result<(IpAddr, TcpStream), Failure> {
    let addrs = match fixed.or_else(|| parse_ip(&target.host)) {
        Some(ip) => vec![ip],
        None => target::resolve(&target.host, ctx, steps).await?,
    };
    let (attempts, stream) = target::connect_first(&addrs, target.port, ctx, steps).await;
    stream.ok_or_else(|| target::last_failure(&attempts))
}

/// Maps a hyper error to the vocabulary with the given operation.
pub(crate) fn classify_hyper(e: &hyper::Error, operation: &str) -> Failure {
    let mut src: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = src {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return failure(&classify_io(io), operation);
        }
        src = s.source();
    }
    if e.is_incomplete_message() {
        failure(failure::EOF, operation)
    } else if e.is_timeout() {
        failure(failure::GENERIC_TIMEOUT, operation)
    } else {
        failure(&format!("unknown_failure: {e}"), operation)
    }
}

/// A recorded response, the failure while reading its body (if any), the
/// body's first bytes as kept, and the redirect location to follow (if any).
type HopOutcome = ((HttpResponse, Option<Failure>, Vec<u8>), Option<String>);

async fn round_trip(
    io: Box<dyn Io>,
    target: &UrlTarget,
    host_header: &str,
    max_body: u64,
    keep: usize,
    ctx: &ProbeContext,
    steps: &mut Steps,
) -> Result<HopOutcome, Failure> {
    let started = Instant::now();
    let timeout_rt = || failure(failure::GENERIC_TIMEOUT, op::HTTP_ROUND_TRIP);
    let (mut sender, conn) = match tokio::time::timeout(
        ctx.remaining(),
        http1::Builder::new()
            .title_case_headers(true)
            .handshake(TokioIo::new(io)),
    )
    .await
    {
        Err(_) => return Err(timeout_rt()),
        Ok(Err(e)) => return Err(classify_hyper(&e, op::HTTP_ROUND_TRIP)),
        Ok(Ok(x)) => x,
    };
    let driver = tokio::spawn(conn);
    let req = Request::get(target.path.as_str())
        .header(header::HOST, host_header)
        .header(header::USER_AGENT, vantage_proto::SOFTWARE_VERSION)
        .header(header::ACCEPT, "*/*")
        .body(Empty::<Bytes>::new());
    let req = match req {
        Ok(r) => r,
        Err(e) => {
            driver.abort();
            let f = failure(
                &format!("unknown_failure: request: {e}"),
                op::HTTP_ROUND_TRIP,
            );
            steps.record("http_round_trip", started, Some(f.clone()));
            return Err(f);
        }
    };
    let resp = match tokio::time::timeout(ctx.remaining(), sender.send_request(req)).await {
        Err(_) => Err(timeout_rt()),
        Ok(Err(e)) => Err(classify_hyper(&e, op::HTTP_ROUND_TRIP)),
        Ok(Ok(r)) => Ok(r),
    };
    let resp = match resp {
        Ok(r) => r,
        Err(f) => {
            driver.abort();
            steps.record("http_round_trip", started, Some(f.clone()));
            return Err(f);
        }
    };
    steps.record("http_round_trip", started, None);

    let mut rec = HttpResponse {
        url: target.url.clone(),
        status: resp.status().as_u16().into(),
        headers: resp
            .headers()
            .iter()
            .map(|(n, v)| HttpHeader {
                name: n.as_str().to_string(),
                value: String::from_utf8_lossy(v.as_bytes()).into_owned(),
            })
            .collect(),
        ..Default::default()
    };
    let location = if resp.status().is_redirection() {
        resp.headers()
            .get(header::LOCATION)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    } else {
        None
    };

    // Body, capped. Its duration, with its length, is the transfer rate.
    let started = Instant::now();
    let mut body = resp.into_body();
    let mut hasher = Sha256::new();
    let mut kept: Vec<u8> = Vec::new();
    let mut total: u64 = 0;
    let mut read_failure = None;
    loop {
        let frame = match tokio::time::timeout(ctx.remaining(), body.frame()).await {
            Err(_) => {
                read_failure = Some(failure(failure::GENERIC_TIMEOUT, op::READ));
                break;
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                read_failure = Some(classify_hyper(&e, op::READ));
                break;
            }
            Ok(Some(Ok(f))) => f,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let room = max_body.saturating_sub(total);
        let take = (data.len() as u64).min(room) as usize;
        hasher.update(&data[..take]);
        if kept.len() < keep {
            let k = take.min(keep - kept.len());
            kept.extend_from_slice(&data[..k]);
        }
        total += take as u64;
        if take < data.len() {
            rec.body_truncated = true;
            break;
        }
    }
    driver.abort();
    rec.body_us = started.elapsed().as_micros() as i64;
    steps.record("read", started, read_failure.clone());
    rec.body_length = total;
    rec.body_sha256 = hex::encode(hasher.finalize());
    rec.title = extract_title(&kept[..kept.len().min(TITLE_SCAN_BYTES)]);
    rec.body_head = head_text(&kept[..kept.len().min(BODY_HEAD_BYTES)]);
    Ok(((rec, read_failure, kept), location))
}

/// Lossy UTF-8 of a body head, cut at a character boundary (a multi-byte
/// character split by the cap is dropped, not shown as a replacement).
fn head_text(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        Err(e) if e.error_len().is_none() => {
            String::from_utf8_lossy(&bytes[..e.valid_up_to()]).into_owned()
        }
        Err(_) => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// The text of the first `<title>` element, whitespace-collapsed.
fn extract_title(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let lower = text.to_ascii_lowercase();
    let Some(open) = lower.find("<title") else {
        return String::new();
    };
    let Some(gt) = lower[open..].find('>') else {
        return String::new();
    };
    let start = open + gt + 1;
    let end = lower[start..]
        .find("</title")
        .map(|e| start + e)
        .unwrap_or(lower.len());
    text.get(start..end)
        .unwrap_or("")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(TITLE_MAX_CHARS)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probes::test_support::{assert_forbidden_refusal, strict_ctx};
    use std::time::Duration;

    #[test]
    fn titles_are_extracted() {
        assert_eq!(
            extract_title(b"<html><TITLE>\n Blocked  page </title>"),
            "Blocked page"
        );
        assert_eq!(extract_title(b"no title here"), "");
        assert_eq!(extract_title(b"<title>unterminated"), "unterminated");
    }

    #[tokio::test]
    async fn forbidden_first_hop_is_refused() {
        let input = HttpInput {
            url: "http://127.0.0.1/".into(),
            ..Default::default()
        };
        assert_forbidden_refusal(&run(&input, &strict_ctx(Duration::from_secs(2))).await);
    }

    #[tokio::test]
    async fn forbidden_redirect_target_fails_without_connecting() {
        let ctx = strict_ctx(Duration::from_secs(2));
        let first = UrlTarget::parse("http://example.org/").unwrap();
        let next = first.redirect("http://10.0.0.1/admin").unwrap();
        let mut steps = Steps::new();
        let err = connect_hop(&next, None, &ctx, &mut steps)
            .await
            .expect_err("10.0.0.1 must be refused");
        assert_eq!(err.operation, "connect");
        assert!(
            err.failure
                .starts_with("unknown_failure: forbidden_target: 10.0.0.1"),
            "{}",
            err.failure
        );
    }
}
