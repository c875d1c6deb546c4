//! Probes: one module per measurement kind, all behind [`run`].
//!
//! A probe takes its typed input, obeys the context's deadline, target policy
//! and byte caps, and returns a typed result plus per-step timings, or
//! `Err(reason)` to refuse its input ([`Probed`]). What it observes (a reset,
//! a forged DNS answer, a timeout) is data in the result, never a Rust error,
//! and never a panic. [`run`] validates the input, dispatches, turns a
//! refusal into [`ProbeOutput::refused`], and guards the deadline.
//!
//! Target policy rule (all probes): a forbidden address written literally in
//! the input is a refusal before any packet is sent;
//! a forbidden address discovered while probing (a resolved name, a redirect
//! target) yields the failure `unknown_failure: forbidden_target: ...` with
//! the operation that would have used it, keeping the data gathered so far.
//! Both halves live in `target.rs`, which every probe uses to parse its target.
//!
//! This module knows nothing about sessions, signing or the outbox.

use std::time::{Duration, Instant};

use vantage_proto::failure::{self, failure, op};
use vantage_proto::v1::{
    measurement, probe_input::Kind, AppStoreLookup, AppStoreResult, DnsResult, EncryptedResult,
    Failure, HttpResult, OpenVpnResult, ProbeInput, QuicResult, Refusal, Step, TcpResult,
    TlsHandshake, TlsResult, TorResult, WebResult, WireGuardResult,
};

mod net;
pub mod policy;
mod target;

pub mod app_store;
pub mod dns;
pub mod encrypted;
pub mod http;
pub mod openvpn;
pub mod quic;
pub mod tcp;
pub mod tls;
pub mod tor;
pub mod web;
pub mod wireguard;
mod x509;

pub use policy::TargetPolicy;

/// What every probe gets besides its input.
#[derive(Clone, Debug)]
pub struct ProbeContext {
    /// Which addresses may be probed.
    pub policy: TargetPolicy,
    /// Hard deadline: the probe returns by then, whatever the network does.
    pub deadline: Instant,
    /// Cap on bytes read from any one peer (HTTP bodies and the like).
    pub max_read_bytes: u64,
}

impl ProbeContext {
    /// A context with `budget` from now and default caps.
    pub fn with_budget(policy: TargetPolicy, budget: Duration) -> Self {
        ProbeContext {
            policy,
            deadline: Instant::now() + budget,
            max_read_bytes: 1 << 20,
        }
    }

    /// Time left before the deadline (zero when past it).
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }
}

/// Records per-step timings relative to the probe's start.
#[derive(Debug)]
pub struct Steps {
    origin: Instant,
    steps: Vec<Step>,
}

impl Default for Steps {
    fn default() -> Self {
        Self::new()
    }
}

impl Steps {
    pub fn new() -> Self {
        Steps {
            origin: Instant::now(),
            steps: Vec::new(),
        }
    }

    /// Records a step that began at `started` and ends now.
    pub fn record(&mut self, name: &str, started: Instant, failure: Option<Failure>) {
        self.steps.push(Step {
            name: name.to_string(),
            start_us: started.saturating_duration_since(self.origin).as_micros() as i64,
            duration_us: started.elapsed().as_micros() as i64,
            failure,
        });
    }

    /// Runs `op`, recorded as the step `name` with its failure, if any.
    pub(crate) async fn run<T>(
        &mut self,
        name: &str,
        op: impl std::future::Future<Output = Result<T, Failure>>,
    ) -> Result<T, Failure> {
        let started = Instant::now();
        let r = op.await;
        self.record(name, started, r.as_ref().err().cloned());
        r
    }

    pub fn into_vec(self) -> Vec<Step> {
        self.steps
    }
}

/// What a probe run produced.
#[derive(Debug)]
pub struct ProbeOutput {
    pub result: measurement::Result,
    pub steps: Vec<Step>,
}

impl ProbeOutput {
    /// A refusal (forbidden target, missing consent, malformed input).
    pub fn refused(reason: impl Into<String>) -> Self {
        ProbeOutput {
            result: measurement::Result::Refused(Refusal {
                reason: reason.into(),
            }),
            steps: Vec::new(),
        }
    }
}

/// What a probe returns: its output, or `Err(reason)` to refuse the input
/// (a forbidden literal target, a malformed field) before any packet is sent.
pub type Probed = Result<ProbeOutput, String>;

