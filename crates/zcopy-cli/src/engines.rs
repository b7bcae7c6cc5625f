//! `zcopy engines`: which engines this kernel runs, and what the seeds say each costs.

use std::process::ExitCode;

use zcopy::EngineKind;

/// Arguments of `zcopy engines`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Each engine is probed by moving a few KiB through it over real \
fds and checking every byte, so \"yes\" means it worked here, now.\n\
Copies and switches are the seeds' theory; `zcopy bench` measures them."
)]
pub struct EnginesArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

struct Row {
    kind: EngineKind,
    result: Result<&'static str, String>,
}

/// Runs `zcopy engines`. Exit 0 when at least `read-write` works.
pub fn run(args: EnginesArgs) -> anyhow::Result<ExitCode> {
    let rows: Vec<Row> = EngineKind::ALL
        .into_iter()
        .map(|kind| Row {
            kind,
            result: zcopy::probe::verify(kind).map_err(|e| e.to_string()),
        })
        .collect();
    if args.json {
        print_json(&rows);
    } else {
        print_table(&rows);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_table(rows: &[Row]) {
    let header = [
        "engine",
        "here",
        "probed with / why not",
        "accepts",
        "CPU copies",
        "switches",
        "calls",
    ];
    let cells: Vec<[String; 7]> = rows
        .iter()
        .map(|r| {
            let info = r.kind.info();
            let (here, detail) = match &r.result {
                Ok(pair) => ("yes".to_string(), pair.to_string()),
                Err(why) => ("no".to_string(), why.clone()),
            };
            [
                r.kind.name().to_string(),
                here,
                detail,
                info.accepts.to_string(),
                info.cpu_copies.to_string(),
                info.switches.to_string(),
                info.calls.to_string(),
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cols: &[String]| {
        let parts: Vec<String> = cols
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
            .collect();
        println!("{}", parts.join("  ").trim_end());
    };
    line(&header.map(String::from));
    line(&widths.map(|w| "-".repeat(w)));
    for row in &cells {
        line(row);
    }
    let ok = rows.iter().filter(|r| r.result.is_ok()).count();
    println!(
        "\n{ok} of {} engines work on this kernel ({}).",
        rows.len(),
        kernel_release()
    );
    println!("{}", profile_line());
    let (io, why) = zcopy_http::driver::choose(zcopy_http::driver::IoDriver::Auto, false);
    println!(
        "serve --io auto runs the {io} driver for plain HTTP ({why}); HTTPS listeners run epoll."
    );
    println!("{}", ktls_line());
}

/// Whether HTTPS bodies can leave by sendfile here (kernel TLS), and why not.
fn ktls_line() -> String {
    let probe = zcopy::ktls::probe();
    if probe.available() {
        format!("kTLS: yes ({probe}): `serve` HTTPS bodies leave by sendfile/splice.")
    } else {
        format!("kTLS: no, {probe}: `serve` encrypts HTTPS bodies in user space.")
    }
}

/// Which calibration profile `auto` follows.
fn profile_line() -> String {
    match (
        zcopy::profile::Profile::path(),
        zcopy::profile::Profile::cached_default(),
    ) {
        (Some(path), Some(p)) => format!(
            "auto follows the calibration profile {} ({} engine lines, {} io lines).",
            path.display(),
            p.entries().len(),
            p.io_figures().len()
        ),
        (Some(path), None) => format!(
            "auto uses built-in defaults (no profile at {}; write one with `zcopy bench --calibrate`).",
            path.display()
        ),
        (None, _) => "auto uses built-in defaults (no profile location).".to_string(),
    }
}

fn kernel_release() -> String {
    let u = rustix::system::uname();
    format!("Linux {}", u.release().to_string_lossy())
}

fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn print_json(rows: &[Row]) {
    let items: Vec<String> = rows
        .iter()
        .map(|r| {
            let info = r.kind.info();
            let (supported, detail) = match &r.result {
                Ok(pair) => (true, format!("\"probed_with\":{}", json_str(pair))),
                Err(why) => (false, format!("\"why_not\":{}", json_str(why))),
            };
            format!(
                "{{\"engine\":{},\"supported\":{supported},{detail},\"accepts\":{},\"cpu_copies\":{},\"switches\":{},\"calls\":{}}}",
                json_str(r.kind.name()),
                json_str(info.accepts),
                json_str(info.cpu_copies),
                json_str(info.switches),
                json_str(info.calls)
            )
        })
        .collect();
    println!("[{}]", items.join(",\n "));
}
