//! Lending a hot snapshot from a pipe: head and body in one `splice`, the body's
//! pages looked up once.
//!
//! `sendfile` from a sealed memfd looks up every page of the range in the memfd's
//! page cache on every call, and the response's head goes in a `send` of its own
//! before it. A `Template` is a pipe filled once with a response's head (`write`)
//! and a range of a sealed memfd (`splice`): its buffers hold references to the
//! memfd's pages. Each response then costs `tee` (the template's buffers are
//! duplicated into a scratch pipe: page references, no byte copied, the template
//! keeps its own) and one `splice` of head and body to the socket.
//!
//! Only a sealed memfd ([`crate::snapshot`]) is accepted: its bytes can never
//! change, so pages kept in a template, a scratch pipe or a local peer's receive
//! queue are the bytes that were sealed, to any peer. Any other file is declined
//! (the caller sends it its usual way).
//!
//! Bounds: a [`Lender`] keeps at most [`TEMPLATES`] templates (least recently used
//! dropped), each of at most [`LEND_MAX`] body bytes, and at most [`LENT_MAX`]
//! scratch pipes lent to responses the socket did not take whole; past that it
//! declines. So its file descriptors are `2 * (TEMPLATES + LENT_MAX + 1)` at most.
//! Snapshot pages outlive the store's eviction only in its pipes (templates and
//! scratch pipes alike), and those are bounded in pages. Each pipe is sized for its response (a 64 KiB body: 32 pages), and all
//! lenders of a process hold at most [`pipe_pages_budget`] pipe pages (a quarter of
//! `fs.pipe-user-pages-soft`); past it, or when the kernel won't size a pipe, the
//! response is declined. `ZCOPY_DISABLE=tee` turns it off (`tee@N`: off
//! once it moved N bytes).

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rustix::io::Errno;
use rustix::pipe::{PipeFlags, SpliceFlags};

use crate::engine::EngineKind;
use crate::sys::mem::page_size;
use crate::transfer::Forced;

/// Most body bytes a template holds (a larger body is declined).
pub const LEND_MAX: u64 = 256 * 1024;
/// Most templates a lender keeps.
pub const TEMPLATES: usize = 8;
/// Most scratch pipes lent to responses still under way at once.
pub const LENT_MAX: usize = 64;
/// Largest head a template takes (a larger one is declined).
pub const HEAD_MAX: usize = 4096;
/// How often [`Lender::trim`] lets go of what went unused.
pub const TRIM_EVERY: Duration = Duration::from_secs(1);

/// A pipe holding one response's head and body bytes, duplicated per response.
#[derive(Debug)]
struct Template {
    /// Its pipe (the write end kept open so it stays a pipe with a writer; never
    /// written again).
    pipe: Pipe,
    /// The sealed memfd, held so that no other file can take its place in `same`.
    file: Arc<File>,
    offset: u64,
    len: u64,
    head: Box<[u8]>,
    /// A response used it since the last [`Lender::trim`].
    used: bool,
}

/// A pipe and how many buffers it holds, counted in the process's lending budget
/// ([`pipe_pages_budget`]) while it is open.
#[derive(Debug)]
struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    slots: usize,
}

impl Drop for Pipe {
    fn drop(&mut self) {
        PIPE_PAGES.fetch_sub(self.slots, Ordering::Relaxed);
    }
}

/// Pipe pages (buffers) the lenders of this process hold now, every worker's.
static PIPE_PAGES: AtomicUsize = AtomicUsize::new(0);

/// Most pipe pages the lenders of this process hold at once: a quarter of the
/// user's `fs.pipe-user-pages-soft` (16,384 by default: 4,096 pages, 16 MiB), so
/// that templates and scratch pipes never bring the user's other pipes (splice
/// engines, uploads, other processes of the same user) down to one page each.
/// Without a soft limit (0), the default's quarter.
pub fn pipe_pages_budget() -> usize {
    static BUDGET: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *BUDGET.get_or_init(|| {
        let soft = std::fs::read_to_string("/proc/sys/fs/pipe-user-pages-soft")
            .ok()
            .and_then(|s| s.trim().parse::<usize>().ok())
            .filter(|&n| n > 0)
            .unwrap_or(16_384);
        soft / 4
    })
}

/// Takes `pages` from `held` if that keeps it within `budget`.
fn reserve(held: &AtomicUsize, budget: usize, pages: usize) -> bool {
    held.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |h| {
        (h + pages <= budget).then_some(h + pages)
    })
    .is_ok()
}

