//! `Webhooks`: the webhook platform's actor. It owns the webhooks (cached in memory, so an
//! inbound token check costs no query), checks inbound tokens, and delivers matching bus events
//! to target URLs: signed (`X-Loop-Signature: sha256=<HMAC of the body>`), with timeouts,
//! retried with exponential backoff, every attempt persisted and logged, and pending deliveries
//! resumed after a restart.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::bus::{BusEvent, EventBus, Subscribe};
use crate::events::GatewayEvent;
use crate::secrets::SecretBox;
use crate::store::webhooks::{
    DeleteWebhook as DeleteRow, DeliveryRow, InsertDelivery, RecordAttempt, SaveWebhook, WebhookRow,
};
use crate::store::{Store, StoreError};
use crate::time::{now_ms, rfc3339};

const SECRET_CONTEXT: &str = "webhooks.signing_secret";
pub const PLATFORMS: &[&str] = &["generic", "n8n", "make"];

#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    pub max_attempts: u32,
    pub retry_base: Duration,
    pub retry_max: Duration,
    pub timeout: Duration,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(300),
            timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("{0}")]
    Invalid(String),
    #[error("no webhook with id {0}")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A webhook as the API shows it: never the token or the signing secret.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookView {
    pub id: String,
    pub name: String,
    pub platform: String,
    pub events: Vec<String>,
    pub target_url: Option<String>,
    pub enabled: bool,
    /// The token's last four characters, to tell tokens apart.
    pub token_hint: String,
    pub created_at: String,
    pub updated_at: String,
}

/// A new or rotated webhook with its secrets, shown once.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookSecrets {
    #[serde(flatten)]
    pub webhook: WebhookView,
    pub token: String,
    pub signing_secret: String,
}

/// Fields of a create or an update (absent: unchanged on update, default on create).
#[derive(Debug, Clone, Default)]
pub struct WebhookFields {
    pub name: Option<String>,
    pub platform: Option<String>,
    pub events: Option<Vec<String>>,
    /// `Some(None)` clears the target.
    pub target_url: Option<Option<String>>,
    pub enabled: Option<bool>,
}

#[derive(Message)]
#[rtype(result = "Result<WebhookSecrets, WebhookError>")]
pub struct CreateWebhook(pub WebhookFields);

#[derive(Message)]
#[rtype(result = "Result<WebhookView, WebhookError>")]
pub struct UpdateWebhook {
    pub id: String,
    pub fields: WebhookFields,
}

#[derive(Message)]
#[rtype(result = "Result<(), WebhookError>")]
pub struct DeleteWebhook {
    pub id: String,
}

/// Replace the token (and the signing secret); the old ones stop working at once.
#[derive(Message)]
#[rtype(result = "Result<WebhookSecrets, WebhookError>")]
pub struct RotateWebhookSecrets {
    pub id: String,
}

#[derive(Message)]
#[rtype(result = "Vec<WebhookView>")]
pub struct ListWebhooks;

#[derive(Message)]
#[rtype(result = "Option<WebhookView>")]
pub struct GetWebhook {
    pub id: String,
}

/// The enabled webhooks by token hash: an immutable snapshot the `Webhooks` actor publishes
/// after every change. Inbound calls check their token against it on their own thread
/// (no round trip to the actor on the hot path); only the actor ever writes it.
#[derive(Clone, Default)]
pub struct TokenDirectory(Arc<arc_swap::ArcSwap<HashMap<String, InboundWebhook>>>);

impl TokenDirectory {
    /// The enabled webhook this token opens, if any.
    pub fn authenticate(&self, token: &str) -> Option<InboundWebhook> {
        self.0.load().get(&hash_token(token)).cloned()
    }
}

#[derive(Debug, Clone)]
pub struct InboundWebhook {
    pub id: String,
    pub name: String,
    pub platform: String,
}

struct Hook {
    row: WebhookRow,
    signing_secret: String,
}

impl Hook {
    fn view(&self) -> WebhookView {
        WebhookView {
            id: self.row.id.clone(),
            name: self.row.name.clone(),
            platform: self.row.platform.clone(),
            events: self.row.events.clone(),
            target_url: self.row.target_url.clone(),
            enabled: self.row.enabled,
            token_hint: self.row.token_hint.clone(),
            created_at: rfc3339(self.row.created_at),
            updated_at: rfc3339(self.row.updated_at),
        }
    }

    fn wants(&self, event: &str) -> bool {
        self.row.enabled
            && self.row.target_url.is_some()
            && self.row.events.iter().any(|e| e == "*" || e == event)
    }
}

