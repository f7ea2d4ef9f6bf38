//! The loop's observer in direct mode: every model attempt and tool call of a run goes to the
//! store as it happens (priced on the way), so a crash mid-run loses no spending.

use std::sync::{Arc, Mutex};

use actix::Addr;
use agent_runner::agent_loop::ToolCallRecord;
use agent_runner::llm::Attempt;
use agent_runner::{LlmRequest, LoopObserver, Refusal};
use futures_util::future::BoxFuture;

use crate::budgets::{Budgets, Release, Reserve, Settle};
use crate::pricing::Pricing;
use crate::store::runs::{RecordApiCall, RecordToolCall};
use crate::store::Store;

pub struct RunRecorder {
    pub run_id: String,
    pub group_id: Option<String>,
    pub provider: &'static str,
    pub store: Store,
    pub pricing: Arc<Pricing>,
    /// Present for runs of a group: every model call is reserved against its budget first.
    pub budget: Option<BudgetGate>,
    /// Every tool call is checked against the approval rules first.
    pub approvals: Addr<crate::approvals::ApprovalDesk>,
}

pub struct BudgetGate {
    pub budgets: Addr<Budgets>,
    pub group_id: String,
    /// The reservation of the call in flight (calls of one run are sequential).
    pub current: Arc<Mutex<Option<u64>>>,
}

impl Drop for RunRecorder {
    fn drop(&mut self) {
        // A run that ends with a reservation outstanding (an error, a crash) gives it back.
        if let Some(gate) = &self.budget {
            if let Some(id) = gate.current.lock().ok().and_then(|mut c| c.take()) {
                gate.budgets.do_send(Release { reservation: id });
            }
        }
    }
}

impl LoopObserver for RunRecorder {
    fn before_llm_call(&self, req: &LlmRequest) -> BoxFuture<'static, Result<(), Refusal>> {
        let Some(gate) = &self.budget else {
            return Box::pin(async { Ok(()) });
        };
        let tokens = req.estimated_input_tokens() + u64::from(req.max_tokens);
        let (budgets, group_id, current) = (
            gate.budgets.clone(),
            gate.group_id.clone(),
            gate.current.clone(),
        );
        Box::pin(async move {
            match budgets.send(Reserve { group_id, tokens }).await {
                Ok(Ok(id)) => {
                    if let Ok(mut c) = current.lock() {
                        *c = Some(id);
                    }
                    Ok(())
                }
                Ok(Err(e)) => Err(Refusal {
                    code: "budget_exceeded",
                    message: e.to_string(),
                }),
                Err(e) => Err(Refusal {
                    code: "budget_unavailable",
                    message: format!("the budget keeper did not answer: {e}"),
                }),
            }
        })
    }

    fn before_tool_call(
        &self,
        tool_use_id: &str,
        name: &str,
        input: &serde_json::Value,
        risk: agent_runner::RiskLevel,
    ) -> BoxFuture<'static, Result<(), String>> {
        let gate = self.approvals.send(crate::approvals::Gate {
            run_id: self.run_id.clone(),
            tool_use_id: tool_use_id.to_string(),
            tool: name.to_string(),
            input: input.clone(),
            risk,
        });
        Box::pin(async move {
            gate.await.unwrap_or_else(|_| {
                Err("the approval desk is unavailable; the call was not made".into())
            })
        })
    }

    fn llm_attempt(&self, model: &str, attempt: &Attempt) {
        let (usage, error) = match &attempt.result {
            Ok(resp) => (resp.usage, None),
            Err(e) => (Default::default(), Some(e.to_string())),
        };
        // A successful call settles its reservation; a failed attempt costs nothing and keeps
        // it for the retry (or gives it back when the run ends).
        if let (Some(gate), Ok(_)) = (&self.budget, &attempt.result) {
            if let Some(id) = gate.current.lock().ok().and_then(|mut c| c.take()) {
                gate.budgets.do_send(Settle {
                    reservation: id,
                    used: usage.input_tokens
                        + usage.output_tokens
                        + usage.cache_creation_input_tokens
                        + usage.cache_read_input_tokens,
                });
            }
        }
        self.store.do_send(RecordApiCall {
            run_id: Some(self.run_id.clone()),
            group_id: self.group_id.clone(),
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
