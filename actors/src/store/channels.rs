//! Query family: chat channels, their inbox (every message received, written before the
//! platform is told it arrived) and which conversation each chat continues.

use std::collections::HashMap;

use actix::prelude::*;
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use super::StoreError;
use crate::store_handler;
use crate::time::now_ms;

/// A channel as stored (credentials sealed).
#[derive(Debug, Clone)]
pub struct ChannelRow {
    pub id: String,
    pub kind: String,
    pub name: String,
    /// The non-secret configuration (JSON object).
    pub config: serde_json::Value,
    /// The credentials: a sealed JSON object.
    pub secrets_sealed: Option<String>,
    pub allowed_senders: Vec<String>,
    pub enabled: bool,
    /// What the channel resumes from (JSON), e.g. Telegram's update offset.
    pub state: Option<serde_json::Value>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A message in the inbox.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InboxRow {
    pub id: i64,
    pub channel_id: String,
    pub external_id: String,
    pub chat_key: String,
    pub sender: String,
    pub sender_name: Option<String>,
    pub text: String,
    /// What the reply needs (email subject and references, Telegram message id, ...).
    pub meta: Option<serde_json::Value>,
    pub conversation_id: Option<String>,
    pub status: String,
    pub ignored_reason: Option<String>,
    pub run_id: Option<String>,
    pub reply: Option<String>,
    pub error: Option<String>,
    pub attempts: i64,
    #[serde(serialize_with = "crate::time::ms_as_rfc3339")]
    pub received_at: i64,
    #[serde(serialize_with = "crate::time::opt_ms_as_rfc3339")]
    pub answered_at: Option<i64>,
}

/// A message as a channel received it, before it has an id.
#[derive(Debug, Clone)]
pub struct NewInbound {
    pub external_id: String,
    pub chat_key: String,
    pub sender: String,
    pub sender_name: Option<String>,
    pub text: String,
    pub meta: Option<serde_json::Value>,
    pub disposition: Disposition,
}

/// What the gateway does with a received message.
#[derive(Debug, Clone)]
pub enum Disposition {
    /// Answer it with an agent run.
    Run,
    /// Answer with a fixed text, no run (`/start`); `reset` starts a new conversation first.
    Fixed { reply: String, reset: bool },
    /// Record it and do nothing (sender not allowed, not addressed to the bot, ...).
    Ignore { reason: String },
}

/// Store what a channel received (duplicates of stored messages are skipped) and the state
/// it resumes from, in one transaction. Answers the stored rows, in order.
#[derive(Message)]
#[rtype(result = "Result<Vec<InboxRow>, StoreError>")]
pub struct ReceiveMessages {
    pub channel_id: String,
    pub messages: Vec<NewInbound>,
    pub state: Option<serde_json::Value>,
}

#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct SaveChannel(pub ChannelRow);

/// Delete a channel: the row and its messages stay; messages not yet answered are closed.
#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct DeleteChannel {
    pub id: String,
}

#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct SaveChannelState {
    pub id: String,
    pub state: serde_json::Value,
}

/// The reply to send for a message whose run did not produce one (an apology, a notice).
#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct SetReply {
    pub id: i64,
    pub reply: String,
    pub error: Option<String>,
}

/// The reply went out (`answered`) or cannot (`failed`, with why).
#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct CloseMessage {
    pub id: i64,
    pub status: &'static str,
    pub error: Option<String>,
}

/// One more failed delivery attempt (the reply is retried).
#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct CountAttempt {
    pub id: i64,
    pub error: String,
}

/// Every message not yet answered, oldest first (a restarted manager rebuilds its lanes).
#[derive(Message)]
#[rtype(result = "Result<Vec<InboxRow>, StoreError>")]
pub struct OpenMessages;

fn open_messages(conn: &Connection, _: OpenMessages) -> Result<Vec<InboxRow>, StoreError> {
    load_open_messages(conn)
}

