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

/// Runs test `name` of this binary again in a child process with `env` set, and
/// asserts it passed there. The child sees `ZCOPY_API_CHILD` and runs the body.
/// (Setting the variables in this process would race the other tests.)
fn rerun_with_env(name: &str, env: &[(&str, &str)]) {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env("ZCOPY_API_CHILD", "1")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("1 passed"), "the child ran no test: {text}");
}

fn in_child() -> bool {
    std::env::var_os("ZCOPY_API_CHILD").is_some()
}

/// Reads everything from a TCP socket on a thread.
fn collect(mut s: TcpStream) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        got
    })
}

/// Sends `data` through `transfer` from a file (or, for `tee`, a pipe) to a TCP
/// socket (for `copy-range`, a file); returns the report and the bytes received.
fn send_through(kind: EngineKind, mut t: Transfer, data: &[u8]) -> (zcopy::Report, Vec<u8>) {
    let len = Some(data.len() as u64);
    if kind == EngineKind::CopyRange {
        let src = file_with(data);
        let mut dst = tempfile::tempfile().unwrap();
        let r = t.run(src.as_fd(), Some(0), dst.as_fd(), len, &mut |_| {});
        let r = r.unwrap_or_else(|e| panic!("{kind}: {e}")).clone();
        let mut got = Vec::new();
        std::io::Seek::rewind(&mut dst).unwrap();
        dst.read_to_end(&mut got).unwrap();
        return (r, got);
    }
    let (a, b) = tcp_pair();
    let reader = collect(b);
    let r = if kind == EngineKind::Tee {
        let (src, mut w) = std::io::pipe().unwrap();
        let data = data.to_vec();
        let feeder = std::thread::spawn(move || w.write_all(&data).unwrap());
        let r = t.run(src.as_fd(), None, a.as_fd(), len, &mut |_| {});
        feeder.join().unwrap();
        r
    } else {
        let src = file_with(data);
        t.run(src.as_fd(), Some(0), a.as_fd(), len, &mut |_| {})
    };
    let r = r.unwrap_or_else(|e| panic!("{kind}: {e}")).clone();
    drop(a);
    (r, reader.join().unwrap())
}

fn plan_for(kind: EngineKind) -> Plan {
    let (src, sink) = match kind {
        EngineKind::CopyRange => (FdKind::File { len: 0 }, FdKind::File { len: 0 }),
        EngineKind::Tee => (FdKind::Pipe, FdKind::TcpSocket),
        _ => (FdKind::File { len: 0 }, FdKind::TcpSocket),
    };
    let mut plan = Plan::new(Some(src), sink, Preference::Prefer(kind));
    if !plan.engines.contains(&EngineKind::ReadWrite) {
        plan.engines.push(EngineKind::ReadWrite);
    }
    plan
}

#[test]
fn every_engine_hands_over_when_the_configuration_value_disables_it() {
    let data = pattern((1 << 20) + 5);
    for kind in EngineKind::ALL {
        // Off from the start: the next engine does everything.
        let forced = Forced::new().disable(kind);
        let (r, got) = send_through(kind, Transfer::with_forced(plan_for(kind), forced), &data);
        assert!(got == data, "{kind} off: bytes differ ({})", r.describe());
        assert_eq!(r.runs[0].engine, kind, "{}", r.describe());
        assert!(
            matches!(
                r.runs[0].fell_back,
                Some(FallbackReason::Forced { after: 0 })
            ),
            "{}",
            r.describe()
        );
        assert_ne!(r.engine(), Some(kind), "{}", r.describe());

        // Off after 64 KiB: the next engine continues from that exact offset.
        if let Err(why) = kind.probe() {
            eprintln!("skipped: {kind} after 64 KiB: {why}");
            continue;
        }
        let forced = Forced::new().disable_after(kind, 65536);
        let (r, got) = send_through(kind, Transfer::with_forced(plan_for(kind), forced), &data);
        assert!(got == data, "{kind}@65536: bytes differ ({})", r.describe());
        match &r.runs[0].fell_back {
            Some(FallbackReason::Forced { after }) => {
                assert_eq!(*after, 65536, "{}", r.describe());
                assert_eq!(r.runs[0].stats.bytes, 65536, "{}", r.describe());
            }
            Some(FallbackReason::Unsupported(e)) if r.runs[0].stats.bytes == 0 => {
                eprintln!("skipped: {kind} can't do this pair here: {e}");
            }
            other => panic!("{kind}@65536: {other:?}: {}", r.describe()),
        }
        eprintln!("{kind}: {}", r.describe());
    }
}

#[test]
fn transfer_new_reads_no_environment() {
    const NAME: &str = "transfer_new_reads_no_environment";
    if !in_child() {
        return rerun_with_env(NAME, &[("ZCOPY_DISABLE", "sendfile,read-write,inotify")]);
    }
    let data = pattern(300_000);
    let t = Transfer::new(Plan::only(&[EngineKind::Sendfile]));
    let (r, got) = send_through(EngineKind::Sendfile, t, &data);
    assert!(got == data);
    assert_eq!(r.engine(), Some(EngineKind::Sendfile), "{}", r.describe());
    // Reading the variable is the caller's explicit call.
    let forced = Forced::from_env();
    assert_eq!(forced.limit(EngineKind::Sendfile), Some(0));
    assert_eq!(forced.limit(EngineKind::ReadWrite), Some(0));
    assert!(forced.switched_off("inotify"));
    assert_eq!(forced.switches(), ["inotify"]);
}

