//! `GET /metrics`, `/healthz` and `/readyz` over plain HTTP: the probes for
//! when the gRPC port serves TLS (kubelet's gRPC probes speak plaintext).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::routing::get;

use super::Metrics;

/// Serves `/metrics`, `/healthz` (always ok) and `/readyz` (ok while
/// `ready` is true: every discovery source has listed, and not shutting
/// down) on `listener` until the process ends.
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    ready: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    let app = Router::new()
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move {
                    (
                        [(
                            http::header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        metrics.encode(),
                    )
                }
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let ready = *ready.borrow();
                async move {
                    if ready {
                        (http::StatusCode::OK, "ready\n")
                    } else {
                        (
                            http::StatusCode::SERVICE_UNAVAILABLE,
                            "not ready: a discovery source has not listed yet, or shutting down\n",
                        )
                    }
                }
            }),
        );
    if let Ok(address) = listener.local_addr() {
        let address: SocketAddr = address;
        tracing::info!(%address, "metrics listening");
    }
    axum::serve(listener, app).await
}