/// The newest messages of a channel.
#[derive(Message)]
#[rtype(result = "Result<Vec<InboxRow>, StoreError>")]
pub struct ListChannelMessages {
    pub channel_id: String,
    pub limit: i64,
    pub before: Option<i64>,
}

/// Counts per status of one channel's messages.
#[derive(Message)]
#[rtype(result = "Result<HashMap<String, i64>, StoreError>")]
pub struct ChannelMessageCounts {
    pub channel_id: String,
}

const CHANNEL_COLUMNS: &str = "id, type, name, config, secrets, allowed_senders, enabled, state,
    created_at, updated_at";

fn json_or_null(text: Option<String>) -> Option<serde_json::Value> {
    text.and_then(|t| serde_json::from_str(&t).ok())
}

/// Every channel not deleted (start-up).
pub fn load_channels(conn: &Connection) -> Result<Vec<ChannelRow>, StoreError> {
    Ok(conn
        .prepare(&format!(
            "SELECT {CHANNEL_COLUMNS} FROM channels WHERE deleted_at IS NULL ORDER BY created_at"
        ))?
        .query_map([], |r| {
            Ok(ChannelRow {
                id: r.get(0)?,
                kind: r.get(1)?,
                name: r.get(2)?,
                config: json_or_null(r.get(3)?).unwrap_or_default(),
                secrets_sealed: r.get(4)?,
                allowed_senders: serde_json::from_str(&r.get::<_, String>(5)?).unwrap_or_default(),
                enabled: r.get(6)?,
                state: json_or_null(r.get(7)?),
                created_at: r.get(8)?,
                updated_at: r.get(9)?,
            })
        })?
        .collect::<Result<_, _>>()?)
}

/// When each channel last received a message (start-up).
pub fn last_message_times(conn: &Connection) -> Result<HashMap<String, i64>, StoreError> {
    Ok(conn
        .prepare("SELECT channel_id, MAX(received_at) FROM channel_messages GROUP BY channel_id")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?)
}

/// Channel id → the agent group it is bound to (start-up).
pub fn load_bindings(conn: &Connection) -> Result<HashMap<String, String>, StoreError> {
    Ok(conn
        .prepare("SELECT channel_id, group_id FROM group_channels")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?)
}

const INBOX_COLUMNS: &str = "id, channel_id, external_id, chat_key, sender, sender_name, text,
    meta, conversation_id, status, ignored_reason, run_id, reply, error, attempts, received_at,
    answered_at";

fn inbox_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<InboxRow> {
    Ok(InboxRow {
        id: r.get(0)?,
        channel_id: r.get(1)?,
        external_id: r.get(2)?,
        chat_key: r.get(3)?,
        sender: r.get(4)?,
        sender_name: r.get(5)?,
        text: r.get(6)?,
        meta: json_or_null(r.get(7)?),
        conversation_id: r.get(8)?,
        status: r.get(9)?,
        ignored_reason: r.get(10)?,
        run_id: r.get(11)?,
        reply: r.get(12)?,
        error: r.get(13)?,
        attempts: r.get(14)?,
        received_at: r.get(15)?,
        answered_at: r.get(16)?,
    })
}

/// Messages not yet answered, oldest first (start-up: they are picked up again).
pub fn load_open_messages(conn: &Connection) -> Result<Vec<InboxRow>, StoreError> {
    Ok(conn
        .prepare(&format!(
            "SELECT {INBOX_COLUMNS} FROM channel_messages
             WHERE status IN ('pending', 'replying') ORDER BY id"
        ))?
        .query_map([], inbox_row)?
        .collect::<Result<_, _>>()?)
}

fn get_message(conn: &Connection, id: i64) -> Result<InboxRow, StoreError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {INBOX_COLUMNS} FROM channel_messages WHERE id = ?1"
        ))?
        .query_row([id], inbox_row)?)
}

