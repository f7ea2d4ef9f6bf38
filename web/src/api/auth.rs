//! `/api/auth`: first-visit setup, login, logout, and tickets for the WebSocket.

use actix_web::{get, post, web, HttpRequest, HttpResponse};
use loop_gateway_actors::store::sessions::{CreateSession, DeleteSession};
use loop_gateway_actors::store::users::{CountUsers, CreateFirstUser, FindUser};
use loop_gateway_actors::{GatewayEvent, Publish};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{hash_token, issue_ticket, new_token, session_cookie, Authed, TICKET_TTL_MS};

fn ttl_secs(state: &AppState) -> i64 {
    i64::from(state.config.session_ttl_hours) * 3600
}
use crate::error::{reply, ApiError};
use crate::ratelimit::client_ip;
use crate::state::AppState;

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthStatus {
    /// True until the admin account has been created.
    setup_required: bool,
    /// True when setup also needs the one-time code printed in the gateway's log.
    setup_code_required: bool,
    /// Whether the request carries a live session (cookie or bearer token).
    authenticated: bool,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetupBody {
    username: String,
    password: String,
    /// Needed when the gateway listens on a non-loopback address (see the start-up log).
    setup_code: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoginBody {
    username: String,
    password: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionToken {
    /// Send as `Authorization: Bearer <token>`. Shown once; the gateway keeps only a hash.
    token: String,
    expires_at: String,
    username: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Me {
    username: String,
    expires_at: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WsTicket {
    /// Connect to `/ws?ticket=<ticket>` within 30 seconds.
    ticket: String,
    expires_at: String,
}

async fn setup_required(state: &AppState) -> Result<bool, ApiError> {
    Ok(reply(state.store.send(CountUsers).await)? == 0)
}

/// Whether first-visit setup is still open.
#[utoipa::path(tag = "auth", responses((status = 200, body = AuthStatus)))]
#[get("/auth/status")]
pub async fn status(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<web::Json<AuthStatus>, ApiError> {
    let setup_required = setup_required(&state).await?;
    // Lets the dashboard learn whether its cookie still holds without a failing request.
    let authenticated = {
        use actix_web::FromRequest;
        Authed::extract(&req).await.is_ok()
    };
    Ok(web::Json(AuthStatus {
        setup_required,
        setup_code_required: setup_required && state.config.setup_code.is_some(),
        authenticated,
    }))
}

fn validate_credentials(username: &str, password: &str) -> Result<(), ApiError> {
    let name_ok = (1..=64).contains(&username.len())
        && username
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c));
    if !name_ok {
        return Err(ApiError::validation(
            "username: 1 to 64 characters, letters, digits and . _ - @",
        ));
    }
    // bcrypt reads at most 72 bytes; longer passwords would be silently truncated.
    if password.chars().count() < 8 || password.len() > 72 {
        return Err(ApiError::validation(
            "password: at least 8 characters and at most 72 bytes",
        ));
    }
    Ok(())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn start_session(
    state: &AppState,
    user_id: i64,
    username: String,
) -> Result<SessionToken, ApiError> {
    let token = new_token();
    let expires_at = reply(
        state
            .store
            .send(CreateSession {
                user_id,
                token_hash: hash_token(&token),
                ttl_ms: i64::from(state.config.session_ttl_hours) * 3_600_000,
            })
            .await,
    )?;
    state.bus.do_send(Publish(GatewayEvent::Login {
        username: username.clone(),
    }));
    Ok(SessionToken {
        token,
        expires_at: loop_gateway_actors::time::rfc3339(expires_at),
        username,
    })
}

/// Create the admin account (only while none exists) and log it in.
#[utoipa::path(tag = "auth", request_body = SetupBody, responses(
    (status = 201, body = SessionToken),
    (status = 403, description = "setup code missing or wrong", body = crate::error::ErrorBody),
    (status = 409, description = "setup already done", body = crate::error::ErrorBody),
    (status = 422, body = crate::error::ErrorBody)))]
#[post("/auth/setup")]
pub async fn setup(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Json<SetupBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    if !setup_required(&state).await? {
        return Err(ApiError::conflict(
            "setup has already been completed; log in instead",
        ));
    }
    state
        .limits
        .check_login(client_ip(&req, &state.config.trusted_proxies), "(setup)")?;
    if let Some(code) = &state.config.setup_code {
        let given = body.setup_code.as_deref().unwrap_or_default();
        if !constant_time_eq(given.trim().as_bytes(), code.as_bytes()) {
            return Err(ApiError::forbidden(
                "setupCode is missing or wrong; it is printed in the gateway's log at start",
            ));
        }
    }
    validate_credentials(&body.username, &body.password)?;
    let cost = state.config.bcrypt_cost;
    let password = body.password;
    let password_hash = web::block(move || bcrypt::hash(password, cost))
        .await
        .map_err(|_| ApiError::internal("password hashing was interrupted"))?
        .map_err(|e| ApiError::internal(format!("password hashing failed: {e}")))?;
    let user_id = reply(
        state
            .store
            .send(CreateFirstUser {
                username: body.username.clone(),
                password_hash,
            })
            .await,
    )?;
    tracing::info!(username = %body.username, "admin account created");
    let session = start_session(&state, user_id, body.username).await?;
    let cookie = session_cookie(Some(&session.token), ttl_secs(&state));
    Ok(HttpResponse::Created().cookie(cookie).json(session))
}

/// A bcrypt hash (at the configured cost) of a random value, verified against when the user
/// does not exist so that a wrong username takes as long as a wrong password. Made on first
/// need rather than at start, so start-up stays fast.
fn dummy_hash(cost: u32) -> String {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY
        .get_or_init(|| bcrypt::hash(new_token(), cost).unwrap_or_default())
        .clone()
}

/// Exchange a username and password for a session token.
#[utoipa::path(tag = "auth", request_body = LoginBody, responses(
    (status = 200, body = SessionToken),
    (status = 401, body = crate::error::ErrorBody),
    (status = 429, body = crate::error::ErrorBody)))]
