//! Loop mode: `LoopTasks` supervises one `LoopTask` actor per running task. A task runs an
//! agent again and again, each iteration an ordinary agent run (tools, budgets and records
//! included) that sees the prompt and the output so far, until the output holds the
//! completion signal, the iterations are used up, it is stopped (an in-flight model call is
//! cancelled), or a run fails. Each iteration is recorded before the next starts, so a task
//! the process lost continues after a restart from its last recorded iteration.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use actix::prelude::*;
use serde_json::json;

use crate::agents::{AgentSupervisor, CancelAgentRun, RunRequest, StartAgentRun, StartRunError};
use crate::bus::{EventBus, Publish};
use crate::events::GatewayEvent;
use crate::groups::{AgentGroups, ResolveGroup};
use crate::store::tasks::{
    DeleteTask as DeleteRow, InsertTask, RecordIteration, SetTaskStatus, TaskRow,
};
use crate::store::{Store, StoreError};
use crate::time::now_ms;

#[derive(Debug, Clone)]
pub struct TaskConfig {
    pub max_concurrent: usize,
    /// Continue tasks a stop interrupted (else mark them `interrupted`).
    pub resume: bool,
    /// Where `tasks/<name>/` folders go.
    pub data_dir: PathBuf,
    /// How much of the previous output an iteration sees (the newest part).
    pub context_chars: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("{0}")]
    Invalid(String),
    #[error("no task with id {0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for TaskError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(m) => TaskError::Conflict(m),
            other => TaskError::Store(other),
        }
    }
}

/// Create a task and start it (or queue it behind the concurrency cap).
#[derive(Message)]
#[rtype(result = "Result<TaskRow, TaskError>")]
pub struct CreateTask {
    pub name: String,
    pub prompt: String,
    pub max_iterations: u32,
    pub group_id: Option<String>,
    pub completion_signal: String,
}

/// Start a finished, stopped or failed task again, continuing from its output.
#[derive(Message)]
#[rtype(result = "Result<(), TaskError>")]
pub struct StartTask {
    pub id: String,
}

#[derive(Message)]
#[rtype(result = "Result<(), TaskError>")]
pub struct StopTask {
    pub id: String,
}

/// Stop (if running) and delete a task, its iterations and its files.
#[derive(Message)]
#[rtype(result = "Result<(), TaskError>")]
pub struct DeleteTask {
    pub id: String,
}

/// A task actor has ended (sent by the task), with its row as it ended.
#[derive(Message)]
#[rtype(result = "()")]
struct TaskEnded {
    row: TaskRow,
}

/// Where a task's files live.
pub fn task_dir(data_dir: &std::path::Path, name: &str) -> PathBuf {
    data_dir.join("tasks").join(name)
}

/// Safe as a file name on every system: letters, digits, `-` and `_`, starting with a letter
/// or digit, at most 64 characters.
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

struct Entry {
    row: TaskRow,
    actor: Option<Addr<LoopTask>>,
}

pub struct LoopTasks {
    store: Store,
    bus: Addr<EventBus>,
    agents: Addr<AgentSupervisor>,
    groups: Addr<AgentGroups>,
    config: TaskConfig,
    tasks: HashMap<String, Entry>,
    pending: VecDeque<String>,
    running: usize,
}

impl LoopTasks {
    /// `rows` are every task at start-up: those a stop interrupted continue (or are marked
    /// interrupted, per config), pending ones wait their turn.
    pub fn new(
        store: Store,
        bus: Addr<EventBus>,
        agents: Addr<AgentSupervisor>,
        groups: Addr<AgentGroups>,
        config: TaskConfig,
        rows: Vec<TaskRow>,
    ) -> Self {
        let mut me = Self {
            store,
            bus,
            agents,
            groups,
            config,
            tasks: HashMap::new(),
            pending: VecDeque::new(),
            running: 0,
        };
        for mut row in rows {
            match row.status.as_str() {
                "running" if !me.config.resume => {
                    row.status = "interrupted".into();
                    me.store.do_send(SetTaskStatus {
                        id: row.id.clone(),
                        status: "interrupted",
                        stop_reason: Some("interrupted".into()),
                        error: Some("the gateway stopped while this task was running".into()),
                    });
                }
                "running" | "pending" => me.pending.push_back(row.id.clone()),
                _ => {}
            }
            me.tasks.insert(row.id.clone(), Entry { row, actor: None });
        }
        me
    }

