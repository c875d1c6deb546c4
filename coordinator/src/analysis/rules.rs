//! The rules, one function per concern. Thresholds name their sources.

use std::collections::HashSet;
use std::net::IpAddr;

use vantage_proto::failure as f;
use vantage_proto::v1::{
    measurement::Result as R, DnsResult, HttpResponse, HttpResult, Measurement,
};

use super::{is_refusal, Mechanism as M, Status, Verdict};

/// OONI web_connectivity: bodies "match" when the smaller is at least 70 %
/// of the larger (body_proportion > 0.7).
pub(crate) const BODY_PROPORTION: f64 = 0.7;

/// Confidence when answers merely differ from the control's: Censored
/// Planet notes CDNs and geo-DNS legitimately return different addresses.
const DISJOINT_ANSWERS_CONFIDENCE: f32 = 0.6;

/// A measurement reduced to pass/fail at one operation.
struct Outcome {
    failure: Option<(String, String)>,
}

impl Outcome {
    fn ok(&self) -> bool {
        self.failure.is_none()
    }
}

fn fail_of(x: &Option<vantage_proto::v1::Failure>) -> Option<(String, String)> {
    x.as_ref()
        .filter(|f| !f.failure.is_empty())
        .map(|f| (f.failure.clone(), f.operation.clone()))
}

fn outcome(m: &Measurement) -> Outcome {
    let failure = match &m.result {
        Some(R::Dns(d)) | Some(R::DnsInjection(d)) => fail_of(&d.failure),
        Some(R::Tcp(t)) => fail_of(&t.failure),
        Some(R::Tls(t)) => t.handshake.as_ref().and_then(|h| fail_of(&h.failure)),
        Some(R::Http(h)) => fail_of(&h.failure),
        Some(R::Web(w)) => fail_of(&w.failure)
            .or_else(|| w.dns.as_ref().and_then(|d| fail_of(&d.failure)))
            .or_else(|| w.tls.as_ref().and_then(|t| fail_of(&t.failure)))
            .or_else(|| w.http.as_ref().and_then(|h| fail_of(&h.failure)))
            .or_else(|| {
                // Every TCP attempt failed.
                if !w.tcp.is_empty() && w.tcp.iter().all(|t| fail_of(&t.failure).is_some()) {
                    w.tcp.last().and_then(|t| fail_of(&t.failure))
                } else {
                    None
                }
            }),
        Some(R::Quic(q)) => fail_of(&q.failure),
        Some(R::Openvpn(o)) => fail_of(&o.failure).or_else(|| {
            (!o.server_reset_received).then(|| (f::GENERIC_TIMEOUT.into(), f::op::READ.into()))
        }),
        Some(R::Tor(t)) => fail_of(&t.failure),
        Some(R::Encrypted(e)) => fail_of(&e.trigger),
        Some(R::Wireguard(w)) => fail_of(&w.failure).or_else(|| {
            (!w.response_received).then(|| (f::GENERIC_TIMEOUT.into(), f::op::READ.into()))
        }),
        Some(R::Refused(r)) => Some((format!("refused: {}", r.reason), String::new())),
        None => Some(("no result".into(), String::new())),
    };
    Outcome { failure }
}

/// Maps a failure at an operation to a mechanism.
fn mechanism(m: &Measurement, failure: &str, op: &str) -> M {
    match &m.result {
        Some(R::Openvpn(_)) | Some(R::Wireguard(_)) => return M::VpnBlocked,
        Some(R::Quic(_)) => return M::QuicTimeout,
        _ => {}
    }
    let reset = failure == f::CONNECTION_RESET || failure == f::EOF;
    let timeout = failure == f::GENERIC_TIMEOUT;
    match op {
        f::op::RESOLVE => match failure {
            f::DNS_NXDOMAIN => M::DnsNxdomain,
            _ => M::DnsTimeout,
        },
        f::op::TLS_HANDSHAKE if reset => M::TlsReset,
        f::op::TLS_HANDSHAKE if timeout => M::TlsTimeout,
        f::op::TLS_HANDSHAKE => M::TlsMitm,
        f::op::QUIC_HANDSHAKE => M::QuicTimeout,
        f::op::HTTP_ROUND_TRIP | f::op::READ | f::op::WRITE if reset => M::HttpReset,
        _ if reset => M::TcpReset,
        _ if timeout => M::TcpTimeout,
        _ => M::TcpRefused,
    }
}

fn v(
    status: Status,
    mech: Option<M>,
    confidence: f32,
    evidence: Vec<String>,
    reason: impl Into<String>,
) -> Verdict {
    Verdict {
        status,
        mechanism: mech,
        confidence,
        evidence,
        reason: reason.into(),
    }
}

fn answers(d: &DnsResult, idx: usize) -> HashSet<String> {
    d.replies
        .get(idx)
        .map(|r| {
            r.answers
                .iter()
                .filter(|a| a.rtype == "A" || a.rtype == "AAAA")
                .map(|a| a.data.clone())
                .collect()
        })
        .unwrap_or_default()
}

