//! Cold file ranges are brought into the page cache off the event loop, so one client
//! downloading a file that is not cached doesn't stall every other connection of the
//! worker (sendfile, splice and mmap all block the calling thread on a disk read).
//!
//! Per chunk the driver asks [`is_cached`] (two `preadv2(RWF_NOWAIT)` of one byte);
//! when the range is cold it hands it to the worker's fetch thread, which reads it
//! through (`posix_fadvise(WILLNEED)`, then `pread` into a scratch buffer until the
//! range is in), and wakes the worker with the connection's token.

use std::fs::File;
use std::io;
use std::io::IoSliceMut;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::thread::JoinHandle;

use mio::Waker;
use rustix::io::{Errno, ReadWriteFlags};

/// Bytes the fetch thread reads per `pread`.
const FETCH_CHUNK: usize = 256 * 1024;

struct Job {
    token: usize,
    file: Arc<File>,
    offset: u64,
    len: u64,
}

/// A worker's fetch thread.
#[derive(Debug)]
pub struct Fetcher {
    jobs: Sender<Job>,
    done: Receiver<usize>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

impl Fetcher {
    /// Starts the thread; `waker` wakes the worker when a range is in.
    pub fn spawn(name: String, waker: Arc<Waker>) -> io::Result<Fetcher> {
        let (jobs, rx) = channel::<Job>();
        let (tx, done) = channel();
        let thread = std::thread::Builder::new().name(name).spawn(move || {
            let mut scratch = vec![0u8; FETCH_CHUNK];
            for job in rx {
                read_through(&job, &mut scratch);
                if tx.send(job.token).is_err() {
                    return;
                }
                let _ = waker.wake();
            }
        })?;
        Ok(Fetcher {
            jobs,
            done,
            thread: Some(thread),
        })
    }

    /// Brings `len` bytes of `file` from `offset` into the page cache, then reports
    /// `token` through [`Fetcher::completed`].
    pub fn request(&self, token: usize, file: Arc<File>, offset: u64, len: u64) {
        let _ = self.jobs.send(Job {
            token,
            file,
            offset,
            len,
        });
    }

    /// Tokens whose ranges are in (or failed: the engine will then report the error).
    pub fn completed(&self) -> impl Iterator<Item = usize> + '_ {
        self.done.try_iter()
    }
}

impl Drop for Fetcher {
    fn drop(&mut self) {
        // Closing the job channel ends the thread after its current read.
        let (dead, _) = channel();
        self.jobs = dead;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn read_through(job: &Job, scratch: &mut [u8]) {
    let _ = rustix::fs::fadvise(
        &*job.file,
        job.offset,
        std::num::NonZeroU64::new(job.len),
        rustix::fs::Advice::WillNeed,
    );
    let end = job.offset + job.len;
    let mut at = job.offset;
    while at < end {
        let n = ((end - at) as usize).min(scratch.len());
        match rustix::io::pread(&*job.file, &mut scratch[..n], at) {
            Ok(0) => return,
            Ok(got) => at += got as u64,
            Err(Errno::INTR) => {}
            Err(_) => return,
        }
    }
}

/// Whether the first and last byte of `[offset, offset + len)` are in the page cache
/// (`preadv2(RWF_NOWAIT)` fails with EAGAIN where a read would go to disk).
pub fn is_cached(file: &File, offset: u64, len: u64) -> bool {
    let probe = |at: u64| {
        let mut b = [0u8; 1];
        !matches!(
            rustix::io::preadv2(
                file,
                &mut [IoSliceMut::new(&mut b)],
                at,
                ReadWriteFlags::NOWAIT
            ),
            Err(Errno::AGAIN)
        )
    };
    len == 0 || (probe(offset) && probe(offset + len - 1))
}
