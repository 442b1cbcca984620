//! A tiny webhook receiver on 127.0.0.1:0 that keeps every POST it gets, and the helpers
//! the webhook tests share.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    body::Bytes,
    extract::State,
    http::{header, HeaderMap, StatusCode},
    Router,
};
use reqwest::Method;
use serde_json::{json, Value};
use tokio::task::JoinHandle;

use super::call;
use crate::RunningSimulator;

/// One webhook as it arrived.
#[derive(Clone, Debug)]
pub(super) struct Received {
    pub content_type: String,
    pub body: Value,
    pub at: Instant,
}

impl Received {
    pub fn event(&self) -> &str {
        self.body["event"].as_str().unwrap_or_default()
    }

    /// The record's key in a current-style body.
    pub fn data_key(&self) -> &str {
        self.body["data"]["key"].as_str().unwrap_or_default()
    }
}

type Log = Arc<Mutex<Vec<Received>>>;

pub(super) struct Receiver {
    pub url: String,
    log: Log,
    task: JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    /// A receiver answering every POST with `status`.
    pub async fn start(status: StatusCode) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/webhooks/partnerstack/secret-token", listener.local_addr().unwrap());
        let log = Log::default();
        let app = Router::new().fallback(keep).with_state((log.clone(), status));
        let task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver { url, log, task }
    }

    pub fn got(&self) -> Vec<Received> {
        self.log.lock().unwrap().clone()
    }

    /// Waits (10 s at most) until what arrived satisfies `condition`; what arrived.
    pub async fn wait_until(&self, what: &str, condition: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let got = self.got();
            if condition(&got) {
                return got;
            }
            assert!(Instant::now() < deadline, "{what} within 10 s; got {:?}", got.iter().map(|r| &r.body).collect::<Vec<_>>());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until `n` webhooks arrived.
    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        self.wait_until(&format!("{n} webhooks"), |got| got.len() >= n).await
    }
}

async fn keep(State((log, status)): State<(Log, StatusCode)>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    log.lock().unwrap().push(Received { content_type, body, at: Instant::now() });
    status
}

/// Subscribes `target` to `events` over the API; the subscription's key.
pub(super) async fn subscribe(sim: &RunningSimulator, target: &str, events: &[&str]) -> String {
    let reply = call(sim, Method::POST, "webhooks", Some(json!({"target": target, "events": events}))).await;
    assert_eq!(reply.status, reqwest::StatusCode::OK, "{}", reply.body);
    reply.body["data"]["key"].as_str().unwrap().to_owned()
}
