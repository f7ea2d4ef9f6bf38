//! Loop Gateway's actor tree: every long-lived or concurrent part of the gateway is an actix
//! actor here, and they talk only through the typed messages declared next to each actor.

pub mod agents;
pub mod approvals;
pub mod budgets;
pub mod bus;
pub mod channels;
pub mod events;
pub mod groups;
pub mod pricing;
pub mod secrets;
pub mod skills;
pub mod store;
pub mod supervise;
pub mod tasks;
pub mod time;
pub mod webhooks;

pub use bus::{BusEvent, EventBus, Publish, Subscribe};
pub use events::GatewayEvent;
pub use secrets::{SecretBox, SecretError};
pub use store::{Store, StoreError};
pub use supervise::{ActorStatus, GetSupervisionTree, Supervision};

/// A time-ordered id: a UUIDv7 (millisecond timestamp first) with all 74 of its other bits
/// random. New rows then land at the end of the id indexes instead of on a random page, so a
/// commit writes fewer pages; the random part keeps the ids unguessable (conversation ids let
/// a webhook caller continue a conversation).
pub fn time_ordered_id() -> String {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let random: [u8; 10] = rand::random();
    uuid::Builder::from_unix_timestamp_millis(millis, &random)
        .into_uuid()
        .to_string()
}
