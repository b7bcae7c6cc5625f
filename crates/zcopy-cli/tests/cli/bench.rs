//! `zcopy bench --calibrate` and what `--io auto` makes of the profile it writes.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};

use zcopy::profile::Profile;

use crate::serve::{bin, launch, signal};
use crate::util::{stdout_of, zcopy};

/// The line `zcopy engines` prints about `--io auto` under the profile at `profile`
/// (an empty path: no profile).
fn engines_auto_line(profile: &Path) -> String {
    let text = stdout_of(zcopy(&["engines"]).env("ZCOPY_PROFILE", profile));
    text.lines()
        .find(|l| l.starts_with("serve --io auto runs the "))
        .unwrap_or_else(|| panic!("no --io auto line in:\n{text}"))
        .to_string()
}

/// Whether the server may run its io_uring driver here (else auto must say why not).
fn uring_allowed() -> Result<(), String> {
    if std::env::var("ZCOPY_DISABLE").is_ok_and(|v| v.split(',').any(|e| e.trim() == "uring")) {
        return Err("io_uring forced off by ZCOPY_DISABLE".into());
    }
    zcopy::ring::probe()
}

const URING_FASTER: &str = "io epoll 1024 100000\nio uring 1024 120000\n\
    io epoll 65536 50000\nio uring 65536 75000\n";
const URING_SLOWER: &str = "io epoll 1024 170000\nio uring 1024 164900\n\
    io epoll 65536 53000\nio uring 65536 39220\n";

#[test]
fn calibration_writes_io_lines_for_both_event_loops() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("profile");
    let out = zcopy(&[
        "bench",
        "--calibrate",
        "--quick",
        "--scenarios",
        "file-pipe",
        "--sizes",
        "4K",
        "--runs",
        "1",
        "--no-warmup",
        "--dir",
    ])
    .arg(dir.path())
    .arg("--profile")
    .arg(&path)
    .assert()
    .success()
    .get_output()
    .clone();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("event loops"), "{stdout}");
    let profile = Profile::read(&path).unwrap();
    assert!(
        !profile.entries().is_empty(),
        "the engine lines are still there"
    );
    let mut drivers = vec!["epoll"];
    match uring_allowed() {
        Ok(()) => drivers.push("uring"),
        Err(why) => {
            println!("skipped: the uring figures ({why})");
            assert!(stdout.contains("uring: skipped: "), "{stdout}");
        }
    }
    for d in &drivers {
        for size in [1024, 65536] {
            let n = profile.io_figure(d, size);
            assert!(n.is_some_and(|n| n > 0), "io {d} {size}: {n:?}\n{stderr}");
        }
    }
    assert_eq!(profile.io_figures().len(), 2 * drivers.len());
    assert!(stderr.contains("serve --io auto will run "), "{stderr}");
    // What `engines` reads from it: the figures, never which one won (no timing asserted).
    let line = engines_auto_line(&path);
    if drivers.len() == 2 {
        assert!(line.contains("(calibration: uring "), "{line}");
        assert!(line.contains("x epoll at 1 KiB, "), "{line}");
    } else {
        assert!(line.contains("no io_uring figures"), "{line}");
    }
    assert!(
        std::fs::read_dir(dir.path()).unwrap().count() == 1,
        "scratch left"
    );
}

#[test]
fn auto_follows_the_io_lines_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let line = engines_auto_line(Path::new(""));
    assert_eq!(
        line,
        "serve --io auto runs the epoll driver for plain HTTP (not calibrated for the event \
         loop (zcopy bench --calibrate)); HTTPS listeners run epoll."
    );

    let slower = dir.path().join("slower");
    std::fs::write(&slower, URING_SLOWER).unwrap();
    assert!(
        engines_auto_line(&slower).starts_with(
            "serve --io auto runs the epoll driver for plain HTTP (calibration: uring 0.97x \
             epoll at 1 KiB, 0.74x at 64 KiB)"
        ),
        "{}",
        engines_auto_line(&slower)
    );

    let faster = dir.path().join("faster");
    std::fs::write(&faster, URING_FASTER).unwrap();
    let text = stdout_of(zcopy(&["engines"]).env("ZCOPY_PROFILE", &faster));
    assert!(text.contains("(0 engine lines, 4 io lines)"), "{text}");
    let line = engines_auto_line(&faster);
    match uring_allowed() {
        Ok(()) => assert!(
            line.starts_with(
                "serve --io auto runs the uring driver for plain HTTP (calibration: uring \
                 1.20x epoll at 1 KiB, 1.50x at 64 KiB)"
            ),
            "{line}"
        ),
        Err(why) => {
            println!("skipped: auto running uring ({why})");
            assert!(line.contains("(io_uring unavailable: "), "{line}");
        }
    }
}

#[test]
fn serve_v_says_which_driver_auto_runs_and_why() {
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("profile");
    std::fs::write(&profile, URING_FASTER).unwrap();
    let mut cmd = Command::new(bin());
    cmd.env("ZCOPY_PROFILE", &profile)
        .env_remove("RUST_LOG")
        .args(["-v", "serve", "--listen", "127.0.0.1:0"])
        .arg(dir.path())
        .stderr(Stdio::piped());
    let (mut child, _) = launch(cmd);
    signal(&child, "-TERM");
    assert_eq!(child.wait().unwrap().code(), Some(0));
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let stderr = without_colours(&stderr);
    let line = stderr
        .lines()
        .find(|l| l.contains("I/O driver: "))
        .unwrap_or_else(|| panic!("no I/O driver line in:\n{stderr}"));
    match uring_allowed() {
        Ok(()) => assert!(
            line.contains("driver=uring") && line.contains("calibration: uring 1.20x"),
            "{line}"
        ),
        Err(_) => assert!(
            line.contains("driver=epoll") && line.contains("io_uring unavailable"),
            "{line}"
        ),
    }
}

/// `text` without ANSI colour sequences (`ESC [ ... m`).
fn without_colours(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('\x1b') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        rest = rest.find('m').map_or("", |m| &rest[m + 1..]);
    }
    out.push_str(rest);
    out
}
