//! Backups: the whole store (every tree, every key) and the data directory's
//! files (config, CA, server and admin credentials) in one self-checking
//! file.
//!
//! Format (version 1), all integers big-endian:
//!
//! ```text
//! "VNTGBKP\0" u32 version u64 created_us
//! records:  'F' u32 name_len name u32 mode u64 len data     a data-dir file
//!           'T' u32 name_len name                           a sled tree starts
//!           'E' u32 key_len key u64 value_len value         an entry of that tree
//! trailer:  'Z' u64 files u64 trees u64 entries  [32 bytes SHA-256 of all bytes before them]
//! ```
//!
//! A truncated file, a flipped byte or trailing garbage is refused before
//! anything is written (the checksum covers every byte), so `restore` never
//! leaves half a store behind.
//!
//! This does what `sled::Db::export`/`import` do (iterate every tree, insert
//! into empty trees) but returns errors instead of panicking on I/O
//! problems. Each tree is read with one iterator, which is consistent per
//! tree only while nothing writes: run it on a stopped coordinator, or (live)
//! with the commit thread held so that no result batch lands mid-scan.

use std::io::{BufReader, BufWriter, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{Store, StoreError};

const MAGIC: &[u8; 8] = b"VNTGBKP\0";
const VERSION: u32 = 1;
/// Sub-directory of the data directory that holds the sled store (as
/// `server::open_state` opens it).
pub const STORE_DIR: &str = "store";
/// Longest tree or file name accepted.
const MAX_NAME: u32 = 4096;
/// Largest single key, value or file accepted (corrupt lengths must not
/// make us allocate the world).
const MAX_BLOB: u64 = 1 << 30;

/// Backup and restore failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("not a Vantage backup (bad magic bytes)")]
    NotABackup,
    #[error("backup format version {0} is not supported (this build reads {VERSION})")]
    UnsupportedVersion(u32),
    #[error("the backup is truncated (it ends in the middle of a record)")]
    Truncated,
    #[error("the backup is corrupt: {0}")]
    Corrupt(String),
    #[error("the backup is corrupt: its SHA-256 checksum does not match its contents")]
    Checksum,
    #[error("refusing to restore into {0}: the directory is not empty")]
    TargetNotEmpty(PathBuf),
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> BackupError {
    let context = context.into();
    move |source| BackupError::Io { context, source }
}

/// What a backup holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub created_us: i64,
    pub files: u64,
    pub trees: u64,
    pub entries: u64,
}

/// A writer that hashes everything written through it.
struct HashingWriter<W: Write> {
    inner: W,
    hash: Sha256,
}

impl<W: Write> HashingWriter<W> {
    fn put(&mut self, bytes: &[u8]) -> Result<(), BackupError> {
        self.hash.update(bytes);
        self.inner
            .write_all(bytes)
            .map_err(io("writing the backup"))
    }
    fn put_u32(&mut self, v: u32) -> Result<(), BackupError> {
        self.put(&v.to_be_bytes())
    }
    fn put_u64(&mut self, v: u64) -> Result<(), BackupError> {
        self.put(&v.to_be_bytes())
    }
    fn put_name(&mut self, name: &[u8]) -> Result<(), BackupError> {
        let len = u32::try_from(name.len())
            .ok()
            .filter(|l| *l <= MAX_NAME)
            .ok_or_else(|| BackupError::Corrupt("name too long to back up".into()))?;
        self.put_u32(len)?;
        self.put(name)
    }
}

/// A reader that hashes everything read through it.
struct HashingReader<R: Read> {
    inner: R,
    hash: Sha256,
}

/// Fills `buf` from the backup; an early end is `Truncated`.
fn read_exact(r: &mut impl Read, buf: &mut [u8]) -> Result<(), BackupError> {
    r.read_exact(buf).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            BackupError::Truncated
        } else {
            BackupError::Io {
                context: "reading the backup".into(),
                source: e,
            }
        }
    })
}

