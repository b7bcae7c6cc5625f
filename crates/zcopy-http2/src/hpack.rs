//! HPACK (RFC 7541), our own: a decoder with both bounds an HTTP/2 server needs
//! (the dynamic table, and the decoded header list) and a Huffman decoder fed 4
//! bits at a time, handing fields out in place (nothing allocated per field);
//! and a response encoder with a dynamic table per connection ([`Encoder`]):
//! the fields responses repeat and that say nothing secret (date, server,
//! content type and length, a file's validators) go as one-byte references once
//! sent, everything else as literals never indexed.
//!
//! `loona-hpack` was tried first: it bounds both, but builds a hash map of the
//! whole Huffman code for every string it decodes (70% of the server's CPU for
//! 1 KiB requests over h2c).

use std::collections::VecDeque;
use std::sync::LazyLock;

use zcopy_http1::fields::{FieldName, Name, ResponseHead};
use zcopy_http1::head::with_date;

use crate::hpack_tables::{HUFFMAN, STATIC};

/// A header block could not be decoded: the connection's HPACK state is lost
/// (COMPRESSION_ERROR).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompressionError(pub &'static str);

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

/// A dynamic table entry: name and value.
type Entry = (Box<[u8]>, Box<[u8]>);

/// A decoder whose dynamic table is at most `table` bytes and whose decoded lists
/// are at most `max_list` bytes (RFC 7541 §4.1 sizes: name + value + 32 per field).
#[derive(Debug)]
pub struct Decoder {
    /// Newest first.
    dynamic: VecDeque<Entry>,
    /// Bytes the dynamic table holds (RFC 7541 §4.1).
    size: usize,
    /// Its current maximum (set by the peer's size updates).
    max: usize,
    /// The largest maximum the peer may set (our SETTINGS_HEADER_TABLE_SIZE).
    allowed: usize,
    max_list: usize,
    /// Huffman-decoded name and value of the field being read (reused).
    name_buf: Vec<u8>,
    value_buf: Vec<u8>,
}

const ERR_INT: CompressionError = CompressionError("integer too large or cut short");
const ERR_STR: CompressionError = CompressionError("string cut short");
const ERR_IDX: CompressionError = CompressionError("index out of the table");

/// Reads an integer with an `n`-bit prefix at `*pos` (at most 2^28).
fn int(b: &[u8], pos: &mut usize, n: u8) -> Result<usize, CompressionError> {
    let max = (1usize << n) - 1;
    let mut v = (*b.get(*pos).ok_or(ERR_INT)? as usize) & max;
    *pos += 1;
    if v < max {
        return Ok(v);
    }
    let mut shift = 0;
    loop {
        let byte = *b.get(*pos).ok_or(ERR_INT)?;
        *pos += 1;
        v += ((byte & 0x7f) as usize) << shift;
        if byte & 0x80 == 0 {
            return Ok(v);
        }
        shift += 7;
        if shift > 21 {
            return Err(ERR_INT);
        }
    }
}

/// Reads a string literal at `*pos` (Huffman-decoded if flagged).
#[cfg(test)]
fn string(b: &[u8], pos: &mut usize) -> Result<Vec<u8>, CompressionError> {
    let huffman = b.get(*pos).ok_or(ERR_STR)? & 0x80 != 0;
    let len = int(b, pos, 7)?;
    let raw = b.get(*pos..pos.saturating_add(len)).ok_or(ERR_STR)?;
    *pos += len;
    if huffman {
        huffman_decode(raw)
    } else {
        Ok(raw.to_vec())
    }
}

/// Nibble-table entry flags.
const EMIT: u8 = 1;
const FAIL: u8 = 2;
const ACCEPT: u8 = 4;

