//! The examples of RFC 7541 Appendix C that the unit tests beside the decoder do not
//! cover: integers (C.1), single literal and indexed fields (C.2), and the request
//! and response sequences without Huffman coding (C.3, C.5), each checked field by
//! field and with the dynamic table size the RFC states after every block.

use zcopy_http2::hpack::{Decoder, encode_int};

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Decodes `block` and checks the list and the table size after it.
fn check(d: &mut Decoder, block: &str, want: &[(&str, &str)], table: usize) {
    let got = d.decode(&hex(block)).expect("a valid block");
    assert!(!got.too_large);
    let got: Vec<(String, String)> = got
        .fields
        .into_iter()
        .map(|(n, v)| (String::from_utf8(n).unwrap(), String::from_utf8(v).unwrap()))
        .collect();
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    assert_eq!(got, want);
    assert_eq!(d.table_size(), table, "dynamic table size after {block}");
}

#[test]
fn c1_integers() {
    // C.1.1: 10 with a 5-bit prefix; C.1.2: 1337 with a 5-bit prefix; C.1.3: 42 at an
    // octet boundary.
    let mut out = Vec::new();
    encode_int(&mut out, 0, 5, 10);
    assert_eq!(out, [0x0a]);
    out.clear();
    encode_int(&mut out, 0, 5, 1337);
    assert_eq!(out, [0x1f, 0x9a, 0x0a]);
    out.clear();
    encode_int(&mut out, 0, 8, 42);
    assert_eq!(out, [0x2a]);
}

#[test]
fn c2_literal_and_indexed_fields() {
    // C.2.1: with incremental indexing, the table holds one 55-byte entry.
    let mut d = Decoder::new(4096, 1 << 16);
    check(
        &mut d,
        "400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572",
        &[("custom-key", "custom-header")],
        55,
    );
    // C.2.2: without indexing, the table stays empty.
    let mut d = Decoder::new(4096, 1 << 16);
    check(
        &mut d,
        "040c 2f73 616d 706c 652f 7061 7468",
        &[(":path", "/sample/path")],
        0,
    );
    // C.2.3: never indexed.
    let mut d = Decoder::new(4096, 1 << 16);
    check(
        &mut d,
        "1008 7061 7373 776f 7264 0673 6563 7265 74",
        &[("password", "secret")],
        0,
    );
    // C.2.4: an indexed field from the static table.
    let mut d = Decoder::new(4096, 1 << 16);
    check(&mut d, "82", &[(":method", "GET")], 0);
}

#[test]
fn c3_requests_without_huffman_share_one_table() {
    let mut d = Decoder::new(4096, 1 << 16);
    check(
        &mut d,
        "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
        &[
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/"),
            (":authority", "www.example.com"),
        ],
        57,
    );
    check(
        &mut d,
        "8286 84be 5808 6e6f 2d63 6163 6865",
        &[
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/"),
            (":authority", "www.example.com"),
            ("cache-control", "no-cache"),
        ],
        110,
    );
    check(
        &mut d,
        "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
        &[
            (":method", "GET"),
            (":scheme", "https"),
            (":path", "/index.html"),
            (":authority", "www.example.com"),
            ("custom-key", "custom-value"),
        ],
        164,
    );
}

#[test]
fn c5_responses_without_huffman_evict_from_a_256_byte_table() {
    let mut d = Decoder::new(256, 1 << 16);
    check(
        &mut d,
        "4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230
         3133 2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65
         7861 6d70 6c65 2e63 6f6d",
        &[
            (":status", "302"),
            ("cache-control", "private"),
            ("date", "Mon, 21 Oct 2013 20:13:21 GMT"),
            ("location", "https://www.example.com"),
        ],
        222,
    );
    // ":status: 307" evicts ":status: 302".
    check(
        &mut d,
        "4803 3330 37c1 c0bf",
        &[
            (":status", "307"),
            ("cache-control", "private"),
            ("date", "Mon, 21 Oct 2013 20:13:21 GMT"),
            ("location", "https://www.example.com"),
        ],
        222,
    );
    check(
        &mut d,
        "88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220
         474d 54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157
         454f 5049 5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076
         6572 7369 6f6e 3d31",
        &[
            (":status", "200"),
            ("cache-control", "private"),
            ("date", "Mon, 21 Oct 2013 20:13:22 GMT"),
            ("location", "https://www.example.com"),
            ("content-encoding", "gzip"),
            (
                "set-cookie",
                "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1",
            ),
        ],
        215,
    );
}
