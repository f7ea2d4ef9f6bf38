//! `loop-gateway`: run the server (the default, or `serve`), apply migrations (`migrate`), or
//! administer it offline (`admin reset-password <user>`).

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use loop_gateway_actors::store::{self, schema};
use loop_gateway_actors::SecretBox;

mod config;
mod gateway;

use config::{Config, LogFormat};
use gateway::Gateway;

#[derive(Parser)]
#[command(
    name = "loop-gateway",
    version,
    about = "Self-hosted agent gateway: chat channels and automations to LLM agents"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: Config,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Offline administration (the gateway may be stopped).
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Set a new password for a user and end all of their sessions. Reads the password from
    /// standard input (one line) when it is not a terminal, otherwise prompts for it.
    ResetPassword { username: String },
    /// Re-encrypt every stored secret under a new key (64 hex characters; generated when not
    /// given). With the key in <DATA_DIR>/secret.key, the file is replaced; with
    /// GATEWAY_SECRET_KEY, set the printed key there before the next start.
    RotateKey {
        #[arg(long, value_name = "HEX")]
        new_key: Option<String>,
    },
}

fn main() -> ExitCode {
    // An optional .env fills in variables not already set in the environment.
    let _ = dotenvy::dotenv();
    let cli = Cli::parse();
    init_tracing(&cli.config);
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(cli.config),
        Command::Migrate => migrate(&cli.config),
        Command::Admin {
            command: AdminCommand::ResetPassword { username },
        } => reset_password(&cli.config, &username),
        Command::Admin {
            command: AdminCommand::RotateKey { new_key },
        } => rotate_key(&cli.config, new_key),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("loop-gateway: {message}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(config: &Config) {
    use tracing_subscriber::EnvFilter;
    // Chat libraries log contents (phone numbers, message details) at info: keep them to
    // warnings unless the operator asks for more by naming them.
    const QUIET: &str =
        "whatsapp_rust=warn,wacore=warn,whatsapp_rust_sqlite_storage=warn,teloxide=warn,imap=warn";
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(format!("{QUIET},{}", config.log_level)))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Pretty => builder.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}

/// Every connection is a file descriptor: take the hard limit, not the (often 1024) soft one.
fn raise_open_file_limit() {
    #[cfg(unix)]
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            let wanted = lim.rlim_max;
            lim.rlim_cur = wanted;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
                tracing::debug!(limit = wanted, "raised the open-file limit");
            }
        }
    }
}

fn serve(config: Config) -> Result<(), String> {
    raise_open_file_limit();
    let key = config.load_or_create_secret_key()?;
    let secrets = SecretBox::new(&key.0).map_err(|e| e.to_string())?;
    let db_path = config.database_path();
    let pool =
        store::open(&db_path, u32::from(config.store_threads) + 2).map_err(|e| e.to_string())?;
    tracing::info!(database = %db_path.display(), "database ready");

    let setup_code = setup_code_if_needed(&config, &pool)?;
    let system = actix::System::new();
    system
        .block_on(async { Gateway::build(&config, pool, secrets, setup_code).map(|_| ()) })
        .map_err(|e| e.to_string())?;
    system
        .run()
        .map_err(|e| format!("the actor system failed: {e}"))
}

/// Bound beyond loopback with no admin yet: anyone on the network could claim the admin
/// account first, so setup also needs a one-time code that only the log shows.
fn setup_code_if_needed(config: &Config, pool: &store::Pool) -> Result<Option<String>, String> {
    if config.is_loopback() {
        return Ok(None);
    }
    let mut conn = pool.get().map_err(|e| e.to_string())?;
    let users = store::users::count_users(&mut conn, store::users::CountUsers)
        .map_err(|e| e.to_string())?;
    if users > 0 {
        return Ok(None);
    }
    let mut bytes = [0u8; 5];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
    let code = hex::encode_upper(bytes);
    tracing::warn!(
        setup_code = %code,
        "no admin account yet and listening on {}: the first-visit setup needs this one-time setup code",
        config.host
    );
    Ok(Some(code))
}

fn migrate(config: &Config) -> Result<(), String> {
    let path = config.database_path();
    let pool = gateway::open_store(config).map_err(|e| e.to_string())?;
    let mut conn = pool.get().map_err(|e| e.to_string())?;
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(|e| e.to_string())?;
    // open() has applied any pending migrations already; this re-check is a no-op that
    // confirms the file is at the latest version.
    schema::migrate(&mut conn, &path.display().to_string()).map_err(|e| e.to_string())?;
    println!(
        "{}: schema version {version} (latest {})",
        path.display(),
        schema::latest_version()
    );
    Ok(())
}

fn rotate_key(config: &Config, new_key: Option<String>) -> Result<(), String> {
    let from_env = config
        .secret_key
        .as_deref()
        .is_some_and(|k| !k.trim().is_empty());
    let old = SecretBox::new(&config.load_or_create_secret_key()?.0).map_err(|e| e.to_string())?;
    let new_hex = match new_key {
        Some(k) => k.trim().to_lowercase(),
        None => {
            let mut bytes = [0u8; 32];
            rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
            hex::encode(bytes)
        }
    };
    let new_bytes = hex::decode(&new_hex)
        .ok()
        .filter(|b| b.len() == 32)
        .ok_or("--new-key must be 64 hexadecimal characters")?;
    let new = SecretBox::new(&new_bytes).map_err(|e| e.to_string())?;
    let key_file = config.data_dir.join("secret.key");
    let staged = config.data_dir.join("secret.key.new");
    if !from_env {
        // The new key is on disk before any secret depends on it.
        let _ = std::fs::remove_file(&staged);
        config::write_private(&staged, &new_hex)
            .map_err(|e| format!("cannot write {}: {e}", staged.display()))?;
    }
    let pool = gateway::open_store(config).map_err(|e| e.to_string())?;
    let mut conn = pool.get().map_err(|e| e.to_string())?;
    let count = store::sealed::reseal_all(&mut conn, &old, &new).map_err(|e| e.to_string())?;
    if from_env {
        println!("{count} secret(s) re-encrypted. Set GATEWAY_SECRET_KEY={new_hex} before the next start.");
    } else {
        std::fs::rename(&staged, &key_file).map_err(|e| {
            format!(
                "secrets re-encrypted, but {} could not replace {}: {e}",
                staged.display(),
                key_file.display()
            )
        })?;
        println!(
            "{count} secret(s) re-encrypted; {} holds the new key.",
            key_file.display()
        );
    }
    Ok(())
}

fn reset_password(config: &Config, username: &str) -> Result<(), String> {
    let password = if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password(format!("New password for {username}: "))
            .map_err(|e| e.to_string())?;
        let again = rpassword::prompt_password("Again: ").map_err(|e| e.to_string())?;
        if first != again {
            return Err("the passwords do not match".into());
        }
        first
    } else {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        line.trim_end_matches(['\r', '\n']).to_string()
    };
    if password.chars().count() < 8 || password.len() > 72 {
        return Err("the password needs at least 8 characters and at most 72 bytes".into());
    }
    let hash = bcrypt::hash(&password, config.bcrypt_cost).map_err(|e| e.to_string())?;
    let pool = gateway::open_store(config).map_err(|e| e.to_string())?;
    let mut conn = pool.get().map_err(|e| e.to_string())?;
    if store::users::set_password(&mut conn, username, &hash).map_err(|e| e.to_string())? {
        println!("password of {username} reset; their sessions have been ended");
        Ok(())
    } else {
        Err(format!("there is no user named {username}"))
    }
}
