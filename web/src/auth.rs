//! Session tokens, the `Authed` extractor that guards `/api/*`, and WebSocket tickets.
//!
//! A token is 256 random bits shown to the client once; the database keeps only its SHA-256.
//! A browser cannot put a header on a WebSocket, so `/ws` takes a short-lived ticket instead:
//! an HMAC-signed `(session id, expiry)` that is useless once it expires or the session ends.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest};
use hmac_sha256::sign as hmac_sign;
use loop_gateway_actors::store::sessions::{LookupSession, LookupSessionById, SessionInfo};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::error::{reply, ApiError};
use crate::state::AppState;

/// A new session token: 32 random bytes, hex.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// What the database stores in place of a token.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The session cookie the dashboard uses (HttpOnly, SameSite=Strict): scripts cannot read it.
pub const SESSION_COOKIE: &str = "lg_session";
/// Requests that change something with the cookie (not a bearer token) must carry this header
/// (`X-Requested-With: loop-gateway`): another site's form cannot set it, and without CORS no
/// other origin's script may, so a forged cross-site request is refused.
pub const CSRF_HEADER: &str = "x-requested-with";

/// The caller's session, proven by `Authorization: Bearer <token>` or the session cookie.
#[derive(Debug, Clone)]
pub struct Authed {
    pub session: SessionInfo,
    pub token_hash: String,
}

/// The `Set-Cookie` that holds a session token (or, with `None`, ends it).
pub fn session_cookie(
    token: Option<&str>,
    max_age_secs: i64,
) -> actix_web::cookie::Cookie<'static> {
    let mut c = actix_web::cookie::Cookie::build(SESSION_COOKIE, token.unwrap_or("").to_string())
        .path("/")
        .http_only(true)
        .same_site(actix_web::cookie::SameSite::Strict)
        .finish();
    c.set_max_age(actix_web::cookie::time::Duration::seconds(
        if token.is_some() { max_age_secs } else { 0 },
    ));
    c
}

impl FromRequest for Authed {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let token = match bearer_token(req) {
            Some(t) => Ok(Some(t)),
            None => match req.cookie(SESSION_COOKIE).map(|c| c.value().to_string()) {
                Some(t) if !t.is_empty() => {
                    let safe = matches!(
                        *req.method(),
                        actix_web::http::Method::GET | actix_web::http::Method::HEAD
                    );
                    let marked = req
                        .headers()
                        .get(CSRF_HEADER)
                        .and_then(|v| v.to_str().ok())
                        .is_some_and(|v| v.eq_ignore_ascii_case("loop-gateway"));
                    if safe || marked {
                        Ok(Some(t))
                    } else {
                        Err(ApiError::new(
                            actix_web::http::StatusCode::FORBIDDEN,
                            "csrf_header_required",
                            "requests authenticated by the session cookie must send X-Requested-With: loop-gateway",
                        ))
                    }
                }
                _ => Ok(None),
            },
        };
        Box::pin(async move {
            let state = state.ok_or_else(|| ApiError::internal("application state missing"))?;
            let token = token?.ok_or_else(|| {
                ApiError::unauthorized("send Authorization: Bearer <session token> (log in first)")
            })?;
            let token_hash = hash_token(&token);
            let session = reply(
                state
                    .store
                    .send(LookupSession {
                        token_hash: token_hash.clone(),
                    })
                    .await,
            )?
            .ok_or_else(|| {
                ApiError::unauthorized("the session is unknown or has expired; log in again")
            })?;
            Ok(Authed {
                session,
                token_hash,
            })
        })
    }
}

fn bearer_token(req: &HttpRequest) -> Option<String> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_string())
}

/// How long a WebSocket ticket is good for.
pub const TICKET_TTL_MS: i64 = 30_000;

/// A ticket for `/ws`: `<session id>.<expiry ms>.<hmac>`.
pub fn issue_ticket(key: &[u8; 32], session_id: i64, now_ms: i64) -> String {
    let body = format!("{session_id}.{}", now_ms + TICKET_TTL_MS);
    format!("{body}.{}", hex::encode(hmac_sign(key, body.as_bytes())))
}

/// The session a ticket names, when its signature is good and it has not expired.
pub fn verify_ticket(key: &[u8; 32], ticket: &str, now_ms: i64) -> Option<i64> {
    let (body, sig) = ticket.rsplit_once('.')?;
    let sig = hex::decode(sig).ok()?;
    let expected = hmac_sign(key, body.as_bytes());
    // Constant-time comparison: the signature must not leak through timing.
    if sig.len() != expected.len()
        || sig
            .iter()
            .zip(expected.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            != 0
    {
        return None;
    }
    let (session, expiry) = body.split_once('.')?;
    let expiry: i64 = expiry.parse().ok()?;
    (expiry > now_ms).then_some(())?;
    session.parse().ok()
}

/// The live session behind a ticket.
pub async fn session_for_ticket(state: &AppState, ticket: &str) -> Result<SessionInfo, ApiError> {
    let bad = || {
        ApiError::unauthorized("the WebSocket ticket is missing, invalid or expired; get a new one from POST /api/auth/ws-ticket")
    };
    let session_id = verify_ticket(
        &state.ticket_key,
        ticket,
        loop_gateway_actors::time::now_ms(),
    )
    .ok_or_else(bad)?;
    reply(state.store.send(LookupSessionById { session_id }).await)?.ok_or_else(bad)
}

mod hmac_sha256 {
    use hmac::{Hmac, Mac};
    pub fn sign(key: &[u8; 32], msg: &[u8]) -> [u8; 32] {
        let mut mac =
            <Hmac<sha2::Sha256> as Mac>::new_from_slice(key).expect("HMAC accepts any key length");
        mac.update(msg);
        mac.finalize().into_bytes().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_hashes_stable() {
        let a = new_token();
        assert_eq!(a.len(), 64);
        assert_ne!(a, new_token());
        assert_eq!(hash_token(&a), hash_token(&a));
        assert_ne!(hash_token(&a), a);
    }

    #[test]
    fn tickets_verify_until_expiry_and_resist_tampering() {
        let key = [3u8; 32];
        let t = issue_ticket(&key, 42, 1_000);
        assert_eq!(verify_ticket(&key, &t, 1_000), Some(42));
        assert_eq!(verify_ticket(&key, &t, 1_000 + TICKET_TTL_MS), None);
        assert_eq!(verify_ticket(&[4u8; 32], &t, 1_000), None);
        let forged = t.replacen("42.", "43.", 1);
        assert_eq!(verify_ticket(&key, &forged, 1_000), None);
        assert_eq!(verify_ticket(&key, "garbage", 1_000), None);
    }
}
