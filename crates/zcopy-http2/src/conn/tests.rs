//! The connection driven with bytes only: a client's frames built by hand.

use super::*;
use crate::frame::{write_frame, write_rst, write_settings, write_window_update};

/// A GET's header block (literals without indexing, no Huffman).
fn block(path: &str) -> Vec<u8> {
    block_with("GET", path, &[])
}

fn get(out: &mut Vec<u8>, id: u32, path: &str) {
    write_frame(
        out,
        kind::HEADERS,
        flag::END_HEADERS | flag::END_STREAM,
        id,
        &block(path),
    );
}

/// Preface and an empty SETTINGS.
fn hello() -> Vec<u8> {
    let mut b = PREFACE_BYTES.to_vec();
    write_settings(&mut b, &[]);
    b
}

const PREFACE_BYTES: &[u8] = crate::frame::PREFACE;

fn frames(out: &[u8]) -> Vec<(Header, Vec<u8>)> {
    let mut v = Vec::new();
    let mut at = 0;
    while let Some(h) = Header::parse(&out[at..]) {
        let end = at + HEADER_LEN + h.len as usize;
        v.push((h, out[at + HEADER_LEN..end].to_vec()));
        at = end;
    }
    assert_eq!(at, out.len(), "trailing partial frame");
    v
}

fn goaway_code(out: &[u8]) -> Option<Code> {
    frames(out)
        .iter()
        .find(|(h, _)| h.kind == kind::GOAWAY)
        .map(|(_, p)| Code::from_u32(u32::from_be_bytes([p[4], p[5], p[6], p[7]])))
}

fn fed(c: &mut Conn, bytes: &[u8]) {
    let n = c.feed(bytes);
    assert_eq!(n, bytes.len());
}

fn events(c: &mut Conn) -> Vec<Event> {
    std::iter::from_fn(|| c.poll_event()).collect()
}

#[test]
fn a_get_is_answered_with_headers_and_data() {
    let mut c = Conn::new(Settings::default());
    let mut b = hello();
    get(&mut b, 1, "/a");
    // Byte by byte: partial frames wait.
    let mut pending = Vec::new();
    for &x in &b {
        pending.push(x);
        let n = c.feed(&pending);
        pending.drain(..n);
    }
    assert!(pending.is_empty());
    let ev = events(&mut c);
    let [Event::Request { stream: 1, head }] = &ev[..] else {
        panic!("{ev:?}");
    };
    assert_eq!(head.path(), "/a");
    assert!(head.end_stream);
    let f = frames(&c.out);
    // Our SETTINGS, the connection window, the ACK of theirs.
    assert_eq!(f[0].0.kind, kind::SETTINGS);
    assert_eq!(f[1].0.kind, kind::WINDOW_UPDATE);
    assert_eq!((f[2].0.kind, f[2].0.flags), (kind::SETTINGS, flag::ACK));
    c.out.clear();
    assert!(c.send_headers(1, 200, &[("content-length", "5")], false));
    assert_eq!(c.capacity(1), 16_384);
    assert_eq!(
        c.send_data(1, 5, true, |b| {
            b.copy_from_slice(b"hello");
            5
        }),
        5
    );
    let f = frames(&c.out);
    assert_eq!(f[0].0.kind, kind::HEADERS);
    assert_eq!(
        (f[1].0.kind, f[1].0.flags, &f[1].1[..]),
        (kind::DATA, flag::END_STREAM, &b"hello"[..])
    );
    assert!(c.is_idle());
    let mut d = hpack::Decoder::new(4096, 1 << 16);
    let fields = d.decode(&f[0].1).unwrap().fields;
    assert_eq!(fields[0].1, b"200");
}

#[test]
fn the_peers_windows_and_frame_size_are_respected() {
    let mut c = Conn::new(Settings::default());
    let mut b = PREFACE_BYTES.to_vec();
    write_settings(
        &mut b,
        &[
            (setting::INITIAL_WINDOW_SIZE, 100),
            (setting::MAX_FRAME_SIZE, 20_000),
        ],
    );
    get(&mut b, 1, "/");
    fed(&mut c, &b);
    events(&mut c);
    c.send_headers(1, 200, &[], false);
    assert_eq!(c.capacity(1), 100);
    assert_eq!(c.send_data(1, 1000, false, |b| b.len()), 100);
    assert_eq!(c.capacity(1), 0);
    assert!(c.stalled());
    let mut b = Vec::new();
    write_window_update(&mut b, 1, 1_000_000);
    fed(&mut c, &b);
    // Now the connection window (65535 - 100) and the frame size bound it.
    assert_eq!(c.capacity(1), 20_000);
    let mut sent = 0;
    while c.capacity(1) > 0 {
        sent += c.send_data(1, usize::MAX, false, |b| b.len());
    }
    assert_eq!(sent, 65_535 - 100);
    assert!(c.stalled());
    let mut b = Vec::new();
    write_window_update(&mut b, 0, 10);
    fed(&mut c, &b);
    assert_eq!(c.capacity(1), 10);
    // A smaller initial window takes effect on open streams (may go negative).
    let mut b = Vec::new();
    write_settings(&mut b, &[(setting::INITIAL_WINDOW_SIZE, 0)]);
    get(&mut b, 3, "/");
    fed(&mut c, &b);
    events(&mut c);
    c.send_headers(3, 200, &[], false);
    assert_eq!(c.capacity(3), 0);
    // Overflow is an error.
    let mut b = Vec::new();
    write_window_update(&mut b, 0, 0x7fff_ffff);
    fed(&mut c, &b);
    assert_eq!(goaway_code(&c.out), Some(Code::FlowControl));
}

