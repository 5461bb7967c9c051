//! A pool of equally sized, aligned buffers allocated once at start: taking one blocks while
//! all are in use, which is what bounds the memory of the whole data path.

use crossbeam_channel::{Receiver, Sender, bounded};

use crate::device::aligned::AlignedBuf;

/// Shared handle to a buffer pool; clones take from and return to the same buffers.
#[derive(Debug, Clone)]
pub struct Pool {
    tx: Sender<AlignedBuf>,
    rx: Receiver<AlignedBuf>,
    size: usize,
}

impl Pool {
    /// `count` buffers of `size` bytes each.
    pub fn new(count: usize, size: usize) -> Pool {
        assert!(count > 0);
        let (tx, rx) = bounded(count);
        for _ in 0..count {
            tx.send(AlignedBuf::new(size)).expect("channel sized for the pool");
        }
        Pool { tx, rx, size }
    }

    /// A free buffer, waiting for one if all are in use.
    pub fn take(&self) -> AlignedBuf {
        self.rx.recv().expect("the pool holds its own sender")
    }

    /// Returns a buffer to the pool.
    pub fn give(&self, buf: AlignedBuf) {
        assert_eq!(buf.len(), self.size, "buffer from another pool");
        self.tx.try_send(buf).expect("more buffers returned than taken");
    }

    /// Size of each buffer.
    pub fn buf_size(&self) -> usize {
        self.size
    }
}
