//! A stand-in for the WhatsApp Cloud API (Meta Graph API), faithful to the published docs:
//!
//! - `POST /{Version}/{Phone-Number-ID}/messages` (the version segment may be left out, as on
//!   Graph) with `Authorization: Bearer <access token>` (or `?access_token=`) and a JSON body
//!   `{"messaging_product":"whatsapp","recipient_type":"individual","to":"<number>","type":"text",
//!   "text":{"preview_url":false,"body":"..."},"context":{"message_id":"wamid..."}}`; answers
//!   `{"messaging_product":"whatsapp","contacts":[{"input":to,"wa_id":to}],"messages":[{"id":"wamid..."}]}`.
//!   Marking a message read (`{"messaging_product":"whatsapp","status":"read","message_id":...}`)
//!   answers `{"success":true}`.
//! - Errors in the Graph shape `{"error":{"message","type":"OAuthException","code",
//!   "error_data":{"messaging_product":"whatsapp","details"},"fbtrace_id"}}`: 401/190 for a
//!   missing or wrong token (with `WWW-Authenticate`), 400/100 for invalid parameters (a body
//!   over 4096 characters), and scripted outages ([`WhatsAppGraph::set_fail_next`]).
//!
//! Plus what a test needs to drive the gateway's webhook: [`text_notification`] and
//! [`status_notification`] build the Cloud API notification JSON, [`sign`] the
//! `X-Hub-Signature-256` header, [`verification_query`] the subscription handshake.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::{record, serve, Recorded};

/// The most characters a text message body may have.
pub const MAX_BODY_CHARS: usize = 4096;

/// The WhatsApp Business Account id the notification helpers put in `entry[].id` (the docs'
/// example value).
pub const WABA_ID: &str = "102290129340398";

/// A message the business sent through the stand-in.
#[derive(Debug, Clone, PartialEq)]
pub struct WaSent {
    /// The Graph API version of the request path (`v21.0`), empty when left out.
    pub version: String,
    pub phone_number_id: String,
    pub to: String,
    /// `type` (`text`, `interactive`, `template`, ...).
    pub kind: String,
    /// `text.body` (empty for other types).
    pub body: String,
    pub preview_url: bool,
    /// `context.message_id`: the message this one replies to.
    pub context_id: Option<String>,
    /// The `wamid.` id the stand-in answered.
    pub id: String,
    /// The request body.
    pub request: Value,
}

struct State {
    fail_next: VecDeque<u16>,
    sent: Vec<WaSent>,
    read: Vec<String>,
    requests: Vec<Recorded>,
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

/// The Graph API stand-in at `url` (`http://127.0.0.1:<port>`, in place of
/// `https://graph.facebook.com`).
#[derive(Clone)]
pub struct WhatsAppGraph {
    pub url: String,
    shared: Arc<Shared>,
}

static IDS: AtomicU64 = AtomicU64::new(1);

impl WhatsAppGraph {
    /// A stand-in that accepts only `access_token`.
    pub fn start(access_token: &str) -> Self {
        let shared = Arc::new(Shared {
            token: access_token.to_string(),
            state: Mutex::new(State {
                fail_next: VecDeque::new(),
                sent: Vec::new(),
                read: Vec::new(),
                requests: Vec::new(),
            }),
            notify: tokio::sync::Notify::new(),
        });
        let sh = shared.clone();
        let addr = serve(1, move |cfg| {
            let sh = sh.clone();
            cfg.default_service(web::to(move |req: HttpRequest, body: web::Bytes| {
                let sh = sh.clone();
                async move {
                    let res = handle(&sh, &req, &body);
                    sh.notify.notify_waiters();
                    res
                }
            }));
        });
        Self {
            url: format!("http://{addr}"),
            shared,
        }
    }

