//! The figures: what the bench reports per (scenario, size, engine), derived from the
//! runs' raw measurements.

use zcopy::{EngineKind, Usage};

use crate::scenario::{Measured, Row, Scenario};
use crate::stats::Summary;

/// Bytes in a GB (decimal, as in GB/s).
pub const GB: f64 = 1e9;

/// CPU seconds per GB of one thread, user and system separately.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CpuPerGb {
    /// User-mode CPU seconds per GB.
    pub user: Summary,
    /// Kernel-mode CPU seconds per GB.
    pub system: Summary,
    /// User + system CPU seconds per GB.
    pub total: Summary,
    /// Voluntary context switches per GB.
    pub voluntary_switches: Summary,
    /// Involuntary context switches per GB.
    pub involuntary_switches: Summary,
    /// Page faults (minor + major) per GB.
    pub faults: Summary,
}

impl CpuPerGb {
    fn of(runs: &[(Usage, u64)]) -> CpuPerGb {
        let per_gb = |f: &dyn Fn(&Usage) -> f64| {
            let v: Vec<f64> = runs
                .iter()
                .map(|(u, bytes)| f(u) / (*bytes as f64 / GB))
                .collect();
            Summary::of(&v)
        };
        CpuPerGb {
            user: per_gb(&|u| u.user.as_secs_f64()),
            system: per_gb(&|u| u.system.as_secs_f64()),
            total: per_gb(&|u| u.cpu().as_secs_f64()),
            voluntary_switches: per_gb(&|u| u.voluntary_switches as f64),
            involuntary_switches: per_gb(&|u| u.involuntary_switches as f64),
            faults: per_gb(&|u| (u.minor_faults + u.major_faults) as f64),
        }
    }
}

/// One engine (or `auto`) at one size in one scenario.
#[derive(Clone, Debug, PartialEq)]
pub struct Figures {
    /// Row name: an engine name or `auto`.
    pub row: String,
    /// The engine(s) that really ran, e.g. `sendfile` (for `auto`, what it chose).
    pub ran: String,
    /// Bytes per transfer.
    pub size: u64,
    /// Timed runs.
    pub runs: usize,
    /// Transfers per run (small sizes repeat so that a run lasts long enough).
    pub iters: u64,
    /// Throughput in GB/s.
    pub throughput: Summary,
    /// Wall time of one transfer, in seconds.
    pub seconds_per_transfer: Summary,
    /// The engine's side: the process minus the peer thread (includes kernel
    /// workers such as io_uring's io-wq threads).
    pub engine_cpu: CpuPerGb,
    /// CPU seconds per GB (user + system) of the engine's own thread only.
    pub engine_thread_cpu: Summary,
    /// The peer's thread (receiver or sender), when the scenario has one.
    pub peer_cpu: Option<CpuPerGb>,
    /// Syscalls per GB the engine reported.
    pub syscalls: Summary,
    /// The seeds' CPU copies (theory), for engine rows.
    pub seed_copies: &'static str,
    /// The seeds' user/kernel switches (theory), for engine rows.
    pub seed_switches: &'static str,
    /// Median throughput ÷ read-write's median throughput, same scenario and size.
    pub throughput_vs_rw: Option<f64>,
    /// Median engine-side CPU/GB ÷ read-write's, same scenario and size.
    pub cpu_vs_rw: Option<f64>,
}

