//! `WatchTestrun` served with a codec that encodes shared events.
//!
//! With 500 watchers of one busy Testrun, copying every log line once per
//! watcher (clone, then encode) spent most of the coordinator's time in
//! malloc, and encoding each event per watcher still most of the rest
//! (bench scenario 5). Live log events are encoded once, when their lines
//! are stored; this route's encoder copies those bytes into the frame, so a
//! caught-up watcher costs one `memcpy` per event. The generated service
//! keeps its own `watch_testrun` (same watcher, shared events decoded
//! again); this route takes precedence for the method's path.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;
use prost::Message as _;
use prost::bytes::BufMut as _;
use testrunner_proto::v1::WatchTestrunRequest;
use tonic::body::Body;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::server::{Grpc, ServerStreamingService};
use tonic::{Request, Response, Status};

use crate::api::TestrunApi;
use crate::watch::WireEvent;

/// The gRPC path this route serves.
pub const PATH: &str = "/testrunner.v1.TestrunService/WatchTestrun";

/// Encodes `WireEvent`, decodes `WatchTestrunRequest`.
#[derive(Debug, Default, Clone, Copy)]
struct SharedCodec;

#[derive(Debug, Default, Clone, Copy)]
struct SharedEncoder;

#[derive(Debug, Default, Clone, Copy)]
struct RequestDecoder;

impl Codec for SharedCodec {
    type Encode = WireEvent;
    type Decode = WatchTestrunRequest;
    type Encoder = SharedEncoder;
    type Decoder = RequestDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        SharedEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        RequestDecoder
    }
}

impl Encoder for SharedEncoder {
    type Item = WireEvent;
    type Error = Status;

    fn encode(&mut self, item: Self::Item, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        match item {
            WireEvent::Encoded(bytes) => {
                buf.put_slice(&bytes);
                Ok(())
            }
            WireEvent::Message(event) => event
                .encode(buf)
                .map_err(|e| Status::internal(format!("encoding an event: {e}"))),
        }
    }
}

impl Decoder for RequestDecoder {
    type Item = WatchTestrunRequest;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Status> {
        WatchTestrunRequest::decode(buf)
            .map(Some)
            .map_err(|e| Status::invalid_argument(format!("malformed WatchTestrunRequest: {e}")))
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<WireEvent, Status>> + Send>>;

struct Method(TestrunApi);

impl ServerStreamingService<WatchTestrunRequest> for Method {
    type Response = WireEvent;
    type ResponseStream = EventStream;
    type Future = Pin<Box<dyn Future<Output = Result<Response<EventStream>, Status>> + Send>>;

    fn call(&mut self, request: Request<WatchTestrunRequest>) -> Self::Future {
        let api = self.0.clone();
        Box::pin(async move {
            let stream = api.watch_shared(request.into_inner()).await?;
            Ok(Response::new(stream))
        })
    }
}

/// The tower service mounted at [`PATH`].
#[derive(Debug, Clone)]
pub struct SharedWatchRoute {
    pub api: TestrunApi,
    pub max_encoding_message_size: usize,
}

impl tower::Service<http::Request<Body>> for SharedWatchRoute {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let method = Method(self.api.clone());
        let max = self.max_encoding_message_size;
        Box::pin(async move {
            let mut grpc = Grpc::new(SharedCodec).apply_max_message_size_config(None, Some(max));
            Ok(grpc.server_streaming(method, request).await)
        })
    }
}
