//! The configuration: virtual services, their real servers and the
//! protocol timeouts, with IPVS's rules and refusal messages.
//!
//! The model is plain data owned by the control thread. Every successful
//! change bumps [`Model::generation`], which is how the daemon knows to
//! build and publish a new snapshot for the workers. The live parts that
//! workers write (traffic counters, connection counts) sit behind `Arc`s
//! that survive edits, so an edit never loses a count.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use xvs_config::check::{
    CheckConf, CheckKind, CheckSpec, Health, HealthStatus, HttpMethod, ProbeKey, Quorum,
};
use xvs_config::stats::Counters;
use xvs_config::svc::{Fwd, Persist, SvcKey};
use xvs_config::{Config, DestConf, ServiceConf, SyncDaemonConf, SyncRole};
use xvs_scheduler::DestLoad;

use crate::grammar::{
    misplaced_check_option, Command, DestSpec, ServiceSpec, SorrySpec, TunConf, HEAD_REGEX,
    MAX_WEIGHT,
};
use crate::rate::{RateEst, Sample};

/// Why IPVS refused an operation. The Display strings are ipvsadm's,
/// byte for byte; xvsadm exits 255 with them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// `-A` of an existing service.
    #[error("Service already exists")]
    ServiceExists,
    /// `-E`/`-D`/`-Z`/`-L` of a missing service.
    #[error("No such service")]
    NoSuchService,
    /// `-a`/`-e`/`-d` on a missing service.
    #[error("Service not defined")]
    ServiceNotDefined,
    /// `-a` of an existing server.
    #[error("Destination already exists")]
    DestExists,
    /// `-e`/`-d` of a missing server.
    #[error("No such destination")]
    NoSuchDest,
    /// Unknown scheduler or persistence engine.
    #[error("Scheduler or persistence engine not found")]
    SchedNotFound,
    /// A combination IPVS rejects (EINVAL).
    #[error("Invalid operation.  Possibly wrong module version, address not unicast, ...")]
    Invalid,
    /// Out-of-range value, e.g. l-threshold above u-threshold (ERANGE).
    #[error("Numerical result out of range")]
    OutOfRange,
    /// A table is full (ENOMEM).
    #[error("Memory allocation problem")]
    NoMemory,
    /// `--start-daemon` of a role already running.
    #[error("Daemon has already run")]
    DaemonRunning,
    /// `--start-daemon` on an interface that does not exist (ENODEV).
    #[error("No such device")]
    NoSuchDevice,
    /// `--del-mark` of a triple that has no mark.
    #[error("No such firewall mark assignment")]
    NoSuchMark,
    /// `--stop-daemon` of a role not running.
    #[error("No daemon is running")]
    NoDaemonRunning,
    /// `--pe sip`: xvs has no SIP persistence engine.
    #[error("xvs has no SIP persistence engine: --pe sip is not supported")]
    NoSipEngine,
    /// A health check that cannot run as configured (why).
    #[error("{0}")]
    Check(String),
}

/// Protocol timeouts in seconds (`--set`, `-L --timeout`), shared with the
/// data plane.
pub use xvs_config::state::Timeouts;

/// Table limits; exceeding one is refused with `Memory allocation problem`.
///
/// IPVS itself has no hard limit on services; xvs's comes from the XDP
/// steering program, whose service map holds 65,536 entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most virtual services.
    pub max_services: usize,
    /// Most real servers per service.
    pub max_dests: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_services: 65_536,
            max_dests: 1024,
        }
    }
}

/// One real server of a service.
#[derive(Debug, Clone)]
pub struct Dest {
    /// Real server address.
    pub addr: IpAddr,
    /// Real server port (the service's for DR/TUN, 0 for fwmark services).
    pub port: u16,
    /// Forwarding method.
    pub fwd: Fwd,
    /// Weight; 0 = quiesced.
    pub weight: i32,
    /// Last non-zero weight (mh keeps its table on it).
    pub last_weight: i32,
    /// Upper connection threshold (0 = none).
    pub u_threshold: u32,
    /// Lower connection threshold.
    pub l_threshold: u32,
    /// Tunnel parameters (meaningful for [`Fwd::Tun`]).
    pub tun: TunConf,
    /// Live connection counts, shared with the workers.
    pub load: Arc<DestLoad>,
    /// Traffic counters, shared with the workers.
    pub counters: Arc<Counters>,
    /// Rate estimate (`--rate`).
    pub rate: RateEst,
    /// Check options given for this server (over the service's).
    pub check: CheckConf,
}

impl Dest {
    fn new(addr: IpAddr, port: u16, fwd: Fwd, weight: i32) -> Dest {
        Dest {
            addr,
            port,
            fwd,
            weight,
            last_weight: weight.max(0),
            u_threshold: 0,
            l_threshold: 0,
            tun: TunConf::default(),
            load: Arc::new(DestLoad::default()),
            counters: Arc::new(Counters::default()),
            rate: RateEst::default(),
            check: CheckConf::default(),
        }
    }

    /// The real server as the data plane needs it.
    pub fn config(&self) -> DestConf {
        DestConf {
            addr: self.addr,
            port: self.port,
            weight: self.weight,
            last_weight: self.last_weight,
            u_threshold: self.u_threshold,
            l_threshold: self.l_threshold,
            fwd: self.fwd,
            tun: self.tun.kind(),
            load: self.load.clone(),
            counters: self.counters.clone(),
        }
    }
}

/// One virtual service.
#[derive(Debug, Clone)]
pub struct Service {
    /// Identity.
    pub key: SvcKey,
    /// Scheduler name (one of `xvs_scheduler::NAMES`).
    pub sched: String,
    /// Scheduler flags (`SCHED_FLAG_*`).
    pub flags: u32,
    /// Persistence timeout in seconds, if persistent.
    pub persistence: Option<u32>,
    /// Persistence granularity as a prefix length of the client address.
    pub netmask: u8,
    /// One-packet scheduling (UDP only).
    pub ops: bool,
    /// Real servers, newest first (IPVS list order, which schedulers walk).
    pub dests: Vec<Dest>,
    /// Traffic counters, shared with the workers.
    pub counters: Arc<Counters>,
    /// Rate estimate (`--rate`).
    pub rate: RateEst,
    /// Insertion sequence number (`--nosort` lists in this order).
    pub seq: u64,
    /// Check options given for the service: its servers' defaults.
    pub check: CheckConf,
    /// Quorum and sorry server.
    pub quorum: Quorum,
    /// The sorry server as a destination while one is configured, so its
    /// counters and connection counts last across uses; its forwarding
    /// method and port are settled when it is used
    /// ([`Model::service_state`]).
    pub sorry: Option<Dest>,
}

/// A (service, real server address, real server port) a probe decides
/// for.
pub type ProbeUser = (SvcKey, IpAddr, u16);

