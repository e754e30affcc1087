//! `ContentService`: a thin adapter from gRPC to `engine::content`.
//!
//! Authentication (content.proto, contract point 6): uploads need the API
//! token when one is configured; lookups and reads accept the API token or
//! the runner token (runners fetch workspaces with theirs).

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use testrunner_content::{BATCH_BYTES, FIND_MISSING_MAX, check_digest};
use testrunner_proto::v1::{self as pb, content_service_server::ContentService};
use tonic::{Code, Request, Response, Status};

use super::auth::{bearer, check_bearer};
use crate::domain::workspace::{blob_key, parse_blob_key};
use crate::engine::content::Content;
use crate::engine::fleet::Fleet;
use crate::error::Error;
use tonic::metadata::MetadataMap;

/// The gRPC adapter for blobs.
#[derive(Debug, Clone)]
pub struct ContentApi {
    pub content: Content,
    pub api_token: Arc<str>,
    /// Checks runner tokens (the shared one or an issued one).
    pub fleet: Fleet,
}

impl ContentApi {
    fn authorize_upload<T>(&self, request: &Request<T>) -> Result<(), Status> {
        check_bearer(request.metadata(), &self.api_token, "API token").map_err(Status::from)
    }

    async fn authorize_read(&self, metadata: &MetadataMap) -> Result<(), Status> {
        if check_bearer(metadata, &self.api_token, "API token").is_ok()
            || self
                .fleet
                .authenticate(bearer(metadata), false)
                .await
                .is_ok()
        {
            return Ok(());
        }
        Err(Status::from(Error::Unauthenticated(
            "reading blobs needs the API token or a runner token: send `authorization: Bearer <token>`"
                .into(),
        )))
    }
}

/// The (hash, size) of a digest whose syntax is checked.
fn digest(d: Option<&pb::Digest>, field: &str) -> Result<(String, i64), Status> {
    check_digest(d, field).map_err(|e| Status::invalid_argument(e.to_string()))?;
    let d = d.expect("checked");
    Ok((d.hash.clone(), d.size_bytes))
}

fn status_code(err: Error) -> (i32, String) {
    let status = Status::from(err);
    (status.code() as i32, status.message().to_owned())
}

