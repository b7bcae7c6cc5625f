//! The one place that decides which engines may do a job, best first.

use crate::engine::EngineKind;
use crate::fdkind::FdKind;
use crate::peer::PeerClass;
use crate::profile::Profile;

/// What the user asked for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Preference {
    /// Best engine for the fd pair, with fallback.
    #[default]
    Auto,
    /// This engine first; the pair's other engines as fallbacks.
    Prefer(EngineKind),
}

impl std::str::FromStr for Preference {
    type Err = crate::error::UnknownEngine;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "auto" {
            Ok(Preference::Auto)
        } else {
            s.parse().map(Preference::Prefer)
        }
    }
}

/// An ordered list of engines to try for one (source, sink) pair.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Engines in the order they are tried.
    pub engines: Vec<EngineKind>,
}

/// How long the caller keeps the source file's read lease when sending to a TCP
/// peer ([`Plan::for_peer`]): it decides whether engines that send by reference may
/// serve a peer whose receive queue lives in this kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeaseHold {
    /// Until our send queue is empty at most, or no lease at all: a local peer
    /// ([`PeerClass::is_local`]) gets only engines that copy at send time.
    UntilSent,
    /// Until the peer has provably consumed the bytes (its acknowledgement, its
    /// next request, or its close): every engine may run.
    UntilConsumed,
}

impl Plan {
    /// The plan for moving bytes from `src` (`None`: user memory) to `sink` in the
    /// built-in order: `pref` first, the engines that can do the pair after it,
    /// `read-write` last. Reads nothing; see [`Plan::with_profile`] for a measured
    /// order.
    ///
    /// ```
    /// use zcopy::{EngineKind, FdKind, Plan, Preference};
    ///
    /// let plan = Plan::new(Some(FdKind::File { len: 1 << 20 }), FdKind::TcpSocket, Preference::Auto);
    /// assert_eq!(plan.engines[0], EngineKind::Sendfile);
    /// assert_eq!(plan.engines.last(), Some(&EngineKind::ReadWrite));
    /// ```
    pub fn new(src: Option<FdKind>, sink: FdKind, pref: Preference) -> Plan {
        Self::with_profile(src, sink, pref, None, None)
    }

    /// Like [`Plan::new`], with `auto` following `profile`'s line for this pair and
    /// the size class of `len` (a file source brings its own length) where it has
    /// one. The caller gets the profile explicitly, e.g. with
    /// [`Profile::load_default`].
    pub fn with_profile(
        src: Option<FdKind>,
        sink: FdKind,
        pref: Preference,
        len: Option<u64>,
        profile: Option<&Profile>,
    ) -> Plan {
        let mut engines = Self::auto_order(src, sink);
        match pref {
            Preference::Prefer(first) => {
                engines.retain(|&k| k != first);
                engines.insert(0, first);
            }
            Preference::Auto => {
                if let Some(measured) = profile.and_then(|p| p.order(src, sink, len)) {
                    measured_first(&mut engines, measured);
                }
            }
        }
        Plan { engines }
    }

    /// The plan for sending `len` bytes of a file to a TCP peer of class `peer`,
    /// following `profile`'s lines for the peer's path and the size class of `len`.
    ///
    /// `hold` says how long the caller keeps the file's read lease. To a local
    /// peer ([`PeerClass::is_local`]) held only [`LeaseHold::UntilSent`], the
    /// engines that send by reference ([`EngineKind::sends_by_reference`]) are left
    /// out, as in [`Plan::copying`], and the copying engines keep their measured
    /// order; to a remote peer, or held [`LeaseHold::UntilConsumed`], every engine
    /// may run. An explicit engine goes first either way.
    ///
    /// ```
    /// use zcopy::{EngineKind, LeaseHold, LocalReason, PeerClass, Plan, Preference};
    ///
    /// let lo = PeerClass::Local(LocalReason::Loopback);
    /// let plan = Plan::for_peer(&lo, 4096, Preference::Auto, LeaseHold::UntilSent, None);
    /// assert!(plan.engines.iter().all(|k| !k.sends_by_reference()));
    /// ```
    pub fn for_peer(
        peer: &PeerClass,
        len: u64,
        pref: Preference,
        hold: LeaseHold,
        profile: Option<&Profile>,
    ) -> Plan {
        let src = Some(FdKind::File { len });
        let sink = FdKind::TcpSocket;
        let mut engines = Self::auto_order(src, sink);
        if let Some(measured) = profile.and_then(|p| p.order_on(src, sink, peer.path(), Some(len)))
        {
            measured_first(&mut engines, measured);
        }
        if peer.is_local() && hold == LeaseHold::UntilSent {
            engines.retain(|k| !k.sends_by_reference());
        }
        if let Preference::Prefer(first) = pref {
            engines.retain(|&k| k != first);
            engines.insert(0, first);
        }
        Plan { engines }
    }

