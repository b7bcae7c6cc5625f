//! Building a response head ([`Head`], into the protocol-neutral [`Out`]) and
//! writing one as HTTP/1.1 bytes ([`write_http1`]), without per-request allocation.

use std::cell::RefCell;
use std::io::Write as _;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use crate::fields::{FieldBlock, FieldName, Name, Out, ResponseHead};
use crate::fields::{push_u64, write_fields_http1};

/// Length of an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`).
const DATE_LEN: usize = 29;

/// A formatted Date: the second it is good for (start, end), and the IMF-fixdate.
type CachedDate = (Option<(SystemTime, SystemTime)>, [u8; DATE_LEN]);

thread_local! {
    /// The Date value for the current second.
    static DATE: RefCell<CachedDate> = const { RefCell::new((None, [0; DATE_LEN])) };
}

/// Builds one response head into an [`Out`] (protocol-neutral: status and fields).
#[derive(Debug)]
pub struct Head<'a> {
    head: &'a mut ResponseHead,
}

impl<'a> Head<'a> {
    /// Starts a response in `out` (head and body cleared first) with `status`.
    pub fn start(out: &'a mut Out, status: u16) -> Head<'a> {
        out.body.clear();
        out.head.reset(status);
        Head {
            head: &mut out.head,
        }
    }

    /// Appends one header field (a [`Name`] when `name` is spelled as one).
    pub fn header(&mut self, name: &str, value: &str) -> &mut Self {
        self.head.push_named(name, value);
        self
    }

    /// Appends a numeric header field (e.g. Content-Length).
    pub fn header_u64(&mut self, name: &str, value: u64) -> &mut Self {
        self.head.push_named_u64(name, value);
        self
    }

    /// Appends a field with a known name.
    pub fn field(&mut self, name: Name, value: &str) -> &mut Self {
        self.head.push(name, value);
        self
    }

    /// Appends a numeric field with a known name.
    pub fn field_u64(&mut self, name: Name, value: u64) -> &mut Self {
        self.head.push_u64(name, value);
        self
    }

    /// Appends the fields of a kept block.
    pub fn block(&mut self, block: &std::sync::Arc<FieldBlock>) -> &mut Self {
        self.head.push_block(block);
        self
    }

    /// Ends the head.
    pub fn finish(self) {}
}

/// Appends `head` as an HTTP/1.1 head to `buf`: the status line, Date, Server,
/// the fields in order and the blank line.
pub fn write_http1(buf: &mut Vec<u8>, head: &ResponseHead) {
    with_date(|date| write_http1_dated(buf, head, date));
}

/// As [`write_http1`], with the Date value given (see [`DateCache`]).
pub fn write_http1_dated(buf: &mut Vec<u8>, head: &ResponseHead, date: &[u8]) {
    let status = head.status;
    // The commonest status lines whole, as one copy.
    let line: &[u8] = match status {
        200 => OK_DATE,
        206 => b"HTTP/1.1 206 Partial Content\r\nDate: ",
        304 => b"HTTP/1.1 304 Not Modified\r\nDate: ",
        404 => b"HTTP/1.1 404 Not Found\r\nDate: ",
        _ => b"",
    };
    if line.is_empty() {
        buf.extend_from_slice(b"HTTP/1.1 ");
        push_u64(buf, u64::from(status));
        buf.push(b' ');
        buf.extend_from_slice(reason(status).as_bytes());
        buf.extend_from_slice(b"\r\nDate: ");
    } else {
        buf.extend_from_slice(line);
    }
    buf.extend_from_slice(date);
    buf.extend_from_slice(SERVER);
    write_fields_http1(buf, head);
    buf.extend_from_slice(b"\r\n");
}

/// Appends `out` as HTTP/1.1 bytes to `buf`: its head, then its body.
pub fn write_http1_out(buf: &mut Vec<u8>, out: &Out) {
    with_date(|date| write_http1_out_dated(buf, out, date));
}

/// As [`write_http1_out`], with the Date value given (see [`DateCache`]).
pub fn write_http1_out_dated(buf: &mut Vec<u8>, out: &Out, date: &[u8]) {
    write_http1_dated(buf, &out.head, date);
    buf.extend_from_slice(&out.body);
}

/// As [`write_http1_out`], dated by `dates` at `now` (the loop's clock): a 200
/// head's first three lines are one copy of the cached ones.
pub fn write_http1_out_at(buf: &mut Vec<u8>, out: &Out, dates: &mut DateCache, now: Instant) {
    if out.head.status == 200 {
        buf.extend_from_slice(dates.ok_lines(now));
        write_fields_http1(buf, &out.head);
        buf.extend_from_slice(b"\r\n");
        // A file's body is not in `out` (an empty copy is still a call).
        if !out.body.is_empty() {
            buf.extend_from_slice(&out.body);
        }
    } else {
        write_http1_out_dated(buf, out, dates.at(now));
    }
}

/// The Date value of an event loop, by the loop's clock: a worker reads the time
/// once per turn ([`Instant`]), so a response need not read the wall clock again
/// (a `clock_gettime` and a thread-local per response, where this is one
/// comparison). The value is formatted at most once per second: it is good until
/// the monotonic instant at which the wall clock's second ends, as measured when
/// it was formatted.
///
/// It keeps the first lines of a 200 response's head written out with that value
/// (status line, Date and Server), so the commonest head starts with one copy.
#[derive(Debug)]
pub struct DateCache {
    until: Option<Instant>,
    /// [`OK_DATE`], the IMF-fixdate, [`SERVER`].
    lines: [u8; OK_LINES_LEN],
}

/// A 200 head's status line and the Date field's name.
const OK_DATE: &[u8] = b"HTTP/1.1 200 OK\r\nDate: ";
/// The end of the Date line, and the Server line.
const SERVER: &[u8] = b"\r\nServer: zcopy\r\n";
/// Length of a 200 head's first three lines.
const OK_LINES_LEN: usize = OK_DATE.len() + DATE_LEN + SERVER.len();

impl Default for DateCache {
    fn default() -> DateCache {
        let mut lines = [0; OK_LINES_LEN];
        lines[..OK_DATE.len()].copy_from_slice(OK_DATE);
        lines[OK_DATE.len() + DATE_LEN..].copy_from_slice(SERVER);
        DateCache { until: None, lines }
    }
}

impl DateCache {
    /// The IMF-fixdate for `now` (the caller's reading of the monotonic clock, at
    /// most a loop turn old): the cached one while `now` is before the end of its
    /// second, else the wall clock's now.
    #[inline]
    pub fn at(&mut self, now: Instant) -> &[u8] {
        &self.ok_lines(now)[OK_DATE.len()..OK_DATE.len() + DATE_LEN]
    }

