//! The client against tiny servers over real HTTP.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use axum::{extract::Query, http::StatusCode, response::IntoResponse, routing::get, Router};
use futures::TryStreamExt;
use secrecy::SecretString;
use serde_json::json;

use super::*;

async fn serve(app: Router) -> Url {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/api/v2").parse().unwrap()
}

fn client(base_url: Url) -> ApiClient {
    ApiClient::new(ClientConfig {
        base_url,
        public_key: "pk_test".into(),
        private_key: SecretString::from("sk_secret_value"),
        requests_per_second: 0.0,
        timeout: Duration::from_millis(500),
        max_retries: 3,
        min_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(5),
        page_size: 2,
        user_agent: "test".into(),
    })
    .unwrap()
}

/// Answers each call with the next of `answers` (the last one repeats).
fn scripted(answers: Vec<(u16, Option<&'static str>, String)>) -> (Router, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let answers = Arc::new(answers);
    let app = Router::new().route(
        "/api/v2/deals",
        get(move || {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            let answers = answers.clone();
            async move {
                let (status, retry_after, body) = answers[n.min(answers.len() - 1)].clone();
                let mut response = (StatusCode::from_u16(status).unwrap(), body).into_response();
                if let Some(r) = retry_after {
                    response.headers_mut().insert("retry-after", r.parse().unwrap());
                }
                response
            }
        }),
    );
    (app, calls)
}

const OK: &str = r#"{"data": {"items": [{"key": "deal_1"}], "has_more": false}, "message": "ok", "status": 200}"#;

#[tokio::test]
async fn list_follows_has_more_with_the_last_key_and_sends_basic_auth() {
    let app = Router::new().route(
        "/api/v2/deals",
        get(|headers: axum::http::HeaderMap, Query(q): Query<std::collections::HashMap<String, String>>| async move {
            let auth = headers.get("authorization").unwrap().to_str().unwrap().to_owned();
            assert_eq!(
                auth,
                format!("Basic {}", base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "pk_test:sk_secret_value"))
            );
            let body = match q.get("starting_after").map(String::as_str) {
                None => json!({"data": {"items": [{"key": "a"}, {"key": "b"}], "has_more": true}}),
                Some("b") => json!({"data": {"items": [{"key": "c"}]}}),
                Some(other) => panic!("unexpected cursor {other}"),
            };
            axum::Json(body)
        }),
    );
    let api = client(serve(app).await);
    let pages: Vec<Page> = api.list("deals", ListQuery::default()).try_collect().await.unwrap();
    let keys: Vec<&str> = pages.iter().flat_map(|p| p.items.iter().map(|i| i.get())).collect();
    assert_eq!(keys, [r#"{"key":"a"}"#, r#"{"key":"b"}"#, r#"{"key":"c"}"#]);
    assert!(!pages[1].has_more, "a missing has_more ends the listing");
    assert_eq!(api.requests_sent(), 2);
}

#[tokio::test]
async fn rate_limits_and_server_errors_are_retried_until_success() {
    let (app, calls) =
        scripted(vec![(429, Some("0"), "{}".into()), (429, None, "{}".into()), (503, None, "{}".into()), (200, None, OK.into())]);
    let api = client(serve(app).await);
    let page = api.list_page("deals", &ListQuery::default(), None).await.unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    let counts = api.request_counts();
    assert!(counts.contains(&("deals".into(), "429".into(), 2)), "{counts:?}");
}

#[tokio::test]
async fn retry_after_is_honoured_as_the_minimum_wait() {
    let (app, _) = scripted(vec![(429, Some("1"), "{}".into()), (200, None, OK.into())]);
    let api = client(serve(app).await);
    let started = std::time::Instant::now();
    api.list_page("deals", &ListQuery::default(), None).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(990), "waited {:?}", started.elapsed());
}

#[tokio::test]
async fn a_validation_error_fails_at_once_with_the_api_message() {
    let (app, calls) = scripted(vec![(400, None, r#"{"message": "'limit' must be at most 250", "status": 400}"#.into())]);
    let api = client(serve(app).await);
    let err = api.list_page("deals", &ListQuery::default(), None).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Skip);
    assert!(err.to_string().contains("'limit' must be at most 250"));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn bad_credentials_are_fatal_and_not_retried() {
    let (app, calls) = scripted(vec![(401, None, r#"{"message": "Unauthorized", "status": 401}"#.into())]);
    let api = client(serve(app).await);
    let err = api.list_page("deals", &ListQuery::default(), None).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Fatal);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(!format!("{err:?} {err}").contains("sk_secret_value"));
}

#[tokio::test]
async fn a_truncated_body_is_retried() {
    let (app, calls) = scripted(vec![(200, None, r#"{"data": {"items": [{"key": "#.into()), (200, None, OK.into())]);
    let api = client(serve(app).await);
    api.list_page("deals", &ListQuery::default(), None).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_server_that_never_answers_times_out_after_the_retries() {
    let app = Router::new().route("/api/v2/deals", get(|| async { std::future::pending::<&'static str>().await }));
    let api = client(serve(app).await);
    let err = api.list_page("deals", &ListQuery::default(), None).await.unwrap_err();
    assert!(matches!(err, ApiError::Timeout(_)), "{err:?}");
    assert_eq!(api.requests_sent(), 4, "one try and three retries");
}

#[tokio::test]
async fn creates_are_never_retried_by_the_client() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let app = Router::new().route(
        "/api/v2/deals",
        axum::routing::post(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async { StatusCode::SERVICE_UNAVAILABLE }
        }),
    );
    let api = client(serve(app).await);
    let err = api.request_json(Method::POST, "deals", Some(&json!({"stage": "x"})), false).await.unwrap_err();
    assert_eq!(err.status(), Some(503));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn the_client_side_rate_limit_spaces_requests() {
    let (app, _) = scripted(vec![(200, None, OK.into())]);
    let mut config = client(serve(app).await).inner.config.clone();
    config.requests_per_second = 20.0;
    let api = ApiClient::new(config).unwrap();
    let started = std::time::Instant::now();
    for _ in 0..30 {
        api.list_page("deals", &ListQuery::default(), None).await.unwrap();
    }
    // A burst of 20, then 10 more at 20 per second.
    assert!(started.elapsed() >= Duration::from_millis(450), "{:?}", started.elapsed());
}

#[test]
fn debug_output_never_shows_the_private_key() {
    let api = client("http://127.0.0.1:1/api/v2".parse().unwrap());
    let text = format!("{api:?} {:?}", api.inner.config);
    assert!(!text.contains("sk_secret_value"), "{text}");
    assert!(text.contains("pk_test"));
}

#[test]
fn endpoint_labels_fold_record_keys() {
    assert_eq!(endpoint("deals"), "deals");
    assert_eq!(endpoint("deals/deal_1/convert"), "deals/{key}/convert");
    assert_eq!(endpoint("partner-team/stck_9"), "partner-team/{key}");
    assert_eq!(endpoint("deals/d/file/f"), "deals/{key}/file/{key}");
}

#[test]
fn retry_after_reads_seconds_and_dates() {
    assert_eq!(parse_retry_after("2"), Some(Duration::from_secs(2)));
    assert!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT").is_some());
    assert_eq!(parse_retry_after("soon"), None);
}
