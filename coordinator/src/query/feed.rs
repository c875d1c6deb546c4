//! The live feed of new results and of the verdicts they create or
//! change, behind `/api/v1/stream` (server-sent events) and gRPC
//! `QueryService.Watch`.
//!
//! One feed task per server polls the store every 500 ms for results after
//! the last id it saw and broadcasts them; subscribers get them through
//! [`Feed::subscribe`]. A subscriber that resumes after an id first gets
//! every stored result after that id, then the live events; ids on one
//! subscription only ever increase, so nothing is sent twice. A subscriber
//! too slow for the broadcast buffer catches up from the store the same way.
//!
//! Known limit: the feed follows result ids (UUIDv7, chosen by agents when
//! they measure), so a result delivered late from an agent's outbox with an
//! id older than ones already streamed is stored and listed by the results
//! queries but not streamed.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc};

use super::views::{self, Decoded, VerdictEntry};
use crate::state::Shared;

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
    /// Result id for `result` events.
    pub(crate) id: Option<[u8; 16]>,
    pub(crate) kind: &'static str,
    pub(crate) data: String,
    pub(crate) payload: Payload,
}

/// What an event carries.
pub(crate) enum Payload {
    Result(Box<Decoded>),
    Verdict(Box<VerdictEntry>),
}

/// The shared live feed.
pub(crate) struct Feed {
    tx: broadcast::Sender<Arc<FeedEvent>>,
}

fn result_event(id: [u8; 16], bytes: &[u8]) -> Option<(FeedEvent, String)> {
    let d = views::decode(bytes)?;
    let campaign = d.m.campaign_id.clone();
    let data = serde_json::to_string(&d.clone().view()).ok()?;
    Some((
        FeedEvent {
            id: Some(id),
            kind: "result",
            data,
            payload: Payload::Result(Box::new(d)),
        },
        campaign,
    ))
}

/// Up to `n` stored results after `after` as events, the last id read and
/// how many were read.
type ReadOut = (Vec<(FeedEvent, String)>, Option<[u8; 16]>, usize);

fn read_after(
    shared: &Shared,
    after: Option<[u8; 16]>,
    n: usize,
) -> Result<ReadOut, crate::store::StoreError> {
    let mut out = Vec::new();
    let mut last = None;
    let mut scanned = 0;
    for item in shared.store.results_after(None, after).take(n) {
        let (id, bytes) = item?;
        last = Some(id);
        scanned += 1;
        if let Some(e) = result_event(id, &bytes) {
            out.push(e);
        }
    }
    Ok((out, last, scanned))
}

type VerdictKey = (String, String, String);

/// Verdicts of `campaign` that are new or changed since `known`; on the
/// first look at a campaign only those resting on `new_ids` count as new.
fn changed_verdicts(
    shared: &Shared,
    campaign: &str,
    known: &mut HashMap<String, HashMap<VerdictKey, VerdictEntry>>,
    new_ids: &HashSet<String>,
) -> Vec<VerdictEntry> {
    let rec = match shared.store.campaign(campaign) {
        Ok(Some(r)) => r,
        _ => return Vec::new(),
    };
    let Ok(rows) = views::campaign_verdicts(shared, &rec) else {
        return Vec::new();
    };
    let first = !known.contains_key(campaign);
    let seen = known.entry(campaign.to_string()).or_default();
    let mut out = Vec::new();
    for v in rows {
        let key = (v.run_id.clone(), v.target.clone(), v.agent_id.clone());
        let changed = match seen.get(&key) {
            Some(old) => old != &v,
            None => !first || v.evidence.iter().any(|e| new_ids.contains(e)),
        };
        if changed {
            out.push(v.clone());
        }
        seen.insert(key, v);
    }
    out
}

impl Feed {
    /// A subscriber: with `resume`, every stored result after that id
    /// first, then the live events, ids only increasing. The pump stops
    /// when the receiver is dropped.
    pub(crate) fn subscribe(
        &self,
        shared: Shared,
        resume: Option<[u8; 16]>,
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
            let mut last = tokio::task::spawn_blocking(move || s.store.last_result_id())
                .await
                .ok()
                .and_then(Result::ok)
                .flatten();
            let mut known: HashMap<String, HashMap<VerdictKey, VerdictEntry>> = HashMap::new();
            let mut tick = tokio::time::interval(POLL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let s = shared.clone();
                let listening = tx.receiver_count() > 0;
                let k = std::mem::take(&mut known);
                let step = tokio::task::spawn_blocking(move || poll(&s, last, listening, k)).await;
                match step {
                    Ok(Ok((events, new_last, k))) => {
                        known = k;
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

type PollOut = (
    Vec<FeedEvent>,
    Option<[u8; 16]>,
    HashMap<String, HashMap<VerdictKey, VerdictEntry>>,
);

/// One poll: new results after `last` and the verdicts they changed. With
/// no listener it only moves `last` to the newest id.
fn poll(
    shared: &Shared,
    last: Option<[u8; 16]>,
    listening: bool,
    mut known: HashMap<String, HashMap<VerdictKey, VerdictEntry>>,
) -> Result<PollOut, crate::store::StoreError> {
    if !listening {
        known.clear();
        let newest = shared.store.last_result_id()?.or(last);
        return Ok((Vec::new(), newest, known));
    }
    let (results, new_last, _) = read_after(shared, last, POLL_BATCH)?;
    let mut campaigns: Vec<String> = Vec::new();
    let mut new_ids = HashSet::new();
    let mut events = Vec::with_capacity(results.len());
    for (e, campaign) in results {
        if let Some(id) = e.id {
            new_ids.insert(uuid::Uuid::from_bytes(id).to_string());
        }
        if !campaign.is_empty() && !campaigns.contains(&campaign) {
            campaigns.push(campaign);
        }
        events.push(e);
    }
    for c in &campaigns {
        for v in changed_verdicts(shared, c, &mut known, &new_ids) {
            if let Ok(data) = serde_json::to_string(&v) {
                events.push(FeedEvent {
                    id: None,
                    kind: "verdict",
                    data,
                    payload: Payload::Verdict(Box::new(v)),
                });
            }
        }
    }
    Ok((events, new_last.or(last), known))
}

/// Sends stored results after `*last` until caught up; false when the
/// client has gone.
async fn replay(
    shared: &Shared,
    last: &mut Option<[u8; 16]>,
    out: &mpsc::Sender<Arc<FeedEvent>>,
) -> bool {
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
        for (e, _) in events {
            if out.send(Arc::new(e)).await.is_err() {
                return false;
            }
        }
        if page_last.is_some() {
            *last = page_last;
        }
        if scanned < REPLAY_BATCH {
            return true;
        }
    }
}

/// One client: optional replay, then live events with increasing ids.
async fn pump(
    shared: Shared,
    mut rx: broadcast::Receiver<Arc<FeedEvent>>,
    out: mpsc::Sender<Arc<FeedEvent>>,
    resume: Option<[u8; 16]>,
) {
    let mut last = resume;
    if resume.is_some() && !replay(&shared, &mut last, &out).await {
        return;
    }
    loop {
        let next = tokio::select! {
            r = rx.recv() => r,
            _ = out.closed() => return,
        };
        match next {
            Ok(e) => {
                if let Some(id) = e.id {
                    if last.is_some_and(|l| id <= l) {
                        continue;
                    }
                    last = Some(id);
                }
                if out.send(e).await.is_err() {
                    return;
                }
            }
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::info!(
                    "read feed subscriber lagged by {n} events; catching up from the store"
                );
                if last.is_some() && !replay(&shared, &mut last, &out).await {
                    return;
                }
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}
