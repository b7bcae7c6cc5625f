//! WebDAV (`--webdav`): each method's status codes, confinement of every write and
//! of `Destination`, the read rules PROPFIND keeps (dotfiles, listings), locks, and
//! the conformance suite (litmus) and a real client (rclone) when installed.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use zcopy_http::auth::Users;
use zcopy_http::driver::IoDriver;
use zcopy_http::rules::Rule;

use crate::util::*;

const DRIVERS: [IoDriver; 2] = [IoDriver::Epoll, IoDriver::Uring];

fn webdav(io: IoDriver) -> impl FnOnce(&mut zcopy_http::config::Config) {
    move |c| {
        c.io = io;
        c.webdav = true;
    }
}

/// `METHOD path` with header fields and a body (Content-Length), on a fresh
/// connection.
fn dav(
    srv: &TestServer,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> RawResponse {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "PUT" {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    req.push_str(body);
    let mut s = srv.connect();
    s.write_all(req.as_bytes()).unwrap();
    read_response(&mut s, false).expect("a response")
}

fn text(r: &RawResponse) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

/// Every file and directory beneath `dir`, relative, sorted.
fn tree(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            out.push(p.strip_prefix(base).unwrap().to_string_lossy().into_owned());
            if e.file_type().unwrap().is_dir() {
                walk(base, &p, out);
            }
        }
    }
    let mut v = Vec::new();
    walk(dir, dir, &mut v);
    v.sort();
    v
}

const ALLPROP: &str =
    r#"<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:allprop/></D:propfind>"#;

#[test]
fn webdav_is_off_by_default_and_uploads_alone_do_not_turn_it_on() {
    let fx = Fixture::new();
    fx.file("a.txt", b"a");
    for upload in [false, true] {
        let srv = TestServer::start(&fx.root(), |c| c.upload = upload);
        for (m, h) in [
            ("MKCOL", vec![]),
            ("DELETE", vec![]),
            ("COPY", vec![("Destination", "/b.txt")]),
            ("MOVE", vec![("Destination", "/b.txt")]),
            ("PROPPATCH", vec![]),
            ("LOCK", vec![]),
            ("PROPFIND", vec![("Depth", "1")]),
        ] {
            let target = if m == "MKCOL" { "/d" } else { "/a.txt" };
            let r = dav(&srv, m, target, &h, "");
            assert!(
                r.status == 405 || r.status == 501,
                "{m} with upload={upload}: {}",
                r.status
            );
        }
        let r = dav(&srv, "OPTIONS", "/", &[], "");
        assert!(r.header("dav").is_none());
        assert_eq!(tree(&fx.root()), ["a.txt"]);
    }
}

#[test]
fn a_rule_turns_webdav_on_for_its_paths_only() {
    let fx = Fixture::new();
    fx.file("shared/a.txt", b"a");
    fx.file("other/b.txt", b"b");
    let srv = TestServer::start(&fx.root(), |c| {
        c.io = io_driver();
        c.rules = vec![Rule {
            glob: "shared/**".into(),
            webdav: Some(true),
            ..Rule::default()
        }];
    });
    assert_eq!(dav(&srv, "MKCOL", "/shared/new", &[], "").status, 201);
    assert_eq!(dav(&srv, "PUT", "/shared/p.txt", &[], "p").status, 201);
    assert_eq!(
        dav(&srv, "PROPFIND", "/shared/", &[("Depth", "1")], "").status,
        207
    );
    assert_eq!(dav(&srv, "MKCOL", "/other/new", &[], "").status, 501);
    assert_eq!(dav(&srv, "PUT", "/other/p.txt", &[], "p").status, 405);
    assert_eq!(dav(&srv, "DELETE", "/other/b.txt", &[], "").status, 405);
    // Nor can a COPY or MOVE from inside write outside.
    let r = dav(
        &srv,
        "COPY",
        "/shared/a.txt",
        &[("Destination", "/other/a.txt")],
        "",
    );
    assert_eq!(r.status, 403);
    let r = dav(
        &srv,
        "MOVE",
        "/shared/a.txt",
        &[("Destination", "/a.txt")],
        "",
    );
    assert_eq!(r.status, 403);
    assert_eq!(
        tree(&fx.root()),
        [
            "other",
            "other/b.txt",
            "shared",
            "shared/a.txt",
            "shared/new",
            "shared/p.txt"
        ]
    );
}

#[test]
fn options_names_the_classes_and_methods() {
    let fx = Fixture::new();
    let srv = TestServer::start(&fx.root(), webdav(io_driver()));
    let r = dav(&srv, "OPTIONS", "/", &[], "");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("dav"), Some("1, 2"));
    let allow = r.header("allow").unwrap();
    for m in [
        "PROPFIND",
        "PROPPATCH",
        "MKCOL",
        "COPY",
        "MOVE",
        "LOCK",
        "UNLOCK",
        "PUT",
        "DELETE",
    ] {
        assert!(allow.contains(m), "{allow}");
    }
}

