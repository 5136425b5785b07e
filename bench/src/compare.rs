//! `xvs-bench compare`: the same traffic through every forwarder, one
//! after the other, in one run, on one topology built here.
//!
//! ```text
//!  namespace PREFIX-tst (core --gen-core)        namespace PREFIX-fwd (core --fwd-core)
//!  tester: gen --rx on T  ◄──── veth, 1 queue ────► forwarder on F
//!  198.18.0.10/24                                   198.18.0.2/24, VIP 198.18.0.100/32
//! ```
//!
//! The forwarder is one-armed: its output comes back over the same link,
//! addressed to the real servers 198.18.0.11-13, which exist only as
//! permanent neighbour entries on F (MACs 02:58:56:00:01:0b-0d); the
//! tester's XDP program steers every TCP/UDP frame for the VIP or a real
//! server to its socket, so one process on one core is both the client
//! and every real server, and reads per-destination counts, loss,
//! reordering and one-way latency from the stamps. With `dr6` among the
//! forwarders the link also carries IPv6 from 2001:2::/48 (tester
//! 2001:2::10, forwarder 2001:2::2, VIP 2001:2::100, real servers
//! 2001:2::11-13 with the same MACs, every address `nodad`); without it
//! IPv6 stays off, so the IPv4 cases see no neighbour discovery.
//! Forwarders:
//!
//! * `reflect`: `xvs-bench reflect` (MAC swap on AF_XDP), the ceiling;
//! * `dr`, `tun` (GUE to port 6080), `nat`: xvsd with 3 real servers, rr;
//! * `dr6`: xvs DR over IPv6, its frames as small as IPv6 allows (UDP 76
//!   bytes, TCP 84), held against `dr` round by round (IPv6/IPv4);
//! * `nft`: Linux forwarding with nftables DNAT
//!   (`numgen inc mod 3 map {...}`), its softirq work moved to the
//!   forwarding core with RPS.
//!
//! Per forwarder: a warm-up until frames come back (none within a few
//! seconds: "n/a (not forwarded)"), a throughput run at `--rate` (default:
//! as fast as the generator goes) with the forwarding core's busy time
//! from /proc/stat, a latency run at `--lat-rate`, and with `--rfc2544`
//! a bounded binary search for the highest rate without loss.

use crate::chart::{self, Bar};
use crate::gen::{GenReport, REPORT};
use crate::traffic::{Proto, TcpEstablished};
use serde::Serialize;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};
use xvs_tests::daemon::Xvsd;
use xvs_tests::netns::{
    ensure_bpffs, exec, exec_ok, run_ok, spawn_ready, unique_prefix, Netns, Proc,
};

/// The virtual address.
const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
/// The virtual port (and the real servers' port).
const PORT: u16 = 80;
/// The tester's address.
const TESTER: &str = "198.18.0.10";
/// The forwarder's address.
const FORWARDER: &str = "198.18.0.2";
/// GUE port of the TUN mode.
const GUE_PORT: u16 = 6080;
/// First client address.
const CIP: &str = "198.19.0.1";
/// The IPv6 virtual address.
const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0x100);
/// The tester's IPv6 address.
const TESTER6: &str = "2001:2::10";
/// The forwarder's IPv6 address.
const FORWARDER6: &str = "2001:2::2";
/// First IPv6 client address.
const CIP6: &str = "2001:2:0:1::1";
/// New-flow numbers reserved per generator run.
const NEW_BASE_STEP: u64 = 1 << 26;

/// The real servers: address and MAC.
fn real_servers() -> [(Ipv4Addr, String); 3] {
    [11u8, 12, 13].map(|i| {
        (
            Ipv4Addr::new(198, 18, 0, i),
            format!("02:58:56:00:01:{i:02x}"),
        )
    })
}

/// The IPv6 real servers: 2001:2::11-13 with the IPv4 ones' MACs.
fn real_servers6() -> [(Ipv6Addr, String); 3] {
    real_servers().map(|(ip, mac)| {
        let last = u16::from_str_radix(&ip.octets()[3].to_string(), 16).expect("decimal digits");
        (Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, last), mac)
    })
}

/// The addresses of one family's runs: where the tester sends from and
/// to, and the real servers the forwarder sends on to.
struct Family {
    /// IPv6 (the `dr6` runs), else IPv4.
    v6: bool,
    /// The virtual address.
    vip: IpAddr,
    /// The first client's address.
    cip: &'static str,
    /// The real servers: address and MAC.
    rs: [(IpAddr, String); 3],
}

impl Family {
    /// IPv6's addresses with `v6`, else IPv4's.
    fn of(v6: bool) -> Family {
        if v6 {
            Family {
                v6,
                vip: VIP6.into(),
                cip: CIP6,
                rs: real_servers6().map(|(ip, mac)| (ip.into(), mac)),
            }
        } else {
            Family {
                v6,
                vip: VIP.into(),
                cip: CIP,
                rs: real_servers().map(|(ip, mac)| (ip.into(), mac)),
            }
        }
    }
}

/// A forwarder under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// MAC-swapping AF_XDP reflector (the machine's ceiling).
    Reflect,
    /// xvs, direct routing.
    Dr,
    /// xvs, tunnelling (GUE).
    Tun,
    /// xvs, NAT.
    Nat,
    /// Linux forwarding with nftables DNAT.
    Nft,
    /// The reflector on a two-queue link, a thread per queue.
    Reflect2q,
    /// xvs DR on a two-queue link, a worker per queue.
    Dr2q,
    /// xvs, direct routing over IPv6.
    Dr6,
}

impl Mode {
    /// Label in the table and chart.
    pub fn label(self) -> &'static str {
        match self {
            Mode::Reflect => "reflector",
            Mode::Dr => "xvs DR",
            Mode::Tun => "xvs TUN",
            Mode::Nat => "xvs NAT",
            Mode::Nft => "nft DNAT",
            Mode::Reflect2q => "reflector 2q",
            Mode::Dr2q => "xvs DR 2q",
            Mode::Dr6 => "xvs DR IPv6",
        }
    }

    /// Whether its traffic is IPv6.
    pub fn v6(self) -> bool {
        self == Mode::Dr6
    }

    /// RX/TX queues of the link it runs on (a worker or thread each).
    pub fn queues(self) -> u32 {
        match self {
            Mode::Reflect2q | Mode::Dr2q => 2,
            _ => 1,
        }
    }

    fn color(self) -> &'static str {
        match self {
            Mode::Reflect => "#8c8c8c",
            Mode::Dr => "#1f77b4",
            Mode::Tun => "#2ca02c",
            Mode::Nat => "#9467bd",
            Mode::Nft => "#d62728",
            Mode::Reflect2q => "#bdbdbd",
            Mode::Dr2q => "#17becf",
            Mode::Dr6 => "#ff7f0e",
        }
    }

    fn xvs_flag(self) -> &'static [&'static str] {
        match self {
            Mode::Dr | Mode::Dr2q | Mode::Dr6 => &["-g"],
            Mode::Tun => &["-i", "--tun-type", "gue", "--tun-port", "6080"],
            Mode::Nat => &["-m"],
            Mode::Reflect | Mode::Reflect2q | Mode::Nft => &[],
        }
    }
}

