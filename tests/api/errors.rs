//! Every kind of bad input gets its status and the error shape, never a 500.

use awc::http::StatusCode;
use serde_json::json;

use crate::common::{client, send_raw, TestServer};

#[actix_rt::test]
async fn unknown_routes_and_wrong_methods() {
    let s = TestServer::start();
    let token = s.setup().await;

    let r = s.get("/api/nothing-here", Some(&token)).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.error_code(), "not_found");
    let r = s.get("/no/such/page", None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.error_code(), "not_found");

    let r = s.delete("/api/runs", Some(&token)).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.error_code(), "method_not_allowed");
    assert_eq!(r.header("allow").as_deref(), Some("GET"));
    let r = s.get("/api/auth/login", None).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.header("allow").as_deref(), Some("POST"));
}

#[actix_rt::test]
async fn bad_bodies() {
    let s = TestServer::start();
    let url = s.url("/api/auth/login");

    let r = send_raw(
        client(None).post(&url),
        "application/json",
        "{\"username\": ",
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.error_code(), "bad_request");

    let r = send_raw(client(None).post(&url), "text/plain", "username=admin").await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(r.error_code(), "unsupported_media_type");

    let big = json!({"username": "a".repeat(2 * 1024 * 1024), "password": "x"});
    let r = s.post("/api/auth/login", big, None).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.error_code(), "payload_too_large");

    let r = s
        .post(
            "/api/auth/login",
            json!({"username": 5, "password": []}),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.error_code(), "validation_failed");
    let r = s
        .post("/api/auth/login", json!({"username": "a"}), None)
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("password"));
}

#[actix_rt::test]
async fn bad_query_parameters() {
    let s = TestServer::start();
    let token = s.setup().await;
    for q in [
        "limit=0",
        "limit=201",
        "offset=-1",
        "status=bogus",
        "since=yesterday",
    ] {
        let r = s.get(&format!("/api/runs?{q}"), Some(&token)).await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{q}: {}",
            r.body
        );
    }
    let r = s.get("/api/runs?limit=abc", Some(&token)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.error_code(), "bad_request");
}

#[actix_rt::test]
async fn runs_list_has_the_shared_shape() {
    let s = TestServer::start();
    let token = s.setup().await;
    let r = s
        .get("/api/runs?limit=10&offset=0&status=complete", Some(&token))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.body,
        json!({"items": [], "total": 0, "limit": 10, "offset": 0})
    );
}
