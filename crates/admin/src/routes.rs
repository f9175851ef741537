//! What each admin path answers.
//!
//! Owns the mapping from a request line to a response: `GET`/`HEAD` on `/metrics`,
//! `/healthz` and `/readyz`; 405 with `Allow` for other methods on those paths; 404
//! elsewhere. Query strings are ignored. Request bodies are never read. It does not own
//! connections or timeouts (`server`).

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use pgcordon_metrics::{Metrics, TEXT_FORMAT};

use crate::readiness::{Readiness, ReadinessCheck};

/// What the routes read: the metrics and the caller's readiness.
pub(crate) struct AdminState {
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) readiness: Arc<dyn ReadinessCheck>,
}

const PLAIN: &str = "text/plain; charset=utf-8";

/// Answers one request; never fails (errors become 5xx responses).
pub(crate) fn respond<B>(state: &AdminState, request: &Request<B>) -> Response<Full<Bytes>> {
    let path = request.uri().path();
    if !matches!(path, "/metrics" | "/healthz" | "/readyz") {
        return text(
            StatusCode::NOT_FOUND,
            "not found; try /metrics, /healthz or /readyz\n",
        );
    }
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    match path {
        "/metrics" => metrics(state),
        "/healthz" => text(StatusCode::OK, "ok\n"),
        _ => readiness(state),
    }
}

fn metrics(state: &AdminState) -> Response<Full<Bytes>> {
    match state.metrics.try_render() {
        Ok(body) => with_type(StatusCode::OK, TEXT_FORMAT, body),
        Err(error) => {
            tracing::error!(%error, "cannot render metrics");
            text(StatusCode::INTERNAL_SERVER_ERROR, "cannot render metrics\n")
        }
    }
}

fn readiness(state: &AdminState) -> Response<Full<Bytes>> {
    match state.readiness.readiness() {
        Readiness::Ready => text(StatusCode::OK, "ready\n"),
        Readiness::NotReady(reason) => with_type(
            StatusCode::SERVICE_UNAVAILABLE,
            PLAIN,
            format!("not ready: {reason}\n"),
        ),
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    with_type(status, PLAIN, body)
}

fn with_type(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Probes and scrapes must see the state now, never a cached answer.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
