//! `TelegramChannel`: a bot over the Bot API (teloxide), by long polling. The update offset
//! is saved with the messages it covers, before the next `getUpdates` confirms them to
//! Telegram, so a crash neither loses nor repeats an update.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde_json::{json, Value};
use teloxide::payloads::AnswerCallbackQuerySetters;
use teloxide::payloads::{GetUpdatesSetters, SendMessageSetters, SetWebhookSetters};
use teloxide::requests::Requester;
use teloxide::types::{
    AllowedUpdate, CallbackQuery, ChatAction, ChatId, InlineKeyboardButton, InlineKeyboardMarkup,
    Me, Message, MessageId, ParseMode, ReplyParameters, Update, UpdateKind,
};
use teloxide::{ApiError, Bot, RequestError};

use super::config::{GroupMode, TelegramMode, TelegramSettings};
use super::format::{markdown_to_telegram_html, split_message};
use super::{
    report, ApprovalNotice, ChannelManager, ChannelStart, Deliver, DeliverError, Incoming,
    Received, Retire, Status, Typing, WebhookRefusal,
};
use crate::approvals::{ApprovalDesk, Decide};
use crate::events::GatewayEvent;

/// Telegram's limit for one message's text.
const TEXT_LIMIT: usize = 4096;
const BACKOFF_START: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);

pub struct TelegramChannel {
    id: String,
    generation: u64,
    settings: TelegramSettings,
    offset: Option<i32>,
    manager: Addr<ChannelManager>,
    bot: Bot,
    limiter: Arc<DefaultDirectRateLimiter>,
    approvals: Addr<ApprovalDesk>,
    /// Approval requests posted to admin chats: their text and where they are.
    posted: HashMap<String, (String, Vec<(i64, i32)>)>,
    /// Webhook mode: who the bot is (known once registered), and the secret Telegram echoes.
    me: Option<Me>,
    webhook_secret: String,
    backoff: Duration,
    retired: bool,
}

/// An update Telegram posted to the webhook (the raw JSON body).
#[derive(Message)]
#[rtype(result = "Result<(), WebhookRefusal>")]
pub struct WebhookUpdate(pub Vec<u8>);

fn http_client(poll_timeout: u32) -> reqwest::Client {
    // Long polls hold the request for `poll_timeout`: the client must wait longer than that.
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(u64::from(poll_timeout) + 15))
        .tcp_nodelay(true)
        .build()
        .unwrap_or_default()
}

pub(super) fn limiter(per_minute: u32) -> Arc<DefaultDirectRateLimiter> {
    let per_minute = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
    // A burst of a few messages is fine; the rate holds over the minute.
    let burst = NonZeroU32::new(per_minute.get().clamp(1, 5)).unwrap_or(NonZeroU32::MIN);
    Arc::new(RateLimiter::direct(
        Quota::per_minute(per_minute).allow_burst(burst),
    ))
}

impl TelegramChannel {
    pub fn new(start: ChannelStart<TelegramSettings>) -> Self {
        let s = start.settings;
        let url = reqwest::Url::parse(&s.api_base_url)
            .unwrap_or_else(|_| reqwest::Url::parse("https://api.telegram.org").expect("valid"));
        let bot = Bot::with_client(s.bot_token.clone(), http_client(s.poll_timeout_seconds))
            .set_api_url(url);
        let offset = start
            .state
            .as_ref()
            .and_then(|st| st.get("offset"))
            .and_then(Value::as_i64)
            .and_then(|o| i32::try_from(o).ok());
        TelegramChannel {
            id: start.channel_id,
            generation: start.generation,
            limiter: limiter(s.outbound_per_minute),
            settings: s,
            offset,
            manager: start.manager,
            bot,
            approvals: start.approvals,
            posted: HashMap::new(),
            me: None,
            webhook_secret: start.webhook_secret,
            backoff: BACKOFF_START,
            retired: false,
        }
    }
}

