//! The threads of a server running in this process, and the CPU time they used, from
//! `/proc/self/task/*/stat`: its workers (and their fetch threads), plus the
//! io_uring workers the kernel starts for them (`iou-wrk-<tid>`, `iou-sqp-<tid>`).

use std::collections::BTreeSet;
use std::io;
use std::time::{Duration, Instant};

use rustix::process::Pid;
use rustix::thread::sched_setaffinity;

/// The thread ids of this process.
pub fn tids() -> io::Result<BTreeSet<i32>> {
    let mut out = BTreeSet::new();
    for e in std::fs::read_dir("/proc/self/task")? {
        if let Some(tid) = e?.file_name().to_str().and_then(|s| s.parse().ok()) {
            out.insert(tid);
        }
    }
    Ok(out)
}

/// A thread's name and CPU time (user + system), `None` once it has exited.
fn stat(tid: i32) -> Option<(String, Duration)> {
    let text = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    // `tid (comm) state ...`: the name may hold spaces and parentheses.
    let (open, close) = (text.find('(')?, text.rfind(')')?);
    let name = text[open + 1..close].to_string();
    let fields: Vec<&str> = text[close + 1..].split_whitespace().collect();
    // After the name: state is field 3, utime 14 and stime 15 (proc(5)).
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let hz = rustix::param::clock_ticks_per_second().max(1);
    Some((name, Duration::from_nanos(ticks * 1_000_000_000 / hz)))
}

/// The threads of one server.
#[derive(Clone, Debug)]
pub struct ServerThreads {
    tids: BTreeSet<i32>,
}

impl ServerThreads {
    /// The server's worker and fetch threads: those named `zcopy-worker-*` or
    /// `zcopy-fetch-*` that are not in `before` (taken before the server was bound).
    /// Waits up to a second for its `workers` worker threads to take their names.
    pub fn since(before: &BTreeSet<i32>, workers: usize) -> io::Result<ServerThreads> {
        let deadline = Instant::now() + Duration::from_secs(1);
        let named = |t: i32, prefixes: &[&str]| {
            stat(t).is_some_and(|(n, _)| prefixes.iter().any(|p| n.starts_with(p)))
        };
        loop {
            let tids: BTreeSet<i32> = tids()?
                .difference(before)
                .copied()
                .filter(|&t| named(t, &["zcopy-worker-", "zcopy-fetch-"]))
                .collect();
            let named_workers = tids
                .iter()
                .filter(|&&t| named(t, &["zcopy-worker-"]))
                .count();
            if named_workers >= workers {
                return Ok(ServerThreads { tids });
            }
            if Instant::now() > deadline {
                return Err(io::Error::other(
                    "the server's worker threads did not show up",
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// CPU time used so far by the server's threads and the kernel's io_uring workers
    /// serving them (a kernel worker that has exited meanwhile is not counted).
    pub fn cpu(&self) -> io::Result<Duration> {
        let mut total = Duration::ZERO;
        for tid in tids()? {
            let Some((name, cpu)) = stat(tid) else {
                continue;
            };
            let mine = self.tids.contains(&tid)
                || ["iou-wrk-", "iou-sqp-"].iter().any(|p| {
                    name.strip_prefix(p)
                        .and_then(|t| t.parse::<i32>().ok())
                        .is_some_and(|owner| self.tids.contains(&owner))
                });
            if mine {
                total += cpu;
            }
        }
        Ok(total)
    }

    /// Pins the server's threads to the `nth` CPU this process may use, when it may
    /// use two or more (best effort).
    pub fn pin(&self, nth: usize) {
        if let Some((_, one)) = crate::scenario::one_cpu(nth) {
            for &tid in &self.tids {
                let _ = sched_setaffinity(Pid::from_raw(tid), &one);
            }
        }
    }
}
