//! C2SP tlog-witness over HTTP: `POST /add-checkpoint`.
//!
//! The body is read only up to [`MAX_REQUEST_BYTES`] (a longer one gets 413
//! before anything is parsed), and a whole request, body included, must
//! finish within the timeout or gets 408, so a slow or endless client
//! costs one connection for a bounded time. Refusals are one line of
//! text, except the 409 for a stale old size, whose body the spec fixes:
//! the cosigned size as `text/x.tlog.size`.

use super::cosigning::{Refusal, Witness};
use crate::witness_protocol::{
    encode_size, ADD_CHECKPOINT_PATH, MAX_REQUEST_BYTES, SIZE_CONTENT_TYPE,
};
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, FailedToBufferBody};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use std::sync::Arc;
use std::time::Duration;

/// The witness's HTTP routes, with the body cap and `request_timeout`.
pub fn router(witness: Arc<Witness>, request_timeout: Duration) -> Router {
    Router::new()
        .route(&format!("/{ADD_CHECKPOINT_PATH}"), post(add_checkpoint))
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES))
        .layer(middleware::from_fn(move |request: Request, next: Next| {
            within(request_timeout, request, next)
        }))
        .with_state(witness)
}

async fn add_checkpoint(
    State(witness): State<Arc<Witness>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(BytesRejection::FailedToBufferBody(FailedToBufferBody::LengthLimitError(_))) => {
            return text(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body: more than the {MAX_REQUEST_BYTES} bytes allowed"),
            )
        }
        Err(e) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("request body: cannot read it: {e}"),
            )
        }
    };
    match witness.add_checkpoint(&body).await {
        Ok(cosignatures) => (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            cosignatures,
        )
            .into_response(),
        Err(Refusal::StaleOldSize { cosigned, .. }) => (
            StatusCode::CONFLICT,
            [(header::CONTENT_TYPE, SIZE_CONTENT_TYPE)],
            encode_size(cosigned),
        )
            .into_response(),
        Err(refusal) => {
            let status =
                StatusCode::from_u16(refusal.code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            text(status, refusal.to_string())
        }
    }
}

/// Answers 408 if the request, reading its body included, takes longer
/// than `limit`. A cosignature already being written is not abandoned:
/// [`Witness::add_checkpoint`] finishes it in its own task.
async fn within(limit: Duration, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => text(
            StatusCode::REQUEST_TIMEOUT,
            format!("the request took longer than {} ms", limit.as_millis()),
        ),
    }
}

