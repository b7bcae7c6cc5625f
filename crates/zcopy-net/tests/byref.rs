//! Files sent by reference to a receiver in this kernel (loopback): the lease
//! verdict, a lease broken before or while the receiver reads, the hash check, and
//! peers that speak the protocol without the by-reference feature.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use zcopy::{EngineKind, Preference};
use zcopy_net::proto::{self, Entry, FEAT_BYREF, FEAT_RESUME, FEAT_VERIFY, Kind, Reply};
use zcopy_net::recv::{Progress, Quiet, RecvConfig, RecvSummary, await_hello, receive};
use zcopy_net::send::{Item, SendConfig, SendError, SendSummary, collect, send};

/// Tests that change `/proc/sys/fs/lease-break-time` run one at a time.
static LEASE_TIME: Mutex<()> = Mutex::new(());

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// A real receiver on 127.0.0.1:0 serving one sender in a thread.
fn receiver(
    out: &Path,
    progress: impl Progress + Send + 'static,
) -> (String, JoinHandle<std::io::Result<RecvSummary>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let cfg = RecvConfig {
        out: out.to_owned(),
        idle_timeout: Duration::from_secs(20),
        ..RecvConfig::default()
    };
    let handle = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept()?;
        let theirs = await_hello(&mut conn, Duration::from_secs(10))?;
        receive(conn, theirs, &cfg, &progress)
    });
    (addr, handle)
}

fn send_to(addr: &str, paths: &[PathBuf], cfg: &SendConfig) -> Result<SendSummary, SendError> {
    let items: Vec<Item> = collect(paths).unwrap();
    send(TcpStream::connect(addr).unwrap(), &items, cfg, &Quiet)
}

fn no_part_files(dir: &Path) {
    let parts: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".part"))
        .collect();
    assert!(parts.is_empty(), "left behind: {parts:?}");
}

/// Whether `ZCOPY_DISABLE` forces engines off (then the engine used is not ours to check).
fn forced_off() -> bool {
    std::env::var_os("ZCOPY_DISABLE").is_some()
}

/// Sends with `--engine sendfile`: by reference, also to a local receiver that
/// confirms each file.
fn lending() -> SendConfig {
    SendConfig {
        engine: Preference::Prefer(EngineKind::Sendfile),
        ..SendConfig::default()
    }
}

#[test]
fn a_local_receiver_gets_the_bytes_by_reference() {
    let src = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let data = pattern(8 << 20, 3);
    fs::write(src.path().join("f"), &data).unwrap();
    let (addr, recv) = receiver(out.path(), Quiet);
    let sent = send_to(&addr, &[src.path().join("f")], &lending()).unwrap();
    recv.join().unwrap().unwrap();
    assert_eq!(fs::read(out.path().join("f")).unwrap(), data);
    no_part_files(out.path());
    if forced_off() {
        eprintln!("skipped the engine check: ZCOPY_DISABLE is set");
        return;
    }
    assert_eq!(sent.engines, ["sendfile"]);

    // `auto` without a calibration profile copies (measured cheaper here).
    if zcopy::Profile::cached_default().is_some() {
        eprintln!("skipped the auto check: a calibration profile decides");
        return;
    }
    let (addr, recv) = receiver(out.path(), Quiet);
    fs::remove_file(out.path().join("f")).unwrap();
    let sent = send_to(&addr, &[src.path().join("f")], &SendConfig::default()).unwrap();
    recv.join().unwrap().unwrap();
    assert_eq!(fs::read(out.path().join("f")).unwrap(), data);
    for e in &sent.engines {
        let k: EngineKind = e.split(' ').next().unwrap().parse().unwrap();
        assert!(!k.sends_by_reference(), "auto lent with {e}");
    }
}