/// Arguments of `xvs-bench compare`.
#[derive(Debug, Clone, clap::Args)]
pub struct CompareArgs {
    /// Forwarders to run, in order (reflect2q and dr2q on a link of two
    /// queues, with the tester and the forwarder on both cores; dr6 over
    /// IPv6).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "reflect,dr,dr6,tun,nat,nft,reflect2q,dr2q"
    )]
    pub modes: Vec<Mode>,
    /// Rounds: every forwarder runs once per round, in `--modes` order,
    /// so that a slow period of the machine hits all of them; the table
    /// gives the median and spread over the rounds.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Seconds of the throughput run of each forwarder.
    #[arg(long, default_value_t = 5.0)]
    pub secs: f64,
    /// Offered rate of the throughput run in frames/s (0: as fast as the
    /// generator goes).
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Offered rate of the cost run in frames/s, below saturation: CPU
    /// time per forwarded frame of the forwarder's process (user +
    /// system from /proc/PID/stat; nft: the forwarding core's softirq
    /// time). 0: no cost run.
    #[arg(long, default_value_t = 200_000.0)]
    pub cost_rate: f64,
    /// Seconds of the cost run.
    #[arg(long, default_value_t = 3.0)]
    pub cost_secs: f64,
    /// Rate of the latency run in frames/s (0: take latency from the
    /// throughput run).
    #[arg(long, default_value_t = 100_000.0)]
    pub lat_rate: f64,
    /// Seconds of the latency run.
    #[arg(long, default_value_t = 2.0)]
    pub lat_secs: f64,
    /// Transport protocol.
    #[arg(long, value_enum, default_value_t = Proto::Udp)]
    pub proto: Proto,
    /// What established TCP flows send.
    #[arg(long, value_enum, default_value_t = TcpEstablished::Data)]
    pub tcp: TcpEstablished,
    /// Established flows.
    #[arg(long, default_value_t = 1000)]
    pub flows: u64,
    /// Percentage of frames opening new connections.
    #[arg(long, default_value_t = 0.0)]
    pub new_pct: f64,
    /// Frame size, FCS included (IPv6 frames: at least 76 bytes for UDP,
    /// 84 for TCP).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(64..=1518))]
    pub size: u16,
    /// Also find the zero-loss rate of each forwarder (RFC 2544 binary
    /// search).
    #[arg(long)]
    pub rfc2544: bool,
    /// Trials of the search, at most.
    #[arg(long, default_value_t = 7)]
    pub rfc_steps: u32,
    /// Seconds per trial.
    #[arg(long, default_value_t = 1.0)]
    pub rfc_secs: f64,
    /// Seconds one forwarder's search may take, at most.
    #[arg(long, default_value_t = 30.0)]
    pub rfc_max_secs: f64,
    /// Loss accepted as "zero", in percent of the frames sent.
    #[arg(long, default_value_t = 0.0)]
    pub rfc_loss: f64,
    /// Core of the tester (generator and sink).
    #[arg(long, default_value_t = 0)]
    pub gen_core: usize,
    /// Core of the forwarder.
    #[arg(long, default_value_t = 1)]
    pub fwd_core: usize,
    /// Directory for compare.json, compare.svg (and compare.png when
    /// rsvg-convert is installed).
    #[arg(long, default_value = "target/xvs-bench")]
    pub out: PathBuf,
}

/// One forwarder's results in one round.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// The forwarder.
    pub mode: Mode,
    /// The round (from 0).
    pub round: usize,
    /// "ok", "n/a (not forwarded)" or an error.
    pub status: String,
    /// Forwarded (received) rate in Mpps.
    pub mpps: f64,
    /// Forwarded rate in Gbit/s (frames with FCS, no preamble).
    pub gbps: f64,
    /// Offered rate in Mpps.
    pub offered_mpps: f64,
    /// Loss of the throughput run, percent.
    pub loss_pct: f64,
    /// Reordered frames in the throughput run.
    pub reordered: u64,
    /// Latency run: p50, p99, p99.9, max in µs.
    pub lat_us: [f64; 4],
    /// Rate of the latency run in Mpps (received).
    pub lat_mpps: f64,
    /// Loss of the latency run, percent.
    pub lat_loss_pct: f64,
    /// Busy share of the forwarding core during the throughput run.
    pub fwd_core_cpu_pct: f64,
    /// CPU time of the forwarder process (xvsd, reflector) per second of
    /// the throughput run, percent of one core (kernel forwarding: none).
    pub fwd_proc_cpu_pct: Option<f64>,
    /// Cost run: CPU time per forwarded frame in ns (`--cost-rate`).
    pub cost_ns: Option<f64>,
    /// Where the cost run's CPU time was read: "process" (the forwarder's
    /// threads' run time, user + system) or "softirq" (of the forwarding
    /// core).
    pub cost_of: &'static str,
    /// Cost run: forwarded rate in Mpps.
    pub cost_mpps: f64,
    /// Zero-loss rate in Mpps (with `--rfc2544`).
    pub zero_loss_mpps: Option<f64>,
    /// The search's trials: (offered Mpps, loss %).
    pub rfc_trials: Vec<(f64, f64)>,
    /// Frames per destination in the throughput run.
    pub dests: Vec<(String, u64)>,
    /// The generator's report of the throughput run.
    pub throughput: Option<GenReport>,
}

impl Row {
    fn new(mode: Mode, status: &str) -> Self {
        Row {
            mode,
            round: 0,
            status: status.into(),
            mpps: 0.0,
            gbps: 0.0,
            offered_mpps: 0.0,
            loss_pct: 0.0,
            reordered: 0,
            lat_us: [0.0; 4],
            lat_mpps: 0.0,
            lat_loss_pct: 0.0,
            fwd_core_cpu_pct: 0.0,
            fwd_proc_cpu_pct: None,
            cost_ns: None,
            cost_of: "-",
            cost_mpps: 0.0,
            zero_loss_mpps: None,
            rfc_trials: Vec::new(),
            dests: Vec::new(),
            throughput: None,
        }
    }

    /// Whether the forwarder forwarded (status "ok").
    pub fn ok(&self) -> bool {
        self.status == "ok"
    }
}

/// The two namespaces and their link (removed on drop).
struct Bench {
    queues: u32,
    tst: Netns,
    fwd: Netns,
    t_if: String,
    f_if: String,
    t_mac: String,
    f_mac: String,
}

fn mac_of(ns: &str, iface: &str) -> String {
    exec_ok(ns, &["cat", &format!("/sys/class/net/{iface}/address")])
        .trim()
        .to_string()
}

