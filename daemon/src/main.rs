//! `xvsd`: the xvs daemon. Binds an AF_XDP socket on every RX queue of the
//! interfaces it is given, runs one pinned worker per queue, and serves
//! xvsadm on a Unix socket. With no `--iface` it runs control-only.
//!
//! Threads: the workers (data plane); an acceptor that checks each peer's
//! credentials and a few request readers ([`server`]), so a slow client
//! never holds up the control thread; the control thread ([`control_loop`],
//! run by this `main`), the only owner of the configuration; and with
//! `--metrics`, the thread serving that page. This crate is the only one
//! that links both the control plane and the data plane: [`runtime`]
//! answers the control plane's questions about the running data plane.
//!
//! The connection table lives in a file under `/dev/shm` (`--table-file`),
//! so a daemon started again after a crash keeps every connection, and
//! SIGUSR2 re-executes the binary from disk without letting go of the
//! table, the steering program or its maps: a live upgrade. A plain stop
//! (SIGTERM, SIGINT) detaches and removes the table file.

use clap::Parser;
use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR2};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use xvs_control::access;
use xvs_control::metrics::{self, MetricsServer};
use xvs_control::proto::{self, Request};
use xvs_control::Control;
use xvs_dataplane::director::{Director, DirectorConfig};

mod control_loop;
mod runtime;
mod server;

use control_loop::{ControlLoop, MAX_BATCH};
use runtime::Live;
use server::Job;

#[derive(Parser, Debug)]
#[command(
    name = "xvsd",
    version,
    about = "xvs: a userspace Layer-4 load balancer on AF_XDP",
    after_help = "Signals: SIGTERM or SIGINT stop the daemon: the interfaces are left as \
they were and the connection table file is removed. SIGUSR2 is a live upgrade: the \
daemon re-executes its binary as it is on disk now, with the same arguments, \
keeping the steering program, its maps and the connection table, so the new \
version takes over every established connection. After a crash, start xvsd again \
with the same arguments: it maps the table file again and carries on."
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
    /// File the connection table lives in, so connections survive a crash
    /// and restart or a live upgrade (default:
    /// /dev/shm/xvs-net<NETNS>-<IFACES>.table; ids of services and real
    /// servers go next to it, in .ids).
    #[arg(long, value_name = "PATH")]
    table_file: Option<PathBuf>,
}

/// The default table file of a daemon on `ifaces` in this network
/// namespace (its inode number tells namespaces apart).
fn default_table_file(ifaces: &[String]) -> Option<PathBuf> {
    if ifaces.is_empty() {
        return None;
    }
    let ns = std::fs::read_link("/proc/self/ns/net")
        .ok()
        .and_then(|l| {
            let l = l.to_string_lossy().into_owned();
            Some(l.strip_prefix("net:[")?.strip_suffix(']')?.to_owned())
        })
        .unwrap_or_else(|| "0".into());
    Some(PathBuf::from(format!(
        "/dev/shm/xvs-net{ns}-{}.table",
        ifaces.join("+")
    )))
}

/// Replace this process with the binary at `/proc/self/exe` as it is on
/// disk now (a new version installed over it included), with the same
/// arguments. Returns only on failure.
fn reexec() -> std::io::Error {
    use std::os::unix::process::CommandExt;
    let exe = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => return e,
    };
    // Replaced on disk (a package upgrade renames a new file over it): the
    // link names the old, deleted inode; the new binary has the plain name.
    let s = exe.to_string_lossy();
    let exe = match s.strip_suffix(" (deleted)") {
        Some(p) => PathBuf::from(p),
        None => exe.clone(),
    };
    std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .exec()
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

/// Print `msg` and exit 1 (start-up errors).
pub(crate) fn fail(msg: String) -> ! {
    eprintln!("xvsd: {msg}");
    std::process::exit(1);
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
    let upgrade = Arc::new(AtomicBool::new(false));
    for (sig, flag) in [
        (SIGINT, &stop),
        (SIGTERM, &stop),
        (SIGUSR2, &upgrade),
        (SIGUSR2, &stop),
    ] {
        if let Err(e) = signal_hook::flag::register(sig, flag.clone()) {
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
    xvs_config::stats::set_workers(queues);
    let cfg = DirectorConfig {
        ifaces: args.ifaces.clone(),
        cores,
        conn_max: args.conn_max,
        table_file: args
            .table_file
            .clone()
            .or_else(|| default_table_file(&args.ifaces)),
        ..DirectorConfig::default()
    };
    let director = match Director::start(&cfg) {
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
    let mut lp = ControlLoop::new(control, director, queues);
    if let Err(e) = lp.publish() {
        fail(format!("cannot program the steering map: {e}"));
    }

    let metrics_server = metrics_addr.map(|addr| {
        let page = Arc::new(Mutex::new(String::new()));
        lp.serve_metrics(page.clone());
        match MetricsServer::start(addr, page) {
            Ok(m) => {
                eprintln!("xvsd: metrics on http://{}/metrics", m.local_addr());
                m
            }
            Err(e) => fail(format!("--metrics {addr}: {e}")),
        }
    });

    let listener = server::bind_socket(&socket, group.as_ref());
    let (jobs_tx, jobs_rx) = mpsc::sync_channel::<Job>(MAX_BATCH);
    let acceptor = {
        let stop = stop.clone();
        let group = group.clone();
        std::thread::Builder::new()
            .name("xvs-ctl-accept".into())
            .spawn(move || server::accept_loop(listener, jobs_tx, stop, group))
            .unwrap_or_else(|e| fail(format!("cannot start the acceptor: {e}")))
    };
    eprintln!("xvsd: listening on {}", socket.display());

    lp.run(&jobs_rx, &stop);

    eprintln!("xvsd: stopping");
    stop.store(true, Ordering::Relaxed);
    // Wake the acceptor so it sees the stop flag.
    let _ = UnixStream::connect(&socket);
    let _ = acceptor.join();
    drop(jobs_rx);
    if let Some(m) = metrics_server {
        m.stop();
    }
    let director = lp.into_director();
    if upgrade.load(Ordering::Relaxed) {
        for w in director.stop_for_upgrade() {
            eprintln!("xvsd: worker {w} panicked");
        }
        let _ = std::fs::remove_file(&socket);
        eprintln!("xvsd: live upgrade: executing the binary on disk");
        let e = reexec();
        // The program and table are still in place: a start by hand (or
        // the service manager) takes them over.
        fail(format!("live upgrade: cannot execute the new binary: {e}"));
    }
    for l in runtime::exit_report(&director) {
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
    // Stopped on purpose: the interfaces are detached, so the table's
    // connections are gone through the kernel's resets anyway.
    if let Some(t) = &cfg.table_file {
        let _ = std::fs::remove_file(t);
        let _ = std::fs::remove_file(xvs_dataplane::director::id_file_of(t));
    }
}
