//! An engine that served one sink serves the next only when it holds nothing of the
//! first: a client that went away mid-body leaves bytes in a pipe (splice, uring,
//! vmsplice) that would otherwise reach the next sink first.

use std::io::Read;
use std::net::TcpStream;
use std::os::fd::AsFd;
use std::time::Duration;

use zcopy::transfer::Forced;
use zcopy::{EngineKind, Plan, Src, Transfer};

use crate::util::*;

/// Steps `t` from `file` into a non-blocking socket whose reader does not read, until
/// it is full; returns the bytes the engine delivered.
fn fill(t: &mut Transfer, file: &std::fs::File, sink: &TcpStream) -> u64 {
    let mut at = 0u64;
    loop {
        let src = Src::Fd {
            fd: file.as_fd(),
            offset: Some(at),
        };
        match t.step(src, sink.as_fd(), 4 << 20) {
            Ok(0) => panic!("the source ended"),
            Ok(n) => at += n as u64,
            Err(e) if e.io_kind() == Some(std::io::ErrorKind::WouldBlock) => return at,
            Err(e) => panic!("{e}"),
        }
    }
}

/// Sends all of `file` to a fresh blocking socket and returns what its reader got.
fn send_all(t: &mut Transfer, file: &std::fs::File, len: u64) -> Vec<u8> {
    let (sink, mut reader) = tcp_pair();
    let got = std::thread::spawn(move || {
        let mut v = Vec::new();
        reader.read_to_end(&mut v).unwrap();
        v
    });
    let mut at = 0u64;
    while at < len {
        let src = Src::Fd {
            fd: file.as_fd(),
            offset: Some(at),
        };
        match t.step(src, sink.as_fd(), (len - at) as usize) {
            Ok(0) => break,
            Ok(n) => at += n as u64,
            Err(e) => panic!("{e}"),
        }
    }
    drop(sink);
    got.join().unwrap()
}

/// A client resets the connection mid-body: the transfer is not reusable, and a
/// transfer that is (a fresh one, or one after a whole body) sends the next sink
/// exactly its own file.
fn aborted_body_is_not_reused(engine: EngineKind) {
    if skip_unless_supported(engine) {
        return;
    }
    let secret = vec![b'S'; 8 << 20];
    let (_d1, secret_file) = file_with(&secret);
    let public = pattern(3 << 20, 7);
    let (_d2, public_file) = file_with(&public);

    let mut t = Transfer::with_forced(Plan::only(&[engine]), Forced::default());
    assert!(t.reusable(), "{engine}: a fresh transfer");
    let (sink, client) = tcp_pair();
    sink.set_nonblocking(true).unwrap();
    rustix::net::sockopt::set_socket_send_buffer_size(&sink, 64 * 1024).unwrap();
    fill(&mut t, &secret_file, &sink);
    assert!(
        !t.reusable(),
        "{engine}: bytes of the first sink are still in the engine"
    );
    // The client goes away: the next step fails (EPIPE/ECONNRESET) or still holds
    // bytes; either way the transfer must not serve another sink.
    rustix::net::sockopt::set_socket_linger(&client, Some(Duration::ZERO)).unwrap();
    drop(client);
    std::thread::sleep(Duration::from_millis(50));
    let src = Src::Fd {
        fd: secret_file.as_fd(),
        offset: Some(0),
    };
    let _ = t.step(src, sink.as_fd(), 4 << 20);
    assert!(!t.reusable(), "{engine}: after the client reset");
    drop(t);

    // What a pool does: a new transfer (the failed one was dropped) sends the next
    // sink only its own bytes, and after a whole body it is reusable again.
    let mut t = Transfer::with_forced(Plan::only(&[engine]), Forced::default());
    let got = send_all(&mut t, &public_file, public.len() as u64);
    assert_same(&got, &public, &format!("{engine}: the next sink"));
    assert!(t.reusable(), "{engine}: after a whole body");
    let got = send_all(&mut t, &public_file, public.len() as u64);
    assert_same(&got, &public, &format!("{engine}: the sink after that"));
}

#[test]
fn a_splice_transfer_with_bytes_in_its_pipe_is_not_reusable() {
    aborted_body_is_not_reused(EngineKind::Splice);
}

#[test]
fn a_uring_transfer_with_bytes_in_its_pipe_is_not_reusable() {
    aborted_body_is_not_reused(EngineKind::Uring);
}

#[test]
fn a_vmsplice_transfer_with_bytes_in_its_pipe_is_not_reusable() {
    aborted_body_is_not_reused(EngineKind::Vmsplice);
}

/// A uring engine dropped with bytes in its pipe must not hand that pipe (or its
/// ring) to the next engine of this thread.
#[test]
fn a_dropped_uring_engine_with_pipe_bytes_leaves_nothing_to_the_next() {
    if skip_unless_supported(EngineKind::Uring) {
        return;
    }
    let secret = vec![b'S'; 8 << 20];
    let (_d1, secret_file) = file_with(&secret);
    let public = pattern(3 << 20, 9);
    let (_d2, public_file) = file_with(&public);
    for _ in 0..3 {
        let mut t = Transfer::with_forced(Plan::only(&[EngineKind::Uring]), Forced::default());
        let (sink, _client) = tcp_pair();
        sink.set_nonblocking(true).unwrap();
        fill(&mut t, &secret_file, &sink);
        drop(t);
        let mut t = Transfer::with_forced(Plan::only(&[EngineKind::Uring]), Forced::default());
        let got = send_all(&mut t, &public_file, public.len() as u64);
        assert_same(&got, &public, "uring after a dropped engine");
    }
}
