//! `hload [-t THREADS] [-c CONNECTIONS] [-d SECONDS] [--len BYTES] URL`: a cheap
//! HTTP/1.1 keep-alive load client (see `zcopy_bench::hload`). Prints the requests,
//! bytes, requests a second and its own CPU; exits 1 on any odd response.
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::time::Duration;

use zcopy_bench::hload::{self, Options};

const USAGE: &str = "usage: hload [-t THREADS] [-c CONNECTIONS] [-d SECONDS] [--len BYTES] URL";

fn options(args: &[String]) -> Result<Options, String> {
    let (flags, url) = match args.split_last() {
        Some((url, flags)) if !url.starts_with('-') => (flags, url),
        _ => return Err(USAGE.into()),
    };
    let mut o = Options::for_url(url).map_err(|e| e.to_string())?;
    let mut it = flags.iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(USAGE)?;
        let bad = || format!("{flag} {value}: not a number");
        match flag.as_str() {
            "-t" => o.threads = value.parse().map_err(|_| bad())?,
            "-c" => o.connections = value.parse().map_err(|_| bad())?,
            "-d" => o.duration = Duration::from_secs_f64(value.parse().map_err(|_| bad())?),
            "--len" => o.length = Some(value.parse().map_err(|_| bad())?),
            _ => return Err(USAGE.into()),
        }
    }
    Ok(o)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let o = match options(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let out = match hload::run(&o) {
        Ok(out) => out,
        Err(e) => {
            eprintln!("hload: error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let secs = out.wall.as_secs_f64();
    let cpu = out.user + out.system;
    println!(
        "hload: {} threads, {} connections, http://{}{}",
        o.threads, o.connections, o.host, o.path
    );
    println!(
        "{} requests in {secs:.2}s, {} head + {} body bytes ({} a body), 0 errors",
        out.requests, out.head_bytes, out.body_bytes, out.length
    );
    println!("Requests/sec: {:.2}", out.rate());
    println!(
        "client CPU: {:.3}s user {:.3}s system, {:.1}% of one core, {:.2} us a request",
        out.user.as_secs_f64(),
        out.system.as_secs_f64(),
        100.0 * out.cpu_share(),
        cpu.as_secs_f64() * 1e6 / out.requests as f64
    );
    ExitCode::SUCCESS
}
