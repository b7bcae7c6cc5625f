//! The integration note, executed: a non-blocking mio loop shaped like the epoll
//! driver serves several TLS clients at once with a per-worker handshake cap and
//! a handshake deadline. A client that stalls in the handshake, one that sends
//! garbage and one that leaves mid-handshake do not disturb the others.

mod common;

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use common::*;
use mio::net::{TcpListener, TcpStream as MioStream};
use mio::{Events, Interest, Poll, Token};
use zcopy_tls::{
    FILE_CHUNK, HandshakeSlots, Limits, PLAIN_HTTP_400, Session, TlsError, TlsListener, TlsOptions,
    send_file_chunk,
};

const LISTENER: Token = Token(usize::MAX);

struct Conn {
    sock: MioStream,
    session: Session,
    plain: Vec<u8>,
    /// Still counted in the handshake slots.
    in_handshake: bool,
    /// File range still to send: (offset, bytes left).
    body: Option<(u64, u64)>,
}

#[derive(Debug, Default)]
struct Stats {
    served: usize,
    deadline_closes: usize,
    refused: usize,
    max_busy: usize,
}

/// Run the loop until `want` requests have been served (or 30 s pass: a bug).
fn serve(
    listener: TcpListener,
    tls: TlsListener,
    limits: Limits,
    file: File,
    want: usize,
) -> Stats {
    let mut poll = Poll::new().unwrap();
    let mut listener = listener;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)
        .unwrap();
    let mut events = Events::with_capacity(64);
    let mut conns: HashMap<Token, Conn> = HashMap::new();
    let mut slots = HandshakeSlots::new(&limits);
    let mut stats = Stats::default();
    let mut next = 0usize;
    let mut rbuf = vec![0u8; 16384];
    let mut fbuf = Vec::new();
    let give_up = Instant::now() + Duration::from_secs(30);
    while stats.served < want {
        assert!(Instant::now() < give_up, "loop stuck: {stats:?}");
        let wake = conns
            .values()
            .filter_map(|c| c.session.handshake_deadline())
            .min()
            .map(|d| d.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::from_millis(100));
        poll.poll(&mut events, Some(wake)).unwrap();
        let mut ready: Vec<Token> = events.iter().map(|e| e.token()).collect();
        // Accept while a handshake slot is free (also after slots were freed).
        while !slots.full() {
            match listener.accept() {
                Ok((mut sock, _)) => {
                    let t = Token(next);
                    next += 1;
                    poll.registry()
                        .register(&mut sock, t, Interest::READABLE | Interest::WRITABLE)
                        .unwrap();
                    assert!(slots.take());
                    stats.max_busy = stats.max_busy.max(slots.busy());
                    let session = Session::new(&tls.config, Instant::now(), &limits).unwrap();
                    conns.insert(
                        t,
                        Conn {
                            sock,
                            session,
                            plain: Vec::new(),
                            in_handshake: true,
                            body: None,
                        },
                    );
                    ready.push(t);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("accept: {e}"),
            }
        }
        ready.retain(|t| *t != LISTENER);
        // Handshake deadlines.
        let now = Instant::now();
        let late: Vec<Token> = conns
            .iter()
            .filter(|(_, c)| c.session.handshake_deadline().is_some_and(|d| d <= now))
            .map(|(t, _)| *t)
            .collect();
        for t in late {
            stats.deadline_closes += 1;
            close(&mut conns, t, &mut slots, &poll);
        }
        for t in ready {
            let Some(c) = conns.get_mut(&t) else { continue };
            match drive(c, &mut rbuf, &mut fbuf, &file, &mut slots, &mut stats) {
                Ok(true) => {}
                Ok(false) | Err(_) => close(&mut conns, t, &mut slots, &poll),
            }
        }
    }
    stats
}

fn close(conns: &mut HashMap<Token, Conn>, t: Token, slots: &mut HandshakeSlots, poll: &Poll) {
    if let Some(mut c) = conns.remove(&t) {
        if c.in_handshake {
            slots.give_back();
        }
        poll.registry().deregister(&mut c.sock).unwrap();
        let _ = c.sock.shutdown(Shutdown::Both);
    }
}

