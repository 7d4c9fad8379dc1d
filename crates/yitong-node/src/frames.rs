//! The check every request's gRPC framing and messages pass before tonic decodes them, so a
//! message that does not decode is the caller's fault, INVALID_ARGUMENT, and never reaches a
//! handler.
//!
//! Left to itself tonic answers INTERNAL to a request it cannot decode: a flag byte it does not
//! know, a message flagged compressed in a call that names no compression, a body that ends
//! inside a frame or holds no message, bytes that are not the method's protobuf message (the
//! gRPC status-code guide files all of these under INTERNAL, a server's fault). They are the
//! caller's: [`FrameCheckLayer`] reads the request body as it passes, frame by frame, and fails
//! it with INVALID_ARGUMENT naming what is wrong; tonic then answers that status as it is (it
//! keeps a `Status` a request body fails with). A unary call's body must hold exactly one
//! message. Each whole message is decoded once against the method's input type from the
//! descriptor set (`prost-reflect`), before tonic decodes it again into the generated type: a
//! second decode of every request (about 6 µs for a Settle's 123 bytes, timed once on the
//! shared development machine, beside milliseconds of a Settle's own work) buys one check for
//! every RPC of every service with no list of types to keep.
//!
//! What the check leaves to tonic: a frame longer than the server's message limit (tonic
//! answers OUT_OF_RANGE without reading it), a message flagged compressed in a call that names
//! a `grpc-encoding` (tonic refuses encodings it does not support, UNIMPLEMENTED), and every
//! path outside the descriptor set (health checks, reflection).

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::LazyLock;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http::{Request, Response};
use http_body::Frame;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor};
use tonic::body::Body;

use crate::limits::REQUEST_BYTES_MAX;

/// Bytes of a gRPC frame header: the compression flag and the message's four-byte length.
const HEADER_BYTES: usize = 5;

/// What a method takes: its input message, and whether one message or a stream of them.
#[derive(Debug, Clone)]
struct Input {
    message: MessageDescriptor,
    streaming: bool,
}

/// Every method of every Yitong service by its request path ("/yitong.x.v1.XService/Method").
static METHODS: LazyLock<HashMap<String, Input>> = LazyLock::new(|| {
    let pool = DescriptorPool::decode(yitong_proto::FILE_DESCRIPTOR_SET)
        .expect("the descriptor set yitong-proto embeds decodes");
    pool.services()
        .flat_map(|service| service.methods().collect::<Vec<_>>())
        .map(|method| {
            let path = format!("/{}/{}", method.parent_service().full_name(), method.name());
            let input = Input {
                message: method.input(),
                streaming: method.is_client_streaming(),
            };
            (path, input)
        })
        .collect()
});

/// A tower layer for tonic servers that refuses undecodable requests with INVALID_ARGUMENT.
#[derive(Debug, Clone, Default)]
pub struct FrameCheckLayer;

impl<S> tower::Layer<S> for FrameCheckLayer {
    type Service = FrameCheck<S>;

    fn layer(&self, inner: S) -> FrameCheck<S> {
        FrameCheck { inner }
    }
}

/// The service [`FrameCheckLayer`] builds.
#[derive(Debug, Clone)]
pub struct FrameCheck<S> {
    inner: S,
}

impl<S> tower::Service<Request<Body>> for FrameCheck<S>
where
    S: tower::Service<Request<Body>, Response = Response<Body>>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let (parts, body) = request.into_parts();
        let compressed = parts.headers.contains_key("grpc-encoding");
        let body = checked(parts.uri.path(), compressed, body);
        self.inner.call(Request::from_parts(parts, body))
    }
}

/// The request body of a call to `path`, checked as it is read: it fails with
/// INVALID_ARGUMENT at the first frame that does not decode as the method's input. A path of no
/// Yitong method gets its body back unchecked. `compressed`: the call names a `grpc-encoding`.
/// The layer's own work, open to harnesses that call handlers without a server.
pub fn checked(path: &str, compressed: bool, body: Body) -> Body {
    match METHODS.get(path) {
        None => body,
        Some(input) => Body::new(Checked {
            body,
            checker: Checker::new(input.clone(), compressed),
            failed: false,
        }),
    }
}

/// A request body that fails with INVALID_ARGUMENT at the first thing that does not decode.
struct Checked {
    body: Body,
    checker: Checker,
    /// The body has failed: nothing more is read from it.
    failed: bool,
}

