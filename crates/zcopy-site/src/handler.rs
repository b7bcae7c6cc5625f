//! From a parsed request to a response: the head (formatted into a buffer) and a plan
//! for the body. No socket I/O happens here; the server's drivers send what this decides.
//!
//! Syscalls per file request: one `openat2` + one `fstat` (inside [`path::open`]),
//! plus one more pair for a directory's index file. Content-Length is always the
//! fstat length of the open fd.

use std::borrow::Cow;
use std::fs::File;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::cache::{CachedFile, Described, FileCache, Trust, compressible_type};
pub use crate::plan::{Body, BodyMem, FileBody, Piece, Pieces, Response};

use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};

use std::os::fd::AsFd;

use rustix::fs::FileType;

use crate::access::{self, Access, Denied};
use crate::archive::{Archive, ArchiveError};
use crate::auth::{Checks, Verdict};
use crate::conditional::{self, Precondition, Validators};
use crate::encoding::{self, Found};
use crate::head::{self, Head, Name, Out};
use crate::listing;
use crate::path::{self, CleanPath, OpenError, Resolved};
use crate::range::{self, RangePlan};
use crate::redirect::https_location;
use crate::request::ListenKind;
use crate::request::{BodyFraming, HttpError, Method, Request, Version};
use crate::rules::{Cors, Effective};
pub use crate::site_config::SiteConfig;

pub use crate::site::Site;

/// Characters escaped in a path segment of a Location header.
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'/')
    .add(b'\\')
    .add(b'^')
    .add(b'|')
    .add(b'[')
    .add(b']');

/// Answers `req`. The head (and any small body held in memory) goes into `out`;
/// `close` says the connection closes after this response whatever the request said.
/// Small files come from `cache` when it holds them (one fstat instead of an open).
/// Password checks go through the worker's `checks` (off the loop: then the answer
/// is [`Response::pending`]).
///
/// Per-path [`Rule`](crate::rules::Rule)s are only evaluated when some exist: a
/// plain file on a server without rules costs what it did before they existed.
pub fn handle(
    site: &Site,
    req: &Request<'_>,
    close: bool,
    out: &mut Out,
    cache: &mut FileCache,
    checks: &mut Checks,
    now: Instant,
) -> Response {
    let cfg = &site.config;
    // A chunked body is never read: the connection closes after this response, so
    // no request is ever parsed out of a body.
    let close = close || !req.keep_alive || req.body == BodyFraming::Chunked;
    // Without rules (or for `*`), the settings of no rule, made once (not built
    // and moved on every request).
    let matched;
    let (eff, rel) = if cfg.rules.is_empty() || *req.target == *"*" {
        (&crate::rules::NO_RULES, None)
    } else {
        match path::clean(&req.target) {
            Ok(c) => {
                let rel = c.segments.join("/");
                matched = Effective::of(&cfg.rules, &rel);
                (&matched, Some(rel))
            }
            Err(e) => return error_response(out, e, req.method == Method::Head),
        }
    };
    let mut access = Access::new(cfg, req.authorization, checks, now);
    // Once the rules are known, the response is made where it is returned (an
    // early return of another before it was a ~160-byte copy of this one on every
    // request); a pending answer is returned in its place, not assigned over it
    // (which moved it once more on every request).
    let resp = respond(site, req, close, out, cache, now, eff, rel, &mut access);
    if access.pending() {
        // A password check this answer needed runs off the loop: answer nothing now,
        // and everything again when its verdict is in.
        out.clear();
        return Response::pending();
    }
    if req.method == Method::Head
        && matches!(resp.status, 200 | 404)
        && eff.upload.unwrap_or(cfg.upload)
        && !(cfg.upload_needs_auth && eff.auth.is_none())
    {
        upload_offset(site, req, out);
    }
    resp
}

/// `s` up to the first `b` (all of it without one); `b` is ASCII.
fn before_byte(s: &str, b: u8) -> &str {
    match s.bytes().position(|c| c == b) {
        Some(i) => &s[..i],
        None => s,
    }
}

/// `s` after the last `b` (all of it without one); `b` is ASCII. A plain loop
/// from the end: the reversed byte iterator's search cost ~10 instructions a byte.
fn after_last_byte(s: &str, b: u8) -> &str {
    let bytes = s.as_bytes();
    let mut i = bytes.len();
    while i > 0 {
        if bytes[i - 1] == b {
            return &s[i..];
        }
        i -= 1;
    }
    s
}

/// The name of the file a request is answered with (its type goes by its
/// extension), found when it is needed.
#[derive(Clone, Copy, Debug)]
enum FileName<'a> {
    /// This one.
    Is(&'a str),
    /// What follows the last `/` of this request path (percent-encoded as sent):
    /// a cached file's, whose held fields mostly make it unneeded (the search
    /// was ~50 instructions a request).
    Last(&'a str),
}

impl<'a> FileName<'a> {
    /// The name, decoded as the path was when the file was opened (a type goes
    /// by the decoded name: `x%2Ecss` is a `.css`).
    fn get(self) -> Cow<'a, str> {
        match self {
            FileName::Is(name) => Cow::Borrowed(name),
            FileName::Last(path) => {
                percent_encoding::percent_decode_str(after_last_byte(path, b'/'))
                    .decode_utf8_lossy()
            }
        }
    }
}

/// `HEAD` of a name uploads may go to (auth passed): says in `Upload-Offset` how
/// many bytes of a resumable upload to it the server holds (0: none), for the next
/// part's `Content-Range` (see [`crate::upload`]).
fn upload_offset(site: &Site, req: &Request<'_>, out: &mut Out) {
    let Ok(clean) = path::clean(&req.target) else {
        return;
    };
    if clean.trailing_slash || clean.segments.is_empty() || !out.body.is_empty() {
        return;
    }
    let n =
        crate::upload::partial_len(&site.root, &clean, site.config.upload_resume_ttl).unwrap_or(0);
    out.head.push_u64(crate::head::Name::UploadOffset, n);
}

