//! Channel configuration: the fields each channel type takes (API.md), which of them are
//! credentials (write-only, sealed at rest), defaults, and validation with errors that name
//! the field.

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{Map, Value};

pub const KINDS: &[&str] = &["telegram", "email", "whatsapp"];

/// Credential fields per channel type: never returned, never logged, sealed at rest.
pub fn secret_fields(kind: &str) -> &'static [&'static str] {
    match kind {
        "telegram" => &["botToken"],
        "email" => &["imapPassword", "smtpPassword"],
        "whatsapp" => &["accessToken", "appSecret", "verifyToken"],
        _ => &[],
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ConfigError {
    /// The offending field, e.g. `config.botToken`.
    pub field: String,
    pub message: String,
}

fn invalid(field: &str, message: impl Into<String>) -> ConfigError {
    let field = if field.is_empty() {
        "config".to_string()
    } else {
        format!("config.{field}")
    };
    let message = format!("{field}: {}", message.into());
    ConfigError { field, message }
}

/// The typed settings of one channel. No `Debug`: they hold credentials.
#[derive(Clone)]
pub enum Settings {
    Telegram(TelegramSettings),
    Email(EmailSettings),
    WhatsApp(WhatsAppSettings),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TelegramMode {
    Polling,
    Webhook,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupMode {
    /// In groups, answer only when mentioned or replied to.
    Mention,
    All,
}

#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TelegramSettings {
    pub bot_token: String,
    #[serde(default = "default_telegram_url")]
    pub api_base_url: String,
    #[serde(default = "default_polling")]
    pub mode: TelegramMode,
    /// Webhook mode: the public base URL Telegram calls (`<publicUrl>/webhook/telegram/<id>`).
    #[serde(default)]
    pub public_url: Option<String>,
    #[serde(default = "default_mention")]
    pub group_mode: GroupMode,
    #[serde(default)]
    pub admin_chat_ids: Vec<i64>,
    #[serde(default = "default_poll_timeout")]
    pub poll_timeout_seconds: u32,
    #[serde(default = "default_telegram_rate")]
    pub outbound_per_minute: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    Implicit,
    Starttls,
    None,
}

#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EmailSettings {
    pub imap_host: String,
    #[serde(default)]
    pub imap_port: Option<u16>,
    pub imap_user: String,
    pub imap_password: String,
    #[serde(default = "default_tls")]
    pub imap_tls: TlsMode,
    #[serde(default = "default_mailbox")]
    pub mailbox: String,
    pub smtp_host: String,
    #[serde(default)]
    pub smtp_port: Option<u16>,
    #[serde(default)]
    pub smtp_user: Option<String>,
    #[serde(default)]
    pub smtp_password: Option<String>,
    #[serde(default = "default_tls")]
    pub smtp_tls: TlsMode,
    pub from_address: String,
    #[serde(default = "default_poll_interval")]
    pub poll_interval_seconds: u32,
    #[serde(default = "default_email_rate")]
    pub outbound_per_minute: u32,
}

impl EmailSettings {
    pub fn imap_port(&self) -> u16 {
        self.imap_port.unwrap_or(match self.imap_tls {
            TlsMode::Implicit => 993,
            _ => 143,
        })
    }

    pub fn smtp_port(&self) -> u16 {
        self.smtp_port.unwrap_or(match self.smtp_tls {
            TlsMode::Implicit => 465,
            TlsMode::Starttls => 587,
            TlsMode::None => 25,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WhatsAppMode {
    Cloud,
    Linked,
}

#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WhatsAppSettings {
    pub mode: WhatsAppMode,
    #[serde(default)]
    pub phone_number_id: Option<String>,
    #[serde(default)]
    pub access_token: Option<String>,
    #[serde(default)]
    pub app_secret: Option<String>,
    #[serde(default)]
    pub verify_token: Option<String>,
    #[serde(default = "default_graph_url")]
    pub graph_base_url: String,
    #[serde(default = "default_graph_version")]
    pub graph_api_version: String,
    #[serde(default = "default_whatsapp_rate")]
    pub outbound_per_minute: u32,
}

fn default_telegram_url() -> String {
    "https://api.telegram.org".into()
}
fn default_polling() -> TelegramMode {
    TelegramMode::Polling
}
fn default_mention() -> GroupMode {
    GroupMode::Mention
}
fn default_poll_timeout() -> u32 {
    25
}
// Telegram allows about one message a second per chat and 20 a minute per group.
fn default_telegram_rate() -> u32 {
    30
}
fn default_tls() -> TlsMode {
    TlsMode::Implicit
}
fn default_mailbox() -> String {
    "INBOX".into()
}
fn default_poll_interval() -> u32 {
    60
}
fn default_email_rate() -> u32 {
    20
}
fn default_graph_url() -> String {
    "https://graph.facebook.com".into()
}
fn default_graph_version() -> String {
    "v21.0".into()
}
fn default_whatsapp_rate() -> u32 {
    60
}

/// Public and secret fields together, as the typed settings read them.
fn merged(config: &Map<String, Value>, secrets: &Map<String, Value>) -> Value {
    let mut all = config.clone();
    all.extend(secrets.iter().map(|(k, v)| (k.clone(), v.clone())));
    Value::Object(all)
}

fn typed<T: DeserializeOwned>(all: Value) -> Result<T, ConfigError> {
    serde_json::from_value(all).map_err(|e| {
        let mut text = e.to_string();
        // "invalid type: string \"hunter2\", expected u16": never echo a value (it may be a
        // credential); the field is not named in these, so say what was expected.
        if text.starts_with("invalid type") || text.starts_with("invalid value") {
            let expected = text
                .split(", expected")
                .nth(1)
                .unwrap_or(" another type")
                .to_string();
            return invalid(
                "",
                format!("a value has the wrong type (expected{expected})"),
            );
        }
        text = text.replace("config.", "");
        // serde names the field in backticks: point at it.
        let field = text
            .split('`')
            .nth(1)
            .unwrap_or("")
            .trim_start_matches("config.")
            .to_string();
        invalid(&field, text)
    })
}

fn require(field: &str, value: &str) -> Result<(), ConfigError> {
    if value.trim().is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    Ok(())
}

fn http_url(field: &str, value: &str) -> Result<(), ConfigError> {
    match url::Url::parse(value) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(()),
        _ => Err(invalid(field, "must be an http(s) URL")),
    }
}

fn rate(value: u32) -> Result<(), ConfigError> {
    if value == 0 || value > 6000 {
        return Err(invalid("outboundPerMinute", "must be between 1 and 6000"));
    }
    Ok(())
}

/// Validate a channel's configuration into its typed settings.
pub fn validate(
    kind: &str,
    config: &Map<String, Value>,
    secrets: &Map<String, Value>,
) -> Result<Settings, ConfigError> {
    let all = merged(config, secrets);
    match kind {
        "telegram" => {
            let s: TelegramSettings = typed(all)?;
            require("botToken", &s.bot_token)?;
            // A token is `<bot id>:<secret>`; anything else is refused before a request.
            let well_formed = s.bot_token.split_once(':').is_some_and(|(id, rest)| {
                !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) && rest.len() >= 8
            });
            if !well_formed {
                return Err(invalid(
                    "botToken",
                    "is not a bot token (expected `<bot id>:<secret>`, as BotFather gives it)",
                ));
            }
            http_url("apiBaseUrl", &s.api_base_url)?;
            if s.mode == TelegramMode::Webhook {
                match &s.public_url {
                    Some(u) => http_url("publicUrl", u)?,
                    None => {
                        return Err(invalid(
                            "publicUrl",
                            "is required in webhook mode: the https address Telegram reaches this gateway at",
                        ))
                    }
                }
            }
            if !(1..=50).contains(&s.poll_timeout_seconds) {
                return Err(invalid("pollTimeoutSeconds", "must be between 1 and 50"));
            }
            rate(s.outbound_per_minute)?;
            Ok(Settings::Telegram(s))
        }
        "email" => {
            let s: EmailSettings = typed(all)?;
            require("imapHost", &s.imap_host)?;
            require("imapUser", &s.imap_user)?;
            require("imapPassword", &s.imap_password)?;
            require("smtpHost", &s.smtp_host)?;
            require("mailbox", &s.mailbox)?;
            if s.from_address.parse::<lettre::Address>().is_err() {
                return Err(invalid("fromAddress", "is not an email address"));
            }
            if s.smtp_password.is_some() && s.smtp_user.is_none() {
                return Err(invalid("smtpUser", "is required with smtpPassword"));
            }
            if !(5..=3600).contains(&s.poll_interval_seconds) {
                return Err(invalid("pollIntervalSeconds", "must be between 5 and 3600"));
            }
            if s.imap_port == Some(0) {
                return Err(invalid("imapPort", "must be between 1 and 65535"));
            }
            if s.smtp_port == Some(0) {
                return Err(invalid("smtpPort", "must be between 1 and 65535"));
            }
            rate(s.outbound_per_minute)?;
            Ok(Settings::Email(s))
        }
        "whatsapp" => {
            let s: WhatsAppSettings = typed(all)?;
            match s.mode {
                WhatsAppMode::Cloud => {
                    for (field, value) in [
                        ("phoneNumberId", &s.phone_number_id),
                        ("accessToken", &s.access_token),
                        ("appSecret", &s.app_secret),
                        ("verifyToken", &s.verify_token),
                    ] {
                        match value {
                            Some(v) => require(field, v)?,
                            None => return Err(invalid(field, "is required in cloud mode")),
                        }
                    }
                    if !s
                        .phone_number_id
                        .as_deref()
                        .unwrap_or_default()
                        .bytes()
                        .all(|b| b.is_ascii_digit())
                    {
                        return Err(invalid(
                            "phoneNumberId",
                            "must be the numeric id Meta shows",
                        ));
                    }
                    http_url("graphBaseUrl", &s.graph_base_url)?;
                    if !s.graph_api_version.starts_with('v') {
                        return Err(invalid("graphApiVersion", "looks like `v21.0`"));
                    }
                    rate(s.outbound_per_minute)?;
                    Ok(Settings::WhatsApp(s))
                }
                #[cfg(feature = "whatsapp-linked")]
                WhatsAppMode::Linked => {
                    rate(s.outbound_per_minute)?;
                    Ok(Settings::WhatsApp(s))
                }
                #[cfg(not(feature = "whatsapp-linked"))]
                WhatsAppMode::Linked => Err(invalid(
                    "mode",
                    "linked-device mode (QR pairing) is not in this build (build with `--features whatsapp-linked`); use `cloud`",
                )),
            }
        }
        other => Err(ConfigError {
            field: "type".into(),
            message: format!("type must be one of {KINDS:?}, not {other:?}"),
        }),
    }
}

/// What a channel's resume state refers to: the bot (a token's id part) or the mailbox.
pub fn endpoint(settings: &Settings) -> String {
    match settings {
        Settings::Telegram(s) => s
            .bot_token
            .split(':')
            .next()
            .unwrap_or_default()
            .to_string(),
        Settings::Email(s) => format!("{}\n{}\n{}", s.imap_host, s.imap_user, s.mailbox),
        Settings::WhatsApp(s) => s.phone_number_id.clone().unwrap_or_default(),
    }
}

/// Split a request's `config` into public fields and credentials.
pub fn split(kind: &str, config: Map<String, Value>) -> (Map<String, Value>, Map<String, Value>) {
    let secret = secret_fields(kind);
    let (mut public, mut secrets) = (Map::new(), Map::new());
    for (k, v) in config {
        if secret.contains(&k.as_str()) {
            secrets.insert(k, v);
        } else {
            public.insert(k, v);
        }
    }
    (public, secrets)
}

/// Apply an update onto stored fields: a value replaces, `null` removes, absent keeps.
pub fn merge(into: &mut Map<String, Value>, update: Map<String, Value>) {
    for (k, v) in update {
        if v.is_null() {
            into.remove(&k);
        } else {
            into.insert(k, v);
        }
    }
}

/// Normalise an allowed-sender entry: trims, lowercases emails and @usernames, and drops the
/// `+` of phone numbers.
pub fn normalise_sender(s: &str) -> String {
    let s = s.trim();
    // A phone number as people write it (`+49 151 1234-567`): digits only, as WhatsApp sends.
    let phone = s.starts_with('+')
        && s.chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '+' | ' ' | '-' | '(' | ')' | '.'));
    if phone {
        return s.chars().filter(char::is_ascii_digit).collect();
    }
    s.to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn telegram_needs_a_real_looking_token() {
        let e = validate("telegram", &Map::new(), &obj(json!({"botToken": "nope"})))
            .err()
            .unwrap();
        assert_eq!(e.field, "config.botToken");
        let e = validate("telegram", &Map::new(), &Map::new())
            .err()
            .unwrap();
        assert_eq!(e.field, "config.botToken", "{e}");
        assert!(validate(
            "telegram",
            &Map::new(),
            &obj(json!({"botToken": "123:abcdefghijk"}))
        )
        .is_ok());
    }

    #[test]
    fn unknown_fields_are_named() {
        let e = validate(
            "telegram",
            &obj(json!({"botTokn": "x"})),
            &obj(json!({"botToken": "123:abcdefghijk"})),
        )
        .err()
        .unwrap();
        assert_eq!(e.field, "config.botTokn", "{e}");
    }

    #[test]
    fn wrong_types_do_not_echo_values() {
        let e = validate("email", &Map::new(), &obj(json!({"imapPassword": 123456})))
            .err()
            .unwrap();
        assert!(!e.message.contains("123456"), "{e}");
    }

    #[test]
    fn phone_numbers_match_as_digits() {
        assert_eq!(normalise_sender("+49 151 1234-567"), "491511234567");
        assert_eq!(normalise_sender("@Alice"), "@alice");
        assert_eq!(normalise_sender("Ann@Example.test"), "ann@example.test");
    }

    #[test]
    fn split_and_merge() {
        let (public, secrets) = split("email", obj(json!({"imapHost": "h", "imapPassword": "p"})));
        assert_eq!(public.len(), 1);
        assert_eq!(secrets["imapPassword"], "p");
        let mut m = obj(json!({"a": 1, "b": 2}));
        merge(&mut m, obj(json!({"a": null, "c": 3})));
        assert_eq!(Value::Object(m), json!({"b": 2, "c": 3}));
    }
}
