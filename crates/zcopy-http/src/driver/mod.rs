//! Drivers: event loops that own the sockets and carry out what the connection core
//! ([`crate::proto`]) asks for. What every driver shares lives here: the responder
//! that answers requests from the site, and the per-worker pool of engine transfers.

pub mod auto;
pub mod epoll;
pub mod fetch;
pub(crate) mod h2;
mod lend;
pub mod publish;
pub mod tls;
pub mod uring;
pub(crate) mod worker;

#[cfg(test)]
mod core_tests;

use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Instant;

use zcopy::peer::{LocalReason, PeerClass, PeerClassifier};
use zcopy::transfer::Forced;
use zcopy::{EngineKind, Plan, Preference, Transfer};

use crate::cache::{FileCache, pread_into};
use crate::handler::{self, Body, Piece, Response, Site};
use crate::head::Out;
use crate::proto;
use crate::request::Request;
use crate::stats::WorkerStats;

pub use crate::config::IoDriver;

/// The driver that runs for `want` (never `Auto`), and why. Both drivers serve
/// every listener kind (plain HTTP, HTTPS, redirects); `tls` (some listener speaks
/// HTTPS or redirects to it) only shapes the reason. `Auto` tries uring only where
/// the calibration profile says so ([`auto::from_profile`]).
pub fn choose(want: IoDriver, tls: bool) -> (IoDriver, String) {
    let why_uring = match want {
        IoDriver::Epoll => return (IoDriver::Epoll, "asked for".into()),
        IoDriver::Auto => match auto::from_profile(zcopy::profile::Profile::cached_default()) {
            Ok(why) => why,
            Err(why) => return (IoDriver::Epoll, why),
        },
        IoDriver::Uring => "asked for".to_string(),
    };
    let why_uring = match tls {
        true => format!("{why_uring} (TLS in user space: kTLS is the epoll driver's)"),
        false => why_uring,
    };
    let forced = Forced::from_env();
    let refused = if forced.limit(EngineKind::Uring).is_some() {
        Err("io_uring forced off by ZCOPY_DISABLE".to_string())
    } else {
        zcopy::ring::probe()
    };
    match refused {
        Err(why) => (IoDriver::Epoll, format!("io_uring unavailable: {why}")),
        Ok(()) => (IoDriver::Uring, why_uring),
    }
}

/// The route class of a peer just accepted on `sock` (classified from the socket's
/// route, cached per address). Bodies may leave by reference only to peers whose
/// receive queues are not in this kernel: `proto::Conn::new(peer, !route.local, ..)`.
pub fn classify_peer(peers: &mut PeerClassifier, sock: impl AsFd, peer: SocketAddr) -> PeerRoute {
    let class = peers.classify(sock.as_fd());
    tracing::trace!(%peer, %class, "accepted");
    PeerRoute::of(&class)
}

/// What shedding weighs about one connection.
#[derive(Clone, Copy, Debug)]
pub struct Sheddable {
    /// Idle between requests.
    pub idle: bool,
    /// Still receiving its request head.
    pub reading_head: bool,
    /// Its deadline (for a head: when the header timeout ends).
    pub deadline: Instant,
    /// Accept order within the worker.
    pub seq: u64,
}

/// The connection to close to make room for a new one: an idle keep-alive connection,
/// else the one that has been sending its request head longest (nginx's reusable
/// connections); `None` when there is neither (every one has a response in flight).
pub fn shed_victim(conns: impl IntoIterator<Item = (usize, Sheddable)>) -> Option<usize> {
    let mut oldest_head: Option<((Instant, u64), usize)> = None;
    for (i, c) in conns {
        if c.idle {
            return Some(i);
        }
        if c.reading_head {
            // The earliest header deadline belongs to the oldest head (ties, from one
            // loop turn, go by accept order).
            let d = (c.deadline, c.seq);
            if oldest_head.is_none_or(|(od, _)| d < od) {
                oldest_head = Some((d, i));
            }
        }
    }
    oldest_head.map(|(_, i)| i)
}

/// Counts the shedding of connection `victim` (picked by [`shed_victim`]), which
/// the caller then closes.
pub(crate) fn shedding(victim: usize, stats: &WorkerStats) {
    tracing::debug!("at the connection limit: shedding connection {victim}");
    stats.shed();
}