fn sysctls(ns: &str, kv: &[(&str, &str)]) {
    let script: Vec<String> = kv
        .iter()
        .map(|(k, v)| {
            format!(
                "echo {v} > /proc/sys/{} 2>/dev/null || true",
                k.replace('.', "/")
            )
        })
        .collect();
    exec_ok(ns, &["sh", "-c", &script.join("\n")]);
}

impl Bench {
    /// The link with `queues` queues; IPv6 addresses and neighbours too
    /// with `v6` (else IPv6 is off in both namespaces).
    fn build(queues: u32, v6: bool) -> Result<Self, String> {
        let nq = queues.max(1).to_string();
        ensure_bpffs();
        let p = unique_prefix();
        let tst = Netns::create(&format!("{p}-tst"))?;
        let fwd = Netns::create(&format!("{p}-fwd"))?;
        let (t_if, f_if) = (format!("{p}-t"), format!("{p}-f"));
        run_ok(&[
            "ip",
            "-n",
            tst.name(),
            "link",
            "add",
            &t_if,
            "numrxqueues",
            &nq,
            "numtxqueues",
            &nq,
            "type",
            "veth",
            "peer",
            "name",
            &f_if,
            "netns",
            fwd.name(),
            "numrxqueues",
            &nq,
            "numtxqueues",
            &nq,
        ]);
        let no_v6 = [
            ("net.ipv6.conf.all.disable_ipv6", "1"),
            ("net.ipv6.conf.default.disable_ipv6", "1"),
        ];
        for (ns, ifc, addrs) in [
            (tst.name(), &t_if, vec![format!("{TESTER}/24")]),
            (
                fwd.name(),
                &f_if,
                vec![format!("{FORWARDER}/24"), format!("{VIP}/32")],
            ),
        ] {
            if !v6 {
                sysctls(ns, &no_v6);
            }
            for a in addrs {
                run_ok(&["ip", "-n", ns, "addr", "add", &a, "dev", ifc]);
            }
            // Room for the 32 bytes of GUE around a 1518-byte frame. Offloads
            // stay as the kernel sets them (TX checksum offload on), as on
            // any host: the tester's AF_XDP frames carry full checksums, and
            // nothing here needs them off.
            run_ok(&["ip", "-n", ns, "link", "set", ifc, "mtu", "1600", "up"]);
        }
        if v6 {
            let t = format!("{TESTER6}/64");
            let f = format!("{FORWARDER6}/64");
            let v = format!("{VIP6}/128");
            for (ns, ifc, a, deprecated) in [
                (tst.name(), &t_if, &t, false),
                (fwd.name(), &f_if, &f, false),
                // Deprecated: never the forwarder's own source address.
                (fwd.name(), &f_if, &v, true),
            ] {
                let mut cmd = vec!["ip", "-n", ns, "-6", "addr", "add", a, "dev", ifc, "nodad"];
                if deprecated {
                    cmd.extend(["preferred_lft", "0"]);
                }
                run_ok(&cmd);
            }
        }
        let families: &[bool] = if v6 { &[true, false] } else { &[false] };
        for fam in families.iter().map(|&v6| Family::of(v6)) {
            for (rip, mac) in &fam.rs {
                let rip = rip.to_string();
                let mut cmd = vec!["ip", "-n", fwd.name()];
                if fam.v6 {
                    cmd.push("-6");
                }
                cmd.extend(["neigh", "replace", &rip, "lladdr", mac, "dev", &f_if]);
                cmd.extend(["nud", "permanent"]);
                run_ok(&cmd);
            }
        }
        // Hairpin forwarding (nft) must not send redirects; the clients'
        // addresses are not routed back through the link.
        sysctls(
            fwd.name(),
            &[
                ("net.ipv4.conf.all.send_redirects", "0"),
                (&format!("net.ipv4.conf.{f_if}.send_redirects"), "0"),
                ("net.ipv4.conf.all.rp_filter", "0"),
                (&format!("net.ipv4.conf.{f_if}.rp_filter"), "0"),
            ],
        );
        let t_mac = mac_of(tst.name(), &t_if);
        let f_mac = mac_of(fwd.name(), &f_if);
        let b = Bench {
            queues: queues.max(1),
            tst,
            fwd,
            t_if,
            f_if,
            t_mac,
            f_mac,
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while exec_ok(
            b.fwd.name(),
            &["cat", &format!("/sys/class/net/{}/operstate", b.f_if)],
        )
        .trim()
            != "up"
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(b)
    }

    /// The cores of a process on this link: `core` on one queue, the
    /// tester's and the forwarder's on two (a thread or worker per queue).
    fn cores(&self, core: usize, a: &CompareArgs) -> String {
        if self.queues > 1 {
            format!("{},{}", a.gen_core, a.fwd_core)
        } else {
            core.to_string()
        }
    }

    /// Run the tester for `secs` at `rate` (0: max) and parse its report.
    fn gen(
        &self,
        a: &CompareArgs,
        v6: bool,
        rate: f64,
        secs: f64,
        new_base: u64,
        quiet: bool,
    ) -> Result<GenReport, String> {
        let me = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut cmd = Command::new("ip");
        cmd.args([
            "netns",
            "exec",
            self.tst.name(),
            "taskset",
            "-c",
            &self.cores(a.gen_core, a),
        ])
        .arg(&me)
        .args([
            "gen",
            "--rx",
            "--iface",
            &self.t_if,
            "--src-mac",
            &self.t_mac,
            "--dst-mac",
            &self.f_mac,
        ])
        .args([
            "--proto",
            a.proto.name(),
            "--tcp",
            match a.tcp {
                TcpEstablished::Ack => "ack",
                TcpEstablished::Data => "data",
            },
        ])
        .args([
            "--flows",
            &a.flows.to_string(),
            "--new-pct",
            &a.new_pct.to_string(),
        ])
        .args([
            "--new-base",
            &new_base.to_string(),
            "--size",
            &a.size.to_string(),
        ])
        .args(["--rate", &rate.to_string(), "--secs", &secs.to_string()])
        .args(["--queues", &self.queues.to_string()])
        .args(["--vport", &PORT.to_string()])
        .args(["--gue-port", &GUE_PORT.to_string()]);
        let fam = Family::of(v6);
        cmd.args(["--vip", &fam.vip.to_string(), "--cip", fam.cip])
            .args(["--rx-addr", &fam.vip.to_string()]);
        for (rip, _) in &fam.rs {
            cmd.args(["--rx-addr", &rip.to_string()]);
        }
        if quiet {
            cmd.arg("--quiet");
        }
        let out = cmd
            .stderr(if quiet {
                std::process::Stdio::piped()
            } else {
                std::process::Stdio::inherit()
            })
            .output()
            .map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .find_map(|l| l.strip_prefix(REPORT))
            .and_then(|j| serde_json::from_str(j).ok())
            .ok_or_else(|| {
                format!(
                    "tester failed ({}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                )
            })
    }
}

/// A running forwarder; stopped on drop (and its XDP program removed).
enum Forwarder<'a> {
    Reflect(Option<Proc>, &'a Bench),
    Xvsd(Option<Box<Xvsd>>, &'a Bench),
    Nft(&'a Bench),
}

impl Forwarder<'_> {
    fn pid(&self) -> Option<u32> {
        match self {
            Forwarder::Reflect(p, _) => p.as_ref().map(Proc::pid),
            Forwarder::Xvsd(x, _) => x.as_ref().and_then(|x| x.pid()),
            Forwarder::Nft(_) => None,
        }
    }
}

impl Drop for Forwarder<'_> {
    fn drop(&mut self) {
        let b = match self {
            Forwarder::Reflect(p, b) => {
                drop(p.take());
                *b
            }
            Forwarder::Xvsd(x, b) => {
                drop(x.take());
                *b
            }
            Forwarder::Nft(b) => {
                let _ = exec(b.fwd.name(), &["nft", "delete", "table", "ip", "xvsbench"]);
                sysctls(b.fwd.name(), &[("net.ipv4.ip_forward", "0")]);
                let _ = exec(
                    b.fwd.name(),
                    &[
                        "sh",
                        "-c",
                        &format!("echo 0 > /sys/class/net/{}/queues/rx-0/rps_cpus", b.f_if),
                    ],
                );
                *b
            }
        };
        // A killed process leaves its XDP program attached: remove it.
        let _ = exec(
            b.fwd.name(),
            &["ip", "link", "set", "dev", &b.f_if, "xdp", "off"],
        );
    }
}

fn nft_available() -> bool {
    Command::new("nft")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Install nftables with apt when `nft` is missing (root, Debian).
fn ensure_nft() -> Result<(), String> {
    if nft_available() {
        return Ok(());
    }
    eprintln!("compare: installing nftables (apt-get)");
    let _ = Command::new("apt-get").args(["update", "-qq"]).status();
    let _ = Command::new("apt-get")
        .args([
            "install",
            "-y",
            "-qq",
            "--no-install-recommends",
            "nftables",
        ])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status();
    if nft_available() {
        Ok(())
    } else {
        Err("nft not found and nftables could not be installed".into())
    }
}

fn start<'a>(
    b: &'a Bench,
    m: Mode,
    a: &CompareArgs,
    budget_secs: f64,
) -> Result<Forwarder<'a>, String> {
    let fwd_core = b.cores(a.fwd_core, a);
    let proto = a.proto.adm_flag();
    let fam = Family::of(m.v6());
    // xvsadm's form: VIP:PORT, [VIP]:PORT for IPv6.
    let vip = SocketAddr::new(fam.vip, PORT).to_string();
    match m {
        Mode::Reflect | Mode::Reflect2q => {
            let me = std::env::current_exe().map_err(|e| e.to_string())?;
            let me = me.to_string_lossy();
            let secs = budget_secs.to_string();
            let mut cmd = vec![
                "taskset", "-c", &fwd_core, &me, "reflect", "--iface", &b.f_if,
            ];
            let queues = b.queues.to_string();
            cmd.extend(["--queues", &queues, "--secs", &secs, "--addr"]);
            let vip_s = VIP.to_string();
            cmd.push(&vip_s);
            // bpffs as xvsd gets it is not needed: no dispatcher is fine.
            Ok(Forwarder::Reflect(Some(spawn_ready(b.fwd.name(), &cmd)), b))
        }
        Mode::Dr | Mode::Tun | Mode::Nat | Mode::Dr2q | Mode::Dr6 => {
            let fwd = Forwarder::Xvsd(
                Some(Box::new(Xvsd::start_with(
                    Some(b.fwd.name()),
                    &["--iface".into(), b.f_if.clone(), "--cores".into(), fwd_core],
                ))),
                b,
            );
            let Forwarder::Xvsd(Some(x), _) = &fwd else {
                unreachable!("just built")
            };
            let adm = |args: &[&str]| -> Result<(), String> {
                let o = x.adm(args);
                if o.status.success() {
                    Ok(())
                } else {
                    Err(format!(
                        "xvsadm {}: {}",
                        args.join(" "),
                        String::from_utf8_lossy(&o.stderr).trim()
                    ))
                }
            };
            adm(&["-A", proto, &vip, "-s", "rr"])?;
            for (rip, _) in &fam.rs {
                let r = SocketAddr::new(*rip, PORT).to_string();
                let mut args = vec!["-a", proto, &vip, "-r"];
                args.push(&r);
                args.extend_from_slice(m.xvs_flag());
                adm(&args)?;
            }
            Ok(fwd)
        }
        Mode::Nft => {
            ensure_nft()?;
            let map: Vec<String> = real_servers()
                .iter()
                .enumerate()
                .map(|(i, (rip, _))| format!("{i} : {rip}"))
                .collect();
            let l4 = a.proto.name();
            let rules = format!(
                "table ip xvsbench {{\n chain pre {{\n  type nat hook prerouting priority dstnat; policy accept;\n  ip daddr {VIP} {l4} dport {PORT} dnat to numgen inc mod 3 map {{ {} }}\n }}\n}}\n",
                map.join(", ")
            );
            let fwd = Forwarder::Nft(b);
            let path = std::env::temp_dir().join(format!("{}.nft", b.fwd.name()));
            std::fs::write(&path, rules).map_err(|e| e.to_string())?;
            let out = exec(b.fwd.name(), &["nft", "-f", &path.to_string_lossy()]);
            let _ = std::fs::remove_file(&path);
            if !out.status.success() {
                return Err(format!(
                    "nft: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
            sysctls(
                b.fwd.name(),
                &[
                    ("net.ipv4.ip_forward", "1"),
                    ("net.netfilter.nf_conntrack_tcp_be_liberal", "1"),
                ],
            );
            // Kernel forwarding runs in softirq; without XDP on the link it
            // would run on the sender's (the tester's) core: RPS moves it to
            // the forwarding core.
            let mask = format!("{:x}", 1u64 << a.fwd_core.min(63));
            exec_ok(
                b.fwd.name(),
                &[
                    "sh",
                    "-c",
                    &format!(
                        "echo {mask} > /sys/class/net/{}/queues/rx-0/rps_cpus",
                        b.f_if
                    ),
                ],
            );
            Ok(fwd)
        }
    }
}

/// Busy and total jiffies of `core` from /proc/stat.
fn core_times(core: usize) -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let name = format!("cpu{core}");
    for l in stat.lines() {
        let mut it = l.split_whitespace();
        if it.next() != Some(name.as_str()) {
            continue;
        }
        let v: Vec<u64> = it.filter_map(|x| x.parse().ok()).collect();
        // user nice system idle iowait irq softirq steal (guest is in user).
        let total: u64 = v.iter().take(8).sum();
        let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
        return (total - idle, total);
    }
    (0, 0)
}

/// Softirq jiffies of `core` from /proc/stat (kernel forwarding's work).
fn softirq_ticks(core: usize) -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let name = format!("cpu{core}");
    stat.lines()
        .find(|l| l.split_whitespace().next() == Some(name.as_str()))
        .and_then(|l| l.split_whitespace().nth(7))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// CPU time of process `pid` (all its threads) in ns: the sum of its
/// threads' run time from /proc/PID/task/*/schedstat (ns resolution),
/// else utime + stime from /proc/PID/stat (10 ms ticks).
fn proc_cpu_ns(pid: u32) -> Option<u64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok();
    let from_sched = tasks.and_then(|d| {
        let mut sum = 0u64;
        for t in d.flatten() {
            let s = std::fs::read_to_string(t.path().join("schedstat")).ok()?;
            sum += s.split_whitespace().next()?.parse::<u64>().ok()?;
        }
        Some(sum)
    });
    from_sched.or_else(|| proc_ticks(pid).map(|t| (t as f64 / USER_HZ * 1e9) as u64))
}

/// utime + stime of process `pid` (and its threads) in clock ticks.
fn proc_ticks(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of stat(5); `rest` starts at field 3.
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// Clock ticks per second of /proc times (USER_HZ: 100 on Linux).
const USER_HZ: f64 = 100.0;

struct Runner<'a> {
    b: &'a Bench,
    a: &'a CompareArgs,
    /// IPv6 traffic (the forwarder under test is `dr6`).
    v6: bool,
    runs: u64,
    /// "round i/n", for the progress lines.
    round: String,
}

impl Runner<'_> {
    fn gen(&mut self, rate: f64, secs: f64, quiet: bool) -> Result<GenReport, String> {
        self.runs += 1;
        self.b.gen(
            self.a,
            self.v6,
            rate,
            secs,
            self.runs * NEW_BASE_STEP,
            quiet,
        )
    }

    fn run_mode(&mut self, m: Mode) -> Row {
        let a = self.a;
        let budget =
            20.0 + a.secs + a.lat_secs + if a.rfc2544 { a.rfc_max_secs + 5.0 } else { 0.0 };
        eprintln!("compare: {}: {} ...", self.round, m.label());
        let fwd = match start(self.b, m, a, budget) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("compare: {}: {e}", m.label());
                return Row::new(m, &format!("error: {e}"));
            }
        };
        // Warm-up: until frames come back (neighbours resolved, sockets
        // bound), at most ~6 s.
        let deadline = Instant::now() + Duration::from_secs(6);
        loop {
            match self.gen(20_000.0, 0.3, true) {
                Ok(r) if r.rx.as_ref().is_some_and(|x| x.received > 0) => break,
                Ok(_) => {}
                Err(e) => return Row::new(m, &format!("error: {e}")),
            }
            if Instant::now() > deadline {
                eprintln!("compare: {}: nothing came back", m.label());
                return Row::new(m, "n/a (not forwarded)");
            }
        }
        let mut row = Row::new(m, "ok");
        let pid = fwd.pid();
        let (busy0, total0) = core_times(a.fwd_core);
        let p0 = pid.and_then(proc_ticks);
        let t0 = Instant::now();
        let r = match self.gen(a.rate, a.secs, false) {
            Ok(r) => r,
            Err(e) => return Row::new(m, &format!("error: {e}")),
        };
        let el = t0.elapsed().as_secs_f64();
        let (busy1, total1) = core_times(a.fwd_core);
        let p1 = pid.and_then(proc_ticks);
        row.fwd_core_cpu_pct = 100.0 * (busy1 - busy0) as f64 / (total1 - total0).max(1) as f64;
        if let (Some(p0), Some(p1)) = (p0, p1) {
            row.fwd_proc_cpu_pct = Some(100.0 * (p1 - p0) as f64 / USER_HZ / el);
        }
        row.mpps = r.rx_mpps;
        row.offered_mpps = r.sent_mpps;
        // The size sent (IPv6 frames may be larger than `--size`).
        row.gbps = r.rx_mpps * 1e6 * f64::from(r.size) * 8.0 / 1e9;
        row.loss_pct = r.loss_pct;
        if let Some(rx) = &r.rx {
            row.reordered = rx.reordered;
            row.dests = rx
                .dests
                .iter()
                .map(|d| (format!("{} {}", d.ip, d.mac), d.frames))
                .collect();
            row.lat_us = lat_us(rx);
        }
        row.throughput = Some(r);
        if a.lat_rate > 0.0 {
            match self.gen(a.lat_rate, a.lat_secs, true) {
                Ok(l) => {
                    if let Some(rx) = &l.rx {
                        row.lat_us = lat_us(rx);
                    }
                    row.lat_mpps = l.rx_mpps;
                    row.lat_loss_pct = l.loss_pct;
                }
                Err(e) => eprintln!("compare: {}: latency run: {e}", m.label()),
            }
        }
        if a.cost_rate > 0.0 {
            self.cost(&mut row, pid);
        }
        if a.rfc2544 {
            self.search(&mut row);
        }
        drop(fwd);
        std::thread::sleep(Duration::from_millis(300));
        row
    }

    /// The cost run: at `--cost-rate`, CPU time spent by the forwarder per
    /// frame it forwarded. The process's own time where there is a
    /// process (every thread: /proc/PID/stat), else the softirq time of
    /// the forwarding core (nft).
    fn cost(&mut self, row: &mut Row, pid: Option<u32>) {
        let a = self.a;
        let core = a.fwd_core;
        let read = || match pid {
            Some(p) => proc_cpu_ns(p),
            None => Some((softirq_ticks(core) as f64 / USER_HZ * 1e9) as u64),
        };
        let t0 = read();
        let r = self.gen(a.cost_rate, a.cost_secs, true);
        let t1 = read();
        match (r, t0, t1) {
            (Ok(r), Some(t0), Some(t1)) => {
                let fwd = r.rx.as_ref().map_or(0, |x| x.received);
                row.cost_mpps = r.rx_mpps;
                row.cost_of = if pid.is_some() { "process" } else { "softirq" };
                if fwd > 0 {
                    row.cost_ns = Some(t1.saturating_sub(t0) as f64 / fwd as f64);
                }
            }
            (Err(e), _, _) => eprintln!("compare: {}: cost run: {e}", row.mode.label()),
            _ => eprintln!("compare: {}: cost run: no CPU times", row.mode.label()),
        }
    }

    /// RFC 2544 throughput: the highest offered rate with loss ≤
    /// `--rfc-loss`, by bisection between 0 and the rate measured at full
    /// speed, bounded in trials and time.
    fn search(&mut self, row: &mut Row) {
        let a = self.a;
        let start = Instant::now();
        let mut hi = row.offered_mpps.max(row.mpps) * 1e6;
        let mut lo = 0.0f64;
        let mut rate = row.mpps * 1e6;
        for _ in 0..a.rfc_steps {
            if start.elapsed().as_secs_f64() + a.rfc_secs + 1.0 > a.rfc_max_secs || rate < 1000.0 {
                break;
            }
            let Ok(r) = self.gen(rate, a.rfc_secs, true) else {
                break;
            };
            row.rfc_trials.push((rate / 1e6, r.loss_pct));
            if r.loss_pct <= a.rfc_loss {
                lo = rate;
            } else {
                hi = rate;
            }
            if hi - lo < 0.02 * hi {
                break;
            }
            rate = (lo + hi) / 2.0;
        }
        row.zero_loss_mpps = Some(lo / 1e6);
    }
}

