//! zcopy-tls: TLS for zcopy's servers, sans I/O. Nothing here touches a socket
//! except the kTLS hand-off; nothing here knows HTTP except the clear-text 400.
//!
//! - [`load`], [`certs`], [`config`]: PEM chain + key → [`TlsListener`] (a rustls
//!   `ServerConfig` on the *ring* provider: TLS 1.3 and 1.2, ALPN `http/1.1`,
//!   resumption by ticket and cache) whose certificate [`CertStore::reload`] swaps.
//! - [`session`]: [`Session`], one connection: ciphertext in, plaintext out (on
//!   rustls' unbuffered connection, so records are sealed straight into the
//!   session's own buffer and the kernel hand-off keeps the key schedule).
//! - [`sniff`]: plain HTTP or garbage on a TLS port.
//! - [`limits`]: handshake timeout and per-worker cap, as plain values.
//! - [`body`]: [`send_file_chunk`], a file range over userspace TLS.
//! - [`ktls`]: whether a listener and a connection take the kernel path, and
//!   [`Session::into_kernel`].
//!
//! # How a driver uses it
//!
//! **Start-up, per TLS listener.** `TlsListener::new(CertFiles { cert, key }, &opts)`;
//! a [`LoadError`] is a CLI error (exit 2, its message names the file). Probe once
//! per process with `zcopy::ktls::probe()`; `ktls::listener_path(mode, &probe)` is
//! the listener's [`TlsPath`], shown on the start-up line, by `zcopy engines` and
//! at `-v` (here: "userspace TLS (kernel has no tls ULP ...)"). Set
//! `opts.ktls = true` only when that path is `Kernel`. On SIGHUP call
//! `listener.certs.reload()`; on error log it, the old certificate stays. Per
//! worker keep a [`HandshakeSlots`] and one `Vec<u8>` file buffer.
//!
//! **Accept.** While `slots.full()`, do not accept on TLS listeners (leave them in
//! the kernel's backlog); with edge-triggered epoll, try accepting again each loop
//! turn in which a slot came free, since no new event will say so
//! (tests/driver.rs runs this whole note on mio). Otherwise `slots.take()` and make a
//! `Session::new(&listener.config, now, &limits)` for the connection. Its timer is
//! the earlier of the core's deadline and `session.handshake_deadline()`; when
//! that passes with the handshake unfinished, close (and give the slot back).
//!
//! **Readable.** Read ciphertext into the worker's read buffer, then
//! `session.feed(&rbuf[..n], &mut conn.plain)`; `conn.plain` is what the core
//! parses, exactly as the bytes `recv` gives on plain TCP (stop reading the socket
//! while it is over the core's limit, as today). Then:
//! - `Err(TlsError::PlainHttp)`: write [`PLAIN_HTTP_400`] to the socket once (best
//!   effort, no retry), close. `Err(TlsError::NotTls)`: close.
//!   `Err(TlsError::Protocol(_))`: flush `write_tls` once (rustls queued an
//!   alert), close. Each: give the slot back if it was still handshaking.
//! - `Ok(fed)`: if `fed.handshake_done`, give the slot back; if the listener's
//!   path is `Kernel`, flush, then `session.into_kernel(&sock, &path)`:
//!   `Ok` → from now on the connection is plain TCP for the core (see kTLS below);
//!   `Err(HandOff::Stay(session, why))` → carry on in user space (log `why` at
//!   debug; for `Why::PendingWrite` / `Why::MidRecord` try again after the next
//!   flush or feed, `ktls::connection_path(&path, &session.facts())` is a cheap
//!   check); `Err(HandOff::Broken(e))` → close. If `fed.plaintext > 0` let the core
//!   parse `conn.plain`. If `fed.peer_closed` it is the core's read EOF.
//! - Socket EOF: the core's read EOF (mid-handshake: close, slot back).
//! - Going idle (keep-alive wait, nothing to write): `session.release_buffers()`.
//!
//! **Core intents, userspace TLS.** Every byte leaves through the session:
//! - write head bytes / a small body: `session.send(bytes)` (an error: close),
//!   then flush.
//! - send file range `[fd, off, len]`, by reference *or* by copy: both become
//!   copies. Loop within the turn budget: flush; if `session.wants_write()` is still
//!   true, wait for writable; else
//!   `send_file_chunk(&mut session, &file, off, left, &mut worker.fbuf, FILE_CHUNK)`
//!   and advance by what it returns. Any `BodyError` (`Shrank`, `Read`, `Tls`) →
//!   close the connection (nothing of the short piece was encrypted: never a
//!   wrong byte).
//! - linger until consumed: nothing to wait for; userspace TLS never leaves page
//!   cache references in the socket (pread copied the bytes), so the lease may be
//!   released once the range has been read.
//! - close: `session.close_notify()`, flush, `shutdown(Write)`, then the core's
//!   usual lingering close.
//!
//! **Writable / flush.** `while session.wants_write() { session.write_tls(&mut sock) }`
//! until `WouldBlock` (keep write interest) or an error (close). `write_tls` issues
//! one `writev` of the queued records. The io_uring driver instead
//! `write_tls(&mut send_buf)` into a buffer it owns and submits that.
//!
//! **kTLS (after `into_kernel` succeeded).** The socket now takes and gives
//! plaintext: the core runs as on plain TCP — heads by `send`, bodies by
//! sendfile/splice under the same plan, peer-class and lease rules as plain TCP.
//! What differs: read with `zcopy::ktls::recv` (a plain `read` fails with EIO
//! at a non-data record): `Data(n)` goes to the core; `Eof` and `Alert` are the
//! core's read EOF; `Other { content_type: 22, .. }` is a TLS 1.3 KeyUpdate: pass
//! the record to `kernel.key_update(&buf[..len])` and the result to
//! `kernel.apply(&sock, &update)` (new receive keys; if the peer asked, our
//! KeyUpdate and new send keys; a kernel that cannot rekey refuses, then close);
//! any other record, or an error, closes. Close with
//! `zcopy::ktls::send_close_notify`, then `shutdown(Write)`. Close after
//! [`KernelSession::max_records`] records sent (AES-GCM's confidentiality limit;
//! ≈ 380 GB at 16 KiB records).
//!
//! # Proposed flags
//!
//! `--listen https://ADDR` (per listener, so plain and TLS listeners mix),
//! `--tls-cert FILE --tls-key FILE`, `--ktls auto|off`, `--tls-handshake-timeout
//! SECS` (10), `--tls-max-handshakes N` per worker (256), `--tls-plain-http
//! 400|close` (400), `--tls-session-cache N` (4096), `--tls-tickets on|off` (on).
#![forbid(unsafe_code)]

pub mod body;
pub mod certs;
pub mod config;
pub mod ktls;
pub mod limits;
pub mod load;
pub mod session;
pub mod sniff;

pub use body::{BodyError, FILE_CHUNK, send_file_chunk};
pub use certs::CertStore;
pub use config::{ALPN_H2, ALPN_HTTP11, TlsListener, TlsOptions};
pub use ktls::{HandOff, KernelSession, KeyUpdate, KtlsMode, TlsPath, Why};
pub use limits::{HandshakeSlots, Limits};
pub use load::{CertFiles, LoadError};
pub use session::{Fed, Session, TlsError};
pub use sniff::{FirstBytes, PLAIN_HTTP_400};