pub struct Webhooks {
    store: Store,
    bus: Addr<EventBus>,
    secrets: SecretBox,
    config: DeliveryConfig,
    hooks: HashMap<String, Hook>,
    directory: TokenDirectory,
    pending_at_start: Vec<DeliveryRow>,
    client: Option<awc::Client>,
    subscribed: bool,
}

fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// `sha256=<hex HMAC-SHA256 of body>`, as receivers verify it.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

impl Webhooks {
    /// `rows` and `pending` are read at start-up, before the server accepts requests.
    pub fn new(
        store: Store,
        bus: Addr<EventBus>,
        secrets: SecretBox,
        config: DeliveryConfig,
        rows: Vec<WebhookRow>,
        pending: Vec<DeliveryRow>,
    ) -> Self {
        let mut me = Self {
            store,
            bus,
            secrets,
            config,
            hooks: HashMap::new(),
            directory: TokenDirectory::default(),
            pending_at_start: pending,
            client: None,
            subscribed: false,
        };
        for row in rows {
            match me.secrets.open(SECRET_CONTEXT, &row.signing_secret_sealed) {
                Ok(signing_secret) => me.insert(Hook {
                    row,
                    signing_secret,
                }),
                Err(e) => {
                    tracing::error!(webhook = %row.id, error = %e, "webhook secret unreadable; webhook disabled")
                }
            }
        }
        me
    }

    fn insert(&mut self, hook: Hook) {
        self.hooks.insert(hook.row.id.clone(), hook);
        self.publish();
    }

    fn remove(&mut self, id: &str) -> Option<Hook> {
        let hook = self.hooks.remove(id)?;
        self.publish();
        Some(hook)
    }

    /// Replace the token snapshot the web layer reads.
    fn publish(&self) {
        let enabled = self
            .hooks
            .values()
            .filter(|h| h.row.enabled)
            .map(|h| {
                (
                    h.row.token_hash.clone(),
                    InboundWebhook {
                        id: h.row.id.clone(),
                        name: h.row.name.clone(),
                        platform: h.row.platform.clone(),
                    },
                )
            })
            .collect();
        self.directory.0.store(Arc::new(enabled));
    }

    /// The snapshot of enabled tokens (for the web layer).
    pub fn directory(&self) -> TokenDirectory {
        self.directory.clone()
    }

    fn validate(fields: &WebhookFields) -> Result<(), WebhookError> {
        let bad = |m: String| Err(WebhookError::Invalid(m));
        if let Some(name) = &fields.name {
            if name.trim().is_empty() || name.len() > 100 {
                return bad("name: 1 to 100 characters".into());
            }
        }
        if let Some(p) = &fields.platform {
            if !PLATFORMS.contains(&p.as_str()) {
                return bad(format!("platform: one of {}", PLATFORMS.join(", ")));
            }
        }
        if let Some(events) = &fields.events {
            if events.is_empty() {
                return bad("events: name at least one event, or \"*\" for all".into());
            }
            for e in events {
                if e != "*" && !GatewayEvent::NAMES.contains(&e.as_str()) {
                    return bad(format!(
                        "events: unknown event {e:?}; see GET /api/webhooks/events"
                    ));
                }
            }
        }
        if let Some(Some(url)) = &fields.target_url {
            let ok = url.len() <= 2048
                && (url.starts_with("http://") || url.starts_with("https://"))
                && url.parse::<awc::http::Uri>().is_ok();
            if !ok {
                return bad("targetUrl: an http:// or https:// URL".into());
            }
        }
        Ok(())
    }

    /// Persist `hook`, then make it live.
    fn save(&mut self, hook: Hook) -> ResponseActFuture<Self, Result<WebhookView, WebhookError>> {
        let store = self.store.clone();
        let row = hook.row.clone();
        Box::pin(
            async move { store.send(SaveWebhook(row)).await }
                .into_actor(self)
                .map(move |res, act, _| {
                    if let Err(e) = crate::store::answered(res) {
                        return Err(e.into());
                    }
                    // The token snapshot is rebuilt from the hooks: a rotated-out token stops
                    // working here.
                    let view = hook.view();
                    act.insert(hook);
                    Ok(view)
                }),
        )
    }

    fn backoff(&self, attempts: u32) -> Duration {
        self.config
            .retry_base
            .saturating_mul(1u32 << attempts.saturating_sub(1).min(16))
            .min(self.config.retry_max)
    }

