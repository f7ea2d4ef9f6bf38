//! The `http_request` tool, with an SSRF guard: after DNS resolution, and again for every
//! redirect, addresses that are loopback, private, link-local (cloud metadata lives there),
//! CGNAT, multicast or otherwise reserved are refused, IPv4 and IPv6 alike (IPv4-mapped and
//! NAT64 forms included), unless the admin allowed the host or range. A refusal is a tool
//! error the model sees.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use agent_runner::llm::describe;
use agent_runner::{RiskLevel, Tool, ToolHandler, ToolSpec};
use futures_util::future::BoxFuture;
use futures_util::StreamExt;
use ipnet::IpNet;
use serde_json::{json, Value};

#[derive(Debug, Clone)]
pub struct HttpRequestConfig {
    /// Ranges the admin allowed (e.g. 127.0.0.1/32 for a local service).
    pub allow_nets: Vec<IpNet>,
    /// Host names the admin allowed, whatever they resolve to.
    pub allow_hosts: Vec<String>,
    pub default_timeout: Duration,
    /// The most response body bytes handed to the model.
    pub max_response_bytes: usize,
}

impl Default for HttpRequestConfig {
    fn default() -> Self {
        Self {
            allow_nets: Vec::new(),
            allow_hosts: Vec::new(),
            default_timeout: Duration::from_secs(30),
            max_response_bytes: 100 * 1024,
        }
    }
}

/// Decides which addresses a tool may reach.
#[derive(Debug, Clone)]
pub struct SsrfGuard {
    allow_nets: Vec<IpNet>,
    allow_hosts: Vec<String>,
}

impl SsrfGuard {
    pub fn new(allow_nets: Vec<IpNet>, allow_hosts: Vec<String>) -> Self {
        Self {
            allow_nets,
            allow_hosts: allow_hosts
                .into_iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
        }
    }

    pub fn host_allowed(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.allow_hosts.contains(&host)
    }

    pub fn check_ip(&self, ip: IpAddr) -> Result<(), String> {
        if self.allow_nets.iter().any(|n| n.contains(&ip)) || !is_forbidden(ip) {
            Ok(())
        } else {
            Err(format!(
                "refused: {ip} is a private, loopback, link-local or reserved address \
                 (the admin can allow it with HTTP_REQUEST_ALLOW)"
            ))
        }
    }
}

/// Addresses a tool must not reach by default.
pub fn is_forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = embedded_v4(v6) {
                return forbidden_v4(v4);
            }
            let s = v6.segments();
            v6.is_unspecified()
                || v6.is_loopback()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local (fc00::/7)
                || (s[0] & 0xffc0) == 0xfe80 // link-local (fe80::/10)
                || (s[0] & 0xffc0) == 0xfec0 // site-local, deprecated (fec0::/10)
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || (s[0] == 0x0100 && s[1] == 0 && s[2] == 0 && s[3] == 0) // discard-only
        }
    }
}

/// The IPv4 address inside an IPv4-mapped (::ffff:a.b.c.d), IPv4-compatible (::a.b.c.d) or
/// NAT64 (64:ff9b::a.b.c.d) IPv6 address.
fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    let tail = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    let mapped = s[..5].iter().all(|&x| x == 0) && s[5] == 0xffff;
    let compatible = s[..6].iter().all(|&x| x == 0) && !(s[6] == 0 && s[7] <= 1);
    let nat64 = s[0] == 0x64 && s[1] == 0xff9b && s[2..6].iter().all(|&x| x == 0);
    (mapped || compatible || nat64).then_some(tail)
}

fn forbidden_v4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    ip.is_unspecified()
        || o[0] == 0 // "this network"
        || ip.is_loopback() // 127/8
        || ip.is_private() // 10/8, 172.16/12, 192.168/16
        || ip.is_link_local() // 169.254/16: cloud metadata
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // CGNAT 100.64/10
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // IETF protocol assignments
        || (o[0] == 192 && o[1] == 0 && o[2] == 2) // documentation
        || (o[0] == 198 && (o[1] & 0xfe) == 18) // benchmarking 198.18/15
        || (o[0] == 198 && o[1] == 51 && o[2] == 100)
        || (o[0] == 203 && o[1] == 0 && o[2] == 113)
        || ip.is_multicast() // 224/4
        || o[0] >= 240 // reserved and broadcast
}

/// DNS resolution that drops forbidden addresses (the guard for names, on every connection,
/// redirects included).
struct GuardedResolver {
    guard: Arc<SsrfGuard>,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let guard = self.guard.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if guard.host_allowed(&host) {
                return Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs);
            }
            let allowed: Vec<SocketAddr> = addrs
                .into_iter()
                .filter(|a| guard.check_ip(a.ip()).is_ok())
                .collect();
            if allowed.is_empty() {
                return Err(format!(
                    "refused: {host} resolves only to private, loopback, link-local or reserved \
                     addresses (the admin can allow it with HTTP_REQUEST_ALLOW)"
                )
                .into());
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// An IP-literal URL never reaches the resolver: check it directly.
fn check_url(guard: &SsrfGuard, url: &reqwest::Url) -> Result<(), String> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "refused: only http and https URLs, not {}",
            url.scheme()
        ));
    }
    match url.host() {
        Some(url::Host::Ipv4(ip)) => guard.check_ip(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => guard.check_ip(IpAddr::V6(ip)),
        Some(url::Host::Domain(_)) => Ok(()),
        None => Err("the URL has no host".into()),
    }
}