fn lat_us(rx: &crate::sink::SinkReport) -> [f64; 4] {
    let l = rx.latency;
    [l.p50, l.p99, l.p999, l.max].map(|v| v as f64 / 1e3)
}

/// Machine description for the report.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cpu}, {cores} cores, Linux {}", kernel.trim())
}

/// The whole comparison's report.
#[derive(Debug, Serialize)]
pub struct Report {
    /// Where it ran.
    pub machine: String,
    /// Traffic description.
    pub traffic: String,
    /// Rounds run.
    pub rounds: usize,
    /// One row per forwarder: its round with the median forwarded rate.
    pub rows: Vec<Row>,
    /// Every run, round after round.
    pub runs: Vec<Row>,
    /// Per forwarder, over the rounds it ran in.
    pub summary: Vec<Summary>,
    /// The goals and whether they were met (by the medians).
    pub goals: Vec<(String, Option<bool>)>,
}

/// Median, minimum and maximum of one figure over the rounds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Figure {
    /// Median.
    pub median: f64,
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
    /// Rounds it was measured in.
    pub n: usize,
}

impl Figure {
    /// The figure of `v` (None when empty).
    pub fn of(v: &[f64]) -> Option<Figure> {
        if v.is_empty() {
            return None;
        }
        let s = crate::micro::Spread::of(v);
        Some(Figure {
            median: s.median,
            min: s.min,
            max: s.max,
            n: v.len(),
        })
    }