/// Speaks protocol version 1 as a receiver that predates [`FEAT_BYREF`]: returns
/// the one file's bytes.
fn old_receiver(listener: TcpListener) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let theirs = proto::read_hello(&mut conn).unwrap();
        assert_ne!(theirs & FEAT_BYREF, 0, "the new sender offers by-reference");
        proto::write_hello(&mut conn, FEAT_RESUME | FEAT_VERIFY).unwrap();
        let e = Entry::read(&mut conn).unwrap();
        assert_eq!(e.kind, Kind::File);
        Reply::ok(0, "").write(&mut conn).unwrap();
        let mut got = vec![0u8; e.size as usize];
        conn.read_exact(&mut got).unwrap();
        Reply::ok(0, "").write(&mut conn).unwrap();
        assert_eq!(Entry::read(&mut conn).unwrap().kind, Kind::End);
        Reply::ok(0, "done").write(&mut conn).unwrap();
        got
    })
}

#[test]
fn an_older_receiver_gets_the_bytes_copied() {
    let src = tempfile::tempdir().unwrap();
    let data = pattern(3 << 20, 5);
    fs::write(src.path().join("f"), &data).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let old = old_receiver(listener);
    // Even asked to lend: an older receiver can't confirm, so it gets copies.
    let sent = send_to(&addr, &[src.path().join("f")], &lending()).unwrap();
    assert_eq!(old.join().unwrap(), data);
    for e in &sent.engines {
        let k: EngineKind = e.split(' ').next().unwrap().parse().unwrap();
        assert!(
            !k.sends_by_reference(),
            "a local receiver without the feature got {e}"
        );
    }
}

#[test]
fn an_older_sender_is_received_as_before() {
    let out = tempfile::tempdir().unwrap();
    let (addr, recv) = receiver(out.path(), Quiet);
    let mut conn = TcpStream::connect(&addr).unwrap();
    proto::write_hello(&mut conn, FEAT_RESUME).unwrap();
    assert_ne!(proto::read_hello(&mut conn).unwrap() & FEAT_BYREF, 0);
    let body = pattern(100_000, 9);
    let e = Entry {
        kind: Kind::File,
        mode: 0o644,
        mtime_sec: 1_700_000_000,
        mtime_nsec: 0,
        size: body.len() as u64,
        path: b"old".to_vec(),
    };
    e.write(&mut conn).unwrap();
    assert!(Reply::read(&mut conn).unwrap().ok);
    // No mode byte, no verdict: data, then the final reply.
    conn.write_all(&body).unwrap();
    assert!(Reply::read(&mut conn).unwrap().ok);
    Entry::end().write(&mut conn).unwrap();
    assert!(Reply::read(&mut conn).unwrap().ok);
    recv.join().unwrap().unwrap();
    assert_eq!(fs::read(out.path().join("old")).unwrap(), body);
}

#[test]
fn a_wrong_hash_discards_the_file() {
    let out = tempfile::tempdir().unwrap();
    let (addr, recv) = receiver(out.path(), Quiet);
    let mut conn = TcpStream::connect(&addr).unwrap();
    proto::write_hello(&mut conn, FEAT_VERIFY | FEAT_BYREF).unwrap();
    proto::read_hello(&mut conn).unwrap();
    let body = pattern(200_000, 1);
    let e = Entry {
        kind: Kind::File,
        mode: 0o644,
        mtime_sec: 1_700_000_000,
        mtime_nsec: 0,
        size: body.len() as u64,
        path: b"h".to_vec(),
    };
    e.write(&mut conn).unwrap();
    assert!(Reply::read(&mut conn).unwrap().ok);
    conn.write_all(&[proto::SendMode::ByReference as u8])
        .unwrap();
    conn.write_all(&body).unwrap();
    let mut wrong = xxhash_rust::xxh3::xxh3_128(&body).to_be_bytes();
    wrong[0] ^= 1;
    conn.write_all(&wrong).unwrap();
    let reply = Reply::read(&mut conn).unwrap();
    assert!(!reply.ok, "a wrong hash was answered {reply:?}");
    assert!(reply.message.contains("checksum mismatch"), "{reply:?}");
    let err = recv.join().unwrap().unwrap_err();
    assert!(err.to_string().contains("checksum mismatch"), "{err}");
    assert!(!out.path().join("h").exists());
    no_part_files(out.path());
}

