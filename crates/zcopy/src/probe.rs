//! Does an engine really work here? Found out by doing: each probe moves a few KiB
//! through the engine over a real fd pair and checks every byte.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{Mode, OFlags};

use crate::engine::{Engine, EngineKind, Src};
use crate::error::ProbeError;
use crate::stats::Stats;

const PROBE_LEN: usize = 3 * 4096 + 13;

fn probe_bytes() -> Vec<u8> {
    (0..PROBE_LEN).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// An unnamed temporary file (O_TMPFILE) in the temp dir holding `data`.
fn temp_file(data: &[u8]) -> std::io::Result<std::fs::File> {
    let dir = std::env::temp_dir();
    let fd = rustix::fs::open(
        &dir,
        OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )?;
    let mut f = std::fs::File::from(fd);
    f.write_all(data)?;
    Ok(f)
}

/// Steps `engine` until `len` bytes moved or an error.
fn pump(
    engine: &mut dyn Engine,
    src: BorrowedFd<'_>,
    file: bool,
    sink: BorrowedFd<'_>,
    len: usize,
) -> Result<(), ProbeError> {
    let mut stats = Stats::default();
    let mut done = 0;
    while done < len {
        let src = Src::Fd {
            fd: src,
            offset: file.then_some(done as u64),
        };
        match engine.step(src, sink, len - done, &mut stats) {
            Ok(0) => {
                return Err(ProbeError::ShortSource {
                    expected: len as u64,
                    got: done as u64,
                });
            }
            Ok(n) => done += n,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn read_exact_from(mut r: impl Read, len: usize) -> Result<Vec<u8>, ProbeError> {
    let mut got = vec![0; len];
    r.read_exact(&mut got)?;
    Ok(got)
}

fn check(got: &[u8], want: &[u8]) -> Result<(), ProbeError> {
    if got == want {
        Ok(())
    } else {
        Err(ProbeError::Mismatch)
    }
}

fn tcp_pair() -> std::io::Result<(TcpStream, TcpStream)> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    let a = TcpStream::connect(l.local_addr()?)?;
    let (b, _) = l.accept()?;
    Ok((a, b))
}

/// Moves a few KiB through `kind` on this machine and checks every byte: `Ok(pair)` names
/// the fd pair that worked; `Err` says why the engine can't run here.
///
/// ```
/// use zcopy::EngineKind;
///
/// for kind in EngineKind::ALL {
///     match zcopy::probe::verify(kind) {
///         Ok(pair) => println!("{kind}: works ({pair})"),
///         Err(why) => println!("{kind}: not here: {why}"),
///     }
/// }
/// assert!(zcopy::probe::verify(EngineKind::ReadWrite).is_ok());
/// ```
pub fn verify(kind: EngineKind) -> Result<&'static str, ProbeError> {
    kind.probe()?;
    let data = probe_bytes();
    let io = ProbeError::Io;
    let mut engine = kind.create();
    match kind {
        EngineKind::CopyRange => {
            let src = temp_file(&data).map_err(io)?;
            let dst = temp_file(&[]).map_err(io)?;
            pump(engine.as_mut(), src.as_fd(), true, dst.as_fd(), data.len())?;
            let mut got = vec![0; data.len()];
            rustix::io::pread(&dst, &mut got, 0).map_err(std::io::Error::from)?;
            check(&got, &data)?;
            Ok("file → file")
        }
        EngineKind::MsgZerocopy | EngineKind::Uring => {
            let src = temp_file(&data).map_err(io)?;
            let (a, b) = tcp_pair()?;
            pump(engine.as_mut(), src.as_fd(), true, a.as_fd(), data.len())?;
            check(&read_exact_from(b, data.len())?, &data)?;
            Ok("file → tcp")
        }
        EngineKind::Vmsplice => {
            let (r, w) = std::io::pipe().map_err(io)?;
            let mut stats = Stats::default();
            let mut done = 0;
            while done < data.len() {
                done += engine
                    .step(
                        Src::Mem(&data[done..]),
                        w.as_fd(),
                        data.len() - done,
                        &mut stats,
                    )
                    .map_err(io)?;
            }
            drop(w);
            check(&read_exact_from(r, data.len())?, &data)?;
            Ok("memory → pipe")
        }
        EngineKind::Tee => {
            let (src_r, mut src_w) = std::io::pipe().map_err(io)?;
            let (copy_r, copy_w) = std::io::pipe().map_err(io)?;
            let (sink_r, sink_w) = std::io::pipe().map_err(io)?;
            src_w.write_all(&data).map_err(io)?;
            drop(src_w);
            let mut engine = crate::engine::Tee::new(vec![OwnedFd::from(copy_w)]);
            pump(
                &mut engine,
                src_r.as_fd(),
                false,
                sink_w.as_fd(),
                data.len(),
            )?;
            drop(engine);
            drop(sink_w);
            check(&read_exact_from(sink_r, data.len())?, &data)?;
            check(&read_exact_from(copy_r, data.len())?, &data)?;
            Ok("pipe → pipe + copy")
        }
        _ => {
            let src = temp_file(&data).map_err(io)?;
            let (r, w) = std::io::pipe().map_err(io)?;
            pump(engine.as_mut(), src.as_fd(), true, w.as_fd(), data.len())?;
            drop(w);
            check(&read_exact_from(r, data.len())?, &data)?;
            Ok("file → pipe")
        }
    }
}
