//! The webhook platform: CRUD, token handling, inbound calls, signed outbound deliveries with
//! retries that survive a restart, and usage totals that add up.

use std::time::Duration;

use awc::http::StatusCode;
use hmac::{Hmac, Mac};
use loop_gateway_stand_ins::{MessagesApi, Receiver};
use serde_json::json;

use crate::common::TestServer;

#[actix_rt::test]
async fn webhook_crud_never_shows_secrets_again() {
    let s = TestServer::start();
    let session = s.setup().await;
    let created = s
        .post(
            "/api/webhooks",
            json!({"name": "n8n flow", "platform": "n8n", "events": ["agent:run:complete"],
                   "targetUrl": "http://127.0.0.1:9/hook"}),
            Some(&session),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let id = created.body["id"].as_str().unwrap().to_string();
    let token = created.body["token"].as_str().unwrap().to_string();
    assert_eq!(token.len(), 64);
    assert_eq!(created.body["tokenHint"], token[60..]);

    let listed = s.get("/api/webhooks", Some(&session)).await;
    assert_eq!(listed.body["total"], 1);
    let one = s.get(&format!("/api/webhooks/{id}"), Some(&session)).await;
    for body in [&listed.body, &one.body] {
        let text = body.to_string();
        assert!(!text.contains(&token), "token shown again");
        assert!(!text.contains("signingSecret"), "secret shown again");
    }

    let updated = s
        .put_json(
            &format!("/api/webhooks/{id}"),
            json!({"name": "renamed", "targetUrl": null}),
            &session,
        )
        .await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
    assert_eq!(updated.body["name"], "renamed");
    assert!(updated.body["targetUrl"].is_null());
    assert_eq!(updated.body["platform"], "n8n");

    // Rotation: the old token stops working at once.
    assert_eq!(
        s.get(&format!("/webhook/health/{token}"), None)
            .await
            .status,
        StatusCode::OK
    );
    let rotated = s
        .post(
            &format!("/api/webhooks/{id}/rotate"),
            json!({}),
            Some(&session),
        )
        .await;
    let new_token = rotated.body["token"].as_str().unwrap();
    assert_ne!(new_token, token);
    assert_eq!(
        s.get(&format!("/webhook/health/{token}"), None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        s.get(&format!("/webhook/health/{new_token}"), None)
            .await
            .status,
        StatusCode::OK
    );

    for bad in [
        json!({"name": ""}),
        json!({"name": "x", "platform": "zapier"}),
        json!({"name": "x", "events": ["no:such:event"]}),
        json!({"name": "x", "targetUrl": "ftp://example.com"}),
        json!({"name": "x", "token": "mine"}),
        json!({"platform": "generic"}),
    ] {
        let r = s.post("/api/webhooks", bad.clone(), Some(&session)).await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{bad}: {}",
            r.body
        );
    }
    assert_eq!(
        s.get("/api/webhooks", Some(&session)).await.body["total"],
        1
    );

    let catalogue = s.get("/api/webhooks/events", Some(&session)).await;
    let names: Vec<&str> = catalogue
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"agent:run:complete"));

    assert_eq!(
        s.delete(&format!("/api/webhooks/{id}"), Some(&session))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        s.get(&format!("/api/webhooks/{id}"), Some(&session))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        s.get(&format!("/webhook/health/{new_token}"), None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
}

#[actix_rt::test]
async fn bad_tokens_cost_nothing() {
    let llm = MessagesApi::start();
    let s = TestServer::with_llm(&llm.url, &[]);
    let (session, token) = s.ready_webhook().await;
    for bad in ["nope", &"f".repeat(64), &token[..63]] {
        let r = s.invoke(bad, json!({"message": "hi", "sync": true})).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{bad}");
        assert_eq!(r.error_code(), "unauthorized");
    }
    assert_eq!(llm.request_count(), 0);
    assert_eq!(s.get("/api/runs", Some(&session)).await.body["total"], 0);

    let r = s
        .post(&format!("/webhook/task/{token}"), json!({}), None)
        .await;
    assert_eq!(
        r.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "a task needs a name and a prompt"
    );
    let health = s.get(&format!("/webhook/health/{token}"), None).await;
    assert_eq!(health.body["webhook"]["name"], "test");

    for bad in [
        json!({"message": ""}),
        json!({"message": "x", "conversationId": "../etc"}),
        json!({"message": "x", "metadata": [1]}),
        json!({"message": "x", "maxIterations": 0}),
        json!({"text": "x"}),
    ] {
        let r = s.invoke(&token, bad.clone()).await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{bad}: {}",
            r.body
        );
    }
    assert_eq!(llm.request_count(), 0);
}

type HmacSha256 = Hmac<sha2::Sha256>;

