//! Ed25519 batch verification of signed envelopes, one key per batch (as
//! one ingest batch is): ed25519-dalek's `verify_batch` (2n+1 points) against
//! `envelope::verify_batch` (same-key, n+2 points), at the ingest batch size
//! and at half of it, and on one thread against two.
//!
//! `cargo bench -p vantage-proto --bench verify` (no criterion: a plain
//! timing loop, rounds of the variants interleaved, medians printed, so a
//! noisy shared machine hits every variant alike).

use std::time::Instant;

use ed25519_dalek::{Signature, SigningKey};
use vantage_proto::envelope::{self, MEASUREMENT_DOMAIN};
use vantage_proto::v1::{Measurement, SignedResult, Step};

fn envelopes(key: &SigningKey, n: usize) -> Vec<SignedResult> {
    (0..n)
        .map(|i| {
            let m = Measurement {
                id: envelope::new_id(),
                steps: vec![Step {
                    name: format!("{i}-{}", "x".repeat(900)),
                    ..Default::default()
                }],
                ..Default::default()
            };
            envelope::sign(key, &m)
        })
        .collect()
}

fn dalek(key: &SigningKey, envs: &[SignedResult]) {
    let msgs: Vec<Vec<u8>> = envs
        .iter()
        .map(|e| [MEASUREMENT_DOMAIN, e.measurement.as_ref()].concat())
        .collect();
    let refs: Vec<&[u8]> = msgs.iter().map(Vec::as_slice).collect();
    let sigs: Vec<Signature> = envs
        .iter()
        .map(|e| Signature::from_slice(&e.signature).unwrap())
        .collect();
    let keys = vec![key.verifying_key(); envs.len()];
    ed25519_dalek::verify_batch(&refs, &sigs, &keys).unwrap();
}

fn same_key(key: &SigningKey, envs: &[SignedResult]) {
    let vk = key.verifying_key();
    let items: Vec<_> = envs.iter().map(|e| (&vk, e)).collect();
    assert!(envelope::verify_batch(&items).iter().all(Result::is_ok));
}

/// Results per second of `f` over `rounds` calls on `envs`.
fn rate(rounds: usize, envs: &[SignedResult], f: impl Fn(&[SignedResult])) -> f64 {
    let t = Instant::now();
    for _ in 0..rounds {
        f(envs);
    }
    (rounds * envs.len()) as f64 / t.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let key = SigningKey::from_bytes(&[9u8; 32]);
    let b256 = envelopes(&key, 256);
    let b128 = envelopes(&key, 128);
    let reps = 9;
    let rounds = 20;
    let mut d256 = Vec::new();
    let mut s256 = Vec::new();
    let mut s128 = Vec::new();
    let mut s256x2 = Vec::new();
    for _ in 0..reps {
        d256.push(rate(rounds, &b256, |e| dalek(&key, e)));
        s256.push(rate(rounds, &b256, |e| same_key(&key, e)));
        s128.push(rate(2 * rounds, &b128, |e| same_key(&key, e)));
        // Two threads, each verifying its own batches (as two ingest
        // batches on the blocking pool do): machine-wide results/s.
        let t = Instant::now();
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    for _ in 0..rounds {
                        same_key(&key, &b256);
                    }
                });
            }
        });
        s256x2.push((2 * rounds * 256) as f64 / t.elapsed().as_secs_f64());
    }
    println!("Ed25519 batch verify, 1 key, ~1 KiB envelopes, median of {reps} x {rounds} batches");
    println!(
        "  dalek verify_batch,  batch 256, 1 thread   {:>9.0} results/s",
        median(d256)
    );
    println!(
        "  same-key,            batch 256, 1 thread   {:>9.0} results/s",
        median(s256)
    );
    println!(
        "  same-key,            batch 128, 1 thread   {:>9.0} results/s",
        median(s128)
    );
    println!(
        "  same-key,            batch 256, 2 threads  {:>9.0} results/s",
        median(s256x2)
    );
}