/// A last frame the window cuts short does not end the stream: END_STREAM goes only
/// with every byte the caller asked to send.
#[test]
fn a_last_frame_cut_by_the_window_does_not_end_the_stream() {
    let mut c = Conn::new(Settings::default());
    let mut b = PREFACE_BYTES.to_vec();
    write_settings(&mut b, &[(setting::INITIAL_WINDOW_SIZE, 100)]);
    get(&mut b, 1, "/");
    fed(&mut c, &b);
    events(&mut c);
    c.send_headers(1, 200, &[], false);
    let at = c.out.len();
    assert_eq!(c.send_data(1, 1000, true, |b| b.len()), 100);
    let sent = frames(&c.out[at..]);
    let (h, payload) = sent.last().expect("a DATA frame");
    assert_eq!((h.kind, payload.len()), (kind::DATA, 100));
    assert_eq!(h.flags & flag::END_STREAM, 0, "the body is not over");
}

#[test]
fn rapid_reset_runs_out_of_budget() {
    let s = Settings::default();
    let mut c = Conn::new(s);
    fed(&mut c, &hello());
    let mut b = Vec::new();
    for i in 0..1000u32 {
        let id = 2 * i + 1;
        get(&mut b, id, "/");
        write_rst(&mut b, id, Code::Cancel);
    }
    c.feed(&b);
    assert!(c.is_closed());
    assert_eq!(goaway_code(&c.out), Some(Code::EnhanceYourCalm));
    // No request of a reset stream is ever handed out.
    assert!(events(&mut c).is_empty());
    // Finished responses earn resets back: a client that cancels now and then is fine.
    let mut c = Conn::new(s);
    fed(&mut c, &hello());
    for i in 0..2000u32 {
        let id = 2 * i + 1;
        let mut b = Vec::new();
        get(&mut b, id, "/");
        fed(&mut c, &b);
        events(&mut c);
        if i % 2 == 0 {
            assert!(c.send_headers(id, 200, &[], true));
        } else {
            let mut b = Vec::new();
            write_rst(&mut b, id, Code::Cancel);
            fed(&mut c, &b);
        }
    }
    assert!(!c.is_closed());
}

#[test]
fn resets_we_are_made_to_send_count_too() {
    // MadeYouReset (CVE-2025-8671): a WINDOW_UPDATE of 0 on each stream makes us
    // reset it; those resets spend the same budget.
    let mut c = Conn::new(Settings::default());
    fed(&mut c, &hello());
    let mut b = Vec::new();
    for i in 0..1000u32 {
        let id = 2 * i + 1;
        get(&mut b, id, "/");
        write_window_update(&mut b, id, 0);
    }
    c.feed(&b);
    assert!(c.is_closed());
    assert_eq!(goaway_code(&c.out), Some(Code::EnhanceYourCalm));
    let rsts = frames(&c.out)
        .iter()
        .filter(|(h, _)| h.kind == kind::RST_STREAM)
        .count();
    assert!(rsts <= 200, "{rsts}");
}

#[test]
fn a_continuation_flood_ends_the_connection() {
    let mut c = Conn::new(Settings::default());
    fed(&mut c, &hello());
    let mut b = Vec::new();
    write_frame(&mut b, kind::HEADERS, flag::END_STREAM, 1, &block("/")[..3]);
    for _ in 0..10_000 {
        write_frame(&mut b, kind::CONTINUATION, 0, 1, b"");
    }
    c.feed(&b);
    assert!(c.is_closed());
    assert_eq!(goaway_code(&c.out), Some(Code::EnhanceYourCalm));
    // Few but large fragments: the block's bytes are capped.
    let mut c = Conn::new(Settings::default());
    fed(&mut c, &hello());
    let mut b = Vec::new();
    write_frame(&mut b, kind::HEADERS, flag::END_STREAM, 1, &[0; 16_000]);
    for _ in 0..5 {
        write_frame(&mut b, kind::CONTINUATION, 0, 1, &[0; 16_000]);
    }
    c.feed(&b);
    assert_eq!(goaway_code(&c.out), Some(Code::EnhanceYourCalm));
    // Another frame inside a header block is a protocol error.
    let mut c = Conn::new(Settings::default());
    fed(&mut c, &hello());
    let mut b = Vec::new();
    write_frame(&mut b, kind::HEADERS, flag::END_STREAM, 1, &block("/")[..3]);
    write_frame(&mut b, kind::PING, 0, 0, &[0; 8]);
    c.feed(&b);
    assert_eq!(goaway_code(&c.out), Some(Code::Protocol));
}

#[test]
fn an_hpack_bomb_gets_a_431_and_the_connection_goes_on() {
    let mut c = Conn::new(Settings::default());
    fed(&mut c, &hello());
    let mut blk = block("/");
    blk.push(0x40);
    hpack::encode_int(&mut blk, 0, 7, 6);
    blk.extend_from_slice(b"x-bomb");
    hpack::encode_int(&mut blk, 0, 7, 4000);
    blk.extend(std::iter::repeat_n(b'a', 4000));
    blk.extend(std::iter::repeat_n(0xbe, 5000));
    let mut b2 = Vec::new();
    write_frame(&mut b2, kind::HEADERS, flag::END_STREAM, 1, &blk[..5000]);
    write_frame(
        &mut b2,
        kind::CONTINUATION,
        flag::END_HEADERS,
        1,
        &blk[5000..],
    );
    fed(&mut c, &b2);
    assert_eq!(events(&mut c), vec![Event::TooLarge { stream: 1 }]);
    assert!(!c.is_closed());
    let mut b = Vec::new();
    get(&mut b, 3, "/next");
    fed(&mut c, &b);
    assert!(matches!(
        &events(&mut c)[..],
        [Event::Request { stream: 3, .. }]
    ));
}

