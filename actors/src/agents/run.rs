//! `AgentRun`: one conversation turn. It records the run, reads the conversation's history,
//! runs the tool loop, writes the outcome and the new history in one transaction, announces
//! it on the bus and answers whoever waits. Not restarted: a failure is recorded as the run's
//! error, and the supervisor always hears that the run ended (even on a panic, via `Drop`).

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use actix::prelude::*;
use agent_runner::agent_loop::LoopFailure;
use agent_runner::history::trim_to_budget;
use agent_runner::{run_agent_loop, ContentBlock, LoopParams, Message, Role, Usage};
use futures_util::FutureExt;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::recorder::{BudgetGate, RunRecorder};
use super::{AgentSupervisor, Pending, RunContext, RunFailure, RunFinished, RunRequest, RunResult};
use crate::bus::Publish;
use crate::events::GatewayEvent;
use crate::store::conversations::Append;
use crate::store::runs::{FinishRun, NewRun, StartRun};

pub struct AgentRun {
    ctx: Arc<RunContext>,
    supervisor: Addr<AgentSupervisor>,
    run_id: String,
    conversation_id: String,
    new_conversation: bool,
    request: Option<RunRequest>,
    done: Option<oneshot::Sender<RunResult>>,
    cancel: CancellationToken,
}

/// Cancel the run (its in-flight model call is dropped).
#[derive(Message)]
#[rtype(result = "()")]
pub struct CancelRun;

impl AgentRun {
    pub(super) fn new(ctx: Arc<RunContext>, supervisor: Addr<AgentSupervisor>, p: Pending) -> Self {
        Self {
            ctx,
            supervisor,
            run_id: p.run_id,
            conversation_id: p.conversation_id,
            new_conversation: p.new_conversation,
            request: Some(p.request),
            done: p.done,
            cancel: CancellationToken::new(),
        }
    }
}

impl Actor for AgentRun {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let Some(request) = self.request.take() else {
            return ctx.stop();
        };
        let work = execute(
            self.ctx.clone(),
            self.run_id.clone(),
            self.conversation_id.clone(),
            self.new_conversation,
            request,
            self.cancel.clone(),
        );
        AssertUnwindSafe(work)
            .catch_unwind()
            .into_actor(self)
            .map(|outcome, act, ctx| {
                let result = outcome.unwrap_or_else(|panic| {
                    let reason = crate::supervise::panic_message(&panic);
                    tracing::error!(run = %act.run_id, %reason, "agent run panicked");
                    act.ctx.store.do_send(finish_record(
                        &act.run_id,
                        "error",
                        None,
                        Some(("internal_error", format!("internal error: {reason}"))),
                        None,
                        &Usage::default(),
                        0,
                        0,
                        None,
                    ));
                    failed(
                        &act.run_id,
                        &act.conversation_id,
                        "internal_error",
                        reason,
                        false,
                    )
                });
                if let Some(done) = act.done.take() {
                    let _ = done.send(result);
                }
                ctx.stop();
            })
            .spawn(ctx);
    }
}

impl Drop for AgentRun {
    fn drop(&mut self) {
        self.cancel.cancel();
        self.supervisor.do_send(RunFinished {
            run_id: std::mem::take(&mut self.run_id),
        });
    }
}

impl Handler<CancelRun> for AgentRun {
    type Result = ();

    fn handle(&mut self, _: CancelRun, _: &mut Context<Self>) {
        self.cancel.cancel();
    }
}

fn store_failure(run_id: &str, conversation_id: &str, error: String) -> RunResult {
    tracing::error!(run = %run_id, %error, "could not record the run's start");
    failed(run_id, conversation_id, "store_error", error, false)
}

