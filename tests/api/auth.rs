use awc::http::StatusCode;
use serde_json::json;

use crate::common::{TestServer, ADMIN, PASSWORD};

#[actix_rt::test]
async fn setup_happens_once_then_conflicts() {
    let s = TestServer::start();
    let status = s.get("/api/auth/status", None).await;
    assert_eq!(status.body["setupRequired"], true);
    assert_eq!(status.body["setupCodeRequired"], false);
    assert_eq!(status.body["authenticated"], false);

    let token = s.setup().await;
    assert_eq!(token.len(), 64);
    let status = s.get("/api/auth/status", None).await;
    assert_eq!(status.body["setupRequired"], false);

    let again = s
        .post(
            "/api/auth/setup",
            json!({"username": "intruder", "password": "another password"}),
            None,
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(again.error_code(), "conflict");
    // The intruder's account was not created.
    assert_eq!(
        s.login("intruder", "another password").await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[actix_rt::test]
async fn setup_validates_credentials() {
    let s = TestServer::start();
    for body in [
        json!({"username": "admin", "password": "short"}),
        json!({"username": "", "password": "long enough password"}),
        json!({"username": "bad name!", "password": "long enough password"}),
        json!({"username": "admin", "password": "x".repeat(73)}),
        json!({"username": "admin", "password": "long enough", "role": "root"}),
    ] {
        let r = s.post("/api/auth/setup", body.clone(), None).await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {}",
            r.body
        );
    }
    // Nothing was created by the refused attempts.
    assert_eq!(
        s.get("/api/auth/status", None).await.body["setupRequired"],
        true
    );
}

#[actix_rt::test]
async fn login_right_and_wrong() {
    let s = TestServer::start();
    s.setup().await;
    let ok = s.login(ADMIN, PASSWORD).await;
    assert_eq!(ok.status, StatusCode::OK);
    assert!(ok.body["expiresAt"].as_str().unwrap().ends_with('Z'));
    // Usernames are case-insensitive.
    assert_eq!(s.login("ADMIN", PASSWORD).await.status, StatusCode::OK);

    let wrong = s.login(ADMIN, "not the password").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.error_code(), "unauthorized");
    let unknown = s.login("nobody", PASSWORD).await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    // The same message for both, so usernames cannot be probed.
    assert_eq!(
        wrong.body["error"]["message"],
        unknown.body["error"]["message"]
    );
}

#[actix_rt::test]
async fn logout_ends_the_session_only() {
    let s = TestServer::start();
    let first = s.setup().await;
    let second = s.login_token().await;
    assert_eq!(
        s.get("/api/auth/me", Some(&first)).await.body["username"],
        ADMIN
    );

    let out = s.post("/api/auth/logout", json!({}), Some(&first)).await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    assert_eq!(
        s.get("/api/runs", Some(&first)).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        s.get("/api/runs", Some(&second)).await.status,
        StatusCode::OK
    );
    // Logging out twice is a 401, not a crash.
    assert_eq!(
        s.post("/api/auth/logout", json!({}), Some(&first))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
}

#[actix_rt::test]
async fn unknown_malformed_and_expired_tokens_are_refused() {
    let s = TestServer::start();
    let token = s.setup().await;
    for bad in ["", "nope", &"0".repeat(64)] {
        let r = s.get("/api/runs", Some(bad)).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "token {bad:?}");
        assert_eq!(r.error_code(), "unauthorized");
    }
    assert_eq!(
        s.get("/api/runs", None).await.status,
        StatusCode::UNAUTHORIZED
    );

    // Expire the session in the database, as time would.
    let conn = rusqlite::Connection::open(s.db_path()).unwrap();
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .unwrap();
    assert_eq!(
        conn.execute("UPDATE sessions SET expires_at = 1", [])
            .unwrap(),
        1
    );
    let r = s.get("/api/runs", Some(&token)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("expired"));
}

#[actix_rt::test]
async fn beyond_loopback_setup_needs_the_code_from_the_log() {
    let s = TestServer::start_with(&[("HOST", "0.0.0.0")]);
    let status = s.get("/api/auth/status", None).await;
    assert_eq!(status.body["setupCodeRequired"], true);

    let body = json!({"username": ADMIN, "password": PASSWORD});
    let r = s.post("/api/auth/setup", body.clone(), None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let mut wrong = body.clone();
    wrong["setupCode"] = json!("WRONGCODE0");
    assert_eq!(
        s.post("/api/auth/setup", wrong, None).await.status,
        StatusCode::FORBIDDEN
    );

    let code = s
        .logs()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find_map(|v| v["fields"]["setup_code"].as_str().map(str::to_string))
        .expect("setup code in the log");
    let mut right = body;
    right["setupCode"] = json!(code);
    assert_eq!(
        s.post("/api/auth/setup", right, None).await.status,
        StatusCode::CREATED
    );
}

#[actix_rt::test]
async fn the_dashboard_session_cookie_is_httponly_and_csrf_guarded() {
    use crate::common::{client, send_raw};
    let s = TestServer::start();
    s.setup().await;
    let login = s.login(ADMIN, PASSWORD).await;
    let set_cookie = login.header("set-cookie").expect("a session cookie");
    assert!(set_cookie.starts_with("lg_session="), "{set_cookie}");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set_cookie.contains(attr), "{attr} missing: {set_cookie}");
    }
    let cookie = set_cookie.split(';').next().unwrap().to_string();

    // Reads work with the cookie alone.
    let me = send_raw(
        client(None)
            .get(s.url("/api/auth/me"))
            .insert_header(("cookie", cookie.clone())),
        "application/json",
        "",
    )
    .await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.body);

    // A change with only the cookie (what a forged cross-site form would send) is refused...
    let url = s.url("/api/webhooks");
    let forged = send_raw(
        client(None)
            .post(&url)
            .insert_header(("cookie", cookie.clone())),
        "application/json",
        r#"{"name":"x"}"#,
    )
    .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert_eq!(forged.error_code(), "csrf_header_required");
    // ...and accepted with the dashboard's header.
    let ok = send_raw(
        client(None)
            .post(&url)
            .insert_header(("cookie", cookie.clone()))
            .insert_header(("x-requested-with", "loop-gateway")),
        "application/json",
        r#"{"name":"x"}"#,
    )
    .await;
    assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.body);

    // Logout ends the session and clears the cookie.
    let out = send_raw(
        client(None)
            .post(s.url("/api/auth/logout"))
            .insert_header(("cookie", cookie.clone()))
            .insert_header(("x-requested-with", "loop-gateway")),
        "application/json",
        "{}",
    )
    .await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    assert!(out.header("set-cookie").unwrap().contains("Max-Age=0"));
    let after = send_raw(
        client(None)
            .get(s.url("/api/auth/me"))
            .insert_header(("cookie", cookie)),
        "application/json",
        "",
    )
    .await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED);
}
