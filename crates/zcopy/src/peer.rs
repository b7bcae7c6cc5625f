//! Where a connected peer's receive queue lives, as far as page references go.
//!
//! Bytes sent by reference (sendfile, splice, io_uring SPLICE: see
//! [`EngineKind::sends_by_reference`](crate::EngineKind::sends_by_reference)) sit in
//! socket queues as references to the source file's page-cache pages. For a peer
//! behind a hardware NIC, the bytes have left the machine once the peer ACKs them
//! (our send queue, `SIOCOUTQ`, is empty). For a peer whose receive queue lives in
//! this kernel — loopback, one of this host's own addresses, a container behind a
//! veth, bridge, tun/tap, macvlan/ipvlan — the references move into *its* receive
//! queue and stay there until it reads: a file truncated or rewritten meanwhile
//! changes bytes that were already "sent". So the question is answered from the
//! kernel's route for the peer, never from the address alone:
//!
//! - loopback address or output device `lo` → [`LocalReason::Loopback`];
//! - route type `RTN_LOCAL` (an address of this host) → [`LocalReason::LocalAddress`];
//! - output device without a backing bus device (no `/sys/class/net/DEV/device`,
//!   which netlink reports as the absence of `IFLA_PARENT_DEV_NAME`) →
//!   [`LocalReason::VirtualDevice`];
//! - any error → [`LocalReason::Unknown`]: unknown is treated as local;
//! - only an output device backed by hardware → [`PeerClass::Remote`].
//!
//! The lookups are rtnetlink queries in the calling thread's network namespace.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

mod route;

/// Where a connected peer's receive queue lives, as far as page references are
/// concerned.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PeerClass {
    /// Its receive queue is in this kernel: bytes sent by reference stay references
    /// to our pages until the peer reads them.
    Local(LocalReason),
    /// Behind a hardware interface: once acknowledged, the bytes have left.
    Remote {
        /// The output interface.
        dev: String,
    },
}

/// Why a peer counts as local.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LocalReason {
    /// A loopback address, or routed through `lo`.
    Loopback,
    /// One of this host's own addresses (route type `RTN_LOCAL`).
    LocalAddress,
    /// Routed through an interface with no hardware behind it (veth, bridge, tun/tap,
    /// macvlan/ipvlan, ...): its name.
    VirtualDevice(String),
    /// The lookup failed: why. Treated as local, the safe side.
    Unknown(String),
}

impl PeerClass {
    /// True for every peer whose receive queue may hold references to our pages.
    pub fn is_local(&self) -> bool {
        matches!(self, PeerClass::Local(_))
    }

    /// The class of `ip`, looked up now (no cache).
    pub fn lookup(ip: IpAddr) -> PeerClass {
        let ip = ip.to_canonical();
        if ip.is_loopback() {
            return PeerClass::Local(LocalReason::Loopback);
        }
        let r = match route::route(ip) {
            Ok(r) => r,
            Err(e) => return unknown(format!("route to {ip}: {e}")),
        };
        if r.kind == route::RTN_LOCAL {
            return PeerClass::Local(LocalReason::LocalAddress);
        }
        let Some(oif) = r.oif else {
            return unknown(format!("route to {ip} has no output device"));
        };
        match route::link(oif) {
            Ok(l) if l.name == "lo" => PeerClass::Local(LocalReason::Loopback),
            Ok(l) if l.has_device => PeerClass::Remote { dev: l.name },
            Ok(l) if l.kind == "veth" && test_veth_is_remote() => PeerClass::Remote { dev: l.name },
            Ok(l) => PeerClass::Local(LocalReason::VirtualDevice(l.name)),
            Err(e) => unknown(format!("interface {oif}: {e}")),
        }
    }

