//! Configuration: one typed struct, from environment variables (and an optional `.env`),
//! overridable by command-line flags. A bad value stops the start with a message naming the
//! variable (clap prints `--flag <VARIABLE>`).

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use ipnet::IpNet;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TaskOnRestart {
    Resume,
    Interrupt,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProviderKind {
    Anthropic,
    OpenaiCompatible,
}

#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Port to listen on.
    #[arg(
        long,
        env = "PORT",
        value_name = "PORT",
        default_value_t = 3000,
        global = true
    )]
    pub port: u16,

    /// Address to listen on. 127.0.0.1 keeps the gateway private to this machine; the Docker
    /// image sets 0.0.0.0.
    #[arg(
        long,
        env = "HOST",
        value_name = "HOST",
        default_value = "127.0.0.1",
        global = true
    )]
    pub host: String,

    /// Directory for the database, the generated secret key and task files.
    #[arg(
        long,
        env = "DATA_DIR",
        value_name = "DATA_DIR",
        default_value = "./data",
        global = true
    )]
    pub data_dir: PathBuf,

    /// The SQLite database file [default: <DATA_DIR>/gateway.db].
    #[arg(
        long,
        env = "DATABASE_PATH",
        value_name = "DATABASE_PATH",
        global = true
    )]
    pub database_path: Option<PathBuf>,

    /// 64 hex characters (32 bytes) that encrypt stored secrets. When absent, a key is
    /// generated once into <DATA_DIR>/secret.key (mode 0600) and reused.
    #[arg(
        long,
        env = "GATEWAY_SECRET_KEY",
        value_name = "GATEWAY_SECRET_KEY",
        hide_env_values = true,
        global = true
    )]
    pub secret_key: Option<String>,

    /// Default API key for Anthropic's Messages API.
    #[arg(
        long,
        env = "ANTHROPIC_API_KEY",
        value_name = "ANTHROPIC_API_KEY",
        hide_env_values = true,
        global = true
    )]
    pub anthropic_api_key: Option<String>,

    /// Base URL of the Messages API (a proxy, or a local server speaking the same protocol).
    #[arg(long, env = "ANTHROPIC_BASE_URL", value_name = "ANTHROPIC_BASE_URL",
          default_value = "https://api.anthropic.com", value_parser = parse_base_url, global = true)]
    pub anthropic_base_url: String,

    /// Which wire protocol the default model speaks: anthropic (Messages API) or
    /// openai-compatible (Chat Completions: llama.cpp, Ollama, vLLM, ...).
    #[arg(long, env = "LLM_PROVIDER", value_name = "LLM_PROVIDER", value_enum,
          default_value_t = ProviderKind::Anthropic, global = true)]
    pub llm_provider: ProviderKind,

    /// Base URL of the OpenAI-compatible API (with LLM_PROVIDER=openai-compatible).
    #[arg(long, env = "OPENAI_BASE_URL", value_name = "OPENAI_BASE_URL",
          default_value = "http://127.0.0.1:8080", value_parser = parse_base_url, global = true)]
    pub openai_base_url: String,

    /// API key of the OpenAI-compatible API, if it needs one.
    #[arg(
        long,
        env = "OPENAI_API_KEY",
        value_name = "OPENAI_API_KEY",
        hide_env_values = true,
        global = true
    )]
    pub openai_api_key: Option<String>,

    /// The model agents use unless their group names another.
    #[arg(
        long,
        env = "DEFAULT_MODEL",
        value_name = "DEFAULT_MODEL",
        default_value = "claude-sonnet-4-5",
        global = true
    )]
    pub default_model: String,

    /// The system prompt agents use unless their group has one.
    #[arg(
        long,
        env = "DEFAULT_SYSTEM_PROMPT",
        value_name = "DEFAULT_SYSTEM_PROMPT",
        default_value = "You are a helpful assistant. Answer concisely.",
        global = true
    )]
    pub default_system_prompt: String,

    /// max_tokens of each model call.
    #[arg(long, env = "MAX_TOKENS", value_name = "MAX_TOKENS", default_value_t = 4096,
          value_parser = clap::value_parser!(u32).range(1..=200_000), global = true)]
    pub max_tokens: u32,

    /// Model calls one run may make (each tool round is one); webhook callers may lower it.
    #[arg(long, env = "MAX_ITERATIONS", value_name = "MAX_ITERATIONS", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..=100), global = true)]
    pub max_iterations: u32,

    /// Conversation history sent to the model is trimmed to about this many tokens.
    #[arg(
        long,
        env = "HISTORY_TOKEN_BUDGET",
        value_name = "HISTORY_TOKEN_BUDGET",
        default_value_t = 50_000,
        global = true
    )]
    pub history_token_budget: usize,

    /// Stream model answers over SSE (Anthropic).
    #[arg(long, env = "LLM_STREAMING", value_name = "LLM_STREAMING", default_value_t = true,
          action = clap::ArgAction::Set, global = true)]
    pub llm_streaming: bool,

    /// Talk HTTP/2 to a plaintext (http://) model server from the first byte (h2c), so all
    /// calls share one connection; for local servers that support it. HTTPS negotiates
    /// HTTP/2 by itself.
    #[arg(long, env = "LLM_HTTP2_PRIOR_KNOWLEDGE", value_name = "LLM_HTTP2_PRIOR_KNOWLEDGE",
          default_value_t = false, action = clap::ArgAction::Set, global = true)]
    pub llm_http2_prior_knowledge: bool,

    /// Connection pools to the model API that calls are spread over (least busy first). Over
    /// HTTP/2 each is one connection, which the provider limits in concurrent streams.
    #[arg(long, env = "LLM_CONNECTIONS", value_name = "LLM_CONNECTIONS", default_value_t = 4,
          value_parser = clap::value_parser!(u16).range(1..=64), global = true)]
    pub llm_connections: u16,

    /// Retries of a model call after 429, 529, 5xx or a connection failure.
    #[arg(long, env = "LLM_MAX_RETRIES", value_name = "LLM_MAX_RETRIES", default_value_t = 4,
          value_parser = clap::value_parser!(u32).range(0..=20), global = true)]
    pub llm_max_retries: u32,

    /// First retry delay in milliseconds (doubles each retry, at most 30 s; a server's
    /// retry-after is respected).
    #[arg(long, env = "LLM_RETRY_BASE_MS", value_name = "LLM_RETRY_BASE_MS", default_value_t = 500,
          value_parser = clap::value_parser!(u64).range(1..=60_000), global = true)]
    pub llm_retry_base_ms: u64,

    /// Limit for one model call, in seconds.
    #[arg(long, env = "LLM_TIMEOUT_SECONDS", value_name = "LLM_TIMEOUT_SECONDS", default_value_t = 600,
          value_parser = clap::value_parser!(u64).range(1..=3600), global = true)]
    pub llm_timeout_seconds: u64,

    /// Extra or overriding model prices, JSON: {"model-prefix": {"input": 3, "output": 15}}
    /// in USD per million tokens.
    #[arg(long, env = "MODEL_PRICES", value_name = "MODEL_PRICES", global = true)]
    pub model_prices: Option<String>,

    /// Runs at once; more wait in a queue.
    #[arg(long, env = "MAX_CONCURRENT_RUNS", value_name = "MAX_CONCURRENT_RUNS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000), global = true)]
    pub max_concurrent_runs: u32,

    /// Runs that may wait; beyond it a new run is refused with 503 and Retry-After.
    #[arg(long, env = "RUN_QUEUE_SIZE", value_name = "RUN_QUEUE_SIZE", default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(0..=1_000_000), global = true)]
    pub run_queue_size: u32,

    /// Threads agent runs are spread over [default: one per core].
    #[arg(long, env = "RUN_THREADS", value_name = "RUN_THREADS",
          value_parser = clap::value_parser!(u16).range(1..=256), global = true)]
    pub run_threads: Option<u16>,

    /// How long a sync webhook invoke waits for the answer before 504 (the run goes on).
    #[arg(long, env = "SYNC_TIMEOUT_SECONDS", value_name = "SYNC_TIMEOUT_SECONDS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(1..=3600), global = true)]
    pub sync_timeout_seconds: u64,

    /// Hosts and ranges the http_request tool may reach although they are private or loopback
    /// (comma-separated host names, IPs or CIDRs).
    #[arg(
        long,
        env = "HTTP_REQUEST_ALLOW",
        value_name = "HTTP_REQUEST_ALLOW",
        value_delimiter = ',',
        global = true
    )]
    pub http_request_allow: Vec<String>,

    /// Loop tasks running at once; more wait as pending.
    #[arg(long, env = "MAX_CONCURRENT_TASKS", value_name = "MAX_CONCURRENT_TASKS", default_value_t = 4,
          value_parser = clap::value_parser!(u32).range(1..=1000), global = true)]
    pub max_concurrent_tasks: u32,

    /// What happens to loop tasks the last stop interrupted: resume (continue from the last
    /// recorded iteration) or interrupt (mark them interrupted).
    #[arg(long, env = "TASK_ON_RESTART", value_name = "TASK_ON_RESTART", value_enum,
          default_value_t = TaskOnRestart::Resume, global = true)]
    pub task_on_restart: TaskOnRestart,

    /// Time zone of budget days and months (IANA name, e.g. Europe/Berlin).
    #[arg(long, env = "BUDGET_TIMEZONE", value_name = "BUDGET_TIMEZONE", default_value = "UTC",
          value_parser = parse_tz, global = true)]
    pub budget_timezone: chrono_tz::Tz,

    /// Attempts of an outbound webhook delivery before it is marked failed.
    #[arg(long, env = "WEBHOOK_MAX_ATTEMPTS", value_name = "WEBHOOK_MAX_ATTEMPTS", default_value_t = 8,
          value_parser = clap::value_parser!(u32).range(1..=50), global = true)]
    pub webhook_max_attempts: u32,

    /// First retry delay of a failed delivery in milliseconds (doubles, at most 5 minutes).
    #[arg(long, env = "WEBHOOK_RETRY_BASE_MS", value_name = "WEBHOOK_RETRY_BASE_MS", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(1..=3_600_000), global = true)]
    pub webhook_retry_base_ms: u64,

    /// Requests per minute per client IP on /api/*.
    #[arg(long, env = "RATE_LIMIT_PER_MINUTE", value_name = "RATE_LIMIT_PER_MINUTE",
          default_value_t = 120, value_parser = clap::value_parser!(u32).range(1..), global = true)]
    pub rate_limit_per_minute: u32,

    /// Requests per minute per webhook token on /webhook/*.
    #[arg(long, env = "WEBHOOK_RATE_LIMIT_PER_MINUTE", value_name = "WEBHOOK_RATE_LIMIT_PER_MINUTE",
          default_value_t = 600, value_parser = clap::value_parser!(u32).range(1..), global = true)]
    pub webhook_rate_limit_per_minute: u32,

    /// Login and setup attempts per minute, per client IP and per username.
    #[arg(long, env = "LOGIN_RATE_LIMIT_PER_MINUTE", value_name = "LOGIN_RATE_LIMIT_PER_MINUTE",
          default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..), global = true)]
    pub login_rate_limit_per_minute: u32,

    /// Comma-separated addresses or CIDR ranges of reverse proxies whose X-Forwarded-For is
    /// believed. Empty: the peer address is the client.
    #[arg(long, env = "TRUSTED_PROXIES", value_name = "TRUSTED_PROXIES", value_delimiter = ',',
          value_parser = parse_net, global = true)]
    pub trusted_proxies: Vec<IpNet>,

    /// Log output: pretty (for people) or json (for log collectors).
    #[arg(long, env = "LOG_FORMAT", value_name = "LOG_FORMAT", value_enum,
          default_value_t = LogFormat::Pretty, global = true)]
    pub log_format: LogFormat,

    /// Log filter, e.g. `info` or `loop_gateway=debug,info` (RUST_LOG wins when set).
    #[arg(
        long,
        env = "LOG_LEVEL",
        value_name = "LOG_LEVEL",
        default_value = "info",
        global = true
    )]
    pub log_level: String,

    /// How long a login session lasts.
    #[arg(long, env = "SESSION_TTL_HOURS", value_name = "SESSION_TTL_HOURS", default_value_t = 24,
          value_parser = clap::value_parser!(u32).range(1..=8760), global = true)]
    pub session_ttl_hours: u32,

    /// bcrypt cost for passwords (each +1 doubles the work; 12 takes ~250 ms).
    #[arg(long, env = "BCRYPT_COST", value_name = "BCRYPT_COST", default_value_t = 12,
          value_parser = clap::value_parser!(u32).range(4..=31), global = true)]
    pub bcrypt_cost: u32,

    /// Largest request body accepted, in bytes (larger ones get 413).
    #[arg(long, env = "MAX_BODY_BYTES", value_name = "MAX_BODY_BYTES", default_value_t = 1_048_576,
          value_parser = clap::value_parser!(u64).range(1024..=268_435_456), global = true)]
    pub max_body_bytes: u64,

    /// Seconds in-flight requests get to finish after SIGTERM/SIGINT.
    #[arg(long, env = "SHUTDOWN_GRACE_SECONDS", value_name = "SHUTDOWN_GRACE_SECONDS",
          default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=600), global = true)]
    pub shutdown_grace_seconds: u64,

    /// HTTP worker threads [default: one per core].
    #[arg(long, env = "HTTP_WORKERS", value_name = "HTTP_WORKERS",
          value_parser = clap::value_parser!(u16).range(1..=256), global = true)]
    pub http_workers: Option<u16>,

    /// Database worker threads (and pooled connections).
    #[arg(long, env = "STORE_THREADS", value_name = "STORE_THREADS", default_value_t = 4,
          value_parser = clap::value_parser!(u16).range(1..=64), global = true)]
    pub store_threads: u16,
}

