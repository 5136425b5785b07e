//! AF_XDP forward rate through a real xvsd on a veth pair.
//!
//! Two namespaces joined by one single-queue veth pair: `gen` sends UDP
//! frames to the VIP with an AF_XDP generator (pinned to one core), xvsd in
//! `dir` (pinned to the other) forwards them in DR mode to the real server
//! 198.18.0.10, which is the generator's own address, so every forwarded
//! frame comes back to `gen`'s interface and is counted there by the kernel.

use crate::gen::SENT;
use std::process::Command;
use std::time::{Duration, Instant};
use xvs_tests::daemon::Xvsd;
use xvs_tests::netns::{ensure_bpffs, exec_ok, run_ok, unique_prefix, Netns};

/// Result of one forward-rate run.
#[derive(Debug, Clone, Copy)]
pub struct FwdResult {
    /// Seconds the generator ran.
    pub secs: f64,
    /// Frames the generator queued.
    pub sent: u64,
    /// Frames that came back through xvsd.
    pub forwarded: u64,
}

impl FwdResult {
    /// Generator rate in Mpps.
    pub fn sent_mpps(&self) -> f64 {
        self.sent as f64 / self.secs / 1e6
    }

    /// Forward rate in Mpps.
    pub fn fwd_mpps(&self) -> f64 {
        self.forwarded as f64 / self.secs / 1e6
    }
}

fn rx_packets(ns: &str, iface: &str) -> u64 {
    exec_ok(
        ns,
        &[
            "cat",
            &format!("/sys/class/net/{iface}/statistics/rx_packets"),
        ],
    )
    .trim()
    .parse()
    .unwrap_or(0)
}

fn mac_of(ns: &str, iface: &str) -> String {
    exec_ok(ns, &["cat", &format!("/sys/class/net/{iface}/address")])
        .trim()
        .to_string()
}

/// Build the pair, start xvsd, run the generator in `gen`, count what
/// comes back.
pub fn run(secs: f64, flows: u16, size: usize) -> Result<FwdResult, String> {
    ensure_bpffs();
    let p = unique_prefix();
    let gen = Netns::create(&format!("{p}-gen"))?;
    let dir = Netns::create(&format!("{p}-dir"))?;
    let (g, d) = (format!("{p}-g"), format!("{p}-d"));
    run_ok(&[
        "ip",
        "-n",
        gen.name(),
        "link",
        "add",
        &g,
        "numrxqueues",
        "1",
        "numtxqueues",
        "1",
        "type",
        "veth",
        "peer",
        "name",
        &d,
        "netns",
        dir.name(),
        "numrxqueues",
        "1",
        "numtxqueues",
        "1",
    ]);
    for (ns, ifc, addrs) in [
        (gen.name(), &g, vec!["198.18.0.10/24"]),
        (dir.name(), &d, vec!["198.18.0.2/24", "198.18.0.100/32"]),
    ] {
        for a in addrs {
            run_ok(&["ip", "-n", ns, "addr", "add", a, "dev", ifc]);
        }
        // Offloads stay as the kernel sets them (TX checksum offload on),
        // as on any host.
        run_ok(&["ip", "-n", ns, "link", "set", ifc, "up"]);
    }
    let xvsd = Xvsd::start_with(
        Some(dir.name()),
        &["--iface".into(), d.clone(), "--cores".into(), "1".into()],
    );
    xvsd.adm_ok(&["-A", "-u", "198.18.0.100:80", "-s", "rr"]);
    xvsd.adm_ok(&["-a", "-u", "198.18.0.100:80", "-r", "198.18.0.10", "-g"]);
    let gen_mac = mac_of(gen.name(), &g);
    let dir_mac = mac_of(dir.name(), &d);
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let gen_cmd = |secs: f64, max: u64| {
        Command::new("ip")
            .args(["netns", "exec", gen.name(), "taskset", "-c", "0"])
            .arg(&me)
            .args([
                "gen",
                "--iface",
                &g,
                "--src-mac",
                &gen_mac,
                "--dst-mac",
                &dir_mac,
            ])
            .args(["--flows", &flows.to_string(), "--size", &size.to_string()])
            .args(["--secs", &secs.to_string(), "--max", &max.to_string()])
            .output()
    };
    // Warm up until the director has resolved the real server and forwards.
    let warm_deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let before = rx_packets(gen.name(), &g);
        let _ = gen_cmd(0.2, u64::from(flows) * 2);
        std::thread::sleep(Duration::from_millis(100));
        if rx_packets(gen.name(), &g) > before {
            break;
        }
        if Instant::now() > warm_deadline {
            return Err("xvsd forwarded nothing within 10 s".into());
        }
    }
    let before = rx_packets(gen.name(), &g);
    let t = Instant::now();
    let out = gen_cmd(secs, 200_000_000).map_err(|e| e.to_string())?;
    let el = t.elapsed().as_secs_f64().min(secs + 0.5);
    std::thread::sleep(Duration::from_millis(200));
    let forwarded = rx_packets(gen.name(), &g) - before;
    let text = String::from_utf8_lossy(&out.stdout);
    let sent = text
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix(SENT))
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| format!("generator failed: {}", String::from_utf8_lossy(&out.stderr)))?;
    drop(xvsd);
    Ok(FwdResult {
        secs: el.min(secs).max(0.001),
        sent,
        forwarded,
    })
}
