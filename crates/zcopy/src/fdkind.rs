//! What an fd is, from one `fstat` (plus `SO_TYPE`/`SO_DOMAIN` for sockets).

use std::io;
use std::os::fd::AsFd;

use rustix::fs::{FileType, fstat};
use rustix::net::{AddressFamily, SocketType};

/// The kind of object an fd refers to, as far as choosing an engine cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FdKind {
    /// A regular file, with its length at the time of the fstat.
    File {
        /// Length in bytes from `st_size`.
        len: u64,
    },
    /// A pipe or FIFO.
    Pipe,
    /// A TCP stream socket (IPv4 or IPv6).
    TcpSocket,
    /// A UNIX-domain stream socket.
    UnixSocket,
    /// Any other socket (datagram, netlink, ...).
    OtherSocket,
    /// A terminal.
    Tty,
    /// A character device that is not a terminal (e.g. `/dev/null`).
    CharDevice,
    /// A block device.
    BlockDevice,
    /// A directory.
    Directory,
}

impl FdKind {
    /// Classifies `fd` with one `fstat` (and `getsockopt` for sockets).
    pub fn of<Fd: AsFd>(fd: Fd) -> io::Result<FdKind> {
        let fd = fd.as_fd();
        let st = fstat(fd)?;
        Ok(match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile => FdKind::File {
                len: st.st_size as u64,
            },
            FileType::Fifo => FdKind::Pipe,
            FileType::Socket => {
                let ty = rustix::net::sockopt::socket_type(fd)?;
                let domain = rustix::net::sockopt::socket_domain(fd)?;
                match (domain, ty) {
                    (AddressFamily::INET | AddressFamily::INET6, SocketType::STREAM) => {
                        FdKind::TcpSocket
                    }
                    (AddressFamily::UNIX, SocketType::STREAM) => FdKind::UnixSocket,
                    _ => FdKind::OtherSocket,
                }
            }
            FileType::CharacterDevice => {
                if rustix::termios::isatty(fd) {
                    FdKind::Tty
                } else {
                    FdKind::CharDevice
                }
            }
            FileType::BlockDevice => FdKind::BlockDevice,
            FileType::Directory => FdKind::Directory,
            _ => FdKind::CharDevice,
        })
    }

    /// True for a regular file.
    pub fn is_file(self) -> bool {
        matches!(self, FdKind::File { .. })
    }

    /// True for a stream socket (TCP or UNIX).
    pub fn is_stream_socket(self) -> bool {
        matches!(self, FdKind::TcpSocket | FdKind::UnixSocket)
    }

    /// The file length, for regular files.
    pub fn file_len(self) -> Option<u64> {
        match self {
            FdKind::File { len } => Some(len),
            _ => None,
        }
    }

    /// A short lower-case name for tables and logs.
    pub fn name(self) -> &'static str {
        match self {
            FdKind::File { .. } => "file",
            FdKind::Pipe => "pipe",
            FdKind::TcpSocket => "tcp",
            FdKind::UnixSocket => "unix",
            FdKind::OtherSocket => "socket",
            FdKind::Tty => "tty",
            FdKind::CharDevice => "chardev",
            FdKind::BlockDevice => "blockdev",
            FdKind::Directory => "dir",
        }
    }
}
