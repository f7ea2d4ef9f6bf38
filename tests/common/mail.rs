//! The mail peer: real IMAP and SMTP servers for the email channel's end-to-end tests.
//!
//! `MailPeer::start` runs `tests/peers/mail/mail_server.sh` (Debian's dovecot for IMAP and
//! LMTP, PyPI's aiosmtpd as the SMTP front that hands mail to LMTP) on free ports of
//! 127.0.0.1, with its users, mail and logs in a temporary directory. Dropping it stops
//! everything. Installed by tests/run.sh (apt) and tests/peers/install.sh (venv); see
//! tests/peers/NOTES.md.
//!
//! Every helper here blocks (plain sockets, no runtime). The gateway is another process, so
//! calling them from an async test is fine; they only hold up the test's own tasks.
//!
//! ```ignore
//! let mail = MailPeer::start(&[("agent@example.test", "secret"), ("alice@example.test", "secret")]);
//! let id = mail.send("alice@example.test", "agent@example.test", "Hi", "Hello agent", &[]);
//! // ... the gateway polls agent@ over IMAP on mail.imap_port() and replies over SMTP ...
//! let replies = mail.wait_for_mail("alice@example.test", "secret", "INBOX", 1, Duration::from_secs(30));
//! assert_eq!(replies[0].in_reply_to.as_deref(), Some(id.as_str()));
//! ```

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lettre::address::Envelope;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::Mailbox;
use lettre::{Address, Message, SmtpTransport, Transport};

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/peers/mail/mail_server.sh"
);
/// Caps, not pauses: the peer is ready in ~0.2 s (~0.4 s with TLS) on an idle machine.
const START_LIMIT: Duration = Duration::from_secs(30);
const COMMAND_LIMIT: Duration = Duration::from_secs(30);
const IO_TIMEOUT: Duration = Duration::from_secs(20);

/// How to start the peer. `Default`: STARTTLS offered (never required), SMTP AUTH optional.
#[derive(Clone, Debug)]
pub struct MailOptions {
    /// Offer STARTTLS on the IMAP and SMTP ports and open implicit-TLS IMAPS and SMTPS ports.
    /// The certificate (localhost, 127.0.0.1) is signed by the CA in `ca_pem()`. Plaintext
    /// logins work either way.
    pub tls: bool,
    /// The SMTP front refuses MAIL FROM before AUTH (PLAIN/LOGIN, any peer user).
    pub smtp_auth_required: bool,
}

impl Default for MailOptions {
    fn default() -> Self {
        MailOptions {
            tls: true,
            smtp_auth_required: false,
        }
    }
}

/// A running mail peer. Stopped (no dovecot left behind) when dropped.
pub struct MailPeer {
    dir: tempfile::TempDir,
    host: String,
    imap_port: u16,
    lmtp_port: u16,
    smtp_port: u16,
    imaps_port: Option<u16>,
    smtps_port: Option<u16>,
    child: Child,
    control: Mutex<Control>,
}

struct Control {
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
}

/// One message as read over IMAP (read-only: fetching it does not set `\Seen`).
#[derive(Clone, Debug)]
pub struct FetchedMail {
    pub uid: u32,
    /// As the server reports them: `\Seen`, `\Answered`, `\Flagged`, `\Recent`, keywords...
    pub flags: Vec<String>,
    /// The whole message. LMTP delivery prepends `Return-Path`, `Delivered-To` and `Received`.
    pub raw: Vec<u8>,
    /// Decoded (RFC 2047).
    pub subject: Option<String>,
    /// These are the header values as written (unfolded, trimmed), e.g. `<id@example.test>`.
    pub message_id: Option<String>,
    pub in_reply_to: Option<String>,
    pub references: Option<String>,
    pub from: Option<String>,
    /// The bare address in From (`alice@example.test`).
    pub from_address: Option<String>,
    pub to: Option<String>,
    /// The first text body part, decoded (transfer encoding and charset).
    pub text: Option<String>,
}