impl Figures {
    /// Derives the figures from the runs of one row.
    pub fn from_runs(row: Row, size: u64, runs: &[Measured]) -> Figures {
        let thr: Vec<f64> = runs
            .iter()
            .map(|m| m.bytes as f64 / m.elapsed.as_secs_f64().max(1e-9) / GB)
            .collect();
        let per: Vec<f64> = runs
            .iter()
            .map(|m| m.elapsed.as_secs_f64() / m.iters.max(1) as f64)
            .collect();
        let sys: Vec<f64> = runs
            .iter()
            .map(|m| m.syscalls as f64 / (m.bytes as f64 / GB))
            .collect();
        let engine: Vec<(Usage, u64)> = runs.iter().map(|m| (m.engine, m.bytes)).collect();
        let peer: Vec<(Usage, u64)> = runs
            .iter()
            .filter_map(|m| m.peer.map(|p| (p, m.bytes)))
            .collect();
        let (seed_copies, seed_switches) = match row {
            Row::Engine(k) => (k.info().cpu_copies, k.info().switches),
            Row::Auto => ("", ""),
        };
        let mut ran: Vec<&str> = runs.iter().map(|m| m.ran.as_str()).collect();
        ran.dedup();
        Figures {
            row: row.name().to_string(),
            ran: ran.join(" / "),
            size,
            runs: runs.len(),
            iters: runs.first().map_or(0, |m| m.iters),
            throughput: Summary::of(&thr),
            seconds_per_transfer: Summary::of(&per),
            engine_cpu: CpuPerGb::of(&engine),
            engine_thread_cpu: Summary::of(
                &runs
                    .iter()
                    .map(|m| m.engine_thread.cpu().as_secs_f64() / (m.bytes as f64 / GB))
                    .collect::<Vec<_>>(),
            ),
            peer_cpu: (!peer.is_empty()).then(|| CpuPerGb::of(&peer)),
            syscalls: Summary::of(&sys),
            seed_copies,
            seed_switches,
            throughput_vs_rw: None,
            cpu_vs_rw: None,
        }
    }
}

/// A row that could not run here, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    /// Row name.
    pub row: String,
    /// Size, or 0 for every size.
    pub size: u64,
    /// Why.
    pub why: String,
}

/// Everything measured for one scenario.
#[derive(Clone, Debug)]
pub struct ScenarioResult {
    /// The scenario.
    pub scenario: Scenario,
    /// Sizes measured, ascending.
    pub sizes: Vec<u64>,
    /// Figures, by size then row.
    pub figures: Vec<Figures>,
    /// Rows that could not run.
    pub skipped: Vec<Skipped>,
}

impl ScenarioResult {
    /// Row names in table order (engines as measured, then `auto`).
    pub fn rows(&self) -> Vec<String> {
        let mut rows: Vec<String> = Vec::new();
        for f in &self.figures {
            if !rows.contains(&f.row) {
                rows.push(f.row.clone());
            }
        }
        rows
    }

    /// The figures for one row at one size.
    pub fn get(&self, row: &str, size: u64) -> Option<&Figures> {
        self.figures.iter().find(|f| f.row == row && f.size == size)
    }

    /// Fills in the ratios to read-write for every size.
    pub fn compute_ratios(&mut self) {
        let rw = EngineKind::ReadWrite.name();
        for size in self.sizes.clone() {
            let Some(base) = self.get(rw, size).cloned() else {
                continue;
            };
            for f in self.figures.iter_mut().filter(|f| f.size == size) {
                f.throughput_vs_rw = ratio(f.throughput.median, base.throughput.median);
                f.cpu_vs_rw = ratio(f.engine_cpu.total.median, base.engine_cpu.total.median);
            }
        }
    }
}

fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0 && a.is_finite()).then(|| a / b)
}

/// The machine and settings a bench ran with.
#[derive(Clone, Debug, Default)]
pub struct Meta {
    /// `uname -sr`.
    pub kernel: String,
    /// CPU model name.
    pub cpu: String,
    /// Logical CPUs.
    pub cpus: usize,
    /// Filesystem of the scratch directory (e.g. `ext4`).
    pub filesystem: String,
    /// When the bench started, UTC, ISO 8601.
    pub date: String,
    /// Page cache state of the sources: `warm` or `cold`.
    pub cache: String,
    /// Timed runs per row (large sizes may use fewer, see each row).
    pub runs: usize,
    /// Whether a warm-up run preceded the timed runs.
    pub warmup: bool,
    /// Minimum duration of one run in milliseconds (small sizes repeat to reach it).
    pub min_run_ms: u64,
    /// zcopy version.
    pub version: String,
}

/// A whole bench: the settings and every scenario's figures.
#[derive(Clone, Debug, Default)]
pub struct BenchResult {
    /// Machine and settings.
    pub meta: Meta,
    /// One entry per scenario measured.
    pub scenarios: Vec<ScenarioResult>,
}