    /// The next `n` requests (with a valid token) answer `status` with the Graph error the
    /// Cloud API gives for it (429: 130429 rate limit hit; 500: 131000; 503: 131016; ...).
    pub fn set_fail_next(&self, n: usize, status: u16) {
        let mut s = self.shared.lock();
        s.fail_next.clear();
        s.fail_next.extend(std::iter::repeat_n(status, n));
    }

    /// Messages sent successfully, in order.
    pub fn sent(&self) -> Vec<WaSent> {
        self.shared.lock().sent.clone()
    }

    /// Message ids marked as read.
    pub fn read_receipts(&self) -> Vec<String> {
        self.shared.lock().read.clone()
    }

    /// Every request received, whatever the answer.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.lock().requests.clone()
    }

    /// Wait until at least `n` messages were sent (or panic after `limit`).
    pub async fn wait_for_sent(&self, n: usize, limit: Duration) -> Vec<WaSent> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.shared.notify.notified();
            {
                let s = self.shared.lock();
                if s.sent.len() >= n {
                    return s.sent.clone();
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let s = self.shared.lock();
                if s.sent.len() >= n {
                    return s.sent.clone();
                }
                panic!(
                    "WhatsApp stand-in: {} of {n} messages sent within {limit:?} ({} requests)",
                    s.sent.len(),
                    s.requests.len()
                );
            }
        }
    }

    /// Wait until at least `n` requests arrived.
    pub async fn wait_for_requests(&self, n: usize, limit: Duration) -> Vec<Recorded> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.shared.notify.notified();
            {
                let s = self.shared.lock();
                if s.requests.len() >= n {
                    return s.requests.clone();
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!(
                    "WhatsApp stand-in: {} of {n} requests within {limit:?}",
                    self.requests().len()
                );
            }
        }
    }
}

fn fbtrace_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
    let mut n = IDS
        .fetch_add(1, Ordering::Relaxed)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut id = String::from("A");
    for _ in 0..10 {
        id.push(ALPHABET[(n % 64) as usize] as char);
        n /= 64;
    }
    id
}

fn wamid(to: &str) -> String {
    let n = IDS.fetch_add(1, Ordering::Relaxed);
    format!("wamid.HBgL{to}FQIAERgS{n:016X}AA==")
}

/// A Graph error response.
fn graph_error(status: u16, code: i64, message: &str, details: Option<&str>) -> HttpResponse {
    let mut error = json!({
        "message": message,
        "type": "OAuthException",
        "code": code,
        "fbtrace_id": fbtrace_id(),
    });
    if let Some(d) = details {
        error["error_data"] = json!({"messaging_product": "whatsapp", "details": d});
    }
    let mut res = HttpResponse::build(
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
    );
    if status == 401 {
        res.insert_header((
            "www-authenticate",
            format!("OAuth \"Facebook Platform\" \"invalid_token\" \"{message}\""),
        ));
    }
    res.json(json!({ "error": error }))
}

fn invalid_parameter(details: &str) -> HttpResponse {
    graph_error(400, 100, "(#100) Invalid parameter", Some(details))
}

/// The Graph error a scripted outage answers.
fn outage(status: u16) -> HttpResponse {
    let (code, message, details) = match status {
        429 => (
            130429,
            "(#130429) Rate limit hit",
            "Cloud API message throughput has been reached.",
        ),
        500 => (
            131000,
            "(#131000) Something went wrong",
            "Something went wrong. Please try again later.",
        ),
        503 => (
            131016,
            "(#131016) Service unavailable",
            "A service is temporarily unavailable.",
        ),
        401 => {
            return graph_error(
                401,
                190,
                "Error validating access token: Session has expired.",
                None,
            )
        }
        403 => (
            10,
            "(#10) Application does not have permission for this action",
            "Permission is either not granted or has been removed.",
        ),
        _ => (
            1,
            "An unknown error occurred",
            "Invalid request or possible server error.",
        ),
    };
    graph_error(status, code, message, Some(details))
}

