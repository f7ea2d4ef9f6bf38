//! `ChannelManager`: owns the configured chat channels, runs one supervised actor per enabled
//! channel (`TelegramChannel`, `EmailChannel`, `WhatsAppChannel`), and answers what they
//! receive.
//!
//! The path of a message: the channel actor hands it to the manager (`Received`), which
//! decides what to do with it (allowed sender? addressed to the bot? a command?) and stores it
//! in the inbox, together with the channel's resume state, **before** the channel acknowledges
//! it to the platform. Each chat has a lane: one message at a time, in arrival order, while
//! different chats run concurrently. A message is answered by an agent run whose record stores
//! the reply in the same transaction; the channel then delivers it and the message is closed.
//! After a crash, messages still `pending` are run again (nothing of the interrupted run was
//! kept) and `replying` ones are delivered without a new run.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::agents::{AgentSupervisor, RunRequest, StartAgentRun, StartRunError};
use crate::approvals::ApprovalDesk;
use crate::bus::{BusEvent, EventBus, Publish, SubscribeTo};
use crate::events::GatewayEvent;
use crate::groups::{AgentGroups, ForgetChannel, ResolveChannelGroup};
use crate::secrets::SecretBox;
use crate::store::channels::{
    ChannelMessageCounts, ChannelRow, CloseMessage, CountAttempt, DeleteChannel as DeleteRow,
    Disposition, InboxRow, ListChannelMessages, NewInbound, ReceiveMessages, SaveChannel,
    SaveChannelState, SetReply,
};
use crate::store::{answered, Store, StoreError};
use crate::supervise::{start_supervised, Supervision};
use crate::time::{now_ms, rfc3339};

pub mod config;
pub mod email;
pub mod format;
pub mod telegram;
pub mod whatsapp;
#[cfg(feature = "whatsapp-linked")]
pub mod whatsapp_linked;

use config::{ConfigError, Settings};

const SECRETS_CONTEXT: &str = "channels.secrets";
/// How often the "typing…" indicator is renewed while a run works (Telegram shows it ~5 s).
const TYPING_EVERY: Duration = Duration::from_secs(4);
const DELIVERY_RETRY_MAX: Duration = Duration::from_secs(300);
/// Delivery attempts before a reply is marked failed (backoff reaches 5 min after ~9, so this
/// is over an hour of trying).
const MAX_DELIVERY_ATTEMPTS: i64 = 20;

#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("{0}")]
    Invalid(ConfigError),
    #[error("no channel with id {0}")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A channel as the API shows it: never a credential.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelView {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    /// The non-secret configuration (with defaults filled in where the type has them).
    pub config: Value,
    /// Which credential fields are set (their values are never shown).
    pub secrets_set: Vec<String>,
    pub allowed_senders: Vec<String>,
    pub enabled: bool,
    pub status: &'static str,
    pub last_error: Option<String>,
    pub last_message_at: Option<String>,
    /// WhatsApp linked-device pairing: the QR payload while pairing.
    pub qr: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// The fields of a create or an update (absent: unchanged on update). No `Debug`: `config`
/// holds credentials.
#[derive(Clone, Default)]
pub struct ChannelFields {
    pub kind: Option<String>,
    pub name: Option<String>,
    /// On update: keys replace, `null` removes, absent keys stay.
    pub config: Option<Map<String, Value>>,
    pub allowed_senders: Option<Vec<String>>,
    pub enabled: Option<bool>,
}

#[derive(Message)]
#[rtype(result = "Result<ChannelView, ChannelError>")]
pub struct CreateChannel(pub ChannelFields);

#[derive(Message)]
#[rtype(result = "Result<ChannelView, ChannelError>")]
pub struct UpdateChannel {
    pub id: String,
    pub fields: ChannelFields,
}

#[derive(Message)]
#[rtype(result = "Result<(), ChannelError>")]
pub struct RemoveChannel {
    pub id: String,
}

#[derive(Message)]
#[rtype(result = "Vec<ChannelView>")]
pub struct ListChannels;

#[derive(Message)]
#[rtype(result = "Option<ChannelView>")]
pub struct GetChannel {
    pub id: String,
}

/// A channel's recent messages (newest first) and counts by status.
#[derive(Message)]
#[rtype(result = "Result<ChannelMessages, ChannelError>")]
pub struct GetChannelMessages {
    pub id: String,
    pub limit: i64,
    pub before: Option<i64>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelMessages {
    pub messages: Vec<InboxRow>,
    pub counts: HashMap<String, i64>,
}

/// `connecting|connected|error|stopped`, as the channel actor reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Connecting,
    Connected,
    Error,
    Stopped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Connecting => "connecting",
            Status::Connected => "connected",
            Status::Error => "error",
            Status::Stopped => "stopped",
        }
    }
}

/// From a channel actor: its connection changed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StatusUpdate {
    pub channel_id: String,
    pub generation: u64,
    pub status: Status,
    pub error: Option<String>,
}

/// A message as a channel actor received it.
#[derive(Debug, Clone)]
pub struct Incoming {
    /// The platform's id for it (deduplicates redeliveries).
    pub external_id: String,
    /// The chat the reply goes to, which is also the conversation it continues.
    pub chat_key: String,
    /// The sender as shown (Telegram user id, email address, phone number).
    pub sender: String,
    pub sender_name: Option<String>,
    /// Every identity `allowedSenders` may name the sender by.
    pub sender_ids: Vec<String>,
    pub text: String,
    pub meta: Option<Value>,
    /// False in a group chat when the bot was neither mentioned nor replied to.
    pub addressed: bool,
    /// Why it cannot be answered even so (e.g. an unsupported message type).
    pub unsupported: Option<String>,
}

/// From a channel actor: messages to store before it acknowledges them to the platform, and
/// the state to resume from once they are. `Ok` means stored (or already stored).
#[derive(Message)]
#[rtype(result = "Result<(), String>")]
pub struct Received {
    pub channel_id: String,
    /// The generation of the actor that received them; a retired actor's are refused (the
    /// platform redelivers them to the current one).
    pub generation: u64,
    pub messages: Vec<Incoming>,
    pub state: Option<Value>,
}