#[test]
fn propfind_depth_0_and_1_with_the_etag_get_sends() {
    for io in DRIVERS {
        let fx = Fixture::new();
        fx.file("dir/a b#%.txt", b"hello");
        fx.file("dir/sub/x", b"");
        fx.file("dir/.hidden", b"h");
        let srv = TestServer::start(&fx.root(), webdav(io));
        let (st, headers, _) = get(&srv.url("/dir/a%20b%23%25.txt"), &[]);
        assert_eq!(st, 200);
        let etag = header(&headers, "etag").unwrap().to_owned();
        // With a body (received into memory through the upload path) and without.
        for body in [ALLPROP, ""] {
            let r = dav(&srv, "PROPFIND", "/dir/", &[("Depth", "1")], body);
            assert_eq!(r.status, 207, "{io}");
            let t = text(&r);
            assert!(t.contains("<D:href>/dir/</D:href>"), "{t}");
            assert!(t.contains("<D:href>/dir/a%20b%23%25.txt</D:href>"), "{t}");
            assert!(t.contains("<D:href>/dir/sub/</D:href>"), "{t}");
            assert!(
                t.contains(&format!(
                    "<D:getetag>{}</D:getetag>",
                    etag.replace('"', "&quot;")
                )),
                "{t}"
            );
            assert!(
                t.contains("<D:getcontentlength>5</D:getcontentlength>"),
                "{t}"
            );
            assert!(t.contains("<D:collection/>"), "{t}");
            assert!(!t.contains("hidden"), "dotfiles are not listed: {t}");
        }
        let r = dav(&srv, "PROPFIND", "/dir/", &[("Depth", "0")], "");
        assert_eq!(r.status, 207);
        assert!(!text(&r).contains("sub"));
        // Named properties: found ones 200, unknown ones 404.
        let body = r#"<D:propfind xmlns:D="DAV:"><D:prop><D:getcontentlength/><z:nope xmlns:z="urn:z"/></D:prop></D:propfind>"#;
        let r = dav(
            &srv,
            "PROPFIND",
            "/dir/a%20b%23%25.txt",
            &[("Depth", "0")],
            body,
        );
        let t = text(&r);
        assert!(
            t.contains("HTTP/1.1 200 OK") && t.contains("HTTP/1.1 404 Not Found"),
            "{t}"
        );
        // Quota (RFC 4331, asked for by name: Finder shows free space from it).
        let body = r#"<D:propfind xmlns:D="DAV:"><D:prop><D:quota-available-bytes/><D:quota-used-bytes/></D:prop></D:propfind>"#;
        let t = text(&dav(&srv, "PROPFIND", "/", &[("Depth", "0")], body));
        assert!(
            t.contains("<D:quota-available-bytes>") && t.contains("<D:quota-used-bytes>"),
            "{t}"
        );
        assert!(!t.contains("404 Not Found"), "{t}");
        // Infinity (also when no Depth is sent) is refused.
        for h in [vec![("Depth", "infinity")], vec![]] {
            let r = dav(&srv, "PROPFIND", "/dir/", &h, "");
            assert_eq!(r.status, 403);
            assert!(text(&r).contains("propfind-finite-depth"));
        }
        // On a file, infinity is the file alone.
        for h in [vec![("Depth", "infinity")], vec![]] {
            let r = dav(&srv, "PROPFIND", "/dir/sub/x", &h, "");
            assert_eq!(r.status, 207);
        }
        assert_eq!(
            dav(&srv, "PROPFIND", "/nope", &[("Depth", "0")], "").status,
            404
        );
        assert_eq!(
            dav(&srv, "PROPFIND", "/dir/.hidden", &[("Depth", "0")], "").status,
            404
        );
        assert_eq!(
            dav(&srv, "PROPFIND", "/", &[("Depth", "0")], "<D:propfind").status,
            400
        );
    }
}

#[test]
fn propfind_shows_dotfiles_only_with_hidden_and_lists_only_where_a_listing_would() {
    let fx = Fixture::new();
    fx.file("d/.env", b"x");
    fx.file("open/f", b"x");
    let srv = TestServer::start(&fx.root(), |c| {
        webdav(io_driver())(c);
        c.hidden = true;
    });
    let r = dav(&srv, "PROPFIND", "/d/", &[("Depth", "1")], "");
    assert!(text(&r).contains("/d/.env"));
    drop(srv);
    // Listings off: Depth 1 on a collection is 403 (a client must not mistake it
    // for an empty one); Depth 0 and files still answer. A rule turns one back on.
    let srv = TestServer::start(&fx.root(), |c| {
        webdav(io_driver())(c);
        c.listing = false;
        c.rules = vec![Rule {
            glob: "open".into(),
            listing: Some(true),
            ..Rule::default()
        }];
    });
    assert_eq!(request(&srv, "GET", "/d/", &[]).status, 404);
    assert_eq!(
        dav(&srv, "PROPFIND", "/d/", &[("Depth", "1")], "").status,
        403
    );
    assert_eq!(
        dav(&srv, "PROPFIND", "/d/", &[("Depth", "0")], "").status,
        207
    );
    let r = dav(&srv, "PROPFIND", "/open/", &[("Depth", "1")], "");
    assert_eq!(r.status, 207);
    assert!(text(&r).contains("/open/f"));
}

#[test]
fn propfind_depth_1_lists_at_most_what_a_listing_would() {
    let fx = Fixture::new();
    let d = fx.root().join("many");
    std::fs::create_dir(&d).unwrap();
    for i in 0..10_001 {
        std::fs::File::create(d.join(i.to_string())).unwrap();
    }
    let srv = TestServer::start(&fx.root(), webdav(io_driver()));
    assert_eq!(request(&srv, "GET", "/many/", &[]).status, 403);
    assert_eq!(
        dav(&srv, "PROPFIND", "/many/", &[("Depth", "1")], "").status,
        403
    );
    std::fs::remove_file(d.join("0")).unwrap();
    let r = dav(&srv, "PROPFIND", "/many/", &[("Depth", "1")], "");
    assert_eq!(r.status, 207);
    assert_eq!(text(&r).matches("<D:response>").count(), 10_001);
}

