//! The only module that knows sled: trees, key layouts and the durability
//! rule. Keys are big-endian and time-ordered (UUIDv7 ids), so scans come out
//! oldest first.
//!
//! Trees (kept few on purpose, see sled #1484):
//! - `meta`:    counters, settings, the coordinator's id and where each
//!   result sink stands (`sink.rs`).
//! - `tokens`:  SHA-256(token secret) -> [`TokenRecord`] (JSON).
//! - `agents`:  agent id (16 bytes) -> [`AgentRecord`] (JSON).
//! - `certs`:   client-certificate SHA-256 (hex) -> agent id (16 bytes).
//! - `results`: one tree so that a result and its index entries land in one
//!   atomic batch:
//!   - `r` id16            -> pointer into the value log (`values.rs`) to the
//!     prost `StoredResult` (the envelope as received); stores written
//!     before the value log hold the `StoredResult` inline, read as is
//!   - `a` agent16 id16    -> (), and packed postings
//!     `A` agent16 first16 -> id16 id16 ... (`postings.rs`)
//!   - `t` task16 id16     -> (), and `T` postings
//!   - `c` campaign16 id16 -> (), and `C` postings
//!   - `u` run16 id16      -> (), and `U` postings: a run's results, run16
//!     being [`run_owner`] of its campaign and run id; a campaign
//!     created after `meta` `run-index-since-us` has all of its results
//!     here, one from before is read whole ([`Store::runs_indexed`])
//!   - `m/count`           -> number of results (u64, big-endian)
//! - `tasks`:   task id (16 bytes) -> [`TaskRecord`] (JSON).
//! - `campaigns`: campaign id (16 bytes) -> [`CampaignRecord`] (JSON), with
//!   its runs and their schedule state, so a restart resumes every campaign.
//!
//! Durability: a result is acknowledged only after the batch holding it was
//! applied, `flush`ed, and sled's log file `fdatasync`ed (sled's own flush uses
//! `sync_file_range`, which does not reach the drive's cache; sled #1452).
//! Result bodies are appended to the value log and fdatasynced before the
//! sled batch holding their pointers is applied.

mod alerts;
pub mod backup;
mod commit;
mod postings;
mod query;
mod records;
mod retention;
mod seq;
mod sink;
mod values;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use alerts::{Delivery, Queued, WebhookRecord};
pub use commit::{CommitHandle, GroupStats, Outcome, PendingResult};
pub use records::{
    AgentRecord, CampaignRecord, CampaignState, Group, RunRecord, RunState, RunVerdicts,
    TaskAssignment, TaskRecord, TokenRecord,
};
pub use retention::Retired;
pub use sink::{SinkPosition, WaitingVerdicts};

/// Store failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("database error: {0}")]
    Sled(#[from] sled::Error),
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("corrupt record in {tree}: {detail}")]
    Corrupt { tree: &'static str, detail: String },
    #[error("the commit thread has stopped")]
    CommitterGone,
    /// A group commit failed with this error (every job of the group gets
    /// the same one): a full disk stays an I/O error, never "corrupt".
    #[error("group commit failed: {0}")]
    Commit(#[source] std::sync::Arc<StoreError>),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("the store at {0} is in use by another process (is a coordinator running on it?)")]
    Locked(PathBuf),
}

/// The coordinator's embedded database.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    path: PathBuf,
    meta: sled::Tree,
    tokens: sled::Tree,
    agents: sled::Tree,
    certs: sled::Tree,
    results: sled::Tree,
    tasks: sled::Tree,
    campaigns: sled::Tree,
    verdicts: sled::Tree,
    alerts: sled::Tree,
    values: Arc<values::ValueLog>,
    /// Taken shared by readers that combine sled with a sink's copy of the
    /// results retention removed, exclusively by retention while it
    /// removes a batch (`retention.rs`).
    retention: Arc<std::sync::RwLock<()>>,
    /// Set while a sink copies verdicts: a new revision of a run's
    /// verdicts is then marked for it (`sink.rs`).
    verdict_sink: Arc<std::sync::atomic::AtomicBool>,
}

