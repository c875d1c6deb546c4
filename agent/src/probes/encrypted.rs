//! `encrypted` probe: does a censor block fully encrypted (random-looking)
//! traffic, and does it keep blocking the server afterwards?
//!
//! Method, after GFW Report (Wu et al., USENIX Security 2023, "How the Great
//! Firewall of China Detects and Blocks Fully Encrypted Traffic"):
//!
//! 1. Trigger: TCP connect to ip:port and send `payload_bytes` (default
//!    256) random bytes as the first data packet, then wait briefly (at most
//!    [`TRIGGER_READ`]) for an answer or a reset. The outcome is `trigger`
//!    (`None` when connect and write succeeded and no reset came back).
//! 2. Re-tests: `retest_count` (default 3) plain TCP connects to the same
//!    ip:port, one every `retest_interval_ms` (default 60000) after the
//!    trigger, each an [`EncryptedAttempt`]. The GFW's residual censorship
//!    drops every packet of the same (client IP, server IP, server port) for
//!    up to 180 s after a detection, so the defaults cover that window.
//! 3. `residual_blocking` is true when the trigger connection was
//!    established but at least one later re-test failed.
//!
//! The payload is random but built so that none of the paper's exemptions
//! applies (the GFW lets a first packet pass when ANY of them holds):
//!
//! - Ex1 entropy: average popcount per byte <= 3.4 or >= 4.6 is exempt; we
//!   require 3.8..=4.2 (a uniform random byte averages 4).
//! - Ex2: the first 6 bytes all printable ASCII (0x20-0x7e) is exempt; we
//!   require all of the first 6 bytes to be non-printable.
//! - Ex3: more than 50% printable bytes is exempt; we require at most 50%.
//! - Ex4: more than 20 contiguous printable bytes is exempt; we allow at
//!   most 20.
//! - Ex5: a recognisable protocol prefix (TLS record `16/17 03 0x`, HTTP
//!   methods) is exempt; non-printable first bytes already rule out HTTP,
//!   and we reject a TLS-record-looking prefix explicitly.
//!
//! The GFW also blocks only a fraction (about 26%) of matching connections,
//! so one measurement without residual blocking is weak evidence of
//! absence; the coordinator should repeat it.
//!
//! Target policy: a forbidden `ip` in the input is a refusal (see `target.rs`).

#![allow(clippy::needless_update)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::RngCore;
use tokio::io::AsyncReadExt;
use vantage_proto::failure::{classify_io, failure, op};
use vantage_proto::v1::{measurement, EncryptedAttempt, EncryptedInput, EncryptedResult, Failure};

use super::{measured, net, target, ProbeContext, Probed, Steps};

/// How long the trigger connection waits for a reply or a reset.
const TRIGGER_READ: Duration = Duration::from_secs(1);
/// Payload size bounds (the first-packet heuristics look at one segment).
const MIN_PAYLOAD: usize = 16;
const MAX_PAYLOAD: usize = 1400;
/// Per re-test connect budget bounds.
const MIN_RETEST_BUDGET: Duration = Duration::from_secs(1);
const MAX_RETEST_BUDGET: Duration = Duration::from_secs(10);

fn printable(b: u8) -> bool {
    (0x20..=0x7e).contains(&b)
}

/// Whether `p` escapes every exemption listed in the module docs.
pub(crate) fn no_exemption_applies(p: &[u8]) -> bool {
    if p.len() < 6 {
        return false;
    }
    let bits: u32 = p.iter().map(|b| b.count_ones()).sum();
    let avg = f64::from(bits) / p.len() as f64;
    if !(3.8..=4.2).contains(&avg) {
        return false;
    }
    if p[..6].iter().any(|&b| printable(b)) {
        return false;
    }
    let n_printable = p.iter().filter(|&&b| printable(b)).count();
    if n_printable * 2 > p.len() {
        return false;
    }
    let mut run = 0usize;
    for &b in p {
        run = if printable(b) { run + 1 } else { 0 };
        if run > 20 {
            return false;
        }
    }
    if matches!(p[0], 0x14..=0x17) && p[1] == 0x03 && p[2] <= 0x04 {
        return false;
    }
    true
}

/// A random payload of `len` bytes for which no exemption applies.
pub(crate) fn make_payload(len: usize, rng: &mut impl RngCore) -> Vec<u8> {
    let len = len.clamp(MIN_PAYLOAD, MAX_PAYLOAD);
    let mut p = vec![0u8; len];
    loop {
        rng.fill_bytes(&mut p);
        // Make the first six bytes non-printable, keeping popcount near 4:
        // flip the top bit (0x20-0x7e becomes 0xa0-0xfe, also non-printable).
        for b in p.iter_mut().take(6) {
            if printable(*b) {
                *b |= 0x80;
            }
        }
        if no_exemption_applies(&p) {
            return p;
        }
    }
}