/// The conversation a chat continues, created on first use (or anew on reset).
fn conversation_for(
    conn: &Connection,
    channel_id: &str,
    chat_key: &str,
    reset: bool,
    now: i64,
) -> Result<String, StoreError> {
    if !reset {
        let found: Option<String> = conn
            .prepare_cached(
                "SELECT conversation_id FROM channel_conversations
                 WHERE channel_id = ?1 AND chat_key = ?2",
            )?
            .query_row(params![channel_id, chat_key], |r| r.get(0))
            .optional()?;
        if let Some(id) = found {
            return Ok(id);
        }
    }
    let id = uuid::Uuid::new_v4().to_string();
    conn.prepare_cached(
        "INSERT INTO channel_conversations (channel_id, chat_key, conversation_id, updated_at)
         VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT(channel_id, chat_key) DO UPDATE
         SET conversation_id = excluded.conversation_id, updated_at = excluded.updated_at",
    )?
    .execute(params![channel_id, chat_key, id, now])?;
    Ok(id)
}

pub fn receive_messages(
    conn: &Connection,
    msg: ReceiveMessages,
) -> Result<Vec<InboxRow>, StoreError> {
    let now = now_ms();
    let deleted: Option<Option<i64>> = conn
        .prepare_cached("SELECT deleted_at FROM channels WHERE id = ?1")?
        .query_row([&msg.channel_id], |r| r.get(0))
        .optional()?;
    if !matches!(deleted, Some(None)) {
        // Deleted (or unknown): a retired reader's late delivery is dropped, not reopened.
        return Ok(Vec::new());
    }
    let mut stored = Vec::with_capacity(msg.messages.len());
    for m in msg.messages {
        let exists: Option<i64> = conn
            .prepare_cached(
                "SELECT id FROM channel_messages WHERE channel_id = ?1 AND external_id = ?2",
            )?
            .query_row(params![msg.channel_id, m.external_id], |r| r.get(0))
            .optional()?;
        if exists.is_some() {
            continue;
        }
        let (status, reply, ignored, conversation) = match &m.disposition {
            Disposition::Run => (
                "pending",
                None,
                None,
                Some(conversation_for(
                    conn,
                    &msg.channel_id,
                    &m.chat_key,
                    false,
                    now,
                )?),
            ),
            Disposition::Fixed { reply, reset } => (
                "replying",
                Some(reply.clone()),
                None,
                Some(conversation_for(
                    conn,
                    &msg.channel_id,
                    &m.chat_key,
                    *reset,
                    now,
                )?),
            ),
            Disposition::Ignore { reason } => ("ignored", None, Some(reason.clone()), None),
        };
        conn.prepare_cached(
            "INSERT INTO channel_messages (channel_id, external_id, chat_key, sender, sender_name,
                 text, meta, conversation_id, status, ignored_reason, reply, received_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        )?
        .execute(params![
            msg.channel_id,
            m.external_id,
            m.chat_key,
            m.sender,
            m.sender_name,
            m.text,
            m.meta.as_ref().map(|v| v.to_string()),
            conversation,
            status,
            ignored,
            reply,
            now
        ])?;
        stored.push(get_message(conn, conn.last_insert_rowid())?);
    }
    if let Some(state) = msg.state {
        conn.prepare_cached("UPDATE channels SET state = ?2 WHERE id = ?1")?
            .execute(params![msg.channel_id, state.to_string()])?;
    }
    Ok(stored)
}

pub fn save_channel(conn: &Connection, SaveChannel(c): SaveChannel) -> Result<(), StoreError> {
    let taken: Option<String> = conn
        .query_row(
            "SELECT id FROM channels WHERE name = ?1 AND id != ?2 AND deleted_at IS NULL",
            params![c.name, c.id],
            |r| r.get(0),
        )
        .optional()?;
    if taken.is_some() {
        return Err(StoreError::Conflict(format!(
            "a channel named {:?} already exists",
            c.name
        )));
    }
    conn.execute(
        "INSERT INTO channels (id, type, name, config, secrets, allowed_senders, enabled, state,
             created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
         ON CONFLICT(id) DO UPDATE SET name = excluded.name, config = excluded.config,
             secrets = excluded.secrets, allowed_senders = excluded.allowed_senders,
             enabled = excluded.enabled, updated_at = excluded.updated_at",
        params![
            c.id,
            c.kind,
            c.name,
            c.config.to_string(),
            c.secrets_sealed,
            serde_json::to_string(&c.allowed_senders).unwrap_or_else(|_| "[]".into()),
            c.enabled,
            c.state.as_ref().map(|s| s.to_string()),
            c.created_at,
            c.updated_at
        ],
    )?;
    Ok(())
}