/// [`handle`] after the rules are known, with the client's [`Access`].
#[allow(clippy::too_many_arguments)]
fn respond(
    site: &Site,
    req: &Request<'_>,
    close: bool,
    out: &mut Out,
    cache: &mut FileCache,
    now: Instant,
    eff: &Effective<'_>,
    rel: Option<String>,
    access: &mut Access<'_>,
) -> Response {
    let cfg = &site.config;
    let reply = Reply {
        close,
        keep_alive_10: !close && req.version == Version::Http10,
        head_only: req.method == Method::Head,
        eff,
        origin: req.origin,
        vary_encoding: false,
        hsts: match req.via {
            ListenKind::Https => cfg.hsts.as_deref(),
            _ => None,
        },
        turn: crate::snapshot::Turn {
            now,
            watched: cache.snapshot_notices_watched,
        },
    };
    if *req.target == *"*" {
        // `OPTIONS *` (the only method the parser lets through with `*`): what the
        // server as a whole allows.
        return reply.body(out, 200, "text/plain; charset=utf-8", b"", &[ALLOW]);
    }
    if req.via == ListenKind::Redirect {
        return match https_location(req.host, cfg.https_port, &req.target) {
            Some(loc) => reply.text(out, 308, "308 Permanent Redirect\n", &[("Location", &loc)]),
            None => reply.text(out, 400, "400 Bad Request (no usable Host header)\n", &[]),
        };
    }
    let webdav = eff.webdav.unwrap_or(cfg.webdav);
    let put = req.method == Method::Other
        && req.method_name == "PUT"
        && (webdav || eff.upload.unwrap_or(cfg.upload));
    // A CORS preflight is answered as such, WebDAV or not.
    let preflight =
        req.method_name == "OPTIONS" && eff.cors.is_some() && req.ac_request_method.is_some();
    let dav = webdav
        && !preflight
        && req.method == Method::Other
        && crate::webdav::METHODS.contains(&req.method_name);
    if req.method == Method::Other && !put && !dav {
        if req.method_name == "OPTIONS"
            && let Some(cors) = eff.cors
            && req.ac_request_method.is_some()
        {
            return reply.preflight(out, cors, req);
        }
        // A method RFC 9110 or 5789 defines is not allowed here (405); any other is
        // not implemented (501, RFC 9110 §9.1).
        const KNOWN: &[&str] = &[
            "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
        ];
        if !KNOWN.contains(&req.method_name) {
            return reply.status(out, 501);
        }
        let allow = match eff.upload.unwrap_or(cfg.upload) {
            _ if webdav => ("Allow", crate::webdav::ALLOW),
            true => ALLOW_PUT,
            false => ALLOW,
        };
        return reply.status_with(out, 405, &[allow]);
    }
    if let Some(users) = eff.auth {
        match access.verdict(users) {
            Verdict::Allowed => {}
            Verdict::Pending => return Response::pending(),
            Verdict::Limited(secs) => {
                let secs = secs.to_string();
                return reply.status_with(out, 429, &[("Retry-After", &secs)]);
            }
            Verdict::Busy => {
                let body = "503 Service Unavailable (password checks busy)\n";
                return reply.text(out, 503, body, &[("Retry-After", "1")]);
            }
            verdict => {
                if let Verdict::Denied(user) = verdict {
                    let path = req.target.split('?').next().unwrap_or("");
                    tracing::warn!(
                        user = user.as_deref().unwrap_or("?"),
                        path,
                        "failed Basic auth"
                    );
                }
                let challenge = users.challenge();
                return reply.status_with(out, 401, &[("WWW-Authenticate", &challenge)]);
            }
        }
    }
    // A sidecar's name is guarded as its original's is (`server.key.gz` as
    // `server.key`).
    if let Some(rel) = &rel
        && let Some(orig) = access::original(rel)
        && let Some(users) = access::auth_of(&cfg.rules, orig)
        && !access.passes(users)
    {
        return reply.challenge(out, users);
    }
    if dav {
        return crate::webdav::respond(site, req, close, out, eff, access);
    }
    if put {
        if webdav && let Some(resp) = crate::webdav::put_refused(site, req, close, out) {
            return resp;
        }
        return put_file(site, req, &reply, eff, out);
    }
    // By byte (both ASCII, so the cuts are char boundaries): the generic char
    // searchers cost more than the rest of the lookup.
    let key = before_byte(&req.target, b'?');
    if let Some(hit) = cache.get(key, now) {
        // Used where it lies: moving the hit's file out copied the whole of its
        // place (an owned file's size) even when it is lent, ~25 instructions.
        let (f, known) = (&hit.file, hit.sidecars);
        if access.refuses_links(&f.st) {
            return reply.hard_linked(out, key);
        }
        // A path ending in `/` names a directory's index file; any other file's
        // name is looked for only if it is needed (a held file's fields say all).
        let index = key.ends_with('/');
        let name = match index {
            true => FileName::Is(&cfg.index),
            false => FileName::Last(key),
        };
        if no_sidecar(site, known) {
            return serve_file(site, req, &reply, f, name, Found::default(), out);
        }
        // A path with a sidecar, or not looked at yet: the lookup may write its
        // note into the cache, which can't lend the file meanwhile (it is copied
        // out, as every hit was before).
        let f = hit.file.into_owned();
        let found = Sidecar {
            key,
            clean: None,
            real: None,
            index,
            st: &f.st,
            known,
        }
        .look(site, req, cache, now, access);
        return serve_file(site, req, &reply, &f, name, found, out);
    }
    let clean = match path::clean(&req.target) {
        Ok(c) => c,
        Err(e) => return error_response(out, e, reply.head_only),
    };
    match path::open_noting_links(&site.root, &clean, cfg.symlinks, cfg.hidden) {
        Ok((Resolved::File(file, st), via_link)) => {
            if clean.trailing_slash {
                return reply.status(out, 404);
            }
            // Where a followed link led is checked as a name of its own.
            let real = match via_link {
                true => match reply.check_real(site, access, &file, out) {
                    Ok(real) => real,
                    Err(resp) => return resp,
                },
                false => None,
            };
            if access.refuses_links(&st) {
                return reply.hard_linked(out, key);
            }
            let name = clean.segments.last().map_or("", String::as_str);
            let f = if via_link {
                // Not cached: a hit would skip the check of where the link led.
                uncached(file, st)
            } else {
                cache.put(key, name, Arc::new(file), &st, now)
            };
            let found = Sidecar {
                key,
                clean: Some(&clean),
                real,
                index: false,
                st: &f.st,
                known: cache.sidecars(key, now),
            }
            .find(site, req, cache, now, access);
            serve_file(site, req, &reply, &f, FileName::Is(name), found, out)
        }
        Ok((Resolved::Dir(dir, dir_st), via_link)) => {
            let real = match via_link {
                true => match reply.check_real(site, access, &dir, out) {
                    Ok(real) => real,
                    Err(resp) => return resp,
                },
                false => None,
            };
            if !clean.trailing_slash && !clean.segments.is_empty() {
                let mut loc = location(&clean);
                if let Some(q) = &clean.query {
                    loc.push('?');
                    loc.push_str(q);
                }
                return reply.text(out, 301, "301 Moved Permanently\n", &[("Location", &loc)]);
            }
            let names = DirNames {
                rel: clean.segments.join("/"),
                real,
            };
            if cfg.archives
                && let Some(q) = clean.query.as_deref()
                && q.split('&').any(|kv| kv == "download=tar")
            {
                return serve_archive(
                    site, &reply, cache, dir, &dir_st, &clean, &names, access, out,
                );
            }
            if !cfg.index.is_empty() {
                match path::open_in_dir_noting_links(&dir, &cfg.index, cfg.symlinks) {
                    Ok((Resolved::File(file, st), index_via_link)) => {
                        let linked = via_link || index_via_link;
                        let real = match linked {
                            true => match reply.check_real(site, access, &file, out) {
                                Ok(real) => real,
                                Err(resp) => return resp,
                            },
                            false => None,
                        };
                        if access.refuses_links(&st) {
                            return reply.hard_linked(out, key);
                        }
                        let f = if linked {
                            uncached(file, st)
                        } else {
                            cache.put(key, &cfg.index, Arc::new(file), &st, now)
                        };
                        let found = Sidecar {
                            key,
                            clean: Some(&clean),
                            real,
                            index: true,
                            st: &f.st,
                            known: cache.sidecars(key, now),
                        }
                        .find(site, req, cache, now, access);
                        let index = FileName::Is(&cfg.index);
                        return serve_file(site, req, &reply, &f, index, found, out);
                    }
                    Ok((Resolved::Dir(..), _)) | Err(OpenError::NotFound) => {}
                    Err(e) => return reply.open_error(out, e),
                }
            }
            if !names.all(|n| access.listable(n)) {
                return reply.status(out, 404);
            }
            serve_listing(
                req, &reply, cache, dir, &dir_st, &clean, &names, site, access, out,
            )
        }
        Err(OpenError::NotFound) => match fallback(site, req, eff, &clean) {
            Some((file, st, name)) => {
                let f = uncached(file, st);
                serve_file(
                    site,
                    req,
                    &reply,
                    &f,
                    FileName::Is(name),
                    Found::default(),
                    out,
                )
            }
            None => reply.status(out, 404),
        },
        Err(e) => reply.open_error(out, e),
    }
}

