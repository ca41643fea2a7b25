//! `GET /metrics` over plain HTTP.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::routing::get;

use super::Metrics;

/// Serves `/metrics` (and `/healthz`) on `listener` until the process ends.
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
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
        .route("/healthz", get(|| async { "ok\n" }));
    if let Ok(address) = listener.local_addr() {
        let address: SocketAddr = address;
        tracing::info!(%address, "metrics listening");
    }
    axum::serve(listener, app).await
}
