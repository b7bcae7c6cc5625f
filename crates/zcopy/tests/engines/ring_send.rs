//! `ring::FileSend`: a file range sent to a socket (or pipe) through a real
//! io_uring, each engine forced, and each forced off after 64 KiB (the next one
//! finishing from the exact byte). Needs the `server` feature.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::util::*;
use zcopy::ring::{BufPool, EventRing, FileSend, MAP_CHUNK, Progress, RingSize};
use zcopy::{EngineKind, Forced, Plan, Report, TransferError};

const TOKEN: u64 = 7;

/// A ring, or why this kernel can't run one.
fn ring() -> Option<EventRing> {
    if let Err(why) = zcopy::ring::probe() {
        eprintln!("skipped: no io_uring event loop here: {why}");
        return None;
    }
    Some(
        EventRing::new(RingSize {
            entries: 64,
            recv_bufs: 4,
            recv_buf_len: 4096,
        })
        .expect("ring"),
    )
}

/// Sends `len` bytes of `file` from `offset` to `sock` as an event loop would: one
/// chunk per start, completions handed in until the op says what it sent. Returns
/// the report, or the error.
fn send(
    ring: &mut EventRing,
    op: &mut FileSend,
    file: &Arc<File>,
    mut offset: u64,
    mut len: u64,
    sock: &Rc<OwnedFd>,
) -> Result<Report, TransferError> {
    let mut pool = BufPool::new(4);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut done = Vec::new();
    while len > 0 {
        let mut p = op.start(ring, &mut pool, TOKEN, file, offset, len, sock, Vec::new());
        while matches!(p, Progress::Pending) {
            assert!(Instant::now() < deadline, "the send never finished");
            ring.submit_and_wait(Some(Duration::from_millis(20)))
                .unwrap();
            ring.completions(&mut done);
            for c in done.drain(..) {
                assert_eq!(c.token, TOKEN);
                assert!(
                    matches!(p, Progress::Pending),
                    "a completion after the op was done"
                );
                p = op.complete(ring, &mut pool, c.event);
            }
        }
        match p {
            Progress::Sent { bytes, .. } => {
                offset += bytes as u64;
                len -= bytes as u64;
            }
            Progress::Again => {}
            Progress::Ended { .. } => break,
            Progress::Failed(e) => return Err(e),
            Progress::Pending => unreachable!(),
        }
    }
    assert!(op.is_idle());
    op.release();
    Ok(op.report().clone())
}

/// A sink for the op: its fd shared the way the server shares a socket.
fn sink_of(kind: SinkKind) -> (Sink, Rc<OwnedFd>) {
    let sink = Sink::new(kind);
    let fd = Rc::new(sink.fd().try_clone_to_owned().unwrap());
    rustix::io::ioctl_fionbio(&*fd, true).unwrap();
    (sink, fd)
}

/// Runs one case: `plan` with `forced`, `len` bytes from offset 5, to `kind`.
fn case(
    plan: &[EngineKind],
    forced: Forced,
    kind: SinkKind,
    size: usize,
) -> Option<Result<Report, TransferError>> {
    let mut ring = ring()?;
    let data = pattern(size + 5, size as u64 + 3);
    let (_d, file) = file_with(&data);
    let file = Arc::new(file);
    let (sink, fd) = sink_of(kind);
    let mut op = FileSend::new(&Plan::only(plan), forced);
    let r = send(&mut ring, &mut op, &file, 5, size as u64, &fd);
    drop((op, ring, fd));
    let got = sink.finish();
    if r.is_ok() {
        assert_same(
            &got,
            &data[5..],
            &format!("{plan:?} -> {kind:?}, {size} bytes"),
        );
    }
    Some(r)
}

/// The sinks each engine can send to on a ring: SEND/SENDMSG need a socket.
fn sinks(engine: EngineKind) -> &'static [SinkKind] {
    match engine {
        EngineKind::Splice | EngineKind::Sendfile => {
            &[SinkKind::Tcp, SinkKind::Unix, SinkKind::Pipe]
        }
        _ => &[SinkKind::Tcp, SinkKind::Unix],
    }
}

const ENGINES: [EngineKind; 4] = [
    EngineKind::Splice,
    EngineKind::Sendfile,
    EngineKind::Mmap,
    EngineKind::ReadWrite,
];

