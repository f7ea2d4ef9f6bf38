//! Query family: agent runs (the rows behind `/api/runs`).

use actix::prelude::*;
use rusqlite::types::Value;
use rusqlite::{params_from_iter, Connection};
use serde::Serialize;

use super::{Page, Paged, StoreError};
use crate::store_handler;
use crate::time::{now_ms, rfc3339};

/// A run as lists show it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunSummary {
    pub id: String,
    pub source: String,
    pub status: String,
    pub group_id: Option<String>,
    pub conversation_id: Option<String>,
    pub input: String,
    pub output: Option<String>,
    pub error: Option<String>,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cost_micros: i64,
    pub cache_creation_tokens: i64,
    pub cache_read_tokens: i64,
    pub stop_reason: Option<String>,
    pub error_code: Option<String>,
    pub model: Option<String>,
    pub llm_calls: i64,
}

/// Filters of `/api/runs`; every field optional. Times are unix milliseconds.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub status: Option<String>,
    pub source: Option<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
}

/// Newest runs first.
#[derive(Message)]
#[rtype(result = "Result<Paged<RunSummary>, StoreError>")]
pub struct ListRuns {
    pub filter: RunFilter,
    pub page: Page,
}

/// At start-up: runs a crash left `queued`/`running` can no longer finish; mark them
/// `interrupted` so nothing looks alive that is not. Returns how many.
#[derive(Message)]
#[rtype(result = "Result<usize, StoreError>")]
pub struct MarkInterruptedRuns;

const RUN_COLUMNS: &str = "id, source, status, group_id, conversation_id, input, output, error,
    created_at, started_at, finished_at, input_tokens, output_tokens, cost_micros,
    cache_creation_tokens, cache_read_tokens, stop_reason, error_code, model, llm_calls";

fn run_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunSummary> {
    Ok(RunSummary {
        id: r.get(0)?,
        source: r.get(1)?,
        status: r.get(2)?,
        group_id: r.get(3)?,
        conversation_id: r.get(4)?,
        input: r.get(5)?,
        output: r.get(6)?,
        error: r.get(7)?,
        created_at: rfc3339(r.get(8)?),
        started_at: r.get::<_, Option<i64>>(9)?.map(rfc3339),
        finished_at: r.get::<_, Option<i64>>(10)?.map(rfc3339),
        input_tokens: r.get(11)?,
        output_tokens: r.get(12)?,
        cost_micros: r.get(13)?,
        cache_creation_tokens: r.get(14)?,
        cache_read_tokens: r.get(15)?,
        stop_reason: r.get(16)?,
        error_code: r.get(17)?,
        model: r.get(18)?,
        llm_calls: r.get(19)?,
    })
}

pub fn list_runs(conn: &mut Connection, msg: ListRuns) -> Result<Paged<RunSummary>, StoreError> {
    let mut clauses = Vec::new();
    let mut args: Vec<Value> = Vec::new();
    if let Some(s) = msg.filter.status {
        clauses.push("status = ?");
        args.push(s.into());
    }
    if let Some(s) = msg.filter.source {
        clauses.push("source = ?");
        args.push(s.into());
    }
    if let Some(t) = msg.filter.since {
        clauses.push("created_at >= ?");
        args.push(t.into());
    }
    if let Some(t) = msg.filter.until {
        clauses.push("created_at < ?");
        args.push(t.into());
    }
    let filter = if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    };
    let total: i64 = conn.query_row(
        &format!("SELECT count(*) FROM agent_runs {filter}"),
        params_from_iter(args.iter()),
        |r| r.get(0),
    )?;
    let mut page_args = args;
    page_args.push(msg.page.limit.into());
    page_args.push(msg.page.offset.into());
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {RUN_COLUMNS} FROM agent_runs {filter}
         ORDER BY created_at DESC, id LIMIT ? OFFSET ?"
    ))?;
    let items = stmt
        .query_map(params_from_iter(page_args.iter()), run_row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Paged {
        items,
        total,
        limit: msg.page.limit,
        offset: msg.page.offset,
    })
}

pub fn mark_interrupted_runs(
    conn: &Connection,
    _: MarkInterruptedRuns,
) -> Result<usize, StoreError> {
    Ok(conn.execute(
        "UPDATE agent_runs SET status = 'interrupted', finished_at = ?1,
                error = coalesce(error, 'the gateway stopped while this run was in progress')
         WHERE status IN ('queued', 'running', 'awaiting_approval')",
        [now_ms()],
    )?)
}

/// Record a run waiting in the queue (a run that starts at once is recorded by `StartRun`).
#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct QueueRun {
    pub run: NewRun,
}

/// Record that a run has started (creating its row when it was never queued) and, for a
/// conversation that already has one, read its newest `history_limit` messages (role, JSON).
/// With an `owner`, a conversation that belongs to someone else is not read: the answer is
/// `None` (the run is recorded all the same, so it can be finished as refused).
#[derive(Message)]
#[rtype(result = "Result<Option<Vec<(String, String)>>, StoreError>")]
pub struct StartRun {
    pub run: NewRun,
    pub history_limit: Option<i64>,
    pub owner: Option<String>,
}

