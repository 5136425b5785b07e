//! The XDP steering program (`bpf/steer.bpf.c`, built by `build.rs` and
//! embedded here): loading it, attaching it to an interface, and keeping
//! its maps in step with the service table.
//!
//! The object is handled by `aya`, in Rust, rather than by libbpf through
//! FFI: the maps are typed (keys laid out as the C structs) and the
//! attachment is a `bpf_link`.
//!
//! A director must survive its own daemon: when xvsd crashes, the program
//! and its maps stay attached and pinned under [`PIN_ROOT`]`/<iface>/`
//! (the program then drops the services' frames, which TCP retransmits,
//! instead of letting the kernel reset every connection), and a restarted
//! xvsd takes them over: it loads the program again over the same maps (so
//! the service map stays populated) and swaps it into the pinned link
//! atomically. Only an explicit [`Steering::detach`] (a clean exit)
//! unpins and detaches; dropping a `Steering` leaves a pinned program in
//! place. Without bpffs nothing can be pinned: the program is then owned
//! by the process and goes with it, as a crash-unsafe fallback.
//!
//! One program object is loaded per interface, so every interface has its
//! own XSKMAP indexed by RX queue.
//!
//! IPv6 has maps of its own (`svc6_map`, `nat6_map`, `vip6_map`, keyed by
//! the 16-byte address) rather than a wider IPv4 key, so that the IPv4
//! lookups stay as small as they were. Maps a newer program adds are
//! created next to a previous daemon's pinned ones on takeover.
//!
//! The program also holds the interface's own MAC (`mac_map`): a frame
//! for a service sent to another host's MAC (a veth, a promiscuous NIC, a
//! switch flooding unknown unicast) goes to the kernel, which drops it as
//! another host's, instead of being forwarded by this director too.

use aya::maps::{Array, HashMap, MapData, MapInfo, MapType, PerCpuArray, XskMap};
use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::xdp::XdpLink;
use aya::programs::{Xdp, XdpMode};
use aya::{Ebpf, EbpfLoader, Pod};
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{BorrowedFd, RawFd};
use std::path::{Path, PathBuf};

static STEER_OBJ: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/steer.bpf.o"));

/// The program's name in the object (and in the kernel: how an attached
/// program is recognised as xvs's own).
pub const PROG: &str = "xvs_steer";

/// Where bpffs is mounted.
pub const BPFFS: &str = "/sys/fs/bpf";
/// The directory under which each interface's program is pinned.
pub const PIN_ROOT: &str = "/sys/fs/bpf/xvs";
/// The pinned link's file name in an interface's pin directory.
const LINK_PIN: &str = "link";
/// The maps, pinned under these names in an interface's pin directory.
const MAPS: [&str; 9] = [
    "xsks_map",
    "svc_map",
    "nat_map",
    "vip_map",
    "steer_stats",
    "svc6_map",
    "nat6_map",
    "vip6_map",
    "mac_map",
];

/// Each map's type, key size, value size and capacity, as the C program
/// declares them (in the order of [`MAPS`]): a pinned map that differs was
/// left by an incompatible version and is never reused.
const MAP_SHAPES: [(MapType, u32, u32, u32); 9] = [
    (MapType::XskMap, 4, 4, 256),
    (MapType::Hash, SVC_KEY_SIZE, 4, 65536),
    (MapType::Hash, SVC_KEY_SIZE, 4, 65536),
    (MapType::Hash, 4, 4, 65536),
    (MapType::PerCpuArray, 4, 8, 4),
    (MapType::Hash, SVC6_KEY_SIZE, 4, 65536),
    (MapType::Hash, SVC6_KEY_SIZE, 4, 65536),
    (MapType::Hash, 16, 4, 65536),
    (MapType::Array, 4, 8, 1),
];

/// `struct svc_key`'s size.
const SVC_KEY_SIZE: u32 = std::mem::size_of::<SvcKey>() as u32;
/// `struct svc6_key`'s size.
const SVC6_KEY_SIZE: u32 = std::mem::size_of::<Svc6Key>() as u32;

/// Check that the maps pinned in `dir` (those there are) have the shapes
/// this program declares.
fn check_pinned(dir: &Path, iface_hint: &str) -> io::Result<()> {
    for (name, (ty, key, value, max)) in MAPS.iter().zip(MAP_SHAPES) {
        let path = dir.join(name);
        if !path.exists() {
            continue;
        }
        let info = MapInfo::from_pin(&path).map_err(|e| ctx(path.display(), e))?;
        let same = info.map_type().ok() == Some(ty)
            && info.key_size() == key
            && info.value_size() == value
            && info.max_entries() == max;
        if !same {
            return Err(io::Error::other(format!(
                "{}: pinned by an incompatible version of xvsd (type {:?}, key {} B, \
                 value {} B, {} entries; this version has {ty:?}, {key} B, {value} B, \
                 {max}); `xvsd --cleanup {iface_hint}` removes it, detaching the old program",
                path.display(),
                info.map_type().ok(),
                info.key_size(),
                info.value_size(),
                info.max_entries()
            )));
        }
    }
    Ok(())
}

/// The pin directory of interface `iface`.
pub fn pin_dir(iface: &str) -> PathBuf {
    Path::new(PIN_ROOT).join(iface)
}

/// Whether bpffs is mounted at [`BPFFS`]; if it is not, try to mount it.
pub fn ensure_bpffs() -> io::Result<()> {
    if is_bpffs(Path::new(BPFFS)) {
        return Ok(());
    }
    let src = c"bpf";
    let target = c"/sys/fs/bpf";
    // SAFETY: the three strings are NUL-terminated constants; a null data
    // pointer is allowed for bpffs.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            target.as_ptr(),
            src.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    if is_bpffs(Path::new(BPFFS)) {
        Ok(())
    } else {
        Err(io::Error::other("mounted, but not seen as bpffs"))
    }
}