    /// (max − min) / median in percent.
    pub fn spread_pct(&self) -> f64 {
        crate::micro::Spread {
            min: self.min,
            median: self.median,
            max: self.max,
        }
        .pct()
    }
}

/// One forwarder over the rounds.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// The forwarder.
    pub mode: Mode,
    /// Forwarded rate, Mpps (rounds that forwarded).
    pub mpps: Option<Figure>,
    /// Its rate over the reflector's of the same round (the two-queue
    /// forwarders: over the two-queue reflector's).
    pub vs_reflector: Option<Figure>,
    /// Its rate over nft DNAT's of the same round (IPv4 forwarders).
    pub vs_nft: Option<Figure>,
    /// IPv6 forwarders: the rate over that of the same forwarder over
    /// IPv4 in the same round (`dr6` over `dr`).
    pub vs_ipv4: Option<Figure>,
    /// CPU time per forwarded frame of the cost run, ns.
    pub cost_ns: Option<Figure>,
}

/// The reflector a forwarder is held against: same number of queues.
fn reflector_of(m: Mode) -> Mode {
    if m.queues() > 1 {
        Mode::Reflect2q
    } else {
        Mode::Reflect
    }
}

/// The IPv4 forwarder an IPv6 one is held against.
fn ipv4_of(m: Mode) -> Option<Mode> {
    match m {
        Mode::Dr6 => Some(Mode::Dr),
        _ => None,
    }
}

