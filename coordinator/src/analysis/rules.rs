//! The rules, one function per concern, applied in a fixed order by
//! [`verdict`]. Every threshold names its source beside it.
//!
//! Order: refusal -> control-free evidence (injection, in-task SNI
//! comparison, residual blocking) -> no usable control -> inside failed
//! (down / disagree / blocked by failing step) -> inside succeeded (DNS
//! consistency, certificate, HTTP comparison) -> ok.

use std::collections::HashSet;
use std::net::IpAddr;

use vantage_proto::failure as f;
use vantage_proto::v1::{
    measurement::Result as R, DnsResult, HttpResponse, HttpResult, Measurement, TlsHandshake,
};

use super::{is_refusal, Mechanism as M, Status, Verdict};

/// OONI web_connectivity: bodies "match" when the smaller is more than 70 %
/// of the larger (body_proportion > 0.7).
pub(crate) const BODY_PROPORTION: f64 = 0.7;

/// Confidence when answers merely differ from the control's: Censored
/// Planet notes CDNs and geo-DNS legitimately return different addresses.
const DISJOINT_ANSWERS_CONFIDENCE: f32 = 0.6;

/// HTTP 451 "Unavailable For Legal Reasons" (RFC 7725) is a block page by
/// definition.
const HTTP_LEGAL_BLOCK: u32 = 451;

/// A failure and the operation it happened at.
type Fail = (String, String);

fn fail_of(x: &Option<vantage_proto::v1::Failure>) -> Option<Fail> {
    x.as_ref()
        .filter(|f| !f.failure.is_empty())
        .map(|f| (f.failure.clone(), f.operation.clone()))
}

fn hs_fail(h: &Option<TlsHandshake>) -> Option<Fail> {
    h.as_ref().and_then(|h| fail_of(&h.failure))
}

/// The first failure that stopped the measurement, if any.
pub(super) fn failure_of(m: &Measurement) -> Option<Fail> {
    match &m.result {
        Some(R::Dns(d)) | Some(R::DnsInjection(d)) => fail_of(&d.failure),
        Some(R::Tcp(t)) => fail_of(&t.failure),
        Some(R::Tls(t)) => hs_fail(&t.handshake),
        Some(R::Http(h)) => fail_of(&h.failure).or_else(|| hs_fail(&h.tls)),
        Some(R::Web(w)) => fail_of(&w.failure)
            .or_else(|| w.dns.as_ref().and_then(|d| fail_of(&d.failure)))
            .or_else(|| {
                // Every TCP attempt failed.
                if !w.tcp.is_empty() && w.tcp.iter().all(|t| fail_of(&t.failure).is_some()) {
                    w.tcp.last().and_then(|t| fail_of(&t.failure))
                } else {
                    None
                }
            })
            .or_else(|| hs_fail(&w.tls))
            .or_else(|| w.http.as_ref().and_then(|h| fail_of(&h.failure))),
        Some(R::Quic(q)) => fail_of(&q.failure),
        Some(R::Openvpn(o)) => fail_of(&o.failure).or_else(|| {
            (!o.server_reset_received).then(|| (f::GENERIC_TIMEOUT.into(), f::op::READ.into()))
        }),
        Some(R::Tor(t)) => fail_of(&t.failure).or_else(|| hs_fail(&t.tls)),
        Some(R::Encrypted(e)) => fail_of(&e.trigger),
        Some(R::Wireguard(w)) => fail_of(&w.failure).or_else(|| {
            (!w.response_received).then(|| (f::GENERIC_TIMEOUT.into(), f::op::READ.into()))
        }),
        Some(R::Refused(r)) => Some((format!("refused: {}", r.reason), String::new())),
        None => Some(("no result".into(), String::new())),
    }
}

fn is_reset(failure: &str) -> bool {
    failure == f::CONNECTION_RESET || failure == f::EOF
}

fn is_timeout(failure: &str) -> bool {
    failure == f::GENERIC_TIMEOUT
}

