//! Workspaces' blobs (proto/testrunner/v1/content.proto): finding what is
//! missing, uploads verified before they become visible, reads in chunks,
//! and resolving a tree for CreateTestrun (every blob present, within the
//! limits, the test paths files of it).
//!
//! Blobs are named here by their text key `<hash>/<size>`; the adapter
//! checks a digest's syntax before it reaches this module.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use testrunner_content::{CHUNK_BYTES, DigestWriter, decode_directory};

use crate::config::ContentSettings;
use crate::domain::workspace::{Setup, TestrunWorkspace, blob_key, parse_blob_key};
use crate::domain::{Millis, NewTestrun, now_millis};
use crate::error::{Error, Result};
use crate::store::{Store, UploadState};

/// Largest `Directory` blob read while resolving a tree.
const MAX_DIRECTORY_BYTES: i64 = 16 << 20;
/// Missing digests named in a FAILED_PRECONDITION.
const MISSING_SHOWN: usize = 5;

/// The content engine.
#[derive(Debug, Clone)]
pub struct Content {
    pub store: Arc<dyn Store>,
    pub settings: ContentSettings,
}

/// A tree checked for a Testrun.
#[derive(Debug, Clone, Default)]
pub struct ResolvedTree {
    /// Paths of its files, '/'-separated.
    pub files: HashSet<String>,
    /// Every blob (directories and files), each once.
    pub blobs: Vec<String>,
    pub file_count: i64,
    pub bytes: i64,
}

impl Content {
    fn check_size(&self, size_bytes: i64, field: &str) -> Result<()> {
        if size_bytes > self.settings.max_workspace_bytes {
            return Err(Error::invalid(
                format!("{field}.size_bytes"),
                format!(
                    "{size_bytes} bytes is more than the limit of {} bytes (--max-workspace-bytes)",
                    self.settings.max_workspace_bytes
                ),
            ));
        }
        Ok(())
    }

    /// The keys among `keys` that are not stored complete.
    pub async fn find_missing(&self, keys: &[String]) -> Result<Vec<String>> {
        self.store.find_missing(keys, now_millis()).await
    }

    /// Verifies and stores one whole blob (BatchUploadBlobs).
    pub async fn upload(
        &self,
        hash: &str,
        size_bytes: i64,
        data: &[u8],
        field: &str,
    ) -> Result<()> {
        self.check_size(size_bytes, field)?;
        let mut w = DigestWriter::default();
        w.update(data);
        let got = w.finish();
        if got.hash != hash || got.size_bytes != size_bytes {
            return Err(Error::invalid(
                format!("{field}.data"),
                format!(
                    "bytes hash to {}/{} , not to the digest {hash}/{size_bytes}; nothing stored",
                    got.hash, got.size_bytes
                ),
            ));
        }
        self.store
            .put_blob(&blob_key(hash, size_bytes), data, now_millis())
            .await
    }

    /// Stores one chunk of a blob (WriteBlob); verifies the blob when its
    /// last byte arrives.
    pub async fn write(
        &self,
        hash: &str,
        size_bytes: i64,
        offset: i64,
        data: &[u8],
    ) -> Result<UploadState> {
        self.check_size(size_bytes, "digest")?;
        if data.len() > CHUNK_BYTES {
            return Err(Error::invalid(
                "data",
                format!("{} bytes is more than a chunk's {CHUNK_BYTES}", data.len()),
            ));
        }
        let key = blob_key(hash, size_bytes);
        let state = self
            .store
            .write_chunk(&key, size_bytes, offset, data, now_millis())
            .await?;
        if state.complete || state.committed < size_bytes {
            return Ok(state);
        }
        // All bytes are there: hash them chunk by chunk from the store.
        let mut w = DigestWriter::default();
        while w.size() < size_bytes {
            let Some((start, bytes)) = self.store.read_chunk(&key, w.size(), true).await? else {
                // Another writer verified (or dropped) it meanwhile.
                let complete = self.store.blob_complete(&key).await?;
                return Ok(UploadState {
                    committed: if complete { size_bytes } else { 0 },
                    complete,
                });
            };
            w.update(&bytes[(w.size() - start) as usize..]);
        }
        let got = w.clone().finish();
        if got.hash != hash {
            self.store.drop_upload(&key).await?;
            return Err(Error::invalid(
                "data",
                format!(
                    "the blob's bytes hash to {}, not {hash}; nothing stored",
                    got.hash
                ),
            ));
        }
        self.store.mark_complete(&key, now_millis()).await?;
        tracing::debug!(digest = %key, "blob uploaded");
        Ok(UploadState {
            committed: size_bytes,
            complete: true,
        })
    }

    /// The bytes of a stored blob from `offset` in its next chunk, or
    /// `None` at its end. NOT_FOUND for a blob not stored.
    pub async fn read(&self, hash: &str, size_bytes: i64, offset: i64) -> Result<Option<Vec<u8>>> {
        let key = blob_key(hash, size_bytes);
        if offset < 0 || offset > size_bytes {
            return Err(Error::OutOfRange(format!(
                "offset: {offset} is outside the blob's {size_bytes} bytes"
            )));
        }
        match self.store.read_chunk(&key, offset, false).await? {
            Some((start, mut bytes)) => {
                bytes.drain(..(offset - start) as usize);
                Ok(Some(bytes))
            }
            None if offset == size_bytes && self.store.blob_complete(&key).await? => Ok(None),
            None => Err(Error::NotFound(format!("blob {key} not found"))),
        }
    }

