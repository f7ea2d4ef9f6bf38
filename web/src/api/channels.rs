//! `/api/channels`: the chat channels (owned by the `ChannelManager` actor), and the open
//! `/webhook/whatsapp/:channelId` routes Meta's Cloud API calls.

use actix_web::{delete, get, post, put, web, HttpRequest, HttpResponse};
use loop_gateway_actors::channels::{
    ChannelError, ChannelFields, CreateChannel, GetChannel, GetChannelMessages, ListChannels,
    RemoveChannel, TelegramWebhookUpdate, UpdateChannel, VerifyWhatsApp, WebhookRefusal,
    WhatsAppNotification,
};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Authed;
use crate::error::{reply, ApiError};
use crate::state::AppState;

impl From<ChannelError> for ApiError {
    fn from(e: ChannelError) -> Self {
        match e {
            ChannelError::Invalid(c) => ApiError::validation(c.message),
            ChannelError::NotFound(_) => ApiError::not_found(e.to_string()),
            ChannelError::Store(s) => s.into(),
        }
    }
}

impl From<WebhookRefusal> for ApiError {
    fn from(e: WebhookRefusal) -> Self {
        match e {
            WebhookRefusal::NotFound => ApiError::not_found("no such channel"),
            WebhookRefusal::Forbidden(m) => ApiError::forbidden(m),
            WebhookRefusal::Unauthorized(m) => ApiError::unauthorized(m),
            WebhookRefusal::BadRequest(m) => ApiError::bad_request(m),
            WebhookRefusal::Unavailable(m) => ApiError::unavailable(m),
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChannelBody {
    /// telegram, email or whatsapp (cannot change after creation).
    #[serde(rename = "type")]
    kind: Option<String>,
    name: Option<String>,
    /// Per type (see API.md). Credentials are write-only; on update a key replaces its
    /// value, `null` removes it, and absent keys stay as they are.
    #[schema(value_type = Option<Object>)]
    config: Option<Map<String, Value>>,
    /// Who may talk to the agent (empty: everyone).
    allowed_senders: Option<Vec<String>>,
    enabled: Option<bool>,
}

impl From<ChannelBody> for ChannelFields {
    fn from(b: ChannelBody) -> Self {
        ChannelFields {
            kind: b.kind,
            name: b.name,
            config: b.config,
            allowed_senders: b.allowed_senders,
            enabled: b.enabled,
        }
    }
}

/// Every channel with its live status.
#[utoipa::path(tag = "channels", security(("session" = [])), responses((status = 200)))]
#[get("/channels")]
pub async fn list(_auth: Authed, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let items = state.channels.send(ListChannels).await?;
    let total = items.len();
    Ok(HttpResponse::Ok()
        .json(json!({"items": items, "total": total, "limit": total, "offset": 0})))
}

/// Create a channel; its actor starts at once (when enabled).
#[utoipa::path(tag = "channels", security(("session" = [])), request_body = ChannelBody,
    responses((status = 201), (status = 409, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
#[post("/channels")]
pub async fn create(
    _auth: Authed,
    state: web::Data<AppState>,
    body: web::Json<ChannelBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    if body.kind.is_none() {
        return Err(ApiError::validation(
            "type is required: telegram, email or whatsapp",
        ));
    }
    let channel = reply(state.channels.send(CreateChannel(body.into())).await)?;
    Ok(HttpResponse::Created().json(channel))
}

/// One channel with its live status.
#[utoipa::path(tag = "channels", security(("session" = [])), responses((status = 200), (status = 404, body = crate::error::ErrorBody)))]
#[get("/channels/{id}")]
pub async fn get(
    _auth: Authed,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    match state.channels.send(GetChannel { id: id.clone() }).await? {
        Some(c) => Ok(HttpResponse::Ok().json(c)),
        None => Err(ApiError::not_found(format!("no channel with id {id}"))),
    }
}

/// Change a channel; its actor restarts with the new configuration.
#[utoipa::path(tag = "channels", security(("session" = [])), request_body = ChannelBody,
    responses((status = 200), (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
#[put("/channels/{id}")]
pub async fn update(
    _auth: Authed,
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Json<ChannelBody>,
) -> Result<HttpResponse, ApiError> {
    let channel = reply(
        state
            .channels
            .send(UpdateChannel {
                id: id.into_inner(),
                fields: body.into_inner().into(),
            })
            .await,
    )?;
    Ok(HttpResponse::Ok().json(channel))
}

/// Delete a channel: its actor stops; its messages stay in the history.
#[utoipa::path(tag = "channels", security(("session" = [])), responses((status = 204), (status = 404, body = crate::error::ErrorBody)))]
#[delete("/channels/{id}")]
pub async fn remove(
    _auth: Authed,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    reply(
        state
            .channels
            .send(RemoveChannel {
                id: id.into_inner(),
            })
            .await,
    )?;
    Ok(HttpResponse::NoContent().finish())
}

/// The pairing QR code of a WhatsApp linked-device channel, as SVG (404 when not pairing).
#[utoipa::path(tag = "channels", security(("session" = [])),
    responses((status = 200, content_type = "image/svg+xml", body = String), (status = 404, body = crate::error::ErrorBody)))]
#[get("/channels/{id}/qr.svg")]
pub async fn qr(
    _auth: Authed,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let channel = state
        .channels
        .send(GetChannel { id: id.clone() })
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no channel with id {id}")))?;
    let payload = channel
        .qr
        .ok_or_else(|| ApiError::not_found("this channel is not waiting for a QR scan"))?;
    let code = qrcode::QrCode::new(payload.as_bytes())
        .map_err(|e| ApiError::internal(format!("cannot draw the QR code: {e}")))?;
    let svg = code
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(256, 256)
        .build();
    Ok(HttpResponse::Ok()
        .content_type("image/svg+xml")
        .insert_header(("cache-control", "no-store"))
        .body(svg))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct MessagesQuery {
    /// At most this many (1 to 200, default 50).
    limit: Option<i64>,
    /// Only messages with a smaller id (the next page).
    before: Option<i64>,
}

/// A channel's received messages, newest first, with counts by status.
#[utoipa::path(tag = "channels", security(("session" = [])), params(MessagesQuery),
    responses((status = 200), (status = 404, body = crate::error::ErrorBody)))]
#[get("/channels/{id}/messages")]
pub async fn messages(
    _auth: Authed,
    state: web::Data<AppState>,
    id: web::Path<String>,
    q: web::Query<MessagesQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::validation("limit must be between 1 and 200"));
    }
    let page = reply(
        state
            .channels
            .send(GetChannelMessages {
                id: id.into_inner(),
                limit,
                before: q.before,
            })
            .await,
    )?;
    Ok(HttpResponse::Ok().json(page))
}

#[derive(Deserialize, IntoParams)]
pub struct VerifyQuery {
    #[serde(rename = "hub.mode")]
    mode: Option<String>,
    #[serde(rename = "hub.verify_token")]
    verify_token: Option<String>,
    #[serde(rename = "hub.challenge")]
    challenge: Option<String>,
}

/// Meta's webhook verification: echoes `hub.challenge` when `hub.verify_token` matches.
#[utoipa::path(tag = "channels", params(VerifyQuery),
    responses((status = 200, body = String), (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
#[get("/whatsapp/{channel_id}")]
pub async fn whatsapp_verify(
    state: web::Data<AppState>,
    channel_id: web::Path<String>,
    q: web::Query<VerifyQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = q.into_inner();
    let challenge = reply(
        state
            .channels
            .send(VerifyWhatsApp {
                channel_id: channel_id.into_inner(),
                mode: q.mode,
                verify_token: q.verify_token,
                challenge: q.challenge,
            })
            .await,
    )?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body(challenge))
}

/// Cloud API notifications, checked against `X-Hub-Signature-256`; 200 once stored.
#[utoipa::path(tag = "channels", request_body(content = Object),
    responses((status = 200), (status = 401, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
#[post("/whatsapp/{channel_id}")]
pub async fn whatsapp_notify(
    state: web::Data<AppState>,
    channel_id: web::Path<String>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let signature = req
        .headers()
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    reply(
        state
            .channels
            .send(WhatsAppNotification {
                channel_id: channel_id.into_inner(),
                signature,
                body: body.to_vec(),
            })
            .await,
    )?;
    Ok(HttpResponse::Ok().json(json!({"ok": true})))
}

/// Telegram updates in webhook mode, checked against `X-Telegram-Bot-Api-Secret-Token`;
/// 200 once stored (Telegram redelivers anything else).
#[utoipa::path(tag = "channels", request_body(content = Object),
    responses((status = 200), (status = 401, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
#[post("/telegram/{channel_id}")]
pub async fn telegram_update(
    state: web::Data<AppState>,
    channel_id: web::Path<String>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let secret_token = req
        .headers()
        .get("x-telegram-bot-api-secret-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    reply(
        state
            .channels
            .send(TelegramWebhookUpdate {
                channel_id: channel_id.into_inner(),
                secret_token,
                body: body.to_vec(),
            })
            .await,
    )?;
    Ok(HttpResponse::Ok().json(json!({"ok": true})))
}
