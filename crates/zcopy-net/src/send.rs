//! The sending end: walks the paths, sends each entry, and streams file bytes with
//! the chosen engine (sendfile by default) from the offset the receiver asks for.
//!
//! # Never a byte the file did not hold
//!
//! Each file is sent under a read lease ([`ReadLease`]) that is held until the
//! receiver has *acknowledged* the file (its reply comes after the bytes are on its
//! disk), not merely until our send queue is empty: a process that opens the file
//! for writing or truncates it waits until then (at most the kernel's
//! `lease-break-time`). If it asks while the file is still being sent, the send
//! stops, fails, and keeps the lease until the receiver has closed the connection
//! (so every byte already sent was read as the file held it; the receiver keeps a
//! `.part` holding a true prefix — or, for a file sent by reference to a local
//! receiver, keeps it aside as a `.lent.part`, whose last bytes may have been read
//! after the lease broke: a resume compares its hash with the file's first bytes,
//! [`proto::CHECK_PREFIX`]).
//!
//! The receiver's peer class ([`PeerClass`]) picks the plan. To a peer behind a
//! hardware interface, the engines send by reference and the lease covers them until
//! the acknowledgement. To a peer whose receive queue lives in this kernel (loopback,
//! an address of this host, another network namespace behind a veth/bridge), bytes
//! sent by reference stay references to the file's pages until the receiver reads
//! them, and the kernel breaks a lease after `lease-break-time` whether or not they
//! were read. So to such a peer they go by reference only when it speaks
//! [`FEAT_BYREF`] and `--engine` or the calibration profile asks for an engine that
//! sends by reference (`lend_locally`: the built-in `auto` copies, measured
//! cheaper here); such a receiver tells us once it holds every byte (before it
//! publishes the file), and we answer [`Verdict::Keep`] only if our lease is still unbroken —
//! then no one wrote or truncated the file between our first byte and its last
//! read. A broken lease gets [`Verdict::Discard`]: the receiver deletes what it got
//! and we send the file again (at most three times in all, then fail). To a local
//! peer without the feature (an older zcopy), bytes are copied at send time
//! ([`Plan::for_peer`]), even when `--engine` names sendfile or splice, as are files
//! we could not lease. To a remote peer an explicit `--engine` goes first.

use std::fs::{self, File};
use std::io::{self, Write};
use std::net::TcpStream;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use zcopy::LeaseHold::{self, UntilConsumed, UntilSent};
use zcopy::lease::ReadLease;
use zcopy::profile::Profile;
use zcopy::transfer::Transfer;
use zcopy::{Forced, PeerClass, PeerClassifier, Plan, Preference};

use crate::proto::{
    self, Entry, FEAT_BYREF, FEAT_RESUME, FEAT_VERIFY, Kind, Reply, SendMode, Verdict,
};
use crate::recv::Progress;

/// How the sender behaves.
#[derive(Clone, Debug, Default)]
pub struct SendConfig {
    /// Engine preference for file → socket.
    pub engine: Preference,
    /// Bytes per second at most.
    pub limit_rate: Option<u64>,
    /// Hash every file on both sides.
    pub verify: bool,
    /// Let the receiver resume partial files.
    pub resume: bool,
}

/// One thing to send: where it is here, and its header.
#[derive(Clone, Debug)]
pub struct Item {
    /// Local path.
    pub src: PathBuf,
    /// Header sent for it.
    pub entry: Entry,
}

/// Lists everything to send for `paths`: files as themselves, directories with
/// their whole tree (directories before their contents). Symlinks are followed for
/// the named paths and skipped inside trees.
pub fn collect(paths: &[PathBuf]) -> io::Result<Vec<Item>> {
    let mut items = Vec::new();
    for p in paths {
        let meta = fs::metadata(p)
            .map_err(|e| io::Error::new(e.kind(), format!("'{}': {e}", p.display())))?;
        let name = match p.file_name() {
            Some(n) => n.to_owned(),
            None => fs::canonicalize(p)?
                .file_name()
                .ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("'{}' has no name", p.display()),
                    )
                })?
                .to_owned(),
        };
        let rel = name.as_bytes().to_vec();
        walk(p, &meta, rel, &mut items)?;
    }
    Ok(items)
}

fn entry_for(meta: &fs::Metadata, kind: Kind, path: Vec<u8>) -> Entry {
    Entry {
        kind,
        mode: meta.permissions().mode() & 0o777,
        mtime_sec: meta.mtime(),
        mtime_nsec: meta.mtime_nsec() as u32,
        size: if kind == Kind::File { meta.len() } else { 0 },
        path,
    }
}

