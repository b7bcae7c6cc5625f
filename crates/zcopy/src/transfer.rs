//! Runs a [`Plan`]: one engine at a time; when an engine can't do the job here, the
//! next one continues from the exact offset reached.

use std::collections::HashMap;
use std::io;
use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

use crate::engine::{Engine, EngineKind, Src, is_unsupported, unsupported};
pub use crate::error::{Fallback, FallbackReason, TransferError};
use crate::fdkind::FdKind;
use crate::plan::Plan;
use crate::stats::{Stats, Usage};
use crate::sys::lease::ReadLease;
pub use crate::sys::sock::send_queue_len;

/// Largest step handed to an engine in one call by [`Transfer::run`].
pub const DEFAULT_CHUNK: usize = 16 * 1024 * 1024;

/// One engine's share of a transfer.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct EngineRun {
    /// The engine.
    pub engine: EngineKind,
    /// Its counters.
    pub stats: Stats,
    /// Why it handed over to the next engine, if it did.
    pub fell_back: Option<FallbackReason>,
}

/// What a transfer did.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct Report {
    /// Bytes delivered to the sink.
    pub bytes: u64,
    /// Each engine that ran, in order.
    pub runs: Vec<EngineRun>,
    /// Process CPU and context switches during [`Transfer::run`].
    pub usage: Usage,
    /// Wall time of [`Transfer::run`].
    pub elapsed: Duration,
}

impl Report {
    /// The engine that delivered the last bytes (the one that "really ran").
    pub fn engine(&self) -> Option<EngineKind> {
        self.runs
            .iter()
            .rev()
            .find(|r| r.fell_back.is_none())
            .map(|r| r.engine)
    }

    /// All counters summed.
    pub fn stats(&self) -> Stats {
        let mut s = Stats::default();
        for r in &self.runs {
            s.add(&r.stats);
        }
        s
    }

    /// "splice", or "read-write (after sendfile, splice)" when engines fell back:
    /// for one-line summaries.
    pub fn short(&self) -> String {
        let fell: Vec<&str> = self
            .runs
            .iter()
            .filter(|r| r.fell_back.is_some())
            .map(|r| r.engine.name())
            .collect();
        match (self.engine(), fell.is_empty()) {
            (Some(e), true) => e.to_string(),
            (Some(e), false) => format!("{e} (after {})", fell.join(", ")),
            (None, _) => "-".to_string(),
        }
    }

    /// Each engine that handed over, with why, in order.
    pub fn fallbacks(&self) -> impl Iterator<Item = Fallback> + '_ {
        self.runs.iter().filter_map(|r| {
            Some(Fallback {
                engine: r.engine,
                reason: r.fell_back.clone()?,
            })
        })
    }

    /// Every engine that ran, with why each fell back, for logs.
    pub fn describe(&self) -> String {
        self.runs
            .iter()
            .map(|r| match &r.fell_back {
                Some(why) => format!("{} ({why})", r.engine),
                None => r.engine.to_string(),
            })
            .collect::<Vec<_>>()
            .join(" → ")
    }
}

/// Engines switched off, to test fallbacks: each named engine reports
/// "unsupported" at once, or after a number of bytes, and the plan's next engine
/// takes over. A value the caller builds and passes ([`Transfer::with_forced`],
/// [`CopyOptions::forced`](crate::CopyOptions::forced)); nothing reads it from the
/// environment unless the caller asks with [`Forced::from_env`].
///
/// ```
/// use zcopy::{EngineKind, Forced};
///
/// let forced = Forced::new()
///     .disable(EngineKind::Sendfile)
///     .disable_after(EngineKind::Splice, 65536);
/// assert_eq!(forced.limit(EngineKind::Sendfile), Some(0));
/// assert_eq!(forced.limit(EngineKind::Splice), Some(65536));
/// assert_eq!(forced.limit(EngineKind::ReadWrite), None);
/// // The same, in the `ZCOPY_DISABLE` syntax:
/// assert_eq!(Forced::parse("sendfile,splice@65536"), forced);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Forced {
    after: HashMap<EngineKind, u64>,
    switches: Vec<String>,
}

impl Forced {
    /// Nothing forced off.
    pub fn new() -> Forced {
        Forced::default()
    }

