//! The server's two event loops side by side: `zcopy serve` runs in this process once
//! with `--io epoll` and once with `--io uring` (1 worker, 127.0.0.1, port 0, a
//! scratch root with one file per size), a keep-alive load generator ([`load`]) on
//! another CPU asks each for the same file in turn, and what counts is requests per
//! CPU-second of the server's own threads ([`threads`]; the load generator's CPU is
//! not counted). The figures become the profile's `io` lines, from which
//! `--io auto` picks its driver.

pub mod load;
pub mod threads;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use zcopy::profile::{IoFigure, Profile};
use zcopy_http::config::Config as ServerConfig;
use zcopy_http::driver::{self, IoDriver};
use zcopy_http::server::{RunningServer, Server};

use crate::BenchError;
use crate::runner::{Scratch, make_source};
use threads::ServerThreads;

/// What to measure and how long.
#[derive(Clone, Debug)]
pub struct IoConfig {
    /// File sizes served, in bytes.
    pub sizes: Vec<u64>,
    /// Rounds per size; each round runs every driver once, in alternating order.
    pub rounds: usize,
    /// Load before each timed window (fills the server's caches).
    pub warmup: Duration,
    /// Timed window per driver and round.
    pub window: Duration,
    /// Keep-alive connections of the load generator.
    pub connections: usize,
    /// Where the scratch root goes (default: the temp dir).
    pub dir: Option<PathBuf>,
}

impl Default for IoConfig {
    /// 1 KiB and 64 KiB, 2 rounds of 1.5 s, 32 connections.
    fn default() -> IoConfig {
        IoConfig {
            sizes: vec![1 << 10, 64 << 10],
            rounds: 2,
            warmup: Duration::from_millis(200),
            window: Duration::from_millis(1500),
            connections: 32,
            dir: None,
        }
    }
}

impl IoConfig {
    /// A shorter measurement (2 rounds of 0.4 s), for `zcopy bench --quick`.
    pub fn quick() -> IoConfig {
        IoConfig {
            warmup: Duration::from_millis(100),
            window: Duration::from_millis(400),
            ..IoConfig::default()
        }
    }
}

/// One driver serving one file size, all rounds together.
#[derive(Clone, Debug, PartialEq)]
pub struct IoMeasured {
    /// The driver.
    pub driver: IoDriver,
    /// The file size.
    pub size: u64,
    /// Requests answered in the timed windows.
    pub requests: u64,
    /// CPU time of the server's threads in those windows.
    pub cpu: Duration,
    /// Wall time of those windows.
    pub wall: Duration,
}

impl IoMeasured {
    /// Requests per CPU-second of the server's threads.
    pub fn per_cpu_s(&self) -> f64 {
        self.requests as f64 / self.cpu.as_secs_f64()
    }

    /// Requests per second.
    pub fn per_s(&self) -> f64 {
        self.requests as f64 / self.wall.as_secs_f64()
    }
}

/// The event loops' figures, and the drivers that could not run, with why.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IoResult {
    /// Per driver and size.
    pub figures: Vec<IoMeasured>,
    /// Drivers left out, and why (`skipped: ...`).
    pub skipped: Vec<(IoDriver, String)>,
}

impl IoResult {
    /// Adds the figures to `profile` as `io` lines.
    pub fn record(&self, profile: &mut Profile) {
        for m in &self.figures {
            profile.insert_io(IoFigure {
                driver: m.driver.name().to_string(),
                size: m.size,
                per_cpu_s: m.per_cpu_s().round().max(1.0) as u64,
            });
        }
    }

    /// The figures as a Markdown table (with a line per skipped driver).
    pub fn markdown(&self) -> String {
        let mut out = String::from(
            "## zcopy serve event loops (1 worker, keep-alive load on another CPU)\n\n\
             | file | driver | req/s | server CPU-s | req per server CPU-s | vs epoll |\n\
             |---|---|---|---|---|---|\n",
        );
        for m in &self.figures {
            let epoll = self
                .figures
                .iter()
                .find(|e| e.size == m.size && e.driver == IoDriver::Epoll);
            let vs = epoll.map_or("–".to_string(), |e| {
                format!("{:.2}", m.per_cpu_s() / e.per_cpu_s())
            });
            out.push_str(&format!(
                "| {} | {} | {:.0} | {:.2} | {:.0} | {vs} |\n",
                crate::fmt_size(m.size),
                m.driver,
                m.per_s(),
                m.cpu.as_secs_f64(),
                m.per_cpu_s(),
            ));
        }
        for (d, why) in &self.skipped {
            out.push_str(&format!("\n{d}: {why}\n"));
        }
        out.push('\n');
        out
    }
}

/// A server of one driver, running for the whole measurement.
struct Subject {
    driver: IoDriver,
    running: RunningServer,
    threads: ServerThreads,
}

fn io_err(what: &str) -> impl FnOnce(std::io::Error) -> BenchError + '_ {
    move |e| BenchError::Io(what.to_string(), e)
}

