//! PostgreSQL wire protocol pieces that pgcordon needs on its hot path.
//!
//! This crate owns framing (a tag byte, a length, the body kept as `Bytes`), the untrusted first
//! packet of a connection (SSLRequest, GSSENCRequest, CancelRequest, StartupMessage), the small
//! set of server messages pgcordon writes itself (errors, authentication, parameters, ready), and
//! cheap readers for the few fields pooling and identity need (a Query's text, a Parse's name and
//! text, a ReadyForQuery status, an error's SQLSTATE). It decodes nothing else: forwarded messages
//! stay opaque bytes. It follows the "Frontend/Backend Protocol" chapter of the PostgreSQL
//! documentation, protocol 3.0.
//!
//! It does not do I/O, TLS, or authentication; callers feed it bytes.

pub mod frame;
pub mod inspect;
pub mod server;
pub mod startup;

pub use frame::{decode_frame, FrameError, RawMessage};
pub use startup::{decode_startup, FirstPacket, StartupError, StartupParams, MAX_STARTUP_PACKET};
