//! Agent runs end to end against the Messages API stand-in: sync and async invoke, history,
//! the tool loop with http_request and its SSRF guard, retries and failures.

use std::time::Duration;

use awc::http::StatusCode;
use loop_gateway_stand_ins::{HttpTarget, MessagesApi, Reply};
use serde_json::json;

use crate::common::{Events, TestServer};

#[actix_rt::test]
async fn sync_invoke_answers_with_the_reply_and_records_the_run() {
    let llm = MessagesApi::start();
    let s = TestServer::with_llm(&llm.url, &[]);
    let (session, token) = s.ready_webhook().await;

    let r = s
        .invoke(
            &token,
            json!({"message": "hello there", "sync": true, "metadata": {"ticket": 7}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["reply"], "You said: hello there");
    assert_eq!(r.body["status"], "complete");
    assert_eq!(r.body["stopReason"], "end_turn");
    assert!(r.body["usage"]["inputTokens"].as_u64().unwrap() > 0);
    assert!(r.body["usage"]["costMicros"].as_i64().unwrap() > 0);

    // What the stand-in received is what Anthropic's docs ask for.
    let req = &llm.requests()[0];
    assert_eq!(req.path, "/v1/messages");
    assert_eq!(req.header("x-api-key"), Some("sk-ant-test-key-0123456789"));
    assert_eq!(req.header("anthropic-version"), Some("2023-06-01"));
    let body = req.json();
    assert_eq!(body["model"], "claude-sonnet-4-5");
    assert_eq!(body["stream"], true);
    assert!(body["system"].as_str().unwrap().contains("helpful"));
    assert_eq!(body["messages"][0]["content"][0]["text"], "hello there");
    assert_eq!(body["tools"][0]["name"], "http_request");

    let run_id = r.body["runId"].as_str().unwrap();
    let run = s.get(&format!("/api/runs/{run_id}"), Some(&session)).await;
    assert_eq!(run.status, StatusCode::OK);
    assert_eq!(run.body["status"], "complete");
    assert_eq!(run.body["source"], "webhook");
    assert_eq!(run.body["output"], "You said: hello there");
    assert_eq!(run.body["llmCallsDetail"].as_array().unwrap().len(), 1);
    assert_eq!(run.body["llmCallsDetail"][0]["status"], "ok");
    let list = s
        .get("/api/runs?status=complete&source=webhook", Some(&session))
        .await;
    assert_eq!(list.body["total"], 1);
    assert_eq!(
        s.get("/api/runs/no-such-run", Some(&session)).await.status,
        StatusCode::NOT_FOUND
    );
}

#[actix_rt::test]
async fn async_invoke_answers_202_and_the_result_arrives_as_events() {
    let llm = MessagesApi::start();
    let s = TestServer::with_llm(&llm.url, &[("LLM_STREAMING", "false")]);
    let (session, token) = s.ready_webhook().await;
    let mut events = Events::connect(&s, &session).await;

    let r = s.invoke(&token, json!({"message": "later please"})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let run_id = r.body["runId"].as_str().unwrap().to_string();
    let start = events
        .wait_for("agent:run:start", Duration::from_secs(10), |p| {
            p["runId"] == run_id.as_str()
        })
        .await;
    assert_eq!(start["payload"]["source"], "webhook");
    let done = events
        .wait_for("agent:run:complete", Duration::from_secs(10), |p| {
            p["runId"] == run_id.as_str()
        })
        .await;
    assert_eq!(done["payload"]["output"], "You said: later please");
    assert!(done["payload"]["metadata"]["webhookId"].is_string());
    // Non-streaming mode was used.
    assert!(llm.requests()[0].json().get("stream").is_none());
}

#[actix_rt::test]
async fn a_conversation_continues_with_its_history() {
    let llm = MessagesApi::start();
    let s = TestServer::with_llm(&llm.url, &[]);
    let (_, token) = s.ready_webhook().await;
    for text in ["first", "second"] {
        let r = s
            .invoke(
                &token,
                json!({"message": text, "sync": true, "conversationId": "chat-42"}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.body["conversationId"], "chat-42");
    }
    let second = llm.requests()[1].json();
    let messages = second["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 3, "{second}");
    assert_eq!(messages[0]["content"][0]["text"], "first");
    assert_eq!(messages[1]["role"], "assistant");
    assert_eq!(messages[1]["content"][0]["text"], "You said: first");
    assert_eq!(messages[2]["content"][0]["text"], "second");
    // Another conversation starts empty.
    s.invoke(&token, json!({"message": "other", "sync": true}))
        .await;
    assert_eq!(
        llm.requests()[2].json()["messages"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[actix_rt::test]
async fn a_webhook_cannot_continue_another_webhooks_conversation() {
    let llm = MessagesApi::start();
    let s = TestServer::with_llm(&llm.url, &[]);
    let (session, mine) = s.ready_webhook().await;
    let (_, theirs, _) = s
        .create_webhook(&session, json!({"name": "other", "platform": "generic"}))
        .await;
    let r = s
        .invoke(
            &mine,
            json!({"message": "my secret", "sync": true, "conversationId": "user-1"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);

    // The other webhook picks the same id: refused, its model never sees the history.
    let r = s
        .invoke(
            &theirs,
            json!({"message": "what did I say?", "sync": true, "conversationId": "user-1"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    assert_eq!(
        r.body["error"]["code"], "conversation_not_found",
        "{}",
        r.body
    );
    assert!(!r.body.to_string().contains("secret"), "{}", r.body);
    assert_eq!(llm.request_count(), 1);

    // The owner continues it; the refused turn was not added to it.
    let r = s
        .invoke(
            &mine,
            json!({"message": "again", "sync": true, "conversationId": "user-1"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let messages = llm.requests()[1].json()["messages"].clone();
    assert_eq!(messages.as_array().unwrap().len(), 3, "{messages}");
    assert_eq!(messages[0]["content"][0]["text"], "my secret");
}

#[actix_rt::test]
async fn the_tool_loop_calls_an_allowed_local_service() {
    let llm = MessagesApi::start();
    let target = HttpTarget::start();
    let s = TestServer::with_llm(&llm.url, &[("HTTP_REQUEST_ALLOW", "127.0.0.1")]);
    let (session, token) = s.ready_webhook().await;
    // One turn asks for two tools at once; then the stand-in echoes the first result.
    llm.push(Reply::Tools(vec![
        (
            "http_request".into(),
            json!({"url": format!("{}/json", target.url)}),
        ),
        (
            "http_request".into(),
            json!({"url": format!("{}/echo", target.url), "method": "POST", "body": {"a": 1}}),
        ),
    ]));
    let r = s
        .invoke(&token, json!({"message": "weather?", "sync": true}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(
        r.body["reply"].as_str().unwrap().contains("sunny"),
        "{}",
        r.body
    );
    assert_eq!(r.body["usage"]["llmCalls"], 2);
    assert_eq!(target.requests().len(), 2);

    let run = s
        .get(
            &format!("/api/runs/{}", r.body["runId"].as_str().unwrap()),
            Some(&session),
        )
        .await;
    let calls = run.body["toolCalls"].as_array().unwrap();
    assert_eq!(calls.len(), 2);
    assert!(calls.iter().all(|c| c["isError"] == false), "{calls:?}");
    // The second model call carried both results, in order.
    let second = llm.requests()[1].json();
    let results = &second["messages"][2]["content"];
    assert_eq!(results.as_array().unwrap().len(), 2);
    assert!(results[1]["content"]
        .as_str()
        .unwrap()
        .contains("\"method\":\"POST\""));
}

#[actix_rt::test]
async fn the_ssrf_guard_refuses_private_targets_and_redirects() {
    let llm = MessagesApi::start();
    let target = HttpTarget::start();
    // Only 127.0.0.1 is allowed: 127.0.0.2 (loopback), metadata and private ranges are not.
    let s = TestServer::with_llm(&llm.url, &[("HTTP_REQUEST_ALLOW", "127.0.0.1/32")]);
    let (session, token) = s.ready_webhook().await;
    let port = target.url.rsplit(':').next().unwrap().to_string();
    let cases = [
        format!("http://127.0.0.2:{port}/text"),
        "http://169.254.169.254/latest/meta-data/".to_string(),
        "http://[::ffff:10.0.0.1]/".to_string(),
        format!(
            "{}/redirect?to=http://169.254.169.254/latest/meta-data/",
            target.url
        ),
        format!("{}/redirect?to=http://127.0.0.2:{port}/text", target.url),
        "file:///etc/passwd".to_string(),
    ];
    llm.push(Reply::Tools(
        cases
            .iter()
            .map(|u| ("http_request".to_string(), json!({"url": u})))
            .collect(),
    ));
    let r = s
        .invoke(&token, json!({"message": "fetch", "sync": true}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let run = s
        .get(
            &format!("/api/runs/{}", r.body["runId"].as_str().unwrap()),
            Some(&session),
        )
        .await;
    let calls = run.body["toolCalls"].as_array().unwrap();
    assert_eq!(calls.len(), cases.len());
    // The calls ran concurrently: match records to cases by their input.
    for url in &cases {
        let call = calls
            .iter()
            .find(|c| c["input"]["url"] == url.as_str())
            .unwrap_or_else(|| panic!("no record for {url}"));
        assert_eq!(call["isError"], true, "{url}: {call}");
        assert!(
            call["output"].as_str().unwrap().contains("refused"),
            "{url}: {call}"
        );
    }
    // Only the two allowed redirect hops reached the target; nothing was fetched past them.
    let paths: Vec<String> = target.requests().iter().map(|r| r.path.clone()).collect();
    assert!(
        paths.iter().all(|p| p.starts_with("/redirect")),
        "{paths:?}"
    );

    // Without an allow list, a name that resolves to loopback is refused after resolution.
    let strict = TestServer::with_llm(&llm.url, &[]);
    let (session, token) = strict.ready_webhook().await;
    llm.push(Reply::tool(
        "http_request",
        json!({"url": format!("http://localhost:{port}/text")}),
    ));
    let r = strict
        .invoke(&token, json!({"message": "fetch", "sync": true}))
        .await;
    let run = strict
        .get(
            &format!("/api/runs/{}", r.body["runId"].as_str().unwrap()),
            Some(&session),
        )
        .await;
    let call = &run.body["toolCalls"][0];
    assert_eq!(call["isError"], true, "{call}");
    assert!(
        call["output"]
            .as_str()
            .unwrap()
            .contains("refused: localhost resolves only"),
        "{call}"
    );
    assert!(target
        .requests()
        .iter()
        .all(|r| r.path.starts_with("/redirect")));
}

#[actix_rt::test]
async fn bad_tool_input_is_a_tool_error_the_model_sees() {
    let llm = MessagesApi::start();
    let s = TestServer::with_llm(&llm.url, &[]);
    let (_, token) = s.ready_webhook().await;
    llm.push(Reply::tool(
        "http_request",
        json!({"url": 42, "extra": true}),
    ));
    llm.push(Reply::tool("no_such_tool", json!({})));
    let r = s
        .invoke(&token, json!({"message": "go", "sync": true}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let reqs = llm.requests();
    let first = &reqs[1].json()["messages"][2]["content"][0];
    assert_eq!(first["is_error"], true);
    assert!(
        first["content"].as_str().unwrap().contains("invalid input"),
        "{first}"
    );
    let second = &reqs[2].json()["messages"][4]["content"][0];
    assert!(
        second["content"]
            .as_str()
            .unwrap()
            .contains("no tool named"),
        "{second}"
    );
}

#[actix_rt::test]
async fn rate_limits_and_overload_are_retried() {
    let llm = MessagesApi::start();
    let s = TestServer::with_llm(&llm.url, &[]);
    let (session, token) = s.ready_webhook().await;
    llm.push(Reply::rate_limited(0));
    llm.push(Reply::overloaded());
    llm.push(Reply::Error {
        status: 500,
        kind: "api_error".into(),
        message: "Internal server error".into(),
        retry_after: None,
    });
    let r = s
        .invoke(&token, json!({"message": "persist", "sync": true}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(llm.request_count(), 4);
    let run = s
        .get(
            &format!("/api/runs/{}", r.body["runId"].as_str().unwrap()),
            Some(&session),
        )
        .await;
    let statuses: Vec<&str> = run.body["llmCallsDetail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["error", "error", "error", "ok"]);
}

#[actix_rt::test]
async fn persistent_overload_fails_cleanly_with_503() {
    let llm = MessagesApi::start();
    let s = TestServer::with_llm(&llm.url, &[("LLM_MAX_RETRIES", "2")]);
    let (session, token) = s.ready_webhook().await;
    for _ in 0..3 {
        llm.push(Reply::overloaded());
    }
    let r = s
        .invoke(&token, json!({"message": "anyone?", "sync": true}))
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
    assert_eq!(r.error_code(), "llm_overloaded");
    assert!(r.header("retry-after").is_some());
    let run_id = r.body["error"]["runId"].as_str().unwrap();
    assert_eq!(llm.request_count(), 3);
    let run = s.get(&format!("/api/runs/{run_id}"), Some(&session)).await;
    assert_eq!(run.body["status"], "error");
    assert_eq!(run.body["errorCode"], "llm_overloaded");
    assert!(run.body["output"].is_null());

    // An overload announced mid-stream is treated the same way.
    llm.push(Reply::StreamError {
        kind: "overloaded_error".into(),
        message: "Overloaded".into(),
    });
    let r = s
        .invoke(&token, json!({"message": "again", "sync": true}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "one retry fixes it: {}", r.body);
}

#[actix_rt::test]
async fn a_rejected_key_is_not_retried_and_reaches_the_caller() {
    let llm = MessagesApi::start();
    let s = TestServer::with_llm(&llm.url, &[]);
    let (_, token) = s.ready_webhook().await;
    llm.push(Reply::unauthorized());
    let r = s
        .invoke(&token, json!({"message": "hi", "sync": true}))
        .await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{}", r.body);
    assert_eq!(r.error_code(), "llm_auth_failed");
    assert!(r.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("invalid x-api-key"));
    assert_eq!(llm.request_count(), 1);
}

#[actix_rt::test]
async fn max_tokens_and_the_iteration_cap_are_reported() {
    let llm = MessagesApi::start();
    let s = TestServer::with_llm(&llm.url, &[]);
    let (_, token) = s.ready_webhook().await;
    llm.push(Reply::MaxTokens("a long answer that was cut".into()));
    let r = s
        .invoke(&token, json!({"message": "essay", "sync": true}))
        .await;
    assert_eq!(r.body["stopReason"], "max_tokens");
    assert_eq!(r.body["reply"], "a long answer that was cut");

    // The model keeps asking for a tool that fails; the cap ends the run without an answer.
    for _ in 0..3 {
        llm.push(Reply::tool("no_such_tool", json!({})));
    }
    let r = s
        .invoke(
            &token,
            json!({"message": "loop", "sync": true, "maxIterations": 2}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{}", r.body);
    assert_eq!(r.error_code(), "iteration_cap");
}

#[actix_rt::test]
async fn hundreds_of_slow_runs_overlap() {
    let llm = MessagesApi::start_with_workers(2);
    llm.set_delay(Duration::from_millis(800));
    llm.set_recording(false);
    let s = TestServer::with_llm(&llm.url, &[("WEBHOOK_RATE_LIMIT_PER_MINUTE", "100000")]);
    let (session, token) = s.ready_webhook().await;
    let n = 300;
    let calls = (0..n).map(|i| {
        let s = &s;
        let token = token.clone();
        async move {
            s.invoke(&token, json!({"message": format!("m{i}"), "sync": true}))
                .await
        }
    });
    let replies = futures_util::future::join_all(calls).await;
    assert!(replies.iter().all(|r| r.status == StatusCode::OK));
    // Observable overlap: the stand-in had (nearly) all of them in flight at once.
    assert!(
        llm.max_in_flight() >= n * 9 / 10,
        "max in flight {}",
        llm.max_in_flight()
    );
    assert_eq!(
        s.get("/api/runs?status=complete", Some(&session))
            .await
            .body["total"],
        n
    );
}

#[actix_rt::test]
async fn a_full_queue_answers_503_and_queued_runs_finish() {
    let llm = MessagesApi::start();
    llm.set_delay(Duration::from_millis(300));
    let s = TestServer::with_llm(
        &llm.url,
        &[("MAX_CONCURRENT_RUNS", "1"), ("RUN_QUEUE_SIZE", "1")],
    );
    let (session, token) = s.ready_webhook().await;
    let mut events = Events::connect(&s, &session).await;
    let first = s.invoke(&token, json!({"message": "1"})).await;
    let second = s.invoke(&token, json!({"message": "2"})).await;
    let third = s.invoke(&token, json!({"message": "3"})).await;
    assert_eq!(first.body["status"], "running");
    assert_eq!(second.body["status"], "queued");
    assert_eq!(
        third.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        third.body
    );
    assert!(third.header("retry-after").is_some());
    let queued_id = second.body["runId"].as_str().unwrap().to_string();
    events
        .wait_for("agent:run:complete", Duration::from_secs(10), |p| {
            p["runId"] == queued_id.as_str()
        })
        .await;
}

#[actix_rt::test]
async fn concurrent_runs_never_exceed_the_limit() {
    let llm = MessagesApi::start();
    llm.set_delay(Duration::from_millis(200));
    let s = TestServer::with_llm(
        &llm.url,
        &[("MAX_CONCURRENT_RUNS", "3"), ("RUN_QUEUE_SIZE", "100")],
    );
    let (_, token) = s.ready_webhook().await;
    // Twenty callers at once, on every worker thread: each takes a slot or joins the queue.
    let calls =
        (0..20).map(|i| s.invoke(&token, json!({"message": format!("m{i}"), "sync": true})));
    let answers = futures_util::future::join_all(calls).await;
    for a in &answers {
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    }
    assert_eq!(llm.request_count(), 20);
    assert!(
        llm.max_in_flight() <= 3,
        "{} in flight",
        llm.max_in_flight()
    );
    assert_eq!(llm.max_in_flight(), 3, "the limit is used");
}
