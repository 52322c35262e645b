//! A connection's output: replies and messages not yet written to its
//! socket, in a chain of buffers from the core's pool.
//!
//! Output is appended to the last buffer of the chain and written from
//! the first; each buffer goes back to the pool as soon as all of it is
//! written, and the whole chain when the connection drops its output or
//! closes. A connection with nothing to write holds no buffer, so a
//! steady publish/subscribe load takes and returns the same few pooled
//! blocks turn after turn and allocates nothing per message.
//!
//! The first buffer is small ([`FIRST_CHUNK`]); each further one doubles,
//! up to [`LARGEST_CHUNK`] (or the pool's largest class, if smaller). So a
//! reply of any size, larger than every class included, is a chain of
//! pooled buffers, and a subscriber that falls behind holds a chain no
//! longer than the output limit allows (see `ServerConfig::output_limit`).
//! When a class is at its cap the pool lends from the allocator instead;
//! such buffers are counted in the pool's `fallbacks` and in
//! [`OutputCounts::fallbacks`].

use std::cell::Cell;
use std::collections::VecDeque;
use std::fmt;
use std::io::{self, IoSlice, Write};
use std::rc::Rc;

use super::reply::ReplyBuf;
use crate::pool::{PoolBuf, PoolLender};

/// Bytes in the first buffer of a chain: most replies and messages fit.
pub(crate) const FIRST_CHUNK: usize = 4 * 1024;

/// Most bytes in one buffer of a chain.
pub(crate) const LARGEST_CHUNK: usize = 64 * 1024;

/// Buffers handed to one `writev`.
const WRITE_SLICES: usize = 16;

/// Buffers a drained chain keeps room to list: more than a steady load
/// needs, so only a chain that grew long (a subscriber that fell far
/// behind) gives its list's memory back once it is written out.
const KEPT_LIST: usize = 16;

/// What a core's connections hold for output, as [`OutputPool`] counts it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct OutputCounts {
    /// Buffers held by output chains now.
    pub(crate) buffers: u64,
    /// Bytes of capacity in those buffers.
    pub(crate) bytes: u64,
    /// Buffers the pool served from the allocator for output, ever.
    pub(crate) fallbacks: u64,
}

/// A core's source of output buffers: a lender on the core's pool, shared
/// by its connections, with counts of what they hold. Core-local (`Rc`).
#[derive(Clone)]
pub(crate) struct OutputPool(Rc<OutputShared>);

struct OutputShared {
    lender: PoolLender,
    /// Most bytes in one buffer of a chain.
    largest: usize,
    buffers: Cell<u64>,
    bytes: Cell<u64>,
    fallbacks: Cell<u64>,
}

impl OutputPool {
    pub(crate) fn new(lender: PoolLender) -> Self {
        let largest = LARGEST_CHUNK.min(lender.largest_class());
        OutputPool(Rc::new(OutputShared {
            lender,
            largest,
            buffers: Cell::new(0),
            bytes: Cell::new(0),
            fallbacks: Cell::new(0),
        }))
    }

    /// What the core's connections hold now.
    pub(crate) fn counts(&self) -> OutputCounts {
        OutputCounts {
            buffers: self.0.buffers.get(),
            bytes: self.0.bytes.get(),
            fallbacks: self.0.fallbacks.get(),
        }
    }

    fn take(&self, size: usize) -> PoolBuf {
        let buf = self.0.lender.take(size);
        let shared = &self.0;
        shared.buffers.set(shared.buffers.get() + 1);
        shared.bytes.set(shared.bytes.get() + buf.capacity() as u64);
        if !buf.is_pooled() {
            shared.fallbacks.set(shared.fallbacks.get() + 1);
        }
        buf
    }

    fn give_back(&self, buf: PoolBuf) {
        let shared = &self.0;
        shared.buffers.set(shared.buffers.get() - 1);
        shared.bytes.set(shared.bytes.get() - buf.capacity() as u64);
    }
}

impl fmt::Debug for OutputPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("OutputPool").field(&self.counts()).finish()
    }
}

/// One connection's unwritten output.
pub(crate) struct OutputBuffer {
    /// Buffers in the order written; the last one takes new output.
    chunks: VecDeque<PoolBuf>,
    /// Bytes of the first buffer already written.
    written: usize,
    /// Bytes not yet written, in all buffers.
    pending: usize,
    pool: OutputPool,
}

