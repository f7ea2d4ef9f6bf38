//! `AgentSupervisor`: starts one `AgentRun` actor per run, spread over a few arbiters, keeps the
//! number running under a limit with a bounded queue behind it (a full queue is refused, never
//! an unbounded pile-up), and hears how each run ended.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use actix::prelude::*;
use agent_runner::{LlmClient, ToolBox, Usage};
use serde::Serialize;
use tokio::sync::oneshot;

use crate::bus::EventBus;
use crate::pricing::Pricing;
use crate::store::runs::{NewRun, QueueRun};
use crate::store::Store;

mod recorder;
mod run;

pub use run::AgentRun;

/// Settings every run starts from (agent groups override them later).
#[derive(Debug, Clone)]
pub struct AgentDefaults {
    pub model: String,
    pub system_prompt: Option<String>,
    pub max_tokens: u32,
    pub max_iterations: u32,
    /// Conversation history is trimmed to about this many tokens, oldest turns first.
    pub history_token_budget: usize,
    /// At most this many stored messages are read back per run.
    pub history_max_messages: i64,
}

#[derive(Debug, Clone, Copy)]
pub struct RunLimits {
    pub max_concurrent: usize,
    pub queue_size: usize,
    /// Arbiters (threads) the runs are spread over.
    pub threads: usize,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct RunRequest {
    /// Where it came from: `webhook`, `telegram`, `task`, ...
    pub source: String,
    pub input: String,
    /// Continue this conversation (a new one when absent).
    pub conversation_id: Option<String>,
    /// Caller data carried into the run record and its events.
    pub metadata: Option<serde_json::Value>,
    pub max_iterations: Option<u32>,
    /// The agent group whose prompt, model, key, tools and budget the run uses.
    pub group: Option<crate::groups::RunSettings>,
    /// The channel message (inbox id) this run answers.
    pub channel_message: Option<i64>,
    /// Who the conversation belongs to (`webhook:<id>`): a conversation owned by someone else
    /// is not continued. None: no check, and a new conversation has no owner.
    pub owner: Option<String>,
}

/// Start a run. With `wait`, the ticket carries a receiver for its result.
#[derive(Message)]
#[rtype(result = "Result<RunTicket, StartRunError>")]
pub struct StartAgentRun {
    pub request: RunRequest,
    pub wait: bool,
    /// Run on this arbiter (the caller's own, to save thread hops); else on the pool's.
    pub arbiter: Option<ArbiterHandle>,
}

pub struct RunTicket {
    pub run_id: String,
    pub conversation_id: String,
    pub queued: bool,
    pub done: Option<oneshot::Receiver<RunResult>>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum StartRunError {
    #[error("the gateway is at its limit of concurrent runs and its queue is full")]
    Busy { retry_after_secs: u64 },
}

/// How a run ended.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunResult {
    pub run_id: String,
    pub conversation_id: String,
    /// `complete` or `error`.
    pub status: &'static str,
    pub output: Option<String>,
    pub stop_reason: Option<&'static str>,
    pub error: Option<RunFailure>,
    #[serde(skip)]
    pub usage: Usage,
    pub cost_micros: i64,
    pub llm_calls: u32,
    pub tool_calls: u32,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunFailure {
    pub code: String,
    pub message: String,
    /// The model provider was overloaded or unreachable (worth retrying later).
    pub unavailable: bool,
}

/// A run has ended (sent by the run itself).
#[derive(Message)]
#[rtype(result = "()")]
pub struct RunFinished {
    pub run_id: String,
}

/// Cancel a run (its in-flight model call is dropped); a queued run is dropped from the queue.
#[derive(Message)]
#[rtype(result = "()")]
pub struct CancelAgentRun {
    pub run_id: String,
}

/// Running and queued counts.
#[derive(Message)]
#[rtype(result = "RunCounts")]
pub struct GetRunCounts;

#[derive(Debug, Clone, Copy, Serialize, MessageResponse)]
#[serde(rename_all = "camelCase")]
pub struct RunCounts {
    pub running: usize,
    pub queued: usize,
}

/// Everything an `AgentRun` needs that is the same for every run.
pub struct RunContext {
    pub llm: LlmClient,
    pub defaults: AgentDefaults,
    pub toolbox: Arc<ToolBox>,
    pub pricing: Arc<Pricing>,
    pub store: Store,
    pub bus: Addr<EventBus>,
    pub budgets: Addr<crate::budgets::Budgets>,
    pub approvals: Addr<crate::approvals::ApprovalDesk>,
}

pub(crate) struct Pending {
    pub(crate) run_id: String,
    pub(crate) conversation_id: String,
    /// The caller named no conversation: there is no history to read.
    pub(crate) new_conversation: bool,
    pub(crate) request: RunRequest,
    pub(crate) done: Option<oneshot::Sender<RunResult>>,
    arbiter: Option<ArbiterHandle>,
}

pub struct AgentSupervisor {
    ctx: Arc<RunContext>,
    limits: RunLimits,
    arbiters: Vec<ArbiterHandle>,
    next_arbiter: usize,
    running: HashMap<String, Addr<AgentRun>>,
    queue: VecDeque<Pending>,
    /// Runs started and not yet finished (this actor's count, shared with `RunLauncher`s so a
    /// caller can take a free slot without a round trip here).
    admitted: Arc<AtomicUsize>,
    /// The queue's length, published for the launchers (they never overtake the queue).
    queued: Arc<AtomicUsize>,
}

/// Starts runs on the caller's own thread while the gateway is below its limit and nothing
/// waits in the queue: one atomic increment instead of a round trip to the supervisor. Past
/// the limit it hands the request to the supervisor, which queues it. The supervisor still
/// knows every run (for cancelling and counting) and hears when each ends.
#[derive(Clone)]
pub struct RunLauncher {
    ctx: Arc<RunContext>,
    admitted: Arc<AtomicUsize>,
    queued: Arc<AtomicUsize>,
    max: usize,
    supervisor: Addr<AgentSupervisor>,
}

/// A run started by a launcher: the supervisor records it as running.
#[derive(Message)]
#[rtype(result = "()")]
struct Adopt {
    run_id: String,
    run: Addr<AgentRun>,
}

/// Take one of `max` slots if one is free. Never counts past `max`, even for a moment: a
/// refused caller that had bumped the count could make the supervisor queue a run while
/// nothing runs, and with nothing running no `RunFinished` would ever start the queue.
fn admit(admitted: &AtomicUsize, max: usize) -> bool {
    admitted
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < max).then_some(n + 1)
        })
        .is_ok()
}

