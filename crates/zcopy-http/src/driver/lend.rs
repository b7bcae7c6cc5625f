//! Lending glue both drivers share: a hot snapshot's head and body sent from a
//! template pipe ([`zcopy::lend`]), and the rest the socket did not take, with what
//! left told to the core. The drivers keep what differs: where the head comes
//! from (the core's own head for epoll; the bytes the io_uring driver corked) and
//! how they wait for room.

use std::io;
use std::os::fd::BorrowedFd;

use zcopy::lend::{Lend, Lent};

use super::Engines;
use super::worker::Env;
use crate::proto;

/// What [`lend`] did.
#[derive(Debug)]
pub(crate) enum Lending {
    /// Nothing sent: the usual way then.
    Declined,
    /// Sent, whole or in part: the rest, and how many of its bytes are still head
    /// bytes, goes next with [`send_rest`] before anything else on the socket.
    Sent(Option<(Lent, usize)>),
    /// The socket failed (told to the core).
    Failed,
}

/// Sends the core's lendable response (head and whole body from a template) to
/// `sock`. `corked`: `None`, the head is the core's own (told to it as written as
/// it leaves); `Some(bytes)`, the driver corked the head as `bytes`, already told
/// to the core (the core's own must then be empty).
pub(crate) fn lend(
    core: &mut proto::Conn,
    env: &mut Env<'_>,
    engines: &mut Engines,
    sock: BorrowedFd<'_>,
    corked: Option<&[u8]>,
) -> Lending {
    let Some((head, file, offset, len)) = core.lendable_whole() else {
        return Lending::Declined;
    };
    let head = match corked {
        None if head.is_empty() => return Lending::Declined,
        None => head,
        Some(_) if !head.is_empty() => return Lending::Declined,
        Some(bytes) => bytes,
    };
    let head_len = head.len();
    match engines.lender().send(sock, head, file, offset, len) {
        Ok(Lend::Declined) => Lending::Declined,
        Ok(Lend::Sent { sent, rest }) => {
            told(core, env, sent, head_len, corked.is_none());
            Lending::Sent(rest.map(|rest| (rest, head_len - sent.min(head_len))))
        }
        Err(e) => {
            tracing::debug!(peer = %core.peer(), "send failed: {e}");
            core.on_send_failed(env);
            Lending::Failed
        }
    }
}

/// What [`send_rest`] did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Rest {
    /// All of it left: give the scratch pipe back ([`zcopy::lend::Lender::give_back`]).
    Done,
    /// Some is left: wait for room.
    Left,
    /// The socket failed (told to the core): drop the rest.
    Failed,
}

/// Sends more of a lent rest (`head_left` of its bytes head bytes) to `sock` and
/// tells the core what left; `tell_head` as in [`lend`] (`corked` was `None`).
pub(crate) fn send_rest(
    lent: &mut Lent,
    head_left: &mut usize,
    core: &mut proto::Conn,
    env: &mut Env<'_>,
    sock: BorrowedFd<'_>,
    tell_head: bool,
) -> Rest {
    match lent.send(sock, usize::MAX) {
        Ok(n) => {
            let head = *head_left;
            *head_left -= n.min(head);
            told(core, env, n, head, tell_head);
            if lent.left() == 0 {
                Rest::Done
            } else {
                Rest::Left
            }
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Rest::Left,
        Err(e) => {
            tracing::debug!(peer = %core.peer(), "send failed: {e}");
            core.on_send_failed(env);
            Rest::Failed
        }
    }
}

/// `n` bytes of a lent response left, the first `head_left` of them head bytes:
/// those told to the core as written when `tell_head`, the others as body sent.
fn told(core: &mut proto::Conn, env: &mut Env<'_>, n: usize, head_left: usize, tell_head: bool) {
    let head = n.min(head_left);
    if tell_head && head > 0 {
        core.on_written(env, head);
    }
    let body = n - head;
    if body > 0 {
        env.events
            .stats
            .body_by_engine(Some(zcopy::EngineKind::Tee), body as u64, true);
        core.on_file_sent(env, body, true);
    }
}
