//! The read layer both faces share: the HTTP API under `/api/v1`
//! (`crate::http`) and gRPC `QueryService` (`crate::api::query`). Filters
//! are parsed and matched here, pages are scanned here, aggregations and
//! the live feed are computed here, and the answers are built as the views
//! in [`views`]; each face only translates them to JSON or protobuf. So a
//! query answers the same on either face.
//!
//! Who may read ([`access::ReadTokens`]): the admin certificate (gRPC), or
//! a read token whose SHA-256 is listed in `read_tokens`, each token with
//! one bucket of `http_rate_per_minute` requests shared by both faces.

pub(crate) mod access;
pub(crate) mod feed;
pub(crate) mod fields;
pub(crate) mod views;

use std::collections::BTreeMap;
use std::sync::Arc;

use self::fields::{day_hour, Fields};
use self::views::{CampaignInfo, Decoded, FleetAgent, VerdictEntry};
use crate::errors::ServiceError;
use crate::state::Shared;
use crate::store::Store;
use vantage_proto::v1::CampaignStatusResponse;

/// Runs blocking store work off the async threads (both faces).
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ServiceError> + Send + 'static,
) -> Result<T, ServiceError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ServiceError::Internal(format!("worker failed: {e}")))?
}

/// What the read faces share while serving: who may read, and the live feed.
#[derive(Clone)]
pub struct Reads {
    pub(crate) tokens: Arc<access::ReadTokens>,
    pub(crate) feed: Arc<feed::Feed>,
}

impl Reads {
    /// Checks `read_tokens` and starts the feed poller (needs a runtime).
    pub fn start(shared: &Shared) -> Result<Reads, String> {
        Ok(Reads {
            tokens: Arc::new(access::ReadTokens::new(&shared.config)?),
            feed: feed::Feed::start(shared.clone()),
        })
    }
}

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

fn country_param(p: &Fields) -> Result<Option<String>, ServiceError> {
    match p.get("country") {
        None => Ok(None),
        Some(c) if c.len() == 2 && c.bytes().all(|b| b.is_ascii_alphabetic()) => {
            Ok(Some(c.to_ascii_uppercase()))
        }
        Some(c) => Err(ServiceError::invalid(format!(
            "country must be an ISO 3166-1 alpha-2 code such as CN, not {c:?}"
        ))),
    }
}

fn kind_param(p: &Fields) -> Result<Option<String>, ServiceError> {
    match p.get("kind") {
        None => Ok(None),
        Some(k) if KINDS.contains(&k) => Ok(Some(k.to_string())),
        Some(k) => Err(ServiceError::invalid(format!(
            "kind must be one of {}, not {k:?}",
            KINDS.join(", ")
        ))),
    }
}

fn time_range(p: &Fields) -> Result<(Option<i64>, Option<i64>), ServiceError> {
    let since = p.time_us("since")?;
    let until = p.time_us("until")?;
    if let (Some(s), Some(u)) = (since, until) {
        if s > u {
            return Err(ServiceError::invalid("since must not be later than until"));
        }
    }
    Ok((since, until))
}

// ------------------------------------------------------------------ fleet

/// Every enrolled agent, with labels, last seen, version and whether it is
/// connected now. No network addresses.
pub(crate) fn agents(shared: &Shared) -> Result<Vec<FleetAgent>, ServiceError> {
    Ok(shared
        .store
        .agents()?
        .into_iter()
        .map(|a| {
            let on = shared.hub.is_connected(&a.agent_id);
            views::agent_view(a, on)
        })
        .collect())
}

/// Every campaign with its progress.
pub(crate) fn campaigns(shared: &Shared) -> Result<Vec<CampaignInfo>, ServiceError> {
    Ok(crate::campaigns::list(shared)?.campaigns)
}

