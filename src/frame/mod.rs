//! The one record format: a fixed header and an rkyv archive as payload.
//!
//! The same frame bytes travel through a lane between cores, a ring shared
//! with another process and the journal on disk. [`layout`] names the header
//! fields; [`envelope`] turns a typed [`Message`] into a payload written in
//! place and back into a reference to its archive, read in place.

pub mod envelope;
pub mod layout;

pub use envelope::{Encode, Encodes, FrameError, Message};
pub use layout::{FrameMeta, FRAME_ALIGN, HEADER_LEN};
