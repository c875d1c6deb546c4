//! Verdicts: pure functions from a run's inside result and the control
//! results for the same target to `{status, mechanism, confidence,
//! evidence}`. No I/O; everything here is testable without a network.
//!
//! Statuses: `ok`, `blocked`, `down` (a majority of the controls fail too),
//! `inconclusive` (no usable control, controls split evenly, or the inside
//! agent refused the task). Each rule names its threshold and source beside
//! it (`rules.rs`); `analyze_run` pairs results by target and refines
//! protocol labels into `udp.drop` when a whole address's UDP is silent.

pub mod changes;
pub mod fingerprints;
mod rules;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use vantage_proto::v1::{measurement, probe_input::Kind, Measurement};

pub use fingerprints::Fingerprints;
pub use rules::{verdict, verdict_with};

/// Overall status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Blocked,
    Down,
    Inconclusive,
}

/// How something was blocked (DESIGN.md's vocabulary).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Mechanism {
    #[serde(rename = "dns.injection")]
    DnsInjection,
    #[serde(rename = "dns.hijack")]
    DnsHijack,
    #[serde(rename = "dns.nxdomain")]
    DnsNxdomain,
    #[serde(rename = "dns.timeout")]
    DnsTimeout,
    /// DNS over TCP cut by a reset or a close (the query was seen on a
    /// stream and killed; a UDP drop would be `dns.timeout`).
    #[serde(rename = "dns.reset")]
    DnsReset,
    #[serde(rename = "tcp.reset")]
    TcpReset,
    #[serde(rename = "tcp.timeout")]
    TcpTimeout,
    #[serde(rename = "tcp.refused")]
    TcpRefused,
    #[serde(rename = "tls.reset")]
    TlsReset,
    #[serde(rename = "tls.timeout")]
    TlsTimeout,
    #[serde(rename = "tls.mitm")]
    TlsMitm,
    #[serde(rename = "http.blockpage")]
    HttpBlockpage,
    #[serde(rename = "http.diff")]
    HttpDiff,
    #[serde(rename = "http.reset")]
    HttpReset,
    /// The body came at a small fraction of the controls' rate.
    #[serde(rename = "http.throttle")]
    HttpThrottle,
    #[serde(rename = "quic.timeout")]
    QuicTimeout,
    #[serde(rename = "udp.drop")]
    UdpDrop,
    #[serde(rename = "vpn.blocked")]
    VpnBlocked,
    #[serde(rename = "residual")]
    Residual,
    /// The store lists the app in the control storefront but not in the
    /// tested one: removed from that country's store, not from the network.
    #[serde(rename = "store.removed")]
    StoreRemoved,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Ok => "ok",
            Status::Blocked => "blocked",
            Status::Down => "down",
            Status::Inconclusive => "inconclusive",
        })
    }
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        f.write_str(&s)
    }
}

/// A verdict for one inside measurement.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub status: Status,
    pub mechanism: Option<Mechanism>,
    /// 0..1: how sure the rule is.
    pub confidence: f32,
    /// Measurement ids the verdict rests on (inside first).
    pub evidence: Vec<String>,
    pub reason: String,
    /// Inside measurements (agents) of the run that reached this verdict.
    #[serde(skip)]
    pub inside_agree: u32,
    /// Control measurements that back it (0: none, or not counted).
    #[serde(skip)]
    pub controls_agree: u32,
}

/// A stable key for "the same target": kind, address, port and names, so
/// inside and control results pair up. Options that change what is
/// measured are appended only when set, so keys of plain inputs never change.
pub fn target_key(m: &Measurement) -> String {
    let Some(input) = &m.input else {
        return "none".into();
    };
    let k = input.kind_name();
    let opt = |name: &str, v: &str| {
        if v.is_empty() {
            String::new()
        } else {
            format!(" {name}={v}")
        }
    };
    let what = match &input.kind {
        Some(Kind::Dns(d)) | Some(Kind::DnsInjection(d)) => format!(
            "{} @{}{}{}",
            d.domain,
            d.resolver,
            opt("qtype", if d.qtype == "A" { "" } else { &d.qtype }),
            opt(
                "transport",
                if d.transport == "udp" {
                    ""
                } else {
                    &d.transport
                }
            )
        ),
        Some(Kind::Tcp(t)) => format!("{}:{}", t.host, t.port),
        Some(Kind::Tls(t)) => format!("{}:{} sni={}", t.ip, t.port, t.sni),
        Some(Kind::Http(h)) => format!(
            "{}{}{}{}{}",
            h.url,
            if h.ip.is_empty() {
                String::new()
            } else {
                format!(" @{}", h.ip)
            },
            if h.port == 0 {
                String::new()
            } else {
                format!(" port={}", h.port)
            },
            opt("host", &h.host_header),
            opt("sni", &h.sni)
        ),
        Some(Kind::Web(w)) => format!("{}{}", w.url, opt("resolver", &w.resolver)),
        Some(Kind::Quic(q)) => format!("{}:{} sni={}", q.ip, q.port, q.sni),
        Some(Kind::Openvpn(o)) => format!("{}:{}/{}", o.ip, o.port, o.transport),
        Some(Kind::Tor(t)) => format!("{}:{}", t.ip, t.port),
        Some(Kind::Encrypted(e)) => format!("{}:{}", e.ip, e.port),
        Some(Kind::Wireguard(w)) => format!("{}:{}", w.ip, w.port),
        // The storefront is part of the target: `app_store 932747118@cn`
        // and `@ru` are two series.
        Some(Kind::AppStore(a)) => format!(
            "{}@{}{}{}",
            if a.app_id.is_empty() {
                &a.bundle_id
            } else {
                &a.app_id
            },
            a.storefront,
            opt("control", &a.control_storefront),
            opt("store", &a.base_url)
        ),
        None => String::new(),
    };
    format!("{k} {what}")
}

