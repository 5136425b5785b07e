//! Turning the configuration into the data plane's immutable snapshot.
//!
//! This is the one place where the runtime objects the workers use
//! (`DestRt`, `ServiceRt`, `SchedState`, next-hop cells) are made: the
//! control plane hands over a plain [`Config`] and never sees them.
//!
//! Scheduler state belongs to the service and outlives snapshots: a
//! service keeps its scheduler instance (and so its rr/wrr position) across
//! changes of other services, gets `update` only when its own destination
//! list changed, and a new instance only when `-E -s` changed the
//! scheduler or its flags.
//!
//! Connections name their service and destination by small ids, and the
//! connection table can outlive the daemon (see `conn::table`). So that
//! the ids mean the same in the next daemon, the builder can keep them in
//! an id directory, a small file next to the table's: a restarted builder
//! gives every (service, address:port) the id it had, and never hands an
//! id some surviving connection may still name to anything else.

use crate::neigh::NeighTable;
use crate::svc::{DestRt, Fwd, SchedState, ServiceRt, Snapshot, SvcKey, SyncedKey, V4Key, V6Key};
use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use xvs_config::Config;

/// Most synced-only destinations at once: records naming ever more unknown
/// servers (a confused or hostile peer on the sync network) must not grow
/// the destination arena and the neighbour table without end.
pub const MAX_SYNCED: usize = 4096;

/// Why no synced-only destination was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncedRefused {
    /// The service does not exist here.
    NoService,
    /// [`MAX_SYNCED`] exist already.
    Full,
}

/// How long a synced-only destination lives at least, used or not: the
/// records it was made for are installed after the next publish, and the
/// build in between must not free it.
pub const SYNCED_GRACE: Duration = Duration::from_secs(10);

/// What decides whether a destination list changed for the scheduler.
type DestSig = Vec<(IpAddr, u16, i32, i32, u32, u32)>;

struct SvcState {
    id: u32,
    sched: String,
    flags: u32,
    sig: DestSig,
    state: Arc<Mutex<SchedState>>,
}

/// Identity of a destination: its service and address:port.
type DestIdent = (SvcKey, IpAddr, u16);

/// Identity of a synced-only destination: its service, address:port and
/// the forwarding method the records name.
type SyncedIdent = (SvcKey, IpAddr, u16, Fwd);

/// A synced-only destination and when it was made.
struct Synced {
    dest: Arc<DestRt>,
    made: Instant,
}

/// Stable small integers for services and destinations (connections refer
/// to them by id), reused only once nothing refers to them any more.
#[derive(Default)]
struct Ids {
    next: u32,
    free: Vec<u32>,
}

impl Ids {
    fn take(&mut self) -> u32 {
        self.free.pop().unwrap_or_else(|| {
            self.next += 1;
            self.next - 1
        })
    }
}

/// Builds snapshots, carrying scheduler state from one to the next.
#[derive(Default)]
pub struct SnapshotBuilder {
    services: HashMap<SvcKey, SvcState>,
    svc_ids: Ids,
    dest_ids: Ids,
    dests: HashMap<DestIdent, u32>,
    /// Deleted destinations still counted by connections or templates.
    trash: Vec<Arc<DestRt>>,
    /// The live destinations of the last snapshot.
    last: Vec<Arc<DestRt>>,
    /// Who the destinations in the trash were (for the id directory).
    trash_idents: HashMap<u32, DestIdent>,
    /// The id directory, if ids are to survive the process.
    id_file: Option<PathBuf>,
    /// Ids of a previous process not claimed yet: given back to the same
    /// service or destination when it comes, to nothing else ever.
    reserved_svcs: HashMap<SvcKey, u32>,
    /// As `reserved_svcs`, for destinations.
    reserved_dests: HashMap<DestIdent, u32>,
    /// Destinations made for sync records whose real server is not
    /// configured here (see `svc::SyncedKey`), freed like the trash.
    synced: HashMap<SyncedIdent, Synced>,
    /// As `reserved_dests`, for synced-only destinations.
    reserved_synced: HashMap<SyncedIdent, u32>,
    /// How long an unused synced-only destination is kept (tests shorten
    /// it); `None`: [`SYNCED_GRACE`].
    synced_grace: Option<Duration>,
    /// What the id directory holds now.
    written: String,
}

impl std::fmt::Debug for SnapshotBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotBuilder")
            .field("services", &self.services.len())
            .finish()
    }
}

impl SnapshotBuilder {
    /// A builder with no history.
    pub fn new() -> Self {
        Self::default()
    }

