//! Model prices, for the cost of every call in integer micro-dollars. The table holds current
//! Claude models (USD per million tokens, from Anthropic's published pricing); `MODEL_PRICES`
//! in the config adds or overrides entries. Models match by the longest known prefix, so dated
//! ids (`claude-sonnet-4-5-20250929`) find their family.

use std::collections::BTreeMap;

use agent_runner::Usage;
use serde::Deserialize;

/// USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Price {
    pub input: f64,
    pub output: f64,
    /// Prompt-cache writes (5-minute); default 1.25 × input.
    #[serde(default)]
    pub cache_write: Option<f64>,
    /// Prompt-cache reads; default 0.1 × input.
    #[serde(default)]
    pub cache_read: Option<f64>,
}

const fn p(input: f64, output: f64) -> Price {
    Price {
        input,
        output,
        cache_write: None,
        cache_read: None,
    }
}

const BUILT_IN: &[(&str, Price)] = &[
    ("claude-opus-5", p(5.0, 25.0)),
    ("claude-opus-4-8", p(5.0, 25.0)),
    ("claude-opus-4-7", p(5.0, 25.0)),
    ("claude-opus-4-6", p(5.0, 25.0)),
    ("claude-opus-4-5", p(5.0, 25.0)),
    ("claude-opus-4-1", p(15.0, 75.0)),
    ("claude-opus-4", p(15.0, 75.0)),
    ("claude-sonnet-4", p(3.0, 15.0)),
    ("claude-sonnet-5", p(3.0, 15.0)),
    ("claude-3-7-sonnet", p(3.0, 15.0)),
    ("claude-3-5-sonnet", p(3.0, 15.0)),
    ("claude-haiku-4-5", p(1.0, 5.0)),
    ("claude-3-5-haiku", p(0.8, 4.0)),
    ("claude-3-haiku", p(0.25, 1.25)),
    ("claude-3-opus", p(15.0, 75.0)),
];

#[derive(Debug, Clone)]
pub struct Pricing {
    prices: BTreeMap<String, Price>,
}

impl Default for Pricing {
    fn default() -> Self {
        Self {
            prices: BUILT_IN.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        }
    }
}

impl Pricing {
    /// The built-in table plus overrides given as JSON: `{"model-prefix": {"input": 3, "output": 15}}`.
    pub fn with_overrides(json: Option<&str>) -> Result<Self, String> {
        let mut pricing = Self::default();
        if let Some(json) = json.filter(|j| !j.trim().is_empty()) {
            let extra: BTreeMap<String, Price> = serde_json::from_str(json)
                .map_err(|e| format!("MODEL_PRICES is not valid: {e}"))?;
            for (model, price) in &extra {
                if [price.input, price.output]
                    .iter()
                    .any(|v| !v.is_finite() || *v < 0.0)
                {
                    return Err(format!(
                        "MODEL_PRICES: prices of {model} must be non-negative"
                    ));
                }
            }
            pricing.prices.extend(extra);
        }
        Ok(pricing)
    }

    pub fn price(&self, model: &str) -> Option<Price> {
        self.prices
            .iter()
            .filter(|(prefix, _)| model.starts_with(prefix.as_str()))
            .max_by_key(|(prefix, _)| prefix.len())
            .map(|(_, p)| *p)
    }

    /// The cost of `usage` on `model` in micro-dollars (0 for a model without a price).
    pub fn cost_micros(&self, model: &str, usage: &Usage) -> i64 {
        let Some(p) = self.price(model) else { return 0 };
        // USD per million tokens is exactly micro-dollars per token.
        let micros = usage.input_tokens as f64 * p.input
            + usage.output_tokens as f64 * p.output
            + usage.cache_creation_input_tokens as f64 * p.cache_write.unwrap_or(p.input * 1.25)
            + usage.cache_read_input_tokens as f64 * p.cache_read.unwrap_or(p.input * 0.1);
        micros.round() as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_prefix_wins_and_costs_are_exact() {
        let p = Pricing::default();
        let u = Usage {
            input_tokens: 1_000_000,
            output_tokens: 1_000_000,
            cache_creation_input_tokens: 0,
            cache_read_input_tokens: 0,
        };
        assert_eq!(p.cost_micros("claude-opus-4-5-20251101", &u), 30_000_000);
        assert_eq!(p.cost_micros("claude-opus-4-20250514", &u), 90_000_000);
        assert_eq!(p.cost_micros("claude-sonnet-4-5", &u), 18_000_000);
        assert_eq!(p.cost_micros("unknown-model", &u), 0);
        let cached = Usage {
            cache_creation_input_tokens: 1_000_000,
            cache_read_input_tokens: 1_000_000,
            ..Usage::default()
        };
        assert_eq!(
            p.cost_micros("claude-sonnet-4", &cached),
            3_750_000 + 300_000
        );
    }

    #[test]
    fn overrides_add_models_and_reject_nonsense() {
        let p = Pricing::with_overrides(Some(r#"{"local-": {"input": 1, "output": 2}}"#)).unwrap();
        let u = Usage {
            input_tokens: 10,
            output_tokens: 10,
            ..Usage::default()
        };
        assert_eq!(p.cost_micros("local-llama", &u), 30);
        assert!(Pricing::with_overrides(Some("{bad")).is_err());
        assert!(Pricing::with_overrides(Some(r#"{"m": {"input": -1, "output": 2}}"#)).is_err());
    }
}