/// To a channel actor: send a reply.
#[derive(Message)]
#[rtype(result = "Result<(), DeliverError>")]
pub struct Deliver {
    pub chat_key: String,
    pub text: String,
    /// Parts of a long reply already delivered by an earlier attempt (not sent again).
    pub sent_parts: usize,
    /// The inbox message's `meta` (what threading the reply needs).
    pub meta: Option<Value>,
}

#[derive(Debug, Clone)]
pub enum DeliverError {
    /// Worth trying again later (peer down, rate limited); `sent_parts` of a long reply
    /// went out before the failure.
    Retry {
        after: Duration,
        reason: String,
        sent_parts: usize,
    },
    /// Will never work (chat gone, bot blocked, recipient refused).
    Permanent(String),
}

impl DeliverError {
    fn reason(&self) -> &str {
        match self {
            DeliverError::Retry { reason, .. } => reason,
            DeliverError::Permanent(reason) => reason,
        }
    }
}

/// To a channel actor: show that the agent is working (where the platform can).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Typing {
    pub chat_key: String,
}

/// To a channel actor: stop for good. `final_`: the channel was deleted or disabled (not
/// replaced by a reconfigured actor), so it may unregister from the platform.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Retire {
    pub final_: bool,
}

/// A Telegram update delivered to `/webhook/telegram/:channelId` (webhook mode). `Ok` once
/// stored: Telegram redelivers anything not answered with a 2xx.
#[derive(Message)]
#[rtype(result = "Result<(), WebhookRefusal>")]
pub struct TelegramWebhookUpdate {
    pub channel_id: String,
    pub secret_token: Option<String>,
    pub body: Vec<u8>,
}

/// WhatsApp Cloud API webhook verification (GET): the challenge to echo, or why not.
#[derive(Message)]
#[rtype(result = "Result<String, WebhookRefusal>")]
pub struct VerifyWhatsApp {
    pub channel_id: String,
    pub mode: Option<String>,
    pub verify_token: Option<String>,
    pub challenge: Option<String>,
}

/// A WhatsApp Cloud API notification (POST). `Ok` once what it carries is stored.
#[derive(Message)]
#[rtype(result = "Result<(), WebhookRefusal>")]
pub struct WhatsAppNotification {
    pub channel_id: String,
    pub signature: Option<String>,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum WebhookRefusal {
    #[error("no such channel")]
    NotFound,
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unavailable(String),
}

/// To a channel actor with admin chats: an approval was requested or resolved.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct ApprovalNotice(pub Arc<GatewayEvent>);

/// The addresses a channel actor answers on.
#[derive(Clone)]
pub struct ChannelLink {
    pub deliver: Recipient<Deliver>,
    pub typing: Recipient<Typing>,
    pub retire: Recipient<Retire>,
    /// Set for channels that take approval decisions (Telegram with admin chats).
    pub approvals: Option<Recipient<ApprovalNotice>>,
    /// Set for Telegram channels in webhook mode: updates Telegram posted to us.
    pub telegram_updates: Option<Recipient<telegram::WebhookUpdate>>,
}

impl ChannelLink {
    fn of<A>(addr: Addr<A>) -> Self
    where
        A: Actor<Context = Context<A>> + Handler<Deliver> + Handler<Typing> + Handler<Retire>,
    {
        ChannelLink {
            deliver: addr.clone().recipient(),
            typing: addr.clone().recipient(),
            retire: addr.recipient(),
            approvals: None,
            telegram_updates: None,
        }
    }
}

/// What a channel actor starts from.
pub struct ChannelStart<S> {
    pub channel_id: String,
    pub generation: u64,
    pub settings: S,
    pub state: Option<Value>,
    pub manager: Addr<ChannelManager>,
    pub approvals: Addr<ApprovalDesk>,
    /// Telegram webhook mode: the secret Telegram sends back with every update.
    pub webhook_secret: String,
    /// Where a channel keeps files of its own (WhatsApp linked-device sessions).
    pub data_dir: std::path::PathBuf,
}

impl ChannelStart<()> {
    /// The same start with the channel type's settings.
    fn with<S>(self, settings: S) -> ChannelStart<S> {
        ChannelStart {
            channel_id: self.channel_id,
            generation: self.generation,
            settings,
            state: self.state,
            manager: self.manager,
            approvals: self.approvals,
            webhook_secret: self.webhook_secret,
            data_dir: self.data_dir,
        }
    }
}

/// From a linked-device channel: the QR payload to scan while pairing (`None` once paired).
#[derive(Message)]
#[rtype(result = "()")]
pub struct QrUpdate {
    pub channel_id: String,
    pub generation: u64,
    pub qr: Option<String>,
}

/// Report a status change to the manager (used by every channel actor).
pub fn report(
    start_id: &str,
    generation: u64,
    manager: &Addr<ChannelManager>,
    status: Status,
    error: Option<String>,
) {
    manager.do_send(StatusUpdate {
        channel_id: start_id.to_string(),
        generation,
        status,
        error,
    });
}

struct Channel {
    row: ChannelRow,
    secrets: Map<String, Value>,
    settings: Option<Settings>,
    link: Option<ChannelLink>,
    generation: u64,
    status: Status,
    last_error: Option<String>,
    last_message_at: Option<i64>,
    allowed: Vec<String>,
    qr: Option<String>,
}

impl Channel {
    fn view(&self) -> ChannelView {
        let mut secrets_set: Vec<String> = self.secrets.keys().cloned().collect();
        secrets_set.sort();
        ChannelView {
            id: self.row.id.clone(),
            kind: self.row.kind.clone(),
            name: self.row.name.clone(),
            config: Value::Object(self.row.config.as_object().cloned().unwrap_or_default()),
            secrets_set,
            allowed_senders: self.row.allowed_senders.clone(),
            enabled: self.row.enabled,
            status: self.status.as_str(),
            last_error: self.last_error.clone(),
            last_message_at: self.last_message_at.map(rfc3339),
            qr: self.qr.clone(),
            created_at: rfc3339(self.row.created_at),
            updated_at: rfc3339(self.row.updated_at),
        }
    }