impl OutputBuffer {
    pub(crate) fn new(pool: OutputPool) -> Self {
        OutputBuffer {
            chunks: VecDeque::new(),
            written: 0,
            pending: 0,
            pool,
        }
    }

    /// Bytes waiting to be written.
    #[inline]
    pub(crate) fn pending(&self) -> usize {
        self.pending
    }

    /// Buffers held now.
    #[cfg(test)]
    pub(crate) fn buffers(&self) -> usize {
        self.chunks.len()
    }

    /// Drops everything unwritten and gives every buffer back, and the
    /// list's own memory too if it grew past [`KEPT_LIST`].
    pub(crate) fn clear(&mut self) {
        while let Some(chunk) = self.chunks.pop_front() {
            self.pool.give_back(chunk);
        }
        if self.chunks.capacity() > KEPT_LIST {
            self.chunks = VecDeque::new();
        }
        self.written = 0;
        self.pending = 0;
    }

    /// Buffers the list has room for without growing.
    #[cfg(test)]
    pub(crate) fn list_capacity(&self) -> usize {
        self.chunks.capacity()
    }

    /// Appends `bytes`, taking buffers from the pool as needed.
    #[inline]
    pub(crate) fn put(&mut self, mut bytes: &[u8]) {
        self.pending += bytes.len();
        while !bytes.is_empty() {
            let chunk = match self.chunks.back_mut() {
                Some(chunk) if chunk.len() < chunk.capacity() => chunk,
                _ => self.grow(),
            };
            let start = chunk.len();
            let n = bytes.len().min(chunk.capacity() - start);
            chunk.capacity_mut()[start..start + n].copy_from_slice(&bytes[..n]);
            chunk.set_len(start + n);
            bytes = &bytes[n..];
        }
    }

    /// Adds a buffer to the chain: twice the last one, within bounds.
    #[cold]
    fn grow(&mut self) -> &mut PoolBuf {
        let largest = self.pool.0.largest;
        let size = match self.chunks.back() {
            Some(last) => (last.capacity() * 2).min(largest),
            None => FIRST_CHUNK.min(largest),
        };
        let chunk = self.pool.take(size);
        self.chunks.push_back(chunk);
        self.chunks.back_mut().expect("a buffer was just pushed")
    }

