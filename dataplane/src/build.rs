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
use crate::svc::{DestRt, Fwd, SchedState, ServiceRt, Snapshot, SvcKey, V4Key};
use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use xvs_config::Config;

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
        b.written = ids_text(&b.reserved_svcs, &b.reserved_dests);
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
        self.dest_ids = Ids::reserving(self.reserved_dests.values());
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
        let text = ids_text(&svcs, &dests);
        if text == self.written {
            return;
        }
        match write_atomically(path, &text) {
            Ok(()) => self.written = text,
            Err(e) => eprintln!("xvsd: id directory {}: {e}", path.display()),
        }
    }

    /// Whether deleted destinations are still waiting for their last
    /// connection to go: while so, the daemon rebuilds periodically, and
    /// the first build after the last connection expired frees them.
    pub fn has_trash(&self) -> bool {
        !self.trash.is_empty()
    }

    /// The snapshot of `cfg`. Next hops get their MAC cells from `neigh`
    /// (IPv6 real servers too: their cells resolve through NDP, although
    /// the data plane does not forward IPv6 yet).
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
        self.save_ids();
        let mut snap = Snapshot::new(out, all_dests, marks, cfg.timeouts);
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

fn parse_id<'a>(t: &mut impl Iterator<Item = &'a str>) -> Option<u32> {
    t.next()?.parse().ok()
}

/// The id directory's text: one line per service (`s KEY ID`) and per
/// destination (`d KEY ADDR PORT ID`), sorted.
fn ids_text(svcs: &HashMap<SvcKey, u32>, dests: &HashMap<DestIdent, u32>) -> String {
    let mut lines: Vec<String> = svcs
        .iter()
        .map(|(k, id)| format!("s {} {id}\n", svc_text(k)))
        .chain(
            dests
                .iter()
                .map(|((k, a, p), id)| format!("d {} {a} {p} {id}\n", svc_text(k))),
        )
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
    }
}
