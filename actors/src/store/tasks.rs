//! Query family: loop tasks and their iterations.

use actix::prelude::*;
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use super::StoreError;
use crate::store_handler;
use crate::time::{now_ms, rfc3339};

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskRow {
    pub id: String,
    pub name: String,
    #[serde(skip)]
    pub prompt: String,
    pub group_id: Option<String>,
    pub max_iterations: u32,
    pub completion_signal: String,
    pub status: String,
    pub stop_reason: Option<String>,
    pub current_iteration: u32,
    #[serde(skip)]
    pub output: String,
    pub error: Option<String>,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cost_micros: i64,
    #[serde(serialize_with = "crate::time::ms_as_rfc3339")]
    pub created_at: i64,
    #[serde(serialize_with = "crate::time::ms_as_rfc3339")]
    pub updated_at: i64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IterationRow {
    pub iteration: u32,
    pub run_id: Option<String>,
    pub output: String,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cost_micros: i64,
    pub tool_calls: i64,
    pub duration_ms: i64,
    pub created_at: String,
}

/// Record a new task (a taken name is a conflict).
#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct InsertTask(pub TaskRow);

/// Set a task's status (and why it stopped, or its error).
#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct SetTaskStatus {
    pub id: String,
    pub status: &'static str,
    pub stop_reason: Option<String>,
    pub error: Option<String>,
}

/// One finished iteration: its row, and the task's output, counters and totals, together.
#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct RecordIteration {
    pub task_id: String,
    pub iteration: u32,
    pub run_id: Option<String>,
    pub output: String,
    /// The task's whole output after this iteration.
    pub task_output: String,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cost_micros: i64,
    pub tool_calls: i64,
    pub duration_ms: i64,
}

#[derive(Message)]
#[rtype(result = "Result<Option<TaskRow>, StoreError>")]
pub struct GetTask {
    pub id: String,
}

#[derive(Message)]
#[rtype(result = "Result<Vec<IterationRow>, StoreError>")]
pub struct ListIterations {
    pub task_id: String,
}

#[derive(Message)]
#[rtype(result = "Result<bool, StoreError>")]
pub struct DeleteTask {
    pub id: String,
}

const COLUMNS: &str = "id, name, prompt, group_id, max_iterations, completion_signal, status,
    stop_reason, current_iteration, output, error, input_tokens, output_tokens, cost_micros,
    created_at, updated_at";

fn task_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TaskRow> {
    Ok(TaskRow {
        id: r.get(0)?,
        name: r.get(1)?,
        prompt: r.get(2)?,
        group_id: r.get(3)?,
        max_iterations: r.get(4)?,
        completion_signal: r.get(5)?,
        status: r.get(6)?,
        stop_reason: r.get(7)?,
        current_iteration: r.get(8)?,
        output: r.get(9)?,
        error: r.get(10)?,
        input_tokens: r.get(11)?,
        output_tokens: r.get(12)?,
        cost_micros: r.get(13)?,
        created_at: r.get(14)?,
        updated_at: r.get(15)?,
    })
}

/// Every task (start-up), oldest first.
pub fn load_tasks(conn: &Connection) -> Result<Vec<TaskRow>, StoreError> {
    Ok(conn
        .prepare(&format!(
            "SELECT {COLUMNS} FROM loop_tasks ORDER BY created_at"
        ))?
        .query_map([], task_row)?
        .collect::<Result<Vec<_>, _>>()?)
}

pub fn insert_task(conn: &Connection, InsertTask(t): InsertTask) -> Result<(), StoreError> {
    let taken: Option<i64> = conn
        .query_row("SELECT 1 FROM loop_tasks WHERE name = ?1", [&t.name], |r| {
            r.get(0)
        })
        .optional()?;
    if taken.is_some() {
        return Err(StoreError::Conflict(format!(
            "a task named {:?} already exists",
            t.name
        )));
    }
    conn.execute(
        &format!("INSERT INTO loop_tasks ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)"),
        params![
            t.id, t.name, t.prompt, t.group_id, t.max_iterations, t.completion_signal, t.status,
            t.stop_reason, t.current_iteration, t.output, t.error, t.input_tokens,
            t.output_tokens, t.cost_micros, t.created_at, t.updated_at
        ],
    )?;
    Ok(())
}

