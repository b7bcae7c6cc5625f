//! Sources proven not to change (a read-only file system, an `immutable` rule) go
//! by reference to a local peer too; a mutable disk file to the same peer is copied.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use zcopy_http::config::Config;
use zcopy_http::rules::Rule;
use zcopy_http::stats::ServerStats as Stats;

use crate::util::*;

fn by_ref(stats: &Stats) -> u64 {
    stat(stats, "zcopy_body_bytes_by_reference_total")
}

/// GETs `path` over loopback and answers how many body bytes left by reference
/// (the response's last bytes are counted as the worker sends them).
fn lent(srv: &TestServer, stats: &Stats, path: &str, want: &[u8]) -> u64 {
    let before = by_ref(stats);
    let r = request(srv, "GET", path, &[]);
    assert_eq!(r.status, 200, "{path}");
    assert!(r.body == want, "{path}: the file's bytes");
    let start = Instant::now();
    while by_ref(stats) < before + want.len() as u64 && start.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(10));
    }
    by_ref(stats) - before
}

fn serve(root: &Path, rules: Vec<Rule>) -> (TestServer, std::sync::Arc<Stats>) {
    serve_on(root, rules, "127.0.0.1:0".parse().unwrap())
}

fn serve_on(
    root: &Path,
    rules: Vec<Rule>,
    listen: std::net::SocketAddr,
) -> (TestServer, std::sync::Arc<Stats>) {
    TestServer::with_stats(Config {
        root: root.to_path_buf(),
        listen: vec![listen],
        workers: 1,
        io: io_driver(),
        rules,
        ..Config::default()
    })
}

/// An erofs image of `src` mounted read-only from a file, or why not.
pub(crate) fn erofs(src: &Path, at: &Path, img: &Path) -> Result<Mounted, String> {
    if rustix::process::geteuid().as_raw() != 0 {
        return Err("not root (mount -o loop)".into());
    }
    if !have_mkfs_erofs() {
        let _ = Command::new("apt-get")
            .args(["install", "-y", "-qq", "erofs-utils"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        if !have_mkfs_erofs() {
            return Err("mkfs.erofs (erofs-utils) not installed".into());
        }
    }
    let ok = |c: &mut Command| c.output().is_ok_and(|o| o.status.success());
    if !ok(Command::new("mkfs.erofs").arg(img).arg(src)) {
        return Err("mkfs.erofs failed".into());
    }
    std::fs::create_dir_all(at).unwrap();
    if !ok(Command::new("mount")
        .args(["-t", "erofs", "-o", "loop,ro"])
        .arg(img)
        .arg(at))
    {
        return Err("mount -o loop,ro of the erofs image failed".into());
    }
    Ok(Mounted(at.to_path_buf()))
}

fn have_mkfs_erofs() -> bool {
    Command::new("mkfs.erofs")
        .arg("--help")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok()
}

#[test]
fn a_file_on_erofs_is_lent_to_a_loopback_peer_and_an_ext4_file_is_copied() {
    let fx = Fixture::new();
    let src = fx.dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let body = pattern(0, 1 << 20);
    std::fs::write(src.join("ro.bin"), &body).unwrap();
    let mnt = fx.dir.path().join("mnt");
    let _mounted = match erofs(&src, &mnt, &fx.dir.path().join("img.erofs")) {
        Ok(m) => m,
        Err(why) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "erofs under CI=true: {why}"
            );
            eprintln!("skipped: {why}");
            return;
        }
    };
    let (srv, stats) = serve(&mnt, Vec::new());
    assert_eq!(
        lent(&srv, &stats, "/ro.bin", &body),
        body.len() as u64,
        "a file on erofs leaves by reference to a loopback peer"
    );
    srv.stop();
    // The same bytes on the (ext4) disk, to the same peer: copied.
    std::fs::write(fx.root().join("rw.bin"), &body).unwrap();
    let (srv, stats) = serve(&fx.root(), Vec::new());
    assert_eq!(
        lent(&srv, &stats, "/rw.bin", &body),
        0,
        "a mutable file is copied to a local peer"
    );
    srv.stop();
}