/// Starts a server with `driver` on `root`; `Ok(Err(why))` when that driver can't run
/// here.
fn start(driver: IoDriver, root: PathBuf) -> Result<Result<Subject, String>, BenchError> {
    let (runs, why) = driver::choose(driver, false);
    if runs != driver {
        return Ok(Err(format!("skipped: {why}")));
    }
    let before = threads::tids().map_err(io_err("/proc/self/task"))?;
    let config = ServerConfig {
        root,
        listen: vec!["127.0.0.1:0".parse().expect("an address")],
        workers: 1,
        io: driver,
        ..ServerConfig::default()
    };
    let server = Server::bind(config)
        .map_err(|e| BenchError::Io(format!("{driver} server"), std::io::Error::other(e)))?;
    let running = server.spawn().map_err(io_err("starting the server"))?;
    if running.io_driver() != driver {
        let _ = running.stop();
        return Ok(Err(format!("skipped: the server fell back from {driver}")));
    }
    let threads = ServerThreads::since(&before, 1).map_err(io_err("the server's threads"))?;
    threads.pin(0);
    Ok(Ok(Subject {
        driver,
        running,
        threads,
    }))
}

/// Measures the event loops; `progress` gets a line per driver, size and round.
pub fn measure(config: &IoConfig, progress: &mut dyn FnMut(&str)) -> Result<IoResult, BenchError> {
    let scratch = Scratch::create(config.dir.as_deref(), "zcopy-bench-io")?;
    let mut sizes = config.sizes.clone();
    sizes.sort_unstable();
    sizes.dedup();
    for &size in &sizes {
        make_source(&scratch.0.join(format!("{size}.bin")), size)?;
    }

    let mut result = IoResult::default();
    let mut subjects = Vec::new();
    let mut measured = Ok(Vec::new());
    for driver in [IoDriver::Epoll, IoDriver::Uring] {
        match start(driver, scratch.0.clone()) {
            Ok(Ok(s)) => subjects.push(s),
            Ok(Err(why)) => {
                progress(&format!("io {driver}: {why}"));
                result.skipped.push((driver, why));
            }
            Err(e) => {
                measured = Err(e);
                break;
            }
        }
    }
    if measured.is_ok() {
        measured = run_rounds(config, &sizes, &subjects, progress);
    }
    for s in subjects {
        let _ = s.running.stop();
    }
    result.figures = measured?;
    Ok(result)
}

fn run_rounds(
    config: &IoConfig,
    sizes: &[u64],
    subjects: &[Subject],
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<IoMeasured>, BenchError> {
    let mut figures = Vec::new();
    for &size in sizes {
        let mut sums: Vec<IoMeasured> = subjects
            .iter()
            .map(|s| IoMeasured {
                driver: s.driver,
                size,
                requests: 0,
                cpu: Duration::ZERO,
                wall: Duration::ZERO,
            })
            .collect();
        for round in 0..config.rounds.max(1) {
            // epoll, uring, then uring, epoll: drift during a round hits both alike.
            let mut order: Vec<usize> = (0..subjects.len()).collect();
            if round % 2 == 1 {
                order.reverse();
            }
            for i in order {
                let s = &subjects[i];
                progress(&format!(
                    "io {} {} round {}/{}",
                    s.driver,
                    crate::fmt_size(size),
                    round + 1,
                    config.rounds.max(1)
                ));
                let (requests, cpu, wall) = window(config, s, size)?;
                sums[i].requests += requests;
                sums[i].cpu += cpu;
                sums[i].wall += wall;
            }
        }
        for m in sums {
            if m.requests == 0 || m.cpu.is_zero() {
                return Err(BenchError::Config(format!(
                    "io {} {}: no requests or no server CPU time measured ({} requests, {:?})",
                    m.driver,
                    crate::fmt_size(size),
                    m.requests,
                    m.cpu
                )));
            }
            figures.push(m);
        }
    }
    Ok(figures)
}

/// One timed window: requests answered, server CPU time used, and wall time.
fn window(
    config: &IoConfig,
    s: &Subject,
    size: u64,
) -> Result<(u64, Duration, Duration), BenchError> {
    let what = format!("io {} {}", s.driver, crate::fmt_size(size));
    let err = |e| BenchError::Io(what.clone(), e);
    let addr = s.running.local_addrs()[0];
    let path = format!("/{size}.bin");
    let load = load::Load::start(addr, &path, size, config.connections, 1).map_err(err)?;
    std::thread::sleep(config.warmup);
    let snapshot = || Ok::<_, std::io::Error>((load.answered(), s.threads.cpu()?, Instant::now()));
    let first = snapshot();
    std::thread::sleep(config.window);
    let last = snapshot();
    load.stop().map_err(err)?;
    let ((n0, c0, t0), (n1, c1, t1)) = (first.map_err(err)?, last.map_err(err)?);
    Ok((n1 - n0, c1.saturating_sub(c0), t1 - t0))
}