impl Actor for TelegramChannel {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if self.retired {
            return;
        }
        if self.settings.mode == TelegramMode::Webhook {
            self.register(ctx);
            return;
        }
        let poller = Poller {
            id: self.id.clone(),
            generation: self.generation,
            bot: self.bot.clone(),
            manager: self.manager.clone(),
            settings: self.settings.clone(),
            approvals: self.approvals.clone(),
        };
        let offset = self.offset;
        ctx.spawn(poller.run(offset).into_actor(self));
    }
}

impl actix::Supervised for TelegramChannel {}

impl TelegramChannel {
    fn status(&self, status: Status, error: Option<String>) {
        report(&self.id, self.generation, &self.manager, status, error);
    }

    /// Webhook mode: learn who the bot is and point Telegram at our webhook, retrying with
    /// backoff until it works.
    fn register(&mut self, ctx: &mut Context<Self>) {
        let bot = self.bot.clone();
        let base = self.settings.public_url.clone().unwrap_or_default();
        let url = format!(
            "{}/webhook/telegram/{}",
            base.trim_end_matches('/'),
            self.id
        );
        let secret = self.webhook_secret.clone();
        let api = self.settings.api_base_url.clone();
        ctx.spawn(
            async move {
                let me = bot.get_me().await?;
                let url = reqwest::Url::parse(&url).map_err(|e| {
                    RequestError::Api(ApiError::Unknown(format!("bad publicUrl: {e}")))
                })?;
                bot.set_webhook(url)
                    .secret_token(secret)
                    // One at a time, so updates are stored in the order Telegram has them.
                    .max_connections(1)
                    .allowed_updates(vec![AllowedUpdate::Message, AllowedUpdate::CallbackQuery])
                    .await?;
                Ok::<_, RequestError>(me)
            }
            .into_actor(self)
            .map(move |registered, act, ctx| match registered {
                Ok(me) => {
                    act.me = Some(me);
                    act.backoff = BACKOFF_START;
                    act.status(Status::Connected, None);
                }
                Err(e) => {
                    act.status(Status::Error, Some(describe(&e, &api)));
                    let wait = match &e {
                        RequestError::RetryAfter(s) => s.duration(),
                        _ => act.backoff,
                    };
                    act.backoff = (act.backoff * 2).min(BACKOFF_MAX);
                    ctx.run_later(wait, |act, ctx| act.register(ctx));
                }
            }),
        );
    }
}

impl Handler<WebhookUpdate> for TelegramChannel {
    type Result = ResponseFuture<Result<(), WebhookRefusal>>;

    fn handle(
        &mut self,
        WebhookUpdate(body): WebhookUpdate,
        _: &mut Context<Self>,
    ) -> Self::Result {
        let Some(me) = self.me.clone().filter(|_| !self.retired) else {
            // Telegram retries: by then the bot knows who it is.
            return Box::pin(async {
                Err(WebhookRefusal::Unavailable(
                    "the channel is starting".into(),
                ))
            });
        };
        let update: Update = match serde_json::from_slice(&body) {
            Ok(u) => u,
            Err(e) => {
                return Box::pin(async move {
                    Err(WebhookRefusal::BadRequest(format!(
                        "not a Telegram update: {e}"
                    )))
                })
            }
        };
        let manager = self.manager.clone();
        let id = self.id.clone();
        let generation = self.generation;
        let settings = self.settings.clone();
        let bot = self.bot.clone();
        let approvals = self.approvals.clone();
        Box::pin(async move {
            let messages = match &update.kind {
                UpdateKind::Message(m) => vec![incoming(m, &me, &settings)],
                UpdateKind::CallbackQuery(q) => {
                    decide(&bot, &approvals, &settings.admin_chat_ids, q).await;
                    return Ok(());
                }
                _ => return Ok(()),
            };
            match manager
                .send(Received {
                    channel_id: id,
                    generation,
                    messages,
                    state: None,
                })
                .await
            {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(WebhookRefusal::Unavailable(e)),
                Err(_) => Err(WebhookRefusal::Unavailable(
                    "the gateway is stopping".into(),
                )),
            }
        })
    }
}

