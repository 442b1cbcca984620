//! The operations endpoint on `http.listen`: `/healthz` (the process answers), `/readyz`
//! (database reachable, migrations current, credentials accepted, every object synced within
//! its freshness bound) and `/metrics` (Prometheus text), which answers even while the
//! database is down: that is when operators look.

use std::{sync::Arc, time::Duration};

use axum::{extract::State, http::StatusCode, response::IntoResponse, routing::get, Json, Router};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    delivery::DeliveryCounters,
    metrics::{self, ProcessView},
    object::{ChangeFilter, ObjectKind},
    partnerstack::ApiClient,
    progress::Progress,
    queue::WorkerCounters,
    store::Store,
};

/// How long a scrape waits for the database before answering without its gauges.
const DATABASE_WAIT: Duration = Duration::from_secs(2);

/// What the endpoint reads.
#[derive(Clone)]
pub struct Endpoint {
    pub store: Store,
    pub progress: Arc<Progress>,
    pub api: ApiClient,
    pub queue: Arc<WorkerCounters>,
    pub deliveries: DeliveryCounters,
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
    if let Some(r) = e.api.credentials_rejected() {
        problems.push(format!(
            "PartnerStack rejected the credentials ({}) since {} UTC: {}; sync and write-back are paused until it accepts them",
            r.status,
            r.since.format("%Y-%m-%d %H:%M:%S"),
            r.message
        ));
    }
    match tokio::time::timeout(DATABASE_WAIT, e.store.migrations_current()).await {
        Ok(Ok(true)) => {}
        Ok(Ok(false)) => problems.push("migrations are not current (run `partnerstack-mirror migrate`)".into()),
        Ok(Err(err)) => problems.push(format!("database unreachable: {}", crate::telemetry::error_chain(&err))),
        Err(_) => problems.push(format!("database unreachable: no answer within {}s", DATABASE_WAIT.as_secs())),
    }
    if !problems.iter().any(|p| p.starts_with("database") || p.starts_with("migrations")) {
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
            Err(err) => problems.push(format!("database unreachable: {}", crate::telemetry::error_chain(&err))),
        }
    }
    let status = if problems.is_empty() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(json!({"ready": problems.is_empty(), "problems": problems})))
}

/// Always 200: what the process knows by itself is rendered, and the gauges read from the
/// database are left out (not made up) when it does not answer in time.
async fn metrics(State(e): State<Endpoint>) -> impl IntoResponse {
    let snapshot = match tokio::time::timeout(DATABASE_WAIT, e.store.metrics_snapshot()).await {
        Ok(Ok(snapshot)) => Some(snapshot),
        Ok(Err(err)) => {
            tracing::debug!(error = %crate::telemetry::error_chain(&err), "/metrics without the database's gauges");
            None
        }
        Err(_) => None,
    };
    let view = ProcessView { progress: &e.progress, api: &e.api, queue: &e.queue, deliveries: &e.deliveries };
    (
        StatusCode::OK,
        [("content-type", "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        metrics::render(&view, snapshot.as_ref()),
    )
}