#[test]
fn settings_and_ping_floods_run_out_of_budget() {
    for flood in [
        kind::SETTINGS,
        kind::PING,
        kind::PRIORITY,
        kind::WINDOW_UPDATE,
        0x42,
    ] {
        let mut c = Conn::new(Settings::default());
        fed(&mut c, &hello());
        let mut b = Vec::new();
        for _ in 0..5000 {
            match flood {
                kind::SETTINGS => write_settings(&mut b, &[(setting::HEADER_TABLE_SIZE, 4096)]),
                kind::PING => write_frame(&mut b, kind::PING, 0, 0, &[7; 8]),
                kind::PRIORITY => write_frame(&mut b, kind::PRIORITY, 0, 1, &[0, 0, 0, 3, 1]),
                kind::WINDOW_UPDATE => write_window_update(&mut b, 0, 1),
                k => write_frame(&mut b, k, 0, 0, b"x"),
            }
        }
        c.feed(&b);
        assert!(c.is_closed(), "{flood}");
        assert_eq!(goaway_code(&c.out), Some(Code::EnhanceYourCalm), "{flood}");
        // What it made us queue is bounded by the budget.
        assert!(c.out.len() < 1000 * 17 + 200, "{flood}: {}", c.out.len());
    }
}

#[test]
fn streams_past_the_limit_are_refused() {
    let mut c = Conn::new(Settings::default());
    fed(&mut c, &hello());
    let mut b = Vec::new();
    for i in 0..129u32 {
        get(&mut b, 2 * i + 1, "/");
    }
    fed(&mut c, &b);
    assert_eq!(events(&mut c).len(), 128);
    let f = frames(&c.out);
    let (h, p) = f.last().unwrap();
    assert_eq!((h.kind, h.stream), (kind::RST_STREAM, 257));
    assert_eq!(
        Code::from_u32(u32::from_be_bytes([p[0], p[1], p[2], p[3]])),
        Code::RefusedStream
    );
    // Keeping on opening streams past the limit ends in GOAWAY.
    let mut b = Vec::new();
    for i in 129..1000u32 {
        get(&mut b, 2 * i + 1, "/");
    }
    c.feed(&b);
    assert_eq!(goaway_code(&c.out), Some(Code::EnhanceYourCalm));
}

#[test]
fn data_on_a_closed_stream_still_credits_the_connection_window() {
    let s = Settings::default();
    let mut c = Conn::new(s);
    fed(&mut c, &hello());
    let mut b = Vec::new();
    write_frame(&mut b, kind::HEADERS, flag::END_HEADERS, 1, &block("/"));
    write_rst(&mut b, 1, Code::Cancel);
    fed(&mut c, &b);
    c.out.clear();
    // Twice the connection window, all on the reset stream.
    let chunk = vec![0u8; 16_384];
    let mut total = 0u64;
    while total < 2 * s.connection_window as u64 {
        let mut b = Vec::new();
        write_frame(&mut b, kind::DATA, 0, 1, &chunk);
        fed(&mut c, &b);
        total += chunk.len() as u64;
    }
    assert!(!c.is_closed(), "{:?}", c.error());
    let credited: u64 = frames(&c.out)
        .iter()
        .filter(|(h, _)| h.kind == kind::WINDOW_UPDATE && h.stream == 0)
        .map(|(_, p)| u32::from_be_bytes([p[0], p[1], p[2], p[3]]) as u64)
        .sum();
    assert!(credited >= total - s.connection_window as u64, "{credited}");
    // Padding and the bytes of a body nobody wants are credited as they come.
    let mut c = Conn::new(Settings {
        connection_window: 65_535,
        initial_window: 1 << 20,
        ..s
    });
    fed(&mut c, &hello());
    let mut b = Vec::new();
    write_frame(&mut b, kind::HEADERS, flag::END_HEADERS, 1, &block("/"));
    fed(&mut c, &b);
    c.discard_body(1);
    for _ in 0..5 {
        let mut b = Vec::new();
        write_frame(&mut b, kind::DATA, flag::PADDED, 1, &[255; 16_384]);
        fed(&mut c, &b);
    }
    assert!(!c.is_closed(), "{:?}", c.error());
}

/// A request header block with `method`, `path` and `extra` fields.
fn block_with(method: &str, path: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    let mut b = Vec::new();
    let base = [
        (":method", method),
        (":scheme", "http"),
        (":path", path),
        (":authority", "x"),
    ];
    for (n, v) in base.iter().chain(extra) {
        hpack::encode_literal(&mut b, n, v);
    }
    b
}

/// A PUT on stream `id` whose body follows (content-length `len`, if any).
fn put(out: &mut Vec<u8>, id: u32, len: Option<u64>) {
    let n = len.map(|n| n.to_string());
    let extra: Vec<(&str, &str)> = n.iter().map(|n| ("content-length", n.as_str())).collect();
    write_frame(
        out,
        kind::HEADERS,
        flag::END_HEADERS,
        id,
        &block_with("PUT", "/up", &extra),
    );
}

