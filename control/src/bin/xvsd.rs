//! `xvsd`: the xvs daemon. Binds an AF_XDP socket on every RX queue of the
//! interfaces it is given, runs one pinned worker per queue, and serves
//! xvsadm on a Unix socket. With no `--iface` it runs control-only.
//!
//! Threads: the workers (data plane); an acceptor that checks each peer's
//! credentials; a few request readers, so a slow client never holds up the
//! control thread; the control thread (this `main`), the only owner of the
//! configuration, which executes requests in batches, publishes one new
//! snapshot per batch that changed something and only then answers, ticks
//! the rate estimators every 2 s and renders the metrics page every second;
//! and with `--metrics`, the thread serving that page.

use clap::Parser;
use signal_hook::consts::{SIGINT, SIGTERM};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use xvs_control::access::{self, Group};
use xvs_control::metrics::{self, DataplaneSample, DataplaneStats, MetricsServer};
use xvs_control::proto::{self, Request, Response};
use xvs_control::snapshot::SnapshotBuilder;
use xvs_control::{ConnEntry, Control, Runtime};
use xvs_dataplane::director::{Director, DirectorConfig};

/// Threads reading requests off accepted connections.
const READERS: usize = 4;
/// Requests executed before one publish (and then all answered).
const MAX_BATCH: usize = 256;
/// Rate estimator period.
const TICK: Duration = Duration::from_secs(2);
/// Metrics page refresh period.
const METRICS_REFRESH: Duration = Duration::from_secs(1);

#[derive(Parser, Debug)]
#[command(
    name = "xvsd",
    version,
    about = "xvs: a userspace Layer-4 load balancer on AF_XDP"
)]
struct Args {
    /// Interface to serve (repeat for several); none: control only.
    #[arg(long = "iface")]
    ifaces: Vec<String>,
    /// Control socket path (default /run/xvs/xvsd.sock, or $XVS_SOCKET).
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Cores to pin workers to, e.g. `0,1` or `0-3` (default: all).
    #[arg(long)]
    cores: Option<String>,
    /// Maximum number of connections in all.
    #[arg(long, default_value_t = 1 << 20)]
    conn_max: usize,
    /// Rules in `xvsadm -S` format to load at start.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Serve Prometheus metrics at http://ADDR/metrics; ADDR is PORT or
    /// :PORT (loopback) or HOST:PORT.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<String>,
    /// Also let members of this group (id or name) use the control socket
    /// (default: root only).
    #[arg(long, value_name = "GID|NAME")]
    group: Option<String>,
}

fn parse_cores(s: &str) -> Result<Vec<usize>, String> {
    let mut out = Vec::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        let bad = || format!("bad core list {s:?}");
        match part.split_once('-') {
            Some((a, b)) => {
                let a: usize = a.trim().parse().map_err(|_| bad())?;
                let b: usize = b.trim().parse().map_err(|_| bad())?;
                if b < a || b - a > 4096 {
                    return Err(bad());
                }
                out.extend(a..=b);
            }
            None => out.push(part.trim().parse().map_err(|_| bad())?),
        }
    }
    Ok(out)
}

struct Live<'a>(&'a Director);

impl Runtime for Live<'_> {
    fn dataplane(&self) -> String {
        let d = self.0;
        let table = d.table();
        let used = table.iter().count();
        let mut out = format!("Data plane: {} worker(s)\n", d.workers());
        for l in d.counters().lines("  ") {
            out.push_str(&l);
            out.push('\n');
        }
        out.push_str(&format!(
            "  connection table: {used} of {} entries in use ({:.0} bytes each with its indexes)\n",
            table.capacity(),
            table.bytes_per_entry()
        ));
        out
    }

    fn connections(&self) -> Vec<ConnEntry> {
        self.0
            .connections()
            .into_iter()
            .map(|c| ConnEntry {
                proto: c.proto,
                template: c.template,
                state: c.state,
                expire_secs: c.expire_secs,
                cip: c.cip.into(),
                cport: c.cport,
                vip: c.vip.into(),
                vport: c.vport,
                dip: c.rip,
                dport: c.rport,
            })
            .collect()
    }
}

fn fail(msg: String) -> ! {
    eprintln!("xvsd: {msg}");
    std::process::exit(1);
}

/// One request on its way to the control thread, with where to answer.
struct Job {
    req: Request,
    reply: mpsc::Sender<Response>,
}

