//! Anthropic's Messages API client (`POST /v1/messages`), written from the published docs:
//! `x-api-key` and `anthropic-version` headers; JSON or SSE (`message_start`,
//! `content_block_start|delta|stop` with `text_delta` and `input_json_delta`, `message_delta`
//! with usage, `message_stop`, `ping`, `error`).

use std::collections::BTreeMap;

use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::llm::{describe, parse_retry_after, LlmConfig, LlmError};
use crate::types::{ContentBlock, LlmRequest, LlmResponse, Message, ToolSpec};

pub const API_VERSION: &str = "2023-06-01";

/// The documented request body, serialised straight from the request (no JSON tree copy).
#[derive(Serialize)]
pub struct RequestBody<'a> {
    model: &'a str,
    max_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<&'a str>,
    messages: &'a [Message],
    #[serde(skip_serializing_if = "<[ToolSpec]>::is_empty")]
    tools: &'a [ToolSpec],
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stream: bool,
}

pub fn request_body(req: &LlmRequest, stream: bool) -> RequestBody<'_> {
    RequestBody {
        model: &req.model,
        max_tokens: req.max_tokens,
        system: req.system.as_deref().filter(|s| !s.is_empty()),
        messages: &req.messages,
        tools: &req.tools,
        stream,
    }
}

