//! `/api/v1/` reads: agents, campaigns, results (cursor-paginated and
//! streamed as a chunked body), verdicts.

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use tokio_stream::wrappers::ReceiverStream;

use super::params::{decode_cursor, encode_cursor, Params, RawQuery};
use super::views::{
    self, AgentList, CampaignDetail, CampaignList, Decoded, VerdictList, VerdictView,
};
use super::{blocking, App, HttpError};
use crate::errors::ServiceError;
use crate::state::Shared;
use crate::store::Store;

/// Probe kinds a `kind` filter may name.
pub(crate) const KINDS: &[&str] = vantage_proto::PROBE_KINDS;

/// Verdict statuses.
pub(crate) const STATUSES: &[&str] = &["ok", "blocked", "down", "inconclusive"];

/// Results per page when `limit` is not given, and the most allowed.
pub(crate) const DEFAULT_LIMIT: usize = 100;
pub(crate) const MAX_LIMIT: usize = 10_000;
/// Stored results examined per request at most: a rare filter over a large
/// store answers a short page with a cursor instead of scanning forever.
const MAX_SCAN: usize = 200_000;
/// Bytes buffered before a chunk of the page is sent.
const CHUNK: usize = 64 << 10;

fn country_param(p: &Params) -> Result<Option<String>, HttpError> {
    match p.get("country") {
        None => Ok(None),
        Some(c) if c.len() == 2 && c.bytes().all(|b| b.is_ascii_alphabetic()) => {
            Ok(Some(c.to_ascii_uppercase()))
        }
        Some(c) => Err(HttpError::bad(format!(
            "country must be an ISO 3166-1 alpha-2 code such as CN, not {c:?}"
        ))),
    }
}

fn kind_param(p: &Params) -> Result<Option<String>, HttpError> {
    match p.get("kind") {
        None => Ok(None),
        Some(k) if KINDS.contains(&k) => Ok(Some(k.to_string())),
        Some(k) => Err(HttpError::bad(format!(
            "kind must be one of {}, not {k:?}",
            KINDS.join(", ")
        ))),
    }
}

fn time_range(p: &Params) -> Result<(Option<i64>, Option<i64>), HttpError> {
    let since = p.time_us("since")?;
    let until = p.time_us("until")?;
    if let (Some(s), Some(u)) = (since, until) {
        if s > u {
            return Err(HttpError::bad("since must not be later than until"));
        }
    }
    Ok((since, until))
}

// ------------------------------------------------------------------ agents

/// Every enrolled agent, with labels, last seen, version and whether it is
/// connected now. No network addresses.
#[utoipa::path(get, path = "/api/v1/agents", tag = "fleet",
    responses((status = 200, body = AgentList), (status = 401, description = "missing or unknown read token")))]
pub(crate) async fn agents(
    State(app): State<App>,
    q: RawQuery,
) -> Result<Json<AgentList>, HttpError> {
    Params::parse(q, &[])?;
    let shared = app.shared.clone();
    blocking(move || {
        let agents = shared
            .store
            .agents()?
            .into_iter()
            .map(|a| {
                let on = shared.hub.is_connected(&a.agent_id);
                views::agent_view(a, on)
            })
            .collect();
        Ok(Json(AgentList { agents }))
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
) -> Result<Json<CampaignList>, HttpError> {
    Params::parse(q, &[])?;
    let shared = app.shared.clone();
    blocking(move || {
        let list = crate::campaigns::list(&shared)?;
        Ok(Json(CampaignList {
            campaigns: list
                .campaigns
                .into_iter()
                .map(views::campaign_view)
                .collect(),
        }))
    })
    .await
}

/// One campaign with its runs: per-group task progress, failures, skipped
/// agents.
#[utoipa::path(get, path = "/api/v1/campaigns/{id}", tag = "campaigns",
    params(("id" = String, Path, description = "campaign id (UUID)")),
    responses((status = 200, body = CampaignDetail), (status = 404, description = "no such campaign")))]
pub(crate) async fn campaign(
    State(app): State<App>,
    Path(id): Path<String>,
    q: RawQuery,
) -> Result<Json<CampaignDetail>, HttpError> {
    Params::parse(q, &[])?;
    if crate::store::uuid_key(&id).is_none() {
        return Err(HttpError::bad(format!(
            "campaign id must be a UUID, not {id:?}"
        )));
    }
    let shared = app.shared.clone();
    blocking(move || {
        Ok(Json(views::campaign_detail(crate::campaigns::status(
            &shared, &id,
        )?)))
    })
    .await
}

// ------------------------------------------------------------------ results

/// Which results a request wants.
pub(crate) struct ResultFilter {
    index: Option<(u8, [u8; 16])>,
    campaign: Option<String>,
    agent: Option<String>,
    target: Option<String>,
    country: Option<String>,
    asn: Option<u32>,
    kind: Option<String>,
    failure: Option<String>,
    since: Option<i64>,
    until: Option<i64>,
}

pub(crate) const RESULT_FILTERS: &[&str] = &[
    "campaign", "target", "agent", "country", "asn", "kind", "failure", "since", "until",
];

