//! `/api/approvals` and `/api/approval-rules`: human approval of risky tool calls (owned by
//! the `ApprovalDesk` actor; history read from the store).

use actix_web::{delete, get, post, web, HttpResponse};
use loop_gateway_actors::approvals::{ApprovalError, Decide, DeleteRule, ListRules, UpsertRule};
use loop_gateway_actors::store::approvals::{ApprovalStats, GetApproval, ListApprovals, RuleRow};
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;

use super::PageQuery;
use crate::auth::Authed;
use crate::error::{reply, ApiError};
use crate::state::AppState;

impl From<ApprovalError> for ApiError {
    fn from(e: ApprovalError) -> Self {
        match e {
            ApprovalError::Invalid(m) => ApiError::validation(m),
            ApprovalError::NotFound(m) => ApiError::not_found(m),
            ApprovalError::Conflict(m) => ApiError::conflict(m),
            ApprovalError::Store(s) => s.into(),
        }
    }
}

const STATUSES: &[&str] = &["pending", "approved", "rejected", "expired"];

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatusQuery {
    /// pending, approved, rejected or expired.
    status: Option<String>,
}

/// Approval requests, newest first.
#[utoipa::path(tag = "approvals", security(("session" = [])), params(StatusQuery, PageQuery), responses((status = 200), (status = 422, body = crate::error::ErrorBody)))]
#[get("/approvals")]
pub async fn list(
    _auth: Authed,
    state: web::Data<AppState>,
    q: web::Query<StatusQuery>,
    page: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    if let Some(s) = &q.status {
        if !STATUSES.contains(&s.as_str()) {
            return Err(ApiError::validation(format!(
                "status must be one of {}",
                STATUSES.join(", ")
            )));
        }
    }
    let paged = reply(
        state
            .store
            .send(ListApprovals {
                status: q.status.clone(),
                run_id: None,
                page: page.page()?,
            })
            .await,
    )?;
    Ok(HttpResponse::Ok().json(paged))
}

/// Counts by status.
#[utoipa::path(tag = "approvals", security(("session" = [])), responses((status = 200)))]
#[get("/approvals/stats")]
pub async fn stats(_auth: Authed, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let rows = reply(state.store.send(ApprovalStats).await)?;
    let mut body = json!({"pending": 0, "approved": 0, "rejected": 0, "expired": 0});
    for (status, n) in rows {
        body[status] = json!(n);
    }
    Ok(HttpResponse::Ok().json(body))
}

/// The approval requests of one run.
#[utoipa::path(tag = "approvals", security(("session" = [])), responses((status = 200)))]
#[get("/approvals/run/{run_id}")]
pub async fn for_run(
    _auth: Authed,
    state: web::Data<AppState>,
    run_id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let paged = reply(
        state
            .store
            .send(ListApprovals {
                status: None,
                run_id: Some(run_id.into_inner()),
                page: loop_gateway_actors::store::Page {
                    limit: 200,
                    offset: 0,
                },
            })
            .await,
    )?;
    Ok(HttpResponse::Ok().json(paged))
}