    fn allows(&self, ids: &[String]) -> bool {
        self.allowed.is_empty()
            || ids
                .iter()
                .any(|id| self.allowed.contains(&config::normalise_sender(id)))
    }
}

/// One chat's queue: at most one message in work at a time.
#[derive(Default)]
struct Lane {
    queue: VecDeque<InboxRow>,
    busy: bool,
}

pub struct ChannelManager {
    store: Store,
    bus: Addr<EventBus>,
    agents: Addr<AgentSupervisor>,
    groups: Addr<AgentGroups>,
    approvals: Addr<ApprovalDesk>,
    data_dir: std::path::PathBuf,
    secrets: SecretBox,
    /// Derives each Telegram webhook's secret token (nothing more to store).
    webhook_key: [u8; 32],
    supervision: Addr<Supervision>,
    channels: HashMap<String, Channel>,
    lanes: HashMap<(String, String), Lane>,
    open_at_start: Vec<InboxRow>,
    subscribed: bool,
    /// Set by a restart in place: read the open messages again.
    reload_open: bool,
}

impl ChannelManager {
    /// `rows`, `last_seen` and `open` are read at start-up.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Store,
        bus: Addr<EventBus>,
        agents: Addr<AgentSupervisor>,
        groups: Addr<AgentGroups>,
        approvals: Addr<ApprovalDesk>,
        data_dir: std::path::PathBuf,
        secrets: SecretBox,
        supervision: Addr<Supervision>,
        rows: Vec<ChannelRow>,
        last_seen: HashMap<String, i64>,
        open: Vec<InboxRow>,
    ) -> Self {
        let mut channels = HashMap::new();
        for row in rows {
            let secrets_map = match &row.secrets_sealed {
                Some(sealed) => match secrets.open(SECRETS_CONTEXT, sealed) {
                    Ok(plain) => serde_json::from_str(&plain).unwrap_or_default(),
                    Err(e) => {
                        tracing::error!(channel = %row.id, error = %e, "cannot open the channel's credentials");
                        Map::new()
                    }
                },
                None => Map::new(),
            };
            let public = row.config.as_object().cloned().unwrap_or_default();
            let (settings, last_error) = match config::validate(&row.kind, &public, &secrets_map) {
                Ok(s) => (Some(s), None),
                Err(e) => (None, Some(e.message)),
            };
            let id = row.id.clone();
            channels.insert(
                id.clone(),
                Channel {
                    allowed: row
                        .allowed_senders
                        .iter()
                        .map(|s| config::normalise_sender(s))
                        .collect(),
                    row,
                    secrets: secrets_map,
                    settings,
                    link: None,
                    generation: 0,
                    status: if last_error.is_some() {
                        Status::Error
                    } else {
                        Status::Stopped
                    },
                    last_error,
                    last_message_at: last_seen.get(&id).copied(),
                    qr: None,
                },
            );
        }
        Self {
            store,
            bus,
            agents,
            groups,
            approvals,
            data_dir,
            webhook_key: secrets.derive_key("telegram-webhook"),
            secrets,
            supervision,
            channels,
            lanes: HashMap::new(),
            open_at_start: open,
            subscribed: false,
            reload_open: false,
        }
    }

    fn seal(&self, secrets: &Map<String, Value>) -> Option<String> {
        (!secrets.is_empty()).then(|| {
            self.secrets
                .seal(SECRETS_CONTEXT, &Value::Object(secrets.clone()).to_string())
        })
    }

    /// Start (or restart) the actor of a channel, if it is enabled and valid.
    fn launch(&mut self, id: &str, ctx: &mut Context<Self>) {
        let me = ctx.address();
        let supervision = self.supervision.clone();
        let Some(ch) = self.channels.get_mut(id) else {
            return;
        };
        if let Some(old) = ch.link.take() {
            old.retire.do_send(Retire {
                final_: !ch.row.enabled,
            });
        }
        ch.generation += 1;
        // A pairing code belongs to the actor that showed it.
        ch.qr = None;
        let Some(settings) = ch.settings.clone().filter(|_| ch.row.enabled) else {
            let status = if ch.settings.is_none() {
                Status::Error
            } else {
                Status::Stopped
            };
            let error = ch.last_error.clone().filter(|_| status == Status::Error);
            self.set_status(id, status, error);
            return;
        };
        let base = ChannelStart {
            channel_id: id.to_string(),
            generation: ch.generation,
            settings: (),
            state: ch.row.state.clone(),
            manager: me,
            approvals: self.approvals.clone(),
            webhook_secret: telegram_webhook_secret(&self.webhook_key, id),
            data_dir: self.data_dir.join("channels").join(id),
        };
        let link = match settings {
            Settings::Telegram(s) => {
                let admins = !s.admin_chat_ids.is_empty();
                let webhook = s.mode == config::TelegramMode::Webhook;
                let start = base.with(s);
                let addr = start_supervised("channel:telegram", &supervision, move |_| {
                    telegram::TelegramChannel::new(start)
                });
                let mut link = ChannelLink::of(addr.clone());
                link.approvals = admins.then(|| addr.clone().recipient());
                link.telegram_updates = webhook.then(|| addr.recipient());
                link
            }
            Settings::Email(s) => {
                let start = base.with(s);
                ChannelLink::of(start_supervised("channel:email", &supervision, move |_| {
                    email::EmailChannel::new(start)
                }))
            }
            Settings::WhatsApp(s) => {
                let start = base.with(s);
                match start.settings.mode {
                    #[cfg(feature = "whatsapp-linked")]
                    config::WhatsAppMode::Linked => ChannelLink::of(start_supervised(
                        "channel:whatsapp",
                        &supervision,
                        move |_| whatsapp_linked::WhatsAppLinkedChannel::new(start),
                    )),
                    _ => ChannelLink::of(start_supervised(
                        "channel:whatsapp",
                        &supervision,
                        move |_| whatsapp::WhatsAppChannel::new(start),
                    )),
                }
            }
        };
        if let Some(ch) = self.channels.get_mut(id) {
            ch.link = Some(link);
        }
        self.set_status(id, Status::Connecting, None);
        // Replies that waited for this channel go out now.
        let keys: Vec<_> = self
            .lanes
            .keys()
            .filter(|(c, _)| c == id)
            .cloned()
            .collect();
        for key in keys {
            self.pump(key, ctx);
        }
    }

