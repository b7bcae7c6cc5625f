//! A decoded request header list, checked as RFC 9113 §8.2–8.3 asks, kept owned
//! (the stream lives across loop turns: a password check may answer later), and
//! lent to the site as the same [`Request`] the HTTP/1 core parses.

use zcopy_http1::fields::no_nul_cr_lf;
use zcopy_http1::request::{BodyFraming, HttpError, ListenKind, Method, Request, Version};

/// Bytes `.0..1` of a [`Head`]'s text.
type Span = (u32, u32);

/// A request's header list, checked: its text in one buffer (two allocations a
/// request: the text and the field list).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Head {
    text: String,
    method: Span,
    path: Span,
    authority: Option<Span>,
    /// Regular fields, names in lower case, in order.
    fields: Vec<(Span, Span)>,
    /// The request has no body (END_STREAM on its HEADERS).
    pub end_stream: bool,
    /// content-length, if given.
    pub content_length: Option<u64>,
}

/// Why a header list is malformed (answered with RST_STREAM PROTOCOL_ERROR).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

/// The bytes a field name may hold (RFC 9110 §5.6.2 tchar, lower case only).
static NAME_BYTES: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_lowercase()
            || b.is_ascii_digit()
            || matches!(
                b,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        i += 1;
    }
    t
};

/// Every byte looked at, without an early exit (the loop vectorizes: names
/// and values are short, and almost always valid).
fn valid_name(n: &[u8]) -> bool {
    !n.is_empty() && n.iter().fold(true, |ok, &b| ok & NAME_BYTES[b as usize])
}

fn valid_value(v: &[u8]) -> bool {
    no_nul_cr_lf(v)
        && !v.first().is_some_and(|b| matches!(b, b' ' | b'\t'))
        && !v.last().is_some_and(|b| matches!(b, b' ' | b'\t'))
}

/// A [`Head`] being built from decoded fields, one at a time: the first fault is
/// kept and reported by [`Builder::finish`].
#[derive(Debug)]
pub struct Builder {
    h: Head,
    /// The head's text, checked UTF-8 once whole ([`Builder::finish`]).
    text: Vec<u8>,
    method: Option<Span>,
    scheme: bool,
    path: Option<Span>,
    regular: bool,
    err: Option<Malformed>,
}

impl Builder {
    /// A list for a HEADERS with (`end_stream`) or without END_STREAM.
    pub fn new(end_stream: bool) -> Builder {
        Builder::reuse(Head::default(), end_stream)
    }

    /// As [`Builder::new`], in the buffers of a head done with (see
    /// [`Head::spare`]).
    pub fn reuse(spare: Head, end_stream: bool) -> Builder {
        let mut text = spare.text.into_bytes();
        text.clear();
        text.reserve(128);
        let mut fields = spare.fields;
        fields.clear();
        Builder {
            h: Head {
                end_stream,
                fields,
                ..Head::default()
            },
            text,
            method: None,
            scheme: false,
            path: None,
            regular: false,
            err: None,
        }
    }

    fn push(&mut self, s: &[u8]) -> Span {
        let a = self.text.len() as u32;
        self.text.extend_from_slice(s);
        (a, self.text.len() as u32)
    }

    /// Takes the next field: pseudo-fields first, once each; names in lower
    /// case; no connection-specific field; values without NUL, CR, LF or
    /// surrounding white space.
    pub fn field(&mut self, n: &[u8], v: &[u8]) {
        if self.err.is_none()
            && let Err(e) = self.check(n, v)
        {
            self.err = Some(e);
        }
    }

