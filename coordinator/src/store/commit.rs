//! Group commit: one thread owns result writes. It drains every pending
//! batch, appends the new bodies to the value log (fdatasynced), applies
//! their pointers and index entries as one sled batch, flushes, fdatasyncs
//! sled's log file, and only then answers each waiting session. An id already stored, or
//! twice in the same group, is written once: the same signed measurement
//! again is a [`Outcome::Duplicate`], a different one an
//! [`Outcome::Conflict`] that never overwrites. Doing this check here, where
//! the existence lookup is needed anyway, costs one sled read per result
//! instead of two (BENCHMARKS.md).

use std::collections::HashMap;
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, RwLock, RwLockWriteGuard};

use tokio::sync::oneshot;

use super::{postings, result_key, Store, StoreError};

/// One verified result waiting to be made durable.
pub struct PendingResult {
    pub id: [u8; 16],
    pub agent: [u8; 16],
    pub task: Option<[u8; 16]>,
    pub campaign: Option<[u8; 16]>,
    /// The run's index owner ([`super::run_owner`]): set with `campaign`.
    pub run: Option<[u8; 16]>,
    /// prost-encoded `StoredResult`.
    pub value: Vec<u8>,
    /// The signed measurement bytes, to tell a redelivery from a conflict.
    pub measurement: prost::bytes::Bytes,
}

/// What became of one offered result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Stored now.
    New,
    /// The same signed measurement was already stored (or earlier in the
    /// group): nothing written, safe to ack.
    Duplicate,
    /// Another measurement holds this id: refused, nothing overwritten.
    Conflict,
}

/// Outcome of one submission, per result in order. The error is the
/// group's real one, shared by every job of the group.
type CommitOutcome = Result<Vec<Outcome>, Arc<StoreError>>;

struct Job {
    results: Vec<PendingResult>,
    done: oneshot::Sender<CommitOutcome>,
}

/// Sends batches to the commit thread.
#[derive(Clone)]
pub struct CommitHandle {
    tx: std_mpsc::Sender<Job>,
    /// Held (shared) by the commit thread while it writes a group; taken
    /// exclusively by [`CommitHandle::pause`] for a consistent snapshot.
    gate: Arc<RwLock<()>>,
}

/// Stats of one group commit, for metrics and benchmarks.
#[derive(Debug, Default, Clone, Copy)]
pub struct GroupStats {
    pub jobs: usize,
    pub results: usize,
    pub new: usize,
}

impl CommitHandle {
    /// Starts the commit thread for `store`.
    pub fn start(store: Store, on_group: impl Fn(GroupStats) + Send + 'static) -> CommitHandle {
        let (tx, rx) = std_mpsc::channel::<Job>();
        let gate = Arc::new(RwLock::new(()));
        let g = gate.clone();
        std::thread::Builder::new()
            .name("vantage-commit".into())
            .spawn(move || run(store, rx, g, on_group))
            .map(|_| ())
            .unwrap_or_else(|e| tracing::error!("cannot start the commit thread: {e}"));
        CommitHandle { tx, gate }
    }

    /// Blocks result commits until the guard is dropped (waiting for the
    /// group being written, if any). Call from a blocking context.
    pub fn pause(&self) -> RwLockWriteGuard<'_, ()> {
        self.gate.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes `results` durable; resolves when they are on disk, with each
    /// result's outcome in order.
    pub async fn commit(&self, results: Vec<PendingResult>) -> Result<Vec<Outcome>, StoreError> {
        let (done, rx) = oneshot::channel();
        self.tx
            .send(Job { results, done })
            .map_err(|_| StoreError::CommitterGone)?;
        match rx.await {
            Ok(Ok(n)) => Ok(n),
            Ok(Err(e)) => Err(StoreError::Commit(e)),
            Err(_) => Err(StoreError::CommitterGone),
        }
    }
}

/// Upper bound of results per group: keeps one sync's latency bounded.
const MAX_GROUP: usize = 16_384;

fn run(
    store: Store,
    rx: std_mpsc::Receiver<Job>,
    gate: Arc<RwLock<()>>,
    on_group: impl Fn(GroupStats),
) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        let mut n = jobs[0].results.len();
        while n < MAX_GROUP {
            match rx.try_recv() {
                Ok(j) => {
                    n += j.results.len();
                    jobs.push(j);
                }
                Err(_) => break,
            }
        }
        let outcome = {
            let _open = gate.read().unwrap_or_else(|p| p.into_inner());
            write_group(&store, &jobs)
        };
        match outcome {
            Ok(per_job) => {
                on_group(GroupStats {
                    jobs: jobs.len(),
                    results: n,
                    new: per_job
                        .iter()
                        .flatten()
                        .filter(|o| **o == Outcome::New)
                        .count(),
                });
                for (job, new) in jobs.into_iter().zip(per_job) {
                    let _ = job.done.send(Ok(new));
                }
            }
            Err(e) => {
                tracing::error!("group commit failed: {e}");
                let e = Arc::new(e);
                for job in jobs {
                    let _ = job.done.send(Err(e.clone()));
                }
            }
        }
    }
}

