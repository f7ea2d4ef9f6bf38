//! Rate limiting: per client IP on `/api/*` and `/ws`, per token on `/webhook/*`, and a harder
//! per-IP and per-username limit on login and setup. GCRA limiters (governor) keyed in
//! sharded maps: one client at its limit costs others nothing.

use std::net::{IpAddr, Ipv4Addr};
use std::num::NonZeroU32;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, HttpRequest};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use ipnet::IpNet;

use crate::error::ApiError;
use crate::state::{AppState, WebConfig};

pub struct Limiters {
    api: DefaultKeyedRateLimiter<IpAddr>,
    webhook: DefaultKeyedRateLimiter<String>,
    login_ip: DefaultKeyedRateLimiter<IpAddr>,
    login_user: DefaultKeyedRateLimiter<String>,
}

fn per_minute(n: u32) -> Quota {
    Quota::per_minute(NonZeroU32::new(n.max(1)).expect("max(1) is non-zero"))
}

/// Ok, or the seconds to wait.
fn verdict<K: std::hash::Hash + Eq + Clone>(
    limiter: &DefaultKeyedRateLimiter<K>,
    key: &K,
) -> Result<(), u64> {
    limiter.check_key(key).map_err(|not_until| {
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
    })
}

impl Limiters {
    pub fn new(config: &WebConfig) -> Self {
        Self {
            api: RateLimiter::keyed(per_minute(config.rate_limit_per_minute)),
            webhook: RateLimiter::keyed(per_minute(config.webhook_rate_limit_per_minute)),
            login_ip: RateLimiter::keyed(per_minute(config.login_rate_limit_per_minute)),
            login_user: RateLimiter::keyed(per_minute(config.login_rate_limit_per_minute)),
        }
    }

    /// A login or setup attempt from `ip` for `username`.
    pub fn check_login(&self, ip: IpAddr, username: &str) -> Result<(), ApiError> {
        verdict(&self.login_ip, &ip)
            .and_then(|()| verdict(&self.login_user, &username.to_lowercase()))
            .map_err(|secs| {
                let mut e = ApiError::rate_limited(secs);
                e.message = "too many login attempts; wait before trying again".into();
                e
            })
    }

    /// Forget keys whose limits have fully recovered, so memory stays bounded.
    pub fn purge(&self) {
        self.api.retain_recent();
        self.webhook.retain_recent();
        self.login_ip.retain_recent();
        self.login_user.retain_recent();
        self.api.shrink_to_fit();
        self.webhook.shrink_to_fit();
        self.login_ip.shrink_to_fit();
        self.login_user.shrink_to_fit();
    }
}

/// The client's address: the peer, or, when the peer is a trusted proxy, the right-most
/// address in `X-Forwarded-For` that is not itself a trusted proxy.
pub fn client_ip(req: &HttpRequest, trusted: &[IpNet]) -> IpAddr {
    let peer = req
        .peer_addr()
        .map(|a| a.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let mut client = peer;
    let hops = req
        .headers()
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",");
    for hop in hops.rsplit(',') {
        match hop.trim().parse::<IpAddr>() {
            Ok(ip) => {
                client = ip;
                if !is_trusted(&ip) {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    client
}

/// Middleware applying the API and webhook limits before any handler runs.
pub async fn rate_limit(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let limited = match req.app_data::<web::Data<AppState>>() {
        Some(state) => {
            let path = req.path();
            if path.starts_with("/api/") || path == "/ws" {
                let ip = client_ip(req.request(), &state.config.trusted_proxies);
                verdict(&state.limits.api, &ip).err()
            } else if let Some(rest) = path.strip_prefix("/webhook/") {
                // /webhook/<kind>/<token or channel id>
                let key = rest.split('/').nth(1).unwrap_or_default().to_string();
                verdict(&state.limits.webhook, &key).err()
            } else {
                None
            }
        }
        None => None,
    };
    if let Some(secs) = limited {
        let res = req.error_response(ApiError::rate_limited(secs));
        return Ok(res.map_into_right_body());
    }
    next.call(req)
        .await
        .map(ServiceResponse::map_into_left_body)
}
