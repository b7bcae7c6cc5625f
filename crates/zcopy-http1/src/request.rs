//! Parsing a request head (RFC 9112), strictly: anything ambiguous is a 400.

/// Size limits for a request head.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Longest request line (→ 414).
    pub max_request_line: usize,
    /// Largest header section, request line included (→ 431).
    pub max_header_bytes: usize,
    /// Most header fields (→ 431).
    pub max_headers: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_request_line: 8 * 1024,
            max_header_bytes: 16 * 1024,
            max_headers: 100,
        }
    }
}

/// What a listener speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ListenKind {
    /// Plain HTTP.
    #[default]
    Http,
    /// HTTPS.
    Https,
    /// Plain HTTP answering every request with a 308 to https.
    Redirect,
}

/// A request that can't be served, with the status to answer and close.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{status} {reason}")]
pub struct HttpError {
    /// The status code (400, 405, 408, 413, 414, 431, 501, 505 ...).
    pub status: u16,
    /// A short human reason, sent in the body.
    pub reason: &'static str,
}

/// Request methods we answer (others get 405 or 501 at the parse stage).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// GET
    Get,
    /// HEAD
    Head,
    /// A known method we don't allow (→ 405 with `Allow: GET, HEAD`).
    Other,
}

/// HTTP version of the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// HTTP/1.0
    Http10,
    /// HTTP/1.1
    Http11,
}

/// How the body of a request is framed (RFC 9112 §6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body.
    None,
    /// `Content-Length: n`: n bytes to read and discard before the next request.
    Length(u64),
    /// `Transfer-Encoding: chunked`: a body of unknown length. The connection is
    /// answered and then closed; no further request is read from it.
    Chunked,
}

/// A parsed request head, borrowing from the read buffer (no allocation), with the
/// header fields the server uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request<'a> {
    /// Method.
    pub method: Method,
    /// The raw request target (origin-form, still percent-encoded; `*` only for
    /// `OPTIONS *`). Borrowed from the head, except for an absolute-form target with
    /// an empty path before its query (`http://h?q` becomes `/?q`).
    pub target: std::borrow::Cow<'a, str>,
    /// Version.
    pub version: Version,
    /// Whether the connection stays open after the response.
    pub keep_alive: bool,
    /// How the request body is framed.
    pub body: BodyFraming,
    /// Bytes of a Content-Length body to read and discard: `n` for
    /// [`BodyFraming::Length`], 0 otherwise.
    pub body_len: u64,
    /// `Expect: 100-continue` was sent: the client may wait for a 100 before it
    /// sends the body, or never send it once it sees a final status.
    pub expect_continue: bool,
    /// Host header value.
    pub host: Option<&'a str>,
    /// Range header value.
    pub range: Option<&'a str>,
    /// Content-Range header value (a part of a resumable PUT).
    pub content_range: Option<&'a str>,
    /// If-Range header value.
    pub if_range: Option<&'a str>,
    /// If-None-Match header value.
    pub if_none_match: Option<&'a str>,
    /// If-Match header value.
    pub if_match: Option<&'a str>,
    /// If-Modified-Since header value.
    pub if_modified_since: Option<&'a str>,
    /// If-Unmodified-Since header value.
    pub if_unmodified_since: Option<&'a str>,
    /// User-Agent (for the access log).
    pub user_agent: Option<&'a str>,
    /// Referer (for the access log).
    pub referer: Option<&'a str>,
    /// The method token as sent (`GET`, `OPTIONS`, ...).
    pub method_name: &'a str,
    /// Accept header value (the last one sent).
    pub accept: Option<&'a str>,
    /// Accept-Encoding header value (a repeated field reads as empty: identity only).
    pub accept_encoding: Option<&'a str>,
    /// Authorization header value.
    pub authorization: Option<&'a str>,
    /// Origin header value (CORS).
    pub origin: Option<&'a str>,
    /// Access-Control-Request-Method (a CORS preflight).
    pub ac_request_method: Option<&'a str>,
    /// Access-Control-Request-Headers (a CORS preflight).
    pub ac_request_headers: Option<&'a str>,
    /// What the listener it came in on speaks (set by the connection core).
    pub via: ListenKind,
    /// The peer is on this host's loopback path (a loopback address, or one of this
    /// host's own addresses): set by the connection core from the peer's route, so
    /// the site may choose what measured best there (the snapshot band).
    pub loopback_peer: bool,
    /// WebDAV (RFC 4918 §10) header fields: Depth, Destination, Overwrite, If,
    /// Lock-Token, Timeout (each the last one sent).
    pub dav: DavFields<'a>,
}

/// The WebDAV header fields of a request (RFC 4918 §10), raw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DavFields<'a> {
    /// Depth.
    pub depth: Option<&'a str>,
    /// Destination.
    pub destination: Option<&'a str>,
    /// Overwrite.
    pub overwrite: Option<&'a str>,
    /// If.
    pub if_: Option<&'a str>,
    /// Lock-Token.
    pub lock_token: Option<&'a str>,
    /// Timeout.
    pub timeout: Option<&'a str>,
}

impl<'a> Request<'a> {
    /// A request with no header fields: keep-alive for HTTP/1.1, no body, received on
    /// a plain HTTP listener. The parser fills in the fields it finds.
    /// What the parser fills in: [`Request::new`] for `GET` of nothing, HTTP/1.1.
    pub(crate) fn blank() -> Self {
        Request::new(Method::Get, "", "", Version::Http11)
    }

    pub fn new(method: Method, method_name: &'a str, target: &'a str, version: Version) -> Self {
        Request {
            method,
            target: std::borrow::Cow::Borrowed(target),
            version,
            keep_alive: version == Version::Http11,
            body: BodyFraming::None,
            body_len: 0,
            expect_continue: false,
            host: None,
            range: None,
            content_range: None,
            if_range: None,
            if_none_match: None,
            if_match: None,
            if_modified_since: None,
            if_unmodified_since: None,
            user_agent: None,
            referer: None,
            method_name,
            accept: None,
            accept_encoding: None,
            authorization: None,
            origin: None,
            ac_request_method: None,
            ac_request_headers: None,
            via: ListenKind::Http,
            loopback_peer: false,
            dav: DavFields::default(),
        }
    }
}

/// Outcome of feeding bytes to the parser.
#[derive(Debug, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // returned once per request, never stored
pub enum Parsed<'a> {
    /// A whole head: the request and how many bytes of the buffer it used.
    Complete(Request<'a>, usize),
    /// More bytes needed (the limits are not exceeded yet).
    Partial,
}