impl Handler<Retire> for TelegramChannel {
    type Result = ();

    fn handle(&mut self, retire: Retire, ctx: &mut Context<Self>) {
        self.retired = true;
        if retire.final_ && self.settings.mode == TelegramMode::Webhook {
            // Deleted or disabled: Telegram should stop calling a URL that now answers 404.
            let bot = self.bot.clone();
            actix_rt::spawn(async move {
                let _ = bot.delete_webhook().await;
            });
        }
        ctx.stop();
    }
}

/// Why a Bot API call failed, in words for the channel's status.
fn describe(e: &RequestError, base: &str) -> String {
    match e {
        RequestError::Api(ApiError::TerminatedByOtherGetUpdates) => {
            "Telegram answered 409 Conflict: another program is polling this bot \
             (stop the other instance, or use a different bot token)"
                .into()
        }
        RequestError::Api(ApiError::CantGetUpdates) => {
            "a webhook is set for this bot, so Telegram refuses polling".into()
        }
        RequestError::Api(ApiError::InvalidToken) => {
            "Telegram refused the bot token (401 Unauthorized): check botToken".into()
        }
        RequestError::Api(ApiError::Unknown(text)) if text.contains("Unauthorized") => {
            "Telegram refused the bot token (401 Unauthorized): check botToken".into()
        }
        RequestError::RetryAfter(s) => format!(
            "rate limited by Telegram (429); retrying in {} s",
            s.duration().as_secs()
        ),
        RequestError::Network(n) => format!("cannot reach the Bot API at {base}: {n}"),
        other => format!("Bot API error: {other}"),
    }
}

struct Poller {
    id: String,
    generation: u64,
    bot: Bot,
    manager: Addr<ChannelManager>,
    settings: TelegramSettings,
    approvals: Addr<ApprovalDesk>,
}

impl Poller {
    fn status(&self, status: Status, error: Option<String>) {
        report(&self.id, self.generation, &self.manager, status, error);
    }

    async fn run(self, mut offset: Option<i32>) {
        let mut backoff = BACKOFF_START;
        let mut me: Option<Me> = None;
        loop {
            let who = match &me {
                Some(m) => m.clone(),
                None => match self.bot.get_me().await {
                    Ok(m) => {
                        // Polling and a webhook exclude each other: polling wins here.
                        let _ = self.bot.delete_webhook().await;
                        me = Some(m.clone());
                        m
                    }
                    Err(e) => {
                        self.status(
                            Status::Error,
                            Some(describe(&e, &self.settings.api_base_url)),
                        );
                        backoff = self.pause(&e, backoff).await;
                        continue;
                    }
                },
            };
            let mut request = self
                .bot
                .get_updates()
                .timeout(self.settings.poll_timeout_seconds)
                .allowed_updates(vec![AllowedUpdate::Message, AllowedUpdate::CallbackQuery]);
            if let Some(o) = offset {
                request = request.offset(o);
            }
            let updates = match request.await {
                Ok(u) => u,
                Err(e) => {
                    self.status(
                        Status::Error,
                        Some(describe(&e, &self.settings.api_base_url)),
                    );
                    if matches!(e, RequestError::Api(ApiError::CantGetUpdates)) {
                        let _ = self.bot.delete_webhook().await;
                    }
                    backoff = self.pause(&e, backoff).await;
                    continue;
                }
            };
            self.status(Status::Connected, None);
            backoff = BACKOFF_START;
            let Some(last) = updates.last().map(|u| u.id.0) else {
                continue;
            };
            let next = i32::try_from(last).unwrap_or(i32::MAX).saturating_add(1);
            let mut messages = Vec::new();
            for u in &updates {
                match &u.kind {
                    UpdateKind::Message(m) => messages.push(incoming(m, &who, &self.settings)),
                    UpdateKind::CallbackQuery(q) => {
                        decide(&self.bot, &self.approvals, &self.settings.admin_chat_ids, q).await
                    }
                    _ => {}
                }
            }
            // Stored (with the offset) before the next poll confirms them to Telegram.
            let stored = self
                .manager
                .send(Received {
                    channel_id: self.id.clone(),
                    generation: self.generation,
                    messages,
                    state: Some(json!({ "offset": next })),
                })
                .await;
            match stored {
                Ok(Ok(())) => offset = Some(next),
                Ok(Err(e)) => {
                    self.status(Status::Error, Some(format!("cannot store messages: {e}")));
                    tokio::time::sleep(BACKOFF_START).await;
                }
                Err(_) => return,
            }
        }
    }