impl http_body::Body for Checked {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        if self.failed {
            return Poll::Ready(None);
        }
        let polled = std::task::ready!(Pin::new(&mut self.body).poll_frame(cx));
        let fault = match &polled {
            Some(Ok(frame)) => match frame.data_ref() {
                Some(data) => self.checker.feed(data),
                None => Ok(()),
            },
            Some(Err(_)) => Ok(()),
            None => self.checker.end(),
        };
        match fault {
            Ok(()) => Poll::Ready(polled),
            Err(fault) => {
                self.failed = true;
                Poll::Ready(Some(Err(tonic::Status::invalid_argument(format!(
                    "the request does not decode: {fault}"
                )))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        // The end is where a body that holds no whole message is refused: it must be polled.
        self.failed
    }
}

/// Where the reading of the body stands.
#[derive(Debug)]
enum State {
    /// Reading a frame header; `filled` of its bytes have come.
    Header {
        bytes: [u8; HEADER_BYTES],
        filled: usize,
    },
    /// Reading a message of `length` bytes.
    Message { length: usize, bytes: BytesMut },
    /// The rest is tonic's to judge (a frame past the limit, a compressed message).
    Tonic,
}

/// The frame-by-frame reading of one request body, free of the transport so it can be tested
/// on bytes alone.
#[derive(Debug)]
struct Checker {
    input: Input,
    /// The call names a `grpc-encoding`: compressed messages are tonic's to decompress.
    compressed: bool,
    state: State,
    /// Whole messages read so far.
    messages: usize,
}

impl Checker {
    fn new(input: Input, compressed: bool) -> Checker {
        Checker {
            input,
            compressed,
            state: State::Header {
                bytes: [0; HEADER_BYTES],
                filled: 0,
            },
            messages: 0,
        }
    }

    /// Reads the next bytes of the body; the error says what is wrong with them.
    fn feed(&mut self, mut data: &[u8]) -> Result<(), String> {
        while data.has_remaining() {
            match &mut self.state {
                State::Tonic => return Ok(()),
                State::Header { bytes, filled } => {
                    if *filled == 0 && !self.input.streaming && self.messages == 1 {
                        return Err(
                            "a unary call takes one message, and more bytes follow it".into()
                        );
                    }
                    let taken = (HEADER_BYTES - *filled).min(data.len());
                    bytes[*filled..*filled + taken].copy_from_slice(&data[..taken]);
                    *filled += taken;
                    data.advance(taken);
                    if *filled == HEADER_BYTES {
                        let header = *bytes;
                        self.state = self.header(header)?;
                        self.message_if_whole()?;
                    }
                }
                State::Message { length, bytes } => {
                    let taken = (*length - bytes.len()).min(data.len());
                    bytes.extend_from_slice(&data[..taken]);
                    data.advance(taken);
                    self.message_if_whole()?;
                }
            }
        }
        Ok(())
    }

    /// What a whole frame header starts.
    fn header(&self, header: [u8; HEADER_BYTES]) -> Result<State, String> {
        let [flag, length @ ..] = header;
        let length = u32::from_be_bytes(length) as usize;
        match flag {
            0 => {}
            1 if self.compressed => return Ok(State::Tonic),
            1 => {
                return Err(
                    "a message is flagged compressed, and the call names no grpc-encoding".into(),
                );
            }
            flag => return Err(format!("frame flag {flag} is undefined: 0 or 1")),
        }
        if length > REQUEST_BYTES_MAX {
            return Ok(State::Tonic);
        }
        Ok(State::Message {
            length,
            bytes: BytesMut::with_capacity(length),
        })
    }

    /// Decodes the message being read once it is whole, and starts the next frame.
    fn message_if_whole(&mut self) -> Result<(), String> {
        let State::Message { length, bytes } = &mut self.state else {
            return Ok(());
        };
        if bytes.len() < *length {
            return Ok(());
        }
        let message = std::mem::take(bytes).freeze();
        DynamicMessage::decode(self.input.message.clone(), message).map_err(|error| {
            format!(
                "message {} is not a {}: {error}",
                self.messages + 1,
                self.input.message.full_name()
            )
        })?;
        self.messages += 1;
        self.state = State::Header {
            bytes: [0; HEADER_BYTES],
            filled: 0,
        };
        Ok(())
    }

    /// The body has ended: it must not end inside a frame, and a unary call must have had its
    /// message.
    fn end(&self) -> Result<(), String> {
        match &self.state {
            State::Tonic => Ok(()),
            State::Header { filled: 0, .. } if self.messages == 0 && !self.input.streaming => {
                Err("the body holds no message".into())
            }
            State::Header { filled: 0, .. } => Ok(()),
            State::Header { filled, .. } => Err(format!(
                "the body ends {filled} bytes into a frame header of {HEADER_BYTES}"
            )),
            State::Message { length, bytes } => Err(format!(
                "the body ends {} bytes into a message of {length}",
                bytes.len()
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(flag: u8, length: u32, message: &[u8]) -> Vec<u8> {
        let mut frame = vec![flag];
        frame.extend_from_slice(&length.to_be_bytes());
        frame.extend_from_slice(message);
        frame
    }

    fn checker(path: &str) -> Checker {
        let input = METHODS.get(path).expect("a method of the descriptor set");
        Checker::new(input.clone(), false)
    }

    const LOOKUP: &str = "/yitong.identity.v1.IdentityService/GetInsuredPerson";
    const DETAILS: &str = "/yitong.ledger.v1.LedgerService/ReconcileDetails";

    /// Reads `body` in chunks of `chunk` bytes and returns the first fault.
    fn read(path: &str, body: &[u8], chunk: usize) -> Result<(), String> {
        let mut checker = checker(path);
        for piece in body.chunks(chunk.max(1)) {
            checker.feed(piece)?;
        }
        checker.end()
    }

    // Proves a well-formed body passes, however the transport cuts it into chunks: one message
    // of a unary call, several of a client stream, an empty message (all fields default).
    #[test]
    fn well_formed_bodies_pass() {
        use prost::Message;
        let lookup = yitong_proto::identity::v1::GetInsuredPersonRequest {
            service_date: "2026-12-05".into(),
            ..Default::default()
        }
        .encode_to_vec();
        let one = frame(0, lookup.len() as u32, &lookup);
        let empty = frame(0, 0, &[]);
        for chunk in [1, 2, 5, 7, 1024] {
            assert_eq!(read(LOOKUP, &one, chunk), Ok(()), "chunks of {chunk}");
            assert_eq!(read(LOOKUP, &empty, chunk), Ok(()), "chunks of {chunk}");
            let stream = [empty.clone(), empty.clone(), empty.clone()].concat();
            assert_eq!(read(DETAILS, &stream, chunk), Ok(()), "chunks of {chunk}");
        }
        assert_eq!(read(DETAILS, &[], 1), Ok(()), "a stream may be empty");
    }

    // Proves each way a body can fail to decode is named (the hostile-frame cases of issue 17),
    // whatever the chunking.
    #[test]
    fn undecodable_bodies_are_named() {
        let cases: [(&str, &str, Vec<u8>, &str); 8] = [
            (
                "compressed",
                LOOKUP,
                frame(1, 2, &[0x0a, 0x00]),
                "flagged compressed",
            ),
            (
                "undefined flag",
                LOOKUP,
                frame(7, 2, &[0x0a, 0x00]),
                "frame flag 7",
            ),
            (
                "past the body",
                LOOKUP,
                frame(0, 100, &[0x0a, 0x00]),
                "2 bytes into a message of 100",
            ),
            (
                "short header",
                LOOKUP,
                vec![0, 0, 0],
                "3 bytes into a frame header",
            ),
            (
                "trailing bytes",
                LOOKUP,
                [frame(0, 0, &[]), vec![0xff; 3]].concat(),
                "more bytes follow",
            ),
            (
                "two messages",
                LOOKUP,
                [frame(0, 0, &[]), frame(0, 0, &[])].concat(),
                "more bytes follow",
            ),
            ("empty", LOOKUP, vec![], "holds no message"),
            (
                "wrong wire type",
                LOOKUP,
                frame(0, 2, &[0x0b, 0x00]),
                "is not a yitong.identity.v1.GetInsuredPersonRequest",
            ),
        ];
        for (what, path, body, expected) in cases {
            for chunk in [1, 3, 1024] {
                let fault = read(path, &body, chunk).expect_err(what);
                assert!(
                    fault.contains(expected),
                    "{what} in chunks of {chunk}: {fault}"
                );
            }
        }
        let broken_stream = [frame(0, 0, &[]), frame(0, 2, &[0x0b, 0x00])].concat();
        let fault = read(DETAILS, &broken_stream, 1024).expect_err("a stream's second message");
        assert!(fault.contains("message 2 is not a"), "{fault}");
    }

    // Proves what is tonic's to judge is left to it: a frame past the message limit (OUT_OF_RANGE)
    // and a compressed message in a call that names its encoding.
    #[test]
    fn what_tonic_judges_passes_through() {
        let over = frame(0, u32::MAX, &[1, 2, 3]);
        assert_eq!(read(LOOKUP, &over, 2), Ok(()));
        let mut compressed = Checker::new(METHODS[LOOKUP].clone(), true);
        assert_eq!(compressed.feed(&frame(1, 2, &[0x1f, 0x8b])), Ok(()));
        assert_eq!(compressed.end(), Ok(()));
    }

    // Proves the table holds every method of the five services, and nothing else: the
    // health checks and reflection are tonic's.
    #[test]
    fn every_method_is_checked() {
        for service in ["identity", "catalog", "settlement", "ledger", "audit"] {
            let prefix = format!("/yitong.{service}.v1.");
            assert!(
                METHODS.keys().any(|path| path.starts_with(&prefix)),
                "{service}"
            );
        }
        assert!(METHODS.keys().all(|path| path.starts_with("/yitong.")));
        assert!(METHODS[DETAILS].streaming && !METHODS[LOOKUP].streaming);
        assert!(!METHODS["/yitong.catalog.v1.CatalogService/DownloadCatalog"].streaming);
    }
}
