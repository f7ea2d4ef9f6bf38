//! Query family: usage analytics over `api_calls` (every model call, priced when made).

use actix::prelude::*;
use rusqlite::{params, Connection};
use serde::Serialize;

use super::runs::{api_call_row, ApiCallRow, API_CALL_COLUMNS};
use super::{Page, Paged, StoreError};
use crate::store_handler;

/// A time range in unix milliseconds: `[since, until)`.
#[derive(Debug, Clone, Copy)]
pub struct Range {
    pub since: i64,
    pub until: i64,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageFigures {
    pub calls: i64,
    pub errors: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cache_creation_tokens: i64,
    pub cache_read_tokens: i64,
    pub cost_micros: i64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Grouped {
    /// A day (`YYYY-MM-DD`, UTC) or a model name.
    pub key: String,
    #[serde(flatten)]
    pub figures: UsageFigures,
}

#[derive(Message)]
#[rtype(result = "Result<UsageFigures, StoreError>")]
pub struct UsageTotals(pub Range);

#[derive(Message)]
#[rtype(result = "Result<Vec<Grouped>, StoreError>")]
pub struct UsageDaily(pub Range);

#[derive(Message)]
#[rtype(result = "Result<Vec<Grouped>, StoreError>")]
pub struct UsageByModel(pub Range);

#[derive(Message)]
#[rtype(result = "Result<Paged<ApiCallRow>, StoreError>")]
pub struct UsageCalls {
    pub range: Range,
    pub page: Page,
}

const FIGURES: &str = "count(*), coalesce(sum(status = 'error'), 0),
    coalesce(sum(input_tokens), 0), coalesce(sum(output_tokens), 0),
    coalesce(sum(cache_creation_tokens), 0), coalesce(sum(cache_read_tokens), 0),
    coalesce(sum(cost_micros), 0)";

fn figures(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<UsageFigures> {
    Ok(UsageFigures {
        calls: r.get(at)?,
        errors: r.get(at + 1)?,
        input_tokens: r.get(at + 2)?,
        output_tokens: r.get(at + 3)?,
        cache_creation_tokens: r.get(at + 4)?,
        cache_read_tokens: r.get(at + 5)?,
        cost_micros: r.get(at + 6)?,
    })
}

pub fn totals(
    conn: &mut Connection,
    UsageTotals(r): UsageTotals,
) -> Result<UsageFigures, StoreError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {FIGURES} FROM api_calls WHERE created_at >= ?1 AND created_at < ?2"
        ))?
        .query_row(params![r.since, r.until], |row| figures(row, 0))?)
}

fn grouped(conn: &Connection, key: &str, r: Range) -> Result<Vec<Grouped>, StoreError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {key} AS k, {FIGURES} FROM api_calls
             WHERE created_at >= ?1 AND created_at < ?2 GROUP BY k ORDER BY k"
        ))?
        .query_map(params![r.since, r.until], |row| {
            Ok(Grouped {
                key: row.get(0)?,
                figures: figures(row, 1)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?)
}

pub fn daily(conn: &mut Connection, UsageDaily(r): UsageDaily) -> Result<Vec<Grouped>, StoreError> {
    grouped(conn, "date(created_at / 1000, 'unixepoch')", r)
}

pub fn by_model(
    conn: &mut Connection,
    UsageByModel(r): UsageByModel,
) -> Result<Vec<Grouped>, StoreError> {
    grouped(conn, "model", r)
}

pub fn calls(conn: &mut Connection, msg: UsageCalls) -> Result<Paged<ApiCallRow>, StoreError> {
    let total: i64 = conn.query_row(
        "SELECT count(*) FROM api_calls WHERE created_at >= ?1 AND created_at < ?2",
        params![msg.range.since, msg.range.until],
        |r| r.get(0),
    )?;
    let items = conn
        .prepare_cached(&format!(
            "SELECT {API_CALL_COLUMNS} FROM api_calls
             WHERE created_at >= ?1 AND created_at < ?2 ORDER BY id DESC LIMIT ?3 OFFSET ?4"
        ))?
        .query_map(
            params![
                msg.range.since,
                msg.range.until,
                msg.page.limit,
                msg.page.offset
            ],
            api_call_row,
        )?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Paged {
        items,
        total,
        limit: msg.page.limit,
        offset: msg.page.offset,
    })
}

store_handler!(UsageTotals => totals);
store_handler!(UsageDaily => daily);
store_handler!(UsageByModel => by_model);
store_handler!(UsageCalls => calls);
