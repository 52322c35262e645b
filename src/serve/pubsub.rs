//! One core's subscriptions: which of its connections listen to which
//! channels and patterns.
//!
//! Each core knows only its own subscribers. A PUBLISH is delivered to the
//! publishing core's subscribers here and forwarded to every other core,
//! which looks it up in its own registry.

use std::collections::HashMap;

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
        }
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
}