impl Template {
    fn same(&self, head: &[u8], file: &Arc<File>, offset: u64, len: u64) -> bool {
        Arc::ptr_eq(&self.file, file)
            && self.offset == offset
            && self.len == len
            && *self.head == *head
    }

    fn total(&self) -> usize {
        self.head.len() + self.len as usize
    }
}

/// Pipe buffers a head and a body range take (one per page touched; the head is
/// written, so it takes whole pages of its own).
fn slots(head: usize, offset: u64, len: u64) -> usize {
    let page = page_size() as u64;
    head.div_ceil(page as usize) + ((offset % page) + len).div_ceil(page) as usize
}

/// A pipe whose capacity holds `slots` buffers (`F_SETPIPE_SZ` rounds up to a power
/// of two pages). Fails past the process's lending budget ([`pipe_pages_budget`])
/// or the user's pipe pages (`pipe-user-pages-soft`).
fn pipe_for(slots: usize) -> io::Result<Pipe> {
    let pages = slots.next_power_of_two();
    if !reserve(&PIPE_PAGES, pipe_pages_budget(), pages) {
        return Err(io::Error::other("lending's pipe pages are all in use"));
    }
    let (read, write) = match rustix::pipe::pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK) {
        Ok(p) => p,
        Err(e) => {
            PIPE_PAGES.fetch_sub(pages, Ordering::Relaxed);
            return Err(e.into());
        }
    };
    // From here its pages go back when it is dropped.
    let pipe = Pipe {
        read,
        write,
        slots: pages,
    };
    let got = rustix::pipe::fcntl_setpipe_size(&pipe.write, pages * page_size())?;
    if got != pages * page_size() {
        return Err(io::Error::other("pipe not of the size asked"));
    }
    Ok(pipe)
}

/// A scratch pipe holding the rest of a response the socket did not take whole:
/// send it with [`Lent::send`] before anything else on that socket, then give it
/// back with [`Lender::give_back`] (or drop it).
#[derive(Debug)]
pub struct Lent {
    /// The scratch pipe; taken by [`Lender::give_back`].
    pipe: Option<Pipe>,
    left: usize,
    count: Arc<AtomicUsize>,
}

impl Lent {
    /// Bytes still in the pipe.
    pub fn left(&self) -> usize {
        self.left
    }

