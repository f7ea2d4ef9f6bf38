//! `EmailChannel`: a mailbox read over IMAP (blocking, so on its own thread: IDLE when the
//! server has it, polling otherwise) and replies sent over SMTP (lettre), threaded with
//! `In-Reply-To` and `References`. A message is marked `\Seen` only after it is stored.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use governor::DefaultDirectRateLimiter;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use mail_parser::MimeHeaders;
use serde_json::{json, Value};

use super::config::{EmailSettings, TlsMode};
use super::{
    report, ChannelManager, ChannelStart, Deliver, DeliverError, Incoming, Received, Retire,
    Status, Typing,
};

const BACKOFF_START: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// IDLE is renewed this often, which is also how soon a stopped channel's thread notices.
const IDLE_SLICE: Duration = Duration::from_secs(20);
/// Messages fetched per round trip.
const FETCH_BATCH: usize = 20;
/// The longest an IMAP command may wait for the server.
const IO_TIMEOUT: Duration = Duration::from_secs(120);

pub struct EmailChannel {
    id: String,
    generation: u64,
    settings: EmailSettings,
    manager: Addr<ChannelManager>,
    stop: Arc<AtomicBool>,
    smtp: Option<AsyncSmtpTransport<Tokio1Executor>>,
    limiter: Arc<DefaultDirectRateLimiter>,
    /// `(UIDVALIDITY, first UID to answer)`: mail older than the channel is not answered.
    /// Shared with the reader thread, so a restarted actor knows what it saved.
    watermark: Arc<std::sync::Mutex<Option<(u32, u32)>>>,
    retired: bool,
}

fn watermark_of(state: Option<&Value>) -> Option<(u32, u32)> {
    let s = state?;
    let validity = u32::try_from(s.get("uidValidity")?.as_u64()?).ok()?;
    let from = u32::try_from(s.get("uidFrom")?.as_u64()?).ok()?;
    Some((validity, from))
}

impl EmailChannel {
    pub fn new(start: ChannelStart<EmailSettings>) -> Self {
        EmailChannel {
            id: start.channel_id,
            generation: start.generation,
            limiter: super::telegram::limiter(start.settings.outbound_per_minute),
            settings: start.settings,
            manager: start.manager,
            stop: Arc::new(AtomicBool::new(false)),
            smtp: None,
            watermark: Arc::new(std::sync::Mutex::new(watermark_of(start.state.as_ref()))),
            retired: false,
        }
    }

    fn smtp(&mut self) -> Result<AsyncSmtpTransport<Tokio1Executor>, String> {
        if let Some(t) = &self.smtp {
            return Ok(t.clone());
        }
        let s = &self.settings;
        let builder = match s.smtp_tls {
            TlsMode::None => {
                AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(s.smtp_host.as_str())
            }
            TlsMode::Implicit => AsyncSmtpTransport::<Tokio1Executor>::relay(&s.smtp_host)
                .map_err(|e| format!("SMTP TLS setup: {e}"))?,
            TlsMode::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&s.smtp_host)
                .map_err(|e| format!("SMTP TLS setup: {e}"))?,
        };
        let mut builder = builder
            .port(s.smtp_port())
            .timeout(Some(Duration::from_secs(30)));
        if let Some(user) = &s.smtp_user {
            builder = builder.credentials(Credentials::new(
                user.clone(),
                s.smtp_password.clone().unwrap_or_default(),
            ));
        }
        let transport = builder.build();
        self.smtp = Some(transport.clone());
        Ok(transport)
    }
}

impl Actor for EmailChannel {
    type Context = Context<Self>;

