//! `QueryService`: reads for dashboards and researchers, the gRPC face of
//! the read layer in `crate::query` (which the HTTP API under `/api/v1`
//! uses too): the same filters, pages, verdicts, aggregations and live feed,
//! converted here from the shared views to protobuf. Large answers stream
//! from the store instead of being buffered.
//!
//! Access: the admin client certificate, or a read token as metadata
//! `authorization: Bearer <token>` whose SHA-256 is listed in `read_tokens`;
//! each token has one bucket of `http_rate_per_minute` requests, shared
//! with the HTTP face (a call, or opening a stream, takes one).

use std::pin::Pin;
use std::time::Instant;

use futures::Stream;
use prost::Message;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status};
use vantage_proto::v1::query_service_server::QueryService;
use vantage_proto::v1::{
    results_item, watch_event, AgentsRequest, AgentsResponse, AggregationCell, AggregationRequest,
    AggregationResponse, CampaignRequest, CampaignStatusResponse, CampaignsRequest,
    CampaignsResponse, ChangesRequest, ChangesResponse, ListResultsRequest, QueryVerdictsRequest,
    QueryVerdictsResponse, ResultEntry, ResultsItem, ResultsPageEnd, ResultsRequest, StoredResult,
    VerdictsRequest, VerdictsResponse, WatchEvent, WatchRequest,
};

use super::peer_fingerprint;
use crate::errors::ServiceError;
use crate::query::feed::{FeedEvent, Payload};
use crate::query::fields::Fields;
use crate::query::views::Decoded;
use crate::query::{
    aggregation, axes, backend, blocking, scan_page, Cell, Emit, Reads, ResultFilter,
    VerdictFilter, DEFAULT_LIMIT, MAX_LIMIT,
};
use crate::sink::read::{Filter, Order, Pages, Source};
use crate::state::Shared;
use crate::store::uuid_key;

pub struct QueryApi {
    pub shared: Shared,
    pub reads: Reads,
}

type ResultStream = Pin<Box<dyn Stream<Item = Result<StoredResult, Status>> + Send>>;
type PageStream = Pin<Box<dyn Stream<Item = Result<ResultsItem, Status>> + Send>>;
type EventStream = Pin<Box<dyn Stream<Item = Result<WatchEvent, Status>> + Send>>;

const NEEDS: &str = "this call needs the admin certificate or a read token \
                     (metadata authorization: Bearer <token>)";

fn filter_key(tag: u8, id: &str) -> Result<Option<(u8, [u8; 16])>, ServiceError> {
    if id.is_empty() {
        return Ok(None);
    }
    uuid_key(id)
        .map(|k| Some((tag, k)))
        .ok_or_else(|| ServiceError::invalid(format!("{id:?} is not a valid id")))
}

/// A request's filter fields under the HTTP parameters' names, so the
/// shared parser checks them (and names them) alike.
fn fields(strings: &[(&str, &str)], numbers: &[(&str, Option<u32>)]) -> Fields {
    let mut pairs: Vec<(String, String)> = strings
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    pairs.extend(
        numbers
            .iter()
            .filter_map(|(k, v)| v.map(|v| (k.to_string(), v.to_string()))),
    );
    Fields::new(pairs)
}

impl QueryApi {
    /// A unary read: check the caller, then `read` the request on the
    /// store's thread.
    async fn read<Q: Send + 'static, T: Send + 'static>(
        &self,
        req: Request<Q>,
        read: impl FnOnce(&Shared, Q) -> Result<T, ServiceError> + Send + 'static,
    ) -> Result<Response<T>, Status> {
        self.authorize(&req)?;
        let shared = self.shared.clone();
        let r = req.into_inner();
        Ok(Response::new(blocking(move || read(&shared, r)).await?))
    }

    /// Where this answer's results that retention removed from sled are:
    /// none when no sink is configured.
    fn old_results(
        &self,
        r: &ListResultsRequest,
    ) -> Result<Option<(Source, Filter)>, ServiceError> {
        let (Some(status), Some(c)) = (&self.shared.sink, &self.shared.config.sink.clickhouse)
        else {
            return Ok(None);
        };
        let src = Source {
            c: c.clone(),
            coordinator: status.coordinator_id.clone(),
            // Read with retention held off (list_results).
            upto_seq: 0,
        };
        let f = Filter {
            campaign: r.campaign_id.clone(),
            task: r.task_id.clone(),
            agent: r.agent_id.clone(),
        };
        Ok(Some((src, f)))
    }

