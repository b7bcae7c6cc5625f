//! Counters every engine keeps, and the process's CPU usage around a transfer.

use std::time::Duration;

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

/// Process resource usage (from `getrusage(RUSAGE_SELF)` or `RUSAGE_THREAD`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Usage {
    /// CPU time in user mode.
    pub user: Duration,
    /// CPU time in kernel mode.
    pub system: Duration,
    /// Voluntary context switches.
    pub voluntary_switches: u64,
    /// Involuntary context switches.
    pub involuntary_switches: u64,
    /// Minor page faults.
    pub minor_faults: u64,
    /// Major page faults.
    pub major_faults: u64,
}

impl Usage {
    /// Usage of the whole process so far.
    pub fn process() -> Usage {
        crate::sys::rusage::usage(crate::sys::rusage::Who::Process)
    }

    /// Usage of the calling thread so far.
    pub fn thread() -> Usage {
        crate::sys::rusage::usage(crate::sys::rusage::Who::Thread)
    }

    /// The difference `self - earlier`, saturating at zero.
    pub fn since(&self, earlier: &Usage) -> Usage {
        Usage {
            user: self.user.saturating_sub(earlier.user),
            system: self.system.saturating_sub(earlier.system),
            voluntary_switches: self
                .voluntary_switches
                .saturating_sub(earlier.voluntary_switches),
            involuntary_switches: self
                .involuntary_switches
                .saturating_sub(earlier.involuntary_switches),
            minor_faults: self.minor_faults.saturating_sub(earlier.minor_faults),
            major_faults: self.major_faults.saturating_sub(earlier.major_faults),
        }
    }

    /// User plus system CPU time.
    pub fn cpu(&self) -> Duration {
        self.user + self.system
    }
}
