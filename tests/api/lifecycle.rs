use awc::http::StatusCode;

use crate::common::{command_in, TestServer};

#[actix_rt::test]
async fn sigterm_exits_cleanly() {
    let mut s = TestServer::start();
    assert_eq!(s.get("/api/health", None).await.status, StatusCode::OK);
    let status = s.terminate();
    assert!(status.success(), "exit status {status:?}");
    assert!(s.logs().contains("shutting down"));
}

#[actix_rt::test]
async fn health_reports_database_and_supervised_actors() {
    let s = TestServer::start();
    let h = s.get("/api/health", None).await;
    assert_eq!(h.status, StatusCode::OK);
    assert_eq!(h.body["status"], "ok");
    assert_eq!(h.body["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(h.body["database"]["ok"], true);
    assert!(h.body["uptimeSeconds"].is_u64());
    let actors = h.body["actors"].as_array().unwrap();
    let bus = actors
        .iter()
        .find(|a| a["name"] == "event_bus")
        .expect("event bus listed");
    assert_eq!(bus["restarts"], 0);
}

#[actix_rt::test]
async fn openapi_document_matches_the_routes() {
    let s = TestServer::start();
    let token = s.setup().await;
    let doc = s.get("/api/openapi.json", None).await;
    assert_eq!(doc.status, StatusCode::OK);
    let paths = doc.body["paths"].as_object().unwrap();
    for p in [
        "/api/auth/login",
        "/api/auth/setup",
        "/api/health",
        "/api/runs",
    ] {
        assert!(paths.contains_key(p), "{p} documented");
    }
    // Every documented GET without parameters answers (no 404/405): the document cannot
    // describe a route that does not exist.
    for (path, item) in paths {
        if item.get("get").is_some() && !path.contains('{') {
            let r = s.get(path, Some(&token)).await;
            assert!(
                r.status != StatusCode::NOT_FOUND && r.status != StatusCode::METHOD_NOT_ALLOWED,
                "{path}: {}",
                r.status
            );
        }
    }
}

#[actix_rt::test]
async fn the_dashboard_page_is_served() {
    let s = TestServer::start();
    let mut res = crate::common::client(None)
        .get(s.url("/"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let ct = res
        .headers()
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(ct.starts_with("text/html"), "{ct}");
    let body = res.body().await.unwrap();
    assert!(String::from_utf8_lossy(&body).contains("Loop Gateway"));
}

#[test]
fn invalid_configuration_names_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    for (var, value) in [
        ("PORT", "eighty"),
        ("GATEWAY_SECRET_KEY", "too-short"),
        ("RATE_LIMIT_PER_MINUTE", "0"),
        ("LOG_FORMAT", "xml"),
        ("TRUSTED_PROXIES", "not-an-ip"),
        ("ANTHROPIC_BASE_URL", "ftp://example"),
    ] {
        let out = command_in(dir.path(), &[(var.to_string(), value.to_string())])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{var}={value} accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(var), "{var}: {stderr}");
        // The secret itself is never echoed back.
        if var == "GATEWAY_SECRET_KEY" {
            assert!(!stderr.contains(value), "{stderr}");
        }
    }
}

#[test]
fn a_taken_port_fails_start_up_clearly() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let dir = tempfile::tempdir().unwrap();
    let out = command_in(dir.path(), &[("PORT".into(), port.clone())])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{stderr}"
    );
}
