//! Binding and running a server: the root opened once, one `SO_REUSEPORT` listener
//! per worker and address, and the worker threads (each an event loop of
//! [`crate::driver`]); a handle to shut it all down.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;

use mio::net::TcpListener;
use mio::{Poll, Waker};
use socket2::{Domain, Socket, Type};

use crate::access_log::AccessLogger;
use crate::config::{AccessLog, Config};
use crate::driver::epoll::{self, WAKER};
use crate::driver::{self, IoDriver, uring};
use crate::handler::Site;

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

#[derive(Debug)]
pub(crate) struct ShutdownInner {
    pub(crate) flag: AtomicBool,
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
        let mut threads = Vec::new();
        let (io, why) = driver::choose(self.site.config.io);
        if self.site.config.io == IoDriver::Uring && io != IoDriver::Uring {
            tracing::warn!("--io uring: {why}; using epoll");
        } else {
            tracing::debug!(driver = %io, "I/O driver: {why}");
        }
        for (i, setup) in self.workers.into_iter().enumerate() {
            let (site, log, active, shutdown) = (
                self.site.clone(),
                self.log.clone(),
                active.clone(),
                self.shutdown.inner.clone(),
            );
            let name = format!("zcopy-worker-{i}");
            let (poll, listeners) = (setup.poll, setup.listeners);
            let t = match io {
                IoDriver::Uring => std::thread::Builder::new().name(name).spawn(move || {
                    uring::Worker::new(poll, listeners, site, log, active, shutdown).run()
                })?,
                _ => std::thread::Builder::new().name(name).spawn(move || {
                    epoll::Worker::new(poll, listeners, site, log, active, shutdown).run()
                })?,
            };
            threads.push(t);
        }
        Ok(RunningServer {
            io,
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
    io: IoDriver,
    addrs: Vec<SocketAddr>,
    shutdown: ShutdownHandle,
    threads: Vec<JoinHandle<io::Result<()>>>,
}

impl RunningServer {
    /// The event loop the workers run.
    pub fn io_driver(&self) -> IoDriver {
        self.io
    }

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