/// Ratios of `m`'s rate to `of`'s, round by round.
fn ratios(rounds: &[Vec<Row>], m: Mode, of: Mode) -> Vec<f64> {
    rounds
        .iter()
        .filter_map(|r| {
            let x = find(r, m)?.mpps;
            let y = find(r, of)?.mpps;
            (y > 0.0).then(|| x / y)
        })
        .collect()
}

fn summarise(modes: &[Mode], rounds: &[Vec<Row>]) -> Vec<Summary> {
    let mut seen = Vec::new();
    for &m in modes {
        if !seen.contains(&m) {
            seen.push(m);
        }
    }
    seen.into_iter()
        .map(|m| {
            let ok: Vec<&Row> = rounds.iter().filter_map(|r| find(r, m)).collect();
            let refl = reflector_of(m);
            Summary {
                mode: m,
                mpps: Figure::of(&ok.iter().map(|r| r.mpps).collect::<Vec<_>>()),
                vs_reflector: (m != refl)
                    .then(|| Figure::of(&ratios(rounds, m, refl)))
                    .flatten(),
                vs_nft: (m != Mode::Nft && m.queues() == 1 && !m.v6())
                    .then(|| Figure::of(&ratios(rounds, m, Mode::Nft)))
                    .flatten(),
                vs_ipv4: ipv4_of(m).and_then(|v4| Figure::of(&ratios(rounds, m, v4))),
                cost_ns: Figure::of(&ok.iter().filter_map(|r| r.cost_ns).collect::<Vec<_>>()),
            }
        })
        .collect()
}

/// Per forwarder, the round whose rate is the median one (its latency,
/// destinations and reports go with it); the first failure when none
/// forwarded.
fn median_rows(modes: &[Mode], rounds: &[Vec<Row>]) -> Vec<Row> {
    let mut out: Vec<Row> = Vec::new();
    for &m in modes {
        if out.iter().any(|r| r.mode == m) {
            continue;
        }
        let mut ok: Vec<&Row> = rounds.iter().filter_map(|r| find(r, m)).collect();
        ok.sort_by(|a, b| a.mpps.total_cmp(&b.mpps));
        let row = ok
            .get(ok.len().saturating_sub(1) / 2)
            .copied()
            .or_else(|| rounds.iter().flat_map(|r| r.iter()).find(|r| r.mode == m));
        if let Some(r) = row {
            out.push(r.clone());
        }
    }
    out
}

fn find(rows: &[Row], m: Mode) -> Option<&Row> {
    rows.iter().find(|r| r.mode == m && r.ok())
}

fn summary_of(s: &[Summary], m: Mode) -> Option<&Summary> {
    s.iter().find(|x| x.mode == m)
}

fn goals(s: &[Summary]) -> Vec<(String, Option<bool>)> {
    let mut g = Vec::new();
    let spread = |f: &Figure| {
        format!(
            "{:.2}x median of {} rounds ({:.2}-{:.2}x)",
            f.median, f.n, f.min, f.max
        )
    };
    for m in [Mode::Dr, Mode::Dr2q] {
        // Held against the reflector on as many queues.
        let text = format!("{} >= 0.9x {}", m.label(), reflector_of(m).label());
        g.push(match summary_of(s, m).and_then(|x| x.vs_reflector) {
            Some(f) => (format!("{text}: {}", spread(&f)), Some(f.median >= 0.9)),
            None if m == Mode::Dr2q && summary_of(s, m).is_none() => continue,
            None => (format!("{text}: not measured"), None),
        });
    }
    for m in [Mode::Dr, Mode::Tun, Mode::Nat] {
        let text = format!("{} ahead of nft DNAT", m.label());
        g.push(match summary_of(s, m).and_then(|x| x.vs_nft) {
            Some(f) => (format!("{text}: {}", spread(&f)), Some(f.median > 1.0)),
            None => (format!("{text}: not measured"), None),
        });
    }
    g
}

