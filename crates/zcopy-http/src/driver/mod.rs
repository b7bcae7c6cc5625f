//! Drivers: event loops that own the sockets and carry out what the connection core
//! ([`crate::proto`]) asks for. What every driver shares lives here: the responder
//! that answers requests from the site, and the per-worker pool of engine transfers.

pub mod epoll;
pub mod tls;

use std::fs::File;
use std::sync::Arc;
use std::time::Instant;

use zcopy::peer::{LocalReason, PeerClass};
use zcopy::transfer::Forced;
use zcopy::{EngineKind, Plan, Preference, Transfer};

use crate::cache::FileCache;
use crate::handler::{self, Body, Piece, Response, Site};
use crate::proto::Responder;
use crate::request::Request;

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
    /// Its plan's engines (the pool it goes back to).
    engines: Vec<EngineKind>,
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

/// A worker's transfers for file → socket bodies, pooled per plan.
#[derive(Debug)]
pub struct Engines {
    pref: Preference,
    forced: Forced,
    /// Boxed: a connection holds one by pointer, so idle connections stay small and
    /// moving one in or out of the pool allocates nothing.
    #[allow(clippy::vec_box)]
    pools: Vec<(Vec<EngineKind>, Vec<Box<PooledTransfer>>)>,
}

impl Engines {
    /// Transfers for engine preference `pref`.
    pub fn new(pref: Preference) -> Engines {
        Engines {
            pref,
            forced: Forced::from_env(),
            pools: Vec::new(),
        }
    }

    /// A transfer for a body of `len` bytes to a peer on `route`: the plan follows
    /// the calibration profile for that route and size. Without `by_reference` every
    /// engine that leaves page references in socket queues is left out, an explicit
    /// one too: the bytes must be copied at send time.
    pub fn take(&mut self, route: PeerRoute, len: u64, by_reference: bool) -> Box<PooledTransfer> {
        let mut plan = Plan::for_peer(&route.class(), len, self.pref, by_reference);
        if !by_reference {
            plan.engines.retain(|k| !k.sends_by_reference());
        }
        let pool = match self.pools.iter().position(|(e, _)| *e == plan.engines) {
            Some(i) => &mut self.pools[i].1,
            None => {
                tracing::debug!(?route, len, by_reference, engines = ?plan.engines, "file → socket plan");
                self.pools.push((plan.engines.clone(), Vec::new()));
                &mut self.pools.last_mut().expect("just pushed").1
            }
        };
        pool.pop().unwrap_or_else(|| {
            Box::new(PooledTransfer {
                engines: plan.engines.clone(),
                transfer: Transfer::with_forced(plan, self.forced.clone()),
            })
        })
    }

    /// Returns a transfer after its body.
    pub fn give(&mut self, mut t: Box<PooledTransfer>) {
        t.transfer.release();
        tracing::trace!(engine = %t.transfer.report().describe(), "body sent");
        if let Some((_, pool)) = self.pools.iter_mut().find(|(e, _)| *e == t.engines)
            && pool.len() < POOL
        {
            pool.push(t);
        }
    }
}