/// A PUT (uploads on, auth passed): refused now, or a sink its body goes to.
fn put_file(
    site: &Site,
    req: &Request<'_>,
    reply: &Reply<'_, '_>,
    eff: &Effective<'_>,
    out: &mut Out,
) -> Response {
    use crate::upload::{self, Conditions, PutSink, Refused};
    let cfg = &site.config;
    if cfg.upload_needs_auth && eff.auth.is_none() {
        let path = req.target.split('?').next().unwrap_or("");
        tracing::warn!(
            path,
            "PUT refused: no auth rule covers it on a listener that is not loopback \
             (--allow-anonymous-writes allows it)"
        );
        return reply.status(out, 403);
    }
    if req.body_len > cfg.max_upload_size {
        return reply.status(out, 413);
    }
    let clean = match path::clean(&req.target) {
        Ok(c) => c,
        Err(e) => return error_response(out, e, false),
    };
    let (dir, name, existing) = match upload::target(&site.root, &clean, cfg.hidden) {
        Ok(t) => t,
        Err(Refused::Status(405)) => return reply.status_with(out, 405, &[ALLOW_PUT]),
        Err(Refused::Status(s)) => return reply.status(out, s),
        Err(Refused::Open(e)) => return reply.open_error(out, e),
    };
    let cond = Conditions {
        create_only: req.if_none_match.is_some_and(|v| v.trim() == "*"),
        if_match: req.if_match.map(str::to_owned),
    };
    if !upload::preconditions_hold(&cond, existing.as_ref()) {
        return reply.status(out, 412);
    }
    if let Some(cr) = req.content_range {
        // A part of a resumable upload (see `upload`).
        let Some(range) = upload::parse_content_range(cr) else {
            return reply.status(out, 400);
        };
        if req.body == BodyFraming::Chunked || req.body_len != range.end - range.start + 1 {
            return reply.status(out, 400);
        }
        if range.total > cfg.max_upload_size {
            return reply.status(out, 413);
        }
        let ttl = cfg.upload_resume_ttl;
        let sink = match upload::resume(
            &site.root,
            &clean,
            dir,
            name,
            range,
            cond,
            cfg.max_upload_size,
            ttl,
        ) {
            upload::Resume::Sink(sink) => sink,
            upload::Resume::Offset(n) => {
                let n = n.to_string();
                return reply.status_with(out, 416, &[("Upload-Offset", &n)]);
            }
            upload::Resume::Busy => return reply.status(out, 409),
            upload::Resume::Full => {
                let body = "503 Service Unavailable (too many partial uploads)\n";
                return reply.text(out, 503, body, &[("Retry-After", "60")]);
            }
            upload::Resume::Unsupported => return reply.status(out, 501),
            upload::Resume::Failed(e) => {
                tracing::warn!("upload: can't resume: {e}");
                return reply.status(out, 500);
            }
        };
        return Response {
            status: 0,
            body: Body::Receive(Box::new(sink)),
            body_len: 0,
            close: false,
        };
    }
    match PutSink::create(dir, name, cond, cfg.max_upload_size) {
        Ok(sink) => Response {
            status: 0,
            body: Body::Receive(Box::new(sink)),
            body_len: 0,
            close: false,
        },
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NOSPC.raw_os_error()) => {
            reply.status(out, 507)
        }
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::DQUOT.raw_os_error()) => {
            reply.status(out, 507)
        }
        Err(e) => {
            tracing::warn!("upload: can't create its file: {e}");
            reply.status(out, 500)
        }
    }
}

/// The SPA fallback file for a missing path, when the rules name one and the request
/// wants HTML for a path without a file extension.
fn fallback<'a>(
    site: &Site,
    req: &Request<'_>,
    eff: &Effective<'a>,
    clean: &CleanPath,
) -> Option<(File, rustix::fs::Stat, &'a str)> {
    let target = eff.fallback?;
    let last = clean.segments.last().map_or("", String::as_str);
    let hidden = !site.config.hidden && clean.segments.iter().any(|s| s.starts_with('.'));
    if last.contains('.') || hidden || !accepts_html(req.accept) {
        return None;
    }
    match path::open_at(site.root.as_fd(), target, site.config.symlinks) {
        Ok(Resolved::File(file, st)) => {
            let name = target.rsplit('/').next().unwrap_or(target);
            Some((file, st, name))
        }
        _ => None,
    }
}

/// The Accept field lists `text/html` with a non-zero q.
fn accepts_html(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| {
        a.split(',').any(|item| {
            let mut parts = item.split(';');
            let media = parts.next().unwrap_or("").trim();
            media.eq_ignore_ascii_case("text/html")
                && !parts.any(|p| {
                    p.trim().split_once('=').is_some_and(|(k, v)| {
                        k.trim() == "q" && v.trim().trim_end_matches(['0', '.']).is_empty()
                    })
                })
        })
    })
}

/// The file a request resolved to, as a precompressed sidecar of it is looked for
/// ([`Sidecar::find`]; see [`crate::encoding`] for the cost).
///
/// A sidecar is only ever opened without following a symlink, and only served when
/// the client could fetch it by its own name ([`Access::name`]) and it has a single
/// link on a guarded site: it is never a way to a hidden or protected file.
struct Sidecar<'a> {
    /// The request path (the cache's key).
    key: &'a str,
    /// The request path cleaned, when it was already (else cleaned from `key`).
    clean: Option<&'a CleanPath>,
    /// Where the file is beneath the root when a symlink led to it (the sidecar is
    /// looked for beside the file, never beside the link).
    real: Option<String>,
    /// The file is the directory's index.
    index: bool,
    /// The file's fstat.
    st: &'a rustix::fs::Stat,
    /// The sidecar bitmask the cache noted for `key`, if any.
    known: Option<u8>,
}

