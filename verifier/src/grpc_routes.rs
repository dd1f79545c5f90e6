//! What a port that serves gRPC answers besides gRPC calls.
//!
//! tonic's router answers any path, any method and any body: `GET
//! /etc/passwd` gets `200 OK` with an empty gRPC body, and a body that is
//! not gRPC framing fails the call as INTERNAL. Every gRPC port of the
//! project (the log's, the monitor's gossip port) puts its routes behind
//! these rules instead:
//!
//! - A gRPC service's path reaches it only as a gRPC call: `POST` with
//!   `content-type: application/grpc…`. Any other method is 405 and any
//!   other content type 415, plain HTTP, so a browser or scanner never sees
//!   a `200 OK` from a gRPC path.
//! - A gRPC request body must be whole gRPC messages: each a 5-byte header
//!   (a compressed-flag byte of 0 or 1, a 4-byte big-endian length) and
//!   that many bytes, at least one message, and nothing cut short. Anything
//!   else fails the call with INVALID_ARGUMENT `request body: …`. A message
//!   that does not decode is the codec's to refuse, also as
//!   INVALID_ARGUMENT (`tlog_proto::codec`).
//! - Any other path is 404 (the log server adds its tiles first), except
//!   that a gRPC call to an unknown service gets gRPC's UNIMPLEMENTED, as
//!   gRPC clients expect.

use axum::body::{Body, BodyDataStream, Bytes};
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio_stream::Stream;
use tonic::Status;

/// `grpc` (tonic's routes) answering only gRPC calls, with their bodies'
/// framing checked as they stream in.
pub fn calls_only(grpc: Router) -> Router {
    grpc.layer(axum::middleware::from_fn(grpc_calls_only))
}

/// `router` with the fallback of the module comment: 404, or
/// UNIMPLEMENTED to a gRPC call.
pub fn with_not_found(router: Router) -> Router {
    router.fallback(not_found)
}

/// Lets only gRPC calls through, their bodies checked as they stream in.
async fn grpc_calls_only(request: Request, next: Next) -> Response {
    if request.method() != Method::POST {
        return plain(
            StatusCode::METHOD_NOT_ALLOWED,
            "a gRPC method: use POST with content-type application/grpc",
        );
    }
    if !is_grpc(request.headers()) {
        return plain(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "a gRPC method: the content type must be application/grpc",
        );
    }
    let request = request.map(|body| Body::from_stream(GrpcFrames::new(body.into_data_stream())));
    next.run(request).await
}

/// 404 for a path that is neither a tile, the checkpoint nor a gRPC
/// service; UNIMPLEMENTED to a gRPC call, so gRPC clients read it.
async fn not_found(headers: HeaderMap) -> Response {
    if is_grpc(&headers) {
        return Status::unimplemented("no such gRPC service").into_http();
    }
    plain(StatusCode::NOT_FOUND, "not found")
}

/// Whether a request says it is a gRPC call.
pub(crate) fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

fn plain(status: StatusCode, message: &str) -> Response {
    (
        status,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        format!("{message}\n"),
    )
        .into_response()
}

/// The length of a gRPC message header.
const HEADER_LEN: usize = 5;

/// A request body passed through unchanged while its gRPC framing is
/// checked; the first framing error ends it with INVALID_ARGUMENT, which
/// tonic finds in the body error and answers with.
struct GrpcFrames {
    body: BodyDataStream,
    framing: Framing,
    failed: bool,
}

impl GrpcFrames {
    fn new(body: BodyDataStream) -> Self {
        Self {
            body,
            framing: Framing::default(),
            failed: false,
        }
    }
}

impl Stream for GrpcFrames {
    type Item = Result<Bytes, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.failed {
            return Poll::Ready(None);
        }
        let item = match ready!(Pin::new(&mut self.body).poll_next(cx)) {
            Some(Ok(bytes)) => self.framing.feed(&bytes).map(|()| bytes),
            Some(Err(e)) => Err(Status::from_error(Box::new(e))),
            None => match self.framing.finish() {
                Ok(()) => return Poll::Ready(None),
                Err(status) => Err(status),
            },
        };
        self.failed = item.is_err();
        Poll::Ready(Some(item))
    }
}

