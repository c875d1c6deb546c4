//! The live feed of new results, of the verdicts they create or change
//! and of the change events (`crate::changes`) those make, behind `/api/v1/stream` (server-sent events) and gRPC
//! `QueryService.Watch`.
//!
//! One feed task per server polls the store every 500 ms for results
//! after the last commit sequence number it saw (`store/seq.rs`) and
//! broadcasts them; subscribers get them through [`Feed::subscribe`]. A
//! subscriber that resumes after a number first gets every stored result
//! after it, then the live events; numbers on one subscription only ever
//! increase, so nothing is sent twice. A subscriber too slow for the
//! broadcast buffer catches up from the store the same way.
//!
//! The feed follows the order results were stored in, not their ids: a
//! result delivered late from an agent's outbox, with an id older than
//! results already streamed, is streamed when it is stored (it used to be
//! listed by the results queries but never streamed).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc};

use super::views::{self, Decoded, VerdictEntry};
use crate::state::Shared;
use crate::store::CampaignRecord;

/// How often the feed looks for new results.
pub(crate) const POLL: Duration = Duration::from_millis(500);
/// Results read per poll (the rest wait for the next one).
const POLL_BATCH: usize = 5_000;
/// Results replayed per store read when a client resumes.
const REPLAY_BATCH: usize = 500;
/// Events buffered per subscriber before it must catch up from the store.
const BUFFER: usize = 4_096;

/// One event, serialised once (as JSON, for server-sent events) for every
/// subscriber, with the view it was made from (for gRPC `Watch`).
pub(crate) struct FeedEvent {
    /// Commit sequence number for `result` events: the event id a client
    /// resumes after.
    pub(crate) seq: Option<u64>,
    pub(crate) kind: &'static str,
    pub(crate) data: String,
    pub(crate) payload: Payload,
}

/// What an event carries.
pub(crate) enum Payload {
    Result(Box<Decoded>),
    Verdict(Box<VerdictEntry>),
    Change(Box<vantage_proto::v1::ChangeEvent>),
}

/// The shared live feed.
pub(crate) struct Feed {
    tx: broadcast::Sender<Arc<FeedEvent>>,
}

fn result_event(seq: u64, bytes: &[u8]) -> Option<(FeedEvent, String)> {
    let d = views::decode(bytes)?;
    let campaign = d.m.campaign_id.clone();
    let data = serde_json::to_string(&d.clone().view()).ok()?;
    Some((
        FeedEvent {
            seq: Some(seq),
            kind: "result",
            data,
            payload: Payload::Result(Box::new(d)),
        },
        campaign,
    ))
}

/// Up to `n` stored results after sequence number `after` as events (with
/// their result ids), the last number read and how many were read.
type ReadOut = (Vec<(FeedEvent, String, [u8; 16])>, u64, usize);

fn read_after(shared: &Shared, after: u64, n: usize) -> Result<ReadOut, crate::store::StoreError> {
    let mut out = Vec::new();
    let mut last = after;
    let mut scanned = 0;
    for item in shared.store.results_after_seq(after).take(n) {
        let (seq, id, bytes) = item?;
        last = seq;
        scanned += 1;
        if let Some((e, campaign)) = result_event(seq, &bytes) {
            out.push((e, campaign, id));
        }
    }
    Ok((out, last, scanned))
}

/// Where a client resumes (`Last-Event-ID`, `last_event_id`): after a
/// commit sequence number, the `id` of the last result event it got. An
/// empty value starts at the live edge; so does a result id (what event ids
/// were before the sequence existed: a client connected across the upgrade
/// misses what was stored while it was away, and says so in the log).
pub(crate) fn resume_point(value: &str) -> Result<Option<u64>, crate::errors::ServiceError> {
    let v = value.trim();
    if v.is_empty() {
        return Ok(None);
    }
    if let Ok(n) = v.parse::<u64>() {
        return Ok(Some(n));
    }
    if super::fields::uuid(v).is_some() {
        tracing::info!(
            "a client resumed after a result id (before the commit sequence); live from now"
        );
        return Ok(None);
    }
    Err(crate::errors::ServiceError::invalid(format!(
        "last_event_id (Last-Event-ID) must be the id of a result event (a number), not {v:?}"
    )))
}

type VerdictKey = (String, String, String);

/// Verdicts of `campaign` that are new or changed since `known`; on the
/// first look at a campaign only those resting on `new_ids` count as new.
/// With them, the campaign and all its current verdicts (for its change
/// events); `None` when it cannot be read.
fn changed_verdicts(
    shared: &Shared,
    campaign: &str,
    known: &mut HashMap<String, HashMap<VerdictKey, VerdictEntry>>,
    new_ids: &HashSet<String>,
) -> Option<(Vec<VerdictEntry>, CampaignRecord, Vec<VerdictEntry>)> {
    let rec = shared.store.campaign(campaign).ok()??;
    let rows = views::campaign_verdicts(shared, &rec).ok()?;
    let first = !known.contains_key(campaign);
    let seen = known.entry(campaign.to_string()).or_default();
    let mut out = Vec::new();
    for v in &rows {
        let key = (v.run_id.clone(), v.target.clone(), v.agent_id.clone());
        let changed = match seen.get(&key) {
            Some(old) => old != v,
            None => !first || v.evidence.iter().any(|e| new_ids.contains(e)),
        };
        if changed {
            out.push(v.clone());
        }
        seen.insert(key, v.clone());
    }
    Some((out, rec, rows))
}