/// Carries out [`crate::proto::Intent::Request`]: the site answers the ready request.
pub(crate) fn answer_request(
    core: &mut crate::proto::Conn,
    env: &mut worker::Env<'_>,
    site: &mut SiteResponder,
) {
    let now = env.now;
    core.answer(env, |req, close, out| site.respond(req, close, out, now));
}

/// Carries out [`crate::proto::Intent::Publish`]: the whole body is in; it is
/// published off the loop ([`publish`]) and the connection `token` waits for the
/// answer, which [`worker::ConnContext::published`] brings back.
pub(crate) fn start_publish(
    core: &mut crate::proto::Conn,
    env: &mut worker::Env<'_>,
    site: &mut SiteResponder,
    token: usize,
) {
    site.publishes.start(core, env, token);
}

/// Carries out [`crate::proto::Intent::OpenMember`]: opens the archive's next member.
pub(crate) fn open_next_member(core: &mut crate::proto::Conn, env: &mut worker::Env<'_>) {
    let file = core
        .member_to_open()
        .and_then(|(d, m)| crate::archive::open_member(d, m));
    core.on_member(env, file);
}

/// Carries out [`crate::proto::Intent::Lease`]: takes a read lease on the body's
/// file, held until the file is closed, and tells the core whether it holds one.
pub(crate) fn take_lease(core: &mut crate::proto::Conn) {
    let held = core.file().is_some_and(|f| {
        zcopy::lease::take_until_close(&**f)
            .map_err(|e| tracing::trace!("no read lease: {e}"))
            .is_ok()
    });
    core.on_lease(held);
}

/// Answers a client we have no room for with a 503 (best effort: one non-blocking
/// send into the fresh socket's empty buffer); the caller then closes it.
pub fn refuse(sock: impl AsFd) {
    use rustix::net::{RecvFlags, SendFlags};
    // Take what the client already sent, so the close is a FIN rather than an RST
    // that could discard the answer.
    let _ = rustix::net::recv(&sock, &mut [0u8; 4096], RecvFlags::DONTWAIT);
    const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n\
        Content-Type: text/plain; charset=utf-8\r\nContent-Length: 38\r\n\
        Connection: close\r\n\r\n503 Service Unavailable (at capacity)\n";
    let _ = rustix::net::send(&sock, BUSY, SendFlags::DONTWAIT | SendFlags::NOSIGNAL);
}

/// Bodies up to this size are read into memory and leave with the head in one write.
pub const SMALL_BODY: u64 = proto::INLINE_MAX;
/// Spare buffers a worker keeps for connections that have bytes to hold. Kept small:
/// the pool's high-water mark is memory the worker holds after a burst (the soak saw
/// +0.5 MiB stay after 200 slow readers sent their next requests together with 256).
pub const SPARE_BUFFERS: usize = 32;
/// A request body with at least this many bytes still to come is spliced (socket
/// → pipe → file); a smaller one (or rest) is read into the core's buffer and
/// written from there, two syscalls where a splice costs a pipe's set-up, two
/// splices and the low-water mark's two setsockopts (io_uring: copied from the
/// ring's receive buffers, where switching costs a cancel and a poll).
pub const SPLICE_BODY_MIN: u64 = 64 * 1024;

/// Most body bytes one connection sends per loop turn before others get a go.
pub const TURN_BUDGET: usize = 512 * 1024;
/// Transfers kept for reuse per worker and plan.
const POOL: usize = 64;

/// Answers requests from the site, with the worker's cache of open small files.
#[derive(Debug)]
pub struct SiteResponder {
    /// The site served.
    pub site: Arc<Site>,
    /// Small files kept open.
    pub cache: FileCache,
    /// Password checks handed off the loop, and their verdicts.
    pub checks: crate::auth::Checks,
    /// Uploads being published off the loop, and their answers.
    pub publishes: publish::Publisher,
    /// Held bodies up to this size are copied after the head by the core
    /// ([`proto::INLINE_MAX`] at most); a larger held body is sent from the held
    /// bytes. The io_uring driver's is smaller than the epoll driver's: it copies
    /// what the core wrote into a buffer of its own for each send in flight, so a
    /// burst of held bodies inlined would leave its allocator holding a head and a
    /// body per connection of the burst.
    pub inline_max: u64,
}

