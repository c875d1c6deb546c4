//! Alerts: the change tracker records every change event with its
//! revision, and queues a delivery for each webhook that wants it;
//! [`webhooks`] sends them.
//!
//! The tracker follows the commit sequence (`store/seq.rs`) from a
//! durable cursor, like the ClickHouse sink. Each poll it reads the
//! results stored since the last one, and for every campaign they belong
//! to derives the campaign's change events from its current verdicts
//! (`crate::changes`) and compares them with those recorded
//! (`store/alerts.rs`):
//!
//! - an event never recorded is recorded as revision 1;
//! - one whose onset, runs or evidence moved (late results from an
//!   agent's outbox) is recorded as the next revision;
//! - one recorded but no longer derived (late results showed a flap) is
//!   recorded as withdrawn, in a new revision.
//!
//! Each of those makes one delivery per webhook whose filter matches, in
//! the same synced batch as the record and the cursor. An event is
//! recorded once the runs it rests on are done (or cancelled), so the
//! results of a run's other agents do not revise it a moment later; its
//! campaign is looked at every poll until then.
//!
//! A result is readable a moment before ingest marks its run's verdicts
//! for recomputation, so a campaign with new results is looked at again
//! on the next poll, and the stored cursor stays one poll behind what was
//! read: after a crash the tracker reads that poll again and the second
//! look is not lost. Looking again is harmless: an event that did not
//! change is not recorded again.

pub mod webhooks;

use std::collections::HashMap;
use std::time::Duration;

use prost::Message;
use vantage_proto::v1::{ChangeEvent, StoredResult};

use crate::state::Shared;
use crate::store::{Delivery, StoreError, WebhookRecord};

/// How often the tracker looks for new results.
const POLL: Duration = Duration::from_millis(1_000);
/// Results read per poll at most (the rest wait for the next one).
const BATCH: usize = 100_000;

/// Starts the change tracker and the webhook sender.
pub fn spawn(shared: &Shared) {
    let s = shared.clone();
    tokio::spawn(async move {
        let mut state = Tracker::default();
        let mut took = Duration::ZERO;
        loop {
            // At most a fifth of a core: a big campaign under heavy
            // ingest makes each poll longer, and the polls rarer.
            tokio::time::sleep(POLL.max(took * 4)).await;
            let s2 = s.clone();
            let st = std::mem::take(&mut state);
            let started = std::time::Instant::now();
            let r = tokio::task::spawn_blocking(move || track(&s2, st)).await;
            took = started.elapsed();
            match r {
                Ok(Ok(next)) => state = next,
                Ok(Err(e)) => tracing::warn!("change tracker: {e}"),
                Err(e) => tracing::warn!("change tracker stopped a poll: {e}"),
            }
        }
    });
    webhooks::spawn(shared);
}

/// What the tracker keeps between polls.
#[derive(Default)]
pub(crate) struct Tracker {
    /// The last sequence number read (ahead of the stored cursor by a poll).
    read: Option<u64>,
    /// Campaigns that had new results in the previous poll, or an event
    /// whose runs were still open: looked at again.
    recheck: Vec<String>,
}

/// The campaign a stored result answers, if any.
fn campaign_of(bytes: &[u8]) -> Option<String> {
    let sr = StoredResult::decode(bytes).ok()?;
    let m = vantage_proto::envelope::decode(sr.envelope.as_ref()?).ok()?;
    (!m.campaign_id.is_empty()).then_some(m.campaign_id)
}

