//! Archives, listings and sidecars give a client exactly what it could fetch file by
//! file from the same server under the same rules (auth, `listing = false`, hidden
//! files, symlinks, hard links): each answer is checked against the per-file answers.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use zcopy_http::auth::Users;
use zcopy_http::config::Config;
use zcopy_http::encoding::Encoding;
use zcopy_http::path::SymlinkPolicy;
use zcopy_http::rules::Rule;

use crate::util::*;

fn basic(user: &str, pass: &str) -> String {
    let b = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    format!("Basic {b}")
}

/// The tree an operator with a private area, guarded keys, an unlisted directory and
/// links inside the root serves.
fn tree(fx: &Fixture) {
    fx.file("pub.txt", b"public");
    fx.file(".env", b"SECRET_ENV=1");
    fx.file("private/p.txt", b"private-p");
    fx.file("private/sub/q.txt", b"private-q");
    fx.file("keys/server.key", b"-----KEY-----");
    fx.file("keys/server.key.gz", b"gz-of-the-key");
    fx.file("keys/server.key.br", b"br-of-the-key");
    fx.file("keys/readme.txt", b"keys here");
    fx.file("nolist/n.txt", b"unlisted");
    fx.file("pubdir/a.txt", b"aaa");
    fx.file("public2.txt", b"public two");
    let r = fx.root();
    // (Both names of a hard-linked file are refused on a guarded site.)
    std::fs::hard_link(r.join("private/sub/q.txt"), r.join("pubdir/hard.txt")).unwrap();
    let ln = |target: &str, at: &str| std::os::unix::fs::symlink(target, r.join(at)).unwrap();
    ln("private", "link_priv");
    ln(".env", "dotlink");
    ln("../pub.txt", "pubdir/inlink.txt");
    ln("/etc/passwd", "pubdir/escape");
    ln("/etc", "pubdir/etcdir");
    ln(".env", "public2.txt.gz");
    ln("../keys", "pubdir/keys_link");
}

fn rules() -> Vec<Rule> {
    let hash = bcrypt::hash("pw", 4).unwrap();
    let users = Arc::new(Users::parse("private", &format!("alice:{hash}\n")).unwrap());
    vec![
        Rule {
            glob: "private/**".into(),
            auth: Some(users.clone()),
            ..Rule::default()
        },
        Rule {
            glob: "**/*.key".into(),
            auth: Some(users),
            ..Rule::default()
        },
        Rule {
            glob: "nolist/**".into(),
            listing: Some(false),
            ..Rule::default()
        },
    ]
}

fn server(fx: &Fixture, tweak: impl FnOnce(&mut Config)) -> TestServer {
    TestServer::start(&fx.root(), |c| {
        c.archives = true;
        c.precompressed = vec![Encoding::Gzip, Encoding::Br];
        c.rules = rules();
        tweak(c);
    })
}

/// Every path beneath `root` (files, directories, links; dotfiles too), relative.
fn all_names(root: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let rel = e
                .path()
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            }
            out.push(rel);
        }
    }
    out.sort();
    out
}

/// The regular files of a tar stream (PAX `path` records honoured), by path.
fn tar_files(body: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut at = 0;
    let mut pax_path: Option<String> = None;
    while at + 512 <= body.len() {
        let h = &body[at..at + 512];
        if h.iter().all(|&b| b == 0) {
            break;
        }
        let field = |a: usize, b: usize| {
            let f = &h[a..b];
            let end = f.iter().position(|&c| c == 0).unwrap_or(f.len());
            String::from_utf8_lossy(&f[..end]).trim().to_string()
        };
        let size = u64::from_str_radix(&field(124, 136), 8).unwrap() as usize;
        let kind = h[156];
        let data = &body[at + 512..at + 512 + size];
        match kind {
            b'x' => {
                let text = String::from_utf8_lossy(data);
                for rec in text.split_terminator('\n') {
                    if let Some((_, kv)) = rec.split_once(' ')
                        && let Some(p) = kv.strip_prefix("path=")
                    {
                        pax_path = Some(p.to_string());
                    }
                }
            }
            b'0' => {
                let name = pax_path.take().unwrap_or_else(|| field(0, 100));
                out.insert(name, data.to_vec());
            }
            _ => {
                pax_path = None;
            }
        }
        at += 512 + size.div_ceil(512) * 512;
    }
    out
}

/// What one client gets for each name, file by file: path → body of a 200.
fn fetchable(
    srv: &TestServer,
    names: &[String],
    auth: &[(&str, &str)],
) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for n in names {
        let r = request(srv, "GET", &format!("/{n}"), auth);
        if r.status == 200 && r.header("content-type") != Some("text/html; charset=utf-8") {
            out.insert(n.clone(), r.body);
        }
    }
    out
}

