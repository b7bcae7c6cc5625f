//! HTTP/2 file bodies in DATA frames (issue 21, Build item 3): frame headers from
//! the output buffer and payloads from a mapping of the file, many frames per
//! `sendmsg` (epoll, h2c), else `pread` into the frames. Byte-exact across frame,
//! window and mapping boundaries, counted under the engine that ran, and never a
//! byte the file did not hold when it is truncated mid-body.

use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use zcopy_http::config::Config;
use zcopy_http::driver::IoDriver;
use zcopy_http2::frame::{self, Header, flag, kind, setting};
use zcopy_http2::hpack;

use crate::h2::{read_frame, request_block};
use crate::util::*;

fn drivers() -> Vec<IoDriver> {
    if std::env::var_os("ZCOPY_IO").is_some_and(|v| !v.is_empty()) {
        vec![io_driver()]
    } else {
        vec![IoDriver::Epoll, IoDriver::Uring]
    }
}

/// A server on driver `io` whose counters the test can read.
fn serve(
    io: IoDriver,
    root: &Path,
) -> (TestServer, std::sync::Arc<zcopy_http::stats::ServerStats>) {
    TestServer::with_stats(Config {
        root: root.to_path_buf(),
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        workers: 1,
        io,
        ..Config::default()
    })
}

/// Whether the mapped and the lent paths may run (`ZCOPY_DISABLE` turns them off
/// with their engines, `mmap` and `sendfile`: the suite's forced passes).
fn paths_on() -> (bool, bool) {
    use zcopy::EngineKind;
    let forced = zcopy::Forced::from_env();
    (
        forced.limit(EngineKind::Mmap).is_none(),
        forced.limit(EngineKind::Sendfile).is_none(),
    )
}

fn counter(stats: &zcopy_http::stats::ServerStats, engine: &str) -> u64 {
    stat(
        stats,
        &format!("zcopy_body_bytes_total{{engine=\"{engine}\"}}"),
    )
}

/// curl h2c: (status, body, content-type).
fn h2c(srv: &TestServer, path: &str, extra: &[&str]) -> (u16, Vec<u8>, String) {
    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("body");
    let out = Command::new("curl")
        .args(["-s", "--http2-prior-knowledge", "-o"])
        .arg(&body)
        .args(["-w", "%{http_code} %{http_version} %{content_type}"])
        .args(extra)
        .arg(srv.url(path))
        .output()
        .expect("curl runs");
    let w = String::from_utf8_lossy(&out.stdout).to_string();
    let mut it = w.splitn(3, ' ');
    let code = it.next().unwrap_or("0").parse().unwrap_or(0);
    assert_eq!(it.next(), Some("2"), "{path}: {w}");
    let ct = it.next().unwrap_or("").to_string();
    (code, std::fs::read(&body).unwrap_or_default(), ct)
}

/// Sizes around the frame size (16 KiB), the mapped path's threshold (64 KiB)
/// and a mapping window (32 MiB).
const SIZES: [u64; 11] = [
    0,
    1,
    16383,
    16384,
    16385,
    65535,
    65536,
    65537,
    (1 << 20) + 7,
    (5 << 20) + 3,
    (33 << 20) + 11,
];

fn sized(fx: &Fixture) {
    for len in SIZES {
        write_pattern(&fx.root().join(format!("f{len}")), len);
    }
}

