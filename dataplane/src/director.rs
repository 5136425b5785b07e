//! Bringing the data plane up and down: the steering program on every
//! interface, an AF_XDP socket and a pinned worker on every RX queue, the
//! neighbour thread, and snapshot publication (which also keeps the
//! steering program's service map in step).

use crate::build::Steer6Keys;
use crate::conn::state::TcpState;
use crate::conn::table::{ConnTable, Opened, Partition};
use crate::conn::time::{left_ns, ticks};
use crate::conn::tracker::{alive, bind};
use crate::counters::DataplaneCounters;
use crate::io::xdp::{AttachMode, Steering, SvcKey};
use crate::io::xsk::XskGroup;
use crate::neigh::NeighTable;
use crate::pipeline::{Pipeline, PortInfo};
use crate::svc::{Snapshot, SnapshotCell, V4Key};
use crate::sync::{SyncConn, SyncPort};
use crate::worker::{self, Report, Request};
use crossbeam::channel::{unbounded, Sender};
use std::collections::HashSet;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// What to run the data plane on.
#[derive(Debug, Clone)]
pub struct DirectorConfig {
    /// Interfaces to serve (every RX queue of each).
    pub ifaces: Vec<String>,
    /// Cores to pin workers to, round-robin (empty: every core).
    pub cores: Vec<usize>,
    /// Connection table capacity (connections and templates, all
    /// workers together).
    pub conn_max: usize,
    /// UMEM frames per socket.
    pub frames: u32,
    /// The file the connection table lives in, so that it survives the
    /// process (see [`ConnTable::open`]); none: process memory.
    pub table_file: Option<PathBuf>,
    /// Pin each interface's program, maps and link under
    /// [`crate::io::xdp::PIN_ROOT`] so that they outlive a crash, and take
    /// over what a previous daemon pinned there.
    pub pin: bool,
    /// Replace a foreign XDP program found on an interface instead of
    /// refusing the interface.
    pub replace: bool,
}

impl Default for DirectorConfig {
    fn default() -> Self {
        DirectorConfig {
            ifaces: Vec::new(),
            cores: Vec::new(),
            conn_max: 1 << 20,
            frames: 4096,
            table_file: None,
            pin: false,
            replace: false,
        }
    }
}

/// Facts about an interface read from sysfs.
#[derive(Debug, Clone)]
pub struct IfaceInfo {
    /// Name.
    pub name: String,
    /// Index.
    pub ifindex: u32,
    /// MAC address.
    pub mac: [u8; 6],
    /// Number of RX queues.
    pub rx_queues: u32,
    /// IP MTU.
    pub mtu: u16,
}

impl IfaceInfo {
    /// Read the facts of `name` from /sys/class/net.
    pub fn read(name: &str) -> io::Result<Self> {
        if name.is_empty() || name.contains('/') || name.contains("..") {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad interface name {name:?}"),
            ));
        }
        let base = format!("/sys/class/net/{name}");
        let read = |f: &str| {
            std::fs::read_to_string(format!("{base}/{f}"))
                .map(|s| s.trim().to_string())
                .map_err(|e| io::Error::new(e.kind(), format!("interface {name}: {f}: {e}")))
        };
        let ifindex = read("ifindex")?
            .parse()
            .map_err(|_| io::Error::other(format!("interface {name}: bad ifindex")))?;
        let mac = parse_mac(&read("address")?)
            .ok_or_else(|| io::Error::other(format!("interface {name}: no Ethernet address")))?;
        let rx_queues = std::fs::read_dir(format!("{base}/queues"))?
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
            .count()
            .max(1) as u32;
        let mtu = read("mtu")?.parse().unwrap_or(1500);
        Ok(IfaceInfo {
            name: name.to_string(),
            ifindex,
            mac,
            rx_queues,
            mtu,
        })
    }
}

/// Parse `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut m = [0u8; 6];
    let mut it = s.split(':');
    for b in &mut m {
        *b = u8::from_str_radix(it.next()?, 16).ok()?;
    }
    it.next().is_none().then_some(m)
}

