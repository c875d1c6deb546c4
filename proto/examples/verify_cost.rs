//! What bad signatures cost the coordinator: times `verify_batch` on one
//! agent's batch of 256 envelopes with 0, 1, 16 and 256 bad signatures,
//! against re-checking a failed group one by one (what it did before), and
//! prints medians of 21 runs and the ratio to the clean batch measured in
//! the same run. `cargo run --release -p vantage-proto --example verify_cost`

use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use vantage_proto::envelope::{self, verify, verify_batch_counted};
use vantage_proto::v1::{Measurement, SignedResult};

const N: usize = 256;
const RUNS: usize = 21;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let key = SigningKey::from_bytes(&[9; 32]);
    let vk = key.verifying_key();
    let envs: Vec<SignedResult> = (0..N)
        .map(|i| {
            let m = Measurement {
                id: envelope::new_id(),
                agent_id: "bench".into(),
                start_us: 1 + i as i64,
                software_version: "x".repeat(600),
                ..Default::default()
            };
            envelope::sign(&key, &m)
        })
        .collect();
    let spoiled = |bad: usize| -> Vec<SignedResult> {
        let mut v = envs.clone();
        for e in v.iter_mut().step_by(N / bad.max(1)).take(bad) {
            let mut b = e.measurement.to_vec();
            b[2] ^= 1;
            e.measurement = b.into();
        }
        v
    };
    let mut clean = Duration::ZERO;
    println!("bad\tnow (median)\tratio\tone-by-one (median)\tratio");
    for bad in [0, 1, 16, N] {
        let set = spoiled(bad);
        let items: Vec<_> = set.iter().map(|e| (&vk, e)).collect();
        let now = median(
            (0..RUNS)
                .map(|_| {
                    let t = Instant::now();
                    let (out, _) = verify_batch_counted(&items);
                    assert_eq!(out.iter().filter(|r| r.is_err()).count(), bad);
                    t.elapsed()
                })
                .collect(),
        );
        // Before: one batch check (it costs what the clean one does),
        // then every envelope of a failed group alone.
        let before = if bad == 0 {
            now
        } else {
            clean
                + median(
                    (0..RUNS)
                        .map(|_| {
                            let t = Instant::now();
                            let n = set.iter().filter(|e| verify(&vk, e).is_err()).count();
                            assert_eq!(n, bad);
                            t.elapsed()
                        })
                        .collect(),
                )
        };
        if bad == 0 {
            clean = now;
        }
        let r = |d: Duration| d.as_secs_f64() / clean.as_secs_f64();
        println!(
            "{bad}\t{now:.2?}\t{:.2}\t{before:.2?}\t{:.2}",
            r(now),
            r(before)
        );
    }
}