#[test]
fn each_engine_forced_sends_byte_exact_to_tcp_unix_and_pipe() {
    for engine in ENGINES {
        for &kind in sinks(engine) {
            for size in [1, 4097, (1 << 20) + 7, (3 << 20) + 1] {
                let Some(r) = case(&[engine], Forced::new(), kind, size) else {
                    return;
                };
                let r = r.unwrap_or_else(|e| panic!("{engine} -> {kind:?}, {size}: {e}"));
                assert_eq!(r.bytes, size as u64, "{engine} -> {kind:?}");
                assert_eq!(r.engine(), Some(engine), "{engine} -> {kind:?}: {r:?}");
                assert_eq!(r.runs.len(), 1, "{r:?}");
                assert_eq!(r.runs[0].stats.bytes, size as u64, "counted per engine");
            }
        }
    }
}

#[test]
fn copying_engines_to_a_pipe_say_no_engine_instead_of_sending() {
    for engine in [EngineKind::Mmap, EngineKind::ReadWrite] {
        let Some(r) = case(&[engine], Forced::new(), SinkKind::Pipe, (1 << 20) + 7) else {
            return;
        };
        eprintln!("skipped: {engine} to a pipe on a ring: SEND needs a socket");
        match r {
            Err(TransferError::NoEngine { tried }) => {
                assert_eq!(tried.len(), 1, "{tried:?}");
                assert_eq!(tried[0].engine, engine);
            }
            other => panic!("{engine} -> pipe: {other:?}"),
        }
    }
}

#[test]
fn each_engine_forced_off_after_64k_hands_over_at_the_exact_byte() {
    for engine in ENGINES {
        let next = match engine {
            EngineKind::ReadWrite => EngineKind::Splice,
            _ => EngineKind::ReadWrite,
        };
        for &kind in sinks(engine).iter().filter(|&&k| sinks(next).contains(&k)) {
            let size = (2 << 20) + 7;
            let forced = Forced::new().disable_after(engine, 65536);
            let Some(r) = case(&[engine, next], forced, kind, size) else {
                return;
            };
            let r = r.unwrap_or_else(|e| panic!("{engine}@64k -> {kind:?}: {e}"));
            assert_eq!(r.bytes, size as u64);
            assert_eq!(r.runs.len(), 2, "{engine} -> {kind:?}: {r:?}");
            assert_eq!(r.runs[0].engine, engine);
            assert_eq!(r.runs[0].stats.bytes, 65536, "{r:?}");
            assert!(
                r.describe()
                    .starts_with(&format!("{engine} (forced off after 65536 bytes)")),
                "{}",
                r.describe()
            );
            assert_eq!(r.runs[1].engine, next);
            assert_eq!(r.runs[1].stats.bytes, size as u64 - 65536);
        }
    }
}

#[test]
fn zcopy_disable_from_the_environment_is_honoured() {
    // The form the server reads at start: `engine@bytes`, and a plain name.
    let forced = Forced::parse("splice@65536,mmap");
    let Some(r) = case(
        &[EngineKind::Splice, EngineKind::Mmap, EngineKind::ReadWrite],
        forced,
        SinkKind::Tcp,
        (3 << 20) + 7,
    ) else {
        return;
    };
    let r = r.unwrap();
    assert_eq!(
        r.describe(),
        "splice (forced off after 65536 bytes) → mmap (forced off after 0 bytes) → read-write"
    );
    assert_eq!(r.runs[2].stats.bytes, (3 << 20) + 7 - 65536);
}

#[test]
fn a_plan_without_ring_engines_fails_clearly() {
    let Some(r) = case(&[EngineKind::CopyRange], Forced::new(), SinkKind::Tcp, 4097) else {
        return;
    };
    assert!(matches!(r, Err(TransferError::NoEngine { .. })), "{r:?}");
}

#[test]
fn a_file_that_shrank_ends_the_send_without_a_byte_it_did_not_hold() {
    for engine in ENGINES {
        let Some(mut ring) = ring() else {
            return;
        };
        let data = pattern(200_000, 9);
        let (dir, file) = file_with(&data);
        let file = Arc::new(file);
        // Cut to 100_000 before the send: the op says "ended", never pads.
        std::fs::OpenOptions::new()
            .write(true)
            .open(dir.path().join("src"))
            .unwrap()
            .set_len(100_000)
            .unwrap();
        let (sink, fd) = sink_of(SinkKind::Tcp);
        let mut op = FileSend::new(&Plan::only(&[engine]), Forced::new());
        let r = send(&mut ring, &mut op, &file, 0, 200_000, &fd).unwrap();
        assert_eq!(r.bytes, 100_000, "{engine}");
        drop((op, ring, fd));
        assert_same(&sink.finish(), &data[..100_000], &format!("{engine}"));
    }
}

