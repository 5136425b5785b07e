//! `xvsd`: the xvs daemon. Binds an AF_XDP socket on every RX queue of the
//! interfaces it is given, runs one pinned worker per queue, and serves
//! xvsadm on a Unix socket. With no `--iface` it runs control-only.

use clap::Parser;
use signal_hook::consts::{SIGINT, SIGTERM};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use xvs_control::proto::{self, Request};
use xvs_control::snapshot::SnapshotBuilder;
use xvs_control::{ConnEntry, Control, Runtime};
use xvs_dataplane::director::{Director, DirectorConfig};
use xvs_dataplane::pipeline::DropReason;

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
    fn connections(&self) -> Vec<ConnEntry> {
        self.0
            .connections()
            .into_iter()
            .map(|c| ConnEntry {
                proto: c.proto,
                template: false,
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

    let stop = Arc::new(AtomicBool::new(false));
    for sig in [SIGINT, SIGTERM] {
        if let Err(e) = signal_hook::flag::register(sig, stop.clone()) {
            fail(format!("cannot install signal handler: {e}"));
        }
    }

    let mut queues = 0usize;
    for i in &args.ifaces {
        match xvs_dataplane::director::IfaceInfo::read(i) {
            Ok(info) => queues += info.rx_queues as usize,
            Err(e) => fail(e.to_string()),
        }
    }
    // One counter shard per worker, before any configuration exists.
    xvs_dataplane::stats::set_workers(queues);
    let cfg = DirectorConfig {
        ifaces: args.ifaces.clone(),
        cores,
        conns_per_worker: (args.conn_max / queues.max(1)).max(1),
        ..DirectorConfig::default()
    };
    let mut director = match Director::start(&cfg) {
        Ok(d) => d,
        Err(e) => fail(format!("cannot start the data plane: {e}")),
    };
    if args.ifaces.is_empty() {
        eprintln!("xvsd: no --iface given: control only, nothing is forwarded");
    }

    let mut control = Control::new();
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
    }
    let snap = builder.build(control.model(), director.neigh());
    if let Err(e) = director.publish(snap) {
        fail(format!("cannot program the steering map: {e}"));
    }
    let mut published = control.generation();

    if let Some(dir) = socket.parent() {
        if !dir.as_os_str().is_empty() {
            if let Err(e) = std::fs::create_dir_all(dir) {
                fail(format!("{}: {e}", dir.display()));
            }
        }
    }
    let _ = std::fs::remove_file(&socket);
    // Create the socket with no permissions for group and others from the
    // start, then set 0600 explicitly.
    let listener = {
        let old = nix_umask(0o177);
        let l = UnixListener::bind(&socket);
        nix_umask(old);
        match l {
            Ok(l) => l,
            Err(e) => fail(format!("{}: {e}", socket.display())),
        }
    };
    let _ = std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600));
    if let Err(e) = listener.set_nonblocking(true) {
        fail(format!("{}: {e}", socket.display()));
    }
    eprintln!("xvsd: listening on {}", socket.display());

    let mut next_tick = Instant::now() + Duration::from_secs(2);
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                let _ = stream.set_nonblocking(false);
                let allowed = xvs_dataplane::io::peer_uid(&stream)
                    .map(|uid| uid == 0)
                    .unwrap_or(false);
                let res = proto::serve_one(stream, |req| {
                    if !allowed {
                        return proto::Response::fail(
                            255,
                            "xvsd: permission denied (only root may use xvsd)",
                        );
                    }
                    control.execute(&req, &Live(&director))
                });
                if let Err(e) = res {
                    eprintln!("xvsd: control request: {e}");
                }
                if control.generation() != published {
                    let snap = builder.build(control.model(), director.neigh());
                    if let Err(e) = director.publish(snap) {
                        eprintln!("xvsd: cannot program the steering map: {e}");
                    }
                    published = control.generation();
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => {
                eprintln!("xvsd: accept: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        if Instant::now() >= next_tick {
            control.tick(Instant::now());
            next_tick += Duration::from_secs(2);
        }
    }

    eprintln!("xvsd: stopping");
    let totals = director.stats();
    let drops: Vec<String> = DropReason::ALL
        .iter()
        .map(|r| format!("{}={}", r.name(), totals.drops[*r as usize]))
        .collect();
    eprintln!(
        "xvsd: pipeline tx={} pass={} conns_created={} conns_expired={} drops: {}",
        totals.tx,
        totals.pass,
        totals.conns_created,
        totals.conns_expired,
        drops.join(" ")
    );
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
