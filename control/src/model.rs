//! The configuration: virtual services, their real servers and the
//! protocol timeouts, with IPVS's rules and refusal messages.
//!
//! The model is plain data owned by the control thread. Every successful
//! change bumps [`Model::generation`], which is how the daemon knows to
//! build and publish a new snapshot for the workers. The live parts that
//! workers write (traffic counters, connection counts) sit behind `Arc`s
//! that survive edits, so an edit never loses a count.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use xvs_config::stats::Counters;
use xvs_config::svc::{Fwd, Persist, SvcKey};
use xvs_config::{Config, DestConf, ServiceConf, SyncDaemonConf, SyncRole};
use xvs_scheduler::DestLoad;

use crate::grammar::{Command, DestSpec, ServiceSpec, TunConf};
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
}

impl Dest {
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

    /// The service as the data plane needs it.
    pub fn config(&self) -> ServiceConf {
        ServiceConf {
            key: self.key,
            sched: self.sched.clone(),
            flags: self.flags,
            persist: self
                .persistence
                .map(|timeout| Persist::new(timeout, self.netmask)),
            dests: self.dests.iter().map(Dest::config).collect(),
            counters: self.counters.clone(),
        }
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

/// Whether an address can be a real server (IPVS requires unicast).
fn is_unicast(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(a) => !(a.is_unspecified() || a.is_multicast() || a.is_broadcast()),
        IpAddr::V6(a) => !(a.is_unspecified() || a.is_multicast()),
    }
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
    /// counters and connection counts are the model's own `Arc`s).
    pub fn config(&self) -> Config {
        Config {
            services: self.services.iter().map(Service::config).collect(),
            marks: self.marks.clone(),
            timeouts: self.timeouts,
            sloppy_tcp: self.sloppy_tcp,
        }
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
        let seq = self.next_seq;
        self.next_seq += 1;
        self.index.insert(spec.key, self.services.len());
        self.services.push(Service {
            key: spec.key,
            sched: spec.sched.clone(),
            flags: spec.flags,
            persistence: spec.persistence,
            netmask: spec.netmask,
            ops: spec.ops,
            dests: Vec::new(),
            counters: Arc::new(Counters::default()),
            rate: RateEst::default(),
            seq,
        });
        self.changed();
        Ok(())
    }

    /// `-E`: replaces scheduler, flags, persistence, mask and ops (ipvsadm
    /// sends every field, defaults included).
    pub fn edit_service(&mut self, spec: &ServiceSpec) -> Result<(), ConfigError> {
        let i = self
            .service_index(&spec.key)
            .ok_or(ConfigError::NoSuchService)?;
        check_sched(spec)?;
        let s = &mut self.services[i];
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

    fn check_dest(s: &Service, spec: &DestSpec) -> Result<(), ConfigError> {
        if spec.weight < 0 || spec.l_threshold > spec.u_threshold {
            return Err(ConfigError::OutOfRange);
        }
        if !is_unicast(spec.addr) || spec.addr.is_ipv6() != s.is_v6() {
            return Err(ConfigError::Invalid);
        }
        Ok(())
    }

    /// `-a`: the new server goes to the front of the list.
    pub fn add_dest(&mut self, key: &SvcKey, spec: &DestSpec) -> Result<(), ConfigError> {
        let max = self.limits.max_dests;
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
        Self::check_dest(s, spec)?;
        if s.dests.len() >= max {
            return Err(ConfigError::NoMemory);
        }
        s.dests.insert(
            0,
            Dest {
                addr: spec.addr,
                port,
                fwd: spec.fwd,
                weight: spec.weight,
                last_weight: spec.weight.max(0),
                u_threshold: spec.u_threshold,
                l_threshold: spec.l_threshold,
                tun: spec.tun,
                load: Arc::new(DestLoad::default()),
                counters: Arc::new(Counters::default()),
                rate: RateEst::default(),
            },
        );
        self.changed();
        Ok(())
    }

    /// `-e`: replaces forwarding, weight, thresholds and tunnel settings.
    pub fn edit_dest(&mut self, key: &SvcKey, spec: &DestSpec) -> Result<(), ConfigError> {
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
        Self::check_dest(s, spec)?;
        let d = &mut s.dests[i];
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
            for d in &mut s.dests {
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
            for d in &mut s.dests {
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
