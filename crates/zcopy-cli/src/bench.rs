//! `zcopy bench`: measure every engine on this machine (parsing only; the work is in
//! the zcopy-bench crate).

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use zcopy::EngineKind;
use zcopy::profile::Profile;
use zcopy_bench::eventloop::{self, IoConfig};
use zcopy_bench::export::{self, Exporter, Json, Markdown, Svg};
use zcopy_bench::{Config, Scenario};

/// Arguments of `zcopy bench`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Scenarios: file-tcp (loopback; a receiver thread splices to \
/dev/null), file-tcp-veth (the same across a veth pair between two network namespaces \
it creates and removes; root only, else skipped), file-file (fresh destination, no fsync), file-pipe (a receiver thread splices \
to /dev/null), tcp-file (a sender thread sendfiles into the socket; the received file is fsync'd at \
the end of each run, as zcopy recv and uploads do, so write-back counts).\n\
Each engine that can do a scenario runs, plus `auto`; runs are interleaved across \
engines after a warm-up, and small sizes repeat the transfer so that a run lasts long \
enough. Bytes are counted on both ends: a mismatch fails the bench.\n\
The Markdown tables go to stdout, progress to stderr."
)]
pub struct BenchArgs {
    /// Transfer sizes, e.g. `4K,64K,1M,1G` [default: 4K,64K,1M,16M,256M,1G].
    #[arg(long, value_delimiter = ',', value_parser = zcopy_bench::parse_size)]
    sizes: Option<Vec<u64>>,
    /// A small sweep (4K,1M,16M,64M) with 3 runs: well under a minute.
    #[arg(long)]
    quick: bool,
    /// Scenarios to run [default: all].
    #[arg(long, value_delimiter = ',')]
    scenarios: Option<Vec<Scenario>>,
    /// Only these engines (plus `auto`) [default: every engine that can do each scenario].
    #[arg(long, value_delimiter = ',')]
    engines: Option<Vec<EngineKind>>,
    /// Timed runs per engine and size [default: 5, --quick 3; by default at most 3
    /// from 256M up].
    #[arg(long)]
    runs: Option<usize>,
    /// Skip the warm-up run (small sizes then run one transfer per run).
    #[arg(long)]
    no_warmup: bool,
    /// Minimum duration of a run in milliseconds [default: 50, --quick 20].
    #[arg(long, value_name = "MS")]
    min_time: Option<u64>,
    /// Drop the source from the page cache before each run (fsync +
    /// posix_fadvise(DONTNEED)); root only.
    #[arg(long)]
    cold: bool,
    /// Directory for source and destination files [default: the temp dir].
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Also write the results as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Also write the Markdown tables to FILE.
    #[arg(long, value_name = "FILE")]
    markdown: Option<PathBuf>,
    /// Write SVG charts (throughput and CPU/GB vs size, per scenario) into DIR.
    #[arg(long, value_name = "DIR")]
    svg: Option<PathBuf>,
    /// Write a calibration profile (engines best-first per fd pair and size class)
    /// for `auto` to use; also measures `serve`'s two event loops (epoll, io_uring)
    /// for `serve --io auto` (about 15 s, --quick 4 s).
    #[arg(long)]
    calibrate: bool,
    /// Where --calibrate writes [default: $ZCOPY_PROFILE, else
    /// $XDG_CONFIG_HOME/zcopy/profile, else ~/.config/zcopy/profile].
    #[arg(long, value_name = "FILE", requires = "calibrate")]
    profile: Option<PathBuf>,
}

fn write_one(
    exporter: &dyn Exporter,
    result: &zcopy_bench::BenchResult,
    path: &PathBuf,
) -> anyhow::Result<()> {
    let out = exporter.render(result).map_err(anyhow::Error::msg)?;
    let text: String = out.into_iter().map(|o| o.contents).collect();
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// Runs `zcopy bench`.
pub fn run(args: BenchArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    let mut config = if args.quick {
        Config::quick()
    } else {
        Config::full()
    };
    if let Some(sizes) = args.sizes {
        config.sizes = sizes;
    }
    if let Some(s) = args.scenarios {
        config.scenarios = s;
    }
    if let Some(runs) = args.runs {
        config.runs = runs.max(1);
        config.large_runs = config.runs;
    }
    if let Some(ms) = args.min_time {
        config.min_run_time = Duration::from_millis(ms);
    }
    config.engines = args.engines;
    config.warmup = !args.no_warmup;
    config.cold = args.cold;
    config.dir = args.dir;

    let mut stderr = std::io::stderr();
    let tty = stderr.is_terminal();
    let mut last = String::new();
    let mut progress = |line: &str| {
        if quiet {
        } else if tty {
            let _ = write!(stderr, "\r\x1b[2K{line}");
            let _ = stderr.flush();
        } else {
            // One line per scenario and size when not on a terminal.
            let head: String = line
                .split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" ");
            if head != last {
                let _ = writeln!(stderr, "{head}");
                last = head;
            }
        }
    };
    let result = zcopy_bench::run(&config, &mut progress);
    if !quiet && tty {
        eprint!("\r\x1b[2K");
    }
    let result = result?;

    let md = Markdown.render(&result).map_err(anyhow::Error::msg)?;
    for o in &md {
        print!("{}", o.contents);
    }
    if let Some(path) = &args.markdown {
        write_one(&Markdown, &result, path)?;
    }
    if let Some(path) = &args.json {
        write_one(&Json, &result, path)?;
    }
    if let Some(dir) = &args.svg {
        let charts = Svg.render(&result).map_err(anyhow::Error::msg)?;
        export::write_all(&charts, dir).with_context(|| format!("writing {}", dir.display()))?;
    }
    if args.calibrate {
        let path = args
            .profile
            .or_else(Profile::path)
            .context("no profile location: set ZCOPY_PROFILE or HOME")?;
        let mut profile = zcopy_bench::calibrate(&result);
        let io_config = IoConfig {
            dir: config.dir.clone(),
            ..if args.quick {
                IoConfig::quick()
            } else {
                IoConfig::default()
            }
        };
        let io = eventloop::measure(&io_config, &mut progress);
        if !quiet && tty {
            eprint!("\r\x1b[2K");
        }
        let io = io?;
        print!("{}", io.markdown());
        io.record(&mut profile);
        profile
            .save(&path)
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("profile written to {}:", path.display());
        eprint!("{}", profile.to_text());
        let auto = match zcopy_http::driver::auto::from_profile(Some(&profile)) {
            Ok(why) => format!("uring where the kernel allows it ({why})"),
            Err(why) => format!("epoll ({why})"),
        };
        eprintln!("serve --io auto will run {auto}.");
    }
    Ok(ExitCode::SUCCESS)
}
