//! What every worker keeps, whatever its event loop: how it is set up
//! ([`WorkerSetup`]), the state its connections share with the core
//! ([`ConnContext`]) and its event loop's state ([`LoopState`]): its slots, run
//! queue, counts, accept pauses, timers, reloads and graceful end.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mio::{Poll, Waker};
use zcopy::peer::PeerClassifier;

use super::SiteResponder;
use crate::access_log::AccessLogger;
use crate::handler::Site;
use crate::listen::Listen;
use crate::live::{Live, LiveCell};
use crate::proto::{self, Buffers, ConnConfig};
use crate::shutdown::ShutdownInner;
use crate::stats::WorkerStats;

/// Longest sleep between timer sweeps.
pub(crate) const TICK: Duration = Duration::from_secs(1);
/// Pause after accept fails for lack of fds or memory, or at the connection cap.
pub(crate) const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// What a worker starts with.
pub(crate) struct WorkerSetup {
    /// Its place among the workers.
    pub(crate) index: usize,
    /// Its event loop's poll, with the waker of `ctl` registered.
    pub(crate) poll: Poll,
    /// How the server steers it (its first listener set is waiting there).
    pub(crate) ctl: Arc<Control>,
    /// The settings, swapped by reloads.
    pub(crate) live: Arc<LiveCell>,
    /// Its counters.
    pub(crate) stats: Arc<WorkerStats>,
    /// Open connections of every worker.
    pub(crate) active: Arc<AtomicUsize>,
    pub(crate) shutdown: Arc<ShutdownInner>,
}

/// How the server steers a running worker: the listener set it accepts on, and its
/// retirement (a smaller worker count).
#[derive(Debug)]
pub(crate) struct Control {
    /// Wakes the worker's loop (also for shutdown and reloads).
    pub(crate) waker: Arc<Waker>,
    /// A listener set not yet taken.
    plan: Mutex<Option<Vec<Listen>>>,
    changed: AtomicBool,
    retire: AtomicBool,
}

impl Control {
    /// The control of a worker woken by `waker`, which starts on `plan`.
    pub(crate) fn new(waker: Arc<Waker>, plan: Vec<Listen>) -> Control {
        Control {
            waker,
            plan: Mutex::new(Some(plan)),
            changed: AtomicBool::new(true),
            retire: AtomicBool::new(false),
        }
    }

    /// Gives the worker a new listener set: it starts accepting on the new sockets,
    /// and takes in what waits on the ones it leaves, then lets them go.
    pub(crate) fn relisten(&self, plan: Vec<Listen>) {
        *crate::lock(&self.plan) = Some(plan);
        self.changed.store(true, Ordering::SeqCst);
        let _ = self.waker.wake();
    }

    /// Retires the worker: it stops accepting, lets its listeners go, finishes its
    /// connections as in a graceful shutdown, and its thread ends.
    pub(crate) fn retire(&self) {
        self.retire.store(true, Ordering::SeqCst);
        let _ = self.waker.wake();
    }

    /// The listener set given since the last call, if any (once per loop turn: a
    /// plain load unless there is one).
    pub(crate) fn new_plan(&self) -> Option<Vec<Listen>> {
        if !self.changed.load(Ordering::Acquire) || !self.changed.swap(false, Ordering::AcqRel) {
            return None;
        }
        crate::lock(&self.plan).take()
    }
}

/// The core's view of a worker, as the drivers use it.
pub(crate) type Env<'a> = proto::Env<'a, Report<'a>>;

/// Where the core's events go: the worker's counters and access log.
pub(crate) struct Report<'a> {
    /// The worker's counters (drivers count engine bytes here too).
    pub(crate) stats: &'a WorkerStats,
    /// The access log, if enabled.
    pub(crate) log: Option<&'a AccessLogger>,
    /// Where finished responses' log lines go until the driver writes them out.
    pub(crate) log_buf: &'a mut Vec<u8>,
}

impl proto::Observer for Report<'_> {
    fn keep(&self) -> proto::Keep {
        match self.log {
            None => proto::Keep::Nothing,
            Some(log) if log.wants_headers() => proto::Keep::LineAndHeaders,
            Some(_) => proto::Keep::Line,
        }
    }

    fn done(&mut self, d: &proto::Done<'_>) {
        self.stats.response(d.method as usize, d.status, d.took);
        if d.in_memory {
            self.stats.body_from_memory(d.body_sent);
        }
        if let Some(log) = self.log {
            let entry = crate::access_log::Entry {
                ip: d.peer.ip(),
                line: d.line,
                status: d.status,
                bytes: d.body_sent,
                received: d.body_received,
                referer: d.referer,
                user_agent: d.user_agent,
                took: d.took,
            };
            log.format(self.log_buf, &entry);
        }
    }

    fn body_from_memory(&mut self, n: u64) {
        self.stats.body_from_memory(n);
    }

    fn truncated(&mut self) {
        self.stats.truncation();
    }

    fn lease_broken(&mut self) {
        self.stats.lease_break();
    }
}