/// [`SiteResponder::inline_max`] of the io_uring driver.
pub const URING_INLINE_MAX: u64 = 0;

impl SiteResponder {
    /// One `openat2` + `fstat` (on a cache hit one `fstat`, or nothing for a file
    /// the cache holds). A body of at most [`SMALL_BODY`] bytes is copied from the
    /// cache or read here (one `pread`) so it leaves with the head in one write; a
    /// larger body the cache holds is sent from the held bytes (one copy, by the
    /// kernel, at send time) unless `--limit-rate` paces file bodies; so is a held
    /// body larger than [`SiteResponder::inline_max`] (on io_uring, every one).
    pub fn respond(
        &mut self,
        req: &Request<'_>,
        close: bool,
        out: &mut Out,
        now: Instant,
    ) -> Response {
        self.respond_inline(req, close, out, now, self.inline_max)
    }

    /// [`SiteResponder::respond`] with held bodies of up to `inline_max` bytes left
    /// for the protocol to copy (HTTP/2 copies them into its DATA frames on either
    /// driver: [`proto::INLINE_MAX`]).
    pub fn respond_inline(
        &mut self,
        req: &Request<'_>,
        close: bool,
        out: &mut Out,
        now: Instant,
        inline_max: u64,
    ) -> Response {
        let mut resp = handler::handle(
            &self.site,
            req,
            close,
            out,
            &mut self.cache,
            &mut self.checks,
            now,
        );
        let Body::File(fb) = &mut resp.body else {
            return resp;
        };
        let [Piece::File { start, len }] = fb.pieces[..] else {
            return resp;
        };
        let held = fb
            .held
            .as_ref()
            .filter(|b| start.saturating_add(len) <= b.len() as u64);
        let limited = self.site.config.limit_rate.is_some();
        if held.is_some() && len <= proto::INLINE_MAX && (len <= inline_max || limited) {
            // The protocol core copies it from the held bytes, after the head.
        } else if let Some(bytes) = held
            && !limited
        {
            fb.pieces[0] = Piece::Mem(start as usize, (start + len) as usize);
            fb.mem = handler::BodyMem::Held(bytes.clone());
        } else if len <= SMALL_BODY {
            let got = pread_into(&fb.file, start, len as usize, &mut out.body);
            if (got as u64) < len {
                // The file shrank since the fstat: send what exists, then close.
                resp.close = true;
            }
            resp.body = Body::InHead;
            resp.body_len = got as u64;
        }
        resp
    }

    /// A responder for the site of a reload, with an empty file cache that carries on
    /// this one's hit and miss counts, and this one's password checks in flight.
    pub fn reloaded(&mut self, site: Arc<Site>) -> SiteResponder {
        let mut cache = FileCache::new(site.config.file_cache_ttl, crate::cache::CACHE_FILES);
        cache.hits = self.cache.hits;
        cache.misses = self.cache.misses;
        cache.held_hits = self.cache.held_hits;
        // The snapshot store is the server's: the worker's loop still watches it.
        cache.snapshot_notices_watched = self.cache.snapshot_notices_watched;
        let checks = std::mem::take(&mut self.checks);
        let publishes = std::mem::take(&mut self.publishes);
        SiteResponder {
            site,
            cache,
            checks,
            publishes,
            inline_max: self.inline_max,
        }
    }
}

/// [`proto::Intent::StoreBody`]: writes the body bytes that came with the head to
/// the upload's file (a copy: they are in memory already); `tls`: they were
/// decrypted there (counted apart).
pub(crate) fn store_body(core: &mut proto::Conn, env: &mut worker::Env<'_>, tls: bool) {
    use std::io::Write;
    let r = match core.body_buffered() {
        Some((mut file, bytes)) => file.write(bytes),
        None => return,
    };
    match r {
        Ok(n) => {
            env.events.stats.upload_copied(tls, n as u64);
            core.on_body_stored(env, n);
        }
        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
        Err(e) => core.on_body_failed(env, Some(&e)),
    }
}