    /// Wait before the next attempt: what Telegram asked for, or an exponential backoff.
    async fn pause(&self, e: &RequestError, backoff: Duration) -> Duration {
        let wait = match e {
            RequestError::RetryAfter(s) => s.duration(),
            _ => backoff,
        };
        tokio::time::sleep(wait).await;
        (backoff * 2).min(BACKOFF_MAX)
    }
}

/// A Telegram message as the manager sees it.
fn incoming(m: &Message, me: &Me, settings: &TelegramSettings) -> Incoming {
    let from = m.from.as_ref();
    let mut sender_ids = Vec::new();
    if let Some(u) = from {
        sender_ids.push(u.id.0.to_string());
        if let Some(name) = &u.username {
            sender_ids.push(format!("@{name}"));
        }
    }
    let bot_name = me.user.username.clone().unwrap_or_default();
    // Usernames are ASCII: lowercasing only ASCII keeps byte offsets of any text intact.
    let mention = format!("@{}", bot_name.to_ascii_lowercase());
    let raw = m.text().or_else(|| m.caption()).unwrap_or_default();
    let private = m.chat.is_private();
    let replied_to_bot = m
        .reply_to_message()
        .and_then(|r| r.from.as_ref())
        .is_some_and(|u| u.id == me.user.id);
    let mentioned = !bot_name.is_empty() && raw.to_ascii_lowercase().contains(&mention);
    let addressed = private || settings.group_mode == GroupMode::All || mentioned || replied_to_bot;
    // The mention is how the person called the bot, not part of the question.
    let text = if mentioned {
        strip_mention(raw, &mention)
    } else {
        raw.to_string()
    };
    Incoming {
        // Message ids count per chat and per bot: the bot is part of the identity.
        external_id: format!("{}:{}:{}", me.user.id.0, m.chat.id.0, m.id.0),
        chat_key: m.chat.id.0.to_string(),
        sender: from.map_or_else(|| m.chat.id.0.to_string(), |u| u.id.0.to_string()),
        sender_name: from.map(|u| u.full_name()),
        sender_ids,
        text,
        meta: Some(json!({
            "messageId": m.id.0,
            "private": private,
        })),
        addressed,
        unsupported: m
            .text()
            .is_none()
            .then(|| "unsupported_message_type".to_string()),
    }
}

fn strip_mention(text: &str, mention_lower: &str) -> String {
    let lower = text.to_ascii_lowercase();
    match lower.find(mention_lower) {
        Some(i) => {
            let mut out = String::with_capacity(text.len());
            out.push_str(&text[..i]);
            out.push_str(&text[i + mention_lower.len()..]);
            out.split_whitespace().collect::<Vec<_>>().join(" ")
        }
        _ => text.to_string(),
    }
}

fn deliver_error(e: RequestError, base: &str) -> DeliverError {
    match e {
        RequestError::RetryAfter(s) => DeliverError::Retry {
            after: s.duration(),
            reason: describe(&RequestError::RetryAfter(s), base),
            sent_parts: 0,
        },
        RequestError::Network(_) | RequestError::Io(_) | RequestError::InvalidJson { .. } => {
            DeliverError::Retry {
                after: Duration::from_secs(2),
                reason: describe(&e, base),
                sent_parts: 0,
            }
        }
        RequestError::Api(ApiError::Unknown(text)) => DeliverError::Retry {
            after: Duration::from_secs(5),
            reason: format!("Bot API error: {text}"),
            sent_parts: 0,
        },
        other => DeliverError::Permanent(describe(&other, base)),
    }
}

