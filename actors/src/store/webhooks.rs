//! Query family: webhooks, their outbound deliveries and their logs.

use actix::prelude::*;
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use super::{Page, Paged, StoreError};
use crate::store_handler;
use crate::time::{now_ms, rfc3339};

/// A webhook as stored: the token only as its hash, the signing secret sealed.
#[derive(Debug, Clone)]
pub struct WebhookRow {
    pub id: String,
    pub name: String,
    pub platform: String,
    pub token_hash: String,
    pub token_hint: String,
    pub events: Vec<String>,
    pub target_url: Option<String>,
    pub signing_secret_sealed: String,
    pub enabled: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Insert or replace a webhook (the Webhooks actor owns the whole row).
#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct SaveWebhook(pub WebhookRow);

#[derive(Message)]
#[rtype(result = "Result<bool, StoreError>")]
pub struct DeleteWebhook {
    pub id: String,
}

#[derive(Debug, Clone)]
pub struct DeliveryRow {
    pub id: String,
    pub webhook_id: String,
    pub event: String,
    pub body: String,
    pub attempts: i64,
    pub next_attempt_at: i64,
}

#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct InsertDelivery(pub DeliveryRow);

/// The outcome of one delivery attempt: updates the delivery and logs the attempt, together.
#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct RecordAttempt {
    pub delivery_id: String,
    pub webhook_id: String,
    pub event: String,
    /// `pending` (will retry), `delivered` or `failed` (gave up).
    pub status: &'static str,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub status_code: Option<i64>,
    pub error: Option<String>,
    pub duration_ms: i64,
}

/// An inbound call, for the webhook's log.
#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct LogInbound {
    pub webhook_id: String,
    pub status_code: i64,
    pub detail: String,
    pub duration_ms: i64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookLogRow {
    pub id: i64,
    pub direction: String,
    pub event: Option<String>,
    pub delivery_id: Option<String>,
    pub status_code: Option<i64>,
    pub detail: Option<String>,
    pub duration_ms: Option<i64>,
    pub created_at: String,
}

#[derive(Message)]
#[rtype(result = "Result<Paged<WebhookLogRow>, StoreError>")]
pub struct ListWebhookLogs {
    pub webhook_id: String,
    pub page: Page,
}

