//! A response plan: the head (status and fields, [`Out`]) is in the caller's
//! buffer; the body is a list of pieces (memory, file ranges, files opened by name
//! when their turn comes) that any driver carries out. Protocol-neutral: each
//! protocol core writes the head its own way.

use std::fs::File;
use std::sync::Arc;

use crate::head::{Head, Out};
use crate::request::HttpError;

/// A file of the archive, opened when its turn comes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Its path beneath the archived directory (`a/b/c.txt`).
    pub rel: Box<str>,
    /// Its size when the archive was planned.
    pub size: u64,
}

/// One piece of a response body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Piece {
    /// Bytes `mem[start..end]` of the [`FileBody`].
    Mem(usize, usize),
    /// `len` bytes of the file from `start`.
    File {
        /// First byte.
        start: u64,
        /// How many bytes.
        len: u64,
    },
    /// The whole of archive member `index` ([`FileBody::members`]), `len` bytes,
    /// opened when its turn comes.
    Member {
        /// Index into [`FileBody::members`].
        index: usize,
        /// Its size.
        len: u64,
    },
}

/// The pieces of a body, in order: one held in place (the common body, one file
/// range: no allocation), or a list. Reads and writes as a slice of [`Piece`]s.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pieces {
    /// A single piece.
    One(Piece),
    /// Any number of pieces.
    Many(Vec<Piece>),
}

impl std::ops::Deref for Pieces {
    type Target = [Piece];
    fn deref(&self) -> &[Piece] {
        match self {
            Pieces::One(p) => std::slice::from_ref(p),
            Pieces::Many(v) => v,
        }
    }
}

impl std::ops::DerefMut for Pieces {
    fn deref_mut(&mut self) -> &mut [Piece] {
        match self {
            Pieces::One(p) => std::slice::from_mut(p),
            Pieces::Many(v) => v,
        }
    }
}

impl From<Vec<Piece>> for Pieces {
    fn from(v: Vec<Piece>) -> Pieces {
        Pieces::Many(v)
    }
}

/// A body read from an open file: one range, or multipart parts whose headers live
/// in `mem` and whose data is sent by an engine straight from the file.
#[derive(Debug)]
pub struct FileBody {
    /// The open file (shared with the worker's file cache for small files).
    pub file: Arc<File>,
    /// The file's length from the fstat the response was built on.
    pub file_len: u64,
    /// The pieces, in order.
    pub pieces: Pieces,
    /// Memory the [`Piece::Mem`] pieces point into.
    pub mem: BodyMem,
    /// Archive members the [`Piece::Member`] pieces name, beneath `file` (then a
    /// directory). A boxed slice (two words, not a vector's three): with
    /// [`BodyMem`]'s boxed rare case it keeps a [`Response`] within 128 bytes,
    /// which a move copies inline rather than by a call to memcpy (the core and
    /// the site move the response a few times per request).
    pub members: Box<[Member]>,
    /// Take a read lease on `file` before sending. Every body source decides it: no
    /// lease for a file shared with the worker's cache of small files (the lease
    /// would belong to the shared open file) nor for generated bodies.
    pub lease: bool,
    /// The whole of `file`, when the worker's cache holds its bytes (read under the
    /// fstat the response was built on).
    pub held: Option<Arc<[u8]>>,
    /// `file` can't change (a sealed snapshot, a file on a read-only file system:
    /// then no `lease`) or is trusted not to (then `lease` is a tripwire: by
    /// reference only while it holds): its bytes may leave by reference to every
    /// peer, a local one too.
    pub lendable: bool,
}

/// Bytes a body sends from memory: made for this response, or a held file's bytes
/// shared with the worker's file cache.
#[derive(Debug)]
pub enum BodyMem {
    /// Made for this response (multipart part headers, archive headers).
    Owned(Vec<u8>),
    /// A held file's bytes.
    Held(Arc<[u8]>),
    /// Made for this response and counted in a memory budget of whoever made it
    /// until the body is dropped: the guard is opaque here (the site's ticket), its
    /// drop gives the bytes back. Boxed, being rare: see [`FileBody::members`].
    Counted(Box<(Vec<u8>, Guard)>),
}