/// Where a body is in its gRPC framing.
#[derive(Debug, Default)]
struct Framing {
    /// The bytes of the current message header read so far.
    header: Vec<u8>,
    /// The current message's length and the bytes of it still to come,
    /// once its header is whole.
    body: Option<(u32, u32)>,
    /// Whole messages seen.
    messages: u64,
}

impl Framing {
    /// Takes in the next bytes of the body.
    fn feed(&mut self, mut bytes: &[u8]) -> Result<(), Status> {
        while !bytes.is_empty() {
            match &mut self.body {
                Some((_, left)) => {
                    let take = bytes.len().min(*left as usize);
                    *left -= take as u32;
                    bytes = &bytes[take..];
                }
                None => {
                    let take = bytes.len().min(HEADER_LEN - self.header.len());
                    self.header.extend_from_slice(&bytes[..take]);
                    bytes = &bytes[take..];
                    if self.header.len() == HEADER_LEN {
                        let flag = self.header[0];
                        if flag > 1 {
                            return Err(invalid(format!(
                                "a gRPC message starts with a compressed-flag byte of 0 or 1, not {flag}"
                            )));
                        }
                        let len = u32::from_be_bytes(self.header[1..].try_into().expect("4 bytes"));
                        self.header.clear();
                        self.body = Some((len, len));
                    }
                }
            }
            if let Some((_, 0)) = self.body {
                self.body = None;
                self.messages += 1;
            }
        }
        Ok(())
    }

    /// Checks the body ended after a whole message.
    fn finish(&self) -> Result<(), Status> {
        match (self.body, self.header.len()) {
            (Some((len, left)), _) => Err(invalid(format!(
                "ends inside a message: {} of its {len} bytes",
                len - left
            ))),
            (None, 0) if self.messages == 0 => Err(invalid(
                "empty; a gRPC request carries one message".to_owned(),
            )),
            (None, 0) => Ok(()),
            (None, got) => Err(invalid(format!(
                "ends inside a message header: {got} of its {HEADER_LEN} bytes"
            ))),
        }
    }
}

fn invalid(reason: String) -> Status {
    Status::invalid_argument(format!("request body: {reason}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    fn framed(messages: &[&[u8]]) -> Vec<u8> {
        messages
            .iter()
            .flat_map(|m| {
                let mut frame = vec![0];
                frame.extend_from_slice(&(m.len() as u32).to_be_bytes());
                frame.extend_from_slice(m);
                frame
            })
            .collect()
    }

    /// Feeds `body` in pieces of `step` bytes, then ends it.
    fn check(body: &[u8], step: usize) -> Result<(), Status> {
        let mut framing = Framing::default();
        for piece in body.chunks(step) {
            framing.feed(piece)?;
        }
        framing.finish()
    }

    fn refused(body: &[u8], needle: &str) {
        for step in [1, 3, body.len().max(1)] {
            let status = check(body, step).unwrap_err();
            assert_eq!(status.code(), Code::InvalidArgument);
            assert!(
                status.message().starts_with("request body: ") && status.message().contains(needle),
                "{step}: {status:?}"
            );
        }
    }

    #[test]
    fn whole_messages_pass_in_any_pieces() {
        let body = framed(&[b"hello", b"", b"world!"]);
        for step in 1..=body.len() {
            check(&body, step).unwrap();
        }
    }

    #[test]
    fn broken_framing_is_an_invalid_argument() {
        refused(b"", "empty");
        refused(
            b"GET / HTTP/1.1\r\n",
            "compressed-flag byte of 0 or 1, not 71",
        );
        refused(
            &framed(&[b"hello"])[..7],
            "ends inside a message: 2 of its 5 bytes",
        );
        refused(&[0, 0, 0], "ends inside a message header: 3 of its 5");
        let mut two = framed(&[b"hello"]);
        two.extend_from_slice(&[0, 0]);
        refused(&two, "message header: 2 of its 5");
    }
}