impl Sidecar<'_> {
    /// The sidecar to serve, if any. Inline where there is nothing to look for
    /// ([`no_sidecar`]): a call with all it is given was ~35 instructions a request
    /// to return that.
    #[inline]
    fn find(
        self,
        site: &Site,
        req: &Request<'_>,
        cache: &mut FileCache,
        now: Instant,
        access: &mut Access<'_>,
    ) -> Found {
        if no_sidecar(site, self.known) {
            return Found::default();
        }
        self.look(site, req, cache, now, access)
    }

    /// [`Sidecar::find`] where a sidecar may exist.
    #[inline(never)]
    fn look(
        self,
        site: &Site,
        req: &Request<'_>,
        cache: &mut FileCache,
        now: Instant,
        access: &mut Access<'_>,
    ) -> Found {
        let Sidecar {
            key,
            clean,
            real,
            index,
            st,
            known,
        } = self;
        let cfg = &site.config;
        let rel = match real {
            Some(real) => real,
            None => {
                let owned;
                let clean = match clean {
                    Some(c) => c,
                    None => match path::clean(key) {
                        Ok(c) => {
                            owned = c;
                            &owned
                        }
                        Err(_) => return Found::default(),
                    },
                };
                let mut rel = clean.segments.join("/");
                if index {
                    if !rel.is_empty() {
                        rel.push('/');
                    }
                    rel.push_str(&cfg.index);
                }
                rel
            }
        };
        let root = site.root.as_fd();
        let mask = match known {
            Some(mask) => mask,
            None => {
                let mask = encoding::present(root, &rel, st, &cfg.precompressed);
                cache.note_sidecars(key, now, mask);
                mask
            }
        };
        if mask == 0 {
            return Found::default();
        }
        let chosen = encoding::acceptable(&cfg.precompressed, req.accept_encoding)
            .into_iter()
            .filter(|e| mask & e.bit() != 0)
            .filter_map(|e| encoding::open(root, &rel, st, e))
            .find(|s| {
                let name = format!("{rel}{}", s.encoding.suffix());
                access.name(&name).is_ok() && !access.refuses_links(&s.stat)
            });
        Found { chosen, any: true }
    }
}

/// No sidecar can be served: no precompressed codings, or the cache noted none
/// (`known`: its note).
fn no_sidecar(site: &Site, known: Option<u8>) -> bool {
    site.config.precompressed.is_empty() || known == Some(0)
}

/// A file served without going through the worker's cache.
fn uncached(file: File, st: rustix::fs::Stat) -> CachedFile {
    CachedFile {
        trust: crate::cache::trust_of(&file),
        file: Arc::new(file),
        st,
        described: None,
        bytes: None,
    }
}

/// The names a directory answers to: the request's, and where a symlink led (when
/// one did). Whatever is listed or archived must pass under both.
struct DirNames {
    rel: String,
    real: Option<String>,
}

impl DirNames {
    /// `f` holds for every name of the directory.
    fn all(&self, mut f: impl FnMut(&str) -> bool) -> bool {
        f(&self.rel) && self.real.as_deref().is_none_or(f)
    }

    /// `f` holds for `name` inside the directory, under every name of it.
    fn all_inside(&self, name: &str, mut f: impl FnMut(&str) -> bool) -> bool {
        self.all(|dir| {
            if dir.is_empty() {
                f(name)
            } else {
                f(&format!("{dir}/{name}"))
            }
        })
    }
}

/// The response to a request that could not be parsed: status and reason, then close.
pub fn error_response(out: &mut Out, err: HttpError, head_only: bool) -> Response {
    Response::error(out, err, head_only)
}

/// The methods every resource answers.
const ALLOW: (&str, &str) = ("Allow", "GET, HEAD");
const ALLOW_PUT: (&str, &str) = ("Allow", "GET, HEAD, PUT");

/// `/` + escaped segments + `/`: never starts with `//` (segments are never empty).
fn location(clean: &CleanPath) -> String {
    let mut loc = String::with_capacity(64);
    for seg in &clean.segments {
        loc.push('/');
        loc.extend(utf8_percent_encode(seg, SEGMENT));
    }
    loc.push('/');
    loc
}

/// How a reply is shaped (every head it writes): the connection, the rules in force,
/// and whether the resource varies on Accept-Encoding.
#[derive(Clone, Copy)]
struct Reply<'e, 'r> {
    close: bool,
    keep_alive_10: bool,
    head_only: bool,
    eff: &'e Effective<'e>,
    origin: Option<&'r str>,
    vary_encoding: bool,
    /// Strict-Transport-Security value (responses over TLS only).
    hsts: Option<&'e str>,
    /// The loop turn, for the snapshot store's lookups (it reads its change
    /// notices once per turn, or when the worker's loop says they wait).
    turn: crate::snapshot::Turn,
}

impl Reply<'_, '_> {
    /// Connection, Vary, CORS and the rules' headers: the fields every head ends with.
    fn finish_fields(&self, h: &mut Head<'_>) {
        if self.close {
            h.field(Name::Connection, "close");
        } else if self.keep_alive_10 {
            h.field(Name::Connection, "keep-alive");
        }
        let vary_origin = matches!(self.eff.cors, Some(Cors::List(_)));
        match (self.vary_encoding, vary_origin) {
            (true, true) => h.field(Name::Vary, "Accept-Encoding, Origin"),
            (true, false) => h.field(Name::Vary, "Accept-Encoding"),
            (false, true) => h.field(Name::Vary, "Origin"),
            (false, false) => h,
        };
        if let Some(cors) = self.eff.cors
            && let Some(allow) = cors.allow(self.origin)
        {
            h.field(Name::AccessControlAllowOrigin, allow);
            h.field(Name::AccessControlExposeHeaders,
                "Content-Length, Content-Range, Content-Encoding, Accept-Ranges, ETag, Last-Modified",
            );
        }
        if let Some(v) = self.hsts {
            h.field(Name::StrictTransportSecurity, v);
        }
        for x in &self.eff.headers {
            h.header(&x.name, &x.value);
        }
    }

    /// A response with a short body held in memory.
    fn body(
        &self,
        out: &mut Out,
        status: u16,
        ctype: &str,
        body: &[u8],
        extra: &[(&str, &str)],
    ) -> Response {
        let mut h = Head::start(out, status);
        for (k, v) in extra {
            h.header(k, v);
        }
        h.field(Name::ContentType, ctype);
        h.field_u64(Name::ContentLength, body.len() as u64);
        self.finish_fields(&mut h);
        h.finish();
        if !self.head_only {
            out.body.extend_from_slice(body);
        }
        Response {
            status,
            body: Body::InHead,
            body_len: if self.head_only { 0 } else { body.len() as u64 },
            close: self.close,
        }
    }

    /// A response with a short text body.
    fn text(&self, out: &mut Out, status: u16, body: &str, extra: &[(&str, &str)]) -> Response {
        self.body(
            out,
            status,
            "text/plain; charset=utf-8",
            body.as_bytes(),
            extra,
        )
    }

