//! [zcopy]'s engines for tokio sockets: send a file range to a
//! [`tokio::net::TcpStream`] by `sendfile(2)` (or `splice(2)`, ..., `read`/`write`
//! as fallbacks), and receive a `TcpStream` into a file by `splice(2)`, waiting for
//! the socket's readiness through tokio ([`TcpStream::ready`],
//! [`TcpStream::try_io`]). The bytes don't pass through a user-space buffer, as
//! they do with `tokio::io::copy`. **Linux only.**
//!
//! ```
//! use std::io::Write;
//! use tokio::io::AsyncReadExt;
//! use tokio::net::{TcpListener, TcpStream};
//! use zcopy::CopyOptions;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut file = tempfile::tempfile()?;
//! file.write_all(&[42u8; 200_000])?;
//! let listener = TcpListener::bind("127.0.0.1:0").await?;
//! let mut client = TcpStream::connect(listener.local_addr()?).await?;
//! let (server, _) = listener.accept().await?;
//!
//! let reader = tokio::spawn(async move {
//!     let mut got = Vec::new();
//!     client.read_to_end(&mut got).await.map(|_| got)
//! });
//! // The whole file, from byte 0.
//! let report = zcopy_tokio::send_file(&file, &server, &CopyOptions::new().offset(0)).await?;
//! drop(server);
//! assert_eq!(reader.await??, vec![42u8; 200_000]);
//! println!("{} bytes by {}", report.bytes, report.short()); // "sendfile", usually
//! # Ok(())
//! # }
//! ```
//!
//! # What blocks
//!
//! Only the socket is waited for asynchronously. Reading the file (for sending) and
//! writing it (for receiving) happen in the calling task, as with any `sendfile`
//! server: fast for files in the page cache, a disk wait for cold ones (use
//! `tokio::task::spawn_blocking` for those). Two engines wait for the kernel's
//! completions in the calling thread, which a peer on the same one-thread runtime
//! can't then provide: `uring` and `msg-zerocopy`. The default plan for a file to a
//! TCP socket reaches `uring` only after `sendfile` and `splice` could not run, and
//! never `msg-zerocopy`; ask for either only on a multi-thread runtime.
//!
//! [zcopy]: https://docs.rs/zcopy
#![deny(missing_docs)]
#![cfg(target_os = "linux")]

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Instant;

use tokio::io::Interest;
use tokio::net::TcpStream;
pub use zcopy::{CopyOptions, Report, TransferError};

/// The crate README's code, compiled as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
use zcopy::{EngineKind, Src, Transfer};

/// Most bytes handed to an engine per step.
const STEP: usize = 4 << 20;

/// Sends `file` to `stream` with zcopy's engines: from byte `offset` when
/// [`CopyOptions::offset`] is set (else from the file's position), `len` bytes
/// when [`CopyOptions::len`] is (else to the end of the file), with the engine of
/// [`CopyOptions::engine`] first. Waits for the socket to become writable through
/// tokio; returns when every byte is in the socket's send queue.
///
/// The file is protected by a read lease while it is read, where the kernel grants
/// one: if another process starts writing or truncating it, the send stops with
/// [`TransferError::SourceModified`] (a file that is simply shorter than `len` is
/// [`TransferError::SourceShrank`]).
///
/// ```
/// # use std::io::Write;
/// # use tokio::io::AsyncReadExt;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let mut file = tempfile::tempfile()?;
/// # file.write_all(b"0123456789")?;
/// # let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// # let mut client = tokio::net::TcpStream::connect(listener.local_addr()?).await?;
/// # let (stream, _) = listener.accept().await?;
/// use zcopy::{CopyOptions, EngineKind};
///
/// // Bytes 3..7, splice(2) first.
/// let opts = CopyOptions::new().offset(3).len(4).engine(EngineKind::Splice);
/// zcopy_tokio::send_file(&file, &stream, &opts).await?;
/// # drop(stream);
/// # let mut got = String::new();
/// # client.read_to_string(&mut got).await?;
/// # assert_eq!(got, "3456");
/// # Ok(())
/// # }
/// ```
pub async fn send_file(
    file: &File,
    stream: &TcpStream,
    opts: &CopyOptions,
) -> Result<Report, TransferError> {
    let started = Instant::now();
    let (offset, len) = opts.range();
    let mut t = opts.transfer(file.as_fd(), stream.as_fd())?;
    let lease = zcopy::lease::ReadLease::take(file).ok();
    let breaking = || lease.as_ref().is_some_and(|l| l.breaking());
    let ends = (file.as_fd(), offset, stream.as_fd());
    let result = drive(&mut t, ends, stream, Interest::WRITABLE, len, &breaking).await;
    drop(lease);
    finish(t, result, started)
}

