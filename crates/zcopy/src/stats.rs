//! Counters every engine keeps, and the process's CPU usage around a transfer.

/// What an engine did: bytes delivered and syscalls issued.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Bytes delivered to the sink.
    pub bytes: u64,
    /// Syscalls issued on the data path (io_uring: submissions count as one each).
    pub syscalls: u64,
    /// Sends the kernel reported it had to copy after all (MSG_ZEROCOPY, SEND_ZC).
    pub zerocopy_copied: u64,
    /// Sends the kernel completed without copying (MSG_ZEROCOPY, SEND_ZC).
    pub zerocopy_done: u64,
}

impl Stats {
    /// Adds another engine's counters to these.
    pub fn add(&mut self, other: &Stats) {
        self.bytes += other.bytes;
        self.syscalls += other.syscalls;
        self.zerocopy_copied += other.zerocopy_copied;
        self.zerocopy_done += other.zerocopy_done;
    }
}

pub use crate::sys::rusage::Usage;
