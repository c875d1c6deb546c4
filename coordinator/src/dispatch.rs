//! Pushing tasks down live sessions and recording where each stands. The
//! ad-hoc `Dispatch` call and (later) the campaign scheduler both go through
//! [`send_task`], so nothing is dispatched twice to one agent for one task.

use std::collections::BTreeMap;

use vantage_proto::v1::{coordinator_message, CoordinatorMessage, ProbeInput, Task};

use crate::errors::ServiceError;
use crate::state::Shared;
use crate::store::{StoreError, TaskAssignment, TaskRecord};

/// Result of dispatching one task.
pub struct DispatchOutcome {
    pub task_id: String,
    pub sent_to: Vec<String>,
    pub skipped: Vec<(String, String)>,
}

/// Creates a task for `input` and pushes it to `agents` (every connected
/// agent when empty). Offline, revoked or non-consenting agents are skipped
/// with a reason.
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
    let task_id = vantage_proto::envelope::new_id();
    let targets = if agents.is_empty() {
        shared.hub.connected()
    } else {
        agents
    };
    let mut rec = TaskRecord {
        task_id: task_id.clone(),
        campaign_id: String::new(),
        run_id: String::new(),
        created_us: now,
        deadline_us: now + deadline_s as i64 * 1_000_000,
        input: serde_json::to_value(&input).unwrap_or_default(),
        assignments: BTreeMap::new(),
    };
    let mut sent_to = Vec::new();
    let mut skipped = Vec::new();
    let mut senders = Vec::new();
    for a in targets {
        let Some(agent) = shared.store.agent(&a)? else {
            skipped.push((a, "unknown agent".into()));
            continue;
        };
        if agent.revoked {
            skipped.push((a, "revoked".into()));
            continue;
        }
        if !agent.consent_kinds.iter().any(|k| k == kind) {
            skipped.push((a, format!("volunteer has not consented to {kind} probes")));
            continue;
        }
        let Some(tx) = shared.hub.sender(&a) else {
            skipped.push((a, "offline".into()));
            continue;
        };
        if !shared.take_task_slot(&a, agent.max_tasks_per_hour, now) {
            skipped.push((
                a,
                format!(
                    "at the volunteer's limit of {} tasks per hour",
                    agent.max_tasks_per_hour
                ),
            ));
            continue;
        }
        rec.assignments.insert(a.clone(), TaskAssignment::Sent);
        senders.push((a, tx));
    }
    // Stored before it is sent, so an ack can never arrive for an unknown task.
    shared.store.put_task(&rec)?;
    let task = Task {
        task_id: task_id.clone(),
        deadline_us: rec.deadline_us,
        input: Some(input),
        ..Default::default()
    };
    for (a, tx) in senders {
        let m = CoordinatorMessage {
            msg: Some(coordinator_message::Msg::Task(task.clone())),
        };
        match tx.try_send(Ok(m)) {
            Ok(()) => sent_to.push(a),
            Err(_) => skipped.push((a, "session queue full or closed".into())),
        }
    }
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
