//! A stand-in for the Telegram Bot API, faithful to the published docs
//! (<https://core.telegram.org/bots/api>) and to what the reference server (tdlib's
//! telegram-bot-api) answers:
//!
//! - Methods at `/bot<token>/<method>`; method names are case-insensitive (teloxide sends
//!   `POST /bot<token>/GetUpdates` with a JSON body). Parameters come from the query string,
//!   an `application/json` body or an `application/x-www-form-urlencoded` body.
//! - Every answer is `{"ok":true,"result":...}` (setWebhook/deleteWebhook add a
//!   `description`) or `{"ok":false,"error_code":N,"description":"...","parameters":{...}}`
//!   with N as the HTTP status; 429 carries `parameters.retry_after` and a `Retry-After` header.
//! - `getUpdates` keeps a queue of updates: an offset confirms (forgets) every update below it,
//!   a negative offset counts from the end and forgets what precedes, `limit` is 1-100,
//!   `timeout` holds the request until an update arrives. A getUpdates that starts waiting ends
//!   the one already waiting with 409 `Conflict: terminated by other getUpdates request; ...`;
//!   setWebhook ends it with 409 `Conflict: terminated by setWebhook request`; while a webhook
//!   is set getUpdates answers 409 `Conflict: can't use getUpdates method while webhook is
//!   active; use deleteWebhook to delete the webhook first`.
//! - `sendMessage` parses `parse_mode` text the way the server does (MarkdownV2 reserved
//!   characters, legacy Markdown, HTML tags and entities) and answers `Bad Request: can't parse
//!   entities: ...` with the server's wording; 1-4096 characters after parsing.
//!
//! Tests push inbound messages and callback queries ([`TelegramBotApi::push_message`],
//! [`TelegramBotApi::push`], [`TelegramBotApi::push_callback_query`]) and read what the bot
//! did ([`TelegramBotApi::sent`], [`TelegramBotApi::calls`], ...).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Map, Value};

use crate::serve;

/// 409 for the long poll that a newer getUpdates replaced (or for every getUpdates while
/// [`TelegramBotApi::set_conflict`] is on).
pub const CONFLICT_OTHER_GET_UPDATES: &str =
    "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running";
/// 409 for getUpdates while a webhook is set.
pub const CONFLICT_WEBHOOK_ACTIVE: &str =
    "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first";
/// 409 for the long poll that setWebhook ended.
pub const CONFLICT_SET_WEBHOOK: &str = "Conflict: terminated by setWebhook request";

/// The first update_id the stand-in hands out ("update identifiers start from a certain
/// positive number and increase sequentially").
pub const FIRST_UPDATE_ID: i64 = 100_000_001;

/// The most characters a message text may have after entities parsing.
pub const MAX_TEXT_CHARS: usize = 4096;

/// Longest long poll the server holds (seconds); larger timeouts are cut to this.
const LONG_POLL_MAX_TIMEOUT: i64 = 50;

const CHAT_ACTIONS: &[&str] = &[
    "typing",
    "upload_photo",
    "record_video",
    "upload_video",
    "record_voice",
    "upload_voice",
    "upload_document",
    "choose_sticker",
    "find_location",
    "record_video_note",
    "upload_video_note",
];

/// A Telegram user, for pushing inbound messages.
#[derive(Debug, Clone, PartialEq)]
pub struct UserSpec {
    pub id: i64,
    pub is_bot: bool,
    pub first_name: String,
    pub last_name: Option<String>,
    pub username: Option<String>,
    pub language_code: Option<String>,
}

impl UserSpec {
    pub fn new(id: i64, first_name: &str) -> Self {
        Self {
            id,
            is_bot: false,
            first_name: first_name.to_string(),
            last_name: None,
            username: None,
            language_code: None,
        }
    }
    pub fn username(mut self, username: &str) -> Self {
        self.username = Some(username.to_string());
        self
    }
    pub fn last_name(mut self, last_name: &str) -> Self {
        self.last_name = Some(last_name.to_string());
        self
    }
    pub fn language_code(mut self, code: &str) -> Self {
        self.language_code = Some(code.to_string());
        self
    }
    /// The `User` object.
    pub fn json(&self) -> Value {
        let mut u = json!({"id": self.id, "is_bot": self.is_bot, "first_name": self.first_name});
        if let Some(v) = &self.last_name {
            u["last_name"] = json!(v);
        }
        if let Some(v) = &self.username {
            u["username"] = json!(v);
        }
        if let Some(v) = &self.language_code {
            u["language_code"] = json!(v);
        }
        u
    }
}

/// The chat an inbound message arrives in.
#[derive(Debug, Clone, PartialEq)]
pub enum ChatSpec {
    /// The private chat with the sender (its id is the sender's user id).
    Private,
    /// A basic group (negative id, e.g. -4001).
    Group { id: i64, title: String },
    /// A supergroup (id like -100xxxxxxxxxx).
    Supergroup {
        id: i64,
        title: String,
        username: Option<String>,
    },
}

impl ChatSpec {
    pub fn group(id: i64, title: &str) -> Self {
        ChatSpec::Group {
            id,
            title: title.to_string(),
        }
    }
    pub fn supergroup(id: i64, title: &str) -> Self {
        ChatSpec::Supergroup {
            id,
            title: title.to_string(),
            username: None,
        }
    }
    /// The chat's id for a message from `from`.
    pub fn id(&self, from: &UserSpec) -> i64 {
        match self {
            ChatSpec::Private => from.id,
            ChatSpec::Group { id, .. } | ChatSpec::Supergroup { id, .. } => *id,
        }
    }
    /// The `Chat` object.
    pub fn json(&self, from: &UserSpec) -> Value {
        match self {
            ChatSpec::Private => {
                let mut c =
                    json!({"id": from.id, "first_name": from.first_name, "type": "private"});
                if let Some(v) = &from.last_name {
                    c["last_name"] = json!(v);
                }
                if let Some(v) = &from.username {
                    c["username"] = json!(v);
                }
                c
            }
            ChatSpec::Group { id, title } => json!({"id": id, "title": title, "type": "group"}),
            ChatSpec::Supergroup {
                id,
                title,
                username,
            } => {
                let mut c = json!({"id": id, "title": title, "type": "supergroup"});
                if let Some(u) = username {
                    c["username"] = json!(u);
                }
                c
            }
        }
    }
}

/// An inbound text message to push, with options.
#[derive(Debug, Clone)]
pub struct Inbound {
    pub chat: ChatSpec,
    pub from: UserSpec,
    pub text: String,
    /// Reply to this message (of the same chat); the update carries it as `reply_to_message`.
    pub reply_to: Option<i64>,
    /// Entities as given; by default mentions, bot commands and URLs are detected as the
    /// server does.
    pub entities: Option<Vec<Value>>,
}

impl Inbound {
    pub fn new(chat: ChatSpec, from: UserSpec, text: &str) -> Self {
        Self {
            chat,
            from,
            text: text.to_string(),
            reply_to: None,
            entities: None,
        }
    }
    pub fn reply_to(mut self, message_id: i64) -> Self {
        self.reply_to = Some(message_id);
        self
    }
    pub fn entities(mut self, entities: Vec<Value>) -> Self {
        self.entities = Some(entities);
        self
    }
}

/// What [`TelegramBotApi::push`] created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pushed {
    pub update_id: i64,
    pub chat_id: i64,
    pub message_id: i64,
}

/// A message the bot sent with sendMessage.
#[derive(Debug, Clone, PartialEq)]
pub struct SentMessage {
    /// `chat_id` as the client sent it (an integer's decimal form, or the string).
    pub chat_id: String,
    /// The message_id the stand-in gave it.
    pub message_id: i64,
    /// `text` as sent (with its markup).
    pub text: String,
    /// The text after entities parsing (what the user sees).
    pub plain_text: String,
    pub parse_mode: Option<String>,
    /// `reply_parameters.message_id` or `reply_to_message_id`.
    pub reply_to: Option<i64>,
    pub reply_markup: Option<Value>,
}

/// A sendChatAction call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatAction {
    pub chat_id: String,
    pub action: String,
}

/// The webhook set with setWebhook.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookInfo {
    pub url: String,
    pub secret_token: Option<String>,
    pub allowed_updates: Option<Value>,
}

struct State {
    bot: UserSpec,
    next_update_id: i64,
    /// Unconfirmed updates, oldest first.
    queue: VecDeque<Value>,
    /// Every update ever pushed, by id.
    pushed: HashMap<i64, Value>,
    offsets: Vec<Option<i64>>,
    next_poll: u64,
    /// The long poll waiting now.
    waiting: Option<u64>,
    /// Long polls ended early, with the conflict description to answer.
    aborted: HashMap<u64, &'static str>,
    conflict: bool,
    webhook: Option<WebhookInfo>,
    rate_limit: Option<u32>,
    rate_limit_next: Option<(usize, u32)>,
    reject_markup: bool,
    chats: HashMap<i64, Value>,
    blocked: HashSet<i64>,
    next_message_id: HashMap<i64, i64>,
    messages: HashMap<(i64, i64), Value>,
    sent: Vec<SentMessage>,
    chat_actions: Vec<ChatAction>,
    calls: Vec<(String, Value)>,
    callback_ids: HashSet<String>,
    commands: Value,
}