    fn check(&mut self, n: &[u8], v: &[u8]) -> Result<(), Malformed> {
        if !valid_value(v) {
            return Err(Malformed("invalid field value"));
        }
        if let Some(p) = n.strip_prefix(b":") {
            if self.regular {
                return Err(Malformed("pseudo-field after a regular field"));
            }
            let repeated = match p {
                b"method" => self.method.is_some(),
                b"scheme" => std::mem::replace(&mut self.scheme, true),
                b"path" => self.path.is_some(),
                b"authority" => self.h.authority.is_some(),
                _ => return Err(Malformed("unknown pseudo-field")),
            };
            if repeated {
                return Err(Malformed("repeated pseudo-field"));
            }
            match p {
                b"method" => self.method = Some(self.push(v)),
                b"path" => self.path = Some(self.push(v)),
                b"authority" => self.h.authority = Some(self.push(v)),
                _ => {}
            }
            return Ok(());
        }
        self.regular = true;
        if !valid_name(n) {
            return Err(Malformed("invalid field name"));
        }
        match n {
            b"connection" | b"keep-alive" | b"proxy-connection" | b"transfer-encoding"
            | b"upgrade" => return Err(Malformed("connection-specific field")),
            b"te" if v != b"trailers" => return Err(Malformed("te other than trailers")),
            b"content-length" => {
                let n = std::str::from_utf8(v)
                    .ok()
                    .and_then(|v| v.parse::<u64>().ok())
                    .ok_or(Malformed("invalid content-length"))?;
                if self.h.content_length.replace(n).is_some_and(|o| o != n) {
                    return Err(Malformed("conflicting content-length"));
                }
            }
            _ => {}
        }
        let n = self.push(n);
        let v = self.push(v);
        self.h.fields.push((n, v));
        Ok(())
    }

    /// The checked head: the three pseudo-fields a request needs, a path in
    /// origin form, an authority that agrees with Host.
    pub fn finish(self) -> Result<Head, Malformed> {
        if let Some(e) = self.err {
            return Err(e);
        }
        let mut h = self.h;
        h.text = String::from_utf8(self.text).map_err(|_| Malformed("field value not UTF-8"))?;
        h.method = self.method.ok_or(Malformed("no :method"))?;
        if h.method() == "CONNECT" {
            return Err(Malformed("CONNECT is not served"));
        }
        if !self.scheme {
            return Err(Malformed("no :scheme"));
        }
        h.path = self
            .path
            .filter(|p| p.0 != p.1)
            .ok_or(Malformed("no :path"))?;
        // Origin-form (or `*` for OPTIONS), visible ASCII only, as HTTP/1's parser
        // takes a request target; the authority likewise.
        let visible = |s: &str| s.bytes().all(|b| b.is_ascii_graphic());
        let path = h.path();
        if !visible(path) || !(path.starts_with('/') || path == "*" && h.method() == "OPTIONS") {
            return Err(Malformed("invalid :path"));
        }
        if h.authority().is_some_and(|a| a.is_empty() || !visible(a)) {
            return Err(Malformed("invalid :authority"));
        }
        // Host and :authority must agree (RFC 9113 §8.3.1).
        if let (Some(a), Some(host)) = (h.authority(), h.field("host"))
            && a != host
        {
            return Err(Malformed(":authority and host differ"));
        }
        if h.end_stream && h.content_length.is_some_and(|n| n > 0) {
            return Err(Malformed("content-length without a body"));
        }
        Ok(h)
    }
}

/// A stream's priority (RFC 9218 §4): urgency 0 (first) to 7 (last), and whether
/// its response may go in pieces between others' (incremental).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Priority {
    /// `u`: 0..=7, 3 by default.
    pub urgency: u8,
    /// `i`: false by default.
    pub incremental: bool,
}

impl Default for Priority {
    fn default() -> Priority {
        Priority {
            urgency: 3,
            incremental: false,
        }
    }
}

