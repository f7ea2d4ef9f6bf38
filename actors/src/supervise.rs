//! Supervision: long-lived actors run inside a [`Guardian`] that survives their panics,
//! restarts them in place (the same mailbox, so every `Addr` held elsewhere stays valid) after an
//! exponential backoff, and reports each restart to the [`Supervision`] registry, which
//! `/api/health` shows and which publishes `actor:restarted` on the bus.
//!
//! actix's own `Supervisor` restarts an actor that stops, but a panic unwinds straight through
//! it and the actor is gone; the Guardian catches the unwind around each poll instead.

use std::collections::BTreeMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use actix::dev::{channel, ContextFut};
use actix::prelude::*;
use serde::Serialize;

use crate::bus::{EventBus, Publish};
use crate::events::GatewayEvent;

const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A run this long without a panic resets the backoff.
const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(60);

/// A supervised actor panicked and is being restarted.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ActorRestarted {
    pub name: &'static str,
    pub reason: String,
}

/// Register a supervised actor so that it is listed even before its first restart.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RegisterActor(pub &'static str);

/// The supervised actors and their restart counts, for `/api/health`.
#[derive(Message)]
#[rtype(result = "Vec<ActorStatus>")]
pub struct GetSupervisionTree;

/// Tell the registry where to publish restart events (the bus starts after the registry).
#[derive(Message)]
#[rtype(result = "()")]
pub struct AttachBus(pub Addr<EventBus>);

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ActorStatus {
    pub name: &'static str,
    pub restarts: u64,
    pub last_restart_reason: Option<String>,
}

/// Registry of supervised actors; the root of the tree that `/api/health` shows.
#[derive(Default)]
pub struct Supervision {
    actors: BTreeMap<&'static str, ActorStatus>,
    bus: Option<Addr<EventBus>>,
}

impl Actor for Supervision {
    type Context = Context<Self>;
}

impl Handler<ActorRestarted> for Supervision {
    type Result = ();

    fn handle(&mut self, msg: ActorRestarted, _: &mut Context<Self>) {
        let entry = self.actors.entry(msg.name).or_insert(ActorStatus {
            name: msg.name,
            restarts: 0,
            last_restart_reason: None,
        });
        entry.restarts += 1;
        entry.last_restart_reason = Some(msg.reason);
        if let Some(bus) = &self.bus {
            bus.do_send(Publish(GatewayEvent::ActorRestarted {
                actor: msg.name.to_string(),
                restarts: entry.restarts,
            }));
        }
    }
}

impl Handler<RegisterActor> for Supervision {
    type Result = ();

    fn handle(&mut self, RegisterActor(name): RegisterActor, _: &mut Context<Self>) {
        self.actors.entry(name).or_insert(ActorStatus {
            name,
            restarts: 0,
            last_restart_reason: None,
        });
    }
}

impl Handler<GetSupervisionTree> for Supervision {
    type Result = MessageResult<GetSupervisionTree>;

    fn handle(&mut self, _: GetSupervisionTree, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.actors.values().cloned().collect())
    }
}

impl Handler<AttachBus> for Supervision {
    type Result = ();

    fn handle(&mut self, AttachBus(bus): AttachBus, _: &mut Context<Self>) {
        self.bus = Some(bus);
    }
}

/// Start `make`'s actor under a [`Guardian`] on the current arbiter.
pub fn start_supervised<A, F>(name: &'static str, registry: &Addr<Supervision>, make: F) -> Addr<A>
where
    A: Actor<Context = Context<A>> + actix::Supervised,
    F: FnOnce(&mut Context<A>) -> A,
{
    let (tx, rx) = channel::channel(16);
    let mut ctx = Context::with_receiver(rx);
    let act = make(&mut ctx);
    let fut = ctx.into_future(act);
    registry.do_send(RegisterActor(name));
    actix_rt::spawn(Guardian {
        fut,
        name,
        registry: registry.clone(),
        backoff: BACKOFF_START,
        running_since: tokio::time::Instant::now(),
        sleeping: None,
    });
    Addr::new(tx)
}

/// The future that runs a supervised actor and brings it back after a panic.
pub struct Guardian<A: Actor<Context = Context<A>>> {
    fut: ContextFut<A, Context<A>>,
    name: &'static str,
    registry: Addr<Supervision>,
    backoff: Duration,
    running_since: tokio::time::Instant,
    sleeping: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<A> Future for Guardian<A>
where
    A: Actor<Context = Context<A>> + actix::Supervised,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<()> {
        // Every field is Unpin (the ContextFut is), so the Guardian is too.
        let this = self.get_mut();
        loop {
            if let Some(sleep) = this.sleeping.as_mut() {
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                this.sleeping = None;
                if !this.fut.restart() {
                    return Poll::Ready(());
                }
                this.running_since = tokio::time::Instant::now();
            }
            let polled =
                std::panic::catch_unwind(AssertUnwindSafe(|| Pin::new(&mut this.fut).poll(cx)));
            match polled {
                Ok(Poll::Pending) => return Poll::Pending,
                // Stopped on its own: restart at once, as actix's Supervisor does, while anyone
                // still holds its address.
                Ok(Poll::Ready(())) => {
                    if !this.fut.restart() {
                        return Poll::Ready(());
                    }
                }
                Err(panic) => {
                    let reason = panic_message(&panic);
                    if this.running_since.elapsed() > BACKOFF_RESET_AFTER {
                        this.backoff = BACKOFF_START;
                    }
                    tracing::error!(actor = this.name, %reason, backoff_ms = this.backoff.as_millis() as u64,
                        "supervised actor panicked; restarting after backoff");
                    this.registry.do_send(ActorRestarted {
                        name: this.name,
                        reason,
                    });
                    this.sleeping = Some(Box::pin(tokio::time::sleep(this.backoff)));
                    this.backoff = (this.backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }
}

/// The text of a panic payload, when it has one.
pub fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Fragile {
        handled: u32,
    }
    impl Actor for Fragile {
        type Context = Context<Self>;
    }
    impl actix::Supervised for Fragile {}

    #[derive(Message)]
    #[rtype(result = "u32")]
    struct Poke {
        explode: bool,
    }

    impl Handler<Poke> for Fragile {
        type Result = u32;
        fn handle(&mut self, msg: Poke, _: &mut Context<Self>) -> u32 {
            if msg.explode {
                panic!("boom");
            }
            self.handled += 1;
            self.handled
        }
    }

    #[actix_rt::test]
    async fn a_panicking_actor_is_restarted_at_the_same_address() {
        let registry = Supervision::default().start();
        let addr = start_supervised("fragile", &registry, |_| Fragile::default());
        assert_eq!(addr.send(Poke { explode: false }).await.unwrap(), 1);
        // The poke that panics gets no answer...
        assert!(addr.send(Poke { explode: true }).await.is_err());
        // ...but the same address serves again after the backoff, state kept.
        assert_eq!(addr.send(Poke { explode: false }).await.unwrap(), 2);
        let tree = registry.send(GetSupervisionTree).await.unwrap();
        assert_eq!(tree.len(), 1);
        assert_eq!(tree[0].restarts, 1);
        assert_eq!(tree[0].last_restart_reason.as_deref(), Some("boom"));
    }
}
