//! The rules, one function per concern, applied in a fixed order by
//! [`verdict`]. Every threshold names its source beside it.
//!
//! Order: refusal -> control-free evidence (injection, in-task SNI
//! comparison, residual blocking) -> app-store listings (in-task
//! storefront comparison) -> no usable control -> inside failed
//! (down / disagree / blocked by failing step) -> inside succeeded (DNS
//! consistency, certificate, HTTP comparison) -> ok.

use std::collections::HashSet;
use std::net::IpAddr;

use vantage_proto::failure as f;
use vantage_proto::v1::{
    measurement::Result as R, AppStoreLookup, DnsResult, HttpResponse, HttpResult, Measurement,
    TlsHandshake,
};

use super::fingerprints::Fingerprints;
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
        // The tested storefront's lookup: the control storefront's is
        // compared by `store_listing`, not a step of the same path.
        Some(R::AppStore(a)) => match a.lookups.first() {
            Some(l) => fail_of(&l.failure),
            None => Some(("no lookup".into(), String::new())),
        },
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
        Some(R::Dns(d)) | Some(R::DnsInjection(d)) if !at_connect => {
            if d.transport == "tcp" && is_reset(failure) {
                return M::DnsReset;
            }
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
            if is_reset(failure) && speaks_http(m) =>
        {
            M::HttpReset
        }
        // A redirect loop only the inside meets, or another odd failure
        // of the exchange: the page differs, by no named mechanism.
        // (For `app_store`, a status other than 200 or an answer that
        // does not parse: the store's answer was not the store's.)
        f::op::HTTP_ROUND_TRIP | f::op::READ | f::op::WRITE
            if !is_timeout(failure) && speaks_http(m) =>
        {
            M::HttpDiff
        }
        _ if is_reset(failure) => M::TcpReset,
        _ if is_timeout(failure) => M::TcpTimeout,
        _ => M::TcpRefused,
    }
}

