//! HPACK (RFC 7541): decoding through `loona-hpack` with both bounds an HTTP/2
//! server needs (the dynamic table, and the decoded header list), and a stateless
//! encoder of our own (static-table names, literals never indexed: nothing of a
//! response lingers in a table).

/// A header block could not be decoded: the connection's HPACK state is lost
/// (COMPRESSION_ERROR).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompressionError(pub String);

/// A decoded header list: `(name, value)` pairs in order, or `too_large` when the
/// list went past its bound (the block was still decoded to the end, so the table
/// stays in step).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Decoded {
    /// The fields, up to the bound.
    pub fields: Vec<(Vec<u8>, Vec<u8>)>,
    /// The list went past the bound: the fields are incomplete.
    pub too_large: bool,
}

/// A decoder whose dynamic table is at most `table` bytes and whose decoded lists
/// are at most `max_list` bytes (RFC 7541 §4.1 sizes: name + value + 32 per field).
pub struct Decoder {
    inner: loona_hpack::Decoder<'static>,
    max_list: usize,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder")
            .field("max_list", &self.max_list)
            .finish_non_exhaustive()
    }
}

impl Decoder {
    /// A decoder for a table of at most `table` bytes (what we advertise in
    /// SETTINGS_HEADER_TABLE_SIZE, 4096 by default) and lists of at most `max_list`.
    pub fn new(table: usize, max_list: usize) -> Decoder {
        let mut inner = loona_hpack::Decoder::new();
        inner.set_max_allowed_table_size(table);
        inner.set_max_table_size(table);
        Decoder { inner, max_list }
    }

    /// Decodes one whole header block.
    pub fn decode(&mut self, block: &[u8]) -> Result<Decoded, CompressionError> {
        let mut d = Decoded::default();
        let mut size = 0usize;
        let max = self.max_list;
        self.inner
            .decode_with_cb(block, |n, v| {
                if d.too_large {
                    return;
                }
                size = size.saturating_add(n.len() + v.len() + 32);
                if size > max {
                    d.too_large = true;
                    d.fields = Vec::new();
                    return;
                }
                d.fields.push((n.into_owned(), v.into_owned()));
            })
            .map_err(|e| CompressionError(format!("{e:?}")))?;
        Ok(d)
    }
}

/// Static-table indices of the names a response uses (RFC 7541 Appendix A).
fn static_name(name: &str) -> Option<usize> {
    Some(match name {
        "accept-ranges" => 18,
        "access-control-allow-origin" => 20,
        "age" => 21,
        "allow" => 22,
        "cache-control" => 24,
        "content-disposition" => 25,
        "content-encoding" => 26,
        "content-language" => 27,
        "content-length" => 28,
        "content-location" => 29,
        "content-range" => 30,
        "content-type" => 31,
        "date" => 33,
        "etag" => 34,
        "expires" => 36,
        "last-modified" => 44,
        "link" => 45,
        "location" => 46,
        "refresh" => 52,
        "retry-after" => 53,
        "server" => 54,
        "set-cookie" => 55,
        "strict-transport-security" => 56,
        "vary" => 59,
        "www-authenticate" => 61,
        _ => return None,
    })
}

/// Appends integer `v` with an `n`-bit prefix whose high bits are `first`.
pub fn encode_int(out: &mut Vec<u8>, first: u8, n: u8, mut v: usize) {
    let max = (1usize << n) - 1;
    if v < max {
        out.push(first | v as u8);
        return;
    }
    out.push(first | max as u8);
    v -= max;
    while v >= 128 {
        out.push((v % 128) as u8 | 0x80);
        v /= 128;
    }
    out.push(v as u8);
}

fn encode_str(out: &mut Vec<u8>, s: &[u8]) {
    encode_int(out, 0, 7, s.len());
    out.extend_from_slice(s);
}

