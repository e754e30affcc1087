//! `WatchTestrun` served with shared, pre-framed events.
//!
//! Live log events are encoded once, when their lines are stored, as
//! complete gRPC messages (`live::frame`), and this route hands those bytes
//! to HTTP/2 as they are:
//! every caught-up watcher's frame points at the same buffer, and the only
//! copy left per watcher is the kernel's. (Through tonic's `Grpc` helper
//! each event was copied into a per-watcher buffer first.)
//!
//! Clients that accept gzip (`grpc-accept-encoding`; the `testrunner` CLI
//! does) get each shared event compressed, also once for all of them (on
//! the blocking pool; their own catch-up events go plain): on a
//! machine serving hundreds of watchers, the kernel's work for their
//! sockets (copies, and the network stack's deferred work, which runs in
//! whatever process triggers it and so ignores the runner plane's
//! priority) grows with the bytes sent. Browsers do not ask for it and get
//! the plain bytes.
//!
//! The route speaks the gRPC wire format itself: it reads the one request
//! message with tonic's decoder, streams events as DATA frames, and ends
//! with `grpc-status` trailers. tonic-web wraps it like any service, so
//! browsers get the same bytes over grpc-web. The generated service keeps
//! its own `watch_testrun` (same watcher, shared events decoded again);
//! this route takes precedence for the method's path.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::StreamExt as _;
use http_body::Frame;
use http_body_util::StreamBody;
use prost::Message as _;
use prost::bytes::Bytes;
use testrunner_proto::v1::WatchTestrunRequest;
use tonic::Status;
use tonic::body::Body;
use tonic::codec::{CompressionEncoding, DecodeBuf, Decoder, Streaming};

use crate::engine::testruns::Testruns;
use crate::engine::watch::{self, EventStream, WireEvent};
use crate::live::frame::frame;

/// The gRPC path this route serves.
pub const PATH: &str = "/testrunner.v1.TestrunService/WatchTestrun";

/// Largest request accepted (a `WatchTestrunRequest` is a few bytes).
const MAX_REQUEST_BYTES: usize = 4096;

/// Whether the client lists gzip in `grpc-accept-encoding`.
fn accepts_gzip(headers: &http::HeaderMap) -> bool {
    headers
        .get_all("grpc-accept-encoding")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("gzip"))
}

/// Decodes the request message.
#[derive(Debug, Default, Clone, Copy)]
struct RequestDecoder;

impl Decoder for RequestDecoder {
    type Item = WatchTestrunRequest;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Status> {
        WatchTestrunRequest::decode(buf)
            .map(Some)
            .map_err(|e| Status::invalid_argument(format!("malformed WatchTestrunRequest: {e}")))
    }
}

/// The tower service mounted at [`PATH`].
#[derive(Debug, Clone)]
pub struct SharedWatchRoute {
    pub service: Testruns,
}

impl tower::Service<http::Request<Body>> for SharedWatchRoute {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let service = self.service.clone();
        Box::pin(async move {
            let gzip = accepts_gzip(request.headers());
            let events = match read_request(request).await {
                Ok(request) => watch::watch_testrun(&service, &request)
                    .await
                    .map_err(Status::from),
                Err(status) => Err(status),
            };
            Ok(match events {
                Ok(events) => respond(events, gzip),
                // Trailers-only, as tonic answers a call that fails at once.
                Err(status) => status.into_http(),
            })
        })
    }
}

/// Reads the call's one request message.
async fn read_request(request: http::Request<Body>) -> Result<WatchTestrunRequest, Status> {
    let encoding = match request.headers().get("grpc-encoding") {
        None => None,
        Some(v) if v == "identity" => None,
        Some(v) if v == "gzip" => Some(CompressionEncoding::Gzip),
        Some(v) => {
            let mut status = Status::unimplemented(format!(
                "grpc-encoding: {v:?} is not supported (gzip and identity are)"
            ));
            status.metadata_mut().insert(
                "grpc-accept-encoding",
                tonic::metadata::MetadataValue::from_static("gzip,identity"),
            );
            return Err(status);
        }
    };
    let mut messages = Streaming::new_request(
        RequestDecoder,
        request.into_body(),
        encoding,
        Some(MAX_REQUEST_BYTES),
    );
    messages
        .message()
        .await?
        .ok_or_else(|| Status::invalid_argument("request: no WatchTestrunRequest was sent"))
}

/// The streaming response: one DATA frame per event, then trailers.
fn respond(events: EventStream<WireEvent>, gzip: bool) -> http::Response<Body> {
    let frames = futures::stream::unfold(Some(events), move |events| async move {
        let mut events = events?;
        let frame = match events.next().await {
            Some(Ok(WireEvent::Encoded(shared))) => Frame::data(shared.for_client(gzip).await),
            // A watcher's own events (snapshots, catch-up pages) go plain:
            // compressing them would cost CPU per watcher; the flag is per
            // message, so a gzip stream may carry them as they are.
            Some(Ok(WireEvent::Message(event))) => Frame::data(frame(&event)),
            Some(Err(err)) => return Some((Ok(trailers(&Status::from(err))), None)),
            None => return Some((Ok(trailers(&Status::ok(""))), None)),
        };
        Some((Ok::<_, Infallible>(frame), Some(events)))
    });
    let mut response = http::Response::new(Body::new(StreamBody::new(frames)));
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    if gzip {
        headers.insert("grpc-encoding", http::HeaderValue::from_static("gzip"));
    }
    response
}

/// The trailers that end a call with `status`.
fn trailers(status: &Status) -> Frame<Bytes> {
    let mut map = http::HeaderMap::new();
    if let Err(unencodable) = status.add_header(&mut map) {
        tracing::warn!(error = %unencodable, "a status could not be sent as trailers");
        map.insert("grpc-status", http::HeaderValue::from_static("13"));
    }
    Frame::trailers(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_is_accepted_when_listed_among_other_encodings() {
        let mut headers = http::HeaderMap::new();
        assert!(!accepts_gzip(&headers));
        headers.insert("grpc-accept-encoding", "identity, deflate".parse().unwrap());
        assert!(!accepts_gzip(&headers));
        headers.insert("grpc-accept-encoding", "identity,GZIP".parse().unwrap());
        assert!(accepts_gzip(&headers));
    }
}
