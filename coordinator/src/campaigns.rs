//! Campaign runtime: turns a validated spec into runs stored in sled,
//! dispatches each run's inside and control tasks together over live
//! sessions, expires and re-offers leases, tracks progress, and computes
//! verdicts from the stored results (recomputed when late results arrive).
//!
//! Pure parts live elsewhere: spec parsing, run expansion and agent
//! selection in `scheduler/`, verdict rules in `analysis/`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use vantage_proto::v1::*;

use crate::dispatch;
use crate::errors::ServiceError;
use crate::scheduler::{self, AgentView, CampaignSpec, SpecFormat};
use crate::state::Shared;
use crate::store::{
    CampaignRecord, CampaignState, Group, RunRecord, RunState, TaskAssignment, TaskRecord,
};

/// How often the scheduler looks at the clock.
pub const TICK: Duration = Duration::from_millis(250);
/// How often queued task marks are written (`dispatch::queue_marks`).
const MARK_TICK: Duration = Duration::from_millis(50);

/// Validates and stores a campaign; its runs are dispatched by [`tick`].
pub async fn create(
    s: &Shared,
    r: CreateCampaignRequest,
) -> Result<CreateCampaignResponse, ServiceError> {
    let format = match r.format.as_str() {
        "" | "toml" => SpecFormat::Toml,
        "json" => SpecFormat::Json,
        other => {
            return Err(ServiceError::InvalidArgument(format!(
                "unknown spec format {other:?} (toml or json)"
            )))
        }
    };
    let spec = scheduler::parse_spec(&r.spec, format)
        .map_err(|e| ServiceError::InvalidArgument(e.to_string()))?;
    let now = s.store.new_campaign_time()?;
    let plans = scheduler::expand_runs(&spec, now, rand::random())
        .map_err(|e| ServiceError::InvalidArgument(e.to_string()))?;
    let campaign_id = vantage_proto::envelope::new_id();
    let rec = CampaignRecord {
        campaign_id: campaign_id.clone(),
        name: spec.name.clone(),
        description: spec.description.clone(),
        state: CampaignState::Active,
        created_us: now,
        spec: spec.clone(),
        runs: plans
            .iter()
            .map(|p| RunRecord {
                run_id: vantage_proto::envelope::new_id(),
                index: p.index,
                dispatch_at_us: p.dispatch_us,
                state: RunState::Scheduled,
                ..Default::default()
            })
            .collect(),
    };
    s.store.put_campaign(&rec)?;
    tracing::info!(campaign = %campaign_id, runs = rec.runs.len(), name = %rec.name, "campaign created");
    Ok(CreateCampaignResponse {
        campaign_id,
        runs: rec.runs.len() as u32,
    })
}

fn info(rec: &CampaignRecord) -> CampaignInfo {
    CampaignInfo {
        campaign_id: rec.campaign_id.clone(),
        name: rec.name.clone(),
        description: rec.description.clone(),
        state: rec.state.as_str().into(),
        created_us: rec.created_us,
        runs_total: rec.runs.len() as u32,
        runs_done: rec
            .runs
            .iter()
            .filter(|r| r.state == RunState::Done)
            .count() as u32,
        targets: rec.spec.targets.len() as u32,
    }
}

pub fn list(s: &Shared) -> Result<ListCampaignsResponse, ServiceError> {
    Ok(ListCampaignsResponse {
        campaigns: s.store.campaigns()?.iter().map(info).collect(),
    })
}

fn load(s: &Shared, id: &str) -> Result<CampaignRecord, ServiceError> {
    s.store
        .campaign(id)?
        .ok_or_else(|| ServiceError::NotFound(format!("no campaign with id {id}")))
}

