//! A stand-in for Anthropic's Messages API, faithful to the published docs: `POST /v1/messages`
//! with `x-api-key` and `anthropic-version`; JSON answers or an SSE stream (`message_start`,
//! `content_block_start`, `content_block_delta` with `text_delta`/`input_json_delta`,
//! `content_block_stop`, `message_delta` with usage, `message_stop`, `ping`, `error`); errors in
//! the documented `{"type":"error","error":{...}}` shape with `retry-after` on 429.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::{record, serve, Recorded};

/// What the stand-in answers to the next request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A text answer, `stop_reason: end_turn`.
    Text(String),
    /// A text answer cut at `max_tokens`.
    MaxTokens(String),
    /// One or more tool calls in one turn (`stop_reason: tool_use`), after optional text.
    Tools(Vec<(String, Value)>),
    /// An error status with the documented body (and `retry-after` seconds when given).
    Error {
        status: u16,
        kind: String,
        message: String,
        retry_after: Option<u64>,
    },
    /// For streaming requests: a 200 stream that breaks with an `error` event.
    StreamError { kind: String, message: String },
    /// Wait, then answer.
    After(Duration, Box<Reply>),
}

impl Reply {
    pub fn tool(name: &str, input: Value) -> Reply {
        Reply::Tools(vec![(name.to_string(), input)])
    }
    pub fn overloaded() -> Reply {
        Reply::Error {
            status: 529,
            kind: "overloaded_error".into(),
            message: "Overloaded".into(),
            retry_after: None,
        }
    }
    pub fn rate_limited(retry_after: u64) -> Reply {
        Reply::Error {
            status: 429,
            kind: "rate_limit_error".into(),
            message: "Number of request tokens has exceeded your per-minute rate limit".into(),
            retry_after: Some(retry_after),
        }
    }
    pub fn unauthorized() -> Reply {
        Reply::Error {
            status: 401,
            kind: "authentication_error".into(),
            message: "invalid x-api-key".into(),
            retry_after: None,
        }
    }
}

struct State {
    in_flight: usize,
    max_in_flight: usize,
    script: VecDeque<Reply>,
    requests: Vec<Recorded>,
    delay: Duration,
    close_delay: Duration,
    record: bool,
    tool_url: Option<String>,
}

/// The Messages API stand-in. With an empty script it echoes: `You said: <last user text>`,
/// or `Tool result: <content>` after a tool turn.
#[derive(Clone)]
pub struct MessagesApi {
    pub url: String,
    state: Arc<Mutex<State>>,
    arrived: Arc<tokio::sync::Notify>,
}

static MESSAGE_IDS: AtomicU64 = AtomicU64::new(1);

impl MessagesApi {
    pub fn start() -> Self {
        Self::start_with_workers(1)
    }

    pub fn start_with_workers(workers: usize) -> Self {
        let state = Arc::new(Mutex::new(State {
            in_flight: 0,
            max_in_flight: 0,
            script: VecDeque::new(),
            requests: Vec::new(),
            delay: Duration::ZERO,
            close_delay: Duration::ZERO,
            record: true,
            tool_url: None,
        }));
        let arrived = Arc::new(tokio::sync::Notify::new());
        let (st, ar) = (state.clone(), arrived.clone());
        let addr = serve(workers, move |cfg| {
            let (st, ar) = (st.clone(), ar.clone());
            cfg.route(
                "/v1/messages",
                web::post().to(move |req: HttpRequest, body: web::Bytes| {
                    let (st, ar) = (st.clone(), ar.clone());
                    async move { handle(st, ar, req, body).await }
                }),
            );
        });
        Self {
            url: format!("http://{addr}"),
            state,
            arrived,
        }
    }

    /// Queue replies for the next requests, in order.
    pub fn push(&self, reply: Reply) -> &Self {
        self.state.lock().unwrap().script.push_back(reply);
        self
    }

    /// Delay every answer (the script's own delays add to it).
    pub fn set_delay(&self, delay: Duration) {
        self.state.lock().unwrap().delay = delay;
    }

    /// Keep each SSE stream open this long after `message_stop` before ending it, as a server
    /// that flushes events as it generates them does (the end arrives in a later frame).
    pub fn set_close_delay(&self, delay: Duration) {
        self.state.lock().unwrap().close_delay = delay;
    }

    /// With an empty script, answer a new question with one `http_request` tool call to `url`
    /// and a tool result with text (a tool round per run, for benchmarks).
    pub fn set_tool_round(&self, url: Option<String>) {
        self.state.lock().unwrap().tool_url = url;
    }

