//! The one place that decides which engines may do a job, best first.

use crate::engine::EngineKind;
use crate::fdkind::FdKind;

/// What the user asked for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Preference {
    /// Best engine for the fd pair, with fallback.
    #[default]
    Auto,
    /// This engine first; the pair's other engines as fallbacks.
    Prefer(EngineKind),
}

impl std::str::FromStr for Preference {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
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

impl Plan {
    /// The plan for moving bytes from `src` (`None`: user memory) to `sink`.
    pub fn new(src: Option<FdKind>, sink: FdKind, pref: Preference) -> Plan {
        let mut engines = Self::auto_order(src, sink);
        if let Preference::Prefer(first) = pref {
            engines.retain(|&k| k != first);
            engines.insert(0, first);
        }
        Plan { engines }
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
            Some(FdKind::Pipe | FdKind::TcpSocket | FdKind::UnixSocket) => vec![Splice, Uring],
            Some(_) => vec![],
        };
        order.push(ReadWrite);
        order
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use EngineKind::*;

    #[test]
    fn file_to_socket_prefers_sendfile_and_ends_with_read_write() {
        let p = Plan::new(
            Some(FdKind::File { len: 1 }),
            FdKind::TcpSocket,
            Preference::Auto,
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
    fn socket_to_file_is_splice_then_read_write() {
        let p = Plan::new(
            Some(FdKind::TcpSocket),
            FdKind::File { len: 0 },
            Preference::Auto,
        );
        assert_eq!(p.engines, vec![Splice, Uring, ReadWrite]);
    }
}