impl<R: Read> HashingReader<R> {
    fn exact(&mut self, buf: &mut [u8]) -> Result<(), BackupError> {
        read_exact(&mut self.inner, buf)?;
        self.hash.update(&*buf);
        Ok(())
    }
    fn u8(&mut self) -> Result<u8, BackupError> {
        let mut b = [0u8; 1];
        self.exact(&mut b)?;
        Ok(b[0])
    }
    fn u32(&mut self) -> Result<u32, BackupError> {
        let mut b = [0u8; 4];
        self.exact(&mut b)?;
        Ok(u32::from_be_bytes(b))
    }
    fn u64(&mut self) -> Result<u64, BackupError> {
        let mut b = [0u8; 8];
        self.exact(&mut b)?;
        Ok(u64::from_be_bytes(b))
    }
    /// `len` bytes, allocated as they arrive (a corrupt length on a short
    /// file ends in `Truncated`, not in a huge allocation).
    fn blob(&mut self, len: u64, max: u64, what: &str) -> Result<Vec<u8>, BackupError> {
        if len > max {
            return Err(BackupError::Corrupt(format!(
                "{what} length {len} exceeds {max}"
            )));
        }
        let mut buf = Vec::new();
        (&mut self.inner)
            .take(len)
            .read_to_end(&mut buf)
            .map_err(io("reading the backup"))?;
        if buf.len() as u64 != len {
            return Err(BackupError::Truncated);
        }
        self.hash.update(&buf);
        Ok(buf)
    }
    fn name(&mut self, what: &str) -> Result<Vec<u8>, BackupError> {
        let len = self.u32()?;
        self.blob(u64::from(len), u64::from(MAX_NAME), what)
    }
}

/// One record of a backup, as read.
enum Record {
    File {
        name: String,
        mode: u32,
        data: Vec<u8>,
    },
    Tree(Vec<u8>),
    Entry(Vec<u8>, Vec<u8>),
}

/// Reads a whole backup, handing each record to `sink`, and checks the
/// trailer and checksum at the end.
fn read_backup<R: Read>(
    reader: R,
    mut sink: impl FnMut(Record) -> Result<(), BackupError>,
) -> Result<Summary, BackupError> {
    let mut r = HashingReader {
        inner: BufReader::with_capacity(1 << 20, reader),
        hash: Sha256::new(),
    };
    let mut magic = [0u8; 8];
    r.exact(&mut magic).map_err(|e| match e {
        BackupError::Truncated => BackupError::NotABackup,
        e => e,
    })?;
    if &magic != MAGIC {
        return Err(BackupError::NotABackup);
    }
    let version = r.u32()?;
    if version != VERSION {
        return Err(BackupError::UnsupportedVersion(version));
    }
    let mut seen = Summary {
        created_us: r.u64()? as i64,
        ..Default::default()
    };
    let mut in_tree = false;
    loop {
        match r.u8()? {
            b'F' => {
                let name = String::from_utf8(r.name("file name")?)
                    .map_err(|_| BackupError::Corrupt("file name is not UTF-8".into()))?;
                if name.is_empty() || name == "." || name == ".." || name.contains('/') {
                    return Err(BackupError::Corrupt(format!("bad file name {name:?}")));
                }
                let mode = r.u32()? & 0o777;
                let len = r.u64()?;
                let data = r.blob(len, MAX_BLOB, "file")?;
                seen.files += 1;
                sink(Record::File { name, mode, data })?;
            }
            b'T' => {
                let name = r.name("tree name")?;
                seen.trees += 1;
                in_tree = true;
                sink(Record::Tree(name))?;
            }
            b'E' => {
                if !in_tree {
                    return Err(BackupError::Corrupt("entry outside a tree".into()));
                }
                let klen = r.u32()?;
                let key = r.blob(u64::from(klen), MAX_BLOB, "key")?;
                let vlen = r.u64()?;
                let value = r.blob(vlen, MAX_BLOB, "value")?;
                seen.entries += 1;
                sink(Record::Entry(key, value))?;
            }
            b'Z' => {
                let (files, trees, entries) = (r.u64()?, r.u64()?, r.u64()?);
                let computed = std::mem::take(&mut r.hash).finalize();
                let mut stored = [0u8; 32];
                read_exact(&mut r.inner, &mut stored)?;
                if computed.as_slice() != stored {
                    return Err(BackupError::Checksum);
                }
                if (files, trees, entries) != (seen.files, seen.trees, seen.entries) {
                    return Err(BackupError::Corrupt(format!(
                        "trailer counts {files} files, {trees} trees, {entries} entries; \
                         found {}, {}, {}",
                        seen.files, seen.trees, seen.entries
                    )));
                }
                let mut extra = [0u8; 1];
                match r.inner.read(&mut extra) {
                    Ok(0) => return Ok(seen),
                    Ok(_) => {
                        return Err(BackupError::Corrupt(
                            "trailing bytes after the checksum".into(),
                        ))
                    }
                    Err(e) => return Err(io("reading the backup")(e)),
                }
            }
            other => {
                return Err(BackupError::Corrupt(format!(
                    "unknown record type 0x{other:02x}"
                )))
            }
        }
    }
}

