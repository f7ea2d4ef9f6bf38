//! `/api/runs`: the agent runs, newest first.

use actix_web::{get, web};
use loop_gateway_actors::store::runs::{GetRun, ListRuns, RunFilter};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::PageQuery;
use crate::auth::Authed;
use crate::error::{reply, ApiError};
use crate::state::AppState;

const STATUSES: &[&str] = &[
    "queued",
    "running",
    "awaiting_approval",
    "complete",
    "error",
    "interrupted",
];

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunsQuery {
    /// queued, running, awaiting_approval, complete, error or interrupted.
    status: Option<String>,
    /// Where runs came from, e.g. `webhook`, `telegram`.
    source: Option<String>,
    /// RFC 3339; runs created at or after.
    since: Option<String>,
    /// RFC 3339; runs created before.
    until: Option<String>,
}

/// The list shape every list endpoint shares.
#[derive(Serialize, ToSchema)]
pub struct RunList {
    #[schema(value_type = Vec<Object>)]
    items: Vec<loop_gateway_actors::store::runs::RunSummary>,
    total: i64,
    limit: i64,
    offset: i64,
}

fn parse_time(field: &str, value: Option<String>) -> Result<Option<i64>, ApiError> {
    value
        .map(|v| {
            chrono::DateTime::parse_from_rfc3339(&v)
                .map(|t| t.timestamp_millis())
                .map_err(|_| {
                    ApiError::validation(format!(
                        "{field}: expected an RFC 3339 time such as 2026-01-31T00:00:00Z"
                    ))
                })
        })
        .transpose()
}

/// Recent agent runs, filterable by status, source and time; paginated.
#[utoipa::path(tag = "runs", security(("session" = [])), params(RunsQuery, PageQuery),
    responses((status = 200, body = RunList), (status = 401, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
#[get("/runs")]
pub async fn list(
    _auth: Authed,
    state: web::Data<AppState>,
    query: web::Query<RunsQuery>,
    page: web::Query<PageQuery>,
) -> Result<web::Json<RunList>, ApiError> {
    let q = query.into_inner();
    if let Some(s) = &q.status {
        if !STATUSES.contains(&s.as_str()) {
            return Err(ApiError::validation(format!(
                "status must be one of {}",
                STATUSES.join(", ")
            )));
        }
    }
    let filter = RunFilter {
        status: q.status,
        source: q.source,
        since: parse_time("since", q.since)?,
        until: parse_time("until", q.until)?,
    };
    let paged = reply(
        state
            .store
            .send(ListRuns {
                filter,
                page: page.page()?,
            })
            .await,
    )?;
    Ok(web::Json(RunList {
        items: paged.items,
        total: paged.total,
        limit: paged.limit,
        offset: paged.offset,
    }))
}

/// One run with its model calls (`llmCallsDetail`) and tool calls.
#[utoipa::path(tag = "runs", security(("session" = [])),
    responses((status = 200), (status = 401, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
#[get("/runs/{id}")]
pub async fn get(
    _auth: Authed,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<actix_web::HttpResponse, ApiError> {
    let id = id.into_inner();
    match reply(state.store.send(GetRun { id: id.clone() }).await)? {
        Some(run) => Ok(actix_web::HttpResponse::Ok().json(run)),
        None => Err(ApiError::not_found(format!("no run with id {id}"))),
    }
}
