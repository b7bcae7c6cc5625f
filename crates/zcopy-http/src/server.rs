//! Listeners and worker threads: one mio event loop per worker (edge-triggered),
//! each with its own `SO_REUSEPORT` listener per address so the kernel spreads new
//! connections, a slab of connections, a run queue (so one busy connection can't
//! starve the others) and coarse timers.

use std::fmt;
use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};
use rustix::io::Errno;
use socket2::{Domain, Socket, Type};
use zcopy::transfer::Forced;
use zcopy::{FdKind, Plan};

use crate::config::{AccessLog, Config};
use crate::conn::{Conn, Ctx, Progress};
use crate::handler::Site;

const WAKER: Token = Token(usize::MAX);
/// Listener tokens count down from here.
const LISTENER_BASE: usize = usize::MAX - 1;
/// Longest sleep between timer sweeps.
const TICK: Duration = Duration::from_secs(1);
/// Pause after accept fails for lack of fds or memory, or at the connection cap.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// Most connections accepted per listener per loop turn.
const ACCEPT_BATCH: usize = 64;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The root is missing or not a directory.
    #[error("cannot serve {}: {source}", path.display())]
    Root {
        /// The root given.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why (e.g. address in use).
        #[source]
        source: io::Error,
    },
    /// The access log could not be opened.
    #[error("cannot open the access log {}: {source}", path.display())]
    AccessLog {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Anything else (creating the event loops or threads).
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Writes one Common Log Format line per response.
pub struct AccessLogger {
    out: Mutex<Box<dyn Write + Send>>,
}

impl fmt::Debug for AccessLogger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessLogger").finish_non_exhaustive()
    }
}

impl AccessLogger {
    /// Opens the destination (a file is created or appended to).
    pub fn open(dest: &AccessLog) -> io::Result<AccessLogger> {
        let out: Box<dyn Write + Send> = match dest {
            AccessLog::Stdout => Box::new(io::stdout()),
            AccessLog::File(p) => Box::new(io::LineWriter::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)?,
            )),
        };
        Ok(AccessLogger {
            out: Mutex::new(out),
        })
    }

    /// Logs `host - - [time] "request line" status bytes`.
    pub fn log(&self, ip: IpAddr, line: &str, status: u16, bytes: u64) {
        let when = clf_time(SystemTime::now());
        let bytes = if bytes == 0 {
            String::from("-")
        } else {
            bytes.to_string()
        };
        let entry = format!("{ip} - - [{when}] \"{line}\" {status} {bytes}\n");
        if let Ok(mut out) = self.out.lock() {
            let _ = out.write_all(entry.as_bytes());
            let _ = out.flush();
        }
    }
}

/// `10/Oct/2000:13:55:36 +0000` (UTC), rearranged from the IMF-fixdate that
/// `httpdate` writes (`Tue, 10 Oct 2000 13:55:36 GMT`, fixed width).
fn clf_time(t: SystemTime) -> String {
    let d = httpdate::fmt_http_date(t);
    format!(
        "{}/{}/{}:{} +0000",
        &d[5..7],
        &d[8..11],
        &d[12..16],
        &d[17..25]
    )
}

#[derive(Debug)]
struct ShutdownInner {
    flag: AtomicBool,
    wakers: Vec<Arc<Waker>>,
}

/// Asks a running server to stop: no new connections, in-flight responses finish
/// within the grace period, then the workers exit.
#[derive(Clone, Debug)]
pub struct ShutdownHandle {
    inner: Arc<ShutdownInner>,
}

impl ShutdownHandle {
    /// Starts the shutdown (safe to call from any thread, more than once).
    pub fn shutdown(&self) {
        self.inner.flag.store(true, Ordering::SeqCst);
        for w in &self.inner.wakers {
            let _ = w.wake();
        }
    }

    /// Whether shutdown was asked for.
    pub fn is_shutdown(&self) -> bool {
        self.inner.flag.load(Ordering::SeqCst)
    }
}

struct WorkerSetup {
    poll: Poll,
    listeners: Vec<TcpListener>,
}

