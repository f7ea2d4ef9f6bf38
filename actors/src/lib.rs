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