/// A measurement: the probe's result and the steps it recorded.
pub(crate) fn measured(result: measurement::Result, steps: Steps) -> Probed {
    Ok(ProbeOutput {
        result,
        steps: steps.into_vec(),
    })
}

/// How long after the deadline [`run`]'s guard fires.
const DEADLINE_GRACE: Duration = Duration::from_millis(250);

/// Runs the probe named by `input` under `ctx`.
///
/// The input is first checked and normalised by `vantage_proto::validate`,
/// the same function the coordinator applies when a campaign is created: a
/// refused input is the refusal `malformed_input: <kind>: <why>` before any
/// packet is sent, and the probe runs with the normalised input (host names
/// in IDNA punycode). The probes' own checks stay as a second line.
///
/// Every probe runs under one safety net: it is cut `DEADLINE_GRACE` after
/// `ctx.deadline`, whatever its per-operation timeouts did, and its result
/// is then `timed_out`. (Per-operation timeouts use the deadline itself, so
/// they fire first and keep the partial data and the step that timed out;
/// the guard only catches a missed one.)
pub async fn run(input: &ProbeInput, ctx: &ProbeContext) -> ProbeOutput {
    let input = match vantage_proto::validate::validate(input) {
        Ok(i) => i,
        Err(e) => return ProbeOutput::refused(malformed(input, &e)),
    };
    let Some(kind) = &input.kind else {
        return ProbeOutput::refused("malformed_input: task carries no probe input");
    };
    let guard = tokio::time::Instant::from_std(ctx.deadline + DEADLINE_GRACE);
    match tokio::time::timeout_at(guard, probe(kind, ctx)).await {
        Ok(Ok(out)) => out,
        Ok(Err(reason)) => ProbeOutput::refused(reason),
        Err(_) => ProbeOutput {
            result: timed_out(kind),
            steps: Vec::new(),
        },
    }
}

/// Runs the probe for `kind`.
async fn probe(kind: &Kind, ctx: &ProbeContext) -> Probed {
    match kind {
        Kind::Dns(i) => dns::run(i, ctx).await,
        Kind::DnsInjection(i) => dns::run_injection(i, ctx).await,
        Kind::Tcp(i) => tcp::run(i, ctx).await,
        Kind::Tls(i) => tls::run(i, ctx).await,
        Kind::Http(i) => http::run(i, ctx).await,
        Kind::Web(i) => web::run(i, ctx).await,
        Kind::Quic(i) => quic::run(i, ctx).await,
        Kind::Openvpn(i) => openvpn::run(i, ctx).await,
        Kind::Tor(i) => tor::run(i, ctx).await,
        Kind::Encrypted(i) => encrypted::run(i, ctx).await,
        Kind::Wireguard(i) => wireguard::run(i, ctx).await,
        Kind::AppStore(i) => app_store::run(i, ctx).await,
    }
}

