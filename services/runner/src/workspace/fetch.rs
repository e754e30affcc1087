//! Fetching what the cache lacks of a tree from the coordinator's
//! ContentService (content.proto), on the runner's own channel and with its
//! runner token.
//!
//! Small blobs come in `BatchReadBlobs` answers, large ones as `ReadBlob`
//! streams, a few at once. Every blob is verified before it enters the
//! cache ([`super::cache::BlobWriter`]). A dropped stream or an unreachable
//! coordinator (a restart) is retried with backoff, `ReadBlob` from the
//! offset already written; it gives up only after [`GIVE_UP`] without a
//! byte of progress, or at once on an answer that cannot change (NOT_FOUND,
//! bytes that do not match their digest, a full disk).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use testrunner_proto::v1::{
    self as pb, BatchReadBlobsRequest, ReadBlobRequest,
    content_service_client::ContentServiceClient,
};
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

use super::cache::{Cache, CommitError};
use super::digest::{self, BlobId, Tree, TreeFile};
use crate::connection::Backoff;

/// Blobs up to this size are read in batches.
const SMALL: u64 = 64 << 10;
/// Data per batch request (the service answers at most 4 MiB).
const BATCH_BYTES: u64 = 3 << 20;
/// Digests per batch request.
const BATCH_COUNT: usize = 1_000;
/// Requests in flight at once.
const PARALLEL: usize = 8;
/// Retrying stops after this long without progress.
pub const GIVE_UP: Duration = Duration::from_secs(120);

/// Reads blobs from the coordinator into the cache.
#[derive(Debug, Clone)]
pub struct Fetcher {
    channel: Channel,
    auth: MetadataValue<tonic::metadata::Ascii>,
    cache: Arc<Cache>,
    give_up: Duration,
}

/// What a fetch brought.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Fetched {
    pub blobs: u64,
    pub bytes: u64,
}

impl Fetcher {
    pub fn new(channel: Channel, token: &str, cache: Arc<Cache>) -> Result<Self, String> {
        let auth = format!("Bearer {token}")
            .parse()
            .map_err(|_| "the runner token is not valid metadata".to_owned())?;
        Ok(Self {
            channel,
            auth,
            cache,
            give_up: GIVE_UP,
        })
    }

    /// Gives up retrying after `give_up` without progress.
    pub fn with_give_up(mut self, give_up: Duration) -> Self {
        self.give_up = give_up;
        self
    }

