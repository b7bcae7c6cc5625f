//! `zcopy send` → `zcopy recv` over loopback: trees, resume, hostile senders, failures.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::util::pattern;

fn bin() -> std::path::PathBuf {
    assert_cmd::cargo::cargo_bin("zcopy")
}

/// A `zcopy recv --once` on an ephemeral port; returns it and its address.
fn start_recv(out: &Path, extra: &[&str]) -> (Child, String) {
    spawn_recv(out, &[&["--once"], extra].concat())
}

/// A `zcopy recv` on an ephemeral port with `args`; returns it and its address.
fn spawn_recv(out: &Path, args: &[&str]) -> (Child, String) {
    start_recv_in(Command::new(bin()), "127.0.0.1:0", out, args)
}

/// A `zcopy recv` run as `cmd` (e.g. inside a network namespace), listening on
/// `listen`, with `args`.
pub fn start_recv_in(mut cmd: Command, listen: &str, out: &Path, args: &[&str]) -> (Child, String) {
    let mut child = cmd
        .args(["recv", "--listen", listen, "--out"])
        .arg(out)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line.trim().rsplit(' ').next().unwrap().to_string();
    (child, addr)
}

fn send(addr: &str, args: &[&Path], extra: &[&str]) -> std::process::Output {
    Command::new(bin())
        .arg("send")
        .args(args)
        .args(["--to", addr])
        .args(extra)
        .output()
        .unwrap()
}

fn make_tree(root: &Path) {
    fs::create_dir_all(root.join("sub/deeper")).unwrap();
    fs::create_dir_all(root.join("empty dir")).unwrap();
    fs::write(root.join("a.bin"), pattern((1 << 20) + 7, 1)).unwrap();
    fs::write(root.join("sub/zero"), b"").unwrap();
    fs::write(root.join("sub/deeper/odd name ü ?#%.txt"), b"odd").unwrap();
    fs::write(root.join("sub/one"), b"1").unwrap();
}