/// Whether `dir` is on a bpffs.
fn is_bpffs(dir: &Path) -> bool {
    const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: `st` is a plain C struct that statfs fills; all-zero is a
    // valid value for it. `c` is NUL-terminated and lives for the call.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above; `st` is a valid, writable statfs.
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    #[allow(clippy::unnecessary_cast)]
    let magic = st.f_type as i64;
    rc == 0 && magic == BPF_FS_MAGIC
}

/// What a dead daemon left for `iface`, removed: the pinned link (which
/// detaches the program), the pinned maps and the directory; also an
/// `xvs_steer` program attached without a link (old kernels). Returns
/// whether anything was there. The caller makes sure no live daemon holds
/// the interface.
pub fn remove_pins(iface: &str, ifindex: Option<u32>) -> io::Result<bool> {
    let dir = pin_dir(iface);
    let mut found = false;
    for f in std::iter::once(LINK_PIN).chain(MAPS) {
        match std::fs::remove_file(dir.join(f)) {
            Ok(()) => found = true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(ctx(dir.join(f).display(), e)),
        }
    }
    match std::fs::remove_dir(&dir) {
        Ok(()) => found = true,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(ctx(dir.display(), e)),
    }
    if let Some(ifindex) = ifindex {
        // The kernel releases an unpinned link a moment later: wait for it
        // before taking a program still there for a link-less one.
        let mut left = None;
        for _ in 0..100 {
            left = attached_program(ifindex)?.filter(|p| p.name == PROG);
            if left.is_none() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        if let Some(p) = left {
            crate::io::netlink::Netlink::open()?
                .detach_xdp(ifindex)
                .map_err(|e| ctx(format_args!("detaching XDP program {p}"), e))?;
            found = true;
        }
    }
    Ok(found)
}

/// The id of the program the link pinned at `path` runs.
fn pinned_link_program(path: &Path) -> io::Result<u32> {
    let link = FdLink::from(PinnedLink::from_pin(path).map_err(|e| ctx(path.display(), e))?);
    let info = link.info().map_err(|e| ctx(path.display(), e))?;
    Ok(info.program_id())
}

/// An XDP program attached to an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachedProgram {
    /// Kernel program id.
    pub id: u32,
    /// Its name (empty when the kernel does not say).
    pub name: String,
}

impl std::fmt::Display for AttachedProgram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "id {} name {:?}", self.id, self.name)
    }
}

/// The XDP program attached to interface `ifindex`, if any.
pub fn attached_program(ifindex: u32) -> io::Result<Option<AttachedProgram>> {
    let Some(id) = crate::io::netlink::Netlink::open()?.xdp_prog_id(ifindex)? else {
        return Ok(None);
    };
    let name = aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .find(|p| p.id() == id)
        .and_then(|p| p.name_as_str().map(str::to_owned))
        .unwrap_or_default();
    Ok(Some(AttachedProgram { id, name }))
}

/// How the program was attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachMode {
    /// In the driver (native XDP).
    Driver,
    /// Generic (skb) XDP.
    Generic,
    /// Swapped into the link a previous daemon pinned (the mode it chose).
    TakenOver,
}

/// The attachment: pinned (outlives the process) or owned (detached with
/// it).
enum Link {
    /// Pinned at the pin directory's `link` (held for its descriptor).
    Pinned(#[allow(dead_code)] FdLink),
    /// Owned only by this process.
    Owned(XdpLink),
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

    /// `(proto, addr, port)` back from the key.
    pub fn parts(&self) -> (u8, Ipv4Addr, u16) {
        (
            self.proto,
            Ipv4Addr::from(self.addr.to_ne_bytes()),
            u16::from_be(self.port),
        )
    }
}

/// Key of `svc6_map` and `nat6_map`, laid out as `struct svc6_key` in the
/// C program (the address as its 16 bytes, the port in network byte
/// order).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Svc6Key {
    /// IPv6 address, network byte order.
    pub addr: [u8; 16],
    /// Port, network byte order (0: every port).
    pub port: u16,
    /// IP protocol number (0 with port 0 in `nat6_map`: ICMPv6 errors).
    pub proto: u8,
    /// Always 0 (the C struct's padding, part of the hashed key).
    pub pad: u8,
}

// SAFETY: Svc6Key is repr(C), Copy, made of integers only, and has no
// implicit padding (16 + 2 + 1 + 1 bytes, alignment 2), so every byte is
// initialised.
unsafe impl Pod for Svc6Key {}

impl Svc6Key {
    /// The key of `proto [addr]:port`.
    pub fn new(proto: u8, addr: Ipv6Addr, port: u16) -> Self {
        Svc6Key {
            addr: addr.octets(),
            port: port.to_be(),
            proto,
            pad: 0,
        }
    }

    /// `(proto, addr, port)` back from the key.
    pub fn parts(&self) -> (u8, Ipv6Addr, u16) {
        (
            self.proto,
            Ipv6Addr::from(self.addr),
            u16::from_be(self.port),
        )
    }
}

/// Key of `vip6_map` (`struct in6_addr`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Vip6Key([u8; 16]);

// SAFETY: a byte array: no padding, every byte initialised.
unsafe impl Pod for Vip6Key {}

/// Value of `mac_map` (`struct own_mac`): the interface's MAC, `set` 1
/// once known (0: the program checks no MAC).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct OwnMac {
    addr: [u8; 6],
    set: u16,
}

// SAFETY: repr(C), Copy, integers only, no implicit padding (6 + 2 bytes,
// alignment 2): every byte is initialised.
unsafe impl Pod for OwnMac {}