/// Checks a backup end to end (structure, counts, checksum) without
/// writing anything.
pub fn verify<R: Read>(reader: R) -> Result<Summary, BackupError> {
    read_backup(reader, |_| Ok(()))
}

/// Regular files directly inside `dir` (config and PKI), sorted by name.
fn data_files(dir: &Path) -> Result<Vec<(String, u32, PathBuf)>, BackupError> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(io(dir.display().to_string()))?;
    for e in entries {
        let e = e.map_err(io(dir.display().to_string()))?;
        let path = e.path();
        let meta = std::fs::symlink_metadata(&path).map_err(io(path.display().to_string()))?;
        if !meta.is_file() {
            continue;
        }
        let Some(name) = e.file_name().to_str().map(str::to_string) else {
            continue;
        };
        out.push((name, meta.permissions().mode() & 0o777, path));
    }
    out.sort();
    Ok(out)
}

impl Store {
    /// Writes a backup of every tree of this store and, when `files_dir` is
    /// given, of the regular files directly inside it (the data directory:
    /// `coordinator.toml`, CA, server and admin credentials).
    pub fn export<W: Write>(
        &self,
        files_dir: Option<&Path>,
        writer: W,
    ) -> Result<Summary, BackupError> {
        let mut w = HashingWriter {
            inner: BufWriter::with_capacity(1 << 20, writer),
            hash: Sha256::new(),
        };
        let created_us = vantage_proto::now_us();
        let mut sum = Summary {
            created_us,
            ..Default::default()
        };
        w.put(MAGIC)?;
        w.put_u32(VERSION)?;
        w.put_u64(created_us as u64)?;
        if let Some(dir) = files_dir {
            for (name, mode, path) in data_files(dir)? {
                let data = std::fs::read(&path).map_err(io(path.display().to_string()))?;
                w.put(b"F")?;
                w.put_name(name.as_bytes())?;
                w.put_u32(mode)?;
                w.put_u64(data.len() as u64)?;
                w.put(&data)?;
                sum.files += 1;
            }
        }
        let mut names = self.db.tree_names();
        names.sort();
        for name in names {
            let tree = self.db.open_tree(&name).map_err(StoreError::from)?;
            w.put(b"T")?;
            w.put_name(&name)?;
            sum.trees += 1;
            for kv in tree.iter() {
                let (k, v) = kv.map_err(StoreError::from)?;
                let v = self.entry_value(&name, &k, v)?;
                w.put(b"E")?;
                w.put_u32(
                    u32::try_from(k.len())
                        .map_err(|_| BackupError::Corrupt("key too long".into()))?,
                )?;
                w.put(&k)?;
                w.put_u64(v.len() as u64)?;
                w.put(&v)?;
                sum.entries += 1;
            }
        }
        w.put(b"Z")?;
        w.put_u64(sum.files)?;
        w.put_u64(sum.trees)?;
        w.put_u64(sum.entries)?;
        let digest = w.hash.finalize();
        w.inner
            .write_all(&digest)
            .and_then(|_| w.inner.flush())
            .map_err(io("writing the backup"))?;
        Ok(sum)
    }