fn walk(path: &Path, meta: &fs::Metadata, rel: Vec<u8>, items: &mut Vec<Item>) -> io::Result<()> {
    if meta.is_file() {
        items.push(Item {
            src: path.to_owned(),
            entry: entry_for(meta, Kind::File, rel),
        });
    } else if meta.is_dir() {
        items.push(Item {
            src: path.to_owned(),
            entry: entry_for(meta, Kind::Dir, rel.clone()),
        });
        let mut children: Vec<_> = fs::read_dir(path)?.collect::<Result<_, _>>()?;
        children.sort_by_key(|e| e.file_name());
        for child in children {
            let ty = child.file_type()?;
            if ty.is_symlink() {
                tracing::warn!("skipping symlink '{}'", child.path().display());
                continue;
            }
            let mut r = rel.clone();
            r.push(b'/');
            r.extend_from_slice(child.file_name().as_bytes());
            walk(&child.path(), &child.metadata()?, r, items)?;
        }
    } else {
        tracing::warn!("skipping '{}': not a file or directory", path.display());
    }
    Ok(())
}

/// What a send delivered.
#[derive(Clone, Debug, Default)]
pub struct SendSummary {
    /// Files sent (or found already complete).
    pub files: u64,
    /// Bytes put on the wire.
    pub bytes: u64,
    /// Bytes the receiver already had.
    pub skipped_bytes: u64,
    /// Engines that sent, e.g. "sendfile".
    pub engines: Vec<String>,
    /// The receiver's closing summary (including its engine).
    pub receiver: String,
    /// Wall time.
    pub elapsed: Duration,
}

/// Why a send failed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The receiver refused an entry or failed to store it.
    #[error("receiver refused '{path}': {why}")]
    Refused {
        /// The entry.
        path: String,
        /// Its reason.
        why: String,
    },
    /// The connection or a local file failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// A file's read lease broke every time it was sent by reference before the
    /// receiver had read it: it kept changing, and was not kept.
    #[error("'{path}' changed while it was being sent ({attempts} attempts); not kept")]
    Changed {
        /// The file.
        path: String,
        /// How many times it was sent.
        attempts: u32,
    },
    /// An engine failed mid-file.
    #[error("'{path}': {source}")]
    Transfer {
        /// The file.
        path: String,
        /// What went wrong.
        #[source]
        source: zcopy::TransferError,
    },
}

fn expect_ok(conn: &mut TcpStream, path: &[u8]) -> Result<Reply, SendError> {
    let reply = Reply::read(conn).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "receiver closed the connection early",
            )
        } else {
            e
        }
    })?;
    if reply.ok {
        Ok(reply)
    } else {
        Err(SendError::Refused {
            path: proto::printable(&String::from_utf8_lossy(path)),
            why: proto::printable(&reply.message),
        })
    }
}

/// Sends `items` over `conn`; returns only after the receiver confirmed everything
/// is on its disk.
pub fn send(
    mut conn: TcpStream,
    items: &[Item],
    cfg: &SendConfig,
    progress: &dyn Progress,
) -> Result<SendSummary, SendError> {
    let started = Instant::now();
    let _ = conn.set_nodelay(true);
    let ours = FEAT_BYREF
        | if cfg.verify { FEAT_VERIFY } else { 0 }
        | if cfg.resume { FEAT_RESUME } else { 0 };
    proto::write_hello(&mut conn, ours)?;
    let features = proto::read_hello(&mut conn)? & ours;
    if cfg.verify && features & FEAT_VERIFY == 0 {
        return Err(io::Error::other("receiver does not support --verify").into());
    }
    let peer = PeerClassifier::new().classify(conn.as_fd());
    tracing::debug!("receiver is {peer}");
    if let Preference::Prefer(k) = cfg.engine
        && peer.is_local()
        && k.sends_by_reference()
        && features & FEAT_BYREF == 0
    {
        tracing::warn!(
            "the receiver can't confirm files sent by reference (an older zcopy recv): \
             copying instead of {k}"
        );
    }
    let mut summary = SendSummary::default();
    for item in items {
        let entry = &item.entry;
        let shown = String::from_utf8_lossy(&entry.path).into_owned();
        if entry.kind == Kind::Dir {
            entry.write(&mut conn)?;
            expect_ok(&mut conn, &entry.path)?;
            continue;
        }
        let mut attempt = 1;
        while send_file(
            &mut conn,
            item,
            cfg,
            features,
            &peer,
            progress,
            &mut summary,
        )? == Outcome::Discarded
        {
            if attempt >= ATTEMPTS {
                return Err(SendError::Changed {
                    path: proto::printable(&shown),
                    attempts: attempt,
                });
            }
            attempt += 1;
            tracing::warn!("'{shown}' changed while it was being sent: sending it again");
        }
    }
    Entry::end().write(&mut conn)?;
    summary.receiver = proto::printable(&expect_ok(&mut conn, b"(end)")?.message);
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// How many times a file whose read lease broke while it was sent by reference is
/// sent before the send fails.
pub const ATTEMPTS: u32 = 3;

/// How one attempt at a file ended.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// On the receiver's disk under its name.
    Done,
    /// Sent by reference, but the read lease broke before the receiver had read the
    /// bytes: the receiver deleted them; the file may be sent again.
    Discarded,
}