impl Handler<Deliver> for TelegramChannel {
    type Result = ResponseFuture<Result<(), DeliverError>>;

    fn handle(&mut self, msg: Deliver, _: &mut Context<Self>) -> Self::Result {
        let bot = self.bot.clone();
        let limiter = self.limiter.clone();
        let base = self.settings.api_base_url.clone();
        Box::pin(async move {
            let chat: i64 = msg
                .chat_key
                .parse()
                .map_err(|_| DeliverError::Permanent(format!("bad chat id {}", msg.chat_key)))?;
            let meta = msg.meta.unwrap_or_default();
            // In groups the reply quotes the question, so people see what it answers.
            let reply_to = meta
                .get("messageId")
                .and_then(Value::as_i64)
                .filter(|_| meta.get("private").and_then(Value::as_bool) == Some(false))
                .and_then(|id| i32::try_from(id).ok());
            for (n, part) in split_message(&msg.text, TEXT_LIMIT)
                .into_iter()
                .enumerate()
                .skip(msg.sent_parts)
            {
                limiter.until_ready().await;
                let html = markdown_to_telegram_html(&part);
                let mut rich = bot.send_message(ChatId(chat), &html);
                let mut plain = bot.send_message(ChatId(chat), &part);
                if let (0, Some(id)) = (n, reply_to) {
                    // Still answer when the question was deleted meanwhile.
                    let quote = ReplyParameters::new(MessageId(id)).allow_sending_without_reply();
                    rich = rich.reply_parameters(quote.clone());
                    plain = plain.reply_parameters(quote);
                }
                let sent = if html.chars().map(char::len_utf16).sum::<usize>() <= TEXT_LIMIT {
                    match rich.parse_mode(ParseMode::Html).await {
                        // The markup (or a link in it) was refused: the words still matter
                        // more than the looks.
                        Err(RequestError::Api(_)) => plain.await,
                        other => other,
                    }
                } else {
                    plain.await
                };
                match sent {
                    Ok(_) => {}
                    // Telegram took it (200) but its answer did not parse: sending it again
                    // would repeat it.
                    Err(RequestError::InvalidJson { source, .. }) => {
                        tracing::warn!(error = %source, "Bot API answer not understood; the message was sent");
                    }
                    Err(e) => {
                        return Err(match deliver_error(e, &base) {
                            DeliverError::Retry { after, reason, .. } => DeliverError::Retry {
                                after,
                                reason,
                                sent_parts: n,
                            },
                            permanent => permanent,
                        })
                    }
                }
            }
            Ok(())
        })
    }
}

impl Handler<Typing> for TelegramChannel {
    type Result = ();

    fn handle(&mut self, msg: Typing, ctx: &mut Context<Self>) {
        let Ok(chat) = msg.chat_key.parse::<i64>() else {
            return;
        };
        let bot = self.bot.clone();
        ctx.spawn(
            async move {
                let _ = bot.send_chat_action(ChatId(chat), ChatAction::Typing).await;
            }
            .into_actor(self),
        );
    }
}

/// An admin pressed Approve or Reject under an approval request.
async fn decide(bot: &Bot, approvals: &Addr<ApprovalDesk>, admin_chats: &[i64], q: &CallbackQuery) {
    let Some((id, approve)) = q.data.as_deref().and_then(parse_decision) else {
        return;
    };
    let chat = q.message.as_ref().map(|m| m.chat().id.0);
    let answer = if !chat.is_some_and(|c| admin_chats.contains(&c)) {
        "Approvals are decided in the admin chats only.".to_string()
    } else {
        let by = q
            .from
            .username
            .as_ref()
            .map_or_else(|| q.from.id.0.to_string(), |u| format!("@{u}"));
        let decided = approvals
            .send(Decide {
                id: id.to_string(),
                approve,
                by: format!("telegram:{by}"),
                reason: Some("decided in Telegram".into()),
            })
            .await;
        match decided {
            Ok(Ok(_)) if approve => "Approved.".to_string(),
            Ok(Ok(_)) => "Rejected.".to_string(),
            Ok(Err(e)) => format!("Not changed: {e}"),
            Err(_) => "The gateway is restarting; try again.".to_string(),
        }
    };
    let _ = bot.answer_callback_query(q.id.clone()).text(answer).await;
}

