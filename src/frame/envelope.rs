//! Typed messages in frames: rkyv archives written once, read where they lie.
//!
//! A [`Message`] names its type id, format version and a human name. The
//! writer serializes it straight into the payload space a ring has lent
//! ([`encode_into`]); the reader checks type and version before it touches
//! the payload ([`check_type`]) and then reads the archive in place, without
//! validation for frames this process wrote into its own memory
//! ([`access_trusted`]) and with rkyv's validation for anything else
//! ([`access_untrusted`]).

use std::fmt;

use rkyv::api::high::{HighSerializer, HighValidator};
use rkyv::bytecheck::CheckBytes;
use rkyv::rancor;
use rkyv::ser::allocator::{Arena, ArenaHandle};
use rkyv::ser::writer::Buffer;
use rkyv::ser::{Positional, Writer};
use rkyv::util::AlignedVec;
use rkyv::{Archive, Archived, Serialize};

use super::layout::FrameMeta;

/// The serializer a [`Message`] must support: rkyv's high-level serializer
/// writing into a borrowed buffer, with scratch space from an arena.
///
/// Its error is [`rancor::Failure`], which carries no detail and so never
/// allocates: running out of room is the expected way for an attempt to
/// fail (a frame at the end of a ring), and [`encoded_len`] gives the
/// detail of any other failure.
pub type InPlaceSerializer<'a> = HighSerializer<Buffer<'a>, ArenaHandle<'a>, rancor::Failure>;

/// The serializer used on the slow path to learn a message's exact size:
/// it counts the bytes and keeps none ([`ByteCount`]).
pub type SizingSerializer<'a> = HighSerializer<ByteCount, ArenaHandle<'a>, rancor::Error>;

/// A writer that keeps only the number of bytes written to it, so that
/// [`encoded_len`] learns the length of an archive without buffering it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ByteCount {
    len: usize,
}

