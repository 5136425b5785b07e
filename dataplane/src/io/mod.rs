//! Everything that touches the kernel: AF_XDP sockets (`xsk`), the XDP
//! steering program and its maps (`xdp`), netlink (`netlink`), the memory
//! the connection table lives in, which can outlive the process (`shm`), and the
//! in-memory port used by tests and benches (`mem`). This is the only
//! module with `unsafe` code; each block says why it is sound. The raw
//! sockets and TAP devices (`rawsock`) live here for that reason: the test
//! harness plays tunnel endpoints with them, and the daemon's health
//! checks send their ICMP echoes and half-open VIP probes through them.

pub mod mem;
pub mod netlink;
pub mod rawsock;
pub mod shm;
pub mod xdp;
pub mod xsk;

pub use crate::frame::{FrameBuf, VEC_FRAME_MAX};
use crate::verdict::Verdict;

/// Where a port's UMEM frames are at one instant. The sum of the parts
/// equals `total` at all times: no frame is ever lost.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FrameAccounting {
    /// Frames in the UMEM.
    pub total: u64,
    /// Lent to the kernel on the fill ring.
    pub fill: u64,
    /// Received and not yet handed on (only inside a batch).
    pub rx: u64,
    /// Queued on the TX ring, not yet completed.
    pub tx: u64,
    /// Completed and not yet recycled (only inside a batch).
    pub comp: u64,
    /// Free in the port's own stack.
    pub free: u64,
}

impl FrameAccounting {
    /// Frames not accounted for: `total` minus the sum of the parts,
    /// exactly (0 unless there is a bug; negative when a frame is counted
    /// in two places). Computed in 128 bits, so it cannot overflow.
    pub fn lost(&self) -> i128 {
        let parts = [self.fill, self.rx, self.tx, self.comp, self.free];
        i128::from(self.total) - parts.iter().map(|&n| i128::from(n)).sum::<i128>()
    }
}

/// Counters of a port's rings: frames it could not hand on.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RingCounters {
    /// Frames dropped because the egress TX ring had no room.
    pub tx_ring_full: u64,
    /// Frames whose verdict named a port the group does not have.
    pub no_port: u64,
}

/// A source and sink of frames that the pipeline rewrites in place.
pub trait Port {
    /// Receive up to one batch (waiting at most `timeout_ms`), call
    /// `f(ingress port, frame)` on each frame, transmit the frames it
    /// returns `Verdict::Tx(port)` for on that port, and recycle the rest.
    /// Returns the number of frames received.
    fn poll<F: FnMut(u8, &mut dyn FrameBuf) -> Verdict>(
        &mut self,
        timeout_ms: i32,
        f: F,
    ) -> std::io::Result<usize>;

    /// Like [`Port::poll`], but first calls `pre(stage, frame)` on every
    /// frame of the batch for stage 0, then again for stage 1 (read-only),
    /// so that the memory the pipeline will need for all of them is
    /// requested at once and the cache misses overlap.
    fn poll_prefetch<P: FnMut(u8, &[u8]), F: FnMut(u8, &mut dyn FrameBuf) -> Verdict>(
        &mut self,
        timeout_ms: i32,
        _pre: P,
        f: F,
    ) -> std::io::Result<usize> {
        self.poll(timeout_ms, f)
    }

    /// Where the frames are now.
    fn accounting(&self) -> FrameAccounting;

    /// Frames the port could not hand on (a port that always can: zero).
    fn rings(&self) -> RingCounters {
        RingCounters::default()
    }
}

/// Ask the CPU to start loading the cache line of `r` (a hint: no effect
/// on what the program computes).
#[inline(always)]
pub fn prefetch<T>(r: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetch never faults and never changes memory; the address
    // comes from a live reference.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(
            (r as *const T).cast(),
        )
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = r;
}

/// Ask the kernel to back `mem` with transparent huge pages where it can
/// (large tables: fewer TLB misses). Best effort: errors are ignored.
pub fn advise_hugepages<T>(mem: &[T]) {
    const HUGE: usize = 2 << 20;
    let start = mem.as_ptr() as usize;
    let end = start + std::mem::size_of_val(mem);
    let first = start.next_multiple_of(HUGE);
    if end <= first + HUGE {
        return;
    }
    let len = (end - first) / HUGE * HUGE;
    // SAFETY: madvise(MADV_HUGEPAGE) only changes how the kernel backs the
    // pages of [first, first + len), a range inside `mem`'s allocation; it
    // never changes their contents or validity.
    unsafe { libc::madvise(first as *mut libc::c_void, len, libc::MADV_HUGEPAGE) };
}

/// Set the process file-creation mask, returning the previous one (used to
/// create the control socket without a window of wider permissions).
pub fn set_umask(mask: u32) -> u32 {
    // SAFETY: umask(2) only swaps a per-process integer; it cannot fail.
    unsafe { libc::umask(mask as libc::mode_t) as u32 }
}

/// The user id of the process at the other end of a Unix stream socket
/// (SO_PEERCRED), for the control socket's permission check.
pub fn peer_uid(sock: &impl std::os::fd::AsRawFd) -> std::io::Result<u32> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: u32::MAX,
        gid: u32::MAX,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cred`, which is a
    // properly sized and aligned ucred; the fd is borrowed for the call.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(cred.uid)
}

#[cfg(test)]
mod tests {
    use super::FrameAccounting;

    #[test]
    fn lost_frames_are_counted_exactly_both_ways() {
        let mut f = FrameAccounting {
            total: 8,
            fill: 4,
            tx: 1,
            free: 3,
            ..Default::default()
        };
        assert_eq!(f.lost(), 0);
        f.free = 2;
        assert_eq!(f.lost(), 1, "a frame missing");
        f.free = 4;
        assert_eq!(f.lost(), -1, "a frame counted twice");
        f.fill = u64::MAX;
        f.total = u64::MAX;
        assert_eq!(f.lost(), -5, "no overflow near the top of the range");
    }
}