/// `apr:<approval id>:a` (approve) or `:r` (reject), as the buttons carry it.
fn parse_decision(data: &str) -> Option<(&str, bool)> {
    let rest = data.strip_prefix("apr:")?;
    let (id, verdict) = rest.rsplit_once(':')?;
    match verdict {
        "a" => Some((id, true)),
        "r" => Some((id, false)),
        _ => None,
    }
}

impl Handler<ApprovalNotice> for TelegramChannel {
    type Result = ();

    fn handle(&mut self, ApprovalNotice(event): ApprovalNotice, ctx: &mut Context<Self>) {
        if self.retired {
            return;
        }
        let bot = self.bot.clone();
        match &*event {
            GatewayEvent::ApprovalRequired {
                approval_id,
                run_id,
                tool_name,
                input,
                risk_level,
                expires_at,
            } => {
                let mut shown = input.to_string();
                if shown.chars().count() > 1500 {
                    shown = shown.chars().take(1500).collect::<String>() + "…";
                }
                let text = format!(
                    "Approval needed\n\nTool: {tool_name} (risk: {risk_level})\nInput: {shown}\nRun: {}\nDecide before {expires_at}.",
                    run_id.as_deref().unwrap_or("-")
                );
                let keyboard = InlineKeyboardMarkup::new(vec![vec![
                    InlineKeyboardButton::callback("Approve", format!("apr:{approval_id}:a")),
                    InlineKeyboardButton::callback("Reject", format!("apr:{approval_id}:r")),
                ]]);
                let chats = self.settings.admin_chat_ids.clone();
                let id = approval_id.clone();
                let body = text.clone();
                ctx.spawn(
                    async move {
                        let mut posted = Vec::new();
                        for chat in chats {
                            match bot
                                .send_message(ChatId(chat), &body)
                                .reply_markup(keyboard.clone())
                                .await
                            {
                                Ok(m) => posted.push((chat, m.id.0)),
                                Err(e) => tracing::warn!(chat, error = %e, "cannot post an approval request"),
                            }
                        }
                        posted
                    }
                    .into_actor(self)
                    .map(move |posted, act, _| {
                        act.posted.insert(id, (text, posted));
                    }),
                );
            }
            GatewayEvent::ApprovalResolved {
                approval_id,
                status,
                decided_by,
                ..
            } => {
                let Some((text, posted)) = self.posted.remove(approval_id) else {
                    return;
                };
                let outcome = format!("{text}\n\n→ {status} by {decided_by}");
                ctx.spawn(
                    async move {
                        // Without a reply_markup the buttons go away: decided is decided.
                        for (chat, message) in posted {
                            let _ = bot
                                .edit_message_text(ChatId(chat), MessageId(message), &outcome)
                                .await;
                        }
                    }
                    .into_actor(self),
                );
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_are_stripped() {
        assert_eq!(
            strip_mention("@Loop_Bot what time?", "@loop_bot"),
            "what time?"
        );
        assert_eq!(strip_mention("hey @loop_bot, hi", "@loop_bot"), "hey , hi");
        // Lowercasing that changes byte lengths must not move the cut (a panic before).
        assert_eq!(
            strip_mention("İİ@loop_bot €\u{212A}", "@loop_bot"),
            "İİ €\u{212A}"
        );
    }

    #[test]
    fn decisions_are_parsed() {
        assert_eq!(parse_decision("apr:abc-1:a"), Some(("abc-1", true)));
        assert_eq!(parse_decision("apr:abc-1:r"), Some(("abc-1", false)));
        assert_eq!(parse_decision("apr:abc-1:x"), None);
        assert_eq!(parse_decision("other"), None);
    }
}