/// The Huffman decoder as a state machine fed 4 bits at a time (as nghttp2's):
/// states are the code tree's inner nodes; an entry is (next state, flags,
/// symbol). At most one symbol ends within 4 bits (the shortest code has 5).
static NIBBLES: LazyLock<Vec<(u8, u8, u8)>> = LazyLock::new(|| {
    // The code tree: children are inner nodes, or leaves (symbol | LEAF).
    const LEAF: u32 = 1 << 16;
    let mut nodes: Vec<[u32; 2]> = vec![[0, 0]];
    let mut ones: Vec<u8> = vec![0]; // depth if the path is all ones, else 0xff
    for (sym, &(code, len)) in HUFFMAN.iter().enumerate() {
        let mut cur = 0usize;
        for i in (0..len).rev() {
            let bit = ((code >> i) & 1) as usize;
            if i == 0 {
                nodes[cur][bit] = LEAF | sym as u32;
            } else {
                if nodes[cur][bit] == 0 {
                    nodes.push([0, 0]);
                    let d = if bit == 1 && ones[cur] != 0xff {
                        ones[cur] + 1
                    } else {
                        0xff
                    };
                    ones.push(d);
                    nodes[cur][bit] = (nodes.len() - 1) as u32;
                }
                cur = nodes[cur][bit] as usize;
            }
        }
    }
    debug_assert_eq!(nodes.len(), 256);
    let mut t = Vec::with_capacity(nodes.len() * 16);
    for state in 0..nodes.len() {
        for nib in 0..16u32 {
            let (mut cur, mut flags, mut sym) = (state, 0u8, 0u8);
            for i in (0..4).rev() {
                let child = nodes[cur][((nib >> i) & 1) as usize];
                if child & LEAF != 0 {
                    let s = child & !LEAF;
                    if s == 256 {
                        flags |= FAIL;
                    }
                    flags |= EMIT;
                    sym = s as u8;
                    cur = 0;
                } else {
                    cur = child as usize;
                }
            }
            // A block may end here: on a symbol boundary, or within at most 7
            // bits of padding that are all ones (a prefix of EOS).
            if cur == 0 || ones[cur] <= 7 {
                flags |= ACCEPT;
            }
            t.push((cur as u8, flags, sym));
        }
    }
    t
});

/// Decodes a Huffman-coded string (RFC 7541 §5.2): EOS, or padding that is
/// longer than 7 bits or not all ones, is an error.
pub fn huffman_decode(raw: &[u8]) -> Result<Vec<u8>, CompressionError> {
    let mut out = Vec::new();
    huffman_decode_into(raw, &mut out)?;
    Ok(out)
}

/// As [`huffman_decode`], into `out` (emptied first; its capacity is reused).
pub fn huffman_decode_into(raw: &[u8], out: &mut Vec<u8>) -> Result<(), CompressionError> {
    let t = &*NIBBLES;
    out.clear();
    out.reserve(raw.len() * 8 / 5 + 1);
    let mut state = 0usize;
    let mut accept = true;
    for &b in raw {
        for nib in [b >> 4, b & 0xf] {
            let (next, flags, sym) = t[state * 16 + nib as usize];
            if flags & FAIL != 0 {
                return Err(CompressionError("EOS in a Huffman string"));
            }
            if flags & EMIT != 0 {
                out.push(sym);
            }
            state = next as usize;
            accept = flags & ACCEPT != 0;
        }
    }
    if !accept {
        return Err(CompressionError("invalid Huffman padding"));
    }
    Ok(())
}

impl Decoder {
    /// A decoder for a table of at most `table` bytes (what we advertise in
    /// SETTINGS_HEADER_TABLE_SIZE, 4096 by default) and lists of at most `max_list`.
    pub fn new(table: usize, max_list: usize) -> Decoder {
        Decoder {
            dynamic: VecDeque::new(),
            size: 0,
            max: table,
            allowed: table,
            max_list,
            name_buf: Vec::new(),
            value_buf: Vec::new(),
        }
    }

    /// Bytes the dynamic table holds.
    pub fn table_size(&self) -> usize {
        self.size
    }

    fn evict(&mut self) {
        while self.size > self.max {
            let Some((n, v)) = self.dynamic.pop_back() else {
                break;
            };
            self.size -= n.len() + v.len() + 32;
        }
    }

    fn insert(&mut self, e: Entry) {
        let s = e.0.len() + e.1.len() + 32;
        if s > self.max {
            // Larger than the table: it empties (RFC 7541 §4.4).
            self.dynamic.clear();
            self.size = 0;
            return;
        }
        self.size += s;
        self.evict();
        self.dynamic.push_front(e);
    }

    /// Decodes one whole header block into a list (the fields copied out: for
    /// tests and tools; the server reads them in place with
    /// [`Decoder::decode_with`]).
    pub fn decode(&mut self, block: &[u8]) -> Result<Decoded, CompressionError> {
        let mut d = Decoded::default();
        d.too_large = self.decode_with(block, |n, v| d.fields.push((n.to_vec(), v.to_vec())))?;
        if d.too_large {
            d.fields = Vec::new();
        }
        Ok(d)
    }

