//! AF_XDP sockets through xsk-rs: one UMEM and one socket per (interface,
//! RX queue). Received frames are handed to the pipeline in place and the
//! very same UMEM frame is queued for transmission; completed frames go
//! back to the fill ring. Every frame is accounted for at all times.

use super::{FrameAccounting, Port};
use crate::pipeline::Verdict;
use std::io;
use std::num::NonZeroU32;
use std::os::fd::{AsRawFd, RawFd};
use xsk_rs::config::{BindFlags, Interface, LibxdpFlags, QueueSize, SocketConfig, UmemConfig};
use xsk_rs::{CompQueue, FillQueue, FrameDesc, RxQueue, Socket, TxQueue, Umem};

/// Frames handled per batch.
pub const BATCH: usize = 64;
/// Ring size used for every ring.
const RING: u32 = 2048;

/// One AF_XDP socket with its own UMEM.
pub struct XskPort {
    umem: Umem,
    fq: FillQueue,
    cq: CompQueue,
    rx: RxQueue,
    tx: TxQueue,
    free: Vec<FrameDesc>,
    rx_batch: Vec<FrameDesc>,
    tx_batch: Vec<FrameDesc>,
    comp_batch: Vec<FrameDesc>,
    acct: FrameAccounting,
    zero_copy: bool,
    /// Frames dropped because the TX ring had no room.
    pub tx_ring_full: u64,
}

impl std::fmt::Debug for XskPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XskPort")
            .field("zero_copy", &self.zero_copy)
            .field("acct", &self.acct)
            .finish()
    }
}

fn qsize(n: u32) -> QueueSize {
    QueueSize::new(n).expect("ring size is a power of two")
}

impl XskPort {
    /// Bind a socket to `iface` queue `queue` with a UMEM of `frames`
    /// frames: zero-copy if the driver supports it, else copy mode.
    pub fn open(iface: &str, queue: u32, frames: u32) -> io::Result<Self> {
        let ucfg = UmemConfig::builder()
            .fill_queue_size(qsize(RING))
            .comp_queue_size(qsize(RING))
            .build()
            .map_err(|e| io::Error::other(format!("UMEM config: {e}")))?;
        let count = NonZeroU32::new(frames.max(2 * RING)).expect("non-zero");
        let ifname: Interface = iface
            .parse()
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface name has a NUL"))?;
        let mut last_err = None;
        for (mode, zero_copy) in [
            (BindFlags::XDP_ZEROCOPY, true),
            (BindFlags::XDP_COPY, false),
        ] {
            let (umem, descs) = Umem::new(ucfg, count, false)
                .map_err(|e| io::Error::other(format!("creating UMEM: {e}")))?;
            let scfg = SocketConfig::builder()
                .rx_queue_size(qsize(RING))
                .tx_queue_size(qsize(RING))
                .libxdp_flags(LibxdpFlags::XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD)
                .bind_flags(mode | BindFlags::XDP_USE_NEED_WAKEUP)
                .build();
            // SAFETY: this UMEM is new and used by this socket only, and no
            // other socket of ours is bound to this (interface, queue).
            match unsafe { Socket::new(scfg, &umem, &ifname, queue) } {
                Ok((tx, rx, Some((fq, cq)))) => {
                    let total = descs.len() as u64;
                    return Ok(XskPort {
                        umem,
                        fq,
                        cq,
                        rx,
                        tx,
                        free: descs,
                        rx_batch: vec![FrameDesc::default(); BATCH],
                        tx_batch: Vec::with_capacity(BATCH),
                        comp_batch: vec![FrameDesc::default(); BATCH * 2],
                        acct: FrameAccounting {
                            total,
                            free: total,
                            ..Default::default()
                        },
                        zero_copy,
                        tx_ring_full: 0,
                    });
                }
                Ok(_) => {
                    return Err(io::Error::other(
                        "socket created without fill/completion rings",
                    ))
                }
                Err(e) => last_err = Some(e),
            }
        }
        Err(io::Error::other(format!(
            "binding AF_XDP socket to {iface} queue {queue}: {}",
            last_err.map(|e| e.to_string()).unwrap_or_default()
        )))
    }

    /// Whether the socket runs in zero-copy mode.
    pub fn zero_copy(&self) -> bool {
        self.zero_copy
    }

    /// The socket's file descriptor (for the XSKMAP).
    pub fn fd(&self) -> RawFd {
        self.rx.fd().as_raw_fd()
    }

    /// Kernel statistics of the socket (rx_dropped, rx ring full, ...).
    pub fn kernel_stats(&self) -> io::Result<xsk_rs::socket::XdpStatistics> {
        self.rx.fd().xdp_statistics()
    }

