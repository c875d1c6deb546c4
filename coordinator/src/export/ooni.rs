//! `ooni-jsonl`: each stored result as one measurement in OONI's data
//! format, so OONI's own tools (its `oonidata` library, pipelines built on
//! its specs) read Vantage data as they read OONI Probe's.
//!
//! What goes where (spec names from the `ooni/spec` repository):
//!
//! - Base envelope (`df-000-base`): `input`, `test_name`, `probe_cc`/
//!   `probe_asn` (`ZZ`/`AS0` when the volunteer withholds them), `probe_ip`
//!   always `127.0.0.1` (the agent never reports it), times as OONI's
//!   `YYYY-MM-DD HH:MM:SS` UTC, `annotations` (strings only) naming the
//!   Vantage kind, campaign, run, task, agent and target name.
//! - `test_name` per kind: `web` is `web_connectivity` (ts-017), `dns` is
//!   `dnscheck` (ts-028), `tor` is `tor` (ts-023). The other kinds have no
//!   OONI nettest that `oonidata` 0.3.0 models with their data, so they are
//!   `urlgetter` (ts-027: OONI's experiment for custom measurements, whose
//!   test keys are exactly the generic formats below) with OONI's URL-style
//!   input: `tcpconnect://ip:port`, `tlshandshake://ip:port` (option `SNI=`),
//!   `quichandshake://ip:port` (as ts-034), the URL for `http`,
//!   `dnslookup://domain` with option `ResolverURL=udp://ip:port` for
//!   `dns_injection`; `openvpn://`, `wireguard://` and `encrypted://ip:port`
//!   have no OONI form and follow the same pattern.
//! - Test keys from the generic formats: `queries` (df-002) with one entry
//!   per query (the first well-formed reply, which a stub resolver would
//!   take); every other reply of the same query goes to
//!   `x_dns_duplicate_responses` (the key OONI's own web_connectivity uses
//!   for late replies), which is where an injected answer and the genuine
//!   one show up side by side. `tcp_connect` (df-005), `tls_handshakes`
//!   (df-006; QUIC's in `quic_handshakes`), `requests` (df-001, newest
//!   first as ts-017 asks) and `network_events` (df-008) from the
//!   measurement's steps. `t0`/`t` are seconds since the measurement start.
//! - What OONI's formats cannot hold is kept as `x_`-prefixed extension
//!   keys next to it: agents keep SHA-256 fingerprints of the peer
//!   certificates, never the DER, so `peer_certificates` is null and
//!   `x_peer_certificates_sha256`, `x_leaf_spki_sha256`, `x_issuer` and
//!   `x_webpki` (the verdict a validating client would have reached) carry
//!   what there is; `tls` and `tor` probes complete handshakes without
//!   enforcing validation (`no_tls_verify` true), while `http` and `web`
//!   verify as a browser does (false). Bodies are not kept whole: a
//!   response's `body` is the head the agent keeps of the final page (for
//!   block-page fingerprints; lossy UTF-8) or null, `body_is_truncated`
//!   says whether that is the whole body, and `x_body_length`,
//!   `x_body_sha256`, `x_body_is_truncated` (the agent's read cap),
//!   `x_body_us` and `x_title` describe the real body.
//! - `test_keys.x_vantage` holds everything else: the same object as the
//!   `jsonl` export line (decoded measurement, signed envelope in base64,
//!   agent, receipt time), so every OONI line can be re-verified against
//!   the agent's key, plus the kind, the target key and the verdict.
//! - web_connectivity's `blocking`/`accessible` come from the campaign's
//!   verdict when [`ooni_with_verdict`] gets one (`ok`: false/true; `down`:
//!   false/false; `blocked`: the mechanism as OONI's `dns`, `tcp_ip`,
//!   `http-failure` or `http-diff`, and false). Without a verdict (or with
//!   an inconclusive one) they follow the measurement alone: success is
//!   `blocking: false, accessible: true`; a failure is `accessible: false`
//!   with `blocking: null`, since only a control can tell blocking from an
//!   outage. OONI's test-helper `control` is null: Vantage's controls are
//!   other agents' measurements, in the same export and named by the
//!   verdict's evidence.

use std::collections::HashMap;

use serde_json::{json, Map, Value};
use vantage_proto::v1::{
    measurement::Result as R, probe_input::Kind, DnsReply, DnsResult, Failure, HttpResponse,
    HttpResult, Measurement, StoredResult, TlsHandshake, VerdictRow,
};

/// Version of this mapping, reported as OONI's `test_version`.
const MAPPING_VERSION: &str = "0.2.0";

/// OONI's test name for a probe kind.
pub fn ooni_test_name(kind: &str) -> &'static str {
    match kind {
        "web" => "web_connectivity",
        "dns" => "dnscheck",
        "tor" => "tor",
        _ => "urlgetter",
    }
}

/// The OONI record for a result, without a verdict.
pub fn ooni(sr: &StoredResult, m: &Measurement) -> Value {
    ooni_with_verdict(sr, m, None)
}

/// Verdict rows by the measurement they judge, for [`ooni_with_verdict`].
#[derive(Debug, Default)]
pub struct VerdictIndex {
    by_id: HashMap<String, VerdictRow>,
    by_target: HashMap<(String, String, String), VerdictRow>,
}

impl VerdictIndex {
    /// Indexes rows by their inside measurement (the first evidence id) and
    /// by (run, target, inside agent); of two rows for the same one, the
    /// higher revision wins.
    pub fn new(rows: impl IntoIterator<Item = VerdictRow>) -> Self {
        let mut ix = VerdictIndex::default();
        let newer = |old: Option<&VerdictRow>, new: &VerdictRow| {
            old.is_none_or(|o| new.revision >= o.revision)
        };
        for r in rows {
            if let Some(id) = r.evidence.first().filter(|id| !id.is_empty()) {
                if newer(ix.by_id.get(id), &r) {
                    ix.by_id.insert(id.clone(), r.clone());
                }
            }
            let key = (r.run_id.clone(), r.target.clone(), r.agent_id.clone());
            if newer(ix.by_target.get(&key), &r) {
                ix.by_target.insert(key, r);
            }
        }
        ix
    }

    /// The verdict on `m`, if `m` is an inside measurement that has one.
    pub fn get(&self, m: &Measurement) -> Option<&VerdictRow> {
        self.by_id.get(&m.id).or_else(|| {
            self.by_target.get(&(
                m.run_id.clone(),
                crate::analysis::target_key(m),
                m.agent_id.clone(),
            ))
        })
    }

    /// Verdict rows indexed.
    pub fn len(&self) -> usize {
        self.by_target.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The OONI record for a result; `verdict` (the campaign's verdict on this
/// measurement, if any) decides web_connectivity's `blocking`/`accessible`.
pub fn ooni_with_verdict(
    sr: &StoredResult,
    m: &Measurement,
    verdict: Option<&VerdictRow>,
) -> Value {
    let kind = m.input.as_ref().map(|i| i.kind_name()).unwrap_or("none");
    let test_name = ooni_test_name(kind);
    let tl = Timeline { m };
    let (input, options) = input_and_options(m);
    let refused = match &m.result {
        Some(R::Refused(r)) => Some(r.reason.clone()),
        _ => None,
    };
    let mut keys = match &m.result {
        Some(R::Web(w)) => web_keys(m, w, &tl, verdict),
        Some(R::Dns(d)) => dnscheck_keys(m, d, &tl, input.as_deref()),
        Some(R::Tor(t)) => tor_keys(t, &tl),
        Some(r) if refused.is_none() => urlgetter_keys(m, r, &tl),
        // Refused, or no result: the shape of the test with nothing in it.
        _ => empty_keys(test_name, m),
    };
    let mut x = super::jsonl(sr, m);
    if let Value::Object(o) = &mut x {
        o.insert("kind".into(), kind.into());
        o.insert("target".into(), crate::analysis::target_key(m).into());
        o.insert(
            "verdict".into(),
            verdict
                .and_then(|v| serde_json::to_value(v).ok())
                .unwrap_or(Value::Null),
        );
        if let Some(reason) = &refused {
            o.insert("refused".into(), reason.clone().into());
        }
    }
    keys.insert("x_vantage".into(), x);

    let labels = m.labels.clone().unwrap_or_default();
    let mut annotations = Map::new();
    let mut note = |k: &str, v: &str| {
        if !v.is_empty() {
            annotations.insert(k.into(), v.into());
        }
    };
    note("engine_name", "vantage");
    note("vantage_kind", kind);
    note("vantage_campaign_id", &m.campaign_id);
    note("vantage_run_id", &m.run_id);
    note("vantage_task_id", &m.task_id);
    note("vantage_agent_id", &sr.agent_id);
    note(
        "vantage_target_name",
        m.input.as_ref().map(|i| i.name.as_str()).unwrap_or(""),
    );
    if refused.is_some() {
        note("vantage_refused", "true");
    }
    let report_id = [m.run_id.as_str(), sr.agent_id.as_str()]
        .iter()
        .filter(|s| !s.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join("_");
    let mut rec = json!({
        "annotations": annotations,
        "data_format_version": "0.2.0",
        "extensions": { "dnst": 0, "httpt": 0, "netevents": 0, "tcpconnect": 0, "tlshandshake": 0 },
        "input": input,
        "measurement_start_time": ooni_time(m.start_us),
        "measurement_uid": m.id,
        "probe_asn": if labels.asn == 0 { "AS0".to_string() } else { format!("AS{}", labels.asn) },
        "probe_cc": if labels.country.is_empty() { "ZZ".to_string() } else { labels.country.clone() },
        "probe_ip": "127.0.0.1",
        "report_id": report_id,
        "software_name": "vantage",
        "software_version": m.software_version,
        "test_keys": keys,
        "test_name": test_name,
        "test_runtime": secs(m.end_us.saturating_sub(m.start_us).max(0)),
        "test_start_time": ooni_time(m.start_us),
        "test_version": MAPPING_VERSION,
    });
    if !options.is_empty() {
        rec["options"] = json!(options);
    }
    rec
}

// ------------------------------------------------------------------ helpers

/// Last second RFC 3339 (and humantime, which fails past it) can write:
/// 9999-12-31 23:59:59 UTC.
const MAX_TIME_US: i64 = 253_402_300_799_000_000;

/// OONI's UTC time form, `2026-11-22 19:00:00` (clamped to years 1970-9999).
fn ooni_time(us: i64) -> String {
    let us = us.clamp(0, MAX_TIME_US) as u64;
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_micros(us);
    humantime::format_rfc3339_seconds(t)
        .to_string()
        .trim_end_matches('Z')
        .replace('T', " ")
}

fn secs(us: i64) -> f64 {
    us as f64 / 1e6
}

/// A failure string, or null on success (OONI's convention).
fn fail(f: Option<&Failure>) -> Value {
    match f {
        Some(f) if !f.failure.is_empty() => Value::String(f.failure.clone()),
        _ => Value::Null,
    }
}

fn failed_op(f: Option<&Failure>) -> Value {
    match f {
        Some(f) if !f.failure.is_empty() && !f.operation.is_empty() => {
            Value::String(f.operation.clone())
        }
        _ => Value::Null,
    }
}

/// `host:port`, with IPv6 literals bracketed.
fn endpoint(host: &str, port: u32) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// OONI names cipher suites as IANA does; rustls writes TLS 1.3 suites with
/// a `TLS13_` prefix.
fn iana_cipher(name: &str) -> String {
    match name.strip_prefix("TLS13_") {
        Some(rest) => format!("TLS_{rest}"),
        None => name.to_string(),
    }
}

/// A URL's scheme, host (brackets removed) and port (the scheme default
/// when absent).
fn url_parts(url: &str) -> Option<(String, String, u32)> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    let default = match scheme.as_str() {
        "https" => 443,
        _ => 80,
    };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']')?;
        let port = after.strip_prefix(':').and_then(|p| p.parse().ok());
        (h.to_string(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p.parse().ok()),
            None => (authority.to_string(), None),
        }
    };
    if host.is_empty() {
        return None;
    }
    Some((scheme, host, port.unwrap_or(default)))
}

/// Resolves a redirect `Location` against the URL it came from (enough for
/// absolute, scheme-relative and path-absolute forms).
fn resolve_location(base: &str, location: &str) -> String {
    if location.contains("://") {
        return location.to_string();
    }
    let Some((scheme, rest)) = base.split_once("://") else {
        return location.to_string();
    };
    if let Some(net) = location.strip_prefix("//") {
        return format!("{scheme}://{net}");
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if location.starts_with('/') {
        format!("{scheme}://{authority}{location}")
    } else {
        format!("{scheme}://{authority}/{location}")
    }
}

/// The measurement's steps, with OONI's relative times.
struct Timeline<'a> {
    m: &'a Measurement,
}

impl Timeline<'_> {
    /// The `i`-th step named `name`.
    fn nth(&self, name: &str, i: usize) -> Option<&vantage_proto::v1::Step> {
        self.m.steps.iter().filter(|s| s.name == name).nth(i)
    }