/// Whether the measurement's exchange is HTTP (http, web, app_store).
fn speaks_http(m: &Measurement) -> bool {
    matches!(
        m.result,
        Some(R::Http(_)) | Some(R::Web(_)) | Some(R::AppStore(_))
    )
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
        inside_agree: 0,
        controls_agree: 0,
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

/// Compares the final HTTP responses (OONI web_connectivity's checks:
/// status code, body proportion, uncommon headers, title words), with one
/// rule of Vantage's own: a page whose title differs from the control's
/// is a block page even when its length is close to the real page's.
/// `None`: the pages match.
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
    // Two bodies cut at the read cap are both large: their lengths say
    // nothing more (OONI skips the length check on a truncated body).
    let body_match =
        (inside.body_truncated && control.body_truncated) || proportion > BODY_PROPORTION;
    let status_match = inside.status == control.status;
    let both_titled = !inside.title.trim().is_empty() && !control.title.trim().is_empty();
    let title_match = both_titled && titles_match(&inside.title, &control.title);
    let headers_match = !uncommon_headers(inside).is_disjoint(&uncommon_headers(control));
    if both_titled && !title_match {
        return Some((
            M::HttpBlockpage,
            if status_match { 0.8 } else { 0.7 },
            format!(
                "a different page was served: title {:?} vs control {:?} (status {} vs {}, \
                 body proportion {proportion:.2})",
                inside.title, control.title, inside.status, control.status
            ),
        ));
    }
    if status_match && (body_match || title_match || headers_match) {
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
    } else if !inside.title.is_empty() && !title_match && !body_match {
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
/// measurements of the same target in the same run), with the built-in
/// block-page fingerprints.
pub fn verdict(inside: &Measurement, controls: &[&Measurement]) -> Verdict {
    verdict_with(inside, controls, Fingerprints::builtin())
}

/// [`verdict`] with the given fingerprint lists (the built-in ones plus a
/// campaign's own).
///
/// The decision tree, in order (the first rule that fires decides):
/// 1. the inside agent refused or produced nothing: `inconclusive`;
/// 2. evidence needing no control: two DNS replies that differ (injection),
///    a reply from an address that runs no DNS server, the in-task SNI
///    comparison, residual blocking; and an app store's answers for the
///    tested and the control storefront ([`store_listing`]);
/// 3. no usable control: `inconclusive`;
/// 4. **the first interference decides**: an inside DNS answer no honest
///    resolver gives (a special-purpose range none of the controls got, or
///    a known block-page address) is `dns.hijack`, whatever failed after;
/// 5. **throttling**: the body arrived at under [`THROTTLE_FRACTION`] of
///    the fastest control's rate ([`throttle`]);
/// 6. the inside failed: [`failed_verdict`] compares the step it failed at
///    with how far each control got (same step: `down`; past it:
///    `blocked`; never reached it: no evidence), then the DNS override;
/// 7. the inside succeeded: DNS consistency, TLS (issuer and key), HTTP
///    (fingerprints, 451, title, body, status), ghost DNS; a plain-HTTP
///    page no control could compare is `inconclusive`; else `ok`.
pub fn verdict_with(
    inside: &Measurement,
    controls: &[&Measurement],
    fps: &Fingerprints,
) -> Verdict {
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
    if let Some(found) = store_listing(inside, &usable, &evidence) {
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
    if let Some(found) = forged_answer(inside, &usable, &evidence, fps) {
        return found;
    }
    if let Some(found) = throttle(inside, &usable, &evidence) {
        return found;
    }
    if let Some((failure, op)) = failure_of(inside) {
        let found = failed_verdict(inside, &usable, &evidence, &failure, &op);
        return dns_override(inside, &usable, found);
    }

    // Inside succeeded: compare what it saw with a control that succeeded.
    let reference = usable.iter().copied().find(|c| failure_of(c).is_none());
    let n_ok = usable.iter().filter(|c| failure_of(c).is_none()).count() as u32;
    let page = http_verdict(inside, reference, &evidence, fps);
    if let Some(d) = dns_of(inside) {
        // Whether the page differs, when there are two pages to compare.
        let comparable = reference.and_then(http_of).and_then(final_hop).is_some()
            && http_of(inside).and_then(final_hop).is_some();
        let page_differs =
            comparable.then(|| page.as_ref().is_some_and(|p| p.status == Status::Blocked));
        if let Some(found) = dns_consistency(inside, d, &usable, &evidence, page_differs) {
            return found;
        }
    }
    if let Some(found) = tls_interception(inside, &usable, &evidence) {
        return found;
    }
    if let Some(found) = page {
        return found;
    }
    if reference.is_none() && ghost_dns(inside, &usable) {
        return blocked(
            M::DnsHijack,
            0.7,
            evidence,
            "the inside resolved a name every control was told does not exist \
                 (a censor's resolver answering for it)",
            usable.len() as u32,
        );
    }
    if reference.is_none() {
        // No control got a page: a plain-HTTP page (or one over TLS that
        // was not verified) may be anyone's, a block page included. Only a
        // TLS-authenticated page vouches for itself (OONI QA
        // controlFailureWithSuccessfulHTTP(S)Website: null, accessible).
        let unvouched = http_of(inside).and_then(final_hop).is_some_and(|p| {
            !(p.url.to_ascii_lowercase().starts_with("https:")
                && handshake_of(inside).is_some_and(|h| h.webpki == "valid"))
        });
        if unvouched {
            return v(
                Status::Inconclusive,
                None,
                0.3,
                evidence,
                "the inside got a page over plain HTTP, and no control got one to compare",
            );
        }
    }
    let reason = if reference.is_some() {
        "inside matches the control"
    } else {
        "inside succeeded (the controls failed)"
    };
    with_support(v(Status::Ok, None, 0.9, evidence, reason), n_ok)
}

/// How many measurements back a verdict: it says so in its reason, and its
/// confidence is scaled by `1 - 0.5^(inside + controls)`, so one inside
/// and one control measurement give 0.75 of the rule's own confidence, two
/// controls 0.875, and every agreeing measurement more raises it.
/// [`super::analyze_run`] adds the inside agents that agree.
pub(crate) fn support_factor(inside: u32, controls: u32) -> f32 {
    1.0 - 0.5f32.powi((inside + controls) as i32)
}

fn with_support(mut verdict: Verdict, controls: u32) -> Verdict {
    verdict.controls_agree = controls;
    verdict.inside_agree = 1;
    verdict.confidence = (verdict.confidence * support_factor(1, controls)).clamp(0.0, 1.0);
    verdict
}

/// Blocked by `mech`, with `controls` control measurements in support.
fn blocked(
    mech: M,
    confidence: f32,
    evidence: Vec<String>,
    reason: impl Into<String>,
    controls: u32,
) -> Verdict {
    with_support(
        v(Status::Blocked, Some(mech), confidence, evidence, reason),
        controls,
    )
}

/// Where in a measurement's path a failure happened: resolve < connect <
/// handshake < request < reading the body. "The same way" is the same
/// step (OONI counts any failure of the control at the same step as
/// expected, whatever its string).
fn step_rank(op: &str) -> u8 {
    match op {
        f::op::RESOLVE => 0,
        f::op::CONNECT => 1,
        f::op::TLS_HANDSHAKE | f::op::QUIC_HANDSHAKE => 2,
        f::op::WRITE | f::op::HTTP_ROUND_TRIP => 3,
        f::op::READ => 4,
        _ => 5,
    }
}

/// The inside failed at `op`. Each usable control either failed at the
/// same step (the site fails for it too), got past it, or failed before
/// it (it never tried that step: no evidence either way).
///
/// | same vs past          | verdict |
/// |-----------------------|---------|
/// | same > past           | `down` (broken for everyone, the same way) |
/// | past > same           | `blocked`, mechanism of the inside's failure |
/// | same = past > 0       | `inconclusive` (controls disagree) |
/// | both 0 (all earlier)  | ghost DNS -> `dns.hijack`; else `inconclusive` |
///
/// OONI's decision tree treats a control DNS failure with an inside
/// success as DNS inconsistency ("ghost" domains, QA `ghostDNSBlocking*`);
/// Vantage does so only when the controls were told the name does not
/// exist (NXDOMAIN, no answer). A control whose resolver timed out or
/// failed proves nothing about the inside's answer, so that split is
/// `inconclusive`, never `down`.
fn failed_verdict(
    inside: &Measurement,
    usable: &[&Measurement],
    evidence: &[String],
    failure: &str,
    op: &str,
) -> Verdict {
    let rank = step_rank(op);
    let (mut same, mut past, mut earlier) = (0u32, 0u32, 0u32);
    for c in usable {
        match failure_of(c) {
            None => past += 1,
            Some((_, cop)) => match step_rank(&cop).cmp(&rank) {
                std::cmp::Ordering::Equal => same += 1,
                std::cmp::Ordering::Greater => past += 1,
                std::cmp::Ordering::Less => earlier += 1,
            },
        }
    }
    let n = usable.len();
    let evidence = evidence.to_vec();
    let reason = if op.is_empty() {
        failure.to_string()
    } else {
        format!("{failure} at {op}")
    };
    if same > past {
        return with_support(
            v(
                Status::Down,
                None,
                0.9,
                evidence,
                format!("{reason} inside, and {same}/{n} controls fail at the same step"),
            ),
            same,
        );
    }
    if past > same {
        let mech = mechanism(inside, failure, op);
        let base = match mech {
            // An alert or odd handshake failure is weaker evidence.
            M::TlsReset if !is_reset(failure) => 0.6,
            // Error answers other than NXDOMAIN may be resolver trouble.
            M::DnsNxdomain if failure != f::DNS_NXDOMAIN => 0.6,
            _ => 0.9,
        };
        let base = base * (past as f32 / n as f32).max(0.5);
        return blocked(
            mech,
            base,
            evidence,
            format!("{reason} inside, while {past}/{n} controls got past that step"),
            past,
        );
    }
    if same > 0 {
        return v(
            Status::Inconclusive,
            None,
            0.3,
            evidence,
            format!(
                "{reason} inside; controls disagree ({same} fail there too, {past} get past it)"
            ),
        );
    }
    if ghost_dns(inside, usable) {
        return blocked(
            M::DnsHijack,
            0.7,
            evidence,
            format!(
                "the inside resolved a name every control was told does not exist, \
                     then {reason}"
            ),
            earlier,
        );
    }
    v(
        Status::Inconclusive,
        None,
        0.2,
        evidence,
        format!(
            "{reason} inside, but {earlier}/{n} controls failed before that step: \
             no control shows what that step does for everyone"
        ),
    )
}

/// The inside resolved addresses, and every control that tried was told
/// the name does not exist (NXDOMAIN or no answer).
fn ghost_dns(inside: &Measurement, usable: &[&Measurement]) -> bool {
    let resolved = dns_of(inside).is_some_and(|d| !first_answers(d).is_empty());
    let told_absent = |c: &&Measurement| {
        failure_of(c).is_some_and(|(fl, op)| {
            op == f::op::RESOLVE && matches!(fl.as_str(), f::DNS_NXDOMAIN | f::DNS_NO_ANSWER)
        })
    };
    resolved && !usable.is_empty() && usable.iter().all(told_absent)
}

/// OONI's DNS override: when the inside's answers are inconsistent with
/// the controls' (no shared /24, TLS did not verify the name), a failure
/// that followed is attributed to DNS, the first interference.
fn dns_override(inside: &Measurement, usable: &[&Measurement], found: Verdict) -> Verdict {
    if found.status == Status::Ok
        || found.mechanism == Some(M::DnsHijack)
        || !matches!(inside.result, Some(R::Web(_)))
    {
        return found;
    }
    // A failure at DNS itself keeps its own mechanism.
    if failure_of(inside).is_some_and(|(_, op)| op == f::op::RESOLVE) {
        return found;
    }
    let Some((ins, ctl)) = dns_of(inside).and_then(|d| inconsistent_answers(inside, d, usable))
    else {
        return found;
    };
    let mut out = found;
    out.reason = format!(
        "answers {:?} share no /24 with the controls' {:?}, and then: {}",
        sorted(&ins),
        sorted(&ctl),
        out.reason
    );
    out.status = Status::Blocked;
    out.mechanism = Some(M::DnsHijack);
    out.confidence = DISJOINT_ANSWERS_CONFIDENCE * support_factor(1, out.controls_agree.max(1));
    out
}

/// Every address any control resolved.
fn control_answers(usable: &[&Measurement]) -> HashSet<String> {
    usable
        .iter()
        .filter_map(|c| dns_of(c))
        .flat_map(all_answers)
        .collect()
}

/// The inside's first answers and the controls' answers, when they share
/// no /24 and TLS did not verify the inside's address for the name.
fn inconsistent_answers(
    inside: &Measurement,
    d: &DnsResult,
    usable: &[&Measurement],
) -> Option<(HashSet<String>, HashSet<String>)> {
    let ins = first_answers(d);
    let ctl = control_answers(usable);
    (answers_disjoint(&ins, &ctl) && !tls_verified(inside)).then_some((ins, ctl))
}

fn answers_disjoint(ins: &HashSet<String>, ctl: &HashSet<String>) -> bool {
    let ins_p: HashSet<_> = ins.iter().filter_map(|i| prefix(i)).collect();
    let ctl_p: HashSet<_> = ctl.iter().filter_map(|i| prefix(i)).collect();
    !ins_p.is_empty() && !ctl_p.is_empty() && ins_p.is_disjoint(&ctl_p)
}

/// Rule 4: an answer no honest resolver gives. A special-purpose address
/// (loopback, private, link-local, ...) that no control got, or an
/// address or CNAME on a block-page fingerprint list, is `dns.hijack`
/// even when everything after it failed (OONI QA `dnsBlockingBOGON`,
/// `dnsHijackingToLocalhost*`). Everyone getting the same bogon is a
/// broken site, not censorship (`localhostWith*`): left to the rules after.
fn forged_answer(
    inside: &Measurement,
    usable: &[&Measurement],
    evidence: &[String],
    fps: &Fingerprints,
) -> Option<Verdict> {
    let d = dns_of(inside)?;
    let ins = first_answers(d);
    let ctl = control_answers(usable);
    let names = d
        .replies
        .iter()
        .filter(|r| !r.malformed)
        .take(1)
        .flat_map(|r| r.answers.iter().map(|a| a.data.clone()));
    for a in sorted(&ins).into_iter().chain(names) {
        if let Some(fp) = fps.dns_match(&a) {
            return Some(blocked(
                M::DnsHijack,
                0.95,
                evidence.to_vec(),
                format!("answer {a} is a known block-page address: fingerprint {fp}"),
                usable.len() as u32,
            ));
        }
    }
    let b = sorted(&ins).into_iter().find(|ip| is_bogon(ip))?;
    if ctl.contains(&b) {
        return None;
    }
    let then = failure_of(inside)
        .map(|(fl, op)| format!(" (then {fl} at {op})"))
        .unwrap_or_default();
    Some(blocked(
        M::DnsHijack,
        0.9,
        evidence.to_vec(),
        format!(
            "answer {b} is in a special-purpose range no control got (controls: {:?}){then}",
            sorted(&ctl)
        ),
        usable.len() as u32,
    ))
}

/// A transfer slower than this fraction of the fastest control's is
/// throttled. Throttles seen in the wild are far below it: Russia's 2021
/// slowdown of Twitter held flows to about 128 kbit/s (Xue et al.,
/// "Throttling Twitter", IMC 2021), under 1 % of a residential line.
pub(crate) const THROTTLE_FRACTION: f64 = 0.1;
/// A control body shorter than this measures latency, not bandwidth.
pub(crate) const THROTTLE_MIN_BYTES: u64 = 64 * 1024;
/// An inside transfer shorter than this is not throttled, whatever its
/// rate: a few round trips of a slow path look like a low rate.
pub(crate) const THROTTLE_MIN_US: i64 = 1_000_000;

/// (bytes, duration) of the final response's body.
fn transfer(m: &Measurement) -> Option<(u64, i64)> {
    let h = http_of(m)?;
    let last = h.chain.last()?;
    (last.body_us > 0).then_some((last.body_length, last.body_us))
}

fn rate(bytes: u64, us: i64) -> f64 {
    bytes as f64 * 1e6 / us.max(1) as f64
}

/// Rule 5, `http.throttle`: the inside's body came (or stalled, read
/// timeout) at under [`THROTTLE_FRACTION`] of the fastest control's rate
/// over a control body of at least [`THROTTLE_MIN_BYTES`], and the inside
/// transfer lasted at least [`THROTTLE_MIN_US`]. Rates are bytes over the
/// body's own time (after the response head), so the agent's read cap
/// bounds the bytes, never hides the rate.
fn throttle(inside: &Measurement, usable: &[&Measurement], evidence: &[String]) -> Option<Verdict> {
    let (ib, ius) = transfer(inside)?;
    if ius < THROTTLE_MIN_US || ib == 0 {
        return None;
    }
    // Only a read that went on until it stopped: a reset mid-body is not
    // a slow body.
    if let Some((fl, op)) = failure_of(inside) {
        if op != f::op::READ || !is_timeout(&fl) {
            return None;
        }
    }
    let fast: Vec<(u64, i64)> = usable
        .iter()
        .filter(|c| failure_of(c).is_none())
        .filter_map(|c| transfer(c))
        .filter(|(b, _)| *b >= THROTTLE_MIN_BYTES)
        .collect();
    let best = fast
        .iter()
        .map(|(b, us)| rate(*b, *us))
        .fold(0.0f64, f64::max);
    let inside_rate = rate(ib, ius);
    if best <= 0.0 || inside_rate >= THROTTLE_FRACTION * best {
        return None;
    }
    let slower = fast
        .iter()
        .filter(|(b, us)| inside_rate < THROTTLE_FRACTION * rate(*b, *us))
        .count() as u32;
    Some(blocked(
        M::HttpThrottle,
        0.8,
        evidence.to_vec(),
        format!(
            "body at {:.0} B/s inside ({ib} B in {:.1} s) vs {:.0} B/s for the fastest \
                 control: {:.3} of it, under {THROTTLE_FRACTION}",
            inside_rate,
            ius as f64 / 1e6,
            best,
            inside_rate / best
        ),
        slower,
    ))
}

/// TLS interception by a CA the inside trusts (a national root, a
/// corporate proxy): both handshakes verified, but the inside's leaf was
/// issued by someone else AND carries another key than every control saw.
/// A certificate the inside does not trust is caught earlier, as a
/// handshake failure (`tls.mitm` by [`mechanism`]).
fn tls_interception(
    inside: &Measurement,
    usable: &[&Measurement],
    evidence: &[String],
) -> Option<Verdict> {
    let ih = handshake_of(inside)?;
    if fail_of(&ih.failure).is_some() {
        return None;
    }
    // A chain WebPKI rejects, unlike the control's (the `tls` kind records
    // the verdict and goes on; `http` and `web` fail the handshake).
    if !ih.webpki.is_empty() && ih.webpki != "valid" {
        let valid = usable
            .iter()
            .filter_map(|c| handshake_of(c))
            .find(|h| fail_of(&h.failure).is_none() && h.webpki == "valid")?;
        if valid.chain_sha256 == ih.chain_sha256 {
            return None;
        }
        return Some(blocked(
            M::TlsMitm,
            0.8,
            evidence.to_vec(),
            format!(
                "certificate chain differs from the control's and WebPKI says {}",
                ih.webpki
            ),
            1,
        ));
    }
    if ih.issuer.is_empty() || ih.leaf_spki_sha256.is_empty() {
        return None;
    }
    let ctl: Vec<&TlsHandshake> = usable
        .iter()
        .filter_map(|c| handshake_of(c))
        .filter(|h| fail_of(&h.failure).is_none() && !h.issuer.is_empty())
        .collect();
    if ctl.is_empty() {
        return None;
    }
    let same_issuer = ctl.iter().any(|h| h.issuer == ih.issuer);
    let same_key = ctl
        .iter()
        .any(|h| h.leaf_spki_sha256 == ih.leaf_spki_sha256);
    if same_issuer || same_key {
        return None;
    }
    let trusted = ih.webpki == "valid";
    Some(blocked(
        M::TlsMitm,
        if trusted { 0.7 } else { 0.85 },
        evidence.to_vec(),
        format!(
            "the inside saw a certificate issued by {:?} with another key than the \
                 control(s) saw (issuer {:?}){}",
            ih.issuer,
            ctl[0].issuer,
            if trusted {
                "; the inside trusts that issuer"
            } else {
                ""
            }
        ),
        ctl.len() as u32,
    ))
}

/// The handshake a measurement made (tls, http over https, web).
fn handshake_of(m: &Measurement) -> Option<&TlsHandshake> {
    match &m.result {
        Some(R::Tls(t)) => t.handshake.as_ref(),
        Some(R::Http(h)) => h.tls.as_ref(),
        Some(R::Web(w)) => w.tls.as_ref(),
        _ => None,
    }
}

/// Rule 7's page comparison: the inside's final response against a
/// control's. Over HTTPS with a verified certificate the page came from
/// the site itself, so only a fingerprint or 451 makes it a block page
/// (OONI: a TLS-authenticated final response is accessible).
fn http_verdict(
    inside: &Measurement,
    reference: Option<&Measurement>,
    evidence: &[String],
    fps: &Fingerprints,
) -> Option<Verdict> {
    let a = final_hop(http_of(inside)?)?;
    let b = reference.and_then(http_of).and_then(final_hop);
    let n = u32::from(b.is_some());
    if let Some(fp) = fps.http_match(
        &a.body_head,
        a.headers
            .iter()
            .map(|h| (h.name.as_str(), h.value.as_str())),
    ) {
        let control_too = b.is_some_and(|b| {
            fps.http_match(
                &b.body_head,
                b.headers
                    .iter()
                    .map(|h| (h.name.as_str(), h.value.as_str())),
            )
            .is_some()
        });
        if !control_too {
            return Some(blocked(
                M::HttpBlockpage,
                0.95,
                evidence.to_vec(),
                format!("the page matches block-page fingerprint {fp}"),
                n.max(1),
            ));
        }
    }
    let b = b?;
    let verified = handshake_of(inside).is_some_and(|h| h.webpki == "valid")
        && a.url.to_ascii_lowercase().starts_with("https:");
    if verified && a.status != HTTP_LEGAL_BLOCK {
        return None;
    }
    let (mech, conf, reason) = http_compare(a, b)?;
    Some(blocked(mech, conf, evidence.to_vec(), reason, 1))
}

/// Response headers most servers send, left out of the header comparison
/// (OONI web_connectivity compares only the uncommon ones).
const COMMON_HEADERS: &[&str] = &[
    "date",
    "content-type",
    "server",
    "cache-control",
    "vary",
    "set-cookie",
    "location",
    "expires",
    "x-powered-by",
    "content-encoding",
    "last-modified",
    "accept-ranges",
    "pragma",
    "x-frame-options",
    "etag",
    "x-content-type-options",
    "age",
    "via",
    "p3p",
    "x-xss-protection",
    "content-language",
    "cf-ray",
    "strict-transport-security",
    "link",
    "x-varnish",
    "content-length",
    "connection",
    "transfer-encoding",
    "keep-alive",
];

fn uncommon_headers(r: &HttpResponse) -> HashSet<String> {
    r.headers
        .iter()
        .map(|h| h.name.to_ascii_lowercase())
        .filter(|n| !COMMON_HEADERS.contains(&n.as_str()))
        .collect()
}

/// Title words of five letters or more, lower-cased (OONI's title match
/// ignores short words, which block pages and real pages share).
fn title_words(t: &str) -> HashSet<String> {
    t.split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.chars().count() >= 5)
        .map(|w| w.to_lowercase())
        .collect()
}

/// Titles match when both are empty, or neither has a long word the other
/// lacks (and they are not both made of short words only and different).
fn titles_match(a: &str, b: &str) -> bool {
    let (wa, wb) = (title_words(a), title_words(b));
    if wa.is_empty() && wb.is_empty() {
        return a.trim().eq_ignore_ascii_case(b.trim());
    }
    wa == wb
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

/// `app_store`: the store answered the tested storefront's lookup, so what
/// it lists decides, not the network (a store that could not be reached,
/// or answered with an error, is left to the network rules: `None`).
///
/// | tested storefront | control storefront | verdict |
/// |---|---|---|
/// | lists the app | any | `ok` |
/// | does not | lists it | `blocked`, `store.removed` |
/// | does not | does not either | `down` (withdrawn by its developer) |
/// | does not | no answer | `inconclusive` |
///
/// The control storefront's answer is the inside's own lookup of it (the
/// same moment, the same path, like the in-task SNI comparison), else the
/// control agents' lookups of it. A tested storefront that lists the app
/// for a control agent but not for the inside is `inconclusive`: the store
/// answers differently by where it is asked from, which no storefront
/// rule explains. The lookup API answers an app missing from a storefront
/// with `resultCount` 0 and status 200, so "not listed" is read only from
/// an answer that parsed.
fn store_listing(
    inside: &Measurement,
    usable: &[&Measurement],
    evidence: &[String],
) -> Option<Verdict> {
    let Some(R::AppStore(a)) = &inside.result else {
        return None;
    };
    let tested = a.lookups.first()?;
    if fail_of(&tested.failure).is_some() {
        return None;
    }
    let evidence = evidence.to_vec();
    let sf = &tested.storefront;
    if tested.listed {
        return Some(v(
            Status::Ok,
            None,
            0.9,
            evidence,
            format!(
                "listed in the {sf} storefront: {:?} by {:?}, version {:?}",
                tested.track_name, tested.seller_name, tested.version
            ),
        ));
    }
    // The other agents' answered lookups of storefront `nth` (0: tested).
    let theirs = |nth: usize, want: &str| -> Vec<&AppStoreLookup> {
        usable
            .iter()
            .filter_map(|c| match &c.result {
                Some(R::AppStore(ca)) => ca.lookups.get(nth),
                _ => None,
            })
            .filter(|l| l.storefront == want && fail_of(&l.failure).is_none())
            .collect()
    };
    let listed_there = theirs(0, sf).iter().filter(|l| l.listed).count();
    if listed_there > 0 {
        return Some(v(
            Status::Inconclusive,
            None,
            0.3,
            evidence,
            format!(
                "not listed in the {sf} storefront for the inside, but listed there for \
                 {listed_there} control agent(s)"
            ),
        ));
    }
    let own = a.lookups.get(1).filter(|l| fail_of(&l.failure).is_none());
    let (ctl_sf, found, in_task) = match own {
        Some(l) => (l.storefront.as_str(), vec![l], true),
        None => {
            let ctl_sf = a.lookups.get(1).map_or("", |l| l.storefront.as_str());
            (ctl_sf, theirs(1, ctl_sf), false)
        }
    };
    if ctl_sf.is_empty() || found.is_empty() {
        return Some(v(
            Status::Inconclusive,
            None,
            0.3,
            evidence,
            if ctl_sf.is_empty() {
                format!("not listed in the {sf} storefront, and no control storefront to compare")
            } else {
                format!("not listed in the {sf} storefront; no lookup of the {ctl_sf} storefront answered")
            },
        ));
    }
    let from = if in_task {
        ""
    } else {
        " (control agents' lookups)"
    };
    let listed: Vec<&&AppStoreLookup> = found.iter().filter(|l| l.listed).collect();
    let verdict = match listed.first() {
        Some(l) => v(
            Status::Blocked,
            Some(M::StoreRemoved),
            if in_task { 0.9 } else { 0.8 },
            evidence,
            format!(
                "not listed in the {sf} storefront, listed in the {ctl_sf} storefront{from}: \
                 {:?} by {:?}",
                l.track_name, l.seller_name
            ),
        ),
        None => v(
            Status::Down,
            None,
            0.8,
            evidence,
            format!(
                "listed in neither the {sf} nor the {ctl_sf} storefront{from}: \
                 withdrawn by its developer, or not a published app id"
            ),
        ),
    };
    Some(if in_task {
        verdict
    } else {
        let n = if listed.is_empty() {
            found.len()
        } else {
            listed.len()
        };
        with_support(verdict, n as u32)
    })
}

/// OONI's DNS consistency, without ASNs: answer sets sharing no /24
/// with any control's, unless TLS verified the address for the name.
/// When there are pages to compare (`page_differs` is `Some`), an
/// inconsistent answer counts only when the page differs too: a page that
/// matches the control's came from the site, whatever DNS said (OONI QA
/// `dnsHijackingToProxy*`: accessible).
fn dns_consistency(
    inside: &Measurement,
    d: &DnsResult,
    usable: &[&Measurement],
    evidence: &[String],
    page_differs: Option<bool>,
) -> Option<Verdict> {
    let (ins, ctl) = inconsistent_answers(inside, d, usable)?;
    if page_differs == Some(false) {
        return None;
    }
    let web = page_differs == Some(true);
    let agree = usable
        .iter()
        .filter(|c| dns_of(c).is_some_and(|cd| !all_answers(cd).is_empty()))
        .count() as u32;
    Some(blocked(
        M::DnsHijack,
        if web {
            0.8
        } else {
            DISJOINT_ANSWERS_CONFIDENCE
        },
        evidence.to_vec(),
        format!(
            "answers {:?} share no /24 with the controls' {:?}{}",
            sorted(&ins),
            sorted(&ctl),
            if web {
                ", and the page differs from the control's"
            } else {
                " (may be a CDN)"
            }
        ),
        agree.max(1),
    ))
}

fn sorted(s: &HashSet<String>) -> Vec<String> {
    let mut v: Vec<String> = s.iter().cloned().collect();
    v.sort();
    v
}

#[cfg(test)]
mod tests;
