//! Runs the whole bench on tiny sizes (one run, no warm-up) and checks every engine
//! produced numbers and every exporter well-formed output.

use std::time::Duration;

use zcopy_bench::export::{Exporter, Json, Markdown, Svg};
use zcopy_bench::{Config, Scenario, calibrate, fmt_size};

fn tiny() -> Config {
    Config {
        sizes: vec![4 << 10, 64 << 10],
        runs: 1,
        warmup: false,
        min_run_time: Duration::ZERO,
        ..Config::full()
    }
}

#[test]
fn every_scenario_every_engine_produces_numbers_and_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        dir: Some(dir.path().to_path_buf()),
        ..tiny()
    };
    let result = zcopy_bench::run(&config, &mut |_| {}).expect("bench runs");
    assert_eq!(result.scenarios.len(), Scenario::ALL.len());

    for s in &result.scenarios {
        for k in &s.skipped {
            eprintln!(
                "skipped: {} {} {}: {}",
                s.scenario.name(),
                k.row,
                fmt_size(k.size),
                k.why
            );
        }
        if s.scenario == Scenario::FileTcpVeth && s.figures.is_empty() {
            assert!(s.skipped[0].why.starts_with("skipped: needs root"));
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true runs as root: the veth scenario must run"
            );
            continue;
        }
        let rows = s.rows();
        assert!(rows.contains(&"read-write".to_string()), "{:?}", s.scenario);
        assert!(rows.contains(&"auto".to_string()), "{:?}", s.scenario);
        for &size in &s.sizes {
            for row in &rows {
                let f = s
                    .get(row, size)
                    .unwrap_or_else(|| panic!("{} {row} {size}: no figures", s.scenario.name()));
                let t = f.throughput.median;
                assert!(
                    t.is_finite() && t > 0.0,
                    "{} {row} {size}: throughput {t}",
                    s.scenario.name()
                );
                assert!(f.engine_cpu.total.median.is_finite());
                assert!(
                    f.syscalls.median > 0.0,
                    "{} {row}: no syscalls counted",
                    s.scenario.name()
                );
                assert_eq!(f.runs, 1);
                assert!(!f.ran.is_empty());
                assert!(f.throughput_vs_rw.is_some(), "ratio to read-write");
                assert_eq!(f.peer_cpu.is_some(), s.scenario.peer().is_some());
            }
        }
        // The whole row of auto_order: every engine the plan lists, measured or skipped.
        for k in zcopy::Plan::auto_order(Some(s.scenario.src_kind(4096)), s.scenario.sink_kind()) {
            let measured = rows.iter().any(|r| r == k.name());
            let skipped = s.skipped.iter().any(|x| x.row == k.name());
            assert!(
                measured || skipped,
                "{} {k}: neither measured nor skipped",
                s.scenario.name()
            );
        }
    }

    // Markdown: one section per scenario, one line per row and size in the details.
    let md = &Markdown.render(&result).unwrap()[0].contents;
    for s in &result.scenarios {
        assert!(md.contains(&format!("(`{}`)", s.scenario.name())), "{md}");
        for row in s.rows() {
            assert!(md.contains(&format!("| {row} |")), "{row} missing");
        }
    }
    assert!(md.lines().filter(|l| l.starts_with("| 64K | ")).count() >= 4 * 3);

    // JSON: balanced, and every result is there.
    let json = &Json.render(&result).unwrap()[0].contents;
    assert!(json.trim_start().starts_with('{') && json.trim_end().ends_with('}'));
    let depth = json.chars().try_fold(0i32, |d, c| {
        let d = match c {
            '{' | '[' => d + 1,
            '}' | ']' => d - 1,
            _ => d,
        };
        (d >= 0).then_some(d)
    });
    assert_eq!(depth, Some(0), "unbalanced JSON");
    let results: usize = result.scenarios.iter().map(|s| s.figures.len()).sum();
    assert_eq!(json.matches("\"throughput_gb_per_s\"").count(), results);
    assert!(!json.contains("NaN") && !json.contains("inf"));

    // SVG: two charts per scenario, each an <svg> with a line and a legend entry per row.
    let charts = Svg.render(&result).unwrap();
    assert_eq!(charts.len(), 2 * result.scenarios.len());
    for s in &result.scenarios {
        for kind in ["throughput", "cpu"] {
            let name = format!("{}-{kind}.svg", s.scenario.name());
            let c = charts.iter().find(|c| c.name == name).expect(&name);
            let svg = &c.contents;
            assert!(
                svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"),
                "{name}"
            );
            assert_eq!(svg.matches('<').count(), svg.matches('>').count(), "{name}");
            let rows = s.rows();
            // A data line plus a legend line per row.
            assert!(svg.matches("<polyline").count() >= 2 * rows.len(), "{name}");
            for row in &rows {
                assert!(
                    svg.contains(&format!("\n{row}\n</text>")),
                    "{name}: no legend for {row}"
                );
            }
        }
    }

    // Calibration: a profile line per measured scenario and size, plus plain `tcp`
    // lines; read-write in each.
    let measured = result
        .scenarios
        .iter()
        .filter(|s| !s.figures.is_empty())
        .count();
    let profile = calibrate(&result);
    assert_eq!(profile.entries().len(), (measured + 1) * 2);
    for e in profile.entries() {
        assert!(e.engines.contains(&zcopy::EngineKind::ReadWrite), "{e:?}");
    }
    let text = profile.to_text();
    assert_eq!(zcopy::profile::Profile::parse(&text), profile);
    assert!(text.contains("\nfile tcp 4096 "), "{text}");
    assert!(text.contains("\nfile tcp max "), "{text}");
    assert!(text.contains("\nfile tcp@lo 4096 "), "{text}");
    if measured == Scenario::ALL.len() {
        assert!(text.contains("\nfile tcp@veth max "), "{text}");
    }
    assert!(text.contains("\ntcp file max "), "{text}");
}