/// What a worker's connections share: the site, the log, buffers, the responder and
/// the worker's counters.
pub(crate) struct ConnContext {
    pub(crate) site: Arc<Site>,
    /// The server's settings.
    pub(crate) config: Arc<crate::config::Config>,
    /// The core's settings, from the site's configuration.
    pub(crate) conn: ConnConfig,
    pub(crate) log: Option<Arc<AccessLogger>>,
    pub(crate) bufs: Buffers,
    pub(crate) responder: SiteResponder,
    /// Peer route classes, cached per address.
    pub(crate) peers: PeerClassifier,
    /// This worker's counters.
    pub(crate) stats: Arc<WorkerStats>,
    /// Access log lines of this loop turn, written out at its end.
    pub(crate) log_buf: Vec<u8>,
    pub(crate) now: Instant,
    pub(crate) shutting_down: bool,
    /// The snapshot store's notice fd was offered to the driver (the store is the
    /// server's, kept across reloads; the file cache is remade at each).
    snapshot_notices_offered: bool,
}

/// Which change-notice fd a driver watches for the site
/// ([`ConnContext::offer_notice_fds`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Notices {
    /// The worker's file cache's (remade at a reload).
    Cache,
    /// The server's snapshot store's (shared by the workers).
    Snapshots,
}

impl ConnContext {
    /// The state for the current settings of `live`.
    pub(crate) fn new(live: &Live, stats: Arc<WorkerStats>, now: Instant) -> ConnContext {
        let site = live.site.clone();
        let cache =
            crate::cache::FileCache::new(site.config.file_cache_ttl, crate::cache::CACHE_FILES);
        ConnContext {
            responder: SiteResponder {
                site: site.clone(),
                cache,
                checks: crate::auth::Checks::default(),
                publishes: super::publish::Publisher::default(),
                inline_max: crate::proto::INLINE_MAX,
            },
            conn: live.config.conn(),
            config: live.config.clone(),
            site,
            log: live.log.clone(),
            bufs: Buffers::new(super::SPARE_BUFFERS),
            peers: PeerClassifier::new(),
            stats,
            log_buf: Vec::new(),
            now,
            shutting_down: false,
            snapshot_notices_offered: false,
        }
    }