    /// A builder that keeps its ids in the file at `path` (none: nowhere,
    /// as [`SnapshotBuilder::new`]), starting from the ids the file holds:
    /// those of the daemon that ran before. A file that cannot be read is
    /// said on stderr and treated as empty.
    pub fn with_id_file(path: Option<PathBuf>) -> Self {
        let mut b = Self::new();
        let Some(path) = path else {
            return b;
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => b.load_ids(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => eprintln!(
                "xvsd: id directory {}: {e}: starting afresh",
                path.display()
            ),
        }
        b.written = ids_text(&b.reserved_svcs, &b.reserved_dests, &b.reserved_synced);
        b.id_file = Some(path);
        b
    }

    /// Reserve the ids in `text` (an id directory): the next ids to hand
    /// out are past them, and the gaps below are free.
    fn load_ids(&mut self, text: &str) {
        // An id named twice (a damaged file) is reserved for nobody: two
        // holders could not both be right.
        let mut seen_s = std::collections::HashSet::new();
        let mut seen_d = std::collections::HashSet::new();
        for line in text.lines() {
            let mut t = line.split_whitespace();
            match t.next() {
                Some("s") => {
                    if let (Some(k), Some(id)) = (parse_svc(&mut t), parse_id(&mut t)) {
                        if seen_s.insert(id) {
                            self.reserved_svcs.insert(k, id);
                        }
                    }
                }
                Some("u") => {
                    let ident = parse_svc(&mut t).and_then(|k| {
                        let a: IpAddr = t.next()?.parse().ok()?;
                        let p: u16 = t.next()?.parse().ok()?;
                        let f = fwd_parse(t.next()?)?;
                        Some((k, a, p, f))
                    });
                    if let (Some(i), Some(id)) = (ident, parse_id(&mut t)) {
                        if seen_d.insert(id) {
                            self.reserved_synced.insert(i, id);
                        }
                    }
                }
                Some("d") => {
                    let ident = parse_svc(&mut t).and_then(|k| {
                        let a: IpAddr = t.next()?.parse().ok()?;
                        let p: u16 = t.next()?.parse().ok()?;
                        Some((k, a, p))
                    });
                    if let (Some(i), Some(id)) = (ident, parse_id(&mut t)) {
                        if seen_d.insert(id) {
                            self.reserved_dests.insert(i, id);
                        }
                    }
                }
                _ => {}
            }
        }
        self.svc_ids = Ids::reserving(self.reserved_svcs.values());
        self.dest_ids = Ids::reserving(
            self.reserved_dests
                .values()
                .chain(self.reserved_synced.values()),
        );
    }

    /// Write the id directory if it changed (atomically: a temporary file
    /// renamed over it).
    fn save_ids(&mut self) {
        let Some(path) = &self.id_file else {
            return;
        };
        let mut svcs: HashMap<SvcKey, u32> = self.reserved_svcs.clone();
        svcs.extend(self.services.iter().map(|(k, st)| (*k, st.id)));
        let mut dests = self.reserved_dests.clone();
        dests.extend(self.dests.iter().map(|(k, id)| (*k, *id)));
        dests.extend(self.trash_idents.iter().map(|(id, k)| (*k, *id)));
        let mut synced = self.reserved_synced.clone();
        synced.extend(self.synced.iter().map(|(k, s)| (*k, s.dest.id)));
        let text = ids_text(&svcs, &dests, &synced);
        if text == self.written {
            return;
        }
        match write_atomically(path, &text) {
            Ok(()) => self.written = text,
            Err(e) => eprintln!("xvsd: id directory {}: {e}", path.display()),
        }
    }

    /// Whether deleted or synced-only destinations are still waiting for
    /// their last connection to go: while so, the daemon rebuilds
    /// periodically, and the first build after the last connection expired
    /// frees them.
    pub fn has_trash(&self) -> bool {
        !self.trash.is_empty() || !self.synced.is_empty()
    }

    /// Make sure the next snapshot has a synced-only destination for real
    /// server `addr:port` of service `svc`, forwarded by `fwd` (a sync
    /// record named it, and this director does not have it under that
    /// service): `true` made now (the caller publishes), `false` it
    /// existed already.
    pub fn want_synced(
        &mut self,
        svc: SvcKey,
        addr: IpAddr,
        port: u16,
        fwd: Fwd,
        neigh: &NeighTable,
    ) -> Result<bool, SyncedRefused> {
        if !self.services.contains_key(&svc) {
            return Err(SyncedRefused::NoService);
        }
        let ident = (svc, addr, port, fwd);
        if self.synced.contains_key(&ident) {
            return Ok(false);
        }
        if self.synced.len() >= MAX_SYNCED {
            return Err(SyncedRefused::Full);
        }
        let id = self
            .reserved_synced
            .remove(&ident)
            .unwrap_or_else(|| self.dest_ids.take());
        let dest = Arc::new(DestRt {
            id,
            in_service: false,
            // Weight 0 and its own load: no scheduler sees it.
            sched: xvs_scheduler::Dest::new(addr, port, 0),
            fwd,
            tun: xvs_config::tun::TunKind::default(),
            stats: Arc::new(xvs_config::stats::Counters::default()),
            neigh: neigh.cell(addr),
            outer4: DestRt::outer4_of(xvs_config::tun::TunKind::default(), addr),
            nat4: DestRt::nat4_of(&svc, addr, port),
        });
        self.synced.insert(
            ident,
            Synced {
                dest,
                made: Instant::now(),
            },
        );
        self.save_ids();
        Ok(true)
    }

    /// Keep unused synced-only destinations `grace` instead of
    /// [`SYNCED_GRACE`] (tests).
    pub fn set_synced_grace(&mut self, grace: Duration) {
        self.synced_grace = Some(grace);
    }

    /// How many synced-only destinations exist.
    pub fn synced_count(&self) -> usize {
        self.synced.len()
    }

    /// The snapshot of `cfg`. Next hops get their MAC cells from `neigh`
    /// (IPv6 real servers too, through NDP, also those tunnelled to from
    /// an IPv4 service: their cells carry the route's IPv6 source).
    pub fn build(&mut self, cfg: &Config, neigh: &NeighTable) -> Snapshot {
        let mut live = HashMap::new();
        let mut out = Vec::new();
        let mut all_dests: Vec<Arc<DestRt>> = Vec::new();
        let mut live_dests: HashMap<DestIdent, u32> = HashMap::new();
        let mut prev_dests = std::mem::take(&mut self.dests);
        for s in &cfg.services {
            let dests: Vec<Arc<DestRt>> = s
                .dests
                .iter()
                .map(|d| {
                    let ident = (s.key, d.addr, d.port);
                    let id = prev_dests
                        .remove(&ident)
                        .or_else(|| self.reserved_dests.remove(&ident))
                        .unwrap_or_else(|| self.dest_ids.take());
                    live_dests.insert(ident, id);
                    let mut view = xvs_scheduler::Dest::new(d.addr, d.port, d.weight);
                    view.last_weight = d.last_weight;
                    view.u_threshold = d.u_threshold;
                    view.l_threshold = d.l_threshold;
                    view.load = d.load.clone();
                    let cell = neigh.cell(d.addr);
                    Arc::new(DestRt {
                        id,
                        in_service: true,
                        sched: view,
                        fwd: d.fwd,
                        tun: d.tun,
                        stats: d.counters.clone(),
                        neigh: cell,
                        outer4: DestRt::outer4_of(d.tun, d.addr),
                        nat4: DestRt::nat4_of(&s.key, d.addr, d.port),
                    })
                })
                .collect();
            all_dests.extend(dests.iter().cloned());
            let sig: DestSig = s
                .dests
                .iter()
                .map(|d| {
                    (
                        d.addr,
                        d.port,
                        d.weight,
                        d.last_weight,
                        d.u_threshold,
                        d.l_threshold,
                    )
                })
                .collect();
            let prev = self.services.remove(&s.key);
            let st = match prev {
                Some(mut p) => {
                    {
                        let mut g = p.state.lock().unwrap_or_else(|e| e.into_inner());
                        if p.sched != s.sched || p.flags != s.flags {
                            if let Ok(new) = xvs_scheduler::new(&s.sched, s.flags) {
                                g.set_dests(dests.clone());
                                g.set_scheduler(new);
                            }
                        } else if p.sig != sig {
                            g.set_dests(dests.clone());
                        } else {
                            // Same list: refresh the runtime objects (e.g. a
                            // forwarding-method edit) without a reset.
                            g.set_dests_keep_position(dests.clone());
                        }
                    }
                    p.sched = s.sched.clone();
                    p.flags = s.flags;
                    p.sig = sig;
                    p
                }
                None => {
                    // The model only accepts scheduler names that exist.
                    let Ok(sched) = xvs_scheduler::new(&s.sched, s.flags) else {
                        continue;
                    };
                    let id = match self.reserved_svcs.remove(&s.key) {
                        Some(id) => id,
                        None => self.svc_ids.take(),
                    };
                    SvcState {
                        id,
                        sched: s.sched.clone(),
                        flags: s.flags,
                        sig,
                        state: Arc::new(Mutex::new(SchedState::new(sched, dests))),
                    }
                }
            };
            out.push(Arc::new(ServiceRt {
                id: st.id,
                persist: s.persist,
                key: s.key,
                stats: s.counters.clone(),
                sched: st.state.clone(),
            }));
            live.insert(s.key, st);
        }
        // Services gone: their ids are free (their connections keep
        // forwarding through their destinations, which go to the trash).
        for (_, gone) in self.services.drain() {
            self.svc_ids.free.push(gone.id);
        }
        self.services = live;
        // Destinations gone: to the trash while still referenced.
        for (ident, id) in prev_dests.drain() {
            if let Some(d) = self.last.iter().find(|d| d.id == id) {
                self.trash_idents.insert(id, ident);
                self.trash.push(Arc::new(DestRt {
                    id,
                    in_service: false,
                    sched: d.sched.clone(),
                    fwd: d.fwd,
                    tun: d.tun,
                    stats: d.stats.clone(),
                    neigh: d.neigh.clone(),
                    outer4: d.outer4,
                    nat4: d.nat4,
                }));
            } else {
                self.dest_ids.free.push(id);
            }
        }
        let mut kept = Vec::new();
        for d in self.trash.drain(..) {
            let l = &d.sched.load;
            if l.active() + l.inactive() + l.persist() > 0 {
                kept.push(d);
            } else {
                self.trash_idents.remove(&d.id);
                self.dest_ids.free.push(d.id);
            }
        }
        self.trash = kept;
        self.dests = live_dests;
        self.last = all_dests.clone();
        all_dests.extend(self.trash.iter().cloned());
        let marks = cfg.marks.iter().filter_map(|(k, mark)| match *k {
            SvcKey::Addr {
                proto,
                vip: IpAddr::V4(vip),
                port,
            } => Some((V4Key { proto, vip, port }, *mark)),
            _ => None,
        });
        // Synced-only destinations: freed when no connection or template
        // counts against them any more (and the grace is over); the others
        // stay in the arena, indexed under their service while it exists.
        let mut index = Vec::new();
        let grace = self.synced_grace.unwrap_or(SYNCED_GRACE);
        let dest_ids = &mut self.dest_ids;
        self.synced.retain(|_, s| {
            let l = &s.dest.sched.load;
            let keep = l.active() + l.inactive() + l.persist() > 0 || s.made.elapsed() < grace;
            if !keep {
                dest_ids.free.push(s.dest.id);
            }
            keep
        });
        for ((svc, addr, port, fwd), s) in &self.synced {
            if let Some(st) = self.services.get(svc) {
                let key = SyncedKey {
                    svc: st.id,
                    addr: *addr,
                    port: *port,
                    fwd: *fwd,
                };
                index.push((key, s.dest.clone()));
            } else {
                all_dests.push(s.dest.clone());
            }
        }
        self.save_ids();
        let mut snap = Snapshot::new(out, all_dests, marks, cfg.timeouts);
        snap.set_marks6(cfg.marks.iter().filter_map(|(k, mark)| match *k {
            SvcKey::Addr {
                proto,
                vip: IpAddr::V6(vip),
                port,
            } => Some((V6Key { proto, vip, port }, *mark)),
            _ => None,
        }));
        snap.add_synced(index);
        snap.sloppy_tcp = cfg.sloppy_tcp;
        snap.steer6 = steer6_keys(cfg);
        snap
    }
}

impl Ids {
    /// Ids handing out none of `taken`: past the largest, and the gaps
    /// below it.
    fn reserving<'a>(taken: impl Iterator<Item = &'a u32> + Clone) -> Ids {
        let next = taken
            .clone()
            .map(|&i| i.saturating_add(1))
            .max()
            .unwrap_or(0);
        let used: std::collections::HashSet<u32> = taken.copied().collect();
        Ids {
            next,
            // Popped from the end: lowest first.
            free: (0..next).rev().filter(|i| !used.contains(i)).collect(),
        }
    }
}

