//! What every service shares: the store, the commit thread, the CA, the live
//! sessions and the counters.

use std::path::PathBuf;
use std::sync::Arc;

use crate::config::Config;
use crate::hub::Hub;
use crate::pki::Ca;
use crate::store::{CommitHandle, Store};

/// Shared coordinator state.
pub struct State {
    pub store: Store,
    pub commit: CommitHandle,
    pub ca: Ca,
    pub admin_fingerprint: String,
    pub hub: Hub,
    pub config: Config,
    pub data_dir: PathBuf,
    /// When tasks were sent to each agent in the last hour, to honour the
    /// volunteer's `max_tasks_per_hour` before the agent has to refuse.
    pub sent_log:
        std::sync::Mutex<std::collections::HashMap<String, std::collections::VecDeque<i64>>>,
    /// Runs (campaign id, run id) that received results since their
    /// verdicts were last computed (`crate::verdicts`).
    pub dirty_runs: std::sync::Mutex<std::collections::BTreeSet<(String, String)>>,
    /// Campaign id -> the earliest time the scheduler may recompute its
    /// dirty runs again in the background (`crate::verdicts::refresh_some`).
    /// Assignment states waiting to be written, by task id
    /// (`crate::dispatch::queue_marks`).
    pub pending_marks: std::sync::Mutex<
        std::collections::HashMap<String, Vec<(String, crate::store::TaskAssignment)>>,
    >,
    /// Task id -> (campaign id, agents assigned), for ingest's checks
    /// (`crate::ingest`): an assignment is never removed, so a hit is
    /// current; a miss re-reads the store.
    pub task_cache: std::sync::Mutex<
        std::collections::HashMap<String, (String, std::collections::HashSet<String>)>,
    >,
    pub verdict_backoff: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
    /// The ClickHouse sink's status, when one is configured (`crate::sink`).
    pub sink: Option<Arc<crate::sink::Status>>,
}

pub type Shared = Arc<State>;

impl State {
    /// Records a task sent to `agent` if it is within `per_hour` (0: no
    /// limit); returns false, recording nothing, when the agent is at its cap.
    pub fn take_task_slot(&self, agent: &str, per_hour: u32, now_us: i64) -> bool {
        let mut log = self.sent_log.lock().unwrap_or_else(|p| p.into_inner());
        let q = log.entry(agent.to_string()).or_default();
        while q.front().is_some_and(|t| *t < now_us - 3_600_000_000) {
            q.pop_front();
        }
        if per_hour > 0 && q.len() as u32 >= per_hour {
            return false;
        }
        q.push_back(now_us);
        true
    }

    /// Marks runs whose verdicts must be recomputed.
    pub fn mark_runs_dirty(&self, runs: impl IntoIterator<Item = (String, String)>) {
        let mut d = self.dirty_runs.lock().unwrap_or_else(|p| p.into_inner());
        d.extend(runs);
    }

    /// Clears a run's dirty mark; true when it was set.
    pub fn take_dirty_run(&self, campaign_id: &str, run_id: &str) -> bool {
        let mut d = self.dirty_runs.lock().unwrap_or_else(|p| p.into_inner());
        d.remove(&(campaign_id.to_string(), run_id.to_string()))
    }

    /// Whether a run's verdicts wait for recomputation (the mark is kept).
    pub fn is_dirty_run(&self, campaign_id: &str, run_id: &str) -> bool {
        let d = self.dirty_runs.lock().unwrap_or_else(|p| p.into_inner());
        d.contains(&(campaign_id.to_string(), run_id.to_string()))
    }

    /// Up to `n` dirty runs of campaigns `wanted` accepts, in key order
    /// (marks kept).
    pub fn some_dirty_runs(
        &self,
        n: usize,
        wanted: impl Fn(&str) -> bool,
    ) -> Vec<(String, String)> {
        let d = self.dirty_runs.lock().unwrap_or_else(|p| p.into_inner());
        d.iter()
            .filter(|(campaign, _)| wanted(campaign))
            .take(n)
            .cloned()
            .collect()
    }

    /// Increments a persisted counter (rejections, refusals); failures to
    /// count are logged, never fatal.
    pub fn count(&self, name: &str) {
        if let Err(e) = self.store.add_counter(name, 1) {
            tracing::warn!("cannot update counter {name}: {e}");
        }
    }
}