/// Sends one file: header, the receiver's offset, the bytes from there, and (sent
/// by reference) the lease verdict; returns once the receiver has answered.
fn send_file(
    conn: &mut TcpStream,
    item: &Item,
    cfg: &SendConfig,
    features: u32,
    peer: &PeerClass,
    progress: &dyn Progress,
    summary: &mut SendSummary,
) -> Result<Outcome, SendError> {
    let shown = String::from_utf8_lossy(&item.entry.path).into_owned();
    let file = File::open(&item.src)
        .map_err(|e| io::Error::new(e.kind(), format!("'{}': {e}", item.src.display())))?;
    // The size sent is the one fstat gives on the open file.
    let mut entry = item.entry.clone();
    entry.size = file.metadata()?.len();
    let lease = ReadLease::take(&file)
        .map_err(|e| tracing::debug!("'{shown}': no read lease: {e}"))
        .ok();
    entry.write(conn)?;
    let reply = expect_ok(conn, &entry.path)?;
    let mut offset = reply.offset.min(entry.size);
    if features & FEAT_BYREF != 0 && reply.message == proto::CHECK_PREFIX {
        // The receiver kept a prefix we sent by reference before failing: it
        // resumes from it only if it is what the file holds.
        conn.write_all(&proto::hash_range(&file, 0, offset)?)?;
        offset = expect_ok(conn, &entry.path)?.offset.min(entry.size);
    }
    summary.skipped_bytes += offset;
    progress.file_start(&shown, entry.size, offset);
    // To a receiver in this kernel, bytes sent by reference stay references to the
    // file's pages until it reads them: allowed only when it will tell us it has
    // them before it keeps them, and we hold the lease until then.
    let lend = features & FEAT_BYREF != 0
        && lease.is_some()
        && offset < entry.size
        && peer.is_local()
        && lend_locally(peer, entry.size, cfg.engine);
    let hold = if lend { UntilConsumed } else { UntilSent };
    // An engine asked for that would lend to a local receiver that can't confirm
    // (an older zcopy recv) copies instead: its bytes could change before it reads
    // them, past what our lease covers.
    let pref = match cfg.engine {
        Preference::Prefer(k) if peer.is_local() && k.sends_by_reference() && !lend => {
            Preference::Auto
        }
        p => p,
    };
    let plan = plan_for(peer, entry.size, pref, lease.is_some(), hold);
    let mode = if lend && peer.is_local() && plan.engines.iter().any(|k| k.sends_by_reference()) {
        SendMode::ByReference
    } else {
        SendMode::Copied
    };
    if features & FEAT_BYREF != 0 {
        conn.write_all(&[mode as u8])?;
    }
    let mut t = Transfer::with_forced(plan, Forced::from_env());
    t.caller_holds_lease(lease.is_some());
    let sent = send_range(
        &mut t,
        &file,
        conn,
        offset,
        entry.size,
        cfg.limit_rate,
        progress,
    );
    if let Err(source) = sent {
        // A receiver that failed on its side says why before it closes.
        if let Some(why) = refusal_after_failure(conn) {
            if lease.is_some() {
                until_closed(conn, LINGER);
            }
            return Err(SendError::Refused { path: shown, why });
        }
        if lease.is_some() {
            // Bytes already sent may still be unread references to the file's
            // pages: hold the lease until the receiver has closed.
            until_closed(conn, LINGER);
        }
        return Err(SendError::Transfer {
            path: shown,
            source,
        });
    }
    summary.bytes += t.report().bytes;
    let used = t.report().short();
    if !used.is_empty() && !summary.engines.contains(&used) {
        summary.engines.push(used);
    }
    if features & FEAT_VERIFY != 0 {
        conn.write_all(&proto::hash_file(&file)?)?;
    }
    if mode == SendMode::ByReference {
        // The receiver holds every byte now (not yet published). A lease that is
        // still ours was never broken, so no one wrote or truncated the file since
        // before the first byte left: the bytes it read are the file's.
        expect_ok(conn, &entry.path)?;
        let kept = lease.as_ref().is_some_and(|l| !l.breaking());
        let verdict = if kept {
            Verdict::Keep
        } else {
            Verdict::Discard
        };
        conn.write_all(&[verdict as u8])?;
        if verdict == Verdict::Discard {
            expect_ok(conn, &entry.path)?;
            return Ok(Outcome::Discarded);
        }
    }
    // The receiver's word means it has read every byte: only now may the file
    // change.
    expect_ok(conn, &entry.path)?;
    drop(lease);
    progress.file_done();
    summary.files += 1;
    Ok(Outcome::Done)
}