    /// Stop keeping request bodies (for load tests).
    pub fn set_recording(&self, on: bool) {
        self.state.lock().unwrap().record = on;
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().requests.clone()
    }

    pub fn request_count(&self) -> usize {
        self.state.lock().unwrap().requests.len()
    }

    /// Wait until `n` requests have arrived (or panic after `limit`).
    pub async fn wait_for_requests(&self, n: usize, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.arrived.notified();
            if self.request_count() >= n {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!(
                    "the Messages API stand-in got {} of {n} requests within {limit:?}",
                    self.request_count()
                );
            }
        }
    }

    /// The most requests that were being answered at the same moment.
    pub fn max_in_flight(&self) -> usize {
        self.state.lock().unwrap().max_in_flight
    }
}

fn error(status: u16, kind: &str, message: &str, retry_after: Option<u64>) -> HttpResponse {
    let mut res = HttpResponse::build(
        actix_web::http::StatusCode::from_u16(status)
            .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR),
    );
    if let Some(secs) = retry_after {
        res.insert_header(("retry-after", secs.to_string()));
    }
    res.insert_header(("request-id", "req_standin"))
        .json(json!({"type": "error", "error": {"type": kind, "message": message}}))
}

/// Counts a request as in flight while it lives.
struct InFlight(Arc<Mutex<State>>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.lock().unwrap().in_flight -= 1;
    }
}

async fn handle(
    state: Arc<Mutex<State>>,
    arrived: Arc<tokio::sync::Notify>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let _in_flight = {
        let mut s = state.lock().unwrap();
        s.in_flight += 1;
        s.max_in_flight = s.max_in_flight.max(s.in_flight);
        InFlight(state.clone())
    };
    let (reply, delay, close_delay, tool_url) = {
        let mut s = state.lock().unwrap();
        let rec = record(&req, &body);
        if s.record {
            s.requests.push(rec);
        } else {
            s.requests.push(Recorded {
                body: Vec::new(),
                ..rec
            });
        }
        (
            s.script.pop_front(),
            s.delay,
            s.close_delay,
            s.tool_url.clone(),
        )
    };
    arrived.notify_waiters();
    if req.headers().get("anthropic-version").is_none() {
        return error(
            400,
            "invalid_request_error",
            "anthropic-version: header is required",
            None,
        );
    }
    if req.headers().get("x-api-key").is_none() {
        return error(
            401,
            "authentication_error",
            "x-api-key header is required",
            None,
        );
    }
    let body: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return error(
                400,
                "invalid_request_error",
                &format!("invalid JSON: {e}"),
                None,
            )
        }
    };
    for field in ["model", "max_tokens", "messages"] {
        if body.get(field).is_none() {
            return error(
                400,
                "invalid_request_error",
                &format!("{field}: Field required"),
                None,
            );
        }
    }
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let mut reply = reply.unwrap_or_else(|| match tool_url {
        Some(url) if !last_is_tool_result(&body) => {
            Reply::tool("http_request", json!({"url": url}))
        }
        _ => Reply::Text(echo(&body)),
    });
    while let Reply::After(d, inner) = reply {
        tokio::time::sleep(d).await;
        reply = *inner;
    }
    let stream = body["stream"].as_bool().unwrap_or(false);
    let model = body["model"].as_str().unwrap_or("").to_string();
    let input_tokens =
        (body["messages"].to_string().len() + body["system"].to_string().len()) as u64 / 4 + 1;
    let (content, stop_reason) = match reply {
        Reply::Text(t) => (vec![json!({"type": "text", "text": t})], "end_turn"),
        Reply::MaxTokens(t) => (vec![json!({"type": "text", "text": t})], "max_tokens"),
        Reply::Tools(calls) => (
            calls
                .into_iter()
                .map(|(name, input)| {
                    json!({"type": "tool_use", "id": format!("toolu_{}", MESSAGE_IDS.fetch_add(1, Ordering::Relaxed)),
                        "name": name, "input": input})
                })
                .collect(),
            "tool_use",
        ),
        Reply::Error { status, kind, message, retry_after } => {
            return error(status, &kind, &message, retry_after)
        }
        Reply::StreamError { kind, message } => {
            if !stream {
                return error(529, &kind, &message, None);
            }
            let body = format!(
                "event: message_start\ndata: {}\n\nevent: error\ndata: {}\n\n",
                json!({"type": "message_start", "message": message_json(&model, &[], None, input_tokens, 1)}),
                json!({"type": "error", "error": {"type": kind, "message": message}})
            );
            return HttpResponse::Ok().content_type("text/event-stream").body(body);
        }
        Reply::After(..) => unreachable!("unwrapped above"),
    };
    let output_tokens = content
        .iter()
        .map(|b| b.to_string().len() as u64)
        .sum::<u64>()
        / 4
        + 1;
    if stream {
        let events = sse(&model, &content, stop_reason, input_tokens, output_tokens);
        let mut res = HttpResponse::Ok();
        res.content_type("text/event-stream")
            .insert_header(("cache-control", "no-cache"));
        if close_delay.is_zero() {
            return res.body(events);
        }
        let end = async move {
            tokio::time::sleep(close_delay).await;
            Ok::<_, std::convert::Infallible>(web::Bytes::new())
        };
        res.streaming(
            futures_util::stream::once(async move { Ok(web::Bytes::from(events)) })
                .chain(futures_util::stream::once(end)),
        )
    } else {
        HttpResponse::Ok().json(message_json(
            &model,
            &content,
            Some(stop_reason),
            input_tokens,
            output_tokens,
        ))
    }
}

