//! The XDP steering program (`bpf/steer.bpf.c`, built by `build.rs` and
//! embedded here): loading it, attaching it to an interface, and keeping
//! its maps in step with the service table.
//!
//! The object is handled by `aya`, in Rust, rather than by libbpf through
//! FFI: the maps are typed (keys laid out as the C structs), the attachment
//! is a `bpf_link` owned here (dropped, it detaches, so no program outlives
//! a crashed daemon), and aya can pin the maps, the program and the link in
//! bpffs so that a restarted daemon can take them over.
//!
//! One program object is loaded per interface, so every interface has its
//! own XSKMAP indexed by RX queue.

use aya::maps::{HashMap, MapData, PerCpuArray, XskMap};
use aya::programs::xdp::XdpLink;
use aya::programs::{Xdp, XdpMode};
use aya::{Ebpf, Pod};
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{BorrowedFd, RawFd};

static STEER_OBJ: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/steer.bpf.o"));

/// The program's name in the object.
const PROG: &str = "xvs_steer";

/// How the program was attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachMode {
    /// In the driver (native XDP).
    Driver,
    /// Generic (skb) XDP.
    Generic,
}

/// Key of `svc_map` and `nat_map`, laid out as `struct svc_key` in the C
/// program (address and port in network byte order).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SvcKey {
    /// IPv4 address, network byte order.
    pub addr: u32,
    /// Port, network byte order (0: every port).
    pub port: u16,
    /// IP protocol number (0 with port 0 in `nat_map`: ICMP errors).
    pub proto: u8,
    /// Always 0 (the C struct's padding, part of the hashed key).
    pub pad: u8,
}

// SAFETY: SvcKey is repr(C), Copy, made of integers only, and has no
// implicit padding (4 + 2 + 1 + 1 bytes), so every byte is initialised.
unsafe impl Pod for SvcKey {}

impl SvcKey {
    /// The key of `proto addr:port`.
    pub fn new(proto: u8, addr: Ipv4Addr, port: u16) -> Self {
        SvcKey {
            addr: u32::from_ne_bytes(addr.octets()),
            port: port.to_be(),
            proto,
            pad: 0,
        }
    }
}

/// The program's own counters (`steer_stats`, summed over CPUs), indexed
/// as the C program's `STEER_*` constants.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SteerCounters {
    /// Frames left to the kernel (not for a service).
    pub pass: u64,
    /// Frames redirected to an AF_XDP socket.
    pub redirect: u64,
    /// Frames for a service arriving on a queue with no socket (left to
    /// the kernel).
    pub no_socket: u64,
}

/// The steering program loaded and attached to one interface (boxed:
/// aya's objects are large and a `Steering` is moved around).
pub struct Steering {
    ebpf: Box<Ebpf>,
    ifindex: u32,
    link: Option<XdpLink>,
    maps: Box<Maps>,
}

/// The program's maps, taken out of the object.
struct Maps {
    xsks: XskMap<MapData>,
    svc: HashMap<MapData, SvcKey, u32>,
    nat: HashMap<MapData, SvcKey, u32>,
    vip: HashMap<MapData, u32, u32>,
    stats: PerCpuArray<MapData, u64>,
}

impl std::fmt::Debug for Steering {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Steering")
            .field("ifindex", &self.ifindex)
            .field("attached", &self.link.is_some())
            .finish()
    }
}

/// `e` (with its sources) in the context of `what`.
fn ctx(what: impl std::fmt::Display, e: impl std::error::Error) -> io::Error {
    io::Error::other(format!("{what}: {}", error_chain(&e)))
}

fn take<T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>>(
    ebpf: &mut Ebpf,
    name: &str,
) -> io::Result<T> {
    let map = ebpf
        .take_map(name)
        .ok_or_else(|| io::Error::other(format!("steering program: no map {name}")))?;
    T::try_from(map).map_err(|e| ctx(format_args!("steering program: map {name}"), e))
}

impl Steering {
    /// Load the steering program for interface `ifindex` (not attached yet).
    pub fn load(ifindex: u32) -> io::Result<Self> {
        let mut ebpf =
            Ebpf::load(STEER_OBJ).map_err(|e| ctx("loading the XDP steering program", e))?;
        let prog: &mut Xdp = ebpf
            .program_mut(PROG)
            .ok_or_else(|| io::Error::other(format!("steering program {PROG} not in object")))?
            .try_into()
            .map_err(|e| ctx(format_args!("steering program {PROG}"), e))?;
        prog.load()
            .map_err(|e| ctx("loading the XDP steering program", e))?;
        let maps = Box::new(Maps {
            xsks: take(&mut ebpf, "xsks_map")?,
            svc: take(&mut ebpf, "svc_map")?,
            nat: take(&mut ebpf, "nat_map")?,
            vip: take(&mut ebpf, "vip_map")?,
            stats: take(&mut ebpf, "steer_stats")?,
        });
        Ok(Steering {
            maps,
            ebpf: Box::new(ebpf),
            ifindex,
            link: None,
        })
    }

