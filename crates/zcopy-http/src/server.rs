//! Binding and running a server: the root opened once, one `SO_REUSEPORT` listener
//! per worker and address (the listener set of `listen.rs`), and the worker threads (each an event
//! loop of [`crate::driver`]); handles to reload it (settings, listener set, worker
//! count) and to shut it all down.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::access_log::AccessLogger;
use crate::config::{AccessLog, Config, ListenKind};
use crate::driver::tls::TlsSite;
use crate::driver::{self, IoDriver};
pub use crate::error::ServerError;
use crate::handler::Site;
use crate::listen::Address;
use crate::live::{Live, LiveCell};
use crate::lock;
use crate::pool::{Pool, TlsCell};
pub(crate) use crate::shutdown::ShutdownInner;
use crate::stats::ServerStats;

/// Asks a running server to stop: no new connections, in-flight responses finish
/// within the grace period, then the workers exit.
#[derive(Clone, Debug)]
pub struct ShutdownHandle {
    inner: Arc<ShutdownInner>,
    pool: Arc<Mutex<Pool>>,
}

impl ShutdownHandle {
    /// Starts the shutdown (safe to call from any thread, more than once).
    pub fn shutdown(&self) {
        self.inner.flag.store(true, Ordering::SeqCst);
        // The set lets go of its sockets: they close as the workers let go of theirs.
        lock(&self.pool).addrs.clear();
        self.inner.wake_all();
    }

    /// Whether shutdown was asked for.
    pub fn is_shutdown(&self) -> bool {
        self.inner.flag.load(Ordering::SeqCst)
    }
}

/// Reloads the HTTPS listeners' certificate and key from their files (SIGHUP); a
/// no-op without HTTPS listeners.
#[derive(Clone, Debug)]
pub struct TlsReloader {
    tls: TlsCell,
}

