//! `zcopy cp`: byte-exact copies, sparse files, trees, clear errors, no half files.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use crate::util::{leftovers, pattern, zcopy};

const ENGINES: [&str; 7] = [
    "auto",
    "copy-range",
    "sendfile",
    "splice",
    "read-write",
    "mmap",
    "direct",
];

#[test]
fn copies_byte_exact_with_every_engine() {
    let dir = tempfile::tempdir().unwrap();
    for (i, size) in [0usize, 1, 4095, 4097, (3 << 20) + 7]
        .into_iter()
        .enumerate()
    {
        let src = dir.path().join(format!("src{i}"));
        let data = pattern(size, i as u8);
        fs::write(&src, &data).unwrap();
        for engine in ENGINES {
            let dst = dir.path().join(format!("dst{i}-{engine}"));
            zcopy(&[
                "cp",
                "--engine",
                engine,
                src.to_str().unwrap(),
                dst.to_str().unwrap(),
            ])
            .assert()
            .success();
            assert!(fs::read(&dst).unwrap() == data, "{engine} size {size}");
        }
    }
    assert!(leftovers(dir.path()).is_empty());
}

#[test]
fn keeps_holes_of_sparse_files() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("sparse");
    let f = fs::File::create(&src).unwrap();
    f.set_len(64 << 20).unwrap();
    use std::os::unix::fs::FileExt;
    f.write_all_at(b"head", 0).unwrap();
    f.write_all_at(b"middle", 32 << 20).unwrap();
    f.write_all_at(b"tail", (64 << 20) - 4).unwrap();
    drop(f);
    let dst = dir.path().join("copy");
    zcopy(&["cp", src.to_str().unwrap(), dst.to_str().unwrap()])
        .assert()
        .success();
    assert!(fs::read(&src).unwrap() == fs::read(&dst).unwrap());
    let blocks = fs::metadata(&dst).unwrap().blocks();
    // 3 data blocks of 4 KiB = 24 sectors; allow the filesystem some slack.
    assert!(
        blocks <= 64,
        "copy uses {blocks} sectors: holes were filled"
    );
}

#[test]
fn copies_into_an_existing_directory() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("a.bin");
    fs::write(&src, b"hello").unwrap();
    let into = dir.path().join("into");
    fs::create_dir(&into).unwrap();
    zcopy(&["cp", src.to_str().unwrap(), into.to_str().unwrap()])
        .assert()
        .success();
    assert_eq!(fs::read(into.join("a.bin")).unwrap(), b"hello");
}

#[test]
fn recursive_copy_keeps_tree_modes_and_mtimes() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("tree");
    fs::create_dir_all(src.join("sub/deeper")).unwrap();
    fs::create_dir(src.join("empty")).unwrap();
    fs::write(src.join("top.txt"), b"top").unwrap();
    fs::write(src.join("sub/odd name ü.bin"), pattern(100_000, 3)).unwrap();
    fs::write(src.join("sub/deeper/zero"), b"").unwrap();
    fs::set_permissions(src.join("top.txt"), fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::symlink("top.txt", src.join("link")).unwrap();
    let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
    fs::File::options()
        .write(true)
        .open(src.join("top.txt"))
        .unwrap()
        .set_modified(old)
        .unwrap();
    let dst = dir.path().join("copy");
    zcopy(&["cp", "-r", src.to_str().unwrap(), dst.to_str().unwrap()])
        .assert()
        .success();
    for rel in ["top.txt", "sub/odd name ü.bin", "sub/deeper/zero"] {
        assert_eq!(
            fs::read(src.join(rel)).unwrap(),
            fs::read(dst.join(rel)).unwrap(),
            "{rel}"
        );
    }
    assert!(dst.join("empty").is_dir());
    let m = fs::metadata(dst.join("top.txt")).unwrap();
    assert_eq!(m.permissions().mode() & 0o777, 0o640);
    assert_eq!(m.modified().unwrap(), old);
    assert_eq!(
        fs::read_link(dst.join("link")).unwrap().to_str(),
        Some("top.txt")
    );
}

