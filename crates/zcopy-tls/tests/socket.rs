//! A rustls client and a [`Session`] over a real 127.0.0.1 TCP connection, the
//! server side driven by a tiny blocking loop shaped like the driver's: keep-alive
//! requests for file ranges, close_notify, plain HTTP and garbage on the port, a
//! client leaving mid-handshake, and the kTLS hand-off (which falls back here).

mod common;

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::*;
use zcopy_tls::ktls::{KtlsMode, listener_path};
use zcopy_tls::{
    FILE_CHUNK, HandOff, Limits, PLAIN_HTTP_400, Session, TlsError, TlsListener, TlsOptions,
    TlsPath, send_file_chunk,
};

/// What the server loop saw.
#[derive(Debug, Default)]
struct Log {
    handshakes: usize,
    requests: usize,
    kernel: bool,
    stayed: Option<String>,
    ended: String,
}

/// Serve one connection. Requests are lines: `GET <offset> <len>` answers
/// `OK <len>\n` and the bytes; `BYE` sends close_notify.
fn serve_one(
    tls: TlsListener,
    path: TlsPath,
    file: File,
) -> (std::net::SocketAddr, JoinHandle<Log>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let h = std::thread::spawn(move || {
        let (mut sock, _) = l.accept().unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut log = Log::default();
        let mut s = Some(Session::new(&tls.config, Instant::now(), &Limits::default()).unwrap());
        let mut plain = Vec::new();
        let mut rbuf = vec![0u8; 65536];
        let mut fbuf = Vec::new();
        loop {
            let sess = s.as_mut().unwrap();
            flush(sess, &mut sock);
            let n = match sock.read(&mut rbuf) {
                Ok(0) => {
                    log.ended = if sess.is_handshaking() {
                        "eof mid-handshake"
                    } else {
                        "eof"
                    }
                    .into();
                    return log;
                }
                Ok(n) => n,
                Err(e) => {
                    log.ended = format!("read: {e}");
                    return log;
                }
            };
            let fed = match sess.feed(&rbuf[..n], &mut plain) {
                Ok(fed) => fed,
                Err(TlsError::PlainHttp) => {
                    sock.write_all(PLAIN_HTTP_400).unwrap();
                    log.ended = "plain http".into();
                    return log;
                }
                Err(TlsError::NotTls) => {
                    log.ended = "not tls".into();
                    return log;
                }
                Err(e @ TlsError::Protocol(_)) => {
                    flush(sess, &mut sock);
                    log.ended = e.to_string();
                    return log;
                }
            };
            if fed.handshake_done {
                log.handshakes += 1;
                // The moment to hand over: tickets first, then try the kernel.
                flush(sess, &mut sock);
                match s.take().unwrap().into_kernel(&sock, &path) {
                    Ok(_) => {
                        log.kernel = true;
                        kernel_loop(sock, plain, &file, &mut log);
                        return log;
                    }
                    Err(HandOff::Stay(back, why)) => {
                        log.stayed = Some(why.to_string());
                        s = Some(*back);
                    }
                    Err(HandOff::Broken(e)) => panic!("kernel refused the keys: {e}"),
                }
            }
            let sess = s.as_mut().unwrap();
            while let Some(line) = take_line(&mut plain) {
                log.requests += 1;
                match parse(&line) {
                    Some((off, len)) => {
                        sess.send(format!("OK {len}\n").as_bytes()).unwrap();
                        let (mut off, mut left) = (off, len);
                        while left > 0 {
                            let n = send_file_chunk(sess, &file, off, left, &mut fbuf, FILE_CHUNK)
                                .unwrap();
                            off += n as u64;
                            left -= n as u64;
                            flush(sess, &mut sock);
                        }
                    }
                    None => {
                        sess.close_notify();
                        flush(sess, &mut sock);
                        sock.shutdown(Shutdown::Write).unwrap();
                    }
                }
            }
            if fed.peer_closed {
                log.ended = "close_notify".into();
                return log;
            }
        }
    });
    (addr, h)
}

/// After the hand-off the socket carries plaintext both ways; bodies by sendfile.
fn kernel_loop(mut sock: TcpStream, mut plain: Vec<u8>, file: &File, log: &mut Log) {
    let mut rbuf = vec![0u8; 65536];
    loop {
        while let Some(line) = take_line(&mut plain) {
            log.requests += 1;
            match parse(&line) {
                Some((off, len)) => {
                    sock.write_all(format!("OK {len}\n").as_bytes()).unwrap();
                    let mut f = file.try_clone().unwrap();
                    std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(off)).unwrap();
                    // std's copy uses sendfile for file → socket.
                    let sent = std::io::copy(&mut f.take(len), &mut sock).unwrap();
                    assert_eq!(sent, len);
                }
                None => {
                    zcopy::ktls::send_close_notify(&sock).unwrap();
                    sock.shutdown(Shutdown::Write).unwrap();
                    log.ended = "bye (kernel)".into();
                    return;
                }
            }
        }
        match zcopy::ktls::recv(&sock, &mut rbuf).unwrap() {
            zcopy::ktls::Received::Data(n) => plain.extend_from_slice(&rbuf[..n]),
            other => {
                log.ended = format!("{other:?} (kernel)");
                return;
            }
        }
    }
}

fn flush(s: &mut Session, sock: &mut TcpStream) {
    while s.wants_write() {
        s.write_tls(sock).unwrap();
    }
}