fn message_json(
    model: &str,
    content: &[Value],
    stop: Option<&str>,
    input: u64,
    output: u64,
) -> Value {
    json!({
        "id": format!("msg_{}", MESSAGE_IDS.fetch_add(1, Ordering::Relaxed)),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop,
        "stop_sequence": null,
        "usage": {"input_tokens": input, "output_tokens": output,
                  "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
    })
}

/// The event sequence the docs describe, with text and tool input split across deltas.
fn sse(model: &str, content: &[Value], stop: &str, input: u64, output: u64) -> String {
    let mut out = String::new();
    let mut event = |name: &str, data: Value| {
        out.push_str(&format!("event: {name}\ndata: {data}\n\n"));
    };
    event(
        "message_start",
        json!({"type": "message_start", "message": message_json(model, &[], None, input, 1)}),
    );
    event("ping", json!({"type": "ping"}));
    for (i, block) in content.iter().enumerate() {
        match block["type"].as_str() {
            Some("text") => {
                let text = block["text"].as_str().unwrap_or("");
                event(
                    "content_block_start",
                    json!({"type": "content_block_start", "index": i,
                    "content_block": {"type": "text", "text": ""}}),
                );
                let mid = text
                    .char_indices()
                    .nth(text.chars().count() / 2)
                    .map(|(b, _)| b)
                    .unwrap_or(0);
                for part in [&text[..mid], &text[mid..]] {
                    event(
                        "content_block_delta",
                        json!({"type": "content_block_delta", "index": i,
                        "delta": {"type": "text_delta", "text": part}}),
                    );
                }
            }
            _ => {
                let input = block["input"].to_string();
                event(
                    "content_block_start",
                    json!({"type": "content_block_start", "index": i,
                    "content_block": {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}}),
                );
                let mid = input.len() / 2;
                let (a, b) = input.split_at(
                    input
                        .char_indices()
                        .map(|(i, _)| i)
                        .find(|&i| i >= mid)
                        .unwrap_or(0),
                );
                for part in [a, b] {
                    event(
                        "content_block_delta",
                        json!({"type": "content_block_delta", "index": i,
                        "delta": {"type": "input_json_delta", "partial_json": part}}),
                    );
                }
            }
        }
        event(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": i}),
        );
    }
    event(
        "message_delta",
        json!({"type": "message_delta",
        "delta": {"stop_reason": stop, "stop_sequence": null}, "usage": {"output_tokens": output}}),
    );
    event("message_stop", json!({"type": "message_stop"}));
    out
}

fn last_is_tool_result(body: &Value) -> bool {
    body["messages"]
        .as_array()
        .and_then(|m| m.last())
        .and_then(|m| m["content"].as_array())
        .is_some_and(|blocks| blocks.iter().any(|b| b["type"] == "tool_result"))
}

fn echo(body: &Value) -> String {
    let last = body["messages"]
        .as_array()
        .and_then(|m| m.last())
        .cloned()
        .unwrap_or(Value::Null);
    let blocks: Vec<Value> = match &last["content"] {
        Value::String(s) => vec![json!({"type": "text", "text": s})],
        Value::Array(a) => a.clone(),
        _ => Vec::new(),
    };
    if let Some(result) = blocks.iter().find(|b| b["type"] == "tool_result") {
        let content = match &result["content"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        return format!(
            "Tool result: {}",
            content.chars().take(200).collect::<String>()
        );
    }
    let text: String = blocks.iter().filter_map(|b| b["text"].as_str()).collect();
    format!("You said: {text}")
}