impl Priority {
    /// Reads a Priority field value (a Structured Field dictionary, RFC 8941
    /// §3.2) into `self`: `u` an integer 0..=7, `i` a boolean; other keys are
    /// ignored, and so is (its default taken) a `u` or `i` of another type or
    /// out of range; a later member replaces an earlier one. A value that is not a dictionary leaves `self`
    /// as it was and returns false (the caller keeps the defaults).
    pub fn parse_into(&mut self, v: &[u8]) -> bool {
        let mut p = *self;
        let mut c = Cursor { b: v, i: 0 };
        c.ows();
        if c.done() {
            return true;
        }
        loop {
            let Some(key) = c.key() else { return false };
            let item = if c.eat(b'=') {
                match c.item() {
                    Some(it) => it,
                    None => return false,
                }
            } else {
                Item::Bool(true)
            };
            if !c.params() {
                return false;
            }
            // A later member replaces an earlier one of the same key, a value
            // of the wrong type or range included (that one is then ignored).
            let d = Priority::default();
            match (key, item) {
                (b"u", Item::Int(n)) if (0..=7).contains(&n) => p.urgency = n as u8,
                (b"u", _) => p.urgency = d.urgency,
                (b"i", Item::Bool(b)) => p.incremental = b,
                (b"i", _) => p.incremental = d.incremental,
                _ => {}
            }
            c.ows();
            if c.done() {
                break;
            }
            if !c.eat(b',') {
                return false;
            }
            c.ows();
            if c.done() {
                return false; // a trailing comma
            }
        }
        *self = p;
        true
    }

    /// The priority a field value says (defaults where it says nothing, or is
    /// malformed).
    pub fn parse(v: &[u8]) -> Priority {
        let mut p = Priority::default();
        if !p.parse_into(v) {
            p = Priority::default();
        }
        p
    }
}

/// A bare item's value, as far as a priority needs it.
enum Item {
    Int(i64),
    Bool(bool),
    Other,
}

/// A Structured Field parser over one value (RFC 8941 §4.2), for dictionaries.
struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    fn done(&self) -> bool {
        self.i >= self.b.len()
    }
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }
    fn eat(&mut self, c: u8) -> bool {
        let hit = self.peek() == Some(c);
        self.i += hit as usize;
        hit
    }
    fn ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }
    fn sp(&mut self) {
        while self.peek() == Some(b' ') {
            self.i += 1;
        }
    }
    fn key(&mut self) -> Option<&'a [u8]> {
        let a = self.i;
        if !matches!(self.peek()?, b'a'..=b'z' | b'*') {
            return None;
        }
        while matches!(
            self.peek(),
            Some(b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' | b'*')
        ) {
            self.i += 1;
        }
        Some(&self.b[a..self.i])
    }
    /// Parameters after an item: `;key[=bare item]`, each checked, none kept.
    fn params(&mut self) -> bool {
        while self.eat(b';') {
            self.sp();
            if self.key().is_none() {
                return false;
            }
            if self.eat(b'=') && self.bare().is_none() {
                return false;
            }
        }
        true
    }
    /// A member's value: an item with parameters, or an inner list.
    fn item(&mut self) -> Option<Item> {
        if self.eat(b'(') {
            loop {
                self.sp();
                if self.eat(b')') {
                    break;
                }
                self.bare()?;
                if !self.params() {
                    return None;
                }
                if !matches!(self.peek(), Some(b' ' | b')')) {
                    return None;
                }
            }
            return Some(Item::Other);
        }
        self.bare()
    }
    fn bare(&mut self) -> Option<Item> {
        let c = self.peek()?;
        match c {
            b'-' | b'0'..=b'9' => {
                let a = self.i;
                self.eat(b'-');
                let d = self.i;
                while matches!(self.peek(), Some(b'0'..=b'9')) {
                    self.i += 1;
                }
                let int_digits = self.i - d;
                if int_digits == 0 {
                    return None;
                }
                if self.eat(b'.') {
                    let f = self.i;
                    while matches!(self.peek(), Some(b'0'..=b'9')) {
                        self.i += 1;
                    }
                    let frac = self.i - f;
                    if int_digits > 12 || frac == 0 || frac > 3 {
                        return None;
                    }
                    return Some(Item::Other);
                }
                if int_digits > 15 {
                    return None;
                }
                std::str::from_utf8(&self.b[a..self.i])
                    .ok()?
                    .parse()
                    .ok()
                    .map(Item::Int)
            }
            b'"' => {
                self.i += 1;
                loop {
                    match self.peek()? {
                        b'\\' => {
                            self.i += 1;
                            if !matches!(self.peek()?, b'"' | b'\\') {
                                return None;
                            }
                        }
                        b'"' => {
                            self.i += 1;
                            return Some(Item::Other);
                        }
                        0x20..=0x7e => {}
                        _ => return None,
                    }
                    self.i += 1;
                }
            }
            b':' => {
                self.i += 1;
                while matches!(self.peek()?, b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'+' | b'/' | b'=')
                {
                    self.i += 1;
                }
                self.eat(b':').then_some(Item::Other)
            }
            b'?' => {
                self.i += 1;
                let v = match self.peek()? {
                    b'0' => false,
                    b'1' => true,
                    _ => return None,
                };
                self.i += 1;
                Some(Item::Bool(v))
            }
            b'A'..=b'Z' | b'a'..=b'z' | b'*' => {
                while self
                    .peek()
                    .is_some_and(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~:/".contains(&b))
                {
                    self.i += 1;
                }
                Some(Item::Other)
            }
            _ => None,
        }
    }
}

