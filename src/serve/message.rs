//! What the server's cores say to each other through their lanes.

use rkyv::with::{AsVec, Inline};

pub use super::client_list::{ArchivedClientFilter, ArchivedClientType, ClientFilter, ClientType};
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
    /// The sender's connection (slab key, id) asks for the receiver's lines
    /// of CLIENT LIST, answered with [`ClientLines`].
    ///
    /// [`ClientLines`]: ServerMsg::ClientLines
    ListClients {
        /// The asking connection on the sender.
        waiter: (u32, u64),
        /// Which of the receiver's connections to list.
        filter: ClientFilter,
    },
    /// Part of the receiver's lines of CLIENT LIST for the waiting
    /// connection: a core's lines may take several messages, each within
    /// a lane frame, the last one marked.
    ClientLines {
        /// The asking connection's (slab key, id) on the receiver.
        waiter: (u32, u64),
        /// The next bytes of the sender's lines.
        lines: Vec<u8>,
        /// Whether these are the sender's last bytes.
        last: bool,
    },
}

/// A [`ServerMsg`] made of borrowed bytes, archived exactly as one: a core
/// archives a PUBLISH forward or a subscription notice into each lane
/// straight from the client's request, with no owned copy in between.
///
/// It mirrors `ServerMsg`: the same variants with the same fields in the
/// same order, byte strings borrowed and archived as the vectors they stand
/// for (`AsVec`). The compiler checks the archived type; the test
/// `mirror_archives_as_server_msg` checks the bytes.
#[derive(rkyv::Archive, rkyv::Serialize, Clone, Copy, Debug)]
#[rkyv(as = ArchivedServerMsg)]
pub(crate) enum ServerMsgRef<'a> {
    /// [`ServerMsg::Publish`].
    Publish {
        #[rkyv(with = AsVec)]
        channel: &'a [u8],
        #[rkyv(with = AsVec)]
        payload: &'a [u8],
    },
    /// [`ServerMsg::Adopt`].
    Adopt { fd: i32 },
    /// [`ServerMsg::Interest`].
    Interest {
        #[rkyv(with = AsVec)]
        name: &'a [u8],
        pattern: bool,
        delta: i32,
        waiter: (u32, u64),
    },
    /// [`ServerMsg::Ack`].
    Ack { waiter: (u32, u64) },
    /// [`ServerMsg::ListClients`].
    ListClients {
        waiter: (u32, u64),
        #[rkyv(with = Inline)]
        filter: &'a ClientFilter,
    },
    /// [`ServerMsg::ClientLines`].
    ClientLines {
        waiter: (u32, u64),
        #[rkyv(with = AsVec)]
        lines: &'a [u8],
        last: bool,
    },
}

// SAFETY: every variant mirrors `ServerMsg`'s, in the same order, with the
// same fields in the same order, and archives to the same bytes (checked
// variant by variant by `mirror_archives_as_server_msg`).
unsafe impl crate::frame::Encodes<ServerMsg> for ServerMsgRef<'_> {}

impl ServerMsgRef<'_> {
    /// The same message, owned: for one that has to wait for room.
    pub(crate) fn to_msg(self) -> ServerMsg {
        match self {
            ServerMsgRef::Publish { channel, payload } => ServerMsg::Publish {
                channel: channel.to_vec(),
                payload: payload.to_vec(),
            },
            ServerMsgRef::Adopt { fd } => ServerMsg::Adopt { fd },
            ServerMsgRef::Interest {
                name,
                pattern,
                delta,
                waiter,
            } => ServerMsg::Interest {
                name: name.to_vec(),
                pattern,
                delta,
                waiter,
            },
            ServerMsgRef::Ack { waiter } => ServerMsg::Ack { waiter },
            ServerMsgRef::ListClients { waiter, filter } => ServerMsg::ListClients {
                waiter,
                filter: filter.clone(),
            },
            ServerMsgRef::ClientLines {
                waiter,
                lines,
                last,
            } => ServerMsg::ClientLines {
                waiter,
                lines: lines.to_vec(),
                last,
            },
        }
    }
}

