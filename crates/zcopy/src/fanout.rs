//! One source to many sinks — what `tee(1)` does — without user-space copies when
//! the source is a pipe: tee(2) duplicates its pages into a pipe per extra output,
//! splice moves them on. Anything else falls back to read + write, and says so.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use crate::engine::ReadWrite;
use crate::engine::Tee;
use crate::engine::{Engine, EngineKind, Src};
use crate::fdkind::FdKind;
use crate::plan::{Plan, Preference};
use crate::stats::Stats;
use crate::transfer::{Forced, Transfer, TransferError};

/// Bytes handed to tee(2) per round: what every intermediate pipe can hold.
const ROUND: usize = 1 << 20;

/// What a fan-out did.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct FanoutReport {
    /// Bytes taken from the source (each output received exactly these).
    pub bytes: u64,
    /// The main engine: `tee` (zero-copy) or `read-write`.
    pub engine: Option<EngineKind>,
    /// Why the zero-copy path was not taken, when it was not.
    pub fallback_reason: Option<TeeFallback>,
    /// Counters of the main engine.
    pub stats: Stats,
    /// Engines that carried each extra output (same order as the outputs).
    pub outputs: Vec<String>,
    /// Extra outputs that failed (index in `outputs`, and why): each was dropped
    /// where it failed and the source, the sink and the other outputs went on.
    pub failed: Vec<(usize, io::Error)>,
}

/// Why a fan-out copied through user space instead of tee(2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TeeFallback {
    /// `tee` is forced off ([`Forced`]).
    Forced,
    /// The source is not a pipe (tee(2) reads only pipes): what it is.
    SourceNotPipe(FdKind),
    /// The main output is something splice(2) can't write: what it is.
    SinkNotSpliceable(FdKind),
}

impl std::fmt::Display for TeeFallback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TeeFallback::Forced => f.write_str("tee forced off"),
            TeeFallback::SourceNotPipe(k) => write!(f, "the source is a {}, not a pipe", k.name()),
            TeeFallback::SinkNotSpliceable(k) => {
                write!(
                    f,
                    "the main output is a {}, which splice can't write",
                    k.name()
                )
            }
        }
    }
}

fn splice_friendly(kind: FdKind) -> bool {
    matches!(
        kind,
        FdKind::Pipe
            | FdKind::File { .. }
            | FdKind::TcpSocket
            | FdKind::UnixSocket
            | FdKind::CharDevice
    )
}

/// Copies everything from `src` to `sink` and to each of `outputs`, until the source
/// ends. An output that fails is dropped and named in [`FanoutReport::failed`]; the
/// others go on (as tee(1) does). Only a failing source or sink is an error.
///
/// From a pipe, tee(2) duplicates the bytes into each output without copying them;
/// otherwise, or with `tee` disabled in `forced`, they go through one user-space
/// buffer ([`FanoutReport::fallback_reason`] says why).
///
/// ```
/// use std::io::{Read, Write};
/// use std::os::fd::AsFd;
///
/// let (src, mut feed) = std::io::pipe()?;
/// let (mut main, main_w) = std::io::pipe()?;
/// let (mut copy, copy_w) = std::io::pipe()?;
/// feed.write_all(b"one source, two outputs")?;
/// drop(feed);
/// let report = zcopy::fanout::fanout(
///     src.as_fd(),
///     main_w.as_fd(),
///     &[copy_w.as_fd()],
///     &zcopy::Forced::new(),
/// )?;
/// drop((main_w, copy_w));
/// assert_eq!(report.bytes, 23);
/// let (mut a, mut b) = (String::new(), String::new());
/// main.read_to_string(&mut a)?;
/// copy.read_to_string(&mut b)?;
/// assert_eq!((a.as_str(), b.as_str()), ("one source, two outputs", "one source, two outputs"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn fanout(
    src: BorrowedFd<'_>,
    sink: BorrowedFd<'_>,
    outputs: &[BorrowedFd<'_>],
    forced: &Forced,
) -> Result<FanoutReport, TransferError> {
    let io_err = |source| TransferError::Io {
        engine: EngineKind::Tee,
        source,
    };
    let (src_kind, sink_kind) = (
        FdKind::of(src).map_err(io_err)?,
        FdKind::of(sink).map_err(io_err)?,
    );
    let why_not = if forced.limit(EngineKind::Tee).is_some() {
        Some(TeeFallback::Forced)
    } else if src_kind != FdKind::Pipe {
        Some(TeeFallback::SourceNotPipe(src_kind))
    } else if !splice_friendly(sink_kind) {
        Some(TeeFallback::SinkNotSpliceable(sink_kind))
    } else {
        None
    };
    match why_not {
        None => fanout_tee(src, sink, outputs, forced),
        Some(why) => {
            tracing::debug!("tee: copying through user space: {why}");
            let mut report = fanout_copy(src, sink, outputs)?;
            report.fallback_reason = Some(why);
            Ok(report)
        }
    }
}

