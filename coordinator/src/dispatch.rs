//! The one path every task takes to an agent: ad-hoc `Dispatch` calls,
//! campaign runs, re-offers of expired leases and re-sends to agents that
//! come back all pass [`admit`] (known, not revoked, consenting, online,
//! within the volunteer's hourly cap) and then [`deliver`] (pushed down the
//! live session; what does not fit its queue follows as the agent reads).
//! Also records where each assignment stands ([`mark`], [`queue_marks`]).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use vantage_proto::v1::{coordinator_message, CoordinatorMessage, ProbeInput, Task};

use crate::errors::ServiceError;
use crate::state::Shared;
use crate::store::{AgentRecord, Group, StoreError, TaskAssignment, TaskRecord};

/// Why a task was not given to an agent. Its text is what the `skipped`
/// lists of dispatches and runs say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Skip {
    UnknownAgent,
    Revoked,
    /// The volunteer has not consented to this probe kind.
    NotConsented(String),
    Offline,
    /// At the volunteer's `max_tasks_per_hour`.
    AtHourlyLimit(u32),
    /// The session closed (or the deadline passed) before the task was
    /// pushed down it.
    NotSent,
}

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Skip::UnknownAgent => f.write_str("unknown agent"),
            Skip::Revoked => f.write_str("revoked"),
            Skip::NotConsented(kind) => write!(f, "has not consented to {kind} probes"),
            Skip::Offline => f.write_str("offline"),
            Skip::AtHourlyLimit(n) => {
                write!(f, "at the volunteer's limit of {n} tasks per hour")
            }
            Skip::NotSent => f.write_str("session closed before the task was sent"),
        }
    }
}

/// The gate of every send: `agent` (its stored record) may be given a task
/// of `kind` now. Takes one of the volunteer's hourly task slots when it
/// says yes, so every path honours `max_tasks_per_hour` before the agent
/// has to refuse.
pub fn admit(
    shared: &Shared,
    agent_id: &str,
    agent: Option<&AgentRecord>,
    kind: &str,
    now: i64,
) -> Result<(), Skip> {
    let Some(agent) = agent else {
        return Err(Skip::UnknownAgent);
    };
    if agent.revoked {
        return Err(Skip::Revoked);
    }
    if !agent.consent_kinds.iter().any(|k| k == kind) {
        return Err(Skip::NotConsented(kind.to_string()));
    }
    if !shared.hub.is_connected(agent_id) {
        return Err(Skip::Offline);
    }
    if !shared.take_task_slot(agent_id, agent.max_tasks_per_hour, now) {
        return Err(Skip::AtHourlyLimit(agent.max_tasks_per_hour));
    }
    Ok(())
}

/// The task message of a stored task, as `group` runs it (none for an
/// ad-hoc task).
pub fn wire_task(t: &TaskRecord, group: impl Into<Option<Group>>) -> Task {
    Task {
        task_id: t.task_id.clone(),
        campaign_id: t.campaign_id.clone(),
        run_id: t.run_id.clone(),
        deadline_us: t.deadline_us,
        input: serde_json::from_value(t.input.clone()).ok(),
        group: group
            .into()
            .map(|g| g.as_str().to_string())
            .unwrap_or_default(),
    }
}

/// Pushes admitted, stored tasks down their agents' sessions, back to back
/// so inside and control measure the same moment. What does not fit an
/// agent's session queue (1,024 messages) follows as the agent reads, until
/// `until`; a run of more targets than that used to lose the rest
/// (BENCHMARKS.md). Returns the sends that failed at once (no session, or
/// it closed); tasks that miss `until` are counted in `tasks_not_sent` and
/// their leases expire.
pub fn deliver(
    shared: &Shared,
    sends: Vec<(String, Task)>,
    until: tokio::time::Instant,
) -> Vec<(String, Task)> {
    let mut failed = Vec::new();
    let mut backlogs: HashMap<String, (crate::hub::Outbound, Vec<CoordinatorMessage>)> =
        HashMap::new();
    for (agent, task) in sends {
        if let Some((_, backlog)) = backlogs.get_mut(&agent) {
            backlog.push(task_message(task));
            continue;
        }
        let Some(tx) = shared.hub.sender(&agent) else {
            failed.push((agent, task));
            continue;
        };
        use tokio::sync::mpsc::error::TrySendError;
        match tx.try_send(Box::new(Ok(task_message(task)))) {
            Ok(()) => {}
            Err(TrySendError::Full(m)) => {
                if let Ok(m) = *m {
                    backlogs.insert(agent, (tx, vec![m]));
                }
            }
            Err(TrySendError::Closed(m)) => {
                // Only `Ok` messages are sent here.
                if let Ok(m) = *m {
                    failed.push((agent, task_of(m)));
                }
            }
        }
    }
    for (agent, (tx, backlog)) in backlogs {
        tracing::info!(agent = %agent, tasks = backlog.len(), "session queue full: the rest follows as the agent reads");
        let s = shared.clone();
        tokio::spawn(async move {
            let total = backlog.len();
            for (i, m) in backlog.into_iter().enumerate() {
                if !matches!(
                    tokio::time::timeout_at(until, tx.send(Box::new(Ok(m)))).await,
                    Ok(Ok(()))
                ) {
                    let left = (total - i) as u64;
                    tracing::warn!(agent = %agent, left, "session gone or deadline passed: tasks not sent (their leases expire)");
                    if let Err(e) = s.store.add_counter("tasks_not_sent", left) {
                        tracing::warn!("cannot update counter tasks_not_sent: {e}");
                    }
                    break;
                }
            }
        });
    }
    failed
}