fn all_answers(d: &DnsResult) -> HashSet<String> {
    (0..d.replies.len()).flat_map(|i| answers(d, i)).collect()
}

fn dns_of(m: &Measurement) -> Option<&DnsResult> {
    match &m.result {
        Some(R::Dns(d)) | Some(R::DnsInjection(d)) => Some(d),
        Some(R::Web(w)) => w.dns.as_ref(),
        _ => None,
    }
}

/// Two or more well-formed replies whose first answer set differs from a
/// later one: the first was forged on path (GFW-style injection races the
/// genuine answer; Anonymous et al., "Triplet Censors", FOCI 2014).
fn injected(d: &DnsResult) -> bool {
    let good: Vec<usize> = (0..d.replies.len())
        .filter(|i| !d.replies[*i].malformed)
        .collect();
    good.len() >= 2
        && good[1..]
            .iter()
            .any(|i| answers(d, *i) != answers(d, good[0]))
}

fn first_answers(d: &DnsResult) -> HashSet<String> {
    (0..d.replies.len())
        .find(|i| !d.replies[*i].malformed)
        .map(|i| answers(d, i))
        .unwrap_or_default()
}

/// /24 (IPv4) or /48 (IPv6) prefix, to tolerate nearby CDN addresses.
fn prefix(ip: &str) -> Option<String> {
    match ip.parse::<IpAddr>().ok()? {
        IpAddr::V4(a) => {
            let o = a.octets();
            Some(format!("{}.{}.{}", o[0], o[1], o[2]))
        }
        IpAddr::V6(a) => {
            let s = a.segments();
            Some(format!("{:x}:{:x}:{:x}", s[0], s[1], s[2]))
        }
    }
}

fn is_bogon(ip: &str) -> bool {
    ip.parse::<IpAddr>()
        .ok()
        .and_then(vantage_proto::ranges::special_range)
        .is_some_and(|r| r != "benchmarking")
}

fn final_hop(h: &HttpResult) -> Option<&HttpResponse> {
    h.chain.last()
}

fn http_of(m: &Measurement) -> Option<&HttpResult> {
    match &m.result {
        Some(R::Http(h)) => Some(h),
        Some(R::Web(w)) => w.http.as_ref(),
        _ => None,
    }
}

/// Compares the final HTTP responses (OONI web_connectivity's checks: body
/// proportion, status code, title).
fn http_compare(inside: &HttpResponse, control: &HttpResponse) -> Option<(M, f32, String)> {
    if inside.body_sha256 == control.body_sha256 {
        return None;
    }
    let (a, b) = (inside.body_length as f64, control.body_length as f64);
    let proportion = if a.max(b) == 0.0 {
        1.0
    } else {
        a.min(b) / a.max(b)
    };
    let status_match = inside.status == control.status;
    let title_match = !inside.title.is_empty() && inside.title == control.title;
    if status_match && (proportion > BODY_PROPORTION || title_match) {
        return None;
    }
    if status_match {
        Some((
            M::HttpBlockpage,
            0.8,
            format!(
                "a different page was served: title {:?} vs control {:?}, body proportion {proportion:.2} <= {BODY_PROPORTION}",
                inside.title, control.title
            ),
        ))
    } else {
        Some((
            M::HttpDiff,
            0.6,
            format!("status {} vs control {}", inside.status, control.status),
        ))
    }
}

