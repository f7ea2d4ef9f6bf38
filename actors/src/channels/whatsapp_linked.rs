//! `WhatsAppLinkedChannel`: WhatsApp in linked-device mode (WhatsApp Web multi-device, paired
//! by scanning a QR code, like Baileys), through the `whatsapp-rust` crate.
//!
//! The session (device keys, Signal sessions) lives in `<data_dir>/whatsapp-session.db`, so a
//! restart resumes without pairing again. Each connection attempt runs on an arbiter (thread)
//! of its own: the client's work never delays the gateway's event loop, and stopping that
//! arbiter ends every task the client spawned. The library's own reconnect loop is switched
//! off; this actor reconnects with its backoff (1 s doubling to 60 s) and reports why.
//!
//! Received messages reach the manager through the library's inbound durability hook: the
//! library acknowledges a message to WhatsApp only after the hook returned `Ok`, i.e. after the
//! manager stored it. A refused or failed store leaves it unacknowledged, and WhatsApp delivers
//! it again on the next connection.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::Duration;

use actix::prelude::*;
use actix_rt::{Arbiter, ArbiterHandle};
use futures_util::FutureExt;
use governor::DefaultDirectRateLimiter;
use serde_json::json;
use whatsapp_rust::bot::Bot;
use whatsapp_rust::proto_helpers::MessageExt;
use whatsapp_rust::transport::{
    TokioWebSocketTransportFactory, Transport, TransportEvent, TransportFactory,
};
use whatsapp_rust::types::events::{
    ConnectFailureReason, Event, EventHandler, EventInterest, EventKind, InboundMessage,
};
use whatsapp_rust::types::message::{EditAttribute, MessageInfo, MessageSource};
use whatsapp_rust::wacore::store::DevicePropsOverride;
use whatsapp_rust::wacore_binary::JidExt;
use whatsapp_rust::waproto::whatsapp as wa;
use whatsapp_rust::{Client, ClientError, InboundDurabilityHook, IqError, Jid, SendError};
use whatsapp_rust_sqlite_storage::SqliteStore;

use super::config::WhatsAppSettings;
use super::format::split_message;
use super::{
    ChannelManager, ChannelStart, Deliver, DeliverError, Incoming, QrUpdate, Received, Retire,
    Status, StatusUpdate, Typing,
};

/// Long replies go out in parts of at most this many characters (as with the Cloud API).
const TEXT_LIMIT: usize = 4096;
const BACKOFF_START: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// How long a graceful disconnect (flushing keys and acknowledgements) may take.
const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one message part may take to go out.
const SEND_TIMEOUT: Duration = Duration::from_secs(60);
/// The session database, inside the channel's data directory.
pub const SESSION_FILE: &str = "whatsapp-session.db";
/// The manager renews "typing…" every few seconds (Telegram's pace); WhatsApp shows it for
/// about 25 s, so one chat state per chat this often is plenty.
const TYPING_EVERY: Duration = Duration::from_secs(15);
/// What the device is called in the phone's "Linked devices" list.
const DEVICE_NAME: &str = "Loop Gateway";

const LOGGED_OUT: &str = "logged out on the phone: the session was deleted; \
     disable and enable the channel (or restart the gateway) to pair again with a new QR code";
const REPLACED: &str = "another WhatsApp Web client took over this session (stream replaced); \
     disable and enable the channel to connect again";

pub struct WhatsAppLinkedChannel {
    id: String,
    outlet: Outlet,
    session: PathBuf,
    endpoint: Endpoint,
    limiter: Arc<DefaultDirectRateLimiter>,
    /// The running connection attempt, if any.
    live: Option<Live>,
    attempts: u64,
    backoff: Duration,
    /// When "typing…" was last sent to each chat.
    typing: HashMap<String, std::time::Instant>,
    /// Stopped for good: logged out, or replaced by another client.
    halted: bool,
    retired: bool,
}

/// Where the client connects to. Production uses WhatsApp's defaults; tests point the
/// WebSocket at a local port and pin the client version (no HTTP version lookup).
#[derive(Clone, Default)]
struct Endpoint {
    ws_url: Option<String>,
    version: Option<(u32, u32, u32)>,
}

/// Where the channel reports to (the manager, or a test's recorder).
#[derive(Clone)]
struct Outlet {
    id: String,
    generation: u64,
    status: Recipient<StatusUpdate>,
    qr: Recipient<QrUpdate>,
    received: Recipient<Received>,
}

impl Outlet {
    fn of(id: &str, generation: u64, manager: &Addr<ChannelManager>) -> Self {
        Outlet {
            id: id.to_string(),
            generation,
            status: manager.clone().recipient(),
            qr: manager.clone().recipient(),
            received: manager.clone().recipient(),
        }
    }

    fn status(&self, status: Status, error: Option<String>) {
        self.status.do_send(StatusUpdate {
            channel_id: self.id.clone(),
            generation: self.generation,
            status,
            error,
        });
    }

    fn qr(&self, qr: Option<String>) {
        self.qr.do_send(QrUpdate {
            channel_id: self.id.clone(),
            generation: self.generation,
            qr,
        });
    }

    /// Hand messages to the manager; `Ok` once they are stored (only then may the library
    /// acknowledge them to WhatsApp).
    async fn store(&self, messages: Vec<Incoming>) -> Result<(), String> {
        let sent = self
            .received
            .send(Received {
                channel_id: self.id.clone(),
                generation: self.generation,
                messages,
                state: None,
            })
            .await;
        match sent {
            Ok(stored) => stored,
            Err(_) => Err("the gateway is stopping".to_string()),
        }
    }
}

/// One connection attempt: its arbiter, and what it shares with the client's callbacks.
struct Live {
    attempt: u64,
    arbiter: Arbiter,
    shared: Arc<Shared>,
}

impl Live {
    fn current(&self) -> Option<(Arc<Client>, ArbiterHandle)> {
        self.shared.client().map(|c| (c, self.arbiter.handle()))
    }

    /// Disconnect gracefully (flushing keys and acknowledgements), then end the arbiter and
    /// with it every task of this attempt.
    fn shut_down(self) {
        match self.shared.client() {
            Some(client) => {
                let spawned = self.arbiter.spawn(async move {
                    let _ = tokio::time::timeout(DISCONNECT_TIMEOUT, client.disconnect()).await;
                    Arbiter::current().stop();
                });
                if !spawned {
                    self.arbiter.stop();
                }
            }
            None => {
                self.arbiter.stop();
            }
        }
    }
}

/// State of one attempt, written by the client's callbacks (on the attempt's arbiter) and read
/// by the actor.
#[derive(Default)]
struct Shared {
    client: Mutex<Option<Arc<Client>>>,
    seen: Mutex<Observed>,
}

