//! One core's subscriptions: which of its connections listen to which
//! channels and patterns.
//!
//! Each core knows only its own subscribers. A PUBLISH is delivered to the
//! publishing core's subscribers here and forwarded to every other core,
//! which looks it up in its own registry.
//!
//! The maps give memory back: a map whose entries fall below a quarter of
//! its capacity is shrunk (see [`shrink_if_sparse`]), so a million
//! subscriptions, once dropped, do not keep their tables for good.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;

use super::glob::Glob;

/// Connection keys by channel and by pattern. Each pattern is kept parsed,
/// so a PUBLISH only matches.
#[derive(Debug, Default)]
pub(crate) struct Subscriptions {
    channels: HashMap<Box<[u8]>, Vec<usize>>,
    patterns: HashMap<Box<[u8]>, (Glob, Vec<usize>)>,
}

impl Subscriptions {
    /// Adds `conn` to `channel`'s subscribers.
    pub(crate) fn subscribe(&mut self, channel: &[u8], conn: usize) {
        add(&mut self.channels, channel, conn, |keys| keys, Vec::new);
    }

    /// Removes `conn` from `channel`'s subscribers.
    pub(crate) fn unsubscribe(&mut self, channel: &[u8], conn: usize) {
        remove(&mut self.channels, channel, conn, |keys| keys);
    }

    /// Adds `conn` to `pattern`'s subscribers.
    pub(crate) fn psubscribe(&mut self, pattern: &[u8], conn: usize) {
        let new = || (Glob::new(pattern), Vec::new());
        add(&mut self.patterns, pattern, conn, |(_, keys)| keys, new);
    }

    /// Removes `conn` from `pattern`'s subscribers.
    pub(crate) fn punsubscribe(&mut self, pattern: &[u8], conn: usize) {
        remove(&mut self.patterns, pattern, conn, |(_, keys)| keys);
    }

    /// Connections subscribed to `channel` itself.
    pub(crate) fn direct(&self, channel: &[u8]) -> &[usize] {
        self.channels.get(channel).map_or(&[], Vec::as_slice)
    }

    /// The patterns `channel` matches, with their connections. Matched as
    /// the caller goes, so a PUBLISH gathers them into no list.
    pub(crate) fn matching<'s>(
        &'s self,
        channel: &'s [u8],
    ) -> impl Iterator<Item = (&'s [u8], &'s [usize])> + 's {
        self.patterns
            .iter()
            .filter(|(_, (glob, _))| glob.matches(channel))
            .map(|(pattern, (_, keys))| (&pattern[..], keys.as_slice()))
    }

    /// Channels with at least one subscriber on this core.
    pub(crate) fn channels(&self) -> impl Iterator<Item = &[u8]> {
        self.channels.keys().map(|name| &name[..])
    }

    /// Patterns with at least one subscriber on this core.
    pub(crate) fn patterns(&self) -> impl Iterator<Item = &[u8]> {
        self.patterns.keys().map(|name| &name[..])
    }
}

/// What one other core's subscribers want, as that core announced it:
/// how many subscriptions it holds to each channel and pattern (patterns
/// kept parsed, as in [`Subscriptions`]).
#[derive(Debug, Default)]
pub(crate) struct RemoteInterest {
    channels: HashMap<Box<[u8]>, u32>,
    patterns: HashMap<Box<[u8]>, (Glob, u32)>,
}

impl RemoteInterest {
    /// Applies an announced change of `delta` subscriptions to `name`.
    pub(crate) fn apply(&mut self, name: &[u8], pattern: bool, delta: i32) {
        if pattern {
            adjust(
                &mut self.patterns,
                name,
                delta,
                |(_, count)| count,
                || (Glob::new(name), 0),
            );
        } else {
            adjust(&mut self.channels, name, delta, |count| count, || 0);
        }
    }

    /// Channels that core has subscribers to.
    pub(crate) fn channels(&self) -> impl Iterator<Item = &[u8]> {
        self.channels.keys().map(|name| &name[..])
    }

    /// Patterns that core has subscribers to.
    pub(crate) fn patterns(&self) -> impl Iterator<Item = &[u8]> {
        self.patterns.keys().map(|name| &name[..])
    }

    /// How many of that core's subscriptions a message on `channel` reaches.
    pub(crate) fn count(&self, channel: &[u8]) -> usize {
        let direct = self.channels.get(channel).copied().unwrap_or(0) as usize;
        let by_pattern: usize = self
            .patterns
            .values()
            .filter(|(glob, _)| glob.matches(channel))
            .map(|&(_, count)| count as usize)
            .sum();
        direct + by_pattern
    }
}

/// Adds `conn` to the connections `keys` finds in `name`'s entry, making
/// the entry (by `new`) for the first one.
fn add<V>(
    map: &mut HashMap<Box<[u8]>, V>,
    name: &[u8],
    conn: usize,
    keys: impl Fn(&mut V) -> &mut Vec<usize>,
    new: impl FnOnce() -> V,
) {
    match map.get_mut(name) {
        Some(entry) => keys(entry).push(conn),
        None => {
            let mut entry = new();
            keys(&mut entry).push(conn);
            map.insert(name.into(), entry);
        }
    }
}