    /// Splices at most `max` of the bytes left to `sock`; `Err(WouldBlock)` when
    /// the socket takes none now.
    pub fn send(&mut self, sock: BorrowedFd<'_>, max: usize) -> io::Result<usize> {
        let Some(pipe) = &self.pipe else {
            return Ok(0);
        };
        let n = splice_out(pipe.read.as_fd(), sock, self.left.min(max))?;
        self.left -= n;
        Ok(n)
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What [`Lender::send`] did.
#[derive(Debug)]
pub enum Lend {
    /// Not this way (nothing sent): not a sealed memfd, too large, the bounds are
    /// reached, forced off, or a pipe could not be had. Send it the usual way.
    Declined,
    /// `sent` bytes of head-then-body reached the socket (maybe 0: it was full);
    /// `rest` holds the others, to be sent with [`Lent::send`].
    Sent {
        /// Bytes of head and body that left.
        sent: usize,
        /// The rest, when the socket did not take all.
        rest: Option<Lent>,
    },
}

/// One worker's templates and its scratch pipe.
#[derive(Debug)]
pub struct Lender {
    /// Most recently used last.
    templates: Vec<Template>,
    /// Files refused (not sealed memfds), so they are asked once, not per response;
    /// held so their address is not reused by another file meanwhile.
    refused: Vec<Arc<File>>,
    /// An empty scratch pipe (as large as the largest template it served).
    spare: Option<Pipe>,
    lent: Arc<AtomicUsize>,
    /// Bytes moved so far, and the forced limit (`ZCOPY_DISABLE=tee@N`).
    moved: u64,
    limit: Option<u64>,
    /// Templates filled (for tests and metrics).
    fills: u64,
    /// When [`Lender::trim`] next looks, and whether a response was lent since.
    next_trim: Option<Instant>,
    lent_since_trim: bool,
}

impl Lender {
    /// A lender that honours `forced` (`tee` off, or off after N bytes).
    pub fn new(forced: &Forced) -> Lender {
        Lender {
            templates: Vec::new(),
            refused: Vec::new(),
            spare: None,
            lent: Arc::new(AtomicUsize::new(0)),
            moved: 0,
            limit: forced.limit(EngineKind::Tee),
            fills: 0,
            next_trim: None,
            lent_since_trim: false,
        }
    }

    /// Templates filled so far.
    pub fn fills(&self) -> u64 {
        self.fills
    }

    /// Lets go, at most once per [`TRIM_EVERY`], of what no response used since the
    /// previous look: templates (their pipes and the snapshot pages they hold), the
    /// spare scratch pipe, and the files remembered as refused. A hot body keeps its
    /// template; a worker that went quiet holds no pipe and no file of its own.
    pub fn trim(&mut self, now: Instant) {
        if self.next_trim.is_some_and(|at| now < at) {
            return;
        }
        self.next_trim = Some(now + TRIM_EVERY);
        self.templates
            .retain_mut(|t| std::mem::replace(&mut t.used, false));
        if !std::mem::replace(&mut self.lent_since_trim, false) {
            self.spare = None;
        }
        self.refused.clear();
    }

    /// Scratch pipes lent now.
    pub fn lent(&self) -> usize {
        self.lent.load(Ordering::Relaxed)
    }

    /// Sends `head` then `len` bytes of `file` from `offset` to `sock` (non-blocking)
    /// from a template: see [`Lend`]. A socket error is returned as such (nothing
    /// of this response left, or the connection is broken). `splice` to a socket
    /// has no `MSG_NOSIGNAL`: a peer gone raises `SIGPIPE`, which a Rust program
    /// ignores unless it asked otherwise (as with `sendfile`).
    pub fn send(
        &mut self,
        sock: BorrowedFd<'_>,
        head: &[u8],
        file: &Arc<File>,
        offset: u64,
        len: u64,
    ) -> io::Result<Lend> {
        if len == 0 || len > LEND_MAX || head.len() > HEAD_MAX {
            return Ok(Lend::Declined);
        }
        if self.limit.is_some_and(|l| self.moved >= l) {
            return Ok(Lend::Declined);
        }
        if self.lent.load(Ordering::Relaxed) >= LENT_MAX {
            return Ok(Lend::Declined);
        }
        if self.refused.iter().any(|f| Arc::ptr_eq(f, file)) {
            return Ok(Lend::Declined);
        }
        let Some(i) = self.template(head, file, offset, len) else {
            return Ok(Lend::Declined);
        };
        let t = &self.templates[i];
        let scratch = match self.spare.take() {
            Some(p) if p.slots >= t.pipe.slots => p,
            _ => match pipe_for(t.pipe.slots) {
                Ok(p) => p,
                Err(_) => return Ok(Lend::Declined),
            },
        };
        let total = t.total();
        self.lent_since_trim = true;
        // The scratch pipe is empty and holds as many buffers as the template: tee
        // takes all, or the pipe is dropped with what it took and nothing was sent.
        let teed = loop {
            match rustix::pipe::tee(&t.pipe.read, &scratch.write, total, SpliceFlags::NONBLOCK) {
                Err(Errno::INTR) => continue,
                r => break r,
            }
        };
        if teed != Ok(total) {
            // The template is not what it should be: dropped (made again next
            // time). The scratch pipe is kept only if nothing went into it.
            tracing::debug!(?teed, total, "tee from a template came short: declined");
            self.templates.remove(i);
            if teed.is_err() {
                self.spare = Some(scratch);
            }
            return Ok(Lend::Declined);
        }
        let sent = match splice_out(scratch.read.as_fd(), sock, total) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(e) => return Err(e),
        };
        // The whole response counts as moved this way: its rest leaves from the
        // scratch pipe whatever the limit says later.
        self.moved += total as u64;
        if sent == total {
            self.spare = Some(scratch);
            return Ok(Lend::Sent { sent, rest: None });
        }
        self.lent.fetch_add(1, Ordering::Relaxed);
        let rest = Lent {
            pipe: Some(scratch),
            left: total - sent,
            count: self.lent.clone(),
        };
        Ok(Lend::Sent {
            sent,
            rest: Some(rest),
        })
    }

    /// Takes back a scratch pipe once it is empty (one with bytes left is dropped).
    pub fn give_back(&mut self, mut lent: Lent) {
        if lent.left == 0 && self.spare.is_none() {
            self.spare = lent.pipe.take();
        }
    }

    /// The index of the template for these bytes, made (and the least recently used
    /// one dropped) if there is none.
    fn template(&mut self, head: &[u8], file: &Arc<File>, offset: u64, len: u64) -> Option<usize> {
        if let Some(i) = self
            .templates
            .iter()
            .position(|t| t.same(head, file, offset, len))
        {
            let mut t = self.templates.remove(i);
            t.used = true;
            self.templates.push(t);
            return Some(self.templates.len() - 1);
        }
        if !crate::snapshot::is_sealed(file) {
            if self.refused.len() >= TEMPLATES {
                self.refused.remove(0);
            }
            self.refused.push(file.clone());
            return None;
        }
        let t = match fill(head, file, offset, len) {
            Ok(t) => t,
            Err(e) => {
                tracing::debug!("template not made: {e}");
                return None;
            }
        };
        self.fills += 1;
        // The same body under an older head (a new Date) goes first, else the least
        // recently used.
        if let Some(i) = self
            .templates
            .iter()
            .position(|o| Arc::ptr_eq(&o.file, file) && o.offset == offset && o.len == len)
        {
            self.templates.remove(i);
        } else if self.templates.len() >= TEMPLATES {
            self.templates.remove(0);
        }
        self.templates.push(t);
        Some(self.templates.len() - 1)
    }
}

/// A template of `head` and `len` bytes of the sealed `file` from `offset`.
fn fill(head: &[u8], file: &Arc<File>, offset: u64, len: u64) -> io::Result<Template> {
    let pipe = pipe_for(slots(head.len(), offset, len))?;
    let mut at = 0;
    while at < head.len() {
        match rustix::io::write(&pipe.write, &head[at..]) {
            Ok(n) => at += n,
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let mut off = offset;
    let end = offset + len;
    while off < end {
        let want = (end - off) as usize;
        match rustix::pipe::splice(
            file,
            Some(&mut off),
            &pipe.write,
            None,
            want,
            SpliceFlags::NONBLOCK,
        ) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(_) => {}
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Template {
        pipe,
        file: file.clone(),
        offset,
        len,
        head: head.into(),
        used: true,
    })
}

/// Splices up to `len` bytes from the pipe `from` to `sock` while it takes them;
/// `Err(WouldBlock)` only when it took none.
fn splice_out(from: BorrowedFd<'_>, sock: BorrowedFd<'_>, len: usize) -> io::Result<usize> {
    let mut done = 0;
    while done < len {
        match rustix::pipe::splice(
            from,
            None,
            sock,
            None,
            len - done,
            SpliceFlags::MOVE | SpliceFlags::NONBLOCK,
        ) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => done += n,
            Err(Errno::INTR) => {}
            Err(Errno::AGAIN) if done > 0 => break,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsFd;

    use super::*;

    fn data(len: usize) -> Vec<u8> {
        (0..len as u32)
            .map(|i| (i.wrapping_mul(7) % 251) as u8)
            .collect()
    }

    fn sealed(bytes: &[u8]) -> Arc<File> {
        Arc::new(crate::snapshot::made_by("lend-test", |f| f.write_all(bytes)).unwrap())
    }

    /// A connected loopback pair (server side first).
    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        s.set_nonblocking(true).unwrap();
        (s, c)
    }

    fn read_n(c: &mut TcpStream, n: usize) -> Vec<u8> {
        let mut v = vec![0; n];
        c.read_exact(&mut v).unwrap();
        v
    }

    #[test]
    fn pipe_pages_are_reserved_within_the_budget_and_given_back_on_drop() {
        let held = AtomicUsize::new(0);
        assert!(reserve(&held, 64, 32));
        assert!(reserve(&held, 64, 32));
        assert!(!reserve(&held, 64, 1), "past the budget");
        assert_eq!(held.load(Ordering::Relaxed), 64, "a refusal takes nothing");
        assert!(pipe_pages_budget() > 0);
        // A real pipe counts its pages in the process's figure until dropped (other
        // tests' pipes come and go meanwhile: only this one's share is asserted).
        let p = pipe_for(20).unwrap();
        assert_eq!(p.slots, 32, "a power of two pages");
        assert!(PIPE_PAGES.load(Ordering::Relaxed) >= 32);
        let size = rustix::pipe::fcntl_getpipe_size(&p.write).unwrap();
        assert_eq!(size, 32 * page_size());
    }

    #[test]
    fn trim_lets_go_of_templates_and_the_spare_pipe_once_unused() {
        let (hot, cold) = (sealed(&data(5_000)), sealed(&data(6_000)));
        let (s, mut c) = pair();
        let mut lender = Lender::new(&Forced::new());
        let mut lend = |lender: &mut Lender, file: &Arc<File>| {
            let len = file.metadata().unwrap().len();
            let r = lender.send(s.as_fd(), b"H\r\n", file, 0, len).unwrap();
            assert!(matches!(r, Lend::Sent { rest: None, .. }), "{r:?}");
            read_n(&mut c, 3 + len as usize);
        };
        lend(&mut lender, &hot);
        lend(&mut lender, &cold);
        let t0 = Instant::now();
        lender.trim(t0);
        assert_eq!(
            lender.templates.len(),
            2,
            "both were used since the last look"
        );
        lend(&mut lender, &hot);
        lender.trim(t0 + TRIM_EVERY / 2);
        assert_eq!(lender.templates.len(), 2, "looked again too soon");
        lender.trim(t0 + TRIM_EVERY);
        assert_eq!(
            lender.templates.len(),
            1,
            "the cold one went, the hot one stays"
        );
        assert!(lender.spare.is_some());
        lender.trim(t0 + TRIM_EVERY * 2);
        assert_eq!(lender.templates.len(), 0);
        assert!(lender.spare.is_none(), "a quiet lender keeps no pipe");
        lend(&mut lender, &hot);
        assert_eq!(lender.fills(), 3, "made again when needed");
    }

    #[test]
    fn a_sealed_memfd_leaves_whole_from_one_template_per_head() {
        let body = data(70_000);
        let file = sealed(&body);
        let (s, mut c) = pair();
        let mut lender = Lender::new(&Forced::new());
        for (head, fills) in [
            (&b"HEAD-A\r\n"[..], 1),
            (b"HEAD-A\r\n", 1),
            (b"HEAD-BB\r\n", 2),
        ] {
            let r = lender
                .send(s.as_fd(), head, &file, 0, body.len() as u64)
                .unwrap();
            let Lend::Sent { sent, rest: None } = r else {
                panic!("{r:?}")
            };
            assert_eq!(sent, head.len() + body.len());
            assert_eq!(read_n(&mut c, head.len()), head);
            assert!(read_n(&mut c, body.len()) == body, "the body's bytes");
            assert_eq!(lender.fills(), fills);
        }
        // A range from an unaligned offset.
        let r = lender
            .send(s.as_fd(), b"R\r\n", &file, 4097, 30_000)
            .unwrap();
        assert!(
            matches!(
                r,
                Lend::Sent {
                    sent: 30_003,
                    rest: None
                }
            ),
            "{r:?}"
        );
        assert_eq!(read_n(&mut c, 3), b"R\r\n");
        assert!(
            read_n(&mut c, 30_000) == body[4097..34_097],
            "the range's bytes"
        );
    }

    #[test]
    fn every_other_kind_of_fd_is_declined_with_nothing_sent() {
        let body = data(10_000);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, &body).unwrap();
        let unsealed = crate::snapshot::create("open").unwrap();
        (&unsealed).write_all(&body).unwrap();
        let (pr, _pw) = rustix::pipe::pipe().unwrap();
        let (sock, _peer) = pair();
        let kinds: Vec<(&str, Arc<File>)> = vec![
            ("a regular file", Arc::new(File::open(&p).unwrap())),
            ("an unsealed memfd", Arc::new(unsealed)),
            ("a pipe", Arc::new(File::from(pr))),
            (
                "a socket",
                Arc::new(File::from(OwnedFd::from(sock.try_clone().unwrap()))),
            ),
        ];
        let (s, mut c) = pair();
        let mut lender = Lender::new(&Forced::new());
        for (what, f) in &kinds {
            for _ in 0..2 {
                let r = lender.send(s.as_fd(), b"H", f, 0, 10_000).unwrap();
                assert!(matches!(r, Lend::Declined), "{what}: {r:?}");
            }
        }
        assert_eq!(lender.fills(), 0);
        // Too large, empty, or a head over HEAD_MAX: declined too.
        let big = sealed(&data(LEND_MAX as usize + 1));
        let r = lender.send(s.as_fd(), b"H", &big, 0, LEND_MAX + 1).unwrap();
        assert!(matches!(r, Lend::Declined));
        let small = sealed(&body);
        assert!(matches!(
            lender.send(s.as_fd(), b"H", &small, 0, 0).unwrap(),
            Lend::Declined
        ));
        let head = vec![b'h'; HEAD_MAX + 1];
        assert!(matches!(
            lender.send(s.as_fd(), &head, &small, 0, 10).unwrap(),
            Lend::Declined
        ));
        // Nothing reached the socket.
        c.set_nonblocking(true).unwrap();
        let mut b = [0u8; 1];
        assert!(c.read(&mut b).is_err(), "no byte sent");
    }

    #[test]
    fn forced_off_it_declines_and_after_n_bytes_it_stops() {
        let body = data(50_000);
        let file = sealed(&body);
        let (s, mut c) = pair();
        let mut off = Lender::new(&Forced::parse("tee"));
        assert!(matches!(
            off.send(s.as_fd(), b"H", &file, 0, 50_000).unwrap(),
            Lend::Declined
        ));
        let mut after = Lender::new(&Forced::new().disable_after(EngineKind::Tee, 60_000));
        for i in 0..3 {
            let r = after.send(s.as_fd(), b"H", &file, 0, 50_000).unwrap();
            match (i, r) {
                (
                    0 | 1,
                    Lend::Sent {
                        sent: 50_001,
                        rest: None,
                    },
                ) => {
                    assert_eq!(read_n(&mut c, 1), b"H");
                    assert!(read_n(&mut c, 50_000) == body);
                }
                (2, Lend::Declined) => {}
                (i, r) => panic!("send {i}: {r:?}"),
            }
        }
    }

    #[test]
    fn a_full_socket_keeps_the_rest_in_a_lent_pipe_and_the_bounds_hold() {
        // 32 pipe pages a response: 64 rests stay within the process's page budget.
        let len = 120_000u64;
        let body = data(len as usize);
        let file = sealed(&body);
        let mut lender = Lender::new(&Forced::new());
        let mut held = Vec::new();
        // Peers that read nothing: each response stops part way, its rest lent.
        for _ in 0..LENT_MAX {
            let (s, c) = pair();
            rustix::net::sockopt::set_socket_send_buffer_size(&s, 4096).unwrap();
            rustix::net::sockopt::set_socket_recv_buffer_size(&c, 4096).unwrap();
            let r = lender.send(s.as_fd(), b"HEAD", &file, 0, len).unwrap();
            let Lend::Sent {
                sent,
                rest: Some(rest),
            } = r
            else {
                panic!("{r:?}")
            };
            assert_eq!(sent + rest.left(), 4 + body.len());
            held.push((s, c, sent, rest));
        }
        assert_eq!(lender.lent(), LENT_MAX);
        let (s, _c) = pair();
        let r = lender.send(s.as_fd(), b"HEAD", &file, 0, len).unwrap();
        assert!(matches!(r, Lend::Declined), "past LENT_MAX: {r:?}");
        // The first peer reads: the rest follows, every byte in order.
        let (s, mut c, _, mut rest) = held.remove(0);
        let reader = std::thread::spawn(move || read_n(&mut c, 4 + len as usize));
        while rest.left() > 0 {
            match rest.send(s.as_fd(), usize::MAX) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(std::time::Duration::from_millis(1))
                }
                Err(e) => panic!("{e}"),
            }
        }
        let got = reader.join().unwrap();
        assert_eq!(&got[..4], b"HEAD");
        assert!(got[4..] == body[..], "the whole body, in order");
        lender.give_back(rest);
        assert_eq!(lender.lent(), LENT_MAX - 1);
        drop(held);
        assert_eq!(lender.lent(), 0, "a dropped rest is counted back");
        // Templates stay bounded.
        let files: Vec<_> = (0..TEMPLATES + 3).map(|i| sealed(&data(100 + i))).collect();
        let (s, mut c) = pair();
        for (i, f) in files.iter().enumerate() {
            let r = lender.send(s.as_fd(), b"", f, 0, 100 + i as u64).unwrap();
            assert!(matches!(r, Lend::Sent { rest: None, .. }), "{r:?}");
            assert!(read_n(&mut c, 100 + i) == data(100 + i));
        }
        assert_eq!(lender.templates.len(), TEMPLATES);
    }

