//! The agent loop engine: LLM clients and the tool loop, shared by direct mode (inside the
//! gateway's `AgentRun` actor) and container mode (the `agent-runner` binary). It depends on
//! neither actix nor the rest of the gateway, so it can run alone inside a container.
//!
//! - [`types`]: the Messages API's shapes (messages, content blocks, usage), used throughout.
//! - [`anthropic`] and [`openai`]: one client per provider wire protocol.
//! - [`llm`]: the provider-independent client with retries, backoff and cancellation.
//! - [`tools`]: tool specs, schema validation and handlers.
//! - [`agent_loop`]: call the model, run the tools it asks for, repeat until it answers.
//! - [`history`]: trimming long conversations to a token budget.

pub mod agent_loop;
pub mod anthropic;
pub mod history;
pub mod llm;
pub mod openai;
pub mod tools;
pub mod types;

pub use agent_loop::{
    run_agent_loop, LoopError, LoopObserver, LoopOutcome, LoopParams, LoopStop, Refusal,
};
pub use llm::{LlmClient, LlmConfig, LlmError, Provider};
pub use tools::{RiskLevel, Tool, ToolBox, ToolHandler};
pub use types::{ContentBlock, LlmRequest, LlmResponse, Message, Role, ToolSpec, Usage};