/// The program's own counters (`steer_stats`, summed over CPUs), indexed
/// as the C program's `STEER_*` constants.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SteerCounters {
    /// Frames left to the kernel (not for a service).
    pub pass: u64,
    /// Frames redirected to an AF_XDP socket.
    pub redirect: u64,
    /// Frames for a service arriving on a queue with no socket (dropped:
    /// the daemon is gone or restarting).
    pub no_socket: u64,
    /// Frames for a service addressed to another host's unicast MAC, left
    /// to the kernel (which drops them) instead of redirected.
    pub other_host: u64,
}

/// The steering program loaded and attached to one interface (boxed:
/// aya's objects are large and a `Steering` is moved around).
pub struct Steering {
    ebpf: Box<Ebpf>,
    ifindex: u32,
    link: Option<Link>,
    maps: Box<Maps>,
    /// The pin directory, when pinning is on.
    pins: Option<PathBuf>,
    /// The maps were pinned by a previous daemon: they may hold entries
    /// the current configuration no longer has.
    reused: bool,
    /// The same for the IPv6 maps (absent from older daemons' pins).
    reused6: bool,
}

/// The program's maps, taken out of the object.
struct Maps {
    xsks: XskMap<MapData>,
    svc: HashMap<MapData, SvcKey, u32>,
    nat: HashMap<MapData, SvcKey, u32>,
    vip: HashMap<MapData, u32, u32>,
    stats: PerCpuArray<MapData, u64>,
    svc6: HashMap<MapData, Svc6Key, u32>,
    nat6: HashMap<MapData, Svc6Key, u32>,
    vip6: HashMap<MapData, Vip6Key, u32>,
    mac: Array<MapData, OwnMac>,
}

impl std::fmt::Debug for Steering {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Steering")
            .field("ifindex", &self.ifindex)
            .field("attached", &self.link.is_some())
            .field("pins", &self.pins)
            .finish()
    }
}

/// Remove every key of `map` that `keep` refuses (keys are collected
/// first: a BPF hash map is not changed while it is walked).
fn remove_unless<K: Pod>(map: &mut HashMap<MapData, K, u32>, keep: impl Fn(&K) -> bool) {
    let stale: Vec<K> = map
        .keys()
        .filter_map(Result::ok)
        .filter(|k| !keep(k))
        .collect();
    for k in stale {
        let _ = map.remove(&k);
    }
}

/// Steer what `key` names (map `MAPS[map]`; `what` names it in an error).
fn steer<K: Pod>(
    m: &mut HashMap<MapData, K, u32>,
    key: K,
    map: usize,
    what: impl std::fmt::Display,
) -> io::Result<()> {
    m.insert(key, 1, 0).map_err(|e| insert_error(map, what, e))
}

/// Whether what `key` names is steered.
fn steered<K: Pod>(m: &HashMap<MapData, K, u32>, key: K) -> bool {
    m.get(&key, 0).is_ok()
}

/// Stop steering what `key` names (absent already: nothing to do).
fn unsteer<K: Pod>(m: &mut HashMap<MapData, K, u32>, key: K) {
    let _ = m.remove(&key);
}

/// `e` (with its sources) in the context of `what`.
fn ctx(what: impl std::fmt::Display, e: impl std::error::Error) -> io::Error {
    io::Error::other(format!("{what}: {}", error_chain(&e)))
}

