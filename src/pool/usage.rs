//! What a pool reports about itself.

/// One pool's use of memory, as its owning core last counted it. Buffers
/// are pooled buffers unless they say fallback.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolUsage {
    /// Pooled buffers taken and not yet back (including those dropped on
    /// another core and not yet drained from the return queue).
    pub in_use: u64,
    /// Bytes in those buffers.
    pub in_use_bytes: u64,
    /// Pooled buffers free for the owner to hand out.
    pub free: u64,
    /// Bytes in those buffers.
    pub free_bytes: u64,
    /// Buffers the owner took from the return queues since the pool was
    /// made: buffers dropped on another core.
    pub remote_returns: u64,
    /// Buffers served by the system allocator since the pool was made,
    /// because their class was at its cap or no class was large enough.
    pub fallbacks: u64,
    /// Bytes in those buffers.
    pub fallback_bytes: u64,
}

impl PoolUsage {
    /// Adds `other` into `self` (for totals over cores).
    pub fn add(&mut self, other: &PoolUsage) {
        self.in_use += other.in_use;
        self.in_use_bytes += other.in_use_bytes;
        self.free += other.free;
        self.free_bytes += other.free_bytes;
        self.remote_returns += other.remote_returns;
        self.fallbacks += other.fallbacks;
        self.fallback_bytes += other.fallback_bytes;
    }

    /// Bytes the pool owns: in use and free.
    pub fn pooled_bytes(&self) -> u64 {
        self.in_use_bytes + self.free_bytes
    }
}