/// Accept connections until `stop`; hand each to a reader thread with
/// whether its peer may use the daemon.
fn accept_loop(
    listener: UnixListener,
    jobs: SyncSender<Job>,
    stop: Arc<AtomicBool>,
    group: Option<Group>,
) {
    let (conns_tx, conns_rx) = mpsc::sync_channel::<(UnixStream, bool)>(64);
    let conns_rx = Arc::new(Mutex::new(conns_rx));
    for i in 0..READERS {
        let rx = conns_rx.clone();
        let jobs = jobs.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("xvs-ctl-read{i}"))
            .spawn(move || read_loop(&rx, &jobs));
        if let Err(e) = spawned {
            fail(format!("cannot start a request reader: {e}"));
        }
    }
    for conn in listener.incoming() {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let stream = match conn {
            Ok(s) => s,
            Err(e) => {
                eprintln!("xvsd: accept: {e}");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let allowed = xvs_dataplane::io::peer_uid(&stream)
            .map(|uid| access::allowed(uid, group.as_ref()))
            .unwrap_or(false);
        if conns_tx.send((stream, allowed)).is_err() {
            break;
        }
    }
}

fn read_loop(conns: &Mutex<Receiver<(UnixStream, bool)>>, jobs: &SyncSender<Job>) {
    loop {
        let next = conns.lock().unwrap_or_else(|e| e.into_inner()).recv();
        let Ok((stream, allowed)) = next else {
            return;
        };
        // Peers that may not use the daemon get a small ceiling: their
        // request is read only to be answered with a refusal.
        let max = if allowed {
            proto::MAX_FRAME
        } else {
            proto::MAX_UNPRIVILEGED_FRAME
        };
        let req = match proto::read_request(&stream, max) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("xvsd: control request: {e}");
                continue;
            }
        };
        let resp = if allowed {
            let (tx, rx) = mpsc::channel();
            if jobs.send(Job { req, reply: tx }).is_err() {
                return;
            }
            match rx.recv() {
                Ok(r) => r,
                Err(_) => return,
            }
        } else {
            Response::fail(
                255,
                "xvsd: permission denied (only root, or the --group given to xvsd, may use it)",
            )
        };
        if let Err(e) = proto::write_response(&stream, &resp) {
            eprintln!("xvsd: control response: {e}");
        }
    }
}

/// The data plane's counters for the metrics page.
fn dataplane_stats(director: &Director, workers: usize) -> DataplaneStats {
    DataplaneStats {
        workers,
        counters: director
            .counters()
            .iter()
            .map(|c| DataplaneSample {
                metric: c.metric,
                label: c.label,
                help: c.help,
                value: c.value,
            })
            .collect(),
    }
}

/// Create the control socket: mode 0600, or 0660 owned by `group`.
fn bind_socket(socket: &Path, group: Option<&Group>) -> UnixListener {
    if let Some(dir) = socket.parent() {
        if !dir.as_os_str().is_empty() {
            if let Err(e) = std::fs::create_dir_all(dir) {
                fail(format!("{}: {e}", dir.display()));
            }
        }
    }
    let _ = std::fs::remove_file(socket);
    // No permissions for group and others from the start; widened below
    // only for --group.
    let listener = {
        let old = nix_umask(0o177);
        let l = UnixListener::bind(socket);
        nix_umask(old);
        match l {
            Ok(l) => l,
            Err(e) => fail(format!("{}: {e}", socket.display())),
        }
    };
    let mode = match group {
        Some(g) => {
            if let Err(e) = std::os::unix::fs::chown(socket, None, Some(g.gid)) {
                fail(format!(
                    "{}: cannot give it to group {}: {e}",
                    socket.display(),
                    g.gid
                ));
            }
            0o660
        }
        None => 0o600,
    };
    if let Err(e) = std::fs::set_permissions(socket, std::fs::Permissions::from_mode(mode)) {
        fail(format!("{}: {e}", socket.display()));
    }
    listener
}

