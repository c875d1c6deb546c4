//! `dns` and `dns_injection` probes.
//!
//! `dns` sends one A/AAAA query from the probe's own socket and, over UDP,
//! keeps listening for `listen_ms` after the first reply, recording EVERY
//! reply (arrival offset, rcode, answers with TTLs, source, malformed flag), so
//! an injected answer shows up next to the genuine one. It also speaks DNS
//! over TCP (length-prefixed) and DoH (RFC 8484 POST over hyper + rustls).
//! The failure is derived from the first well-formed reply.
//!
//! `dns_injection` sends the same UDP query to an address that runs no DNS
//! server: any reply proves on-path injection; no reply is the clean outcome
//! and is recorded as `generic_timeout_error`.
//!
//! The IP TTL of replies is not read (the safe socket APIs do not expose
//! IP_RECVTTL ancillary data): `ip_ttl` is always 0.
//!
//! Target policy (see `target.rs`): a forbidden resolver address (or a
//! forbidden literal DoH host) is a refusal; a forbidden address the DoH
//! host name resolves to is a `Failure` (`unknown_failure: forbidden_target:
//! ...`, operation `connect`). Answers are data and are not checked.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hickory_proto::op::{Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::{header, Request, Uri};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncReadExt;
use tokio::net::UdpSocket;
use vantage_proto::failure::{self, classify_io, failure, op};
use vantage_proto::v1::{measurement, DnsAnswer, DnsInput, DnsReply, DnsResult, Failure};

use super::target::{self, parse_resolver};
use super::{http, measured, net, tls, ProbeContext, Probed, Steps};

/// How long UDP listens after the first reply when the input says 0.
const DEFAULT_LISTEN_MS: u32 = 1000;
/// Largest DNS message we read.
const MAX_MESSAGE: usize = 65535;
/// Where the system resolver is configured.
const RESOLV_CONF: &str = "/etc/resolv.conf";

/// Runs the `dns` probe.
pub async fn run(input: &DnsInput, ctx: &ProbeContext) -> Probed {
    let mut steps = Steps::new();
    let r = query(input, ctx, &mut steps).await?;
    measured(measurement::Result::Dns(r), steps)
}

/// Runs the `dns_injection` probe: UDP only, to an explicit address.
pub async fn run_injection(input: &DnsInput, ctx: &ProbeContext) -> Probed {
    if input.resolver.trim().is_empty() {
        return Err(
            "malformed_input: dns_injection needs the address of a host that runs no DNS server"
                .into(),
        );
    }
    let mut steps = Steps::new();
    let udp_input = DnsInput {
        transport: "udp".into(),
        ..input.clone()
    };
    let mut r = query(&udp_input, ctx, &mut steps).await?;
    // Any reply at all is the finding; the rcode of a forged reply is not a
    // failure of this probe.
    r.failure = if r.replies.is_empty() {
        Some(failure(failure::GENERIC_TIMEOUT, op::RESOLVE))
    } else {
        None
    };
    measured(measurement::Result::DnsInjection(r), steps)
}

/// The first `nameserver` of /etc/resolv.conf.
fn system_resolver() -> Option<SocketAddr> {
    let text = std::fs::read_to_string(RESOLV_CONF).ok()?;
    text.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        match (it.next(), it.next()) {
            (Some("nameserver"), Some(addr)) => {
                // Drop a zone index ("fe80::1%eth0"): not representable here.
                let addr = addr.split('%').next().unwrap_or(addr);
                addr.parse::<IpAddr>()
                    .ok()
                    .map(|ip| SocketAddr::new(ip, 53))
            }
            _ => None,
        }
    })
}

fn qtype_of(input: &DnsInput) -> Result<RecordType, String> {
    match input.qtype.trim().to_ascii_uppercase().as_str() {
        "" | "A" => Ok(RecordType::A),
        "AAAA" => Ok(RecordType::AAAA),
        other => Err(format!("malformed_input: qtype {other:?} (use A or AAAA)")),
    }
}

/// Encodes a recursive query; returns (id, wire bytes).
fn encode_query(domain: &str, qtype: RecordType, id: u16) -> Result<Vec<u8>, String> {
    let mut name = Name::from_ascii(domain.trim())
        .map_err(|e| format!("malformed_input: domain {domain:?}: {e}"))?;
    name.set_fqdn(true);
    let mut msg = Message::new(id, MessageType::Query, hickory_proto::op::OpCode::Query);
    msg.metadata.recursion_desired = true;
    msg.add_query(Query::query(name, qtype));
    msg.to_vec()
        .map_err(|e| format!("malformed_input: cannot encode query for {domain:?}: {e}"))
}

