//! Routing by key: every message of one key goes to the one core that owns
//! the key, so the messages of a key are handled by one core, in the order
//! each sender sent them.
//!
//! The owner is a pure function of the key's bytes and the number of cores,
//! the same in every process, build and run: the 64-bit FNV-1a hash of the
//! key (fixed offset basis `0xcbf29ce484222325`, prime `0x100000001b3`),
//! passed through MurmurHash3's 64-bit finalizer (`fmix64`: FNV-1a alone
//! leaves keys that differ in their last bytes, such as `key-1` and
//! `key-2`, close together in the high bits), then mapped onto `0..cores`
//! by taking the high 64 bits of `mixed * cores` (a multiply instead of a
//! division). std's `RandomState` is seeded per process, so it cannot
//! serve.
//!
//! Changing the number of cores moves keys between cores; a key's owner is
//! stable only for a given core count.

use super::context::{Context, SendError};
use crate::frame::{Encodes, Message};

const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// The 64-bit FNV-1a hash of `key`.
///
/// # Examples
///
/// ```
/// use corelane::runtime::key_hash;
///
/// // The published FNV-1a test vectors.
/// assert_eq!(key_hash(b""), 0xcbf29ce484222325);
/// assert_eq!(key_hash(b"a"), 0xaf63dc4c8601ec8c);
/// ```
#[inline]
pub fn key_hash(key: &[u8]) -> u64 {
    key.iter().fold(FNV_OFFSET_BASIS, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(FNV_PRIME)
    })
}

/// The core, in `0..cores`, that owns `key`.
///
/// # Panics
///
/// If `cores` is zero.
///
/// # Examples
///
/// ```
/// use corelane::runtime::core_for_key;
///
/// let owner = core_for_key(b"user:42", 4);
/// assert!(owner < 4);
/// assert_eq!(owner, core_for_key(b"user:42", 4));
/// ```
#[inline]
pub fn core_for_key(key: &[u8], cores: usize) -> usize {
    assert!(cores > 0, "a key needs at least one core to belong to");
    ((u128::from(fmix64(key_hash(key))) * cores as u128) >> 64) as usize
}

/// MurmurHash3's 64-bit finalizer: every input bit affects every output
/// bit, so the high bits used for the core are well mixed.
#[inline]
fn fmix64(mut hash: u64) -> u64 {
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^ (hash >> 33)
}

impl<M: Message> Context<'_, M> {
    /// The core that owns `key` in this runtime: see [`core_for_key`].
    pub fn core_for_key(&self, key: &[u8]) -> usize {
        core_for_key(key, self.cores())
    }

    /// Sends `msg` to the core that owns `key`, in the normal lane. All
    /// messages this core sends for one key reach one core in order. As
    /// with [`send`](Context::send), `msg` is an `M` or a view that archives
    /// as one ([`Encodes`]).
    ///
    /// # Errors
    ///
    /// As [`Context::send`].
    pub fn send_by_key<'m, T: Encodes<M>>(
        &mut self,
        key: &[u8],
        msg: &'m T,
    ) -> Result<(), SendError<&'m T>> {
        let to = self.core_for_key(key);
        self.send(to, msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Computed apart from this code, from the documented definition.
    const OWNERS_AT_8_CORES: [usize; 5] = [2, 2, 7, 5, 7];

    #[test]
    fn fnv1a_matches_the_published_vectors() {
        assert_eq!(key_hash(b"foobar"), 0x85944171f73967e8);
        assert_eq!(key_hash(b"b"), 0xaf63df4c8601f1a5);
    }

    #[test]
    fn keys_spread_over_every_core() {
        let mut per_core = [0u32; 4];
        for n in 0..4000u32 {
            per_core[core_for_key(format!("key-{n}").as_bytes(), 4)] += 1;
        }
        for (core, &count) in per_core.iter().enumerate() {
            assert!(
                (700..1300).contains(&count),
                "core {core} owns {count} of 4000 keys"
            );
        }
    }

    #[test]
    fn owners_do_not_change_between_builds() {
        // Fixed by the documented function: a change here moves every
        // key of every deployed runtime to another core.
        let owners: Vec<usize> = ["user:1", "user:2", "user:3", "order:77", ""]
            .iter()
            .map(|key| core_for_key(key.as_bytes(), 8))
            .collect();
        assert_eq!(owners, OWNERS_AT_8_CORES);
    }

    #[test]
    fn one_core_owns_everything() {
        assert_eq!(core_for_key(b"anything", 1), 0);
    }
}