impl TlsReloader {
    /// Reads the files again; the next handshakes present the new certificate. On
    /// error the old one stays. `Ok(false)`: there is no HTTPS listener.
    pub fn reload(&self) -> Result<bool, zcopy_tls::LoadError> {
        let tls = lock(&self.tls).clone();
        match tls {
            Some(t) => {
                t.listener.certs.reload()?;
                crate::driver::tls::warn_if_expired(&t.listener.certs);
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

/// A bound server, ready to run.
pub struct Server {
    live: Arc<LiveCell>,
    stats: Arc<ServerStats>,
    addrs: Vec<SocketAddr>,
    kinds: Vec<ListenKind>,
    tls: Option<Arc<TlsSite>>,
    pool: Arc<Mutex<Pool>>,
    shutdown: ShutdownHandle,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("addrs", &self.addrs)
            .field("workers", &self.live.load().1.config.worker_count())
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
        if !config.tls_listen.is_empty() && config.tls.is_none() {
            return Err(ServerError::NoCertificate);
        }
        let n = config.worker_count();
        let from_manager = !inherited.is_empty();
        let (addrs, tls) = if from_manager {
            let addrs = inherited
                .into_iter()
                .map(Address::inherited)
                .collect::<Result<Vec<_>, _>>()?;
            (addrs, None)
        } else {
            let staged = Pool::stage(&[], &config, None, n)?;
            if let Some(port) = staged.https_port {
                config.https_port = port;
            }
            let (addrs, _, tls) = staged.merge(Vec::new());
            (addrs, tls)
        };
        let snapshots = zcopy_site::snapshot::Store::new(config.snapshot_memory);
        let live = Arc::new(LiveCell::new(open_live(&config, snapshots.clone())?));
        let stats = Arc::new(ServerStats::new(n));
        stats.set_snapshots(snapshots);
        let inner = Arc::new(ShutdownInner {
            flag: AtomicBool::new(false),
            wakers: Mutex::new(Vec::new()),
        });
        let pool = Pool::new(
            live.clone(),
            stats.clone(),
            inner.clone(),
            addrs,
            from_manager,
            Arc::new(Mutex::new(tls.clone())),
        );
        let (addrs, kinds) = pool.addrs.iter().map(|a| (a.bound, a.kind)).unzip();
        let pool = Arc::new(Mutex::new(pool));
        let shutdown = ShutdownHandle {
            inner,
            pool: pool.clone(),
        };
        Ok(Server {
            addrs,
            kinds,
            live,
            stats,
            tls,
            pool,
            shutdown,
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
    /// why); `None` without HTTPS listeners. The kTLS hand-off is the epoll
    /// driver's: where the io_uring driver will run, TLS stays in user space.
    pub fn tls_path(&self) -> Option<zcopy_tls::TlsPath> {
        use zcopy_tls::{TlsPath, Why};
        let path = &self.tls.as_deref()?.path;
        let io = self.live.load().1.config.io;
        Some(match path {
            TlsPath::Kernel if driver::choose(io, true).0 == IoDriver::Uring => {
                TlsPath::Userspace(Why::Driver)
            }
            p => p.clone(),
        })
    }

    /// Reloads the HTTPS certificate and key (see [`TlsReloader::reload`]).
    pub fn reload_tls(&self) -> Result<bool, zcopy_tls::LoadError> {
        self.tls_reloader().reload()
    }

    /// A handle that reloads the HTTPS certificate from another thread (a SIGHUP
    /// handler), also after [`Server::spawn`].
    pub fn tls_reloader(&self) -> TlsReloader {
        TlsReloader {
            tls: lock(&self.pool).tls.clone(),
        }
    }

    /// A handle that stops the server from another thread or a signal handler thread.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.clone()
    }

    /// The workers' counters (for a metrics endpoint).
    pub fn stats(&self) -> Arc<ServerStats> {
        self.stats.clone()
    }

    /// A handle that reloads the settings, listener set and worker count of the
    /// running server.
    pub fn reload_handle(&self) -> ReloadHandle {
        ReloadHandle {
            live: self.live.clone(),
            pool: self.pool.clone(),
            shutdown: self.shutdown.inner.clone(),
        }
    }

    /// Starts the worker threads and returns at once.
    pub fn spawn(self) -> io::Result<RunningServer> {
        let config = self.live.load().1.config.clone();
        let want = config.io;
        let tls = self.kinds.iter().any(|k| *k != ListenKind::Http);
        let (io, why) = driver::choose(want, tls);
        if want == IoDriver::Uring && io != IoDriver::Uring {
            tracing::warn!("--io uring: {why}; using epoll");
        } else {
            tracing::debug!(driver = %io, "I/O driver: {why}");
        }
        {
            let mut pool = lock(&self.pool);
            pool.io = io;
            pool.resize(config.worker_count())?;
        }
        Ok(RunningServer {
            io,
            reloader: self.tls_reloader(),
            addrs: self.addrs,
            shutdown: self.shutdown,
            pool: self.pool,
        })
    }

    /// Runs until shut down (see [`Server::shutdown_handle`]).
    pub fn run(self) -> io::Result<()> {
        self.spawn()?.join()
    }
}

/// Opens what a configuration needs before it can serve: the root and the access log.
fn open_live(
    config: &Config,
    snapshots: Arc<zcopy_site::snapshot::Store>,
) -> Result<Live, ServerError> {
    let site = Site::open_with(config.site(), snapshots).map_err(|source| ServerError::Root {
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
        config: Arc::new(config.clone()),
        log,
    })
}

/// What a reload changed in the listener set and the workers.
#[derive(Debug, Default)]
pub struct Reloaded {
    /// Addresses bound by the reload (with the port the kernel chose for port 0),
    /// and what each speaks.
    pub added: Vec<(SocketAddr, ListenKind)>,
    /// Addresses no longer listened on.
    pub removed: Vec<SocketAddr>,
    /// Workers running now.
    pub workers: usize,
    /// The port redirect listeners point to.
    pub https_port: u16,
    /// The path TLS records take on the HTTPS listeners, if any.
    pub tls_path: Option<String>,
}

/// Swaps the settings of a running server: new requests are served under the new
/// ones, responses in flight finish under the old. A changed listener set is bound
/// before anything else changes (a bind that fails leaves the old configuration in
/// place), then handed to the workers, which stop accepting on the addresses left
/// and finish the connections accepted there; a changed worker count starts workers
/// or retires some (they drain as in a graceful shutdown). The I/O driver and the
/// engine pools' plans stay as started.
#[derive(Clone, Debug)]
pub struct ReloadHandle {
    live: Arc<LiveCell>,
    pool: Arc<Mutex<Pool>>,
    shutdown: Arc<ShutdownInner>,
}

impl ReloadHandle {
    /// Binds what `config` adds to the listener set, opens its root and access log,
    /// and makes it current; on an error the old configuration stays, whole.
    pub fn reload(&self, mut config: Config) -> Result<Reloaded, ServerError> {
        let mut pool = lock(&self.pool);
        if self.shutdown.flag.load(Ordering::SeqCst) {
            return Err(ServerError::Refused("shutting down".into()));
        }
        let (_, old) = self.live.load();
        let was = &old.config;
        let moved = config.listen != was.listen
            || config.tls_listen != was.tls_listen
            || config.redirect_listen != was.redirect_listen;
        let n = config.worker_count();
        let staged = if pool.inherited {
            if moved {
                tracing::warn!(
                    "socket activation: the inherited listeners are the listener set; \
                     listen addresses in the configuration are ignored"
                );
            }
            None
        } else {
            let tls = lock(&pool.tls).clone();
            Some(Pool::stage(&pool.addrs, &config, tls, n)?)
        };
        // Other certificate or key paths than the running ones: loaded now (a bad
        // pair fails the reload, the old files stay), presented once nothing fails.
        let new_pair = match (lock(&pool.tls).clone(), &config.tls) {
            (Some(site), Some(want)) if site.listener.certs.files() != want.files => {
                let key = site.listener.certs.load(&want.files)?;
                Some((site, want.files.clone(), key))
            }
            _ => None,
        };
        config.https_port = staged
            .as_ref()
            .and_then(|s| s.https_port)
            .unwrap_or(was.https_port);
        // The snapshot store outlives a reload (its budget is the one read at start).
        let live = open_live(&config, self.live.load().1.site.snapshots.clone())?;
        // Bound and opened: from here on nothing fails.
        self.live.store(live);
        if let Some((site, files, key)) = new_pair {
            tracing::info!(
                cert = %files.cert.display(),
                key = %files.key.display(),
                "TLS certificate and key now read from new files"
            );
            // (An expired one is warned about by the certificate reload that follows.)
            site.listener.certs.put(files, key);
        }
        if config.io != was.io && pool.started() {
            // Said once per change of the setting, and only when a restart would run
            // another event loop than the one running.
            let tls = !config.tls_listen.is_empty() || !config.redirect_listen.is_empty();
            let (would, _) = driver::choose(config.io, tls);
            if would != pool.io {
                tracing::warn!(
                    "io = \"{}\": the {} event loop is kept until a restart",
                    config.io,
                    pool.io
                );
            }
        }
        let mut done = Reloaded {
            https_port: config.https_port,
            ..Reloaded::default()
        };
        if let Some(staged) = staged {
            done.added = staged.added();
            done.removed = pool.commit(staged);
        }
        done.tls_path = lock(&pool.tls).as_ref().map(|t| t.path.to_string());
        if pool.started() {
            let before = pool.len();
            if let Err(e) = pool.resize(n) {
                tracing::error!("starting workers: {e}");
            }
            if pool.len() != before {
                tracing::info!(from = before, to = pool.len(), "worker count changed");
            }
        }
        for a in &done.removed {
            tracing::info!("no longer listening on {a}");
        }
        done.workers = pool.len();
        self.shutdown.wake_all();
        Ok(done)
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
    pool: Arc<Mutex<Pool>>,
}

impl RunningServer {
    /// The event loop the workers run.
    pub fn io_driver(&self) -> IoDriver {
        self.io
    }

    /// The addresses bound at start.
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

    /// Waits for every worker to exit (also those a reload started or retired).
    pub fn join(self) -> io::Result<()> {
        let mut result = Ok(());
        loop {
            let threads = lock(&self.pool).take_threads();
            if threads.is_empty() {
                return result;
            }
            for t in threads {
                match t.join() {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => result = Err(e),
                    Err(_) => result = Err(io::Error::other("a worker thread panicked")),
                }
            }
        }
    }

    /// Shuts down and waits.
    pub fn stop(self) -> io::Result<()> {
        self.shutdown.shutdown();
        self.join()
    }
}
