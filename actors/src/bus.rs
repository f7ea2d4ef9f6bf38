//! `EventBus`: typed pub/sub of [`GatewayEvent`]. Each event is serialised once, here, and the
//! same JSON frame is handed to every subscriber (WebSocket sessions, webhooks, metrics).

use std::sync::Arc;

use actix::prelude::*;
use serde::Serialize;

use crate::events::GatewayEvent;

/// One published event as subscribers receive it.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct BusEvent {
    pub event: Arc<GatewayEvent>,
    /// The envelope `{"event","payload","timestamp","source"}` as one JSON text, shared by
    /// every subscriber (a WebSocket frame takes it as is: no copy per dashboard).
    pub json: bytestring::ByteString,
}

/// Publish an event to every subscriber.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Publish(pub GatewayEvent);

/// Receive every event from now on, until the recipient's actor stops.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Subscribe(pub Recipient<BusEvent>);

/// Receive only the events with these wire names (e.g. `approval:required`).
#[derive(Message)]
#[rtype(result = "()")]
pub struct SubscribeTo {
    pub names: &'static [&'static str],
    pub recipient: Recipient<BusEvent>,
}

/// How many subscribers are attached (for health and benchmarks).
#[derive(Message)]
#[rtype(result = "usize")]
pub struct SubscriberCount;

#[derive(Default)]
pub struct EventBus {
    subscribers: Vec<Recipient<BusEvent>>,
    /// Subscribers to a few events only: not woken by the rest.
    filtered: Vec<(&'static [&'static str], Recipient<BusEvent>)>,
}

impl Actor for EventBus {
    type Context = Context<Self>;
}

impl Supervised for EventBus {}

#[derive(Serialize)]
struct Envelope<'a> {
    #[serde(flatten)]
    event: &'a GatewayEvent,
    timestamp: String,
    source: &'static str,
}

impl Handler<Publish> for EventBus {
    type Result = ();

    fn handle(&mut self, Publish(event): Publish, _: &mut Context<Self>) {
        let envelope = Envelope {
            event: &event,
            timestamp: crate::time::rfc3339(crate::time::now_ms()),
            source: "loop-gateway",
        };
        let json: bytestring::ByteString = match serde_json::to_string(&envelope) {
            Ok(s) => s.into(),
            Err(e) => {
                tracing::error!(error = %e, "event could not be serialised");
                return;
            }
        };
        let msg = BusEvent {
            event: Arc::new(event),
            json,
        };
        // A subscriber whose actor has stopped is dropped here. `do_send` never waits on a
        // subscriber's mailbox, so one slow subscriber cannot hold up the bus.
        self.subscribers.retain(|s| {
            if s.connected() {
                s.do_send(msg.clone());
                true
            } else {
                false
            }
        });
        if !self.filtered.is_empty() {
            let name = msg.event.name();
            self.filtered.retain(|(names, s)| {
                if !s.connected() {
                    return false;
                }
                if names.contains(&name) {
                    s.do_send(msg.clone());
                }
                true
            });
        }
    }
}

impl Handler<SubscribeTo> for EventBus {
    type Result = ();

    fn handle(&mut self, msg: SubscribeTo, _: &mut Context<Self>) {
        self.filtered.push((msg.names, msg.recipient));
    }
}

impl Handler<Subscribe> for EventBus {
    type Result = ();

    fn handle(&mut self, Subscribe(r): Subscribe, _: &mut Context<Self>) {
        self.subscribers.push(r);
    }
}

impl Handler<SubscriberCount> for EventBus {
    type Result = usize;

    fn handle(&mut self, _: SubscriberCount, _: &mut Context<Self>) -> usize {
        self.subscribers.retain(|s| s.connected());
        self.filtered.retain(|(_, s)| s.connected());
        self.subscribers.len() + self.filtered.len()
    }
}
