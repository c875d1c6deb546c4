//! gRPC `QueryService` end to end: a real coordinator process with its HTTP
//! API on, three real agents and a real campaign, a real tonic client over
//! TLS (read token, no client certificate) and mTLS (admin certificate).
//! Every RPC is compared with the HTTP endpoint answering the same query.
//!
//! Campaign targets are on 127.0.0.2 while agents reach the coordinator
//! from 127.0.0.1, so "127.0.0.1" in any answer would be an agent address.

use std::collections::HashSet;
use std::time::Duration;

use base64::Engine;
use serde_json::Value;
use tonic::transport::Channel;
use tonic::{Code, Request};
use vantage_proto::client::connect;
use vantage_proto::v1::query_service_client::QueryServiceClient;
use vantage_proto::v1::*;

use crate::harness::*;
use crate::http::{enc, get_with};

const TOKEN: &str = "grpc-read-token-for-tests-0123456789";

fn authed<T>(msg: T, token: &str) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    r
}

fn tok<T>(msg: T) -> Request<T> {
    authed(msg, TOKEN)
}

/// TLS to the coordinator's pinned CA, no client certificate.
async fn token_client(c: &Coordinator) -> QueryServiceClient<Channel> {
    QueryServiceClient::new(connect(&c.addr, &c.options(None)).await.expect("channel"))
}

async fn admin_client(c: &Coordinator) -> QueryServiceClient<Channel> {
    let id = Coordinator::admin_identity(&c.dir);
    QueryServiceClient::new(
        connect(&c.addr, &c.options(Some(id)))
            .await
            .expect("admin channel"),
    )
}

async fn http_json(http: &str, path: &str) -> Value {
    let r = get_with(http, path, &[("Authorization", &format!("Bearer {TOKEN}"))]).await;
    assert_eq!(r.status, 200, "{path}: {}", r.body);
    r.json()
}

/// JSON as the HTTP API writes it (an f32 printed as f32, not widened).
/// The gRPC request an HTTP query string asks for (the fields share their
/// names; numbers are numbers).
fn request_of<T: serde::de::DeserializeOwned>(query: &str) -> T {
    let mut o = serde_json::Map::new();
    for kv in query.split('&') {
        let (k, v) = kv.split_once('=').expect("key=value");
        let v = v
            .parse::<u64>()
            .map(Value::from)
            .unwrap_or_else(|_| v.into());
        o.insert(k.to_string(), v);
    }
    serde_json::from_value(Value::Object(o)).expect("a request")
}

/// The same filters as a gRPC request and as an HTTP query string (values
/// percent-encoded; `limit` is left to [`walk`], which pages both alike).
fn filters<T: serde::de::DeserializeOwned>(raw: &str) -> (T, String) {
    let query: Vec<String> = raw
        .split('&')
        .filter(|kv| !kv.starts_with("limit="))
        .map(|kv| {
            let (k, v) = kv.split_once('=').expect("key=value");
            format!("{k}={}", enc(v))
        })
        .collect();
    (request_of(raw), query.join("&"))
}

fn json(v: &impl serde::Serialize) -> Value {
    serde_json::from_str(&serde_json::to_string(v).unwrap()).unwrap()
}

/// A result as the HTTP API writes it (envelope bytes in base64).
fn entry_json(e: &ResultEntry) -> Value {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut v = json(e);
    let env = e.envelope.clone().unwrap_or_default();
    v["envelope"] = serde_json::json!({
        "measurement": b64.encode(&env.measurement),
        "signature": b64.encode(&env.signature),
    });
    v
}

/// Everything the gRPC face answered, to look for addresses at the end.
#[derive(Default)]
struct Seen(Vec<String>);

impl Seen {
    fn add(&mut self, what: &impl std::fmt::Debug) {
        self.0.push(format!("{what:?}"));
    }
}

