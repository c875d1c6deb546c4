//! Faults (issue 9): the coordinator is killed with SIGKILL at random
//! moments while agents stream results. Nothing acked may be lost, nothing
//! may be stored twice, and every stored signature must still verify.
//! Builds on `spine::coordinator_kill9_under_load_loses_and_duplicates_nothing`
//! (4 kills, real agents only) with 20 kills and streaming clients that
//! record exactly which ids were acked before each kill, next to real
//! agents delivering from their outboxes.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use vantage_proto::client::ConnectOptions;
use vantage_proto::v1::{SignedResult, Step};

use crate::harness::*;
use crate::hostile::{open_session_at, stored};

const KILLS: usize = 20;
const STREAMERS: usize = 3;
const REAL_AGENTS: usize = 2;
const PER_REAL_AGENT: usize = 1500;
const BATCH: usize = 25;

#[derive(Default)]
struct Ledger {
    /// Every id ever sent (a resend after a kill is the same envelope).
    sent: HashSet<String>,
    /// Ids the coordinator acked.
    acked: HashSet<String>,
    /// Batches whose session broke before the ack (resent afterwards).
    broken_batches: u64,
}

/// One client: signs batches, sends them, records acks; after a broken
/// session it reconnects and resends the same envelopes, as the agent's
/// outbox does. Stops once `stop` is set and nothing is outstanding.
async fn stream(
    addr: Arc<Mutex<String>>,
    opts: ConnectOptions,
    dir: PathBuf,
    ledger: Arc<Mutex<Ledger>>,
    stop: Arc<AtomicBool>,
) {
    let mut pending: Vec<SignedResult> = Vec::new();
    let mut pending_ids: Vec<String> = Vec::new();
    let mut session = None;
    loop {
        if pending.is_empty() && stop.load(Ordering::SeqCst) {
            return;
        }
        if session.is_none() {
            let a = addr.lock().unwrap().clone();
            match open_session_at(&a, opts.clone(), &dir).await {
                Ok(s) => session = Some(s),
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            }
        }
        let s = session.as_mut().expect("session");
        if pending.is_empty() {
            for _ in 0..BATCH {
                let mut m = measurement(&s.agent_id);
                m.steps = vec![Step {
                    name: "x".repeat(512),
                    ..Default::default()
                }];
                pending_ids.push(m.id.clone());
                pending.push(s.sign(&m));
            }
            ledger
                .lock()
                .unwrap()
                .sent
                .extend(pending_ids.iter().cloned());
        }
        match s.send(pending.clone()).await {
            Ok(ack) => {
                assert!(ack.rejected.is_empty(), "rejections: {:?}", ack.rejected);
                let got: HashSet<&String> = ack.accepted.iter().collect();
                assert!(pending_ids.iter().all(|i| got.contains(i)), "partial ack");
                ledger.lock().unwrap().acked.extend(ack.accepted);
                pending.clear();
                pending_ids.clear();
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(_) => {
                session = None;
                ledger.lock().unwrap().broken_batches += 1;
            }
        }
    }
}

#[test]
fn coordinator_kill9_20_times_under_streaming_load_loses_nothing_acked() {
    let rt = runtime();
    let mut c = Coordinator::init().start();
    let token = c.token((STREAMERS + REAL_AGENTS) as u32, "1h");
    let streamer_dirs: Vec<PathBuf> = (0..STREAMERS)
        .map(|i| {
            Agent::enroll(&c, &format!("s{i}"), &token)
                .expect("enroll")
                .dir
                .clone()
        })
        .collect();
    let mut agents: Vec<Agent> = (0..REAL_AGENTS)
        .map(|i| Agent::enroll(&c, &format!("a{i}"), &token).expect("enroll"))
        .collect();
    let mut outboxed = HashSet::new();
    for a in &agents {
        outboxed.extend(a.fill(PER_REAL_AGENT));
    }
    assert_eq!(outboxed.len(), REAL_AGENTS * PER_REAL_AGENT);

    let addr = Arc::new(Mutex::new(c.addr.clone()));
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let streamers: Vec<_> = streamer_dirs
        .iter()
        .map(|d| {
            rt.spawn(stream(
                addr.clone(),
                c.options(None),
                d.clone(),
                ledger.clone(),
                stop.clone(),
            ))
        })
        .collect();
    for a in &mut agents {
        a.start();
    }

    let seed: u64 = rand::random();
    eprintln!("faults: kill schedule seed {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    // (acked before the kill, stored right after the restart)
    let mut per_kill: Vec<(usize, u64)> = Vec::new();
    let mut acked_before: HashSet<String> = HashSet::new();
    let started = Instant::now();
    for _ in 0..KILLS {
        std::thread::sleep(Duration::from_millis(rng.gen_range(100..=700)));
        let snapshot = ledger.lock().unwrap().acked.clone();
        c.kill9();
        std::thread::sleep(Duration::from_millis(rng.gen_range(0..=150)));
        c.restart();
        *addr.lock().unwrap() = c.addr.clone();
        let now_stored = rt.block_on(c.stats()).results_stored;
        assert!(
            now_stored >= snapshot.len() as u64,
            "after a kill the store holds {now_stored} results but {} were acked before it",
            snapshot.len()
        );
        per_kill.push((snapshot.len(), now_stored));
        acked_before.extend(snapshot);
    }
    let kill_phase = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    for s in streamers {
        rt.block_on(s).expect("streamer finished");
    }
    let sent = ledger.lock().unwrap().sent.clone();
    let want_total = (sent.len() + outboxed.len()) as u64;
    wait_until(Duration::from_secs(60), "every result delivered", || {
        rt.block_on(c.stats()).results_stored >= want_total
    });

    let got = rt.block_on(stored(&c)); // panics on a duplicate or bad signature
    let ids: HashSet<String> = got.keys().cloned().collect();
    let lost: Vec<_> = acked_before.difference(&ids).collect();
    assert!(
        lost.is_empty(),
        "{} acked results lost: {lost:?}",
        lost.len()
    );
    let expected: HashSet<String> = sent.union(&outboxed).cloned().collect();
    assert_eq!(
        ids, expected,
        "the store holds exactly what was signed, each once"
    );
    let stats = rt.block_on(c.stats());
    assert_eq!(stats.results_stored, ids.len() as u64, "result count");
    assert!(c.is_running());

    let l = ledger.lock().unwrap();
    let dups = stats
        .counters
        .iter()
        .find(|x| x.name == "duplicate_results")
        .map(|x| x.value)
        .unwrap_or(0);
    eprintln!(
        "faults: {KILLS} kills in {:.1} s; acked before the kills: {} (last kill: {}); \
         streamed {} + outbox {} = {} stored, each once, all signatures verified; \
         lost 0; batches broken by a kill and resent: {}; duplicates ignored: {dups}; \
         per kill (acked before, stored after restart): {per_kill:?}",
        kill_phase.as_secs_f64(),
        acked_before.len(),
        per_kill.last().map(|p| p.0).unwrap_or(0),
        sent.len(),
        outboxed.len(),
        ids.len(),
        l.broken_batches,
    );
}
