//! Fuzzes HPACK decoding (our decoder and Huffman code): blocks (split at 0xfe) decoded in turn on
//! one decoder never panic, the decoded list never exceeds its bound, and what
//! our encoder writes always decodes back to itself: the stateless one, and the
//! per-connection one with its dynamic table, driven by the input (heads from a
//! few values, table-size settings between them) against a peer decoder that
//! must read every head and hold the same table.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zcopy_http1::fields::{Name, ResponseHead};
use zcopy_http2::hpack::{Decoder, Encoder, encode_response};

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
    // The stateful encoder: each byte a step.
    let mut e = Encoder::new();
    let mut peer = Decoder::new(4096, 1 << 20);
    let mut head = ResponseHead::default();
    let short: String = value.chars().take(150).collect();
    let trim = |mut v: &[u8]| -> Vec<u8> {
        while let [b' ' | b'\t', rest @ ..] = v {
            v = rest;
        }
        while let [rest @ .., b' ' | b'\t'] = v {
            v = rest;
        }
        v.to_vec()
    };
    for &b in data.iter().take(512) {
        if b & 0xc0 == 0xc0 {
            e.set_limit([0, 1, 31, 32, 64, 100, 200, 512, 1000, 4095, 4096, 1 << 20][(b & 0x0f) as usize % 12]);
            continue;
        }
        head.reset([200, 206, 304, 404, 299][(b & 7) as usize % 5]);
        let v = ["a", "text/plain", "\"etag\"", " spaced ", &short];
        head.push(Name::ContentType, v[(b >> 3) as usize % 5]);
        head.push_u64(Name::ContentLength, u64::from(b >> 5));
        head.push(Name::ETag, v[(b >> 4) as usize % 5]);
        head.push(Name::LockToken, v[(b >> 2) as usize % 5]);
        head.push_named("X-Other", v[b as usize % 5]);
        let mut out = Vec::new();
        e.head(&mut out, &head);
        let got = peer.decode(&out).expect("our own encoding");
        assert_eq!(peer.table_size(), e.table_size());
        assert_eq!(got.fields[0].0, b":status");
        assert_eq!(got.fields[1].0, b"date");
        assert_eq!(got.fields[2], (b"server".to_vec(), b"zcopy".to_vec()));
        let mut want: Vec<(&[u8], Vec<u8>)> = Vec::new();
        for (n, v) in head.fields() {
            let name: &[u8] = match n {
                zcopy_http1::fields::FieldName::Known(n) => n.lower().as_bytes(),
                _ => b"x-other",
            };
            want.push((name, trim(v)));
        }
        assert_eq!(got.fields.len(), 3 + want.len());
        for ((n, v), (wn, wv)) in got.fields[3..].iter().zip(&want) {
            assert_eq!(&n[..], *wn);
            assert_eq!(v, wv);
        }
    }
});