/// A service key as the id directory writes it.
fn svc_text(k: &SvcKey) -> String {
    match k {
        SvcKey::Addr { proto, vip, port } => format!("a {proto} {vip} {port}"),
        SvcKey::Fwmark { mark, v6 } => format!("f {mark} {}", u8::from(*v6)),
    }
}

fn parse_svc<'a>(t: &mut impl Iterator<Item = &'a str>) -> Option<SvcKey> {
    match t.next()? {
        "a" => Some(SvcKey::Addr {
            proto: t.next()?.parse().ok()?,
            vip: t.next()?.parse().ok()?,
            port: t.next()?.parse().ok()?,
        }),
        "f" => Some(SvcKey::Fwmark {
            mark: t.next()?.parse().ok()?,
            v6: t.next()? == "1",
        }),
        _ => None,
    }
}

fn fwd_text(f: Fwd) -> &'static str {
    match f {
        Fwd::Dr => "dr",
        Fwd::Tun => "tun",
        Fwd::Nat => "nat",
    }
}

fn fwd_parse(s: &str) -> Option<Fwd> {
    match s {
        "dr" => Some(Fwd::Dr),
        "tun" => Some(Fwd::Tun),
        "nat" => Some(Fwd::Nat),
        _ => None,
    }
}

fn parse_id<'a>(t: &mut impl Iterator<Item = &'a str>) -> Option<u32> {
    t.next()?.parse().ok()
}

