//! The value log: result bodies (prost `StoredResult`, ~1 KiB each) live in
//! append-only segment files beside sled, and sled's `r` entry holds a
//! 17-byte pointer to them.
//!
//! Why: sled copies whole leaf nodes when it splits and rewrites them, and
//! a leaf holds up to 16 values, so a ~1 KiB value was serialised three to
//! four times and dominated the commit thread (BENCHMARKS.md, "value log").
//! Keeping sled's entries small (inline `IVec`s, no allocation) doubled the
//! ingest rate.
//!
//! Durability: the commit thread appends a group's values, `fdatasync`s the
//! segment, and only then applies the sled batch holding the pointers (and
//! syncs sled). So every pointer sled can ever hold, even one sled persisted
//! on its own, points at bytes already on disk. A crash between the two
//! leaves unreferenced bytes in a segment, which are never read; the agent
//! resends the result because it was never acknowledged.
//!
//! Each start writes to a new segment (the previous one may end in a torn
//! record), and a segment is closed at [`SEGMENT_BYTES`]. A record is
//! `crc32 (4, LE) ‖ bytes`; the pointer holds the segment, offset and
//! length, and a read checks the CRC, so a damaged file is a clear error,
//! never a wrong answer or a panic.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use super::StoreError;

/// First byte of a pointer. A prost `StoredResult` never starts with it
/// (its first byte is the tag of a low-numbered field), so values written
/// inline by earlier versions are still read as they are.
const POINTER_TAG: u8 = 0xFF;
/// Length of an encoded pointer: tag, segment (4), offset (8), length (4).
pub(super) const POINTER_LEN: usize = 17;
/// A segment is closed when it reaches this size.
pub(super) const SEGMENT_BYTES: u64 = 1 << 30;
/// Largest record accepted (a result is far smaller; see ingest limits).
const MAX_RECORD: u32 = 64 << 20;

/// Where one value lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Pointer {
    pub(super) segment: u32,
    pub(super) offset: u64,
    pub(super) len: u32,
}

impl Pointer {
    pub(super) fn encode(&self) -> [u8; POINTER_LEN] {
        let mut b = [0u8; POINTER_LEN];
        b[0] = POINTER_TAG;
        b[1..5].copy_from_slice(&self.segment.to_be_bytes());
        b[5..13].copy_from_slice(&self.offset.to_be_bytes());
        b[13..17].copy_from_slice(&self.len.to_be_bytes());
        b
    }

    /// The pointer in a stored `r` value, or `None` for a value stored
    /// inline (by a version before the value log).
    pub(super) fn decode(b: &[u8]) -> Option<Pointer> {
        if b.len() != POINTER_LEN || b[0] != POINTER_TAG {
            return None;
        }
        Some(Pointer {
            segment: u32::from_be_bytes(b[1..5].try_into().ok()?),
            offset: u64::from_be_bytes(b[5..13].try_into().ok()?),
            len: u32::from_be_bytes(b[13..17].try_into().ok()?),
        })
    }
}

struct Writer {
    segment: u32,
    file: Option<File>,
    len: u64,
}

/// Append-only segment files under `<store>/values/`.
pub(super) struct ValueLog {
    dir: PathBuf,
    writer: Mutex<Writer>,
    readers: RwLock<HashMap<u32, Arc<File>>>,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn corrupt(detail: String) -> StoreError {
    StoreError::Corrupt {
        tree: "values",
        detail,
    }
}

fn segment_name(n: u32) -> String {
    format!("{n:08}.vlog")
}

impl ValueLog {
    /// Opens the log under `dir` (created if missing). New values go to a
    /// segment numbered after every existing one; it is created on the
    /// first append.
    pub(super) fn open(dir: &Path) -> Result<ValueLog, StoreError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let mut last = 0u32;
        for e in std::fs::read_dir(dir).map_err(io_err(dir))? {
            let e = e.map_err(io_err(dir))?;
            let name = e.file_name();
            let Some(n) = name
                .to_str()
                .and_then(|s| s.strip_suffix(".vlog"))
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            last = last.max(n);
        }
        let next = last
            .checked_add(1)
            .ok_or_else(|| corrupt(format!("segment numbers exhausted in {}", dir.display())))?;
        Ok(ValueLog {
            dir: dir.to_path_buf(),
            writer: Mutex::new(Writer {
                segment: next,
                file: None,
                len: 0,
            }),
            readers: RwLock::new(HashMap::new()),
        })
    }

    /// Appends `values` in one write, `fdatasync`s, and returns where each
    /// one is. Only after this returns may a pointer be stored.
    pub(super) fn append<'a>(
        &self,
        values: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<Vec<Pointer>, StoreError> {
        let mut w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        if w.len >= SEGMENT_BYTES {
            w.segment = w
                .segment
                .checked_add(1)
                .ok_or_else(|| corrupt("segment numbers exhausted".into()))?;
            w.file = None;
            w.len = 0;
        }
        let mut buf = Vec::new();
        let mut ptrs = Vec::new();
        for v in values {
            let len = u32::try_from(v.len())
                .ok()
                .filter(|l| *l <= MAX_RECORD)
                .ok_or_else(|| corrupt(format!("value of {} bytes is too large", v.len())))?;
            buf.extend_from_slice(&crc32fast::hash(v).to_le_bytes());
            ptrs.push(Pointer {
                segment: w.segment,
                offset: w.len + buf.len() as u64,
                len,
            });
            buf.extend_from_slice(v);
        }
        if buf.is_empty() {
            return Ok(ptrs);
        }
        let path = self.dir.join(segment_name(w.segment));
        let start = w.len;
        let opened = match w.file.take() {
            Some(f) => Ok(f),
            None => OpenOptions::new()
                .create_new(true)
                .append(true)
                .open(&path)
                .and_then(|f| {
                    // The new file's name must survive a crash too.
                    File::open(&self.dir).and_then(|d| d.sync_all())?;
                    Ok(f)
                }),
        };
        let written = opened.and_then(|mut f| {
            f.write_all(&buf)?;
            f.sync_data()?;
            Ok(f)
        });
        match written {
            Ok(f) => w.file = Some(f),
            Err(e) => {
                // Whatever reached the file is unreferenced; go on in a
                // fresh segment (disk full, say), so offsets stay exact.
                w.len = 0;
                w.segment = w.segment.saturating_add(1);
                return Err(io_err(&path)(e));
            }
        }
        w.len = start + buf.len() as u64;
        Ok(ptrs)
    }

