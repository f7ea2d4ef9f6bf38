//! Chat channels against stand-ins of the platforms' own APIs (Telegram's Bot API, WhatsApp's
//! Graph API): messages stored before they are acknowledged, answered once, in order per chat,
//! with allow-lists, group rules, splitting, markup fallback, statuses and crash recovery.

use std::time::Duration;

use awc::http::StatusCode;
use loop_gateway_stand_ins::telegram::{ChatSpec, Inbound, TelegramBotApi, UserSpec};
use loop_gateway_stand_ins::whatsapp::{self, WhatsAppGraph};
use loop_gateway_stand_ins::{HttpTarget, MessagesApi, Reply};
use serde_json::{json, Value};

use crate::common::{client, send_raw, Events, TestServer};

const TOKEN: &str = "123456789:AAE-test-token-secret";
const WAIT: Duration = Duration::from_secs(15);

fn alice() -> UserSpec {
    UserSpec::new(1001, "Alice").username("alice")
}

fn bob() -> UserSpec {
    UserSpec::new(1002, "Bob").username("bob")
}

async fn create_telegram(
    s: &TestServer,
    session: &str,
    tg: &TelegramBotApi,
    extra: Value,
) -> String {
    let mut config = json!({"botToken": TOKEN, "apiBaseUrl": tg.url, "pollTimeoutSeconds": 1});
    let mut body = json!({"type": "telegram", "name": "support bot", "config": config.clone()});
    if let Value::Object(extra) = extra {
        for (k, v) in extra {
            if k == "config" {
                for (ck, cv) in v.as_object().unwrap() {
                    config[ck] = cv.clone();
                }
                body["config"] = config.clone();
            } else {
                body[k] = v;
            }
        }
    }
    let r = s.post("/api/channels", body, Some(session)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert!(
        !r.body.to_string().contains(TOKEN),
        "token shown: {}",
        r.body
    );
    assert_eq!(r.body["secretsSet"], json!(["botToken"]));
    r.body["id"].as_str().unwrap().to_string()
}

async fn connected(events: &mut Events, id: &str) {
    events.channel_status(id, "connected", WAIT).await;
}

#[actix_rt::test]
async fn telegram_chat_is_answered_in_one_conversation_and_resumes_after_restart() {
    let llm = MessagesApi::start();
    let tg = TelegramBotApi::start(TOKEN);
    let mut s = TestServer::with_llm(&llm.url, &[]);
    let session = s.setup().await;
    let mut events = Events::connect(&s, &session).await;
    let id = create_telegram(&s, &session, &tg, json!({})).await;
    connected(&mut events, &id).await;

    llm.push(Reply::Text("Hello **Alice**, how can I help?".into()));
    let pushed = tg.push(Inbound::new(ChatSpec::Private, alice(), "hi there"));
    let incoming = events
        .wait_for("message:incoming", WAIT, |p| p["channelId"] == id)
        .await;
    assert_eq!(incoming["payload"]["text"], "hi there");
    assert_eq!(incoming["payload"]["status"], "pending");
    let reply = events
        .wait_for("message:reply", WAIT, |p| p["channelId"] == id)
        .await;
    assert_eq!(reply["payload"]["status"], "answered");
    let sent = tg.wait_for_sent(1, WAIT).await;
    assert_eq!(sent[0].chat_id, pushed.chat_id.to_string());
    assert_eq!(sent[0].parse_mode.as_deref(), Some("HTML"));
    assert_eq!(sent[0].text, "Hello <b>Alice</b>, how can I help?");
    assert_eq!(sent[0].plain_text, "Hello Alice, how can I help?");
    // A private chat is not answered with a quote.
    assert_eq!(sent[0].reply_to, None);

    // The same chat continues the same conversation.
    tg.push(Inbound::new(ChatSpec::Private, alice(), "and again"));
    tg.wait_for_sent(2, WAIT).await;
    let last = llm.requests().last().unwrap().json();
    assert_eq!(last["messages"].as_array().unwrap().len(), 3, "{last}");

    // /reset starts over without asking the model.
    let calls = llm.request_count();
    tg.push(Inbound::new(ChatSpec::Private, alice(), "/reset"));
    let sent = tg.wait_for_sent(3, WAIT).await;
    assert_eq!(sent[2].plain_text, "Started a new conversation.");
    assert_eq!(llm.request_count(), calls);
    tg.push(Inbound::new(ChatSpec::Private, alice(), "fresh start"));
    tg.wait_for_sent(4, WAIT).await;
    let last = llm.requests().last().unwrap().json();
    assert_eq!(last["messages"].as_array().unwrap().len(), 1, "{last}");

    // After a restart the bot resumes after the last update it stored: nothing is answered
    // twice and nothing is skipped.
    let last_update = tg
        .get_updates_offsets()
        .into_iter()
        .flatten()
        .max()
        .unwrap();
    s.restart();
    tg.wait_for_polls(tg.get_updates_offsets().len() + 1, WAIT)
        .await;
    let first_after = *tg.get_updates_offsets().last().unwrap();
    assert_eq!(
        first_after,
        Some(last_update),
        "resumed from the stored offset"
    );
    tg.push(Inbound::new(ChatSpec::Private, alice(), "still there?"));
    let sent = tg.wait_for_sent(5, WAIT).await;
    assert_eq!(sent.len(), 5);

    let session = s.login_token().await;
    let page = s
        .get(&format!("/api/channels/{id}/messages"), Some(&session))
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!(page.body["counts"]["answered"], 5, "{}", page.body);
    let listed = s.get("/api/channels", Some(&session)).await;
    assert_eq!(
        listed.body["items"][0]["status"], "connected",
        "{}",
        listed.body
    );
    assert!(listed.body["items"][0]["lastMessageAt"].is_string());
    assert!(
        !s.database_text().contains(TOKEN),
        "bot token stored in plain text"
    );
    assert!(
        !s.logs().contains("AAE-test-token-secret"),
        "bot token in the log"
    );
}

#[actix_rt::test]
async fn telegram_allow_list_groups_long_replies_and_rejected_markup() {
    let llm = MessagesApi::start();
    let tg = TelegramBotApi::start(TOKEN);
    let s = TestServer::with_llm(&llm.url, &[]);
    let session = s.setup().await;
    let mut events = Events::connect(&s, &session).await;
    let id = create_telegram(&s, &session, &tg, json!({"allowedSenders": ["@Alice"]})).await;
    connected(&mut events, &id).await;

    // Bob is not on the list: recorded, ignored, no model call.
    tg.push(Inbound::new(ChatSpec::Private, bob(), "let me in"));
    let ignored = events
        .wait_for("message:incoming", WAIT, |p| p["sender"] == "1002")
        .await;
    assert_eq!(ignored["payload"]["status"], "ignored");
    assert_eq!(ignored["payload"]["ignoredReason"], "sender_not_allowed");

    // In a group, only a mention or a reply to the bot is for the bot.
    let group = ChatSpec::group(-4001, "team");
    tg.push(Inbound::new(
        group.clone(),
        alice(),
        "talking among ourselves",
    ));
    let not_for_us = events
        .wait_for("message:incoming", WAIT, |p| p["chat"] == "-4001")
        .await;
    assert_eq!(not_for_us["payload"]["ignoredReason"], "not_addressed");
    assert_eq!(llm.request_count(), 0);

    llm.push(Reply::Text(format!(
        "{}\n\n{}\n\n{}",
        "a".repeat(4000),
        "b".repeat(4000),
        "c".repeat(100)
    )));
    let asked = tg.push(Inbound::new(group, alice(), "@loop_test_bot write a lot"));
    let sent = tg.wait_for_sent(3, WAIT).await;
    assert_eq!(
        llm.requests()[0].json()["messages"][0]["content"][0]["text"],
        "write a lot"
    );
    for part in &sent {
        assert!(part.plain_text.chars().count() <= 4096);
        assert_eq!(part.chat_id, "-4001");
    }
    assert_eq!(
        sent[0].reply_to,
        Some(asked.message_id),
        "the first part quotes the question"
    );
    assert_eq!(sent[2].plain_text, "c".repeat(100));

    // Markup the server refuses still gets the words through, as plain text.
    tg.set_reject_markup(true);
    llm.push(Reply::Text("**bold** claim".into()));
    tg.push(Inbound::new(ChatSpec::Private, alice(), "format this"));
    let sent = tg.wait_for_sent(4, WAIT).await;
    assert_eq!(sent[3].parse_mode, None);
    assert_eq!(sent[3].text, "**bold** claim");
}

#[actix_rt::test]
async fn telegram_conflicts_and_rate_limits_are_reported_and_survived() {
    let llm = MessagesApi::start();
    let tg = TelegramBotApi::start(TOKEN);
    let s = TestServer::with_llm(&llm.url, &[]);
    let session = s.setup().await;
    let mut events = Events::connect(&s, &session).await;
    tg.set_conflict(true);
    let id = create_telegram(&s, &session, &tg, json!({})).await;
    let failed = events
        .wait_for("channel:status", WAIT, |p| {
            p["channelId"] == id && p["status"] == "error"
        })
        .await;
    let why = failed["payload"]["error"].as_str().unwrap().to_string();
    assert!(why.contains("409"), "{why}");
    let one = s.get(&format!("/api/channels/{id}"), Some(&session)).await;
    assert_eq!(one.body["status"], "error");
    assert_eq!(one.body["lastError"], why.as_str());

    tg.set_conflict(false);
    connected(&mut events, &id).await;

    // A second channel with a token Telegram refuses says so, and changes nothing for the
    // first one.
    let bad = s
        .post(
            "/api/channels",
            json!({"type": "telegram", "name": "wrong token", "config": {
                "botToken": "987654321:not-the-right-secret", "apiBaseUrl": tg.url,
                "pollTimeoutSeconds": 1}}),
            Some(&session),
        )
        .await;
    assert_eq!(bad.status, StatusCode::CREATED, "{}", bad.body);
    let bad_id = bad.body["id"].as_str().unwrap().to_string();
    let refused = events
        .wait_for("channel:status", WAIT, |p| {
            p["channelId"] == bad_id.as_str() && p["status"] == "error"
        })
        .await;
    let why = refused["payload"]["error"].as_str().unwrap();
    assert!(why.contains("401") && why.contains("botToken"), "{why}");

    // Telegram asks to slow down: the reply waits and then goes out once.
    tg.rate_limit_next(1, 1);
    tg.push(Inbound::new(ChatSpec::Private, alice(), "hello"));
    let reply = events
        .wait_for("message:reply", WAIT, |p| p["channelId"] == id)
        .await;
    assert_eq!(reply["payload"]["status"], "answered", "{reply}");
    let sent = tg.wait_for_sent(1, WAIT).await;
    assert_eq!(sent.len(), 1);
    let page = s
        .get(&format!("/api/channels/{id}/messages"), Some(&session))
        .await;
    assert_eq!(page.body["messages"][0]["attempts"], 1, "{}", page.body);
}

#[actix_rt::test]
async fn channel_crud_validates_restarts_and_deletes() {
    let tg = TelegramBotApi::start(TOKEN);
    let s = TestServer::start();
    let session = s.setup().await;
    let bad = [
        (
            json!({"type": "telegram", "name": "x", "config": {"botToken": "nope"}}),
            "config.botToken",
        ),
        (
            json!({"type": "telegram", "name": "x", "config": {}}),
            "botToken",
        ),
        (json!({"type": "fax", "name": "x", "config": {}}), "type"),
        (json!({"name": "x", "config": {}}), "type"),
        (
            json!({"type": "telegram", "name": "", "config": {"botToken": TOKEN}}),
            "name",
        ),
        (
            json!({"type": "telegram", "name": "x", "config": {"botToken": TOKEN, "apiBaseUrl": "ftp://x"}}),
            "config.apiBaseUrl",
        ),
        (
            json!({"type": "email", "name": "x", "config": {"imapHost": "h", "imapUser": "u",
                "imapPassword": "p", "smtpHost": "h", "fromAddress": "not an address"}}),
            "config.fromAddress",
        ),
        (
            json!({"type": "whatsapp", "name": "x", "config": {"mode": "cloud", "phoneNumberId": "1",
                "accessToken": "t", "verifyToken": "v"}}),
            "config.appSecret",
        ),
    ];
    for (body, field) in bad {
        let r = s.post("/api/channels", body.clone(), Some(&session)).await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body} -> {}",
            r.body
        );
        let message = r.body["error"]["message"].as_str().unwrap();
        assert!(message.contains(field), "{field} not named in {message}");
    }
    if !cfg!(feature = "whatsapp-linked") {
        // Linked-device mode is a build feature: without it, a clear 422 says how to get it.
        let linked = s
            .post(
                "/api/channels",
                json!({"type": "whatsapp", "name": "phone", "config": {"mode": "linked"}}),
                Some(&session),
            )
            .await;
        assert_eq!(linked.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(linked.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--features whatsapp-linked"));
    }
    let listed = s.get("/api/channels", Some(&session)).await;
    assert_eq!(listed.body["total"], 0, "nothing created by bad input");

    let mut events = Events::connect(&s, &session).await;
    let id = create_telegram(&s, &session, &tg, json!({})).await;
    connected(&mut events, &id).await;
    let dup = s
        .post(
            "/api/channels",
            json!({"type": "telegram", "name": "support bot", "config": {"botToken": TOKEN}}),
            Some(&session),
        )
        .await;
    assert_eq!(dup.status, StatusCode::CONFLICT, "{}", dup.body);

    // An update restarts the actor with the new settings: here, a different Bot API server.
    let other = TelegramBotApi::start(TOKEN);
    let updated = s
        .put_json(
            &format!("/api/channels/{id}"),
            json!({"config": {"apiBaseUrl": other.url}, "allowedSenders": ["1001"]}),
            &session,
        )
        .await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
    assert_eq!(
        updated.body["secretsSet"],
        json!(["botToken"]),
        "token kept"
    );
    other.wait_until_polling(WAIT).await;

    // Disabled: stopped.
    let off = s
        .put_json(
            &format!("/api/channels/{id}"),
            json!({"enabled": false}),
            &session,
        )
        .await;
    assert_eq!(off.body["status"], "stopped", "{}", off.body);

    let gone = s
        .delete(&format!("/api/channels/{id}"), Some(&session))
        .await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT);
    let again = s.get(&format!("/api/channels/{id}"), Some(&session)).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    // The name is free again.
    create_telegram(&s, &session, &tg, json!({})).await;
}