struct Shared {
    token: String,
    state: Mutex<State>,
    notify: tokio::sync::Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The Bot API stand-in at `url` (`http://127.0.0.1:<port>`; give it to the client as its API
/// URL: requests go to `<url>/bot<token>/<method>`).
#[derive(Clone)]
pub struct TelegramBotApi {
    pub url: String,
    shared: Arc<Shared>,
}

impl TelegramBotApi {
    /// A stand-in that accepts only `token` (`<bot id>:<secret>`, e.g.
    /// `123456789:AAE-test-token`); the bot is "Loop Test Bot" `@loop_test_bot`, its user id
    /// the number before the colon.
    pub fn start(token: &str) -> Self {
        Self::start_named(token, "Loop Test Bot", "loop_test_bot")
    }

    pub fn start_named(token: &str, first_name: &str, username: &str) -> Self {
        let bot_id = token
            .split_once(':')
            .and_then(|(id, _)| id.parse().ok())
            .unwrap_or(7_000_000_001);
        let mut bot = UserSpec::new(bot_id, first_name).username(username);
        bot.is_bot = true;
        let shared = Arc::new(Shared {
            token: token.to_string(),
            state: Mutex::new(State {
                bot,
                next_update_id: FIRST_UPDATE_ID,
                queue: VecDeque::new(),
                pushed: HashMap::new(),
                offsets: Vec::new(),
                next_poll: 1,
                waiting: None,
                aborted: HashMap::new(),
                conflict: false,
                webhook: None,
                rate_limit: None,
                rate_limit_next: None,
                reject_markup: false,
                chats: HashMap::new(),
                blocked: HashSet::new(),
                next_message_id: HashMap::new(),
                messages: HashMap::new(),
                sent: Vec::new(),
                chat_actions: Vec::new(),
                calls: Vec::new(),
                callback_ids: HashSet::new(),
                commands: json!([]),
            }),
            notify: tokio::sync::Notify::new(),
        });
        let sh = shared.clone();
        let addr = serve(1, move |cfg| {
            let sh = sh.clone();
            cfg.default_service(web::to(move |req: HttpRequest, body: web::Bytes| {
                let sh = sh.clone();
                async move { handle(sh, req, body).await }
            }));
        });
        Self {
            url: format!("http://{addr}"),
            shared,
        }
    }

    /// The bot's `User` (what getMe answers, without the getMe-only fields).
    pub fn bot(&self) -> UserSpec {
        self.shared.lock().bot.clone()
    }

    fn changed(&self) {
        self.shared.notify.notify_waiters();
    }

    // ----- inbound -----

    /// Queue a text message from `from` in `chat`; returns its update_id.
    pub fn push_message(&self, chat: ChatSpec, from: UserSpec, text: &str) -> i64 {
        self.push(Inbound::new(chat, from, text)).update_id
    }

    /// Queue an inbound message with options (reply, entities).
    pub fn push(&self, inbound: Inbound) -> Pushed {
        let pushed = {
            let mut s = self.shared.lock();
            let chat = inbound.chat.json(&inbound.from);
            let chat_id = inbound.chat.id(&inbound.from);
            s.chats.insert(chat_id, chat.clone());
            let message_id = s.new_message_id(chat_id);
            let entities = inbound
                .entities
                .clone()
                .unwrap_or_else(|| detect_entities(&inbound.text));
            let mut message = json!({
                "message_id": message_id,
                "from": inbound.from.json(),
                "chat": chat,
                "date": now(),
                "text": inbound.text,
            });
            if !entities.is_empty() {
                message["entities"] = json!(entities);
            }
            if let Some(reply) = inbound.reply_to {
                let mut replied = s.messages.get(&(chat_id, reply)).cloned().unwrap_or_else(
                    || json!({"message_id": reply, "chat": message["chat"], "date": now()}),
                );
                if let Some(o) = replied.as_object_mut() {
                    o.remove("reply_to_message");
                }
                message["reply_to_message"] = replied;
            }
            s.messages.insert((chat_id, message_id), message.clone());
            let update_id = s.enqueue(json!({"message": message}));
            Pushed {
                update_id,
                chat_id,
                message_id,
            }
        };
        self.changed();
        pushed
    }

    /// Queue any update (`update_id` is set by the stand-in); messages in it become known.
    pub fn push_update(&self, mut update: Value) -> i64 {
        let id = {
            let mut s = self.shared.lock();
            for key in [
                "message",
                "edited_message",
                "channel_post",
                "edited_channel_post",
            ] {
                if let Some(m) = update.get(key).cloned() {
                    s.remember_message(&m);
                }
            }
            if let Some(q) = update.get("callback_query") {
                if let Some(id) = q["id"].as_str() {
                    s.callback_ids.insert(id.to_string());
                }
            }
            if let Some(o) = update.as_object_mut() {
                o.remove("update_id");
            }
            s.enqueue(update)
        };
        self.changed();
        id
    }

    /// Queue a callback_query update: `from` pressed an inline button with `data` on message
    /// `message_id` of `chat`. Its id is `callback_query_id(update_id)`.
    pub fn push_callback_query(
        &self,
        from: UserSpec,
        chat: ChatSpec,
        message_id: i64,
        data: &str,
    ) -> i64 {
        let id = {
            let mut s = self.shared.lock();
            let chat_json = chat.json(&from);
            let chat_id = chat.id(&from);
            s.chats.entry(chat_id).or_insert(chat_json.clone());
            let message = s
                .messages
                .get(&(chat_id, message_id))
                .cloned()
                // An InaccessibleMessage: date 0.
                .unwrap_or_else(|| json!({"chat": chat_json, "message_id": message_id, "date": 0}));
            let update_id = s.next_update_id;
            let query_id = callback_query_id(update_id);
            s.callback_ids.insert(query_id.clone());
            s.enqueue(json!({"callback_query": {
                "id": query_id,
                "from": from.json(),
                "message": message,
                "chat_instance": ((chat_id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 1).to_string(),
                "data": data,
            }}))
        };
        self.changed();
        id
    }

    /// Make `chat` known without a message from it (the bot can then send to it).
    pub fn add_chat(&self, chat: ChatSpec, user: &UserSpec) {
        self.shared
            .lock()
            .chats
            .insert(chat.id(user), chat.json(user));
    }

    /// The user blocked the bot: sending to their private chat answers 403 `Forbidden: bot was
    /// blocked by the user`.
    pub fn block_user(&self, user_id: i64, blocked: bool) {
        let mut s = self.shared.lock();
        if blocked {
            s.blocked.insert(user_id);
        } else {
            s.blocked.remove(&user_id);
        }
    }

    /// An update as pushed (with its update_id), whether or not it was confirmed.
    pub fn update(&self, update_id: i64) -> Option<Value> {
        self.shared.lock().pushed.get(&update_id).cloned()
    }

    /// A message the stand-in knows (pushed, or sent/edited by the bot).
    pub fn message(&self, chat_id: i64, message_id: i64) -> Option<Value> {
        self.shared
            .lock()
            .messages
            .get(&(chat_id, message_id))
            .cloned()
    }

    /// Updates not yet confirmed by a getUpdates offset.
    pub fn pending_updates(&self) -> Vec<i64> {
        self.shared
            .lock()
            .queue
            .iter()
            .filter_map(|u| u["update_id"].as_i64())
            .collect()
    }

    // ----- switches -----

    /// While on, every getUpdates answers 409 `Conflict: terminated by other getUpdates
    /// request; ...` (as when another instance is polling); a waiting long poll is ended too.
    pub fn set_conflict(&self, on: bool) {
        {
            let mut s = self.shared.lock();
            s.conflict = on;
            if on {
                if let Some(w) = s.waiting.take() {
                    s.aborted.insert(w, CONFLICT_OTHER_GET_UPDATES);
                }
            }
        }
        self.changed();
    }

    /// While set, sendMessage answers 429 `Too Many Requests: retry after N` with
    /// `parameters.retry_after` N (and a `Retry-After: N` header).
    pub fn set_rate_limit(&self, retry_after: Option<u32>) {
        self.shared.lock().rate_limit = retry_after;
    }

    /// Only the next `calls` sendMessage calls answer 429 with `retry_after` seconds.
    pub fn rate_limit_next(&self, calls: usize, retry_after: u32) {
        self.shared.lock().rate_limit_next = Some((calls, retry_after));
    }

    /// While on, every sendMessage/editMessageText with a parse_mode answers 400 `Bad Request:
    /// can't parse entities: ...`.
    pub fn set_reject_markup(&self, on: bool) {
        self.shared.lock().reject_markup = on;
    }

    /// Set (or remove) the webhook as if another client had called setWebhook.
    pub fn force_webhook(&self, url: Option<&str>) {
        {
            let mut s = self.shared.lock();
            match url {
                Some(url) => {
                    s.webhook = Some(WebhookInfo {
                        url: url.to_string(),
                        secret_token: None,
                        allowed_updates: None,
                    });
                    if let Some(w) = s.waiting.take() {
                        s.aborted.insert(w, CONFLICT_SET_WEBHOOK);
                    }
                }
                None => s.webhook = None,
            }
        }
        self.changed();
    }

    // ----- records -----

    /// The offset of every getUpdates call, in order (None when absent).
    pub fn get_updates_offsets(&self) -> Vec<Option<i64>> {
        self.shared.lock().offsets.clone()
    }

    /// Whether a getUpdates long poll is waiting now.
    pub fn is_polling(&self) -> bool {
        self.shared.lock().waiting.is_some()
    }

    pub fn sent(&self) -> Vec<SentMessage> {
        self.shared.lock().sent.clone()
    }

    pub fn chat_actions(&self) -> Vec<ChatAction> {
        self.shared.lock().chat_actions.clone()
    }

    pub fn webhook(&self) -> Option<WebhookInfo> {
        self.shared.lock().webhook.clone()
    }

    /// Every request's parameters for `method` (case-insensitive), whatever the answer.
    pub fn calls(&self, method: &str) -> Vec<Value> {
        let m = method.to_ascii_lowercase();
        self.shared
            .lock()
            .calls
            .iter()
            .filter(|(k, _)| *k == m)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Every request as (lower-case method, parameters), in order.
    pub fn all_calls(&self) -> Vec<(String, Value)> {
        self.shared.lock().calls.clone()
    }

    async fn wait<T>(
        &self,
        limit: Duration,
        what: impl Fn() -> String,
        mut ready: impl FnMut(&State) -> Option<T>,
    ) -> T {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.shared.notify.notified();
            if let Some(v) = ready(&self.shared.lock()) {
                return v;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                if let Some(v) = ready(&self.shared.lock()) {
                    return v;
                }
                panic!("Telegram stand-in: {} within {limit:?}", what());
            }
        }
    }

    /// Wait until at least `n` messages were sent (or panic after `limit`).
    pub async fn wait_for_sent(&self, n: usize, limit: Duration) -> Vec<SentMessage> {
        self.wait(
            limit,
            || format!("{} of {n} messages sent", self.sent().len()),
            |s| (s.sent.len() >= n).then(|| s.sent.clone()),
        )
        .await
    }

    /// Wait until `method` was called at least `n` times; returns its calls.
    pub async fn wait_for_calls(&self, method: &str, n: usize, limit: Duration) -> Vec<Value> {
        let m = method.to_ascii_lowercase();
        self.wait(
            limit,
            || format!("{} of {n} {method} calls", self.calls(method).len()),
            |s| {
                let v: Vec<Value> = s
                    .calls
                    .iter()
                    .filter(|(k, _)| *k == m)
                    .map(|(_, v)| v.clone())
                    .collect();
                (v.len() >= n).then_some(v)
            },
        )
        .await
    }

    /// Wait until `n` getUpdates calls were made; returns their offsets.
    pub async fn wait_for_polls(&self, n: usize, limit: Duration) -> Vec<Option<i64>> {
        self.wait(
            limit,
            || {
                format!(
                    "{} of {n} getUpdates calls",
                    self.get_updates_offsets().len()
                )
            },
            |s| (s.offsets.len() >= n).then(|| s.offsets.clone()),
        )
        .await
    }

    /// Wait until a getUpdates long poll is waiting.
    pub async fn wait_until_polling(&self, limit: Duration) {
        self.wait(
            limit,
            || "no long poll waiting".to_string(),
            |s| s.waiting.map(|_| ()),
        )
        .await
    }

    /// Wait until no pushed update is left unconfirmed.
    pub async fn wait_for_confirmed(&self, limit: Duration) {
        self.wait(
            limit,
            || format!("updates {:?} still unconfirmed", self.pending_updates()),
            |s| s.queue.is_empty().then_some(()),
        )
        .await
    }
}

/// The id of the callback query pushed as update `update_id`.
pub fn callback_query_id(update_id: i64) -> String {
    (4_382_000_000_000_000_000u64 + update_id as u64).to_string()
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl State {
    fn new_message_id(&mut self, chat_id: i64) -> i64 {
        let n = self.next_message_id.entry(chat_id).or_insert(1);
        let id = *n;
        *n += 1;
        id
    }

    fn enqueue(&mut self, mut update: Value) -> i64 {
        let id = self.next_update_id;
        self.next_update_id += 1;
        let mut o = Map::new();
        o.insert("update_id".into(), json!(id));
        if let Value::Object(rest) = update.take() {
            o.extend(rest);
        }
        let update = Value::Object(o);
        self.pushed.insert(id, update.clone());
        self.queue.push_back(update);
        id
    }

    fn remember_message(&mut self, m: &Value) {
        if let (Some(chat_id), Some(id)) = (m["chat"]["id"].as_i64(), m["message_id"].as_i64()) {
            self.chats.insert(chat_id, m["chat"].clone());
            self.messages.insert((chat_id, id), m.clone());
            let next = self.next_message_id.entry(chat_id).or_insert(1);
            *next = (*next).max(id + 1);
        }
    }

    /// The server's offset arithmetic: none/0 means the first unconfirmed update, a negative
    /// offset counts from the end.
    fn resolve_offset(&self, offset: Option<i64>) -> i64 {
        let tail = self.next_update_id;
        let head = self
            .queue
            .front()
            .and_then(|u| u["update_id"].as_i64())
            .unwrap_or(tail);
        let mut off = offset.unwrap_or(0);
        if off <= 0 {
            if off < 0 && !self.queue.is_empty() {
                off += tail;
            }
            if off < head {
                off = head;
            }
        }
        off
    }

    /// Forget the updates before `offset` and return up to `limit` from it. An offset beyond
    /// the newest update is not valid: the server then answers from the first unconfirmed
    /// update and forgets nothing.
    fn take(&mut self, offset: i64, limit: usize) -> Vec<Value> {
        if offset <= self.next_update_id {
            while self
                .queue
                .front()
                .and_then(|u| u["update_id"].as_i64())
                .is_some_and(|id| id < offset)
            {
                self.queue.pop_front();
            }
        }
        self.queue
            .iter()
            .filter(|u| offset > self.next_update_id || u["update_id"].as_i64() >= Some(offset))
            .take(limit)
            .cloned()
            .collect()
    }

    /// A chat_id parameter (integer, numeric string or `@username`) to a known chat's id.
    fn resolve_chat(&self, raw: &str) -> Option<i64> {
        if let Ok(id) = raw.trim().parse::<i64>() {
            return self.chats.contains_key(&id).then_some(id);
        }
        let name = raw.strip_prefix('@')?;
        self.chats
            .iter()
            .find(|(_, c)| {
                c["username"]
                    .as_str()
                    .is_some_and(|u| u.eq_ignore_ascii_case(name))
            })
            .map(|(id, _)| *id)
    }
}

// ----- HTTP -----

fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

fn ok(result: Value) -> HttpResponse {
    HttpResponse::Ok().json(json!({"ok": true, "result": result}))
}

fn ok_described(result: Value, description: &str) -> HttpResponse {
    HttpResponse::Ok().json(json!({"ok": true, "result": result, "description": description}))
}

fn fail(code: u16, description: &str) -> HttpResponse {
    HttpResponse::build(status(code))
        .json(json!({"ok": false, "error_code": code, "description": description}))
}

fn too_many_requests(retry_after: u32) -> HttpResponse {
    HttpResponse::build(StatusCode::TOO_MANY_REQUESTS)
        .insert_header(("retry-after", retry_after.to_string()))
        .json(json!({
            "ok": false,
            "error_code": 429,
            "description": format!("Too Many Requests: retry after {retry_after}"),
            "parameters": {"retry_after": retry_after},
        }))
}

/// The request's parameters: the query string, then the body's (JSON or form) over them.
struct Params(Map<String, Value>);

impl Params {
    fn parse(req: &HttpRequest, body: &[u8]) -> Result<Params, &'static str> {
        let mut map = Map::new();
        let form = |s: &str, map: &mut Map<String, Value>| {
            if let Ok(pairs) = web::Query::<Vec<(String, String)>>::from_query(s) {
                for (k, v) in pairs.into_inner() {
                    map.insert(k, Value::String(v));
                }
            }
        };
        form(req.query_string(), &mut map);
        let content_type = req
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        if body.iter().all(|b| b.is_ascii_whitespace()) {
            return Ok(Params(map));
        }
        if content_type.starts_with("application/json") {
            match serde_json::from_slice::<Value>(body) {
                Ok(Value::Object(o)) => map.extend(o),
                _ => return Err("Bad Request: can't parse JSON object"),
            }
        } else if content_type.starts_with("application/x-www-form-urlencoded") {
            form(&String::from_utf8_lossy(body), &mut map);
        } else if content_type.starts_with("multipart/form-data") {
            // Clients send methods that can carry files (setWebhook, sendDocument) this way.
            let boundary = content_type
                .split(';')
                .filter_map(|p| p.trim().strip_prefix("boundary="))
                .next()
                .map(|b| b.trim_matches('"').to_string())
                .ok_or("Bad Request: multipart body without a boundary")?;
            map.extend(multipart_fields(body, &boundary));
        }
        Ok(Params(map))
    }

    fn raw(&self, k: &str) -> Option<&Value> {
        self.0.get(k).filter(|v| !v.is_null())
    }

    fn str(&self, k: &str) -> Option<String> {
        self.raw(k).map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    }

    fn int(&self, k: &str) -> Option<i64> {
        match self.raw(k)? {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    /// A JSON-serialized parameter: an object/array in a JSON body, a JSON string otherwise.
    fn json(&self, k: &str) -> Option<Value> {
        match self.raw(k)? {
            Value::String(s) if s.trim().is_empty() => None,
            Value::String(s) => serde_json::from_str(s).ok(),
            other => Some(other.clone()),
        }
    }

    fn bool(&self, k: &str) -> bool {
        match self.raw(k) {
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) => s.eq_ignore_ascii_case("true") || s == "1",
            Some(Value::Number(n)) => n.as_i64().unwrap_or(0) != 0,
            _ => false,
        }
    }
}

/// A bot token as the server accepts it: `<digits>:<secret>`.
fn well_formed(token: &str) -> bool {
    match token.split_once(':') {
        Some((id, secret)) => {
            !id.is_empty()
                && !id.starts_with('0')
                && id.bytes().all(|b| b.is_ascii_digit())
                && !secret.is_empty()
                && secret
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        }
        None => false,
    }
}

async fn handle(sh: Arc<Shared>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let path = req.path().to_string();
    let Some((token, method)) = path
        .strip_prefix("/bot")
        .and_then(|rest| rest.split_once('/'))
    else {
        return fail(404, "Not Found");
    };
    if !well_formed(token) {
        return fail(401, "Unauthorized: invalid token specified");
    }
    if token != sh.token {
        return fail(401, "Unauthorized");
    }
    let method = method.trim_end_matches('/').to_ascii_lowercase();
    let params = match Params::parse(&req, &body) {
        Ok(p) => p,
        Err(e) => return fail(400, e),
    };
    {
        let mut s = sh.lock();
        s.calls
            .push((method.clone(), Value::Object(params.0.clone())));
        if method == "getupdates" {
            s.offsets.push(params.int("offset"));
        }
    }
    sh.notify.notify_waiters();
    let res = match method.as_str() {
        "getupdates" => return get_updates(sh, params).await,
        "getme" => {
            let s = sh.lock();
            let mut me = s.bot.json();
            me["can_join_groups"] = json!(true);
            me["can_read_all_group_messages"] = json!(false);
            me["supports_inline_queries"] = json!(false);
            me["can_connect_to_business"] = json!(false);
            me["has_main_web_app"] = json!(false);
            ok(me)
        }
        "sendmessage" => send_message(&mut sh.lock(), &params),
        "sendchataction" => send_chat_action(&mut sh.lock(), &params),
        "editmessagetext" => edit_message(&mut sh.lock(), &params, true),
        "editmessagereplymarkup" => edit_message(&mut sh.lock(), &params, false),
        "answercallbackquery" => {
            let s = sh.lock();
            match params.str("callback_query_id") {
                Some(id) if s.callback_ids.contains(&id) => ok(json!(true)),
                _ => fail(
                    400,
                    "Bad Request: query is too old and response timeout expired or query ID is invalid",
                ),
            }
        }
        "deletemessage" => {
            let mut s = sh.lock();
            let chat = params.str("chat_id").and_then(|c| s.resolve_chat(&c));
            let id = params.int("message_id");
            match (chat, id) {
                (None, _) => fail(400, "Bad Request: chat not found"),
                (Some(c), Some(id)) if s.messages.remove(&(c, id)).is_some() => ok(json!(true)),
                _ => fail(400, "Bad Request: message to delete not found"),
            }
        }
        "setwebhook" | "deletewebhook" => set_webhook(&mut sh.lock(), &params, &method),
        "getwebhookinfo" => {
            let s = sh.lock();
            let mut info = json!({
                "url": s.webhook.as_ref().map(|w| w.url.clone()).unwrap_or_default(),
                "has_custom_certificate": false,
                "pending_update_count": s.queue.len(),
            });
            if let Some(a) = s.webhook.as_ref().and_then(|w| w.allowed_updates.clone()) {
                info["allowed_updates"] = a;
            }
            ok(info)
        }
        "setmycommands" => {
            sh.lock().commands = params.json("commands").unwrap_or(json!([]));
            ok(json!(true))
        }
        "deletemycommands" => {
            sh.lock().commands = json!([]);
            ok(json!(true))
        }
        "getmycommands" => ok(sh.lock().commands.clone()),
        "getchat" => {
            let s = sh.lock();
            match params
                .str("chat_id")
                .and_then(|c| s.resolve_chat(&c))
                .and_then(|id| s.chats.get(&id))
            {
                Some(chat) => {
                    let mut c = chat.clone();
                    c["accent_color_id"] = json!(0);
                    c["max_reaction_count"] = json!(11);
                    ok(c)
                }
                None => fail(400, "Bad Request: chat not found"),
            }
        }
        "close" | "logout" => ok(json!(true)),
        _ => fail(404, "Not Found"),
    };
    sh.notify.notify_waiters();
    res
}

/// Ends a long poll's registration when its request ends (or its client goes away).
struct PollGuard {
    sh: Arc<Shared>,
    id: u64,
}

impl Drop for PollGuard {
    fn drop(&mut self) {
        let mut s = self.sh.lock();
        if s.waiting == Some(self.id) {
            s.waiting = None;
        }
        s.aborted.remove(&self.id);
    }
}

async fn get_updates(sh: Arc<Shared>, params: Params) -> HttpResponse {
    let raw_offset = params.int("offset");
    let limit = params.int("limit").unwrap_or(100).clamp(1, 100) as usize;
    let timeout = params
        .int("timeout")
        .unwrap_or(0)
        .clamp(0, LONG_POLL_MAX_TIMEOUT);
    let (offset, id) = {
        let mut s = sh.lock();
        if s.conflict {
            return fail(409, CONFLICT_OTHER_GET_UPDATES);
        }
        if s.webhook.is_some() {
            return fail(409, CONFLICT_WEBHOOK_ACTIVE);
        }
        let offset = s.resolve_offset(raw_offset);
        let batch = s.take(offset, limit);
        if !batch.is_empty() || timeout == 0 {
            drop(s);
            sh.notify.notify_waiters();
            return ok(Value::Array(batch));
        }
        // This request waits: the one waiting before is terminated.
        let id = s.next_poll;
        s.next_poll += 1;
        if let Some(old) = s.waiting.replace(id) {
            s.aborted.insert(old, CONFLICT_OTHER_GET_UPDATES);
        }
        (offset, id)
    };
    let _guard = PollGuard { sh: sh.clone(), id };
    sh.notify.notify_waiters();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout as u64);
    loop {
        let notified = sh.notify.notified();
        let answer = {
            let mut s = sh.lock();
            if let Some(why) = s.aborted.remove(&id) {
                Some(fail(409, why))
            } else {
                let batch = s.take(offset, limit);
                (!batch.is_empty()).then(|| {
                    s.waiting = None;
                    ok(Value::Array(batch))
                })
            }
        };
        if let Some(res) = answer {
            sh.notify.notify_waiters();
            return res;
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            let answer = {
                let mut s = sh.lock();
                match s.aborted.remove(&id) {
                    Some(why) => fail(409, why),
                    None => {
                        s.waiting = None;
                        ok(Value::Array(s.take(offset, limit)))
                    }
                }
            };
            sh.notify.notify_waiters();
            return answer;
        }
    }
}

fn set_webhook(s: &mut State, params: &Params, method: &str) -> HttpResponse {
    let url = if method == "setwebhook" {
        params.str("url").unwrap_or_default()
    } else {
        String::new()
    };
    if params.bool("drop_pending_updates") {
        s.queue.clear();
    }
    if url.is_empty() {
        return match s.webhook.take() {
            Some(_) => ok_described(json!(true), "Webhook was deleted"),
            None => ok_described(json!(true), "Webhook is already deleted"),
        };
    }
    if !(url.starts_with("https://") || url.starts_with("http://")) || url.len() < 10 {
        return fail(400, "Bad Request: invalid webhook URL specified");
    }
    let info = WebhookInfo {
        url,
        secret_token: params.str("secret_token"),
        allowed_updates: params.json("allowed_updates"),
    };
    if s.webhook.as_ref() == Some(&info) {
        return ok_described(json!(true), "Webhook is already set");
    }
    s.webhook = Some(info);
    if let Some(w) = s.waiting.take() {
        s.aborted.insert(w, CONFLICT_SET_WEBHOOK);
    }
    ok_described(json!(true), "Webhook was set")
}

fn chat_id_param(params: &Params) -> Option<String> {
    params.raw("chat_id").map(|v| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    })
}

/// Parse `text` under `parse_mode` the way the server does; an error is the whole description.
fn parse_text(
    s: &State,
    text: &str,
    parse_mode: Option<&str>,
) -> Result<(String, Vec<Value>), String> {
    let parsed = match parse_mode {
        None => Ok((text.to_string(), detect_entities(text))),
        Some(mode) => {
            let mode_lc = mode.to_ascii_lowercase();
            if !matches!(mode_lc.as_str(), "markdownv2" | "markdown" | "html") {
                return Err("Bad Request: unsupported parse_mode".to_string());
            }
            if s.reject_markup {
                Err(match mode_lc.as_str() {
                    "html" => "Unsupported start tag \"\" at byte offset 0".to_string(),
                    "markdown" => {
                        "Can't find end of the entity starting at byte offset 0".to_string()
                    }
                    _ => "Can't find end of Bold entity at byte offset 0".to_string(),
                })
            } else {
                match mode_lc.as_str() {
                    "markdownv2" => markup::markdown_v2(text),
                    "markdown" => markup::markdown(text),
                    _ => markup::html(text),
                }
            }
        }
    };
    parsed
        .map(|(t, e)| markup::trim(t, e))
        .map_err(|e| format!("Bad Request: can't parse entities: {e}"))
}

/// `reply_markup` if valid (inline keyboards are checked the way the server does).
fn reply_markup(params: &Params) -> Result<Option<Value>, &'static str> {
    if params.raw("reply_markup").is_none() {
        return Ok(None);
    }
    let Some(markup) = params.json("reply_markup") else {
        return Err("Bad Request: can't parse reply keyboard markup JSON object");
    };
    if let Some(rows) = markup.get("inline_keyboard") {
        let Some(rows) = rows.as_array() else {
            return Err("Bad Request: field \"inline_keyboard\" must be an Array");
        };
        for row in rows {
            let Some(buttons) = row.as_array() else {
                return Err("Bad Request: can't parse inline keyboard button: InlineKeyboardButton must be an Object");
            };
            for b in buttons {
                if b["text"].as_str().is_none() {
                    return Err("Bad Request: can't parse inline keyboard button: Field \"text\" must be of type String");
                }
                if let Some(data) = b.get("callback_data") {
                    let len = data.as_str().map(str::len).unwrap_or(0);
                    if !(1..=64).contains(&len) {
                        return Err("Bad Request: BUTTON_DATA_INVALID");
                    }
                } else if b.get("url").is_none()
                    && b.get("login_url").is_none()
                    && b.get("switch_inline_query").is_none()
                    && b.get("switch_inline_query_current_chat").is_none()
                    && b.get("web_app").is_none()
                    && b.get("copy_text").is_none()
                    && b.get("pay").is_none()
                    && b.get("callback_game").is_none()
                {
                    return Err("Bad Request: can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard");
                }
            }
        }
    }
    Ok(Some(markup))
}

fn take_rate_limit(s: &mut State) -> Option<u32> {
    if let Some((left, secs)) = s.rate_limit_next {
        if left > 0 {
            s.rate_limit_next = (left > 1).then_some((left - 1, secs));
            return Some(secs);
        }
        s.rate_limit_next = None;
    }
    s.rate_limit
}

fn send_message(s: &mut State, params: &Params) -> HttpResponse {
    let Some(chat_raw) = chat_id_param(params) else {
        return fail(400, "Bad Request: chat_id is empty");
    };
    if let Some(secs) = take_rate_limit(s) {
        return too_many_requests(secs);
    }
    let text = params.str("text").unwrap_or_default();
    if text.is_empty() {
        return fail(400, "Bad Request: message text is empty");
    }
    let parse_mode = params.str("parse_mode").filter(|m| !m.is_empty());
    let (plain, entities) = match parse_text(s, &text, parse_mode.as_deref()) {
        Ok(v) => v,
        Err(e) => return fail(400, &e),
    };
    let entities = match params.json("entities") {
        Some(Value::Array(given)) if parse_mode.is_none() => given,
        _ => entities,
    };
    let markup = match reply_markup(params) {
        Ok(m) => m,
        Err(e) => return fail(400, e),
    };
    let Some(chat_id) = s.resolve_chat(&chat_raw) else {
        return fail(400, "Bad Request: chat not found");
    };
    if s.blocked.contains(&chat_id) {
        return fail(403, "Forbidden: bot was blocked by the user");
    }
    let reply_params = params.json("reply_parameters");
    let reply_to = reply_params
        .as_ref()
        .and_then(|r| r["message_id"].as_i64())
        .or_else(|| params.int("reply_to_message_id"));
    let allow_without = params.bool("allow_sending_without_reply")
        || reply_params
            .as_ref()
            .is_some_and(|r| r["allow_sending_without_reply"].as_bool() == Some(true));
    let replied = reply_to.and_then(|id| s.messages.get(&(chat_id, id)).cloned());
    if reply_to.is_some() && replied.is_none() && !allow_without {
        return fail(400, "Bad Request: message to be replied not found");
    }
    if plain.is_empty() {
        return fail(400, "Bad Request: message text is empty");
    }
    if plain.chars().count() > MAX_TEXT_CHARS {
        return fail(400, "Bad Request: message is too long");
    }
    let message_id = s.new_message_id(chat_id);
    let mut message = json!({
        "message_id": message_id,
        "from": s.bot.json(),
        "chat": s.chats[&chat_id],
        "date": now(),
        "text": plain,
    });
    if !entities.is_empty() {
        message["entities"] = json!(entities);
    }
    if let Some(mut r) = replied {
        if let Some(o) = r.as_object_mut() {
            o.remove("reply_to_message");
        }
        message["reply_to_message"] = r;
    }
    if let Some(m) = &markup {
        if m.get("inline_keyboard").is_some() {
            message["reply_markup"] = m.clone();
        }
    }
    s.messages.insert((chat_id, message_id), message.clone());
    s.sent.push(SentMessage {
        chat_id: chat_raw,
        message_id,
        text,
        plain_text: plain,
        parse_mode,
        reply_to,
        reply_markup: markup,
    });
    ok(message)
}

fn send_chat_action(s: &mut State, params: &Params) -> HttpResponse {
    let Some(chat_raw) = chat_id_param(params) else {
        return fail(400, "Bad Request: chat_id is empty");
    };
    let action = params.str("action").unwrap_or_default();
    if !CHAT_ACTIONS.contains(&action.as_str()) {
        return fail(400, "Bad Request: wrong parameter action in request");
    }
    let Some(chat_id) = s.resolve_chat(&chat_raw) else {
        return fail(400, "Bad Request: chat not found");
    };
    if s.blocked.contains(&chat_id) {
        return fail(403, "Forbidden: bot was blocked by the user");
    }
    s.chat_actions.push(ChatAction {
        chat_id: chat_raw,
        action,
    });
    ok(json!(true))
}

/// editMessageText (`text`) or editMessageReplyMarkup.
fn edit_message(s: &mut State, params: &Params, text: bool) -> HttpResponse {
    let markup = match reply_markup(params) {
        Ok(m) => m,
        Err(e) => return fail(400, e),
    };
    let mut new_text = None;
    if text {
        let raw = params.str("text").unwrap_or_default();
        if raw.is_empty() {
            return fail(400, "Bad Request: message text is empty");
        }
        let mode = params.str("parse_mode").filter(|m| !m.is_empty());
        match parse_text(s, &raw, mode.as_deref()) {
            Ok((plain, _)) if plain.is_empty() => {
                return fail(400, "Bad Request: message text is empty")
            }
            Ok((plain, _)) if plain.chars().count() > MAX_TEXT_CHARS => {
                return fail(400, "Bad Request: MESSAGE_TOO_LONG")
            }
            Ok(v) => new_text = Some(v),
            Err(e) => return fail(400, &e),
        }
    }
    if params.raw("inline_message_id").is_some() {
        return ok(json!(true));
    }
    let Some(chat_raw) = chat_id_param(params) else {
        return fail(400, "Bad Request: chat_id is empty");
    };
    let Some(chat_id) = s.resolve_chat(&chat_raw) else {
        return fail(400, "Bad Request: chat not found");
    };
    let Some(message_id) = params.int("message_id") else {
        return fail(400, "Bad Request: message identifier is not specified");
    };
    let bot_id = s.bot.id;
    let Some(message) = s.messages.get_mut(&(chat_id, message_id)) else {
        return fail(400, "Bad Request: message to edit not found");
    };
    if message["from"]["id"].as_i64() != Some(bot_id) {
        return fail(400, "Bad Request: message can't be edited");
    }
    let mut edited = message.clone();
    if let Some((plain, entities)) = new_text {
        edited["text"] = json!(plain);
        match edited.as_object_mut() {
            Some(o) if entities.is_empty() => {
                o.remove("entities");
            }
            _ => edited["entities"] = json!(entities),
        }
    }
    match markup.filter(|m| m.get("inline_keyboard").is_some()) {
        Some(m) => edited["reply_markup"] = m,
        None => {
            if let Some(o) = edited.as_object_mut() {
                o.remove("reply_markup");
            }
        }
    }
    let same = |a: &Value, b: &Value| {
        a["text"] == b["text"]
            && a["entities"] == b["entities"]
            && a["reply_markup"] == b["reply_markup"]
    };
    if same(&edited, message) {
        return fail(
            400,
            "Bad Request: message is not modified: specified new message content and reply markup are exactly the same as a current content and reply markup of the message",
        );
    }
    edited["edit_date"] = json!(now());
    *message = edited.clone();
    ok(edited)
}

// ----- entities -----

fn is_word(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Mentions, bot commands and URLs in plain text, as the server detects them (offsets and
/// lengths in UTF-16 code units).
pub fn detect_entities(text: &str) -> Vec<Value> {
    let chars: Vec<char> = text.chars().collect();
    let mut utf16 = Vec::with_capacity(chars.len() + 1);
    let mut n = 0i64;
    for c in &chars {
        utf16.push(n);
        n += c.len_utf16() as i64;
    }
    utf16.push(n);
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let prev = if i == 0 { None } else { Some(chars[i - 1]) };
        let word_end = |from: usize| {
            let mut j = from;
            while j < chars.len() && is_word(chars[j]) {
                j += 1;
            }
            j
        };
        if c == '@' && !prev.is_some_and(is_word) {
            let end = word_end(i + 1);
            if (3..=32).contains(&(end - i - 1)) {
                out.push(
                    json!({"type": "mention", "offset": utf16[i], "length": utf16[end] - utf16[i]}),
                );
                i = end;
                continue;
            }
        }
        if c == '/' && prev.is_none_or(char::is_whitespace) {
            let mut end = word_end(i + 1);
            if end > i + 1 && end - i - 1 <= 64 {
                if end < chars.len() && chars[end] == '@' {
                    let bot_end = word_end(end + 1);
                    if bot_end > end + 1 {
                        end = bot_end;
                    }
                }
                if end == chars.len() || !(is_word(chars[end]) || chars[end] == '/') {
                    out.push(json!({"type": "bot_command", "offset": utf16[i], "length": utf16[end] - utf16[i]}));
                    i = end;
                    continue;
                }
            }
        }
        let rest: String = chars[i..chars.len().min(i + 8)].iter().collect();
        if (rest.starts_with("http://") || rest.starts_with("https://"))
            && !prev.is_some_and(|p| p.is_alphanumeric())
        {
            let mut end = i;
            while end < chars.len() && !chars[end].is_whitespace() {
                end += 1;
            }
            while end > i && matches!(chars[end - 1], '.' | ',' | '!' | '?' | ')' | ';' | ':') {
                end -= 1;
            }
            out.push(json!({"type": "url", "offset": utf16[i], "length": utf16[end] - utf16[i]}));
            i = end.max(i + 1);
            continue;
        }
        i += 1;
    }
    out
}

/// The server's text-formatting parsers (after tdlib's `parse_markdown_v2`, `parse_markdown`
/// and `parse_html`): the text without markup, its entities, or the error description.
pub mod markup {
    use serde_json::{json, Value};

    type Parsed = Result<(String, Vec<Value>), String>;

    /// td's `is_space` (NUL, the string's end, counts as a space).
    fn is_space(c: u8) -> bool {
        matches!(c, b' ' | b'\t' | b'\r' | b'\n' | 0 | 0x0b | 0x0c)
    }

    /// UTF-16 code units a UTF-8 byte starts (0 for continuation bytes).
    fn utf16_units(b: u8) -> i64 {
        if b & 0xC0 == 0x80 {
            0
        } else if b >= 0xF0 {
            2
        } else {
            1
        }
    }

    fn entity(kind: &str, offset: i64, length: i64) -> Value {
        json!({"type": kind, "offset": offset, "length": length})
    }

    fn sorted(mut entities: Vec<Value>) -> Vec<Value> {
        entities.sort_by_key(|e| {
            (
                e["offset"].as_i64().unwrap_or(0),
                -e["length"].as_i64().unwrap_or(0),
            )
        });
        entities
    }

    fn finish(out: Vec<u8>) -> String {
        String::from_utf8(out)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }

    /// A link target as the server normalizes it, or None when it is not a URL.
    fn check_url(url: &str) -> Option<String> {
        let url = url.trim();
        if url.is_empty() {
            return None;
        }
        let (scheme, rest) = match url.find("://") {
            Some(p) => (url[..p].to_ascii_lowercase(), &url[p + 3..]),
            None if url.to_ascii_lowercase().starts_with("tg:") => ("tg".to_string(), &url[3..]),
            None => ("http".to_string(), url),
        };
        if !matches!(scheme.as_str(), "http" | "https" | "tg" | "ton" | "tonsite") {
            return None;
        }
        if scheme != "http" && scheme != "https" {
            return Some(format!("{scheme}://{rest}"));
        }
        let host_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let host = &rest[..host_end];
        let host_only = host.rsplit('@').next().unwrap_or(host);
        let host_only = host_only.split(':').next().unwrap_or(host_only);
        let tld = host_only.rsplit('.').next().unwrap_or("");
        let ip = host_only.split('.').count() == 4
            && host_only.split('.').all(|p| p.parse::<u8>().is_ok());
        if !ip
            && (!host_only.contains('.') || tld.len() < 2 || !tld.chars().all(char::is_alphabetic))
        {
            return None;
        }
        let path = &rest[host_end..];
        let path = if path.starts_with('/') {
            path.to_string()
        } else {
            format!("/{path}")
        };
        Some(format!("{scheme}://{}{path}", host.to_ascii_lowercase()))
    }

    fn link_entity(url: &str, offset: i64, length: i64) -> Option<Value> {
        let lower = url.to_ascii_lowercase();
        if let Some(id) = lower
            .strip_prefix("tg://user?id=")
            .or_else(|| lower.strip_prefix("tg:user?id="))
            .and_then(|s| s.parse::<i64>().ok())
        {
            return Some(
                json!({"type": "text_mention", "offset": offset, "length": length,
                "user": {"id": id, "is_bot": false, "first_name": ""}}),
            );
        }
        check_url(url)
            .map(|u| json!({"type": "text_link", "offset": offset, "length": length, "url": u}))
    }

    /// Leading/trailing white space is cut from a message (entities follow).
    pub fn trim(text: String, entities: Vec<Value>) -> (String, Vec<Value>) {
        let lead = text.len() - text.trim_start().len();
        let shift: i64 = text[..lead].encode_utf16().count() as i64;
        let trimmed = text.trim().to_string();
        let len = trimmed.encode_utf16().count() as i64;
        let entities = entities
            .into_iter()
            .filter_map(|mut e| {
                let start = (e["offset"].as_i64()? - shift).max(0);
                let end = (e["offset"].as_i64()? + e["length"].as_i64()? - shift).min(len);
                (end > start).then(|| {
                    e["offset"] = json!(start);
                    e["length"] = json!(end - start);
                    e
                })
            })
            .collect();
        (trimmed, entities)
    }

    #[derive(Clone, Copy, PartialEq)]
    enum Kind {
        Bold,
        Italic,
        Underline,
        Strikethrough,
        Spoiler,
        Code,
        Pre,
        PreCode,
        TextUrl,
        CustomEmoji,
    }

    impl Kind {
        fn name(self) -> &'static str {
            match self {
                Kind::Bold => "Bold",
                Kind::Italic => "Italic",
                Kind::Underline => "Underline",
                Kind::Strikethrough => "Strikethrough",
                Kind::Spoiler => "Spoiler",
                Kind::Code => "Code",
                Kind::Pre => "Pre",
                Kind::PreCode => "PreCode",
                Kind::TextUrl => "TextUrl",
                Kind::CustomEmoji => "CustomEmoji",
            }
        }
        fn api_type(self) -> &'static str {
            match self {
                Kind::Bold => "bold",
                Kind::Italic => "italic",
                Kind::Underline => "underline",
                Kind::Strikethrough => "strikethrough",
                Kind::Spoiler => "spoiler",
                Kind::Code => "code",
                Kind::Pre | Kind::PreCode => "pre",
                Kind::TextUrl => "text_link",
                Kind::CustomEmoji => "custom_emoji",
            }
        }
    }

