//! `/api/tasks`: loop tasks (owned by the `LoopTasks` actor; rows read from the store).

use actix_web::{delete, get, post, web, HttpResponse};
use loop_gateway_actors::store::tasks::{GetTask, ListIterations};
use loop_gateway_actors::tasks::{CreateTask, DeleteTask, StartTask, StopTask, TaskError};
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;

use crate::auth::Authed;
use crate::error::{reply, ApiError};
use crate::state::AppState;

impl From<TaskError> for ApiError {
    fn from(e: TaskError) -> Self {
        match e {
            TaskError::Invalid(m) => ApiError::validation(m),
            TaskError::NotFound(_) => ApiError::not_found(e.to_string()),
            TaskError::Conflict(m) => ApiError::conflict(m),
            TaskError::Store(s) => s.into(),
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TaskBody {
    /// Letters, digits, - and _ (it names the task's files).
    pub name: String,
    pub prompt: String,
    /// 1 to 1000, default 10.
    pub max_iterations: Option<u32>,
    pub group_id: Option<String>,
    /// Text whose appearance in an iteration's output completes the task (default TASK_COMPLETE).
    pub completion_signal: Option<String>,
}

/// Create a task from a body (API or webhook), checking the group.
pub async fn create_task(state: &AppState, body: TaskBody) -> Result<HttpResponse, ApiError> {
    if let Some(id) = &body.group_id {
        let known = state
            .groups
            .send(loop_gateway_actors::groups::GetGroup { id: id.clone() })
            .await?;
        if known.is_none() {
            return Err(ApiError::validation(format!(
                "groupId: no agent group with id {id}"
            )));
        }
    }
    let task = reply(
        state
            .tasks
            .send(CreateTask {
                name: body.name,
                prompt: body.prompt,
                max_iterations: body.max_iterations.unwrap_or(10),
                group_id: body.group_id,
                completion_signal: body
                    .completion_signal
                    .unwrap_or_else(|| "TASK_COMPLETE".into()),
            })
            .await,
    )?;
    Ok(HttpResponse::Created().json(task))
}

/// Every task with its status, iteration, tokens and cost.
#[utoipa::path(tag = "tasks", security(("session" = [])), responses((status = 200)))]
#[get("/tasks")]
pub async fn list(_auth: Authed, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let items = reply(
        state
            .store
            .send(loop_gateway_actors::store::tasks::ListTasks)
            .await,
    )?;
    let total = items.len();
    Ok(HttpResponse::Ok()
        .json(json!({"items": items, "total": total, "limit": total, "offset": 0})))
}

/// Create a task and start it (or queue it behind the concurrency cap).
#[utoipa::path(tag = "tasks", security(("session" = [])), request_body = TaskBody,
    responses((status = 201), (status = 409, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
#[post("/tasks")]
pub async fn create(
    _auth: Authed,
    state: web::Data<AppState>,
    body: web::Json<TaskBody>,
) -> Result<HttpResponse, ApiError> {
    create_task(&state, body.into_inner()).await
}

async fn existing(
    state: &AppState,
    id: &str,
) -> Result<loop_gateway_actors::store::tasks::TaskRow, ApiError> {
    reply(state.store.send(GetTask { id: id.to_string() }).await)?
        .ok_or_else(|| ApiError::not_found(format!("no task with id {id}")))
}

/// One task with its iterations.
#[utoipa::path(tag = "tasks", security(("session" = [])), responses((status = 200), (status = 404, body = crate::error::ErrorBody)))]
#[get("/tasks/{id}")]
pub async fn get(
    _auth: Authed,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let task = existing(&state, &id).await?;
    let iterations = reply(
        state
            .store
            .send(ListIterations {
                task_id: id.into_inner(),
            })
            .await,
    )?;
    let mut body = serde_json::to_value(&task).unwrap_or_default();
    body["iterations"] = json!(iterations);
    Ok(HttpResponse::Ok().json(body))
}

/// Start a finished, stopped or failed task again, continuing from its output.
#[utoipa::path(tag = "tasks", security(("session" = [])), responses((status = 202), (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
#[post("/tasks/{id}/start")]
pub async fn start(
    _auth: Authed,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    reply(state.tasks.send(StartTask { id: id.clone() }).await)?;
    Ok(HttpResponse::Accepted().json(json!({"id": id, "status": "pending"})))
}

/// Stop a task; a model call in flight is cancelled.
#[utoipa::path(tag = "tasks", security(("session" = [])), responses((status = 202), (status = 404, body = crate::error::ErrorBody)))]
#[post("/tasks/{id}/stop")]
pub async fn stop(
    _auth: Authed,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    reply(state.tasks.send(StopTask { id: id.clone() }).await)?;
    Ok(HttpResponse::Accepted().json(json!({"id": id, "stopping": true})))
}

/// The task's prompt (Markdown).
#[utoipa::path(tag = "tasks", security(("session" = [])), responses((status = 200, content_type = "text/markdown"), (status = 404, body = crate::error::ErrorBody)))]
#[get("/tasks/{id}/prompt")]
pub async fn prompt(
    _auth: Authed,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let task = existing(&state, &id).await?;
    Ok(HttpResponse::Ok()
        .content_type("text/markdown; charset=utf-8")
        .body(task.prompt))
}

/// The task's accumulated output so far (Markdown), also while it runs.
#[utoipa::path(tag = "tasks", security(("session" = [])), responses((status = 200, content_type = "text/markdown"), (status = 404, body = crate::error::ErrorBody)))]
#[get("/tasks/{id}/output")]
pub async fn output(
    _auth: Authed,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let task = existing(&state, &id).await?;
    Ok(HttpResponse::Ok()
        .content_type("text/markdown; charset=utf-8")
        .body(task.output))
}

/// Stop (if running) and delete a task with its iterations and files.
#[utoipa::path(tag = "tasks", security(("session" = [])), responses((status = 204), (status = 404, body = crate::error::ErrorBody)))]
#[delete("/tasks/{id}")]
pub async fn remove(
    _auth: Authed,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    reply(
        state
            .tasks
            .send(DeleteTask {
                id: id.into_inner(),
            })
            .await,
    )?;
    Ok(HttpResponse::NoContent().finish())
}