    fn retire(&mut self, id: &str) {
        if let Some(ch) = self.channels.get_mut(id) {
            ch.generation += 1;
            if let Some(link) = ch.link.take() {
                link.retire.do_send(Retire { final_: true });
            }
        }
    }

    fn set_status(&mut self, id: &str, status: Status, error: Option<String>) {
        let Some(ch) = self.channels.get_mut(id) else {
            return;
        };
        if ch.status == status && ch.last_error == error {
            return;
        }
        ch.status = status;
        if status != Status::Connected || error.is_some() {
            ch.last_error = error.clone();
        }
        if status == Status::Connected {
            ch.last_error = None;
        }
        self.bus.do_send(Publish(GatewayEvent::ChannelStatus {
            channel_id: ch.row.id.clone(),
            channel_type: ch.row.kind.clone(),
            name: ch.row.name.clone(),
            status: status.as_str().to_string(),
            error,
            qr: ch.qr.clone(),
        }));
    }

    /// Decide what happens to a received message.
    fn disposition(ch: &Channel, m: &Incoming) -> Disposition {
        if !ch.allows(&m.sender_ids) {
            return Disposition::Ignore {
                reason: "sender_not_allowed".into(),
            };
        }
        if !m.addressed {
            return Disposition::Ignore {
                reason: "not_addressed".into(),
            };
        }
        if let Some(why) = &m.unsupported {
            return Disposition::Ignore {
                reason: why.clone(),
            };
        }
        let text = m.text.trim();
        let command = text
            .strip_prefix('/')
            .map(|c| c.split(['@', ' ']).next().unwrap_or(c).to_ascii_lowercase());
        match command.as_deref() {
            Some("start") if ch.row.kind == "telegram" => Disposition::Fixed {
                reply:
                    "Hello! Send me a message and I will answer. /reset starts a new conversation."
                        .into(),
                reset: false,
            },
            Some("reset") => Disposition::Fixed {
                reply: "Started a new conversation.".into(),
                reset: true,
            },
            _ if text.is_empty() => Disposition::Ignore {
                reason: "empty".into(),
            },
            _ => Disposition::Run,
        }
    }

    /// Store received messages; `Ok` once they are committed.
    fn receive(&mut self, msg: Received) -> ResponseActFuture<Self, Result<(), String>> {
        let Some(ch) = self.channels.get(&msg.channel_id) else {
            return Box::pin(fut::ready(Err("the channel no longer exists".to_string())));
        };
        if msg.generation != ch.generation {
            return Box::pin(fut::ready(Err("this channel was reconfigured".to_string())));
        }
        let messages: Vec<NewInbound> = msg
            .messages
            .iter()
            .map(|m| NewInbound {
                external_id: m.external_id.clone(),
                chat_key: m.chat_key.clone(),
                sender: m.sender.clone(),
                sender_name: m.sender_name.clone(),
                text: m.text.clone(),
                meta: m.meta.clone(),
                disposition: Self::disposition(ch, m),
            })
            .collect();
        let kind = ch.row.kind.clone();
        let write = self.store.send(ReceiveMessages {
            channel_id: msg.channel_id.clone(),
            messages,
            state: msg.state.clone(),
        });
        let state = msg.state;
        let channel_id = msg.channel_id;
        Box::pin(async move { answered(write.await) }.into_actor(self).map(
            move |stored, act, ctx| {
                let stored = stored.map_err(|e| e.to_string())?;
                if let Some(ch) = act.channels.get_mut(&channel_id) {
                    if state.is_some() {
                        ch.row.state = state;
                    }
                    if !stored.is_empty() {
                        ch.last_message_at = Some(now_ms());
                    }
                }
                for row in stored {
                    act.bus.do_send(Publish(GatewayEvent::MessageIncoming {
                        channel_id: row.channel_id.clone(),
                        channel_type: kind.clone(),
                        message_id: row.id,
                        chat: row.chat_key.clone(),
                        sender: row.sender.clone(),
                        sender_name: row.sender_name.clone(),
                        text: row.text.clone(),
                        status: row.status.clone(),
                        ignored_reason: row.ignored_reason.clone(),
                    }));
                    act.enqueue(row, ctx);
                }
                Ok(())
            },
        ))
    }

    fn enqueue(&mut self, row: InboxRow, ctx: &mut Context<Self>) {
        if !matches!(row.status.as_str(), "pending" | "replying") {
            return;
        }
        let key = (row.channel_id.clone(), row.chat_key.clone());
        self.lanes
            .entry(key.clone())
            .or_default()
            .queue
            .push_back(row);
        self.pump(key, ctx);
    }

    /// Start work on the lane's first message unless one is in work already.
    fn pump(&mut self, key: (String, String), ctx: &mut Context<Self>) {
        let Some(lane) = self.lanes.get_mut(&key) else {
            return;
        };
        if lane.busy {
            return;
        }
        let Some(row) = lane.queue.front().cloned() else {
            self.lanes.remove(&key);
            return;
        };
        let Some(ch) = self.channels.get(&key.0) else {
            // Deleted: its open messages were closed with it.
            self.lanes.remove(&key);
            return;
        };
        let Some(link) = ch.link.clone() else {
            // Stopped or not yet started: the lane waits for `launch`.
            return;
        };
        lane.busy = true;
        let work = Work {
            store: self.store.clone(),
            agents: self.agents.clone(),
            groups: self.groups.clone(),
            bus: self.bus.clone(),
            kind: ch.row.kind.clone(),
            link,
        };
        ctx.spawn(
            work.answer(row)
                .into_actor(self)
                .map(move |step, act, ctx| {
                    let Some(lane) = act.lanes.get_mut(&key) else {
                        return;
                    };
                    lane.busy = false;
                    match step {
                        Step::Done => {
                            lane.queue.pop_front();
                            act.pump(key, ctx);
                        }
                        Step::Again(row, after) => {
                            if let Some(front) = lane.queue.front_mut() {
                                *front = *row;
                            }
                            lane.busy = true;
                            ctx.run_later(after, move |act, ctx| {
                                if let Some(lane) = act.lanes.get_mut(&key) {
                                    lane.busy = false;
                                }
                                act.pump(key, ctx);
                            });
                        }
                    }
                }),
        );
    }