#[test]
fn a_large_propfind_body_is_413() {
    let fx = Fixture::new();
    let srv = TestServer::start(&fx.root(), webdav(io_driver()));
    let body = format!(
        "<D:propfind xmlns:D=\"DAV:\"><!--{}--><D:allprop/></D:propfind>",
        "x".repeat(70 * 1024)
    );
    assert_eq!(
        dav(&srv, "PROPFIND", "/", &[("Depth", "0")], &body).status,
        413
    );
    // Chunked: decoded into memory up to the same bound.
    let chunked = |body: &str| {
        let mut req = String::from(
            "PROPFIND / HTTP/1.1\r\nHost: x\r\nDepth: 0\r\nTransfer-Encoding: chunked\r\n\r\n",
        );
        for part in body.as_bytes().chunks(1000) {
            req.push_str(&format!(
                "{:x}\r\n{}\r\n",
                part.len(),
                std::str::from_utf8(part).unwrap()
            ));
        }
        req.push_str("0\r\n\r\n");
        let mut s = srv.connect();
        s.write_all(req.as_bytes()).unwrap();
        read_response(&mut s, false).unwrap().status
    };
    assert_eq!(chunked(ALLPROP), 207);
    assert_eq!(chunked(&body), 413);
}

#[test]
fn proppatch_keeps_dead_properties_in_xattrs_and_protects_live_ones() {
    for io in DRIVERS {
        let fx = Fixture::new();
        fx.file("f.txt", b"x");
        let srv = TestServer::start(&fx.root(), webdav(io));
        let set = r#"<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:z"><D:set><D:prop><Z:author>Jim &amp; <Z:b>Roy</Z:b></Z:author></D:prop></D:set></D:propertyupdate>"#;
        let r = dav(&srv, "PROPPATCH", "/f.txt", &[], set);
        assert_eq!(r.status, 207, "{io}");
        assert!(text(&r).contains("HTTP/1.1 200 OK"), "{}", text(&r));
        let body = r#"<D:propfind xmlns:D="DAV:"><D:prop><Z:author xmlns:Z="urn:z"/></D:prop></D:propfind>"#;
        let t = text(&dav(&srv, "PROPFIND", "/f.txt", &[("Depth", "0")], body));
        assert!(t.contains("Jim &amp; <Z:b>Roy</Z:b>"), "{t}");
        // Kept by the file system, under the file.
        let attrs = std::process::Command::new("getfattr")
            .args(["-d", "-m", "user.dav"])
            .arg(fx.root().join("f.txt"))
            .output();
        if let Ok(o) = attrs
            && o.status.success()
        {
            assert!(String::from_utf8_lossy(&o.stdout).contains("user.dav:author:urn:z"));
        }
        // A live property is protected: 403 for it, 424 for the rest, nothing set.
        let bad = r#"<D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:z"><D:set><D:prop><Z:other>1</Z:other><D:getetag>x</D:getetag></D:prop></D:set></D:propertyupdate>"#;
        let t = text(&dav(&srv, "PROPPATCH", "/f.txt", &[], bad));
        assert!(
            t.contains("403 Forbidden") && t.contains("424 Failed Dependency"),
            "{t}"
        );
        let t = text(&dav(&srv, "PROPFIND", "/f.txt", &[("Depth", "0")], ALLPROP));
        assert!(!t.contains("other"), "{t}");
        assert_eq!(dav(&srv, "PROPPATCH", "/none.txt", &[], set).status, 404);
        assert_eq!(dav(&srv, "PROPPATCH", "/f.txt", &[], "<x/>").status, 400);
    }
}

#[test]
fn mkcol_statuses() {
    let fx = Fixture::new();
    fx.file("file", b"x");
    let srv = TestServer::start(&fx.root(), webdav(io_driver()));
    assert_eq!(dav(&srv, "MKCOL", "/new", &[], "").status, 201);
    assert!(fx.root().join("new").is_dir());
    assert_eq!(dav(&srv, "MKCOL", "/new/", &[], "").status, 405);
    assert_eq!(dav(&srv, "MKCOL", "/file", &[], "").status, 405);
    assert_eq!(dav(&srv, "MKCOL", "/a/b", &[], "").status, 409);
    assert_eq!(dav(&srv, "MKCOL", "/withbody", &[], "<x/>").status, 415);
    assert_eq!(dav(&srv, "MKCOL", "/.dot", &[], "").status, 404);
    assert!(!fx.root().join("withbody").exists());
    assert!(!fx.root().join(".dot").exists());
}

#[test]
fn delete_removes_files_and_trees_but_not_what_the_client_cannot_see() {
    let fx = Fixture::new();
    fx.file("f", b"x");
    fx.file("t/a/b/c.txt", b"x");
    fx.file("t/d.txt", b"x");
    fx.file("h/.secret", b"x");
    let srv = TestServer::start(&fx.root(), webdav(io_driver()));
    assert_eq!(dav(&srv, "DELETE", "/f", &[], "").status, 204);
    assert_eq!(dav(&srv, "DELETE", "/f", &[], "").status, 404);
    assert_eq!(
        dav(&srv, "DELETE", "/t/", &[("Depth", "0")], "").status,
        400
    );
    assert_eq!(dav(&srv, "DELETE", "/t/", &[], "").status, 204);
    assert!(!fx.root().join("t").exists());
    // A directory holding a dotfile (hidden from this client) stays whole.
    assert_eq!(dav(&srv, "DELETE", "/h/", &[], "").status, 403);
    assert!(fx.root().join("h/.secret").exists());
    assert_eq!(dav(&srv, "DELETE", "/", &[], "").status, 403);
}