    /// Make one attempt of a delivery; schedule the next one if it fails.
    fn attempt(&mut self, d: DeliveryRow, ctx: &mut Context<Self>) {
        let Some(hook) = self.hooks.get(&d.webhook_id) else {
            return; // deleted: its deliveries went with it
        };
        let Some(url) = hook.row.target_url.clone() else {
            return;
        };
        let client = self.client.get_or_insert_with(|| {
            awc::Client::builder()
                .disable_redirects()
                .add_default_header((
                    "user-agent",
                    concat!("loop-gateway/", env!("CARGO_PKG_VERSION")),
                ))
                .finish()
        });
        let request = client
            .post(url)
            .timeout(self.config.timeout)
            .insert_header(("content-type", "application/json"))
            .insert_header(("x-loop-event", d.event.clone()))
            .insert_header(("x-loop-delivery", d.id.clone()))
            .insert_header((
                "x-loop-signature",
                signature(&hook.signing_secret, d.body.as_bytes()),
            ))
            .send_body(d.body.clone());
        let started = Instant::now();
        async move {
            match request.await {
                Ok(res) => Ok(res.status().as_u16()),
                Err(e) => Err(e.to_string()),
            }
        }
        .into_actor(self)
        .map(move |outcome, act, ctx| {
            let attempts = d.attempts + 1;
            let (status_code, error) = match &outcome {
                Ok(code) if (200..300).contains(code) => (Some(i64::from(*code)), None),
                Ok(code) => (Some(i64::from(*code)), Some(format!("the receiver answered {code}"))),
                Err(e) => (None, Some(e.clone())),
            };
            let delivered = error.is_none();
            let give_up = !delivered && attempts >= i64::from(act.config.max_attempts);
            let wait = act.backoff(attempts as u32);
            let status = if delivered {
                "delivered"
            } else if give_up {
                "failed"
            } else {
                "pending"
            };
            if !delivered {
                tracing::warn!(delivery = %d.id, attempts, error = ?error, status, "webhook delivery failed");
            }
            act.store.do_send(RecordAttempt {
                delivery_id: d.id.clone(),
                webhook_id: d.webhook_id.clone(),
                event: d.event.clone(),
                status,
                attempts,
                next_attempt_at: now_ms() + wait.as_millis() as i64,
                status_code,
                error,
                duration_ms: started.elapsed().as_millis() as i64,
            });
            if status == "pending" {
                let next = DeliveryRow { attempts, ..d };
                ctx.run_later(wait, move |act, ctx| act.attempt(next, ctx));
            }
        })
        .spawn(ctx);
    }
}

impl Actor for Webhooks {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // started() runs again after a supervised restart; the subscription (same mailbox)
        // is still in place then.
        if !std::mem::replace(&mut self.subscribed, true) {
            self.bus.do_send(Subscribe(ctx.address().recipient()));
        }
        // Deliveries a stop left pending are tried again at once.
        for d in std::mem::take(&mut self.pending_at_start) {
            self.attempt(d, ctx);
        }
    }
}

impl actix::Supervised for Webhooks {}

impl Handler<BusEvent> for Webhooks {
    type Result = ();

    fn handle(&mut self, msg: BusEvent, ctx: &mut Context<Self>) {
        let name = msg.event.name();
        let targets: Vec<String> = self
            .hooks
            .values()
            .filter(|h| h.wants(name))
            .map(|h| h.row.id.clone())
            .collect();
        for webhook_id in targets {
            let d = DeliveryRow {
                id: crate::time_ordered_id(),
                webhook_id,
                event: name.to_string(),
                body: msg.json.to_string(),
                attempts: 0,
                next_attempt_at: now_ms(),
            };
            // Persist first, so a stop before the attempt leaves it pending, not lost.
            let store = self.store.clone();
            let row = d.clone();
            async move { store.send(InsertDelivery(row)).await }
                .into_actor(self)
                .map(move |res, act, ctx| match res {
                    Ok(Ok(())) => act.attempt(d, ctx),
                    other => tracing::error!(?other, "could not record a webhook delivery"),
                })
                .spawn(ctx);
        }
    }
}

impl Handler<CreateWebhook> for Webhooks {
    type Result = ResponseActFuture<Self, Result<WebhookSecrets, WebhookError>>;

