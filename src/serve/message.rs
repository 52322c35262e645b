//! What the server's cores say to each other through their lanes.

use crate::frame::Message;

/// A message between the server's cores.
#[derive(rkyv::Archive, rkyv::Serialize, Clone, Debug, PartialEq, Eq)]
pub enum ServerMsg {
    /// A PUBLISH made on the sending core, for the receiver's subscribers.
    Publish {
        /// The channel.
        channel: Vec<u8>,
        /// The message.
        payload: Vec<u8>,
    },
    /// A client connection accepted by core 0, handed to the receiver, which
    /// owns it from now on. The descriptor travels only through this
    /// process's own lanes.
    Adopt {
        /// The socket's file descriptor.
        fd: i32,
    },
    /// The sender's subscribers to a channel or pattern changed by `delta`:
    /// the receiver forwards a PUBLISH to the sender only while the sender
    /// has subscribers that want it.
    Interest {
        /// The channel or pattern.
        name: Vec<u8>,
        /// Whether `name` is a pattern.
        pattern: bool,
        /// +1 for a subscription, -1 for its end.
        delta: i32,
        /// Connection (slab key, id) on the sender waiting for an [`Ack`]
        /// before its SUBSCRIBE reply may go out; id 0 wants none.
        ///
        /// [`Ack`]: ServerMsg::Ack
        waiter: (u32, u64),
    },
    /// The receiver has applied an `Interest` for this waiting connection.
    Ack {
        /// The waiting connection's (slab key, id) on the receiver.
        waiter: (u32, u64),
    },
}

impl Message for ServerMsg {
    const TYPE_ID: u16 = 0x5250; // "RP"
    const VERSION: u8 = 1;
    const NAME: &'static str = "ServerMsg";

    fn kind(archived: &ArchivedServerMsg) -> &'static str {
        match archived {
            ArchivedServerMsg::Publish { .. } => "PUBLISH forward",
            ArchivedServerMsg::Adopt { .. } => "connection hand-over",
            ArchivedServerMsg::Interest { .. } => "subscription notice",
            ArchivedServerMsg::Ack { .. } => "subscription acknowledgement",
        }
    }
}

impl ServerMsg {
    /// The name reports use for this kind of message.
    pub fn kind_name(&self) -> &'static str {
        match self {
            ServerMsg::Publish { .. } => "PUBLISH forward",
            ServerMsg::Adopt { .. } => "connection hand-over",
            ServerMsg::Interest { .. } => "subscription notice",
            ServerMsg::Ack { .. } => "subscription acknowledgement",
        }
    }

    /// Bytes this message holds beyond its fixed size, for accounting the
    /// memory of messages waiting for a lane.
    pub fn heap_len(&self) -> usize {
        match self {
            ServerMsg::Publish { channel, payload } => channel.len() + payload.len(),
            ServerMsg::Interest { name, .. } => name.len(),
            ServerMsg::Adopt { .. } | ServerMsg::Ack { .. } => 0,
        }
    }
}