    /// Restores a backup into `data_dir`, which must not exist or be empty:
    /// the files go into `data_dir`, the trees into a new store under
    /// `data_dir/store`, synced to disk. On any error (a corrupt or
    /// truncated backup included) everything written is removed again.
    /// For a file on disk, [`verify`] it first so nothing is written at all
    /// for a bad backup.
    pub fn import<R: Read>(data_dir: &Path, reader: R) -> Result<Summary, BackupError> {
        match std::fs::read_dir(data_dir) {
            Ok(mut it) => {
                if it.next().is_some() {
                    return Err(BackupError::TargetNotEmpty(data_dir.to_path_buf()));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(data_dir.display().to_string())(e)),
        }
        std::fs::create_dir_all(data_dir).map_err(io(data_dir.display().to_string()))?;
        let result = Self::import_into(data_dir, reader);
        if result.is_err() {
            // Leave the (empty) directory as we found it.
            if let Ok(entries) = std::fs::read_dir(data_dir) {
                for e in entries.flatten() {
                    let p = e.path();
                    let _ = if p.is_dir() {
                        std::fs::remove_dir_all(&p)
                    } else {
                        std::fs::remove_file(&p)
                    };
                }
            }
        }
        result
    }

    fn import_into<R: Read>(data_dir: &Path, reader: R) -> Result<Summary, BackupError> {
        let store = Store::open(&data_dir.join(STORE_DIR))?;
        let mut tree: Option<(Vec<u8>, sled::Tree)> = None;
        let mut pending: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let summary = read_backup(reader, |rec| {
            match rec {
                Record::File { name, mode, data } => {
                    let path = data_dir.join(&name);
                    let mut f = std::fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .mode(mode)
                        .open(&path)
                        .map_err(io(path.display().to_string()))?;
                    f.write_all(&data)
                        .and_then(|_| f.sync_all())
                        .map_err(io(path.display().to_string()))?;
                }
                Record::Tree(name) => {
                    if let Some((n, t)) = &tree {
                        store.import_entries(n, t, std::mem::take(&mut pending))?;
                    }
                    let t = store.db.open_tree(&name).map_err(StoreError::from)?;
                    if !t.is_empty() {
                        return Err(BackupError::Corrupt("a tree appears twice".into()));
                    }
                    tree = Some((name, t));
                }
                Record::Entry(k, v) => {
                    pending.push((k, v));
                    if pending.len() >= 4096 {
                        if let Some((n, t)) = &tree {
                            store.import_entries(n, t, std::mem::take(&mut pending))?;
                        }
                        pending.clear();
                    }
                }
            }
            Ok(())
        })?;
        if let Some((n, t)) = &tree {
            store.import_entries(n, t, pending)?;
        }
        store.sync()?;
        Ok(summary)
    }

    /// Writes restored entries of one tree; result bodies go to the value
    /// log first (synced), their pointers into sled, as the commit thread
    /// does.
    fn import_entries(
        &self,
        name: &[u8],
        tree: &sled::Tree,
        entries: Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<(), StoreError> {
        let is_body = |k: &[u8]| name == b"results" && k.first() == Some(&b'r');
        let ptrs = self.values.append(
            entries
                .iter()
                .filter(|(k, _)| is_body(k))
                .map(|(_, v)| v.as_slice()),
        )?;
        let mut ptrs = ptrs.into_iter();
        let mut batch = sled::Batch::default();
        for (k, v) in entries {
            if is_body(&k) {
                let p = ptrs.next().ok_or_else(|| StoreError::Corrupt {
                    tree: "values",
                    detail: "fewer pointers than values".into(),
                })?;
                batch.insert(k, &p.encode()[..]);
            } else {
                batch.insert(k, v);
            }
        }
        tree.apply_batch(batch)?;
        Ok(())
    }

    /// Every tree and entry, sorted by tree name (for checks and tests).
    #[allow(clippy::type_complexity)]
    pub fn dump(&self) -> Result<Vec<(Vec<u8>, Vec<(Vec<u8>, Vec<u8>)>)>, StoreError> {
        let mut names = self.db.tree_names();
        names.sort();
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            let tree = self.db.open_tree(&name)?;
            let mut entries = Vec::new();
            for kv in tree.iter() {
                let (k, v) = kv?;
                let v = self.entry_value(&name, &k, v)?;
                entries.push((k.to_vec(), v.to_vec()));
            }
            out.push((name.to_vec(), entries));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (tempfile::TempDir, Store) {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("coordinator.toml"), "version = 1\n").unwrap();
        std::fs::write(d.path().join("ca.key"), "secret").unwrap();
        std::fs::set_permissions(
            d.path().join("ca.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        let s = Store::open(&d.path().join(STORE_DIR)).unwrap();
        for i in 0..1000u32 {
            s.results.insert(i.to_be_bytes(), vec![7u8; 100]).unwrap();
        }
        s.meta.insert(b"counter/x", &5u64.to_be_bytes()).unwrap();
        // Result bodies through the commit thread (into the value log), and
        // one stored inline as versions before the value log did.
        let commit = super::super::CommitHandle::start(s.clone(), |_| {});
        let results = (0..300u32)
            .map(|i| super::super::PendingResult {
                id: *uuid::Uuid::now_v7().as_bytes(),
                agent: [1; 16],
                task: Some([2; 16]),
                campaign: None,
                run: None,
                value: format!("body {i}").repeat(40).into_bytes(),
                measurement: Default::default(),
            })
            .collect();
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(commit.commit(results))
            .unwrap();
        s.results
            .insert(super::super::result_key(&[9; 16]), &b"\x0ainline"[..])
            .unwrap();
        (d, s)
    }

    fn bodies(s: &Store) -> Vec<Vec<u8>> {
        s.results(None).map(|v| v.unwrap().to_vec()).collect()
    }

    #[test]
    fn round_trip_and_refusals() {
        let (src, s) = sample();
        let mut buf = Vec::new();
        let sum = s.export(Some(src.path()), &mut buf).unwrap();
        assert_eq!(sum.files, 2);
        assert_eq!(verify(&buf[..]).unwrap().entries, sum.entries);

        let dst = tempfile::tempdir().unwrap();
        let target = dst.path().join("restored");
        Store::import(&target, &buf[..]).unwrap();
        let r = Store::open(&target.join(STORE_DIR)).unwrap();
        assert_eq!(r.dump().unwrap(), s.dump().unwrap());
        let b = bodies(&r);
        assert_eq!(b.len(), 301);
        assert_eq!(b, bodies(&s));
        assert!(b.contains(&b"\x0ainline".to_vec()));
        assert_eq!(r.results(Some((b't', [2; 16]))).count(), 300);
        let mode = std::fs::metadata(target.join("ca.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        drop(r);
        assert!(matches!(
            Store::import(&target, &buf[..]),
            Err(BackupError::TargetNotEmpty(_))
        ));

        let mut bad = buf.clone();
        let mid = bad.len() / 2;
        bad[mid] ^= 1;
        assert!(verify(&bad[..]).is_err());
        let t2 = dst.path().join("bad");
        assert!(Store::import(&t2, &bad[..]).is_err());
        assert_eq!(std::fs::read_dir(&t2).unwrap().count(), 0, "cleaned up");
        assert!(matches!(
            verify(&buf[..buf.len() - 10]),
            Err(BackupError::Truncated)
        ));
        assert!(matches!(
            verify(&b"hello"[..]),
            Err(BackupError::NotABackup)
        ));
        let mut extra = buf.clone();
        extra.push(0);
        assert!(verify(&extra[..]).is_err());
    }
}
