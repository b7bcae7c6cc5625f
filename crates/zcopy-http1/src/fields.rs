//! A response head without a protocol: a status and its fields, as the site decides
//! them. The HTTP/1 core writes it as a status line and `Name: value` lines
//! ([`crate::head::write_http1`]); the HTTP/2 core HPACK-encodes it straight from
//! here (its static-table index per [`Name`]), so no protocol parses another's
//! bytes. Date and Server are each protocol's to add when it sends the head.
//!
//! No allocation per field: the names a response uses are a [`Name`]; values (and
//! the rare name outside that list, such as a `--header` rule's) sit in one byte
//! buffer the head keeps between responses.

/// A field name a response uses. [`Name::http1`] is its spelling on the wire in
/// HTTP/1.1, [`Name::lower`] in HTTP/2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Name {
    AcceptRanges,
    AccessControlAllowHeaders,
    AccessControlAllowMethods,
    AccessControlAllowOrigin,
    AccessControlExposeHeaders,
    AccessControlMaxAge,
    Allow,
    CacheControl,
    Connection,
    ContentDisposition,
    ContentEncoding,
    ContentLength,
    ContentRange,
    ContentType,
    Dav,
    ETag,
    LastModified,
    Location,
    LockToken,
    MsAuthorVia,
    RetryAfter,
    StrictTransportSecurity,
    UploadOffset,
    Vary,
    WwwAuthenticate,
}

/// How many [`Name`]s there are (`Name as usize` is below it).
pub const NAME_COUNT: usize = NAMES.len();

/// Per [`Name`], in its order: HTTP/1 spelling, lower case, HPACK static-table
/// index of the name (RFC 7541 Appendix A; 0: none).
const NAMES: [(&str, &str, u8); 25] = [
    ("Accept-Ranges", "accept-ranges", 18),
    (
        "Access-Control-Allow-Headers",
        "access-control-allow-headers",
        0,
    ),
    (
        "Access-Control-Allow-Methods",
        "access-control-allow-methods",
        0,
    ),
    (
        "Access-Control-Allow-Origin",
        "access-control-allow-origin",
        20,
    ),
    (
        "Access-Control-Expose-Headers",
        "access-control-expose-headers",
        0,
    ),
    ("Access-Control-Max-Age", "access-control-max-age", 0),
    ("Allow", "allow", 22),
    ("Cache-Control", "cache-control", 24),
    ("Connection", "connection", 0),
    ("Content-Disposition", "content-disposition", 25),
    ("Content-Encoding", "content-encoding", 26),
    ("Content-Length", "content-length", 28),
    ("Content-Range", "content-range", 30),
    ("Content-Type", "content-type", 31),
    ("DAV", "dav", 0),
    ("ETag", "etag", 34),
    ("Last-Modified", "last-modified", 44),
    ("Location", "location", 46),
    ("Lock-Token", "lock-token", 0),
    ("MS-Author-Via", "ms-author-via", 0),
    ("Retry-After", "retry-after", 53),
    ("Strict-Transport-Security", "strict-transport-security", 56),
    ("Upload-Offset", "upload-offset", 0),
    ("Vary", "vary", 59),
    ("WWW-Authenticate", "www-authenticate", 61),
];

#[cfg(test)]
const ALL: [Name; 25] = [
    Name::AcceptRanges,
    Name::AccessControlAllowHeaders,
    Name::AccessControlAllowMethods,
    Name::AccessControlAllowOrigin,
    Name::AccessControlExposeHeaders,
    Name::AccessControlMaxAge,
    Name::Allow,
    Name::CacheControl,
    Name::Connection,
    Name::ContentDisposition,
    Name::ContentEncoding,
    Name::ContentLength,
    Name::ContentRange,
    Name::ContentType,
    Name::Dav,
    Name::ETag,
    Name::LastModified,
    Name::Location,
    Name::LockToken,
    Name::MsAuthorVia,
    Name::RetryAfter,
    Name::StrictTransportSecurity,
    Name::UploadOffset,
    Name::Vary,
    Name::WwwAuthenticate,
];

