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
    shared.store.modify_task(task_id, |t| {
        if let Some(cur) = t.assignments.get_mut(agent_id) {
            // Done is final; a late acceptance never undoes it.
            if *cur != TaskAssignment::Done {
                *cur = state;
            }
        }
    })?;
    Ok(())
}
