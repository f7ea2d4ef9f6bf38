//! `Gateway`: the root of the actor tree. It builds the tree from the `Config`, runs the
//! periodic housekeeping, and owns shutdown: on SIGTERM/SIGINT it stops the web server
//! gracefully and then the system.

use std::time::Duration;

use actix::prelude::*;
use loop_gateway_actors::store::runs::MarkInterruptedRuns;
use loop_gateway_actors::store::sessions::PurgeExpiredSessions;
use loop_gateway_actors::store::{self, Pool};
use loop_gateway_actors::supervise::{start_supervised, AttachBus};
use std::sync::Arc;

use agent_runner::{LlmClient, LlmConfig, Provider};
use loop_gateway_actors::agents::{AgentDefaults, AgentSupervisor, RunContext, RunLimits};
use loop_gateway_actors::approvals::ApprovalDesk;
use loop_gateway_actors::budgets::{window_starts, Budgets};
use loop_gateway_actors::channels::ChannelManager;
use loop_gateway_actors::groups::AgentGroups;
use loop_gateway_actors::pricing::Pricing;
use loop_gateway_actors::skills::{builtin_toolbox, HttpRequestConfig, Skills};
use loop_gateway_actors::tasks::{LoopTasks, TaskConfig};
use loop_gateway_actors::webhooks::{DeliveryConfig, Webhooks};
use loop_gateway_actors::{EventBus, SecretBox, Store, Supervision};
use loop_gateway_web::{StopServer, WebConfig, WebDeps, WebServer};

use crate::config::{Config, ProviderKind, TaskOnRestart};

const SESSION_PURGE_EVERY: Duration = Duration::from_secs(600);
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

pub struct Gateway {
    store: Store,
    web: Addr<WebServer>,
    signals: Option<Signals>,
    shutting_down: bool,
}

/// Stop the gateway: graceful HTTP shutdown, then the actor system.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown {
    pub reason: &'static str,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot install the signal handlers: {0}")]
    Signals(std::io::Error),
    #[error("{0}")]
    Setup(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
}

