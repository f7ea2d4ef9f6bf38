//! Query family: approval rules and approval requests.

use actix::prelude::*;
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use serde_json::Value;

use super::{Page, Paged, StoreError};
use crate::store_handler;
use crate::time::now_ms;

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleRow {
    pub tool_name: String,
    pub risk_level: String,
    pub require_approval: bool,
    pub timeout_seconds: u32,
    pub timeout_action: String,
    pub auto_approve: Option<Value>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalRow {
    pub id: String,
    pub run_id: Option<String>,
    pub tool_use_id: String,
    pub tool_name: String,
    pub input: Value,
    pub risk_level: String,
    pub reason: Option<String>,
    pub status: String,
    pub decided_by: Option<String>,
    pub decision_reason: Option<String>,
    pub timeout_action: String,
    #[serde(serialize_with = "crate::time::ms_as_rfc3339")]
    pub created_at: i64,
    #[serde(serialize_with = "crate::time::ms_as_rfc3339")]
    pub expires_at: i64,
    #[serde(serialize_with = "crate::time::opt_ms_as_rfc3339")]
    pub decided_at: Option<i64>,
}

#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct SaveRule(pub RuleRow);

#[derive(Message)]
#[rtype(result = "Result<bool, StoreError>")]
pub struct DeleteRule {
    pub tool_name: String,
}

#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct InsertApproval(pub ApprovalRow);

/// Decide a pending request; `Ok(false)` when it was not pending any more.
#[derive(Message)]
#[rtype(result = "Result<bool, StoreError>")]
pub struct DecideApproval {
    pub id: String,
    /// approved, rejected or expired
    pub status: &'static str,
    pub decided_by: String,
    pub reason: Option<String>,
}

#[derive(Message)]
#[rtype(result = "Result<Option<ApprovalRow>, StoreError>")]
pub struct GetApproval {
    pub id: String,
}

#[derive(Message)]
#[rtype(result = "Result<Paged<ApprovalRow>, StoreError>")]
pub struct ListApprovals {
    pub status: Option<String>,
    pub run_id: Option<String>,
    pub page: Page,
}

#[derive(Message)]
#[rtype(result = "Result<Vec<(String, i64)>, StoreError>")]
pub struct ApprovalStats;

const COLUMNS: &str = "id, run_id, tool_use_id, tool_name, input, risk_level, reason, status,
    decided_by, decision_reason, timeout_action, created_at, expires_at, decided_at";

fn approval_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ApprovalRow> {
    Ok(ApprovalRow {
        id: r.get(0)?,
        run_id: r.get(1)?,
        tool_use_id: r.get(2)?,
        tool_name: r.get(3)?,
        input: serde_json::from_str(&r.get::<_, String>(4)?).unwrap_or(Value::Null),
        risk_level: r.get(5)?,
        reason: r.get(6)?,
        status: r.get(7)?,
        decided_by: r.get(8)?,
        decision_reason: r.get(9)?,
        timeout_action: r.get(10)?,
        created_at: r.get(11)?,
        expires_at: r.get(12)?,
        decided_at: r.get(13)?,
    })
}

pub fn load_rules(conn: &Connection) -> Result<Vec<RuleRow>, StoreError> {
    Ok(conn
        .prepare(
            "SELECT tool_name, risk_level, require_approval, timeout_seconds, timeout_action,
                    auto_approve FROM approval_rules",
        )?
        .query_map([], |r| {
            Ok(RuleRow {
                tool_name: r.get(0)?,
                risk_level: r.get(1)?,
                require_approval: r.get(2)?,
                timeout_seconds: r.get(3)?,
                timeout_action: r.get(4)?,
                auto_approve: r
                    .get::<_, Option<String>>(5)?
                    .and_then(|s| serde_json::from_str(&s).ok()),
            })
        })?
        .collect::<Result<Vec<_>, _>>()?)
}

/// Requests still waiting for a decision (start-up).
pub fn load_pending(conn: &Connection) -> Result<Vec<ApprovalRow>, StoreError> {
    Ok(conn
        .prepare(&format!(
            "SELECT {COLUMNS} FROM approvals WHERE status = 'pending'"
        ))?
        .query_map([], approval_row)?
        .collect::<Result<Vec<_>, _>>()?)
}

pub fn save_rule(conn: &Connection, SaveRule(r): SaveRule) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO approval_rules (tool_name, risk_level, require_approval, timeout_seconds,
                                     timeout_action, auto_approve, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT(tool_name) DO UPDATE SET risk_level = excluded.risk_level,
             require_approval = excluded.require_approval,
             timeout_seconds = excluded.timeout_seconds, timeout_action = excluded.timeout_action,
             auto_approve = excluded.auto_approve, updated_at = excluded.updated_at",
        params![
            r.tool_name,
            r.risk_level,
            r.require_approval,
            r.timeout_seconds,
            r.timeout_action,
            r.auto_approve.as_ref().map(|v| v.to_string()),
            now_ms()
        ],
    )?;
    Ok(())
}

pub fn delete_rule(conn: &Connection, m: DeleteRule) -> Result<bool, StoreError> {
    Ok(conn.execute(
        "DELETE FROM approval_rules WHERE tool_name = ?1",
        [m.tool_name],
    )? > 0)
}

pub fn insert_approval(
    conn: &Connection,
    InsertApproval(a): InsertApproval,
) -> Result<(), StoreError> {
    conn.execute(
        &format!("INSERT INTO approvals ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"),
        params![
            a.id, a.run_id, a.tool_use_id, a.tool_name, a.input.to_string(), a.risk_level,
            a.reason, a.status, a.decided_by, a.decision_reason, a.timeout_action, a.created_at,
            a.expires_at, a.decided_at
        ],
    )?;
    Ok(())
}

pub fn decide(conn: &Connection, m: DecideApproval) -> Result<bool, StoreError> {
    Ok(conn.execute(
        "UPDATE approvals SET status = ?2, decided_by = ?3, decision_reason = ?4, decided_at = ?5
         WHERE id = ?1 AND status = 'pending'",
        params![m.id, m.status, m.decided_by, m.reason, now_ms()],
    )? > 0)
}

pub fn get_approval(
    conn: &mut Connection,
    m: GetApproval,
) -> Result<Option<ApprovalRow>, StoreError> {
    Ok(conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM approvals WHERE id = ?1"))?
        .query_row([m.id], approval_row)
        .optional()?)
}

pub fn list_approvals(
    conn: &mut Connection,
    m: ListApprovals,
) -> Result<Paged<ApprovalRow>, StoreError> {
    let filter = "WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR run_id = ?2)";
    let total: i64 = conn.query_row(
        &format!("SELECT count(*) FROM approvals {filter}"),
        params![m.status, m.run_id],
        |r| r.get(0),
    )?;
    let items = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM approvals {filter} ORDER BY created_at DESC LIMIT ?3 OFFSET ?4"
        ))?
        .query_map(
            params![m.status, m.run_id, m.page.limit, m.page.offset],
            approval_row,
        )?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Paged {
        items,
        total,
        limit: m.page.limit,
        offset: m.page.offset,
    })
}

pub fn stats(conn: &mut Connection, _: ApprovalStats) -> Result<Vec<(String, i64)>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT status, count(*) FROM approvals GROUP BY status")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<Vec<_>, _>>()?)
}

store_handler!(write SaveRule => save_rule);
store_handler!(write DeleteRule => delete_rule);
store_handler!(write InsertApproval => insert_approval);
store_handler!(write DecideApproval => decide);
store_handler!(GetApproval => get_approval);
store_handler!(ListApprovals => list_approvals);
store_handler!(ApprovalStats => stats);