/// Whether `len` bytes go by reference to a local `peer` that can confirm them:
/// when `--engine` names an engine that sends by reference, or with `auto` when the
/// calibration profile's line for the peer's path (`tcp@lo`, `tcp@veth`) puts one
/// first. The built-in `auto` copies: measured on this project's 2-core VM (1 GiB
/// over loopback and across a veth pair, `bench/sendrecv.sh` and interleaved A/B
/// runs), lending saved the sender up to 0.1 CPU-s/GB and cost the receiver up to
/// 0.2 more: never less CPU in total than copying, at the same wall time (the
/// receiver's fsync bounds it).
fn lend_locally(peer: &PeerClass, len: u64, pref: Preference) -> bool {
    match pref {
        Preference::Prefer(k) => k.sends_by_reference(),
        _ => Profile::cached_default()
            .and_then(|p| {
                p.order_on(
                    Some(zcopy::FdKind::File { len }),
                    zcopy::FdKind::TcpSocket,
                    peer.path(),
                    Some(len),
                )
            })
            .and_then(|order| order.first().copied())
            .is_some_and(|k| k.sends_by_reference()),
    }
}

/// Longest wait for a receiver to close after a failed file, while the lease is held.
const LINGER: Duration = Duration::from_secs(30);

/// The plan for sending `len` bytes of a file to `peer`: [`Plan::for_peer`] without
/// counting on the lease (a lease the kernel breaks after `lease-break-time` would
/// expose bytes sent by reference to a local peer), so copying engines to a local
/// peer; `pref` first, unless it sends by reference to a local peer and there is no
/// lease at all.
fn plan_for(peer: &PeerClass, len: u64, pref: Preference, leased: bool, hold: LeaseHold) -> Plan {
    let profile = Profile::cached_default();
    match pref {
        Preference::Prefer(k) if peer.is_local() && k.sends_by_reference() && !leased => {
            tracing::warn!("no read lease on the source: copying instead of {k}");
            Plan::for_peer(peer, len, Preference::Auto, UntilSent, profile)
        }
        _ => Plan::for_peer(peer, len, pref, hold, profile),
    }
}

/// After sending failed: the receiver's refusal, if it sent one before closing.
fn refusal_after_failure(conn: &mut TcpStream) -> Option<String> {
    conn.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    match Reply::read(conn) {
        Ok(reply) if !reply.ok => Some(proto::printable(&reply.message)),
        _ => None,
    }
}

/// Shuts our side and reads until the peer closes (or `limit` passes), discarding
/// what it says: its close proves it has read everything we sent.
fn until_closed(conn: &TcpStream, limit: Duration) {
    use std::io::Read;
    let _ = conn.shutdown(std::net::Shutdown::Write);
    let deadline = Instant::now() + limit;
    let mut buf = [0u8; 512];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || conn.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match (&mut &*conn).read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// Sends bytes `from..to` of `file`, at most `rate` bytes per second.
fn send_range(
    t: &mut Transfer,
    file: &File,
    conn: &TcpStream,
    from: u64,
    to: u64,
    rate: Option<u64>,
    progress: &dyn Progress,
) -> Result<(), zcopy::TransferError> {
    let Some(rate) = rate.filter(|&r| r > 0) else {
        t.run(
            file.as_fd(),
            Some(from),
            conn.as_fd(),
            Some(to - from),
            &mut |done| progress.file_progress(from + done),
        )?;
        return Ok(());
    };
    let chunk = (rate / 20).max(16 * 1024);
    let started = Instant::now();
    let mut at = from;
    while at < to {
        let n = chunk.min(to - at);
        t.run(file.as_fd(), Some(at), conn.as_fd(), Some(n), &mut |_| {})?;
        at += n;
        progress.file_progress(at);
        let due = Duration::from_secs_f64((at - from) as f64 / rate as f64);
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            std::thread::sleep(wait);
        }
    }
    Ok(())
}