    fn reserved(c: u8) -> String {
        format!(
            "Character '{}' is reserved and must be escaped with the preceding '\\'",
            c as char
        )
    }

    /// `parse_mode: MarkdownV2`.
    pub fn markdown_v2(text: &str) -> Parsed {
        struct Open {
            kind: Kind,
            arg: String,
            offset: i64,
            byte: usize,
            out_start: usize,
        }
        let b = text.as_bytes();
        let at = |i: usize| b.get(i).copied().unwrap_or(0);
        let mut out: Vec<u8> = Vec::with_capacity(b.len());
        let mut u16 = 0i64;
        let mut stack: Vec<Open> = Vec::new();
        let mut entities = Vec::new();
        let mut quote: Option<i64> = None;
        let mut i = 0;
        while i < b.len() {
            let c = b[i];
            let in_code = stack
                .last()
                .is_some_and(|o| matches!(o.kind, Kind::Code | Kind::Pre | Kind::PreCode));
            let after_newline = i > 0 && b[i - 1] == b'\n';
            if !in_code {
                if after_newline && c != b'>' {
                    if let Some(start) = quote.take() {
                        if u16 > start {
                            entities.push(entity("blockquote", start, u16 - start));
                        }
                    }
                }
                if c == b'>' && (i == 0 || after_newline || b[i - 1] == b'\r') {
                    quote.get_or_insert(u16);
                    i += 1;
                    continue;
                }
            }
            if c == b'\\' && at(i + 1) > 0 && at(i + 1) <= 126 {
                out.push(b[i + 1]);
                u16 += 1;
                i += 2;
                continue;
            }
            let reserved_chars: &[u8] = if in_code { b"`" } else { b"_*[]()~`>#+-=|{}.!" };
            if !reserved_chars.contains(&c) {
                u16 += utf16_units(c);
                out.push(c);
                i += 1;
                continue;
            }
            let is_end = stack.last().is_some_and(|top| match top.kind {
                Kind::Bold => c == b'*',
                Kind::Italic => c == b'_' && at(i + 1) != b'_',
                Kind::Code => c == b'`',
                Kind::Pre | Kind::PreCode => c == b'`' && at(i + 1) == b'`' && at(i + 2) == b'`',
                Kind::TextUrl | Kind::CustomEmoji => c == b']',
                Kind::Underline => c == b'_' && at(i + 1) == b'_',
                Kind::Strikethrough => c == b'~',
                Kind::Spoiler => c == b'|' && at(i + 1) == b'|',
            });
            if !is_end {
                let byte = i;
                let mut arg = String::new();
                let kind = match c {
                    b'_' if at(i + 1) == b'_' => {
                        i += 1;
                        Kind::Underline
                    }
                    b'_' => Kind::Italic,
                    b'*' => Kind::Bold,
                    b'~' => Kind::Strikethrough,
                    b'|' if at(i + 1) == b'|' => {
                        i += 1;
                        Kind::Spoiler
                    }
                    b'[' => Kind::TextUrl,
                    b'`' if at(i + 1) == b'`' && at(i + 2) == b'`' => {
                        i += 3;
                        let mut kind = Kind::Pre;
                        let mut end = i;
                        while !is_space(at(end)) && at(end) != b'`' {
                            end += 1;
                        }
                        if i != end && end < b.len() && at(end) != b'`' {
                            kind = Kind::PreCode;
                            arg = String::from_utf8_lossy(&b[i..end]).into_owned();
                            i = end;
                        }
                        if at(i) == b'\n' || at(i) == b'\r' {
                            if (at(i + 1) == b'\n' || at(i + 1) == b'\r') && at(i) != at(i + 1) {
                                i += 2;
                            } else {
                                i += 1;
                            }
                        }
                        i -= 1;
                        kind
                    }
                    b'`' => Kind::Code,
                    b'!' if at(i + 1) == b'[' => {
                        i += 1;
                        Kind::CustomEmoji
                    }
                    _ => return Err(reserved(c)),
                };
                stack.push(Open {
                    kind,
                    arg,
                    offset: u16,
                    byte,
                    out_start: out.len(),
                });
                i += 1;
                continue;
            }
            let Some(top) = stack.pop() else {
                return Err(reserved(c));
            };
            let mut skip = u16 == top.offset;
            let length = u16 - top.offset;
            let mut made = None;
            match top.kind {
                Kind::Underline | Kind::Spoiler => i += 1,
                Kind::Pre | Kind::PreCode => i += 2,
                Kind::TextUrl => {
                    let url = if at(i + 1) != b'(' {
                        String::from_utf8_lossy(&out[top.out_start..]).into_owned()
                    } else {
                        i += 2;
                        let begin = i;
                        let mut url = Vec::new();
                        while i < b.len() && b[i] != b')' {
                            if b[i] == b'\\' && at(i + 1) > 0 && at(i + 1) <= 126 {
                                url.push(b[i + 1]);
                                i += 2;
                                continue;
                            }
                            url.push(b[i]);
                            i += 1;
                        }
                        if at(i) != b')' {
                            return Err(format!("Can't find end of a URL at byte offset {begin}"));
                        }
                        String::from_utf8_lossy(&url).into_owned()
                    };
                    match link_entity(&url, top.offset, length) {
                        Some(e) => made = Some(e),
                        None => skip = true,
                    }
                }
                Kind::CustomEmoji => {
                    if at(i + 1) != b'(' {
                        return Err("Custom emoji entity must contain a tg://emoji URL".into());
                    }
                    i += 2;
                    let begin = i;
                    let mut url = Vec::new();
                    while i < b.len() && b[i] != b')' {
                        url.push(b[i]);
                        i += 1;
                    }
                    if at(i) != b')' {
                        return Err(format!(
                            "Can't find end of a custom emoji URL at byte offset {begin}"
                        ));
                    }
                    let url = String::from_utf8_lossy(&url).to_ascii_lowercase();
                    let id = url
                        .split(['?', '&', '#'])
                        .find_map(|p| p.strip_prefix("id="))
                        .and_then(|v| v.parse::<i64>().ok());
                    match id {
                        Some(id) => {
                            made = Some(json!({"type": "custom_emoji", "offset": top.offset,
                                "length": length, "custom_emoji_id": id.to_string()}))
                        }
                        None => return Err("Custom emoji URL must have an emoji identifier".into()),
                    }
                }
                _ => {}
            }
            if !skip {
                let mut e = made.unwrap_or_else(|| entity(top.kind.api_type(), top.offset, length));
                if top.kind == Kind::PreCode {
                    e["language"] = json!(top.arg);
                }
                entities.push(e);
            }
            i += 1;
        }
        if let Some(top) = stack.last() {
            return Err(format!(
                "Can't find end of {} entity at byte offset {}",
                top.kind.name(),
                top.byte
            ));
        }
        if let Some(start) = quote {
            if u16 > start {
                entities.push(entity("blockquote", start, u16 - start));
            }
        }
        Ok((finish(out), sorted(entities)))
    }

