//! The ClickHouse sink against a real 2-shard x 2-replica cluster
//! (Debian's clickhouse-server 18.16 and zookeeper, run by the test kit),
//! real coordinator processes and load-generating agents over mTLS.
//!
//! After each ordeal: the distinct ids in ClickHouse equal the results in
//! each coordinator's sled, which equal the results acked to its agents;
//! nothing is there twice (without `FINAL` too, so the retried batches
//! were dropped as identical blocks); and every envelope read back from
//! ClickHouse verifies with its agent's key. Needs the workspace binaries
//! (`cargo build --workspace --bins`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ed25519_dalek::VerifyingKey;
use vantage_bench::{bench_result, BenchAgent, CoordinatorProc, Pump};
use vantage_proto::v1::query_service_client::QueryServiceClient;
use vantage_proto::v1::{ListResultsRequest, SignedResult, SinkStatus, StatsRequest, StoredResult};
use vantage_testkit::clickhouse::{missing, Cluster, CLUSTER};

const SIZE: usize = 300;

fn cluster_or_skip(test: &str) -> Option<Cluster> {
    if !vantage_testkit::skip::require(
        test,
        &missing(),
        "bash deploy/scripts/install-test-deps.sh installs them",
    ) {
        return None;
    }
    Some(Cluster::start(2, 2).expect("cluster"))
}

fn sink_table(c: &Cluster, database: &str, batch: usize) -> String {
    let urls: Vec<String> = c.http_urls().iter().map(|u| format!("{u:?}")).collect();
    format!(
        "[sink.clickhouse]\nurls = [{}]\ndatabase = \"{database}\"\ncluster = \"{CLUSTER}\"\n\
         batch_size = {batch}\ninterval_ms = 200\n",
        urls.join(", ")
    )
}

fn coordinator(c: &Cluster, database: &str, batch: usize) -> CoordinatorProc {
    CoordinatorProc::start_with(|co| co.add_config_table(&sink_table(c, database, batch)))
        .expect("coordinator")
}

async fn sink(c: &CoordinatorProc) -> SinkStatus {
    let mut admin = c.admin().await.expect("admin");
    let stats = admin
        .stats(StatsRequest {})
        .await
        .expect("stats")
        .into_inner();
    stats.sink.expect("a sink is configured")
}

/// Sends `per_agent` results from each agent, in batches of 100, and
/// returns how many were acked.
async fn pump(c: &CoordinatorProc, agents: &[BenchAgent], per_agent: usize) -> u64 {
    let mut acked = 0;
    for a in agents {
        let mut p = Pump::new(c.session(a, &[]).await.expect("session"), 8);
        let results: Vec<SignedResult> = (0..per_agent).map(|i| bench_result(a, i, SIZE)).collect();
        for chunk in results.chunks(100) {
            p.send(chunk.to_vec()).await.expect("send");
        }
        p.drain().await.expect("acks");
        acked += p.acked;
    }
    acked
}