    /// An error status: its configured page, or `NNN Reason`.
    fn status_with(&self, out: &mut Out, status: u16, extra: &[(&str, &str)]) -> Response {
        if let Some(page) = self.eff.error_page(status) {
            return self.body(out, status, &page.content_type, &page.body, extra);
        }
        let body = format!("{status} {}\n", head::reason(status));
        self.text(out, status, &body, extra)
    }

    fn status(&self, out: &mut Out, status: u16) -> Response {
        self.status_with(out, status, &[])
    }

    fn open_error(&self, out: &mut Out, e: OpenError) -> Response {
        match e {
            OpenError::NotFound => self.status(out, 404),
            OpenError::Forbidden => self.status(out, 403),
            OpenError::Busy => {
                let body = "503 Service Unavailable (out of file descriptors)\n";
                self.text(out, 503, body, &[("Retry-After", "1")])
            }
            OpenError::Other(why) => {
                tracing::warn!("open failed: {why}");
                self.status(out, 500)
            }
        }
    }

    /// 401 asking for the credentials of `users`.
    fn challenge(&self, out: &mut Out, users: &crate::auth::Users) -> Response {
        let challenge = users.challenge();
        self.status_with(out, 401, &[("WWW-Authenticate", &challenge)])
    }

    /// 403 for a file with more than one hard link on a site with password rules
    /// (rules see names, and a hard link is the same file under another name).
    fn hard_linked(&self, out: &mut Out, path: &str) -> Response {
        tracing::warn!(
            path,
            "refused a file with more than one hard link (a password rule is configured)"
        );
        self.status(out, 403)
    }

    /// Where a followed symlink led (the open `fd`), checked as a name of its own:
    /// `Ok(Some(rel))` beneath the root, `Ok(None)` outside it (`--symlinks follow`
    /// only), or the response refusing it.
    #[allow(clippy::result_large_err)] // made and returned at once
    fn check_real(
        &self,
        site: &Site,
        access: &mut Access<'_>,
        fd: &File,
        out: &mut Out,
    ) -> Result<Option<String>, Response> {
        let real = site
            .root_path
            .as_deref()
            .and_then(|root| access::real_rel(root, fd));
        match real {
            Some(rel) => match access.name(&rel) {
                Ok(()) => Ok(Some(rel)),
                Err(Denied::NotFound) => Err(self.status(out, 404)),
                Err(Denied::Auth(users)) => Err(self.challenge(out, users)),
            },
            None if site.config.symlinks == path::SymlinkPolicy::Follow => Ok(None),
            None => Err(self.status(out, 404)),
        }
    }

    /// 503: the memory for generated bodies is in use (listing pages and archive
    /// plans that clients have not read yet).
    fn busy(&self, out: &mut Out) -> Response {
        tracing::debug!("listing or archive refused: generated bodies hold their budget");
        let body = "503 Service Unavailable (too many listings or archives in flight)\n";
        self.text(out, 503, body, &[("Retry-After", "1")])
    }

    /// 200 with `fields` and no body and no Content-Length: a HEAD answered without
    /// building the body it describes.
    fn head_only_ok(&self, out: &mut Out, fields: &[(&str, &str)]) -> Response {
        let mut h = Head::start(out, 200);
        for (k, v) in fields {
            h.header(k, v);
        }
        self.finish_fields(&mut h);
        h.finish();
        Response {
            status: 200,
            body: Body::InHead,
            body_len: 0,
            close: self.close,
        }
    }