fn task_message(task: Task) -> CoordinatorMessage {
    CoordinatorMessage {
        msg: Some(coordinator_message::Msg::Task(task)),
    }
}

fn task_of(m: CoordinatorMessage) -> Task {
    match m.msg {
        Some(coordinator_message::Msg::Task(t)) => t,
        _ => Task::default(),
    }
}

/// The time until which a backlog for a task ending at `deadline_us` may
/// still be sent.
pub fn send_until(deadline_us: i64) -> tokio::time::Instant {
    let left = deadline_us.saturating_sub(vantage_proto::now_us()).max(0);
    tokio::time::Instant::now() + Duration::from_micros(left as u64)
}

/// Result of dispatching one ad-hoc task.
pub struct DispatchOutcome {
    pub task_id: String,
    pub sent_to: Vec<String>,
    pub skipped: Vec<(String, String)>,
}

/// Creates a task for `input` and gives it to `agents` (every connected
/// agent when empty). Agents [`admit`] refuses are skipped with a reason.
pub async fn dispatch(
    shared: &Shared,
    input: ProbeInput,
    agents: Vec<String>,
    deadline_s: u32,
) -> Result<DispatchOutcome, ServiceError> {
    let kind = input.kind_name();
    if input.kind.is_none() {
        return Err(ServiceError::InvalidArgument(
            "dispatch needs a probe input".into(),
        ));
    }
    let now = vantage_proto::now_us();
    let deadline_s = if deadline_s == 0 {
        60
    } else {
        deadline_s.min(3600)
    };
    let targets = if agents.is_empty() {
        shared.hub.connected()
    } else {
        agents
    };
    let mut rec = TaskRecord {
        task_id: vantage_proto::envelope::new_id(),
        campaign_id: String::new(),
        run_id: String::new(),
        created_us: now,
        deadline_us: now + deadline_s as i64 * 1_000_000,
        input: serde_json::to_value(&input).unwrap_or_default(),
        assignments: BTreeMap::new(),
    };
    let mut skipped = Vec::new();
    let mut admitted = Vec::new();
    for a in targets {
        let record = shared.store.agent(&a)?;
        match admit(shared, &a, record.as_ref(), kind, now) {
            Ok(()) => {
                rec.assignments.insert(a.clone(), TaskAssignment::Sent);
                admitted.push(a);
            }
            Err(skip) => skipped.push((a, skip.to_string())),
        }
    }
    // Stored before it is sent, so an ack can never arrive for an unknown task.
    shared.store.put_task(&rec)?;
    let task = wire_task(&rec, None);
    let sends = admitted.iter().map(|a| (a.clone(), task.clone())).collect();
    let failed = deliver(shared, sends, send_until(rec.deadline_us));
    let sent_to = admitted
        .into_iter()
        .filter(|a| !failed.iter().any(|(f, _)| f == a))
        .collect::<Vec<_>>();
    skipped.extend(
        failed
            .into_iter()
            .map(|(a, _)| (a, Skip::NotSent.to_string())),
    );
    let task_id = rec.task_id;
    tracing::info!(task = %task_id, sent = sent_to.len(), skipped = skipped.len(), "task dispatched");
    Ok(DispatchOutcome {
        task_id,
        sent_to,
        skipped,
    })
}

/// Records an agent's answer to a task (atomically: other sessions may be
/// recording theirs on the same task at the same moment). A result that
/// arrives after its lease expired still counts as done.
pub fn mark(
    shared: &Shared,
    task_id: &str,
    agent_id: &str,
    state: TaskAssignment,
) -> Result<(), StoreError> {
    apply_marks(shared, task_id, &[(agent_id.to_string(), state)])
}

