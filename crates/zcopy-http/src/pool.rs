//! The running workers and the listener set they accept on: made when the server
//! starts, changed by reloads (addresses bound and let go, workers started and
//! retired). A change binds first and hands out after, so a reload that can't bind
//! changes nothing; an address kept keeps its sockets.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use mio::{Poll, Waker};

use crate::config::{Config, ListenKind};
use crate::driver::epoll::{self, WAKER};
use crate::driver::tls::TlsSite;
use crate::driver::worker::{Control, WorkerSetup};
use crate::driver::{IoDriver, uring};
use crate::error::ServerError;
use crate::listen::{self, Address};
use crate::live::LiveCell;
use crate::lock;
use crate::shutdown::ShutdownInner;
use crate::stats::ServerStats;

/// The HTTPS listeners' TLS setup, once there are any (shared with the certificate
/// reloader).
pub(crate) type TlsCell = Arc<Mutex<Option<Arc<TlsSite>>>>;

/// The workers and their listener set.
#[derive(Debug)]
pub(crate) struct Pool {
    /// The event loop the workers run (chosen at start).
    pub(crate) io: IoDriver,
    live: Arc<LiveCell>,
    stats: Arc<ServerStats>,
    active: Arc<AtomicUsize>,
    shutdown: Arc<ShutdownInner>,
    /// The listener set, in the configuration's order.
    pub(crate) addrs: Vec<Address>,
    /// The running workers (worker `w` of `n` accepts on `listen::plan(addrs, w, n)`).
    workers: Vec<Arc<Control>>,
    /// Every worker thread started and not yet joined (retired ones too).
    threads: Vec<JoinHandle<io::Result<()>>>,
    /// Workers have been started.
    spawned: bool,
    /// The listeners came from a service manager: they are the set.
    pub(crate) inherited: bool,
    pub(crate) tls: TlsCell,
}

/// A listener set bound for a configuration, not yet handed to the workers.
#[derive(Debug)]
pub(crate) struct Staged {
    /// The addresses not in the current set, bound.
    fresh: Vec<Address>,
    /// Every address wanted, in order.
    wanted: Vec<(SocketAddr, ListenKind)>,
    tls: Option<Arc<TlsSite>>,
    /// The port redirects point to (the first HTTPS listener's).
    pub(crate) https_port: Option<u16>,
}

impl Staged {
    /// What was bound: the address (with the port the kernel chose) and its kind.
    pub(crate) fn added(&self) -> Vec<(SocketAddr, ListenKind)> {
        self.fresh.iter().map(|a| (a.bound, a.kind)).collect()
    }

    /// The listener set (the addresses of `current` still wanted, with their sockets,
    /// and the fresh ones, in the configuration's order), what is left of `current`,
    /// and the TLS setup.
    pub(crate) fn merge(
        self,
        mut current: Vec<Address>,
    ) -> (Vec<Address>, Vec<Address>, Option<Arc<TlsSite>>) {
        let mut fresh = self.fresh;
        let mut set = Vec::with_capacity(self.wanted.len());
        for (addr, kind) in self.wanted {
            let known = |a: &Address| a.is(addr, kind);
            if let Some(i) = current.iter().position(known) {
                set.push(current.remove(i));
            } else if let Some(i) = fresh.iter().position(known) {
                set.push(fresh.remove(i));
            }
        }
        (set, current, self.tls)
    }
}

/// The addresses `config` asks for, in order: plain HTTP, HTTPS, redirects.
fn wanted(config: &Config) -> Vec<(SocketAddr, ListenKind)> {
    let groups = [
        (&config.listen, ListenKind::Http),
        (&config.tls_listen, ListenKind::Https),
        (&config.redirect_listen, ListenKind::Redirect),
    ];
    groups
        .into_iter()
        .flat_map(|(list, kind)| list.iter().map(move |a| (*a, kind)))
        .collect()
}

impl Pool {
    /// A pool with no worker yet, on `addrs`.
    pub(crate) fn new(
        live: Arc<LiveCell>,
        stats: Arc<ServerStats>,
        shutdown: Arc<ShutdownInner>,
        addrs: Vec<Address>,
        inherited: bool,
        tls: TlsCell,
    ) -> Pool {
        Pool {
            io: IoDriver::Epoll,
            live,
            stats,
            active: Arc::new(AtomicUsize::new(0)),
            shutdown,
            addrs,
            workers: Vec::new(),
            threads: Vec::new(),
            spawned: false,
            inherited,
            tls,
        }
    }

