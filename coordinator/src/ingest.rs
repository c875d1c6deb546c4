//! The ingest path: decode -> check identity and time -> batch Ed25519
//! verification against the session's cached key (one-by-one fallback) ->
//! group commit -> ack. Bad results are rejected with a reason and counted,
//! never stored; their batch neighbours are unaffected.
//!
//! Rejection reasons (each bumps the persisted counter `rejected/<reason>`):
//! `too_large`, `malformed`, `bad_id`, `agent_mismatch` (the measurement
//! names another agent than the mTLS session), `future_timestamp` (more than
//! [`MAX_FUTURE_US`] ahead of the coordinator's clock), `bad_timestamp` (no
//! start time, or an end before the start), `unknown_task`, `not_assigned`,
//! `campaign_mismatch`, `bad_signature`, and `id_conflict` (an id already
//! stored, or earlier in the batch, with a different envelope: the first one
//! stays, nothing is overwritten). Resending an envelope already stored is
//! acked again and counted as `duplicate_results`, so redelivery is
//! idempotent.

use std::collections::HashMap;

use ed25519_dalek::VerifyingKey;
use prost::Message;
use vantage_proto::envelope;
use vantage_proto::v1::{Rejection, ResultAck, SignedResult, StoredResult};

use crate::state::Shared;
use crate::store::{uuid_key, Outcome, PendingResult};

/// Largest accepted encoded measurement.
pub const MAX_MEASUREMENT_BYTES: usize = 256 << 10;
/// How far in the future a measurement's start may lie (clock skew).
pub const MAX_FUTURE_US: i64 = 10 * 60 * 1_000_000;

/// Why one result was rejected. A rejection is final: the agent deletes the
/// result from its outbox. Only a judgement on the result itself is a
/// rejection; a failure of the coordinator (store, signature worker) is an
/// [`IngestError`], and the agent keeps the result and resends it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rejected {
    TooLarge,
    Malformed,
    BadId,
    AgentMismatch,
    FutureTimestamp,
    BadTimestamp,
    UnknownTask,
    NotAssigned,
    CampaignMismatch,
    BadSignature,
    IdConflict,
}

impl Rejected {
    /// The reason on the wire (`Rejection.reason`) and in the counter
    /// `rejected/<reason>`.
    pub fn as_str(self) -> &'static str {
        match self {
            Rejected::TooLarge => "too_large",
            Rejected::Malformed => "malformed",
            Rejected::BadId => "bad_id",
            Rejected::AgentMismatch => "agent_mismatch",
            Rejected::FutureTimestamp => "future_timestamp",
            Rejected::BadTimestamp => "bad_timestamp",
            Rejected::UnknownTask => "unknown_task",
            Rejected::NotAssigned => "not_assigned",
            Rejected::CampaignMismatch => "campaign_mismatch",
            Rejected::BadSignature => "bad_signature",
            Rejected::IdConflict => "id_conflict",
        }
    }

    fn of(self, id: String) -> Rejection {
        Rejection {
            id,
            reason: self.as_str().into(),
        }
    }
}

/// The authenticated agent a session speaks for.
#[derive(Clone)]
pub struct AgentIdentity {
    pub agent_id: String,
    pub key16: [u8; 16],
    pub key: VerifyingKey,
}

struct Candidate {
    env: SignedResult,
    id: String,
    task_id: String,
    campaign_id: String,
    run_id: String,
    start_us: i64,
    end_us: i64,
    pending: PendingResult,
}

impl Candidate {
    /// A signed result with no start time or an end before its start: an
    /// agent bug, checked after the signature so that a tampered envelope
    /// is reported as `bad_signature`.
    fn bad_times(&self) -> bool {
        self.start_us <= 0 || self.end_us < self.start_us
    }
}

/// What one ingested batch produced.
pub struct Ingested {
    /// Sent to the agent once durable.
    pub ack: ResultAck,
    /// Task ids of the accepted results (for progress tracking).
    pub tasks: Vec<String>,
    /// How many results were rejected as `bad_signature` (the session
    /// limits them).
    pub bad_signatures: usize,
}

