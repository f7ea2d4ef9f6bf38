//! Agent runs against independent peers: fakellm scripting a tool-use conversation, and a real
//! (tiny) model, SmolLM2-135M, served by llama.cpp over both wire protocols.

use awc::http::StatusCode;
use loop_gateway_stand_ins::HttpTarget;
use serde_json::json;

use crate::common::{PythonPeer, TestServer};

#[actix_rt::test]
async fn fakellm_drives_a_tool_round_trip() {
    let target = HttpTarget::start();
    let llm = PythonPeer::fakellm(
        "tool_turn.yaml",
        &[("LG_TOOL_URL", format!("{}/json", target.url))],
    );
    let s = TestServer::with_llm(&llm.url, &[("HTTP_REQUEST_ALLOW", "127.0.0.1")]);
    let (session, token) = s.ready_webhook().await;
    let r = s
        .invoke(&token, json!({"message": "use the tool", "sync": true}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        r.body["reply"],
        "Done: the http_request tool returned its result."
    );
    assert_eq!(r.body["usage"]["llmCalls"], 2);
    let run = s
        .get(
            &format!("/api/runs/{}", r.body["runId"].as_str().unwrap()),
            Some(&session),
        )
        .await;
    let call = &run.body["toolCalls"][0];
    assert_eq!(call["name"], "http_request");
    assert_eq!(call["isError"], false, "{call}");
    assert!(call["output"].as_str().unwrap().contains("sunny"));
    assert_eq!(target.requests()[0].path, "/json");
}

#[actix_rt::test]
async fn a_real_model_answers_over_the_messages_api_and_chat_completions() {
    let llm = PythonPeer::smollm2();
    for provider in ["anthropic", "openai-compatible"] {
        let s = TestServer::with_llm(
            &llm.url,
            &[
                ("LLM_PROVIDER", provider),
                ("OPENAI_BASE_URL", llm.url.as_str()),
                ("DEFAULT_MODEL", "smollm2"),
                ("MAX_TOKENS", "48"),
                ("LLM_TIMEOUT_SECONDS", "120"),
            ],
        );
        let (session, token) = s.ready_webhook().await;
        let r = s
            .invoke(
                &token,
                json!({"message": "What is the capital of France?", "sync": true}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{provider}: {}", r.body);
        let reply = r.body["reply"].as_str().unwrap();
        assert!(!reply.trim().is_empty(), "{provider}: empty reply");
        assert!(
            r.body["usage"]["outputTokens"].as_u64().unwrap() > 0,
            "{provider}: {}",
            r.body
        );
        let usage = s.get("/api/usage", Some(&session)).await;
        assert_eq!(usage.body["calls"], 1, "{provider}");
        assert!(usage.body["outputTokens"].as_u64().unwrap() > 0);
    }
}
