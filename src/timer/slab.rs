//! Storage for timers: a slab of entries, reused through a free list, and
//! linked into the wheel's lists by index.
//!
//! An entry is *occupied* while it holds a scheduled timer and *vacant*
//! otherwise. Each entry counts its *generation*: the number of times it
//! has been vacated. A [`TimerHandle`] names an entry and the generation it
//! was issued in, so a handle outlives its timer harmlessly: once the timer
//! fires or is cancelled the generation moves on and the handle matches
//! nothing, even after the entry is reused.
//!
//! Lists are intrusive and doubly linked by index (`prev`, `next`), so
//! unlinking any entry is O(1) and no list owns memory of its own. A vacant
//! entry reuses `next` as its link in the free list. Once the slab has grown
//! to the largest number of timers pending at once, scheduling and
//! cancelling allocate nothing.

/// The index that stands for "no entry" in links and list heads.
pub(crate) const NIL: u32 = u32::MAX;

/// A claim on one scheduled timer, returned by
/// [`Wheel::schedule`](super::Wheel::schedule) and taken by
/// [`Wheel::cancel`](super::Wheel::cancel).
///
/// A handle stays valid until its timer fires or is cancelled; after that it
/// is *stale* and cancelling with it does nothing, even if its storage has
/// since been reused by a new timer. A handle belongs to the wheel that
/// issued it: handed to another wheel it may name an unrelated timer there.
///
/// NB: the generation is a `u64` so that a stale handle can only match again
/// after 2^64 reuses of one entry, which no process lives to see.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TimerHandle {
    index: u32,
    generation: u64,
}

/// One timer's storage.
pub(crate) struct Entry<T> {
    /// The timer's value; `None` while the entry is vacant.
    value: Option<T>,
    /// How many times this entry has been vacated.
    generation: u64,
    /// The tick at which the timer is due (see the wheel's rounding rule).
    pub(crate) deadline: u64,
    /// The previous entry in the same list, or [`NIL`].
    prev: u32,
    /// The next entry in the same list (or the free list), or [`NIL`].
    next: u32,
}

/// Entries indexed by `u32`, with a free list of vacant ones.
pub(crate) struct Slab<T> {
    entries: Vec<Entry<T>>,
    /// The first vacant entry, or [`NIL`].
    free: u32,
    /// Occupied entries.
    len: usize,
}

impl<T> Slab<T> {
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Slab {
            entries: Vec::with_capacity(capacity),
            free: NIL,
            len: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Stores a timer and returns its index; the entry is in no list yet.
    ///
    /// # Panics
    ///
    /// If `u32::MAX` timers are already stored.
    #[inline]
    pub(crate) fn insert(&mut self, value: T, deadline: u64) -> u32 {
        self.len += 1;
        if self.free != NIL {
            let index = self.free;
            let entry = &mut self.entries[index as usize];
            self.free = entry.next;
            entry.value = Some(value);
            entry.deadline = deadline;
            return index;
        }

        let index = u32::try_from(self.entries.len())
            .ok()
            .filter(|&index| index != NIL)
            .expect("timer wheel is full: u32::MAX timers pending");
        self.entries.push(Entry {
            value: Some(value),
            generation: 0,
            deadline,
            prev: NIL,
            next: NIL,
        });
        index
    }

    /// Takes the timer out of an occupied entry and vacates it, making every
    /// handle to it stale. The entry must already be out of its list.
    #[inline]
    pub(crate) fn remove(&mut self, index: u32) -> T {
        let entry = &mut self.entries[index as usize];
        let value = entry.value.take().expect("removing a vacant timer entry");
        entry.generation = entry.generation.wrapping_add(1);
        entry.next = self.free;
        self.free = index;
        self.len -= 1;
        value
    }

    /// The handle for the occupied entry at `index`.
    #[inline]
    pub(crate) fn handle(&self, index: u32) -> TimerHandle {
        let generation = self.entries[index as usize].generation;
        TimerHandle { index, generation }
    }

    /// The index a handle names, if its timer is still stored.
    #[inline]
    pub(crate) fn find(&self, handle: TimerHandle) -> Option<u32> {
        let entry = self.entries.get(handle.index as usize)?;
        let live = entry.generation == handle.generation && entry.value.is_some();
        live.then_some(handle.index)
    }

    #[inline]
    pub(crate) fn entry(&self, index: u32) -> &Entry<T> {
        &self.entries[index as usize]
    }

    /// Links the entry at `index` in front of the list whose first entry is
    /// `*head`.
    #[inline]
    pub(crate) fn push_front(&mut self, head: &mut u32, index: u32) {
        let old_head = *head;
        let entry = &mut self.entries[index as usize];
        entry.prev = NIL;
        entry.next = old_head;
        if old_head != NIL {
            self.entries[old_head as usize].prev = index;
        }
        *head = index;
    }

    /// Unlinks the entry at `index` from the list whose first entry is
    /// `*head`.
    #[inline]
    pub(crate) fn unlink(&mut self, head: &mut u32, index: u32) {
        let Entry { prev, next, .. } = self.entries[index as usize];
        if prev == NIL {
            debug_assert_eq!(
                *head, index,
                "unlinking entry {index} from a list it does not head"
            );
            *head = next;
        } else {
            self.entries[prev as usize].next = next;
        }
        if next != NIL {
            self.entries[next as usize].prev = prev;
        }
    }

    /// Unlinks and returns the first entry of the list at `*head`.
    #[inline]
    pub(crate) fn pop_front(&mut self, head: &mut u32) -> Option<u32> {
        let index = *head;
        if index == NIL {
            return None;
        }
        self.unlink(head, index);
        Some(index)
    }

    /// The entry after `index` in its list, or [`NIL`].
    #[inline]
    pub(crate) fn next(&self, index: u32) -> u32 {
        self.entries[index as usize].next
    }
}