impl Feed {
    /// A subscriber: with `resume`, every stored result after that
    /// sequence number first, then the live events, numbers only
    /// increasing. The pump stops when the receiver is dropped.
    pub(crate) fn subscribe(
        &self,
        shared: Shared,
        resume: Option<u64>,
    ) -> mpsc::Receiver<Arc<FeedEvent>> {
        let rx = self.tx.subscribe();
        let (out, out_rx) = mpsc::channel(256);
        tokio::spawn(pump(shared, rx, out, resume));
        out_rx
    }

    /// Starts the poller.
    pub(crate) fn start(shared: Shared) -> Arc<Feed> {
        let (tx, _) = broadcast::channel(BUFFER);
        let feed = Arc::new(Feed { tx: tx.clone() });
        tokio::spawn(async move {
            let s = shared.clone();
            let mut last = tokio::task::spawn_blocking(move || s.store.last_seq())
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or(0);
            let mut verdicts = Verdicts::default();
            let mut tick = tokio::time::interval(POLL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let s = shared.clone();
                let listening = tx.receiver_count() > 0;
                let v = std::mem::take(&mut verdicts);
                let step = tokio::task::spawn_blocking(move || poll(&s, last, listening, v)).await;
                match step {
                    Ok(Ok((events, new_last, v))) => {
                        verdicts = v;
                        last = new_last;
                        for e in events {
                            let _ = tx.send(Arc::new(e));
                        }
                    }
                    Ok(Err(e)) => tracing::warn!("read feed: {e}"),
                    Err(e) => tracing::warn!("read feed: {e}"),
                }
            }
        });
        feed
    }
}

/// What the poller knows of verdicts between polls.
#[derive(Default)]
struct Verdicts {
    /// The verdicts last sent (or seen), per campaign.
    known: HashMap<String, HashMap<VerdictKey, VerdictEntry>>,
    /// Campaigns that had new results in the previous poll: looked at once
    /// more. A result is readable a moment before ingest marks its run's
    /// verdicts for recomputation, so a poll landing in that moment saw
    /// the result but the old verdicts; without this second look the
    /// verdicts it changed were never sent (a CI run caught it).
    recheck: Vec<String>,
    /// The change events already seen, per campaign (their order keys).
    changes: HashMap<String, HashSet<[u8; 16]>>,
}

/// A verdict or change event (no sequence number): its JSON once, and
/// the view it was made from.
fn unnumbered<T: serde::Serialize + Clone>(
    kind: &'static str,
    v: &T,
    payload: impl FnOnce(T) -> Payload,
) -> Option<FeedEvent> {
    let data = serde_json::to_string(v).ok()?;
    Some(FeedEvent {
        seq: None,
        kind,
        data,
        payload: payload(v.clone()),
    })
}

/// Change events of `campaign` not seen before; on the first look at a
/// campaign only those resting on results new in this poll (the rest
/// were there before the listener came).
fn new_changes(
    shared: &Shared,
    rec: &CampaignRecord,
    verdicts: &[VerdictEntry],
    seen: &mut HashMap<String, HashSet<[u8; 16]>>,
    new_ids: &HashSet<String>,
) -> Vec<vantage_proto::v1::ChangeEvent> {
    let events = crate::changes::from_verdicts(shared, rec, verdicts);
    let first = !seen.contains_key(&rec.campaign_id);
    let known = seen.entry(rec.campaign_id.clone()).or_default();
    events
        .into_iter()
        .filter(|e| {
            let fresh = known.insert(crate::changes::order_key(e));
            fresh && (!first || e.evidence.iter().any(|id| new_ids.contains(id)))
        })
        .collect()
}

type PollOut = (Vec<FeedEvent>, u64, Verdicts);