fn rcode_name(rc: ResponseCode) -> String {
    match u16::from(rc) {
        0 => "NOERROR".into(),
        1 => "FORMERR".into(),
        2 => "SERVFAIL".into(),
        3 => "NXDOMAIN".into(),
        4 => "NOTIMP".into(),
        5 => "REFUSED".into(),
        6 => "YXDOMAIN".into(),
        7 => "YXRRSET".into(),
        8 => "NXRRSET".into(),
        9 => "NOTAUTH".into(),
        10 => "NOTZONE".into(),
        n => format!("RCODE{n}"),
    }
}

/// Decodes one reply. A reply that does not parse, is not a response, or
/// carries another id is recorded with `malformed = true`.
fn decode_reply(
    buf: &[u8],
    id: u16,
    arrival_us: i64,
    source: String,
) -> (DnsReply, Option<Message>) {
    let mut reply = DnsReply {
        arrival_us,
        source,
        ..Default::default()
    };
    match Message::from_vec(buf) {
        Ok(msg) => {
            reply.rcode = rcode_name(msg.metadata.response_code);
            reply.answers = msg
                .answers
                .iter()
                .map(|r| DnsAnswer {
                    rtype: r.record_type().to_string(),
                    data: r.data.to_string(),
                    ttl: r.ttl,
                })
                .collect();
            if msg.metadata.id != id || msg.metadata.message_type != MessageType::Response {
                reply.malformed = true;
                (reply, None)
            } else {
                (reply, Some(msg))
            }
        }
        Err(_) => {
            reply.malformed = true;
            (reply, None)
        }
    }
}

/// Parses one reply as the probe does: what it records, and the failure a
/// well-formed reply means for an A (`aaaa = false`) or AAAA query. Public
/// for the fuzz target in `fuzz/`.
#[doc(hidden)]
pub fn parse_reply(buf: &[u8], id: u16, aaaa: bool) -> (DnsReply, Option<Failure>) {
    let (reply, msg) = decode_reply(buf, id, 0, String::new());
    let qtype = if aaaa {
        RecordType::AAAA
    } else {
        RecordType::A
    };
    let failure = msg.as_ref().and_then(|m| reply_failure(m, qtype));
    (reply, failure)
}

/// The failure a well-formed reply means for a query of `qtype`.
fn reply_failure(msg: &Message, qtype: RecordType) -> Option<Failure> {
    let f = match msg.metadata.response_code {
        ResponseCode::NoError => {
            if msg.answers.iter().any(|r| r.record_type() == qtype) {
                return None;
            }
            failure::DNS_NO_ANSWER.to_string()
        }
        ResponseCode::NXDomain => failure::DNS_NXDOMAIN.into(),
        ResponseCode::Refused => failure::DNS_REFUSED.into(),
        ResponseCode::ServFail => failure::DNS_SERVFAIL.into(),
        other => format!("unknown_failure: dns rcode {}", rcode_name(other)),
    };
    Some(failure(&f, op::RESOLVE))
}

/// Runs one query as `input` says. `Err` is a refusal reason.
pub(crate) async fn query(
    input: &DnsInput,
    ctx: &ProbeContext,
    steps: &mut Steps,
) -> Result<DnsResult, String> {
    let qtype = qtype_of(input)?;
    let transport = match input.transport.trim().to_ascii_lowercase().as_str() {
        "" | "udp" => "udp",
        "tcp" => "tcp",
        "doh" => "doh",
        other => return Err(format!("malformed_input: dns transport {other:?}")),
    };
    let mut result = DnsResult {
        transport: transport.into(),
        ..Default::default()
    };
    let started = Instant::now();
    if transport == "doh" {
        result.resolver = input.doh_url.clone();
        let wire = encode_query(&input.domain, qtype, 0)?;
        doh(&input.doh_url, &wire, qtype, ctx, &mut result).await?;
    } else {
        let resolver = if input.resolver.trim().is_empty() {
            system_resolver().ok_or_else(|| {
                format!("malformed_input: no resolver given and no nameserver in {RESOLV_CONF}")
            })?
        } else {
            parse_resolver(&input.resolver).ok_or_else(|| {
                format!(
                    "malformed_input: resolver {:?} is not ip[:port]",
                    input.resolver
                )
            })?
        };
        ctx.policy.check(resolver.ip())?;
        result.resolver = resolver.to_string();
        let id: u16 = rand::random();
        let wire = encode_query(&input.domain, qtype, id)?;
        if transport == "udp" {
            let listen = Duration::from_millis(u64::from(if input.listen_ms == 0 {
                DEFAULT_LISTEN_MS
            } else {
                input.listen_ms
            }));
            udp(resolver, &wire, id, qtype, listen, ctx, &mut result).await;
        } else {
            tcp_query(resolver, &wire, id, qtype, ctx, &mut result).await;
        }
    }
    steps.record("resolve", started, result.failure.clone());
    Ok(result)
}