#[test]
fn an_immutable_rule_lends_its_files_to_a_loopback_peer_and_others_are_copied() {
    let fx = Fixture::new();
    let body = pattern(0, 1 << 20);
    fx.file("assets/app.bin", &body);
    fx.file("data/app.bin", &body);
    let (srv, stats) = serve(
        &fx.root(),
        vec![Rule {
            glob: "assets/**".into(),
            immutable: Some(true),
            ..Rule::default()
        }],
    );
    assert_eq!(
        lent(&srv, &stats, "/assets/app.bin", &body),
        body.len() as u64,
        "a file under `immutable = true` leaves by reference to a loopback peer"
    );
    assert_eq!(
        lent(&srv, &stats, "/data/app.bin", &body),
        0,
        "a file outside the rule is copied to a local peer"
    );
    srv.stop();
}

/// Trust is no lease waiver: a file under `immutable = true` is lent under a read
/// lease (the tripwire whose break ends the body and closes), seen in /proc/locks
/// while a client that doesn't read holds its send blocked.
#[test]
fn an_immutable_file_is_lent_under_a_read_lease() {
    use std::io::Write;
    use std::os::unix::fs::MetadataExt;
    let fx = Fixture::new();
    let p = fx.root().join("assets/big.bin");
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    write_pattern(&p, 64 << 20);
    let ino = std::fs::metadata(&p).unwrap().ino();
    let (srv, _stats) = serve(
        &fx.root(),
        vec![Rule {
            glob: "assets/**".into(),
            immutable: Some(true),
            ..Rule::default()
        }],
    );
    let mut s = srv.connect();
    s.write_all(b"GET /assets/big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let leased = || {
        std::fs::read_to_string("/proc/locks")
            .unwrap_or_default()
            .lines()
            .any(|l| l.contains("LEASE") && l.contains(&format!(":{ino} ")))
    };
    let start = Instant::now();
    while !leased() && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        leased(),
        "a read lease on the trusted file while it is sent"
    );
    drop(s);
    srv.stop();
}

/// The tripwire: a file under `immutable = true` opened for writing mid-send (the
/// trust was wrong) ends its body and closes the connection; the writer gets in.
#[test]
fn a_trusted_file_opened_for_writing_mid_send_ends_the_body_and_closes() {
    use std::io::{Read, Write};
    let fx = Fixture::new();
    let p = fx.root().join("assets/big.bin");
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    let len = 64u64 << 20;
    write_pattern(&p, len);
    let (srv, stats) = serve(
        &fx.root(),
        vec![Rule {
            glob: "assets/**".into(),
            immutable: Some(true),
            ..Rule::default()
        }],
    );
    let breaks = || stat(&stats, "zcopy_lease_breaks_total");
    let mut s = srv.connect();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(b"GET /assets/big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut first = [0u8; 4096];
    let n = s.read(&mut first).unwrap();
    assert!(first[..n].starts_with(b"HTTP/1.1 200"));
    // Blocks until the server lets the file go (or the kernel's lease-break-time).
    let writer = std::thread::spawn(move || {
        std::fs::OpenOptions::new().write(true).open(&p).unwrap();
    });
    let start = Instant::now();
    while breaks() == 0 && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(breaks(), 1, "the tripwire lease broke");
    writer.join().unwrap();
    // The body ends short and the connection closes (or is reset).
    let mut got = n as u64;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(k) => got += k as u64,
        }
    }
    assert!(got < len, "a short body: {got} of {len}");
    srv.stop();
}

/// `chattr +i` on `path`, lifted again on drop (a tempdir can't remove it otherwise).
struct ImmutableAttr(std::path::PathBuf);

impl ImmutableAttr {
    /// Sets the flag, or says why it can't be set here.
    fn set(path: &Path) -> Result<ImmutableAttr, String> {
        match Command::new("chattr").arg("+i").arg(path).output() {
            Ok(o) if o.status.success() => Ok(ImmutableAttr(path.to_path_buf())),
            Ok(o) => Err(format!(
                "chattr +i failed: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            )),
            Err(e) => Err(format!("chattr not runnable: {e}")),
        }
    }
}

impl Drop for ImmutableAttr {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
    }
}

fn skip_unless_ci(why: &str) {
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "under CI=true: {why}"
    );
    eprintln!("skipped: {why}");
}