pub async fn send(
    http: &reqwest::Client,
    config: &LlmConfig,
    req: &LlmRequest,
    stream: bool,
) -> Result<LlmResponse, LlmError> {
    let mut builder = http
        .post(format!("{}/v1/messages", config.base_url))
        .header("anthropic-version", API_VERSION)
        .json(&request_body(req, stream));
    if let Some(key) = &config.api_key {
        builder = builder.header("x-api-key", key);
    }
    let res = builder
        .send()
        .await
        .map_err(|e| LlmError::Transport(describe(e)))?;
    let status = res.status();
    if !status.is_success() {
        let retry_after = parse_retry_after(res.headers());
        let text = res.text().await.unwrap_or_default();
        return Err(api_error(status.as_u16(), &text, retry_after));
    }
    if stream {
        read_stream(res).await
    } else {
        let bytes = res
            .bytes()
            .await
            .map_err(|e| LlmError::Transport(describe(e)))?;
        serde_json::from_slice(&bytes).map_err(|e| LlmError::Decode(e.to_string()))
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    #[serde(rename = "type")]
    kind: String,
    message: String,
}

/// The documented error body `{"type":"error","error":{"type","message"}}`, or the raw text.
pub fn api_error(status: u16, body: &str, retry_after: Option<std::time::Duration>) -> LlmError {
    match serde_json::from_str::<ErrorBody>(body) {
        Ok(b) => LlmError::Api {
            status,
            kind: b.error.kind,
            message: b.error.message,
            retry_after,
        },
        Err(_) => LlmError::Api {
            status,
            kind: "http_error".into(),
            message: body.chars().take(300).collect(),
            retry_after,
        },
    }
}

enum Block {
    Text(String),
    ToolUse {
        id: String,
        name: String,
        json: String,
    },
    Other,
}

async fn read_stream(res: reqwest::Response) -> Result<LlmResponse, LlmError> {
    let mut events = res.bytes_stream().eventsource();
    let mut message: Option<LlmResponse> = None;
    let mut blocks: BTreeMap<u64, Block> = BTreeMap::new();
    let mut finished = false;
    let mut failed = None;
    while let Some(event) = events.next().await {
        let event = event.map_err(|e| LlmError::Transport(format!("event stream: {e}")))?;
        let data: Value = if event.data.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&event.data)
                .map_err(|e| LlmError::Decode(format!("{} event: {e}", event.event)))?
        };
        // The event name is repeated in the data's `type`; prefer the data.
        let kind = data["type"]
            .as_str()
            .unwrap_or(event.event.as_str())
            .to_string();
        match kind.as_str() {
            "message_start" => {
                let mut m: LlmResponse = serde_json::from_value(data["message"].clone())
                    .map_err(|e| LlmError::Decode(format!("message_start: {e}")))?;
                m.content.clear();
                message = Some(m);
            }
            "content_block_start" => {
                let index = data["index"].as_u64().unwrap_or(0);
                let block = &data["content_block"];
                let b = match block["type"].as_str() {
                    Some("text") => Block::Text(block["text"].as_str().unwrap_or("").to_string()),
                    Some("tool_use") => Block::ToolUse {
                        id: block["id"].as_str().unwrap_or("").to_string(),
                        name: block["name"].as_str().unwrap_or("").to_string(),
                        json: String::new(),
                    },
                    _ => Block::Other,
                };
                blocks.insert(index, b);
            }
            "content_block_delta" => {
                let index = data["index"].as_u64().unwrap_or(0);
                let delta = &data["delta"];
                match (blocks.get_mut(&index), delta["type"].as_str()) {
                    (Some(Block::Text(t)), Some("text_delta")) => {
                        t.push_str(delta["text"].as_str().unwrap_or(""))
                    }
                    (Some(Block::ToolUse { json, .. }), Some("input_json_delta")) => {
                        json.push_str(delta["partial_json"].as_str().unwrap_or(""))
                    }
                    _ => {}
                }
            }
            "content_block_stop" | "ping" => {}
            "message_delta" => {
                let m = message
                    .as_mut()
                    .ok_or_else(|| LlmError::Decode("message_delta before message_start".into()))?;
                if let Some(reason) = data["delta"]["stop_reason"].as_str() {
                    m.stop_reason = Some(reason.to_string());
                }
                // Usage here is cumulative: take what it states.
                let u = &data["usage"];
                for (field, slot) in [
                    ("output_tokens", &mut m.usage.output_tokens),
                    ("input_tokens", &mut m.usage.input_tokens),
                    (
                        "cache_creation_input_tokens",
                        &mut m.usage.cache_creation_input_tokens,
                    ),
                    (
                        "cache_read_input_tokens",
                        &mut m.usage.cache_read_input_tokens,
                    ),
                ] {
                    if let Some(n) = u[field].as_u64() {
                        *slot = n;
                    }
                }
            }
            "message_stop" => {
                finished = true;
                break;
            }
            "error" => {
                failed = Some(LlmError::Stream {
                    kind: data["error"]["type"]
                        .as_str()
                        .unwrap_or("error")
                        .to_string(),
                    message: data["error"]["message"].as_str().unwrap_or("").to_string(),
                });
                break;
            }
            _ => {}
        }
    }
    if finished || failed.is_some() {
        // Read the rest to the end in the background instead of dropping it: over HTTP/2 a
        // dropped body resets its stream, the server's closing frame then arrives for a stream
        // the client has forgotten, and h2 fails the whole shared connection after 1,024 such
        // frames (every call waiting on it fails with it).
        tokio::spawn(async move {
            let drain = async { while events.next().await.is_some() {} };
            let _ = tokio::time::timeout(std::time::Duration::from_secs(10), drain).await;
        });
    }
    if let Some(e) = failed {
        return Err(e);
    }
    if !finished {
        return Err(LlmError::Transport(
            "the event stream ended before message_stop".into(),
        ));
    }
    let mut m = message.ok_or_else(|| LlmError::Decode("no message_start event".into()))?;
    for (_, b) in blocks {
        match b {
            Block::Text(text) => m.content.push(ContentBlock::Text { text }),
            Block::ToolUse { id, name, json } => {
                let input = if json.trim().is_empty() {
                    json!({})
                } else {
                    serde_json::from_str(&json)
                        .map_err(|e| LlmError::Decode(format!("tool input of {name}: {e}")))?
                };
                m.content.push(ContentBlock::ToolUse { id, name, input });
            }
            Block::Other => {}
        }
    }
    Ok(m)
}
