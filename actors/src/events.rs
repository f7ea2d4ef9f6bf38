//! The one event type of the gateway. Its wire names (`agent:run:start`, ...) are what the
//! dashboard, the WebSocket and outbound webhooks see, so they never change lightly.

use serde::Serialize;

/// Everything that happens in the gateway that someone might want to watch.
///
/// Serialised as `{"event": "<wire name>", "payload": {...}}`; the bus adds `timestamp` and
/// `source` to form the envelope that every subscriber receives.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", content = "payload")]
pub enum GatewayEvent {
    #[serde(rename = "agent:run:start", rename_all = "camelCase")]
    RunStart {
        run_id: String,
        source: String,
        conversation_id: String,
        input: String,
    },
    #[serde(rename = "agent:run:complete", rename_all = "camelCase")]
    RunComplete {
        run_id: String,
        source: String,
        conversation_id: String,
        output: String,
        stop_reason: String,
        input_tokens: i64,
        output_tokens: i64,
        cost_micros: i64,
        #[serde(skip_serializing_if = "Option::is_none")]
        metadata: Option<serde_json::Value>,
    },
    #[serde(rename = "agent:run:error", rename_all = "camelCase")]
    RunError {
        run_id: String,
        source: String,
        conversation_id: String,
        code: String,
        error: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        metadata: Option<serde_json::Value>,
    },
    /// A supervised actor died and was restarted (DESIGN: restarts are visible).
    #[serde(rename = "actor:restarted", rename_all = "camelCase")]
    ActorRestarted { actor: String, restarts: u64 },
    /// A tool call waits for a person's decision.
    #[serde(rename = "approval:required", rename_all = "camelCase")]
    ApprovalRequired {
        approval_id: String,
        run_id: Option<String>,
        tool_name: String,
        input: serde_json::Value,
        risk_level: String,
        expires_at: String,
    },
    /// A request was approved, rejected or timed out.
    #[serde(rename = "approval:resolved", rename_all = "camelCase")]
    ApprovalResolved {
        approval_id: String,
        run_id: Option<String>,
        tool_name: String,
        /// approved, rejected or expired
        status: String,
        decided_by: String,
        reason: Option<String>,
        /// Whether the call was made.
        allowed: bool,
    },
    #[serde(rename = "task:start", rename_all = "camelCase")]
    TaskStart {
        task_id: String,
        name: String,
        /// The iteration it starts at (1, or later when it continues).
        iteration: u32,
    },
    #[serde(rename = "task:iteration", rename_all = "camelCase")]
    TaskIteration {
        task_id: String,
        name: String,
        iteration: u32,
        /// The start of the iteration's output.
        summary: String,
        input_tokens: i64,
        output_tokens: i64,
        cost_micros: i64,
    },
    #[serde(rename = "task:complete", rename_all = "camelCase")]
    TaskComplete {
        task_id: String,
        name: String,
        iterations: u32,
        /// `signal`, `max_iterations` or `stopped`.
        stop_reason: String,
    },
    #[serde(rename = "task:error", rename_all = "camelCase")]
    TaskError {
        task_id: String,
        name: String,
        code: String,
        error: String,
    },
    /// A group passed 80 % of a token budget (once per day or month).
    #[serde(rename = "budget:warning", rename_all = "camelCase")]
    BudgetWarning {
        group_id: String,
        window: String,
        used: u64,
        cap: u64,
    },
    /// A model call was refused because it would pass a group's budget.
    #[serde(rename = "budget:exceeded", rename_all = "camelCase")]
    BudgetExceeded {
        group_id: String,
        window: String,
        used: u64,
        cap: u64,
        requested: u64,
    },
    #[serde(rename = "auth:login", rename_all = "camelCase")]
    Login { username: String },
    #[serde(rename = "auth:logout", rename_all = "camelCase")]
    Logout { username: String },
    /// A channel received a message (stored before anything else happens to it).
    #[serde(rename = "message:incoming", rename_all = "camelCase")]
    MessageIncoming {
        channel_id: String,
        channel_type: String,
        message_id: i64,
        chat: String,
        sender: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        sender_name: Option<String>,
        text: String,
        /// `pending` (it will be answered), `replying` (a fixed answer) or `ignored`.
        status: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        ignored_reason: Option<String>,
    },
    /// A channel message was answered (or its reply could not be delivered).
    #[serde(rename = "message:reply", rename_all = "camelCase")]
    MessageReply {
        channel_id: String,
        channel_type: String,
        message_id: i64,
        chat: String,
        reply: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        run_id: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        conversation_id: Option<String>,
        /// `answered` or `failed`.
        status: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// A channel's connection changed: `connecting|connected|error|stopped`.
    #[serde(rename = "channel:status", rename_all = "camelCase")]
    ChannelStatus {
        channel_id: String,
        channel_type: String,
        name: String,
        status: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        /// WhatsApp linked-device pairing: the QR payload to scan.
        #[serde(skip_serializing_if = "Option::is_none")]
        qr: Option<String>,
    },
}

impl GatewayEvent {
    /// The wire name, e.g. `agent:run:start`.
    pub fn name(&self) -> &'static str {
        match self {
            GatewayEvent::RunStart { .. } => "agent:run:start",
            GatewayEvent::RunComplete { .. } => "agent:run:complete",
            GatewayEvent::RunError { .. } => "agent:run:error",
            GatewayEvent::ActorRestarted { .. } => "actor:restarted",
            GatewayEvent::ApprovalRequired { .. } => "approval:required",
            GatewayEvent::ApprovalResolved { .. } => "approval:resolved",
            GatewayEvent::TaskStart { .. } => "task:start",
            GatewayEvent::TaskIteration { .. } => "task:iteration",
            GatewayEvent::TaskComplete { .. } => "task:complete",
            GatewayEvent::TaskError { .. } => "task:error",
            GatewayEvent::BudgetWarning { .. } => "budget:warning",
            GatewayEvent::BudgetExceeded { .. } => "budget:exceeded",
            GatewayEvent::Login { .. } => "auth:login",
            GatewayEvent::Logout { .. } => "auth:logout",
            GatewayEvent::MessageIncoming { .. } => "message:incoming",
            GatewayEvent::MessageReply { .. } => "message:reply",
            GatewayEvent::ChannelStatus { .. } => "channel:status",
        }
    }

