//! WebDAV (RFC 4918, classes 1 and 2) on top of the upload path: `--webdav`.
//!
//! Every write is confined as a PUT is ([`crate::upload`]): the directory it
//! happens in is opened beneath the root with no symbolic link followed, dotfiles
//! and sidecars beside their original are refused unless `--hidden`, and a
//! `Destination` must name this server (its Host, or a bare path) and a path
//! beneath the root that the client may write. Reads (PROPFIND) resolve as GET
//! does and list a directory (Depth 1) only where a listing would be served.
//!
//! Request bodies (PROPFIND, PROPPATCH, LOCK; at most [`MAX_BODY`] bytes) are
//! received through the upload path into a memfd (`MemSink`: the core and the
//! drivers carry it out like any upload) and parsed once whole (`xml`). Locks
//! live in memory per server process (`locks`).

mod locks;
mod ops;
mod props;
mod xml;

use crate::head::Out;
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use crate::access::Access;
use crate::head::Head;
use crate::offload::Offload;
use crate::path::{self, CleanPath};
use crate::plan::{Body, Response, Sink};
use crate::request::{BodyFraming, Request};
use crate::rules::Effective;
use crate::site::Site;

/// The methods WebDAV adds (and OPTIONS, which it answers with `DAV:`).
pub const METHODS: &[&str] = &[
    "OPTIONS",
    "PROPFIND",
    "PROPPATCH",
    "MKCOL",
    "DELETE",
    "COPY",
    "MOVE",
    "LOCK",
    "UNLOCK",
];

/// What a WebDAV resource allows.
pub const ALLOW: &str =
    "OPTIONS, GET, HEAD, PUT, DELETE, PROPFIND, PROPPATCH, MKCOL, COPY, MOVE, LOCK, UNLOCK";

/// Largest request body of PROPFIND, PROPPATCH and LOCK (→ 413).
pub const MAX_BODY: u64 = 64 * 1024;

/// What every WebDAV operation needs of the site, owned (a body's answer comes
/// after the request is gone).
#[derive(Debug)]
pub(crate) struct Ctx {
    /// The root (the site's, shared).
    pub root: Arc<OwnedFd>,
    /// Dotfiles are served.
    pub hidden: bool,
    /// The request's Host, to tell this server's absolute URLs.
    pub host: Option<String>,
    /// The root's device and inode: whose locks are whose (several sites may live
    /// in one process; a reload keeps its root's locks).
    pub root_id: (u64, u64),
    /// Some rule asks for a password: a hard-linked file (the same file under a
    /// name a rule may guard) is not copied, as GET does not serve it.
    pub guarded: bool,
}

impl Ctx {
    /// No system call: the root is shared, and its identity known since it opened.
    fn of(site: &Site, req: &Request<'_>) -> io::Result<Ctx> {
        Ok(Ctx {
            root_id: site.root_id,
            root: site.root.clone(),
            hidden: site.config.hidden,
            host: req.host.map(str::to_owned),
            guarded: site.config.rules.iter().any(|r| r.auth.is_some()),
        })
    }
}

/// Whether a write to `rel` is allowed by the rules: WebDAV (or uploads) on for it,
/// and, off loopback without `--allow-anonymous-writes`, an auth rule covering it.
pub(crate) fn writable(site: &Site, rel: &str) -> bool {
    let cfg = &site.config;
    let eff = Effective::of(&cfg.rules, rel);
    if !eff.webdav.unwrap_or(cfg.webdav) {
        return false;
    }
    !(cfg.upload_needs_auth && eff.auth.is_none())
}

/// Whether a rule with a password this client does not pass may guard something
/// at or beneath `rel` (by its glob's literal prefix: conservative). A DELETE,
/// COPY or MOVE of a collection would otherwise reach names the client may not
/// fetch.
fn guarded_beneath(site: &Site, rel: &str, access: &mut Access<'_>) -> bool {
    let under = format!("{rel}/");
    for r in &site.config.rules {
        let Some(users) = r.auth.as_deref() else {
            continue;
        };
        let lit = r.glob.split(['*', '?', '[']).next().unwrap_or("");
        let may = rel.is_empty() || lit.starts_with(&under) || under.starts_with(lit);
        if may && !access.passes(users) {
            return true;
        }
    }
    false
}

