//! One core's subscriptions: which of its connections listen to which
//! channels and patterns.
//!
//! Each core knows only its own subscribers. A PUBLISH is delivered to the
//! publishing core's subscribers here and forwarded to every other core,
//! which looks it up in its own registry.

use std::collections::HashMap;

use super::glob::glob_match;

/// Connection keys by channel and by pattern.
#[derive(Debug, Default)]
pub(crate) struct Subscriptions {
    channels: HashMap<Box<[u8]>, Vec<usize>>,
    patterns: HashMap<Box<[u8]>, Vec<usize>>,
}

/// Where a published message goes on this core.
#[derive(Debug, Default)]
pub(crate) struct Recipients<'s> {
    /// Connections subscribed to the channel itself.
    pub(crate) direct: &'s [usize],
    /// Patterns that match, with their connections.
    pub(crate) by_pattern: Vec<(&'s [u8], &'s [usize])>,
}

impl Recipients<'_> {
    /// Number of deliveries (a connection subscribed twice counts twice, as
    /// in Redis).
    pub(crate) fn count(&self) -> usize {
        self.direct.len()
            + self
                .by_pattern
                .iter()
                .map(|(_, keys)| keys.len())
                .sum::<usize>()
    }
}

impl Subscriptions {
    /// Adds `conn` to `channel`'s subscribers.
    pub(crate) fn subscribe(&mut self, channel: &[u8], conn: usize) {
        add(&mut self.channels, channel, conn);
    }

    /// Removes `conn` from `channel`'s subscribers.
    pub(crate) fn unsubscribe(&mut self, channel: &[u8], conn: usize) {
        remove(&mut self.channels, channel, conn);
    }

    /// Adds `conn` to `pattern`'s subscribers.
    pub(crate) fn psubscribe(&mut self, pattern: &[u8], conn: usize) {
        add(&mut self.patterns, pattern, conn);
    }

    /// Removes `conn` from `pattern`'s subscribers.
    pub(crate) fn punsubscribe(&mut self, pattern: &[u8], conn: usize) {
        remove(&mut self.patterns, pattern, conn);
    }

    /// Who receives a message published to `channel`.
    pub(crate) fn recipients(&self, channel: &[u8]) -> Recipients<'_> {
        let direct = self.channels.get(channel).map_or(&[][..], Vec::as_slice);
        let by_pattern = self
            .patterns
            .iter()
            .filter(|(pattern, _)| glob_match(pattern, channel))
            .map(|(pattern, keys)| (&pattern[..], keys.as_slice()))
            .collect();
        Recipients { direct, by_pattern }
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

/// What one other core's subscribers want, as that core announced it.
#[derive(Debug, Default)]
pub(crate) struct RemoteInterest {
    channels: HashMap<Box<[u8]>, u32>,
    patterns: HashMap<Box<[u8]>, u32>,
}

impl RemoteInterest {
    /// Applies an announced change of `delta` subscriptions to `name`.
    pub(crate) fn apply(&mut self, name: &[u8], pattern: bool, delta: i32) {
        let map = if pattern {
            &mut self.patterns
        } else {
            &mut self.channels
        };
        let count = map.get(name).copied().unwrap_or(0);
        let updated = count.saturating_add_signed(delta);
        if updated == 0 {
            map.remove(name);
        } else if count == 0 {
            map.insert(name.into(), updated);
        } else if let Some(slot) = map.get_mut(name) {
            *slot = updated;
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
            .iter()
            .filter(|(pattern, _)| glob_match(pattern, channel))
            .map(|(_, &count)| count as usize)
            .sum();
        direct + by_pattern
    }
}

fn add(map: &mut HashMap<Box<[u8]>, Vec<usize>>, name: &[u8], conn: usize) {
    match map.get_mut(name) {
        Some(keys) => keys.push(conn),
        None => {
            map.insert(name.into(), vec![conn]);
        }
    }
}

fn remove(map: &mut HashMap<Box<[u8]>, Vec<usize>>, name: &[u8], conn: usize) {
    if let Some(keys) = map.get_mut(name) {
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
        let recipients = subs.recipients(b"news");
        assert_eq!(recipients.direct, &[1, 2]);
        assert_eq!(recipients.by_pattern, vec![(&b"n*"[..], &[3][..])]);
        assert_eq!(recipients.count(), 3);
        assert_eq!(subs.recipients(b"weather").count(), 0);
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
        assert_eq!(subs.recipients(b"a").count(), 0);
    }
}