/// WINDOW_UPDATE increments sent for `stream`, summed.
fn credited(out: &[u8], stream: u32) -> u64 {
    frames(out)
        .iter()
        .filter(|(h, _)| h.kind == kind::WINDOW_UPDATE && h.stream == stream)
        .map(|(_, p)| u32::from_be_bytes([p[0], p[1], p[2], p[3]]) as u64)
        .sum()
}

fn rst_codes(out: &[u8]) -> Vec<(u32, Code)> {
    frames(out)
        .iter()
        .filter(|(h, _)| h.kind == kind::RST_STREAM)
        .map(|(h, p)| {
            (
                h.stream,
                Code::from_u32(u32::from_be_bytes([p[0], p[1], p[2], p[3]])),
            )
        })
        .collect()
}

#[test]
fn a_body_is_held_until_taken_and_the_windows_open_only_as_it_is() {
    let s = Settings {
        initial_window: 64 * 1024,
        connection_window: 128 * 1024,
        ..Settings::default()
    };
    let mut c = Conn::new(s);
    fed(&mut c, &hello());
    let mut b = Vec::new();
    put(&mut b, 1, Some(100_000));
    fed(&mut c, &b);
    let ev = events(&mut c);
    let [Event::Request { stream: 1, head }] = &ev[..] else {
        panic!("{ev:?}");
    };
    assert!(!head.end_stream);
    assert_eq!(head.content_length, Some(100_000));
    c.out.clear();
    // The whole stream window, in four frames: held, nothing credited.
    let mut sent = Vec::new();
    for i in 0..4u8 {
        let chunk = vec![i; 16_384];
        let mut b = Vec::new();
        write_frame(&mut b, kind::DATA, 0, 1, &chunk);
        fed(&mut c, &b);
        sent.extend_from_slice(&chunk);
    }
    assert_eq!(events(&mut c), vec![Event::Data { stream: 1 }]);
    assert_eq!(c.body(1), Some((&sent[..], false)));
    assert_eq!(credited(&c.out, 1) + credited(&c.out, 0), 0);
    // One byte more is beyond the stream's window: a stream error.
    let mut c2 = Conn::new(s);
    fed(&mut c2, &hello());
    let mut b = Vec::new();
    put(&mut b, 1, None);
    for _ in 0..4 {
        write_frame(&mut b, kind::DATA, 0, 1, &[0; 16_384]);
    }
    write_frame(&mut b, kind::DATA, 0, 1, b"x");
    fed(&mut c2, &b);
    assert!(!c2.is_closed());
    assert!(rst_codes(&c2.out).contains(&(1, Code::FlowControl)));
    // Taken: both windows open again, by what was taken.
    c.consume(1, 40_000);
    assert_eq!(c.body(1).unwrap().0, &sent[40_000..]);
    assert_eq!(credited(&c.out, 1), 40_000);
    c.consume(1, usize::MAX);
    assert_eq!(credited(&c.out, 0), 65_536);
    // The rest, with END_STREAM.
    let rest = vec![9u8; 100_000 - 65_536];
    let mut b = Vec::new();
    let n = rest.chunks(16_384).count();
    for (i, d) in rest.chunks(16_384).enumerate() {
        let f = if i + 1 == n { flag::END_STREAM } else { 0 };
        write_frame(&mut b, kind::DATA, f, 1, d);
    }
    fed(&mut c, &b);
    assert!(!c.is_closed(), "{:?}", c.error());
    assert_eq!(events(&mut c), vec![Event::Data { stream: 1 }]);
    assert_eq!(c.body(1), Some((&rest[..], true)));
    c.consume(1, rest.len());
    assert_eq!(c.body(1), Some((&[][..], true)));
    assert!(c.send_headers(1, 201, &[], true));
    assert!(c.is_idle());
    assert!(rst_codes(&c.out).is_empty());
}

#[test]
fn a_body_taken_gets_the_larger_window_one_waiting_does_not() {
    let s = Settings::default();
    let mut c = Conn::new(s);
    fed(&mut c, &hello());
    let mut b = Vec::new();
    put(&mut b, 1, None);
    put(&mut b, 3, None);
    fed(&mut c, &b);
    c.out.clear();
    c.accept_body(1);
    let grown = (s.body_window - s.initial_window) as u64;
    assert_eq!(credited(&c.out, 1), grown);
    assert_eq!(credited(&c.out, 3), 0);
    // Stream 1 may now send its larger window; stream 3 its initial one only.
    let mut b = Vec::new();
    for _ in 0..s.body_window / 16_384 {
        write_frame(&mut b, kind::DATA, 0, 1, &[0; 16_384]);
    }
    for _ in 0..s.initial_window / 16_384 {
        write_frame(&mut b, kind::DATA, 0, 3, &[0; 16_384]);
    }
    fed(&mut c, &b);
    assert!(rst_codes(&c.out).is_empty());
    let mut b = Vec::new();
    write_frame(&mut b, kind::DATA, 0, 3, b"x");
    fed(&mut c, &b);
    assert_eq!(rst_codes(&c.out), vec![(3, Code::FlowControl)]);
    // Streams waiting their turn hold at most their initial window each: all the
    // others together leave room in the connection window for the ones taken.
    let waiting = (s.max_concurrent_streams as u64 - 8) * s.initial_window as u64;
    assert!(waiting + 8 * s.body_window as u64 <= s.connection_window as u64);
}