#[post("/auth/login")]
pub async fn login(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Json<LoginBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    state.limits.check_login(
        client_ip(&req, &state.config.trusted_proxies),
        &body.username,
    )?;
    let user = reply(
        state
            .store
            .send(FindUser {
                username: body.username.clone(),
            })
            .await,
    )?;
    let hash = user.as_ref().map(|u| u.password_hash.clone());
    let password = body.password;
    let cost = state.config.bcrypt_cost;
    let verified = web::block(move || {
        let hash = hash.unwrap_or_else(|| dummy_hash(cost));
        bcrypt::verify(password, &hash).unwrap_or(false)
    })
    .await
    .map_err(|_| ApiError::internal("password check was interrupted"))?;
    match user {
        Some(user) if verified => {
            let session = start_session(&state, user.id, user.username).await?;
            let cookie = session_cookie(Some(&session.token), ttl_secs(&state));
            Ok(HttpResponse::Ok().cookie(cookie).json(session))
        }
        _ => {
            tracing::warn!(username = %body.username, "failed login");
            Err(ApiError::unauthorized("invalid username or password"))
        }
    }
}

/// End the presented session.
#[utoipa::path(tag = "auth", security(("session" = [])), responses((status = 204), (status = 401, body = crate::error::ErrorBody)))]
#[post("/auth/logout")]
pub async fn logout(auth: Authed, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    reply(
        state
            .store
            .send(DeleteSession {
                token_hash: auth.token_hash,
            })
            .await,
    )?;
    state.bus.do_send(Publish(GatewayEvent::Logout {
        username: auth.session.username,
    }));
    Ok(HttpResponse::NoContent()
        .cookie(session_cookie(None, 0))
        .finish())
}

/// Who the presented session belongs to.
#[utoipa::path(tag = "auth", security(("session" = [])), responses((status = 200, body = Me), (status = 401, body = crate::error::ErrorBody)))]
#[get("/auth/me")]
pub async fn me(auth: Authed) -> web::Json<Me> {
    web::Json(Me {
        username: auth.session.username,
        expires_at: loop_gateway_actors::time::rfc3339(auth.session.expires_at),
    })
}

/// A short-lived ticket for opening the WebSocket (`/ws?ticket=...`): browsers cannot send
/// headers on a WebSocket, and a long-lived token does not belong in a URL.
#[utoipa::path(tag = "auth", security(("session" = [])), responses((status = 200, body = WsTicket), (status = 401, body = crate::error::ErrorBody)))]
#[post("/auth/ws-ticket")]
pub async fn ws_ticket(auth: Authed, state: web::Data<AppState>) -> web::Json<WsTicket> {
    let now = loop_gateway_actors::time::now_ms();
    web::Json(WsTicket {
        ticket: issue_ticket(&state.ticket_key, auth.session.session_id, now),
        expires_at: loop_gateway_actors::time::rfc3339(now + TICKET_TTL_MS),
    })
}
