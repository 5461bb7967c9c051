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

/// Byte buffers that go back to their recycler when dropped, so that reading back allocates
/// (and the kernel zeroes) fresh pages only until the pipeline is full, not for every record.
/// At most `keep` free buffers are held; any beyond that are freed.
#[derive(Debug, Clone)]
pub struct Recycler {
    tx: Sender<Vec<u8>>,
    rx: Receiver<Vec<u8>>,
}

impl Recycler {
    /// A recycler holding at most `keep` free buffers.
    pub fn new(keep: usize) -> Recycler {
        let (tx, rx) = bounded(keep);
        Recycler { tx, rx }
    }

    /// A buffer of `len` bytes. Its contents are unspecified (a recycled buffer keeps old
    /// bytes): the caller overwrites all of it.
    pub fn take(&self, len: usize) -> Reused {
        let mut vec = self.rx.try_recv().unwrap_or_default();
        // Growing zeroes only the new tail; shrinking is free.
        vec.resize(len, 0);
        Reused { vec, home: self.tx.clone() }
    }
}

/// A buffer from a [`Recycler`]; dereferences to its bytes.
#[derive(Debug)]
pub struct Reused {
    vec: Vec<u8>,
    home: Sender<Vec<u8>>,
}

impl std::ops::Deref for Reused {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.vec
    }
}

impl std::ops::DerefMut for Reused {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.vec
    }
}

impl Drop for Reused {
    fn drop(&mut self) {
        // A full recycler (or one that is gone) means this buffer is simply freed.
        let _ = self.home.try_send(std::mem::take(&mut self.vec));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recycled_buffers_come_back_and_are_bounded() {
        let r = Recycler::new(1);
        let a = r.take(100);
        let ptr = a.as_ptr();
        let b = r.take(50);
        drop(a);
        drop(b); // the recycler holds one: this one is freed
        let c = r.take(80);
        assert_eq!(c.len(), 80);
        assert_eq!(c.as_ptr(), ptr, "the first buffer returned is reused");
        let d = r.take(10);
        assert_ne!(d.as_ptr(), ptr);
        assert_eq!(d.len(), 10);
    }
}
