//! `?download=tar`: a directory as a tar stream, checked by extracting it with GNU tar.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use crate::util::*;

fn tree(fx: &Fixture) {
    fx.file("a.txt", b"alpha\n");
    std::fs::create_dir_all(fx.root().join("sub")).unwrap();
    write_pattern(&fx.root().join("sub/b.bin"), 300_000);
    fx.file("sub/deeper/empty", b"");
    fx.file(&format!("sub/{}.txt", "long-name-".repeat(15)), b"long\n");
    fx.file("sub/grüße.txt", b"utf-8\n");
    fx.file(".hidden", b"secret");
    fx.file("sub/.env", b"secret");
    std::os::unix::fs::symlink("/etc", fx.root().join("out")).unwrap();
    std::os::unix::fs::symlink("a.txt", fx.root().join("in")).unwrap();
}

/// Every regular file beneath `dir`, relative, with its contents.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let t = e.file_type().unwrap();
            if t.is_dir() {
                stack.push(e.path());
            } else {
                let rel = e
                    .path()
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.push((rel, std::fs::read(e.path()).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// Extracts a tar stream with GNU tar into a new directory.
fn extract(body: &[u8]) -> tempfile::TempDir {
    let out = tempfile::tempdir().unwrap();
    let mut tar = Command::new("tar")
        .args(["-x", "-f", "-", "-C"])
        .arg(out.path())
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    tar.stdin.take().unwrap().write_all(body).unwrap();
    assert!(tar.wait().unwrap().success(), "GNU tar refused the stream");
    out
}

#[test]
fn a_directory_downloads_as_a_tar_that_gnu_tar_extracts_to_the_same_tree() {
    if !require("tar") {
        return;
    }
    let fx = Fixture::new();
    tree(&fx);
    let srv = TestServer::start(&fx.root(), |c| c.archives = true);
    let (status, headers, body) = get(&srv.url("/sub/?download=tar"), &[]);
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "content-type"), Some("application/x-tar"));
    assert!(
        header(&headers, "content-disposition")
            .unwrap()
            .contains("sub.tar")
    );
    assert_eq!(
        header(&headers, "content-length")
            .unwrap()
            .parse::<usize>()
            .unwrap(),
        body.len()
    );
    let out = extract(&body);
    // The tree beneath sub/, without its dotfile; long and non-ASCII names intact.
    let mut want = files(&fx.root().join("sub"));
    want.retain(|(rel, _)| !rel.starts_with('.'));
    assert_eq!(files(&out.path().join("sub")), want);
    assert!(out.path().join("sub/deeper").is_dir());

    // The root: no dotfiles, no symbolic links (inside or out of the root).
    let (_, _, body) = get(&srv.url("/?download=tar"), &[]);
    let mut list = Command::new("tar")
        .args(["-t", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    list.stdin.take().unwrap().write_all(&body).unwrap();
    let mut listed = String::new();
    list.stdout
        .take()
        .unwrap()
        .read_to_string(&mut listed)
        .unwrap();
    assert!(list.wait().unwrap().success());
    assert!(listed.contains("root/a.txt"), "{listed}");
    for absent in [".hidden", ".env", "root/out", "root/in"] {
        assert!(!listed.contains(absent), "{absent} archived:\n{listed}");
    }
}

#[test]
fn archives_are_off_unless_asked_for_and_head_has_no_body() {
    let fx = Fixture::new();
    tree(&fx);
    let off = TestServer::start(&fx.root(), |_| {});
    let (status, headers, _) = get(&off.url("/sub/?download=tar"), &[]);
    assert_eq!(status, 200);
    assert!(
        header(&headers, "content-type")
            .unwrap()
            .starts_with("text/html")
    );
    let on = TestServer::start(&fx.root(), |c| c.archives = true);
    let r = request(&on, "HEAD", "/sub/?download=tar", &[]);
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
    // HEAD does not walk the tree to count the bytes: no Content-Length.
    assert_eq!(r.header("content-length"), None);
    assert_eq!(r.header("content-type"), Some("application/x-tar"));
    let (_, headers, body) = get(&on.url("/sub/?download=tar"), &[]);
    let len: usize = header(&headers, "content-length").unwrap().parse().unwrap();
    assert_eq!(len, body.len());
    let (_, _, page) = get(&on.url("/sub/"), &[]);
    assert!(String::from_utf8_lossy(&page).contains("?download=tar"));
}

/// A member that changed size after the archive was planned can't be sent as
/// announced: the stream stops there and the connection closes, so the client has a
/// short archive, never a complete-looking one with wrong bytes.
#[test]
fn a_member_that_changed_ends_the_stream_early() {
    let fx = Fixture::new();
    std::fs::create_dir_all(fx.root().join("d")).unwrap();
    write_pattern(&fx.root().join("d/1-first.bin"), 256 << 10);
    fx.file("d/2-second.txt", b"original");
    let srv = TestServer::start(&fx.root(), |c| {
        c.archives = true;
        c.limit_rate = Some(128 << 10);
    });
    let mut s = srv.connect();
    s.write_all(b"GET /d/?download=tar HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let head = read_response(&mut s, true).unwrap();
    let len: usize = head.header("content-length").unwrap().parse().unwrap();
    // While the first member is paced out, the second grows.
    std::fs::write(fx.root().join("d/2-second.txt"), b"rewritten, longer").unwrap();
    let mut body = Vec::new();
    let _ = s.read_to_end(&mut body);
    assert!(body.len() < len, "the stream went on with a changed member");
    assert!(!body.windows(9).any(|w| w == b"rewritten"));
}

/// Members big enough to leave from a mapping of their file (uring driver) or by an
/// engine each arrive with their own bytes: each member starts at offset 0 of its
/// own file, so nothing kept for one may serve the next.
#[test]
fn large_members_each_arrive_with_their_own_bytes() {
    if !require("tar") {
        return;
    }
    let fx = Fixture::new();
    std::fs::create_dir_all(fx.root().join("big")).unwrap();
    let len = (2 << 20) + 123;
    for (name, fill) in [("1.bin", 0x11u8), ("2.bin", 0x22), ("3.bin", 0x33)] {
        std::fs::write(fx.root().join("big").join(name), vec![fill; len]).unwrap();
    }
    let srv = TestServer::start(&fx.root(), |c| c.archives = true);
    for round in 0..2 {
        let (status, _, body) = get(&srv.url("/big/?download=tar"), &[]);
        assert_eq!(status, 200, "round {round}");
        let out = extract(&body);
        let got = files(&out.path().join("big"));
        assert_eq!(got.len(), 3, "round {round}");
        for (name, bytes) in got {
            let fill = match name.as_str() {
                "1.bin" => 0x11,
                "2.bin" => 0x22,
                _ => 0x33,
            };
            assert_eq!(bytes.len(), len, "{name}, round {round}");
            assert!(
                bytes.iter().all(|&b| b == fill),
                "{name} holds another member's bytes (round {round})"
            );
        }
    }
}