/// 16-byte key of a UUID string; `None` when it is not a UUID.
pub fn uuid_key(id: &str) -> Option<[u8; 16]> {
    vantage_proto::envelope::parse_id(id)
}

fn id_string(b: &[u8]) -> String {
    match <[u8; 16]>::try_from(b) {
        Ok(a) => uuid::Uuid::from_bytes(a).to_string(),
        Err(_) => hex::encode(b),
    }
}

/// The run index's owner for a run: the first 16 bytes of
/// SHA-256(campaign16 || run id). A hash, so any run id has one; two runs
/// sharing one would only make a run's read filter out the other's.
pub fn run_owner(campaign: &[u8; 16], run_id: &str) -> [u8; 16] {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(campaign);
    h.update(run_id.as_bytes());
    let d = h.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&d[..16]);
    out
}

/// `meta` key: when this store began indexing results by run (µs).
const RUN_INDEX_SINCE: &[u8] = b"run-index-since-us";

/// 16-byte key of a record's own id; a record is stored under a UUID.
fn record_key(id: &str) -> Result<[u8; 16], StoreError> {
    uuid_key(id).ok_or_else(|| StoreError::NotFound(id.to_string()))
}

/// The record `tree` holds under `key`; none when there is no key.
fn get_record<T: serde::de::DeserializeOwned>(
    tree: &sled::Tree,
    name: &'static str,
    key: Option<impl AsRef<[u8]>>,
) -> Result<Option<T>, StoreError> {
    let Some(key) = key else {
        return Ok(None);
    };
    tree.get(key)?
        .map(|v| records::from_json(name, &v))
        .transpose()
}

/// A u64 counter as stored (big-endian); 0 for none.
fn counter_value(b: Option<&[u8]>) -> u64 {
    b.and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0)
}

/// Key of a run's verdicts: the campaign's 16 bytes, then the run id.
fn run_key(campaign_id: &str, run_id: &str) -> Option<Vec<u8>> {
    let mut k = uuid_key(campaign_id)?.to_vec();
    k.extend_from_slice(run_id.as_bytes());
    Some(k)
}

/// Whether sled refused to open because another handle holds the file lock.
fn is_lock_error(e: &sled::Error) -> bool {
    match e {
        sled::Error::Io(io) => {
            io.kind() == std::io::ErrorKind::WouldBlock
                || io.to_string().contains("could not acquire lock")
        }
        _ => false,
    }
}

