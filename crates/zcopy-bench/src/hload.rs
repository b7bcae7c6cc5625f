//! `hload`: a cheap HTTP/1.1 keep-alive load client for one URL, as `wrk -t T -c N
//! -d D` but spending less of its own CPU per response, so that a pinned client is
//! not what sets the pace of a fast server.
//!
//! Each thread owns its connections and an edge-triggered epoll; each connection has
//! one request in flight (no pipelining). A response's head is read with a small
//! `recv` (its status line must be `HTTP/1.1 200`, it must carry a `Content-Length`,
//! and every response of the run must have the same length), and its body is
//! discarded by `recv(MSG_TRUNC)`: TCP drops the bytes without copying them to user
//! space, and the return says how many. When the time is up no new request is sent
//! and the responses in flight are read to their end, so the byte count is exact:
//! bytes received = requests x (head + body). Anything odd (another status, a
//! missing or changing length, bytes beyond a response, a closed connection, a
//! response still unfinished [`Options::grace`] after the end) fails the run.

use std::io;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::fd::AsFd;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use rustix::event::epoll;
use rustix::io::Errno;
use rustix::net::{RecvFlags, SendFlags};
use zcopy::Usage;

/// What to load and how hard.
#[derive(Clone, Debug)]
pub struct Options {
    /// The server.
    pub addr: SocketAddr,
    /// The `Host` header.
    pub host: String,
    /// The request target (`/64k.bin`).
    pub path: String,
    /// Keep-alive connections in all.
    pub connections: usize,
    /// Threads (each with its share of the connections).
    pub threads: usize,
    /// How long requests are started.
    pub duration: Duration,
    /// The body length every response must announce (`None`: the first one's).
    pub length: Option<u64>,
    /// How long the responses in flight at the end may take to finish.
    pub grace: Duration,
}

impl Options {
    /// Options for `url` (`http://host[:port]/path`): 50 connections, 1 thread, 5 s.
    pub fn for_url(url: &str) -> io::Result<Options> {
        let bad = || io::Error::other(format!("{url}: expected http://host[:port]/path"));
        let rest = url.strip_prefix("http://").ok_or_else(bad)?;
        let (host, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if host.is_empty() {
            return Err(bad());
        }
        let with_port = if host.contains(':') {
            host.to_string()
        } else {
            format!("{host}:80")
        };
        let addr = with_port
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| io::Error::other(format!("{host}: no address")))?;
        Ok(Options {
            addr,
            host: host.to_string(),
            path: path.to_string(),
            connections: 50,
            threads: 1,
            duration: Duration::from_secs(5),
            length: None,
            grace: Duration::from_secs(2),
        })
    }
}

/// What a run did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Outcome {
    /// Complete responses.
    pub requests: u64,
    /// The body length of every response.
    pub length: u64,
    /// Head bytes received.
    pub head_bytes: u64,
    /// Body bytes received (discarded by the kernel).
    pub body_bytes: u64,
    /// From the first request to the last response.
    pub wall: Duration,
    /// The load threads' user CPU, each from its first request to its last response.
    pub user: Duration,
    /// The load threads' system CPU over the same spans.
    pub system: Duration,
}

impl Outcome {
    /// Requests a second.
    pub fn rate(&self) -> f64 {
        self.requests as f64 / self.wall.as_secs_f64()
    }

    /// The client's CPU (user + system) as a share of one core over the run.
    pub fn cpu_share(&self) -> f64 {
        (self.user + self.system).as_secs_f64() / self.wall.as_secs_f64()
    }
}

/// Runs the load; an error if any connection failed or any response was odd.
pub fn run(opts: &Options) -> io::Result<Outcome> {
    if opts.connections == 0 || opts.threads == 0 || opts.threads > opts.connections {
        return Err(io::Error::other(
            "need at least one connection per thread and one thread",
        ));
    }
    let request = format!("GET {} HTTP/1.1\r\nHost: {}\r\n\r\n", opts.path, opts.host);
    let barrier = Barrier::new(opts.threads);
    let tallies = std::thread::scope(|s| {
        let workers: Vec<_> = (0..opts.threads)
            .map(|i| {
                let share = opts.connections / opts.threads
                    + usize::from(i < opts.connections % opts.threads);
                let (request, barrier) = (request.as_bytes(), &barrier);
                s.spawn(move || worker(opts, request, share, barrier))
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|_| Err(io::Error::other("a thread panicked")))
            })
            .collect::<Vec<io::Result<Tally>>>()
    });
    let mut out = Outcome::default();
    let mut length = opts.length;
    let mut span: Option<(Instant, Instant)> = None;
    for t in tallies {
        let t = t?;
        span = Some(span.map_or((t.start, t.end), |(a, b)| (a.min(t.start), b.max(t.end))));
        if let Some(l) = t.length {
            same_length(&mut length, l)?;
        }
        out.requests += t.requests;
        out.user += t.user;
        out.system += t.system;
        out.head_bytes += t.head_bytes;
        out.body_bytes += t.body_bytes;
    }
    out.length = length.unwrap_or(0);
    out.wall = span.map_or(Duration::ZERO, |(a, b)| b - a);
    if out.requests == 0 {
        return Err(io::Error::other("no response at all"));
    }
    Ok(out)
}