    fn launch_pending(&mut self, ctx: &mut Context<Self>) {
        while self.running < self.config.max_concurrent {
            let Some(id) = self.pending.pop_front() else {
                break;
            };
            let Some(entry) = self.tasks.get_mut(&id) else {
                continue;
            };
            let task = LoopTask {
                row: entry.row.clone(),
                store: self.store.clone(),
                bus: self.bus.clone(),
                agents: self.agents.clone(),
                groups: self.groups.clone(),
                parent: ctx.address(),
                dir: task_dir(&self.config.data_dir, &entry.row.name),
                context_chars: self.config.context_chars,
                current_run: None,
                stopping: false,
            };
            entry.row.status = "running".into();
            entry.actor = Some(task.start());
            self.running += 1;
        }
    }

    fn queue(&mut self, id: String, ctx: &mut Context<Self>) {
        self.store.do_send(SetTaskStatus {
            id: id.clone(),
            status: "pending",
            stop_reason: None,
            error: None,
        });
        if let Some(e) = self.tasks.get_mut(&id) {
            e.row.status = "pending".into();
        }
        self.pending.push_back(id);
        self.launch_pending(ctx);
    }
}

impl Actor for LoopTasks {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.launch_pending(ctx);
    }
}

impl actix::Supervised for LoopTasks {}

impl Handler<CreateTask> for LoopTasks {
    type Result = ResponseActFuture<Self, Result<TaskRow, TaskError>>;

    fn handle(&mut self, msg: CreateTask, _: &mut Context<Self>) -> Self::Result {
        let invalid = |m: &str| Box::pin(fut::ready(Err(TaskError::Invalid(m.into()))));
        if !valid_name(&msg.name) {
            return invalid(
                "name: 1 to 64 letters, digits, - or _, starting with a letter or digit",
            );
        }
        if msg.prompt.trim().is_empty() || msg.prompt.len() > 200_000 {
            return invalid("prompt: 1 to 200000 characters");
        }
        if !(1..=1000).contains(&msg.max_iterations) {
            return invalid("maxIterations: 1 to 1000");
        }
        if msg.completion_signal.trim().is_empty() || msg.completion_signal.len() > 200 {
            return invalid("completionSignal: 1 to 200 characters");
        }
        let now = now_ms();
        let row = TaskRow {
            id: uuid::Uuid::new_v4().to_string(),
            name: msg.name,
            prompt: msg.prompt,
            group_id: msg.group_id,
            max_iterations: msg.max_iterations,
            completion_signal: msg.completion_signal,
            status: "pending".into(),
            stop_reason: None,
            current_iteration: 0,
            output: String::new(),
            error: None,
            input_tokens: 0,
            output_tokens: 0,
            cost_micros: 0,
            created_at: now,
            updated_at: now,
        };
        let store = self.store.clone();
        let dir = task_dir(&self.config.data_dir, &row.name);
        let (name, prompt) = (row.name.clone(), row.prompt.clone());
        let stored = row.clone();
        Box::pin(
            async move {
                store
                    .send(InsertTask(stored))
                    .await
                    .map_err(|e| StoreError::Panic(e.to_string()))??;
                // The prompt file, like the seed's PROMPT_<name>.md.
                tokio::task::spawn_blocking(move || {
                    std::fs::create_dir_all(&dir)?;
                    std::fs::write(dir.join(format!("PROMPT_{name}.md")), prompt)
                })
                .await
                .map_err(|e| StoreError::Panic(e.to_string()))?
                .map_err(|e| StoreError::Io {
                    path: "tasks".into(),
                    source: e,
                })?;
                Ok::<_, StoreError>(())
            }
            .into_actor(self)
            .map(move |res, act, ctx| {
                res.map_err(TaskError::from)?;
                let id = row.id.clone();
                act.tasks.insert(
                    id.clone(),
                    Entry {
                        row: row.clone(),
                        actor: None,
                    },
                );
                act.pending.push_back(id);
                act.launch_pending(ctx);
                Ok(row)
            }),
        )
    }
}

