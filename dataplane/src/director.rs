//! Bringing the data plane up and down: the steering program on every
//! interface, an AF_XDP socket and a pinned worker on every RX queue, the
//! neighbour thread, and snapshot publication (which also keeps the
//! steering program's service map in step).

use crate::io::xdp::{AttachMode, Steering};
use crate::io::xsk::XskPort;
use crate::neigh::NeighTable;
use crate::pipeline::{DropReason, Pipeline, PipelineStats};
use crate::svc::{Snapshot, SnapshotCell, V4Key};
use crate::worker::{self, ConnInfo, Report, Request};
use crossbeam::channel::{unbounded, Sender};
use std::collections::HashSet;
use std::io;
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
    /// Connection table capacity of each worker.
    pub conns_per_worker: usize,
    /// UMEM frames per socket.
    pub frames: u32,
}

impl Default for DirectorConfig {
    fn default() -> Self {
        DirectorConfig {
            ifaces: Vec::new(),
            cores: Vec::new(),
            conns_per_worker: 1 << 18,
            frames: 4096,
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
        Ok(IfaceInfo {
            name: name.to_string(),
            ifindex,
            mac,
            rx_queues,
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
    join: JoinHandle<(XskPort, Report)>,
}

/// The running data plane.
pub struct Director {
    steering: Vec<Steering>,
    workers: Vec<WorkerHandle>,
    neigh: Arc<NeighTable>,
    neigh_thread: Option<JoinHandle<()>>,
    cell: Arc<SnapshotCell>,
    stop: Arc<AtomicBool>,
    steered: HashSet<V4Key>,
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
    /// interface and socket saying how it runs.
    pub fn start(cfg: &DirectorConfig) -> io::Result<Self> {
        let infos = cfg
            .ifaces
            .iter()
            .map(|i| IfaceInfo::read(i))
            .collect::<io::Result<Vec<_>>>()?;
        let cell = Arc::new(SnapshotCell::new(Snapshot::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let neigh = NeighTable::new(infos.iter().map(|i| i.ifindex).collect());
        let mut me = Director {
            steering: Vec::new(),
            workers: Vec::new(),
            neigh: neigh.clone(),
            neigh_thread: None,
            cell: cell.clone(),
            stop: stop.clone(),
            steered: HashSet::new(),
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
        let mut next_core = 0;
        for info in &infos {
            let mut steer = Steering::load(info.ifindex)?;
            let mode = steer.attach()?;
            eprintln!(
                "xvsd: {}: XDP steering program attached in {} mode, {} RX queue(s)",
                info.name,
                match mode {
                    AttachMode::Driver => "native",
                    AttachMode::Generic => "generic",
                },
                info.rx_queues
            );
            for q in 0..info.rx_queues {
                let port = XskPort::open(&info.name, q, cfg.frames)?;
                steer.set_xsk(q, port.fd())?;
                eprintln!(
                    "xvsd: {}:{q}: AF_XDP socket in {} mode",
                    info.name,
                    if port.zero_copy() {
                        "zero-copy"
                    } else {
                        "copy"
                    }
                );
                let core = cores.get(next_core % cores.len().max(1)).copied();
                next_core += 1;
                let name = format!("{}:{q}", info.name);
                let (tx, rx) = unbounded();
                let mut pipeline = Pipeline::new(cell.load().1, cfg.conns_per_worker, info.mac);
                pipeline.set_writer(me.workers.len());
                let (c2, s2, n2) = (cell.clone(), stop.clone(), name.clone());
                let join = std::thread::Builder::new()
                    .name(format!("xvs-{name}"))
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
            me.steering.push(steer);
        }
        if !infos.is_empty() {
            me.neigh_thread = Some(neigh.spawn(stop));
        }
        Ok(me)
    }

    /// The next-hop table (for building snapshots).
    pub fn neigh(&self) -> &Arc<NeighTable> {
        &self.neigh
    }

    /// Publish a new snapshot to the workers and the steering programs.
    pub fn publish(&mut self, snap: Snapshot) -> io::Result<()> {
        let keys: HashSet<V4Key> = snap.v4_keys().copied().collect();
        for k in keys.difference(&self.steered) {
            for s in &self.steering {
                s.add_service(k.proto, k.vip, k.port)?;
            }
        }
        for k in self.steered.difference(&keys) {
            for s in &self.steering {
                s.remove_service(k.proto, k.vip, k.port);
            }
        }
        self.steered = keys;
        self.cell.publish(snap);
        Ok(())
    }

    /// Every worker's connections.
    pub fn connections(&self) -> Vec<ConnInfo> {
        let mut out = Vec::new();
        for w in &self.workers {
            let (tx, rx) = crossbeam::channel::bounded(1);
            if w.requests.send(Request::Conns(tx)).is_ok() {
                if let Ok(list) = rx.recv_timeout(Duration::from_secs(2)) {
                    out.extend(list);
                }
            }
        }
        out
    }

    /// Every worker's counters, summed, plus the drop reasons by name.
    pub fn stats(&self) -> PipelineStats {
        let mut sum = PipelineStats::default();
        for w in &self.workers {
            let (tx, rx) = crossbeam::channel::bounded(1);
            if w.requests.send(Request::Stats(tx)).is_ok() {
                if let Ok((s, _)) = rx.recv_timeout(Duration::from_secs(2)) {
                    sum.tx += s.tx;
                    sum.pass += s.pass;
                    sum.conns_created += s.conns_created;
                    sum.conns_expired += s.conns_expired;
                    for r in DropReason::ALL {
                        sum.drops[r as usize] += s.drops[r as usize];
                    }
                }
            }
        }
        sum
    }

    /// Stop the workers, drain their sockets, detach the programs, and
    /// return each worker's report (frame accounting included).
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
        for s in &mut self.steering {
            s.detach();
        }
        if let Some(t) = self.neigh_thread.take() {
            let _ = t.join();
        }
        reports
    }
}

impl Drop for Director {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for s in &mut self.steering {
            s.detach();
        }
    }
}