    fn program(&mut self) -> io::Result<&mut Xdp> {
        self.ebpf
            .program_mut(PROG)
            .ok_or_else(|| io::Error::other(format!("steering program {PROG} not in object")))?
            .try_into()
            .map_err(|e| ctx(format_args!("steering program {PROG}"), e))
    }

    /// Attach to the interface: native mode when the driver has it, else
    /// generic mode.
    pub fn attach(&mut self) -> io::Result<AttachMode> {
        let ifindex = self.ifindex;
        let prog = self.program()?;
        let mut last = None;
        for (xmode, mode) in [
            (XdpMode::Driver, AttachMode::Driver),
            (XdpMode::Skb, AttachMode::Generic),
        ] {
            match prog.attach_to_if_index(ifindex, xmode) {
                Ok(id) => {
                    let link = prog
                        .take_link(id)
                        .map_err(|e| ctx("taking the XDP link", e))?;
                    self.link = Some(link);
                    return Ok(mode);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(io::Error::other(format!(
            "attaching the XDP steering program to interface {ifindex}: {}",
            last.map_or_else(String::new, |e| error_chain(&e))
        )))
    }

    /// Detach from the interface (also done on drop).
    pub fn detach(&mut self) {
        // Dropping the link detaches the program.
        self.link = None;
    }

    /// Steer RX queue `queue` to the AF_XDP socket `xsk_fd`.
    pub fn set_xsk(&mut self, queue: u32, xsk_fd: RawFd) -> io::Result<()> {
        // SAFETY: the caller passes the descriptor of a live AF_XDP socket;
        // it is only read for the duration of this call (the kernel takes
        // its own reference to the socket in the map).
        let fd = unsafe { BorrowedFd::borrow_raw(xsk_fd) };
        self.maps
            .xsks
            .set(queue, fd, 0)
            .map_err(|e| ctx("inserting an AF_XDP socket in xsks_map", e))
    }

    /// Stop steering RX queue `queue`.
    pub fn clear_xsk(&mut self, queue: u32) {
        // Absent already: nothing to do.
        let _ = self.maps.xsks.unset(queue);
    }

    /// Start steering `proto vip:port` (port 0 = every port) to the sockets.
    pub fn add_service(&mut self, proto: u8, vip: Ipv4Addr, port: u16) -> io::Result<()> {
        self.maps
            .svc
            .insert(SvcKey::new(proto, vip, port), 1, 0)
            .map_err(|e| ctx(format_args!("inserting {vip}:{port} in svc_map"), e))
    }

    /// Stop steering `proto vip:port`.
    pub fn remove_service(&mut self, proto: u8, vip: Ipv4Addr, port: u16) {
        let _ = self.maps.svc.remove(&SvcKey::new(proto, vip, port));
    }

    /// Start sending the replies of NAT real server `rip:rport` (`proto`;
    /// port 0: any port; proto 0 and port 0: its ICMP errors) to the
    /// sockets.
    pub fn add_nat(&mut self, proto: u8, rip: Ipv4Addr, rport: u16) -> io::Result<()> {
        self.maps
            .nat
            .insert(SvcKey::new(proto, rip, rport), 1, 0)
            .map_err(|e| ctx(format_args!("inserting {rip}:{rport} in nat_map"), e))
    }

    /// Stop sending `rip:rport`'s replies to the sockets.
    pub fn remove_nat(&mut self, proto: u8, rip: Ipv4Addr, rport: u16) {
        let _ = self.maps.nat.remove(&SvcKey::new(proto, rip, rport));
    }

    /// Send ICMP errors addressed to `vip` to the sockets.
    pub fn add_vip(&mut self, vip: Ipv4Addr) -> io::Result<()> {
        self.maps
            .vip
            .insert(u32::from_ne_bytes(vip.octets()), 1, 0)
            .map_err(|e| ctx(format_args!("inserting {vip} in vip_map"), e))
    }

    /// Stop sending ICMP errors for `vip` to the sockets.
    pub fn remove_vip(&mut self, vip: Ipv4Addr) {
        let _ = self.maps.vip.remove(&u32::from_ne_bytes(vip.octets()));
    }

    /// The program's counters, summed over CPUs (a counter that cannot be
    /// read is 0).
    pub fn counters(&self) -> SteerCounters {
        let read = |k: u32| {
            self.maps
                .stats
                .get(&k, 0)
                .map(|v| v.iter().copied().fold(0u64, u64::wrapping_add))
                .unwrap_or(0)
        };
        SteerCounters {
            pass: read(0),
            redirect: read(1),
            no_socket: read(2),
        }
    }
}

/// An error and its sources on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

impl Drop for Steering {
    fn drop(&mut self) {
        self.detach();
    }
}