/// Sets `/proc/sys/fs/lease-break-time` for the guard's life, or says why not.
struct LeaseBreakTime {
    old: String,
}

impl LeaseBreakTime {
    const PATH: &str = "/proc/sys/fs/lease-break-time";

    fn set(secs: u32) -> Result<LeaseBreakTime, String> {
        let old = fs::read_to_string(Self::PATH).map_err(|e| format!("{}: {e}", Self::PATH))?;
        fs::write(Self::PATH, secs.to_string()).map_err(|e| format!("{}: {e}", Self::PATH))?;
        Ok(LeaseBreakTime {
            old: old.trim().to_string(),
        })
    }
}

impl Drop for LeaseBreakTime {
    fn drop(&mut self) {
        let _ = fs::write(Self::PATH, &self.old);
    }
}

/// Rewrites `path` in place (same length, `byte` everywhere), from another process
/// as an editor would: its open for writing waits until the kernel breaks our lease.
fn rewrite_in_place(path: &Path, byte: u8) {
    let len = fs::metadata(path).unwrap().len();
    let mut child = std::process::Command::new("dd")
        .arg(format!("of={}", path.display()))
        .args(["conv=notrunc", "status=none", "bs=65536"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&vec![byte; len as usize])
        .unwrap();
    assert!(child.wait().unwrap().success());
}

/// Truncates `path` to `len` from another process (`dd`, which opens without
/// O_NONBLOCK, unlike coreutils `truncate`): its open for writing waits until the
/// kernel breaks our lease.
fn truncate_from_outside(path: &Path, len: u64) {
    let st = std::process::Command::new("dd")
        .arg("if=/dev/null")
        .arg(format!("of={}", path.display()))
        .args(["bs=1", &format!("seek={len}"), "status=none"])
        .status()
        .unwrap();
    assert!(st.success());
}

/// A receiver's progress hook that, at the first file's start (the sender has sent
/// the bytes, the receiver has read none), waits a little and truncates the source
/// mid-page.
struct TruncateFirst {
    src: PathBuf,
    to: u64,
    starts: std::sync::Arc<AtomicU32>,
}

impl Progress for TruncateFirst {
    fn file_start(&self, _: &str, _: u64, _: u64) {
        if self.starts.fetch_add(1, Ordering::SeqCst) == 0 {
            std::thread::sleep(Duration::from_millis(300));
            truncate_from_outside(&self.src, self.to);
        }
    }
    fn file_progress(&self, _: u64) {}
    fn file_done(&self) {}
}

#[test]
fn a_file_truncated_before_the_receiver_read_it_is_sent_again_never_kept_with_zeros() {
    // Was (sendfile to a local receiver, no verdict): the bytes sat in the
    // receiver's queue as references to the file's pages; the kernel broke the
    // lease after lease-break-time, the truncation zeroed the tail of the page it
    // cut, and the receiver kept 64 KiB with those zeros.
    let _one = LEASE_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let _time = match LeaseBreakTime::set(1) {
        Ok(t) => t,
        Err(why) => {
            eprintln!("skipped: {why}");
            return;
        }
    };
    let src = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let f = src.path().join("f");
    // Small enough to sit whole in the socket buffers before the receiver reads.
    let data = vec![b'A'; 64 << 10];
    fs::write(&f, &data).unwrap();
    let starts = std::sync::Arc::new(AtomicU32::new(0));
    let hook = TruncateFirst {
        src: f.clone(),
        to: 40_000,
        starts: starts.clone(),
    };
    let (addr, recv) = receiver(out.path(), hook);
    let sent = send_to(&addr, std::slice::from_ref(&f), &lending());
    let got = recv.join().unwrap();
    let now = fs::read(&f).unwrap();
    assert_eq!(now.len(), 40_000, "the truncation happened");
    match (&sent, fs::read(out.path().join("f"))) {
        // One version, whole: the old one or the truncated one.
        (Ok(_), Ok(kept)) => {
            let zeros = kept.iter().filter(|&&b| b == 0).count();
            assert!(
                kept == now || kept == data,
                "kept {} bytes, {zeros} of them zeros: neither version",
                kept.len()
            );
            assert!(got.is_ok());
        }
        // Or failed clearly, with nothing under the name.
        (Err(e), Err(_)) => eprintln!("failed clearly: {e}"),
        (s, k) => panic!("send {s:?}, file {:?}", k.map(|k| k.len())),
    }
    no_part_files(out.path());
    if !forced_off() {
        // The first attempt's bytes were read after the truncation; the lease
        // verdict made the receiver drop them and the sender send the file again.
        assert_eq!(
            starts.load(Ordering::SeqCst),
            2,
            "the file was sent once: {sent:?}"
        );
    }
}

#[test]
fn a_lease_broken_while_sending_by_reference_fails_and_its_prefix_is_checked_before_a_resume() {
    let _one = LEASE_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let _time = match LeaseBreakTime::set(1) {
        Ok(t) => t,
        Err(why) => {
            eprintln!("skipped: {why}");
            return;
        }
    };
    let src = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let f = src.path().join("f");
    fs::write(&f, vec![b'A'; 8 << 20]).unwrap();
    let mtime = fs::metadata(&f).unwrap().modified().unwrap();
    let (addr, recv) = receiver(out.path(), Quiet);
    let writer = {
        let f = f.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(500));
            rewrite_in_place(&f, b'B');
        })
    };
    // 8 MiB at 2 MiB/s: the rewrite comes mid-file.
    let cfg = SendConfig {
        limit_rate: Some(2 << 20),
        ..lending()
    };
    let sent = send_to(&addr, std::slice::from_ref(&f), &cfg);
    writer.join().unwrap();
    let got = recv.join().unwrap();
    let e = sent.expect_err("the file changed mid-send, yet the send succeeded");
    eprintln!("failed clearly: {e}");
    assert!(got.is_err());
    assert!(
        !out.path().join("f").exists(),
        "a final file after a failure"
    );
    let kept: Vec<_> = fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    if !forced_off() {
        // Sent by reference: kept aside, to be checked before it is resumed.
        assert!(
            kept.len() == 1 && kept[0].ends_with(".lent.part"),
            "{kept:?}"
        );
    }
    // Sent again, its mtime put back so that the kept prefix is taken up: that
    // prefix (of the old version) is not the file's any more, so the file goes
    // again from byte 0 and arrives whole.
    fs::File::options()
        .write(true)
        .open(&f)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let (addr, recv) = receiver(out.path(), Quiet);
    let resume = SendConfig {
        resume: true,
        ..SendConfig::default()
    };
    let sent = send_to(&addr, std::slice::from_ref(&f), &resume).unwrap();
    recv.join().unwrap().unwrap();
    assert!(fs::read(out.path().join("f")).unwrap() == vec![b'B'; 8 << 20]);
    assert_eq!(
        sent.skipped_bytes, 0,
        "resumed from a prefix of the old version"
    );
    no_part_files(out.path());
}

#[test]
fn a_prefix_sent_by_reference_resumes_when_the_source_is_unchanged() {
    let src = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let data = pattern(4 << 20, 7);
    let f = src.path().join("f");
    fs::write(&f, &data).unwrap();
    // What a failed send by reference leaves: the first MiB under the lent name.
    let mtime = fs::metadata(&f).unwrap().modified().unwrap();
    let secs = mtime
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let lent = out
        .path()
        .join(format!(".f.zcopy-{}-{secs}.lent.part", data.len()));
    fs::write(&lent, &data[..1 << 20]).unwrap();
    let (addr, recv) = receiver(out.path(), Quiet);
    let resume = SendConfig {
        resume: true,
        ..SendConfig::default()
    };
    let sent = send_to(&addr, std::slice::from_ref(&f), &resume).unwrap();
    recv.join().unwrap().unwrap();
    assert!(fs::read(out.path().join("f")).unwrap() == data);
    assert_eq!(sent.skipped_bytes, 1 << 20);
    no_part_files(out.path());
}
