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
use crate::config::{AccessLog, Config, ListenKind};
use crate::driver::Role;
use crate::driver::epoll::{self, WAKER};
use crate::driver::tls::TlsSite;
use crate::driver::worker::Start;
use crate::driver::{self, IoDriver, uring};
use crate::handler::Site;
use crate::live::{Live, LiveCell};
use crate::stats::Stats;

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
    /// The HTTPS listeners' certificate or key could not be loaded.
    #[error("{0}")]
    Tls(#[from] zcopy_tls::LoadError),
    /// HTTPS listeners were asked for without a certificate and key.
    #[error("HTTPS listeners need a certificate and key (--tls-cert, --tls-key)")]
    NoCertificate,
    /// Anything else (creating the event loops or threads).
    #[error(transparent)]
    Io(#[from] io::Error),
}

#[derive(Debug)]
pub(crate) struct ShutdownInner {
    pub(crate) flag: AtomicBool,
    pub(crate) wakers: Vec<Arc<Waker>>,
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
    listeners: Vec<(TcpListener, Role)>,
}

/// Reloads the HTTPS listeners' certificate and key from their files (SIGHUP); a
/// no-op without HTTPS listeners.
#[derive(Clone, Debug)]
pub struct TlsReloader {
    tls: Option<Arc<TlsSite>>,
}

impl TlsReloader {
    /// Reads the files again; the next handshakes present the new certificate. On
    /// error the old one stays. `Ok(false)`: there is no HTTPS listener.
    pub fn reload(&self) -> Result<bool, zcopy_tls::LoadError> {
        match &self.tls {
            Some(t) => t.listener.certs.reload().map(|()| true),
            None => Ok(false),
        }
    }
}

/// A bound server, ready to run.
pub struct Server {
    live: Arc<LiveCell>,
    stats: Arc<Stats>,
    addrs: Vec<SocketAddr>,
    kinds: Vec<ListenKind>,
    tls: Option<Arc<TlsSite>>,
    workers: Vec<WorkerSetup>,
    shutdown: ShutdownHandle,
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
        Server::bind_with(config, Vec::new())
    }

    /// Like [`Server::bind`], but when `inherited` holds listening sockets (passed by
    /// a service manager) they are served instead of the listen addresses (as plain
    /// HTTP), each shared by every worker.
    pub fn bind_with(
        mut config: Config,
        inherited: Vec<std::net::TcpListener>,
    ) -> Result<Server, ServerError> {
        let tls = match (&config.tls, config.tls_listen.is_empty()) {
            (_, true) => None,
            (Some(t), false) => Some(Arc::new(TlsSite::open(t)?)),
            (None, false) => return Err(ServerError::NoCertificate),
        };
        let n = config.worker_count();
        let mut per_worker: Vec<Vec<(TcpListener, Role)>> = (0..n).map(|_| Vec::new()).collect();
        let mut addrs = Vec::new();
        let mut kinds = Vec::new();
        if inherited.is_empty() {
            let groups = [
                (config.listen.clone(), Role::Http),
                (
                    config.tls_listen.clone(),
                    tls.clone().map_or(Role::Http, Role::Https),
                ),
                (config.redirect_listen.clone(), Role::Redirect),
            ];
            for (list, role) in groups {
                for addr in list {
                    let (bound, group) = bind_group(addr, n)?;
                    if role.kind() == ListenKind::Https && !kinds.contains(&ListenKind::Https) {
                        config.https_port = bound.port();
                    }
                    addrs.push(bound);
                    kinds.push(role.kind());
                    for (w, l) in group.into_iter().enumerate() {
                        per_worker[w].push((l, role.clone()));
                    }
                }
            }
        } else {
            for l in inherited {
                let (bound, group) = share_inherited(l, n)?;
                addrs.push(bound);
                kinds.push(ListenKind::Http);
                for (w, l) in group.into_iter().enumerate() {
                    per_worker[w].push((l, Role::Http));
                }
            }
        }
        let live = open_live(&config)?;
        let mut workers = Vec::with_capacity(n);
        let mut wakers = Vec::with_capacity(n);
        for listeners in per_worker {
            let poll = Poll::new()?;
            wakers.push(Arc::new(Waker::new(poll.registry(), WAKER)?));
            workers.push(WorkerSetup { poll, listeners });
        }
        Ok(Server {
            live: Arc::new(LiveCell::new(live)),
            stats: Arc::new(Stats::new(n)),
            addrs,
            kinds,
            tls,
            workers,
            shutdown: ShutdownHandle {
                inner: Arc::new(ShutdownInner {
                    flag: AtomicBool::new(false),
                    wakers,
                }),
            },
        })
    }

    /// The addresses really bound (with the port the kernel chose for port 0):
    /// plain HTTP, then HTTPS, then redirect listeners, each in the order given.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// What each of [`Server::local_addrs`] speaks.
    pub fn listen_kinds(&self) -> &[ListenKind] {
        &self.kinds
    }

    /// The path TLS records take on the HTTPS listeners (kTLS or userspace, and
    /// why); `None` without HTTPS listeners.
    pub fn tls_path(&self) -> Option<&zcopy_tls::TlsPath> {
        self.tls.as_deref().map(|t| &t.path)
    }

    /// Reloads the HTTPS certificate and key (see [`TlsReloader::reload`]).
    pub fn reload_tls(&self) -> Result<bool, zcopy_tls::LoadError> {
        self.tls_reloader().reload()
    }

    /// A handle that reloads the HTTPS certificate from another thread (a SIGHUP
    /// handler), also after [`Server::spawn`].
    pub fn tls_reloader(&self) -> TlsReloader {
        TlsReloader {
            tls: self.tls.clone(),
        }
    }

    /// A handle that stops the server from another thread or a signal handler thread.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.clone()
    }

    /// The workers' counters (for a metrics endpoint).
    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    /// A handle that reloads the settings of the running server.
    pub fn reload_handle(&self) -> ReloadHandle {
        ReloadHandle {
            live: self.live.clone(),
            shutdown: self.shutdown.inner.clone(),
        }
    }

    /// Starts the worker threads and returns at once.
    pub fn spawn(self) -> io::Result<RunningServer> {
        let active = Arc::new(AtomicUsize::new(0));
        let mut threads = Vec::new();
        let want = self.live.load().1.site.config.io;
        let tls = self.kinds.iter().any(|k| *k != ListenKind::Http);
        let (io, why) = driver::choose(want, tls);
        if want == IoDriver::Uring && io != IoDriver::Uring {
            tracing::warn!("--io uring: {why}; using epoll");
        } else {
            tracing::debug!(driver = %io, "I/O driver: {why}");
        }
        for (i, setup) in self.workers.into_iter().enumerate() {
            let (live, stats, active, shutdown) = (
                self.live.clone(),
                self.stats.worker(i),
                active.clone(),
                self.shutdown.inner.clone(),
            );
            let start = Start {
                index: i,
                poll: setup.poll,
                listeners: setup.listeners,
                live,
                stats,
                active,
                shutdown,
            };
            let builder = std::thread::Builder::new().name(format!("zcopy-worker-{i}"));
            let t = match io {
                // Made on its own thread: its connections' state is not `Send`.
                IoDriver::Uring => builder.spawn(move || uring::Worker::new(start).run())?,
                _ => {
                    let worker = epoll::Worker::new(start)?;
                    builder.spawn(move || worker.run())?
                }
            };
            threads.push(t);
        }
        Ok(RunningServer {
            io,
            reloader: TlsReloader { tls: self.tls },
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

/// Opens what a configuration needs before it can serve: the root and the access log.
fn open_live(config: &Config) -> Result<Live, ServerError> {
    let site = Site::open(config.clone()).map_err(|source| ServerError::Root {
        path: config.root.clone(),
        source,
    })?;
    let log = match &config.access_log {
        None => None,
        Some(dest) => Some(Arc::new(
            AccessLogger::open(dest, config.access_log_format).map_err(|source| {
                ServerError::AccessLog {
                    path: match dest {
                        AccessLog::File(p) => p.clone(),
                        AccessLog::Stdout => PathBuf::from("-"),
                    },
                    source,
                }
            })?,
        )),
    };
    Ok(Live {
        site: Arc::new(site),
        log,
    })
}

/// Swaps the settings of a running server: new requests are served under the new
/// ones, responses in flight finish under the old. The listeners, worker count and
/// engine pools stay as bound.
#[derive(Clone, Debug)]
pub struct ReloadHandle {
    live: Arc<LiveCell>,
    shutdown: Arc<ShutdownInner>,
}

impl ReloadHandle {
    /// Opens `config`'s root and access log and makes them current; on an error the
    /// old settings stay.
    pub fn reload(&self, mut config: Config) -> Result<(), ServerError> {
        let (_, old) = self.live.load();
        // The listeners stay as bound, and with them the port redirects point to.
        config.https_port = old.site.config.https_port;
        let live = open_live(&config)?;
        if old.site.config.listen != config.listen
            || old.site.config.tls_listen != config.tls_listen
            || old.site.config.workers != config.workers
        {
            tracing::warn!("listen addresses and worker count are kept until a restart");
        }
        self.live.store(live);
        for w in &self.shutdown.wakers {
            let _ = w.wake();
        }
        Ok(())
    }

    /// Reopens the access log file (after logrotate moved it away).
    pub fn reopen_log(&self) -> io::Result<()> {
        match &self.live.load().1.log {
            Some(log) => log.reopen(),
            None => Ok(()),
        }
    }
}

/// A server whose workers are running.
#[derive(Debug)]
pub struct RunningServer {
    io: IoDriver,
    reloader: TlsReloader,
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

    /// Reloads the HTTPS certificate and key (see [`TlsReloader::reload`]).
    pub fn reload_tls(&self) -> Result<bool, zcopy_tls::LoadError> {
        self.reloader.reload()
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

/// One inherited listener for `n` workers: the same socket, duplicated (a
/// `SO_REUSEPORT` group can't be made from a socket someone else bound).
fn share_inherited(
    l: std::net::TcpListener,
    n: usize,
) -> Result<(SocketAddr, Vec<TcpListener>), ServerError> {
    let addr = l.local_addr()?;
    let err = |source| ServerError::Bind { addr, source };
    l.set_nonblocking(true).map_err(err)?;
    let mut group = Vec::with_capacity(n);
    for _ in 1..n {
        group.push(TcpListener::from_std(l.try_clone().map_err(err)?));
    }
    group.push(TcpListener::from_std(l));
    Ok((addr, group))
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