#[test]
fn copy_and_move_statuses_overwrite_and_depth() {
    for io in DRIVERS {
        let fx = Fixture::new();
        fx.file("src.txt", b"source");
        fx.file("other.txt", b"other");
        fx.file("dir/a/b.txt", b"b");
        fx.file("dir/c.txt", b"c");
        let srv = TestServer::start(&fx.root(), webdav(io));
        let d = |p: &str| format!("http://x{p}");
        let r = dav(
            &srv,
            "COPY",
            "/src.txt",
            &[("Destination", &d("/copy.txt"))],
            "",
        );
        assert_eq!(r.status, 201, "{io}");
        assert_eq!(
            std::fs::read(fx.root().join("copy.txt")).unwrap(),
            b"source"
        );
        // The same server, however its authority is spelt.
        for dest in ["HTTP://X/copy2.txt", "http://x:80/copy2.txt"] {
            let r = dav(&srv, "COPY", "/src.txt", &[("Destination", dest)], "");
            assert!(r.status == 201 || r.status == 204, "{dest}: {}", r.status);
        }
        std::fs::remove_file(fx.root().join("copy2.txt")).unwrap();
        let r = dav(
            &srv,
            "COPY",
            "/src.txt",
            &[("Destination", "/other.txt"), ("Overwrite", "F")],
            "",
        );
        assert_eq!(r.status, 412);
        assert_eq!(
            std::fs::read(fx.root().join("other.txt")).unwrap(),
            b"other"
        );
        let r = dav(
            &srv,
            "COPY",
            "/src.txt",
            &[("Destination", "/other.txt")],
            "",
        );
        assert_eq!(r.status, 204);
        assert_eq!(
            std::fs::read(fx.root().join("other.txt")).unwrap(),
            b"source"
        );
        assert_eq!(
            dav(
                &srv,
                "COPY",
                "/src.txt",
                &[("Destination", "/no/x.txt")],
                ""
            )
            .status,
            409
        );
        assert_eq!(
            dav(&srv, "COPY", "/none", &[("Destination", "/y")], "").status,
            404
        );
        assert_eq!(
            dav(&srv, "COPY", "/src.txt", &[("Destination", "/src.txt")], "").status,
            403
        );
        assert_eq!(dav(&srv, "COPY", "/src.txt", &[], "").status, 400);
        // Directories: infinity copies the tree, 0 the collection alone.
        assert_eq!(
            dav(&srv, "COPY", "/dir/", &[("Destination", "/dir2/")], "").status,
            201
        );
        assert_eq!(tree(&fx.root().join("dir2")), ["a", "a/b.txt", "c.txt"]);
        let r = dav(
            &srv,
            "COPY",
            "/dir/",
            &[("Destination", "/dir3/"), ("Depth", "0")],
            "",
        );
        assert_eq!(r.status, 201);
        assert!(tree(&fx.root().join("dir3")).is_empty());
        assert_eq!(
            dav(&srv, "COPY", "/dir/", &[("Destination", "/dir/a/in/")], "").status,
            403
        );
        // MOVE renames; onto an existing collection with Overwrite T it replaces it.
        assert_eq!(
            dav(
                &srv,
                "MOVE",
                "/copy.txt",
                &[("Destination", "/dir/moved.txt")],
                ""
            )
            .status,
            201
        );
        assert!(!fx.root().join("copy.txt").exists());
        assert_eq!(
            std::fs::read(fx.root().join("dir/moved.txt")).unwrap(),
            b"source"
        );
        assert_eq!(
            dav(&srv, "MOVE", "/dir2/", &[("Destination", "/dir3/")], "").status,
            204
        );
        assert_eq!(tree(&fx.root().join("dir3")), ["a", "a/b.txt", "c.txt"]);
        assert!(!fx.root().join("dir2").exists());
        let r = dav(
            &srv,
            "MOVE",
            "/dir3/",
            &[("Destination", "/dir/"), ("Overwrite", "F")],
            "",
        );
        assert_eq!(r.status, 412);
        assert_eq!(
            dav(
                &srv,
                "MOVE",
                "/dir3/",
                &[("Destination", "/d4/"), ("Depth", "0")],
                ""
            )
            .status,
            400
        );
    }
}

#[test]
fn copy_keeps_dead_properties() {
    let fx = Fixture::new();
    fx.file("f.txt", b"x");
    let srv = TestServer::start(&fx.root(), webdav(io_driver()));
    let set = r#"<D:propertyupdate xmlns:D="DAV:"><D:set><D:prop><n xmlns="urn:n">v1</n></D:prop></D:set></D:propertyupdate>"#;
    assert_eq!(dav(&srv, "PROPPATCH", "/f.txt", &[], set).status, 207);
    assert_eq!(
        dav(&srv, "COPY", "/f.txt", &[("Destination", "/g.txt")], "").status,
        201
    );
    let t = text(&dav(&srv, "PROPFIND", "/g.txt", &[("Depth", "0")], ALLPROP));
    assert!(t.contains(">v1<"), "{t}");
}

#[test]
fn destination_must_be_this_server_and_beneath_the_root() {
    let fx = Fixture::new();
    fx.file("a.txt", b"a");
    std::os::unix::fs::symlink(fx.dir.path(), fx.root().join("out")).unwrap();
    let srv = TestServer::start(&fx.root(), webdav(io_driver()));
    let before = tree(fx.dir.path());
    for m in ["COPY", "MOVE"] {
        for (dest, want) in [
            ("http://elsewhere.example/a2.txt", 502),
            ("https://x:9/a2.txt", 502),
            ("/../a2.txt", 400),
            ("/%2e%2e/a2.txt", 400),
            ("http://x/%2E%2E/%2e%2e/a2.txt", 400),
            ("ftp://x/a2.txt", 400),
            ("/out/a2.txt", 409),
            ("/out/root/a2.txt", 409),
            ("/.a2.txt", 403),
        ] {
            let r = dav(&srv, m, "/a.txt", &[("Destination", dest)], "");
            assert_eq!(r.status, want, "{m} to {dest}");
        }
    }
    assert_eq!(tree(fx.dir.path()), before, "nothing written anywhere");
    // A sidecar beside its original would be served in its place.
    fx.file("b.txt", b"b");
    let r = dav(&srv, "COPY", "/a.txt", &[("Destination", "/b.txt.gz")], "");
    assert_eq!(r.status, 403);
}