fn failed(
    run_id: &str,
    conversation_id: &str,
    code: &str,
    message: String,
    unavailable: bool,
) -> RunResult {
    RunResult {
        run_id: run_id.to_string(),
        conversation_id: conversation_id.to_string(),
        status: "error",
        output: None,
        stop_reason: None,
        error: Some(RunFailure {
            code: code.to_string(),
            message,
            unavailable,
        }),
        usage: Usage::default(),
        cost_micros: 0,
        llm_calls: 0,
        tool_calls: 0,
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) fn finish_record(
    run_id: &str,
    status: &'static str,
    output: Option<String>,
    error: Option<(&str, String)>,
    stop_reason: Option<&str>,
    usage: &Usage,
    cost_micros: i64,
    llm_calls: u32,
    conversation: Option<Append>,
) -> FinishRun {
    FinishRun {
        id: run_id.to_string(),
        status,
        output,
        error_code: error.as_ref().map(|e| e.0.to_string()),
        error: error.map(|e| e.1),
        stop_reason: stop_reason.map(str::to_string),
        input_tokens: usage.input_tokens as i64,
        output_tokens: usage.output_tokens as i64,
        cache_creation_tokens: usage.cache_creation_input_tokens as i64,
        cache_read_tokens: usage.cache_read_input_tokens as i64,
        cost_micros,
        llm_calls: i64::from(llm_calls),
        conversation,
        channel_message: None,
    }
}

fn parse_history(rows: Vec<(String, String)>) -> Vec<Message> {
    rows.into_iter()
        .filter_map(|(role, content)| {
            let role = match role.as_str() {
                "user" => Role::User,
                "assistant" => Role::Assistant,
                _ => return None,
            };
            let content: Vec<ContentBlock> = serde_json::from_str(&content).ok()?;
            Some(Message { role, content })
        })
        .collect()
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::User => "user",
        Role::Assistant => "assistant",
    }
}

/// A run asked to continue a conversation that belongs to someone else: recorded as failed,
/// without reading or adding to that conversation (and without saying whose it is).
async fn refuse_conversation(
    ctx: &RunContext,
    run_id: &str,
    conversation_id: &str,
    request: RunRequest,
) -> RunResult {
    let code = "conversation_not_found";
    let message = "conversationId: no conversation with this id for this webhook".to_string();
    let record = finish_record(
        run_id,
        "error",
        None,
        Some((code, message.clone())),
        None,
        &Usage::default(),
        0,
        0,
        None,
    );
    let result = failed(run_id, conversation_id, code, message, false);
    conclude(ctx, request, result, record).await
}

