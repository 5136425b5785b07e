//! `xvsd`: the xvs daemon. Binds an AF_XDP socket on every RX queue of the
//! interfaces it is given, runs one pinned worker per queue, and serves
//! xvsadm on a Unix socket. With no `--iface` it runs control-only.
//!
//! Threads: the workers (data plane); an acceptor that checks each peer's
//! credentials and a thread per connection ([`server`]), so a slow client
//! never holds up the control thread; the control thread ([`control_loop`],
//! run by this `main`), the only owner of the configuration; the health
//! checker's scheduling thread and probe threads ([`health`]); and with
//! `--metrics`, the thread serving that page. This crate is the only one
//! that links both the control plane and the data plane: [`runtime`]
//! answers the control plane's questions about the running data plane.
//!
//! Exits. Before anything is attached, an error just exits 1. After that:
//! - a clean stop (SIGTERM, SIGINT, SIGQUIT) and every error exit detach
//!   the steering programs, remove their pins and the interface locks,
//!   and leave the interfaces as they were (exit 0, or 1 for an error);
//! - a crash (`kill -9`, a panic) and a worker failure (a worker panic or
//!   an unrecoverable ring error: exit 2, naming the worker) keep the
//!   programs attached and pinned; they drop the services' frames until a
//!   restarted xvsd takes them over, so that clients retransmit into it
//!   rather than being reset. `xvsd --cleanup IFACE` removes what such an
//!   exit left when the director is retired.
//!
//! The connection table lives in a file under `/dev/shm` (`--table-file`),
//! so a daemon started again after a crash keeps every connection, and
//! SIGUSR2 re-executes the binary from disk without letting go of the
//! table, the steering program or its maps: a live upgrade. A plain stop
//! (SIGTERM, SIGINT) detaches and removes the table file.

use clap::Parser;
use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR2};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use xvs_control::access;
use xvs_control::metrics::{self, MetricsServer};
use xvs_control::proto;
use xvs_control::Control;
use xvs_dataplane::director::{Director, DirectorConfig, IfaceInfo};
use xvs_dataplane::io::xdp;

mod control_loop;
mod health;
mod lock;
mod runtime;
mod server;
mod state;
mod sync;

use lock::IfaceLock;

use control_loop::{ControlLoop, MAX_BATCH};
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
    /// Rules in `xvsadm -S` format: seed an empty state at start (a state
    /// file with rules wins over it), and what SIGHUP reloads.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Directory of the state file (`rules`), rewritten on every change
    /// and loaded at start.
    #[arg(long, value_name = "DIR", default_value = state::DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
    /// Serve Prometheus metrics at http://ADDR/metrics; ADDR is PORT or
    /// :PORT (loopback) or HOST:PORT.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<String>,
    /// Also let members of this group (id or name) use the control socket
    /// (default: root only).
    #[arg(long, value_name = "GID|NAME")]
    group: Option<String>,
    /// Take over an interface that carries another XDP program (detaching
    /// that program) instead of refusing it.
    #[arg(long)]
    replace: bool,
    /// Remove what a dead xvsd left on IFACE (pinned program, maps and
    /// link, lock file), detaching the program, and exit.
    #[arg(long, value_name = "IFACE", conflicts_with = "ifaces")]
    cleanup: Option<String>,
    /// File the connection table lives in, so connections survive a crash
    /// and restart or a live upgrade (default:
    /// /dev/shm/xvs-net<NETNS>-<IFACES>.table; ids of services and real
    /// servers go next to it, in .ids).
    #[arg(long, value_name = "PATH")]
    table_file: Option<PathBuf>,
    /// Open a connection on any TCP segment without RST, not only on a
    /// SYN (IPVS's sloppy_tcp): behind an ECMP router, a flow moved here
    /// from another director keeps going to the server mh chose for it.
    #[arg(long)]
    sloppy_tcp: bool,
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

