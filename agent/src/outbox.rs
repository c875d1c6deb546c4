//! The durable outbox: an append-only log file, `outbox-log/log` in the data
//! directory. A result is written and fdatasynced before it is sent, and
//! forgotten only when the coordinator has acknowledged it. Entries are
//! keyed by the 16-byte UUIDv7 measurement ids, so reading them in key order
//! is oldest first, and redelivery after a crash sends the same ids (the
//! coordinator ignores duplicates).
//!
//! Why not sled (the coordinator's store): an idle agent should sleep. sled
//! keeps a pool of I/O threads that wake every second each (about 420
//! wake-ups a minute, BENCHMARKS.md), and it is the largest part of the
//! agent's memory and binary. An agent holds at most a few thousand results
//! at a time, written once and read once, which a log does well.
//!
//! The log is a sequence of records, `[len u32 LE][crc32 u32 LE][body]`:
//! - `P` + id + envelope: a result (fdatasynced before `push` returns);
//! - `A` + ids: acknowledged (not synced: a crash before the write reaches
//!   the disk only means the results are sent again);
//! - `D` + ids: dropped to keep the bound (synced with the result that made
//!   room for itself);
//! - `C` + dropped (u64 LE): the dropped count so far, first in a compacted
//!   log.
//!
//! Opening replays the log into an index (id -> offset and length), checks
//! every record's CRC, and cuts a torn tail (a write the crash interrupted)
//! with a warning. When acknowledged records make up most of a log over
//! 1 MiB, the live ones are copied to a new file which replaces it (written,
//! fdatasynced, renamed, directory synced); an empty log is truncated.
//!
//! One process at a time: the outbox holds an exclusive lock on
//! `outbox-log/lock` for as long as it is open (`vantage-agent status` reads
//! the outbox only when no agent holds it).
//!
//! Bound and drop policy: at most `max_entries` results are kept. When a new
//! result would exceed the bound, the OLDEST results are dropped, counted in
//! the persisted dropped count and logged. Nothing is ever wiped silently.
//!
//! Full disk: a result that does not fit fails with the OS error (the
//! partial record is cut off again, the caller logs it). Opening writes
//! nothing and acknowledgements need no room, so an agent on a full disk
//! starts and delivers what the outbox holds; once everything is
//! acknowledged the log is truncated and its space returns.

use std::collections::{BTreeMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use prost::Message;
use vantage_proto::v1::SignedResult;

/// Outbox errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutboxError {
    #[error("outbox {0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("the outbox in {0} is in use by another process (a running agent)")]
    Locked(PathBuf),
    #[error("measurement id {0:?} is not a UUID")]
    BadId(String),
}

/// The outbox's directory inside the data directory.
pub const DIR: &str = "outbox-log";
/// What versions before the log left behind: a sled database (`outbox`) and
/// a 1 MiB reserve file. The reserve is deleted; the database is left
/// alone and reported (see `legacy_outbox`).
const LEGACY_DB: &str = "outbox";
const LEGACY_RESERVE: &str = "outbox.reserve";

const HEADER: usize = 8;
const MAX_RECORD: usize = 16 << 20;
const COMPACT_MIN_BYTES: u64 = 1 << 20;

const PUT: u8 = b'P';
const ACK: u8 = b'A';
const DROP: u8 = b'D';
const COUNT: u8 = b'C';

/// A handle to the outbox (cheap to clone).
#[derive(Clone)]
pub struct Outbox {
    inner: Arc<Mutex<Inner>>,
}

struct Inner {
    dir: PathBuf,
    file: File,
    /// Kept open for the lock it holds.
    _lock: File,
    /// Where the next record goes.
    end: u64,
    /// Bytes of records for results still held.
    live_bytes: u64,
    index: BTreeMap<[u8; 16], Loc>,
    dropped: u64,
    max_entries: u64,
}

#[derive(Clone, Copy)]
struct Loc {
    /// Offset of the envelope bytes (after the record header, kind and id).
    at: u64,
    len: u32,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> OutboxError + '_ {
    move |e| OutboxError::Io(path.to_path_buf(), e)
}