    /// A CORS preflight: 204 with what cross-origin requests may do, or 403 for an
    /// origin not on the list.
    fn preflight(&self, out: &mut Out, cors: &Cors, req: &Request<'_>) -> Response {
        if cors.allow(req.origin).is_none() {
            return self.status(out, 403);
        }
        let mut h = Head::start(out, 204);
        h.field(Name::AccessControlAllowMethods, "GET, HEAD");
        if let Some(asked) = req.ac_request_headers {
            let token_list = asked
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~, \t".contains(&b));
            if token_list && !asked.trim().is_empty() {
                h.field(Name::AccessControlAllowHeaders, asked);
            }
        }
        h.field(Name::AccessControlMaxAge, "86400");
        self.finish_fields(&mut h);
        h.finish();
        Response {
            status: 204,
            body: Body::InHead,
            body_len: 0,
            close: self.close,
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn serve_listing(
    req: &Request<'_>,
    reply: &Reply<'_, '_>,
    cache: &mut FileCache,
    dir: File,
    dir_st: &rustix::fs::Stat,
    clean: &CleanPath,
    names: &DirNames,
    site: &Site,
    access: &mut Access<'_>,
    out: &mut Out,
) -> Response {
    let cfg = &site.config;
    let query = clean.query.as_deref().unwrap_or("");
    let ui = upload_ui(cfg, reply.eff);
    if ui != listing::UploadUi::Off && query.split('&').any(|kv| kv == "asset=upload.js") {
        // The listing page's upload script (not inline: CSP `script-src 'self'`).
        let js = listing::UPLOAD_JS.as_bytes();
        let ctype = "text/javascript; charset=utf-8";
        return reply.body(out, 200, ctype, js, &[("Cache-Control", "no-cache")]);
    }
    let json = query.split('&').any(|kv| kv == "format=json");
    let ctype = if json {
        "application/json"
    } else {
        "text/html; charset=utf-8"
    };
    let cache_control = reply.eff.cache_control.unwrap_or("no-cache");
    let too_large = |out: &mut Out| {
        let body = format!(
            "403 Forbidden (more than {} entries to list)\n",
            listing::MAX_LISTING
        );
        reply.text(out, 403, &body, &[])
    };
    if cache.known_too_large(dir_st) {
        return too_large(out);
    }
    if reply.head_only {
        // The entries are counted (no stat, no page): the status is the GET's.
        return match listing::count_entries(&dir, listing::MAX_LISTING) {
            Ok(_) => reply.head_only_ok(
                out,
                &[("Content-Type", ctype), ("Cache-Control", cache_control)],
            ),
            Err(listing::ListError::TooLarge) => {
                cache.note_too_large(dir_st);
                too_large(out)
            }
            Err(listing::ListError::Io(e)) => {
                tracing::warn!("listing failed: {e}");
                reply.status(out, 500)
            }
        };
    }
    if !site.generated.room(crate::pages::PAGE_MAX) {
        return reply.busy(out);
    }
    let mut keep = |name: &str, kind: listing::Kind, st: rustix::fs::Stat| {
        // A directory is listed when it may be listed in turn, a file when it may
        // be fetched: under the directory's every name.
        let dir_ok = |access: &mut Access<'_>, is_dir: bool| {
            names.all_inside(name, |n| match is_dir {
                true => access.listable(n),
                false => access.name(n).is_ok(),
            })
        };
        match kind {
            listing::Kind::Dir => dir_ok(access, true).then_some(st),
            listing::Kind::File => {
                (dir_ok(access, false) && !access.refuses_links(&st)).then_some(st)
            }
            listing::Kind::Link => {
                let st = linked_entry(site, access, clean, name)?;
                let is_dir = FileType::from_raw_mode(st.st_mode) == FileType::Directory;
                dir_ok(access, is_dir).then_some(st)
            }
        }
    };
    let mut entries =
        match listing::read_entries_with(&dir, cfg.hidden, listing::MAX_LISTING, &mut keep) {
            Ok(e) => e,
            Err(listing::ListError::TooLarge) => {
                cache.note_too_large(dir_st);
                return too_large(out);
            }
            Err(listing::ListError::Io(e)) => {
                tracing::warn!("listing failed: {e}");
                return reply.status(out, 500);
            }
        };
    let order = listing::Order::from_query(query);
    listing::sort(&mut entries, order);
    let body = if json {
        listing::json(&entries)
    } else {
        listing::html_with(&clean.segments, &entries, order, cfg.archives, ui)
    };
    let v = listing::validators(body.as_bytes(), dir_st, &entries);
    let lm = v.last_modified();
    match conditional::evaluate(req, &v) {
        Precondition::Proceed => {}
        Precondition::NotModified => return not_modified(reply, &v, &lm, cache_control, out),
        Precondition::Failed => return reply.status(out, 412),
    }
    let fields = [
        ("ETag", v.etag.as_str()),
        ("Last-Modified", &lm),
        ("Cache-Control", cache_control),
    ];
    if body.len() <= crate::pages::INLINE_MAX {
        return reply.body(out, 200, ctype, body.as_bytes(), &fields);
    }
    // A larger page stays in memory until the client has read it: counted.
    let Some(ticket) = site.generated.take(body.len()) else {
        return reply.busy(out);
    };
    let len = body.len();
    let mut h = Head::start(out, 200);
    for (k, v) in fields {
        h.header(k, v);
    }
    h.field(Name::ContentType, ctype);
    h.field_u64(Name::ContentLength, len as u64);
    reply.finish_fields(&mut h);
    h.finish();
    Response {
        status: 200,
        body: Body::File(FileBody {
            file: Arc::new(dir),
            file_len: 0,
            lease: false,
            pieces: Pieces::One(Piece::Mem(0, len)),
            mem: BodyMem::Counted(Box::new((body.into_bytes(), Box::new(ticket)))),
            members: Box::default(),
            held: None,
            lendable: false,
        }),
        body_len: len as u64,
        close: reply.close,
    }
}

/// The upload controls a listing of a directory shows: none unless uploads are
/// allowed there and a PUT would pass its auth (this request passed the same rule's).
fn upload_ui(cfg: &crate::site_config::SiteConfig, eff: &Effective<'_>) -> listing::UploadUi {
    let webdav = eff.webdav.unwrap_or(cfg.webdav);
    let upload = webdav || eff.upload.unwrap_or(cfg.upload);
    if !upload || (cfg.upload_needs_auth && eff.auth.is_none()) {
        return listing::UploadUi::Off;
    }
    // Folders, new folder and delete (MKCOL, DELETE) need WebDAV.
    if webdav {
        listing::UploadUi::Dav
    } else {
        listing::UploadUi::Files
    }
}

/// A symlink in a listing: opened as a request for it would be (the symlink policy,
/// beneath the root), and listed with its target's stat only when that request
/// would be answered: where it leads is checked as a name of its own.
fn linked_entry(
    site: &Site,
    access: &mut Access<'_>,
    clean: &CleanPath,
    name: &str,
) -> Option<rustix::fs::Stat> {
    let cfg = &site.config;
    if cfg.symlinks == path::SymlinkPolicy::Never {
        return None;
    }
    let mut segments = clean.segments.clone();
    segments.push(name.to_owned());
    let target = CleanPath {
        segments,
        trailing_slash: false,
        query: None,
    };
    let (fd, st) = match path::open_noting_links(&site.root, &target, cfg.symlinks, cfg.hidden) {
        Ok((Resolved::File(f, st) | Resolved::Dir(f, st), _)) => (f, st),
        Err(_) => return None,
    };
    match site
        .root_path
        .as_deref()
        .and_then(|root| access::real_rel(root, &fd))
    {
        Some(real) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
            access.listable(&real).then_some(())?
        }
        Some(real) => access.name(&real).ok()?,
        None if cfg.symlinks == path::SymlinkPolicy::Follow => {}
        None => return None,
    }
    (!access.refuses_links(&st)).then_some(st)
}

/// A directory as a tar stream (see [`crate::archive`]): headers from memory, member
/// contents by the engines. No validators or ranges: the stream is made anew.
///
/// Only a directory the client may list is archived, and the archive holds only
/// what the client could fetch file by file ([`Access`]); a HEAD is answered
/// without walking the tree (no Content-Length).
#[allow(clippy::too_many_arguments)]
fn serve_archive(
    site: &Site,
    reply: &Reply<'_, '_>,
    cache: &mut FileCache,
    dir: File,
    dir_st: &rustix::fs::Stat,
    clean: &CleanPath,
    names: &DirNames,
    access: &mut Access<'_>,
    out: &mut Out,
) -> Response {
    if !names.all(|n| access.listable(n)) {
        return reply.status(out, 404);
    }
    // A directory too large to list is too large to archive.
    if cache.known_too_large(dir_st) {
        return archive_too_large(reply, out);
    }
    let top = clean.segments.last().map_or("root", String::as_str);
    let disposition = format!(
        "attachment; filename=\"{}.tar\"; filename*=UTF-8''{}.tar",
        top.replace(
            |c: char| !c.is_ascii_alphanumeric() && !"-_.".contains(c),
            "_"
        ),
        utf8_percent_encode(top, SEGMENT),
    );
    let cache_control = reply.eff.cache_control.unwrap_or("no-store");
    if reply.head_only {
        // The top directory's entries are counted (no walk): a directory too large
        // to list gets the GET's 403.
        if let Err(listing::ListError::TooLarge) =
            listing::count_entries(&dir, crate::archive::MAX_ENTRIES)
        {
            cache.note_too_large(dir_st);
            return archive_too_large(reply, out);
        }
        return reply.head_only_ok(
            out,
            &[
                ("Content-Type", "application/x-tar"),
                ("Content-Disposition", &disposition),
                ("Cache-Control", cache_control),
            ],
        );
    }
    if !site.generated.room(crate::pages::PLAN_MAX) {
        return reply.busy(out);
    }
    let hidden = access.hidden();
    let mut keep = |rel: &str, st: &rustix::fs::Stat, is_dir: bool| {
        if is_dir {
            names.all_inside(rel, |n| access.listable(n))
        } else {
            names.all_inside(rel, |n| access.name(n).is_ok()) && !access.refuses_links(st)
        }
    };
    let archive = match Archive::plan(&dir, top, hidden, &mut keep) {
        Ok(a) => a,
        Err(ArchiveError::TooLarge) => return archive_too_large(reply, out),
        Err(ArchiveError::Io(e)) => {
            tracing::warn!("archive failed: {e}");
            return reply.status(out, 500);
        }
    };
    // The plan stays in memory until the stream ends: counted.
    let held = archive.mem.len()
        + archive.pieces.len() * std::mem::size_of::<Piece>()
        + archive
            .members
            .iter()
            .map(|m| m.rel.len() + std::mem::size_of::<crate::archive::Member>())
            .sum::<usize>();
    let Some(ticket) = site.generated.take(held) else {
        return reply.busy(out);
    };
    let mut h = Head::start(out, 200);
    h.field(Name::ContentType, "application/x-tar");
    h.field(Name::ContentDisposition, &disposition);
    h.field(Name::CacheControl, cache_control);
    h.field_u64(Name::ContentLength, archive.len);
    reply.finish_fields(&mut h);
    h.finish();
    Response {
        status: 200,
        body: Body::File(FileBody {
            file: Arc::new(dir),
            file_len: 0,
            lease: false,
            pieces: archive.pieces.into(),
            mem: BodyMem::Counted(Box::new((archive.mem, Box::new(ticket)))),
            members: archive.members.into_boxed_slice(),
            held: None,
            lendable: false,
        }),
        body_len: archive.len,
        close: reply.close,
    }
}

/// 403 for an archive of more than [`crate::archive::MAX_ENTRIES`] entries.
fn archive_too_large(reply: &Reply<'_, '_>, out: &mut Out) -> Response {
    let body = format!(
        "403 Forbidden (more than {} entries to archive)\n",
        crate::archive::MAX_ENTRIES
    );
    reply.text(out, 403, &body, &[])
}

/// 304 with the validators (and Cache-Control) the 200 would carry.
fn not_modified(
    reply: &Reply<'_, '_>,
    v: &Validators,
    lm: &str,
    cache_control: &str,
    out: &mut Out,
) -> Response {
    let mut h = Head::start(out, 304);
    h.field(Name::ETag, &v.etag);
    h.field(Name::LastModified, lm);
    if !cache_control.is_empty() {
        h.field(Name::CacheControl, cache_control);
    }
    reply.finish_fields(&mut h);
    h.finish();
    Response {
        status: 304,
        body: Body::InHead,
        body_len: 0,
        close: reply.close,
    }
}

/// Serves `file` (or the sidecar in `found`, which then replaces it: its own length,
/// ETag and ranges, with the original's Content-Type).
///
/// A compressible file without a sidecar may instead be answered with its gzip
/// variant from the snapshot store ([`compressed`]): after every check the identity
/// answer passed, so it is never a way around a rule.
fn serve_file(
    site: &Site,
    req: &Request<'_>,
    reply: &Reply<'_, '_>,
    f: &CachedFile,
    name: FileName<'_>,
    found: Found,
    out: &mut Out,
) -> Response {
    debug_assert!(
        !reply.vary_encoding,
        "whether the answer varies is decided here"
    );
    let mut vary = found.any;
    let variant = match (&found.chosen, found.any) {
        (None, false) => compressed(site, req, reply, f, name, &mut vary),
        _ => None,
    };
    // A copy that says the answer varies on Accept-Encoding, only when it does (the
    // copy on every request was ~20 instructions).
    let varied;
    let reply = match vary {
        true => {
            varied = Reply {
                vary_encoding: true,
                ..*reply
            };
            &varied
        }
        false => reply,
    };
    let computed;
    // A file proven not to change may be lent to a local peer too: from a read-only
    // file system with no lease; marked immutable/verity or under an `immutable`
    // rule with the read lease kept as a tripwire.
    let trusted = match f.trust {
        Trust::ReadOnlyFs => Lend::Free,
        Trust::Attribute => Lend::Tripwire,
        Trust::None if reply.eff.immutable == Some(true) => Lend::Tripwire,
        Trust::None => Lend::Copy,
    };
    let (file, st_len, coding, described, held, lend) = match found.chosen {
        // Matched one by one, not as a pair: a pair of the two (a sidecar's fstat, a
        // variant's fields) was a ~160-byte copy on every request.
        Some(s) => {
            computed = Described::of(&s.stat, &name.get());
            (
                Arc::new(s.file),
                s.stat.st_size,
                Some(s.encoding.token()),
                &computed,
                None,
                Lend::Copy,
            )
        }
        None => match variant {
            Some((snap, d, token)) => {
                computed = d;
                (
                    snap.file.clone(),
                    snap.len as i64,
                    Some(token),
                    &computed,
                    None,
                    Lend::Free,
                )
            }
            None => {
                let snap = identity_snapshot(site, f, req.loopback_peer, reply.turn);
                let d = match &f.described {
                    Some(d) => &**d,
                    None => {
                        computed = Described::of(&f.st, &name.get());
                        &computed
                    }
                };
                match snap {
                    Some(snap) => (
                        snap.file.clone(),
                        snap.len as i64,
                        None,
                        d,
                        None,
                        Lend::Free,
                    ),
                    None => (
                        f.file.clone(),
                        f.st.st_size,
                        None,
                        d,
                        f.bytes.clone(),
                        trusted,
                    ),
                }
            }
        },
    };
    let len = st_len.max(0) as u64;
    let (v, lm, ctype) = (
        &described.validators,
        &described.last_modified,
        &described.content_type,
    );
    let cache_control = reply.eff.cache_control.unwrap_or("");
    match conditional::evaluate(req, v) {
        Precondition::Proceed => {}
        Precondition::NotModified => return not_modified(reply, v, lm, cache_control, out),
        Precondition::Failed => return reply.status(out, 412),
    }
    let plan = match req.range {
        Some(r) if req.method == Method::Get && conditional::if_range_allows(req, v) => {
            range::plan(r, len)
        }
        _ => RangePlan::Full,
    };
    let common = |h: &mut Head<'_>| {
        h.field(Name::LastModified, lm);
        h.field(Name::ETag, &v.etag);
        h.field(Name::AcceptRanges, "bytes");
        if let Some(c) = coding {
            h.field(Name::ContentEncoding, c);
        }
        if !cache_control.is_empty() {
            h.field(Name::CacheControl, cache_control);
        }
        reply.finish_fields(h);
    };
    let (status, pieces, mem, body_len) = match plan {
        RangePlan::Unsatisfiable => {
            let cr = format!("bytes */{len}");
            return reply.status_with(out, 416, &[("Content-Range", &cr)]);
        }
        RangePlan::Partial(spans) if spans.len() == 1 => {
            let (s, e) = spans[0];
            let mut h = Head::start(out, 206);
            h.field(Name::ContentType, ctype);
            h.field_u64(Name::ContentLength, e - s);
            h.field(Name::ContentRange, &format!("bytes {s}-{}/{len}", e - 1));
            common(&mut h);
            h.finish();
            (
                206,
                Pieces::One(Piece::File {
                    start: s,
                    len: e - s,
                }),
                Vec::new(),
                e - s,
            )
        }
        RangePlan::Partial(spans) if spans.len() > 1 => {
            let boundary = boundary();
            let mut mem = Vec::with_capacity(spans.len() * 96 + 64);
            let mut pieces = Vec::with_capacity(spans.len() * 2 + 1);
            let mut total = 0u64;
            for (i, &(s, e)) in spans.iter().enumerate() {
                let at = mem.len();
                if i > 0 {
                    mem.extend_from_slice(b"\r\n");
                }
                mem.extend_from_slice(
                    format!(
                        "--{boundary}\r\nContent-Type: {ctype}\r\nContent-Range: bytes {s}-{}/{len}\r\n\r\n",
                        e - 1
                    )
                    .as_bytes(),
                );
                pieces.push(Piece::Mem(at, mem.len()));
                pieces.push(Piece::File {
                    start: s,
                    len: e - s,
                });
                total += (mem.len() - at) as u64 + (e - s);
            }
            let at = mem.len();
            mem.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
            pieces.push(Piece::Mem(at, mem.len()));
            total += (mem.len() - at) as u64;
            let mut h = Head::start(out, 206);
            h.field(
                Name::ContentType,
                &format!("multipart/byteranges; boundary={boundary}"),
            );
            h.field_u64(Name::ContentLength, total);
            common(&mut h);
            h.finish();
            (206, pieces.into(), mem, total)
        }
        RangePlan::Full | RangePlan::Partial(_) => {
            let mut h = Head::start(out, 200);
            match &described.whole {
                // A held file's fields, kept as one block: the same fields in the
                // same order, checked once.
                Some((whole_len, block)) if *whole_len == len && coding.is_none() => {
                    h.block(block);
                    if !cache_control.is_empty() {
                        h.field(Name::CacheControl, cache_control);
                    }
                    reply.finish_fields(&mut h);
                }
                _ => {
                    h.field(Name::ContentType, ctype);
                    h.field_u64(Name::ContentLength, len);
                    common(&mut h);
                }
            }
            h.finish();
            (
                200,
                Pieces::One(Piece::File { start: 0, len }),
                Vec::new(),
                len,
            )
        }
    };
    if reply.head_only || body_len == 0 {
        return Response {
            status,
            body: Body::InHead,
            body_len: 0,
            close: reply.close,
        };
    }
    Response {
        status,
        body: Body::File(FileBody {
            file,
            file_len: len,
            lease: lend != Lend::Free && len > crate::cache::CACHE_MAX,
            pieces,
            mem: BodyMem::Owned(mem),
            members: Box::default(),
            held,
            lendable: lend != Lend::Copy,
        }),
        body_len,
        close: reply.close,
    }
}

