//! `/webhook/*`: what automation platforms call, authenticated by the webhook's token in the
//! path. A bad token is refused before anything else happens (no run, no model call).

use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::{get, post, web, HttpResponse};
use loop_gateway_actors::agents::{RunRequest, StartRunError};
use loop_gateway_actors::store::webhooks::LogInbound;
use loop_gateway_actors::webhooks::InboundWebhook;
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::state::AppState;

const MAX_MESSAGE_CHARS: usize = 100_000;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InvokeBody {
    /// What to say to the agent.
    message: String,
    /// Wait for the answer (200) instead of getting the run id at once (202). Default false.
    #[serde(default)]
    sync: bool,
    /// Continue this conversation (letters, digits, `-_.:`; at most 128).
    conversation_id: Option<String>,
    /// Any JSON object; carried into the run and its events.
    #[schema(value_type = Option<Object>)]
    metadata: Option<serde_json::Value>,
    /// Model calls allowed in this run (1 to 50).
    max_iterations: Option<u32>,
    /// Run as this agent group (its prompt, model, key, tools and budget).
    group_id: Option<String>,
}

fn authenticate(state: &AppState, token: &str) -> Result<InboundWebhook, ApiError> {
    let refused = || ApiError::unauthorized("unknown or disabled webhook token");
    if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(refused());
    }
    // Checked against the snapshot the Webhooks actor publishes: no hop off this thread.
    state.webhook_tokens.authenticate(token).ok_or_else(refused)
}

fn log(
    state: &AppState,
    hook: &InboundWebhook,
    status: StatusCode,
    detail: String,
    started: Instant,
) {
    state.store.do_send(LogInbound {
        webhook_id: hook.id.clone(),
        status_code: i64::from(status.as_u16()),
        detail,
        duration_ms: started.elapsed().as_millis() as i64,
    });
}

fn validate(body: &InvokeBody) -> Result<(), ApiError> {
    if body.message.trim().is_empty() || body.message.chars().count() > MAX_MESSAGE_CHARS {
        return Err(ApiError::validation(format!(
            "message: 1 to {MAX_MESSAGE_CHARS} characters"
        )));
    }
    if let Some(c) = &body.conversation_id {
        let ok = (1..=128).contains(&c.len())
            && c.chars()
                .all(|ch| ch.is_ascii_alphanumeric() || "-_.:".contains(ch));
        if !ok {
            return Err(ApiError::validation(
                "conversationId: 1 to 128 letters, digits or -_.:",
            ));
        }
    }
    if let Some(m) = &body.metadata {
        if !m.is_object() || m.to_string().len() > 16 * 1024 {
            return Err(ApiError::validation(
                "metadata: a JSON object of at most 16 KiB",
            ));
        }
    }
    if let Some(n) = body.max_iterations {
        if !(1..=50).contains(&n) {
            return Err(ApiError::validation("maxIterations: 1 to 50"));
        }
    }
    Ok(())
}

/// Send a message to the agent. `sync: true` answers 200 with the reply; otherwise 202 with
/// the run id, and the result arrives as `agent:run:*` events.
#[utoipa::path(tag = "webhook platform", request_body = InvokeBody, params(("token" = String, Path)),
    responses((status = 200, description = "the agent's reply (sync)"), (status = 202, description = "run started (async)"),
        (status = 401, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody),
        (status = 502, description = "the model API refused the request", body = crate::error::ErrorBody),
        (status = 503, description = "at capacity, or the model API is overloaded", body = crate::error::ErrorBody),
        (status = 504, description = "no answer within the sync timeout", body = crate::error::ErrorBody)))]
