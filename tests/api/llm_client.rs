//! The model API client against the Messages API stand-in, below the gateway.

use std::time::Duration;

use agent_runner::{LlmClient, LlmConfig, LlmRequest, Message};
use futures_util::StreamExt;
use loop_gateway_stand_ins::MessagesApi;

/// Over one shared HTTP/2 connection, thousands of streamed answers in a row must not wear the
/// connection out. (Dropping each SSE body at `message_stop` reset its stream; the server's
/// closing frame then counted as a protocol error, and h2 gives up on a connection after 1,024.)
#[actix_rt::test]
async fn thousands_of_streamed_calls_share_one_http2_connection() {
    let api = MessagesApi::start();
    // The end of each stream comes in its own frame, a little after `message_stop`; answers
    // take a moment, so there are always calls waiting on the connection.
    api.set_close_delay(Duration::from_millis(5));
    api.set_delay(Duration::from_millis(20));
    let client = LlmClient::new(LlmConfig {
        base_url: api.url.clone(),
        api_key: Some("sk-test".into()),
        streaming: true,
        max_retries: 0,
        http2_prior_knowledge: true,
        ..LlmConfig::default()
    })
    .unwrap();
    let req = LlmRequest {
        model: "claude-test".into(),
        system: None,
        messages: vec![Message::user_text("hi")],
        tools: Vec::new().into(),
        max_tokens: 64,
    };
    let calls = 8_000;
    let failures: Vec<String> = futures_util::stream::iter(0..calls)
        .map(|_| client.send_once(&req))
        .buffer_unordered(256)
        .filter_map(|r| async move { r.err().map(|e| e.to_string()) })
        .collect()
        .await;
    assert!(
        failures.is_empty(),
        "{} of {calls} calls failed, first: {}",
        failures.len(),
        failures[0]
    );
    assert_eq!(api.request_count(), calls);
}
