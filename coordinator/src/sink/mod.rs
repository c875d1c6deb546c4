//! Result sinks: every stored result, in commit order (`store/seq.rs`),
//! copied to a store that holds everything and answers the big queries.
//! One so far: ClickHouse (`[sink.clickhouse]`, [`clickhouse`]).
//!
//! sled stays the durable front: agents are acked when sled has a result,
//! never waiting for the sink. The sink follows the commit sequence from a
//! position kept in sled (`store/sink.rs`): it records a batch's range
//! before sending it and moves its cursor only after ClickHouse confirmed
//! the insert, so a crash, a refused insert or a cluster that is down for
//! an hour only delays rows; the range is sent again, identical, until it
//! is confirmed. How far behind it is (results and seconds) is in
//! `/metrics`, `vantagectl stats` and the dashboard.

pub mod clickhouse;
use crate::outbound as http;
pub mod read;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;

use crate::config::ClickHouseSink;
use crate::state::Shared;
use crate::store::{Store, StoreError};

/// The ClickHouse sink's name in the store and in metrics.
pub const CLICKHOUSE: &str = "clickhouse";

const INSERT_TIMEOUT: Duration = Duration::from_secs(120);
const QUERY_TIMEOUT: Duration = Duration::from_secs(60);
/// Waits between failed attempts: doubling from the first to the last.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(500), Duration::from_secs(15));

/// What a running sink reports.
pub struct Status {
    pub name: &'static str,
    /// The id written into every row's `coordinator` column.
    pub coordinator_id: String,
    /// Rows confirmed since this process started.
    pub rows: AtomicU64,
    /// Failed attempts (connect, insert, setup) since this process started.
    pub errors: AtomicU64,
    /// Stored results that did not decode (skipped; they are in sled).
    pub undecodable: AtomicU64,
    /// Results retention removed from sled since this process started.
    pub retired: AtomicU64,
    last_error: Mutex<String>,
}

impl Status {
    fn new(name: &'static str, coordinator_id: String) -> Status {
        Status {
            name,
            coordinator_id,
            rows: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            undecodable: AtomicU64::new(0),
            retired: AtomicU64::new(0),
            last_error: Mutex::new(String::new()),
        }
    }

