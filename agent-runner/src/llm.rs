//! The provider-independent LLM client: one call with retries (exponential backoff with full
//! jitter, honouring `retry-after`), timeouts and cancellation. Every attempt is reported to
//! the caller, so failed attempts are counted too.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use tokio_util::sync::CancellationToken;

use crate::types::{LlmRequest, LlmResponse};
use crate::{anthropic, openai};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Provider {
    /// Anthropic's Messages API (`POST {base}/v1/messages`).
    Anthropic,
    /// An OpenAI-compatible Chat Completions API (`POST {base}/v1/chat/completions`): llama.cpp,
    /// Ollama, vLLM, ...
    OpenAiCompatible,
}

impl Provider {
    pub fn name(&self) -> &'static str {
        match self {
            Provider::Anthropic => "anthropic",
            Provider::OpenAiCompatible => "openai-compatible",
        }
    }
}

#[derive(Debug, Clone)]
pub struct LlmConfig {
    pub provider: Provider,
    /// Without a trailing slash, e.g. `https://api.anthropic.com`.
    pub base_url: String,
    pub api_key: Option<String>,
    /// Stream responses over SSE (Anthropic only; the OpenAI-compatible client does not).
    pub streaming: bool,
    /// Retries after the first attempt for 429, 529, other 5xx and connection failures.
    pub max_retries: u32,
    /// Whole-call limit for one attempt.
    pub timeout: Duration,
    /// First backoff step; doubles each retry, capped at `backoff_max`.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Speak HTTP/2 without TLS from the first byte (h2c prior knowledge), so all calls to a
    /// plaintext server share one connection. HTTPS negotiates HTTP/2 by itself.
    pub http2_prior_knowledge: bool,
    /// Independent connection pools the calls are spread over, the least busy first. Over
    /// HTTP/2 all calls to one host share one connection, which a provider's edge limits to
    /// its `SETTINGS_MAX_CONCURRENT_STREAMS` (100–256 is usual; further calls queue) and whose
    /// failure fails every call on it.
    pub connections: usize,
}

impl Default for LlmConfig {
    fn default() -> Self {
        Self {
            provider: Provider::Anthropic,
            base_url: "https://api.anthropic.com".into(),
            api_key: None,
            streaming: true,
            max_retries: 4,
            timeout: Duration::from_secs(600),
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            http2_prior_knowledge: false,
            connections: 4,
        }
    }
}

#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum LlmError {
    /// The API answered with an error status (and its documented error body).
    #[error("the model API answered {status} ({kind}): {message}")]
    Api {
        status: u16,
        kind: String,
        message: String,
        retry_after: Option<Duration>,
    },
    /// An `error` event in the middle of a stream (e.g. `overloaded_error`).
    #[error("the model API reported an error mid-stream ({kind}): {message}")]
    Stream { kind: String, message: String },
    /// Could not connect, the connection broke, or the call timed out.
    #[error("could not reach the model API: {0}")]
    Transport(String),
    /// The answer did not have the documented shape.
    #[error("the model API's answer could not be read: {0}")]
    Decode(String),
    #[error("the call was cancelled")]
    Cancelled,
}

impl LlmError {
    /// Worth another attempt: rate limits, overload, server errors and network trouble.
    pub fn is_retryable(&self) -> bool {
        match self {
            LlmError::Api { status, .. } => *status == 429 || *status == 529 || *status >= 500,
            LlmError::Stream { kind, .. } => {
                matches!(
                    kind.as_str(),
                    "overloaded_error" | "api_error" | "rate_limit_error"
                )
            }
            LlmError::Transport(_) => true,
            LlmError::Decode(_) | LlmError::Cancelled => false,
        }
    }

    /// Whether the provider is overloaded or unavailable (callers answer 503 rather than 502).
    pub fn is_unavailable(&self) -> bool {
        match self {
            LlmError::Api { status, .. } => *status == 429 || *status == 529 || *status == 503,
            LlmError::Stream { kind, .. } => kind == "overloaded_error",
            LlmError::Transport(_) => true,
            _ => false,
        }
    }

    /// A short stable code for records and API responses.
    pub fn code(&self) -> &'static str {
        match self {
            LlmError::Api { status: 401, .. } | LlmError::Api { status: 403, .. } => {
                "llm_auth_failed"
            }
            LlmError::Api { status: 429, .. } => "llm_rate_limited",
            LlmError::Api { status: 529, .. } => "llm_overloaded",
            LlmError::Stream { kind, .. } if kind == "overloaded_error" => "llm_overloaded",
            LlmError::Api { status, .. } if *status >= 500 => "llm_server_error",
            LlmError::Api { .. } => "llm_request_rejected",
            LlmError::Stream { .. } => "llm_stream_error",
            LlmError::Transport(_) => "llm_unreachable",
            LlmError::Decode(_) => "llm_bad_response",
            LlmError::Cancelled => "cancelled",
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            LlmError::Api { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// One attempt, as reported to the observer.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub latency: Duration,
    pub result: Result<LlmResponse, LlmError>,
}

/// A client for one provider configuration. Cheap to clone (the HTTP pools are shared).
#[derive(Clone)]
pub struct LlmClient {
    config: LlmConfig,
    lanes: Arc<[Lane]>,
}

/// One HTTP client (its own connection pool) and the calls it carries now.
struct Lane {
    http: reqwest::Client,
    in_flight: AtomicUsize,
}

/// A call's place on a lane, given back when the call ends (or is dropped).
struct OnLane<'a>(&'a Lane);

impl Drop for OnLane<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for LlmClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmClient")
            .field("provider", &self.config.provider)
            .field("base_url", &self.config.base_url)
            .finish_non_exhaustive()
    }
}

