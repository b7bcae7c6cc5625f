//! `Range: bytes=...` (RFC 9110 §14): single, suffix, open-ended and multiple ranges.
//! (stub: signatures fixed, bodies to be written)

/// What to send for a request's Range header, given the representation length.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RangePlan {
    /// No (usable) Range header, invalid syntax, or ranges that add up to more than
    /// the file: 200 with the whole body.
    Full,
    /// 206 with these inclusive-exclusive byte spans (start, end), in request order;
    /// one span → single part, several → multipart/byteranges.
    Partial(Vec<(u64, u64)>),
    /// 416 with `Content-Range: bytes */LEN`.
    Unsatisfiable,
}

/// Most parts we send in one multipart response; more → Full.
pub const MAX_PARTS: usize = 32;

/// Interprets a Range header value for a representation of `len` bytes. Numbers that
/// overflow u64 never wrap.
pub fn plan(header: &str, len: u64) -> RangePlan {
    let _ = (header, len);
    RangePlan::Full
}