impl Gateway {
    /// Build the tree. Must run inside an actix `System`.
    pub fn build(
        config: &Config,
        pool: Pool,
        secrets: SecretBox,
        setup_code: Option<String>,
    ) -> Result<Addr<Gateway>, StartError> {
        let signals = Signals::register().map_err(StartError::Signals)?;
        let supervision = Supervision::default().start();
        let bus = start_supervised("event_bus", &supervision, |_| EventBus::default());
        supervision.do_send(AttachBus(bus.clone()));
        // Read what the actors start from before anyone can call them.
        let setup = |e: store::StoreError| StartError::Setup(e.to_string());
        // Before anything can start a run: runs the last stop left unfinished are marked, so
        // a run started now is never mistaken for one of them.
        {
            let conn = pool.get().map_err(|e| StartError::Setup(e.to_string()))?;
            let n =
                store::runs::mark_interrupted_runs(&conn, MarkInterruptedRuns).map_err(setup)?;
            if n > 0 {
                tracing::warn!(
                    runs = n,
                    "marked runs left unfinished by the last stop as interrupted"
                );
            }
        }
        let (day_start, month_start) =
            window_starts(config.budget_timezone, loop_gateway_actors::time::now_ms());
        let (
            webhook_rows,
            pending_deliveries,
            group_rows,
            day_usage,
            month_usage,
            task_rows,
            rules,
            approvals_pending,
            channel_rows,
            channel_last_seen,
            channel_open,
            channel_bindings,
        ) = {
            let conn = pool.get().map_err(|e| StartError::Setup(e.to_string()))?;
            (
                store::webhooks::load_webhooks(&conn).map_err(setup)?,
                store::webhooks::load_pending_deliveries(&conn).map_err(setup)?,
                store::groups::load_groups(&conn).map_err(setup)?,
                store::groups::tokens_since(&conn, day_start).map_err(setup)?,
                store::groups::tokens_since(&conn, month_start).map_err(setup)?,
                store::tasks::load_tasks(&conn).map_err(setup)?,
                store::approvals::load_rules(&conn).map_err(setup)?,
                store::approvals::load_pending(&conn).map_err(setup)?,
                store::channels::load_channels(&conn).map_err(setup)?,
                store::channels::last_message_times(&conn).map_err(setup)?,
                store::channels::load_open_messages(&conn).map_err(setup)?,
                store::channels::load_bindings(&conn).map_err(setup)?,
            )
        };
        let store = Store::start(pool, usize::from(config.store_threads))
            .map_err(|e| StartError::Setup(e.to_string()))?;

        let (allow_nets, allow_hosts) = config.http_request_allow();
        let toolbox = Arc::new(
            builtin_toolbox(HttpRequestConfig {
                allow_nets,
                allow_hosts,
                ..HttpRequestConfig::default()
            })
            .map_err(StartError::Setup)?,
        );
        let skills = start_supervised("skills", &supervision, {
            let toolbox = toolbox.clone();
            move |_| Skills::new(toolbox)
        });
        let llm =
            LlmClient::new(llm_config(config)).map_err(|e| StartError::Setup(e.to_string()))?;
        let budgets = start_supervised("budgets", &supervision, {
            let (tz, bus) = (config.budget_timezone, bus.clone());
            move |_| Budgets::new(tz, bus, day_usage, month_usage)
        });
        let groups = AgentGroups::new(
            store.clone(),
            budgets.clone(),
            secrets.clone(),
            llm_config(config),
            toolbox.clone(),
            group_rows,
            channel_bindings,
        )
        .map_err(StartError::Setup)?;
        let groups = start_supervised("agent_groups", &supervision, move |_| groups);
        let pricing = Arc::new(
            Pricing::with_overrides(config.model_prices.as_deref()).map_err(StartError::Setup)?,
        );
        let approvals = ApprovalDesk::new(
            store.clone(),
            bus.clone(),
            toolbox.clone(),
            rules,
            approvals_pending,
        );
        let approvals = start_supervised("approval_desk", &supervision, move |_| approvals);
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let run_context = RunContext {
            llm,
            defaults: AgentDefaults {
                model: config.default_model.clone(),
                system_prompt: Some(config.default_system_prompt.clone())
                    .filter(|s| !s.trim().is_empty()),
                max_tokens: config.max_tokens,
                max_iterations: config.max_iterations,
                history_token_budget: config.history_token_budget,
                history_max_messages: 400,
            },
            toolbox,
            pricing,
            store: store.clone(),
            bus: bus.clone(),
            budgets: budgets.clone(),
            approvals: approvals.clone(),
        };
        let run_limits = RunLimits {
            max_concurrent: config.max_concurrent_runs as usize,
            queue_size: config.run_queue_size as usize,
            threads: config.run_threads.map_or(cores, usize::from),
        };
        let mut launcher = None;
        let agents = start_supervised("agent_supervisor", &supervision, |ctx| {
            let supervisor = AgentSupervisor::new(run_context, run_limits);
            launcher = Some(supervisor.launcher(ctx.address()));
            supervisor
        });
        let launcher = launcher.ok_or_else(|| StartError::Setup("no run launcher".into()))?;
        let tasks = LoopTasks::new(
            store.clone(),
            bus.clone(),
            agents.clone(),
            groups.clone(),
            TaskConfig {
                max_concurrent: config.max_concurrent_tasks as usize,
                resume: config.task_on_restart == TaskOnRestart::Resume,
                data_dir: config.data_dir.clone(),
                context_chars: 20_000,
            },
            task_rows,
        );
        let tasks = start_supervised("loop_tasks", &supervision, move |_| tasks);
        let webhooks = Webhooks::new(
            store.clone(),
            bus.clone(),
            secrets.clone(),
            DeliveryConfig {
                max_attempts: config.webhook_max_attempts,
                retry_base: Duration::from_millis(config.webhook_retry_base_ms),
                ..DeliveryConfig::default()
            },
            webhook_rows,
            pending_deliveries,
        );
        let webhook_tokens = webhooks.directory();
        let webhooks = start_supervised("webhooks", &supervision, move |_| webhooks);
        let channels = ChannelManager::new(
            store.clone(),
            bus.clone(),
            agents.clone(),
            groups.clone(),
            approvals.clone(),
            config.data_dir.clone(),
            secrets.clone(),
            supervision.clone(),
            channel_rows,
            channel_last_seen,
            channel_open,
        );
        let channels = start_supervised("channel_manager", &supervision, move |_| channels);

        let web_config = WebConfig {
            host: config.host.clone(),
            port: config.port,
            rate_limit_per_minute: config.rate_limit_per_minute,
            webhook_rate_limit_per_minute: config.webhook_rate_limit_per_minute,
            login_rate_limit_per_minute: config.login_rate_limit_per_minute,
            trusted_proxies: config.trusted_proxies.clone(),
            session_ttl_hours: config.session_ttl_hours,
            bcrypt_cost: config.bcrypt_cost,
            body_limit_bytes: usize::try_from(config.max_body_bytes).unwrap_or(usize::MAX),
            setup_code,
            shutdown_grace_seconds: config.shutdown_grace_seconds,
            workers: config.http_workers.map(usize::from),
            sync_timeout_seconds: config.sync_timeout_seconds,
        };
        let (web, addrs) = WebServer::start(WebDeps {
            store: store.clone(),
            bus,
            supervision,
            agents,
            launcher,
            webhooks,
            webhook_tokens,
            skills,
            groups,
            budgets,
            tasks,
            approvals,
            channels,
            config: web_config,
            ticket_key: secrets.derive_key("ws-ticket"),
        })
        .map_err(|source| StartError::Bind {
            addr: format!("{}:{}", config.host, config.port),
            source,
        })?;
        for addr in &addrs {
            // A plain line on stdout (not a log line) that people and test harnesses can wait for.
            println!("loop-gateway listening on http://{addr}");
            tracing::info!(%addr, "listening");
        }
        Ok(Gateway {
            store,
            web,
            signals: Some(signals),
            shutting_down: false,
        }
        .start())
    }
}