/// An extra output that is not a pipe: tee(2) fills an intermediate pipe, which a
/// transfer (splice, with fallback) drains into the output. Pipe outputs need no leg:
/// tee writes into them directly.
struct Leg<'a> {
    /// Index in the outputs.
    index: usize,
    out: BorrowedFd<'a>,
    reader: OwnedFd,
    transfer: Transfer,
    /// Its output failed: it gets no more bytes.
    failed: bool,
}

fn fanout_tee(
    src: BorrowedFd<'_>,
    sink: BorrowedFd<'_>,
    outputs: &[BorrowedFd<'_>],
    forced: &Forced,
) -> Result<FanoutReport, TransferError> {
    let io_err = |source| TransferError::Io {
        engine: EngineKind::Tee,
        source,
    };
    let mut copies = Vec::new();
    let mut legs = Vec::new();
    let mut outputs_desc = Vec::new();
    let mut round = ROUND;
    for (index, &out) in outputs.iter().enumerate() {
        let kind = FdKind::of(out).map_err(io_err)?;
        if kind == FdKind::Pipe {
            copies.push(out.try_clone_to_owned().map_err(io_err)?);
            outputs_desc.push(None);
            round = round.min(rustix::pipe::fcntl_getpipe_size(out).unwrap_or(65536));
        } else {
            let (r, w, size) = crate::pipe::sized(ROUND).map_err(io_err)?;
            round = round.min(size);
            copies.push(w);
            let plan = Plan::new(Some(FdKind::Pipe), kind, Preference::Auto);
            outputs_desc.push(Some(legs.len()));
            legs.push(Leg {
                index,
                out,
                reader: r,
                transfer: Transfer::with_forced(plan, forced.clone()),
                failed: false,
            });
        }
    }
    round = round.min(rustix::pipe::fcntl_getpipe_size(src).unwrap_or(65536));
    let mut tee = Tee::new(copies);
    let mut report = FanoutReport {
        engine: Some(EngineKind::Tee),
        ..FanoutReport::default()
    };
    loop {
        let n = tee
            .step(
                Src::Fd {
                    fd: src,
                    offset: None,
                },
                sink,
                round,
                &mut report.stats,
            )
            .map_err(io_err)?;
        if n == 0 {
            break;
        }
        report.bytes += n as u64;
        report.failed.extend(tee.take_failed());
        for leg in legs.iter_mut() {
            if leg.failed {
                continue;
            }
            if report.failed.iter().any(|(i, _)| *i == leg.index) {
                leg.failed = true;
                continue;
            }
            let mut left = n;
            while left > 0 {
                let src = Src::Fd {
                    fd: leg.reader.as_fd(),
                    offset: None,
                };
                let error = match leg.transfer.step(src, leg.out, left) {
                    Ok(0) => io::ErrorKind::UnexpectedEof.into(),
                    Ok(m) => {
                        left -= m;
                        continue;
                    }
                    Err(TransferError::Io { source, .. }) => source,
                    Err(e) => io::Error::other(e.to_string()),
                };
                // This output is done for; the source, the sink and the others go on.
                tee.drop_copy(leg.index);
                leg.failed = true;
                report.failed.push((leg.index, error));
                break;
            }
        }
    }
    report.failed.extend(tee.take_failed());
    report.failed.sort_by_key(|(i, _)| *i);
    report.outputs = outputs_desc
        .iter()
        .map(|leg| match leg {
            None => "tee".to_string(),
            Some(i) => legs[*i].transfer.report().describe(),
        })
        .collect();
    Ok(report)
}

fn fanout_copy(
    src: BorrowedFd<'_>,
    sink: BorrowedFd<'_>,
    outputs: &[BorrowedFd<'_>],
) -> Result<FanoutReport, TransferError> {
    let io_err = |source| TransferError::Io {
        engine: EngineKind::ReadWrite,
        source,
    };
    let mut buf = vec![0u8; 128 * 1024];
    let mut report = FanoutReport {
        engine: Some(EngineKind::ReadWrite),
        ..FanoutReport::default()
    };
    let mut writer = ReadWrite::new(1);
    loop {
        report.stats.syscalls += 1;
        let n = match rustix::io::read(src, &mut buf) {
            Ok(n) => n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(io_err(e.into())),
        };
        if n == 0 {
            break;
        }
        let mut at = 0;
        while at < n {
            at += writer
                .step(Src::Mem(&buf[at..n]), sink, n - at, &mut report.stats)
                .map_err(io_err)?;
        }
        for (i, &out) in outputs.iter().enumerate() {
            if report.failed.iter().any(|(f, _)| *f == i) {
                continue;
            }
            let mut at = 0;
            while at < n {
                match writer.step(Src::Mem(&buf[at..n]), out, n - at, &mut report.stats) {
                    Ok(m) => at += m,
                    Err(e) => {
                        report.failed.push((i, e));
                        break;
                    }
                }
            }
        }
        report.bytes += n as u64;
    }
    report.stats.bytes = report.bytes;
    report.outputs = vec!["read-write".to_string(); outputs.len()];
    Ok(report)
}
