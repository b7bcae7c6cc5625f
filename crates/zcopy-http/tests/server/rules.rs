//! Per-path rules: custom headers, Cache-Control, CORS, SPA fallback, error pages,
//! Basic auth.

use std::sync::Arc;

use base64::Engine as _;
use zcopy_http::auth::Users;
use zcopy_http::config::Config;
use zcopy_http::rules::{Cors, ErrorPage, Header, Rule};

use crate::util::*;

fn site(rules: Vec<Rule>, tweak: impl FnOnce(&mut Config)) -> (Fixture, TestServer) {
    let fx = Fixture::new();
    fx.file("a.txt", b"AAAA");
    fx.file("index.html", b"<p>app</p>");
    fx.file("static/app.js", b"js");
    fx.file("sub/b.txt", b"B");
    let srv = TestServer::start(&fx.root(), |c| {
        c.rules = rules;
        tweak(c);
    });
    (fx, srv)
}

fn every(rule: Rule) -> Vec<Rule> {
    vec![Rule {
        glob: "**".into(),
        ..rule
    }]
}

#[test]
fn custom_headers_and_cache_control_per_path() {
    let rules = vec![
        Rule {
            glob: "**".into(),
            headers: vec![Header::parse("X-Frame-Options: DENY").unwrap()],
            cache_control: Some("no-cache".into()),
            ..Rule::default()
        },
        Rule {
            glob: "static/**".into(),
            headers: vec![Header::parse("X-Static: yes").unwrap()],
            cache_control: Some("public, max-age=31536000, immutable".into()),
            ..Rule::default()
        },
    ];
    let (_fx, srv) = site(rules, |_| {});
    let r = request(&srv, "GET", "/a.txt", &[]);
    assert_eq!(r.header("x-frame-options"), Some("DENY"));
    assert_eq!(r.header("cache-control"), Some("no-cache"));
    assert_eq!(r.header("x-static"), None);
    let r = request(&srv, "GET", "/static/app.js", &[]);
    assert_eq!(r.header("x-frame-options"), Some("DENY"));
    assert_eq!(r.header("x-static"), Some("yes"));
    assert_eq!(
        r.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    // 304 repeats Cache-Control; listings and errors carry the headers too.
    let etag = r.header("etag").unwrap().to_string();
    let r = request(&srv, "GET", "/static/app.js", &[("If-None-Match", &etag)]);
    assert_eq!(r.status, 304);
    assert_eq!(
        r.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    let r = request(&srv, "GET", "/sub/", &[]);
    assert_eq!((r.status, r.header("x-frame-options")), (200, Some("DENY")));
    let r = request(&srv, "GET", "/nope", &[]);
    assert_eq!((r.status, r.header("x-frame-options")), (404, Some("DENY")));
    // Without rules files get no Cache-Control and listings get no-cache.
    let (_fx, srv) = site(Vec::new(), |_| {});
    assert_eq!(
        request(&srv, "GET", "/a.txt", &[]).header("cache-control"),
        None
    );
    assert_eq!(
        request(&srv, "GET", "/sub/", &[]).header("cache-control"),
        Some("no-cache")
    );
}

#[test]
fn cors_any_and_preflight() {
    let (_fx, srv) = site(
        every(Rule {
            cors: Some(Cors::Any),
            ..Rule::default()
        }),
        |_| {},
    );
    let r = request(&srv, "GET", "/a.txt", &[("Origin", "https://x.example")]);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert_eq!(r.header("vary"), None);
    let pre = [
        ("Origin", "https://x.example"),
        ("Access-Control-Request-Method", "GET"),
        ("Access-Control-Request-Headers", "range, if-none-match"),
    ];
    let r = request(&srv, "OPTIONS", "/a.txt", &pre);
    assert_eq!(r.status, 204);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert_eq!(r.header("access-control-allow-methods"), Some("GET, HEAD"));
    assert_eq!(
        r.header("access-control-allow-headers"),
        Some("range, if-none-match")
    );
    assert_eq!(r.header("access-control-max-age"), Some("86400"));
    assert_eq!(r.body, b"");
    // Header names that aren't tokens are not echoed.
    let r = request(
        &srv,
        "OPTIONS",
        "/a.txt",
        &[
            ("Origin", "https://x.example"),
            ("Access-Control-Request-Method", "GET"),
            ("Access-Control-Request-Headers", "x-a;evil=\"1\""),
        ],
    );
    assert_eq!(
        (r.status, r.header("access-control-allow-headers")),
        (204, None)
    );
    // OPTIONS that is not a preflight stays 405.
    let r = request(
        &srv,
        "OPTIONS",
        "/a.txt",
        &[("Origin", "https://x.example")],
    );
    assert_eq!((r.status, r.header("allow")), (405, Some("GET, HEAD")));
    // Without --cors a preflight is 405 and no CORS headers appear.
    let (_fx, srv) = site(Vec::new(), |_| {});
    let r = request(&srv, "OPTIONS", "/a.txt", &pre);
    assert_eq!(r.status, 405);
    let r = request(&srv, "GET", "/a.txt", &[("Origin", "https://x.example")]);
    assert_eq!(r.header("access-control-allow-origin"), None);
}

#[test]
fn cors_origin_list() {
    let (_fx, srv) = site(
        every(Rule {
            cors: Some(Cors::parse("https://good.example").unwrap()),
            ..Rule::default()
        }),
        |_| {},
    );
    let r = request(&srv, "GET", "/a.txt", &[("Origin", "https://good.example")]);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://good.example")
    );
    assert_eq!(r.header("vary"), Some("Origin"));
    let r = request(&srv, "GET", "/a.txt", &[("Origin", "https://evil.example")]);
    assert_eq!(
        (r.status, r.header("access-control-allow-origin")),
        (200, None)
    );
    assert_eq!(r.header("vary"), Some("Origin"));
    let r = request(
        &srv,
        "OPTIONS",
        "/a.txt",
        &[
            ("Origin", "https://evil.example"),
            ("Access-Control-Request-Method", "GET"),
        ],
    );
    assert_eq!(r.status, 403);
}

#[test]
fn spa_fallback() {
    let (_fx, srv) = site(
        every(Rule {
            fallback: Some("index.html".into()),
            ..Rule::default()
        }),
        |_| {},
    );
    let html = [("Accept", "text/html,application/xhtml+xml,*/*;q=0.8")];
    for path in ["/app/route", "/deep/er/route?x=1", "/users/42"] {
        let r = request(&srv, "GET", path, &html);
        assert_eq!((r.status, &r.body[..]), (200, &b"<p>app</p>"[..]), "{path}");
        assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    }
    let r = request(&srv, "HEAD", "/app/route", &html);
    assert_eq!((r.status, r.header("content-length")), (200, Some("10")));
    // Real files are still themselves.
    assert_eq!(request(&srv, "GET", "/a.txt", &html).body, b"AAAA");
    // Not for paths with an extension, clients that don't ask for HTML, other
    // methods, or traversal.
    assert_eq!(request(&srv, "GET", "/missing.png", &html).status, 404);
    assert_eq!(
        request(&srv, "GET", "/app/route", &[("Accept", "*/*")]).status,
        404
    );
    assert_eq!(request(&srv, "GET", "/app/route", &[]).status, 404);
    assert_eq!(
        request(&srv, "GET", "/app/route", &[("Accept", "text/html;q=0")]).status,
        404
    );
    assert_eq!(request(&srv, "POST", "/app/route", &html).status, 405);
    for bad in ["/../secret", "/app/%2e%2e/%2e%2e/secret", "/a/..%2fsecret"] {
        let r = request(&srv, "GET", bad, &html);
        assert!(r.status == 400 || r.status == 404, "{bad}: {}", r.status);
        assert_ne!(&r.body[..], b"<p>app</p>", "{bad}");
        assert!(!r.body.windows(SECRET.len()).any(|w| w == SECRET));
    }
    // Hidden paths aren't answered with the app either.
    assert_eq!(request(&srv, "GET", "/.git/config", &html).status, 404);
}

#[test]
fn error_pages() {
    let page = ErrorPage {
        status: 404,
        content_type: "text/html; charset=utf-8".into(),
        body: Arc::from(&b"<h1>gone fishing</h1>"[..]),
    };
    let (_fx, srv) = site(
        every(Rule {
            error_pages: vec![page],
            ..Rule::default()
        }),
        |_| {},
    );
    let r = request(&srv, "GET", "/nope", &[]);
    assert_eq!(
        (r.status, &r.body[..]),
        (404, &b"<h1>gone fishing</h1>"[..])
    );
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    let r = request(&srv, "HEAD", "/nope", &[]);
    assert_eq!((r.status, r.header("content-length")), (404, Some("21")));
    // Other statuses keep their plain text.
    let r = request(&srv, "GET", "/a.txt", &[("Range", "bytes=99-")]);
    assert_eq!(r.status, 416);
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
}

fn basic(user: &str, pass: &str) -> String {
    let b = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    format!("Basic {b}")
}

#[test]
fn basic_auth() {
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    let users = Users::parse("files", &format!("alice:{hash}\n")).unwrap();
    let (_fx, srv) = site(
        every(Rule {
            auth: Some(Arc::new(users)),
            ..Rule::default()
        }),
        |_| {},
    );
    let r = request(&srv, "GET", "/a.txt", &[]);
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Basic realm=\"files\", charset=\"UTF-8\"")
    );
    assert!(!r.body.starts_with(b"AAAA"));
    let good = basic("alice", "s3cret");
    let r = request(&srv, "GET", "/a.txt", &[("Authorization", &good)]);
    assert_eq!((r.status, &r.body[..]), (200, &b"AAAA"[..]));
    // Listings and 404s are behind the login too.
    assert_eq!(request(&srv, "GET", "/sub/", &[]).status, 401);
    assert_eq!(request(&srv, "GET", "/nope", &[]).status, 401);
    assert_eq!(
        request(&srv, "GET", "/nope", &[("Authorization", &good)]).status,
        404
    );
    let bad = [
        basic("alice", "wrong"),
        basic("mallory", "s3cret"),
        basic("alice", ""),
        "Basic !!!not-base64!!!".into(),
        "Basic".into(),
        "Basic bm9jb2xvbg==".into(),
        "Bearer abc".into(),
        format!("Basic {}", "A".repeat(4000)),
    ];
    for b in &bad {
        let r = request(&srv, "GET", "/a.txt", &[("Authorization", b)]);
        assert_eq!(r.status, 401, "{b:.40}");
        assert!(r.header("www-authenticate").is_some());
    }
    // Two Authorization fields are a malformed request.
    let r = request(
        &srv,
        "GET",
        "/a.txt",
        &[("Authorization", &good), ("Authorization", &good)],
    );
    assert_eq!(r.status, 400);
    // Keep-alive survives a 401.
    let mut s = srv.connect();
    use std::io::Write;
    s.write_all(b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut s, false).unwrap().status, 401);
    s.write_all(
        format!("GET /a.txt HTTP/1.1\r\nHost: x\r\nAuthorization: {good}\r\n\r\n").as_bytes(),
    )
    .unwrap();
    assert_eq!(read_response(&mut s, false).unwrap().body, b"AAAA");
}

#[test]
fn auth_with_argon2_and_only_on_a_path() {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let salt = SaltString::encode_b64(b"saltsaltsaltsalt").unwrap();
    let hash = argon2::Argon2::default()
        .hash_password(b"pw", &salt)
        .unwrap()
        .to_string();
    let users = Users::parse("private", &format!("bob:{hash}")).unwrap();
    let (_fx, srv) = site(
        vec![Rule {
            glob: "sub/**".into(),
            auth: Some(Arc::new(users)),
            ..Rule::default()
        }],
        |_| {},
    );
    assert_eq!(request(&srv, "GET", "/a.txt", &[]).status, 200);
    assert_eq!(request(&srv, "GET", "/sub/b.txt", &[]).status, 401);
    assert_eq!(request(&srv, "GET", "/sub/", &[]).status, 401);
    assert_eq!(request(&srv, "GET", "/sub", &[]).status, 401);
    let r = request(
        &srv,
        "GET",
        "/sub/b.txt",
        &[("Authorization", &basic("bob", "pw"))],
    );
    assert_eq!((r.status, &r.body[..]), (200, &b"B"[..]));
}
