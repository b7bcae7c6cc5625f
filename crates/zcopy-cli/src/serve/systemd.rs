//! Running under systemd without linking it: listening sockets passed by socket
//! activation (`LISTEN_FDS`), and state changes sent to `NOTIFY_SOCKET` (sd_notify(3):
//! one datagram of `KEY=VALUE` lines). Written here rather than with a crate: the
//! protocol is an environment variable and one datagram.

use std::net::TcpListener;
use std::os::unix::net::UnixDatagram;

/// The listening TCP sockets systemd passed (fds 3 on); empty when not socket-activated.
pub fn listeners() -> Result<Vec<TcpListener>, String> {
    let fds = zcopy::activation::take_listen_fds().map_err(|e| e.to_string())?;
    fds.into_iter()
        .enumerate()
        .map(|(i, fd)| {
            let l = TcpListener::from(fd);
            match l.local_addr() {
                Ok(_) => Ok(l),
                Err(e) => Err(format!(
                    "inherited fd {}: not a TCP socket ({e})",
                    zcopy::activation::FIRST + i as i32
                )),
            }
        })
        .collect()
}

/// Tells the service manager `state` (e.g. `READY=1`), if it asked to be told. A path
/// starting with `@` is an abstract socket. Failures are logged, never fatal.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    if let Err(e) = send(&path, state) {
        tracing::warn!("sd_notify {state:?} to {}: {e}", path.to_string_lossy());
    }
}

fn send(path: &std::ffi::OsStr, state: &str) -> std::io::Result<()> {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::net::SocketAddr;
    let bytes = path.as_bytes();
    let addr = match bytes.strip_prefix(b"@") {
        Some(name) => SocketAddr::from_abstract_name(name)?,
        None => SocketAddr::from_pathname(std::path::Path::new(path))?,
    };
    let sock = UnixDatagram::unbound()?;
    sock.send_to_addr(state.as_bytes(), &addr)?;
    Ok(())
}