/// What one step of a request body spliced from the socket did.
pub(crate) enum BodyStep {
    /// The core has no body file now: ask it what next.
    NoFile,
    /// Bytes moved (0: the transfer ended), or the step failed (answered through
    /// the core): either way, ask the core what next.
    Done,
    /// The socket has nothing now: wait for it.
    Blocked,
}

/// One step of at most `want` bytes of a request body from `socket` into the
/// core's body file ([`proto::Intent::ReceiveBody`]), counted under the engine
/// that moved them; shared by both drivers.
pub(crate) fn splice_body_step(
    core: &mut proto::Conn,
    env: &mut worker::Env<'_>,
    upload: &mut Option<Box<Transfer>>,
    engines: &Engines,
    socket: std::os::fd::BorrowedFd<'_>,
    want: usize,
) -> (BodyStep, usize) {
    let Some(file) = core.body_file() else {
        return (BodyStep::NoFile, 0);
    };
    let t = upload.get_or_insert_with(|| engines.upload());
    let src = zcopy::Src::Fd {
        fd: socket,
        offset: None,
    };
    match t.step(src, file.as_fd(), want) {
        Ok(n) => {
            env.events.stats.upload_by_engine(t.current(), n as u64);
            if n == 0 {
                *upload = None;
            }
            core.on_body_received(env, n);
            (BodyStep::Done, n)
        }
        Err(e) if e.io_kind() == Some(std::io::ErrorKind::WouldBlock) => (BodyStep::Blocked, 0),
        Err(e) => {
            // The pipe may hold bytes of this body: never reused.
            *upload = None;
            body_failed(core, env, e);
            (BodyStep::Done, 0)
        }
    }
}

/// A socket → file step failed: an error of the file (a full disk) is answered by
/// the upload's sink, one of the socket just closes.
pub fn body_failed(
    core: &mut proto::Conn,
    env: &mut proto::Env<'_, impl proto::Observer>,
    e: zcopy::TransferError,
) {
    use rustix::io::Errno;
    let io = match e {
        zcopy::TransferError::Io { source, .. } => source,
        other => std::io::Error::other(other.to_string()),
    };
    let socket = [
        Errno::CONNRESET,
        Errno::CONNABORTED,
        Errno::TIMEDOUT,
        Errno::PIPE,
        Errno::NOTCONN,
    ]
    .iter()
    .any(|c| io.raw_os_error() == Some(c.raw_os_error()));
    tracing::debug!(peer = %core.peer(), "receiving a body: {io}");
    core.on_body_failed(env, (!socket).then_some(&io));
}

/// Writes a loop turn's access log lines (`buf`), if any, in one go.
pub fn flush_log(log: Option<&crate::access_log::AccessLogger>, buf: &mut Vec<u8>) {
    if !buf.is_empty() {
        if let Some(log) = log {
            log.write_batch(buf);
        }
        buf.clear();
    }
}

/// A transfer from the pool, and the plan it was made from.
#[derive(Debug)]
pub struct PooledTransfer {
    /// The engine state (a pipe for splice, a ring for uring, ...).
    pub transfer: Transfer,
    /// The pool it goes back to.
    pool: usize,
    /// Its body's file is leased: what the engine keeps of it (a mapping) must go with
    /// the body, or the lease would outlive the response.
    leased: bool,
    /// Fallbacks of this transfer already counted.
    fallbacks_counted: usize,
}

/// The route class of a connection's peer, as far as plans are concerned: which
/// profile lines apply, and whether its receive queue lives in this kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerRoute {
    /// `lo`, `veth` or `nic` ([`PeerClass::path`]).
    pub path: &'static str,
    /// Bytes sent by reference would sit in a receive queue of this kernel.
    pub local: bool,
}

impl PeerRoute {
    /// The route facts of a classified peer (without its strings, so a connection
    /// holding one allocates nothing).
    pub fn of(class: &PeerClass) -> PeerRoute {
        PeerRoute {
            path: class.path(),
            local: class.is_local(),
        }
    }

    /// The peer is on this host's loopback path (a loopback address or one of this
    /// host's own addresses): the site's snapshot band for it may differ.
    pub fn loopback(self) -> bool {
        self.local && self.path == "lo"
    }