    /// (t0, t) of a step: its start and end in seconds since the
    /// measurement began.
    fn span(step: Option<&vantage_proto::v1::Step>) -> (Value, Value) {
        match step {
            Some(s) => (
                json!(secs(s.start_us.max(0))),
                json!(secs(s.start_us.max(0).saturating_add(s.duration_us.max(0)))),
            ),
            None => (Value::Null, Value::Null),
        }
    }
}

/// Where connect-like steps went: (ip, port) for the `i`-th connect step of
/// the measurement (`connect`, `control_connect`, `retest_N` counted
/// together, in order), when the result says.
struct Endpoints {
    /// Per connect step, in order; `None` when unknown.
    list: Vec<Option<(String, u32)>>,
    /// Used for connect steps past the list's end.
    rest: Option<(String, u32)>,
    proto: &'static str,
}

impl Endpoints {
    fn single(ip: &str, port: u32, proto: &'static str) -> Self {
        let e = (!ip.is_empty()).then(|| (ip.to_string(), port));
        Endpoints {
            list: vec![],
            rest: e,
            proto,
        }
    }

    fn none(proto: &'static str) -> Self {
        Endpoints {
            list: vec![],
            rest: None,
            proto,
        }
    }

    fn get(&self, i: usize) -> Option<&(String, u32)> {
        match self.list.get(i) {
            Some(e) => e.as_ref(),
            None => self.rest.as_ref(),
        }
    }
}

fn is_connect(name: &str) -> bool {
    let base = name.strip_prefix("control_").unwrap_or(name);
    base == "connect" || base.starts_with("retest_")
}

/// Tags for a step: `control` for the control handshake of a `tls`
/// measurement, `retest=N` for the re-tests of an `encrypted` one.
fn step_tags(name: &str) -> Vec<String> {
    let mut tags = vec![];
    let base = match name.strip_prefix("control_") {
        Some(b) => {
            tags.push("control".to_string());
            b
        }
        None => name,
    };
    if let Some(n) = base.strip_prefix("retest_") {
        tags.push(format!("retest={n}"));
    }
    tags
}

/// `tcp_connect` (df-005) from the connect steps of a TCP-based probe.
fn tcp_connects(tl: &Timeline, eps: &Endpoints) -> Vec<Value> {
    if eps.proto != "tcp" {
        return vec![];
    }
    tl.m.steps
        .iter()
        .filter(|s| is_connect(&s.name))
        .enumerate()
        .filter_map(|(i, s)| {
            let (ip, port) = eps.get(i)?;
            let (t0, t) = Timeline::span(Some(s));
            let f = fail(s.failure.as_ref());
            let mut e = json!({
                "ip": ip,
                "port": port,
                "status": { "success": f.is_null(), "failure": f },
                "t0": t0,
                "t": t,
            });
            let tags = step_tags(&s.name);
            if !tags.is_empty() {
                e["tags"] = json!(tags);
            }
            Some(e)
        })
        .collect()
}

/// `network_events` (df-008) from the steps: `connect`, `read` and `write`
/// as themselves; resolutions and handshakes as OONI's `*_start`/`*_done`
/// pairs; an HTTP round trip as `http_transaction_start` and
/// `http_first_response_byte`; any other step as `x_<name>`. Sorted by `t`.
fn network_events(tl: &Timeline, eps: &Endpoints) -> Vec<Value> {
    let mut out: Vec<Value> = vec![];
    let mut connects = 0usize;
    let mut current: Option<String> = None;
    for s in &tl.m.steps {
        let (t0, t) = Timeline::span(Some(s));
        let f = fail(s.failure.as_ref());
        let tags = step_tags(&s.name);
        let base = s.name.strip_prefix("control_").unwrap_or(&s.name);
        let mut ev = |op: &str, t0: &Value, t: &Value, failure: &Value, address: Option<&str>| {
            let mut e = json!({ "operation": op, "t0": t0, "t": t, "failure": failure });
            if let Some(a) = address {
                e["address"] = json!(a);
                e["proto"] = json!(eps.proto);
            }
            if !tags.is_empty() {
                e["tags"] = json!(tags);
            }
            out.push(e);
        };
        if is_connect(&s.name) {
            let addr = eps.get(connects).map(|(ip, port)| endpoint(ip, *port));
            connects += 1;
            ev("connect", &t0, &t, &f, addr.as_deref());
            if f.is_null() {
                current = addr;
            }
            continue;
        }
        match base {
            "read" | "write" => ev(base, &t0, &t, &f, current.as_deref()),
            "resolve" | "tls_handshake" | "quic_handshake" => {
                ev(&format!("{base}_start"), &t0, &t0, &Value::Null, None);
                ev(&format!("{base}_done"), &t0, &t, &f, None);
            }
            "http_round_trip" => {
                ev("http_transaction_start", &t0, &t0, &Value::Null, None);
                ev("http_first_response_byte", &t0, &t, &f, None);
            }
            other => ev(&format!("x_{other}"), &t0, &t, &f, None),
        }
    }
    out.sort_by(|a, b| {
        let t = |v: &Value| v["t"].as_f64().unwrap_or(0.0);
        t(a).total_cmp(&t(b))
    });
    out
}

/// One `tls_handshakes` entry (df-006).
fn tls_handshake(
    hs: &TlsHandshake,
    address: Option<String>,
    step: Option<&vantage_proto::v1::Step>,
    tags: &[&str],
    no_tls_verify: bool,
) -> Value {
    let (t0, t) = Timeline::span(step);
    let mut e = json!({
        "network": "tcp",
        "address": address,
        "server_name": hs.sni,
        "cipher_suite": iana_cipher(&hs.cipher),
        "tls_version": hs.version,
        "negotiated_protocol": hs.alpn,
        "failure": fail(hs.failure.as_ref()),
        "no_tls_verify": no_tls_verify,
        "peer_certificates": Value::Null,
        "t0": t0,
        "t": t,
        "x_peer_certificates_sha256": hs.chain_sha256,
        "x_leaf_spki_sha256": hs.leaf_spki_sha256,
        "x_issuer": hs.issuer,
        "x_webpki": hs.webpki,
        "x_handshake_us": hs.handshake_us,
    });
    if !tags.is_empty() {
        e["tags"] = json!(tags);
    }
    e
}

/// DNS rcode names to numbers (RFC 1035 and 2136).
fn rcode_number(name: &str) -> Option<i64> {
    let n = match name.to_ascii_uppercase().as_str() {
        "NOERROR" => 0,
        "FORMERR" => 1,
        "SERVFAIL" => 2,
        "NXDOMAIN" => 3,
        "NOTIMP" => 4,
        "REFUSED" => 5,
        "YXDOMAIN" => 6,
        "YXRRSET" => 7,
        "NXRRSET" => 8,
        "NOTAUTH" => 9,
        "NOTZONE" => 10,
        other => return other.strip_prefix("RCODE")?.parse().ok(),
    };
    Some(n)
}

/// The failure one reply means for a query of `qtype`, as the probe
/// derives it for the reply it takes.
fn reply_failure(r: &DnsReply, qtype: &str) -> Value {
    if r.malformed {
        return json!("unknown_failure: malformed dns reply");
    }
    match r.rcode.to_ascii_uppercase().as_str() {
        "NOERROR"
            if r.answers
                .iter()
                .any(|a| a.rtype.eq_ignore_ascii_case(qtype)) =>
        {
            Value::Null
        }
        "NOERROR" => json!(vantage_proto::failure::DNS_NO_ANSWER),
        "NXDOMAIN" => json!(vantage_proto::failure::DNS_NXDOMAIN),
        "REFUSED" => json!(vantage_proto::failure::DNS_REFUSED),
        "SERVFAIL" => json!(vantage_proto::failure::DNS_SERVFAIL),
        other => json!(format!("unknown_failure: dns rcode {other}")),
    }
}

/// df-002 answers.
fn answers(r: &DnsReply) -> Vec<Value> {
    r.answers
        .iter()
        .map(|a| {
            let rtype = a.rtype.to_ascii_uppercase();
            let mut e = json!({ "answer_type": rtype, "ttl": a.ttl });
            match rtype.as_str() {
                "A" => e["ipv4"] = json!(a.data),
                "AAAA" => e["ipv6"] = json!(a.data),
                "CNAME" | "PTR" | "NS" | "DNAME" => e["hostname"] = json!(a.data),
                _ => e["x_data"] = json!(a.data),
            }
            e
        })
        .collect()
}

