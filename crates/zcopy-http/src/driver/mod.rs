//! Drivers: event loops that own the sockets and carry out what the connection core
//! ([`crate::proto`]) asks for. What every driver shares lives here: the responder
//! that answers requests from the site, and the per-worker pool of engine transfers.

pub mod epoll;
pub mod fetch;
pub mod tls;

use std::fs::File;
use std::sync::Arc;
use std::time::Instant;

use zcopy::peer::{LocalReason, PeerClass};
use zcopy::transfer::Forced;
use zcopy::{Plan, Preference, Transfer};

use crate::cache::FileCache;
use crate::handler::{self, Body, Piece, Response, Site};
use crate::proto::Responder;
use crate::request::Request;
use crate::stats::WorkerStats;

/// What a worker's listener speaks.
#[derive(Clone, Debug)]
pub enum Role {
    /// Plain HTTP.
    Http,
    /// HTTPS, with the listeners' TLS setup.
    Https(Arc<tls::TlsSite>),
    /// Plain HTTP answering every request with a 308 to https.
    Redirect,
}

impl Role {
    /// The kind of listener, as the core and the handler see it.
    pub fn kind(&self) -> crate::config::ListenKind {
        match self {
            Role::Http => crate::config::ListenKind::Http,
            Role::Https(_) => crate::config::ListenKind::Https,
            Role::Redirect => crate::config::ListenKind::Redirect,
        }
    }
}

/// Bodies up to this size are read into memory and leave with the head in one write.
pub const SMALL_BODY: u64 = 16 * 1024;
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
}

impl Responder for SiteResponder {
    /// One `openat2` + `fstat` (or one `fstat` on a cache hit); a body of at most
    /// [`SMALL_BODY`] bytes is read here (one `pread`) so it leaves with the head in
    /// one write.
    fn respond(
        &mut self,
        req: &Request<'_>,
        close: bool,
        out: &mut Vec<u8>,
        now: Instant,
    ) -> Response {
        let mut resp = handler::handle(&self.site, req, close, out, &mut self.cache, now);
        if let Body::File(fb) = &resp.body
            && let [Piece::File { start, len }] = fb.pieces[..]
            && len <= SMALL_BODY
        {
            let got = pread_into(&fb.file, start, len as usize, out);
            if (got as u64) < len {
                // The file shrank since the fstat: send what exists, then close.
                resp.close = true;
            }
            resp.body = Body::InHead;
            resp.body_len = got as u64;
        }
        resp
    }

    /// One `openat2` + `fstat`.
    fn open_member(&mut self, dir: &File, member: &crate::archive::Member) -> Option<File> {
        crate::archive::open_member(dir, member)
    }
}

/// Appends up to `len` bytes of `file` from `start` to `out`; returns how many
/// existed (fewer if the file shrank).
fn pread_into(file: &File, start: u64, len: usize, out: &mut Vec<u8>) -> usize {
    let at = out.len();
    out.resize(at + len, 0);
    let mut got = 0;
    while got < len {
        match rustix::io::pread(file, &mut out[at + got..], start + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => {
                tracing::debug!("pread failed: {e}");
                break;
            }
        }
    }
    out.truncate(at + got);
    got
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
}

impl Engines {
    /// Transfers for engine preference `pref`; fallbacks are counted in `stats`.
    pub fn new(pref: Preference, stats: Arc<WorkerStats>) -> Engines {
        Engines {
            pref,
            stats,
            forced: Forced::from_env(),
            plans: Vec::new(),
            pools: Vec::new(),
        }
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
        let key = (
            route.path,
            route.local,
            by_reference,
            64 - len.leading_zeros(),
        );
        let pool = match self.plans.iter().find(|(k, _)| *k == key) {
            Some(&(_, pool)) => pool,
            None => {
                let mut plan = Plan::for_peer(&route.class(), len, self.pref, by_reference);
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
        };
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

    /// Returns a transfer after its body.
    pub fn give(&mut self, mut t: Box<PooledTransfer>) {
        if t.leased {
            t.transfer.release();
        }
        let fell = t
            .transfer
            .report()
            .runs
            .iter()
            .filter_map(|r| Some((r.engine, r.fell_back.as_deref()?)));
        for (engine, why) in fell.skip(t.fallbacks_counted) {
            self.stats.fallback(engine, why);
            t.fallbacks_counted += 1;
        }
        tracing::trace!(engine = %t.transfer.report().describe(), "body sent");
        let spare = &mut self.pools[t.pool].1;
        if spare.len() < POOL {
            spare.push(t);
        }
    }
}
