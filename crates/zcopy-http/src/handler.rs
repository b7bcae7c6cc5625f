//! From a parsed request to a response: the head (formatted into a buffer) and a plan
//! for the body. No socket I/O happens here; [`crate::conn`] sends what this decides.
//!
//! Syscalls per file request: one `openat2` + one `fstat` (inside [`path::open`]),
//! plus one more pair for a directory's index file. Content-Length is always the
//! fstat length of the open fd.

use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::cache::FileCache;

use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};

use crate::conditional::{self, Precondition, Validators};
use crate::config::Config;
use crate::head::{self, Head};
use crate::listing;
use crate::path::{self, CleanPath, OpenError, Resolved};
use crate::range::{self, RangePlan};
use crate::request::{BodyFraming, HttpError, Method, Request, Version};

/// What is served, shared by all workers: the configuration and the root, opened once.
#[derive(Debug)]
pub struct Site {
    /// The root directory, opened once (every path is resolved beneath it).
    pub root: OwnedFd,
    /// Settings.
    pub config: Config,
}

impl Site {
    /// Opens `config.root` as a directory.
    pub fn open(config: Config) -> io::Result<Site> {
        use rustix::fs::{Mode, OFlags};
        let root = rustix::fs::open(
            &config.root,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Site { root, config })
    }
}

/// One piece of a response body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Piece {
    /// Bytes `mem[start..end]` of the [`FileBody`].
    Mem(usize, usize),
    /// `len` bytes of the file from `start`.
    File {
        /// First byte.
        start: u64,
        /// How many bytes.
        len: u64,
    },
}

/// A body read from an open file: one range, or multipart parts whose headers live
/// in `mem` and whose data is sent by an engine straight from the file.
#[derive(Debug)]
pub struct FileBody {
    /// The open file (shared with the worker's [`FileCache`] for small files).
    pub file: Arc<File>,
    /// The file's length from the fstat the response was built on.
    pub file_len: u64,
    /// The pieces, in order.
    pub pieces: Vec<Piece>,
    /// Memory the [`Piece::Mem`] pieces point into.
    pub mem: Vec<u8>,
}

/// How the body follows the head.
#[derive(Debug)]
pub enum Body {
    /// Nothing more: the head buffer already holds any (small) body.
    InHead,
    /// From a file.
    File(FileBody),
}

/// A response decided by [`handle`]: the head is in the caller's buffer.
#[derive(Debug)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// The body still to send after the head buffer.
    pub body: Body,
    /// Body length announced in Content-Length (0 for HEAD and 304).
    pub body_len: u64,
    /// Close the connection after this response.
    pub close: bool,
}

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
pub fn handle(
    site: &Site,
    req: &Request<'_>,
    close: bool,
    out: &mut Vec<u8>,
    cache: &mut FileCache,
    now: Instant,
) -> Response {
    // A chunked body is never read: the connection closes after this response, so
    // no request is ever parsed out of a body.
    let close = close || !req.keep_alive || req.body == BodyFraming::Chunked;
    let head_only = req.method == Method::Head;
    let conn = Conn {
        close,
        keep_alive_10: !close && req.version == Version::Http10,
        head_only,
    };
    if req.method == Method::Other {
        return conn.text(
            out,
            405,
            "405 Method Not Allowed\n",
            &[("Allow", "GET, HEAD")],
        );
    }
    let key = req.target.split('?').next().unwrap_or("");
    if let Some((file, st)) = cache.get(key, now) {
        let name = key.rsplit('/').next().unwrap_or("");
        let name = if name.is_empty() {
            site.config.index.as_str()
        } else {
            name
        };
        return serve_file(req, &conn, file, &st, name, out);
    }
    let clean = match path::clean(req.target) {
        Ok(c) => c,
        Err(e) => return error_response(out, e, head_only),
    };
    let cfg = &site.config;
    match path::open(&site.root, &clean, cfg.symlinks, cfg.hidden) {
        Ok(Resolved::File(file, st)) => {
            if clean.trailing_slash {
                return conn.status(out, 404);
            }
            let name = clean.segments.last().map_or("", String::as_str);
            let file = Arc::new(file);
            cache.put(key, &file, &st, now);
            serve_file(req, &conn, file, &st, name, out)
        }
        Ok(Resolved::Dir(dir, _)) => {
            if !clean.trailing_slash && !clean.segments.is_empty() {
                let loc = location(&clean);
                return conn.text(out, 301, "301 Moved Permanently\n", &[("Location", &loc)]);
            }
            if !cfg.index.is_empty() {
                match path::open_in_dir(&dir, &cfg.index, cfg.symlinks) {
                    Ok(Resolved::File(file, st)) => {
                        let file = Arc::new(file);
                        cache.put(key, &file, &st, now);
                        return serve_file(req, &conn, file, &st, &cfg.index, out);
                    }
                    Ok(Resolved::Dir(..)) | Err(OpenError::NotFound) => {}
                    Err(e) => return conn.open_error(out, e),
                }
            }
            if !cfg.listing {
                return conn.status(out, 404);
            }
            serve_listing(&conn, &dir, &clean, cfg.hidden, out)
        }
        Err(e) => conn.open_error(out, e),
    }
}

/// The response to a request that could not be parsed: status and reason, then close.
pub fn error_response(out: &mut Vec<u8>, err: HttpError, head_only: bool) -> Response {
    let conn = Conn {
        close: true,
        keep_alive_10: false,
        head_only,
    };
    let body = format!("{} {}\n", err.status, err.reason);
    conn.text(out, err.status, &body, &[])
}

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