/// A real server as it is scheduled now: its check and what the checker
/// found, applied to its weight.
#[derive(Debug, Clone)]
pub struct DestState<'a> {
    /// The server as configured.
    pub dest: &'a Dest,
    /// The probe that checks it, with its resolved check (service options
    /// under its own); `None`: no check.
    pub probe: Option<ProbeKey>,
    /// The checker's last word on it, if any yet.
    pub status: Option<&'a HealthStatus>,
    /// Its state: `Unchecked` without a check, `Down` before the first
    /// result (a checked server starts down).
    pub health: Health,
    /// The weight scheduled: configured, 0 while inhibited (or while the
    /// sorry server stands in), an `exec` check's while up.
    pub weight: i32,
    /// Down with `--check-on-fail remove`: left out of the data plane.
    pub removed: bool,
}

/// A service as it is scheduled now.
#[derive(Debug, Clone)]
pub struct ServiceState<'a> {
    /// Its real servers, in the service's list order.
    pub dests: Vec<DestState<'a>>,
    /// Sum of the weights of the servers that are up.
    pub up_weight: i64,
    /// The sorry server while it stands in (quorum lost), as scheduled:
    /// the first real server's forwarding method (DR without servers),
    /// weight 1.
    pub sorry: Option<Dest>,
}

impl Service {
    /// Whether the service is IPv6 (address family of the VIP or `-6`).
    pub fn is_v6(&self) -> bool {
        match self.key {
            SvcKey::Addr { vip, .. } => vip.is_ipv6(),
            SvcKey::Fwmark { v6, .. } => v6,
        }
    }

    /// The service port (0 for fwmark services).
    pub fn port(&self) -> u16 {
        match self.key {
            SvcKey::Addr { port, .. } => port,
            SvcKey::Fwmark { .. } => 0,
        }
    }

    /// The service as configured, every real server with its configured
    /// weight (health checks not applied: see [`Model::config`]).
    pub fn config(&self) -> ServiceConf {
        self.conf_with(self.dests.iter().map(Dest::config).collect())
    }

    fn conf_with(&self, dests: Vec<DestConf>) -> ServiceConf {
        ServiceConf {
            key: self.key,
            sched: self.sched.clone(),
            flags: self.flags,
            persist: self
                .persistence
                .map(|timeout| Persist::new(timeout, self.netmask)),
            dests,
            counters: self.counters.clone(),
        }
    }

    /// The check of `d` (its options over the service's), if it has one.
    pub fn spec_of(&self, d: &Dest) -> Option<CheckSpec> {
        // Most servers have no check: decide that without building a spec.
        let kind = d.check.kind.or(self.check.kind).unwrap_or_default();
        if kind == CheckKind::None {
            return None;
        }
        Some(d.check.resolve(&self.check))
    }

    /// The probe that checks `d` with `spec`: `vip` checks go to the
    /// service's VIP and port (fwmark services have none: the server's),
    /// `ping` to the address alone (port 0: a server pinged for services
    /// on several ports is pinged once), the others to `--check-port` or
    /// the server's port.
    pub fn probe_key(&self, d: &Dest, spec: &CheckSpec) -> ProbeKey {
        let (port, vip) = match (spec.kind, self.key) {
            (CheckKind::Vip, SvcKey::Addr { vip, port, .. }) => {
                let p = spec.port.unwrap_or(port);
                (p, Some((vip, p)))
            }
            (CheckKind::Ping, _) => (0, None),
            _ => (spec.port.unwrap_or(d.port), None),
        };
        ProbeKey {
            addr: d.addr,
            port,
            vip,
            spec: spec.clone(),
        }
    }

    /// Refuse a check of `d` that cannot run.
    fn check_runs(&self, d: &Dest) -> Result<(), ConfigError> {
        let spec = d.check.resolve(&self.check);
        let fail = |why: String| Err(ConfigError::Check(why));
        if spec.kind == CheckKind::None {
            return Ok(());
        }
        // The server's own options must suit the check it ends up with
        // (the service's are defaults, for whichever servers they suit).
        if let Some(why) = misplaced_check_option(&d.check, spec.kind) {
            return fail(why);
        }
        let http = matches!(spec.kind, CheckKind::Http | CheckKind::Https);
        if http && spec.method == HttpMethod::Head && spec.regex.is_some() {
            return fail(HEAD_REGEX.into());
        }
        match spec.kind {
            CheckKind::Exec if spec.cmd.is_none() => {
                return fail("an exec check needs --check-cmd".into())
            }
            CheckKind::Vip if d.fwd == Fwd::Nat => {
                return fail(
                    "a vip check is only for direct routing and tunnelling servers (-g, -i)".into(),
                )
            }
            _ => {}
        }
        let key = self.probe_key(d, &spec);
        let needs_port = matches!(
            spec.kind,
            CheckKind::Tcp | CheckKind::Http | CheckKind::Https | CheckKind::Udp | CheckKind::Vip
        );
        if needs_port && key.port == 0 {
            return fail(format!(
                "a {} check of a server without a port needs --check-port",
                spec.kind
            ));
        }
        Ok(())
    }

    /// Find a real server by address and port.
    pub fn dest(&self, addr: IpAddr, port: u16) -> Option<&Dest> {
        self.dests.iter().find(|d| d.addr == addr && d.port == port)
    }

    fn dest_index(&self, addr: IpAddr, port: u16) -> Option<usize> {
        self.dests
            .iter()
            .position(|d| d.addr == addr && d.port == port)
    }

    /// The port IPVS stores for a real server written as `port`: DR and
    /// TUN cannot map ports, so they take the service's; fwmark services
    /// have no port.
    pub fn dest_port(&self, fwd: Fwd, port: Option<u16>) -> u16 {
        match self.key {
            SvcKey::Fwmark { .. } => 0,
            SvcKey::Addr { port: sport, .. } => match fwd {
                Fwd::Nat => port.unwrap_or(sport),
                Fwd::Dr | Fwd::Tun => sport,
            },
        }
    }
}

/// The whole configuration.
#[derive(Debug, Clone, Default)]
pub struct Model {
    /// Services in insertion order. Read it freely; change services only
    /// through [`Model`]'s methods, which keep the lookup index in step.
    pub services: Vec<Service>,
    /// Position of every service in `services`, by key: lookups stay O(1)
    /// with tens of thousands of services (a restore of 10,000 services
    /// would otherwise scan the list for every rule).
    index: HashMap<SvcKey, usize>,
    /// Firewall-mark assignments `(protocol, VIP, port) → mark` set with
    /// `--set-mark`, in the order they were made.
    pub marks: Vec<(SvcKey, u32)>,
    /// Protocol timeouts.
    pub timeouts: Timeouts,
    /// The connection sync daemons started (`--start-daemon`), at most
    /// one per role, master first, as given (unset options `None`).
    pub sync_daemons: Vec<SyncDaemonConf>,
    /// Incremented on every successful change.
    pub generation: u64,
    /// Table limits.
    pub limits: Limits,
    /// Open connections on any TCP segment (`xvsd --sloppy-tcp`; not a
    /// rule, so not saved with them).
    pub sloppy_tcp: bool,
    /// What the checker last reported, by probe: kept across edits, so a
    /// server whose check did not change keeps its state.
    health: HashMap<ProbeKey, HealthStatus>,
    next_seq: u64,
    /// While staged (a restore or reload being applied to a copy),
    /// changes to state shared with the workers, recorded to be made on
    /// commit instead of at once.
    staged: Option<Vec<SharedEffect>>,
}

