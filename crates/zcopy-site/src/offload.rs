//! Work the site hands off the event loop that is not a password check: a WebDAV
//! COPY of a large file or a tree, a recursive DELETE, a MOVE over a collection.
//!
//! It rides on the password checks' round trip ([`crate::auth::Checks`]): the
//! request is answered [`Response::pending`](crate::plan::Response::pending), the
//! job runs on a thread of its own, and the worker is woken when it is done — and
//! once a second meanwhile, so the waiting request is asked again, finds its job
//! still running and waits on (the core's wait for a pending answer is the header
//! timeout; each ask starts it again). When the job is done the same request gets
//! its status. At most [`MAX_JOBS`] run at once in the process (beyond: 503).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::time::{Duration, Instant};

/// Wakes a worker when the result of its job (a password check, a file-system
/// operation) is in: the server's event-loop waker; the site knows no event loop.
pub type Wake = std::sync::Arc<dyn Fn() + Send + Sync>;

/// Jobs running at once, all workers together.
pub const MAX_JOBS: usize = 16;
/// How often a waiting request is asked again while its job runs.
const TICK: Duration = Duration::from_secs(1);
/// A result nobody came back for (the connection went away) is dropped after this.
const KEEP: Duration = Duration::from_secs(60);

static RUNNING: AtomicUsize = AtomicUsize::new(0);

/// What became of an offloaded request.
#[derive(Debug, PartialEq, Eq)]
pub enum Offload {
    /// Done: answer with this status.
    Done(u16),
    /// Running: answer [`Response::pending`](crate::plan::Response::pending).
    Pending,
    /// Too many jobs running: 503.
    Busy,
}

enum Msg {
    Tick(usize),
    Done(usize, u64, u16),
}

/// A worker's offloaded jobs, by connection token.
pub struct Jobs {
    tx: Sender<Msg>,
    rx: Receiver<Msg>,
    /// (token, request key) of jobs running.
    running: HashSet<(usize, u64)>,
    /// Results in, by token: (request key, status, when).
    done: HashMap<usize, (u64, u16, Instant)>,
}

impl std::fmt::Debug for Jobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jobs")
            .field("running", &self.running.len())
            .finish_non_exhaustive()
    }
}

impl Default for Jobs {
    fn default() -> Jobs {
        let (tx, rx) = channel();
        Jobs {
            tx,
            rx,
            running: HashSet::new(),
            done: HashMap::new(),
        }
    }
}

impl Jobs {
    /// The request `key` of connection `token`: its status once `job` has run off
    /// the loop (started on the first ask), `Pending` meanwhile.
    pub fn run(
        &mut self,
        token: usize,
        key: u64,
        waker: Option<&Wake>,
        job: impl FnOnce() -> u16 + Send + 'static,
    ) -> Offload {
        if let Some((k, status, _)) = self.done.remove(&token)
            && k == key
        {
            return Offload::Done(status);
        }
        // (A result for another request on this token was nobody's any more: its
        // connection went away and the token was given to a new one.)
        if self.running.contains(&(token, key)) {
            return Offload::Pending;
        }
        let Some(waker) = waker else {
            // No event loop to wake (a site used without a server): run it here.
            return Offload::Done(job());
        };
        if RUNNING.fetch_add(1, Ordering::AcqRel) >= MAX_JOBS {
            RUNNING.fetch_sub(1, Ordering::AcqRel);
            return Offload::Busy;
        }
        let tx = self.tx.clone();
        let wake = waker.clone();
        let spawned = std::thread::Builder::new()
            .name("zcopy-dav".into())
            .spawn(move || {
                let (dtx, drx) = channel();
                let worker = std::thread::Builder::new()
                    .name("zcopy-dav-job".into())
                    .spawn(move || {
                        let _ = dtx.send(job());
                    });
                let status = match worker {
                    Err(_) => 503,
                    Ok(_) => loop {
                        match drx.recv_timeout(TICK) {
                            Ok(s) => break s,
                            Err(RecvTimeoutError::Timeout) => {
                                let _ = tx.send(Msg::Tick(token));
                                wake();
                            }
                            Err(RecvTimeoutError::Disconnected) => break 500,
                        }
                    },
                };
                RUNNING.fetch_sub(1, Ordering::AcqRel);
                let _ = tx.send(Msg::Done(token, key, status));
                wake();
            });
        if spawned.is_err() {
            RUNNING.fetch_sub(1, Ordering::AcqRel);
            return Offload::Busy;
        }
        self.running.insert((token, key));
        Offload::Pending
    }

    /// Tokens of the connections to ask again (appended to `woken`).
    pub fn completed(&mut self, woken: &mut Vec<usize>) {
        let now = Instant::now();
        while let Ok(m) = self.rx.try_recv() {
            match m {
                Msg::Tick(token) => woken.push(token),
                Msg::Done(token, key, status) => {
                    self.running.remove(&(token, key));
                    self.done.insert(token, (key, status, now));
                    woken.push(token);
                }
            }
        }
        self.done
            .retain(|_, (_, _, at)| now.duration_since(*at) < KEEP);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_job_runs_off_the_thread_and_its_request_gets_the_status() {
        let mut jobs = Jobs::default();
        let (wtx, wrx) = channel::<()>();
        let wtx = std::sync::Mutex::new(wtx);
        let waker: Wake = Arc::new(move || {
            let _ = crate::lock(&wtx).send(());
        });
        let (gate_tx, gate_rx) = channel::<()>();
        let r = jobs.run(7, 42, Some(&waker), move || {
            gate_rx.recv().unwrap();
            201
        });
        assert_eq!(r, Offload::Pending);
        // Asked again while running: still pending, no second job.
        assert_eq!(jobs.run(7, 42, Some(&waker), || 500), Offload::Pending);
        gate_tx.send(()).unwrap();
        let mut woken = Vec::new();
        while !woken.contains(&7) || !jobs.done.contains_key(&7) {
            wrx.recv().unwrap();
            jobs.completed(&mut woken);
        }
        assert_eq!(jobs.run(7, 42, Some(&waker), || 500), Offload::Done(201));
        // A result nobody took is not another request's.
        jobs.done.insert(7, (42, 201, Instant::now()));
        assert_eq!(jobs.run(7, 43, None, || 204), Offload::Done(204));
        assert!(jobs.done.is_empty());
    }
}