/// Sends over UDP and records every reply until `listen` after the first.
async fn udp(
    resolver: SocketAddr,
    wire: &[u8],
    id: u16,
    qtype: RecordType,
    listen: Duration,
    ctx: &ProbeContext,
    result: &mut DnsResult,
) {
    let sock = match UdpSocket::bind(net::any_port_for(resolver)).await {
        Ok(s) => s,
        Err(e) => {
            result.failure = Some(failure(&classify_io(&e), op::WRITE));
            return;
        }
    };
    let hard = tokio::time::Instant::from_std(ctx.deadline);
    let sent = Instant::now();
    match tokio::time::timeout_at(hard, sock.send_to(wire, resolver)).await {
        Err(_) => {
            result.failure = Some(failure(failure::GENERIC_TIMEOUT, op::WRITE));
            return;
        }
        Ok(Err(e)) => {
            result.failure = Some(failure(&classify_io(&e), op::WRITE));
            return;
        }
        Ok(Ok(_)) => {}
    }
    let mut buf = vec![0u8; MAX_MESSAGE];
    let mut listen_until: Option<tokio::time::Instant> = None;
    let mut outcome: Option<Option<Failure>> = None;
    let mut read_error: Option<Failure> = None;
    let mut total: u64 = 0;
    loop {
        let until = listen_until.map_or(hard, |l| l.min(hard));
        match tokio::time::timeout_at(until, sock.recv_from(&mut buf)).await {
            Err(_) => break,
            Ok(Err(e)) => {
                // ICMP errors surface here on some systems; keep listening
                // for (possibly injected) replies unless the socket is broken.
                if e.kind() == std::io::ErrorKind::ConnectionRefused {
                    read_error = Some(failure(&classify_io(&e), op::READ));
                    continue;
                }
                read_error = Some(failure(&classify_io(&e), op::READ));
                break;
            }
            Ok(Ok((n, src))) => {
                let arrival = sent.elapsed().as_micros() as i64;
                let data = buf.get(..n).unwrap_or(&[]);
                let (reply, msg) = decode_reply(data, id, arrival, src.to_string());
                result.replies.push(reply);
                if let (None, Some(m)) = (&outcome, msg) {
                    outcome = Some(reply_failure(&m, qtype));
                }
                if listen_until.is_none() {
                    listen_until = Some(tokio::time::Instant::now() + listen);
                }
                total += n as u64;
                if total >= ctx.max_read_bytes {
                    break;
                }
            }
        }
    }
    result.failure = match outcome {
        Some(f) => f,
        None if !result.replies.is_empty() => Some(failure(
            "unknown_failure: only malformed dns replies",
            op::RESOLVE,
        )),
        None => Some(read_error.unwrap_or_else(|| failure(failure::GENERIC_TIMEOUT, op::RESOLVE))),
    };
}

/// Records the one reply of a TCP or DoH query (sent at `sent`), which
/// decides the failure: its own, or a malformed reply's.
fn record_only_reply(
    result: &mut DnsResult,
    buf: &[u8],
    id: u16,
    qtype: RecordType,
    sent: Instant,
    source: String,
) {
    let arrival = sent.elapsed().as_micros() as i64;
    let (reply, msg) = decode_reply(buf, id, arrival, source);
    result.replies.push(reply);
    result.failure = match msg {
        Some(m) => reply_failure(&m, qtype),
        None => Some(failure("unknown_failure: malformed dns reply", op::READ)),
    };
}