    fn find_by_kind(&self, id: &str, kind: &str) -> Result<&Channel, WebhookRefusal> {
        match self.channels.get(id) {
            Some(ch) if ch.row.kind == kind => Ok(ch),
            _ => Err(WebhookRefusal::NotFound),
        }
    }
}

/// What a lane does next with its first message.
enum Step {
    Done,
    /// Try again after a pause (the row carries what was achieved so far).
    Again(Box<InboxRow>, Duration),
}

/// Everything answering one message needs, cloned out of the manager.
struct Work {
    store: Store,
    agents: Addr<AgentSupervisor>,
    groups: Addr<AgentGroups>,
    bus: Addr<EventBus>,
    kind: String,
    link: ChannelLink,
}

/// What the person on the channel reads when the agent could not answer.
fn apology(code: &str, unavailable: bool) -> &'static str {
    if code == "budget_exceeded" {
        "Sorry, this assistant has used up its budget for now. Please try again later."
    } else if unavailable {
        "Sorry, I can't reach the language model right now. Please try again in a few minutes."
    } else {
        "Sorry, something went wrong while preparing an answer. Please try again later."
    }
}

fn retry_delay(attempts: i64) -> Duration {
    let secs = 1u64 << attempts.clamp(0, 9);
    Duration::from_secs(secs).min(DELIVERY_RETRY_MAX)
}

impl Work {
    async fn answer(self, mut row: InboxRow) -> Step {
        if row.status == "pending" {
            match self.run(&row).await {
                Ok(Some(reply)) => {
                    row.reply = Some(reply);
                    row.status = "replying".into();
                }
                Ok(None) => return Step::Again(Box::new(row), Duration::from_secs(2)),
                Err(e) => {
                    tracing::error!(message = row.id, error = %e, "cannot record a channel message's reply");
                    return Step::Again(Box::new(row), Duration::from_secs(5));
                }
            }
        }
        let text = row.reply.clone().unwrap_or_default();
        // Parts of a long reply that an earlier attempt delivered (kept in memory only).
        let already = row
            .meta
            .as_ref()
            .and_then(|m| m.get("sentParts"))
            .and_then(Value::as_u64)
            .unwrap_or(0) as usize;
        let sent = self
            .link
            .deliver
            .send(Deliver {
                chat_key: row.chat_key.clone(),
                text: text.clone(),
                sent_parts: already,
                meta: row.meta.clone(),
            })
            .await
            .unwrap_or_else(|_| {
                Err(DeliverError::Retry {
                    after: Duration::from_secs(1),
                    reason: "the channel restarted".into(),
                    sent_parts: already,
                })
            });
        let (status, error) = match sent {
            Ok(()) => ("answered", None),
            Err(DeliverError::Retry { reason, .. })
                if row.attempts + 1 >= MAX_DELIVERY_ATTEMPTS =>
            {
                // Retried with backoff for over an hour: the lane must move on.
                (
                    "failed",
                    Some(format!(
                        "gave up after {MAX_DELIVERY_ATTEMPTS} attempts: {reason}"
                    )),
                )
            }
            Err(DeliverError::Retry {
                after,
                reason,
                sent_parts,
            }) => {
                row.attempts += 1;
                tracing::warn!(message = row.id, attempts = row.attempts, %reason, "reply not delivered; retrying");
                self.store.do_send(CountAttempt {
                    id: row.id,
                    error: reason,
                });
                if sent_parts > already {
                    let meta = row.meta.get_or_insert_with(|| serde_json::json!({}));
                    meta["sentParts"] = serde_json::json!(sent_parts);
                }
                let after = after.max(retry_delay(row.attempts - 1));
                return Step::Again(Box::new(row), after);
            }
            Err(e @ DeliverError::Permanent(_)) => ("failed", Some(e.reason().to_string())),
        };
        if let Err(e) = answered(
            self.store
                .send(CloseMessage {
                    id: row.id,
                    status,
                    error: error.clone(),
                })
                .await,
        ) {
            tracing::error!(message = row.id, error = %e, "cannot record a delivered reply");
        }
        self.bus.do_send(Publish(GatewayEvent::MessageReply {
            channel_id: row.channel_id.clone(),
            channel_type: self.kind.clone(),
            message_id: row.id,
            chat: row.chat_key.clone(),
            reply: text,
            run_id: row.run_id.clone(),
            conversation_id: row.conversation_id.clone(),
            status: status.to_string(),
            error,
        }));
        Step::Done
    }