struct WorkerHandle {
    name: String,
    requests: Sender<Request>,
    join: JoinHandle<(XskGroup, Report)>,
}

/// One connection or persistence template, as listed by `xvsadm -c`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnInfo {
    /// Protocol number (0 for firewall-mark templates).
    pub proto: u8,
    /// A persistence template.
    pub template: bool,
    /// State name.
    pub state: &'static str,
    /// Seconds until expiry.
    pub expire_secs: u64,
    /// Client (masked, for templates).
    pub cip: IpAddr,
    /// Client port (0 for templates).
    pub cport: u16,
    /// VIP (the mark as an address for firewall-mark templates).
    pub vip: IpAddr,
    /// Virtual port.
    pub vport: u16,
    /// Real server.
    pub rip: IpAddr,
    /// Real server port.
    pub rport: u16,
    /// Installed by the sync daemon (IPVS's origin `SYNC`).
    pub synced: bool,
}

/// An entry one [`Director::publish`] put into a steering map (taken out
/// again if the publish fails).
#[derive(Debug, Clone, Copy)]
enum Added {
    Svc(V4Key),
    Nat(V4Key),
    Vip(Ipv4Addr),
    Svc6(u8, Ipv6Addr, u16),
    Nat6(u8, Ipv6Addr, u16),
    Vip6(Ipv6Addr),
}

/// The running data plane.
pub struct Director {
    table: Arc<ConnTable>,
    /// Each interface's steering program, with the interface's name.
    steering: Vec<(String, Steering)>,
    workers: Vec<WorkerHandle>,
    neigh: Arc<NeighTable>,
    neigh_thread: Option<JoinHandle<()>>,
    cell: Arc<SnapshotCell>,
    stop: Arc<AtomicBool>,
    steered: HashSet<V4Key>,
    nat_steered: HashSet<V4Key>,
    vips_steered: HashSet<Ipv4Addr>,
    /// What the IPv6 maps hold (published from the snapshots).
    steered6: Steer6Keys,
    /// The IPv6 connection table (process memory only: IPv6 connections
    /// do not survive a restart yet).
    table6: Arc<ConnTable<Ipv6Addr>>,
    /// The table came back with entries whose destinations' counts are
    /// still to be made (at the first publish that has destinations).
    loads_pending: bool,
    /// Leave the programs attached when dropped (a live upgrade).
    keep_attached: bool,
    /// Where the snapshot builder keeps its ids (next to the table file).
    id_file: Option<PathBuf>,
    /// Where the workers and the sync daemon exchange records.
    sync: Arc<SyncPort>,
}

impl std::fmt::Debug for Director {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Director")
            .field("workers", &self.workers.len())
            .finish()
    }
}