/// Verdicts for a whole run: each inside measurement against the control
/// measurements of the same target. Returns (inside id, target key,
/// verdict), sorted by target then id.
pub fn analyze_run(
    inside: &[Measurement],
    control: &[Measurement],
) -> Vec<(String, String, Verdict)> {
    analyze_run_with(inside, control, Fingerprints::builtin())
}

/// [`analyze_run`] with the given block-page fingerprints. Verdicts that
/// several inside agents reach for one target gain confidence
/// ([`rules::support_factor`]), and every counted verdict says how many
/// measurements back it.
pub fn analyze_run_with(
    inside: &[Measurement],
    control: &[Measurement],
    fps: &Fingerprints,
) -> Vec<(String, String, Verdict)> {
    let mut by_target: BTreeMap<String, Vec<&Measurement>> = BTreeMap::new();
    for c in control {
        by_target.entry(target_key(c)).or_default().push(c);
    }
    let mut out: Vec<(String, String, Verdict)> = inside
        .iter()
        .map(|m| {
            let key = target_key(m);
            let controls = by_target.get(&key).cloned().unwrap_or_default();
            (m.id.clone(), key, verdict_with(m, &controls, fps))
        })
        .collect();
    refine_udp_drop(inside, &mut out);
    count_agreement(&mut out);
    out.sort_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(&b.0)));
    out
}

/// Raises each counted verdict's confidence by the other inside agents of
/// the run that reached the same status and mechanism for the target, and
/// says in its reason how many measurements back it.
fn count_agreement(out: &mut [(String, String, Verdict)]) {
    let mut same: BTreeMap<(String, Status, Option<String>), u32> = BTreeMap::new();
    let key = |t: &str, v: &Verdict| (t.to_string(), v.status, v.mechanism.map(|m| m.to_string()));
    for (_, t, v) in out.iter() {
        *same.entry(key(t, v)).or_default() += 1;
    }
    for (_, t, v) in out.iter_mut() {
        if v.inside_agree == 0 {
            continue;
        }
        let i = same.get(&key(t, v)).copied().unwrap_or(1);
        let c = v.controls_agree;
        let base = rules::support_factor(1, c);
        if base > 0.0 {
            v.confidence = (v.confidence / base * rules::support_factor(i, c)).clamp(0.0, 1.0);
        }
        v.inside_agree = i;
        v.reason = format!(
            "{} [{i} inside and {c} control measurement{} agree]",
            v.reason,
            if c == 1 { "" } else { "s" }
        );
    }
}

/// The address a UDP probe sends to, if `m` is one.
fn udp_address(m: &Measurement) -> Option<String> {
    let ip = |s: &str| {
        s.parse::<std::net::SocketAddr>()
            .map(|a| a.ip().to_string())
            .ok()
            .or_else(|| Some(s.trim_matches(['[', ']']).to_string()))
            .filter(|s| !s.is_empty())
    };
    match &m.input.as_ref()?.kind {
        Some(Kind::Openvpn(o)) if o.transport != "tcp" => ip(&o.ip),
        Some(Kind::Wireguard(w)) => ip(&w.ip),
        Some(Kind::Quic(q)) => ip(&q.ip),
        Some(Kind::Dns(d)) if matches!(d.transport.as_str(), "" | "udp") => ip(&d.resolver),
        _ => None,
    }
}

/// `udp.drop`: when one inside agent finds two or more different UDP
/// protocols to the same address silently blocked in one run (while the
/// controls get replies), the address's UDP is dropped wholesale; the
/// protocol-specific labels (`vpn.blocked`, `quic.timeout`, `dns.timeout`)
/// would overstate what the censor detected. Needs two protocols, so a lone
/// blocked VPN probe stays `vpn.blocked`.
fn refine_udp_drop(inside: &[Measurement], out: &mut [(String, String, Verdict)]) {
    let silent = |v: &Verdict| {
        v.status == Status::Blocked
            && matches!(
                v.mechanism,
                Some(Mechanism::VpnBlocked | Mechanism::QuicTimeout | Mechanism::DnsTimeout)
            )
    };
    // (agent, address) -> kinds silently blocked
    let mut kinds: BTreeMap<(&str, String), std::collections::BTreeSet<&str>> = BTreeMap::new();
    let mut hits: Vec<(usize, (&str, String))> = Vec::new();
    for (i, (m, (_, _, v))) in inside.iter().zip(out.iter()).enumerate() {
        let timeout =
            rules::failure_of(m).is_some_and(|(f, _)| f == vantage_proto::failure::GENERIC_TIMEOUT);
        if let (true, true, Some(addr)) = (silent(v), timeout, udp_address(m)) {
            let kind = m.input.as_ref().map_or("none", |i| i.kind_name());
            let key = (m.agent_id.as_str(), addr);
            kinds.entry(key.clone()).or_default().insert(kind);
            hits.push((i, key));
        }
    }
    for (i, key) in hits {
        let Some(ks) = kinds.get(&key).filter(|k| k.len() >= 2) else {
            continue;
        };
        if let Some((_, _, v)) = out.get_mut(i) {
            v.reason = format!(
                "{}; every UDP protocol tried to {} ({}) goes unanswered: the address's UDP is dropped",
                v.reason,
                key.1,
                ks.iter().copied().collect::<Vec<_>>().join(", ")
            );
            v.mechanism = Some(Mechanism::UdpDrop);
        }
    }
}

/// Whether the measurement is a refusal (no observation was made).
pub(crate) fn is_refusal(m: &Measurement) -> bool {
    matches!(m.result, Some(measurement::Result::Refused(_)) | None)
}