fn apply_marks(
    shared: &Shared,
    task_id: &str,
    marks: &[(String, TaskAssignment)],
) -> Result<(), StoreError> {
    shared.store.modify_task(task_id, |t| {
        for (agent_id, state) in marks {
            if let Some(cur) = t.assignments.get_mut(agent_id) {
                // Done is final; a late acceptance never undoes it.
                if *cur != TaskAssignment::Done {
                    *cur = *state;
                }
            }
        }
    })?;
    Ok(())
}

/// Queues `state` for `agent_id` on each of `tasks`, to be written by
/// [`flush_marks`]. A task record holds every assignment of a target
/// (often a hundred agents answering the same target within moments), and
/// each write parses and rewrites all of it: written one result at a time
/// this cost more than verifying and storing the results (BENCHMARKS.md).
/// Queued marks of one task are written together. Like [`mark`], they are
/// soft state (not synced): the results themselves are already durable.
pub fn queue_marks(shared: &Shared, tasks: Vec<String>, agent_id: &str, state: TaskAssignment) {
    if tasks.is_empty() {
        return;
    }
    let mut q = shared
        .pending_marks
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    for t in tasks {
        q.entry(t).or_default().push((agent_id.to_string(), state));
    }
}

/// Writes every queued mark, one task record update per task; returns how
/// many tasks were written. The scheduler flushes before each pass, so
/// it never judges a lease on a result already received.
pub fn flush_marks(shared: &Shared) -> Result<usize, StoreError> {
    let pending = std::mem::take(
        &mut *shared
            .pending_marks
            .lock()
            .unwrap_or_else(|p| p.into_inner()),
    );
    let n = pending.len();
    let mut pending = pending.into_iter();
    while let Some((task_id, marks)) = pending.next() {
        if let Err(e) = apply_marks(shared, &task_id, &marks) {
            // Queued again (ahead of newer marks), for the next flush.
            let mut q = shared
                .pending_marks
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            for (t, mut m) in std::iter::once((task_id, marks)).chain(pending) {
                let newer = q.remove(&t).unwrap_or_default();
                m.extend(newer);
                q.insert(t, m);
            }
            return Err(e);
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::TaskRecord;

    fn task(id: &str, agents: &[&str]) -> TaskRecord {
        TaskRecord::for_test(id, "0190a8b2-0000-7000-8000-0000000000c1", agents)
    }

    /// Queued marks touch nothing until flushed; a flush writes each task
    /// once with every agent's mark, keeps Done final, and leaves other
    /// agents' assignments alone.
    #[tokio::test]
    async fn queued_marks_are_written_together_and_done_stays_final() {
        let d = tempfile::tempdir().unwrap();
        let s = crate::server::test_state(d.path());
        let (t1, t2) = (
            "0190a8b2-0000-7000-8000-000000000001",
            "0190a8b2-0000-7000-8000-000000000002",
        );
        s.store.put_task(&task(t1, &["a", "b", "c"])).unwrap();
        s.store.put_task(&task(t2, &["a"])).unwrap();
        queue_marks(&s, vec![t1.into(), t2.into()], "a", TaskAssignment::Done);
        queue_marks(&s, vec![t1.into()], "b", TaskAssignment::Done);
        queue_marks(&s, vec![t1.into()], "stranger", TaskAssignment::Done);
        let state = |t: &str, a: &str| {
            s.store
                .task(t)
                .unwrap()
                .unwrap()
                .assignments
                .get(a)
                .copied()
        };
        assert_eq!(
            state(t1, "a"),
            Some(TaskAssignment::Sent),
            "not before the flush"
        );
        assert_eq!(flush_marks(&s).unwrap(), 2, "one write per task");
        assert_eq!(state(t1, "a"), Some(TaskAssignment::Done));
        assert_eq!(state(t1, "b"), Some(TaskAssignment::Done));
        assert_eq!(state(t1, "c"), Some(TaskAssignment::Sent));
        assert_eq!(state(t1, "stranger"), None, "marks never add an assignment");
        assert_eq!(state(t2, "a"), Some(TaskAssignment::Done));
        queue_marks(&s, vec![t1.into()], "a", TaskAssignment::Accepted);
        assert_eq!(flush_marks(&s).unwrap(), 1);
        assert_eq!(state(t1, "a"), Some(TaskAssignment::Done), "Done is final");
        assert_eq!(flush_marks(&s).unwrap(), 0, "nothing queued");
    }
}