/// Changes the count `count` finds in `name`'s entry by `delta`, never
/// below zero: an entry is made (by `new`, with a count of 0) when the
/// count leaves zero and dropped when it returns there.
fn adjust<V>(
    map: &mut HashMap<Box<[u8]>, V>,
    name: &[u8],
    delta: i32,
    count: impl Fn(&mut V) -> &mut u32,
    new: impl FnOnce() -> V,
) {
    let current = map.get_mut(name).map_or(0, |entry| *count(entry));
    let updated = current.saturating_add_signed(delta);
    if updated == 0 {
        map.remove(name);
        shrink_if_sparse(map);
    } else if let Some(entry) = map.get_mut(name) {
        *count(entry) = updated;
    } else {
        let mut entry = new();
        *count(&mut entry) = updated;
        map.insert(name.into(), entry);
    }
}

/// Removes `conn` from the connections `keys` finds in `name`'s entry,
/// dropping the entry with the last one.
fn remove<V>(
    map: &mut HashMap<Box<[u8]>, V>,
    name: &[u8],
    conn: usize,
    keys: impl Fn(&mut V) -> &mut Vec<usize>,
) {
    if let Some(entry) = map.get_mut(name) {
        let keys = keys(entry);
        keys.retain(|&key| key != conn);
        if keys.is_empty() {
            map.remove(name);
            shrink_if_sparse(map);
        } else if keys.len() < keys.capacity() / SPARSE && keys.capacity() > MIN_KEPT {
            // A channel many connections left keeps no list sized for them.
            keys.shrink_to(keys.len() * 2);
        }
    }
}

/// A table is sparse when it holds fewer than one entry in this many of
/// its capacity.
const SPARSE: usize = 4;

/// Capacity a table keeps however empty it gets: below it, shrinking
/// would only make the next few inserts reallocate.
const MIN_KEPT: usize = 64;

/// Something whose capacity can be shrunk: the maps and sets that hold
/// subscriptions, and the queues of messages waiting for a full lane.
pub(crate) trait Shrink {
    fn len(&self) -> usize;
    fn capacity(&self) -> usize;
    fn shrink_to(&mut self, min_capacity: usize);
}

impl<K: Eq + Hash, V> Shrink for HashMap<K, V> {
    fn len(&self) -> usize {
        HashMap::len(self)
    }
    fn capacity(&self) -> usize {
        HashMap::capacity(self)
    }
    fn shrink_to(&mut self, min_capacity: usize) {
        HashMap::shrink_to(self, min_capacity);
    }
}

impl<T> Shrink for VecDeque<T> {
    fn len(&self) -> usize {
        VecDeque::len(self)
    }
    fn capacity(&self) -> usize {
        VecDeque::capacity(self)
    }
    fn shrink_to(&mut self, min_capacity: usize) {
        VecDeque::shrink_to(self, min_capacity);
    }
}

impl<K: Eq + Hash> Shrink for HashSet<K> {
    fn len(&self) -> usize {
        HashSet::len(self)
    }
    fn capacity(&self) -> usize {
        HashSet::capacity(self)
    }
    fn shrink_to(&mut self, min_capacity: usize) {
        HashSet::shrink_to(self, min_capacity);
    }
}

/// Shrinks `table` to twice its entries once they fall below a quarter of
/// its capacity (and it is larger than [`MIN_KEPT`]); returns whether it
/// did.
///
/// The gap between the two is the hysteresis: after a shrink the table is
/// half full, so it grows again only after its entries double and shrinks
/// again only after they halve twice. Subscribing and unsubscribing
/// around one size never reallocates on every call.
pub(crate) fn shrink_if_sparse(table: &mut impl Shrink) -> bool {
    let capacity = table.capacity();
    let sparse = capacity > MIN_KEPT && table.len() < capacity / SPARSE;
    if sparse {
        table.shrink_to((table.len() * 2).max(MIN_KEPT));
        if capacity >= TRIM_FROM {
            release_free_memory();
        }
    }
    sparse
}

/// Capacity from which shrinking a table also hands malloc's free pages
/// back to the system: tens of thousands of names freed, megabytes.
const TRIM_FROM: usize = 1 << 16;

