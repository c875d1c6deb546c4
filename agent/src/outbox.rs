//! The durable outbox, in its own sled database: a result is persisted
//! (flushed and fdatasynced) before it is sent, and deleted only when the
//! coordinator has acknowledged it. Keys are the 16-byte UUIDv7 measurement
//! ids, so iteration is oldest first and redelivery after a crash sends the
//! same ids (the coordinator ignores duplicates).
//!
//! Bound and drop policy: at most `max_entries` results are kept. When a new
//! result would exceed the bound, the OLDEST results are dropped, counted in
//! the persisted `dropped` counter and logged. Nothing is ever wiped
//! silently.
//!
//! Full disk: the outbox keeps a 1 MiB reserve file (`outbox.reserve`)
//! beside it. A write that finds the disk full fails with the OS error (the
//! result is not stored, the caller logs it). When the disk is so full that
//! sled cannot even open the outbox, the reserve is deleted and the open
//! retried, so the agent starts and can deliver what the outbox holds; the
//! reserve is re-created at the next open with room for it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prost::Message;
use vantage_proto::v1::SignedResult;

/// Outbox errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutboxError {
    #[error("outbox database: {0}")]
    Sled(#[from] sled::Error),
    #[error("outbox sync of {0}: {1}")]
    Sync(PathBuf, std::io::Error),
    #[error("measurement id {0:?} is not a UUID")]
    BadId(String),
}

/// A handle to the outbox (cheap to clone).
#[derive(Clone)]
pub struct Outbox {
    db: sled::Db,
    items: sled::Tree,
    meta: sled::Tree,
    path: PathBuf,
    max_entries: u64,
    len: Arc<AtomicU64>,
}

/// The reserve file kept beside the outbox, and its size.
pub const RESERVE_FILE: &str = "outbox.reserve";
const RESERVE_BYTES: usize = 1 << 20;

fn disk_full(e: &sled::Error) -> bool {
    matches!(e, sled::Error::Io(io) if io.raw_os_error() == Some(28)) // ENOSPC
}

impl Outbox {
    /// Opens the outbox (creating the reserve when there is room for it).
    pub fn open(dir: &Path, max_entries: u64) -> Result<Outbox, OutboxError> {
        Self::open_inner(dir, max_entries, false)
    }

    /// As [`Outbox::open`], but on a disk too full to open the outbox,
    /// deletes the reserve and tries again (`vantage-agent run` only, so
    /// that the agent can start and deliver).
    pub fn open_releasing_reserve(dir: &Path, max_entries: u64) -> Result<Outbox, OutboxError> {
        Self::open_inner(dir, max_entries, true)
    }

    fn open_inner(dir: &Path, max_entries: u64, release: bool) -> Result<Outbox, OutboxError> {
        let reserve = dir.join(RESERVE_FILE);
        let outbox = match Self::open_db(dir, max_entries) {
            Err(OutboxError::Sled(e)) if release && disk_full(&e) && reserve.exists() => {
                tracing::warn!(
                    "disk full: deleting the outbox reserve ({} KiB) to open the outbox",
                    RESERVE_BYTES >> 10
                );
                std::fs::remove_file(&reserve)
                    .map_err(|e| OutboxError::Sync(reserve.clone(), e))?;
                Self::open_db(dir, max_entries)?
            }
            r => r?,
        };
        if !reserve.exists() {
            // Best effort: a disk without room for it gets none.
            if let Err(e) = std::fs::write(&reserve, vec![0u8; RESERVE_BYTES]) {
                let _ = std::fs::remove_file(&reserve);
                tracing::warn!("cannot create the outbox reserve: {e}");
            }
        }
        Ok(outbox)
    }

    fn open_db(dir: &Path, max_entries: u64) -> Result<Outbox, OutboxError> {
        let path = dir.join("outbox");
        // No background flusher: every push syncs explicitly, and an idle
        // agent should not wake up several times a second.
        let db = sled::Config::new()
            .path(&path)
            .cache_capacity(8 << 20)
            .flush_every_ms(None)
            .open()?;
        let items = db.open_tree("items")?;
        let meta = db.open_tree("meta")?;
        let len = Arc::new(AtomicU64::new(items.len() as u64));
        Ok(Outbox {
            db,
            items,
            meta,
            path,
            max_entries: max_entries.max(1),
            len,
        })
    }

    fn sync(&self) -> Result<(), OutboxError> {
        self.db.flush()?;
        let log = self.path.join("db");
        std::fs::File::open(&log)
            .and_then(|f| f.sync_data())
            .map_err(|e| OutboxError::Sync(log, e))
    }

