//! The suite runs on the driver `ZCOPY_IO` names; where io_uring is refused (or
//! forced off with `ZCOPY_DISABLE=uring`) the server falls back to epoll and says why.

use zcopy_http::driver::{self, IoDriver};

use crate::util::{TestServer, get, io_driver};

#[test]
fn runs_on_the_driver_asked_for_or_says_why_not() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.txt"), b"hello").unwrap();
    let server = TestServer::start(dir.path(), |_| {});
    let (status, _, body) = get(&server.url("/a.txt"), &[]);
    assert_eq!((status, &body[..]), (200, &b"hello"[..]));
    let want = io_driver();
    let (chosen, why) = driver::choose(want);
    assert_eq!(server.io_driver(), chosen, "{why}");
    match want {
        IoDriver::Uring if chosen == IoDriver::Epoll => {
            let forced = std::env::var("ZCOPY_DISABLE").is_ok_and(|v| v.contains("uring"));
            if forced {
                assert!(why.contains("ZCOPY_DISABLE"), "{why}");
            } else {
                println!("skipped: io_uring refused here ({why}); the suite ran on epoll");
            }
        }
        IoDriver::Uring => assert_eq!(chosen, IoDriver::Uring),
        _ => assert_eq!(chosen, IoDriver::Epoll),
    }
}

#[test]
fn forcing_uring_off_falls_back_to_epoll_and_says_so() {
    if !std::env::var("ZCOPY_DISABLE").is_ok_and(|v| v.split(',').any(|e| e == "uring")) {
        println!("skipped: runs in the ZCOPY_DISABLE=uring pass");
        return;
    }
    for want in [IoDriver::Auto, IoDriver::Uring] {
        let (chosen, why) = driver::choose(want);
        assert_eq!(chosen, IoDriver::Epoll, "{want}: {why}");
        assert!(why.contains("ZCOPY_DISABLE"), "{want}: {why}");
    }
}
