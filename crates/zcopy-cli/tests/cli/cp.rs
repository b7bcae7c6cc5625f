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
