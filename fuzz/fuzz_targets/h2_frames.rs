//! Fuzzes the HTTP/2 connection core with arbitrary bytes after a valid preface
//! and SETTINGS, fed in arbitrary pieces: never a panic, never more output than
//! the budgets allow, `feed` always accounts for every byte it is given, request
//! bodies are taken (all or half of what arrived, with or without the larger
//! window of an accepted upload), and every answer the caller sends afterwards is
//! well-framed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zcopy_http2::frame::{self, Frame, Header};
use zcopy_http2::{Conn, Event, Settings};

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    // Parse every frame on its own too (the frame layer alone).
    let mut at = 0;
    while let Some(h) = Header::parse(&rest[at..]) {
        let end = at + 9 + h.len as usize;
        if end > rest.len() {
            break;
        }
        let _ = Frame::parse(h, &rest[at + 9..end]);
        at = end;
    }
    let mut c = Conn::new(Settings::default());
    let mut input = frame::PREFACE.to_vec();
    frame::write_settings(&mut input, &[]);
    input.extend_from_slice(rest);
    let step = 1 + split as usize * 7;
    let mut pending: Vec<u8> = Vec::new();
    for chunk in input.chunks(step) {
        pending.extend_from_slice(chunk);
        let n = c.feed(&pending);
        assert!(n <= pending.len());
        pending.drain(..n);
        // A partial frame is all that may be left over.
        assert!(pending.len() < 9 + 16_384 + step);
        while let Some(ev) = c.poll_event() {
            match ev {
                Event::Request { stream, head } => {
                    let _ = head.request(zcopy_http1::request::ListenKind::Http);
                    if split & 1 == 1 {
                        // Take the body (a larger window), as an accepted upload does.
                        c.accept_body(stream);
                    }
                    if c.send_headers(stream, 200, &[("content-length", "3")], false) {
                        let cap = c.capacity(stream);
                        c.send_data(stream, 3.min(cap), cap >= 3, |b| {
                            b.fill(b'x');
                            b.len()
                        });
                    }
                }
                Event::TooLarge { stream } => {
                    c.send_headers(stream, 431, &[], true);
                }
                Event::Reset { .. } => {}
                Event::Data { stream } => {
                    // Take what arrived, every byte or half of it, crediting windows.
                    if let Some((body, _)) = c.body(stream) {
                        let n = if split & 2 == 2 {
                            body.len()
                        } else {
                            body.len() / 2
                        };
                        c.consume(stream, n);
                    }
                }
            }
        }
    }
    // What we wrote parses as frames.
    let out = &c.out;
    let mut at = 0;
    while let Some(h) = Header::parse(&out[at..]) {
        at += 9 + h.len as usize;
    }
    assert_eq!(at, out.len());
});