    /// Decodes one whole header block, giving each field to `field` in order as
    /// `(name, value)` borrowed from the block, the tables or a reused buffer
    /// (nothing allocated but the entries the block adds to the dynamic table).
    /// Returns true when the list went past its bound: `field` saw only the
    /// fields before it, and the caller drops them (the block is still decoded to
    /// the end, so the table stays in step).
    pub fn decode_with(
        &mut self,
        block: &[u8],
        mut field: impl FnMut(&[u8], &[u8]),
    ) -> Result<bool, CompressionError> {
        let mut too_large = false;
        let mut list = 0usize;
        let mut pos = 0;
        let mut at_start = true;
        while pos < block.len() {
            let b = block[pos];
            if b & 0xe0 == 0x20 {
                // Dynamic table size update: only before the first field.
                if !at_start {
                    return Err(CompressionError("table size update after a field"));
                }
                let max = int(block, &mut pos, 5)?;
                if max > self.allowed {
                    return Err(CompressionError("table size above the limit"));
                }
                self.max = max;
                self.evict();
                continue;
            }
            at_start = false;
            // Literal strings are read first (into the reused buffers), then the
            // table is looked up: the slices borrow both at once.
            let (name_idx, name_lit, value_lit, index) = if b & 0x80 != 0 {
                (int(block, &mut pos, 7)?, None, None, false)
            } else {
                let (prefix, index) = if b & 0xc0 == 0x40 {
                    (6, true)
                } else {
                    (4, false)
                };
                let idx = int(block, &mut pos, prefix)?;
                let name = match idx {
                    0 => Some(lit(block, &mut pos, &mut self.name_buf)?),
                    i => {
                        lookup(&self.dynamic, i)?;
                        None
                    }
                };
                let value = lit(block, &mut pos, &mut self.value_buf)?;
                (idx, name, Some(value), index)
            };
            let (n, v): (&[u8], &[u8]) = match name_lit {
                Some(l) => (l.get(block, &self.name_buf), &[]),
                None => lookup(&self.dynamic, name_idx)?,
            };
            let v = match value_lit {
                Some(l) => l.get(block, &self.value_buf),
                None => v,
            };
            let entry: Option<Entry> = index.then(|| (n.into(), v.into()));
            if !too_large {
                list = list.saturating_add(n.len() + v.len() + 32);
                if list > self.max_list {
                    too_large = true;
                } else {
                    field(n, v);
                }
            }
            if let Some(e) = entry {
                self.insert(e);
            }
        }
        Ok(too_large)
    }
}

/// Where a decoded string literal is: bytes of the block, or the buffer it was
/// Huffman-decoded into.
#[derive(Clone, Copy)]
enum Lit {
    Raw(usize, usize),
    Buf,
}

impl Lit {
    fn get<'a>(self, block: &'a [u8], buf: &'a [u8]) -> &'a [u8] {
        match self {
            Lit::Raw(s, e) => &block[s..e],
            Lit::Buf => buf,
        }
    }
}

/// Reads a string literal at `*pos`: a plain one stays in the block, a Huffman
/// one is decoded into `buf`.
fn lit(b: &[u8], pos: &mut usize, buf: &mut Vec<u8>) -> Result<Lit, CompressionError> {
    let huffman = b.get(*pos).ok_or(ERR_STR)? & 0x80 != 0;
    let len = int(b, pos, 7)?;
    let start = *pos;
    let raw = b.get(start..start.saturating_add(len)).ok_or(ERR_STR)?;
    *pos += len;
    if huffman {
        huffman_decode_into(raw, buf)?;
        Ok(Lit::Buf)
    } else {
        Ok(Lit::Raw(start, start + len))
    }
}

