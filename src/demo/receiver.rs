//! The demo's webhook receiver: a route on a loopback port that checks each webhook's
//! Standard Webhooks signature, as a real receiver must, and counts what arrives.

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc, Mutex,
};

use axum::{body::Bytes, extract::State, http::HeaderMap, http::StatusCode, routing::post, Router};
use tokio_util::sync::CancellationToken;

use crate::delivery::Signer;

/// What arrived so far.
#[derive(Debug, Default)]
pub struct Received {
    pub verified: AtomicU64,
    pub rejected: AtomicU64,
    /// The last `deal.stage_updated`: the deal and its new stage.
    pub last_stage_change: Mutex<Option<String>>,
}

struct Receiver {
    signer: Signer,
    received: Arc<Received>,
}

/// Serves `POST /webhooks` on `listener` until `shutdown`.
pub fn start(listener: tokio::net::TcpListener, signer: Signer, shutdown: CancellationToken) -> Arc<Received> {
    let received = Arc::new(Received::default());
    let app = Router::new().route("/webhooks", post(receive)).with_state(Arc::new(Receiver { signer, received: received.clone() }));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).with_graceful_shutdown(async move { shutdown.cancelled().await }).await;
    });
    received
}

async fn receive(State(r): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let body = String::from_utf8_lossy(&body);
    let timestamp: i64 = header("webhook-timestamp").parse().unwrap_or(0);
    // A receiver also refuses stale timestamps (replays); five minutes is the spec's tolerance.
    let fresh = (chrono::Utc::now().timestamp() - timestamp).abs() <= 300;
    if !fresh || !r.signer.verify(header("webhook-id"), timestamp, &body, header("webhook-signature")) {
        r.received.rejected.fetch_add(1, Ordering::Relaxed);
        return StatusCode::UNAUTHORIZED;
    }
    r.received.verified.fetch_add(1, Ordering::Relaxed);
    if let Ok(event) = serde_json::from_str::<serde_json::Value>(&body) {
        if event["event_type"] == "deal.stage_updated" {
            let stage = event["changes"]["stage"]["new"].as_str().unwrap_or("?");
            let deal = event["object_key"].as_str().unwrap_or("?");
            *r.received.last_stage_change.lock().expect("no panics while holding it") = Some(format!("{deal} → {stage}"));
        }
    }
    StatusCode::NO_CONTENT
}
