//! Kernel TLS socket options rustix lacks: `TCP_ULP` and `SOL_TLS` —
//! <https://docs.kernel.org/networking/tls.html>.

use std::io;
use std::os::fd::{AsFd, AsRawFd};

/// Which half of the connection a key installs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Half {
    /// Records this socket sends (`TLS_TX`).
    Tx,
    /// Records this socket receives (`TLS_RX`).
    Rx,
}

impl Half {
    fn optname(self) -> libc::c_int {
        match self {
            Half::Tx => libc::TLS_TX,
            Half::Rx => libc::TLS_RX,
        }
    }
}

/// One of the kernel's `tls12_crypto_info_*` structs (the name covers TLS 1.3 too).
#[derive(Clone, Copy)]
pub enum CryptoInfo {
    /// `struct tls12_crypto_info_aes_gcm_128`.
    AesGcm128(libc::tls12_crypto_info_aes_gcm_128),
    /// `struct tls12_crypto_info_aes_gcm_256`.
    AesGcm256(libc::tls12_crypto_info_aes_gcm_256),
    /// `struct tls12_crypto_info_chacha20_poly1305`.
    Chacha20Poly1305(libc::tls12_crypto_info_chacha20_poly1305),
}

impl std::fmt::Debug for CryptoInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Key material is never printed.
        let name = match self {
            CryptoInfo::AesGcm128(_) => "AesGcm128",
            CryptoInfo::AesGcm256(_) => "AesGcm256",
            CryptoInfo::Chacha20Poly1305(_) => "Chacha20Poly1305",
        };
        f.debug_tuple(name).finish_non_exhaustive()
    }
}

/// `setsockopt(fd, IPPROTO_TCP, TCP_ULP, name)`: attach an upper-layer protocol
/// ("tls") to a connected TCP socket — <https://man7.org/linux/man-pages/man7/tcp.7.html>.
pub fn set_tcp_ulp<Fd: AsFd>(fd: Fd, name: &str) -> io::Result<()> {
    let len = name.len() as libc::socklen_t;
    // SAFETY: the kernel reads `len` bytes from `name`, which is a live &str of
    // exactly that length; the fd is borrowed for the call.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_fd().as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_ULP,
            name.as_ptr().cast(),
            len,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `setsockopt(fd, SOL_TLS, TLS_TX|TLS_RX, &crypto_info)`: hand one direction's key,
/// IV and record sequence to the kernel (the socket must have the "tls" ULP).
pub fn set_crypto_info<Fd: AsFd>(fd: Fd, half: Half, info: &CryptoInfo) -> io::Result<()> {
    let (ptr, len): (*const libc::c_void, usize) = match info {
        CryptoInfo::AesGcm128(i) => ((i as *const _ as *const libc::c_void), size_of_val(i)),
        CryptoInfo::AesGcm256(i) => ((i as *const _ as *const libc::c_void), size_of_val(i)),
        CryptoInfo::Chacha20Poly1305(i) => ((i as *const _ as *const libc::c_void), size_of_val(i)),
    };
    // SAFETY: `ptr` points to a live, fully initialised #[repr(C)] struct of `len`
    // bytes (libc's copy of the kernel's uapi layout) that outlives the call; the
    // kernel only reads it.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_fd().as_raw_fd(),
            libc::SOL_TLS,
            half.optname(),
            ptr,
            len as libc::socklen_t,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Control-message space for one byte of data, 8-aligned (CMSG_SPACE(1) is 24
/// on 64-bit Linux, 16 on 32-bit).
type CmsgBuf = [u64; 4];

/// `recvmsg` on a kTLS socket: the record's plaintext into `buf`, and its TLS
/// content type when the kernel says it (a `TLS_GET_RECORD_TYPE` cmsg; it does so
/// for every record that is not application data) —
/// <https://docs.kernel.org/networking/tls.html#receiving-tls-control-messages>.
pub fn recv_record<Fd: AsFd>(fd: Fd, buf: &mut [u8]) -> io::Result<(usize, Option<u8>)> {
    let mut cbuf: CmsgBuf = [0; 4];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain data (pointers and integers); all-zero is valid.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = size_of_val(&cbuf) as _;
    // SAFETY: `msg` points to one iovec over `buf` and to `cbuf`, both live and
    // writable for their stated lengths during the call.
    let n = unsafe { libc::recvmsg(fd.as_fd().as_raw_fd(), &mut msg, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut record_type = None;
    // SAFETY: `msg` was filled by recvmsg; the CMSG_* walk stays within
    // msg_control/msg_controllen, as the kernel set them.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_TLS && (*c).cmsg_type == libc::TLS_GET_RECORD_TYPE {
                record_type = Some(*libc::CMSG_DATA(c));
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok((n as usize, record_type))
}

/// `sendmsg` of one record of TLS content type `record_type` (a
/// `TLS_SET_RECORD_TYPE` cmsg), e.g. an alert (21) on a kTLS socket.
pub fn send_record<Fd: AsFd>(fd: Fd, record_type: u8, data: &[u8]) -> io::Result<usize> {
    let mut cbuf: CmsgBuf = [0; 4];
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    // SAFETY: msghdr is plain data (pointers and integers); all-zero is valid.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    // SAFETY: CMSG_SPACE only computes a size.
    msg.msg_controllen = unsafe { libc::CMSG_SPACE(1) } as _;
    // SAFETY: msg_control points to `cbuf`, which is at least CMSG_SPACE(1) bytes
    // and 8-aligned, so the first header and its one data byte lie inside it.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::SOL_TLS;
        (*c).cmsg_type = libc::TLS_SET_RECORD_TYPE;
        (*c).cmsg_len = libc::CMSG_LEN(1) as _;
        *libc::CMSG_DATA(c) = record_type;
    }
    // SAFETY: `msg` points to an iovec over `data` and to `cbuf`, both live for the
    // call; the kernel only reads them.
    let n = unsafe { libc::sendmsg(fd.as_fd().as_raw_fd(), &msg, 0) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn struct_sizes_match_the_kernel_uapi() {
        // linux/tls.h: 4-byte header, then iv, key, salt, rec_seq, no padding.
        assert_eq!(
            size_of::<libc::tls12_crypto_info_aes_gcm_128>(),
            4 + 8 + 16 + 4 + 8
        );
        assert_eq!(
            size_of::<libc::tls12_crypto_info_aes_gcm_256>(),
            4 + 8 + 32 + 4 + 8
        );
        assert_eq!(
            size_of::<libc::tls12_crypto_info_chacha20_poly1305>(),
            4 + 12 + 32 + 8
        );
    }

    #[test]
    fn records_on_plain_tcp_are_bytes_without_a_type() {
        use std::io::Read;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let a = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut b, _) = l.accept().unwrap();
        // Without the ULP the kernel ignores the SOL_TLS cmsg and sends the bytes.
        assert_eq!(send_record(&a, 21, &[1, 0]).unwrap(), 2);
        let mut got = [0u8; 2];
        b.read_exact(&mut got).unwrap();
        assert_eq!(got, [1, 0]);
        std::io::Write::write_all(&mut &b, b"hello").unwrap();
        let mut buf = [0u8; 16];
        let (n, t) = recv_record(&a, &mut buf).unwrap();
        assert_eq!((&buf[..n], t), (&b"hello"[..], None));
    }

    #[test]
    fn ulp_on_a_file_is_refused() {
        let f = tempfile::tempfile().unwrap();
        assert!(set_tcp_ulp(&f, "tls").is_err());
    }
}