    fn fail(&self, e: &str) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = e.to_string();
    }

    fn ok(&self) {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// The last failure, empty once an attempt succeeded after it.
    pub fn last_error(&self) -> String {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// How far a sink is behind the store.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Lag {
    /// Confirmed up to this commit sequence number.
    pub cursor: u64,
    /// The store's last commit sequence number.
    pub last_seq: u64,
    /// Stored and not confirmed.
    pub results: u64,
    /// Since the oldest of them was stored (0 when none waits).
    pub seconds: f64,
}

/// The lag of sink `name` over `store`.
pub fn lag(store: &Store, name: &str) -> Result<Lag, StoreError> {
    let cursor = store.sink_position(name)?.cursor;
    let last_seq = store.last_seq()?;
    let mut seconds = 0.0;
    if last_seq > cursor {
        if let Some(first) = store.results_after_seq(cursor).next() {
            let (_, _, bytes) = first?;
            use prost::Message;
            if let Ok(s) = vantage_proto::v1::StoredResult::decode(bytes.as_ref()) {
                seconds = (vantage_proto::now_us() - s.received_us).max(0) as f64 / 1_000_000.0;
            }
        }
    }
    Ok(Lag {
        cursor,
        last_seq,
        results: last_seq.saturating_sub(cursor),
        seconds,
    })
}

/// The sink's status object for a configured sink (made at open, so
/// metrics and stats can read it before the first batch).
pub fn status_for(store: &Store, c: &ClickHouseSink) -> Result<Arc<Status>, StoreError> {
    let id = if c.coordinator_id.is_empty() {
        store.coordinator_id()?
    } else {
        c.coordinator_id.clone()
    };
    Ok(Arc::new(Status::new(CLICKHOUSE, id)))
}

/// Starts the configured sinks.
pub fn spawn(s: &Shared) {
    let (Some(c), Some(status)) = (s.config.sink.clickhouse.clone(), s.sink.clone()) else {
        return;
    };
    tracing::info!(
        urls = ?c.urls,
        table = %clickhouse::insert_target(&c),
        cluster = %c.cluster,
        coordinator = %status.coordinator_id,
        "ClickHouse sink starting"
    );
    if let Ok(Some(keep)) = c.keep() {
        tokio::spawn(retention(s.clone(), c.clone(), status.clone(), keep));
    }
    let s = s.clone();
    tokio::spawn(async move { ClickHouse::new(c, status).run(s).await });
}

/// Removes from sled, now and then, the results ClickHouse confirmed that
/// were stored more than `keep` ago (`store/retention.rs`).
async fn retention(s: Shared, c: ClickHouseSink, status: Arc<Status>, keep: Duration) {
    let every = (keep / 4).clamp(Duration::from_secs(1), Duration::from_secs(600));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let s2 = s.clone();
        let (c, status2, rt) = (c.clone(), status.clone(), tokio::runtime::Handle::current());
        let r = tokio::task::spawn_blocking(move || {
            let status = status2;
            // The runs about to be sealed get verdicts that took every
            // result in.
            if let Err(e) = crate::verdicts::refresh_all(&s2) {
                tracing::warn!("retention waits: verdicts could not be brought up to date: {e}");
                return Ok(crate::store::Retired::default());
            }
            let confirmed = s2.store.sink_position(CLICKHOUSE)?.cursor;
            // Only what every replica holds leaves sled: a read of
            // ClickHouse may go to any replica.
            let from = s2.store.retired_seq()?;
            if confirmed > from {
                let held = rt.block_on(replicas_hold(&c, &status.coordinator_id, from, confirmed));
                match held {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::debug!(
                            "retention waits for every replica to hold #{from}..#{confirmed}"
                        );
                        return Ok(crate::store::Retired::default());
                    }
                    Err(e) => {
                        tracing::warn!("retention waits: cannot count the replicas' rows: {e}");
                        return Ok(crate::store::Retired::default());
                    }
                }
            }
            let before = vantage_proto::now_us() - keep.as_micros() as i64;
            s2.store.retire(confirmed, before, || s2.commit.pause())
        })
        .await;
        match r {
            Ok(Ok(r)) if r.results > 0 => {
                status.retired.fetch_add(r.results, Ordering::Relaxed);
                tracing::info!(
                    results = r.results,
                    through_seq = r.through_seq,
                    segments = r.segments,
                    bytes = r.segment_bytes,
                    "retention removed results ClickHouse holds"
                );
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!("retention: {e}"),
            Err(e) => tracing::error!("retention: {e}"),
        }
    }
}

/// One ClickHouse sink.
struct ClickHouse {
    c: ClickHouseSink,
    status: Arc<Status>,
    /// The URL that answered last (tried first).
    preferred: usize,
}

/// Sends `body` with `query` to the first of `c`'s URLs that answers,
/// starting with number `first`; the answer and the URL's number. A server
/// that answers with an error ends the attempt (another node would say the
/// same of the same data).
async fn post_any(
    c: &ClickHouseSink,
    first: usize,
    query: &str,
    extra: &str,
    body: &[u8],
    timeout: Duration,
) -> Result<(Vec<u8>, usize), String> {
    let auth =
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", c.user, c.password));
    let n = c.urls.len();
    let mut errors = Vec::new();
    for k in 0..n {
        let i = (first + k) % n;
        // Names are qualified in the SQL: a `database` parameter would
        // fail before the database exists.
        let path = format!("/?query={}{extra}", http::encode(query));
        match http::post(&c.urls[i], &path, &auth, body, timeout).await {
            Ok(answer) => return Ok((answer, i)),
            Err(e @ http::HttpError::Status { .. }) => return Err(e.to_string()),
            Err(e) => errors.push(e.to_string()),
        }
    }
    Err(errors.join("; "))
}

/// The answer to a read-only `query` from any of `c`'s servers.
pub(crate) async fn query_any(c: &ClickHouseSink, query: &str) -> Result<Vec<u8>, String> {
    Ok(post_any(c, 0, query, "", &[], QUERY_TIMEOUT).await?.0)
}

