//! `/api/v1/` reads: agents, campaigns, results (cursor-paginated and
//! streamed as a chunked body), verdicts, the result sink's lag.

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use tokio_stream::wrappers::ReceiverStream;

use super::params::{encode_cursor, Params, RawQuery};
use super::views::{self, AgentList, CampaignDetail, CampaignList, VerdictList};
use super::{blocking, App, ErrorBody};
use crate::errors::ServiceError;
use crate::query::{
    page_from, scan_page, Emit, PageFrom, ResultFilter, VerdictFilter, DEFAULT_LIMIT, MAX_LIMIT,
    RESULT_FILTERS, VERDICT_FILTERS,
};
use crate::store::Store;

/// Bytes buffered before a chunk of the page is sent.
const CHUNK: usize = 64 << 10;

/// A read without parameters: `read` on the store's thread, as JSON.
async fn plain<T: serde::Serialize + Send + 'static>(
    app: App,
    q: RawQuery,
    read: impl FnOnce(&crate::state::Shared) -> Result<T, ServiceError> + Send + 'static,
) -> Result<Json<T>, ServiceError> {
    Params::parse(q, &[])?;
    let shared = app.shared.clone();
    blocking(move || read(&shared).map(Json)).await
}

// ------------------------------------------------------------------ agents

/// Every enrolled agent, with labels, last seen, version and whether it is
/// connected now. No network addresses.
#[utoipa::path(get, path = "/api/v1/agents", tag = "fleet",
    responses((status = 200, body = AgentList)))]
pub(crate) async fn agents(
    State(app): State<App>,
    q: RawQuery,
) -> Result<Json<AgentList>, ServiceError> {
    plain(app, q, |s| {
        Ok(AgentList {
            agents: crate::query::agents(s)?,
        })
    })
    .await
}

// ------------------------------------------------------------------ campaigns

/// Every campaign with its progress (runs done of runs total).
#[utoipa::path(get, path = "/api/v1/campaigns", tag = "campaigns",
    responses((status = 200, body = CampaignList)))]
pub(crate) async fn campaigns(
    State(app): State<App>,
    q: RawQuery,
) -> Result<Json<CampaignList>, ServiceError> {
    plain(app, q, |s| {
        Ok(CampaignList {
            campaigns: crate::query::campaigns(s)?,
        })
    })
    .await
}

/// One campaign with its runs: per-group task progress, failures, skipped
/// agents.
#[utoipa::path(get, path = "/api/v1/campaigns/{id}", tag = "campaigns",
    params(("id" = String, Path, description = "campaign id (UUID)")),
    responses((status = 200, body = CampaignDetail),
        (status = 404, body = ErrorBody, description = "no such campaign")))]
pub(crate) async fn campaign(
    State(app): State<App>,
    Path(id): Path<String>,
    q: RawQuery,
) -> Result<Json<CampaignDetail>, ServiceError> {
    plain(app, q, move |s| {
        Ok(views::campaign_detail(crate::query::campaign(s, &id)?))
    })
    .await
}

// ------------------------------------------------------------------ results

/// Stored results, oldest id first, one page at a time. The body is
/// streamed in chunks as the store is read; pass `next_cursor` back as
/// `cursor` for the next page. With `after_seq`, in the order they were
/// stored instead (commit sequence): pass `last_seq` back as `after_seq`
/// to sync incrementally; a result delivered late with an old id is not
/// missed.
#[utoipa::path(get, path = "/api/v1/results", tag = "results",
    params(
        ("campaign" = Option<String>, Query, description = "campaign id"),
        ("agent" = Option<String>, Query, description = "agent id"),
        ("target" = Option<String>, Query, description = "target key, as in results and verdicts (`tcp 192.0.2.1:443`)"),
        ("country" = Option<String>, Query, description = "ISO 3166-1 alpha-2, from the result's shared labels"),
        ("asn" = Option<u32>, Query, description = "AS number, from the result's shared labels"),
        ("kind" = Option<String>, Query, description = "probe kind"),
        ("failure" = Option<String>, Query, description = "a failure string (`connection_reset`), `any` or `none`"),
        ("since" = Option<String>, Query, description = "measurement start at or after: RFC 3339, a date or Unix microseconds; not later than until"),
        ("until" = Option<String>, Query, description = "measurement start at or before"),
        ("limit" = Option<u32>, Query, description = "results per page (default 100)"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"),
        ("after_seq" = Option<u64>, Query, description = "results stored after this commit sequence number, in commit order (`last_seq` of the previous page; 0: from the first); not together with cursor"),
    ),
    responses((status = 200, body = views::ResultPage)))]
pub(crate) async fn results(State(app): State<App>, q: RawQuery) -> Result<Response, ServiceError> {
    let mut known = RESULT_FILTERS.to_vec();
    known.extend(["limit", "cursor", "after_seq"]);
    let p = Params::parse(q, &known)?;
    let filter = ResultFilter::parse(&p)?;
    let limit = p.limit("limit", DEFAULT_LIMIT, MAX_LIMIT)?;
    let after = page_from(p.get("cursor"), p.u64("after_seq")?)?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, Infallible>>(8);
    let store = app.shared.store.clone();
    tokio::task::spawn_blocking(move || stream_page(&store, &filter, after, limit, &tx));
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(ReceiverStream::new(rx)),
    )
        .into_response())
}

type ChunkTx = tokio::sync::mpsc::Sender<Result<Bytes, Infallible>>;

