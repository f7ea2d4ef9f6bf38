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

fn parse_net(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("'{s}' is not an IP address or CIDR range"))
}

impl Config {
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
fn write_private(path: &std::path::Path, contents: &str) -> std::io::Result<()> {
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