impl ByteCount {
    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing has been written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Positional for ByteCount {
    fn pos(&self) -> usize {
        self.len
    }
}

impl<E> Writer<E> for ByteCount {
    fn write(&mut self, bytes: &[u8]) -> Result<(), E> {
        self.len += bytes.len();
        Ok(())
    }
}

/// A value the envelope's functions can archive: anything rkyv can write
/// with both the in-place and the sizing serializer. Every [`Message`] is
/// one.
pub trait Encode:
    for<'a> Serialize<InPlaceSerializer<'a>> + for<'a> Serialize<SizingSerializer<'a>>
{
}

impl<T> Encode for T where
    T: for<'a> Serialize<InPlaceSerializer<'a>> + for<'a> Serialize<SizingSerializer<'a>>
{
}

/// A value whose archive *is* an archive of `M`: `M` itself, or a view of
/// an `M` built from borrowed parts, so that a sender can archive bytes it
/// does not own straight into a frame instead of first copying them into an
/// owned `M`.
///
/// A view is usually a mirror of `M` with `#[rkyv(as = ArchivedM)]`, the
/// same variants or fields in the same order, and borrowed fields archived
/// with `#[rkyv(with = rkyv::with::AsVec)]` (for `&[T]` in place of
/// `Vec<T>`). (With rkyv 0.8's derive this works for enums; a struct mirror
/// with a lifetime does not compile, as the derive's bounds hide its
/// fields' archived types; implement `Archive` by hand or make the message
/// an enum.)
///
/// # Examples
///
/// A view of a struct message, written by hand: it resolves into the
/// message's archived fields with the message's own resolver, and a
/// `&str` archives as the `String` it stands for.
///
/// ```
/// use corelane::frame::{Encodes, Message};
/// use rkyv::rancor::{Fallible, Source};
/// use rkyv::ser::Writer;
/// use rkyv::string::ArchivedString;
/// use rkyv::{munge::munge, Archive, Place, Serialize};
///
/// #[derive(rkyv::Archive, rkyv::Serialize)]
/// struct Quote {
///     symbol: String,
///     price: u64,
/// }
///
/// impl Message for Quote {
///     const TYPE_ID: u16 = 7;
///     const VERSION: u8 = 1;
///     const NAME: &'static str = "Quote";
/// }
///
/// /// A `Quote` whose symbol is borrowed, say from a request being parsed.
/// struct QuoteView<'a> {
///     symbol: &'a str,
///     price: u64,
/// }
///
/// impl Archive for QuoteView<'_> {
///     type Archived = ArchivedQuote;
///     type Resolver = QuoteResolver;
///
///     fn resolve(&self, resolver: QuoteResolver, out: Place<ArchivedQuote>) {
///         munge!(let ArchivedQuote { symbol, price } = out);
///         ArchivedString::resolve_from_str(self.symbol, resolver.symbol, symbol);
///         self.price.resolve(resolver.price, price);
///     }
/// }
///
/// impl<S: Fallible + Writer + ?Sized> Serialize<S> for QuoteView<'_>
/// where
///     S::Error: Source,
/// {
///     fn serialize(&self, serializer: &mut S) -> Result<QuoteResolver, S::Error> {
///         Ok(QuoteResolver {
///             symbol: ArchivedString::serialize_from_str(self.symbol, serializer)?,
///             price: self.price.serialize(serializer)?,
///         })
///     }
/// }
///
/// // SAFETY: `QuoteView` archives to exactly a `Quote`'s bytes: its fields
/// // are serialized and resolved in `Quote`'s order (checked below).
/// unsafe impl Encodes<Quote> for QuoteView<'_> {}
///
/// fn sendable<T: Encodes<Quote>>(_: &T) {} // what `Context::send` asks
///
/// let line = String::from("ACME 101");
/// let view = QuoteView { symbol: &line[..4], price: 101 };
/// sendable(&view);
///
/// // The test to keep: the view archives to the message's bytes.
/// let owned = Quote { symbol: "ACME".into(), price: 101 };
/// let from_view = rkyv::to_bytes::<rkyv::rancor::Error>(&view)?;
/// let from_owned = rkyv::to_bytes::<rkyv::rancor::Error>(&owned)?;
/// assert_eq!(from_view[..], from_owned[..]);
/// # Ok::<(), rkyv::rancor::Error>(())
/// ```
///
/// An enum message's mirror derives (`#[rkyv(as = ArchivedMsg)]` on an
/// enum of borrowed fields); `corelane serve`'s `ServerMsgRef`, in
/// `src/serve/message.rs`, is one.
/// # Safety
///
/// The compiler checks only that the archived *types* are the same, not
/// the bytes: a mirror whose variants are in another order still compiles,
/// and writes one variant's fields under another's tag. Receivers read
/// frames from their own process without validation, so such bytes (a
/// vector's offset made of two integers, say) would send them reading
/// anywhere. Implement this trait for a view only when its archive is
/// byte for byte the archive of the `M` it stands for, and keep a test that
/// compares the two for every variant. Every `M` encodes itself.
///
/// A derived mirror is not sendable until it is vouched for:
///
/// ```compile_fail,E0277
/// use corelane::frame::Message;
/// use corelane::runtime::{Context, Handler};
///
/// #[derive(rkyv::Archive, rkyv::Serialize)]
/// enum Note {
///     Text { text: Vec<u8> },
/// }
///
/// impl Message for Note {
///     const TYPE_ID: u16 = 1;
///     const VERSION: u8 = 1;
///     const NAME: &'static str = "Note";
/// }
///
/// #[derive(rkyv::Archive, rkyv::Serialize)]
/// #[rkyv(as = ArchivedNote)]
/// enum NoteView<'a> {
///     Text {
///         #[rkyv(with = rkyv::with::AsVec)]
///         text: &'a [u8],
///     },
/// }
///
/// fn forward(cx: &mut Context<'_, Note>, text: &[u8]) {
///     // No `unsafe impl Encodes<Note> for NoteView<'_> {}`: refused.
///     let _ = cx.send(1, &NoteView::Text { text });
/// }
/// ```
///
/// With `unsafe impl Encodes<Note> for NoteView<'_> {}` (and its test) it
/// compiles and sends.
pub unsafe trait Encodes<M: Message>: Encode + Archive<Archived = Archived<M>> {}

// SAFETY: an `M` archives as an `M`.
unsafe impl<M: Message> Encodes<M> for M {}

/// A message type that can travel in a frame.
///
/// # Examples
///
/// ```
/// use corelane::frame::Message;
///
/// #[derive(rkyv::Archive, rkyv::Serialize)]
/// struct Quote {
///     symbol: String,
///     price: u64,
/// }
///
/// impl Message for Quote {
///     const TYPE_ID: u16 = 7;
///     const VERSION: u8 = 1;
///     const NAME: &'static str = "Quote";
/// }
/// ```
///
/// Type id 0 marks padding frames; a message type claiming it is refused
/// when the program is built:
///
/// ```compile_fail
/// use corelane::frame::Message;
/// use corelane::lane::frames;
///
/// #[derive(rkyv::Archive, rkyv::Serialize)]
/// struct Wrong(u8);
///
/// impl Message for Wrong {
///     const TYPE_ID: u16 = 0;
///     const VERSION: u8 = 1;
///     const NAME: &'static str = "Wrong";
/// }
///
/// let (mut producer, _consumer) = frames::heap_ring(1024);
/// let mut arena = rkyv::ser::allocator::Arena::new();
/// producer.write_message(&Wrong(1), 0, &mut arena).unwrap();
/// ```
pub trait Message:
    Archive + for<'a> Serialize<InPlaceSerializer<'a>> + for<'a> Serialize<SizingSerializer<'a>>
{
    /// Type id stored in the frame header. Must not be 0 (padding).
    const TYPE_ID: u16;
    /// Format version; bump it when the archived layout changes.
    const VERSION: u8;
    /// Name used in reports (undelivered messages at shutdown, errors).
    const NAME: &'static str;

    /// A finer name for one message in reports, such as an enum's variant.
    /// Defaults to [`Message::NAME`].
    fn kind(archived: &Archived<Self>) -> &'static str {
        let _ = archived;
        Self::NAME
    }