impl Head {
    /// Checks a decoded list (see [`Builder`]).
    pub fn from_fields(list: Vec<(Vec<u8>, Vec<u8>)>, end_stream: bool) -> Result<Head, Malformed> {
        let mut b = Builder::new(end_stream);
        for (n, v) in &list {
            b.field(n, v);
        }
        b.finish()
    }

    /// A head the server makes up for an answer that has no request to go with
    /// (a 431: the list was dropped), as the access log shows it.
    pub fn stand_in(method: &str, path: &str) -> Head {
        let mut b = Builder::new(false);
        b.h.method = b.push(method.as_bytes());
        b.h.path = b.push(path.as_bytes());
        b.h.text = String::from_utf8(b.text).unwrap_or_default();
        b.h
    }

    /// Worth keeping for a next request's [`Builder::reuse`]: its buffers are
    /// small (a large list's are let go).
    pub fn spare(&self) -> bool {
        self.text.capacity() <= 1024 && self.fields.capacity() <= 32
    }

    fn span(&self, s: Span) -> &str {
        &self.text[s.0 as usize..s.1 as usize]
    }

    /// `:method`
    pub fn method(&self) -> &str {
        self.span(self.method)
    }

    /// `:path`
    pub fn path(&self) -> &str {
        self.span(self.path)
    }

    /// `:authority`
    pub fn authority(&self) -> Option<&str> {
        self.authority.map(|s| self.span(s))
    }

    /// Regular fields, names in lower case, in order.
    pub fn fields(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.fields
            .iter()
            .map(|&(n, v)| (self.span(n), self.span(v)))
    }

    /// The request line for the access log: `GET /path HTTP/2.0`, every byte that
    /// is not printable ASCII as `?` (as the HTTP/1 core logs its lines).
    pub fn line(&self) -> String {
        format!("{} {} HTTP/2.0", self.method(), self.path())
            .bytes()
            .map(|b| {
                if b.is_ascii_graphic() || b == b' ' {
                    b as char
                } else {
                    '?'
                }
            })
            .collect()
    }

    /// The priority the request asks for (RFC 9218): `None` when it carries no
    /// `priority` field; its members taken in order across repeated fields; a
    /// malformed value gives the defaults.
    pub fn priority(&self) -> Option<Priority> {
        let mut p = Priority::default();
        let mut any = false;
        for (_, v) in self.fields().filter(|(n, _)| *n == "priority") {
            any = true;
            if !p.parse_into(v.as_bytes()) {
                return Some(Priority::default());
            }
        }
        any.then_some(p)
    }