/// Why a batch could not be judged. Never a rejection: nothing is acked,
/// the session ends as unavailable and the agent keeps its outbox and
/// resends (a rejected id would be deleted from the agent's outbox).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IngestError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The signature check itself failed (its worker panicked or was
    /// cancelled, or returned the wrong number of verdicts).
    #[error("signature check failed: {0}")]
    Verify(String),
}

/// Runs a CPU-heavy check on the blocking pool. A panic or cancellation
/// of the worker is an [`IngestError::Verify`], never a default (empty)
/// answer that would read as "every signature is bad".
async fn off_thread<T, F>(f: F) -> Result<T, IngestError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| IngestError::Verify(e.to_string()))
}

/// Ingests one batch from `agent`; the returned ack is sent only after every
/// accepted result is durable. `Err` means the store or the signature check
/// failed: nothing is acked and the agent will resend.
pub async fn ingest(
    shared: &Shared,
    agent: &AgentIdentity,
    batch: Vec<SignedResult>,
) -> Result<Ingested, IngestError> {
    let t0 = std::time::Instant::now();
    let batch_len = batch.len();
    let now = vantage_proto::now_us();
    let mut rejected = Vec::new();
    let mut candidates = Vec::with_capacity(batch.len());
    let mut tasks: HashMap<String, Option<(String, bool)>> = HashMap::new();
    for env in batch {
        let checked = precheck(agent, env, now).and_then(|c| {
            match task_check(shared, agent, &c, &mut tasks) {
                None => Ok(c),
                Some(reason) => Err((c.id, reason)),
            }
        });
        match checked {
            Ok(c) => candidates.push(c),
            Err((id, reason)) => rejected.push(reason.of(id)),
        }
    }

    let verdicts = if candidates.len() > 16 {
        let key = agent.key;
        let envs: Vec<SignedResult> = candidates.iter().map(|c| c.env.clone()).collect();
        off_thread(move || {
            let items: Vec<_> = envs.iter().map(|e| (&key, e)).collect();
            envelope::verify_batch(&items)
        })
        .await?
    } else {
        let items: Vec<_> = candidates.iter().map(|c| (&agent.key, &c.env)).collect();
        envelope::verify_batch(&items)
    };
    if verdicts.len() != candidates.len() {
        return Err(IngestError::Verify(format!(
            "{} verdicts for {} signatures",
            verdicts.len(),
            candidates.len()
        )));
    }

    let mut offered_ids = Vec::with_capacity(candidates.len());
    let mut offered_tasks = Vec::with_capacity(candidates.len());
    let mut pending = Vec::with_capacity(candidates.len());
    let mut runs = std::collections::BTreeSet::new();
    let mut bad_signatures = 0;
    for (i, c) in candidates.into_iter().enumerate() {
        match verdicts.get(i) {
            Some(Ok(())) if c.bad_times() => rejected.push(Rejected::BadTimestamp.of(c.id)),
            Some(Ok(())) => {
                offered_ids.push(c.id);
                offered_tasks.push(c.task_id);
                if !c.campaign_id.is_empty() {
                    runs.insert((c.campaign_id, c.run_id));
                }
                pending.push(c.pending);
            }
            Some(Err(_)) | None => {
                bad_signatures += 1;
                rejected.push(Rejected::BadSignature.of(c.id));
            }
        }
    }

    let mut accepted_ids = Vec::with_capacity(offered_ids.len());
    let mut tasks = Vec::new();
    if !pending.is_empty() {
        let outcomes = shared.commit.commit(pending).await?;
        let mut duplicates = 0u64;
        for ((id, task), outcome) in offered_ids.into_iter().zip(offered_tasks).zip(outcomes) {
            match outcome {
                Outcome::Conflict => rejected.push(Rejected::IdConflict.of(id)),
                Outcome::New | Outcome::Duplicate => {
                    duplicates += u64::from(outcome == Outcome::Duplicate);
                    accepted_ids.push(id);
                    if !task.is_empty() {
                        tasks.push(task);
                    }
                }
            }
        }
        if duplicates > 0 {
            if let Err(e) = shared.store.add_counter("duplicate_results", duplicates) {
                tracing::warn!("cannot update counter duplicate_results: {e}");
            }
        }
        // Durable now: the runs' verdicts must take these results in.
        shared.mark_runs_dirty(runs);
    }

    for r in &rejected {
        tracing::warn!(agent = %agent.agent_id, id = %r.id, reason = %r.reason, "result rejected");
        shared.count(&format!("rejected/{}", r.reason));
    }
    crate::metrics::record_ingest(batch_len, t0.elapsed());
    Ok(Ingested {
        ack: ResultAck {
            accepted: accepted_ids,
            rejected,
        },
        tasks,
        bad_signatures,
    })
}