/// Whether a file body may leave by reference to a local peer.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Lend {
    /// No: it may change in place (sent by reference only under a lease, and only
    /// to peers behind a NIC).
    Copy,
    /// Yes, with no lease: a sealed snapshot, or a file on a read-only file system.
    Free,
    /// Yes, trusted (immutable/verity attribute, `immutable` rule), with the read
    /// lease taken as a tripwire: a break ends the body and closes.
    Tripwire,
}

/// The sealed snapshot of `f` itself when its size is in `--snapshot-band` (the
/// loopback band for a `loopback` peer); a missing one is queued from its second
/// request on (this request is served from the file).
fn identity_snapshot(
    site: &Site,
    f: &CachedFile,
    loopback: bool,
    turn: crate::snapshot::Turn,
) -> Option<Arc<crate::snapshot::Snapshot>> {
    use crate::snapshot::{Key, Variant};
    let cfg = &site.config;
    let band = match (loopback, cfg.snapshot_band_loopback) {
        (true, Some(b)) => Some(b),
        _ => cfg.snapshot_band,
    };
    let (min, max) = band?;
    let len = f.st.st_size.max(0) as u64;
    if !(min..=max).contains(&len) || len > site.snapshots.budget() / 8 {
        return None;
    }
    let key = Key::of(&f.st, Variant::Identity);
    let snap = site.snapshots.get(&key, turn);
    if snap.is_none() {
        site.snapshots.request_hot(key, f.file.clone());
    }
    snap
}

