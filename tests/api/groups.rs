//! Agent groups and budgets: CRUD, the write-only key, runs that use the group's settings,
//! tool allowlists, and budgets that concurrent runs cannot overspend, across restarts and
//! time zones.

use std::time::Duration;

use awc::http::StatusCode;
use loop_gateway_stand_ins::{MessagesApi, Reply};
use serde_json::{json, Value};

use crate::common::{Events, TestServer};

const GROUP_KEY: &str = "sk-ant-group-secret-key-7781";

async fn create_group(s: &TestServer, session: &str, body: Value) -> Value {
    let r = s.post("/api/agent-groups", body, Some(session)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    r.body
}

/// Tokens the group spent, summed from the database (the ground truth).
fn group_tokens(s: &TestServer, group_id: &str) -> u64 {
    let conn = rusqlite::Connection::open(s.db_path()).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    conn.query_row(
        "SELECT coalesce(sum(input_tokens + output_tokens + cache_creation_tokens + cache_read_tokens), 0)
         FROM api_calls WHERE group_id = ?1",
        [group_id],
        |r| r.get::<_, i64>(0),
    )
    .unwrap() as u64
}

#[actix_rt::test]
async fn group_crud_validates_and_never_shows_the_key() {
    let mut s = TestServer::start();
    let session = s.setup().await;
    let g = create_group(
        &s,
        &session,
        json!({"name": "support", "systemPrompt": "You are support.", "model": "claude-haiku-4-5",
               "apiKey": GROUP_KEY, "skills": ["http_request"], "budgetMaxTokensDay": 1000}),
    )
    .await;
    let id = g["id"].as_str().unwrap().to_string();
    assert_eq!(g["hasApiKey"], true);
    assert_eq!(g["apiKeyLast4"], "7781");
    assert!(!g.to_string().contains(GROUP_KEY));

    for bad in [
        json!({"name": ""}),
        json!({"name": "x", "model": "claude sonnet!"}),
        json!({"name": "x", "budgetMaxTokensDay": -5}),
        json!({"name": "x", "budgetMaxTokensMonth": 0}),
        json!({"name": "x", "skills": ["no_such_tool"]}),
        json!({"name": "x", "provider": "gemini"}),
        json!({"name": "x", "maxIterations": 0}),
        json!({"name": "x", "baseUrl": "ftp://x"}),
        json!({"name": "x", "colour": "red"}),
        json!({"model": "claude-sonnet-4-5"}),
    ] {
        let r = s
            .post("/api/agent-groups", bad.clone(), Some(&session))
            .await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{bad}: {}",
            r.body
        );
    }
    let dup = s
        .post(
            "/api/agent-groups",
            json!({"name": "Support"}),
            Some(&session),
        )
        .await;
    assert_eq!(dup.status, StatusCode::CONFLICT, "{}", dup.body);

    // Update keeps what is absent, clears what is null; the key can be replaced or cleared.
    let u = s
        .put_json(
            &format!("/api/agent-groups/{id}"),
            json!({"description": "front line", "skills": null}),
            &session,
        )
        .await;
    assert_eq!(u.status, StatusCode::OK, "{}", u.body);
    assert_eq!(u.body["model"], "claude-haiku-4-5");
    assert!(u.body["skills"].is_null());
    assert_eq!(u.body["hasApiKey"], true);
    let listed = s.get("/api/agent-groups", Some(&session)).await;
    assert_eq!(listed.body["total"], 1);
    assert!(!listed.body.to_string().contains(GROUP_KEY));
    assert_eq!(
        s.get("/api/agent-groups/nope", Some(&session)).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        s.post(
            &format!("/api/agent-groups/{id}/assign/no-such-channel"),
            json!({}),
            Some(&session)
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );

    // The key survives a restart (decrypted from the database) and is nowhere in plain text.
    assert!(s.terminate().success());
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(s.data_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("gateway.db")
        {
            bytes.extend(std::fs::read(path).unwrap());
        }
    }
    assert!(
        !String::from_utf8_lossy(&bytes).contains(GROUP_KEY),
        "key in the database"
    );
    assert!(!s.logs().contains(GROUP_KEY), "key in the log");
    s = TestServer::start_in(s.into_dir(), &[]);
    let session = s.login_token().await;
    let g = s
        .get(&format!("/api/agent-groups/{id}"), Some(&session))
        .await;
    assert_eq!(g.body["hasApiKey"], true);
    let cleared = s
        .put_json(
            &format!("/api/agent-groups/{id}"),
            json!({"apiKey": null}),
            &session,
        )
        .await;
    assert_eq!(cleared.body["hasApiKey"], false);
    assert!(cleared.body["apiKeyLast4"].is_null());
    assert_eq!(
        s.delete(&format!("/api/agent-groups/{id}"), Some(&session))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        s.get("/api/agent-groups", Some(&session)).await.body["total"],
        0
    );
}

#[actix_rt::test]
async fn a_group_run_uses_the_groups_prompt_model_key_and_tools() {
    let llm = MessagesApi::start();
    let s = TestServer::with_llm(&llm.url, &[]);
    let (session, token) = s.ready_webhook().await;
    let g = create_group(
        &s,
        &session,
        json!({"name": "haiku", "systemPrompt": "You are a haiku poet.", "model": "claude-haiku-4-5",
               "apiKey": GROUP_KEY, "skills": []}),
    )
    .await;
    let r = s
        .invoke(
            &token,
            json!({"message": "autumn", "sync": true, "groupId": g["id"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let req = &llm.requests()[0];
    assert_eq!(req.header("x-api-key"), Some(GROUP_KEY));
    let body = req.json();
    assert_eq!(body["model"], "claude-haiku-4-5");
    assert_eq!(body["system"], "You are a haiku poet.");
    assert!(
        body.get("tools").is_none(),
        "an empty allowlist offers no tools: {body}"
    );

    // Without a group: the defaults, all tools.
    s.invoke(&token, json!({"message": "plain", "sync": true}))
        .await;
    let body = llm.requests()[1].json();
    assert_eq!(body["model"], "claude-sonnet-4-5");
    assert_eq!(body["tools"][0]["name"], "http_request");
    assert_ne!(llm.requests()[1].header("x-api-key"), Some(GROUP_KEY));

    let bad = s
        .invoke(
            &token,
            json!({"message": "x", "sync": true, "groupId": "nope"}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);

    let run = s
        .get(
            &format!("/api/runs/{}", r.body["runId"].as_str().unwrap()),
            Some(&session),
        )
        .await;
    assert_eq!(run.body["groupId"], g["id"]);
    assert_eq!(run.body["model"], "claude-haiku-4-5");
    // claude-haiku-4-5 costs $1 / $5 per million tokens.
    let u = &r.body["usage"];
    assert_eq!(
        u["costMicros"].as_u64().unwrap(),
        u["inputTokens"].as_u64().unwrap() + 5 * u["outputTokens"].as_u64().unwrap()
    );
}

#[actix_rt::test]
async fn the_budget_stops_a_long_tool_loop_mid_way() {
    let llm = MessagesApi::start();
    let s = TestServer::with_llm(&llm.url, &[("MAX_TOKENS", "200")]);
    let (session, token) = s.ready_webhook().await;
    let g = create_group(
        &s,
        &session,
        json!({"name": "capped", "budgetMaxTokensDay": 1500, "maxIterations": 50}),
    )
    .await;
    let id = g["id"].as_str().unwrap().to_string();
    for _ in 0..40 {
        llm.push(Reply::tool("no_such_tool", json!({"step": "again"})));
    }
    let mut events = Events::connect(&s, &session).await;
    let r = s
        .invoke(
            &token,
            json!({"message": "loop forever", "sync": true, "groupId": id}),
        )
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.body);
    assert_eq!(r.error_code(), "budget_exceeded");
    let calls = llm.request_count();
    assert!(
        (2..40).contains(&calls),
        "stopped mid-way after {calls} calls"
    );
    assert!(
        group_tokens(&s, &id) <= 1500,
        "spent {}",
        group_tokens(&s, &id)
    );
    events
        .wait_for("budget:exceeded", Duration::from_secs(10), |p| {
            p["groupId"] == id.as_str()
        })
        .await;
    let stats = s
        .get(&format!("/api/agent-groups/{id}/stats"), Some(&session))
        .await;
    assert_eq!(stats.body["budget"]["tokensToday"], group_tokens(&s, &id));
    assert_eq!(stats.body["budget"]["reserved"], 0);
    assert_eq!(stats.body["today"]["runs"], 1);
    assert_eq!(stats.body["today"]["errors"], 1);
}

#[actix_rt::test]
async fn concurrent_runs_cannot_overspend_and_budgets_survive_a_restart() {
    let llm = MessagesApi::start_with_workers(2);
    llm.set_delay(Duration::from_millis(100));
    let mut s = TestServer::with_llm(&llm.url, &[("MAX_TOKENS", "100")]);
    let (session, token) = s.ready_webhook().await;
    let cap = 2500u64;
    let g = create_group(
        &s,
        &session,
        json!({"name": "tight", "budgetMaxTokensMonth": cap}),
    )
    .await;
    let id = g["id"].as_str().unwrap().to_string();
    let calls = (0..50).map(|i| {
        let (s, token, id) = (&s, token.clone(), id.clone());
        async move {
            s.invoke(
                &token,
                json!({"message": format!("race {i}"), "sync": true, "groupId": id}),
            )
            .await
        }
    });
    let replies = futures_util::future::join_all(calls).await;
    let ok = replies
        .iter()
        .filter(|r| r.status == StatusCode::OK)
        .count();
    let refused = replies
        .iter()
        .filter(|r| r.status == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!(ok + refused, 50);
    assert!(ok >= 1 && refused >= 1, "ok {ok}, refused {refused}");
    let spent = group_tokens(&s, &id);
    assert!(spent <= cap, "spent {spent} of {cap}");

    s.restart();
    let session = s.login_token().await;
    let stats = s
        .get(&format!("/api/agent-groups/{id}/stats"), Some(&session))
        .await;
    assert_eq!(
        stats.body["budget"]["tokensThisMonth"], spent,
        "{}",
        stats.body
    );
    assert_eq!(stats.body["budget"]["budgetMaxTokensMonth"], cap);
}

#[actix_rt::test]
async fn the_budget_day_follows_the_configured_time_zone() {
    let llm = MessagesApi::start();
    let tz = "Pacific/Kiritimati"; // UTC+14: its day differs from UTC's most of the time
    let mut s = TestServer::with_llm(&llm.url, &[("BUDGET_TIMEZONE", tz)]);
    let session = s.setup().await;
    let g = create_group(
        &s,
        &session,
        json!({"name": "islands", "budgetMaxTokensDay": 100000}),
    )
    .await;
    let id = g["id"].as_str().unwrap().to_string();
    // Two recorded calls: one just after local midnight today, one just before it.
    let local_midnight = {
        use chrono::TimeZone;
        let tz: chrono_tz::Tz = tz.parse().unwrap();
        let now = chrono::Utc::now().with_timezone(&tz);
        tz.from_local_datetime(&now.date_naive().and_hms_opt(0, 0, 0).unwrap())
            .earliest()
            .unwrap()
            .timestamp_millis()
    };
    {
        let conn = rusqlite::Connection::open(s.db_path()).unwrap();
        conn.busy_timeout(Duration::from_secs(5)).unwrap();
        for (at, tokens) in [
            (local_midnight + 60_000, 700),
            (local_midnight - 60_000, 300),
        ] {
            conn.execute(
                "INSERT INTO api_calls (provider, model, input_tokens, output_tokens, latency_ms,
                                        status, created_at, group_id)
                 VALUES ('anthropic', 'claude-sonnet-4-5', ?1, 0, 1, 'ok', ?2, ?3)",
                rusqlite::params![tokens, at, id],
            )
            .unwrap();
        }
    }
    s.restart();
    let session = s.login_token().await;
    let stats = s
        .get(&format!("/api/agent-groups/{id}/stats"), Some(&session))
        .await;
    assert_eq!(stats.body["budget"]["timeZone"], tz);
    assert_eq!(stats.body["budget"]["tokensToday"], 700, "{}", stats.body);
    // Yesterday's call counts for the month when yesterday was in the same month.
    let same_month = {
        use chrono::{Datelike, TimeZone};
        let tz: chrono_tz::Tz = tz.parse().unwrap();
        let a = tz.timestamp_millis_opt(local_midnight + 60_000).unwrap();
        let b = tz.timestamp_millis_opt(local_midnight - 60_000).unwrap();
        a.month() == b.month()
    };
    assert_eq!(
        stats.body["budget"]["tokensThisMonth"],
        if same_month { 1000 } else { 700 }
    );
}

#[actix_rt::test]
async fn rotate_key_re_encrypts_every_secret() {
    let llm = MessagesApi::start();
    let mut s = TestServer::with_llm(&llm.url, &[]);
    let (session, token) = s.ready_webhook().await;
    let g = create_group(&s, &session, json!({"name": "keyed", "apiKey": GROUP_KEY})).await;
    // Channel credentials are sealed too.
    let channel = s
        .post(
            "/api/channels",
            json!({"type": "whatsapp", "name": "wa", "config": {"mode": "cloud",
                "phoneNumberId": "1", "accessToken": "t", "appSecret": "a",
                "verifyToken": "verify-after-rotation", "graphBaseUrl": "http://127.0.0.1:9"}}),
            Some(&session),
        )
        .await;
    assert_eq!(channel.status, StatusCode::CREATED, "{}", channel.body);
    let channel_id = channel.body["id"].as_str().unwrap().to_string();
    assert!(s.terminate().success());
    let key_path = s.data_dir().join("secret.key");
    let old_key = std::fs::read_to_string(&key_path).unwrap();

    let out = s.command().args(["admin", "rotate-key"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("3 secret(s) re-encrypted"));
    let new_key = std::fs::read_to_string(&key_path).unwrap();
    assert_ne!(old_key.trim(), new_key.trim());
    assert!(!s.data_dir().join("secret.key.new").exists());

    // Everything still opens with the new key: the group's key reaches the model API, the
    // webhook's token still works.
    let env: Vec<(String, String)> = crate::common::llm_env(&llm.url)
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    s = TestServer::start_in(s.into_dir(), &env);
    let r = s
        .invoke(
            &token,
            json!({"message": "still there?", "sync": true, "groupId": g["id"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        llm.requests().last().unwrap().header("x-api-key"),
        Some(GROUP_KEY)
    );
    let verified = s
        .get(
            &format!("/webhook/whatsapp/{channel_id}?hub.mode=subscribe&hub.verify_token=verify-after-rotation&hub.challenge=42"),
            None,
        )
        .await;
    assert_eq!(verified.status, StatusCode::OK);

    // A wrong key is refused without touching anything.
    assert!(s.terminate().success());
    let out = s
        .command()
        .args(["admin", "rotate-key", "--new-key", "abc"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(std::fs::read_to_string(&key_path).unwrap(), new_key);
}
