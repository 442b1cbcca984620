//! The operations endpoint on `http.listen`: `/healthz` (the process answers), `/readyz`
//! (database reachable, migrations current, every object synced within its freshness bound)
//! and `/metrics` (Prometheus text).

use std::{sync::Arc, time::Duration};

use axum::{extract::State, http::StatusCode, response::IntoResponse, routing::get, Json, Router};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    metrics::{self, RequestCounts},
    object::{ChangeFilter, ObjectKind},
    store::Store,
    sync::Progress,
};

/// What the endpoint reads.
#[derive(Clone)]
pub struct Endpoint {
    pub store: Store,
    pub progress: Arc<Progress>,
    pub requests: Arc<dyn Fn() -> RequestCounts + Send + Sync>,
    /// An object whose last successful pass is older than this is stale.
    pub freshness: Duration,
    pub objects: Vec<ObjectKind>,
}

/// Serves until `shutdown`.
pub async fn serve(listener: TcpListener, endpoint: Endpoint, shutdown: CancellationToken) -> std::io::Result<()> {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(endpoint);
    axum::serve(listener, app).with_graceful_shutdown(async move { shutdown.cancelled().await }).await
}

async fn readyz(State(e): State<Endpoint>) -> impl IntoResponse {
    let mut problems: Vec<String> = Vec::new();
    match e.store.migrations_current().await {
        Ok(true) => {}
        Ok(false) => problems.push("migrations are not current (run `partnerstack-mirror migrate`)".into()),
        Err(err) => problems.push(format!("database unreachable: {err}")),
    }
    if problems.is_empty() {
        match e.store.metrics_snapshot().await {
            Ok(snapshot) => {
                for kind in e.objects.iter().filter(|k| k.change_filter() != ChangeFilter::PerTeam) {
                    let age = snapshot.objects.iter().find(|o| o.object == kind.table()).and_then(|o| o.last_success_age_seconds);
                    match age {
                        None => problems.push(format!("{kind}: never synced")),
                        Some(age) if age > e.freshness.as_secs_f64() => {
                            problems.push(format!("{kind}: last successful pass {age:.0}s ago, over the {}s bound", e.freshness.as_secs()))
                        }
                        Some(_) => {}
                    }
                }
            }
            Err(err) => problems.push(format!("database unreachable: {err}")),
        }
    }
    let status = if problems.is_empty() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(json!({"ready": problems.is_empty(), "problems": problems})))
}

async fn metrics(State(e): State<Endpoint>) -> impl IntoResponse {
    match e.store.metrics_snapshot().await {
        Ok(snapshot) => (
            StatusCode::OK,
            [("content-type", "application/openmetrics-text; version=1.0.0; charset=utf-8")],
            metrics::render(&e.progress, &(e.requests)(), &snapshot),
        )
            .into_response(),
        Err(err) => (StatusCode::SERVICE_UNAVAILABLE, format!("database unreachable: {err}\n")).into_response(),
    }
}