/// Waits until the sink of `c` has every stored result confirmed.
async fn until_sunk(c: &CoordinatorProc, limit: Duration) -> SinkStatus {
    let until = Instant::now() + limit;
    loop {
        let s = sink(c).await;
        if s.lag_results == 0 && s.last_seq > 0 {
            return s;
        }
        assert!(
            Instant::now() < until,
            "the sink still lags after {} s: {s:?}",
            limit.as_secs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until sled holds `n` results.
async fn until_stored(c: &CoordinatorProc, n: u64) {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let got = c.stats().await.results_stored;
        if got == n {
            return;
        }
        assert!(Instant::now() < until, "sled holds {got} results, not {n}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn number(c: &Cluster, sql: &str) -> u64 {
    let out = c.query(0, sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    out.parse().unwrap_or_else(|_| panic!("{sql}: {out:?}"))
}

/// Every id once, per coordinator as many as `expected` says, and every
/// envelope verifying with its agent's key.
fn check_cluster(
    c: &Cluster,
    expected: &HashMap<String, u64>,
    keys: &HashMap<String, VerifyingKey>,
) {
    c.sync_replicas("vantage.results_local")
        .expect("sync replicas");
    let total: u64 = expected.values().sum();
    let t = "vantage.results";
    assert_eq!(number(c, &format!("SELECT uniqExact(id) FROM {t}")), total);
    assert_eq!(
        number(c, &format!("SELECT count() FROM {t}")),
        total,
        "no row twice, even before merges: retried batches were dropped as identical blocks"
    );
    assert_eq!(number(c, &format!("SELECT count() FROM {t} FINAL")), total);
    let by: HashMap<String, u64> = c
        .query(
            0,
            &format!("SELECT coordinator, count() FROM {t} GROUP BY coordinator"),
        )
        .expect("by coordinator")
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once('\t')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect();
    assert_eq!(&by, expected, "rows per coordinator");
    let rows = c
        .query(
            0,
            &format!("SELECT agent, hex(measurement), hex(signature) FROM {t}"),
        )
        .expect("envelopes");
    let mut verified = 0u64;
    for l in rows.lines() {
        let f: Vec<&str> = l.split('\t').collect();
        let key = keys
            .get(f[0])
            .unwrap_or_else(|| panic!("unknown agent {}", f[0]));
        let env = SignedResult {
            measurement: hex::decode(f[1]).expect("hex").into(),
            signature: hex::decode(f[2]).expect("hex").into(),
        };
        vantage_proto::envelope::verify(key, &env).expect("the envelope verifies");
        verified += 1;
    }
    assert_eq!(verified, total);
}

fn keys_of(agents: &[&[BenchAgent]]) -> HashMap<String, VerifyingKey> {
    agents
        .iter()
        .flat_map(|a| a.iter())
        .map(|a| (a.agent_id.clone(), a.key.verifying_key()))
        .collect()
}

/// Two coordinators sink into one cluster; one is `kill -9`'d mid-sink and
/// restarted, and a replica is `kill -9`'d while they sink and restarted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_two_coordinators_sink_each_result_once_through_kills() {
    let Some(mut cluster) =
        cluster_or_skip("clickhouse_two_coordinators_sink_each_result_once_through_kills")
    else {
        return;
    };
    let mut a = coordinator(&cluster, "vantage", 10);
    let b = coordinator(&cluster, "vantage", 5_000);
    let agents_a = a.enroll(2, &["a"]).await.expect("enroll");
    let agents_b = b.enroll(2, &["b"]).await.expect("enroll");

    // Both sinks have made or found the tables (an `ON CLUSTER` CREATE
    // waits for every node, a dead one included).
    let mut acked_a = pump(&a, &agents_a, 100).await;
    let mut acked_b = pump(&b, &agents_b, 100).await;
    until_sunk(&a, Duration::from_secs(60)).await;
    until_sunk(&b, Duration::from_secs(60)).await;

    // A replica of shard 1 dies while both sink.
    cluster.kill9(1);
    acked_a += pump(&a, &agents_a, 3_000).await;
    acked_b += pump(&b, &agents_b, 3_000).await;
    assert_eq!(acked_b, 6_200);

    // A dies mid-sink: some batches confirmed, some not (its batches are
    // small, so its sink trails its ingest; pumped again until it does).
    let mut at_kill = sink(&a).await;
    for _ in 0..10 {
        if at_kill.lag_results > 0 {
            break;
        }
        acked_a += pump(&a, &agents_a, 500).await;
        at_kill = sink(&a).await;
    }
    a.kill9();
    assert!(
        at_kill.lag_results > 0 && at_kill.cursor > 200,
        "A was killed mid-sink: {at_kill:?}"
    );
    cluster.restart(1).expect("restart the replica");
    a.restart();

    let sa = until_sunk(&a, Duration::from_secs(120)).await;
    let sb = until_sunk(&b, Duration::from_secs(120)).await;
    assert_ne!(sa.coordinator_id, sb.coordinator_id);
    assert_eq!(a.stats().await.results_stored, acked_a);
    assert_eq!(b.stats().await.results_stored, acked_b);
    let expected = HashMap::from([
        (sa.coordinator_id.clone(), acked_a),
        (sb.coordinator_id.clone(), acked_b),
    ]);
    check_cluster(&cluster, &expected, &keys_of(&[&agents_a, &agents_b]));

    // vantagectl verify-export checks rows exported from ClickHouse.
    let rows = cluster
        .query(
            0,
            &format!(
                "SELECT id, agent, hex(measurement) AS measurement_hex, \
                 hex(signature) AS signature_hex FROM vantage.results FINAL \
                 WHERE coordinator = '{}' FORMAT JSONEachRow",
                sb.coordinator_id
            ),
        )
        .expect("export from ClickHouse");
    let dir = tempfile::tempdir().expect("temp dir");
    let (file, keys) = (
        dir.path().join("rows.jsonl"),
        dir.path().join("agents.json"),
    );
    std::fs::write(&file, &rows).expect("write rows");
    std::fs::write(&keys, b.ctl_ok(&["--output", "json", "agents"])).expect("write keys");
    let out = b.ctl_ok(&[
        "verify-export",
        file.to_str().unwrap(),
        "--agents",
        keys.to_str().unwrap(),
    ]);
    assert!(out.contains("6200 verified, 0 failed"), "{out}");
}

/// The whole cluster is down for a minute: ingest goes on, the lag shows
/// in stats, and the sink catches up when the cluster is back. A
/// coordinator pointed at tables of the wrong shape says what is wrong.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_the_sink_waits_out_a_stopped_cluster_and_names_a_wrong_table() {
    let Some(mut cluster) =
        cluster_or_skip("clickhouse_the_sink_waits_out_a_stopped_cluster_and_names_a_wrong_table")
    else {
        return;
    };
    // Tables of the wrong shape in database `bad`.
    for sql in [
        format!("CREATE DATABASE bad ON CLUSTER {CLUSTER}"),
        format!(
            "CREATE TABLE bad.results_local ON CLUSTER {CLUSTER} (id String, seq UInt32) \
             ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{{shard}}/bad', '{{replica}}') ORDER BY id"
        ),
        format!(
            "CREATE TABLE bad.results ON CLUSTER {CLUSTER} AS bad.results_local \
             ENGINE = Distributed({CLUSTER}, bad, results_local, cityHash64(id))"
        ),
    ] {
        cluster.query(0, &sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    let wrong = coordinator(&cluster, "bad", 1_000);
    let c = coordinator(&cluster, "vantage", 1_000);
    let agents = c.enroll(2, &["a"]).await.expect("enroll");
    let first = pump(&c, &agents, 1_000).await;
    until_sunk(&c, Duration::from_secs(60)).await;

    let err = sink(&wrong).await.last_error;
    assert!(
        err.contains("bad.results_local: column seq is UInt32, expected UInt64")
            && err.contains("has no column signature"),
        "{err}"
    );
    drop(wrong);

    let down_at = Instant::now();
    for i in 0..cluster.nodes.len() {
        cluster.kill9(i);
    }
    let second = pump(&c, &agents, 1_500).await;
    assert_eq!(
        (first, second),
        (2_000, 3_000),
        "ingest goes on without ClickHouse"
    );
    let until = Instant::now() + Duration::from_secs(30);
    let behind = loop {
        let s = sink(&c).await;
        if !s.last_error.is_empty() && s.lag_results == 3_000 {
            break s;
        }
        assert!(Instant::now() < until, "the lag never showed: {s:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(behind.lag_seconds > 0.0, "{behind:?}");
    tokio::time::sleep(Duration::from_secs(60).saturating_sub(down_at.elapsed())).await;
    for i in 0..cluster.nodes.len() {
        cluster.restart(i).expect("restart");
    }
    let s = until_sunk(&c, Duration::from_secs(120)).await;
    assert!(s.errors > 0 && s.last_error.is_empty(), "{s:?}");
    assert_eq!(c.stats().await.results_stored, 5_000);
    check_cluster(
        &cluster,
        &HashMap::from([(s.coordinator_id.clone(), 5_000)]),
        &keys_of(&[&agents]),
    );
}

/// The two layers of exactly once, through the sink's own table: a batch
/// sent again as recorded is the identical block, which the replicated
/// table drops; a batch cut differently lands again and collapses under
/// `FINAL`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_a_resent_batch_is_dropped_and_a_recut_one_collapses_under_final() {
    let Some(cluster) = cluster_or_skip(
        "clickhouse_a_resent_batch_is_dropped_and_a_recut_one_collapses_under_final",
    ) else {
        return;
    };
    // Only a full batch of 100 is sent.
    let table =
        sink_table(&cluster, "vantage", 100).replace("interval_ms = 200", "interval_ms = 600000");
    let mut c = CoordinatorProc::start_with(|co| co.add_config_table(&table)).expect("coordinator");
    let agents = c.enroll(1, &["a"]).await.expect("enroll");
    assert_eq!(pump(&c, &agents, 100).await, 100);
    let s = until_sunk(&c, Duration::from_secs(60)).await;
    let id = s.coordinator_id;
    let rows = |final_: &str| {
        cluster
            .sync_replicas("vantage.results_local")
            .expect("sync");
        number(
            &cluster,
            &format!("SELECT count() FROM vantage.results {final_}"),
        )
    };
    assert_eq!(rows(""), 100);

    // As if it had died after ClickHouse confirmed (0, 100] and before it
    // recorded that: the same range is sent again on start.
    for (from, to, without_final) in [(0, 100, 100), (50, 100, 150)] {
        c.terminate();
        {
            let store =
                vantage_coordinator::store::Store::open(&c.dir.join("store")).expect("store");
            store.sink_sending("clickhouse", from, to).expect("record");
        }
        c.restart();
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            let s = sink(&c).await;
            if s.rows == to - from {
                break;
            }
            assert!(
                Instant::now() < until,
                "the recorded batch was not sent: {s:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(rows(""), without_final, "after re-sending ({from}, {to}]");
        assert_eq!(rows("FINAL"), 100);
    }
    assert_eq!(
        number(
            &cluster,
            &format!("SELECT uniqExact(id) FROM vantage.results WHERE coordinator = '{id}'")
        ),
        100
    );
}

/// Every result `ListResults` gives for `req`.
async fn listing(c: &CoordinatorProc, req: ListResultsRequest) -> Vec<StoredResult> {
    let mut q = QueryServiceClient::new(c.admin_channel().await);
    let mut stream = q
        .list_results(req)
        .await
        .expect("list results")
        .into_inner();
    let mut out = Vec::new();
    while let Some(r) = stream.message().await.expect("a result") {
        out.push(r);
    }
    out
}

/// Retention: sled lets go of what ClickHouse confirmed once it is older
/// than `keep_for`, and of nothing ClickHouse has not confirmed. Listing
/// results (what `vantagectl results` and `export` do) answers the same
/// before and after, from sled, from ClickHouse, or from both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_retention_removes_from_sled_only_what_clickhouse_holds() {
    let Some(mut cluster) =
        cluster_or_skip("clickhouse_retention_removes_from_sled_only_what_clickhouse_holds")
    else {
        return;
    };
    let table = format!(
        "{}keep_for = \"2s\"\n",
        sink_table(&cluster, "vantage", 1_000)
    );
    let c = CoordinatorProc::start_with(|co| co.add_config_table(&table)).expect("coordinator");
    let agents = c.enroll(1, &["a"]).await.expect("enroll");
    let by_agent = ListResultsRequest {
        agent_id: agents[0].agent_id.clone(),
        ..Default::default()
    };
    let since = |n: u64| ListResultsRequest {
        after_seq: Some(n),
        ..Default::default()
    };
    assert_eq!(pump(&c, &agents, 1_000).await, 1_000);
    until_sunk(&c, Duration::from_secs(60)).await;
    // Listed from sled, before anything leaves it.
    let sled_by_id = listing(&c, by_agent.clone()).await;
    let sled_by_seq = listing(&c, since(0)).await;
    assert_eq!(sink(&c).await.retired_seq, 0, "listed before retention");
    assert_eq!((sled_by_id.len(), sled_by_seq.len()), (1_000, 1_000));
    until_stored(&c, 0).await;
    let s = sink(&c).await;
    assert_eq!((s.retired, s.retired_seq), (1_000, 1_000));
    // The same from ClickHouse.
    same(
        &listing(&c, by_agent.clone()).await,
        &sled_by_id,
        "by id from ClickHouse",
    );
    same(
        &listing(&c, since(0)).await,
        &sled_by_seq,
        "by seq from ClickHouse",
    );
    same(
        &listing(&c, since(600)).await,
        &sled_by_seq[600..],
        "after 600 from ClickHouse",
    );

    // ClickHouse down: nothing it lacks leaves sled, however old.
    for i in 0..cluster.nodes.len() {
        cluster.kill9(i);
    }
    assert_eq!(pump(&c, &agents, 500).await, 500);
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(
        c.stats().await.results_stored,
        500,
        "unconfirmed results stay"
    );
    for i in 0..cluster.nodes.len() {
        cluster.restart(i).expect("restart");
    }
    let s = until_sunk(&c, Duration::from_secs(120)).await;
    // Some in sled, some only in ClickHouse: one answer, in order.
    let mixed_by_id = listing(&c, by_agent.clone()).await;
    let mixed_by_seq = listing(&c, since(0)).await;
    let in_sled = c.stats().await.results_stored;
    until_stored(&c, 0).await;
    assert!(in_sled > 0, "listed while the last 500 were still in sled");
    assert_eq!(mixed_by_id.len(), 1_500);
    assert!(mixed_by_id
        .windows(2)
        .all(|w| result_id(&w[0]) < result_id(&w[1])));
    same(
        &mixed_by_seq[..1_000],
        &sled_by_seq,
        "the first 1000 by seq",
    );
    same(
        &listing(&c, by_agent).await,
        &mixed_by_id,
        "by id, all in ClickHouse",
    );
    same(
        &listing(&c, since(0)).await,
        &mixed_by_seq,
        "by seq, all in ClickHouse",
    );
    check_cluster(
        &cluster,
        &HashMap::from([(s.coordinator_id, 1_500)]),
        &keys_of(&[&agents]),
    );
}

/// Asserts two listings are the same, naming the first difference (the
/// results themselves are too long to print).
fn same(got: &[StoredResult], want: &[StoredResult], what: &str) {
    let first = got.iter().zip(want).position(|(a, b)| a != b);
    if got.len() != want.len() || first.is_some() {
        let show = |r: Option<&StoredResult>| {
            r.map(|r| format!("{} seq {} received {}", result_id(r), r.seq, r.received_us))
        };
        let i = first.unwrap_or(got.len().min(want.len()));
        panic!(
            "{what}: {} results, expected {}; first difference at {i}: {:?} vs {:?}",
            got.len(),
            want.len(),
            show(got.get(i)),
            show(want.get(i))
        );
    }
}

fn result_id(r: &StoredResult) -> String {
    vantage_proto::envelope::decode(r.envelope.as_ref().expect("envelope"))
        .expect("decodes")
        .id
}