/// The 32-byte master key. Its Debug never shows the bytes.
#[derive(Clone)]
pub struct SecretKey(pub [u8; 32]);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

fn parse_secret_key(s: &str) -> Result<SecretKey, String> {
    let bytes = hex::decode(s.trim())
        .map_err(|_| "must be 64 hexadecimal characters (32 bytes)".to_string())?;
    let key: [u8; 32] = bytes
        .try_into()
        .map_err(|_| "must be 64 hexadecimal characters (32 bytes)".to_string())?;
    Ok(SecretKey(key))
}

fn parse_base_url(s: &str) -> Result<String, String> {
    let s = s.trim().trim_end_matches('/');
    if (s.starts_with("http://") || s.starts_with("https://")) && s.len() > "https://".len() {
        Ok(s.to_string())
    } else {
        Err("must be an http:// or https:// URL".into())
    }
}

fn parse_tz(s: &str) -> Result<chrono_tz::Tz, String> {
    s.trim()
        .parse()
        .map_err(|_| format!("'{s}' is not an IANA time zone such as UTC or Europe/Berlin"))
}

fn parse_net(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("'{s}' is not an IP address or CIDR range"))
}

impl Config {
    /// The http_request tool's allow list, split into ranges and host names.
    pub fn http_request_allow(&self) -> (Vec<IpNet>, Vec<String>) {
        let mut nets = Vec::new();
        let mut hosts = Vec::new();
        for item in self
            .http_request_allow
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
        {
            match parse_net(item) {
                Ok(net) => nets.push(net),
                Err(_) => hosts.push(item.to_string()),
            }
        }
        (nets, hosts)
    }

