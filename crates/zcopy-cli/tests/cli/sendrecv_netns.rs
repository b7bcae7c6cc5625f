//! `zcopy send` → `zcopy recv` across a veth pair (two network namespaces): a source
//! truncated mid-page while its bytes are in flight and unread never leaves the
//! receiver a byte the file did not hold.

use std::fs;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use zcopy_netns::{Netns, VethPair};

use crate::util::pattern;

fn bin() -> std::path::PathBuf {
    assert_cmd::cargo::cargo_bin("zcopy")
}

fn signal(child: &Child, sig: &str) {
    let st = std::process::Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success(), "kill {sig}");
}

/// Waits for `child` at most `limit`; kills it and fails the test past that.
fn wait_bounded(child: &mut Child, what: &str, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st.success();
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("{what} still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn start_recv(ns: &Netns, listen: String, out: &Path) -> (Child, String) {
    crate::sendrecv::start_recv_in(ns.command(bin()), &listen, out, &["--once"])
}

/// `zcopy send FILE --to ADDR --engine ENGINE` inside `ns`.
fn spawn_send(ns: &Netns, file: &Path, addr: &str, engine: &str) -> Child {
    ns.command(bin())
        .arg("send")
        .arg(file)
        .args(["--to", addr, "--engine", engine])
        .env_remove("RUST_LOG")
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn part_in(out: &Path) -> Option<std::path::PathBuf> {
    fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".part"))
}

/// Every byte of `got` equals the original byte at that offset.
fn assert_prefix(got: &[u8], data: &[u8], what: &str) {
    assert!(got.len() <= data.len(), "{what}: longer than the source");
    if let Some(i) = (0..got.len()).find(|&i| got[i] != data[i]) {
        let zeros = got[i..].iter().take_while(|&&b| b == 0).count();
        panic!(
            "{what}: byte {i} is {:#04x}, the file held {:#04x} ({zeros} zero bytes from there)",
            got[i], data[i]
        );
    }
}