/// OWS characters (RFC 9110 §5.6.3).
fn is_ows(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

const fn err(status: u16, reason: &'static str) -> HttpError {
    HttpError { status, reason }
}

const BAD_LINE_END: HttpError = err(400, "line endings must be CRLF");
const NUL_BYTE: HttpError = err(400, "NUL byte in request head");
const URI_TOO_LONG: HttpError = err(414, "request line too long");
const HEAD_TOO_LARGE: HttpError = err(431, "request header section too large");
const TOO_MANY_HEADERS: HttpError = err(431, "too many header fields");

/// Finds the end of the line that starts at `from`: `Ok(Some((content_end, next_start)))`
/// for a CRLF-terminated line, `Ok(None)` when the buffer ends first (the returned
/// position is where the line content ends so far). NUL, bare CR and bare LF are errors.
#[inline(always)]
fn next_line(buf: &[u8], from: usize) -> Result<Result<(usize, usize), usize>, HttpError> {
    match find_cr_lf_nul(&buf[from..]) {
        None => Ok(Err(buf.len())),
        Some(i) => {
            let at = from + i;
            match buf[at] {
                0 => Err(NUL_BYTE),
                b'\n' => Err(BAD_LINE_END),
                _ => match buf.get(at + 1) {
                    None => Ok(Err(at)),
                    Some(b'\n') => Ok(Ok((at, at + 2))),
                    Some(_) => Err(BAD_LINE_END),
                },
            }
        }
    }
}

/// A word of eight bytes 0x01, for the scans eight bytes at a time.
const ONES: u64 = u64::from_le_bytes([0x01; 8]);
/// A word of eight bytes 0x80 (each byte's high bit).
const HIGH: u64 = u64::from_le_bytes([0x80; 8]);

/// Where the first CR, LF or NUL of `s` is: eight bytes at a time (a word has a
/// zero byte where `(x - 0x01..) & !x & 0x80..` has a bit set; the lowest set bit
/// is always a true one, so read little-endian it is the first such byte), the
/// rest one by one.
fn find_cr_lf_nul(s: &[u8]) -> Option<usize> {
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let mut words = s.chunks_exact(8);
    let mut at = 0;
    for w in &mut words {
        let x = u64::from_le_bytes(w.try_into().expect("8 bytes"));
        let hit =
            zero(x) | zero(x ^ (ONES * u64::from(b'\r'))) | zero(x ^ (ONES * u64::from(b'\n')));
        if hit != 0 {
            return Some(at + (hit.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    words
        .remainder()
        .iter()
        .position(|&b| b == b'\r' || b == b'\n' || b == 0)
        .map(|i| at + i)
}

/// Checks the version token of a request line: `HTTP/1.0` and `HTTP/1.1` pass, a
/// higher 1.x is processed as 1.1 (RFC 9110 §2.5), other well-formed `HTTP/d.d`
/// versions are 505, anything else 400.
fn check_version(line: &[u8]) -> Result<Version, HttpError> {
    // The common line first (its last space is the one before the version).
    if line.ends_with(b" HTTP/1.1") {
        return Ok(Version::Http11);
    }
    let version = match line.iter().rposition(|&b| b == b' ') {
        Some(sp) => &line[sp + 1..],
        None => return Err(err(400, "malformed request line")),
    };
    match version {
        b"HTTP/1.1" => Ok(Version::Http11),
        b"HTTP/1.0" => Ok(Version::Http10),
        [b'H', b'T', b'T', b'P', b'/', b'1', b'.', minor] if (b'2'..=b'9').contains(minor) => {
            Ok(Version::Http11)
        }
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            Err(err(505, "HTTP version not supported"))
        }
        _ => Err(err(400, "malformed HTTP version")),
    }
}

/// Where the head ends, after checking framing byte by byte.
struct Scan {
    /// Offset of the request line (after ignored leading empty lines).
    start: usize,
    /// Offset of the CRLF ending the request line.
    line_end: usize,
    /// Offset just past the blank line ending the head.
    end: usize,
    /// Number of header field lines.
    fields: usize,
    /// Version from the request line.
    version: Version,
    /// One of the first [`STACK_HEADERS`] field lines failed [`field_line_at`].
    bad_field: bool,
}

/// Walks the raw head: CRLF only, no NUL, no obs-fold, no whitespace before a colon,
/// within the limits. `Ok(None)` means more bytes are needed.
///
/// The first [`STACK_HEADERS`] field lines are split and their values checked
/// ([`field_line_at`]) into `first` on the way, so they are walked once; a line that fails the check is
/// noted ([`Scan::bad_field`]) and reported only after the whole head has passed the
/// framing checks, as when the check was a second walk.
fn scan<'a>(
    buf: &'a [u8],
    limits: &Limits,
    first: &mut [Option<Field<'a>>; STACK_HEADERS],
) -> Result<Option<Scan>, HttpError> {
    // RFC 9112 §2.2: ignore empty lines before the request line.
    let mut start = 0;
    while buf[start..].starts_with(b"\r\n") {
        start += 2;
        if start > limits.max_header_bytes {
            return Err(HEAD_TOO_LARGE);
        }
    }
    let partial_size_check = |pos: usize| -> Result<Option<Scan>, HttpError> {
        if pos > limits.max_header_bytes {
            Err(HEAD_TOO_LARGE)
        } else {
            Ok(None)
        }
    };

    // Request line.
    let (line_end, mut pos) = match next_line(buf, start)? {
        Ok(found) => found,
        Err(so_far) => {
            if so_far - start > limits.max_request_line {
                return Err(URI_TOO_LONG);
            }
            return partial_size_check(buf.len());
        }
    };
    if line_end - start > limits.max_request_line {
        return Err(URI_TOO_LONG);
    }
    let version = check_version(&buf[start..line_end])?;

    // Header field lines, up to the blank line.
    let mut fields = 0;
    let mut bad_field = false;
    loop {
        if pos > limits.max_header_bytes {
            return Err(HEAD_TOO_LARGE);
        }
        if let Some(&first) = buf.get(pos)
            && is_ows(first)
        {
            return Err(err(400, "obsolete line folding"));
        }
        let (content_end, next) = match next_line(buf, pos)? {
            Ok(found) => found,
            Err(_) => return partial_size_check(buf.len()),
        };
        if content_end == pos {
            if next > limits.max_header_bytes {
                return Err(HEAD_TOO_LARGE);
            }
            return Ok(Some(Scan {
                start,
                line_end,
                end: next,
                fields,
                version,
                bad_field,
            }));
        }
        let line = &buf[pos..content_end];
        let colon = match line.iter().position(|&b| b == b':') {
            None | Some(0) => return Err(err(400, "malformed header field")),
            Some(colon) if is_ows(line[colon - 1]) => {
                return Err(err(400, "whitespace before colon"));
            }
            Some(colon) => colon,
        };
        if let Some(slot) = first.get_mut(fields) {
            match field_line_at(line, colon) {
                Some(f) => *slot = Some(f),
                None => bad_field = true,
            }
        }
        fields += 1;
        if fields > limits.max_headers {
            return Err(TOO_MANY_HEADERS);
        }
        pos = next;
    }
}

/// Whether the comma-separated token list `value` contains `token` (case-insensitive).
fn has_token(value: &str, token: &str) -> bool {
    value.split(',').any(|t| {
        t.trim_matches(|c| c == ' ' || c == '\t')
            .eq_ignore_ascii_case(token)
    })
}

/// Parses a Content-Length value: 1*DIGIT, no sign, no overflow.
fn parse_content_length(value: &[u8]) -> Result<u64, HttpError> {
    const BAD: HttpError = err(400, "invalid Content-Length");
    if value.is_empty() {
        return Err(BAD);
    }
    value.iter().try_fold(0u64, |acc, &b| {
        if !b.is_ascii_digit() {
            return Err(BAD);
        }
        acc.checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(b - b'0')))
            .ok_or(BAD)
    })
}

/// Trims optional whitespace around a field value.
fn trim_ows(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|&b| !is_ows(b)).unwrap_or(v.len());
    let end = v.iter().rposition(|&b| !is_ows(b)).map_or(start, |e| e + 1);
    &v[start..end]
}

/// Sets a singleton field, rejecting a second occurrence.
fn set_once<'a>(
    slot: &mut Option<&'a str>,
    text: &Text<'a>,
    value: &'a [u8],
    dup: &'static str,
) -> Result<(), HttpError> {
    if slot.is_some() {
        return Err(err(400, dup));
    }
    *slot = Some(text.of(value).ok_or(err(400, "non-UTF-8 header value"))?);
    Ok(())
}

/// Parts of a request head as text. The head is checked as UTF-8 once (it nearly
/// always is): a part cut at ASCII delimiters (space, colon, OWS, CRLF) then starts
/// and ends on char boundaries and is sliced from it with no check of its own. A
/// head that is not UTF-8 as a whole has each part checked alone, as before.
struct Text<'a> {
    buf: &'a [u8],
    /// The head as text, perhaps with bytes after it (see [`Text::new`]).
    whole: Option<&'a str>,
}

/// std's UTF-8 check takes ASCII 16 bytes at a time (from an aligned start) and
/// the last bytes short of a block one by one, at ~5 instructions each.
const UTF8_BLOCK: usize = 16;

impl<'a> Text<'a> {
    /// The head `buf`, at the start of `around`, whose bytes after the head mean
    /// nothing: the check runs over the head's bytes rounded up to whole blocks
    /// ([`UTF8_BLOCK`]) where `around` has them, so no byte of the head is checked
    /// one by one (the check of a 47-byte head was ~127 instructions). A head is
    /// UTF-8 when that longer run is (its last byte, LF, ends a char, so it ends
    /// on a char boundary of the run); when the run is not, because of the bytes
    /// after the head, the head alone is checked.
    fn new(buf: &'a [u8], around: &'a [u8]) -> Text<'a> {
        debug_assert!(std::ptr::eq(buf.as_ptr(), around.as_ptr()) && around.len() >= buf.len());
        let blocks = buf.len().next_multiple_of(UTF8_BLOCK).min(around.len());
        let whole = match std::str::from_utf8(&around[..blocks]) {
            Ok(run) => Some(run),
            Err(e) if e.valid_up_to() >= buf.len() && blocks > buf.len() => {
                std::str::from_utf8(buf).ok()
            }
            Err(_) => None,
        };
        Text { buf, whole }
    }

    /// `part` (a sub-slice of the head) as text, if it is UTF-8.
    fn of(&self, part: &'a [u8]) -> Option<&'a str> {
        if let Some(whole) = self.whole {
            let at = (part.as_ptr() as usize).wrapping_sub(self.buf.as_ptr() as usize);
            if let Some(t) = at
                .checked_add(part.len())
                .and_then(|end| whole.get(at..end))
            {
                return Some(t);
            }
        }
        std::str::from_utf8(part).ok()
    }
}

/// Accepts a Transfer-Encoding value only when it is exactly one `chunked` coding.
/// A list whose last coding is not `chunked` can't be framed (400, RFC 9112 §6.3),
/// nor can `chunked` twice; a well-formed list ending in `chunked` whose other
/// codings we don't implement (`gzip, chunked`) is 501 (§6.1).
fn check_transfer_encoding(value: &[u8]) -> Result<(), HttpError> {
    let v = std::str::from_utf8(value).map_err(|_| err(400, "invalid Transfer-Encoding"))?;
    let codings: Vec<&str> = v
        .split(',')
        .map(|t| t.trim_matches(|c| c == ' ' || c == '\t'))
        .filter(|t| !t.is_empty())
        .collect();
    let tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    let chunked = |c: &&str| c.eq_ignore_ascii_case("chunked");
    match codings.as_slice() {
        [] => Err(err(400, "empty Transfer-Encoding")),
        [c] if chunked(c) => Ok(()),
        [earlier @ .., last] if chunked(last) => {
            if earlier.iter().any(chunked) {
                Err(err(400, "chunked applied more than once"))
            } else if earlier.iter().all(|c| c.bytes().all(tchar)) {
                Err(err(501, "transfer coding not implemented"))
            } else {
                Err(err(400, "malformed transfer coding"))
            }
        }
        _ => Err(err(400, "chunked is not the final transfer coding")),
    }
}

/// The last Host value a worker found valid: its requests mostly name one host, and
/// one found again is valid without a second look (a compare of its bytes, where
/// `valid_host` took ~120 instructions for `127.0.0.1:8080`). Only a valid value
/// is kept, so a match says valid and nothing else changes.
#[derive(Debug, Default)]
pub struct KnownHost(String);

/// Longest Host value [`KnownHost`] keeps.
const KNOWN_HOST_MAX: usize = 255;

impl KnownHost {
    /// Whether `host` is a valid Host value ([`valid_host`]), remembering it if so.
    #[inline]
    fn valid(&mut self, host: &str) -> bool {
        // An empty value is never kept (the memo starts empty and is never valid).
        if !host.is_empty()
            && host.len() == self.0.len()
            && same(host.as_bytes(), self.0.as_bytes())
        {
            return true;
        }
        self.learn(host)
    }

    /// [`KnownHost::valid`] for a value it does not hold: out of line, so the
    /// compare above saves and restores no registers for the whole check.
    #[cold]
    #[inline(never)]
    fn learn(&mut self, host: &str) -> bool {
        let ok = valid_host(host);
        if ok && host.len() <= KNOWN_HOST_MAX {
            self.0.clear();
            self.0.push_str(host);
        }
        ok
    }
}

/// Whether `a` and `b`, of the same length (the caller compared them), hold the
/// same bytes: up to 32 bytes by two loads of each that overlap (the first and the
/// last 4, 8 or 16 bytes), inline, where a slice compare calls `memcmp` (~18
/// instructions for 15 bytes, and the call).
#[inline]
fn same(a: &[u8], b: &[u8]) -> bool {
    debug_assert_eq!(a.len(), b.len());
    let n = a.len();
    macro_rules! ends {
        ($t:ty, $w:expr) => {{
            let w = |s: &[u8], at: usize| <$t>::from_ne_bytes(s[at..at + $w].try_into().unwrap());
            w(a, 0) == w(b, 0) && w(a, n - $w) == w(b, n - $w)
        }};
    }
    match n {
        0 => true,
        1..=3 => a[0] == b[0] && a[n / 2] == b[n / 2] && a[n - 1] == b[n - 1],
        4..=7 => ends!(u32, 4),
        8..=16 => ends!(u64, 8),
        17..=32 => ends!(u128, 16),
        _ => a == b,
    }
}