struct HttpRequest {
    client: reqwest::Client,
    guard: Arc<SsrfGuard>,
    config: HttpRequestConfig,
}

pub fn tool(config: HttpRequestConfig) -> Result<Tool, String> {
    let guard = Arc::new(SsrfGuard::new(
        config.allow_nets.clone(),
        config.allow_hosts.clone(),
    ));
    let redirect_guard = guard.clone();
    let client = reqwest::Client::builder()
        // A proxy would resolve names itself, around the guard.
        .no_proxy()
        .dns_resolver(Arc::new(GuardedResolver {
            guard: guard.clone(),
        }))
        .redirect(reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= 5 {
                return attempt.error("too many redirects (more than 5)");
            }
            match check_url(&redirect_guard, attempt.url()) {
                Ok(()) => attempt.follow(),
                Err(e) => {
                    let to = attempt.url().to_string();
                    attempt.error(format!("redirect to {to} {e}"))
                }
            }
        }))
        .connect_timeout(Duration::from_secs(10))
        .user_agent(concat!("loop-gateway/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| e.to_string())?;
    let spec = ToolSpec {
        name: "http_request".into(),
        description:
            "Make an HTTP request to a public URL and return the status, content type and \
            body (text or JSON; long bodies are cut). Private and internal addresses are refused."
                .into(),
        input_schema: json!({
            "type": "object",
            "properties": {
                "method": {"type": "string", "enum": ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"],
                           "description": "HTTP method (default GET)"},
                "url": {"type": "string", "description": "http:// or https:// URL"},
                "headers": {"type": "object", "additionalProperties": {"type": "string"}},
                "body": {"description": "Request body: a string, or JSON sent as application/json"},
                "timeoutSeconds": {"type": "integer", "minimum": 1, "maximum": 120}
            },
            "required": ["url"],
            "additionalProperties": false
        }),
    };
    Tool::new(
        spec,
        RiskLevel::Medium,
        Arc::new(HttpRequest {
            client,
            guard,
            config,
        }),
    )
}

impl ToolHandler for HttpRequest {
    fn call(&self, input: Value) -> BoxFuture<'static, Result<String, String>> {
        let client = self.client.clone();
        let guard = self.guard.clone();
        let config = self.config.clone();
        Box::pin(async move { request(client, &guard, &config, input).await })
    }
}

async fn request(
    client: reqwest::Client,
    guard: &SsrfGuard,
    config: &HttpRequestConfig,
    input: Value,
) -> Result<String, String> {
    let url = input["url"].as_str().unwrap_or_default();
    let url = reqwest::Url::parse(url).map_err(|e| format!("invalid url {url:?}: {e}"))?;
    check_url(guard, &url)?;
    let method: reqwest::Method = input["method"]
        .as_str()
        .unwrap_or("GET")
        .parse()
        .map_err(|_| "invalid method".to_string())?;
    let timeout = input["timeoutSeconds"]
        .as_u64()
        .map(Duration::from_secs)
        .unwrap_or(config.default_timeout);
    let mut req = client.request(method, url).timeout(timeout);
    if let Some(headers) = input["headers"].as_object() {
        for (k, v) in headers {
            req = req.header(k.as_str(), v.as_str().unwrap_or_default());
        }
    }
    match &input["body"] {
        Value::Null => {}
        Value::String(s) => req = req.body(s.clone()),
        other => req = req.json(other),
    }
    let res = req
        .send()
        .await
        .map_err(|e| format!("request failed: {}", describe(e)))?;
    let status = res.status().as_u16();
    let content_type = res
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let mut body = Vec::new();
    let mut truncated = false;
    let mut stream = res.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| format!("reading the response failed: {}", describe(e)))?;
        let room = config.max_response_bytes - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            truncated = true;
            break;
        }
        body.extend_from_slice(&chunk);
    }
    let text = String::from_utf8_lossy(&body).into_owned();
    let body = if content_type.contains("json") && !truncated {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    } else {
        Value::String(text)
    };
    Ok(json!({"status": status, "contentType": content_type, "body": body, "truncated": truncated})
        .to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_reserved_addresses_are_forbidden() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fd00:ec2::254",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::10.0.0.1",
            "::127.0.0.1",
        ] {
            assert!(
                is_forbidden(ip.parse().unwrap()),
                "{ip} should be forbidden"
            );
        }
        for ip in [
            "93.184.216.34",
            "1.1.1.1",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(!is_forbidden(ip.parse().unwrap()), "{ip} should be allowed");
        }
    }

    #[test]
    fn the_admin_can_allow_ranges_and_hosts() {
        let g = SsrfGuard::new(
            vec!["127.0.0.1/32".parse().unwrap()],
            vec!["Internal.Example".into()],
        );
        assert!(g.check_ip("127.0.0.1".parse().unwrap()).is_ok());
        assert!(g.check_ip("127.0.0.2".parse().unwrap()).is_err());
        assert!(g.host_allowed("internal.example."));
        assert!(!g.host_allowed("other.example"));
        let url = reqwest::Url::parse("http://[::ffff:7f00:2]/").unwrap();
        assert!(check_url(&g, &url).is_err());
        let file = reqwest::Url::parse("file:///etc/passwd").unwrap();
        assert!(check_url(&g, &file).is_err());
    }
}