/// One readiness event for one connection; `Ok(false)`: close it.
fn drive(
    c: &mut Conn,
    rbuf: &mut [u8],
    fbuf: &mut Vec<u8>,
    file: &File,
    slots: &mut HandshakeSlots,
    stats: &mut Stats,
) -> io::Result<bool> {
    loop {
        let n = match c.sock.read(rbuf) {
            Ok(0) => return Ok(false),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        };
        match c.session.feed(&rbuf[..n], &mut c.plain) {
            Ok(fed) => {
                if fed.handshake_done {
                    c.in_handshake = false;
                    slots.give_back();
                }
                if fed.peer_closed {
                    return Ok(false);
                }
            }
            Err(TlsError::PlainHttp) => {
                stats.refused += 1;
                let _ = c.sock.write(PLAIN_HTTP_400);
                return Ok(false);
            }
            Err(TlsError::NotTls) => {
                stats.refused += 1;
                return Ok(false);
            }
            Err(TlsError::Protocol(_)) => {
                stats.refused += 1;
                let _ = c.session.write_tls(&mut c.sock);
                return Ok(false);
            }
        }
    }
    next_request(c);
    loop {
        while c.session.wants_write() {
            match c.session.write_tls(&mut c.sock) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
                Err(e) => return Err(e),
            }
        }
        match c.body {
            Some((_, 0)) => {
                c.body = None;
                stats.served += 1;
                next_request(c);
            }
            Some((off, left)) => {
                let n = send_file_chunk(&mut c.session, file, off, left, fbuf, FILE_CHUNK)
                    .map_err(io::Error::other)?;
                c.body = Some((off + n as u64, left - n as u64));
            }
            None => return Ok(true),
        }
    }
}

/// The "core": take one request line (`GET <offset> <len>`) if a whole one is
/// there, queue the head and set the body to send.
fn next_request(c: &mut Conn) {
    let Some(end) = c.plain.iter().position(|&b| b == b'\n') else {
        return;
    };
    let line: Vec<u8> = c.plain.drain(..=end).collect();
    let line = String::from_utf8_lossy(&line);
    let mut w = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse::<u64>().unwrap());
    let (off, len) = (w.next().unwrap(), w.next().unwrap());
    c.session.send(format!("OK {len}\n").as_bytes()).unwrap();
    c.body = Some((off, len));
}

#[test]
fn stalled_garbage_and_vanishing_clients_do_not_disturb_the_others() {
    let pki = Pki::new(Alg::EcdsaP256);
    let tls = pki.listener(&TlsOptions::default());
    let data = pattern(2 * 1024 * 1024 + 11, 5);
    let mut file = tempfile::tempfile().unwrap();
    file.write_all(&data).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let limits = Limits {
        handshake_timeout: Duration::from_millis(300),
        max_handshakes: 2,
    };
    let clients = 4;
    let server = std::thread::spawn(move || serve(listener, tls, limits, file, clients * 2));

    // Two clients that never speak take both handshake slots first: nobody else
    // is accepted until the deadline closes them.
    let stalled: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let mut garbage = TcpStream::connect(addr).unwrap();
    garbage
        .write_all(b"\x01\x02\x03 not tls at all\r\n")
        .unwrap();
    let mut plain_http = TcpStream::connect(addr).unwrap();
    plain_http.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    {
        let mut half = TcpStream::connect(addr).unwrap();
        let mut c = client(&pki.client_config(TLS13, H1), "localhost");
        let mut hello = Vec::new();
        c.write_tls(&mut hello).unwrap();
        half.write_all(&hello[..hello.len() / 2]).unwrap();
    } // closed mid-handshake

    let good: Vec<_> = (0..clients)
        .map(|i| {
            let cfg = pki.client_config(if i % 2 == 0 { TLS13 } else { TLS12 }, H1);
            let data = data.clone();
            std::thread::spawn(move || {
                let mut s = connect_lines(&cfg, addr);
                for (off, len) in [(0u64, data.len() as u64), (777, 100_000)] {
                    let body = get(&mut s, off, len);
                    assert!(
                        body == data[off as usize..(off + len) as usize],
                        "client {i}: bytes differ"
                    );
                }
            })
        })
        .collect();
    for g in good {
        g.join().unwrap();
    }
    let stats = server.join().unwrap();
    assert_eq!(stats.served, clients * 2);
    assert!(stats.max_busy <= 2, "{stats:?}");
    assert!(stats.deadline_closes >= 2, "{stats:?}");
    assert_eq!(stats.refused, 2, "garbage and plain HTTP: {stats:?}");
    for mut s in stalled {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 1];
        assert_eq!(s.read(&mut buf).unwrap(), 0, "closed without a byte");
    }
    let mut got = Vec::new();
    plain_http.read_to_end(&mut got).unwrap();
    assert_eq!(got, PLAIN_HTTP_400);
    got.clear();
    let _ = garbage.read_to_end(&mut got);
    assert!(got.is_empty(), "garbage gets nothing");
    println!("{stats:?}");
}