/// One thread's counts, when it started its first request and read its last
/// response (the run's wall time spans them all), and its own CPU time between the
/// two (the run's CPU is their sum: the same span as the wall time).
struct Tally {
    start: Instant,
    end: Instant,
    user: Duration,
    system: Duration,
    requests: u64,
    head_bytes: u64,
    body_bytes: u64,
    length: Option<u64>,
}

/// One connection: its socket and where it is in the response.
struct Conn {
    sock: TcpStream,
    /// The head read so far (while `left` is `None`).
    head: Vec<u8>,
    /// Body bytes still to come; `None` while the head is being read.
    left: Option<u64>,
    /// A request is out and its response not finished.
    busy: bool,
}

/// The longest head accepted.
const MAX_HEAD: usize = 16 << 10;
/// The most one `recv(MSG_TRUNC)` is asked to discard.
const SINK: usize = 1 << 20;

fn worker(opts: &Options, request: &[u8], n: usize, barrier: &Barrier) -> io::Result<Tally> {
    let setup = || -> io::Result<_> {
        let ep = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        let mut conns = Vec::with_capacity(n);
        for i in 0..n {
            let sock = TcpStream::connect(opts.addr)?;
            sock.set_nonblocking(true)?;
            let flags = epoll::EventFlags::IN | epoll::EventFlags::ET;
            epoll::add(&ep, &sock, epoll::EventData::new_u64(i as u64), flags)?;
            conns.push(Conn {
                sock,
                head: Vec::with_capacity(1024),
                left: None,
                busy: false,
            });
        }
        Ok((ep, conns))
    };
    let ready = setup();
    barrier.wait();
    let (ep, mut conns) = ready?;
    let start = Instant::now();
    let cpu0 = Usage::thread();
    let deadline = start + opts.duration;
    let mut t = Tally {
        start,
        end: start,
        user: Duration::ZERO,
        system: Duration::ZERO,
        requests: 0,
        head_bytes: 0,
        body_bytes: 0,
        length: opts.length,
    };
    for c in &mut conns {
        send(c, request)?;
    }
    let mut events: Vec<epoll::Event> = Vec::with_capacity(n);
    // A buffer the kernel never writes (MSG_TRUNC on TCP copies nothing): its pages
    // are never touched.
    let mut sink = vec![0u8; SINK];
    let mut hbuf = [0u8; 1024];
    let mut busy = n;
    let mut stopping = false;
    let mut give_up = deadline + opts.grace;
    while busy > 0 {
        let now = Instant::now();
        if !stopping && now >= deadline {
            stopping = true;
            give_up = now + opts.grace;
        }
        if stopping && now >= give_up {
            return Err(io::Error::other(format!(
                "{busy} responses unfinished {:?} after the end",
                opts.grace
            )));
        }
        let wait = if stopping { give_up } else { deadline } - now;
        let timeout = rustix::time::Timespec::try_from(wait).map_err(io::Error::other)?;
        events.clear();
        match epoll::wait(
            &ep,
            rustix::buffer::spare_capacity(&mut events),
            Some(&timeout),
        ) {
            Ok(_) => {}
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
        for ev in &events {
            let i = ev.data.u64() as usize;
            let c = &mut conns[i];
            let finished = read(c, &mut hbuf, &mut sink, &mut t)
                .map_err(|e| io::Error::other(format!("connection {i}: {e}")))?;
            if finished {
                t.requests += 1;
                if stopping {
                    c.busy = false;
                    busy -= 1;
                } else {
                    send(c, request)?;
                }
            }
        }
    }
    t.end = Instant::now();
    // Every response is finished: a byte still queued on a connection is one its
    // last response did not announce (also when no later response came to trip on it).
    // (A close after the run is not an error here.)
    for (i, c) in conns.iter().enumerate() {
        let flags = RecvFlags::PEEK | RecvFlags::DONTWAIT;
        match rustix::net::recv(c.sock.as_fd(), &mut hbuf, flags) {
            Ok((_, 0)) | Err(Errno::AGAIN) => {}
            Ok((_, k)) => {
                return Err(io::Error::other(format!(
                    "connection {i}: {k} bytes beyond its last response"
                )));
            }
            Err(e) => return Err(e.into()),
        }
    }
    let cpu = Usage::thread().since(&cpu0);
    (t.user, t.system) = (cpu.user, cpu.system);
    Ok(t)
}

/// Sends the request: one in flight and a few dozen bytes, so the socket's send
/// buffer is empty and takes it whole.
fn send(c: &mut Conn, request: &[u8]) -> io::Result<()> {
    let flags = SendFlags::DONTWAIT | SendFlags::NOSIGNAL;
    let k = rustix::net::send(&c.sock, request, flags)?;
    if k != request.len() {
        return Err(io::Error::other(format!(
            "short send: {k} of {} bytes",
            request.len()
        )));
    }
    c.busy = true;
    Ok(())
}

/// Reads what has arrived on `c` (until a short read: the queue is then empty, and
/// bytes arriving later raise a new edge); true if it finished the response (one
/// request is in flight, so nothing can follow it).
fn read(c: &mut Conn, hbuf: &mut [u8], sink: &mut [u8], t: &mut Tally) -> io::Result<bool> {
    loop {
        let Some(left) = c.left else {
            let k = match recv(c, hbuf, RecvFlags::DONTWAIT)? {
                None => return Ok(false),
                Some(k) => k,
            };
            if !c.busy {
                return Err(io::Error::other("bytes with no request in flight"));
            }
            c.head.extend_from_slice(&hbuf[..k]);
            let Some(end) = c.head.windows(4).position(|w| w == b"\r\n\r\n") else {
                if c.head.len() > MAX_HEAD {
                    return Err(io::Error::other("a head longer than 16 KiB"));
                }
                if k < hbuf.len() {
                    return Ok(false);
                }
                continue;
            };
            let length = content_length(&c.head[..end])?;
            same_length(&mut t.length, length)?;
            let extra = (c.head.len() - end - 4) as u64;
            if extra > length {
                return Err(io::Error::other(format!(
                    "{} bytes beyond a response of {length}",
                    extra - length
                )));
            }
            t.head_bytes += (end + 4) as u64;
            t.body_bytes += extra;
            c.head.clear();
            if length == extra {
                return Ok(true);
            }
            c.left = Some(length - extra);
            if k < hbuf.len() {
                return Ok(false);
            }
            continue;
        };
        let want = left.min(sink.len() as u64) as usize;
        let k = match recv(c, &mut sink[..want], RecvFlags::DONTWAIT | RecvFlags::TRUNC)? {
            None => return Ok(false),
            Some(k) if k > want => {
                return Err(io::Error::other(format!(
                    "recv(MSG_TRUNC) of {want} said {k}"
                )));
            }
            Some(k) => k,
        };
        t.body_bytes += k as u64;
        if k == want && left == want as u64 {
            c.left = None;
            return Ok(true);
        }
        c.left = Some(left - k as u64);
        if k < want {
            return Ok(false);
        }
    }
}

/// One `recv`: `None` if nothing is queued; an error on end of stream.
fn recv(c: &Conn, buf: &mut [u8], flags: RecvFlags) -> io::Result<Option<usize>> {
    let asked = buf.len();
    match rustix::net::recv(c.sock.as_fd(), buf, flags) {
        Ok((_, 0)) if asked > 0 => Err(io::Error::other(if c.left.is_some() {
            "the server closed the connection mid-response"
        } else {
            "the server closed a keep-alive connection"
        })),
        Ok((_, k)) => Ok(Some(k)),
        Err(Errno::AGAIN) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Every response of a run has the same body length.
fn same_length(known: &mut Option<u64>, length: u64) -> io::Result<()> {
    match *known {
        Some(l) if l != length => Err(io::Error::other(format!(
            "a response of {length} bytes, expected {l}"
        ))),
        _ => {
            *known = Some(length);
            Ok(())
        }
    }
}

/// The body length of a `200` head (without its final blank line).
pub fn content_length(head: &[u8]) -> io::Result<u64> {
    let head = std::str::from_utf8(head).map_err(|_| io::Error::other("a head not in UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or("");
    if !status.starts_with("HTTP/1.1 200 ") {
        return Err(io::Error::other(format!("unexpected answer: {status:?}")));
    }
    let mut length = None;
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| io::Error::other(format!("a header line without a colon: {line:?}")))?;
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("content-length") {
            let n = value
                .parse::<u64>()
                .map_err(|_| io::Error::other(format!("Content-Length: {value:?}")))?;
            if length.is_some_and(|l| l != n) {
                return Err(io::Error::other("two different Content-Length headers"));
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            || (name.eq_ignore_ascii_case("connection") && value.eq_ignore_ascii_case("close"))
        {
            return Err(io::Error::other(format!(
                "{name}: {value} (a fixed-length keep-alive answer was expected)"
            )));
        }
    }
    length.ok_or_else(|| io::Error::other("a response without Content-Length"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_are_checked() {
        let ok = b"HTTP/1.1 200 OK\r\nServer: x\r\ncontent-length: 65536\r\nConnection: keep-alive";
        assert_eq!(content_length(ok).unwrap(), 65536);
        for bad in [
            &b"HTTP/1.1 404 Not Found\r\nContent-Length: 3"[..],
            b"HTTP/1.0 200 OK\r\nContent-Length: 3",
            b"HTTP/1.1 200 OK\r\nServer: x",
            b"HTTP/1.1 200 OK\r\nContent-Length: 3x",
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked",
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close",
        ] {
            assert!(
                content_length(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn urls() {
        let o = Options::for_url("http://127.0.0.1:8080/a/64k.bin").unwrap();
        assert_eq!(o.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(
            (o.host.as_str(), o.path.as_str()),
            ("127.0.0.1:8080", "/a/64k.bin")
        );
        assert_eq!(Options::for_url("http://127.0.0.1").unwrap().path, "/");
        assert!(Options::for_url("https://127.0.0.1/").is_err());
    }
}