fn write_group(store: &Store, jobs: &[Job]) -> Result<Vec<Vec<Outcome>>, StoreError> {
    let mut batch = sled::Batch::default();
    // For each id met in this group, the measurement stored (or about to
    // be): a later copy is compared with that, not with the first offer,
    // which may itself have been a refused conflict.
    let mut seen: HashMap<[u8; 16], Option<prost::bytes::Bytes>> = HashMap::new();
    let mut per_job = Vec::with_capacity(jobs.len());
    let mut new: Vec<&PendingResult> = Vec::new();
    let same = |held: &Option<prost::bytes::Bytes>, offered: &prost::bytes::Bytes| {
        if held.as_ref() == Some(offered) {
            Outcome::Duplicate
        } else {
            Outcome::Conflict
        }
    };
    for job in jobs {
        let mut outcomes = Vec::with_capacity(job.results.len());
        for r in &job.results {
            if let Some(held) = seen.get(&r.id) {
                outcomes.push(same(held, &r.measurement));
                continue;
            }
            if let Some(stored) = store.results.get(result_key(&r.id))? {
                // An unreadable stored measurement matches nothing.
                let held = stored_measurement(&store.values.resolve(stored)?);
                outcomes.push(same(&held, &r.measurement));
                seen.insert(r.id, held);
                continue;
            }
            seen.insert(r.id, Some(r.measurement.clone()));
            outcomes.push(Outcome::New);
            new.push(r);
        }
        per_job.push(outcomes);
    }
    let total = new.len() as u64;
    if total > 0 {
        // Bodies first, synced: a pointer sled holds always points at
        // bytes on disk (values.rs).
        let ptrs = store
            .values
            .append(new.iter().map(|r| r.value.as_slice()))?;
        // Index entries by owner: one posting per agent and campaign in
        // the group rather than a key per result (postings.rs).
        let mut owners: HashMap<(u8, [u8; 16]), Vec<[u8; 16]>> = HashMap::new();
        for (r, p) in new.iter().zip(ptrs) {
            batch.insert(&result_key(&r.id)[..], &p.encode()[..]);
            let tagged = [
                (b'a', Some(r.agent)),
                (b't', r.task),
                (b'c', r.campaign),
                (b'u', r.run),
            ];
            for (tag, owner) in tagged {
                if let Some(owner) = owner {
                    owners.entry((tag, owner)).or_default().push(r.id);
                }
            }
        }
        for ((tag, owner), ids) in owners {
            postings::add(&store.results, &mut batch, tag, &owner, ids)?;
        }
        // Their commit sequence numbers (seq.rs), and the count, travel in
        // the same atomic batch as the results, so they survive a kill -9
        // exactly as the results do.
        Store::add_seq(
            &mut batch,
            store.last_seq()?,
            new.iter().map(|r| r.id),
            true,
        );
        let count = store.result_count()? + total;
        batch.insert(super::COUNT_KEY, &count.to_be_bytes()[..]);
        store.results.apply_batch(batch)?;
        store.sync()?;
    }
    Ok(per_job)
}

/// The signed measurement inside a stored `StoredResult`.
fn stored_measurement(value: &[u8]) -> Option<prost::bytes::Bytes> {
    use prost::Message;
    vantage_proto::v1::StoredResult::decode(value)
        .ok()?
        .envelope
        .map(|e| e.measurement)
}

#[cfg(test)]
mod tests {

    #[tokio::test]
    async fn a_failed_group_reaches_every_job_as_its_real_error() {
        // Before: the commit thread sent `e.to_string()` and `commit`
        // re-wrapped it as `Corrupt { tree: "results" }`, so a full disk
        // read as corruption. Now the error itself crosses the channel.
        let (done, rx) = oneshot::channel::<CommitOutcome>();
        let full = Arc::new(StoreError::Io {
            path: "/var/lib/vantage/values/00000001".into(),
            source: std::io::Error::new(std::io::ErrorKind::StorageFull, "No space left on device"),
        });
        done.send(Err(full)).expect("send");
        let got = match rx.await.expect("outcome") {
            Ok(_) => panic!("expected the group's error"),
            Err(e) => StoreError::Commit(e),
        };
        assert!(!matches!(got, StoreError::Corrupt { .. }));
        let text = got.to_string();
        assert!(text.contains("No space left"), "{text}");
        assert!(!text.contains("corrupt"), "{text}");
        let io = std::error::Error::source(&got)
            .and_then(|s| s.source())
            .and_then(|s| s.downcast_ref::<std::io::Error>())
            .expect("the I/O error is the source");
        assert_eq!(io.kind(), std::io::ErrorKind::StorageFull);
    }

    use super::*;
    use prost::Message;