    fn started(&mut self, _: &mut Context<Self>) {
        if self.retired {
            return;
        }
        self.stop.store(false, Ordering::SeqCst);
        let reader = Reader {
            id: self.id.clone(),
            generation: self.generation,
            settings: self.settings.clone(),
            manager: self.manager.clone(),
            stop: self.stop.clone(),
            runtime: tokio::runtime::Handle::current(),
            watermark: self.watermark.clone(),
        };
        let spawned = std::thread::Builder::new()
            .name(format!("imap-{}", &self.id[..8.min(self.id.len())]))
            .spawn(move || reader.run());
        if let Err(e) = spawned {
            report(
                &self.id,
                self.generation,
                &self.manager,
                Status::Error,
                Some(format!("cannot start the IMAP thread: {e}")),
            );
        }
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

impl actix::Supervised for EmailChannel {
    fn restarting(&mut self, _: &mut Context<Self>) {
        self.stop.store(true, Ordering::SeqCst);
        self.stop = Arc::new(AtomicBool::new(false));
    }
}

impl Handler<Retire> for EmailChannel {
    type Result = ();

    fn handle(&mut self, _: Retire, ctx: &mut Context<Self>) {
        self.retired = true;
        self.stop.store(true, Ordering::SeqCst);
        ctx.stop();
    }
}

impl Handler<Typing> for EmailChannel {
    type Result = ();

    fn handle(&mut self, _: Typing, _: &mut Context<Self>) {}
}

fn angle(id: &str) -> String {
    format!("<{}>", id.trim_matches(|c| c == '<' || c == '>'))
}

impl Handler<Deliver> for EmailChannel {
    type Result = ResponseFuture<Result<(), DeliverError>>;

    fn handle(&mut self, msg: Deliver, _: &mut Context<Self>) -> Self::Result {
        let transport = self.smtp();
        let from = self.settings.from_address.clone();
        let limiter = self.limiter.clone();
        Box::pin(async move {
            let transport = transport.map_err(DeliverError::Permanent)?;
            let meta = msg.meta.unwrap_or_default();
            let text = |k: &str| meta.get(k).and_then(Value::as_str).unwrap_or_default();
            let to = text("replyTo");
            let subject = text("subject");
            let subject = if subject.to_ascii_lowercase().starts_with("re:") {
                subject.to_string()
            } else if subject.is_empty() {
                "Re: your message".to_string()
            } else {
                format!("Re: {subject}")
            };
            let original = text("messageId");
            let mut references: Vec<String> = meta
                .get("references")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).map(angle).collect())
                .unwrap_or_default();
            if !original.is_empty() {
                references.push(angle(original));
            }
            let domain = from.rsplit('@').next().unwrap_or("localhost");
            let mut builder = Message::builder()
                .from(
                    from.parse()
                        .map_err(|e| DeliverError::Permanent(format!("fromAddress: {e}")))?,
                )
                .to(to
                    .parse()
                    .map_err(|e| DeliverError::Permanent(format!("recipient {to:?}: {e}")))?)
                .subject(subject)
                .message_id(Some(format!("<{}@{domain}>", uuid::Uuid::new_v4())))
                .header(ContentType::TEXT_PLAIN)
                // RFC 3834: other robots must not answer this one.
                .raw_header(HeaderValue::new(
                    HeaderName::new_from_ascii_str("Auto-Submitted"),
                    "auto-replied".into(),
                ));
            if !original.is_empty() {
                builder = builder.in_reply_to(angle(original));
            }
            if !references.is_empty() {
                builder = builder.references(references.join(" "));
            }
            let email = builder
                .body(msg.text)
                .map_err(|e| DeliverError::Permanent(format!("cannot build the reply: {e}")))?;
            limiter.until_ready().await;
            transport.send(email).await.map(|_| ()).map_err(|e| {
                if e.is_permanent() {
                    DeliverError::Permanent(format!("the SMTP server refused the reply: {e}"))
                } else {
                    DeliverError::Retry {
                        after: Duration::from_secs(5),
                        reason: format!("cannot send over SMTP: {e}"),
                        sent_parts: 0,
                    }
                }
            })
        })
    }
}

/// The IMAP side, on its own thread.
struct Reader {
    id: String,
    generation: u64,
    settings: EmailSettings,
    manager: Addr<ChannelManager>,
    stop: Arc<AtomicBool>,
    runtime: tokio::runtime::Handle,
    watermark: Arc<std::sync::Mutex<Option<(u32, u32)>>>,
}