#[test]
fn every_write_method_is_confined_beneath_the_root() {
    let fx = Fixture::new();
    fx.file("in/f.txt", b"f");
    std::os::unix::fs::symlink(fx.dir.path(), fx.root().join("out")).unwrap();
    std::os::unix::fs::symlink(fx.dir.path().join("secret.txt"), fx.root().join("s.txt")).unwrap();
    let srv = TestServer::start(&fx.root(), webdav(io_driver()));
    let before = tree(fx.dir.path());
    let lock = r#"<D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype></D:lockinfo>"#;
    let patch = r#"<D:propertyupdate xmlns:D="DAV:"><D:set><D:prop><n xmlns="urn:n">v</n></D:prop></D:set></D:propertyupdate>"#;
    for target in [
        "/../x",
        "/%2e%2e/x",
        "/in/%2E%2E/%2e%2e/x",
        "/out/x",
        "/out/root/in/x",
        "/out/secret.txt",
    ] {
        for (m, h, body) in [
            ("PUT", vec![], "x"),
            ("MKCOL", vec![], ""),
            ("DELETE", vec![], ""),
            ("COPY", vec![("Destination", "/in/c")], ""),
            ("MOVE", vec![("Destination", "/in/c")], ""),
            ("PROPPATCH", vec![], patch),
            ("LOCK", vec![], lock),
        ] {
            let r = dav(&srv, m, target, &h, body);
            assert!((400..500).contains(&r.status), "{m} {target}: {}", r.status);
        }
    }
    // Into a symlink that leads out, from the inside.
    let r = dav(
        &srv,
        "COPY",
        "/in/f.txt",
        &[("Destination", "/out/f.txt")],
        "",
    );
    assert!((400..500).contains(&r.status));
    // A link to a file outside: never followed by a write.
    assert_eq!(dav(&srv, "PROPPATCH", "/s.txt", &[], patch).status, 404);
    assert_eq!(
        dav(&srv, "COPY", "/s.txt", &[("Destination", "/in/s2")], "").status,
        403
    );
    assert_eq!(
        dav(&srv, "MOVE", "/s.txt", &[("Destination", "/in/s2")], "").status,
        403
    );
    assert_eq!(tree(fx.dir.path()), before, "nothing written anywhere");
    assert_eq!(
        std::fs::read(fx.dir.path().join("secret.txt")).unwrap(),
        SECRET
    );
    // DELETE of the link removes the name inside the root, never its target.
    assert_eq!(dav(&srv, "DELETE", "/s.txt", &[], "").status, 204);
    assert_eq!(dav(&srv, "DELETE", "/out", &[], "").status, 204);
    assert_eq!(
        std::fs::read(fx.dir.path().join("secret.txt")).unwrap(),
        SECRET
    );
    assert!(fx.root().join("in/f.txt").exists());
}

#[test]
fn locks_guard_writes_until_unlocked() {
    let fx = Fixture::new();
    fx.file("f.txt", b"x");
    fx.file("d/g.txt", b"x");
    let srv = TestServer::start(&fx.root(), webdav(io_driver()));
    let info = |scope: &str| {
        format!(
            r#"<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:{scope}/></D:lockscope><D:locktype><D:write/></D:locktype><D:owner>me</D:owner></D:lockinfo>"#
        )
    };
    let r = dav(
        &srv,
        "LOCK",
        "/f.txt",
        &[("Timeout", "Second-600")],
        &info("exclusive"),
    );
    assert_eq!(r.status, 200, "{}", text(&r));
    let token = r.header("lock-token").unwrap().to_owned();
    assert!(token.starts_with("<opaquelocktoken:"), "{token}");
    assert!(text(&r).contains(">me</D:owner>"), "{}", text(&r));
    // Others: 423 for writes and for a second lock; GET still reads.
    assert_eq!(dav(&srv, "PUT", "/f.txt", &[], "y").status, 423);
    assert_eq!(dav(&srv, "DELETE", "/f.txt", &[], "").status, 423);
    assert_eq!(
        dav(&srv, "MOVE", "/f.txt", &[("Destination", "/h.txt")], "").status,
        423
    );
    assert_eq!(
        dav(&srv, "COPY", "/d/g.txt", &[("Destination", "/f.txt")], "").status,
        423
    );
    assert_eq!(
        dav(&srv, "LOCK", "/f.txt", &[], &info("shared")).status,
        423
    );
    assert_eq!(request(&srv, "GET", "/f.txt", &[]).status, 200);
    // A wrong token: the If header does not hold.
    let bad = "(<opaquelocktoken:00000000-0000-0000-0000-000000000000>)";
    assert_eq!(dav(&srv, "PUT", "/f.txt", &[("If", bad)], "y").status, 412);
    let good = format!("({token})");
    assert_eq!(
        dav(&srv, "PUT", "/f.txt", &[("If", &good)], "y").status,
        204
    );
    assert_eq!(std::fs::read(fx.root().join("f.txt")).unwrap(), b"y");
    // Refresh, then unlock.
    assert_eq!(
        dav(&srv, "LOCK", "/f.txt", &[("If", &good)], "").status,
        200
    );
    assert_eq!(
        dav(
            &srv,
            "UNLOCK",
            "/f.txt",
            &[("Lock-Token", "<opaquelocktoken:nope>")],
            ""
        )
        .status,
        409
    );
    assert_eq!(
        dav(&srv, "UNLOCK", "/f.txt", &[("Lock-Token", &token)], "").status,
        204
    );
    assert_eq!(dav(&srv, "PUT", "/f.txt", &[], "z").status, 204);
    // A depth-infinity lock on a collection guards its members, and the collection's
    // membership (a new member needs the token too).
    let r = dav(&srv, "LOCK", "/d/", &[], &info("exclusive"));
    assert_eq!(r.status, 200);
    let dtoken = r.header("lock-token").unwrap().to_owned();
    assert_eq!(dav(&srv, "PUT", "/d/g.txt", &[], "y").status, 423);
    assert_eq!(dav(&srv, "PUT", "/d/new.txt", &[], "y").status, 423);
    assert_eq!(dav(&srv, "MKCOL", "/d/sub", &[], "").status, 423);
    assert_eq!(dav(&srv, "DELETE", "/d/", &[], "").status, 423);
    let dgood = format!("({dtoken})");
    assert_eq!(
        dav(&srv, "PUT", "/d/new.txt", &[("If", &dgood)], "y").status,
        201
    );
    assert_eq!(
        dav(&srv, "DELETE", "/d/", &[("If", &dgood)], "").status,
        204
    );
    // The lock went with the collection.
    assert_eq!(dav(&srv, "MKCOL", "/d", &[], "").status, 201);
    // LOCK on an unmapped URL makes an empty file (201).
    let r = dav(&srv, "LOCK", "/fresh.txt", &[], &info("shared"));
    assert_eq!(r.status, 201);
    assert_eq!(std::fs::read(fx.root().join("fresh.txt")).unwrap(), b"");
    // Shared locks share.
    assert_eq!(
        dav(&srv, "LOCK", "/fresh.txt", &[], &info("shared")).status,
        200
    );
    assert_eq!(
        dav(&srv, "LOCK", "/fresh.txt", &[], &info("exclusive")).status,
        423
    );
    assert_eq!(
        dav(&srv, "LOCK", "/f.txt", &[("Depth", "1")], &info("shared")).status,
        400
    );
}