#[test]
fn the_scratch_directory_is_cleaned_up() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        dir: Some(dir.path().to_path_buf()),
        scenarios: vec![Scenario::FileFile],
        sizes: vec![4096],
        ..tiny()
    };
    zcopy_bench::run(&config, &mut |_| {}).unwrap();
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn cold_needs_root_or_works() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        dir: Some(dir.path().to_path_buf()),
        scenarios: vec![Scenario::FilePipe],
        sizes: vec![65536],
        cold: true,
        engines: Some(vec![
            zcopy::EngineKind::Splice,
            zcopy::EngineKind::ReadWrite,
        ]),
        ..tiny()
    };
    let r = zcopy_bench::run(&config, &mut |_| {});
    if rustix::process::geteuid().is_root() {
        let r = r.unwrap();
        assert_eq!(r.meta.cache, "cold");
        assert_eq!(r.scenarios[0].figures.len(), 3, "splice, read-write, auto");
    } else {
        assert!(r.unwrap_err().to_string().contains("root"));
    }
}

#[test]
fn both_event_loops_are_measured_and_become_io_lines() {
    use zcopy_bench::eventloop::{self, IoConfig};
    use zcopy_http::driver::IoDriver;

    let dir = tempfile::tempdir().unwrap();
    let config = IoConfig {
        rounds: 1,
        warmup: Duration::from_millis(50),
        window: Duration::from_millis(300),
        connections: 4,
        dir: Some(dir.path().to_path_buf()),
        ..IoConfig::default()
    };
    let mut lines = Vec::new();
    let r = eventloop::measure(&config, &mut |l| lines.push(l.to_string())).expect("measures");
    let mut drivers = vec![IoDriver::Epoll, IoDriver::Uring];
    for (d, why) in &r.skipped {
        // io_uring refused by the kernel (sysctl, seccomp): nothing the repo can install.
        assert_eq!(*d, IoDriver::Uring, "{why}");
        println!("{d}: {why}");
        drivers.retain(|x| x != d);
    }
    assert_eq!(r.figures.len(), 2 * drivers.len(), "{r:?}");
    for &size in &[1024, 65536] {
        for &d in &drivers {
            let m = r
                .figures
                .iter()
                .find(|m| m.driver == d && m.size == size)
                .unwrap_or_else(|| panic!("{d} {size}: not measured: {r:?}"));
            assert!(m.requests > 0 && !m.cpu.is_zero(), "{m:?}");
            assert!(m.per_cpu_s().is_finite() && m.per_cpu_s() > 0.0, "{m:?}");
            assert!(lines.iter().any(|l| l.starts_with(&format!("io {d} "))));
        }
    }
    let md = r.markdown();
    assert_eq!(
        md.lines().filter(|l| l.starts_with("| 64K | ")).count(),
        drivers.len()
    );

    let mut profile = zcopy::profile::Profile::new();
    r.record(&mut profile);
    for f in &r.figures {
        let got = profile.io_figure(f.driver.name(), f.size);
        assert!(got.is_some_and(|n| n > 0), "{f:?}: {got:?}");
    }
    assert_eq!(zcopy::profile::Profile::parse(&profile.to_text()), profile);
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "scratch left"
    );
}