/// Entry `idx` of the static table (1..=61) or the dynamic one (62..).
fn lookup(dynamic: &VecDeque<Entry>, idx: usize) -> Result<(&[u8], &[u8]), CompressionError> {
    match idx {
        0 => Err(ERR_IDX),
        1..=61 => {
            let (n, v) = STATIC[idx - 1];
            Ok((n.as_bytes(), v.as_bytes()))
        }
        _ => dynamic
            .get(idx - 62)
            .map(|(n, v)| (&n[..], &v[..]))
            .ok_or(ERR_IDX),
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

/// Appends `name: value` as a literal field without indexing, its name a literal
/// too, no Huffman coding (RFC 7541 §6.2.2): what any decoder takes, and what a
/// test or a simple client writes.
pub fn encode_literal(out: &mut Vec<u8>, name: &str, value: &str) {
    out.push(0x00);
    encode_str(out, name.as_bytes());
    encode_str(out, value.as_bytes());
}

/// Appends the encoding of a response's `:status` and `fields` (names lower case)
/// to `out`: stateless, nothing indexed.
pub fn encode_response(out: &mut Vec<u8>, status: u16, fields: &[(&str, &str)]) {
    encode_status(out, status);
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

/// Field names of HTTP/1.1 connection management, never sent in HTTP/2
/// (RFC 9113 §8.2.2).
const CONNECTION_SPECIFIC: [&str; 5] = [
    "connection",
    "keep-alive",
    "transfer-encoding",
    "upgrade",
    "proxy-connection",
];

/// Appends `:status` (indexed when the static table has it).
fn encode_status(out: &mut Vec<u8>, status: u16) {
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
        let d = [
            b'0' + (status / 100 % 10) as u8,
            b'0' + (status / 10 % 10) as u8,
            b'0' + (status % 10) as u8,
        ];
        encode_str(out, &d);
    }
}

/// `v` without leading and trailing spaces and tabs.
fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// Appends the encoding of a protocol-neutral response head: `:status`, date,
/// server, then its fields in order (names lower case, connection-specific ones
/// left out): stateless, nothing indexed, names from the static table where it
/// has them.
pub fn encode_head(out: &mut Vec<u8>, head: &ResponseHead) {
    Encoder::stateless().head(out, head);
}

/// The largest dynamic table our encoder keeps, whatever the peer allows.
pub const ENCODER_TABLE: usize = 4096;

/// The encoder's name slots: every [`Name`], then these two.
const SLOT_DATE: usize = zcopy_http1::fields::NAME_COUNT;
const SLOT_SERVER: usize = SLOT_DATE + 1;
const SLOTS: usize = SLOT_SERVER + 1;

/// Values longer than this are never indexed (they would push out the short
/// fields every response repeats).
const MAX_INDEXED_VALUE: usize = 128;

/// Response fields whose value repeats across responses and says nothing
/// secret: worth a dynamic table entry. Tokens (Lock-Token), challenges, and
/// what a request names (Location, Content-Range, Content-Disposition) are sent
/// as literals never indexed, as are names outside [`Name`].
fn worth_indexing(n: Name) -> bool {
    matches!(
        n,
        Name::AcceptRanges
            | Name::AccessControlAllowOrigin
            | Name::Allow
            | Name::CacheControl
            | Name::ContentEncoding
            | Name::ContentLength
            | Name::ContentType
            | Name::Dav
            | Name::ETag
            | Name::LastModified
            | Name::MsAuthorVia
            | Name::StrictTransportSecurity
            | Name::Vary
    )
}

/// A response encoder with a dynamic table (RFC 7541 §2.3.2, §4), one per
/// connection: the fields responses repeat (date, server, content type, a
/// file's validators) go as one-byte references once sent; everything else as
/// before, literals never indexed. The table follows the peer's
/// SETTINGS_HEADER_TABLE_SIZE ([`Encoder::set_limit`]), at most
/// [`ENCODER_TABLE`] bytes; a change is signalled at the start of the next block.
#[derive(Debug)]
pub struct Encoder {
    /// Newest first: (name, value), the name in lower case.
    table: VecDeque<Entry>,
    /// Entries ever added and evicted: entry number `k` (from 0) is at
    /// `added - 1 - k` in the table while `k >= evicted`.
    added: u64,
    evicted: u64,
    /// Per name ([`Name`] as a number, then date and server), the number of its
    /// newest entry plus one (0: none): a field is looked up there only, one
    /// comparison of its value.
    newest: [u64; SLOTS],
    size: usize,
    /// The table's maximum now (what the peer's decoder holds us to).
    max: usize,
    /// The smallest maximum since the last block, to be signalled with it.
    pending: Option<usize>,
    /// The last head encoded without changing the table, and its block: the
    /// same head again (a file served again), in the same second, on the same
    /// table, encodes to the same bytes.
    last: Option<Box<Last>>,
}

#[derive(Debug, Default)]
struct Last {
    head: ResponseHead,
    date: Vec<u8>,
    block: Vec<u8>,
    added: u64,
    evicted: u64,
}

impl Default for Encoder {
    fn default() -> Encoder {
        Encoder::new()
    }
}

impl Encoder {
    /// An encoder for a peer with the default table (4096 bytes).
    pub fn new() -> Encoder {
        Encoder {
            table: VecDeque::new(),
            added: 0,
            evicted: 0,
            newest: [0; SLOTS],
            size: 0,
            max: ENCODER_TABLE.min(4096),
            pending: None,
            last: None,
        }
    }

    /// An encoder that never indexes (its table is empty and stays so).
    pub fn stateless() -> Encoder {
        Encoder {
            max: 0,
            ..Encoder::new()
        }
    }

    /// Bytes the table holds (RFC 7541 §4.1).
    pub fn table_size(&self) -> usize {
        self.size
    }

    /// The peer's SETTINGS_HEADER_TABLE_SIZE is `limit`.
    pub fn set_limit(&mut self, limit: u32) {
        let m = (limit as usize).min(ENCODER_TABLE);
        if m == self.max {
            return;
        }
        self.pending = Some(self.pending.map_or(m, |p| p.min(m)));
        self.max = m;
        self.evict(0);
    }

    /// Starts a header block: a change of the table's size is signalled first
    /// (the smallest since the last block, then the current, RFC 7541 §4.2).
    pub fn begin(&mut self, out: &mut Vec<u8>) {
        if let Some(p) = self.pending.take() {
            encode_int(out, 0x20, 5, p);
            if p != self.max {
                encode_int(out, 0x20, 5, self.max);
            }
        }
    }

    /// Evicts the oldest entries until `room` more bytes fit.
    fn evict(&mut self, room: usize) {
        while self.size + room > self.max {
            let Some((n, v)) = self.table.pop_back() else {
                break;
            };
            self.size -= n.len() + v.len() + 32;
            self.evicted += 1;
        }
    }

    /// Appends field `name: value` (name lower case; `idx`: its static-table
    /// name index), through the dynamic table when `slot` names it and it fits.
    fn field(
        &mut self,
        out: &mut Vec<u8>,
        idx: Option<usize>,
        name: &[u8],
        value: &[u8],
        slot: Option<usize>,
    ) {
        let size = name.len() + value.len() + 32;
        let Some(slot) = slot.filter(|_| value.len() <= MAX_INDEXED_VALUE && size <= self.max)
        else {
            match idx {
                Some(i) => encode_int(out, 0x00, 4, i),
                None => {
                    out.push(0x00);
                    encode_str(out, name);
                }
            }
            return encode_str(out, value);
        };
        let newest = self.newest[slot];
        if newest > self.evicted {
            let i = (self.added - newest) as usize;
            if *self.table[i].1 == *value {
                return encode_int(out, 0x80, 7, 62 + i);
            }
        }
        // Literal with incremental indexing (RFC 7541 §6.2.1).
        match idx {
            Some(i) => encode_int(out, 0x40, 6, i),
            None => {
                out.push(0x40);
                encode_str(out, name);
            }
        }
        encode_str(out, value);
        self.evict(size);
        self.table.push_front((name.into(), value.into()));
        self.size += size;
        self.added += 1;
        self.newest[slot] = self.added;
    }

    /// Appends the encoding of a protocol-neutral response head: `:status`,
    /// date, server, then its fields in order (names lower case,
    /// connection-specific ones left out), names from the static table where it
    /// has them; the fields `worth_indexing` through the dynamic table.
    pub fn head(&mut self, out: &mut Vec<u8>, head: &ResponseHead) {
        let mut date = [0u8; 64];
        let date = with_date(|d| {
            let n = d.len().min(date.len());
            date[..n].copy_from_slice(&d[..n]);
            &date[..n]
        });
        // A size update goes first, and is never part of a block kept.
        self.begin(out);
        if let Some(l) = &self.last
            && l.added == self.added
            && l.evicted == self.evicted
            && l.date == date
            && l.head == *head
        {
            return out.extend_from_slice(&l.block);
        }
        let (start, added) = (out.len(), self.added);
        self.encode_head(out, head, date);
        if self.added == added && self.max > 0 {
            // Nothing added (nor evicted): the table is as it was.
            let l = self.last.get_or_insert_default();
            l.head.clone_from(head);
            l.block.clear();
            l.block.extend_from_slice(&out[start..]);
            l.date.clear();
            l.date.extend_from_slice(date);
            l.added = self.added;
            l.evicted = self.evicted;
        }
    }

    fn encode_head(&mut self, out: &mut Vec<u8>, head: &ResponseHead, date: &[u8]) {
        encode_status(out, head.status);
        self.field(out, Some(33), b"date", date, Some(SLOT_DATE));
        self.field(out, Some(54), b"server", b"zcopy", Some(SLOT_SERVER));
        for (name, value) in head.fields() {
            match name {
                FieldName::Known(n) if n.connection_specific() => continue,
                FieldName::Known(n) => self.field(
                    out,
                    n.hpack_static(),
                    n.lower().as_bytes(),
                    trim_ows(value),
                    worth_indexing(n).then_some(n as usize),
                ),
                other => {
                    let raw = head.other_name(other);
                    if CONNECTION_SPECIFIC
                        .iter()
                        .any(|c| raw.eq_ignore_ascii_case(c.as_bytes()))
                    {
                        continue;
                    }
                    out.push(0x00);
                    encode_int(out, 0, 7, raw.len());
                    out.extend(raw.iter().map(u8::to_ascii_lowercase));
                    encode_str(out, trim_ows(value));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The decoder as it was before it read fields in place (a copy per name and
    /// value, a table entry from those copies): the reference the in-place one
    /// is compared with.
    fn reference_decode(d: &mut Decoder, block: &[u8]) -> Result<Decoded, CompressionError> {
        let mut out = Decoded::default();
        let mut list = 0usize;
        let mut pos = 0;
        let mut at_start = true;
        while pos < block.len() {
            let b = block[pos];
            let (name, value, index) = if b & 0x80 != 0 {
                let idx = int(block, &mut pos, 7)?;
                let (n, v) = lookup(&d.dynamic, idx)?;
                (n.to_vec(), v.to_vec(), false)
            } else if b & 0xe0 == 0x20 {
                if !at_start {
                    return Err(CompressionError("table size update after a field"));
                }
                let max = int(block, &mut pos, 5)?;
                if max > d.allowed {
                    return Err(CompressionError("table size above the limit"));
                }
                d.max = max;
                d.evict();
                continue;
            } else {
                let (prefix, index) = if b & 0xc0 == 0x40 {
                    (6, true)
                } else {
                    (4, false)
                };
                let idx = int(block, &mut pos, prefix)?;
                let name = match idx {
                    0 => string(block, &mut pos)?,
                    i => lookup(&d.dynamic, i)?.0.to_vec(),
                };
                (name, string(block, &mut pos)?, index)
            };
            at_start = false;
            if index {
                d.insert((name.clone().into(), value.clone().into()));
            }
            if out.too_large {
                continue;
            }
            list = list.saturating_add(name.len() + value.len() + 32);
            if list > d.max_list {
                out.too_large = true;
                out.fields = Vec::new();
                continue;
            }
            out.fields.push((name, value));
        }
        Ok(out)
    }

    /// Blocks made of well-formed and random representations: indexed (static
    /// and dynamic, in and out of range), literals with and without indexing,
    /// Huffman or not, size updates, and raw garbage.
    fn block_strategy() -> impl Strategy<Value = Vec<u8>> {
        let s = prop::collection::vec(
            prop::sample::select(&b"ab:/-x0 \x00\xffGET"[..]).prop_map(|b| b),
            0..40,
        );
        let piece = prop_oneof![
            (1usize..80).prop_map(|i| {
                let mut o = Vec::new();
                encode_int(&mut o, 0x80, 7, i);
                o
            }),
            (0usize..80, s.clone(), any::<bool>(), any::<bool>()).prop_map(|(i, v, idx, h)| {
                let mut o = Vec::new();
                let (first, n) = if idx { (0x40, 6) } else { (0x00, 4) };
                encode_int(&mut o, first, n, i);
                if i == 0 {
                    o.extend_from_slice(&[0x03, b'x', b'-', b'a']);
                }
                let body = if h { huffman_encode(&v) } else { v.clone() };
                encode_int(&mut o, if h { 0x80 } else { 0 }, 7, body.len());
                o.extend_from_slice(&body);
                o
            }),
            (0usize..5000).prop_map(|m| {
                let mut o = Vec::new();
                encode_int(&mut o, 0x20, 5, m);
                o
            }),
            prop::collection::vec(any::<u8>(), 0..6),
        ];
        prop::collection::vec(piece, 0..24).prop_map(|v| v.concat())
    }

    /// A head like the site's for a file, from a few values (so they repeat).
    fn file_head(status: u16, ct: &str, len: u64, etag: &str, lock: Option<&str>) -> ResponseHead {
        let mut h = ResponseHead::default();
        h.reset(status);
        h.push(Name::ContentType, ct);
        h.push_u64(Name::ContentLength, len);
        h.push(Name::ETag, etag);
        h.push(Name::AcceptRanges, "bytes");
        h.push_named("X-Rule", " yes ");
        if let Some(t) = lock {
            h.push(Name::LockToken, t);
        }
        h
    }

    /// What a decoder should read for `h` (the date aside).
    fn expected(h: &ResponseHead) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut want = vec![
            (b":status".to_vec(), h.status.to_string().into_bytes()),
            (b"server".to_vec(), b"zcopy".to_vec()),
        ];
        for (n, v) in h.fields() {
            let name = match n {
                FieldName::Known(n) => n.lower().as_bytes().to_vec(),
                o => h.other_name(o).to_ascii_lowercase(),
            };
            want.push((name, trim_ows(v).to_vec()));
        }
        want
    }

    /// A response repeated on a connection goes as one-byte references; the
    /// table shrinks, with a size update, when the peer's setting does; a lock
    /// token is never indexed.
    #[test]
    fn repeated_response_fields_go_through_the_dynamic_table() {
        let h = file_head(200, "text/plain", 1024, "\"e1\"", Some("<urn:uuid:x>"));
        let mut e = Encoder::new();
        let mut d = Decoder::new(4096, 65536);
        let mut first = Vec::new();
        e.head(&mut first, &h);
        let mut second = Vec::new();
        e.head(&mut second, &h);
        for b in [&first, &second] {
            let got = d.decode(b).unwrap().fields;
            let mut got_no_date = got.clone();
            got_no_date.remove(1);
            assert_eq!(got_no_date, expected(&h));
            assert_eq!(d.table_size(), e.table_size());
        }
        // :status, date, server, content-type, -length, etag, accept-ranges: a
        // byte each (a date that turned over: a literal); x-rule and lock-token
        // as literals.
        assert!(second.len() < 60, "{} bytes: {second:?}", second.len());
        assert!(first.len() > second.len() + 60);
        assert!(d.dynamic.iter().all(|(n, _)| &n[..] != b"lock-token"));
        // A size change that evicts nothing: signalled once, with the block
        // that follows it, never again with the same head.
        e.set_limit(2000);
        e.set_limit(4096);
        let mut signalled = Vec::new();
        e.head(&mut signalled, &h);
        assert_eq!(&signalled[..3], &[0x3f, 0xb1, 0x0f]); // 2000
        d.decode(&signalled).unwrap();
        let mut again = Vec::new();
        e.head(&mut again, &h);
        assert!(again[0] & 0xe0 != 0x20, "{again:?}");
        assert!(again.len() <= second.len());
        d.decode(&again).unwrap();
        assert_eq!(d.table_size(), e.table_size());
        // The peer shrinks its table to nothing: the next block says so first,
        // and indexes nothing.
        e.set_limit(0);
        let mut third = Vec::new();
        e.head(&mut third, &h);
        assert_eq!(third[0], 0x20);
        assert_eq!(e.table_size(), 0);
        let got = d.decode(&third).unwrap().fields;
        assert_eq!(got.len(), expected(&h).len() + 1);
        assert_eq!(d.table_size(), 0);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]
        /// Whatever responses go and whatever table sizes the peer sets
        /// between them, its decoder reads each head as it was and holds the
        /// same table as our encoder.
        #[test]
        fn the_peers_decoder_keeps_in_step_with_the_encoder(
            steps in prop::collection::vec(
                (
                    prop::sample::select(vec![200u16, 206, 304, 404, 299]),
                    prop::sample::select(vec!["text/plain", "application/octet-stream", "image/png"]),
                    0u64..4,
                    prop::sample::select(vec!["\"a\"".to_string(), "\"b\"".to_string(), "x".repeat(200), "y".repeat(60)]),
                    prop::option::of(prop::sample::select(vec![0u32, 100, 200, 1000, 4096, 100_000])),
                ),
                1..40,
            ),
        ) {
            let mut e = Encoder::new();
            let mut d = Decoder::new(4096, 1 << 20);
            for (status, ct, len, etag, limit) in steps {
                if let Some(l) = limit {
                    e.set_limit(l);
                }
                let h = file_head(status, ct, len, &etag, None);
                let mut b = Vec::new();
                e.head(&mut b, &h);
                let mut got = d.decode(&b).unwrap().fields;
                prop_assert_eq!(&got[1].0, b"date");
                got.remove(1);
                prop_assert_eq!(got, expected(&h));
                prop_assert_eq!(d.table_size(), e.table_size());
                prop_assert!(e.table_size() <= e.max);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        /// The in-place decoder gives what the copying one gave, block after
        /// block on one table (the same fields, the same bound hit, the same
        /// table, errors for the same blocks), with a small table and list so
        /// eviction and the bound are reached.
        #[test]
        fn in_place_decoding_matches_the_reference(
            blocks in prop::collection::vec(block_strategy(), 1..4),
            table in prop::sample::select(vec![0usize, 64, 256, 4096]),
            max_list in prop::sample::select(vec![64usize, 300, 16384]),
        ) {
            let mut new = Decoder::new(table, max_list);
            let mut old = Decoder::new(table, max_list);
            for b in &blocks {
                let got = new.decode(b);
                let want = reference_decode(&mut old, b);
                prop_assert_eq!(got.is_ok(), want.is_ok());
                match (got, want) {
                    (Ok(g), Ok(w)) => prop_assert_eq!(g, w),
                    _ => break,
                }
                prop_assert_eq!(new.size, old.size);
                prop_assert_eq!(&new.dynamic, &old.dynamic);
            }
        }
    }

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

    /// The site's protocol-neutral head goes straight to HPACK: status, date,
    /// server, then its fields in order, lower case, connection-specific ones left
    /// out, values without surrounding blanks.
    #[test]
    fn a_neutral_head_encodes_without_an_http1_round_trip() {
        use zcopy_http1::fields::{Name, ResponseHead};
        let mut h = ResponseHead::default();
        h.reset(207);
        h.push(Name::ContentType, "text/plain");
        h.push_u64(Name::ContentLength, 12);
        h.push(Name::Connection, "close");
        h.push_named("Keep-Alive", "timeout=5");
        h.push(Name::Dav, "1, 2");
        h.push_named("X-Frame-Options", " DENY ");
        h.push_named("TRANSFER-ENCODING", "chunked");
        h.push(Name::ETag, "\"x\"");
        let mut out = Vec::new();
        encode_head(&mut out, &h);
        let got = Decoder::new(4096, 65536).decode(&out).unwrap();
        let fields: Vec<(&[u8], &[u8])> =
            got.fields.iter().map(|(n, v)| (&n[..], &v[..])).collect();
        assert_eq!(fields[0], (&b":status"[..], &b"207"[..]));
        assert_eq!(fields[1].0, b"date");
        assert_eq!(fields[1].1.len(), 29);
        assert!(fields[1].1.ends_with(b" GMT"));
        assert_eq!(fields[2], (&b"server"[..], &b"zcopy"[..]));
        assert_eq!(
            fields[3..],
            [
                (&b"content-type"[..], &b"text/plain"[..]),
                (b"content-length", b"12"),
                (b"dav", b"1, 2"),
                (b"x-frame-options", b"DENY"),
                (b"etag", b"\"x\""),
            ]
        );
        // Indexed :status for a code the static table has.
        h.reset(404);
        out.clear();
        encode_head(&mut out, &h);
        assert_eq!(out[0], 0x80 | 13);
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

    /// Huffman-encodes `s` (for the tests: we never send Huffman).
    fn huffman_encode(s: &[u8]) -> Vec<u8> {
        let (mut acc, mut bits, mut out) = (0u64, 0u32, Vec::new());
        for &c in s {
            let (code, len) = crate::hpack_tables::HUFFMAN[c as usize];
            acc = (acc << len) | code as u64;
            bits += len as u32;
            while bits >= 8 {
                bits -= 8;
                out.push((acc >> bits) as u8);
            }
        }
        if bits > 0 {
            out.push(((acc << (8 - bits)) | (0xff >> bits)) as u8);
        }
        out
    }

    #[test]
    fn huffman_round_trips_every_byte_and_refuses_bad_padding() {
        let all: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
        assert_eq!(huffman_decode(&huffman_encode(&all)).unwrap(), all);
        for n in 0..40 {
            let s: Vec<u8> = (0..n).map(|i| b"aZ09/-_.~%\x00\xff"[i % 12]).collect();
            assert_eq!(huffman_decode(&huffman_encode(&s)).unwrap(), s);
        }
        // "a" is 00011 (5 bits): 3 bits of ones pad it.
        assert_eq!(huffman_decode(&[0b0001_1111]).unwrap(), b"a");
        // Padding that is not all ones.
        assert!(huffman_decode(&[0b0001_1101]).is_err());
        // A whole byte of padding (more than 7 bits).
        assert!(huffman_decode(&[0b0001_1111, 0xff]).is_err());
        // EOS (30 ones) inside the string.
        assert!(huffman_decode(&[0xff, 0xff, 0xff, 0xff]).is_err());
        assert_eq!(huffman_decode(&[]).unwrap(), b"");
    }

    #[test]
    fn rfc7541_c6_responses_evict_from_a_256_byte_table() {
        // C.6.1 .. C.6.3 (Huffman), with SETTINGS_HEADER_TABLE_SIZE 256.
        let hex = |s: &str| -> Vec<u8> {
            let s: String = s.split_whitespace().collect();
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
                .collect()
        };
        let mut d = Decoder::new(256, 65536);
        let b1 = hex(
            "4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6 2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3",
        );
        let got = d.decode(&b1).unwrap().fields;
        assert_eq!(got[0], (b":status".to_vec(), b"302".to_vec()));
        assert_eq!(
            got[3],
            (b"location".to_vec(), b"https://www.example.com".to_vec())
        );
        assert_eq!(d.table_size(), 222);
        let b2 = hex("4883 640e ffc1 c0bf");
        let got = d.decode(&b2).unwrap().fields;
        assert_eq!(got[0].1, b"307");
        assert_eq!(d.table_size(), 222);
        let b3 = hex(
            "88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab 77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f 9587 3160 65c0 03ed 4ee5 b106 3d50 07",
        );
        let got = d.decode(&b3).unwrap().fields;
        assert_eq!(got[0].1, b"200");
        assert_eq!(got[4].1, b"gzip");
        assert_eq!(
            got[5].1,
            b"foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1"
        );
        assert_eq!(d.table_size(), 215);
    }

    #[test]
    fn a_size_update_only_at_the_start_and_within_the_limit() {
        let mut d = Decoder::new(4096, 65536);
        assert!(d.decode(&[0x3f, 0xe1, 0x1f, 0x82]).is_ok()); // 4096, then :method GET
        assert!(d.decode(&[0x82, 0x20]).is_err());
        let mut d = Decoder::new(4096, 65536);
        assert!(d.decode(&[0x3f, 0xe2, 0x1f]).is_err()); // 4097
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
