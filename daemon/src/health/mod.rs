//! The health checker: probes the configured real servers and reports
//! what it finds to the control thread.
//!
//! It runs beside the data plane and never in its way: one scheduling
//! thread decides when each probe is due and a small fixed pool of probe
//! threads runs them, each bounded by its timeout, so a server that hangs
//! holds up one probe thread for at most that long and never a worker or
//! the control socket. Probes are keyed by [`ProbeKey`] (server, port,
//! check): services that share a server with equal checks share one
//! probe, and a configuration change that leaves a key in place leaves its
//! state and cadence alone ([`Engine::reconcile`]).
//!
//! Every result goes to the control thread as a [`HealthStatus`] (the
//! listings show the last result and latency); the state only moves
//! through the rise/fall machine of [`machine`], and every move is logged
//! with its reason.

pub mod machine;
pub mod probe;
mod tls;
pub mod vip;

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use xvs_config::check::{CheckKind, HealthStatus, ProbeKey};
use xvs_config::tun::TunKind;
use xvs_dataplane::svc::NeighCell;

use machine::Machine;
use probe::Outcome;

/// Probe threads: probes that run at once (the rest wait their turn).
pub const POOL: usize = 8;

/// How a `vip` probe reaches the real server.
#[derive(Debug, Clone, Default)]
pub enum VipPath {
    /// Not a `vip` check (or a server it cannot reach: the probe fails).
    #[default]
    None,
    /// Direct routing: an Ethernet frame to the server's MAC, out of the
    /// interface the route to it names (both from this cell).
    Dr(Arc<NeighCell>),
    /// Encapsulated to the server as the data plane tunnels to it
    /// (IP-in-IP, GUE or GRE); the answer is awaited on the interface
    /// the route to the server (this cell) names.
    Tun(TunKind, Arc<NeighCell>),
}

/// What a probe needs besides its key.
#[derive(Debug, Clone, Default)]
pub struct ProbeCtx {
    /// A service the probe serves, as `exec` commands get it: the VIP (or
    /// `fwmark:N`) and the port.
    pub service: Option<(String, u16)>,
    /// The way to the server for `vip` checks.
    pub path: VipPath,
}

/// One probe to run: its identity and context.
#[derive(Debug, Clone)]
pub struct Target {
    /// Identity (server, port, check).
    pub key: ProbeKey,
    /// Context.
    pub ctx: ProbeCtx,
}

/// One report to the control thread: the status of a probe after a result
/// (or when it starts).
pub type Report = (ProbeKey, HealthStatus);

enum Msg {
    Reconcile(Vec<Target>),
    Done { id: u64, outcome: Outcome, us: u64 },
    Stop,
}

struct Job {
    id: u64,
    key: ProbeKey,
    ctx: ProbeCtx,
    reply: Sender<Msg>,
}

struct Entry {
    key: ProbeKey,
    ctx: ProbeCtx,
    machine: Machine,
    next: Instant,
    started: Option<Instant>,
}

/// The running checker.
pub struct Engine {
    tx: Sender<Msg>,
    sched: Option<JoinHandle<()>>,
    pool: Vec<JoinHandle<()>>,
}

/// How far into its interval a probe's first run falls: the same for the
/// same key, spread evenly over keys (no thundering herd at start).
pub fn first_delay(key: &ProbeKey) -> Duration {
    // DefaultHasher::new() has fixed keys: the same key, the same delay.
    let mut h = DefaultHasher::new();
    key.hash(&mut h);
    let frac = (h.finish() % 1000) as u32;
    key.spec.interval() * frac / 1000
}

/// `tcp 198.18.0.2:80`, `vip 198.18.0.10:80 via 198.18.0.2`: how the
/// log names a probe.
pub fn describe(key: &ProbeKey) -> String {
    let addr = |a: IpAddr, p: u16| match a {
        IpAddr::V4(_) => format!("{a}:{p}"),
        IpAddr::V6(_) => format!("[{a}]:{p}"),
    };
    match (key.spec.kind, key.vip) {
        (CheckKind::Vip, Some((v, p))) => format!("vip {} via {}", addr(v, p), key.addr),
        (CheckKind::Ping, _) => format!("ping {}", key.addr),
        (k, _) => format!("{k} {}", addr(key.addr, key.port)),
    }
}

