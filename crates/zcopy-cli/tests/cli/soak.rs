//! A 30-second, small-scale run of bench/soak.py against `zcopy serve`: keep-alive
//! clients, churn, slow readers, slowloris clients and malformed requests at once.

use std::path::Path;
use std::process::Command;

#[test]
fn thirty_second_soak_leaks_no_fd_and_fails_no_good_request() {
    if !crate::util::tool("python3", "--version") {
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/soak.py");
    let out = tempfile::tempdir().unwrap();
    let run = Command::new("python3")
        .arg(&script)
        .arg(assert_cmd::cargo::cargo_bin("zcopy"))
        .args(["--seconds", "30", "--sample", "5", "--keepalive", "200"])
        .args(["--ka-interval", "2", "--slow", "10", "--loris", "10"])
        .args(["--churn", "20", "--bad", "5", "--probe", "10", "--out"])
        .arg(out.path())
        .output()
        .unwrap();
    let report = std::fs::read_to_string(out.path().join("soak.md")).unwrap_or_default();
    assert!(
        run.status.success(),
        "soak failed ({}):\n{report}\n{}",
        run.status,
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        report.contains("| no well-formed request failed | pass |"),
        "{report}"
    );
    assert!(
        report.contains("| fds back to the baseline | pass |"),
        "{report}"
    );
    // The load really ran: good requests answered, malformed ones refused.
    let ok: u64 = report
        .split("| no well-formed request failed | pass | ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(ok > 100, "only {ok} good requests answered:\n{report}");
    assert!(
        !report.contains("Malformed requests refused: 0;"),
        "{report}"
    );
}