    fn reader(&self, segment: u32) -> Result<Arc<File>, StoreError> {
        if let Some(f) = self
            .readers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&segment)
        {
            return Ok(f.clone());
        }
        let path = self.dir.join(segment_name(segment));
        let f = Arc::new(File::open(&path).map_err(io_err(&path))?);
        self.readers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(segment, f.clone());
        Ok(f)
    }

    /// Reads and checks one value.
    pub(super) fn read(&self, p: Pointer) -> Result<Vec<u8>, StoreError> {
        if p.len > MAX_RECORD || p.offset < 4 {
            return Err(corrupt(format!("bad pointer {p:?}")));
        }
        let f = self.reader(p.segment)?;
        let mut buf = vec![0u8; 4 + p.len as usize];
        f.read_exact_at(&mut buf, p.offset - 4).map_err(|e| {
            corrupt(format!(
                "segment {} cannot give {} bytes at {}: {e}",
                segment_name(p.segment),
                p.len,
                p.offset
            ))
        })?;
        let crc = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]);
        let value = buf.split_off(4);
        if crc32fast::hash(&value) != crc {
            return Err(corrupt(format!(
                "checksum mismatch in segment {} at {}",
                segment_name(p.segment),
                p.offset
            )));
        }
        Ok(value)
    }

    /// The value an `r` entry stands for: read through its pointer, or the
    /// entry itself when it was stored inline.
    pub(super) fn resolve(&self, stored: sled::IVec) -> Result<sled::IVec, StoreError> {
        match Pointer::decode(&stored) {
            Some(p) => Ok(self.read(p)?.into()),
            None => Ok(stored),
        }
    }

    /// The segment new values go to now; every older one is closed.
    pub(super) fn writing(&self) -> u32 {
        self.writer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .segment
    }

    /// Deletes the closed segments (numbered below `below`) that are not in
    /// `live`; returns how many and their bytes.
    pub(super) fn reclaim(
        &self,
        below: u32,
        live: &std::collections::HashSet<u32>,
    ) -> Result<(usize, u64), StoreError> {
        let mut removed = (0, 0);
        for e in std::fs::read_dir(&self.dir).map_err(io_err(&self.dir))? {
            let e = e.map_err(io_err(&self.dir))?;
            let Some(n) = e
                .file_name()
                .to_str()
                .and_then(|s| s.strip_suffix(".vlog"))
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if n >= below || live.contains(&n) {
                continue;
            }
            let bytes = e.metadata().map(|m| m.len()).unwrap_or(0);
            self.readers
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&n);
            let path = e.path();
            std::fs::remove_file(&path).map_err(io_err(&path))?;
            removed.0 += 1;
            removed.1 += bytes;
        }
        Ok(removed)
    }

    /// Bytes in every segment.
    pub(super) fn size_on_disk(&self) -> u64 {
        std::fs::read_dir(&self.dir)
            .map(|it| {
                it.flatten()
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_read_back_across_reopens_and_damage_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        let log = ValueLog::open(d.path()).unwrap();
        let a = log
            .append([&b"first"[..], &b""[..], &[7u8; 3000][..]])
            .unwrap();
        assert_eq!(a.len(), 3);
        assert_eq!(log.read(a[0]).unwrap(), b"first");
        assert_eq!(log.read(a[1]).unwrap(), b"");
        assert_eq!(log.read(a[2]).unwrap(), vec![7u8; 3000]);
        assert_eq!(Pointer::decode(&a[2].encode()), Some(a[2]));
        drop(log);

        // A reopened log keeps the old segment readable and writes a new one.
        let log = ValueLog::open(d.path()).unwrap();
        let b = log.append([&b"second"[..]]).unwrap();
        assert_ne!(b[0].segment, a[0].segment);
        assert_eq!(log.read(a[0]).unwrap(), b"first");
        assert_eq!(log.read(b[0]).unwrap(), b"second");

        // A flipped byte, a pointer past the end, a missing segment: errors.
        let path = d.path().join(segment_name(a[0].segment));
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[a[0].offset as usize] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        let log = ValueLog::open(d.path()).unwrap();
        assert!(matches!(log.read(a[0]), Err(StoreError::Corrupt { .. })));
        let past = Pointer {
            offset: 1 << 20,
            ..a[2]
        };
        assert!(matches!(log.read(past), Err(StoreError::Corrupt { .. })));
        let gone = Pointer {
            segment: 999,
            ..a[2]
        };
        assert!(log.read(gone).is_err());
        // An inline (pre-value-log) value and a short one are not pointers.
        assert_eq!(Pointer::decode(b"\x0a\x03abc"), None);
        assert_eq!(Pointer::decode(&a[0].encode()[..16]), None);
    }
}