#[test]
fn plans_read_no_profile_from_disk() {
    const NAME: &str = "plans_read_no_profile_from_disk";
    if !in_child() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("profile");
        std::fs::write(
            &path,
            "file file max read-write\nfile tcp max read-write\nfile tcp@lo max read-write\n",
        )
        .unwrap();
        return rerun_with_env(NAME, &[("ZCOPY_PROFILE", path.to_str().unwrap())]);
    }
    let file = Some(FdKind::File { len: 1 << 20 });
    let plan = Plan::new(file, FdKind::File { len: 0 }, Preference::Auto);
    assert_eq!(plan.engines[0], EngineKind::CopyRange, "{:?}", plan.engines);
    let remote = zcopy::PeerClass::Remote { dev: "eth0".into() };
    let hold = zcopy::LeaseHold::UntilConsumed;
    let plan = Plan::for_peer(&remote, 1 << 20, Preference::Auto, hold, None);
    assert_eq!(plan.engines, Plan::auto_order(file, FdKind::TcpSocket));
    // Reading it is the caller's explicit call, and the plan follows what it is given.
    let profile = zcopy::profile::Profile::load_default().unwrap().unwrap();
    let plan = Plan::with_profile(
        file,
        FdKind::File { len: 0 },
        Preference::Auto,
        None,
        Some(&profile),
    );
    assert_eq!(plan.engines[0], EngineKind::ReadWrite);
}

#[test]
fn copy_moves_a_file_to_a_socket_and_a_socket_to_a_file_with_each_engine() {
    let data = pattern((1 << 20) + 333);
    let mut kinds = vec![None];
    kinds.extend(EngineKind::ALL.map(Some));
    for engine in kinds {
        let opts = match engine {
            Some(k) => zcopy::CopyOptions::new().engine(k),
            None => zcopy::CopyOptions::new(),
        };
        // File → socket, from byte 0 (the file position is at the end after writing).
        let src = file_with(&data);
        let (a, b) = tcp_pair();
        let reader = collect(b);
        let r = zcopy::copy_with(&src, &a, &opts.clone().offset(0)).unwrap();
        drop(a);
        assert!(
            reader.join().unwrap() == data,
            "{engine:?}: {}",
            r.describe()
        );
        assert_eq!(r.bytes, data.len() as u64);
        if let Some(k) = engine {
            assert_eq!(r.runs[0].engine, k, "{}", r.describe());
        }

        // Socket → file, to the end of the stream.
        let (mut a, b) = tcp_pair();
        let sent = data.clone();
        let writer = std::thread::spawn(move || a.write_all(&sent).unwrap());
        let mut dst = tempfile::tempfile().unwrap();
        let r = zcopy::copy(&b, &dst).unwrap_or_else(|e| panic!("{engine:?}: {e}"));
        writer.join().unwrap();
        let r2 = match engine {
            Some(_) => {
                // The same with the engine first (from the stream's start again).
                let (mut a, b) = tcp_pair();
                let sent = data.clone();
                let writer = std::thread::spawn(move || a.write_all(&sent).unwrap());
                let mut dst2 = tempfile::tempfile().unwrap();
                let r = zcopy::copy_with(&b, &dst2, &opts).unwrap();
                writer.join().unwrap();
                let mut got = Vec::new();
                std::io::Seek::rewind(&mut dst2).unwrap();
                dst2.read_to_end(&mut got).unwrap();
                assert!(got == data, "{engine:?} tcp → file: {}", r.describe());
                Some(r)
            }
            None => None,
        };
        let mut got = Vec::new();
        std::io::Seek::rewind(&mut dst).unwrap();
        dst.read_to_end(&mut got).unwrap();
        assert!(got == data, "tcp → file: {}", r.describe());
        eprintln!(
            "{engine:?}: tcp → file {}",
            r2.map_or(r.describe(), |r| r.describe())
        );
    }
}

#[test]
fn copy_with_a_range_stops_at_its_end_and_reports_a_short_source() {
    let data = pattern(100_000);
    let src = file_with(&data);
    let mut dst = tempfile::tempfile().unwrap();
    let opts = zcopy::CopyOptions::new().offset(1000).len(5000);
    let r = zcopy::copy_with(&src, &dst, &opts).unwrap();
    assert_eq!(r.bytes, 5000);
    let mut got = Vec::new();
    std::io::Seek::rewind(&mut dst).unwrap();
    dst.read_to_end(&mut got).unwrap();
    assert_eq!(got, &data[1000..6000]);
    let opts = zcopy::CopyOptions::new().offset(99_000).len(5000);
    let err = zcopy::copy_with(&src, &dst, &opts).unwrap_err();
    assert!(
        matches!(
            err,
            TransferError::SourceShrank {
                expected: 5000,
                got: 1000
            }
        ),
        "{err}"
    );
}
