//! The runner's on-disk blob cache: one file per blob under `blobs/`,
//! named by its digest, bounded by `--cache-bytes` with least-recently-used
//! eviction.
//!
//! A blob enters only complete and verified: it is written to `tmp/`,
//! hashed while it is written, and renamed into `blobs/` once its size and
//! SHA-256 match its name ([`BlobWriter`]). A blob is pinned while a
//! preparation uses it and is never evicted then. Corruption on disk (bytes
//! changed after they were verified) is caught in two places: every lookup
//! checks the file's size (a `stat`), and every materialisation hashes the
//! bytes it copies; either drops the entry so that it is fetched again.
//!
//! The cache directory is locked (`flock`) by one runner at a time: two
//! runners sharing it would evict each other's pinned blobs.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use super::digest::{BlobId, Hasher};

/// The cache: blobs on disk and their use order.
#[derive(Debug)]
pub struct Cache {
    blobs: PathBuf,
    tmp: PathBuf,
    limit: u64,
    index: Mutex<Index>,
    /// Held for the cache's life: the directory's lock.
    _lock: File,
}

#[derive(Debug, Default)]
struct Index {
    entries: HashMap<BlobId, u64>,
    pins: HashMap<BlobId, u32>,
    bytes: u64,
    /// Use counter: larger is more recent.
    clock: u64,
    tmp_seq: u64,
}