    /// The admin certificate, or a known read token within its rate.
    fn authorize<T>(&self, req: &Request<T>) -> Result<(), ServiceError> {
        let fp = peer_fingerprint(req);
        if fp.as_deref() == Some(self.shared.admin_fingerprint.as_str()) {
            return Ok(());
        }
        if let Some(v) = req.metadata().get("authorization") {
            let token = v
                .to_str()
                .ok()
                .and_then(|s| s.strip_prefix("Bearer "))
                .map(str::trim)
                .filter(|t| !t.is_empty());
            let Some(token) = token else {
                self.shared.count("refused/bad_read_token");
                return Err(ServiceError::Unauthenticated(
                    "the authorization metadata must be \"Bearer <read token>\"".into(),
                ));
            };
            let tokens = &self.reads.tokens;
            let key = tokens.check(token).inspect_err(|_| {
                self.shared.count("refused/bad_read_token");
            })?;
            if let Err(secs) = tokens.take(&key, Instant::now()) {
                self.shared.count("refused/rate_limited");
                return Err(tokens.exhausted(secs));
            }
            return Ok(());
        }
        if fp.is_some() {
            self.shared.count("refused/not_admin");
            Err(ServiceError::PermissionDenied(NEEDS.into()))
        } else {
            self.shared.count("refused/no_certificate");
            Err(ServiceError::Unauthenticated(NEEDS.into()))
        }
    }
}

// ------------------------------------------------------------ views to protobuf

fn result_entry(d: Decoded) -> ResultEntry {
    let measurement = d.m.clone();
    let envelope = d.stored.envelope.clone();
    let v = d.view();
    ResultEntry {
        id: v.id,
        agent_id: v.agent_id,
        campaign_id: v.campaign_id,
        task_id: v.task_id,
        run_id: v.run_id,
        start_us: v.start_us,
        end_us: v.end_us,
        received_us: v.received_us,
        country: v.country,
        asn: v.asn,
        kind: v.kind,
        target: v.target,
        failures: v.failures,
        measurement: Some(measurement),
        envelope,
    }
}

fn cell(c: Cell) -> AggregationCell {
    AggregationCell {
        x: c.x,
        y: c.y.unwrap_or_default(),
        ok_count: c.counts.ok_count,
        blocked_count: c.counts.blocked_count,
        down_count: c.counts.down_count,
        inconclusive_count: c.counts.inconclusive_count,
        measurement_count: c.counts.measurement_count,
    }
}

/// Whether `sr` belongs to the task and campaign a `ListResults` names.
/// Two id-ordered streams as one (an error comes out when it is next).
struct MergeById<A: Iterator, B: Iterator> {
    a: std::iter::Peekable<A>,
    b: std::iter::Peekable<B>,
}

impl<A, B, T> Iterator for MergeById<A, B>
where
    A: Iterator<Item = Result<([u8; 16], T), ServiceError>>,
    B: Iterator<Item = Result<([u8; 16], T), ServiceError>>,
{
    type Item = Result<([u8; 16], T), ServiceError>;

    fn next(&mut self) -> Option<Self::Item> {
        let take_a = match (self.a.peek(), self.b.peek()) {
            (None, None) => return None,
            (Some(_), None) | (Some(Err(_)), _) => true,
            (None, Some(_)) | (_, Some(Err(_))) => false,
            (Some(Ok((x, _))), Some(Ok((y, _)))) => x <= y,
        };
        if take_a {
            self.a.next()
        } else {
            self.b.next()
        }
    }
}

fn in_index(sr: &StoredResult, r: &ListResultsRequest) -> bool {
    if r.task_id.is_empty() && r.campaign_id.is_empty() {
        return true;
    }
    let Some(m) = sr
        .envelope
        .as_ref()
        .and_then(|e| vantage_proto::envelope::decode(e).ok())
    else {
        return false;
    };
    (r.task_id.is_empty() || m.task_id == r.task_id)
        && (r.campaign_id.is_empty() || m.campaign_id == r.campaign_id)
}

fn watch_event(e: &FeedEvent) -> WatchEvent {
    let (id, event) = match &e.payload {
        Payload::Result(d) => (
            e.seq.map(|n| n.to_string()).unwrap_or_default(),
            watch_event::Event::Result(result_entry((**d).clone())),
        ),
        Payload::Verdict(v) => (String::new(), watch_event::Event::Verdict((**v).clone())),
        Payload::Change(c) => (String::new(), watch_event::Event::Change((**c).clone())),
    };
    WatchEvent {
        id,
        event: Some(event),
    }
}

fn verdict_filter(r: &QueryVerdictsRequest) -> Result<VerdictFilter, ServiceError> {
    VerdictFilter::parse(&fields(
        &[
            ("campaign", &r.campaign),
            ("country", &r.country),
            ("status", &r.status),
            ("mechanism", &r.mechanism),
            ("target", &r.target),
            ("kind", &r.kind),
            ("agent", &r.agent),
            ("since", &r.since),
            ("until", &r.until),
        ],
        &[("asn", r.asn)],
    ))
}

