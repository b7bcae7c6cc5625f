//! `--access-log FILE --access-log-format common|combined|json`: one line per
//! response with the referer and user agent where the format has them; SIGUSR1
//! reopens the file after it was moved away (logrotate).

use std::time::{Duration, Instant};

use super::reload::{start_with_config, wait_for};
use super::serve::signal;

/// Waits (bounded) until `path` holds `n` lines; returns them.
fn lines(path: &std::path::Path, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let l: Vec<String> = text.lines().map(str::to_owned).collect();
        if l.len() >= n || Instant::now() > deadline {
            return l;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn fetch(addr: &str, path: &str) {
    ureq::get(&format!("http://{addr}{path}"))
        .header("User-Agent", "probe/1.0 \"quoted\"")
        .header("Referer", "http://example.test/from")
        .config()
        .http_status_as_error(false)
        .build()
        .call()
        .unwrap();
}

#[test]
fn formats_carry_referer_and_agent_and_sigusr1_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let www = dir.path().join("www");
    std::fs::create_dir(&www).unwrap();
    std::fs::write(www.join("a.txt"), b"hello").unwrap();
    let cfg = dir.path().join("z.toml");
    std::fs::write(&cfg, "").unwrap();
    let cfg = cfg.to_str().unwrap();
    for (format, want) in [
        ("common", "\"GET /a.txt HTTP/1.1\" 200 5"),
        (
            "combined",
            "\"GET /a.txt HTTP/1.1\" 200 5 \"http://example.test/from\" \"probe/1.0 \\\"quoted\\\"\"",
        ),
        (
            "json",
            "\"request\":\"GET /a.txt HTTP/1.1\",\"status\":200,\"bytes\":5,\"received\":0,\
             \"referer\":\"http://example.test/from\",\"user_agent\":\"probe/1.0 \\\"quoted\\\"\"",
        ),
    ] {
        let log = dir.path().join(format!("{format}.log"));
        let log_s = log.to_str().unwrap();
        let args = ["--access-log", log_s, "--access-log-format", format];
        let (mut child, addr, stderr) = start_with_config(&www, cfg, &args);
        fetch(&addr, "/a.txt");
        let got = lines(&log, 1);
        assert_eq!(got.len(), 1, "{format}: {got:?}");
        assert!(got[0].contains(want), "{format}: {} lacks {want}", got[0]);
        assert!(
            got[0].starts_with(if format == "json" {
                "{\"time\":\""
            } else {
                "127.0.0.1 - - ["
            }),
            "{}",
            got[0]
        );
        if format == "common" {
            assert!(!got[0].contains("probe"), "{}", got[0]);
        }
        if format == "json" {
            // Moved away, then reopened: new lines go to a new file at the old path.
            let moved = dir.path().join("json.log.1");
            std::fs::rename(&log, &moved).unwrap();
            signal(&child, "-USR1");
            wait_for(&stderr, "access log reopened");
            fetch(&addr, "/missing");
            let fresh = lines(&log, 1);
            assert_eq!(fresh.len(), 1, "{fresh:?}");
            assert!(fresh[0].contains("\"status\":404"), "{}", fresh[0]);
            assert_eq!(lines(&moved, 1).len(), 1);
        }
        signal(&child, "-TERM");
        assert_eq!(child.wait().unwrap().code(), Some(0));
    }
}
