//! Validators (ETag, Last-Modified) and preconditions (RFC 9110 §13).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::request::{Method, Request};

/// First second HTTP dates can't express (year 10000); httpdate panics from here on.
const HTTP_DATE_END: u64 = 253_402_300_800;

/// `t` truncated to whole seconds since the epoch, clamped to what HTTP dates can say.
fn http_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        .min(HTTP_DATE_END - 1)
}

/// The validators of one file version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Validators {
    /// Strong ETag including quotes, e.g. `"1a2b-400-5f3e2c1d"` (from inode, size,
    /// mtime in ns: stable across restarts).
    pub etag: String,
    /// Last modification time (whole seconds are what HTTP dates carry).
    pub modified: SystemTime,
}

impl Validators {
    /// Validators of a file from its inode number, size and modification time
    /// (seconds and nanoseconds since 1970, as a stat gives them).
    ///
    /// The ETag is `"<inode>-<size>-<mtime in ns>"` in lower-case hex (a pre-1970
    /// mtime wraps, which keeps it unique). The modification time is clamped to the
    /// range HTTP dates can carry (1970 to 9999).
    pub fn from_parts(ino: u64, size: u64, secs: i64, nsec: u64) -> Validators {
        let nsec = nsec.min(999_999_999);
        let mtime_ns = (i128::from(secs) * 1_000_000_000 + i128::from(nsec)) as u64;
        let modified = if secs < 0 {
            UNIX_EPOCH
        } else {
            let secs = (secs as u64).min(HTTP_DATE_END - 1);
            UNIX_EPOCH + Duration::new(secs, nsec as u32)
        };
        Validators {
            etag: format!("\"{ino:x}-{size:x}-{mtime_ns:x}\""),
            modified,
        }
    }

    /// The Last-Modified header value (IMF-fixdate).
    pub fn last_modified(&self) -> String {
        httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(http_secs(self.modified)))
    }
}

/// What the preconditions decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precondition {
    /// Go on with the normal response.
    Proceed,
    /// 304 Not Modified (GET/HEAD with a matching If-None-Match or If-Modified-Since).
    NotModified,
    /// 412 Precondition Failed (If-Match or If-Unmodified-Since failed).
    Failed,
}

/// One entity-tag of a list: (weak, opaque tag including its quotes).
type Tag<'a> = (bool, &'a str);

/// Parses `*` or a comma-separated list of entity-tags (RFC 9110 §8.8.3).
/// `Some(None)` is `*`; `None` is a syntax error.
fn tags(value: &str) -> Option<Option<Vec<Tag<'_>>>> {
    let value = value.trim_matches([' ', '\t']);
    if value == "*" {
        return Some(None);
    }
    let mut out = Vec::new();
    let mut rest = value;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if rest.is_empty() {
            break;
        }
        let (weak, r) = match rest.strip_prefix("W/") {
            Some(r) => (true, r),
            None => (false, rest),
        };
        let body = r.strip_prefix('"')?;
        let close = body.find('"')?;
        let opaque = &r[..close + 2];
        if !opaque[1..opaque.len() - 1]
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x7e).contains(&b) || b >= 0x80)
        {
            return None;
        }
        out.push((weak, opaque));
        rest = &r[close + 2..];
        let trimmed = rest.trim_start_matches([' ', '\t']);
        if !(trimmed.is_empty() || trimmed.starts_with(',')) {
            return None;
        }
        rest = trimmed;
    }
    if out.is_empty() {
        None
    } else {
        Some(Some(out))
    }
}

/// If-Match semantics: strong comparison, `*` matches any current representation.
/// A malformed field matches nothing.
fn matches_strong(field: &str, etag: &str) -> bool {
    match tags(field) {
        Some(None) => true,
        Some(Some(list)) => list.iter().any(|&(weak, t)| !weak && t == etag),
        None => false,
    }
}

/// If-None-Match semantics: weak comparison, `*` matches. A malformed field matches
/// nothing.
fn matches_weak(field: &str, etag: &str) -> bool {
    let ours = etag.strip_prefix("W/").unwrap_or(etag);
    match tags(field) {
        Some(None) => true,
        Some(Some(list)) => list.iter().any(|&(_, t)| t == ours),
        None => false,
    }
}

/// A valid HTTP-date (any of the three formats) in whole seconds since the epoch.
fn date_secs(field: &str) -> Option<u64> {
    let t = httpdate::parse_http_date(field.trim_matches([' ', '\t'])).ok()?;
    Some(http_secs(t))
}

