//! Query family: conversations and their message history (Messages API JSON per message).

use rusqlite::{params, Connection};

use super::StoreError;

/// Messages to add to a conversation, creating it on first use.
#[derive(Debug, Clone)]
pub struct Append {
    pub conversation_id: String,
    pub source: String,
    /// (role, content as a JSON array of blocks)
    pub messages: Vec<(&'static str, String)>,
}

pub(crate) fn append(
    conn: &Connection,
    a: &Append,
    run_id: Option<&str>,
    now: i64,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO conversations (id, source, created_at, updated_at) VALUES (?1, ?2, ?3, ?3)
         ON CONFLICT(id) DO UPDATE SET updated_at = excluded.updated_at",
    )?
    .execute(params![a.conversation_id, a.source, now])?;
    let mut insert = conn.prepare_cached(
        "INSERT INTO messages (conversation_id, run_id, role, content, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for (role, content) in &a.messages {
        insert.execute(params![a.conversation_id, run_id, role, content, now])?;
    }
    Ok(())
}

/// The newest `limit` messages of a conversation, oldest first: (role, content JSON).
pub(crate) fn history(
    conn: &Connection,
    conversation_id: &str,
    limit: i64,
) -> Result<Vec<(String, String)>, StoreError> {
    let mut rows = conn
        .prepare_cached(
            "SELECT role, content FROM messages WHERE conversation_id = ?1
             ORDER BY id DESC LIMIT ?2",
        )?
        .query_map(params![conversation_id, limit], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    rows.reverse();
    Ok(rows)
}
