//! Directory listings: on by default, sortable, validated, and whole in a real browser.

use std::time::{Duration, SystemTime};

use crate::util::*;

/// A name that needs escaping in HTML, in a URL and in JSON.
const NASTY: &str = "<b>&\"x'.txt";

fn site(tweak: impl FnOnce(&mut zcopy_http::config::Config)) -> (Fixture, TestServer) {
    let fx = Fixture::new();
    fx.file("file10.txt", &[b'x'; 10]);
    fx.file("file2.txt", &[b'x'; 2000]);
    fx.file("file1.txt", &[b'x'; 300]);
    fx.file(NASTY, b"n");
    fx.file("zdir/inner/deep.txt", b"d");
    fx.file(".hidden", b"h");
    let old = SystemTime::now() - Duration::from_secs(86_400);
    std::fs::File::options()
        .write(true)
        .open(fx.root().join("file2.txt"))
        .unwrap()
        .set_modified(old)
        .unwrap();
    let srv = TestServer::start(&fx.root(), tweak);
    (fx, srv)
}

/// Names in the order their links appear in the page.
fn link_order(page: &str, names: &[&str]) -> Vec<String> {
    let mut found: Vec<(usize, String)> = names
        .iter()
        .filter_map(|n| {
            page.find(&format!("href=\"{n}\""))
                .map(|i| (i, n.to_string()))
        })
        .collect();
    found.sort();
    found.into_iter().map(|(_, n)| n).collect()
}

#[test]
fn on_by_default_sorted_naturally_dotfiles_hidden() {
    let (_fx, srv) = site(|_| {});
    let r = request(&srv, "GET", "/", &[]);
    assert_eq!(r.status, 200);
    let page = String::from_utf8(r.body).unwrap();
    assert!(!page.contains(".hidden"));
    let files = ["zdir/", "file1.txt", "file2.txt", "file10.txt"];
    assert_eq!(link_order(&page, &files), files);
    assert!(page.contains("1 directory, 4 files"), "{page}");
    assert!(page.contains("title=\"2311 bytes\""));
    assert!(page.contains("prefers-color-scheme:dark"));
    assert!(page.contains("name=\"viewport\""));

    let r = request(&srv, "GET", "/?sort=size&order=desc", &[]);
    let page = String::from_utf8(r.body).unwrap();
    assert_eq!(
        link_order(&page, &files),
        ["zdir/", "file2.txt", "file1.txt", "file10.txt"]
    );
    let r = request(&srv, "GET", "/?sort=modified", &[]);
    let page = String::from_utf8(r.body).unwrap();
    assert_eq!(link_order(&page, &files)[..2], ["zdir/", "file2.txt"]);

    // JSON honours the same order.
    let r = request(&srv, "GET", "/?format=json&sort=size&order=desc", &[]);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let json = String::from_utf8(r.body).unwrap();
    let pos = |n: &str| json.find(&format!("\"name\":\"{n}\"")).unwrap();
    assert!(pos("zdir") < pos("file2.txt") && pos("file2.txt") < pos("file1.txt"));
    assert!(pos("file1.txt") < pos("file10.txt"));
    assert!(json.contains("\"name\":\"<b>&\\\"x'.txt\""));

    // Breadcrumbs and a parent link below the root.
    let r = request(&srv, "GET", "/zdir/inner/", &[]);
    let page = String::from_utf8(r.body).unwrap();
    assert!(
        page.contains("<a href=\"../../\">/</a><a href=\"../\">zdir</a>/<a href=\"./\">inner</a>/")
    );
    assert!(page.contains("<a href=\"../\">../</a>"));
}

#[test]
fn no_listing_is_404() {
    let (_fx, srv) = site(|c| c.listing = false);
    assert_eq!(request(&srv, "GET", "/", &[]).status, 404);
    assert_eq!(request(&srv, "GET", "/file1.txt", &[]).status, 200);
}

#[test]
fn listings_have_validators_and_304() {
    let (fx, srv) = site(|_| {});
    let r = request(&srv, "GET", "/", &[]);
    let etag = r.header("etag").expect("ETag").to_string();
    let lm = r
        .header("last-modified")
        .expect("Last-Modified")
        .to_string();
    assert_eq!(r.header("cache-control"), Some("no-cache"));
    let r = request(&srv, "GET", "/", &[("If-None-Match", &etag)]);
    assert_eq!((r.status, r.body.len()), (304, 0));
    assert_eq!(r.header("etag"), Some(&*etag));
    let r = request(&srv, "GET", "/", &[("If-Modified-Since", &lm)]);
    assert_eq!(r.status, 304);
    // Another sort order is another representation.
    let r = request(&srv, "GET", "/?sort=size", &[("If-None-Match", &etag)]);
    assert_eq!(r.status, 200);
    // A change to the directory changes the ETag.
    fx.file("new.txt", b"new");
    let r = request(&srv, "GET", "/", &[("If-None-Match", &etag)]);
    assert_eq!(r.status, 200);
    assert_ne!(r.header("etag"), Some(&*etag));
    // A file growing in place (directory mtime unchanged) does too.
    let r = request(&srv, "GET", "/", &[]);
    let etag = r.header("etag").unwrap().to_string();
    fx.file("file1.txt", &[b'y'; 301]);
    let r = request(&srv, "GET", "/", &[("If-None-Match", &etag)]);
    assert_eq!(r.status, 200);
}

/// Chromium's DOM of the listing holds every entry, with names as text, not markup.
#[test]
fn chromium_renders_every_entry_escaped() {
    if !require("chromium") {
        return;
    }
    let (_fx, srv) = site(|_| {});
    let out = chromium_dom(&srv.url("/"), &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dom = String::from_utf8(out.stdout).unwrap();
    // The serialised DOM escapes text: the nasty name arrives as text, so no <b>
    // element was created from it.
    assert!(!dom.contains("<b>"), "{dom}");
    assert!(dom.contains("&lt;b&gt;&amp;\"x'.txt</a>"), "{dom}");
    assert!(dom.contains("href=\"%3Cb%3E%26%22x%27.txt\""), "{dom}");
    for name in ["file1.txt", "file2.txt", "file10.txt", "zdir/"] {
        assert!(
            dom.contains(&format!(">{name}</a>")),
            "{name} missing: {dom}"
        );
    }
    assert!(!dom.contains(".hidden"));
    // One row per entry, nothing more.
    assert_eq!(dom.matches("<td class=\"name\">").count(), 5, "{dom}");
}