/// (`queries`, `x_dns_duplicate_responses`) for one DNS query: the first
/// well-formed reply (or, without one, the query and its failure) and every
/// other reply.
fn dns_queries(
    r: &DnsResult,
    domain: &str,
    qtype: &str,
    step: Option<&vantage_proto::v1::Step>,
) -> (Vec<Value>, Vec<Value>) {
    let qtype = if qtype.is_empty() { "A" } else { qtype };
    let (t0, t_end) = Timeline::span(step);
    let base_t0 = t0.as_f64().unwrap_or(0.0);
    let engine = if r.transport.is_empty() {
        "udp"
    } else {
        r.transport.as_str()
    };
    let entry = |reply: Option<&DnsReply>, failure: Value| {
        let mut e = json!({
            "hostname": domain,
            "query_type": qtype,
            "engine": engine,
            "resolver_address": r.resolver,
            "failure": failure,
            "answers": Value::Null,
            "rcode": Value::Null,
            "t0": t0,
            "t": t_end,
        });
        if let Some(reply) = reply {
            e["answers"] = json!(answers(reply));
            e["rcode"] = json!(rcode_number(&reply.rcode));
            e["t"] = json!(base_t0 + secs(reply.arrival_us.max(0)));
            e["x_source"] = json!(reply.source);
            e["x_malformed"] = json!(reply.malformed);
            e["x_ip_ttl"] = if reply.ip_ttl == 0 {
                Value::Null
            } else {
                json!(reply.ip_ttl)
            };
        }
        e
    };
    let primary = r.replies.iter().position(|x| !x.malformed);
    let queries = vec![entry(
        primary.and_then(|i| r.replies.get(i)),
        fail(r.failure.as_ref()),
    )];
    let dups = r
        .replies
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != primary)
        .map(|(_, x)| entry(Some(x), reply_failure(x, qtype)))
        .collect();
    (queries, dups)
}

/// Whether an HTTP failure happened on the last recorded response (its body
/// read, or a redirect left unfollowed) rather than on a request of its own.
fn ends_chain(f: &Failure) -> bool {
    f.operation == vantage_proto::failure::op::READ
        || f.failure == vantage_proto::failure::TOO_MANY_REDIRECTS
}

/// `requests` (df-001) for an HTTP fetch, newest first. `first_hop` is the
/// endpoint of the first request when known.
fn http_requests(
    h: &HttpResult,
    url: &str,
    first_hop: Option<String>,
    tl: &Timeline,
) -> Vec<Value> {
    let transaction = |resp: Option<&HttpResponse>, req_url: &str, i: usize, failure: Value| {
        // The i-th round trip and body read are the i-th request's; a
        // request that failed before its round trip ends at the failed step.
        let round_trip = tl.nth("http_round_trip", i).or_else(|| {
            resp.is_none()
                .then(|| tl.m.steps.iter().rev().find(|s| s.failure.is_some()))
                .flatten()
        });
        let (t0, t_rt) = Timeline::span(round_trip);
        let (_, t_body) = Timeline::span(tl.nth("read", i));
        let t = if resp.is_some() && !t_body.is_null() {
            t_body
        } else {
            t_rt
        };
        let response = resp.map(|r| {
            let mut headers = Map::new();
            for hd in &r.headers {
                headers
                    .entry(hd.name.clone())
                    .or_insert_with(|| Value::String(hd.value.clone()));
            }
            // The agent keeps the head of the final body (lossy UTF-8) for
            // block-page fingerprints; OONI's `body` is that head, marked
            // truncated whenever it is not the whole body.
            let (body, body_is_truncated) = if r.body_head.is_empty() {
                (Value::Null, r.body_length > 0)
            } else {
                let whole = !r.body_truncated && r.body_head.len() as u64 >= r.body_length;
                (json!(r.body_head), !whole)
            };
            json!({
                "code": r.status,
                "headers": headers,
                "headers_list": r.headers.iter().map(|hd| [hd.name.clone(), hd.value.clone()]).collect::<Vec<_>>(),
                "body": body,
                "body_is_truncated": body_is_truncated,
                "x_body_length": r.body_length,
                "x_body_sha256": r.body_sha256,
                "x_body_is_truncated": r.body_truncated,
                "x_body_us": r.body_us,
                "x_title": r.title,
            })
        });
        let address = if i == 0 { first_hop.clone() } else { None };
        json!({
            "network": "tcp",
            "address": address,
            "failure": failure,
            "request": {
                "url": req_url,
                "method": "GET",
                "body": "",
                "body_is_truncated": false,
                "x_transport": "tcp",
            },
            "response": response,
            "t0": t0,
            "t": t,
        })
    };
    let f = h.failure.as_ref().filter(|f| !f.failure.is_empty());
    let mut out: Vec<Value> = h
        .chain
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let last = i + 1 == h.chain.len();
            // A failure while reading the last body, or the redirect not
            // followed, belongs to the last request.
            let failure = match f {
                Some(f) if last && ends_chain(f) => json!(f.failure),
                _ => Value::Null,
            };
            transaction(Some(r), &r.url, i, failure)
        })
        .collect();
    // A failure before any response of a request (resolve, connect, TLS,
    // the round trip) is a request of its own, with no response.
    if let Some(f) = f {
        if !ends_chain(f) || h.chain.is_empty() {
            let next_url = match h.chain.last() {
                None => url.to_string(),
                Some(last) => last
                    .headers
                    .iter()
                    .find(|hd| hd.name.eq_ignore_ascii_case("location"))
                    .map(|hd| resolve_location(&last.url, &hd.value))
                    .unwrap_or_else(|| url.to_string()),
            };
            out.push(transaction(
                None,
                &next_url,
                h.chain.len(),
                json!(f.failure),
            ));
        }
    }
    out.reverse();
    out
}

/// OONI's `blocking` value for a verdict's mechanism.
fn blocking_of(mechanism: &str, own: Option<&Failure>) -> &'static str {
    let family = mechanism.split('.').next().unwrap_or("");
    match (family, mechanism) {
        ("dns", _) => "dns",
        // A store's answer that lists the app elsewhere but not here is
        // a different answer, as a block page is a different page.
        (_, "http.blockpage" | "http.diff" | "store.removed") => "http-diff",
        ("tls" | "http" | "quic", _) => "http-failure",
        ("tcp" | "udp" | "residual" | "vpn", _) => "tcp_ip",
        // No mechanism named: say what the measurement's own failure says.
        _ => match own.map(|f| f.operation.as_str()) {
            Some("resolve") => "dns",
            Some("connect") => "tcp_ip",
            Some(_) => "http-failure",
            None => "http-diff",
        },
    }
}

// ------------------------------------------------------------------ inputs

fn input_and_options(m: &Measurement) -> (Option<String>, Vec<String>) {
    let Some(kind) = m.input.as_ref().and_then(|i| i.kind.as_ref()) else {
        return (None, vec![]);
    };
    let opt = |k: &str, v: &str| (!v.is_empty()).then(|| format!("{k}={v}"));
    match kind {
        Kind::Web(w) => (
            Some(w.url.clone()),
            opt("ResolverURL", &udp_url(&w.resolver))
                .into_iter()
                .collect(),
        ),
        Kind::Http(h) => {
            let opts = [
                opt("ResolverAddress", &h.ip),
                (h.port != 0).then(|| format!("Port={}", h.port)),
                opt("HTTPHost", &h.host_header),
                opt("SNI", &h.sni),
            ];
            (Some(h.url.clone()), opts.into_iter().flatten().collect())
        }
        Kind::Dns(d) => (
            Some(resolver_url(m, d)),
            vec![format!("Domain={}", d.domain)],
        ),
        Kind::DnsInjection(d) => (
            Some(format!("dnslookup://{}", d.domain)),
            opt("ResolverURL", &udp_url(&d.resolver))
                .into_iter()
                .collect(),
        ),
        Kind::Tcp(t) => (
            Some(format!("tcpconnect://{}", endpoint(&t.host, t.port))),
            vec![],
        ),
        Kind::Tls(t) => {
            let port = if t.port == 0 { 443 } else { t.port };
            let opts = [
                opt("SNI", &t.sni),
                opt("ControlSNI", &t.control_sni),
                opt("ALPN", &t.alpn.join(" ")),
            ];
            (
                Some(format!("tlshandshake://{}", endpoint(&t.ip, port))),
                opts.into_iter().flatten().collect(),
            )
        }
        Kind::Quic(q) => {
            let opts = [opt("SNI", &q.sni), opt("ALPN", &q.alpn.join(" "))];
            (
                Some(format!("quichandshake://{}", endpoint(&q.ip, q.port))),
                opts.into_iter().flatten().collect(),
            )
        }
        Kind::Openvpn(o) => (
            Some(format!("openvpn://{}", endpoint(&o.ip, o.port))),
            opt("Transport", &o.transport).into_iter().collect(),
        ),
        Kind::Tor(t) => (Some(endpoint(&t.ip, t.port)), vec![]),
        Kind::Encrypted(e) => (
            Some(format!("encrypted://{}", endpoint(&e.ip, e.port))),
            vec![],
        ),
        Kind::Wireguard(w) => (
            Some(format!("wireguard://{}", endpoint(&w.ip, w.port))),
            vec![],
        ),
        // The tested storefront's lookup URL, as urlgetter would fetch it.
        Kind::AppStore(a) => (
            Some(a.lookup_url(&a.storefront)),
            opt("ControlStorefront", &a.control_storefront)
                .into_iter()
                .collect(),
        ),
    }
}

/// `udp://ip:port` for a resolver `ip[:port]` (empty stays empty).
fn udp_url(resolver: &str) -> String {
    if resolver.is_empty() {
        String::new()
    } else if resolver.parse::<std::net::IpAddr>().is_ok() {
        format!("udp://{}", endpoint(resolver, 53))
    } else {
        format!("udp://{resolver}")
    }
}

/// dnscheck's input: the resolver as a URL (`udp://`, `tcp://`, or the DoH
/// URL). A system resolver is named by the address the agent used.
fn resolver_url(m: &Measurement, d: &vantage_proto::v1::DnsInput) -> String {
    let transport = d.transport.trim().to_ascii_lowercase();
    if transport == "doh" {
        return d.doh_url.clone();
    }
    let used = match &m.result {
        Some(R::Dns(r)) if !r.resolver.is_empty() => r.resolver.clone(),
        _ => d.resolver.clone(),
    };
    let used = if used.is_empty() {
        "system".to_string()
    } else {
        used
    };
    let addr = if used.parse::<std::net::IpAddr>().is_ok() {
        endpoint(&used, 53)
    } else {
        used
    };
    let scheme = if transport == "tcp" { "tcp" } else { "udp" };
    format!("{scheme}://{addr}")
}

// ------------------------------------------------------------------ test keys