#[derive(Debug, Clone)]
pub struct NewRun {
    pub id: String,
    pub source: String,
    pub input: String,
    pub conversation_id: Option<String>,
    pub group_id: Option<String>,
    pub model: String,
    pub metadata: Option<String>,
}

/// How a run ended, with what it adds to its conversation; written in one transaction.
#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct FinishRun {
    pub id: String,
    pub status: &'static str,
    pub output: Option<String>,
    pub error: Option<String>,
    pub error_code: Option<String>,
    pub stop_reason: Option<String>,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cache_creation_tokens: i64,
    pub cache_read_tokens: i64,
    pub cost_micros: i64,
    pub llm_calls: i64,
    /// Messages to append to the run's conversation (the user's turn and what the run added).
    pub conversation: Option<super::conversations::Append>,
    /// The channel message this run answers: its reply (the output) is stored with the run.
    pub channel_message: Option<i64>,
}

/// One model call (any attempt, failed ones too).
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<(), StoreError>")]
pub struct RecordApiCall {
    pub run_id: Option<String>,
    pub group_id: Option<String>,
    pub provider: &'static str,
    pub model: String,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cache_creation_tokens: i64,
    pub cache_read_tokens: i64,
    pub cost_micros: i64,
    pub latency_ms: i64,
    pub error: Option<String>,
}

/// One tool call of a run.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<(), StoreError>")]
pub struct RecordToolCall {
    pub run_id: String,
    pub tool_use_id: String,
    pub name: String,
    pub input: String,
    pub output: String,
    pub is_error: bool,
    pub duration_ms: i64,
}

