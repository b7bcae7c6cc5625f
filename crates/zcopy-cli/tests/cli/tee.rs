//! `zcopy tee`: byte-exact, and no user-space copy when stdin is a pipe.

use std::fs;
use std::io::{Read, Write};
use std::process::{Command, Stdio};

use crate::util::pattern;

fn run_tee(data: &[u8], args: &[&str], dir: &std::path::Path) -> (Vec<u8>, String) {
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("zcopy"))
        .arg("-v")
        .arg("tee")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let data = data.to_vec();
    let feeder = std::thread::spawn(move || stdin.write_all(&data).unwrap());
    let mut out = Vec::new();
    child.stdout.take().unwrap().read_to_end(&mut out).unwrap();
    feeder.join().unwrap();
    let res = child.wait_with_output().unwrap();
    assert!(res.status.success());
    (out, String::from_utf8_lossy(&res.stderr).into_owned())
}

#[test]
fn pipe_to_pipe_and_files_is_byte_exact_and_zero_copy() {
    let dir = tempfile::tempdir().unwrap();
    let data = pattern((5 << 20) + 3, 4);
    let (out, log) = run_tee(&data, &["a", "b"], dir.path());
    assert!(out == data, "stdout differs");
    assert!(fs::read(dir.path().join("a")).unwrap() == data);
    assert!(fs::read(dir.path().join("b")).unwrap() == data);
    assert!(log.contains("zero-copy (tee + splice)"), "{log}");
}

#[test]
fn append_mode_appends() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("log"), b"first\n").unwrap();
    let (out, _) = run_tee(b"second\n", &["-a", "log"], dir.path());
    assert_eq!(out, b"second\n");
    assert_eq!(
        fs::read(dir.path().join("log")).unwrap(),
        b"first\nsecond\n"
    );
}

#[test]
fn file_stdin_falls_back_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let data = pattern(300_000, 8);
    fs::write(dir.path().join("in"), &data).unwrap();
    let res = Command::new(assert_cmd::cargo::cargo_bin("zcopy"))
        .args(["-v", "tee", "copy"])
        .current_dir(dir.path())
        .stdin(fs::File::open(dir.path().join("in")).unwrap())
        .output()
        .unwrap();
    assert!(res.status.success());
    assert!(res.stdout == data);
    assert!(fs::read(dir.path().join("copy")).unwrap() == data);
    let log = String::from_utf8_lossy(&res.stderr);
    assert!(log.contains("not a pipe"), "{log}");
}

/// strace counts the data syscalls: with pipes at both ends, no read or write moves
/// the data (only tee and splice do).
#[test]
fn strace_shows_no_read_or_write_of_the_data() {
    if !crate::util::tool("strace", "-V") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = pattern(8 << 20, 6);
    fs::write(dir.path().join("in"), &data).unwrap();
    let zcopy = assert_cmd::cargo::cargo_bin("zcopy");
    let script = format!(
        "cat in | strace -f -c -o trace.txt -e trace=read,write,tee,splice {} -q tee out | cat > stdout",
        zcopy.display()
    );
    let st = Command::new("sh")
        .arg("-c")
        .arg(&script)
        .current_dir(dir.path())
        .status()
        .unwrap();
    assert!(st.success());
    assert!(fs::read(dir.path().join("out")).unwrap() == data);
    assert!(fs::read(dir.path().join("stdout")).unwrap() == data);
    let trace = fs::read_to_string(dir.path().join("trace.txt")).unwrap();
    let calls = |name: &str| -> u64 {
        trace
            .lines()
            .find(|l| l.split_whitespace().last() == Some(name))
            .and_then(|l| l.split_whitespace().nth(3).and_then(|c| c.parse().ok()))
            .unwrap_or(0)
    };
    assert!(calls("tee") > 0 && calls("splice") > 0, "{trace}");
    // A handful of reads happen at start-up (ELF loading, /proc); 8 MiB through
    // read/write would take at least 64 calls of 128 KiB.
    assert!(calls("read") + calls("write") < 40, "{trace}");
}

/// tee(1)'s rules: a file that can't be opened, or fails on write (ENOSPC: /dev/full),
/// is named and dropped; stdout and the other files get every byte; exit 1.
#[test]
fn a_failing_output_is_named_and_the_others_complete() {
    let dir = tempfile::tempdir().unwrap();
    let data = pattern((3 << 20) + 5, 9);
    for copy in [false, true] {
        let mut args = vec!["/dev/full", "ok1", "no/such/dir/x", "ok2"];
        if copy {
            args.insert(0, "--copy");
        }
        let mut child = Command::new(assert_cmd::cargo::cargo_bin("zcopy"))
            .arg("tee")
            .args(&args)
            .current_dir(dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let input = data.clone();
        let feeder = std::thread::spawn(move || stdin.write_all(&input).unwrap());
        let mut out = Vec::new();
        child.stdout.take().unwrap().read_to_end(&mut out).unwrap();
        feeder.join().unwrap();
        let res = child.wait_with_output().unwrap();
        let log = String::from_utf8_lossy(&res.stderr);
        assert_eq!(res.status.code(), Some(1), "copy={copy}: {log}");
        assert!(out == data, "copy={copy}: stdout has {} bytes", out.len());
        for ok in ["ok1", "ok2"] {
            assert!(fs::read(dir.path().join(ok)).unwrap() == data, "{ok}");
        }
        assert!(log.contains("'/dev/full'"), "{log}");
        assert!(log.contains("'no/such/dir/x'"), "{log}");
        assert_eq!(log.matches("(os error 28)").count(), 1, "{log}");
    }
}
