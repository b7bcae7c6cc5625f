//! Runs the bench: source files, warm-up (which also sizes the runs), interleaved
//! timed runs, and the figures.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use zcopy::TransferError;

use crate::report::{BenchResult, Figures, ScenarioResult, Skipped};
use crate::scenario::{self, Measured, Row, Scenario, Setup};
use crate::{BenchError, Config};

/// Transfers per run never exceed this many.
const MAX_ITERS: u64 = 100_000;
/// Nor this many bytes together (a run writes them to a file in file scenarios).
const MAX_RUN_BYTES: u64 = 512 << 20;
/// Sizes from this one up get at most `Config::large_runs` timed runs.
const LARGE: u64 = 256 << 20;

/// A scratch directory removed on drop.
pub(crate) struct Scratch(pub(crate) PathBuf);

impl Scratch {
    /// `<dir or the temp dir>/<prefix>-<pid>`, created.
    pub(crate) fn create(dir: Option<&Path>, prefix: &str) -> Result<Scratch, BenchError> {
        let base = dir.map_or_else(std::env::temp_dir, Path::to_path_buf);
        let dir = base.join(format!("{prefix}-{}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .map_err(|e| BenchError::Io(format!("mkdir {}", dir.display()), e))?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes `size` bytes of a non-repeating-looking pattern (not zeros: no sparse tricks).
pub(crate) fn make_source(path: &Path, size: u64) -> Result<(), BenchError> {
    let io = |e| BenchError::Io(format!("create {}", path.display()), e);
    let mut f = File::create(path).map_err(io)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ size;
    for chunk in buf.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    let mut left = size;
    let mut round = 0u8;
    while left > 0 {
        buf[0] = round;
        round = round.wrapping_add(1);
        let n = left.min(buf.len() as u64) as usize;
        f.write_all(&buf[..n]).map_err(io)?;
        left -= n as u64;
    }
    Ok(())
}

/// How many transfers make a run last at least `min`, from a run of `iters` that took
/// `took`.
fn iters_for(min: Duration, took: Duration, iters: u64, size: u64) -> u64 {
    if took >= min || iters >= MAX_ITERS {
        return iters;
    }
    let per = took.as_secs_f64().max(1e-7) / iters as f64;
    let want = (min.as_secs_f64() / per).ceil() as u64;
    want.clamp(1, MAX_ITERS)
        .min((MAX_RUN_BYTES / size.max(1)).max(1))
}

fn is_unsupported(e: &BenchError) -> bool {
    matches!(e, BenchError::Transfer(_, TransferError::NoEngine { .. }))
}

/// Runs the bench described by `config`, reporting progress lines to `progress`.
pub fn run(config: &Config, progress: &mut dyn FnMut(&str)) -> Result<BenchResult, BenchError> {
    if config.cold && !rustix::process::geteuid().is_root() {
        return Err(BenchError::Config("--cold needs root".into()));
    }
    let scratch = Scratch::create(config.dir.as_deref(), "zcopy-bench")?;
    let mut sizes = config.sizes.clone();
    sizes.sort_unstable();
    sizes.dedup();

    let mut result = BenchResult {
        meta: crate::meta(config, &scratch.0),
        scenarios: Vec::new(),
    };
    let mut sources = Vec::new();
    for &size in &sizes {
        let path = scratch.0.join(format!("src-{size}"));
        progress(&format!("creating source {}", crate::fmt_size(size)));
        make_source(&path, size)?;
        sources.push((size, path));
    }

    // One veth pair for the whole bench, when a scenario needs it.
    let mut veth = None;
    let mut no_veth = None;
    if config.scenarios.contains(&Scenario::FileTcpVeth) {
        match zcopy_netns::VethPair::new() {
            Ok(p) => veth = Some(p),
            Err(e) => {
                let why = format!("skipped: needs root (network namespaces: {e})");
                progress(&format!("{}: {why}", Scenario::FileTcpVeth.name()));
                no_veth = Some(why);
            }
        }
    }

    for &scn in &config.scenarios {
        let mut sr = ScenarioResult {
            scenario: scn,
            sizes: sizes.clone(),
            figures: Vec::new(),
            skipped: Vec::new(),
        };
        if let (Scenario::FileTcpVeth, Some(why)) = (scn, &no_veth) {
            sr.skipped.push(Skipped {
                row: "all".into(),
                size: 0,
                why: why.clone(),
            });
            result.scenarios.push(sr);
            continue;
        }
        for (size, path) in &sources {
            let size = *size;
            let setup = Setup {
                source: path,
                size,
                scratch: &scratch.0,
                veth: veth.as_ref(),
            };
            let mut rows = Vec::new();
            for row in scn.rows(size) {
                if let Row::Engine(k) = row {
                    if config
                        .engines
                        .as_ref()
                        .is_some_and(|only| !only.contains(&k))
                    {
                        continue;
                    }
                    if let Err(why) = k.probe() {
                        sr.skipped.push(Skipped {
                            row: row.name().into(),
                            size,
                            why: why.to_string(),
                        });
                        continue;
                    }
                }
                rows.push(row);
            }
            let cold = || -> Result<(), BenchError> {
                if config.cold {
                    scenario::drop_from_cache(path)?;
                }
                Ok(())
            };

            // Warm-up: also finds how many transfers make a run long enough.
            let mut iters: Vec<u64> = vec![1; rows.len()];
            let mut live: Vec<bool> = vec![true; rows.len()];
            for (i, &row) in rows.iter().enumerate() {
                progress(&format!(
                    "{} {} {}: warm-up",
                    scn.name(),
                    crate::fmt_size(size),
                    row.name()
                ));
                let rounds = if config.warmup { 3 } else { 0 };
                for _ in 0..rounds {
                    cold()?;
                    match scenario::run(scn, row, setup, iters[i]) {
                        Ok(m) => {
                            let n = if config.cold {
                                1
                            } else {
                                iters_for(config.min_run_time, m.elapsed, iters[i], size)
                            };
                            if n == iters[i] {
                                break;
                            }
                            iters[i] = n;
                        }
                        Err(e) if is_unsupported(&e) => {
                            sr.skipped.push(Skipped {
                                row: row.name().into(),
                                size,
                                why: e.to_string(),
                            });
                            live[i] = false;
                            break;
                        }
                        Err(e) => return Err(e.context(scn, row, size)),
                    }
                }
            }

            // Timed runs, interleaved so that drift hits every row alike.
            let runs = if size >= LARGE {
                config.runs.min(config.large_runs)
            } else {
                config.runs
            }
            .max(1);
            let mut measured: Vec<Vec<Measured>> = vec![Vec::new(); rows.len()];
            for r in 0..runs {
                for (i, &row) in rows.iter().enumerate() {
                    if !live[i] {
                        continue;
                    }
                    progress(&format!(
                        "{} {} {}: run {}/{runs} ({} transfers)",
                        scn.name(),
                        crate::fmt_size(size),
                        row.name(),
                        r + 1,
                        iters[i]
                    ));
                    cold()?;
                    match scenario::run(scn, row, setup, iters[i]) {
                        Ok(m) => measured[i].push(m),
                        Err(e) if is_unsupported(&e) && r == 0 => {
                            sr.skipped.push(Skipped {
                                row: row.name().into(),
                                size,
                                why: e.to_string(),
                            });
                            live[i] = false;
                        }
                        Err(e) => return Err(e.context(scn, row, size)),
                    }
                }
            }
            for (i, &row) in rows.iter().enumerate() {
                if live[i] && !measured[i].is_empty() {
                    sr.figures.push(Figures::from_runs(row, size, &measured[i]));
                }
            }
        }
        sr.compute_ratios();
        result.scenarios.push(sr);
    }
    Ok(result)
}
