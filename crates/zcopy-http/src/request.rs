//! Parsing a request head (RFC 9112), strictly: anything ambiguous is a 400.
//! (stub: signatures fixed, bodies to be written)

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

/// A parsed request head, borrowing from the read buffer (no allocation), with the
/// header fields the server uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request<'a> {
    /// Method.
    pub method: Method,
    /// The raw request target (origin-form, still percent-encoded).
    pub target: &'a str,
    /// Version.
    pub version: Version,
    /// Whether the connection stays open after the response.
    pub keep_alive: bool,
    /// Content-Length of a request body to read and discard (0 when none).
    pub body_len: u64,
    /// `Transfer-Encoding` was present: a body of unknown length; close after responding.
    pub chunked_body: bool,
    /// Host header value.
    pub host: Option<&'a str>,
    /// Range header value.
    pub range: Option<&'a str>,
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

/// Parses the head at the start of `buf`.
pub fn parse<'a>(buf: &'a [u8], limits: &Limits) -> Result<Parsed<'a>, HttpError> {
    let _ = (buf, limits);
    Err(HttpError {
        status: 501,
        reason: "not implemented yet",
    })
}