/// A certificate the client would not trust: with a working control, the
/// sign of an interception proxy (OONI's `ssl_*` certificate failures).
fn is_cert_failure(failure: &str) -> bool {
    matches!(
        failure,
        f::SSL_UNKNOWN_AUTHORITY | f::SSL_INVALID_HOSTNAME | f::SSL_INVALID_CERTIFICATE
    )
}

/// Maps a failure at an operation to a mechanism, knowing the probe kind.
fn mechanism(m: &Measurement, failure: &str, op: &str) -> M {
    let at_connect = op == f::op::CONNECT;
    match &m.result {
        // A TCP-transport VPN probe that cannot even connect is an IP/port
        // block, not protocol detection; anything later is the VPN blocked.
        Some(R::Openvpn(_)) | Some(R::Wireguard(_)) if !at_connect => return M::VpnBlocked,
        Some(R::Quic(_)) => return M::QuicTimeout,
        Some(R::Dns(_)) | Some(R::DnsInjection(_)) if !at_connect => {
            return dns_mechanism(failure);
        }
        _ => {}
    }
    match op {
        f::op::RESOLVE => dns_mechanism(failure),
        f::op::TLS_HANDSHAKE if is_timeout(failure) => M::TlsTimeout,
        f::op::TLS_HANDSHAKE if is_cert_failure(failure) => M::TlsMitm,
        // Resets, EOFs, alerts: the handshake was torn down.
        f::op::TLS_HANDSHAKE => M::TlsReset,
        f::op::QUIC_HANDSHAKE => M::QuicTimeout,
        // After the handshake a reset hits the HTTP exchange (Host/keyword
        // filtering); for other kinds it is a plain TCP reset.
        f::op::HTTP_ROUND_TRIP | f::op::READ | f::op::WRITE
            if is_reset(failure) && matches!(m.result, Some(R::Http(_)) | Some(R::Web(_))) =>
        {
            M::HttpReset
        }
        _ if is_reset(failure) => M::TcpReset,
        _ if is_timeout(failure) => M::TcpTimeout,
        _ => M::TcpRefused,
    }
}