    #[test]
    fn a_template_that_comes_short_is_dropped_and_made_again() {
        let body = data(20_000);
        let file = sealed(&body);
        let (s, mut c) = pair();
        let mut lender = Lender::new(&Forced::new());
        let r = lender.send(s.as_fd(), b"H\r\n", &file, 0, 20_000).unwrap();
        assert!(matches!(r, Lend::Sent { rest: None, .. }), "{r:?}");
        read_n(&mut c, 20_003);
        // Empty the template's pipe behind the lender's back: tee finds nothing.
        let t = lender.templates.last().unwrap();
        let mut sink = vec![0u8; 32 * 1024];
        while let Ok(n) = rustix::io::read(&t.pipe.read, &mut sink[..]) {
            if n == 0 {
                break;
            }
        }
        let r = lender.send(s.as_fd(), b"H\r\n", &file, 0, 20_000).unwrap();
        assert!(matches!(r, Lend::Declined), "{r:?}");
        assert!(lender.templates.is_empty(), "the short template is dropped");
        assert!(lender.spare.is_some(), "the untouched scratch pipe is kept");
        c.set_nonblocking(true).unwrap();
        assert!(c.read(&mut [0u8; 1]).is_err(), "nothing sent when declined");
        c.set_nonblocking(false).unwrap();
        // The next response makes it again and leaves whole.
        let r = lender.send(s.as_fd(), b"H\r\n", &file, 0, 20_000).unwrap();
        assert!(
            matches!(
                r,
                Lend::Sent {
                    sent: 20_003,
                    rest: None
                }
            ),
            "{r:?}"
        );
        assert_eq!(lender.fills(), 2);
        assert_eq!(read_n(&mut c, 3), b"H\r\n");
        assert!(read_n(&mut c, 20_000) == body, "the body's bytes");
    }

