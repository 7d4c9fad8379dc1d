//! Puts the services together into running nodes.
//!
//! [`serve`] runs one service on one listener with health checks and reflection beside it
//! ([`serve_node`]: for every pool a node serves, dispatched by the pool a call addresses);
//! [`LocalNetwork`] runs every service of every enabled city and the clearing house in one
//! process (what `yitong dev` and the test sandbox run).

mod audit;
mod dispatch;
pub mod frames;
pub mod limits;
mod local;
mod security;
mod server;
pub mod shed;

pub use audit::AuditNode;
pub use local::{Bind, Endpoint, LocalNetwork, LocalNetworkOptions, NodeError};
pub use security::{DEV_OPERATOR, Security, SecurityError, development_callers};
pub use server::{Role, ServeError, serve, serve_node};
