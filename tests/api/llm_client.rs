//! The model API client against the Messages API stand-in, below the gateway.

use std::time::Duration;

use agent_runner::{LlmClient, LlmConfig, LlmRequest, Message};
use futures_util::StreamExt;
use loop_gateway_stand_ins::{LimitedH2Api, MessagesApi};

/// A client speaking HTTP/2 without TLS to `url`, without retries.
fn h2c_client(url: &str, streaming: bool, connections: usize) -> LlmClient {
    LlmClient::new(LlmConfig {
        base_url: url.to_string(),
        api_key: Some("sk-test".into()),
        streaming,
        max_retries: 0,
        http2_prior_knowledge: true,
        connections,
        ..LlmConfig::default()
    })
    .unwrap()
}

fn question() -> LlmRequest {
    LlmRequest {
        model: "claude-test".into(),
        system: None,
        messages: vec![Message::user_text("hi")],
        tools: Vec::new().into(),
        max_tokens: 64,
    }
}

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
    let client = h2c_client(&api.url, true, 1);
    let req = question();
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

/// A provider's edge allows only so many streams on one HTTP/2 connection; calls past that
/// would queue behind each other. The client spreads calls over its connections instead.
#[actix_rt::test]
async fn calls_spread_over_connections_past_a_providers_stream_limit() {
    // 50 streams per connection; the server answers once 150 calls are waiting together.
    let api = LimitedH2Api::start(50, 150, Duration::from_secs(10));
    let client = h2c_client(&api.url, false, 4);
    let req = question();
    let results = futures_util::future::join_all((0..150).map(|_| client.send_once(&req))).await;
    for r in &results {
        assert!(r.is_ok(), "{r:?}");
    }
    assert_eq!(api.max_in_flight(), 150, "all calls were in flight at once");
    assert!(api.connections() <= 4, "{} connections", api.connections());
}
