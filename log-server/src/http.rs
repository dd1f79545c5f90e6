//! The C2SP tlog-tiles read API, over HTTP/1.1 and HTTP/2 on the gRPC port.
//!
//! - `GET /checkpoint`: the served checkpoint ([`Log::served`]: the latest,
//!   or with witnesses the latest witnessed one and its cosignatures),
//!   cacheable briefly.
//! - `GET /tile/<L>/<N>[.p/<W>]` and `GET /tile/entries/<N>[.p/<W>]`: full
//!   tiles never change, so they are served `immutable` for a year; partial
//!   tiles only briefly. A malformed path is 400, a tile outside the
//!   published tree 404.

use crate::log::{Log, ReadError};
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::sync::Arc;
use verifier::tiles::TileId;

/// `Cache-Control` for immutable full tiles.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// `Cache-Control` for the checkpoint and partial tiles, which are replaced
/// as the log grows.
const SHORT_LIVED: &str = "public, max-age=1";

/// The tiles routes for `log`.
pub fn routes(log: Arc<Log>) -> Router {
    Router::new()
        .route("/checkpoint", get(checkpoint))
        .route("/tile/{*path}", get(tile))
        .with_state(log)
}

async fn checkpoint(State(log): State<Arc<Log>>) -> Response {
    let note = log.served().note.clone();
    respond(
        StatusCode::OK,
        "text/plain; charset=utf-8",
        SHORT_LIVED,
        note.into_bytes(),
    )
}

async fn tile(State(log): State<Arc<Log>>, Path(path): Path<String>) -> Response {
    let full_path = format!("tile/{path}");
    let Ok(tile) = TileId::parse(&full_path) else {
        return text(
            StatusCode::BAD_REQUEST,
            format!("malformed tile path: /{full_path}"),
        );
    };
    let read = tokio::task::spawn_blocking(move || log.tile(tile)).await;
    match read {
        Ok(Ok(bytes)) => {
            let cache = if tile.is_full() {
                IMMUTABLE
            } else {
                SHORT_LIVED
            };
            respond(StatusCode::OK, "application/octet-stream", cache, bytes)
        }
        Ok(Err(ReadError::NotFound(message) | ReadError::OutOfRange(message))) => {
            text(StatusCode::NOT_FOUND, message)
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, path = full_path, "tile read failed");
            text(StatusCode::INTERNAL_SERVER_ERROR, "storage error".into())
        }
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("tile task failed: {e}"),
        ),
    }
}

fn text(status: StatusCode, message: String) -> Response {
    respond(
        status,
        "text/plain; charset=utf-8",
        "no-store",
        format!("{message}\n").into_bytes(),
    )
}

fn respond(
    status: StatusCode,
    content_type: &'static str,
    cache: &'static str,
    body: Vec<u8>,
) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
        ],
        body,
    )
        .into_response()
}
