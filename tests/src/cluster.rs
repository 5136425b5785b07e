//! Several directors behind one ECMP router that learns the VIP from them
//! by BGP: the scale-out topology, with real routing software.
//!
//! The router runs BIRD (eBGP with every director, `merge paths` so the
//! kernel gets one multipath route, `fib_multipath_hash_policy=1` so the
//! 5-tuple picks the path), or FRR's zebra and bgpd (`maximum-paths`)
//! with `XVS_ROUTER=frr`; each director runs xvsd (AF_XDP on its veth,
//! `--sloppy-tcp`) and ExaBGP, whose process is `xvsadm --bgp-feed`: the
//! route has a next hop for a director exactly while its xvsd says so.
//!
//! | host       | namespace | address                                      |
//! |------------|-----------|----------------------------------------------|
//! | client     | `P-cl`    | 198.18.2.10/24, default via the router        |
//! | router     | `P-rt`    | 198.18.2.1/24 (client side), 198.18.1.1/24    |
//! | director i | `P-di`    | 198.18.1.(10+i)/24                            |
//! | rs j       | `P-rsj`   | 198.18.1.(20+j)/24, VIP on lo (DR)            |
//!
//! The router, the directors and the real servers share one bridge (in
//! `P-sw`): directors forward by DR, servers answer the client through the
//! router. The VIP (198.18.0.100) is on none of the links: the client
//! reaches it only through the router. Guards as in [`crate::netns`]: dropping the cluster stops every
//! daemon and removes every namespace and file.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::daemon::Xvsd;
use crate::listing::{self, Stats};
use crate::netns::{
    disable_ipv6, ensure_bpffs, exec_ok, plug, reap_stale, run_ok, spawn, sysctl, unique_prefix,
    wait_up, Host, Netns, Proc, Record,
};
use crate::node::{ClientSummary, Lines};

/// The service address the directors announce.
pub const CLUSTER_VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
/// Most directors a cluster can have (the router knows them all from the
/// start, so one can join later).
pub const MAX_DIRECTORS: u8 = 4;
/// The router's autonomous system.
const ROUTER_AS: u32 = 65000;
/// The directors' autonomous system (one for all: their paths tie).
const DIRECTOR_AS: u32 = 65001;

/// The routing software of the router.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouterKind {
    /// BIRD 2 (the default).
    Bird,
    /// FRR: zebra and bgpd.
    Frr,
}

impl RouterKind {
    /// `XVS_ROUTER`: `frr` for FRR, BIRD otherwise (unset, empty or
    /// `bird`); panics on any other value.
    pub fn from_env() -> RouterKind {
        match std::env::var("XVS_ROUTER").as_deref() {
            Ok("frr") => RouterKind::Frr,
            Ok("bird") | Ok("") | Err(_) => RouterKind::Bird,
            Ok(other) => panic!("XVS_ROUTER={other}: bird or frr"),
        }
    }
}

/// One director: its host, its xvsd and its BGP speaker.
#[derive(Debug)]
pub struct Director {
    /// Its namespace, interface and address.
    pub host: Host,
    /// Its xvsd (None once killed).
    pub xvsd: Option<Xvsd>,
    speaker: Option<Proc>,
}

impl Director {
    /// Its xvsd; panics if it was killed.
    pub fn xvsd(&self) -> &Xvsd {
        self.xvsd.as_ref().expect("xvsd runs")
    }

    /// Its counters of virtual service `svc` (`VIP:port`), from `-Ln
    /// --stats --exact`; panics if it has no such service.
    pub fn stats(&self, svc: &str) -> Stats {
        let out = self.xvsd().adm_ok(&["-Ln", "--stats", "--exact"]);
        listing::parse(&out)
            .iter()
            .find(|s| s.addr == svc)
            .and_then(|s| s.stats())
            .unwrap_or_else(|| panic!("no {svc} on {}:\n{out}", self.host.role))
    }

    /// Its sync daemons' counters (`-L --daemon --stats`).
    pub fn sync_stats(&self) -> SyncStats {
        SyncStats::parse(&self.xvsd().adm_ok(&["-L", "--daemon", "--stats"]))
    }

