//! An OpenAI-compatible Chat Completions client (`POST /v1/chat/completions`), so local models
//! served by llama.cpp, Ollama or vLLM work too. Messages are translated from and to the
//! Messages API shapes the loop speaks; tool calls map to `tool_use` blocks.

use serde_json::{json, Value};

use crate::anthropic::api_error;
use crate::llm::{describe, parse_retry_after, LlmConfig, LlmError};
use crate::types::{ContentBlock, LlmRequest, LlmResponse, Message, Role, Usage};

/// The Chat Completions request for `req`.
pub fn request_body(req: &LlmRequest) -> Value {
    let mut messages = Vec::new();
    if let Some(system) = req.system.as_deref().filter(|s| !s.is_empty()) {
        messages.push(json!({"role": "system", "content": system}));
    }
    for m in &req.messages {
        translate(m, &mut messages);
    }
    let mut body = json!({
        "model": req.model,
        "max_tokens": req.max_tokens,
        "messages": messages,
    });
    if !req.tools.is_empty() {
        body["tools"] = req
            .tools
            .iter()
            .map(|t| {
                json!({"type": "function", "function": {
                    "name": t.name, "description": t.description, "parameters": t.input_schema}})
            })
            .collect();
    }
    body
}

fn translate(m: &Message, out: &mut Vec<Value>) {
    match m.role {
        Role::User => {
            // Tool results become one `tool` message each; text stays a user message.
            let mut text = String::new();
            for b in &m.content {
                match b {
                    ContentBlock::ToolResult {
                        tool_use_id,
                        content,
                        is_error,
                    } => {
                        let content = if *is_error {
                            format!("ERROR: {content}")
                        } else {
                            content.clone()
                        };
                        out.push(
                            json!({"role": "tool", "tool_call_id": tool_use_id, "content": content}),
                        );
                    }
                    ContentBlock::Text { text: t } => text.push_str(t),
                    _ => {}
                }
            }
            if !text.is_empty() {
                out.push(json!({"role": "user", "content": text}));
            }
        }
        Role::Assistant => {
            let calls: Vec<Value> = m
                .content
                .iter()
                .filter_map(|b| match b {
                    ContentBlock::ToolUse { id, name, input } => Some(json!({
                        "id": id, "type": "function",
                        "function": {"name": name, "arguments": input.to_string()}})),
                    _ => None,
                })
                .collect();
            let mut msg = json!({"role": "assistant", "content": m.text()});
            if !calls.is_empty() {
                msg["tool_calls"] = Value::Array(calls);
            }
            out.push(msg);
        }
    }
}

/// The Messages API shape of a Chat Completions answer.
pub fn parse_response(v: &Value) -> Result<LlmResponse, LlmError> {
    let choice = v["choices"]
        .get(0)
        .ok_or_else(|| LlmError::Decode("no choices in the answer".into()))?;
    let msg = &choice["message"];
    let mut content = Vec::new();
    if let Some(text) = msg["content"].as_str().filter(|t| !t.is_empty()) {
        content.push(ContentBlock::text(text));
    }
    for call in msg["tool_calls"].as_array().into_iter().flatten() {
        let args = call["function"]["arguments"].as_str().unwrap_or("{}");
        let input = serde_json::from_str(args)
            .map_err(|e| LlmError::Decode(format!("tool call arguments: {e}")))?;
        content.push(ContentBlock::ToolUse {
            id: call["id"].as_str().unwrap_or("").to_string(),
            name: call["function"]["name"].as_str().unwrap_or("").to_string(),
            input,
        });
    }
    let stop_reason = match choice["finish_reason"].as_str() {
        Some("tool_calls") | Some("function_call") => "tool_use",
        Some("length") => "max_tokens",
        Some(_) | None => "end_turn",
    };
    let usage = Usage {
        input_tokens: v["usage"]["prompt_tokens"].as_u64().unwrap_or(0),
        output_tokens: v["usage"]["completion_tokens"].as_u64().unwrap_or(0),
        ..Usage::default()
    };
    Ok(LlmResponse {
        id: v["id"].as_str().unwrap_or("").to_string(),
        model: v["model"].as_str().unwrap_or("").to_string(),
        content,
        stop_reason: Some(stop_reason.to_string()),
        usage,
    })
}

pub async fn send(
    http: &reqwest::Client,
    config: &LlmConfig,
    req: &LlmRequest,
) -> Result<LlmResponse, LlmError> {
    let mut builder = http
        .post(format!("{}/v1/chat/completions", config.base_url))
        .json(&request_body(req));
    if let Some(key) = &config.api_key {
        builder = builder.bearer_auth(key);
    }
    let res = builder
        .send()
        .await
        .map_err(|e| LlmError::Transport(describe(e)))?;
    let status = res.status();
    if !status.is_success() {
        let retry_after = parse_retry_after(res.headers());
        let text = res.text().await.unwrap_or_default();
        // OpenAI-style errors are {"error": {"message", "type"}}: the same outer shape.
        return Err(api_error(status.as_u16(), &text, retry_after));
    }
    let v: Value = res
        .json()
        .await
        .map_err(|e| LlmError::Decode(e.without_url().to_string()))?;
    parse_response(&v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::ToolSpec;

    #[test]
    fn tool_turns_translate_both_ways() {
        let req = LlmRequest {
            model: "m".into(),
            system: Some("be brief".into()),
            messages: vec![
                Message::user_text("hi"),
                Message {
                    role: Role::Assistant,
                    content: vec![ContentBlock::ToolUse {
                        id: "c1".into(),
                        name: "t".into(),
                        input: json!({"a": 1}),
                    }],
                },
                Message {
                    role: Role::User,
                    content: vec![ContentBlock::ToolResult {
                        tool_use_id: "c1".into(),
                        content: "done".into(),
                        is_error: false,
                    }],
                },
            ],
            tools: vec![ToolSpec {
                name: "t".into(),
                description: "d".into(),
                input_schema: json!({"type": "object"}),
            }]
            .into(),
            max_tokens: 10,
        };
        let body = request_body(&req);
        let msgs = body["messages"].as_array().unwrap();
        assert_eq!(msgs[0]["role"], "system");
        assert_eq!(
            msgs[2]["tool_calls"][0]["function"]["arguments"],
            "{\"a\":1}"
        );
        assert_eq!(msgs[3]["role"], "tool");
        assert_eq!(body["tools"][0]["function"]["name"], "t");

        let resp = parse_response(&json!({"id": "x", "model": "m", "choices": [{"message": {
            "content": null, "tool_calls": [{"id": "c2", "type": "function",
            "function": {"name": "t", "arguments": "{\"b\":2}"}}]}, "finish_reason": "tool_calls"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 6}}))
        .unwrap();
        assert_eq!(resp.stop_reason.as_deref(), Some("tool_use"));
        assert_eq!(resp.tool_uses()[0].2, json!({"b": 2}));
        assert_eq!(resp.usage.output_tokens, 6);
    }
}
