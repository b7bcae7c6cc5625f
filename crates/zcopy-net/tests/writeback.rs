//! The receiver starts a file's write-back while its bytes arrive, so the fsync
//! before its acknowledgement finds little left to write.

use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use zcopy_net::recv::{Quiet, RecvConfig, await_hello, receive};
use zcopy_net::send::{SendConfig, collect, send};

#[test]
fn a_large_file_has_its_write_back_started_while_it_arrives_and_lands_byte_exact() {
    const N: usize = 24 << 20;
    let src = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let body: Vec<u8> = (0..N).map(|i| (i % 251) as u8).collect();
    let path = src.path().join("big.bin");
    std::fs::write(&path, &body).unwrap();

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let cfg = RecvConfig {
        out: out.path().to_owned(),
        idle_timeout: Duration::from_secs(20),
        ..RecvConfig::default()
    };
    let receiver = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept()?;
        let theirs = await_hello(&mut conn, Duration::from_secs(10))?;
        receive(conn, theirs, &cfg, &Quiet)
    });
    let before = zcopy::receive::writeback_kicks();
    let items = collect(&[path]).unwrap();
    send(
        TcpStream::connect(addr).unwrap(),
        &items,
        &SendConfig::default(),
        &Quiet,
    )
    .unwrap();
    let summary = receiver.join().unwrap().unwrap();
    assert_eq!(summary.files, 1);
    let kicks = zcopy::receive::writeback_kicks() - before;
    assert!(kicks >= 1, "{kicks} write-back kicks for {N} bytes");
    assert!(std::fs::read(out.path().join("big.bin")).unwrap() == body);
}