pub(crate) fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// One poll of the tracker.
pub(crate) fn track(s: &Shared, mut t: Tracker) -> Result<Tracker, StoreError> {
    let stored = s.store.alerts_cursor()?;
    let from = t.read.unwrap_or(stored).max(stored);
    let mut fresh: Vec<String> = Vec::new();
    let mut last = from;
    for item in s.store.results_after_seq(from).take(BATCH) {
        let (seq, _, bytes) = item?;
        last = seq;
        if let Some(c) = campaign_of(&bytes) {
            if !fresh.contains(&c) {
                fresh.push(c);
            }
        }
    }
    let mut campaigns = std::mem::replace(&mut t.recheck, fresh.clone());
    campaigns.retain(|c| !fresh.contains(c));
    campaigns.extend(fresh);
    t.read = Some(last);
    if campaigns.is_empty() && from == stored {
        return Ok(t);
    }
    let hooks = s.store.webhooks()?;
    let now = now_us();
    let mut events = Vec::new();
    let mut deliveries = Vec::new();
    let mut open = Vec::new();
    for c in &campaigns {
        let Some(rec) = s.store.campaign(c)? else {
            continue;
        };
        let current = match crate::changes::of_campaign(s, &rec) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(campaign = %c, "change events: {e:?}");
                continue;
            }
        };
        let recorded = s.store.recorded_changes(c)?;
        for e in revised(&recorded, current) {
            // Not while its runs are open: their other agents' results
            // would revise it a moment later.
            let ready = settled(&rec, &e.after_run_id) && settled(&rec, &e.confirmed_run_id);
            if !e.withdrawn && !ready {
                if !open.contains(c) {
                    open.push(c.clone());
                }
                continue;
            }
            deliveries.extend(deliveries_for(&hooks, &e, now));
            events.push(e);
        }
    }
    for c in open {
        if !t.recheck.contains(&c) {
            t.recheck.push(c);
        }
    }
    // Everything up to `from` has now been looked at twice.
    s.store.record_changes(&events, &deliveries, from, now)?;
    if !events.is_empty() {
        tracing::info!(
            events = events.len(),
            deliveries = deliveries.len(),
            "change events recorded"
        );
        s.store
            .add_counter("change_events_recorded", events.len() as u64)?;
    }
    Ok(t)
}

/// Whether a run of the campaign has nothing outstanding (done or
/// cancelled; a run not in the record counts as settled).
fn settled(rec: &crate::store::CampaignRecord, run_id: &str) -> bool {
    use crate::store::RunState;
    rec.runs
        .iter()
        .find(|r| r.run_id == run_id)
        .is_none_or(|r| matches!(r.state, RunState::Done | RunState::Cancelled))
}

/// The events to record: those of `current` new or changed against
/// `recorded` (with the revision `crate::changes` gave them), and those
/// recorded but no longer derived, withdrawn in a new revision.
pub(crate) fn revised(recorded: &[ChangeEvent], current: Vec<ChangeEvent>) -> Vec<ChangeEvent> {
    let by_id: HashMap<&str, &ChangeEvent> =
        recorded.iter().map(|e| (e.event_id.as_str(), e)).collect();
    let now: std::collections::HashSet<&str> =
        current.iter().map(|e| e.event_id.as_str()).collect();
    let mut out = Vec::new();
    for r in recorded {
        if !r.withdrawn && !now.contains(r.event_id.as_str()) {
            out.push(ChangeEvent {
                withdrawn: true,
                revision: r.revision + 1,
                ..r.clone()
            });
        }
    }
    for e in current {
        let known = by_id
            .get(e.event_id.as_str())
            .is_some_and(|r| r.revision == e.revision && !r.withdrawn);
        if !known {
            out.push(e);
        }
    }
    out
}

/// The JSON body a webhook receives for an event (or a ping).
pub(crate) fn body(kind: &str, key: &str, hook: &str, event: Option<&ChangeEvent>) -> String {
    serde_json::json!({
        "type": kind,
        "id": key,
        "webhook": hook,
        "created_us": now_us(),
        "event": event,
    })
    .to_string()
}

