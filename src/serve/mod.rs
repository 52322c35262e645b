//! The Redis-protocol side of corelane: what a pub/sub server needs to talk
//! to ordinary Redis clients.
//!
//! - [`resp`]: an incremental parser for the requests clients send, RESP2
//!   arrays of bulk strings and inline commands alike.
//! - [`reply`]: RESP2 reply encoding into a byte buffer.
//! - [`glob`]: the glob matching `PSUBSCRIBE` patterns use.
//!
//! These three touch no socket: the parser reads from a buffer the caller
//! fills, and replies are appended to a buffer the caller writes out.

mod client_list;
mod command_name;
mod commands;
mod connection;
pub mod glob;
mod info;
pub mod journal;
pub mod message;
mod output;
pub mod published;
mod pubsub;
mod redis_commands;
pub mod reply;
pub mod resp;
mod server;

pub use message::ServerMsg;
pub use published::Published;
pub use server::{ServeError, Server, ServerConfig};
