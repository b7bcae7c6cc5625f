//! Memory the engines can't describe with safe Rust: read-only file mappings that
//! another process may truncate under us, and buffers aligned for `O_DIRECT`.
//!
//! A mapped file page beyond a (new) end of file raises SIGBUS when user code
//! touches it. So [`Mapping`] never hands out a slice: its bytes only ever go to
//! the kernel, through [`Mapping::write_to`], where such a page makes `write(2)`
//! return a short count or `EFAULT` instead of a signal.

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::ffi::c_void;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr::NonNull;

use rustix::mm::{MapFlags, ProtFlags};

/// The system page size.
pub fn page_size() -> usize {
    rustix::param::page_size()
}

/// Gives the allocator's free pages back to the system: `malloc_trim(0)` —
/// <https://man7.org/linux/man-pages/man3/malloc_trim.3.html> (glibc; elsewhere
/// nothing). `free` only shrinks an arena from its top, so the free pages between
/// chunks still in use (a burst's buffers, freed around the connections it
/// opened) stay resident until this. It walks every arena's free chunks, each
/// under its lock: cheap enough once a second a worker (the io_uring driver's
/// release tick), not for every turn.
#[cfg(feature = "server")]
pub fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only touches the allocator's own state (each arena under
    // its lock) and pages of free chunks, which no live allocation uses.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// A read-only shared mapping of part of a file; unmapped on drop.
#[derive(Debug)]
pub struct Mapping {
    ptr: NonNull<c_void>,
    len: usize,
}

// SAFETY: a mapping belongs to the process, not to a thread; `Mapping` only holds
// its address, never references into it, so moving it between threads is sound.
unsafe impl Send for Mapping {}

impl Mapping {
    /// `mmap(NULL, len, PROT_READ, MAP_SHARED, fd, offset)` —
    /// <https://man7.org/linux/man-pages/man2/mmap.2.html>. `offset` must be a
    /// multiple of [`page_size`] and `len` non-zero.
    pub fn map(fd: BorrowedFd<'_>, offset: u64, len: usize) -> io::Result<Mapping> {
        if len == 0 || !offset.is_multiple_of(page_size() as u64) {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        // SAFETY: a fresh mapping at an address the kernel chooses overlaps no
        // existing memory; it is read-only and we never create references into it.
        let ptr = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ,
                MapFlags::SHARED,
                fd,
                offset,
            )?
        };
        let ptr = NonNull::new(ptr).ok_or_else(|| io::Error::from_raw_os_error(libc::EFAULT))?;
        let map = Mapping { ptr, len };
        // `madvise(MADV_SEQUENTIAL)`: read ahead aggressively; only a hint.
        // SAFETY: the range is exactly the mapping we own.
        let _ = unsafe {
            rustix::mm::madvise(map.ptr.as_ptr(), map.len, rustix::mm::Advice::Sequential)
        };
        Ok(map)
    }

    /// Length of the mapping in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: mappings are never empty.
    #[cfg_attr(not(feature = "server"), allow(dead_code))]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Where the mapping starts, for the kernel to read from (never dereferenced in
    /// user space).
    #[cfg_attr(not(feature = "server"), allow(dead_code))]
    pub(crate) fn as_ptr(&self) -> *const u8 {
        self.ptr.as_ptr().cast::<u8>()
    }

    /// `mincore(2)` — <https://man7.org/linux/man-pages/man2/mincore.2.html>: whether
    /// every page of mapped bytes `[start, start + len)` is in memory now.
    ///
    /// # Panics
    /// If the range is not inside the mapping.
    #[cfg_attr(not(feature = "server"), allow(dead_code))]
    pub fn resident(&self, start: usize, len: usize) -> io::Result<bool> {
        assert!(
            start <= self.len && len <= self.len - start,
            "range outside the mapping"
        );
        if len == 0 {
            return Ok(true);
        }
        let ps = page_size();
        let first = start / ps * ps;
        let bytes = start + len - first;
        let mut vec = vec![0u8; bytes.div_ceil(ps)];
        // SAFETY: `[first, first + bytes)` lies inside our live mapping (the mapping
        // is page-aligned and `first` rounds down within it); mincore writes one byte
        // per page of that range into `vec`, which has exactly that many.
        let rc = unsafe {
            libc::mincore(
                self.ptr.as_ptr().cast::<u8>().add(first).cast::<c_void>(),
                bytes,
                vec.as_mut_ptr(),
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(vec.iter().all(|&b| b & 1 != 0))
    }

    /// `write(sink, map + start, len)` — <https://man7.org/linux/man-pages/man2/write.2.html>:
    /// writes mapped bytes `[start, start + len)` straight from the mapping. If
    /// the file was truncated under the mapping, the kernel returns a short count
    /// (bytes before the lost page) or `EFAULT`; no signal is raised.
    ///
    /// # Panics
    /// If the range is not inside the mapping.
    pub fn write_to(&self, sink: BorrowedFd<'_>, start: usize, len: usize) -> io::Result<usize> {
        assert!(
            start <= self.len && len <= self.len - start,
            "range outside the mapping"
        );
        // SAFETY: `start + len <= self.len`, so the pointer range lies inside our
        // live mapping. Only the kernel reads it (copy_from_user), which turns a
        // page lost to truncation into EFAULT/short count rather than SIGBUS.
        let rc = unsafe {
            libc::write(
                sink.as_raw_fd(),
                self.ptr.as_ptr().cast::<u8>().add(start).cast::<c_void>(),
                len,
            )
        };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(rc as usize)
        }
    }
}