/// Asks malloc to return the free pages of its heaps to the system.
///
/// Freeing the names and lists of many subscriptions leaves their memory
/// free inside malloc's heaps, scattered among live blocks, and glibc
/// gives back only what lies at the top of a heap: without this, a
/// million dropped subscriptions kept hundreds of megabytes resident.
/// `malloc_trim` walks every heap (taking each one's lock in turn), so it
/// is called only when a large table shrinks, which, shrinks being by
/// halves at least, happens a few times per order of magnitude dropped.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointers and may be called from any
    // thread; it only releases pages malloc holds free.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_and_patterns_find_their_subscribers() {
        let mut subs = Subscriptions::default();
        subs.subscribe(b"news", 1);
        subs.subscribe(b"news", 2);
        subs.psubscribe(b"n*", 3);
        subs.psubscribe(b"sport.*", 4);
        subs.psubscribe(b"*s", 5);
        subs.psubscribe(b"*s", 6);
        assert_eq!(subs.direct(b"news"), &[1, 2]);
        let mut matching: Vec<_> = subs.matching(b"news").collect();
        matching.sort();
        assert_eq!(
            matching,
            vec![(&b"*s"[..], &[5, 6][..]), (&b"n*"[..], &[3][..])]
        );
        assert_eq!(subs.direct(b"weather"), &[] as &[usize]);
        assert_eq!(subs.matching(b"weather").count(), 0);
    }

    #[test]
    fn remote_interest_counts_channels_and_patterns() {
        let mut remote = RemoteInterest::default();
        remote.apply(b"news", false, 1);
        remote.apply(b"news", false, 1);
        remote.apply(b"n*", true, 1);
        assert_eq!(remote.count(b"news"), 3);
        assert_eq!(remote.count(b"nope"), 1);
        remote.apply(b"news", false, -1);
        remote.apply(b"n*", true, -1);
        assert_eq!(remote.count(b"news"), 1);
        remote.apply(b"news", false, -1);
        // An unmatched -1 never wraps below zero.
        remote.apply(b"news", false, -1);
        assert_eq!(remote.count(b"news"), 0);
        assert!(remote.channels.is_empty() && remote.patterns.is_empty());
    }

    #[test]
    fn last_unsubscribe_forgets_the_channel() {
        let mut subs = Subscriptions::default();
        subs.subscribe(b"a", 1);
        subs.psubscribe(b"a*", 1);
        assert_eq!((subs.channels().count(), subs.patterns().count()), (1, 1));
        subs.unsubscribe(b"a", 1);
        subs.punsubscribe(b"a*", 1);
        subs.unsubscribe(b"never", 1);
        assert_eq!((subs.channels().count(), subs.patterns().count()), (0, 0));
        assert!(subs.direct(b"a").is_empty());
        assert_eq!(subs.matching(b"a").count(), 0);
    }

    #[test]
    fn tables_shrink_once_their_subscriptions_are_gone() {
        let mut subs = Subscriptions::default();
        let mut remote = RemoteInterest::default();
        let names: Vec<Vec<u8>> = (0..10_000).map(|i| format!("ch{i}").into_bytes()).collect();
        for name in &names {
            subs.subscribe(name, 7);
            remote.apply(name, false, 1);
        }
        let full = subs.channels.capacity();
        assert!(full >= 10_000, "capacity {full} for 10000 channels");
        for name in &names {
            subs.unsubscribe(name, 7);
            remote.apply(name, false, -1);
        }
        assert_eq!(subs.channels.len(), 0);
        assert!(
            subs.channels.capacity() <= 2 * MIN_KEPT,
            "{}",
            subs.channels.capacity()
        );
        assert!(
            remote.channels.capacity() <= 2 * MIN_KEPT,
            "{}",
            remote.channels.capacity()
        );
    }

    #[test]
    fn churn_at_one_size_does_not_reallocate() {
        let mut set: HashSet<Box<[u8]>> = HashSet::new();
        for i in 0..1000u32 {
            set.insert(i.to_be_bytes().into());
        }
        let mut shrinks = 0;
        for i in 0..900u32 {
            set.remove(&i.to_be_bytes()[..]);
            shrinks += usize::from(shrink_if_sparse(&mut set));
        }
        assert!(shrinks >= 1);
        let settled = set.capacity();
        assert!(
            settled < 1000 / 2,
            "capacity {settled} after shrinking to 100"
        );
        // One in, one out, many times over, right where it shrank: never
        // shrunk again, and never grown.
        for i in 0..1000u32 {
            set.insert((5000 + i).to_be_bytes().into());
            set.remove(&(5000 + i).to_be_bytes()[..]);
            assert!(!shrink_if_sparse(&mut set), "shrunk again in round {i}");
            assert!(set.capacity() <= settled, "grew in round {i}");
        }
    }

    #[test]
    fn a_channel_many_connections_left_keeps_a_short_list() {
        let mut subs = Subscriptions::default();
        for conn in 0..1000 {
            subs.subscribe(b"busy", conn);
        }
        for conn in 1..1000 {
            subs.unsubscribe(b"busy", conn);
        }
        assert_eq!(subs.direct(b"busy"), &[0]);
        let list = subs.channels.get(&b"busy"[..]).map(Vec::capacity);
        assert!(list.is_some_and(|cap| cap <= MIN_KEPT), "{list:?}");
    }

    #[test]
    fn a_drained_backlog_queue_gives_back_its_burst() {
        let mut queue: VecDeque<u64> = (0..100_000).collect();
        while queue.len() > 10 {
            queue.pop_front();
        }
        assert!(shrink_if_sparse(&mut queue));
        assert!(queue.capacity() <= 2 * MIN_KEPT, "{}", queue.capacity());
        assert_eq!(
            queue.iter().copied().collect::<Vec<_>>(),
            (99_990..100_000).collect::<Vec<_>>()
        );
    }
}