    #[test]
    fn a_peer_closing_mid_response_fails_its_rest_and_the_lender_goes_on() {
        let body = data(LEND_MAX as usize);
        let file = sealed(&body);
        let mut lender = Lender::new(&Forced::new());
        let (s, c) = pair();
        rustix::net::sockopt::set_socket_send_buffer_size(&s, 4096).unwrap();
        let r = lender.send(s.as_fd(), b"HEAD", &file, 0, LEND_MAX).unwrap();
        let Lend::Sent {
            rest: Some(mut rest),
            ..
        } = r
        else {
            panic!("{r:?}")
        };
        // Closed with bytes unread: the peer resets the connection.
        drop(c);
        let mut failed = None;
        for _ in 0..2000 {
            match rest.send(s.as_fd(), usize::MAX) {
                Ok(n) => assert!(n > 0 || rest.left() == 0, "no progress, no error"),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(std::time::Duration::from_millis(1))
                }
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
            if rest.left() == 0 {
                break;
            }
        }
        let e = failed.expect("the rest fails once the peer is gone");
        assert!(
            matches!(
                e.raw_os_error(),
                Some(code) if code == Errno::PIPE.raw_os_error()
                    || code == Errno::CONNRESET.raw_os_error()
            ),
            "{e}"
        );
        drop(rest);
        assert_eq!(lender.lent(), 0);
        // A socket error on the first splice is returned as such, nothing lent.
        let (s2, c2) = pair();
        drop(c2);
        std::thread::sleep(std::time::Duration::from_millis(20));
        let _ = lender.send(s2.as_fd(), b"HEAD", &file, 0, LEND_MAX);
        std::thread::sleep(std::time::Duration::from_millis(20));
        let r = lender.send(s2.as_fd(), b"HEAD", &file, 0, LEND_MAX);
        assert!(r.is_err(), "{r:?}");
        assert_eq!(lender.lent(), 0);
        // The next peer gets its whole response.
        let (s3, mut c3) = pair();
        let reader = std::thread::spawn(move || read_n(&mut c3, 4 + LEND_MAX as usize));
        let r = lender
            .send(s3.as_fd(), b"HEAD", &file, 0, LEND_MAX)
            .unwrap();
        let Lend::Sent { sent, rest } = r else {
            panic!("{r:?}")
        };
        if let Some(mut rest) = rest {
            while rest.left() > 0 {
                match rest.send(s3.as_fd(), usize::MAX) {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        std::thread::sleep(std::time::Duration::from_millis(1))
                    }
                    Err(e) => panic!("{e}"),
                }
            }
        } else {
            assert_eq!(sent, 4 + LEND_MAX as usize);
        }
        let got = reader.join().unwrap();
        assert_eq!(&got[..4], b"HEAD");
        assert!(got[4..] == body[..], "the whole body, in order");
    }
}
