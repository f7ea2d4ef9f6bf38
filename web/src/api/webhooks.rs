//! `/api/webhooks`: manage webhooks (the `Webhooks` actor owns them), their logs, and the
//! catalogue of events they can subscribe to.

use actix_web::{delete, get, post, put, web, HttpResponse};
use loop_gateway_actors::store::webhooks::ListWebhookLogs;
use loop_gateway_actors::webhooks::{
    CreateWebhook, DeleteWebhook, GetWebhook, ListWebhooks, RotateWebhookSecrets, UpdateWebhook,
    WebhookError, WebhookFields,
};
use loop_gateway_actors::GatewayEvent;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::PageQuery;
use crate::auth::Authed;
use crate::error::{reply, ApiError};
use crate::state::AppState;

impl From<WebhookError> for ApiError {
    fn from(e: WebhookError) -> Self {
        match e {
            WebhookError::Invalid(m) => ApiError::validation(m),
            WebhookError::NotFound(_) => ApiError::not_found(e.to_string()),
            WebhookError::Store(s) => s.into(),
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookBody {
    name: Option<String>,
    /// generic, n8n or make.
    platform: Option<String>,
    /// Event names to deliver, or `["*"]` for all (default).
    events: Option<Vec<String>>,
    /// Where events are delivered (POST, signed); `null` stops deliveries.
    #[serde(default, deserialize_with = "super::present")]
    #[schema(value_type = Option<String>)]
    target_url: Option<Option<String>>,
    enabled: Option<bool>,
}

impl From<WebhookBody> for WebhookFields {
    fn from(b: WebhookBody) -> Self {
        WebhookFields {
            name: b.name,
            platform: b.platform,
            events: b.events,
            target_url: b.target_url,
            enabled: b.enabled,
        }
    }
}

/// Every webhook (without tokens or secrets).
#[utoipa::path(tag = "webhooks", security(("session" = [])), responses((status = 200, description = "webhooks")))]
#[get("/webhooks")]
pub async fn list(_auth: Authed, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let items = state.webhooks.send(ListWebhooks).await?;
    let total = items.len();
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "items": items, "total": total, "limit": total, "offset": 0})))
}

/// Create a webhook. The answer holds its token and signing secret: they are shown only now.
#[utoipa::path(tag = "webhooks", security(("session" = [])), request_body = WebhookBody,
    responses((status = 201, description = "created, with token and signingSecret"), (status = 422, body = crate::error::ErrorBody)))]
#[post("/webhooks")]
pub async fn create(
    _auth: Authed,
    state: web::Data<AppState>,
    body: web::Json<WebhookBody>,
) -> Result<HttpResponse, ApiError> {
    let created = reply(
        state
            .webhooks
            .send(CreateWebhook(body.into_inner().into()))
            .await,
    )?;
    Ok(HttpResponse::Created().json(created))
}

#[derive(Serialize, ToSchema)]
pub struct EventInfo {
    name: &'static str,
    description: &'static str,
}

/// The events webhooks (and the WebSocket) carry.
#[utoipa::path(tag = "webhooks", security(("session" = [])), responses((status = 200, body = Vec<EventInfo>)))]
#[get("/webhooks/events")]
pub async fn events(_auth: Authed) -> web::Json<Vec<EventInfo>> {
    web::Json(
        GatewayEvent::NAMES
            .iter()
            .map(|&name| EventInfo {
                name,
                description: GatewayEvent::describe(name),
            })
            .collect(),
    )
}

/// One webhook.
#[utoipa::path(tag = "webhooks", security(("session" = [])), responses((status = 200), (status = 404, body = crate::error::ErrorBody)))]
#[get("/webhooks/{id}")]
pub async fn get(
    _auth: Authed,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    match state.webhooks.send(GetWebhook { id: id.clone() }).await? {
        Some(w) => Ok(HttpResponse::Ok().json(w)),
        None => Err(ApiError::not_found(format!("no webhook with id {id}"))),
    }
}

/// Change a webhook; absent fields keep their value.
#[utoipa::path(tag = "webhooks", security(("session" = [])), request_body = WebhookBody,
    responses((status = 200), (status = 404, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
#[put("/webhooks/{id}")]
pub async fn update(
    _auth: Authed,
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Json<WebhookBody>,
) -> Result<HttpResponse, ApiError> {
    let updated = reply(
        state
            .webhooks
            .send(UpdateWebhook {
                id: id.into_inner(),
                fields: body.into_inner().into(),
            })
            .await,
    )?;
    Ok(HttpResponse::Ok().json(updated))
}

/// Delete a webhook, its pending deliveries and its logs.
#[utoipa::path(tag = "webhooks", security(("session" = [])), responses((status = 204), (status = 404, body = crate::error::ErrorBody)))]
#[delete("/webhooks/{id}")]
pub async fn remove(
    _auth: Authed,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    reply(
        state
            .webhooks
            .send(DeleteWebhook {
                id: id.into_inner(),
            })
            .await,
    )?;
    Ok(HttpResponse::NoContent().finish())
}

/// New token and signing secret (shown once); the old ones stop working at once.
#[utoipa::path(tag = "webhooks", security(("session" = [])), responses((status = 200), (status = 404, body = crate::error::ErrorBody)))]
#[post("/webhooks/{id}/rotate")]
pub async fn rotate(
    _auth: Authed,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let rotated = reply(
        state
            .webhooks
            .send(RotateWebhookSecrets {
                id: id.into_inner(),
            })
            .await,
    )?;
    Ok(HttpResponse::Ok().json(rotated))
}

/// Outbound delivery attempts and inbound calls of one webhook, newest first.
#[utoipa::path(tag = "webhooks", security(("session" = [])), params(PageQuery),
    responses((status = 200), (status = 404, body = crate::error::ErrorBody)))]
#[get("/webhooks/{id}/logs")]
pub async fn logs(
    _auth: Authed,
    state: web::Data<AppState>,
    id: web::Path<String>,
    page: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    if state
        .webhooks
        .send(GetWebhook { id: id.clone() })
        .await?
        .is_none()
    {
        return Err(ApiError::not_found(format!("no webhook with id {id}")));
    }
    let logs = reply(
        state
            .store
            .send(ListWebhookLogs {
                webhook_id: id,
                page: page.page()?,
            })
            .await,
    )?;
    Ok(HttpResponse::Ok().json(logs))
}