/// A result that names a task must belong to a task this agent was given,
/// in the campaign it names. Lookups are cached per batch. A store error
/// lets the result through to the commit, which will surface the error.
fn task_check(
    shared: &Shared,
    agent: &AgentIdentity,
    c: &Candidate,
    cache: &mut HashMap<String, Option<(String, bool)>>,
) -> Option<Rejected> {
    if c.task_id.is_empty() {
        return (!c.campaign_id.is_empty()).then_some(Rejected::UnknownTask);
    }
    let entry = cache
        .entry(c.task_id.clone())
        .or_insert_with(|| assignment(shared, &c.task_id, &agent.agent_id, &c.campaign_id));
    match entry {
        None => Some(Rejected::UnknownTask),
        Some((_, false)) => Some(Rejected::NotAssigned),
        Some((campaign, true)) if *campaign != c.campaign_id => Some(Rejected::CampaignMismatch),
        Some(_) => None,
    }
}

/// Most tasks [`assignment`] remembers; the cache starts over when full.
const TASK_CACHE_MAX: usize = 16_384;

/// The campaign of `task_id` and whether `agent_id` is assigned to it, or
/// `None` for an unknown task. Every result of a campaign names a task
/// whose record holds all of its assignments (often a hundred agents):
/// parsing it for every result cost as much as verifying the result, so
/// the assigned agents are remembered. Assignments are only ever added,
/// so a remembered one is current; an agent not (yet) remembered makes the
/// record be read again (a task re-offered to it since).
fn assignment(
    shared: &Shared,
    task_id: &str,
    agent_id: &str,
    campaign_id: &str,
) -> Option<(String, bool)> {
    {
        let cache = shared.task_cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((campaign, agents)) = cache.get(task_id) {
            if agents.contains(agent_id) {
                return Some((campaign.clone(), true));
            }
        }
    }
    match shared.store.task(task_id) {
        Ok(Some(t)) => {
            let assigned = t.assignments.contains_key(agent_id);
            let mut cache = shared.task_cache.lock().unwrap_or_else(|p| p.into_inner());
            if cache.len() >= TASK_CACHE_MAX {
                cache.clear();
            }
            let agents = t.assignments.into_keys().collect();
            cache.insert(task_id.to_string(), (t.campaign_id.clone(), agents));
            Some((t.campaign_id, assigned))
        }
        Ok(None) => None,
        Err(_) => Some((campaign_id.to_string(), true)),
    }
}