#[test]
fn anonymous_dav_writes_off_loopback_need_an_auth_rule_or_the_flag() {
    let fx = Fixture::new();
    fx.file("a.txt", b"a");
    let start = |allow: bool| {
        TestServer::start(&fx.root(), move |c| {
            webdav(io_driver())(c);
            c.listen = vec!["0.0.0.0:0".parse().unwrap()];
            c.allow_anonymous_writes = allow;
        })
    };
    let srv = start(false);
    assert_eq!(dav(&srv, "MKCOL", "/d", &[], "").status, 403);
    assert_eq!(dav(&srv, "DELETE", "/a.txt", &[], "").status, 403);
    assert_eq!(
        dav(&srv, "COPY", "/a.txt", &[("Destination", "/b.txt")], "").status,
        403
    );
    assert_eq!(dav(&srv, "PUT", "/b.txt", &[], "b").status, 403);
    // Reading is not writing.
    assert_eq!(
        dav(&srv, "PROPFIND", "/", &[("Depth", "1")], "").status,
        207
    );
    assert_eq!(tree(&fx.root()), ["a.txt"]);
    drop(srv);
    let srv = start(true);
    assert_eq!(dav(&srv, "MKCOL", "/d", &[], "").status, 201);
}

#[test]
fn a_protected_path_needs_the_password_for_dav_too() {
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    let users = Arc::new(Users::parse("files", &format!("alice:{hash}\n")).unwrap());
    let fx = Fixture::new();
    fx.file("pub/a.txt", b"a");
    fx.file("private/p.txt", b"p");
    let srv = TestServer::start(&fx.root(), |c| {
        webdav(io_driver())(c);
        c.rules = vec![Rule {
            glob: "private/**".into(),
            auth: Some(users),
            ..Rule::default()
        }];
    });
    assert_eq!(
        dav(&srv, "PROPFIND", "/private/p.txt", &[("Depth", "0")], "").status,
        401
    );
    assert_eq!(dav(&srv, "DELETE", "/private/p.txt", &[], "").status, 401);
    // Nor can a COPY from outside land in it, or a listing above show it.
    let r = dav(
        &srv,
        "COPY",
        "/pub/a.txt",
        &[("Destination", "/private/a.txt")],
        "",
    );
    assert_eq!(r.status, 403);
    assert!(!fx.root().join("private/a.txt").exists());
    let t = text(&dav(&srv, "PROPFIND", "/private/", &[("Depth", "0")], ""));
    assert!(!t.contains("p.txt"));
    use base64::Engine;
    let good = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("alice:s3cret")
    );
    let r = dav(
        &srv,
        "PROPFIND",
        "/private/",
        &[("Depth", "1"), ("Authorization", &good)],
        "",
    );
    assert_eq!(r.status, 207);
    assert!(text(&r).contains("p.txt"));
}

