//! Errors of the admin listener.
//!
//! Owns [`AdminError`]. Only start-up can fail in a way the caller must handle; errors of
//! single HTTP connections are logged at debug level and end that connection only.

use std::net::SocketAddr;

/// Why the admin listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The address could not be bound (in use, not a local address, permission).
    #[error("cannot bind the admin listener to {address}")]
    Bind {
        /// The configured `admin.listen` address.
        address: SocketAddr,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },

    /// The bound socket could not report its address.
    #[error("cannot read the local address of the admin listener bound to {address}")]
    LocalAddr {
        /// The configured address.
        address: SocketAddr,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
}
