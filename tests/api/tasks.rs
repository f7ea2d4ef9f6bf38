//! Loop tasks: iterations that build on their output until the signal, the cap, a stop, a
//! budget or a crash; files under the data directory; events; the webhook route.

use std::time::Duration;

use awc::http::StatusCode;
use loop_gateway_stand_ins::{MessagesApi, Reply};
use serde_json::{json, Value};

use crate::common::{client, Events, TestServer};

async fn create(s: &TestServer, session: &str, body: Value) -> Value {
    let r = s.post("/api/tasks", body, Some(session)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    r.body
}

async fn text(s: &TestServer, path: &str, session: &str) -> String {
    let mut res = client(None)
        .get(s.url(path))
        .bearer_auth(session)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    String::from_utf8_lossy(&res.body().await.unwrap()).into_owned()
}

#[actix_rt::test]
async fn a_task_completes_on_its_signal_with_its_output_accumulated() {
    let llm = MessagesApi::start();
    let s = TestServer::with_llm(&llm.url, &[]);
    let session = s.setup().await;
    let mut events = Events::connect(&s, &session).await;
    llm.push(Reply::Text("Plan: three steps.".into()));
    llm.push(Reply::Text("Built steps one and two.".into()));
    llm.push(Reply::Text("Refined. TASK_COMPLETE".into()));
    let t = create(
        &s,
        &session,
        json!({"name": "essay", "prompt": "Write an essay.", "maxIterations": 5}),
    )
    .await;
    let id = t["id"].as_str().unwrap().to_string();
    for i in 1..=3 {
        let ev = events
            .wait_for("task:iteration", Duration::from_secs(10), |p| {
                p["taskId"] == id.as_str()
            })
            .await;
        assert_eq!(ev["payload"]["iteration"], i);
    }
    let done = events
        .wait_for("task:complete", Duration::from_secs(10), |p| {
            p["taskId"] == id.as_str()
        })
        .await;
    assert_eq!(done["payload"]["stopReason"], "signal");
    assert_eq!(done["payload"]["iterations"], 3);
    assert_eq!(llm.request_count(), 3);

    // Each iteration saw the output so far.
    let third = llm.requests()[2].json();
    let input = third["messages"][0]["content"][0]["text"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(input.starts_with("Write an essay."), "{input}");
    assert!(input.contains("Iteration 3 of at most 5"));
    assert!(input.contains("Plan: three steps.") && input.contains("Built steps one and two."));

    let task = s.get(&format!("/api/tasks/{id}"), Some(&session)).await;
    assert_eq!(task.body["status"], "complete");
    assert_eq!(task.body["currentIteration"], 3);
    assert_eq!(task.body["iterations"].as_array().unwrap().len(), 3);
    assert!(task.body["inputTokens"].as_i64().unwrap() > 0);
    let output = text(&s, &format!("/api/tasks/{id}/output"), &session).await;
    assert!(output.contains("## Iteration 1") && output.contains("TASK_COMPLETE"));
    assert_eq!(
        text(&s, &format!("/api/tasks/{id}/prompt"), &session).await,
        "Write an essay."
    );
    // The files, like the seed's.
    let dir = s.data_dir().join("tasks/essay");
    assert_eq!(
        std::fs::read_to_string(dir.join("PROMPT_essay.md")).unwrap(),
        "Write an essay."
    );
    assert!(std::fs::read_to_string(dir.join("output.md"))
        .unwrap()
        .contains("## Iteration 3"));
    let list = s.get("/api/tasks", Some(&session)).await;
    assert_eq!(list.body["items"][0]["name"], "essay");
    // Runs of a task are ordinary runs, recorded with their source.
    assert_eq!(
        s.get("/api/runs?source=task", Some(&session)).await.body["total"],
        3
    );
}

#[actix_rt::test]
async fn a_task_stops_at_max_iterations_and_can_be_started_again() {
    let llm = MessagesApi::start();
    let s = TestServer::with_llm(&llm.url, &[]);
    let session = s.setup().await;
    let mut events = Events::connect(&s, &session).await;
    // (The stand-in's default echo would repeat the instructions, signal included.)
    llm.push(Reply::Text("step".into()));
    llm.push(Reply::Text("another step".into()));
    let t = create(
        &s,
        &session,
        json!({"name": "endless", "prompt": "Go on.", "maxIterations": 2}),
    )
    .await;
    let id = t["id"].as_str().unwrap().to_string();
    let done = events
        .wait_for("task:complete", Duration::from_secs(10), |p| {
            p["taskId"] == id.as_str()
        })
        .await;
    assert_eq!(done["payload"]["stopReason"], "max_iterations");
    assert_eq!(llm.request_count(), 2);
    // Starting a finished task continues from its output; the cap still holds.
    let r = s
        .post(&format!("/api/tasks/{id}/start"), json!({}), Some(&session))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    events
        .wait_for("task:complete", Duration::from_secs(10), |p| {
            p["taskId"] == id.as_str()
        })
        .await;
    assert_eq!(llm.request_count(), 2, "no iterations past the cap");
}

#[actix_rt::test]
async fn stop_cancels_the_call_in_flight_promptly() {
    let llm = MessagesApi::start();
    llm.set_delay(Duration::from_secs(30));
    let s = TestServer::with_llm(&llm.url, &[]);
    let session = s.setup().await;
    let mut events = Events::connect(&s, &session).await;
    let t = create(
        &s,
        &session,
        json!({"name": "slow", "prompt": "Think hard."}),
    )
    .await;
    let id = t["id"].as_str().unwrap().to_string();
    events
        .wait_for("agent:run:start", Duration::from_secs(10), |p| {
            p["source"] == "task"
        })
        .await;
    let asked = std::time::Instant::now();
    let r = s
        .post(&format!("/api/tasks/{id}/stop"), json!({}), Some(&session))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let done = events
        .wait_for("task:complete", Duration::from_secs(5), |p| {
            p["taskId"] == id.as_str()
        })
        .await;
    assert_eq!(done["payload"]["stopReason"], "stopped");
    assert!(asked.elapsed() < Duration::from_secs(5));
    let task = s.get(&format!("/api/tasks/{id}"), Some(&session)).await;
    assert_eq!(task.body["status"], "stopped");
    assert_eq!(task.body["currentIteration"], 0);
    // Stopping twice, or an unknown task, is not an error / is a 404.
    assert_eq!(
        s.post(&format!("/api/tasks/{id}/stop"), json!({}), Some(&session))
            .await
            .status,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        s.post("/api/tasks/nope/stop", json!({}), Some(&session))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[actix_rt::test]
async fn output_is_visible_while_the_task_runs() {
    let llm = MessagesApi::start();
    let s = TestServer::with_llm(&llm.url, &[]);
    let session = s.setup().await;
    let mut events = Events::connect(&s, &session).await;
    llm.push(Reply::Text("first part".into()));
    llm.push(Reply::After(
        Duration::from_secs(30),
        Box::new(Reply::Text("never seen".into())),
    ));
    let t = create(&s, &session, json!({"name": "visible", "prompt": "Write."})).await;
    let id = t["id"].as_str().unwrap().to_string();
    events
        .wait_for("task:iteration", Duration::from_secs(10), |p| {
            p["taskId"] == id.as_str()
        })
        .await;
    // The event goes out once the iteration is recorded.
    let output = text(&s, &format!("/api/tasks/{id}/output"), &session).await;
    assert!(output.contains("first part"), "{output}");
    assert_eq!(
        s.get(&format!("/api/tasks/{id}"), Some(&session))
            .await
            .body["status"],
        "running"
    );
    assert_eq!(
        s.delete(&format!("/api/tasks/{id}"), Some(&session))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert!(!s.data_dir().join("tasks/visible").exists());
    assert_eq!(
        s.get(&format!("/api/tasks/{id}"), Some(&session))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[actix_rt::test]
async fn a_used_up_budget_ends_the_task() {
    let llm = MessagesApi::start();
    let s = TestServer::with_llm(&llm.url, &[("MAX_TOKENS", "300")]);
    let session = s.setup().await;
    let g = s
        .post(
            "/api/agent-groups",
            json!({"name": "small", "budgetMaxTokensDay": 900}),
            Some(&session),
        )
        .await;
    let mut events = Events::connect(&s, &session).await;
    for _ in 0..50 {
        llm.push(Reply::Text("more work, not done yet".into()));
    }
    let t = create(&s, &session, json!({"name": "spender", "prompt": "Keep going.", "maxIterations": 50, "groupId": g.body["id"]})).await;
    let id = t["id"].as_str().unwrap().to_string();
    let err = events
        .wait_for("task:error", Duration::from_secs(10), |p| {
            p["taskId"] == id.as_str()
        })
        .await;
    assert_eq!(err["payload"]["code"], "budget_exceeded");
    let task = s.get(&format!("/api/tasks/{id}"), Some(&session)).await;
    assert_eq!(task.body["status"], "error");
    assert_eq!(task.body["stopReason"], "budget_exceeded");
    assert!(task.body["currentIteration"].as_u64().unwrap() < 50);
}

#[actix_rt::test]
async fn a_task_killed_mid_iteration_continues_after_restart() {
    let llm = MessagesApi::start();
    let mut s = TestServer::with_llm(&llm.url, &[]);
    let session = s.setup().await;
    let mut events = Events::connect(&s, &session).await;
    llm.push(Reply::Text("one".into()));
    llm.push(Reply::Text("two".into()));
    llm.push(Reply::After(
        Duration::from_secs(60),
        Box::new(Reply::Text("lost".into())),
    ));
    let t = create(
        &s,
        &session,
        json!({"name": "durable", "prompt": "Work.", "maxIterations": 5}),
    )
    .await;
    let id = t["id"].as_str().unwrap().to_string();
    for _ in 0..2 {
        events
            .wait_for("task:iteration", Duration::from_secs(10), |p| {
                p["taskId"] == id.as_str()
            })
            .await;
    }
    // Iteration 3 is in flight (its model call hangs): the process dies.
    events
        .wait_for("agent:run:start", Duration::from_secs(10), |p| {
            p["source"] == "task"
        })
        .await;
    drop(events);
    s.kill();
    llm.push(Reply::Text("three, again".into()));
    llm.push(Reply::Text("four. TASK_COMPLETE".into()));
    s.restart_after_kill();
    let session = s.login_token().await;
    // The task resumes at start-up, maybe before anyone listens: subscribe, then look.
    let mut events = Events::connect(&s, &session).await;
    if s.get(&format!("/api/tasks/{id}"), Some(&session))
        .await
        .body["status"]
        != "complete"
    {
        events
            .wait_for("task:complete", Duration::from_secs(15), |p| {
                p["taskId"] == id.as_str()
            })
            .await;
    }
    let task = s.get(&format!("/api/tasks/{id}"), Some(&session)).await;
    assert_eq!(task.body["status"], "complete");
    assert_eq!(task.body["currentIteration"], 4);
    let its: Vec<(u64, String)> = task.body["iterations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["iteration"].as_u64().unwrap(),
                i["output"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        its,
        [
            (1, "one".into()),
            (2, "two".into()),
            (3, "three, again".into()),
            (4, "four. TASK_COMPLETE".into())
        ]
    );
}

#[actix_rt::test]
async fn tasks_can_be_marked_interrupted_instead() {
    let llm = MessagesApi::start();
    llm.set_delay(Duration::from_secs(60));
    let mut s = TestServer::with_llm(&llm.url, &[("TASK_ON_RESTART", "interrupt")]);
    let session = s.setup().await;
    let mut events = Events::connect(&s, &session).await;
    let t = create(&s, &session, json!({"name": "fragile", "prompt": "Work."})).await;
    events
        .wait_for("task:start", Duration::from_secs(10), |p| {
            p["taskId"] == t["id"]
        })
        .await;
    events
        .wait_for("agent:run:start", Duration::from_secs(10), |p| {
            p["source"] == "task"
        })
        .await;
    s.kill();
    s.restart_after_kill();
    let session = s.login_token().await;
    let task = s
        .get(
            &format!("/api/tasks/{}", t["id"].as_str().unwrap()),
            Some(&session),
        )
        .await;
    assert_eq!(task.body["status"], "interrupted");
}

#[actix_rt::test]
async fn bad_names_and_bodies_are_refused_and_write_nothing() {
    let s = TestServer::start();
    let session = s.setup().await;
    for bad in [
        json!({"name": "../escape", "prompt": "x"}),
        json!({"name": "a/b", "prompt": "x"}),
        json!({"name": ".hidden", "prompt": "x"}),
        json!({"name": "", "prompt": "x"}),
        json!({"name": "x".repeat(65), "prompt": "x"}),
        json!({"name": "ok", "prompt": ""}),
        json!({"name": "ok", "prompt": "x", "maxIterations": 0}),
        json!({"name": "ok", "prompt": "x", "groupId": "nope"}),
        json!({"name": "ok", "prompt": "x", "extra": 1}),
    ] {
        let r = s.post("/api/tasks", bad.clone(), Some(&session)).await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{bad}: {}",
            r.body
        );
    }
    assert!(!s.data_dir().join("tasks").exists() && !s.dir.path().join("escape").exists());
    assert_eq!(s.get("/api/tasks", Some(&session)).await.body["total"], 0);
}

#[actix_rt::test]
async fn the_webhook_route_creates_a_task() {
    let llm = MessagesApi::start();
    let s = TestServer::with_llm(&llm.url, &[]);
    let (session, token) = s.ready_webhook().await;
    let mut events = Events::connect(&s, &session).await;
    llm.push(Reply::Text("done TASK_COMPLETE".into()));
    let r = s
        .post(
            &format!("/webhook/task/{token}"),
            json!({"name": "from-n8n", "prompt": "Summarise."}),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let id = r.body["id"].as_str().unwrap().to_string();
    events
        .wait_for("task:complete", Duration::from_secs(10), |p| {
            p["taskId"] == id.as_str()
        })
        .await;
    let dup = s
        .post(
            &format!("/webhook/task/{token}"),
            json!({"name": "from-n8n", "prompt": "Again."}),
            None,
        )
        .await;
    assert_eq!(dup.status, StatusCode::CONFLICT);
    assert_eq!(
        s.post(
            "/webhook/task/bad",
            json!({"name": "x", "prompt": "y"}),
            None
        )
        .await
        .status,
        StatusCode::UNAUTHORIZED
    );
}

#[actix_rt::test]
async fn excess_tasks_wait_as_pending() {
    let llm = MessagesApi::start();
    let s = TestServer::with_llm(&llm.url, &[("MAX_CONCURRENT_TASKS", "1")]);
    let session = s.setup().await;
    let mut events = Events::connect(&s, &session).await;
    llm.push(Reply::After(
        Duration::from_secs(1),
        Box::new(Reply::Text("a TASK_COMPLETE".into())),
    ));
    llm.push(Reply::Text("b TASK_COMPLETE".into()));
    let first = create(&s, &session, json!({"name": "first", "prompt": "A"})).await;
    let second = create(&s, &session, json!({"name": "second", "prompt": "B"})).await;
    events
        .wait_for("task:start", Duration::from_secs(10), |p| {
            p["taskId"] == first["id"]
        })
        .await;
    let waiting = s
        .get(
            &format!("/api/tasks/{}", second["id"].as_str().unwrap()),
            Some(&session),
        )
        .await;
    assert_eq!(waiting.body["status"], "pending");
    events
        .wait_for("task:complete", Duration::from_secs(10), |p| {
            p["taskId"] == first["id"]
        })
        .await;
    events
        .wait_for("task:complete", Duration::from_secs(10), |p| {
            p["taskId"] == second["id"]
        })
        .await;
}