impl Director {
    /// Start on `cfg.ifaces` (none: control only). Prints one line per
    /// interface and socket saying how it runs. A start that fails after
    /// attaching detaches again: the interfaces are left as they were.
    pub fn start(cfg: &DirectorConfig) -> io::Result<Self> {
        let infos = cfg
            .ifaces
            .iter()
            .map(|i| IfaceInfo::read(i))
            .collect::<io::Result<Vec<_>>>()?;
        let cell = Arc::new(SnapshotCell::new(Snapshot::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let workers: usize = infos
            .iter()
            .map(|i| i.rx_queues as usize)
            .max()
            .unwrap_or(0);
        let (table, parts, restored) = open_table(cfg, workers.max(1))?;
        let table = Arc::new(table);
        let mut parts = parts.into_iter();
        let (table6, parts6) = ConnTable::<Ipv6Addr>::empty(
            crate::pipeline::ipv6_capacity(cfg.conn_max),
            workers.max(1),
        );
        let table6 = Arc::new(table6);
        let mut parts6 = parts6.into_iter();
        let neigh = NeighTable::new(infos.iter().map(|i| i.ifindex).collect());
        let mut me = Director {
            table: table.clone(),
            steering: Vec::new(),
            workers: Vec::new(),
            neigh: neigh.clone(),
            neigh_thread: None,
            cell: cell.clone(),
            stop: stop.clone(),
            steered: HashSet::new(),
            nat_steered: HashSet::new(),
            vips_steered: HashSet::new(),
            steered6: Steer6Keys::default(),
            table6,
            loads_pending: restored > 0,
            keep_attached: false,
            id_file: cfg.table_file.as_ref().map(|p| id_file_of(p)),
            sync: Arc::new(SyncPort::new(workers)),
        };
        let cores: Vec<usize> = if cfg.cores.is_empty() {
            core_affinity::get_core_ids()
                .unwrap_or_default()
                .into_iter()
                .map(|c| c.id)
                .collect()
        } else {
            cfg.cores.clone()
        };
        match me.bring_up(cfg, &infos, &cores, workers, &mut parts, &mut parts6) {
            Ok(()) => Ok(me),
            Err(e) => {
                me.shutdown();
                Err(e)
            }
        }
    }

    /// Attach the programs and start a worker per queue.
    fn bring_up(
        &mut self,
        cfg: &DirectorConfig,
        infos: &[IfaceInfo],
        cores: &[usize],
        workers: usize,
        parts: &mut impl Iterator<Item = crate::conn::table::Partition>,
        parts6: &mut impl Iterator<Item = crate::conn::table::Partition>,
    ) -> io::Result<()> {
        let me = self;
        let (cell, stop, table) = (me.cell.clone(), me.stop.clone(), me.table.clone());
        let mut next_core = 0;
        for info in infos {
            let pins = cfg.pin.then(|| crate::io::xdp::pin_dir(&info.name));
            let mut steer = Steering::load(info.ifindex, pins.as_deref())?;
            steer.set_mac(info.mac)?;
            let mode = steer
                .attach(cfg.replace)
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", info.name)))?;
            eprintln!(
                "xvsd: {}: XDP steering program {}, {} RX queue(s){}",
                info.name,
                match mode {
                    AttachMode::Driver => "attached in native mode",
                    AttachMode::Generic => "attached in generic mode",
                    AttachMode::TakenOver => "taken over from the previous daemon",
                },
                info.rx_queues,
                if steer.pinned() {
                    ""
                } else {
                    " (not pinned: it goes with the daemon)"
                }
            );
            me.steering.push((info.name.clone(), steer));
        }
        // One worker per queue index, with a socket on that queue of every
        // interface that has it, all sharing the worker's UMEM.
        for q in 0..workers as u32 {
            let members: Vec<usize> = (0..infos.len())
                .filter(|&i| q < infos[i].rx_queues)
                .collect();
            let names: Vec<&str> = members.iter().map(|&i| infos[i].name.as_str()).collect();
            let port = XskGroup::open_group(&names, q, cfg.frames)?;
            for (k, &i) in members.iter().enumerate() {
                me.steering[i].1.set_xsk(q, port.fds()[k])?;
            }
            eprintln!(
                "xvsd: queue {q}: AF_XDP socket(s) on {} in {} mode",
                names.join(", "),
                if port.zero_copy() {
                    "zero-copy"
                } else {
                    "copy"
                }
            );
            let core = cores.get(next_core % cores.len().max(1)).copied();

            next_core += 1;
            let name = format!("{}:{q}", names.join("+"));
            let (tx, rx) = unbounded();
            let part = parts.next().expect("one partition per worker");
            let first = &infos[members[0]];
            let mut pipeline = Pipeline::with_table(cell.load().1, table.clone(), part, first.mac);
            let part6 = parts6.next().expect("one IPv6 partition per worker");
            pipeline.set_table6(me.table6.clone(), part6);
            pipeline.set_ports(
                members
                    .iter()
                    .map(|&i| PortInfo {
                        ifindex: infos[i].ifindex,
                        mac: infos[i].mac,
                        mtu: infos[i].mtu,
                    })
                    .collect(),
            );
            pipeline.set_writer(me.workers.len());
            pipeline.set_sync(me.sync.clone(), me.workers.len());
            let (c2, s2, n2) = (cell.clone(), stop.clone(), name.clone());
            let join = std::thread::Builder::new()
                .name(format!("xvs-q{q}"))
                .spawn(move || {
                    if let Some(id) = core {
                        core_affinity::set_for_current(core_affinity::CoreId { id });
                    }
                    worker::run(n2, port, pipeline, c2, s2, rx)
                })?;
            me.workers.push(WorkerHandle {
                name,
                requests: tx,
                join,
            });
        }
        if !infos.is_empty() {
            me.neigh_thread = Some(me.neigh.spawn(stop));
        }
        Ok(())
    }

    /// The next-hop table (for building snapshots).
    pub fn neigh(&self) -> &Arc<NeighTable> {
        &self.neigh
    }

    /// Publish a new snapshot to the workers and the steering programs.
    /// Everything the snapshot steers that is not steered yet goes into
    /// the maps first; if a map refuses (full: an error of kind
    /// [`io::ErrorKind::StorageFull`]), what this call added is taken out
    /// again and the error returned: the maps and the workers stay as
    /// they were. Only then are the old entries removed and the snapshot
    /// handed to the workers.
    pub fn publish(&mut self, snap: Snapshot) -> io::Result<()> {
        let keys: HashSet<V4Key> = snap.v4_keys().copied().collect();
        // NAT replies: (proto, rip, rport) plus (0, rip, 0) for ICMP errors.
        let mut nat: HashSet<V4Key> = HashSet::new();
        for k in snap.nat_keys() {
            nat.insert(k);
            nat.insert(V4Key {
                proto: 0,
                vip: k.vip,
                port: 0,
            });
        }
        let vips: HashSet<Ipv4Addr> = snap.vips().into_iter().collect();
        // Follow a changed interface MAC: the programs and the workers
        // take frames for it only (and the workers send from it).
        for (name, s) in &mut self.steering {
            if let Ok(info) = IfaceInfo::read(name) {
                if s.mac() != Some(info.mac) {
                    if let Err(e) = s.set_mac(info.mac) {
                        eprintln!("xvsd: {name}: {e}");
                    }
                    for w in &self.workers {
                        let _ = w.requests.send(Request::PortMac(info.ifindex, info.mac));
                    }
                }
            }
        }
        let mut added = Vec::new();
        let new6 = &snap.steer6;
        let res = self
            .add_new(&keys, &nat, &vips, &mut added)
            .and_then(|()| self.add_new6(new6, &mut added));
        if let Err(e) = res {
            for (i, a) in added.into_iter().rev() {
                let s = &mut self.steering[i].1;
                match a {
                    Added::Svc(k) => s.remove_service(k.proto, k.vip, k.port),
                    Added::Nat(k) => s.remove_nat(k.proto, k.vip, k.port),
                    Added::Vip(v) => s.remove_vip(v),
                    Added::Svc6(p, a, port) => s.remove_service6(p, a, port),
                    Added::Nat6(p, a, port) => s.remove_nat6(p, a, port),
                    Added::Vip6(v) => s.remove_vip6(v),
                }
            }
            return Err(e);
        }
        for k in self.steered.difference(&keys) {
            for (_, s) in &mut self.steering {
                s.remove_service(k.proto, k.vip, k.port);
            }
        }
        self.steered = keys;
        for k in self.nat_steered.difference(&nat) {
            for (_, s) in &mut self.steering {
                s.remove_nat(k.proto, k.vip, k.port);
            }
        }
        self.nat_steered = nat;
        for v in self.vips_steered.difference(&vips) {
            for (_, s) in &mut self.steering {
                s.remove_vip(*v);
            }
        }
        self.vips_steered = vips;
        let old6 = std::mem::replace(&mut self.steered6, new6.clone());
        for (_, s) in &mut self.steering {
            for &(p, a, port) in old6.svc.difference(&new6.svc) {
                s.remove_service6(p, a, port);
            }
            for &(p, a, port) in old6.nat.difference(&new6.nat) {
                s.remove_nat6(p, a, port);
            }
            for &v in old6.vips.difference(&new6.vips) {
                s.remove_vip6(v);
            }
        }
        if self.loads_pending {
            let n = restore_loads(&self.table, &snap);
            if n > 0 {
                self.loads_pending = false;
                eprintln!(
                    "xvsd: {n} restored connection(s) and template(s) counted against their real servers"
                );
            }
        }
        // Maps a previous daemon pinned: drop what this configuration no
        // longer steers (once, now that everything it steers is in).
        let (svc, nat, vips) = (&self.steered, &self.nat_steered, &self.vips_steered);
        let key = |k: &SvcKey| {
            let (proto, vip, port) = k.parts();
            V4Key { proto, vip, port }
        };
        let k6 = &self.steered6;
        for (_, s) in &mut self.steering {
            if s.reused() {
                s.prune(
                    &|k| svc.contains(&key(k)),
                    &|k| nat.contains(&key(k)),
                    &|v| vips.contains(&v),
                );
            }
            s.prune6(
                &|k| k6.svc.contains(&k.parts()),
                &|k| k6.nat.contains(&k.parts()),
                &|v| k6.vips.contains(&v),
            );
        }
        self.cell.publish(snap);
        Ok(())
    }

    /// Put into every steering program's maps what `keys`, `nat` and
    /// `vips` hold and is not steered yet, noting in `added` each entry
    /// that was not in the map before (by steering program index), so
    /// that a failure can take exactly those out again.
    fn add_new(
        &mut self,
        keys: &HashSet<V4Key>,
        nat: &HashSet<V4Key>,
        vips: &HashSet<Ipv4Addr>,
        added: &mut Vec<(usize, Added)>,
    ) -> io::Result<()> {
        for (i, (_, s)) in self.steering.iter_mut().enumerate() {
            for k in keys.difference(&self.steered) {
                if !s.has_service(k.proto, k.vip, k.port) {
                    s.add_service(k.proto, k.vip, k.port)?;
                    added.push((i, Added::Svc(*k)));
                }
            }
            for k in nat.difference(&self.nat_steered) {
                if !s.has_nat(k.proto, k.vip, k.port) {
                    s.add_nat(k.proto, k.vip, k.port)?;
                    added.push((i, Added::Nat(*k)));
                }
            }
            for v in vips.difference(&self.vips_steered) {
                if !s.has_vip(*v) {
                    s.add_vip(*v)?;
                    added.push((i, Added::Vip(*v)));
                }
            }
        }
        Ok(())
    }

    /// [`Director::add_new`] for the IPv6 maps: what `k` holds and the
    /// maps do not yet.
    fn add_new6(&mut self, k: &Steer6Keys, added: &mut Vec<(usize, Added)>) -> io::Result<()> {
        for (i, (_, s)) in self.steering.iter_mut().enumerate() {
            for &(p, a, port) in k.svc.difference(&self.steered6.svc) {
                if !s.has_service6(p, a, port) {
                    s.add_service6(p, a, port)?;
                    added.push((i, Added::Svc6(p, a, port)));
                }
            }
            for &(p, a, port) in k.nat.difference(&self.steered6.nat) {
                if !s.has_nat6(p, a, port) {
                    s.add_nat6(p, a, port)?;
                    added.push((i, Added::Nat6(p, a, port)));
                }
            }
            for &v in k.vips.difference(&self.steered6.vips) {
                if !s.has_vip6(v) {
                    s.add_vip6(v)?;
                    added.push((i, Added::Vip6(v)));
                }
            }
        }
        Ok(())
    }

    /// The first worker that stopped on its own (a panic or an
    /// unrecoverable ring error), by name, while the data plane runs.
    pub fn failed_worker(&self) -> Option<&str> {
        if self.stop.load(Ordering::Relaxed) {
            return None;
        }
        self.workers
            .iter()
            .find(|w| w.join.is_finished())
            .map(|w| w.name.as_str())
    }

    /// Number of workers.
    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    /// The file the snapshot builder keeps service and destination ids in
    /// (see [`crate::build::SnapshotBuilder::with_id_file`]), so that the
    /// connections of a table that outlives the process keep meaning the
    /// same servers: next to the table file, none without one.
    pub fn id_file(&self) -> Option<PathBuf> {
        self.id_file.clone()
    }

    /// The shared connection table.
    pub fn table(&self) -> &Arc<ConnTable> {
        &self.table
    }

    /// Every live connection and template (read from the shared table).
    pub fn connections(&self) -> Vec<ConnInfo> {
        self.connections_iter().collect()
    }

    /// Every live connection and template, read from the shared table one
    /// entry at a time as the iterator is pulled (on any thread): a
    /// listing of a million connections never holds them all.
    pub fn connections_iter(&self) -> impl Iterator<Item = ConnInfo> + Send + 'static {
        let (_, snap) = self.cell.load();
        let now = ticks(crate::clock::now_ns());
        let (t4, t6) = (self.table.clone(), self.table6.clone());
        let snap6 = snap.clone();
        (0..t4.capacity() as u32)
            .filter_map(move |i| conn_info(&snap, &t4, now, i))
            .chain((0..t6.capacity() as u32).filter_map(move |i| conn_info(&snap6, &t6, now, i)))
    }

    /// Where the workers and the sync daemon's threads exchange records
    /// (roles, queues, counters).
    pub fn sync_port(&self) -> Arc<SyncPort> {
        self.sync.clone()
    }

    /// Every live connection and template, IPv4 then IPv6, as a sync
    /// record (a full resync of a backup), read from the shared tables
    /// without locks.
    pub fn sync_dump(&self, f: &mut dyn FnMut(SyncConn)) {
        let (_, snap) = self.cell.load();
        let now = ticks(crate::clock::now_ns());
        for v in self.table.iter() {
            if !alive(now, &v) {
                continue;
            }
            if let Some(c) = crate::sync::record_of(&snap, &v, v.state, v.expires, now) {
                f(c);
            }
        }
        for v in self.table6.iter() {
            if !alive(now, &v) {
                continue;
            }
            if let Some(c) = crate::sync::record_of(&snap, &v, v.state, v.expires, now) {
                f(c);
            }
        }
    }

    /// Every data-plane counter: the workers' (pipeline and rings),
    /// summed, and each interface's steering program's.
    pub fn counters(&self) -> DataplaneCounters {
        let mut c = DataplaneCounters {
            workers: self.workers.len(),
            ..Default::default()
        };
        for w in &self.workers {
            let (tx, rx) = crossbeam::channel::bounded(1);
            if w.requests.send(Request::Stats(tx)).is_ok() {
                if let Ok((wc, _)) = rx.recv_timeout(Duration::from_secs(2)) {
                    c.add(&wc);
                }
            }
        }
        c.sync = self.sync.counters();
        c.steering = self
            .steering
            .iter()
            .map(|(name, s)| (name.clone(), s.counters()))
            .collect();
        c
    }

    /// Stop the workers, drain their sockets, detach the programs and
    /// remove their pins (a clean stop: the interfaces are left as they
    /// were), and return each worker's report (frame accounting included).
    ///
    /// Only this detaches a pinned program. A data plane dropped without
    /// it (a panic unwinding) or never stopped (`kill -9`, a worker
    /// failure, which exits at once) leaves its programs pinned, dropping
    /// the services' frames until a restarted daemon takes them over.
    pub fn stop(mut self) -> Vec<Report> {
        self.stop.store(true, Ordering::Relaxed);
        let mut reports = Vec::new();
        for w in self.workers.drain(..) {
            match w.join.join() {
                Ok((mut port, mut report)) => {
                    port.drain(200);
                    report.frames = crate::io::Port::accounting(&port);
                    reports.push(report);
                }
                Err(_) => eprintln!("xvsd: worker {} panicked", w.name),
            }
        }
        for (_, s) in &mut self.steering {
            s.detach();
        }
        if let Some(t) = self.neigh_thread.take() {
            let _ = t.join();
        }
        reports
    }
}

impl Director {
    /// Stop for a live upgrade: stop and join the workers, but flush
    /// nothing and leave the steering programs, their maps and the
    /// connection table as they are, for the next daemon (the re-executed
    /// binary) to take over. Returns the workers that panicked.
    pub fn stop_for_upgrade(mut self) -> Vec<String> {
        self.keep_attached = true;
        // Dropped, the programs' links would detach them: leave them to
        // the end of the process image (a pinned program outlives it).
        std::mem::forget(std::mem::take(&mut self.steering));
        self.stop.store(true, Ordering::Relaxed);
        let mut panicked = Vec::new();
        for w in self.workers.drain(..) {
            if w.join.join().is_err() {
                panicked.push(w.name);
            }
        }
        if let Some(t) = self.neigh_thread.take() {
            let _ = t.join();
        }
        panicked
    }

