//! What the coordinator measures, and its Prometheus text exposition
//! (format 0.0.4, served at `/metrics` by `crate::http`), hand-written:
//! live sessions from the hub; stored results, rejections by reason and
//! other persisted counters from the store; tasks by state; store size; and
//! process-wide histograms of ingest batches and group commits, recorded
//! through [`record_ingest`] and [`record_commit_group`] by the write path
//! (ingest, the commit thread) and [`count_http_refusal`] by the HTTP face.
//! A module of its own so the writers do not depend on the HTTP face.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::state::Shared;
use crate::store::{GroupStats, TaskAssignment};

/// A fixed-bucket histogram with lock-free recording.
pub struct Histogram {
    bounds: &'static [f64],
    counts: [AtomicU64; 16],
    count: AtomicU64,
    /// f64 bits.
    sum: AtomicU64,
}

impl Histogram {
    /// `bounds` are the upper bounds (ascending, at most 16).
    pub const fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: [const { AtomicU64::new(0) }; 16],
            count: AtomicU64::new(0),
            sum: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, v: f64) {
        if let Some(i) = self.bounds.iter().take(16).position(|b| v <= *b) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let _ = self
            .sum
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                Some((f64::from_bits(old) + v).to_bits())
            });
    }

    /// Appends the series in Prometheus text format.
    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, b) in self.bounds.iter().take(16).enumerate() {
            cumulative += self.counts[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "{name}_sum {}\n{name}_count {count}",
            f64::from_bits(self.sum.load(Ordering::Relaxed))
        );
    }
}

const SIZE_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0, 16384.0,
];
const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

static INGEST_BATCH: Histogram = Histogram::new(SIZE_BUCKETS);
static INGEST_SECONDS: Histogram = Histogram::new(SECONDS_BUCKETS);
static COMMIT_GROUP: Histogram = Histogram::new(SIZE_BUCKETS);
static HTTP_UNAUTHENTICATED: AtomicU64 = AtomicU64::new(0);
static HTTP_RATE_LIMITED: AtomicU64 = AtomicU64::new(0);

/// Records one ingested batch: how many results it carried and how long
/// from receipt to durable ack. Call once per `ingest()`.
pub fn record_ingest(results: usize, elapsed: Duration) {
    INGEST_BATCH.observe(results as f64);
    INGEST_SECONDS.observe(elapsed.as_secs_f64());
}

/// Records one group commit (results written under one fdatasync); fits
/// `CommitHandle::start`'s callback.
pub fn record_commit_group(g: GroupStats) {
    COMMIT_GROUP.observe(g.results as f64);
}

pub(crate) fn count_http_refusal(why: &str) {
    match why {
        "rate_limited" => HTTP_RATE_LIMITED.fetch_add(1, Ordering::Relaxed),
        _ => HTTP_UNAUTHENTICATED.fetch_add(1, Ordering::Relaxed),
    };
}

/// Escapes a label value.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn gauge(out: &mut String, name: &str, help: &str, kind: &str, value: impl std::fmt::Display) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
    );
}

