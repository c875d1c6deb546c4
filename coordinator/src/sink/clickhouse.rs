//! The ClickHouse table: its columns, the DDL that makes it, the check
//! that what exists matches, and the rows (RowBinary).
//!
//! With a cluster: `<table>_local` is a `ReplicatedReplacingMergeTree` on
//! every node (made `ON CLUSTER`), `<table>` a `Distributed` table over it,
//! sharded by `cityHash64(id)`; inserts go through `<table>` with
//! `insert_distributed_sync=1`, so an insert is confirmed once one replica
//! of every shard holds its part. Without one: a plain
//! `ReplacingMergeTree` `<table>`.
//!
//! Exactly once, in two layers:
//! 1. A retried batch is the identical block (the same commit-sequence
//!    range, rows encoded the same way), so the replicated table's insert
//!    deduplication (block hashes in ZooKeeper, the last 100 per shard)
//!    drops it. Only replicated tables have this layer.
//! 2. The engine replaces rows with the same sorting key, which ends in the
//!    result id (every other key column is fixed by the signed result), so
//!    a result inserted twice in different batches (a sink whose position
//!    was lost, two coordinators holding the same result) is one row under
//!    `FINAL` and after merges.
//!
//! Checked with ClickHouse 18.16 (Debian 12); the SQL keeps to what later
//! versions also take.

use std::fmt::Write as _;

use vantage_proto::v1::{Measurement, StoredResult};

use crate::config::ClickHouseSink;

/// The columns, in insert order, with their ClickHouse types.
pub const COLUMNS: &[(&str, &str)] = &[
    ("id", "String"),
    ("coordinator", "String"),
    ("seq", "UInt64"),
    ("agent", "String"),
    ("campaign", "String"),
    ("run", "String"),
    ("task", "String"),
    ("kind", "String"),
    ("target", "String"),
    ("target_name", "String"),
    ("country", "String"),
    ("asn", "UInt32"),
    ("start", "DateTime"),
    ("start_us", "Int64"),
    ("end_us", "Int64"),
    ("received_us", "Int64"),
    ("failure", "String"),
    ("failures", "Array(String)"),
    ("software_version", "String"),
    ("measurement", "String"),
    ("signature", "String"),
];

/// The verdict table's columns: one row per run, target and inside agent,
/// at the run's latest revision (the engine keeps the highest).
pub const VERDICT_COLUMNS: &[(&str, &str)] = &[
    ("campaign", "String"),
    ("run", "String"),
    ("target", "String"),
    ("agent", "String"),
    ("coordinator", "String"),
    ("dispatch_at", "DateTime"),
    ("dispatch_at_us", "Int64"),
    ("name", "String"),
    ("kind", "String"),
    ("country", "String"),
    ("asn", "UInt32"),
    ("status", "String"),
    ("mechanism", "String"),
    ("reason", "String"),
    ("revision", "UInt32"),
];

/// `(id, coordinator, ...)` for an insert.
fn column_list(columns: &[(&str, &str)]) -> String {
    let names: Vec<&str> = columns.iter().map(|(n, _)| *n).collect();
    format!("({})", names.join(", "))
}

fn column_defs(columns: &[(&str, &str)]) -> String {
    let defs: Vec<String> = columns.iter().map(|(n, t)| format!("{n} {t}")).collect();
    defs.join(", ")
}

const VERDICT_PARTITION_AND_ORDER: &str =
    "PARTITION BY toYYYYMM(dispatch_at) ORDER BY (campaign, run, target, agent)";

/// The verdict table queries read.
pub fn verdict_table(c: &ClickHouseSink) -> String {
    format!("{}_verdicts", c.table)
}

const PARTITION_AND_ORDER: &str =
    "PARTITION BY toYYYYMM(start) ORDER BY (country, asn, kind, start, id)";

/// The table rows are inserted into.
pub fn insert_target(c: &ClickHouseSink) -> String {
    format!("{}.{}", c.database, c.table)
}

/// The local table of a cluster.
pub fn local_table(c: &ClickHouseSink) -> String {
    format!("{}_local", c.table)
}