impl FetchedMail {
    fn parse(uid: u32, flags: Vec<String>, raw: Vec<u8>) -> FetchedMail {
        let mut mail = FetchedMail {
            uid,
            flags,
            raw,
            subject: None,
            message_id: None,
            in_reply_to: None,
            references: None,
            from: None,
            from_address: None,
            to: None,
            text: None,
        };
        if let Some(parsed) = mail_parser::MessageParser::default().parse(&mail.raw) {
            mail.subject = parsed.subject().map(str::to_string);
            mail.text = parsed.body_text(0).map(|t| t.into_owned());
            mail.from_address = parsed
                .from()
                .and_then(|a| a.first())
                .and_then(|a| a.address())
                .map(str::to_string);
        }
        mail.message_id = mail.header("Message-ID");
        mail.in_reply_to = mail.header("In-Reply-To");
        mail.references = mail.header("References");
        mail.from = mail.header("From");
        mail.to = mail.header("To");
        mail
    }

    pub fn seen(&self) -> bool {
        self.has_flag("\\Seen")
    }

    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f.eq_ignore_ascii_case(flag))
    }

    /// The first header called `name` (any case), unfolded and trimmed, not decoded.
    pub fn header(&self, name: &str) -> Option<String> {
        let parsed = mail_parser::MessageParser::default().parse(&self.raw)?;
        let raw = parsed.header_raw(name)?;
        Some(raw.split_whitespace().collect::<Vec<_>>().join(" "))
    }

    pub fn raw_text(&self) -> String {
        String::from_utf8_lossy(&self.raw).into_owned()
    }
}

/// A message the SMTP front accepted (whether or not it was for a peer user).
#[derive(Clone, Debug)]
pub struct SmtpRecord {
    /// The envelope sender (empty for the null reverse-path `<>`).
    pub mail_from: String,
    pub rcpt_tos: Vec<String>,
    /// The user the client authenticated as, if it used AUTH.
    pub auth_user: Option<String>,
    /// Whether the session was under TLS (STARTTLS or SMTPS).
    pub tls: bool,
    /// Recipients delivered to a peer user's INBOX.
    pub delivered: Vec<String>,
    /// Recipients that are not peer users: recorded here only.
    pub not_local: Vec<String>,
    /// The reply the SMTP client got to DATA, e.g. `250 2.0.0 OK: queued`.
    pub reply: String,
    pub raw: Vec<u8>,
}

impl MailPeer {
    /// Start with STARTTLS offered; `users` are (address, password) pairs that log in to IMAP,
    /// get mail over SMTP, and may use SMTP AUTH.
    pub fn start(users: &[(&str, &str)]) -> MailPeer {
        Self::start_with(users, MailOptions::default())
    }