#[test]
fn usage_errors_exit_2_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::create_dir(d.join("adir")).unwrap();
    fs::write(d.join("f"), b"x").unwrap();
    let cases: [(Vec<String>, &str); 4] = [
        (
            vec![
                d.join("missing").display().to_string(),
                d.join("x").display().to_string(),
            ],
            "no such file",
        ),
        (
            vec![
                d.join("adir").display().to_string(),
                d.join("x").display().to_string(),
            ],
            "use -r",
        ),
        (
            vec![
                d.join("f").display().to_string(),
                d.join("nodir/x").display().to_string(),
            ],
            "does not exist",
        ),
        (
            vec![
                "-r".into(),
                d.join("adir").display().to_string(),
                d.join("adir/inner").display().to_string(),
            ],
            "into itself",
        ),
    ];
    for (args, msg) in cases {
        let mut all = vec!["cp".to_string()];
        all.extend(args);
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        let out = zcopy(&all).assert().code(2).get_output().stderr.clone();
        let err = String::from_utf8_lossy(&out);
        assert!(err.contains(msg), "{all:?}: {err}");
    }
    zcopy(&["cp", "--engine", "warp-drive", "a", "b"])
        .assert()
        .code(2);
}

/// A full disk fails with exit 1 and leaves neither the destination nor a temporary.
#[test]
fn no_space_leaves_no_file_behind() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("small");
    fs::create_dir(&mnt).unwrap();
    let ok = std::process::Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            "size=1m",
            "tmpfs",
            mnt.to_str().unwrap(),
        ])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("skipped: cannot mount a small tmpfs here (needs root)");
        return;
    }
    let src = dir.path().join("big");
    fs::write(&src, pattern(4 << 20, 9)).unwrap();
    let out = zcopy(&[
        "cp",
        src.to_str().unwrap(),
        mnt.join("big").to_str().unwrap(),
    ])
    .assert()
    .code(1)
    .get_output()
    .stderr
    .clone();
    let listing: Vec<_> = fs::read_dir(&mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let _ = std::process::Command::new("umount").arg(&mnt).status();
    assert!(
        String::from_utf8_lossy(&out)
            .to_lowercase()
            .contains("no space"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    assert!(listing.is_empty(), "left behind: {listing:?}");
}

/// 1 GiB of real (not sparse) data, compared byte for byte.
#[test]
fn one_gib_copy_is_byte_exact() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("gib");
    let mut f = std::io::BufWriter::new(fs::File::create(&src).unwrap());
    let block = pattern(1 << 20, 11);
    for i in 0..1024u32 {
        // Each MiB differs (its index in front), so a misplaced block shows.
        f.write_all(&i.to_le_bytes()).unwrap();
        f.write_all(&block[4..]).unwrap();
    }
    f.into_inner().unwrap().sync_all().unwrap();
    let dst = dir.path().join("copy");
    zcopy(&["cp", src.to_str().unwrap(), dst.to_str().unwrap()])
        .assert()
        .success();
    let st = std::process::Command::new("cmp")
        .arg(&src)
        .arg(&dst)
        .status()
        .unwrap();
    assert!(st.success(), "1 GiB copy differs");
    assert!(leftovers(dir.path()).is_empty());
}

/// Ctrl-C during a copy: exit 130, and neither the destination nor a temporary file
/// is left behind (a file under the final name always is the whole copy).
#[test]
fn interrupted_copy_leaves_nothing_that_looks_complete() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("big");
    let mut f = std::io::BufWriter::new(fs::File::create(&src).unwrap());
    let block = pattern(1 << 20, 5);
    for _ in 0..1024 {
        f.write_all(&block).unwrap();
    }
    f.into_inner().unwrap().sync_all().unwrap();
    let dst = dir.path().join("copy");
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("zcopy"))
        .args(["cp", "--engine", "read-write", "--progress", "never"])
        .arg(&src)
        .arg(&dst)
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(100));
    let _ = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let code = child.wait().unwrap().code();
    if code == Some(0) {
        // The copy won the race: then it must be whole.
        eprintln!("copy finished before the interrupt");
        assert!(fs::read(&src).unwrap() == fs::read(&dst).unwrap());
    } else {
        // 130 from our handler; no code at all if the signal beat its registration,
        // which happens before any file is created.
        assert!(matches!(code, Some(130) | None), "exit code {code:?}");
        assert!(!dst.exists(), "an interrupted copy left the destination");
    }
    assert!(
        leftovers(dir.path()).is_empty(),
        "{:?}",
        leftovers(dir.path())
    );
}