/// The id directory's text: one line per service (`s KEY ID`), per
/// destination (`d KEY ADDR PORT ID`) and per synced-only destination
/// (`u KEY ADDR PORT METHOD ID`), sorted.
fn ids_text(
    svcs: &HashMap<SvcKey, u32>,
    dests: &HashMap<DestIdent, u32>,
    synced: &HashMap<SyncedIdent, u32>,
) -> String {
    let mut lines: Vec<String> =
        svcs.iter()
            .map(|(k, id)| format!("s {} {id}\n", svc_text(k)))
            .chain(
                dests
                    .iter()
                    .map(|((k, a, p), id)| format!("d {} {a} {p} {id}\n", svc_text(k))),
            )
            .chain(synced.iter().map(|((k, a, p, f), id)| {
                format!("u {} {a} {p} {} {id}\n", svc_text(k), fwd_text(*f))
            }))
            .collect();
    lines.sort();
    lines.concat()
}

/// Replace the file at `path` with `text`: a temporary file next to it,
/// renamed over it, so a crash leaves the old or the new one whole.
fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// What the steering program's IPv6 maps must hold for a configuration
/// (`svc6_map`, `nat6_map`, `vip6_map`), by the rules of the IPv4 maps:
/// every IPv6 address service's `(proto, vip, port)`; for each IPv6 NAT
/// real server, `(proto, rip, rport)` (TCP and UDP for a firewall-mark
/// service) and `(0, rip, 0)` for its ICMPv6 errors; every IPv6 VIP.
/// Each snapshot carries its configuration's (`Snapshot::steer6`), and
/// the director publishes them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Steer6Keys {
    /// `(proto, vip, port)` of IPv6 services (port 0: every port).
    pub svc: BTreeSet<(u8, Ipv6Addr, u16)>,
    /// `(proto, rip, rport)` of IPv6 NAT real servers.
    pub nat: BTreeSet<(u8, Ipv6Addr, u16)>,
    /// IPv6 VIPs.
    pub vips: BTreeSet<Ipv6Addr>,
}

