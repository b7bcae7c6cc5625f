//! Fuzzes HPACK decoding (our decoder and Huffman code): blocks (split at 0xfe) decoded in turn on
//! one decoder never panic, the decoded list never exceeds its bound, and what
//! our encoder writes always decodes back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zcopy_http2::hpack::{Decoder, encode_response};

const MAX_LIST: usize = 16 * 1024;

fuzz_target!(|data: &[u8]| {
    let mut d = Decoder::new(4096, MAX_LIST);
    // Blocks share one table.
    for block in data.split(|&b| b == 0xfe) {
        match d.decode(block) {
            Ok(got) => {
                let size: usize = got.fields.iter().map(|(n, v)| n.len() + v.len() + 32).sum();
                assert!(size <= MAX_LIST);
                assert!(!got.too_large || got.fields.is_empty());
            }
            Err(_) => break,
        }
    }
    // Round trip: the input as a field value (lossy UTF-8, no CR/LF).
    let value: String = String::from_utf8_lossy(data).chars().filter(|c| *c != '\r' && *c != '\n').take(2000).collect();
    let mut out = Vec::new();
    encode_response(&mut out, 299, &[("x-fuzz", &value), ("content-type", &value)]);
    let got = Decoder::new(4096, 1 << 20).decode(&out).expect("our own encoding");
    assert_eq!(got.fields[0].1, b"299");
    assert_eq!(got.fields[1], (b"x-fuzz".to_vec(), value.as_bytes().to_vec()));
    assert_eq!(got.fields[2].1, value.as_bytes());
});
