//! `/api/usage`: tokens and cost, over a date range (default: the last 30 days).

use actix_web::{get, web, HttpResponse};
use chrono::{NaiveDate, TimeZone, Utc};
use loop_gateway_actors::store::usage::{Range, UsageByModel, UsageCalls, UsageDaily, UsageTotals};
use serde::Deserialize;
use serde_json::json;

use super::PageQuery;
use crate::auth::Authed;
use crate::error::{reply, ApiError};
use crate::state::AppState;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RangeQuery {
    /// A day (`2026-01-31`, from its start, UTC) or an RFC 3339 time. Default: 30 days ago.
    from: Option<String>,
    /// A day (to its end, UTC) or an RFC 3339 time. Default: now.
    to: Option<String>,
}

fn parse_bound(field: &str, value: &str, end_of_day: bool) -> Result<i64, ApiError> {
    if let Ok(day) = NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        let day = if end_of_day {
            day.succ_opt().unwrap_or(day)
        } else {
            day
        };
        let start = day.and_hms_opt(0, 0, 0).unwrap_or_default();
        return Ok(Utc.from_utc_datetime(&start).timestamp_millis());
    }
    chrono::DateTime::parse_from_rfc3339(value)
        .map(|t| t.timestamp_millis())
        .map_err(|_| {
            ApiError::validation(format!(
                "{field}: a day (2026-01-31) or an RFC 3339 time (2026-01-31T12:00:00Z)"
            ))
        })
}

impl RangeQuery {
    fn range(&self) -> Result<Range, ApiError> {
        let now = Utc::now().timestamp_millis();
        let until = match &self.to {
            Some(v) => parse_bound("to", v, true)?,
            None => now + 1,
        };
        let since = match &self.from {
            Some(v) => parse_bound("from", v, false)?,
            None => until - 30 * 86_400_000,
        };
        if since >= until {
            return Err(ApiError::validation("from must be before to"));
        }
        Ok(Range { since, until })
    }
}

fn range_json(r: &Range) -> serde_json::Value {
    json!({
        "from": loop_gateway_actors::time::rfc3339(r.since),
        "to": loop_gateway_actors::time::rfc3339(r.until),
    })
}

/// Totals and estimated cost (`costMicros`: integer micro-dollars; `costUsd` for people).
#[utoipa::path(tag = "usage", security(("session" = [])), params(RangeQuery),
    responses((status = 200), (status = 422, body = crate::error::ErrorBody)))]
#[get("/usage")]
pub async fn totals(
    _auth: Authed,
    state: web::Data<AppState>,
    q: web::Query<RangeQuery>,
) -> Result<HttpResponse, ApiError> {
    let range = q.range()?;
    let t = reply(state.store.send(UsageTotals(range)).await)?;
    let mut body = serde_json::to_value(&t).unwrap_or_default();
    body["costUsd"] = json!(t.cost_micros as f64 / 1e6);
    body["range"] = range_json(&range);
    Ok(HttpResponse::Ok().json(body))
}

/// Per day (UTC).
#[utoipa::path(tag = "usage", security(("session" = [])), params(RangeQuery), responses((status = 200)))]
#[get("/usage/daily")]
pub async fn daily(
    _auth: Authed,
    state: web::Data<AppState>,
    q: web::Query<RangeQuery>,
) -> Result<HttpResponse, ApiError> {
    let range = q.range()?;
    let rows = reply(state.store.send(UsageDaily(range)).await)?;
    let items: Vec<_> = rows
        .into_iter()
        .map(|g| {
            let mut v = serde_json::to_value(&g.figures).unwrap_or_default();
            v["date"] = json!(g.key);
            v
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({"items": items, "range": range_json(&range)})))
}

/// Per model.
#[utoipa::path(tag = "usage", security(("session" = [])), params(RangeQuery), responses((status = 200)))]
#[get("/usage/models")]
pub async fn models(
    _auth: Authed,
    state: web::Data<AppState>,
    q: web::Query<RangeQuery>,
) -> Result<HttpResponse, ApiError> {
    let range = q.range()?;
    let rows = reply(state.store.send(UsageByModel(range)).await)?;
    let items: Vec<_> = rows
        .into_iter()
        .map(|g| {
            let mut v = serde_json::to_value(&g.figures).unwrap_or_default();
            v["model"] = json!(g.key);
            v
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({"items": items, "range": range_json(&range)})))
}

/// Individual model calls, newest first.
#[utoipa::path(tag = "usage", security(("session" = [])), params(RangeQuery, PageQuery), responses((status = 200)))]
#[get("/usage/calls")]
pub async fn calls(
    _auth: Authed,
    state: web::Data<AppState>,
    q: web::Query<RangeQuery>,
    page: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let paged = reply(
        state
            .store
            .send(UsageCalls {
                range: q.range()?,
                page: page.page()?,
            })
            .await,
    )?;
    Ok(HttpResponse::Ok().json(paged))
}