    /// Its connections to `virt` (`VIP:port`) in state `state`, from
    /// `-Lnc`: (client `IP:port`, real server `IP:port`), sorted.
    pub fn conns(&self, virt: &str, state: &str) -> Vec<(String, String)> {
        let out = self.xvsd().adm_ok(&["-Lnc"]);
        let mut v: Vec<(String, String)> = out
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() == 6 && f[2] == state && f[4] == virt)
                    .then(|| (f[3].to_owned(), f[5].to_owned()))
            })
            .collect();
        v.sort();
        v
    }
}

/// One sync daemon's counters, whole and per peer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncCounters {
    /// The daemon's counters by name.
    pub counters: BTreeMap<String, u64>,
    /// Each peer's counters by name (a backup's senders).
    pub peers: BTreeMap<Ipv4Addr, BTreeMap<String, u64>>,
}

impl SyncCounters {
    /// Counter `name` (0 when absent: a counter appears once it counts).
    pub fn get(&self, name: &str) -> u64 {
        self.counters.get(name).copied().unwrap_or(0)
    }

    /// Peer `addr`'s counter `name` (0 when absent).
    pub fn peer(&self, addr: Ipv4Addr, name: &str) -> u64 {
        self.peers
            .get(&addr)
            .and_then(|c| c.get(name))
            .copied()
            .unwrap_or(0)
    }
}

/// A director's sync daemons as `-L --daemon --stats` lists them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncStats {
    /// The master's counters, if it runs.
    pub master: Option<SyncCounters>,
    /// The backup's counters, if it runs.
    pub backup: Option<SyncCounters>,
}

impl SyncStats {
    /// Read `-L --daemon --stats`: a `master|backup sync daemon (...)` line,
    /// then `  NAME N` lines, then `  peer ADDR` and its `    NAME N` lines.
    pub fn parse(text: &str) -> SyncStats {
        let mut out = SyncStats::default();
        let mut master = None;
        let mut peer: Option<Ipv4Addr> = None;
        for line in text.lines() {
            if let Some(role) = line
                .strip_suffix(')')
                .and_then(|l| l.split(" sync daemon (").next())
            {
                master = match role {
                    "master" => Some(true),
                    "backup" => Some(false),
                    _ => None,
                };
                let slot = if master == Some(true) {
                    &mut out.master
                } else {
                    &mut out.backup
                };
                if master.is_some() {
                    *slot = Some(SyncCounters::default());
                }
                peer = None;
                continue;
            }
            let c = match master {
                Some(true) => out.master.as_mut(),
                Some(false) => out.backup.as_mut(),
                None => None,
            };
            let Some(c) = c else {
                continue;
            };
            let f: Vec<&str> = line.split_whitespace().collect();
            match f.as_slice() {
                ["peer", addr] => peer = addr.parse().ok(),
                [name, n] => {
                    let Ok(n) = n.parse::<u64>() else { continue };
                    let nested = line.starts_with("    ");
                    match peer.filter(|_| nested) {
                        Some(a) => {
                            c.peers.entry(a).or_default().insert((*name).to_owned(), n);
                        }
                        None => {
                            c.counters.insert((*name).to_owned(), n);
                        }
                    }
                }
                _ => {}
            }
        }
        out
    }
}

/// The cluster; see the module documentation.
#[derive(Debug)]
pub struct Cluster {
    /// The per-run name prefix.
    pub prefix: String,
    /// The client.
    pub client: Host,
    /// The router's host on the LAN.
    pub router: Host,
    /// The real servers rs1..rs3.
    pub rs: Vec<Host>,
    /// The directors, in the order they were added.
    pub directors: Vec<Director>,
    /// xvsadm command lines every director is configured with.
    rules: Vec<String>,
    switch_ns: String,
    bridge: String,
    /// Configuration files, sockets and logs of BIRD and ExaBGP.
    dir: PathBuf,
    /// Which routing software the router runs.
    pub router_kind: RouterKind,
    /// The router's daemons (BIRD, or FRR's zebra and bgpd).
    router_procs: Vec<Proc>,
    // Dropped in this order: the daemons above, namespaces, the record.
    namespaces: Vec<Netns>,
    record: Record,
}

