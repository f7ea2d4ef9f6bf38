//! What every handler can reach: the addresses of the actors it talks to and the web layer's
//! own settings. No business state lives here; it lives in the actors.

use std::sync::Arc;
use std::time::Instant;

use actix::Addr;
use ipnet::IpNet;
use loop_gateway_actors::agents::AgentSupervisor;
use loop_gateway_actors::skills::Skills;
use loop_gateway_actors::webhooks::Webhooks;
use loop_gateway_actors::{EventBus, Store, Supervision};

use crate::ratelimit::Limiters;

/// The web layer's settings, derived from the gateway's `Config`.
#[derive(Debug, Clone)]
pub struct WebConfig {
    pub host: String,
    pub port: u16,
    pub rate_limit_per_minute: u32,
    pub webhook_rate_limit_per_minute: u32,
    pub login_rate_limit_per_minute: u32,
    pub trusted_proxies: Vec<IpNet>,
    pub session_ttl_hours: u32,
    pub bcrypt_cost: u32,
    pub body_limit_bytes: usize,
    /// Required by `/api/auth/setup` when the gateway listens beyond loopback and no user
    /// exists yet; printed to the log at start.
    pub setup_code: Option<String>,
    pub shutdown_grace_seconds: u64,
    pub workers: Option<usize>,
    /// How long a sync webhook invoke waits for the agent.
    pub sync_timeout_seconds: u64,
}

pub struct AppState {
    pub store: Store,
    pub bus: Addr<EventBus>,
    pub supervision: Addr<Supervision>,
    pub agents: Addr<AgentSupervisor>,
    pub launcher: loop_gateway_actors::agents::RunLauncher,
    pub webhooks: Addr<Webhooks>,
    pub webhook_tokens: loop_gateway_actors::webhooks::TokenDirectory,
    pub skills: Addr<Skills>,
    pub groups: Addr<loop_gateway_actors::groups::AgentGroups>,
    pub budgets: Addr<loop_gateway_actors::budgets::Budgets>,
    pub tasks: Addr<loop_gateway_actors::tasks::LoopTasks>,
    pub approvals: Addr<loop_gateway_actors::approvals::ApprovalDesk>,
    pub channels: Addr<loop_gateway_actors::channels::ChannelManager>,
    pub config: Arc<WebConfig>,
    pub limits: Arc<Limiters>,
    /// Signs WebSocket tickets (derived from the gateway secret, never the secret itself).
    pub ticket_key: [u8; 32],
    pub started: Instant,
}
