//! zcopy-bench: measures every zcopy engine on this machine.
//!
//! [`scenario`] sets up the fds of each scenario (file → TCP, file → file, file →
//! pipe, TCP → file) with a peer thread where there is one; [`runner`] does the
//! warm-up, the interleaved timed runs and thread rusage; [`stats`] summarises runs
//! (median, min–max, MAD); [`report`] holds the figures; [`export`] renders them as
//! Markdown, JSON or SVG charts; [`calibrate`] turns them into a [`Profile`].
//! [`eventloop`] measures `zcopy serve`'s two event loops for the profile's `io` lines.
//! [`hload`] is a cheap HTTP/1.1 load client for the scripts in bench/ (the `hload` binary).
#![forbid(unsafe_code)]

use std::path::Path;
use std::time::Duration;

use zcopy::profile::{Entry, Profile};
use zcopy::{EngineKind, TransferError};

pub mod eventloop;
pub mod export;
pub mod hload;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod stats;

pub use report::{BenchResult, Figures, ScenarioResult};
pub use scenario::{Row, Scenario};

/// Why a bench failed.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A setup or bookkeeping I/O error.
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
    /// A transfer failed (the row name or the peer's role, and the error).
    #[error("{0}: {1}")]
    Transfer(&'static str, #[source] TransferError),
    /// Bytes received differ from bytes sent: the bench refuses to report a number.
    #[error("{what}: expected {expected} bytes, got {got}")]
    Mismatch {
        /// What was compared.
        what: String,
        /// Bytes that should have arrived.
        expected: u64,
        /// Bytes that did.
        got: u64,
    },
    /// Bad settings.
    #[error("{0}")]
    Config(String),
    /// An error in a given scenario, size and row.
    #[error("{scenario} {size} {row}: {source}")]
    In {
        /// Scenario name.
        scenario: &'static str,
        /// Size, formatted.
        size: String,
        /// Row name.
        row: &'static str,
        /// The error.
        #[source]
        source: Box<BenchError>,
    },
}

impl BenchError {
    fn context(self, scenario: Scenario, row: Row, size: u64) -> BenchError {
        BenchError::In {
            scenario: scenario.name(),
            size: fmt_size(size),
            row: row.name(),
            source: Box::new(self),
        }
    }
}

/// What to measure and how.
#[derive(Clone, Debug)]
pub struct Config {
    /// Transfer sizes in bytes.
    pub sizes: Vec<u64>,
    /// Scenarios to run.
    pub scenarios: Vec<Scenario>,
    /// Only these engines (plus `auto`); `None` for every engine of each scenario.
    pub engines: Option<Vec<EngineKind>>,
    /// Timed runs per row.
    pub runs: usize,
    /// At most this many timed runs for sizes from 256 MiB up.
    pub large_runs: usize,
    /// Warm-up run(s) before the timed ones (they also size the runs).
    pub warmup: bool,
    /// Small sizes repeat the transfer within a run until it lasts this long.
    pub min_run_time: Duration,
    /// Drop the sources from the page cache before each run (root only).
    pub cold: bool,
    /// Where to put source and destination files (default: the temp dir).
    pub dir: Option<std::path::PathBuf>,
}

/// The default size sweep.
pub const DEFAULT_SIZES: [u64; 6] = [4 << 10, 64 << 10, 1 << 20, 16 << 20, 256 << 20, 1 << 30];
/// The `--quick` size sweep.
pub const QUICK_SIZES: [u64; 4] = [4 << 10, 1 << 20, 16 << 20, 64 << 20];

impl Config {
    /// The full default bench: every scenario, the default sweep, 5 runs.
    pub fn full() -> Config {
        Config {
            sizes: DEFAULT_SIZES.to_vec(),
            scenarios: Scenario::ALL.to_vec(),
            engines: None,
            runs: 5,
            large_runs: 3,
            warmup: true,
            min_run_time: Duration::from_millis(50),
            cold: false,
            dir: None,
        }
    }

    /// The `--quick` bench: a small sweep, 3 runs, shorter runs.
    pub fn quick() -> Config {
        Config {
            sizes: QUICK_SIZES.to_vec(),
            runs: 3,
            min_run_time: Duration::from_millis(20),
            ..Config::full()
        }
    }
}

/// Runs the bench; see [`runner::run`].
pub fn run(config: &Config, progress: &mut dyn FnMut(&str)) -> Result<BenchResult, BenchError> {
    runner::run(config, progress)
}

/// Parses a size such as `4096`, `4K`, `64k`, `1M`, `1G` (binary multiples).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m = match c.to_ascii_uppercase() {
                'K' => 1u64 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                _ => return Err(format!("bad size '{s}' (use e.g. 4K, 1M, 1G)")),
            };
            (&s[..i], m)
        }
        _ => (s, 1),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("bad size '{s}' (use e.g. 4K, 1M, 1G)"))?;
    match n.checked_mul(mult) {
        Some(0) | None => Err(format!("bad size '{s}'")),
        Some(v) => Ok(v),
    }
}

/// Formats a size the way [`parse_size`] reads it when exact (`4K`, `1M`), else bytes.
pub fn fmt_size(n: u64) -> String {
    for (unit, shift) in [("G", 30), ("M", 20), ("K", 10)] {
        if n >= 1 << shift && n.is_multiple_of(1 << shift) {
            return format!("{}{unit}", n >> shift);
        }
    }
    n.to_string()
}

