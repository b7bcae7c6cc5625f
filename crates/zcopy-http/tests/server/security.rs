//! Nothing outside the root is ever served; listings escape names.

use std::os::unix::fs::symlink;

use zcopy_http::path::SymlinkPolicy;

use crate::util::*;

const ATTEMPTS: &[&str] = &[
    "/../secret.txt",
    "/%2e%2e/secret.txt",
    "/%2E%2E/secret.txt",
    "/.%2e/secret.txt",
    "/%252e%252e/secret.txt",
    "/..%2fsecret.txt",
    "/..%2Fsecret.txt",
    "/..%5csecret.txt",
    "/%5c..%5csecret.txt",
    "/..\\secret.txt",
    "/sub/../../secret.txt",
    "/sub/%2e%2e/%2e%2e/secret.txt",
    "//../secret.txt",
    "/../secret.txt%00.html",
    "/%00/../secret.txt",
    "/link.txt",
    "/linkdir/secret.txt",
    "/abs.txt",
];

fn attack(srv: &TestServer, what: &str) {
    for target in ATTEMPTS {
        let req = format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let mut s = srv.connect();
        std::io::Write::write_all(&mut s, req.as_bytes()).unwrap();
        let mut all = Vec::new();
        let _ = std::io::Read::read_to_end(&mut s, &mut all);
        assert!(
            !all.windows(SECRET.len()).any(|w| w == SECRET),
            "{what}: {target} leaked the secret"
        );
        // A real refusal, not an empty reply or a reset.
        let r = read_response(&mut all.as_slice(), false)
            .unwrap_or_else(|| panic!("{what}: {target}: no response"));
        assert!(
            (400..500).contains(&r.status),
            "{what}: {target} answered {}",
            r.status
        );
    }
}

#[test]
fn traversal_never_leaves_the_root() {
    let fx = Fixture::new();
    fx.file("sub/x.txt", b"x");
    let root = fx.root();
    symlink("../secret.txt", root.join("link.txt")).unwrap();
    symlink("..", root.join("linkdir")).unwrap();
    symlink(fx.dir.path().join("secret.txt"), root.join("abs.txt")).unwrap();
    for policy in [SymlinkPolicy::WithinRoot, SymlinkPolicy::Never] {
        let srv = TestServer::start(&root, |c| {
            c.symlinks = policy;
            c.listing = true;
        });
        attack(&srv, &format!("{policy:?}"));
    }
}

#[test]
fn symlinks_inside_the_root_follow_the_policy() {
    let fx = Fixture::new();
    fx.file("real.txt", b"real");
    symlink("real.txt", fx.root().join("alias.txt")).unwrap();
    let srv = TestServer::start(&fx.root(), |_| {});
    assert_eq!(get(&srv.url("/alias.txt"), &[]).2, b"real");
    let srv = TestServer::start(&fx.root(), |c| c.symlinks = SymlinkPolicy::Never);
    assert_eq!(get(&srv.url("/alias.txt"), &[]).0, 404);
}

#[test]
fn hidden_files_are_hidden_unless_asked() {
    let fx = Fixture::new();
    fx.file(".env", b"PASSWORD=1");
    let srv = TestServer::start(&fx.root(), |_| {});
    assert_eq!(get(&srv.url("/.env"), &[]).0, 404);
    let srv = TestServer::start(&fx.root(), |c| c.hidden = true);
    assert_eq!(get(&srv.url("/.env"), &[]).2, b"PASSWORD=1");
}

#[test]
fn listing_escapes_hostile_names() {
    let fx = Fixture::new();
    let evil = "<img src=x onerror=alert(1)>.txt";
    fx.file(evil, b"boo");
    fx.file("d/plain.txt", b"p");
    let srv = TestServer::start(&fx.root(), |c| c.listing = true);
    let (status, hdrs, body) = get(&srv.url("/"), &[]);
    assert_eq!(status, 200);
    assert_eq!(
        header(&hdrs, "content-type"),
        Some("text/html; charset=utf-8")
    );
    let page = String::from_utf8(body).unwrap();
    assert!(!page.contains("<img"), "unescaped name in listing:\n{page}");
    assert!(page.contains("&lt;img src=x onerror=alert(1)&gt;.txt"));
    assert!(page.contains("d/"));
    let (status, hdrs, body) = get(&srv.url("/?format=json"), &[]);
    assert_eq!(status, 200);
    assert_eq!(header(&hdrs, "content-type"), Some("application/json"));
    let json = String::from_utf8(body).unwrap();
    assert!(json.starts_with('[') && !json.contains("plain") && json.contains("onerror"));
    // The hostile file itself is reachable by its escaped name.
    let (status, _, body) = get(&srv.url("/%3Cimg%20src=x%20onerror=alert(1)%3E.txt"), &[]);
    assert_eq!((status, &body[..]), (200, &b"boo"[..]));
}