    /// The first value of field `name`.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// The request as the site takes it (the fields the HTTP/1 parser reads, with
    /// its rules: a repeated Range, If-*, or Authorization is a 400). The body's
    /// framing says what comes in DATA frames: nothing (END_STREAM on the
    /// HEADERS), a content-length's bytes, or a body of unknown length (as a
    /// chunked one is over HTTP/1.1).
    pub fn request(&self, via: ListenKind) -> Result<Request<'_>, HttpError> {
        let method = match self.method() {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            _ => Method::Other,
        };
        let mut r = Request::new(method, self.method(), self.path(), Version::Http11);
        r.via = via;
        r.keep_alive = true;
        (r.body, r.body_len) = match (self.end_stream, self.content_length) {
            (true, _) => (BodyFraming::None, 0),
            (false, Some(n)) => (BodyFraming::Length(n), n),
            (false, None) => (BodyFraming::Chunked, 0),
        };
        r.host = self.authority().or(self.field("host"));
        fn once<'a>(
            slot: &mut Option<&'a str>,
            v: &'a str,
            what: &'static str,
        ) -> Result<(), HttpError> {
            if slot.replace(v).is_some() {
                return Err(HttpError {
                    status: 400,
                    reason: what,
                });
            }
            Ok(())
        }
        for (n, v) in self.fields() {
            match n {
                "range" => once(&mut r.range, v, "repeated Range")?,
                "if-range" => once(&mut r.if_range, v, "repeated If-Range")?,
                "if-none-match" => once(&mut r.if_none_match, v, "repeated If-None-Match")?,
                "if-match" => once(&mut r.if_match, v, "repeated If-Match")?,
                "if-modified-since" => {
                    once(&mut r.if_modified_since, v, "repeated If-Modified-Since")?
                }
                "if-unmodified-since" => once(
                    &mut r.if_unmodified_since,
                    v,
                    "repeated If-Unmodified-Since",
                )?,
                "authorization" => once(&mut r.authorization, v, "repeated Authorization")?,
                "user-agent" => r.user_agent = Some(v),
                "referer" => r.referer = Some(v),
                "accept" => r.accept = Some(v),
                "accept-encoding" => {
                    r.accept_encoding = Some(if r.accept_encoding.is_some() { "" } else { v })
                }
                "origin" => r.origin = Some(v),
                "access-control-request-method" => r.ac_request_method = Some(v),
                "access-control-request-headers" => r.ac_request_headers = Some(v),
                "content-range" => once(&mut r.content_range, v, "repeated Content-Range")?,
                "expect" => r.expect_continue |= v.eq_ignore_ascii_case("100-continue"),
                // WebDAV (RFC 4918 §10), each the last one sent, as over HTTP/1.1.
                "depth" => r.dav.depth = Some(v),
                "destination" => r.dav.destination = Some(v),
                "overwrite" => r.dav.overwrite = Some(v),
                "if" => r.dav.if_ = Some(v),
                "lock-token" => r.dav.lock_token = Some(v),
                "timeout" => r.dav.timeout = Some(v),
                _ => {}
            }
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(f: &[(&str, &str)]) -> Vec<(Vec<u8>, Vec<u8>)> {
        f.iter()
            .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect()
    }

    /// The checks as they were before the head kept one text buffer (a String
    /// per field): the reference the builder is compared with.
    #[derive(Debug, Default)]
    struct Old {
        method: String,
        path: String,
        authority: Option<String>,
        fields: Vec<(String, String)>,
        end_stream: bool,
        content_length: Option<u64>,
    }

    impl Old {
        fn field(&self, name: &str) -> Option<&str> {
            self.fields
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        }
    }

    fn reference(list: Vec<(Vec<u8>, Vec<u8>)>, end_stream: bool) -> Result<Old, Malformed> {
        let mut h = Old {
            end_stream,
            ..Old::default()
        };
        let (mut method, mut scheme, mut path) = (None, None, None);
        let mut regular = false;
        for (n, v) in list {
            if !valid_value(&v) {
                return Err(Malformed("invalid field value"));
            }
            let v = String::from_utf8(v).map_err(|_| Malformed("field value not UTF-8"))?;
            if let Some(p) = n.strip_prefix(b":") {
                if regular {
                    return Err(Malformed("pseudo-field after a regular field"));
                }
                let slot = match p {
                    b"method" => &mut method,
                    b"scheme" => &mut scheme,
                    b"path" => &mut path,
                    b"authority" => &mut h.authority,
                    _ => return Err(Malformed("unknown pseudo-field")),
                };
                if slot.replace(v).is_some() {
                    return Err(Malformed("repeated pseudo-field"));
                }
                continue;
            }
            regular = true;
            if !valid_name(&n) {
                return Err(Malformed("invalid field name"));
            }
            match &n[..] {
                b"connection" | b"keep-alive" | b"proxy-connection" | b"transfer-encoding"
                | b"upgrade" => return Err(Malformed("connection-specific field")),
                b"te" if v != "trailers" => return Err(Malformed("te other than trailers")),
                b"content-length" => {
                    let n = v
                        .parse::<u64>()
                        .map_err(|_| Malformed("invalid content-length"))?;
                    if h.content_length.replace(n).is_some_and(|o| o != n) {
                        return Err(Malformed("conflicting content-length"));
                    }
                }
                _ => {}
            }
            // Names are checked ASCII.
            let n = String::from_utf8(n).map_err(|_| Malformed("invalid field name"))?;
            h.fields.push((n, v));
        }
        h.method = method.ok_or(Malformed("no :method"))?;
        if h.method == "CONNECT" {
            return Err(Malformed("CONNECT is not served"));
        }
        if scheme.is_none() {
            return Err(Malformed("no :scheme"));
        }
        h.path = path
            .filter(|p| !p.is_empty())
            .ok_or(Malformed("no :path"))?;
        // Origin-form (or `*` for OPTIONS), visible ASCII only, as HTTP/1's parser
        // takes a request target; the authority likewise.
        let visible = |s: &str| s.bytes().all(|b| b.is_ascii_graphic());
        if !visible(&h.path) || !(h.path.starts_with('/') || h.path == "*" && h.method == "OPTIONS")
        {
            return Err(Malformed("invalid :path"));
        }
        if h.authority
            .as_deref()
            .is_some_and(|a| a.is_empty() || !visible(a))
        {
            return Err(Malformed("invalid :authority"));
        }
        // Host and :authority must agree (RFC 9113 §8.3.1).
        if let (Some(a), Some(host)) = (&h.authority, h.field("host"))
            && a != host
        {
            return Err(Malformed(":authority and host differ"));
        }
        if end_stream && h.content_length.is_some_and(|n| n > 0) {
            return Err(Malformed("content-length without a body"));
        }
        Ok(h)
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3000))]
        /// Lists drawn from pseudo-fields, fields the checks look at, and bytes
        /// that break names and values: the builder takes what the old checks
        /// took, and keeps the same method, path, authority, fields and length.
        #[test]
        fn the_builder_checks_as_before(
            list in proptest::collection::vec(
                (
                    proptest::sample::select(vec![
                        &b":method"[..], b":scheme", b":path", b":authority", b":x",
                        b"host", b"te", b"te", b"content-length", b"content-length",
                        b"connection", b"user-agent", b"user-agent", b"range", b"Upper",
                        b"a b", b"x-\xff", b"",
                    ]),
                    proptest::sample::select(vec![
                        &b"GET"[..], b"CONNECT", b"OPTIONS", b"/", b"*", b"/a b", b"a",
                        b"example.com", b"trailers", b"trailers", b"gzip", b"0", b"12",
                        b"12", b"+5", b"x", b"x", b"x", b" x", b"x\n", b"\xc3\xa9",
                        b"\xc3\xa9", b"\xff", b"",
                    ]),
                ),
                0..4,
            ),
            end_stream in proptest::bool::ANY,
            with_base in proptest::bool::ANY,
        ) {
            // Half the lists start as a good request does.
            let base: &[(&[u8], &[u8])] = if with_base {
                &[(b":method", b"GET"), (b":scheme", b"https"), (b":path", b"/p")]
            } else {
                &[]
            };
            let list: Vec<(Vec<u8>, Vec<u8>)> = base
                .iter()
                .chain(&list)
                .map(|(n, v)| (n.to_vec(), v.to_vec()))
                .collect();
            let new = Head::from_fields(list.clone(), end_stream);
            let old = reference(list, end_stream);
            proptest::prop_assert_eq!(new.is_ok(), old.is_ok(), "{:?} / {:?}", new, old);
            if let (Ok(n), Ok(o)) = (new, old) {
                proptest::prop_assert_eq!(n.method(), o.method);
                proptest::prop_assert_eq!(n.path(), o.path);
                proptest::prop_assert_eq!(n.authority(), o.authority.as_deref());
                let f: Vec<(String, String)> =
                    n.fields().map(|(a, b)| (a.to_string(), b.to_string())).collect();
                proptest::prop_assert_eq!(f, o.fields);
                proptest::prop_assert_eq!(n.content_length, o.content_length);
                proptest::prop_assert_eq!(n.end_stream, o.end_stream);
            }
        }
    }

    const BASE: [(&str, &str); 4] = [
        (":method", "GET"),
        (":scheme", "https"),
        (":path", "/a%20b?x"),
        (":authority", "example.com"),
    ];

    #[test]
    fn a_request_becomes_the_sites_request() {
        let mut f = BASE.to_vec();
        f.extend([
            ("range", "bytes=0-1"),
            ("user-agent", "curl"),
            ("if-none-match", "\"x\""),
        ]);
        let h = Head::from_fields(list(&f), true).unwrap();
        let r = h.request(ListenKind::Https).unwrap();
        assert_eq!(r.method, Method::Get);
        assert_eq!(&*r.target, "/a%20b?x");
        assert_eq!(r.host, Some("example.com"));
        assert_eq!(r.range, Some("bytes=0-1"));
        assert_eq!(r.if_none_match, Some("\"x\""));
        assert_eq!(r.via, ListenKind::Https);
        assert!(r.keep_alive);
        assert_eq!(h.line(), "GET /a%20b?x HTTP/2.0");
        let h = Head::stand_in("G\u{1b}[31mé", "/a%20b?x");
        assert_eq!(h.line(), "G?[31m?? /a%20b?x HTTP/2.0");
        let mut f = BASE.to_vec();
        f.extend([("range", "bytes=0-1"), ("range", "bytes=2-3")]);
        let h = Head::from_fields(list(&f), true).unwrap();
        assert_eq!(h.request(ListenKind::Http).unwrap_err().status, 400);
    }

    /// A head built in the buffers of an earlier one holds nothing of it.
    #[test]
    fn a_reused_head_starts_empty() {
        let mut f = BASE.to_vec();
        f.extend([("range", "bytes=0-1"), ("user-agent", "curl")]);
        let old = Head::from_fields(list(&f), false).unwrap();
        assert!(old.spare());
        let mut b = Builder::reuse(old, true);
        for (n, v) in [(":method", "HEAD"), (":scheme", "http"), (":path", "/b")] {
            b.field(n.as_bytes(), v.as_bytes());
        }
        let h = b.finish().unwrap();
        let fresh = Head::from_fields(
            list(&[(":method", "HEAD"), (":scheme", "http"), (":path", "/b")]),
            true,
        )
        .unwrap();
        assert_eq!(
            (
                h.method(),
                h.path(),
                h.authority(),
                h.fields().count(),
                h.end_stream
            ),
            ("HEAD", "/b", None, 0, true)
        );
        assert_eq!(h.line(), fresh.line());
        assert_eq!(h.field("range"), None);
    }

    #[test]
    fn malformed_lists_are_refused() {
        let bad: &[&[(&str, &str)]] = &[
            &[(":method", "GET"), (":path", "/")],
            &[(":method", "GET"), (":scheme", "http")],
            &[(":method", "GET"), (":scheme", "http"), (":path", "")],
            &[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                (":path", "/"),
            ],
            &[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                (":foo", "x"),
            ],
            &[
                (":method", "GET"),
                ("a", "b"),
                (":scheme", "http"),
                (":path", "/"),
            ],
            &[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                ("Upper", "x"),
            ],
            &[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                ("connection", "x"),
            ],
            &[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                ("te", "gzip"),
            ],
            &[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                ("a", " x"),
            ],
            &[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                ("a", "x\ny"),
            ],
            &[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                ("content-length", "1"),
            ],
            &[(":method", "GET"), (":scheme", "http"), (":path", "/a b")],
            &[(":method", "GET"), (":scheme", "http"), (":path", "a")],
            &[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/\u{1b}"),
            ],
            &[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                (":authority", "a b"),
            ],
            &[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                (":authority", "a"),
                ("host", "b"),
            ],
        ];
        for f in bad {
            assert!(Head::from_fields(list(f), true).is_err(), "{f:?}");
        }
        let mut ok = BASE.to_vec();
        ok.push(("te", "trailers"));
        assert!(Head::from_fields(list(&ok), true).is_ok());
    }

    #[test]
    fn priority_fields_parse_with_defaults_for_what_they_do_not_say() {
        let p = |u: u8, i: bool| Priority {
            urgency: u,
            incremental: i,
        };
        for (v, want) in [
            ("", p(3, false)),
            ("u=0", p(0, false)),
            ("u=7, i", p(7, true)),
            ("i, u=1", p(1, true)),
            ("i=?1", p(3, true)),
            ("i=?0", p(3, false)),
            ("u=5;x=1, i;y", p(5, true)),
            (
                "u=2, foo=\"bar, baz\", bin=:aGk=:, l=(a \"b\" 1.5);q, n=-4.25, u=6",
                p(6, false),
            ),
            // A later member replaces an earlier one.
            ("u=1, u=4", p(4, false)),
            // Wrong type or out of range: that member ignored (its default).
            ("u=8", p(3, false)),
            ("u=-1", p(3, false)),
            ("u=1, u=x", p(3, false)),
            ("u=1.0", p(3, false)),
            ("i=1", p(3, false)),
            ("u=2, i=\"yes\"", p(2, false)),
            // Not a dictionary: the defaults.
            ("u=0,", p(3, false)),
            ("U=0", p(3, false)),
            ("u=0 i", p(3, false)),
            ("u==1", p(3, false)),
            ("u=\"1", p(3, false)),
            ("u=1, i=?2", p(3, false)),
            ("u=1;", p(3, false)),
            ("u=(1", p(3, false)),
            ("u=1234567890123456", p(3, false)),
        ] {
            assert_eq!(Priority::parse(v.as_bytes()), want, "{v:?}");
        }
    }

    #[test]
    fn a_head_has_a_priority_only_if_it_asks() {
        let base = [(":method", "GET"), (":scheme", "http"), (":path", "/")];
        let head = |extra: &[(&'static str, &'static str)]| {
            let mut f = base.to_vec();
            f.extend_from_slice(extra);
            Head::from_fields(list(&f), true).unwrap()
        };
        assert_eq!(head(&[]).priority(), None);
        assert_eq!(
            head(&[("priority", "u=1")]).priority(),
            Some(Priority {
                urgency: 1,
                incremental: false
            })
        );
        // Repeated fields are one dictionary.
        assert_eq!(
            head(&[("priority", "u=1"), ("priority", "i")]).priority(),
            Some(Priority {
                urgency: 1,
                incremental: true
            })
        );
        // Malformed: the defaults (and still a signal).
        assert_eq!(
            head(&[("priority", "u=1"), ("priority", "?")]).priority(),
            Some(Priority::default())
        );
    }
}
