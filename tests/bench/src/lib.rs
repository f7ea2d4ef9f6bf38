//! The benchmark: starts the real `loop-gateway` binary with a temporary database and a fast
//! Messages API stand-in (Rust, in this process), drives it over HTTP and WebSocket, and
//! reports each figure with a baseline measured in the same run, so machines of different
//! speed can be compared by ratio. Traffic goes only to 127.0.0.1; every phase is bounded.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use loop_gateway_stand_ins::{HttpTarget, MessagesApi};
use serde::Serialize;
use serde_json::{json, Value};

pub struct Options {
    /// The gateway binary (default: the workspace's target/release/loop-gateway).
    pub gateway: PathBuf,
    /// A few seconds instead of a few minutes (a smoke check).
    pub quick: bool,
    pub out: Option<PathBuf>,
    /// Run only the phases whose name contains this.
    pub only: Option<String>,
    /// Extra settings for the gateway under test (`NAME=value`), to compare configurations.
    pub env: Vec<(String, String)>,
}

impl Default for Options {
    fn default() -> Self {
        let target = std::env::var("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
        Self {
            gateway: target.join("release/loop-gateway"),
            quick: false,
            out: None,
            only: None,
            env: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    pub name: String,
    pub value: f64,
    pub unit: &'static str,
    pub goal: &'static str,
    /// What the same measure gives without the gateway (or before it), when there is one.
    pub baseline: Option<f64>,
    /// value / baseline.
    pub ratio: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub quick: bool,
    pub cores: usize,
    pub figures: Vec<Figure>,
}

impl Report {
    fn add(
        &mut self,
        name: &str,
        value: f64,
        unit: &'static str,
        goal: &'static str,
        baseline: Option<f64>,
    ) {
        let ratio = baseline.filter(|b| *b != 0.0).map(|b| value / b);
        println!("  {name}: {value:.3} {unit}");
        self.figures.push(Figure {
            name: name.to_string(),
            value,
            unit,
            goal,
            baseline,
            ratio,
        });
    }

    pub fn table(&self) -> String {
        let mut out = format!(
            "\n{:<58} {:>12} {:<8} {:>12} {:>8}  goal\n",
            "figure", "value", "unit", "baseline", "ratio"
        );
        for f in &self.figures {
            out.push_str(&format!(
                "{:<58} {:>12.3} {:<8} {:>12} {:>8}  {}\n",
                f.name,
                f.value,
                f.unit,
                f.baseline
                    .map(|b| format!("{b:.3}"))
                    .unwrap_or_else(|| "-".into()),
                f.ratio
                    .map(|r| format!("{r:.2}"))
                    .unwrap_or_else(|| "-".into()),
                f.goal
            ));
        }
        out
    }

    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

struct Sizes {
    sequential: usize,
    load_secs: u64,
    concurrency: usize,
    history: usize,
    subscribers: usize,
    dashboards: usize,
    waiting_runs: usize,
    slow_llm: Duration,
}

impl Sizes {
    fn new(quick: bool) -> Self {
        if quick {
            Sizes {
                sequential: 100,
                load_secs: 1,
                concurrency: 16,
                history: 300,
                subscribers: 20,
                dashboards: 10,
                waiting_runs: 200,
                slow_llm: Duration::from_millis(500),
            }
        } else {
            Sizes {
                sequential: 2000,
                load_secs: 8,
                concurrency: 64,
                history: 10_000,
                subscribers: 1000,
                dashboards: 200,
                waiting_runs: 10_000,
                slow_llm: Duration::from_secs(5),
            }
        }
    }
}

/// A gateway process on a temporary data directory; killed when dropped.
struct Gateway {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Gateway {
    fn start(opts: &Options, env: &[(&str, String)]) -> Result<Gateway, String> {
        let bin = &opts.gateway;
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let mut cmd = Command::new(bin);
        cmd.current_dir(dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("PORT", "0")
            .env("HOST", "127.0.0.1")
            .env("DATA_DIR", dir.path().join("data"))
            .env("BCRYPT_COST", "4")
            .env("LOG_LEVEL", "warn")
            .env("RATE_LIMIT_PER_MINUTE", "100000000")
            .env("WEBHOOK_RATE_LIMIT_PER_MINUTE", "100000000")
            .env("ANTHROPIC_API_KEY", "sk-bench")
            .env("HTTP_REQUEST_ALLOW", "127.0.0.1")
            .stdout(Stdio::piped())
            // BENCH_GATEWAY_STDERR=<file> keeps the gateway's log, for diagnosing a figure.
            .stderr(match std::env::var_os("BENCH_GATEWAY_STDERR") {
                Some(path) => std::fs::File::create(path)
                    .map(Stdio::from)
                    .map_err(|e| e.to_string())?,
                None => Stdio::null(),
            });
        for (k, v) in env {
            cmd.env(k, v);
        }
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let addr = loop_gateway_stand_ins::wait_listening(&mut child, Duration::from_secs(30))
            .ok_or("the gateway did not start")?;
        Ok(Gateway {
            child,
            base: format!("http://{addr}"),
            _dir: dir,
        })
    }

    fn status_kb(&self, field: &str) -> f64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with(field))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|v| v.parse().ok())
            })
            .unwrap_or(0.0)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn raise_fd_limit() {
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

fn client(connections: usize) -> awc::Client {
    awc::Client::builder()
        .connector(awc::Connector::new().limit(connections))
        .timeout(Duration::from_secs(120))
        .finish()
}

async fn post(
    c: &awc::Client,
    url: &str,
    body: &Value,
    auth: Option<&str>,
) -> Result<Value, String> {
    let mut req = c.post(url);
    if let Some(t) = auth {
        req = req.bearer_auth(t);
    }
    let mut res = req.send_json(body).await.map_err(|e| e.to_string())?;
    let bytes = res.body().limit(1 << 24).await.map_err(|e| e.to_string())?;
    if !res.status().is_success() {
        return Err(format!(
            "{} {}",
            res.status(),
            String::from_utf8_lossy(&bytes)
        ));
    }
    serde_json::from_slice(&bytes).map_err(|e| e.to_string())
}

async fn get_json(c: &awc::Client, url: &str) -> Value {
    match c.get(url).send().await {
        Ok(mut r) => r
            .json::<Value>()
            .limit(1 << 24)
            .await
            .unwrap_or(Value::Null),
        Err(_) => Value::Null,
    }
}

/// Admin session and a webhook token.
async fn prepare(c: &awc::Client, g: &Gateway) -> Result<(String, String), String> {
    let s = post(
        c,
        &format!("{}/api/auth/setup", g.base),
        &json!({"username": "bench", "password": "bench password"}),
        None,
    )
    .await?;
    let session = s["token"].as_str().ok_or("no session")?.to_string();
    let w = post(
        c,
        &format!("{}/api/webhooks", g.base),
        &json!({"name": "bench"}),
        Some(&session),
    )
    .await?;
    Ok((
        session,
        w["token"].as_str().ok_or("no webhook token")?.to_string(),
    ))
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// `n` round trips, one after another, from this thread to a thread that waits on its own
/// event loop (as the gateway's actors do) and back; sorted.
fn thread_round_trips(n: usize) -> Vec<Duration> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<tokio::sync::oneshot::Sender<()>>();
    let echo = std::thread::spawn(move || {
        // With its I/O driver, so it waits in epoll and is woken as an actix arbiter is.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            while let Some(reply) = rx.recv().await {
                let _ = reply.send(());
            }
        });
    });
    // The measuring side has a thread of its own too (the caller is inside an event loop).
    let measure = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let mut out = Vec::with_capacity(n);
            for _ in 0..n {
                // Let the other thread fall idle, as it would between runs.
                std::thread::sleep(Duration::from_micros(200));
                let (reply, answered) = tokio::sync::oneshot::channel();
                let t = Instant::now();
                if tx.send(reply).is_err() {
                    break;
                }
                let _ = answered.await;
                out.push(t.elapsed());
            }
            out
        })
    });
    let mut out = measure.join().unwrap_or_default();
    let _ = echo.join();
    out.sort();
    out
}