/// Keys every urlgetter-shaped result carries (ts-027).
fn generic_keys(failure: Option<&Failure>) -> Map<String, Value> {
    let mut k = Map::new();
    k.insert("failure".into(), fail(failure));
    k.insert("failed_operation".into(), failed_op(failure));
    k.insert("socksproxy".into(), Value::Null);
    for key in [
        "queries",
        "tcp_connect",
        "tls_handshakes",
        "requests",
        "network_events",
    ] {
        k.insert(key.into(), json!([]));
    }
    k
}

fn empty_keys(test_name: &str, m: &Measurement) -> Map<String, Value> {
    match test_name {
        "tor" => {
            let mut k = Map::new();
            k.insert("targets".into(), json!({}));
            tor_counters(&mut k, 0, 0);
            k
        }
        "dnscheck" => {
            let mut k = Map::new();
            let domain = match m.input.as_ref().and_then(|i| i.kind.as_ref()) {
                Some(Kind::Dns(d)) => d.domain.clone(),
                _ => String::new(),
            };
            k.insert("domain".into(), json!(domain));
            k.insert("bootstrap".into(), Value::Null);
            k.insert("bootstrap_failure".into(), Value::Null);
            k.insert("lookups".into(), json!({}));
            k
        }
        "web_connectivity" => {
            let mut k = generic_keys(None);
            for key in [
                "dns_experiment_failure",
                "http_experiment_failure",
                "control_failure",
                "control",
                "dns_consistency",
                "blocking",
                "accessible",
            ] {
                k.insert(key.into(), Value::Null);
            }
            k
        }
        _ => generic_keys(None),
    }
}

fn urlgetter_keys(m: &Measurement, r: &R, tl: &Timeline) -> Map<String, Value> {
    let input = m.input.as_ref().and_then(|i| i.kind.as_ref());
    let mut queries = vec![];
    let mut dups = vec![];
    let mut tls = vec![];
    let mut quic = None;
    let mut requests = vec![];
    let (failure, eps): (Option<&Failure>, Endpoints) = match r {
        R::DnsInjection(d) => {
            let (domain, qtype) = match input {
                Some(Kind::DnsInjection(i)) => (i.domain.as_str(), i.qtype.as_str()),
                _ => ("", ""),
            };
            (queries, dups) = dns_queries(d, domain, qtype, tl.nth("resolve", 0));
            (d.failure.as_ref(), Endpoints::none("udp"))
        }
        R::Tcp(t) => {
            let mut list: Vec<Option<(String, u32)>> = t
                .resolved
                .iter()
                .map(|ip| Some((ip.clone(), t.port)))
                .collect();
            if list.is_empty() && !t.ip.is_empty() {
                list.push(Some((t.ip.clone(), t.port)));
            }
            let eps = Endpoints {
                list,
                rest: None,
                proto: "tcp",
            };
            (t.failure.as_ref(), eps)
        }
        R::Tls(t) => {
            let addr = Some(endpoint(&t.ip, t.port));
            let main = t.handshake.clone().unwrap_or_default();
            tls.push(tls_handshake(
                &main,
                addr.clone(),
                tl.nth("tls_handshake", 0),
                &["target"],
                true,
            ));
            if let Some(c) = &t.control {
                tls.push(tls_handshake(
                    c,
                    addr,
                    tl.nth("control_tls_handshake", 0),
                    &["control"],
                    true,
                ));
            }
            // The finding is the sensitive handshake; the control is context.
            let f = t.handshake.as_ref().and_then(|h| h.failure.as_ref());
            (f, Endpoints::single(&t.ip, t.port, "tcp"))
        }
        R::Http(h) => {
            let (url, first) = match input {
                Some(Kind::Http(i)) => {
                    let parts = url_parts(&i.url);
                    let port = match (&parts, i.port) {
                        (_, p) if p != 0 => p,
                        (Some((_, _, p)), _) => *p,
                        (None, _) => 80,
                    };
                    let ip = if !i.ip.is_empty() {
                        Some(i.ip.clone())
                    } else {
                        parts
                            .map(|(_, host, _)| host)
                            .filter(|h| h.parse::<std::net::IpAddr>().is_ok())
                    };
                    (i.url.clone(), ip.map(|ip| (ip, port)))
                }
                _ => (String::new(), None),
            };
            // The fixed or literal address serves the connects of the first
            // request; later hops' addresses are not recorded.
            let first_rt =
                tl.m.steps
                    .iter()
                    .position(|s| s.name == "http_round_trip")
                    .unwrap_or(tl.m.steps.len());
            let n_first = tl.m.steps[..first_rt]
                .iter()
                .filter(|s| is_connect(&s.name))
                .count();
            let eps = Endpoints {
                list: vec![first.clone(); n_first],
                rest: None,
                proto: "tcp",
            };
            let hop = first.as_ref().map(|(ip, port)| endpoint(ip, *port));
            if let Some(hs) = &h.tls {
                tls.push(tls_handshake(
                    hs,
                    hop.clone(),
                    tl.nth("tls_handshake", 0),
                    &[],
                    false,
                ));
            }
            requests = http_requests(h, &url, hop, tl);
            (h.failure.as_ref(), eps)
        }
        R::Quic(q) => {
            let (t0, t) = Timeline::span(tl.nth("quic_handshake", 0));
            let f = fail(q.failure.as_ref());
            quic = Some(json!([{
                "network": "udp",
                "address": endpoint(&q.ip, q.port),
                "server_name": q.sni,
                "cipher_suite": "",
                "tls_version": if f.is_null() { "TLSv1.3" } else { "" },
                "negotiated_protocol": q.alpn,
                "failure": f,
                "no_tls_verify": true,
                "peer_certificates": Value::Null,
                "t0": t0,
                "t": t,
                "x_handshake_us": q.handshake_us,
            }]));
            (q.failure.as_ref(), Endpoints::single(&q.ip, q.port, "udp"))
        }
        R::Openvpn(o) => {
            let proto = if o.transport.eq_ignore_ascii_case("tcp") {
                "tcp"
            } else {
                "udp"
            };
            (o.failure.as_ref(), Endpoints::single(&o.ip, o.port, proto))
        }
        R::Encrypted(e) => (e.trigger.as_ref(), Endpoints::single(&e.ip, e.port, "tcp")),
        R::Wireguard(w) => (w.failure.as_ref(), Endpoints::single(&w.ip, w.port, "udp")),
        // The lookups' handshakes, tagged with their storefront; the
        // listings themselves are in `x_vantage`.
        R::AppStore(a) => {
            for (n, l) in a.lookups.iter().enumerate() {
                if let Some(hs) = &l.tls {
                    let tag = [l.storefront.as_str()];
                    tls.push(tls_handshake(
                        hs,
                        None,
                        tl.nth("tls_handshake", n),
                        &tag,
                        false,
                    ));
                }
            }
            let f = a.lookups.first().and_then(|l| l.failure.as_ref());
            (f, Endpoints::none("tcp"))
        }
        // Handled by their own test names (and refusals by `empty_keys`).
        R::Dns(_) | R::Web(_) | R::Tor(_) | R::Refused(_) => (None, Endpoints::none("tcp")),
    };
    let mut k = generic_keys(failure);
    k.insert("queries".into(), json!(queries));
    if !dups.is_empty() {
        k.insert("x_dns_duplicate_responses".into(), json!(dups));
    }
    k.insert("tcp_connect".into(), json!(tcp_connects(tl, &eps)));
    k.insert("tls_handshakes".into(), json!(tls));
    if let Some(q) = quic {
        k.insert("quic_handshakes".into(), q);
    }
    if matches!(r, R::Http(_)) {
        k.insert("agent".into(), json!("redirect"));
    }
    k.insert("requests".into(), json!(requests));
    k.insert("network_events".into(), json!(network_events(tl, &eps)));
    k
}

fn dnscheck_keys(
    m: &Measurement,
    d: &DnsResult,
    tl: &Timeline,
    input: Option<&str>,
) -> Map<String, Value> {
    let (domain, qtype) = match m.input.as_ref().and_then(|i| i.kind.as_ref()) {
        Some(Kind::Dns(i)) => (i.domain.clone(), i.qtype.clone()),
        _ => (String::new(), String::new()),
    };
    let (queries, dups) = dns_queries(d, &domain, &qtype, tl.nth("resolve", 0));
    let proto = if d.transport.eq_ignore_ascii_case("udp") || d.transport.is_empty() {
        "udp"
    } else {
        "tcp"
    };
    let mut lookup = generic_keys(d.failure.as_ref());
    lookup.insert("queries".into(), json!(queries));
    if !dups.is_empty() {
        lookup.insert("x_dns_duplicate_responses".into(), json!(dups));
    }
    lookup.insert(
        "network_events".into(),
        json!(network_events(tl, &Endpoints::none(proto))),
    );
    let mut lookups = Map::new();
    lookups.insert(input.unwrap_or_default().to_string(), Value::Object(lookup));
    let mut k = Map::new();
    k.insert("domain".into(), json!(domain));
    k.insert("bootstrap".into(), Value::Null);
    k.insert("bootstrap_failure".into(), Value::Null);
    k.insert("lookups".into(), Value::Object(lookups));
    k
}

/// ts-023's per-protocol counters: one `or_port` target, `accessible` of it
/// reachable (none measured for a refusal).
fn tor_counters(k: &mut Map<String, Value>, total: u32, accessible: u32) {
    for (key, v) in [
        ("dir_port_total", 0),
        ("dir_port_accessible", 0),
        ("obfs4_total", 0),
        ("obfs4_accessible", 0),
        ("or_port_dirauth_total", 0),
        ("or_port_dirauth_accessible", 0),
        ("or_port_total", total),
        ("or_port_accessible", accessible),
    ] {
        k.insert(key.into(), json!(v));
    }
}

fn tor_keys(t: &vantage_proto::v1::TorResult, tl: &Timeline) -> Map<String, Value> {
    let addr = endpoint(&t.ip, t.port);
    let eps = Endpoints::single(&t.ip, t.port, "tcp");
    let tls: Vec<Value> = t
        .tls
        .iter()
        .map(|hs| {
            tls_handshake(
                hs,
                Some(addr.clone()),
                tl.nth("tls_handshake", 0),
                &[],
                true,
            )
        })
        .collect();
    let failure = fail(t.failure.as_ref());
    let accessible = u32::from(failure.is_null());
    let target = json!({
        "target_address": addr,
        "target_protocol": "or_port",
        "failure": failure,
        "network_events": network_events(tl, &eps),
        "queries": Value::Null,
        "requests": Value::Null,
        "tcp_connect": tcp_connects(tl, &eps),
        "tls_handshakes": tls,
        "x_link_versions": t.link_versions,
    });
    let mut targets = Map::new();
    targets.insert(addr, target);
    let mut k = Map::new();
    k.insert("targets".into(), Value::Object(targets));
    tor_counters(&mut k, 1, accessible);
    k
}

