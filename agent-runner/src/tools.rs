//! Tools: what the model may call. Each has a spec (name, description, JSON schema), a risk
//! level, a compiled schema validator (input is checked before the handler runs), and an async
//! handler. A `ToolBox` is an immutable set of tools, shared by every run that may use them.

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::types::ToolSpec;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RiskLevel {
    Low,
    Medium,
    High,
    Critical,
}

impl RiskLevel {
    pub fn as_str(&self) -> &'static str {
        match self {
            RiskLevel::Low => "low",
            RiskLevel::Medium => "medium",
            RiskLevel::High => "high",
            RiskLevel::Critical => "critical",
        }
    }
}

/// Runs a tool. An `Err` is a tool error the model sees (`is_error: true`), never a crash.
pub trait ToolHandler: Send + Sync {
    fn call(&self, input: Value) -> BoxFuture<'static, Result<String, String>>;
}

pub struct Tool {
    pub spec: ToolSpec,
    pub risk: RiskLevel,
    validator: jsonschema::Validator,
    handler: Arc<dyn ToolHandler>,
}

impl std::fmt::Debug for Tool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tool")
            .field("name", &self.spec.name)
            .finish()
    }
}

impl Tool {
    /// A tool; fails when its schema is not a valid JSON Schema.
    pub fn new(
        spec: ToolSpec,
        risk: RiskLevel,
        handler: Arc<dyn ToolHandler>,
    ) -> Result<Self, String> {
        let validator = jsonschema::validator_for(&spec.input_schema)
            .map_err(|e| format!("tool {}: invalid input schema: {e}", spec.name))?;
        Ok(Self {
            spec,
            risk,
            validator,
            handler,
        })
    }

    /// Check the input against the schema; the message names what is wrong.
    pub fn validate(&self, input: &Value) -> Result<(), String> {
        let problems: Vec<String> = self
            .validator
            .iter_errors(input)
            .take(5)
            .map(|e| {
                let at = e.instance_path().to_string();
                if at.is_empty() {
                    e.to_string()
                } else {
                    format!("{at}: {e}")
                }
            })
            .collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "invalid input for {}: {}",
                self.spec.name,
                problems.join("; ")
            ))
        }
    }

    /// Validate, then run.
    pub async fn call(&self, input: Value) -> Result<String, String> {
        self.validate(&input)?;
        self.handler.call(input).await
    }
}

/// An immutable set of tools.
#[derive(Debug, Clone)]
pub struct ToolBox {
    tools: Vec<Arc<Tool>>,
    by_name: HashMap<String, usize>,
    specs: Arc<[ToolSpec]>,
}

impl Default for ToolBox {
    fn default() -> Self {
        Self::new(Vec::new())
    }
}

impl ToolBox {
    pub fn new(tools: Vec<Arc<Tool>>) -> Self {
        let by_name = tools
            .iter()
            .enumerate()
            .map(|(i, t)| (t.spec.name.clone(), i))
            .collect();
        let specs = tools.iter().map(|t| t.spec.clone()).collect();
        Self {
            tools,
            by_name,
            specs,
        }
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Tool>> {
        self.by_name.get(name).map(|&i| &self.tools[i])
    }

    /// The tools as the model sees them (shared, not copied).
    pub fn specs(&self) -> Arc<[ToolSpec]> {
        self.specs.clone()
    }

    pub fn tools(&self) -> &[Arc<Tool>] {
        &self.tools
    }

    /// Only the named tools (for agent groups with an allowlist).
    pub fn only(&self, names: &[String]) -> ToolBox {
        ToolBox::new(
            self.tools
                .iter()
                .filter(|t| names.contains(&t.spec.name))
                .cloned()
                .collect(),
        )
    }

    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct Echo;
    impl ToolHandler for Echo {
        fn call(&self, input: Value) -> BoxFuture<'static, Result<String, String>> {
            Box::pin(async move { Ok(input.to_string()) })
        }
    }

    #[tokio::test]
    async fn input_is_validated_before_the_handler_runs() {
        let tool = Tool::new(
            ToolSpec {
                name: "echo".into(),
                description: "echo".into(),
                input_schema: json!({"type": "object", "required": ["url"],
                    "properties": {"url": {"type": "string"}}, "additionalProperties": false}),
            },
            RiskLevel::Low,
            Arc::new(Echo),
        )
        .unwrap();
        assert_eq!(
            tool.call(json!({"url": "x"})).await.unwrap(),
            "{\"url\":\"x\"}"
        );
        let err = tool.call(json!({"url": 5})).await.unwrap_err();
        assert!(err.contains("/url"), "{err}");
        assert!(tool.call(json!({})).await.unwrap_err().contains("url"));
        assert!(Tool::new(
            ToolSpec {
                name: "bad".into(),
                description: String::new(),
                input_schema: json!({"type": 5}),
            },
            RiskLevel::Low,
            Arc::new(Echo)
        )
        .is_err());
    }
}