/// The IPv6 steering keys of `cfg` (see [`Steer6Keys`]).
pub fn steer6_keys(cfg: &Config) -> Steer6Keys {
    let mut k = Steer6Keys::default();
    for s in &cfg.services {
        let protos = match s.key {
            SvcKey::Addr {
                proto,
                vip: IpAddr::V6(vip),
                port,
            } => {
                k.svc.insert((proto, vip, port));
                k.vips.insert(vip);
                [Some(proto), None]
            }
            SvcKey::Addr { proto, .. } => [Some(proto), None],
            SvcKey::Fwmark { .. } => [Some(6), Some(17)],
        };
        for d in s.dests.iter().filter(|d| d.fwd == Fwd::Nat) {
            let IpAddr::V6(rip) = d.addr else { continue };
            for p in protos.into_iter().flatten() {
                k.nat.insert((p, rip, d.port));
            }
            k.nat.insert((0, rip, 0));
        }
    }
    // Marked IPv6 triples go to the sockets like address services.
    for (key, _) in &cfg.marks {
        if let SvcKey::Addr {
            proto,
            vip: IpAddr::V6(vip),
            port,
        } = *key
        {
            k.svc.insert((proto, vip, port));
            k.vips.insert(vip);
        }
    }
    k
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::{self, state::TcpState};
    use crate::svc::Fwd;
    use std::net::Ipv4Addr;
    use xvs_config::{DestConf, ServiceConf, TunKind};
    use xvs_scheduler::{DestLoad, Flow};

    fn vip(port: u16) -> SvcKey {
        SvcKey::Addr {
            proto: 6,
            vip: IpAddr::V4(Ipv4Addr::new(198, 18, 0, 100)),
            port,
        }
    }

    fn dest(last: u8) -> DestConf {
        DestConf {
            addr: IpAddr::V4(Ipv4Addr::new(198, 18, 1, last)),
            port: 80,
            weight: 1,
            last_weight: 1,
            u_threshold: 0,
            l_threshold: 0,
            fwd: Fwd::Dr,
            tun: TunKind::Ipip,
            load: Arc::new(DestLoad::default()),
            counters: Arc::default(),
        }
    }

    fn service(key: SvcKey, dests: Vec<DestConf>) -> ServiceConf {
        ServiceConf {
            key,
            sched: "rr".into(),
            flags: 0,
            persist: None,
            dests,
            counters: Arc::default(),
        }
    }

    fn flow() -> Flow {
        Flow {
            proto: 6,
            saddr: IpAddr::V4(Ipv4Addr::new(198, 18, 2, 1)),
            sport: 1000,
            daddr: IpAddr::V4(Ipv4Addr::new(198, 18, 0, 100)),
            dport: 80,
        }
    }

    /// The last octet of the server the service on `port` schedules next.
    fn next(snap: &Snapshot, port: u16) -> u8 {
        let s = snap
            .lookup(6, Ipv4Addr::new(198, 18, 0, 100), port)
            .expect("service");
        let d = s.sched.lock().unwrap().schedule(&flow(), 0).expect("dest");
        d.rip().expect("v4").octets()[3]
    }

    fn live_ids(snap: &Snapshot) -> Vec<(u32, bool)> {
        (0..16)
            .filter_map(|i| snap.dest(i).map(|d| (d.id, d.in_service)))
            .collect()
    }

    #[test]
    fn synced_only_destinations_are_indexed_not_scheduled_and_freed_when_unused() {
        let neigh = NeighTable::new(Vec::new());
        let cfg = Config {
            services: vec![service(vip(80), vec![dest(1), dest(2)])],
            ..Config::default()
        };
        let mut b = SnapshotBuilder::new();
        b.build(&cfg, &neigh);
        let rip9 = IpAddr::V4(Ipv4Addr::new(198, 18, 1, 9));
        assert_eq!(
            b.want_synced(vip(81), rip9, 80, Fwd::Dr, &neigh),
            Err(SyncedRefused::NoService)
        );
        assert_eq!(b.want_synced(vip(80), rip9, 80, Fwd::Dr, &neigh), Ok(true));
        assert_eq!(b.want_synced(vip(80), rip9, 80, Fwd::Dr, &neigh), Ok(false));
        assert_eq!(b.want_synced(vip(80), rip9, 80, Fwd::Nat, &neigh), Ok(true));
        assert!(b.has_trash());
        let s = b.build(&cfg, &neigh);
        let svc = s.lookup(6, Ipv4Addr::new(198, 18, 0, 100), 80).unwrap();
        let key = |fwd| SyncedKey {
            svc: svc.id,
            addr: rip9,
            port: 80,
            fwd,
        };
        let d = s.synced_dest(&key(Fwd::Dr)).expect("indexed").clone();
        assert!(!d.in_service);
        assert_eq!(s.dest(d.id).map(|x| x.id), Some(d.id));
        assert!(s.synced_dest(&key(Fwd::Tun)).is_none());
        // No scheduler sees it.
        assert_eq!(svc.sched.lock().unwrap().dests().len(), 2);
        // The NAT one's replies are steered to the sockets.
        assert!(s
            .nat_keys()
            .iter()
            .any(|k| k.vip == Ipv4Addr::new(198, 18, 1, 9)));
        // Within the grace both stay; after it, the used one stays and
        // the unused one is freed at the next build.
        assert!(s.synced_dest(&key(Fwd::Nat)).is_some());
        b.set_synced_grace(Duration::ZERO);
        conn::tracker::bind(&d, false, TcpState::Established);
        let s = b.build(&cfg, &neigh);
        assert!(s.synced_dest(&key(Fwd::Dr)).is_some());
        assert!(s.synced_dest(&key(Fwd::Nat)).is_none());
        assert_eq!(b.synced_count(), 1);
        // Its service removed: still in the arena for its connections.
        let empty = Config::default();
        let s = b.build(&empty, &neigh);
        assert!(s.dest(d.id).is_some());
        conn::tracker::unbind(&d, false, TcpState::Established);
        let s = b.build(&empty, &neigh);
        assert!(s.dest(d.id).is_none());
        assert!(!b.has_trash());
    }

    #[test]
    fn synced_only_destinations_are_bounded() {
        let neigh = NeighTable::new(Vec::new());
        let cfg = Config {
            services: vec![service(vip(80), vec![dest(1)])],
            ..Config::default()
        };
        let mut b = SnapshotBuilder::new();
        b.build(&cfg, &neigh);
        let addr = |i: usize| IpAddr::V4(Ipv4Addr::from(0xc612_0000 + i as u32));
        for i in 0..MAX_SYNCED {
            assert_eq!(
                b.want_synced(vip(80), addr(i), 80, Fwd::Dr, &neigh),
                Ok(true)
            );
        }
        let over = MAX_SYNCED;
        assert_eq!(
            b.want_synced(vip(80), addr(over), 80, Fwd::Dr, &neigh),
            Err(SyncedRefused::Full)
        );
        // One that exists is still found.
        assert_eq!(
            b.want_synced(vip(80), addr(0), 80, Fwd::Dr, &neigh),
            Ok(false)
        );
    }

    #[test]
    fn synced_only_ids_survive_in_the_id_directory() {
        let dir = std::env::temp_dir().join(format!("xvs-synced-ids-{}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        let neigh = NeighTable::new(Vec::new());
        let cfg = Config {
            services: vec![service(vip(80), vec![dest(1)])],
            ..Config::default()
        };
        let rip9 = IpAddr::V4(Ipv4Addr::new(198, 18, 1, 9));
        let mut b = SnapshotBuilder::with_id_file(Some(dir.clone()));
        b.build(&cfg, &neigh);
        assert_eq!(b.want_synced(vip(80), rip9, 80, Fwd::Tun, &neigh), Ok(true));
        let s = b.build(&cfg, &neigh);
        let svc_id = s.lookup(6, Ipv4Addr::new(198, 18, 0, 100), 80).unwrap().id;
        let key = SyncedKey {
            svc: svc_id,
            addr: rip9,
            port: 80,
            fwd: Fwd::Tun,
        };
        let id = s.synced_dest(&key).unwrap().id;
        let text = std::fs::read_to_string(&dir).unwrap();
        assert!(
            text.contains(&format!("u a 6 198.18.0.100 80 198.18.1.9 80 tun {id}\n")),
            "{text}"
        );
        // The next daemon gives the same server the same id, and nothing
        // else gets it.
        let mut b2 = SnapshotBuilder::with_id_file(Some(dir.clone()));
        let more = Config {
            services: vec![service(vip(80), vec![dest(1), dest(2), dest(3)])],
            ..Config::default()
        };
        let s2 = b2.build(&more, &neigh);
        assert!(live_ids(&s2).iter().all(|(i, _)| *i != id));
        assert_eq!(
            b2.want_synced(vip(80), rip9, 80, Fwd::Tun, &neigh),
            Ok(true)
        );
        let s2 = b2.build(&more, &neigh);
        assert_eq!(s2.synced_dest(&key).unwrap().id, id);
        let _ = std::fs::remove_file(&dir);
    }

    #[test]
    fn ids_and_scheduler_positions_survive_other_changes() {
        let neigh = NeighTable::new(Vec::new());
        let a = service(vip(80), vec![dest(1), dest(2), dest(3)]);
        let mut cfg = Config {
            services: vec![a.clone()],
            ..Config::default()
        };
        let mut b = SnapshotBuilder::new();
        let s1 = b.build(&cfg, &neigh);
        let first = next(&s1, 80);
        let ids = live_ids(&s1);
        // Another service comes: the first keeps its ids and its rr
        // position.
        cfg.services.push(service(vip(81), vec![dest(9)]));
        let s2 = b.build(&cfg, &neigh);
        assert_eq!(&live_ids(&s2)[..3], &ids[..]);
        let second = next(&s2, 80);
        assert_ne!(first, second);
        // Its own list changes: the scheduler starts over.
        cfg.services[0].dests.remove(2);
        let s3 = b.build(&cfg, &neigh);
        let fresh = SnapshotBuilder::new().build(&cfg, &neigh);
        assert_eq!(next(&s3, 80), next(&fresh, 80));
        assert!(!b.has_trash());
    }

    #[test]
    fn deleted_dest_stays_as_trash_while_a_connection_counts_against_it() {
        let neigh = NeighTable::new(Vec::new());
        let mut cfg = Config {
            services: vec![service(vip(80), vec![dest(1), dest(2)])],
            ..Config::default()
        };
        let mut b = SnapshotBuilder::new();
        let s1 = b.build(&cfg, &neigh);
        let busy = s1
            .lookup(6, Ipv4Addr::new(198, 18, 0, 100), 80)
            .unwrap()
            .sched
            .lock()
            .unwrap()
            .schedule(&flow(), 0)
            .unwrap();
        conn::tracker::bind(&busy, false, TcpState::Established);
        let gone = busy.rip().unwrap().octets()[3];
        cfg.services[0].dests.retain(|d| d.addr != busy.sched.addr);
        assert_eq!(cfg.services[0].dests.len(), 1, "deleted {gone}");

        let s2 = b.build(&cfg, &neigh);
        assert!(b.has_trash());
        let kept = s2.dest(busy.id).expect("kept while busy");
        assert!(!kept.in_service);
        // Rebuilding with nothing changed keeps it while it is busy.
        let s3 = b.build(&cfg, &neigh);
        assert!(s3.dest(busy.id).is_some());
        assert!(b.has_trash());

        conn::tracker::unbind(&busy, false, TcpState::Established);
        let s4 = b.build(&cfg, &neigh);
        assert!(!b.has_trash());
        assert!(s4.dest(busy.id).is_none());
        // Its id is free again for the next new server.
        cfg.services[0].dests.insert(0, dest(7));
        let s5 = b.build(&cfg, &neigh);
        assert_eq!(s5.dest(busy.id).map(|d| d.in_service), Some(true));
    }

    /// Each destination's id by its last octet, and the services' ids by
    /// port.
    type IdMap = (Vec<(u8, u32)>, Vec<(u16, u32)>);

    fn id_map(snap: &Snapshot) -> IdMap {
        let mut d: Vec<(u8, u32)> = (0..64)
            .filter_map(|i| snap.dest(i))
            .filter(|d| d.in_service)
            .map(|d| match d.sched.addr {
                IpAddr::V4(a) => (a.octets()[3], d.id),
                IpAddr::V6(_) => (0, d.id),
            })
            .collect();
        d.sort();
        let mut s: Vec<(u16, u32)> = [80, 81, 82]
            .iter()
            .filter_map(|&p| snap.lookup(6, Ipv4Addr::new(198, 18, 0, 100), p))
            .map(|s| match s.key {
                SvcKey::Addr { port, .. } => (port, s.id),
                SvcKey::Fwmark { .. } => (0, s.id),
            })
            .collect();
        s.sort();
        (d, s)
    }

    #[test]
    fn a_restarted_builder_gives_every_service_and_server_its_old_id() {
        let path = std::env::temp_dir().join(format!("xvs-ids-test-{}.ids", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let neigh = NeighTable::new(Vec::new());
        let mut b = SnapshotBuilder::with_id_file(Some(path.clone()));
        let mut cfg = Config {
            services: vec![
                service(vip(80), vec![dest(1), dest(2), dest(3)]),
                service(vip(81), vec![dest(4)]),
            ],
            ..Config::default()
        };
        b.build(&cfg, &neigh);
        // Churn, so the ids are not simply the order of the rules.
        cfg.services[0].dests.remove(0);
        cfg.services.push(service(vip(82), vec![dest(5), dest(1)]));
        let before = id_map(&b.build(&cfg, &neigh));
        drop(b);

        // The next daemon gets its rules in another order.
        cfg.services.reverse();
        for s in &mut cfg.services {
            s.dests.reverse();
        }
        let mut b = SnapshotBuilder::with_id_file(Some(path.clone()));
        let after = id_map(&b.build(&cfg, &neigh));
        assert_eq!(after, before);
        // A new server gets an id nobody had.
        cfg.services[0].dests.push(dest(9));
        let (d, _) = id_map(&b.build(&cfg, &neigh));
        let new_id = d.iter().find(|(o, _)| *o == 9).map(|x| x.1);
        assert!(new_id.is_some());
        assert!(before.0.iter().all(|(_, id)| Some(*id) != new_id));

        // A rule missing at restart keeps its id reserved: nothing else
        // takes an id a surviving connection may name.
        let gone = before.0.iter().find(|(o, _)| *o == 4).map(|x| x.1);
        let mut b = SnapshotBuilder::with_id_file(Some(path.clone()));
        let only = Config {
            services: vec![service(vip(80), vec![dest(7), dest(8)])],
            ..Config::default()
        };
        let (d, _) = id_map(&b.build(&only, &neigh));
        assert!(d.iter().all(|(_, id)| Some(*id) != gone));
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_damaged_id_directory_never_gives_one_id_to_two() {
        let mut b = SnapshotBuilder::new();
        b.load_ids(
            "s a 6 198.18.0.100 80 0\ns a 6 198.18.0.100 81 0\n\
             d a 6 198.18.0.100 80 198.18.1.1 80 3\n\
             d a 6 198.18.0.100 80 198.18.1.2 80 3\ngarbage line\nd x\n",
        );
        assert_eq!(b.reserved_svcs.len(), 1);
        assert_eq!(b.reserved_dests.len(), 1);
        let neigh = NeighTable::new(Vec::new());
        let cfg = Config {
            services: vec![
                service(vip(80), vec![dest(1), dest(2)]),
                service(vip(81), vec![dest(3)]),
            ],
            ..Config::default()
        };
        let (d, s) = id_map(&b.build(&cfg, &neigh));
        let mut ids: Vec<u32> = d.iter().map(|x| x.1).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 3, "{d:?}");
        assert_ne!(s[0].1, s[1].1);
    }

    #[test]
    fn ipv6_steering_keys_follow_the_ipv4_rules() {
        let v6 = |s: &str| s.parse::<Ipv6Addr>().unwrap();
        let d6 = |addr: &str, port, fwd| DestConf {
            addr: IpAddr::V6(v6(addr)),
            port,
            fwd,
            ..dest(1)
        };
        let cfg = Config {
            services: vec![
                // An IPv4 service: none of its keys are IPv6's.
                service(vip(80), vec![dest(1)]),
                service(
                    SvcKey::Addr {
                        proto: 6,
                        vip: IpAddr::V6(v6("2001:2::100")),
                        port: 80,
                    },
                    vec![
                        d6("2001:2::11", 8080, Fwd::Nat),
                        d6("2001:2::12", 80, Fwd::Dr),
                    ],
                ),
                service(
                    SvcKey::Addr {
                        proto: 17,
                        vip: IpAddr::V6(v6("2001:2::100")),
                        port: 0,
                    },
                    vec![d6("2001:2::13", 0, Fwd::Tun)],
                ),
                service(
                    SvcKey::Fwmark { mark: 7, v6: true },
                    vec![d6("2001:2::14", 443, Fwd::Nat)],
                ),
            ],
            marks: Vec::new(),
            timeouts: Default::default(),
            sloppy_tcp: false,
        };
        let k = steer6_keys(&cfg);
        assert_eq!(
            k.svc.into_iter().collect::<Vec<_>>(),
            vec![(6, v6("2001:2::100"), 80), (17, v6("2001:2::100"), 0)]
        );
        assert_eq!(
            k.nat.into_iter().collect::<Vec<_>>(),
            vec![
                (0, v6("2001:2::11"), 0),
                (0, v6("2001:2::14"), 0),
                (6, v6("2001:2::11"), 8080),
                (6, v6("2001:2::14"), 443),
                (17, v6("2001:2::14"), 443),
            ]
        );
        assert_eq!(
            k.vips.into_iter().collect::<Vec<_>>(),
            vec![v6("2001:2::100")]
        );
        // The snapshot indexes both families' services and carries the keys.
        let snap = SnapshotBuilder::new().build(&cfg, &NeighTable::new(Vec::new()));
        assert_eq!(snap.v4_keys().count(), 1);
        assert_eq!(snap.v6_keys().count(), 2);
        assert!(snap.lookup6(6, v6("2001:2::100"), 80).is_some());
        assert!(snap.lookup6(17, v6("2001:2::100"), 53).is_some(), "port 0");
        assert!(snap.lookup6(6, v6("2001:2::100"), 81).is_none());
        assert_eq!(snap.steer6, steer6_keys(&cfg));

        // `--set-mark 7 -t [2001:2::200]:443`: the triple goes to the
        // sockets and to the IPv6 mark service, not to IPv4's `-f 7`.
        let mut cfg = cfg;
        cfg.services.push(service(
            SvcKey::Fwmark { mark: 7, v6: false },
            vec![dest(2)],
        ));
        let marked = SvcKey::Addr {
            proto: 6,
            vip: IpAddr::V6(v6("2001:2::200")),
            port: 443,
        };
        cfg.marks.push((marked, 7));
        let k = steer6_keys(&cfg);
        assert!(k.svc.contains(&(6, v6("2001:2::200"), 443)));
        assert!(k.vips.contains(&v6("2001:2::200")));
        let snap = SnapshotBuilder::new().build(&cfg, &NeighTable::new(Vec::new()));
        let s = snap.lookup6(6, v6("2001:2::200"), 443).unwrap();
        assert_eq!(s.key, SvcKey::Fwmark { mark: 7, v6: true });
        assert_eq!(
            snap.fwmark_of(7, false).unwrap().key,
            SvcKey::Fwmark { mark: 7, v6: false }
        );
        assert_eq!(snap.v6_keys().count(), 3);
    }

    #[test]
    fn a_tunnelled_server_of_the_other_family_is_scheduled_with_its_own_cell() {
        let v6 = |s: &str| s.parse::<Ipv6Addr>().unwrap();
        let rip6 = IpAddr::V6(v6("2001:2::21"));
        let cfg = Config {
            services: vec![service(
                vip(80),
                vec![
                    dest(1),
                    DestConf {
                        addr: rip6,
                        fwd: Fwd::Tun,
                        ..dest(2)
                    },
                ],
            )],
            ..Config::default()
        };
        let neigh = NeighTable::new(Vec::new());
        let snap = SnapshotBuilder::new().build(&cfg, &neigh);
        let svc = snap.lookup(6, Ipv4Addr::new(198, 18, 0, 100), 80).unwrap();
        let st = svc.sched.lock().unwrap();
        let d = st
            .dests()
            .iter()
            .find(|d| d.sched.addr == rip6)
            .expect("the IPv6 server is scheduled under the IPv4 service");
        assert_eq!(d.fwd, Fwd::Tun);
        assert!(d.in_service);
        // Its neighbour cell is the IPv6 next hop's, where the neighbour
        // thread puts the route's IPv6 source for the outer header.
        assert!(Arc::ptr_eq(&d.neigh, &neigh.cell(rip6)));
        // No IPv6 steering keys: the VIP is IPv4's.
        assert_eq!(snap.v6_keys().count(), 0);
        assert!(snap.steer6.vips.is_empty());
    }
}