fn take_line(buf: &mut Vec<u8>) -> Option<String> {
    let end = buf.iter().position(|&b| b == b'\n')?;
    let line: Vec<u8> = buf.drain(..=end).collect();
    Some(String::from_utf8(line).unwrap().trim().to_string())
}

fn parse(line: &str) -> Option<(u64, u64)> {
    let mut w = line.split_whitespace();
    (w.next()? == "GET").then_some(())?;
    Some((w.next()?.parse().ok()?, w.next()?.parse().ok()?))
}

fn data_file(len: usize) -> (File, Vec<u8>) {
    let data = pattern(len, 99);
    let mut f = tempfile::tempfile().unwrap();
    f.write_all(&data).unwrap();
    (f, data)
}

fn connect(
    pki: &Pki,
    addr: std::net::SocketAddr,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> BufReader<LineClient> {
    connect_lines(&pki.client_config(versions, H1), addr)
}

fn keep_alive_ranges(
    pki: &Pki,
    path: TlsPath,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Log {
    let (file, data) = data_file(5 * 1024 * 1024 + 3);
    let tls = pki.listener(&TlsOptions {
        ktls: true,
        ..TlsOptions::default()
    });
    let (addr, server) = serve_one(tls, path, file);
    let mut c = connect(pki, addr, versions);
    for (off, len) in [
        (0u64, 0u64),
        (0, 1),
        (0, data.len() as u64),
        (4099, 1 << 20),
        (data.len() as u64 - 5, 5),
    ] {
        let got = get(&mut c, off, len);
        assert!(
            got == data[off as usize..(off + len) as usize],
            "range {off}+{len} differs"
        );
    }
    // BYE: the server's close_notify ends the stream cleanly.
    c.get_mut().write_all(b"BYE\n").unwrap();
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
    c.get_mut().conn.send_close_notify();
    c.get_mut().flush().unwrap();
    drop(c);
    let log = server.join().unwrap();
    assert_eq!(log.handshakes, 1);
    assert_eq!(log.requests, 6);
    log
}

#[test]
fn keep_alive_file_ranges_over_a_real_socket() {
    for (alg, versions) in [
        (Alg::EcdsaP256, TLS13),
        (Alg::Rsa, TLS12),
        (Alg::Ed25519, TLS13),
    ] {
        let pki = Pki::new(alg);
        let log = keep_alive_ranges(&pki, TlsPath::Userspace(zcopy_tls::Why::Disabled), versions);
        assert!(!log.kernel);
        assert_eq!(log.stayed.as_deref(), Some("kTLS disabled (--ktls off)"));
        assert!(
            log.ended == "close_notify" || log.ended == "eof",
            "{alg:?}: {}",
            log.ended
        );
    }
}

/// The kTLS path on a real socket: where the kernel has the tls ULP the session
/// moves to the kernel and bodies leave by sendfile; here attaching fails and the
/// same connection goes on in user space, byte-exact.
#[test]
fn ktls_hand_off_or_clean_fallback() {
    let probe = zcopy::ktls::probe();
    let pki = Pki::new(Alg::EcdsaP256);
    for versions in [TLS13, TLS12] {
        if probe.available() {
            let log = keep_alive_ranges(&pki, listener_path(KtlsMode::Auto, &probe), versions);
            assert!(log.kernel, "{:?}", log.stayed);
        } else {
            // Force the attempt: the listener claims kTLS, the socket refuses the ULP.
            let log = keep_alive_ranges(&pki, TlsPath::Kernel, versions);
            assert!(!log.kernel);
            let why = log.stayed.unwrap();
            assert!(why.starts_with("TCP_ULP tls: "), "{why}");
        }
    }
    if !probe.available() {
        println!("skipped: {probe} (the kTLS transfer; the fallback ran)");
    }
}

fn raw_exchange(send: &[u8], half_close: bool) -> (Vec<u8>, Log) {
    let pki = Pki::new(Alg::EcdsaP256);
    let (file, _) = data_file(10);
    let (addr, server) = serve_one(
        pki.listener(&TlsOptions::default()),
        TlsPath::Userspace(zcopy_tls::Why::Disabled),
        file,
    );
    let mut sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    sock.write_all(send).unwrap();
    if half_close {
        sock.shutdown(Shutdown::Write).unwrap();
    }
    let mut got = Vec::new();
    let _ = sock.read_to_end(&mut got);
    (got, server.join().unwrap())
}

#[test]
fn plain_http_on_the_port_gets_a_clear_text_400() {
    let (got, log) = raw_exchange(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", false);
    assert_eq!(got, PLAIN_HTTP_400);
    assert_eq!(log.ended, "plain http");
}

#[test]
fn garbage_on_the_port_is_closed_without_a_word() {
    let (got, log) = raw_exchange(b"\x00\x01\x02garbage garbage\r\n", false);
    assert!(got.is_empty());
    assert_eq!(log.ended, "not tls");
}

#[test]
fn a_client_leaving_mid_handshake_ends_only_its_connection() {
    // The first 40 bytes of a real ClientHello, then EOF.
    let pki = Pki::new(Alg::EcdsaP256);
    let mut c = client(&pki.client_config(TLS13, H1), "localhost");
    let mut hello = Vec::new();
    c.write_tls(&mut hello).unwrap();
    let (got, log) = raw_exchange(&hello[..40], true);
    assert!(got.is_empty());
    assert_eq!(log.ended, "eof mid-handshake");
    assert_eq!(log.handshakes, 0);
}
