//! A Messages API front that speaks only HTTP/2 (h2c) and allows a limited number of
//! concurrent streams per connection, as the providers' edges do (they advertise
//! `SETTINGS_MAX_CONCURRENT_STREAMS`, typically 100–256). It holds every answer until
//! `release_at` requests are in flight at once (or `hold_limit` passes), so a test can see
//! whether a client gets more calls in flight than one connection allows.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::json;
use tokio::sync::watch;

#[derive(Default)]
struct Counters {
    connections: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    answered: AtomicUsize,
}

/// The server; it runs on its own thread until the process ends.
pub struct LimitedH2Api {
    pub url: String,
    counters: Arc<Counters>,
}

impl LimitedH2Api {
    /// Allow `streams_per_connection` streams on each connection; answer once `release_at`
    /// requests are waiting at the same time, or after `hold_limit`.
    pub fn start(streams_per_connection: u32, release_at: usize, hold_limit: Duration) -> Self {
        let counters = Arc::new(Counters::default());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let c = counters.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(serve(
                listener,
                c,
                streams_per_connection,
                release_at,
                hold_limit,
            ));
        });
        Self { url, counters }
    }

    /// Connections the clients opened.
    pub fn connections(&self) -> usize {
        self.counters.connections.load(Ordering::SeqCst)
    }

    /// The most requests that were in flight at once.
    pub fn max_in_flight(&self) -> usize {
        self.counters.max_in_flight.load(Ordering::SeqCst)
    }

    pub fn answered(&self) -> usize {
        self.counters.answered.load(Ordering::SeqCst)
    }
}

async fn serve(
    listener: std::net::TcpListener,
    counters: Arc<Counters>,
    streams: u32,
    release_at: usize,
    hold_limit: Duration,
) {
    let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
    // Turns true once `release_at` requests were in flight together; from then on, no holding.
    let (release, released) = watch::channel(false);
    let release = Arc::new(release);
    loop {
        let Ok((socket, _)) = listener.accept().await else {
            continue;
        };
        counters.connections.fetch_add(1, Ordering::SeqCst);
        let (counters, release, released) = (counters.clone(), release.clone(), released.clone());
        tokio::spawn(async move {
            let Ok(mut conn) = h2::server::Builder::new()
                .max_concurrent_streams(streams)
                .handshake::<_, Bytes>(socket)
                .await
            else {
                return;
            };
            while let Some(Ok((request, mut respond))) = conn.accept().await {
                let (counters, release, mut released) =
                    (counters.clone(), release.clone(), released.clone());
                tokio::spawn(async move {
                    // Read the request body to its end (the client's flow control needs it).
                    let mut body = request.into_body();
                    while let Some(Ok(chunk)) = body.data().await {
                        let _ = body.flow_control().release_capacity(chunk.len());
                    }
                    let now = counters.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                    counters.max_in_flight.fetch_max(now, Ordering::SeqCst);
                    if now >= release_at {
                        release.send_replace(true);
                    }
                    let _ = tokio::time::timeout(hold_limit, released.wait_for(|r| *r)).await;
                    counters.in_flight.fetch_sub(1, Ordering::SeqCst);
                    let answer = json!({
                        "id": "msg_limited", "type": "message", "role": "assistant",
                        "model": "claude-test", "stop_reason": "end_turn", "stop_sequence": null,
                        "content": [{"type": "text", "text": "ok"}],
                        "usage": {"input_tokens": 1, "output_tokens": 1}
                    });
                    let response = http::Response::builder()
                        .status(200)
                        .header("content-type", "application/json")
                        .body(())
                        .expect("response");
                    if let Ok(mut send) = respond.send_response(response, false) {
                        let _ = send.send_data(Bytes::from(answer.to_string()), true);
                    }
                    counters.answered.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
    }
}
