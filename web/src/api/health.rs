//! `/api/health` (open): is the gateway well, and how are its supervised actors doing.

use actix_web::{get, web, HttpResponse};
use loop_gateway_actors::bus::SubscriberCount;
use loop_gateway_actors::store::Ping;
use loop_gateway_actors::{ActorStatus, GetSupervisionTree};
use serde::Serialize;
use utoipa::ToSchema;

use crate::state::AppState;

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    /// `ok`, or `degraded` (then the status code is 503).
    status: &'static str,
    version: &'static str,
    uptime_seconds: u64,
    database: DatabaseHealth,
    /// Supervised actors with their restart counts.
    #[schema(value_type = Vec<Object>)]
    actors: Vec<ActorStatus>,
    event_subscribers: usize,
    /// Agent runs in progress and waiting.
    #[schema(value_type = Object)]
    runs: loop_gateway_actors::agents::RunCounts,
    /// SQLite statements and write transactions since start.
    #[schema(value_type = Object)]
    store: loop_gateway_actors::store::counters::StoreCounters,
}

#[derive(Serialize, ToSchema)]
pub struct DatabaseHealth {
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// Liveness and readiness in one: 200 when the database answers, 503 otherwise.
#[utoipa::path(tag = "health", responses((status = 200, body = Health), (status = 503, body = Health)))]
#[get("/health")]
pub async fn health(state: web::Data<AppState>) -> HttpResponse {
    let database = match state.store.send(Ping).await {
        Ok(Ok(())) => DatabaseHealth {
            ok: true,
            error: None,
        },
        Ok(Err(e)) => DatabaseHealth {
            ok: false,
            error: Some(e.to_string()),
        },
        Err(e) => DatabaseHealth {
            ok: false,
            error: Some(e.to_string()),
        },
    };
    let actors = state
        .supervision
        .send(GetSupervisionTree)
        .await
        .unwrap_or_default();
    let event_subscribers = state.bus.send(SubscriberCount).await.unwrap_or(0);
    let runs = state
        .agents
        .send(loop_gateway_actors::agents::GetRunCounts)
        .await
        .unwrap_or(loop_gateway_actors::agents::RunCounts {
            running: 0,
            queued: 0,
        });
    let ok = database.ok;
    let body = Health {
        status: if ok { "ok" } else { "degraded" },
        version: env!("CARGO_PKG_VERSION"),
        uptime_seconds: state.started.elapsed().as_secs(),
        database,
        actors,
        event_subscribers,
        runs,
        store: loop_gateway_actors::store::counters::read(),
    };
    if ok {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
