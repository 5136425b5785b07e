//! Memory the connection table lives in: either private to the process or
//! a file mapped shared (under `/dev/shm`), which outlives the process so a
//! restarted or re-executed daemon finds every connection again.
//!
//! The table is made of arrays of atomics only, so any bytes a mapping
//! holds are valid values of them: a crash mid-write leaves odd sequence
//! numbers, never undefined behaviour. [`Region`] hands out such an array
//! as a slice and keeps its mapping alive; the file's exclusive lock
//! (`flock`) keeps a second live daemon from mapping it at the same time.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::sync::Arc;

/// Types for which every bit pattern, all zeroes included, is a valid
/// value, that own nothing (no pointers, no `Drop`) and that are safe to
/// share between threads and processes through shared memory.
///
/// # Safety
///
/// Implement only for `repr(C)` or primitive types made of atomics of
/// plain integers.
pub unsafe trait Plain: Sync + Send {}

// SAFETY: an AtomicU32 is a u32 in memory: every bit pattern is valid.
unsafe impl Plain for AtomicU32 {}
// SAFETY: an AtomicU64 is a u64 in memory: every bit pattern is valid.
unsafe impl Plain for AtomicU64 {}
// SAFETY: `Entry` is `repr(C)` and made of AtomicU32 and AtomicU64 fields
// only (checked by its size test), so every bit pattern is valid.
// Its addresses are an `Addr::Atom`, which is `Plain` itself (an atomic
// or an array of them).
unsafe impl<A: crate::flow::Addr> Plain for crate::conn::table::Entry<A> {}
// SAFETY: an array of `Plain` values has no padding and every bit pattern
// of it is valid.
unsafe impl<T: Plain, const N: usize> Plain for [T; N] {}

/// A memory mapping, unmapped when the last [`Region`] of it goes.
#[derive(Debug)]
pub struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
    /// The mapped file, locked while mapped (none: process memory).
    _file: Option<File>,
}

// SAFETY: the mapping is plain memory; what is stored in it is only ever
// accessed through `Region`s of `Plain` (atomic) types, which are Sync.
unsafe impl Send for Mapping {}
// SAFETY: as for Send: shared access goes through atomics only.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// `len` bytes of zeroed memory private to the process, with huge
    /// pages advised (as for any large table).
    pub fn anonymous(len: usize) -> io::Result<Arc<Mapping>> {
        Self::map(None, len, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS)
    }

    /// The whole of `file` (`len` bytes: the caller sized it) mapped
    /// shared, so that what is written survives the process. The file
    /// must be locked by the caller ([`lock_exclusive`]) and stays open,
    /// and so locked, as long as the mapping.
    pub fn shared_file(file: File, len: usize) -> io::Result<Arc<Mapping>> {
        Self::map(Some(file), len, libc::MAP_SHARED)
    }

    fn map(file: Option<File>, len: usize, flags: i32) -> io::Result<Arc<Mapping>> {
        if len == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty mapping"));
        }
        let fd = file.as_ref().map_or(-1, |f| f.as_raw_fd());
        // SAFETY: a fresh mapping chosen by the kernel (null hint) overlaps
        // no existing Rust object; the fd, if any, is open for the call.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                fd,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: madvise only changes how the kernel backs the pages of the
        // mapping just made; it never changes their contents. Best effort.
        unsafe { libc::madvise(p, len, libc::MADV_HUGEPAGE) };
        let ptr = NonNull::new(p.cast::<u8>()).ok_or_else(io::Error::last_os_error)?;
        Ok(Arc::new(Mapping {
            ptr,
            len,
            _file: file,
        }))
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the mapping is empty (never: mappings have a length).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping was made by `map` with this address and length
        // and every Region of it is gone (they hold the Arc).
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// An array of `T` inside a mapping, seen as a slice.
pub struct Region<T: Plain> {
    ptr: NonNull<T>,
    len: usize,
    _map: Arc<Mapping>,
}

impl<T: Plain> std::fmt::Debug for Region<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Region").field("len", &self.len).finish()
    }
}

impl<T: Plain> Region<T> {
    /// `len` values of `T` at byte `offset` of `map`, or an error if they
    /// do not fit or are not aligned for `T`.
    pub fn new(map: &Arc<Mapping>, offset: usize, len: usize) -> io::Result<Region<T>> {
        let bytes = len
            .checked_mul(std::mem::size_of::<T>())
            .and_then(|b| b.checked_add(offset));
        let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidInput, what.to_string());
        match bytes {
            Some(end) if end <= map.len => {}
            _ => return Err(bad("region out of the mapping")),
        }
        if !offset.is_multiple_of(std::mem::align_of::<T>()) {
            return Err(bad("misaligned region"));
        }
        // SAFETY: offset + len * size_of::<T>() <= map.len (checked above),
        // so the pointer stays inside the mapping.
        let p = unsafe { map.ptr.as_ptr().add(offset) }.cast::<T>();
        let ptr = NonNull::new(p).ok_or_else(|| bad("null region"))?;
        Ok(Region {
            ptr,
            len,
            _map: map.clone(),
        })
    }
}

impl<T: Plain> std::ops::Deref for Region<T> {
    type Target = [T];

    #[inline(always)]
    fn deref(&self) -> &[T] {
        // SAFETY: the range is inside the mapping, aligned (checked in
        // `new`), and mapped as long as `self` holds the Arc; every bit
        // pattern is a valid `T` (`Plain`), and `T`'s atomics make shared
        // access from other threads (and processes) sound.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

// SAFETY: a Region only gives shared access to `Plain` values, which are
// Send and Sync; the mapping it holds is too.
unsafe impl<T: Plain> Send for Region<T> {}
// SAFETY: as for Send.
unsafe impl<T: Plain> Sync for Region<T> {}

/// Take an exclusive lock on `file` without waiting (`flock`), held until
/// the file is closed (so also released by a crash). `Ok(false)`: another
/// process holds it.
pub fn lock_exclusive(file: &File) -> io::Result<bool> {
    // SAFETY: flock(2) on an open descriptor borrowed for the call.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(e)
    }
}

/// Open (creating with mode 0600 if needed) the file at `path` for
/// reading and writing.
pub fn open_rw(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
}