/// Answers a WebDAV method (WebDAV on for the path, auth passed).
pub fn respond(
    site: &Site,
    req: &Request<'_>,
    close: bool,
    out: &mut Out,
    eff: &Effective<'_>,
    access: &mut Access<'_>,
) -> Response {
    let cfg = &site.config;
    let method = req.method_name;
    if method == "OPTIONS" {
        return options(out, close);
    }
    let clean = match path::clean(&req.target) {
        Ok(c) => c,
        Err(e) => return status(out, e.status, close),
    };
    let rel = clean.segments.join("/");
    if !cfg.hidden && clean.segments.iter().any(|s| s.starts_with('.')) {
        return status(out, 404, close);
    }
    let write = method != "PROPFIND";
    if write && cfg.upload_needs_auth && eff.auth.is_none() {
        tracing::warn!(
            path = rel.as_str(),
            method,
            "WebDAV write refused: no auth rule covers it on a listener that is not \
             loopback (--allow-anonymous-writes allows it)"
        );
        return status(out, 403, close);
    }
    let ctx = match Ctx::of(site, req) {
        Ok(c) => c,
        Err(_) => return status(out, 503, close),
    };
    let has_body = match req.body {
        BodyFraming::None => false,
        BodyFraming::Length(n) => n > 0,
        BodyFraming::Chunked => true,
    };
    match method {
        "PROPFIND" => {
            let plan = match props::plan(site, req, &clean, &rel, access) {
                Ok(p) => p,
                Err(s) => return s.answer(out, close),
            };
            if access.pending() {
                return Response::pending();
            }
            with_body(req, has_body, out, close, move |body, out, close| {
                plan.answer(&ctx, body, out, close)
            })
        }
        "PROPPATCH" => {
            let if_ = req.dav.if_.map(str::to_owned);
            with_body(req, has_body, out, close, move |body, out, close| {
                props::proppatch(&ctx, &clean, &rel, if_.as_deref(), body, out, close)
            })
        }
        "LOCK" => {
            let r = locks::LockRequest::of(req, &clean);
            with_body(req, has_body, out, close, move |body, out, close| {
                r.answer(&ctx, body, out, close)
            })
        }
        "UNLOCK" => locks::unlock(&ctx, req, &rel, out, close),
        "MKCOL" if has_body => status(out, 415, close),
        "MKCOL" => ops::mkcol(&ctx, req, &clean, &rel, out, close),
        "DELETE" | "COPY" | "MOVE" => {
            let dest = match method {
                "DELETE" => None,
                _ => match ops::destination(site, &ctx, req, access) {
                    Ok(d) => Some(d),
                    Err(s) => return s.answer(out, close),
                },
            };
            let guarded = guarded_beneath(site, &rel, access)
                || dest
                    .as_ref()
                    .is_some_and(|d| guarded_beneath(site, d.rel(), access));
            if access.pending() {
                return Response::pending();
            }
            if guarded {
                return status(out, 403, close);
            }
            // A tree or a large file can take a while: off the event loop.
            let f = ops::Fields::of(req);
            let key = {
                use std::hash::{Hash, Hasher};
                let mut h = std::collections::hash_map::DefaultHasher::new();
                (method, &*req.target, &f, req.dav.destination).hash(&mut h);
                h.finish()
            };
            let is_move = method == "MOVE";
            let job = move || match &dest {
                None => ops::delete(&ctx, &f, &clean, &rel),
                Some(d) => ops::copy_move(&ctx, &f, &clean, &rel, d, is_move),
            };
            match access.offload(key, job) {
                Offload::Done(s) => status(out, s, close),
                Offload::Pending => Response::pending(),
                Offload::Busy => status_with(out, 503, close, &[("Retry-After", "1")]),
            }
        }
        _ => status(out, 405, close),
    }
}

