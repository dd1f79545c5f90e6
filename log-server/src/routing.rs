//! What the log's one port answers: the gRPC services, only as gRPC calls
//! with well-framed bodies ([`verifier::grpc_routes`]); `/checkpoint` and
//! `/tile/…`, the tiles API ([`crate::http`]); and 404 for anything else.

use crate::log::Log;
use axum::Router;
use std::sync::Arc;
use verifier::grpc_routes::{calls_only, with_not_found};

/// The gRPC routes (`grpc`, from tonic) and the tiles for `log`, as one
/// router.
pub fn app(grpc: Router, log: Arc<Log>) -> Router {
    with_not_found(calls_only(grpc).merge(crate::http::routes(log)))
}