// SAFETY: `&Mapping` hands out no reference into the mapped bytes (only the
// kernel reads them, in `write_to`/`send_parts`) and nothing behind `&self`
// changes, so sharing one between threads is sound.
unsafe impl Sync for Mapping {}

/// One piece of a gathered send ([`send_parts`]).
#[cfg(feature = "server")]
#[derive(Clone, Copy, Debug)]
pub enum Part<'a> {
    /// Bytes in memory.
    Mem(&'a [u8]),
    /// Mapped bytes `[start, start + len)` of a mapping.
    Map(&'a Mapping, usize, usize),
}

/// Most pieces one [`send_parts`] call takes (the kernel's `UIO_MAXIOV` is 1024).
#[cfg(feature = "server")]
pub const MAX_PARTS: usize = 128;

/// `sendmsg(sock, {iov = parts}, MSG_NOSIGNAL | MSG_DONTWAIT [| MSG_MORE])` —
/// <https://man7.org/linux/man-pages/man2/sendmsg.2.html>: sends the pieces in
/// order, in one call, at most [`MAX_PARTS`] of them (the rest are left for the
/// next call); `more`: more data follows at once (`MSG_MORE`). Mapped bytes are copied by the kernel at send time; a page lost to
/// a truncation of the file makes the call return a short count (the bytes before
/// it) or `EFAULT`, never a signal.
///
/// # Panics
/// If a mapped range is not inside its mapping.
#[cfg(feature = "server")]
pub fn send_parts(sock: BorrowedFd<'_>, parts: &[Part<'_>], more: bool) -> io::Result<usize> {
    let mut iov = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; MAX_PARTS];
    let mut used = 0;
    for p in parts.iter().take(MAX_PARTS) {
        let (base, len) = match *p {
            Part::Mem(b) => (b.as_ptr(), b.len()),
            Part::Map(m, start, len) => {
                assert!(
                    start <= m.len && len <= m.len - start,
                    "range outside the mapping"
                );
                // SAFETY: `start + len <= m.len`: the pointer stays inside the
                // live mapping (borrowed for the call); only the kernel reads it.
                (unsafe { m.as_ptr().add(start) }, len)
            }
        };
        if len == 0 {
            continue;
        }
        iov[used] = libc::iovec {
            iov_base: base.cast_mut().cast::<c_void>(),
            iov_len: len,
        };
        used += 1;
    }
    if used == 0 {
        return Ok(0);
    }
    // SAFETY: an all-zero msghdr is valid (no name, no control data).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov.as_mut_ptr();
    msg.msg_iovlen = used;
    let more = if more { libc::MSG_MORE } else { 0 };
    // SAFETY: `msg` points at `used` iovecs, each describing memory that stays
    // borrowed (slices, live mappings) for the call; the kernel only reads them
    // (a mapped page lost to truncation gives EFAULT or a short count).
    let rc = unsafe {
        libc::sendmsg(
            sock.as_raw_fd(),
            &msg,
            libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT | more,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc as usize)
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly what mmap returned and nothing refers
        // into the mapping. `munmap(2)`.
        let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr(), self.len) };
    }
}

/// A zeroed heap buffer whose start is aligned (e.g. to 4096 bytes for `O_DIRECT`).
#[derive(Debug)]
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    layout: Layout,
}

// SAFETY: `AlignedBuf` owns its allocation exclusively, like a `Vec<u8>`.
unsafe impl Send for AlignedBuf {}

impl AlignedBuf {
    /// A buffer of `len` bytes (at least 1) aligned to `align` (a power of two).
    pub fn new(len: usize, align: usize) -> AlignedBuf {
        let layout = Layout::from_size_align(len.max(1), align).expect("valid buffer layout");
        // SAFETY: the layout has non-zero size.
        let ptr = unsafe { alloc_zeroed(layout) };
        let ptr = NonNull::new(ptr).unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
        AlignedBuf { ptr, layout }
    }
}

impl std::ops::Deref for AlignedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: the allocation is `layout.size()` initialised (zeroed) bytes that
        // we own; the borrow of `self` keeps it alive and unaliased by `&mut`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.layout.size()) }
    }
}

impl std::ops::DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`, and `&mut self` makes this the only reference.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.layout.size()) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this very layout, freed once.
        unsafe { dealloc(self.ptr.as_ptr(), self.layout) }
    }
}
