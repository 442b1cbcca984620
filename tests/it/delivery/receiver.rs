//! A real webhook receiver on a loopback port: plain HTTP/1.1 over TCP (keep-alive), written
//! by hand so it can fail in every way an endpoint does: an error status, a 429 with
//! `Retry-After`, an answer that never comes, a connection reset (RST), a slow answer, 410.
//! It records every request with its Standard Webhooks headers and what it answered.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    time::Instant,
};

/// How the receiver answers one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Behaviour {
    Accept,
    Status(u16),
    /// 429 with `Retry-After: <seconds>`.
    TooMany(u64),
    /// Reads the request and never answers (until the client gives up).
    Hang,
    /// Reads the request and resets the connection (RST).
    Reset,
    /// Answers 200 after a while.
    Slow(Duration),
}

/// One request as it arrived.
#[derive(Clone, Debug)]
pub struct Request {
    pub id: String,
    pub timestamp: i64,
    pub signature: String,
    pub content_type: String,
    pub body: String,
    pub at: Instant,
    pub answer: Behaviour,
}

type Rule = Box<dyn Fn(&str) -> Option<Behaviour> + Send + Sync>;

#[derive(Default)]
struct State {
    script: VecDeque<Behaviour>,
    mode: Option<Behaviour>,
    rule: Option<Rule>,
    requests: Vec<Request>,
}

#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    state: Arc<Mutex<State>>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hooks", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, shared.clone()));
            }
        });
        Receiver { url, state }
    }

    /// Answers every request this way from now on (after any script).
    pub fn set(&self, mode: Behaviour) {
        self.state.lock().unwrap().mode = Some(mode);
    }

    /// Answers the next requests this way, one each, before the mode applies.
    pub fn script(&self, behaviours: impl IntoIterator<Item = Behaviour>) {
        self.state.lock().unwrap().script.extend(behaviours);
    }

    /// Answers requests whose body `rule` picks this way, before anything else.
    pub fn rule(&self, rule: impl Fn(&str) -> Option<Behaviour> + Send + Sync + 'static) {
        self.state.lock().unwrap().rule = Some(Box::new(rule));
    }

    pub fn clear_rule(&self) {
        self.state.lock().unwrap().rule = None;
    }

    pub fn requests(&self) -> Vec<Request> {
        self.state.lock().unwrap().requests.clone()
    }

    /// The requests answered 2xx, in arrival order.
    pub fn accepted(&self) -> Vec<Request> {
        self.requests().into_iter().filter(|r| matches!(r.answer, Behaviour::Accept | Behaviour::Slow(_))).collect()
    }
}

async fn serve(mut stream: TcpStream, state: Arc<Mutex<State>>) {
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let Some((head, body)) = read_request(&mut stream, &mut buf).await else { return };
        let header = |name: &str| {
            head.lines()
                .find_map(|l| l.split_once(':').filter(|(k, _)| k.trim().eq_ignore_ascii_case(name)).map(|(_, v)| v.trim().to_owned()))
                .unwrap_or_default()
        };
        let answer = {
            let mut s = state.lock().unwrap();
            let chosen = s
                .rule
                .as_ref()
                .and_then(|r| r(&body))
                .or_else(|| s.script.pop_front())
                .or_else(|| s.mode.clone())
                .unwrap_or(Behaviour::Accept);
            s.requests.push(Request {
                id: header("webhook-id"),
                timestamp: header("webhook-timestamp").parse().unwrap_or(0),
                signature: header("webhook-signature"),
                content_type: header("content-type"),
                body,
                at: Instant::now(),
                answer: chosen.clone(),
            });
            chosen
        };
        let reply = |status: u16, extra: &str| format!("HTTP/1.1 {status} X\r\ncontent-length: 2\r\n{extra}\r\nok");
        let written = match answer {
            Behaviour::Accept => stream.write_all(reply(200, "").as_bytes()).await,
            Behaviour::Status(s) => stream.write_all(reply(s, "").as_bytes()).await,
            Behaviour::TooMany(secs) => stream.write_all(reply(429, &format!("retry-after: {secs}\r\n")).as_bytes()).await,
            Behaviour::Slow(d) => {
                tokio::time::sleep(d).await;
                stream.write_all(reply(200, "").as_bytes()).await
            }
            Behaviour::Hang => {
                // Until the client hangs up.
                let _ = stream.read(&mut [0_u8; 1]).await;
                return;
            }
            Behaviour::Reset => {
                // A zero linger closes with RST at once (the deprecation is about blocking
                // on a non-zero linger).
                #[allow(deprecated)]
                let _ = stream.set_linger(Some(Duration::ZERO));
                return;
            }
        };
        if written.is_err() {
            return;
        }
    }
}

/// Reads one request (head and `content-length` body); `None` when the client hung up.
async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(String, String)> {
    let mut chunk = [0_u8; 8192];
    let end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        let n = stream.read(&mut chunk).await.ok().filter(|n| *n > 0)?;
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let length: usize = head
        .lines()
        .find_map(|l| l.split_once(':').filter(|(k, _)| k.trim().eq_ignore_ascii_case("content-length")))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < end + 4 + length {
        let n = stream.read(&mut chunk).await.ok().filter(|n| *n > 0)?;
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + length]).into_owned();
    buf.drain(..end + 4 + length);
    Some((head, body))
}