/// Whether every replica of every shard holds this coordinator's rows
/// numbered after `from` up to `to` (always, without a cluster). Each
/// replica's local table is counted through `remote()`; every shard's
/// smallest count adds up to the whole range only if no replica lacks a
/// row of its shard.
async fn replicas_hold(
    c: &ClickHouseSink,
    coordinator: &str,
    from: u64,
    to: u64,
) -> Result<bool, String> {
    if c.cluster.is_empty() {
        return Ok(true);
    }
    let q = format!(
        "SELECT shard_num, host_name, port FROM system.clusters WHERE cluster = '{}' FORMAT TabSeparated",
        c.cluster
    );
    let replicas = clickhouse::tsv(&query_any(c, &q).await?);
    if replicas.is_empty() {
        return Err(format!("no cluster {:?} in system.clusters", c.cluster));
    }
    let mut least: std::collections::BTreeMap<String, u64> = Default::default();
    for r in &replicas {
        let [shard, host, port] = &r[..] else {
            return Err(format!("unexpected system.clusters row {r:?}"));
        };
        let q = format!(
            "SELECT uniqExact(seq) FROM remote('{host}:{port}', {}.{}) WHERE coordinator = '{}' \
             AND seq > {from} AND seq <= {to} FORMAT TabSeparated",
            c.database,
            clickhouse::local_table(c),
            coordinator.replace('\\', "\\\\").replace('\'', "\\'"),
        );
        let n: u64 = String::from_utf8_lossy(&query_any(c, &q).await?)
            .trim()
            .parse()
            .map_err(|_| "a count that is not a number".to_string())?;
        let e = least.entry(shard.clone()).or_insert(n);
        *e = (*e).min(n);
    }
    Ok(least.values().sum::<u64>() >= to - from)
}

/// A batch read from the store.
struct Batch {
    from: u64,
    to: u64,
    rows: usize,
    body: Vec<u8>,
}

impl ClickHouse {
    fn new(c: ClickHouseSink, status: Arc<Status>) -> ClickHouse {
        ClickHouse {
            c,
            status,
            preferred: 0,
        }
    }

    /// [`post_any`] from the URL that answered last.
    async fn post(
        &mut self,
        query: &str,
        extra: &str,
        body: &[u8],
        timeout: Duration,
    ) -> Result<Vec<u8>, String> {
        let (answer, i) = post_any(&self.c, self.preferred, query, extra, body, timeout).await?;
        self.preferred = i;
        Ok(answer)
    }

    /// Makes what is missing and checks what exists.
    async fn setup(&mut self) -> Result<(), String> {
        let mut problems = Vec::new();
        let mut missing = false;
        for (table, _, _) in clickhouse::expected_tables(&self.c) {
            let q = clickhouse::engine_query(&self.c.database, &table);
            if self.post(&q, "", &[], QUERY_TIMEOUT).await?.is_empty() {
                missing = true;
            }
        }
        if missing {
            for sql in clickhouse::ddl(&self.c) {
                self.post(&sql, "", &[], QUERY_TIMEOUT)
                    .await
                    .map_err(|e| format!("creating the tables: {e}"))?;
            }
            tracing::info!(table = %clickhouse::insert_target(&self.c), "ClickHouse tables made");
        }
        for (table, engine, want) in clickhouse::expected_tables(&self.c) {
            let q = clickhouse::engine_query(&self.c.database, &table);
            let got = clickhouse::tsv(&self.post(&q, "", &[], QUERY_TIMEOUT).await?);
            let got_engine = got
                .first()
                .and_then(|r| r.first())
                .cloned()
                .unwrap_or_default();
            let q = clickhouse::columns_query(&self.c.database, &table);
            let cols: Vec<(String, String)> =
                clickhouse::tsv(&self.post(&q, "", &[], QUERY_TIMEOUT).await?)
                    .into_iter()
                    .filter_map(|r| Some((r.first()?.clone(), r.get(1)?.clone())))
                    .collect();
            problems.extend(clickhouse::mismatches(
                &format!("{}.{table}", self.c.database),
                &got_engine,
                engine,
                want,
                &cols,
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "the ClickHouse tables do not match what the sink writes: {}",
                problems.join("; ")
            ))
        }
    }

