//! Shared by the test suites of several crates (included with `#[path]`): finding
//! the external tools a test talks to.

/// Whether the external tool `prog` runs (`prog <version_arg>`). When it doesn't,
/// the test says "skipped" — except under `CI=true`, where scripts/test.sh installs
/// every tool the tests use, so a missing one fails the test.
pub fn tool(prog: &str, version_arg: &str) -> bool {
    let runs = std::process::Command::new(prog)
        .arg(version_arg)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !runs {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{prog} is missing under CI=true (scripts/test.sh installs it)"
        );
        eprintln!("skipped: {prog} is not installed");
    }
    runs
}