/// `zcopy cp --progress always SRC DST` with stderr on a pipe that is already full:
/// cp blocks at its first progress line, which it writes once the source is open
/// and measured and the copy created, before any byte is copied. Returns the child
/// and the pipe's read end; reading it lets cp go on.
fn cp_paused_at_start(
    args: &[&std::path::Path],
    extra: &[&str],
) -> (std::process::Child, std::fs::File) {
    use std::io::Write;
    let (r, w) = rustix::pipe::pipe().unwrap();
    let size = rustix::pipe::fcntl_setpipe_size(&w, 4096).unwrap();
    let mut w = fs::File::from(w);
    w.write_all(&vec![b'.'; size]).unwrap();
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("zcopy"))
        .args(["cp", "--progress", "always"])
        .args(extra)
        .args(args)
        .env_remove("RUST_LOG")
        .stderr(std::process::Stdio::from(std::os::fd::OwnedFd::from(w)))
        .spawn()
        .unwrap();
    // Wait (on its state, not on a clock) until cp sits in write(2, ...).
    let syscall = format!("/proc/{}/syscall", child.id());
    for _ in 0..20_000 {
        let now = fs::read_to_string(&syscall).unwrap_or_default();
        if now.starts_with("1 0x2 ") {
            return (child, fs::File::from(r));
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("cp never blocked on its progress line");
}

fn drain(mut r: fs::File) -> std::thread::JoinHandle<String> {
    use std::io::Read;
    std::thread::spawn(move || {
        let mut s = Vec::new();
        r.read_to_end(&mut s).unwrap();
        String::from_utf8_lossy(&s)
            .trim_start_matches('.')
            .to_string()
    })
}

/// A sparse source (data, hole, data) held open for writing by another process (so
/// cp gets no lease) and truncated into its hole after cp measured it: the copy must
/// fail, not end in zeros up to the old length (neither version of the source).
#[test]
fn sparse_source_truncated_mid_copy_is_an_error() {
    use std::os::unix::fs::FileExt;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("sparse");
    let f = fs::File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&src)
        .unwrap();
    f.write_all_at(&pattern(1 << 20, 1), 0).unwrap();
    f.write_all_at(&pattern(1 << 20, 2), 2 << 20).unwrap();
    let dst = dir.path().join("copy");
    let (child, r) = cp_paused_at_start(&[&src, &dst], &[]);
    f.set_len((3 << 20) / 2).unwrap();
    let log = drain(r);
    let out = child.wait_with_output().unwrap();
    let log = log.join().unwrap();
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert!(log.contains("shrank"), "{log}");
    assert!(!dst.exists(), "a wrong copy was left under the final name");
    assert!(leftovers(dir.path()).is_empty());
}

/// `--progress always` shows progress when stderr is a file, not only on a terminal.
#[test]
fn progress_always_prints_to_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("a");
    fs::write(&src, pattern(1 << 20, 4)).unwrap();
    let dst = dir.path().join("b");
    let log = zcopy(&[
        "cp",
        "--progress",
        "always",
        src.to_str().unwrap(),
        dst.to_str().unwrap(),
    ])
    .assert()
    .success()
    .get_output()
    .stderr
    .clone();
    let log = String::from_utf8_lossy(&log);
    assert!(log.contains("1.00 MiB of 1.00 MiB (100%)"), "{log}");
    assert!(!log.contains('\u{1b}'), "terminal codes in a file: {log:?}");
}

/// An existing destination keeps its mode and owner (GNU cp): a private file stays
/// private, and is replaced as a whole.
#[test]
fn existing_destination_keeps_mode_and_owner() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("pub.txt"), dir.path().join("secret.conf"));
    fs::write(&src, b"public bytes").unwrap();
    fs::set_permissions(&src, fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(&dst, b"old secret").unwrap();
    fs::set_permissions(&dst, fs::Permissions::from_mode(0o600)).unwrap();
    let root = rustix::process::geteuid().is_root();
    if root {
        std::os::unix::fs::chown(&dst, Some(4321), Some(4321)).unwrap();
    }
    zcopy(&["cp", src.to_str().unwrap(), dst.to_str().unwrap()])
        .assert()
        .success();
    let m = fs::metadata(&dst).unwrap();
    assert_eq!(fs::read(&dst).unwrap(), b"public bytes");
    assert_eq!(m.mode() & 0o7777, 0o600, "mode changed");
    if root {
        assert_eq!((m.uid(), m.gid()), (4321, 4321), "owner changed");
    }
    assert!(leftovers(dir.path()).is_empty());
}

/// A destination with other hard links is written through, as GNU cp does: every
/// name sees the new bytes (replacing would split the link).
#[test]
fn hard_linked_destination_is_written_through() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst, other) = (
        dir.path().join("new"),
        dir.path().join("dst"),
        dir.path().join("other-name"),
    );
    fs::write(&src, b"new bytes").unwrap();
    fs::write(&dst, b"old bytes, longer than the new ones").unwrap();
    fs::hard_link(&dst, &other).unwrap();
    let ino = fs::metadata(&dst).unwrap().ino();
    zcopy(&["cp", src.to_str().unwrap(), dst.to_str().unwrap()])
        .assert()
        .success();
    assert_eq!(fs::read(&other).unwrap(), b"new bytes");
    assert_eq!(fs::metadata(&dst).unwrap().ino(), ino);
}