/// Writes one page as JSON to `tx`, chunk by chunk. Returns early when the
/// client has gone.
fn stream_page(store: &Store, filter: &ResultFilter, after: PageFrom, limit: usize, tx: &ChunkTx) {
    let mut buf: Vec<u8> = Vec::with_capacity(CHUNK + 4096);
    buf.extend_from_slice(b"{\"results\":[");
    let mut emitted = 0usize;
    let end = scan_page(store, filter, after, limit, |d| {
        if emitted > 0 {
            buf.push(b',');
        }
        if serde_json::to_writer(&mut buf, &d.view()).is_err() {
            return Emit::Failed("a result could not be written".into());
        }
        emitted += 1;
        if buf.len() >= CHUNK {
            let chunk = Bytes::from(std::mem::take(&mut buf));
            if tx.blocking_send(Ok(chunk)).is_err() {
                return Emit::Gone;
            }
        }
        Emit::More
    });
    let Some(end) = end else {
        return;
    };
    let (next, error) = (end.next, end.error);
    buf.extend_from_slice(b"],\"next_cursor\":");
    let tail = serde_json::json!(next.map(|n| encode_cursor(&n)));
    buf.extend_from_slice(tail.to_string().as_bytes());
    if let Some(n) = end.last_seq {
        buf.extend_from_slice(format!(",\"last_seq\":{n}").as_bytes());
    }
    if let Some(e) = error {
        buf.extend_from_slice(b",\"error\":");
        buf.extend_from_slice(serde_json::Value::String(e).to_string().as_bytes());
    }
    buf.push(b'}');
    let _ = tx.blocking_send(Ok(Bytes::from(buf)));
}

// ------------------------------------------------------------------ verdicts

/// Verdicts (inside results judged against control results of the same
/// run and target).
#[utoipa::path(get, path = "/api/v1/verdicts", tag = "verdicts",
    params(VerdictFilter),
    responses((status = 200, body = VerdictList),
        (status = 404, body = ErrorBody, description = "no such campaign")))]
pub(crate) async fn verdicts(
    State(app): State<App>,
    q: RawQuery,
) -> Result<Json<VerdictList>, ServiceError> {
    let p = Params::parse(q, VERDICT_FILTERS)?;
    let f = VerdictFilter::parse(&p)?;
    let shared = app.shared.clone();
    blocking(move || {
        Ok(Json(VerdictList {
            verdicts: f.collect(&shared)?,
        }))
    })
    .await
}

// ------------------------------------------------------------------ changes

/// A page of change events.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct ChangeList {
    pub changes: Vec<vantage_proto::v1::ChangeEvent>,
    /// Pass as `cursor` for the next page; null when there is none.
    pub next_cursor: Option<String>,
}

/// Change events, the "since when": a target, in one country and AS, went
/// from one state to another and held it for the campaign's
/// `change_after_runs` runs. Oldest onset first.
#[utoipa::path(get, path = "/api/v1/changes", tag = "verdicts",
    params(crate::query::ChangeFilter),
    responses((status = 200, body = ChangeList),
        (status = 404, body = ErrorBody, description = "no such campaign")))]
pub(crate) async fn changes(
    State(app): State<App>,
    q: RawQuery,
) -> Result<Json<ChangeList>, ServiceError> {
    let p = Params::parse(q, crate::query::CHANGE_FILTERS)?;
    let f = crate::query::ChangeFilter::parse(&p)?;
    let shared = app.shared.clone();
    blocking(move || {
        let (changes, next_cursor) = f.page(&shared)?;
        Ok(Json(ChangeList {
            changes,
            next_cursor,
        }))
    })
    .await
}

// ------------------------------------------------------------------ sink

/// The result sink, as the dashboard's badge shows it.
#[derive(serde::Serialize, utoipa::ToSchema, Default)]
pub(crate) struct SinkView {
    /// Whether a sink (`[sink.clickhouse]`) is configured; when not, every
    /// other field is zero or empty.
    pub configured: bool,
    /// The sink's name (`clickhouse`).
    pub name: String,
    /// The id written into every row's `coordinator` column.
    pub coordinator_id: String,
    /// Confirmed up to this commit sequence number.
    pub cursor: u64,
    /// The store's last commit sequence number.
    pub last_seq: u64,
    /// Stored results not confirmed yet.
    pub lag_results: u64,
    /// Seconds since the oldest of them was stored (0 when none waits).
    pub lag_seconds: f64,
    /// Rows confirmed since the coordinator started.
    pub rows: u64,
    /// Failed attempts (connect, insert, setup) since the coordinator
    /// started.
    pub errors: u64,
    /// The last failure; empty once an attempt succeeded after it.
    pub last_error: String,
}

/// The result sink: how far it is behind the store and its last error.
#[utoipa::path(get, path = "/api/v1/sink", tag = "operations",
    responses((status = 200, body = SinkView)))]
pub(crate) async fn sink(
    State(app): State<App>,
    q: RawQuery,
) -> Result<Json<SinkView>, ServiceError> {
    plain(app, q, |s| {
        let Some(status) = &s.sink else {
            return Ok(SinkView::default());
        };
        let lag = crate::sink::lag(&s.store, status.name)?;
        Ok(SinkView {
            configured: true,
            name: status.name.into(),
            coordinator_id: status.coordinator_id.clone(),
            cursor: lag.cursor,
            last_seq: lag.last_seq,
            lag_results: lag.results,
            lag_seconds: lag.seconds,
            rows: status.rows.load(std::sync::atomic::Ordering::Relaxed),
            errors: status.errors.load(std::sync::atomic::Ordering::Relaxed),
            last_error: status.last_error(),
        })
    })
    .await
}
