//! zcopy-tokio against real sockets and files.

use std::io::{Read, Seek, Write};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use zcopy::{CopyOptions, EngineKind, FallbackReason, Forced, TransferError};

fn pattern(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(31) ^ seed ^ (i / 4093)) as u8)
        .collect()
}

fn file_with(data: &[u8]) -> std::fs::File {
    let mut f = tempfile::tempfile().unwrap();
    f.write_all(data).unwrap();
    f
}

async fn tcp_pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    let (s, _) = l.accept().await.unwrap();
    (s, c)
}

/// A reader task on the same runtime, reading slowly at first (so the sender's
/// socket fills and it must wait for writability), then to the end.
fn slow_reader(mut c: TcpStream) -> tokio::task::JoinHandle<Vec<u8>> {
    tokio::spawn(async move {
        let mut got = Vec::new();
        let mut buf = vec![0u8; 16 * 1024];
        for _ in 0..8 {
            tokio::time::sleep(Duration::from_millis(5)).await;
            let n = c.read(&mut buf).await.unwrap();
            got.extend_from_slice(&buf[..n]);
            if n == 0 {
                return got;
            }
        }
        c.read_to_end(&mut got).await.unwrap();
        got
    })
}

fn read_back(mut f: std::fs::File) -> Vec<u8> {
    let mut got = Vec::new();
    f.rewind().unwrap();
    f.read_to_end(&mut got).unwrap();
    got
}

fn options(engine: Option<EngineKind>) -> CopyOptions {
    match engine {
        Some(k) => CopyOptions::new().engine(k),
        None => CopyOptions::new(),
    }
}

/// The engines that wait for completions in the calling thread: on a one-thread
/// runtime whose reader task must run meanwhile, they stall until their timeout.
const WAITING: [EngineKind; 2] = [EngineKind::Uring, EngineKind::MsgZerocopy];

/// Every engine but those.
fn engines() -> Vec<Option<EngineKind>> {
    let mut v = vec![None];
    v.extend(
        EngineKind::ALL
            .into_iter()
            .filter(|k| !WAITING.contains(k))
            .map(Some),
    );
    v
}

// One thread: the reader is a task on the same thread as the sender, so a sender
// that blocked the thread instead of waiting through tokio would never finish (the
// timeout turns that into a failure).
#[tokio::test(flavor = "current_thread")]
async fn a_file_range_reaches_a_tokio_socket_with_each_engine_first() {
    let data = pattern((6 << 20) + 123, 1);
    let file = file_with(&data);
    for engine in engines() {
        let (s, c) = tcp_pair().await;
        let reader = slow_reader(c);
        let opts = options(engine).offset(5).len(data.len() as u64 - 10);
        let send = zcopy_tokio::send_file(&file, &s, &opts);
        let report = tokio::time::timeout(Duration::from_secs(60), send)
            .await
            .unwrap_or_else(|_| panic!("{engine:?}: the send did not finish"))
            .unwrap_or_else(|e| panic!("{engine:?}: {e}"));
        drop(s);
        let got = reader.await.unwrap();
        assert!(
            got == data[5..data.len() - 5],
            "{engine:?}: {} bytes, want {} ({})",
            got.len(),
            data.len() - 10,
            report.describe()
        );
        if let Some(k) = engine {
            assert_eq!(report.runs[0].engine, k, "{}", report.describe());
        }
        eprintln!("{engine:?}: {}", report.describe());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engines_that_wait_for_completions_reach_a_tokio_socket_on_a_multi_thread_runtime() {
    let data = pattern(3 << 20, 2);
    let file = file_with(&data);
    for engine in WAITING {
        if let Err(why) = engine.probe() {
            eprintln!("skipped: {engine}: {why}");
            continue;
        }
        let (s, c) = tcp_pair().await;
        let reader = slow_reader(c);
        let opts = CopyOptions::new().offset(0).engine(engine);
        let report = zcopy_tokio::send_file(&file, &s, &opts).await.unwrap();
        drop(s);
        assert!(reader.await.unwrap() == data, "{}", report.describe());
        eprintln!("{engine}: {}", report.describe());
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_tokio_socket_reaches_a_file_with_each_engine_first() {
    let data = pattern((5 << 20) + 77, 3);
    for engine in engines() {
        let (s, mut c) = tcp_pair().await;
        let sent = data.clone();
        let writer = tokio::spawn(async move {
            for chunk in sent.chunks(700_000) {
                c.write_all(chunk).await.unwrap();
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        });
        let file = tempfile::tempfile().unwrap();
        let opts = options(engine);
        let recv = zcopy_tokio::recv_to_file(&s, &file, &opts);
        let report = tokio::time::timeout(Duration::from_secs(60), recv)
            .await
            .unwrap_or_else(|_| panic!("{engine:?}: the receive did not finish"))
            .unwrap_or_else(|e| panic!("{engine:?}: {e}"));
        writer.await.unwrap();
        assert!(read_back(file) == data, "{engine:?}: {}", report.describe());
        assert_eq!(report.bytes, data.len() as u64);
        eprintln!("{engine:?}: {}", report.describe());
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_stream_shorter_than_the_length_asked_is_source_shrank() {
    let (s, mut c) = tcp_pair().await;
    let writer = tokio::spawn(async move {
        c.write_all(&[5u8; 1000]).await.unwrap();
    });
    let file = tempfile::tempfile().unwrap();
    let opts = CopyOptions::new().len(5000);
    let err = zcopy_tokio::recv_to_file(&s, &file, &opts)
        .await
        .unwrap_err();
    writer.await.unwrap();
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
    assert_eq!(read_back(file), vec![5u8; 1000]);
}

#[tokio::test(flavor = "current_thread")]
async fn an_engine_forced_off_mid_send_hands_over_at_the_exact_byte() {
    let data = pattern(2 << 20, 4);
    let file = file_with(&data);
    for first in [EngineKind::Sendfile, EngineKind::Splice] {
        let (s, c) = tcp_pair().await;
        let reader = slow_reader(c);
        let opts = CopyOptions::new()
            .offset(0)
            .engine(first)
            .forced(Forced::new().disable_after(first, 65536));
        let report = zcopy_tokio::send_file(&file, &s, &opts).await.unwrap();
        drop(s);
        assert!(reader.await.unwrap() == data, "{}", report.describe());
        assert_eq!(report.runs[0].engine, first);
        assert_eq!(report.runs[0].stats.bytes, 65536, "{}", report.describe());
        assert!(
            matches!(
                report.runs[0].fell_back,
                Some(FallbackReason::Forced { after: 65536 })
            ),
            "{}",
            report.describe()
        );
    }
}

#[tokio::test(flavor = "current_thread")]
async fn many_sends_share_one_thread() {
    // Eight slow clients at once on one thread, 2 MiB each.
    let data = pattern(2 << 20, 5);
    let file = std::sync::Arc::new(file_with(&data));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (s, c) = tcp_pair().await;
        let reader = slow_reader(c);
        let file = file.clone();
        let sender = tokio::spawn(async move {
            let opts = CopyOptions::new().offset(0);
            zcopy_tokio::send_file(&file, &s, &opts)
                .await
                .map(|r| r.bytes)
        });
        tasks.push((sender, reader));
    }
    for (sender, reader) in tasks {
        let sent = tokio::time::timeout(Duration::from_secs(60), sender)
            .await
            .expect("a send did not finish")
            .unwrap()
            .unwrap();
        assert_eq!(sent, data.len() as u64);
        assert!(reader.await.unwrap() == data);
    }
}