    /// A whole blob (for small ones: directories, BatchReadBlobs).
    pub async fn read_whole(&self, hash: &str, size_bytes: i64) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(size_bytes.clamp(0, 1 << 20) as usize);
        while (out.len() as i64) < size_bytes {
            match self.read(hash, size_bytes, out.len() as i64).await? {
                Some(bytes) if !bytes.is_empty() => out.extend_from_slice(&bytes),
                _ => break,
            }
        }
        if size_bytes == 0 && !self.store.blob_complete(&blob_key(hash, 0)).await? {
            return Err(Error::NotFound(format!("blob {hash}/0 not found")));
        }
        Ok(out)
    }

    /// Resolves the tree of `root` for a Testrun: decodes every directory,
    /// checks the limits, and checks that every blob is stored (touching
    /// them, so the collector's grace restarts).
    pub async fn resolve(&self, root: &str) -> Result<ResolvedTree> {
        let mut tree = ResolvedTree::default();
        let mut seen: HashSet<String> = HashSet::new();
        let mut missing: Vec<String> = Vec::new();
        let mut queue: VecDeque<(String, String)> =
            VecDeque::from([(String::new(), root.to_owned())]);
        while let Some((path, key)) = queue.pop_front() {
            if seen.insert(key.clone()) {
                tree.blobs.push(key.clone());
            }
            let (hash, size) = parse_blob_key(&key);
            let field = if path.is_empty() {
                "workspace".to_owned()
            } else {
                format!("workspace (directory {path:?})")
            };
            if size > MAX_DIRECTORY_BYTES {
                return Err(Error::invalid(
                    field,
                    format!("a Directory of {size} bytes is too large"),
                ));
            }
            let bytes = match self.read_whole(&hash, size).await {
                Ok(b) => b,
                Err(Error::NotFound(_)) => {
                    missing.push(key);
                    continue;
                }
                Err(e) => return Err(e),
            };
            let dir = decode_directory(&bytes, &field)
                .map_err(|e| Error::invalid(field.clone(), e.to_string()))?;
            let prefix = if path.is_empty() {
                String::new()
            } else {
                format!("{path}/")
            };
            for f in &dir.files {
                let d = f
                    .digest
                    .as_ref()
                    .expect("validated: every file has a digest");
                tree.file_count += 1;
                tree.bytes += d.size_bytes;
                tree.files.insert(format!("{prefix}{}", f.name));
                let k = blob_key(&d.hash, d.size_bytes);
                if seen.insert(k.clone()) {
                    tree.blobs.push(k);
                }
            }
            for d in &dir.directories {
                let dg = d
                    .digest
                    .as_ref()
                    .expect("validated: every directory has a digest");
                queue.push_back((
                    format!("{prefix}{}", d.name),
                    blob_key(&dg.hash, dg.size_bytes),
                ));
            }
            if tree.file_count > self.settings.max_workspace_files {
                return Err(Error::invalid(
                    "workspace",
                    format!(
                        "more than {} files (--max-workspace-files)",
                        self.settings.max_workspace_files
                    ),
                ));
            }
            if tree.bytes > self.settings.max_workspace_bytes {
                return Err(Error::invalid(
                    "workspace",
                    format!(
                        "more than {} bytes of files (--max-workspace-bytes)",
                        self.settings.max_workspace_bytes
                    ),
                ));
            }
        }
        // One lookup over every blob found also touches them all, so the
        // collector's grace restarts for the whole tree.
        let now: Millis = now_millis();
        let mut absent: HashSet<String> = missing.iter().cloned().collect();
        for part in tree.blobs.chunks(testrunner_content::FIND_MISSING_MAX) {
            for key in self.store.find_missing(part, now).await? {
                if absent.insert(key.clone()) {
                    missing.push(key);
                }
            }
        }
        if !missing.is_empty() {
            let shown: Vec<&str> = missing
                .iter()
                .take(MISSING_SHOWN)
                .map(String::as_str)
                .collect();
            return Err(Error::FailedPrecondition(format!(
                "workspace: {} blob(s) of the tree are not stored (upload them first): {}{}",
                missing.len(),
                shown.join(", "),
                if missing.len() > MISSING_SHOWN {
                    ", ..."
                } else {
                    ""
                }
            )));
        }
        Ok(tree)
    }

    /// Resolves a new Testrun's tree, checks that every test names a file
    /// of it, and records its size and blobs in `new`.
    pub async fn attach_tree(&self, new: &mut NewTestrun) -> Result<()> {
        let Some(ws) = new.workspace.as_mut() else {
            return Ok(());
        };
        let Some(wref) = ws.settings.workspace.as_mut() else {
            return Ok(());
        };
        let tree = self.resolve(&wref.digest).await?;
        for (i, t) in new.tests.iter().enumerate() {
            let (path, _) = testrunner_content::split_selector(&t.name);
            if !tree.files.contains(path) {
                return Err(Error::invalid(
                    format!("tests[{i}].name"),
                    format!("{path:?} is not a file of the workspace"),
                ));
            }
        }
        wref.files = tree.file_count;
        wref.bytes = tree.bytes;
        ws.blobs = tree.blobs;
        Ok(())
    }

    /// A Testrun's workspace settings and set-up steps, for GetTestrun.
    pub async fn extras(&self, testrun_id: i64) -> Result<(Option<TestrunWorkspace>, Vec<Setup>)> {
        let ws = self.store.testrun_workspace(testrun_id).await?;
        let setups = if ws.is_some() {
            self.store.setups_of(testrun_id).await?
        } else {
            Vec::new()
        };
        Ok((ws, setups))
    }
}