/// One poll: new results after sequence number `last` and the verdicts
/// they changed. With no listener it only moves `last` to the newest.
fn poll(
    shared: &Shared,
    last: u64,
    listening: bool,
    mut state: Verdicts,
) -> Result<PollOut, crate::store::StoreError> {
    if !listening {
        state = Verdicts::default();
        let newest = shared.store.last_seq()?.max(last);
        return Ok((Vec::new(), newest, state));
    }
    let (results, new_last, _) = read_after(shared, last, POLL_BATCH)?;
    let mut fresh: Vec<String> = Vec::new();
    let mut new_ids = HashSet::new();
    let mut events = Vec::with_capacity(results.len());
    for (e, campaign, id) in results {
        new_ids.insert(uuid::Uuid::from_bytes(id).to_string());
        if !campaign.is_empty() && !fresh.contains(&campaign) {
            fresh.push(campaign);
        }
        events.push(e);
    }
    let mut campaigns = std::mem::replace(&mut state.recheck, fresh.clone());
    campaigns.retain(|c| !fresh.contains(c));
    campaigns.extend(fresh);
    for c in &campaigns {
        let Some((changed, rec, all)) = changed_verdicts(shared, c, &mut state.known, &new_ids)
        else {
            continue;
        };
        if changed.is_empty() {
            continue;
        }
        for v in changed {
            events.extend(unnumbered("verdict", &v, |v| Payload::Verdict(Box::new(v))));
        }
        for e in new_changes(shared, &rec, &all, &mut state.changes, &new_ids) {
            events.extend(unnumbered("change", &e, |e| Payload::Change(Box::new(e))));
        }
    }
    Ok((events, new_last.max(last), state))
}

/// Sends stored results after sequence number `*last` until caught up;
/// false when the client has gone.
async fn replay(shared: &Shared, last: &mut u64, out: &mpsc::Sender<Arc<FeedEvent>>) -> bool {
    loop {
        let s = shared.clone();
        let after = *last;
        let page = tokio::task::spawn_blocking(move || read_after(&s, after, REPLAY_BATCH)).await;
        let (events, page_last, scanned) = match page {
            Ok(Ok(x)) => x,
            Ok(Err(e)) => {
                tracing::warn!("read feed replay: {e}");
                return true;
            }
            Err(_) => return true,
        };
        for (e, _, _) in events {
            if out.send(Arc::new(e)).await.is_err() {
                return false;
            }
        }
        *last = page_last.max(*last);
        if scanned < REPLAY_BATCH {
            return true;
        }
    }
}

/// One client: optional replay, then live events with increasing
/// sequence numbers. Without `resume` it starts at the live edge: the
/// first live event it is sent tells where it is.
async fn pump(
    shared: Shared,
    mut rx: broadcast::Receiver<Arc<FeedEvent>>,
    out: mpsc::Sender<Arc<FeedEvent>>,
    resume: Option<u64>,
) {
    let mut last = resume;
    if let Some(after) = resume {
        let mut at = after;
        if !replay(&shared, &mut at, &out).await {
            return;
        }
        last = Some(at);
    }
    loop {
        let next = tokio::select! {
            r = rx.recv() => r,
            _ = out.closed() => return,
        };
        match next {
            Ok(e) => {
                if let Some(seq) = e.seq {
                    if last.is_some_and(|l| seq <= l) {
                        continue;
                    }
                    last = Some(seq);
                }
                if out.send(e).await.is_err() {
                    return;
                }
            }
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::info!(
                    "read feed subscriber lagged by {n} events; catching up from the store"
                );
                if let Some(mut at) = last {
                    if !replay(&shared, &mut at, &out).await {
                        return;
                    }
                    last = Some(at);
                }
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::PendingResult;

    const CAMPAIGN: &str = "0190a8b2-0000-7000-8000-0000000000f1";

    fn stored(id: u8, agent: &str) -> PendingResult {
        let id = format!("0190a8b2-0000-7000-8000-0000000001{id:02x}");
        let mut m = crate::verdicts::tests::tcp(&id, agent, "");
        m.campaign_id = CAMPAIGN.into();
        crate::verdicts::tests::pending(&m)
    }

    /// A poll can read results a moment before ingest marks their run's
    /// verdicts for recomputation; the verdicts they change are still sent,
    /// on the next poll.
    #[tokio::test]
    async fn verdicts_marked_after_their_results_were_read_are_still_sent() {
        let d = tempfile::tempdir().unwrap();
        let s = crate::server::test_state(d.path());
        crate::verdicts::tests::put_tcp_campaign(&s, CAMPAIGN, &["run"], Default::default());
        let (_, last, state) = poll(&s, 0, true, Verdicts::default()).unwrap();

        // Stored, not yet marked: the poll sends the results only.
        s.commit
            .commit(vec![stored(1, "in"), stored(2, "ctl")])
            .await
            .unwrap();
        let (events, last, state) = poll(&s, last, true, state).unwrap();
        let kinds: Vec<&str> = events.iter().map(|e| e.kind).collect();
        assert_eq!(kinds, ["result", "result"]);

        // Marked now; no new result, yet the verdict goes out, once.
        s.mark_runs_dirty([(CAMPAIGN.to_string(), "run".to_string())]);
        let (events, last, state) = poll(&s, last, true, state).unwrap();
        let verdicts: Vec<&VerdictEntry> = events
            .iter()
            .filter_map(|e| match &e.payload {
                Payload::Verdict(v) => Some(&**v),
                Payload::Result(_) | Payload::Change(_) => None,
            })
            .collect();
        assert_eq!(verdicts.len(), 1, "{}", events.len());
        assert_eq!(verdicts[0].campaign_id, CAMPAIGN);
        let (events, _, _) = poll(&s, last, true, state).unwrap();
        assert!(events.is_empty(), "{} events", events.len());
    }
}
