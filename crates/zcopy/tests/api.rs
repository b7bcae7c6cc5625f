//! The public face: typed errors callers can match on, configuration passed as a
//! value, and the entry points the crate docs teach. Real files, pipes and sockets.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsFd;

use zcopy::transfer::Transfer;
use zcopy::{
    EngineKind, FallbackReason, FdKind, Forced, Plan, Preference, TransferError, UnknownEngine,
};

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + i / 977) as u8).collect()
}

fn file_with(data: &[u8]) -> std::fs::File {
    let mut f = tempfile::tempfile().unwrap();
    f.write_all(data).unwrap();
    f
}

fn tcp_pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (b, _) = l.accept().unwrap();
    (a, b)
}

#[test]
fn an_unknown_engine_name_is_a_typed_error() {
    let e = "bogus".parse::<EngineKind>().unwrap_err();
    assert_eq!(e.name, "bogus");
    assert!(e.to_string().contains("sendfile"), "{e}");
    let e: UnknownEngine = "nope".parse::<Preference>().unwrap_err();
    assert_eq!(e.name, "nope");
    assert_eq!("auto".parse::<Preference>().unwrap(), Preference::Auto);
    assert_eq!(
        "splice".parse::<Preference>().unwrap(),
        Preference::Prefer(EngineKind::Splice)
    );
}

#[test]
fn no_engine_lists_each_engine_tried_with_a_typed_reason() {
    let data = pattern(10_000);
    let src = file_with(&data);
    let (a, _b) = tcp_pair();
    let mut t = Transfer::with_forced(
        Plan::only(&[EngineKind::Sendfile, EngineKind::ReadWrite]),
        Forced::parse("sendfile,read-write"),
    );
    let err = t
        .run(
            src.as_fd(),
            Some(0),
            a.as_fd(),
            Some(data.len() as u64),
            &mut |_| {},
        )
        .unwrap_err();
    let TransferError::NoEngine { tried } = &err else {
        panic!("{err}");
    };
    let engines: Vec<EngineKind> = tried.iter().map(|f| f.engine).collect();
    assert_eq!(engines, [EngineKind::Sendfile, EngineKind::ReadWrite]);
    for f in tried {
        assert!(
            matches!(f.reason, FallbackReason::Forced { after: 0 }),
            "{f}"
        );
    }
    assert!(err.to_string().contains("sendfile"), "{err}");
}

#[test]
fn an_unsupported_engine_hands_over_with_the_kernel_error_as_source() {
    // sendfile(2) reads only from regular files.
    let data = pattern(5000);
    let (r, mut w) = std::io::pipe().unwrap();
    w.write_all(&data).unwrap();
    drop(w);
    let dst = tempfile::tempfile().unwrap();
    let mut t = Transfer::with_forced(
        Plan::only(&[EngineKind::Sendfile, EngineKind::ReadWrite]),
        Forced::default(),
    );
    let report = t
        .run(r.as_fd(), None, dst.as_fd(), None, &mut |_| {})
        .unwrap()
        .clone();
    assert_eq!(report.engine(), Some(EngineKind::ReadWrite));
    let why = report.runs[0]
        .fell_back
        .as_ref()
        .expect("sendfile fell back");
    let FallbackReason::Unsupported(e) = why else {
        panic!("{why}");
    };
    assert_eq!(e.kind(), std::io::ErrorKind::Unsupported, "{e}");
    assert!(e.to_string().contains("regular file"), "{e}");
    assert!(std::error::Error::source(why).is_some());
    let mut got = Vec::new();
    let mut dst = dst;
    std::io::Seek::rewind(&mut dst).unwrap();
    dst.read_to_end(&mut got).unwrap();
    assert_eq!(got, data);
    assert_eq!(FdKind::of(&dst).unwrap(), FdKind::File { len: 5000 });
}