impl ResultFilter {
    pub(crate) fn parse(p: &Params) -> Result<ResultFilter, HttpError> {
        let campaign = p.id("campaign")?;
        let agent = p.id("agent")?;
        let (since, until) = time_range(p)?;
        Ok(ResultFilter {
            index: campaign
                .as_ref()
                .map(|(_, k)| (b'c', *k))
                .or(agent.as_ref().map(|(_, k)| (b'a', *k))),
            campaign: campaign.map(|c| c.0),
            agent: agent.map(|a| a.0),
            target: p.string("target"),
            country: country_param(p)?,
            asn: p.u32("asn")?,
            kind: kind_param(p)?,
            failure: p.string("failure"),
            since,
            until,
        })
    }

    pub(crate) fn matches(&self, d: &Decoded) -> bool {
        let labels = d.m.labels.as_ref();
        if self.agent.as_ref().is_some_and(|a| *a != d.stored.agent_id) {
            return false;
        }
        if self
            .campaign
            .as_ref()
            .is_some_and(|c| *c != d.m.campaign_id)
        {
            return false;
        }
        if self.kind.as_ref().is_some_and(|k| k != d.kind()) {
            return false;
        }
        // Country and ASN only as the volunteer shared them in the result.
        let country_ok = self
            .country
            .as_ref()
            .is_none_or(|c| labels.is_some_and(|l| l.country.eq_ignore_ascii_case(c)));
        let asn_ok = self.asn.is_none_or(|a| labels.is_some_and(|l| l.asn == a));
        if !(country_ok && asn_ok) {
            return false;
        }
        if self.since.is_some_and(|s| d.m.start_us < s)
            || self.until.is_some_and(|u| d.m.start_us > u)
        {
            return false;
        }
        if self
            .target
            .as_ref()
            .is_some_and(|t| *t != crate::analysis::target_key(&d.m))
        {
            return false;
        }
        if let Some(f) = &self.failure {
            let fs = views::failures_of(&d.m);
            let ok = match f.as_str() {
                "any" => !fs.is_empty(),
                "none" => fs.is_empty(),
                f => fs.iter().any(|x| x == f || x.starts_with(&format!("{f}:"))),
            };
            if !ok {
                return false;
            }
        }
        true
    }
}

/// Stored results, oldest id first, one page at a time. The body is
/// streamed in chunks as the store is read; pass `next_cursor` back as
/// `cursor` for the next page.
#[utoipa::path(get, path = "/api/v1/results", tag = "results",
    params(
        ("campaign" = Option<String>, Query, description = "campaign id"),
        ("agent" = Option<String>, Query, description = "agent id"),
        ("target" = Option<String>, Query, description = "target key, as in results and verdicts (`tcp 192.0.2.1:443`)"),
        ("country" = Option<String>, Query, description = "ISO 3166-1 alpha-2, from the result's shared labels"),
        ("asn" = Option<u32>, Query, description = "AS number, from the result's shared labels"),
        ("kind" = Option<String>, Query, description = "probe kind"),
        ("failure" = Option<String>, Query, description = "a failure string (`connection_reset`), `any` or `none`"),
        ("since" = Option<String>, Query, description = "measurement start at or after: RFC 3339, date or Unix microseconds"),
        ("until" = Option<String>, Query, description = "measurement start at or before"),
        ("limit" = Option<u32>, Query, description = "results per page, 1..=10000 (default 100)"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"),
    ),
    responses((status = 200, body = views::ResultPage), (status = 400, description = "bad parameter")))]