/// One table's statements: (table, its columns, the version column of
/// the replacing engine, partition and order, the sharding key).
type TableDef = (
    String,
    &'static [(&'static str, &'static str)],
    &'static str,
    &'static str,
    &'static str,
);

fn tables(c: &ClickHouseSink) -> [TableDef; 2] {
    [
        (
            c.table.clone(),
            COLUMNS,
            "",
            PARTITION_AND_ORDER,
            "cityHash64(id)",
        ),
        (
            verdict_table(c),
            VERDICT_COLUMNS,
            "revision",
            VERDICT_PARTITION_AND_ORDER,
            "cityHash64(campaign)",
        ),
    ]
}

/// The statements that make what is missing, in order.
pub fn ddl(c: &ClickHouseSink) -> Vec<String> {
    let db = &c.database;
    if c.cluster.is_empty() {
        let mut out = vec![format!("CREATE DATABASE IF NOT EXISTS {db}")];
        for (table, cols, version, order, _) in tables(c) {
            out.push(format!(
                "CREATE TABLE IF NOT EXISTS {db}.{table} ({}) ENGINE = ReplacingMergeTree({version}) {order}",
                column_defs(cols)
            ));
        }
        return out;
    }
    let cl = &c.cluster;
    let mut out = vec![format!(
        "CREATE DATABASE IF NOT EXISTS {db} ON CLUSTER {cl}"
    )];
    for (table, cols, version, order, shard_by) in tables(c) {
        let local = format!("{table}_local");
        let version = if version.is_empty() {
            String::new()
        } else {
            format!(", {version}")
        };
        out.push(format!(
            "CREATE TABLE IF NOT EXISTS {db}.{local} ON CLUSTER {cl} ({}) \
             ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{{shard}}/{db}.{local}', '{{replica}}'{version}) \
             {order}",
            column_defs(cols)
        ));
        out.push(format!(
            "CREATE TABLE IF NOT EXISTS {db}.{table} ON CLUSTER {cl} AS {db}.{local} \
             ENGINE = Distributed({cl}, {db}, {local}, {shard_by})"
        ));
    }
    out
}

/// A table to check: its name, the engine it must have, its columns.
pub type Expected = (
    String,
    &'static str,
    &'static [(&'static str, &'static str)],
);

/// The tables to check.
pub fn expected_tables(c: &ClickHouseSink) -> Vec<Expected> {
    let mut out = Vec::new();
    for (table, cols, _, _, _) in tables(c) {
        if c.cluster.is_empty() {
            out.push((table, "ReplacingMergeTree", cols));
        } else {
            out.push((
                format!("{table}_local"),
                "ReplicatedReplacingMergeTree",
                cols,
            ));
            out.push((table, "Distributed", cols));
        }
    }
    out
}

/// What is wrong with a table, from `system.columns` rows (name, type)
/// and its engine: empty when it matches.
pub fn mismatches(
    table: &str,
    engine: &str,
    want_engine: &str,
    want: &[(&str, &str)],
    columns: &[(String, String)],
) -> Vec<String> {
    let mut out = Vec::new();
    if engine != want_engine {
        out.push(format!(
            "table {table} has engine {engine}, expected {want_engine}"
        ));
    }
    for (name, ty) in want {
        match columns.iter().find(|(n, _)| n == name) {
            None => out.push(format!("table {table} has no column {name} ({ty})")),
            Some((_, t)) if t != ty => out.push(format!(
                "table {table}: column {name} is {t}, expected {ty}"
            )),
            Some(_) => {}
        }
    }
    out
}

/// `INSERT` statement for `c`.
pub fn insert_query(c: &ClickHouseSink) -> String {
    format!(
        "INSERT INTO {} {} FORMAT RowBinary",
        insert_target(c),
        column_list(COLUMNS)
    )
}

/// `INSERT` statement of verdict rows for `c`.
pub fn verdict_insert_query(c: &ClickHouseSink) -> String {
    format!(
        "INSERT INTO {}.{} {} FORMAT RowBinary",
        c.database,
        verdict_table(c),
        column_list(VERDICT_COLUMNS)
    )
}