#[tonic::async_trait]
impl QueryService for QueryApi {
    type ListResultsStream = ResultStream;
    type ResultsStream = PageStream;
    type WatchStream = EventStream;

    async fn list_results(
        &self,
        req: Request<ListResultsRequest>,
    ) -> Result<Response<Self::ListResultsStream>, Status> {
        self.authorize(&req)?;
        let r = req.into_inner();
        let index = filter_key(b't', &r.task_id)?
            .or(filter_key(b'c', &r.campaign_id)?)
            .or(filter_key(b'a', &r.agent_id)?);
        let agent_filter = r.agent_id.clone();
        let limit = if r.limit == 0 {
            usize::MAX
        } else {
            r.limit as usize
        };
        // Results retention removed from sled are read back from
        // ClickHouse (crate::sink::read), the rest from sled.
        let old = self.old_results(&r)?;
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        let store = self.shared.store.clone();
        let rt = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            // Retention waits while this answer is read, so what sled holds
            // and what ClickHouse is asked for neither overlap nor leave a gap.
            let _held = store.hold_retention();
            let old = match old {
                Some((mut src, f)) => match store.retired_seq() {
                    Ok(0) => None,
                    Ok(n) => {
                        src.upto_seq = n;
                        Some((src, f))
                    }
                    Err(e) => {
                        let _ = tx.blocking_send(Err(Status::from(ServiceError::from(e))));
                        return;
                    }
                },
                None => None,
            };
            let decode = |seq: u64, v: sled::IVec| -> Result<StoredResult, ServiceError> {
                let mut sr = StoredResult::decode(v.as_ref())
                    .map_err(|e| ServiceError::Internal(format!("a stored result: {e}")))?;
                sr.seq = seq;
                Ok(sr)
            };
            // In id order (seq 0 on answers), or in commit order.
            type Item = Result<([u8; 16], StoredResult), ServiceError>;
            let from_sled_after = |after: u64| -> Box<dyn Iterator<Item = Item> + '_> {
                Box::new(store.results_after_seq(after).map(move |v| {
                    let (n, id, bytes) = v.map_err(ServiceError::from)?;
                    Ok((id, decode(n, bytes)?))
                }))
            };
            let from_sled = || -> Box<dyn Iterator<Item = Item> + '_> {
                Box::new(store.results_after(index, None).map(move |v| {
                    let (id, bytes) = v.map_err(ServiceError::from)?;
                    Ok((id, decode(0, bytes)?))
                }))
            };
            let items: Box<dyn Iterator<Item = Item>> = match (r.after_seq, old) {
                (None, None) => from_sled(),
                (Some(after), None) => from_sled_after(after),
                (Some(after), Some((src, f))) if after < src.upto_seq => {
                    let upto = src.upto_seq;
                    let pages = Pages::new(src, f, Order::Seq, after, rt);
                    Box::new(
                        pages
                            .map(|row| {
                                row.map(|(n, id, mut sr)| {
                                    sr.seq = n;
                                    (uuid_key(&id).unwrap_or_default(), sr)
                                })
                            })
                            .chain(from_sled_after(upto)),
                    )
                }
                (Some(after), Some(_)) => from_sled_after(after),
                (None, Some((src, f))) => {
                    let pages = Pages::new(src, f, Order::Id, 0, rt)
                        .map(|row| row.map(|(_, id, sr)| (uuid_key(&id).unwrap_or_default(), sr)));
                    Box::new(MergeById {
                        a: pages.peekable(),
                        b: from_sled().peekable(),
                    })
                }
            };
            let mut sent = 0;
            for item in items {
                if sent >= limit {
                    break;
                }
                let out = item.map(|(_, sr)| sr);
                if let Ok(sr) = &out {
                    if !agent_filter.is_empty() && sr.agent_id != agent_filter {
                        continue;
                    }
                    // In commit order the index does not narrow the scan.
                    if r.after_seq.is_some() && !in_index(sr, &r) {
                        continue;
                    }
                }
                sent += 1;
                if tx.blocking_send(out.map_err(Status::from)).is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn verdicts(
        &self,
        req: Request<VerdictsRequest>,
    ) -> Result<Response<VerdictsResponse>, Status> {
        self.read(req, |s, r| crate::campaigns::verdicts(s, &r.campaign_id))
            .await
    }

    async fn agents(
        &self,
        req: Request<AgentsRequest>,
    ) -> Result<Response<AgentsResponse>, Status> {
        self.read(req, |s, _| {
            let agents = crate::query::agents(s)?;
            Ok(AgentsResponse { agents })
        })
        .await
    }

    async fn campaigns(
        &self,
        req: Request<CampaignsRequest>,
    ) -> Result<Response<CampaignsResponse>, Status> {
        self.read(req, |s, _| {
            let campaigns = crate::query::campaigns(s)?;
            Ok(CampaignsResponse { campaigns })
        })
        .await
    }

    async fn campaign(
        &self,
        req: Request<CampaignRequest>,
    ) -> Result<Response<CampaignStatusResponse>, Status> {
        self.read(req, |s, r| crate::query::campaign(s, &r.id))
            .await
    }

    async fn results(
        &self,
        req: Request<ResultsRequest>,
    ) -> Result<Response<Self::ResultsStream>, Status> {
        self.authorize(&req)?;
        let r = req.into_inner();
        let limit = (r.limit != 0).then_some(r.limit);
        let p = fields(
            &[
                ("campaign", &r.campaign),
                ("target", &r.target),
                ("agent", &r.agent),
                ("country", &r.country),
                ("kind", &r.kind),
                ("failure", &r.failure),
                ("since", &r.since),
                ("until", &r.until),
            ],
            &[("asn", r.asn), ("limit", limit)],
        );
        let filter = ResultFilter::parse(&p)?;
        let limit = p.limit("limit", DEFAULT_LIMIT, MAX_LIMIT)?;
        let after =
            crate::query::page_from((!r.cursor.is_empty()).then_some(&*r.cursor), r.after_seq)?;
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<ResultsItem, Status>>(64);
        let store = self.shared.store.clone();
        tokio::task::spawn_blocking(move || {
            let end = scan_page(&store, &filter, after, limit, |d| {
                let item = ResultsItem {
                    item: Some(results_item::Item::Result(result_entry(d))),
                };
                match tx.blocking_send(Ok(item)) {
                    Ok(()) => Emit::More,
                    Err(_) => Emit::Gone,
                }
            });
            let Some(end) = end else {
                return;
            };
            let last = match end.error {
                Some(e) => Err(ServiceError::Internal(e).into()),
                None => Ok(ResultsItem {
                    item: Some(results_item::Item::End(ResultsPageEnd {
                        next_cursor: end
                            .next
                            .map(|n| crate::query::fields::encode_cursor(&n))
                            .unwrap_or_default(),
                        last_seq: end.last_seq,
                    })),
                }),
            };
            let _ = tx.blocking_send(last);
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn query_verdicts(
        &self,
        req: Request<QueryVerdictsRequest>,
    ) -> Result<Response<QueryVerdictsResponse>, Status> {
        self.read(req, |s, r| {
            let verdicts = verdict_filter(&r)?.collect(s)?;
            Ok(QueryVerdictsResponse { verdicts })
        })
        .await
    }

    async fn aggregation(
        &self,
        req: Request<AggregationRequest>,
    ) -> Result<Response<AggregationResponse>, Status> {
        self.read(req, |s, r| {
            let p = fields(
                &[
                    ("axis_x", &r.axis_x),
                    ("axis_y", &r.axis_y),
                    ("backend", &r.backend),
                ],
                &[],
            );
            let (x, y) = axes(&p)?;
            let f = verdict_filter(&r.filter.unwrap_or_default())?;
            Ok(AggregationResponse {
                result: aggregation(s, &f, &x, y.as_deref(), backend(&p)?)?
                    .into_iter()
                    .map(cell)
                    .collect(),
                axis_x: x,
                axis_y: y.unwrap_or_default(),
            })
        })
        .await
    }

    async fn changes(
        &self,
        req: Request<ChangesRequest>,
    ) -> Result<Response<ChangesResponse>, Status> {
        self.read(req, |s, r| {
            let asn = r.asn.map(|a| a.to_string()).unwrap_or_default();
            let limit = r.limit.map(|l| l.to_string()).unwrap_or_default();
            let p = fields(
                &[
                    ("campaign", &r.campaign),
                    ("target", &r.target),
                    ("country", &r.country),
                    ("asn", &asn),
                    ("since", &r.since),
                    ("until", &r.until),
                    ("change", &r.change),
                    ("limit", &limit),
                    ("cursor", &r.cursor),
                ],
                &[],
            );
            let (changes, next) = crate::query::ChangeFilter::parse(&p)?.page(s)?;
            Ok(ChangesResponse {
                changes,
                next_cursor: next.unwrap_or_default(),
            })
        })
        .await
    }

    async fn watch(
        &self,
        req: Request<WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        self.authorize(&req)?;
        let resume = crate::query::feed::resume_point(&req.into_inner().last_event_id)?;
        let rx = self.reads.feed.subscribe(self.shared.clone(), resume);
        Ok(Response::new(Box::pin(
            ReceiverStream::new(rx).map(|e| Ok(watch_event(&e))),
        )))
    }
}
