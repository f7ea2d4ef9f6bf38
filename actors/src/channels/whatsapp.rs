//! `WhatsAppChannel`: Meta's WhatsApp Cloud API. Inbound notifications arrive at
//! `/webhook/whatsapp/:channelId` (checked against `X-Hub-Signature-256`, stored, then
//! acknowledged); replies go out through the Graph API's `/{phone-number-id}/messages`.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use governor::DefaultDirectRateLimiter;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::Sha256;

use super::config::WhatsAppSettings;
use super::format::split_message;
use super::{
    report, ChannelManager, ChannelStart, Deliver, DeliverError, Incoming, Retire, Status, Typing,
    WebhookRefusal,
};

/// The Cloud API's limit for a text message body.
const TEXT_LIMIT: usize = 4096;

pub struct WhatsAppChannel {
    id: String,
    generation: u64,
    settings: WhatsAppSettings,
    manager: Addr<ChannelManager>,
    client: reqwest::Client,
    limiter: Arc<DefaultDirectRateLimiter>,
    retired: bool,
}

impl WhatsAppChannel {
    pub fn new(start: ChannelStart<WhatsAppSettings>) -> Self {
        WhatsAppChannel {
            id: start.channel_id,
            generation: start.generation,
            limiter: super::telegram::limiter(start.settings.outbound_per_minute),
            settings: start.settings,
            manager: start.manager,
            client: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(10))
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap_or_default(),
            retired: false,
        }
    }
}

impl Actor for WhatsAppChannel {
    type Context = Context<Self>;

    fn started(&mut self, _: &mut Context<Self>) {
        if self.retired {
            return;
        }
        // Nothing to connect to: Meta calls the webhook, and every reply is one request.
        report(
            &self.id,
            self.generation,
            &self.manager,
            Status::Connected,
            None,
        );
    }
}

impl actix::Supervised for WhatsAppChannel {}

impl Handler<Retire> for WhatsAppChannel {
    type Result = ();

    fn handle(&mut self, _: Retire, ctx: &mut Context<Self>) {
        self.retired = true;
        ctx.stop();
    }
}

impl Handler<Typing> for WhatsAppChannel {
    type Result = ();

    // The Cloud API's typing indicator needs the message id and marks it read; not used.
    fn handle(&mut self, _: Typing, _: &mut Context<Self>) {}
}

impl Handler<Deliver> for WhatsAppChannel {
    type Result = ResponseFuture<Result<(), DeliverError>>;

    fn handle(&mut self, msg: Deliver, _: &mut Context<Self>) -> Self::Result {
        let s = &self.settings;
        let url = format!(
            "{}/{}/{}/messages",
            s.graph_base_url.trim_end_matches('/'),
            s.graph_api_version,
            s.phone_number_id.clone().unwrap_or_default()
        );
        let token = s.access_token.clone().unwrap_or_default();
        let client = self.client.clone();
        let limiter = self.limiter.clone();
        let manager = self.manager.clone();
        let (id, generation) = (self.id.clone(), self.generation);
        Box::pin(async move {
            for (n, part) in split_message(&msg.text, TEXT_LIMIT)
                .into_iter()
                .enumerate()
                .skip(msg.sent_parts)
            {
                limiter.until_ready().await;
                let body = json!({
                    "messaging_product": "whatsapp",
                    "recipient_type": "individual",
                    "to": msg.chat_key,
                    "type": "text",
                    "text": { "preview_url": false, "body": part },
                });
                let answer = client
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&body)
                    .send()
                    .await;
                let response = match answer {
                    Ok(r) => r,
                    Err(e) => {
                        return Err(DeliverError::Retry {
                            after: Duration::from_secs(2),
                            reason: format!("cannot reach the Graph API: {e}"),
                            sent_parts: n,
                        })
                    }
                };
                let status = response.status();
                if status.is_success() {
                    continue;
                }
                let detail = response
                    .json::<Value>()
                    .await
                    .ok()
                    .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
                    .unwrap_or_default();
                let reason = format!("the Graph API answered {status}: {detail}");
                if status.as_u16() == 401 {
                    // The access token expired or was revoked: the channel says so.
                    report(
                        &id,
                        generation,
                        &manager,
                        Status::Error,
                        Some(reason.clone()),
                    );
                }
                return Err(if status.as_u16() == 429 || status.is_server_error() {
                    DeliverError::Retry {
                        after: Duration::from_secs(30),
                        reason,
                        sent_parts: n,
                    }
                } else if status.as_u16() == 401 {
                    DeliverError::Retry {
                        after: Duration::from_secs(60),
                        reason,
                        sent_parts: n,
                    }
                } else {
                    DeliverError::Permanent(reason)
                });
            }
            report(&id, generation, &manager, Status::Connected, None);
            Ok(())
        })
    }
}

