//! The HTTP side: every request is counted (writes also logged), may meet an injected
//! fault, then the rate limit, then Basic auth, and only then reaches the API (`api`).
//! Storage links of deal attachments (`/files/…`) skip the rate limit and auth, as a
//! signed URL on another host would. Also the background mutation generator that runs
//! while the server does (the webhook sender runs alongside, see `webhooks`).

use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant},
};

use axum::{
    body::{Body, Bytes},
    extract::{Query, State},
    http::{header, HeaderMap, Method, StatusCode, Uri},
    response::Response,
    Router,
};
use base64::Engine;
use tokio_util::sync::CancellationToken;

use super::{api, files, reply::Reply, route, webhooks, writes, Fault, RunningSimulator, Simulator, SimulatorConfig};

/// What every request handler gets: the account, and the origin (`http://host:port`)
/// the links the API hands out point at.
#[derive(Clone)]
struct Served {
    sim: Simulator,
    origin: Arc<str>,
    /// Ends hanging requests when the simulator stops.
    shutdown: CancellationToken,
}

/// One request as received.
struct Incoming<'a> {
    method: &'a Method,
    uri: &'a Uri,
    headers: &'a HeaderMap,
    body: &'a [u8],
    origin: &'a str,
}

/// Binds `addr` and serves the simulator until the returned handle stops or drops.
pub(super) async fn start(sim: Simulator, addr: SocketAddr) -> io::Result<RunningSimulator> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let host = match local.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let origin = format!("http://{}", SocketAddr::new(host, local.port()));
    let base_url = format!("{origin}/api/v2");
    let shutdown = CancellationToken::new();
    let served = Served { sim: sim.clone(), origin: origin.into(), shutdown: shutdown.clone() };
    let app = Router::new().fallback(handle).with_state(served);
    let token = shutdown.clone();
    let server = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(token.cancelled_owned()).await {
            tracing::warn!(error = %e, "simulator server stopped");
        }
    });
    let mutator = tokio::spawn(mutate_continuously(sim.clone(), shutdown.clone()));
    let sender = tokio::spawn(webhooks::deliver(sim.clone(), shutdown.clone()));
    Ok(RunningSimulator { base_url, simulator: sim, shutdown, tasks: vec![server, mutator, sender] })
}

async fn handle(State(served): State<Served>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let sim = &served.sim;
    let received_before = sim.shared.requests.fetch_add(1, Ordering::Relaxed);
    let write = writes::is_write(&method);
    let (fault, logged) = {
        let mut state = sim.lock();
        let logged = write.then(|| state.log_write(method.as_str(), uri.path(), received_before));
        (state.take_fault(write), logged)
    };
    let request = Incoming { method: &method, uri: &uri, headers: &headers, body: &body, origin: &served.origin };
    // The response and the status logged for a write (0: no answer).
    let (response, status) = match fault {
        None => answered(serve(sim, &request)),
        Some(Fault::Slow(delay)) => {
            tokio::time::sleep(delay).await;
            answered(serve(sim, &request))
        }
        Some(Fault::ServerError(status)) => {
            let status = if StatusCode::from_u16(status).is_ok() { status } else { 500 };
            let mut reply = Reply::error(status, "Injected server error");
            if status == 429 && sim.lock().config.retry_after_header {
                reply.headers.push(("retry-after", "1".into()));
            }
            answered(reply)
        }
        Some(Fault::RateLimited(wait)) => {
            let mut reply = Reply::error(429, "Too many requests: rate limit exceeded");
            reply.headers.push(("retry-after", wait.as_secs().to_string()));
            answered(reply)
        }
        Some(Fault::DropConnection) => (dropped_connection(), 0),
        Some(Fault::ApplyThenDrop) => {
            serve(sim, &request);
            (dropped_connection(), 0)
        }
        Some(Fault::ApplyThenHang) => {
            serve(sim, &request);
            served.shutdown.cancelled().await;
            (dropped_connection(), 0)
        }
        Some(Fault::Truncated) => {
            let mut reply = serve(sim, &request);
            reply.body.truncate(reply.body.len() / 2);
            reply.status = 200;
            answered(reply)
        }
        Some(Fault::NotJson) => {
            let page = Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
                .body(Body::from("<html><head><title>502 Bad Gateway</title></head><body><h1>Bad Gateway</h1></body></html>"))
                .expect("a valid response");
            (page, 200)
        }
    };
    if let Some(i) = logged {
        sim.lock().writes[i].status = status;
    }
    response
}