#[actix_rt::test]
async fn a_message_stored_before_a_crash_is_answered_exactly_once_after_restart() {
    let llm = MessagesApi::start();
    let tg = TelegramBotApi::start(TOKEN);
    let mut s = TestServer::with_llm(&llm.url, &[]);
    let session = s.setup().await;
    let mut events = Events::connect(&s, &session).await;
    let id = create_telegram(&s, &session, &tg, json!({})).await;
    connected(&mut events, &id).await;

    // The model is slow: the gateway dies while the run waits on it.
    llm.set_delay(Duration::from_secs(30));
    tg.push(Inbound::new(ChatSpec::Private, alice(), "first question"));
    events
        .wait_for("message:incoming", WAIT, |p| p["channelId"] == id)
        .await;
    llm.wait_for_requests(1, WAIT).await;
    // "typing…" shows while the agent works.
    tg.wait_for_calls("sendChatAction", 1, WAIT).await;
    s.kill();
    llm.set_delay(Duration::ZERO);
    s.restart_after_kill();

    let sent = tg.wait_for_sent(1, WAIT).await;
    assert_eq!(sent[0].chat_id, "1001");
    // A later message in the same chat is answered after the first: had the first been
    // answered twice, the duplicate would come before this one.
    tg.push(Inbound::new(ChatSpec::Private, alice(), "second question"));
    let sent = tg.wait_for_sent(2, WAIT).await;
    assert_eq!(sent.len(), 2, "{sent:?}");
    let session = s.login_token().await;
    let page = s
        .get(&format!("/api/channels/{id}/messages"), Some(&session))
        .await;
    assert_eq!(page.body["counts"]["answered"], 2, "{}", page.body);
    assert!(page.body["counts"]["pending"].is_null(), "{}", page.body);
}