    /// Run the agent on a message; the reply is stored when this returns `Some`. `None`: the
    /// gateway is at its run limit, try later.
    async fn run(&self, row: &InboxRow) -> Result<Option<String>, StoreError> {
        // The group the channel is bound to now (bindings can change while messages wait).
        let group = self
            .groups
            .send(ResolveChannelGroup {
                channel_id: row.channel_id.clone(),
            })
            .await
            .ok()
            .flatten();
        let metadata = serde_json::json!({
            "channelId": row.channel_id,
            "channelType": self.kind,
            "chat": row.chat_key,
            "sender": row.sender,
            "messageId": row.id,
        });
        let ticket = self
            .agents
            .send(StartAgentRun {
                request: RunRequest {
                    owner: None,
                    source: self.kind.clone(),
                    input: row.text.clone(),
                    conversation_id: row.conversation_id.clone(),
                    metadata: Some(metadata),
                    max_iterations: None,
                    group,
                    channel_message: Some(row.id),
                },
                wait: true,
                arbiter: None,
            })
            .await;
        let ticket = match ticket {
            Ok(Ok(t)) => t,
            Ok(Err(StartRunError::Busy { .. })) | Err(_) => return Ok(None),
        };
        let Some(done) = ticket.done else {
            return Ok(None);
        };
        let typing = self.link.typing.clone();
        let chat_key = row.chat_key.clone();
        let keep_typing = async move {
            loop {
                typing.do_send(Typing {
                    chat_key: chat_key.clone(),
                });
                tokio::time::sleep(TYPING_EVERY).await;
            }
        };
        let result = tokio::select! {
            r = done => r,
            _ = keep_typing => unreachable!("the typing loop never ends"),
        };
        let Ok(result) = result else {
            // The run was dropped (shutdown): it runs again after the restart.
            return Ok(None);
        };
        match (result.status, result.output, result.error) {
            ("complete", Some(output), _) => Ok(Some(output)),
            (_, _, failure) => {
                let (code, unavailable) = failure
                    .as_ref()
                    .map_or(("error", false), |f| (f.code.as_str(), f.unavailable));
                let reply = apology(code, unavailable).to_string();
                answered(
                    self.store
                        .send(SetReply {
                            id: row.id,
                            reply: reply.clone(),
                            error: failure.map(|f| format!("{}: {}", f.code, f.message)),
                        })
                        .await,
                )?;
                Ok(Some(reply))
            }
        }
    }
}

impl Actor for ChannelManager {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Approval requests go to the admin chats of channels that have them. (The
        // subscription outlives a restart in place: the address stays the same.)
        if !self.subscribed {
            self.subscribed = true;
            self.bus.do_send(SubscribeTo {
                names: &["approval:required", "approval:resolved"],
                recipient: ctx.address().recipient(),
            });
        }
        let ids: Vec<String> = self.channels.keys().cloned().collect();
        for id in ids {
            self.launch(&id, ctx);
        }
        if self.reload_open {
            // After a crash of this actor: the lanes are rebuilt from what is stored, so
            // messages whose storing was in flight are not forgotten.
            let read = self.store.send(crate::store::channels::OpenMessages);
            ctx.spawn(async move { answered(read.await) }.into_actor(self).map(
                |open, act, ctx| match open {
                    Ok(rows) => {
                        for row in rows {
                            act.enqueue(row, ctx);
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "cannot reload unanswered messages"),
                },
            ));
        } else {
            // What the last run of the gateway left unanswered, in order.
            for row in std::mem::take(&mut self.open_at_start) {
                self.enqueue(row, ctx);
            }
        }
    }
}

impl actix::Supervised for ChannelManager {
    fn restarting(&mut self, _: &mut Context<Self>) {
        // The work in flight died with the old state: channel actors are retired (started()
        // launches new ones) and lanes are rebuilt from the store.
        for ch in self.channels.values_mut() {
            if let Some(link) = ch.link.take() {
                link.retire.do_send(Retire { final_: false });
            }
        }
        self.lanes.clear();
        self.reload_open = true;
    }
}

impl Handler<QrUpdate> for ChannelManager {
    type Result = ();

    fn handle(&mut self, msg: QrUpdate, _: &mut Context<Self>) {
        let Some(ch) = self.channels.get_mut(&msg.channel_id) else {
            return;
        };
        if ch.generation != msg.generation || ch.qr == msg.qr {
            return;
        }
        ch.qr = msg.qr.clone();
        self.bus.do_send(Publish(GatewayEvent::ChannelStatus {
            channel_id: ch.row.id.clone(),
            channel_type: ch.row.kind.clone(),
            name: ch.row.name.clone(),
            status: ch.status.as_str().to_string(),
            error: ch.last_error.clone(),
            qr: msg.qr,
        }));
    }
}

impl Handler<BusEvent> for ChannelManager {
    type Result = ();

    fn handle(&mut self, msg: BusEvent, _: &mut Context<Self>) {
        for ch in self.channels.values() {
            if let Some(to) = ch.link.as_ref().and_then(|l| l.approvals.as_ref()) {
                to.do_send(ApprovalNotice(msg.event.clone()));
            }
        }
    }
}

impl Handler<StatusUpdate> for ChannelManager {
    type Result = ();

    fn handle(&mut self, msg: StatusUpdate, _: &mut Context<Self>) {
        let current = self
            .channels
            .get(&msg.channel_id)
            .is_some_and(|c| c.generation == msg.generation && c.link.is_some());
        if current {
            self.set_status(&msg.channel_id, msg.status, msg.error);
        }
    }
}

impl Handler<Received> for ChannelManager {
    type Result = ResponseActFuture<Self, Result<(), String>>;

    fn handle(&mut self, msg: Received, _: &mut Context<Self>) -> Self::Result {
        self.receive(msg)
    }
}

fn check_name(name: &str) -> Result<String, ChannelError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ChannelError::Invalid(ConfigError {
            field: "name".into(),
            message: "name must be 1 to 100 characters".into(),
        }));
    }
    Ok(name.to_string())
}

fn check_senders(senders: Vec<String>) -> Result<Vec<String>, ChannelError> {
    if senders.len() > 10_000 || senders.iter().any(|s| s.trim().is_empty() || s.len() > 320) {
        return Err(ChannelError::Invalid(ConfigError {
            field: "allowedSenders".into(),
            message: "allowedSenders must be a list of non-empty ids, addresses or numbers".into(),
        }));
    }
    Ok(senders.into_iter().map(|s| s.trim().to_string()).collect())
}

impl Handler<CreateChannel> for ChannelManager {
    type Result = ResponseActFuture<Self, Result<ChannelView, ChannelError>>;