/// A bound server, ready to run.
pub struct Server {
    site: Arc<Site>,
    addrs: Vec<SocketAddr>,
    workers: Vec<WorkerSetup>,
    shutdown: ShutdownHandle,
    log: Option<Arc<AccessLogger>>,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("addrs", &self.addrs)
            .field("workers", &self.workers.len())
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Opens the root, binds every listen address (one listener per worker each)
    /// and prepares the workers' event loops.
    pub fn bind(config: Config) -> Result<Server, ServerError> {
        let site = Site::open(config.clone()).map_err(|source| ServerError::Root {
            path: config.root.clone(),
            source,
        })?;
        let log = match &config.access_log {
            None => None,
            Some(dest) => Some(Arc::new(AccessLogger::open(dest).map_err(|source| {
                ServerError::AccessLog {
                    path: match dest {
                        AccessLog::File(p) => p.clone(),
                        AccessLog::Stdout => PathBuf::from("-"),
                    },
                    source,
                }
            })?)),
        };
        let n = config.worker_count();
        let mut per_worker: Vec<Vec<TcpListener>> = (0..n).map(|_| Vec::new()).collect();
        let mut addrs = Vec::new();
        for &addr in &config.listen {
            let (bound, group) = bind_group(addr, n)?;
            addrs.push(bound);
            for (w, l) in group.into_iter().enumerate() {
                per_worker[w].push(l);
            }
        }
        let mut workers = Vec::with_capacity(n);
        let mut wakers = Vec::with_capacity(n);
        for listeners in per_worker {
            let poll = Poll::new()?;
            wakers.push(Arc::new(Waker::new(poll.registry(), WAKER)?));
            workers.push(WorkerSetup { poll, listeners });
        }
        Ok(Server {
            site: Arc::new(site),
            addrs,
            workers,
            shutdown: ShutdownHandle {
                inner: Arc::new(ShutdownInner {
                    flag: AtomicBool::new(false),
                    wakers,
                }),
            },
            log,
        })
    }

    /// The addresses really bound (with the port the kernel chose for port 0).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// A handle that stops the server from another thread or a signal handler thread.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.clone()
    }

    /// Starts the worker threads and returns at once.
    pub fn spawn(self) -> io::Result<RunningServer> {
        let active = Arc::new(AtomicUsize::new(0));
        let plan = Plan::new(
            Some(FdKind::File { len: 0 }),
            FdKind::TcpSocket,
            self.site.config.engine,
        );
        tracing::debug!(engines = ?plan.engines, "file → socket plan");
        let forced = Forced::from_env();
        let mut threads = Vec::new();
        for (i, setup) in self.workers.into_iter().enumerate() {
            let worker = Worker {
                poll: setup.poll,
                listeners: setup
                    .listeners
                    .into_iter()
                    .map(|sock| Listener {
                        sock,
                        ready: true,
                        registered: false,
                    })
                    .collect(),
                slots: Vec::new(),
                free: Vec::new(),
                runq: Vec::new(),
                count: 0,
                active: active.clone(),
                shutdown: self.shutdown.inner.clone(),
                ctx: Ctx {
                    site: self.site.clone(),
                    log: self.log.clone(),
                    out: Vec::with_capacity(32 * 1024),
                    plan_loopback: crate::conn::loopback_plan(self.site.config.engine),
                    plan: plan.clone(),
                    forced: forced.clone(),
                    pool: [Vec::new(), Vec::new()],
                    cache: crate::cache::FileCache::new(
                        self.site.config.file_cache_ttl,
                        crate::cache::CACHE_FILES,
                    ),
                    now: Instant::now(),
                    shutting_down: false,
                },
                accept_paused_until: None,
                starved: false,
                next_sweep: Instant::now() + TICK,
                grace_until: None,
            };
            let t = std::thread::Builder::new()
                .name(format!("zcopy-worker-{i}"))
                .spawn(move || worker.run())?;
            threads.push(t);
        }
        Ok(RunningServer {
            addrs: self.addrs,
            shutdown: self.shutdown,
            threads,
        })
    }

    /// Runs until shut down (see [`Server::shutdown_handle`]).
    pub fn run(self) -> io::Result<()> {
        self.spawn()?.join()
    }
}

/// A server whose workers are running.
#[derive(Debug)]
pub struct RunningServer {
    addrs: Vec<SocketAddr>,
    shutdown: ShutdownHandle,
    threads: Vec<JoinHandle<io::Result<()>>>,
}

impl RunningServer {
    /// The bound addresses.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// The shutdown handle.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.clone()
    }

    /// Waits for every worker to exit.
    pub fn join(self) -> io::Result<()> {
        let mut result = Ok(());
        for t in self.threads {
            match t.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => result = Err(e),
                Err(_) => result = Err(io::Error::other("a worker thread panicked")),
            }
        }
        result
    }

    /// Shuts down and waits.
    pub fn stop(self) -> io::Result<()> {
        self.shutdown.shutdown();
        self.join()
    }
}

