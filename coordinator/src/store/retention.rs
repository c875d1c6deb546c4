//! Retention: results a sink has confirmed and that are older than the
//! configured age leave sled (and their value-log segments, once nothing
//! in them is live, leave the disk). A result not yet confirmed is never
//! removed, and without a sink nothing is.
//!
//! Results leave in commit order, from the oldest sequence number up: the
//! `q` sequence key, the `r` entry, its index entries (single keys, or the
//! id taken out of its packed posting: `postings.rs`) and the count, in
//! one atomic batch, written while the commit thread is paused (it is the
//! results tree's other writer, and reads the count and the last posting
//! before writing its own batch). `meta` keeps the last number removed.
//!
//! The runs whose results leave are sealed first (`meta`, `sealed/...`):
//! their verdicts, computed while every result was here, are final and
//! never recomputed from what is left (a restart marks every run for
//! recomputation). The caller brings the runs' verdicts up to date before
//! a pass (`crate::verdicts::refresh_all`).
//!
//! A removed result that an agent delivers again is stored again, with a
//! new number, and sunk again; the sink's table keeps it once (`FINAL`).
//! A result arriving for a sealed run is stored and sunk, and leaves its
//! run's verdicts as they are.

use std::collections::{BTreeMap, HashSet};

use prost::Message;
use vantage_proto::v1::StoredResult;

use super::{postings, result_key, seq, uuid_key, Store, StoreError, COUNT_KEY};

const RETIRED_KEY: &[u8] = b"retired_seq";

/// What one pass removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Retired {
    pub results: u64,
    /// The last sequence number removed so far (over every pass).
    pub through_seq: u64,
    pub segments: usize,
    pub segment_bytes: u64,
    /// Runs sealed by this pass (some sealed before may be among them).
    pub runs_sealed: usize,
}

fn sealed_key(campaign_id: &str, run_id: &str) -> Vec<u8> {
    format!("sealed/{campaign_id}/{run_id}").into_bytes()
}

/// Results removed per batch (each batch pauses the commit thread).
const CHUNK: usize = 2_000;

impl Store {
    /// The last commit sequence number retention removed (0: none).
    pub fn retired_seq(&self) -> Result<u64, StoreError> {
        Ok(match self.meta.get(RETIRED_KEY)? {
            Some(v) => <[u8; 8]>::try_from(v.as_ref())
                .map(u64::from_be_bytes)
                .map_err(|_| StoreError::Corrupt {
                    tree: "meta",
                    detail: "retired sequence number of the wrong length".into(),
                })?,
            None => 0,
        })
    }

    /// Holds retention off while the guard lives: what sled holds and
    /// [`Store::retired_seq`] stay consistent for a reader that reads the
    /// removed results elsewhere (`crate::sink::read`).
    pub fn hold_retention(&self) -> std::sync::RwLockReadGuard<'_, ()> {
        self.retention.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a run's results began to leave sled: its stored verdicts are
    /// final.
    pub fn run_sealed(&self, campaign_id: &str, run_id: &str) -> Result<bool, StoreError> {
        Ok(self.meta.contains_key(sealed_key(campaign_id, run_id))?)
    }

    /// Seals runs (campaign id, run id): see the module's documentation.
    pub fn seal_runs<'a>(
        &self,
        runs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<(), StoreError> {
        for (campaign_id, run_id) in runs {
            self.meta.insert(sealed_key(campaign_id, run_id), &[][..])?;
        }
        Ok(())
    }

    /// Removes the results numbered up to `confirmed` that were stored
    /// before `stored_before_us`, oldest first, then deletes the value-log
    /// segments left without a live value. `pause` blocks the commit
    /// thread for one batch (`CommitHandle::pause`).
    pub fn retire<G>(
        &self,
        confirmed: u64,
        stored_before_us: i64,
        pause: impl Fn() -> G,
    ) -> Result<Retired, StoreError> {
        let mut out = Retired {
            through_seq: self.retired_seq()?,
            ..Default::default()
        };
        loop {
            // Readers first, then the commit thread: a long reader delays
            // retention, never ingest.
            let _readers_out = self.retention.write().unwrap_or_else(|p| p.into_inner());
            let _paused = pause();
            let n = self.retire_chunk(confirmed, stored_before_us, &mut out)?;
            if n < CHUNK {
                break;
            }
        }
        if out.results > 0 {
            let (segments, bytes) = self.reclaim_segments()?;
            out.segments = segments;
            out.segment_bytes = bytes;
        }
        Ok(out)
    }