/// The verdict for one inside measurement against its controls.
pub fn verdict(inside: &Measurement, controls: &[&Measurement]) -> Verdict {
    let mut evidence = vec![inside.id.clone()];
    if let Some(R::Refused(r)) = &inside.result {
        return v(
            Status::Inconclusive,
            None,
            0.0,
            evidence,
            format!("the inside agent refused: {}", r.reason),
        );
    }
    if inside.result.is_none() {
        return v(
            Status::Inconclusive,
            None,
            0.0,
            evidence,
            "the inside measurement has no result",
        );
    }
    let usable: Vec<&Measurement> = controls
        .iter()
        .copied()
        .filter(|c| !is_refusal(c))
        .collect();
    evidence.extend(usable.iter().map(|c| c.id.clone()));

    // Rules that need no control.
    match &inside.result {
        Some(R::DnsInjection(d)) => {
            if d.replies.is_empty() {
                return v(
                    Status::Ok,
                    None,
                    0.9,
                    evidence,
                    "no reply from an address that runs no DNS server",
                );
            }
            if usable
                .iter()
                .any(|c| dns_of(c).is_some_and(|cd| !cd.replies.is_empty()))
            {
                return v(
                    Status::Inconclusive,
                    None,
                    0.3,
                    evidence,
                    "the address answers DNS for the control too",
                );
            }
            return v(
                Status::Blocked,
                Some(M::DnsInjection),
                1.0,
                evidence,
                format!(
                    "{} reply(ies) from an address that runs no DNS server",
                    d.replies.len()
                ),
            );
        }
        Some(R::Dns(d)) if injected(d) => {
            return v(Status::Blocked, Some(M::DnsInjection), 0.95, evidence, "the first reply's answers differ from a later reply's: forged reply raced the genuine one");
        }
        Some(R::Web(w)) if w.dns.as_ref().is_some_and(injected) => {
            return v(
                Status::Blocked,
                Some(M::DnsInjection),
                0.95,
                evidence,
                "two DNS replies, the first forged",
            );
        }
        Some(R::Tls(t)) => {
            // SNI filtering within one task: the sensitive SNI fails where an
            // innocuous SNI to the same address succeeds.
            if let (Some(h), Some(c)) = (&t.handshake, &t.control) {
                if let (Some((fl, op)), None) = (fail_of(&h.failure), fail_of(&c.failure)) {
                    return v(Status::Blocked, Some(mechanism(inside, &fl, &op)), 0.9, evidence, format!("{fl} at {op} with SNI {:?}, while SNI {:?} to the same address succeeded", h.sni, c.sni));
                }
            }
        }
        Some(R::Encrypted(e)) if e.residual_blocking => {
            // GFW Report (USENIX Security 2023): after a trigger, the
            // 3-tuple stays blocked for up to 180 s.
            return v(Status::Blocked, Some(M::Residual), 0.85, evidence, "re-tests of the same address and port failed after the random-payload trigger (residual blocking)");
        }
        _ => {}
    }

    if usable.is_empty() {
        return v(
            Status::Inconclusive,
            None,
            0.0,
            evidence,
            "no usable control measurement for this target",
        );
    }
    let ok_controls = usable.iter().filter(|c| outcome(c).ok()).count();
    let failed_controls = usable.len() - ok_controls;
    let inside_out = outcome(inside);

    if let Some((failure, op)) = &inside_out.failure {
        if failed_controls > ok_controls {
            return v(
                Status::Down,
                None,
                0.8,
                evidence,
                format!(
                    "{failure} inside, and {failed_controls}/{} controls fail too",
                    usable.len()
                ),
            );
        }
        if failed_controls == ok_controls {
            return v(
                Status::Inconclusive,
                None,
                0.3,
                evidence,
                "controls disagree among themselves",
            );
        }
        let mech = mechanism(inside, failure, op);
        let reason = if op.is_empty() {
            failure.clone()
        } else {
            format!("{failure} at {op}")
        };
        return v(
            Status::Blocked,
            Some(mech),
            0.85,
            evidence,
            format!(
                "{reason} inside, while {ok_controls}/{} controls succeed",
                usable.len()
            ),
        );
    }

    // Inside succeeded: compare what it saw with the controls.
    let reference = usable.iter().copied().find(|c| outcome(c).ok());
    if let (Some(d), Some(r)) = (dns_of(inside), reference) {
        if let Some(cd) = dns_of(r) {
            let ins = first_answers(d);
            let ctl = all_answers(cd);
            if let Some(b) = ins.iter().find(|ip| is_bogon(ip)) {
                if !ctl.contains(b) {
                    return v(
                        Status::Blocked,
                        Some(M::DnsHijack),
                        0.9,
                        evidence,
                        format!("answer {b} is a bogon; the control got {:?}", sorted(&ctl)),
                    );
                }
            }
            let ins_p: HashSet<_> = ins.iter().filter_map(|i| prefix(i)).collect();
            let ctl_p: HashSet<_> = ctl.iter().filter_map(|i| prefix(i)).collect();
            if !ins.is_empty() && !ctl.is_empty() && ins_p.is_disjoint(&ctl_p) {
                return v(
                    Status::Blocked,
                    Some(M::DnsHijack),
                    DISJOINT_ANSWERS_CONFIDENCE,
                    evidence,
                    format!(
                        "answers {:?} share no /24 with the control's {:?} (may be a CDN)",
                        sorted(&ins),
                        sorted(&ctl)
                    ),
                );
            }
        }
    }
    if let (Some(R::Tls(t)), Some(r)) = (&inside.result, reference) {
        if let (Some(h), Some(R::Tls(ct))) = (&t.handshake, &r.result) {
            if let Some(ch) = &ct.handshake {
                if h.webpki != "valid" && ch.webpki == "valid" && h.chain_sha256 != ch.chain_sha256
                {
                    return v(
                        Status::Blocked,
                        Some(M::TlsMitm),
                        0.8,
                        evidence,
                        format!(
                            "certificate chain differs from the control's and WebPKI says {}",
                            h.webpki
                        ),
                    );
                }
            }
        }
    }
    if let (Some(h), Some(r)) = (http_of(inside), reference.and_then(http_of)) {
        if let (Some(a), Some(b)) = (final_hop(h), final_hop(r)) {
            if let Some((mech, conf, reason)) = http_compare(a, b) {
                return v(Status::Blocked, Some(mech), conf, evidence, reason);
            }
        }
    }
    v(
        Status::Ok,
        None,
        0.9,
        evidence,
        "inside matches the control",
    )
}

fn sorted(s: &HashSet<String>) -> Vec<String> {
    let mut v: Vec<String> = s.iter().cloned().collect();
    v.sort();
    v
}

#[cfg(test)]
mod tests;
