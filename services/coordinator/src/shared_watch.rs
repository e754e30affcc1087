//! `WatchTestrun` served with shared, pre-framed events.
//!
//! With 500 watchers of one busy Testrun, copying every log line once per
//! watcher (clone, then encode) spent most of the coordinator's time in
//! malloc, and encoding each event per watcher most of the rest (bench
//! scenario 5). Live log events are therefore encoded once, when their
//! lines are stored, as complete gRPC messages (the 5-byte length prefix
//! included), and this route hands those bytes to HTTP/2 as they are:
//! every caught-up watcher's frame points at the same buffer, and the only
//! copy left per watcher is the kernel's. (Through tonic's `Grpc` helper
//! each event was copied into a per-watcher buffer first.)
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
use prost::bytes::{BufMut as _, Bytes, BytesMut};
use testrunner_proto::v1::{TestrunEvent, WatchTestrunRequest};
use tonic::Status;
use tonic::body::Body;
use tonic::codec::{DecodeBuf, Decoder, Streaming};

use crate::api::TestrunApi;
use crate::watch::WireEvent;

/// The gRPC path this route serves.
pub const PATH: &str = "/testrunner.v1.TestrunService/WatchTestrun";

/// Length of a gRPC message's prefix: a compression flag and a big-endian
/// u32 length.
pub const PREFIX_LEN: usize = 5;

/// Largest request accepted (a `WatchTestrunRequest` is a few bytes).
const MAX_REQUEST_BYTES: usize = 4096;

/// `message` as one uncompressed gRPC message, prefix included.
pub fn frame(message: &TestrunEvent) -> Bytes {
    let len = message.encoded_len();
    let mut buf = BytesMut::with_capacity(PREFIX_LEN + len);
    buf.put_u8(0);
    buf.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
    message
        .encode(&mut buf)
        .expect("the buffer was sized for the message");
    buf.freeze()
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
    pub api: TestrunApi,
}

impl tower::Service<http::Request<Body>> for SharedWatchRoute {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let api = self.api.clone();
        Box::pin(async move {
            let events = match read_request(request).await {
                Ok(request) => api.watch_shared(request).await,
                Err(status) => Err(status),
            };
            Ok(match events {
                Ok(events) => respond(events),
                // Trailers-only, as tonic answers a call that fails at once.
                Err(status) => status.into_http(),
            })
        })
    }
}

/// Reads the call's one request message.
async fn read_request(request: http::Request<Body>) -> Result<WatchTestrunRequest, Status> {
    if let Some(encoding) = request.headers().get("grpc-encoding")
        && encoding != "identity"
    {
        return Err(Status::unimplemented(format!(
            "grpc-encoding {encoding:?} is not supported; send the request uncompressed"
        )));
    }
    let mut messages = Streaming::new_request(
        RequestDecoder,
        request.into_body(),
        None,
        Some(MAX_REQUEST_BYTES),
    );
    messages
        .message()
        .await?
        .ok_or_else(|| Status::invalid_argument("request: no WatchTestrunRequest was sent"))
}

/// The streaming response: one DATA frame per event, then trailers.
fn respond(events: crate::api::EventStream<WireEvent>) -> http::Response<Body> {
    let frames = futures::stream::unfold(Some(events), |events| async move {
        let mut events = events?;
        let frame = match events.next().await {
            Some(Ok(WireEvent::Encoded(framed))) => Frame::data(framed),
            Some(Ok(WireEvent::Message(event))) => Frame::data(frame(&event)),
            Some(Err(status)) => return Some((Ok(trailers(&status)), None)),
            None => return Some((Ok(trailers(&Status::ok(""))), None)),
        };
        Some((Ok::<_, Infallible>(frame), Some(events)))
    });
    let mut response = http::Response::new(Body::new(StreamBody::new(frames)));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
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
    use testrunner_proto::v1::testrun_event::Event;

    #[test]
    fn a_framed_event_is_a_grpc_message_with_its_length_prefix() {
        let event = TestrunEvent {
            cursor: 7,
            event: Some(Event::Log(testrunner_proto::v1::LogLines {
                test_name: "t.sh".into(),
                lines: vec!["a".into(), "b".into()],
                ..Default::default()
            })),
        };
        let framed = frame(&event);
        assert_eq!(framed[0], 0, "not compressed");
        let len = u32::from_be_bytes(framed[1..PREFIX_LEN].try_into().unwrap()) as usize;
        assert_eq!(len, framed.len() - PREFIX_LEN);
        assert_eq!(TestrunEvent::decode(&framed[PREFIX_LEN..]).unwrap(), event);
    }
}