/// What each xvs forwarder costs per forwarded frame at the cost run's
/// offered rate, next to the reflector on as many queues: the efficiency
/// figure that holds even where the generator, not the forwarder, limits
/// the rate.
fn cost_lines(s: &[Summary]) -> Vec<String> {
    let mut out = Vec::new();
    for m in [Mode::Dr, Mode::Dr6, Mode::Tun, Mode::Nat, Mode::Dr2q] {
        let Some(c) = summary_of(s, m).and_then(|x| x.cost_ns) else {
            continue;
        };
        let refl = reflector_of(m);
        let vs = summary_of(s, refl)
            .and_then(|x| x.cost_ns)
            .map_or(String::new(), |r| {
                format!(
                    ", {:.2}x the {}'s {:.0} ns",
                    c.median / r.median.max(f64::MIN_POSITIVE),
                    refl.label(),
                    r.median
                )
            });
        out.push(format!(
            "CPU per forwarded frame: {} {:.0} ns (median of {} rounds, {:.0}-{:.0}){vs}",
            m.label(),
            c.median,
            c.n,
            c.min,
            c.max
        ));
    }
    out
}

/// Each IPv6 forwarder's rate over its IPv4 counterpart's, round by round.
fn ipv6_lines(s: &[Summary]) -> Vec<String> {
    s.iter()
        .filter_map(|x| {
            let f = x.vs_ipv4?;
            let v4 = ipv4_of(x.mode)?;
            Some(format!(
                "{} / {}: {:.2}x (median of {} rounds, {:.2}-{:.2}x)",
                x.mode.label(),
                v4.label(),
                f.median,
                f.n,
                f.min,
                f.max
            ))
        })
        .collect()
}

/// The table printed at the end: per forwarder the medians over the
/// rounds and their spread, then the median round's latency and CPU.
pub fn table(r: &Report) -> String {
    let mut s = String::new();
    let rfc = r.rows.iter().any(|x| x.zero_loss_mpps.is_some());
    let _ = writeln!(
        s,
        "{} round(s), every forwarder once per round; medians over the rounds, spread = (max - min) / median",
        r.rounds
    );
    let _ = write!(
        s,
        "{:<13} {:>7} {:>7} {:>9} {:>7} {:>9} {:>7} {:>7} {:>7} {:>8} {:>9} {:>6} {:>13}",
        "forwarder",
        "Mpps",
        "spread",
        "vs refl",
        "spread",
        "vs nft",
        "loss %",
        "p50 us",
        "p99 us",
        "p99.9 us",
        "core CPU%",
        "proc %",
        "CPU ns/frame"
    );
    if rfc {
        let _ = write!(s, " {:>11}", "0-loss Mpps");
    }
    s.push('\n');
    let f2 =
        |f: Option<Figure>, unit: &str| f.map_or("-".into(), |f| format!("{:.2}{unit}", f.median));
    let sp = |f: Option<Figure>| f.map_or("-".into(), |f| format!("{:.0}%", f.spread_pct()));
    for row in &r.rows {
        if !row.ok() {
            let _ = writeln!(s, "{:<13} {}", row.mode.label(), row.status);
            continue;
        }
        let sum = summary_of(&r.summary, row.mode);
        let mpps = sum.and_then(|x| x.mpps);
        let vs = sum.and_then(|x| x.vs_reflector);
        let cost = sum.and_then(|x| x.cost_ns);
        let _ = write!(
            s,
            "{:<13} {:>7} {:>7} {:>9} {:>7} {:>9} {:>7.2} {:>7.1} {:>7.1} {:>8.1} {:>9.0} {:>6} {:>13}",
            row.mode.label(),
            mpps.map_or("-".into(), |f| format!("{:.3}", f.median)),
            sp(mpps),
            f2(vs, "x"),
            sp(vs),
            f2(sum.and_then(|x| x.vs_nft), "x"),
            row.loss_pct,
            row.lat_us[0],
            row.lat_us[1],
            row.lat_us[2],
            row.fwd_core_cpu_pct,
            row.fwd_proc_cpu_pct
                .map_or("-".into(), |p| format!("{p:.0}")),
            cost.map_or("-".into(), |f| format!(
                "{:.0} {}",
                f.median,
                if row.cost_of == "softirq" { "sirq" } else { "proc" }
            ))
        );
        if rfc {
            let _ = write!(
                s,
                " {:>11}",
                row.zero_loss_mpps.map_or("-".into(), |v| format!("{v:.3}"))
            );
        }
        s.push('\n');
    }
    for line in cost_lines(&r.summary) {
        let _ = writeln!(s, "cost         {line}");
    }
    for line in ipv6_lines(&r.summary) {
        let _ = writeln!(s, "ipv6         {line}");
    }
    for (text, met) in &r.goals {
        let mark = match met {
            Some(true) => "met    ",
            Some(false) => "NOT met",
            None => "-      ",
        };
        let _ = writeln!(s, "goal {mark} {text}");
    }
    s
}

/// Run the comparison; returns the report (also written to `--out`).
pub fn run(a: &CompareArgs) -> Result<Report, String> {
    if !xvs_tests::is_root() {
        return Err("needs root (network namespaces, XDP)".into());
    }
    let v6 = a.modes.iter().any(|m| m.v6());
    let mut benches: Vec<(u32, Bench)> = Vec::new();
    let mut runs = 0u64;
    let mut rounds: Vec<Vec<Row>> = Vec::new();
    for round in 0..a.rounds.max(1) {
        let mut rows = Vec::new();
        for &m in &a.modes {
            let q = m.queues();
            if !benches.iter().any(|(n, _)| *n == q) {
                benches.push((q, Bench::build(q, v6)?));
            }
            let b = &benches.iter().find(|(n, _)| *n == q).expect("just built").1;
            let mut runner = Runner {
                b,
                a,
                v6: m.v6(),
                runs,
                round: format!("round {}/{}", round + 1, a.rounds.max(1)),
            };
            let mut row = runner.run_mode(m);
            runs = runner.runs;
            row.round = round;
            rows.push(row);
        }
        rounds.push(rows);
    }
    let traffic = format!(
        "{} {}-byte frames, {} flows, {}% new connections{}, {} s per forwarder and round, latency at {} kpps, cost at {} kpps; tester on core {}, forwarder on core {} (two queues: both cores for each)",
        a.proto.name().to_uppercase(),
        a.size,
        a.flows,
        a.new_pct,
        if a.proto == Proto::Tcp {
            format!(", established: {:?}", a.tcp).to_lowercase()
        } else {
            String::new()
        },
        a.secs,
        a.lat_rate / 1e3,
        a.cost_rate / 1e3,
        a.gen_core,
        a.fwd_core
    );
    let traffic = if v6 {
        format!(
            "{traffic}; IPv6: {}-byte frames",
            usize::from(a.size).max(crate::traffic::min_size(a.proto, true))
        )
    } else {
        traffic
    };
    let report = Report::of(machine(), traffic, &a.modes, rounds);
    write_outputs(a, &report)?;
    Ok(report)
}