impl Shared {
    fn client(&self) -> Option<Arc<Client>> {
        self.client
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set_client(&self, client: Option<Arc<Client>>) {
        *self.client.lock().unwrap_or_else(|p| p.into_inner()) = client;
    }

    fn seen(&self) -> Observed {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn update<R>(&self, f: impl FnOnce(&mut Observed) -> R) -> R {
        f(&mut self.seen.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// What happened during one connection attempt.
#[derive(Debug, Clone, Default, PartialEq)]
struct Observed {
    /// Logged in (the connection worked).
    connected: bool,
    /// Pairing succeeded; WhatsApp closes the stream and expects a reconnect at once.
    paired: bool,
    /// Every QR code of this connection expired unscanned.
    qr_exhausted: bool,
    logged_out: bool,
    replaced: bool,
    /// The manager could not store received messages; a reconnect makes WhatsApp deliver
    /// them again.
    store_failed: bool,
    /// WhatsApp banned the account for this long.
    banned_for: Option<Duration>,
    /// The last thing that went wrong, in words.
    error: Option<String>,
    /// How the last connection ended, when it ended after a login.
    disconnect: Option<(String, bool)>,
}

/// What a client event means for the channel.
#[derive(Debug, Clone, PartialEq)]
enum Effect {
    Qr(String),
    QrExpired,
    Paired,
    PairFailed(String),
    Connected,
    Disconnected { reason: String, clean: bool },
    LoggedOut,
    Replaced,
    Banned { reason: String, expire: Duration },
    Refused(String),
    NoMultiDevice,
}

/// The events the channel listens to.
const EVENT_KINDS: &[EventKind] = &[
    EventKind::PairingQrCode,
    EventKind::PairingQrCodesExhausted,
    EventKind::PairSuccess,
    EventKind::PairError,
    EventKind::Connected,
    EventKind::Disconnected,
    EventKind::LoggedOut,
    EventKind::StreamReplaced,
    EventKind::TemporaryBan,
    EventKind::ConnectFailure,
    EventKind::ClientOutdated,
    EventKind::QrScannedWithoutMultidevice,
];

fn effect(event: &Event) -> Option<Effect> {
    Some(match event {
        Event::PairingQrCode(qr) => Effect::Qr(qr.code.clone()),
        // With `disconnected: false` a pairing by phone-number code is still open (not used
        // here): the connection stays up.
        Event::PairingQrCodesExhausted(e) if e.disconnected => Effect::QrExpired,
        Event::PairSuccess(_) => Effect::Paired,
        Event::PairError(e) => Effect::PairFailed(format!("pairing failed: {}", e.error)),
        Event::Connected(_) => Effect::Connected,
        Event::Disconnected(d) => Effect::Disconnected {
            reason: d.reason.to_string(),
            clean: d.reason.is_clean_shutdown(),
        },
        Event::LoggedOut(_) => Effect::LoggedOut,
        Event::StreamReplaced(_) => Effect::Replaced,
        Event::TemporaryBan(b) => {
            let expire = b.expire.to_std().unwrap_or(BACKOFF_MAX);
            Effect::Banned {
                reason: format!(
                    "WhatsApp banned this account temporarily ({}); it can connect again in {} s",
                    b.code,
                    expire.as_secs()
                ),
                expire,
            }
        }
        Event::ConnectFailure(f) if f.reason.is_logged_out() => Effect::LoggedOut,
        Event::ConnectFailure(f) => Effect::Refused(format!(
            "WhatsApp refused the connection ({}{})",
            refusal(f.reason),
            f.message
                .as_deref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default()
        )),
        Event::ClientOutdated(_) => Effect::Refused(
            "WhatsApp refused this client version as outdated (an update of whatsapp-rust is \
             needed)"
                .into(),
        ),
        Event::QrScannedWithoutMultidevice(_) => Effect::NoMultiDevice,
        _ => return None,
    })
}

fn refusal(reason: ConnectFailureReason) -> String {
    match reason {
        ConnectFailureReason::ServiceUnavailable => "503, service unavailable".into(),
        ConnectFailureReason::InternalServerError => "500, server error".into(),
        ConnectFailureReason::BadUserAgent => "409, bad user agent".into(),
        ConnectFailureReason::ClientOutdated => "405, client outdated".into(),
        other => format!("{other:?}"),
    }
}

impl Observed {
    fn apply(&mut self, effect: &Effect) {
        match effect {
            Effect::QrExpired => self.qr_exhausted = true,
            Effect::Paired => self.paired = true,
            Effect::Connected => {
                self.connected = true;
                self.error = None;
            }
            Effect::Disconnected { reason, clean } => {
                self.disconnect = Some((reason.clone(), *clean));
            }
            Effect::LoggedOut => self.logged_out = true,
            Effect::Replaced => self.replaced = true,
            Effect::Banned { reason, expire } => {
                self.banned_for = Some(*expire);
                self.error = Some(reason.clone());
            }
            Effect::Refused(reason) | Effect::PairFailed(reason) => {
                self.error = Some(reason.clone());
            }
            Effect::Qr(_) | Effect::NoMultiDevice => {}
        }
    }
}

/// What to do once an attempt ended.
#[derive(Debug, PartialEq)]
enum Plan {
    /// Do not reconnect; the channel shows this error.
    Halt(&'static str),
    /// Reconnect after `wait`; `error` is shown meanwhile (`None`: status connecting).
    Retry {
        wait: Duration,
        error: Option<String>,
        backoff: Duration,
    },
}

fn plan(seen: &Observed, backoff: Duration) -> Plan {
    if seen.logged_out {
        return Plan::Halt(LOGGED_OUT);
    }
    if seen.replaced {
        return Plan::Halt(REPLACED);
    }
    if (seen.paired || seen.qr_exhausted) && !seen.store_failed {
        // After pairing WhatsApp expects the new device to log in right away; expired QR
        // codes: a new connection shows new ones.
        return Plan::Retry {
            wait: Duration::ZERO,
            error: None,
            backoff: BACKOFF_START,
        };
    }
    if seen.connected && !seen.store_failed {
        // It worked until the connection dropped: start the backoff again.
        let error = match &seen.disconnect {
            Some((reason, false)) => Some(format!(
                "the connection to WhatsApp was lost ({reason}); reconnecting in {} s",
                BACKOFF_START.as_secs()
            )),
            _ => None,
        };
        return Plan::Retry {
            wait: BACKOFF_START,
            error,
            backoff: (BACKOFF_START * 2).min(BACKOFF_MAX),
        };
    }
    let wait = seen.banned_for.map_or(backoff, |ban| ban.max(backoff));
    let why = seen.error.clone().unwrap_or_else(|| {
        "could not connect to WhatsApp (the network is unreachable, the connection timed out, or \
         the handshake failed)"
            .to_string()
    });
    Plan::Retry {
        wait,
        error: Some(format!("{why}; retrying in {} s", wait.as_secs())),
        backoff: (backoff * 2).min(BACKOFF_MAX),
    }
}

/// Routes the client's events to the manager and into the attempt's record.
struct Events {
    outlet: Outlet,
    shared: Arc<Shared>,
}

impl EventHandler for Events {
    // Runs inline on the client's dispatch path: only quick, non-blocking work here.
    fn handle_event(&self, event: Arc<Event>) {
        let Some(effect) = effect(&event) else {
            return;
        };
        self.shared.update(|seen| seen.apply(&effect));
        let out = &self.outlet;
        match effect {
            Effect::Qr(code) => {
                out.qr(Some(code));
                out.status(Status::Connecting, None);
            }
            Effect::QrExpired => out.qr(None),
            Effect::Paired => {
                tracing::info!(channel = %out.id, "WhatsApp linked device paired");
                out.qr(None);
                out.status(Status::Connecting, None);
            }
            Effect::Connected => {
                tracing::info!(channel = %out.id, "WhatsApp linked device connected");
                out.qr(None);
                out.status(Status::Connected, None);
            }
            Effect::LoggedOut => {
                tracing::warn!(channel = %out.id, "WhatsApp linked device logged out");
                out.qr(None);
                out.status(Status::Error, Some(LOGGED_OUT.to_string()));
            }
            Effect::Replaced => out.status(Status::Error, Some(REPLACED.to_string())),
            Effect::Banned { reason, .. } => out.status(Status::Error, Some(reason)),
            Effect::NoMultiDevice => out.status(
                Status::Error,
                Some(
                    "the phone scanned the QR code but cannot link devices: update WhatsApp on \
                     the phone and scan again"
                        .into(),
                ),
            ),
            // Reported when the attempt ends, with the time of the next one.
            Effect::Disconnected { .. } | Effect::Refused(_) | Effect::PairFailed(_) => {}
        }
    }

    fn interest(&self) -> EventInterest {
        EventInterest::of(EVENT_KINDS)
    }
}

/// Hands received messages to the manager before the library acknowledges them.
struct Hook {
    outlet: Outlet,
    shared: Arc<Shared>,
}

#[whatsapp_rust::async_trait]
impl InboundDurabilityHook for Hook {
    async fn on_messages(
        &self,
        client: Arc<Client>,
        batch: &[InboundMessage],
    ) -> whatsapp_rust::anyhow::Result<()> {
        let mut messages = Vec::new();
        for m in batch {
            if let Some(incoming) = receive(&client, m).await {
                messages.push(incoming);
            }
        }
        if messages.is_empty() {
            return Ok(());
        }
        match self.outlet.store(messages).await {
            Ok(()) => Ok(()),
            Err(e) => {
                // Unacknowledged, the messages come again with the next connection: end this
                // one (once) so that the next comes soon. Not from here: the hook runs inside
                // the receive pipeline, which a disconnect waits for.
                let first = self.shared.update(|seen| {
                    let first = !seen.store_failed;
                    seen.store_failed = true;
                    seen.error = Some(format!("cannot store received messages: {e}"));
                    first
                });
                if first {
                    self.outlet.status(
                        Status::Error,
                        Some(format!(
                            "cannot store received messages ({e}); reconnecting so that WhatsApp \
                             delivers them again"
                        )),
                    );
                    tokio::spawn(async move {
                        tokio::time::sleep(BACKOFF_START).await;
                        let _ = tokio::time::timeout(DISCONNECT_TIMEOUT, client.disconnect()).await;
                    });
                }
                Err(whatsapp_rust::anyhow::anyhow!(e))
            }
        }
    }
}

/// The message as the manager sees it, or `None` when it is nothing to answer (our own,
/// status updates, reactions, edits and other protocol traffic).
async fn receive(client: &Client, m: &InboundMessage) -> Option<Incoming> {
    let info = &m.info;
    if !relevant(info) {
        return None;
    }
    let content = classify(&m.message)?;
    let mut phone = sender_phone(&info.source);
    if phone.is_none() && !is_group(&info.source) && info.source.sender.server.is_lid_family() {
        // A sender known by its LID only: the client may know the number behind it.
        if let Ok(Some(entry)) = client
            .get_lid_pn_entry(&info.source.sender.to_non_ad())
            .await
        {
            phone = Some(entry.phone_number.to_string()).filter(|p| is_digits(p));
        }
    }
    Some(to_incoming(info, content, phone))
}

/// Whether a message can be for the channel at all.
fn relevant(info: &MessageInfo) -> bool {
    let chat = &info.source.chat;
    !info.source.is_from_me
        && !chat.is_status_broadcast()
        && !chat.is_broadcast_list()
        && !chat.is_newsletter()
        && matches!(info.edit, EditAttribute::Empty)
}

fn is_group(source: &MessageSource) -> bool {
    source.is_group || source.chat.is_group()
}

/// What a message carries.
#[derive(Debug, PartialEq)]
enum Content {
    Text(String),
    /// Something the agent cannot read: its kind and caption.
    Other {
        kind: &'static str,
        caption: Option<String>,
    },
}

fn classify(message: &wa::Message) -> Option<Content> {
    let base = message.get_base_message();
    if let Some(text) = base.text_content() {
        return Some(Content::Text(text.to_string()));
    }
    let kind = if base.image_message.is_set() {
        "image"
    } else if base.video_message.is_set() || base.ptv_message.is_set() {
        "video"
    } else if base.audio_message.is_set() {
        "audio"
    } else if base.document_message.is_set() {
        "document"
    } else if base.sticker_message.is_set() {
        "sticker"
    } else if base.location_message.is_set() || base.live_location_message.is_set() {
        "location"
    } else if base.contact_message.is_set() || base.contacts_array_message.is_set() {
        "contact"
    } else if base.poll_creation_message.is_set()
        || base.poll_creation_message_v2.is_set()
        || base.poll_creation_message_v3.is_set()
    {
        "poll"
    } else if base.protocol_message.is_set()
        || base.reaction_message.is_set()
        || base.enc_reaction_message.is_set()
        || base.sender_key_distribution_message.is_set()
        || base.poll_update_message.is_set()
        || base.keep_in_chat_message.is_set()
        || base.pin_in_chat_message.is_set()
        || base.call.is_set()
    {
        // Reactions, edits, deletions, key exchange and the like: nothing to answer.
        return None;
    } else {
        "unknown"
    };
    Some(Content::Other {
        kind,
        caption: base.get_caption().map(str::to_string),
    })
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// The phone number a JID names (`4915112345678@s.whatsapp.net` → `4915112345678`); `None`
/// for LIDs, groups and the like.
fn phone_digits(jid: &Jid) -> Option<String> {
    use whatsapp_rust::Server;
    if !(jid.server.is_pn_family() || jid.server == Server::Legacy) {
        return None;
    }
    let user = jid.user_base();
    is_digits(user).then(|| user.to_string())
}

/// The sender's phone number, from its JID or the alternative (PN) address WhatsApp sends
/// along with a LID.
fn sender_phone(source: &MessageSource) -> Option<String> {
    phone_digits(&source.sender).or_else(|| source.sender_alt.as_ref().and_then(phone_digits))
}

/// The sender's LID (`<id>@lid`), when WhatsApp addressed it so.
fn sender_lid(source: &MessageSource) -> Option<String> {
    [Some(&source.sender), source.sender_alt.as_ref()]
        .into_iter()
        .flatten()
        .find(|j| j.server.is_lid_family())
        .map(Jid::to_non_ad_string)
}

fn to_incoming(info: &MessageInfo, content: Content, phone: Option<String>) -> Incoming {
    let source = &info.source;
    let chat = source.chat.to_non_ad_string();
    let group = is_group(source);
    let lid = sender_lid(source);
    let sender = phone
        .clone()
        .or_else(|| lid.clone())
        .unwrap_or_else(|| source.sender.to_non_ad_string());
    let mut sender_ids: Vec<String> = phone.iter().chain(lid.iter()).cloned().collect();
    if sender_ids.is_empty() {
        sender_ids.push(sender.clone());
    }
    let (text, unsupported) = if group {
        // Not answered (yet), so its words are not kept either.
        ("[group message]".to_string(), Some("group_message"))
    } else {
        match content {
            Content::Text(text) => (text, None),
            Content::Other { kind, caption } => (
                match caption.filter(|c| !c.trim().is_empty()) {
                    Some(c) => format!("[{kind} message] {c}"),
                    None => format!("[{kind} message]"),
                },
                Some("unsupported_message_type"),
            ),
        }
    };
    // Message ids are unique per chat (and, in groups, per sender) only.
    let external_id = if group {
        format!("{chat}/{}/{}", source.sender.to_non_ad_string(), info.id)
    } else {
        format!("{chat}/{}", info.id)
    };
    let name = info.push_name.trim();
    Incoming {
        external_id,
        chat_key: chat,
        sender,
        sender_name: (!name.is_empty()).then(|| name.to_string()),
        sender_ids,
        text,
        meta: Some(json!({ "messageId": info.id })),
        addressed: true,
        unsupported: unsupported.map(str::to_string),
    }
}

/// The WebSocket transport, noting why a connection could not be opened.
struct Dial {
    inner: TokioWebSocketTransportFactory,
    shared: Arc<Shared>,
}

#[whatsapp_rust::async_trait]
impl TransportFactory for Dial {
    async fn create_transport(
        &self,
    ) -> Result<
        (
            Arc<dyn Transport>,
            whatsapp_rust::async_channel::Receiver<TransportEvent>,
        ),
        whatsapp_rust::anyhow::Error,
    > {
        let opened = self.inner.create_transport().await;
        if let Err(e) = &opened {
            let why = format!("cannot open the connection to WhatsApp: {e:#}");
            self.shared.update(|seen| seen.error = Some(why));
        }
        opened
    }
}

/// One lock per session file: a replaced actor's client finishes (and flushes) before the
/// next one opens the same session.
fn session_lock(path: &Path) -> Arc<tokio::sync::Mutex<()>> {
    static LOCKS: LazyLock<Mutex<HashMap<PathBuf, Weak<tokio::sync::Mutex<()>>>>> =
        LazyLock::new(Default::default);
    let mut locks = LOCKS.lock().unwrap_or_else(|p| p.into_inner());
    locks.retain(|_, lock| lock.strong_count() > 0);
    if let Some(lock) = locks.get(path).and_then(Weak::upgrade) {
        return lock;
    }
    let lock = Arc::new(tokio::sync::Mutex::new(()));
    locks.insert(path.to_path_buf(), Arc::downgrade(&lock));
    lock
}

/// Delete a session database and its SQLite side files (missing ones are fine).
fn delete_session(path: &Path) -> std::io::Result<()> {
    let mut result = Ok(());
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        match std::fs::remove_file(PathBuf::from(name)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => result = Err(e),
            _ => {}
        }
    }
    result
}

/// The attempt ended (its arbiter is still running).
#[derive(Message)]
#[rtype(result = "()")]
struct Ended {
    attempt: u64,
    /// Set when the attempt could not even start the client.
    failure: Option<String>,
}

struct AttemptArgs {
    attempt: u64,
    session: PathBuf,
    endpoint: Endpoint,
    outlet: Outlet,
    shared: Arc<Shared>,
}

/// One connection: open the session, build the client, run it until the connection ends.
/// Runs on the attempt's own arbiter.
async fn run_attempt(args: AttemptArgs) -> Option<String> {
    let AttemptArgs {
        attempt,
        session,
        endpoint,
        outlet,
        shared,
    } = args;
    let lock = session_lock(&session);
    let _held = lock.lock_owned().await;
    if let Some(dir) = session.parent().map(Path::to_path_buf) {
        let made = tokio::task::spawn_blocking(move || std::fs::create_dir_all(dir)).await;
        match made {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Some(format!("cannot create the session directory: {e}")),
            Err(e) => return Some(format!("cannot create the session directory: {e}")),
        }
    }
    let store = match SqliteStore::new(&session.to_string_lossy()).await {
        Ok(store) => store,
        Err(e) => return Some(format!("cannot open the session database: {e}")),
    };
    let mut transport = TokioWebSocketTransportFactory::new();
    if let Some(url) = &endpoint.ws_url {
        transport = transport.with_url(url.clone());
    }
    let mut builder = Bot::builder()
        .with_backend(store)
        .with_transport_factory(Dial {
            inner: transport,
            shared: shared.clone(),
        })
        .with_event_handler(Events {
            outlet: outlet.clone(),
            shared: shared.clone(),
        })
        .with_inbound_durability_hook(Hook {
            outlet: outlet.clone(),
            shared: shared.clone(),
        })
        // The chat history of the phone is not the agent's business.
        .skip_history_sync()
        .with_device_props(DevicePropsOverride::new().with_os(DEVICE_NAME));
    if let Some(version) = endpoint.version {
        builder = builder.with_version(version);
    }
    let bot = match builder.build().await {
        Ok(bot) => bot,
        Err(e) => return Some(format!("cannot start the WhatsApp client: {e}")),
    };
    let client = bot.client();
    // One connection per attempt: the actor decides when (and whether) to come back.
    client.enable_auto_reconnect.store(false, Ordering::SeqCst);
    shared.set_client(Some(client.clone()));
    tracing::debug!(channel = %outlet.id, attempt, "WhatsApp client started");
    bot.spawn().await;
    let _ = tokio::time::timeout(DISCONNECT_TIMEOUT, client.disconnect()).await;
    shared.set_client(None);
    if shared.seen().logged_out {
        // Its keys are void: the next start pairs afresh.
        drop(client);
        let path = session.clone();
        match tokio::task::spawn_blocking(move || delete_session(&path)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(channel = %outlet.id, error = %e, "cannot delete the logged-out WhatsApp session");
            }
            Err(e) => {
                tracing::error!(channel = %outlet.id, error = %e, "cannot delete the logged-out WhatsApp session");
            }
        }
    }
    None
}

impl WhatsAppLinkedChannel {
    pub fn new(start: ChannelStart<WhatsAppSettings>) -> Self {
        let outlet = Outlet::of(&start.channel_id, start.generation, &start.manager);
        Self::with_outlet(
            outlet,
            &start.settings,
            start.data_dir.join(SESSION_FILE),
            Endpoint::default(),
        )
    }

    fn with_outlet(
        outlet: Outlet,
        settings: &WhatsAppSettings,
        session: PathBuf,
        endpoint: Endpoint,
    ) -> Self {
        WhatsAppLinkedChannel {
            id: outlet.id.clone(),
            outlet,
            session,
            endpoint,
            limiter: super::telegram::limiter(settings.outbound_per_minute),
            live: None,
            attempts: 0,
            backoff: BACKOFF_START,
            typing: HashMap::new(),
            halted: false,
            retired: false,
        }
    }

    /// Start a connection attempt on an arbiter of its own.
    fn connect(&mut self, ctx: &mut Context<Self>) {
        if self.retired || self.halted || self.live.is_some() {
            return;
        }
        let arbiter = match Arbiter::try_new() {
            Ok(a) => a,
            Err(e) => {
                let wait = self.backoff;
                self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
                self.outlet.status(
                    Status::Error,
                    Some(format!(
                        "cannot start a thread for the WhatsApp client: {e}; retrying in {} s",
                        wait.as_secs()
                    )),
                );
                ctx.run_later(wait, |act, ctx| act.connect(ctx));
                return;
            }
        };
        self.attempts += 1;
        let attempt = self.attempts;
        let shared = Arc::new(Shared::default());
        let args = AttemptArgs {
            attempt,
            session: self.session.clone(),
            endpoint: self.endpoint.clone(),
            outlet: self.outlet.clone(),
            shared: shared.clone(),
        };
        let me = ctx.address();
        let spawned = arbiter.spawn(async move {
            let failure = std::panic::AssertUnwindSafe(run_attempt(args))
                .catch_unwind()
                .await
                .unwrap_or_else(|_| Some("the WhatsApp client failed (panicked)".to_string()));
            me.do_send(Ended { attempt, failure });
        });
        if !spawned {
            arbiter.stop();
            ctx.run_later(self.backoff, |act, ctx| act.connect(ctx));
            return;
        }
        self.live = Some(Live {
            attempt,
            arbiter,
            shared,
        });
    }

    fn current(&self) -> Option<(Arc<Client>, ArbiterHandle)> {
        self.live.as_ref().and_then(Live::current)
    }
}

impl Actor for WhatsAppLinkedChannel {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // A restart in place (after a panic) finds the attempt it had still running.
        if self.retired || self.halted || self.live.is_some() {
            return;
        }
        self.outlet.status(Status::Connecting, None);
        self.connect(ctx);
    }
}

impl actix::Supervised for WhatsAppLinkedChannel {}

impl Handler<Ended> for WhatsAppLinkedChannel {
    type Result = ();

    fn handle(&mut self, msg: Ended, ctx: &mut Context<Self>) {
        if self.live.as_ref().map(|l| l.attempt) != Some(msg.attempt) {
            return;
        }
        let Some(live) = self.live.take() else {
            return;
        };
        let mut seen = live.shared.seen();
        live.arbiter.stop();
        if self.retired {
            return;
        }
        if let Some(failure) = msg.failure {
            seen.error = Some(failure);
        }
        match plan(&seen, self.backoff) {
            Plan::Halt(why) => {
                self.halted = true;
                self.outlet.qr(None);
                self.outlet.status(Status::Error, Some(why.to_string()));
            }
            Plan::Retry {
                wait,
                error,
                backoff,
            } => {
                self.backoff = backoff;
                if let Some(why) = &error {
                    tracing::warn!(channel = %self.id, reason = %why, "WhatsApp linked device not connected");
                }
                self.outlet.qr(None);
                match error {
                    Some(why) => self.outlet.status(Status::Error, Some(why)),
                    None => self.outlet.status(Status::Connecting, None),
                }
                ctx.run_later(wait, |act, ctx| act.connect(ctx));
            }
        }
    }
}

impl Handler<Retire> for WhatsAppLinkedChannel {
    type Result = ();

    // `final_` (deleted or disabled) keeps the session too: enabled again, the channel resumes
    // without a new pairing. Deleting the channel's data directory is the manager's call.
    fn handle(&mut self, _: Retire, ctx: &mut Context<Self>) {
        self.retired = true;
        if let Some(live) = self.live.take() {
            live.shut_down();
        }
        ctx.stop();
    }
}

impl Handler<Typing> for WhatsAppLinkedChannel {
    type Result = ();

    fn handle(&mut self, msg: Typing, _: &mut Context<Self>) {
        let Some((client, arbiter)) = self.current() else {
            return;
        };
        let Ok(jid) = msg.chat_key.parse::<Jid>() else {
            return;
        };
        if !client.is_logged_in() {
            return;
        }
        let now = std::time::Instant::now();
        if self
            .typing
            .get(&msg.chat_key)
            .is_some_and(|at| now.duration_since(*at) < TYPING_EVERY)
        {
            return;
        }
        self.typing
            .retain(|_, at| now.duration_since(*at) < TYPING_EVERY);
        self.typing.insert(msg.chat_key, now);
        arbiter.spawn(async move {
            let _ = client.chatstate().send_composing(&jid).await;
        });
    }
}

fn not_connected(sent_parts: usize) -> DeliverError {
    DeliverError::Retry {
        after: Duration::from_secs(5),
        reason: "not connected to WhatsApp (pairing, reconnecting or logged out)".into(),
        sent_parts,
    }
}

/// How a failed send is retried (or not).
fn send_failure(e: &SendError, sent_parts: usize) -> DeliverError {
    let retry = |secs: u64| DeliverError::Retry {
        after: Duration::from_secs(secs),
        reason: format!("WhatsApp did not take the message: {e}"),
        sent_parts,
    };
    match e {
        SendError::NotLoggedIn => not_connected(sent_parts),
        SendError::Client(ClientError::NotConnected | ClientError::NotLoggedIn) => {
            not_connected(sent_parts)
        }
        SendError::InvalidRequest(_) => {
            DeliverError::Permanent(format!("WhatsApp refused the message: {e}"))
        }
        SendError::Iq(IqError::ServerError { code, backoff, .. }) => match code {
            429 => retry(backoff.map_or(60, u64::from).max(1)),
            400..=499 => DeliverError::Permanent(format!("WhatsApp refused the message: {e}")),
            _ => retry(backoff.map_or(30, u64::from).max(1)),
        },
        SendError::Iq(_) | SendError::Client(_) => retry(5),
        _ => retry(30),
    }
}

impl Handler<Deliver> for WhatsAppLinkedChannel {
    type Result = ResponseFuture<Result<(), DeliverError>>;

    fn handle(&mut self, msg: Deliver, _: &mut Context<Self>) -> Self::Result {
        let current = self.current();
        let limiter = self.limiter.clone();
        Box::pin(async move {
            let jid: Jid = msg.chat_key.parse().map_err(|_| {
                DeliverError::Permanent(format!("not a WhatsApp chat: {}", msg.chat_key))
            })?;
            for (n, part) in split_message(&msg.text, TEXT_LIMIT)
                .into_iter()
                .enumerate()
                .skip(msg.sent_parts)
            {
                let Some((client, arbiter)) = current.clone() else {
                    return Err(not_connected(n));
                };
                if !client.is_logged_in() {
                    return Err(not_connected(n));
                }
                limiter.until_ready().await;
                let (tx, rx) = tokio::sync::oneshot::channel();
                let to = jid.clone();
                // The client's work runs on its own arbiter.
                let spawned = arbiter.spawn(async move {
                    let sent = client.send_text(to, part).await;
                    let _ = tx.send(sent.map(|_| ()).map_err(|e| send_failure(&e, n)));
                });
                if !spawned {
                    return Err(not_connected(n));
                }
                match tokio::time::timeout(SEND_TIMEOUT, rx).await {
                    Ok(Ok(Ok(()))) => {}
                    Ok(Ok(Err(e))) => return Err(e),
                    Ok(Err(_)) => {
                        return Err(DeliverError::Retry {
                            after: Duration::from_secs(2),
                            reason: "the WhatsApp connection closed while sending".into(),
                            sent_parts: n,
                        })
                    }
                    Err(_) => {
                        return Err(DeliverError::Retry {
                            after: Duration::from_secs(30),
                            reason: format!(
                                "WhatsApp did not confirm the message within {} s",
                                SEND_TIMEOUT.as_secs()
                            ),
                            sent_parts: n,
                        })
                    }
                }
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use whatsapp_rust::types::events::{
        ConnectFailure, Connected, Disconnected, LoggedOut, PairingQrCode, PairingQrCodesExhausted,
        StreamReplaced,
    };
    use whatsapp_rust::waproto::buffa::MessageField;

    fn text(s: &str) -> wa::Message {
        wa::Message {
            conversation: Some(s.into()),
            ..Default::default()
        }
    }

    fn info(chat: Jid, sender: Jid, alt: Option<Jid>) -> MessageInfo {
        MessageInfo {
            id: "3EB0C0FFEE".into(),
            push_name: "Ann".into(),
            source: MessageSource {
                is_group: chat.is_group(),
                chat,
                sender,
                sender_alt: alt,
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn phone_numbers_come_from_pn_jids_only() {
        assert_eq!(
            phone_digits(&Jid::pn("4915112345678")).as_deref(),
            Some("4915112345678")
        );
        let with_device: Jid = "4915112345678:3@s.whatsapp.net".parse().unwrap();
        assert_eq!(phone_digits(&with_device).as_deref(), Some("4915112345678"));
        assert_eq!(phone_digits(&Jid::lid("100000012345678")), None);
        assert_eq!(phone_digits(&Jid::group("120363000000000000")), None);
        assert_eq!(phone_digits(&Jid::status_broadcast()), None);
        assert_eq!(phone_digits(&Jid::pn("not-a-number")), None);
    }

    #[test]
    fn a_direct_text_becomes_an_addressed_message() {
        let ann = Jid::pn("4915112345678");
        let i = info(ann.clone(), Jid::pn_device("4915112345678", 2), None);
        assert!(relevant(&i));
        let content = classify(&text("hello")).unwrap();
        let m = to_incoming(&i, content, sender_phone(&i.source));
        assert_eq!(m.chat_key, "4915112345678@s.whatsapp.net");
        assert_eq!(m.sender, "4915112345678");
        assert_eq!(m.sender_ids, vec!["4915112345678".to_string()]);
        assert_eq!(m.sender_name.as_deref(), Some("Ann"));
        assert_eq!(m.text, "hello");
        assert_eq!(m.external_id, "4915112345678@s.whatsapp.net/3EB0C0FFEE");
        assert_eq!(m.meta, Some(json!({"messageId": "3EB0C0FFEE"})));
        assert!(m.addressed);
        assert!(m.unsupported.is_none());
        // The reply goes back to the chat the message came from.
        assert_eq!(m.chat_key.parse::<Jid>().unwrap(), ann);
    }

    #[test]
    fn lid_senders_are_known_by_number_when_whatsapp_says_it() {
        let lid = Jid::lid("100000012345678");
        let i = info(lid.clone(), lid.clone(), Some(Jid::pn("4915112345678")));
        let m = to_incoming(&i, Content::Text("hi".into()), sender_phone(&i.source));
        assert_eq!(m.chat_key, "100000012345678@lid");
        assert_eq!(m.sender, "4915112345678");
        assert_eq!(
            m.sender_ids,
            vec![
                "4915112345678".to_string(),
                "100000012345678@lid".to_string()
            ]
        );
        // Without the number, the LID itself names the sender.
        let i = info(lid.clone(), lid, None);
        assert_eq!(sender_phone(&i.source), None);
        let m = to_incoming(&i, Content::Text("hi".into()), None);
        assert_eq!(m.sender, "100000012345678@lid");
        assert_eq!(m.sender_ids, vec!["100000012345678@lid".to_string()]);
    }

    #[test]
    fn groups_and_media_are_stored_but_not_answered() {
        let group = Jid::group("120363000000000000");
        let i = info(group, Jid::pn("4915112345678"), None);
        let m = to_incoming(&i, Content::Text("secret plans".into()), None);
        assert_eq!(m.unsupported.as_deref(), Some("group_message"));
        assert_eq!(m.text, "[group message]");
        assert_eq!(
            m.external_id,
            "120363000000000000@g.us/4915112345678@s.whatsapp.net/3EB0C0FFEE"
        );

        let image = wa::Message {
            image_message: MessageField::some(wa::message::ImageMessage {
                caption: Some("look".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let content = classify(&image).unwrap();
        assert_eq!(
            content,
            Content::Other {
                kind: "image",
                caption: Some("look".into())
            }
        );
        let i = info(Jid::pn("1"), Jid::pn("1"), None);
        let m = to_incoming(&i, content, Some("1".into()));
        assert_eq!(m.text, "[image message] look");
        assert_eq!(m.unsupported.as_deref(), Some("unsupported_message_type"));
    }

    #[test]
    fn protocol_traffic_and_our_own_messages_are_skipped() {
        let reaction = wa::Message {
            reaction_message: MessageField::some(wa::message::ReactionMessage::default()),
            ..Default::default()
        };
        assert_eq!(classify(&reaction), None);
        let ann = Jid::pn("4915112345678");
        let mut own = info(ann.clone(), ann.clone(), None);
        own.source.is_from_me = true;
        assert!(!relevant(&own));
        let status = info(Jid::status_broadcast(), ann.clone(), None);
        assert!(!relevant(&status));
        let mut edit = info(ann.clone(), ann, None);
        edit.edit = EditAttribute::MessageEdit;
        assert!(!relevant(&edit));
    }

    #[test]
    fn events_map_to_effects() {
        let qr = Event::PairingQrCode(
            PairingQrCode::builder()
                .code("2@abc,def".to_string())
                .timeout(Duration::from_secs(20))
                .build(),
        );
        assert_eq!(effect(&qr), Some(Effect::Qr("2@abc,def".into())));
        assert_eq!(
            effect(&Event::Connected(Connected::builder().build())),
            Some(Effect::Connected)
        );
        let out = Event::LoggedOut(
            LoggedOut::builder()
                .on_connect(false)
                .reason(ConnectFailureReason::LoggedOut)
                .build(),
        );
        assert_eq!(effect(&out), Some(Effect::LoggedOut));
        let refused = Event::ConnectFailure(
            ConnectFailure::builder()
                .reason(ConnectFailureReason::ServiceUnavailable)
                .build(),
        );
        assert!(matches!(effect(&refused), Some(Effect::Refused(r)) if r.contains("503")));
        let locked = Event::ConnectFailure(
            ConnectFailure::builder()
                .reason(ConnectFailureReason::AccountLocked)
                .build(),
        );
        assert_eq!(effect(&locked), Some(Effect::LoggedOut));
        let expired = |disconnected| {
            Event::PairingQrCodesExhausted(
                PairingQrCodesExhausted::builder()
                    .disconnected(disconnected)
                    .build(),
            )
        };
        assert_eq!(effect(&expired(true)), Some(Effect::QrExpired));
        assert_eq!(effect(&expired(false)), None);
        assert_eq!(
            effect(&Event::StreamReplaced(StreamReplaced::builder().build())),
            Some(Effect::Replaced)
        );
        let dropped = Event::Disconnected(
            Disconnected::builder()
                .reason(whatsapp_rust::transport::DisconnectReason::StreamEnded)
                .build(),
        );
        assert!(matches!(
            effect(&dropped),
            Some(Effect::Disconnected { clean: true, .. })
        ));
    }

    #[test]
    fn failures_back_off_and_logouts_stop() {
        let failed = Observed {
            error: Some("cannot open the connection to WhatsApp: refused".into()),
            ..Default::default()
        };
        let Plan::Retry {
            wait,
            error,
            backoff,
        } = plan(&failed, BACKOFF_START)
        else {
            panic!("a failure is retried");
        };
        assert_eq!((wait, backoff), (BACKOFF_START, Duration::from_secs(2)));
        assert!(error.unwrap().ends_with("refused; retrying in 1 s"));
        let mut b = BACKOFF_START;
        let mut waits = Vec::new();
        for _ in 0..8 {
            let Plan::Retry { wait, backoff, .. } = plan(&failed, b) else {
                panic!()
            };
            waits.push(wait.as_secs());
            b = backoff;
        }
        assert_eq!(waits, vec![1, 2, 4, 8, 16, 32, 60, 60]);

        let out = Observed {
            logged_out: true,
            connected: true,
            ..Default::default()
        };
        assert_eq!(plan(&out, BACKOFF_START), Plan::Halt(LOGGED_OUT));
        let replaced = Observed {
            replaced: true,
            ..Default::default()
        };
        assert_eq!(plan(&replaced, BACKOFF_START), Plan::Halt(REPLACED));

        let paired = Observed {
            paired: true,
            ..Default::default()
        };
        assert_eq!(
            plan(&paired, Duration::from_secs(32)),
            Plan::Retry {
                wait: Duration::ZERO,
                error: None,
                backoff: BACKOFF_START
            }
        );
        let recycled = Observed {
            connected: true,
            disconnect: Some(("stream ended (EOF)".into(), true)),
            ..Default::default()
        };
        assert_eq!(
            plan(&recycled, Duration::from_secs(32)),
            Plan::Retry {
                wait: BACKOFF_START,
                error: None,
                backoff: Duration::from_secs(2)
            }
        );
        let banned = Observed {
            banned_for: Some(Duration::from_secs(3600)),
            ..Default::default()
        };
        assert!(
            matches!(plan(&banned, BACKOFF_START), Plan::Retry { wait, .. } if wait.as_secs() == 3600)
        );
        // A store that keeps failing does not turn into a reconnect loop without pause.
        let stuck = Observed {
            connected: true,
            store_failed: true,
            ..Default::default()
        };
        assert!(
            matches!(plan(&stuck, Duration::from_secs(8)), Plan::Retry { wait, .. } if wait.as_secs() == 8)
        );
    }

    #[test]
    fn send_failures_are_classified() {
        assert!(matches!(
            send_failure(&SendError::NotLoggedIn, 1),
            DeliverError::Retry { sent_parts: 1, .. }
        ));
        assert!(matches!(
            send_failure(&SendError::InvalidRequest("bad jid".into()), 0),
            DeliverError::Permanent(_)
        ));
        let server = |code| {
            SendError::Iq(IqError::ServerError {
                code,
                text: "x".into(),
                error_type: None,
                backoff: None,
            })
        };
        assert!(matches!(
            send_failure(&server(429), 2),
            DeliverError::Retry { after, sent_parts: 2, .. } if after.as_secs() == 60
        ));
        assert!(matches!(
            send_failure(&server(404), 0),
            DeliverError::Permanent(_)
        ));
        assert!(matches!(
            send_failure(&server(500), 0),
            DeliverError::Retry { .. }
        ));
    }

    #[test]
    fn deleting_a_session_removes_its_side_files() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join(SESSION_FILE);
        for suffix in ["", "-wal", "-shm"] {
            std::fs::write(format!("{}{suffix}", db.display()), b"x").unwrap();
        }
        delete_session(&db).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        // Nothing left to delete is fine.
        delete_session(&db).unwrap();
    }

    type Statuses = Vec<(Status, Option<String>)>;

    /// Stands in for the manager.
    #[derive(Default, Clone)]
    struct Log {
        statuses: Arc<Mutex<Statuses>>,
        qrs: Arc<Mutex<Vec<Option<String>>>>,
        received: Arc<Mutex<Vec<Incoming>>>,
    }

    impl Log {
        fn statuses(&self) -> Statuses {
            self.statuses.lock().unwrap().clone()
        }
    }

    struct Recorder {
        log: Log,
        refuse: bool,
    }

    impl Actor for Recorder {
        type Context = Context<Self>;
    }

    impl Handler<StatusUpdate> for Recorder {
        type Result = ();
        fn handle(&mut self, m: StatusUpdate, _: &mut Context<Self>) {
            self.log.statuses.lock().unwrap().push((m.status, m.error));
        }
    }

    impl Handler<QrUpdate> for Recorder {
        type Result = ();
        fn handle(&mut self, m: QrUpdate, _: &mut Context<Self>) {
            self.log.qrs.lock().unwrap().push(m.qr);
        }
    }

    impl Handler<Received> for Recorder {
        type Result = Result<(), String>;
        fn handle(&mut self, m: Received, _: &mut Context<Self>) -> Self::Result {
            if self.refuse {
                return Err("the store is read-only".into());
            }
            self.log.received.lock().unwrap().extend(m.messages);
            Ok(())
        }
    }

    fn recorder(refuse: bool) -> (Outlet, Log) {
        let log = Log::default();
        let addr = Recorder {
            log: log.clone(),
            refuse,
        }
        .start();
        let outlet = Outlet {
            id: "wa-1".into(),
            generation: 1,
            status: addr.clone().recipient(),
            qr: addr.clone().recipient(),
            received: addr.recipient(),
        };
        (outlet, log)
    }

    async fn wait_for(mut done: impl FnMut() -> bool, what: &str) {
        for _ in 0..300 {
            if done() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("timed out waiting for {what}");
    }

    #[actix_rt::test]
    async fn events_reach_the_manager() {
        let (outlet, log) = recorder(false);
        let shared = Arc::new(Shared::default());
        let events = Events {
            outlet,
            shared: shared.clone(),
        };
        events.handle_event(Arc::new(Event::PairingQrCode(
            PairingQrCode::builder()
                .code("2@ref".to_string())
                .timeout(Duration::from_secs(60))
                .build(),
        )));
        events.handle_event(Arc::new(Event::Connected(Connected::builder().build())));
        events.handle_event(Arc::new(Event::LoggedOut(
            LoggedOut::builder()
                .on_connect(false)
                .reason(ConnectFailureReason::LoggedOut)
                .build(),
        )));
        wait_for(|| log.statuses().len() >= 3, "three statuses").await;
        assert_eq!(
            log.statuses(),
            vec![
                (Status::Connecting, None),
                (Status::Connected, None),
                (Status::Error, Some(LOGGED_OUT.to_string())),
            ]
        );
        assert_eq!(
            log.qrs.lock().unwrap().clone(),
            vec![Some("2@ref".to_string()), None, None]
        );
        let seen = shared.seen();
        assert!(seen.connected && seen.logged_out);
    }

    fn linked_settings() -> WhatsAppSettings {
        serde_json::from_value(json!({"mode": "linked"})).unwrap()
    }

    /// A local port nothing listens on: connecting fails at once, without any network.
    fn closed_port() -> Endpoint {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Endpoint {
            ws_url: Some(format!("ws://127.0.0.1:{port}/ws/chat")),
            version: Some((2, 3000, 1_000_000_000)),
        }
    }

    fn devices(db: &Path) -> i64 {
        let conn = rusqlite::Connection::open(db).unwrap();
        conn.query_row("SELECT count(*) FROM device", [], |r| r.get(0))
            .unwrap()
    }

    #[actix_rt::test]
    async fn a_fresh_session_connects_creates_its_database_and_backs_off() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("channels").join("wa-1").join(SESSION_FILE);
        let (outlet, log) = recorder(false);
        let addr = WhatsAppLinkedChannel::with_outlet(
            outlet,
            &linked_settings(),
            db.clone(),
            closed_port(),
        )
        .start();
        wait_for(retrying_in(&log, 1), "the first failure").await;
        wait_for(retrying_in(&log, 2), "the second failure, after 1 s").await;
        let errors: Vec<String> = log.statuses().into_iter().filter_map(|(_, e)| e).collect();
        assert!(
            errors
                .iter()
                .all(|e| e.starts_with("cannot open the connection to WhatsApp")),
            "{errors:?}"
        );
        assert_eq!(log.statuses()[0], (Status::Connecting, None));
        assert!(log.qrs.lock().unwrap().iter().all(Option::is_none));
        // The session (a device identity) is on disk, and stays the same across attempts.
        assert!(db.exists());
        assert_eq!(devices(&db), 1);

        let sent = addr
            .send(Deliver {
                chat_key: "4915112345678@s.whatsapp.net".into(),
                text: "hello".into(),
                sent_parts: 0,
                meta: None,
            })
            .await
            .unwrap();
        assert!(matches!(
            sent,
            Err(DeliverError::Retry { sent_parts: 0, .. })
        ));
        let bad = addr
            .send(Deliver {
                chat_key: "not a jid".into(),
                text: "hello".into(),
                sent_parts: 0,
                meta: None,
            })
            .await
            .unwrap();
        assert!(matches!(bad, Err(DeliverError::Permanent(_))));
        addr.send(Typing {
            chat_key: "4915112345678@s.whatsapp.net".into(),
        })
        .await
        .unwrap();

        addr.send(Retire { final_: true }).await.unwrap();
        let after_retire = log.statuses().len();
        tokio::time::sleep(Duration::from_millis(4500)).await;
        assert_eq!(
            log.statuses().len(),
            after_retire,
            "no attempts after Retire"
        );
        // Disabled or deleted: the session stays for a later start.
        assert!(db.exists());

        // A new actor (a restart) resumes the same session instead of making a new device.
        let (outlet, log) = recorder(false);
        let again = WhatsAppLinkedChannel::with_outlet(
            outlet,
            &linked_settings(),
            db.clone(),
            closed_port(),
        )
        .start();
        wait_for(
            retrying_in(&log, 1),
            "the restarted channel's first failure",
        )
        .await;
        assert_eq!(devices(&db), 1);
        again.send(Retire { final_: false }).await.unwrap();
    }

    fn retrying_in(log: &Log, secs: u64) -> impl FnMut() -> bool {
        let log = log.clone();
        move || {
            log.statuses().iter().any(|(s, e)| {
                *s == Status::Error
                    && e.as_deref()
                        .is_some_and(|e| e.ends_with(&format!("retrying in {secs} s")))
            })
        }
    }

    async fn offline_client(dir: &Path) -> Arc<Client> {
        let store = SqliteStore::new(&dir.join(SESSION_FILE).to_string_lossy())
            .await
            .unwrap();
        let bot = Bot::builder()
            .with_backend(store)
            .with_version((2, 3000, 1_000_000_000))
            .build()
            .await
            .unwrap();
        bot.client()
    }

    fn inbound(info: MessageInfo, message: wa::Message) -> InboundMessage {
        InboundMessage::builder()
            .message(Arc::new(message))
            .info(Arc::new(info))
            .build()
    }

    #[actix_rt::test]
    async fn received_messages_are_stored_before_the_hook_lets_them_be_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let client = offline_client(dir.path()).await;
        let ann = Jid::pn("4915112345678");
        let batch = [
            inbound(
                info(ann.clone(), ann.clone(), None),
                text("what time is it?"),
            ),
            inbound(
                info(ann.clone(), ann.clone(), None),
                wa::Message {
                    reaction_message: MessageField::some(wa::message::ReactionMessage::default()),
                    ..Default::default()
                },
            ),
        ];

        let (outlet, log) = recorder(false);
        let hook = Hook {
            outlet,
            shared: Arc::new(Shared::default()),
        };
        hook.on_messages(client.clone(), &batch).await.unwrap();
        let got = log.received.lock().unwrap().clone();
        assert_eq!(got.len(), 1, "the reaction is not a message");
        assert_eq!(got[0].text, "what time is it?");
        assert_eq!(got[0].sender, "4915112345678");

        // Not stored: the hook fails, so the library leaves the message unacknowledged.
        let (outlet, log) = recorder(true);
        let shared = Arc::new(Shared::default());
        let hook = Hook {
            outlet,
            shared: shared.clone(),
        };
        assert!(hook.on_messages(client, &batch).await.is_err());
        assert!(shared.seen().store_failed);
        wait_for(
            || {
                log.statuses().iter().any(|(s, e)| {
                    *s == Status::Error
                        && e.as_deref()
                            .is_some_and(|e| e.contains("the store is read-only"))
                })
            },
            "the store failure",
        )
        .await;
    }
}
