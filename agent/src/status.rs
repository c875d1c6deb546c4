//! `status.json` in the data directory: what the running agent tells
//! `vantage-agent status`, which cannot open the outbox while the agent holds
//! the outbox's lock on it.
//!
//! The running agent rewrites the file on connect, disconnect, ack and
//! heartbeat (write to a temporary file, then rename, so a reader never sees
//! half a file). Results delivered in the last 24 hours are kept as hourly
//! buckets in the file itself, so they survive restarts.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::outbox::Outbox;

pub const FILE: &str = "status.json";

/// Hourly buckets kept (24 hours plus the current, partial one).
const BUCKETS: u64 = 25;

/// What happened in the session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The session stream to the coordinator is open.
    Connected,
    /// The session ended (or the agent is stopping).
    Disconnected,
    /// The coordinator acknowledged results.
    Acked { accepted: u64, rejected: u64 },
    /// A heartbeat was sent.
    Heartbeat,
}

/// The file's contents.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Status {
    /// When this was written (microseconds since the epoch).
    pub updated_us: i64,
    /// Process id of the agent that wrote it.
    pub pid: u32,
    /// Whether the session to the coordinator was open.
    pub connected: bool,
    /// Since when (microseconds) `connected` has held.
    pub since_us: i64,
    pub outbox_depth: u64,
    pub outbox_dropped: u64,
    /// Results acknowledged as stored, since the status file was created.
    pub delivered_total: u64,
    /// Results the coordinator rejected, since the status file was created.
    pub rejected_total: u64,
    /// (hour since the epoch, results delivered in that hour), oldest first.
    pub delivered_hourly: Vec<(u64, u64)>,
}

/// Status errors (only `read` reports them; writing is best effort).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StatusError {
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("{0}: {1}")]
    Format(String, String),
}

fn hour_of(us: i64) -> u64 {
    (us.max(0) as u64) / 3_600_000_000
}

impl Status {
    /// Results delivered in the 24 hours up to `now_us` (whole hourly
    /// buckets, so up to one hour more than 24 h is counted).
    pub fn delivered_24h(&self, now_us: i64) -> u64 {
        let now = hour_of(now_us);
        self.delivered_hourly
            .iter()
            .filter(|(h, _)| *h + 24 > now && *h <= now)
            .map(|(_, n)| n)
            .sum()
    }

    fn add_delivered(&mut self, now_us: i64, n: u64) {
        let hour = hour_of(now_us);
        match self.delivered_hourly.last_mut() {
            Some((h, c)) if *h == hour => *c += n,
            _ => self.delivered_hourly.push((hour, n)),
        }
        self.delivered_hourly.retain(|(h, _)| *h + BUCKETS > hour);
    }

    /// Whether the process that wrote this is still alive (Linux: /proc).
    pub fn writer_alive(&self) -> bool {
        if self.pid == 0 || self.pid == std::process::id() {
            return self.pid != 0;
        }
        // A recycled pid would need to be another vantage-agent to fool us.
        std::fs::read(format!("/proc/{}/cmdline", self.pid))
            .map(|c| String::from_utf8_lossy(&c).contains("vantage-agent"))
            .unwrap_or(false)
    }
}

/// `us` (microseconds since the epoch) as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn format_utc(us: i64) -> String {
    let secs = us.div_euclid(1_000_000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Reads `status.json`; `Ok(None)` when the agent never wrote one.
pub fn read(dir: &Path) -> Result<Option<Status>, StatusError> {
    let path = dir.join(FILE);
    match std::fs::read(&path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| StatusError::Format(path.display().to_string(), e.to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StatusError::Io(path.display().to_string(), e)),
    }
}

/// Writes `status` atomically (temporary file + rename).
pub fn write(dir: &Path, status: &Status) -> Result<(), StatusError> {
    let path = dir.join(FILE);
    let tmp = dir.join(format!(".{FILE}.tmp"));
    let io = |e| StatusError::Io(path.display().to_string(), e);
    let json = serde_json::to_vec_pretty(status)
        .map_err(|e| StatusError::Format(path.display().to_string(), e.to_string()))?;
    std::fs::write(&tmp, json).map_err(io)?;
    std::fs::rename(&tmp, &path).map_err(io)
}

/// In-memory state per data directory (one agent per directory; tests may
/// run several agents in one process).
static STATE: Mutex<Option<HashMap<PathBuf, Status>>> = Mutex::new(None);

/// Records a session event and rewrites `status.json`. Never fails: a
/// status file that cannot be written is logged and the agent goes on.
pub fn record(dir: &Path, outbox: &Outbox, event: Event) {
    let now = vantage_proto::now_us();
    let mut guard = STATE.lock().unwrap_or_else(|p| p.into_inner());
    let map = guard.get_or_insert_with(HashMap::new);
    let st = map.entry(dir.to_path_buf()).or_insert_with(|| {
        // Carry the hourly buckets and totals over from the previous run.
        let mut s = read(dir).ok().flatten().unwrap_or_default();
        s.connected = false;
        s.since_us = now;
        s
    });
    match event {
        Event::Connected => {
            st.connected = true;
            st.since_us = now;
        }
        Event::Disconnected => {
            if st.connected {
                st.since_us = now;
            }
            st.connected = false;
        }
        Event::Acked { accepted, rejected } => {
            st.delivered_total += accepted;
            st.rejected_total += rejected;
            if accepted > 0 {
                st.add_delivered(now, accepted);
            }
        }
        Event::Heartbeat => {}
    }
    st.updated_us = now;
    st.pid = std::process::id();
    st.outbox_depth = outbox.len();
    st.outbox_dropped = outbox.dropped();
    if let Err(e) = write(dir, st) {
        tracing::warn!("cannot write the status file: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc() {
        assert_eq!(format_utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(format_utc(1_709_210_096_000_000), "2024-02-29 12:34:56 UTC");
    }

    #[test]
    fn hourly_buckets_count_the_last_day() {
        let h = 3_600_000_000i64;
        let mut s = Status::default();
        let t0 = 1_000 * h;
        s.add_delivered(t0, 5);
        s.add_delivered(t0 + 10, 2);
        s.add_delivered(t0 + 3 * h, 4);
        assert_eq!(s.delivered_hourly, vec![(1000, 7), (1003, 4)]);
        assert_eq!(s.delivered_24h(t0 + 3 * h), 11);
        assert_eq!(s.delivered_24h(t0 + 24 * h), 4, "hour 1000 has aged out");
        s.add_delivered(t0 + 40 * h, 1);
        assert_eq!(s.delivered_hourly, vec![(1040, 1)], "old buckets pruned");
    }

    #[test]
    fn record_writes_atomically_and_keeps_totals_across_restarts() {
        let d = tempfile::tempdir().unwrap();
        let o = Outbox::open(d.path(), 10).unwrap();
        record(d.path(), &o, Event::Connected);
        record(
            d.path(),
            &o,
            Event::Acked {
                accepted: 3,
                rejected: 1,
            },
        );
        let s = read(d.path()).unwrap().unwrap();
        assert!(s.connected && s.writer_alive());
        assert_eq!((s.delivered_total, s.rejected_total), (3, 1));
        assert_eq!(s.delivered_24h(vantage_proto::now_us()), 3);
        record(d.path(), &o, Event::Disconnected);
        assert!(!read(d.path()).unwrap().unwrap().connected);
        assert!(!d.path().join(format!(".{FILE}.tmp")).exists());
    }
}
