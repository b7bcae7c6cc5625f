//! Drivers: event loops that own the sockets and carry out what the connection core
//! ([`crate::proto`]) asks for. What every driver shares lives here: the responder
//! that answers requests from the site, and the per-worker pool of engine transfers.

pub mod epoll;
pub mod uring;

use std::fs::File;
use std::sync::Arc;
use std::time::Instant;

use zcopy::transfer::Forced;
use zcopy::{EngineKind, FdKind, Plan, Preference, Transfer};

use crate::cache::FileCache;
use crate::handler::{self, Body, Piece, Response, Site};
use crate::proto::Responder;
use crate::request::Request;

/// Which event loop runs the workers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IoDriver {
    /// io_uring where this kernel runs it, else epoll.
    #[default]
    Auto,
    /// The mio (epoll) loop.
    Epoll,
    /// The io_uring loop (falls back to epoll, with a warning, where refused).
    Uring,
}

impl IoDriver {
    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            IoDriver::Auto => "auto",
            IoDriver::Epoll => "epoll",
            IoDriver::Uring => "uring",
        }
    }
}

impl std::fmt::Display for IoDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for IoDriver {
    type Err = String;

    fn from_str(s: &str) -> Result<IoDriver, String> {
        match s {
            "auto" => Ok(IoDriver::Auto),
            "epoll" => Ok(IoDriver::Epoll),
            "uring" | "io_uring" | "io-uring" => Ok(IoDriver::Uring),
            _ => Err(format!(
                "unknown I/O driver '{s}' (known: auto, epoll, uring)"
            )),
        }
    }
}

/// The driver that runs for `want` (never `Auto`), and why.
pub fn choose(want: IoDriver) -> (IoDriver, String) {
    if want == IoDriver::Epoll {
        return (IoDriver::Epoll, "asked for".into());
    }
    let forced = zcopy::transfer::Forced::from_env();
    let refused = if forced.limit(EngineKind::Uring).is_some() {
        Err("io_uring forced off by ZCOPY_DISABLE".to_string())
    } else {
        zcopy::sys::event_ring::probe()
    };
    match refused {
        Err(why) => (IoDriver::Epoll, format!("io_uring unavailable: {why}")),
        Ok(()) if want == IoDriver::Uring => (IoDriver::Uring, "asked for".into()),
        Ok(()) => (IoDriver::Uring, "io_uring probe passed".into()),
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

/// A transfer from the pool, and whether its plan may send by reference.
#[derive(Debug)]
pub struct PooledTransfer {
    /// The engine state (a pipe for splice, a ring for uring, ...).
    pub transfer: Transfer,
    /// Made from the by-reference plan.
    pub by_reference: bool,
}

/// A worker's engine plans for file → socket bodies and the transfers ready for reuse.
#[derive(Debug)]
pub struct Engines {
    /// [copying, by reference].
    plans: [Plan; 2],
    forced: Forced,
    /// Boxed: a connection holds one by pointer, so idle connections stay small and
    /// moving one in or out of the pool allocates nothing.
    #[allow(clippy::vec_box)]
    pool: [Vec<Box<PooledTransfer>>; 2],
}

impl Engines {
    /// The plans for `pref`: one that may send by reference, one that copies at send time.
    pub fn new(pref: Preference) -> Engines {
        let by_reference = Plan::new(Some(FdKind::File { len: 0 }), FdKind::TcpSocket, pref);
        let copying = copying_plan(pref);
        tracing::debug!(by_reference = ?by_reference.engines, copying = ?copying.engines, "file → socket plans");
        Engines {
            plans: [copying, by_reference],
            forced: Forced::from_env(),
            pool: [Vec::new(), Vec::new()],
        }
    }

    /// A transfer for a body, by reference or not.
    pub fn take(&mut self, by_reference: bool) -> Box<PooledTransfer> {
        let i = by_reference as usize;
        self.pool[i].pop().unwrap_or_else(|| {
            Box::new(PooledTransfer {
                transfer: Transfer::with_forced(self.plans[i].clone(), self.forced.clone()),
                by_reference,
            })
        })
    }

    /// Returns a transfer after its body.
    pub fn give(&mut self, mut t: Box<PooledTransfer>) {
        t.transfer.release();
        tracing::trace!(engine = %t.transfer.report().describe(), "body sent");
        let pool = &mut self.pool[t.by_reference as usize];
        if pool.len() < POOL {
            pool.push(t);
        }
    }
}

/// Whether bytes sent by `engine` sit in the socket queue as references to
/// page-cache pages (rather than copies made at send time).
pub fn sends_by_reference(engine: EngineKind) -> bool {
    matches!(
        engine,
        EngineKind::Sendfile | EngineKind::Splice | EngineKind::Uring
    )
}

/// The plan for peers that must get copies: engines that copy at send time (mmap,
/// then read-write). A peer whose receive queue lives in this kernel keeps
/// references to our page-cache pages until it reads them, so with sendfile/splice a
/// file truncated mid-page afterwards would hand it zeros that no lease or SIOCOUTQ
/// wait can prevent. An explicit engine that copies is honoured first.
pub fn copying_plan(pref: Preference) -> Plan {
    use zcopy::EngineKind::{Mmap, ReadWrite};
    let mut engines = Vec::new();
    if let Preference::Prefer(k) = pref
        && !sends_by_reference(k)
        && !matches!(k, Mmap | ReadWrite)
    {
        engines.push(k);
    }
    engines.extend([Mmap, ReadWrite]);
    if let Preference::Prefer(k @ (Mmap | ReadWrite)) = pref {
        engines.retain(|&e| e != k);
        engines.insert(0, k);
    }
    Plan::only(&engines)
}
