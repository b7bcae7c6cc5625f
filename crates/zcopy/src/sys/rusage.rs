//! `getrusage(2)`.

use std::time::Duration;

/// Whose usage to read.
#[derive(Clone, Copy, Debug)]
pub enum Who {
    /// `RUSAGE_SELF`: all threads of the process.
    Process,
    /// `RUSAGE_THREAD`: the calling thread.
    Thread,
}

fn tv(t: libc::timeval) -> Duration {
    Duration::new(t.tv_sec as u64, (t.tv_usec as u32) * 1000)
}

/// `getrusage(who, &usage)` — <https://man7.org/linux/man-pages/man2/getrusage.2.html>
pub fn usage(who: Who) -> Usage {
    let who = match who {
        Who::Process => libc::RUSAGE_SELF,
        Who::Thread => libc::RUSAGE_THREAD,
    };
    // SAFETY: rusage is plain old data; all-zero is a valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable rusage; `who` is a valid constant. getrusage
    // cannot fail with these arguments.
    let rc = unsafe { libc::getrusage(who, &mut ru) };
    debug_assert_eq!(rc, 0);
    Usage {
        user: tv(ru.ru_utime),
        system: tv(ru.ru_stime),
        voluntary_switches: ru.ru_nvcsw as u64,
        involuntary_switches: ru.ru_nivcsw as u64,
        minor_faults: ru.ru_minflt as u64,
        major_faults: ru.ru_majflt as u64,
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
        usage(Who::Process)
    }

    /// Usage of the calling thread so far.
    pub fn thread() -> Usage {
        usage(Who::Thread)
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