/// Print `msg`, stop the data plane cleanly (detaching and unpinning its
/// programs), release the interfaces and exit 1 (errors after attaching).
fn fail_attached(director: Director, locks: Vec<IfaceLock>, msg: String) -> ! {
    eprintln!("xvsd: {msg}");
    stop_data_plane(director);
    for l in locks {
        l.release();
    }
    std::process::exit(1);
}

/// Stop the data plane cleanly and print its totals.
fn stop_data_plane(director: Director) {
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
}

/// `--cleanup IFACE`: the exit code.
fn cleanup(iface: &str, table_file: Option<PathBuf>) -> i32 {
    let lock = match IfaceLock::acquire(iface) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("xvsd: --cleanup: {e}");
            return 1;
        }
    };
    if let Err(e) = xdp::ensure_bpffs() {
        eprintln!(
            "xvsd: --cleanup: bpffs is not mounted at {}: {e}",
            xdp::BPFFS
        );
    }
    let ifindex = IfaceInfo::read(iface).ok().map(|i| i.ifindex);
    let code = match xdp::remove_pins(iface, ifindex) {
        Ok(true) => {
            eprintln!("xvsd: {iface}: removed what a previous xvsd left; detached");
            0
        }
        Ok(false) => {
            eprintln!("xvsd: {iface}: nothing left by a previous xvsd");
            0
        }
        Err(e) => {
            eprintln!("xvsd: --cleanup {iface}: {e}");
            1
        }
    };
    // The connection table a daemon on IFACE alone kept (or the one named
    // with --table-file), and its ids.
    if let Some(t) = table_file.or_else(|| default_table_file(&[iface.to_owned()])) {
        for f in [xvs_dataplane::director::id_file_of(&t), t] {
            match std::fs::remove_file(&f) {
                Ok(()) => eprintln!("xvsd: removed {}", f.display()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => eprintln!("xvsd: --cleanup: {}: {e}", f.display()),
            }
        }
    }
    lock.release();
    code
}