impl Handler<StartTask> for LoopTasks {
    type Result = Result<(), TaskError>;

    fn handle(&mut self, msg: StartTask, ctx: &mut Context<Self>) -> Self::Result {
        let entry = self
            .tasks
            .get(&msg.id)
            .ok_or_else(|| TaskError::NotFound(msg.id.clone()))?;
        if entry.actor.is_some() || self.pending.contains(&msg.id) {
            return Err(TaskError::Conflict(
                "the task is already running or waiting to run".into(),
            ));
        }
        self.queue(msg.id, ctx);
        Ok(())
    }
}

impl Handler<StopTask> for LoopTasks {
    type Result = Result<(), TaskError>;

    fn handle(&mut self, msg: StopTask, _: &mut Context<Self>) -> Self::Result {
        let entry = self
            .tasks
            .get_mut(&msg.id)
            .ok_or_else(|| TaskError::NotFound(msg.id.clone()))?;
        if let Some(actor) = &entry.actor {
            actor.do_send(Stop);
        } else if let Some(at) = self.pending.iter().position(|p| *p == msg.id) {
            self.pending.remove(at);
            entry.row.status = "stopped".into();
            self.store.do_send(SetTaskStatus {
                id: msg.id,
                status: "stopped",
                stop_reason: Some("stopped".into()),
                error: None,
            });
        }
        Ok(())
    }
}

impl Handler<DeleteTask> for LoopTasks {
    type Result = ResponseActFuture<Self, Result<(), TaskError>>;

    fn handle(&mut self, msg: DeleteTask, _: &mut Context<Self>) -> Self::Result {
        let Some(entry) = self.tasks.remove(&msg.id) else {
            return Box::pin(fut::ready(Err(TaskError::NotFound(msg.id))));
        };
        if let Some(actor) = &entry.actor {
            actor.do_send(Stop);
        }
        self.pending.retain(|p| *p != msg.id);
        let store = self.store.clone();
        let dir = task_dir(&self.config.data_dir, &entry.row.name);
        Box::pin(
            async move {
                store
                    .send(DeleteRow { id: msg.id })
                    .await
                    .map_err(|e| StoreError::Panic(e.to_string()))??;
                let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir)).await;
                Ok::<_, StoreError>(())
            }
            .into_actor(self)
            .map(|res, _, _| res.map_err(TaskError::from)),
        )
    }
}

impl Handler<TaskEnded> for LoopTasks {
    type Result = ();

    fn handle(&mut self, msg: TaskEnded, ctx: &mut Context<Self>) {
        if let Some(entry) = self.tasks.get_mut(&msg.row.id) {
            if entry.actor.take().is_some() {
                self.running = self.running.saturating_sub(1);
            }
            // The next start continues from here.
            entry.row = msg.row;
        } else {
            // Deleted while it ran.
            self.running = self.running.saturating_sub(1);
        }
        self.launch_pending(ctx);
    }
}

/// Stop after (or, mid-call, instead of) the current iteration.
#[derive(Message)]
#[rtype(result = "()")]
struct Stop;

/// One running task.
pub struct LoopTask {
    row: TaskRow,
    store: Store,
    bus: Addr<EventBus>,
    agents: Addr<AgentSupervisor>,
    groups: Addr<AgentGroups>,
    parent: Addr<LoopTasks>,
    dir: PathBuf,
    context_chars: usize,
    current_run: Option<String>,
    stopping: bool,
}

/// How one iteration's run went.
enum Step {
    Done {
        run_id: String,
        output: String,
        input: i64,
        output_tokens: i64,
        cost: i64,
        tools: i64,
        took: Duration,
    },
    Failed {
        code: String,
        message: String,
    },
}

