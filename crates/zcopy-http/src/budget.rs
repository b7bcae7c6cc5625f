//! How a process's open-file limit is shared out: connections first, then the files
//! they send, then each worker's cache of open small files.
//!
//! A connection costs its socket, plus one file while it sends a body from disk. The
//! fixed costs are the standard streams, the root directory, the access log, and per
//! worker its event loop, waker, listeners, an engine pipe pair and an inotify
//! instance.

/// Fds every process needs whatever it serves (stdio, root, log, signals, slack).
const FIXED: usize = 24;
/// Fds each worker needs (poll fd, waker, a listener per address, a pipe pair, the
/// file cache's inotify instance).
const PER_WORKER: usize = 7;
/// Share of the fds left for connections that may be sending a file at once.
const FILES_SHARE: usize = 4;
/// Share of what's left that the file caches may use.
const CACHE_SHARE: usize = 32;

/// The limits that follow from an open-file limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FdBudget {
    /// Connections served at once, all workers together.
    pub max_connections: usize,
    /// Small files each worker's cache keeps open.
    pub cache_files: usize,
}

/// Why a requested connection cap can't be honoured.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "--max-connections {asked} needs more file descriptors than the open-file limit \
     ({fds}) holds: at most {fit} connections fit (raise `ulimit -n`)"
)]
pub struct OverBudget {
    /// The cap asked for.
    pub asked: usize,
    /// What fits.
    pub fit: usize,
    /// The open-file limit.
    pub fds: usize,
}

impl FdBudget {
    /// Shares `fds` among `workers` workers. `asked` is an explicit connection cap
    /// (checked against what fits); without one the cap is `default` or what fits,
    /// whichever is smaller. `cache_max` is the most a worker's cache may keep.
    pub fn fit(
        fds: usize,
        workers: usize,
        asked: Option<usize>,
        default: usize,
        cache_max: usize,
    ) -> Result<FdBudget, OverBudget> {
        let free = fds
            .min(1 << 30)
            .saturating_sub(FIXED + PER_WORKER * workers.max(1));
        let cache_total = (free / CACHE_SHARE).min(cache_max * workers.max(1));
        let rest = free - cache_total;
        // A connection is one fd; a fourth of them may hold a file besides.
        let fit = (rest * FILES_SHARE / (FILES_SHARE + 1)).max(1);
        let max_connections = match asked {
            Some(n) if n > fit => {
                return Err(OverBudget { asked: n, fit, fds });
            }
            Some(n) => n,
            None => default.min(fit),
        };
        Ok(FdBudget {
            max_connections,
            cache_files: cache_total / workers.max(1),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_container_limit_of_512_serves_at_least_300_connections() {
        for workers in [1, 2, 4] {
            let b = FdBudget::fit(512, workers, None, 16_384, 1024).unwrap();
            assert!(b.max_connections >= 300, "{workers} workers: {b:?}");
            let fds = b.max_connections + b.max_connections / FILES_SHARE + b.cache_files * workers;
            assert!(
                fds + FIXED + PER_WORKER * workers <= 512,
                "{workers} workers: {b:?} overcommits"
            );
        }
    }

    #[test]
    fn a_large_limit_keeps_the_default_cap_and_full_caches() {
        let b = FdBudget::fit(1 << 20, 2, None, 16_384, 1024).unwrap();
        assert_eq!(b.max_connections, 16_384);
        assert_eq!(b.cache_files, 1024);
    }

    #[test]
    fn an_explicit_cap_beyond_the_limit_is_an_error() {
        let e = FdBudget::fit(512, 2, Some(10_000), 16_384, 1024).unwrap_err();
        assert_eq!(e.asked, 10_000);
        assert!(e.fit >= 300 && e.fit < 512, "{e:?}");
        assert!(e.to_string().contains("ulimit -n"));
        assert_eq!(
            FdBudget::fit(512, 2, Some(200), 16_384, 1024)
                .unwrap()
                .max_connections,
            200
        );
    }
}
