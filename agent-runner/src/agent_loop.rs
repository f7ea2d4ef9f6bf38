//! The tool loop: call the model; if it asks for tools, run them (concurrently when it asks for
//! several in one turn), send their results back, and repeat until it ends its turn, runs out
//! of `max_tokens`, or reaches the iteration cap. Written once for direct and container mode.

use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use futures_util::future::{join_all, BoxFuture};
use futures_util::FutureExt;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::llm::{Attempt, LlmClient, LlmError};
use crate::tools::{RiskLevel, ToolBox};
use crate::types::{ContentBlock, LlmRequest, Message, Role, Usage};

#[derive(Debug, Clone)]
pub struct LoopParams {
    pub model: String,
    pub system: Option<String>,
    pub max_tokens: u32,
    /// Model calls allowed in this run (each tool round costs one).
    pub max_iterations: u32,
}

/// Why the loop ended with an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoopStop {
    EndTurn,
    /// The answer was cut at `max_tokens`.
    MaxTokens,
    /// The model still wanted tools when the iteration cap was reached.
    IterationCap,
}

impl LoopStop {
    pub fn as_str(&self) -> &'static str {
        match self {
            LoopStop::EndTurn => "end_turn",
            LoopStop::MaxTokens => "max_tokens",
            LoopStop::IterationCap => "iteration_cap",
        }
    }
}

