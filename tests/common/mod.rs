//! The test harness: `TestServer` starts the real `loop-gateway` binary on an ephemeral port
//! with a temporary data directory (both dropped with it) and offers calls that read like the
//! API. Peers (stand-ins, mail servers, browsers) are guard objects of the same kind.

#![allow(dead_code)]

pub mod mail;

use std::io::{BufRead, BufReader};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use awc::http::StatusCode;
use serde_json::{json, Value};

pub const BIN: &str = env!("CARGO_BIN_EXE_loop-gateway");
pub const ADMIN: &str = "admin";
pub const PASSWORD: &str = "correct horse battery";

/// A running gateway. Killed when dropped; its data directory goes with it.
pub struct TestServer {
    pub dir: tempfile::TempDir,
    pub base: String,
    pub port: u16,
    child: Option<Child>,
    env: Vec<(String, String)>,
}

/// A response: status, headers and the body parsed as JSON (Null when empty or not JSON).
pub struct Reply {
    pub status: StatusCode,
    pub headers: awc::http::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }

    /// The error code of an error-shaped body; panics when the body is not that shape.
    pub fn error_code(&self) -> &str {
        self.body["error"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("not an error body: {} {}", self.status, self.body))
    }
}

impl TestServer {
    /// Start with test defaults (fast bcrypt) plus `env`.
    pub fn start_with(env: &[(&str, &str)]) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Self::start_in_owned(dir, env)
    }

    fn start_in_owned(dir: tempfile::TempDir, env: Vec<(String, String)>) -> TestServer {
        let mut s = TestServer {
            dir,
            base: String::new(),
            port: 0,
            child: None,
            env,
        };
        s.spawn();
        s
    }

    /// Start on an existing directory (its `data/` is the data directory).
    pub fn start_in(dir: tempfile::TempDir, env: &[(&str, &str)]) -> TestServer {
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Self::start_in_owned(dir, env)
    }

    /// Stop the server (if running) and keep its directory.
    pub fn into_dir(mut self) -> tempfile::TempDir {
        self.kill();
        let dir = tempfile::tempdir().expect("temp dir");
        std::mem::replace(&mut self.dir, dir)
    }

    pub fn start() -> TestServer {
        Self::start_with(&[])
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn db_path(&self) -> PathBuf {
        self.data_dir().join("gateway.db")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("gateway.log")
    }

    /// Every byte of the database files (main file, WAL, shared memory) as text, to search
    /// for secrets that must not be there.
    pub fn database_text(&self) -> String {
        let mut bytes = Vec::new();
        for entry in std::fs::read_dir(self.data_dir()).expect("data dir") {
            let path = entry.expect("entry").path();
            if path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("gateway.db"))
            {
                bytes.extend(std::fs::read(path).expect("read"));
            }
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// A command for the binary with this server's environment (for subcommands too).
    pub fn command(&self) -> Command {
        command_in(self.dir.path(), &self.env)
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("log file");
        let mut cmd = self.command();
        // Reuse the same port across restarts so clients keep their URL.
        cmd.env("PORT", self.port.to_string())
            .stdout(Stdio::piped())
            .stderr(log);
        let mut child = cmd.spawn().expect("start loop-gateway");
        let Some(addr) =
            loop_gateway_stand_ins::wait_listening(&mut child, Duration::from_secs(30))
        else {
            let _ = child.kill();
            panic!(
                "loop-gateway did not start; its log:\n{}",
                std::fs::read_to_string(self.log_path()).unwrap_or_default()
            );
        };
        self.port = addr
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port");
        self.base = format!("http://127.0.0.1:{}", self.port);
        self.child = Some(child);
    }

    /// Stop with SIGTERM and wait for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        wait_with_timeout(&mut child, Duration::from_secs(20))
    }

    /// Stop with SIGKILL (a crash).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start again after `kill` (a crash), on the same data directory and port.
    pub fn restart_after_kill(&mut self) {
        assert!(self.child.is_none(), "kill first");
        self.spawn();
    }

    /// Stop gracefully and start again on the same data directory and port.
    pub fn restart(&mut self) {
        let status = self.terminate();
        assert!(status.success(), "clean exit before restart: {status:?}");
        self.spawn();
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        send(client(None).get(self.url(path)), token, None).await
    }

    pub async fn post(&self, path: &str, body: Value, token: Option<&str>) -> Reply {
        send(client(None).post(self.url(path)), token, Some(body)).await
    }

    pub async fn put_json(&self, path: &str, body: Value, token: &str) -> Reply {
        send(client(None).put(self.url(path)), Some(token), Some(body)).await
    }

    pub async fn delete(&self, path: &str, token: Option<&str>) -> Reply {
        send(client(None).delete(self.url(path)), token, None).await
    }

    /// A GET from another loopback address (a different client IP).
    pub async fn get_from(&self, ip: &str, path: &str, token: Option<&str>) -> Reply {
        let ip: IpAddr = ip.parse().expect("ip");
        send(client(Some(ip)).get(self.url(path)), token, None).await
    }

    /// Create the admin account; returns its session token.
    pub async fn setup(&self) -> String {
        let r = self
            .post(
                "/api/auth/setup",
                json!({"username": ADMIN, "password": PASSWORD}),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "setup: {}", r.body);
        r.body["token"].as_str().expect("token").to_string()
    }

    pub async fn login(&self, username: &str, password: &str) -> Reply {
        self.post(
            "/api/auth/login",
            json!({"username": username, "password": password}),
            None,
        )
        .await
    }

    /// Log in as the admin and return the token.
    pub async fn login_token(&self) -> String {
        let r = self.login(ADMIN, PASSWORD).await;
        assert_eq!(r.status, StatusCode::OK, "login: {}", r.body);
        r.body["token"].as_str().expect("token").to_string()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A command for the binary, isolated from the developer's environment and `.env`.
pub fn command_in(dir: &Path, env: &[(String, String)]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOST", "127.0.0.1")
        .env("PORT", "0")
        .env("DATA_DIR", dir.join("data"))
        .env("BCRYPT_COST", "4")
        .env("LOG_FORMAT", "json")
        .env("HTTP_WORKERS", "2");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

pub fn wait_with_timeout(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("process did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn client(local: Option<IpAddr>) -> awc::Client {
    let mut connector = awc::Connector::new();
    if let Some(ip) = local {
        connector = connector.local_address(ip);
    }
    awc::Client::builder()
        .connector(connector)
        .timeout(Duration::from_secs(30))
        .finish()
}

pub async fn send(req: awc::ClientRequest, token: Option<&str>, body: Option<Value>) -> Reply {
    let req = match token {
        Some(t) => req.insert_header(("authorization", format!("Bearer {t}"))),
        None => req,
    };
    let mut res = match body {
        Some(b) => req.send_json(&b).await,
        None => req.send().await,
    }
    .expect("request");
    let bytes = res.body().limit(64 * 1024 * 1024).await.expect("body");
    Reply {
        status: res.status(),
        headers: res.headers().clone(),
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    }
}

/// Send a raw body with a given content type.
pub async fn send_raw(req: awc::ClientRequest, content_type: &str, body: &str) -> Reply {
    let mut res = req
        .insert_header(("content-type", content_type))
        .send_body(body.to_string())
        .await
        .expect("request");
    let bytes = res.body().limit(64 * 1024 * 1024).await.expect("body");
    Reply {
        status: res.status(),
        headers: res.headers().clone(),
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    }
}

/// The environment that points a gateway at a Messages API stand-in, with fast retries.
pub fn llm_env(url: &str) -> Vec<(&'static str, String)> {
    vec![
        ("ANTHROPIC_BASE_URL", url.to_string()),
        (
            "ANTHROPIC_API_KEY",
            "sk-ant-test-key-0123456789".to_string(),
        ),
        ("LLM_RETRY_BASE_MS", "10".to_string()),
        ("WEBHOOK_RETRY_BASE_MS", "50".to_string()),
    ]
}

impl TestServer {
    /// Start pointed at a Messages API stand-in, plus `extra` settings.
    pub fn with_llm(url: &str, extra: &[(&str, &str)]) -> TestServer {
        let mut env: Vec<(String, String)> = llm_env(url)
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        for (k, v) in extra {
            env.retain(|(key, _)| key != k);
            env.push((k.to_string(), v.to_string()));
        }
        let dir = tempfile::tempdir().expect("temp dir");
        Self::start_in_owned(dir, env)
    }

    /// Create a webhook; returns (id, token, signing secret).
    pub async fn create_webhook(&self, session: &str, body: Value) -> (String, String, String) {
        let r = self.post("/api/webhooks", body, Some(session)).await;
        assert_eq!(r.status, StatusCode::CREATED, "create webhook: {}", r.body);
        (
            r.body["id"].as_str().unwrap().to_string(),
            r.body["token"].as_str().unwrap().to_string(),
            r.body["signingSecret"].as_str().unwrap().to_string(),
        )
    }

    /// `POST /webhook/invoke/<token>`.
    pub async fn invoke(&self, token: &str, body: Value) -> Reply {
        self.post(&format!("/webhook/invoke/{token}"), body, None)
            .await
    }

    /// Set up the admin and a webhook; returns (session, webhook token).
    pub async fn ready_webhook(&self) -> (String, String) {
        let session = self.setup().await;
        let (_, token, _) = self
            .create_webhook(&session, json!({"name": "test", "platform": "generic"}))
            .await;
        (session, token)
    }
}

/// A WebSocket on the gateway's event stream, past its `ws:ready` frame.
pub struct Events {
    conn: actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec>,
}

impl Events {
    pub async fn connect(server: &TestServer, session: &str) -> Events {
        let (_, conn) = client(None)
            .ws(server.url("/ws").replace("http://", "ws://").as_str())
            .bearer_auth(session)
            .connect()
            .await
            .expect("websocket");
        let mut events = Events { conn };
        assert_eq!(
            events.next(Duration::from_secs(10)).await["event"],
            "ws:ready"
        );
        events
    }

    pub async fn next(&mut self, limit: Duration) -> Value {
        use futures_util::{SinkExt, StreamExt};
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.conn.next())
                .await
                .expect("an event in time")
                .expect("stream open")
                .expect("valid frame");
            match frame {
                awc::ws::Frame::Text(bytes) => {
                    return serde_json::from_slice(&bytes).expect("json")
                }
                // Answer the server's heartbeat, as a browser does, so long waits stay open.
                awc::ws::Frame::Ping(p) => {
                    let _ = self.conn.send(awc::ws::Message::Pong(p)).await;
                }
                awc::ws::Frame::Pong(_) => continue,
                other => panic!("unexpected frame {other:?}"),
            }
        }
    }

    /// The next `channel:status` event of this channel with this status.
    pub async fn channel_status(
        &mut self,
        channel_id: &str,
        status: &str,
        limit: Duration,
    ) -> Value {
        self.wait_for("channel:status", limit, |p| {
            p["channelId"] == channel_id && p["status"] == status
        })
        .await
    }

    /// The first event named `name` whose payload matches `pred`.
    pub async fn wait_for(
        &mut self,
        name: &str,
        limit: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let ev = self.next(left).await;
            if ev["event"] == name && pred(&ev["payload"]) {
                return ev;
            }
        }
    }
}

/// A free TCP port on 127.0.0.1 (for peers that must be told their port).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A Python LLM peer from tests/peers (fakellm, or llama.cpp serving SmolLM2), installed by
/// `tests/peers/install.sh`. Stopped when dropped.
pub struct PythonPeer {
    pub url: String,
    child: Child,
}

impl PythonPeer {
    fn start(script: &str, args: &[String], env: &[(&str, String)]) -> PythonPeer {
        let peers = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers");
        let venv = std::env::var("LG_PEERS_VENV")
            .unwrap_or_else(|_| "/var/tmp/loop-gateway-peers-venv".into());
        assert!(
            Path::new(&venv).join("bin/python").exists(),
            "the LLM test peers are not installed at {venv}: run tests/peers/install.sh \
             (tests/run.sh does)"
        );
        for _attempt in 0..3 {
            let port = free_port();
            let mut cmd = Command::new(format!("{peers}/{script}"));
            cmd.args(args).arg(port.to_string());
            for (k, v) in env {
                cmd.env(k, v);
            }
            let mut child = cmd
                .env("LG_PEERS_VENV", &venv)
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("start peer");
            let stdout = child.stdout.take().expect("stdout");
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if line.starts_with("READY ") {
                        let _ = tx.send(());
                    }
                }
            });
            if rx.recv_timeout(Duration::from_secs(60)).is_ok() {
                return PythonPeer {
                    url: format!("http://127.0.0.1:{port}"),
                    child,
                };
            }
            // The port may have been taken between choosing and binding it: try another.
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("{script} did not become ready");
    }

    /// fakellm with a rules file from tests/peers; `env` fills its placeholders.
    pub fn fakellm(rules: &str, env: &[(&str, String)]) -> PythonPeer {
        let rules = format!("{}/tests/peers/{rules}", env!("CARGO_MANIFEST_DIR"));
        Self::start("fakellm_server.sh", &[rules], env)
    }

    /// llama.cpp's server with SmolLM2-135M: `/v1/messages` and `/v1/chat/completions`.
    pub fn smollm2() -> PythonPeer {
        Self::start("llama_server.sh", &[], &[])
    }
}

impl Drop for PythonPeer {
    fn drop(&mut self) {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let _ = wait_with_timeout(&mut self.child, Duration::from_secs(10));
    }
}

/// Check `probe` until it holds (each try is a real request, not a timer standing in for an
/// event); for state that a peer outside the gateway saw before the gateway recorded it.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !probe().await {
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
