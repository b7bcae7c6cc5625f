//! SIGHUP reloads the config file while clients keep asking: no request fails, the
//! new rule applies, and a file that fails to load leaves the running config in place.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use super::serve::{bin, signal};

/// Starts `zcopy serve --config cfg`; returns it, its address and its stderr lines.
pub(crate) fn start_with_config(
    root: &std::path::Path,
    cfg: &str,
    extra: &[&str],
) -> (std::process::Child, String, mpsc::Receiver<String>) {
    let mut cmd = Command::new(bin());
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--config", cfg])
        .args(extra)
        .arg(root)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped());
    let (mut child, line) = super::serve::launch(cmd);
    let addr = line
        .split(' ')
        .find_map(|w| w.strip_prefix("http://"))
        .unwrap()
        .trim_end_matches('/')
        .to_owned();
    let (tx, rx) = mpsc::channel();
    let err = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    (child, addr, rx)
}

/// Waits (bounded) for a stderr line containing `what`.
pub(crate) fn wait_for(lines: &mpsc::Receiver<String>, what: &str) {
    let mut seen = Vec::new();
    loop {
        match lines.recv_timeout(Duration::from_secs(20)) {
            Ok(l) if l.contains(what) => return,
            Ok(l) => seen.push(l),
            Err(_) => panic!("no {what:?} on stderr; saw {seen:#?}"),
        }
    }
}

fn gen_of(addr: &str, path: &str) -> (u16, Option<String>) {
    let resp = ureq::get(&format!("http://{addr}{path}"))
        .config()
        .http_status_as_error(false)
        .build()
        .call()
        .unwrap();
    let g = resp
        .headers()
        .get("x-gen")
        .map(|v| v.to_str().unwrap().to_owned());
    (resp.status().as_u16(), g)
}

#[test]
fn sighup_reloads_under_load_without_failing_a_request() {
    let dir = tempfile::tempdir().unwrap();
    let www = dir.path().join("www");
    std::fs::create_dir_all(www.join("private")).unwrap();
    std::fs::write(www.join("a.txt"), vec![b'a'; 1024]).unwrap();
    std::fs::write(www.join("big.bin"), vec![b'b'; 4 << 20]).unwrap();
    std::fs::write(www.join("private/s.txt"), b"secret").unwrap();
    let cfg = dir.path().join("z.toml").to_str().unwrap().to_owned();
    std::fs::write(&cfg, "header = [\"X-Gen: 1\"]\n").unwrap();
    let (mut child, addr, lines) = start_with_config(&www, &cfg, &["--workers", "2"]);
    assert_eq!(gen_of(&addr, "/private/s.txt"), (200, Some("1".into())));

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..3)
        .map(|i| {
            let (stop, done, addr) = (stop.clone(), done.clone(), addr.clone());
            std::thread::spawn(move || {
                let path = if i == 0 { "/big.bin" } else { "/a.txt" };
                let want = if i == 0 { 4 << 20 } else { 1024 };
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) && n < 20_000 {
                    let mut resp = ureq::get(&format!("http://{addr}{path}"))
                        .call()
                        .unwrap_or_else(|e| panic!("request {n} for {path} failed: {e}"));
                    let body = resp.body_mut().with_config().limit(8 << 20).read_to_vec();
                    assert_eq!(body.unwrap().len(), want, "request {n} for {path}");
                    n += 1;
                    done.fetch_add(1, Ordering::Relaxed);
                }
                n
            })
        })
        .collect();
    while done.load(Ordering::Relaxed) < 50 {
        std::thread::sleep(Duration::from_millis(10));
    }
    for round in 2..=4 {
        std::fs::write(
            &cfg,
            format!(
                "header = [\"X-Gen: {round}\"]\n[[rule]]\nglob = \"private/**\"\n\
                 error-page = []\nauth = [\"u:$2y$04$abcdefghijklmnopqrstuu5rZ5HlXzqLi6PGvHSvZ7c9yM1rWSHTy\"]\n"
            ),
        )
        .unwrap();
        signal(&child, "-HUP");
        wait_for(&lines, "configuration reloaded");
        assert_eq!(gen_of(&addr, "/a.txt"), (200, Some(round.to_string())));
        assert_eq!(gen_of(&addr, "/private/s.txt").0, 401);
    }
    // A broken file is logged and the running configuration stays.
    std::fs::write(&cfg, "header = [\"X-Gen: 9\"]\nbogus = true\n").unwrap();
    signal(&child, "-HUP");
    wait_for(&lines, "reload failed");
    assert_eq!(gen_of(&addr, "/a.txt"), (200, Some("4".into())));

    let before = done.load(Ordering::Relaxed);
    while done.load(Ordering::Relaxed) < before + 20 {
        std::thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Ordering::Relaxed);
    let total: u64 = clients.into_iter().map(|c| c.join().unwrap()).sum();
    assert!(total >= 70, "{total}");
    signal(&child, "-TERM");
    assert_eq!(child.wait().unwrap().code(), Some(0));
}
