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
        "SELECT id, source, status, group_id, conversation_id, input, output, error,
                created_at, started_at, finished_at, input_tokens, output_tokens, cost_micros
         FROM agent_runs {filter} ORDER BY created_at DESC, id LIMIT ? OFFSET ?"
    ))?;
    let items = stmt
        .query_map(params_from_iter(page_args.iter()), |r| {
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
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Paged {
        items,
        total,
        limit: msg.page.limit,
        offset: msg.page.offset,
    })
}

pub fn mark_interrupted_runs(
    conn: &mut Connection,
    _: MarkInterruptedRuns,
) -> Result<usize, StoreError> {
    Ok(conn.execute(
        "UPDATE agent_runs SET status = 'interrupted', finished_at = ?1,
                error = coalesce(error, 'the gateway stopped while this run was in progress')
         WHERE status IN ('queued', 'running', 'awaiting_approval')",
        [now_ms()],
    )?)
}

store_handler!(ListRuns => list_runs);
store_handler!(MarkInterruptedRuns => mark_interrupted_runs);
