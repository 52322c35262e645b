//! What `corelane serve --journal` writes: one record per PUBLISH.

use rkyv::munge::munge;
use rkyv::rancor::Fallible;
use rkyv::ser::{Allocator, Writer};
use rkyv::vec::{ArchivedVec, VecResolver};
use rkyv::{Archive, Place, Serialize};

use crate::frame::{Encodes, Message};

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

/// A [`Published`] of borrowed bytes, archived exactly as one
/// (`Encodes<Published>`), so that a core journals a PUBLISH straight from
/// the client's request, with no owned copy in between.
///
/// Written by hand, as rkyv's derive cannot mirror a struct that borrows
/// (see [`Encodes`](crate::frame::Encodes)): the fields are serialized and
/// resolved in `Published`'s order. The test
/// `borrowed_record_archives_as_published` checks the bytes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PublishedRef<'a> {
    pub(crate) channel: &'a [u8],
    pub(crate) payload: &'a [u8],
    pub(crate) time_ns: u64,
}

impl Archive for PublishedRef<'_> {
    type Archived = ArchivedPublished;
    /// Where the channel's and the payload's bytes went.
    type Resolver = (VecResolver, VecResolver);

    fn resolve(&self, (channel, payload): Self::Resolver, out: Place<ArchivedPublished>) {
        munge!(let ArchivedPublished { channel: out_channel, payload: out_payload, time_ns: out_time } = out);
        ArchivedVec::resolve_from_slice(self.channel, channel, out_channel);
        ArchivedVec::resolve_from_slice(self.payload, payload, out_payload);
        self.time_ns.resolve((), out_time);
    }
}

// SAFETY: a `PublishedRef` archives to exactly a `Published`'s bytes: its
// fields are serialized and resolved in `Published`'s order, with the same
// archived types (`borrowed_record_archives_as_published` compares them).
unsafe impl Encodes<Published> for PublishedRef<'_> {}

impl<S: Fallible + Allocator + Writer + ?Sized> Serialize<S> for PublishedRef<'_> {
    fn serialize(&self, serializer: &mut S) -> Result<Self::Resolver, S::Error> {
        Ok((
            ArchivedVec::serialize_from_slice(self.channel, serializer)?,
            ArchivedVec::serialize_from_slice(self.payload, serializer)?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use rkyv::ser::allocator::Arena;

    use super::*;
    use crate::frame::envelope::encode_owned;

    #[test]
    fn borrowed_record_archives_as_published() {
        let mut arena = Arena::new();
        let long = vec![0xa5; 3000];
        let cases: [(&[u8], &[u8], u64); 4] = [
            (b"news", b"hello", 1_733_390_000_123_456_789),
            (b"", b"", 0),
            (b"a channel", &long, u64::MAX),
            (&long[..17], b"\x00\r\n", 42),
        ];
        for (channel, payload, time_ns) in cases {
            let view = PublishedRef {
                channel,
                payload,
                time_ns,
            };
            let owned = Published {
                channel: channel.to_vec(),
                payload: payload.to_vec(),
                time_ns,
            };
            let from_view = encode_owned(&view, &mut arena).unwrap();
            let from_owned = encode_owned(&owned, &mut arena).unwrap();
            assert_eq!(from_view.as_slice(), from_owned.as_slice());
            let archived = rkyv::access::<ArchivedPublished, rkyv::rancor::Error>(&from_view)
                .expect("a valid Published archive");
            assert_eq!(archived.channel.as_slice(), channel);
            assert_eq!(archived.payload.as_slice(), payload);
            assert_eq!(archived.time_ns.to_native(), time_ns);
        }
    }
}