/// Appends the encoding of a response's `:status` and `fields` (names lower case)
/// to `out`: stateless, nothing indexed.
pub fn encode_response(out: &mut Vec<u8>, status: u16, fields: &[(&str, &str)]) {
    let idx = match status {
        200 => 8,
        204 => 9,
        206 => 10,
        304 => 11,
        400 => 12,
        404 => 13,
        500 => 14,
        _ => 0,
    };
    if idx != 0 {
        out.push(0x80 | idx);
    } else {
        // Literal without indexing, name `:status` (index 8).
        encode_int(out, 0x00, 4, 8);
        encode_str(out, status.to_string().as_bytes());
    }
    for (n, v) in fields {
        match static_name(n) {
            Some(i) => encode_int(out, 0x00, 4, i),
            None => {
                out.push(0x00);
                encode_str(out, n.as_bytes());
            }
        }
        encode_str(out, v.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_we_encode_decodes() {
        let mut out = Vec::new();
        encode_response(
            &mut out,
            206,
            &[
                ("content-range", "bytes 0-1/2"),
                ("x-long-name", &"v".repeat(300)),
            ],
        );
        let mut d = Decoder::new(4096, 65536);
        let got = d.decode(&out).unwrap();
        assert_eq!(got.fields[0], (b":status".to_vec(), b"206".to_vec()));
        assert_eq!(
            got.fields[1],
            (b"content-range".to_vec(), b"bytes 0-1/2".to_vec())
        );
        assert_eq!(got.fields[2].1.len(), 300);
        out.clear();
        encode_response(&mut out, 401, &[("www-authenticate", "Basic")]);
        let got = d.decode(&out).unwrap();
        assert_eq!(got.fields[0].1, b"401");
        assert_eq!(got.fields[1].0, b"www-authenticate");
    }

    #[test]
    fn rfc7541_c4_requests_with_huffman_decode() {
        // C.4.1 .. C.4.3: three requests with Huffman coding sharing one table.
        let mut d = Decoder::new(4096, 65536);
        let b1 = [
            0x82, 0x86, 0x84, 0x41, 0x8c, 0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab,
            0x90, 0xf4, 0xff,
        ];
        let got = d.decode(&b1).unwrap();
        assert_eq!(
            got.fields[3],
            (b":authority".to_vec(), b"www.example.com".to_vec())
        );
        let b2 = [
            0x82, 0x86, 0x84, 0xbe, 0x58, 0x86, 0xa8, 0xeb, 0x10, 0x64, 0x9c, 0xbf,
        ];
        let got = d.decode(&b2).unwrap();
        assert_eq!(got.fields[3].1, b"www.example.com");
        assert_eq!(
            got.fields[4],
            (b"cache-control".to_vec(), b"no-cache".to_vec())
        );
    }

    #[test]
    fn an_hpack_bomb_is_bounded() {
        // One 4000-byte entry added to the table, then referenced 1000 times by one
        // byte each: 4 MB decoded from 5 KB. The list stops at its bound; the table
        // never grows past 4096.
        let mut d = Decoder::new(4096, 16 * 1024);
        let mut block = Vec::new();
        block.push(0x40); // literal with incremental indexing, new name
        encode_str(&mut block, b"x-bomb");
        encode_str(&mut block, &[b'a'; 4000]);
        block.extend(std::iter::repeat_n(0xbe, 1000)); // index 62
        let got = d.decode(&block).unwrap();
        assert!(got.too_large);
        assert!(got.fields.is_empty());
        // A table size update above what we allow is an error, not an allocation.
        let mut big = Vec::new();
        encode_int(&mut big, 0x20, 5, 1 << 30);
        big.push(0x82);
        assert!(d.decode(&big).is_err());
    }

    #[test]
    fn garbage_is_an_error_never_a_panic() {
        let mut d = Decoder::new(4096, 65536);
        for b in [
            &[0xffu8][..],
            &[0x7f],
            &[0x00, 0x85],
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
            &[0xc0],
        ] {
            assert!(d.decode(b).is_err(), "{b:?}");
        }
    }
}
