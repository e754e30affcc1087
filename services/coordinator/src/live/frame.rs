//! A live event encoded once for every watcher: the complete gRPC message
//! (its 5-byte length prefix included), and its gzipped twin, made when the
//! first watcher that accepts gzip asks for it.
//!
//! With 500 watchers of one busy Testrun, copying every log line once per
//! watcher (clone, then encode) spent most of the coordinator's time in
//! malloc, and encoding each event per watcher most of the rest (bench
//! scenario 5). The hub therefore carries these bytes, and the watch route
//! (`adapters::watch_route`) hands them to HTTP/2 as they are. A leaf:
//! it knows the wire format and nothing of the coordinator.

use std::io::Write as _;
use std::sync::Arc;

use prost::Message as _;
use prost::bytes::{BufMut as _, Bytes, BytesMut};
use testrunner_proto::v1::TestrunEvent;

/// Length of a gRPC message's prefix: a compression flag and a big-endian
/// u32 length.
pub const PREFIX_LEN: usize = 5;

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
    pub fn decode(&self) -> Result<TestrunEvent, prost::DecodeError> {
        TestrunEvent::decode(&self.framed[PREFIX_LEN..])
    }

    /// The message as a client that does (or does not) accept gzip gets it.
    pub async fn for_client(&self, gzip: bool) -> Bytes {
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
}
