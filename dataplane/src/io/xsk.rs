//! AF_XDP sockets through xsk-rs. One worker owns one UMEM shared by the
//! sockets of its RX queue on every interface it serves (a "group"), so a
//! frame received on one interface can be transmitted on another without a
//! copy: the pipeline rewrites it in place and the very same UMEM frame is
//! queued on the egress socket's TX ring; completed frames go back to the
//! fill rings. Every frame is accounted for at all times.

use super::{FrameAccounting, FrameBuf, Port, RingCounters};
use crate::verdict::Verdict;
use std::io;
use std::num::NonZeroU32;
use std::os::fd::{AsRawFd, RawFd};
use xsk_rs::config::{BindFlags, Interface, LibxdpFlags, QueueSize, SocketConfig, UmemConfig};
use xsk_rs::{CompQueue, FillQueue, FrameDesc, RxQueue, Socket, TxQueue, Umem};

/// Frames handled per batch and socket.
pub const BATCH: usize = 64;
/// Ring size used for every ring.
const RING: u32 = 2048;

/// One socket of a group: its four rings and what it holds.
struct Sock {
    fq: FillQueue,
    cq: CompQueue,
    rx: RxQueue,
    tx: TxQueue,
    tx_batch: Vec<FrameDesc>,
    /// Frames lent on this socket's fill ring.
    fill: u64,
    /// Frames on this socket's TX ring, not completed yet.
    in_tx: u64,
}

/// The AF_XDP sockets of one RX queue on every interface of a worker,
/// sharing one UMEM. Port `i` of the pipeline is the `i`-th interface.
pub struct XskGroup {
    umem: Umem,
    socks: Vec<Sock>,
    free: Vec<FrameDesc>,
    rx_batch: Vec<FrameDesc>,
    comp_batch: Vec<FrameDesc>,
    total: u64,
    /// Frames received and not yet handed on (inside a batch only).
    in_rx: u64,
    zero_copy: bool,
    /// Frames it could not hand on (read through [`Port::rings`]).
    rings: RingCounters,
}

/// A group of one socket (the single-interface case and generators).
pub type XskPort = XskGroup;

impl std::fmt::Debug for XskGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XskGroup")
            .field("sockets", &self.socks.len())
            .field("zero_copy", &self.zero_copy)
            .field("acct", &self.accounting())
            .finish()
    }
}

fn qsize(n: u32) -> QueueSize {
    QueueSize::new(n).expect("ring size is a power of two")
}

fn bind(umem: &Umem, iface: &str, queue: u32, mode: BindFlags) -> io::Result<Sock> {
    let ifname: Interface = iface
        .parse()
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface name has a NUL"))?;
    let scfg = SocketConfig::builder()
        .rx_queue_size(qsize(RING))
        .tx_queue_size(qsize(RING))
        .libxdp_flags(LibxdpFlags::XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD)
        .bind_flags(mode | BindFlags::XDP_USE_NEED_WAKEUP)
        .build();
    // SAFETY: the UMEM outlives the socket (both live in the group), and no
    // other socket of ours is bound to this (interface, queue).
    match unsafe { Socket::new(scfg, umem, &ifname, queue) } {
        Ok((tx, rx, Some((fq, cq)))) => Ok(Sock {
            fq,
            cq,
            rx,
            tx,
            tx_batch: Vec::with_capacity(BATCH * 4),
            fill: 0,
            in_tx: 0,
        }),
        Ok(_) => Err(io::Error::other(
            "socket created without fill/completion rings",
        )),
        Err(e) => Err(io::Error::other(format!(
            "binding AF_XDP socket to {iface} queue {queue}: {e}"
        ))),
    }
}

impl XskGroup {
    /// One socket on `iface` queue `queue` with a UMEM of `frames` frames.
    pub fn open(iface: &str, queue: u32, frames: u32) -> io::Result<Self> {
        Self::open_group(&[iface], queue, frames)
    }

