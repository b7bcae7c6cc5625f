//! Fuzzes the precondition fields (ETag lists, HTTP dates): `evaluate` and
//! `if_range_allows` never panic, and an ETag or date that names the current
//! representation is always recognised, wherever it sits in a list.
#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use zcopy_http::conditional::{Precondition, Validators, evaluate, if_range_allows};
use zcopy_http::request::{Method, Request, Version};

/// Last second an HTTP date can carry (9999-12-31 23:59:59).
const MAX_SECS: u64 = 253_402_300_799;

fn request<'a>(method: Method) -> Request<'a> {
    let name = if method == Method::Head { "HEAD" } else { "GET" };
    Request {
        host: Some("x"),
        ..Request::new(method, name, "/", Version::Http11)
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 9 {
        return;
    }
    let (head, rest) = data.split_at(9);
    let secs = u64::from_le_bytes(head[..8].try_into().unwrap()) % (MAX_SECS + 1);
    let method = match head[8] % 3 {
        0 => Method::Get,
        1 => Method::Head,
        _ => Method::Other,
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    // Fields separated by '\n': If-Match, If-None-Match, If-Modified-Since,
    // If-Unmodified-Since, If-Range; a sixth, if present, is our ETag's opaque part.
    let mut f = text.split('\n');
    let mut field = || f.next().filter(|s| !s.is_empty());
    let mut req = request(method);
    req.if_match = field();
    req.if_none_match = field();
    req.if_modified_since = field();
    req.if_unmodified_since = field();
    req.if_range = field();
    let opaque: String = field()
        .unwrap_or("1-2-3")
        .chars()
        .filter(|&c| c == '!' || ('#'..='~').contains(&c))
        .collect();
    let v = Validators {
        etag: format!("\"{opaque}\""),
        modified: UNIX_EPOCH + Duration::from_secs(secs),
    };
    let _ = evaluate(&req, &v);
    let _ = if_range_allows(&req, &v);

    // Our own validators are recognised, alone or after whatever the fuzzer wrote.
    let date = v.last_modified();
    let get = |if_none_match, if_modified_since| {
        let mut r = request(Method::Get);
        r.if_none_match = if_none_match;
        r.if_modified_since = if_modified_since;
        evaluate(&r, &v)
    };
    assert_eq!(get(Some(&v.etag), None), Precondition::NotModified);
    assert_eq!(get(None, Some(&date)), Precondition::NotModified);
    let listed = format!("W/\"x\", {}, \"y\"", v.etag);
    assert_eq!(get(Some(&listed), None), Precondition::NotModified);
    // If-None-Match wins over If-Modified-Since, whatever the date says.
    let other = format!("\"{opaque}-other\"");
    assert_eq!(get(Some(&other), Some(&date)), Precondition::Proceed);
    let mut r = request(Method::Get);
    r.if_match = Some(&v.etag);
    r.if_unmodified_since = req.if_unmodified_since;
    assert_eq!(evaluate(&r, &v), Precondition::Proceed);
    r.if_match = Some("*");
    assert_eq!(evaluate(&r, &v), Precondition::Proceed);
    let mut r = request(Method::Get);
    r.if_range = Some(&v.etag);
    assert!(if_range_allows(&r, &v));
    r.if_range = Some(&date);
    assert!(if_range_allows(&r, &v));
    let weak = format!("W/{}", v.etag);
    r.if_range = Some(&weak);
    assert!(!if_range_allows(&r, &v));
});