/// A change to state the workers share with the model through an `Arc`:
/// it cannot be undone by dropping a copy of the model, so a staged model
/// records it and makes it only when committed.
#[derive(Debug, Clone)]
enum SharedEffect {
    /// `-Z`: zero these counters.
    Zero(Arc<Counters>),
    /// `-e` lifting or raising the upper threshold: clear the overload
    /// flag.
    ClearOverload(Arc<DestLoad>),
}

impl SharedEffect {
    fn make(self) {
        match self {
            SharedEffect::Zero(c) => c.zero(),
            SharedEffect::ClearOverload(l) => l.set_overloaded(false),
        }
    }
}

/// Whether an address can be a real server (IPVS requires unicast). For
/// IPv6 that is the kernel's `ipv6_addr_type` rule: IPv4-mapped addresses
/// (`::ffff:a.b.c.d`) are not unicast, and a link-local server is refused
/// (the kernel takes one only when it is the director's own address, and
/// a link-local address names no interface here).
fn is_unicast(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(a) => !(a.is_unspecified() || a.is_multicast() || a.is_broadcast()),
        IpAddr::V6(a) => {
            let link_local = a.segments()[0] & 0xffc0 == 0xfe80;
            !(a.is_unspecified() || a.is_multicast() || a.to_ipv4_mapped().is_some() || link_local)
        }
    }
}

/// Set in `into` every check option `given` has.
fn merge_check(into: &mut CheckConf, given: &CheckConf) {
    macro_rules! merge {
        ($($f:ident),*) => {
            $(if given.$f.is_some() {
                into.$f = given.$f.clone();
            })*
        };
    }
    merge!(
        kind, port, path, host, method, expect, regex, send, receive, cmd, ca, interval, timeout,
        rise, fall, on_fail
    );
}

/// The service's check options, quorum and sorry server after `spec`
/// (`-A`, `-E`, or a reload's replacement). The sorry server keeps its
/// counters while its address and port stay.
fn service_checks(
    s: &Service,
    spec: &ServiceSpec,
) -> Result<(CheckConf, Quorum, Option<Dest>), ConfigError> {
    let (mut check, mut quorum, mut sorry) = if spec.replace_checks {
        (CheckConf::default(), Quorum::default(), None)
    } else {
        (s.check.clone(), s.quorum, s.sorry.clone())
    };
    merge_check(&mut check, &spec.check);
    if spec.quorum.is_some() {
        quorum.weight = spec.quorum;
    }
    match spec.sorry {
        None => {}
        Some(SorrySpec::Clear) => {
            quorum.sorry = None;
            sorry = None;
        }
        Some(SorrySpec::Server(addr, port)) => {
            if !is_unicast(addr) || addr.is_ipv6() != s.is_v6() {
                return Err(ConfigError::Invalid);
            }
            let at = SocketAddr::new(addr, port.unwrap_or(s.port()));
            let keep = s
                .sorry
                .as_ref()
                .filter(|d| d.addr == at.ip() && d.port == at.port());
            sorry = Some(
                keep.cloned()
                    .unwrap_or_else(|| Dest::new(at.ip(), at.port(), Fwd::Dr, 1)),
            );
            quorum.sorry = Some(at);
        }
    }
    Ok((check, quorum, sorry))
}

fn check_sched(spec: &ServiceSpec) -> Result<(), ConfigError> {
    if let Some(pe) = &spec.pe {
        if pe == "sip" {
            return Err(ConfigError::NoSipEngine);
        }
        return Err(ConfigError::SchedNotFound);
    }
    if !xvs_scheduler::NAMES.contains(&spec.sched.as_str()) {
        return Err(ConfigError::SchedNotFound);
    }
    Ok(())
}

impl Model {
    /// An empty configuration with the given limits.
    pub fn with_limits(limits: Limits) -> Self {
        Model {
            limits,
            ..Model::default()
        }
    }

    /// Stage this model (a copy being changed that may yet be dropped):
    /// from now on, changes to state shared with the workers (zeroing
    /// counters, clearing overload flags) are recorded, not made, until
    /// [`Model::commit`].
    pub fn stage(&mut self) {
        self.staged.get_or_insert_with(Vec::new);
    }

    /// Make the changes to shared state recorded since [`Model::stage`],
    /// in order, and stop staging. Call it only once the staged model is
    /// the one kept.
    pub fn commit(&mut self) {
        for e in self.staged.take().unwrap_or_default() {
            e.make();
        }
    }

    /// Make `e` now, or record it while staged.
    fn shared(&mut self, e: SharedEffect) {
        match &mut self.staged {
            Some(v) => v.push(e),
            None => e.make(),
        }
    }

    /// What the data plane needs of the configuration, in plain data (the
    /// counters and connection counts are the model's own `Arc`s), with
    /// the health checks applied: effective weights, servers removed while
    /// down left out, the sorry server added while the quorum is lost.
    pub fn config(&self) -> Config {
        Config {
            services: self
                .services
                .iter()
                .map(|s| {
                    let st = self.service_state(s);
                    let dests = st
                        .dests
                        .iter()
                        .filter(|d| !d.removed)
                        .map(|d| {
                            let mut c = d.dest.config();
                            c.weight = d.weight;
                            if d.weight > 0 {
                                c.last_weight = d.weight;
                            }
                            c
                        })
                        .chain(st.sorry.as_ref().map(Dest::config))
                        .collect();
                    s.conf_with(dests)
                })
                .collect(),
            marks: self.marks.clone(),
            timeouts: self.timeouts,
            sloppy_tcp: self.sloppy_tcp,
        }
    }

    /// The checker's last report on a probe.
    pub fn health(&self, key: &ProbeKey) -> Option<&HealthStatus> {
        self.health.get(key)
    }

