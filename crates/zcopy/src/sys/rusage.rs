//! `getrusage(2)`.

use std::time::Duration;

use crate::stats::Usage;

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