    /// The plan for a peer whose receive queue lives in this kernel
    /// ([`PeerClass::is_local`](crate::peer::PeerClass::is_local)): engines that copy
    /// at send time, `mmap` then `read-write`.
    ///
    /// Sent by reference (sendfile, splice, io_uring SPLICE), the bytes would sit in
    /// the local peer's receive queue as references to our page-cache pages until it
    /// reads them; a file truncated mid-page meanwhile hands it zeros, and neither a
    /// read lease nor an empty send queue (`SIOCOUTQ`) covers that window. A copy made
    /// while the read lease is held is the file's bytes for good. (`mmap` + `write`
    /// copies once, in the kernel, and measured less CPU than `read-write` here; it
    /// needs the lease, which [`Transfer::run`](crate::Transfer::run) or the server
    /// takes, to rule out copying a page zeroed by a concurrent truncate.)
    ///
    /// An explicit engine is honoured first — a caller that forces `sendfile` on a
    /// local peer gets it, and must hold its lease until the peer has consumed the
    /// bytes — with the copying engines as its fallbacks.
    pub fn copying(pref: Preference) -> Plan {
        use EngineKind::{Mmap, ReadWrite};
        let first = match pref {
            Preference::Auto => None,
            Preference::Prefer(k) => Some(k),
        };
        let rest = [Mmap, ReadWrite].into_iter().filter(|&e| Some(e) != first);
        Plan {
            engines: first.into_iter().chain(rest).collect(),
        }
    }

    /// A plan that runs exactly these engines, in order.
    pub fn only(engines: &[EngineKind]) -> Plan {
        Plan {
            engines: engines.to_vec(),
        }
    }

    /// Built-in defaults: the engines that can do (src, sink), best first.
    /// `read-write` is always last: it works for everything.
    pub fn auto_order(src: Option<FdKind>, sink: FdKind) -> Vec<EngineKind> {
        use EngineKind::*;
        let sink_is_pipe = sink == FdKind::Pipe;
        let mut order = match src {
            None if sink_is_pipe => vec![Vmsplice],
            None if sink == FdKind::TcpSocket => vec![MsgZerocopy, Uring],
            None => vec![],
            Some(FdKind::File { .. }) => match sink {
                FdKind::File { .. } => vec![CopyRange, Sendfile, Splice],
                FdKind::TcpSocket | FdKind::UnixSocket => vec![Sendfile, Splice, Uring, Mmap],
                FdKind::Pipe => vec![Splice, Sendfile],
                _ => vec![Sendfile, Splice, Mmap],
            },
            Some(FdKind::Pipe) if sink_is_pipe => vec![Splice, Tee],
            Some(FdKind::Pipe | FdKind::TcpSocket | FdKind::UnixSocket) => match sink {
                FdKind::File { .. } => vec![Splice, Uring, Direct],
                _ => vec![Splice, Uring],
            },
            Some(_) => vec![],
        };
        order.push(ReadWrite);
        order
    }
}

/// Puts the `measured` engines first, in their order, limited to those in
/// `engines` (the ones that can do the pair); the rest keep their places after.
fn measured_first(engines: &mut Vec<EngineKind>, measured: Vec<EngineKind>) {
    let mut ordered: Vec<EngineKind> = measured
        .into_iter()
        .filter(|k| engines.contains(k))
        .collect();
    engines.retain(|k| !ordered.contains(k));
    ordered.append(engines);
    *engines = ordered;
}

#[cfg(test)]
mod tests {
    use super::*;
    use EngineKind::*;

    #[test]
    fn file_to_socket_prefers_sendfile_and_ends_with_read_write() {
        let p = Plan::with_profile(
            Some(FdKind::File { len: 1 }),
            FdKind::TcpSocket,
            Preference::Auto,
            None,
            None,
        );
        assert_eq!(p.engines.first(), Some(&Sendfile));
        assert_eq!(p.engines.last(), Some(&ReadWrite));
    }

    #[test]
    fn preference_goes_first_without_duplicates() {
        let p = Plan::new(
            Some(FdKind::File { len: 1 }),
            FdKind::File { len: 0 },
            Preference::Prefer(Splice),
        );
        assert_eq!(p.engines, vec![Splice, CopyRange, Sendfile, ReadWrite]);
    }