#[test]
fn a_100_continue_comes_before_the_final_answer() {
    let mut c = Conn::new(Settings::default());
    fed(&mut c, &hello());
    let mut b = Vec::new();
    put(&mut b, 1, Some(2));
    fed(&mut c, &b);
    c.out.clear();
    assert!(c.send_continue(1));
    let mut b = Vec::new();
    write_frame(&mut b, kind::DATA, flag::END_STREAM, 1, b"hi");
    fed(&mut c, &b);
    c.consume(1, 2);
    // The body ended: no interim answer any more; the final one ends the stream.
    assert!(!c.send_continue(1));
    assert!(c.send_headers(1, 201, &[], true));
    let f = frames(&c.out);
    let heads: Vec<_> = f.iter().filter(|(h, _)| h.kind == kind::HEADERS).collect();
    assert_eq!(heads.len(), 2);
    assert_eq!(heads[0].0.flags & flag::END_STREAM, 0);
    assert_ne!(heads[1].0.flags & flag::END_STREAM, 0);
    let mut d = hpack::Decoder::new(4096, 1 << 16);
    assert_eq!(d.decode(&heads[0].1).unwrap().fields[0].1, b"100");
    assert_eq!(d.decode(&heads[1].1).unwrap().fields[0].1, b"201");
    assert!(c.is_idle());
}

#[test]
fn data_beyond_the_connection_window_is_a_flow_control_error() {
    // A consumer that takes nothing: the peer may send the connection window,
    // not a byte more, whatever the streams' windows.
    let s = Settings {
        initial_window: 1 << 20,
        connection_window: 65_535,
        ..Settings::default()
    };
    let mut c = Conn::new(s);
    fed(&mut c, &hello());
    let mut b = Vec::new();
    put(&mut b, 1, None);
    put(&mut b, 3, None);
    for id in [1, 3] {
        write_frame(&mut b, kind::DATA, 0, id, &[0; 16_384]);
        write_frame(&mut b, kind::DATA, 0, id, &[0; 16_383]);
    }
    fed(&mut c, &b);
    assert!(!c.is_closed());
    assert_eq!(credited(&c.out, 0), 0);
    let mut b = Vec::new();
    write_frame(&mut b, kind::DATA, 0, 3, &[0; 2]);
    c.feed(&b);
    assert!(c.is_closed());
    assert_eq!(goaway_code(&c.out), Some(Code::FlowControl));
}

#[test]
fn a_body_that_does_not_match_its_content_length_is_a_stream_error() {
    // More bytes than announced; fewer, with END_STREAM; fewer, ended by trailers.
    for (frames_of, trailers) in [
        (&[&b"hello"[..], &b"!"[..]][..], false),
        (&[&b"hell"[..]][..], false),
        (&[&b"hell"[..]][..], true),
    ] {
        let mut c = Conn::new(Settings::default());
        fed(&mut c, &hello());
        let mut b = Vec::new();
        put(&mut b, 1, Some(5));
        for (i, d) in frames_of.iter().enumerate() {
            let last = i + 1 == frames_of.len() && !trailers;
            let f = if last { flag::END_STREAM } else { 0 };
            write_frame(&mut b, kind::DATA, f, 1, d);
        }
        if trailers {
            write_frame(
                &mut b,
                kind::HEADERS,
                flag::END_HEADERS | flag::END_STREAM,
                1,
                &[0, 1, b'x', 1, b'y'],
            );
        }
        fed(&mut c, &b);
        assert!(!c.is_closed(), "{frames_of:?}");
        assert_eq!(
            rst_codes(&c.out),
            vec![(1, Code::Protocol)],
            "{frames_of:?}"
        );
        assert!(
            events(&mut c).contains(&Event::Reset { stream: 1 }),
            "{frames_of:?}"
        );
        assert!(c.body(1).is_none());
        // The connection goes on.
        let mut b = Vec::new();
        get(&mut b, 3, "/");
        fed(&mut c, &b);
        assert!(matches!(
            events(&mut c)[..],
            [Event::Request { stream: 3, .. }]
        ));
    }
}

#[test]
fn an_answer_before_the_whole_body_resets_the_stream_no_error() {
    let mut c = Conn::new(Settings {
        connection_window: 65_535,
        ..Settings::default()
    });
    fed(&mut c, &hello());
    let mut b = Vec::new();
    put(&mut b, 1, Some(1 << 30));
    write_frame(&mut b, kind::DATA, 0, 1, &[1; 1000]);
    fed(&mut c, &b);
    events(&mut c);
    c.out.clear();
    // 413 before the body is read: the peer is told to stop, without error.
    assert!(c.send_headers(1, 413, &[], true));
    assert_eq!(rst_codes(&c.out), vec![(1, Code::NoError)]);
    assert!(c.is_idle());
    // What it had in flight is dropped, the connection window still credited.
    c.out.clear();
    for _ in 0..64 {
        let mut b = Vec::new();
        write_frame(&mut b, kind::DATA, 0, 1, &[1; 16_384]);
        fed(&mut c, &b);
    }
    assert!(!c.is_closed(), "{:?}", c.error());
    assert!(rst_codes(&c.out).is_empty());
    assert!(credited(&c.out, 0) >= 64 * 16_384 - 65_535);

    // A body the stream's window still lets through (a small upload on its way
    // when the 401 went): received and thrown away up to its END_STREAM, no reset.
    for len in [Some(10), None] {
        let mut c = Conn::new(Settings::default());
        fed(&mut c, &hello());
        let mut b = Vec::new();
        put(&mut b, 1, len);
        fed(&mut c, &b);
        events(&mut c);
        c.out.clear();
        assert!(c.send_headers(1, 401, &[], true));
        assert!(!c.is_idle());
        let mut b = Vec::new();
        write_frame(&mut b, kind::DATA, flag::END_STREAM, 1, b"0123456789");
        fed(&mut c, &b);
        assert!(rst_codes(&c.out).is_empty(), "{len:?}");
        assert!(c.is_idle(), "{len:?}");
        assert_eq!(events(&mut c), vec![], "{len:?}");
    }
    // A body the caller stopped taking (refused mid-way): reset at once.
    let mut c = Conn::new(Settings::default());
    fed(&mut c, &hello());
    let mut b = Vec::new();
    put(&mut b, 1, Some(10));
    write_frame(&mut b, kind::DATA, 0, 1, b"01234");
    fed(&mut c, &b);
    events(&mut c);
    c.stop_body(1);
    assert_eq!(c.body(1), Some((&[][..], false)));
    c.out.clear();
    assert!(c.send_headers(1, 408, &[], true));
    assert_eq!(rst_codes(&c.out), vec![(1, Code::NoError)]);
    assert!(c.is_idle());
    // Of unknown length, it goes on past that window: reset NO_ERROR then.
    let mut c = Conn::new(Settings {
        initial_window: 32_768,
        ..Settings::default()
    });
    fed(&mut c, &hello());
    let mut b = Vec::new();
    put(&mut b, 1, None);
    fed(&mut c, &b);
    events(&mut c);
    assert!(c.send_headers(1, 401, &[], true));
    c.out.clear();
    let mut b = Vec::new();
    write_frame(&mut b, kind::DATA, 0, 1, &[0; 16_384]);
    write_frame(&mut b, kind::DATA, 0, 1, &[0; 16_384]);
    fed(&mut c, &b);
    assert_eq!(rst_codes(&c.out), vec![(1, Code::NoError)]);
    assert!(c.is_idle());
}

