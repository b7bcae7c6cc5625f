//! A small keep-alive load generator: one thread, `n` connections, each sending a GET
//! and reading the whole response before the next (no pipelining), as `wrk -c n`.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

/// A running load: counts answered requests until stopped.
#[derive(Debug)]
pub struct Load {
    done: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<io::Result<()>>,
}

impl Load {
    /// Starts `conns` connections to `addr`, each asking for `path` again and again and
    /// expecting a 200 with `len` body bytes. The thread runs on the `cpu`th CPU this
    /// process may use, when it may use two or more.
    pub fn start(
        addr: SocketAddr,
        path: &str,
        len: u64,
        conns: usize,
        cpu: usize,
    ) -> io::Result<Load> {
        let done = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").into_bytes();
        let (d, s) = (done.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("zcopy-bench-load".into())
            .spawn(move || {
                let mask = crate::scenario::pin(cpu);
                let r = run(addr, &request, len, conns, &d, &s);
                crate::scenario::unpin(mask);
                r
            })?;
        Ok(Load { done, stop, thread })
    }

    /// Requests answered so far.
    pub fn answered(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    /// Stops the load; an error if a connection failed or an answer was wrong.
    pub fn stop(self) -> io::Result<u64> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.join() {
            Ok(r) => r.map(|()| self.done.load(Ordering::Relaxed)),
            Err(_) => Err(io::Error::other("the load generator panicked")),
        }
    }
}

/// One connection: the request bytes sent so far, and the response read so far.
struct Conn {
    sock: TcpStream,
    sent: usize,
    head: Vec<u8>,
    /// Body bytes still to come; `None` while the head is being read.
    body_left: Option<u64>,
}

fn run(
    addr: SocketAddr,
    request: &[u8],
    len: u64,
    n: usize,
    done: &AtomicU64,
    stop: &AtomicBool,
) -> io::Result<()> {
    let mut poll = Poll::new()?;
    let mut conns = Vec::with_capacity(n);
    for i in 0..n {
        let mut sock = TcpStream::connect(addr)?;
        poll.registry()
            .register(&mut sock, Token(i), Interest::READABLE | Interest::WRITABLE)?;
        conns.push(Conn {
            sock,
            sent: 0,
            head: Vec::new(),
            body_left: None,
        });
    }
    let mut events = Events::with_capacity(n.max(1));
    let mut buf = vec![0u8; 256 * 1024];
    while !stop.load(Ordering::Relaxed) {
        poll.poll(&mut events, Some(Duration::from_millis(50)))?;
        for ev in &events {
            let c = &mut conns[ev.token().0];
            drive(c, request, len, &mut buf, done)?;
        }
    }
    Ok(())
}

/// Sends what is left of the request and reads what has arrived (edge-triggered:
/// until the socket would block), starting the next request after each answer.
fn drive(
    c: &mut Conn,
    request: &[u8],
    len: u64,
    buf: &mut [u8],
    done: &AtomicU64,
) -> io::Result<()> {
    loop {
        while c.sent < request.len() {
            match c.sock.write(&request[c.sent..]) {
                Ok(k) => c.sent += k,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        let got = match c.sock.read(buf) {
            Ok(0) => {
                return Err(io::Error::other(
                    "the server closed a keep-alive connection",
                ));
            }
            Ok(k) => k,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) => return Err(e),
        };
        let mut body = &buf[..got];
        if c.body_left.is_none() {
            c.head.extend_from_slice(body);
            let Some(end) = c.head.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            c.body_left = Some(content_length(&c.head[..end], len)?);
            let extra = c.head.len() - (end + 4);
            body = &buf[got - extra..got];
            c.head.clear();
        }
        let left = c.body_left.as_mut().expect("head read");
        if body.len() as u64 > *left {
            return Err(io::Error::other("more bytes than the answer announced"));
        }
        *left -= body.len() as u64;
        if *left == 0 {
            done.fetch_add(1, Ordering::Relaxed);
            c.body_left = None;
            c.sent = 0;
        }
    }
}

/// The body length of a `200` head (read as hload reads one), which must be `want`.
fn content_length(head: &[u8], want: u64) -> io::Result<u64> {
    match crate::hload::content_length(head)? {
        n if n == want => Ok(n),
        n => Err(io::Error::other(format!(
            "answer of {n} bytes, expected {want}"
        ))),
    }
}