/// Binds `n` listeners to `addr` with `SO_REUSEPORT`. An explicit port is first
/// checked with a plain bind, so a port another server (even another zcopy) holds
/// is reported as in use instead of silently shared.
fn bind_group(addr: SocketAddr, n: usize) -> Result<(SocketAddr, Vec<TcpListener>), ServerError> {
    let err = |source| ServerError::Bind { addr, source };
    if addr.port() != 0 {
        let probe = new_socket(addr, false).map_err(err)?;
        probe.bind(&addr.into()).map_err(err)?;
    }
    let first = new_socket(addr, true).map_err(err)?;
    first.bind(&addr.into()).map_err(err)?;
    first.listen(1024).map_err(err)?;
    let bound = first
        .local_addr()
        .map_err(err)?
        .as_socket()
        .ok_or_else(|| err(io::Error::other("not an IP address")))?;
    let mut group = vec![first];
    for _ in 1..n {
        let s = new_socket(bound, true).and_then(|s| {
            s.bind(&bound.into())?;
            s.listen(1024)?;
            Ok(s)
        });
        match s {
            Ok(s) => group.push(s),
            Err(e) => {
                tracing::debug!("SO_REUSEPORT bind failed ({e}); workers share one listener");
                group.push(group[0].try_clone().map_err(err)?);
            }
        }
    }
    let listeners = group
        .into_iter()
        .map(|s| TcpListener::from_std(std::net::TcpListener::from(s)))
        .collect();
    Ok((bound, listeners))
}

fn new_socket(addr: SocketAddr, reuse_port: bool) -> io::Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM.cloexec(), None)?;
    s.set_reuse_address(true)?;
    if reuse_port {
        s.set_reuse_port(true)?;
    }
    s.set_nonblocking(true)?;
    Ok(s)
}

struct Listener {
    sock: TcpListener,
    /// May have connections waiting (edge-triggered: cleared only on WouldBlock).
    ready: bool,
    registered: bool,
}

struct Slot {
    conn: Option<Conn>,
    queued: bool,
}

struct Worker {
    poll: Poll,
    listeners: Vec<Listener>,
    slots: Vec<Slot>,
    free: Vec<usize>,
    runq: Vec<usize>,
    count: usize,
    active: Arc<AtomicUsize>,
    shutdown: Arc<ShutdownInner>,
    ctx: Ctx,
    accept_paused_until: Option<Instant>,
    /// Accept failed for lack of fds or memory (warned once per episode).
    starved: bool,
    next_sweep: Instant,
    grace_until: Option<Instant>,
}