fn handle(sh: &Shared, req: &HttpRequest, body: &[u8]) -> HttpResponse {
    sh.lock().requests.push(record(req, body));
    let segments: Vec<&str> = req.path().trim_matches('/').split('/').collect();
    let (version, rest) = match segments.split_first() {
        Some((v, rest)) if v.starts_with('v') && v[1..].contains('.') => (v.to_string(), rest),
        _ => (String::new(), &segments[..]),
    };
    let token = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
                .or_else(|| v.strip_prefix("OAuth "))
        })
        .map(|t| t.trim().to_string())
        .or_else(|| {
            web::Query::<Vec<(String, String)>>::from_query(req.query_string())
                .ok()
                .and_then(|q| {
                    q.into_inner()
                        .into_iter()
                        .find(|(k, _)| k == "access_token")
                        .map(|(_, v)| v)
                })
        });
    match token {
        None => {
            return graph_error(
                401,
                190,
                "An active access token must be used to query information about the current user.",
                None,
            )
        }
        Some(t) if t != sh.token => {
            return graph_error(
                401,
                190,
                "Invalid OAuth access token - Cannot parse access token",
                None,
            )
        }
        Some(_) => {}
    }
    let phone_number_id = match rest {
        [id, "messages"] => id.to_string(),
        _ => {
            return graph_error(
                400,
                2500,
                &format!("Unknown path components: /{}", rest.join("/")),
                None,
            )
        }
    };
    if req.method() != actix_web::http::Method::POST {
        return graph_error(
            400,
            100,
            &format!(
                "Unsupported {} request. Object with ID '{phone_number_id}' does not exist, cannot be loaded due to missing permissions, or does not support this operation.",
                req.method().as_str().to_ascii_lowercase()
            ),
            None,
        );
    }
    if let Some(status) = sh.lock().fail_next.pop_front() {
        return outage(status);
    }
    let Ok(Value::Object(request)) = serde_json::from_slice::<Value>(body) else {
        return invalid_parameter("The request body is not valid JSON.");
    };
    let request = Value::Object(request);
    if request["messaging_product"].as_str() != Some("whatsapp") {
        return graph_error(
            400,
            100,
            "(#100) The parameter messaging_product is required.",
            None,
        );
    }
    if request["status"].as_str() == Some("read") {
        let Some(id) = request["message_id"].as_str() else {
            return graph_error(
                400,
                100,
                "(#100) The parameter message_id is required.",
                None,
            );
        };
        sh.lock().read.push(id.to_string());
        return HttpResponse::Ok().json(json!({"success": true}));
    }
    let to = match &request["to"] {
        Value::String(s) if !s.trim().is_empty() => s.trim().trim_start_matches('+').to_string(),
        _ => return graph_error(400, 100, "(#100) The parameter to is required.", None),
    };
    if !to.chars().all(|c| c.is_ascii_digit()) {
        return invalid_parameter("Param to must be a valid phone number.");
    }
    let kind = request["type"].as_str().unwrap_or("text").to_string();
    let mut body_text = String::new();
    let mut preview_url = false;
    if kind == "text" {
        let Some(text) = request["text"]["body"].as_str() else {
            return graph_error(
                400,
                100,
                "(#100) The parameter text['body'] is required.",
                None,
            );
        };
        if text.chars().count() > MAX_BODY_CHARS {
            return invalid_parameter(&format!(
                "Param text['body'] must be at most {MAX_BODY_CHARS} characters long."
            ));
        }
        if text.trim().is_empty() {
            return invalid_parameter("Param text['body'] must not be empty.");
        }
        body_text = text.to_string();
        preview_url = request["text"]["preview_url"].as_bool().unwrap_or(false);
    } else if request.get(&kind).is_none() {
        return graph_error(
            400,
            100,
            &format!("(#100) The parameter {kind} is required."),
            None,
        );
    }
    let id = wamid(&to);
    sh.lock().sent.push(WaSent {
        version,
        phone_number_id,
        to: to.clone(),
        kind,
        body: body_text,
        preview_url,
        context_id: request["context"]["message_id"]
            .as_str()
            .map(str::to_string),
        id: id.clone(),
        request,
    });
    HttpResponse::Ok().json(json!({
        "messaging_product": "whatsapp",
        "contacts": [{"input": to, "wa_id": to}],
        "messages": [{"id": id}],
    }))
}