/// One delivery per webhook that wants `e`.
fn deliveries_for(hooks: &[WebhookRecord], e: &ChangeEvent, now: i64) -> Vec<Delivery> {
    let kind = match (e.withdrawn, e.revision) {
        (true, _) => "change.withdrawn",
        (false, 1) => "change.created",
        _ => "change.revised",
    };
    let key = format!("{}.{}", e.event_id, e.revision);
    hooks
        .iter()
        .filter(|h| h.wants(e))
        .map(|h| Delivery {
            id: uuid::Uuid::now_v7().to_string(),
            webhook: h.id.clone(),
            body: body(kind, &key, &h.id, Some(e)),
            key: key.clone(),
            attempts: 0,
            first_us: now,
            last_error: String::new(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(id: &str, revision: u32, after_us: i64) -> ChangeEvent {
        ChangeEvent {
            campaign_id: "c".into(),
            event_id: id.into(),
            revision,
            after_us,
            country: "CN".into(),
            change: "blocked".into(),
            ..Default::default()
        }
    }

    const CAMPAIGN: &str = "0190a8b2-0000-7000-8000-0000000000c1";

    /// An inside (`in`) or control (`ctl`) TCP result of run `run`, failed
    /// (a timeout) or not.
    fn result(n: u8, agent: &str, run: &str, failed: bool) -> crate::store::PendingResult {
        use vantage_proto::v1::{measurement, Failure};
        let id = format!("0190a8b2-0000-7000-8000-0000000002{n:02x}");
        let mut m = crate::verdicts::tests::tcp(&id, agent, "");
        m.campaign_id = CAMPAIGN.into();
        m.run_id = run.into();
        m.start_us = 1_000_000 * n as i64;
        if let Some(measurement::Result::Tcp(t)) = &mut m.result {
            if failed {
                t.failure = Some(Failure {
                    failure: "generic_timeout_error".into(),
                    operation: "connect".into(),
                });
                t.connect_us = 0;
            }
        }
        crate::verdicts::tests::pending(&m)
    }

    /// Polls until the tracker has looked at everything twice.
    fn settle(s: &Shared, mut t: Tracker) -> Tracker {
        for _ in 0..3 {
            t = track(s, t).unwrap();
        }
        t
    }

    /// A result delivered late (an agent's outbox after an outage) moves
    /// an onset earlier: the same event, a new revision, and a
    /// `change.revised` delivery with the next idempotency key.
    #[tokio::test]
    async fn a_late_result_that_moves_an_onset_makes_a_revision_and_a_delivery() {
        use crate::store::RunState;
        let d = tempfile::tempdir().unwrap();
        let s = crate::server::test_state(d.path());
        let runs = ["r1", "r2", "r3", "r4", "r5"];
        crate::verdicts::tests::put_tcp_campaign(&s, CAMPAIGN, &runs, RunState::Done);
        let hook = webhooks::add(
            &s,
            vantage_proto::v1::AddWebhookRequest {
                url: "http://127.0.0.1:9/h".into(),
                ..Default::default()
            },
        )
        .unwrap()
        .webhook
        .unwrap();
        // r1 and r2 ok (the baseline); r3's inside result is missing; r4
        // and r5 blocked.
        s.commit
            .commit(vec![
                result(1, "in", "r1", false),
                result(2, "ctl", "r1", false),
                result(3, "in", "r2", false),
                result(4, "ctl", "r2", false),
                result(6, "ctl", "r3", false),
                result(7, "in", "r4", true),
                result(8, "ctl", "r4", false),
                result(9, "in", "r5", true),
                result(10, "ctl", "r5", false),
            ])
            .await
            .unwrap();
        s.mark_runs_dirty(runs.iter().map(|r| (CAMPAIGN.to_string(), r.to_string())));
        let t = settle(&s, Tracker::default());
        let first = s.store.recorded_changes(CAMPAIGN).unwrap();
        assert_eq!(first.len(), 1, "{first:?}");
        let e = &first[0];
        assert_eq!((e.change.as_str(), e.revision), ("blocked", 1));
        assert_eq!(
            (e.before_run_id.as_str(), e.after_run_id.as_str()),
            ("r2", "r4")
        );
        let queued = s.store.due_deliveries(i64::MAX - 1, 10).unwrap();
        assert_eq!(queued.len(), 1);
        assert_eq!(queued[0].1.key, format!("{}.1", e.event_id));
        assert_eq!(queued[0].1.webhook, hook.id);

        // r3's inside result arrives late: blocked already then.
        s.commit
            .commit(vec![result(5, "in", "r3", true)])
            .await
            .unwrap();
        s.mark_runs_dirty([(CAMPAIGN.to_string(), "r3".to_string())]);
        let t = settle(&s, t);
        let second = s.store.recorded_changes(CAMPAIGN).unwrap();
        assert_eq!(second.len(), 1, "{second:?}");
        let r = &second[0];
        assert_eq!(r.event_id, e.event_id, "the same event");
        assert_eq!(r.revision, 2);
        assert_eq!(
            (r.before_run_id.as_str(), r.after_run_id.as_str()),
            ("r2", "r3")
        );
        assert!(r.after_us < e.after_us, "the onset moved earlier");
        let queued = s.store.due_deliveries(i64::MAX - 1, 10).unwrap();
        let keys: Vec<&str> = queued.iter().map(|q| q.1.key.as_str()).collect();
        assert_eq!(
            keys,
            [format!("{}.1", e.event_id), format!("{}.2", e.event_id)]
        );
        let body: serde_json::Value = serde_json::from_str(&queued[1].1.body).unwrap();
        assert_eq!(body["type"], "change.revised");
        assert_eq!(body["event"]["after_run_id"], "r3");

        // Nothing new: nothing recorded, nothing queued.
        settle(&s, t);
        assert_eq!(s.store.due_deliveries(i64::MAX - 1, 10).unwrap().len(), 2);
        // Reads give the recorded revision.
        let rec = s.store.campaign(CAMPAIGN).unwrap().unwrap();
        let read = crate::changes::of_campaign(&s, &rec).unwrap();
        assert_eq!(read, second);
    }

    #[test]
    fn new_moved_and_vanished_events_are_recorded_and_unchanged_ones_not() {
        let recorded = vec![ev("a", 1, 10), ev("b", 1, 20), ev("gone", 2, 5)];
        // a unchanged; b moved (its revision from changes.rs is 2); new c;
        // gone no longer derived.
        let current = vec![ev("a", 1, 10), ev("b", 2, 15), ev("c", 1, 30)];
        let out = revised(&recorded, current);
        let got: Vec<(&str, u32, bool)> = out
            .iter()
            .map(|e| (e.event_id.as_str(), e.revision, e.withdrawn))
            .collect();
        assert_eq!(
            got,
            vec![("gone", 3, true), ("b", 2, false), ("c", 1, false)]
        );
        // Once recorded, nothing more to do; a withdrawn event stays so.
        let mut all: Vec<ChangeEvent> = recorded.clone();
        all.retain(|e| e.event_id == "a");
        all.extend(out);
        let current = vec![ev("a", 1, 10), ev("b", 2, 15), ev("c", 1, 30)];
        assert!(revised(&all, current).is_empty());
    }

    #[test]
    fn deliveries_follow_the_filters_and_carry_the_idempotency_key() {
        let hook = |id: &str, countries: &[&str], changes: &[&str]| WebhookRecord {
            id: id.into(),
            countries: countries.iter().map(|c| c.to_string()).collect(),
            changes: changes.iter().map(|c| c.to_string()).collect(),
            ..Default::default()
        };
        let hooks = vec![
            hook("all", &[], &[]),
            hook("cn", &["CN"], &[]),
            hook("ir", &["IR"], &[]),
            hook("up", &[], &["unblocked"]),
        ];
        let e = ev("e1", 2, 7);
        let d = deliveries_for(&hooks, &e, 1);
        let to: Vec<&str> = d.iter().map(|d| d.webhook.as_str()).collect();
        assert_eq!(to, vec!["all", "cn"]);
        assert!(d.iter().all(|d| d.key == "e1.2"));
        let v: serde_json::Value = serde_json::from_str(&d[0].body).unwrap();
        assert_eq!(v["type"], "change.revised");
        assert_eq!(v["id"], "e1.2");
        assert_eq!(v["event"]["event_id"], "e1");
        let w = ChangeEvent {
            withdrawn: true,
            ..ev("e1", 3, 7)
        };
        let v: serde_json::Value =
            serde_json::from_str(&deliveries_for(&hooks, &w, 1)[0].body).unwrap();
        assert_eq!(v["type"], "change.withdrawn");
    }
}