/// Every size byte-exact over h2c on both drivers, ranges and multipart too; on
/// epoll the large bodies went from the mapping (counted under `mmap`), the small
/// ones from memory or pread.
#[test]
fn h2c_file_bodies_are_byte_exact_across_frame_window_and_mapping_sizes() {
    if !require("curl") {
        return;
    }
    let fx = Fixture::new();
    sized(&fx);
    for io in drivers() {
        let (srv, stats) = serve(io, &fx.root());
        for len in SIZES {
            let (code, body, _) = h2c(&srv, &format!("/f{len}"), &[]);
            assert_eq!(code, 200, "{io} f{len}");
            assert_eq!(body.len() as u64, len, "{io} f{len}");
            assert_pattern(&body, 0, &format!("{io} f{len}"));
        }
        let big = (1u64 << 20) + 7;
        let (code, body, _) = h2c(&srv, &format!("/f{big}"), &["-r", "16383-1000000"]);
        assert_eq!(code, 206);
        assert_eq!(body.len(), 1000000 - 16383 + 1);
        assert_pattern(&body, 16383, &format!("{io} range"));
        let ranges = [(0u64, 9u64), (16380, 16390), (70000, big - 1)];
        let spec = ranges
            .iter()
            .map(|(a, b)| format!("{a}-{b}"))
            .collect::<Vec<_>>()
            .join(",");
        let (code, body, ct) = h2c(&srv, &format!("/f{big}"), &["-r", &spec]);
        assert_eq!(code, 206);
        assert!(ct.starts_with("multipart/byteranges"), "{ct}");
        let mut from = 0;
        for (a, b) in ranges {
            let part = pattern(a, (b - a + 1) as usize);
            let at = body[from..]
                .windows(part.len())
                .position(|w| w == part)
                .unwrap_or_else(|| panic!("{io}: part {a}-{b} in order"));
            from += at + part.len();
        }
        let mapped = counter(&stats, "mmap");
        if io == IoDriver::Epoll && srv.io_driver() == IoDriver::Epoll && paths_on().0 {
            // Every body of more than 64 KiB (the cache's limit: those are leased),
            // the range and the multipart's file parts.
            let want: u64 = SIZES.iter().filter(|&&l| l > 65536).sum::<u64>()
                + (1000000 - 16383 + 1)
                + ranges.iter().map(|(a, b)| b - a + 1).sum::<u64>();
            assert_eq!(mapped, want, "epoll h2c: the mapped path ran");
        } else {
            assert_eq!(mapped, 0, "{io}: pread");
        }
        srv.stop();
    }
}

/// A raw h2c client.
struct Raw {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    /// Preface and SETTINGS with stream window `window` (the connection window
    /// stays 65535 unless `conn_window` adds to it).
    fn open(srv: &TestServer, window: u32, conn_window: u32) -> Raw {
        let s = srv.connect();
        let mut r = Raw { s, buf: Vec::new() };
        let mut b = frame::PREFACE.to_vec();
        frame::write_settings(&mut b, &[(setting::INITIAL_WINDOW_SIZE, window)]);
        if conn_window > 0 {
            frame::write_window_update(&mut b, 0, conn_window);
        }
        r.s.write_all(&b).unwrap();
        r
    }

    fn get(&mut self, id: u32, path: &str) {
        let mut b = Vec::new();
        frame::write_frame(
            &mut b,
            kind::HEADERS,
            flag::END_HEADERS | flag::END_STREAM,
            id,
            &request_block("GET", path, &[]),
        );
        self.s.write_all(&b).unwrap();
    }

    fn frame(&mut self) -> Option<(Header, Vec<u8>)> {
        read_frame(&mut self.s, &mut self.buf)
    }

    fn credit(&mut self, id: u32, n: u32) {
        let mut b = Vec::new();
        frame::write_window_update(&mut b, id, n);
        frame::write_window_update(&mut b, 0, n);
        self.s.write_all(&b).unwrap();
    }
}

/// Small, odd windows credited back as DATA comes: frames cut at window edges
/// (not at 16 KiB), two streams interleaved, each byte-exact.
#[test]
fn odd_windows_cut_frames_anywhere_and_bodies_stay_byte_exact() {
    let fx = Fixture::new();
    let a = (1u64 << 20) + 7;
    let b = 65537u64;
    write_pattern(&fx.root().join("a"), a);
    write_pattern(&fx.root().join("b"), b);
    for io in drivers() {
        let (srv, _) = serve(io, &fx.root());
        let mut c = Raw::open(&srv, 10007, 0);
        c.get(1, "/a");
        c.get(3, "/b");
        let mut got = [Vec::new(), Vec::new()];
        let mut ended = 0;
        let end = Instant::now() + Duration::from_secs(30);
        while ended < 2 && Instant::now() < end {
            let Some((h, p)) = c.frame() else { break };
            match h.kind {
                kind::SETTINGS if h.flags & flag::ACK == 0 => {
                    let mut ack = Vec::new();
                    frame::write_frame(&mut ack, kind::SETTINGS, flag::ACK, 0, &[]);
                    c.s.write_all(&ack).unwrap();
                }
                kind::HEADERS if h.flags & flag::END_STREAM != 0 => ended += 1,
                kind::DATA => {
                    assert!(p.len() <= 16384);
                    got[(h.stream as usize - 1) / 2].extend_from_slice(&p);
                    if h.flags & flag::END_STREAM != 0 {
                        ended += 1;
                    } else if !p.is_empty() {
                        // Credit back what came (one update each: more is a flood).
                        c.credit(h.stream, p.len() as u32);
                    }
                }
                kind::RST_STREAM | kind::GOAWAY => panic!("{io}: unexpected {h:?}"),
                _ => {}
            }
        }
        assert_eq!(got[0].len() as u64, a, "{io}: a");
        assert_eq!(got[1].len() as u64, b, "{io}: b");
        assert_pattern(&got[0], 0, &format!("{io}: a"));
        assert_pattern(&got[1], 0, &format!("{io}: b"));
        srv.stop();
    }
}