/// One send of a 64 MiB file from namespace `a` to a receiver in `b` that is
/// stopped while the sender has filled the queues; the file is truncated mid-page a
/// little past what the receiver has stored, then the receiver continues.
fn truncate_mid_send(pair: &VethPair, engine: &str) {
    let src = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let data = pattern(64 << 20, 9);
    let file = src.path().join("big");
    fs::write(&file, &data).unwrap();
    let (mut recv, addr) = start_recv(&pair.b, format!("{}:0", pair.addr_b), out.path());
    let mut send = spawn_send(&pair.a, &file, &addr, engine);

    // Let the receiver store a first MiB, then stop it with the queues filling.
    let deadline = Instant::now() + Duration::from_secs(20);
    let stored = loop {
        let n = part_in(out.path()).map_or(0, |p| fs::metadata(p).map_or(0, |m| m.len()));
        if n >= 1 << 20 {
            break n;
        }
        assert!(
            Instant::now() < deadline,
            "{engine}: the receiver stored nothing"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    signal(&recv, "-STOP");
    std::thread::sleep(Duration::from_millis(300));
    let stored = fs::metadata(part_in(out.path()).unwrap()).map_or(stored, |m| m.len());
    // Mid-page, a little past what is stored: in flight, unread.
    let new_len = (stored / 4096 + 2) * 4096 + 1000;
    let path = file.clone();
    let truncater = std::thread::spawn(move || {
        // Opening for writing waits while the sender holds its read lease.
        let f = fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(new_len).unwrap();
    });
    std::thread::sleep(Duration::from_millis(300));
    signal(&recv, "-CONT");

    let sent = wait_bounded(&mut send, "sender", Duration::from_secs(90));
    let received = wait_bounded(&mut recv, "receiver", Duration::from_secs(30));
    truncater.join().unwrap();

    let final_file = out.path().join("big");
    if final_file.exists() {
        // Only acceptable if it is the whole original (the truncation waited).
        let got = fs::read(&final_file).unwrap();
        assert!(
            sent && received,
            "{engine}: a final file after a failed send"
        );
        assert!(got == data, "{engine}: final file differs from the source");
    } else {
        assert!(!sent, "{engine}: send succeeded but no file arrived");
        assert!(!received, "{engine}: receiver succeeded without the file");
        let part = part_in(out.path()).expect("a .part file is kept");
        assert_prefix(&fs::read(&part).unwrap(), &data, engine);
    }
}

#[test]
fn truncation_mid_send_to_a_peer_across_a_veth_leaves_only_true_bytes() {
    let Some(pair) = VethPair::for_test() else {
        return;
    };
    for engine in ["auto", "sendfile", "splice", "mmap", "read-write"] {
        truncate_mid_send(&pair, engine);
    }
}

/// A receiver that accepts one file and then leaves its bytes unread in the socket
/// until told: every byte the sender put in flight sits in its receive queue.
fn lazy_receiver(
    listener: std::net::TcpListener,
    go: std::sync::mpsc::Receiver<()>,
) -> std::thread::JoinHandle<Vec<u8>> {
    use std::io::Read;
    use zcopy_net::proto::{self, Entry, Kind, Reply};
    std::thread::spawn(move || {
        let (mut c, _) = listener.accept().unwrap();
        proto::read_hello(&mut c).unwrap();
        proto::write_hello(&mut c, 0).unwrap();
        let entry = Entry::read(&mut c).unwrap();
        assert_eq!(entry.kind, Kind::File);
        Reply::ok(0, "").write(&mut c).unwrap();
        go.recv().unwrap();
        let mut got = Vec::new();
        let _ = (&mut c).take(entry.size).read_to_end(&mut got);
        if got.len() as u64 == entry.size {
            // As the real receiver does once the file is on its disk.
            Reply::ok(0, "").write(&mut c).unwrap();
            if Entry::read(&mut c).is_ok_and(|e| e.kind == Kind::End) {
                Reply::ok(0, "done").write(&mut c).unwrap();
            }
        }
        got
    })
}

/// The whole file fits in the socket queues: the sender has "sent" everything and
/// waits for the receiver's word while the file is truncated mid-page. The receiver
/// must then read the original bytes (the truncation waited) or fewer, never zeros.
fn truncate_after_queueing(pair: &VethPair, engine: &str) {
    let src = tempfile::tempdir().unwrap();
    let data = pattern(768 << 10, 3);
    let file = src.path().join("f");
    fs::write(&file, &data).unwrap();
    let addr_b = pair.addr_b;
    let listener = pair
        .b
        .run(move || std::net::TcpListener::bind((addr_b, 0)))
        .unwrap()
        .unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (go, wait) = std::sync::mpsc::channel();
    let receiver = lazy_receiver(listener, wait);
    let mut send = spawn_send(&pair.a, &file, &addr, engine);
    // Give the sender time to queue the whole file.
    std::thread::sleep(Duration::from_millis(500));
    let path = file.clone();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let truncater = std::thread::spawn(move || {
        let f = fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len((256 << 10) + 1000).unwrap();
        let _ = done_tx.send(());
    });
    // Wait (bounded) for the truncation to go through or to be held off.
    let _ = done_rx.recv_timeout(Duration::from_millis(1500));
    go.send(()).unwrap();
    let got = receiver.join().unwrap();
    let _ = wait_bounded(&mut send, "sender", Duration::from_secs(60));
    truncater.join().unwrap();
    assert_prefix(&got, &data, engine);
}

#[test]
fn truncation_after_the_file_is_queued_to_an_unread_veth_peer_sends_no_zeros() {
    let Some(pair) = VethPair::for_test() else {
        return;
    };
    for engine in ["auto", "sendfile", "splice", "mmap"] {
        truncate_after_queueing(&pair, engine);
    }
}
