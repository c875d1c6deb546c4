//! Verdicts: pure functions from a run's inside result and the control
//! results for the same target to `{status, mechanism, confidence,
//! evidence}`. No I/O; everything here is testable without a network.
//!
//! Statuses: `ok`, `blocked`, `down` (the controls fail the same way),
//! `inconclusive` (no usable control, controls disagree, or the inside agent
//! refused the task). Each rule names its threshold and source beside it.

mod rules;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use vantage_proto::v1::{measurement, probe_input::Kind, Measurement};

pub use rules::verdict;

/// Overall status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
    #[serde(rename = "quic.timeout")]
    QuicTimeout,
    #[serde(rename = "udp.drop")]
    UdpDrop,
    #[serde(rename = "vpn.blocked")]
    VpnBlocked,
    #[serde(rename = "residual")]
    Residual,
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
}

/// A stable key for "the same target": the probe input as canonical JSON
/// (kind, address, port, names), so inside and control results pair up.
pub fn target_key(m: &Measurement) -> String {
    let Some(input) = &m.input else {
        return "none".into();
    };
    let k = input.kind_name();
    let what = match &input.kind {
        Some(Kind::Dns(d)) | Some(Kind::DnsInjection(d)) => format!("{} @{}", d.domain, d.resolver),
        Some(Kind::Tcp(t)) => format!("{}:{}", t.host, t.port),
        Some(Kind::Tls(t)) => format!("{}:{} sni={}", t.ip, t.port, t.sni),
        Some(Kind::Http(h)) => format!(
            "{}{}",
            h.url,
            if h.ip.is_empty() {
                String::new()
            } else {
                format!(" @{}", h.ip)
            }
        ),
        Some(Kind::Web(w)) => w.url.clone(),
        Some(Kind::Quic(q)) => format!("{}:{} sni={}", q.ip, q.port, q.sni),
        Some(Kind::Openvpn(o)) => format!("{}:{}/{}", o.ip, o.port, o.transport),
        Some(Kind::Tor(t)) => format!("{}:{}", t.ip, t.port),
        Some(Kind::Encrypted(e)) => format!("{}:{}", e.ip, e.port),
        Some(Kind::Wireguard(w)) => format!("{}:{}", w.ip, w.port),
        None => String::new(),
    };
    format!("{k} {what}")
}

/// Verdicts for a whole run: each inside measurement against the control
/// measurements of the same target. Returns (inside id, target key, verdict).
pub fn analyze_run(
    inside: &[Measurement],
    control: &[Measurement],
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
            (m.id.clone(), key, verdict(m, &controls))
        })
        .collect();
    out.sort_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(&b.0)));
    out
}

/// Whether the measurement is a refusal (no observation was made).
pub(crate) fn is_refusal(m: &Measurement) -> bool {
    matches!(m.result, Some(measurement::Result::Refused(_)) | None)
}