    fn handle(&mut self, CreateChannel(f): CreateChannel, _: &mut Context<Self>) -> Self::Result {
        let prepared = (|| {
            let kind = f.kind.clone().unwrap_or_default();
            if !config::KINDS.contains(&kind.as_str()) {
                return Err(ChannelError::Invalid(ConfigError {
                    field: "type".into(),
                    message: format!("type must be one of {:?}", config::KINDS),
                }));
            }
            let name = check_name(f.name.as_deref().unwrap_or_default())?;
            let (public, secrets) = config::split(&kind, f.config.clone().unwrap_or_default());
            let public: Map<String, Value> =
                public.into_iter().filter(|(_, v)| !v.is_null()).collect();
            let secrets: Map<String, Value> =
                secrets.into_iter().filter(|(_, v)| !v.is_null()).collect();
            let settings =
                config::validate(&kind, &public, &secrets).map_err(ChannelError::Invalid)?;
            let senders = check_senders(f.allowed_senders.clone().unwrap_or_default())?;
            let now = now_ms();
            let row = ChannelRow {
                id: uuid::Uuid::new_v4().to_string(),
                kind,
                name,
                config: Value::Object(public),
                secrets_sealed: self.seal(&secrets),
                allowed_senders: senders,
                enabled: f.enabled.unwrap_or(true),
                state: None,
                created_at: now,
                updated_at: now,
            };
            Ok((row, secrets, settings))
        })();
        let (row, secrets, settings) = match prepared {
            Ok(p) => p,
            Err(e) => return Box::pin(fut::ready(Err(e))),
        };
        let write = self.store.send(SaveChannel(row.clone()));
        Box::pin(async move { answered(write.await) }.into_actor(self).map(
            move |saved, act, ctx| {
                saved?;
                let id = row.id.clone();
                act.channels.insert(
                    id.clone(),
                    Channel {
                        allowed: row
                            .allowed_senders
                            .iter()
                            .map(|s| config::normalise_sender(s))
                            .collect(),
                        row,
                        secrets,
                        settings: Some(settings),
                        link: None,
                        generation: 0,
                        status: Status::Stopped,
                        last_error: None,
                        last_message_at: None,
                        qr: None,
                    },
                );
                act.launch(&id, ctx);
                Ok(act.channels[&id].view())
            },
        ))
    }
}

impl Handler<UpdateChannel> for ChannelManager {
    type Result = ResponseActFuture<Self, Result<ChannelView, ChannelError>>;

    fn handle(&mut self, msg: UpdateChannel, _: &mut Context<Self>) -> Self::Result {
        let prepared = (|| {
            let ch = self
                .channels
                .get(&msg.id)
                .ok_or_else(|| ChannelError::NotFound(msg.id.clone()))?;
            let f = msg.fields;
            if f.kind.as_ref().is_some_and(|k| *k != ch.row.kind) {
                return Err(ChannelError::Invalid(ConfigError {
                    field: "type".into(),
                    message: "a channel's type cannot change; create a new channel".into(),
                }));
            }
            let mut row = ch.row.clone();
            let mut secrets = ch.secrets.clone();
            if let Some(name) = &f.name {
                row.name = check_name(name)?;
            }
            if let Some(update) = f.config {
                let (public_update, secret_update) = config::split(&row.kind, update);
                let mut public = row.config.as_object().cloned().unwrap_or_default();
                config::merge(&mut public, public_update);
                config::merge(&mut secrets, secret_update);
                row.config = Value::Object(public);
            }
            let public = row.config.as_object().cloned().unwrap_or_default();
            let settings =
                config::validate(&row.kind, &public, &secrets).map_err(ChannelError::Invalid)?;
            if let Some(senders) = f.allowed_senders {
                row.allowed_senders = check_senders(senders)?;
            }
            if let Some(enabled) = f.enabled {
                row.enabled = enabled;
            }
            row.secrets_sealed = self.seal(&secrets);
            row.updated_at = now_ms();
            Ok((row, secrets, settings))
        })();
        let (row, secrets, settings) = match prepared {
            Ok(p) => p,
            Err(e) => return Box::pin(fut::ready(Err(e))),
        };
        let write = self.store.send(SaveChannel(row.clone()));
        Box::pin(async move { answered(write.await) }.into_actor(self).map(
            move |saved, act, ctx| {
                saved?;
                let id = row.id.clone();
                let Some(ch) = act.channels.get_mut(&id) else {
                    return Err(ChannelError::NotFound(id));
                };
                ch.allowed = row
                    .allowed_senders
                    .iter()
                    .map(|s| config::normalise_sender(s))
                    .collect();
                // The resume state is the running channel's: keep what it saved, unless it
                // now talks to another bot or mailbox, whose positions mean something else.
                let moved = ch
                    .settings
                    .as_ref()
                    .is_some_and(|old| config::endpoint(old) != config::endpoint(&settings));
                let state = ch.row.state.take().filter(|_| !moved);
                if moved {
                    act.store.do_send(SaveChannelState {
                        id: id.clone(),
                        state: Value::Null,
                    });
                }
                ch.row = row;
                ch.row.state = state;
                ch.secrets = secrets;
                ch.settings = Some(settings);
                ch.last_error = None;
                act.launch(&id, ctx);
                Ok(act.channels[&id].view())
            },
        ))
    }
}

impl Handler<RemoveChannel> for ChannelManager {
    type Result = ResponseActFuture<Self, Result<(), ChannelError>>;

    fn handle(&mut self, msg: RemoveChannel, _: &mut Context<Self>) -> Self::Result {
        if !self.channels.contains_key(&msg.id) {
            return Box::pin(fut::ready(Err(ChannelError::NotFound(msg.id))));
        }
        self.retire(&msg.id);
        let write = self.store.send(DeleteRow { id: msg.id.clone() });
        let id = msg.id;
        Box::pin(async move { answered(write.await) }.into_actor(self).map(
            move |deleted, act, _| {
                deleted?;
                if let Some(ch) = act.channels.remove(&id) {
                    act.bus.do_send(Publish(GatewayEvent::ChannelStatus {
                        channel_id: id.clone(),
                        channel_type: ch.row.kind.clone(),
                        name: ch.row.name.clone(),
                        status: "stopped".into(),
                        error: None,
                        qr: None,
                    }));
                }
                act.groups.do_send(ForgetChannel {
                    channel_id: id.clone(),
                });
                // Files the channel kept (a linked WhatsApp session) go with it.
                let dir = act.data_dir.join("channels").join(&id);
                actix_rt::spawn(async move {
                    let _ = tokio::task::spawn_blocking(move || {
                        if dir.exists() {
                            if let Err(e) = std::fs::remove_dir_all(&dir) {
                                tracing::warn!(path = %dir.display(), error = %e, "cannot remove a deleted channel's files");
                            }
                        }
                    })
                    .await;
                });
                act.lanes.retain(|(c, _), _| *c != id);
                Ok(())
            },
        ))
    }
}