type ReadStream = Pin<Box<dyn Stream<Item = Result<pb::ReadBlobResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ContentService for ContentApi {
    async fn find_missing_blobs(
        &self,
        request: Request<pb::FindMissingBlobsRequest>,
    ) -> Result<Response<pb::FindMissingBlobsResponse>, Status> {
        self.authorize_read(request.metadata()).await?;
        let r = request.into_inner();
        if r.blob_digests.len() > FIND_MISSING_MAX {
            return Err(Error::invalid(
                "blob_digests",
                format!(
                    "{} digests is more than {FIND_MISSING_MAX} per request",
                    r.blob_digests.len()
                ),
            )
            .into());
        }
        let mut keys = Vec::with_capacity(r.blob_digests.len());
        for (i, d) in r.blob_digests.iter().enumerate() {
            let (hash, size) = digest(Some(d), &format!("blob_digests[{i}]"))?;
            keys.push(blob_key(&hash, size));
        }
        let missing = self.content.find_missing(&keys).await?;
        Ok(Response::new(pb::FindMissingBlobsResponse {
            missing_blob_digests: missing
                .iter()
                .map(|k| {
                    let (hash, size_bytes) = parse_blob_key(k);
                    pb::Digest { hash, size_bytes }
                })
                .collect(),
        }))
    }

    async fn batch_upload_blobs(
        &self,
        request: Request<pb::BatchUploadBlobsRequest>,
    ) -> Result<Response<pb::BatchUploadBlobsResponse>, Status> {
        self.authorize_upload(&request)?;
        let r = request.into_inner();
        let total: usize = r.requests.iter().map(|q| q.data.len()).sum();
        if total > BATCH_BYTES {
            return Err(Error::invalid(
                "requests",
                format!(
                    "{total} bytes of data is more than {BATCH_BYTES} per request; use WriteBlob"
                ),
            )
            .into());
        }
        let mut responses = Vec::with_capacity(r.requests.len());
        for (i, q) in r.requests.into_iter().enumerate() {
            let field = format!("requests[{i}].digest");
            let (code, message) = match digest(q.digest.as_ref(), &field) {
                Err(status) => (status.code() as i32, status.message().to_owned()),
                Ok((hash, size)) => {
                    match self
                        .content
                        .upload(&hash, size, &q.data, &format!("requests[{i}]"))
                        .await
                    {
                        Ok(()) => (Code::Ok as i32, String::new()),
                        Err(err) => status_code(err),
                    }
                }
            };
            responses.push(pb::batch_upload_blobs_response::Response {
                digest: q.digest,
                code,
                message,
            });
        }
        Ok(Response::new(pb::BatchUploadBlobsResponse { responses }))
    }

    async fn write_blob(
        &self,
        request: Request<pb::WriteBlobRequest>,
    ) -> Result<Response<pb::WriteBlobResponse>, Status> {
        self.authorize_upload(&request)?;
        let r = request.into_inner();
        let (hash, size) = digest(r.digest.as_ref(), "digest")?;
        let state = self.content.write(&hash, size, r.offset, &r.data).await?;
        Ok(Response::new(pb::WriteBlobResponse {
            committed_size: state.committed,
            complete: state.complete,
        }))
    }

    type ReadBlobStream = ReadStream;

    async fn read_blob(
        &self,
        request: Request<pb::ReadBlobRequest>,
    ) -> Result<Response<Self::ReadBlobStream>, Status> {
        self.authorize_read(request.metadata()).await?;
        let r = request.into_inner();
        let (hash, size) = digest(r.digest.as_ref(), "digest")?;
        if r.offset < 0 || r.offset > size {
            return Err(Error::OutOfRange(format!(
                "offset: {} is outside the blob's {size} bytes",
                r.offset
            ))
            .into());
        }
        // NOT_FOUND as the call's status, not mid-stream.
        let first = self.content.read(&hash, size, r.offset).await?;
        let content = self.content.clone();
        let stream = futures::stream::unfold((Some(first), r.offset), move |(pending, offset)| {
            let content = content.clone();
            let hash = hash.clone();
            async move {
                let chunk = match pending {
                    Some(c) => c,
                    None => match content.read(&hash, size, offset).await {
                        Ok(c) => c,
                        Err(err) => return Some((Err(Status::from(err)), (None, size + 1))),
                    },
                };
                match chunk {
                    Some(data) if !data.is_empty() && offset <= size => {
                        let next = offset + data.len() as i64;
                        Some((Ok(pb::ReadBlobResponse { data }), (None, next)))
                    }
                    _ => None,
                }
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn batch_read_blobs(
        &self,
        request: Request<pb::BatchReadBlobsRequest>,
    ) -> Result<Response<pb::BatchReadBlobsResponse>, Status> {
        self.authorize_read(request.metadata()).await?;
        let r = request.into_inner();
        let mut budget = BATCH_BYTES as i64;
        let mut responses = Vec::with_capacity(r.digests.len());
        for (i, d) in r.digests.into_iter().enumerate() {
            let (mut data, mut code, mut message) = (Vec::new(), Code::Ok as i32, String::new());
            match digest(Some(&d), &format!("digests[{i}]")) {
                Err(status) => {
                    code = status.code() as i32;
                    message = status.message().to_owned();
                }
                Ok((_, size)) if size > budget => {
                    code = Code::ResourceExhausted as i32;
                    message = "over this answer's 4 MiB: read it with ReadBlob or in a later batch"
                        .into();
                }
                Ok((hash, size)) => match self.content.read_whole(&hash, size).await {
                    Ok(bytes) => {
                        budget -= size;
                        data = bytes;
                    }
                    Err(err) => (code, message) = status_code(err),
                },
            }
            responses.push(pb::batch_read_blobs_response::Response {
                digest: Some(d),
                data,
                code,
                message,
            });
        }
        Ok(Response::new(pb::BatchReadBlobsResponse { responses }))
    }
}
