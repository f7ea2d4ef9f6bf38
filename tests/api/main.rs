//! End-to-end tests of the real binary over HTTP and WebSocket. One test binary, one module
//! per feature, so the suite links once.

#[path = "../common/mod.rs"]
mod common;

mod agents;
mod approvals;
mod auth;
mod bench;
mod browser;
mod channels;
mod email;
mod errors;
mod groups;
mod lifecycle;
mod llm_client;
mod peers;
mod persistence;
mod rate_limit;
mod tasks;
mod webhooks;
mod websocket;