    /// A service as it is scheduled now: each server's check, state and
    /// effective weight, and the sorry server if it stands in.
    pub fn service_state<'a>(&'a self, s: &'a Service) -> ServiceState<'a> {
        let mut dests: Vec<DestState<'a>> = s
            .dests
            .iter()
            .map(|d| {
                let Some(spec) = s.spec_of(d) else {
                    return DestState {
                        dest: d,
                        probe: None,
                        status: None,
                        health: Health::Unchecked,
                        weight: d.weight,
                        removed: false,
                    };
                };
                let on_fail = spec.on_fail;
                let key = s.probe_key(d, &spec);
                let status = self.health.get(&key);
                // No result yet: down until it passes `rise` checks.
                let health = match status.map(|st| st.state) {
                    None | Some(Health::Unchecked) => Health::Down,
                    Some(h) => h,
                };
                let (weight, removed) = if health.is_up() {
                    let w = status.and_then(|st| st.weight).unwrap_or(d.weight);
                    (w.clamp(0, MAX_WEIGHT), false)
                } else {
                    (0, on_fail == xvs_config::check::OnFail::Remove)
                };
                DestState {
                    dest: d,
                    probe: Some(key),
                    status,
                    health,
                    weight,
                    removed,
                }
            })
            .collect();
        let up_weight = dests
            .iter()
            .filter(|d| !d.removed && d.health.is_up())
            .map(|d| i64::from(d.weight))
            .sum();
        let mut sorry = None;
        if let (Some(sd), true) = (&s.sorry, up_weight < i64::from(s.quorum.weight())) {
            let fwd = s.dests.first().map_or(Fwd::Dr, |d| d.fwd);
            let port = s.dest_port(fwd, Some(sd.port));
            for d in &mut dests {
                d.weight = 0;
            }
            match dests
                .iter_mut()
                .find(|d| d.dest.addr == sd.addr && d.dest.port == port)
            {
                // The sorry server is also a real server: that one stands
                // in (unless removed), not a second entry.
                Some(d) => d.weight = i32::from(!d.removed),
                None => {
                    let mut d = sd.clone();
                    d.fwd = fwd;
                    d.port = port;
                    d.weight = 1;
                    d.last_weight = 1;
                    sorry = Some(d);
                }
            }
        }
        ServiceState {
            dests,
            up_weight,
            sorry,
        }
    }

    /// Every probe the configuration needs, once each however many
    /// services share it, with the (service, real server address, port)
    /// pairs it decides for. Only enabled checks; in probe order.
    pub fn probes(&self) -> Vec<(ProbeKey, Vec<ProbeUser>)> {
        let mut out: BTreeMap<ProbeKey, Vec<ProbeUser>> = BTreeMap::new();
        for s in &self.services {
            for d in &s.dests {
                if let Some(spec) = s.spec_of(d) {
                    out.entry(s.probe_key(d, &spec))
                        .or_default()
                        .push((s.key, d.addr, d.port));
                }
            }
        }
        out.into_iter().collect()
    }

    /// What the data plane is given, reduced to what health can change.
    fn plane_view(&self) -> Vec<(SvcKey, IpAddr, u16, Fwd, i32)> {
        let mut v = Vec::new();
        for s in &self.services {
            let st = self.service_state(s);
            for d in st.dests.iter().filter(|d| !d.removed) {
                v.push((s.key, d.dest.addr, d.dest.port, d.dest.fwd, d.weight));
            }
            if let Some(d) = &st.sorry {
                v.push((s.key, d.addr, d.port, d.fwd, -1));
            }
        }
        v
    }

    /// Record the checker's results (a full report or only what changed:
    /// probes not mentioned keep their last status; statuses of probes
    /// the configuration no longer needs are dropped). Returns whether
    /// the data plane must change (an effective weight, a removal, the
    /// sorry server); then the generation moves on, like any change.
    pub fn set_health(&mut self, statuses: &HashMap<ProbeKey, HealthStatus>) -> bool {
        let before = self.plane_view();
        for (k, st) in statuses {
            self.health.insert(k.clone(), st.clone());
        }
        let needed: HashSet<ProbeKey> = self.probes().into_iter().map(|(k, _)| k).collect();
        self.health.retain(|k, _| needed.contains(k));
        let changed = self.plane_view() != before;
        if changed {
            self.changed();
        }
        changed
    }

    /// Find a service.
    pub fn service(&self, key: &SvcKey) -> Option<&Service> {
        self.service_index(key).map(|i| &self.services[i])
    }

    fn service_index(&self, key: &SvcKey) -> Option<usize> {
        match self.index.get(key) {
            Some(&i) if self.services.get(i).is_some_and(|s| s.key == *key) => Some(i),
            // The index is private and kept in step by every method; a
            // miss is authoritative unless `services` was edited directly,
            // which the scan below still gets right.
            Some(_) => self.services.iter().position(|s| s.key == *key),
            None if self.index.len() == self.services.len() => None,
            None => self.services.iter().position(|s| s.key == *key),
        }
    }

    fn service_mut(&mut self, key: &SvcKey) -> Option<&mut Service> {
        self.service_index(key).map(move |i| &mut self.services[i])
    }

    /// Rebuild the index from `services` after removals.
    fn reindex(&mut self, from: usize) {
        for (i, s) in self.services.iter().enumerate().skip(from) {
            self.index.insert(s.key, i);
        }
    }

    fn changed(&mut self) {
        self.generation = self.generation.wrapping_add(1);
    }