    /// The kind of path bytes take to this peer, as calibration profiles name it
    /// (`tcp@PATH` lines, see [`crate::profile`]): `lo` (loopback and this host's
    /// own addresses, which route through `lo`), `veth` (a virtual device, or
    /// unknown) or `nic` (hardware).
    pub fn path(&self) -> &'static str {
        match self {
            PeerClass::Local(LocalReason::Loopback | LocalReason::LocalAddress) => "lo",
            PeerClass::Local(_) => "veth",
            PeerClass::Remote { .. } => "nic",
        }
    }

    /// A short name for logs and profiles: `loopback`, `local-address`, `virtual`,
    /// `unknown` or `remote`.
    pub fn name(&self) -> &'static str {
        match self {
            PeerClass::Local(LocalReason::Loopback) => "loopback",
            PeerClass::Local(LocalReason::LocalAddress) => "local-address",
            PeerClass::Local(LocalReason::VirtualDevice(_)) => "virtual",
            PeerClass::Local(LocalReason::Unknown(_)) => "unknown",
            PeerClass::Remote { .. } => "remote",
        }
    }
}

/// `ZCOPY_TEST_VETH_IS_REMOTE`, **for tests only**: the environment variable the
/// `zcopy` command reads at start to call [`set_test_veth_is_remote`]. The library
/// never reads it.
#[cfg(feature = "server")]
pub const TEST_VETH_IS_REMOTE: &str = "ZCOPY_TEST_VETH_IS_REMOTE";

/// 1: off (the default), 2: on.
static VETH_IS_REMOTE: AtomicU8 = AtomicU8::new(1);

/// Whether veth peers count as remote (see `set_test_veth_is_remote`).
fn test_veth_is_remote() -> bool {
    VETH_IS_REMOTE.load(Ordering::Relaxed) == 2
}

/// **For tests only**: with `true`, a peer routed through a veth interface is
/// classified [`PeerClass::Remote`], as if it were behind a hardware NIC, so that
/// the paths only remote peers take (bytes sent by reference: sendfile, splice,
/// io_uring SPLICE, MSG_ZEROCOPY) can be tested across a veth pair on a machine
/// without one. Never on a real server: a veth peer's receive queue is in this
/// kernel, and a file changed mid-send would reach it changed. Takes effect for
/// lookups made from now on; a [`PeerClassifier`] may answer from its cache for up
/// to [`CACHE_TTL`].
#[cfg(feature = "server")]
pub fn set_test_veth_is_remote(on: bool) {
    if on {
        tracing::warn!("veth peers are treated as remote (tests only)");
    }
    VETH_IS_REMOTE.store(if on { 2 } else { 1 }, Ordering::Relaxed);
}

fn unknown(why: String) -> PeerClass {
    tracing::debug!("peer class unknown, treated as local: {why}");
    PeerClass::Local(LocalReason::Unknown(why))
}

impl fmt::Display for PeerClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerClass::Local(LocalReason::VirtualDevice(dev)) => write!(f, "local (via {dev})"),
            PeerClass::Local(LocalReason::Unknown(why)) => write!(f, "local (unknown: {why})"),
            PeerClass::Local(_) => write!(f, "local ({})", self.name()),
            PeerClass::Remote { dev } => write!(f, "remote (via {dev})"),
        }
    }
}

/// Most peers a [`PeerClassifier`] remembers.
pub const CACHE_CAP: usize = 4096;
/// How long a [`PeerClassifier`] trusts a lookup.
pub const CACHE_TTL: Duration = Duration::from_secs(10);

/// Per-worker cache keyed by peer IP (bounded size, entries expire after
/// [`CACHE_TTL`]).
#[derive(Debug)]
pub struct PeerClassifier {
    cache: HashMap<IpAddr, (PeerClass, Instant)>,
}

impl Default for PeerClassifier {
    fn default() -> Self {
        Self::new()
    }
}

impl PeerClassifier {
    /// An empty cache.
    pub fn new() -> Self {
        PeerClassifier {
            cache: HashMap::new(),
        }
    }

    /// Classifies the peer of a connected TCP socket (getpeername + route lookup),
    /// cached per IP. A socket without an IP peer (UNIX, unconnected) is local.
    pub fn classify(&mut self, sock: BorrowedFd<'_>) -> PeerClass {
        match rustix::net::getpeername(sock) {
            Ok(Some(addr)) => match SocketAddr::try_from(addr) {
                Ok(a) => self.classify_ip(a.ip()),
                Err(_) => PeerClass::Local(LocalReason::Loopback),
            },
            Ok(None) => PeerClass::Local(LocalReason::Loopback),
            Err(e) => unknown(format!("getpeername: {e}")),
        }
    }