/// The JSON listing of `dir` (`""` is the root) as (name, type, size), or its status.
fn listing(
    srv: &TestServer,
    dir: &str,
    auth: &[(&str, &str)],
) -> Result<Vec<(String, String, u64)>, u16> {
    let path = if dir.is_empty() {
        "/?format=json".to_string()
    } else {
        format!("/{dir}/?format=json")
    };
    let r = request(srv, "GET", &path, auth);
    if r.status != 200 {
        return Err(r.status);
    }
    // The listing's fixed shape: {"name":…,"type":…,"size":N,"modified":M}, and the
    // names of this tree need no escapes.
    let text = String::from_utf8(r.body).unwrap();
    let mut out = Vec::new();
    for item in text.split("{\"name\":\"").skip(1) {
        let (name, rest) = item.split_once("\",\"type\":\"").unwrap();
        let (kind, rest) = rest.split_once("\",\"size\":").unwrap();
        let size: String = rest.chars().take_while(char::is_ascii_digit).collect();
        out.push((name.to_string(), kind.to_string(), size.parse().unwrap()));
    }
    Ok(out)
}

#[test]
fn links_inside_the_root_are_checked_where_they_lead() {
    let fx = Fixture::new();
    tree(&fx);
    let srv = server(&fx, |_| {});
    let alice = basic("alice", "pw");
    let auth: &[(&str, &str)] = &[("Authorization", &alice)];
    // The protected file, directly and through a link to its directory.
    assert_eq!(request(&srv, "GET", "/private/p.txt", &[]).status, 401);
    let r = request(&srv, "GET", "/link_priv/p.txt", &[]);
    assert_eq!(
        r.status, 401,
        "a link to a guarded directory skipped its password"
    );
    assert!(r.header("www-authenticate").is_some());
    assert_eq!(request(&srv, "GET", "/link_priv/", &[]).status, 401);
    assert_eq!(
        request(&srv, "GET", "/link_priv/?download=tar", &[]).status,
        401
    );
    let r = request(&srv, "GET", "/link_priv/p.txt", auth);
    assert_eq!((r.status, &r.body[..]), (200, &b"private-p"[..]));
    // A link to a dotfile is as hidden as the dotfile.
    assert_eq!(request(&srv, "GET", "/.env", &[]).status, 404);
    assert_eq!(request(&srv, "GET", "/dotlink", &[]).status, 404);
    // A hard link to a guarded file: refused on a site with password rules.
    for a in [&[][..], auth] {
        let r = request(&srv, "GET", "/pubdir/hard.txt", a);
        assert_eq!(r.status, 403);
        assert!(!r.body.windows(9).any(|w| w == b"private-q"));
    }
    // A link to a public file inside the root still works.
    let r = request(&srv, "GET", "/pubdir/inlink.txt", &[]);
    assert_eq!((r.status, &r.body[..]), (200, &b"public"[..]));
    // And twice in a row (the second from the worker's cache, if any).
    assert_eq!(request(&srv, "GET", "/link_priv/p.txt", &[]).status, 401);
    let _ = request(&srv, "GET", "/link_priv/p.txt", auth);
    assert_eq!(request(&srv, "GET", "/link_priv/p.txt", &[]).status, 401);
}

#[test]
fn sidecars_are_guarded_as_their_originals() {
    let fx = Fixture::new();
    tree(&fx);
    let srv = server(&fx, |_| {});
    let alice = basic("alice", "pw");
    assert_eq!(request(&srv, "GET", "/keys/server.key", &[]).status, 401);
    for p in [
        "/keys/server.key.gz",
        "/keys/server.key.br",
        "/keys/server.key%2Egz",
        "/keys/server%2Ekey%2ebr",
    ] {
        let r = request(&srv, "GET", p, &[]);
        assert_eq!(r.status, 401, "{p} served without the key's password");
        assert!(!r.body.windows(6).any(|w| w == b"of-the"), "{p}");
    }
    let r = request(
        &srv,
        "GET",
        "/keys/server.key.gz",
        &[("Authorization", &alice)],
    );
    assert_eq!((r.status, &r.body[..]), (200, &b"gz-of-the-key"[..]));
    // Negotiation: with the password the sidecar is chosen; without, nothing is.
    let r = request(
        &srv,
        "GET",
        "/keys/server.key",
        &[("Accept-Encoding", "gzip, br")],
    );
    assert_eq!(r.status, 401);
    let r = request(
        &srv,
        "GET",
        "/keys/server.key",
        &[("Accept-Encoding", "gzip"), ("Authorization", &alice)],
    );
    assert_eq!(
        (r.status, r.header("content-encoding")),
        (200, Some("gzip"))
    );
    // A sidecar that is a link to a dotfile is never followed.
    for _ in 0..2 {
        let r = request(&srv, "GET", "/public2.txt", &[("Accept-Encoding", "gzip")]);
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-encoding"), None);
        assert_eq!(r.body, b"public two");
    }
    assert_eq!(request(&srv, "GET", "/public2.txt.gz", &[]).status, 404);
}