impl Report {
    /// The report of `rounds` (each a row per forwarder) of `modes`: the
    /// median rows, the summary and the goals beside every run.
    fn of(machine: String, traffic: String, modes: &[Mode], rounds: Vec<Vec<Row>>) -> Report {
        let summary = summarise(modes, &rounds);
        Report {
            machine,
            traffic,
            rounds: rounds.len(),
            rows: median_rows(modes, &rounds),
            goals: goals(&summary),
            summary,
            runs: rounds.into_iter().flatten().collect(),
        }
    }
}

fn write_outputs(a: &CompareArgs, r: &Report) -> Result<(), String> {
    std::fs::create_dir_all(&a.out).map_err(|e| format!("{}: {e}", a.out.display()))?;
    let json = serde_json::to_string_pretty(r).map_err(|e| e.to_string())?;
    let jp = a.out.join("compare.json");
    std::fs::write(&jp, json).map_err(|e| format!("{}: {e}", jp.display()))?;
    let bars: Vec<Bar> = r
        .rows
        .iter()
        .map(|row| Bar {
            label: row.mode.label().into(),
            mpps: row.ok().then_some(row.mpps),
            p99_us: row.ok().then_some(row.lat_us[1]),
            color: row.mode.color(),
        })
        .collect();
    let svg = chart::svg(
        "xvs vs the AF_XDP reflector and Linux nftables DNAT",
        &format!("{}\n{}", r.traffic, r.machine),
        &bars,
    );
    let sp = a.out.join("compare.svg");
    std::fs::write(&sp, svg).map_err(|e| format!("{}: {e}", sp.display()))?;
    let png = a.out.join("compare.png");
    if let Ok(o) = Command::new("rsvg-convert")
        .arg("-o")
        .arg(&png)
        .arg(&sp)
        .output()
    {
        if !o.status.success() {
            eprintln!(
                "compare: rsvg-convert: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            );
        }
    }
    eprintln!("compare: wrote {} and {}", jp.display(), sp.display());
    Ok(())
}

/// `xvs-bench compare`.
pub fn main(a: &CompareArgs) -> i32 {
    match run(a) {
        Ok(r) => {
            println!("{}\n{}", r.machine, r.traffic);
            print!("{}", table(&r));
            0
        }
        Err(e) => {
            eprintln!("xvs-bench compare: {e}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A round of `m` forwarding `mpps` at `cost` ns per frame.
    fn row(m: Mode, mpps: f64, cost: f64) -> Row {
        let mut r = Row::new(m, "ok");
        r.mpps = mpps;
        r.cost_ns = Some(cost);
        r.cost_of = "process";
        r
    }

    /// The report of `rounds` of `modes`.
    fn report(modes: &[Mode], rounds: Vec<Vec<Row>>) -> Report {
        Report::of("test".into(), "test".into(), modes, rounds)
    }

    #[test]
    fn two_queue_rows_are_held_against_the_two_queue_reflector() {
        let modes = [Mode::Reflect, Mode::Dr, Mode::Reflect2q, Mode::Dr2q];
        let rounds = vec![
            vec![
                row(Mode::Reflect, 0.6, 3000.0),
                row(Mode::Dr, 0.3, 3300.0),
                row(Mode::Reflect2q, 1.0, 2000.0),
                row(Mode::Dr2q, 1.0, 1000.0),
            ],
            vec![
                row(Mode::Reflect, 0.6, 3000.0),
                row(Mode::Dr, 0.6, 3600.0),
                row(Mode::Reflect2q, 0.5, 2000.0),
                row(Mode::Dr2q, 1.0, 1200.0),
            ],
        ];
        let t = table(&report(&modes, rounds));
        // DR: 0.5x and 1.0x the one-queue reflector, median 0.75x.
        assert!(t.contains("NOT met xvs DR >= 0.9x reflector: 0.75x"), "{t}");
        // DR 2q: 1.0x and 2.0x the two-queue reflector, median 1.5x.
        assert!(
            t.contains("met     xvs DR 2q >= 0.9x reflector 2q: 1.50x"),
            "{t}"
        );
        // CPU per frame beside the matching reflector's.
        assert!(
            t.contains(
                "xvs DR 3450 ns (median of 2 rounds, 3300-3600), 1.15x the reflector's 3000 ns"
            ),
            "{t}"
        );
        assert!(t.contains("xvs DR 2q 1100 ns (median of 2 rounds, 1000-1200), 0.55x the reflector 2q's 2000 ns"), "{t}");
    }

    #[test]
    fn ipv6_dr_is_held_against_ipv4_dr_round_by_round() {
        let modes = [Mode::Reflect, Mode::Dr, Mode::Dr6, Mode::Nft];
        let rounds = vec![
            vec![
                row(Mode::Reflect, 1.0, 1000.0),
                row(Mode::Dr, 0.8, 1200.0),
                row(Mode::Dr6, 0.6, 1500.0),
                row(Mode::Nft, 0.4, 2000.0),
            ],
            vec![
                row(Mode::Reflect, 1.0, 1000.0),
                row(Mode::Dr, 0.5, 1200.0),
                row(Mode::Dr6, 0.5, 1400.0),
                row(Mode::Nft, 0.4, 2000.0),
            ],
        ];
        let report = report(&modes, rounds);
        let summary = &report.summary;
        let dr6 = summary_of(summary, Mode::Dr6).expect("dr6 summarised");
        // 0.75x and 1.0x the IPv4 DR of the same round.
        let f = dr6.vs_ipv4.expect("a ratio to IPv4");
        let near = |x: f64, y: f64| (x - y).abs() < 1e-9;
        assert!(
            near(f.min, 0.75) && near(f.median, 0.875) && near(f.max, 1.0) && f.n == 2,
            "{f:?}"
        );
        // No nft ratio for IPv6 (nft DNAT runs IPv4 only); the IPv4 rows
        // have no IPv6 ratio.
        assert!(dr6.vs_nft.is_none());
        assert!(summary_of(summary, Mode::Dr).unwrap().vs_ipv4.is_none());
        let t = table(&report);
        // The IPv6 row comes right after IPv4 DR's.
        let lines: Vec<&str> = t.lines().collect();
        let at = |p: &str| lines.iter().position(|l| l.starts_with(p)).expect(p);
        assert_eq!(at("xvs DR IPv6"), at("xvs DR ") + 1, "{t}");
        assert!(
            t.contains("ipv6         xvs DR IPv6 / xvs DR: 0.8")
                && t.contains("x (median of 2 rounds, 0.75-1.00x)"),
            "{t}"
        );
        assert!(t.contains("xvs DR IPv6 1450 ns"), "{t}");
    }
}
