//! The listener set: per listen address, one `SO_REUSEPORT` socket per worker (the
//! kernel spreads new connections over them), or one socket every worker shares
//! (inherited from a service manager, or where `SO_REUSEPORT` was refused); and which
//! sockets each worker accepts on.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use socket2::{Domain, Socket, Type};

use crate::config::ListenKind;
use crate::driver::tls::TlsSite;
use crate::error::ServerError;

/// One listening socket, shared by the set and the workers that accept on it: it
/// closes when the last of them lets go.
#[derive(Debug)]
pub(crate) struct Sock {
    /// Unique in the process (a worker's event token for it).
    pub(crate) id: u64,
    pub(crate) sock: std::net::TcpListener,
}

/// A socket a worker accepts on, and what it speaks.
#[derive(Clone, Debug)]
pub(crate) struct Listen {
    pub(crate) sock: Arc<Sock>,
    pub(crate) kind: ListenKind,
    /// The TLS setup of an HTTPS listener (`None` for the others).
    pub(crate) tls: Option<Arc<TlsSite>>,
}

/// One listen address and its sockets.
#[derive(Debug)]
pub(crate) struct Address {
    /// As configured (port 0 stays 0: the same entry in a reload keeps its port).
    pub(crate) asked: SocketAddr,
    /// As bound.
    pub(crate) bound: SocketAddr,
    pub(crate) kind: ListenKind,
    /// The TLS setup of an HTTPS address (`None` for the others).
    pub(crate) tls: Option<Arc<TlsSite>>,
    /// The `SO_REUSEPORT` group, at least one per worker; or, when `shared`, the one
    /// socket every worker accepts on.
    pub(crate) socks: Vec<Arc<Sock>>,
    pub(crate) shared: bool,
}

/// Ids of listening sockets are below this (driver tokens count down from theirs).
pub(crate) const MAX_ID: u64 = 1 << 32;

fn next_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed) % MAX_ID
}

fn sock(s: std::net::TcpListener) -> Arc<Sock> {
    Arc::new(Sock {
        id: next_id(),
        sock: s,
    })
}

impl Address {
    /// Binds `asked` with `n` sockets, speaking `kind` (`tls`: the setup of an HTTPS
    /// address). An explicit port is first checked with a plain
    /// bind, so a port another server (even another zcopy) holds is reported as in use
    /// instead of silently shared.
    pub(crate) fn bind(
        asked: SocketAddr,
        kind: ListenKind,
        tls: Option<Arc<TlsSite>>,
        n: usize,
    ) -> Result<Address, ServerError> {
        let err = |source| ServerError::Bind {
            addr: asked,
            source,
        };
        if asked.port() != 0 {
            let probe = new_socket(asked, false).map_err(err)?;
            probe.bind(&asked.into()).map_err(err)?;
        }
        let first = new_socket(asked, true).map_err(err)?;
        first.bind(&asked.into()).map_err(err)?;
        first.listen(1024).map_err(err)?;
        let bound = first
            .local_addr()
            .map_err(err)?
            .as_socket()
            .ok_or_else(|| err(io::Error::other("not an IP address")))?;
        let mut a = Address {
            asked,
            bound,
            kind,
            tls,
            socks: vec![sock(first.into())],
            shared: false,
        };
        a.grow(n);
        Ok(a)
    }

    /// One inherited listener, shared by every worker (a `SO_REUSEPORT` group can't
    /// be made from a socket someone else bound).
    pub(crate) fn inherited(l: std::net::TcpListener) -> Result<Address, ServerError> {
        let addr = l.local_addr()?;
        l.set_nonblocking(true)
            .map_err(|source| ServerError::Bind { addr, source })?;
        Ok(Address {
            asked: addr,
            bound: addr,
            kind: ListenKind::Http,
            tls: None,
            socks: vec![sock(l)],
            shared: true,
        })
    }

    /// Whether this is the configuration's entry `addr` of `kind`.
    pub(crate) fn is(&self, addr: SocketAddr, kind: ListenKind) -> bool {
        self.asked == addr && self.kind == kind
    }

    /// Binds more sockets to the group until there are `n` (for new workers). Where
    /// `SO_REUSEPORT` is refused the workers share the first socket.
    pub(crate) fn grow(&mut self, n: usize) {
        while !self.shared && self.socks.len() < n {
            let s = new_socket(self.bound, true).and_then(|s| {
                s.bind(&self.bound.into())?;
                s.listen(1024)?;
                Ok(s)
            });
            match s {
                Ok(s) => self.socks.push(sock(s.into())),
                Err(e) => {
                    tracing::debug!("SO_REUSEPORT bind failed ({e}); workers share one listener");
                    self.socks.truncate(1);
                    self.shared = true;
                }
            }
        }
    }

    /// The sockets worker `w` of `n` accepts on: the shared one, or every socket of
    /// the group whose place is `w` modulo `n`. A group larger than the workers (after
    /// some retired) stays whole: closing a `SO_REUSEPORT` socket would reset the
    /// connections waiting in its queue, so the remaining workers take it over.
    fn for_worker(&self, w: usize, n: usize) -> impl Iterator<Item = Listen> + '_ {
        let take =
            move |(j, _): &(usize, _)| (self.shared && *j == 0) || (!self.shared && j % n == w);
        self.socks
            .iter()
            .enumerate()
            .filter(take)
            .map(|(_, s)| Listen {
                sock: s.clone(),
                kind: self.kind,
                tls: self.tls.clone(),
            })
    }
}

/// What worker `w` of `n` accepts on, over every address.
pub(crate) fn plan(addrs: &[Address], w: usize, n: usize) -> Vec<Listen> {
    addrs.iter().flat_map(|a| a.for_worker(w, n)).collect()
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