impl LlmClient {
    pub fn new(config: LlmConfig) -> Result<Self, LlmError> {
        let lanes = (0..config.connections.max(1))
            .map(|_| {
                let mut builder = reqwest::Client::builder();
                if config.http2_prior_knowledge {
                    builder = builder.http2_prior_knowledge();
                }
                let http = builder
                    .tcp_nodelay(true)
                    .connect_timeout(Duration::from_secs(10))
                    .pool_idle_timeout(Duration::from_secs(60))
                    .build()
                    .map_err(|e| LlmError::Transport(e.to_string()))?;
                Ok(Lane {
                    http,
                    in_flight: AtomicUsize::new(0),
                })
            })
            .collect::<Result<Vec<_>, LlmError>>()?;
        Ok(Self {
            config,
            lanes: lanes.into(),
        })
    }

    /// The least busy lane (the first of equals, so a quiet gateway reuses one connection).
    fn lane(&self) -> OnLane<'_> {
        let lane = self
            .lanes
            .iter()
            .min_by_key(|l| l.in_flight.load(Ordering::Relaxed))
            .expect("at least one lane");
        lane.in_flight.fetch_add(1, Ordering::Relaxed);
        OnLane(lane)
    }

    /// The same provider settings with another key (per-group keys share the HTTP pool).
    pub fn with_api_key(&self, api_key: Option<String>) -> Self {
        let mut c = self.clone();
        c.config.api_key = api_key;
        c
    }

    pub fn config(&self) -> &LlmConfig {
        &self.config
    }

    /// One attempt, no retries.
    pub async fn send_once(&self, req: &LlmRequest) -> Result<LlmResponse, LlmError> {
        let lane = self.lane();
        let http = &lane.0.http;
        let call = async {
            match self.config.provider {
                Provider::Anthropic => {
                    anthropic::send(http, &self.config, req, self.config.streaming).await
                }
                Provider::OpenAiCompatible => openai::send(http, &self.config, req).await,
            }
        };
        match tokio::time::timeout(self.config.timeout, call).await {
            Ok(r) => r,
            Err(_) => Err(LlmError::Transport(format!(
                "no complete answer within {} s",
                self.config.timeout.as_secs()
            ))),
        }
    }

    /// Call the model, retrying what is worth retrying. `on_attempt` sees every attempt.
    pub async fn complete(
        &self,
        req: &LlmRequest,
        cancel: &CancellationToken,
        on_attempt: &mut (dyn FnMut(&Attempt) + Send),
    ) -> Result<LlmResponse, LlmError> {
        let mut retry = 0;
        loop {
            let started = Instant::now();
            let result = tokio::select! {
                r = self.send_once(req) => r,
                _ = cancel.cancelled() => Err(LlmError::Cancelled),
            };
            let attempt = Attempt {
                latency: started.elapsed(),
                result,
            };
            on_attempt(&attempt);
            match attempt.result {
                Ok(resp) => return Ok(resp),
                Err(e) if e.is_retryable() && retry < self.config.max_retries => {
                    let wait = self.backoff(retry, e.retry_after());
                    tracing::warn!(error = %e, retry = retry + 1, wait_ms = wait.as_millis() as u64,
                        "model call failed; retrying");
                    retry += 1;
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = cancel.cancelled() => return Err(LlmError::Cancelled),
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// A random wait in the upper half of an exponential step (so clients spread out), with a
    /// server's `retry-after` as the floor.
    fn backoff(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        let step = self
            .config
            .backoff_base
            .saturating_mul(1u32 << retry.min(16))
            .min(self.config.backoff_max);
        let jittered = Duration::from_millis(
            rand::rng().random_range(step.as_millis() as u64 / 2..=step.as_millis() as u64),
        );
        match retry_after {
            Some(floor) => jittered.max(floor).min(self.config.backoff_max.max(floor)),
            None => jittered,
        }
    }
}

/// Parse an HTTP `retry-after` header given in seconds.
pub(crate) fn parse_retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    v.trim()
        .parse::<f64>()
        .ok()
        .filter(|s| *s >= 0.0 && s.is_finite())
        .map(Duration::from_secs_f64)
}

/// A reqwest error with its causes (where the interesting part usually is), without the URL.
pub fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut s = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}