/// Truncated mid-body (mid-page) while its stream waits for window: the writer
/// waits for the server's lease (epoll's mapped path) or goes ahead at once
/// (pread); either way the client gets only bytes the file held (never zeros),
/// the stream is reset, and the connection goes on: the next request is served.
#[test]
fn a_file_truncated_mid_body_over_h2_resets_its_stream_with_only_its_bytes() {
    let fx = Fixture::new();
    let len = 8u64 << 20;
    let first = 1u64 << 20;
    // In the last page of a 16 KiB frame: a mapping would read that page's tail
    // as zeros, and the frame's payload ends at the page's end (no fault).
    let cut = first + (1 << 20) + 16384 - 100;
    let path = fx.root().join("t.bin");
    write_pattern(&fx.root().join("after"), 70000);
    for io in drivers() {
        write_pattern(&path, len);
        let (srv, stats) = serve(io, &fx.root());
        // The stream's window lets the first MiB go; the connection's is wide.
        let mut c = Raw::open(&srv, first as u32, 100 << 20);
        c.get(1, "/t.bin");
        // One decoder for every HEADERS on the connection: the server's response
        // heads refer to its dynamic table, which each of them may add to.
        let mut dec = hpack::Decoder::new(4096, 1 << 20);
        let mut got = Vec::new();
        while (got.len() as u64) < first {
            let (h, p) = c.frame().expect("DATA");
            match h.kind {
                kind::DATA => {
                    assert_eq!(h.stream, 1);
                    got.extend_from_slice(&p);
                }
                kind::HEADERS => {
                    dec.decode(&p).unwrap();
                }
                _ => {}
            }
        }
        // Blocks while the server holds a read lease, until it lets go.
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(cut).unwrap();
        drop(f);
        c.credit(1, 64 << 20);
        let mut reset = false;
        let end = Instant::now() + Duration::from_secs(30);
        while !reset && Instant::now() < end {
            let Some((h, p)) = c.frame() else { break };
            match h.kind {
                kind::DATA => {
                    assert_eq!(h.stream, 1);
                    assert!(h.flags & flag::END_STREAM == 0, "{io}: a whole body");
                    got.extend_from_slice(&p);
                }
                kind::RST_STREAM => reset = true,
                kind::GOAWAY => panic!("{io}: GOAWAY"),
                _ => {}
            }
        }
        // A frame cut short by a close: what came of its payload counts too (a
        // client such as nghttp2 hands DATA on as it arrives).
        if let Some(h) = Header::parse(&c.buf)
            && h.kind == kind::DATA
        {
            got.extend_from_slice(&c.buf[9..]);
        }
        assert!(
            got.len() as u64 <= cut,
            "{io}: {} bytes past the cut",
            got.len()
        );
        assert_pattern(&got, 0, &format!("{io}: truncated body"));
        assert!(reset, "{io}: the stream was reset");
        // The connection goes on.
        c.get(3, "/after");
        let mut after = Vec::new();
        let mut status = 0;
        loop {
            let (h, p) = c.frame().expect("the next response");
            match h.kind {
                kind::HEADERS if h.stream == 3 => {
                    let fields = dec.decode(&p).unwrap().fields;
                    status = std::str::from_utf8(&fields[0].1).unwrap().parse().unwrap();
                }
                kind::DATA if h.stream == 3 => {
                    after.extend_from_slice(&p);
                    if h.flags & flag::END_STREAM != 0 {
                        break;
                    }
                }
                _ => {}
            }
        }
        assert_eq!(status, 200);
        assert_eq!(after.len(), 70000);
        assert_pattern(&after, 0, &format!("{io}: after"));
        if srv.io_driver() == IoDriver::Epoll && paths_on().0 {
            assert!(
                counter(&stats, "mmap") >= first,
                "{io}: the mapped path ran"
            );
            let breaks = metric(&stats.render(), "zcopy_lease_breaks_total");
            assert_eq!(breaks, Some(1), "{io}: the writer broke the lease");
        }
        drop(c);
        srv.stop();
    }
}

