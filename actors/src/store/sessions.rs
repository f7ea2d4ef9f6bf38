//! Query family: login sessions. Tokens never reach this module; only their SHA-256 hashes do.

use actix::prelude::*;
use rusqlite::{params, Connection, OptionalExtension};

use super::StoreError;
use crate::store_handler;
use crate::time::now_ms;

/// A live session, as the auth layer needs it.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    pub session_id: i64,
    pub user_id: i64,
    pub username: String,
    pub expires_at: i64,
}

/// Record a new session for `user_id` lasting `ttl_ms`; returns its expiry.
#[derive(Message)]
#[rtype(result = "Result<i64, StoreError>")]
pub struct CreateSession {
    pub user_id: i64,
    pub token_hash: String,
    pub ttl_ms: i64,
}

/// The unexpired session with this token hash, if any.
#[derive(Message)]
#[rtype(result = "Result<Option<SessionInfo>, StoreError>")]
pub struct LookupSession {
    pub token_hash: String,
}

/// The unexpired session with this id, if any (WebSocket tickets name sessions by id).
#[derive(Message)]
#[rtype(result = "Result<Option<SessionInfo>, StoreError>")]
pub struct LookupSessionById {
    pub session_id: i64,
}

/// End a session (logout). Returns whether it existed.
#[derive(Message)]
#[rtype(result = "Result<bool, StoreError>")]
pub struct DeleteSession {
    pub token_hash: String,
}

/// Remove expired sessions; returns how many went.
#[derive(Message)]
#[rtype(result = "Result<usize, StoreError>")]
pub struct PurgeExpiredSessions;

pub fn create_session(conn: &Connection, msg: CreateSession) -> Result<i64, StoreError> {
    let now = now_ms();
    let expires_at = now + msg.ttl_ms;
    conn.execute(
        "INSERT INTO sessions (user_id, token_hash, created_at, expires_at, last_seen_at)
         VALUES (?1, ?2, ?3, ?4, ?3)",
        params![msg.user_id, msg.token_hash, now, expires_at],
    )?;
    Ok(expires_at)
}

const SESSION_SELECT: &str = "SELECT s.id, s.user_id, u.username, s.expires_at
     FROM sessions s JOIN users u ON u.id = s.user_id";

fn session_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SessionInfo> {
    Ok(SessionInfo {
        session_id: r.get(0)?,
        user_id: r.get(1)?,
        username: r.get(2)?,
        expires_at: r.get(3)?,
    })
}

pub fn lookup_session(
    conn: &mut Connection,
    msg: LookupSession,
) -> Result<Option<SessionInfo>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "{SESSION_SELECT} WHERE s.token_hash = ?1 AND s.expires_at > ?2"
    ))?;
    Ok(stmt
        .query_row(params![msg.token_hash, now_ms()], session_row)
        .optional()?)
}

pub fn lookup_session_by_id(
    conn: &mut Connection,
    msg: LookupSessionById,
) -> Result<Option<SessionInfo>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "{SESSION_SELECT} WHERE s.id = ?1 AND s.expires_at > ?2"
    ))?;
    Ok(stmt
        .query_row(params![msg.session_id, now_ms()], session_row)
        .optional()?)
}

pub fn delete_session(conn: &Connection, msg: DeleteSession) -> Result<bool, StoreError> {
    Ok(conn.execute(
        "DELETE FROM sessions WHERE token_hash = ?1",
        [msg.token_hash],
    )? > 0)
}

pub fn purge_expired_sessions(
    conn: &Connection,
    _: PurgeExpiredSessions,
) -> Result<usize, StoreError> {
    Ok(conn.execute("DELETE FROM sessions WHERE expires_at <= ?1", [now_ms()])?)
}

store_handler!(write CreateSession => create_session);
store_handler!(LookupSession => lookup_session);
store_handler!(LookupSessionById => lookup_session_by_id);
store_handler!(write DeleteSession => delete_session);
store_handler!(write PurgeExpiredSessions => purge_expired_sessions);