/// The error of inserting `what` into map `MAPS[map]`: a full map
/// (E2BIG, ENOSPC) is said plainly, as [`io::ErrorKind::StorageFull`];
/// anything else with its cause.
fn insert_error(map: usize, what: impl std::fmt::Display, e: aya::maps::MapError) -> io::Error {
    if let aya::maps::MapError::SyscallError(s) = &e {
        if matches!(
            s.io_error.raw_os_error(),
            Some(libc::E2BIG) | Some(libc::ENOSPC)
        ) {
            return io::Error::new(
                io::ErrorKind::StorageFull,
                format!(
                    "the steering map {} is full ({} entries): cannot add {what}",
                    MAPS[map], MAP_SHAPES[map].3
                ),
            );
        }
    }
    ctx(format_args!("inserting {what} in {}", MAPS[map]), e)
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
    /// Load the steering program for interface `ifindex` (not attached
    /// yet). With `pins`, its maps are the ones pinned there (created and
    /// pinned when absent).
    pub fn load(ifindex: u32, pins: Option<&Path>) -> io::Result<Self> {
        let mut reused = false;
        let mut reused6 = false;
        let mut ebpf = match pins {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| ctx(dir.display(), e))?;
                let iface = dir.file_name().map(|f| f.to_string_lossy().into_owned());
                check_pinned(dir, iface.as_deref().unwrap_or("IFACE"))?;
                reused = dir.join(MAPS[1]).exists();
                reused6 = dir.join(MAPS[5]).exists();
                let paths: Vec<(&str, PathBuf)> = MAPS.iter().map(|m| (*m, dir.join(m))).collect();
                let mut loader = EbpfLoader::new();
                for (m, p) in &paths {
                    loader.map_pin_path(m, p.as_path());
                }
                loader.load(STEER_OBJ)
            }
            None => Ebpf::load(STEER_OBJ),
        }
        .map_err(|e| ctx("loading the XDP steering program", e))?;
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
            svc6: take(&mut ebpf, "svc6_map")?,
            nat6: take(&mut ebpf, "nat6_map")?,
            vip6: take(&mut ebpf, "vip6_map")?,
            mac: take(&mut ebpf, "mac_map")?,
        });
        Ok(Steering {
            maps,
            ebpf: Box::new(ebpf),
            ifindex,
            link: None,
            pins: pins.map(Path::to_path_buf),
            reused,
            reused6,
        })
    }

    /// Whether the program stays attached if the process dies.
    pub fn pinned(&self) -> bool {
        matches!(self.link, Some(Link::Pinned(_)))
    }

    fn program(&mut self) -> io::Result<&mut Xdp> {
        self.ebpf
            .program_mut(PROG)
            .ok_or_else(|| io::Error::other(format!("steering program {PROG} not in object")))?
            .try_into()
            .map_err(|e| ctx(format_args!("steering program {PROG}"), e))
    }

    /// Attach to the interface: take over the link a previous daemon
    /// pinned, or else attach anew, in native mode when the driver has it,
    /// else generic mode, and pin the link. An interface carrying another
    /// program is refused, naming it, unless `replace` (then that program
    /// is detached first).
    pub fn attach(&mut self, replace: bool) -> io::Result<AttachMode> {
        let ifindex = self.ifindex;
        if let Some(dir) = self.pins.clone() {
            let path = dir.join(LINK_PIN);
            if path.exists() {
                match pinned_link_program(&path) {
                    // The pinned link is the one this interface runs.
                    Ok(id) if attached_program(ifindex)?.is_some_and(|p| p.id == id) => {
                        return self.take_over(&path);
                    }
                    // Its interface went away (or was renamed): stale.
                    found => {
                        eprintln!(
                            "xvsd: {}: stale (not attached to interface {ifindex}{}); attaching anew",
                            path.display(),
                            found.err().map_or_else(String::new, |e| format!(": {e}"))
                        );
                        std::fs::remove_file(&path).map_err(|e| ctx(path.display(), e))?;
                    }
                }
            }
        }
        if let Some(p) = attached_program(ifindex)? {
            if p.name != PROG && !replace {
                return Err(io::Error::other(format!(
                    "interface {ifindex} carries a foreign XDP program ({p}); \
                     --replace takes it over"
                )));
            }
            crate::io::netlink::Netlink::open()?
                .detach_xdp(ifindex)
                .map_err(|e| ctx(format_args!("detaching XDP program {p}"), e))?;
        }
        let mode = self.attach_new()?;
        if let (Some(dir), Some(Link::Owned(_))) = (&self.pins, &self.link) {
            let Some(Link::Owned(link)) = self.link.take() else {
                unreachable!("matched above")
            };
            match FdLink::try_from(link) {
                Ok(fd) => match fd.pin(dir.join(LINK_PIN)) {
                    Ok(p) => self.link = Some(Link::Pinned(FdLink::from(p))),
                    Err(e) => {
                        self.link = None;
                        return Err(ctx("pinning the XDP link", e));
                    }
                },
                Err(e) => {
                    // A netlink attachment (old kernels) has no link to
                    // pin: attach again, owned by the process.
                    eprintln!(
                        "xvsd: interface {ifindex}: the XDP attachment cannot be pinned ({}): \
                         crash-safety is off for it",
                        error_chain(&e)
                    );
                    self.attach_new()?;
                }
            }
        }
        Ok(mode)
    }

    /// Swap this program into the link pinned at `path`.
    fn take_over(&mut self, path: &Path) -> io::Result<AttachMode> {
        let pinned = PinnedLink::from_pin(path).map_err(|e| ctx(path.display(), e))?;
        let link = XdpLink::try_from(FdLink::from(pinned))
            .map_err(|e| ctx(format_args!("{}: not an XDP link", path.display()), e))?;
        let prog = self.program()?;
        let id = prog
            .attach_to_link(link)
            .map_err(|e| ctx("taking over the pinned XDP link", e))?;
        let link = prog
            .take_link(id)
            .map_err(|e| ctx("taking the XDP link", e))?;
        let fd = FdLink::try_from(link).map_err(|e| ctx("taking the XDP link", e))?;
        self.link = Some(Link::Pinned(fd));
        Ok(AttachMode::TakenOver)
    }

    /// Attach a new link (not pinned).
    fn attach_new(&mut self) -> io::Result<AttachMode> {
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
                    self.link = Some(Link::Owned(link));
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

    /// Detach from the interface and remove the pins: the interface is
    /// left as it was before the daemon (a clean exit). Dropping a
    /// `Steering` without this detaches only a program that is not pinned.
    pub fn detach(&mut self) {
        if let Some(dir) = &self.pins {
            for f in std::iter::once(LINK_PIN).chain(MAPS) {
                let _ = std::fs::remove_file(dir.join(f));
            }
            let _ = std::fs::remove_dir(dir);
        }
        // With no pin left, closing the link detaches the program.
        self.link = None;
    }

    /// Whether the maps were a previous daemon's (see [`Steering::prune`]).
    pub fn reused(&self) -> bool {
        self.reused
    }

    /// Remove from the reused maps every entry not in the current
    /// configuration (`svc`, `nat`: proto, address, port; `vips`), once.
    pub fn prune(
        &mut self,
        svc: &dyn Fn(&SvcKey) -> bool,
        nat: &dyn Fn(&SvcKey) -> bool,
        vips: &dyn Fn(Ipv4Addr) -> bool,
    ) {
        if !self.reused {
            return;
        }
        self.reused = false;
        remove_unless(&mut self.maps.svc, |k| svc(k));
        remove_unless(&mut self.maps.nat, |k| nat(k));
        remove_unless(&mut self.maps.vip, |k| {
            vips(Ipv4Addr::from(k.to_ne_bytes()))
        });
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
        let key = SvcKey::new(proto, vip, port);
        steer(&mut self.maps.svc, key, 1, format_args!("{vip}:{port}"))
    }

    /// Whether `proto vip:port` is steered.
    pub fn has_service(&self, proto: u8, vip: Ipv4Addr, port: u16) -> bool {
        steered(&self.maps.svc, SvcKey::new(proto, vip, port))
    }

    /// Stop steering `proto vip:port`.
    pub fn remove_service(&mut self, proto: u8, vip: Ipv4Addr, port: u16) {
        unsteer(&mut self.maps.svc, SvcKey::new(proto, vip, port));
    }

    /// Start sending the replies of NAT real server `rip:rport` (`proto`;
    /// port 0: any port; proto 0 and port 0: its ICMP errors) to the
    /// sockets.
    pub fn add_nat(&mut self, proto: u8, rip: Ipv4Addr, rport: u16) -> io::Result<()> {
        let key = SvcKey::new(proto, rip, rport);
        steer(&mut self.maps.nat, key, 2, format_args!("{rip}:{rport}"))
    }

    /// Whether the replies of `rip:rport` (`proto`) are steered.
    pub fn has_nat(&self, proto: u8, rip: Ipv4Addr, rport: u16) -> bool {
        steered(&self.maps.nat, SvcKey::new(proto, rip, rport))
    }

    /// Stop sending `rip:rport`'s replies to the sockets.
    pub fn remove_nat(&mut self, proto: u8, rip: Ipv4Addr, rport: u16) {
        unsteer(&mut self.maps.nat, SvcKey::new(proto, rip, rport));
    }

    /// Send ICMP errors addressed to `vip` to the sockets.
    pub fn add_vip(&mut self, vip: Ipv4Addr) -> io::Result<()> {
        steer(&mut self.maps.vip, u32::from_ne_bytes(vip.octets()), 3, vip)
    }

    /// Whether ICMP errors addressed to `vip` are steered.
    pub fn has_vip(&self, vip: Ipv4Addr) -> bool {
        steered(&self.maps.vip, u32::from_ne_bytes(vip.octets()))
    }

    /// Stop sending ICMP errors for `vip` to the sockets.
    pub fn remove_vip(&mut self, vip: Ipv4Addr) {
        unsteer(&mut self.maps.vip, u32::from_ne_bytes(vip.octets()));
    }

    /// Start steering `proto [vip]:port` (port 0 = every port) to the
    /// sockets.
    pub fn add_service6(&mut self, proto: u8, vip: Ipv6Addr, port: u16) -> io::Result<()> {
        let key = Svc6Key::new(proto, vip, port);
        steer(&mut self.maps.svc6, key, 5, format_args!("[{vip}]:{port}"))
    }

    /// Whether `proto [vip]:port` is steered.
    pub fn has_service6(&self, proto: u8, vip: Ipv6Addr, port: u16) -> bool {
        steered(&self.maps.svc6, Svc6Key::new(proto, vip, port))
    }

    /// Stop steering `proto [vip]:port`.
    pub fn remove_service6(&mut self, proto: u8, vip: Ipv6Addr, port: u16) {
        unsteer(&mut self.maps.svc6, Svc6Key::new(proto, vip, port));
    }

    /// Start sending the replies of IPv6 NAT real server `[rip]:rport`
    /// (`proto`; port 0: any port; proto 0 and port 0: its ICMPv6 errors)
    /// to the sockets.
    pub fn add_nat6(&mut self, proto: u8, rip: Ipv6Addr, rport: u16) -> io::Result<()> {
        let key = Svc6Key::new(proto, rip, rport);
        steer(&mut self.maps.nat6, key, 6, format_args!("[{rip}]:{rport}"))
    }

    /// Whether the replies of `[rip]:rport` (`proto`) are steered.
    pub fn has_nat6(&self, proto: u8, rip: Ipv6Addr, rport: u16) -> bool {
        steered(&self.maps.nat6, Svc6Key::new(proto, rip, rport))
    }

    /// Stop sending `[rip]:rport`'s replies to the sockets.
    pub fn remove_nat6(&mut self, proto: u8, rip: Ipv6Addr, rport: u16) {
        unsteer(&mut self.maps.nat6, Svc6Key::new(proto, rip, rport));
    }

    /// Send ICMPv6 errors addressed to `vip` to the sockets.
    pub fn add_vip6(&mut self, vip: Ipv6Addr) -> io::Result<()> {
        steer(&mut self.maps.vip6, Vip6Key(vip.octets()), 7, vip)
    }

    /// Whether ICMPv6 errors addressed to `vip` are steered.
    pub fn has_vip6(&self, vip: Ipv6Addr) -> bool {
        steered(&self.maps.vip6, Vip6Key(vip.octets()))
    }

    /// Stop sending ICMPv6 errors for `vip` to the sockets.
    pub fn remove_vip6(&mut self, vip: Ipv6Addr) {
        unsteer(&mut self.maps.vip6, Vip6Key(vip.octets()));
    }

    /// Remove from reused IPv6 maps every entry not in the current
    /// configuration, once (as [`Steering::prune`] for IPv4).
    pub fn prune6(
        &mut self,
        svc: &dyn Fn(&Svc6Key) -> bool,
        nat: &dyn Fn(&Svc6Key) -> bool,
        vips: &dyn Fn(Ipv6Addr) -> bool,
    ) {
        if !self.reused6 {
            return;
        }
        self.reused6 = false;
        remove_unless(&mut self.maps.svc6, |k| svc(k));
        remove_unless(&mut self.maps.nat6, |k| nat(k));
        remove_unless(&mut self.maps.vip6, |k| vips(Ipv6Addr::from(k.0)));
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
            other_host: read(3),
        }
    }

    /// Tell the program the interface's own MAC: frames for a service sent
    /// to another unicast MAC are then left to the kernel. Cheap (one map
    /// write): called at attach and on every publish, so that a changed
    /// MAC is followed.
    pub fn set_mac(&mut self, mac: [u8; 6]) -> io::Result<()> {
        self.maps
            .mac
            .set(0, OwnMac { addr: mac, set: 1 }, 0)
            .map_err(|e| ctx("setting the interface MAC in mac_map", e))
    }

    /// The MAC the program checks against (None: not set, no check).
    pub fn mac(&self) -> Option<[u8; 6]> {
        self.maps
            .mac
            .get(&0, 0)
            .ok()
            .filter(|m| m.set != 0)
            .map(|m| m.addr)
    }
}