    fn handle(&mut self, CreateWebhook(f): CreateWebhook, _: &mut Context<Self>) -> Self::Result {
        if let Err(e) = Self::validate(&f).and_then(|()| {
            if f.name.is_none() {
                Err(WebhookError::Invalid("name is required".into()))
            } else {
                Ok(())
            }
        }) {
            return Box::pin(fut::ready(Err(e)));
        }
        let token = random_hex(32);
        let signing_secret = random_hex(32);
        let now = now_ms();
        let hook = Hook {
            row: WebhookRow {
                id: uuid::Uuid::new_v4().to_string(),
                name: f.name.unwrap_or_default().trim().to_string(),
                platform: f.platform.unwrap_or_else(|| "generic".into()),
                token_hash: hash_token(&token),
                token_hint: token[token.len() - 4..].to_string(),
                events: f.events.unwrap_or_else(|| vec!["*".into()]),
                target_url: f.target_url.flatten(),
                signing_secret_sealed: self.secrets.seal(SECRET_CONTEXT, &signing_secret),
                enabled: f.enabled.unwrap_or(true),
                created_at: now,
                updated_at: now,
            },
            signing_secret: signing_secret.clone(),
        };
        Box::pin(self.save(hook).map(move |r, _, _| {
            r.map(|webhook| WebhookSecrets {
                webhook,
                token,
                signing_secret,
            })
        }))
    }
}

impl Handler<UpdateWebhook> for Webhooks {
    type Result = ResponseActFuture<Self, Result<WebhookView, WebhookError>>;

    fn handle(&mut self, msg: UpdateWebhook, _: &mut Context<Self>) -> Self::Result {
        if let Err(e) = Self::validate(&msg.fields) {
            return Box::pin(fut::ready(Err(e)));
        }
        let Some(hook) = self.hooks.get(&msg.id) else {
            return Box::pin(fut::ready(Err(WebhookError::NotFound(msg.id))));
        };
        let f = msg.fields;
        let mut row = hook.row.clone();
        if let Some(name) = f.name {
            row.name = name.trim().to_string();
        }
        if let Some(p) = f.platform {
            row.platform = p;
        }
        if let Some(e) = f.events {
            row.events = e;
        }
        if let Some(t) = f.target_url {
            row.target_url = t;
        }
        if let Some(en) = f.enabled {
            row.enabled = en;
        }
        row.updated_at = now_ms();
        let hook = Hook {
            row,
            signing_secret: hook.signing_secret.clone(),
        };
        self.save(hook)
    }
}

impl Handler<RotateWebhookSecrets> for Webhooks {
    type Result = ResponseActFuture<Self, Result<WebhookSecrets, WebhookError>>;

    fn handle(&mut self, msg: RotateWebhookSecrets, _: &mut Context<Self>) -> Self::Result {
        let Some(hook) = self.hooks.get(&msg.id) else {
            return Box::pin(fut::ready(Err(WebhookError::NotFound(msg.id))));
        };
        let token = random_hex(32);
        let signing_secret = random_hex(32);
        let mut row = hook.row.clone();
        row.token_hash = hash_token(&token);
        row.token_hint = token[token.len() - 4..].to_string();
        row.signing_secret_sealed = self.secrets.seal(SECRET_CONTEXT, &signing_secret);
        row.updated_at = now_ms();
        let hook = Hook {
            row,
            signing_secret: signing_secret.clone(),
        };
        Box::pin(self.save(hook).map(move |r, _, _| {
            r.map(|webhook| WebhookSecrets {
                webhook,
                token,
                signing_secret,
            })
        }))
    }
}

impl Handler<DeleteWebhook> for Webhooks {
    type Result = ResponseActFuture<Self, Result<(), WebhookError>>;

    fn handle(&mut self, msg: DeleteWebhook, _: &mut Context<Self>) -> Self::Result {
        if !self.hooks.contains_key(&msg.id) {
            return Box::pin(fut::ready(Err(WebhookError::NotFound(msg.id))));
        }
        let store = self.store.clone();
        let id = msg.id.clone();
        Box::pin(
            async move { store.send(DeleteRow { id }).await }
                .into_actor(self)
                .map(move |res, act, _| {
                    crate::store::answered(res)?;
                    act.remove(&msg.id);
                    Ok(())
                }),
        )
    }
}

impl Handler<ListWebhooks> for Webhooks {
    type Result = MessageResult<ListWebhooks>;

    fn handle(&mut self, _: ListWebhooks, _: &mut Context<Self>) -> Self::Result {
        let mut all: Vec<&Hook> = self.hooks.values().collect();
        all.sort_by_key(|h| (h.row.created_at, h.row.id.clone()));
        MessageResult(all.into_iter().map(Hook::view).collect())
    }
}

impl Handler<GetWebhook> for Webhooks {
    type Result = Option<WebhookView>;

    fn handle(&mut self, msg: GetWebhook, _: &mut Context<Self>) -> Self::Result {
        self.hooks.get(&msg.id).map(Hook::view)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_hmac_sha256_hex() {
        // RFC 4231 test case 2.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        let expected = hex::encode(mac.finalize().into_bytes());
        assert_eq!(
            expected,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            format!("sha256={expected}")
        );
    }
}