/// A record: header, kind, payload.
fn record(kind: u8, parts: &[&[u8]]) -> Vec<u8> {
    let body_len = 1 + parts.iter().map(|p| p.len()).sum::<usize>();
    let mut out = Vec::with_capacity(HEADER + body_len);
    out.extend_from_slice(&(body_len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.push(kind);
    for p in parts {
        out.extend_from_slice(p);
    }
    let crc = crc32fast::hash(&out[HEADER..]);
    out[4..8].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Fills `buf` from `r`; false at a clean or torn end.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<bool> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => return Ok(false),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

fn sync_dir(dir: &Path) -> Result<(), OutboxError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

impl Outbox {
    /// Opens the outbox in the data directory `dir`, creating it if needed.
    /// Fails with [`OutboxError::Locked`] while another process has it open.
    pub fn open(dir: &Path, max_entries: u64) -> Result<Outbox, OutboxError> {
        let odir = dir.join(DIR);
        if !odir.is_dir() {
            std::fs::create_dir_all(&odir).map_err(io(&odir))?;
            sync_dir(dir)?;
        }
        let lock_path = odir.join("lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(OutboxError::Locked(odir)),
            Err(std::fs::TryLockError::Error(e)) => return Err(OutboxError::Io(lock_path, e)),
        }
        let reserve = dir.join(LEGACY_RESERVE);
        if reserve.exists() {
            let _ = std::fs::remove_file(&reserve);
        }
        let path = odir.join("log");
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io(&path))?;
        let mut inner = Inner {
            dir: odir,
            file: file.try_clone().map_err(io(&path))?,
            _lock: lock,
            end: 0,
            live_bytes: 0,
            index: BTreeMap::new(),
            dropped: 0,
            max_entries: max_entries.max(1),
        };
        let size = file.metadata().map_err(io(&path))?.len();
        let good = inner
            .replay(&mut std::io::BufReader::with_capacity(64 << 10, &mut file))
            .map_err(io(&path))?;
        if good < size {
            tracing::warn!(
                offset = good,
                bytes = size - good,
                "outbox: cut a torn or damaged tail (a write interrupted by a crash)"
            );
            inner.file.set_len(good).map_err(io(&path))?;
            inner.file.sync_data().map_err(io(&path))?;
        }
        inner.end = good;
        Ok(Outbox {
            inner: Arc::new(Mutex::new(inner)),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves the index as the last
        // complete operation left it.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Persists a signed result durably. Drops the oldest entries first if
    /// the bound is reached.
    pub fn push(&self, id: &str, env: &SignedResult) -> Result<(), OutboxError> {
        let key =
            vantage_proto::envelope::parse_id(id).ok_or_else(|| OutboxError::BadId(id.into()))?;
        self.lock().append_results(&[(key, env)])
    }

    /// Persists many results with one sync (`fill-outbox`, tests and
    /// benchmarks). The bound applies as for [`Outbox::push`].
    pub fn push_many(&self, items: &[(String, SignedResult)]) -> Result<(), OutboxError> {
        let mut keyed = Vec::with_capacity(items.len());
        for (id, env) in items {
            let key = vantage_proto::envelope::parse_id(id)
                .ok_or_else(|| OutboxError::BadId(id.clone()))?;
            keyed.push((key, env));
        }
        let mut o = self.lock();
        for chunk in keyed.chunks(1024) {
            o.append_results(chunk)?;
        }
        Ok(())
    }

    /// Up to `limit` results, oldest first, skipping ids in `skip`.
    pub fn pending(
        &self,
        limit: usize,
        skip: &HashSet<[u8; 16]>,
    ) -> Result<Vec<([u8; 16], SignedResult)>, OutboxError> {
        let o = self.lock();
        let mut out = Vec::new();
        for (key, loc) in &o.index {
            if out.len() >= limit {
                break;
            }
            if skip.contains(key) {
                continue;
            }
            let mut buf = vec![0u8; loc.len as usize];
            o.file.read_exact_at(&mut buf, loc.at).map_err(io(&o.dir))?;
            match SignedResult::decode(buf.as_slice()) {
                Ok(env) => out.push((*key, env)),
                // Its CRC matched, so only a bug could bring us here; keep it
                // out of the stream but leave it in the log.
                Err(e) => tracing::error!("undecodable outbox entry skipped: {e}"),
            }
        }
        Ok(out)
    }

    /// Forgets acknowledged results. The record is not synced: after a
    /// crash they are sent again and the coordinator ignores them.
    pub fn remove(&self, ids: &[[u8; 16]]) -> Result<(), OutboxError> {
        let mut o = self.lock();
        let mut gone = Vec::with_capacity(ids.len() * 16);
        for id in ids {
            if let Some(loc) = o.index.remove(id) {
                o.live_bytes -= Inner::put_size(loc);
                gone.extend_from_slice(id);
            }
        }
        if gone.is_empty() {
            return Ok(());
        }
        if o.index.is_empty() {
            return o.truncate();
        }
        if let Err(e) = o.append(&record(ACK, &[&gone]), false) {
            // A full disk must not stop delivery: the results are forgotten
            // here and sent again after a restart.
            tracing::warn!("outbox: acknowledgement not written ({e})");
        }
        o.maybe_compact()
    }

    pub fn len(&self) -> u64 {
        self.lock().index.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Results dropped to keep the bound, ever.
    pub fn dropped(&self) -> u64 {
        self.lock().dropped
    }

    /// Bytes the log takes on disk now.
    pub fn file_bytes(&self) -> u64 {
        self.lock().end
    }
}

/// The sled outbox of versions before the log, if the data directory has
/// one. This version does not read it: results still in it are delivered
/// by running the previous version once, or lost with it.
pub fn legacy_outbox(dir: &Path) -> Option<PathBuf> {
    let p = dir.join(LEGACY_DB);
    p.join("db").exists().then_some(p)
}

impl Inner {
    fn put_size(loc: Loc) -> u64 {
        (HEADER + 1 + 16) as u64 + loc.len as u64
    }

    /// Applies the records `log` holds; the length of the good prefix.
    fn replay(&mut self, log: &mut impl Read) -> std::io::Result<u64> {
        let mut at = 0u64;
        let mut body = Vec::new();
        loop {
            let mut header = [0u8; HEADER];
            if !read_full(log, &mut header)? {
                break;
            }
            let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
            let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
            if len == 0 || len > MAX_RECORD {
                break;
            }
            body.resize(len, 0);
            if !read_full(log, &mut body)? || crc32fast::hash(&body) != crc {
                break;
            }
            let (kind, rest) = (body[0], &body[1..]);
            match kind {
                PUT if rest.len() >= 16 => {
                    let mut key = [0u8; 16];
                    key.copy_from_slice(&rest[..16]);
                    let loc = Loc {
                        at: at + (HEADER + 1 + 16) as u64,
                        len: (rest.len() - 16) as u32,
                    };
                    if let Some(old) = self.index.insert(key, loc) {
                        self.live_bytes -= Self::put_size(old);
                    }
                    self.live_bytes += Self::put_size(loc);
                }
                ACK | DROP => {
                    for id in rest.chunks_exact(16) {
                        if let Some(loc) = self.index.remove(id) {
                            self.live_bytes -= Self::put_size(loc);
                        }
                        if kind == DROP {
                            self.dropped += 1;
                        }
                    }
                }
                COUNT if rest.len() == 8 => {
                    let mut n = [0u8; 8];
                    n.copy_from_slice(rest);
                    self.dropped = u64::from_le_bytes(n);
                }
                _ => break,
            }
            at += (HEADER + len) as u64;
        }
        Ok(at)
    }

    /// Writes `bytes` at the end; on failure cuts the partial write off.
    fn append(&mut self, bytes: &[u8], sync: bool) -> Result<(), OutboxError> {
        let path = self.dir.join("log");
        let written = self.file.write_all_at(bytes, self.end).and_then(|()| {
            if sync {
                self.file.sync_data()
            } else {
                Ok(())
            }
        });
        if let Err(e) = written {
            let _ = self.file.set_len(self.end);
            return Err(OutboxError::Io(path, e));
        }
        self.end += bytes.len() as u64;
        Ok(())
    }

    fn append_results(&mut self, items: &[([u8; 16], &SignedResult)]) -> Result<(), OutboxError> {
        // Room first: the oldest results go, counted, in the same write.
        let new: HashSet<[u8; 16]> = items
            .iter()
            .map(|(k, _)| *k)
            .filter(|k| !self.index.contains_key(k))
            .collect();
        let excess = (self.index.len() + new.len()).saturating_sub(self.max_entries as usize);
        let mut victims: Vec<[u8; 16]> = self.index.keys().take(excess).copied().collect();
        if victims.len() < excess {
            // More new results than the bound: the oldest of them go too.
            let mut fresh: Vec<[u8; 16]> = new.iter().copied().collect();
            fresh.sort_unstable();
            victims.extend(fresh.into_iter().take(excess - victims.len()));
        }
        let mut buf = Vec::new();
        let mut locs = Vec::with_capacity(items.len());
        for (key, env) in items {
            let body = env.encode_to_vec();
            let at = self.end + (buf.len() + HEADER + 1 + 16) as u64;
            locs.push((
                *key,
                Loc {
                    at,
                    len: body.len() as u32,
                },
            ));
            buf.extend(record(PUT, &[key, &body]));
        }
        // After the results, so that replay drops the same ones.
        if !victims.is_empty() {
            buf.extend(record(DROP, &[&victims.concat()]));
        }
        self.append(&buf, true)?;
        for (key, loc) in locs {
            if let Some(old) = self.index.insert(key, loc) {
                self.live_bytes -= Self::put_size(old);
            }
            self.live_bytes += Self::put_size(loc);
        }
        for v in &victims {
            if let Some(loc) = self.index.remove(v) {
                self.live_bytes -= Self::put_size(loc);
            }
            tracing::warn!(
                id = %uuid::Uuid::from_bytes(*v),
                "outbox full: dropped the oldest result"
            );
        }
        self.dropped += victims.len() as u64;
        Ok(())
    }

    /// Nothing is held: the log starts again from an empty file, keeping
    /// the dropped count.
    fn truncate(&mut self) -> Result<(), OutboxError> {
        let path = self.dir.join("log");
        self.file.set_len(0).map_err(io(&path))?;
        self.end = 0;
        self.live_bytes = 0;
        if self.dropped > 0 {
            let dropped = self.dropped.to_le_bytes();
            self.append(&record(COUNT, &[&dropped]), false)?;
        }
        self.file.sync_data().map_err(io(&path))
    }

    /// Copies the live records to a new log when dead ones are most of a
    /// large one.
    fn maybe_compact(&mut self) -> Result<(), OutboxError> {
        if self.end < COMPACT_MIN_BYTES || self.live_bytes * 2 > self.end {
            return Ok(());
        }
        let path = self.dir.join("log");
        let tmp = self.dir.join("log.compact");
        let mut buf = record(COUNT, &[&self.dropped.to_le_bytes()]);
        let mut index = BTreeMap::new();
        for (key, loc) in &self.index {
            let mut body = vec![0u8; loc.len as usize];
            self.file
                .read_exact_at(&mut body, loc.at)
                .map_err(io(&path))?;
            let at = (buf.len() + HEADER + 1 + 16) as u64;
            index.insert(*key, Loc { at, len: loc.len });
            buf.extend(record(PUT, &[key, &body]));
        }
        let written = (|| {
            let f = OpenOptions::new()
                .create(true)
                .truncate(true)
                .read(true)
                .write(true)
                .open(&tmp)?;
            f.write_all_at(&buf, 0)?;
            f.sync_data()?;
            std::fs::rename(&tmp, &path)?;
            Ok::<File, std::io::Error>(f)
        })();
        let file = match written {
            Ok(f) => f,
            Err(e) => {
                // Not fatal: the old log is intact and still in use.
                let _ = std::fs::remove_file(&tmp);
                tracing::warn!("outbox: compaction failed ({e})");
                return Ok(());
            }
        };
        sync_dir(&self.dir)?;
        tracing::debug!(from = self.end, to = buf.len(), "outbox compacted");
        self.file = file;
        self.end = buf.len() as u64;
        self.index = index;
        Ok(())
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

    fn kept(o: &Outbox) -> Vec<u8> {
        o.pending(usize::MAX, &Default::default())
            .unwrap()
            .iter()
            .map(|(_, e)| e.measurement[0])
            .collect()
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
        assert_eq!(kept(&o), vec![2, 3, 4], "the oldest two were dropped");
        o.remove(&[p[0].0]).unwrap();
        assert_eq!(o.len(), 2);
        assert!(o.push("not-a-uuid", &env(9)).is_err());
        let skip: HashSet<[u8; 16]> = [p[1].0].into();
        let rest = o.pending(10, &skip).unwrap();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].1.measurement[0], 4);
    }

    #[test]
    fn a_second_open_is_refused_while_the_first_holds_it() {
        let d = tempfile::tempdir().unwrap();
        let o = Outbox::open(d.path(), 10).unwrap();
        assert!(matches!(
            Outbox::open(d.path(), 10),
            Err(OutboxError::Locked(_))
        ));
        drop(o);
        Outbox::open(d.path(), 10).expect("free again");
    }

    #[test]
    fn a_torn_tail_is_cut_and_what_came_before_kept() {
        let d = tempfile::tempdir().unwrap();
        let ids: Vec<String> = (0..3).map(|_| vantage_proto::envelope::new_id()).collect();
        {
            let o = Outbox::open(d.path(), 10).unwrap();
            for (i, id) in ids.iter().enumerate() {
                o.push(id, &env(i as u8)).unwrap();
            }
        }
        let log = d.path().join(DIR).join("log");
        let full = std::fs::metadata(&log).unwrap().len();
        // The last record loses its last 5 bytes, as a crash mid-write would.
        let f = OpenOptions::new().write(true).open(&log).unwrap();
        f.set_len(full - 5).unwrap();
        drop(f);
        let o = Outbox::open(d.path(), 10).unwrap();
        assert_eq!(kept(&o), vec![0, 1]);
        // The cut tail makes room: the next record is readable after reopen.
        o.push(&ids[2], &env(2)).unwrap();
        drop(o);
        // A flipped byte inside a record is caught by its CRC.
        let mut bytes = std::fs::read(&log).unwrap();
        let n = bytes.len();
        bytes[n - 3] ^= 0xff;
        std::fs::write(&log, &bytes).unwrap();
        let o = Outbox::open(d.path(), 10).unwrap();
        assert_eq!(kept(&o), vec![0, 1]);
    }

    #[test]
    fn acknowledged_records_are_compacted_away_and_an_empty_log_truncated() {
        let d = tempfile::tempdir().unwrap();
        let o = Outbox::open(d.path(), 100_000).unwrap();
        let big = SignedResult {
            measurement: vec![7; 1000].into(),
            signature: vec![7; 64].into(),
        };
        let items: Vec<(String, SignedResult)> = (0..3000)
            .map(|_| (vantage_proto::envelope::new_id(), big.clone()))
            .collect();
        o.push_many(&items).unwrap();
        let before = o.file_bytes();
        assert!(before > 3_000_000, "{before}");
        // Acknowledge all but the newest 100, in batches as a session does.
        let keys: Vec<[u8; 16]> = o
            .pending(usize::MAX, &Default::default())
            .unwrap()
            .iter()
            .map(|(k, _)| *k)
            .collect();
        for batch in keys[..2900].chunks(256) {
            o.remove(batch).unwrap();
        }
        assert_eq!(o.len(), 100);
        let after = o.file_bytes();
        assert!(
            after < before / 4,
            "compacted: {before} -> {after} bytes on disk"
        );
        drop(o);
        let o = Outbox::open(d.path(), 100_000).unwrap();
        assert_eq!(o.len(), 100);
        let held = o.pending(usize::MAX, &Default::default()).unwrap();
        assert_eq!(held[0].0, keys[2900], "the oldest kept comes first");
        o.remove(&keys[2900..]).unwrap();
        assert_eq!(o.file_bytes(), 0, "nothing held, nothing on disk");
        drop(o);
        let o = Outbox::open(d.path(), 100_000).unwrap();
        assert!(o.is_empty());
    }

    #[test]
    fn the_dropped_count_survives_truncation_and_compaction() {
        let d = tempfile::tempdir().unwrap();
        let o = Outbox::open(d.path(), 2).unwrap();
        let ids: Vec<String> = (0..5).map(|_| vantage_proto::envelope::new_id()).collect();
        for id in &ids {
            o.push(id, &env(1)).unwrap();
        }
        assert_eq!(o.dropped(), 3);
        let keys: Vec<[u8; 16]> = o
            .pending(9, &Default::default())
            .unwrap()
            .iter()
            .map(|(k, _)| *k)
            .collect();
        o.remove(&keys).unwrap();
        drop(o);
        let o = Outbox::open(d.path(), 2).unwrap();
        assert_eq!(o.dropped(), 3);
        assert!(o.is_empty());
        // A batch larger than the bound keeps its newest.
        let many: Vec<(String, SignedResult)> = (0..4u8)
            .map(|i| (vantage_proto::envelope::new_id(), env(i)))
            .collect();
        o.push_many(&many).unwrap();
        assert_eq!(kept(&o), vec![2, 3]);
        assert_eq!(o.dropped(), 5);
    }
}