/// Runs the `encrypted` probe.
pub async fn run(input: &EncryptedInput, ctx: &ProbeContext) -> Probed {
    let mut steps = Steps::new();
    let origin = Instant::now();
    let addr = target::ip_port("encrypted", &input.ip, input.port, None, &ctx.policy)?;
    let payload_len = if input.payload_bytes == 0 {
        256
    } else {
        input.payload_bytes as usize
    };
    let retests = if input.retest_count == 0 {
        3
    } else {
        input.retest_count.min(100)
    };
    let interval = Duration::from_millis(if input.retest_interval_ms == 0 {
        60_000
    } else {
        u64::from(input.retest_interval_ms)
    });
    let mut result = EncryptedResult {
        ip: addr.ip().to_string(),
        port: addr.port().into(),
        ..Default::default()
    };

    // 1. Trigger.
    let payload = make_payload(payload_len, &mut rand::thread_rng());
    let trigger_at = Instant::now();
    let (connected, trigger) = trigger(addr, &payload, ctx, &mut steps).await;
    result.trigger = trigger;

    // 2. Re-tests.
    for i in 1..=retests {
        let due = trigger_at + interval * i;
        let wait = due.saturating_duration_since(Instant::now());
        if wait >= ctx.remaining() {
            break;
        }
        tokio::time::sleep(wait).await;
        let budget = interval
            .clamp(MIN_RETEST_BUDGET, MAX_RETEST_BUDGET)
            .min(ctx.remaining());
        if budget.is_zero() {
            break;
        }
        let started = Instant::now();
        let f = net::connect(addr, budget).await.err();
        steps.record(&format!("retest_{i}"), started, f.clone());
        result.retests.push(EncryptedAttempt {
            at_us: started.saturating_duration_since(origin).as_micros() as i64,
            failure: f,
            ..Default::default()
        });
    }

    // 3. Verdict.
    result.residual_blocking = connected && result.retests.iter().any(|a| a.failure.is_some());
    measured(measurement::Result::Encrypted(result), steps)
}

/// Connects, sends the payload, waits briefly for a reply or a reset.
/// Returns whether the connection was established, and the trigger failure.
async fn trigger(
    addr: SocketAddr,
    payload: &[u8],
    ctx: &ProbeContext,
    steps: &mut Steps,
) -> (bool, Option<Failure>) {
    let connected = steps.run("connect", net::connect(addr, ctx.remaining()));
    let mut stream = match connected.await {
        Ok((s, _)) => s,
        Err(f) => return (false, Some(f)),
    };
    let written = net::write_all(&mut stream, payload, ctx);
    if let Err(f) = steps.run("write", written).await {
        return (true, Some(f));
    }
    // A reply, EOF or silence are all fine; only a reset is a failure.
    let started = Instant::now();
    let cap = (ctx.max_read_bytes as usize).clamp(1, 4096);
    let mut buf = vec![0u8; cap];
    let budget = TRIGGER_READ.min(ctx.remaining());
    let rerr = match tokio::time::timeout(budget, stream.read(&mut buf)).await {
        Ok(Err(e)) => Some(failure(&classify_io(&e), op::READ)),
        _ => None,
    };
    steps.record("read", started, rerr.clone());
    (true, rerr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_escape_every_exemption() {
        let mut rng = rand::thread_rng();
        for len in [0usize, 6, 16, 256, 1000, 5000] {
            let p = make_payload(len, &mut rng);
            assert!(no_exemption_applies(&p));
            assert!(p.len() >= MIN_PAYLOAD && p.len() <= MAX_PAYLOAD);
            assert!(p[..6].iter().all(|&b| !printable(b)));
        }
    }

    #[test]
    fn exemptions_are_detected() {
        let mut p = vec![0xa5u8; 64]; // popcount 4, non-printable
        assert!(no_exemption_applies(&p));
        p[..6].copy_from_slice(b"GET / ");
        assert!(!no_exemption_applies(&p), "printable prefix");
        let zeros = vec![0x80u8; 64]; // popcount 1
        assert!(!no_exemption_applies(&zeros), "low entropy");
        let mut tls = vec![0xa5u8; 64];
        tls[..3].copy_from_slice(&[0x16, 0x03, 0x01]);
        assert!(!no_exemption_applies(&tls), "tls prefix");
        let mut run = vec![0xa5u8; 64];
        for b in run.iter_mut().skip(10).take(25) {
            *b = b'Z'; // 'Z' = 0x5a, popcount 4
        }
        assert!(!no_exemption_applies(&run), "printable run");
    }
}
