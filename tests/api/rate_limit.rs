use awc::http::StatusCode;

use crate::common::{client, send, TestServer, ADMIN, PASSWORD};

#[actix_rt::test]
async fn api_limit_answers_429_with_retry_after_and_spares_other_ips() {
    let s = TestServer::start_with(&[("RATE_LIMIT_PER_MINUTE", "5")]);
    for i in 0..5 {
        let r = s.get("/api/auth/status", None).await;
        assert_eq!(r.status, StatusCode::OK, "request {i}");
    }
    let limited = s.get("/api/auth/status", None).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.error_code(), "rate_limited");
    let retry: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");

    // Another client is not affected by the first one's limit.
    let other = s.get_from("127.0.0.2", "/api/auth/status", None).await;
    assert_eq!(other.status, StatusCode::OK);
}

#[actix_rt::test]
async fn forwarded_for_is_believed_only_from_trusted_proxies() {
    let get_as = |s: &TestServer, xff: &'static str| {
        let req = client(None)
            .get(s.url("/api/auth/status"))
            .insert_header(("x-forwarded-for", xff));
        send(req, None, None)
    };
    let trusting = TestServer::start_with(&[
        ("RATE_LIMIT_PER_MINUTE", "2"),
        ("TRUSTED_PROXIES", "127.0.0.1/32"),
    ]);
    assert_eq!(
        get_as(&trusting, "203.0.113.1").await.status,
        StatusCode::OK
    );
    assert_eq!(
        get_as(&trusting, "203.0.113.1").await.status,
        StatusCode::OK
    );
    assert_eq!(
        get_as(&trusting, "203.0.113.1").await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        get_as(&trusting, "203.0.113.2").await.status,
        StatusCode::OK
    );

    // Without trusted proxies the header is ignored: the peer is the client.
    let plain = TestServer::start_with(&[("RATE_LIMIT_PER_MINUTE", "2")]);
    assert_eq!(get_as(&plain, "203.0.113.1").await.status, StatusCode::OK);
    assert_eq!(get_as(&plain, "203.0.113.2").await.status, StatusCode::OK);
    assert_eq!(
        get_as(&plain, "203.0.113.3").await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[actix_rt::test]
async fn login_attempts_are_limited_harder() {
    let s = TestServer::start_with(&[("LOGIN_RATE_LIMIT_PER_MINUTE", "3")]);
    s.setup().await;
    // setup counted as one attempt from this IP; two wrong passwords use the rest.
    for _ in 0..2 {
        assert_eq!(
            s.login(ADMIN, "wrong password").await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    let limited = s.login(ADMIN, PASSWORD).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(limited.header("retry-after").is_some());
    // The general API is still open to this client.
    assert_eq!(s.get("/api/health", None).await.status, StatusCode::OK);
}

#[actix_rt::test]
async fn webhook_routes_are_limited_per_token() {
    let s = TestServer::start_with(&[("WEBHOOK_RATE_LIMIT_PER_MINUTE", "2")]);
    for _ in 0..2 {
        assert_ne!(
            s.get("/webhook/health/token-a", None).await.status,
            StatusCode::TOO_MANY_REQUESTS
        );
    }
    assert_eq!(
        s.get("/webhook/health/token-a", None).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_ne!(
        s.get("/webhook/health/token-b", None).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
}