/// A symlink destination is followed: its target gets the bytes, the link stays.
#[test]
fn symlink_destination_is_written_through_to_its_target() {
    let dir = tempfile::tempdir().unwrap();
    let (src, target, link) = (
        dir.path().join("src"),
        dir.path().join("target"),
        dir.path().join("link"),
    );
    fs::write(&src, b"fresh").unwrap();
    fs::write(&target, b"stale").unwrap();
    fs::set_permissions(&target, fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::symlink("target", &link).unwrap();
    zcopy(&["cp", src.to_str().unwrap(), link.to_str().unwrap()])
        .assert()
        .success();
    assert!(
        fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(fs::read(&target).unwrap(), b"fresh");
    assert_eq!(fs::metadata(&target).unwrap().mode() & 0o777, 0o640);
}

/// `cp a a` (or through a link to it) is refused like GNU cp: the file is untouched.
#[test]
fn same_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.txt");
    fs::write(&a, b"keep me").unwrap();
    std::os::unix::fs::symlink("a.txt", dir.path().join("to-a")).unwrap();
    for dst in ["a.txt", "to-a", "."] {
        let out = zcopy(&[
            "cp",
            a.to_str().unwrap(),
            dir.path().join(dst).to_str().unwrap(),
        ])
        .assert()
        .code(2)
        .get_output()
        .stderr
        .clone();
        let err = String::from_utf8_lossy(&out);
        assert!(err.contains("are the same file"), "{dst}: {err}");
    }
    assert_eq!(fs::read(&a).unwrap(), b"keep me");
    assert!(leftovers(dir.path()).is_empty());
}

/// Replacing a file fsyncs the copy before renaming it over the old one (a power
/// loss then leaves the old or the new file, never an empty one).
#[test]
fn replacing_fsyncs_before_the_rename() {
    if !crate::util::tool("strace", "-V") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
    fs::write(&src, pattern(100_000, 7)).unwrap();
    fs::write(&dst, b"old").unwrap();
    let out = std::process::Command::new("strace")
        .args([
            "-f",
            "-e",
            "trace=fsync,fdatasync,rename,renameat,renameat2",
        ])
        .arg(assert_cmd::cargo::cargo_bin("zcopy"))
        .arg("cp")
        .arg(&src)
        .arg(&dst)
        .output()
        .unwrap();
    assert!(out.status.success());
    let trace = String::from_utf8_lossy(&out.stderr);
    let sync = trace.find("fsync(").expect("no fsync");
    let rename = trace.find("rename").expect("no rename");
    assert!(sync < rename, "{trace}");
    assert_eq!(fs::read(&dst).unwrap(), pattern(100_000, 7));
}

/// A cp killed mid-copy (SIGKILL: no handler runs) leaves no temporary file: the
/// copy is unnamed until complete.
#[test]
fn killed_copy_leaves_no_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
    fs::write(&src, pattern(1 << 20, 3)).unwrap();
    fs::write(&dst, b"old").unwrap();
    for target in [&dst, &dir.path().join("new")] {
        let (mut child, r) = cp_paused_at_start(&[&src, target], &[]);
        child.kill().unwrap();
        child.wait().unwrap();
        drop(r);
        assert!(
            leftovers(dir.path()).is_empty(),
            "{:?}",
            leftovers(dir.path())
        );
    }
    assert_eq!(fs::read(&dst).unwrap(), b"old");
    assert!(!dir.path().join("new").exists());
}

/// `cp -r` with an unreadable file: it is named, the rest is copied, exit 1.
#[test]
fn recursive_copy_reports_an_unreadable_file_and_copies_the_rest() {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("tree");
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::write(src.join("a.txt"), b"a").unwrap();
    fs::write(src.join("locked"), b"no").unwrap();
    fs::write(src.join("sub/z.txt"), b"z").unwrap();
    fs::set_permissions(src.join("locked"), fs::Permissions::from_mode(0o000)).unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
    let dst = dir.path().join("copy");
    let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("zcopy"));
    cmd.args(["cp", "-r"]).arg(&src).arg(&dst);
    if rustix::process::geteuid().is_root() {
        // root reads anything: run as nobody, for whom 000 means unreadable.
        cmd.uid(65534).gid(65534).env("HOME", dir.path());
    }
    let out = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("locked"), "{err}");
    assert_eq!(err.matches("ermission denied").count(), 1, "{err}");
    assert_eq!(fs::read(dst.join("a.txt")).unwrap(), b"a");
    assert_eq!(fs::read(dst.join("sub/z.txt")).unwrap(), b"z");
}