    /// `kind` reports "unsupported" before its first byte.
    pub fn disable(self, kind: EngineKind) -> Forced {
        self.disable_after(kind, 0)
    }

    /// `kind` reports "unsupported" once it has moved `bytes` bytes.
    pub fn disable_after(mut self, kind: EngineKind, bytes: u64) -> Forced {
        self.after.insert(kind, bytes);
        self
    }

    /// Reads the `ZCOPY_DISABLE` environment variable ([`Forced::parse`]); nothing
    /// forced when it is unset. The one place the library reads it, and only when
    /// called: the `zcopy` command line and server call it at start.
    pub fn from_env() -> Forced {
        std::env::var("ZCOPY_DISABLE")
            .map(|v| Forced::parse(&v))
            .unwrap_or_default()
    }

    /// Parses the `ZCOPY_DISABLE` syntax: comma-separated engine names
    /// ([`EngineKind::name`]), each optionally `@<bytes>`. Names that are not
    /// engines are kept as switches for the caller's own features
    /// ([`Forced::switched_off`]).
    pub fn parse(spec: &str) -> Forced {
        let mut forced = Forced::new();
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (name, n) = match item.split_once('@') {
                Some((name, n)) => (name, n.parse().unwrap_or(0)),
                None => (item, 0),
            };
            match name.parse::<EngineKind>() {
                Ok(k) => forced = forced.disable_after(k, n),
                Err(_) => forced.switches.push(item.to_string()),
            }
        }
        forced
    }

    /// After how many bytes `kind` is forced to fail, if it is.
    pub fn limit(&self, kind: EngineKind) -> Option<u64> {
        self.after.get(&kind).copied()
    }

    /// Whether the spec named `switch`, a name that is not an engine (the server's
    /// `inotify`, for one): for callers' own features.
    pub fn switched_off(&self, switch: &str) -> bool {
        self.switches.iter().any(|s| s == switch)
    }

    /// The names given that are not engines, to warn about the ones the caller
    /// doesn't know.
    pub fn switches(&self) -> &[String] {
        &self.switches
    }
}

/// A transfer in progress: the plan, the engine running now, and the report so far.
#[derive(Debug)]
pub struct Transfer {
    plan: Vec<EngineKind>,
    next: usize,
    engine: Option<Box<dyn Engine>>,
    forced: Forced,
    report: Report,
    caller_leases: bool,
    /// A step failed with an I/O error (not "the sink is full"): the sink is gone
    /// or broken, and what the engine holds of it must not reach another.
    failed: bool,
}

impl Transfer {
    /// A transfer that tries the plan's engines in order, none forced off.
    pub fn new(plan: Plan) -> Transfer {
        Transfer::with_forced(plan, Forced::default())
    }

    /// Like [`Transfer::new`] with an explicit set of forced failures.
    pub fn with_forced(plan: Plan, forced: Forced) -> Transfer {
        Transfer {
            plan: plan.engines,
            next: 0,
            engine: None,
            forced,
            report: Report::default(),
            caller_leases: false,
            failed: false,
        }
    }

    /// Tells [`Transfer::run`] that the caller holds the source's read lease (and
    /// keeps it past the run, e.g. until the peer has consumed the bytes): `run`
    /// then takes none of its own — dropping one would release the caller's, since
    /// leases belong to the open file — but still stops when it breaks.
    pub fn caller_holds_lease(&mut self, yes: bool) {
        self.caller_leases = yes;
    }

    /// Uses `engine` (already configured) as the first engine, before the plan's.
    pub fn start_with(&mut self, engine: Box<dyn Engine>) {
        let kind = engine.kind();
        self.plan.retain(|&k| k != kind);
        self.report.runs.push(EngineRun {
            engine: kind,
            stats: Stats::default(),
            fell_back: None,
        });
        self.engine = Some(engine);
    }

    /// The report so far.
    pub fn report(&self) -> &Report {
        &self.report
    }

    /// Ends the work on the current source: the engine drops what it kept of it (a
    /// mapping pins the open file, and with it a read lease), ready for the next.
    pub fn release(&mut self) {
        if let Some(e) = self.engine.as_mut() {
            e.release();
        }
    }

