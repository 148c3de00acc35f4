//! Receive batches: fixed slots in one allocation, filled by non-blocking reads and handed to
//! the engine as slices.
//!
//! One wake-up reads up to [`Batch::capacity`] frames or datagrams (64 in the agent), so the
//! cost of the wake-up and of the engine's per-batch work is shared. Slots are 64 KB, the
//! largest UDP datagram and the largest TAP super-frame once offloads are on, so nothing is
//! ever truncated.

use std::net::Ipv4Addr;

/// Frames per wake-up and per source.
pub const BATCH_SIZE: usize = 64;
/// Bytes per slot.
pub const SLOT_SIZE: usize = 65536;

/// Up to `capacity` received buffers, each with the sender's IPv4 address (underlay) or
/// `0.0.0.0` (TAP).
#[derive(Debug)]
pub struct Batch {
    buf: Vec<u8>,
    slot: usize,
    filled: Vec<(usize, Ipv4Addr)>,
}

impl Batch {
    /// `capacity` slots of `slot` bytes each, allocated once.
    pub fn new(capacity: usize, slot: usize) -> Batch {
        Batch {
            buf: vec![0; capacity * slot],
            slot,
            filled: Vec::with_capacity(capacity),
        }
    }

    /// How many slots the batch has.
    pub fn capacity(&self) -> usize {
        self.buf.len() / self.slot.max(1)
    }

    /// How many slots hold a received datagram.
    pub fn len(&self) -> usize {
        self.filled.len()
    }

    /// Whether no slot holds a datagram.
    pub fn is_empty(&self) -> bool {
        self.filled.is_empty()
    }

    /// Forget the received datagrams (the buffers are kept).
    pub fn clear(&mut self) {
        self.filled.clear();
    }

    /// The next free slot to read into, or `None` when the batch is full.
    pub fn next_slot(&mut self) -> Option<&mut [u8]> {
        let i = self.filled.len();
        if i >= self.capacity() {
            return None;
        }
        Some(&mut self.buf[i * self.slot..(i + 1) * self.slot])
    }

    /// Marks the slot from the last [`next_slot`](Self::next_slot) as holding `len` bytes.
    pub fn commit(&mut self, len: usize, src: Ipv4Addr) {
        if self.filled.len() < self.capacity() {
            self.filled.push((len.min(self.slot), src));
        }
    }

    /// The received buffers in order, with their source.
    pub fn iter(&self) -> impl Iterator<Item = (Ipv4Addr, &[u8])> + '_ {
        self.filled.iter().enumerate().map(|(i, &(len, src))| {
            let start = i * self.slot;
            (src, &self.buf[start..start + len])
        })
    }

    /// The received buffers in order.
    pub fn frames(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.iter().map(|(_, f)| f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_fill_in_order_and_stop_when_full() {
        let mut b = Batch::new(3, 4);
        assert_eq!(b.capacity(), 3);
        let src = Ipv4Addr::new(198, 18, 0, 12);
        for i in 0..3u8 {
            let slot = b.next_slot().expect("room");
            assert_eq!(slot.len(), 4);
            slot[..2].copy_from_slice(&[i, i]);
            b.commit(2, src);
        }
        assert!(b.next_slot().is_none());
        // A commit past capacity is ignored rather than corrupting anything.
        b.commit(4, src);
        assert_eq!(b.len(), 3);
        let got: Vec<_> = b.frames().map(|f| f.to_vec()).collect();
        assert_eq!(got, vec![vec![0, 0], vec![1, 1], vec![2, 2]]);
        assert!(b.iter().all(|(s, _)| s == src));
        b.clear();
        assert!(b.is_empty());
        assert!(b.next_slot().is_some());
    }

    #[test]
    fn an_oversized_length_is_clamped_to_the_slot() {
        let mut b = Batch::new(1, 8);
        let _ = b.next_slot();
        b.commit(100, Ipv4Addr::UNSPECIFIED);
        assert_eq!(b.frames().next().map(<[u8]>::len), Some(8));
    }
}