/// The heart of it: for a client without and with the password, the tar of the root
/// holds exactly the files it can fetch one by one (beneath directories it may list,
/// links left out), with the same bytes; every listing shows only what it can fetch,
/// with the sizes it would get.
#[test]
fn archives_and_listings_match_the_per_file_answers() {
    if !require("tar") {
        return;
    }
    let fx = Fixture::new();
    tree(&fx);
    let srv = server(&fx, |_| {});
    let names = all_names(&fx.root());
    let alice = basic("alice", "pw");
    for auth in [&[][..], &[("Authorization", alice.as_str())][..]] {
        let fetched = fetchable(&srv, &names, auth);
        // Sanity: the guarded and hidden things are what this client should get.
        assert!(!fetched.contains_key(".env") && !fetched.contains_key("dotlink"));
        assert!(!fetched.contains_key("pubdir/hard.txt"));
        assert_eq!(fetched.contains_key("private/p.txt"), !auth.is_empty());
        assert_eq!(fetched.contains_key("keys/server.key.gz"), !auth.is_empty());
        assert!(fetched.contains_key("nolist/n.txt"));

        // The archive of the root.
        let r = request(&srv, "GET", "/?download=tar", auth);
        assert_eq!(r.status, 200);
        let tar = tar_files(&r.body);
        for (path, body) in &tar {
            let rel = path.strip_prefix("root/").unwrap();
            assert_eq!(
                fetched.get(rel),
                Some(body),
                "{rel} archived but not fetchable so ({auth:?})"
            );
        }
        // Every fetchable file reached without a link, beneath listable directories.
        let root = fx.root();
        for rel in fetched.keys() {
            let through_link = {
                let mut p = root.clone();
                rel.split('/').any(|s| {
                    p.push(s);
                    p.symlink_metadata().unwrap().file_type().is_symlink()
                })
            };
            if through_link || rel.starts_with("nolist/") {
                assert!(!tar.contains_key(&format!("root/{rel}")), "{rel}");
                continue;
            }
            assert!(
                tar.contains_key(&format!("root/{rel}")),
                "{rel} fetchable but not archived"
            );
        }

        // Every listing: only what this client can fetch, with its size.
        for dir in [
            "",
            "pubdir",
            "private",
            "private/sub",
            "keys",
            "link_priv",
            "pubdir/keys_link",
        ] {
            let Ok(entries) = listing(&srv, dir, auth) else {
                continue;
            };
            for (name, kind, size) in entries {
                let rel = if dir.is_empty() {
                    name.clone()
                } else {
                    format!("{dir}/{name}")
                };
                if kind == "dir" {
                    let r = request(&srv, "GET", &format!("/{rel}/"), auth);
                    assert_eq!(r.status, 200, "{rel}/ listed but not fetchable ({auth:?})");
                } else {
                    // Beneath a linked directory it is fetched by its listed name.
                    let body = fetched.get(&rel).cloned().unwrap_or_else(|| {
                        let r = request(&srv, "GET", &format!("/{rel}"), auth);
                        assert_eq!(r.status, 200, "{rel} listed but not fetchable ({auth:?})");
                        r.body
                    });
                    assert_eq!(body.len() as u64, size, "{rel}");
                }
            }
        }
        // The links that can't be fetched are not listed.
        let names: Vec<String> = listing(&srv, "pubdir", auth)
            .unwrap()
            .into_iter()
            .map(|e| e.0)
            .collect();
        for absent in ["escape", "etcdir", "hard.txt"] {
            assert!(
                !names.contains(&absent.to_string()),
                "{absent} listed: {names:?}"
            );
        }
        assert!(names.contains(&"inlink.txt".to_string()));
        let root_names: Vec<String> = listing(&srv, "", auth)
            .unwrap()
            .into_iter()
            .map(|e| e.0)
            .collect();
        assert!(!root_names.contains(&"dotlink".to_string()));
        assert!(
            !root_names.contains(&"nolist".to_string()),
            "an unlistable directory is listed"
        );
        assert_eq!(
            root_names.contains(&"private".to_string()),
            !auth.is_empty()
        );
        assert_eq!(
            root_names.contains(&"link_priv".to_string()),
            !auth.is_empty()
        );
    }
    // Directories the client may not list are not archivable.
    assert_eq!(
        request(&srv, "GET", "/nolist/?download=tar", &[]).status,
        404
    );
    assert_eq!(
        request(&srv, "GET", "/private/?download=tar", &[]).status,
        401
    );
    let r = request(
        &srv,
        "GET",
        "/private/?download=tar",
        &[("Authorization", &alice)],
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        tar_files(&r.body).get("private/p.txt").map(Vec::as_slice),
        Some(&b"private-p"[..])
    );
    let no_listing = server(&fx, |c| c.listing = false);
    for p in ["/?download=tar", "/pubdir/?download=tar"] {
        assert_eq!(
            request(&no_listing, "GET", p, &[]).status,
            404,
            "{p} with --no-listing"
        );
        assert_eq!(
            request(&no_listing, "HEAD", p, &[]).status,
            404,
            "HEAD {p} with --no-listing"
        );
    }
}