/// Whether `host` is a valid Host value (RFC 9110 §4.2.1: `uri-host [ ":" port ]`,
/// RFC 3986 §3.2.2): an IP-literal in brackets, or a non-empty reg-name / IPv4
/// address of unreserved characters, percent-escapes and sub-delims; the port is
/// digits only (possibly none).
fn valid_host(host: &str) -> bool {
    // The common host first: a reg-name or IPv4 address without escapes, then
    // perhaps `:port` (a name byte is never `:`, so that colon is the last one).
    let b = host.as_bytes();
    let name_len = b.iter().take_while(|&&c| REG_NAME[c as usize]).count();
    if name_len > 0
        && b.get(name_len)
            .is_none_or(|&c| c == b':' && b[name_len + 1..].iter().all(u8::is_ascii_digit))
    {
        return true;
    }
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        let Some(end) = rest.find(']') else {
            return false;
        };
        let literal = &rest[..end];
        let ok = literal.parse::<std::net::Ipv6Addr>().is_ok()
            || literal.strip_prefix(['v', 'V']).is_some_and(|f| {
                f.split_once('.').is_some_and(|(ver, rest)| {
                    !ver.is_empty()
                        && ver.bytes().all(|b| b.is_ascii_hexdigit())
                        && !rest.is_empty()
                        && rest
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:".contains(&b))
                })
            });
        if !ok {
            return false;
        }
        match &rest[end + 1..] {
            "" => return true,
            p => match p.strip_prefix(':') {
                Some(port) => ("x", port),
                None => return false,
            },
        }
    } else {
        // By byte (`:` is ASCII, so the cut is a char boundary).
        match host.bytes().rposition(|b| b == b':') {
            Some(i) => (&host[..i], &host[i + 1..]),
            None => (host, ""),
        }
    };
    if name.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let b = name.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'%' {
            if !(b.len() > i + 2 && b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit()) {
                return false;
            }
            i += 3;
            continue;
        }
        if !REG_NAME[c as usize] {
            return false;
        }
        i += 1;
    }
    true
}

/// A byte table: ASCII letters and digits, and the bytes of `extra`.
const fn alphanumeric_and(extra: &[u8]) -> [bool; 256] {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        t[c] = (c as u8).is_ascii_alphanumeric();
        c += 1;
    }
    let mut i = 0;
    while i < extra.len() {
        t[extra[i] as usize] = true;
        i += 1;
    }
    t
}

/// The bytes a reg-name holds besides percent-escapes (RFC 3986 §3.2.2: unreserved
/// and sub-delims), one lookup per byte.
const REG_NAME: [bool; 256] = alphanumeric_and(b"-._~!$&'()*+,;=");

/// Splits an absolute-form target (`http://host/path?q`) into authority and the
/// origin-form remainder. Only `http` and `https` schemes are accepted.
fn split_absolute(target: &str) -> Option<(&str, std::borrow::Cow<'_, str>)> {
    let colon = target.find("://")?;
    let scheme = &target[..colon];
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return None;
    }
    let rest = &target[colon + 3..];
    let slash = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(slash);
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    // An empty path is `/` (RFC 9112 §3.2.1), also before a query.
    match path.as_bytes().first() {
        None => Some((authority, "/".into())),
        Some(b'/') => Some((authority, path.into())),
        Some(_) => Some((authority, format!("/{path}").into())),
    }
}

/// Splits a request line (its version already checked) into method and target:
/// exactly three parts separated by single spaces, the method a token, the target
/// visible ASCII without `#`.
fn split_request_line<'a>(
    line: &'a [u8],
    text: &Text<'a>,
) -> Result<(Method, &'a str, &'a str), HttpError> {
    const BAD: HttpError = err(400, "malformed request line");
    // The common line first: a token, a space, target bytes (never a space), the
    // last space. Anything else takes the general way below, which tells which
    // error it is.
    // The last space of an HTTP/1.1 line (the scan checked its version) is
    // before the version, and GET and HEAD are tokens: neither is looked for byte
    // by byte (~5 and ~10 instructions a byte).
    let last = match line.ends_with(b" HTTP/1.1") {
        true => Some(line.len() - b" HTTP/1.1".len()),
        false => line.iter().rposition(|&b| b == b' '),
    };
    if let (Some(sp), Some(last)) = (line.iter().position(|&b| b == b' '), last)
        && sp > 0
        && last > sp + 1
        && line[sp + 1..last].iter().all(|&b| TARGET_BYTE[b as usize])
        && let Some(target) = text.of(&line[sp + 1..last])
    {
        let (kind, name) = match &line[..sp] {
            b"GET" => (Method::Get, Some("GET")),
            b"HEAD" => (Method::Head, Some("HEAD")),
            m if is_token(m) => (Method::Other, text.of(m)),
            _ => (Method::Other, None),
        };
        if let Some(name) = name {
            return Ok((kind, name, target));
        }
    }
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(_version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(BAD);
    };
    if method.is_empty() || !method.iter().all(|&b| TOKEN[b as usize]) || target.is_empty() {
        return Err(BAD);
    }
    // One lookup per byte; on a miss, the checks below say which error it is.
    if !target.iter().all(|&b| TARGET_BYTE[b as usize]) {
        if !target.is_ascii() {
            return Err(err(400, "non-ASCII request target"));
        }
        if !target.iter().all(u8::is_ascii_graphic) {
            return Err(BAD);
        }
        return Err(err(400, "fragment in request target"));
    }
    let kind = match method {
        b"GET" => Method::Get,
        b"HEAD" => Method::Head,
        _ => Method::Other,
    };
    // Both checked ASCII above.
    let name = text.of(method).ok_or(BAD)?;
    let target = text.of(target).ok_or(BAD)?;
    Ok((kind, name, target))
}

/// A field line that is not `name: value` (a token, a field value).
const MALFORMED_FIELD: HttpError = err(400, "malformed header field");

/// A header field: its name and its value without surrounding OWS.
type Field<'a> = (&'a [u8], &'a [u8]);

/// Field lines split by the scan itself, on the stack (more go to the heap, walked
/// a second time).
const STACK_HEADERS: usize = 16;

/// One field line (without its CRLF) as name and value: `None` unless the name is a
/// token and the value is HTAB, SP, VCHAR and obs-text only.
fn field_line(line: &[u8]) -> Option<Field<'_>> {
    field_line_at(line, line.iter().position(|&b| b == b':')?).filter(|&(name, _)| is_token(name))
}

/// As [`field_line`], with the line's first colon known and the name's bytes not
/// checked: the parser checks only the names it does not know (a name it knows
/// is a token), and all of them before it reports another error ([`parse_into`]).
/// Checking every name byte by byte here was ~10 instructions a byte.
fn field_line_at(line: &[u8], colon: usize) -> Option<Field<'_>> {
    let (name, value) = (&line[..colon], &line[colon + 1..]);
    (!name.is_empty() && field_value(value)).then(|| (name, trim_ows(value)))
}

/// Whether `v` holds field-value bytes only ([`FIELD_VALUE`]): eight at a time
/// (no byte below 0x20, none 0x7f: `(x - n..) & !x & 0x80..` is non-zero iff some
/// byte is below `n`), a word with a byte below 0x20 (a tab, or a bad one) and
/// the last bytes one by one.
fn field_value(v: &[u8]) -> bool {
    let below = |x: u64, n: u8| x.wrapping_sub(ONES * u64::from(n)) & !x & HIGH;
    let mut words = v.chunks_exact(8);
    for w in &mut words {
        let x = u64::from_le_bytes(w.try_into().expect("8 bytes"));
        if below(x ^ (ONES * 0x7f), 1) != 0
            || (below(x, 0x20) != 0 && !w.iter().all(|&b| FIELD_VALUE[b as usize]))
        {
            return false;
        }
    }
    words.remainder().iter().all(|&b| FIELD_VALUE[b as usize])
}

/// Token bytes (RFC 9110 §5.6.2: `tchar`), the bytes of a method or a field name.
const TOKEN: [bool; 256] = alphanumeric_and(b"!#$%&'*+-.^_`|~");

/// The bytes of a field value (RFC 9110 §5.5): HTAB, SP, VCHAR, obs-text.
const FIELD_VALUE: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        t[c] = c == 0x09 || (c >= 0x20 && c != 0x7f);
        c += 1;
    }
    t
};

/// The bytes a request target may hold: visible ASCII but `#`.
const TARGET_BYTE: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = b.is_ascii_graphic() && b != b'#';
        c += 1;
    }
    t
};

/// Parses the head at the start of `buf`.
///
/// Strict by design (RFC 9112 §2.2, §3, §5, §6): lines must end in CRLF (bare CR or
/// LF → 400), NUL bytes, obs-fold and whitespace before a colon are 400; a request
/// line longer than `max_request_line` is 414 and a header section over
/// `max_header_bytes` or `max_headers` is 431, reported as soon as the buffer proves
/// it even if the head is incomplete. HTTP/1.2 to 1.9 are processed as 1.1; other
/// versions than 1.x are 505. Content-Length with Transfer-Encoding, repeated (even
/// equal) or malformed Content-Length, a missing (HTTP/1.1) or repeated Host, and
/// repeated singleton fields that we use (Range, If-Range, If-Match, If-None-Match,
/// If-Modified-Since, If-Unmodified-Since) are 400. Transfer-Encoding other than
/// exactly one `chunked` coding (in one field) is refused (§6.1, §6.3): 400 when it
/// can't be framed (`chunked` not last, or twice), 501 for codings before `chunked`
/// (none is implemented). A Host (field or absolute-form authority) that is not
/// `uri-host [":" port]` is 400 (§3.2, RFC 9110 §4.2.1), an empty one included.
///
/// The target must be origin-form (`/…`); absolute-form `http(s)://authority/path`
/// is accepted (§3.2.2) by taking its path (an empty path is `/`, also before a
/// query), and then `host` is the URI's authority. `*` (asterisk-form) is accepted
/// for `OPTIONS` only; authority-form and a `#` anywhere in the target are 400.
/// Leading empty lines are ignored.
pub fn parse<'a>(buf: &'a [u8], limits: &Limits) -> Result<Parsed<'a>, HttpError> {
    let mut req = Request::blank();
    Ok(
        match parse_into(buf, buf.len(), limits, &mut KnownHost::default(), &mut req)? {
            Some(used) => Parsed::Complete(req, used),
            None => Parsed::Partial,
        },
    )
}

/// [`parse`] of `buf[..len]` into `req`, a fresh [`Request::blank`] (the parser
/// sets the fields it finds and leaves the others as they are: a reused request
/// would keep the last one's fields): `Ok(Some(used))` for a whole head,
/// `Ok(None)` when more bytes are needed. The connection core parses into a
/// request on its own stack, so the request (~500 bytes) is not copied out of the
/// parser's result on every request.
///
/// `buf[len..]`, bytes that mean nothing (a read buffer's stale ones past what was
/// read), may be read by the head's UTF-8 check ([`Text::new`]) and by nothing else.
/// `known` is the last Host value found valid (a worker's, see [`KnownHost`]).
pub(crate) fn parse_into<'a>(
    buf: &'a [u8],
    len: usize,
    limits: &Limits,
    known: &mut KnownHost,
    req: &mut Request<'a>,
) -> Result<Option<usize>, HttpError> {
    parse_head(buf, len, limits, known, req, true)
}