fn web_keys(
    m: &Measurement,
    w: &vantage_proto::v1::WebResult,
    tl: &Timeline,
    verdict: Option<&VerdictRow>,
) -> Map<String, Value> {
    let url = match m.input.as_ref().and_then(|i| i.kind.as_ref()) {
        Some(Kind::Web(i)) => i.url.clone(),
        _ => String::new(),
    };
    let host = url_parts(&url).map(|(_, h, _)| h).unwrap_or_default();
    let mut k = generic_keys(w.failure.as_ref());
    k.remove("failed_operation");
    if let Some(d) = &w.dns {
        let (queries, dups) = dns_queries(d, &host, "A", tl.nth("resolve", 0));
        k.insert("queries".into(), json!(queries));
        k.insert("x_dns_duplicate_responses".into(), json!(dups));
    }
    // Connect steps pair with the tcp results in order.
    let eps = Endpoints {
        list: w.tcp.iter().map(|t| Some((t.ip.clone(), t.port))).collect(),
        rest: None,
        proto: "tcp",
    };
    k.insert("tcp_connect".into(), json!(tcp_connects(tl, &eps)));
    let hop = w
        .tcp
        .iter()
        .find(|t| t.failure.as_ref().is_none_or(|f| f.failure.is_empty()))
        .map(|t| endpoint(&t.ip, t.port));
    let tls: Vec<Value> = w
        .tls
        .iter()
        .map(|hs| tls_handshake(hs, hop.clone(), tl.nth("tls_handshake", 0), &[], false))
        .collect();
    k.insert("tls_handshakes".into(), json!(tls));
    let requests = match &w.http {
        Some(h) => http_requests(h, &url, hop, tl),
        // Never got as far as HTTP: the failed fetch is still a request.
        None => match w.failure.as_ref().filter(|f| !f.failure.is_empty()) {
            Some(f) => http_requests(
                &HttpResult {
                    failure: Some(f.clone()),
                    ..Default::default()
                },
                &url,
                None,
                tl,
            ),
            None => vec![],
        },
    };
    k.insert("requests".into(), json!(requests));
    k.insert("network_events".into(), json!(network_events(tl, &eps)));
    k.insert("agent".into(), json!("redirect"));
    k.insert("client_resolver".into(), Value::Null);

    let f = w.failure.as_ref().filter(|f| !f.failure.is_empty());
    let dns_failed = f.is_some_and(|f| f.operation == vantage_proto::failure::op::RESOLVE);
    k.insert(
        "dns_experiment_failure".into(),
        if dns_failed { fail(f) } else { Value::Null },
    );
    k.insert(
        "http_experiment_failure".into(),
        if dns_failed { Value::Null } else { fail(f) },
    );
    // No test helper: Vantage's controls are other agents' measurements.
    k.insert("control_failure".into(), Value::Null);
    k.insert("control".into(), Value::Null);
    for key in [
        "body_length_match",
        "body_proportion",
        "headers_match",
        "status_code_match",
        "title_match",
    ] {
        k.insert(key.into(), Value::Null);
    }
    let (blocking, accessible, consistency) = match verdict.map(|v| v.status.as_str()) {
        Some("ok") => (json!(false), json!(true), json!("consistent")),
        Some("down") => (json!(false), json!(false), Value::Null),
        Some("blocked") => {
            let b = blocking_of(&verdict.map(|v| v.mechanism.clone()).unwrap_or_default(), f);
            let consistency = if b == "dns" {
                json!("inconsistent")
            } else {
                json!("consistent")
            };
            (json!(b), json!(false), consistency)
        }
        // No verdict, or an inconclusive one: what the measurement says.
        _ => match f {
            None => (json!(false), json!(true), Value::Null),
            Some(_) => (Value::Null, json!(false), Value::Null),
        },
    };
    k.insert("blocking".into(), blocking);
    k.insert("accessible".into(), accessible);
    k.insert("dns_consistency".into(), consistency);
    k
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use ed25519_dalek::SigningKey;
    use vantage_proto::failure::{failure, op};
    use vantage_proto::v1::{
        DnsAnswer, DnsInput, EncryptedAttempt, EncryptedInput, EncryptedResult, HttpHeader,
        HttpInput, Labels, OpenVpnInput, OpenVpnResult, ProbeInput, QuicInput, QuicResult, Refusal,
        Step, TcpInput, TcpResult, TlsInput, TlsResult, TorInput, TorResult, WebInput, WebResult,
        WireGuardInput, WireGuardResult,
    };

    const START: i64 = 1_795_000_000_000_000;

    fn step(name: &str, start_us: i64, duration_us: i64, f: Option<Failure>) -> Step {
        Step {
            name: name.into(),
            start_us,
            duration_us,
            failure: f,
        }
    }

    fn measurement(input: Kind, result: R, steps: Vec<Step>) -> (StoredResult, Measurement) {
        let m = Measurement {
            id: vantage_proto::envelope::new_id(),
            agent_id: "agent-1".into(),
            campaign_id: "camp".into(),
            task_id: "task".into(),
            run_id: "run".into(),
            start_us: START,
            end_us: START + 900_000,
            software_version: "vantage/0.1.0".into(),
            labels: Some(Labels {
                country: "CN".into(),
                asn: 4134,
                tags: vec![],
            }),
            input: Some(ProbeInput::from(input)),
            steps,
            result: Some(result),
        };
        let key = SigningKey::from_bytes(&[9; 32]);
        let sr = StoredResult {
            envelope: Some(vantage_proto::envelope::sign(&key, &m)),
            agent_id: "agent-1".into(),
            received_us: START + 1_000_000,
            ..Default::default()
        };
        (sr, m)
    }

    fn reply(arrival_us: i64, rcode: &str, answers: &[(&str, &str)]) -> DnsReply {
        DnsReply {
            arrival_us,
            rcode: rcode.into(),
            answers: answers
                .iter()
                .map(|(t, d)| DnsAnswer {
                    rtype: (*t).into(),
                    data: (*d).into(),
                    ttl: 60,
                })
                .collect(),
            source: "192.0.2.53:53".into(),
            ..Default::default()
        }
    }

    fn handshake(sni: &str, f: Option<Failure>) -> TlsHandshake {
        let ok = f.is_none();
        TlsHandshake {
            sni: sni.into(),
            failure: f,
            version: if ok { "TLSv1.3".into() } else { String::new() },
            cipher: if ok {
                "TLS13_AES_256_GCM_SHA384".into()
            } else {
                String::new()
            },
            alpn: if ok { "http/1.1".into() } else { String::new() },
            chain_sha256: vec!["aa".repeat(32), "bb".repeat(32)],
            webpki: "valid".into(),
            handshake_us: 40_000,
            leaf_spki_sha256: "cc".repeat(32),
            issuer: "CN=Test CA, O=Test".into(),
        }
    }

    fn web_success() -> (StoredResult, Measurement) {
        let dns = DnsResult {
            resolver: "192.0.2.53:53".into(),
            transport: "udp".into(),
            // The injected reply arrives first; the genuine one later.
            replies: vec![
                reply(5_000, "NOERROR", &[("A", "198.51.100.7")]),
                reply(40_000, "NOERROR", &[("A", "203.0.113.80")]),
            ],
            failure: None,
        };
        let http = HttpResult {
            chain: vec![
                HttpResponse {
                    url: "https://example.org/".into(),
                    status: 301,
                    headers: vec![HttpHeader {
                        name: "Location".into(),
                        value: "/home".into(),
                    }],
                    ..Default::default()
                },
                HttpResponse {
                    url: "https://example.org/home".into(),
                    status: 200,
                    headers: vec![
                        HttpHeader {
                            name: "Set-Cookie".into(),
                            value: "a=1".into(),
                        },
                        HttpHeader {
                            name: "Set-Cookie".into(),
                            value: "b=2".into(),
                        },
                    ],
                    body_length: 5000,
                    body_sha256: "dd".repeat(32),
                    title: "Example".into(),
                    body_us: 2_000,
                    body_head: "<html><title>Example</title>".into(),
                    ..Default::default()
                },
            ],
            failure: None,
            tls: Some(handshake("example.org", None)),
        };
        measurement(
            Kind::Web(WebInput {
                url: "https://example.org/".into(),
                resolver: "192.0.2.53".into(),
            }),
            R::Web(WebResult {
                dns: Some(dns),
                tcp: vec![TcpResult {
                    ip: "198.51.100.7".into(),
                    port: 443,
                    connect_us: 30_000,
                    ..Default::default()
                }],
                tls: Some(handshake("example.org", None)),
                http: Some(http),
                failure: None,
            }),
            vec![
                step("resolve", 1_000, 1_005_000, None),
                step("connect", 1_010_000, 30_000, None),
                step("tls_handshake", 1_040_000, 40_000, None),
                step("http_round_trip", 1_080_000, 20_000, None),
                step("read", 1_100_000, 1_000, None),
                step("http_round_trip", 1_101_000, 20_000, None),
                step("read", 1_121_000, 2_000, None),
            ],
        )
    }

    #[test]
    fn web_maps_to_web_connectivity_with_every_df_list() {
        let (sr, m) = web_success();
        let o = ooni(&sr, &m);
        assert_eq!(o["test_name"], "web_connectivity");
        assert_eq!(o["input"], "https://example.org/");
        assert_eq!(o["probe_cc"], "CN");
        assert_eq!(o["probe_asn"], "AS4134");
        assert_eq!(o["measurement_start_time"], "2026-11-18 11:06:40");
        assert_eq!(o["annotations"]["vantage_kind"], "web");
        let k = &o["test_keys"];
        // df-002: the first reply is the query's answer; the late one is a
        // duplicate response, with its own time.
        assert_eq!(k["queries"].as_array().unwrap().len(), 1);
        let q = &k["queries"][0];
        assert_eq!(q["hostname"], "example.org");
        assert_eq!(q["query_type"], "A");
        assert_eq!(q["engine"], "udp");
        assert_eq!(q["resolver_address"], "192.0.2.53:53");
        assert_eq!(q["rcode"], 0);
        assert_eq!(q["failure"], Value::Null);
        assert_eq!(q["answers"][0]["answer_type"], "A");
        assert_eq!(q["answers"][0]["ipv4"], "198.51.100.7");
        assert_eq!(q["answers"][0]["ttl"], 60);
        assert_eq!(q["t0"], 0.001);
        assert_eq!(q["t"], 0.006);
        let dup = &k["x_dns_duplicate_responses"][0];
        assert_eq!(dup["answers"][0]["ipv4"], "203.0.113.80");
        assert_eq!(dup["t"], 0.041);
        // df-005
        let c = &k["tcp_connect"][0];
        assert_eq!(c["ip"], "198.51.100.7");
        assert_eq!(c["port"], 443);
        assert_eq!(c["status"], json!({"success": true, "failure": null}));
        assert_eq!(
            (c["t0"].as_f64(), c["t"].as_f64()),
            (Some(1.01), Some(1.04))
        );
        // df-006: fingerprints only, said so.
        let h = &k["tls_handshakes"][0];
        assert_eq!(h["address"], "198.51.100.7:443");
        assert_eq!(h["server_name"], "example.org");
        assert_eq!(h["cipher_suite"], "TLS_AES_256_GCM_SHA384");
        assert_eq!(h["tls_version"], "TLSv1.3");
        assert_eq!(h["negotiated_protocol"], "http/1.1");
        assert_eq!(h["no_tls_verify"], false, "web verifies as a browser does");
        assert_eq!(h["peer_certificates"], Value::Null);
        assert_eq!(h["x_peer_certificates_sha256"][1], "bb".repeat(32));
        assert_eq!(h["x_leaf_spki_sha256"], "cc".repeat(32));
        assert_eq!(h["x_issuer"], "CN=Test CA, O=Test");
        assert_eq!(h["x_webpki"], "valid");
        // df-001: newest first.
        let r = k["requests"].as_array().unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0]["request"]["url"], "https://example.org/home");
        assert_eq!(r[0]["request"]["method"], "GET");
        assert_eq!(r[0]["response"]["code"], 200);
        assert_eq!(
            r[0]["response"]["headers_list"][1],
            json!(["Set-Cookie", "b=2"])
        );
        assert_eq!(r[0]["response"]["headers"]["Set-Cookie"], "a=1");
        assert_eq!(r[0]["response"]["body"], "<html><title>Example</title>");
        assert_eq!(r[0]["response"]["body_is_truncated"], true);
        assert_eq!(r[0]["response"]["x_body_length"], 5000);
        assert_eq!(r[0]["response"]["x_body_sha256"], "dd".repeat(32));
        assert_eq!(r[0]["response"]["x_title"], "Example");
        assert_eq!(r[0]["response"]["x_body_us"], 2000);
        assert_eq!(r[0]["failure"], Value::Null);
        assert_eq!(r[1]["response"]["code"], 301);
        assert_eq!(r[1]["address"], "198.51.100.7:443");
        assert_eq!(r[1]["response"]["body"], Value::Null);
        // df-008: one event per I/O step, start/done pairs, sorted by t.
        let ev = k["network_events"].as_array().unwrap();
        let ops: Vec<&str> = ev.iter().filter_map(|e| e["operation"].as_str()).collect();
        assert_eq!(
            ops,
            [
                "resolve_start",
                "resolve_done",
                "connect",
                "tls_handshake_start",
                "tls_handshake_done",
                "http_transaction_start",
                "http_first_response_byte",
                "read",
                "http_transaction_start",
                "http_first_response_byte",
                "read"
            ]
        );
        assert_eq!(ev[2]["address"], "198.51.100.7:443");
        assert_eq!(ev[2]["proto"], "tcp");
        assert_eq!(ev[7]["address"], "198.51.100.7:443");
        // Analysis keys from the measurement alone.
        assert_eq!(k["blocking"], false);
        assert_eq!(k["accessible"], true);
        assert_eq!(k["dns_experiment_failure"], Value::Null);
        assert_eq!(k["http_experiment_failure"], Value::Null);
        assert_eq!(k["control"], Value::Null);
        // Nothing lost: the signed envelope and the decoded measurement.
        let x = &k["x_vantage"];
        assert_eq!(x["kind"], "web");
        assert_eq!(x["measurement"]["id"], m.id.as_str());
        let env = sr.envelope.as_ref().unwrap();
        assert_eq!(
            x["envelope"]["signature_b64"],
            super::super::B64.encode(&env.signature)
        );
        assert_eq!(x["verdict"], Value::Null);
    }

    fn verdict(status: &str, mechanism: &str, m: &Measurement) -> VerdictRow {
        VerdictRow {
            run_id: m.run_id.clone(),
            target: crate::analysis::target_key(m),
            agent_id: m.agent_id.clone(),
            status: status.into(),
            mechanism: mechanism.into(),
            evidence: vec![m.id.clone(), "control-id".into()],
            revision: 1,
            ..Default::default()
        }
    }

    #[test]
    fn web_blocking_and_accessible_follow_the_verdict() {
        let (sr, m) = web_success();
        let cases = [
            ("ok", "", json!(false), json!(true)),
            ("down", "", json!(false), json!(false)),
            ("blocked", "dns.injection", json!("dns"), json!(false)),
            ("blocked", "tcp.reset", json!("tcp_ip"), json!(false)),
            ("blocked", "tls.mitm", json!("http-failure"), json!(false)),
            (
                "blocked",
                "http.blockpage",
                json!("http-diff"),
                json!(false),
            ),
            ("inconclusive", "", json!(false), json!(true)),
        ];
        for (status, mech, blocking, accessible) in cases {
            let v = verdict(status, mech, &m);
            let o = ooni_with_verdict(&sr, &m, Some(&v));
            assert_eq!(o["test_keys"]["blocking"], blocking, "{status} {mech}");
            assert_eq!(o["test_keys"]["accessible"], accessible, "{status} {mech}");
            assert_eq!(o["test_keys"]["x_vantage"]["verdict"]["status"], status);
        }
        let v = verdict("blocked", "dns.injection", &m);
        let o = ooni_with_verdict(&sr, &m, Some(&v));
        assert_eq!(o["test_keys"]["dns_consistency"], "inconsistent");
    }

    #[test]
    fn web_failure_without_verdict_is_inaccessible_and_unexplained() {
        let reset = failure("connection_reset", op::CONNECT);
        let (sr, m) = measurement(
            Kind::Web(WebInput {
                url: "http://198.51.100.7:8080/x".into(),
                resolver: String::new(),
            }),
            R::Web(WebResult {
                tcp: vec![TcpResult {
                    ip: "198.51.100.7".into(),
                    port: 8080,
                    failure: Some(reset.clone()),
                    ..Default::default()
                }],
                failure: Some(reset.clone()),
                ..Default::default()
            }),
            vec![step("connect", 100, 5_000, Some(reset))],
        );
        let k = ooni(&sr, &m)["test_keys"].clone();
        assert_eq!(k["blocking"], Value::Null);
        assert_eq!(k["accessible"], false);
        assert_eq!(k["http_experiment_failure"], "connection_reset");
        assert_eq!(k["dns_experiment_failure"], Value::Null);
        assert_eq!(k["queries"], json!([]), "an IP URL fakes no lookup");
        assert_eq!(
            k["tcp_connect"][0]["status"],
            json!({"success": false, "failure": "connection_reset"})
        );
        assert_eq!(k["requests"][0]["failure"], "connection_reset");
        assert_eq!(k["requests"][0]["response"], Value::Null);
        assert_eq!(
            k["requests"][0]["request"]["url"],
            "http://198.51.100.7:8080/x"
        );
        let nx = failure("dns_nxdomain_error", op::RESOLVE);
        let (sr, m) = measurement(
            Kind::Web(WebInput {
                url: "https://blocked.example/".into(),
                resolver: String::new(),
            }),
            R::Web(WebResult {
                dns: Some(DnsResult {
                    resolver: "192.0.2.53:53".into(),
                    transport: "udp".into(),
                    replies: vec![reply(3_000, "NXDOMAIN", &[])],
                    failure: Some(nx.clone()),
                }),
                failure: Some(nx.clone()),
                ..Default::default()
            }),
            vec![step("resolve", 0, 3_000, Some(nx))],
        );
        let k = ooni(&sr, &m)["test_keys"].clone();
        assert_eq!(k["dns_experiment_failure"], "dns_nxdomain_error");
        assert_eq!(k["http_experiment_failure"], Value::Null);
        assert_eq!(k["queries"][0]["rcode"], 3);
        assert_eq!(k["queries"][0]["failure"], "dns_nxdomain_error");
    }

    #[test]
    fn dns_maps_to_dnscheck_lookups_keyed_by_the_resolver_url() {
        let (sr, m) = measurement(
            Kind::Dns(DnsInput {
                domain: "example.org".into(),
                resolver: "192.0.2.53".into(),
                qtype: "AAAA".into(),
                transport: "udp".into(),
                ..Default::default()
            }),
            R::Dns(DnsResult {
                resolver: "192.0.2.53:53".into(),
                transport: "udp".into(),
                replies: vec![
                    DnsReply {
                        malformed: true,
                        arrival_us: 1_000,
                        ..Default::default()
                    },
                    reply(
                        2_000,
                        "NOERROR",
                        &[("CNAME", "cdn.example."), ("AAAA", "2001:db8::1")],
                    ),
                    reply(9_000, "SERVFAIL", &[]),
                ],
                failure: None,
            }),
            vec![step("resolve", 500, 1_000_000, None)],
        );
        let o = ooni(&sr, &m);
        assert_eq!(o["test_name"], "dnscheck");
        assert_eq!(o["input"], "udp://192.0.2.53:53");
        assert_eq!(o["options"], json!(["Domain=example.org"]));
        let k = &o["test_keys"];
        assert_eq!(k["domain"], "example.org");
        assert_eq!(k["bootstrap"], Value::Null);
        let l = &k["lookups"]["udp://192.0.2.53:53"];
        assert_eq!(l["failure"], Value::Null);
        let q = &l["queries"][0];
        assert_eq!(q["query_type"], "AAAA");
        assert_eq!(q["answers"][0]["hostname"], "cdn.example.");
        assert_eq!(q["answers"][1]["ipv6"], "2001:db8::1");
        assert_eq!(q["t"], 0.0025);
        let dups = l["x_dns_duplicate_responses"].as_array().unwrap();
        assert_eq!(dups.len(), 2);
        assert_eq!(dups[0]["failure"], "unknown_failure: malformed dns reply");
        assert_eq!(dups[1]["failure"], "dns_servfail_error");
        assert_eq!(dups[1]["rcode"], 2);
        assert_eq!(l["network_events"][1]["operation"], "resolve_done");
        // DoH names the resolver by its URL.
        let (sr, m) = measurement(
            Kind::Dns(DnsInput {
                domain: "example.org".into(),
                transport: "doh".into(),
                doh_url: "https://dns.example/dns-query".into(),
                ..Default::default()
            }),
            R::Dns(DnsResult {
                resolver: "https://dns.example/dns-query".into(),
                transport: "doh".into(),
                failure: Some(failure("generic_timeout_error", op::RESOLVE)),
                ..Default::default()
            }),
            vec![],
        );
        let o = ooni(&sr, &m);
        assert_eq!(o["input"], "https://dns.example/dns-query");
        let l = &o["test_keys"]["lookups"]["https://dns.example/dns-query"];
        assert_eq!(l["queries"][0]["engine"], "doh");
        assert_eq!(l["queries"][0]["failure"], "generic_timeout_error");
        assert_eq!(l["failed_operation"], "resolve");
    }

    #[test]
    fn dns_injection_is_a_urlgetter_lookup_with_its_resolver_option() {
        let (sr, m) = measurement(
            Kind::DnsInjection(DnsInput {
                domain: "twitter.com".into(),
                resolver: "198.51.100.1".into(),
                ..Default::default()
            }),
            R::DnsInjection(DnsResult {
                resolver: "198.51.100.1:53".into(),
                transport: "udp".into(),
                replies: vec![reply(80_000, "NOERROR", &[("A", "31.13.64.1")])],
                failure: None,
            }),
            vec![step("resolve", 0, 1_100_000, None)],
        );
        let o = ooni(&sr, &m);
        assert_eq!(o["test_name"], "urlgetter");
        assert_eq!(o["input"], "dnslookup://twitter.com");
        assert_eq!(o["options"], json!(["ResolverURL=udp://198.51.100.1:53"]));
        let q = &o["test_keys"]["queries"][0];
        assert_eq!(q["hostname"], "twitter.com");
        assert_eq!(q["answers"][0]["ipv4"], "31.13.64.1");
        assert_eq!(q["x_source"], "192.0.2.53:53");
    }

    #[test]
    fn tcp_connects_pair_with_the_resolved_addresses() {
        let refused = failure("connection_refused", op::CONNECT);
        let (sr, m) = measurement(
            Kind::Tcp(TcpInput {
                host: "example.org".into(),
                port: 443,
            }),
            R::Tcp(TcpResult {
                ip: "2001:db8::2".into(),
                port: 443,
                resolved: vec!["192.0.2.1".into(), "2001:db8::2".into()],
                connect_us: 7_000,
                failure: None,
            }),
            vec![
                step("resolve", 0, 2_000, None),
                step("connect", 2_000, 1_000, Some(refused)),
                step("connect", 3_000, 7_000, None),
            ],
        );
        let o = ooni(&sr, &m);
        assert_eq!(o["test_name"], "urlgetter");
        assert_eq!(o["input"], "tcpconnect://example.org:443");
        let k = &o["test_keys"];
        assert_eq!(k["failure"], Value::Null);
        assert_eq!(k["failed_operation"], Value::Null);
        let c = k["tcp_connect"].as_array().unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c[0]["ip"], "192.0.2.1");
        assert_eq!(c[0]["status"]["failure"], "connection_refused");
        assert_eq!(c[1]["ip"], "2001:db8::2");
        assert_eq!(c[1]["status"]["success"], true);
        let connects: Vec<&Value> = k["network_events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["operation"] == "connect")
            .collect();
        assert_eq!(connects[1]["address"], "[2001:db8::2]:443");
    }

    #[test]
    fn tls_handshake_and_its_control_are_tagged() {
        let reset = failure("connection_reset", op::TLS_HANDSHAKE);
        let (sr, m) = measurement(
            Kind::Tls(TlsInput {
                ip: "2001:db8::5".into(),
                port: 443,
                sni: "blocked.example".into(),
                control_sni: "example.org".into(),
                alpn: vec![],
            }),
            R::Tls(TlsResult {
                ip: "2001:db8::5".into(),
                port: 443,
                handshake: Some(handshake("blocked.example", Some(reset))),
                control: Some(handshake("example.org", None)),
            }),
            vec![
                step("connect", 0, 1_000, None),
                step(
                    "tls_handshake",
                    1_000,
                    2_000,
                    Some(failure("connection_reset", op::TLS_HANDSHAKE)),
                ),
                step("control_connect", 3_000, 1_000, None),
                step("control_tls_handshake", 4_000, 5_000, None),
            ],
        );
        let o = ooni(&sr, &m);
        assert_eq!(o["input"], "tlshandshake://[2001:db8::5]:443");
        assert_eq!(
            o["options"],
            json!(["SNI=blocked.example", "ControlSNI=example.org"])
        );
        let k = &o["test_keys"];
        assert_eq!(k["failure"], "connection_reset");
        assert_eq!(k["failed_operation"], "tls_handshake");
        let h = k["tls_handshakes"].as_array().unwrap();
        assert_eq!(h[0]["server_name"], "blocked.example");
        assert_eq!(h[0]["tags"], json!(["target"]));
        assert_eq!(h[0]["failure"], "connection_reset");
        assert_eq!(h[0]["cipher_suite"], "");
        assert_eq!(h[1]["server_name"], "example.org");
        assert_eq!(h[1]["tags"], json!(["control"]));
        assert_eq!(h[1]["address"], "[2001:db8::5]:443");
        assert_eq!(
            (h[1]["t0"].as_f64(), h[1]["t"].as_f64()),
            (Some(0.004), Some(0.009))
        );
        let c = k["tcp_connect"].as_array().unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c[1]["tags"], json!(["control"]));
        assert_eq!(c[1]["ip"], "2001:db8::5");
    }

    #[test]
    fn http_requests_run_newest_first_with_the_failure_where_it_happened() {
        let eof = failure("eof_error", op::READ);
        let (sr, m) = measurement(
            Kind::Http(HttpInput {
                url: "http://example.org/a".into(),
                ip: "192.0.2.9".into(),
                ..Default::default()
            }),
            R::Http(HttpResult {
                chain: vec![
                    HttpResponse {
                        url: "http://example.org/a".into(),
                        status: 302,
                        headers: vec![HttpHeader {
                            name: "location".into(),
                            value: "http://example.org/b".into(),
                        }],
                        ..Default::default()
                    },
                    HttpResponse {
                        url: "http://example.org/b".into(),
                        status: 200,
                        body_length: 10,
                        ..Default::default()
                    },
                ],
                failure: Some(eof.clone()),
                tls: None,
            }),
            vec![
                step("connect", 0, 1_000, None),
                step("http_round_trip", 1_000, 1_000, None),
                step("read", 2_000, 1_000, None),
                step("connect", 3_000, 1_000, None),
                step("http_round_trip", 4_000, 1_000, None),
                step("read", 5_000, 1_000, Some(eof)),
            ],
        );
        let o = ooni(&sr, &m);
        assert_eq!(o["test_name"], "urlgetter");
        assert_eq!(o["input"], "http://example.org/a");
        assert_eq!(o["options"], json!(["ResolverAddress=192.0.2.9"]));
        let k = &o["test_keys"];
        assert_eq!(k["agent"], "redirect");
        assert_eq!(k["failure"], "eof_error");
        assert_eq!(k["failed_operation"], "read");
        let r = k["requests"].as_array().unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0]["request"]["url"], "http://example.org/b");
        assert_eq!(r[0]["failure"], "eof_error");
        assert_eq!(r[0]["response"]["code"], 200);
        assert_eq!(r[0]["t"], 0.006);
        assert_eq!(r[1]["failure"], Value::Null);
        assert_eq!(r[1]["address"], "192.0.2.9:80");
        // Only the first request's connect went to the fixed address.
        let c = k["tcp_connect"].as_array().unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(
            (c[0]["ip"].as_str(), c[0]["port"].as_u64()),
            (Some("192.0.2.9"), Some(80))
        );

        // A failure before any response is a request of its own.
        let reset = failure("connection_reset", op::HTTP_ROUND_TRIP);
        let (sr, m) = measurement(
            Kind::Http(HttpInput {
                url: "https://example.org/".into(),
                ..Default::default()
            }),
            R::Http(HttpResult {
                chain: vec![HttpResponse {
                    url: "https://example.org/".into(),
                    status: 301,
                    headers: vec![HttpHeader {
                        name: "Location".into(),
                        value: "//other.example/x".into(),
                    }],
                    ..Default::default()
                }],
                failure: Some(reset.clone()),
                tls: Some(handshake("example.org", None)),
            }),
            vec![
                step("resolve", 0, 1_000, None),
                step("connect", 1_000, 1_000, None),
                step("tls_handshake", 2_000, 1_000, None),
                step("http_round_trip", 3_000, 1_000, None),
                step("read", 4_000, 1_000, None),
                step("resolve", 5_000, 1_000, None),
                step("connect", 6_000, 1_000, None),
                step("tls_handshake", 7_000, 1_000, None),
                step("http_round_trip", 8_000, 1_000, Some(reset)),
            ],
        );
        let k = ooni(&sr, &m)["test_keys"].clone();
        let r = k["requests"].as_array().unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0]["request"]["url"], "https://other.example/x");
        assert_eq!(r[0]["failure"], "connection_reset");
        assert_eq!(r[0]["response"], Value::Null);
        assert_eq!(
            (r[0]["t0"].as_f64(), r[0]["t"].as_f64()),
            (Some(0.008), Some(0.009))
        );
        assert_eq!(
            k["tcp_connect"],
            json!([]),
            "no address known for a resolved host"
        );
        assert_eq!(k["tls_handshakes"][0]["server_name"], "example.org");

        // Out of redirects: the failure is on the last response, and a
        // failure before any response still gets its time.
        let (sr, mut m) = measurement(
            Kind::Http(HttpInput {
                url: "http://loop.example/".into(),
                ..Default::default()
            }),
            R::Http(HttpResult {
                chain: vec![HttpResponse {
                    url: "http://loop.example/".into(),
                    status: 302,
                    ..Default::default()
                }],
                failure: Some(failure("http_too_many_redirects", op::HTTP_ROUND_TRIP)),
                tls: None,
            }),
            vec![step("http_round_trip", 0, 1_000, None)],
        );
        let r = ooni(&sr, &m)["test_keys"]["requests"].clone();
        assert_eq!(r.as_array().map(Vec::len), Some(1));
        assert_eq!(r[0]["failure"], "http_too_many_redirects");
        assert_eq!(r[0]["response"]["code"], 302);
        let refused = failure("connection_refused", op::CONNECT);
        m.result = Some(R::Http(HttpResult {
            failure: Some(refused.clone()),
            ..Default::default()
        }));
        m.steps = vec![
            step("resolve", 0, 1_000, None),
            step("connect", 1_000, 2_000, Some(refused)),
        ];
        let r = ooni(&sr, &m)["test_keys"]["requests"].clone();
        assert_eq!(r[0]["failure"], "connection_refused");
        assert_eq!(
            (r[0]["t0"].as_f64(), r[0]["t"].as_f64()),
            (Some(0.001), Some(0.003))
        );
    }

    #[test]
    fn quic_openvpn_wireguard_and_encrypted_keep_their_transport() {
        let (sr, m) = measurement(
            Kind::Quic(QuicInput {
                ip: "192.0.2.3".into(),
                port: 443,
                sni: "example.org".into(),
                alpn: vec!["h3".into()],
            }),
            R::Quic(QuicResult {
                ip: "192.0.2.3".into(),
                port: 443,
                sni: "example.org".into(),
                failure: None,
                handshake_us: 30_000,
                alpn: "h3".into(),
            }),
            vec![step("quic_handshake", 0, 30_000, None)],
        );
        let o = ooni(&sr, &m);
        assert_eq!(o["input"], "quichandshake://192.0.2.3:443");
        assert_eq!(o["options"], json!(["SNI=example.org", "ALPN=h3"]));
        let k = &o["test_keys"];
        let q = &k["quic_handshakes"][0];
        assert_eq!(q["network"], "udp");
        assert_eq!(q["negotiated_protocol"], "h3");
        assert_eq!(q["tls_version"], "TLSv1.3");
        assert_eq!(k["tcp_connect"], json!([]));
        assert_eq!(k["network_events"][0]["operation"], "quic_handshake_start");

        let timeout = failure("generic_timeout_error", op::READ);
        let (sr, m) = measurement(
            Kind::Openvpn(OpenVpnInput {
                ip: "192.0.2.4".into(),
                port: 1194,
                transport: "udp".into(),
            }),
            R::Openvpn(OpenVpnResult {
                ip: "192.0.2.4".into(),
                port: 1194,
                transport: "udp".into(),
                failure: Some(timeout.clone()),
                ..Default::default()
            }),
            vec![
                step("connect", 0, 100, None),
                step("write", 100, 100, None),
                step("read", 200, 5_000_000, Some(timeout.clone())),
            ],
        );
        let o = ooni(&sr, &m);
        assert_eq!(o["input"], "openvpn://192.0.2.4:1194");
        let k = &o["test_keys"];
        assert_eq!(k["failure"], "generic_timeout_error");
        assert_eq!(k["failed_operation"], "read");
        assert_eq!(
            k["tcp_connect"],
            json!([]),
            "a UDP socket connect is no TCP connect"
        );
        let ev = k["network_events"].as_array().unwrap();
        assert_eq!(ev[0]["proto"], "udp");
        assert_eq!(ev[2]["operation"], "read");
        assert_eq!(ev[2]["address"], "192.0.2.4:1194");
        assert_eq!(ev[2]["failure"], "generic_timeout_error");

        let (sr, m) = measurement(
            Kind::Openvpn(OpenVpnInput {
                ip: "192.0.2.4".into(),
                port: 443,
                transport: "tcp".into(),
            }),
            R::Openvpn(OpenVpnResult {
                ip: "192.0.2.4".into(),
                port: 443,
                transport: "tcp".into(),
                server_reset_received: true,
                ..Default::default()
            }),
            vec![step("connect", 0, 100, None)],
        );
        assert_eq!(ooni(&sr, &m)["test_keys"]["tcp_connect"][0]["port"], 443);

        let (sr, m) = measurement(
            Kind::Wireguard(WireGuardInput {
                ip: "192.0.2.6".into(),
                port: 51820,
                peer_public_key: vec![1; 32],
            }),
            R::Wireguard(WireGuardResult {
                ip: "192.0.2.6".into(),
                port: 51820,
                response_received: true,
                rtt_us: 20_000,
                ..Default::default()
            }),
            vec![
                step("connect", 0, 10, None),
                step("write", 10, 10, None),
                step("read", 20, 20_000, None),
            ],
        );
        let o = ooni(&sr, &m);
        assert_eq!(o["input"], "wireguard://192.0.2.6:51820");
        assert_eq!(
            o["test_keys"]["network_events"].as_array().unwrap().len(),
            3
        );

        let reset = failure("connection_reset", op::CONNECT);
        let (sr, m) = measurement(
            Kind::Encrypted(EncryptedInput {
                ip: "192.0.2.7".into(),
                port: 8388,
                ..Default::default()
            }),
            R::Encrypted(EncryptedResult {
                ip: "192.0.2.7".into(),
                port: 8388,
                trigger: None,
                retests: vec![EncryptedAttempt {
                    at_us: 60_000_000,
                    failure: Some(reset.clone()),
                    data_echoed: false,
                }],
                residual_blocking: true,
            }),
            vec![
                step("connect", 0, 1_000, None),
                step("write", 1_000, 100, None),
                step("read", 1_100, 500_000, None),
                step("retest_1", 60_000_000, 3_000_000, Some(reset)),
            ],
        );
        let o = ooni(&sr, &m);
        assert_eq!(o["input"], "encrypted://192.0.2.7:8388");
        let c = o["test_keys"]["tcp_connect"].as_array().unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c[1]["tags"], json!(["retest=1"]));
        assert_eq!(c[1]["status"]["failure"], "connection_reset");
        assert_eq!(c[1]["t0"], 60.0);
    }

    #[test]
    fn tor_is_one_or_port_target() {
        let (sr, m) = measurement(
            Kind::Tor(TorInput {
                ip: "192.0.2.8".into(),
                port: 9001,
            }),
            R::Tor(TorResult {
                ip: "192.0.2.8".into(),
                port: 9001,
                failure: None,
                tls: Some(handshake("", None)),
                link_versions: vec![3, 4, 5],
            }),
            vec![
                step("connect", 0, 1_000, None),
                step("tls_handshake", 1_000, 2_000, None),
                step("write", 3_000, 100, None),
                step("read", 3_100, 1_000, None),
            ],
        );
        let o = ooni(&sr, &m);
        assert_eq!(o["test_name"], "tor");
        assert_eq!(o["input"], "192.0.2.8:9001");
        let k = &o["test_keys"];
        assert_eq!(k["or_port_total"], 1);
        assert_eq!(k["or_port_accessible"], 1);
        let t = &k["targets"]["192.0.2.8:9001"];
        assert_eq!(t["target_address"], "192.0.2.8:9001");
        assert_eq!(t["target_protocol"], "or_port");
        assert_eq!(t["failure"], Value::Null);
        assert_eq!(t["tcp_connect"][0]["port"], 9001);
        assert_eq!(t["tls_handshakes"][0]["server_name"], "");
        assert_eq!(t["x_link_versions"], json!([3, 4, 5]));
        assert!(k["x_vantage"]["envelope"]["measurement_b64"].is_string());
    }

    #[test]
    fn refusals_and_odd_measurements_never_panic() {
        let (sr, m) = measurement(
            Kind::Tor(TorInput {
                ip: "10.0.0.1".into(),
                port: 9001,
            }),
            R::Refused(Refusal {
                reason: "forbidden_target: 10.0.0.1 is private".into(),
            }),
            vec![],
        );
        let o = ooni(&sr, &m);
        assert_eq!(o["test_name"], "tor");
        assert_eq!(o["test_keys"]["targets"], json!({}));
        assert_eq!(o["annotations"]["vantage_refused"], "true");
        assert_eq!(
            o["test_keys"]["x_vantage"]["refused"],
            "forbidden_target: 10.0.0.1 is private"
        );
        // Nothing at all: no input, no result, no labels, times backwards.
        let m = Measurement {
            start_us: -5,
            end_us: -10,
            ..Default::default()
        };
        let o = ooni(&StoredResult::default(), &m);
        assert_eq!(o["test_name"], "urlgetter");
        assert_eq!(o["input"], Value::Null);
        assert_eq!(o["probe_cc"], "ZZ");
        assert_eq!(o["probe_asn"], "AS0");
        assert_eq!(o["test_runtime"], 0.0);
        assert_eq!(o["measurement_start_time"], "1970-01-01 00:00:00");
        let far = Measurement {
            start_us: i64::MAX,
            end_us: i64::MIN,
            ..Default::default()
        };
        let o = ooni(&StoredResult::default(), &far);
        assert_eq!(o["measurement_start_time"], "9999-12-31 23:59:59");
        assert_eq!(o["test_runtime"], 0.0);
        // Steps that do not match the result, and garbage URLs.
        let (sr, mut m) = web_success();
        m.steps = vec![
            step("connect", -7, -3, None),
            step("weird", i64::MAX, i64::MAX, None),
        ];
        if let Some(R::Web(w)) = &mut m.result {
            w.tcp.clear();
            if let Some(h) = &mut w.http {
                h.chain[0].headers[0].value = "::::".into();
            }
        }
        if let Some(ProbeInput {
            kind: Some(Kind::Web(i)),
            ..
        }) = &mut m.input
        {
            i.url = "not a url".into();
        }
        let o = ooni(&sr, &m);
        let ev = o["test_keys"]["network_events"].as_array().unwrap();
        assert_eq!(ev[0]["t0"], 0.0);
        assert_eq!(ev[1]["operation"], "x_weird");
        for kind in vantage_proto::PROBE_KINDS {
            assert_ne!(ooni_test_name(kind), "");
        }
    }

    proptest::proptest! {
        /// The text helpers take whatever an agent (or a server's Location
        /// header) put in a measurement.
        #[test]
        fn text_helpers_take_any_input(a in ".*", b in ".*", port in proptest::prelude::any::<u32>()) {
            let _ = url_parts(&a);
            let _ = resolve_location(&a, &b);
            let _ = endpoint(&a, port);
            let _ = rcode_number(&a);
            let _ = iana_cipher(&a);
            let _ = udp_url(&a);
            let _ = step_tags(&a);
            let _ = blocking_of(&a, None);
        }

        /// Any step list, with any times, maps without a panic.
        #[test]
        fn any_steps_map(
            steps in proptest::collection::vec(("(control_)?(connect|read|write|resolve|tls_handshake|http_round_trip|retest_[0-9]|.*)", proptest::prelude::any::<i64>(), proptest::prelude::any::<i64>()), 0..12),
        ) {
            let (sr, mut m) = web_success();
            m.steps = steps.iter().map(|(n, s, d)| step(n, *s, *d, None)).collect();
            let o = ooni(&sr, &m);
            proptest::prop_assert!(o["test_keys"]["network_events"].is_array());
        }
    }

    #[test]
    fn verdicts_are_found_by_inside_measurement() {
        let (_, m) = web_success();
        let (_, other) = web_success();
        let mut old = verdict("blocked", "dns.injection", &m);
        old.revision = 1;
        let mut new = verdict("ok", "", &m);
        new.revision = 2;
        let ix = VerdictIndex::new([new, old]);
        assert_eq!(ix.len(), 1);
        assert_eq!(ix.get(&m).map(|v| v.status.as_str()), Some("ok"));
        // Same run, target and agent: found by the triple too.
        assert_eq!(ix.get(&other).map(|v| v.status.as_str()), Some("ok"));
        let mut control = other.clone();
        control.agent_id = "control-agent".into();
        control.id = "control-id-2".into();
        assert!(ix.get(&control).is_none());
        assert!(VerdictIndex::default().is_empty());
    }
}