fn answered(reply: Reply) -> (Response, u16) {
    let status = reply.status;
    (respond(reply), status)
}

/// Rate limit, auth, then the API; runs the page hooks once a list page is fixed.
fn serve(sim: &Simulator, request: &Incoming<'_>) -> Reply {
    let Incoming { method, uri, headers, body, origin } = *request;
    if let Some((deal, file)) = route::storage_route(uri.path()) {
        if *method != Method::GET {
            return Reply::error(405, "The method is not allowed for the requested URL.");
        }
        return files::download(&sim.lock(), &deal, &file).unwrap_or_else(Reply::from);
    }
    let reply = {
        let mut state = sim.lock();
        if !state.admit() {
            let mut reply = Reply::error(429, "Too many requests: rate limit exceeded");
            if state.config.retry_after_header {
                reply.headers.push(("retry-after", "1".into()));
            }
            return reply;
        }
        if !authorized(&state.config, headers) {
            let mut reply = Reply::error(401, "Unauthorized: invalid public or private key");
            reply.headers.push(("www-authenticate", "Basic realm=\"PartnerStack API\"".into()));
            return reply;
        }
        let line = format!("{method} {}", uri.path());
        if state.config.forbidden.iter().any(|f| line.starts_with(f.as_str())) {
            return Reply::error(403, "Forbidden: this API key does not have access to this resource");
        }
        let params = match Query::<Vec<(String, String)>>::try_from_uri(uri) {
            Ok(Query(params)) => params,
            Err(e) => return Reply::error(400, &format!("Malformed query string: {e}")),
        };
        api::answer(&mut state, method, route::route(uri.path()), &params, body, origin)
    };
    if reply.list_page {
        sim.page_served();
    }
    reply
}

/// HTTP Basic with the public key as user and the private key as password.
fn authorized(config: &SimulatorConfig, headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else { return false };
    let Some((scheme, encoded)) = value.trim().split_once(' ') else { return false };
    if !scheme.eq_ignore_ascii_case("basic") {
        return false;
    }
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else { return false };
    let Ok(text) = String::from_utf8(decoded) else { return false };
    text.split_once(':') == Some((config.public_key.as_str(), config.private_key.as_str()))
}

fn respond(reply: Reply) -> Response {
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = Response::builder().status(status);
    if !reply.headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("content-type")) {
        response = response.header(header::CONTENT_TYPE, "application/json");
    }
    for (name, value) in reply.headers {
        response = response.header(name, value);
    }
    response.body(Body::from(reply.body)).expect("a valid response")
}

/// A response whose body fails before its first byte: the server abandons the connection
/// without flushing the head, so the client sees the connection close with no answer.
fn dropped_connection() -> Response {
    let failing = futures::stream::once(async {
        Err::<Bytes, io::Error>(io::Error::new(io::ErrorKind::ConnectionReset, "injected fault: connection dropped"))
    });
    Response::builder().status(StatusCode::OK).body(Body::from_stream(failing)).expect("a valid response")
}

/// Applies random mutations at `mutations_per_sec` (read afresh each tick, so `configure`
/// can change it) until `stop`; now and then several land in the same millisecond.
async fn mutate_continuously(sim: Simulator, stop: CancellationToken) {
    let mut owed = 0.0;
    let mut last = Instant::now();
    loop {
        let rate = sim.lock().config.mutations_per_sec;
        let period = if rate > 0.0 { Duration::from_secs_f64((1.0 / rate).clamp(0.005, 0.25)) } else { Duration::from_millis(250) };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(period) => {}
        }
        let now = Instant::now();
        owed = if rate > 0.0 { (owed + now.duration_since(last).as_secs_f64() * rate).min(10_000.0) } else { 0.0 };
        last = now;
        let due = owed.floor();
        owed -= due;
        sim.mutate_burst(due as usize);
    }
}