/// A destination naming a directory that does not exist is a usage error whether or
/// not it ends in a file name.
#[test]
fn missing_destination_directory_is_exit_2_either_way() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.txt");
    fs::write(&a, b"a").unwrap();
    for dst in ["nodir/", "nodir/x.txt"] {
        let out = zcopy(&[
            "cp",
            a.to_str().unwrap(),
            dir.path().join(dst).to_str().unwrap(),
        ])
        .assert()
        .code(2)
        .get_output()
        .stderr
        .clone();
        assert!(
            String::from_utf8_lossy(&out).contains("does not exist"),
            "{dst}"
        );
    }
    assert!(leftovers(dir.path()).is_empty());
}

/// Log lines on a stderr that is not a terminal carry no colour codes.
#[test]
fn no_colour_codes_when_stderr_is_not_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("tree");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("f"), b"f").unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(src.join("fifo"))
        .status()
        .is_ok_and(|s| s.success());
    assert!(made, "mkfifo");
    let out = zcopy(&[
        "cp",
        "-r",
        src.to_str().unwrap(),
        dir.path().join("copy").to_str().unwrap(),
    ])
    .env_remove("NO_COLOR")
    .assert()
    .success()
    .get_output()
    .stderr
    .clone();
    let log = String::from_utf8_lossy(&out);
    assert!(log.contains("skipping"), "{log}");
    assert!(!out.contains(&0x1b), "colour codes on a pipe: {log:?}");
}

/// An I/O error is said once ("No space left on device (os error 28)", not that twice).
#[test]
fn an_error_is_said_once() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("small");
    fs::create_dir(&mnt).unwrap();
    let ok = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&mnt)
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("skipped: cannot mount a small tmpfs here (needs root)");
        return;
    }
    let src = dir.path().join("big");
    fs::write(&src, pattern(4 << 20, 9)).unwrap();
    let out = zcopy(&[
        "cp",
        src.to_str().unwrap(),
        mnt.join("big").to_str().unwrap(),
    ])
    .assert()
    .code(1)
    .get_output()
    .stderr
    .clone();
    let _ = std::process::Command::new("umount").arg(&mnt).status();
    let err = String::from_utf8_lossy(&out);
    assert_eq!(err.matches("(os error 28)").count(), 1, "{err}");
}

/// A destination whose owner we can't give a new file (another user's file we may
/// write) is written through, as GNU cp does: it keeps its owner and mode.
#[test]
fn a_destination_we_cannot_chown_is_written_through() {
    use std::os::unix::process::CommandExt;
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: needs root to make a file owned by someone else");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
    let (src, dst) = (dir.path().join("src"), dir.path().join("theirs"));
    fs::write(&src, b"new").unwrap();
    fs::set_permissions(&src, fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(&dst, b"old contents").unwrap();
    fs::set_permissions(&dst, fs::Permissions::from_mode(0o666)).unwrap();
    std::os::unix::fs::chown(&dst, Some(4321), Some(4321)).unwrap();
    let out = std::process::Command::new(assert_cmd::cargo::cargo_bin("zcopy"))
        .arg("cp")
        .arg(&src)
        .arg(&dst)
        .env("HOME", dir.path())
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m = fs::metadata(&dst).unwrap();
    assert_eq!(fs::read(&dst).unwrap(), b"new");
    assert_eq!((m.uid(), m.mode() & 0o777), (4321, 0o666));
    assert!(leftovers(dir.path()).is_empty());
}

#[test]
fn zcopy_disable_forces_engines_off_and_names_a_typo() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let data = pattern(300_000, 9);
    fs::write(&src, &data).unwrap();
    for (spec, warned) in [("copy-range,inotify", false), ("copy-range,bogus", true)] {
        let dst = dir.path().join(format!("dst-{warned}"));
        let out = zcopy(&["cp", "-v", src.to_str().unwrap(), dst.to_str().unwrap()])
            .env("ZCOPY_DISABLE", spec)
            .assert()
            .success()
            .get_output()
            .clone();
        assert_eq!(fs::read(&dst).unwrap(), data);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            err.contains("'bogus' is neither an engine"),
            warned,
            "{err}"
        );
        // copy-range forced off: the copy says it fell back.
        assert!(
            err.contains("copy-range (forced off after 0 bytes)"),
            "{err}"
        );
    }
}