/// The throughput calibration ranks by: halfway between the median and the worst run,
/// so an engine that is fast only some of the time (io_uring over loopback swings
/// between two speeds depending on where its io-wq worker runs) does not win a size
/// class on a lucky median.
fn dependable(f: &Figures) -> f64 {
    (f.throughput.median + f.throughput.min) / 2.0
}

/// How much better `a` is than `b` for calibration: dependable throughput first;
/// within 3 % of each other, the lower CPU/GB wins.
fn better(a: &Figures, b: &Figures) -> bool {
    let (ta, tb) = (dependable(a), dependable(b));
    if ta >= tb * 0.97 && tb >= ta * 0.97 {
        a.engine_cpu.total.median < b.engine_cpu.total.median
    } else {
        ta > tb
    }
}

/// The engines of `figures` (not `auto`), best first.
pub fn rank(figures: &[&Figures]) -> Vec<EngineKind> {
    let mut v: Vec<&Figures> = figures
        .iter()
        .copied()
        .filter(|f| f.row.parse::<EngineKind>().is_ok())
        .collect();
    v.sort_by(|a, b| dependable(b).total_cmp(&dependable(a)));
    // Adjacent near-ties: the cheaper one first.
    for i in 1..v.len() {
        let mut j = i;
        while j > 0 && better(v[j], v[j - 1]) {
            v.swap(j, j - 1);
            j -= 1;
        }
    }
    v.iter().filter_map(|f| f.row.parse().ok()).collect()
}

/// A profile from a bench: per scenario and size class (≤ each measured size; the
/// largest size stands for any length), the engines best first. File → TCP lines
/// are kept apart per path (`tcp@lo`, `tcp@veth`), plus plain `tcp` lines.
pub fn calibrate(result: &BenchResult) -> Profile {
    let mut p = Profile::new();
    let measured = |s: Scenario| {
        result
            .scenarios
            .iter()
            .any(|sr| sr.scenario == s && !sr.figures.is_empty())
    };
    // Plain `tcp` lines (peers behind a NIC, and readers that know no paths) follow
    // the veth measurement when there is one: it crosses the whole TCP stack, as a
    // NIC path does; else loopback's, as before paths existed.
    let plain_tcp_from = if measured(Scenario::FileTcpVeth) {
        Scenario::FileTcpVeth
    } else {
        Scenario::FileTcp
    };
    for sr in &result.scenarios {
        let scn = sr.scenario;
        let src = zcopy::profile::src_name(Some(scn.src_kind(0)));
        let mut sinks = vec![scn.profile_sink()];
        if scn == plain_tcp_from {
            sinks.push(scn.sink_kind().name().to_string());
        }
        let last = sr.sizes.last().copied();
        for &size in &sr.sizes {
            let figs: Vec<&Figures> = sr.figures.iter().filter(|f| f.size == size).collect();
            let engines = rank(&figs);
            if engines.is_empty() {
                continue;
            }
            for sink in &sinks {
                p.insert(Entry {
                    src: src.to_string(),
                    sink: sink.clone(),
                    max_len: (Some(size) != last).then_some(size),
                    engines: engines.clone(),
                });
            }
        }
    }
    p
}

fn uname() -> String {
    let u = rustix::system::uname();
    format!(
        "{} {}",
        u.sysname().to_string_lossy(),
        u.release().to_string_lossy()
    )
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_default()
}

fn fs_name(dir: &Path) -> String {
    let Ok(st) = rustix::fs::statfs(dir) else {
        return "?".into();
    };
    match st.f_type as u64 {
        0xEF53 => "ext4".into(),
        0x0102_1994 => "tmpfs".into(),
        0x9123_683E => "btrfs".into(),
        0x5846_5342 => "xfs".into(),
        0x794C_7630 => "overlayfs".into(),
        0x2FC1_2FC1 => "zfs".into(),
        0xF2F5_2010 => "f2fs".into(),
        t => format!("0x{t:x}"),
    }
}

/// UTC date and time, ISO 8601, from the system clock.
fn now_utc() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn meta(config: &Config, dir: &Path) -> report::Meta {
    report::Meta {
        kernel: uname(),
        cpu: cpu_model(),
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        filesystem: fs_name(dir),
        date: now_utc(),
        cache: if config.cold { "cold" } else { "warm" }.into(),
        runs: config.runs,
        warmup: config.warmup,
        min_run_ms: config.min_run_time.as_millis() as u64,
        version: env!("CARGO_PKG_VERSION").into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_format() {
        assert_eq!(parse_size("4K"), Ok(4096));
        assert_eq!(parse_size("64k"), Ok(65536));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert!(parse_size("1X").is_err());
        assert!(parse_size("0").is_err());
        assert!(parse_size("").is_err());
        for s in DEFAULT_SIZES {
            assert_eq!(parse_size(&fmt_size(s)), Ok(s));
        }
        assert_eq!(fmt_size(1000), "1000");
    }

    #[test]
    fn date_looks_like_iso() {
        let d = now_utc();
        assert_eq!(d.len(), 20, "{d}");
        assert!(d.starts_with("20") && d.ends_with('Z'), "{d}");
    }
}