impl LoopTask {
    /// The message one iteration sends to the agent.
    fn iteration_input(&self, iteration: u32) -> String {
        let out = &self.row.output;
        let previous = if out.len() > self.context_chars {
            let mut cut = out.len() - self.context_chars;
            while !out.is_char_boundary(cut) {
                cut += 1;
            }
            format!("(earlier output omitted)\n{}", &out[cut..])
        } else if out.is_empty() {
            "(none yet: this is the first iteration)".to_string()
        } else {
            out.clone()
        };
        format!(
            "{prompt}\n\n---\nIteration {iteration} of at most {max}. Your output so far:\n<previous_output>\n{previous}\n</previous_output>\n\nContinue from it: plan, build, refine. When the task is completely done, include the exact text {signal} in your answer.",
            prompt = self.row.prompt,
            max = self.row.max_iterations,
            signal = self.row.completion_signal,
        )
    }

    /// Record how the task ended, then announce it and stop.
    fn finish(
        &mut self,
        status: &'static str,
        stop_reason: &str,
        error: Option<(String, String)>,
        ctx: &mut Context<Self>,
    ) {
        self.row.status = status.to_string();
        self.row.stop_reason = Some(stop_reason.to_string());
        self.row.error = error.as_ref().map(|e| e.1.clone());
        let event = match error {
            Some((code, message)) => GatewayEvent::TaskError {
                task_id: self.row.id.clone(),
                name: self.row.name.clone(),
                code,
                error: message,
            },
            None => GatewayEvent::TaskComplete {
                task_id: self.row.id.clone(),
                name: self.row.name.clone(),
                iterations: self.row.current_iteration,
                stop_reason: stop_reason.to_string(),
            },
        };
        self.store
            .send(SetTaskStatus {
                id: self.row.id.clone(),
                status,
                stop_reason: self.row.stop_reason.clone(),
                error: self.row.error.clone(),
            })
            .into_actor(self)
            .map(move |_, act, ctx| {
                act.bus.do_send(Publish(event));
                ctx.stop();
            })
            .spawn(ctx);
    }

    fn next_iteration(&mut self, ctx: &mut Context<Self>) {
        if self.stopping {
            return self.finish("stopped", "stopped", None, ctx);
        }
        let iteration = self.row.current_iteration + 1;
        if iteration > self.row.max_iterations {
            return self.finish("complete", "max_iterations", None, ctx);
        }
        let input = self.iteration_input(iteration);
        let (agents, groups) = (self.agents.clone(), self.groups.clone());
        let group_id = self.row.group_id.clone();
        let metadata =
            json!({"taskId": self.row.id, "taskName": self.row.name, "iteration": iteration});
        let started = Instant::now();
        // Ask for the run, note its id (so a stop can cancel it), then wait for its result.
        async move {
            let group = match group_id {
                Some(id) => match groups.send(ResolveGroup { id: id.clone() }).await {
                    Ok(Some(g)) => Some(g),
                    _ => {
                        return Err((
                            "group_not_found".to_string(),
                            format!("the agent group {id} no longer exists"),
                        ))
                    }
                },
                None => None,
            };
            loop {
                let request = RunRequest {
                    owner: None,
                    source: "task".into(),
                    input: input.clone(),
                    conversation_id: None,
                    metadata: Some(metadata.clone()),
                    max_iterations: None,
                    group: group.clone(),
                    channel_message: None,
                };
                match agents
                    .send(StartAgentRun {
                        request,
                        wait: true,
                        arbiter: None,
                    })
                    .await
                {
                    Ok(Ok(ticket)) => return Ok(ticket),
                    Ok(Err(StartRunError::Busy { retry_after_secs })) => {
                        tokio::time::sleep(Duration::from_secs(retry_after_secs)).await
                    }
                    Err(e) => return Err(("unavailable".into(), e.to_string())),
                }
            }
        }
        .into_actor(self)
        .then(move |ticket, act, _| {
            let ticket = ticket.inspect(|t| act.current_run = Some(t.run_id.clone()));
            async move {
                let ticket = match ticket {
                    Ok(t) => t,
                    Err((code, message)) => return Step::Failed { code, message },
                };
                let Some(done) = ticket.done else {
                    return Step::Failed {
                        code: "internal_error".into(),
                        message: "no result channel".into(),
                    };
                };
                match done.await {
                    Ok(r) => match r.error {
                        None => Step::Done {
                            run_id: r.run_id,
                            output: r.output.unwrap_or_default(),
                            input: r.usage.input_tokens as i64,
                            output_tokens: r.usage.output_tokens as i64,
                            cost: r.cost_micros,
                            tools: i64::from(r.tool_calls),
                            took: started.elapsed(),
                        },
                        Some(f) => Step::Failed {
                            code: f.code,
                            message: f.message,
                        },
                    },
                    Err(_) => Step::Failed {
                        code: "cancelled".into(),
                        message: "the run was cancelled".into(),
                    },
                }
            }
            .into_actor(act)
        })
        .map(move |step, act, ctx| act.after(iteration, step, ctx))
        .spawn(ctx);
    }

