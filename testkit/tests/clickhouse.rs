//! The ClickHouse facts the result sink (issue 20) will rest on, checked on
//! a real 2-shard x 2-replica cluster (Debian's clickhouse-server 18.16 and
//! zookeeper): `ON CLUSTER` DDL; a retried block (the same rows, in any
//! order: the part is hashed after sorting by the key) is dropped by
//! replicated insert deduplication; a batch cut differently is not, and
//! its rows collapse by id under `FINAL` of a `ReplacingMergeTree`; a
//! `kill -9`'d replica catches up after its restart.

use vantage_testkit::clickhouse::{missing, Cluster, CLUSTER};

fn count(c: &Cluster, node: usize, sql: &str) -> u64 {
    let out = c.query(node, sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    out.parse().unwrap_or_else(|_| panic!("{sql}: {out:?}"))
}

#[test]
fn clickhouse_a_two_by_two_cluster_deduplicates_retries_and_replaced_rows() {
    let test = "clickhouse_a_two_by_two_cluster_deduplicates_retries_and_replaced_rows";
    if !vantage_testkit::skip::require(
        test,
        &missing(),
        "bash deploy/scripts/install-test-deps.sh installs them",
    ) {
        return;
    }
    let mut c = Cluster::start(2, 2).expect("cluster");
    let ddl = [
        format!("CREATE DATABASE vantage ON CLUSTER {CLUSTER}"),
        format!(
            "CREATE TABLE vantage.results_local ON CLUSTER {CLUSTER} \
             (id String, agent String, body String) \
             ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{{shard}}/results', '{{replica}}') \
             ORDER BY id"
        ),
        format!(
            "CREATE TABLE vantage.results ON CLUSTER {CLUSTER} AS vantage.results_local \
             ENGINE = Distributed({CLUSTER}, vantage, results_local, cityHash64(id))"
        ),
    ];
    for sql in &ddl {
        c.query(0, sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    let block: String = (0..100)
        .map(|i| format!("id{i:03}\ta\tbody {i}\n"))
        .collect();
    let local = "INSERT INTO vantage.results_local FORMAT TabSeparated";
    // Shard 1, replica 1: the same block twice is stored once.
    c.insert(0, local, &block, &[]).expect("insert");
    c.insert(0, local, &block, &[]).expect("retry");
    let reordered: String = block.lines().rev().map(|l| format!("{l}\n")).collect();
    c.insert(0, local, &reordered, &[])
        .expect("retry, reordered");
    assert_eq!(
        count(&c, 0, "SELECT count() FROM vantage.results_local"),
        100
    );
    // Replica 2 of shard 1 gets it too.
    c.sync_replica(1, "vantage.results_local").expect("sync");
    assert_eq!(
        count(&c, 1, "SELECT count() FROM vantage.results_local"),
        100
    );
    // A batch cut differently is not a retry to ClickHouse: its rows land
    // again, and FINAL collapses them by id.
    let recut: String = (50..150)
        .map(|i| format!("id{i:03}\ta\tbody {i}\n"))
        .collect();
    c.insert(0, local, &recut, &[]).expect("recut");
    assert_eq!(
        count(&c, 0, "SELECT count() FROM vantage.results_local"),
        200
    );
    assert_eq!(
        count(&c, 0, "SELECT count() FROM vantage.results_local FINAL"),
        150
    );

    // Through the Distributed table, synchronously: spread over both shards.
    let dist = "INSERT INTO vantage.results FORMAT TabSeparated";
    let more: String = (150..350)
        .map(|i| format!("id{i:03}\tb\tbody {i}\n"))
        .collect();
    c.insert(2, dist, &more, &[("insert_distributed_sync", "1")])
        .expect("distributed insert");

    // kill -9 of shard 2's second replica; writes go on; it catches up.
    c.kill9(3);
    let late: String = (350..400)
        .map(|i| format!("id{i:03}\tc\tbody {i}\n"))
        .collect();
    c.insert(2, local, &late, &[])
        .expect("insert while a replica is down");
    c.restart(3).expect("restart");
    c.sync_replicas("vantage.results_local").expect("sync");
    assert_eq!(
        count(&c, 3, "SELECT count() FROM vantage.results_local"),
        count(&c, 2, "SELECT count() FROM vantage.results_local"),
        "the restarted replica holds what its shard holds"
    );
    c.sync_replicas("vantage.results_local").expect("sync");
    // Cluster-wide, every id once under FINAL: 150 + 200 + 50.
    let total = count(&c, 0, "SELECT count() FROM vantage.results FINAL");
    assert_eq!(total, 400, "{}", c.dir().display());
    assert_eq!(
        count(&c, 1, "SELECT uniqExact(id) FROM vantage.results"),
        400
    );
}