/// Why a blob could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error("blob {expected}: received bytes hash to {got}")]
    Mismatch { expected: BlobId, got: BlobId },
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl Cache {
    /// Opens (or creates) the cache in `dir`, bounded by `limit` bytes.
    /// Blobs already there are kept (their sizes are checked; their order
    /// of use is their modification time), partial downloads are dropped.
    pub fn open(dir: &Path, limit: u64) -> io::Result<Arc<Self>> {
        fs::create_dir_all(dir)?;
        let lock = File::create(dir.join("lock"))?;
        lock.try_lock().map_err(|_| {
            io::Error::new(
                io::ErrorKind::WouldBlock,
                format!(
                    "cache directory {} is in use by another runner (give each its own --cache-dir)",
                    dir.display()
                ),
            )
        })?;
        let blobs = dir.join("blobs");
        let tmp = dir.join("tmp");
        if tmp.exists() {
            fs::remove_dir_all(&tmp)?;
        }
        fs::create_dir_all(&blobs)?;
        fs::create_dir_all(&tmp)?;
        let mut found = Vec::new();
        for entry in fs::read_dir(&blobs)? {
            let entry = entry?;
            let name = entry.file_name();
            let meta = entry.metadata()?;
            match BlobId::from_file_name(&name.to_string_lossy()) {
                Some(id) if meta.is_file() && meta.len() == id.size => {
                    found.push((meta.modified().unwrap_or(SystemTime::UNIX_EPOCH), id));
                }
                _ => {
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
        found.sort();
        let mut index = Index::default();
        for (_, id) in found {
            index.clock += 1;
            index.bytes += id.size;
            index.entries.insert(id, index.clock);
        }
        let cache = Arc::new(Self {
            blobs,
            tmp,
            limit,
            index: Mutex::new(index),
            _lock: lock,
        });
        cache.evict();
        Ok(cache)
    }

    fn index(&self) -> MutexGuard<'_, Index> {
        self.index
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Where a stored blob is.
    pub fn path(&self, id: &BlobId) -> PathBuf {
        self.blobs.join(id.file_name())
    }

    /// Bytes stored.
    pub fn bytes(&self) -> u64 {
        self.index().bytes
    }

    /// Whether `id` is stored with its right size; marks it used. An entry
    /// whose file is gone or has another size is dropped.
    pub fn has(&self, id: &BlobId) -> bool {
        let mut index = self.index();
        if !index.entries.contains_key(id) {
            return false;
        }
        let intact =
            fs::symlink_metadata(self.path(id)).is_ok_and(|m| m.is_file() && m.len() == id.size);
        if intact {
            index.clock += 1;
            let clock = index.clock;
            index.entries.insert(id.clone(), clock);
        } else {
            tracing::warn!(blob = %id, "cache entry damaged (size differs or file gone); fetching it again");
            drop(index);
            self.remove(id);
        }
        intact
    }

    /// Drops a blob (found corrupted).
    pub fn remove(&self, id: &BlobId) {
        let mut index = self.index();
        if index.entries.remove(id).is_some() {
            index.bytes -= id.size;
        }
        let _ = fs::remove_file(self.path(id));
    }

    /// Keeps `ids` from eviction until the pin is dropped.
    pub fn pin(self: &Arc<Self>, ids: impl IntoIterator<Item = BlobId>) -> Pin {
        let ids: Vec<BlobId> = ids.into_iter().collect();
        let mut index = self.index();
        for id in &ids {
            *index.pins.entry(id.clone()).or_default() += 1;
        }
        Pin {
            cache: Arc::clone(self),
            ids,
        }
    }

    /// A writer for blob `id`, into a temporary file.
    pub fn writer(self: &Arc<Self>, id: &BlobId) -> io::Result<BlobWriter> {
        let seq = {
            let mut index = self.index();
            index.tmp_seq += 1;
            index.tmp_seq
        };
        let path = self.tmp.join(format!("{}.{seq}", id.file_name()));
        let file = File::create(&path)?;
        Ok(BlobWriter {
            cache: Arc::clone(self),
            id: id.clone(),
            path,
            file: Some(file),
            hasher: Hasher::default(),
        })
    }

    /// A stored blob's bytes, verified (for `Directory` blobs, which are
    /// small). A blob that does not verify is dropped and reported as
    /// missing (`NotFound`).
    pub fn read_verified(&self, id: &BlobId) -> io::Result<Vec<u8>> {
        let mut bytes = Vec::with_capacity(id.size as usize);
        File::open(self.path(id))?.read_to_end(&mut bytes)?;
        if BlobId::of_bytes(&bytes) != *id {
            tracing::warn!(blob = %id, "cache entry corrupted; fetching it again");
            self.remove(id);
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("blob {id} was corrupted in the cache"),
            ));
        }
        Ok(bytes)
    }

    fn insert(&self, id: &BlobId) {
        let mut index = self.index();
        index.clock += 1;
        let clock = index.clock;
        if index.entries.insert(id.clone(), clock).is_none() {
            index.bytes += id.size;
        }
        drop(index);
        self.evict();
    }

    /// Removes the least recently used unpinned blobs while over the bound.
    fn evict(&self) {
        let mut index = self.index();
        if index.bytes <= self.limit {
            return;
        }
        let mut order: Vec<(u64, BlobId)> = index
            .entries
            .iter()
            .filter(|(id, _)| !index.pins.contains_key(*id))
            .map(|(id, used)| (*used, id.clone()))
            .collect();
        order.sort();
        for (_, id) in order {
            if index.bytes <= self.limit {
                break;
            }
            index.entries.remove(&id);
            index.bytes -= id.size;
            let _ = fs::remove_file(self.path(&id));
            tracing::debug!(blob = %id, "evicted from the cache");
        }
    }
}

/// Blobs kept from eviction while this lives.
#[derive(Debug)]
pub struct Pin {
    cache: Arc<Cache>,
    ids: Vec<BlobId>,
}

impl Drop for Pin {
    fn drop(&mut self) {
        let mut index = self.cache.index();
        for id in &self.ids {
            if let Some(n) = index.pins.get_mut(id) {
                *n -= 1;
                if *n == 0 {
                    index.pins.remove(id);
                }
            }
        }
        drop(index);
        self.cache.evict();
    }
}

/// A blob being received: bytes are hashed as they are written to a
/// temporary file; `commit` makes it a cache entry if they match.
#[derive(Debug)]
pub struct BlobWriter {
    cache: Arc<Cache>,
    id: BlobId,
    path: PathBuf,
    file: Option<File>,
    hasher: Hasher,
}

impl BlobWriter {
    /// Bytes written so far: where a resumed read starts.
    pub fn offset(&self) -> u64 {
        self.hasher.len()
    }

    pub fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        let file = self.file.as_mut().expect("not committed");
        file.write_all(bytes)?;
        self.hasher.update(bytes);
        Ok(())
    }

    /// Verifies what was written and stores it under its digest.
    pub fn commit(mut self) -> Result<(), CommitError> {
        let got = std::mem::take(&mut self.hasher).finish();
        if got != self.id {
            return Err(CommitError::Mismatch {
                expected: self.id.clone(),
                got,
            });
        }
        let file = self.file.take().expect("not committed");
        drop(file);
        fs::rename(&self.path, self.cache.path(&self.id))?;
        self.cache.insert(&self.id);
        Ok(())
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        // Uncommitted (or failed): nothing of it stays.
        if self.file.is_some() || self.path.exists() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(cache: &Arc<Cache>, bytes: &[u8]) -> BlobId {
        let id = BlobId::of_bytes(bytes);
        let mut w = cache.writer(&id).unwrap();
        w.write(bytes).unwrap();
        w.commit().unwrap();
        id
    }

    #[test]
    fn a_blob_enters_only_when_its_bytes_match_its_digest() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path(), 1 << 20).unwrap();
        let id = BlobId::of_bytes(b"right");
        let mut w = cache.writer(&id).unwrap();
        w.write(b"wrong").unwrap();
        assert!(matches!(w.commit(), Err(CommitError::Mismatch { .. })));
        assert!(!cache.has(&id));
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
        store(&cache, b"right");
        assert!(cache.has(&id));
        assert_eq!(fs::read(cache.path(&id)).unwrap(), b"right");
    }

    #[test]
    fn least_recently_used_unpinned_blobs_go_first() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path(), 10).unwrap();
        let a = store(&cache, b"aaaa");
        let b = store(&cache, b"bbbb");
        let pin = cache.pin([a.clone()]);
        assert!(cache.has(&b), "b is now the most recent");
        let c = store(&cache, b"cccc");
        // a is the oldest but pinned: b goes.
        assert!(cache.has(&a) && cache.has(&c) && !cache.has(&b));
        drop(pin);
        let d = store(&cache, b"dddd");
        assert!(!cache.has(&a), "unpinned and oldest");
        assert!(cache.has(&c) && cache.has(&d));
        assert!(cache.bytes() <= 10);
    }

    #[test]
    fn a_damaged_entry_is_dropped_and_entries_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = {
            let cache = Cache::open(dir.path(), 1 << 20).unwrap();
            let a = store(&cache, b"first");
            let b = store(&cache, b"second");
            (a, b)
        };
        let cache = Cache::open(dir.path(), 1 << 20).unwrap();
        assert!(cache.has(&a) && cache.has(&b));
        fs::write(cache.path(&a), b"firs").unwrap();
        assert!(!cache.has(&a), "size differs");
        fs::write(cache.path(&b), b"SECOND").unwrap();
        assert!(cache.has(&b), "same size: only hashing tells");
        let err = cache.read_verified(&b).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(!cache.has(&b));
    }

    #[test]
    fn a_full_disk_is_said_so_and_leaves_nothing_behind() {
        // A real full file system: a 256 KiB tmpfs (needs root and mount
        // rights; elsewhere this test says why it did nothing).
        let dir = tempfile::tempdir().unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            eprintln!("skipped: cannot mount a tmpfs here");
            return;
        }
        let result = std::panic::catch_unwind(|| {
            let cache = Cache::open(dir.path(), 1 << 30).unwrap();
            let bytes = vec![7u8; 1 << 20];
            let id = BlobId::of_bytes(&bytes);
            let mut w = cache.writer(&id).unwrap();
            let err = w.write(&bytes).unwrap_err();
            let message = super::super::digest::describe(&err, "writing to the cache");
            assert!(
                message.starts_with("disk full while writing to the cache"),
                "{message}"
            );
            drop(w);
            assert!(!cache.has(&id));
            assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
        });
        let _ = std::process::Command::new("umount")
            .arg(dir.path())
            .status();
        if let Err(panic) = result {
            std::panic::resume_unwind(panic);
        }
    }

    #[test]
    fn one_runner_per_cache_directory() {
        let dir = tempfile::tempdir().unwrap();
        let _first = Cache::open(dir.path(), 1 << 20).unwrap();
        let err = Cache::open(dir.path(), 1 << 20).unwrap_err();
        assert!(err.to_string().contains("--cache-dir"), "{err}");
    }
}
