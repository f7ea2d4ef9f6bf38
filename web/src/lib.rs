//! Loop Gateway's web layer: the `WebServer` actor runs actix-web; handlers validate input,
//! send a message to the actor that owns the answer, and map its reply to HTTP.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web::dev::ServerHandle;
use actix_web::http::{header, Method};
use actix_web::middleware::{from_fn, DefaultHeaders};
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use loop_gateway_actors::agents::AgentSupervisor;
use loop_gateway_actors::skills::Skills;
use loop_gateway_actors::webhooks::Webhooks;
use loop_gateway_actors::{EventBus, Store, Supervision};
use utoipa::OpenApi;
use utoipa_actix_web::AppExt;

pub mod api;
pub mod auth;
pub mod error;
pub mod guard;
pub mod inbound;
pub mod ratelimit;
pub mod state;
pub mod static_ui;
pub mod ws;

use api::{ApiDoc, RouteTable};
use error::ApiError;
use ratelimit::Limiters;
pub use state::{AppState, WebConfig};

/// What the web layer needs from the rest of the tree.
pub struct WebDeps {
    pub store: Store,
    pub bus: Addr<EventBus>,
    pub supervision: Addr<Supervision>,
    pub agents: Addr<AgentSupervisor>,
    pub launcher: loop_gateway_actors::agents::RunLauncher,
    pub webhooks: Addr<Webhooks>,
    pub webhook_tokens: loop_gateway_actors::webhooks::TokenDirectory,
    pub skills: Addr<Skills>,
    pub groups: Addr<loop_gateway_actors::groups::AgentGroups>,
    pub budgets: Addr<loop_gateway_actors::budgets::Budgets>,
    pub tasks: Addr<loop_gateway_actors::tasks::LoopTasks>,
    pub approvals: Addr<loop_gateway_actors::approvals::ApprovalDesk>,
    pub channels: Addr<loop_gateway_actors::channels::ChannelManager>,
    pub config: WebConfig,
    pub ticket_key: [u8; 32],
}

/// The HTTP server as an actor of the tree: it owns the server handle and shuts it down.
pub struct WebServer {
    handle: ServerHandle,
    limits: Arc<Limiters>,
}

/// Stop accepting connections and let in-flight requests finish (bounded by the grace period).
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopServer;

/// The OpenAPI document, serialised once per worker.
struct OpenApiJson(String);