    fn reap_completions(&mut self) {
        // SAFETY: completed frames were produced to TX by us from this UMEM
        // and are owned by us again once consumed from the completion ring.
        let n = unsafe { self.cq.consume(&mut self.comp_batch) };
        self.acct.tx -= n as u64;
        self.free.extend_from_slice(&self.comp_batch[..n]);
        self.acct.free += n as u64;
    }

    fn refill(&mut self) {
        let want = self.free.len() as u32;
        if want == 0 {
            return;
        }
        let k = self.fq.nb_free(want).min(want) as usize;
        if k > 0 {
            let from = self.free.len() - k;
            // SAFETY: frames on the free stack belong to this UMEM and are
            // not in any ring; the ring has room for exactly k.
            let n = unsafe { self.fq.produce(&self.free[from..]) };
            self.free.truncate(self.free.len() - n);
            self.acct.free -= n as u64;
            self.acct.fill += n as u64;
        }
        if self.fq.needs_wakeup() {
            let _ = self.fq.wakeup(self.rx.fd_mut(), 0);
        }
    }

    fn transmit(&mut self) {
        if self.tx_batch.is_empty() {
            return;
        }
        let want = self.tx_batch.len() as u32;
        let room = self.tx.nb_free(want).min(want) as usize;
        let n = if room > 0 {
            // SAFETY: every frame in tx_batch was received from this UMEM,
            // is owned by us, and the ring has room for `room` descriptors.
            unsafe { self.tx.produce(&self.tx_batch[..room]) }
        } else {
            0
        };
        self.acct.rx -= self.tx_batch.len() as u64;
        self.acct.tx += n as u64;
        let unsent = self.tx_batch.len() - n;
        if unsent > 0 {
            self.tx_ring_full += unsent as u64;
            self.free.extend_from_slice(&self.tx_batch[n..]);
            self.acct.free += unsent as u64;
        }
        self.tx_batch.clear();
        if n > 0 && (self.tx.needs_wakeup() || !self.zero_copy) {
            let _ = self.tx.wakeup();
        }
    }

    /// Transmit up to `n` copies of `template` (a whole Ethernet frame),
    /// letting `vary(seq, frame)` change each copy (e.g. its source port),
    /// using free frames only. Returns how many were queued. For packet
    /// generators: the frames come back through the completion ring.
    pub fn send_burst(
        &mut self,
        template: &[u8],
        n: usize,
        mut vary: impl FnMut(u64, &mut [u8]),
        seq0: u64,
    ) -> usize {
        use std::io::Write;
        self.reap_completions();
        let room = self.tx.nb_free(n as u32).min(n as u32) as usize;
        let k = room.min(self.free.len());
        self.tx_batch.clear();
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
            self.tx_batch.push(desc);
        }
        let m = self.tx_batch.len();
        self.acct.free -= m as u64;
        self.acct.rx += m as u64;
        self.transmit();
        m
    }

    /// Frames whose transmission has not completed yet.
    pub fn in_flight(&self) -> u64 {
        self.acct.tx
    }

    /// Return every frame it can get back (completions) before shutdown,
    /// waiting up to `ms` for outstanding transmissions.
    pub fn drain(&mut self, ms: u64) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(ms);
        while self.acct.tx > 0 && std::time::Instant::now() < deadline {
            let _ = self.tx.wakeup();
            self.reap_completions();
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
}

impl Port for XskPort {
    fn poll<F: FnMut(&mut [u8]) -> Verdict>(
        &mut self,
        timeout_ms: i32,
        mut f: F,
    ) -> io::Result<usize> {
        self.reap_completions();
        self.refill();
        // SAFETY: received descriptors name frames of this UMEM that the
        // kernel handed back to us; we own them until produced again.
        let n = unsafe {
            if timeout_ms > 0 {
                self.rx.poll_and_consume(&mut self.rx_batch, timeout_ms)?
            } else {
                self.rx.consume(&mut self.rx_batch)
            }
        };
        self.acct.fill -= n as u64;
        self.acct.rx += n as u64;
        for i in 0..n {
            let mut desc = self.rx_batch[i];
            let verdict = {
                // SAFETY: `desc` was just received, so the frame is ours and
                // no other reference to its data exists.
                let mut data = unsafe { self.umem.data_mut(&mut desc) };
                f(data.contents_mut())
            };
            if verdict == Verdict::Tx {
                self.tx_batch.push(desc);
            } else {
                self.free.push(desc);
                self.acct.rx -= 1;
                self.acct.free += 1;
            }
        }
        self.transmit();
        debug_assert_eq!(self.acct.lost(), 0, "frame accounting: {:?}", self.acct);
        Ok(n)
    }

    fn accounting(&self) -> FrameAccounting {
        self.acct
    }
}