fn verify(secret: &str, body: &[u8], header: &str) -> bool {
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    header == format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[actix_rt::test]
async fn deliveries_are_signed_and_retried_until_they_land() {
    let llm = MessagesApi::start();
    let receiver = Receiver::start(2);
    let s = TestServer::with_llm(&llm.url, &[]);
    let session = s.setup().await;
    let (id, token, secret) = s
        .create_webhook(
            &session,
            json!({"name": "out", "events": ["agent:run:complete"], "targetUrl": receiver.url}),
        )
        .await;
    let r = s
        .invoke(&token, json!({"message": "ping", "sync": true}))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let run_id = r.body["runId"].as_str().unwrap().to_string();

    let delivered = receiver
        .wait_for(Duration::from_secs(20), |d| !d.is_empty())
        .await;
    assert_eq!(receiver.failed(), 2, "two refusals before the delivery");
    let d = &delivered[0];
    assert_eq!(d.header("x-loop-event"), Some("agent:run:complete"));
    assert!(d.header("x-loop-delivery").is_some());
    assert!(
        verify(&secret, &d.body, d.header("x-loop-signature").unwrap()),
        "signature"
    );
    assert!(!verify(
        "wrong secret",
        &d.body,
        d.header("x-loop-signature").unwrap()
    ));
    let body = d.json();
    assert_eq!(body["event"], "agent:run:complete");
    assert_eq!(body["source"], "loop-gateway");
    assert_eq!(body["payload"]["runId"], run_id.as_str());
    assert_eq!(body["payload"]["output"], "You said: ping");

    // Only subscribed events are delivered (agent:run:start was not).
    assert_eq!(delivered.len(), 1);
    // The receiver answered before the gateway recorded the attempt: wait for the record.
    let logs_url = format!("/api/webhooks/{id}/logs");
    crate::common::eventually(
        Duration::from_secs(10),
        "3 outbound attempts and 1 inbound call logged",
        || async {
            let logs = s.get(&logs_url, Some(&session)).await;
            let items = logs.body["items"].as_array().cloned().unwrap_or_default();
            let outbound = items
                .iter()
                .filter(|l| l["direction"] == "outbound")
                .count();
            let inbound = items.iter().filter(|l| l["direction"] == "inbound").count();
            (outbound, inbound) == (3, 1)
        },
    )
    .await;
}

#[actix_rt::test]
async fn pending_deliveries_resume_after_a_restart() {
    let llm = MessagesApi::start();
    let receiver = Receiver::start(1);
    // Retries are far apart: only the restart can bring the second attempt in time.
    let mut s = TestServer::with_llm(&llm.url, &[("WEBHOOK_RETRY_BASE_MS", "3600000")]);
    let session = s.setup().await;
    let (_, token, _) = s
        .create_webhook(
            &session,
            json!({"name": "out", "events": ["agent:run:complete"], "targetUrl": receiver.url}),
        )
        .await;
    assert_eq!(
        s.invoke(&token, json!({"message": "x", "sync": true}))
            .await
            .status,
        StatusCode::OK
    );
    receiver.wait_for_failures(Duration::from_secs(20), 1).await;
    s.restart();
    let delivered = receiver
        .wait_for(Duration::from_secs(20), |d| !d.is_empty())
        .await;
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].json()["event"], "agent:run:complete");
}

#[actix_rt::test]
async fn usage_totals_and_costs_add_up() {
    let llm = MessagesApi::start();
    let s = TestServer::with_llm(&llm.url, &[]);
    let (session, token) = s.ready_webhook().await;
    let (mut input, mut output, mut cost) = (0u64, 0u64, 0i64);
    for i in 0..3 {
        let r = s
            .invoke(
                &token,
                json!({"message": format!("question {i}"), "sync": true}),
            )
            .await;
        let u = &r.body["usage"];
        input += u["inputTokens"].as_u64().unwrap();
        output += u["outputTokens"].as_u64().unwrap();
        cost += u["costMicros"].as_i64().unwrap();
    }
    // claude-sonnet-4-5: $3 / $15 per million tokens = 3 / 15 micro-dollars per token.
    assert_eq!(cost, (input * 3 + output * 15) as i64);
    let totals = s.get("/api/usage", Some(&session)).await;
    assert_eq!(totals.status, StatusCode::OK);
    assert_eq!(totals.body["calls"], 3);
    assert_eq!(totals.body["inputTokens"], input);
    assert_eq!(totals.body["outputTokens"], output);
    assert_eq!(totals.body["costMicros"], cost);
    let models = s.get("/api/usage/models", Some(&session)).await;
    assert_eq!(models.body["items"][0]["model"], "claude-sonnet-4-5");
    assert_eq!(models.body["items"][0]["costMicros"], cost);
    let daily = s.get("/api/usage/daily", Some(&session)).await;
    assert_eq!(daily.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(daily.body["items"][0]["calls"], 3);
    let calls = s.get("/api/usage/calls?limit=2", Some(&session)).await;
    assert_eq!(calls.body["total"], 3);
    assert_eq!(calls.body["items"].as_array().unwrap().len(), 2);
    // A range before any call is empty; a bad range is a 422.
    let empty = s
        .get("/api/usage?from=2020-01-01&to=2020-01-31", Some(&session))
        .await;
    assert_eq!(empty.body["calls"], 0);
    assert_eq!(
        s.get("/api/usage?from=soon", Some(&session)).await.status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let tools = s.get("/api/tools", Some(&session)).await;
    assert_eq!(tools.body["items"][0]["name"], "http_request");
    assert_eq!(tools.body["items"][0]["riskLevel"], "medium");
    assert!(tools.body["items"][0]["inputSchema"]["properties"]["url"].is_object());
}