impl Engine {
    /// Start the scheduling thread and the probe threads; statuses go to
    /// `reports`.
    pub fn start(reports: Sender<Report>) -> std::io::Result<Engine> {
        let (tx, rx) = mpsc::channel::<Msg>();
        let (job_tx, job_rx) = mpsc::channel::<Job>();
        let job_rx = Arc::new(Mutex::new(job_rx));
        let mut pool = Vec::with_capacity(POOL);
        for i in 0..POOL {
            let jobs = job_rx.clone();
            pool.push(
                std::thread::Builder::new()
                    .name(format!("xvs-check-{i}"))
                    .spawn(move || probe_thread(&jobs))?,
            );
        }
        let self_tx = tx.clone();
        let sched = std::thread::Builder::new()
            .name("xvs-check".into())
            .spawn(move || schedule(&rx, &self_tx, job_tx, &reports))?;
        Ok(Engine {
            tx,
            sched: Some(sched),
            pool,
        })
    }

    /// Run exactly `targets` from now on: new keys start (DOWN, first run
    /// spread over the interval), keys no longer listed stop, and keys
    /// still listed keep their state and cadence.
    pub fn reconcile(&self, targets: Vec<Target>) {
        let _ = self.tx.send(Msg::Reconcile(targets));
    }

    /// Stop scheduling probes. The probe threads end as soon as the probe
    /// each may be running ends (within its timeout); a stopping daemon
    /// does not wait for them.
    pub fn stop(mut self) {
        let _ = self.tx.send(Msg::Stop);
        if let Some(s) = self.sched.take() {
            let _ = s.join();
        }
        self.pool.clear();
    }
}

fn probe_thread(jobs: &Mutex<Receiver<Job>>) {
    loop {
        let job = {
            let rx = jobs.lock().unwrap_or_else(|e| e.into_inner());
            rx.recv()
        };
        let Ok(job) = job else {
            return;
        };
        let start = Instant::now();
        let outcome = probe::run(&job.key, &job.ctx, start + job.key.spec.timeout());
        let us = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
        let _ = job.reply.send(Msg::Done {
            id: job.id,
            outcome,
            us,
        });
    }
}