    fn after(&mut self, iteration: u32, step: Step, ctx: &mut Context<Self>) {
        self.current_run = None;
        match step {
            Step::Failed { code, .. } if self.stopping && code == "cancelled" => {
                self.finish("stopped", "stopped", None, ctx)
            }
            Step::Failed { code, message } => {
                let status = "error";
                self.finish(status, &code.clone(), Some((code, message)), ctx)
            }
            Step::Done {
                run_id,
                output,
                input,
                output_tokens,
                cost,
                tools,
                took,
            } => {
                let section = format!("\n\n## Iteration {iteration}\n\n{output}\n");
                self.row.output.push_str(&section);
                self.row.current_iteration = iteration;
                let record = self.store.send(RecordIteration {
                    task_id: self.row.id.clone(),
                    iteration,
                    run_id: Some(run_id),
                    output: output.clone(),
                    task_output: self.row.output.clone(),
                    input_tokens: input,
                    output_tokens,
                    cost_micros: cost,
                    tool_calls: tools,
                    duration_ms: took.as_millis() as i64,
                });
                let path = self.dir.join("output.md");
                tokio::task::spawn_blocking(move || {
                    use std::io::Write;
                    let mut f = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&path)?;
                    f.write_all(section.as_bytes())
                });
                // Announce the iteration once it is recorded: whoever hears of it can read it.
                record
                    .into_actor(self)
                    .map(move |res, act, ctx| {
                        if !matches!(res, Ok(Ok(()))) {
                            tracing::error!(task = %act.row.id, iteration, "could not record an iteration");
                        }
                        act.bus.do_send(Publish(GatewayEvent::TaskIteration {
                            task_id: act.row.id.clone(),
                            name: act.row.name.clone(),
                            iteration,
                            summary: output.chars().take(200).collect(),
                            input_tokens: input,
                            output_tokens,
                            cost_micros: cost,
                        }));
                        if output.contains(&act.row.completion_signal) {
                            act.finish("complete", "signal", None, ctx)
                        } else {
                            act.next_iteration(ctx)
                        }
                    })
                    .spawn(ctx);
            }
        }
    }
}

impl Actor for LoopTask {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.row.status = "running".into();
        // Announced once recorded: a task said to run is one a restart will find running.
        self.store
            .send(SetTaskStatus {
                id: self.row.id.clone(),
                status: "running",
                stop_reason: None,
                error: None,
            })
            .into_actor(self)
            .map(|_, act, ctx| {
                act.bus.do_send(Publish(GatewayEvent::TaskStart {
                    task_id: act.row.id.clone(),
                    name: act.row.name.clone(),
                    iteration: act.row.current_iteration + 1,
                }));
                act.next_iteration(ctx);
            })
            .spawn(ctx);
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.parent.do_send(TaskEnded {
            row: self.row.clone(),
        });
    }
}

impl Handler<Stop> for LoopTask {
    type Result = ();

    fn handle(&mut self, _: Stop, _: &mut Context<Self>) {
        self.stopping = true;
        if let Some(run) = &self.current_run {
            self.agents.do_send(CancelAgentRun {
                run_id: run.clone(),
            });
        }
    }
}
