//! The Messages API's data shapes (Anthropic's documented JSON), which the whole loop speaks.
//! Other providers are translated to and from these.

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Assistant,
}

/// One block of a message's content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentBlock {
    Text {
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
        input: Value,
    },
    ToolResult {
        tool_use_id: String,
        content: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        is_error: bool,
    },
    /// Block types this gateway does not use (thinking, images, ...): kept out of history.
    #[serde(other)]
    Unsupported,
}

impl ContentBlock {
    pub fn text(text: impl Into<String>) -> Self {
        ContentBlock::Text { text: text.into() }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    pub content: Vec<ContentBlock>,
}

impl Message {
    pub fn user_text(text: impl Into<String>) -> Self {
        Message {
            role: Role::User,
            content: vec![ContentBlock::text(text)],
        }
    }

    /// The message's text blocks joined.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for block in &self.content {
            if let ContentBlock::Text { text } = block {
                if !out.is_empty() && !text.is_empty() {
                    out.push('\n');
                }
                out.push_str(text);
            }
        }
        out
    }

    /// Whether this is a user turn that only carries tool results (not a person speaking).
    pub fn is_tool_results(&self) -> bool {
        self.role == Role::User
            && !self.content.is_empty()
            && self
                .content
                .iter()
                .all(|b| matches!(b, ContentBlock::ToolResult { .. }))
    }
}

/// A tool as the model sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    pub input_schema: Value,
}

/// Token usage of one call (Anthropic's field names).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    #[serde(default)]
    pub input_tokens: u64,
    #[serde(default)]
    pub output_tokens: u64,
    #[serde(default, deserialize_with = "null_as_zero")]
    pub cache_creation_input_tokens: u64,
    #[serde(default, deserialize_with = "null_as_zero")]
    pub cache_read_input_tokens: u64,
}

fn null_as_zero<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    Ok(Option::<u64>::deserialize(d)?.unwrap_or(0))
}

impl Usage {
    pub fn add(&mut self, other: &Usage) {
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.cache_creation_input_tokens += other.cache_creation_input_tokens;
        self.cache_read_input_tokens += other.cache_read_input_tokens;
    }
}

/// One request to a model.
#[derive(Debug, Clone)]
pub struct LlmRequest {
    pub model: String,
    pub system: Option<String>,
    pub messages: Vec<Message>,
    /// Shared by every call of every run that uses the same tool box.
    pub tools: std::sync::Arc<[ToolSpec]>,
    pub max_tokens: u32,
}

/// One answer from a model.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct LlmResponse {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub model: String,
    pub content: Vec<ContentBlock>,
    #[serde(default)]
    pub stop_reason: Option<String>,
    #[serde(default)]
    pub usage: Usage,
}

impl LlmRequest {
    /// A conservative estimate of the input tokens (about three characters a token, which
    /// overestimates English and JSON), for reserving budget before a call.
    pub fn estimated_input_tokens(&self) -> u64 {
        let chars = self.system.as_deref().map_or(0, str::len)
            + serde_json::to_string(&self.messages).map_or(0, |s| s.len())
            + serde_json::to_string(&*self.tools).map_or(0, |s| s.len());
        (chars as u64).div_ceil(3) + 16
    }
}

impl LlmResponse {
    /// The tool calls the model asked for, in order.
    pub fn tool_uses(&self) -> Vec<(String, String, Value)> {
        self.content
            .iter()
            .filter_map(|b| match b {
                ContentBlock::ToolUse { id, name, input } => {
                    Some((id.clone(), name.clone(), input.clone()))
                }
                _ => None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn blocks_round_trip_in_the_documented_shape() {
        let b = ContentBlock::ToolUse {
            id: "toolu_1".into(),
            name: "http_request".into(),
            input: json!({"url": "http://x"}),
        };
        let v = serde_json::to_value(&b).unwrap();
        assert_eq!(v["type"], "tool_use");
        assert_eq!(serde_json::from_value::<ContentBlock>(v).unwrap(), b);
        let r = ContentBlock::ToolResult {
            tool_use_id: "toolu_1".into(),
            content: "ok".into(),
            is_error: false,
        };
        assert!(serde_json::to_value(&r).unwrap().get("is_error").is_none());
        let unknown: ContentBlock =
            serde_json::from_value(json!({"type": "thinking", "thinking": "hm"})).unwrap();
        assert_eq!(unknown, ContentBlock::Unsupported);
    }

    #[test]
    fn usage_accepts_null_cache_fields() {
        let u: Usage = serde_json::from_value(json!({"input_tokens": 3, "output_tokens": 4,
            "cache_creation_input_tokens": null}))
        .unwrap();
        assert_eq!(u.input_tokens, 3);
        assert_eq!(u.cache_creation_input_tokens, 0);
    }
}
