//! The client against tiny servers over real HTTP. Waits are checked through the client's
//! counters, never by timing the test, so a busy machine cannot make them flake.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use axum::{
    extract::Query,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{any, get},
    Router,
};
use futures::{StreamExt, TryStreamExt};
use secrecy::SecretString;
use serde_json::json;

use super::*;

mod boundary;
mod endpoints;

const PRIVATE_KEY: &str = "sk_secret_value";

async fn serve(app: Router) -> Url {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/api/v2").parse().unwrap()
}

fn config(base_url: Url) -> ClientConfig {
    ClientConfig {
        base_url,
        public_key: "pk_test".into(),
        private_key: SecretString::from(PRIVATE_KEY),
        rate_limit: RateLimit::Unlimited,
        timeout: Duration::from_secs(5),
        max_retries: 3,
        backoff: Backoff::new(Duration::from_millis(1), Duration::from_millis(5)),
        page_size: 2,
        user_agent: "partnerstack-mirror-test".into(),
    }
}

fn client(base_url: Url) -> ApiClient {
    ApiClient::new(config(base_url)).unwrap()
}

/// One canned answer: status, `Retry-After`, body.
type Reply = (u16, Option<&'static str>, &'static str);

/// Answers each call to `/api/v2/deals` (any method) with the next of `replies`; the last
/// one repeats. Returns the number of calls so far.
fn scripted(replies: Vec<Reply>) -> (Router, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let app = Router::new().route(
        "/api/v2/deals",
        any(move || {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            let (status, retry_after, body) = replies[n.min(replies.len() - 1)];
            async move {
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

async fn scripted_client(replies: Vec<Reply>) -> (ApiClient, Arc<AtomicUsize>) {
    let (app, calls) = scripted(replies);
    (client(serve(app).await), calls)
}

const DEALS: Collection = Collection::Objects(crate::object::ObjectKind::Deal);

const OK: &str = r#"{"data": {"items": [{"key": "deal_1"}], "has_more": false}, "message": "ok", "status": 200}"#;

async fn first_page(api: &ApiClient) -> Result<Page, ApiError> {
    api.list_page(&DEALS, &ListQuery::default(), None).await
}

#[tokio::test]
async fn every_request_carries_basic_auth_the_accept_header_and_the_list_filters() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let app = Router::new().route(
        "/api/v2/deals",
        get(move |headers: HeaderMap, Query(q): Query<HashMap<String, String>>| async move {
            record.lock().unwrap().push((headers, q));
            OK
        }),
    );
    let api = client(serve(app).await);
    let query = ListQuery { min_updated: Some(1_700_000_000_000), max_updated: Some(1_700_000_060_000), ..ListQuery::default() };
    let page = api.list_page(&DEALS, &query, Some("deal_0")).await.unwrap();

    let (headers, q) = seen.lock().unwrap().pop().unwrap();
    let expected = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, format!("pk_test:{PRIVATE_KEY}"));
    assert_eq!(headers["authorization"], format!("Basic {expected}").as_str());
    assert_eq!(headers["accept"], "application/json");
    assert_eq!(headers["user-agent"], "partnerstack-mirror-test");
    let q: Vec<_> = {
        let mut q: Vec<_> = q.into_iter().collect();
        q.sort();
        q
    };
    let expected = [("limit", "2"), ("max_updated", "1700000060000"), ("min_updated", "1700000000000"), ("starting_after", "deal_0")];
    assert_eq!(q, expected.map(|(k, v)| (k.to_owned(), v.to_owned())));
    assert!(page.server_date.is_some(), "the Date header is read");
}

#[tokio::test]
async fn list_follows_has_more_with_the_last_key_and_stops_after_the_last_page() {
    let app = Router::new().route(
        "/api/v2/deals",
        get(|Query(q): Query<HashMap<String, String>>| async move {
            let body = match q.get("starting_after").map(String::as_str) {
                None => json!({"data": {"items": [{"key": "a"}, {"key": "b"}], "has_more": true}}),
                Some("b") => json!({"data": {"items": [{"key": "c"}, {"key": "d"}], "has_more": true}}),
                Some("d") => json!({"data": {"items": [{"key": "e"}], "has_more": false}}),
                Some(other) => panic!("unexpected cursor {other}"),
            };
            axum::Json(body)
        }),
    );
    let api = client(serve(app).await);
    let pages: Vec<Page> = api.list(&DEALS, ListQuery::default()).try_collect().await.unwrap();
    let keys: Vec<&str> = pages.iter().flat_map(|p| p.items.iter().map(|i| i.get())).collect();
    assert_eq!(keys, [r#"{"key":"a"}"#, r#"{"key":"b"}"#, r#"{"key":"c"}"#, r#"{"key":"d"}"#, r#"{"key":"e"}"#]);
    assert_eq!(pages.iter().map(|p| p.last_key.as_deref().unwrap()).collect::<Vec<_>>(), ["b", "d", "e"]);
    assert_eq!(api.requests_sent(), 3);
}

#[tokio::test]
async fn a_missing_has_more_ends_the_listing() {
    let (api, calls) = scripted_client(vec![(200, None, r#"{"data": {"items": [{"key": "a"}, {"key": "b"}]}}"#)]).await;
    let pages: Vec<Page> = api.list(&DEALS, ListQuery::default()).try_collect().await.unwrap();
    assert_eq!(pages.len(), 1);
    assert!(!pages[0].has_more);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_page_that_claims_more_but_gives_no_cursor_ends_the_listing_with_an_error() {
    let (api, calls) = scripted_client(vec![(200, None, r#"{"data": {"items": [{"name": "no key"}], "has_more": true}}"#)]).await;
    let results: Vec<_> = api.list(&DEALS, ListQuery::default()).collect().await;
    assert_eq!(results.len(), 2, "the page, then the error");
    let err = results[1].as_ref().unwrap_err();
    assert!(matches!(err, ApiError::Pagination { .. }), "{err:?}");
    assert_eq!(err.class(), ErrorClass::Skip);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_429_with_retry_after_is_retried_after_at_least_that_wait() {
    let (api, calls) = scripted_client(vec![(429, Some("1"), "{}"), (200, None, OK)]).await;
    first_page(&api).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    let stats = api.stats();
    assert_eq!((stats.retries, stats.server_waits), (1, 1));
    assert!(stats.retry_wait >= Duration::from_secs(1), "waited {:?}, more than max_backoff as asked", stats.retry_wait);
}

#[tokio::test]
async fn a_503_with_retry_after_is_honoured_like_a_429() {
    let (api, calls) = scripted_client(vec![(503, Some("1"), r#"{"message": "maintenance"}"#), (200, None, OK)]).await;
    first_page(&api).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(api.stats().server_waits, 1);
    assert!(api.stats().retry_wait >= Duration::from_secs(1));
}

#[tokio::test]
async fn a_429_without_retry_after_is_retried_with_the_backoff() {
    let (api, calls) = scripted_client(vec![(429, None, "{}"), (429, None, "{}"), (200, None, OK)]).await;
    first_page(&api).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let stats = api.stats();
    assert_eq!((stats.retries, stats.server_waits), (2, 0));
    assert!(stats.retry_wait >= Duration::from_millis(2) && stats.retry_wait <= Duration::from_millis(10), "{:?}", stats.retry_wait);
    assert!(api.request_counts().contains(&("deals".into(), "429".into(), Purpose::Probe, 2)), "{:?}", api.request_counts());
}

#[tokio::test]
async fn a_500_then_a_200_succeeds() {
    let (api, calls) = scripted_client(vec![(500, None, r#"{"message": "oops", "status": 500}"#), (200, None, OK)]).await;
    let page = first_page(&api).await.unwrap();
    assert_eq!(page.last_key.as_deref(), Some("deal_1"));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn retries_give_up_after_max_retries_with_the_last_error() {
    let (api, calls) = scripted_client(vec![(502, None, "<html>bad gateway</html>")]).await;
    let err = first_page(&api).await.unwrap_err();
    assert!(matches!(err, ApiError::Server { status: 502, .. }), "{err:?}");
    assert_eq!(err.class(), ErrorClass::Retryable, "the caller may try again later");
    assert_eq!(calls.load(Ordering::SeqCst), 4, "one try and three retries");
}

#[tokio::test]
async fn a_validation_error_fails_at_once_with_the_api_message() {
    let (api, calls) = scripted_client(vec![(400, None, r#"{"message": "'limit' must be at most 250", "status": 400}"#)]).await;
    let err = first_page(&api).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Skip);
    assert!(matches!(&err, ApiError::Rejected { status: 400, message } if message == "'limit' must be at most 250"), "{err:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn bad_credentials_are_fatal_and_not_retried() {
    for status in [401, 403] {
        let (api, calls) = scripted_client(vec![(status, None, r#"{"message": "Unauthorized", "status": 401}"#)]).await;
        let err = first_page(&api).await.unwrap_err();
        assert_eq!(err.class(), ErrorClass::Fatal);
        assert_eq!(err.status(), Some(status));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(!format!("{err:?} {err}").contains(PRIVATE_KEY));
    }
}

#[tokio::test]
async fn a_truncated_json_body_is_retried() {
    let (api, calls) = scripted_client(vec![(200, None, r#"{"data": {"items": [{"key": "#), (200, None, OK)]).await;
    first_page(&api).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_connection_dropped_halfway_through_the_body_is_retried_as_transport_trouble() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let app = Router::new().route(
        "/api/v2/deals",
        get(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async {
                let chunks: Vec<Result<&'static str, std::io::Error>> =
                    vec![Ok(r#"{"data": {"items": [{"key": "a"}"#), Err(std::io::Error::other("connection lost"))];
                Response::new(axum::body::Body::from_stream(futures::stream::iter(chunks)))
            }
        }),
    );
    let api = client(serve(app).await);
    let err = first_page(&api).await.unwrap_err();
    assert!(matches!(err, ApiError::Transport(_)), "{err:?}");
    assert_eq!(err.class(), ErrorClass::Retryable);
    assert_eq!(calls.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn a_server_that_never_answers_gives_a_timeout_after_the_retries() {
    let app = Router::new().route("/api/v2/deals", get(std::future::pending::<&'static str>));
    let api = ApiClient::new(ClientConfig { timeout: Duration::from_millis(100), max_retries: 2, ..config(serve(app).await) }).unwrap();
    let err = first_page(&api).await.unwrap_err();
    assert!(matches!(err, ApiError::Timeout(_)), "{err:?}");
    assert_eq!(api.requests_sent(), 3, "one try and two retries");
    assert!(api.request_counts().contains(&("deals".into(), "timeout".into(), Purpose::Probe, 3)), "{:?}", api.request_counts());
}

#[tokio::test]
async fn request_json_unwraps_data_and_retries_idempotent_calls() {
    let (api, calls) =
        scripted_client(vec![(500, None, ""), (200, None, r#"{"data": {"key": "deal_1"}, "message": "ok", "status": 200}"#)]).await;
    let value = api.request_json(Method::GET, "deals", None, true).await.unwrap();
    assert_eq!(value, json!({"key": "deal_1"}));
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    let (api, _) = scripted_client(vec![(200, None, r#"{"message": "archived", "status": 200}"#)]).await;
    assert_eq!(api.request_json(Method::DELETE, "deals", None, true).await.unwrap(), json!({"message": "archived", "status": 200}));
    let (api, _) = scripted_client(vec![(200, None, "")]).await;
    assert_eq!(api.request_json(Method::POST, "deals", None, false).await.unwrap(), Value::Null);
}

#[tokio::test]
async fn the_client_side_rate_limit_applies_to_every_request_retries_included() {
    let (app, calls) = scripted(vec![(500, None, ""), (200, None, OK)]);
    let api = ApiClient::new(ClientConfig { rate_limit: RateLimit::Adaptive { ceiling: Some(4.0) }, ..config(serve(app).await) }).unwrap();
    first_page(&api).await.unwrap();
    first_page(&api).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    // One request every 250 ms (the ceiling): each one after the first waited for its slot.
    assert_eq!(api.stats().throttled, 2);

    let (app, _) = scripted(vec![(200, None, OK)]);
    let unlimited = client(serve(app).await);
    for _ in 0..3 {
        first_page(&unlimited).await.unwrap();
    }
    assert_eq!(unlimited.stats().throttled, 0);
}

#[tokio::test]
async fn downloads_carry_the_credentials_only_to_the_api_origin() {
    let auth_seen = |flag: Arc<Mutex<Option<bool>>>| {
        Router::new().fallback(move |headers: HeaderMap| async move {
            *flag.lock().unwrap() = Some(headers.contains_key("authorization"));
            ([("content-type", "application/pdf")], "%PDF")
        })
    };
    let (api_auth, storage_auth) = (Arc::new(Mutex::new(None)), Arc::new(Mutex::new(None)));
    let api = client(serve(auth_seen(api_auth.clone())).await);
    let storage = serve(auth_seen(storage_auth.clone())).await;

    let (bytes, content_type) = api.download("deals/d1/file/f1").await.unwrap();
    assert_eq!((bytes.as_slice(), content_type.as_deref()), (&b"%PDF"[..], Some("application/pdf")));
    api.download(storage.join("bucket/f1.pdf").unwrap().as_str()).await.unwrap();
    assert_eq!(*api_auth.lock().unwrap(), Some(true));
    assert_eq!(*storage_auth.lock().unwrap(), Some(false));
}

#[test]
fn paths_are_joined_under_the_base_path() {
    for base in ["http://127.0.0.1:1/api/v2", "http://127.0.0.1:1/api/v2/"] {
        let api = client(base.parse().unwrap());
        assert_eq!(api.url("deals").unwrap().as_str(), "http://127.0.0.1:1/api/v2/deals");
        assert_eq!(api.url("/deals/d1/tags").unwrap().as_str(), "http://127.0.0.1:1/api/v2/deals/d1/tags");
    }
    let api = client("http://127.0.0.1:1/api/v2".parse().unwrap());
    assert_eq!(api.url("deals/a?b#c d").unwrap().as_str(), "http://127.0.0.1:1/api/v2/deals/a%3Fb%23c%20d");
}

#[test]
fn bad_configuration_is_refused_as_fatal() {
    let base: Url = "http://127.0.0.1:1/api/v2".parse().unwrap();
    let bad = [
        ClientConfig { page_size: 0, ..config(base.clone()) },
        ClientConfig { page_size: 251, ..config(base.clone()) },
        ClientConfig { rate_limit: RateLimit::Adaptive { ceiling: Some(f64::NAN) }, ..config(base.clone()) },
        ClientConfig { rate_limit: RateLimit::Adaptive { ceiling: Some(f64::INFINITY) }, ..config(base.clone()) },
        ClientConfig { rate_limit: RateLimit::Adaptive { ceiling: Some(1e-300) }, ..config(base.clone()) },
        ClientConfig { rate_limit: RateLimit::Adaptive { ceiling: Some(-1.0) }, ..config(base.clone()) },
        ClientConfig { timeout: Duration::ZERO, ..config(base.clone()) },
        ClientConfig { backoff: Backoff::new(Duration::from_secs(2), Duration::from_secs(1)), ..config(base.clone()) },
        ClientConfig { base_url: "mailto:ops@example.com".parse().unwrap(), ..config(base.clone()) },
    ];
    for config in bad {
        let err = ApiClient::new(config.clone()).unwrap_err();
        assert_eq!(err.class(), ErrorClass::Fatal, "{config:?}");
    }
    assert!(ApiClient::new(ClientConfig { rate_limit: RateLimit::Adaptive { ceiling: None }, ..config(base) }).is_ok());
}

#[test]
fn debug_output_never_shows_the_private_key() {
    let api = client("http://127.0.0.1:1/api/v2".parse().unwrap());
    let text = format!("{api:?} {:?}", api.inner.config);
    assert!(!text.contains(PRIVATE_KEY), "{text}");
    assert!(text.contains("pk_test") && text.contains("[redacted]"));
}

#[test]
fn segments_keep_slashes_and_percent_signs_whole() {
    assert_eq!(super::segment("acct/42%2Fx"), "acct%2F42%252Fx");
    assert_eq!(super::segment("plain_key-1.2"), "plain_key-1.2");
}