    /// Apply a configuration command (`-A -E -D -C -a -e -d --set`);
    /// other commands change nothing and succeed.
    pub fn apply(&mut self, cmd: &Command) -> Result<(), ConfigError> {
        match cmd {
            Command::AddService(spec) => self.add_service(spec),
            Command::EditService(spec) => self.edit_service(spec),
            Command::DeleteService(key) => self.delete_service(key),
            Command::Clear => {
                self.clear();
                Ok(())
            }
            Command::AddServer { svc, dest } => self.add_dest(svc, dest),
            Command::EditServer { svc, dest } => self.edit_dest(svc, dest),
            Command::DeleteServer { svc, addr, port } => self.delete_dest(svc, *addr, *port),
            Command::Set { tcp, tcpfin, udp } => {
                self.set_timeouts(*tcp, *tcpfin, *udp);
                Ok(())
            }
            Command::Zero(key) => self.zero(key.as_ref()),
            Command::SetMark { triple, mark } => {
                match self.marks.iter_mut().find(|(k, _)| k == triple) {
                    Some(m) => m.1 = *mark,
                    None => {
                        if self.marks.len() >= self.limits.max_services {
                            return Err(ConfigError::NoMemory);
                        }
                        self.marks.push((*triple, *mark));
                    }
                }
                self.changed();
                Ok(())
            }
            Command::DelMark(triple) => {
                let before = self.marks.len();
                self.marks.retain(|(k, _)| k != triple);
                if self.marks.len() == before {
                    return Err(ConfigError::NoSuchMark);
                }
                self.changed();
                Ok(())
            }
            Command::StartDaemon(conf) => {
                if self.sync_daemon(conf.role).is_some() {
                    return Err(ConfigError::DaemonRunning);
                }
                self.sync_daemons.push(conf.clone());
                self.sync_daemons.sort_by_key(|d| d.role);
                self.changed();
                Ok(())
            }
            Command::StopDaemon { role, .. } => {
                if self.sync_daemon(*role).is_none() {
                    return Err(ConfigError::NoDaemonRunning);
                }
                self.sync_daemons.retain(|d| d.role != *role);
                self.changed();
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// The sync daemon of `role`, if started.
    pub fn sync_daemon(&self, role: SyncRole) -> Option<&SyncDaemonConf> {
        self.sync_daemons.iter().find(|d| d.role == role)
    }

    /// `-A`.
    pub fn add_service(&mut self, spec: &ServiceSpec) -> Result<(), ConfigError> {
        if self.service(&spec.key).is_some() {
            return Err(ConfigError::ServiceExists);
        }
        check_sched(spec)?;
        if self.services.len() >= self.limits.max_services {
            return Err(ConfigError::NoMemory);
        }
        let mut svc = Service {
            key: spec.key,
            sched: spec.sched.clone(),
            flags: spec.flags,
            persistence: spec.persistence,
            netmask: spec.netmask,
            ops: spec.ops,
            dests: Vec::new(),
            counters: Arc::new(Counters::default()),
            rate: RateEst::default(),
            seq: self.next_seq,
            check: CheckConf::default(),
            quorum: Quorum::default(),
            sorry: None,
        };
        (svc.check, svc.quorum, svc.sorry) = service_checks(&svc, spec)?;
        self.next_seq += 1;
        self.index.insert(spec.key, self.services.len());
        self.services.push(svc);
        self.changed();
        Ok(())
    }

    /// `-E`: replaces scheduler, flags, persistence, mask and ops (ipvsadm
    /// sends every field, defaults included); check options, quorum and
    /// sorry server change only where given.
    pub fn edit_service(&mut self, spec: &ServiceSpec) -> Result<(), ConfigError> {
        let i = self
            .service_index(&spec.key)
            .ok_or(ConfigError::NoSuchService)?;
        check_sched(spec)?;
        let (check, quorum, sorry) = service_checks(&self.services[i], spec)?;
        if !spec.replace_checks {
            // A reload's servers are checked as its rules file loads; as
            // typed, the new defaults must suit every server.
            let mut probe = self.services[i].clone();
            probe.check = check.clone();
            for d in &probe.dests {
                probe.check_runs(d)?;
            }
        }
        let s = &mut self.services[i];
        (s.check, s.quorum, s.sorry) = (check, quorum, sorry);
        s.sched = spec.sched.clone();
        s.flags = spec.flags;
        s.persistence = spec.persistence;
        s.netmask = spec.netmask;
        s.ops = spec.ops;
        self.changed();
        Ok(())
    }

    /// `-D`.
    pub fn delete_service(&mut self, key: &SvcKey) -> Result<(), ConfigError> {
        let i = self.service_index(key).ok_or(ConfigError::NoSuchService)?;
        self.services.remove(i);
        self.index.remove(key);
        self.reindex(i);
        self.changed();
        Ok(())
    }

    /// `-C`: remove every service (timeouts stay).
    pub fn clear(&mut self) {
        self.services.clear();
        self.index.clear();
        self.marks.clear();
        self.changed();
    }

    /// `--set tcp tcpfin udp`; 0 keeps a value.
    pub fn set_timeouts(&mut self, tcp: u32, tcpfin: u32, udp: u32) {
        let t = &mut self.timeouts;
        if tcp != 0 {
            t.tcp = tcp;
        }
        if tcpfin != 0 {
            t.tcp_fin = tcpfin;
        }
        if udp != 0 {
            t.udp = udp;
        }
        self.changed();
    }

    /// A server's address and thresholds. A server of the other family
    /// than the service's is forwarded to through a tunnel only, and not
    /// while a sync daemon runs (the sync records carry one family for
    /// both; the kernel refuses the same way).
    fn check_dest(s: &Service, spec: &DestSpec, syncing: bool) -> Result<(), ConfigError> {
        if spec.weight < 0 || spec.l_threshold > spec.u_threshold {
            return Err(ConfigError::OutOfRange);
        }
        if !is_unicast(spec.addr) {
            return Err(ConfigError::Invalid);
        }
        if spec.addr.is_ipv6() != s.is_v6() && (spec.fwd != Fwd::Tun || syncing) {
            return Err(ConfigError::Invalid);
        }
        Ok(())
    }

    /// `-a`: the new server goes to the front of the list.
    pub fn add_dest(&mut self, key: &SvcKey, spec: &DestSpec) -> Result<(), ConfigError> {
        let max = self.limits.max_dests;
        let syncing = !self.sync_daemons.is_empty();
        let s = self
            .service_mut(key)
            .ok_or(ConfigError::ServiceNotDefined)?;
        if spec.weight < 0 || spec.l_threshold > spec.u_threshold {
            return Err(ConfigError::OutOfRange);
        }
        let port = s.dest_port(spec.fwd, spec.port);
        if s.dest(spec.addr, port).is_some() {
            return Err(ConfigError::DestExists);
        }
        Self::check_dest(s, spec, syncing)?;
        if s.dests.len() >= max {
            return Err(ConfigError::NoMemory);
        }
        let mut d = Dest::new(spec.addr, port, spec.fwd, spec.weight);
        d.u_threshold = spec.u_threshold;
        d.l_threshold = spec.l_threshold;
        d.tun = spec.tun;
        d.check = spec.check.clone();
        s.check_runs(&d)?;
        s.dests.insert(0, d);
        self.changed();
        Ok(())
    }

    /// `-e`: replaces forwarding, weight, thresholds and tunnel settings;
    /// check options change only where given.
    pub fn edit_dest(&mut self, key: &SvcKey, spec: &DestSpec) -> Result<(), ConfigError> {
        let syncing = !self.sync_daemons.is_empty();
        let s = self
            .service_mut(key)
            .ok_or(ConfigError::ServiceNotDefined)?;
        if spec.weight < 0 || spec.l_threshold > spec.u_threshold {
            return Err(ConfigError::OutOfRange);
        }
        let port = s.dest_port(spec.fwd, spec.port);
        let i = s
            .dest_index(spec.addr, port)
            .ok_or(ConfigError::NoSuchDest)?;
        Self::check_dest(s, spec, syncing)?;
        let mut check = if spec.replace_checks {
            CheckConf::default()
        } else {
            s.dests[i].check.clone()
        };
        merge_check(&mut check, &spec.check);
        let mut probe = s.dests[i].clone();
        (probe.check, probe.fwd) = (check.clone(), spec.fwd);
        s.check_runs(&probe)?;
        let d = &mut s.dests[i];
        d.check = check;
        d.fwd = spec.fwd;
        d.weight = spec.weight;
        if spec.weight > 0 {
            d.last_weight = spec.weight;
        }
        // IPVS clears the overload flag when the upper threshold is removed
        // or raised.
        let clear =
            (spec.u_threshold == 0 || spec.u_threshold > d.u_threshold).then(|| d.load.clone());
        d.u_threshold = spec.u_threshold;
        d.l_threshold = spec.l_threshold;
        d.tun = spec.tun;
        if let Some(load) = clear {
            self.shared(SharedEffect::ClearOverload(load));
        }
        self.changed();
        Ok(())
    }

    /// `-d`. A server written without a port is the one on the service's
    /// port.
    pub fn delete_dest(
        &mut self,
        key: &SvcKey,
        addr: IpAddr,
        port: Option<u16>,
    ) -> Result<(), ConfigError> {
        let s = self
            .service_mut(key)
            .ok_or(ConfigError::ServiceNotDefined)?;
        let port = match s.key {
            SvcKey::Fwmark { .. } => 0,
            SvcKey::Addr { port: sport, .. } => port.unwrap_or(sport),
        };
        let i = s
            .dest_index(addr, port)
            // A DR/TUN server written with a port other than the service's
            // is stored on the service's port: find it there too.
            .or_else(|| {
                let sport = s.port();
                s.dests
                    .iter()
                    .position(|d| d.addr == addr && d.port == sport && d.fwd != Fwd::Nat)
            })
            .ok_or(ConfigError::NoSuchDest)?;
        s.dests.remove(i);
        self.changed();
        Ok(())
    }

    /// Fold one rate sample into every service's and destination's
    /// estimator (the daemon's 2-second timer).
    pub fn sample_rates(&mut self, sample: Sample) {
        for s in &mut self.services {
            s.rate.sample(s.counters.get(), sample);
            for d in s.dests.iter_mut().chain(s.sorry.as_mut()) {
                d.rate.sample(d.counters.get(), sample);
            }
        }
    }

    /// `-Z`: zero the counters and rates of one service (and its servers)
    /// or of everything. Not a configuration change.
    pub fn zero(&mut self, key: Option<&SvcKey>) -> Result<(), ConfigError> {
        let mut zeroed = Vec::new();
        let mut zero_svc = |s: &mut Service| {
            zeroed.push(s.counters.clone());
            s.rate.reset();
            for d in s.dests.iter_mut().chain(s.sorry.as_mut()) {
                zeroed.push(d.counters.clone());
                d.rate.reset();
            }
        };
        match key {
            Some(k) => {
                let s = self.service_mut(k).ok_or(ConfigError::NoSuchService)?;
                zero_svc(s);
            }
            None => self.services.iter_mut().for_each(zero_svc),
        }
        for c in zeroed {
            self.shared(SharedEffect::Zero(c));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grammar;
    use xvs_config::TunKind;

    fn apply(m: &mut Model, line: &str) {
        let args: Vec<&str> = line.split_whitespace().collect();
        m.apply(&grammar::parse(&args).expect("parses"))
            .expect("applies");
    }

    #[test]
    fn config_carries_what_the_data_plane_needs_and_shares_the_live_parts() {
        let mut m = Model::default();
        apply(&mut m, "-A -u 198.18.0.53:53 -s sh -p 60 -M 255.255.255.0");
        apply(
            &mut m,
            "-a -u 198.18.0.53:53 -r 198.18.1.3 -i -w 2 --tun-type gue --tun-port 6080 --tun-remcsum",
        );
        apply(&mut m, "-a -u 198.18.0.53:53 -r 198.18.1.4 -g -w 0");
        apply(&mut m, "--set 0 30 0");
        let cfg = m.config();
        assert_eq!(cfg.timeouts.tcp_fin, 30);
        let s = &cfg.services[0];
        assert_eq!((s.sched.as_str(), s.flags), ("sh", 0));
        assert_eq!(s.persist, Some(Persist::new(60, 24)));
        // Newest first, as the model lists them.
        let d = &s.dests[1];
        assert_eq!(d.addr, "198.18.1.3".parse::<IpAddr>().unwrap());
        assert_eq!((d.fwd, d.weight, d.last_weight), (Fwd::Tun, 2, 2));
        assert_eq!(
            d.tun,
            TunKind::Gue {
                port: 6080,
                checksum: true
            }
        );
        assert_eq!((s.dests[0].weight, s.dests[0].tun), (0, TunKind::Ipip));
        assert!(Arc::ptr_eq(&s.counters, &m.services[0].counters));
        assert!(Arc::ptr_eq(&d.load, &m.services[0].dests[1].load));
        assert!(Arc::ptr_eq(&d.counters, &m.services[0].dests[1].counters));
    }
}

#[cfg(test)]
mod ipv6_tests {
    use super::*;
    use crate::grammar;

    fn apply(m: &mut Model, line: &str) -> Result<(), ConfigError> {
        let args: Vec<&str> = line.split_whitespace().collect();
        m.apply(&grammar::parse(&args).expect("parses"))
    }

    /// The kernel's rules for a server's address: unicast (not mapped,
    /// not link-local), and the service's family unless tunnelled.
    #[test]
    fn servers_of_either_family() {
        let mut m = Model::default();
        apply(&mut m, "-A -t [2001:2::100]:80 -s rr").unwrap();
        apply(&mut m, "-A -t 198.18.0.100:80 -s rr").unwrap();
        apply(&mut m, "-A -f 7 -6 -s rr").unwrap();
        let table: &[(&str, Result<(), ConfigError>)] = &[
            ("-a -t [2001:2::100]:80 -r 2001:2::11 -g", Ok(())),
            ("-a -t [2001:2::100]:80 -r [2001:2::12]:8080 -m", Ok(())),
            ("-a -t [2001:2::100]:80 -r 2001:2::13 -i", Ok(())),
            ("-a -t [2001:2::100]:80 -r 198.18.0.11 -i", Ok(())),
            ("-a -t 198.18.0.100:80 -r 2001:2::11 -i", Ok(())),
            (
                "-a -t 198.18.0.100:80 -r 2001:2::12 -i --tun-type gue --tun-port 6080",
                Ok(()),
            ),
            ("-a -f 7 -6 -r 2001:2::11 -g", Ok(())),
            ("-a -f 7 -6 -r 198.18.0.11 -i", Ok(())),
            (
                "-a -t [2001:2::100]:80 -r 2001:2::11 -g",
                Err(ConfigError::DestExists),
            ),
            (
                "-a -t [2001:2::100]:80 -r [::ffff:198.18.0.1]:80 -m",
                Err(ConfigError::Invalid),
            ),
            (
                "-a -t [2001:2::100]:80 -r fe80::1 -g",
                Err(ConfigError::Invalid),
            ),
            (
                "-a -t [2001:2::100]:80 -r ff02::1 -g",
                Err(ConfigError::Invalid),
            ),
            ("-a -t [2001:2::100]:80 -r :: -g", Err(ConfigError::Invalid)),
            (
                "-a -t 198.18.0.100:80 -r [::ffff:198.18.0.1]:80 -i",
                Err(ConfigError::Invalid),
            ),
            ("-e -t 198.18.0.100:80 -r 2001:2::11 -i -w 3", Ok(())),
            ("-d -t 198.18.0.100:80 -r 2001:2::12", Ok(())),
        ];
        for (line, want) in table {
            assert_eq!(&apply(&mut m, line), want, "{line}");
        }
        let listed = |m: &Model, i: usize| -> Vec<(IpAddr, u16, Fwd, i32)> {
            m.services[i]
                .dests
                .iter()
                .map(|d| (d.addr, d.port, d.fwd, d.weight))
                .collect()
        };
        let ip = |a: &str| a.parse::<IpAddr>().unwrap();
        assert_eq!(
            listed(&m, 1),
            [(ip("2001:2::11"), 80, Fwd::Tun, 3)],
            "the IPv4 service's tunnelled IPv6 server, edited"
        );
        // While a sync daemon runs, mixed families are refused (the
        // existing server stays).
        apply(&mut m, "--start-daemon master").unwrap();
        assert_eq!(
            apply(&mut m, "-a -t 198.18.0.100:80 -r 2001:2::14 -i"),
            Err(ConfigError::Invalid)
        );
        assert_eq!(
            apply(&mut m, "-e -t 198.18.0.100:80 -r 2001:2::11 -i -w 4"),
            Err(ConfigError::Invalid)
        );
        apply(&mut m, "-a -t 198.18.0.100:80 -r 198.18.0.14 -i").unwrap();
        assert!(m.sync_daemon(SyncRole::Master).is_some());
        apply(&mut m, "--stop-daemon master").unwrap();
        apply(&mut m, "-a -t 198.18.0.100:80 -r 2001:2::14 -i").unwrap();
    }
}

#[cfg(test)]
mod check_tests {
    use super::*;
    use crate::grammar;
    use xvs_config::check::{OnFail, DEFAULT_RISE};

    fn apply(m: &mut Model, line: &str) -> Result<(), ConfigError> {
        let args: Vec<&str> = line.split_whitespace().collect();
        m.apply(&grammar::parse(&args).expect("parses"))
    }

    fn ok(m: &mut Model, line: &str) {
        apply(m, line).unwrap_or_else(|e| panic!("{line}: {e}"));
    }

    fn status(state: Health) -> HealthStatus {
        HealthStatus {
            state,
            last: "ok".into(),
            ..HealthStatus::default()
        }
    }

    /// Report `state` for every probe of server `addr`.
    fn report(m: &mut Model, addr: &str, state: Health, weight: Option<i32>) -> bool {
        let addr: IpAddr = addr.parse().unwrap();
        let map: HashMap<ProbeKey, HealthStatus> = m
            .probes()
            .into_iter()
            .filter(|(k, _)| k.addr == addr)
            .map(|(k, _)| {
                let mut st = status(state);
                st.weight = weight;
                (k, st)
            })
            .collect();
        m.set_health(&map)
    }

    /// (address, weight) of every destination the data plane gets for
    /// service `i`.
    fn plane(m: &Model, i: usize) -> Vec<(String, i32)> {
        let mut v: Vec<_> = m.config().services[i]
            .dests
            .iter()
            .map(|d| (format!("{}:{}", d.addr, d.port), d.weight))
            .collect();
        v.sort();
        v
    }

    fn three_services() -> Model {
        let mut m = Model::default();
        for port in [80, 81, 82] {
            ok(
                &mut m,
                &format!("-A -t 198.18.0.10:{port} -s rr --check tcp --check-port 8080"),
            );
            for rs in 1..=3 {
                ok(
                    &mut m,
                    &format!("-a -t 198.18.0.10:{port} -r 198.18.1.{rs}:{port} -m -w 2"),
                );
            }
        }
        m
    }

    #[test]
    fn shared_servers_with_equal_checks_share_one_probe() {
        let m = three_services();
        let probes = m.probes();
        assert_eq!(probes.len(), 3, "{probes:?}");
        for (k, users) in &probes {
            assert_eq!((k.port, k.vip, k.spec.kind), (8080, None, CheckKind::Tcp));
            assert_eq!(users.len(), 3);
        }
        // A different spec on one pair is a probe of its own.
        let mut m = m;
        ok(
            &mut m,
            "-e -t 198.18.0.10:81 -r 198.18.1.1:81 -m -w 2 --check-fall 5",
        );
        assert_eq!(m.probes().len(), 4);
        // No check, no probe.
        ok(&mut m, "-E -t 198.18.0.10:82 -s rr --check none");
        assert_eq!(m.probes().len(), 4);
        assert_eq!(
            m.probes().iter().map(|(_, u)| u.len()).sum::<usize>(),
            6,
            "service 82's three servers are unchecked"
        );
    }

    #[test]
    fn vip_checks_probe_the_vip_and_fwmark_ones_the_server_port() {
        let mut m = Model::default();
        ok(&mut m, "-A -t 198.18.0.10:80 --check vip");
        ok(&mut m, "-a -t 198.18.0.10:80 -r 198.18.1.1 -g");
        ok(&mut m, "-A -f 7 --check ping");
        ok(&mut m, "-a -f 7 -r 198.18.1.1 -g");
        let p = m.probes();
        assert_eq!(p.len(), 2);
        let vip = p
            .iter()
            .find(|(k, _)| k.spec.kind == CheckKind::Vip)
            .unwrap();
        assert_eq!(vip.0.vip, Some(("198.18.0.10".parse().unwrap(), 80)));
        let ping = p
            .iter()
            .find(|(k, _)| k.spec.kind == CheckKind::Ping)
            .unwrap();
        assert_eq!((ping.0.vip, ping.0.port), (None, 0));
        // Pinged for two services on two ports: one probe.
        ok(&mut m, "-A -t 198.18.0.10:443 --check ping");
        ok(&mut m, "-a -t 198.18.0.10:443 -r 198.18.1.1 -g");
        ok(&mut m, "-A -t 198.18.0.10:25 --check ping");
        ok(&mut m, "-a -t 198.18.0.10:25 -r 198.18.1.1 -g");
        let p = m.probes();
        let pings: Vec<_> = p
            .iter()
            .filter(|(k, _)| k.spec.kind == CheckKind::Ping)
            .collect();
        assert_eq!(pings.len(), 1, "{pings:?}");
        assert_eq!(pings[0].1.len(), 3, "the fwmark service, 443 and 25");
        // Checks that cannot run are refused when configured.
        let e = apply(&mut m, "-a -t 198.18.0.10:80 -r 198.18.1.2:8080 -m").unwrap_err();
        assert!(e.to_string().contains("vip check"), "{e}");
        let e = apply(&mut m, "-a -f 7 -r 198.18.1.2 --check tcp").unwrap_err();
        assert!(e.to_string().contains("--check-port"), "{e}");
        ok(&mut m, "-a -f 7 -r 198.18.1.2 --check tcp --check-port 22");
        let e = apply(&mut m, "-a -f 7 -r 198.18.1.3 --check exec").unwrap_err();
        assert!(e.to_string().contains("--check-cmd"), "{e}");
        let e = apply(&mut m, "-E -f 7 --check http").unwrap_err();
        assert!(e.to_string().contains("--check-port"), "{e}");
        // A server's own options must suit the check it gets.
        let e = apply(&mut m, "-a -f 7 -r 198.18.1.4 --check-cmd /bin/true").unwrap_err();
        assert_eq!(
            e.to_string(),
            "the 'check-cmd' option is only for exec checks"
        );
        ok(
            &mut m,
            "-E -f 7 --check http --check-port 80 --check-regex ^ok",
        );
        let e = apply(&mut m, "-a -f 7 -r 198.18.1.4 --check-method HEAD").unwrap_err();
        assert!(e.to_string().contains("HEAD"), "{e}");
    }

    #[test]
    fn checked_servers_start_down_and_follow_the_checker() {
        let mut m = Model::default();
        ok(&mut m, "-A -t 198.18.0.10:80 -s rr --check tcp");
        ok(&mut m, "-a -t 198.18.0.10:80 -r 198.18.1.1:80 -m -w 3");
        ok(
            &mut m,
            "-a -t 198.18.0.10:80 -r 198.18.1.2:80 -m -w 2 --check none",
        );
        ok(
            &mut m,
            "-a -t 198.18.0.10:80 -r 198.18.1.3:80 -m -w 4 --check-on-fail remove",
        );
        let st = m.service_state(&m.services[0]);
        let rs3 = &st.dests[0];
        let spec = &rs3.probe.as_ref().unwrap().spec;
        assert_eq!(
            (rs3.health, rs3.removed, spec.rise),
            (Health::Down, true, DEFAULT_RISE)
        );
        assert_eq!(spec.on_fail, OnFail::Remove);
        assert_eq!(
            plane(&m, 0),
            [("198.18.1.1:80".into(), 0), ("198.18.1.2:80".into(), 2)],
            "down at start: 1 inhibited, 3 removed, 2 unchecked"
        );
        let gen = m.generation;
        assert!(!report(&mut m, "198.18.1.1", Health::Rising, None));
        assert_eq!(m.generation, gen, "rising changes nothing");
        assert!(report(&mut m, "198.18.1.1", Health::Up, None));
        assert!(report(&mut m, "198.18.1.3", Health::Up, None));
        assert!(m.generation > gen);
        assert_eq!(
            plane(&m, 0),
            [
                ("198.18.1.1:80".into(), 3),
                ("198.18.1.2:80".into(), 2),
                ("198.18.1.3:80".into(), 4)
            ]
        );
        assert!(!report(&mut m, "198.18.1.3", Health::Falling, None));
        assert!(report(&mut m, "198.18.1.3", Health::Down, None));
        assert_eq!(plane(&m, 0).len(), 2, "removed while down");
        // An exec weight replaces the configured one while up.
        assert!(report(&mut m, "198.18.1.1", Health::Up, Some(7)));
        assert_eq!(plane(&m, 0)[0], ("198.18.1.1:80".into(), 7));
        // The configured weight is still what -e and -S see.
        assert_eq!(m.services[0].dests[2].weight, 3);
    }

    #[test]
    fn unchanged_checks_keep_their_state_across_edits() {
        let mut m = three_services();
        for rs in 1..=3 {
            report(&mut m, &format!("198.18.1.{rs}"), Health::Up, None);
        }
        // A weight edit does not touch the check.
        ok(&mut m, "-e -t 198.18.0.10:80 -r 198.18.1.1:80 -m -w 5");
        assert_eq!(plane(&m, 0)[0], ("198.18.1.1:80".into(), 5));
        // -e without check options keeps the server's own options.
        ok(
            &mut m,
            "-e -t 198.18.0.10:80 -r 198.18.1.2:80 -m -w 2 --check-rise 4",
        );
        ok(&mut m, "-e -t 198.18.0.10:80 -r 198.18.1.2:80 -m -w 2");
        let d = m.services[0]
            .dest("198.18.1.2".parse().unwrap(), 80)
            .unwrap();
        assert_eq!(d.check.rise, Some(4));
        // A changed check is a new probe: down until it reports.
        assert_eq!(plane(&m, 0)[1], ("198.18.1.2:80".into(), 0));
        // -E changing other service options keeps the checks.
        ok(&mut m, "-E -t 198.18.0.10:81 -s wlc");
        assert_eq!(m.services[1].check.kind, Some(CheckKind::Tcp));
        assert!(plane(&m, 1).iter().all(|(_, w)| *w == 2));
        // Statuses of probes no longer needed are dropped.
        ok(&mut m, "-D -t 198.18.0.10:80");
        m.set_health(&HashMap::new());
        assert_eq!(m.health.len(), 3);
    }

    #[test]
    fn the_sorry_server_stands_in_while_the_quorum_is_lost() {
        let mut m = Model::default();
        ok(
            &mut m,
            "-A -t 198.18.0.10:80 -s rr --check tcp --quorum 3 --sorry-server 198.18.2.1:8080",
        );
        ok(&mut m, "-a -t 198.18.0.10:80 -r 198.18.1.1:80 -m -w 2");
        ok(&mut m, "-a -t 198.18.0.10:80 -r 198.18.1.2:80 -m -w 2");
        assert_eq!(m.services[0].quorum.weight, Some(3));
        // All down: the sorry server, with the servers' method (NAT keeps
        // its port), weight 1; the servers at 0.
        let sorry = m.config().services[0].dests.last().cloned().unwrap();
        assert_eq!((sorry.fwd, sorry.port, sorry.weight), (Fwd::Nat, 8080, 1));
        assert_eq!(plane(&m, 0).iter().filter(|(_, w)| *w == 0).count(), 2);
        // One up (weight 2 < quorum 3): still sorry, that one at 0.
        report(&mut m, "198.18.1.1", Health::Up, None);
        assert_eq!(plane(&m, 0).len(), 3);
        assert!(plane(&m, 0)
            .iter()
            .all(|(a, w)| (*w == 1) == a.starts_with("198.18.2.1")));
        // Both up: quorum met, the sorry server leaves.
        assert!(report(&mut m, "198.18.1.2", Health::Up, None));
        assert_eq!(
            plane(&m, 0),
            [("198.18.1.1:80".into(), 2), ("198.18.1.2:80".into(), 2)]
        );
        // Its counters last across uses.
        let c = m.services[0].sorry.as_ref().unwrap().counters.clone();
        report(&mut m, "198.18.1.2", Health::Down, None);
        assert!(Arc::ptr_eq(&m.config().services[0].dests[2].counters, &c));
        // -E without --sorry-server keeps it; `none` removes it.
        ok(&mut m, "-E -t 198.18.0.10:80 -s rr");
        assert!(m.services[0].sorry.is_some());
        ok(&mut m, "-E -t 198.18.0.10:80 -s rr --sorry-server none");
        assert_eq!(plane(&m, 0).len(), 2);
        // DR sorry server takes the service port; wrong family refused.
        ok(&mut m, "-A -t 198.18.0.11:80 --sorry-server 198.18.2.1");
        assert_eq!(m.config().services[1].dests[0].fwd, Fwd::Dr);
        assert_eq!(m.config().services[1].dests[0].port, 80);
        assert_eq!(
            apply(&mut m, "-E -t 198.18.0.11:80 --sorry-server [2001:2::1]:80"),
            Err(ConfigError::Invalid)
        );
    }
}