    /// Classifies `ip` (v4-mapped v6 addresses as v4), cached.
    pub fn classify_ip(&mut self, ip: IpAddr) -> PeerClass {
        let ip = ip.to_canonical();
        let now = Instant::now();
        if let Some((class, at)) = self.cache.get(&ip)
            && now.duration_since(*at) < CACHE_TTL
        {
            return class.clone();
        }
        let class = PeerClass::lookup(ip);
        if self.cache.len() >= CACHE_CAP {
            self.cache
                .retain(|_, (_, at)| now.duration_since(*at) < CACHE_TTL);
            if self.cache.len() >= CACHE_CAP {
                self.cache.clear();
            }
        }
        self.cache.insert(ip, (class.clone(), now));
        class
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr, TcpListener, TcpStream};
    use std::os::fd::AsFd;

    #[test]
    fn loopback_peers_are_local() {
        let mut c = PeerClassifier::new();
        let lo = PeerClass::Local(LocalReason::Loopback);
        assert_eq!(c.classify_ip(Ipv4Addr::LOCALHOST.into()), lo);
        assert_eq!(c.classify_ip("127.3.4.5".parse().unwrap()), lo);
        assert_eq!(c.classify_ip(Ipv6Addr::LOCALHOST.into()), lo);
        assert_eq!(c.classify_ip("::ffff:127.0.0.1".parse().unwrap()), lo);
        assert!(lo.is_local());
    }

    #[test]
    fn a_connected_socket_is_classified_by_its_peer() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let s = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let mut c = PeerClassifier::new();
        assert_eq!(
            c.classify(s.as_fd()),
            PeerClass::Local(LocalReason::Loopback)
        );
    }

    /// This host's first non-loopback IPv4 address, from the routing table's view.
    fn a_host_address() -> Option<Ipv4Addr> {
        // A UDP "connect" sends nothing; it only picks the source address a route
        // would use.
        let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
        s.connect("198.51.100.1:9").ok()?;
        match s.local_addr().ok()?.ip() {
            IpAddr::V4(a) if !a.is_loopback() && !a.is_unspecified() => Some(a),
            _ => None,
        }
    }

    #[test]
    fn an_address_of_this_host_is_local() {
        let Some(addr) = a_host_address() else {
            println!("skipped: no non-loopback IPv4 address on this host");
            return;
        };
        let mut c = PeerClassifier::new();
        assert_eq!(
            c.classify_ip(addr.into()),
            PeerClass::Local(LocalReason::LocalAddress)
        );
        let mapped = addr.to_ipv6_mapped();
        assert_eq!(
            c.classify_ip(mapped.into()),
            PeerClass::Local(LocalReason::LocalAddress),
            "v4-mapped looked up as v4"
        );
    }

    #[test]
    fn an_unroutable_address_is_unknown_and_so_local() {
        // 240.0.0.0/4 is reserved; with no default route it is unreachable. With a
        // default route the class follows the device, which is checked instead.
        let class = PeerClass::lookup("240.0.0.1".parse().unwrap());
        match &class {
            PeerClass::Local(LocalReason::Unknown(_)) => {}
            PeerClass::Remote { dev } => {
                assert!(
                    std::path::Path::new("/sys/class/net")
                        .join(dev)
                        .join("device")
                        .exists(),
                    "{dev} was called remote without a device"
                );
            }
            PeerClass::Local(LocalReason::VirtualDevice(dev)) => {
                assert!(
                    !std::path::Path::new("/sys/class/net")
                        .join(dev)
                        .join("device")
                        .exists(),
                    "{dev} has a device but was called virtual"
                );
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(class.is_local(), !matches!(class, PeerClass::Remote { .. }));
    }

    #[test]
    fn the_cache_answers_again_and_stays_bounded() {
        let mut c = PeerClassifier::new();
        for i in 0..(CACHE_CAP as u32 + 10) {
            let ip = Ipv4Addr::from(0x7f00_0000 | i);
            c.classify_ip(ip.into());
        }
        assert!(c.cache.len() <= CACHE_CAP);
    }
}