    /// Persists a signed result durably. Drops the oldest entries first if
    /// the bound is reached.
    pub fn push(&self, id: &str, env: &SignedResult) -> Result<(), OutboxError> {
        let key =
            vantage_proto::envelope::parse_id(id).ok_or_else(|| OutboxError::BadId(id.into()))?;
        let mut dropped = 0u64;
        while self.len.load(Ordering::Relaxed) >= self.max_entries {
            match self.items.pop_min()? {
                Some((k, _)) => {
                    dropped += 1;
                    self.len.fetch_sub(1, Ordering::Relaxed);
                    tracing::warn!(
                        id = %uuid::Uuid::from_slice(&k).map(|u| u.to_string()).unwrap_or_default(),
                        "outbox full: dropped the oldest result"
                    );
                }
                None => break,
            }
        }
        if dropped > 0 {
            self.add_dropped(dropped)?;
        }
        if self.items.insert(key, env.encode_to_vec())?.is_none() {
            self.len.fetch_add(1, Ordering::Relaxed);
        }
        self.sync()
    }

    /// Persists many results with one sync (used by `fill-outbox` for tests
    /// and benchmarks). The bound applies as for [`Outbox::push`].
    pub fn push_many(&self, items: &[(String, SignedResult)]) -> Result<(), OutboxError> {
        for chunk in items.chunks(1024) {
            let mut dropped = 0;
            for (id, env) in chunk {
                let key = vantage_proto::envelope::parse_id(id)
                    .ok_or_else(|| OutboxError::BadId(id.clone()))?;
                while self.len.load(Ordering::Relaxed) >= self.max_entries {
                    if self.items.pop_min()?.is_none() {
                        break;
                    }
                    dropped += 1;
                    self.len.fetch_sub(1, Ordering::Relaxed);
                }
                if self.items.insert(key, env.encode_to_vec())?.is_none() {
                    self.len.fetch_add(1, Ordering::Relaxed);
                }
            }
            if dropped > 0 {
                tracing::warn!(dropped, "outbox full: dropped the oldest results");
                self.add_dropped(dropped)?;
            }
        }
        self.sync()
    }

    fn add_dropped(&self, n: u64) -> Result<(), OutboxError> {
        self.meta.update_and_fetch(b"dropped", |old| {
            let v = old
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_be_bytes)
                .unwrap_or(0);
            Some((v + n).to_be_bytes().to_vec())
        })?;
        Ok(())
    }

    /// Up to `limit` results, oldest first, skipping ids in `skip`.
    pub fn pending(
        &self,
        limit: usize,
        skip: &std::collections::HashSet<[u8; 16]>,
    ) -> Result<Vec<([u8; 16], SignedResult)>, OutboxError> {
        let mut out = Vec::new();
        for kv in self.items.iter() {
            let (k, v) = kv?;
            let Ok(key) = <[u8; 16]>::try_from(k.as_ref()) else {
                continue;
            };
            if skip.contains(&key) {
                continue;
            }
            match SignedResult::decode(v.as_ref()) {
                Ok(env) => out.push((key, env)),
                Err(e) => {
                    // Cannot happen unless the disk corrupted it; keep it out
                    // of the stream but leave it for inspection.
                    tracing::error!("undecodable outbox entry skipped: {e}");
                    continue;
                }
            }
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Removes acknowledged results.
    pub fn remove(&self, ids: &[[u8; 16]]) -> Result<(), OutboxError> {
        for id in ids {
            if self.items.remove(id)?.is_some() {
                self.len.fetch_sub(1, Ordering::Relaxed);
            }
        }
        self.db.flush()?;
        Ok(())
    }

    pub fn len(&self) -> u64 {
        self.len.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn dropped(&self) -> u64 {
        self.meta
            .get(b"dropped")
            .ok()
            .flatten()
            .and_then(|b| <[u8; 8]>::try_from(b.as_ref()).ok())
            .map(u64::from_be_bytes)
            .unwrap_or(0)
    }

    /// Adds to the persisted count of results delivered (for `status`).
    pub fn note_delivered(&self, n: u64) {
        let _ = self.meta.update_and_fetch(b"delivered", |old| {
            let v = old
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_be_bytes)
                .unwrap_or(0);
            Some((v + n).to_be_bytes().to_vec())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(i: u8) -> SignedResult {
        SignedResult {
            measurement: vec![i; 10].into(),
            signature: vec![i; 64].into(),
        }
    }

    #[test]
    fn survives_reopen_and_drops_oldest_when_full() {
        let d = tempfile::tempdir().unwrap();
        let ids: Vec<String> = (0..5).map(|_| vantage_proto::envelope::new_id()).collect();
        {
            let o = Outbox::open(d.path(), 3).unwrap();
            for (i, id) in ids.iter().enumerate() {
                o.push(id, &env(i as u8)).unwrap();
            }
            assert_eq!(o.len(), 3);
            assert_eq!(o.dropped(), 2);
        }
        let o = Outbox::open(d.path(), 3).unwrap();
        assert_eq!(o.len(), 3);
        assert_eq!(o.dropped(), 2);
        let p = o.pending(10, &Default::default()).unwrap();
        let kept: Vec<u8> = p.iter().map(|(_, e)| e.measurement[0]).collect();
        assert_eq!(kept, vec![2, 3, 4], "the oldest two were dropped");
        o.remove(&[p[0].0]).unwrap();
        assert_eq!(o.len(), 2);
        assert!(o.push("not-a-uuid", &env(9)).is_err());
    }
}