    /// A socket on queue `queue` of every interface in `ifaces`, sharing a
    /// UMEM of `frames` frames (at least 2 ring's worth per socket):
    /// zero-copy if every driver supports it, else copy mode.
    pub fn open_group(ifaces: &[&str], queue: u32, frames: u32) -> io::Result<Self> {
        if ifaces.is_empty() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "no interface"));
        }
        let ucfg = UmemConfig::builder()
            .fill_queue_size(qsize(RING))
            .comp_queue_size(qsize(RING))
            .build()
            .map_err(|e| io::Error::other(format!("UMEM config: {e}")))?;
        let want = frames.max(2 * RING * ifaces.len() as u32);
        let count = NonZeroU32::new(want).expect("non-zero");
        let mut last_err = None;
        for (mode, zero_copy) in [
            (BindFlags::XDP_ZEROCOPY, true),
            (BindFlags::XDP_COPY, false),
        ] {
            let (umem, descs) = Umem::new(ucfg, count, false)
                .map_err(|e| io::Error::other(format!("creating UMEM: {e}")))?;
            let socks: io::Result<Vec<Sock>> =
                ifaces.iter().map(|i| bind(&umem, i, queue, mode)).collect();
            match socks {
                Ok(socks) => {
                    let total = descs.len() as u64;
                    return Ok(XskGroup {
                        umem,
                        socks,
                        free: descs,
                        rx_batch: vec![FrameDesc::default(); BATCH],
                        comp_batch: vec![FrameDesc::default(); BATCH * 2],
                        total,
                        in_rx: 0,
                        zero_copy,
                        rings: RingCounters::default(),
                    });
                }
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(|| io::Error::other("no socket")))
    }

    /// Whether the sockets run in zero-copy mode.
    pub fn zero_copy(&self) -> bool {
        self.zero_copy
    }

    /// The first socket's file descriptor (for the XSKMAP).
    pub fn fd(&self) -> RawFd {
        self.socks[0].rx.fd().as_raw_fd()
    }

    /// Every socket's file descriptor, in port order.
    pub fn fds(&self) -> Vec<RawFd> {
        self.socks.iter().map(|s| s.rx.fd().as_raw_fd()).collect()
    }

    /// Kernel statistics of the first socket (rx_dropped, rx ring full, ...).
    pub fn kernel_stats(&self) -> io::Result<xsk_rs::socket::XdpStatistics> {
        self.socks[0].rx.fd().xdp_statistics()
    }

    fn reap_completions(&mut self) {
        for s in &mut self.socks {
            // SAFETY: completed frames were produced to TX by us from this
            // UMEM and are owned by us again once consumed.
            let n = unsafe { s.cq.consume(&mut self.comp_batch) };
            s.in_tx -= n as u64;
            self.free.extend_from_slice(&self.comp_batch[..n]);
        }
    }

    fn refill(&mut self) {
        let n = self.socks.len();
        for (k, s) in self.socks.iter_mut().enumerate() {
            // Share what is free evenly among the sockets still to fill.
            let share = (self.free.len() / (n - k)) as u32;
            if share > 0 {
                let room = s.fq.nb_free(share).min(share) as usize;
                if room > 0 {
                    let from = self.free.len() - room;
                    // SAFETY: frames on the free stack belong to this UMEM
                    // and are in no ring; the ring has room for them all.
                    let done = unsafe { s.fq.produce(&self.free[from..]) };
                    self.free.truncate(self.free.len() - done);
                    s.fill += done as u64;
                }
            }
            if s.fq.needs_wakeup() {
                let _ = s.fq.wakeup(s.rx.fd_mut(), 0);
            }
        }
    }

    fn transmit(&mut self) {
        let zero_copy = self.zero_copy;
        for s in &mut self.socks {
            if s.tx_batch.is_empty() {
                continue;
            }
            let want = s.tx_batch.len() as u32;
            let room = s.tx.nb_free(want).min(want) as usize;
            let n = if room > 0 {
                // SAFETY: every frame in tx_batch was received into this
                // UMEM, is owned by us, and the ring has room for `room`.
                unsafe { s.tx.produce(&s.tx_batch[..room]) }
            } else {
                0
            };
            self.in_rx -= s.tx_batch.len() as u64;
            s.in_tx += n as u64;
            let unsent = s.tx_batch.len() - n;
            if unsent > 0 {
                self.rings.tx_ring_full += unsent as u64;
                self.free.extend_from_slice(&s.tx_batch[n..]);
            }
            s.tx_batch.clear();
            if n > 0 && (s.tx.needs_wakeup() || !zero_copy) {
                let _ = s.tx.wakeup();
            }
        }
    }

    /// Transmit up to `n` copies of `template` (a whole Ethernet frame) on
    /// the first socket, letting `vary(seq, frame)` change each copy (e.g.
    /// its source port), using free frames only. Returns how many were
    /// queued. For packet generators: the frames come back through the
    /// completion ring.
    pub fn send_burst(
        &mut self,
        template: &[u8],
        n: usize,
        mut vary: impl FnMut(u64, &mut [u8]),
        seq0: u64,
    ) -> usize {
        use std::io::Write;
        self.reap_completions();
        let room = self.socks[0].tx.nb_free(n as u32).min(n as u32) as usize;
        let k = room.min(self.free.len());
        for i in 0..k {
            let Some(mut desc) = self.free.pop() else {
                break;
            };
            {
                // SAFETY: `desc` comes from the free stack, so the frame is
                // ours and no other reference to its data exists.
                let mut data = unsafe { self.umem.data_mut(&mut desc) };
                let mut cur = data.cursor();
                cur.set_pos(0);
                if cur.write_all(template).is_err() {
                    self.free.push(desc);
                    break;
                }
                vary(seq0 + i as u64, data.contents_mut());
            }
            self.socks[0].tx_batch.push(desc);
            self.in_rx += 1;
        }
        let m = self.socks[0].tx_batch.len();
        self.transmit();
        m
    }

    /// Frames whose transmission has not completed yet.
    pub fn in_flight(&self) -> u64 {
        self.socks.iter().map(|s| s.in_tx).sum()
    }

    /// Take back every frame it can (completions) before shutdown, waiting
    /// up to `ms` for outstanding transmissions.
    pub fn drain(&mut self, ms: u64) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(ms);
        while self.in_flight() > 0 && std::time::Instant::now() < deadline {
            for s in &self.socks {
                let _ = s.tx.wakeup();
            }
            self.reap_completions();
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    /// Ask the kernel to send what waits on the TX rings and take back the
    /// completed frames, without queueing anything. For generators:
    /// `send_burst` wakes the kernel only when it queued a frame, and a
    /// copy-mode socket whose send budget ran out leaves its TX ring full.
    pub fn kick_tx(&mut self) {
        for s in &self.socks {
            let _ = s.tx.wakeup();
        }
        self.reap_completions();
    }

    fn poll_inner<P: FnMut(u8, &[u8]), F: FnMut(u8, &mut dyn FrameBuf) -> Verdict>(
        &mut self,
        timeout_ms: i32,
        mut pre: Option<P>,
        mut f: F,
    ) -> io::Result<usize> {
        self.reap_completions();
        self.refill();
        let nsocks = self.socks.len();
        let mut total = 0;
        for i in 0..nsocks {
            // Wait (poll) only on a lone socket; a group is polled in turn.
            let wait = if nsocks == 1 { timeout_ms } else { 0 };
            let s = &mut self.socks[i];
            // SAFETY: received descriptors name frames of this UMEM that the
            // kernel handed back to us; we own them until produced again.
            // Take what is there first; only an empty ring costs a poll(2).
            let n = unsafe {
                match s.rx.consume(&mut self.rx_batch) {
                    0 if wait > 0 => s.rx.poll_and_consume(&mut self.rx_batch, wait)?,
                    n => n,
                }
            };
            s.fill -= n as u64;
            self.in_rx += n as u64;
            total += n;
            if let Some(pre) = pre.as_mut() {
                for stage in 0..2 {
                    for desc in &self.rx_batch[..n] {
                        // SAFETY: the frame was just received and is ours;
                        // this shared view ends before any mutable one.
                        let data = unsafe { self.umem.data(desc) };
                        pre(stage, data.contents());
                    }
                }
            }
            for k in 0..n {
                let mut desc = self.rx_batch[k];
                let verdict = {
                    // SAFETY: `desc` was just received, so the frame is ours
                    // and no other reference to its data exists.
                    let data = unsafe { self.umem.data_mut(&mut desc) };
                    f(i as u8, &mut XskFrame(data))
                };
                match verdict {
                    Verdict::Tx(out) if usize::from(out) < nsocks => {
                        self.socks[usize::from(out)].tx_batch.push(desc)
                    }
                    v => {
                        if matches!(v, Verdict::Tx(_)) {
                            self.rings.no_port += 1;
                        }
                        self.free.push(desc);
                        self.in_rx -= 1;
                    }
                }
            }
        }
        self.transmit();
        debug_assert_eq!(
            self.accounting().lost(),
            0,
            "frame accounting: {:?}",
            self.accounting()
        );
        if total == 0 && nsocks > 1 && timeout_ms > 0 {
            // Nothing on any socket: sleep a little instead of spinning.
            let fds: Vec<libc::pollfd> = self
                .socks
                .iter()
                .map(|s| libc::pollfd {
                    fd: s.rx.fd().as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                })
                .collect();
            poll_fds(fds, timeout_ms);
        }
        Ok(total)
    }
}

