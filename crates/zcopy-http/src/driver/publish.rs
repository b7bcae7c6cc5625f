//! Uploads are published off the event loop. Publishing a body means `fsync` (which
//! waits for every dirty page of the file to reach the disk: half a second for a
//! 1 GiB upload here), then `linkat`/`renameat` and an `fsync` of the directory; on
//! the loop that stalled every other connection of the worker. A worker's
//! [`Publisher`] hands the publish ([`PublishJob`]) to a small pool of threads shared
//! by all workers, as password checks are handed to theirs
//! ([`crate::auth::Checks`]), and wakes the worker when the answer (201, 204, 412,
//! 507) is ready; the driver gives it to the connection
//! ([`proto::Conn::on_published`]), which was waiting meanwhile.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Condvar, Mutex, OnceLock};

use mio::Waker;

use crate::handler::Response;
use crate::proto::{self, PublishJob};

/// Threads that publish uploads (all workers): independent uploads sync in parallel.
pub const PUBLISH_THREADS: usize = 4;

/// Names publishes apart (a connection slot is reused; its answer must not be).
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

struct Job {
    token: usize,
    id: u64,
    job: PublishJob,
    reply: Sender<Published>,
    waker: Option<Arc<Waker>>,
}

/// The answer of a publish, for the connection `token` of the worker.
#[derive(Debug)]
pub struct Published {
    /// The connection (slot) that waits.
    pub token: usize,
    /// Which publish: [`proto::Conn::on_published`] drops an answer it did not ask for.
    pub id: u64,
    /// The answer.
    pub resp: Response,
    /// Its head.
    pub out: crate::head::Out,
}

struct Pool {
    queue: Mutex<VecDeque<Job>>,
    ready: Condvar,
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<&'static Pool> = OnceLock::new();
    POOL.get_or_init(|| {
        let pool: &'static Pool = Box::leak(Box::new(Pool {
            queue: Mutex::new(VecDeque::new()),
            ready: Condvar::new(),
        }));
        for i in 0..PUBLISH_THREADS {
            let spawned = std::thread::Builder::new()
                .name(format!("zcopy-publish-{i}"))
                .spawn(move || publish_thread(pool));
            if let Err(e) = spawned {
                tracing::error!("publish thread: {e}");
            }
        }
        pool
    })
}

fn publish_thread(pool: &'static Pool) {
    loop {
        let job = {
            let mut q = pool.queue.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if let Some(job) = q.pop_front() {
                    break job;
                }
                q = pool.ready.wait(q).unwrap_or_else(|e| e.into_inner());
            }
        };
        let (resp, out) = job.job.run();
        let done = Published {
            token: job.token,
            id: job.id,
            resp,
            out,
        };
        if job.reply.send(done).is_ok()
            && let Some(w) = &job.waker
        {
            let _ = w.wake();
        }
    }
}

/// A worker's publishes: hands them to the pool and carries the answers back.
pub struct Publisher {
    tx: Sender<Published>,
    rx: Receiver<Published>,
    waker: Option<Arc<Waker>>,
    /// Publishes of this worker in the pool.
    pub(crate) in_flight: usize,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("in_flight", &self.in_flight)
            .finish_non_exhaustive()
    }
}

impl Default for Publisher {
    fn default() -> Publisher {
        Publisher::new(None)
    }
}

impl Publisher {
    /// Publishes whose answers wake the worker through `waker` (`None`: the worker
    /// looks at [`Publisher::completed`] every loop turn anyway).
    pub fn new(waker: Option<Arc<Waker>>) -> Publisher {
        let (tx, rx) = channel();
        Publisher {
            tx,
            rx,
            waker,
            in_flight: 0,
        }
    }

    /// Takes the whole body of connection `token` off it and publishes it in the
    /// pool; the connection waits for [`Publisher::completed`] to bring the answer.
    pub fn start(
        &mut self,
        core: &mut proto::Conn,
        env: &mut proto::Env<'_, impl proto::Observer>,
        token: usize,
    ) {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let Some(job) = core.take_publish(env, id) else {
            return;
        };
        self.queue(token, id, job);
    }

    /// Publishes `job` for connection `token` in the pool (an HTTP/2 stream's
    /// body): [`Publisher::completed`] brings the answer named by the id returned.
    pub fn start_job(&mut self, token: usize, job: PublishJob) -> u64 {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        self.queue(token, id, job);
        id
    }

    fn queue(&mut self, token: usize, id: u64, job: PublishJob) {
        let pool = pool();
        pool.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back(Job {
                token,
                id,
                job,
                reply: self.tx.clone(),
                waker: self.waker.clone(),
            });
        pool.ready.notify_one();
        self.in_flight += 1;
    }

    /// The answers in: give each to its connection ([`proto::Conn::on_published`])
    /// and drive it.
    pub fn completed(&mut self, done: &mut Vec<Published>) {
        while let Ok(p) = self.rx.try_recv() {
            self.in_flight -= 1;
            done.push(p);
        }
    }
}
