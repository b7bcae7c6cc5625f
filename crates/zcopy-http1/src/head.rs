//! Formatting response heads into a reusable buffer, without per-request allocation.

use std::cell::RefCell;
use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

/// Length of an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`).
const DATE_LEN: usize = 29;

thread_local! {
    /// The Date value for the current second: (unix seconds, IMF-fixdate).
    static DATE: RefCell<(u64, [u8; DATE_LEN])> = const { RefCell::new((u64::MAX, [0; DATE_LEN])) };
}

/// Appends the current IMF-fixdate, formatted at most once per second per thread.
fn push_date(buf: &mut Vec<u8>) {
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    DATE.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.0 != secs {
            let mut out = [0u8; DATE_LEN];
            let mut cursor = &mut out[..];
            // HttpDate's Display always writes exactly 29 bytes.
            if write!(cursor, "{}", httpdate::HttpDate::from(now)).is_ok() && cursor.is_empty() {
                *cached = (secs, out);
            }
        }
        buf.extend_from_slice(&cached.1);
    });
}

/// Appends the decimal digits of `v` without allocating.
fn push_u64(buf: &mut Vec<u8>, mut v: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    buf.extend_from_slice(&digits[i..]);
}

/// Appends `s`, dropping CR, LF and NUL so that no value can split the head.
fn push_field_text(buf: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    if bytes.iter().any(|&b| matches!(b, b'\r' | b'\n' | 0)) {
        buf.extend(bytes.iter().filter(|&&b| !matches!(b, b'\r' | b'\n' | 0)));
    } else {
        buf.extend_from_slice(bytes);
    }
}

/// Builds one response head.
#[derive(Debug)]
pub struct Head<'a> {
    buf: &'a mut Vec<u8>,
}

impl<'a> Head<'a> {
    /// Starts a head in `buf` (cleared first) with the status line, Date and Server.
    pub fn start(buf: &'a mut Vec<u8>, status: u16) -> Head<'a> {
        buf.clear();
        buf.extend_from_slice(b"HTTP/1.1 ");
        push_u64(buf, u64::from(status));
        buf.push(b' ');
        buf.extend_from_slice(reason(status).as_bytes());
        buf.extend_from_slice(b"\r\nDate: ");
        push_date(buf);
        buf.extend_from_slice(b"\r\nServer: zcopy\r\n");
        Head { buf }
    }

    /// Appends one header field.
    pub fn header(&mut self, name: &str, value: &str) -> &mut Self {
        push_field_text(self.buf, name);
        self.buf.extend_from_slice(b": ");
        push_field_text(self.buf, value);
        self.buf.extend_from_slice(b"\r\n");
        self
    }

    /// Appends a numeric header field (e.g. Content-Length).
    pub fn header_u64(&mut self, name: &str, value: u64) -> &mut Self {
        push_field_text(self.buf, name);
        self.buf.extend_from_slice(b": ");
        push_u64(self.buf, value);
        self.buf.extend_from_slice(b"\r\n");
        self
    }

    /// Ends the head (blank line); returns its length.
    pub fn finish(self) -> usize {
        self.buf.extend_from_slice(b"\r\n");
        self.buf.len()
    }
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

    #[test]
    fn full_head() {
        let mut buf = b"old junk".to_vec();
        let mut h = Head::start(&mut buf, 206);
        h.header("Content-Type", "text/plain")
            .header_u64("Content-Length", 0)
            .header_u64("X-Max", u64::MAX)
            .header_u64("X-Ten", 10);
        let n = h.finish();
        assert_eq!(n, buf.len());
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
    fn reuse_keeps_capacity() {
        let mut buf = Vec::with_capacity(512);
        Head::start(&mut buf, 200).finish();
        let ptr = buf.as_ptr();
        let mut h = Head::start(&mut buf, 404);
        h.header("A", "b");
        h.finish();
        assert_eq!(buf.as_ptr(), ptr);
        assert!(text(&buf).starts_with("HTTP/1.1 404 Not Found\r\nDate: "));
    }

    #[test]
    fn injection_is_neutralised() {
        let mut buf = Vec::new();
        let mut h = Head::start(&mut buf, 301);
        h.header("Location", "/a\r\nSet-Cookie: x=1\0");
        h.finish();
        let s = text(&buf);
        assert!(s.contains("Location: /aSet-Cookie: x=1\r\n"));
        assert_eq!(s.matches("\r\n").count(), 5);
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
