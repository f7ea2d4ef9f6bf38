use std::time::Duration;

use awc::ws;
use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::common::{client, TestServer, ADMIN, PASSWORD};

async fn next_json(conn: &mut actix_codec::Framed<awc::BoxedSocket, ws::Codec>) -> Value {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), conn.next())
            .await
            .expect("a frame within 10 s")
            .expect("stream open")
            .expect("valid frame");
        match frame {
            ws::Frame::Text(bytes) => return serde_json::from_slice(&bytes).expect("json frame"),
            ws::Frame::Ping(_) | ws::Frame::Pong(_) => continue,
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

#[actix_rt::test]
async fn websocket_refuses_missing_and_bad_credentials() {
    let s = TestServer::start();
    let token = s.setup().await;
    let ws_url = s.url("/ws").replace("http://", "ws://");

    for url in [
        ws_url.clone(),
        format!("{ws_url}?ticket=garbage"),
        format!("{ws_url}?ticket=1.99999999999999.00"),
        format!("{ws_url}?ticket={token}"),
    ] {
        let err = client(None).ws(url.as_str()).connect().await.err();
        match err {
            Some(awc::error::WsClientError::InvalidResponseStatus(status)) => {
                assert_eq!(status.as_u16(), 401, "{url}")
            }
            other => panic!("{url}: expected a 401 refusal, got {other:?}"),
        }
    }
    // A ticket stops working once its session is logged out.
    let ticket = s.post("/api/auth/ws-ticket", json!({}), Some(&token)).await;
    let ticket = ticket.body["ticket"].as_str().unwrap().to_string();
    s.post("/api/auth/logout", json!({}), Some(&token)).await;
    let err = client(None)
        .ws(format!("{ws_url}?ticket={ticket}").as_str())
        .connect()
        .await
        .err();
    assert!(matches!(
        err,
        Some(awc::error::WsClientError::InvalidResponseStatus(s)) if s.as_u16() == 401
    ));
}

#[actix_rt::test]
async fn websocket_delivers_bus_events() {
    let s = TestServer::start();
    let token = s.setup().await;
    let ticket = s.post("/api/auth/ws-ticket", json!({}), Some(&token)).await;
    assert_eq!(ticket.status.as_u16(), 200);
    let url = format!(
        "{}?ticket={}",
        s.url("/ws").replace("http://", "ws://"),
        ticket.body["ticket"].as_str().unwrap()
    );
    let before = s.get("/api/health", None).await.body["eventSubscribers"]
        .as_u64()
        .unwrap();
    let (_, mut conn) = client(None)
        .ws(url.as_str())
        .connect()
        .await
        .expect("connect");
    let ready = next_json(&mut conn).await;
    assert_eq!(ready["event"], "ws:ready");
    assert_eq!(ready["payload"]["username"], ADMIN);

    // A login elsewhere is an event on the bus, and reaches this dashboard.
    assert_eq!(s.login(ADMIN, PASSWORD).await.status.as_u16(), 200);
    let event = next_json(&mut conn).await;
    assert_eq!(event["event"], "auth:login");
    assert_eq!(event["payload"]["username"], ADMIN);
    assert_eq!(event["source"], "loop-gateway");
    assert!(event["timestamp"].as_str().unwrap().ends_with('Z'));
    let after = s.get("/api/health", None).await.body["eventSubscribers"]
        .as_u64()
        .unwrap();
    assert_eq!(after, before + 1);

    // Clients that can set headers may use the bearer token directly.
    let (_, mut direct) = client(None)
        .ws(s.url("/ws").replace("http://", "ws://").as_str())
        .bearer_auth(&token)
        .connect()
        .await
        .expect("connect with bearer");
    assert_eq!(next_json(&mut direct).await["event"], "ws:ready");
}