/// Receives from `stream` into `file` with zcopy's engines (`splice(2)` first by
/// default): `len` bytes when [`CopyOptions::len`] is set (a stream that ends
/// earlier is [`TransferError::SourceShrank`]), else until the peer closes. The
/// file is written at its current position; [`CopyOptions::offset`] does not apply
/// (a socket has no offset). Waits for the socket to become readable through tokio.
///
/// ```
/// # use std::io::{Read, Seek};
/// # use tokio::io::AsyncWriteExt;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// # let mut client = tokio::net::TcpStream::connect(listener.local_addr()?).await?;
/// # let (stream, _) = listener.accept().await?;
/// let mut file = tempfile::tempfile()?;
/// let sender = tokio::spawn(async move { client.write_all(b"into a file").await });
/// let report = zcopy_tokio::recv_to_file(&stream, &file, &zcopy::CopyOptions::new()).await?;
/// sender.await??;
/// assert_eq!(report.bytes, 11);
/// # let mut got = String::new();
/// # file.rewind()?;
/// # file.read_to_string(&mut got)?;
/// # assert_eq!(got, "into a file");
/// # Ok(())
/// # }
/// ```
pub async fn recv_to_file(
    stream: &TcpStream,
    file: &File,
    opts: &CopyOptions,
) -> Result<Report, TransferError> {
    let started = Instant::now();
    let (_, len) = opts.range();
    let mut t = opts.transfer(stream.as_fd(), file.as_fd())?;
    let ends = (stream.as_fd(), None, file.as_fd());
    let result = drive(&mut t, ends, stream, Interest::READABLE, len, &|| false).await;
    finish(t, result, started)
}

fn finish(
    t: Transfer,
    result: Result<(), TransferError>,
    started: Instant,
) -> Result<Report, TransferError> {
    result?;
    let mut report = t.report().clone();
    report.elapsed = started.elapsed();
    Ok(report)
}

/// Steps `t` over `(source, offset in it, sink)` until `len` bytes (or the
/// source's end), waiting on `stream`'s `interest` whenever the engine says
/// "would block" (`stream` is the source or the sink).
async fn drive(
    t: &mut Transfer,
    (src, offset, sink): (BorrowedFd<'_>, Option<u64>, BorrowedFd<'_>),
    stream: &TcpStream,
    interest: Interest,
    len: Option<u64>,
    breaking: &(dyn Fn() -> bool + Sync),
) -> Result<(), TransferError> {
    let mut done: u64 = 0;
    loop {
        let want = match len {
            Some(len) if done >= len => return Ok(()),
            Some(len) => (len - done).min(STEP as u64) as usize,
            None => STEP,
        };
        if breaking() {
            return Err(TransferError::SourceModified { sent: done });
        }
        // Waiting here also spends the task's cooperative budget, so one long
        // transfer on a fast socket lets the runtime's other tasks run.
        let io_err = |t: &Transfer, source| TransferError::Io {
            engine: t.current().unwrap_or(EngineKind::ReadWrite),
            source,
        };
        if let Err(e) = stream.ready(interest).await {
            return Err(io_err(t, e));
        }
        let from = Src::Fd {
            fd: src,
            offset: offset.map(|o| o + done),
        };
        // `try_io` clears tokio's readiness when the closure says WouldBlock, which
        // it does only when the engine's syscall on the socket did.
        let stepped = stream.try_io(interest, || match t.step(from, sink, want) {
            Err(e) if e.io_kind() == Some(io::ErrorKind::WouldBlock) => {
                Err(io::ErrorKind::WouldBlock.into())
            }
            other => Ok(other),
        });
        match stepped {
            Ok(Ok(0)) => {
                return match len {
                    Some(expected) => Err(TransferError::SourceShrank {
                        expected,
                        got: done,
                    }),
                    None => Ok(()),
                };
            }
            Ok(Ok(n)) => done += n as u64,
            Ok(Err(e)) => return Err(e),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(io_err(t, e)),
        }
    }
}