    #[test]
    fn auto_follows_the_profile_for_the_size_class_and_keeps_every_engine() {
        let profile =
            Profile::parse("file tcp 65536 read-write tee sendfile\nfile tcp max splice\n");
        let small = Plan::with_profile(
            Some(FdKind::File { len: 4096 }),
            FdKind::TcpSocket,
            Preference::Auto,
            None,
            Some(&profile),
        );
        // tee can't do file → tcp: dropped; unmeasured engines keep their order after.
        assert_eq!(
            small.engines,
            vec![ReadWrite, Sendfile, Splice, Uring, Mmap]
        );
        let big = Plan::with_profile(
            Some(FdKind::File { len: 1 << 30 }),
            FdKind::TcpSocket,
            Preference::Auto,
            None,
            Some(&profile),
        );
        assert_eq!(big.engines[0], Splice);
        assert_eq!(big.engines.len(), 5);
        // An explicit engine ignores the profile.
        let pref = Plan::with_profile(
            Some(FdKind::File { len: 4096 }),
            FdKind::TcpSocket,
            Preference::Prefer(Mmap),
            None,
            Some(&profile),
        );
        assert_eq!(pref.engines, vec![Mmap, Sendfile, Splice, Uring, ReadWrite]);
    }

    #[test]
    fn a_stream_source_uses_the_size_class_of_the_transfer() {
        let profile =
            Profile::parse("tcp file 65536 read-write splice\ntcp file max splice read-write\n");
        let plan = |len| {
            let (src, sink) = (Some(FdKind::TcpSocket), FdKind::File { len: 0 });
            Plan::with_profile(src, sink, Preference::Auto, len, Some(&profile)).engines
        };
        assert_eq!(plan(Some(4096))[0], ReadWrite);
        assert_eq!(plan(Some(1 << 30))[0], Splice);
        assert_eq!(plan(None)[0], Splice);
    }

    #[test]
    fn the_copying_plan_sends_nothing_by_reference_unless_asked() {
        assert_eq!(
            Plan::copying(Preference::Auto).engines,
            vec![Mmap, ReadWrite]
        );
        assert!(
            Plan::copying(Preference::Auto)
                .engines
                .iter()
                .all(|k| !k.sends_by_reference())
        );
        assert_eq!(
            Plan::copying(Preference::Prefer(Sendfile)).engines,
            vec![Sendfile, Mmap, ReadWrite]
        );
        assert_eq!(
            Plan::copying(Preference::Prefer(ReadWrite)).engines,
            vec![ReadWrite, Mmap]
        );
    }

    #[test]
    fn a_peer_plan_follows_its_path_and_copies_to_local_peers_without_a_hold() {
        use crate::peer::LocalReason;
        let profile = Profile::parse(
            "file tcp max splice read-write\n\
             file tcp@lo 65536 read-write mmap sendfile\n\
             file tcp@lo max sendfile mmap read-write\n\
             file tcp@veth max sendfile read-write mmap\n",
        );
        let lo = PeerClass::Local(LocalReason::Loopback);
        let veth = PeerClass::Local(LocalReason::VirtualDevice("veth0".into()));
        let nic = PeerClass::Remote { dev: "eth0".into() };
        let plan = |peer: &PeerClass, len, held: bool| {
            let hold = if held {
                LeaseHold::UntilConsumed
            } else {
                LeaseHold::UntilSent
            };
            Plan::for_peer(peer, len, Preference::Auto, hold, Some(&profile)).engines
        };
        assert_eq!(plan(&lo, 4096, false), vec![ReadWrite, Mmap]);
        assert_eq!(plan(&lo, 1 << 20, false), vec![Mmap, ReadWrite]);
        assert_eq!(plan(&lo, 1 << 20, true)[0], Sendfile);
        assert_eq!(plan(&veth, 1 << 20, false), vec![ReadWrite, Mmap]);
        assert_eq!(plan(&veth, 1 << 20, true)[0], Sendfile);
        assert_eq!(plan(&nic, 1 << 20, false)[0], Splice, "plain lines for nic");
        assert_eq!(
            Plan::for_peer(&nic, 1, Preference::Auto, LeaseHold::UntilSent, None).engines,
            Plan::auto_order(Some(FdKind::File { len: 1 }), FdKind::TcpSocket)
        );
        let forced = Plan::for_peer(
            &lo,
            1,
            Preference::Prefer(Splice),
            LeaseHold::UntilSent,
            None,
        );
        assert_eq!(forced.engines, vec![Splice, Mmap, ReadWrite]);
    }

    #[test]
    fn socket_to_file_is_splice_then_direct_then_read_write() {
        let p = Plan::with_profile(
            Some(FdKind::TcpSocket),
            FdKind::File { len: 0 },
            Preference::Auto,
            None,
            None,
        );
        assert_eq!(p.engines, vec![Splice, Uring, Direct, ReadWrite]);
        // Into a pipe or a socket there is no file for O_DIRECT.
        let p = Plan::new(Some(FdKind::TcpSocket), FdKind::Pipe, Preference::Auto);
        assert!(!p.engines.contains(&Direct));
    }
}