/// A DELETE, COPY or MOVE of a collection reaches every name beneath it: refused
/// when a rule guards something there with a password this client does not give.
/// A hard-linked file (maybe a guarded file under another name) is neither copied
/// nor shown, as GET does not serve it.
#[test]
fn tree_operations_do_not_reach_past_a_password() {
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    let users = Arc::new(Users::parse("files", &format!("alice:{hash}\n")).unwrap());
    let fx = Fixture::new();
    fx.file("d/a.txt", b"a");
    fx.file("d/private/p.txt", b"p");
    std::fs::hard_link(fx.root().join("d/private/p.txt"), fx.root().join("d/h.txt")).unwrap();
    let srv = TestServer::start(&fx.root(), |c| {
        webdav(io_driver())(c);
        c.rules = vec![Rule {
            glob: "d/private/**".into(),
            auth: Some(users),
            ..Rule::default()
        }];
    });
    let before = tree(&fx.root());
    assert_eq!(
        dav(&srv, "COPY", "/d/", &[("Destination", "/e/")], "").status,
        403
    );
    assert_eq!(
        dav(&srv, "MOVE", "/d/", &[("Destination", "/e/")], "").status,
        403
    );
    assert_eq!(dav(&srv, "DELETE", "/d/", &[], "").status, 403);
    assert_eq!(dav(&srv, "DELETE", "/", &[], "").status, 403);
    assert_eq!(
        dav(
            &srv,
            "COPY",
            "/d/h.txt",
            &[("Destination", "/d/h2.txt")],
            ""
        )
        .status,
        403
    );
    assert_eq!(tree(&fx.root()), before);
    assert_eq!(request(&srv, "GET", "/d/h.txt", &[]).status, 403);
    assert_eq!(
        dav(&srv, "PROPFIND", "/d/h.txt", &[("Depth", "0")], "").status,
        403
    );
    let t = text(&dav(&srv, "PROPFIND", "/d/", &[("Depth", "1")], ""));
    assert!(t.contains("/d/a.txt") && !t.contains("h.txt"), "{t}");
    // Files beside the guarded folder are still copied.
    assert_eq!(
        dav(&srv, "COPY", "/d/a.txt", &[("Destination", "/d/b.txt")], "").status,
        201
    );
    use base64::Engine;
    let good = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("alice:s3cret")
    );
    let auth = [("Destination", "/e/"), ("Authorization", good.as_str())];
    // With the password, the client may (once the file has one name).
    assert_eq!(dav(&srv, "COPY", "/d/private/", &auth, "").status, 403);
    std::fs::remove_file(fx.root().join("d/h.txt")).unwrap();
    assert_eq!(dav(&srv, "COPY", "/d/private/", &auth, "").status, 201);
    assert_eq!(
        dav(&srv, "DELETE", "/d/", &[("Authorization", &good)], "").status,
        204
    );
}

/// litmus, the WebDAV conformance suite: every test of every suite passes.
#[test]
fn litmus_passes_every_suite() {
    if !require("litmus") {
        return;
    }
    for io in DRIVERS {
        let fx = Fixture::new();
        let srv = TestServer::start(&fx.root(), webdav(io));
        let work = tempfile::tempdir().unwrap();
        let out = std::process::Command::new("litmus")
            .arg(srv.url("/"))
            .current_dir(work.path())
            .env("TESTS", "basic copymove props locks http")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let summaries: Vec<&str> = text.lines().filter(|l| l.contains("summary for")).collect();
        assert_eq!(summaries.len(), 5, "{io}: {text}");
        for s in &summaries {
            assert!(s.contains(" 0 failed"), "{io}: {s}\n{text}");
        }
        assert!(out.status.success(), "{io}: {text}");
    }
}