#[test]
fn protocol_errors_end_the_connection() {
    let cases: Vec<(Vec<u8>, Code)> = vec![
        (b"GET / HTTP/1.1\r\n\r\n".to_vec(), Code::Protocol),
        (
            {
                let mut b = PREFACE_BYTES.to_vec();
                write_frame(&mut b, kind::PING, 0, 0, &[0; 8]);
                b
            },
            Code::Protocol,
        ),
        (
            {
                let mut b = hello();
                get(&mut b, 2, "/");
                b
            },
            Code::Protocol,
        ),
        (
            {
                let mut b = hello();
                get(&mut b, 5, "/");
                get(&mut b, 3, "/");
                b
            },
            Code::Protocol,
        ),
        (
            {
                // Stream 1 was reset by the client: HEADERS on it again is STREAM_CLOSED.
                let mut b = hello();
                write_frame(&mut b, kind::HEADERS, flag::END_HEADERS, 1, &block("/"));
                write_rst(&mut b, 1, Code::Cancel);
                get(&mut b, 1, "/");
                b
            },
            Code::StreamClosed,
        ),
        (
            {
                let mut b = hello();
                write_frame(&mut b, kind::DATA, 0, 0, b"x");
                b
            },
            Code::Protocol,
        ),
        (
            {
                let mut b = hello();
                write_frame(&mut b, kind::DATA, 0, 9, b"x");
                b
            },
            Code::Protocol,
        ),
        (
            {
                let mut b = hello();
                write_frame(
                    &mut b,
                    kind::HEADERS,
                    flag::END_HEADERS,
                    1,
                    &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
                );
                b
            },
            Code::Compression,
        ),
        (
            {
                let mut b = hello();
                write_frame(&mut b, kind::DATA, 0, 1, &vec![0; 20_000]);
                b
            },
            Code::FrameSize,
        ),
        (
            {
                let mut b = hello();
                write_settings(&mut b, &[(setting::MAX_FRAME_SIZE, 100)]);
                b
            },
            Code::Protocol,
        ),
        (
            {
                let mut b = hello();
                write_frame(
                    &mut b,
                    kind::PUSH_PROMISE,
                    flag::END_HEADERS,
                    1,
                    &[0, 0, 0, 2],
                );
                b
            },
            Code::Protocol,
        ),
    ];
    for (bytes, code) in cases {
        let mut c = Conn::new(Settings::default());
        c.feed(&bytes);
        assert!(c.is_closed(), "{bytes:?}");
        assert_eq!(goaway_code(&c.out), Some(code), "{bytes:?}");
    }
}

#[test]
fn a_malformed_request_resets_its_stream_only() {
    let mut c = Conn::new(Settings::default());
    fed(&mut c, &hello());
    let mut blk = block("/");
    blk.push(0);
    hpack::encode_int(&mut blk, 0, 7, 10);
    blk.extend_from_slice(b"connection");
    hpack::encode_int(&mut blk, 0, 7, 5);
    blk.extend_from_slice(b"close");
    let mut b = Vec::new();
    write_frame(
        &mut b,
        kind::HEADERS,
        flag::END_HEADERS | flag::END_STREAM,
        1,
        &blk,
    );
    get(&mut b, 3, "/ok");
    fed(&mut c, &b);
    assert!(matches!(
        &events(&mut c)[..],
        [Event::Request { stream: 3, .. }]
    ));
    assert!(
        frames(&c.out)
            .iter()
            .any(|(h, _)| h.kind == kind::RST_STREAM && h.stream == 1)
    );
}

#[test]
fn go_away_lets_open_streams_finish() {
    let mut c = Conn::new(Settings::default());
    let mut b = hello();
    get(&mut b, 1, "/");
    fed(&mut c, &b);
    events(&mut c);
    c.go_away();
    assert!(!c.is_closed());
    // A stream opened after the GOAWAY is ignored.
    let mut b = Vec::new();
    get(&mut b, 3, "/");
    fed(&mut c, &b);
    assert!(events(&mut c).is_empty());
    c.send_headers(1, 200, &[], false);
    c.send_data(1, 1, true, |b| {
        b[0] = b'x';
        1
    });
    assert!(c.is_closed());
    assert_eq!(goaway_code(&c.out), Some(Code::NoError));
    assert_eq!(c.error(), None);
}