    /// `parse_mode: Markdown` (legacy): `*bold*`, `_italic_`, `` `code` ``, ```` ```pre``` ````,
    /// `[text](url)`; no nesting; `\` escapes only `_ * ` [`.
    pub fn markdown(text: &str) -> Parsed {
        let b = text.as_bytes();
        let at = |i: usize| b.get(i).copied().unwrap_or(0);
        let mut out: Vec<u8> = Vec::with_capacity(b.len());
        let mut entities = Vec::new();
        let mut u16 = 0i64;
        let mut i = 0;
        while i < b.len() {
            let c = b[i];
            if c == b'\\' && matches!(at(i + 1), b'_' | b'*' | b'`' | b'[') {
                out.push(b[i + 1]);
                u16 += 1;
                i += 2;
                continue;
            }
            if !matches!(c, b'_' | b'*' | b'`' | b'[') {
                u16 += utf16_units(c);
                out.push(c);
                i += 1;
                continue;
            }
            let begin = i;
            let end_char = if c == b'[' { b']' } else { c };
            let mut is_pre = false;
            let mut language = String::new();
            i += 1;
            if c == b'`' && at(i) == b'`' && at(i + 1) == b'`' {
                i += 2;
                is_pre = true;
                let mut end = i;
                while !is_space(at(end)) && at(end) != b'`' {
                    end += 1;
                }
                if i != end && end < b.len() && at(end) != b'`' {
                    language = String::from_utf8_lossy(&b[i..end]).into_owned();
                    i = end;
                }
                if at(i) == b'\n' || at(i) == b'\r' {
                    if (at(i + 1) == b'\n' || at(i + 1) == b'\r') && at(i) != at(i + 1) {
                        i += 2;
                    } else {
                        i += 1;
                    }
                }
            }
            let offset = u16;
            while i < b.len()
                && (b[i] != end_char || (is_pre && !(at(i + 1) == b'`' && at(i + 2) == b'`')))
            {
                u16 += utf16_units(b[i]);
                out.push(b[i]);
                i += 1;
            }
            if i >= b.len() {
                return Err(format!(
                    "Can't find end of the entity starting at byte offset {begin}"
                ));
            }
            if offset != u16 {
                let length = u16 - offset;
                match c {
                    b'_' => entities.push(entity("italic", offset, length)),
                    b'*' => entities.push(entity("bold", offset, length)),
                    b'[' => {
                        let url = if at(i + 1) != b'(' {
                            String::from_utf8_lossy(&b[begin + 1..i]).into_owned()
                        } else {
                            i += 2;
                            let start = i;
                            while i < b.len() && b[i] != b')' {
                                i += 1;
                            }
                            String::from_utf8_lossy(&b[start..i.min(b.len())]).into_owned()
                        };
                        if let Some(e) = link_entity(&url, offset, length) {
                            entities.push(e);
                        }
                    }
                    _ if is_pre => {
                        let mut e = entity("pre", offset, length);
                        if !language.is_empty() {
                            e["language"] = json!(language);
                        }
                        entities.push(e);
                    }
                    _ => entities.push(entity("code", offset, length)),
                }
            }
            if is_pre {
                i += 2;
            }
            i += 1;
        }
        Ok((finish(out), sorted(entities)))
    }