/// A one-line plain-text answer.
fn text(status: StatusCode, message: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{}\n", message.replace('\n', " ")),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::witness::test_support::{cosigner, log_key, TempDir, Tree};
    use crate::cosignature::verify_witnessed;
    use crate::witness_protocol::{parse_cosignatures, parse_size, AddCheckpointRequest};
    use std::io::{Read as _, Write as _};
    use std::net::SocketAddr;

    /// One HTTP response, as read off the socket.
    #[derive(Debug)]
    struct Answer {
        status: u16,
        content_type: Option<String>,
        body: Vec<u8>,
    }

    impl Answer {
        fn text(&self) -> &str {
            std::str::from_utf8(&self.body).unwrap()
        }
    }

    /// Serves a fresh witness over `dir` on 127.0.0.1.
    async fn serve(dir: &TempDir, timeout: Duration) -> SocketAddr {
        let witness =
            Witness::open(cosigner(), vec![log_key().verifier_key()], dir.path()).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = axum::serve(listener, router(Arc::new(witness), timeout));
        tokio::spawn(std::future::IntoFuture::into_future(server));
        addr
    }

    /// Sends `head` and `body` as written, then reads the whole answer (the
    /// request asks the server to close the connection).
    async fn exchange(addr: SocketAddr, head: String, body: Vec<u8>) -> Answer {
        tokio::task::spawn_blocking(move || {
            let mut stream = std::net::TcpStream::connect(addr).unwrap();
            stream.write_all(head.as_bytes()).unwrap();
            // The server may answer (413) and close before reading it all.
            let _ = stream.write_all(&body);
            let mut raw = Vec::new();
            stream.read_to_end(&mut raw).unwrap();
            parse_answer(&raw)
        })
        .await
        .unwrap()
    }

    async fn post(addr: SocketAddr, body: Vec<u8>) -> Answer {
        let head = format!(
            "POST /add-checkpoint HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n",
            body.len()
        );
        exchange(addr, head, body).await
    }

    fn parse_answer(raw: &[u8]) -> Answer {
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = std::str::from_utf8(&raw[..split]).unwrap();
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let content_type = lines
            .filter_map(|line| line.split_once(": "))
            .find(|(name, _)| name.eq_ignore_ascii_case("content-type"))
            .map(|(_, value)| value.to_owned());
        Answer {
            status,
            content_type,
            body: raw[split + 4..].to_vec(),
        }
    }

    #[tokio::test]
    async fn a_request_in_the_specs_example_format_gets_a_cosignature_clients_accept() {
        let dir = TempDir::new();
        let addr = serve(&dir, Duration::from_secs(10)).await;
        let tree = Tree::with_entries(300);
        assert_eq!(post(addr, tree.request(0, 100)).await.status, 200);
        // Written out as in c2sp.org/tlog-witness: the old size line, one
        // base64 hash per line, an empty line, then the signed checkpoint.
        let mut body = String::from("old 100\n");
        for hash in tree.proof(100, 300) {
            body.push_str(&format!("{hash}\n"));
        }
        body.push('\n');
        let note = tree.signed(300).note;
        body.push_str(std::str::from_utf8(&note).unwrap());
        let answer = post(addr, body.clone().into_bytes()).await;
        assert_eq!(answer.status, 200, "{}", answer.text());
        let line = answer.text();
        assert!(line.starts_with("— witness.example.test ") && line.ends_with('\n'));
        assert_eq!(line.matches('\n').count(), 1, "one cosignature line");
        let request = AddCheckpointRequest::parse(body.as_bytes()).unwrap();
        let cosignatures =
            parse_cosignatures(&answer.body, &request, &cosigner().verifier_key()).unwrap();
        assert_eq!(cosignatures.len(), 1);
        // As the spec suggests, a client may append the answer to the note
        // and verify it with the witness keys it trusts.
        let witnessed = [note, answer.body].concat();
        let verified = verify_witnessed(
            &witnessed,
            &log_key().verifier_key(),
            &[cosigner().verifier_key()],
            1,
        )
        .unwrap();
        assert_eq!(verified.checkpoint.checkpoint.size, 300);
        assert_eq!(verified.cosignatures, cosignatures);
    }

    #[tokio::test]
    async fn each_refusal_has_its_status_and_a_one_line_reason() {
        let dir = TempDir::new();
        let addr = serve(&dir, Duration::from_secs(10)).await;
        let (tree, fork) = (Tree::with_entries(20), Tree::forked(20, "fork "));
        assert_eq!(post(addr, tree.request(0, 5)).await.status, 200);

        let stale = post(addr, tree.request(0, 9)).await;
        assert_eq!(stale.status, 409);
        assert_eq!(stale.content_type.as_deref(), Some(SIZE_CONTENT_TYPE));
        assert_eq!(stale.body, b"5\n");
        assert_eq!(parse_size(&stale.body), Ok(5));

        let forked = post(addr, fork.request(5, 5)).await;
        assert_eq!(forked.status, 409);
        assert_eq!(
            forked.content_type.as_deref(),
            Some("text/plain; charset=utf-8"),
            "a fork is not a stale size a client could retry from"
        );
        assert_eq!(
            forked.text(),
            "the checkpoint of size 5 has another root than the checkpoint of that size \
             this witness cosigned\n"
        );

        let inconsistent = post(addr, fork.request(5, 9)).await;
        assert_eq!(inconsistent.status, 422);
        let reason = inconsistent.text();
        assert!(
            reason.starts_with(
                "the tree of size 9 does not extend the signed tree of size 5: by the \
                 consistency proof, its first 5 leaves have root "
            ),
            "{reason}"
        );
        assert_eq!(reason.lines().count(), 1, "{reason}");

        let beyond = AddCheckpointRequest::new(6, vec![], tree.signed(5).note).unwrap();
        let answer = post(addr, beyond.to_body()).await;
        assert_eq!(answer.status, 400);
        assert_eq!(
            answer.text(),
            "old size 6 is larger than the checkpoint's size 5\n"
        );

        let garbage = post(addr, b"hello\n".to_vec()).await;
        assert_eq!(garbage.status, 400);
        assert_eq!(
            garbage.text(),
            "malformed old size line: it does not start with \"old \"\n"
        );

        let other = crate::keys::SigningKey::from_seed("other.example/log", [3; 32]).unwrap();
        let note = crate::checkpoint::Checkpoint {
            origin: "other.example/log".into(),
            size: 1,
            root: tree.root(1),
        }
        .sign(&other);
        let unknown = post(
            addr,
            AddCheckpointRequest::new(0, vec![], note)
                .unwrap()
                .to_body(),
        )
        .await;
        assert_eq!(unknown.status, 404);
        assert_eq!(
            unknown.text(),
            "origin \"other.example/log\" is not a log this witness witnesses\n"
        );

        let impostor =
            crate::keys::SigningKey::from_seed(crate::cli::witness::test_support::ORIGIN, [4; 32])
                .unwrap();
        let forged = crate::checkpoint::Checkpoint {
            origin: crate::cli::witness::test_support::ORIGIN.into(),
            size: 9,
            root: tree.root(9),
        }
        .sign(&impostor);
        let forbidden = post(
            addr,
            AddCheckpointRequest::new(5, tree.proof(5, 9), forged)
                .unwrap()
                .to_body(),
        )
        .await;
        assert_eq!(forbidden.status, 403);
        assert_eq!(
            forbidden.text(),
            format!(
                "no signature by the log key {}\n",
                log_key().verifier_key().key_id()
            )
        );

        // None of these moved the witness: it still answers from size 5.
        assert_eq!(post(addr, tree.request(5, 9)).await.status, 200);
    }

    #[tokio::test]
    async fn a_body_over_the_cap_is_refused_unread_and_changes_nothing() {
        let dir = TempDir::new();
        let addr = serve(&dir, Duration::from_secs(10)).await;
        let tree = Tree::with_entries(3);
        let mut body = tree.request(0, 3);
        body.resize(MAX_REQUEST_BYTES + 1, b'\n');
        let answer = post(addr, body).await;
        assert_eq!(answer.status, 413);
        assert_eq!(
            answer.text(),
            format!("request body: more than the {MAX_REQUEST_BYTES} bytes allowed\n")
        );
        let fits = post(addr, tree.request(0, 3)).await;
        assert_eq!(fits.status, 200, "{}", fits.text());
    }

    #[tokio::test]
    async fn a_client_that_stalls_mid_body_gets_408() {
        let dir = TempDir::new();
        let addr = serve(&dir, Duration::from_millis(200)).await;
        let head = format!(
            "POST /add-checkpoint HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 500\r\n\
             Connection: close\r\n\r\n"
        );
        let started = std::time::Instant::now();
        let answer = exchange(addr, head, b"old 0\n".to_vec()).await;
        assert_eq!(answer.status, 408);
        assert_eq!(answer.text(), "the request took longer than 200 ms\n");
        assert!(started.elapsed() >= Duration::from_millis(200));
    }

    #[tokio::test]
    async fn only_post_is_served() {
        let dir = TempDir::new();
        let addr = serve(&dir, Duration::from_secs(10)).await;
        let head =
            format!("GET /add-checkpoint HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        assert_eq!(exchange(addr, head, Vec::new()).await.status, 405);
        let head = format!("POST /checkpoint HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        assert_eq!(exchange(addr, head, Vec::new()).await.status, 404);
    }
}