impl Handler<ListChannels> for ChannelManager {
    type Result = MessageResult<ListChannels>;

    fn handle(&mut self, _: ListChannels, _: &mut Context<Self>) -> Self::Result {
        let mut all: Vec<ChannelView> = self.channels.values().map(Channel::view).collect();
        all.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.name.cmp(&b.name)));
        MessageResult(all)
    }
}

impl Handler<GetChannel> for ChannelManager {
    type Result = Option<ChannelView>;

    fn handle(&mut self, msg: GetChannel, _: &mut Context<Self>) -> Self::Result {
        self.channels.get(&msg.id).map(Channel::view)
    }
}

impl Handler<GetChannelMessages> for ChannelManager {
    type Result = ResponseFuture<Result<ChannelMessages, ChannelError>>;

    fn handle(&mut self, msg: GetChannelMessages, _: &mut Context<Self>) -> Self::Result {
        let known = self.channels.contains_key(&msg.id);
        let store = self.store.clone();
        Box::pin(async move {
            if !known {
                return Err(ChannelError::NotFound(msg.id));
            }
            let messages = answered(
                store
                    .send(ListChannelMessages {
                        channel_id: msg.id.clone(),
                        limit: msg.limit,
                        before: msg.before,
                    })
                    .await,
            )?;
            let counts = answered(
                store
                    .send(ChannelMessageCounts { channel_id: msg.id })
                    .await,
            )?;
            Ok(ChannelMessages { messages, counts })
        })
    }
}

/// The secret token of a channel's Telegram webhook: derived, so it needs no storage.
fn telegram_webhook_secret(key: &[u8; 32], channel_id: &str) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(key).expect("any key length");
    mac.update(channel_id.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Constant-time comparison of two secrets.
pub(crate) fn same_secret(a: &str, b: &str) -> bool {
    use sha2::{Digest, Sha256};
    // Comparing digests keeps the time independent of where the inputs differ.
    let (x, y) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    x.iter()
        .zip(y.iter())
        .fold(0u8, |acc, (p, q)| acc | (p ^ q))
        == 0
}

impl Handler<VerifyWhatsApp> for ChannelManager {
    type Result = Result<String, WebhookRefusal>;

    fn handle(&mut self, msg: VerifyWhatsApp, _: &mut Context<Self>) -> Self::Result {
        let ch = self.find_by_kind(&msg.channel_id, "whatsapp")?;
        let expected = ch
            .secrets
            .get("verifyToken")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let given = msg.verify_token.unwrap_or_default();
        if msg.mode.as_deref() != Some("subscribe")
            || expected.is_empty()
            || !same_secret(expected, &given)
        {
            return Err(WebhookRefusal::Forbidden("the verify token does not match"));
        }
        msg.challenge
            .ok_or_else(|| WebhookRefusal::BadRequest("hub.challenge is missing".into()))
    }
}

impl Handler<WhatsAppNotification> for ChannelManager {
    type Result = ResponseActFuture<Self, Result<(), WebhookRefusal>>;

    fn handle(&mut self, msg: WhatsAppNotification, _: &mut Context<Self>) -> Self::Result {
        let parsed = (|| {
            let ch = self.find_by_kind(&msg.channel_id, "whatsapp")?;
            let generation = ch.generation;
            let secret = ch
                .secrets
                .get("appSecret")
                .and_then(Value::as_str)
                .unwrap_or_default();
            whatsapp::check_signature(secret, msg.signature.as_deref(), &msg.body)?;
            let phone_number_id = ch
                .row
                .config
                .get("phoneNumberId")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            whatsapp::parse_notification(&msg.body, &phone_number_id).map(|m| (m, generation))
        })();
        let (messages, generation) = match parsed {
            Ok(m) => m,
            Err(e) => return Box::pin(fut::ready(Err(e))),
        };
        if messages.is_empty() {
            // Delivery statuses and the like: acknowledged, nothing to store.
            return Box::pin(fut::ready(Ok(())));
        }
        let received = self.receive(Received {
            channel_id: msg.channel_id,
            generation,
            messages,
            state: None,
        });
        Box::pin(received.map(|r, _, _| r.map_err(WebhookRefusal::Unavailable)))
    }
}

impl Handler<TelegramWebhookUpdate> for ChannelManager {
    type Result = ResponseFuture<Result<(), WebhookRefusal>>;

    fn handle(&mut self, msg: TelegramWebhookUpdate, _: &mut Context<Self>) -> Self::Result {
        let target = (|| {
            let ch = self.find_by_kind(&msg.channel_id, "telegram")?;
            let to = ch
                .link
                .as_ref()
                .and_then(|l| l.telegram_updates.clone())
                .ok_or(WebhookRefusal::NotFound)?;
            let expected = telegram_webhook_secret(&self.webhook_key, &msg.channel_id);
            if !same_secret(&expected, msg.secret_token.as_deref().unwrap_or_default()) {
                return Err(WebhookRefusal::Unauthorized(
                    "X-Telegram-Bot-Api-Secret-Token is missing or wrong",
                ));
            }
            Ok(to)
        })();
        Box::pin(async move {
            let to = target?;
            to.send(telegram::WebhookUpdate(msg.body))
                .await
                .unwrap_or_else(|_| {
                    Err(WebhookRefusal::Unavailable(
                        "the channel is restarting".into(),
                    ))
                })
        })
    }
}