    fn retire_chunk(
        &self,
        confirmed: u64,
        stored_before_us: i64,
        out: &mut Retired,
    ) -> Result<usize, StoreError> {
        let mut batch = sled::Batch::default();
        // Per (tag, owner): the ids leaving.
        let mut owners: BTreeMap<(u8, [u8; 16]), Vec<[u8; 16]>> = BTreeMap::new();
        let mut runs: HashSet<(String, String)> = HashSet::new();
        let mut n = 0usize;
        let mut last = out.through_seq;
        for item in self.results_after_seq(out.through_seq).take(CHUNK) {
            let (number, id, bytes) = item?;
            if number > confirmed {
                break;
            }
            let stored = StoredResult::decode(bytes.as_ref()).ok();
            let received = stored.as_ref().map_or(i64::MIN, |s| s.received_us);
            if received >= stored_before_us {
                break;
            }
            let m = stored
                .as_ref()
                .and_then(|s| s.envelope.as_ref())
                .and_then(|e| vantage_proto::envelope::decode(e).ok());
            let agent = stored.as_ref().and_then(|s| uuid_key(&s.agent_id));
            let task = m.as_ref().and_then(|m| uuid_key(&m.task_id));
            let campaign = m.as_ref().and_then(|m| uuid_key(&m.campaign_id));
            if let Some(m) = &m {
                if !m.campaign_id.is_empty() {
                    runs.insert((m.campaign_id.clone(), m.run_id.clone()));
                }
            }
            let run = m
                .as_ref()
                .zip(campaign)
                .map(|(m, c)| super::run_owner(&c, &m.run_id));
            for (tag, owner) in [(b'a', agent), (b't', task), (b'c', campaign), (b'u', run)] {
                if let Some(owner) = owner {
                    owners.entry((tag, owner)).or_default().push(id);
                }
            }
            batch.remove(&seq::seq_key(number)[..]);
            batch.remove(&result_key(&id)[..]);
            last = number;
            n += 1;
        }
        if n == 0 {
            return Ok(0);
        }
        // Sealed before anything leaves: a crash in between leaves runs
        // sealed with all their results, which is harmless.
        self.seal_runs(runs.iter().map(|(c, r)| (c.as_str(), r.as_str())))?;
        out.runs_sealed += runs.len();
        for ((tag, owner), ids) in owners {
            postings::remove(&self.results, &mut batch, tag, &owner, &ids)?;
        }
        let count = self.result_count()?.saturating_sub(n as u64);
        batch.insert(COUNT_KEY, &count.to_be_bytes()[..]);
        self.results.apply_batch(batch)?;
        self.meta.insert(RETIRED_KEY, &last.to_be_bytes()[..])?;
        self.sync()?;
        out.results += n as u64;
        out.through_seq = last;
        Ok(n)
    }

