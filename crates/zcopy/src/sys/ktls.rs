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
    fn ulp_on_a_file_is_refused() {
        let f = tempfile::tempfile().unwrap();
        assert!(set_tcp_ulp(&f, "tls").is_err());
    }
}