/// A new run's pending record and the ticket its caller gets.
fn prepare(
    request: RunRequest,
    wait: bool,
    arbiter: Option<ArbiterHandle>,
) -> (Pending, RunTicket) {
    let run_id = crate::time_ordered_id();
    let new_conversation = request.conversation_id.is_none();
    let conversation_id = request
        .conversation_id
        .clone()
        .unwrap_or_else(crate::time_ordered_id);
    let (tx, rx) = if wait {
        let (tx, rx) = oneshot::channel();
        (Some(tx), Some(rx))
    } else {
        (None, None)
    };
    let ticket = RunTicket {
        run_id: run_id.clone(),
        conversation_id: conversation_id.clone(),
        queued: false,
        done: rx,
    };
    let pending = Pending {
        run_id,
        conversation_id,
        new_conversation,
        request,
        done: tx,
        arbiter,
    };
    (pending, ticket)
}

impl RunLauncher {
    /// Start a run (on this thread when there is room); `wait` gives the ticket a receiver.
    pub async fn start(&self, request: RunRequest, wait: bool) -> Result<RunTicket, StartRunError> {
        if self.queued.load(Ordering::Acquire) == 0 && admit(&self.admitted, self.max) {
            let (pending, ticket) = prepare(request, wait, None);
            let run_id = pending.run_id.clone();
            let run = AgentRun::new(self.ctx.clone(), self.supervisor.clone(), pending).start();
            // Sent before the run can end (it runs on this thread, after this returns), so the
            // supervisor hears of it before it hears that it finished.
            self.supervisor.do_send(Adopt { run_id, run });
            return Ok(ticket);
        }
        self.supervisor
            .send(StartAgentRun {
                request,
                wait,
                arbiter: Some(Arbiter::current()),
            })
            .await
            .unwrap_or(Err(StartRunError::Busy {
                retry_after_secs: 5,
            }))
    }
}