impl Cluster {
    /// A client, the router (BIRD running), three real servers and `n`
    /// directors, each running xvsd configured with `rules` (xvsadm
    /// command lines, `{iface}` standing for the director's interface, as
    /// in `--start-daemon master --mcast-interface {iface}`) and its
    /// speaker. Panics if anything fails (what was
    /// made so far is removed while unwinding).
    pub fn new(n: u8, rules: &[&str]) -> Self {
        assert!(n <= MAX_DIRECTORS);
        ensure_bpffs();
        reap_stale();
        let p = unique_prefix();
        let roles = ["sw", "cl", "rt", "rs1", "rs2", "rs3"];
        let record = Record::create(&p, &roles.map(|r| format!("{p}-{r}")));
        let dir = std::env::temp_dir().join(format!("xvs-cluster-{p}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temporary directory");
        let mut namespaces = Vec::new();
        for r in roles {
            let ns = Netns::create(&format!("{p}-{r}")).unwrap_or_else(|e| panic!("{e}"));
            disable_ipv6(ns.name());
            namespaces.push(ns);
        }
        let switch_ns = format!("{p}-sw");
        let bridge = format!("{p}-br");
        run_ok(&[
            "ip", "-n", &switch_ns, "link", "add", &bridge, "type", "bridge",
        ]);
        run_ok(&["ip", "-n", &switch_ns, "link", "set", &bridge, "up"]);

        // Client ── router: a link of their own.
        let client = Host {
            role: "client".into(),
            ns: format!("{p}-cl"),
            iface: format!("{p}-cl"),
            port: format!("{p}-rc"),
            ip: Ipv4Addr::new(198, 18, 2, 10),
            mac: "02:58:56:00:02:0a".into(),
        };
        let rt_ns = format!("{p}-rt");
        run_ok(&[
            "ip",
            "-n",
            &client.ns,
            "link",
            "add",
            &client.iface,
            "type",
            "veth",
            "peer",
            "name",
            &client.port,
            "netns",
            &rt_ns,
        ]);
        let ns_ip = |ns: &str, args: &[&str]| {
            let mut v = vec!["ip", "-n", ns];
            v.extend_from_slice(args);
            run_ok(&v);
        };
        ns_ip(
            &client.ns,
            &["addr", "add", "198.18.2.10/24", "dev", &client.iface],
        );
        ns_ip(&client.ns, &["link", "set", &client.iface, "up"]);
        ns_ip(
            &client.ns,
            &["route", "add", "default", "via", "198.18.2.1"],
        );
        ns_ip(
            &rt_ns,
            &["addr", "add", "198.18.2.1/24", "dev", &client.port],
        );
        ns_ip(&rt_ns, &["link", "set", &client.port, "up"]);
        sysctl(
            &rt_ns,
            &[
                ("net.ipv4.ip_forward", "1"),
                ("net.ipv4.fib_multipath_hash_policy", "1"),
                ("net.ipv4.fib_multipath_use_neigh", "1"),
            ],
        );

        let lan_host = |role: &str, last: u8| {
            let ns = format!("{p}-{role}");
            Host {
                role: role.to_owned(),
                iface: ns.clone(),
                port: format!("{ns}p"),
                ns,
                ip: Ipv4Addr::new(198, 18, 1, last),
                mac: format!("02:58:56:00:01:{last:02x}"),
            }
        };
        let router = lan_host("rt", 1);
        plug(&switch_ns, &bridge, &router);
        let mut rs = Vec::new();
        for j in 1..=3u8 {
            let h = lan_host(&format!("rs{j}"), 20 + j);
            sysctl(
                &h.ns,
                &[
                    ("net.ipv4.conf.all.arp_ignore", "1"),
                    ("net.ipv4.conf.all.arp_announce", "2"),
                ],
            );
            ns_ip(
                &h.ns,
                &["addr", "add", &format!("{CLUSTER_VIP}/32"), "dev", "lo"],
            );
            plug(&switch_ns, &bridge, &h);
            sysctl(
                &h.ns,
                &[
                    (&format!("net.ipv4.conf.{}.arp_ignore", h.iface), "1"),
                    (&format!("net.ipv4.conf.{}.arp_announce", h.iface), "2"),
                ],
            );
            ns_ip(&h.ns, &["route", "add", "default", "via", "198.18.1.1"]);
            rs.push(h);
        }
        wait_up([&client, &router].into_iter().chain(rs.iter()));

        let mut c = Cluster {
            prefix: p,
            client,
            router,
            rs,
            directors: Vec::new(),
            rules: rules.iter().map(|r| r.to_string()).collect(),
            switch_ns,
            bridge,
            dir,
            router_kind: RouterKind::from_env(),
            router_procs: Vec::new(),
            namespaces,
            record,
        };
        c.start_router();
        for _ in 0..n {
            c.add_director();
        }
        c
    }

    /// The router: a BGP session with every director address there may
    /// be, the routes merged into one multipath kernel route.
    fn start_router(&mut self) {
        match self.router_kind {
            RouterKind::Bird => self.start_bird(),
            RouterKind::Frr => self.start_frr(),
        }
    }

    /// FRR on the router: zebra (the kernel's table) and bgpd, with a
    /// directory of their own for the configuration, the zebra socket and
    /// the vty sockets. FRR's daemons run as its `frr` user (root is not
    /// in its `frrvty` group), so the directory is theirs.
    fn start_frr(&mut self) {
        let dir = self.dir.join("frr");
        std::fs::create_dir_all(&dir).expect("FRR's directory");
        let mut bgpd = format!(
            "frr defaults traditional\n\
             hostname {p}-rt\n\
             router bgp {ROUTER_AS}\n\
             \x20bgp router-id {rt}\n\
             \x20no bgp ebgp-requires-policy\n\
             \x20neighbor directors peer-group\n\
             \x20neighbor directors remote-as {DIRECTOR_AS}\n\
             \x20neighbor directors timers connect 1\n\
             \x20neighbor directors advertisement-interval 0\n",
            p = self.prefix,
            rt = self.router.ip
        );
        for i in 1..=MAX_DIRECTORS {
            bgpd.push_str(&format!(
                " neighbor {} peer-group directors\n",
                director_ip(i)
            ));
        }
        bgpd.push_str(" address-family ipv4 unicast\n  maximum-paths 16\n exit-address-family\n");
        std::fs::write(dir.join("bgpd.conf"), bgpd).expect("write bgpd.conf");
        std::fs::write(
            dir.join("zebra.conf"),
            format!("hostname {}-rt\n", self.prefix),
        )
        .expect("write zebra.conf");
        run_ok(&["chown", "-R", "frr:frr", &dir.to_string_lossy()]);
        let zserv = dir.join("zserv.api");
        let daemon = |name: &str| -> Vec<String> {
            let d = dir.display();
            vec![
                format!("/usr/lib/frr/{name}"),
                "-f".into(),
                format!("{d}/{name}.conf"),
                "-i".into(),
                format!("{d}/{name}.pid"),
                "-z".into(),
                zserv.display().to_string(),
                "--vty_socket".into(),
                d.to_string(),
                "-P".into(),
                "0".into(),
                "--log".into(),
                format!("file:{d}/{name}.log"),
            ]
        };
        let start = |name: &str| {
            let args = daemon(name);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            spawn(&self.router.ns, &args)
        };
        let zebra = start("zebra");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !zserv.exists() {
            assert!(
                Instant::now() < deadline,
                "zebra did not open {}",
                zserv.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self.router_procs.push(zebra);
        self.router_procs.push(start("bgpd"));
    }

    /// BIRD on the router.
    fn start_bird(&mut self) {
        let mut conf = format!(
            "router id {rt};\n\
             protocol device {{ }}\n\
             protocol kernel {{ ipv4 {{ import none; export all; }}; merge paths on; }}\n\
             template bgp director {{\n\
             \x20   local {rt} as {ROUTER_AS};\n\
             \x20   connect delay time 1; connect retry time 1; error wait time 1, 2;\n\
             \x20   ipv4 {{ import all; export none; }};\n\
             }}\n",
            rt = self.router.ip
        );
        for i in 1..=MAX_DIRECTORS {
            conf.push_str(&format!(
                "protocol bgp d{i} from director {{ neighbor {} as {DIRECTOR_AS}; }}\n",
                director_ip(i)
            ));
        }
        let path = self.dir.join("bird.conf");
        std::fs::write(&path, conf).expect("write bird.conf");
        let ctl = self.dir.join("bird.ctl");
        self.router_procs.push(spawn(
            &self.router.ns,
            &[
                "bird",
                "-f",
                "-c",
                &path.to_string_lossy(),
                "-s",
                &ctl.to_string_lossy(),
            ],
        ));
    }

    /// A new director: namespace on the LAN, xvsd configured with the
    /// cluster's rules, then its BGP speaker. Returns its index.
    pub fn add_director(&mut self) -> usize {
        let i = self.directors.len() as u8 + 1;
        assert!(i <= MAX_DIRECTORS, "at most {MAX_DIRECTORS} directors");
        let ns = format!("{}-d{i}", self.prefix);
        let netns = Netns::create(&ns).unwrap_or_else(|e| panic!("{e}"));
        disable_ipv6(&ns);
        self.namespaces.push(netns);
        let names: Vec<String> = self
            .namespaces
            .iter()
            .map(|n| n.name().to_owned())
            .collect();
        self.record.write(&names);
        let host = Host {
            role: format!("d{i}"),
            iface: ns.clone(),
            port: format!("{ns}p"),
            ns,
            ip: director_ip(i),
            mac: format!("02:58:56:00:01:{:02x}", 10 + i),
        };
        plug(&self.switch_ns, &self.bridge, &host);
        wait_up(std::iter::once(&host));
        let xvsd = Xvsd::start_with(
            Some(&host.ns),
            &["--iface".into(), host.iface.clone(), "--sloppy-tcp".into()],
        );
        for rule in &self.rules {
            let rule = rule.replace("{iface}", &host.iface);
            let args: Vec<&str> = rule.split_whitespace().collect();
            xvsd.adm_ok(&args);
        }
        let speaker = self.start_speaker(&host, &xvsd);
        self.directors.push(Director {
            host,
            xvsd: Some(xvsd),
            speaker: Some(speaker),
        });
        self.directors.len() - 1
    }

    /// ExaBGP on `host`, its process the BGP feed of `xvsd`.
    fn start_speaker(&self, host: &Host, xvsd: &Xvsd) -> Proc {
        let conf = format!(
            "process xvs {{\n\
             \x20   run {adm} --socket {sock} --bgp-feed;\n\
             \x20   encoder text;\n\
             }}\n\
             neighbor {rt} {{\n\
             \x20   router-id {me};\n\
             \x20   local-address {me};\n\
             \x20   local-as {DIRECTOR_AS};\n\
             \x20   peer-as {ROUTER_AS};\n\
             \x20   api {{ processes [ xvs ]; }}\n\
             }}\n",
            adm = crate::bin("xvsadm").display(),
            sock = xvsd.socket().display(),
            rt = self.router.ip,
            me = host.ip,
        );
        let path = self.dir.join(format!("{}.exabgp.conf", host.role));
        std::fs::write(&path, conf).expect("write the ExaBGP configuration");
        let log = self.dir.join(format!("{}.exabgp.log", host.role));
        spawn(
            &host.ns,
            &[
                "env",
                "exabgp.daemon.user=root",
                "exabgp.daemon.daemonize=false",
                "exabgp.api.ack=false",
                "exabgp.api.cli=false",
                &format!("exabgp.log.destination={}", log.display()),
                "exabgp",
                &path.to_string_lossy(),
            ],
        )
    }

    /// The speaker's log of director `i` (for failure messages).
    pub fn speaker_log(&self, i: usize) -> String {
        let role = &self.directors[i].host.role;
        std::fs::read_to_string(self.dir.join(format!("{role}.exabgp.log"))).unwrap_or_default()
    }

    /// Kill director `i`'s xvsd with SIGKILL (its speaker keeps running);
    /// returns when it is dead.
    pub fn kill_xvsd(&mut self, i: usize) {
        let mut d = self.directors[i].xvsd.take().expect("xvsd runs");
        d.kill9();
    }

    /// Kill director `i`'s xvsd with SIGKILL and wait (at most `within`)
    /// until the router's next hops are directors `rest`: returns how long
    /// that took from the kill.
    pub fn kill_xvsd_withdrawn(&mut self, i: usize, rest: &[usize], within: Duration) -> Duration {
        let t = Instant::now();
        self.kill_xvsd(i);
        self.wait_next_hops(rest, within);
        t.elapsed()
    }

    /// `xvs-node serve` on port `port` of every real server (named by its
    /// role), for at most two minutes.
    pub fn serve_nodes(&self, port: u16) -> Vec<Proc> {
        let node = crate::bin("xvs-node").to_string_lossy().into_owned();
        let port = port.to_string();
        self.rs
            .iter()
            .map(|h| {
                h.spawn_ready(&[
                    &node,
                    "serve",
                    "--name",
                    &h.role,
                    "--port",
                    &port,
                    "--lifetime-s",
                    "120",
                ])
            })
            .collect()
    }

    /// `xvs-stream serve` (an echo server for streams) on port `port` of
    /// every real server, for at most two minutes.
    pub fn serve_streams(&self, port: u16) -> Vec<Proc> {
        let stream = crate::bin("xvs-stream").to_string_lossy().into_owned();
        let port = port.to_string();
        self.rs
            .iter()
            .map(|h| h.spawn_ready(&[&stream, "serve", "--port", &port, "--lifetime-s", "120"]))
            .collect()
    }

    /// `count` short TCP connections from the client to `svc` (`VIP:port`),
    /// each from its own source port, so the router spreads them.
    pub fn client_run(&self, svc: &str, count: u64) -> ClientSummary {
        let out = self.client.exec(&[
            &crate::bin("xvs-node").to_string_lossy(),
            "client",
            "--connect",
            svc,
            "--count",
            &count.to_string(),
            "--timeout-ms",
            "3000",
            "--deadline-ms",
            "60000",
        ]);
        ClientSummary::from_output(&out)
    }

    /// `conns` long-lived streams from the client to `svc`, an exchange
    /// every 100 ms each for `duration_ms`, every echoed byte checked;
    /// returns once they are connected (see [`finish_streams`]).
    pub fn start_streams(&self, svc: &str, conns: usize, duration_ms: u64) -> Lines {
        let stream = crate::bin("xvs-stream").to_string_lossy().into_owned();
        let streams = Lines::spawn(
            &self.client.ns,
            &[
                &stream,
                "client",
                "--connect",
                svc,
                "--conns",
                &conns.to_string(),
                "--duration-ms",
                &duration_ms.to_string(),
                "--interval-ms",
                "100",
                "--timeout-ms",
                "5000",
            ],
        );
        let first = streams
            .next_line(Duration::from_secs(10))
            .expect("the streams connect");
        assert!(first.starts_with("connected"), "{first}");
        streams
    }

    /// Stop director `i`'s speaker (SIGKILL, with its feed).
    pub fn kill_speaker(&mut self, i: usize) {
        self.directors[i].speaker = None;
    }

    /// The router's next hops for the VIP, sorted.
    pub fn next_hops(&self) -> Vec<Ipv4Addr> {
        let out = exec_ok(
            &self.router.ns,
            &["ip", "-4", "route", "show", &format!("{CLUSTER_VIP}/32")],
        );
        let mut hops: Vec<Ipv4Addr> = out
            .split_whitespace()
            .collect::<Vec<_>>()
            .windows(2)
            .filter(|w| w[0] == "via")
            .filter_map(|w| w[1].parse().ok())
            .collect();
        hops.sort();
        hops
    }

    /// Wait (at most `within`) until the router's next hops for the VIP
    /// are the addresses of directors `which`; returns how long it took.
    /// Panics with the router's route and the speakers' logs otherwise.
    pub fn wait_next_hops(&self, which: &[usize], within: Duration) -> Duration {
        let mut want: Vec<Ipv4Addr> = which.iter().map(|&i| self.directors[i].host.ip).collect();
        want.sort();
        let start = Instant::now();
        loop {
            let hops = self.next_hops();
            if hops == want {
                return start.elapsed();
            }
            if start.elapsed() > within {
                let logs: Vec<String> = (0..self.directors.len())
                    .map(|i| format!("--- d{} speaker:\n{}", i + 1, self.speaker_log(i)))
                    .collect();
                panic!(
                    "the router's next hops for {CLUSTER_VIP} are {hops:?}, not {want:?}, \
                     after {within:?}\n{}",
                    logs.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// How streams started by [`Cluster::start_streams`] ended.
#[derive(Debug)]
pub struct StreamsEnd {
    /// The client's whole output (for failure messages).
    pub out: String,
    /// Whether it exited successfully.
    pub ok: bool,
    /// Streams its summary counts.
    pub conns: u64,
    /// Streams that failed (a reset, a timeout or a wrong byte).
    pub failed: u64,
}

/// Wait (at most 40 s) for the streams to end and read their summary
/// line (`conns=N ... failed=N ...`); panics without one.
pub fn finish_streams(streams: Lines) -> StreamsEnd {
    let (out, ok) = streams.finish(Duration::from_secs(40));
    let summary = out
        .lines()
        .find(|l| l.starts_with("conns="))
        .unwrap_or_else(|| panic!("no summary:\n{out}"));
    let field = |k: &str| {
        summary
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(k)?.strip_prefix('='))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no {k} in {summary}"))
    };
    let (conns, failed) = (field("conns"), field("failed"));
    StreamsEnd {
        out,
        ok,
        conns,
        failed,
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Speakers first (their feeds withdraw nothing more), then xvsd.
        for d in &mut self.directors {
            d.speaker = None;
            d.xvsd = None;
        }
        // bgpd before zebra, so that zebra does not outlive its client.
        while self.router_procs.pop().is_some() {}
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Address of director `i` (1-based).
fn director_ip(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 1, 10 + i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_stats_are_read_per_role_and_peer() {
        let text = "master sync daemon (mcast=d1, syncid=7, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)\n\
                    \x20 datagrams_sent           4\n\
                    \x20 records_sent             90\n\
                    backup sync daemon (mcast=d1, syncid=7, maxlen=1500, group=224.0.0.81, port=8848, ttl=1)\n\
                    \x20 datagrams                8\n\
                    \x20 installed                170\n\
                    \x20 peer 198.18.1.12\n\
                    \x20   datagrams              5\n\
                    \x20   records                100\n\
                    \x20 peer 198.18.1.13\n\
                    \x20   records                80\n";
        let s = SyncStats::parse(text);
        let m = s.master.expect("a master");
        assert_eq!((m.get("records_sent"), m.get("datagrams_sent")), (90, 4));
        assert!(m.peers.is_empty());
        let b = s.backup.expect("a backup");
        assert_eq!(
            (b.get("datagrams"), b.get("installed"), b.get("records")),
            (8, 170, 0)
        );
        let d2: Ipv4Addr = "198.18.1.12".parse().unwrap();
        let d3: Ipv4Addr = "198.18.1.13".parse().unwrap();
        assert_eq!((b.peer(d2, "records"), b.peer(d3, "records")), (100, 80));
        assert_eq!(b.peer(d3, "datagrams"), 0);
        assert_eq!(SyncStats::parse(""), SyncStats::default());
    }
}