/// `n` requests one after another; latencies sorted.
async fn sequential(
    c: &awc::Client,
    url: &str,
    body: &Value,
    n: usize,
) -> Result<Vec<Duration>, String> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        post(c, url, body, None).await?;
        out.push(t.elapsed());
    }
    out.sort();
    Ok(out)
}

/// `conc` clients sending back to back for `secs`; completed requests per second.
async fn closed_loop(
    c: &awc::Client,
    url: &str,
    body: &Value,
    conc: usize,
    secs: u64,
) -> Result<f64, String> {
    let done = Rc::new(Cell::new(0u64));
    let failed = Rc::new(Cell::new(0u64));
    let start = Instant::now();
    let deadline = start + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..conc {
        let (c, url, body, done, failed) = (
            c.clone(),
            url.to_string(),
            body.clone(),
            done.clone(),
            failed.clone(),
        );
        tasks.push(actix_rt::spawn(async move {
            while Instant::now() < deadline {
                match post(&c, &url, &body, None).await {
                    Ok(_) => done.set(done.get() + 1),
                    Err(_) => failed.set(failed.get() + 1),
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    if failed.get() > 0 {
        return Err(format!("{} requests failed under load", failed.get()));
    }
    Ok(done.get() as f64 / start.elapsed().as_secs_f64())
}

/// Open `n` WebSocket subscribers; each counts its frames into the shared counter.
async fn subscribers(
    g: &Gateway,
    session: &str,
    n: usize,
    frames: Rc<Cell<u64>>,
) -> Result<Vec<actix_rt::task::JoinHandle<()>>, String> {
    let url = format!("{}/ws", g.base.replace("http://", "ws://"));
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        let (_, mut conn) = awc::Client::new()
            .ws(url.as_str())
            .bearer_auth(session)
            .max_frame_size(1 << 20)
            .connect()
            .await
            .map_err(|e| format!("websocket: {e}"))?;
        // The first frame is ws:ready: from then on this subscriber hears every event.
        conn.next().await;
        let frames = frames.clone();
        tasks.push(actix_rt::spawn(async move {
            while let Some(Ok(frame)) = conn.next().await {
                if matches!(frame, awc::ws::Frame::Text(_)) {
                    frames.set(frames.get() + 1);
                }
            }
        }));
    }
    Ok(tasks)
}

fn wanted(opts: &Options, phase: &str) -> bool {
    opts.only
        .as_deref()
        .is_none_or(|o| o.split(',').any(|o| phase.contains(o)))
}

/// Run the benchmark.
pub fn run(opts: &Options) -> Result<Report, String> {
    if !opts.gateway.exists() {
        return Err(format!(
            "{} not found: build it with `cargo build --release` (or pass --gateway)",
            opts.gateway.display()
        ));
    }
    raise_fd_limit();
    let sys = actix_rt::System::new();
    sys.block_on(run_phases(opts))
}

async fn run_phases(opts: &Options) -> Result<Report, String> {
    let sizes = Sizes::new(opts.quick);
    let mut report = Report {
        quick: opts.quick,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        figures: Vec::new(),
    };
    let c = client(256);
    // The one-at-a-time measurements keep one connection of their own: after a burst, the
    // shared client's many idle connections would spread them over both of the gateway's
    // workers and measure cold threads, not the gateway (that showed as "+20 % after 10,000
    // conversations"; with one connection the figure is flat).
    let one = client(1);

    if wanted(opts, "start") {
        println!("start-up and idle memory");
        let mut times = Vec::new();
        let mut rss = Vec::new();
        for _ in 0..5 {
            let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map_err(|e| e.to_string())?
                .port();
            let t = Instant::now();
            let mut child = Command::new(&opts.gateway)
                .current_dir(dir.path())
                .env_clear()
                .env("PORT", port.to_string())
                .env("DATA_DIR", dir.path().join("data"))
                .env("LOG_LEVEL", "warn")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| e.to_string())?;
            loop {
                if health_ok(port) {
                    break;
                }
                if t.elapsed() > Duration::from_secs(10) {
                    let _ = child.kill();
                    return Err("the gateway did not become healthy".into());
                }
                std::thread::sleep(Duration::from_micros(200));
            }
            times.push(t.elapsed());
            std::thread::sleep(Duration::from_millis(500));
            rss.push(
                std::fs::read_to_string(format!("/proc/{}/status", child.id()))
                    .ok()
                    .and_then(|s| {
                        s.lines()
                            .find(|l| l.starts_with("VmRSS"))
                            .and_then(|l| l.split_whitespace().nth(1))
                            .and_then(|v| v.parse::<f64>().ok())
                    })
                    .unwrap_or(0.0),
            );
            let _ = child.kill();
            let _ = child.wait();
        }
        times.sort();
        rss.sort_by(f64::total_cmp);
        report.add(
            "exec to healthy (median of 5)",
            percentile(&times, 0.5),
            "ms",
            "< 50 ms",
            None,
        );
        report.add(
            "idle RSS after start (median of 5)",
            rss[2] / 1024.0,
            "MiB",
            "< 15 MB",
            None,
        );
    }

    let llm = MessagesApi::start_with_workers(1);
    llm.set_recording(false);
    let target = HttpTarget::start();
    let g = Gateway::start(opts, &[("ANTHROPIC_BASE_URL", llm.url.clone())])?;
    let (session, token) = prepare(&c, &g).await?;
    let invoke = format!("{}/webhook/invoke/{token}", g.base);
    let body = json!({"message": "hello", "sync": true});
    let direct_url = format!("{}/v1/messages", llm.url);
    let direct_body = json!({"model": "claude-sonnet-4-5", "max_tokens": 64, "stream": true,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hello"}]}]});
    let direct = |c: &awc::Client, n| {
        let c = c.clone();
        let (u, b) = (direct_url.clone(), direct_body.clone());
        async move {
            let mut out = Vec::with_capacity(n);
            for _ in 0..n {
                let t = Instant::now();
                let mut r = c
                    .post(&u)
                    .insert_header(("x-api-key", "k"))
                    .insert_header(("anthropic-version", "2023-06-01"))
                    .send_json(&b)
                    .await
                    .map_err(|e| e.to_string())?;
                r.body().await.map_err(|e| e.to_string())?;
                out.push(t.elapsed());
            }
            out.sort();
            Ok::<_, String>(out)
        }
    };

    // Warm both sides up (connections, caches, prepared statements).
    sequential(&one, &invoke, &body, 50).await?;
    direct(&c, 50).await?;

    let mut seq_p50 = 0.0;
    if wanted(opts, "latency") {
        println!("added latency per run, c=1");
        let base = direct(&c, sizes.sequential).await?;
        let before = get_json(&c, &format!("{}/api/health", g.base)).await;
        let lat = sequential(&one, &invoke, &body, sizes.sequential).await?;
        let after = get_json(&c, &format!("{}/api/health", g.base)).await;
        let (b50, b99) = (percentile(&base, 0.5), percentile(&base, 0.99));
        let (g50, g99) = (percentile(&lat, 0.5), percentile(&lat, 0.99));
        seq_p50 = g50;
        report.add("stand-in alone, c=1, p50", b50, "ms", "baseline", None);
        report.add("sync webhook run, c=1, p50", g50, "ms", "-", Some(b50));
        // What one hand-off to another (idle) thread and back costs on this machine: the
        // floor under the run's hops (to the run supervisor, to the store writer and back).
        let hop = thread_round_trips(sizes.sequential);
        report.add(
            "round trip to an idle thread and back, p50",
            percentile(&hop, 0.5),
            "ms",
            "baseline",
            None,
        );
        report.add(
            "added latency per sync run, c=1, p50",
            g50 - b50,
            "ms",
            "< 0.3 ms",
            Some(b50),
        );
        report.add(
            "added latency per sync run, c=1, p99",
            (g99 - b99).max(0.0),
            "ms",
            "< 1 ms",
            Some(b99),
        );
        let n = sizes.sequential as f64;
        let delta = |field: &str| {
            (after["store"][field].as_f64().unwrap_or(0.0)
                - before["store"][field].as_f64().unwrap_or(0.0))
                / n
        };
        report.add(
            "SQLite statements per run",
            delta("statements"),
            "stmts",
            "reported",
            None,
        );
        report.add(
            "SQLite write transactions per run",
            delta("commits"),
            "commits",
            "reported",
            None,
        );
    }

    if wanted(opts, "tool") {
        println!("added latency with one http_request tool round, c=1");
        let tool_url = format!("{}/json", target.url);
        // The baseline: two model calls and the tool's own request, made directly.
        let mut base = Vec::new();
        for _ in 0..sizes.sequential / 2 {
            let t = Instant::now();
            direct(&c, 2).await?;
            let mut r = c.get(&tool_url).send().await.map_err(|e| e.to_string())?;
            r.body().await.map_err(|e| e.to_string())?;
            base.push(t.elapsed());
        }
        base.sort();
        llm.set_tool_round(Some(tool_url.clone()));
        let lat = sequential(&one, &invoke, &body, sizes.sequential / 2).await?;
        llm.set_tool_round(None);
        let (b50, b99) = (percentile(&base, 0.5), percentile(&base, 0.99));
        report.add(
            "added latency with a tool round, c=1, p50",
            percentile(&lat, 0.5) - b50,
            "ms",
            "< 1 ms",
            Some(b50),
        );
        report.add(
            "added latency with a tool round, c=1, p99",
            (percentile(&lat, 0.99) - b99).max(0.0),
            "ms",
            "< 3 ms",
            Some(b99),
        );
    }

    if wanted(opts, "history") && seq_p50 > 0.0 {
        println!("latency after {} earlier conversations", sizes.history);
        let mut sent = 0;
        while sent < sizes.history {
            let batch = (sizes.history - sent).min(sizes.concurrency);
            let calls = (0..batch).map(|_| post(&c, &invoke, &body, None));
            for r in futures_util::future::join_all(calls).await {
                r?;
            }
            sent += batch;
        }
        let lat = sequential(&one, &invoke, &body, sizes.sequential).await?;
        report.add(
            &format!("sync run p50 after {} more conversations", sizes.history),
            percentile(&lat, 0.5),
            "ms",
            "flat",
            Some(seq_p50),
        );
    }
    if wanted(opts, "throughput") {
        println!("throughput, {} concurrent clients", sizes.concurrency);
        let base = closed_loop_direct(
            &c,
            &direct_url,
            &direct_body,
            sizes.concurrency,
            sizes.load_secs,
        )
        .await?;
        let rps = closed_loop(&c, &invoke, &body, sizes.concurrency, sizes.load_secs).await?;
        report.add(
            "stand-in alone, requests/s",
            base,
            "req/s",
            "baseline",
            None,
        );
        report.add(
            if opts.quick {
                "sync webhook runs/s (quick: fewer clients)"
            } else {
                "sync webhook runs/s, 64 clients"
            },
            rps,
            "runs/s",
            ">= 6,200",
            Some(base),
        );
        if wanted(opts, "dashboards") {
            let frames = Rc::new(Cell::new(0u64));
            let subs = subscribers(&g, &session, sizes.dashboards, frames.clone()).await?;
            let with = closed_loop(&c, &invoke, &body, sizes.concurrency, sizes.load_secs).await?;
            report.add(
                &format!("runs/s with {} dashboards attached", sizes.dashboards),
                with,
                "runs/s",
                "small cost",
                Some(rps),
            );
            for s in subs {
                s.abort();
            }
        }
    }

    if wanted(opts, "fanout") {
        println!("WebSocket fan-out to {} subscribers", sizes.subscribers);
        let frames = Rc::new(Cell::new(0u64));
        let subs = subscribers(&g, &session, sizes.subscribers, frames.clone()).await?;
        let start = Instant::now();
        let rps = closed_loop(&c, &invoke, &body, sizes.concurrency, sizes.load_secs).await?;
        // Let the last frames drain before counting.
        let expected = (rps * start.elapsed().as_secs_f64()) as u64 * 2 * sizes.subscribers as u64;
        let drain_until = Instant::now() + Duration::from_secs(10);
        while frames.get() < expected * 95 / 100 && Instant::now() < drain_until {
            actix_rt::time::sleep(Duration::from_millis(20)).await;
        }
        let per_sec = frames.get() as f64 / start.elapsed().as_secs_f64();
        report.add(
            &format!(
                "WebSocket events delivered/s, {} subscribers",
                sizes.subscribers
            ),
            per_sec,
            "events/s",
            ">= 50,000",
            None,
        );
        for s in subs {
            s.abort();
        }
    }

    drop(g);

    if wanted(opts, "waiting") {
        println!(
            "{} concurrent runs waiting on a {:?} model",
            sizes.waiting_runs, sizes.slow_llm
        );
        let slow = MessagesApi::start_with_workers(2);
        slow.set_recording(false);
        slow.set_delay(sizes.slow_llm);
        let g = Gateway::start(
            opts,
            &[
                ("ANTHROPIC_BASE_URL", slow.url.clone()),
                ("MAX_CONCURRENT_RUNS", "100000".into()),
                ("RUN_QUEUE_SIZE", "100000".into()),
                // One multiplexed connection upstream instead of a socket per waiting run.
                ("LLM_HTTP2_PRIOR_KNOWLEDGE", "true".into()),
            ],
        )?;
        let (session, token) = prepare(&c, &g).await?;
        let invoke = format!("{}/webhook/invoke/{token}", g.base);
        let done = Rc::new(Cell::new(0u64));
        let url = format!("{}/ws", g.base.replace("http://", "ws://"));
        let (_, mut ws) = awc::Client::new()
            .ws(url.as_str())
            .bearer_auth(&session)
            .connect()
            .await
            .map_err(|e| e.to_string())?;
        ws.next().await;
        let counter = done.clone();
        let watcher = actix_rt::spawn(async move {
            while let Some(Ok(awc::ws::Frame::Text(t))) = ws.next().await {
                if t.windows(18).any(|w| w == b"agent:run:complete") {
                    counter.set(counter.get() + 1);
                }
            }
        });
        let start = Instant::now();
        let async_body = json!({"message": "slow", "sync": false});
        // A sliding window of requests in flight (not lockstep batches), so the client keeps
        // the gateway busy instead of waiting for each batch's slowest answer.
        let mut answers = futures_util::stream::iter(0..sizes.waiting_runs)
            .map(|_| post(&c, &invoke, &async_body, None))
            .buffer_unordered(256);
        while let Some(r) = answers.next().await {
            r?;
        }
        drop(answers);
        let accepted = start.elapsed().as_secs_f64();
        let deadline = Instant::now() + sizes.slow_llm * 4 + Duration::from_secs(30);
        while (done.get() as usize) < sizes.waiting_runs && Instant::now() < deadline {
            actix_rt::time::sleep(Duration::from_millis(10)).await;
        }
        let wall = start.elapsed().as_secs_f64();
        watcher.abort();
        if (done.get() as usize) < sizes.waiting_runs {
            return Err(format!(
                "only {} of {} waiting runs completed",
                done.get(),
                sizes.waiting_runs
            ));
        }
        report.add(
            &format!(
                "{} runs waiting on a {:?} model: wall time",
                sizes.waiting_runs, sizes.slow_llm
            ),
            wall,
            "s",
            "< 5.5 s",
            Some(sizes.slow_llm.as_secs_f64()),
        );
        report.add(
            &format!(
                "{} runs waiting: all accepted (202) after",
                sizes.waiting_runs
            ),
            accepted,
            "s",
            "-",
            None,
        );
        report.add(
            &format!("{} runs waiting: peak RSS", sizes.waiting_runs),
            g.status_kb("VmHWM") / 1024.0,
            "MiB",
            "< 300 MB",
            None,
        );
        report.add(
            "stand-in max requests in flight",
            slow.max_in_flight() as f64,
            "reqs",
            "all at once",
            Some(sizes.waiting_runs as f64),
        );
    }
    Ok(report)
}

async fn closed_loop_direct(
    c: &awc::Client,
    url: &str,
    body: &Value,
    conc: usize,
    secs: u64,
) -> Result<f64, String> {
    let done = Rc::new(Cell::new(0u64));
    let start = Instant::now();
    let deadline = start + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..conc {
        let (c, url, body, done) = (c.clone(), url.to_string(), body.clone(), done.clone());
        tasks.push(actix_rt::spawn(async move {
            while Instant::now() < deadline {
                let res = c
                    .post(&url)
                    .insert_header(("x-api-key", "k"))
                    .insert_header(("anthropic-version", "2023-06-01"))
                    .send_json(&body)
                    .await;
                if let Ok(mut r) = res {
                    if r.body().await.is_ok() {
                        done.set(done.get() + 1);
                    }
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    Ok(done.get() as f64 / start.elapsed().as_secs_f64())
}

/// A blocking health probe (for start-up timing, before any runtime is involved).
fn health_ok(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /api/health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 12];
    s.read_exact(&mut buf).is_ok() && &buf[9..12] == b"200"
}