    async fn run(mut self, s: Shared) {
        let mut wait = BACKOFF.0;
        loop {
            match self.setup().await {
                Ok(()) => break,
                Err(e) => {
                    tracing::error!(
                        "ClickHouse sink cannot start: {e} (trying again in {} s)",
                        wait.as_secs_f64()
                    );
                    self.status.fail(&e);
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(BACKOFF.1);
                }
            }
        }
        self.status.ok();
        {
            let store = s.store.clone();
            match tokio::task::spawn_blocking(move || store.enable_verdict_sink()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::error!("ClickHouse sink cannot mark the stored verdicts: {e}")
                }
                Err(e) => tracing::error!("ClickHouse sink cannot mark the stored verdicts: {e}"),
            }
        }
        let mut wait = BACKOFF.0;
        let mut waiting_since: Option<Instant> = None;
        let interval = Duration::from_millis(self.c.interval_ms);
        let mut verdicts_at = Instant::now();
        loop {
            if verdicts_at.elapsed() >= interval {
                verdicts_at = Instant::now();
                if let Err(e) = self.sink_verdicts(&s).await {
                    tracing::warn!("ClickHouse sink: verdicts wait: {e}");
                    self.status.fail(&e);
                }
            }
            let batch = match self.next_batch(&s, &mut waiting_since, interval).await {
                Ok(Some(b)) => b,
                Ok(None) => continue,
                Err(e) => {
                    tracing::error!("ClickHouse sink cannot read the store: {e}");
                    self.status.fail(&e.to_string());
                    tokio::time::sleep(BACKOFF.1).await;
                    continue;
                }
            };
            let t = Instant::now();
            let query = clickhouse::insert_query(&self.c);
            let mut extra = String::new();
            if !self.c.cluster.is_empty() {
                extra.push_str("&insert_distributed_sync=1");
            }
            match self.post(&query, &extra, &batch.body, INSERT_TIMEOUT).await {
                Ok(_) => {
                    let store = s.store.clone();
                    let to = batch.to;
                    let r =
                        tokio::task::spawn_blocking(move || store.sink_confirmed(CLICKHOUSE, to))
                            .await;
                    if let Ok(Err(e)) | Err(e) = r.map_err(|e| StoreError::Corrupt {
                        tree: "meta",
                        detail: e.to_string(),
                    }) {
                        tracing::error!("ClickHouse sink cannot record its position: {e}");
                    }
                    self.status
                        .rows
                        .fetch_add(batch.rows as u64, Ordering::Relaxed);
                    self.status.ok();
                    tracing::debug!(
                        from = batch.from,
                        to = batch.to,
                        rows = batch.rows,
                        ms = t.elapsed().as_millis() as u64,
                        "ClickHouse batch confirmed"
                    );
                    wait = BACKOFF.0;
                }
                Err(e) => {
                    tracing::warn!(
                        from = batch.from,
                        to = batch.to,
                        "ClickHouse insert failed, the same batch goes again in {:.1} s: {e}",
                        wait.as_secs_f64()
                    );
                    self.status.fail(&e);
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(BACKOFF.1);
                }
            }
        }
    }

    /// Sends the verdicts of the runs marked for the sink (their stored
    /// revision; the table keeps the highest) and clears their marks.
    async fn sink_verdicts(&mut self, s: &Shared) -> Result<(), String> {
        let store = s.store.clone();
        let coordinator = self.status.coordinator_id.clone();
        let read = tokio::task::spawn_blocking(move || -> Result<_, StoreError> {
            let marks = store.verdicts_to_sink(500)?;
            let mut body = Vec::new();
            let mut campaigns: std::collections::HashMap<
                String,
                Option<crate::store::CampaignRecord>,
            > = Default::default();
            for (campaign, run, _) in &marks {
                let rec = match campaigns.get(campaign) {
                    Some(r) => r.clone(),
                    None => {
                        let r = store.campaign(campaign)?;
                        campaigns.insert(campaign.clone(), r.clone());
                        r
                    }
                };
                let (Some(rec), Some(v)) = (rec, store.run_verdicts(campaign, run)?) else {
                    continue;
                };
                let at = rec
                    .runs
                    .iter()
                    .find(|r| r.run_id == *run)
                    .map_or(0, |r| r.dispatch_at_us);
                for row in v.verdicts {
                    let e = crate::query::views::verdict(campaign, at, row);
                    clickhouse::encode_verdict_row(&mut body, &coordinator, &e, v.revision);
                }
            }
            Ok((marks, body))
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
        let (marks, body) = read;
        if marks.is_empty() {
            return Ok(());
        }
        let mut extra = String::new();
        if !self.c.cluster.is_empty() {
            extra.push_str("&insert_distributed_sync=1");
        }
        if !body.is_empty() {
            let q = clickhouse::verdict_insert_query(&self.c);
            self.post(&q, &extra, &body, INSERT_TIMEOUT).await?;
        }
        let store = s.store.clone();
        tokio::task::spawn_blocking(move || {
            for (campaign, run, revision) in marks {
                store.verdicts_sunk(&campaign, &run, revision)?;
            }
            Ok::<_, StoreError>(())
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
    }

    /// The batch to send: the recorded one, or a new one once `batch_size`
    /// results wait or the oldest waited `interval` (recorded before it is
    /// returned). `None`: nothing to send yet (after a short sleep).
    async fn next_batch(
        &self,
        s: &Shared,
        waiting_since: &mut Option<Instant>,
        interval: Duration,
    ) -> Result<Option<Batch>, StoreError> {
        let store = s.store.clone();
        let pos = {
            let store = store.clone();
            join(tokio::task::spawn_blocking(move || store.sink_position(CLICKHOUSE)).await)?
        };
        if let Some((from, to)) = pos.inflight {
            let coordinator = self.status.coordinator_id.clone();
            let status = self.status.clone();
            return join(
                tokio::task::spawn_blocking(move || {
                    read(&store, &coordinator, &status, from, to, usize::MAX)
                })
                .await,
            )
            .map(Some);
        }
        let last = {
            let store = store.clone();
            join(tokio::task::spawn_blocking(move || store.last_seq()).await)?
        };
        let waiting = last.saturating_sub(pos.cursor);
        if waiting == 0 {
            *waiting_since = None;
            tokio::time::sleep(interval.min(Duration::from_millis(200))).await;
            return Ok(None);
        }
        let since = *waiting_since.get_or_insert_with(Instant::now);
        if (waiting as usize) < self.c.batch_size && since.elapsed() < interval {
            tokio::time::sleep((interval - since.elapsed()).min(Duration::from_millis(200))).await;
            return Ok(None);
        }
        *waiting_since = None;
        let coordinator = self.status.coordinator_id.clone();
        let status = self.status.clone();
        let n = self.c.batch_size;
        let from = pos.cursor;
        join(
            tokio::task::spawn_blocking(move || {
                let b = read(&store, &coordinator, &status, from, u64::MAX, n)?;
                store.sink_sending(CLICKHOUSE, b.from, b.to)?;
                Ok(b)
            })
            .await,
        )
        .map(Some)
    }
}

fn join<T>(r: Result<Result<T, StoreError>, tokio::task::JoinError>) -> Result<T, StoreError> {
    r.map_err(|e| StoreError::Corrupt {
        tree: "results",
        detail: format!("sink reader: {e}"),
    })?
}

/// The rows of results after `from`, up to `to` and at most `n` of them.
fn read(
    store: &Store,
    coordinator: &str,
    status: &Status,
    from: u64,
    to: u64,
    n: usize,
) -> Result<Batch, StoreError> {
    let mut b = Batch {
        from,
        to: from,
        rows: 0,
        body: Vec::new(),
    };
    for item in store.results_after_seq(from).take(n) {
        let (seq, _, bytes) = item?;
        if seq > to {
            break;
        }
        b.to = seq;
        if clickhouse::encode_row(&mut b.body, coordinator, seq, &bytes) {
            b.rows += 1;
        } else {
            status.undecodable.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(seq, "a stored result does not decode; not sunk");
        }
    }
    Ok(b)
}