/// The br, zstd or gzip variant of `f` from the snapshot store (the client's best
/// that is ready), the head fields it goes with (its own ETag: the identity's with
/// `-br`, `-zstd` or `-gzip`) and its coding, when compression is on for this path, the type is
/// compressible and the client accepts one. The answer varies on Accept-Encoding whenever compression applies
/// (then `vary` is set); a missing variant is queued (this request gets the identity).
fn compressed(
    site: &Site,
    req: &Request<'_>,
    reply: &Reply<'_, '_>,
    f: &CachedFile,
    name: FileName<'_>,
    vary: &mut bool,
) -> Option<(Arc<crate::snapshot::Snapshot>, Described, &'static str)> {
    use crate::snapshot::{Key, Variant};
    if !reply.eff.compress.unwrap_or(site.config.compress) {
        return None;
    }
    let len = f.st.st_size.max(0) as u64;
    let store = &site.snapshots;
    if !store.compressible_size(len) {
        return None;
    }
    let compressible = match &f.described {
        Some(d) => d.compressible,
        None => compressible_type(&crate::head::content_type(&name.get())),
    };
    if !compressible {
        return None;
    }
    *vary = true;
    use encoding::Encoding::{Br, Gzip, Zstd};
    // The client's best first (by q-value, then in this order: br, zstd, gzip, the
    // sidecars' default order; not by size, which would need every variant made);
    // one not made yet is queued and the next is tried.
    for e in encoding::acceptable(&[Br, Zstd, Gzip], req.accept_encoding) {
        let variant = match e {
            Br => Variant::Br,
            Zstd => Variant::Zstd,
            Gzip => Variant::Gzip,
        };
        let key = Key::of(&f.st, variant);
        let Some(snap) = store.get(&key, reply.turn) else {
            store.request(key, f.file.clone());
            continue;
        };
        let mut d = Described::of(&f.st, &name.get());
        let etag = d.validators.etag.trim_end_matches('"').to_owned();
        d.validators.etag = format!("{etag}-{}\"", e.token());
        return Some((snap, d, e.token()));
    }
    None
}

/// A multipart boundary unlikely to occur in any file: 20 hex digits from the clock
/// and a counter.
fn boundary() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mix = (t ^ n.rotate_left(32)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    format!("zcopy-{mix:016x}{n:04x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_after_the_last_slash() {
        for (path, name) in [
            ("/1k.bin", "1k.bin"),
            ("/a/b/c.txt", "c.txt"),
            ("/dir/", ""),
            ("/", ""),
            ("no-slash", "no-slash"),
            ("", ""),
            ("/é/ü.txt", "ü.txt"),
        ] {
            assert_eq!(after_last_byte(path, b'/'), name, "{path}");
        }
    }

    #[test]
    fn location_escapes_and_never_starts_with_two_slashes() {
        let clean = CleanPath {
            segments: vec!["a b".into(), "x?y#z".into(), "/evil".into()],
            trailing_slash: false,
            query: None,
        };
        let loc = location(&clean);
        assert_eq!(loc, "/a%20b/x%3Fy%23z/%2Fevil/");
        assert!(!loc.starts_with("//"));
    }

    #[test]
    fn boundaries_differ() {
        assert_ne!(boundary(), boundary());
    }
}
