//! The XDP steering program (`bpf/steer.bpf.c`, built by `build.rs` and
//! embedded here): loading it with libbpf, attaching it to an interface,
//! and keeping its maps in step with the service table.
//!
//! One program object is loaded per interface, so every interface has its
//! own XSKMAP indexed by RX queue.

use libxdp_sys as sys;
use std::ffi::CString;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::RawFd;

static STEER_OBJ: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/steer.bpf.o"));

const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;

/// How the program was attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachMode {
    /// In the driver (native XDP).
    Driver,
    /// Generic (skb) XDP.
    Generic,
}

/// Key of the service map, laid out as `struct svc_key` in the C program.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct SvcKey {
    addr: u32,
    port: u16,
    proto: u8,
    pad: u8,
}

/// The steering program loaded and attached to one interface.
#[derive(Debug)]
pub struct Steering {
    obj: *mut sys::bpf_object,
    ifindex: i32,
    attached: Option<u32>,
    xsks_fd: RawFd,
    svc_fd: RawFd,
    nat_fd: RawFd,
    vip_fd: RawFd,
    stats_fd: RawFd,
    prog_fd: RawFd,
}

// SAFETY: the bpf_object is only used through &mut self or read-only map
// syscalls, which the kernel serialises; libbpf keeps no thread-local state.
unsafe impl Send for Steering {}
// SAFETY: as above: `&self` methods only issue bpf() syscalls on map fds.
unsafe impl Sync for Steering {}