/// `STATX_ATTR_IMMUTABLE` (chattr +i) is the same trust as an `immutable` rule: the
/// file is lent to a local peer, with no rule at all; its neighbour is copied.
#[test]
fn a_chattr_immutable_file_is_lent_to_a_loopback_peer() {
    let fx = Fixture::new();
    let body = pattern(0, 1 << 20);
    let frozen = fx.file("frozen.bin", &body);
    fx.file("plain.bin", &body);
    let _attr = match ImmutableAttr::set(&frozen) {
        Ok(a) => a,
        Err(why) => return skip_unless_ci(&why),
    };
    let (srv, stats) = serve(&fx.root(), Vec::new());
    assert_eq!(
        lent(&srv, &stats, "/frozen.bin", &body),
        body.len() as u64,
        "a chattr +i file leaves by reference to a loopback peer"
    );
    assert_eq!(
        lent(&srv, &stats, "/plain.bin", &body),
        0,
        "its mutable neighbour is copied"
    );
    srv.stop();
}

/// The same rules for a peer that is not loopback but still local: a client in
/// another network namespace behind a veth pair (the path containers take). erofs,
/// an `immutable` rule and chattr +i go by reference; a mutable ext4 file is copied.
#[test]
fn sources_proven_not_to_change_are_lent_to_a_veth_peer_and_mutable_files_copied() {
    let Some(pair) = zcopy_netns::VethPair::for_test() else {
        return;
    };
    let fx = Fixture::new();
    let body = pattern(0, 1 << 20);
    fx.file("assets/app.bin", &body);
    fx.file("data/app.bin", &body);
    let frozen = fx.file("frozen.bin", &body);
    let _attr = match ImmutableAttr::set(&frozen) {
        Ok(a) => a,
        Err(why) => return skip_unless_ci(&why),
    };
    let src = fx.dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("ro.bin"), &body).unwrap();
    let mnt = fx.dir.path().join("mnt");
    let _mounted = match erofs(&src, &mnt, &fx.dir.path().join("img.erofs")) {
        Ok(m) => m,
        Err(why) => return skip_unless_ci(&why),
    };
    let listen = std::net::SocketAddr::new(pair.addr_a.into(), 0);
    let root = fx.root();
    let rules = vec![Rule {
        glob: "assets/**".into(),
        immutable: Some(true),
        ..Rule::default()
    }];
    let ((disk, disk_stats), (ro, ro_stats)) = pair
        .a
        .run(move || {
            (
                serve_on(&root, rules, listen),
                serve_on(&mnt, Vec::new(), listen),
            )
        })
        .expect("servers in namespace a");
    let cases = [
        (&ro, &ro_stats, "/ro.bin", true, "a file on erofs"),
        (
            &disk,
            &disk_stats,
            "/assets/app.bin",
            true,
            "a file under `immutable = true`",
        ),
        (&disk, &disk_stats, "/frozen.bin", true, "a chattr +i file"),
        (
            &disk,
            &disk_stats,
            "/data/app.bin",
            false,
            "a mutable ext4 file",
        ),
    ];
    for (srv, stats, path, by_reference, what) in cases {
        let got = pair
            .b
            .run(|| lent(srv, stats, path, &body))
            .expect("client in namespace b");
        let want = if by_reference { body.len() as u64 } else { 0 };
        assert_eq!(got, want, "{what} to a veth peer: bytes by reference");
    }
    disk.stop();
    ro.stop();
}

/// One worker with `zcopy serve`'s snapshot band for loopback peers.
fn serve_hot(root: &Path) -> (TestServer, std::sync::Arc<Stats>) {
    serve_hot_with(root, |_| {})
}