/// Evaluates If-Match, If-Unmodified-Since, If-None-Match, If-Modified-Since in the
/// order RFC 9110 §13.2.2 gives.
///
/// Dates compare at whole-second precision; invalid dates are ignored.
/// If-Unmodified-Since is ignored when If-Match is present, If-Modified-Since when
/// If-None-Match is present or the method isn't GET/HEAD. A matching If-None-Match
/// is 304 for GET/HEAD and 412 for other methods.
///
/// A request with none of the four fields (nearly every one) proceeds inline: the
/// call with its saved registers was ~30 instructions a request.
#[inline]
pub fn evaluate(req: &Request<'_>, v: &Validators) -> Precondition {
    if req.if_match.is_none()
        && req.if_unmodified_since.is_none()
        && req.if_none_match.is_none()
        && req.if_modified_since.is_none()
    {
        return Precondition::Proceed;
    }
    evaluate_fields(req, v)
}

/// [`evaluate`] of a request with at least one of the fields.
#[inline(never)]
fn evaluate_fields(req: &Request<'_>, v: &Validators) -> Precondition {
    // Worked out only when a date field asks (most requests carry none).
    let modified = || http_secs(v.modified);
    let get_or_head = matches!(req.method, Method::Get | Method::Head);
    if let Some(field) = req.if_match {
        if !matches_strong(field, &v.etag) {
            return Precondition::Failed;
        }
    } else if let Some(date) = req.if_unmodified_since.and_then(date_secs)
        && modified() > date
    {
        return Precondition::Failed;
    }
    if let Some(field) = req.if_none_match {
        if matches_weak(field, &v.etag) {
            return if get_or_head {
                Precondition::NotModified
            } else {
                Precondition::Failed
            };
        }
    } else if get_or_head
        && let Some(date) = req.if_modified_since.and_then(date_secs)
        && modified() <= date
    {
        return Precondition::NotModified;
    }
    Precondition::Proceed
}