    /// The header fields that identify this type.
    fn meta(sequence: u64, timestamp_ns: u64) -> FrameMeta {
        FrameMeta {
            msg_type: Self::TYPE_ID,
            version: Self::VERSION,
            flags: 0,
            sequence,
            timestamp_ns,
        }
    }
}

/// A frame that cannot be read as the expected message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// The frame's type id or version is not the expected one.
    UnknownType {
        /// Type id found in the header.
        type_id: u16,
        /// Version found in the header.
        version: u8,
        /// Name of the type the reader expected.
        expected: &'static str,
    },
    /// The payload failed rkyv validation.
    Invalid(String),
    /// The checksum in the header does not match the frame's bytes.
    Checksum {
        /// Checksum stored in the header.
        stored: u32,
        /// Checksum computed over the frame.
        computed: u32,
    },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::UnknownType {
                type_id,
                version,
                expected,
            } => write!(
                f,
                "unknown message type id {type_id} version {version} (expected {expected})"
            ),
            FrameError::Invalid(reason) => write!(f, "invalid payload: {reason}"),
            FrameError::Checksum { stored, computed } => write!(
                f,
                "checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"
            ),
        }
    }
}

impl std::error::Error for FrameError {}

/// Serializes `msg` into `payload`, in place, and returns the bytes used.
///
/// Returns `None` if the archive does not fit in `payload` (or, rarely, if
/// serialization itself fails); [`encoded_len`] then tells which.
pub fn encode_into<T: Encode>(msg: &T, payload: &mut [u8], arena: &mut Arena) -> Option<usize> {
    let buffer = Buffer::from(payload);
    let written = rkyv::api::high::to_bytes_in_with_alloc::<_, _, rancor::Failure>(
        msg,
        buffer,
        arena.acquire(),
    );
    written.ok().map(|buffer| buffer.len())
}

/// The exact payload length `msg` archives to, found by serializing it and
/// counting the bytes: the slow path, taken only when [`encode_into`] ran
/// out of room. Nothing is buffered, so it allocates only what the message's
/// own serialization asks of the arena.
///
/// # Errors
///
/// rkyv's error if the message cannot be serialized at all.
pub fn encoded_len<T: Encode>(msg: &T, arena: &mut Arena) -> Result<usize, rancor::Error> {
    let count = rkyv::api::high::to_bytes_in_with_alloc::<_, _, rancor::Error>(
        msg,
        ByteCount::default(),
        arena.acquire(),
    )?;
    Ok(count.len())
}

/// Serializes `msg` into a buffer of its own, of exactly its length.
///
/// # Errors
///
/// rkyv's error if the message cannot be serialized at all.
pub fn encode_owned<T: Encode>(
    msg: &T,
    arena: &mut Arena,
) -> Result<AlignedVec<16>, rancor::Error> {
    let len = encoded_len(msg, arena)?;
    // At least one byte of capacity: an empty `AlignedVec` has no
    // allocation and its address is not aligned, yet the archive of a unit
    // struct (no bytes) is still read in place from it.
    let mut bytes = AlignedVec::<16>::with_capacity(len.max(1));
    bytes.resize(len, 0);
    match encode_into(msg, &mut bytes, arena) {
        Some(written) if written == len => Ok(bytes),
        // A serialization that is not the same twice over.
        _ => Err(rancor::Source::new(SizeChanged { len })),
    }
}

/// A message whose second serialization did not take the length its first
/// one counted.
#[derive(Debug)]
pub(crate) struct SizeChanged {
    pub(crate) len: usize,
}

impl fmt::Display for SizeChanged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the message archived to {} bytes once, then to another length",
            self.len
        )
    }
}

impl std::error::Error for SizeChanged {}

/// Checks that a frame with header `meta` holds an `M`.
///
/// # Errors
///
/// [`FrameError::UnknownType`] naming the type id and version found.
pub fn check_type<M: Message>(meta: &FrameMeta) -> Result<(), FrameError> {
    if meta.msg_type == M::TYPE_ID && meta.version == M::VERSION {
        Ok(())
    } else {
        Err(FrameError::UnknownType {
            type_id: meta.msg_type,
            version: meta.version,
            expected: M::NAME,
        })
    }
}