    /// A 200 head's status line, Date (as [`DateCache::at`]) and Server lines.
    #[inline]
    fn ok_lines(&mut self, now: Instant) -> &[u8; OK_LINES_LEN] {
        if self.until.is_none_or(|until| now >= until) {
            self.refresh();
        }
        &self.lines
    }

    /// Formats the wall clock's now, good until its second ends.
    #[cold]
    fn refresh(&mut self) {
        let wall = SystemTime::now();
        let mono = Instant::now();
        let into_second = wall.duration_since(UNIX_EPOCH).map_or(Duration::ZERO, |d| {
            Duration::from_nanos(d.subsec_nanos().into())
        });
        let mut text = [0u8; DATE_LEN];
        let mut cursor = &mut text[..];
        // HttpDate's Display always writes exactly 29 bytes.
        if write!(cursor, "{}", httpdate::HttpDate::from(wall)).is_ok() && cursor.is_empty() {
            self.lines[OK_DATE.len()..OK_DATE.len() + DATE_LEN].copy_from_slice(&text);
            // The caller's `now` is never later than `mono`: it is before `until`.
            self.until = Some(mono + (Duration::from_secs(1) - into_second));
        }
    }
}

/// The current IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), formatted at most
/// once per second per thread: given to `f`.
pub fn with_date<R>(f: impl FnOnce(&[u8]) -> R) -> R {
    let now = SystemTime::now();
    DATE.with(|cell| {
        let mut cached = cell.borrow_mut();
        // Within the cached second: two comparisons, no arithmetic on the time.
        if !cached.0.is_some_and(|(from, to)| from <= now && now < to) {
            let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
            let from = UNIX_EPOCH + std::time::Duration::from_secs(secs);
            let mut out = [0u8; DATE_LEN];
            let mut cursor = &mut out[..];
            // HttpDate's Display always writes exactly 29 bytes.
            if write!(cursor, "{}", httpdate::HttpDate::from(now)).is_ok() && cursor.is_empty() {
                *cached = (Some((from, from + std::time::Duration::from_secs(1))), out);
            }
        }
        f(&cached.1)
    })
}

/// The reason phrase for a status code (RFC 9110 §15); `Unknown` for others.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        207 => "Multi-Status",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        423 => "Locked",
        424 => "Failed Dependency",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        507 => "Insufficient Storage",
        _ => "Unknown",
    }
}