    /// Writes pending output to `writer` until all is written or it would
    /// block; buffers written out go back to the pool on the way. Returns
    /// whether everything was written.
    ///
    /// # Errors
    ///
    /// What `writer` returns other than `WouldBlock` and `Interrupted`
    /// (and `WriteZero` if it takes nothing).
    pub(crate) fn write_to(&mut self, writer: &mut impl Write) -> io::Result<bool> {
        while self.pending > 0 {
            let mut slices = [IoSlice::new(&[]); WRITE_SLICES];
            let mut count = 0;
            for (index, chunk) in self.chunks.iter().take(WRITE_SLICES).enumerate() {
                let start = if index == 0 { self.written } else { 0 };
                slices[index] = IoSlice::new(&chunk[start..]);
                count += 1;
            }
            match writer.write_vectored(&slices[..count]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.advance(n),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
        Ok(true)
    }

    /// Marks `n` more bytes written, giving back the buffers finished.
    fn advance(&mut self, mut n: usize) {
        debug_assert!(n <= self.pending, "wrote {n} of {} bytes", self.pending);
        self.pending -= n;
        while n > 0 {
            let Some(front) = self.chunks.front() else {
                break;
            };
            let left = front.len() - self.written;
            if n < left {
                self.written += n;
                return;
            }
            n -= left;
            self.written = 0;
            if let Some(chunk) = self.chunks.pop_front() {
                self.pool.give_back(chunk);
            }
        }
        // The last buffer may be written out while still the one that
        // takes new output: it goes back too, and the next byte takes a
        // fresh one, so an idle connection holds nothing.
        if self.pending == 0 {
            self.clear();
        }
    }
}

impl ReplyBuf for OutputBuffer {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        OutputBuffer::put(self, bytes);
    }
}

impl Drop for OutputBuffer {
    fn drop(&mut self) {
        self.clear();
    }
}

impl fmt::Debug for OutputBuffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutputBuffer")
            .field("pending", &self.pending)
            .field("buffers", &self.chunks.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::{Pool, PoolConfig};

    /// Takes at most `room` bytes per call, then would block.
    struct Trickle {
        got: Vec<u8>,
        room: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(self.room);
            self.room -= n;
            self.got.extend_from_slice(&buf[..n]);
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 253) as u8).collect()
    }

    #[test]
    fn output_larger_than_every_class_is_a_chain_and_comes_back_whole() {
        // Classes up to 16 KiB only: 100 KiB of output is 4 + 8 + 16 KiB
        // and then 16 KiB buffers, every one pooled.
        let pool = Pool::new(
            &PoolConfig::default()
                .largest_class(16 * 1024)
                .cap(16 * 1024, 8),
        );
        let output_pool = OutputPool::new(pool.lender());
        let mut out = OutputBuffer::new(output_pool.clone());
        let bytes = pattern(100 * 1024);
        out.put(&bytes[..10]);
        out.put(&bytes[10..]);
        assert_eq!(out.pending(), bytes.len());
        assert_eq!(out.buffers(), 3 + (100 - 28usize).div_ceil(16));
        assert_eq!(output_pool.counts().buffers, out.buffers() as u64);
        assert_eq!(output_pool.counts().fallbacks, 0);

        // Written a little at a time: each finished buffer goes back.
        let mut socket = Trickle {
            got: Vec::new(),
            room: 5000,
        };
        assert!(!out.write_to(&mut socket).unwrap());
        assert_eq!(out.pending(), bytes.len() - 5000);
        assert_eq!(out.buffers(), 7, "the 4 KiB buffer is back");
        assert_eq!(pool.usage().free, 1);
        socket.room = usize::MAX;
        assert!(out.write_to(&mut socket).unwrap());
        assert!(socket.got == bytes, "bytes written out changed");
        assert_eq!((out.pending(), out.buffers()), (0, 0));
        assert_eq!(output_pool.counts(), OutputCounts::default());
        let usage = pool.usage();
        assert_eq!((usage.in_use, usage.fallbacks), (0, 0), "{usage:?}");
    }

    // Megabytes through the buffer: too slow under Miri, and about memory
    // kept, not about the unsafe code the other tests here cover there.
    #[test]
    #[cfg_attr(miri, ignore)]
    fn a_long_chain_written_out_gives_its_list_back() {
        let pool = Pool::new(&PoolConfig::default());
        let output_pool = OutputPool::new(pool.lender());
        let mut out = OutputBuffer::new(output_pool.clone());
        // About 100 buffers: far more than a drained list keeps room for.
        let bytes = pattern(100 * LARGEST_CHUNK);
        out.put(&bytes);
        assert!(out.buffers() > KEPT_LIST, "{} buffers", out.buffers());
        let mut sink = Trickle {
            got: Vec::new(),
            room: usize::MAX,
        };
        assert!(out.write_to(&mut sink).unwrap());
        assert_eq!(sink.got, bytes);
        assert_eq!((out.pending(), out.buffers()), (0, 0));
        assert!(out.list_capacity() <= KEPT_LIST, "{}", out.list_capacity());

        // A short chain keeps its list: the next replies reuse it.
        out.put(&pattern(3 * FIRST_CHUNK));
        let kept = out.list_capacity();
        assert!(kept > 0);
        sink.got.clear();
        assert!(out.write_to(&mut sink).unwrap());
        assert_eq!(out.list_capacity(), kept);
    }

    #[test]
    fn buffers_past_the_cap_are_counted_fallbacks_and_dropping_frees_all() {
        let pool = Pool::new(
            &PoolConfig::default()
                .cap(FIRST_CHUNK, 1)
                .cap(2 * FIRST_CHUNK, 0),
        );
        let output_pool = OutputPool::new(pool.lender());
        let mut first = OutputBuffer::new(output_pool.clone());
        let mut second = OutputBuffer::new(output_pool.clone());
        first.put(&pattern(FIRST_CHUNK + 1));
        second.put(b"x");
        // first: 4 KiB pooled, 8 KiB fallback; second: 4 KiB fallback.
        assert_eq!(output_pool.counts().buffers, 3);
        assert_eq!(output_pool.counts().fallbacks, 2);
        assert_eq!(pool.usage().fallbacks, 2);
        drop(first);
        second.clear();
        assert_eq!(output_pool.counts().buffers, 0);
        assert_eq!(output_pool.counts().bytes, 0);
        assert_eq!(pool.usage().in_use, 0);
        assert_eq!(pool.usage().free, 1);
    }
}