    pub fn start_with(users: &[(&str, &str)], options: MailOptions) -> MailPeer {
        assert!(!users.is_empty(), "the mail peer needs at least one user");
        let venv = std::env::var("LG_PEERS_VENV")
            .unwrap_or_else(|_| "/var/tmp/loop-gateway-peers-venv".into());
        assert!(
            Path::new(&venv).join("bin/python").exists(),
            "the test peers are not installed at {venv}: run tests/peers/install.sh and \
             apt-get install -y dovecot-imapd dovecot-lmtpd openssl (tests/run.sh does both)"
        );
        let dir = tempfile::Builder::new()
            .prefix("lg-mail-")
            .tempdir()
            .expect("temp dir");
        let log_path = dir.path().join("launcher.log");
        for _attempt in 0..3 {
            let ports = distinct_ports(if options.tls { 5 } else { 3 });
            let (imap_port, lmtp_port, smtp_port) = (ports[0], ports[1], ports[2]);
            let (imaps_port, smtps_port) = match options.tls {
                true => (Some(ports[3]), Some(ports[4])),
                false => (None, None),
            };
            let log = File::options()
                .create(true)
                .append(true)
                .open(&log_path)
                .expect("launcher log");
            let mut cmd = Command::new(SCRIPT);
            cmd.arg("--dir")
                .arg(dir.path())
                .args(["--imap-port", &imap_port.to_string()])
                .args(["--lmtp-port", &lmtp_port.to_string()])
                .args(["--smtp-port", &smtp_port.to_string()]);
            if let (Some(imaps), Some(smtps)) = (imaps_port, smtps_port) {
                cmd.arg("--tls")
                    .args(["--imaps-port", &imaps.to_string()])
                    .args(["--smtps-port", &smtps.to_string()]);
            }
            if options.smtp_auth_required {
                cmd.arg("--smtp-auth-required");
            }
            for (user, password) in users {
                cmd.arg(format!("{user}:{password}"));
            }
            let mut child = cmd
                .env("LG_PEERS_VENV", &venv)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(log)
                .spawn()
                .expect("start tests/peers/mail/mail_server.sh");
            let stdout = child.stdout.take().expect("stdout");
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
            match rx.recv_timeout(START_LIMIT) {
                Ok(line) if line.starts_with("READY ") => {
                    let stdin = child.stdin.take();
                    return MailPeer {
                        dir,
                        host: "127.0.0.1".into(),
                        imap_port,
                        lmtp_port,
                        smtp_port,
                        imaps_port,
                        smtps_port,
                        child,
                        control: Mutex::new(Control { stdin, lines: rx }),
                    };
                }
                _ => {
                    let _ = child.kill();
                    let status = child.wait().expect("wait");
                    // 3: a server did not come up, most likely a port taken since we chose
                    // it. Try other ports; anything else is a setup problem.
                    if status.code() != Some(3) {
                        break;
                    }
                }
            }
        }
        panic!(
            "the mail peer did not start; its log:\n{}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn imap_port(&self) -> u16 {
        self.imap_port
    }

    pub fn smtp_port(&self) -> u16 {
        self.smtp_port
    }

    pub fn lmtp_port(&self) -> u16 {
        self.lmtp_port
    }

    /// Implicit-TLS IMAP (with `tls`).
    pub fn imaps_port(&self) -> Option<u16> {
        self.imaps_port
    }

    /// Implicit-TLS SMTP (with `tls`).
    pub fn smtps_port(&self) -> Option<u16> {
        self.smtps_port
    }

    /// The CA that signed the servers' certificate (with `tls`), PEM.
    pub fn ca_pem(&self) -> Option<PathBuf> {
        let path = self.dir.path().join("tls/ca.pem");
        path.exists().then_some(path)
    }

    /// The peer's directory: users, `mail/<user>/Maildir`, `smtp/` records, logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The launcher's log and the tail of both dovecot logs, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for name in ["launcher.log", "imap/dovecot.log", "lmtp/dovecot.log"] {
            let text = std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
            let start = text.len().saturating_sub(6000);
            let start = (start..text.len())
                .find(|&i| text.is_char_boundary(i))
                .unwrap_or(text.len());
            out.push_str(&format!("--- {name}\n{}\n", &text[start..]));
        }
        out
    }

    // ---- control --------------------------------------------------------------------------

    /// Stop dovecot's IMAP (clients get `* BYE`, connections are refused) and start it again
    /// on the same port and mail; returns once IMAP greets again. LMTP and SMTP stay up.
    pub fn restart_imap(&self) {
        self.control("restart imap");
    }

    /// Stop IMAP gracefully: open sessions get `* BYE Server shutting down.` and are closed;
    /// new connections are refused until `start_imap`. Mail still arrives meanwhile.
    pub fn stop_imap(&self) {
        self.control("stop imap");
    }

    /// Stop IMAP abruptly (SIGKILL, like a crash): open connections just drop, no BYE.
    pub fn kill_imap(&self) {
        self.control("kill imap");
    }

    /// Start IMAP after `stop_imap`/`kill_imap`; returns once it greets.
    pub fn start_imap(&self) {
        self.control("start imap");
    }

    /// Any launcher command: `stop|kill|start|restart imap|lmtp|smtp` (with LMTP stopped the
    /// SMTP front answers DATA with 451; with SMTP stopped, connections are refused).
    pub fn control(&self, command: &str) {
        let command = command.trim();
        let mut control = self.control.lock().unwrap_or_else(|e| e.into_inner());
        let stdin = control.stdin.as_mut().expect("mail peer running");
        if let Err(e) = writeln!(stdin, "{command}").and_then(|_| stdin.flush()) {
            panic!("mail peer: cannot send {command:?}: {e}\n{}", self.logs());
        }
        let deadline = Instant::now() + COMMAND_LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match control.lines.recv_timeout(left) {
                Ok(line) if line == format!("OK {command}") => return,
                Ok(line) if line.starts_with(&format!("ERR {command}")) => {
                    panic!("mail peer: {line}\n{}", self.logs())
                }
                Ok(_) => continue,
                Err(e) => panic!("mail peer: no answer to {command:?}: {e}\n{}", self.logs()),
            }
        }
    }

    // ---- SMTP -----------------------------------------------------------------------------

    fn transport(&self) -> SmtpTransport {
        SmtpTransport::builder_dangerous(self.host.as_str())
            .port(self.smtp_port)
            .timeout(Some(IO_TIMEOUT))
            .build()
    }

    /// Send a text/plain (UTF-8) message through the SMTP front; returns its Message-ID
    /// (`<...>`, generated unless `extra_headers` has one). `to` may list several addresses,
    /// comma-separated; `from`/`to` take `Name <addr>` too. `extra_headers` are added as
    /// written (In-Reply-To, References, Auto-Submitted, ...); don't repeat From/To/Subject.
    pub fn send(
        &self,
        from: &str,
        to: &str,
        subject: &str,
        text_body: &str,
        extra_headers: &[(&str, &str)],
    ) -> String {
        let mut builder = Message::builder().from(mailbox(from)).subject(subject);
        for addr in split_addresses(to) {
            builder = builder.to(mailbox(addr));
        }
        let mut message_id = None;
        let mut content_type = false;
        for (name, value) in extra_headers {
            if name.eq_ignore_ascii_case("Message-ID") {
                message_id = Some(value.to_string());
                continue;
            }
            content_type |= name.eq_ignore_ascii_case("Content-Type");
            let name = HeaderName::new_from_ascii(name.to_string())
                .unwrap_or_else(|e| panic!("header name {name:?}: {e}"));
            builder = builder.raw_header(HeaderValue::new(name, value.to_string()));
        }
        if !content_type {
            builder = builder.header(ContentType::TEXT_PLAIN);
        }
        let id = message_id.unwrap_or_else(new_message_id);
        let message = builder
            .message_id(Some(id.clone()))
            .body(text_body.to_string())
            .expect("a valid message");
        if let Err(e) = self.transport().send(&message) {
            panic!("SMTP send to {to}: {e}\n{}", self.logs());
        }
        id
    }

    /// Send bytes as they are (for malformed MIME); bare LF line ends become CRLF. `from`
    /// may be empty for the null reverse-path `<>`; `to` may list several addresses.
    pub fn send_raw(&self, from: &str, to: &str, raw_rfc822: &[u8]) {
        if let Err(e) = self.try_send_raw(from, to, raw_rfc822) {
            panic!("SMTP send_raw to {to}: {e}\n{}", self.logs());
        }
    }

    /// `send_raw` that returns the SMTP error instead of panicking.
    pub fn try_send_raw(&self, from: &str, to: &str, raw_rfc822: &[u8]) -> Result<(), String> {
        let from = match from.trim() {
            "" => None,
            f => Some(address(f)?),
        };
        let to = split_addresses(to)
            .map(address)
            .collect::<Result<Vec<_>, _>>()?;
        let envelope = Envelope::new(from, to).map_err(|e| e.to_string())?;
        self.transport()
            .send_raw(&envelope, &crlf(raw_rfc822))
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// Every message the SMTP front accepted, oldest first (also those for other domains).
    pub fn smtp_received(&self) -> Vec<SmtpRecord> {
        let spool = self.dir.path().join("smtp");
        let mut names: Vec<PathBuf> = std::fs::read_dir(&spool)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        names.retain(|p| p.extension().is_some_and(|x| x == "json"));
        names.sort();
        names
            .into_iter()
            .map(|json| {
                let meta: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(&json).expect("record"))
                        .expect("record json");
                let strings = |key: &str| -> Vec<String> {
                    meta[key]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|v| v.as_str().map(str::to_string))
                                .collect()
                        })
                        .unwrap_or_default()
                };
                SmtpRecord {
                    mail_from: meta["mail_from"].as_str().unwrap_or_default().to_string(),
                    rcpt_tos: strings("rcpt_tos"),
                    auth_user: meta["auth_user"].as_str().map(str::to_string),
                    tls: meta["tls"].as_bool().unwrap_or(false),
                    delivered: strings("delivered"),
                    not_local: strings("not_local"),
                    reply: meta["reply"].as_str().unwrap_or_default().to_string(),
                    raw: std::fs::read(json.with_extension("eml")).unwrap_or_default(),
                }
            })
            .collect()
    }

    /// Wait until the SMTP front has accepted at least `n` messages.
    pub fn wait_for_smtp(&self, n: usize, limit: Duration) -> Vec<SmtpRecord> {
        let deadline = Instant::now() + limit;
        loop {
            let records = self.smtp_received();
            if records.len() >= n {
                return records;
            }
            assert!(
                Instant::now() < deadline,
                "wanted {n} SMTP messages within {limit:?}, have {}\n{}",
                records.len(),
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    // ---- IMAP -----------------------------------------------------------------------------

    /// A logged-in IMAP session over plain TCP (for checks the helpers below don't cover).
    pub fn imap_session(
        &self,
        user: &str,
        password: &str,
    ) -> Result<imap::Session<TcpStream>, String> {
        let addr = (self.host.as_str(), self.imap_port)
            .to_socket_addrs()
            .map_err(|e| e.to_string())?
            .next()
            .ok_or("no address")?;
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
            .map_err(|e| format!("IMAP connect: {e}"))?;
        stream
            .set_read_timeout(Some(IO_TIMEOUT))
            .and_then(|_| stream.set_write_timeout(Some(IO_TIMEOUT)))
            .map_err(|e| e.to_string())?;
        let mut client = imap::Client::new(stream);
        client
            .read_greeting()
            .map_err(|e| format!("IMAP greeting: {e}"))?;
        client
            .login(user, password)
            .map_err(|(e, _)| format!("IMAP login {user}: {e}"))
    }

    /// Every message in `mailbox`, by UID, without changing flags (EXAMINE + BODY.PEEK[]).
    pub fn fetch_all(&self, user: &str, password: &str, mailbox: &str) -> Vec<FetchedMail> {
        self.try_fetch_all(user, password, mailbox)
            .unwrap_or_else(|e| panic!("{e}\n{}", self.logs()))
    }

    pub fn try_fetch_all(
        &self,
        user: &str,
        password: &str,
        mailbox: &str,
    ) -> Result<Vec<FetchedMail>, String> {
        let mut session = self.imap_session(user, password)?;
        let info = session
            .examine(mailbox)
            .map_err(|e| format!("IMAP EXAMINE {mailbox}: {e}"))?;
        let mut mails = Vec::new();
        if info.exists > 0 {
            let fetches = session
                .uid_fetch("1:*", "(UID FLAGS BODY.PEEK[])")
                .map_err(|e| format!("IMAP FETCH {mailbox}: {e}"))?;
            for fetch in fetches.iter() {
                mails.push(FetchedMail::parse(
                    fetch.uid.unwrap_or(0),
                    fetch.flags().iter().map(|f| f.to_string()).collect(),
                    fetch.body().unwrap_or_default().to_vec(),
                ));
            }
        }
        let _ = session.logout();
        mails.sort_by_key(|m| m.uid);
        Ok(mails)
    }

    /// Poll `mailbox` until it holds at least `n` messages (IMAP being down or restarting
    /// counts as "not yet"); panics after `limit` with what it saw and the peer's logs.
    pub fn wait_for_mail(
        &self,
        user: &str,
        password: &str,
        mailbox: &str,
        n: usize,
        limit: Duration,
    ) -> Vec<FetchedMail> {
        let deadline = Instant::now() + limit;
        loop {
            let seen = match self.try_fetch_all(user, password, mailbox) {
                Ok(mails) if mails.len() >= n => return mails,
                Ok(mails) => format!("{} message(s)", mails.len()),
                Err(e) => e,
            };
            assert!(
                Instant::now() < deadline,
                "{user} {mailbox}: wanted {n} message(s) within {limit:?}, last saw: {seen}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Put a message straight into `mailbox` (IMAP APPEND) with `flags` such as `\Seen`.
    pub fn append(&self, user: &str, password: &str, mailbox: &str, raw: &[u8], flags: &[&str]) {
        let raw = crlf(raw);
        let result = self.imap_session(user, password).and_then(|mut session| {
            session
                .append(mailbox, &raw)
                .flags(flags.iter().map(|f| imap::types::Flag::from(*f)))
                .finish()
                .map_err(|e| format!("IMAP APPEND {mailbox}: {e}"))?;
            let _ = session.logout();
            Ok(())
        });
        if let Err(e) = result {
            panic!("{e}\n{}", self.logs());
        }
    }

    /// The user's mailbox names (INBOX, Drafts, Sent, Archive, Junk, Trash and any created).
    pub fn mailboxes(&self, user: &str, password: &str) -> Vec<String> {
        let result = self.imap_session(user, password).and_then(|mut session| {
            let names = session
                .list(Some(""), Some("*"))
                .map_err(|e| format!("IMAP LIST: {e}"))?;
            let names = names.iter().map(|n| n.name().to_string()).collect();
            let _ = session.logout();
            Ok(names)
        });
        result.unwrap_or_else(|e| panic!("{e}\n{}", self.logs()))
    }
}

impl Drop for MailPeer {
    fn drop(&mut self) {
        // EOF on its stdin and SIGTERM both stop it; wait, so no dovecot outlives the test.
        let control = match self.control.get_mut() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        drop(control.stdin.take());
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() > deadline => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }
}

fn distinct_ports(n: usize) -> Vec<u16> {
    let mut ports: Vec<u16> = Vec::with_capacity(n);
    while ports.len() < n {
        let port = super::free_port();
        if !ports.contains(&port) {
            ports.push(port);
        }
    }
    ports
}

fn split_addresses(list: &str) -> impl Iterator<Item = &str> {
    list.split(',').map(str::trim).filter(|s| !s.is_empty())
}

fn mailbox(addr: &str) -> Mailbox {
    addr.parse()
        .unwrap_or_else(|e| panic!("mail address {addr:?}: {e}"))
}

fn address(addr: &str) -> Result<Address, String> {
    addr.parse::<Mailbox>()
        .map(|m| m.email)
        .map_err(|e| format!("mail address {addr:?}: {e}"))
}

fn new_message_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "<lg-test-{}-{nanos:x}-{}@example.test>",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Line ends as SMTP wants them: every bare LF becomes CRLF.
fn crlf(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 32);
    for (i, &b) in raw.iter().enumerate() {
        if b == b'\n' && (i == 0 || raw[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}
