//! The operations endpoint on `http.listen`: `/healthz` (the process answers), `/readyz`
//! (database reachable, migrations current, credentials accepted, every object synced within
//! its freshness bound) and `/metrics` (Prometheus text), which answers even while the
//! database is down: that is when operators look.

use std::{sync::Arc, time::Duration};

use axum::{
    body::Body,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    intake::{payload, IntakeCounters},
    metrics::{Format, Metrics},
    object::{ChangeFilter, ObjectKind},
    partnerstack::ApiClient,
    store::Store,
};

/// How long a scrape waits for the database before answering without its gauges.
const DATABASE_WAIT: Duration = Duration::from_secs(2);
/// The largest webhook body kept (PartnerStack's are a few kilobytes).
const MAX_WEBHOOK_BYTES: usize = 1 << 20;

/// What the endpoint reads.
#[derive(Clone)]
pub struct Endpoint {
    pub store: Store,
    pub api: ApiClient,
    /// The process's one registry.
    pub metrics: Arc<Metrics>,
    /// An object whose last successful pass is older than this is stale.
    pub freshness: Duration,
    pub objects: Vec<ObjectKind>,
    /// PartnerStack webhooks in; `None`: the route answers 404.
    pub intake: Option<WebhookIntake>,
}

/// What the webhook route needs.
#[derive(Clone)]
pub struct WebhookIntake {
    /// The secret path segment.
    pub token: SecretString,
    pub counters: IntakeCounters,
    /// Wakes the inbox worker once a webhook is kept.
    pub wake: Arc<tokio::sync::Notify>,
}

/// Serves until `shutdown`.
pub async fn serve(listener: TcpListener, endpoint: Endpoint, shutdown: CancellationToken) -> std::io::Result<()> {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/webhooks/partnerstack/{token}", post(webhook))
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
///
/// Prometheus' classic text format unless the scraper asks for OpenMetrics (Prometheus itself
/// does).
async fn metrics(State(e): State<Endpoint>, headers: axum::http::HeaderMap) -> impl IntoResponse {
    let snapshot = match tokio::time::timeout(DATABASE_WAIT, e.store.metrics_snapshot()).await {
        Ok(Ok(snapshot)) => Some(snapshot),
        Ok(Err(err)) => {
            tracing::debug!(error = %crate::telemetry::error_chain(&err), "/metrics without the database's gauges");
            None
        }
        Err(_) => None,
    };
    let accept = headers.get(axum::http::header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    let format = Format::accepted(accept);
    (StatusCode::OK, [("content-type", format.content_type())], e.metrics.render(snapshot, format))
}

/// `POST /webhooks/partnerstack/{token}`: a wrong token answers 404 (as if nothing were
/// here), a body over 1 MiB 413, a body that is not JSON 400; of a rejected request nothing is
/// kept and only its size and reason are logged. An accepted body is kept in `webhook_inbox`
/// and answered 200 only once that has committed, so PartnerStack's own retries cover a
/// crash of ours; a database error answers 503 for the same reason.
async fn webhook(State(e): State<Endpoint>, Path(token): Path<String>, body: Body) -> Response {
    let Some(intake) = e.intake.as_ref().filter(|i| same_secret(token.as_bytes(), i.token.expose_secret().as_bytes())) else {
        if let Some(i) = &e.intake {
            i.counters.received.add("wrong_token", 1);
        }
        tracing::debug!(reason = "wrong token", "webhook rejected");
        return StatusCode::NOT_FOUND.into_response();
    };
    let bytes = match axum::body::to_bytes(body, MAX_WEBHOOK_BYTES).await {
        Ok(bytes) => bytes,
        Err(_) => {
            intake.counters.received.add("too_large", 1);
            tracing::info!(limit = MAX_WEBHOOK_BYTES, reason = "body over the limit", "webhook rejected");
            let said = format!("the body is over the limit of {MAX_WEBHOOK_BYTES} bytes");
            return (StatusCode::PAYLOAD_TOO_LARGE, Json(json!({"message": said, "status": 413}))).into_response();
        }
    };
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        intake.counters.received.add("not_json", 1);
        tracing::info!(size = bytes.len(), reason = "not JSON", "webhook rejected");
        return (StatusCode::BAD_REQUEST, Json(json!({"message": "the body is not JSON", "status": 400}))).into_response();
    };
    let text = String::from_utf8_lossy(&bytes);
    match e.store.accept_webhook(payload::event_name(&value).as_deref(), &text).await {
        Ok(id) => {
            intake.counters.received.add("accepted", 1);
            intake.wake.notify_one();
            (StatusCode::OK, Json(json!({"received": id}))).into_response()
        }
        Err(err) => {
            tracing::warn!(error = %crate::telemetry::error_chain(&err), "webhook not kept; answering 503 so PartnerStack retries");
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"message": "the webhook could not be kept; send it again", "status": 503})))
                .into_response()
        }
    }
}

/// Compares two secrets in time that depends only on their lengths (`subtle`, already in the
/// tree through the TLS and HMAC crates).
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    subtle::ConstantTimeEq::ct_eq(given, expected).into()
}