/// The webhook notification the Cloud API POSTs when a user sends a text message.
pub fn text_notification(
    phone_number_id: &str,
    display_number: &str,
    from_wa_id: &str,
    profile_name: &str,
    message_id: &str,
    text: &str,
    timestamp_secs: i64,
) -> Value {
    json!({
        "object": "whatsapp_business_account",
        "entry": [{
            "id": WABA_ID,
            "changes": [{
                "value": {
                    "messaging_product": "whatsapp",
                    "metadata": {
                        "display_phone_number": display_number,
                        "phone_number_id": phone_number_id,
                    },
                    "contacts": [{"profile": {"name": profile_name}, "wa_id": from_wa_id}],
                    "messages": [{
                        "from": from_wa_id,
                        "id": message_id,
                        "timestamp": timestamp_secs.to_string(),
                        "text": {"body": text},
                        "type": "text",
                    }],
                },
                "field": "messages",
            }],
        }],
    })
}

/// The webhook notification for a status change (`sent`, `delivered`, `read`, `failed`) of a
/// message the business sent.
pub fn status_notification(
    phone_number_id: &str,
    display_number: &str,
    message_id: &str,
    recipient_id: &str,
    status: &str,
    timestamp_secs: i64,
) -> Value {
    let mut st = json!({
        "id": message_id,
        "status": status,
        "timestamp": timestamp_secs.to_string(),
        "recipient_id": recipient_id,
    });
    if status == "failed" {
        st["errors"] = json!([{
            "code": 131026,
            "title": "Message undeliverable",
            "message": "Message undeliverable",
            "error_data": {"details": "Message Undeliverable."},
        }]);
    } else if status != "read" {
        st["conversation"] =
            json!({"id": "f5fdae3920125a39a1e6a23e5f877c16", "origin": {"type": "service"}});
        st["pricing"] = json!({"billable": true, "pricing_model": "CBP", "category": "service"});
    }
    json!({
        "object": "whatsapp_business_account",
        "entry": [{
            "id": WABA_ID,
            "changes": [{
                "value": {
                    "messaging_product": "whatsapp",
                    "metadata": {
                        "display_phone_number": display_number,
                        "phone_number_id": phone_number_id,
                    },
                    "statuses": [st],
                },
                "field": "messages",
            }],
        }],
    })
}