#[test]
fn listings_leave_out_links_the_policy_refuses() {
    let fx = Fixture::new();
    tree(&fx);
    let names =
        |srv: &TestServer| -> Vec<(String, String, u64)> { listing(srv, "pubdir", &[]).unwrap() };
    // within-root: nothing from outside the root, not even its size or type.
    let srv = server(&fx, |_| {});
    let got = names(&srv);
    assert!(
        got.iter().all(|(n, _, _)| n != "escape" && n != "etcdir"),
        "{got:?}"
    );
    assert!(
        got.contains(&("inlink.txt".into(), "file".into(), 6)),
        "{got:?}"
    );
    // never: no link at all.
    let srv = server(&fx, |c| c.symlinks = SymlinkPolicy::Never);
    let got = names(&srv);
    assert!(
        got.iter()
            .all(|(n, _, _)| n != "inlink.txt" && n != "keys_link"),
        "{got:?}"
    );
    assert_eq!(request(&srv, "GET", "/pubdir/inlink.txt", &[]).status, 404);
}

/// Item 2 on its own: `--archives` is no way around a password rule, a
/// `listing = false` rule or `--no-listing`.
#[test]
fn archives_keep_to_auth_and_listing_rules() {
    let fx = Fixture::new();
    tree(&fx);
    let srv = server(&fx, |_| {});
    assert_eq!(request(&srv, "GET", "/private/p.txt", &[]).status, 401);
    let r = request(&srv, "GET", "/?download=tar", &[]);
    assert_eq!(r.status, 200);
    let tar = tar_files(&r.body);
    for guarded in [
        "root/private/p.txt",
        "root/private/sub/q.txt",
        "root/keys/server.key",
        "root/keys/server.key.gz",
        "root/nolist/n.txt",
    ] {
        assert!(
            !tar.contains_key(guarded),
            "{guarded} archived: {:?}",
            tar.keys()
        );
    }
    assert_eq!(
        tar.get("root/pub.txt").map(Vec::as_slice),
        Some(&b"public"[..])
    );
    assert_eq!(
        request(&srv, "GET", "/nolist/?download=tar", &[]).status,
        404
    );
    let no_listing = server(&fx, |c| c.listing = false);
    assert_eq!(
        request(&no_listing, "GET", "/?download=tar", &[]).status,
        404
    );
}