/// NXDOMAIN, and error answers for a name the control resolves (NODATA,
/// REFUSED, SERVFAIL: a resolver denying the name), are `dns.nxdomain`;
/// silence and transport errors are `dns.timeout`.
fn dns_mechanism(failure: &str) -> M {
    match failure {
        f::DNS_NXDOMAIN | f::DNS_NO_ANSWER | f::DNS_REFUSED | f::DNS_SERVFAIL => M::DnsNxdomain,
        _ => M::DnsTimeout,
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
        confidence: confidence.clamp(0.0, 1.0),
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
/// genuine answer; Anonymous, "Towards a Comprehensive Picture of the
/// Great Firewall's DNS Censorship", FOCI 2014).
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

/// /24 (IPv4) or /48 (IPv6) prefix: OONI's DNS consistency compares ASNs,
/// which the coordinator does not have, so nearby addresses of one
/// operator count as consistent.
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

/// Answers in special-purpose ranges (private, loopback, ...) are what
/// censors hand out (Censored Planet, Satellite). The benchmarking range
/// is excluded because the lab's genuine servers live there.
fn is_bogon(ip: &str) -> bool {
    ip.parse::<IpAddr>()
        .ok()
        .and_then(vantage_proto::ranges::special_range)
        .is_some_and(|r| r != "benchmarking")
}

/// OONI web_connectivity: a TLS handshake that WebPKI verifies for the
/// name proves the address genuinely serves it, whatever the control saw.
fn tls_verified(m: &Measurement) -> bool {
    match &m.result {
        Some(R::Web(w)) => w
            .tls
            .as_ref()
            .is_some_and(|t| fail_of(&t.failure).is_none() && t.webpki == "valid"),
        _ => false,
    }
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
    if inside.status == HTTP_LEGAL_BLOCK && control.status != HTTP_LEGAL_BLOCK {
        return Some((
            M::HttpBlockpage,
            0.95,
            "HTTP 451 Unavailable For Legal Reasons".into(),
        ));
    }
    if !inside.body_sha256.is_empty() && inside.body_sha256 == control.body_sha256 {
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
                "a different page was served: title {:?} vs control {:?}, body proportion \
                 {proportion:.2} <= {BODY_PROPORTION}",
                inside.title, control.title
            ),
        ))
    } else if !inside.title.is_empty() && !title_match && proportion <= BODY_PROPORTION {
        // A page of its own under an error status: many national block
        // pages answer 403 (OONI's fingerprint list has dozens), so a
        // different titled page is a block page, not a mere difference.
        Some((
            M::HttpBlockpage,
            0.7,
            format!(
                "status {} vs control {} and a different page: title {:?} vs control {:?}, \
                 body proportion {proportion:.2} <= {BODY_PROPORTION}",
                inside.status, control.status, inside.title, control.title
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

/// The verdict for one inside measurement against its controls (control
/// measurements of the same target in the same run).
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

    if let Some(found) = control_free(inside, &usable, &evidence) {
        return found;
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
    let ok_controls = usable.iter().filter(|c| failure_of(c).is_none()).count();
    let failed_controls = usable.len() - ok_controls;

    if let Some((failure, op)) = failure_of(inside) {
        // Majority of controls decides; a tie is controls disagreeing.
        if failed_controls > ok_controls {
            return v(
                Status::Down,
                None,
                0.5 + 0.4 * failed_controls as f32 / usable.len() as f32,
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
        let mech = mechanism(inside, &failure, &op);
        let reason = if op.is_empty() {
            failure.clone()
        } else {
            format!("{failure} at {op}")
        };
        let base = match mech {
            // An alert or odd handshake failure is weaker evidence.
            M::TlsReset if !is_reset(&failure) => 0.6,
            // Error answers other than NXDOMAIN may be resolver trouble.
            M::DnsNxdomain if failure != f::DNS_NXDOMAIN => 0.6,
            _ => 0.9,
        };
        return v(
            Status::Blocked,
            Some(mech),
            base * ok_controls as f32 / usable.len() as f32,
            evidence,
            format!(
                "{reason} inside, while {ok_controls}/{} controls succeed",
                usable.len()
            ),
        );
    }

    // Inside succeeded: compare what it saw with a control that succeeded.
    let reference = usable.iter().copied().find(|c| failure_of(c).is_none());
    if let Some(d) = dns_of(inside) {
        if let Some(found) = dns_consistency(inside, d, reference, &evidence) {
            return found;
        }
    }
    if let (Some(R::Tls(t)), Some(r)) = (&inside.result, reference) {
        if let (Some(h), Some(R::Tls(ct))) = (&t.handshake, &r.result) {
            if let Some(ch) = &ct.handshake {
                // Interception: a chain WebPKI rejects, unlike the control's.
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
    let reason = if reference.is_some() {
        "inside matches the control"
    } else {
        "inside succeeded (the controls failed)"
    };
    v(Status::Ok, None, 0.9, evidence, reason)
}

/// Evidence that needs no control measurement.
fn control_free(
    inside: &Measurement,
    usable: &[&Measurement],
    evidence: &[String],
) -> Option<Verdict> {
    let evidence = evidence.to_vec();
    match &inside.result {
        Some(R::DnsInjection(d)) => {
            // Any reply from an address that runs no DNS server was
            // injected on path (the GFW answers for any destination).
            if d.replies.is_empty() {
                return Some(v(
                    Status::Ok,
                    None,
                    0.9,
                    evidence,
                    "no reply from an address that runs no DNS server",
                ));
            }
            if usable
                .iter()
                .any(|c| dns_of(c).is_some_and(|cd| !cd.replies.is_empty()))
            {
                return Some(v(
                    Status::Inconclusive,
                    None,
                    0.3,
                    evidence,
                    "the address answers DNS for the control too",
                ));
            }
            Some(v(
                Status::Blocked,
                Some(M::DnsInjection),
                1.0,
                evidence,
                format!(
                    "{} reply(ies) from an address that runs no DNS server",
                    d.replies.len()
                ),
            ))
        }
        Some(R::Dns(d)) if injected(d) => Some(v(
            Status::Blocked,
            Some(M::DnsInjection),
            0.95,
            evidence,
            "the first reply's answers differ from a later reply's: a forged reply raced the genuine one",
        )),
        Some(R::Web(w)) if w.dns.as_ref().is_some_and(injected) => Some(v(
            Status::Blocked,
            Some(M::DnsInjection),
            0.95,
            evidence,
            "two DNS replies, the first forged",
        )),
        Some(R::Tls(t)) => {
            // SNI filtering within one task: the sensitive SNI fails where an
            // innocuous SNI to the same address succeeds (Censored Planet's
            // Hyperquack uses the same control-SNI comparison).
            let (h, c) = (t.handshake.as_ref()?, t.control.as_ref()?);
            let (fl, op) = fail_of(&h.failure)?;
            if fail_of(&c.failure).is_some() {
                return None;
            }
            Some(v(
                Status::Blocked,
                Some(mechanism(inside, &fl, &op)),
                0.9,
                evidence,
                format!(
                    "{fl} at {op} with SNI {:?}, while SNI {:?} to the same address succeeded",
                    h.sni, c.sni
                ),
            ))
        }
        // GFW Report (USENIX Security 2023, "How the Great Firewall of China
        // Detects and Blocks Fully Encrypted Traffic"): after a trigger, the
        // 3-tuple stays blocked for up to 180 s.
        Some(R::Encrypted(e)) if e.residual_blocking => Some(v(
            Status::Blocked,
            Some(M::Residual),
            0.85,
            evidence,
            "re-tests of the same address and port failed after the random-payload trigger \
             (residual blocking, up to 180 s)",
        )),
        _ => None,
    }
}

/// OONI's DNS consistency, without ASNs: bogon answers, then answer sets
/// sharing no prefix with the control's, unless TLS verified the address.
fn dns_consistency(
    inside: &Measurement,
    d: &DnsResult,
    reference: Option<&Measurement>,
    evidence: &[String],
) -> Option<Verdict> {
    let ins = first_answers(d);
    let ctl = reference
        .and_then(dns_of)
        .map(all_answers)
        .unwrap_or_default();
    // A bogon the control did not also get needs no working control.
    if let Some(b) = sorted(&ins).into_iter().find(|ip| is_bogon(ip)) {
        if !ctl.contains(&b) {
            return Some(v(
                Status::Blocked,
                Some(M::DnsHijack),
                0.9,
                evidence.to_vec(),
                format!("answer {b} is a bogon; the control got {:?}", sorted(&ctl)),
            ));
        }
    }
    let ins_p: HashSet<_> = ins.iter().filter_map(|i| prefix(i)).collect();
    let ctl_p: HashSet<_> = ctl.iter().filter_map(|i| prefix(i)).collect();
    if ins_p.is_empty() || ctl_p.is_empty() || !ins_p.is_disjoint(&ctl_p) || tls_verified(inside) {
        return None;
    }
    Some(v(
        Status::Blocked,
        Some(M::DnsHijack),
        DISJOINT_ANSWERS_CONFIDENCE,
        evidence.to_vec(),
        format!(
            "answers {:?} share no /24 with the control's {:?} (may be a CDN)",
            sorted(&ins),
            sorted(&ctl)
        ),
    ))
}

fn sorted(s: &HashSet<String>) -> Vec<String> {
    let mut v: Vec<String> = s.iter().cloned().collect();
    v.sort();
    v
}

#[cfg(test)]
mod tests;