impl Actor for Gateway {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(SESSION_PURGE_EVERY, |act, _| {
            act.store.do_send(PurgeExpiredSessions);
        });
        ctx.run_interval(CHECKPOINT_EVERY, |act, _| {
            act.store.do_send(store::Checkpoint);
        });
        // The process's one signal handler (actix-web's own is disabled).
        if let Some(signals) = self.signals.take() {
            let me = ctx.address();
            actix_rt::spawn(async move {
                let reason = signals.recv().await;
                me.do_send(Shutdown { reason });
            });
        }
    }
}

/// SIGTERM and SIGINT, registered before the gateway says it is listening so that a signal
/// arriving right after start-up is handled, not fatal.
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn register() -> std::io::Result<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Signals {
                term: signal(SignalKind::terminate())?,
                int: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    async fn recv(mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.term.recv() => "SIGTERM",
                _ = self.int.recv() => "SIGINT",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "SIGINT"
        }
    }
}

impl Handler<Shutdown> for Gateway {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, msg: Shutdown, _: &mut Context<Self>) -> Self::Result {
        if self.shutting_down {
            return Box::pin(fut::ready(()));
        }
        self.shutting_down = true;
        tracing::info!(
            reason = msg.reason,
            "shutting down: finishing in-flight requests"
        );
        let web = self.web.clone();
        let store = self.store.clone();
        Box::pin(
            async move {
                let _ = web.send(StopServer).await;
                // Writes still queued (records of runs that just ended) reach the disk first.
                if let Err(e) = store::answered(store.send(store::Barrier).await) {
                    tracing::error!(error = %e, "could not flush the last writes");
                }
            }
            .into_actor(self)
            .map(|_, _, _| {
                tracing::info!("stopped");
                System::current().stop();
            }),
        )
    }
}

fn llm_config(config: &Config) -> LlmConfig {
    let (provider, base_url, api_key) = match config.llm_provider {
        ProviderKind::Anthropic => (
            Provider::Anthropic,
            config.anthropic_base_url.clone(),
            config.anthropic_api_key.clone(),
        ),
        ProviderKind::OpenaiCompatible => (
            Provider::OpenAiCompatible,
            config.openai_base_url.clone(),
            config.openai_api_key.clone(),
        ),
    };
    LlmConfig {
        provider,
        base_url,
        api_key,
        streaming: config.llm_streaming,
        max_retries: config.llm_max_retries,
        timeout: Duration::from_secs(config.llm_timeout_seconds),
        backoff_base: Duration::from_millis(config.llm_retry_base_ms),
        backoff_max: Duration::from_secs(30),
        http2_prior_knowledge: config.llm_http2_prior_knowledge,
        connections: config.llm_connections.into(),
    }
}

/// Open the database for an offline command (migrate, admin): same file, same migrations.
pub fn open_store(config: &Config) -> Result<Pool, store::StoreError> {
    store::open(&config.database_path(), 2)
}