/// Whether a Range header should be honoured given If-Range (absent → true).
///
/// An entity-tag must match ours strongly (a weak tag never does); a date must equal
/// Last-Modified to the second. Anything else (including garbage) → false, so the
/// whole representation is sent (RFC 9110 §13.1.5).
pub fn if_range_allows(req: &Request<'_>, v: &Validators) -> bool {
    let Some(field) = req.if_range else {
        return true;
    };
    let field = field.trim_matches([' ', '\t']);
    if field.starts_with("W/") {
        false
    } else if field.starts_with('"') {
        field == v.etag
    } else {
        date_secs(field) == Some(http_secs(v.modified))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::Version;

    fn req() -> Request<'static> {
        Request {
            host: Some("x"),
            ..Request::new(Method::Get, "GET", "/", Version::Http11)
        }
    }

    /// Sun, 06 Nov 1994 08:49:37 GMT plus half a second.
    fn validators() -> Validators {
        Validators {
            etag: "\"abc-10-ff\"".into(),
            modified: UNIX_EPOCH + Duration::new(784_111_777, 500_000_000),
        }
    }

    const AT: &str = "Sun, 06 Nov 1994 08:49:37 GMT";
    const BEFORE: &str = "Sun, 06 Nov 1994 08:49:36 GMT";
    const AFTER: &str = "Sun, 06 Nov 1994 08:49:38 GMT";

    #[test]
    fn from_parts_tags_inode_size_and_mtime() {
        let v = Validators::from_parts(0x1234, 0x400, 784_111_777, 5);
        let ns = 784_111_777u64 * 1_000_000_000 + 5;
        assert_eq!(v.etag, format!("\"1234-400-{ns:x}\""));
        assert_eq!(Validators::from_parts(0x1234, 0x400, 784_111_777, 5), v);
        let lm = httpdate::parse_http_date(&v.last_modified()).unwrap();
        assert_eq!(http_secs(lm), 784_111_777);
        // A change of size or time changes the tag.
        assert_ne!(
            Validators::from_parts(0x1234, 0x401, 784_111_777, 5).etag,
            v.etag
        );
        assert_ne!(
            Validators::from_parts(0x1234, 0x400, 784_111_777, 6).etag,
            v.etag
        );
        // Before 1970: the date is the epoch, the tag still unique.
        let old = Validators::from_parts(1, 1, -5, 0);
        assert_eq!(old.modified, UNIX_EPOCH);
    }

    #[test]
    fn last_modified_never_panics() {
        let mut v = validators();
        assert_eq!(v.last_modified(), AT);
        v.modified = UNIX_EPOCH - Duration::from_secs(10);
        assert_eq!(v.last_modified(), "Thu, 01 Jan 1970 00:00:00 GMT");
        v.modified = UNIX_EPOCH + Duration::from_secs(HTTP_DATE_END * 2);
        assert_eq!(v.last_modified(), "Fri, 31 Dec 9999 23:59:59 GMT");
    }

    #[test]
    fn precondition_table() {
        use Precondition::*;
        type Case = (
            Method,
            Option<&'static str>, // If-Match
            Option<&'static str>, // If-Unmodified-Since
            Option<&'static str>, // If-None-Match
            Option<&'static str>, // If-Modified-Since
            Precondition,
        );
        let g = Method::Get;
        let cases: &[Case] = &[
            (g, None, None, None, None, Proceed),
            // If-Match.
            (g, Some("\"abc-10-ff\""), None, None, None, Proceed),
            (g, Some("*"), None, None, None, Proceed),
            (g, Some("\"x\", \"abc-10-ff\""), None, None, None, Proceed),
            (g, Some("\"x\""), None, None, None, Failed),
            (g, Some("W/\"abc-10-ff\""), None, None, None, Failed),
            (g, Some("abc-10-ff"), None, None, None, Failed),
            // If-Unmodified-Since.
            (g, None, Some(AT), None, None, Proceed),
            (g, None, Some(AFTER), None, None, Proceed),
            (g, None, Some(BEFORE), None, None, Failed),
            (g, None, Some("garbage"), None, None, Proceed),
            (
                g,
                None,
                Some("Sunday, 06-Nov-94 08:49:36 GMT"),
                None,
                None,
                Failed,
            ),
            (
                g,
                None,
                Some("Sun Nov  6 08:49:36 1994"),
                None,
                None,
                Failed,
            ),
            // ... ignored when If-Match is present.
            (g, Some("*"), Some(BEFORE), None, None, Proceed),
            // If-None-Match.
            (g, None, None, Some("\"abc-10-ff\""), None, NotModified),
            (g, None, None, Some("W/\"abc-10-ff\""), None, NotModified),
            (
                g,
                None,
                None,
                Some("\"a\",W/\"abc-10-ff\" , \"b\""),
                None,
                NotModified,
            ),
            (g, None, None, Some("*"), None, NotModified),
            (g, None, None, Some("\"other\""), None, Proceed),
            (g, None, None, Some("\"abc-10-ff"), None, Proceed),
            (Method::Head, None, None, Some("*"), None, NotModified),
            (Method::Other, None, None, Some("*"), None, Failed),
            // If-Modified-Since.
            (g, None, None, None, Some(AT), NotModified),
            (g, None, None, None, Some(AFTER), NotModified),
            (g, None, None, None, Some(BEFORE), Proceed),
            (g, None, None, None, Some("nope"), Proceed),
            (Method::Other, None, None, None, Some(AT), Proceed),
            // ... ignored when If-None-Match is present.
            (g, None, None, Some("\"other\""), Some(AT), Proceed),
            // Precedence: If-Match failing beats If-None-Match.
            (g, Some("\"x\""), None, Some("*"), None, Failed),
            (g, None, Some(BEFORE), None, Some(AT), Failed),
            (g, Some("*"), None, Some("\"abc-10-ff\""), None, NotModified),
        ];
        let v = validators();
        for (i, &(method, im, ius, inm, ims, want)) in cases.iter().enumerate() {
            let r = Request {
                method,
                if_match: im,
                if_unmodified_since: ius,
                if_none_match: inm,
                if_modified_since: ims,
                ..req()
            };
            assert_eq!(evaluate(&r, &v), want, "case {i}: {r:?}");
        }
    }

    #[test]
    fn if_range() {
        let v = validators();
        let cases = [
            (None, true),
            (Some("\"abc-10-ff\""), true),
            (Some(" \"abc-10-ff\" "), true),
            (Some("\"abc-10-fe\""), false),
            (Some("W/\"abc-10-ff\""), false),
            (Some(AT), true),
            (Some(BEFORE), false),
            (Some(AFTER), false),
            (Some("junk"), false),
            (Some(""), false),
        ];
        for (field, want) in cases {
            let r = Request {
                if_range: field,
                ..req()
            };
            assert_eq!(if_range_allows(&r, &v), want, "{field:?}");
        }
    }

    #[test]
    fn tag_lists() {
        assert_eq!(tags("*"), Some(None));
        assert_eq!(tags("\"a\""), Some(Some(vec![(false, "\"a\"")])));
        assert_eq!(
            tags(" W/\"a\" ,, \"\" "),
            Some(Some(vec![(true, "\"a\""), (false, "\"\"")]))
        );
        assert_eq!(tags(""), None);
        assert_eq!(tags("\"a\" \"b\""), None);
        assert_eq!(tags("\"a b\""), None);
        assert_eq!(tags("w/\"a\""), None);
        assert_eq!(tags("\"a"), None);
    }
}