impl Name {
    /// Its spelling in an HTTP/1.1 head (`Content-Type`, `ETag`).
    pub fn http1(self) -> &'static str {
        NAMES[self as usize].0
    }

    /// Its spelling in HTTP/2 (lower case).
    /// The name as HTTP/1.1 writes it, followed by `: `, as one piece.
    pub fn http1_prefix(self) -> &'static [u8] {
        match self {
            Name::AcceptRanges => b"Accept-Ranges: ",
            Name::AccessControlAllowHeaders => b"Access-Control-Allow-Headers: ",
            Name::AccessControlAllowMethods => b"Access-Control-Allow-Methods: ",
            Name::AccessControlAllowOrigin => b"Access-Control-Allow-Origin: ",
            Name::AccessControlExposeHeaders => b"Access-Control-Expose-Headers: ",
            Name::AccessControlMaxAge => b"Access-Control-Max-Age: ",
            Name::Allow => b"Allow: ",
            Name::CacheControl => b"Cache-Control: ",
            Name::Connection => b"Connection: ",
            Name::ContentDisposition => b"Content-Disposition: ",
            Name::ContentEncoding => b"Content-Encoding: ",
            Name::ContentLength => b"Content-Length: ",
            Name::ContentRange => b"Content-Range: ",
            Name::ContentType => b"Content-Type: ",
            Name::Dav => b"DAV: ",
            Name::ETag => b"ETag: ",
            Name::LastModified => b"Last-Modified: ",
            Name::Location => b"Location: ",
            Name::LockToken => b"Lock-Token: ",
            Name::MsAuthorVia => b"MS-Author-Via: ",
            Name::RetryAfter => b"Retry-After: ",
            Name::StrictTransportSecurity => b"Strict-Transport-Security: ",
            Name::UploadOffset => b"Upload-Offset: ",
            Name::Vary => b"Vary: ",
            Name::WwwAuthenticate => b"WWW-Authenticate: ",
        }
    }

    pub fn lower(self) -> &'static str {
        NAMES[self as usize].1
    }

    /// Its index in the HPACK static table, if it has one.
    pub fn hpack_static(self) -> Option<usize> {
        match NAMES[self as usize].2 {
            0 => None,
            i => Some(i as usize),
        }
    }

    /// The name spelled exactly `s` in HTTP/1.1 (case matters: another spelling
    /// is kept as it is, so an HTTP/1.1 head says what it was told).
    pub fn from_http1(s: &str) -> Option<Name> {
        Some(match s {
            "Accept-Ranges" => Name::AcceptRanges,
            "Access-Control-Allow-Headers" => Name::AccessControlAllowHeaders,
            "Access-Control-Allow-Methods" => Name::AccessControlAllowMethods,
            "Access-Control-Allow-Origin" => Name::AccessControlAllowOrigin,
            "Access-Control-Expose-Headers" => Name::AccessControlExposeHeaders,
            "Access-Control-Max-Age" => Name::AccessControlMaxAge,
            "Allow" => Name::Allow,
            "Cache-Control" => Name::CacheControl,
            "Connection" => Name::Connection,
            "Content-Disposition" => Name::ContentDisposition,
            "Content-Encoding" => Name::ContentEncoding,
            "Content-Length" => Name::ContentLength,
            "Content-Range" => Name::ContentRange,
            "Content-Type" => Name::ContentType,
            "DAV" => Name::Dav,
            "ETag" => Name::ETag,
            "Last-Modified" => Name::LastModified,
            "Location" => Name::Location,
            "Lock-Token" => Name::LockToken,
            "MS-Author-Via" => Name::MsAuthorVia,
            "Retry-After" => Name::RetryAfter,
            "Strict-Transport-Security" => Name::StrictTransportSecurity,
            "Upload-Offset" => Name::UploadOffset,
            "Vary" => Name::Vary,
            "WWW-Authenticate" => Name::WwwAuthenticate,
            _ => return None,
        })
    }

    /// A connection-specific field (RFC 9113 §8.2.2): never sent over HTTP/2.
    pub fn connection_specific(self) -> bool {
        self == Name::Connection
    }
}

/// A field's name: a known [`Name`], or other bytes of the head's buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldName {
    /// One of the names responses use.
    Known(Name),
    /// Bytes `start..end` of the head's buffer (as given: case kept).
    Other(u32, u32),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Field {
    pub(crate) name: FieldName,
    /// Bytes `.0...1` of the head's buffer.
    value: (u32, u32),
}