/// [`parse_into`], the common head taken by [`common_head`] when `fast` (tests
/// compare the two ways; the parser always takes it).
#[inline(always)]
fn parse_head<'a>(
    buf: &'a [u8],
    len: usize,
    limits: &Limits,
    known: &mut KnownHost,
    req: &mut Request<'a>,
    fast: bool,
) -> Result<Option<usize>, HttpError> {
    debug_assert_eq!(*req, Request::blank(), "parse_into takes a fresh request");
    let (around, buf) = (buf, &buf[..len]);
    // Enough for the common request; the array is initialised on every call, so a
    // larger one costs every request (64 slots were 2% of a 1 KiB response's CPU).
    // Empty slots are `None`: one word each to set (the null pointer), where a pair
    // of empty slices was four.
    let mut stack: [Option<Field<'a>>; STACK_HEADERS] = [None; STACK_HEADERS];
    let common = match fast {
        true => common_head(buf, limits, &mut stack),
        false => None,
    };
    let (scan, text, line) = match common {
        Some((scan, method, name, target)) => {
            let text = Text::new(&buf[..scan.end], around);
            // ASCII (common_head took only target bytes), so always text.
            let target = text
                .of(&buf[target.0..target.1])
                .ok_or(err(400, "malformed request line"))?;
            (scan, text, (method, name, target))
        }
        None => {
            let Some(scan) = scan(buf, limits, &mut stack)? else {
                return Ok(None);
            };
            let text = Text::new(&buf[..scan.end], around);
            let line = split_request_line(&buf[scan.start..scan.line_end], &text)?;
            (scan, text, line)
        }
    };

    // The field lines, each checked as httparse (which this replaces) did: a token
    // name and a value of HTAB, SP, VCHAR or obs-text (RFC 9110 §5.1, §5.5); the
    // scan has seen each line's CRLF and colon, no NUL, no space before the colon.
    // A malformed line is reported before what any field says: every value is
    // checked before any field is used, and every name before another error is
    // reported (the first STACK_HEADERS names as `fill` meets them, a known one
    // being a token).
    let mut heap;
    let headers: &[Option<Field<'a>>] = if scan.fields <= STACK_HEADERS {
        // Split, and the values checked, by the scan.
        if scan.bad_field {
            return Err(MALFORMED_FIELD);
        }
        &stack[..scan.fields]
    } else {
        heap = vec![None; scan.fields];
        let mut pos = scan.line_end + 2;
        for slot in heap.iter_mut() {
            let rest = &buf[pos..scan.end];
            let Some(end) = find_cr_lf_nul(rest) else {
                return Err(err(400, "malformed request head"));
            };
            *slot = Some(field_line(&rest[..end]).ok_or(MALFORMED_FIELD)?);
            pos += end + 2;
        }
        &heap
    };
    match fill(req, headers, &text, &scan, known, line) {
        Ok(()) => Ok(Some(scan.end)),
        // A field line with a name that is no token is reported before anything
        // else a field says, as when every name was checked by the scan.
        Err(e) if headers.iter().flatten().all(|&(name, _)| is_token(name)) => Err(e),
        Err(_) => Err(MALFORMED_FIELD),
    }
}

/// The bytes of a field value [`common_head`] takes: HTAB, SP and visible ASCII
/// (so the head is ASCII, and its text never in doubt).
const VALUE_ASCII: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        t[c] = c == 0x09 || (c >= 0x20 && c < 0x7f);
        c += 1;
    }
    t
};

/// The common head in one walk: `GET` or `HEAD` at the start of `buf`, a target of
/// [`TARGET_BYTE`]s, ` HTTP/1.1`, at most [`STACK_HEADERS`] field lines of a token,
/// a colon and a value of [`VALUE_ASCII`], all CRLF-ended and within the limits.
/// `None` for anything else, a partial head included: [`scan`] and
/// [`split_request_line`] then judge it, so every refusal is theirs. What it returns
/// (the scan, the fields split into `first`, method, name and the target's range) is
/// what they return for such a head; the target is ASCII, so it is text.
#[inline(always)]
#[allow(clippy::type_complexity)]
fn common_head<'a>(
    buf: &'a [u8],
    limits: &Limits,
    first: &mut [Option<Field<'a>>; STACK_HEADERS],
) -> Option<(Scan, Method, &'static str, (usize, usize))> {
    let (method, name, from) = match buf.get(..5)? {
        [b'G', b'E', b'T', b' ', _] => (Method::Get, "GET", 4),
        b"HEAD " => (Method::Head, "HEAD", 5),
        _ => return None,
    };
    let mut pos = from;
    while TARGET_BYTE[*buf.get(pos)? as usize] {
        pos += 1;
    }
    let target = (from, pos);
    if pos == from || buf.get(pos..pos + 11)? != b" HTTP/1.1\r\n" {
        return None;
    }
    let line_end = pos + 9;
    if line_end > limits.max_request_line {
        return None;
    }
    pos += 11;
    let max = limits.max_headers.min(STACK_HEADERS);
    let mut fields = 0;
    loop {
        if *buf.get(pos)? == b'\r' {
            if *buf.get(pos + 1)? != b'\n' || pos + 2 > limits.max_header_bytes {
                return None;
            }
            let scan = Scan {
                start: 0,
                line_end,
                end: pos + 2,
                fields,
                version: Version::Http11,
                bad_field: false,
            };
            return Some((scan, method, name, target));
        }
        let at = pos;
        while TOKEN[*buf.get(pos)? as usize] {
            pos += 1;
        }
        if pos == at || buf[pos] != b':' || fields == max {
            return None;
        }
        let colon = pos;
        pos += 1;
        // Eight bytes at a time while none is below 0x20 (HTAB and CR are) or
        // 0x7f and above; the rest one by one.
        while let Some(w) = buf.get(pos..pos + 8) {
            let x = u64::from_le_bytes(w.try_into().expect("8 bytes"));
            if (x.wrapping_sub(ONES * 0x20) | x.wrapping_add(ONES)) & HIGH != 0 {
                break;
            }
            pos += 8;
        }
        while VALUE_ASCII[*buf.get(pos)? as usize] {
            pos += 1;
        }
        if buf[pos] != b'\r' || *buf.get(pos + 1)? != b'\n' {
            return None;
        }
        first[fields] = Some((&buf[at..colon], trim_ows(&buf[colon + 1..pos])));
        fields += 1;
        pos += 2;
    }
}

/// Whether `name` is a token (a method, a field name).
fn is_token(name: &[u8]) -> bool {
    name.iter().all(|&b| TOKEN[b as usize])
}