/// rclone's webdav backend syncs a tree up (nested folders, empty files, odd names,
/// a large file), back down, and `rclone check` finds no difference; a second sync
/// after local changes deletes and replaces on the server.
#[test]
fn rclone_syncs_a_tree_up_and_back() {
    if !require("rclone") {
        return;
    }
    let fx = Fixture::new();
    let srv = TestServer::start(&fx.root(), webdav(io_driver()));
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    for (name, content) in [
        ("a/x.txt", &b"hi\n"[..]),
        ("a/b/empty", b""),
        ("a/b/c/ha#sh %25 pct.txt", b"h"),
        ("a/q?mark&amp;.txt", b"q"),
        ("sp ace/\u{fc}n\u{ef}/e m p t y", b""),
        ("sp ace/\u{fc}n\u{ef}/\u{65e5}\u{672c}.txt", b"u"),
        ("deep/1/2/3/4/5/6/7/8/leaf", b"leaf"),
    ] {
        let p = src.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
    write_pattern(&src.join("big.bin"), 24 << 20);
    let rclone = |args: &[&str]| {
        let out = std::process::Command::new("rclone")
            .args(args)
            .env("RCLONE_CONFIG", "/dev/null")
            .env("RCLONE_WEBDAV_URL", srv.url("/"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "rclone {args:?}: {err}");
        err
    };
    let s = src.to_str().unwrap();
    rclone(&["sync", s, ":webdav:up"]);
    assert_eq!(tree(&src), tree(&fx.root().join("up")));
    let back = work.path().join("back");
    rclone(&["sync", ":webdav:up", back.to_str().unwrap()]);
    assert_eq!(tree(&src), tree(&back));
    for f in tree(&src) {
        let p = src.join(&f);
        if p.is_file() {
            assert_eq!(
                std::fs::read(&p).unwrap(),
                std::fs::read(back.join(&f)).unwrap(),
                "{f}"
            );
        }
    }
    let report = rclone(&["check", s, ":webdav:up"]);
    assert!(report.contains("0 differences found"), "{report}");
    // Changes: a file removed, one replaced, a folder renamed.
    std::fs::remove_file(src.join("a/x.txt")).unwrap();
    std::fs::write(src.join("a/b/empty"), b"not any more").unwrap();
    std::fs::rename(src.join("deep/1"), src.join("deep/one")).unwrap();
    rclone(&["sync", s, ":webdav:up"]);
    assert_eq!(tree(&src), tree(&fx.root().join("up")));
    let report = rclone(&["check", s, ":webdav:up"]);
    assert!(report.contains("0 differences found"), "{report}");
}

/// COPY of a tree, and DELETE of one, run off the event loop: with one worker busy
/// copying 6 trees of 8,000 files (seconds of work where it ran on the loop), a
/// GET on the same worker is answered at once, and every COPY then completes.
/// (On the loop, the GET waited 17.5 s behind 8 copies of 12,000 files.)
#[test]
fn long_copies_and_deletes_do_not_stall_the_event_loop() {
    let fx = Fixture::new();
    let t = fx.root().join("t");
    for i in 0..80 {
        let d = t.join(i.to_string());
        std::fs::create_dir_all(&d).unwrap();
        for j in 0..100 {
            std::fs::File::create(d.join(j.to_string())).unwrap();
        }
    }
    fx.file("small.txt", b"small");
    let srv = TestServer::start(&fx.root(), |c| {
        webdav(io_driver())(c);
        c.workers = 1;
    });
    let send = |req: String| {
        let mut s = srv.connect();
        // Six copies of 8,000 files on a loaded machine can take longer than the
        // usual 20 s (seen in .ci/run beside benchmarks): what is asserted is the
        // GET's wait, not theirs.
        s.set_read_timeout(Some(std::time::Duration::from_secs(120)))
            .unwrap();
        s.write_all(req.as_bytes()).unwrap();
        s
    };
    let copies: Vec<_> = (0..6)
        .map(|i| {
            send(format!(
                "COPY /t/ HTTP/1.1\r\nHost: x\r\nDestination: /c{i}/\r\nConnection: close\r\n\r\n"
            ))
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(100));
    let started = std::time::Instant::now();
    let mut s = send("GET /small.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".into());
    let r = read_response(&mut s, false).unwrap();
    let took = started.elapsed();
    eprintln!("GET behind 6 COPYs: {took:?}");
    assert_eq!(r.status, 200);
    for mut c in copies {
        assert_eq!(read_response(&mut c, false).unwrap().status, 201);
    }
    assert!(
        took < std::time::Duration::from_millis(1000),
        "a GET waited {took:?} behind the copies"
    );
    assert_eq!(tree(&fx.root().join("c5")).len(), 80 * 101);
    // DELETE of the copies, the same.
    let deletes: Vec<_> = (0..6)
        .map(|i| {
            send(format!(
                "DELETE /c{i}/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            ))
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(50));
    let started = std::time::Instant::now();
    let mut s = send("GET /small.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".into());
    assert_eq!(read_response(&mut s, false).unwrap().status, 200);
    let took = started.elapsed();
    eprintln!("GET behind 6 DELETEs: {took:?}");
    for mut d in deletes {
        assert_eq!(read_response(&mut d, false).unwrap().status, 204);
    }
    assert!(
        took < std::time::Duration::from_millis(1000),
        "a GET waited {took:?} behind the deletes"
    );
    assert!(!fx.root().join("c0").exists());
}

/// cadaver (the command-line WebDAV client) drives a session: MKCOL, PUT, PROPSET
/// and PROPGET, LOCK and lock discovery, UNLOCK, COPY, MOVE, GET, DELETE, RMCOL.
#[test]
fn cadaver_session() {
    // `cadaver --version` exits 255: ask whether it runs at all.
    let runs = std::process::Command::new("cadaver")
        .arg("--version")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).starts_with("cadaver"));
    if !runs {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "cadaver is missing under CI=true (scripts/test.sh installs it)"
        );
        eprintln!("skipped: cadaver not installed");
        return;
    }
    let fx = Fixture::new();
    let srv = TestServer::start(&fx.root(), webdav(io_driver()));
    let work = tempfile::tempdir().unwrap();
    let local = work.path().join("c.txt");
    std::fs::write(&local, b"hello cadaver\n").unwrap();
    let back = work.path().join("back.txt");
    let script = format!(
        "mkcol dir\ncd dir\nput {} c.txt\npropset c.txt color red\npropget c.txt color\n\
         lock c.txt\ndiscover c.txt\nunlock c.txt\ncopy c.txt d.txt\nmove d.txt e.txt\n\
         get e.txt {}\ndelete c.txt\nls\ncd ..\nquit\n",
        local.display(),
        back.display()
    );
    let mut child = std::process::Command::new("cadaver")
        .arg(srv.url("/"))
        .current_dir(work.path())
        .env("HOME", work.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("failed"), "{text}");
    assert!(text.contains("Value of color is: red"), "{text}");
    assert!(text.contains("Scope: exclusive"), "{text}");
    assert_eq!(std::fs::read(&back).unwrap(), b"hello cadaver\n");
    assert_eq!(tree(&fx.root()), ["dir", "dir/e.txt"]);
}

/// MOVE onto another file system mounted beneath the root (rename gives EXDEV):
/// copied, then the source removed; a full one gives 507 and the source stays.
#[test]
fn move_across_file_systems_copies_then_removes() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    }
    let fx = Fixture::new();
    fx.file("a.txt", b"a");
    fx.file("d/x/y.txt", b"y");
    write_pattern(&fx.root().join("big.bin"), 2 << 20);
    let mnt = fx.root().join("mnt");
    let Some(_mounted) = small_tmpfs(&mnt) else {
        return;
    };
    let srv = TestServer::start(&fx.root(), webdav(io_driver()));
    assert_eq!(
        dav(&srv, "MOVE", "/a.txt", &[("Destination", "/mnt/a.txt")], "").status,
        201
    );
    assert_eq!(std::fs::read(mnt.join("a.txt")).unwrap(), b"a");
    assert!(!fx.root().join("a.txt").exists());
    assert_eq!(
        dav(&srv, "MOVE", "/d/", &[("Destination", "/mnt/d/")], "").status,
        201
    );
    assert_eq!(tree(&mnt), ["a.txt", "d", "d/x", "d/x/y.txt"]);
    assert!(!fx.root().join("d").exists());
    let r = dav(
        &srv,
        "MOVE",
        "/big.bin",
        &[("Destination", "/mnt/big.bin")],
        "",
    );
    assert_eq!(r.status, 507);
    assert!(fx.root().join("big.bin").exists());
    assert_eq!(
        tree(&mnt),
        ["a.txt", "d", "d/x", "d/x/y.txt"],
        "no partial copy"
    );
}