/// The whole run, start to finish.
async fn execute(
    ctx: Arc<RunContext>,
    run_id: String,
    conversation_id: String,
    new_conversation: bool,
    request: RunRequest,
    cancel: CancellationToken,
) -> RunResult {
    let defaults = &ctx.defaults;
    let group = request.group.clone();
    let model = group
        .as_ref()
        .and_then(|g| g.model.clone())
        .unwrap_or_else(|| defaults.model.clone());
    let new_run = NewRun {
        id: run_id.clone(),
        source: request.source.clone(),
        input: request.input.clone(),
        conversation_id: Some(conversation_id.clone()),
        group_id: group.as_ref().map(|g| g.group_id.clone()),
        model: model.clone(),
        metadata: request.metadata.as_ref().map(|m| m.to_string()),
    };
    // One round trip records the start and reads the history. A new conversation has no
    // history, so its run does not wait: the writer applies writes in the order they are
    // sent, so this start is written before anything else the run records.
    let history = if new_conversation {
        ctx.store.do_send(StartRun {
            run: new_run,
            history_limit: None,
            owner: None,
        });
        Vec::new()
    } else {
        let started = ctx
            .store
            .send(StartRun {
                run: new_run,
                history_limit: Some(defaults.history_max_messages),
                owner: request.owner.clone(),
            })
            .await;
        match started {
            Ok(Ok(Some(rows))) => parse_history(rows),
            Ok(Ok(None)) => {
                return refuse_conversation(&ctx, &run_id, &conversation_id, request).await
            }
            Ok(Err(e)) => return store_failure(&run_id, &conversation_id, e.to_string()),
            Err(e) => return store_failure(&run_id, &conversation_id, e.to_string()),
        }
    };
    ctx.bus.do_send(Publish(GatewayEvent::RunStart {
        run_id: run_id.clone(),
        source: request.source.clone(),
        conversation_id: conversation_id.clone(),
        input: request.input.clone(),
    }));

    let user_turn = Message::user_text(request.input.clone());
    let mut messages = trim_to_budget(history, defaults.history_token_budget);
    messages.push(user_turn.clone());

    let params = LoopParams {
        model,
        system: group
            .as_ref()
            .and_then(|g| g.system_prompt.clone())
            .or_else(|| defaults.system_prompt.clone()),
        max_tokens: defaults.max_tokens,
        max_iterations: request
            .max_iterations
            .or_else(|| group.as_ref().and_then(|g| g.max_iterations))
            .unwrap_or(defaults.max_iterations),
    };
    let (llm, toolbox) = match &group {
        Some(g) => (&g.llm, &g.toolbox),
        None => (&ctx.llm, &ctx.toolbox),
    };
    let recorder = RunRecorder {
        run_id: run_id.clone(),
        group_id: group.as_ref().map(|g| g.group_id.clone()),
        provider: llm.config().provider.name(),
        store: ctx.store.clone(),
        pricing: ctx.pricing.clone(),
        budget: group.as_ref().filter(|g| g.budgeted).map(|g| BudgetGate {
            budgets: ctx.budgets.clone(),
            group_id: g.group_id.clone(),
            current: Default::default(),
        }),
        approvals: ctx.approvals.clone(),
    };
    let outcome = run_agent_loop(llm, &params, messages, toolbox, &recorder, &cancel).await;
    // Gives back a reservation the loop left (a failed call).
    drop(recorder);

    let (result, record) = match outcome {
        Ok(o) => {
            let cost = ctx.pricing.cost_micros(&params.model, &o.usage);
            let mut appended = vec![(
                role_name(user_turn.role),
                serde_json::to_string(&user_turn.content).unwrap_or_default(),
            )];
            appended.extend(o.new_messages.iter().map(|m| {
                (
                    role_name(m.role),
                    serde_json::to_string(&m.content).unwrap_or_default(),
                )
            }));
            let mut record = finish_record(
                &run_id,
                "complete",
                Some(o.text.clone()),
                None,
                Some(o.stop.as_str()),
                &o.usage,
                cost,
                o.llm_calls,
                Some(Append {
                    conversation_id: conversation_id.clone(),
                    source: request.source.clone(),
                    owner: request.owner.clone(),
                    messages: appended,
                }),
            );
            record.channel_message = request.channel_message;
            let result = RunResult {
                run_id: run_id.clone(),
                conversation_id: conversation_id.clone(),
                status: "complete",
                output: Some(o.text),
                stop_reason: Some(o.stop.as_str()),
                error: None,
                usage: o.usage,
                cost_micros: cost,
                llm_calls: o.llm_calls,
                tool_calls: o
                    .new_messages
                    .iter()
                    .flat_map(|m| &m.content)
                    .filter(|b| matches!(b, ContentBlock::ToolUse { .. }))
                    .count() as u32,
            };
            (result, record)
        }
        Err(e) => {
            let cost = ctx.pricing.cost_micros(&params.model, &e.usage);
            let unavailable = matches!(&e.failure, LoopFailure::Llm(l) if l.is_unavailable());
            let code = e.failure.code();
            let message = e.failure.to_string();
            // A failed turn is not added to the conversation: history stays well-formed.
            let record = finish_record(
                &run_id,
                "error",
                None,
                Some((code, message.clone())),
                None,
                &e.usage,
                cost,
                e.llm_calls,
                None,
            );
            let mut result = failed(&run_id, &conversation_id, code, message, unavailable);
            result.usage = e.usage;
            result.cost_micros = cost;
            result.llm_calls = e.llm_calls;
            (result, record)
        }
    };
    conclude(&ctx, request, result, record).await
}

/// Commit a run's outcome, then tell the bus how it ended.
async fn conclude(
    ctx: &RunContext,
    request: RunRequest,
    result: RunResult,
    record: FinishRun,
) -> RunResult {
    if let Ok(Err(e)) | Err(e) = ctx
        .store
        .send(record)
        .await
        .map_err(|e| crate::StoreError::Panic(e.to_string()))
    {
        tracing::error!(run = %result.run_id, error = %e, "could not record the run's outcome");
    }
    let (run_id, conversation_id, metadata) = (
        result.run_id.clone(),
        result.conversation_id.clone(),
        request.metadata,
    );
    let event = match &result.error {
        None => GatewayEvent::RunComplete {
            run_id,
            source: request.source,
            conversation_id,
            output: result.output.clone().unwrap_or_default(),
            stop_reason: result.stop_reason.unwrap_or("end_turn").to_string(),
            input_tokens: result.usage.input_tokens as i64,
            output_tokens: result.usage.output_tokens as i64,
            cost_micros: result.cost_micros,
            metadata,
        },
        Some(f) => GatewayEvent::RunError {
            run_id,
            source: request.source,
            conversation_id,
            code: f.code.clone(),
            error: f.message.clone(),
            metadata,
        },
    };
    ctx.bus.do_send(Publish(event));
    result
}
