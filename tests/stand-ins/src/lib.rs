//! Stand-ins for the clouds the gateway talks to, written from the providers' published API
//! docs, each a real HTTP server on 127.0.0.1 in its own thread:
//!
//! - [`MessagesApi`]: Anthropic's Messages API (`POST /v1/messages`), JSON and SSE, with a
//!   script of replies (text, tool_use, errors with `retry-after`, delays) and a record of every
//!   request it received.
//! - [`LimitedH2Api`]: a Messages API front over HTTP/2 only, with a limit on concurrent
//!   streams per connection (as the providers' edges advertise).
//! - [`HttpTarget`]: a plain server for the http_request tool (answers, redirects).
//! - [`Receiver`]: a webhook receiver that records deliveries and can fail the first few.
//! - [`TelegramBotApi`]: the Telegram Bot API (`/bot<token>/<method>`): long-polled
//!   getUpdates with offsets and 409 conflicts, sendMessage with the server's entity parsing,
//!   429 flood control, webhooks, callback queries.
//! - [`WhatsAppGraph`]: the WhatsApp Cloud API on Graph (`POST /{version}/{phone}/messages`),
//!   with helpers for its webhook notifications and their `X-Hub-Signature-256`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use serde_json::{json, Value};

mod h2_limited;
mod messages;
pub mod telegram;
pub mod whatsapp;
pub use h2_limited::LimitedH2Api;
pub use messages::{MessagesApi, Reply};
pub use telegram::{ChatAction, ChatSpec, Inbound, Pushed, SentMessage, TelegramBotApi, UserSpec};
pub use whatsapp::{WaSent, WhatsAppGraph};

/// The line `loop-gateway` prints on stdout once it listens.
pub const LISTENING: &str = "loop-gateway listening on http://";

/// Wait for a started gateway's listening line; returns its `host:port`.
pub fn wait_listening(child: &mut std::process::Child, limit: Duration) -> Option<String> {
    use std::io::{BufRead, BufReader};
    let stdout = child.stdout.take()?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(addr) = line.strip_prefix(LISTENING) {
                let _ = tx.send(addr.to_string());
            }
        }
    });
    rx.recv_timeout(limit).ok()
}

/// Run an actix-web app on 127.0.0.1:<ephemeral> in a thread of its own; returns its address.
pub(crate) fn serve<F>(workers: usize, factory: F) -> SocketAddr
where
    F: Fn(&mut web::ServiceConfig) + Send + Clone + 'static,
{
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let system = actix_rt::System::new();
        system.block_on(async move {
            let server = HttpServer::new(move || App::new().configure(factory.clone()))
                .workers(workers)
                .max_connections(50_000)
                .backlog(4096)
                .disable_signals()
                // HTTP/1.1, or HTTP/2 for clients that start with its preface (h2c).
                .bind_auto_h2c(("127.0.0.1", 0))
                .expect("bind stand-in");
            tx.send(server.addrs()[0]).expect("report address");
            let _ = server.run().await;
        });
    });
    rx.recv().expect("stand-in started")
}

/// One request a stand-in received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

pub(crate) fn record(req: &HttpRequest, body: &[u8]) -> Recorded {
    Recorded {
        method: req.method().to_string(),
        path: req.uri().to_string(),
        headers: req
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect(),
        body: body.to_vec(),
    }
}

/// A plain HTTP server for tool calls: `GET /json` answers a JSON document, `/text` a line of
/// text, `/big` a megabyte, `/redirect?to=<url>` a 302 to `to`, anything else echoes the request.
pub struct HttpTarget {
    pub url: String,
    requests: Arc<Mutex<Vec<Recorded>>>,
}

impl HttpTarget {
    pub fn start() -> Self {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        let addr = serve(1, move |cfg| {
            let seen = seen.clone();
            cfg.default_service(web::to(move |req: HttpRequest, body: web::Bytes| {
                let seen = seen.clone();
                async move {
                    seen.lock().unwrap().push(record(&req, &body));
                    match req.path() {
                        "/json" => {
                            HttpResponse::Ok().json(json!({"weather": "sunny", "degrees": 21}))
                        }
                        "/text" => HttpResponse::Ok()
                            .content_type("text/plain")
                            .body("plain text answer"),
                        "/big" => HttpResponse::Ok()
                            .content_type("text/plain")
                            .body("x".repeat(1 << 20)),
                        "/redirect" => {
                            let to = req
                                .query_string()
                                .strip_prefix("to=")
                                .unwrap_or("/text")
                                .to_string();
                            HttpResponse::Found()
                                .insert_header(("location", to))
                                .finish()
                        }
                        _ => HttpResponse::Ok().json(json!({
                            "method": req.method().as_str(),
                            "path": req.path(),
                            "body": String::from_utf8_lossy(&body),
                        })),
                    }
                }
            }));
        });
        Self {
            url: format!("http://{addr}"),
            requests,
        }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

/// A webhook receiver: records every delivery; answers 500 to the first `fail_first` ones.
pub struct Receiver {
    pub url: String,
    state: Arc<Mutex<ReceiverState>>,
    notify: Arc<tokio::sync::Notify>,
}

struct ReceiverState {
    fail_first: usize,
    seen: usize,
    delivered: Vec<Recorded>,
    failed: Vec<Recorded>,
}

impl Receiver {
    pub fn start(fail_first: usize) -> Self {
        let state = Arc::new(Mutex::new(ReceiverState {
            fail_first,
            seen: 0,
            delivered: Vec::new(),
            failed: Vec::new(),
        }));
        let notify = Arc::new(tokio::sync::Notify::new());
        let (st, nt) = (state.clone(), notify.clone());
        let addr = serve(1, move |cfg| {
            let (st, nt) = (st.clone(), nt.clone());
            cfg.default_service(web::to(move |req: HttpRequest, body: web::Bytes| {
                let (st, nt) = (st.clone(), nt.clone());
                async move {
                    let rec = record(&req, &body);
                    let ok = {
                        let mut s = st.lock().unwrap();
                        s.seen += 1;
                        if s.seen <= s.fail_first {
                            s.failed.push(rec);
                            false
                        } else {
                            s.delivered.push(rec);
                            true
                        }
                    };
                    nt.notify_waiters();
                    if ok {
                        HttpResponse::Ok().finish()
                    } else {
                        HttpResponse::InternalServerError().body("receiver failing on purpose")
                    }
                }
            }));
        });
        Self {
            url: format!("http://{addr}/hook"),
            state,
            notify,
        }
    }

    pub fn delivered(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().delivered.clone()
    }

    pub fn failed(&self) -> usize {
        self.state.lock().unwrap().failed.len()
    }

    /// Wait until at least `n` deliveries have been refused.
    pub async fn wait_for_failures(&self, limit: Duration, n: usize) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.notify.notified();
            if self.failed() >= n {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("webhook receiver: {n} failures not seen within {limit:?}");
            }
        }
    }

    /// Wait until `pred` holds for the delivered requests (or panic after `limit`).
    pub async fn wait_for(
        &self,
        limit: Duration,
        pred: impl Fn(&[Recorded]) -> bool,
    ) -> Vec<Recorded> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.notify.notified();
            {
                let s = self.state.lock().unwrap();
                if pred(&s.delivered) {
                    return s.delivered.clone();
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let s = self.state.lock().unwrap();
                panic!(
                    "webhook receiver: condition not met within {limit:?}; {} delivered, {} failed",
                    s.delivered.len(),
                    s.failed.len()
                );
            }
        }
    }
}