    pub fn database_path(&self) -> PathBuf {
        self.database_path
            .clone()
            .unwrap_or_else(|| self.data_dir.join("gateway.db"))
    }

    /// Whether the listen address is reachable only from this machine.
    pub fn is_loopback(&self) -> bool {
        match self.host.parse::<IpAddr>() {
            Ok(ip) => ip.is_loopback(),
            Err(_) => self.host.eq_ignore_ascii_case("localhost"),
        }
    }

    /// The master key: from GATEWAY_SECRET_KEY, else <DATA_DIR>/secret.key, created once.
    pub fn load_or_create_secret_key(&self) -> Result<SecretKey, String> {
        // Checked here rather than by clap, whose error would echo the bad value.
        if let Some(k) = self.secret_key.as_deref().filter(|k| !k.trim().is_empty()) {
            return parse_secret_key(k).map_err(|e| format!("GATEWAY_SECRET_KEY {e}"));
        }
        let path = self.data_dir.join("secret.key");
        match std::fs::read_to_string(&path) {
            Ok(text) => parse_secret_key(&text)
                .map_err(|e| format!("{}: {e}; fix or remove it", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(&self.data_dir)
                    .map_err(|e| format!("cannot create {}: {e}", self.data_dir.display()))?;
                let mut key = [0u8; 32];
                rand::RngCore::fill_bytes(&mut rand::rng(), &mut key);
                write_private(&path, &hex::encode(key))
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                tracing::info!(path = %path.display(), "generated a new secret key; back it up with the database");
                Ok(SecretKey(key))
            }
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }
}

/// Create a file only its owner can read (mode 0600), failing if it already exists.
pub fn write_private(path: &std::path::Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()
}