/// A response head: status and fields in order, values in one buffer. Reused
/// between responses (clearing keeps the capacity).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ResponseHead {
    /// Status code.
    pub status: u16,
    pub(crate) fields: Vec<Field>,
    buf: Vec<u8>,
    /// Kept blocks of fields ([`FieldBlock`]), each with the index of the field it
    /// comes before (`fields.len()`: after the last), in order.
    pub(crate) blocks: Vec<(usize, std::sync::Arc<FieldBlock>)>,
}

/// Fields worked out once and kept with what they describe (a held file's
/// Content-Type, Content-Length, Last-Modified, ETag and Accept-Ranges), added to a
/// head as one piece ([`ResponseHead::push_block`]): their values are checked once,
/// when the block is made, and the block holds them as HTTP/1.1 lines too, so that
/// protocol copies them whole. Every other protocol reads them as fields
/// ([`ResponseHead::fields`]).
#[derive(Debug, PartialEq, Eq)]
pub struct FieldBlock {
    head: ResponseHead,
    http1: Box<[u8]>,
}

impl FieldBlock {
    /// The fields `fields`, in order (values checked as [`ResponseHead::push`]
    /// checks them).
    pub fn new(fields: &[(Name, &str)]) -> FieldBlock {
        let mut head = ResponseHead::default();
        for &(name, value) in fields {
            head.push(name, value);
        }
        let mut http1 = Vec::new();
        write_fields_http1(&mut http1, &head);
        FieldBlock {
            head,
            http1: http1.into(),
        }
    }

    /// The fields as HTTP/1.1 lines (`Name: value\r\n` each).
    pub fn http1(&self) -> &[u8] {
        &self.http1
    }
}

/// Appends the fields of `head` as HTTP/1.1 lines; a kept block's lines are copied
/// whole.
pub(crate) fn write_fields_http1(buf: &mut Vec<u8>, head: &ResponseHead) {
    let mut blocks = head.blocks.iter().peekable();
    for (i, f) in head.fields.iter().enumerate() {
        while let Some((_, b)) = blocks.next_if(|(at, _)| *at == i) {
            buf.extend_from_slice(b.http1());
        }
        match f.name {
            FieldName::Known(n) => buf.extend_from_slice(n.http1_prefix()),
            other => {
                buf.extend_from_slice(head.other_name(other));
                buf.extend_from_slice(b": ");
            }
        }
        buf.extend_from_slice(head.value(f));
        buf.extend_from_slice(b"\r\n");
    }
    for (_, b) in blocks {
        buf.extend_from_slice(b.http1());
    }
}

/// No NUL, CR or LF in `v`: eight bytes at a time (a word has a zero byte
/// where `(x - 0x01..) & !x & 0x80..` has a bit set), the last bytes as the word
/// ending the value (overlapping bytes already checked); a value shorter than a
/// word byte by byte.
pub fn no_nul_cr_lf(v: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    if v.len() < 8 {
        return !v.iter().any(|&b| matches!(b, 0 | b'\r' | b'\n'));
    }
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let bad_in = |w: &[u8]| {
        let x = u64::from_ne_bytes(w.try_into().expect("8 bytes"));
        zero(x) | zero(x ^ (ONES * u64::from(b'\r'))) | zero(x ^ (ONES * u64::from(b'\n')))
    };
    let mut words = v.chunks_exact(8);
    let mut bad = 0;
    for w in &mut words {
        bad |= bad_in(w);
    }
    if !words.remainder().is_empty() {
        bad |= bad_in(&v[v.len() - 8..]);
    }
    bad == 0
}

fn push_field_text(buf: &mut Vec<u8>, s: &[u8]) {
    if !no_nul_cr_lf(s) {
        buf.extend(s.iter().filter(|&&b| !matches!(b, b'\r' | b'\n' | 0)));
    } else {
        buf.extend_from_slice(s);
    }
}

/// Appends the decimal digits of `v` without allocating.
pub(crate) fn push_u64(buf: &mut Vec<u8>, mut v: u64) {
    // Two digits per step from a table of "00".."99".
    const PAIRS: [u8; 200] = {
        let mut t = [0u8; 200];
        let mut i = 0;
        while i < 100 {
            t[2 * i] = b'0' + (i / 10) as u8;
            t[2 * i + 1] = b'0' + (i % 10) as u8;
            i += 1;
        }
        t
    };
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    while v >= 100 {
        let p = (v % 100) as usize * 2;
        v /= 100;
        i -= 2;
        digits[i..i + 2].copy_from_slice(&PAIRS[p..p + 2]);
    }
    if v >= 10 {
        let p = v as usize * 2;
        i -= 2;
        digits[i..i + 2].copy_from_slice(&PAIRS[p..p + 2]);
    } else {
        i -= 1;
        digits[i] = b'0' + v as u8;
    }
    buf.extend_from_slice(&digits[i..]);
}

