//! zcopy-tokio's `send_file` beside `tokio::io::copy` from a `tokio::fs::File` to a
//! `TcpStream`: throughput and the sender's CPU per GB, for one large file and for
//! many 64 KiB files, over loopback and across a veth pair (two network
//! namespaces; needs root, skipped otherwise).
//!
//! ```text
//! cargo run --release -p zcopy-tokio --example bench -- [BIG_MIB [SMALL_COUNT]]
//! ```
//!
//! Figures are ratios in one run on one machine, not promises: zero-copy is not
//! always faster.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use zcopy::{CopyOptions, Usage};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Method {
    Zcopy,
    TokioCopy,
}

/// Accepts one connection on `ip` and reads it to the end; sends the port first,
/// returns (bytes, this thread's CPU).
fn receiver(ip: Ipv4Addr, port_tx: mpsc::Sender<u16>) -> (u64, Duration) {
    let l = TcpListener::bind((ip, 0)).unwrap();
    port_tx.send(l.local_addr().unwrap().port()).unwrap();
    let (mut s, _) = l.accept().unwrap();
    let u0 = Usage::thread();
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => total += n as u64,
            Err(e) => panic!("receiver: {e}"),
        }
    }
    (total, Usage::thread().since(&u0).cpu())
}

/// Sends `path` `count` times over one connection to `addr`; returns the engine
/// that ran (zcopy) or "copy".
fn sender(method: Method, path: &Path, count: usize, addr: SocketAddr) -> String {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut engine = String::from("copy");
        let mut stream = stream;
        for _ in 0..count {
            match method {
                Method::Zcopy => {
                    let file = std::fs::File::open(path).unwrap();
                    let r = zcopy_tokio::send_file(&file, &stream, &CopyOptions::new().offset(0))
                        .await
                        .unwrap();
                    engine = r.short();
                }
                Method::TokioCopy => {
                    let mut file = tokio::fs::File::open(path).await.unwrap();
                    tokio::io::copy(&mut file, &mut stream).await.unwrap();
                }
            }
        }
        engine
    })
}

struct Figures {
    bytes: u64,
    secs: f64,
    sender_cpu: f64,
    engine: String,
}

/// One measurement: a receiver (in `rx_ns` if any) and a sender (in `tx_ns`).
fn measure(
    method: Method,
    path: &Path,
    count: usize,
    pair: Option<&zcopy_netns::VethPair>,
) -> Figures {
    let (port_tx, port_rx) = mpsc::channel();
    let ip = pair.map_or(Ipv4Addr::LOCALHOST, |p| p.addr_b);
    std::thread::scope(|scope| {
        let rx = scope.spawn(move || match pair {
            Some(p) => p.b.run(move || receiver(ip, port_tx)).unwrap(),
            None => receiver(ip, port_tx),
        });
        let addr = SocketAddr::from((ip, port_rx.recv().unwrap()));
        let u0 = Usage::process();
        let t0 = Instant::now();
        let engine = match pair {
            Some(p) => p.a.run(|| sender(method, path, count, addr)).unwrap(),
            None => sender(method, path, count, addr),
        };
        let (bytes, rx_cpu) = rx.join().unwrap();
        let secs = t0.elapsed().as_secs_f64();
        let cpu = Usage::process().since(&u0).cpu().saturating_sub(rx_cpu);
        Figures {
            bytes,
            secs,
            sender_cpu: cpu.as_secs_f64(),
            engine,
        }
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .map(|a| a.parse().unwrap())
        .collect();
    let big_mib = args.first().copied().unwrap_or(1024);
    let small_count = args.get(1).copied().unwrap_or(4000) as usize;
    let dir = tempfile::tempdir()?;
    let big = dir.path().join("big");
    let small = dir.path().join("small");
    {
        let mut f = std::fs::File::create(&big)?;
        let chunk: Vec<u8> = (0..1u32 << 20).map(|i| (i * 7) as u8).collect();
        for _ in 0..big_mib {
            f.write_all(&chunk)?;
        }
        std::fs::write(&small, &chunk[..64 * 1024])?;
    }
    let pair = match zcopy_netns::VethPair::new() {
        Ok(p) => Some(p),
        Err(e) => {
            eprintln!("veth: skipped ({e})");
            None
        }
    };
    println!("path      file            method           MB/s   sender CPU s/GB  engine");
    let mut paths = vec![("loopback", None)];
    if let Some(p) = pair.as_ref() {
        paths.push(("veth", Some(p)));
    }
    for (name, p) in paths {
        for (file, count, label) in [
            (&big, 1, format!("{big_mib} MiB x1")),
            (&small, small_count, format!("64 KiB x{small_count}")),
        ] {
            // Warm the page cache, then one run each, side by side.
            std::fs::read(file)?;
            for method in [Method::Zcopy, Method::TokioCopy] {
                let f = measure(method, file, count, p);
                let gb = f.bytes as f64 / 1e9;
                let name_m = match method {
                    Method::Zcopy => "zcopy-tokio",
                    Method::TokioCopy => "tokio::io::copy",
                };
                println!(
                    "{name:<9} {label:<15} {name_m:<15} {:>7.0}  {:>15.3}  {}",
                    gb * 1000.0 / f.secs,
                    f.sender_cpu / gb,
                    f.engine
                );
            }
        }
    }
    Ok(())
}