#[test]
fn a_short_fill_and_a_reset_never_send_more_than_was_read() {
    let mut c = Conn::new(Settings::default());
    let mut b = hello();
    get(&mut b, 1, "/");
    fed(&mut c, &b);
    events(&mut c);
    c.send_headers(1, 200, &[("content-length", "10")], false);
    c.out.clear();
    let n = c.send_data(1, 10, true, |b| {
        b[..4].copy_from_slice(b"abcd");
        4
    });
    assert_eq!(n, 4);
    c.reset(1);
    let f = frames(&c.out);
    assert_eq!(
        (f[0].0.kind, f[0].0.flags, &f[0].1[..]),
        (kind::DATA, 0, &b"abcd"[..])
    );
    assert_eq!(f[1].0.kind, kind::RST_STREAM);
    assert!(matches!(&events(&mut c)[..], [Event::Reset { stream: 1 }]));
}

mod random {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        /// Arbitrary frames after a valid start: never a panic, every byte
        /// accounted for, output always whole frames.
        #[test]
        fn arbitrary_frames_never_panic(
            frames in proptest::collection::vec(
                (0u8..12, any::<u8>(), 0u32..8, proptest::collection::vec(any::<u8>(), 0..64)),
                0..40,
            )
        ) {
            let mut c = Conn::new(Settings::default());
            let mut b = hello();
            for (k, f, s, p) in &frames {
                write_frame(&mut b, *k, *f, *s, p);
            }
            prop_assert_eq!(c.feed(&b), b.len());
            while let Some(ev) = c.poll_event() {
                if let Event::Request { stream, .. } = ev {
                    c.send_headers(stream, 200, &[], false);
                    c.send_data(stream, 1, true, |d| { d.fill(b'x'); d.len() });
                }
            }
            let _ = super::frames(&c.out);
        }
    }
}

#[test]
fn trailers_with_a_pseudo_field_reset_the_stream() {
    let mut c = Conn::new(Settings::default());
    let mut b = hello();
    write_frame(&mut b, kind::HEADERS, flag::END_HEADERS, 1, &block("/"));
    write_frame(
        &mut b,
        kind::HEADERS,
        flag::END_HEADERS | flag::END_STREAM,
        1,
        &block("/"),
    );
    fed(&mut c, &b);
    assert!(!c.is_closed());
    let rst = frames(&c.out)
        .into_iter()
        .find(|(h, _)| h.kind == kind::RST_STREAM && h.stream == 1)
        .expect("RST_STREAM");
    assert_eq!(
        Code::from_u32(u32::from_be_bytes(rst.1[..4].try_into().unwrap())),
        Code::Protocol
    );
}

#[test]
fn headers_on_a_half_closed_stream_are_one_stream_closed_reset() {
    let mut c = Conn::new(Settings::default());
    let mut b = hello();
    get(&mut b, 1, "/");
    get(&mut b, 1, "/");
    fed(&mut c, &b);
    assert!(!c.is_closed());
    let rsts: Vec<_> = frames(&c.out)
        .into_iter()
        .filter(|(h, _)| h.kind == kind::RST_STREAM)
        .map(|(h, p)| {
            (
                h.stream,
                Code::from_u32(u32::from_be_bytes(p[..4].try_into().unwrap())),
            )
        })
        .collect();
    assert_eq!(rsts, vec![(1, Code::StreamClosed)]);
}

/// A DATA frame whose payload the caller sends itself: only the header goes into
/// `out`, with the windows charged as for a frame in the buffer; the payload's
/// place comes before what the frame's end appends (here the reset of a request
/// body still coming).
#[test]
fn a_data_header_alone_charges_the_windows_and_says_where_its_payload_goes() {
    let mut c = Conn::new(Settings::default());
    let mut b = PREFACE_BYTES.to_vec();
    write_settings(&mut b, &[(setting::INITIAL_WINDOW_SIZE, 100)]);
    // A request whose body is still coming (no END_STREAM), and nothing of it
    // wanted: the end of the response resets it.
    let mut block = Vec::new();
    crate::hpack::encode_literal(&mut block, ":method", "POST");
    crate::hpack::encode_literal(&mut block, ":scheme", "http");
    crate::hpack::encode_literal(&mut block, ":path", "/");
    crate::hpack::encode_literal(&mut block, ":authority", "x");
    crate::frame::write_frame(&mut b, kind::HEADERS, flag::END_HEADERS, 1, &block);
    fed(&mut c, &b);
    events(&mut c);
    c.stop_body(1);
    c.send_headers(1, 200, &[], false);
    let before = c.out.len();
    let (n, at) = c.send_data_header(1, 1000, true);
    assert_eq!((n, at), (100, before + 9), "cut by the window");
    assert_eq!(c.capacity(1), 0);
    let (n, at) = c.send_data_header(1, 0, true);
    assert_eq!(n, 0);
    let h = crate::frame::Header::parse(&c.out[at - 9..]).unwrap();
    assert_eq!(
        (h.kind, h.len, h.flags & flag::END_STREAM),
        (kind::DATA, 0, flag::END_STREAM)
    );
    // The request body's reset came after the last header: after the payload.
    let rest = frames(&c.out[at..]);
    assert_eq!(rest.first().map(|(h, _)| h.kind), Some(kind::RST_STREAM));
}

