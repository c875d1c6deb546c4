//! `/api/v1/stream`: server-sent events of new results (`event: result`,
//! `id:` the result's commit sequence number) and of verdicts they create
//! or change (`event: verdict`, no id) and the change events those make
//! (`event: change`, no id), from the shared live feed
//! (`crate::query::feed`). A client that sends `Last-Event-ID` (or
//! `?last_event_id=`) first gets every result stored after that event,
//! late deliveries with old ids included, then the live events; nothing is
//! sent twice.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;

use super::params::{Params, RawQuery};
use super::App;
use crate::errors::ServiceError;
use crate::query::feed::FeedEvent;

fn sse(e: &FeedEvent) -> SseEvent {
    let ev = SseEvent::default().event(e.kind).data(&e.data);
    match e.seq {
        Some(seq) => ev.id(seq.to_string()),
        None => ev,
    }
}

/// Live results and verdicts as server-sent events, resumable with
/// `Last-Event-ID`.
#[utoipa::path(get, path = "/api/v1/stream", tag = "results",
    params(
        ("Last-Event-ID" = Option<String>, Header, description = "resume after this event: the `id` of the last result event received (its commit sequence number)"),
        ("last_event_id" = Option<String>, Query, description = "the same, for clients that cannot set headers"),
    ),
    responses((status = 200, description = "text/event-stream: `result` events (id = the result's commit sequence number, data = a result as in /results) `verdict` events (data = a verdict as in /verdicts) and `change` events (data = a change event as in /changes)", content_type = "text/event-stream")))]
pub(crate) async fn stream(
    State(app): State<App>,
    headers: HeaderMap,
    q: RawQuery,
) -> Result<Response, ServiceError> {
    let p = Params::parse(q, &["last_event_id"])?;
    let resume = headers
        .get("last-event-id")
        .map(|v| v.to_str().unwrap_or("\u{0}").to_string())
        .or(p.string("last_event_id"))
        .map(|s| crate::query::feed::resume_point(&s))
        .transpose()?
        .flatten();
    let rx = app.feed.subscribe(app.shared.clone(), resume);
    let events = ReceiverStream::new(rx).map(|e| Ok::<_, Infallible>(sse(&e)));
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}
