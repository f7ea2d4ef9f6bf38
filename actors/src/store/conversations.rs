//! Query family: conversations and their message history (Messages API JSON per message).

use rusqlite::{params, Connection};

use super::StoreError;

/// Messages to add to a conversation, creating it on first use.
#[derive(Debug, Clone)]
pub struct Append {
    pub conversation_id: String,
    pub source: String,
    /// Set when the conversation is created; never changed after.
    pub owner: Option<String>,
    /// (role, content as a JSON array of blocks)
    pub messages: Vec<(&'static str, String)>,
}

pub(crate) fn append(
    conn: &Connection,
    a: &Append,
    run_id: Option<&str>,
    now: i64,
) -> Result<(), StoreError> {
    let claimed = conn
        .prepare_cached(
            "INSERT INTO conversations (id, source, owner, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?4)
             ON CONFLICT(id) DO UPDATE SET updated_at = excluded.updated_at
             WHERE excluded.owner IS NULL OR conversations.owner IS NULL
                OR conversations.owner = excluded.owner",
        )?
        .execute(params![a.conversation_id, a.source, a.owner, now])?;
    if claimed == 0 {
        // Someone else started a conversation with this id while this run was going (the
        // start checks ownership): keep their history clean.
        tracing::warn!(conversation = %a.conversation_id, "conversation taken by another owner; turn not kept");
        return Ok(());
    }
    let mut insert = conn.prepare_cached(
        "INSERT INTO messages (conversation_id, run_id, role, content, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for (role, content) in &a.messages {
        insert.execute(params![a.conversation_id, run_id, role, content, now])?;
    }
    Ok(())
}

/// Whether `owner` may continue the conversation: it does not exist yet, has no owner, or is
/// theirs.
pub(crate) fn may_continue(
    conn: &Connection,
    conversation_id: &str,
    owner: &str,
) -> Result<bool, StoreError> {
    let found: Option<Option<String>> = conn
        .prepare_cached("SELECT owner FROM conversations WHERE id = ?1")?
        .query_row([conversation_id], |r| r.get(0))
        .map(Some)
        .or_else(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => Ok(None),
            e => Err(e),
        })?;
    Ok(match found {
        Some(Some(o)) => o == owner,
        _ => true,
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn turn(owner: Option<&str>, text: &str) -> Append {
        Append {
            conversation_id: "user-1".into(),
            source: "webhook".into(),
            owner: owner.map(str::to_string),
            messages: vec![(
                "user",
                format!("[{{\"type\":\"text\",\"text\":\"{text}\"}}]"),
            )],
        }
    }

    #[test]
    fn only_the_owner_or_an_unchecked_source_adds_to_a_conversation() {
        let mut conn = Connection::open_in_memory().unwrap();
        super::super::schema::migrate(&mut conn, ":memory:").unwrap();
        append(&conn, &turn(Some("webhook:a"), "one"), None, 1).unwrap();
        assert!(may_continue(&conn, "user-1", "webhook:a").unwrap());
        assert!(!may_continue(&conn, "user-1", "webhook:b").unwrap());
        assert!(may_continue(&conn, "user-2", "webhook:b").unwrap());
        // Another owner's turn (a race past the start's check) is not kept.
        append(&conn, &turn(Some("webhook:b"), "two"), None, 2).unwrap();
        // The owner's and an unchecked source's are.
        append(&conn, &turn(Some("webhook:a"), "three"), None, 3).unwrap();
        append(&conn, &turn(None, "four"), None, 4).unwrap();
        let texts: Vec<String> = history(&conn, "user-1", 10)
            .unwrap()
            .into_iter()
            .map(|(_, content)| content)
            .collect();
        assert_eq!(texts.len(), 3, "{texts:?}");
        assert!(texts.iter().all(|t| !t.contains("two")), "{texts:?}");
    }
}