fn neg_err(what: &str, rc: i32) -> io::Error {
    let e = io::Error::from_raw_os_error(rc.unsigned_abs() as i32);
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

impl Steering {
    /// Load the steering program for interface `ifindex` (not attached yet).
    pub fn load(ifindex: u32) -> io::Result<Self> {
        let name = CString::new("xvs_steer").expect("no NUL");
        // SAFETY: STEER_OBJ is a static byte slice that outlives the
        // object; a null opts pointer asks for libbpf's defaults.
        let obj = unsafe {
            sys::bpf_object__open_mem(STEER_OBJ.as_ptr().cast(), STEER_OBJ.len(), std::ptr::null())
        };
        if obj.is_null() {
            return Err(io::Error::last_os_error());
        }
        let mut s = Steering {
            obj,
            ifindex: ifindex as i32,
            attached: None,
            xsks_fd: -1,
            svc_fd: -1,
            nat_fd: -1,
            vip_fd: -1,
            stats_fd: -1,
            prog_fd: -1,
        };
        // SAFETY: obj is a valid, opened, not yet loaded object.
        let rc = unsafe { sys::bpf_object__load(obj) };
        if rc != 0 {
            return Err(neg_err("loading the XDP steering program", rc));
        }
        // SAFETY: obj is loaded; the name is a valid C string.
        let prog = unsafe { sys::bpf_object__find_program_by_name(obj, name.as_ptr()) };
        if prog.is_null() {
            return Err(io::Error::other("steering program xvs_steer not in object"));
        }
        // SAFETY: prog belongs to the loaded obj.
        s.prog_fd = unsafe { sys::bpf_program__fd(prog) };
        s.xsks_fd = s.map_fd("xsks_map")?;
        s.svc_fd = s.map_fd("svc_map")?;
        s.nat_fd = s.map_fd("nat_map")?;
        s.vip_fd = s.map_fd("vip_map")?;
        s.stats_fd = s.map_fd("steer_stats")?;
        Ok(s)
    }

    fn map_fd(&self, name: &str) -> io::Result<RawFd> {
        let c = CString::new(name).expect("no NUL");
        // SAFETY: self.obj is loaded; c is a valid C string.
        let fd = unsafe { sys::bpf_object__find_map_fd_by_name(self.obj, c.as_ptr()) };
        if fd < 0 {
            return Err(neg_err(&format!("map {name}"), fd));
        }
        Ok(fd)
    }

    /// Attach to the interface: native mode when the driver has it, else
    /// generic mode.
    pub fn attach(&mut self) -> io::Result<AttachMode> {
        for (flags, mode) in [
            (XDP_FLAGS_DRV_MODE, AttachMode::Driver),
            (XDP_FLAGS_SKB_MODE, AttachMode::Generic),
        ] {
            // SAFETY: prog_fd is a loaded XDP program; null opts = defaults.
            let rc =
                unsafe { sys::bpf_xdp_attach(self.ifindex, self.prog_fd, flags, std::ptr::null()) };
            if rc == 0 {
                self.attached = Some(flags);
                return Ok(mode);
            }
            if flags == XDP_FLAGS_SKB_MODE {
                return Err(neg_err("attaching the XDP steering program", rc));
            }
        }
        unreachable!("the loop returns on its last iteration")
    }

    /// Detach from the interface (also done on drop).
    pub fn detach(&mut self) {
        if let Some(flags) = self.attached.take() {
            // SAFETY: detaching the program we attached with these flags.
            unsafe { sys::bpf_xdp_detach(self.ifindex, flags, std::ptr::null()) };
        }
    }

    /// Steer RX queue `queue` to the AF_XDP socket `xsk_fd`.
    pub fn set_xsk(&self, queue: u32, xsk_fd: RawFd) -> io::Result<()> {
        let val: u32 = xsk_fd as u32;
        // SAFETY: key and value point to u32s, the XSKMAP's sizes.
        let rc = unsafe {
            sys::bpf_map_update_elem(
                self.xsks_fd,
                (&queue as *const u32).cast(),
                (&val as *const u32).cast(),
                0,
            )
        };
        if rc != 0 {
            return Err(neg_err("inserting an AF_XDP socket in xsks_map", rc));
        }
        Ok(())
    }

    /// Stop steering RX queue `queue`.
    pub fn clear_xsk(&self, queue: u32) {
        // SAFETY: key points to a u32, the XSKMAP's key size.
        unsafe { sys::bpf_map_delete_elem(self.xsks_fd, (&queue as *const u32).cast()) };
    }

    fn svc_key(proto: u8, vip: Ipv4Addr, port: u16) -> SvcKey {
        SvcKey {
            addr: u32::from_ne_bytes(vip.octets()),
            port: port.to_be(),
            proto,
            pad: 0,
        }
    }

    /// Start steering `proto vip:port` (port 0 = every port) to the sockets.
    pub fn add_service(&self, proto: u8, vip: Ipv4Addr, port: u16) -> io::Result<()> {
        let k = Self::svc_key(proto, vip, port);
        let v: u32 = 1;
        // SAFETY: key and value match the map's key (8 bytes) and value (4).
        let rc = unsafe {
            sys::bpf_map_update_elem(
                self.svc_fd,
                (&k as *const SvcKey).cast(),
                (&v as *const u32).cast(),
                0,
            )
        };
        if rc != 0 {
            return Err(neg_err("inserting a service in svc_map", rc));
        }
        Ok(())
    }

    /// Stop steering `proto vip:port`.
    pub fn remove_service(&self, proto: u8, vip: Ipv4Addr, port: u16) {
        let k = Self::svc_key(proto, vip, port);
        // SAFETY: key matches the map's key size.
        unsafe { sys::bpf_map_delete_elem(self.svc_fd, (&k as *const SvcKey).cast()) };
    }

    /// Start sending the replies of NAT real server `rip:rport` (`proto`;
    /// port 0: any port; proto 0 and port 0: its ICMP errors) to the
    /// sockets.
    pub fn add_nat(&self, proto: u8, rip: Ipv4Addr, rport: u16) -> io::Result<()> {
        let k = Self::svc_key(proto, rip, rport);
        let v: u32 = 1;
        // SAFETY: key and value match the map's key (8 bytes) and value (4).
        let rc = unsafe {
            sys::bpf_map_update_elem(
                self.nat_fd,
                (&k as *const SvcKey).cast(),
                (&v as *const u32).cast(),
                0,
            )
        };
        if rc != 0 {
            return Err(neg_err("inserting a NAT real server in nat_map", rc));
        }
        Ok(())
    }

    /// Stop sending `rip:rport`'s replies to the sockets.
    pub fn remove_nat(&self, proto: u8, rip: Ipv4Addr, rport: u16) {
        let k = Self::svc_key(proto, rip, rport);
        // SAFETY: key matches the map's key size.
        unsafe { sys::bpf_map_delete_elem(self.nat_fd, (&k as *const SvcKey).cast()) };
    }

    /// Send ICMP errors addressed to `vip` to the sockets.
    pub fn add_vip(&self, vip: Ipv4Addr) -> io::Result<()> {
        let k = u32::from_ne_bytes(vip.octets());
        let v: u32 = 1;
        // SAFETY: key and value are u32s, the map's sizes.
        let rc = unsafe {
            sys::bpf_map_update_elem(
                self.vip_fd,
                (&k as *const u32).cast(),
                (&v as *const u32).cast(),
                0,
            )
        };
        if rc != 0 {
            return Err(neg_err("inserting a VIP in vip_map", rc));
        }
        Ok(())
    }

    /// Stop sending ICMP errors for `vip` to the sockets.
    pub fn remove_vip(&self, vip: Ipv4Addr) {
        let k = u32::from_ne_bytes(vip.octets());
        // SAFETY: key is a u32, the map's key size.
        unsafe { sys::bpf_map_delete_elem(self.vip_fd, (&k as *const u32).cast()) };
    }

    /// The program's counters summed over CPUs: (passed, redirected,
    /// no socket on the queue).
    pub fn counters(&self) -> (u64, u64, u64) {
        let ncpu = possible_cpus();
        let mut out = [0u64; 3];
        let mut vals = vec![0u64; ncpu];
        for (k, o) in out.iter_mut().enumerate() {
            let key = k as u32;
            // SAFETY: a per-CPU array lookup writes ncpu u64 values into
            // `vals`, which has exactly that many.
            let rc = unsafe {
                sys::bpf_map_lookup_elem(
                    self.stats_fd,
                    (&key as *const u32).cast(),
                    vals.as_mut_ptr().cast(),
                )
            };
            if rc == 0 {
                *o = vals.iter().sum();
            }
        }
        (out[0], out[1], out[2])
    }
}

/// Number of possible CPUs (the per-CPU map value count), from sysfs.
fn possible_cpus() -> usize {
    let s = std::fs::read_to_string("/sys/devices/system/cpu/possible").unwrap_or_default();
    s.trim()
        .split(',')
        .filter_map(|r| {
            let mut it = r.split('-');
            let a: usize = it.next()?.trim().parse().ok()?;
            let b: usize = it.next().map_or(Some(a), |b| b.trim().parse().ok())?;
            Some(b.max(a) + 1)
        })
        .max()
        .unwrap_or(1)
}

impl Drop for Steering {
    fn drop(&mut self) {
        self.detach();
        // SAFETY: obj was opened by us and is closed exactly once.
        unsafe { sys::bpf_object__close(self.obj) };
    }
}