    /// `&lt;` `&gt;` `&amp;` `&quot;` and numeric references (the `;` is optional); other
    /// `&...` stay as they are.
    fn decode_entity(b: &[u8], pos: &mut usize) -> Result<Option<char>, String> {
        let at = |i: usize| b.get(i).copied().unwrap_or(0);
        let mut end = *pos + 1;
        let code: u32;
        if at(end) == b'#' {
            end += 1;
            let mut v: u32 = 0;
            let hex = at(end) == b'x';
            if hex {
                end += 1;
            }
            let start = end;
            while (hex && at(end).is_ascii_hexdigit()) || (!hex && at(end).is_ascii_digit()) {
                v = v * if hex { 16 } else { 10 } + (at(end) as char).to_digit(16).unwrap_or(0);
                end += 1;
                if v >= 0x10ffff {
                    return Ok(None);
                }
            }
            if end == start || v == 0 || end - *pos >= 10 {
                return Ok(None);
            }
            code = v;
        } else {
            while at(end).is_ascii_alphabetic() {
                end += 1;
            }
            code = match &b[*pos + 1..end] {
                b"lt" => '<' as u32,
                b"gt" => '>' as u32,
                b"amp" => '&' as u32,
                b"quot" => '"' as u32,
                _ => return Ok(None),
            };
        }
        let Some(ch) = char::from_u32(code) else {
            return Err("Text contains invalid Unicode characters after decoding HTML entities, check for unmatched surrogate code units".into());
        };
        *pos = if at(end) == b';' { end + 1 } else { end };
        Ok(Some(ch))
    }

    const TAGS: &[&str] = &[
        "a",
        "b",
        "strong",
        "i",
        "em",
        "s",
        "strike",
        "del",
        "u",
        "ins",
        "tg-spoiler",
        "tg-emoji",
        "span",
        "pre",
        "code",
        "blockquote",
    ];