/// The whole exposition.
pub(crate) fn render(shared: &Shared) -> Result<String, crate::store::StoreError> {
    let mut out = String::with_capacity(4096);
    let agents = shared.store.agents()?;
    gauge(
        &mut out,
        "vantage_agents_connected",
        "Agents with a live session.",
        "gauge",
        shared.hub.connected().len(),
    );
    gauge(
        &mut out,
        "vantage_agents_enrolled",
        "Enrolled agents, revoked included.",
        "gauge",
        agents.len(),
    );
    gauge(
        &mut out,
        "vantage_agents_revoked",
        "Revoked agents.",
        "gauge",
        agents.iter().filter(|a| a.revoked).count(),
    );
    gauge(
        &mut out,
        "vantage_results_stored",
        "Verified results in the store.",
        "gauge",
        shared.store.result_count()?,
    );
    gauge(
        &mut out,
        "vantage_store_size_bytes",
        "Approximate on-disk size of the store.",
        "gauge",
        shared.store.size_on_disk(),
    );

    if let Some(sink) = &shared.sink {
        let lag = crate::sink::lag(&shared.store, sink.name)?;
        gauge(
            &mut out,
            "vantage_sink_lag_results",
            "Stored results the ClickHouse sink has not had confirmed yet.",
            "gauge",
            lag.results,
        );
        gauge(
            &mut out,
            "vantage_sink_lag_seconds",
            "Age of the oldest stored result the ClickHouse sink has not had confirmed.",
            "gauge",
            lag.seconds,
        );
        gauge(
            &mut out,
            "vantage_sink_rows_total",
            "Rows the ClickHouse sink had confirmed since the coordinator started.",
            "counter",
            sink.rows.load(Ordering::Relaxed),
        );
        gauge(
            &mut out,
            "vantage_sink_errors_total",
            "Failed ClickHouse sink attempts since the coordinator started.",
            "counter",
            sink.errors.load(Ordering::Relaxed),
        );
    }

    let counters = shared.store.counters()?;
    let _ = writeln!(
        out,
        "# HELP vantage_results_rejected_total Results rejected by ingest, by reason.\n\
         # TYPE vantage_results_rejected_total counter"
    );
    for (name, n) in counters.iter().filter(|(n, _)| n.starts_with("rejected/")) {
        let reason = &name["rejected/".len()..];
        let _ = writeln!(
            out,
            "vantage_results_rejected_total{{reason=\"{}\"}} {n}",
            label(reason)
        );
    }
    let _ = writeln!(
        out,
        "# HELP vantage_events_total Other persisted counters (refused handshakes, \
         enrollments and sessions, tasks refused by agents), by name.\n\
         # TYPE vantage_events_total counter"
    );
    for (name, n) in counters.iter().filter(|(n, _)| !n.starts_with("rejected/")) {
        let _ = writeln!(out, "vantage_events_total{{name=\"{}\"}} {n}", label(name));
    }

    // Task assignments by state: sent = pending (not yet acked by the
    // agent), accepted = leased (the agent is on it).
    let mut states = [0u64; 5];
    for t in shared.store.tasks() {
        for a in t?.assignments.values() {
            let i = match a {
                TaskAssignment::Sent => 0,
                TaskAssignment::Accepted => 1,
                TaskAssignment::Expired => 2,
                TaskAssignment::Done => 3,
                TaskAssignment::Refused => 4,
            };
            states[i] += 1;
        }
    }
    let _ = writeln!(
        out,
        "# HELP vantage_task_assignments Task assignments by state.\n\
         # TYPE vantage_task_assignments gauge"
    );
    for (name, n) in ["pending", "leased", "expired", "done", "refused"]
        .iter()
        .zip(states)
    {
        let _ = writeln!(out, "vantage_task_assignments{{state=\"{name}\"}} {n}");
    }

    INGEST_BATCH.render(
        &mut out,
        "vantage_ingest_batch_results",
        "Results per ingested batch.",
    );
    INGEST_SECONDS.render(
        &mut out,
        "vantage_ingest_batch_seconds",
        "Time from receiving a batch to its durable ack.",
    );
    COMMIT_GROUP.render(
        &mut out,
        "vantage_commit_group_results",
        "Results written per group commit (one fdatasync).",
    );
    let _ = writeln!(
        out,
        "# HELP vantage_http_refused_total HTTP requests refused, by reason.\n\
         # TYPE vantage_http_refused_total counter\n\
         vantage_http_refused_total{{reason=\"unauthenticated\"}} {}\n\
         vantage_http_refused_total{{reason=\"rate_limited\"}} {}",
        HTTP_UNAUTHENTICATED.load(Ordering::Relaxed),
        HTTP_RATE_LIMITED.load(Ordering::Relaxed)
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_renders_cumulative_buckets() {
        static H: Histogram = Histogram::new(&[1.0, 10.0]);
        H.observe(0.5);
        H.observe(5.0);
        H.observe(50.0);
        let mut s = String::new();
        H.render(&mut s, "x", "help");
        assert!(s.contains("x_bucket{le=\"1\"} 1\n"), "{s}");
        assert!(s.contains("x_bucket{le=\"10\"} 2\n"), "{s}");
        assert!(s.contains("x_bucket{le=\"+Inf\"} 3\n"), "{s}");
        assert!(s.contains("x_sum 55.5\nx_count 3\n"), "{s}");
    }
}