fn main() {
    let args = Args::parse();
    if let Some(iface) = &args.cleanup {
        std::process::exit(cleanup(iface, args.table_file.clone()));
    }
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
    let hup = Arc::new(AtomicBool::new(false));
    let upgrade = Arc::new(AtomicBool::new(false));
    for (sig, flag) in [
        (SIGINT, &stop),
        (SIGTERM, &stop),
        (SIGQUIT, &stop),
        (SIGHUP, &hup),
        (SIGUSR2, &upgrade),
        (SIGUSR2, &stop),
    ] {
        if let Err(e) = signal_hook::flag::register(sig, flag.clone()) {
            fail(format!("cannot install signal handler: {e}"));
        }
    }

    // Claim the interfaces and the control socket before touching either.
    let locks: Vec<IfaceLock> = args
        .ifaces
        .iter()
        .map(|i| IfaceLock::acquire(i).unwrap_or_else(|e| fail(e)))
        .collect();
    if let Err(e) = server::claim_socket(&socket) {
        fail(e);
    }
    let pin = !args.ifaces.is_empty()
        && match xdp::ensure_bpffs() {
            Ok(()) => true,
            Err(e) => {
                eprintln!(
                    "xvsd: no bpffs at {} ({e}): crash-safety is off: the XDP \
                     programs go with the daemon and a restart resets every connection",
                    xdp::BPFFS
                );
                false
            }
        };

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
        pin,
        replace: args.replace,
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
    let state_dir = match state::StateDir::open(&args.state_dir) {
        Ok(st) => Some(st),
        Err(e) => fail_attached(
            director,
            locks,
            format!("--state-dir {}: {e}", args.state_dir.display()),
        ),
    };
    let loaded =
        match state::load_at_start(&mut control, state_dir.as_ref(), args.config.as_deref()) {
            Ok(l) => l,
            Err(e) => fail_attached(director, locks, e),
        };
    control.set_sloppy_tcp(args.sloppy_tcp);
    let n = control.model().services.len();
    match &loaded {
        state::Loaded::State(p) => eprintln!(
            "xvsd: rules from the state file {}: {n} service(s) loaded",
            p.display()
        ),
        state::Loaded::Config(p) => {
            eprintln!(
                "xvsd: rules from --config {}: {n} service(s) loaded",
                p.display()
            )
        }
        state::Loaded::Nothing => eprintln!("xvsd: no rules yet"),
    }
    let mut lp = ControlLoop::new(control, director, queues);
    lp.keep_state(
        state_dir,
        !matches!(loaded, state::Loaded::State(_)),
        args.config.clone(),
    );
    if let Err(e) = lp.publish() {
        let msg = format!("cannot program the steering map: {e}");
        fail_attached(lp.into_director(), locks, msg);
    }
    if let Err(e) = lp.start_checks() {
        let msg = format!("cannot start the health checker: {e}");
        fail_attached(lp.into_director(), locks, msg);
    }

    let mut metrics_server = None;
    if let Some(addr) = metrics_addr {
        let page = Arc::new(Mutex::new(String::new()));
        lp.serve_metrics(page.clone());
        match MetricsServer::start(addr, page) {
            Ok(m) => {
                eprintln!("xvsd: metrics on http://{}/metrics", m.local_addr());
                metrics_server = Some(m);
            }
            Err(e) => fail_attached(lp.into_director(), locks, format!("--metrics {addr}: {e}")),
        }
    }
    let stop_metrics = |m: Option<MetricsServer>| {
        if let Some(m) = m {
            m.stop();
        }
    };

    let listener = match server::bind_socket(&socket, group.as_ref()) {
        Ok(l) => l,
        Err(e) => {
            stop_metrics(metrics_server);
            fail_attached(lp.into_director(), locks, e)
        }
    };
    let (jobs_tx, jobs_rx) = mpsc::sync_channel::<Job>(MAX_BATCH);
    let acceptor = {
        let stop = stop.clone();
        let group = group.clone();
        std::thread::Builder::new()
            .name("xvs-ctl-accept".into())
            .spawn(move || server::accept_loop(listener, jobs_tx, stop, group))
    };
    let acceptor = match acceptor {
        Ok(a) => a,
        Err(e) => {
            let _ = std::fs::remove_file(&socket);
            stop_metrics(metrics_server);
            let msg = format!("cannot start the acceptor: {e}");
            fail_attached(lp.into_director(), locks, msg)
        }
    };
    eprintln!("xvsd: listening on {}", socket.display());
    // Serving: the VIPs that can be served may be announced (the BGP
    // feed hears of it); a control-only daemon announces nothing.
    lp.control.set_serving(!args.ifaces.is_empty());

    let ran = lp.run(&jobs_rx, &stop, &hup);
    // Every BGP feed withdraws before anything else stops.
    lp.control.announcer().close();
    if let Err(e) = ran {
        // A crash-like stop: the programs stay pinned (see the module
        // documentation) so that the restart keeps the connections.
        eprintln!(
            "xvsd: {e}: exiting without detaching; the steering programs stay \
             pinned and drop the services' frames until xvsd is restarted"
        );
        let _ = std::fs::remove_file(&socket);
        std::process::exit(2);
    }

    eprintln!("xvsd: stopping");
    stop.store(true, Ordering::Relaxed);
    // Wake the acceptor so it sees the stop flag. If the socket file is
    // gone (removed by hand while the daemon ran), nothing can reach the
    // acceptor: it is left blocked and ends with the process, rather than
    // holding the stop up forever.
    if UnixStream::connect(&socket).is_ok() {
        let _ = acceptor.join();
    } else {
        eprintln!(
            "xvsd: {}: cannot wake the control acceptor (socket file removed?); not waiting for it",
            socket.display()
        );
    }
    drop(jobs_rx);
    stop_metrics(metrics_server);
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
    stop_data_plane(director);
    for l in locks {
        l.release();
    }
    let _ = std::fs::remove_file(&socket);
    // Stopped on purpose: the interfaces are detached, so the table's
    // connections are gone through the kernel's resets anyway.
    if let Some(t) = &cfg.table_file {
        let _ = std::fs::remove_file(t);
        let _ = std::fs::remove_file(xvs_dataplane::director::id_file_of(t));
    }
}