impl Message for ServerMsg {
    const TYPE_ID: u16 = 0x5250; // "RP"

    // 2: CLIENT LIST gathered from every core.
    // 3: CLIENT LIST's request carries its filter (TYPE, ID).
    const VERSION: u8 = 3;
    const NAME: &'static str = "ServerMsg";

    fn kind(archived: &ArchivedServerMsg) -> &'static str {
        match archived {
            ArchivedServerMsg::Publish { .. } => "PUBLISH forward",
            ArchivedServerMsg::Adopt { .. } => "connection hand-over",
            ArchivedServerMsg::Interest { .. } => "subscription notice",
            ArchivedServerMsg::Ack { .. } => "subscription acknowledgement",
            ArchivedServerMsg::ListClients { .. } => "client list request",
            ArchivedServerMsg::ClientLines { .. } => "client list lines",
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
            ServerMsg::ListClients { .. } => "client list request",
            ServerMsg::ClientLines { .. } => "client list lines",
        }
    }

    /// Bytes this message holds beyond its fixed size, for accounting the
    /// memory of messages waiting for a lane.
    pub fn heap_len(&self) -> usize {
        match self {
            ServerMsg::Publish { channel, payload } => channel.len() + payload.len(),
            ServerMsg::Interest { name, .. } => name.len(),
            ServerMsg::ClientLines { lines, .. } => lines.len(),
            ServerMsg::ListClients { filter, .. } => match filter {
                ClientFilter::Ids(ids) => ids.len() * std::mem::size_of::<u64>(),
                ClientFilter::All | ClientFilter::Type(_) => 0,
            },
            ServerMsg::Adopt { .. } | ServerMsg::Ack { .. } => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use rkyv::ser::allocator::Arena;

    use super::*;
    use crate::frame::envelope::encode_owned;

    /// Every variant of the mirror archives to the very bytes of the owned
    /// message it stands for, so a frame written from a `ServerMsgRef` is a
    /// `ServerMsg` to its reader.
    #[test]
    fn mirror_archives_as_server_msg() {
        let channel = b"news.sport".as_slice();
        let payload = b"\x00binary\xffpayload of some length".as_slice();
        let ids = ClientFilter::Ids(vec![2, 5, u64::MAX]);
        let mirrors = [
            ServerMsgRef::Publish { channel, payload },
            ServerMsgRef::Publish {
                channel: b"",
                payload: b"",
            },
            ServerMsgRef::Adopt { fd: 42 },
            ServerMsgRef::Interest {
                name: b"news.*",
                pattern: true,
                delta: -1,
                waiter: (7, 0x0123_4567_89ab_cdef),
            },
            ServerMsgRef::Ack {
                waiter: (u32::MAX, 3),
            },
            ServerMsgRef::ListClients {
                waiter: (9, u64::MAX),
                filter: &ClientFilter::All,
            },
            ServerMsgRef::ListClients {
                waiter: (9, 2),
                filter: &ClientFilter::Type(ClientType::Pubsub),
            },
            ServerMsgRef::ListClients {
                waiter: (1, 8),
                filter: &ids,
            },
            ServerMsgRef::ClientLines {
                waiter: (0, 1),
                lines: b"id=1 addr=127.0.0.1:5000 core=1\n",
                last: true,
            },
            ServerMsgRef::ClientLines {
                waiter: (3, 4),
                lines: b"",
                last: false,
            },
        ];
        let mut arena = Arena::new();
        for mirror in mirrors {
            let owned = mirror.to_msg();
            let from_mirror = encode_owned(&mirror, &mut arena).unwrap();
            let from_owned = encode_owned(&owned, &mut arena).unwrap();
            assert_eq!(from_mirror.as_slice(), from_owned.as_slice(), "{owned:?}");
            let archived = rkyv::access::<ArchivedServerMsg, rkyv::rancor::Error>(&from_mirror)
                .expect("a valid ServerMsg archive");
            assert_eq!(ServerMsg::kind(archived), owned.kind_name());
        }
    }
}