pub fn status(s: &Shared, id: &str) -> Result<CampaignStatusResponse, ServiceError> {
    let rec = load(s, id)?;
    // Targets per kind, for agents left out of a run for want of consent.
    let mut targets_of: HashMap<&'static str, u64> = HashMap::new();
    for t in &rec.spec.targets {
        *targets_of.entry(t.kind_name()).or_default() += 1;
    }
    let mut failures_of = crate::verdicts::failures_by_run(s, &rec)?;
    let mut runs = Vec::with_capacity(rec.runs.len());
    for run in &rec.runs {
        let mut groups = vec![
            progress(Group::Inside, &run.inside),
            progress(Group::Control, &run.control),
        ];
        let inside: HashSet<&str> = run.inside.iter().map(String::as_str).collect();
        let mut failures: BTreeMap<String, u64> = BTreeMap::new();
        for t in &run.tasks {
            s.store.each_task_assignment(t, |agent, st| {
                let g = if inside.contains(agent) {
                    &mut groups[0]
                } else {
                    &mut groups[1]
                };
                g.tasks += 1;
                match st {
                    TaskAssignment::Done => g.done += 1,
                    TaskAssignment::Refused => {
                        g.refused += 1;
                        *failures.entry("refused_by_agent".into()).or_default() += 1;
                    }
                    TaskAssignment::Expired => {
                        g.expired += 1;
                        *failures.entry("lease_expired".into()).or_default() += 1;
                    }
                    TaskAssignment::Sent | TaskAssignment::Accepted => g.pending += 1,
                }
            })?;
        }
        for (f, n) in failures_of.remove(&run.run_id).unwrap_or_default() {
            *failures.entry(f).or_default() += n;
        }
        runs.push(RunStatus {
            run_id: run.run_id.clone(),
            index: run.index,
            dispatch_at_us: run.dispatch_at_us,
            state: run.state.as_str().into(),
            groups,
            failures: failures
                .into_iter()
                .map(|(name, value)| Counter { name, value })
                .collect(),
            skipped: run.skipped.clone(),
            consent_skipped: consent_skipped(&run.skipped, &targets_of)
                .into_iter()
                .map(|(name, value)| Counter { name, value })
                .collect(),
        });
    }
    Ok(CampaignStatusResponse {
        campaign: Some(info(&rec)),
        runs,
    })
}

/// A run's `skipped` entry for a task not given to `agent` of `group`
/// ([`unconsented_kinds`] reads the consent ones back).
fn skipped_entry(group: Group, agent: &str, why: &dispatch::Skip) -> String {
    format!("{} {agent}: {why}", group.as_str())
}

/// The probe kinds a run's `skipped` entry says the agent's volunteer has
/// not consented to: the task's kind for a task skipped at dispatch
/// ([`dispatch::Skip::NotConsented`]), or every kind of the campaign for an agent left out
/// at selection (`SkipReason::NotConsented`). `None` for other entries.
fn unconsented_kinds(entry: &str) -> Option<(Vec<&str>, bool)> {
    let (_, reason) = entry.split_once(": ")?;
    if let Some(list) =
        reason.strip_prefix("has not consented to any probe kind of this campaign (")
    {
        let list = list.strip_suffix(')')?;
        return Some((list.split(", ").filter(|k| !k.is_empty()).collect(), true));
    }
    let kind = reason
        .strip_prefix("has not consented to ")?
        .strip_suffix(" probes")?;
    Some((vec![kind], false))
}

/// Tasks not given to matching agents for want of consent, per kind
/// (sorted by kind): one per task skipped at dispatch, and for an agent
/// left out at selection, one per target of each kind it would have run.
fn consent_skipped(
    skipped: &[String],
    targets_of: &HashMap<&'static str, u64>,
) -> BTreeMap<String, u64> {
    let mut out: BTreeMap<String, u64> = BTreeMap::new();
    for entry in skipped {
        let Some((kinds, whole_agent)) = unconsented_kinds(entry) else {
            continue;
        };
        for k in kinds {
            let n = if whole_agent {
                targets_of.get(k).copied().unwrap_or(0)
            } else {
                1
            };
            if n > 0 {
                *out.entry(k.to_string()).or_default() += n;
            }
        }
    }
    out
}

fn progress(group: Group, agents: &[String]) -> GroupProgress {
    GroupProgress {
        group: group.as_str().into(),
        agents: agents.len() as u32,
        ..Default::default()
    }
}

pub fn set_state(s: &Shared, id: &str, action: &str) -> Result<String, ServiceError> {
    let mut rec = load(s, id)?;
    let next = match (action, rec.state) {
        (_, CampaignState::Cancelled) => {
            return Err(ServiceError::InvalidArgument(format!(
                "campaign {id} is cancelled"
            )));
        }
        ("pause", CampaignState::Active) => CampaignState::Paused,
        ("resume", CampaignState::Paused) => CampaignState::Active,
        ("cancel", _) => CampaignState::Cancelled,
        ("pause" | "resume", st) => {
            return Err(ServiceError::InvalidArgument(format!(
                "cannot {action} a campaign that is {}",
                st.as_str()
            )));
        }
        _ => {
            return Err(ServiceError::InvalidArgument(format!(
                "unknown action {action:?} (pause, resume or cancel)"
            )))
        }
    };
    rec.state = next;
    if next == CampaignState::Cancelled {
        for r in rec.runs.iter_mut().filter(|r| !r.state.is_finished()) {
            r.state = RunState::Cancelled;
        }
    }
    s.store.put_campaign(&rec)?;
    tracing::info!(campaign = %id, state = next.as_str(), "campaign state changed");
    Ok(next.as_str().into())
}