impl Worker {
    fn run(mut self) -> io::Result<()> {
        for (i, l) in self.listeners.iter_mut().enumerate() {
            self.poll.registry().register(
                &mut l.sock,
                Token(LISTENER_BASE - i),
                Interest::READABLE,
            )?;
            l.registered = true;
        }
        let mut events = Events::with_capacity(1024);
        loop {
            let now = Instant::now();
            let mut wake = self.next_sweep;
            if let Some(t) = self.accept_paused_until {
                wake = wake.min(t);
            }
            if let Some(t) = self.grace_until {
                wake = wake.min(t);
            }
            let accept_now = self.accept_paused_until.is_none()
                && self.listeners.iter().any(|l| l.ready && l.registered);
            let timeout = if !self.runq.is_empty() || accept_now {
                Duration::ZERO
            } else {
                wake.saturating_duration_since(now)
            };
            match self.poll.poll(&mut events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            self.ctx.now = Instant::now();
            for ev in events.iter() {
                let t = ev.token();
                if t == WAKER {
                    continue;
                }
                if t.0 > LISTENER_BASE - self.listeners.len() && t.0 <= LISTENER_BASE {
                    self.listeners[LISTENER_BASE - t.0].ready = true;
                    continue;
                }
                if let Some(slot) = self.slots.get_mut(t.0)
                    && let Some(conn) = slot.conn.as_mut()
                {
                    let err = ev.is_error();
                    conn.ready(
                        ev.is_readable() || ev.is_read_closed() || err,
                        ev.is_writable() || ev.is_write_closed() || err,
                        ev.is_read_closed() || err,
                    );
                    if !slot.queued {
                        slot.queued = true;
                        self.runq.push(t.0);
                    }
                }
            }
            if self.shutdown.flag.load(Ordering::SeqCst) && !self.ctx.shutting_down {
                self.begin_shutdown();
            }
            self.accept();
            self.run_queue();
            if self.ctx.now >= self.next_sweep {
                self.sweep();
            }
            if let Some(g) = self.grace_until
                && (self.count == 0 || self.ctx.now >= g)
            {
                if self.count > 0 {
                    tracing::info!(
                        open = self.count,
                        "shutdown grace period over; closing connections"
                    );
                }
                for i in 0..self.slots.len() {
                    self.close(i);
                }
                return Ok(());
            }
        }
    }

    fn begin_shutdown(&mut self) {
        self.ctx.shutting_down = true;
        self.grace_until = Some(self.ctx.now + self.ctx.site.config.shutdown_grace);
        for l in &mut self.listeners {
            if l.registered {
                let _ = self.poll.registry().deregister(&mut l.sock);
                l.registered = false;
            }
        }
        self.listeners.clear();
        for i in 0..self.slots.len() {
            if self.slots[i].conn.as_ref().is_some_and(|c| c.is_idle()) {
                self.close(i);
            }
        }
    }

    fn accept(&mut self) {
        if let Some(t) = self.accept_paused_until {
            if self.ctx.now < t {
                return;
            }
            self.accept_paused_until = None;
        }
        let max = self.ctx.site.config.max_connections.max(1);
        for li in 0..self.listeners.len() {
            let mut accepted = 0;
            while self.listeners[li].ready && self.listeners[li].registered {
                if accepted >= ACCEPT_BATCH {
                    return;
                }
                if self.active.load(Ordering::Relaxed) >= max {
                    self.accept_paused_until = Some(self.ctx.now + ACCEPT_PAUSE);
                    return;
                }
                match self.listeners[li].sock.accept() {
                    Ok((stream, peer)) => {
                        accepted += 1;
                        self.starved = false;
                        self.add(stream, peer);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        self.listeners[li].ready = false;
                    }
                    Err(e) => match rustix::io::Errno::from_io_error(&e) {
                        Some(Errno::MFILE | Errno::NFILE | Errno::NOBUFS | Errno::NOMEM) => {
                            if !self.starved {
                                self.starved = true;
                                tracing::warn!("accept: {e}; pausing new connections");
                            }
                            self.accept_paused_until = Some(self.ctx.now + ACCEPT_PAUSE);
                            return;
                        }
                        _ => tracing::debug!("accept: {e}"),
                    },
                }
            }
        }
    }

    fn add(&mut self, stream: mio::net::TcpStream, peer: SocketAddr) {
        let idx = self.free.pop().unwrap_or_else(|| {
            self.slots.push(Slot {
                conn: None,
                queued: false,
            });
            self.slots.len() - 1
        });
        let mut conn = Conn::new(stream, peer, &self.ctx);
        if let Err(e) = self.poll.registry().register(
            conn.stream(),
            Token(idx),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            tracing::warn!("register: {e}");
            self.free.push(idx);
            return;
        }
        self.active.fetch_add(1, Ordering::Relaxed);
        self.count += 1;
        self.next_sweep = self.next_sweep.min(conn.deadline());
        let slot = &mut self.slots[idx];
        slot.conn = Some(conn);
        slot.queued = true;
        self.runq.push(idx);
    }

    fn close(&mut self, idx: usize) {
        let Some(slot) = self.slots.get_mut(idx) else {
            return;
        };
        if let Some(mut conn) = slot.conn.take() {
            let _ = self.poll.registry().deregister(conn.stream());
            drop(conn);
            self.active.fetch_sub(1, Ordering::Relaxed);
            self.count -= 1;
            self.free.push(idx);
            if self.accept_paused_until.is_some() {
                // A slot opened up: try accepting again soon.
                self.accept_paused_until = Some(self.ctx.now);
            }
        }
        slot.queued = false;
    }

    fn run_queue(&mut self) {
        let queue = std::mem::take(&mut self.runq);
        for &idx in &queue {
            let slot = &mut self.slots[idx];
            slot.queued = false;
            let Some(conn) = slot.conn.as_mut() else {
                continue;
            };
            let p = conn.drive(&mut self.ctx);
            let deadline = conn.deadline();
            self.settle(idx, p, deadline);
        }
        // Keep the queue's allocation if nothing was added meanwhile.
        if self.runq.is_empty() {
            self.runq = queue;
            self.runq.clear();
        }
    }

    fn settle(&mut self, idx: usize, p: Progress, deadline: Instant) {
        match p {
            Progress::Close => self.close(idx),
            Progress::Yield => {
                let slot = &mut self.slots[idx];
                if !slot.queued {
                    slot.queued = true;
                    self.runq.push(idx);
                }
                self.next_sweep = self.next_sweep.min(deadline);
            }
            Progress::Wait => self.next_sweep = self.next_sweep.min(deadline),
        }
    }

    fn sweep(&mut self) {
        let now = self.ctx.now;
        let mut next = now + TICK;
        for idx in 0..self.slots.len() {
            let Some(conn) = self.slots[idx].conn.as_mut() else {
                continue;
            };
            if conn.deadline() <= now {
                let p = conn.timeout(&mut self.ctx);
                let d = conn.deadline();
                self.settle(idx, p, d);
                if self.slots[idx].conn.is_none() {
                    continue;
                }
            }
            if let Some(conn) = self.slots[idx].conn.as_ref() {
                next = next.min(conn.deadline().max(now + Duration::from_millis(1)));
            }
        }
        self.next_sweep = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clf_time_formats_known_dates() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(971_186_136);
        assert_eq!(clf_time(t), "10/Oct/2000:13:55:36 +0000");
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_709_164_800);
        assert_eq!(clf_time(t), "29/Feb/2024:00:00:00 +0000");
    }
}