#[actix_rt::test]
async fn whatsapp_cloud_webhook_is_verified_signed_and_answered() {
    let llm = MessagesApi::start();
    let graph = WhatsAppGraph::start("wa-access-token");
    let s = TestServer::with_llm(&llm.url, &[]);
    let session = s.setup().await;
    let mut events = Events::connect(&s, &session).await;
    let created = s
        .post(
            "/api/channels",
            json!({"type": "whatsapp", "name": "wa", "config": {
                "mode": "cloud", "phoneNumberId": "106540352242922",
                "accessToken": "wa-access-token", "appSecret": "app-secret-1",
                "verifyToken": "verify-me", "graphBaseUrl": graph.url}}),
            Some(&session),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let text = created.body.to_string();
    for secret in ["wa-access-token", "app-secret-1", "verify-me"] {
        assert!(!text.contains(secret), "{secret} shown");
    }
    let id = created.body["id"].as_str().unwrap().to_string();
    // A Cloud API channel has no pairing code to show.
    let qr = s
        .get(&format!("/api/channels/{id}/qr.svg"), Some(&session))
        .await;
    assert_eq!(qr.status, StatusCode::NOT_FOUND);
    connected(&mut events, &id).await;

    // Meta's verification handshake.
    let verify = |token: &str| {
        s.url(&format!(
            "/webhook/whatsapp/{id}?hub.mode=subscribe&hub.verify_token={token}&hub.challenge=1158201444"
        ))
    };
    let mut ok = client(None).get(verify("verify-me")).send().await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(ok.body().await.unwrap(), "1158201444");
    let wrong = client(None).get(verify("guess")).send().await.unwrap();
    assert_eq!(wrong.status(), StatusCode::FORBIDDEN);
    let unknown = client(None)
        .get(s.url(
            "/webhook/whatsapp/nope?hub.mode=subscribe&hub.verify_token=verify-me&hub.challenge=1",
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);

    let note = whatsapp::text_notification(
        "106540352242922",
        "15550783881",
        "4915112345678",
        "Ann",
        "wamid.HBgLNDkxNTExMjM0NTY3OBUCABIYFjNFQjBDMEY",
        "Wie spät ist es?",
        1_764_000_000,
    )
    .to_string();
    // A bad or missing signature: 401, nothing stored.
    let post = |sig: Option<String>| {
        let req = client(None).post(s.url(&format!("/webhook/whatsapp/{id}")));
        match sig {
            Some(sig) => req.insert_header(("x-hub-signature-256", sig)),
            None => req,
        }
    };
    let forged = send_raw(
        post(Some(whatsapp::sign("wrong", note.as_bytes()))),
        "application/json",
        &note,
    )
    .await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED);
    let unsigned = send_raw(post(None), "application/json", &note).await;
    assert_eq!(unsigned.status, StatusCode::UNAUTHORIZED);
    let page = s
        .get(&format!("/api/channels/{id}/messages"), Some(&session))
        .await;
    assert_eq!(page.body["messages"], json!([]));

    let signed = whatsapp::sign("app-secret-1", note.as_bytes());
    let accepted = send_raw(post(Some(signed.clone())), "application/json", &note).await;
    assert_eq!(accepted.status, StatusCode::OK, "{}", accepted.body);
    // Meta retries deliveries: the same message again is not answered twice.
    let again = send_raw(post(Some(signed)), "application/json", &note).await;
    assert_eq!(again.status, StatusCode::OK);
    let sent = graph.wait_for_sent(1, WAIT).await;
    assert_eq!(sent[0].to, "4915112345678");
    assert_eq!(sent[0].phone_number_id, "106540352242922");
    assert!(
        sent[0].body.contains("Wie spät ist es?"),
        "{}",
        sent[0].body
    );
    let reply = events
        .wait_for("message:reply", WAIT, |p| p["channelId"] == id)
        .await;
    assert_eq!(reply["payload"]["status"], "answered");
    let page = s
        .get(&format!("/api/channels/{id}/messages"), Some(&session))
        .await;
    assert_eq!(
        page.body["messages"].as_array().unwrap().len(),
        1,
        "{}",
        page.body
    );
    assert_eq!(page.body["messages"][0]["senderName"], "Ann");
}

#[actix_rt::test]
async fn a_channel_bound_to_a_group_uses_its_agent_and_budget() {
    let llm = MessagesApi::start();
    let tg = TelegramBotApi::start(TOKEN);
    let s = TestServer::with_llm(&llm.url, &[]);
    let session = s.setup().await;
    let mut events = Events::connect(&s, &session).await;
    let channel = create_telegram(&s, &session, &tg, json!({})).await;
    connected(&mut events, &channel).await;
    let group = s
        .post(
            "/api/agent-groups",
            json!({"name": "support", "systemPrompt": "You are the support desk.",
                   "model": "claude-haiku-4-5", "apiKey": "sk-ant-group-key-123456"}),
            Some(&session),
        )
        .await;
    assert_eq!(group.status, StatusCode::CREATED, "{}", group.body);
    let group_id = group.body["id"].as_str().unwrap().to_string();
    let assigned = s
        .post(
            &format!("/api/agent-groups/{group_id}/assign/{channel}"),
            json!({}),
            Some(&session),
        )
        .await;
    assert_eq!(assigned.status, StatusCode::OK, "{}", assigned.body);
    assert_eq!(assigned.body["channels"], json!([channel]));
    // Another group cannot take it by accident; it can when asked to move it.
    let other = s
        .post(
            "/api/agent-groups",
            json!({"name": "other"}),
            Some(&session),
        )
        .await;
    let other_id = other.body["id"].as_str().unwrap().to_string();
    let taken = s
        .post(
            &format!("/api/agent-groups/{other_id}/assign/{channel}"),
            json!({}),
            Some(&session),
        )
        .await;
    assert_eq!(taken.status, StatusCode::CONFLICT, "{}", taken.body);
    let moved = s
        .post(
            &format!("/api/agent-groups/{other_id}/assign/{channel}?move=true"),
            json!({}),
            Some(&session),
        )
        .await;
    assert_eq!(moved.status, StatusCode::OK, "{}", moved.body);
    let back = s
        .post(
            &format!("/api/agent-groups/{group_id}/assign/{channel}?move=true"),
            json!({}),
            Some(&session),
        )
        .await;
    assert_eq!(back.status, StatusCode::OK, "{}", back.body);
    let other_now = s
        .get(&format!("/api/agent-groups/{other_id}"), Some(&session))
        .await;
    assert_eq!(other_now.body["channels"], json!([]));

    tg.push(Inbound::new(ChatSpec::Private, alice(), "help me"));
    tg.wait_for_sent(1, WAIT).await;
    let seen = &llm.requests()[0];
    assert_eq!(seen.header("x-api-key"), Some("sk-ant-group-key-123456"));
    assert_eq!(seen.json()["model"], "claude-haiku-4-5");
    assert_eq!(seen.json()["system"], "You are the support desk.");

    // The group's budget runs out: the person gets a polite notice, not silence.
    let capped = s
        .put_json(
            &format!("/api/agent-groups/{group_id}"),
            json!({"budgetMaxTokensDay": 10}),
            &session,
        )
        .await;
    assert_eq!(capped.status, StatusCode::OK, "{}", capped.body);
    let calls = llm.request_count();
    tg.push(Inbound::new(ChatSpec::Private, alice(), "one more thing"));
    let sent = tg.wait_for_sent(2, WAIT).await;
    assert!(
        sent[1].plain_text.contains("budget"),
        "{}",
        sent[1].plain_text
    );
    assert_eq!(llm.request_count(), calls, "no model call past the budget");

    // A group with a bound channel is not deleted by accident.
    let refused = s
        .delete(&format!("/api/agent-groups/{group_id}"), Some(&session))
        .await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    let unassigned = s
        .post(
            &format!("/api/agent-groups/{group_id}/unassign/{channel}"),
            json!({}),
            Some(&session),
        )
        .await;
    assert_eq!(unassigned.status, StatusCode::OK, "{}", unassigned.body);
    assert_eq!(unassigned.body["channels"], json!([]));
    let again = s
        .post(
            &format!("/api/agent-groups/{group_id}/unassign/{channel}"),
            json!({}),
            Some(&session),
        )
        .await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);

    // Unbound, the channel answers with the gateway's defaults again.
    tg.push(Inbound::new(ChatSpec::Private, alice(), "back to normal?"));
    tg.wait_for_sent(3, WAIT).await;
    let seen = llm.requests().last().unwrap().clone();
    assert_eq!(seen.header("x-api-key"), Some("sk-ant-test-key-0123456789"));
}