/// Verdicts of every run: stored, and recomputed first where results
/// arrived since they were computed (`crate::verdicts`).
pub fn verdicts(s: &Shared, id: &str) -> Result<VerdictsResponse, ServiceError> {
    let rec = load(s, id)?;
    Ok(VerdictsResponse {
        verdicts: crate::verdicts::of_campaign(s, &rec)?,
    })
}

/// After a start, how long the scheduler waits at most for the agents that
/// were connected before to come back before it dispatches anything: a run
/// falling due right after a restart used to skip every agent still
/// reconnecting as "offline". It starts as soon as all of them are back.
pub const RECONNECT_WAIT: Duration = Duration::from_secs(30);
/// Agents seen this recently before a start count as connected before it
/// (three heartbeats: a live session is seen at least every heartbeat).
const RECENTLY_SEEN_US: i64 = 3 * crate::api::agent::HEARTBEAT_INTERVAL_S as i64 * 1_000_000;

/// The agents that were connected shortly before now: not revoked, seen in
/// the last [`RECENTLY_SEEN_US`].
fn recently_connected(s: &Shared, now: i64) -> Vec<String> {
    match s.store.agents() {
        Ok(agents) => agents
            .into_iter()
            .filter(|a| !a.revoked && a.last_seen_us >= now - RECENTLY_SEEN_US)
            .map(|a| a.agent_id)
            .collect(),
        Err(e) => {
            tracing::error!("cannot list agents to wait for: {e}");
            Vec::new()
        }
    }
}