/// One page of `Results`: the entries and the next cursor ("" for none).
async fn page(
    q: &mut QueryServiceClient<Channel>,
    req: ResultsRequest,
    seen: &mut Seen,
) -> (Vec<ResultEntry>, String) {
    let mut s = q.results(tok(req)).await.expect("results").into_inner();
    let mut out = Vec::new();
    let mut end = None;
    while let Some(item) = s.message().await.expect("results stream") {
        assert!(end.is_none(), "nothing may follow the page end");
        seen.add(&item);
        match item.item.expect("item") {
            results_item::Item::Result(r) => out.push(r),
            results_item::Item::End(e) => end = Some(e.next_cursor),
        }
    }
    (out, end.expect("a page ends with its cursor"))
}

/// Every page of a query over gRPC and over HTTP, page by page: the same
/// results and the same cursors. Returns the results and the page count.
async fn walk(
    q: &mut QueryServiceClient<Channel>,
    http: &str,
    req: ResultsRequest,
    http_query: &str,
    seen: &mut Seen,
) -> (Vec<ResultEntry>, usize) {
    let mut all = Vec::new();
    let mut cursor = String::new();
    let mut pages = 0;
    loop {
        let (items, next) = page(
            q,
            ResultsRequest {
                cursor: cursor.clone(),
                ..req.clone()
            },
            seen,
        )
        .await;
        let mut path = format!("/api/v1/results?limit={}", req.limit.max(1));
        if req.limit == 0 {
            path = "/api/v1/results?limit=100".into();
        }
        if !http_query.is_empty() {
            path.push('&');
            path.push_str(http_query);
        }
        if !cursor.is_empty() {
            path.push_str(&format!("&cursor={}", enc(&cursor)));
        }
        let h = http_json(http, &path).await;
        let h_items = h["results"].as_array().unwrap();
        assert_eq!(h_items.len(), items.len(), "{path}");
        for (g, hv) in items.iter().zip(h_items) {
            assert_eq!(&entry_json(g), hv, "{path}");
        }
        assert_eq!(
            h["next_cursor"].as_str().unwrap_or(""),
            next,
            "{path}: cursors"
        );
        pages += 1;
        all.extend(items);
        if next.is_empty() {
            return (all, pages);
        }
        cursor = next;
    }
}

fn status_of<T: std::fmt::Debug>(r: Result<T, tonic::Status>, what: &str) -> tonic::Status {
    match r {
        Ok(v) => panic!("{what} must be refused, got {v:?}"),
        Err(s) => s,
    }
}

async fn wait_done(q: &mut QueryServiceClient<Channel>, id: &str) {
    until(Duration::from_secs(40), "the campaign to be done", || {
        let mut q = q.clone();
        let id = id.to_string();
        async move {
            q.campaign(tok(CampaignRequest { id }))
                .await
                .map(|r| r.into_inner().campaign.unwrap_or_default().state == "done")
                .unwrap_or(false)
        }
    })
    .await;
}

async fn next_event(w: &mut tonic::Streaming<WatchEvent>, limit: Duration) -> Option<WatchEvent> {
    match tokio::time::timeout(limit, w.message()).await {
        Ok(r) => r.expect("watch stream"),
        Err(_) => None,
    }
}