/// The Content-Type for a file name (by extension; `; charset=utf-8` for text).
///
/// Unknown extensions are `application/octet-stream`. `text/*`,
/// `application/javascript` and `application/json` get `; charset=utf-8`.
pub fn content_type(name: &str) -> String {
    let mime = mime_guess::from_path(name)
        .first_raw()
        .unwrap_or("application/octet-stream");
    let needs_charset =
        mime.starts_with("text/") || mime == "application/javascript" || mime == "application/json";
    if needs_charset {
        format!("{mime}; charset=utf-8")
    } else {
        mime.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(buf: &[u8]) -> &str {
        std::str::from_utf8(buf).unwrap()
    }

    /// A Date value as the wall-clock time it names, checked to be within two
    /// seconds of now.
    fn near_now(date: &[u8]) -> SystemTime {
        let t = httpdate::parse_http_date(text(date)).unwrap();
        let now = SystemTime::now();
        let off = now.duration_since(t).unwrap_or_else(|e| e.duration());
        assert!(
            off < Duration::from_secs(2),
            "{} is {off:?} off",
            text(date)
        );
        t
    }

    #[test]
    fn a_loop_date_is_kept_until_its_second_ends() {
        let mut c = DateCache::default();
        let t = Instant::now();
        let first = c.at(t).to_vec();
        near_now(&first);
        let until = c.until.unwrap();
        assert!(until > t && until <= Instant::now() + Duration::from_secs(1));
        // The same turn (or any instant before the second ends): the same value,
        // not formatted again.
        assert_eq!(c.at(t), first);
        assert_eq!(c.until, Some(until));
        // Once the second is over: formatted again from the wall clock.
        let later = c.at(until + Duration::from_secs(5)).to_vec();
        near_now(&later);
        // Written where write_http1 writes its own.
        let mut out = Out::default();
        Head::start(&mut out, 200).finish();
        let mut buf = Vec::new();
        write_http1_out_dated(&mut buf, &out, &later);
        assert!(text(&buf).starts_with(&format!("HTTP/1.1 200 OK\r\nDate: {}\r\n", text(&later))));
    }

    #[test]
    fn heads_from_the_cached_lines_are_the_heads_written_line_by_line() {
        let block = std::sync::Arc::new(FieldBlock::new(&[
            (Name::ContentType, "text/plain"),
            (Name::ETag, "\"e\""),
        ]));
        let mut c = DateCache::default();
        let t = Instant::now();
        for status in [200, 404, 206, 500] {
            let mut out = Out::default();
            let mut h = Head::start(&mut out, status);
            h.block(&block).header_u64("Content-Length", 4);
            h.finish();
            out.body.extend_from_slice(b"body");
            let mut cached = b"before".to_vec();
            write_http1_out_at(&mut cached, &out, &mut c, t);
            let date = c.at(t).to_vec();
            near_now(&date);
            let mut by_line = b"before".to_vec();
            write_http1_out_dated(&mut by_line, &out, &date);
            assert_eq!(text(&cached), text(&by_line), "status {status}");
        }
    }

    /// `out` as HTTP/1.1 bytes.
    fn wire(out: &Out) -> Vec<u8> {
        let mut buf = b"old junk".to_vec();
        buf.clear();
        write_http1_out(&mut buf, out);
        buf
    }

    #[test]
    fn full_head() {
        let mut out = Out::default();
        out.body.extend_from_slice(b"old junk");
        let mut h = Head::start(&mut out, 206);
        h.header("Content-Type", "text/plain")
            .header_u64("Content-Length", 0)
            .header_u64("X-Max", u64::MAX)
            .header_u64("X-Ten", 10);
        h.finish();
        let buf = wire(&out);
        let s = text(&buf);
        let lines: Vec<&str> = s.split("\r\n").collect();
        assert_eq!(lines[0], "HTTP/1.1 206 Partial Content");
        let date = lines[1].strip_prefix("Date: ").expect("Date line");
        assert_eq!(date.len(), DATE_LEN);
        let parsed = httpdate::parse_http_date(date).expect("valid IMF-fixdate");
        let age = SystemTime::now().duration_since(parsed).unwrap();
        assert!(age.as_secs() < 5);
        assert_eq!(lines[2], "Server: zcopy");
        assert_eq!(lines[3], "Content-Type: text/plain");
        assert_eq!(lines[4], "Content-Length: 0");
        assert_eq!(lines[5], "X-Max: 18446744073709551615");
        assert_eq!(lines[6], "X-Ten: 10");
        assert_eq!(&lines[7..], ["", ""]);
        assert!(s.ends_with("\r\n\r\n"));
    }

    #[test]
    fn start_forgets_the_last_response() {
        let mut out = Out::default();
        let mut h = Head::start(&mut out, 200);
        h.header("X-A", "b")
            .header("content-type", "kept as spelled");
        h.finish();
        out.body.extend_from_slice(b"body");
        let s = wire(&out);
        assert!(text(&s).ends_with("X-A: b\r\ncontent-type: kept as spelled\r\n\r\nbody"));
        let mut h = Head::start(&mut out, 404);
        h.header("A", "b");
        h.finish();
        assert_eq!(out.head.len(), 1);
        let s = wire(&out);
        assert!(text(&s).starts_with("HTTP/1.1 404 Not Found\r\nDate: "));
        assert!(text(&s).ends_with("Server: zcopy\r\nA: b\r\n\r\n"));
    }

    #[test]
    fn injection_is_neutralised() {
        let mut out = Out::default();
        let mut h = Head::start(&mut out, 301);
        h.header("Location", "/a\r\nSet-Cookie: x=1\0");
        h.header("X-\r\nEvil", "1");
        h.finish();
        let buf = wire(&out);
        let s = text(&buf);
        assert!(s.contains("Location: /aSet-Cookie: x=1\r\n"));
        assert!(s.contains("X-Evil: 1\r\n"));
        assert_eq!(s.matches("\r\n").count(), 6);
    }

    #[test]
    fn a_kept_block_reads_and_writes_as_its_fields_in_place() {
        let parts = [
            (Name::ContentType, "text/plain"),
            (Name::ContentLength, "1024"),
            (Name::ETag, "\"a\r\nb\""),
        ];
        let block = std::sync::Arc::new(FieldBlock::new(&parts));
        for at in 0..3 {
            let (mut one, mut kept) = (Out::default(), Out::default());
            let mut h = Head::start(&mut one, 200);
            let mut k = Head::start(&mut kept, 200);
            for i in 0..3 {
                if i == at {
                    for (n, v) in parts {
                        h.field(n, v);
                    }
                    k.block(&block);
                }
                h.field(Name::Vary, "x");
                k.field(Name::Vary, "x");
            }
            assert_eq!(wire(&one), wire(&kept), "{at}");
            assert!(one.head.fields().eq(kept.head.fields()));
            assert_eq!(one.head.len(), kept.head.len());
            assert_eq!(kept.head.get(Name::ContentLength), Some(&b"1024"[..]));
        }
        let mut out = Out::default();
        Head::start(&mut out, 200).block(&block).block(&block);
        let twice = wire(&out);
        assert!(text(&twice).ends_with("ETag: \"ab\"\r\nContent-Type: text/plain\r\nContent-Length: 1024\r\nETag: \"ab\"\r\n\r\n"));
        Head::start(&mut out, 200);
        assert!(out.head.is_empty());
    }

    #[test]
    fn whole_status_lines_match_the_reasons() {
        for code in [200, 206, 304, 404, 201, 416, 999] {
            let mut out = Out::default();
            Head::start(&mut out, code).finish();
            let buf = wire(&out);
            let want = format!("HTTP/1.1 {code} {}\r\nDate: ", reason(code));
            assert!(text(&buf).starts_with(&want), "{code}");
        }
    }

    #[test]
    fn reasons_cover_our_codes() {
        for code in [
            200, 204, 206, 301, 304, 400, 401, 403, 404, 405, 408, 412, 413, 414, 416, 431, 500,
            501, 503, 505,
        ] {
            assert_ne!(reason(code), "Unknown", "{code}");
        }
        assert_eq!(reason(416), "Range Not Satisfiable");
        assert_eq!(reason(999), "Unknown");
    }

    #[test]
    fn u64_formatting() {
        for v in [
            0,
            1,
            9,
            10,
            99,
            100,
            12345,
            101,
            999,
            1000,
            1024,
            65536,
            u64::from(u32::MAX),
            u64::MAX - 1,
            u64::MAX,
        ] {
            let mut b = Vec::new();
            push_u64(&mut b, v);
            assert_eq!(text(&b), v.to_string());
        }
    }

    #[test]
    fn content_types() {
        let cases = [
            ("index.html", "text/html; charset=utf-8"),
            ("a.HTM", "text/html; charset=utf-8"),
            ("notes.txt", "text/plain; charset=utf-8"),
            ("style.css", "text/css; charset=utf-8"),
            ("app.js", "text/javascript; charset=utf-8"),
            ("mod.mjs", "application/javascript; charset=utf-8"),
            ("data.json", "application/json; charset=utf-8"),
            ("pic.png", "image/png"),
            ("pic.svg", "image/svg+xml"),
            ("archive.tar.gz", "application/gzip"),
            ("blob", "application/octet-stream"),
            ("weird.zzzunknown", "application/octet-stream"),
            (".hidden", "application/octet-stream"),
        ];
        for (name, want) in cases {
            assert_eq!(content_type(name), want, "{name}");
        }
    }
}