    /// After a failed start: stop what started and detach.
    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for w in self.workers.drain(..) {
            let _ = w.join.join();
        }
        for (_, s) in &mut self.steering {
            s.detach();
        }
        if let Some(t) = self.neigh_thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Director {
    fn drop(&mut self) {
        // Not a clean stop: pinned programs stay (see `stop`).
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The id directory that goes with the table file `table`: `X.ids` for
/// `X.table` (or `X.ids` appended to any other name).
pub fn id_file_of(table: &std::path::Path) -> PathBuf {
    let mut p = table.as_os_str().to_owned();
    if table.extension().is_some_and(|e| e == "table") {
        p = table.with_extension("").into_os_string();
    }
    p.push(".ids");
    PathBuf::from(p)
}

/// The connection table `cfg` asks for, with its partitions and the
/// number of entries it came back with. A table file that cannot be used
/// (no such directory, no room) leaves the table in process memory, said
/// on stderr; one that another live daemon holds is an error.
fn open_table(
    cfg: &DirectorConfig,
    parts: usize,
) -> io::Result<(ConnTable, Vec<Partition>, usize)> {
    let Some(path) = &cfg.table_file else {
        let (t, p) = ConnTable::new(cfg.conn_max, parts);
        return Ok((t, p, 0));
    };
    let shown = path.display();
    match ConnTable::open(path, cfg.conn_max, parts) {
        Ok((t, p, opened)) => {
            let n = match opened {
                Opened::Created => {
                    eprintln!(
                        "xvsd: connection table {shown}: new, {} entries",
                        t.capacity()
                    );
                    0
                }
                Opened::Restored { entries } => {
                    eprintln!("xvsd: connection table {shown}: {entries} connection(s) and template(s) restored");
                    entries
                }
                Opened::Reset(why) => {
                    eprintln!("xvsd: connection table {shown}: {why}: starting empty");
                    0
                }
            };
            Ok((t, p, n))
        }
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => Err(io::Error::new(
            e.kind(),
            format!("connection table {shown}: {e}"),
        )),
        Err(e) => {
            eprintln!(
                "xvsd: connection table {shown}: {e}: kept in process memory, connections will not survive a restart"
            );
            let (t, p) = ConnTable::new(cfg.conn_max, parts);
            Ok((t, p, 0))
        }
    }
}

/// Count every entry of a restored table against its destination in
/// `snap`, as the tracker did when it made them (and will undo when they
/// expire), so ActiveConn/InActConn/PersistConn and the lc schedulers see
/// the connections that survived. Returns the entries counted.
fn restore_loads(table: &ConnTable, snap: &Snapshot) -> usize {
    let mut n = 0;
    for v in table.iter() {
        if let Some(d) = snap.dest(v.dest) {
            bind(d, v.key.template, TcpState::from_u8(v.state));
            n += 1;
        }
    }
    n
}

/// The listing of entry `i` of `table` (either family) at tick `now`, if
/// it is a live connection or template of a destination of `snap`.
fn conn_info<A: crate::flow::Addr>(
    snap: &Snapshot,
    table: &ConnTable<A>,
    now: u32,
    i: u32,
) -> Option<ConnInfo> {
    let v = table.read(i)?;
    // A template past its time still lives while it controls
    // connections (IPVS extends it): list it, as due now.
    if !alive(now, &v) {
        return None;
    }
    let d = snap.dest(v.dest)?;
    let f = v.flow();
    let state = if v.key.template {
        "NONE"
    } else if f.proto == crate::wire::ipv4::PROTO_TCP {
        TcpState::from_u8(v.state).name()
    } else {
        "UDP"
    };
    let left = left_ns(now, v.expires);
    Some(ConnInfo {
        proto: f.proto,
        template: v.key.template,
        state,
        expire_secs: left.div_ceil(xvs_config::time::NS_PER_SEC),
        cip: f.cip.ip(),
        cport: f.cport,
        vip: f.vip.ip(),
        vport: f.vport,
        rip: d.sched.addr,
        rport: if v.key.template && f.vport == 0 {
            0
        } else {
            d.sched.port
        },
        synced: table.synced(v.idx),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::v6::{service6, tcp6_frame, CIP6, VIP6};
    use crate::testkit::{dr_service, tcp_frame, CIP, DIR_MAC, VIP};
    use crate::xmit::tun::TunKind;

    #[test]
    fn connections_of_both_families_are_listed() {
        let (s4, _) = dr_service("rr", 1, None);
        let (s6, _) = service6("rr", &[(crate::svc::Fwd::Dr, TunKind::Ipip)], 6, 80, None);
        let s6 = Arc::new(crate::svc::ServiceRt {
            id: 1,
            persist: None,
            key: s6.key,
            stats: s6.stats.clone(),
            sched: s6.sched.clone(),
        });
        let snap = Arc::new(Snapshot::of_services(&[s4, s6], Default::default()));
        let mut p = Pipeline::new(snap.clone(), 16, DIR_MAC);
        let now_ns = crate::clock::now_ns();
        let mut a = tcp_frame(CIP, 1000, 80, true, false, b"");
        let mut b = tcp6_frame(CIP6, 2000, 80, true, false, b"");
        assert!(matches!(
            p.process(now_ns, &mut a),
            crate::verdict::Verdict::Tx(_)
        ));
        assert!(matches!(
            p.process(now_ns, &mut b),
            crate::verdict::Verdict::Tx(_)
        ));
        let now = ticks(now_ns);
        let v4: Vec<ConnInfo> = (0..p.table().capacity() as u32)
            .filter_map(|i| conn_info(&snap, p.table(), now, i))
            .collect();
        let v6: Vec<ConnInfo> = (0..p.table6().capacity() as u32)
            .filter_map(|i| conn_info(&snap, p.table6(), now, i))
            .collect();
        assert_eq!(v4.len(), 1);
        assert_eq!(v6.len(), 1);
        assert_eq!(
            (v4[0].cip, v4[0].cport, v4[0].vip),
            (
                IpAddr::V4(Ipv4Addr::from(CIP)),
                1000,
                IpAddr::V4(Ipv4Addr::from(VIP))
            )
        );
        assert_eq!(
            (v6[0].cip, v6[0].cport, v6[0].vip, v6[0].vport),
            (IpAddr::V6(CIP6), 2000, IpAddr::V6(VIP6), 80)
        );
        assert_eq!((v6[0].state, v6[0].rip.is_ipv6()), ("SYN_RECV", true));
    }
}
