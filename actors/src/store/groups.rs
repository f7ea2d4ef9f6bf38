//! Query family: agent groups, their channel bindings, and their spending.

use actix::prelude::*;
use rusqlite::{params, Connection};

use super::StoreError;
use crate::store_handler;

/// An agent group as stored (the API key sealed).
#[derive(Debug, Clone, Default)]
pub struct GroupRow {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub system_prompt: Option<String>,
    pub model: Option<String>,
    pub provider: String,
    pub base_url: Option<String>,
    pub api_key_sealed: Option<String>,
    pub api_key_hint: Option<String>,
    /// `None`: every enabled tool.
    pub skills: Option<Vec<String>>,
    pub max_iterations: Option<u32>,
    pub budget_max_tokens_day: Option<u64>,
    pub budget_max_tokens_month: Option<u64>,
    pub container_isolation: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Insert or replace a group. A name taken by another group is a conflict.
#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct SaveGroup(pub GroupRow);

#[derive(Message)]
#[rtype(result = "Result<bool, StoreError>")]
pub struct DeleteGroup {
    pub id: String,
}

/// Runs and failed runs of a group since a time.
#[derive(Message)]
#[rtype(result = "Result<GroupActivity, StoreError>")]
pub struct GroupActivitySince {
    pub group_id: String,
    pub since: i64,
}

#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupActivity {
    pub runs: i64,
    pub errors: i64,
    pub cost_micros: i64,
}

/// Bind a channel to a group (`None`: unbind). A channel belongs to at most one group.
#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct BindChannel {
    pub channel_id: String,
    pub group_id: Option<String>,
}

pub fn bind_channel(conn: &Connection, msg: BindChannel) -> Result<(), StoreError> {
    match msg.group_id {
        Some(group) => conn.execute(
            "INSERT INTO group_channels (channel_id, group_id, created_at) VALUES (?1, ?2, ?3)
             ON CONFLICT(channel_id) DO UPDATE SET group_id = excluded.group_id,
                 created_at = excluded.created_at",
            params![msg.channel_id, group, crate::time::now_ms()],
        )?,
        None => conn.execute(
            "DELETE FROM group_channels WHERE channel_id = ?1",
            params![msg.channel_id],
        )?,
    };
    Ok(())
}

store_handler!(write BindChannel => bind_channel);

const COLUMNS: &str = "id, name, description, system_prompt, model, provider, base_url, api_key,
    api_key_hint, skills, max_iterations, budget_max_tokens_day, budget_max_tokens_month,
    container_isolation, created_at, updated_at";

/// Every group (start-up).
pub fn load_groups(conn: &Connection) -> Result<Vec<GroupRow>, StoreError> {
    Ok(conn
        .prepare(&format!(
            "SELECT {COLUMNS} FROM agent_groups ORDER BY created_at"
        ))?
        .query_map([], |r| {
            Ok(GroupRow {
                id: r.get(0)?,
                name: r.get(1)?,
                description: r.get(2)?,
                system_prompt: r.get(3)?,
                model: r.get(4)?,
                provider: r.get(5)?,
                base_url: r.get(6)?,
                api_key_sealed: r.get(7)?,
                api_key_hint: r.get(8)?,
                skills: r
                    .get::<_, Option<String>>(9)?
                    .and_then(|s| serde_json::from_str(&s).ok()),
                max_iterations: r.get(10)?,
                budget_max_tokens_day: r.get::<_, Option<i64>>(11)?.map(|v| v.max(0) as u64),
                budget_max_tokens_month: r.get::<_, Option<i64>>(12)?.map(|v| v.max(0) as u64),
                container_isolation: r.get(13)?,
                created_at: r.get(14)?,
                updated_at: r.get(15)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?)
}

/// Tokens each group spent since `since` (unix ms): (group id, tokens).
pub fn tokens_since(conn: &Connection, since: i64) -> Result<Vec<(String, u64)>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT group_id, sum(input_tokens + output_tokens + cache_creation_tokens
                                  + cache_read_tokens)
             FROM api_calls WHERE group_id IS NOT NULL AND created_at >= ?1 GROUP BY group_id",
        )?
        .query_map([since], |r| {
            Ok((r.get(0)?, r.get::<_, i64>(1)?.max(0) as u64))
        })?
        .collect::<Result<Vec<_>, _>>()?)
}

pub fn save_group(conn: &Connection, SaveGroup(g): SaveGroup) -> Result<(), StoreError> {
    let taken: Option<String> = conn
        .query_row(
            "SELECT id FROM agent_groups WHERE name = ?1 AND id != ?2",
            params![g.name, g.id],
            |r| r.get(0),
        )
        .ok();
    if taken.is_some() {
        return Err(StoreError::Conflict(format!(
            "an agent group named {:?} already exists",
            g.name
        )));
    }
    conn.execute(
        &format!(
            "INSERT INTO agent_groups ({COLUMNS}) VALUES
             (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)
             ON CONFLICT(id) DO UPDATE SET name = excluded.name,
                description = excluded.description, system_prompt = excluded.system_prompt,
                model = excluded.model, provider = excluded.provider,
                base_url = excluded.base_url, api_key = excluded.api_key,
                api_key_hint = excluded.api_key_hint, skills = excluded.skills,
                max_iterations = excluded.max_iterations,
                budget_max_tokens_day = excluded.budget_max_tokens_day,
                budget_max_tokens_month = excluded.budget_max_tokens_month,
                container_isolation = excluded.container_isolation,
                updated_at = excluded.updated_at"
        ),
        params![
            g.id,
            g.name,
            g.description,
            g.system_prompt,
            g.model,
            g.provider,
            g.base_url,
            g.api_key_sealed,
            g.api_key_hint,
            g.skills
                .as_ref()
                .map(|s| serde_json::to_string(s).unwrap_or_else(|_| "[]".into())),
            g.max_iterations,
            g.budget_max_tokens_day.map(|v| v as i64),
            g.budget_max_tokens_month.map(|v| v as i64),
            g.container_isolation,
            g.created_at,
            g.updated_at
        ],
    )?;
    Ok(())
}

pub fn delete_group(conn: &Connection, msg: DeleteGroup) -> Result<bool, StoreError> {
    Ok(conn.execute("DELETE FROM agent_groups WHERE id = ?1", [msg.id])? > 0)
}

pub fn activity_since(
    conn: &mut Connection,
    msg: GroupActivitySince,
) -> Result<GroupActivity, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT count(*), coalesce(sum(status = 'error'), 0), coalesce(sum(cost_micros), 0)
             FROM agent_runs WHERE group_id = ?1 AND created_at >= ?2",
        )?
        .query_row(params![msg.group_id, msg.since], |r| {
            Ok(GroupActivity {
                runs: r.get(0)?,
                errors: r.get(1)?,
                cost_micros: r.get(2)?,
            })
        })?)
}

store_handler!(write SaveGroup => save_group);
store_handler!(write DeleteGroup => delete_group);
store_handler!(GroupActivitySince => activity_since);