impl Store {
    /// Opens (or creates) the store under `dir`.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let path = dir.to_path_buf();
        // sled releases its file lock only when its last background thread
        // lets go of the file, a moment after the last handle is dropped; a
        // store closed and reopened at once (restore, then start) can see its
        // own lock. Retry briefly, then name the real cause.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
        let db = loop {
            match sled::Config::new()
                .path(&path)
                // sled counts its cache in serialised bytes; with bodies in
                // the value log its nodes are small and their heap footprint
                // is several times that count. 256 MiB let RSS grow about
                // 290 bytes per stored result up to 3 million and beyond;
                // 64 MiB grows about 50 (RELIABILITY.md, soak run 3).
                .cache_capacity(64 << 20)
                .mode(sled::Mode::HighThroughput)
                .open()
            {
                Ok(db) => break db,
                Err(e) if is_lock_error(&e) => {
                    if std::time::Instant::now() >= deadline {
                        return Err(StoreError::Locked(path));
                    }
                    std::thread::sleep(std::time::Duration::from_millis(25));
                }
                Err(e) => return Err(e.into()),
            }
        };
        let store = Store {
            meta: db.open_tree("meta")?,
            tokens: db.open_tree("tokens")?,
            agents: db.open_tree("agents")?,
            certs: db.open_tree("certs")?,
            results: db.open_tree("results")?,
            tasks: db.open_tree("tasks")?,
            campaigns: db.open_tree("campaigns")?,
            verdicts: db.open_tree("verdicts")?,
            alerts: db.open_tree("alerts")?,
            values: Arc::new(values::ValueLog::open(&path.join(VALUES_DIR))?),
            retention: Default::default(),
            verdict_sink: Default::default(),
            db,
            path,
        };
        store.backfill_seq()?;
        Ok(store)
    }

    /// The creation time of a new campaign (now, µs). The first call on
    /// a store records it as when the run index began (the commit path
    /// indexes by run since this version; a store's older campaigns have
    /// results outside it), so it is written before any campaign created
    /// here and after every campaign from before.
    pub fn new_campaign_time(&self) -> Result<i64, StoreError> {
        if !self.meta.contains_key(RUN_INDEX_SINCE)? {
            let now = vantage_proto::now_us();
            self.meta.insert(RUN_INDEX_SINCE, &now.to_be_bytes()[..])?;
            self.sync()?;
        }
        Ok(vantage_proto::now_us())
    }

    /// Whether every result of a campaign created at `created_us` is in
    /// the run index: it was created by [`Store::new_campaign_time`] of
    /// this version (none was before the index began: every campaign
    /// then is older).
    pub fn runs_indexed(&self, created_us: i64) -> Result<bool, StoreError> {
        Ok(match self.meta.get(RUN_INDEX_SINCE)? {
            Some(v) => created_us >= counter_value(Some(&v)) as i64,
            None => false,
        })
    }

    /// Where sled keeps its data.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Flushes and fdatasyncs: after this returns, everything written is on disk.
    pub fn sync(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        let log = self.path.join("db");
        let f = std::fs::File::open(&log).map_err(|source| StoreError::Io {
            path: log.clone(),
            source,
        })?;
        f.sync_data()
            .map_err(|source| StoreError::Io { path: log, source })
    }

    /// Approximate on-disk size in bytes.
    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0) + self.values.size_on_disk()
    }

    // ------------------------------------------------------------ tokens

    pub fn put_token(&self, hash: &[u8; 32], rec: &TokenRecord) -> Result<(), StoreError> {
        self.tokens.insert(hash, records::to_json(rec))?;
        self.sync()
    }

    /// Consumes one use of the token with this hash, atomically. Returns the
    /// record as it was before, or why it cannot be used.
    pub fn consume_token(
        &self,
        hash: &[u8; 32],
        now_us: i64,
    ) -> Result<Result<TokenRecord, &'static str>, StoreError> {
        loop {
            let Some(old) = self.tokens.get(hash)? else {
                return Ok(Err("unknown token"));
            };
            let rec: TokenRecord = records::from_json("tokens", &old)?;
            if rec.expires_us <= now_us {
                return Ok(Err("token expired"));
            }
            if rec.uses_left == 0 {
                return Ok(Err("token used up"));
            }
            let mut next = rec.clone();
            next.uses_left -= 1;
            if self
                .tokens
                .compare_and_swap(hash, Some(old), Some(records::to_json(&next)))?
                .is_ok()
            {
                self.sync()?;
                return Ok(Ok(rec));
            }
        }
    }

    // ------------------------------------------------------------ agents

    pub fn put_agent(&self, rec: &AgentRecord) -> Result<(), StoreError> {
        let key = record_key(&rec.agent_id)?;
        self.agents.insert(key, records::to_json(rec))?;
        self.certs.insert(rec.cert_fingerprint.as_bytes(), &key)?;
        self.sync()
    }

    pub fn agent(&self, agent_id: &str) -> Result<Option<AgentRecord>, StoreError> {
        get_record(&self.agents, "agents", uuid_key(agent_id))
    }

    pub fn agent_by_cert(&self, fingerprint: &str) -> Result<Option<AgentRecord>, StoreError> {
        match self.certs.get(fingerprint.as_bytes())? {
            Some(k) => self.agent(&id_string(&k)),
            None => Ok(None),
        }
    }

    pub fn agents(&self) -> Result<Vec<AgentRecord>, StoreError> {
        self.agents
            .iter()
            .values()
            .map(|v| records::from_json("agents", &v?))
            .collect()
    }

    /// Applies `f` to the agent's record and stores it (no fsync: used for
    /// last-seen and similar soft state).
    pub fn update_agent(
        &self,
        agent_id: &str,
        f: impl Fn(&mut AgentRecord),
    ) -> Result<Option<AgentRecord>, StoreError> {
        let Some(mut rec) = self.agent(agent_id)? else {
            return Ok(None);
        };
        f(&mut rec);
        if let Some(key) = uuid_key(agent_id) {
            self.agents.insert(key, records::to_json(&rec))?;
        }
        Ok(Some(rec))
    }

    // ------------------------------------------------------------ tasks

    pub fn put_task(&self, rec: &TaskRecord) -> Result<(), StoreError> {
        self.put_tasks(std::slice::from_ref(rec))
    }

    /// Stores tasks durably in one batch and one sync: a run's tasks are
    /// all stored before any is sent, and a sync per task made a
    /// 1,000-target run wait for 1,000 fdatasyncs.
    pub fn put_tasks(&self, recs: &[TaskRecord]) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for rec in recs {
            batch.insert(&record_key(&rec.task_id)?[..], records::to_json(rec));
        }
        self.tasks.apply_batch(batch)?;
        self.sync()
    }

    /// Changes a task atomically (sled compare-and-swap under the hood), so
    /// concurrent sessions marking their own assignments never lose each
    /// other's updates. Returns the task as stored afterwards. No fsync.
    pub fn modify_task(
        &self,
        task_id: &str,
        f: impl Fn(&mut TaskRecord),
    ) -> Result<Option<TaskRecord>, StoreError> {
        let Some(key) = uuid_key(task_id) else {
            return Ok(None);
        };
        let mut corrupt = None;
        let out = self.tasks.update_and_fetch(key, |old| {
            let old = old?;
            match records::from_json::<TaskRecord>("tasks", old) {
                Ok(mut t) => {
                    f(&mut t);
                    Some(records::to_json(&t))
                }
                Err(e) => {
                    corrupt = Some(e);
                    Some(old.to_vec())
                }
            }
        })?;
        if let Some(e) = corrupt {
            return Err(e);
        }
        out.map(|v| records::from_json("tasks", &v)).transpose()
    }

    pub fn task(&self, task_id: &str) -> Result<Option<TaskRecord>, StoreError> {
        get_record(&self.tasks, "tasks", uuid_key(task_id))
    }

    /// Calls `f` with each of a task's assignments; false when there is no
    /// such task. `campaign status` reads every task of every run: the
    /// input is skipped over and the agent ids are borrowed from the
    /// stored bytes, not built.
    pub fn each_task_assignment(
        &self,
        task_id: &str,
        mut f: impl FnMut(&str, TaskAssignment),
    ) -> Result<bool, StoreError> {
        #[derive(serde::Deserialize)]
        struct Assignments<'a> {
            #[serde(borrow)]
            assignments: std::collections::BTreeMap<std::borrow::Cow<'a, str>, TaskAssignment>,
        }
        let Some(key) = uuid_key(task_id) else {
            return Ok(false);
        };
        let Some(v) = self.tasks.get(key)? else {
            return Ok(false);
        };
        let a: Assignments = serde_json::from_slice(&v).map_err(|e| StoreError::Corrupt {
            tree: "tasks",
            detail: e.to_string(),
        })?;
        for (agent, st) in a.assignments {
            f(&agent, st);
        }
        Ok(true)
    }

    // ------------------------------------------------------------ campaigns

    /// Stores a campaign durably.
    pub fn put_campaign(&self, rec: &CampaignRecord) -> Result<(), StoreError> {
        let key = record_key(&rec.campaign_id)?;
        self.campaigns.insert(key, records::to_json(rec))?;
        self.sync()
    }

    pub fn campaign(&self, id: &str) -> Result<Option<CampaignRecord>, StoreError> {
        get_record(&self.campaigns, "campaigns", uuid_key(id))
    }

    /// Stores a run's verdicts; `durable` syncs (a new revision must
    /// survive a crash; a recheck that changed nothing need not).
    pub fn put_run_verdicts(&self, rec: &RunVerdicts, durable: bool) -> Result<(), StoreError> {
        let key = run_key(&rec.campaign_id, &rec.run_id)
            .ok_or_else(|| StoreError::NotFound(rec.campaign_id.clone()))?;
        self.verdicts
            .insert(key, records::encode_run_verdicts(rec))?;
        if durable && self.verdict_sink.load(std::sync::atomic::Ordering::Relaxed) {
            self.mark_verdicts_for_sink(&rec.campaign_id, &rec.run_id, rec.revision)?;
        }
        if durable {
            self.sync()?;
        }
        Ok(())
    }

    /// A run's stored verdicts, if they have been computed.
    pub fn run_verdicts(
        &self,
        campaign_id: &str,
        run_id: &str,
    ) -> Result<Option<RunVerdicts>, StoreError> {
        self.read_run_verdicts(campaign_id, run_id, true)
    }

    /// A run's stored verdicts without their rows: revision, result
    /// counts and failures, for `campaign status`.
    pub fn run_summary(
        &self,
        campaign_id: &str,
        run_id: &str,
    ) -> Result<Option<RunVerdicts>, StoreError> {
        self.read_run_verdicts(campaign_id, run_id, false)
    }

    fn read_run_verdicts(
        &self,
        campaign_id: &str,
        run_id: &str,
        rows: bool,
    ) -> Result<Option<RunVerdicts>, StoreError> {
        let Some(key) = run_key(campaign_id, run_id) else {
            return Ok(None);
        };
        self.verdicts
            .get(key)?
            .map(|v| records::decode_run_verdicts(&v, rows))
            .transpose()
    }

    pub fn campaigns(&self) -> Result<Vec<CampaignRecord>, StoreError> {
        self.campaigns
            .iter()
            .values()
            .map(|v| records::from_json("campaigns", &v?))
            .collect()
    }

    // ------------------------------------------------------------ results

    /// Whether a result with this id is stored.
    pub fn has_result(&self, id: &[u8; 16]) -> Result<bool, StoreError> {
        Ok(self.results.contains_key(result_key(id))?)
    }

    /// One stored result's `StoredResult` bytes, if it is stored.
    pub fn result(&self, id: &[u8; 16]) -> Result<Option<sled::IVec>, StoreError> {
        match self.results.get(result_key(id))? {
            Some(v) => Ok(Some(self.values.resolve(v)?)),
            None => Ok(None),
        }
    }

    /// Number of stored results (kept in the results tree itself).
    pub fn result_count(&self) -> Result<u64, StoreError> {
        Ok(counter_value(self.results.get(COUNT_KEY)?.as_deref()))
    }

    /// Stored results (prost `StoredResult` bytes), oldest first, optionally
    /// restricted to one index (`b'a'` agent, `b't'` task, `b'c'` campaign,
    /// `b'u'` run: [`run_owner`]).
    pub fn results(
        &self,
        index: Option<(u8, [u8; 16])>,
    ) -> impl Iterator<Item = Result<sled::IVec, StoreError>> + '_ {
        self.results_after(index, None).map(|r| r.map(|(_, v)| v))
    }

    /// How many results one index holds (`b'a'` agent, `b't'` task, `b'c'`
    /// campaign), counted from the index alone: no body is read. An
    /// unreadable index entry is not counted.
    pub fn indexed_results(&self, tag: u8, owner: [u8; 16]) -> u64 {
        postings::scan(&self.results, tag, owner, None)
            .filter(|r| r.is_ok())
            .count() as u64
    }

    /// An entry of `tree` as a backup or dump shows it: a result's body
    /// instead of its value-log pointer, everything else as stored.
    fn entry_value(
        &self,
        tree: &[u8],
        key: &[u8],
        v: sled::IVec,
    ) -> Result<sled::IVec, StoreError> {
        if tree == b"results" && key.first() == Some(&b'r') {
            self.values.resolve(v)
        } else {
            Ok(v)
        }
    }

    /// Counter persisted in `meta`.
    pub fn add_counter(&self, name: &str, by: u64) -> Result<u64, StoreError> {
        let key = format!("counter/{name}");
        let v = self.meta.update_and_fetch(key.as_bytes(), |old| {
            Some((counter_value(old) + by).to_be_bytes().to_vec())
        })?;
        Ok(counter_value(v.as_deref()))
    }

    /// All persisted counters.
    pub fn counters(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let mut out = Vec::new();
        for kv in self.meta.scan_prefix(b"counter/") {
            let (k, v) = kv?;
            let name = String::from_utf8_lossy(&k["counter/".len()..]).into_owned();
            out.push((name, counter_value(Some(&v))));
        }
        Ok(out)
    }
}

