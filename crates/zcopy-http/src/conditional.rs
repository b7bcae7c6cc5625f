//! Validators (ETag, Last-Modified) and preconditions (RFC 9110 §13).
//! (stub: signatures fixed, bodies to be written)

use std::time::SystemTime;

use crate::request::Request;

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
    /// Validators from an fstat.
    pub fn from_stat(st: &rustix::fs::Stat) -> Validators {
        let _ = st;
        Validators {
            etag: String::from("\"stub\""),
            modified: SystemTime::UNIX_EPOCH,
        }
    }

    /// The Last-Modified header value (IMF-fixdate).
    pub fn last_modified(&self) -> String {
        httpdate::fmt_http_date(self.modified)
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

/// Evaluates If-Match, If-Unmodified-Since, If-None-Match, If-Modified-Since in the
/// order RFC 9110 §13.2.2 gives.
pub fn evaluate(req: &Request<'_>, v: &Validators) -> Precondition {
    let _ = (req, v);
    Precondition::Proceed
}

/// Whether a Range header should be honoured given If-Range (absent → true).
pub fn if_range_allows(req: &Request<'_>, v: &Validators) -> bool {
    let _ = (req, v);
    true
}