/// A drop guard the plan carries and never looks into (see [`BodyMem::Counted`]).
pub type Guard = Box<dyn std::fmt::Debug + Send + Sync>;

impl std::ops::Deref for BodyMem {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            BodyMem::Owned(v) => v,
            BodyMem::Held(b) => b,
            BodyMem::Counted(c) => &c.0,
        }
    }
}

/// How the body follows the head.
#[derive(Debug)]
pub enum Body {
    /// Nothing more: the head buffer already holds any (small) body.
    InHead,
    /// No answer yet: a password check runs off the event loop ([`Response::pending`]).
    Pending,
    /// From a file.
    File(FileBody),
    /// No answer yet: the request's body is to be received into this sink first
    /// (an upload the site accepted); the sink answers once the body is whole
    /// ([`Sink::finish`]) or could not be stored ([`Sink::failed`]).
    Receive(Box<dyn Sink>),
}

/// Where an accepted request body goes. The site makes it (a file nobody can see
/// yet), the driver writes the body's bytes into [`Sink::file`] in order, and the
/// site publishes it. Dropped without [`Sink::finish`] (the client went away, the
/// body stalled), it leaves nothing behind.
pub trait Sink: std::fmt::Debug + Send {
    /// The file the body's bytes are appended to (at its current offset).
    fn file(&self) -> &File;
    /// Most body bytes taken: a chunked body that grows beyond it is refused (413)
    /// mid-way (a Content-Length beyond it is the site's to refuse up front).
    fn limit(&self) -> u64 {
        u64::MAX
    }
    /// `n` more body bytes were written to [`Sink::file`] (by the driver, on the
    /// event loop: anything slow goes elsewhere).
    fn received(&mut self, n: u64) {
        let _ = n;
    }
    /// The whole body is in [`Sink::file`]: publish it and answer (the head goes to
    /// `out`; `close`: the connection closes after it).
    fn finish(self: Box<Self>, out: &mut Out, close: bool) -> Response;
    /// Storing the body failed with `err` (a full disk, ...): answer; the
    /// connection closes after it (the rest of the body is never read).
    fn failed(self: Box<Self>, err: &std::io::Error, out: &mut Out) -> Response;
}

/// A response decided by the site: the head (and a body held in memory) is in the
/// caller's [`Out`].
#[derive(Debug)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// The body still to send after the head buffer.
    pub body: Body,
    /// Body length announced in Content-Length (0 for HEAD and 304).
    pub body_len: u64,
    /// Close the connection after this response.
    pub close: bool,
}

// Moved inline, not by a call to memcpy (see [`FileBody::members`]).
const _: () = assert!(std::mem::size_of::<Response>() <= 128);

impl Response {
    /// Not answered yet: the request's password check runs off the event loop. The
    /// core keeps the request and asks again once the worker is told the verdict is
    /// in (nothing was written to `out`).
    pub fn pending() -> Response {
        Response {
            status: 0,
            body: Body::Pending,
            body_len: 0,
            close: false,
        }
    }

    /// The response to a request that could not be parsed: status and reason as
    /// text, then close (no body for a HEAD).
    pub fn error(out: &mut Out, err: HttpError, head_only: bool) -> Response {
        let body = format!("{} {}\n", err.status, err.reason);
        let mut h = Head::start(out, err.status);
        h.header("Content-Type", "text/plain; charset=utf-8");
        h.header_u64("Content-Length", body.len() as u64);
        h.header("Connection", "close");
        h.finish();
        if !head_only {
            out.body.extend_from_slice(body.as_bytes());
        }
        Response {
            status: err.status,
            body: Body::InHead,
            body_len: if head_only { 0 } else { body.len() as u64 },
            close: true,
        }
    }
}