#[cfg(any(test, feature = "testkit"))]
impl Steering {
    /// Run the loaded program once over `frame` as if it arrived on RX
    /// queue 0 (`BPF_PROG_TEST_RUN`; needs no interface) and return its
    /// action: `XDP_PASS` (2) for a frame left to the kernel, `XDP_DROP`
    /// (1) for one steered to a queue without a socket, as in a test.
    pub fn test_run(&mut self, frame: &[u8]) -> io::Result<u32> {
        use std::os::fd::{AsFd, AsRawFd};
        /// `union bpf_attr`'s `test` member.
        #[repr(C)]
        #[derive(Default)]
        struct TestRun {
            prog_fd: u32,
            retval: u32,
            data_size_in: u32,
            data_size_out: u32,
            data_in: u64,
            data_out: u64,
            repeat: u32,
            duration: u32,
            ctx_size_in: u32,
            ctx_size_out: u32,
            ctx_in: u64,
            ctx_out: u64,
            flags: u32,
            cpu: u32,
            batch_size: u32,
            pad: u32,
        }
        const BPF_PROG_TEST_RUN: libc::c_long = 10;
        let fd = self
            .program()?
            .fd()
            .map_err(|e| ctx("steering program", e))?
            .as_fd()
            .as_raw_fd();
        let mut attr = TestRun {
            prog_fd: u32::try_from(fd).map_err(|_| io::Error::other("bad descriptor"))?,
            data_size_in: u32::try_from(frame.len()).map_err(|_| io::Error::other("frame"))?,
            data_in: frame.as_ptr() as u64,
            repeat: 1,
            ..TestRun::default()
        };
        // SAFETY: `attr` is the `test` member of `union bpf_attr` as the
        // kernel lays it out, fully initialised; `data_in` points at
        // `frame`, live and `data_size_in` bytes long for the call, which
        // the kernel only reads (`data_out` is null: nothing is written
        // back but `retval` and `duration` in `attr`).
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_PROG_TEST_RUN,
                &mut attr as *mut TestRun,
                std::mem::size_of::<TestRun>(),
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(attr.retval)
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

#[cfg(test)]
mod tests {
    //! The steering program's decisions, frame by frame, run in the kernel
    //! with `BPF_PROG_TEST_RUN` (root, as CI is): without sockets, a frame
    //! for the data plane is dropped (`no_socket`) and any other passed.
    use super::*;
    use crate::testkit::frame::{eth, icmp_packet, ip, ip_packet, tcp, udp};
    use crate::testkit::v6::{
        eth6, icmp6_packet, ip6, ip6_fragments, ip6_packet, packet_too_big, rip6, Ext, CIP6,
        DIR_IP6, VIP6,
    };
    use crate::testkit::{CLIENT_MAC, DIR_MAC};

    const PASS: u32 = 2;
    const STEER: u32 = 1;

    fn f6(p: &[u8]) -> Vec<u8> {
        eth6(CLIENT_MAC, DIR_MAC, p)
    }

    #[test]
    fn key_layouts_match_the_c_structs() {
        assert_eq!(SVC_KEY_SIZE, 8);
        assert_eq!(SVC6_KEY_SIZE, 20);
        let k = Svc6Key::new(6, VIP6, 80);
        assert_eq!(k.parts(), (6, VIP6, 80));
        assert_eq!(k.port.to_ne_bytes(), [0, 80]);
    }

    #[test]
    fn ipv4_and_ipv6_frames_are_steered_or_passed() {
        let mut s = Steering::load(1, None).expect("load the steering program (root)");
        let vip4 = Ipv4Addr::new(198, 18, 0, 100);
        s.add_service(6, vip4, 80).unwrap();
        s.add_service6(6, VIP6, 80).unwrap();
        s.add_service6(17, VIP6, 0).unwrap();
        s.add_nat6(6, rip6(1), 8080).unwrap();
        s.add_nat6(0, rip6(1), 0).unwrap();
        s.add_vip6(VIP6).unwrap();
        assert!(s.has_service6(6, VIP6, 80) && !s.has_service6(6, VIP6, 81));
        assert!(s.has_nat6(0, rip6(1), 0) && s.has_vip6(VIP6) && !s.has_vip6(CIP6));

        let syn = tcp(40000, 80).syn();
        let c2v = ip6(CIP6, VIP6);
        let dests = |n: usize| (0..n).fold(c2v.clone(), |ip, _| ip.ext(Ext::DestOpts(0)));
        let first_frag = ip6_fragments(&c2v, &syn, &[0; 64], 16, 1).remove(0);
        let reply = ip6_packet(&ip6(rip6(1), CIP6), &tcp(8080, 40000).ack(1), b"");
        let other_reply = ip6_packet(&ip6(rip6(1), CIP6), &tcp(9090, 40000).ack(1), b"");
        let syn6 = ip6_packet(&c2v, &syn, b"");
        let mut cut = f6(&ip6_packet(&c2v.clone().ext(Ext::DestOpts(4)), &syn, b""));
        cut.truncate(14 + 40 + 20);
        let ns = {
            // A neighbour solicitation for the VIP (NDP: the kernel's).
            let mut target = vec![0; 4];
            target.extend_from_slice(&VIP6.octets());
            let snm: Ipv6Addr = "ff02::1:ff00:100".parse().unwrap();
            icmp6_packet(
                &ip6(CIP6, snm).with(|i| i.hop_limit = 255),
                135,
                0,
                [0; 4],
                &target[4..],
            )
        };
        let cases: Vec<(&str, Vec<u8>, u32)> = vec![
            (
                "IPv4 TCP to a VIP port",
                eth(
                    CLIENT_MAC,
                    DIR_MAC,
                    &ip_packet(&ip([198, 18, 0, 10], vip4), &syn, b""),
                ),
                STEER,
            ),
            (
                "IPv4 TCP to another port",
                eth(
                    CLIENT_MAC,
                    DIR_MAC,
                    &ip_packet(&ip([198, 18, 0, 10], vip4), &tcp(1, 81), b""),
                ),
                PASS,
            ),
            (
                "IPv4 ICMP echo",
                eth(
                    CLIENT_MAC,
                    DIR_MAC,
                    &icmp_packet(&ip([198, 18, 0, 10], vip4), 8, 0, [0; 4], b""),
                ),
                PASS,
            ),
            ("IPv6 TCP to a VIP port", f6(&syn6), STEER),
            (
                "IPv6 TCP to another port",
                f6(&ip6_packet(&c2v, &tcp(1, 81), b"")),
                PASS,
            ),
            (
                "IPv6 UDP to a port-0 service",
                f6(&ip6_packet(&c2v, &udp(5, 5353), b"q")),
                STEER,
            ),
            (
                "IPv6 TCP behind hop-by-hop, routing, dest opts",
                f6(&ip6_packet(
                    &c2v.clone()
                        .ext(Ext::HopByHop(0))
                        .ext(Ext::Routing(1))
                        .ext(Ext::DestOpts(3)),
                    &syn,
                    b"",
                )),
                STEER,
            ),
            (
                "eight extension headers",
                f6(&ip6_packet(&dests(8), &syn, b"")),
                STEER,
            ),
            (
                "nine extension headers",
                f6(&ip6_packet(&dests(9), &syn, b"")),
                PASS,
            ),
            (
                "hop-by-hop not first",
                f6(&ip6_packet(&dests(1).ext(Ext::HopByHop(0)), &syn, b"")),
                PASS,
            ),
            ("extension header cut short", cut, PASS),
            (
                "fixed header cut short",
                f6(&syn6)[..14 + 39].to_vec(),
                PASS,
            ),
            ("a first fragment", f6(&first_frag), PASS),
            (
                "ESP",
                f6(&crate::testkit::v6::ip6_raw(&c2v, 50, &[0; 16])),
                PASS,
            ),
            ("a NAT real server's reply", f6(&reply), STEER),
            ("another port of that server", f6(&other_reply), PASS),
            (
                "packet too big to a VIP",
                f6(&packet_too_big(DIR_IP6, VIP6, 1280, &reply)),
                STEER,
            ),
            (
                "an ICMPv6 error from a NAT real server",
                f6(&packet_too_big(rip6(1), CIP6, 1280, &syn6)),
                STEER,
            ),
            (
                "an ICMPv6 error to someone else",
                f6(&packet_too_big(DIR_IP6, CIP6, 1280, &syn6)),
                PASS,
            ),
            (
                "ICMPv6 echo to a VIP",
                f6(&icmp6_packet(&c2v, 128, 0, [0, 1, 0, 1], b"")),
                PASS,
            ),
            ("neighbour solicitation", f6(&ns), PASS),
            (
                "link-local destination",
                f6(&ip6_packet(
                    &ip6(CIP6, "fe80::100".parse().unwrap()),
                    &syn,
                    b"",
                )),
                PASS,
            ),
            (
                "IPv6 header with version 4",
                f6(&{
                    let mut p = syn6.clone();
                    p[0] = 0x40;
                    p
                }),
                PASS,
            ),
        ];
        let before = s.counters();
        let mut failed = Vec::new();
        for (desc, frame, want) in &cases {
            let got = s.test_run(frame).expect("BPF_PROG_TEST_RUN");
            if got != *want {
                failed.push(format!("{desc}: action {got}, want {want}"));
            }
        }
        assert!(failed.is_empty(), "{failed:#?}");
        let after = s.counters();
        let steered = cases.iter().filter(|c| c.2 == STEER).count() as u64;
        assert_eq!(after.no_socket - before.no_socket, steered);
        assert_eq!(after.pass - before.pass, cases.len() as u64 - steered);

        // Removed entries stop steering.
        s.remove_service6(6, VIP6, 80);
        s.remove_nat6(6, rip6(1), 8080);
        s.remove_vip6(VIP6);
        assert_eq!(s.test_run(&f6(&syn6)).unwrap(), PASS);
        assert_eq!(s.test_run(&f6(&reply)).unwrap(), PASS);
        assert_eq!(
            s.test_run(&f6(&packet_too_big(DIR_IP6, VIP6, 1280, &reply)))
                .unwrap(),
            PASS
        );
    }

    #[test]
    fn frames_for_another_hosts_mac_are_passed_and_counted() {
        let mut s = Steering::load(1, None).expect("load the steering program (root)");
        let vip4 = Ipv4Addr::new(198, 18, 0, 100);
        s.add_service(6, vip4, 80).unwrap();
        s.add_service6(6, VIP6, 80).unwrap();
        s.add_nat6(6, rip6(1), 8080).unwrap();
        let other: [u8; 6] = [0x02, 0, 0, 0, 0xee, 0x01];
        let syn = tcp(40000, 80).syn();
        let v4 = |dst| {
            eth(
                CLIENT_MAC,
                dst,
                &ip_packet(&ip([198, 18, 0, 10], vip4), &syn, b""),
            )
        };
        let v6 = |dst| eth6(CLIENT_MAC, dst, &ip6_packet(&ip6(CIP6, VIP6), &syn, b""));
        let reply6 = |dst| {
            eth6(
                CLIENT_MAC,
                dst,
                &ip6_packet(&ip6(rip6(1), CIP6), &tcp(8080, 40000).ack(1), b""),
            )
        };
        // No MAC known yet (a program whose map is not filled): no check.
        assert_eq!(s.mac(), None);
        assert_eq!(s.test_run(&v4(other)).unwrap(), STEER);
        s.set_mac(DIR_MAC).unwrap();
        assert_eq!(s.mac(), Some(DIR_MAC));
        // Only the last byte differs, only the first: both another host's.
        let mut near = DIR_MAC;
        near[5] ^= 1;
        let mut far = DIR_MAC;
        far[0] ^= 2;
        let cases: Vec<(&str, Vec<u8>, u32)> = vec![
            ("IPv4 to the interface's MAC", v4(DIR_MAC), STEER),
            ("IPv4 to another host's MAC", v4(other), PASS),
            ("IPv4 to a MAC differing in its last byte", v4(near), PASS),
            ("IPv4 to a MAC differing in its first byte", v4(far), PASS),
            ("IPv4 to the broadcast MAC", v4([0xff; 6]), STEER),
            (
                "IPv4 to a multicast MAC",
                v4([0x01, 0, 0x5e, 0, 0, 1]),
                STEER,
            ),
            ("IPv6 to the interface's MAC", v6(DIR_MAC), STEER),
            ("IPv6 to another host's MAC", v6(other), PASS),
            (
                "IPv6 to a multicast MAC",
                v6([0x33, 0x33, 0, 0, 0, 1]),
                STEER,
            ),
            ("a NAT reply to another host's MAC", reply6(other), PASS),
            ("a NAT reply to the interface's MAC", reply6(DIR_MAC), STEER),
        ];
        let before = s.counters();
        let mut failed = Vec::new();
        for (desc, frame, want) in &cases {
            let got = s.test_run(frame).expect("BPF_PROG_TEST_RUN");
            if got != *want {
                failed.push(format!("{desc}: action {got}, want {want}"));
            }
        }
        assert!(failed.is_empty(), "{failed:#?}");
        let after = s.counters();
        let passed = cases.iter().filter(|c| c.2 == PASS).count() as u64;
        assert_eq!(after.other_host - before.other_host, passed);
        assert_eq!(after.pass, before.pass, "counted as other_host only");
        assert_eq!(
            after.no_socket - before.no_socket,
            cases.len() as u64 - passed
        );
        // Not for a service: passed as before, whatever the MAC, and not
        // counted as another host's.
        let other_port = eth(
            CLIENT_MAC,
            other,
            &ip_packet(&ip([198, 18, 0, 10], vip4), &tcp(1, 81), b""),
        );
        assert_eq!(s.test_run(&other_port).unwrap(), PASS);
        let last = s.counters();
        assert_eq!(last.other_host, after.other_host);
        assert_eq!(last.pass, after.pass + 1);
        // A changed MAC is followed: the old one is now another host's.
        s.set_mac(other).unwrap();
        assert_eq!(s.test_run(&v4(other)).unwrap(), STEER);
        assert_eq!(s.test_run(&v4(DIR_MAC)).unwrap(), PASS);
    }

    /// Removes a test's pin directory, whatever happens.
    struct Pins(String);

    impl Drop for Pins {
        fn drop(&mut self) {
            let _ = remove_pins(&self.0, None);
        }
    }

    #[test]
    fn ipv6_maps_are_pinned_reused_pruned_and_added_to_older_pins() {
        ensure_bpffs().expect("bpffs (root)");
        let pins = Pins(format!("xvsut{}v6", std::process::id()));
        let dir = pin_dir(&pins.0);
        let vip4 = Ipv4Addr::new(198, 18, 0, 100);
        {
            let mut s = Steering::load(1, Some(&dir)).expect("load with pins");
            assert!(!s.reused());
            s.add_service(6, vip4, 80).unwrap();
            s.add_service6(6, VIP6, 80).unwrap();
            s.add_service6(6, VIP6, 443).unwrap();
            s.add_nat6(0, rip6(1), 0).unwrap();
            s.add_vip6(VIP6).unwrap();
            s.add_vip6(rip6(9)).unwrap();
        }
        for m in MAPS {
            assert!(dir.join(m).exists(), "{m} pinned");
        }
        // A new daemon over the same pins: the IPv6 entries are there, and
        // pruning keeps what the configuration has, once.
        {
            let mut s = Steering::load(1, Some(&dir)).expect("load over pins");
            assert!(s.reused());
            assert!(s.has_service6(6, VIP6, 443) && s.has_nat6(0, rip6(1), 0));
            s.prune6(&|k| k.parts() == (6, VIP6, 80), &|_| false, &|v| v == VIP6);
            assert!(s.has_service6(6, VIP6, 80));
            assert!(!s.has_service6(6, VIP6, 443));
            assert!(!s.has_nat6(0, rip6(1), 0));
            assert!(s.has_vip6(VIP6) && !s.has_vip6(rip6(9)));
            s.prune6(&|_| false, &|_| false, &|_| false);
            assert!(s.has_service6(6, VIP6, 80), "pruned once only");
            assert!(s.has_service(6, vip4, 80), "IPv4 untouched");
        }
        // Pins of a daemon that had no IPv6 maps: taken over, the IPv6
        // maps created and pinned beside them.
        for m in &MAPS[5..] {
            std::fs::remove_file(dir.join(m)).unwrap();
        }
        let s = Steering::load(1, Some(&dir)).expect("load over older pins");
        assert!(s.reused() && s.has_service(6, vip4, 80));
        assert!(!s.has_service6(6, VIP6, 80));
        for m in MAPS {
            assert!(dir.join(m).exists(), "{m} pinned again");
        }
    }
}