/// One run with its model calls and tool calls.
#[derive(Message)]
#[rtype(result = "Result<Option<RunDetail>, StoreError>")]
pub struct GetRun {
    pub id: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunDetail {
    #[serde(flatten)]
    pub run: RunSummary,
    pub llm_calls_detail: Vec<ApiCallRow>,
    pub tool_calls: Vec<ToolCallRow>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiCallRow {
    pub id: i64,
    pub run_id: Option<String>,
    pub provider: String,
    pub model: String,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cache_creation_tokens: i64,
    pub cache_read_tokens: i64,
    pub cost_micros: i64,
    pub latency_ms: i64,
    pub status: String,
    pub error: Option<String>,
    pub created_at: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolCallRow {
    pub tool_use_id: String,
    pub name: String,
    pub input: serde_json::Value,
    pub output: String,
    pub is_error: bool,
    pub duration_ms: i64,
    pub created_at: String,
}

pub fn queue_run(conn: &Connection, msg: QueueRun) -> Result<(), StoreError> {
    insert_run(conn, &msg.run, "queued")
}

fn insert_run(conn: &Connection, r: &NewRun, status: &str) -> Result<(), StoreError> {
    let now = now_ms();
    let started = (status == "running").then_some(now);
    conn.prepare_cached(
        "INSERT INTO agent_runs (id, source, status, group_id, conversation_id, input, model,
                                 metadata, created_at, started_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
         ON CONFLICT(id) DO UPDATE SET status = excluded.status, started_at = excluded.started_at
         WHERE excluded.status = 'running'",
    )?
    .execute(rusqlite::params![
        r.id,
        r.source,
        status,
        r.group_id,
        r.conversation_id,
        r.input,
        r.model,
        r.metadata,
        now,
        started
    ])?;
    Ok(())
}

pub fn start_run(
    conn: &Connection,
    msg: StartRun,
) -> Result<Option<Vec<(String, String)>>, StoreError> {
    insert_run(conn, &msg.run, "running")?;
    let (Some(limit), Some(conversation)) = (msg.history_limit, &msg.run.conversation_id) else {
        return Ok(Some(Vec::new()));
    };
    if let Some(owner) = &msg.owner {
        if !super::conversations::may_continue(conn, conversation, owner)? {
            return Ok(None);
        }
    }
    super::conversations::history(conn, conversation, limit).map(Some)
}

/// (Atomic: the writer runs every message in a savepoint of its batch transaction.)
pub fn finish_run(conn: &Connection, msg: FinishRun) -> Result<(), StoreError> {
    let tx = conn;
    let now = now_ms();
    if let Some(append) = &msg.conversation {
        super::conversations::append(tx, append, Some(&msg.id), now)?;
    }
    if let (Some(message), Some(output)) = (msg.channel_message, &msg.output) {
        super::channels::attach_run_reply(tx, message, &msg.id, output)?;
    }
    tx.prepare_cached(
        "UPDATE agent_runs SET status = ?2, output = ?3, error = ?4, error_code = ?5,
                stop_reason = ?6, input_tokens = ?7, output_tokens = ?8,
                cache_creation_tokens = ?9, cache_read_tokens = ?10, cost_micros = ?11,
                llm_calls = ?12, finished_at = ?13
         WHERE id = ?1",
    )?
    .execute(rusqlite::params![
        msg.id,
        msg.status,
        msg.output,
        msg.error,
        msg.error_code,
        msg.stop_reason,
        msg.input_tokens,
        msg.output_tokens,
        msg.cache_creation_tokens,
        msg.cache_read_tokens,
        msg.cost_micros,
        msg.llm_calls,
        now
    ])?;
    Ok(())
}

pub fn record_api_call(conn: &Connection, m: RecordApiCall) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO api_calls (run_id, provider, model, input_tokens, output_tokens,
                cache_creation_tokens, cache_read_tokens, cost_micros, latency_ms, status, error,
                created_at, group_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )?
    .execute(rusqlite::params![
        m.run_id,
        m.provider,
        m.model,
        m.input_tokens,
        m.output_tokens,
        m.cache_creation_tokens,
        m.cache_read_tokens,
        m.cost_micros,
        m.latency_ms,
        if m.error.is_some() { "error" } else { "ok" },
        m.error,
        now_ms(),
        m.group_id
    ])?;
    Ok(())
}

pub fn record_tool_call(conn: &Connection, m: RecordToolCall) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO tool_calls (run_id, tool_use_id, name, input, output, is_error,
                duration_ms, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(rusqlite::params![
        m.run_id,
        m.tool_use_id,
        m.name,
        m.input,
        m.output,
        m.is_error,
        m.duration_ms,
        now_ms()
    ])?;
    Ok(())
}

pub(crate) fn api_call_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ApiCallRow> {
    Ok(ApiCallRow {
        id: r.get(0)?,
        run_id: r.get(1)?,
        provider: r.get(2)?,
        model: r.get(3)?,
        input_tokens: r.get(4)?,
        output_tokens: r.get(5)?,
        cache_creation_tokens: r.get(6)?,
        cache_read_tokens: r.get(7)?,
        cost_micros: r.get(8)?,
        latency_ms: r.get(9)?,
        status: r.get(10)?,
        error: r.get(11)?,
        created_at: rfc3339(r.get(12)?),
    })
}

pub(crate) const API_CALL_COLUMNS: &str = "id, run_id, provider, model, input_tokens,
    output_tokens, cache_creation_tokens, cache_read_tokens, cost_micros, latency_ms, status,
    error, created_at";

pub fn get_run(conn: &mut Connection, msg: GetRun) -> Result<Option<RunDetail>, StoreError> {
    use rusqlite::OptionalExtension;
    let run = conn
        .prepare_cached(&format!(
            "SELECT {RUN_COLUMNS} FROM agent_runs WHERE id = ?1"
        ))?
        .query_row([&msg.id], run_row)
        .optional()?;
    let Some(run) = run else { return Ok(None) };
    let llm_calls_detail = conn
        .prepare_cached(&format!(
            "SELECT {API_CALL_COLUMNS} FROM api_calls WHERE run_id = ?1 ORDER BY id"
        ))?
        .query_map([&msg.id], api_call_row)?
        .collect::<Result<Vec<_>, _>>()?;
    let tool_calls = conn
        .prepare_cached(
            "SELECT tool_use_id, name, input, output, is_error, duration_ms, created_at
             FROM tool_calls WHERE run_id = ?1 ORDER BY id",
        )?
        .query_map([&msg.id], |r| {
            Ok(ToolCallRow {
                tool_use_id: r.get(0)?,
                name: r.get(1)?,
                input: serde_json::from_str(&r.get::<_, String>(2)?).unwrap_or_default(),
                output: r.get(3)?,
                is_error: r.get(4)?,
                duration_ms: r.get(5)?,
                created_at: rfc3339(r.get(6)?),
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(RunDetail {
        run,
        llm_calls_detail,
        tool_calls,
    }))
}

/// A running run waits for a person (`awaiting_approval`) or works again (`running`).
#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct SetRunWaiting {
    pub id: String,
    pub waiting: bool,
}

pub fn set_run_waiting(conn: &Connection, m: SetRunWaiting) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE agent_runs SET status = ?2 WHERE id = ?1 AND status IN ('running', 'awaiting_approval')",
        rusqlite::params![m.id, if m.waiting { "awaiting_approval" } else { "running" }],
    )?;
    Ok(())
}

store_handler!(write SetRunWaiting => set_run_waiting);
store_handler!(ListRuns => list_runs);
store_handler!(write QueueRun => queue_run);
store_handler!(write StartRun => start_run);
store_handler!(write FinishRun => finish_run);
store_handler!(write RecordApiCall => record_api_call);
store_handler!(write RecordToolCall => record_tool_call);
store_handler!(GetRun => get_run);
store_handler!(write MarkInterruptedRuns => mark_interrupted_runs);
