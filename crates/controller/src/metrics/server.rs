//! The HTTP listeners: `/metrics` on the metrics port (Karpenter's `METRICS_PORT`, 8080), and
//! `/healthz` and `/readyz` on the health-probe port (`HEALTH_PROBE_PORT`, 8081).

use axum::{
    Router,
    http::{HeaderMap, StatusCode, header},
    response::IntoResponse,
    routing::get,
};
use tokio::net::TcpListener;

use super::{Readiness, global, text};

/// Karpenter's default metrics port.
pub const DEFAULT_METRICS_PORT: u16 = 8080;
/// Karpenter's default health-probe port.
pub const DEFAULT_HEALTH_PROBE_PORT: u16 = 8081;

/// `/metrics`.
pub fn metrics_router() -> Router {
    Router::new().route("/metrics", get(metrics))
}

/// `/healthz` and `/readyz`.
pub fn probes_router() -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

/// Serves `/metrics` on `listener` until accepting fails.
pub async fn serve_metrics(listener: TcpListener) -> std::io::Result<()> {
    axum::serve(listener, metrics_router()).await
}

/// Serves `/healthz` and `/readyz` on `listener` until accepting fails.
pub async fn serve_probes(listener: TcpListener) -> std::io::Result<()> {
    axum::serve(listener, probes_router()).await
}

/// Serves all three on one listener (when the metrics and probe ports are the same).
pub async fn serve_all(listener: TcpListener) -> std::io::Result<()> {
    axum::serve(listener, metrics_router().merge(probes_router())).await
}

async fn metrics(headers: HeaderMap) -> impl IntoResponse {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let openmetrics = global().encode_openmetrics();
    if text::wants_openmetrics(accept) {
        (
            [(header::CONTENT_TYPE, text::OPENMETRICS_CONTENT_TYPE)],
            openmetrics,
        )
    } else {
        (
            [(header::CONTENT_TYPE, text::PROMETHEUS_CONTENT_TYPE)],
            text::to_prometheus(&openmetrics),
        )
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz() -> (StatusCode, String) {
    match global().health().readiness().await {
        Readiness::Ready => (StatusCode::OK, "ok\n".to_owned()),
        Readiness::NotReady(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}\n")),
    }
}
