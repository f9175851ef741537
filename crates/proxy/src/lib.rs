//! The pgcordon proxy: accepts mTLS clients, reads their identity from the certificate, and runs
//! their transactions on pooled, SCRAM-authenticated backend sessions on which the identity has
//! been injected (see `inject`). It wires the other crates together: wire framing, TLS and
//! identity, the statement guard, the upstream connector and the pool.
//!
//! Module map: `listener` binds and accepts; `handshake` runs the pre-TLS negotiation and TLS;
//! `startup` checks the StartupMessage and greets the client; `session` forwards messages and
//! decides transaction boundaries; `inject` writes the identity; `errors` maps every client-facing
//! error to its SQLSTATE.

mod backend_io;
mod cancel;
mod errors;
mod handshake;
mod inject;
mod listener;
mod observe;
mod params;
mod prepared;
mod reload;
mod responses;
mod route;
mod session;
mod settings;
mod startup;

pub use errors::ClientError;
pub use listener::{BoundProxy, Proxy};
pub use observe::Observability;
pub use reload::Reloader;
pub use route::{RouteSettings, RoutingMode, WriteScope};
pub use settings::ReplicaSettings;
pub use settings::{LoadError, PoolMode, ProxySettings, SettingsError};