/// The IMAP connection with a read timeout that is never lifted: `idle()` sets its own and
/// then asks for none, which on a half-open connection would block the thread forever.
struct Bounded(imap::Connection);

impl std::io::Read for Bounded {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

impl std::io::Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

impl imap::extensions::idle::SetReadTimeout for Bounded {
    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> imap::Result<()> {
        self.0.set_read_timeout(Some(timeout.unwrap_or(IO_TIMEOUT)))
    }
}

type Session = imap::Session<Bounded>;

impl Reader {
    fn status(&self, status: Status, error: Option<String>) {
        report(&self.id, self.generation, &self.manager, status, error);
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Sleep up to `d`, waking early when the channel stops.
    fn nap(&self, d: Duration) {
        let until = std::time::Instant::now() + d;
        while !self.stopped() && std::time::Instant::now() < until {
            std::thread::sleep(Duration::from_millis(200).min(d));
        }
    }

    fn run(self) {
        let mut backoff = BACKOFF_START;
        while !self.stopped() {
            match self.session(&mut backoff) {
                Ok(()) => break,
                Err(e) => {
                    if self.stopped() {
                        break;
                    }
                    tracing::warn!(channel = %self.id, error = %e, "IMAP session ended");
                    self.status(Status::Error, Some(e));
                    self.nap(backoff);
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }

    fn connect(&self) -> Result<Session, String> {
        let s = &self.settings;
        let mode = match s.imap_tls {
            TlsMode::Implicit => imap::ConnectionMode::Tls,
            TlsMode::Starttls => imap::ConnectionMode::StartTls,
            TlsMode::None => imap::ConnectionMode::Plaintext,
        };
        let where_ = format!("{}:{}", s.imap_host, s.imap_port());
        let client = imap::ClientBuilder::new(s.imap_host.as_str(), s.imap_port())
            .mode(mode)
            .tls_kind(imap::TlsKind::Rust)
            .connect()
            .map_err(|e| format!("cannot connect to the IMAP server {where_}: {e}"))?;
        let mut stream = client
            .into_inner()
            .map_err(|e| format!("IMAP connection to {where_}: {e}"))?;
        stream
            .set_read_timeout(Some(IO_TIMEOUT))
            .map_err(|e| format!("IMAP connection to {where_}: {e}"))?;
        let mut client = imap::Client::new(Bounded(stream));
        // The builder has read the greeting already.
        client.greeting_read = true;
        client
            .login(&s.imap_user, &s.imap_password)
            .map_err(|(e, _)| format!("the IMAP server refused the login for {}: {e}", s.imap_user))
    }

    /// One IMAP session: returns `Ok` only when the channel stops.
    fn session(&self, backoff: &mut Duration) -> Result<(), String> {
        let mut session = self.connect()?;
        let mailbox = session
            .select(&self.settings.mailbox)
            .map_err(|e| format!("cannot open mailbox {}: {e}", self.settings.mailbox))?;
        let validity = mailbox.uid_validity.unwrap_or(0);
        let known = *self.watermark.lock().unwrap_or_else(|p| p.into_inner());
        let from = match known {
            Some((v, from)) if v == validity => from,
            // First connection (or the mailbox was recreated): what is already there is
            // history, not questions; answer what arrives from now on.
            _ => {
                let from = mailbox.uid_next.unwrap_or(1);
                let saved = self.runtime.block_on(self.manager.send(Received {
                    channel_id: self.id.clone(),
                    generation: self.generation,
                    messages: Vec::new(),
                    state: Some(json!({"uidValidity": validity, "uidFrom": from})),
                }));
                if !matches!(saved, Ok(Ok(()))) {
                    return Err("cannot save the mailbox position".into());
                }
                *self.watermark.lock().unwrap_or_else(|p| p.into_inner()) = Some((validity, from));
                from
            }
        };
        let idle = session
            .capabilities()
            .map(|c| c.has_str("IDLE"))
            .unwrap_or(false);
        self.status(Status::Connected, None);
        *backoff = BACKOFF_START;
        let err = |e: imap::Error| format!("IMAP: {e}");
        while !self.stopped() {
            self.fetch_unseen(&mut session, validity, from)?;
            if idle {
                session
                    .idle()
                    .timeout(IDLE_SLICE)
                    .keepalive(false)
                    // Any news ends the wait: the next round searches again.
                    .wait_while(|_| false)
                    .map_err(err)?;
            } else {
                self.nap(Duration::from_secs(u64::from(
                    self.settings.poll_interval_seconds,
                )));
                // Keeps the connection alive and lets the server report new mail.
                session.noop().map_err(err)?;
            }
        }
        let _ = session.logout();
        Ok(())
    }

    fn fetch_unseen(&self, session: &mut Session, validity: u32, from: u32) -> Result<(), String> {
        let err = |e: imap::Error| format!("IMAP: {e}");
        let mut uids: Vec<u32> = session
            .uid_search("UNSEEN")
            .map_err(err)?
            .into_iter()
            .filter(|&uid| uid >= from)
            .collect();
        uids.sort_unstable();
        for batch in uids.chunks(FETCH_BATCH) {
            let set = batch
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(",");
            let fetched = session.uid_fetch(&set, "(UID BODY.PEEK[])").map_err(err)?;
            let messages: Vec<Incoming> = fetched
                .iter()
                .filter_map(|f| {
                    let uid = f.uid?;
                    Some(parse_email(
                        f.body().unwrap_or_default(),
                        &format!("uid:{validity}:{uid}"),
                        &self.settings.from_address,
                    ))
                })
                .collect();
            let stored = self.runtime.block_on(self.manager.send(Received {
                channel_id: self.id.clone(),
                generation: self.generation,
                messages,
                state: None,
            }));
            match stored {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(format!("cannot store received mail: {e}")),
                Err(_) => return Ok(()),
            }
            // Stored: now the server may consider them read.
            session.uid_store(&set, "+FLAGS (\\Seen)").map_err(err)?;
        }
        Ok(())
    }
}

fn header_ids(v: &mail_parser::HeaderValue<'_>) -> Vec<String> {
    if let Some(list) = v.as_text_list() {
        list.iter().map(|s| s.to_string()).collect()
    } else if let Some(one) = v.as_text() {
        one.split_whitespace()
            .map(|s| s.trim_matches(|c| c == '<' || c == '>').to_string())
            .filter(|s| !s.is_empty())
            .collect()
    } else {
        Vec::new()
    }
}

/// A raw email as an inbox message. Never fails: what cannot be read is kept and ignored.
pub(crate) fn parse_email(raw: &[u8], fallback_id: &str, own_address: &str) -> Incoming {
    let Some(m) = mail_parser::MessageParser::default().parse(raw) else {
        return Incoming {
            external_id: fallback_id.to_string(),
            chat_key: fallback_id.to_string(),
            sender: "unknown".into(),
            sender_name: None,
            sender_ids: Vec::new(),
            text: String::from_utf8_lossy(&raw[..raw.len().min(2000)]).into_owned(),
            meta: None,
            addressed: true,
            unsupported: Some("unreadable_message".into()),
        };
    };
    let message_id = m.message_id().map(str::to_string);
    let references = header_ids(m.references());
    let in_reply_to = header_ids(m.in_reply_to());
    // One conversation per thread: the thread's first message names it.
    let thread = references
        .first()
        .or(in_reply_to.first())
        .cloned()
        .or_else(|| message_id.clone())
        .unwrap_or_else(|| fallback_id.to_string());
    let from = m.from().and_then(|a| a.first());
    let address = from
        .and_then(|a| a.address())
        .unwrap_or_default()
        .to_lowercase();
    let body = m.body_text(0).map(|b| b.into_owned()).unwrap_or_default();
    let text = strip_quoted(&body);
    // RFC 3834: never answer automatic mail (auto-replies, bounces, lists, bulk).
    let text_header = |name: &str| m.header(name).and_then(|h| h.as_text()).map(str::to_string);
    let auto = text_header("Auto-Submitted").is_some_and(|v| !v.eq_ignore_ascii_case("no"))
        || text_header("Precedence")
            .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "bulk" | "list" | "junk"))
        || m.header("List-Id").is_some()
        || address.starts_with("mailer-daemon@")
        || address.starts_with("postmaster@")
        || m.content_type().is_some_and(|ct| {
            ct.ctype().eq_ignore_ascii_case("multipart")
                && ct
                    .subtype()
                    .is_some_and(|s| s.eq_ignore_ascii_case("report"))
        });
    let unsupported = if address.is_empty() {
        Some("no_sender_address".to_string())
    } else if address == own_address.to_lowercase() {
        // Our own reply, delivered to the mailbox we read: answering it would loop.
        Some("own_message".to_string())
    } else if auto {
        Some("auto_submitted".to_string())
    } else {
        None
    };
    let mut refs = references.clone();
    if refs.is_empty() {
        refs = in_reply_to;
    }
    Incoming {
        external_id: message_id
            .clone()
            .unwrap_or_else(|| fallback_id.to_string()),
        chat_key: thread,
        sender: address.clone(),
        sender_name: from.and_then(|a| a.name()).map(str::to_string),
        sender_ids: vec![address.clone()],
        text,
        meta: Some(json!({
            "subject": m.subject().unwrap_or_default(),
            "messageId": message_id,
            "references": refs,
            // Replies go to the address the allow-list judged, never to a Reply-To the
            // sender chose.
            "replyTo": address,
        })),
        addressed: true,
        unsupported,
    }
}

/// The new part of a reply: quoted lines, the attribution line before them, and the
/// signature are dropped.
pub(crate) fn strip_quoted(body: &str) -> String {
    let mut kept: Vec<&str> = Vec::new();
    for line in body.lines() {
        let t = line.trim();
        let attribution = (t.starts_with("On ") && t.ends_with("wrote:"))
            || (t.starts_with("Am ") && t.ends_with("schrieb:"))
            || (t.starts_with("Le ") && t.ends_with("a écrit :"))
            || t == "-----Original Message-----"
            || t.starts_with("________________________________");
        if attribution || line == "-- " {
            break;
        }
        if t.starts_with('>') {
            continue;
        }
        kept.push(line.trim_end());
    }
    let text = kept.join("\n");
    let trimmed = text.trim();
    if trimmed.is_empty() {
        body.trim().to_string()
    } else {
        trimmed.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_history_is_stripped() {
        let body = "Yes please.\n\nOn Tue, 3 Mar 2026, Bot <bot@x> wrote:\n> earlier\n> text\n";
        assert_eq!(strip_quoted(body), "Yes please.");
        assert_eq!(strip_quoted("a\n> b\nc\n-- \nsig"), "a\nc");
    }

    #[test]
    fn threads_and_replies_are_read() {
        let raw = b"From: Ann <Ann@Example.test>\r\nTo: bot@example.test\r\nSubject: Plans\r\n\
Message-ID: <m2@example.test>\r\nIn-Reply-To: <m1@example.test>\r\n\
References: <root@example.test> <m1@example.test>\r\n\r\nWhat next?\r\n";
        let m = parse_email(raw, "uid:1:1", "bot@example.test");
        assert_eq!(m.external_id, "m2@example.test");
        assert_eq!(m.chat_key, "root@example.test");
        assert_eq!(m.sender, "ann@example.test");
        assert_eq!(m.text, "What next?");
        assert!(m.unsupported.is_none());
        let own = parse_email(
            b"From: bot@example.test\r\nSubject: x\r\n\r\nhi\r\n",
            "uid:1:2",
            "bot@example.test",
        );
        assert_eq!(own.unsupported.as_deref(), Some("own_message"));
    }

    #[test]
    fn html_only_mail_becomes_text() {
        let raw = b"From: a@b.test\r\nSubject: h\r\nContent-Type: text/html\r\n\r\n<p>Hello <b>there</b></p>\r\n";
        let m = parse_email(raw, "uid:1:3", "bot@x.test");
        assert!(m.text.contains("Hello"), "{}", m.text);
        assert!(!m.text.contains("<b>"), "{}", m.text);
    }
}