pub(crate) async fn results(State(app): State<App>, q: RawQuery) -> Result<Response, HttpError> {
    let mut known = RESULT_FILTERS.to_vec();
    known.extend(["limit", "cursor"]);
    let p = Params::parse(q, &known)?;
    let filter = ResultFilter::parse(&p)?;
    let limit = p.limit("limit", DEFAULT_LIMIT, MAX_LIMIT)?;
    let after = p.get("cursor").map(decode_cursor).transpose()?;
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
fn stream_page(
    store: &Store,
    filter: &ResultFilter,
    after: Option<[u8; 16]>,
    limit: usize,
    tx: &ChunkTx,
) {
    let mut buf: Vec<u8> = Vec::with_capacity(CHUNK + 4096);
    buf.extend_from_slice(b"{\"results\":[");
    let mut emitted = 0usize;
    let mut scanned = 0usize;
    let mut next: Option<[u8; 16]> = None;
    let mut error: Option<String> = None;
    let mut it = store.results_after(filter.index, after).peekable();
    while let Some(item) = it.next() {
        let (id, bytes) = match item {
            Ok(x) => x,
            Err(e) => {
                tracing::error!("http: results scan failed: {e}");
                error = Some(format!("the store failed part-way: {e}"));
                break;
            }
        };
        scanned += 1;
        if let Some(d) = views::decode(&bytes) {
            if filter.matches(&d) {
                if emitted > 0 {
                    buf.push(b',');
                }
                if serde_json::to_writer(&mut buf, &d.view()).is_err() {
                    error = Some("a result could not be written".into());
                    break;
                }
                emitted += 1;
            }
        }
        let more = it.peek().is_some();
        if (emitted >= limit || scanned >= MAX_SCAN) && more {
            next = Some(id);
            break;
        }
        if buf.len() >= CHUNK {
            let chunk = Bytes::from(std::mem::take(&mut buf));
            if tx.blocking_send(Ok(chunk)).is_err() {
                return;
            }
        }
    }
    buf.extend_from_slice(b"],\"next_cursor\":");
    let tail = serde_json::json!(next.map(|n| encode_cursor(&n)));
    buf.extend_from_slice(tail.to_string().as_bytes());
    if let Some(e) = error {
        buf.extend_from_slice(b",\"error\":");
        buf.extend_from_slice(serde_json::Value::String(e).to_string().as_bytes());
    }
    buf.push(b'}');
    let _ = tx.blocking_send(Ok(Bytes::from(buf)));
}

// ------------------------------------------------------------------ verdicts

/// Which verdicts a request wants.
pub(crate) struct VerdictFilter {
    campaign: Option<String>,
    country: Option<String>,
    asn: Option<u32>,
    status: Option<String>,
    mechanism: Option<String>,
    target: Option<String>,
    kind: Option<String>,
    agent: Option<String>,
    since: Option<i64>,
    until: Option<i64>,
}

pub(crate) const VERDICT_FILTERS: &[&str] = &[
    "campaign",
    "country",
    "asn",
    "status",
    "mechanism",
    "target",
    "kind",
    "agent",
    "since",
    "until",
];

impl VerdictFilter {
    pub(crate) fn parse(p: &Params) -> Result<VerdictFilter, HttpError> {
        let status = match p.get("status") {
            None => None,
            Some(s) if STATUSES.contains(&s) => Some(s.to_string()),
            Some(s) => {
                return Err(HttpError::bad(format!(
                    "status must be one of {}, not {s:?}",
                    STATUSES.join(", ")
                )))
            }
        };
        let (since, until) = time_range(p)?;
        Ok(VerdictFilter {
            campaign: p.id("campaign")?.map(|c| c.0),
            country: country_param(p)?,
            asn: p.u32("asn")?,
            status,
            mechanism: p.string("mechanism"),
            target: p.string("target"),
            kind: kind_param(p)?,
            agent: p.id("agent")?.map(|a| a.0),
            since,
            until,
        })
    }

    fn matches(&self, v: &VerdictView) -> bool {
        let mech = if v.mechanism.is_empty() {
            "none"
        } else {
            v.mechanism.as_str()
        };
        self.country
            .as_ref()
            .is_none_or(|c| v.country.eq_ignore_ascii_case(c))
            && self.asn.is_none_or(|a| v.asn == a)
            && self.status.as_ref().is_none_or(|s| *s == v.status)
            && self.mechanism.as_ref().is_none_or(|m| m == mech)
            && self.target.as_ref().is_none_or(|t| *t == v.target)
            && self.kind.as_ref().is_none_or(|k| *k == v.kind)
            && self.agent.as_ref().is_none_or(|a| *a == v.agent_id)
            && self.since.is_none_or(|s| v.dispatch_at_us >= s)
            && self.until.is_none_or(|u| v.dispatch_at_us <= u)
    }

    /// The matching verdicts of every campaign (or the one asked for),
    /// computed from the stored results.
    pub(crate) fn collect(&self, shared: &Shared) -> Result<Vec<VerdictView>, ServiceError> {
        let recs = match &self.campaign {
            Some(id) => vec![shared
                .store
                .campaign(id)?
                .ok_or_else(|| ServiceError::NotFound(format!("no campaign with id {id}")))?],
            None => shared.store.campaigns()?,
        };
        let mut out = Vec::new();
        for rec in &recs {
            out.extend(
                views::campaign_verdicts(shared, rec)?
                    .into_iter()
                    .filter(|v| self.matches(v)),
            );
        }
        Ok(out)
    }
}

/// Verdicts (inside results judged against control results of the same
/// run and target).
#[utoipa::path(get, path = "/api/v1/verdicts", tag = "verdicts",
    params(
        ("campaign" = Option<String>, Query, description = "campaign id (default: every campaign)"),
        ("country" = Option<String>, Query, description = "inside agent's country"),
        ("asn" = Option<u32>, Query, description = "inside agent's AS number"),
        ("status" = Option<String>, Query, description = "ok, blocked, down or inconclusive"),
        ("mechanism" = Option<String>, Query, description = "e.g. tcp.reset; `none` for verdicts without one"),
        ("target" = Option<String>, Query, description = "target key"),
        ("kind" = Option<String>, Query, description = "probe kind"),
        ("agent" = Option<String>, Query, description = "inside agent id"),
        ("since" = Option<String>, Query, description = "run dispatched at or after"),
        ("until" = Option<String>, Query, description = "run dispatched at or before"),
    ),
    responses((status = 200, body = VerdictList), (status = 400, description = "bad parameter"),
        (status = 404, description = "no such campaign")))]
pub(crate) async fn verdicts(
    State(app): State<App>,
    q: RawQuery,
) -> Result<Json<VerdictList>, HttpError> {
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