fn priority_update(out: &mut Vec<u8>, frame_stream: u32, id: u32, field: &str) {
    let mut p = id.to_be_bytes().to_vec();
    p.extend_from_slice(field.as_bytes());
    write_frame(out, kind::PRIORITY_UPDATE, 0, frame_stream, &p);
}

fn prio(u: u8, i: bool) -> Option<Priority> {
    Some(Priority {
        urgency: u,
        incremental: i,
    })
}

#[test]
fn we_advertise_no_rfc7540_priorities() {
    let c = Conn::new(Settings::default());
    let f = frames(&c.out);
    assert_eq!(f[0].0.kind, kind::SETTINGS);
    assert!(
        f[0].1.chunks(6).any(|e| e == [0, 9, 0, 0, 0, 1]),
        "{:?}",
        f[0].1
    );
}

#[test]
fn a_priority_field_and_priority_updates_set_a_streams_priority() {
    let mut c = Conn::new(Settings::default());
    let mut b = hello();
    // Stream 1 asks with its field; stream 3 says nothing; stream 5 is
    // prioritized before it opens (its own field then does not count).
    write_frame(
        &mut b,
        kind::HEADERS,
        flag::END_HEADERS | flag::END_STREAM,
        1,
        &block_with("GET", "/a", &[("priority", "u=5")]),
    );
    get(&mut b, 3, "/b");
    priority_update(&mut b, 0, 5, "u=0, i");
    write_frame(
        &mut b,
        kind::HEADERS,
        flag::END_HEADERS | flag::END_STREAM,
        5,
        &block_with("GET", "/c", &[("priority", "u=6")]),
    );
    fed(&mut c, &b);
    assert_eq!(events(&mut c).len(), 3);
    assert_eq!(c.priority(1), prio(5, false));
    assert_eq!(c.priority(3), None);
    assert_eq!(c.priority(5), prio(0, true));
    // Open streams take an update at once; a malformed one means the defaults;
    // one for a closed stream is ignored.
    let mut b = Vec::new();
    priority_update(&mut b, 0, 1, "u=1");
    priority_update(&mut b, 0, 3, "u=9000, i");
    priority_update(&mut b, 0, 5, "??");
    fed(&mut c, &b);
    assert_eq!(c.priority(1), prio(1, false));
    assert_eq!(c.priority(3), prio(3, true));
    assert_eq!(c.priority(5), prio(3, false));
    assert!(c.send_headers(1, 204, &[], true));
    let mut b = Vec::new();
    priority_update(&mut b, 0, 1, "u=0");
    fed(&mut c, &b);
    assert!(!c.is_closed());
    assert_eq!(c.priority(1), None);
}

#[test]
fn priority_updates_before_their_streams_are_bounded() {
    let s = Settings {
        max_concurrent_streams: 4,
        ..Settings::default()
    };
    let mut c = Conn::new(s);
    let mut b = hello();
    get(&mut b, 1, "/a");
    // One open stream and three waiting updates fill the four places; a
    // repeated update for the same stream takes no place.
    for id in [3, 5, 7, 7, 3] {
        priority_update(&mut b, 0, id, "u=1");
    }
    fed(&mut c, &b);
    assert!(!c.is_closed());
    // Opening stream 7 lets the update for 3 and 5 go (they can't open now),
    // and takes its own.
    let mut b = Vec::new();
    get(&mut b, 7, "/b");
    fed(&mut c, &b);
    assert_eq!(c.priority(7), prio(1, false));
    assert_eq!(c.early_priorities.len(), 0);
    // Two open, two waiting: the next one is one too many.
    let mut b = Vec::new();
    for id in [9, 11] {
        priority_update(&mut b, 0, id, "u=1");
    }
    fed(&mut c, &b);
    assert!(!c.is_closed());
    let mut b = Vec::new();
    priority_update(&mut b, 0, 13, "u=1");
    fed(&mut c, &b);
    assert!(c.is_closed());
    assert_eq!(goaway_code(&c.out), Some(Code::Protocol));
}

#[test]
fn a_priority_update_on_a_stream_or_for_stream_0_is_a_protocol_error() {
    for (on, id) in [(1, 1), (0, 0), (0, 2)] {
        let mut c = Conn::new(Settings::default());
        let mut b = hello();
        get(&mut b, 1, "/a");
        priority_update(&mut b, on, id, "u=0");
        fed(&mut c, &b);
        assert!(c.is_closed(), "on {on} for {id}");
        assert_eq!(
            goaway_code(&c.out),
            Some(Code::Protocol),
            "on {on} for {id}"
        );
    }
    // Shorter than a stream id: FRAME_SIZE_ERROR.
    let mut c = Conn::new(Settings::default());
    let mut b = hello();
    write_frame(&mut b, kind::PRIORITY_UPDATE, 0, 0, &[0, 0, 1]);
    fed(&mut c, &b);
    assert_eq!(goaway_code(&c.out), Some(Code::FrameSize));
}

#[test]
fn a_priority_update_flood_runs_out_of_the_control_budget() {
    let mut c = Conn::new(Settings::default());
    let mut b = hello();
    get(&mut b, 1, "/a");
    for _ in 0..Settings::default().control_budget {
        priority_update(&mut b, 0, 1, "u=2");
    }
    fed(&mut c, &b);
    assert!(c.is_closed());
    assert_eq!(goaway_code(&c.out), Some(Code::EnhanceYourCalm));
}