pub fn set_status(conn: &Connection, m: SetTaskStatus) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE loop_tasks SET status = ?2, stop_reason = ?3, error = ?4, updated_at = ?5
         WHERE id = ?1",
        params![m.id, m.status, m.stop_reason, m.error, now_ms()],
    )?;
    Ok(())
}

pub fn record_iteration(conn: &Connection, m: RecordIteration) -> Result<(), StoreError> {
    let now = now_ms();
    // An iteration is recorded once: a replay after a crash does not count it twice.
    let inserted = conn.execute(
        "INSERT OR IGNORE INTO loop_iterations (task_id, iteration, run_id, output, input_tokens,
                output_tokens, cost_micros, tool_calls, duration_ms, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            m.task_id,
            m.iteration,
            m.run_id,
            m.output,
            m.input_tokens,
            m.output_tokens,
            m.cost_micros,
            m.tool_calls,
            m.duration_ms,
            now
        ],
    )?;
    if inserted > 0 {
        conn.execute(
            "UPDATE loop_tasks SET current_iteration = ?2, output = ?3,
                    input_tokens = input_tokens + ?4, output_tokens = output_tokens + ?5,
                    cost_micros = cost_micros + ?6, updated_at = ?7
             WHERE id = ?1",
            params![
                m.task_id,
                m.iteration,
                m.task_output,
                m.input_tokens,
                m.output_tokens,
                m.cost_micros,
                now
            ],
        )?;
    }
    Ok(())
}

pub fn get_task(conn: &mut Connection, m: GetTask) -> Result<Option<TaskRow>, StoreError> {
    Ok(conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM loop_tasks WHERE id = ?1"))?
        .query_row([m.id], task_row)
        .optional()?)
}

pub fn list_iterations(
    conn: &mut Connection,
    m: ListIterations,
) -> Result<Vec<IterationRow>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT iteration, run_id, output, input_tokens, output_tokens, cost_micros,
                    tool_calls, duration_ms, created_at
             FROM loop_iterations WHERE task_id = ?1 ORDER BY iteration",
        )?
        .query_map([m.task_id], |r| {
            Ok(IterationRow {
                iteration: r.get(0)?,
                run_id: r.get(1)?,
                output: r.get(2)?,
                input_tokens: r.get(3)?,
                output_tokens: r.get(4)?,
                cost_micros: r.get(5)?,
                tool_calls: r.get(6)?,
                duration_ms: r.get(7)?,
                created_at: rfc3339(r.get(8)?),
            })
        })?
        .collect::<Result<Vec<_>, _>>()?)
}

pub fn delete_task(conn: &Connection, m: DeleteTask) -> Result<bool, StoreError> {
    Ok(conn.execute("DELETE FROM loop_tasks WHERE id = ?1", [m.id])? > 0)
}

store_handler!(write InsertTask => insert_task);
store_handler!(write SetTaskStatus => set_status);
store_handler!(write RecordIteration => record_iteration);
store_handler!(write DeleteTask => delete_task);
store_handler!(GetTask => get_task);
store_handler!(ListIterations => list_iterations);

/// Every task, newest first.
#[derive(Message)]
#[rtype(result = "Result<Vec<TaskRow>, StoreError>")]
pub struct ListTasks;

pub fn list_tasks(conn: &mut Connection, _: ListTasks) -> Result<Vec<TaskRow>, StoreError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM loop_tasks ORDER BY created_at DESC"
        ))?
        .query_map([], task_row)?
        .collect::<Result<Vec<_>, _>>()?)
}

store_handler!(ListTasks => list_tasks);