/// The rest of [`parse_into`]: the request from its line and its field lines,
/// whose values are checked and whose names are not yet (see [`field_line_at`]).
/// Inlined: as a call of its own it cost what the names' check saved.
#[inline(always)]
fn fill<'a>(
    req: &mut Request<'a>,
    headers: &[Option<Field<'a>>],
    text: &Text<'a>,
    scan: &Scan,
    known: &mut KnownHost,
    (method, method_name, raw_target): (Method, &'a str, &'a str),
) -> Result<(), HttpError> {
    let (target, uri_authority) = if raw_target.starts_with('/') {
        (raw_target.into(), None)
    } else if raw_target == "*" && method_name == "OPTIONS" {
        // asterisk-form (RFC 9112 §3.2.4): the server as a whole.
        ("*".into(), None)
    } else if let Some((authority, path)) = split_absolute(raw_target) {
        (path, Some(authority))
    } else {
        return Err(err(400, "request target must be origin-form"));
    };

    req.method = method;
    req.method_name = method_name;
    req.version = scan.version;
    req.target = target;
    let mut content_length: Option<u64> = None;
    let mut conn_close = false;
    let mut conn_keep_alive = false;
    let mut transfer_encoding: Option<&[u8]> = None;
    // Every slot up to scan.fields is filled (a line that failed returned above):
    // an empty one skipped here would hide a Content-Length or Transfer-Encoding.
    debug_assert!(headers.iter().all(Option::is_some), "an empty field slot");
    for &(name, value) in headers.iter().flatten() {
        let eq = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
        if eq("content-length") {
            if content_length.is_some() {
                return Err(err(400, "repeated Content-Length"));
            }
            content_length = Some(parse_content_length(value)?);
        } else if eq("transfer-encoding") {
            if transfer_encoding.is_some() {
                return Err(err(400, "repeated Transfer-Encoding"));
            }
            transfer_encoding = Some(value);
        } else if eq("connection") {
            let v = text.of(value).ok_or(err(400, "invalid Connection"))?;
            conn_close |= has_token(v, "close");
            conn_keep_alive |= has_token(v, "keep-alive");
        } else if eq("host") {
            set_once(&mut req.host, text, value, "repeated Host")?;
        } else if eq("expect") {
            req.expect_continue |= value.eq_ignore_ascii_case(b"100-continue");
        } else if eq("range") {
            set_once(&mut req.range, text, value, "repeated Range")?;
        } else if eq("content-range") {
            set_once(
                &mut req.content_range,
                text,
                value,
                "repeated Content-Range",
            )?;
        } else if eq("if-range") {
            set_once(&mut req.if_range, text, value, "repeated If-Range")?;
        } else if eq("if-none-match") {
            set_once(
                &mut req.if_none_match,
                text,
                value,
                "repeated If-None-Match",
            )?;
        } else if eq("if-match") {
            set_once(&mut req.if_match, text, value, "repeated If-Match")?;
        } else if eq("if-modified-since") {
            set_once(
                &mut req.if_modified_since,
                text,
                value,
                "repeated If-Modified-Since",
            )?;
        } else if eq("if-unmodified-since") {
            set_once(
                &mut req.if_unmodified_since,
                text,
                value,
                "repeated If-Unmodified-Since",
            )?;
        } else if eq("user-agent") {
            req.user_agent = text.of(value);
        } else if eq("referer") {
            req.referer = text.of(value);
        } else if eq("accept") {
            req.accept = text.of(value);
        } else if eq("accept-encoding") {
            // Several fields would have to be joined; a malformed or repeated
            // Accept-Encoding only costs the client its preferred coding.
            if req.accept_encoding.is_some() {
                req.accept_encoding = Some("");
            } else {
                req.accept_encoding = text.of(value);
            }
        } else if eq("authorization") {
            set_once(
                &mut req.authorization,
                text,
                value,
                "repeated Authorization",
            )?;
        } else if eq("origin") {
            req.origin = text.of(value);
        } else if eq("access-control-request-method") {
            req.ac_request_method = text.of(value);
        } else if eq("access-control-request-headers") {
            req.ac_request_headers = text.of(value);
        } else if eq("depth") {
            req.dav.depth = text.of(value);
        } else if eq("destination") {
            req.dav.destination = text.of(value);
        } else if eq("overwrite") {
            req.dav.overwrite = text.of(value);
        } else if eq("if") {
            req.dav.if_ = text.of(value);
        } else if eq("lock-token") {
            req.dav.lock_token = text.of(value);
        } else if eq("timeout") {
            req.dav.timeout = text.of(value);
        } else if !is_token(name) {
            // A name we know is a token: only the others are checked.
            return Err(MALFORMED_FIELD);
        }
    }

    req.body = match (transfer_encoding, content_length) {
        (Some(_), Some(_)) => return Err(err(400, "both Content-Length and Transfer-Encoding")),
        (Some(te), None) => {
            check_transfer_encoding(te)?;
            BodyFraming::Chunked
        }
        (None, Some(n)) => BodyFraming::Length(n),
        (None, None) => BodyFraming::None,
    };
    if scan.version == Version::Http11 && req.host.is_none() {
        return Err(err(400, "missing Host"));
    }
    // Both the Host field and an absolute-form target's authority must be a valid
    // host (RFC 9112 §3.2, RFC 9110 §4.2.1: an empty one is invalid too).
    if let Some(authority) = uri_authority {
        if req.host.is_some_and(|h| !known.valid(h)) {
            return Err(err(400, "invalid Host"));
        }
        req.host = Some(authority);
    }
    if req.host.is_some_and(|h| !known.valid(h)) {
        return Err(err(400, "invalid Host"));
    }
    req.body_len = content_length.unwrap_or(0);
    req.keep_alive = match scan.version {
        Version::Http11 => !conn_close,
        Version::Http10 => conn_keep_alive && !conn_close,
    } && req.body != BodyFraming::Chunked;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lim() -> Limits {
        Limits::default()
    }

    fn ok(raw: &str) -> (Request<'_>, usize) {
        match parse(raw.as_bytes(), &lim()) {
            Ok(Parsed::Complete(r, n)) => (r, n),
            other => panic!("{raw:?}: expected Complete, got {other:?}"),
        }
    }

    fn status(raw: &[u8], limits: &Limits) -> u16 {
        match parse(raw, limits) {
            Err(e) => e.status,
            Ok(Parsed::Partial) => 0,
            Ok(Parsed::Complete(..)) => 200,
        }
    }

    #[test]
    fn simple_get() {
        let raw = "GET /a/b?c=d HTTP/1.1\r\nHost: x\r\nUser-Agent: t/1\r\n\r\nNEXT";
        let (r, n) = ok(raw);
        assert_eq!(n, raw.len() - 4);
        assert_eq!(r.method, Method::Get);
        assert_eq!(r.target, "/a/b?c=d");
        assert_eq!(r.version, Version::Http11);
        assert!(r.keep_alive);
        assert_eq!(r.body_len, 0);
        assert_eq!(r.body, BodyFraming::None);
        assert_eq!(r.host, Some("x"));
        assert_eq!(r.user_agent, Some("t/1"));
        assert_eq!(r.range, None);
    }

    /// Bytes a field line test draws from: the interesting ones often, any byte too.
    fn byte() -> impl proptest::strategy::Strategy<Value = u8> {
        proptest::prop_oneof![
            proptest::sample::select(b"aZ09-_:; \t\x01\x0b\x1f\x7f\x80\xff@(\"/,".to_vec()),
            proptest::num::u8::ANY,
        ]
    }

    proptest::proptest! {
        /// A field line the scan lets through is accepted, named and trimmed as
        /// httparse (which the field check replaced) did.
        #[test]
        fn field_lines_are_judged_as_httparse_judged_them(
            name in proptest::collection::vec(byte(), 1..8),
            value in proptest::collection::vec(byte(), 0..16),
        ) {
            // What the scan refuses never gets here: NUL, CR, LF; a line starting
            // with OWS; no colon, or OWS before the first one.
            let mut line = name;
            line.push(b':');
            line.extend_from_slice(&value);
            for b in &mut line {
                if matches!(*b, 0 | b'\r' | b'\n') {
                    *b = b'x';
                }
            }
            let colon = line.iter().position(|&b| b == b':').unwrap();
            proptest::prop_assume!(colon > 0 && !is_ows(line[colon - 1]) && !is_ows(line[0]));
            let mut head = line.clone();
            head.extend_from_slice(b"\r\n\r\n");
            let mut slots = [httparse::EMPTY_HEADER; 1];
            let theirs = match httparse::parse_headers(&head, &mut slots) {
                Ok(httparse::Status::Complete((n, h))) if n == head.len() => {
                    Some((h[0].name.as_bytes().to_vec(), trim_ows(h[0].value).to_vec()))
                }
                Ok(other) => panic!("{other:?}"),
                Err(httparse::Error::HeaderName | httparse::Error::HeaderValue) => None,
                Err(e) => panic!("{e:?}"),
            };
            let ours = field_line(&line).map(|(n, v)| (n.to_vec(), v.to_vec()));
            proptest::prop_assert_eq!(ours, theirs);
        }

        /// A field line is judged alike among a head's first 16 lines (checked as
        /// the scan finds them, names only when the parser does not know them) and
        /// past them (each line by [`field_line`], compared with httparse above).
        #[test]
        fn a_field_line_is_judged_alike_in_the_first_lines_and_past_them(
            name in proptest::collection::vec(byte(), 1..8),
            value in proptest::collection::vec(byte(), 0..16),
        ) {
            let mut line = name;
            line.push(b':');
            line.extend_from_slice(&value);
            let head = |fillers: usize| {
                let mut h = b"GET / HTTP/1.1\r\nHost: h\r\n".to_vec();
                for i in 0..fillers {
                    h.extend_from_slice(format!("X-Filler-{i}: v\r\n").as_bytes());
                }
                h.extend_from_slice(&line);
                h.extend_from_slice(b"\r\n\r\n");
                h
            };
            let (early, late) = (head(0), head(20));
            let judged = |h: &[u8]| match parse(h, &lim()) {
                Ok(Parsed::Complete(r, _)) => Ok(format!("{r:?}")),
                Ok(Parsed::Partial) => Err("partial".to_string()),
                Err(e) => Err(format!("{e:?}")),
            };
            proptest::prop_assert_eq!(judged(&early), judged(&late));
        }
    }

    /// `parse_into` of `head` the common way (when it applies) and the general way
    /// alone: what each returns and the request it fills.
    fn both_ways(head: &[u8], limits: &Limits) -> [(Result<Option<usize>, HttpError>, String); 2] {
        [true, false].map(|fast| {
            let mut req = Request::blank();
            let got = parse_head(
                head,
                head.len(),
                limits,
                &mut KnownHost::default(),
                &mut req,
                fast,
            );
            (got, format!("{req:?}"))
        })
    }

    /// A head near the common one, piece by piece: each piece mostly a good one,
    /// sometimes one with a likely fault.
    fn near_head() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        use proptest::sample::select;
        let piece = |v: &[&'static str]| select(v.to_vec()).prop_map(|s| s.as_bytes().to_vec());
        let bytes =
            |set: &'static [u8], n: usize| proptest::collection::vec(select(set.to_vec()), 0..n);
        let method = prop_oneof![
            6 => piece(&["GET ", "HEAD "]),
            1 => piece(&["GET  ", "PUT ", "get ", "GET\t", "", "\r\nGET ", "OPTIONS ", "GE"]),
        ];
        let target = prop_oneof![
            6 => (piece(&["/"]), bytes(b"/aZ09.%?~:@", 10)).prop_map(|(a, b)| [a, b].concat()),
            1 => (
                piece(&["/", "", "*", "http://h", "http://h/"]),
                bytes(b"/aZ09.%?*#~ \t\x80\xff\x7f:@\r\n\x00", 10),
            )
                .prop_map(|(a, b)| [a, b].concat()),
        ];
        let version = prop_oneof![
            6 => piece(&[" HTTP/1.1\r\n"]),
            1 => piece(&[
                " HTTP/1.0\r\n", " HTTP/1.1\n", " HTTP/1.1\r", " HTTP/1.2\r\n", " HTTP/2.0\r\n",
                "HTTP/1.1\r\n", " HTTP/1.1 \r\n", " HTTP/1.1\r\r\n",
            ]),
        ];
        let name = prop_oneof![
            8 => piece(&[
                "Host", "host", "HOST", "Content-Length", "content-length", "Transfer-Encoding",
                "Connection", "Expect", "Range", "If-None-Match", "If-Modified-Since", "User-Agent",
                "Accept-Encoding", "Authorization", "X-A", "Origin", "Depth",
            ]),
            1 => piece(&["", "Bad Name", "B@d", "Host ", " Host", "\tHost", "H\u{e9}st", "Ho\x00st"]),
        ];
        let sep = prop_oneof![
            6 => piece(&[":", ": ", ":\t", ":  "]),
            1 => piece(&[" :", "", "::", "\t:"]),
        ];
        let value = prop_oneof![
            4 => piece(&[
                "x", "127.0.0.1:8080", "1", "0", "12", "chunked", "gzip, chunked", "close",
                "keep-alive", "100-continue", "[::1]:80", "", " ", "bytes=0-1", "a b", "\t1 ",
                "a value longer than eight bytes", "h:", "x, close",
            ]),
            1 => bytes(b"abc 019:,\t\x7f\x80\xff\x00\r\n[]%", 24),
            // A long value with one byte the common way does not take anywhere in it
            // (eight at a time or one by one).
            1 => (
                bytes(b"abcdefgh :,", 24),
                select(b"\x7f\x80\xff\x01\x1f\t\x00".to_vec()),
                any::<proptest::sample::Index>(),
            )
                .prop_map(|(mut v, b, at)| {
                    let at = at.index(v.len() + 1);
                    v.insert(at, b);
                    v
                }),
        ];
        let end = prop_oneof![
            8 => piece(&["\r\n"]),
            1 => piece(&["\n", "\r", "\r\r\n", "\r\n ", "\r\n\t"]),
        ];
        let field = (name, sep, value, end).prop_map(|(n, s, v, e)| [n, s, v, e].concat());
        let fields = prop_oneof![
            6 => proptest::collection::vec(field.clone(), 0..5),
            1 => proptest::collection::vec(field, 0..20),
        ];
        let blank = prop_oneof![
            8 => piece(&["\r\n"]),
            1 => piece(&["\n", "", "\r", " \r\n", "\r\r\n"]),
        ];
        (
            method,
            target,
            version,
            fields,
            blank,
            proptest::collection::vec(any::<u8>(), 0..4),
        )
            .prop_map(|(m, t, v, fields, end, after)| {
                [m, t, v, fields.concat(), end, after].concat()
            })
    }

    /// Limits a head near the common one meets at every piece.
    fn some_limits() -> impl proptest::strategy::Strategy<Value = Limits> {
        use proptest::prelude::*;
        use proptest::sample::select;
        (
            select(vec![8192usize, 8192, 8192, 4, 12, 20]),
            select(vec![16384usize, 16384, 16384, 20, 40, 80, 200]),
            select(vec![100usize, 100, 100, 0, 1, 2, 16, 17]),
        )
            .prop_map(|(line, bytes, headers)| Limits {
                max_request_line: line,
                max_header_bytes: bytes,
                max_headers: headers,
            })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4000))]
        /// The common head's one walk ([`common_head`]) parses a head as the
        /// general way does, and refuses (by leaving it to the general way) what it
        /// refuses, with the same status and reason: on heads near the common one,
        /// cut anywhere, under any limits.
        #[test]
        fn the_common_way_and_the_general_way_agree(
            head in near_head(),
            cut in proptest::prelude::any::<proptest::sample::Index>(),
            whole in proptest::sample::select(vec![true, true, true, false]),
            limits in some_limits(),
        ) {
            let head = if whole { &head[..] } else { &head[..cut.index(head.len() + 1)] };
            let [fast, general] = both_ways(head, &limits);
            proptest::prop_assert_eq!(fast, general);
        }

        /// ... and on any bytes, and any bytes after a common start.
        #[test]
        fn the_common_way_and_the_general_way_agree_on_any_bytes(
            start in proptest::sample::select(vec!["", "GET /", "HEAD /a HTTP/1.1\r\n", "GET / HTTP/1.1\r\nHost: h\r\n"]),
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..120),
        ) {
            let head = [start.as_bytes(), &bytes].concat();
            let [fast, general] = both_ways(&head, &lim());
            proptest::prop_assert_eq!(fast, general);
        }
    }

    #[test]
    fn common_heads_take_the_common_way() {
        let heads: [&[u8]; 4] = [
            b"GET /1k.bin HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n",
            b"HEAD /a?b=c HTTP/1.1\r\nhost:x\r\nRange:\tbytes=0-1 \r\n\r\nGET",
            b"GET /x HTTP/1.1\r\n\r\n",
        ];
        for head in heads {
            let mut first = [None; STACK_HEADERS];
            let (scan, ..) = common_head(head, &lim(), &mut first).expect("the common way");
            let mut general = [None; STACK_HEADERS];
            let want = super::scan(head, &lim(), &mut general).unwrap().unwrap();
            assert_eq!(
                (scan.end, scan.line_end, scan.fields),
                (want.end, want.line_end, want.fields)
            );
            assert_eq!(first, general);
            let [fast, slow] = both_ways(head, &lim());
            assert_eq!(fast, slow);
        }
        // Not the common way: another method, HTTP/1.0, a non-ASCII value, an
        // obs-fold, a bare LF, a partial head.
        for head in [
            &b"PUT / HTTP/1.1\r\nHost: h\r\n\r\n"[..],
            b"GET / HTTP/1.0\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\xc3\xa9\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\n x\r\n\r\n",
            b"GET / HTTP/1.1\nHost: h\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\n",
        ] {
            assert!(
                common_head(head, &lim(), &mut [None; STACK_HEADERS]).is_none(),
                "{head:?}"
            );
        }
    }

    #[test]
    fn field_values_are_judged_byte_by_byte_at_every_offset() {
        for len in 0..26 {
            for at in 0..len {
                for b in 0..=255u8 {
                    for filler in [b'a', b' ', b'\t', 0x80, 0xff] {
                        let mut v = vec![filler; len];
                        v[at] = b;
                        let want = v.iter().all(|&c| FIELD_VALUE[c as usize]);
                        assert_eq!(field_value(&v), want, "{v:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn cr_lf_nul_are_found_first_at_every_offset() {
        let naive = |s: &[u8]| s.iter().position(|&b| b == b'\r' || b == b'\n' || b == 0);
        for len in 0..26 {
            for at in 0..len {
                for special in [b'\r', b'\n', 0] {
                    // Bytes around the special one that the word trick could confuse.
                    for filler in [b'a', 0x80, 0xff, 0x01, 0x0c, 0x0e, 0x0b] {
                        let mut s = vec![filler; len];
                        s[at] = special;
                        assert_eq!(find_cr_lf_nul(&s), naive(&s), "{s:?}");
                        if at + 1 < len {
                            s[at + 1] = b'\n';
                            assert_eq!(find_cr_lf_nul(&s), Some(at), "{s:?}");
                        }
                    }
                }
            }
            assert_eq!(find_cr_lf_nul(&vec![b'x'; len]), None);
        }
    }

    #[test]
    fn a_non_utf8_value_costs_only_that_field() {
        // The head is not UTF-8 as a whole: each part is then checked alone.
        let raw = b"GET /a%20b HTTP/1.1\r\nUser-Agent: \xff\xfe\r\nHost: h:1\r\n\
                    Referer: /r\xc3\xa9\r\n\r\n";
        let Ok(Parsed::Complete(r, n)) = parse(raw, &lim()) else {
            panic!("expected Complete");
        };
        assert_eq!(n, raw.len());
        assert_eq!((r.method_name, &*r.target), ("GET", "/a%20b"));
        assert_eq!(r.host, Some("h:1"));
        assert_eq!(r.user_agent, None);
        assert_eq!(r.referer, Some("/r\u{e9}"));
        // A singleton field we use must be text.
        let raw = b"GET / HTTP/1.1\r\nHost: h\r\nRange: bytes=\xff\r\n\r\n";
        assert_eq!(status(raw, &lim()), 400);
        // A UTF-8 head: parts sliced from it.
        let (r, _) = ok("GET /x HTTP/1.1\r\nHost: h\r\nReferer: \u{e9}t\u{e9} \r\n\r\n");
        assert_eq!(r.referer, Some("\u{e9}t\u{e9}"));
    }

    #[test]
    fn a_name_that_is_no_token_is_reported_before_what_fields_say() {
        // Each of these is refused for what a field or the target says, and for a
        // field name that is no token in a line after the one that decides it:
        // the name is the error reported, wherever the line is.
        let cases: [(&str, &str); 6] = [
            ("/", "Host: a\r\nHost: b\r\n"),
            ("/", "Host: a\r\nContent-Length: x\r\n"),
            (
                "/",
                "Content-Length: 1\r\nTransfer-Encoding: chunked\r\nHost: a\r\n",
            ),
            ("/", "Host: a b\r\n"),
            ("/", "X: y\r\n"),
            ("a:b", "Host: a\r\n"),
        ];
        for (target, fields) in cases {
            let head = format!("GET {target} HTTP/1.1\r\n{fields}\r\n");
            let e = parse(head.as_bytes(), &lim()).unwrap_err();
            assert_ne!(e, MALFORMED_FIELD, "{head:?}");
            for bad in ["Bad Name", "B(d", "\u{e9}", "B\x7fd"] {
                for first in [true, false] {
                    let line = format!("{bad}: v\r\n");
                    let fields = match first {
                        true => format!("{line}{fields}"),
                        false => format!("{fields}{line}"),
                    };
                    let head = format!("GET {target} HTTP/1.1\r\n{fields}\r\n");
                    let e = parse(head.as_bytes(), &lim()).unwrap_err();
                    assert_eq!(e, MALFORMED_FIELD, "{head:?}");
                    // Past the lines the scan splits: the same.
                    let many = "X-A: 1\r\n".repeat(STACK_HEADERS);
                    let head = format!("GET {target} HTTP/1.1\r\n{many}{fields}\r\n");
                    let e = parse(head.as_bytes(), &lim()).unwrap_err();
                    assert_eq!(e, MALFORMED_FIELD, "{head:?}");
                }
            }
        }
        // A name we know, spelled in any case, needs no check of its own.
        let (r, _) = ok("GET / HTTP/1.1\r\nhOsT: h\r\nX-Any_name!: v\r\n\r\n");
        assert_eq!(r.host, Some("h"));
    }

    #[test]
    fn bytes_after_the_head_change_nothing() {
        // What the connection core does: the head is the first `len` bytes, the
        // rest of the buffer stale bytes the UTF-8 check may read. Whatever they
        // are (text, a char cut short, a char the head's last bytes would start),
        // the request is the one `parse` makes of the head alone.
        let heads: [&[u8]; 3] = [
            b"GET /1k.bin HTTP/1.1\r\nHost: 127.0.0.1:18391\r\n\r\n",
            "GET /x HTTP/1.1\r\nHost: h\r\nReferer: \u{e9}t\u{e9}\r\n\r\n".as_bytes(),
            b"GET /a HTTP/1.1\r\nUser-Agent: \xff\r\nHost: h:1\r\n\r\n",
        ];
        let stale: [&[u8]; 5] = [
            b"",
            b"GET / HTTP/1.1\r\n",
            b"\x80\x80",
            b"\xe2\x82",
            b"\xff",
        ];
        for head in heads {
            let alone = parse(head, &lim()).unwrap();
            for junk in stale {
                for pad in 0..20 {
                    let mut buf = head.to_vec();
                    buf.extend(std::iter::repeat_n(b'x', pad));
                    buf.extend_from_slice(junk);
                    let mut req = Request::blank();
                    let got = parse_into(
                        &buf,
                        head.len(),
                        &lim(),
                        &mut KnownHost::default(),
                        &mut req,
                    )
                    .unwrap();
                    assert_eq!(Parsed::Complete(req, got.unwrap()), alone, "{pad} {junk:?}");
                }
            }
        }
    }

    #[test]
    fn fields_extracted_and_trimmed() {
        let raw = "HEAD / HTTP/1.1\r\nhost:  h:80 \r\nRANGE: bytes=0-1\r\nIf-Range: \"e\"\r\n\
                   If-None-Match: W/\"a\", \"b\"\r\nIf-Match: *\r\n\
                   If-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
                   If-Unmodified-Since: x\r\nReferer: http://r/\r\nX-Other: y\r\n\r\n";
        let (r, _) = ok(raw);
        assert_eq!(r.method, Method::Head);
        assert_eq!(r.host, Some("h:80"));
        assert_eq!(r.range, Some("bytes=0-1"));
        assert_eq!(r.if_range, Some("\"e\""));
        assert_eq!(r.if_none_match, Some("W/\"a\", \"b\""));
        assert_eq!(r.if_match, Some("*"));
        assert_eq!(r.if_modified_since, Some("Sun, 06 Nov 1994 08:49:37 GMT"));
        assert_eq!(r.if_unmodified_since, Some("x"));
        assert_eq!(r.referer, Some("http://r/"));
    }

    #[test]
    fn other_methods() {
        for m in ["POST", "PUT", "DELETE", "OPTIONS", "PATCH", "FOO", "get"] {
            let raw = format!("{m} / HTTP/1.1\r\nHost: x\r\n\r\n");
            let (r, _) = ok(&raw);
            assert_eq!(r.method, Method::Other, "{m}");
        }
    }

    #[test]
    fn keep_alive_rules() {
        let cases = [
            ("HTTP/1.1", "", true),
            ("HTTP/1.1", "Connection: close\r\n", false),
            ("HTTP/1.1", "Connection: Keep-Alive, CLOSE\r\n", false),
            ("HTTP/1.1", "Connection: upgrade\r\n", true),
            ("HTTP/1.1", "Connection: closed\r\n", true),
            ("HTTP/1.0", "", false),
            ("HTTP/1.0", "Connection: keep-alive\r\n", true),
            ("HTTP/1.0", "Connection: foo,  Keep-Alive \r\n", true),
            (
                "HTTP/1.0",
                "Connection: keep-alive\r\nConnection: close\r\n",
                false,
            ),
            (
                "HTTP/1.1",
                "Transfer-Encoding: chunked\r\nConnection: keep-alive\r\n",
                false,
            ),
        ];
        for (v, h, want) in cases {
            let raw = format!("GET / {v}\r\nHost: x\r\n{h}\r\n");
            assert_eq!(ok(&raw).0.keep_alive, want, "{raw:?}");
        }
    }

    #[test]
    fn bodies() {
        let (r, _) = ok("GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\n");
        assert_eq!((r.body_len, r.body), (12, BodyFraming::Length(12)));
        let (r, _) =
            ok("GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 18446744073709551615\r\n\r\n");
        assert_eq!(r.body_len, u64::MAX);
        for te in ["chunked", "Chunked", " CHUNKED ", "chunked,", ", chunked"] {
            let raw = format!("GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:{te}\r\n\r\n");
            let (r, _) = ok(&raw);
            assert_eq!((r.body, r.body_len), (BodyFraming::Chunked, 0), "{te:?}");
            assert!(!r.keep_alive, "{te:?}");
        }
    }

    #[test]
    fn transfer_encoding_other_than_one_chunked_is_400() {
        for te in [
            "Transfer-Encoding: chunked, chunked",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
            "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked",
            "Transfer-Encoding: chunked, gzip",
            "Transfer-Encoding: gzip",
            "Transfer-Encoding: identity",
            "Transfer-Encoding: chunked;q=1",
            "Transfer-Encoding: chunked x",
            "Transfer-Encoding: ,",
            "Transfer-Encoding: \"chunked\"",
        ] {
            let raw = format!("GET / HTTP/1.1\r\nHost: x\r\n{te}\r\n\r\n");
            assert_eq!(status(raw.as_bytes(), &lim()), 400, "{te:?}");
            let raw = format!("HEAD / HTTP/1.0\r\n{te}\r\n\r\n");
            assert_eq!(status(raw.as_bytes(), &lim()), 400, "{te:?}");
        }
    }

    #[test]
    fn unknown_codings_before_chunked_are_501() {
        for te in ["gzip, chunked", "x-foo, chunked", "gzip,deflate, chunked"] {
            let raw = format!("GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: {te}\r\n\r\n");
            assert_eq!(status(raw.as_bytes(), &lim()), 501, "{te:?}");
        }
        // Unframeable stays 400: chunked twice, or not last.
        for te in [
            "chunked, gzip, chunked",
            "gzip",
            "chunked, gzip",
            "g z, chunked",
        ] {
            let raw = format!("GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: {te}\r\n\r\n");
            assert_eq!(status(raw.as_bytes(), &lim()), 400, "{te:?}");
        }
    }

    #[test]
    fn host_must_be_uri_host_and_port() {
        for h in [
            "x",
            "x:80",
            "x:",
            "a.b-c_d~e",
            "127.0.0.1:8080",
            "[::1]",
            "[::1]:80",
            "[v1.x:y]",
            "%41b",
            "a!$&'()*+,;=",
        ] {
            let raw = format!("GET / HTTP/1.1\r\nHost: {h}\r\n\r\n");
            assert_eq!(ok(&raw).0.host, Some(h), "{h:?}");
        }
        for h in [
            "", "a b", "x/y", "u@x", "x:abc", ":80", "[::1", "[::g]", "[::1]x", "[]", "x:80:80",
            "%4", "%zz", "a\"b", "x?y", "x#y", "[::1]:a",
        ] {
            let raw = format!("GET / HTTP/1.1\r\nHost: {h}\r\n\r\n");
            assert_eq!(status(raw.as_bytes(), &lim()), 400, "{h:?}");
        }
        // The authority of an absolute-form target, and the Host field beside it.
        for raw in [
            "GET http://:80/ HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET http://a%/ HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET http://x/ HTTP/1.1\r\nHost: a b\r\n\r\n",
        ] {
            assert_eq!(status(raw.as_bytes(), &lim()), 400, "{raw:?}");
        }
    }

    #[test]
    fn asterisk_form_only_for_options() {
        let (r, _) = ok("OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!((r.method_name, &*r.target), ("OPTIONS", "*"));
    }

    #[test]
    fn expect_100_continue_is_noted() {
        let (r, _) = ok("GET / HTTP/1.1\r\nHost: x\r\nExpect: 100-Continue\r\n\r\n");
        assert!(r.expect_continue);
        let (r, _) = ok("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(!r.expect_continue);
    }

    #[test]
    fn higher_minor_version_is_processed_as_1_1() {
        for v in ["HTTP/1.2", "HTTP/1.5", "HTTP/1.9"] {
            let raw = format!("GET / {v}\r\nHost: x\r\n\r\n");
            let (r, _) = ok(&raw);
            assert_eq!(r.version, Version::Http11, "{v}");
            assert!(r.keep_alive, "{v}");
        }
        // As 1.1, Host is required.
        assert_eq!(status(b"GET / HTTP/1.2\r\n\r\n", &lim()), 400);
    }

    #[test]
    fn fragment_in_target_is_400() {
        for t in ["/a#b", "/#", "/a?q#f", "http://h/a#b", "/%23ok#"] {
            let raw = format!("GET {t} HTTP/1.1\r\nHost: x\r\n\r\n");
            assert_eq!(status(raw.as_bytes(), &lim()), 400, "{t}");
        }
        // An encoded '#' is an ordinary path byte.
        assert_eq!(
            ok("GET /a%23b HTTP/1.1\r\nHost: x\r\n\r\n").0.target,
            "/a%23b"
        );
    }

    #[test]
    fn http10_without_host() {
        let (r, _) = ok("GET /x HTTP/1.0\r\n\r\n");
        assert_eq!(r.version, Version::Http10);
        assert_eq!(r.host, None);
    }

    #[test]
    fn leading_empty_lines_ignored() {
        let raw = "\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n";
        let (r, n) = ok(raw);
        assert_eq!(n, raw.len());
        assert_eq!(r.target, "/");
    }

    #[test]
    fn absolute_form() {
        let (r, _) = ok("GET http://example.com:8080/a%20b?q HTTP/1.1\r\nHost: other\r\n\r\n");
        assert_eq!(r.target, "/a%20b?q");
        assert_eq!(r.host, Some("example.com:8080"));
        let (r, _) = ok("GET HTTPS://example.com HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(r.target, "/");
        // An empty path before a query is `/` too.
        let (r, _) = ok("GET http://h?a=1 HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!((&*r.target, r.host), ("/?a=1", Some("h")));
    }

    #[test]
    fn malformed_table() {
        let cases: &[(&str, &[u8], u16)] = &[
            ("bare LF", b"GET / HTTP/1.1\nHost: x\n\n", 400),
            ("bare LF in header", b"GET / HTTP/1.1\r\nHost: x\n\r\n", 400),
            ("bare LF at end", b"GET / HTTP/1.1\r\nHost: x\r\n\n", 400),
            ("bare CR", b"GET / HTTP/1.1\rHost: x\r\n\r\n", 400),
            ("bare CR in value", b"GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n", 400),
            ("leading bare LF", b"\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
            ("NUL in target", b"GET /a\0b HTTP/1.1\r\nHost: x\r\n\r\n", 400),
            ("NUL in value", b"GET / HTTP/1.1\r\nHost: x\0\r\n\r\n", 400),
            ("NUL in name", b"GET / HTTP/1.1\r\nHo\0st: x\r\n\r\n", 400),
            ("obs-fold SP", b"GET / HTTP/1.1\r\nHost: x\r\nA: b\r\n c\r\n\r\n", 400),
            ("obs-fold HTAB", b"GET / HTTP/1.1\r\nHost: x\r\nA: b\r\n\tc\r\n\r\n", 400),
            ("first line folded", b"GET / HTTP/1.1\r\n Host: x\r\n\r\n", 400),
            ("space before colon", b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400),
            ("tab before colon", b"GET / HTTP/1.1\r\nHost\t: x\r\n\r\n", 400),
            ("no colon", b"GET / HTTP/1.1\r\nHost x\r\n\r\n", 400),
            ("empty name", b"GET / HTTP/1.1\r\n: x\r\nHost: x\r\n\r\n", 400),
            ("bad name char", b"GET / HTTP/1.1\r\nHo(st: x\r\nHost: x\r\n\r\n", 400),
            ("CL and TE", b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
            ("TE and CL", b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", 400),
            ("TE not chunked last", b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400),
            ("TE empty", b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: \r\n\r\n", 400),
            ("dup CL equal", b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n", 400),
            ("dup CL differ", b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\ncontent-length: 4\r\n\r\n", 400),
            ("CL list", b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 3\r\n\r\n", 400),
            ("CL sign", b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\n", 400),
            ("CL negative", b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400),
            ("CL empty", b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: \r\n\r\n", 400),
            ("CL hex", b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 0x10\r\n\r\n", 400),
            ("CL overflow", b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 18446744073709551616\r\n\r\n", 400),
            ("no host 1.1", b"GET / HTTP/1.1\r\n\r\n", 400),
            ("dup host", b"GET / HTTP/1.1\r\nHost: x\r\nHost: x\r\n\r\n", 400),
            ("dup host 1.0", b"GET / HTTP/1.0\r\nHost: x\r\nhost: y\r\n\r\n", 400),
            ("dup range", b"GET / HTTP/1.1\r\nHost: x\r\nRange: bytes=0-1\r\nRange: bytes=0-1\r\n\r\n", 400),
            ("HTTP/2.0", b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
            ("HTTP/0.9", b"GET / HTTP/0.9\r\nHost: x\r\n\r\n", 505),
            ("HTTP/3.0", b"GET / HTTP/3.0\r\n\r\n", 505),
            ("lowercase http", b"GET / http/1.1\r\nHost: x\r\n\r\n", 400),
            ("HTTP/1.10", b"GET / HTTP/1.10\r\nHost: x\r\n\r\n", 400),
            ("no version", b"GET /\r\nHost: x\r\n\r\n", 400),
            ("simple request", b"GET\r\n\r\n", 400),
            ("two spaces", b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
            ("trailing space", b"GET / HTTP/1.1 \r\nHost: x\r\n\r\n", 400),
            ("space in target", b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n", 400),
            ("tab delimiter", b"GET\t/ HTTP/1.1\r\nHost: x\r\n\r\n", 400),
            ("asterisk GET", b"GET * HTTP/1.1\r\nHost: x\r\n\r\n", 400),
            ("asterisk HEAD", b"HEAD * HTTP/1.1\r\nHost: x\r\n\r\n", 400),
            ("authority-form", b"CONNECT example.com:443 HTTP/1.1\r\nHost: x\r\n\r\n", 400),
            ("relative", b"GET a/b HTTP/1.1\r\nHost: x\r\n\r\n", 400),
            ("ftp absolute", b"GET ftp://h/a HTTP/1.1\r\nHost: x\r\n\r\n", 400),
            ("absolute userinfo", b"GET http://u@h/ HTTP/1.1\r\nHost: x\r\n\r\n", 400),
            ("non-ascii target", b"GET /\xc3\xa9 HTTP/1.1\r\nHost: x\r\n\r\n", 400),
            ("bad method char", b"G(T / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
            ("empty method", b" / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
            ("control char in value", b"GET / HTTP/1.1\r\nHost: x\x01y\r\n\r\n", 400),
            ("DEL in value", b"GET / HTTP/1.1\r\nHost: x\x7fy\r\n\r\n", 400),
        ];
        for (what, raw, want) in cases {
            assert_eq!(
                status(raw, &lim()),
                *want,
                "{what}: {:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn partial_heads() {
        let full = b"GET /x HTTP/1.1\r\nHost: x\r\nRange: bytes=1-\r\n\r\n";
        for cut in 0..full.len() {
            assert_eq!(status(&full[..cut], &lim()), 0, "cut at {cut}");
        }
        assert_eq!(status(full, &lim()), 200);
        // Errors are found in a partial head too.
        assert_eq!(status(b"GET / HTTP/1.1\r\nA\0", &lim()), 400);
        assert_eq!(status(b"GET / HTTP/1.1\n", &lim()), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: x\r\n fold", &lim()), 400);
    }

    #[test]
    fn request_line_limit() {
        let limits = Limits {
            max_request_line: 20,
            max_header_bytes: 1000,
            max_headers: 10,
        };
        // "GET /xxxx HTTP/1.1" with a path making exactly 20 bytes.
        let line = format!("GET /{} HTTP/1.1", "a".repeat(20 - 14));
        assert_eq!(line.len(), 20);
        let exact = format!("{line}\r\nHost: x\r\n\r\n");
        assert_eq!(status(exact.as_bytes(), &limits), 200);
        let over = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(7));
        assert_eq!(status(over.as_bytes(), &limits), 414);
        // Partial: 20 bytes, or 20 + CR, may still be fine; 21 bytes without CR are not.
        assert_eq!(status(&exact.as_bytes()[..20], &limits), 0);
        assert_eq!(status(&exact.as_bytes()[..21], &limits), 0);
        assert_eq!(status(&[b'a'; 21], &limits), 414);
        assert_eq!(status(over.as_bytes()[..21].as_ref(), &limits), 414);
    }

    #[test]
    fn header_limits() {
        let limits = Limits {
            max_request_line: 100,
            max_header_bytes: 64,
            max_headers: 3,
        };
        let head = "GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 2\r\n\r\n";
        assert_eq!(status(head.as_bytes(), &limits), 200);
        let four = "GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
        assert_eq!(status(four.as_bytes(), &limits), 431);
        // Too many fields already in a partial head.
        assert_eq!(status(&four.as_bytes()[..four.len() - 2], &limits), 431);
        // Exactly max_header_bytes is fine, one more is not.
        let pad = 64 - "GET / HTTP/1.1\r\nHost: \r\n\r\n".len();
        let exact = format!("GET / HTTP/1.1\r\nHost: {}\r\n\r\n", "h".repeat(pad));
        assert_eq!(exact.len(), 64);
        assert_eq!(status(exact.as_bytes(), &limits), 200);
        let over = format!("GET / HTTP/1.1\r\nHost: {}\r\n\r\n", "h".repeat(pad + 1));
        assert_eq!(status(over.as_bytes(), &limits), 431);
        // Partial and already over.
        let big = format!("GET / HTTP/1.1\r\nHost: {}", "h".repeat(100));
        assert_eq!(status(big.as_bytes(), &limits), 431);
    }

    #[test]
    fn many_headers_beyond_stack() {
        let limits = Limits {
            max_headers: 200,
            ..Limits::default()
        };
        let mut raw = String::from("GET / HTTP/1.1\r\nHost: x\r\n");
        for i in 0..150 {
            raw.push_str(&format!("X-{i}: {i}\r\n"));
        }
        raw.push_str("Range: bytes=5-\r\n\r\n");
        match parse(raw.as_bytes(), &limits) {
            Ok(Parsed::Complete(r, n)) => {
                assert_eq!(n, raw.len());
                assert_eq!(r.range, Some("bytes=5-"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(status(raw.as_bytes(), &Limits::default()), 431);
    }

    #[test]
    fn pipelined() {
        let raw = b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n";
        let Ok(Parsed::Complete(r, n)) = parse(raw, &lim()) else {
            panic!()
        };
        assert_eq!(r.target, "/1");
        let Ok(Parsed::Complete(r2, n2)) = parse(&raw[n..], &lim()) else {
            panic!()
        };
        assert_eq!(r2.target, "/2");
        assert_eq!(n + n2, raw.len());
    }

    #[test]
    fn a_bad_field_line_is_judged_after_the_framing_and_the_request_line() {
        // Split and checked during the scan, reported only once the head is whole
        // and its request line is good: as when the check was a second walk.
        let bad = b"GET / HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n";
        assert_eq!(parse(bad, &lim()), Ok(Parsed::Partial));
        let mut whole = bad.to_vec();
        whole.extend_from_slice(b"X: \x01\r\n\r\n");
        assert_eq!(status(&whole, &lim()), 400);
        let framing = b"GET / HTTP/1.1\r\nBad Name: x\r\nA\r\n\r\n";
        assert_eq!(
            parse(framing, &lim()),
            Err(err(400, "malformed header field"))
        );
        let line = b"GET /# HTTP/1.1\r\nBad Name: x\r\n\r\n";
        assert_eq!(
            parse(line, &lim()),
            Err(err(400, "fragment in request target"))
        );
        // Beyond the stack's slots, the same verdicts.
        let mut many = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
        for i in 0..20 {
            many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"Bad Name: x\r\n\r\n");
        assert_eq!(status(&many, &lim()), 400);
    }

    #[test]
    fn request_lines_the_common_way_and_the_general_way_agree() {
        fn ok_line(l: &[u8]) -> Result<(Method, &str, &str), HttpError> {
            split_request_line(l, &Text::new(l, l))
        }
        assert_eq!(
            ok_line(b"GET /a?b HTTP/1.1"),
            Ok((Method::Get, "GET", "/a?b"))
        );
        assert_eq!(ok_line(b"HEAD / HTTP/1.0"), Ok((Method::Head, "HEAD", "/")));
        assert_eq!(
            ok_line(b"PATCH * HTTP/1.1"),
            Ok((Method::Other, "PATCH", "*"))
        );
        let bad = err(400, "malformed request line");
        for line in [
            &b"GET  / HTTP/1.1"[..],
            b" / HTTP/1.1",
            b"GET HTTP/1.1",
            b"GET / x HTTP/1.1",
            b"G(T / HTTP/1.1",
        ] {
            assert_eq!(ok_line(line), Err(bad), "{line:?}");
        }
        assert_eq!(
            ok_line(b"GET /a\x80 b HTTP/1.1"),
            Err(bad),
            "four parts outrank a non-ASCII target"
        );
        assert_eq!(
            ok_line(b"GET /a\x80 HTTP/1.1"),
            Err(err(400, "non-ASCII request target"))
        );
        assert_eq!(
            ok_line(b"GET /a#b HTTP/1.1"),
            Err(err(400, "fragment in request target"))
        );
    }

    #[test]
    fn hosts_with_and_without_escapes() {
        for good in ["127.0.0.1:18397", "a.example", "a%41b", "x:", "[::1]:80"] {
            assert!(valid_host(good), "{good}");
        }
        for bad in ["a%4", "a%zz", "a b", ":80", "a:b", "a@b", "[::1", "a:1:2"] {
            assert!(!valid_host(bad), "{bad}");
        }
    }

    #[test]
    fn same_compares_every_byte() {
        for n in 0..80usize {
            let a: Vec<u8> = (0..n as u8).map(|i| i.wrapping_mul(7)).collect();
            assert!(same(&a, &a.clone()), "{n}");
            for i in 0..n {
                let mut b = a.clone();
                b[i] ^= 0x20;
                assert!(!same(&a, &b), "{n} {i}");
            }
        }
    }

    #[test]
    fn a_known_host_is_only_ever_a_valid_one() {
        let mut known = KnownHost::default();
        // The empty memo matches no empty value, and a bad value is not kept.
        assert!(!known.valid(""));
        assert!(!known.valid("a b"));
        assert!(!known.valid("a b"));
        assert!(known.valid("a.example:80"));
        assert!(known.valid("a.example:80"));
        assert!(!known.valid("a.example:8x"));
        assert!(!known.valid(""));
        assert!(known.valid("a.example:80"));
        // Too long to keep, still judged.
        let long = "a".repeat(KNOWN_HOST_MAX + 1);
        assert!(known.valid(&long));
        assert_eq!(known.0, "a.example:80");
    }

    proptest::proptest! {
        /// A run of Host values (few distinct ones, so many repeat) is judged by
        /// the memo as by `valid_host` alone, value by value.
        #[test]
        fn the_known_host_judges_as_valid_host(
            hosts in proptest::collection::vec("[a1:%\\[\\]. @fF]{0,6}", 1..40)
        ) {
            let mut known = KnownHost::default();
            for h in &hosts {
                proptest::prop_assert_eq!(known.valid(h), valid_host(h), "{:?}", h);
            }
        }

        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let _ = parse(&bytes, &lim());
        }

        #[test]
        fn prefix_of_valid_is_partial(cut in 0usize..60) {
            let full = b"GET /some/path?q=1 HTTP/1.1\r\nHost: example\r\nA: b\r\n\r\n";
            let cut = cut.min(full.len() - 1);
            proptest::prop_assert_eq!(parse(&full[..cut], &lim()), Ok(Parsed::Partial));
        }
    }
}