/// One campaign with its runs (the HTTP face shows it as
/// [`views::CampaignDetail`]).
pub(crate) fn campaign(shared: &Shared, id: &str) -> Result<CampaignStatusResponse, ServiceError> {
    if fields::uuid(id).is_none() {
        return Err(ServiceError::invalid(format!(
            "campaign id must be a UUID, not {id:?}"
        )));
    }
    crate::campaigns::status(shared, id)
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
    pub(crate) fn parse(p: &Fields) -> Result<ResultFilter, ServiceError> {
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

/// What a page handler's `emit` says after each result.
pub(crate) enum Emit {
    /// Go on.
    More,
    /// The client has gone: stop and send nothing more.
    Gone,
    /// The result could not be written: end the page with this error.
    Failed(String),
}

/// How a page ended.
pub(crate) struct PageEnd {
    /// Key of the last result examined, when more remain: the cursor (id
    /// order).
    pub(crate) next: Option<[u8; 16]>,
    /// In commit order: the sequence number of the last result examined
    /// (the one asked after when none was); pass it back as `after_seq`.
    pub(crate) last_seq: Option<u64>,
    /// Set when the store (or `emit`) failed part-way.
    pub(crate) error: Option<String>,
}

/// Where a page starts.
#[derive(Clone, Copy, Debug)]
pub(crate) enum PageFrom {
    /// Oldest id first, after this id (the `cursor` of the last page).
    Id(Option<[u8; 16]>),
    /// In the order results were stored, after this commit sequence
    /// number: an incremental sync that a late delivery with an old id
    /// cannot slip past (`store/seq.rs`).
    Seq(u64),
}

/// Where a results page starts, from the request's `cursor` (id order) or
/// `after_seq` (commit order); not both.
pub(crate) fn page_from(
    cursor: Option<&str>,
    after_seq: Option<u64>,
) -> Result<PageFrom, crate::errors::ServiceError> {
    match (cursor, after_seq) {
        (Some(_), Some(_)) => Err(crate::errors::ServiceError::invalid(
            "cursor and after_seq do not go together: cursor pages in id order, \
             after_seq in the order results were stored",
        )),
        (None, Some(n)) => Ok(PageFrom::Seq(n)),
        (c, None) => Ok(PageFrom::Id(c.map(fields::decode_cursor).transpose()?)),
    }
}

/// Scans one page of stored results from `from`, handing each match to
/// `emit`. At most `limit` matches, and at most `MAX_SCAN` results
/// examined; `None` when `emit` said the client is gone.
pub(crate) fn scan_page(
    store: &Store,
    filter: &ResultFilter,
    from: PageFrom,
    limit: usize,
    mut emit: impl FnMut(Decoded) -> Emit,
) -> Option<PageEnd> {
    let mut emitted = 0usize;
    let mut scanned = 0usize;
    let mut end = PageEnd {
        next: None,
        last_seq: None,
        error: None,
    };
    // (sequence number when in commit order, id, stored bytes)
    type Item = Result<(Option<u64>, [u8; 16], sled::IVec), crate::store::StoreError>;
    let items: Box<dyn Iterator<Item = Item>> = match from {
        PageFrom::Id(after) => Box::new(
            store
                .results_after(filter.index, after)
                .map(|r| r.map(|(id, b)| (None, id, b))),
        ),
        PageFrom::Seq(after) => {
            end.last_seq = Some(after);
            Box::new(
                store
                    .results_after_seq(after)
                    .map(|r| r.map(|(n, id, b)| (Some(n), id, b))),
            )
        }
    };
    let mut it = items.peekable();
    while let Some(item) = it.next() {
        let (seq, id, bytes) = match item {
            Ok(x) => x,
            Err(e) => {
                tracing::error!("read API: results scan failed: {e}");
                end.error = Some(format!("the store failed part-way: {e}"));
                break;
            }
        };
        scanned += 1;
        if let Some(d) = views::decode(&bytes) {
            if filter.matches(&d) {
                match emit(d) {
                    Emit::More => {}
                    Emit::Gone => return None,
                    Emit::Failed(e) => {
                        end.error = Some(e);
                        break;
                    }
                }
                emitted += 1;
            }
        }
        if seq.is_some() {
            end.last_seq = seq;
        }
        let more = it.peek().is_some();
        if (emitted >= limit || scanned >= MAX_SCAN) && more {
            if seq.is_none() {
                end.next = Some(id);
            }
            break;
        }
    }
    Some(end)
}

// ------------------------------------------------------------------ verdicts

/// Which verdicts a request wants. Its fields are the verdict filters the
/// HTTP API documents (`IntoParams`; the schemas come from
/// `crate::http`'s parameter table).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct VerdictFilter {
    /// Campaign id (default: every campaign).
    campaign: Option<String>,
    /// The inside agent's country (ISO 3166-1 alpha-2).
    country: Option<String>,
    /// The inside agent's AS number.
    asn: Option<u32>,
    /// `ok`, `blocked`, `down` or `inconclusive`.
    status: Option<String>,
    /// A mechanism such as `tcp.reset`; `none` for verdicts without one.
    mechanism: Option<String>,
    /// Target key.
    target: Option<String>,
    /// Probe kind.
    kind: Option<String>,
    /// Inside agent id.
    agent: Option<String>,
    /// Run dispatched at or after: RFC 3339, a date or Unix microseconds;
    /// not later than `until`.
    #[param(value_type = Option<String>)]
    since: Option<i64>,
    /// Run dispatched at or before.
    #[param(value_type = Option<String>)]
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
    pub(crate) fn parse(p: &Fields) -> Result<VerdictFilter, ServiceError> {
        let status = match p.get("status") {
            None => None,
            Some(s) if STATUSES.contains(&s) => Some(s.to_string()),
            Some(s) => {
                return Err(ServiceError::invalid(format!(
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

    fn matches(&self, v: &VerdictEntry) -> bool {
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

    /// The filter as conditions on the ClickHouse verdict table
    /// (`crate::sink::read::aggregation`), matching what [`Self::matches`]
    /// keeps.
    pub(crate) fn sql(&self) -> Vec<String> {
        use crate::sink::read::quote;
        let mut w = Vec::new();
        let eq = |w: &mut Vec<String>, col: &str, v: &Option<String>| {
            if let Some(v) = v {
                w.push(format!("{col} = {}", quote(v)));
            }
        };
        eq(&mut w, "campaign", &self.campaign);
        if let Some(c) = &self.country {
            w.push(format!("lower(country) = lower({})", quote(c)));
        }
        if let Some(a) = self.asn {
            w.push(format!("asn = {a}"));
        }
        eq(&mut w, "status", &self.status);
        if let Some(m) = &self.mechanism {
            w.push(format!(
                "if(mechanism = '', 'none', mechanism) = {}",
                quote(m)
            ));
        }
        eq(&mut w, "target", &self.target);
        eq(&mut w, "kind", &self.kind);
        eq(&mut w, "agent", &self.agent);
        if let Some(s) = self.since {
            w.push(format!("dispatch_at_us >= {s}"));
        }
        if let Some(u) = self.until {
            w.push(format!("dispatch_at_us <= {u}"));
        }
        w
    }

    /// The matching verdicts of every campaign (or the one asked for),
    /// computed from the stored results.
    pub(crate) fn collect(&self, shared: &Shared) -> Result<Vec<VerdictEntry>, ServiceError> {
        let recs = campaigns_of(shared, self.campaign.as_deref())?;
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

/// The campaign asked for (404 when it is not stored), or every campaign.
fn campaigns_of(
    shared: &Shared,
    campaign: Option<&str>,
) -> Result<Vec<crate::store::CampaignRecord>, ServiceError> {
    Ok(match campaign {
        Some(id) => vec![shared
            .store
            .campaign(id)?
            .ok_or_else(|| ServiceError::NotFound(format!("no campaign with id {id}")))?],
        None => shared.store.campaigns()?,
    })
}

// ------------------------------------------------------------------ changes

/// Which change events (`/api/v1/changes`, gRPC `Changes`).
#[derive(Debug, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ChangeFilter {
    /// Campaign id (default: every campaign).
    campaign: Option<String>,
    /// Target key.
    target: Option<String>,
    /// The inside agents' country (ISO 3166-1 alpha-2).
    country: Option<String>,
    /// The inside agents' AS number.
    asn: Option<u32>,
    /// Onset (the first run showing the new state) at or after: RFC 3339,
    /// a date or Unix microseconds; not later than `until`.
    #[param(value_type = Option<String>)]
    since: Option<i64>,
    /// Onset at or before.
    #[param(value_type = Option<String>)]
    until: Option<i64>,
    /// `blocked`, `unblocked`, `down`, `up` or `mechanism`.
    change: Option<String>,
    /// Events per page (default 100, at most 1000).
    #[param(value_type = Option<u32>)]
    limit: usize,
    /// `next_cursor` of the previous page.
    #[param(value_type = Option<String>)]
    cursor: Option<[u8; 16]>,
}

pub(crate) const CHANGE_FILTERS: &[&str] = &[
    "campaign", "target", "country", "asn", "since", "until", "change", "limit", "cursor",
];

impl ChangeFilter {
    pub(crate) fn parse(p: &Fields) -> Result<ChangeFilter, ServiceError> {
        let change = match p.get("change") {
            None => None,
            Some(c) if crate::changes::KINDS.contains(&c) => Some(c.to_string()),
            Some(c) => {
                return Err(ServiceError::invalid(format!(
                    "change must be one of {}, not {c:?}",
                    crate::changes::KINDS.join(", ")
                )))
            }
        };
        let (since, until) = time_range(p)?;
        Ok(ChangeFilter {
            campaign: p.id("campaign")?.map(|c| c.0),
            target: p.string("target"),
            country: country_param(p)?,
            asn: p.u32("asn")?,
            since,
            until,
            change,
            limit: p.limit("limit", DEFAULT_LIMIT, MAX_LIMIT)?,
            cursor: p.get("cursor").map(fields::decode_cursor).transpose()?,
        })
    }

    fn matches(&self, e: &vantage_proto::v1::ChangeEvent) -> bool {
        self.target.as_ref().is_none_or(|t| *t == e.target)
            && self
                .country
                .as_ref()
                .is_none_or(|c| e.country.eq_ignore_ascii_case(c))
            && self.asn.is_none_or(|a| e.asn == a)
            && self.since.is_none_or(|s| e.after_us >= s)
            && self.until.is_none_or(|u| e.after_us <= u)
            && self.change.as_ref().is_none_or(|c| *c == e.change)
            && self.cursor.is_none_or(|c| crate::changes::order_key(e) > c)
    }

    /// One page of matching events, oldest onset first, and the cursor of
    /// the next page (none: this was the last).
    pub(crate) fn page(
        &self,
        shared: &Shared,
    ) -> Result<(Vec<vantage_proto::v1::ChangeEvent>, Option<String>), ServiceError> {
        let recs = campaigns_of(shared, self.campaign.as_deref())?;
        let mut all = Vec::new();
        for rec in &recs {
            all.extend(
                crate::changes::of_campaign(shared, rec)?
                    .into_iter()
                    .filter(|e| self.matches(e)),
            );
        }
        all.sort_by_key(crate::changes::order_key);
        let more = all.len() > self.limit;
        all.truncate(self.limit);
        let next = more
            .then(|| {
                all.last()
                    .map(|e| fields::encode_cursor(&crate::changes::order_key(e)))
            })
            .flatten();
        Ok((all, next))
    }
}

// ------------------------------------------------------------------ aggregation

/// Axes a count can be split by.
pub(crate) const AXES: &[&str] = &[
    "country",
    "asn",
    "target",
    "mechanism",
    "day",
    "hour",
    "kind",
    "campaign",
];

fn axis_value(axis: &str, v: &VerdictEntry) -> String {
    match axis {
        "country" => v.country.clone(),
        "asn" => v.asn.to_string(),
        "target" => v.target.clone(),
        "mechanism" if v.mechanism.is_empty() => "none".into(),
        "mechanism" => v.mechanism.clone(),
        "day" => day_hour(v.dispatch_at_us).0,
        "hour" => day_hour(v.dispatch_at_us).1,
        "kind" => v.kind.clone(),
        "campaign" => v.campaign_id.clone(),
        _ => String::new(),
    }
}

/// An axis as a ClickHouse expression over the verdict table, giving what
/// [`axis_value`] gives.
pub(crate) fn axis_sql(axis: &str) -> &'static str {
    match axis {
        "country" => "country",
        "asn" => "toString(asn)",
        "target" => "target",
        "mechanism" => "if(mechanism = '', 'none', mechanism)",
        "day" => "substring(toString(dispatch_at, 'UTC'), 1, 10)",
        "hour" => {
            "concat(replaceOne(substring(toString(dispatch_at, 'UTC'), 1, 13), ' ', 'T'), ':00Z')"
        }
        "kind" => "kind",
        "campaign" => "campaign",
        _ => "''",
    }
}

/// Where an aggregation is counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Backend {
    /// The verdicts in sled (the default).
    Sled,
    /// The verdict table the ClickHouse sink fills (`[sink.clickhouse]`).
    ClickHouse,
}

/// The `backend` parameter.
pub(crate) fn backend(p: &Fields) -> Result<Backend, ServiceError> {
    match p.get("backend") {
        None | Some("sled") => Ok(Backend::Sled),
        Some("clickhouse") => Ok(Backend::ClickHouse),
        Some(b) => Err(ServiceError::invalid(format!(
            "backend must be sled or clickhouse, not {b:?}"
        ))),
    }
}

/// Verdict counts by the axes, from `backend`; the same cells either way
/// (the e2e test `sink_reads` compares them). Call from a blocking thread.
pub(crate) fn aggregation(
    shared: &Shared,
    f: &VerdictFilter,
    x: &str,
    y: Option<&str>,
    backend: Backend,
) -> Result<Vec<Cell>, ServiceError> {
    match backend {
        Backend::Sled => Ok(aggregate(&f.collect(shared)?, x, y)),
        Backend::ClickHouse => {
            let (Some(c), Some(status)) = (&shared.config.sink.clickhouse, &shared.sink) else {
                return Err(ServiceError::invalid(
                    "backend=clickhouse needs a [sink.clickhouse] in coordinator.toml",
                ));
            };
            crate::sink::read::aggregation(c, &status.coordinator_id, &f.sql(), x, y)
        }
    }
}

fn axis_param(p: &Fields, name: &str) -> Result<Option<String>, ServiceError> {
    match p.get(name) {
        None => Ok(None),
        Some(a) if AXES.contains(&a) => Ok(Some(a.to_string())),
        Some(a) => Err(ServiceError::invalid(format!(
            "{name} must be one of {}, not {a:?}",
            AXES.join(", ")
        ))),
    }
}

/// The axes of an aggregation request (`axis_x` required, `axis_y`
/// optional and different).
pub(crate) fn axes(p: &Fields) -> Result<(String, Option<String>), ServiceError> {
    let x = axis_param(p, "axis_x")?.ok_or_else(|| {
        ServiceError::invalid(
            "axis_x is required (country, asn, target, mechanism, day, hour, kind or campaign)",
        )
    })?;
    let y = axis_param(p, "axis_y")?;
    if y.as_ref() == Some(&x) {
        return Err(ServiceError::invalid("axis_x and axis_y must differ"));
    }
    Ok((x, y))
}

/// Counts for one cell.
#[derive(serde::Serialize, utoipa::ToSchema, Default, Clone, PartialEq, Debug)]
pub(crate) struct Counts {
    pub ok_count: u64,
    pub blocked_count: u64,
    pub down_count: u64,
    pub inconclusive_count: u64,
    pub measurement_count: u64,
}

/// One cell: the axis values and the counts.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct Cell {
    /// Value on `axis_x` (empty string when a label is withheld).
    pub x: String,
    /// Value on `axis_y`; absent with one axis.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    #[serde(flatten)]
    pub counts: Counts,
}

/// Groups verdicts by the axes (cells sorted by x, then y).
pub(crate) fn aggregate(verdicts: &[VerdictEntry], x: &str, y: Option<&str>) -> Vec<Cell> {
    let mut cells: BTreeMap<(String, Option<String>), Counts> = BTreeMap::new();
    for v in verdicts {
        let key = (axis_value(x, v), y.map(|y| axis_value(y, v)));
        let c = cells.entry(key).or_default();
        c.measurement_count += 1;
        match v.status.as_str() {
            "ok" => c.ok_count += 1,
            "blocked" => c.blocked_count += 1,
            "down" => c.down_count += 1,
            _ => c.inconclusive_count += 1,
        }
    }
    cells
        .into_iter()
        .map(|((x, y), counts)| Cell { x, y, counts })
        .collect()
}
