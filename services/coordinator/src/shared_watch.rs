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
use std::io::Write as _;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::StreamExt as _;
use http_body::Frame;
use http_body_util::StreamBody;
use prost::Message as _;
use prost::bytes::{BufMut as _, Bytes, BytesMut};
use testrunner_proto::v1::{TestrunEvent, WatchTestrunRequest};
use tonic::Status;
use tonic::body::Body;
use tonic::codec::{CompressionEncoding, DecodeBuf, Decoder, Streaming};

use crate::api::TestrunApi;
use crate::watch::WireEvent;

/// The gRPC path this route serves.
pub const PATH: &str = "/testrunner.v1.TestrunService/WatchTestrun";

/// Length of a gRPC message's prefix: a compression flag and a big-endian
/// u32 length.
const PREFIX_LEN: usize = 5;

/// Largest request accepted (a `WatchTestrunRequest` is a few bytes).
const MAX_REQUEST_BYTES: usize = 4096;

/// Messages shorter than this are sent uncompressed even to clients that
/// accept gzip (the flag is per message): compressing a few bytes saves
/// nothing.
const MIN_GZIP_BYTES: usize = 512;

/// One live event encoded once for every caught-up watcher: the gRPC
/// message as it is, and gzipped, made when the first watcher asks.
#[derive(Debug)]
pub struct SharedEvent {
    framed: Bytes,
    gzipped: tokio::sync::OnceCell<Bytes>,
}

impl SharedEvent {
    pub fn new(event: &TestrunEvent) -> Arc<Self> {
        Arc::new(Self {
            framed: frame(event),
            gzipped: tokio::sync::OnceCell::new(),
        })
    }

    /// The event as a message again, for transports that cannot take
    /// the encoded bytes.
    pub fn decode(&self) -> Result<TestrunEvent, Status> {
        TestrunEvent::decode(&self.framed[PREFIX_LEN..])
            .map_err(|e| Status::internal(format!("decoding a shared event: {e}")))
    }

    /// The message as a client that does (or does not) accept gzip gets it.
    async fn for_client(&self, gzip: bool) -> Bytes {
        if !gzip {
            return self.framed.clone();
        }
        self.gzipped
            .get_or_init(|| async {
                // Off the async threads: a batch of up to 1 MiB takes
                // milliseconds, and every other watcher of the Testrun
                // awaits this one result rather than blocking a thread.
                let framed = self.framed.clone();
                tokio::task::spawn_blocking(move || gzip_frame(&framed))
                    .await
                    .unwrap_or_else(|_| self.framed.clone())
            })
            .await
            .clone()
    }
}

/// `message` as one uncompressed gRPC message, prefix included.
fn frame(message: &TestrunEvent) -> Bytes {
    let len = message.encoded_len();
    let mut buf = BytesMut::with_capacity(PREFIX_LEN + len);
    buf.put_u8(0);
    buf.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
    message
        .encode(&mut buf)
        .expect("the buffer was sized for the message");
    buf.freeze()
}

/// A framed message compressed with gzip (flag 1), or the same message if
/// compressing does not make it smaller.
fn gzip_frame(framed: &Bytes) -> Bytes {
    let payload = &framed[PREFIX_LEN..];
    if payload.len() < MIN_GZIP_BYTES {
        return framed.clone();
    }
    let mut out = Vec::with_capacity(PREFIX_LEN + payload.len() / 2);
    out.extend_from_slice(&[1, 0, 0, 0, 0]);
    let mut encoder = flate2::write::GzEncoder::new(out, flate2::Compression::fast());
    let mut out = match encoder.write_all(payload).and_then(|()| encoder.finish()) {
        Ok(out) => out,
        Err(error) => {
            tracing::warn!(%error, "gzip failed; sending the event uncompressed");
            return framed.clone();
        }
    };
    let len = out.len() - PREFIX_LEN;
    if len >= payload.len() {
        return framed.clone();
    }
    out[1..PREFIX_LEN].copy_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
    Bytes::from(out)
}

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
            let gzip = accepts_gzip(request.headers());
            let events = match read_request(request).await {
                Ok(request) => api.watch_shared(request).await,
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
fn respond(events: crate::api::EventStream<WireEvent>, gzip: bool) -> http::Response<Body> {
    let frames = futures::stream::unfold(Some(events), move |events| async move {
        let mut events = events?;
        let frame = match events.next().await {
            Some(Ok(WireEvent::Encoded(shared))) => Frame::data(shared.for_client(gzip).await),
            // A watcher's own events (snapshots, catch-up pages) go plain:
            // compressing them would cost CPU per watcher; the flag is per
            // message, so a gzip stream may carry them as they are.
            Some(Ok(WireEvent::Message(event))) => Frame::data(frame(&event)),
            Some(Err(status)) => return Some((Ok(trailers(&status)), None)),
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

    fn log_event(lines: usize) -> TestrunEvent {
        TestrunEvent {
            cursor: lines as u64,
            event: Some(Event::Log(testrunner_proto::v1::LogLines {
                test_name: "t.sh".into(),
                lines: (1..=lines).map(|i| i.to_string()).collect(),
                ..Default::default()
            })),
        }
    }

    #[tokio::test]
    async fn a_gzipped_event_is_flagged_and_decompresses_to_the_same_message() {
        use std::io::Read as _;
        let event = log_event(10_000);
        let shared = SharedEvent::new(&event);
        let gzipped = shared.for_client(true).await;
        assert_eq!(gzipped[0], 1, "compressed");
        let len = u32::from_be_bytes(gzipped[1..PREFIX_LEN].try_into().unwrap()) as usize;
        assert_eq!(len, gzipped.len() - PREFIX_LEN);
        assert!(
            gzipped.len() < shared.framed.len() / 2,
            "seq output halves at least"
        );
        let mut plain = Vec::new();
        flate2::read::GzDecoder::new(&gzipped[PREFIX_LEN..])
            .read_to_end(&mut plain)
            .unwrap();
        assert_eq!(TestrunEvent::decode(plain.as_slice()).unwrap(), event);
        // Made once, shared by every client that asks.
        assert_eq!(shared.for_client(true).await.as_ptr(), gzipped.as_ptr());
        assert_eq!(shared.for_client(false).await, shared.framed);
        assert_eq!(shared.decode().unwrap(), event);
    }

    #[tokio::test]
    async fn small_events_go_uncompressed_even_to_clients_that_accept_gzip() {
        let shared = SharedEvent::new(&log_event(3));
        assert_eq!(shared.for_client(true).await[0], 0);
    }

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