pub fn delete_channel(conn: &Connection, msg: DeleteChannel) -> Result<(), StoreError> {
    let now = now_ms();
    conn.execute(
        "UPDATE channels SET deleted_at = ?2, updated_at = ?2 WHERE id = ?1",
        params![msg.id, now],
    )?;
    conn.execute(
        "UPDATE channel_messages SET status = 'failed', error = 'the channel was deleted'
         WHERE channel_id = ?1 AND status IN ('pending', 'replying')",
        params![msg.id],
    )?;
    conn.execute(
        "DELETE FROM group_channels WHERE channel_id = ?1",
        params![msg.id],
    )?;
    Ok(())
}

pub fn save_channel_state(conn: &Connection, msg: SaveChannelState) -> Result<(), StoreError> {
    conn.prepare_cached("UPDATE channels SET state = ?2 WHERE id = ?1")?
        .execute(params![msg.id, msg.state.to_string()])?;
    Ok(())
}

/// A finished run answered its message: the reply is stored with the run's record, in the
/// same transaction, so a crash can neither lose it nor run the message again.
pub(crate) fn attach_run_reply(
    conn: &Connection,
    message_id: i64,
    run_id: &str,
    reply: &str,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE channel_messages SET status = 'replying', reply = ?3, run_id = ?2
         WHERE id = ?1 AND status = 'pending'",
    )?
    .execute(params![message_id, run_id, reply])?;
    Ok(())
}

pub fn set_reply(conn: &Connection, msg: SetReply) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE channel_messages SET status = 'replying', reply = ?2, error = ?3
         WHERE id = ?1 AND status = 'pending'",
    )?
    .execute(params![msg.id, msg.reply, msg.error])?;
    Ok(())
}

pub fn close_message(conn: &Connection, msg: CloseMessage) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE channel_messages SET status = ?2, error = COALESCE(?3, error), answered_at = ?4
         WHERE id = ?1",
    )?
    .execute(params![msg.id, msg.status, msg.error, now_ms()])?;
    Ok(())
}

pub fn count_attempt(conn: &Connection, msg: CountAttempt) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE channel_messages SET attempts = attempts + 1, error = ?2 WHERE id = ?1",
    )?
    .execute(params![msg.id, msg.error])?;
    Ok(())
}

pub fn list_channel_messages(
    conn: &Connection,
    msg: ListChannelMessages,
) -> Result<Vec<InboxRow>, StoreError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {INBOX_COLUMNS} FROM channel_messages
             WHERE channel_id = ?1 AND id < ?2 ORDER BY id DESC LIMIT ?3"
        ))?
        .query_map(
            params![msg.channel_id, msg.before.unwrap_or(i64::MAX), msg.limit],
            inbox_row,
        )?
        .collect::<Result<_, _>>()?)
}

pub fn channel_message_counts(
    conn: &Connection,
    msg: ChannelMessageCounts,
) -> Result<HashMap<String, i64>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT status, COUNT(*) FROM channel_messages WHERE channel_id = ?1 GROUP BY status",
        )?
        .query_map([msg.channel_id], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?)
}

store_handler!(write ReceiveMessages => receive_messages);
store_handler!(write SaveChannel => save_channel);
store_handler!(write DeleteChannel => delete_channel);
store_handler!(write SaveChannelState => save_channel_state);
store_handler!(write SetReply => set_reply);
store_handler!(write CloseMessage => close_message);
store_handler!(write CountAttempt => count_attempt);
store_handler!(ListChannelMessages => list_channel_messages);
store_handler!(OpenMessages => open_messages);
store_handler!(ChannelMessageCounts => channel_message_counts);
