//! Userspace-TLS file throughput over loopback: a blocking server loop sends a
//! file with `send_file_chunk` to a rustls client (TLS 1.3, AES-128-GCM) in another
//! thread. Prints GB/s and the server thread's CPU-seconds per GB for each chunk size.
//!
//! `cargo run --release -p zcopy-tls --example tls_throughput -- CERT KEY FILE`

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Instant;

use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
use zcopy_tls::{CertFiles, Limits, Session, TlsListener, TlsOptions, send_file_chunk};

/// This thread's user+system CPU seconds (/proc/thread-self/stat, 100 ticks/s).
fn thread_cpu() -> f64 {
    let s = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
    let f: Vec<&str> = s.rsplit(')').next().unwrap().split_whitespace().collect();
    (f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()) as f64 / 100.0
}

fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let files = CertFiles {
        cert: a[0].clone().into(),
        key: a[1].clone().into(),
    };
    let path = a[2].clone();
    let len = std::fs::metadata(&path).unwrap().len();
    let ca = CertificateDer::pem_file_iter(&a[0])
        .unwrap()
        .last()
        .unwrap()
        .unwrap();
    let tls = TlsListener::new(files, &TlsOptions::default()).unwrap();
    for chunk in [16 * 1024, 64 * 1024, 256 * 1024, 1024 * 1024] {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.clone()).unwrap();
        let mut provider = rustls::crypto::ring::default_provider();
        provider
            .cipher_suites
            .retain(|s| s.suite() == rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
        let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let client = std::thread::spawn(move || {
            let c = rustls::ClientConnection::new(
                Arc::new(cfg),
                ServerName::try_from("localhost").unwrap(),
            )
            .unwrap();
            let mut s = rustls::StreamOwned::new(c, TcpStream::connect(addr).unwrap());
            s.write_all(b"go\n").unwrap();
            let mut buf = vec![0u8; 1 << 20];
            let mut got = 0u64;
            while got < len {
                got += s.read(&mut buf).unwrap() as u64;
            }
        });
        let (mut sock, _) = l.accept().unwrap();
        let mut s = Session::new(&tls.config, Instant::now(), &Limits::default()).unwrap();
        let mut rbuf = vec![0u8; 16384];
        let mut plain = Vec::new();
        while plain.is_empty() {
            while s.wants_write() {
                s.write_tls(&mut sock).unwrap();
            }
            let n = sock.read(&mut rbuf).unwrap();
            s.feed(&rbuf[..n], &mut plain).unwrap();
        }
        let file = std::fs::File::open(&path).unwrap();
        let mut fbuf = Vec::new();
        let (t0, c0) = (Instant::now(), thread_cpu());
        let mut off = 0;
        while off < len {
            off += send_file_chunk(&mut s, &file, off, len - off, &mut fbuf, chunk).unwrap() as u64;
            while s.wants_write() {
                s.write_tls(&mut sock).unwrap();
            }
        }
        client.join().unwrap();
        let (secs, cpu) = (t0.elapsed().as_secs_f64(), thread_cpu() - c0);
        let gb = len as f64 / 1e9;
        println!(
            "chunk {:>5} KiB: {:.2} GB/s, server {:.2} CPU-s/GB",
            chunk / 1024,
            gb / secs,
            cpu / gb
        );
    }
}