/// Wait until one of `fds` is readable or `timeout_ms` passed.
fn poll_fds(mut fds: Vec<libc::pollfd>, timeout_ms: i32) {
    // SAFETY: `fds` is a valid array of `fds.len()` pollfd structures that
    // poll(2) may write `revents` into.
    unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
}

/// A received UMEM frame as the pipeline sees it (its length can grow up
/// to the end of the UMEM frame).
struct XskFrame<'a>(xsk_rs::umem::frame::DataMut<'a>);

impl FrameBuf for XskFrame<'_> {
    fn bytes(&mut self) -> &mut [u8] {
        self.0.contents_mut()
    }

    fn set_len(&mut self, len: usize) -> bool {
        let mut c = self.0.cursor();
        if len > c.buf_len() {
            return false;
        }
        c.set_pos(len);
        true
    }
}

impl Port for XskGroup {
    fn poll<F: FnMut(u8, &mut dyn FrameBuf) -> Verdict>(
        &mut self,
        timeout_ms: i32,
        f: F,
    ) -> io::Result<usize> {
        self.poll_inner(timeout_ms, None::<fn(u8, &[u8])>, f)
    }

    fn poll_prefetch<P: FnMut(u8, &[u8]), F: FnMut(u8, &mut dyn FrameBuf) -> Verdict>(
        &mut self,
        timeout_ms: i32,
        pre: P,
        f: F,
    ) -> io::Result<usize> {
        self.poll_inner(timeout_ms, Some(pre), f)
    }

    fn accounting(&self) -> FrameAccounting {
        FrameAccounting {
            total: self.total,
            fill: self.socks.iter().map(|s| s.fill).sum(),
            rx: self.in_rx,
            tx: self.in_flight(),
            comp: 0,
            free: self.free.len() as u64,
        }
    }

    fn rings(&self) -> RingCounters {
        self.rings
    }
}
