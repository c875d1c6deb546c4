//! `/api/v1/stream`: server-sent events of new results (`event: result`,
//! `id:` the result id) and of verdicts they create or change
//! (`event: verdict`, no id).
//!
//! One feed task per server polls the store every 500 ms for results after
//! the last id it saw and broadcasts them; clients subscribe to it. A client
//! that sends `Last-Event-ID` (or `?last_event_id=`) first gets every stored
//! result after that id, then the live events; ids on one connection only
//! ever increase, so nothing is sent twice. A client too slow for the
//! broadcast buffer catches up from the store the same way.
//!
//! Known limit: the stream follows result ids (UUIDv7, chosen by agents when
//! they measure), so a result delivered late from an agent's outbox with an
//! id older than ones already streamed is stored and listed by `/results`
//! but not streamed.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use tokio::sync::broadcast;
use tokio_stream::wrappers::ReceiverStream;

use super::params::{Params, RawQuery};
use super::views::{self, VerdictView};
use super::{App, HttpError};
use crate::state::Shared;

/// How often the feed looks for new results.
pub(crate) const POLL: Duration = Duration::from_millis(500);
/// Results read per poll (the rest wait for the next one).
const POLL_BATCH: usize = 5_000;
/// Results replayed per store read when a client resumes.
const REPLAY_BATCH: usize = 500;
/// Events buffered per subscriber before it must catch up from the store.
const BUFFER: usize = 4_096;

/// One event, serialised once for every subscriber.
#[derive(Debug)]
pub(crate) struct FeedEvent {
    /// Result id for `result` events.
    pub(crate) id: Option<[u8; 16]>,
    pub(crate) kind: &'static str,
    pub(crate) data: String,
}

impl FeedEvent {
    fn sse(&self) -> SseEvent {
        let e = SseEvent::default().event(self.kind).data(&self.data);
        match &self.id {
            Some(id) => e.id(uuid::Uuid::from_bytes(*id).to_string()),
            None => e,
        }
    }
}

/// The shared live feed.
pub(crate) struct Feed {
    tx: broadcast::Sender<Arc<FeedEvent>>,
}

fn result_event(id: [u8; 16], bytes: &[u8]) -> Option<(FeedEvent, String)> {
    let d = views::decode(bytes)?;
    let campaign = d.m.campaign_id.clone();
    let data = serde_json::to_string(&d.view()).ok()?;
    Some((
        FeedEvent {
            id: Some(id),
            kind: "result",
            data,
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
    known: &mut HashMap<String, HashMap<VerdictKey, VerdictView>>,
    new_ids: &HashSet<String>,
) -> Vec<VerdictView> {
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
            let mut known: HashMap<String, HashMap<VerdictKey, VerdictView>> = HashMap::new();
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
                    Ok(Err(e)) => tracing::warn!("http feed: {e}"),
                    Err(e) => tracing::warn!("http feed: {e}"),
                }
            }
        });
        feed
    }
}

type PollOut = (
    Vec<FeedEvent>,
    Option<[u8; 16]>,
    HashMap<String, HashMap<VerdictKey, VerdictView>>,
);

/// One poll: new results after `last` and the verdicts they changed. With
/// no listener it only moves `last` to the newest id.
fn poll(
    shared: &Shared,
    last: Option<[u8; 16]>,
    listening: bool,
    mut known: HashMap<String, HashMap<VerdictKey, VerdictView>>,
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
                });
            }
        }
    }
    Ok((events, new_last.or(last), known))
}

/// Live results and verdicts as server-sent events, resumable with
/// `Last-Event-ID`.
#[utoipa::path(get, path = "/api/v1/stream", tag = "results",
    params(
        ("Last-Event-ID" = Option<String>, Header, description = "resume after this result id"),
        ("last_event_id" = Option<String>, Query, description = "the same, for clients that cannot set headers"),
    ),
    responses((status = 200, description = "text/event-stream: `result` events (id = result id, data = a result as in /results) and `verdict` events (data = a verdict as in /verdicts)", content_type = "text/event-stream")))]
pub(crate) async fn stream(
    State(app): State<App>,
    headers: HeaderMap,
    q: RawQuery,
) -> Result<Response, HttpError> {
    let p = Params::parse(q, &["last_event_id"])?;
    let resume = headers
        .get("last-event-id")
        .map(|v| v.to_str().unwrap_or("\u{0}").to_string())
        .or(p.string("last_event_id"))
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            crate::store::uuid_key(s.trim()).ok_or_else(|| {
                HttpError::bad(format!(
                    "Last-Event-ID must be a result id (a UUID), not {s:?}"
                ))
            })
        })
        .transpose()?;
    let rx = app.feed.tx.subscribe();
    let (out, out_rx) = tokio::sync::mpsc::channel::<Result<SseEvent, Infallible>>(256);
    tokio::spawn(pump(app.shared.clone(), rx, out, resume));
    Ok(Sse::new(ReceiverStream::new(out_rx))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

/// Sends stored results after `*last` until caught up; false when the
/// client has gone.
async fn replay(
    shared: &Shared,
    last: &mut Option<[u8; 16]>,
    out: &tokio::sync::mpsc::Sender<Result<SseEvent, Infallible>>,
) -> bool {
    loop {
        let s = shared.clone();
        let after = *last;
        let page = tokio::task::spawn_blocking(move || read_after(&s, after, REPLAY_BATCH)).await;
        let (events, page_last, scanned) = match page {
            Ok(Ok(x)) => x,
            Ok(Err(e)) => {
                tracing::warn!("http stream replay: {e}");
                return true;
            }
            Err(_) => return true,
        };
        for (e, _) in &events {
            if out.send(Ok(e.sse())).await.is_err() {
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
    out: tokio::sync::mpsc::Sender<Result<SseEvent, Infallible>>,
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
                if out.send(Ok(e.sse())).await.is_err() {
                    return;
                }
            }
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::info!(
                    "http stream client lagged by {n} events; catching up from the store"
                );
                if last.is_some() && !replay(&shared, &mut last, &out).await {
                    return;
                }
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}