/// Check `X-Hub-Signature-256` (`sha256=<hex HMAC-SHA256 of the raw body>` with the app secret).
pub(super) fn check_signature(
    app_secret: &str,
    header: Option<&str>,
    body: &[u8],
) -> Result<(), WebhookRefusal> {
    let refuse = || WebhookRefusal::Unauthorized("X-Hub-Signature-256 is missing or wrong");
    let given = header
        .and_then(|h| h.strip_prefix("sha256="))
        .and_then(|h| hex::decode(h.trim()).ok())
        .ok_or_else(refuse)?;
    if app_secret.is_empty() {
        return Err(refuse());
    }
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(app_secret.as_bytes()).expect("any key length");
    mac.update(body);
    mac.verify_slice(&given).map_err(|_| refuse())
}

#[derive(Deserialize)]
struct Notification {
    object: Option<String>,
    #[serde(default)]
    entry: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    #[serde(default)]
    changes: Vec<Change>,
}

#[derive(Deserialize)]
struct Change {
    #[serde(default)]
    field: Option<String>,
    value: ChangeValue,
}

#[derive(Deserialize)]
struct ChangeValue {
    #[serde(default)]
    metadata: Option<Metadata>,
    #[serde(default)]
    contacts: Vec<Contact>,
    #[serde(default)]
    messages: Vec<WaMessage>,
}

#[derive(Deserialize)]
struct Metadata {
    phone_number_id: Option<String>,
}

#[derive(Deserialize)]
struct Contact {
    wa_id: Option<String>,
    profile: Option<Profile>,
}

#[derive(Deserialize)]
struct Profile {
    name: Option<String>,
}

#[derive(Deserialize)]
struct WaMessage {
    from: String,
    id: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<TextBody>,
}

#[derive(Deserialize)]
struct TextBody {
    body: String,
}

/// The messages a Cloud API notification carries for this phone number.
pub(super) fn parse_notification(
    body: &[u8],
    phone_number_id: &str,
) -> Result<Vec<Incoming>, WebhookRefusal> {
    let n: Notification = serde_json::from_slice(body)
        .map_err(|e| WebhookRefusal::BadRequest(format!("not a WhatsApp notification: {e}")))?;
    if n.object.as_deref() != Some("whatsapp_business_account") {
        return Err(WebhookRefusal::BadRequest(
            "object must be whatsapp_business_account".into(),
        ));
    }
    let mut out = Vec::new();
    for change in n.entry.into_iter().flat_map(|e| e.changes) {
        if change.field.as_deref().is_some_and(|f| f != "messages") {
            continue;
        }
        let v = change.value;
        if let Some(meta) = &v.metadata {
            if meta
                .phone_number_id
                .as_deref()
                .is_some_and(|p| p != phone_number_id)
            {
                continue;
            }
        }
        for m in v.messages {
            let name = v
                .contacts
                .iter()
                .find(|c| c.wa_id.as_deref() == Some(m.from.as_str()))
                .and_then(|c| c.profile.as_ref())
                .and_then(|p| p.name.clone());
            let (text, unsupported) = match (&m.kind[..], m.text) {
                ("text", Some(t)) => (t.body, None),
                (kind, _) => (
                    format!("[{kind} message]"),
                    Some("unsupported_message_type".to_string()),
                ),
            };
            out.push(Incoming {
                external_id: m.id.clone(),
                chat_key: m.from.clone(),
                sender: m.from.clone(),
                sender_name: name,
                sender_ids: vec![m.from.clone()],
                text,
                meta: Some(json!({ "messageId": m.id })),
                addressed: true,
                unsupported,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_checked() {
        let body = br#"{"object":"whatsapp_business_account"}"#;
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(b"s3cret").unwrap();
        mac.update(body);
        let good = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        assert!(check_signature("s3cret", Some(&good), body).is_ok());
        assert!(check_signature("other", Some(&good), body).is_err());
        assert!(check_signature("s3cret", None, body).is_err());
        assert!(check_signature("s3cret", Some("sha256=zz"), body).is_err());
    }

    #[test]
    fn text_messages_are_read() {
        let body = json!({
            "object": "whatsapp_business_account",
            "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": "15550000000", "phone_number_id": "42"},
                "contacts": [{"profile": {"name": "Ann"}, "wa_id": "4915112345678"}],
                "messages": [
                    {"from": "4915112345678", "id": "wamid.A", "timestamp": "1", "type": "text",
                     "text": {"body": "hello"}},
                    {"from": "4915112345678", "id": "wamid.B", "timestamp": "1", "type": "image",
                     "image": {"id": "x"}}
                ]}}]}]
        });
        let got = parse_notification(body.to_string().as_bytes(), "42").unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].text, "hello");
        assert_eq!(got[0].sender_name.as_deref(), Some("Ann"));
        assert!(got[1].unsupported.is_some());
        assert!(parse_notification(body.to_string().as_bytes(), "43")
            .unwrap()
            .is_empty());
    }
}