impl Clone for ResponseHead {
    fn clone(&self) -> ResponseHead {
        ResponseHead {
            status: self.status,
            fields: self.fields.clone(),
            buf: self.buf.clone(),
            blocks: self.blocks.clone(),
        }
    }

    /// Into the capacity `self` has (an encoder's copy of the last head).
    fn clone_from(&mut self, from: &ResponseHead) {
        self.status = from.status;
        self.fields.clone_from(&from.fields);
        self.buf.clone_from(&from.buf);
        self.blocks.clone_from(&from.blocks);
    }
}

impl ResponseHead {
    /// Empties it for a response with `status` (capacity kept).
    pub fn reset(&mut self, status: u16) {
        self.status = status;
        self.fields.clear();
        self.buf.clear();
        if !self.blocks.is_empty() {
            self.blocks.clear();
        }
    }

    /// Appends the fields of a kept block, in its order.
    pub fn push_block(&mut self, block: &std::sync::Arc<FieldBlock>) {
        self.blocks.push((self.fields.len(), block.clone()));
    }

    /// The value bytes of one of its own fields.
    pub(crate) fn value(&self, f: &Field) -> &[u8] {
        &self.buf[f.value.0 as usize..f.value.1 as usize]
    }

    fn end(&self) -> u32 {
        self.buf.len() as u32
    }

    /// Appends a field with a known name.
    pub fn push(&mut self, name: Name, value: &str) {
        let start = self.end();
        push_field_text(&mut self.buf, value.as_bytes());
        self.fields.push(Field {
            name: FieldName::Known(name),
            value: (start, self.end()),
        });
    }

    /// Appends a numeric field (Content-Length).
    pub fn push_u64(&mut self, name: Name, value: u64) {
        let start = self.end();
        push_u64(&mut self.buf, value);
        self.fields.push(Field {
            name: FieldName::Known(name),
            value: (start, self.end()),
        });
    }

    /// Appends a field named `name` as spelled (a [`Name`] when it is one).
    pub fn push_named(&mut self, name: &str, value: &str) {
        if let Some(n) = Name::from_http1(name) {
            return self.push(n, value);
        }
        let n0 = self.end();
        push_field_text(&mut self.buf, name.as_bytes());
        let n1 = self.end();
        push_field_text(&mut self.buf, value.as_bytes());
        self.fields.push(Field {
            name: FieldName::Other(n0, n1),
            value: (n1, self.end()),
        });
    }

    /// Appends a numeric field named `name` as spelled.
    pub fn push_named_u64(&mut self, name: &str, value: u64) {
        if let Some(n) = Name::from_http1(name) {
            return self.push_u64(n, value);
        }
        let n0 = self.end();
        push_field_text(&mut self.buf, name.as_bytes());
        let n1 = self.end();
        push_u64(&mut self.buf, value);
        self.fields.push(Field {
            name: FieldName::Other(n0, n1),
            value: (n1, self.end()),
        });
    }

