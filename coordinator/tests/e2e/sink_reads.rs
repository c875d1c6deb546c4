//! Aggregations from ClickHouse agree with sled's: a coordinator with the
//! ClickHouse sink on one server (no cluster: the plain
//! `ReplacingMergeTree` tables), three real agents, two real campaigns;
//! every axis and pair of axes, and the filters, over HTTP and gRPC, with
//! `backend=clickhouse` and without, give the same cells.

use std::time::Duration;

use serde_json::Value;
use vantage_proto::v1::query_service_client::QueryServiceClient;
use vantage_proto::v1::{AggregationRequest, QueryVerdictsRequest};
use vantage_testkit::clickhouse::{missing, Cluster};

use crate::harness::*;
use crate::http::get;

const AXES: [&str; 8] = [
    "country",
    "asn",
    "target",
    "mechanism",
    "day",
    "hour",
    "kind",
    "campaign",
];

async fn json(http: &str, path: &str) -> Value {
    let r = get(http, path).await;
    assert_eq!(r.status, 200, "{path}: {}", r.body);
    r.json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregations_from_clickhouse_equal_those_from_sled() {
    let test = "aggregations_from_clickhouse_equal_those_from_sled";
    if !vantage_testkit::skip::require(
        test,
        &missing(),
        "bash deploy/scripts/install-test-deps.sh installs them",
    ) {
        return;
    }
    let cluster = Cluster::start(1, 1).expect("ClickHouse");
    let c = Coordinator::init().with_http();
    c.set_config("http_rate_per_minute", "0");
    c.add_config_table(&format!(
        "[sink.clickhouse]\nurls = [{:?}]\ninterval_ms = 200\n",
        cluster.http_urls()[0]
    ));
    let c = c.start();
    let http = c.http.clone().unwrap();
    let _fleet = fleet(&c, 0).await;

    // Targets on 127.0.0.2: one that answers, one that refuses.
    let (open_port, closed) = open_and_closed_ports().await;
    let targets = tcp_targets("127.0.0.2", &[open_port, closed]);
    let ids = [
        c.create_campaign(&campaign_spec("sink-a", "4s", "", &targets)),
        c.create_campaign(&campaign_spec("sink-b", "4s", "", &targets)),
    ];
    for id in &ids {
        until(
            Duration::from_secs(60),
            "the campaign to be done",
            || async {
                json(&http, &format!("/api/v1/campaigns/{id}")).await["campaign"]["state"] == "done"
            },
        )
        .await;
    }

    // Every verdict in sled is in ClickHouse, at its stored revision.
    let sled_verdicts = json(&http, "/api/v1/verdicts").await["verdicts"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(
        sled_verdicts, 8,
        "2 campaigns x 2 targets x 2 inside agents"
    );
    until(
        Duration::from_secs(60),
        "the verdicts in ClickHouse",
        || async {
            cluster
                .query(0, "SELECT count() FROM vantage.results_verdicts FINAL")
                .is_ok_and(|n| n == sled_verdicts.to_string())
        },
    )
    .await;

    let mut queries: Vec<String> = Vec::new();
    for x in AXES {
        queries.push(format!("axis_x={x}"));
        for y in AXES.iter().filter(|y| **y != x) {
            queries.push(format!("axis_x={x}&axis_y={y}"));
        }
    }
    for filter in [
        format!("campaign={}", ids[0]),
        "country=cn".into(),
        "status=ok".into(),
        "mechanism=none".into(),
        format!("target=tcp%20127.0.0.2:{closed}"),
        "kind=tcp".into(),
        "since=2020-01-01&until=2999-01-01".into(),
        "until=2020-01-01".into(),
    ] {
        queries.push(format!("axis_x=campaign&axis_y=target&{filter}"));
    }
    let mut nonempty = 0;
    for q in &queries {
        let from_sled = json(&http, &format!("/api/v1/aggregation?{q}")).await;
        let from_ch = json(
            &http,
            &format!("/api/v1/aggregation?{q}&backend=clickhouse"),
        )
        .await;
        assert_eq!(from_ch, from_sled, "{q}");
        nonempty += usize::from(!from_sled["result"].as_array().unwrap().is_empty());
    }
    assert!(
        nonempty >= queries.len() - 1,
        "only the until=2020 query counts nothing"
    );
    let csv = |q: &str| {
        let http = http.clone();
        let q = q.to_string();
        async move {
            get(&http, &format!("/api/v1/aggregation?{q}&format=csv"))
                .await
                .body
        }
    };
    assert_eq!(
        csv("axis_x=country&axis_y=mechanism&backend=clickhouse").await,
        csv("axis_x=country&axis_y=mechanism").await
    );
    let bad = get(&http, "/api/v1/aggregation?axis_x=country&backend=parquet").await;
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(
        bad.body.contains("backend must be sled or clickhouse"),
        "{}",
        bad.body
    );

    // gRPC, with a filter.
    let mut q = QueryServiceClient::new(c.admin_channel().await);
    let ask = |backend: &str| AggregationRequest {
        axis_x: "campaign".into(),
        axis_y: "mechanism".into(),
        filter: Some(QueryVerdictsRequest {
            country: "CN".into(),
            ..Default::default()
        }),
        backend: backend.into(),
    };
    let a = q.aggregation(ask("")).await.expect("sled").into_inner();
    let b = q
        .aggregation(ask("clickhouse"))
        .await
        .expect("clickhouse")
        .into_inner();
    assert!(!a.result.is_empty());
    assert_eq!(a, b);
}