    /// Binds what `config` asks for and `current` lacks (`n` sockets each), and opens
    /// the TLS setup if HTTPS listeners appear; nothing changes for the workers yet.
    /// A failure drops what was bound.
    pub(crate) fn stage(
        current: &[Address],
        config: &Config,
        tls: Option<Arc<TlsSite>>,
        n: usize,
    ) -> Result<Staged, ServerError> {
        let wanted = wanted(config);
        let mut tls = tls;
        if tls.is_none() && wanted.iter().any(|(_, k)| *k == ListenKind::Https) {
            let cfg = config.tls.as_ref().ok_or(ServerError::NoCertificate)?;
            tls = Some(Arc::new(TlsSite::open(
                cfg,
                crate::driver::h2::offered(config),
            )?));
        }
        let mut fresh: Vec<Address> = Vec::new();
        for &(addr, kind) in &wanted {
            let known = |a: &Address| a.is(addr, kind);
            if current.iter().any(known) || fresh.iter().any(known) {
                continue;
            }
            let site = match kind {
                ListenKind::Https => Some(tls.clone().ok_or(ServerError::NoCertificate)?),
                ListenKind::Http | ListenKind::Redirect => None,
            };
            fresh.push(Address::bind(addr, kind, site, n)?);
        }
        let https_port = wanted
            .iter()
            .filter(|(_, k)| *k == ListenKind::Https)
            .find_map(|&(addr, kind)| {
                current
                    .iter()
                    .chain(&fresh)
                    .find(|a| a.is(addr, kind))
                    .map(|a| a.bound.port())
            });
        Ok(Staged {
            fresh,
            wanted,
            tls,
            https_port,
        })
    }

    /// Makes `staged` the listener set: kept addresses keep their sockets, new ones
    /// join, left ones go once the workers let them go. Returns the addresses left.
    /// The workers learn of it with [`Pool::resize`].
    pub(crate) fn commit(&mut self, staged: Staged) -> Vec<SocketAddr> {
        let (set, left, tls) = staged.merge(std::mem::take(&mut self.addrs));
        self.addrs = set;
        *lock(&self.tls) = tls;
        left.iter().map(|a| a.bound).collect()
    }

    /// Whether the workers have been started.
    pub(crate) fn started(&self) -> bool {
        self.spawned
    }

    /// The number of running workers.
    pub(crate) fn len(&self) -> usize {
        self.workers.len()
    }

    /// Starts or retires workers until `n` run, and gives each its listeners (new
    /// workers their own sockets of each address, as at start).
    pub(crate) fn resize(&mut self, n: usize) -> io::Result<()> {
        for a in &mut self.addrs {
            a.grow(n);
        }
        let running = self.workers.len();
        for (w, ctl) in self.workers.iter().enumerate().take(n) {
            ctl.relisten(listen::plan(&self.addrs, w, n));
        }
        for ctl in self.workers.drain(n.min(running)..) {
            lock(&self.shutdown.wakers).retain(|w| !Arc::ptr_eq(w, &ctl.waker));
            ctl.retire();
        }
        for w in running..n {
            self.spawn(w, n)?;
        }
        Ok(())
    }

    /// Starts worker `w` of `n`.
    fn spawn(&mut self, w: usize, n: usize) -> io::Result<()> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let ctl = Arc::new(Control::new(waker.clone(), listen::plan(&self.addrs, w, n)));
        let start = WorkerSetup {
            index: w,
            poll,
            live: self.live.clone(),
            stats: self.stats.worker(w),
            active: self.active.clone(),
            shutdown: self.shutdown.clone(),
            ctl: ctl.clone(),
        };
        let builder = std::thread::Builder::new().name(format!("zcopy-worker-{w}"));
        let t = match self.io {
            // Made on its own thread: its connections' state is not `Send`.
            IoDriver::Uring => builder.spawn(move || uring::Worker::new(start).run())?,
            _ => {
                let worker = epoll::Worker::new(start)?;
                builder.spawn(move || worker.run())?
            }
        };
        self.threads.push(t);
        self.spawned = true;
        self.workers.push(ctl);
        lock(&self.shutdown.wakers).push(waker);
        Ok(())
    }

    /// The worker threads started so far, to be joined.
    pub(crate) fn take_threads(&mut self) -> Vec<JoinHandle<io::Result<()>>> {
        std::mem::take(&mut self.threads)
    }
}