#[derive(Debug, Clone)]
pub struct LoopOutcome {
    pub text: String,
    pub stop: LoopStop,
    /// The assistant turns and tool results this run added, for the conversation history.
    pub new_messages: Vec<Message>,
    pub usage: Usage,
    pub llm_calls: u32,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum LoopFailure {
    #[error(transparent)]
    Llm(#[from] LlmError),
    #[error("the model ended its turn without any text")]
    EmptyReply,
    #[error("the iteration cap ({0}) was reached before the agent answered")]
    IterationCap(u32),
    #[error("{}", .0.message)]
    Refused(Refusal),
}

/// A gate's reason for not making a call (e.g. a budget that would be passed).
#[derive(Debug, Clone)]
pub struct Refusal {
    /// snake_case, e.g. `budget_exceeded`.
    pub code: &'static str,
    pub message: String,
}

impl LoopFailure {
    pub fn code(&self) -> &'static str {
        match self {
            LoopFailure::Llm(e) => e.code(),
            LoopFailure::EmptyReply => "empty_reply",
            LoopFailure::IterationCap(_) => "iteration_cap",
            LoopFailure::Refused(r) => r.code,
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{failure}")]
pub struct LoopError {
    pub failure: LoopFailure,
    pub new_messages: Vec<Message>,
    pub usage: Usage,
    pub llm_calls: u32,
}

/// One tool call, as recorded.
#[derive(Debug, Clone)]
pub struct ToolCallRecord {
    pub tool_use_id: String,
    pub name: String,
    pub input: Value,
    pub output: String,
    pub is_error: bool,
    pub duration: Duration,
}

/// Hooks the caller gives the loop: records of what happened, and gates that may stop a call
/// (budgets before a model call, approvals before a tool call).
pub trait LoopObserver: Send + Sync {
    /// Every model attempt, retries included.
    fn llm_attempt(&self, _model: &str, _attempt: &Attempt) {}
    /// Every finished tool call.
    fn tool_call(&self, _record: &ToolCallRecord) {}
    /// Before each model call; an `Err` ends the run with that reason.
    fn before_llm_call(&self, _req: &LlmRequest) -> BoxFuture<'static, Result<(), Refusal>> {
        Box::pin(async { Ok(()) })
    }
    /// Before each tool call; an `Err` becomes a tool error the model sees.
    fn before_tool_call(
        &self,
        _tool_use_id: &str,
        _name: &str,
        _input: &Value,
        _risk: RiskLevel,
    ) -> BoxFuture<'static, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }
}

/// An observer that records nothing and allows everything.
pub struct NoObserver;
impl LoopObserver for NoObserver {}

/// Run the loop over `messages` (the history plus the new user turn).
pub async fn run_agent_loop(
    client: &LlmClient,
    params: &LoopParams,
    mut messages: Vec<Message>,
    tools: &ToolBox,
    observer: &dyn LoopObserver,
    cancel: &CancellationToken,
) -> Result<LoopOutcome, LoopError> {
    let history_len = messages.len();
    let mut usage = Usage::default();
    let mut llm_calls = 0u32;
    let specs = tools.specs();
    let fail =
        |failure: LoopFailure, messages: &[Message], usage: Usage, llm_calls: u32| LoopError {
            failure,
            new_messages: messages[history_len..].to_vec(),
            usage,
            llm_calls,
        };

    loop {
        if llm_calls >= params.max_iterations {
            // The cap was hit while the model still wanted tools: answer with what it said.
            let text = last_assistant_text(&messages[history_len..]);
            if text.trim().is_empty() {
                return Err(fail(
                    LoopFailure::IterationCap(params.max_iterations),
                    &messages,
                    usage,
                    llm_calls,
                ));
            }
            return Ok(LoopOutcome {
                text,
                stop: LoopStop::IterationCap,
                new_messages: messages[history_len..].to_vec(),
                usage,
                llm_calls,
            });
        }
        let req = LlmRequest {
            model: params.model.clone(),
            system: params.system.clone(),
            messages,
            tools: specs.clone(),
            max_tokens: params.max_tokens,
        };
        if let Err(reason) = observer.before_llm_call(&req).await {
            messages = req.messages;
            return Err(fail(
                LoopFailure::Refused(reason),
                &messages,
                usage,
                llm_calls,
            ));
        }
        let mut on_attempt = |a: &Attempt| observer.llm_attempt(&params.model, a);
        let result = client.complete(&req, cancel, &mut on_attempt).await;
        messages = req.messages;
        llm_calls += 1;
        let resp = match result {
            Ok(r) => r,
            Err(e) => return Err(fail(e.into(), &messages, usage, llm_calls)),
        };
        usage.add(&resp.usage);
        let tool_uses = resp.tool_uses();
        let stop_reason = resp.stop_reason.clone().unwrap_or_default();
        messages.push(Message {
            role: Role::Assistant,
            content: resp
                .content
                .into_iter()
                .filter(|b| !matches!(b, ContentBlock::Unsupported))
                .collect(),
        });

        if stop_reason == "tool_use" && !tool_uses.is_empty() {
            let results = join_all(
                tool_uses
                    .into_iter()
                    .map(|(id, name, input)| run_tool(tools, observer, id, name, input)),
            )
            .await;
            messages.push(Message {
                role: Role::User,
                content: results,
            });
            if cancel.is_cancelled() {
                return Err(fail(
                    LlmError::Cancelled.into(),
                    &messages,
                    usage,
                    llm_calls,
                ));
            }
            continue;
        }

        let text = last_assistant_text(&messages[history_len..]);
        if text.trim().is_empty() {
            return Err(fail(LoopFailure::EmptyReply, &messages, usage, llm_calls));
        }
        let stop = if stop_reason == "max_tokens" {
            LoopStop::MaxTokens
        } else {
            LoopStop::EndTurn
        };
        return Ok(LoopOutcome {
            text,
            stop,
            new_messages: messages[history_len..].to_vec(),
            usage,
            llm_calls,
        });
    }
}

fn last_assistant_text(messages: &[Message]) -> String {
    messages
        .iter()
        .rev()
        .find(|m| m.role == Role::Assistant && !m.text().trim().is_empty())
        .map(Message::text)
        .unwrap_or_default()
}

/// One tool call: gate, validate, run; any failure (a panic included) is a tool error.
async fn run_tool(
    tools: &ToolBox,
    observer: &dyn LoopObserver,
    id: String,
    name: String,
    input: Value,
) -> ContentBlock {
    let started = Instant::now();
    let result = match tools.get(&name) {
        None => Err(format!("there is no tool named {name}")),
        Some(tool) => match observer
            .before_tool_call(&id, &name, &input, tool.risk)
            .await
        {
            Err(reason) => Err(reason),
            Ok(()) => AssertUnwindSafe(tool.call(input.clone()))
                .catch_unwind()
                .await
                .unwrap_or_else(|_| Err(format!("the tool {name} failed unexpectedly"))),
        },
    };
    let (output, is_error) = match result {
        Ok(out) => (out, false),
        Err(e) => (e, true),
    };
    observer.tool_call(&ToolCallRecord {
        tool_use_id: id.clone(),
        name,
        input,
        output: output.clone(),
        is_error,
        duration: started.elapsed(),
    });
    ContentBlock::ToolResult {
        tool_use_id: id,
        content: output,
        is_error,
    }
}