    /// The core's view of the worker.
    pub(crate) fn env(&mut self) -> Env<'_> {
        self.parts().0
    }

    /// The core's view of the worker, and the responder that answers its requests
    /// ([`proto::Intent::Request`]).
    pub(crate) fn parts(&mut self) -> (Env<'_>, &mut SiteResponder) {
        let env = Env {
            now: self.now,
            config: &self.conn,
            shutting_down: self.shutting_down,
            bufs: &mut self.bufs,
            events: Report {
                stats: &self.stats,
                log: self.log.as_deref(),
                log_buf: &mut self.log_buf,
            },
        };
        (env, &mut self.responder)
    }

    /// Takes the settings of a reload: new requests are served under them; responses
    /// in flight keep their open files and finish as they started.
    pub(crate) fn reload(&mut self, live: &Live) {
        self.flush_log();
        let site = live.site.clone();
        self.responder = self.responder.reloaded(site.clone());
        self.conn = live.config.conn();
        self.config = live.config.clone();
        self.site = site;
        self.log = live.log.clone();
    }

    /// Writes this turn's access log lines, if any.
    pub(crate) fn flush_log(&mut self) {
        super::flush_log(self.log.as_deref(), &mut self.log_buf);
    }

    /// Offers the change-notice fds that exist and were not offered yet to `watch`
    /// (the driver's loop), once each: the file cache's (made for the first file
    /// it holds, and again after a reload) and the snapshot store's (made with the
    /// first snapshot). When `watch` takes one, the driver calls
    /// [`ConnContext::notices_waiting`] each time it reports it readable, and the
    /// site reads those notices only then, where it otherwise tries a read (a
    /// system call) in every loop turn that looks a file up.
    pub(crate) fn offer_notice_fds(
        &mut self,
        mut watch: impl FnMut(Notices, BorrowedFd<'_>) -> io::Result<()>,
    ) {
        self.responder
            .cache
            .offer_notice_fd(|fd| watch(Notices::Cache, fd));
        if !self.snapshot_notices_offered
            && let Some(fd) = self.site.snapshots.notice_fd()
        {
            self.snapshot_notices_offered = true;
            match watch(Notices::Snapshots, fd.as_fd()) {
                Ok(()) => self.responder.cache.snapshot_notices_watched = true,
                Err(e) => tracing::debug!("snapshot change notices read every turn: {e}"),
            }
        }
    }

    /// The driver saw `which` notice fd readable.
    pub(crate) fn notices_waiting(&mut self, which: Notices) {
        match which {
            Notices::Cache => self.responder.cache.notices_waiting(),
            Notices::Snapshots => self.site.snapshots.notices_waiting(),
        }
    }

    /// Notices of `which` fd that the driver reported are not read yet (a driver
    /// whose watch is one-shot arms it again only once they are).
    pub(crate) fn notices_unread(&self, which: Notices) -> bool {
        match which {
            Notices::Cache => self.responder.cache.notices_unread(),
            Notices::Snapshots => self.site.snapshots.notices_unread(),
        }
    }

    /// Connections whose password check is done (appended to `woken`): the driver
    /// resumes each ([`crate::proto::Conn::resume`]) and drives it.
    pub(crate) fn checked(&mut self, woken: &mut Vec<usize>) {
        self.responder.checks.completed(woken);
    }

    /// Publishes done (appended to `done`): the driver gives each answer to its
    /// connection ([`crate::proto::Conn::on_published`]) and drives it.
    pub(crate) fn published(&mut self, done: &mut Vec<super::publish::Published>) {
        self.responder.publishes.completed(done);
    }

    /// Tells the responder which connection it answers next (`token`, as
    /// [`ConnContext::checked`] names it).
    pub(crate) fn serving(&mut self, token: usize, peer: std::net::SocketAddr) {
        self.responder.checks.asking(token, peer.ip());
    }

    /// Publishes the connection gauges and the file cache's counts, and drops expired
    /// cache entries (once per sweep).
    pub(crate) fn sweep(&mut self, open: usize, idle: usize) {
        self.stats.connections(open, idle);
        self.responder.cache.evict_expired(self.now);
        self.stats.file_cache(&self.responder.cache);
        if self.site.config.upload {
            zcopy_site::upload::expire_partials(self.site.config.upload_resume_ttl);
        }
    }
}

/// A worker's bookkeeping: free slots, run queue, counts, accept pauses and timers.
pub(crate) struct LoopState {
    /// Slots free for new connections.
    pub(crate) free: Vec<usize>,
    /// Connections to drive this turn.
    pub(crate) runq: Vec<usize>,
    /// Open connections (closing ones not counted).
    pub(crate) count: usize,
    /// Open connections of every worker (for the connection cap).
    pub(crate) active: Arc<AtomicUsize>,
    pub(crate) shutdown: Arc<ShutdownInner>,
    pub(crate) ctl: Arc<Control>,
    /// Where reloaded settings come from, and the generation the worker holds.
    pub(crate) live: Arc<LiveCell>,
    pub(crate) generation: u64,
    pub(crate) accept_paused_until: Option<Instant>,
    /// Accept failed for lack of fds or memory (warned once per episode).
    pub(crate) starved: bool,
    /// Connections accepted so far.
    pub(crate) accepted: u64,
    pub(crate) next_sweep: Instant,
    pub(crate) grace_until: Option<Instant>,
}

impl std::fmt::Debug for LoopState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("connections", &self.count)
            .finish_non_exhaustive()
    }
}

impl LoopState {
    /// Bookkeeping of a new worker, and the state its connections share.
    pub(crate) fn new(
        live: Arc<LiveCell>,
        active: Arc<AtomicUsize>,
        shutdown: Arc<ShutdownInner>,
        ctl: Arc<Control>,
        stats: Arc<WorkerStats>,
    ) -> (LoopState, ConnContext) {
        let now = Instant::now();
        let (generation, current) = live.load();
        let mut common = ConnContext::new(&current, stats, now);
        let waker = ctl.waker.clone();
        common.responder.checks = crate::auth::Checks::new(Some(Arc::new(move || {
            let _ = waker.wake();
        })));
        common.responder.publishes = super::publish::Publisher::new(Some(ctl.waker.clone()));
        let books = LoopState {
            free: Vec::new(),
            runq: Vec::new(),
            count: 0,
            active,
            shutdown,
            ctl,
            live,
            generation,
            accept_paused_until: None,
            starved: false,
            accepted: 0,
            next_sweep: now + TICK,
            grace_until: None,
        };
        (books, common)
    }