/// The `X-Hub-Signature-256` header for `body`: `sha256=` + hex HMAC-SHA256 keyed with the
/// app secret.
pub fn sign(app_secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(app_secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The query string of the verification request Meta sends when a webhook is subscribed
/// (`GET <callback>?hub.mode=subscribe&hub.challenge=...&hub.verify_token=...`); the endpoint
/// must answer the challenge as its body.
pub fn verification_query(verify_token: &str, challenge: &str) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    format!(
        "hub.mode=subscribe&hub.challenge={}&hub.verify_token={}",
        enc(challenge),
        enc(verify_token)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "EAAG-test-access-token";

    struct Answer {
        status: u16,
        body: Value,
        www_authenticate: Option<String>,
    }

    async fn post(url: &str, path: &str, token: Option<&str>, body: Value) -> Answer {
        let client = awc::Client::builder()
            .timeout(Duration::from_secs(30))
            .finish();
        let mut req = client.post(format!("{url}{path}"));
        if let Some(t) = token {
            req = req.insert_header(("authorization", format!("Bearer {t}")));
        }
        let mut res = req.send_json(&body).await.expect("request");
        let www_authenticate = res
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        Answer {
            status: res.status().as_u16(),
            body: res.json().await.expect("a JSON body"),
            www_authenticate,
        }
    }

    fn text(to: &str, body: &str) -> Value {
        json!({"messaging_product": "whatsapp", "recipient_type": "individual", "to": to,
            "type": "text", "text": {"preview_url": false, "body": body}})
    }

    #[actix_rt::test]
    async fn sends_a_text_message() {
        let wa = WhatsAppGraph::start(TOKEN);
        let waiter = {
            let wa = wa.clone();
            actix_rt::spawn(async move { wa.wait_for_sent(2, Duration::from_secs(10)).await })
        };
        let a = post(
            &wa.url,
            "/v21.0/106540352242922/messages",
            Some(TOKEN),
            text("16505551234", "Hello!"),
        )
        .await;
        assert_eq!(a.status, 200, "{}", a.body);
        let id = a.body["messages"][0]["id"].as_str().unwrap().to_string();
        assert!(id.starts_with("wamid."), "{id}");
        assert_eq!(
            a.body,
            json!({"messaging_product": "whatsapp",
                "contacts": [{"input": "16505551234", "wa_id": "16505551234"}],
                "messages": [{"id": id}]})
        );
        let mut reply = text("16505551234", "In reply");
        reply["context"] = json!({"message_id": "wamid.INBOUND1"});
        let b = post(
            &wa.url,
            "/v21.0/106540352242922/messages",
            Some(TOKEN),
            reply,
        )
        .await;
        assert_ne!(b.body["messages"][0]["id"].as_str().unwrap(), id);
        let sent = waiter.await.unwrap();
        assert_eq!(sent.len(), 2);
        assert_eq!(sent[0].version, "v21.0");
        assert_eq!(sent[0].phone_number_id, "106540352242922");
        assert_eq!(sent[0].to, "16505551234");
        assert_eq!(sent[0].kind, "text");
        assert_eq!(sent[0].body, "Hello!");
        assert_eq!(sent[0].context_id, None);
        assert_eq!(sent[0].id, id);
        assert_eq!(sent[1].context_id.as_deref(), Some("wamid.INBOUND1"));

        let a = post(&wa.url, "/v21.0/106540352242922/messages", Some(TOKEN),
            json!({"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.INBOUND1"})).await;
        assert_eq!(a.body, json!({"success": true}));
        assert_eq!(wa.read_receipts(), vec!["wamid.INBOUND1".to_string()]);
        assert_eq!(wa.requests().len(), 3);
    }

    #[actix_rt::test]
    async fn refuses_bad_tokens_and_long_bodies_in_the_graph_error_shape() {
        let wa = WhatsAppGraph::start(TOKEN);
        let path = "/v21.0/106540352242922/messages";
        for token in [None, Some("EAAG-wrong")] {
            let a = post(&wa.url, path, token, text("16505551234", "hi")).await;
            assert_eq!(a.status, 401);
            let e = &a.body["error"];
            assert_eq!(e["type"], "OAuthException");
            assert_eq!(e["code"], 190);
            assert!(e["message"].as_str().is_some());
            assert!(e["fbtrace_id"].as_str().is_some_and(|t| t.len() > 5));
            assert!(a
                .www_authenticate
                .unwrap()
                .starts_with("OAuth \"Facebook Platform\" \"invalid_token\""));
        }
        let a = post(&wa.url, path, Some("EAAG-wrong"), text("1", "hi")).await;
        assert_eq!(
            a.body["error"]["message"],
            "Invalid OAuth access token - Cannot parse access token"
        );

        assert_eq!(
            post(
                &wa.url,
                path,
                Some(TOKEN),
                text("16505551234", &"é".repeat(4096))
            )
            .await
            .status,
            200
        );
        let a = post(
            &wa.url,
            path,
            Some(TOKEN),
            text("16505551234", &"é".repeat(4097)),
        )
        .await;
        assert_eq!(a.status, 400);
        let e = &a.body["error"];
        assert_eq!(e["message"], "(#100) Invalid parameter");
        assert_eq!(e["type"], "OAuthException");
        assert_eq!(e["code"], 100);
        assert_eq!(e["error_data"]["messaging_product"], "whatsapp");
        assert_eq!(
            e["error_data"]["details"],
            "Param text['body'] must be at most 4096 characters long."
        );

        let a = post(
            &wa.url,
            path,
            Some(TOKEN),
            json!({"to": "1", "type": "text", "text": {"body": "x"}}),
        )
        .await;
        assert_eq!(
            (a.status, a.body["error"]["code"].as_i64()),
            (400, Some(100))
        );
        let a = post(
            &wa.url,
            "/v21.0/106540352242922/nothing",
            Some(TOKEN),
            json!({}),
        )
        .await;
        assert_eq!(a.body["error"]["code"], 2500);
        assert_eq!(wa.sent().len(), 1);
    }

    #[actix_rt::test]
    async fn scripted_outages_then_recovery() {
        let wa = WhatsAppGraph::start(TOKEN);
        wa.set_fail_next(2, 503);
        let path = "/v21.0/1/messages";
        for _ in 0..2 {
            let a = post(&wa.url, path, Some(TOKEN), text("15550001111", "hi")).await;
            assert_eq!(a.status, 503);
            assert_eq!(a.body["error"]["code"], 131016);
            assert_eq!(a.body["error"]["message"], "(#131016) Service unavailable");
        }
        assert_eq!(
            post(&wa.url, path, Some(TOKEN), text("15550001111", "hi"))
                .await
                .status,
            200
        );
        wa.set_fail_next(1, 429);
        let a = post(&wa.url, path, Some(TOKEN), text("15550001111", "hi")).await;
        assert_eq!(
            (a.status, a.body["error"]["code"].as_i64()),
            (429, Some(130429))
        );
        assert_eq!(wa.sent().len(), 1);
        assert_eq!(wa.requests().len(), 4);
    }

    #[test]
    fn signature_matches_known_vectors() {
        // python3: hmac.new(b"key", b"The quick brown fox jumps over the lazy dog", hashlib.sha256).hexdigest()
        assert_eq!(
            sign("key", b"The quick brown fox jumps over the lazy dog"),
            "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
        // python3: hmac.new(b"test-app-secret", b'{"object":"whatsapp_business_account"}', hashlib.sha256).hexdigest()
        assert_eq!(
            sign(
                "test-app-secret",
                br#"{"object":"whatsapp_business_account"}"#
            ),
            "sha256=b6978b21c4467654c466607663db9b43fae44b71083568df403e0a077089208e"
        );
    }

    #[test]
    fn notifications_have_the_cloud_api_shape() {
        assert_eq!(
            text_notification(
                "106540352242922",
                "15550783881",
                "16505551234",
                "Sheena Nelson",
                "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQUFERjg0NDEzNDdFODU3MUMxMAA=",
                "Hi there",
                1739321024
            ),
            json!({
                "object": "whatsapp_business_account",
                "entry": [{
                    "id": "102290129340398",
                    "changes": [{
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
                            "contacts": [{"profile": {"name": "Sheena Nelson"}, "wa_id": "16505551234"}],
                            "messages": [{
                                "from": "16505551234",
                                "id": "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQUFERjg0NDEzNDdFODU3MUMxMAA=",
                                "timestamp": "1739321024",
                                "text": {"body": "Hi there"},
                                "type": "text"
                            }]
                        },
                        "field": "messages"
                    }]
                }]
            })
        );
        let s = status_notification("1", "15550783881", "wamid.X", "16505551234", "delivered", 5);
        let st = &s["entry"][0]["changes"][0]["value"]["statuses"][0];
        assert_eq!(st["status"], "delivered");
        assert_eq!(st["timestamp"], "5");
        assert_eq!(st["recipient_id"], "16505551234");
        assert_eq!(
            verification_query("my token", "1158201444"),
            "hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=my%20token"
        );
    }
}
