//! Query family: user accounts.

use actix::prelude::*;
use rusqlite::{params, Connection, OptionalExtension};

use super::StoreError;
use crate::store_handler;
use crate::time::now_ms;

#[derive(Debug, Clone)]
pub struct UserRecord {
    pub id: i64,
    pub username: String,
    pub password_hash: String,
}

/// How many users exist (0 means first-visit setup is open).
#[derive(Message)]
#[rtype(result = "Result<i64, StoreError>")]
pub struct CountUsers;

/// Create the admin account, but only while no user exists: two racing setups cannot both win.
#[derive(Message)]
#[rtype(result = "Result<i64, StoreError>")]
pub struct CreateFirstUser {
    pub username: String,
    pub password_hash: String,
}

/// Look a user up by name (case-insensitive) for login.
#[derive(Message)]
#[rtype(result = "Result<Option<UserRecord>, StoreError>")]
pub struct FindUser {
    pub username: String,
}

pub fn count_users(conn: &mut Connection, _: CountUsers) -> Result<i64, StoreError> {
    Ok(conn.query_row("SELECT count(*) FROM users", [], |r| r.get(0))?)
}

pub fn create_first_user(conn: &Connection, msg: CreateFirstUser) -> Result<i64, StoreError> {
    let now = now_ms();
    let inserted = conn.execute(
        "INSERT INTO users (username, password_hash, created_at, updated_at)
         SELECT ?1, ?2, ?3, ?3 WHERE NOT EXISTS (SELECT 1 FROM users)",
        params![msg.username, msg.password_hash, now],
    )?;
    if inserted == 0 {
        return Err(StoreError::Conflict(
            "setup has already been completed".into(),
        ));
    }
    Ok(conn.last_insert_rowid())
}

pub fn find_user(conn: &mut Connection, msg: FindUser) -> Result<Option<UserRecord>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT id, username, password_hash FROM users WHERE username = ?1",
            [msg.username],
            |r| {
                Ok(UserRecord {
                    id: r.get(0)?,
                    username: r.get(1)?,
                    password_hash: r.get(2)?,
                })
            },
        )
        .optional()?)
}

/// Replace a user's password hash and end all their sessions (offline `admin reset-password`).
/// Returns false when there is no such user.
pub fn set_password(
    conn: &mut Connection,
    username: &str,
    password_hash: &str,
) -> Result<bool, StoreError> {
    let tx = conn.transaction()?;
    let changed = tx.execute(
        "UPDATE users SET password_hash = ?2, updated_at = ?3 WHERE username = ?1",
        params![username, password_hash, now_ms()],
    )?;
    if changed > 0 {
        tx.execute(
            "DELETE FROM sessions WHERE user_id = (SELECT id FROM users WHERE username = ?1)",
            [username],
        )?;
    }
    tx.commit()?;
    Ok(changed > 0)
}

store_handler!(CountUsers => count_users);
store_handler!(write CreateFirstUser => create_first_user);
store_handler!(FindUser => find_user);
