//! Human approval of risky tool calls: rules with defaults, runs that wait for a decision,
//! reject and timeout paths, double decisions, restarts, auto-approval, events and webhooks.

use std::time::Duration;

use awc::http::StatusCode;
use loop_gateway_stand_ins::{HttpTarget, MessagesApi, Receiver, Reply};
use serde_json::{json, Value};

use crate::common::{Events, TestServer};

async fn require_for_http(s: &TestServer, session: &str, extra: Value) {
    let mut rule =
        json!({"toolName": "http_request", "riskLevel": "high", "requireApproval": true});
    for (k, v) in extra.as_object().unwrap() {
        rule[k] = v.clone();
    }
    let r = s.post("/api/approval-rules", rule, Some(session)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

#[actix_rt::test]
async fn rules_have_conservative_defaults_and_validate() {
    let s = TestServer::start();
    let session = s.setup().await;
    let rules = s.get("/api/approval-rules", Some(&session)).await;
    let http = &rules.body["items"][0];
    assert_eq!(http["toolName"], "http_request");
    assert_eq!(http["riskLevel"], "medium");
    assert_eq!(http["requireApproval"], false);
    assert_eq!(http["timeoutAction"], "reject");
    assert_eq!(http["source"], "default");

    require_for_http(&s, &session, json!({"timeoutSeconds": 30})).await;
    let rules = s.get("/api/approval-rules", Some(&session)).await;
    assert_eq!(rules.body["items"][0]["source"], "custom");
    assert_eq!(rules.body["items"][0]["timeoutSeconds"], 30);

    for (bad, status) in [
        (
            json!({"toolName": "nope", "riskLevel": "low", "requireApproval": false}),
            StatusCode::NOT_FOUND,
        ),
        (
            json!({"toolName": "http_request", "riskLevel": "extreme", "requireApproval": true}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"toolName": "http_request", "riskLevel": "critical", "requireApproval": false}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"toolName": "http_request", "riskLevel": "high", "requireApproval": true, "timeoutSeconds": 0}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"toolName": "http_request", "riskLevel": "high", "requireApproval": true, "timeoutAction": "shrug"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"toolName": "http_request", "riskLevel": "high", "requireApproval": true, "autoApprove": {"always": true}}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ] {
        let r = s
            .post("/api/approval-rules", bad.clone(), Some(&session))
            .await;
        assert_eq!(r.status, status, "{bad}: {}", r.body);
    }
    let back = s
        .delete("/api/approval-rules/http_request", Some(&session))
        .await;
    assert_eq!(back.status, StatusCode::OK);
    assert_eq!(back.body["source"], "default");
    assert_eq!(
        s.delete("/api/approval-rules/http_request", Some(&session))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

/// A gateway whose http_request needs approval, a model that calls it once, and a target.
struct Scene {
    llm: MessagesApi,
    target: HttpTarget,
    s: TestServer,
    session: String,
    token: String,
}

async fn scene(rule: Value, env: &[(&str, &str)]) -> Scene {
    let llm = MessagesApi::start();
    let target = HttpTarget::start();
    let mut all = vec![("HTTP_REQUEST_ALLOW", "127.0.0.1")];
    all.extend_from_slice(env);
    let s = TestServer::with_llm(&llm.url, &all);
    let (session, token) = s.ready_webhook().await;
    require_for_http(&s, &session, rule).await;
    llm.push(Reply::tool(
        "http_request",
        json!({"url": format!("{}/json", target.url)}),
    ));
    Scene {
        llm,
        target,
        s,
        session,
        token,
    }
}

#[actix_rt::test]
async fn a_run_waits_for_approval_and_resumes() {
    let Scene {
        llm,
        target,
        s,
        session,
        token,
    } = scene(json!({}), &[]).await;
    let mut events = Events::connect(&s, &session).await;
    let r = s.invoke(&token, json!({"message": "weather?"})).await;
    let run_id = r.body["runId"].as_str().unwrap().to_string();
    let required = events
        .wait_for("approval:required", Duration::from_secs(10), |_| true)
        .await;
    let id = required["payload"]["approvalId"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(required["payload"]["toolName"], "http_request");
    assert_eq!(required["payload"]["riskLevel"], "high");
    assert!(required["payload"]["input"]["url"]
        .as_str()
        .unwrap()
        .ends_with("/json"));
    assert!(
        target.requests().is_empty(),
        "nothing runs before the decision"
    );
    assert_eq!(
        s.get(&format!("/api/runs/{run_id}"), Some(&session))
            .await
            .body["status"],
        "awaiting_approval"
    );
    assert_eq!(
        s.get("/api/approvals?status=pending", Some(&session))
            .await
            .body["total"],
        1
    );

    let ok = s
        .post(
            &format!("/api/approvals/{id}/approve"),
            json!({"reason": "fine"}),
            Some(&session),
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert_eq!(ok.body["decidedBy"], "admin");
    let resolved = events
        .wait_for("approval:resolved", Duration::from_secs(10), |p| {
            p["approvalId"] == id.as_str()
        })
        .await;
    assert_eq!(resolved["payload"]["allowed"], true);
    let done = events
        .wait_for("agent:run:complete", Duration::from_secs(10), |p| {
            p["runId"] == run_id.as_str()
        })
        .await;
    assert!(done["payload"]["output"]
        .as_str()
        .unwrap()
        .contains("sunny"));
    assert_eq!(target.requests().len(), 1);

    // A second decision changes nothing.
    let again = s
        .post(
            &format!("/api/approvals/{id}/reject"),
            json!({}),
            Some(&session),
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    let one = s.get(&format!("/api/approvals/{id}"), Some(&session)).await;
    assert_eq!(one.body["status"], "approved");
    assert_eq!(one.body["decisionReason"], "fine");
    let of_run = s
        .get(&format!("/api/approvals/run/{run_id}"), Some(&session))
        .await;
    assert_eq!(of_run.body["total"], 1);
    let stats = s.get("/api/approvals/stats", Some(&session)).await;
    assert_eq!(stats.body["approved"], 1);
    assert_eq!(llm.request_count(), 2);
}

#[actix_rt::test]
async fn a_rejection_reaches_the_model_as_a_tool_error() {
    let Scene {
        llm,
        target,
        s,
        session,
        token,
    } = scene(json!({}), &[]).await;
    let mut events = Events::connect(&s, &session).await;
    let r = s.invoke(&token, json!({"message": "weather?"})).await;
    let run_id = r.body["runId"].as_str().unwrap().to_string();
    let required = events
        .wait_for("approval:required", Duration::from_secs(10), |_| true)
        .await;
    let id = required["payload"]["approvalId"].as_str().unwrap();
    let no = s
        .post(
            &format!("/api/approvals/{id}/reject"),
            json!({"reason": "not today"}),
            Some(&session),
        )
        .await;
    assert_eq!(no.status, StatusCode::OK);
    events
        .wait_for("agent:run:complete", Duration::from_secs(10), |p| {
            p["runId"] == run_id.as_str()
        })
        .await;
    assert!(target.requests().is_empty());
    let result = &llm.requests()[1].json()["messages"][2]["content"][0];
    assert_eq!(result["is_error"], true);
    assert!(
        result["content"].as_str().unwrap().contains("rejected")
            && result["content"].as_str().unwrap().contains("not today")
    );
}

#[actix_rt::test]
async fn a_timeout_applies_its_action() {
    let Scene {
        llm,
        target,
        s,
        session,
        token,
    } = scene(json!({"timeoutSeconds": 1}), &[]).await;
    let r = s
        .invoke(&token, json!({"message": "weather?", "sync": true}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(target.requests().is_empty());
    let result = &llm.requests()[1].json()["messages"][2]["content"][0];
    assert!(
        result["content"].as_str().unwrap().contains("in time"),
        "{result}"
    );
    let list = s.get("/api/approvals?status=expired", Some(&session)).await;
    assert_eq!(list.body["total"], 1);
    assert_eq!(list.body["items"][0]["decidedBy"], "timeout");
}

#[actix_rt::test]
async fn auto_approve_lets_matching_calls_through() {
    let Scene {
        llm,
        target,
        s,
        session,
        token,
    } = scene(json!({"autoApprove": {"urlHostIn": ["127.0.0.1"]}}), &[]).await;
    let r = s
        .invoke(&token, json!({"message": "weather?", "sync": true}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(target.requests().len(), 1);
    assert_eq!(
        s.get("/api/approvals", Some(&session)).await.body["total"],
        0
    );

    // A host the conditions do not list still needs a person.
    let mut events = Events::connect(&s, &session).await;
    let port = target.url.rsplit(':').next().unwrap().to_string();
    llm.push(Reply::tool(
        "http_request",
        json!({"url": format!("http://localhost:{port}/json")}),
    ));
    s.invoke(&token, json!({"message": "again"})).await;
    let required = events
        .wait_for("approval:required", Duration::from_secs(10), |_| true)
        .await;
    assert!(required["payload"]["input"]["url"]
        .as_str()
        .unwrap()
        .contains("localhost"));
}

#[actix_rt::test]
async fn pending_approvals_survive_a_restart_and_expire_during_downtime() {
    let receiver = Receiver::start(0);
    let Scene {
        mut s,
        session,
        token,
        ..
    } = scene(json!({"timeoutSeconds": 3600}), &[]).await;
    let (_, _, _) = s
        .create_webhook(&session, json!({"name": "ops", "events": ["approval:required", "approval:resolved"], "targetUrl": receiver.url}))
        .await;
    let mut events = Events::connect(&s, &session).await;
    s.invoke(&token, json!({"message": "weather?"})).await;
    let required = events
        .wait_for("approval:required", Duration::from_secs(10), |_| true)
        .await;
    let id = required["payload"]["approvalId"]
        .as_str()
        .unwrap()
        .to_string();
    // The signed webhook delivery of the same event.
    let delivered = receiver
        .wait_for(Duration::from_secs(10), |d| !d.is_empty())
        .await;
    assert_eq!(delivered[0].json()["event"], "approval:required");
    drop(events);

    s.restart();
    let session = s.login_token().await;
    let pending = s.get(&format!("/api/approvals/{id}"), Some(&session)).await;
    assert_eq!(pending.body["status"], "pending");
    let ok = s
        .post(
            &format!("/api/approvals/{id}/approve"),
            json!({}),
            Some(&session),
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    // The run could not wait across the restart: it is marked, not left hanging.
    let run_id = pending.body["runId"].as_str().unwrap();
    assert_eq!(
        s.get(&format!("/api/runs/{run_id}"), Some(&session))
            .await
            .body["status"],
        "interrupted"
    );
    receiver
        .wait_for(Duration::from_secs(10), |d| {
            d.iter().any(|x| x.json()["event"] == "approval:resolved")
        })
        .await;

    // A request whose time ran out while the gateway was down is resolved at start.
    {
        let conn = rusqlite::Connection::open(s.db_path()).unwrap();
        conn.busy_timeout(Duration::from_secs(5)).unwrap();
        conn.execute(
            "INSERT INTO approvals (id, tool_use_id, tool_name, input, risk_level, status,
                                    timeout_action, created_at, expires_at)
             VALUES ('old', 't', 'http_request', '{}', 'high', 'pending', 'reject', 1, 2)",
            [],
        )
        .unwrap();
    }
    s.restart();
    let session = s.login_token().await;
    let mut events = Events::connect(&s, &session).await;
    if s.get("/api/approvals/old", Some(&session)).await.body["status"] == "pending" {
        events
            .wait_for("approval:resolved", Duration::from_secs(10), |p| {
                p["approvalId"] == "old"
            })
            .await;
    }
    crate::common::eventually(
        Duration::from_secs(5),
        "the expired request recorded",
        || async { s.get("/api/approvals/old", Some(&session)).await.body["status"] == "expired" },
    )
    .await;
}

#[actix_rt::test]
async fn two_calls_of_one_turn_are_decided_separately() {
    let llm = MessagesApi::start();
    let target = HttpTarget::start();
    let s = TestServer::with_llm(&llm.url, &[("HTTP_REQUEST_ALLOW", "127.0.0.1")]);
    let (session, token) = s.ready_webhook().await;
    require_for_http(&s, &session, json!({})).await;
    llm.push(Reply::Tools(vec![
        (
            "http_request".into(),
            json!({"url": format!("{}/json?first", target.url)}),
        ),
        (
            "http_request".into(),
            json!({"url": format!("{}/json?second", target.url)}),
        ),
    ]));
    let mut events = Events::connect(&s, &session).await;
    let r = s.invoke(&token, json!({"message": "both?"})).await;
    let run_id = r.body["runId"].as_str().unwrap().to_string();
    let mut ids = std::collections::HashMap::new();
    for _ in 0..2 {
        let ev = events
            .wait_for("approval:required", Duration::from_secs(10), |_| true)
            .await;
        let url = ev["payload"]["input"]["url"].as_str().unwrap().to_string();
        ids.insert(
            if url.ends_with("first") {
                "first"
            } else {
                "second"
            },
            ev["payload"]["approvalId"].as_str().unwrap().to_string(),
        );
    }
    assert_eq!(ids.len(), 2, "one request per call");
    let yes = s
        .post(
            &format!("/api/approvals/{}/approve", ids["first"]),
            json!({}),
            Some(&session),
        )
        .await;
    assert_eq!(yes.status, StatusCode::OK);
    let no = s
        .post(
            &format!("/api/approvals/{}/reject", ids["second"]),
            json!({"reason": "only one"}),
            Some(&session),
        )
        .await;
    assert_eq!(no.status, StatusCode::OK);
    events
        .wait_for("agent:run:complete", Duration::from_secs(10), |p| {
            p["runId"] == run_id.as_str()
        })
        .await;
    let made: Vec<String> = target.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(made.len(), 1, "{made:?}");
    let results = &llm.requests()[1].json()["messages"][2]["content"];
    let errors: Vec<bool> = results
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["is_error"] == true)
        .collect();
    assert_eq!(errors, vec![false, true], "{results}");
}