/// Reads the archive of an `M` in place, without validation.
///
/// # Safety
///
/// `payload` must be exactly the bytes [`encode_into`] wrote for an `M` in
/// this process (the same type and version, checked with [`check_type`]),
/// unchanged since, and aligned to at least 16 bytes.
pub unsafe fn access_trusted<M: Message>(payload: &[u8]) -> &Archived<M> {
    debug_assert_eq!(payload.as_ptr() as usize % 16, 0, "payload misaligned");
    // SAFETY: the caller guarantees these bytes are a complete archive of `M`
    // written by rkyv in this process, so its root lies at the end of the
    // slice and every relative pointer inside it is in bounds.
    unsafe { rkyv::access_unchecked::<Archived<M>>(payload) }
}

/// Reads the archive of an `M` in place after validating it: for payloads
/// from another process, a mapped file or a socket.
///
/// # Errors
///
/// [`FrameError::Invalid`] if the bytes are not a valid archive of `M`.
pub fn access_untrusted<M>(payload: &[u8]) -> Result<&Archived<M>, FrameError>
where
    M: Message,
    Archived<M>: for<'a> CheckBytes<HighValidator<'a, rancor::Error>>,
{
    rkyv::access::<Archived<M>, rancor::Error>(payload)
        .map_err(|error| FrameError::Invalid(error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Archive, Serialize, Debug, PartialEq)]
    struct Order {
        id: u64,
        symbol: String,
        fills: Vec<u32>,
    }

    impl Message for Order {
        const TYPE_ID: u16 = 42;
        const VERSION: u8 = 2;
        const NAME: &'static str = "Order";
    }

    #[repr(align(32))]
    struct Aligned([u8; 256]);

    fn order() -> Order {
        Order {
            id: 9,
            symbol: "ACME".into(),
            fills: vec![1, 2, 3],
        }
    }

    #[test]
    fn encodes_in_place_and_reads_back() {
        let mut arena = Arena::new();
        let mut space = Aligned([0; 256]);
        let used = encode_into(&order(), &mut space.0, &mut arena).expect("fits");
        assert_eq!(used, encoded_len(&order(), &mut arena).unwrap());
        let archived = access_untrusted::<Order>(&space.0[..used]).expect("valid");
        assert_eq!(archived.id, 9);
        assert_eq!(archived.symbol, "ACME");
        assert_eq!(archived.fills.len(), 3);
        // SAFETY: written just above by encode_into for an Order.
        let trusted = unsafe { access_trusted::<Order>(&space.0[..used]) };
        assert_eq!(trusted.fills[2], 3);
    }

    #[test]
    fn the_counted_length_is_that_of_the_archive_rkyv_writes() {
        let mut arena = Arena::new();
        for message in [
            order(),
            Order {
                id: u64::MAX,
                symbol: "a longer symbol than fits inline".into(),
                fills: (0..100).collect(),
            },
            Order {
                id: 0,
                symbol: String::new(),
                fills: Vec::new(),
            },
        ] {
            let written = rkyv::to_bytes::<rancor::Error>(&message).unwrap();
            assert_eq!(encoded_len(&message, &mut arena).unwrap(), written.len());
            let owned = encode_owned(&message, &mut arena).unwrap();
            assert_eq!(&owned[..], &written[..]);
        }
    }

    #[test]
    fn too_small_a_payload_is_refused_not_truncated() {
        let mut arena = Arena::new();
        let mut space = Aligned([0; 256]);
        let needed = encoded_len(&order(), &mut arena).unwrap();
        assert!(needed > 8);
        assert_eq!(
            encode_into(&order(), &mut space.0[..needed - 1], &mut arena),
            None
        );
    }

    #[test]
    fn unknown_type_or_version_names_both() {
        let mut meta = Order::meta(0, 0);
        assert_eq!(check_type::<Order>(&meta), Ok(()));
        meta.version = 3;
        let error = check_type::<Order>(&meta).unwrap_err();
        assert_eq!(
            error.to_string(),
            "unknown message type id 42 version 3 (expected Order)"
        );
        meta.version = 2;
        meta.msg_type = 43;
        assert!(matches!(
            check_type::<Order>(&meta),
            Err(FrameError::UnknownType {
                type_id: 43,
                version: 2,
                ..
            })
        ));
    }

    #[test]
    fn garbage_fails_validation() {
        let space = Aligned([0xFF; 256]);
        assert!(matches!(
            access_untrusted::<Order>(&space.0[..64]),
            Err(FrameError::Invalid(_))
        ));
    }
}