impl AgentSupervisor {
    pub fn new(ctx: RunContext, limits: RunLimits) -> Self {
        Self {
            ctx: Arc::new(ctx),
            limits,
            arbiters: Vec::new(),
            next_arbiter: 0,
            running: HashMap::new(),
            queue: VecDeque::new(),
            admitted: Arc::new(AtomicUsize::new(0)),
            queued: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// A launcher for callers that start runs often (the web workers).
    pub fn launcher(&self, me: Addr<AgentSupervisor>) -> RunLauncher {
        RunLauncher {
            ctx: self.ctx.clone(),
            admitted: self.admitted.clone(),
            queued: self.queued.clone(),
            max: self.limits.max_concurrent,
            supervisor: me,
        }
    }

    /// Take a slot for a run, if one is free.
    fn admit(&self) -> bool {
        admit(&self.admitted, self.limits.max_concurrent)
    }

    fn publish_queue(&self) {
        self.queued.store(self.queue.len(), Ordering::Release);
    }

    fn launch(&mut self, p: Pending, me: Addr<AgentSupervisor>) {
        let arbiter = match &p.arbiter {
            Some(a) => a.clone(),
            None => {
                self.next_arbiter = self.next_arbiter.wrapping_add(1);
                self.arbiters[self.next_arbiter % self.arbiters.len()].clone()
            }
        };
        let ctx = self.ctx.clone();
        let run_id = p.run_id.clone();
        let addr = AgentRun::start_in_arbiter(&arbiter, move |_| AgentRun::new(ctx, me, p));
        self.running.insert(run_id, addr);
    }
}

impl Actor for AgentSupervisor {
    type Context = Context<Self>;

    fn started(&mut self, _: &mut Context<Self>) {
        if self.arbiters.is_empty() {
            self.arbiters = (0..self.limits.threads.max(1))
                .map(|_| Arbiter::new().handle())
                .collect();
        }
    }
}

impl actix::Supervised for AgentSupervisor {}

impl Handler<StartAgentRun> for AgentSupervisor {
    type Result = Result<RunTicket, StartRunError>;

    fn handle(&mut self, msg: StartAgentRun, ctx: &mut Context<Self>) -> Self::Result {
        let (pending, mut ticket) = prepare(msg.request, msg.wait, msg.arbiter);
        if self.queue.is_empty() && self.admit() {
            self.launch(pending, ctx.address());
        } else if self.queue.len() < self.limits.queue_size {
            self.ctx.store.do_send(QueueRun {
                run: NewRun {
                    id: pending.run_id.clone(),
                    source: pending.request.source.clone(),
                    input: pending.request.input.clone(),
                    conversation_id: Some(pending.conversation_id.clone()),
                    group_id: pending.request.group.as_ref().map(|g| g.group_id.clone()),
                    model: pending
                        .request
                        .group
                        .as_ref()
                        .and_then(|g| g.model.clone())
                        .unwrap_or_else(|| self.ctx.defaults.model.clone()),
                    metadata: pending.request.metadata.as_ref().map(|m| m.to_string()),
                },
            });
            self.queue.push_back(pending);
            self.publish_queue();
            ticket.queued = true;
        } else {
            return Err(StartRunError::Busy {
                retry_after_secs: 5,
            });
        }
        Ok(ticket)
    }
}

impl Handler<Adopt> for AgentSupervisor {
    type Result = ();

    fn handle(&mut self, msg: Adopt, _: &mut Context<Self>) {
        self.running.insert(msg.run_id, msg.run);
    }
}

impl Handler<RunFinished> for AgentSupervisor {
    type Result = ();

    fn handle(&mut self, msg: RunFinished, ctx: &mut Context<Self>) {
        self.running.remove(&msg.run_id);
        self.admitted.fetch_sub(1, Ordering::AcqRel);
        while !self.queue.is_empty() && self.admit() {
            if let Some(p) = self.queue.pop_front() {
                self.launch(p, ctx.address());
            }
        }
        self.publish_queue();
    }
}

impl Handler<CancelAgentRun> for AgentSupervisor {
    type Result = ();

    fn handle(&mut self, msg: CancelAgentRun, _: &mut Context<Self>) {
        if let Some(run) = self.running.get(&msg.run_id) {
            run.do_send(run::CancelRun);
        } else if let Some(at) = self.queue.iter().position(|p| p.run_id == msg.run_id) {
            // Dropping its `done` sender tells whoever waits; the record says what happened.
            self.queue.remove(at);
            self.publish_queue();
            self.ctx.store.do_send(run::finish_record(
                &msg.run_id,
                "error",
                None,
                Some(("cancelled", "cancelled before it started".into())),
                None,
                &Usage::default(),
                0,
                0,
                None,
            ));
        }
    }
}

impl Handler<GetRunCounts> for AgentSupervisor {
    type Result = RunCounts;

    fn handle(&mut self, _: GetRunCounts, _: &mut Context<Self>) -> RunCounts {
        RunCounts {
            running: self.running.len(),
            queued: self.queue.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admission_never_counts_past_the_limit() {
        let admitted = AtomicUsize::new(0);
        assert!(admit(&admitted, 2));
        assert!(admit(&admitted, 2));
        // Refused attempts leave the count at the limit, not above it.
        for _ in 0..3 {
            assert!(!admit(&admitted, 2));
            assert_eq!(admitted.load(Ordering::SeqCst), 2);
        }
        admitted.fetch_sub(1, Ordering::SeqCst);
        assert!(admit(&admitted, 2));
    }

    #[test]
    fn ids_are_time_ordered_and_random() {
        let a = crate::time_ordered_id();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = crate::time_ordered_id();
        assert!(a < b, "{a} then {b}");
        let parsed = uuid::Uuid::parse_str(&a).unwrap();
        assert_eq!(parsed.get_version_num(), 7);
        // Ids of the same millisecond still differ in their random part.
        let same: std::collections::HashSet<String> =
            (0..1000).map(|_| crate::time_ordered_id()).collect();
        assert_eq!(same.len(), 1000);
    }
}
