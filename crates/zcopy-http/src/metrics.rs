//! The metrics endpoint: a small event loop (mio) on its own thread that answers
//! `GET /metrics` with [`ServerStats::render`], so scrapes never touch the workers' event
//! loops. Scrapes are served side by side: a client that sends its request slowly,
//! or reads the answer slowly, holds only its own connection ([`SCRAPE_TIMEOUT`] at
//! most), never the next scraper. At most [`MAX_SCRAPES`] connections are open at
//! once; a new one beyond that closes the oldest.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use crate::request::{self, HttpError, Limits, Method, Parsed};
use crate::stats::ServerStats;

/// How long one scrape may take, request and answer.
pub const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);
/// Scrape connections open at once; a new one beyond closes the oldest.
pub const MAX_SCRAPES: usize = 64;
/// Largest request head read (→ 431), and longest request line (→ 414).
const LIMITS: Limits = Limits {
    max_request_line: 2048,
    max_header_bytes: 8192,
    max_headers: 100,
};
const LISTENER: Token = Token(usize::MAX);

/// Serves `stats` on `listener` from a new thread, for the life of the process.
pub fn spawn(listener: TcpListener, stats: Arc<ServerStats>) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let poll = Poll::new()?;
    let mut listener = mio::net::TcpListener::from_std(listener);
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    std::thread::Builder::new()
        .name("zcopy-metrics".into())
        .spawn(move || run(poll, listener, &stats))?;
    Ok(())
}

/// One scrape in progress.
struct Scrape {
    stream: TcpStream,
    /// The request head so far.
    head: Vec<u8>,
    /// The answer, once the head is in; `out[pos..]` still to write.
    out: Vec<u8>,
    pos: usize,
    until: Instant,
    /// Accept order (the oldest goes first when there are too many).
    seq: u64,
}

fn run(mut poll: Poll, listener: mio::net::TcpListener, stats: &ServerStats) {
    let mut events = Events::with_capacity(64);
    let mut scrapes: Vec<Option<Scrape>> = Vec::new();
    let mut seq = 0u64;
    loop {
        let now = Instant::now();
        let next = scrapes.iter().flatten().map(|s| s.until).min();
        let timeout = next.map(|t| t.saturating_duration_since(now));
        if let Err(e) = poll.poll(&mut events, timeout)
            && e.kind() != io::ErrorKind::Interrupted
        {
            tracing::error!("metrics: {e}");
            return;
        }
        let mut ready = Vec::new();
        for ev in &events {
            if ev.token() == LISTENER {
                accept(&poll, &listener, &mut scrapes, &mut seq);
            } else {
                ready.push(ev.token().0);
            }
        }
        for i in ready {
            let done = match scrapes.get_mut(i).and_then(Option::as_mut) {
                Some(s) => s.step(stats),
                None => continue,
            };
            if done {
                close(&poll, &mut scrapes, i);
            }
        }
        let now = Instant::now();
        for i in 0..scrapes.len() {
            if scrapes[i].as_ref().is_some_and(|s| now >= s.until) {
                tracing::debug!("metrics scrape: timed out");
                close(&poll, &mut scrapes, i);
            }
        }
    }
}

fn accept(
    poll: &Poll,
    listener: &mio::net::TcpListener,
    scrapes: &mut Vec<Option<Scrape>>,
    seq: &mut u64,
) {
    loop {
        let mut stream = match listener.accept() {
            Ok((s, _)) => s,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::debug!("metrics accept: {e}");
                return;
            }
        };
        if scrapes.iter().flatten().count() >= MAX_SCRAPES {
            let oldest = scrapes
                .iter()
                .enumerate()
                .filter_map(|(i, s)| Some((s.as_ref()?.seq, i)))
                .min();
            if let Some((_, i)) = oldest {
                close(poll, scrapes, i);
            }
        }
        let i = match scrapes.iter().position(Option::is_none) {
            Some(i) => i,
            None => {
                scrapes.push(None);
                scrapes.len() - 1
            }
        };
        let interest = Interest::READABLE | Interest::WRITABLE;
        if let Err(e) = poll.registry().register(&mut stream, Token(i), interest) {
            tracing::debug!("metrics: {e}");
            continue;
        }
        *seq += 1;
        scrapes[i] = Some(Scrape {
            stream,
            head: Vec::new(),
            out: Vec::new(),
            pos: 0,
            until: Instant::now() + SCRAPE_TIMEOUT,
            seq: *seq,
        });
    }
}

fn close(poll: &Poll, scrapes: &mut [Option<Scrape>], i: usize) {
    if let Some(mut s) = scrapes[i].take() {
        let _ = poll.registry().deregister(&mut s.stream);
    }
}

impl Scrape {
    /// Reads and writes what the socket allows; true when the scrape is over.
    fn step(&mut self, stats: &ServerStats) -> bool {
        if self.out.is_empty() {
            let mut buf = [0u8; 1024];
            loop {
                match self.stream.read(&mut buf) {
                    Ok(0) => return true,
                    Ok(n) => {
                        self.head.extend_from_slice(&buf[..n]);
                        match request::parse(&self.head, &LIMITS) {
                            Ok(Parsed::Partial) => {}
                            Ok(Parsed::Complete(req, _)) => {
                                self.out = answer(&req, stats);
                                break;
                            }
                            Err(e) => {
                                self.out = refuse(e);
                                break;
                            }
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => return true,
                }
            }
        }
        while self.pos < self.out.len() {
            match self.stream.write(&self.out[self.pos..]) {
                Ok(0) => return true,
                Ok(n) => self.pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return true,
            }
        }
        let _ = self.stream.shutdown(Shutdown::Write);
        true
    }
}

/// The whole answer (head and body) to a request, parsed as the server parses them.
fn answer(req: &request::Request<'_>, stats: &ServerStats) -> Vec<u8> {
    let path = req.target.split('?').next().unwrap_or("");
    let (status, ctype, body) = match (req.method, path) {
        (Method::Get | Method::Head, "/metrics") => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            stats.render(),
        ),
        (Method::Get | Method::Head, _) => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "metrics are at /metrics\n".to_owned(),
        ),
        (Method::Other, _) => (
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            "GET /metrics\n".to_owned(),
        ),
    };
    reply(status, ctype, &body, req.method == Method::Head)
}

/// The answer to a request head the parser refused: its status and reason.
fn refuse(e: HttpError) -> Vec<u8> {
    let status = format!("{} {}", e.status, crate::head::reason(e.status));
    let body = format!("{} {}\n", e.status, e.reason);
    reply(&status, "text/plain; charset=utf-8", &body, false)
}

fn reply(status: &str, ctype: &str, body: &str, head_only: bool) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body.as_bytes());
    }
    out
}