    fn offer(id: u8, m: &str) -> PendingResult {
        let measurement = prost::bytes::Bytes::from(m.to_string());
        let value = vantage_proto::v1::StoredResult {
            envelope: Some(vantage_proto::v1::SignedResult {
                measurement: measurement.clone(),
                ..Default::default()
            }),
            ..Default::default()
        }
        .encode_to_vec();
        PendingResult {
            id: [id; 16],
            agent: [1; 16],
            task: None,
            campaign: None,
            run: None,
            value,
            measurement,
        }
    }

    /// Many jobs offering the same ids at once, so copies meet in one
    /// group and across groups (in sled): each id is new exactly once,
    /// the body stored is the new one's, every other offer is a duplicate
    /// when it equals it and a conflict otherwise, and the count is exact.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_offers_of_one_id_store_it_once() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path()).unwrap();
        let commit = CommitHandle::start(store.clone(), |_| {});
        let mut tasks = Vec::new();
        for round in 0..40u8 {
            let c = commit.clone();
            let batch: Vec<PendingResult> = (0..30u8)
                .map(|id| offer(id, if (round + id) % 3 == 0 { "b" } else { "a" }))
                .collect();
            let sent: Vec<String> = batch
                .iter()
                .map(|r| String::from_utf8(r.measurement.to_vec()).unwrap())
                .collect();
            tasks.push(tokio::spawn(async move {
                (sent, c.commit(batch).await.unwrap())
            }));
        }
        let mut offers: Vec<Vec<(String, Outcome)>> = vec![Vec::new(); 30];
        for t in tasks {
            let (sent, outcomes) = t.await.unwrap();
            for (i, (m, o)) in sent.into_iter().zip(outcomes).enumerate() {
                offers[i].push((m, o));
            }
        }
        for (id, offers) in offers.iter().enumerate() {
            let new: Vec<&String> = offers
                .iter()
                .filter(|(_, o)| *o == Outcome::New)
                .map(|(m, _)| m)
                .collect();
            assert_eq!(new.len(), 1, "id {id}: {offers:?}");
            let stored = store
                .values
                .resolve(
                    store
                        .results
                        .get(result_key(&[id as u8; 16]))
                        .unwrap()
                        .unwrap(),
                )
                .unwrap();
            let stored = String::from_utf8(stored_measurement(&stored).unwrap().to_vec()).unwrap();
            assert_eq!(&stored, new[0]);
            for (m, o) in offers.iter().filter(|(_, o)| *o != Outcome::New) {
                let want = if *m == stored {
                    Outcome::Duplicate
                } else {
                    Outcome::Conflict
                };
                assert_eq!(*o, want, "id {id}");
            }
        }
        assert_eq!(store.result_count().unwrap(), 30);
    }

    /// Every new result gets the next commit sequence number in the batch
    /// that stores it; duplicates get none. A result stored late with an
    /// older id comes after the ones stored before it, and a store written
    /// before the sequence is numbered in id order when opened.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_commit_sequence_follows_storage_not_ids() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path()).unwrap();
        let commit = CommitHandle::start(store.clone(), |_| {});
        assert_eq!(store.last_seq().unwrap(), 0);
        commit
            .commit(vec![offer(9, "a"), offer(7, "a")])
            .await
            .unwrap();
        // Later, with an older id, and a duplicate.
        let o = commit
            .commit(vec![offer(3, "a"), offer(9, "a")])
            .await
            .unwrap();
        assert_eq!(o, vec![Outcome::New, Outcome::Duplicate]);
        let order = |s: &Store, after| -> Vec<(u64, u8)> {
            s.results_after_seq(after)
                .map(|r| r.map(|(n, id, _)| (n, id[0])).unwrap())
                .collect()
        };
        assert_eq!(order(&store, 0), vec![(1, 9), (2, 7), (3, 3)]);
        assert_eq!(order(&store, 2), vec![(3, 3)]);
        assert_eq!(store.last_seq().unwrap(), 3);

        // A store from before: no sequence at all. Opened, it is numbered.
        let mut old = sled::Batch::default();
        for (k, _) in store.results.scan_prefix(b"q").map(Result::unwrap) {
            old.remove(k);
        }
        old.remove(crate::store::LAST_SEQ_KEY);
        store.results.apply_batch(old).unwrap();
        store.sync().unwrap();
        assert!(order(&store, 0).is_empty());
        drop(commit);
        drop(store);
        let store = loop {
            match Store::open(d.path()) {
                Ok(s) => break s,
                Err(StoreError::Locked(_)) => {
                    std::thread::sleep(std::time::Duration::from_millis(50))
                }
                Err(e) => panic!("{e}"),
            }
        };
        assert_eq!(order(&store, 0), vec![(1, 3), (2, 7), (3, 9)]);
        assert_eq!(store.last_seq().unwrap(), 3);
        let commit = CommitHandle::start(store.clone(), |_| {});
        commit.commit(vec![offer(1, "a")]).await.unwrap();
        assert_eq!(order(&store, 3), vec![(4, 1)]);
    }
}