#[post("/invoke/{token}")]
pub async fn invoke(
    state: web::Data<AppState>,
    token: web::Path<String>,
    body: web::Json<InvokeBody>,
) -> Result<HttpResponse, ApiError> {
    let started = Instant::now();
    let hook = authenticate(&state, &token)?;
    let body = body.into_inner();
    if let Err(e) = validate(&body) {
        log(&state, &hook, e.status, e.message.clone(), started);
        return Err(e);
    }
    let group = match &body.group_id {
        Some(id) => match state
            .groups
            .send(loop_gateway_actors::groups::ResolveGroup { id: id.clone() })
            .await?
        {
            Some(settings) => Some(settings),
            None => {
                let e = ApiError::validation(format!("groupId: no agent group with id {id}"));
                log(&state, &hook, e.status, e.message.clone(), started);
                return Err(e);
            }
        },
        None => None,
    };
    let mut metadata = body.metadata.unwrap_or_else(|| json!({}));
    metadata["webhookId"] = json!(hook.id);
    // Started on this worker's thread when there is room: no hop to another thread.
    let ticket = state
        .launcher
        .start(
            RunRequest {
                owner: Some(format!("webhook:{}", hook.id)),
                source: "webhook".into(),
                input: body.message,
                conversation_id: body.conversation_id,
                metadata: Some(metadata),
                max_iterations: body.max_iterations,
                group,
                channel_message: None,
            },
            body.sync,
        )
        .await;
    let ticket = match ticket {
        Ok(t) => t,
        Err(StartRunError::Busy { retry_after_secs }) => {
            let mut e = ApiError::unavailable(
                "the gateway is at its limit of concurrent runs; retry later",
            );
            e.retry_after = Some(retry_after_secs);
            log(&state, &hook, e.status, e.message.clone(), started);
            return Err(e);
        }
    };
    let Some(done) = ticket.done else {
        log(
            &state,
            &hook,
            StatusCode::ACCEPTED,
            format!("run {}", ticket.run_id),
            started,
        );
        return Ok(HttpResponse::Accepted().json(json!({
            "runId": ticket.run_id,
            "conversationId": ticket.conversation_id,
            "status": if ticket.queued { "queued" } else { "running" },
        })));
    };
    let timeout = Duration::from_secs(state.config.sync_timeout_seconds);
    let result = match tokio::time::timeout(timeout, done).await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => {
            let mut e = ApiError::internal("the run ended without reporting its result");
            e.run_id = Some(ticket.run_id);
            return Err(e);
        }
        Err(_) => {
            let mut e = ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "run_timeout",
                format!(
                    "no answer within {} s; the run goes on: follow it at /api/runs/{}",
                    timeout.as_secs(),
                    ticket.run_id
                ),
            );
            e.run_id = Some(ticket.run_id);
            log(&state, &hook, e.status, e.message.clone(), started);
            return Err(e);
        }
    };
    if let Some(failure) = result.error {
        let mut e = if failure.code == "budget_exceeded" {
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, failure.code, failure.message)
        } else if failure.code == "conversation_not_found" {
            ApiError::new(StatusCode::NOT_FOUND, failure.code, failure.message)
        } else if failure.unavailable {
            let mut e = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                failure.code,
                failure.message,
            );
            e.retry_after = Some(30);
            e
        } else {
            ApiError::new(StatusCode::BAD_GATEWAY, failure.code, failure.message)
        };
        e.run_id = Some(result.run_id);
        log(&state, &hook, e.status, e.message.clone(), started);
        return Err(e);
    }
    log(
        &state,
        &hook,
        StatusCode::OK,
        format!("run {}", result.run_id),
        started,
    );
    Ok(HttpResponse::Ok().json(json!({
        "runId": result.run_id,
        "conversationId": result.conversation_id,
        "status": result.status,
        "reply": result.output,
        "stopReason": result.stop_reason,
        "usage": {
            "inputTokens": result.usage.input_tokens,
            "outputTokens": result.usage.output_tokens,
            "cacheCreationTokens": result.usage.cache_creation_input_tokens,
            "cacheReadTokens": result.usage.cache_read_input_tokens,
            "costMicros": result.cost_micros,
            "llmCalls": result.llm_calls,
        },
    })))
}

/// Create a loop task and start it (`{"name", "prompt", "maxIterations"?, "groupId"?,
/// "completionSignal"?}`); its progress arrives as `task:*` events.
#[utoipa::path(tag = "webhook platform", params(("token" = String, Path)), request_body = crate::api::tasks::TaskBody,
    responses((status = 201), (status = 401, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
#[post("/task/{token}")]
pub async fn task(
    state: web::Data<AppState>,
    token: web::Path<String>,
    body: web::Json<crate::api::tasks::TaskBody>,
) -> Result<HttpResponse, ApiError> {
    let started = Instant::now();
    let hook = authenticate(&state, &token)?;
    let result = crate::api::tasks::create_task(&state, body.into_inner()).await;
    match &result {
        Ok(r) => log(&state, &hook, r.status(), "task created".into(), started),
        Err(e) => log(&state, &hook, e.status, e.message.clone(), started),
    }
    result
}

/// Check a webhook token.
#[utoipa::path(tag = "webhook platform", params(("token" = String, Path)),
    responses((status = 200), (status = 401, body = crate::error::ErrorBody)))]
#[get("/health/{token}")]
pub async fn health(
    state: web::Data<AppState>,
    token: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let hook = authenticate(&state, &token)?;
    Ok(HttpResponse::Ok().json(json!({
        "ok": true,
        "webhook": {"id": hook.id, "name": hook.name, "platform": hook.platform},
    })))
}
