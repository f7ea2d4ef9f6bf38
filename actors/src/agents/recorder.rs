//! The loop's observer in direct mode: every model attempt and tool call of a run goes to the
//! store as it happens (priced on the way), so a crash mid-run loses no spending.

use std::sync::Arc;

use agent_runner::agent_loop::ToolCallRecord;
use agent_runner::llm::Attempt;
use agent_runner::LoopObserver;

use crate::pricing::Pricing;
use crate::store::runs::{RecordApiCall, RecordToolCall};
use crate::store::Store;

pub struct RunRecorder {
    pub run_id: String,
    pub provider: &'static str,
    pub store: Store,
    pub pricing: Arc<Pricing>,
}

impl LoopObserver for RunRecorder {
    fn llm_attempt(&self, model: &str, attempt: &Attempt) {
        let (usage, error) = match &attempt.result {
            Ok(resp) => (resp.usage, None),
            Err(e) => (Default::default(), Some(e.to_string())),
        };
        self.store.do_send(RecordApiCall {
            run_id: Some(self.run_id.clone()),
            provider: self.provider,
            model: model.to_string(),
            input_tokens: usage.input_tokens as i64,
            output_tokens: usage.output_tokens as i64,
            cache_creation_tokens: usage.cache_creation_input_tokens as i64,
            cache_read_tokens: usage.cache_read_input_tokens as i64,
            cost_micros: self.pricing.cost_micros(model, &usage),
            latency_ms: attempt.latency.as_millis() as i64,
            error,
        });
    }

    fn tool_call(&self, r: &ToolCallRecord) {
        self.store.do_send(RecordToolCall {
            run_id: self.run_id.clone(),
            tool_use_id: r.tool_use_id.clone(),
            name: r.name.clone(),
            input: r.input.to_string(),
            output: r.output.clone(),
            is_error: r.is_error,
            duration_ms: r.duration.as_millis() as i64,
        });
    }
}