    fn client(&self) -> ContentServiceClient<Channel> {
        ContentServiceClient::new(self.channel.clone()).max_decoding_message_size(16 << 20)
    }

    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request
            .metadata_mut()
            .insert("authorization", self.auth.clone());
        request
    }

    /// The whole tree under `root`, fetching its `Directory` blobs as
    /// needed (not its files: see `fetch_missing`).
    pub async fn tree(&self, root: &BlobId, fetched: &mut Fetched) -> Result<Tree, String> {
        let mut tree = Tree::default();
        let mut level = vec![(String::new(), root.clone())];
        while !level.is_empty() {
            let ids: Vec<BlobId> = level.iter().map(|(_, id)| id.clone()).collect();
            *fetched = add(*fetched, self.fetch_missing(&ids).await?);
            let mut next = Vec::new();
            for (path, id) in level {
                let bytes = match self.cache.read_verified(&id) {
                    Ok(bytes) => bytes,
                    Err(_) => {
                        // Corrupted since it was fetched: once more.
                        *fetched = add(
                            *fetched,
                            self.fetch_missing(std::slice::from_ref(&id)).await?,
                        );
                        self.cache
                            .read_verified(&id)
                            .map_err(|e| format!("directory {path:?}: {e}"))?
                    }
                };
                let dir = digest::decode_directory(&bytes, &path)?;
                let join = |name: &str| {
                    if path.is_empty() {
                        name.to_owned()
                    } else {
                        format!("{path}/{name}")
                    }
                };
                for file in dir.files {
                    let path = join(&file.name);
                    let blob = BlobId::of(&file.digest.unwrap_or_default())
                        .map_err(|e| format!("file {path:?}: {e}"))?;
                    tree.files.push(TreeFile {
                        path,
                        blob,
                        executable: file.is_executable,
                    });
                }
                for sub in dir.directories {
                    let path = join(&sub.name);
                    let id = BlobId::of(&sub.digest.unwrap_or_default())
                        .map_err(|e| format!("directory {path:?}: {e}"))?;
                    tree.dirs.push(path.clone());
                    next.push((path, id));
                }
            }
            level = next;
        }
        Ok(tree)
    }

    /// Fetches those of `ids` the cache lacks.
    pub async fn fetch_missing(&self, ids: &[BlobId]) -> Result<Fetched, String> {
        let mut seen = HashSet::new();
        let missing: Vec<BlobId> = ids
            .iter()
            .filter(|id| seen.insert(*id) && !self.cache.has(id))
            .cloned()
            .collect();
        let (small, large): (Vec<BlobId>, Vec<BlobId>) =
            missing.into_iter().partition(|id| id.size <= SMALL);
        let mut batches: Vec<Vec<BlobId>> = Vec::new();
        let mut bytes = 0;
        for id in small {
            match batches.last_mut() {
                Some(batch) if bytes + id.size <= BATCH_BYTES && batch.len() < BATCH_COUNT => {
                    bytes += id.size;
                    batch.push(id);
                }
                _ => {
                    bytes = id.size;
                    batches.push(vec![id]);
                }
            }
        }
        let jobs = batches
            .into_iter()
            .map(Job::Batch)
            .chain(large.into_iter().map(Job::One));
        let mut results = futures::stream::iter(jobs)
            .map(|job| async move {
                match job {
                    Job::Batch(ids) => self.batch(ids).await,
                    Job::One(id) => self.one(&id).await.map(|n| Fetched { blobs: 1, bytes: n }),
                }
            })
            .buffer_unordered(PARALLEL);
        let mut total = Fetched::default();
        while let Some(result) = results.next().await {
            total = add(total, result?);
        }
        Ok(total)
    }

    /// One batch of small blobs; any the answer leaves out (over its size)
    /// are read one by one.
    async fn batch(&self, ids: Vec<BlobId>) -> Result<Fetched, String> {
        let mut backoff = Backoff::default();
        let mut since = tokio::time::Instant::now();
        let answer = loop {
            let request = self.request(BatchReadBlobsRequest {
                digests: ids.iter().map(BlobId::to_proto).collect(),
            });
            match self.client().batch_read_blobs(request).await {
                Ok(answer) => break answer.into_inner(),
                Err(status) => {
                    self.retry_or_fail(&status, "reading blobs", &mut backoff, &mut since)
                        .await?
                }
            }
        };
        let mut fetched = Fetched::default();
        let mut left: HashSet<BlobId> = ids.into_iter().collect();
        for response in answer.responses {
            let Ok(id) = BlobId::of(&response.digest.unwrap_or_default()) else {
                continue;
            };
            if !left.contains(&id) {
                continue;
            }
            match tonic::Code::from(response.code) {
                tonic::Code::Ok => {
                    let mut writer = self
                        .cache
                        .writer(&id)
                        .map_err(|e| digest::describe(&e, "writing to the cache"))?;
                    writer
                        .write(&response.data)
                        .map_err(|e| digest::describe(&e, "writing to the cache"))?;
                    commit(writer)?;
                    left.remove(&id);
                    fetched = add(
                        fetched,
                        Fetched {
                            blobs: 1,
                            bytes: id.size,
                        },
                    );
                }
                tonic::Code::NotFound => {
                    return Err(format!(
                        "blob {id} is not stored on the coordinator: {}",
                        response.message
                    ));
                }
                _ => {} // Over the answer's size: read alone below.
            }
        }
        for id in left {
            let bytes = self.one(&id).await?;
            fetched = add(fetched, Fetched { blobs: 1, bytes });
        }
        Ok(fetched)
    }

    /// One blob as a `ReadBlob` stream, resumed from the offset reached
    /// after a dropped stream. Returns the bytes it received.
    async fn one(&self, id: &BlobId) -> Result<u64, String> {
        let mut writer = self
            .cache
            .writer(id)
            .map_err(|e| digest::describe(&e, "writing to the cache"))?;
        let mut backoff = Backoff::default();
        let mut since = tokio::time::Instant::now();
        while writer.offset() < id.size || id.size == 0 {
            let request = self.request(ReadBlobRequest {
                digest: Some(id.to_proto()),
                offset: writer.offset() as i64,
            });
            let outcome = async {
                let mut stream = self.client().read_blob(request).await?.into_inner();
                while let Some(chunk) = stream.message().await? {
                    if writer.offset() + chunk.data.len() as u64 > id.size {
                        return Ok(Err(format!(
                            "blob {id}: the coordinator sent more bytes than its size"
                        )));
                    }
                    if let Err(e) = writer.write(&chunk.data) {
                        return Ok(Err(digest::describe(&e, "writing to the cache")));
                    }
                    // Progress: the patience starts again.
                    backoff.reset();
                    since = tokio::time::Instant::now();
                }
                Ok::<_, tonic::Status>(Ok(()))
            }
            .await;
            match outcome {
                Ok(Ok(())) if writer.offset() == id.size => break,
                Ok(Ok(())) => {
                    // The stream ended early (a coordinator shutting down):
                    // ask again from here.
                    let status = tonic::Status::unavailable("stream ended before the blob's end");
                    tracing::info!(blob = %id, offset = writer.offset(), code = ?status.code(), "blob read interrupted; resuming");
                    self.retry_or_fail(&status, "reading a blob", &mut backoff, &mut since)
                        .await?;
                }
                Ok(Err(message)) => return Err(message),
                Err(status) => {
                    tracing::info!(blob = %id, offset = writer.offset(), code = ?status.code(), "blob read interrupted; resuming");
                    self.retry_or_fail(&status, "reading a blob", &mut backoff, &mut since)
                        .await?;
                }
            }
        }
        commit(writer)?;
        Ok(id.size)
    }

    /// Waits before a retry, or says why not.
    async fn retry_or_fail(
        &self,
        status: &tonic::Status,
        doing: &str,
        backoff: &mut Backoff,
        since: &mut tokio::time::Instant,
    ) -> Result<(), String> {
        let transient = matches!(
            status.code(),
            tonic::Code::Unavailable
                | tonic::Code::Unknown
                | tonic::Code::Internal
                | tonic::Code::Cancelled
                | tonic::Code::DeadlineExceeded
                | tonic::Code::Aborted
                | tonic::Code::ResourceExhausted
        );
        if !transient {
            return Err(format!(
                "{doing} from the coordinator: {:?}: {}",
                status.code(),
                status.message()
            ));
        }
        if since.elapsed() > self.give_up {
            return Err(format!(
                "{doing} from the coordinator: no progress for {} ({:?}: {})",
                humantime::format_duration(self.give_up),
                status.code(),
                status.message()
            ));
        }
        tokio::time::sleep(backoff.wait()).await;
        Ok(())
    }
}

enum Job {
    Batch(Vec<BlobId>),
    One(BlobId),
}

fn add(a: Fetched, b: Fetched) -> Fetched {
    Fetched {
        blobs: a.blobs + b.blobs,
        bytes: a.bytes + b.bytes,
    }
}

fn commit(writer: super::cache::BlobWriter) -> Result<(), String> {
    writer.commit().map_err(|e| match e {
        CommitError::Mismatch { .. } => format!("the coordinator sent wrong bytes: {e}"),
        CommitError::Io(e) => digest::describe(&e, "storing a blob in the cache"),
    })
}

/// The unused-import guard for `pb` in docs.
#[allow(dead_code)]
fn _proto(_: pb::Digest) {}