/// A PUT to a path WebDAV covers: refused (423, 412) when it is locked and the
/// request's `If` header does not hold its token; `None` when it may go on.
pub fn put_refused(site: &Site, req: &Request<'_>, close: bool, out: &mut Out) -> Option<Response> {
    let clean = path::clean(&req.target).ok()?;
    let rel = clean.segments.join("/");
    let ctx = Ctx::of(site, req).ok()?;
    let parent = locks::parent_rel(&rel);
    let scopes = [
        (rel.as_str(), locks::Scope::Exact),
        (parent.as_str(), locks::Scope::Exact),
    ];
    match locks::check(&ctx, req.dav.if_, &rel, &scopes) {
        Ok(()) => None,
        Err(s) => Some(status(out, s, close)),
    }
}

/// Answers now when there is no body (`then(b"")`), or receives a body of at most
/// [`MAX_BODY`] bytes into memory first.
fn with_body(
    req: &Request<'_>,
    has_body: bool,
    out: &mut Out,
    close: bool,
    then: impl FnOnce(&[u8], &mut Out, bool) -> Response + Send + 'static,
) -> Response {
    if !has_body {
        return then(b"", out, close);
    }
    if req.body_len > MAX_BODY {
        return status(out, 413, true);
    }
    match MemSink::new(Box::new(then)) {
        Ok(sink) => Response {
            status: 0,
            body: Body::Receive(Box::new(sink)),
            body_len: 0,
            close: false,
        },
        Err(e) => {
            tracing::warn!("webdav: can't make a body buffer: {e}");
            status(out, 503, close)
        }
    }
}

/// What answers a body once it is whole.
type Then = Box<dyn FnOnce(&[u8], &mut Out, bool) -> Response + Send>;

/// A small request body received into memory (a memfd), then answered by `then`.
struct MemSink {
    file: File,
    then: Then,
}

impl std::fmt::Debug for MemSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemSink").finish_non_exhaustive()
    }
}

impl MemSink {
    fn new(then: Then) -> io::Result<MemSink> {
        let fd = rustix::fs::memfd_create("zcopy-dav-body", rustix::fs::MemfdFlags::CLOEXEC)?;
        Ok(MemSink {
            file: File::from(fd),
            then,
        })
    }
}

impl Sink for MemSink {
    fn file(&self) -> &File {
        &self.file
    }

    fn limit(&self) -> u64 {
        MAX_BODY
    }

    fn finish(self: Box<Self>, out: &mut Out, close: bool) -> Response {
        let mut body = Vec::new();
        let n = crate::cache::pread_into(&self.file, 0, MAX_BODY as usize + 1, &mut body);
        body.truncate(n);
        if n as u64 > MAX_BODY {
            return status(out, 413, true);
        }
        (self.then)(&body, out, close)
    }

    fn failed(self: Box<Self>, err: &io::Error, out: &mut Out) -> Response {
        tracing::warn!("webdav: body not received: {err}");
        status(out, 500, true)
    }
}

