//! Admitting senders: each on its own thread, at most `max_senders` transferring at
//! once, and a connection only counts as a sender once its hello is complete.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::recv::await_hello;

/// How [`serve`] admits senders.
#[derive(Clone, Copy, Debug)]
pub struct Admission {
    /// Most senders transferring at once; as many more connections may be waiting
    /// for their hello or for a free slot, and any beyond that are closed at once.
    pub max_senders: usize,
    /// How long a connection may take to send its hello.
    pub hello_timeout: Duration,
    /// Stop after the first sender (the first connection that sends a hello).
    pub once: bool,
}

impl Default for Admission {
    fn default() -> Admission {
        Admission {
            max_senders: 16,
            hello_timeout: Duration::from_secs(10),
            once: false,
        }
    }
}

/// Connections being admitted and senders being served.
#[derive(Default)]
struct Slots {
    /// Accepted, not yet transferring (waiting for a hello or for a slot).
    pending: usize,
    /// Transferring.
    active: usize,
    /// `once`: the one sender has been admitted.
    taken: bool,
}

/// Shared between the acceptor and the connection threads.
struct Shared {
    slots: Mutex<Slots>,
    freed: Condvar,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Slots> {
        // A panicking connection thread leaves the counts consistent (it only
        // panics outside the lock), so a poisoned lock is still usable.
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Accepts connections on `listener` and runs `transfer(conn, peer, features)` for
/// each sender on its own thread; `transfer` says whether the sender succeeded.
///
/// A connection that closes, sends garbage or stalls before a complete hello is
/// logged and forgotten: it never counts as the `once` sender and holds no sender's
/// slot. With `once`, returns the first sender's outcome (later connections are
/// closed); otherwise returns only when accepting fails.
pub fn serve<F>(listener: TcpListener, admission: Admission, transfer: F) -> io::Result<bool>
where
    F: Fn(TcpStream, SocketAddr, u32) -> bool + Send + Sync + 'static,
{
    let shared = Arc::new(Shared {
        slots: Mutex::new(Slots::default()),
        freed: Condvar::new(),
    });
    let transfer = Arc::new(transfer);
    let (done, outcome) = mpsc::channel::<io::Result<bool>>();
    let max = admission.max_senders.max(1);
    std::thread::Builder::new()
        .name("recv-accept".into())
        .spawn(move || {
            loop {
                let (conn, peer) = match listener.accept() {
                    Ok(c) => c,
                    Err(e) if retry_accept(&e) => continue,
                    Err(e) => {
                        let _ = done.send(Err(e));
                        return;
                    }
                };
                {
                    let mut s = shared.lock();
                    if s.taken || s.pending >= max {
                        tracing::warn!(
                            "closing connection from {peer}: {}",
                            if s.taken {
                                "already serving the one sender (--once)"
                            } else {
                                "too many connections waiting to start"
                            }
                        );
                        continue;
                    }
                    s.pending += 1;
                }
                let (mine, transfer, done) = (shared.clone(), transfer.clone(), done.clone());
                let spawned = std::thread::Builder::new()
                    .name(format!("recv-{peer}"))
                    .spawn(move || {
                        if let Some(ok) = admit(conn, peer, &admission, max, &mine, &*transfer)
                            && admission.once
                        {
                            let _ = done.send(Ok(ok));
                        }
                    });
                if let Err(e) = spawned {
                    tracing::warn!("no thread for {peer}: {e}");
                    shared.lock().pending -= 1;
                }
            }
        })?;
    outcome
        .recv()
        .unwrap_or_else(|_| Err(io::Error::other("the accept loop ended")))
}

/// Waits for `conn`'s hello and a free slot, then runs `transfer`; `None` when the
/// connection was no sender (or not admitted).
fn admit<F>(
    mut conn: TcpStream,
    peer: SocketAddr,
    admission: &Admission,
    max: usize,
    shared: &Shared,
    transfer: &F,
) -> Option<bool>
where
    F: Fn(TcpStream, SocketAddr, u32) -> bool,
{
    let features = match await_hello(&mut conn, admission.hello_timeout) {
        Ok(f) => f,
        Err(e) => {
            tracing::info!("connection from {peer} sent no hello: {e}");
            shared.lock().pending -= 1;
            shared.freed.notify_all();
            return None;
        }
    };
    {
        let mut s = shared.lock();
        if admission.once && s.taken {
            s.pending -= 1;
            return None;
        }
        s.taken |= admission.once;
        let mut s = shared
            .freed
            .wait_while(s, |s| s.active >= max)
            .unwrap_or_else(|e| e.into_inner());
        s.pending -= 1;
        s.active += 1;
    }
    tracing::info!("sender connected from {peer}");
    // A panic in one transfer fails that sender only, and still frees its slot.
    let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        transfer(conn, peer, features)
    }))
    .unwrap_or(false);
    shared.lock().active -= 1;
    shared.freed.notify_all();
    Some(ok)
}

/// Accept errors that pass: an aborted handshake, a signal, or running out of fds
/// (then wait a little for some to be closed instead of spinning).
fn retry_accept(e: &io::Error) -> bool {
    match e.kind() {
        io::ErrorKind::ConnectionAborted | io::ErrorKind::Interrupted => true,
        _ if matches!(
            rustix::io::Errno::from_io_error(e),
            Some(rustix::io::Errno::MFILE | rustix::io::Errno::NFILE)
        ) =>
        {
            tracing::warn!("accepting senders: {e}; retrying in 100 ms");
            std::thread::sleep(Duration::from_millis(100));
            true
        }
        _ => false,
    }
}