fn main() {
    let args = Args::parse();
    let cores = match args.cores.as_deref().map(parse_cores).transpose() {
        Ok(c) => c.unwrap_or_default(),
        Err(e) => fail(e),
    };
    let socket = args
        .socket
        .clone()
        .or_else(|| std::env::var_os(proto::SOCKET_ENV).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(proto::DEFAULT_SOCKET));
    let group = args.group.as_deref().map(|g| {
        let groups = std::fs::read_to_string("/etc/group").unwrap_or_default();
        access::resolve_group(g, &groups).unwrap_or_else(|e| fail(format!("--group: {e}")))
    });
    let metrics_addr = args
        .metrics
        .as_deref()
        .map(|a| metrics::parse_listen_addr(a).unwrap_or_else(|e| fail(e)));

    let stop = Arc::new(AtomicBool::new(false));
    for sig in [SIGINT, SIGTERM] {
        if let Err(e) = signal_hook::flag::register(sig, stop.clone()) {
            fail(format!("cannot install signal handler: {e}"));
        }
    }

    let mut queues = 0usize;
    for i in &args.ifaces {
        match xvs_dataplane::director::IfaceInfo::read(i) {
            Ok(info) => queues = queues.max(info.rx_queues as usize),
            Err(e) => fail(e.to_string()),
        }
    }
    // One counter shard per worker, before any configuration exists.
    xvs_dataplane::stats::set_workers(queues);
    let cfg = DirectorConfig {
        ifaces: args.ifaces.clone(),
        cores,
        conn_max: args.conn_max,
        ..DirectorConfig::default()
    };
    let mut director = match Director::start(&cfg) {
        Ok(d) => d,
        Err(e) => fail(format!("cannot start the data plane: {e}")),
    };
    if args.ifaces.is_empty() {
        eprintln!("xvsd: no --iface given: control only, nothing is forwarded");
    }

    // `-L`'s header shows the connection table's hash buckets, as IPVS's
    // `size=` does.
    let buckets = u32::try_from(director.table().buckets()).unwrap_or(u32::MAX);
    let mut control = Control::with_config(xvs_control::model::Limits::default(), buckets);
    let mut builder = SnapshotBuilder::new();
    if let Some(path) = &args.config {
        let rules = match std::fs::read_to_string(path) {
            Ok(r) => r,
            Err(e) => fail(format!("{}: {e}", path.display())),
        };
        let req = Request {
            args: vec!["-R".into()],
            stdin: Some(rules),
        };
        let resp = control.execute(&req, &Live(&director));
        if resp.code != 0 {
            fail(format!("{}: {}", path.display(), resp.stderr.trim_end()));
        }
        eprintln!(
            "xvsd: {}: {} service(s) loaded",
            path.display(),
            control.model().services.len()
        );
    }
    let snap = builder.build(control.model(), director.neigh());
    if let Err(e) = director.publish(snap) {
        fail(format!("cannot program the steering map: {e}"));
    }
    let mut published = control.generation();

    let page = Arc::new(Mutex::new(String::new()));
    let metrics_server = metrics_addr.map(|addr| {
        *page.lock().unwrap_or_else(|e| e.into_inner()) =
            metrics::render(control.model(), &dataplane_stats(&director, queues));
        match MetricsServer::start(addr, page.clone()) {
            Ok(m) => {
                eprintln!("xvsd: metrics on http://{}/metrics", m.local_addr());
                m
            }
            Err(e) => fail(format!("--metrics {addr}: {e}")),
        }
    });

    let listener = bind_socket(&socket, group.as_ref());
    let (jobs_tx, jobs_rx) = mpsc::sync_channel::<Job>(MAX_BATCH);
    let acceptor = {
        let stop = stop.clone();
        let group = group.clone();
        std::thread::Builder::new()
            .name("xvs-ctl-accept".into())
            .spawn(move || accept_loop(listener, jobs_tx, stop, group))
            .unwrap_or_else(|e| fail(format!("cannot start the acceptor: {e}")))
    };
    eprintln!("xvsd: listening on {}", socket.display());

    let mut next_tick = Instant::now() + TICK;
    let mut next_metrics = Instant::now() + METRICS_REFRESH;
    let mut batch: Vec<(Response, mpsc::Sender<Response>)> = Vec::with_capacity(MAX_BATCH);
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now >= next_tick {
            control.tick(now);
            next_tick += TICK;
            if next_tick <= now {
                next_tick = now + TICK;
            }
        }
        if metrics_server.is_some() && now >= next_metrics {
            let text = metrics::render(control.model(), &dataplane_stats(&director, queues));
            *page.lock().unwrap_or_else(|e| e.into_inner()) = text;
            next_metrics = Instant::now() + METRICS_REFRESH;
        }
        let wake = if metrics_server.is_some() {
            next_tick.min(next_metrics)
        } else {
            next_tick
        };
        // Wake at least every 100 ms to notice a stop signal.
        let wait = wake
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(100));
        let first = match jobs_rx.recv_timeout(wait) {
            Ok(job) => job,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => {
                eprintln!("xvsd: the control acceptor stopped");
                break;
            }
        };
        // Execute everything queued, publish once, then answer: when
        // xvsadm returns, the workers already have the new configuration.
        let mut job = Some(first);
        while let Some(j) = job.take() {
            let resp = control.execute(&j.req, &Live(&director));
            batch.push((resp, j.reply));
            if batch.len() < MAX_BATCH {
                job = jobs_rx.try_recv().ok();
            }
        }
        if control.generation() != published {
            let snap = builder.build(control.model(), director.neigh());
            if let Err(e) = director.publish(snap) {
                eprintln!("xvsd: cannot program the steering map: {e}");
            }
            published = control.generation();
        }
        for (resp, reply) in batch.drain(..) {
            let _ = reply.send(resp);
        }
    }

    eprintln!("xvsd: stopping");
    stop.store(true, Ordering::Relaxed);
    // Wake the acceptor so it sees the stop flag.
    let _ = UnixStream::connect(&socket);
    let _ = acceptor.join();
    drop(jobs_rx);
    if let Some(m) = metrics_server {
        m.stop();
    }
    for l in director.counters().lines("xvsd: ") {
        eprintln!("{l}");
    }
    for r in director.stop() {
        let f = r.frames;
        eprintln!(
            "xvsd: worker {} frames total={} fill={} rx={} tx={} comp={} free={} lost={}",
            r.name,
            f.total,
            f.fill,
            f.rx,
            f.tx,
            f.comp,
            f.free,
            f.lost()
        );
    }
    let _ = std::fs::remove_file(&socket);
}

/// Set the process umask, returning the old one.
fn nix_umask(mask: u32) -> u32 {
    xvs_dataplane::io::set_umask(mask)
}