/// A file that can't change (on a read-only erofs mount) goes by reference on
/// epoll: frame headers, each payload by `sendfile` (counted under `sendfile` and
/// by reference), byte-exact, a range too; on io_uring by pread.
#[test]
fn a_file_on_a_read_only_fs_is_lent_frame_by_frame_over_h2c() {
    if !require("curl") {
        return;
    }
    let fx = Fixture::new();
    let src = fx.dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let len = (1u64 << 20) + 7;
    write_pattern(&src.join("ro.bin"), len);
    let mnt = fx.dir.path().join("mnt");
    let _mounted = match crate::lending::erofs(&src, &mnt, &fx.dir.path().join("img.erofs")) {
        Ok(m) => m,
        Err(why) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "erofs under CI=true: {why}"
            );
            eprintln!("skipped: {why}");
            return;
        }
    };
    for io in drivers() {
        let (srv, stats) = serve(io, &mnt);
        let (code, body, _) = h2c(&srv, "/ro.bin", &[]);
        assert_eq!(code, 200);
        assert_eq!(body.len() as u64, len, "{io}");
        assert_pattern(&body, 0, &format!("{io}: lent"));
        let (code, body, _) = h2c(&srv, "/ro.bin", &["-r", "5-900000"]);
        assert_eq!(code, 206);
        assert_eq!(body.len(), 900000 - 5 + 1);
        assert_pattern(&body, 5, &format!("{io}: lent range"));
        let all = len + 900000 - 5 + 1;
        let (map, lend) = paths_on();
        let (want_lent, want_mapped) = match (srv.io_driver(), lend, map) {
            (IoDriver::Epoll, true, _) => (all, 0),
            // Lending forced off: mapped.
            (IoDriver::Epoll, false, true) => (0, all),
            _ => (0, 0),
        };
        assert_eq!(
            counter(&stats, "sendfile"),
            want_lent,
            "{io}: sent by sendfile"
        );
        assert_eq!(counter(&stats, "mmap"), want_mapped, "{io}: mapped");
        srv.stop();
    }
}

/// A writer opens a file while DATA framed from its mapping waits behind a client
/// that stopped reading: the writer gets in within the drain bound (2 s, not the
/// kernel's 45 s lease-break-time or the 60 s send timeout), the connection
/// closes, and what the client then reads is only the file's bytes.
#[test]
fn a_writer_gets_in_soon_when_framed_data_waits_behind_a_stalled_client() {
    let fx = Fixture::new();
    let len = 64u64 << 20;
    let path = fx.root().join("s.bin");
    for io in drivers() {
        write_pattern(&path, len);
        let (srv, _) = serve(io, &fx.root());
        let mut c = Raw::open(&srv, 1 << 30, 1 << 30);
        c.get(1, "/s.bin");
        let mut got = Vec::new();
        while got.len() < 1 << 20 {
            let (h, p) = c.frame().expect("DATA");
            if h.kind == kind::DATA {
                got.extend_from_slice(&p);
            }
        }
        // The client stops reading: the socket fills, frames wait.
        std::thread::sleep(Duration::from_millis(300));
        let t = Instant::now();
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        let waited = t.elapsed();
        f.set_len(1000).unwrap();
        drop(f);
        assert!(
            waited < Duration::from_secs(15),
            "{io}: the writer waited {waited:?}"
        );
        c.s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        while let Some((h, p)) = c.frame() {
            if h.kind == kind::DATA {
                got.extend_from_slice(&p);
            }
        }
        if let Some(h) = Header::parse(&c.buf)
            && h.kind == kind::DATA
        {
            got.extend_from_slice(&c.buf[9..]);
        }
        assert!((got.len() as u64) < len, "{io}: not the whole file");
        assert_pattern(&got, 0, &format!("{io}: stalled then cut"));
        eprintln!("{io}: writer waited {waited:?}; {} bytes", got.len());
        drop(c);
        srv.stop();
    }
}