/// One approval request.
#[utoipa::path(tag = "approvals", security(("session" = [])), responses((status = 200), (status = 404, body = crate::error::ErrorBody)))]
#[get("/approvals/{id}")]
pub async fn get(
    _auth: Authed,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    match reply(state.store.send(GetApproval { id: id.clone() }).await)? {
        Some(a) => Ok(HttpResponse::Ok().json(a)),
        None => Err(ApiError::not_found(format!(
            "no approval request with id {id}"
        ))),
    }
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct DecisionBody {
    reason: Option<String>,
}

async fn decide(
    auth: Authed,
    state: &AppState,
    id: String,
    approved: bool,
    body: Option<web::Json<DecisionBody>>,
) -> Result<HttpResponse, ApiError> {
    let reason = body
        .and_then(|b| b.into_inner().reason)
        .filter(|r| !r.trim().is_empty());
    if reason.as_ref().is_some_and(|r| r.len() > 2000) {
        return Err(ApiError::validation("reason: at most 2000 characters"));
    }
    let row = reply(
        state
            .approvals
            .send(Decide {
                id,
                approve: approved,
                by: auth.session.username,
                reason,
            })
            .await,
    )?;
    Ok(HttpResponse::Ok().json(row))
}

/// Approve: the tool call is made. A second decision, or one after expiry, is a 409.
#[utoipa::path(tag = "approvals", security(("session" = [])), request_body = Option<DecisionBody>,
    responses((status = 200), (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
#[post("/approvals/{id}/approve")]
pub async fn approve(
    auth: Authed,
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: Option<web::Json<DecisionBody>>,
) -> Result<HttpResponse, ApiError> {
    decide(auth, &state, id.into_inner(), true, body).await
}

/// Reject: the model gets a tool error with the reason and carries on.
#[utoipa::path(tag = "approvals", security(("session" = [])), request_body = Option<DecisionBody>,
    responses((status = 200), (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
#[post("/approvals/{id}/reject")]
pub async fn reject(
    auth: Authed,
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: Option<web::Json<DecisionBody>>,
) -> Result<HttpResponse, ApiError> {
    decide(auth, &state, id.into_inner(), false, body).await
}

/// The effective rule of every registered tool, defaults included (`source`).
#[utoipa::path(tag = "approvals", security(("session" = [])), responses((status = 200)))]
#[get("/approval-rules")]
pub async fn rules(_auth: Authed, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let items = state.approvals.send(ListRules).await?;
    Ok(HttpResponse::Ok().json(json!({"items": items})))
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleBody {
    tool_name: String,
    /// low, medium, high or critical.
    risk_level: String,
    require_approval: bool,
    /// Default by risk: low 60, medium 120, high 300, critical 600.
    timeout_seconds: Option<u32>,
    /// approve or reject (default reject).
    timeout_action: Option<String>,
    /// Conditions that let a call through without a person (all must hold):
    /// `{"inputEquals": {"method": "GET"}, "urlHostIn": ["api.example.com"]}`.
    #[schema(value_type = Option<Object>)]
    auto_approve: Option<serde_json::Value>,
}

/// Create or replace the rule of a tool.
#[utoipa::path(tag = "approvals", security(("session" = [])), request_body = RuleBody,
    responses((status = 200), (status = 404, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
#[post("/approval-rules")]
pub async fn upsert_rule(
    _auth: Authed,
    state: web::Data<AppState>,
    body: web::Json<RuleBody>,
) -> Result<HttpResponse, ApiError> {
    let b = body.into_inner();
    let default_timeout = match b.risk_level.as_str() {
        "low" => 60,
        "medium" => 120,
        "high" => 300,
        _ => 600,
    };
    let rule = RuleRow {
        tool_name: b.tool_name,
        risk_level: b.risk_level,
        require_approval: b.require_approval,
        timeout_seconds: b.timeout_seconds.unwrap_or(default_timeout),
        timeout_action: b.timeout_action.unwrap_or_else(|| "reject".into()),
        auto_approve: b.auto_approve,
    };
    let effective = reply(state.approvals.send(UpsertRule(rule)).await)?;
    Ok(HttpResponse::Ok().json(effective))
}

/// Remove a tool's rule: the default applies again.
#[utoipa::path(tag = "approvals", security(("session" = [])), responses((status = 200), (status = 404, body = crate::error::ErrorBody)))]
#[delete("/approval-rules/{tool_name}")]
pub async fn delete_rule(
    _auth: Authed,
    state: web::Data<AppState>,
    tool_name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let effective = reply(
        state
            .approvals
            .send(DeleteRule {
                tool_name: tool_name.into_inner(),
            })
            .await,
    )?;
    Ok(HttpResponse::Ok().json(effective))
}