    /// When the loop must wake without an event: the next sweep, the end of an
    /// accept pause or of the shutdown grace.
    pub(crate) fn wake_at(&self) -> Instant {
        let mut wake = self.next_sweep;
        if let Some(t) = self.accept_paused_until {
            wake = wake.min(t);
        }
        if let Some(t) = self.grace_until {
            wake = wake.min(t);
        }
        wake
    }

    /// The settings of a reload not yet taken, if any.
    pub(crate) fn reloaded(&mut self) -> Option<Arc<Live>> {
        if self.live.generation() == self.generation {
            return None;
        }
        let (generation, live) = self.live.load();
        self.generation = generation;
        Some(live)
    }

    /// Shutdown (or this worker's retirement) was asked for and the worker has not
    /// begun it yet.
    pub(crate) fn shutdown_asked(&self, sh: &ConnContext) -> bool {
        !sh.shutting_down
            && (self.shutdown.flag.load(Ordering::SeqCst) || self.ctl.retire.load(Ordering::SeqCst))
    }

    /// This worker retires (a smaller worker count), the server goes on.
    pub(crate) fn retiring(&self) -> bool {
        self.ctl.retire.load(Ordering::SeqCst) && !self.shutdown.flag.load(Ordering::SeqCst)
    }

    /// Starts the graceful end: no new requests, the grace period begins.
    pub(crate) fn begin_shutdown(&mut self, sh: &mut ConnContext) {
        sh.shutting_down = true;
        self.grace_until = Some(sh.now + sh.config.shutdown_grace);
    }

    /// The graceful end is over (no connection left, or the grace period ended):
    /// the worker closes what is left and exits.
    pub(crate) fn grace_over(&self, sh: &ConnContext) -> bool {
        let Some(g) = self.grace_until else {
            return false;
        };
        let over = self.count == 0 || sh.now >= g;
        if over && self.count > 0 {
            tracing::info!(
                open = self.count,
                "shutdown grace period over; closing connections"
            );
        }
        if over {
            // A retired worker's gauges must not stay behind it.
            sh.stats.connections(0, 0);
        }
        over
    }

    /// Counts a connection just accepted (its deadline `deadline`); returns its
    /// accept order.
    pub(crate) fn opened(&mut self, sh: &ConnContext, deadline: Instant) -> u64 {
        self.active.fetch_add(1, Ordering::Relaxed);
        self.count += 1;
        sh.stats.accepted();
        self.next_sweep = self.next_sweep.min(deadline);
        self.accepted += 1;
        self.accepted - 1
    }

    /// Stops counting a connection that is closing.
    pub(crate) fn closed(&mut self) {
        self.active.fetch_sub(1, Ordering::Relaxed);
        self.count -= 1;
    }

    /// A free slot for a new connection, made with `grow` when there is none.
    pub(crate) fn slot(&mut self, grow: impl FnOnce() -> usize) -> usize {
        self.free.pop().unwrap_or_else(grow)
    }

    /// An fd was closed: accepting may resume now (after an accept pause).
    pub(crate) fn fd_freed(&mut self, now: Instant) {
        if self.accept_paused_until.is_some() {
            self.accept_paused_until = Some(now);
        }
    }

    /// Queues connection `idx` to be driven this turn.
    pub(crate) fn queue(&mut self, idx: usize, queued: &mut bool) {
        if !*queued {
            *queued = true;
            self.runq.push(idx);
        }
    }

    /// The run queue of this turn, taken; hand it back with [`LoopState::give_runq`].
    pub(crate) fn take_runq(&mut self) -> Vec<usize> {
        std::mem::take(&mut self.runq)
    }

    /// Keeps the run queue's allocation if nothing was added meanwhile.
    pub(crate) fn give_runq(&mut self, mut queue: Vec<usize>) {
        if self.runq.is_empty() {
            queue.clear();
            self.runq = queue;
        }
    }

    /// The accept pause is over (or there was none); false while it lasts.
    pub(crate) fn may_accept(&mut self, now: Instant) -> bool {
        if let Some(t) = self.accept_paused_until {
            if now < t {
                return false;
            }
            self.accept_paused_until = None;
        }
        true
    }
}
