//! `tee`: duplicate a pipe's bytes into other pipes with `tee(2)`, then consume them
//! into the sink with `splice(2)`. No byte passes through user space.
//!
//! `tee` always duplicates from the head of the source pipe and cannot skip, so
//! when one copy takes fewer bytes than another (its pipe was fuller), the engine
//! remembers how far each copy is *ahead* of the head and only tees to the copies
//! that are level with it; the sink consumes no more than the copy furthest behind
//! has. Every output receives the identical byte sequence.

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};

use rustix::fs::FileType;
use rustix::io::Errno;
use rustix::pipe::SpliceFlags;

use super::{Engine, EngineKind, Src, unsupported};
use crate::stats::Stats;

/// tee(2) into every copy, then splice(2) the same bytes into the sink.
#[derive(Debug, Default)]
pub struct Tee {
    /// Write ends of the pipes that get a copy of every byte (`None` once dropped).
    copies: Vec<Option<OwnedFd>>,
    /// For each copy, how many bytes past the source pipe's head it already holds.
    ahead: Vec<usize>,
    /// Copies whose tee(2) failed, with why: dropped, the others go on.
    failed: Vec<(usize, io::Error)>,
}

impl Tee {
    /// A tee engine that also duplicates every byte into each pipe in `copies`
    /// (write ends). With no copies it is a plain pipe → sink splice.
    pub fn new(copies: Vec<OwnedFd>) -> Tee {
        let ahead = vec![0; copies.len()];
        Tee {
            copies: copies.into_iter().map(Some).collect(),
            ahead,
            failed: Vec::new(),
        }
    }

    /// Stops copying into copy `i` (its output failed): the others go on.
    pub fn drop_copy(&mut self, i: usize) {
        self.copies[i] = None;
        self.ahead[i] = 0;
    }

    /// Copies dropped because tee(2) into them failed since the last call (index in
    /// `copies` as given to [`Tee::new`], and the error).
    pub fn take_failed(&mut self) -> Vec<(usize, io::Error)> {
        std::mem::take(&mut self.failed)
    }

    fn live(&self) -> impl Iterator<Item = usize> + '_ {
        self.copies
            .iter()
            .zip(&self.ahead)
            .filter(|(c, _)| c.is_some())
            .map(|(_, a)| *a)
    }

    /// Brings every copy that is level with the source's head up to `target` bytes
    /// (fewer if the source holds fewer). `Ok(false)` at end of stream.
    fn fill_copies(
        &mut self,
        src: BorrowedFd<'_>,
        target: usize,
        stats: &mut Stats,
    ) -> io::Result<bool> {
        for (i, (slot, ahead)) in self.copies.iter_mut().zip(&mut self.ahead).enumerate() {
            let Some(copy) = slot else { continue };
            if *ahead > 0 {
                continue;
            }
            let n = loop {
                stats.syscalls += 1;
                match rustix::pipe::tee(src, &*copy, target, SpliceFlags::empty()) {
                    Err(Errno::INTR) => continue,
                    r => break r,
                }
            };
            let n = match n {
                Ok(n) => n,
                Err(e) => {
                    *slot = None;
                    self.failed.push((i, e.into()));
                    continue;
                }
            };
            if n == 0 {
                // The source is empty and has no writers: since nothing is ahead of
                // this copy, nothing is ahead of any (they'd hold unconsumed bytes).
                return Ok(false);
            }
            *ahead = n;
        }
        Ok(true)
    }
}

fn is_pipe(fd: BorrowedFd<'_>) -> io::Result<bool> {
    Ok(FileType::from_raw_mode(rustix::fs::fstat(fd)?.st_mode) == FileType::Fifo)
}

impl Engine for Tee {
    fn kind(&self) -> EngineKind {
        EngineKind::Tee
    }

    fn step(
        &mut self,
        src: Src<'_>,
        sink: BorrowedFd<'_>,
        max: usize,
        stats: &mut Stats,
    ) -> io::Result<usize> {
        let fd = match src {
            Src::Fd { fd, offset: None } if is_pipe(fd)? => fd,
            _ => return Err(unsupported("tee reads from a pipe only")),
        };
        if max == 0 {
            return Ok(0);
        }
        // How much the sink may consume: what every copy already holds.
        let mut take = max;
        if self.live().next().is_some() {
            let furthest = self.live().max().unwrap_or(0);
            let target = if furthest > 0 { furthest } else { max };
            if !self.fill_copies(fd, target, stats)? {
                return Ok(0);
            }
            if self.live().next().is_some() {
                take = take.min(self.live().min().unwrap_or(0));
            }
        }
        let copying = self.live().next().is_some();
        // Consume exactly `take` bytes (with copies) or up to `max` (without).
        let mut done = 0;
        while done < take {
            stats.syscalls += 1;
            let r = rustix::pipe::splice(fd, None, sink, None, take - done, SpliceFlags::MOVE);
            match r {
                Ok(0) if !copying => break,
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => {
                    done += n;
                    for (a, c) in self.ahead.iter_mut().zip(&self.copies) {
                        if c.is_some() {
                            *a -= n;
                        }
                    }
                    if !copying {
                        break;
                    }
                }
                Err(Errno::INTR) => {}
                Err(Errno::AGAIN) if done > 0 => break,
                Err(e) => {
                    stats.bytes += done as u64;
                    return if done > 0 { Ok(done) } else { Err(e.into()) };
                }
            }
        }
        stats.bytes += done as u64;
        Ok(done)
    }

    /// Bytes already duplicated into a copy that the sink has not received yet.
    fn pending(&self) -> usize {
        self.live().max().unwrap_or(0)
    }
}