/// `n` result events (verdict events kept aside).
async fn watch_results(
    w: &mut tonic::Streaming<WatchEvent>,
    n: usize,
    seen: &mut Seen,
) -> (Vec<String>, Vec<VerdictEntry>) {
    let (mut ids, mut verdicts) = (Vec::new(), Vec::new());
    while ids.len() < n {
        let e = next_event(w, Duration::from_secs(30))
            .await
            .unwrap_or_else(|| panic!("watch stalled after {} of {n} results", ids.len()));
        seen.add(&e);
        match e.event.expect("event") {
            watch_event::Event::Result(r) => {
                assert!(
                    e.id.parse::<u64>().is_ok_and(|n| n > 0),
                    "a result event's id is its commit sequence number: {:?}",
                    e.id
                );
                ids.push(r.id);
            }
            watch_event::Event::Verdict(v) => verdicts.push(v),
            // One run makes no change event (a baseline needs two).
            watch_event::Event::Change(c) => panic!("unexpected change event {c:?}"),
        }
    }
    (ids, verdicts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_query_service_answers_as_the_http_api() {
    let c = Coordinator::init().with_http();
    c.set_read_tokens(&[TOKEN]);
    c.set_config("http_rate_per_minute", "0");
    let c = c.start();
    let http = c.http.clone().unwrap();
    let mut seen = Seen::default();

    // Targets on 127.0.0.2: one that answers, one that refuses.
    let (open_port, closed) = open_and_closed_ports().await;

    let fleet = fleet(&c, 30).await;
    let mut q = token_client(&c).await;

    // Health and reflection, on the same port, to a client without a
    // certificate.
    let ch = connect(&c.addr, &c.options(None)).await.unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(ch.clone());
    for service in ["", "vantage.v1.QueryService"] {
        let r = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .expect("health")
            .into_inner();
        assert_eq!(
            r.status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
            "{service:?}"
        );
    }
    {
        use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
        use tonic_reflection::pb::v1::ServerReflectionRequest;
        let reqs = vec![
            ServerReflectionRequest {
                host: String::new(),
                message_request: Some(MessageRequest::ListServices(String::new())),
            },
            ServerReflectionRequest {
                host: String::new(),
                message_request: Some(MessageRequest::FileContainingSymbol(
                    "vantage.v1.QueryService".into(),
                )),
            },
        ];
        let mut answers = ServerReflectionClient::new(ch)
            .server_reflection_info(tokio_stream::iter(reqs))
            .await
            .expect("reflection")
            .into_inner();
        let first = answers.message().await.unwrap().unwrap();
        let Some(MessageResponse::ListServicesResponse(list)) = first.message_response else {
            panic!("unexpected reflection answer {first:?}");
        };
        let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
        assert!(
            names.iter().any(|n| n == "vantage.v1.QueryService"),
            "{names:?}"
        );
        let second = answers.message().await.unwrap().unwrap();
        let Some(MessageResponse::FileDescriptorResponse(fd)) = second.message_response else {
            panic!("unexpected reflection answer {second:?}");
        };
        let bytes: Vec<u8> = fd.file_descriptor_proto.concat();
        for method in ["Watch", "Aggregation", "QueryVerdicts", "ResultsRequest"] {
            assert!(
                bytes.windows(method.len()).any(|w| w == method.as_bytes()),
                "{method} not in the reflected descriptor"
            );
        }
    }

    // Access: no token, a wrong one, a malformed one; an agent certificate
    // is no read credential.
    let e = status_of(q.agents(AgentsRequest {}).await, "no token");
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    assert!(e.message().contains("read token"), "{e:?}");
    let e = status_of(
        q.agents(authed(AgentsRequest {}, "nope")).await,
        "bad token",
    );
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    let mut basic = Request::new(AgentsRequest {});
    basic
        .metadata_mut()
        .insert("authorization", "Basic eDp5".parse().unwrap());
    let e = status_of(q.agents(basic).await, "basic auth");
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    let e = status_of(
        q.watch(WatchRequest::default()).await.map(|_| ()),
        "watch without token",
    );
    assert_eq!(e.code(), Code::Unauthenticated);

    // A live watch opened before the campaign (after the feed moved past
    // the filled results: it polls every 500 ms).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut live = q
        .watch(tok(WatchRequest::default()))
        .await
        .expect("watch")
        .into_inner();

    let targets = tcp_targets("127.0.0.2", &[open_port, closed]);
    let id = c.create_campaign(&campaign_spec("grpc-e2e", "4s", "", &targets));
    wait_done(&mut q, &id).await;

    // Agents: as over HTTP (last_seen moves with heartbeats), read token
    // and admin certificate alike.
    let strip = |mut v: Value| {
        for a in v.as_array_mut().unwrap() {
            assert!(a["last_seen_us"].as_i64().unwrap() > 0, "{a}");
            a.as_object_mut().unwrap().remove("last_seen_us");
        }
        v
    };
    let g = q.agents(tok(AgentsRequest {})).await.unwrap().into_inner();
    seen.add(&g);
    assert_eq!(g.agents.len(), 3);
    assert!(g.agents.iter().all(|a| a.connected));
    let h = http_json(&http, "/api/v1/agents").await;
    let g_json = strip(json(&g.agents));
    assert_eq!(g_json, strip(h["agents"].clone()));
    let by_admin = admin_client(&c)
        .await
        .agents(AgentsRequest {})
        .await
        .expect("the admin certificate reads")
        .into_inner();
    assert_eq!(strip(json(&by_admin.agents)), g_json);

    // Campaigns and one campaign with its runs.
    let g = q
        .campaigns(tok(CampaignsRequest {}))
        .await
        .unwrap()
        .into_inner();
    seen.add(&g);
    let h = http_json(&http, "/api/v1/campaigns").await;
    assert_eq!(json(&g.campaigns), h["campaigns"]);
    assert_eq!(g.campaigns[0].campaign_id, id);
    assert_eq!(g.campaigns[0].runs_done, 1);
    let g = q
        .campaign(tok(CampaignRequest { id: id.clone() }))
        .await
        .unwrap()
        .into_inner();
    seen.add(&g);
    let mut g_json = json(&g);
    for run in g_json["runs"].as_array_mut().unwrap() {
        // Counters are lists over gRPC, maps over HTTP.
        for counters in ["failures", "consent_skipped"] {
            let map: serde_json::Map<String, Value> = run[counters]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| (c["name"].as_str().unwrap().to_string(), c["value"].clone()))
                .collect();
            run[counters] = Value::Object(map);
        }
    }
    assert_eq!(
        g_json,
        http_json(&http, &format!("/api/v1/campaigns/{id}")).await
    );
    assert_eq!(g.runs[0].state, "done");
    assert_eq!(g.runs[0].groups.len(), 2);

    // Results: the cursor walks every stored result exactly once, oldest
    // first, page for page what HTTP answers.
    let stored = c.stats().await.results_stored as usize;
    assert_eq!(stored, 36, "30 filled + 2 targets x 3 agents");
    let all_req = ResultsRequest {
        limit: 7,
        ..Default::default()
    };
    let (all, pages) = walk(&mut q, &http, all_req, "", &mut seen).await;
    assert_eq!(pages, 6);
    let all_ids: Vec<String> = all.iter().map(|r| r.id.clone()).collect();
    assert_eq!(all_ids.iter().collect::<HashSet<_>>().len(), stored);
    let mut sorted = all_ids.clone();
    sorted.sort();
    assert_eq!(sorted, all_ids, "oldest id first");
    let listed: HashSet<String> = c.result_ids().await.into_iter().collect();
    assert_eq!(all_ids.iter().cloned().collect::<HashSet<_>>(), listed);
    // The envelope is the one stored: it re-verifies with the agent's key.
    let keys = q.agents(tok(AgentsRequest {})).await.unwrap().into_inner();
    for r in &all {
        let a = keys
            .agents
            .iter()
            .find(|a| a.agent_id == r.agent_id)
            .unwrap();
        let key: [u8; 32] = hex::decode(&a.public_key).unwrap().try_into().unwrap();
        let vk = ed25519_dalek::VerifyingKey::from_bytes(&key).unwrap();
        vantage_proto::envelope::verify(&vk, r.envelope.as_ref().unwrap())
            .unwrap_or_else(|e| panic!("{} does not verify: {e}", r.id));
    }

    // The same filters, the same answers.
    let ctl = fleet[2].id.clone();
    let target = format!("tcp 127.0.0.2:{closed}");
    let no_failure = all.iter().filter(|r| r.failures.is_empty()).count();
    assert!((3..stored).contains(&no_failure), "{no_failure}");
    // Each filter set over gRPC and over HTTP (`limit` pages gRPC alike).
    let cases = [
        (format!("campaign={id}&limit=4"), 6),
        (format!("agent={ctl}"), 2),
        ("country=de".into(), 2),
        ("asn=4134".into(), 6),
        ("failure=connection_refused".into(), 3),
        (format!("target={target}"), 3),
        ("kind=tcp".into(), stored),
        ("kind=dns".into(), 0),
        ("since=2999-01-01".into(), 0),
        (
            "since=2020-01-01T00:00:00Z&until=2999-01-01&failure=none".into(),
            no_failure,
        ),
    ];
    for (raw, want) in cases {
        let (req, query) = filters::<ResultsRequest>(&raw);
        let (got, _) = walk(&mut q, &http, req, &query, &mut seen).await;
        assert_eq!(got.len(), want, "{query}");
    }

    // Verdicts with the same filters.
    let verdict_cases = [
        (format!("campaign={id}"), 4),
        ("status=ok&country=CN".into(), 2),
        (format!("status=down&target={target}"), 2),
        ("mechanism=none&asn=4134".into(), 4),
        (format!("agent={}", fleet[0].id), 2),
        ("country=DE".into(), 0),
    ];
    for (raw, want) in verdict_cases {
        let (req, query) = filters::<QueryVerdictsRequest>(&raw);
        let g = q.query_verdicts(tok(req)).await.unwrap().into_inner();
        seen.add(&g);
        assert_eq!(g.verdicts.len(), want, "{query}");
        let h = http_json(&http, &format!("/api/v1/verdicts?{query}")).await;
        assert_eq!(json(&g.verdicts), h["verdicts"], "{query}");
    }

    // Aggregation over two axes (and one).
    for (x, y, want_cells) in [
        ("target", "country", 2usize),
        ("day", "mechanism", 1),
        ("country", "", 1),
    ] {
        let g = q
            .aggregation(tok(AggregationRequest {
                axis_x: x.into(),
                axis_y: y.into(),
                filter: Some(QueryVerdictsRequest {
                    campaign: id.clone(),
                    ..Default::default()
                }),
                backend: String::new(),
            }))
            .await
            .unwrap()
            .into_inner();
        seen.add(&g);
        assert_eq!(g.result.len(), want_cells, "{x} {y}");
        let total: u64 = g.result.iter().map(|c| c.measurement_count).sum();
        assert_eq!(total, 4);
        let mut path = format!("/api/v1/aggregation?axis_x={x}&campaign={id}");
        if !y.is_empty() {
            path.push_str(&format!("&axis_y={y}"));
        }
        let mut g_json = json(&g);
        if y.is_empty() {
            g_json.as_object_mut().unwrap().remove("axis_y");
            for cell in g_json["result"].as_array_mut().unwrap() {
                cell.as_object_mut().unwrap().remove("y");
            }
        }
        assert_eq!(g_json, http_json(&http, &path).await, "{path}");
    }

    // Bad filters: INVALID_ARGUMENT naming the field, with HTTP's sentence.
    let bad_results = [
        ("country", "country=China"),
        ("kind", "kind=ftp"),
        ("campaign", "campaign=nope"),
        ("agent", "agent=nope"),
        ("since", "since=yesterday"),
        ("since", "since=2024-02-01&until=2024-01-01"),
        ("cursor", "cursor=!!"),
        ("limit", "limit=999999"),
    ];
    for (field, query) in bad_results {
        let req: ResultsRequest = request_of(query);
        let e = status_of(q.results(tok(req)).await.map(|_| ()), field);
        assert_eq!(e.code(), Code::InvalidArgument, "{field}: {e:?}");
        assert!(e.message().starts_with(field), "{field}: {}", e.message());
        let h = get_with(
            &http,
            &format!("/api/v1/results?{query}"),
            &[("Authorization", &format!("Bearer {TOKEN}"))],
        )
        .await;
        assert_eq!(h.status, 400);
        assert_eq!(h.json()["error"], e.message(), "{field}: the same sentence");
    }
    let e = status_of(
        q.query_verdicts(tok(QueryVerdictsRequest {
            status: "bogus".into(),
            ..Default::default()
        }))
        .await,
        "status",
    );
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().starts_with("status"), "{e:?}");
    for (x, y, word) in [
        ("", "", "axis_x"),
        ("planet", "", "axis_x"),
        ("country", "country", "differ"),
        ("country", "colour", "axis_y"),
    ] {
        let e = status_of(
            q.aggregation(tok(AggregationRequest {
                axis_x: x.into(),
                axis_y: y.into(),
                ..Default::default()
            }))
            .await,
            word,
        );
        assert_eq!(e.code(), Code::InvalidArgument, "{x} {y}");
        assert!(e.message().contains(word), "{x} {y}: {e:?}");
    }
    let e = status_of(
        q.aggregation(tok(AggregationRequest {
            axis_x: "country".into(),
            filter: Some(QueryVerdictsRequest {
                since: "soon".into(),
                ..Default::default()
            }),
            ..Default::default()
        }))
        .await,
        "aggregation filter",
    );
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().starts_with("since"), "{e:?}");
    for (id, code, says) in [
        ("not-a-uuid", Code::InvalidArgument, "UUID"),
        ("0190c0de-0000-7000-8000-000000000000", Code::NotFound, ""),
    ] {
        let r = q.campaign(tok(CampaignRequest { id: id.into() })).await;
        let e = status_of(r, id);
        assert_eq!(e.code(), code, "{e:?}");
        assert!(e.message().contains(says), "{e:?}");
    }
    let e = status_of(
        q.watch(tok(WatchRequest {
            last_event_id: "zzz".into(),
        }))
        .await
        .map(|_| ()),
        "last_event_id",
    );
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().starts_with("last_event_id"), "{e:?}");

    // The live watch saw the campaign's six results and its verdicts.
    let campaign_ids: HashSet<String> = all
        .iter()
        .filter(|r| r.campaign_id == id)
        .map(|r| r.id.clone())
        .collect();
    assert_eq!(campaign_ids.len(), 6);
    let (live_ids, mut live_verdicts) = watch_results(&mut live, 6, &mut seen).await;
    assert_eq!(
        live_ids.iter().cloned().collect::<HashSet<_>>(),
        campaign_ids,
        "a fresh watch sends only new results, each once"
    );
    while let Some(e) = next_event(&mut live, Duration::from_secs(3)).await {
        seen.add(&e);
        match e.event.unwrap() {
            watch_event::Event::Verdict(v) => live_verdicts.push(v),
            watch_event::Event::Result(r) => panic!("unexpected result {}", r.id),
            watch_event::Event::Change(c) => panic!("unexpected change event {c:?}"),
        }
    }
    assert!(
        live_verdicts.iter().any(|v| v.campaign_id == id),
        "{live_verdicts:?}"
    );

    // Resume after an event (its commit sequence number): every result
    // stored after it, in the order stored (what an incremental sync with
    // after_seq lists), then live ones, nothing twice.
    let from = 20u64;
    let (synced, _) = page(
        &mut q,
        ResultsRequest {
            after_seq: Some(from),
            limit: 1000,
            ..Default::default()
        },
        &mut seen,
    )
    .await;
    let synced: Vec<String> = synced.into_iter().map(|r| r.id).collect();
    assert_eq!(synced.len(), stored - from as usize);
    let mut resumed = q
        .watch(tok(WatchRequest {
            last_event_id: from.to_string(),
        }))
        .await
        .expect("watch")
        .into_inner();
    let (replayed, _) = watch_results(&mut resumed, synced.len(), &mut seen).await;
    assert_eq!(replayed, synced);
    c.ctl_ok(&[
        "dispatch",
        &format!(r#"{{"tcp":{{"host":"127.0.0.2","port":{open_port}}}}}"#),
    ]);
    let (fresh, _) = watch_results(&mut resumed, 3, &mut seen).await;
    assert_eq!(fresh.iter().collect::<HashSet<_>>().len(), 3);
    for f in &fresh {
        assert!(!all_ids.contains(f), "{f} sent twice");
    }
    while let Some(e) = next_event(&mut resumed, Duration::from_secs(2)).await {
        seen.add(&e);
        assert!(
            !matches!(e.event, Some(watch_event::Event::Result(_))),
            "extra result {e:?}"
        );
    }

    // No agent address anywhere: agents reached us from 127.0.0.1, targets
    // were on 127.0.0.2 (and synthetic results name 192.0.2.1).
    assert!(seen.0.len() > 50, "{} answers looked at", seen.0.len());
    for s in &seen.0 {
        assert!(
            !s.contains("127.0.0.1") && !s.contains("[::1]"),
            "an address in an answer: {s}"
        );
    }
    assert!(
        seen.0.iter().any(|s| s.contains("127.0.0.2")),
        "the check looks at the right text"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_reads_share_the_http_rate_limit_per_token() {
    let other = "another-read-token-9876543210";
    let c = Coordinator::init().with_http();
    c.set_read_tokens(&[TOKEN, other]);
    c.set_config("http_rate_per_minute", "4");
    let c = c.start();
    let http = c.http.clone().unwrap();
    let mut q = token_client(&c).await;

    // Refusals take nothing from a bucket.
    let e = status_of(q.agents(AgentsRequest {}).await, "no token");
    assert_eq!(e.code(), Code::Unauthenticated);
    for i in 0..2 {
        q.agents(tok(AgentsRequest {}))
            .await
            .unwrap_or_else(|e| panic!("gRPC read {i}: {e:?}"));
        let h = get_with(
            &http,
            "/api/v1/agents",
            &[("Authorization", &format!("Bearer {TOKEN}"))],
        )
        .await;
        assert_eq!(h.status, 200, "HTTP read {i}: {}", h.body);
    }
    // Four taken across both faces: the fifth is refused on either.
    let e = status_of(q.campaigns(tok(CampaignsRequest {})).await, "fifth read");
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("rate limit"), "{e:?}");
    let retry: u64 = e
        .metadata()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("retry-after");
    assert!((1..=60).contains(&retry), "{retry}");
    let e = status_of(
        q.watch(tok(WatchRequest::default())).await.map(|_| ()),
        "watch over the limit",
    );
    assert_eq!(e.code(), Code::ResourceExhausted);
    let h = get_with(
        &http,
        "/api/v1/agents",
        &[("Authorization", &format!("Bearer {TOKEN}"))],
    )
    .await;
    assert_eq!(h.status, 429, "{}", h.body);
    // Another token has its own bucket; the admin certificate has none.
    q.agents(authed(AgentsRequest {}, other))
        .await
        .expect("another token's bucket");
    let mut admin = admin_client(&c).await;
    for _ in 0..6 {
        admin.agents(AgentsRequest {}).await.expect("admin reads");
    }
    assert_eq!(c.counter("refused/rate_limited").await, 2);
    assert_eq!(c.counter("refused/no_certificate").await, 1);
    // The bucket refills at the configured rate.
    tokio::time::sleep(Duration::from_secs(retry)).await;
    q.agents(tok(AgentsRequest {}))
        .await
        .expect("a read after the wait");
}