/// Key of the result count inside the results tree (`m` sorts apart from
/// the `r`, `a`, `t` and `c` families).
const COUNT_KEY: &[u8] = b"m/count";
/// Key of the last commit sequence number given (`seq.rs`).
const LAST_SEQ_KEY: &[u8] = b"m/seq";

/// The value log's directory inside the store directory.
const VALUES_DIR: &str = "values";

fn result_key(id: &[u8; 16]) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[0] = b'r';
    k[1..].copy_from_slice(id);
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_in_use_is_named_and_a_dropped_one_reopens() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path()).unwrap();
        match Store::open(d.path()) {
            Err(StoreError::Locked(p)) => assert_eq!(p, d.path()),
            Err(e) => panic!("expected Locked, got {e}"),
            Ok(_) => panic!("a second open of a store in use succeeded"),
        }
        s.meta.insert(b"k", b"v").unwrap();
        drop(s);
        for _ in 0..20 {
            let r = Store::open(d.path()).unwrap();
            assert_eq!(r.meta.get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
        }
    }

    /// A run's verdicts as stored now (header, then prost rows) read back
    /// whole and without rows; a record from before (JSON) still reads;
    /// a cut record is corrupt, not a panic.
    #[test]
    fn run_verdicts_round_trip_and_read_without_rows() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path()).unwrap();
        let c = "0190a8b2-0000-7000-8000-0000000000c1";
        let rec = RunVerdicts {
            campaign_id: c.into(),
            run_id: "r1".into(),
            computed_us: 5,
            revision: 2,
            inside_results: 3,
            control_results: 1,
            failures: [("connection_reset".to_string(), 2)].into(),
            verdicts: (0..3)
                .map(|i| vantage_proto::v1::VerdictRow {
                    target: format!("t{i}"),
                    status: "blocked".into(),
                    evidence: vec![format!("e{i}")],
                    ..Default::default()
                })
                .collect(),
        };
        s.put_run_verdicts(&rec, true).unwrap();
        assert_eq!(s.run_verdicts(c, "r1").unwrap().unwrap(), rec);
        let head = s.run_summary(c, "r1").unwrap().unwrap();
        assert!(head.verdicts.is_empty());
        assert_eq!(head.failures, rec.failures);
        assert_eq!(head.revision, 2);
        // From before: JSON, without failures.
        let mut old = rec.clone();
        old.failures.clear();
        let key = run_key(c, "r2").unwrap();
        let mut json = serde_json::to_value(&old).unwrap();
        json.as_object_mut().unwrap().remove("failures");
        s.verdicts
            .insert(&key, serde_json::to_vec(&json).unwrap())
            .unwrap();
        let mut want = old.clone();
        want.run_id = "r1".into();
        assert_eq!(s.run_verdicts(c, "r2").unwrap().unwrap(), want);
        assert!(s.run_summary(c, "r2").unwrap().unwrap().verdicts.is_empty());
        // Cut short.
        let whole = records::encode_run_verdicts(&rec);
        for cut in [1, 3, 20, whole.len() - 1] {
            s.verdicts.insert(&key, &whole[..cut]).unwrap();
            assert!(
                matches!(s.run_verdicts(c, "r2"), Err(StoreError::Corrupt { .. })),
                "cut at {cut}"
            );
        }
    }
}