fn schedule(rx: &Receiver<Msg>, me: &Sender<Msg>, jobs: Sender<Job>, reports: &Sender<Report>) {
    let mut entries: HashMap<u64, Entry> = HashMap::new();
    let mut ids: HashMap<ProbeKey, u64> = HashMap::new();
    let mut next_id = 0u64;
    loop {
        let now = Instant::now();
        let mut wake = now + Duration::from_secs(1);
        for (&id, e) in entries.iter_mut() {
            if e.started.is_some() {
                continue;
            }
            if e.next <= now {
                e.started = Some(now);
                let _ = jobs.send(Job {
                    id,
                    key: e.key.clone(),
                    ctx: e.ctx.clone(),
                    reply: me.clone(),
                });
            } else {
                wake = wake.min(e.next);
            }
        }
        match rx.recv_timeout(wake.saturating_duration_since(Instant::now())) {
            Ok(Msg::Reconcile(targets)) => {
                let mut keep: HashMap<ProbeKey, ProbeCtx> = HashMap::with_capacity(targets.len());
                for t in targets {
                    keep.insert(t.key, t.ctx);
                }
                ids.retain(|k, id| {
                    let stay = keep.contains_key(k);
                    if !stay {
                        eprintln!("xvsd: check {}: stopped", describe(k));
                        entries.remove(id);
                    }
                    stay
                });
                let now = Instant::now();
                for (key, ctx) in keep {
                    if let Some(id) = ids.get(&key) {
                        if let Some(e) = entries.get_mut(id) {
                            e.ctx = ctx;
                        }
                        continue;
                    }
                    next_id += 1;
                    let machine = Machine::new(&key.spec);
                    let _ = reports.send((key.clone(), machine.status().clone()));
                    eprintln!(
                        "xvsd: check {}: started, DOWN until {} success(es)",
                        describe(&key),
                        key.spec.rise
                    );
                    ids.insert(key.clone(), next_id);
                    entries.insert(
                        next_id,
                        Entry {
                            next: now + first_delay(&key),
                            key,
                            ctx,
                            machine,
                            started: None,
                        },
                    );
                }
            }
            Ok(Msg::Done { id, outcome, us }) => {
                // A probe of a key removed meanwhile finds no entry.
                let Some(e) = entries.get_mut(&id) else {
                    continue;
                };
                let started = e.started.take().unwrap_or_else(Instant::now);
                e.next = (started + e.key.spec.interval()).max(Instant::now());
                if let Some(line) = e.machine.record(&e.key.spec, &outcome, us) {
                    eprintln!("xvsd: check {}: {line}", describe(&e.key));
                }
                let _ = reports.send((e.key.clone(), e.machine.status().clone()));
            }
            Ok(Msg::Stop) | Err(RecvTimeoutError::Disconnected) => return,
            Err(RecvTimeoutError::Timeout) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use xvs_config::check::{CheckConf, CheckKind};

    fn key(port: u16, kind: CheckKind, interval: u32) -> ProbeKey {
        let conf = CheckConf {
            kind: Some(kind),
            interval: Some(interval),
            timeout: Some(1),
            rise: Some(1),
            fall: Some(1),
            ..CheckConf::default()
        };
        ProbeKey {
            addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port,
            vip: None,
            spec: conf.resolve(&CheckConf::default()),
        }
    }

    #[test]
    fn first_runs_are_spread_and_stable() {
        let mut delays: Vec<Duration> = (1000..1100)
            .map(|p| first_delay(&key(p, CheckKind::Tcp, 10)))
            .collect();
        assert_eq!(
            first_delay(&key(1000, CheckKind::Tcp, 10)),
            delays[0],
            "same key, same delay"
        );
        assert!(delays.iter().all(|d| *d < Duration::from_secs(10)));
        delays.sort();
        delays.dedup();
        assert!(
            delays.len() > 80,
            "100 keys, {} distinct delays",
            delays.len()
        );
        let early = delays
            .iter()
            .filter(|d| **d < Duration::from_secs(5))
            .count();
        assert!(
            (20..=80).contains(&early),
            "{early} of 100 in the first half"
        );
    }

    fn next(rx: &Receiver<Report>) -> Report {
        rx.recv_timeout(Duration::from_secs(10))
            .expect("a report within 10 s")
    }

    #[test]
    fn reconcile_starts_probes_stops_them_and_keeps_unchanged_state() {
        use xvs_config::check::Health;
        let up = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let up_port = up.local_addr().unwrap().port();
        let down_port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let (tx, rx) = mpsc::channel();
        let engine = Engine::start(tx).unwrap();
        let (a, b) = (
            key(up_port, CheckKind::Tcp, 1),
            key(down_port, CheckKind::Tcp, 1),
        );
        let target = |k: &ProbeKey| Target {
            key: k.clone(),
            ctx: ProbeCtx::default(),
        };
        engine.reconcile(vec![target(&a), target(&b)]);
        let mut seen: HashMap<ProbeKey, HealthStatus> = HashMap::new();
        while seen.get(&a).map(|s| s.state) != Some(Health::Up)
            || seen.get(&b).map(|s| s.latency.count()).unwrap_or(0) == 0
        {
            let (k, s) = next(&rx);
            seen.insert(k, s);
        }
        assert_eq!(seen[&b].state, Health::Down);
        assert!(seen[&b].last.contains("refused"), "{}", seen[&b].last);
        let since = seen[&a].since;
        // `a` stays, `b` goes: `a` keeps its state (no new DOWN report),
        // and once reports of `a` come from after the change, none of `b`
        // comes any more (both ran once a second).
        engine.reconcile(vec![target(&a)]);
        let mut a_reports = 0;
        while a_reports < 4 {
            let (k, s) = next(&rx);
            if k == b {
                assert!(a_reports < 2, "a report of a stopped probe");
                continue;
            }
            assert_eq!((s.state, s.since), (Health::Up, since));
            a_reports += 1;
        }
        engine.stop();
    }
}