impl WebServer {
    /// Bind and start serving. Binding happens here, so a taken port fails start-up with a
    /// clear error instead of later.
    pub fn start(deps: WebDeps) -> std::io::Result<(Addr<WebServer>, Vec<SocketAddr>)> {
        let config = Arc::new(deps.config);
        let limits = Arc::new(Limiters::new(&config));
        let state = web::Data::new(AppState {
            store: deps.store,
            bus: deps.bus,
            supervision: deps.supervision,
            agents: deps.agents,
            launcher: deps.launcher,
            webhooks: deps.webhooks,
            webhook_tokens: deps.webhook_tokens,
            skills: deps.skills,
            groups: deps.groups,
            budgets: deps.budgets,
            tasks: deps.tasks,
            channels: deps.channels,
            approvals: deps.approvals,
            config: config.clone(),
            limits: limits.clone(),
            ticket_key: deps.ticket_key,
            started: Instant::now(),
        });
        let body_limit = config.body_limit_bytes;
        let mut server = HttpServer::new(move || {
            let (app, doc) = App::new()
                .into_utoipa_app()
                .openapi(ApiDoc::openapi())
                .service(
                    utoipa_actix_web::scope("/api")
                        .service(api::auth::status)
                        .service(api::auth::setup)
                        .service(api::auth::login)
                        .service(api::auth::logout)
                        .service(api::auth::me)
                        .service(api::auth::ws_ticket)
                        .service(api::health::health)
                        .service(api::approvals::list)
                        .service(api::approvals::stats)
                        .service(api::approvals::for_run)
                        .service(api::approvals::get)
                        .service(api::approvals::approve)
                        .service(api::approvals::reject)
                        .service(api::approvals::rules)
                        .service(api::approvals::upsert_rule)
                        .service(api::approvals::delete_rule)
                        .service(api::channels::list)
                        .service(api::channels::create)
                        .service(api::channels::get)
                        .service(api::channels::update)
                        .service(api::channels::remove)
                        .service(api::channels::messages)
                        .service(api::channels::qr)
                        .service(api::groups::list)
                        .service(api::groups::create)
                        .service(api::groups::get)
                        .service(api::groups::update)
                        .service(api::groups::remove)
                        .service(api::groups::stats)
                        .service(api::groups::assign)
                        .service(api::groups::unassign)
                        .service(api::runs::list)
                        .service(api::runs::get)
                        .service(api::tasks::list)
                        .service(api::tasks::create)
                        .service(api::tasks::get)
                        .service(api::tasks::start)
                        .service(api::tasks::stop)
                        .service(api::tasks::prompt)
                        .service(api::tasks::output)
                        .service(api::tasks::remove)
                        .service(api::tools::list)
                        .service(api::usage::totals)
                        .service(api::usage::daily)
                        .service(api::usage::models)
                        .service(api::usage::calls)
                        .service(api::webhooks::list)
                        .service(api::webhooks::create)
                        .service(api::webhooks::events)
                        .service(api::webhooks::get)
                        .service(api::webhooks::update)
                        .service(api::webhooks::remove)
                        .service(api::webhooks::rotate)
                        .service(api::webhooks::logs)
                        .route("/openapi.json", web::get().to(openapi_json)),
                )
                .service(
                    utoipa_actix_web::scope("/webhook")
                        .service(inbound::invoke)
                        .service(inbound::task)
                        .service(inbound::health)
                        .service(api::channels::whatsapp_verify)
                        .service(api::channels::whatsapp_notify)
                        .service(api::channels::telegram_update),
                )
                .split_for_parts();
            let routes = RouteTable::from_openapi(&doc);
            let doc_json = doc.to_json().unwrap_or_else(|_| "{}".into());
            app.app_data(state.clone())
                .app_data(web::Data::new(routes))
                .app_data(web::Data::new(OpenApiJson(doc_json)))
                .app_data(
                    web::JsonConfig::default()
                        .limit(body_limit)
                        .error_handler(error::json_error),
                )
                .app_data(web::PayloadConfig::default().limit(body_limit))
                .app_data(web::QueryConfig::default().error_handler(error::query_error))
                .app_data(web::PathConfig::default().error_handler(error::path_error))
                .service(ws::connect)
                .default_service(web::to(fallback))
                .wrap(from_fn(ratelimit::rate_limit))
                .wrap(from_fn(guard::catch_panics))
                .wrap(
                    DefaultHeaders::new()
                        .add(("x-content-type-options", "nosniff"))
                        .add(("referrer-policy", "no-referrer"))
                        .add(("x-frame-options", "DENY")),
                )
        })
        .disable_signals()
        .shutdown_timeout(config.shutdown_grace_seconds);
        if let Some(workers) = config.workers {
            server = server.workers(workers);
        }
        let server = server.bind((config.host.as_str(), config.port))?;
        let addrs = server.addrs();
        let server = server.run();
        let handle = server.handle();
        actix_rt::spawn(async move {
            if let Err(e) = server.await {
                tracing::error!(error = %e, "http server stopped with an error");
            }
        });
        Ok((WebServer { handle, limits }.start(), addrs))
    }
}

impl Actor for WebServer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(Duration::from_secs(60), |act, _| act.limits.purge());
    }
}

impl Handler<StopServer> for WebServer {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: StopServer, _: &mut Context<Self>) -> Self::Result {
        let handle = self.handle.clone();
        Box::pin(async move { handle.stop(true).await })
    }
}

async fn openapi_json(doc: web::Data<OpenApiJson>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(doc.0.clone())
}

/// Everything no route matched: the dashboard's files, 405 for a known path with the wrong
/// method, otherwise 404, always in the error shape.
async fn fallback(req: HttpRequest, routes: web::Data<RouteTable>) -> HttpResponse {
    let path = req.path();
    if (req.method() == Method::GET || req.method() == Method::HEAD) && !path.starts_with("/api/") {
        if let Some(res) = static_ui::serve(&req) {
            return res;
        }
    }
    let allowed = routes
        .allowed(path)
        .or_else(|| (path == "/api/openapi.json" || path == "/ws").then(|| vec![Method::GET]));
    match allowed {
        Some(methods) => {
            let allow = methods
                .iter()
                .map(Method::as_str)
                .collect::<Vec<_>>()
                .join(", ");
            let mut res = actix_web::ResponseError::error_response(&ApiError::new(
                actix_web::http::StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("{} is not allowed on {path}; use {allow}", req.method()),
            ));
            if let Ok(v) = header::HeaderValue::from_str(&allow) {
                res.headers_mut().insert(header::ALLOW, v);
            }
            res
        }
        None => actix_web::ResponseError::error_response(&ApiError::not_found(format!(
            "no route for {} {path}",
            req.method()
        ))),
    }
}