    /// A class with these route facts, for [`Plan::for_peer`].
    fn class(self) -> PeerClass {
        match (self.local, self.path) {
            (false, _) => PeerClass::Remote { dev: String::new() },
            (true, "lo") => PeerClass::Local(LocalReason::Loopback),
            (true, _) => PeerClass::Local(LocalReason::VirtualDevice(String::new())),
        }
    }
}

/// What a plan depends on: the peer's route, the right to send by reference, and
/// the body's size class (the profile's lines are per power of two).
type PlanKey = (&'static str, bool, bool, u32);

/// A worker's transfers for file → socket bodies, pooled per plan.
#[derive(Debug)]
pub struct Engines {
    pref: Preference,
    stats: Arc<WorkerStats>,
    forced: Forced,
    /// Plans made so far, and the pool each uses.
    plans: Vec<(PlanKey, usize)>,
    /// Per distinct engine order, the transfers ready for reuse. Boxed: a connection
    /// holds one by pointer, so idle connections stay small and moving one in or out
    /// of the pool allocates nothing.
    #[allow(clippy::vec_box)]
    pools: Vec<(Plan, Vec<Box<PooledTransfer>>)>,
    /// Templates of hot snapshot responses ([`zcopy::lend`]).
    lender: zcopy::lend::Lender,
}

impl Engines {
    /// Transfers for engine preference `pref`; fallbacks are counted in `stats`.
    pub fn new(pref: Preference, stats: Arc<WorkerStats>) -> Engines {
        let forced = Forced::from_env();
        Engines {
            pref,
            stats,
            // An engine named with --engine is what the operator asked for: no
            // template then (unless it is tee).
            lender: match pref {
                Preference::Prefer(k) if k != EngineKind::Tee => {
                    zcopy::lend::Lender::new(&forced.clone().disable(EngineKind::Tee))
                }
                _ => zcopy::lend::Lender::new(&forced),
            },
            forced,
            plans: Vec::new(),
            pools: Vec::new(),
        }
    }

    /// The pool (and plan) for a body of `len` bytes to a peer on `route`: the plan
    /// follows the calibration profile for that route and size. Without
    /// `by_reference` every engine that leaves page references in socket queues is
    /// left out, an explicit one too: the bytes must be copied at send time.
    fn pool_of(&mut self, route: PeerRoute, len: u64, by_reference: bool) -> usize {
        let key = (
            route.path,
            route.local,
            by_reference,
            64 - len.leading_zeros(),
        );
        match self.plans.iter().find(|(k, _)| *k == key) {
            Some(&(_, pool)) => pool,
            None => {
                let hold = match by_reference {
                    true => zcopy::LeaseHold::UntilConsumed,
                    false => zcopy::LeaseHold::UntilSent,
                };
                let profile = zcopy::profile::Profile::cached_default();
                let mut plan = Plan::for_peer(&route.class(), len, self.pref, hold, profile);
                if !by_reference {
                    plan.engines.retain(|k| !k.sends_by_reference());
                }
                tracing::debug!(?route, len, by_reference, engines = ?plan.engines, "file → socket plan");
                let pool = match self
                    .pools
                    .iter()
                    .position(|(p, _)| p.engines == plan.engines)
                {
                    Some(i) => i,
                    None => {
                        self.pools.push((plan, Vec::new()));
                        self.pools.len() - 1
                    }
                };
                self.plans.push((key, pool));
                pool
            }
        }
    }

    /// The plan for a body of `len` bytes to a peer on `route` ([`Engines::take`]'s),
    /// for the io_uring driver's [`FileSend`](zcopy::ring::FileSend).
    pub fn plan(&mut self, route: PeerRoute, len: u64, by_reference: bool) -> &Plan {
        let pool = self.pool_of(route, len, by_reference);
        &self.pools[pool].0
    }

    /// The worker's templates of hot snapshot responses.
    pub fn lender(&mut self) -> &mut zcopy::lend::Lender {
        &mut self.lender
    }

    /// The engine preference (`--engine`).
    pub fn pref(&self) -> Preference {
        self.pref
    }

    /// The engines forced off (`ZCOPY_DISABLE`).
    pub fn forced(&self) -> &Forced {
        &self.forced
    }

    /// Ends a body sent by a ring's [`FileSend`](zcopy::ring::FileSend): counts its
    /// fallbacks and lets go of its file (a mapping pins it, and with it a lease).
    pub fn ring_done(&mut self, op: &mut zcopy::ring::FileSend) {
        for f in op.report().fallbacks() {
            self.stats.fallback(f.engine, &f.reason.to_string());
        }
        tracing::trace!(engine = %op.report().describe(), "body sent");
        op.release();
    }

    /// A transfer for a body of `len` bytes to a peer on `route`: the plan follows
    /// the calibration profile for that route and size. Without `by_reference` every
    /// engine that leaves page references in socket queues is left out, an explicit
    /// one too: the bytes must be copied at send time. `leased`: the body's file holds
    /// our read lease.
    pub fn take(
        &mut self,
        route: PeerRoute,
        len: u64,
        by_reference: bool,
        leased: bool,
    ) -> Box<PooledTransfer> {
        let pool = self.pool_of(route, len, by_reference);
        let (plan, spare) = &mut self.pools[pool];
        let mut t = spare.pop().unwrap_or_else(|| {
            Box::new(PooledTransfer {
                transfer: Transfer::with_forced(plan.clone(), self.forced.clone()),
                pool,
                leased,
                fallbacks_counted: 0,
            })
        });
        t.leased = leased;
        t
    }

    /// A transfer for a request body, socket → file: splice through a pipe where
    /// the kernel can, else read-write (never io_uring: the event loop drives it;
    /// never direct: its `O_DIRECT` writes wait for the device inside the loop).
    pub fn upload(&self) -> Box<Transfer> {
        let mut plan = Plan::with_profile(
            Some(zcopy::FdKind::TcpSocket),
            zcopy::FdKind::File { len: 0 },
            self.pref,
            None,
            zcopy::profile::Profile::cached_default(),
        );
        plan.engines
            .retain(|k| !matches!(k, EngineKind::Uring | EngineKind::Direct));
        Box::new(Transfer::with_forced(plan, self.forced.clone()))
    }

    /// Returns a transfer after its body; one that is not
    /// [reusable](Transfer::reusable) is dropped instead of pooled.
    pub fn give(&mut self, mut t: Box<PooledTransfer>) {
        if t.leased {
            t.transfer.release();
        }
        let fell = t.transfer.report().fallbacks();
        for f in fell.skip(t.fallbacks_counted) {
            self.stats.fallback(f.engine, &f.reason.to_string());
            t.fallbacks_counted += 1;
        }
        tracing::trace!(engine = %t.transfer.report().describe(), "body sent");
        if !t.transfer.reusable() {
            // It failed mid-body, or still holds bytes of this client's body (in a
            // pipe) or owes completions: the next client must never get them.
            tracing::debug!("engine not reusable after this body: dropped");
            return;
        }
        let spare = &mut self.pools[t.pool].1;
        if spare.len() < POOL {
            spare.push(t);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{Sheddable, shed_victim};

    fn conn(idle: bool, reading_head: bool, secs: u64, seq: u64) -> Sheddable {
        Sheddable {
            idle,
            reading_head,
            deadline: *BASE + Duration::from_secs(secs),
            seq,
        }
    }

    static BASE: std::sync::LazyLock<std::time::Instant> =
        std::sync::LazyLock::new(std::time::Instant::now);

    #[test]
    fn an_idle_connection_goes_first_then_the_oldest_head() {
        let busy = conn(false, false, 1, 0);
        let young_head = conn(false, true, 9, 1);
        let old_head = conn(false, true, 5, 2);
        let idle = conn(true, false, 60, 3);
        let all = [(0, busy), (1, young_head), (2, old_head), (3, idle)];
        assert_eq!(shed_victim(all), Some(3));
        assert_eq!(shed_victim(all.into_iter().take(3)), Some(2));
        // Heads with one deadline go by accept order.
        let twin = conn(false, true, 5, 0);
        assert_eq!(shed_victim([(7, old_head), (8, twin)]), Some(8));
        // Only responses in flight: nothing to shed.
        assert_eq!(shed_victim([(0, busy)]), None);
    }
}