    /// A sentence about an event, for the catalogue.
    pub fn describe(name: &str) -> &'static str {
        match name {
            "agent:run:start" => {
                "An agent run started (payload: runId, source, conversationId, input)."
            }
            "agent:run:complete" => {
                "An agent run answered (output, stopReason, tokens, costMicros, metadata)."
            }
            "agent:run:error" => "An agent run failed (code, error, metadata).",
            "actor:restarted" => "A supervised part of the gateway crashed and was restarted.",
            "approval:required" => "A tool call waits for a person (approvalId, toolName, input, riskLevel, expiresAt).",
            "approval:resolved" => "An approval request was approved, rejected or timed out.",
            "task:start" => "A loop task started or continued (taskId, name, iteration).",
            "task:iteration" => "A loop task finished an iteration (summary, tokens, cost).",
            "task:complete" => "A loop task ended: signal found, iterations used up, or stopped.",
            "task:error" => "A loop task failed (code, error), e.g. budget_exceeded.",
            "budget:warning" => "An agent group used 80 % of its day or month token budget.",
            "budget:exceeded" => "A model call was refused: it would pass an agent group's budget.",
            "auth:login" => "Someone logged in to the gateway.",
            "auth:logout" => "Someone logged out.",
            "message:incoming" => "A channel received a message (channelId, chat, sender, text, status).",
            "message:reply" => "A channel message was answered (reply, runId) or its reply failed.",
            "channel:status" => "A channel connected, failed (error says why), or stopped.",
            _ => "",
        }
    }

    /// Every wire name, for catalogues (`/api/webhooks/events`) and validation.
    pub const NAMES: &'static [&'static str] = &[
        "agent:run:start",
        "agent:run:complete",
        "agent:run:error",
        "actor:restarted",
        "approval:required",
        "approval:resolved",
        "task:start",
        "task:iteration",
        "task:complete",
        "task:error",
        "budget:warning",
        "budget:exceeded",
        "auth:login",
        "auth:logout",
        "message:incoming",
        "message:reply",
        "channel:status",
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_shape_uses_event_and_payload() {
        let e = GatewayEvent::RunStart {
            run_id: "r1".into(),
            source: "webhook".into(),
            conversation_id: "c1".into(),
            input: "hi".into(),
        };
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["event"], "agent:run:start");
        assert_eq!(v["payload"]["runId"], "r1");
        assert_eq!(e.name(), "agent:run:start");
        assert!(GatewayEvent::NAMES.contains(&e.name()));
    }
}