/// DNS over TCP: one length-prefixed query, one reply.
async fn tcp_query(
    resolver: SocketAddr,
    wire: &[u8],
    id: u16,
    qtype: RecordType,
    ctx: &ProbeContext,
    result: &mut DnsResult,
) {
    let (mut stream, _) = match net::connect(resolver, ctx.remaining()).await {
        Ok(s) => s,
        Err(f) => {
            result.failure = Some(f);
            return;
        }
    };
    let sent = Instant::now();
    let Ok(len) = u16::try_from(wire.len()) else {
        result.failure = Some(failure("unknown_failure: query too long", op::WRITE));
        return;
    };
    let mut framed = Vec::with_capacity(wire.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(wire);
    if let Err(f) = net::write_all(&mut stream, &framed, ctx).await {
        result.failure = Some(f);
        return;
    }
    let read = async {
        let mut lenb = [0u8; 2];
        stream.read_exact(&mut lenb).await?;
        let n = usize::from(u16::from_be_bytes(lenb));
        let cap = usize::try_from(ctx.max_read_bytes).unwrap_or(usize::MAX);
        if n > cap {
            return Err(std::io::Error::other(format!(
                "reply of {n} bytes exceeds the read cap"
            )));
        }
        let mut buf = vec![0u8; n];
        stream.read_exact(&mut buf).await?;
        Ok::<_, std::io::Error>(buf)
    };
    match tokio::time::timeout(ctx.remaining(), read).await {
        Err(_) => result.failure = Some(failure(failure::GENERIC_TIMEOUT, op::READ)),
        Ok(Err(e)) => result.failure = Some(failure(&classify_io(&e), op::READ)),
        Ok(Ok(buf)) => {
            record_only_reply(result, &buf, id, qtype, sent, resolver.to_string());
        }
    }
}

/// DoH (RFC 8484 POST). The server certificate must be valid for WebPKI:
/// a forged DoH answer behind an invalid certificate is reported as the
/// ssl_* failure of the handshake. `Err` is a refusal reason.
async fn doh(
    url: &str,
    wire: &[u8],
    qtype: RecordType,
    ctx: &ProbeContext,
    result: &mut DnsResult,
) -> Result<(), String> {
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("malformed_input: doh_url {url:?}: {e}"))?;
    if !uri
        .scheme_str()
        .is_some_and(|s| s.eq_ignore_ascii_case("https"))
    {
        return Err(format!("malformed_input: doh_url {url:?} is not https"));
    }
    let host = target::uri_host(&uri)
        .ok_or_else(|| format!("malformed_input: doh_url {url:?} has no host"))?;
    let port = uri.port_u16().unwrap_or(443);
    let path = uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/dns-query".into());
    let literal = target::literal(&host, &ctx.policy)?;
    let addrs = match literal {
        Some(ip) => vec![ip],
        None => match net::resolve_system(&host, ctx).await {
            Ok(a) => a,
            Err(f) => {
                result.failure = Some(f);
                return Ok(());
            }
        },
    };
    // The connects are part of the query's one `resolve` step.
    let mut unrecorded = Steps::new();
    let (attempts, conn) = target::connect_first(&addrs, port, ctx, &mut unrecorded).await;
    let Some((ip, stream)) = conn else {
        result.failure = Some(target::last_failure(&attempts));
        return Ok(());
    };
    let sni = if literal.is_some() {
        String::new()
    } else {
        host.clone()
    };
    let alpn = vec!["http/1.1".to_string()];
    let (hs, tls_stream) = tls::handshake(stream, ip, &sni, &alpn, ctx.remaining(), true).await;
    let Some(tls_stream) = tls_stream else {
        result.failure = hs.failure;
        return Ok(());
    };
    let sent = Instant::now();
    let authority = uri
        .authority()
        .map(|a| a.as_str().to_string())
        .unwrap_or(host);
    let rt = async {
        let (mut sender, conn) = http1::handshake(TokioIo::new(tls_stream)).await?;
        let driver = tokio::spawn(conn);
        let req = Request::post(path.as_str())
            .header(header::HOST, authority.as_str())
            .header(header::CONTENT_TYPE, "application/dns-message")
            .header(header::ACCEPT, "application/dns-message")
            .header(header::USER_AGENT, vantage_proto::SOFTWARE_VERSION)
            .body(Full::new(Bytes::copy_from_slice(wire)));
        let req = match req {
            Ok(r) => r,
            Err(e) => {
                driver.abort();
                return Ok(Err(format!("unknown_failure: request: {e}")));
            }
        };
        let resp = sender.send_request(req).await;
        let out = match resp {
            Err(e) => Err(e),
            Ok(resp) => {
                let status = resp.status();
                let cap = ctx.max_read_bytes.min(MAX_MESSAGE as u64) as usize;
                let limited = http_body_util::Limited::new(resp.into_body(), cap);
                match limited.collect().await {
                    Ok(c) => Ok(Ok((status, c.to_bytes()))),
                    Err(e) => Ok(Err(format!("unknown_failure: doh body: {e}"))),
                }
            }
        };
        driver.abort();
        out
    };
    match tokio::time::timeout(ctx.remaining(), rt).await {
        Err(_) => result.failure = Some(failure(failure::GENERIC_TIMEOUT, op::HTTP_ROUND_TRIP)),
        Ok(Err(e)) => result.failure = Some(http::classify_hyper(&e, op::HTTP_ROUND_TRIP)),
        Ok(Ok(Err(msg))) => result.failure = Some(failure(&msg, op::HTTP_ROUND_TRIP)),
        Ok(Ok(Ok((status, body)))) => {
            if status.as_u16() != 200 {
                result.failure = Some(failure(
                    &format!("unknown_failure: doh http status {}", status.as_u16()),
                    op::HTTP_ROUND_TRIP,
                ));
                return Ok(());
            }
            record_only_reply(result, &body, 0, qtype, sent, url.to_string());
        }
    }
    Ok(())
}