    /// `parse_mode: HTML`.
    pub fn html(text: &str) -> Parsed {
        struct Open {
            tag: String,
            arg: String,
            offset: i64,
            out_start: usize,
        }
        let b = text.as_bytes();
        let at = |i: usize| b.get(i).copied().unwrap_or(0);
        let mut out: Vec<u8> = Vec::with_capacity(b.len());
        let mut u16 = 0i64;
        let mut stack: Vec<Open> = Vec::new();
        let mut entities: Vec<Value> = Vec::new();
        let mut i = 0;
        while i < b.len() {
            let c = b[i];
            if c == b'&' {
                let mut pos = i;
                if let Some(ch) = decode_entity(b, &mut pos)? {
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                    u16 += ch.len_utf16() as i64;
                    i = pos;
                    continue;
                }
            }
            if c != b'<' {
                u16 += utf16_units(c);
                out.push(c);
                i += 1;
                continue;
            }
            let begin = i;
            i += 1;
            if at(i) != b'/' {
                while !is_space(at(i)) && at(i) != b'>' {
                    i += 1;
                }
                if at(i) == 0 {
                    return Err(format!("Unclosed start tag at byte offset {begin}"));
                }
                let tag = String::from_utf8_lossy(&b[begin + 1..i]).to_ascii_lowercase();
                if !TAGS.contains(&tag.as_str()) {
                    return Err(format!(
                        "Unsupported start tag \"{tag}\" at byte offset {begin}"
                    ));
                }
                let mut arg = String::new();
                let mut expandable = false;
                while at(i) != b'>' {
                    while at(i) != 0 && is_space(at(i)) {
                        i += 1;
                    }
                    if at(i) == b'>' {
                        break;
                    }
                    let name_start = i;
                    while !is_space(at(i)) && at(i) != b'=' && at(i) != b'>' {
                        i += 1;
                    }
                    let name = String::from_utf8_lossy(&b[name_start..i]).to_ascii_lowercase();
                    if name.is_empty() {
                        return Err(format!(
                            "Empty attribute name in the tag \"{tag}\" at byte offset {begin}"
                        ));
                    }
                    while at(i) != 0 && is_space(at(i)) {
                        i += 1;
                    }
                    if at(i) != b'=' {
                        if at(i) == 0 {
                            return Err(format!("Unclosed start tag at byte offset {begin}"));
                        }
                        if tag == "blockquote" && name == "expandable" {
                            expandable = true;
                        }
                        continue;
                    }
                    i += 1;
                    while at(i) != 0 && is_space(at(i)) {
                        i += 1;
                    }
                    if at(i) == 0 {
                        return Err(format!(
                            "Unclosed start tag \"{tag}\" at byte offset {begin}"
                        ));
                    }
                    let value = if at(i) != b'\'' && at(i) != b'"' {
                        let start = i;
                        while at(i).is_ascii_alphanumeric() || at(i) == b'.' || at(i) == b'-' {
                            i += 1;
                        }
                        if !is_space(at(i)) && at(i) != b'>' {
                            return Err(format!(
                                "Unexpected end of name token at byte offset {start}"
                            ));
                        }
                        String::from_utf8_lossy(&b[start..i]).to_ascii_lowercase()
                    } else {
                        let quote = at(i);
                        i += 1;
                        let mut v: Vec<u8> = Vec::new();
                        while at(i) != quote && at(i) != 0 {
                            if at(i) == b'&' {
                                let mut pos = i;
                                if let Some(ch) = decode_entity(b, &mut pos)? {
                                    let mut buf = [0u8; 4];
                                    v.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                                    i = pos;
                                    continue;
                                }
                            }
                            v.push(at(i));
                            i += 1;
                        }
                        if at(i) == quote {
                            i += 1;
                        }
                        String::from_utf8_lossy(&v).into_owned()
                    };
                    if at(i) == 0 {
                        return Err(format!("Unclosed start tag at byte offset {begin}"));
                    }
                    match (tag.as_str(), name.as_str()) {
                        ("a", "href") | ("tg-emoji", "emoji-id") => arg = value,
                        ("code", "class") if value.starts_with("language-") => {
                            arg = value["language-".len()..].to_string()
                        }
                        ("span", "class") if value.starts_with("tg-") => {
                            arg = value["tg-".len()..].to_string()
                        }
                        _ => {}
                    }
                }
                if tag == "span" && arg != "spoiler" {
                    return Err(format!(
                        "Tag \"span\" must have class \"tg-spoiler\" at byte offset {begin}"
                    ));
                }
                if tag == "blockquote" && expandable {
                    arg = "expandable".into();
                }
                stack.push(Open {
                    tag,
                    arg,
                    offset: u16,
                    out_start: out.len(),
                });
                i += 1;
            } else {
                if stack.is_empty() {
                    return Err(format!("Unexpected end tag at byte offset {begin}"));
                }
                i += 1;
                while !is_space(at(i)) && at(i) != b'>' {
                    i += 1;
                }
                let end_tag = String::from_utf8_lossy(&b[begin + 2..i]).to_ascii_lowercase();
                while is_space(at(i)) && at(i) != 0 {
                    i += 1;
                }
                if at(i) != b'>' {
                    return Err(format!("Unclosed end tag at byte offset {begin}"));
                }
                let Some(open) = stack.pop() else {
                    return Err(format!("Unexpected end tag at byte offset {begin}"));
                };
                if !end_tag.is_empty() && end_tag != open.tag {
                    return Err(format!(
                        "Unmatched end tag at byte offset {begin}, expected \"</{}>\", found \"</{end_tag}>\"",
                        open.tag
                    ));
                }
                let length = u16 - open.offset;
                if length > 0 {
                    let made = match open.tag.as_str() {
                        "b" | "strong" => Some(entity("bold", open.offset, length)),
                        "i" | "em" => Some(entity("italic", open.offset, length)),
                        "u" | "ins" => Some(entity("underline", open.offset, length)),
                        "s" | "strike" | "del" => {
                            Some(entity("strikethrough", open.offset, length))
                        }
                        "tg-spoiler" | "span" => Some(entity("spoiler", open.offset, length)),
                        "code" => {
                            // <pre><code class="language-x">: the pre gets the language.
                            let pre = stack.last().filter(|p| {
                                p.tag == "pre" && p.offset == open.offset && !open.arg.is_empty()
                            });
                            match pre {
                                Some(_) => {
                                    if let Some(p) = stack.last_mut() {
                                        p.arg = open.arg.clone();
                                    }
                                    None
                                }
                                None => Some(entity("code", open.offset, length)),
                            }
                        }
                        "pre" => {
                            let mut e = entity("pre", open.offset, length);
                            if !open.arg.is_empty() {
                                e["language"] = json!(open.arg);
                            }
                            Some(e)
                        }
                        "blockquote" if open.arg == "expandable" => {
                            Some(entity("expandable_blockquote", open.offset, length))
                        }
                        "blockquote" => Some(entity("blockquote", open.offset, length)),
                        "tg-emoji" => Some(json!({"type": "custom_emoji", "offset": open.offset,
                            "length": length, "custom_emoji_id": open.arg})),
                        _ => {
                            let url = if open.arg.is_empty() {
                                String::from_utf8_lossy(&out[open.out_start..]).into_owned()
                            } else {
                                open.arg.clone()
                            };
                            link_entity(&url, open.offset, length)
                        }
                    };
                    entities.extend(made);
                }
                i += 1;
            }
        }
        if let Some(open) = stack.last() {
            return Err(format!(
                "Can't find end tag corresponding to start tag \"{}\"",
                open.tag
            ));
        }
        Ok((finish(out), sorted(entities)))
    }
}

