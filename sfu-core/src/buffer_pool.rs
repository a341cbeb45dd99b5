//! Recycled egress buffers.
//!
//! Each forwarded packet is written (header, payload, SRTP tag) into a buffer from this pool;
//! the driver hands the buffer back after sending, so the steady state allocates nothing.
//! The pool never grows past its limit: extra buffers are simply freed.

/// Capacity of every pooled buffer: the largest datagram plus room for an SRTP tag.
pub const BUFFER_CAPACITY: usize = 1500 + 64;

/// A free list of egress buffers.
pub struct BufferPool {
    free: Vec<Vec<u8>>,
    limit: usize,
}

impl BufferPool {
    /// A pool pre-filled with `prefill` buffers that keeps at most `limit`.
    pub fn new(prefill: usize, limit: usize) -> Self {
        Self {
            free: (0..prefill)
                .map(|_| Vec::with_capacity(BUFFER_CAPACITY))
                .collect(),
            limit,
        }
    }

    /// An empty buffer with [`BUFFER_CAPACITY`] capacity.
    pub fn take(&mut self) -> Vec<u8> {
        self.free
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(BUFFER_CAPACITY))
    }

    /// Returns a buffer for reuse.
    pub fn give_back(&mut self, mut buf: Vec<u8>) {
        if self.free.len() < self.limit && buf.capacity() >= BUFFER_CAPACITY {
            buf.clear();
            self.free.push(buf);
        }
    }

    /// Buffers currently free.
    pub fn available(&self) -> usize {
        self.free.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recycles_without_growing_past_limit() {
        let mut pool = BufferPool::new(2, 3);
        let a = pool.take();
        let ptr = a.as_ptr();
        pool.give_back(a);
        let again = pool.take();
        assert_eq!(again.as_ptr(), ptr, "the same allocation comes back");
        pool.give_back(again);
        for _ in 0..10 {
            pool.give_back(Vec::with_capacity(BUFFER_CAPACITY));
        }
        assert_eq!(pool.available(), 3);
        pool.give_back(Vec::new());
        assert_eq!(pool.available(), 3, "undersized buffers are not kept");
    }
}