fn assert_same_tree(a: &Path, b: &Path) {
    let out = Command::new("diff")
        .arg("-r")
        .arg(a)
        .arg(b)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "trees differ: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn tree_and_file_arrive_byte_exact_with_every_engine_pair() {
    for (send_engine, recv_engine) in [
        ("auto", "auto"),
        ("sendfile", "splice"),
        ("sendfile", "direct"),
        ("read-write", "read-write"),
        ("splice", "read-write"),
        ("mmap", "splice"),
    ] {
        let src = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        make_tree(&src.path().join("tree"));
        fs::write(src.path().join("single"), pattern(3 << 20, 7)).unwrap();
        let (mut recv, addr) = start_recv(out.path(), &["--engine", recv_engine]);
        let res = send(
            &addr,
            &[&src.path().join("tree"), &src.path().join("single")],
            &["--engine", send_engine, "--verify"],
        );
        assert!(
            res.status.success(),
            "{send_engine}/{recv_engine}: {}",
            String::from_utf8_lossy(&res.stderr)
        );
        assert!(recv.wait().unwrap().success());
        assert_same_tree(&src.path().join("tree"), &out.path().join("tree"));
        assert_eq!(
            fs::read(src.path().join("single")).unwrap(),
            fs::read(out.path().join("single")).unwrap()
        );
        let leftovers: Vec<_> = fs::read_dir(out.path())
            .unwrap()
            .filter_map(|e| {
                let n = e.unwrap().file_name().to_string_lossy().into_owned();
                n.ends_with(".part").then_some(n)
            })
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}

#[test]
fn interrupted_send_resumes_byte_exact() {
    let src = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let data = pattern(8 << 20, 5);
    fs::write(src.path().join("big"), &data).unwrap();
    // A slow sender, killed part-way.
    let (mut recv, addr) = start_recv(out.path(), &[]);
    let mut sender = Command::new(bin())
        .args(["send"])
        .arg(src.path().join("big"))
        .args(["--to", &addr, "--limit-rate", "4M"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    sender.kill().unwrap();
    sender.wait().unwrap();
    assert!(
        !recv.wait().unwrap().success(),
        "receiver must report the broken transfer"
    );
    assert!(
        !out.path().join("big").exists(),
        "an incomplete file must not have the final name"
    );
    let part: Vec<_> = fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(part.len(), 1, "{part:?}");
    let kept = fs::metadata(&part[0]).unwrap().len();
    assert!(kept > 0 && kept < data.len() as u64, "kept {kept}");
    // Again: it resumes from what is there.
    let (mut recv, addr) = start_recv(out.path(), &[]);
    let res = send(&addr, &[&src.path().join("big")], &["--verify"]);
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    assert!(recv.wait().unwrap().success());
    assert!(fs::read(out.path().join("big")).unwrap() == data);
    let summary = String::from_utf8_lossy(&res.stderr);
    assert!(
        summary.contains(&format!("({kept} already there)")),
        "{summary}"
    );
}

/// Speaks the protocol by hand, as a hostile sender would.
fn hostile(addr: &str, path: &[u8], size: u64, body: &[u8]) -> (bool, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    zcopy_net::proto::write_hello(&mut s, 0).unwrap();
    zcopy_net::proto::read_hello(&mut s).unwrap();
    let e = zcopy_net::proto::Entry {
        kind: zcopy_net::proto::Kind::File,
        mode: 0o644,
        mtime_sec: 0,
        mtime_nsec: 0,
        size,
        path: path.to_vec(),
    };
    e.write(&mut s).unwrap();
    let _ = s.write_all(body);
    match zcopy_net::proto::Reply::read(&mut s) {
        Ok(r) => (r.ok, r.message),
        Err(e) => (false, e.to_string()),
    }
}

#[test]
fn hostile_sender_writes_nothing_outside_out() {
    let base = tempfile::tempdir().unwrap();
    let out = base.path().join("out");
    let outside = base.path().join("outside");
    fs::create_dir_all(&out).unwrap();
    fs::create_dir_all(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, out.join("link")).unwrap();
    let evil: [&[u8]; 6] = [
        b"../escape",
        b"/tmp/zcopy-abs-escape",
        b"a/../../escape",
        b"link/escape",
        b"ok\0x",
        b"./x",
    ];
    for path in evil {
        let (mut recv, addr) = start_recv(&out, &[]);
        let (ok, msg) = hostile(&addr, path, 4, b"evil");
        assert!(!ok, "{:?} accepted", String::from_utf8_lossy(path));
        assert!(!msg.is_empty());
        assert!(!recv.wait().unwrap().success());
    }
    assert!(
        fs::read_dir(&outside).unwrap().next().is_none(),
        "something escaped"
    );
    assert!(!base.path().join("escape").exists());
    assert!(!Path::new("/tmp/zcopy-abs-escape").exists());
    // Oversize header: a path length over the limit is refused before it is read.
    let (mut recv, addr) = start_recv(&out, &[]);
    let mut s = TcpStream::connect(&addr).unwrap();
    zcopy_net::proto::write_hello(&mut s, 0).unwrap();
    zcopy_net::proto::read_hello(&mut s).unwrap();
    let mut header = vec![1u8; 25];
    header.extend_from_slice(&60000u16.to_be_bytes());
    s.write_all(&header).unwrap();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    assert!(!recv.wait().unwrap().success());
    // Size limit.
    let (mut recv, addr) = start_recv(&out, &["--max-size", "3"]);
    let (ok, msg) = hostile(&addr, b"big", 4, b"four");
    assert!(!ok && msg.contains("limit"), "{msg}");
    assert!(!recv.wait().unwrap().success());
    assert!(!out.join("big").exists());
}

#[test]
fn existing_files_need_force() {
    let src = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    fs::write(src.path().join("f"), b"new").unwrap();
    fs::write(out.path().join("f"), b"old!").unwrap();
    let (mut recv, addr) = start_recv(out.path(), &[]);
    let res = send(&addr, &[&src.path().join("f")], &[]);
    assert_eq!(res.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&res.stderr).contains("--force"));
    assert!(!recv.wait().unwrap().success());
    assert_eq!(fs::read(out.path().join("f")).unwrap(), b"old!");
    let (mut recv, addr) = start_recv(out.path(), &["--force"]);
    assert!(send(&addr, &[&src.path().join("f")], &[]).status.success());
    assert!(recv.wait().unwrap().success());
    assert_eq!(fs::read(out.path().join("f")).unwrap(), b"new");
}

#[test]
fn receiver_gone_or_refused_connection_fails_the_sender() {
    let src = tempfile::tempdir().unwrap();
    fs::write(src.path().join("f"), pattern(1 << 20, 2)).unwrap();
    // Nobody listening.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    drop(l);
    let res = send(&addr, &[&src.path().join("f")], &[]);
    assert_eq!(
        res.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    // A receiver that closes right after the hello.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let t = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        zcopy_net::proto::read_hello(&mut s).unwrap();
        zcopy_net::proto::write_hello(&mut s, 3).unwrap();
    });
    let res = send(&addr, &[&src.path().join("f")], &[]);
    t.join().unwrap();
    assert_eq!(res.status.code(), Some(1));
    // A missing local file is a usage error.
    let res = send("127.0.0.1:9", &[&src.path().join("missing")], &[]);
    assert_eq!(res.status.code(), Some(2));
}

/// 1 GiB (sparse at the source, real at the destination) arrives byte-exact.
#[test]
fn one_gib_arrives_byte_exact() {
    use std::os::unix::fs::FileExt;
    let src = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let path = src.path().join("gib");
    let f = fs::File::create(&path).unwrap();
    f.set_len(1 << 30).unwrap();
    for (i, at) in [0u64, 4095, 1 << 20, (1 << 29) + 3, (1 << 30) - 1]
        .into_iter()
        .enumerate()
    {
        f.write_all_at(&[i as u8 + 1], at).unwrap();
    }
    drop(f);
    let (mut recv, addr) = start_recv(out.path(), &[]);
    let res = send(&addr, &[&path], &[]);
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    assert!(recv.wait().unwrap().success());
    let st = Command::new("cmp")
        .arg(&path)
        .arg(out.path().join("gib"))
        .status()
        .unwrap();
    assert!(st.success(), "1 GiB copy differs");
}

/// A receiver without room refuses the file; the sender exits 1 and nothing that
/// looks complete is left.
#[test]
fn receiver_disk_full_fails_the_sender() {
    let base = tempfile::tempdir().unwrap();
    let out = base.path().join("small");
    fs::create_dir(&out).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&out)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("skipped: cannot mount a small tmpfs here (needs root)");
        return;
    }
    fs::write(base.path().join("big"), pattern(4 << 20, 3)).unwrap();
    let (mut recv, addr) = start_recv(&out, &[]);
    let res = send(&addr, &[&base.path().join("big")], &[]);
    let recv_ok = recv.wait().unwrap().success();
    let left: Vec<_> = fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let _ = Command::new("umount").arg(&out).status();
    assert_eq!(
        res.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    assert!(
        String::from_utf8_lossy(&res.stderr).contains("no space"),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    assert!(!recv_ok);
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn connections_without_a_hello_are_not_the_once_sender() {
    let src = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    fs::write(src.path().join("f"), pattern(100_000, 4)).unwrap();
    let (mut recv, addr) = start_recv(out.path(), &[]);
    // A port probe: connects and closes.
    drop(TcpStream::connect(&addr).unwrap());
    // A health check speaking another protocol: closed by the receiver.
    let mut other = TcpStream::connect(&addr).unwrap();
    other.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut rest = Vec::new();
    let _ = other.read_to_end(&mut rest);
    // Half a hello, then silence, kept open while the real sender comes.
    let mut stalled = TcpStream::connect(&addr).unwrap();
    stalled.write_all(b"ZCP").unwrap();
    let res = send(&addr, &[&src.path().join("f")], &["--verify"]);
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    let status = recv.wait().unwrap();
    assert!(status.success(), "recv --once: {status}");
    assert_eq!(
        fs::read(out.path().join("f")).unwrap(),
        fs::read(src.path().join("f")).unwrap()
    );
    drop(stalled);
}

/// Waits for `child` at most `limit`; kills it and panics past that.
fn wait_bounded(child: &mut Child, limit: Duration, what: &str) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what} still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A `zcopy send` of `file` at 128 KiB/s (8 MiB: about a minute), started once the
/// transfer is under way (its `.part` file exists in `out`).
fn start_slow_sender(file: &Path, addr: &str, out: &Path) -> Child {
    let slow = Command::new(bin())
        .arg("send")
        .arg(file)
        .args(["--to", addr, "--limit-rate", "128k"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = (0..400).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        !crate::util::leftovers(out).is_empty()
    });
    assert!(started, "the slow sender never started");
    slow
}

#[test]
fn a_slow_sender_does_not_hold_another() {
    let src = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    fs::write(src.path().join("slow"), pattern(8 << 20, 6)).unwrap();
    fs::write(src.path().join("quick"), pattern(300_000, 7)).unwrap();
    let (mut recv, addr) = spawn_recv(out.path(), &[]);
    let mut slow = start_slow_sender(&src.path().join("slow"), &addr, out.path());
    let mut quick = Command::new(bin())
        .arg("send")
        .arg(src.path().join("quick"))
        .args(["--to", &addr, "--verify"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_bounded(&mut quick, Duration::from_secs(60), "the second sender");
    assert!(status.success(), "second sender: {status}");
    assert_eq!(
        fs::read(out.path().join("quick")).unwrap(),
        fs::read(src.path().join("quick")).unwrap()
    );
    // The second sender finished while the first was still sending.
    let still = slow.try_wait().unwrap();
    slow.kill().ok();
    slow.wait().unwrap();
    recv.kill().unwrap();
    recv.wait().unwrap();
    assert!(still.is_none(), "the slow sender ended first: {still:?}");
    assert!(!out.path().join("slow").exists());
}

#[test]
fn a_sender_that_stalls_mid_file_is_dropped_after_the_idle_timeout() {
    let out = tempfile::tempdir().unwrap();
    let (mut recv, addr) = start_recv(out.path(), &["--idle-timeout", "1"]);
    let mut s = TcpStream::connect(&addr).unwrap();
    zcopy_net::proto::write_hello(&mut s, 0).unwrap();
    zcopy_net::proto::read_hello(&mut s).unwrap();
    zcopy_net::proto::Entry {
        kind: zcopy_net::proto::Kind::File,
        mode: 0o644,
        mtime_sec: 0,
        mtime_nsec: 0,
        size: 1 << 20,
        path: b"stalled".to_vec(),
    }
    .write(&mut s)
    .unwrap();
    assert!(zcopy_net::proto::Reply::read(&mut s).unwrap().ok);
    s.write_all(&[7u8; 1000]).unwrap();
    // Then nothing, with the connection open.
    let status = wait_bounded(&mut recv, Duration::from_secs(60), "recv");
    assert!(!status.success());
    let mut err = String::new();
    recv.stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(err.contains("failed"), "{err}");
    assert!(!out.path().join("stalled").exists());
    drop(s);
}

#[test]
fn max_senders_bounds_concurrent_transfers_and_the_next_one_waits() {
    let src = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    fs::write(src.path().join("slow"), pattern(8 << 20, 8)).unwrap();
    fs::write(src.path().join("next"), pattern(50_000, 9)).unwrap();
    let (mut recv, addr) = spawn_recv(out.path(), &["--max-senders", "1"]);
    let mut slow = start_slow_sender(&src.path().join("slow"), &addr, out.path());
    let mut next = Command::new(bin())
        .arg("send")
        .arg(src.path().join("next"))
        .args(["--to", &addr])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Whatever time it is given, the second sender can't finish while the only slot
    // is taken.
    std::thread::sleep(Duration::from_secs(1));
    let early = next.try_wait().unwrap();
    slow.kill().unwrap();
    slow.wait().unwrap();
    let status = wait_bounded(&mut next, Duration::from_secs(60), "the waiting sender");
    recv.kill().unwrap();
    recv.wait().unwrap();
    assert!(
        early.is_none(),
        "a second sender ran beside --max-senders 1"
    );
    assert!(status.success(), "the waiting sender: {status}");
    assert_eq!(
        fs::read(out.path().join("next")).unwrap(),
        fs::read(src.path().join("next")).unwrap()
    );
}

/// A file `name` in `dir` holding `data`, with a fixed mtime; returns its path.
fn file_at(dir: &Path, name: &str, data: &[u8]) -> std::path::PathBuf {
    let p = dir.join(name);
    fs::write(&p, data).unwrap();
    fs::File::options()
        .write(true)
        .open(&p)
        .unwrap()
        .set_modified(std::time::UNIX_EPOCH + Duration::from_secs(1_600_000_000))
        .unwrap();
    p
}

/// The hello has one deadline, not one per read: a connection dripping a byte every
/// 300 ms is dropped after the 1 s hello limit, before its 10-byte hello completes
/// (it used to be served: every single read came within the limit).
#[test]
fn a_dripping_hello_is_dropped_at_one_deadline() {
    let out = tempfile::tempdir().unwrap();
    let (mut recv, addr) = start_recv(out.path(), &["--idle-timeout", "1"]);
    let mut s = TcpStream::connect(&addr).unwrap();
    let mut hello = Vec::new();
    zcopy_net::proto::write_hello(&mut hello, 0).unwrap();
    for b in hello {
        if s.write_all(&[b]).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let answered = zcopy_net::proto::read_hello(&mut s).is_ok();
    recv.kill().unwrap();
    recv.wait().unwrap();
    assert!(
        !answered,
        "a hello taking 3 s was accepted with a 1 s limit"
    );
}

/// A `.part` file that is a hard link to a file outside `--out` is not written
/// through: it is replaced by a fresh one, and the outside file keeps its bytes.
#[test]
fn a_hard_linked_part_file_is_not_written_through() {
    let base = tempfile::tempdir().unwrap();
    let (src, out) = (base.path().join("src"), base.path().join("out"));
    fs::create_dir_all(&src).unwrap();
    fs::create_dir_all(&out).unwrap();
    let data = pattern(100_000, 5);
    let f = file_at(&src, "f", &data);
    let victim = base.path().join("victim");
    fs::write(&victim, b"precious").unwrap();
    fs::hard_link(&victim, out.join(".f.zcopy-100000-1600000000.part")).unwrap();
    let (mut recv, addr) = start_recv(&out, &[]);
    let res = send(&addr, &[&f], &[]);
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    assert!(recv.wait().unwrap().success());
    assert_eq!(fs::read(&victim).unwrap(), b"precious");
    assert!(fs::read(out.join("f")).unwrap() == data);
}

/// A symlink under the final name is not replaced without --force (the sender is
/// told the receiver can pass it), and its target is untouched either way.
#[test]
fn an_existing_symlink_is_replaced_only_with_force() {
    let base = tempfile::tempdir().unwrap();
    let (src, out) = (base.path().join("src"), base.path().join("out"));
    fs::create_dir_all(&src).unwrap();
    fs::create_dir_all(&out).unwrap();
    let f = file_at(&src, "f", b"new bytes");
    fs::write(base.path().join("target"), b"target bytes").unwrap();
    std::os::unix::fs::symlink(base.path().join("target"), out.join("f")).unwrap();
    let (mut recv, addr) = start_recv(&out, &[]);
    let res = send(&addr, &[&f], &[]);
    let err = String::from_utf8_lossy(&res.stderr);
    assert_eq!(res.status.code(), Some(1), "{err}");
    assert!(err.contains("the receiver can pass --force"), "{err}");
    assert!(!recv.wait().unwrap().success());
    assert!(fs::symlink_metadata(out.join("f")).unwrap().is_symlink());
    let (mut recv, addr) = start_recv(&out, &["--force"]);
    assert!(send(&addr, &[&f], &[]).status.success());
    assert!(recv.wait().unwrap().success());
    assert_eq!(fs::read(out.join("f")).unwrap(), b"new bytes");
    assert_eq!(
        fs::read(base.path().join("target")).unwrap(),
        b"target bytes"
    );
}

/// A directory entry does not change the mode of a directory that already exists.
#[test]
fn an_existing_directory_keeps_its_mode() {
    use std::os::unix::fs::PermissionsExt;
    let base = tempfile::tempdir().unwrap();
    let (src, out) = (base.path().join("src"), base.path().join("out"));
    fs::create_dir_all(src.join("d")).unwrap();
    fs::create_dir_all(out.join("d")).unwrap();
    fs::write(src.join("d/x"), b"x").unwrap();
    fs::set_permissions(src.join("d"), fs::Permissions::from_mode(0o777)).unwrap();
    fs::set_permissions(out.join("d"), fs::Permissions::from_mode(0o700)).unwrap();
    let (mut recv, addr) = start_recv(&out, &[]);
    let res = send(&addr, &[&src.join("d")], &[]);
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    assert!(recv.wait().unwrap().success());
    let mode = fs::metadata(out.join("d")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
    assert_eq!(fs::read(out.join("d/x")).unwrap(), b"x");
}

/// A sender's file name with terminal escapes reaches neither side's stderr raw.
#[test]
fn escape_sequences_in_names_are_not_printed_raw() {
    let base = tempfile::tempdir().unwrap();
    let (src, out) = (base.path().join("src"), base.path().join("out"));
    fs::create_dir_all(&src).unwrap();
    fs::create_dir_all(&out).unwrap();
    let name = "evil\u{1b}]0;pwned\u{7}\u{1b}[2J.txt";
    let f = file_at(&src, name, b"new");
    fs::write(out.join(name), b"old, different").unwrap();
    let (recv, addr) = start_recv(&out, &[]);
    let res = send(&addr, &[&f], &[]);
    let recv = recv.wait_with_output().unwrap();
    assert_eq!(res.status.code(), Some(1));
    for (who, err) in [("send", &res.stderr), ("recv", &recv.stderr)] {
        let text = String::from_utf8_lossy(err);
        assert!(text.contains("evil"), "{who}: {text}");
        assert!(
            !err.contains(&0x1b) && !err.contains(&0x07),
            "{who}: {text:?}"
        );
    }
}

/// A sender that goes away mid-file is reported as a closed connection, not as a
/// source that shrank.
#[test]
fn an_interrupted_send_says_the_connection_closed() {
    let out = tempfile::tempdir().unwrap();
    let (recv, addr) = start_recv(out.path(), &[]);
    let mut s = TcpStream::connect(&addr).unwrap();
    zcopy_net::proto::write_hello(&mut s, 0).unwrap();
    zcopy_net::proto::read_hello(&mut s).unwrap();
    zcopy_net::proto::Entry {
        kind: zcopy_net::proto::Kind::File,
        mode: 0o644,
        mtime_sec: 0,
        mtime_nsec: 0,
        size: 1 << 20,
        path: b"cut".to_vec(),
    }
    .write(&mut s)
    .unwrap();
    assert!(zcopy_net::proto::Reply::read(&mut s).unwrap().ok);
    s.write_all(&[7u8; 1000]).unwrap();
    drop(s);
    let recv = recv.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&recv.stderr);
    assert!(
        err.contains("connection closed after 1000 of 1048576 bytes"),
        "{err}"
    );
    assert!(!err.contains("shrank"), "{err}");
}

/// `--max-size` takes the suffixes `--limit-rate` takes.
#[test]
fn max_size_takes_suffixes() {
    let out = tempfile::tempdir().unwrap();
    let (mut recv, addr) = start_recv(out.path(), &["--max-size", "1k"]);
    let (ok, msg) = hostile(&addr, b"big", 1025, &[1u8; 1025]);
    assert!(!ok && msg.contains("limit of 1024"), "{msg}");
    assert!(!recv.wait().unwrap().success());
}

/// Usage errors exit 2, I/O errors 1: `--to` without a port is a usage error; failing
/// to read a tree that is there (here EACCES on a subdirectory) is not.
#[test]
fn send_exit_codes_follow_the_rules() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let src = tempfile::tempdir().unwrap();
    fs::create_dir_all(src.path().join("tree/sub")).unwrap();
    fs::write(src.path().join("tree/sub/f"), b"f").unwrap();
    let res = send("127.0.0.1", &[&src.path().join("tree")], &[]);
    assert_eq!(
        res.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    fs::set_permissions(src.path(), fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(
        src.path().join("tree/sub"),
        fs::Permissions::from_mode(0o000),
    )
    .unwrap();
    let mut cmd = Command::new(bin());
    cmd.arg("send")
        .arg(src.path().join("tree"))
        .args(["--to", "127.0.0.1:9"])
        .env("HOME", src.path());
    if rustix::process::geteuid().is_root() {
        cmd.uid(65534).gid(65534);
    }
    let res = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(err.contains("os error 13"), "{err}");
    assert_eq!(res.status.code(), Some(1), "{err}");
}

/// 200 files in a few directories arrive under `ulimit -n 32`: the receiver holds
/// one fd per directory it will fsync (few), not one per file.
#[test]
fn many_files_arrive_under_a_low_fd_limit() {
    let src = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let tree = src.path().join("tree");
    for d in ["a", "b"] {
        fs::create_dir_all(tree.join(d)).unwrap();
        for i in 0..100 {
            fs::write(tree.join(d).join(format!("f{i}")), format!("{d}{i}")).unwrap();
        }
    }
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("ulimit -n 32; exec \"$0\" \"$@\"")
        .arg(bin());
    let (recv, addr) = start_recv_in(cmd, "127.0.0.1:0", out.path(), &["--once"]);
    let res = send(&addr, &[&tree], &[]);
    let recv = recv.wait_with_output().unwrap();
    assert!(
        res.status.success(),
        "send: {} recv: {}",
        String::from_utf8_lossy(&res.stderr),
        String::from_utf8_lossy(&recv.stderr)
    );
    assert_same_tree(&tree, &out.path().join("tree"));
}

/// A receiver that can't start a file says why, and the sender prints it (it used to
/// see only "receiver closed the connection early").
#[test]
fn the_sender_learns_why_the_receiver_failed() {
    let base = tempfile::tempdir().unwrap();
    let (src, out) = (base.path().join("src"), base.path().join("out"));
    fs::create_dir_all(&src).unwrap();
    // Something the receiver can't open as its .part file.
    fs::create_dir_all(out.join(".f.zcopy-3-1600000000.part/x")).unwrap();
    let f = file_at(&src, "f", b"abc");
    let (mut recv, addr) = start_recv(&out, &[]);
    let res = send(&addr, &[&f], &[]);
    let err = String::from_utf8_lossy(&res.stderr);
    assert_eq!(res.status.code(), Some(1), "{err}");
    assert!(err.contains("receiver refused"), "{err}");
    assert!(!err.contains("closed the connection early"), "{err}");
    assert!(!recv.wait().unwrap().success());
}

/// The receiver's disk fills mid-file (after its free-space check passed): the sender
/// is told why ("No space left on device" from the receiver), not just that the
/// connection broke.
#[test]
fn a_disk_filling_mid_file_is_reported_to_the_sender() {
    let base = tempfile::tempdir().unwrap();
    let out = base.path().join("small");
    fs::create_dir(&out).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
        .arg(&out)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("skipped: cannot mount a small tmpfs here (needs root)");
        return;
    }
    let f = base.path().join("f");
    fs::write(&f, pattern(2 << 20, 3)).unwrap();
    let (mut recv, addr) = start_recv(&out, &[]);
    let sender = Command::new(bin())
        .arg("send")
        .arg(&f)
        .args(["--to", &addr, "--limit-rate", "256k"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Once the file is under way, fill the file system.
    let started = (0..400).any(|_| {
        std::thread::sleep(Duration::from_millis(25));
        !crate::util::leftovers(&out).is_empty()
    });
    if started {
        let mut filler = fs::File::create(out.join("filler")).unwrap();
        let block = vec![0u8; 64 << 10];
        while filler.write_all(&block).is_ok() {}
    }
    let res = sender.wait_with_output().unwrap();
    let _ = recv.kill();
    recv.wait().unwrap();
    let _ = Command::new("umount").arg(&out).status();
    assert!(started, "the transfer never started");
    let err = String::from_utf8_lossy(&res.stderr);
    assert_eq!(res.status.code(), Some(1), "{err}");
    assert!(err.contains("No space left on device"), "{err}");
}

/// A sender that stops mid-file after whole chunks (so an engine step had moved bytes
/// when the socket's timeout expired) is dropped about `--idle-timeout` after its
/// last byte, not twice that. Bound: 1.6x the limit (the old code took 2x).
#[test]
fn a_stopped_sender_is_dropped_after_one_idle_timeout() {
    let out = tempfile::tempdir().unwrap();
    let (recv, addr) = start_recv(out.path(), &["--idle-timeout", "4"]);
    let mut s = TcpStream::connect(&addr).unwrap();
    zcopy_net::proto::write_hello(&mut s, 0).unwrap();
    zcopy_net::proto::read_hello(&mut s).unwrap();
    zcopy_net::proto::Entry {
        kind: zcopy_net::proto::Kind::File,
        mode: 0o644,
        mtime_sec: 0,
        mtime_nsec: 0,
        size: 64 << 20,
        path: b"stopped".to_vec(),
    }
    .write(&mut s)
    .unwrap();
    assert!(zcopy_net::proto::Reply::read(&mut s).unwrap().ok);
    // Whole 1 MiB chunks a little apart, as `--limit-rate` sends them.
    let chunk = pattern(1 << 20, 1);
    for _ in 0..6 {
        s.write_all(&chunk).unwrap();
        std::thread::sleep(Duration::from_millis(150));
    }
    let last = std::time::Instant::now();
    // Then nothing: the receiver closing shows as the end of our read.
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    let took = last.elapsed();
    let recv = recv.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&recv.stderr);
    assert!(
        took < Duration::from_millis(6400),
        "dropped after {took:?}: {err}"
    );
    assert!(err.contains("--idle-timeout"), "{err}");
}

#[test]
fn a_local_receiver_gets_the_bytes_by_reference() {
    // With --engine sendfile, a receiver on loopback gets references to the
    // sender's pages and confirms each file before keeping it (the lease verdict);
    // auto copies to it (measured cheaper on this VM).
    let src = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    fs::write(src.path().join("f"), pattern(4 << 20, 11)).unwrap();
    let (mut recv, addr) = start_recv(out.path(), &[]);
    let res = send(
        &addr,
        &[&src.path().join("f")],
        &["--engine", "sendfile", "--verify"],
    );
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(res.status.success(), "{err}");
    assert!(recv.wait().unwrap().success());
    assert_eq!(
        fs::read(out.path().join("f")).unwrap(),
        pattern(4 << 20, 11)
    );
    if std::env::var_os("ZCOPY_DISABLE").is_some() {
        eprintln!("skipped the engine check: ZCOPY_DISABLE is set");
        return;
    }
    assert!(
        err.contains("via sendfile;"),
        "not sent by reference: {err}"
    );
}

/// `auto` receives a file of 1 MiB or more with O_DIRECT where the file system
/// takes it, and a smaller one with splice: the summary names both, and the large
/// file is not left in the page cache (fincore) — through splice, all 4 MiB would be.
#[test]
fn auto_receives_with_o_direct_and_leaves_the_file_out_of_the_page_cache() {
    let src = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let from = zcopy_net::recv::DIRECT_FROM as usize;
    let data = pattern(from + 5, 21);
    let small = pattern(from - 1, 22);
    fs::write(src.path().join("f"), &data).unwrap();
    fs::write(src.path().join("small"), &small).unwrap();
    let (mut recv, addr) = start_recv(out.path(), &[]);
    let res = send(
        &addr,
        &[&src.path().join("f"), &src.path().join("small")],
        &[],
    );
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    assert!(recv.wait().unwrap().success());
    let said = String::from_utf8_lossy(&res.stderr).to_string();
    let got = out.path().join("f");
    let why_not = if std::env::var("ZCOPY_DISABLE").is_ok_and(|v| v.contains("direct")) {
        Some("direct is forced off".to_string())
    } else if zcopy::profile::Profile::cached_default().is_some() {
        Some("a calibration profile decides".to_string())
    } else if !said.contains("via direct") {
        // Only a file system that refuses O_DIRECT may make auto fall back.
        let probe = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(rustix::fs::OFlags::DIRECT.bits() as i32)
            .open(&got);
        assert!(probe.is_err(), "auto did not use direct: {said}");
        Some(format!("O_DIRECT refused here: {probe:?}"))
    } else {
        None
    };
    const TMPFS_MAGIC: i64 = 0x0102_1994;
    let tmpfs = rustix::fs::statfs(&got).is_ok_and(|s| s.f_type == TMPFS_MAGIC);
    if let Some(why) = why_not {
        eprintln!("skipped the direct checks: {why}");
    } else if tmpfs {
        eprintln!("skipped the page-cache check: tmpfs keeps every page of its files");
    } else {
        assert!(said.contains("splice"), "the small file: {said}");
        let fincore = Command::new("fincore")
            .args(["--bytes", "--noheadings", "--raw", "--output", "RES"])
            .arg(&got)
            .output();
        match fincore {
            Ok(o) if o.status.success() => {
                let cached: u64 = String::from_utf8_lossy(&o.stdout).trim().parse().unwrap();
                assert!(cached <= 8192, "{cached} bytes of the received file cached");
            }
            r => eprintln!("skipped the page-cache check: fincore: {r:?}"),
        }
    }
    assert_eq!(fs::read(&got).unwrap(), data);
    assert_eq!(fs::read(out.path().join("small")).unwrap(), small);
}