#[actix_rt::test]
async fn approvals_are_decided_with_buttons_in_the_telegram_admin_chat() {
    let llm = MessagesApi::start();
    let target = HttpTarget::start();
    let tg = TelegramBotApi::start(TOKEN);
    tg.add_chat(ChatSpec::Private, &alice());
    let s = TestServer::with_llm(&llm.url, &[("HTTP_REQUEST_ALLOW", "127.0.0.1")]);
    let (session, token) = s.ready_webhook().await;
    let rule = json!({"toolName": "http_request", "riskLevel": "high", "requireApproval": true});
    let r = s.post("/api/approval-rules", rule, Some(&session)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let mut events = Events::connect(&s, &session).await;
    let id = create_telegram(
        &s,
        &session,
        &tg,
        json!({"config": {"adminChatIds": [1001]}}),
    )
    .await;
    connected(&mut events, &id).await;

    llm.push(Reply::tool(
        "http_request",
        json!({"url": format!("{}/json", target.url)}),
    ));
    s.invoke(&token, json!({"message": "weather?"})).await;
    let required = events.wait_for("approval:required", WAIT, |_| true).await;
    let approval = required["payload"]["approvalId"]
        .as_str()
        .unwrap()
        .to_string();
    let posted = tg.wait_for_sent(1, WAIT).await;
    assert_eq!(posted[0].chat_id, "1001");
    assert!(
        posted[0].text.contains("http_request"),
        "{}",
        posted[0].text
    );
    let buttons = posted[0].reply_markup.clone().expect("buttons");
    let approve = buttons["inline_keyboard"][0][0]["callback_data"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(approve, format!("apr:{approval}:a"));

    // Someone outside the admin chats cannot decide.
    tg.push_callback_query(bob(), ChatSpec::Private, posted[0].message_id, &approve);
    let answered = tg.wait_for_calls("answerCallbackQuery", 1, WAIT).await;
    assert!(
        answered[0]["text"]
            .as_str()
            .unwrap()
            .contains("admin chats"),
        "{}",
        answered[0]
    );
    assert!(target.requests().is_empty());

    tg.push_callback_query(alice(), ChatSpec::Private, posted[0].message_id, &approve);
    let resolved = events
        .wait_for("approval:resolved", WAIT, |p| {
            p["approvalId"] == approval.as_str()
        })
        .await;
    assert_eq!(resolved["payload"]["status"], "approved");
    assert_eq!(resolved["payload"]["decidedBy"], "telegram:@alice");
    events.wait_for("agent:run:complete", WAIT, |_| true).await;
    assert_eq!(target.requests().len(), 1, "the approved call ran once");
    // The request in the chat shows the outcome, and its buttons are gone.
    let edited = tg.wait_for_calls("editMessageText", 1, WAIT).await;
    assert!(
        edited[0]["text"]
            .as_str()
            .unwrap()
            .contains("approved by telegram:@alice"),
        "{}",
        edited[0]
    );
    assert!(edited[0].get("reply_markup").is_none(), "{}", edited[0]);
    let answered = tg.wait_for_calls("answerCallbackQuery", 2, WAIT).await;
    assert_eq!(answered[1]["text"], "Approved.");
}

#[actix_rt::test]
async fn telegram_webhook_mode_registers_and_takes_signed_updates() {
    let llm = MessagesApi::start();
    let tg = TelegramBotApi::start(TOKEN);
    let s = TestServer::with_llm(&llm.url, &[]);
    let session = s.setup().await;
    let mut events = Events::connect(&s, &session).await;
    let id = create_telegram(
        &s,
        &session,
        &tg,
        json!({"config": {"mode": "webhook", "publicUrl": s.url("")}}),
    )
    .await;
    connected(&mut events, &id).await;
    let hook = tg
        .webhook()
        .unwrap_or_else(|| panic!("setWebhook was not called: {:?}", tg.all_calls()));
    assert_eq!(hook.url, s.url(&format!("/webhook/telegram/{id}")));
    let secret = hook.secret_token.expect("a secret token");
    assert!(!tg.is_polling(), "webhook mode does not poll");

    // What Telegram would POST: an update, with the secret token in the header.
    let pushed = tg.push(Inbound::new(ChatSpec::Private, alice(), "via webhook"));
    let update = tg.update(pushed.update_id).unwrap().to_string();
    let post = |token: Option<&str>| {
        let req = client(None).post(s.url(&format!("/webhook/telegram/{id}")));
        match token {
            Some(t) => req.insert_header(("x-telegram-bot-api-secret-token", t.to_string())),
            None => req,
        }
    };
    let forged = send_raw(post(Some("guess")), "application/json", &update).await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED);
    let missing = send_raw(post(None), "application/json", &update).await;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
    let ok = send_raw(post(Some(&secret)), "application/json", &update).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    // Telegram redelivers when unsure: the same update is not answered twice.
    let again = send_raw(post(Some(&secret)), "application/json", &update).await;
    assert_eq!(again.status, StatusCode::OK);
    let garbage = send_raw(post(Some(&secret)), "application/json", "{\"nope\":1}").await;
    assert_eq!(garbage.status, StatusCode::BAD_REQUEST);
    let sent = tg.wait_for_sent(1, WAIT).await;
    assert!(sent[0].plain_text.contains("via webhook"), "{sent:?}");
    let page = s
        .get(&format!("/api/channels/{id}/messages"), Some(&session))
        .await;
    assert_eq!(
        page.body["messages"].as_array().unwrap().len(),
        1,
        "{}",
        page.body
    );
    // Unknown channels are not found; the route is not a way to probe secrets.
    let unknown = send_raw(
        client(None).post(s.url("/webhook/telegram/nope")),
        "application/json",
        &update,
    )
    .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}