    /// Whether this transfer may serve another body (to another sink): no step
    /// failed mid-body, and the engine holds no byte of the last sink and is owed
    /// nothing by the kernel ([`Engine::reusable`]). A pool must drop a transfer that
    /// is not: bytes left in its pipe or buffer would go to the next sink first.
    pub fn reusable(&self) -> bool {
        !self.failed && self.engine.as_ref().is_none_or(|e| e.reusable())
    }

    /// The engine running now (after any fallbacks so far).
    pub fn current(&self) -> Option<EngineKind> {
        self.engine.as_ref().map(|e| e.kind())
    }

    fn advance(&mut self, why: Option<FallbackReason>) -> Result<(), TransferError> {
        if let Some(why) = why {
            let run = self.report.runs.last_mut().expect("an engine ran");
            tracing::debug!(engine = %run.engine, "falling back: {why}");
            run.fell_back = Some(why);
        }
        let Some(&kind) = self.plan.get(self.next) else {
            self.failed = true;
            return Err(TransferError::NoEngine {
                tried: self.report.fallbacks().collect(),
            });
        };
        self.next += 1;
        self.engine = Some(kind.create());
        self.report.runs.push(EngineRun {
            engine: kind,
            stats: Stats::default(),
            fell_back: None,
        });
        Ok(())
    }