/// The result of a probe the deadline guard cut short: the target its input
/// named, and `generic_timeout_error` with the operation the probe spends
/// its time in.
// Proto messages are always built with `..Default::default()` so fields
// added later never break the build.
#[allow(clippy::needless_update)]
fn timed_out(kind: &Kind) -> measurement::Result {
    use measurement::Result as R;
    let timeout = |operation: &str| Some(failure(failure::GENERIC_TIMEOUT, operation));
    match kind {
        Kind::Dns(i) => R::Dns(DnsResult {
            resolver: i.resolver.clone(),
            failure: timeout(op::RESOLVE),
            ..Default::default()
        }),
        Kind::DnsInjection(i) => R::DnsInjection(DnsResult {
            resolver: i.resolver.clone(),
            transport: "udp".into(),
            failure: timeout(op::RESOLVE),
            ..Default::default()
        }),
        Kind::Tcp(i) => R::Tcp(TcpResult {
            ip: i.host.clone(),
            port: i.port,
            failure: timeout(op::CONNECT),
            ..Default::default()
        }),
        Kind::Tls(i) => R::Tls(TlsResult {
            ip: i.ip.clone(),
            port: i.port,
            handshake: Some(TlsHandshake {
                sni: i.sni.clone(),
                failure: timeout(op::TLS_HANDSHAKE),
                ..Default::default()
            }),
            ..Default::default()
        }),
        Kind::Http(_) => R::Http(HttpResult {
            failure: timeout(op::HTTP_ROUND_TRIP),
            ..Default::default()
        }),
        Kind::Web(_) => R::Web(WebResult {
            failure: timeout(op::CONNECT),
            ..Default::default()
        }),
        Kind::Quic(i) => R::Quic(QuicResult {
            ip: i.ip.clone(),
            port: i.port,
            sni: i.sni.clone(),
            failure: timeout(op::QUIC_HANDSHAKE),
            ..Default::default()
        }),
        Kind::Openvpn(i) => R::Openvpn(OpenVpnResult {
            ip: i.ip.clone(),
            port: i.port,
            transport: i.transport.clone(),
            failure: timeout(op::READ),
            ..Default::default()
        }),
        Kind::Tor(i) => R::Tor(TorResult {
            ip: i.ip.clone(),
            port: i.port,
            failure: timeout(op::CONNECT),
            ..Default::default()
        }),
        Kind::Encrypted(i) => R::Encrypted(EncryptedResult {
            ip: i.ip.clone(),
            port: i.port,
            trigger: timeout(op::CONNECT),
            ..Default::default()
        }),
        Kind::Wireguard(i) => R::Wireguard(WireGuardResult {
            ip: i.ip.clone(),
            port: i.port,
            failure: timeout(op::READ),
            ..Default::default()
        }),
        Kind::AppStore(i) => R::AppStore(AppStoreResult {
            lookups: vec![AppStoreLookup {
                storefront: i.storefront.clone(),
                url: i.lookup_url(&i.storefront),
                failure: timeout(op::HTTP_ROUND_TRIP),
                ..Default::default()
            }],
            ..Default::default()
        }),
    }
}

/// The refusal reason for an input `validate` refused.
fn malformed(input: &ProbeInput, e: &vantage_proto::validate::InputError) -> String {
    match &input.kind {
        None => format!("malformed_input: {e}"),
        Some(_) => format!("malformed_input: {}: {e}", input.kind_name()),
    }
}

/// What the probes' unit tests share.
#[cfg(test)]
pub(crate) mod test_support {
    use super::*;

    /// A context with the default policy (no private targets) and `budget`.
    pub(crate) fn strict_ctx(budget: Duration) -> ProbeContext {
        ProbeContext::with_budget(TargetPolicy::default(), budget)
    }

    /// A context that allows private targets (loopback servers), `budget`.
    pub(crate) fn lab_ctx(budget: Duration) -> ProbeContext {
        let lab = TargetPolicy {
            allow_private_targets: true,
        };
        ProbeContext::with_budget(lab, budget)
    }

    /// Panics unless `out` is a refusal for a forbidden target.
    pub(crate) fn assert_forbidden_refusal(out: &Probed) {
        match out {
            Err(reason) => assert!(reason.starts_with("forbidden_target: "), "{reason}"),
            Ok(out) => panic!("expected a refusal, got {out:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vantage_proto::v1::{TcpInput, TlsInput, WireGuardInput};

    #[test]
    fn a_cut_probe_reports_its_target_and_a_timeout_in_its_operation() {
        let tls = timed_out(&Kind::Tls(TlsInput {
            ip: "192.0.2.1".into(),
            port: 443,
            sni: "example.org".into(),
            ..Default::default()
        }));
        let measurement::Result::Tls(t) = tls else {
            panic!("expected tls, got {tls:?}");
        };
        let hs = t.handshake.expect("a handshake");
        assert_eq!(
            (t.ip.as_str(), t.port, hs.sni.as_str()),
            ("192.0.2.1", 443, "example.org")
        );
        let f = hs.failure.expect("a failure");
        assert_eq!(
            (f.failure.as_str(), f.operation.as_str()),
            ("generic_timeout_error", "tls_handshake")
        );

        let tcp = timed_out(&Kind::Tcp(TcpInput {
            host: "example.org".into(),
            port: 80,
        }));
        let measurement::Result::Tcp(t) = tcp else {
            panic!("expected tcp, got {tcp:?}");
        };
        assert_eq!(t.ip, "example.org");
        assert_eq!(t.failure.map(|f| f.operation).as_deref(), Some("connect"));

        let wg = timed_out(&Kind::Wireguard(WireGuardInput::default()));
        let measurement::Result::Wireguard(w) = wg else {
            panic!("expected wireguard, got {wg:?}");
        };
        assert_eq!(w.failure.map(|f| f.operation).as_deref(), Some("read"));
    }
}