/// Item 8: a directory of 20,000 entries asked for as listings, tars and HEADs by
/// 8 clients that pipeline them and read nothing: each is refused after reading
/// the directory (at most 10,000 entries; HEAD builds nothing), and a good client
/// stays fast meanwhile. Then a directory of 9,000 files of 1 KiB, whose tars
/// clients don't read: the plans they hold are counted, beyond the budget refused
/// with 503, and given back when their clients go.
#[test]
fn large_directories_cost_bounded_time_and_memory() {
    use std::io::Write;
    use std::time::{Duration, Instant};
    let fx = Fixture::new();
    fx.file("small.txt", b"small");
    let r = fx.root();
    std::fs::create_dir(r.join("big")).unwrap();
    for i in 0..20_000 {
        std::fs::File::create(r.join(format!("big/f{i:05}"))).unwrap();
    }
    std::fs::create_dir(r.join("mid")).unwrap();
    let kib = vec![b'x'; 1024];
    for i in 0..9_000 {
        std::fs::write(r.join(format!("mid/f{i:04}")), &kib).unwrap();
    }
    let srv = TestServer::start(&r, |c| c.archives = true);

    // The attack, as filed: tars, listings and HEADs of the large directory.
    let started = Instant::now();
    let mut attackers = Vec::new();
    for _ in 0..8 {
        let mut s = srv.connect();
        let mut req = String::new();
        // HEADs send no body, so every one of them is answered: the server's work
        // is the whole attack.
        for _ in 0..4 {
            for p in ["/big/?download=tar", "/big/", "/big/?format=json"] {
                req.push_str(&format!("HEAD {p} HTTP/1.1\r\nHost: x\r\n\r\n"));
            }
        }
        for p in ["/big/?download=tar", "/big/"] {
            req.push_str(&format!("GET {p} HTTP/1.1\r\nHost: x\r\n\r\n"));
        }
        s.write_all(req.as_bytes()).unwrap();
        attackers.push(s);
    }
    // A good client meanwhile.
    let mut worst = Duration::ZERO;
    for _ in 0..20 {
        let t = Instant::now();
        let r = request(&srv, "GET", "/small.txt", &[]);
        worst = worst.max(t.elapsed());
        assert_eq!((r.status, &r.body[..]), (200, &b"small"[..]));
    }
    eprintln!(
        "good client: worst {worst:?} during the attack ({:?} since it began)",
        started.elapsed()
    );
    assert!(
        worst < Duration::from_secs(2),
        "a good client waited {worst:?} behind listings and tars of a large directory"
    );
    drop(attackers);
    // Over the limit: refused, GET and HEAD alike.
    for (m, p) in [
        ("GET", "/big/"),
        ("HEAD", "/big/"),
        ("GET", "/big/?download=tar"),
        ("GET", "/big/?format=json"),
        ("HEAD", "/big/?download=tar"),
    ] {
        assert_eq!(request(&srv, m, p, &[]).status, 403, "{m} {p}");
    }
    let head = request(&srv, "HEAD", "/mid/?download=tar", &[]);
    assert_eq!((head.status, head.header("content-length")), (200, None));

    // Unread tar plans hold their memory: beyond the budget new ones get 503...
    let mut statuses = Vec::new();
    let mut holders = Vec::new();
    for _ in 0..24 {
        let mut s = srv.connect();
        s.write_all(b"GET /mid/?download=tar HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        statuses.push(read_response(&mut s, true).unwrap().status);
        holders.push(s);
    }
    assert!(statuses.contains(&503), "{statuses:?}");
    // ...and give it back when their clients go.
    drop(holders);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut s = srv.connect();
        s.write_all(b"GET /mid/?download=tar HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let r = read_response(&mut s, false).unwrap();
        if r.status == 200 {
            assert_eq!(r.body.len(), 512 + 9_000 * (512 + 1024) + 1024);
            break;
        }
        assert!(Instant::now() < deadline, "the budget was not given back");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Item 11: the plain ustar name beside a PAX path (what tools that ignore PAX
/// extract to) never holds a `..` segment or starts with `/`, also once non-ASCII
/// characters are gone.
#[test]
fn ustar_names_beside_pax_paths_stay_inside() {
    let fx = Fixture::new();
    fx.file("d/\u{e9}../x.txt", b"x");
    fx.file("d/\u{e9}/\u{e9}\u{e9}/y.txt", b"y");
    let srv = TestServer::start(&fx.root(), |c| c.archives = true);
    let r = request(&srv, "GET", "/d/?download=tar", &[]);
    assert_eq!(r.status, 200);
    let body = &r.body;
    let (mut at, mut names) = (0, Vec::new());
    while at + 512 <= body.len() && body[at..at + 512].iter().any(|&b| b != 0) {
        let h = &body[at..at + 512];
        let end = h[..100].iter().position(|&b| b == 0).unwrap_or(100);
        let name = String::from_utf8_lossy(&h[..end]).into_owned();
        let size = usize::from_str_radix(
            std::str::from_utf8(&h[124..135])
                .unwrap()
                .trim_matches('\0'),
            8,
        )
        .unwrap();
        if h[156] != b'x' {
            names.push(name);
        }
        at += 512 + size.div_ceil(512) * 512;
    }
    assert!(names.len() >= 6, "{names:?}");
    for n in &names {
        assert!(
            !n.starts_with('/') && !n.split('/').any(|s| s == ".." || s == "."),
            "unsafe ustar name {n:?} in {names:?}"
        );
    }
    // The PAX records keep the real names.
    assert!(tar_files(body).contains_key("d/\u{e9}../x.txt"));
}