/// Appends one verdict row (RowBinary, [`VERDICT_COLUMNS`] order).
pub fn encode_verdict_row(
    out: &mut Vec<u8>,
    coordinator: &str,
    v: &vantage_proto::v1::VerdictEntry,
    revision: u32,
) {
    string(out, v.campaign_id.as_bytes());
    string(out, v.run_id.as_bytes());
    string(out, v.target.as_bytes());
    string(out, v.agent_id.as_bytes());
    string(out, coordinator.as_bytes());
    let at_s = u32::try_from(v.dispatch_at_us.max(0) / 1_000_000).unwrap_or(u32::MAX);
    out.extend_from_slice(&at_s.to_le_bytes());
    out.extend_from_slice(&v.dispatch_at_us.to_le_bytes());
    string(out, v.name.as_bytes());
    string(out, v.kind.as_bytes());
    string(out, v.country.as_bytes());
    out.extend_from_slice(&v.asn.to_le_bytes());
    string(out, v.status.as_bytes());
    string(out, v.mechanism.as_bytes());
    string(out, v.reason.as_bytes());
    out.extend_from_slice(&revision.to_le_bytes());
}

fn varint(out: &mut Vec<u8>, mut n: u64) {
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn string(out: &mut Vec<u8>, s: &[u8]) {
    varint(out, s.len() as u64);
    out.extend_from_slice(s);
}

/// Appends one result's row (RowBinary, [`COLUMNS`] order); false when the
/// stored bytes do not decode (counted and skipped by the caller).
pub fn encode_row(out: &mut Vec<u8>, coordinator: &str, seq: u64, stored: &[u8]) -> bool {
    use prost::Message;
    let Ok(s) = StoredResult::decode(stored) else {
        return false;
    };
    let Some(env) = s.envelope.as_ref() else {
        return false;
    };
    let Ok(m) = vantage_proto::envelope::decode(env) else {
        return false;
    };
    row(out, coordinator, seq, &s, &m);
    true
}

fn row(out: &mut Vec<u8>, coordinator: &str, seq: u64, s: &StoredResult, m: &Measurement) {
    let env = s.envelope.clone().unwrap_or_default();
    let labels = m.labels.clone().unwrap_or_default();
    let (kind, name) = match &m.input {
        Some(i) => (i.kind_name(), i.name.as_str()),
        None => ("none", ""),
    };
    let failures = crate::query::views::failures_of(m);
    string(out, m.id.as_bytes());
    string(out, coordinator.as_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    string(out, s.agent_id.as_bytes());
    string(out, m.campaign_id.as_bytes());
    string(out, m.run_id.as_bytes());
    string(out, m.task_id.as_bytes());
    string(out, kind.as_bytes());
    string(out, crate::analysis::target_key(m).as_bytes());
    string(out, name.as_bytes());
    string(out, labels.country.as_bytes());
    out.extend_from_slice(&labels.asn.to_le_bytes());
    let start_s = u32::try_from(m.start_us.max(0) / 1_000_000).unwrap_or(u32::MAX);
    out.extend_from_slice(&start_s.to_le_bytes());
    out.extend_from_slice(&m.start_us.to_le_bytes());
    out.extend_from_slice(&m.end_us.to_le_bytes());
    out.extend_from_slice(&s.received_us.to_le_bytes());
    string(
        out,
        failures
            .first()
            .map(String::as_str)
            .unwrap_or("")
            .as_bytes(),
    );
    varint(out, failures.len() as u64);
    for f in &failures {
        string(out, f.as_bytes());
    }
    string(out, m.software_version.as_bytes());
    string(out, &env.measurement);
    string(out, &env.signature);
}

/// A TabSeparated answer as rows of fields (ClickHouse's escapes undone
/// for the plain names and types we read).
pub fn tsv(body: &[u8]) -> Vec<Vec<String>> {
    String::from_utf8_lossy(body)
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect()
}

/// `SELECT` of a table's columns, for the check.
pub fn columns_query(db: &str, table: &str) -> String {
    let mut q = String::new();
    let _ = write!(
        q,
        "SELECT name, type FROM system.columns WHERE database = '{db}' AND table = '{table}' \
         FORMAT TabSeparated"
    );
    q
}

/// `SELECT` of a table's engine.
pub fn engine_query(db: &str, table: &str) -> String {
    format!(
        "SELECT engine FROM system.tables WHERE database = '{db}' AND name = '{table}' \
         FORMAT TabSeparated"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(cluster: &str) -> ClickHouseSink {
        let c: crate::config::Config = crate::config::Config::parse(&format!(
            "version = 1\nlisten = \"127.0.0.1:1\"\nadvertise = []\n[sink.clickhouse]\n\
             urls = [\"http://127.0.0.1:8123\"]\ncluster = \"{cluster}\"\n"
        ))
        .unwrap();
        c.sink.clickhouse.unwrap()
    }

    #[test]
    fn the_ddl_names_the_engines_the_check_expects() {
        let single = ddl(&config(""));
        assert_eq!(single.len(), 3);
        assert!(single[1].contains("ENGINE = ReplacingMergeTree() PARTITION BY"));
        assert!(single[2].contains("results_verdicts"));
        assert!(single[2].contains("ENGINE = ReplacingMergeTree(revision)"));
        let cl = ddl(&config("vantage"));
        assert!(
            cl[1].contains("results_local ON CLUSTER vantage"),
            "{}",
            cl[1]
        );
        assert!(cl[1].contains(
            "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/vantage.results_local', '{replica}')"
        ));
        assert!(cl[2].contains("Distributed(vantage, vantage, results_local, cityHash64(id))"));
        assert!(cl[3].contains(
            "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/vantage.results_verdicts_local', '{replica}', revision)"
        ));
        assert!(cl[4].contains(
            "Distributed(vantage, vantage, results_verdicts_local, cityHash64(campaign))"
        ));
        let want: Vec<_> = expected_tables(&config("vantage"))
            .into_iter()
            .map(|(t, e, _)| format!("{t} {e}"))
            .collect();
        assert_eq!(
            want,
            [
                "results_local ReplicatedReplacingMergeTree",
                "results Distributed",
                "results_verdicts_local ReplicatedReplacingMergeTree",
                "results_verdicts Distributed"
            ]
        );
    }

    #[test]
    fn mismatches_name_the_column_and_the_engine() {
        let mut cols: Vec<(String, String)> = COLUMNS
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect();
        assert!(mismatches(
            "t",
            "ReplacingMergeTree",
            "ReplacingMergeTree",
            COLUMNS,
            &cols
        )
        .is_empty());
        cols.retain(|(n, _)| n != "signature");
        cols[2].1 = "UInt32".into();
        let m = mismatches("t", "MergeTree", "ReplacingMergeTree", COLUMNS, &cols);
        assert_eq!(
            m,
            [
                "table t has engine MergeTree, expected ReplacingMergeTree",
                "table t: column seq is UInt32, expected UInt64",
                "table t has no column signature (String)",
            ]
        );
    }

    #[test]
    fn a_row_is_the_same_bytes_every_time_and_bad_bytes_are_refused() {
        use prost::Message;
        let key = ed25519_dalek::SigningKey::from_bytes(&[3; 32]);
        let m = Measurement {
            id: "0190a8b2-0000-7000-8000-000000000001".into(),
            agent_id: "a".into(),
            start_us: 1_700_000_000_123_456,
            ..Default::default()
        };
        let stored = StoredResult {
            envelope: Some(vantage_proto::envelope::sign(&key, &m)),
            agent_id: "a".into(),
            received_us: 5,
            seq: 0,
        }
        .encode_to_vec();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        assert!(encode_row(&mut a, "c", 7, &stored));
        assert!(encode_row(&mut b, "c", 7, &stored));
        assert_eq!(a, b);
        // The id comes first, as a length-prefixed string (no BOM to strip).
        assert_eq!(a[0] as usize, m.id.len());
        assert_eq!(&a[1..37], m.id.as_bytes());
        assert!(!encode_row(&mut a, "c", 8, b"\xff\xff not a result"));
        let mut v = Vec::new();
        varint(&mut v, 300);
        assert_eq!(v, [0xac, 0x02]);
    }
}
