//! `/ws`: one `WsSession` actor per dashboard connection. It subscribes to the bus, writes
//! every event as one JSON text frame, keeps the connection alive with pings, and closes when
//! the client goes quiet or its login session ends.

use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web::{get, web, HttpRequest, HttpResponse};
use actix_web_actors::ws;
use loop_gateway_actors::store::sessions::LookupSessionById;
use loop_gateway_actors::{BusEvent, EventBus, Store, Subscribe};
use serde::Deserialize;

use crate::auth::{session_for_ticket, Authed};
use crate::error::ApiError;
use crate::state::AppState;

const HEARTBEAT: Duration = Duration::from_secs(15);
const CLIENT_TIMEOUT: Duration = Duration::from_secs(45);
const SESSION_CHECK: Duration = Duration::from_secs(60);

pub struct WsSession {
    last_seen: Instant,
    session_id: i64,
    username: String,
    bus: Addr<EventBus>,
    store: Store,
}

impl Actor for WsSession {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Subscribe before saying hello: once the client has the hello frame, every event
        // published after that reaches it.
        self.bus.do_send(Subscribe(ctx.address().recipient()));
        ctx.text(
            serde_json::json!({
                "event": "ws:ready",
                "payload": {"username": self.username},
                "timestamp": loop_gateway_actors::time::rfc3339(loop_gateway_actors::time::now_ms()),
                "source": "loop-gateway",
            })
            .to_string(),
        );
        ctx.run_interval(HEARTBEAT, |act, ctx| {
            if act.last_seen.elapsed() > CLIENT_TIMEOUT {
                ctx.close(Some(ws::CloseReason {
                    code: ws::CloseCode::Away,
                    description: Some("no pong from the client".into()),
                }));
                ctx.stop();
            } else {
                ctx.ping(b"");
            }
        });
        ctx.run_interval(SESSION_CHECK, |act, ctx| {
            act.store
                .send(LookupSessionById {
                    session_id: act.session_id,
                })
                .into_actor(act)
                .map(|res, _, ctx| {
                    if !matches!(res, Ok(Ok(Some(_)))) {
                        ctx.close(Some(ws::CloseReason {
                            code: ws::CloseCode::Policy,
                            description: Some("the login session has ended".into()),
                        }));
                        ctx.stop();
                    }
                })
                .spawn(ctx);
        });
    }
}

impl Handler<BusEvent> for WsSession {
    type Result = ();

    fn handle(&mut self, msg: BusEvent, ctx: &mut Self::Context) {
        ctx.text(msg.json.clone());
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for WsSession {
    fn handle(&mut self, msg: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        self.last_seen = Instant::now();
        match msg {
            Ok(ws::Message::Ping(p)) => ctx.pong(&p),
            Ok(ws::Message::Close(reason)) => {
                ctx.close(reason);
                ctx.stop();
            }
            // The stream is one-way (server to client); anything else just proves liveness.
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(error = %e, "websocket protocol error");
                ctx.stop();
            }
        }
    }
}

#[derive(Deserialize)]
pub struct WsQuery {
    ticket: Option<String>,
}

/// The live event stream. Authenticate with `?ticket=` (from `POST /api/auth/ws-ticket`) or,
/// from clients that can set headers, `Authorization: Bearer <session token>`.
#[get("/ws")]
pub async fn connect(
    req: HttpRequest,
    stream: web::Payload,
    state: web::Data<AppState>,
    query: web::Query<WsQuery>,
) -> Result<HttpResponse, actix_web::Error> {
    let session = match &query.ticket {
        Some(ticket) => session_for_ticket(&state, ticket).await?,
        None if req.headers().contains_key("authorization") => {
            use actix_web::FromRequest;
            Authed::extract(&req).await?.session
        }
        None => {
            return Err(ApiError::unauthorized(
                "the WebSocket needs ?ticket= (POST /api/auth/ws-ticket) or a bearer token",
            )
            .into())
        }
    };
    ws::start(
        WsSession {
            last_seen: Instant::now(),
            session_id: session.session_id,
            username: session.username,
            bus: state.bus.clone(),
            store: state.store.clone(),
        },
        &req,
        stream,
    )
}