    /// Moves at most `max` bytes; `Ok(0)` at the end of the source. Falls back as
    /// often as needed. `Err` with [`io::ErrorKind::WouldBlock`] means the
    /// non-blocking sink is full and nothing moved.
    ///
    /// A non-blocking socket sink, driven until the source ends:
    ///
    /// ```
    /// use std::io::{Read, Write};
    /// use std::net::{TcpListener, TcpStream};
    /// use std::os::fd::AsFd;
    /// use zcopy::{FdKind, Plan, Preference, Src, Transfer};
    ///
    /// let mut file = tempfile::tempfile()?;
    /// file.write_all(&[1u8; 300_000])?;
    /// let listener = TcpListener::bind("127.0.0.1:0")?;
    /// let mut client = TcpStream::connect(listener.local_addr()?)?;
    /// let (sink, _) = listener.accept()?;
    /// sink.set_nonblocking(true)?;
    /// let reader = std::thread::spawn(move || {
    ///     let mut got = Vec::new();
    ///     client.read_to_end(&mut got).map(|_| got.len())
    /// });
    ///
    /// let plan = Plan::new(Some(FdKind::of(&file)?), FdKind::TcpSocket, Preference::Auto);
    /// let mut t = Transfer::new(plan);
    /// let mut sent = 0u64;
    /// loop {
    ///     let src = Src::Fd { fd: file.as_fd(), offset: Some(sent) };
    ///     match t.step(src, sink.as_fd(), 1 << 20) {
    ///         Ok(0) => break,
    ///         Ok(n) => sent += n as u64,
    ///         // The socket is full: a real program waits for writability (poll,
    ///         // epoll, an async runtime); this one just yields.
    ///         Err(e) if e.io_kind() == Some(std::io::ErrorKind::WouldBlock) => {
    ///             std::thread::yield_now()
    ///         }
    ///         Err(e) => return Err(e.into()),
    ///     }
    /// }
    /// drop(sink);
    /// assert_eq!(reader.join().unwrap()?, 300_000);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn step(
        &mut self,
        src: Src<'_>,
        sink: BorrowedFd<'_>,
        max: usize,
    ) -> Result<usize, TransferError> {
        loop {
            if self.engine.is_none() {
                self.advance(None)?;
            }
            let engine = self.engine.as_mut().expect("engine set");
            let kind = engine.kind();
            let run = self.report.runs.last_mut().expect("run recorded");
            let moved = run.stats.bytes;
            let result = match self.forced.limit(kind) {
                Some(limit) if moved >= limit => {
                    if engine.pending() == 0 {
                        self.engine = None;
                        self.advance(Some(FallbackReason::Forced { after: moved }))?;
                        continue;
                    }
                    Err(unsupported(format!("forced off after {limit} bytes")))
                }
                Some(limit) => {
                    engine.step(src, sink, max.min((limit - moved) as usize), &mut run.stats)
                }
                None => engine.step(src, sink, max, &mut run.stats),
            };
            match result {
                Ok(n) => {
                    self.report.bytes += n as u64;
                    return Ok(n);
                }
                Err(e) if engine.pending() == 0 && is_unsupported(&e, moved) => {
                    self.engine = None;
                    self.advance(Some(FallbackReason::Unsupported(e.into())))?;
                }
                Err(source) => {
                    if source.kind() != io::ErrorKind::WouldBlock {
                        self.failed = true;
                    }
                    return Err(TransferError::Io {
                        engine: kind,
                        source,
                    });
                }
            }
        }
    }

    /// Moves `len` bytes (or, with `None`, everything to the end of the source) from
    /// `src` starting at `offset` (files) to a blocking `sink`, calling `progress`
    /// with the running total. A file source is protected by a read lease where the
    /// kernel grants one: if another process starts writing or truncating it, the
    /// transfer stops with [`TransferError::SourceModified`] after the bytes that
    /// were still the original.
    ///
    /// ```
    /// use std::io::{Read, Seek, Write};
    /// use std::os::fd::AsFd;
    /// use zcopy::{EngineKind, Forced, Plan, Transfer};
    ///
    /// let mut src = tempfile::tempfile()?;
    /// src.write_all(b"0123456789")?;
    /// let mut dst = tempfile::tempfile()?;
    /// // splice, forced off after 4 bytes (to see a fallback), then read-write.
    /// let plan = Plan::only(&[EngineKind::Splice, EngineKind::ReadWrite]);
    /// let forced = Forced::new().disable_after(EngineKind::Splice, 4);
    /// let mut t = Transfer::with_forced(plan, forced);
    /// let report = t.run(src.as_fd(), Some(1), dst.as_fd(), Some(8), &mut |done| {
    ///     eprintln!("{done} bytes");
    /// })?;
    /// assert_eq!(report.bytes, 8);
    /// assert_eq!(report.engine(), Some(EngineKind::ReadWrite));
    /// assert_eq!(report.describe(), "splice (forced off after 4 bytes) → read-write");
    /// let mut got = String::new();
    /// dst.rewind()?;
    /// dst.read_to_string(&mut got)?;
    /// assert_eq!(got, "12345678");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn run(
        &mut self,
        src: BorrowedFd<'_>,
        offset: Option<u64>,
        sink: BorrowedFd<'_>,
        len: Option<u64>,
        progress: &mut dyn FnMut(u64),
    ) -> Result<&Report, TransferError> {
        let started = Instant::now();
        let usage0 = Usage::process();
        let is_file = matches!(FdKind::of(src), Ok(FdKind::File { .. }));
        let lease = if is_file && !self.caller_leases {
            ReadLease::take(&src)
                .map_err(|e| tracing::debug!("no read lease on the source: {e}"))
                .ok()
        } else {
            None
        };
        let mut done: u64 = 0;
        let result = loop {
            let want = match len {
                Some(len) if done >= len => break Ok(()),
                Some(len) => (len - done).min(DEFAULT_CHUNK as u64) as usize,
                None => DEFAULT_CHUNK,
            };
            let breaking = match &lease {
                Some(l) => l.breaking(),
                None => self.caller_leases && crate::sys::lease::breaking(&src),
            };
            if breaking {
                wait_for_send_queue(sink, Duration::from_secs(5));
                break Err(TransferError::SourceModified { sent: done });
            }
            let src_now = Src::Fd {
                fd: src,
                offset: offset.map(|o| o + done),
            };
            match self.step(src_now, sink, want) {
                Ok(0) => match len {
                    Some(expected) => {
                        break Err(TransferError::SourceShrank {
                            expected,
                            got: done,
                        });
                    }
                    None => break Ok(()),
                },
                Ok(n) => {
                    done += n as u64;
                    progress(done);
                }
                Err(e) => break Err(e),
            }
        };
        drop(lease);
        self.report.usage = Usage::process().since(&usage0);
        self.report.elapsed = started.elapsed();
        result.map(|()| &self.report)
    }
}

/// Waits (bounded) until a socket's send queue is empty, so pages the kernel still
/// references are on the wire before the file may change. Not a socket: no wait.
pub fn wait_for_send_queue(sink: BorrowedFd<'_>, limit: Duration) {
    let deadline = Instant::now() + limit;
    while let Ok(n) = crate::sys::sock::send_queue_len(sink) {
        if n == 0 || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}