/// Per-response connection facts that shape every head.
struct Conn {
    close: bool,
    keep_alive_10: bool,
    head_only: bool,
}

impl Conn {
    fn connection_header(&self, h: &mut Head<'_>) {
        if self.close {
            h.header("Connection", "close");
        } else if self.keep_alive_10 {
            h.header("Connection", "keep-alive");
        }
    }

    /// A response with a short text body.
    fn text(&self, out: &mut Vec<u8>, status: u16, body: &str, extra: &[(&str, &str)]) -> Response {
        let mut h = Head::start(out, status);
        for (k, v) in extra {
            h.header(k, v);
        }
        h.header("Content-Type", "text/plain; charset=utf-8");
        h.header_u64("Content-Length", body.len() as u64);
        self.connection_header(&mut h);
        h.finish();
        if !self.head_only {
            out.extend_from_slice(body.as_bytes());
        }
        Response {
            status,
            body: Body::InHead,
            body_len: if self.head_only { 0 } else { body.len() as u64 },
            close: self.close,
        }
    }

    fn status(&self, out: &mut Vec<u8>, status: u16) -> Response {
        let body = format!("{status} {}\n", head::reason(status));
        self.text(out, status, &body, &[])
    }

    fn open_error(&self, out: &mut Vec<u8>, e: OpenError) -> Response {
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
}

fn serve_listing(
    conn: &Conn,
    dir: &File,
    clean: &CleanPath,
    hidden: bool,
    out: &mut Vec<u8>,
) -> Response {
    let entries = match listing::read_entries(dir, hidden) {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!("listing failed: {e}");
            return conn.status(out, 500);
        }
    };
    let json = clean
        .query
        .as_deref()
        .is_some_and(|q| q.split('&').any(|kv| kv == "format=json"));
    let (body, ctype) = if json {
        (listing::json(&entries), "application/json")
    } else {
        let mut url = String::from("/");
        for s in &clean.segments {
            url.push_str(s);
            url.push('/');
        }
        (listing::html(&url, &entries), "text/html; charset=utf-8")
    };
    let mut h = Head::start(out, 200);
    h.header("Content-Type", ctype);
    h.header_u64("Content-Length", body.len() as u64);
    h.header("Cache-Control", "no-cache");
    conn.connection_header(&mut h);
    h.finish();
    if !conn.head_only {
        out.extend_from_slice(body.as_bytes());
    }
    Response {
        status: 200,
        body: Body::InHead,
        body_len: if conn.head_only { 0 } else { body.len() as u64 },
        close: conn.close,
    }
}

fn serve_file(
    req: &Request<'_>,
    conn: &Conn,
    file: Arc<File>,
    st: &rustix::fs::Stat,
    name: &str,
    out: &mut Vec<u8>,
) -> Response {
    let len = st.st_size.max(0) as u64;
    let v = Validators::from_stat(st);
    let lm = v.last_modified();
    match conditional::evaluate(req, &v) {
        Precondition::Proceed => {}
        Precondition::NotModified => {
            let mut h = Head::start(out, 304);
            h.header("ETag", &v.etag);
            h.header("Last-Modified", &lm);
            conn.connection_header(&mut h);
            h.finish();
            return Response {
                status: 304,
                body: Body::InHead,
                body_len: 0,
                close: conn.close,
            };
        }
        Precondition::Failed => return conn.status(out, 412),
    }
    let ctype = head::content_type(name);
    let plan = match req.range {
        Some(r) if req.method == Method::Get && conditional::if_range_allows(req, &v) => {
            range::plan(r, len)
        }
        _ => RangePlan::Full,
    };
    let common = |h: &mut Head<'_>| {
        h.header("Last-Modified", &lm);
        h.header("ETag", &v.etag);
        h.header("Accept-Ranges", "bytes");
        conn.connection_header(h);
    };
    let (status, pieces, mem, body_len) = match plan {
        RangePlan::Unsatisfiable => {
            let cr = format!("bytes */{len}");
            return conn.text(
                out,
                416,
                "416 Range Not Satisfiable\n",
                &[("Content-Range", &cr)],
            );
        }
        RangePlan::Partial(spans) if spans.len() == 1 => {
            let (s, e) = spans[0];
            let mut h = Head::start(out, 206);
            h.header("Content-Type", &ctype);
            h.header_u64("Content-Length", e - s);
            h.header("Content-Range", &format!("bytes {s}-{}/{len}", e - 1));
            common(&mut h);
            h.finish();
            (
                206,
                vec![Piece::File {
                    start: s,
                    len: e - s,
                }],
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
            h.header(
                "Content-Type",
                &format!("multipart/byteranges; boundary={boundary}"),
            );
            h.header_u64("Content-Length", total);
            common(&mut h);
            h.finish();
            (206, pieces, mem, total)
        }
        RangePlan::Full | RangePlan::Partial(_) => {
            let mut h = Head::start(out, 200);
            h.header("Content-Type", &ctype);
            h.header_u64("Content-Length", len);
            common(&mut h);
            h.finish();
            (200, vec![Piece::File { start: 0, len }], Vec::new(), len)
        }
    };
    if conn.head_only || body_len == 0 {
        return Response {
            status,
            body: Body::InHead,
            body_len: 0,
            close: conn.close,
        };
    }
    Response {
        status,
        body: Body::File(FileBody {
            file,
            file_len: len,
            pieces,
            mem,
        }),
        body_len,
        close: conn.close,
    }
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
