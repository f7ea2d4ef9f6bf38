use std::io::Write;
use std::process::Stdio;

use awc::http::StatusCode;

use crate::common::{wait_with_timeout, TestServer, ADMIN, PASSWORD};

const LATEST_VERSION: i64 = 8;

fn user_version(path: &std::path::Path) -> i64 {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap()
}

#[actix_rt::test]
async fn users_and_sessions_survive_a_restart() {
    let mut s = TestServer::start();
    let token = s.setup().await;
    // A row the schema must not wipe when it is applied again at start.
    {
        let conn = rusqlite::Connection::open(s.db_path()).unwrap();
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .unwrap();
        conn.execute(
            "INSERT INTO agent_runs (id, source, status, input, created_at)
             VALUES ('run-1', 'webhook', 'complete', 'hi', 1700000000000),
                    ('run-2', 'webhook', 'running', 'hello', 1700000000001)",
            [],
        )
        .unwrap();
    }
    s.restart();
    assert_eq!(
        s.get("/api/auth/me", Some(&token)).await.status,
        StatusCode::OK
    );
    assert_eq!(s.login(ADMIN, PASSWORD).await.status, StatusCode::OK);
    let runs = s.get("/api/runs", Some(&token)).await;
    assert_eq!(runs.body["total"], 2);
    // The run that was in flight when the gateway stopped is marked, not left "running".
    let interrupted = s.get("/api/runs?status=interrupted", Some(&token)).await;
    assert_eq!(interrupted.body["total"], 1);
    assert_eq!(interrupted.body["items"][0]["id"], "run-2");
    assert_eq!(user_version(&s.db_path()), LATEST_VERSION);
}

#[actix_rt::test]
async fn a_database_at_an_older_version_is_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    // Build a version-1 database by hand: only the first migration, and a user in it.
    let schema =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schema.sql")).unwrap();
    let v1 = schema
        .split("\n-- migration: 2")
        .next()
        .unwrap()
        .split("\n-- migration: 1")
        .nth(1)
        .unwrap();
    let hash = bcrypt::hash(PASSWORD, 4).unwrap();
    {
        let conn = rusqlite::Connection::open(data.join("gateway.db")).unwrap();
        conn.execute_batch(v1).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute(
            "INSERT INTO users (username, password_hash, created_at, updated_at) VALUES (?1, ?2, 0, 0)",
            rusqlite::params![ADMIN, hash],
        )
        .unwrap();
    }
    let s = TestServer::start_in(dir, &[]);
    let token = s.login_token().await;
    assert_eq!(
        s.get("/api/runs", Some(&token)).await.status,
        StatusCode::OK
    );
    assert_eq!(user_version(&s.db_path()), LATEST_VERSION);
}

#[actix_rt::test]
async fn a_database_from_a_newer_version_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let db = data.join("gateway.db");
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch("CREATE TABLE future (x)").unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
    }
    let out = crate::common::command_in(dir.path(), &[]).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("newer than this loop-gateway supports"),
        "{stderr}"
    );
    assert_eq!(user_version(&db), 99);
}

#[actix_rt::test]
async fn migrate_subcommand_applies_and_exits() {
    let dir = tempfile::tempdir().unwrap();
    let out = crate::common::command_in(dir.path(), &[])
        .arg("migrate")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("schema version {LATEST_VERSION}")),
        "{stdout}"
    );
    assert_eq!(
        user_version(&dir.path().join("data/gateway.db")),
        LATEST_VERSION
    );
}

#[actix_rt::test]
async fn admin_reset_password_works_offline() {
    let mut s = TestServer::start();
    let old_token = s.setup().await;
    assert!(s.terminate().success());

    let mut child = s
        .command()
        .args(["admin", "reset-password", ADMIN])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"a brand new password\n")
        .unwrap();
    assert!(wait_with_timeout(&mut child, std::time::Duration::from_secs(20)).success());

    let unknown = s
        .command()
        .args(["admin", "reset-password", "nobody"])
        .stdin(Stdio::piped())
        .output()
        .unwrap();
    assert!(!unknown.status.success());

    s = TestServer::start_in(s.into_dir(), &[]);
    assert_eq!(
        s.login(ADMIN, PASSWORD).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        s.login(ADMIN, "a brand new password").await.status,
        StatusCode::OK
    );
    assert_eq!(
        s.get("/api/auth/me", Some(&old_token)).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[actix_rt::test]
async fn tokens_and_passwords_never_reach_the_database_in_plain_text() {
    let mut s = TestServer::start();
    let token = s.setup().await;
    let second = s.login_token().await;
    let ticket = s
        .post("/api/auth/ws-ticket", serde_json::json!({}), Some(&token))
        .await;
    assert_eq!(ticket.status, StatusCode::OK);
    // Stop so the WAL is checkpointed, then read every file of the database.
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
    let haystack = String::from_utf8_lossy(&bytes);
    assert!(haystack.contains(ADMIN), "sanity: the username is there");
    for secret in [token.as_str(), second.as_str(), PASSWORD] {
        assert!(!haystack.contains(secret), "plain secret in the database");
    }
    let logs = s.logs();
    for secret in [token.as_str(), second.as_str(), PASSWORD] {
        assert!(!logs.contains(secret), "plain secret in the log");
    }
}

#[cfg(unix)]
#[actix_rt::test]
async fn the_generated_secret_key_is_private_and_reused() {
    use std::os::unix::fs::PermissionsExt;
    let mut s = TestServer::start();
    let key_path = s.data_dir().join("secret.key");
    let key = std::fs::read_to_string(&key_path).unwrap();
    assert_eq!(key.trim().len(), 64);
    let mode = std::fs::metadata(&key_path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    s.restart();
    assert_eq!(std::fs::read_to_string(&key_path).unwrap(), key);
}