/// The plan the server builds for a copy-only peer goes by mmap for large bodies
/// and by read for small ones (mapping costs more than it saves).
#[test]
fn small_bodies_are_read_large_ones_mapped() {
    let plan = [EngineKind::Mmap, EngineKind::ReadWrite];
    let Some(small) = case(&plan, Forced::new(), SinkKind::Tcp, 100_000) else {
        return;
    };
    assert_eq!(small.unwrap().engine(), Some(EngineKind::ReadWrite));
    // Several mapped chunks and a short last one.
    let large = case(&plan, Forced::new(), SinkKind::Tcp, 2 * MAP_CHUNK + 12_345).unwrap();
    assert_eq!(large.unwrap().engine(), Some(EngineKind::Mmap));
}

/// The op holds what it names: the caller may drop its file mid-send (a lease
/// break or a timeout drops the core's) and the bytes still are that file's.
#[test]
fn the_caller_may_drop_its_file_mid_send() {
    let Some(mut ring) = ring() else {
        return;
    };
    let data = pattern((1 << 20) + 7, 4);
    let (_d, file) = file_with(&data);
    let file = Arc::new(file);
    let (sink, fd) = sink_of(SinkKind::Tcp);
    let mut op = FileSend::new(&Plan::only(&[EngineKind::Splice]), Forced::new());
    let mut pool = BufPool::new(1);
    let p = op.start(
        &mut ring,
        &mut pool,
        TOKEN,
        &file,
        0,
        1 << 20,
        &fd,
        Vec::new(),
    );
    assert!(matches!(p, Progress::Pending));
    let weak = Arc::downgrade(&file);
    drop(file);
    assert!(
        weak.upgrade().is_some(),
        "the op holds the file while in flight"
    );
    let mut done = Vec::new();
    let mut p = p;
    while matches!(p, Progress::Pending) {
        ring.submit_and_wait(Some(Duration::from_millis(20)))
            .unwrap();
        ring.completions(&mut done);
        for c in done.drain(..) {
            p = op.complete(&mut ring, &mut pool, c.event);
        }
    }
    assert!(matches!(p, Progress::Sent { .. }), "{p:?}");
    op.release();
    drop((op, ring, fd));
    let got = sink.finish();
    assert!(!got.is_empty() && data.starts_with(&got));
}

/// Issue 18 item 4 (memory): a by-copy body's chunk buffer sat in a send waiting
/// for its slow reader, one per connection (200 slow readers held ~50 MiB). Now a
/// chunk sends what fits and gives its buffer back; a full socket is waited for
/// with no buffer, and a burst of chunks shares a budget.
#[test]
fn stalled_readers_hold_no_buffer_and_a_burst_stays_in_budget() {
    use zcopy::ring::{READ_BUDGET, ROOM_MIN};
    let Some(mut ring) = ring() else {
        return;
    };
    // More than loopback's socket buffers take in (a sparse file: zeros).
    const LEN: u64 = 64 << 20;
    let (_d, _) = file_with(b"");
    let file = {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(_d.path().join("src"))
            .unwrap();
        f.set_len(LEN).unwrap();
        drop(f);
        Arc::new(File::open(_d.path().join("src")).unwrap())
    };
    const N: usize = 48;
    let mut pool = BufPool::new(32);
    let mut conns = Vec::new();
    let mut most = 0;
    for i in 0..N {
        let (client, server) = tcp_pair();
        server.set_nonblocking(true).unwrap();
        let sock = Rc::new(OwnedFd::from(server));
        let mut op = FileSend::new(&Plan::only(&[EngineKind::ReadWrite]), Forced::new());
        let p = op.start(
            &mut ring,
            &mut pool,
            i as u64,
            &file,
            0,
            LEN,
            &sock,
            Vec::new(),
        );
        assert!(matches!(p, Progress::Pending), "{p:?}");
        most = most.max(pool.lent());
        conns.push((client, sock, op, 0u64));
    }
    assert!(
        most <= READ_BUDGET + N * ROOM_MIN,
        "{most} bytes in flight at once"
    );
    // Nobody reads: every op sends until its socket is full, then waits.
    let mut done = Vec::new();
    let mut quiet = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(20);
    while quiet.elapsed() < Duration::from_millis(300) {
        assert!(Instant::now() < deadline, "never settled");
        ring.submit_and_wait(Some(Duration::from_millis(20)))
            .unwrap();
        ring.completions(&mut done);
        for c in done.drain(..) {
            quiet = Instant::now();
            let (_, sock, op, sent) = &mut conns[c.token as usize];
            let mut p = op.complete(&mut ring, &mut pool, c.event);
            loop {
                match p {
                    Progress::Pending => break,
                    Progress::Sent { bytes, .. } => *sent += bytes as u64,
                    Progress::Again => {}
                    other => panic!("{other:?}"),
                }
                p = op.start(
                    &mut ring,
                    &mut pool,
                    c.token,
                    &file,
                    *sent,
                    (LEN) - *sent,
                    &*sock,
                    Vec::new(),
                );
                most = most.max(pool.lent());
            }
        }
    }
    assert!(most <= READ_BUDGET + N * ROOM_MIN, "{most}");
    assert_eq!(pool.lent(), 0, "a stalled reader holds a chunk buffer");
    assert!(
        conns
            .iter()
            .all(|(_, _, op, sent)| !op.is_idle() && *sent < LEN)
    );
}