/// Every webhook (start-up).
pub fn load_webhooks(conn: &Connection) -> Result<Vec<WebhookRow>, StoreError> {
    Ok(conn
        .prepare(
            "SELECT id, name, platform, token_hash, token_hint, events, target_url, signing_secret,
                    enabled, created_at, updated_at FROM webhooks ORDER BY created_at",
        )?
        .query_map([], |r| {
            Ok(WebhookRow {
                id: r.get(0)?,
                name: r.get(1)?,
                platform: r.get(2)?,
                token_hash: r.get(3)?,
                token_hint: r.get(4)?,
                events: serde_json::from_str(&r.get::<_, String>(5)?).unwrap_or_default(),
                target_url: r.get(6)?,
                signing_secret_sealed: r.get(7)?,
                enabled: r.get(8)?,
                created_at: r.get(9)?,
                updated_at: r.get(10)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?)
}

/// Deliveries still to be made (start-up).
pub fn load_pending_deliveries(conn: &Connection) -> Result<Vec<DeliveryRow>, StoreError> {
    Ok(conn
        .prepare(
            "SELECT id, webhook_id, event, body, attempts, next_attempt_at
             FROM webhook_deliveries WHERE status = 'pending' ORDER BY next_attempt_at",
        )?
        .query_map([], |r| {
            Ok(DeliveryRow {
                id: r.get(0)?,
                webhook_id: r.get(1)?,
                event: r.get(2)?,
                body: r.get(3)?,
                attempts: r.get(4)?,
                next_attempt_at: r.get(5)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?)
}

pub fn save_webhook(conn: &Connection, SaveWebhook(w): SaveWebhook) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO webhooks (id, name, platform, token_hash, token_hint, events, target_url,
                               signing_secret, enabled, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
         ON CONFLICT(id) DO UPDATE SET name = excluded.name, platform = excluded.platform,
             token_hash = excluded.token_hash, token_hint = excluded.token_hint,
             events = excluded.events, target_url = excluded.target_url,
             signing_secret = excluded.signing_secret, enabled = excluded.enabled,
             updated_at = excluded.updated_at",
        params![
            w.id,
            w.name,
            w.platform,
            w.token_hash,
            w.token_hint,
            serde_json::to_string(&w.events).unwrap_or_else(|_| "[]".into()),
            w.target_url,
            w.signing_secret_sealed,
            w.enabled,
            w.created_at,
            w.updated_at
        ],
    )?;
    Ok(())
}

pub fn delete_webhook(conn: &Connection, msg: DeleteWebhook) -> Result<bool, StoreError> {
    Ok(conn.execute("DELETE FROM webhooks WHERE id = ?1", [msg.id])? > 0)
}

pub fn insert_delivery(
    conn: &Connection,
    InsertDelivery(d): InsertDelivery,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO webhook_deliveries (id, webhook_id, event, body, status, attempts,
                                         next_attempt_at, created_at)
         VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?6, ?7)",
    )?
    .execute(params![
        d.id,
        d.webhook_id,
        d.event,
        d.body,
        d.attempts,
        d.next_attempt_at,
        now_ms()
    ])?;
    Ok(())
}

pub fn record_attempt(conn: &Connection, m: RecordAttempt) -> Result<(), StoreError> {
    let tx = conn;
    let now = now_ms();
    tx.prepare_cached(
        "UPDATE webhook_deliveries SET status = ?2, attempts = ?3, next_attempt_at = ?4,
                last_status = ?5, last_error = ?6,
                delivered_at = CASE WHEN ?2 = 'delivered' THEN ?7 ELSE delivered_at END
         WHERE id = ?1",
    )?
    .execute(params![
        m.delivery_id,
        m.status,
        m.attempts,
        m.next_attempt_at,
        m.status_code,
        m.error,
        now
    ])?;
    // The webhook may have been deleted meanwhile; then there is nothing to log against.
    let exists: Option<i64> = tx
        .query_row(
            "SELECT 1 FROM webhooks WHERE id = ?1",
            [&m.webhook_id],
            |r| r.get(0),
        )
        .optional()?;
    if exists.is_some() {
        tx.prepare_cached(
            "INSERT INTO webhook_logs (webhook_id, direction, event, delivery_id, status_code,
                                       detail, duration_ms, created_at)
             VALUES (?1, 'outbound', ?2, ?3, ?4, ?5, ?6, ?7)",
        )?
        .execute(params![
            m.webhook_id,
            m.event,
            m.delivery_id,
            m.status_code,
            m.error
                .clone()
                .unwrap_or_else(|| format!("attempt {}: {}", m.attempts, m.status)),
            m.duration_ms,
            now
        ])?;
    }
    Ok(())
}

pub fn log_inbound(conn: &Connection, m: LogInbound) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO webhook_logs (webhook_id, direction, status_code, detail, duration_ms,
                                   created_at)
         VALUES (?1, 'inbound', ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        m.webhook_id,
        m.status_code,
        m.detail,
        m.duration_ms,
        now_ms()
    ])?;
    Ok(())
}

pub fn list_logs(
    conn: &mut Connection,
    msg: ListWebhookLogs,
) -> Result<Paged<WebhookLogRow>, StoreError> {
    let total: i64 = conn.query_row(
        "SELECT count(*) FROM webhook_logs WHERE webhook_id = ?1",
        [&msg.webhook_id],
        |r| r.get(0),
    )?;
    let items = conn
        .prepare_cached(
            "SELECT id, direction, event, delivery_id, status_code, detail, duration_ms, created_at
             FROM webhook_logs WHERE webhook_id = ?1 ORDER BY id DESC LIMIT ?2 OFFSET ?3",
        )?
        .query_map(
            params![msg.webhook_id, msg.page.limit, msg.page.offset],
            |r| {
                Ok(WebhookLogRow {
                    id: r.get(0)?,
                    direction: r.get(1)?,
                    event: r.get(2)?,
                    delivery_id: r.get(3)?,
                    status_code: r.get(4)?,
                    detail: r.get(5)?,
                    duration_ms: r.get(6)?,
                    created_at: rfc3339(r.get(7)?),
                })
            },
        )?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Paged {
        items,
        total,
        limit: msg.page.limit,
        offset: msg.page.offset,
    })
}

store_handler!(write SaveWebhook => save_webhook);
store_handler!(write DeleteWebhook => delete_webhook);
store_handler!(write InsertDelivery => insert_delivery);
store_handler!(write RecordAttempt => record_attempt);
store_handler!(write LogInbound => log_inbound);
store_handler!(ListWebhookLogs => list_logs);