/// The addresses a stub resolver would use: the answers of the qtype in the
/// first well-formed NOERROR reply (an injected reply wins, as it would for a
/// real client).
pub(crate) fn first_addresses(result: &DnsResult) -> Vec<IpAddr> {
    result
        .replies
        .iter()
        .find(|r| !r.malformed && r.rcode == "NOERROR")
        .map(|r| {
            r.answers
                .iter()
                .filter(|a| a.rtype == "A" || a.rtype == "AAAA")
                .filter_map(|a| a.data.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probes::test_support::{assert_forbidden_refusal, lab_ctx, strict_ctx};

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        for junk in [
            &b""[..],
            b"\x00",
            b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff",
        ] {
            let (r, m) = decode_reply(junk, 7, 1, "x".into());
            assert!(r.malformed);
            assert!(m.is_none());
        }
    }

    #[tokio::test]
    async fn every_udp_reply_is_recorded_including_malformed_ones() {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = server.local_addr().unwrap();
        let srv = tokio::spawn(async move {
            let mut buf = vec![0u8; 512];
            let (n, peer) = server.recv_from(&mut buf).await.unwrap();
            let q = Message::from_vec(&buf[..n]).unwrap();
            // A forged answer, garbage, then an NXDOMAIN.
            let mut forged = Message::response(q.metadata.id, q.metadata.op_code);
            forged.add_queries(q.queries.clone());
            forged.add_answer(hickory_proto::rr::Record::from_rdata(
                q.queries[0].name().clone(),
                77,
                hickory_proto::rr::RData::A(hickory_proto::rr::rdata::A::new(192, 0, 2, 66)),
            ));
            server
                .send_to(&forged.to_vec().unwrap(), peer)
                .await
                .unwrap();
            server.send_to(b"\x01\x02junk", peer).await.unwrap();
            let nx = Message::error_msg(q.metadata.id, q.metadata.op_code, ResponseCode::NXDomain);
            server.send_to(&nx.to_vec().unwrap(), peer).await.unwrap();
        });
        let input = DnsInput {
            domain: "example.org".into(),
            resolver: addr.to_string(),
            listen_ms: 300,
            ..Default::default()
        };
        let out = run(&input, &lab_ctx(Duration::from_millis(3000))).await;
        srv.await.unwrap();
        let measurement::Result::Dns(r) = out.expect("measured").result else {
            panic!("expected dns result");
        };
        assert_eq!(r.replies.len(), 3, "{r:?}");
        assert_eq!(r.replies[0].answers[0].data, "192.0.2.66");
        assert_eq!(r.replies[0].answers[0].ttl, 77);
        assert!(r.replies[1].malformed);
        assert_eq!(r.replies[2].rcode, "NXDOMAIN");
        assert_eq!(r.failure, None, "the first well-formed reply decides");
        assert_eq!(
            first_addresses(&r),
            vec!["192.0.2.66".parse::<IpAddr>().unwrap()]
        );
    }

    #[tokio::test]
    async fn forbidden_resolver_is_refused() {
        let ctx = strict_ctx(Duration::from_secs(1));
        let input = DnsInput {
            domain: "example.org".into(),
            resolver: "127.0.0.1:53".into(),
            ..Default::default()
        };
        assert_forbidden_refusal(&run(&input, &ctx).await);
        assert_forbidden_refusal(&run_injection(&input, &ctx).await);
    }
}