/// A status, or a status with an RFC 4918 precondition element.
#[derive(Debug)]
pub(crate) enum Answer {
    /// A plain status.
    Status(u16),
    /// A status with `<D:error><D:{0}/></D:error>`.
    Error(u16, &'static str),
}

impl Answer {
    fn answer(self, out: &mut Out, close: bool) -> Response {
        match self {
            Answer::Status(s) => status(out, s, close),
            Answer::Error(s, cond) => {
                let body = format!(
                    "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n\
                     <D:error xmlns:D=\"DAV:\"><D:{cond}/></D:error>\n"
                );
                xml_response(out, s, &body, close, &[])
            }
        }
    }
}

/// OPTIONS on a WebDAV path.
fn options(out: &mut Out, close: bool) -> Response {
    let mut h = Head::start(out, 200);
    h.header("DAV", "1, 2");
    h.header("MS-Author-Via", "DAV");
    h.header("Allow", ALLOW);
    h.header_u64("Content-Length", 0);
    if close {
        h.header("Connection", "close");
    }
    h.finish();
    Response {
        status: 200,
        body: Body::InHead,
        body_len: 0,
        close,
    }
}

/// A status with a short text body (none for 201, 204).
pub(crate) fn status(out: &mut Out, code: u16, close: bool) -> Response {
    status_with(out, code, close, &[])
}

/// [`status`] with more header fields.
pub(crate) fn status_with(
    out: &mut Out,
    code: u16,
    close: bool,
    extra: &[(&str, &str)],
) -> Response {
    let body = match code {
        201 | 204 => String::new(),
        s => format!("{s} {}\n", crate::head::reason(s)),
    };
    let mut h = Head::start(out, code);
    for (k, v) in extra {
        h.header(k, v);
    }
    if code == 405 {
        h.header("Allow", ALLOW);
    }
    if !body.is_empty() {
        h.header("Content-Type", "text/plain; charset=utf-8");
    }
    if code != 204 {
        h.header_u64("Content-Length", body.len() as u64);
    }
    if close {
        h.header("Connection", "close");
    }
    h.finish();
    out.body.extend_from_slice(body.as_bytes());
    Response {
        status: code,
        body: Body::InHead,
        body_len: body.len() as u64,
        close,
    }
}

/// An XML body.
pub(crate) fn xml_response(
    out: &mut Out,
    code: u16,
    body: &str,
    close: bool,
    extra: &[(&str, &str)],
) -> Response {
    let mut h = Head::start(out, code);
    for (k, v) in extra {
        h.header(k, v);
    }
    h.header("Content-Type", "application/xml; charset=utf-8");
    h.header_u64("Content-Length", body.len() as u64);
    if close {
        h.header("Connection", "close");
    }
    h.finish();
    out.body.extend_from_slice(body.as_bytes());
    Response {
        status: code,
        body: Body::InHead,
        body_len: body.len() as u64,
        close,
    }
}

/// The href of `segments` (percent-encoded, `/` after a collection).
pub(crate) fn href(segments: &[String], collection: bool) -> String {
    let mut s = String::from("/");
    for (i, seg) in segments.iter().enumerate() {
        if i > 0 {
            s.push('/');
        }
        s.extend(percent_encoding::utf8_percent_encode(seg, HREF));
    }
    if collection && !segments.is_empty() {
        s.push('/');
    }
    s
}

/// Characters escaped in an href segment.
const HREF: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'!')
    .remove(b'$')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')')
    .remove(b'*')
    .remove(b'+')
    .remove(b',')
    .remove(b';')
    .remove(b'=')
    .remove(b':')
    .remove(b'@');

/// `s` escaped for XML text and attribute values.
pub(crate) fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            c => o.push(c),
        }
    }
    o
}

/// The path (relative to the root, decoded) a URL or absolute path in a header
/// names on this server: `Err(502)` for another authority, `Err(400)` for a bad
/// path.
pub(crate) fn url_path(ctx: &Ctx, url: &str) -> Result<CleanPath, u16> {
    let url = url.trim();
    let path = if url.starts_with('/') {
        url
    } else {
        let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
        let (rest, default_port) = if lower.starts_with("http://") {
            (&url[7..], ":80")
        } else if lower.starts_with("https://") {
            (&url[8..], ":443")
        } else {
            return Err(400);
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let authority = authority.rsplit('@').next().unwrap_or(authority);
        // `host` and `host:80` (for http) name the same server.
        let bare = |a: &str| {
            let a = a.to_ascii_lowercase();
            match a.strip_suffix(default_port) {
                Some(b) => b.to_owned(),
                None => a,
            }
        };
        let same = ctx
            .host
            .as_deref()
            .is_some_and(|h| bare(h) == bare(authority));
        if !same {
            return Err(502);
        }
        path
    };
    path::clean(path).map_err(|e| e.status)
}
