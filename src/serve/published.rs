//! What `corelane serve --journal` writes: one record per PUBLISH.

use crate::frame::Message;

/// A message published on the server, as journaled by the publishing
/// connection's core before it is delivered to anyone.
#[derive(rkyv::Archive, rkyv::Serialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct Published {
    /// The channel.
    pub channel: Vec<u8>,
    /// The message.
    pub payload: Vec<u8>,
    /// When the server received it, nanoseconds since the Unix epoch.
    pub time_ns: u64,
}

impl Message for Published {
    const TYPE_ID: u16 = 0x5042; // "PB"
    const VERSION: u8 = 1;
    const NAME: &'static str = "Published";
}