/// [`serve_hot`], with `f` changing the configuration.
fn serve_hot_with(root: &Path, f: impl FnOnce(&mut Config)) -> (TestServer, std::sync::Arc<Stats>) {
    let mut config = Config {
        root: root.to_path_buf(),
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        workers: 1,
        io: io_driver(),
        snapshot_band_loopback: Some(zcopy_http::snapshot::DEFAULT_BAND_LOOPBACK),
        ..Config::default()
    };
    f(&mut config);
    TestServer::with_stats(config)
}

/// GETs /hot.bin (each a whole pattern) until the server answers one from its
/// snapshot (at most 10 s).
fn until_snapshot_hit(srv: &TestServer, stats: &Stats) {
    let start = Instant::now();
    while stat(stats, "zcopy_snapshot_hits_total") == 0 {
        let (r, _) = raw(srv, b"GET /hot.bin HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_pattern(&r.body, 0, "hot.bin before its snapshot");
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no snapshot made"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether `ZCOPY_DISABLE` turns the template path (`tee`) off in this run.
fn tee_forced_off() -> bool {
    zcopy::Forced::from_env()
        .limit(zcopy::EngineKind::Tee)
        .is_some()
}

/// A hot snapshot's responses leave from a template pipe (head and body in one
/// splice, `zcopy::lend`): over one keep-alive connection, whole bodies, a range,
/// a HEAD and a last request with `Connection: close` (another head, another
/// template) all carry the file's exact bytes. With `ZCOPY_DISABLE=tee` the same
/// bodies go by sendfile, just as exact.
#[test]
fn a_hot_snapshot_leaves_from_a_template_with_every_byte_exact() {
    use std::io::Write as _;
    if zcopy::Forced::from_env().switched_off("inotify") {
        eprintln!("skipped: inotify forced off, no snapshots are made");
        return;
    }
    let fx = Fixture::new();
    write_pattern(&fx.root().join("hot.bin"), 64 << 10);
    let (srv, stats) = serve_hot(&fx.root());
    let tee = || stat(&stats, "zcopy_body_bytes_total{engine=\"tee\"}");
    let hits = || stat(&stats, "zcopy_snapshot_hits_total");
    let mut s = srv.connect();
    let mut get = |req: &str| {
        s.write_all(req.as_bytes()).unwrap();
        read_response(&mut s, req.starts_with("HEAD")).expect("a response")
    };
    // Until the snapshot is made the file is sent from memory; then from it.
    let start = Instant::now();
    while hits() == 0 {
        let r = get("GET /hot.bin HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(r.status, 200);
        assert_pattern(&r.body, 0, "hot.bin before its snapshot");
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no snapshot made"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let t0 = tee();
    for i in 0..20 {
        let r = get("GET /hot.bin HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(r.status, 200);
        assert_eq!(r.body.len(), 64 << 10);
        assert_pattern(&r.body, 0, &format!("hot.bin, response {i}"));
    }
    let r = get("GET /hot.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=1000-40999\r\n\r\n");
    assert_eq!(r.status, 206);
    assert_pattern(&r.body, 1000, "a range of hot.bin");
    assert_eq!(r.body.len(), 40_000);
    let r = get("HEAD /hot.bin HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!((r.status, r.body.len()), (200, 0));
    let r = get("GET /hot.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_pattern(&r.body, 0, "hot.bin, the closing response");
    assert!(closed(&mut s), "closed after Connection: close");
    let lent = tee() - t0;
    if tee_forced_off() {
        assert_eq!(lent, 0, "tee forced off: no template");
    } else {
        assert_eq!(lent, 21 * (64 << 10) + 40_000, "every body from a template");
    }
    srv.stop();
}

/// A client that reads late: many pipelined requests fill the socket, so responses
/// leave from templates in parts (the rest kept in the connection's scratch pipe and
/// sent first when the socket drains). Every response is whole and in order.
#[test]
fn a_slow_reader_gets_every_lent_response_whole_and_in_order() {
    use std::io::Write as _;
    if zcopy::Forced::from_env().switched_off("inotify") {
        eprintln!("skipped: inotify forced off, no snapshots are made");
        return;
    }
    let fx = Fixture::new();
    write_pattern(&fx.root().join("hot.bin"), 200 << 10);
    let (srv, stats) = serve_hot(&fx.root());
    until_snapshot_hit(&srv, &stats);
    let t0 = stat(&stats, "zcopy_body_bytes_total{engine=\"tee\"}");
    let s = srv.connect();
    rustix::net::sockopt::set_socket_recv_buffer_size(&s, 32 << 10).unwrap();
    let n = 30;
    let mut reqs = String::new();
    for i in 0..n {
        // Every third asks for a range: its own template, between whole bodies.
        if i % 3 == 2 {
            reqs.push_str("GET /hot.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=5-100004\r\n\r\n");
        } else {
            reqs.push_str("GET /hot.bin HTTP/1.1\r\nHost: x\r\n\r\n");
        }
    }
    (&s).write_all(reqs.as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let mut r = std::io::BufReader::new(&s);
    for i in 0..n {
        let resp = read_response(&mut r, false).expect("a response");
        if i % 3 == 2 {
            assert_eq!(
                (resp.status, resp.body.len()),
                (206, 100_000),
                "response {i}"
            );
            assert_pattern(&resp.body, 5, &format!("range response {i}"));
        } else {
            assert_eq!(
                (resp.status, resp.body.len()),
                (200, 200 << 10),
                "response {i}"
            );
            assert_pattern(&resp.body, 0, &format!("response {i}"));
        }
    }
    let want = if tee_forced_off() {
        0
    } else {
        20 * (200 << 10) + 10 * 100_000
    };
    let start = Instant::now();
    while stat(&stats, "zcopy_body_bytes_total{engine=\"tee\"}") - t0 < want
        && start.elapsed() < Duration::from_secs(2)
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        stat(&stats, "zcopy_body_bytes_total{engine=\"tee\"}") - t0,
        want
    );
    srv.stop();
}

/// A client that stops reading while a response's rest waits in its scratch pipe is
/// dropped after the send timeout, as any other stalled client: the connection
/// ends (it does not wait for room forever), with no more than the responses' bytes.
#[test]
fn a_client_that_stops_reading_mid_lent_response_is_dropped_after_the_send_timeout() {
    use std::io::{Read as _, Write as _};
    if zcopy::Forced::from_env().switched_off("inotify") {
        eprintln!("skipped: inotify forced off, no snapshots are made");
        return;
    }
    let fx = Fixture::new();
    write_pattern(&fx.root().join("hot.bin"), 200 << 10);
    let (srv, stats) = serve_hot_with(&fx.root(), |c| {
        c.send_timeout = Duration::from_millis(500);
    });
    until_snapshot_hit(&srv, &stats);
    let t0 = stat(&stats, "zcopy_body_bytes_total{engine=\"tee\"}");
    let s = srv.connect();
    rustix::net::sockopt::set_socket_recv_buffer_size(&s, 16 << 10).unwrap();
    // 20 MB: more than the socket buffers on both sides take, whatever they grow to.
    let n = 100;
    (&s).write_all(
        "GET /hot.bin HTTP/1.1\r\nHost: x\r\n\r\n"
            .repeat(n)
            .as_bytes(),
    )
    .unwrap();
    // Well past the timeout, read what made it into the socket buffers: then the end.
    std::thread::sleep(Duration::from_millis(2500));
    if !tee_forced_off() {
        assert!(
            stat(&stats, "zcopy_body_bytes_total{engine=\"tee\"}") > t0,
            "the first response was lent"
        );
    }
    // Closed by the server while the client still reads nothing (reading would
    // make room and let the rest out).
    let start = Instant::now();
    while stat(&stats, "zcopy_connections_open") > 0 && start.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        stat(&stats, "zcopy_connections_open"),
        0,
        "the stalled connection is still open past its send timeout"
    );
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut got = Vec::new();
    let end = (&s).read_to_end(&mut got);
    assert!(
        end.is_ok(),
        "the stalled connection was not closed ({end:?} after {} bytes)",
        got.len()
    );
    assert!(
        got.len() < n * (200 << 10),
        "the stalled client got every response ({} bytes): not dropped",
        got.len()
    );
    srv.stop();
}
