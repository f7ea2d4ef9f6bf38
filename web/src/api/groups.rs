//! `/api/agent-groups`: agents with their own prompt, model, key, tools and budget (owned by
//! the `AgentGroups` actor; spending by the `Budgets` actor).

use actix_web::{delete, get, post, put, web, HttpResponse};
use loop_gateway_actors::budgets::{window_starts, GetBudget};
use loop_gateway_actors::channels::GetChannel;
use loop_gateway_actors::groups::{
    AssignChannel, CreateGroup, DeleteGroup, GetGroup, GroupError, GroupFields, ListGroups,
    UnassignChannel, UpdateGroup,
};
use loop_gateway_actors::store::groups::GroupActivitySince;
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;

use crate::auth::Authed;
use crate::error::{reply, ApiError};
use crate::state::AppState;

impl From<GroupError> for ApiError {
    fn from(e: GroupError) -> Self {
        match e {
            GroupError::Invalid(m) => ApiError::validation(m),
            GroupError::NotFound(_) => ApiError::not_found(e.to_string()),
            GroupError::Conflict(m) => ApiError::conflict(m),
            GroupError::Store(s) => s.into(),
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GroupBody {
    name: Option<String>,
    #[serde(default, deserialize_with = "super::present")]
    #[schema(value_type = Option<String>)]
    description: Option<Option<String>>,
    #[serde(default, deserialize_with = "super::present")]
    #[schema(value_type = Option<String>)]
    system_prompt: Option<Option<String>>,
    /// e.g. claude-sonnet-4-5; absent: the gateway's default model.
    #[serde(default, deserialize_with = "super::present")]
    #[schema(value_type = Option<String>)]
    model: Option<Option<String>>,
    /// Write-only: stored encrypted, never returned (`hasApiKey`, `apiKeyLast4`); `null` clears.
    #[serde(default, deserialize_with = "super::present")]
    #[schema(value_type = Option<String>)]
    api_key: Option<Option<String>>,
    /// anthropic or openai-compatible.
    provider: Option<String>,
    #[serde(default, deserialize_with = "super::present")]
    #[schema(value_type = Option<String>)]
    base_url: Option<Option<String>>,
    /// Tools this group may use; absent or null: every enabled tool.
    #[serde(default, deserialize_with = "super::present")]
    #[schema(value_type = Option<Vec<String>>)]
    skills: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "super::present")]
    #[schema(value_type = Option<u32>)]
    max_iterations: Option<Option<u32>>,
    /// Tokens per day (input + output + cache); null: no cap.
    #[serde(default, deserialize_with = "super::present")]
    #[schema(value_type = Option<u64>)]
    budget_max_tokens_day: Option<Option<u64>>,
    #[serde(default, deserialize_with = "super::present")]
    #[schema(value_type = Option<u64>)]
    budget_max_tokens_month: Option<Option<u64>>,
    /// Run this group's agents in containers (used once container mode lands).
    container_isolation: Option<bool>,
}

impl From<GroupBody> for GroupFields {
    fn from(b: GroupBody) -> Self {
        GroupFields {
            name: b.name,
            description: b.description,
            system_prompt: b.system_prompt,
            model: b.model,
            provider: b.provider,
            base_url: b.base_url,
            api_key: b.api_key,
            skills: b.skills,
            max_iterations: b.max_iterations,
            budget_max_tokens_day: b.budget_max_tokens_day,
            budget_max_tokens_month: b.budget_max_tokens_month,
            container_isolation: b.container_isolation,
        }
    }
}

/// Every agent group.
#[utoipa::path(tag = "agent groups", security(("session" = [])), responses((status = 200)))]
#[get("/agent-groups")]
pub async fn list(_auth: Authed, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let items = state.groups.send(ListGroups).await?;
    let total = items.len();
    Ok(HttpResponse::Ok()
        .json(json!({"items": items, "total": total, "limit": total, "offset": 0})))
}

/// Create an agent group.
#[utoipa::path(tag = "agent groups", security(("session" = [])), request_body = GroupBody,
    responses((status = 201), (status = 409, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
#[post("/agent-groups")]
pub async fn create(
    _auth: Authed,
    state: web::Data<AppState>,
    body: web::Json<GroupBody>,
) -> Result<HttpResponse, ApiError> {
    let group = reply(
        state
            .groups
            .send(CreateGroup(body.into_inner().into()))
            .await,
    )?;
    Ok(HttpResponse::Created().json(group))
}

/// One agent group.
#[utoipa::path(tag = "agent groups", security(("session" = [])), responses((status = 200), (status = 404, body = crate::error::ErrorBody)))]
#[get("/agent-groups/{id}")]
pub async fn get(
    _auth: Authed,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    match state.groups.send(GetGroup { id: id.clone() }).await? {
        Some(g) => Ok(HttpResponse::Ok().json(g)),
        None => Err(ApiError::not_found(format!("no agent group with id {id}"))),
    }
}

/// Change an agent group; absent fields keep their value, `null` clears.
#[utoipa::path(tag = "agent groups", security(("session" = [])), request_body = GroupBody,
    responses((status = 200), (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
#[put("/agent-groups/{id}")]
pub async fn update(
    _auth: Authed,
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Json<GroupBody>,
) -> Result<HttpResponse, ApiError> {
    let group = reply(
        state
            .groups
            .send(UpdateGroup {
                id: id.into_inner(),
                fields: body.into_inner().into(),
            })
            .await,
    )?;
    Ok(HttpResponse::Ok().json(group))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeleteQuery {
    /// Unbind the group's channels instead of refusing with 409.
    #[serde(default)]
    unbind: bool,
}

/// Delete an agent group (its runs and usage stay).
#[utoipa::path(tag = "agent groups", security(("session" = [])), params(DeleteQuery),
    responses((status = 204), (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
#[delete("/agent-groups/{id}")]
pub async fn remove(
    _auth: Authed,
    state: web::Data<AppState>,
    id: web::Path<String>,
    q: web::Query<DeleteQuery>,
) -> Result<HttpResponse, ApiError> {
    reply(
        state
            .groups
            .send(DeleteGroup {
                id: id.into_inner(),
                unbind: q.unbind,
            })
            .await,
    )?;
    Ok(HttpResponse::NoContent().finish())
}

/// Tokens and cost today and this month against the caps, runs and errors.
#[utoipa::path(tag = "agent groups", security(("session" = [])), responses((status = 200), (status = 404, body = crate::error::ErrorBody)))]
#[get("/agent-groups/{id}/stats")]
pub async fn stats(
    _auth: Authed,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    if state
        .groups
        .send(GetGroup { id: id.clone() })
        .await?
        .is_none()
    {
        return Err(ApiError::not_found(format!("no agent group with id {id}")));
    }
    let budget = state
        .budgets
        .send(GetBudget {
            group_id: id.clone(),
        })
        .await?;
    let tz: chrono_tz::Tz = budget.time_zone.parse().unwrap_or(chrono_tz::UTC);
    let (day_start, month_start) = window_starts(tz, loop_gateway_actors::time::now_ms());
    let today = reply(
        state
            .store
            .send(GroupActivitySince {
                group_id: id.clone(),
                since: day_start,
            })
            .await,
    )?;
    let month = reply(
        state
            .store
            .send(GroupActivitySince {
                group_id: id,
                since: month_start,
            })
            .await,
    )?;
    Ok(HttpResponse::Ok().json(json!({
        "budget": budget,
        "today": today,
        "thisMonth": month,
    })))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AssignQuery {
    /// Move the channel when another group has it (otherwise 409).
    #[serde(default, rename = "move")]
    move_existing: bool,
}

/// Bind a channel to this group: its runs then use the group's prompt, model, key, tools and
/// budget. A channel bound to another group is a 409 unless `?move=true`.
#[utoipa::path(tag = "agent groups", security(("session" = [])), params(AssignQuery),
    responses((status = 200), (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
#[post("/agent-groups/{id}/assign/{channel_id}")]
pub async fn assign(
    _auth: Authed,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    q: web::Query<AssignQuery>,
) -> Result<HttpResponse, ApiError> {
    let (group_id, channel_id) = path.into_inner();
    if state
        .channels
        .send(GetChannel {
            id: channel_id.clone(),
        })
        .await?
        .is_none()
    {
        return Err(ApiError::not_found(format!(
            "no channel with id {channel_id}"
        )));
    }
    let group = reply(
        state
            .groups
            .send(AssignChannel {
                group_id,
                channel_id,
                move_existing: q.move_existing,
            })
            .await,
    )?;
    Ok(HttpResponse::Ok().json(group))
}

/// Unbind a channel from this group: its runs use the gateway's defaults again.
#[utoipa::path(tag = "agent groups", security(("session" = [])),
    responses((status = 200), (status = 404, body = crate::error::ErrorBody)))]
#[post("/agent-groups/{id}/unassign/{channel_id}")]
pub async fn unassign(
    _auth: Authed,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (group_id, channel_id) = path.into_inner();
    let group = reply(
        state
            .groups
            .send(UnassignChannel {
                group_id,
                channel_id,
            })
            .await,
    )?;
    Ok(HttpResponse::Ok().json(group))
}