    /// Deletes closed segments no `r` entry points into.
    fn reclaim_segments(&self) -> Result<(usize, u64), StoreError> {
        // Read first: anything stored after this goes to this segment or a
        // newer one, never to one below it.
        let below = self.values.writing();
        let mut live = HashSet::new();
        for kv in self.results.scan_prefix(b"r") {
            let (_, v) = kv?;
            if let Some(p) = super::values::Pointer::decode(&v) {
                live.insert(p.segment);
            }
        }
        self.values.reclaim(below, &live)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{CommitHandle, PendingResult};

    fn id(n: u16) -> [u8; 16] {
        let mut a = [0u8; 16];
        a[0] = 1;
        a[14..].copy_from_slice(&n.to_be_bytes());
        a
    }

    const AGENT: &str = "0190a8b2-0000-7000-8000-00000000a9e1";
    const CAMPAIGN: &str = "0190a8b2-0000-7000-8000-00000000ca01";

    fn offer(range: std::ops::Range<u16>, received_us: i64) -> Vec<PendingResult> {
        let key = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
        range
            .map(|n| {
                let m = vantage_proto::v1::Measurement {
                    id: uuid::Uuid::from_bytes(id(n)).to_string(),
                    agent_id: AGENT.into(),
                    campaign_id: CAMPAIGN.into(),
                    run_id: "run".into(),
                    ..Default::default()
                };
                let env = vantage_proto::envelope::sign(&key, &m);
                PendingResult {
                    id: id(n),
                    agent: uuid_key(AGENT).unwrap(),
                    task: None,
                    campaign: uuid_key(CAMPAIGN),
                    run: uuid_key(CAMPAIGN).map(|c| crate::store::run_owner(&c, "run")),
                    value: StoredResult {
                        envelope: Some(env.clone()),
                        agent_id: AGENT.into(),
                        received_us,
                        seq: 0,
                    }
                    .encode_to_vec(),
                    measurement: env.measurement,
                }
            })
            .collect()
    }

    fn ids(store: &Store, index: Option<(u8, [u8; 16])>) -> Vec<u16> {
        store
            .results_after(index, None)
            .map(|r| {
                let (id, _) = r.expect("an index never points at a removed result");
                u16::from_be_bytes([id[14], id[15]])
            })
            .collect()
    }

    /// Three segments (a store opened three times); results leave only
    /// when confirmed and old enough, in commit order, with their index
    /// entries; the segments left without a live value are deleted.
    #[tokio::test]
    async fn only_confirmed_old_results_leave_and_dead_segments_go() {
        let d = tempfile::tempdir().unwrap();
        // Old results in two segments, postings (a group of 300) and
        // single entries (a late group of 2); then young ones.
        for (range, at) in [(100..400, 1_000), (0..2, 2_000), (400..500, 9_000)] {
            let store = Store::open(d.path()).unwrap();
            let commit = CommitHandle::start(store.clone(), |_| {});
            commit.commit(offer(range, at)).await.unwrap();
        }
        let store = Store::open(d.path()).unwrap();
        let segments = || std::fs::read_dir(d.path().join("values")).unwrap().count();
        assert_eq!(segments(), 3);
        let gate = std::sync::RwLock::new(());
        let pause = || gate.write().unwrap();

        // Not confirmed past 250: the old results after it stay.
        let r = store.retire(250, 5_000, pause).unwrap();
        assert_eq!((r.results, r.through_seq, r.segments), (250, 250, 0));
        assert_eq!(r.runs_sealed, 1);
        assert!(store.run_sealed(CAMPAIGN, "run").unwrap());
        assert!(!store.run_sealed(CAMPAIGN, "other").unwrap());
        assert_eq!(store.result_count().unwrap(), 152);
        let want: Vec<u16> = (0..2).chain(350..500).collect();
        assert_eq!(ids(&store, None), want);
        let campaign = (b'c', uuid_key(CAMPAIGN).unwrap());
        let agent = (b'a', uuid_key(AGENT).unwrap());
        let mut in_order = want.clone();
        in_order.sort_unstable();
        assert_eq!(ids(&store, Some(campaign)), in_order);
        assert_eq!(ids(&store, Some(agent)), in_order);

        // Everything confirmed: the old ones go (the late pair too), the
        // young stay; the first two segments are empty and deleted.
        let r = store.retire(u64::MAX, 5_000, pause).unwrap();
        assert_eq!((r.results, r.through_seq), (52, 302));
        assert_eq!(r.segments, 2);
        assert!(r.segment_bytes > 300 * 100, "{r:?}");
        assert_eq!(segments(), 1);
        let young: Vec<u16> = (400..500).collect();
        assert_eq!(ids(&store, None), young);
        assert_eq!(ids(&store, Some(campaign)), young);
        assert_eq!(store.indexed_results(b'a', agent.1), 100);
        assert_eq!(store.result_count().unwrap(), 100);
        assert_eq!(store.results_after_seq(0).count(), 100);
        assert!(!store.has_result(&id(5)).unwrap());

        // Nothing more to do; a reopened store agrees and reads the rest.
        assert_eq!(store.retire(u64::MAX, 5_000, pause).unwrap().results, 0);
        drop(store);
        let store = Store::open(d.path()).unwrap();
        assert_eq!(store.retired_seq().unwrap(), 302);
        assert_eq!(ids(&store, None), young);
    }
}