fn precheck(
    agent: &AgentIdentity,
    env: SignedResult,
    now: i64,
) -> Result<Candidate, (String, Rejected)> {
    if env.measurement.len() > MAX_MEASUREMENT_BYTES {
        return Err((String::new(), Rejected::TooLarge));
    }
    let m = envelope::decode(&env).map_err(|_| (String::new(), Rejected::Malformed))?;
    let id = m.id.clone();
    let Some(id16) = uuid_key(&m.id) else {
        return Err((id, Rejected::BadId));
    };
    if m.agent_id != agent.agent_id {
        return Err((id, Rejected::AgentMismatch));
    }
    let limit = now.saturating_add(MAX_FUTURE_US);
    if m.start_us > limit || m.end_us > limit {
        return Err((id, Rejected::FutureTimestamp));
    }
    let stored = StoredResult {
        envelope: Some(env.clone()),
        agent_id: agent.agent_id.clone(),
        received_us: now,
        // Never stored: the commit thread numbers the result (store/seq.rs).
        seq: 0,
    };
    Ok(Candidate {
        pending: PendingResult {
            id: id16,
            agent: agent.key16,
            task: uuid_key(&m.task_id),
            campaign: uuid_key(&m.campaign_id),
            run: uuid_key(&m.campaign_id).map(|c| crate::store::run_owner(&c, &m.run_id)),
            value: stored.encode_to_vec(),
            measurement: env.measurement.clone(),
        },
        env,
        id,
        task_id: m.task_id,
        campaign_id: m.campaign_id,
        run_id: m.run_id,
        start_us: m.start_us,
        end_us: m.end_us,
    })
}

/// The stateless checks [`ingest`] applies to one envelope before its task
/// lookups and the commit: size, decoding, id, identity, time and the
/// signature. Returns the measurement id, or the rejection reason. Public
/// for the fuzz targets (`fuzz/`).
pub fn check_envelope(
    agent: &AgentIdentity,
    env: SignedResult,
    now: i64,
) -> Result<String, Rejected> {
    let c = precheck(agent, env, now).map_err(|(_, reason)| reason)?;
    envelope::verify(&agent.key, &c.env).map_err(|_| Rejected::BadSignature)?;
    if c.bad_times() {
        return Err(Rejected::BadTimestamp);
    }
    Ok(c.id)
}

#[cfg(test)]
mod tests {

    #[tokio::test]
    async fn a_failed_signature_worker_is_an_error_not_a_rejection() {
        // Before: `spawn_blocking(..).await.unwrap_or_default()` turned a
        // panicking worker into an empty verdict list, so every result of
        // the batch was rejected as bad_signature and deleted by the agent.
        let got: Result<Vec<Result<(), ()>>, IngestError> =
            off_thread(|| panic!("verify worker died")).await;
        match got {
            Err(IngestError::Verify(m)) => assert!(m.contains("panic"), "{m}"),
            other => panic!("expected a Verify error, got {other:?}"),
        }
        let ok = off_thread(|| vec![Ok::<(), ()>(())]).await.expect("ran");
        assert_eq!(ok, vec![Ok(())]);
    }

    use super::*;
    use crate::store::{TaskAssignment, TaskRecord};

    /// A remembered task answers for the agents it holds; an agent it does
    /// not hold (a re-offer since) makes the record be read again; an
    /// unknown task stays unknown.
    #[tokio::test]
    async fn remembered_assignments_see_a_later_reoffer() {
        let d = tempfile::tempdir().unwrap();
        let s = crate::server::test_state(d.path());
        let (t, camp) = (
            "0190a8b2-0000-7000-8000-000000000001",
            "0190a8b2-0000-7000-8000-0000000000c1",
        );
        let mut rec = TaskRecord::for_test(t, camp, &["a"]);
        s.store.put_task(&rec).unwrap();
        assert_eq!(assignment(&s, t, "a", camp), Some((camp.into(), true)));
        assert_eq!(assignment(&s, t, "b", camp), Some((camp.into(), false)));
        rec.assignments.insert("b".into(), TaskAssignment::Sent);
        s.store.put_task(&rec).unwrap();
        assert_eq!(assignment(&s, t, "b", camp), Some((camp.into(), true)));
        assert_eq!(s.task_cache.lock().unwrap().len(), 1);
        let unknown = "0190a8b2-0000-7000-8000-0000000000ff";
        assert_eq!(assignment(&s, unknown, "a", camp), None);
    }
}