    /// The fields in order (a block's in its place): name, and value bytes.
    pub fn fields(&self) -> impl Iterator<Item = (FieldName, &[u8])> + '_ {
        (0..=self.fields.len()).flat_map(move |i| {
            self.blocks
                .iter()
                .filter(move |(at, _)| *at == i)
                .flat_map(|(_, b)| b.head.own_fields())
                .chain(self.fields.get(i).map(|f| (f.name, self.value(f))))
        })
    }

    /// Its own fields, in order (a block holds no block).
    fn own_fields(&self) -> impl Iterator<Item = (FieldName, &[u8])> + '_ {
        self.fields.iter().map(|f| (f.name, self.value(f)))
    }

    /// The bytes of an [`FieldName::Other`] name.
    pub fn other_name(&self, name: FieldName) -> &[u8] {
        match name {
            FieldName::Known(n) => n.http1().as_bytes(),
            FieldName::Other(s, e) => &self.buf[s as usize..e as usize],
        }
    }

    /// The value of the first field named `name`.
    pub fn get(&self, name: Name) -> Option<&[u8]> {
        self.fields()
            .find(|(n, _)| *n == FieldName::Known(name))
            .map(|(_, v)| v)
    }

    /// Content-Length, when the head has one that parses.
    pub fn content_length(&self) -> Option<u64> {
        let v = self.get(Name::ContentLength)?;
        // Digits as push_u64 writes them: read straight from the bytes.
        if !v.is_empty() && v.len() <= 19 && v.iter().all(u8::is_ascii_digit) {
            return Some(v.iter().fold(0, |n, &d| n * 10 + u64::from(d - b'0')));
        }
        std::str::from_utf8(v).ok()?.trim().parse().ok()
    }

    /// How many fields.
    pub fn len(&self) -> usize {
        self.fields.len() + self.blocks.iter().map(|(_, b)| b.head.len()).sum::<usize>()
    }

    /// No field.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What the site answers into: the head, and the body when it is small and held
/// in memory ([`crate::plan::Body::InHead`]). Reused between responses.
#[derive(Debug, Default, Clone)]
pub struct Out {
    /// The response head.
    pub head: ResponseHead,
    /// Body bytes sent after the head (an error page, a listing).
    pub body: Vec<u8>,
}

impl Out {
    /// Empties head and body (capacity kept).
    pub fn clear(&mut self) {
        self.head.reset(0);
        self.body.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The word-at-a-time scan finds NUL, CR and LF wherever they are (every
    /// offset in a word, and in the tail), and nothing else.
    #[test]
    fn nul_cr_lf_are_found_at_every_offset() {
        for len in 0..20 {
            for at in 0..len {
                for bad in [0u8, b'\r', b'\n'] {
                    let mut v = vec![b'a'; len];
                    v[at] = bad;
                    assert!(!no_nul_cr_lf(&v), "{v:?}");
                }
                let mut v = vec![b'a'; len];
                for ok in [1u8, 9, 11, 12, 14, 0x80, 0x8a, 0x8d, 0xff, b' '] {
                    v[at] = ok;
                    assert!(no_nul_cr_lf(&v), "{v:?}");
                }
            }
        }
    }

    #[test]
    fn http1_prefixes_spell_the_names() {
        for n in ALL {
            assert_eq!(n.http1_prefix(), format!("{}: ", n.http1()).as_bytes());
        }
    }

    #[test]
    fn names_round_trip() {
        for (i, n) in ALL.iter().enumerate() {
            assert_eq!(*n as usize, i);
            assert_eq!(Name::from_http1(n.http1()), Some(*n));
            assert_eq!(n.lower(), n.http1().to_ascii_lowercase());
        }
        assert_eq!(Name::from_http1("content-type"), None);
        assert_eq!(Name::from_http1("X-Frame-Options"), None);
    }

    #[test]
    fn fields_keep_order_and_spelling() {
        let mut h = ResponseHead::default();
        h.reset(206);
        h.push_named("Content-Type", "text/plain");
        h.push_u64(Name::ContentLength, 12);
        h.push_named("X-Thing", "a\r\nb");
        let got: Vec<(FieldName, Vec<u8>)> = h.fields().map(|(n, v)| (n, v.to_vec())).collect();
        assert_eq!(
            got[0],
            (FieldName::Known(Name::ContentType), b"text/plain".to_vec())
        );
        assert_eq!(
            got[1],
            (FieldName::Known(Name::ContentLength), b"12".to_vec())
        );
        assert_eq!(h.other_name(got[2].0), b"X-Thing");
        assert_eq!(got[2].1, b"ab");
        assert_eq!(h.content_length(), Some(12));
        for (v, want) in [
            ("0", Some(0)),
            (" 7 ", Some(7)),
            ("+5", Some(5)),
            ("18446744073709551615", Some(u64::MAX)),
            ("18446744073709551616", None),
            ("9999999999999999999", Some(9_999_999_999_999_999_999)),
            ("", None),
            ("1a", None),
        ] {
            let mut h = ResponseHead::default();
            h.push(Name::ContentLength, v);
            assert_eq!(h.content_length(), want, "{v:?}");
        }
        let cap = h.buf.capacity();
        h.reset(200);
        assert!(h.is_empty());
        assert_eq!(h.buf.capacity(), cap);
    }
}