/// Starts the scheduler loop: resumes every campaign where the store says
/// it was, once the agents connected before the start are back (or
/// [`RECONNECT_WAIT`] has passed).
pub fn spawn(s: Shared) {
    match crate::verdicts::mark_all(&s) {
        Ok(n) if n > 0 => tracing::info!(runs = n, "verdicts of stored runs will be recomputed"),
        Ok(_) => {}
        Err(e) => tracing::error!("cannot list runs for verdicts: {e}"),
    }
    let expected = recently_connected(&s, vantage_proto::now_us());
    if !expected.is_empty() {
        tracing::info!(
            agents = expected.len(),
            "waiting up to {} s for the agents connected before the start",
            RECONNECT_WAIT.as_secs()
        );
    }
    let mut waiting = Some((expected, tokio::time::Instant::now() + RECONNECT_WAIT));
    tokio::spawn(async move {
        // Queued task marks are written every MARK_TICK, the scheduler
        // passes run every TICK, each right after a flush.
        let mut tick = tokio::time::interval(MARK_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let per_pass = (TICK.as_millis() / MARK_TICK.as_millis()).max(1);
        for n in 0u128.. {
            tick.tick().await;
            if let Err(e) = crate::dispatch::flush_marks(&s) {
                tracing::error!("task marks: {e}");
            }
            if n % per_pass != 0 {
                continue;
            }
            if let Some((expected, until)) = &waiting {
                let missing = expected.iter().filter(|a| !s.hub.is_connected(a)).count();
                if missing > 0 && tokio::time::Instant::now() < *until {
                    continue;
                }
                if missing > 0 {
                    tracing::warn!(
                        missing,
                        "scheduler starts without agents that have not reconnected"
                    );
                } else if !expected.is_empty() {
                    tracing::info!(
                        "every agent connected before the start is back; scheduler starts"
                    );
                }
                waiting = None;
            }
            if let Err(e) = step(&s).await {
                tracing::error!("scheduler: {e}");
            }
            if let Err(e) = crate::verdicts::refresh_some(&s) {
                tracing::error!("verdicts: {e}");
            }
        }
    });
}

/// One scheduler pass: re-send unacknowledged tasks to agents that came
/// back, dispatch due runs, expire leases, complete runs.
pub async fn step(s: &Shared) -> Result<(), ServiceError> {
    let now = vantage_proto::now_us();
    let arrivals = s.hub.take_arrivals();
    let mut records = None;
    for mut rec in s.store.campaigns()? {
        if rec.state != CampaignState::Active {
            continue;
        }
        let spec = rec.spec.clone();
        let mut changed = false;
        for i in 0..rec.runs.len() {
            if !arrivals.is_empty() && rec.runs[i].state == RunState::Dispatched {
                if records.is_none() {
                    records = Some(agent_records(s)?);
                }
                if let Some(records) = records.as_ref() {
                    resend(s, &rec.runs[i], &arrivals, records, now)?;
                }
            }
            match rec.runs[i].state {
                RunState::Scheduled if rec.runs[i].dispatch_at_us <= now => {
                    dispatch_run(s, &rec.campaign_id, &spec, &mut rec.runs[i], now).await?;
                    changed = true;
                }
                RunState::Dispatched => {
                    changed |= supervise_run(s, &spec, &mut rec.runs[i], now).await?;
                }
                _ => {}
            }
        }
        if rec.runs.iter().all(|r| r.state.is_finished()) {
            rec.state = CampaignState::Done;
            changed = true;
            tracing::info!(campaign = %rec.campaign_id, "campaign done");
        }
        if changed {
            s.store.put_campaign(&rec)?;
        }
    }
    Ok(())
}

/// Re-sends the tasks of `run` that an agent in `arrivals` was given before
/// its session opened and never acknowledged (still `Sent`, deadline not
/// passed): sent into a session that died, or never sent because the
/// coordinator restarted. Without this they waited for their lease to
/// expire. The agent runs a task id once, so a task it did receive (its
/// acknowledgement lost) is not run twice.
fn resend(
    s: &Shared,
    run: &RunRecord,
    arrivals: &HashMap<String, i64>,
    records: &HashMap<String, crate::store::AgentRecord>,
    now: i64,
) -> Result<(), ServiceError> {
    let returning: Vec<(&String, &i64)> = run
        .inside
        .iter()
        .chain(&run.control)
        .filter_map(|a| arrivals.get_key_value(a))
        .collect();
    if returning.is_empty() {
        return Ok(());
    }
    let mut sends = Vec::new();
    let mut until = now;
    for task_id in &run.tasks {
        let Some(t) = s.store.task(task_id)? else {
            continue;
        };
        if t.deadline_us <= now {
            continue;
        }
        let kind = serde_json::from_value::<ProbeInput>(t.input.clone())
            .map(|i| i.kind_name())
            .unwrap_or("none");
        for (agent, opened_us) in &returning {
            if t.created_us >= **opened_us
                || t.assignments.get(*agent) != Some(&TaskAssignment::Sent)
            {
                continue;
            }
            if let Err(why) = dispatch::admit(s, agent, records.get(*agent), kind, now) {
                tracing::info!(task = %t.task_id, %agent, %why, "not re-sent");
                continue;
            }
            sends.push((
                (*agent).clone(),
                dispatch::wire_task(&t, run.group_of(agent)),
            ));
            until = until.max(t.deadline_us);
        }
    }
    if !sends.is_empty() {
        let n = sends.len();
        let failed = dispatch::deliver(s, sends, dispatch::send_until(until)).len();
        tracing::info!(run = %run.run_id, resent = n - failed, "unacknowledged tasks re-sent to returning agents");
        if let Err(e) = s.store.add_counter("tasks_resent", (n - failed) as u64) {
            tracing::warn!("cannot update counter tasks_resent: {e}");
        }
    }
    Ok(())
}

/// Grace after a task deadline before its lease expires: a quarter of the
/// deadline, at least 2 s.
fn lease_grace(deadline_us: i64) -> i64 {
    (deadline_us / 4).max(2_000_000)
}

fn views(s: &Shared) -> Result<Vec<AgentView>, ServiceError> {
    Ok(s.store
        .agents()?
        .into_iter()
        .map(|a| AgentView {
            online: s.hub.is_connected(&a.agent_id),
            agent_id: a.agent_id,
            country: a.country,
            asn: a.asn,
            tags: a.tags,
            revoked: a.revoked,
            consent_kinds: a.consent_kinds,
        })
        .collect())
}

/// Every stored agent by id.
fn agent_records(s: &Shared) -> Result<HashMap<String, crate::store::AgentRecord>, ServiceError> {
    Ok(s.store
        .agents()?
        .into_iter()
        .map(|a| (a.agent_id.clone(), a))
        .collect())
}

/// Dispatches one run: selects inside and control agents, creates one task
/// per target, and pushes all of them in one pass so inside and control
/// measure the same moment.
async fn dispatch_run(
    s: &Shared,
    campaign_id: &str,
    spec: &CampaignSpec,
    run: &mut RunRecord,
    now: i64,
) -> Result<(), ServiceError> {
    let views = views(s)?;
    // No agent the inside selector matches ever serves as a control.
    let (inside, control) = scheduler::select_groups(spec, &views);
    run.inside = inside.chosen.clone();
    run.control = control.chosen.clone();
    run.skipped = inside
        .skipped
        .iter()
        .map(|(a, r)| format!("inside {a}: {r}"))
        .chain(
            control
                .skipped
                .iter()
                .map(|(a, r)| format!("control {a}: {r}")),
        )
        .collect();
    run.deadline_us = now + spec.deadline_us();
    let agents_by_id = agent_records(s)?;
    let mut sends = Vec::new();
    let mut tasks = Vec::with_capacity(spec.targets.len());
    for input in &spec.targets {
        let kind = input.kind_name();
        let mut t = TaskRecord {
            task_id: vantage_proto::envelope::new_id(),
            campaign_id: campaign_id.into(),
            run_id: run.run_id.clone(),
            created_us: now,
            deadline_us: run.deadline_us,
            input: serde_json::to_value(input).unwrap_or_default(),
            assignments: BTreeMap::new(),
        };
        for (group, agents) in [(Group::Inside, &run.inside), (Group::Control, &run.control)] {
            for a in agents {
                match dispatch::admit(s, a, agents_by_id.get(a), kind, now) {
                    Ok(()) => {
                        t.assignments.insert(a.clone(), TaskAssignment::Sent);
                        sends.push((a.clone(), dispatch::wire_task(&t, group)));
                    }
                    Err(skip) => run.skipped.push(skipped_entry(group, a, &skip)),
                }
            }
        }
        run.tasks.push(t.task_id.clone());
        tasks.push(t);
    }
    // All tasks are stored first (one sync), then pushed back to back.
    s.store.put_tasks(&tasks)?;
    for (agent, _) in dispatch::deliver(s, sends, dispatch::send_until(run.deadline_us)) {
        let group = run.group_of(&agent);
        run.skipped
            .push(skipped_entry(group, &agent, &dispatch::Skip::NotSent));
    }
    run.state = RunState::Dispatched;
    tracing::info!(
        campaign = %campaign_id, run = run.index, inside = run.inside.len(), control = run.control.len(),
        tasks = run.tasks.len(), "run dispatched"
    );
    Ok(())
}

/// Expires leases past the run deadline, re-offers them to another
/// matching online agent of the same group, and completes the run when no
/// task is outstanding. Returns whether the run record changed.
async fn supervise_run(
    s: &Shared,
    spec: &CampaignSpec,
    run: &mut RunRecord,
    now: i64,
) -> Result<bool, ServiceError> {
    let mut changed = false;
    let mut outstanding = 0;
    let mut records = None;
    let lease = spec.deadline_us();
    for task_id in run.tasks.clone() {
        let Some(mut t) = s.store.task(&task_id)? else {
            continue;
        };
        let expired: Vec<String> = t
            .assignments
            .iter()
            .filter(|(_, st)| matches!(st, TaskAssignment::Sent | TaskAssignment::Accepted))
            .map(|(a, _)| a.clone())
            .collect();
        // A probe may use its whole deadline; its result then needs a moment
        // to travel, so a lease expires only after a grace period.
        if now <= t.deadline_us + lease_grace(lease) {
            outstanding += expired.len();
            continue;
        }
        let mut offers: Vec<(String, Group)> = Vec::new();
        for agent in &expired {
            t.assignments.insert(agent.clone(), TaskAssignment::Expired);
            let group = run.group_of(agent);
            tracing::info!(task = %task_id, %agent, "lease expired");
            // Re-offer to another matching agent that has not had this task.
            let selector = if group == Group::Inside {
                &spec.inside
            } else {
                &spec.control
            };
            let kind = serde_json::from_value::<ProbeInput>(t.input.clone())
                .map(|i| i.kind_name())
                .unwrap_or("none");
            let used: HashSet<&String> = run.inside.iter().chain(run.control.iter()).collect();
            let candidates: Vec<AgentView> = views(s)?
                .into_iter()
                .filter(|v| !used.contains(&v.agent_id) && !t.assignments.contains_key(&v.agent_id))
                .filter(|v| v.consent_kinds.iter().any(|k| k == kind))
                .collect();
            // The first candidate the dispatch gate admits (consent, online,
            // the volunteer's hourly cap) takes the lease over.
            if records.is_none() {
                records = Some(agent_records(s)?);
            }
            let Some(records) = records.as_ref() else {
                continue;
            };
            let new_agent = scheduler::select_agents(selector, &candidates)
                .chosen
                .into_iter()
                .find(|a| dispatch::admit(s, a, records.get(a), kind, now).is_ok());
            if let Some(new_agent) = new_agent {
                t.assignments
                    .insert(new_agent.clone(), TaskAssignment::Sent);
                if group == Group::Inside {
                    run.inside.push(new_agent.clone());
                } else {
                    run.control.push(new_agent.clone());
                }
                offers.push((new_agent, group));
                changed = true;
            }
        }
        if expired.is_empty() {
            continue;
        }
        // Written atomically before anything is sent, so a fast result is
        // never lost to this update (results mark their own assignment).
        let new_deadline = now + lease;
        let stored = s.store.modify_task(&task_id, |cur| {
            for a in &expired {
                if let Some(st) = cur.assignments.get_mut(a) {
                    if matches!(st, TaskAssignment::Sent | TaskAssignment::Accepted) {
                        *st = TaskAssignment::Expired;
                    }
                }
            }
            for (a, _) in &offers {
                cur.assignments.insert(a.clone(), TaskAssignment::Sent);
            }
            if !offers.is_empty() {
                cur.deadline_us = new_deadline;
            }
        })?;
        if let Some(stored) = stored {
            let sends: Vec<(String, Task)> = offers
                .iter()
                .map(|(a, group)| (a.clone(), dispatch::wire_task(&stored, *group)))
                .collect();
            let n = sends.len();
            let failed = dispatch::deliver(s, sends, dispatch::send_until(stored.deadline_us));
            outstanding += n - failed.len();
            tracing::info!(task = %task_id, offered = n - failed.len(), "lease re-offered");
        }
    }
    if outstanding == 0 {
        run.state = RunState::Done;
        changed = true;
        tracing::info!(run = %run.run_id, "run done");
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::AgentRecord;

    /// `campaign status` puts each failure under the run whose result it is:
    /// counted from each dirty run's own results, read from the stored
    /// summary once its verdicts are stored, and counted in one pass over a
    /// campaign from before the run index.
    #[tokio::test]
    async fn status_counts_each_runs_failures_under_that_run() {
        use vantage_proto::v1::{measurement, Failure};
        const C: &str = "0190a8b2-0000-7000-8000-0000000000c9";
        let d = tempfile::tempdir().unwrap();
        let s = crate::server::test_state(d.path());
        let runs = ["r1", "r2", "r3"];
        crate::verdicts::tests::put_tcp_campaign(&s, C, &runs, RunState::Done);
        // r1: none failed; r2: two timeouts; r3: one refused, one timeout.
        let failed = [
            ("r1", None),
            ("r1", None),
            ("r2", Some("generic_timeout_error")),
            ("r2", Some("generic_timeout_error")),
            ("r3", Some("connection_refused")),
            ("r3", Some("generic_timeout_error")),
        ];
        let pending = failed
            .iter()
            .enumerate()
            .map(|(i, (run, failure))| {
                let id = format!("0190a8b2-0000-7000-8000-0000000003{i:02x}");
                let mut m = crate::verdicts::tests::tcp(&id, "in", "");
                m.campaign_id = C.into();
                m.run_id = run.to_string();
                if let (Some(f), Some(measurement::Result::Tcp(t))) = (failure, &mut m.result) {
                    t.failure = Some(Failure {
                        failure: f.to_string(),
                        operation: "connect".into(),
                    });
                }
                crate::verdicts::tests::pending(&m)
            })
            .collect();
        s.commit.commit(pending).await.unwrap();
        let marked = || ["r1", "r2", "r3"].map(|r| (C.to_string(), r.to_string()));
        let check = |why: &str| {
            let st = status(&s, C).unwrap();
            let of = |run: &str| -> Vec<(String, u64)> {
                st.runs
                    .iter()
                    .find(|r| r.run_id == run)
                    .unwrap()
                    .failures
                    .iter()
                    .map(|c| (c.name.clone(), c.value))
                    .collect()
            };
            assert_eq!(of("r1"), vec![], "{why}");
            assert_eq!(of("r2"), vec![("generic_timeout_error".into(), 2)], "{why}");
            assert_eq!(
                of("r3"),
                vec![
                    ("connection_refused".into(), 1),
                    ("generic_timeout_error".into(), 1)
                ],
                "{why}"
            );
        };
        // Dirty, as ingest leaves them once the results are durable: each
        // run's own results are read through the run index.
        s.mark_runs_dirty(marked());
        check("dirty runs");
        // Stored with their verdicts: read from the runs' summaries.
        crate::verdicts::refresh_all(&s).unwrap();
        assert!(!s.is_dirty_run(C, "r2"));
        check("stored summaries");
        // A campaign from before the run index is read whole, once.
        let mut rec = s.store.campaign(C).unwrap().unwrap();
        rec.created_us = 0;
        s.store.put_campaign(&rec).unwrap();
        assert!(!s.store.runs_indexed(0).unwrap());
        s.mark_runs_dirty(marked());
        check("a campaign from before the run index");
    }

    fn agent(n: u8, tag: &str) -> AgentRecord {
        AgentRecord {
            agent_id: format!("0190a8b2-0000-7000-8000-0000000000{n:02x}"),
            public_key: String::new(),
            country: "CN".into(),
            asn: 1,
            tags: vec![tag.into()],
            cert_fingerprint: format!("fp{n}"),
            enrolled_us: 1,
            last_seen_us: 1,
            revoked: false,
            software_version: "test".into(),
            consent_kinds: vec!["tcp".into()],
            max_concurrency: 1,
            max_tasks_per_hour: 0,
            ..Default::default()
        }
    }

    fn spec(targets: &str) -> CreateCampaignRequest {
        CreateCampaignRequest {
            spec: format!(
                "version = 1\nname = \"t\"\nallow_private_targets = true\n\
                 [inside]\ntags = [\"in\"]\n[control]\ntags = [\"ctl\"]\n{targets}"
            ),
            format: "toml".into(),
        }
    }

    /// Tasks skipped for want of consent are counted per kind: a task
    /// skipped at dispatch counts one, an agent left out at selection
    /// (consenting to none of the campaign's kinds) counts each target.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn consent_skips_are_counted_per_kind() {
        let d = tempfile::tempdir().unwrap();
        let s = crate::server::test_state(d.path());
        let mut inboxes = Vec::new();
        for (n, tag, kinds) in [
            (1, "in", &["tcp"][..]),
            (2, "ctl", &["tcp"][..]),
            (3, "in", &["dns"][..]),
            (4, "in", &["quic"][..]),
        ] {
            let mut rec = agent(n, tag);
            rec.consent_kinds = kinds.iter().map(|k| k.to_string()).collect();
            s.store.put_agent(&rec).unwrap();
            let (tx, rx) = tokio::sync::mpsc::channel(64);
            s.hub.register(&rec.agent_id, tx);
            inboxes.push(rx);
        }
        let r = create(
            &s,
            spec(
                "[[targets]]\ntcp = { host = \"192.0.2.1\", port = 1 }\n\
                 [[targets]]\ntcp = { host = \"192.0.2.1\", port = 2 }\n\
                 [[targets]]\ndns = { domain = \"example.org\", resolver = \"192.0.2.53\" }\n",
            ),
        )
        .await
        .unwrap();
        step(&s).await.unwrap();
        let st = status(&s, &r.campaign_id).unwrap();
        let got: Vec<(String, u64)> = st.runs[0]
            .consent_skipped
            .iter()
            .map(|c| (c.name.clone(), c.value))
            .collect();
        // dns: agents 1 and 2 at dispatch, agent 4 at selection (1 target);
        // tcp: agent 3 at dispatch (2 targets), agent 4 at selection (2).
        assert_eq!(
            got,
            vec![("dns".to_string(), 3), ("tcp".to_string(), 4)],
            "{:?}",
            st.runs[0].skipped
        );
        // Entries that are not about consent do not count.
        let none = consent_skipped(
            &["inside a: offline".into(), "control b: listed twice".into()],
            &HashMap::from([("tcp", 2)]),
        );
        assert!(none.is_empty(), "{none:?}");
    }

    /// Runs stored when a finished run said "complete" read as "done", and
    /// count as done.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn legacy_complete_runs_read_as_done() {
        let d = tempfile::tempdir().unwrap();
        let s = crate::server::test_state(d.path());
        let r = create(
            &s,
            spec("[[targets]]\ntcp = { host = \"192.0.2.1\", port = 1 }\n"),
        )
        .await
        .unwrap();
        // Written as a store of that time held it.
        let rec = s.store.campaign(&r.campaign_id).unwrap().unwrap();
        let mut json = serde_json::to_value(&rec).unwrap();
        json["runs"][0]["state"] = "complete".into();
        let old: CampaignRecord = serde_json::from_value(json).unwrap();
        assert_eq!(old.runs[0].state, RunState::Done);
        s.store.put_campaign(&old).unwrap();
        let st = status(&s, &r.campaign_id).unwrap();
        assert_eq!(st.runs[0].state, "done");
        let info = st.campaign.unwrap();
        assert_eq!((info.runs_done, info.runs_total), (1, 1));
        // The scheduler finishes the campaign: every run is done.
        step(&s).await.unwrap();
        let rec = s.store.campaign(&r.campaign_id).unwrap().unwrap();
        assert_eq!(rec.state, CampaignState::Done);
    }

    /// A run with more targets than an agent's session queue holds: every
    /// task still reaches every agent, in order, as the agent reads.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_run_larger_than_the_session_queue_reaches_every_agent() {
        let d = tempfile::tempdir().unwrap();
        let s = crate::server::test_state(d.path());
        let mut inboxes = Vec::new();
        for (n, tag) in [(1, "in"), (2, "ctl")] {
            let rec = agent(n, tag);
            s.store.put_agent(&rec).unwrap();
            // A queue of 4, like the real 1,024 against a larger run.
            let (tx, rx) = tokio::sync::mpsc::channel(4);
            s.hub.register(&rec.agent_id, tx);
            inboxes.push(rx);
        }
        const TARGETS: usize = 30;
        let mut spec = String::from(
            "version = 1\nname = \"big\"\nallow_private_targets = true\ndeadline = \"10m\"\n\
             [inside]\ntags = [\"in\"]\n[control]\ntags = [\"ctl\"]\n",
        );
        for i in 0..TARGETS {
            spec.push_str(&format!(
                "[[targets]]\ntcp = {{ host = \"192.0.2.1\", port = {} }}\n",
                1000 + i
            ));
        }
        create(
            &s,
            CreateCampaignRequest {
                spec,
                format: "toml".into(),
            },
        )
        .await
        .unwrap();
        step(&s).await.unwrap();
        for rx in &mut inboxes {
            let mut ports = Vec::new();
            while ports.len() < TARGETS {
                let m = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                    .await
                    .unwrap_or_else(|_| panic!("only {} of {TARGETS} tasks arrived", ports.len()))
                    .unwrap()
                    .unwrap();
                if let Some(coordinator_message::Msg::Task(t)) = m.msg {
                    match t.input.and_then(|i| i.kind) {
                        Some(probe_input::Kind::Tcp(tcp)) => ports.push(tcp.port),
                        other => panic!("unexpected input {other:?}"),
                    }
                }
            }
            let want: Vec<u32> = (0..TARGETS as u32).map(|i| 1000 + i).collect();
            assert_eq!(ports, want);
        }
        let campaign = &s.store.campaigns().unwrap()[0];
        assert!(
            campaign.runs[0].skipped.is_empty(),
            "{:?}",
            campaign.runs[0].skipped
        );
    }

    /// A re-offer passes the same gate as every send: an agent at its
    /// volunteer's hourly cap is not offered the expired lease (before, the
    /// re-offer skipped the rate slot and the agent had to refuse).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_reoffer_honours_the_hourly_cap() {
        let d = tempfile::tempdir().unwrap();
        let s = crate::server::test_state(d.path());
        let capped = AgentRecord {
            max_tasks_per_hour: 1,
            ..agent(2, "in")
        };
        let mut inboxes = Vec::new();
        for rec in [agent(1, "in"), agent(3, "ctl"), capped.clone()] {
            s.store.put_agent(&rec).unwrap();
        }
        // Online at dispatch: the first inside agent and the control.
        for rec in [agent(1, "in"), agent(3, "ctl")] {
            let (tx, rx) = tokio::sync::mpsc::channel(16);
            s.hub.register(&rec.agent_id, tx);
            inboxes.push(rx);
        }
        let mut r = spec("[[targets]]\ntcp = { host = \"192.0.2.1\", port = 1 }\n");
        r.spec = r.spec.replace(
            "[inside]\n",
            "deadline = \"1s\"\n[inside]\nmax_agents = 1\n",
        );
        create(&s, r).await.unwrap();
        step(&s).await.unwrap();
        // The capped agent comes online with its hour's one task used.
        let (cap_tx, mut cap_rx) = tokio::sync::mpsc::channel(16);
        s.hub.register(&capped.agent_id, cap_tx);
        assert!(s.take_task_slot(&capped.agent_id, 1, vantage_proto::now_us()));
        // The first inside agent's lease runs out.
        let run = s.store.campaigns().unwrap()[0].runs[0].clone();
        assert_eq!(run.inside, vec![agent(1, "in").agent_id]);
        s.store
            .modify_task(&run.tasks[0], |t| t.deadline_us -= 60_000_000)
            .unwrap();
        step(&s).await.unwrap();
        let t = s.store.task(&run.tasks[0]).unwrap().unwrap();
        assert_eq!(
            t.assignments.get(&agent(1, "in").agent_id),
            Some(&TaskAssignment::Expired)
        );
        assert_eq!(t.assignments.get(&capped.agent_id), None, "{t:?}");
        assert!(
            cap_rx.try_recv().is_err(),
            "nothing sent to the capped agent"
        );
        drop(inboxes);
    }
}
