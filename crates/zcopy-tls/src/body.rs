//! File bodies over userspace TLS: pread a piece of the range, encrypt it.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use crate::Session;

/// Plaintext bytes encrypted per call by default: 4 full TLS records. Server
/// CPU per GB measured the same from 16 KiB to 1 MiB chunks (examples/
/// tls_throughput.rs), and this bounds the ciphertext one connection queues.
pub const FILE_CHUNK: usize = 64 * 1024;

/// Why a file piece could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The file ended before the range did: it shrank since its length was taken.
    /// The connection must close; no byte of the short piece was sent.
    #[error("file shrank: ends at {at}, the response promised up to {expected}")]
    Shrank {
        /// Offset where the file ended.
        at: u64,
        /// Offset the response needed.
        expected: u64,
    },
    /// pread failed.
    #[error("reading the file: {0}")]
    Read(#[from] io::Error),
    /// The session did not take the bytes (see [`Session::send`]).
    #[error("TLS: {0}")]
    Tls(io::Error),
}

/// Read up to `max` bytes of `file` at `offset` (at most `remaining`) into `buf` and
/// encrypt them into `session`. Returns the bytes taken from the range; the
/// ciphertext waits in the session for [`Session::write_tls`].
///
/// Call it only when `!session.wants_write()`, so ciphertext queued ahead stays
/// below one chunk. A short read is [`BodyError::Shrank`], never padding.
pub fn send_file_chunk(
    session: &mut Session,
    file: &File,
    offset: u64,
    remaining: u64,
    buf: &mut Vec<u8>,
    max: usize,
) -> Result<usize, BodyError> {
    let want = remaining.min(max as u64) as usize;
    if buf.len() < want {
        buf.resize(want, 0);
    }
    let mut got = 0;
    while got < want {
        match file.read_at(&mut buf[got..want], offset + got as u64) {
            Ok(0) => {
                return Err(BodyError::Shrank {
                    at: offset + got as u64,
                    expected: offset + remaining,
                });
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    session.send(&buf[..want]).map_err(BodyError::Tls)?;
    Ok(want)
}
