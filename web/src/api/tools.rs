//! `/api/tools`: every registered tool with its JSON schema and risk level.

use actix_web::{get, web, HttpResponse};
use loop_gateway_actors::skills::ListTools;

use crate::auth::Authed;
use crate::error::ApiError;
use crate::state::AppState;

/// The tools agents may call.
#[utoipa::path(tag = "tools", security(("session" = [])), responses((status = 200)))]
#[get("/tools")]
pub async fn list(_auth: Authed, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let tools = state.skills.send(ListTools).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({"items": tools})))
}