/// A burst: many connections each start a body read in the same turn (a mid-size
/// file, below the size that is mapped). Past the read budget each chunk used to
/// take a buffer of its own all the same (3,000 requests of a 200 KB file held
/// 50 MiB at once, which the allocator kept); now a chunk whose pages are in memory
/// goes from a mapping of the file, holding no buffer, and every body is the
/// file's bytes.
#[test]
fn a_burst_of_reads_past_the_budget_holds_no_buffer_each() {
    use zcopy::ring::{CHUNK, READ_BUDGET};
    let Some(mut ring) = ring() else {
        return;
    };
    const LEN: usize = 200_000;
    const N: usize = 300;
    let data = pattern(LEN, 77);
    let (_d, file) = file_with(&data);
    let file = Arc::new(file);
    let mut pool = BufPool::new(32);
    let mut conns = Vec::new();
    let mut most = 0;
    let plan = Plan::only(&[EngineKind::Mmap, EngineKind::ReadWrite]);
    for i in 0..N {
        let (client, server) = tcp_pair();
        server.set_nonblocking(true).unwrap();
        let sock = Rc::new(OwnedFd::from(server));
        let mut op = FileSend::new(&plan, Forced::new());
        let mut sent = 0;
        let mut p = op.start(
            &mut ring,
            &mut pool,
            i as u64,
            &file,
            0,
            LEN as u64,
            &sock,
            Vec::new(),
        );
        // Past the budget, a chunk from the mapping is sent at once.
        while let Progress::Sent { bytes, .. } = p {
            sent += bytes;
            if sent == LEN {
                break;
            }
            let left = (LEN - sent) as u64;
            p = op.start(
                &mut ring,
                &mut pool,
                i as u64,
                &file,
                sent as u64,
                left,
                &sock,
                Vec::new(),
            );
        }
        assert!(sent == LEN || matches!(p, Progress::Pending), "{p:?}");
        most = most.max(pool.lent());
        conns.push((client, sock, op, sent));
    }
    // The bodies fit in the sockets' buffers: every op finishes unread.
    let mut done = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while conns.iter().any(|c| c.3 < LEN) {
        assert!(Instant::now() < deadline, "never finished");
        ring.submit_and_wait(Some(Duration::from_millis(20)))
            .unwrap();
        ring.completions(&mut done);
        for c in done.drain(..) {
            let (_, sock, op, sent) = &mut conns[c.token as usize];
            let mut p = op.complete(&mut ring, &mut pool, c.event);
            loop {
                match p {
                    Progress::Pending => break,
                    Progress::Sent { bytes, .. } => *sent += bytes,
                    Progress::Again => {}
                    other => panic!("{other:?}"),
                }
                if *sent == LEN {
                    break;
                }
                p = op.start(
                    &mut ring,
                    &mut pool,
                    c.token,
                    &file,
                    *sent as u64,
                    (LEN - *sent) as u64,
                    &*sock,
                    Vec::new(),
                );
                most = most.max(pool.lent());
            }
        }
    }
    assert!(
        most <= READ_BUDGET + 2 * CHUNK,
        "{most} bytes of buffers in flight at once"
    );
    assert_eq!(pool.lent(), 0);
    for (i, (mut client, ..)) in conns.into_iter().enumerate() {
        let mut got = vec![0u8; LEN];
        std::io::Read::read_exact(&mut client, &mut got).unwrap();
        assert_same(&got, &data, &format!("connection {i}"));
    }
}