/// The text fields of a `multipart/form-data` body (RFC 7578); file parts are skipped.
fn multipart_fields(body: &[u8], boundary: &str) -> Map<String, Value> {
    let text = String::from_utf8_lossy(body);
    let delimiter = format!("--{boundary}");
    let mut fields = Map::new();
    for part in text.split(delimiter.as_str()).skip(1) {
        if part.starts_with("--") {
            break;
        }
        let Some((head, value)) = part.split_once("\r\n\r\n") else {
            continue;
        };
        let disposition = head
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("content-disposition:"))
            .unwrap_or_default();
        if disposition.contains("filename=") {
            continue;
        }
        let name = disposition
            .split(';')
            .filter_map(|p| p.trim().strip_prefix("name="))
            .next()
            .map(|n| n.trim_matches('"').to_string());
        if let Some(name) = name {
            let value = value.strip_suffix("\r\n").unwrap_or(value);
            fields.insert(name, Value::String(value.to_string()));
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    const TOKEN: &str = "123456789:AAE-test_token";

    struct Answer {
        status: u16,
        body: Value,
        retry_after: Option<String>,
    }

    async fn answer(
        mut res: awc::ClientResponse<
            impl futures_util::Stream<Item = Result<web::Bytes, awc::error::PayloadError>> + Unpin,
        >,
    ) -> Answer {
        let retry_after = res
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let ct = res
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        assert!(ct.starts_with("application/json"), "content-type {ct}");
        let body: Value = res.json().await.expect("a JSON body");
        Answer {
            status: res.status().as_u16(),
            body,
            retry_after,
        }
    }

    fn client() -> awc::Client {
        awc::Client::builder()
            .timeout(Duration::from_secs(90))
            .finish()
    }

    /// POST JSON, as teloxide does.
    async fn call(url: &str, token: &str, method: &str, body: Value) -> Answer {
        let res = client()
            .post(format!("{url}/bot{token}/{method}"))
            .send_json(&body)
            .await
            .expect("request");
        answer(res).await
    }

    fn alice() -> UserSpec {
        UserSpec::new(5001, "Alice").username("alice")
    }

    #[actix_rt::test]
    async fn token_check_get_me_and_unknown_method() {
        let api = TelegramBotApi::start(TOKEN);
        let a = call(&api.url, "123456789:wrong", "getMe", json!({})).await;
        assert_eq!(a.status, 401);
        assert_eq!(
            a.body,
            json!({"ok": false, "error_code": 401, "description": "Unauthorized"})
        );
        let a = call(&api.url, "not-a-token", "getMe", json!({})).await;
        assert_eq!(a.status, 401);
        assert_eq!(
            a.body["description"],
            "Unauthorized: invalid token specified"
        );

        // Method names are case-insensitive; teloxide sends `GetMe`.
        for method in ["getMe", "GetMe", "getme"] {
            let a = call(&api.url, TOKEN, method, json!({})).await;
            assert_eq!(a.status, 200);
            assert_eq!(a.body["ok"], true);
            let me = &a.body["result"];
            assert_eq!(me["id"], 123456789);
            assert_eq!(me["is_bot"], true);
            assert_eq!(me["first_name"], "Loop Test Bot");
            assert_eq!(me["username"], "loop_test_bot");
            assert_eq!(me["can_join_groups"], true);
            assert_eq!(me["has_main_web_app"], false);
        }

        let a = call(&api.url, TOKEN, "sendTelepathy", json!({})).await;
        assert_eq!(a.status, 404);
        assert_eq!(
            a.body,
            json!({"ok": false, "error_code": 404, "description": "Not Found"})
        );
        let res = client()
            .get(format!("{}/nothing", api.url))
            .send()
            .await
            .unwrap();
        assert_eq!(answer(res).await.status, 404);
        assert_eq!(api.calls("getme").len(), 3);
        assert_eq!(api.calls("SENDTELEPATHY").len(), 1);
    }

    #[actix_rt::test]
    async fn long_poll_answers_as_soon_as_a_message_is_pushed() {
        let api = TelegramBotApi::start(TOKEN);
        let url = api.url.clone();
        let poll = actix_rt::spawn(async move {
            let started = Instant::now();
            let a = call(
                &url,
                TOKEN,
                "GetUpdates",
                json!({"timeout": 30, "allowed_updates": ["message"]}),
            )
            .await;
            (a, started.elapsed())
        });
        api.wait_until_polling(Duration::from_secs(5)).await;
        let id = api.push_message(ChatSpec::Private, alice(), "hello there");
        assert_eq!(id, FIRST_UPDATE_ID);
        let (a, took) = poll.await.unwrap();
        assert!(took < Duration::from_secs(5), "answered after {took:?}");
        assert_eq!(a.status, 200);
        let updates = a.body["result"].as_array().unwrap();
        assert_eq!(updates.len(), 1);
        let u = &updates[0];
        assert_eq!(u["update_id"], id);
        assert_eq!(u["message"]["message_id"], 1);
        assert_eq!(u["message"]["text"], "hello there");
        assert_eq!(
            u["message"]["from"],
            json!({"id": 5001, "is_bot": false, "first_name": "Alice", "username": "alice"})
        );
        assert_eq!(
            u["message"]["chat"],
            json!({"id": 5001, "first_name": "Alice", "username": "alice", "type": "private"})
        );
        assert!(u["message"]["date"].as_i64().unwrap() > 1_600_000_000);
        assert!(!api.is_polling());

        // Nothing new: the long poll answers an empty list when its timeout runs out.
        let started = Instant::now();
        let a = call(
            &api.url,
            TOKEN,
            "getUpdates",
            json!({"offset": id + 1, "timeout": 1}),
        )
        .await;
        let took = started.elapsed();
        assert_eq!(a.body, json!({"ok": true, "result": []}));
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(5),
            "{took:?}"
        );
        assert_eq!(api.get_updates_offsets(), vec![None, Some(id + 1)]);
        assert!(api.pending_updates().is_empty());
    }

    #[actix_rt::test]
    async fn offsets_confirm_updates_and_negative_offsets_count_from_the_end() {
        let api = TelegramBotApi::start(TOKEN);
        let group = ChatSpec::group(-4001, "Team");
        let ids: Vec<i64> = (1..=3)
            .map(|n| api.push_message(group.clone(), alice(), &format!("m{n}")))
            .collect();
        assert_eq!(
            ids,
            vec![FIRST_UPDATE_ID, FIRST_UPDATE_ID + 1, FIRST_UPDATE_ID + 2]
        );
        let get = |body: Value| {
            let url = api.url.clone();
            async move {
                let a = call(&url, TOKEN, "getUpdates", body).await;
                assert_eq!(a.status, 200, "{}", a.body);
                a.body["result"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|u| u["update_id"].as_i64().unwrap())
                    .collect::<Vec<_>>()
            }
        };
        // Without an offset nothing is confirmed.
        assert_eq!(get(json!({})).await, ids);
        assert_eq!(get(json!({})).await, ids);
        assert_eq!(get(json!({"limit": 1})).await, ids[..1]);
        // An offset confirms everything below it.
        assert_eq!(get(json!({"offset": ids[1]})).await, ids[1..]);
        assert_eq!(get(json!({})).await, ids[1..]);
        // -1: the last update only; the ones before it are forgotten.
        assert_eq!(get(json!({"offset": -1})).await, ids[2..]);
        assert_eq!(api.pending_updates(), ids[2..]);
        assert_eq!(get(json!({"offset": ids[2] + 1})).await, Vec::<i64>::new());
        assert!(api.pending_updates().is_empty());
        assert_eq!(
            api.get_updates_offsets(),
            vec![
                None,
                None,
                None,
                Some(ids[1]),
                None,
                Some(-1),
                Some(ids[2] + 1)
            ]
        );
        // A form-encoded POST and a GET with a query string work too.
        let id4 = api.push_message(group.clone(), alice(), "m4");
        let res = client()
            .post(format!("{}/bot{TOKEN}/getUpdates", api.url))
            .send_form(&[("offset", id4.to_string())])
            .await
            .unwrap();
        assert_eq!(answer(res).await.body["result"][0]["update_id"], id4);
        let res = client()
            .get(format!("{}/bot{TOKEN}/getUpdates?offset={}", api.url, id4))
            .send()
            .await
            .unwrap();
        let a = answer(res).await;
        assert_eq!(
            a.body["result"][0]["message"]["chat"],
            json!({"id": -4001, "title": "Team", "type": "group"})
        );
    }

    #[actix_rt::test]
    async fn a_second_long_poll_ends_the_first_with_409_and_webhooks_block_polling() {
        let api = TelegramBotApi::start(TOKEN);
        let url = api.url.clone();
        let first = actix_rt::spawn(async move {
            let started = Instant::now();
            (
                call(&url, TOKEN, "getUpdates", json!({"timeout": 30})).await,
                started.elapsed(),
            )
        });
        api.wait_until_polling(Duration::from_secs(5)).await;
        let second = call(&api.url, TOKEN, "getUpdates", json!({"timeout": 1})).await;
        let (a, took) = first.await.unwrap();
        assert!(took < Duration::from_secs(5), "{took:?}");
        assert_eq!(a.status, 409);
        assert_eq!(
            a.body,
            json!({"ok": false, "error_code": 409,
                "description": "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"})
        );
        assert_eq!(second.body, json!({"ok": true, "result": []}));

        api.set_conflict(true);
        let a = call(&api.url, TOKEN, "getUpdates", json!({"timeout": 5})).await;
        assert_eq!(a.status, 409);
        assert_eq!(a.body["description"], CONFLICT_OTHER_GET_UPDATES);
        api.set_conflict(false);

        // setWebhook ends a waiting long poll; getUpdates is refused while it is set.
        let url = api.url.clone();
        let waiting = actix_rt::spawn(async move {
            call(&url, TOKEN, "getUpdates", json!({"timeout": 30})).await
        });
        api.wait_until_polling(Duration::from_secs(5)).await;
        let a = call(
            &api.url,
            TOKEN,
            "setWebhook",
            json!({"url": "https://example.org/hook", "secret_token": "s3cret"}),
        )
        .await;
        assert_eq!(
            a.body,
            json!({"ok": true, "result": true, "description": "Webhook was set"})
        );
        let a = waiting.await.unwrap();
        assert_eq!(
            (a.status, a.body["description"].as_str()),
            (409, Some(CONFLICT_SET_WEBHOOK))
        );
        assert_eq!(
            api.webhook().unwrap().secret_token.as_deref(),
            Some("s3cret")
        );
        let a = call(&api.url, TOKEN, "getUpdates", json!({})).await;
        assert_eq!(a.status, 409);
        assert_eq!(
            a.body["description"],
            "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first"
        );
        let a = call(
            &api.url,
            TOKEN,
            "deleteWebhook",
            json!({"drop_pending_updates": true}),
        )
        .await;
        assert_eq!(
            a.body,
            json!({"ok": true, "result": true, "description": "Webhook was deleted"})
        );
        let a = call(&api.url, TOKEN, "deleteWebhook", json!({})).await;
        assert_eq!(a.body["description"], "Webhook is already deleted");
        let a = call(&api.url, TOKEN, "getUpdates", json!({})).await;
        assert_eq!(a.body, json!({"ok": true, "result": []}));
    }

    #[actix_rt::test]
    async fn flood_control_answers_429_with_retry_after() {
        let api = TelegramBotApi::start(TOKEN);
        api.add_chat(ChatSpec::Private, &alice());
        api.rate_limit_next(1, 7);
        let send = json!({"chat_id": 5001, "text": "hi"});
        let a = call(&api.url, TOKEN, "sendMessage", send.clone()).await;
        assert_eq!(a.status, 429);
        assert_eq!(
            a.body,
            json!({"ok": false, "error_code": 429, "description": "Too Many Requests: retry after 7",
                "parameters": {"retry_after": 7}})
        );
        assert_eq!(a.retry_after.as_deref(), Some("7"));
        assert_eq!(
            call(&api.url, TOKEN, "sendMessage", send.clone())
                .await
                .status,
            200
        );
        api.set_rate_limit(Some(3));
        let a = call(&api.url, TOKEN, "sendMessage", send.clone()).await;
        assert_eq!(
            (a.status, a.body["parameters"]["retry_after"].as_i64()),
            (429, Some(3))
        );
        api.set_rate_limit(None);
        assert_eq!(call(&api.url, TOKEN, "sendMessage", send).await.status, 200);
        assert_eq!(api.sent().len(), 2);
        assert_eq!(api.calls("sendMessage").len(), 4);
    }

    #[actix_rt::test]
    async fn send_message_records_replies_and_keyboards() {
        let api = TelegramBotApi::start(TOKEN);
        let a = call(
            &api.url,
            TOKEN,
            "sendMessage",
            json!({"chat_id": 5001, "text": "hi"}),
        )
        .await;
        assert_eq!(
            (a.status, a.body["description"].as_str()),
            (400, Some("Bad Request: chat not found"))
        );

        let group = ChatSpec::group(-4001, "Team");
        let pushed = api.push(Inbound::new(
            group.clone(),
            alice(),
            "@loop_test_bot what's up?",
        ));
        let update = api.update(pushed.update_id).unwrap();
        assert_eq!(
            update["message"]["entities"],
            json!([{"type": "mention", "offset": 0, "length": 14}])
        );

        let keyboard = json!({"inline_keyboard": [[
            {"text": "Approve", "callback_data": "approve:1"},
            {"text": "Deny", "callback_data": "deny:1"}]]});
        let waiter = {
            let api = api.clone();
            actix_rt::spawn(async move { api.wait_for_sent(1, Duration::from_secs(10)).await })
        };
        let a = call(
            &api.url,
            TOKEN,
            "sendMessage",
            json!({
                "chat_id": -4001, "text": "All good.",
                "reply_parameters": {"message_id": pushed.message_id},
                "reply_markup": keyboard,
            }),
        )
        .await;
        assert_eq!(a.status, 200, "{}", a.body);
        let m = &a.body["result"];
        assert_eq!(m["message_id"], 2);
        assert_eq!(m["from"]["id"], 123456789);
        assert_eq!(m["from"]["is_bot"], true);
        assert_eq!(
            m["chat"],
            json!({"id": -4001, "title": "Team", "type": "group"})
        );
        assert_eq!(m["text"], "All good.");
        assert_eq!(m["reply_to_message"]["message_id"], pushed.message_id);
        assert_eq!(m["reply_markup"], keyboard);
        let sent = waiter.await.unwrap();
        assert_eq!(
            sent,
            vec![SentMessage {
                chat_id: "-4001".into(),
                message_id: 2,
                text: "All good.".into(),
                plain_text: "All good.".into(),
                parse_mode: None,
                reply_to: Some(pushed.message_id),
                reply_markup: Some(keyboard.clone()),
            }]
        );

        // Replying in a group thread: the user answers the bot's message.
        let reply = api.push(Inbound::new(group.clone(), alice(), "thanks").reply_to(2));
        let u = api.update(reply.update_id).unwrap();
        assert_eq!(
            u["message"]["reply_to_message"]["from"]["username"],
            "loop_test_bot"
        );
        assert!(u["message"]["reply_to_message"]
            .get("reply_to_message")
            .is_none());

        let a = call(
            &api.url,
            TOKEN,
            "sendMessage",
            json!({"chat_id": "-4001", "text": "x", "reply_to_message_id": 999}),
        )
        .await;
        assert_eq!(
            a.body["description"],
            "Bad Request: message to be replied not found"
        );
        let a = call(
            &api.url,
            TOKEN,
            "sendMessage",
            json!({"chat_id": "-4001", "text": "x",
            "reply_parameters": {"message_id": 999, "allow_sending_without_reply": true}}),
        )
        .await;
        assert_eq!(a.status, 200);
        let a = call(
            &api.url,
            TOKEN,
            "sendMessage",
            json!({"chat_id": -4001, "text": "x",
            "reply_markup": {"inline_keyboard": [[{"text": "no action"}]]}}),
        )
        .await;
        assert_eq!(a.status, 400);

        // A form-encoded request (JSON-typed fields as JSON strings).
        let res = client()
            .post(format!("{}/bot{TOKEN}/sendMessage", api.url))
            .send_form(&[
                ("chat_id", "-4001"),
                ("text", "form"),
                (
                    "reply_markup",
                    r#"{"inline_keyboard":[[{"text":"Go","url":"https://example.org"}]]}"#,
                ),
            ])
            .await
            .unwrap();
        let a = answer(res).await;
        assert_eq!(a.status, 200, "{}", a.body);
        let last = api.sent().pop().unwrap();
        assert_eq!(last.text, "form");
        assert_eq!(
            last.reply_markup.unwrap()["inline_keyboard"][0][0]["url"],
            "https://example.org"
        );

        api.block_user(5001, true);
        api.add_chat(ChatSpec::Private, &alice());
        let a = call(
            &api.url,
            TOKEN,
            "sendMessage",
            json!({"chat_id": 5001, "text": "hi"}),
        )
        .await;
        assert_eq!(
            (a.status, a.body["description"].as_str()),
            (403, Some("Forbidden: bot was blocked by the user"))
        );
    }

    #[actix_rt::test]
    async fn markup_is_checked_like_the_server_does() {
        let api = TelegramBotApi::start(TOKEN);
        api.add_chat(ChatSpec::Private, &alice());
        let send = |text: &str, mode: Option<&str>| {
            let mut body = json!({"chat_id": 5001, "text": text});
            if let Some(m) = mode {
                body["parse_mode"] = json!(m);
            }
            let url = api.url.clone();
            async move { call(&url, TOKEN, "sendMessage", body).await }
        };
        let a = send("Version 1.0", Some("MarkdownV2")).await;
        assert_eq!(a.status, 400);
        assert_eq!(
            a.body,
            json!({"ok": false, "error_code": 400, "description":
                "Bad Request: can't parse entities: Character '.' is reserved and must be escaped with the preceding '\\'"})
        );
        let a = send("*bold* and \\_under\\_", Some("MarkdownV2")).await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert_eq!(a.body["result"]["text"], "bold and _under_");
        assert_eq!(
            a.body["result"]["entities"],
            json!([{"type": "bold", "offset": 0, "length": 4}])
        );
        let a = send("<b>bold", Some("HTML")).await;
        assert_eq!(
            a.body["description"],
            "Bad Request: can't parse entities: Can't find end tag corresponding to start tag \"b\""
        );
        let a = send("1 < 2", Some("HTML")).await;
        assert_eq!(
            a.body["description"],
            "Bad Request: can't parse entities: Unsupported start tag \"\" at byte offset 2"
        );
        let a = send("<b>1 &lt; 2</b> & <i>ok</i>", Some("HTML")).await;
        assert_eq!(a.body["result"]["text"], "1 < 2 & ok");
        let a = send("*open", Some("Markdown")).await;
        assert_eq!(
            a.body["description"],
            "Bad Request: can't parse entities: Can't find end of the entity starting at byte offset 0"
        );
        let a = send("hi", Some("Markdown3")).await;
        assert_eq!(a.body["description"], "Bad Request: unsupported parse_mode");

        api.set_reject_markup(true);
        let a = send("*fine*", Some("MarkdownV2")).await;
        assert_eq!(a.status, 400);
        assert!(a.body["description"]
            .as_str()
            .unwrap()
            .starts_with("Bad Request: can't parse entities: "));
        assert_eq!(send("*fine*", None).await.status, 200);
        api.set_reject_markup(false);
        let sent = api.sent();
        assert_eq!(sent[0].parse_mode.as_deref(), Some("MarkdownV2"));
        assert_eq!(sent[0].text, "*bold* and \\_under\\_");
        assert_eq!(sent[0].plain_text, "bold and _under_");
    }

    #[actix_rt::test]
    async fn text_is_1_to_4096_characters_after_parsing() {
        let api = TelegramBotApi::start(TOKEN);
        api.add_chat(ChatSpec::Private, &alice());
        let send = |text: String, mode: Option<&str>| {
            let mut body = json!({"chat_id": 5001, "text": text});
            if let Some(m) = mode {
                body["parse_mode"] = json!(m);
            }
            let url = api.url.clone();
            async move { call(&url, TOKEN, "sendMessage", body).await }
        };
        assert_eq!(send("é".repeat(4096), None).await.status, 200);
        let a = send("é".repeat(4097), None).await;
        assert_eq!(
            a.body,
            json!({"ok": false, "error_code": 400, "description": "Bad Request: message is too long"})
        );
        // Markup does not count.
        assert_eq!(
            send(format!("*{}*", "a".repeat(4096)), Some("MarkdownV2"))
                .await
                .status,
            200
        );
        for empty in ["", "   \n "] {
            let a = send(empty.to_string(), None).await;
            assert_eq!(a.body["description"], "Bad Request: message text is empty");
        }
        let a = send("**".to_string(), Some("MarkdownV2")).await;
        assert_eq!(a.body["description"], "Bad Request: message text is empty");
        let a = send("  padded  ".to_string(), None).await;
        assert_eq!(a.body["result"]["text"], "padded");
    }

    #[actix_rt::test]
    async fn callback_queries_edits_and_chat_actions() {
        let api = TelegramBotApi::start(TOKEN);
        let pushed = api.push(Inbound::new(ChatSpec::Private, alice(), "/start"));
        let keyboard =
            json!({"inline_keyboard": [[{"text": "Approve", "callback_data": "approve:7"}]]});
        let a = call(
            &api.url,
            TOKEN,
            "sendMessage",
            json!({"chat_id": 5001, "text": "Run the tool?", "reply_markup": keyboard}),
        )
        .await;
        let mid = a.body["result"]["message_id"].as_i64().unwrap();
        assert_eq!(mid, pushed.message_id + 1);

        let uid = api.push_callback_query(alice(), ChatSpec::Private, mid, "approve:7");
        let a = call(&api.url, TOKEN, "getUpdates", json!({"offset": uid})).await;
        let q = &a.body["result"][0]["callback_query"];
        assert_eq!(q["id"], callback_query_id(uid));
        assert_eq!(q["data"], "approve:7");
        assert_eq!(q["from"]["id"], 5001);
        assert_eq!(q["message"]["message_id"], mid);
        assert_eq!(q["message"]["reply_markup"], keyboard);
        assert!(q["chat_instance"].as_str().is_some());

        let a = call(
            &api.url,
            TOKEN,
            "answerCallbackQuery",
            json!({"callback_query_id": callback_query_id(uid), "text": "Approved"}),
        )
        .await;
        assert_eq!(a.body, json!({"ok": true, "result": true}));
        let a = call(
            &api.url,
            TOKEN,
            "answerCallbackQuery",
            json!({"callback_query_id": "42"}),
        )
        .await;
        assert_eq!(a.status, 400);
        assert_eq!(api.calls("answerCallbackQuery")[0]["text"], "Approved");

        let a = call(&api.url, TOKEN, "editMessageText",
            json!({"chat_id": 5001, "message_id": mid, "text": "Approved ✅", "reply_markup": keyboard})).await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert_eq!(a.body["result"]["text"], "Approved ✅");
        assert!(a.body["result"]["edit_date"].is_i64());
        let a = call(&api.url, TOKEN, "editMessageText",
            json!({"chat_id": 5001, "message_id": mid, "text": "Approved ✅", "reply_markup": keyboard})).await;
        assert!(a.body["description"]
            .as_str()
            .unwrap()
            .starts_with("Bad Request: message is not modified"));
        let a = call(
            &api.url,
            TOKEN,
            "editMessageReplyMarkup",
            json!({"chat_id": 5001, "message_id": mid}),
        )
        .await;
        assert_eq!(a.status, 200);
        assert!(a.body["result"].get("reply_markup").is_none());
        assert!(api
            .message(5001, mid)
            .unwrap()
            .get("reply_markup")
            .is_none());
        let a = call(
            &api.url,
            TOKEN,
            "editMessageText",
            json!({"chat_id": 5001, "message_id": pushed.message_id, "text": "mine now"}),
        )
        .await;
        assert_eq!(
            a.body["description"],
            "Bad Request: message can't be edited"
        );
        let a = call(
            &api.url,
            TOKEN,
            "editMessageText",
            json!({"chat_id": 5001, "message_id": 999, "text": "x"}),
        )
        .await;
        assert_eq!(
            a.body["description"],
            "Bad Request: message to edit not found"
        );

        let a = call(
            &api.url,
            TOKEN,
            "sendChatAction",
            json!({"chat_id": 5001, "action": "typing"}),
        )
        .await;
        assert_eq!(a.body, json!({"ok": true, "result": true}));
        let a = call(
            &api.url,
            TOKEN,
            "sendChatAction",
            json!({"chat_id": 5001, "action": "dancing"}),
        )
        .await;
        assert_eq!(
            a.body["description"],
            "Bad Request: wrong parameter action in request"
        );
        assert_eq!(
            api.chat_actions(),
            vec![ChatAction {
                chat_id: "5001".into(),
                action: "typing".into()
            }]
        );
        assert_eq!(
            api.wait_for_calls("editMessageText", 4, Duration::from_secs(1))
                .await
                .len(),
            4
        );
    }

    #[test]
    fn entities_are_detected_in_utf16_units() {
        assert_eq!(
            detect_entities("🏟 @loop_test_bot /start@loop_test_bot see https://example.org/x."),
            vec![
                json!({"type": "mention", "offset": 3, "length": 14}),
                json!({"type": "bot_command", "offset": 18, "length": 20}),
                json!({"type": "url", "offset": 43, "length": 21}),
            ]
        );
        assert!(detect_entities("mail a@b.c or x/y").is_empty());
    }

    /// Vectors from tdlib's own tests of the server's parsers.
    #[test]
    fn markdown_v2_matches_the_server() {
        let err = |t: &str| markup::markdown_v2(t).unwrap_err();
        for c in "]()>#+-=|{}.!".chars() {
            let text = if c == '>' {
                format!("a{c}")
            } else {
                c.to_string()
            };
            assert_eq!(
                err(&text),
                format!("Character '{c}' is reserved and must be escaped with the preceding '\\'")
            );
            assert_eq!(
                markup::markdown_v2(&format!("\\{c}")).unwrap().0,
                c.to_string()
            );
        }
        assert_eq!(
            err("🏟 🏟_abacaba"),
            "Can't find end of Italic entity at byte offset 9"
        );
        assert_eq!(
            err("🏟 🏟_abac * asd "),
            "Can't find end of Bold entity at byte offset 15"
        );
        assert_eq!(
            err("🏟 🏟_abac * asd _"),
            "Can't find end of Italic entity at byte offset 21"
        );
        assert_eq!(
            err("🏟 🏟`"),
            "Can't find end of Code entity at byte offset 9"
        );
        assert_eq!(
            err("🏟 🏟```"),
            "Can't find end of Pre entity at byte offset 9"
        );
        assert_eq!(
            err("🏟 🏟```a"),
            "Can't find end of Pre entity at byte offset 9"
        );
        assert_eq!(
            err("🏟 🏟```a "),
            "Can't find end of PreCode entity at byte offset 9"
        );
        assert_eq!(
            err("🏟 🏟__🏟 🏟_"),
            "Can't find end of Italic entity at byte offset 20"
        );
        assert_eq!(
            err("🏟 🏟_🏟 🏟__"),
            "Can't find end of Underline entity at byte offset 19"
        );
        assert_eq!(
            err("🏟 🏟```🏟 🏟`"),
            "Can't find end of Code entity at byte offset 21"
        );
        assert_eq!(
            err("[telegram\\.org](asd\\)"),
            "Can't find end of a URL at byte offset 16"
        );
        assert_eq!(
            err("🏟 🏟||test\\|"),
            "Can't find end of Spoiler entity at byte offset 9"
        );
        assert_eq!(
            err("🏟 🏟!"),
            "Character '!' is reserved and must be escaped with the preceding '\\'"
        );

        let ok = |t: &str| markup::markdown_v2(t).unwrap();
        assert_eq!(ok("\\\\"), ("\\".to_string(), vec![]));
        assert_eq!(ok("🏟 🏟``").0, "🏟 🏟");
        assert_eq!(
            ok("🏟 🏟_abac \\* asd _"),
            (
                "🏟 🏟abac * asd ".to_string(),
                vec![json!({"type": "italic", "offset": 5, "length": 11})]
            )
        );
        assert_eq!(
            ok("🏟 🏟_🏟 __🏟___").1,
            vec![
                json!({"type": "italic", "offset": 5, "length": 5}),
                json!({"type": "underline", "offset": 8, "length": 2}),
            ]
        );
        assert_eq!(
            ok("`_* *_`__*` `*__"),
            (
                "_* *_ ".to_string(),
                vec![
                    json!({"type": "code", "offset": 0, "length": 5}),
                    json!({"type": "code", "offset": 5, "length": 1}),
                    json!({"type": "bold", "offset": 5, "length": 1}),
                    json!({"type": "underline", "offset": 5, "length": 1}),
                ]
            )
        );
        assert_eq!(
            ok("🏟 🏟```🏟 🏟```"),
            (
                "🏟 🏟 🏟".to_string(),
                vec![json!({"type": "pre", "offset": 5, "length": 3, "language": "🏟"})]
            )
        );
        assert_eq!(
            ok("||test||").1,
            vec![json!({"type": "spoiler", "offset": 0, "length": 4})]
        );
        assert_eq!(
            ok("[telegram\\.org](https://telegram.dog?)"),
            (
                "telegram.org".to_string(),
                vec![
                    json!({"type": "text_link", "offset": 0, "length": 12, "url": "https://telegram.dog/?"})
                ]
            )
        );
        assert_eq!(
            ok("[telegram\\.org]").1,
            vec![
                json!({"type": "text_link", "offset": 0, "length": 12, "url": "http://telegram.org/"})
            ]
        );
        assert_eq!(ok("[ ](as)"), (" ".to_string(), vec![]));
        assert_eq!(
            ok("abc\n> \n> \n>\ndef"),
            (
                "abc\n \n \n\ndef".to_string(),
                vec![json!({"type": "blockquote", "offset": 4, "length": 5})]
            )
        );
        assert_eq!(ok(">"), (String::new(), vec![]));
    }

    /// Vectors from tdlib's own tests of the server's parsers.
    #[test]
    fn html_matches_the_server() {
        let err = |t: &str| markup::html(t).unwrap_err();
        assert_eq!(
            err("🏟 🏟&lt;<abacaba"),
            "Unclosed start tag at byte offset 13"
        );
        assert_eq!(
            err("🏟 🏟&lt;<abac aba>"),
            "Unsupported start tag \"abac\" at byte offset 13"
        );
        assert_eq!(
            err("🏟 🏟&lt;<i   =aba>"),
            "Empty attribute name in the tag \"i\" at byte offset 13"
        );
        assert_eq!(
            err("🏟 🏟&lt;<i    aba>"),
            "Can't find end tag corresponding to start tag \"i\""
        );
        assert_eq!(
            err("🏟 🏟&lt;<i    aba  =  "),
            "Unclosed start tag \"i\" at byte offset 13"
        );
        assert_eq!(
            err("🏟 🏟&lt;<i    aba  =  190azAz-.,"),
            "Unexpected end of name token at byte offset 27"
        );
        assert_eq!(
            err("🏟 🏟&lt;<i    aba  =  \"&lt;&gt;&quot;>"),
            "Unclosed start tag at byte offset 13"
        );
        assert_eq!(err("🏟 🏟&lt;</"), "Unexpected end tag at byte offset 13");
        assert_eq!(
            err("🏟 🏟&lt;<b></b></"),
            "Unexpected end tag at byte offset 20"
        );
        assert_eq!(
            err("🏟 🏟&lt;<i>a</i   "),
            "Unclosed end tag at byte offset 17"
        );
        assert_eq!(
            err("🏟 🏟&lt;<i>a</em   >"),
            "Unmatched end tag at byte offset 17, expected \"</i>\", found \"</em>\""
        );
        assert!(err("&#57311;").starts_with("Text contains invalid Unicode characters"));

        let ok = |t: &str| markup::html(t).unwrap();
        assert_eq!(
            ok("&ge;&lt;&gt;&amp;&quot;&laquo;&raquo;&#12345678;").0,
            "&ge;<>&\"&laquo;&raquo;&#12345678;"
        );
        assert_eq!(
            ok("🏟 🏟<i>🏟 &lt🏟</i>"),
            (
                "🏟 🏟🏟 <🏟".to_string(),
                vec![json!({"type": "italic", "offset": 5, "length": 6})]
            )
        );
        assert_eq!(ok("🏟 🏟&lt;<i>🏟 🏟&lt;</>").0, "🏟 🏟<🏟 🏟<");
        assert_eq!(
            ok("<a href=telegram.org>\t</a>").1,
            vec![
                json!({"type": "text_link", "offset": 0, "length": 1, "url": "http://telegram.org/"})
            ]
        );
        assert_eq!(
            ok("🏟 🏟&lt;<pre><code class=\"language-fift\">🏟 🏟&lt;</></>").1,
            vec![json!({"type": "pre", "offset": 6, "length": 6, "language": "fift"})]
        );
        assert_eq!(
            ok("<span class=\"tg-spoiler\">x</span><blockquote expandable>q</blockquote>").1,
            vec![
                json!({"type": "spoiler", "offset": 0, "length": 1}),
                json!({"type": "expandable_blockquote", "offset": 1, "length": 1}),
            ]
        );
        assert_eq!(
            markup::markdown("[link](https://example.org) *b* _i_ `c`").unwrap(),
            (
                "link b i c".to_string(),
                vec![
                    json!({"type": "text_link", "offset": 0, "length": 4, "url": "https://example.org/"}),
                    json!({"type": "bold", "offset": 5, "length": 1}),
                    json!({"type": "italic", "offset": 7, "length": 1}),
                    json!({"type": "code", "offset": 9, "length": 1}),
                ]
            )
        );
    }
}
