//! Network namespaces, veth pairs and a bridge: the test topologies.
//!
//! Everything is created *inside* namespaces made here (veths are created in
//! the switch namespace with their peer placed straight into the host
//! namespace), so the root namespace never sees a test interface or route.
//! Guards own every namespace and process: dropping them (also while
//! unwinding from a panic) kills what runs inside and deletes the namespace,
//! which deletes its veths.

use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The virtual address of the DR topology's service.
pub const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
/// Prefix length of the DR segment.
pub const LAN_PREFIX_LEN: u8 = 24;

/// A fresh name prefix: `x` + 4 hex digits from pid, a counter and the clock,
/// chosen so that no existing namespace starts with it.
///
/// At most 5 characters, so `PREFIX-role` names stay within the 15-character
/// interface name limit.
pub fn unique_prefix() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let existing = list_netns();
    loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        // FNV-1a over pid, counter and time: cheap and well mixed.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in std::process::id()
            .to_le_bytes()
            .iter()
            .chain(n.to_le_bytes().iter())
            .chain(nanos.to_le_bytes().iter())
        {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        let prefix = format!("x{:04x}", (h ^ (h >> 32)) & 0xffff);
        let taken = existing
            .iter()
            .any(|ns| ns.starts_with(&format!("{prefix}-")));
        if !taken {
            return prefix;
        }
    }
}

/// Names of the network namespaces that `ip netns` knows.
pub fn list_netns() -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output();
    match out {
        Ok(o) => String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Mounts the BPF filesystem on `/sys/fs/bpf` unless it is mounted already.
///
/// Note: `ip netns exec` remounts `/sys` in a private mount namespace, so a
/// program started that way does not see this mount;
/// [`crate::daemon::Xvsd`] mounts bpffs again inside its own exec.
pub fn ensure_bpffs() {
    let mounted = std::fs::read_to_string("/proc/mounts")
        .map(|m| {
            m.lines()
                .any(|l| l.split_whitespace().nth(1) == Some("/sys/fs/bpf"))
        })
        .unwrap_or(false);
    if !mounted {
        // Failure is not fatal: libxdp works without bpffs (no dispatcher).
        let _ = Command::new("mount")
            .args(["-t", "bpf", "bpf", "/sys/fs/bpf"])
            .status();
    }
}

/// Runs a command (no shell) and returns its output; panics only when the
/// command cannot be started at all.
pub fn run(args: &[&str]) -> Output {
    let (prog, rest) = args.split_first().expect("empty command");
    Command::new(prog)
        .args(rest)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"))
}

/// Runs a command and panics with its stderr unless it exits 0; returns stdout.
pub fn run_ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "command {args:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn netns_exec_args<'a>(ns: &'a str, cmd: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["ip", "netns", "exec", ns];
    v.extend_from_slice(cmd);
    v
}

/// Runs `cmd` inside namespace `ns` (via `ip netns exec`) and returns its output.
pub fn exec(ns: &str, cmd: &[&str]) -> Output {
    run(&netns_exec_args(ns, cmd))
}

/// Like [`exec`], but panics with stderr unless the command exits 0; returns stdout.
pub fn exec_ok(ns: &str, cmd: &[&str]) -> String {
    run_ok(&netns_exec_args(ns, cmd))
}

/// Starts `cmd` inside namespace `ns`; the returned guard kills it on drop.
///
/// stdout is discarded, stderr goes to the test's stderr.
pub fn spawn(ns: &str, cmd: &[&str]) -> Proc {
    Proc::spawn(ns, cmd, Stdio::null())
}

/// Starts a server inside `ns` and waits (at most 5 s) until it prints a
/// line starting with `ready` on stdout, as `xvs-node serve` does once its
/// socket is bound. Panics if it exits or stays silent.
pub fn spawn_ready(ns: &str, cmd: &[&str]) -> Proc {
    let mut proc = Proc::spawn(ns, cmd, Stdio::piped());
    let stdout = proc.child.stdout.take().expect("stdout is piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let _ = reader.read_line(&mut line);
        let _ = tx.send(line);
        // Keep draining so the server never blocks on a full pipe.
        let mut sink = String::new();
        while reader.read_line(&mut sink).map(|n| n > 0).unwrap_or(false) {
            sink.clear();
        }
    });
    match rx.recv_timeout(Duration::from_secs(5)) {
        Ok(line) if line.starts_with("ready") => proc,
        Ok(line) => panic!("{} did not get ready (said {line:?})", proc.what),
        Err(_) => panic!("{} did not get ready within 5 s", proc.what),
    }
}

/// A process started in a namespace; killed (SIGKILL) and reaped on drop.
#[derive(Debug)]
pub struct Proc {
    child: Child,
    what: String,
}

impl Proc {
    fn spawn(ns: &str, cmd: &[&str], stdout: Stdio) -> Self {
        let args = netns_exec_args(ns, cmd);
        let what = format!("{cmd:?} in {ns}");
        // `ip netns exec` execs the command in place (no fork), so the child
        // pid is the command's own pid.
        let child = Command::new(args[0])
            .args(&args[1..])
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        Proc { child, what }
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A network namespace; on drop every process inside is killed and the
/// namespace is deleted (which deletes the interfaces it holds).
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates namespace `name` with its loopback up; fails if it exists.
    pub fn create(name: &str) -> Result<Self, String> {
        assert!(name.len() <= 15, "namespace name {name:?} is too long");
        let out = run(&["ip", "netns", "add", name]);
        if !out.status.success() {
            return Err(format!(
                "ip netns add {name}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let ns = Netns {
            name: name.to_owned(),
        };
        run_ok(&["ip", "-n", name, "link", "set", "lo", "up"]);
        Ok(ns)
    }

    /// The namespace's name (for `ip netns exec`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Pids of the processes running inside.
    pub fn pids(&self) -> Vec<u32> {
        String::from_utf8_lossy(&run(&["ip", "netns", "pids", &self.name]).stdout)
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // A namespace lives on as long as a process is inside it (and its
        // veths with it): kill what is left (only processes that tests
        // started can be in here), then delete.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let pids = self.pids();
            if pids.is_empty() || Instant::now() > deadline {
                break;
            }
            for pid in pids {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .stderr(Stdio::null())
                    .status();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        remove_tables_of(&self.name);
        let out = run(&["ip", "netns", "del", &self.name]);
        if !out.status.success() {
            eprintln!(
                "xvs-tests: could not delete namespace {}: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
    }
}

/// Where each live topology records its owner pid and namespaces, so that a
/// later run can remove what a killed run (SIGKILL, timeout) left behind.
pub const RECORD_DIR: &str = "/run/xvs-tests";

/// A record in [`RECORD_DIR`] naming a topology's owner and namespaces;
/// removed on drop (after the namespaces, when declared before them).
#[derive(Debug)]
pub(crate) struct Record {
    path: std::path::PathBuf,
}

impl Record {
    pub(crate) fn create(prefix: &str, namespaces: &[String]) -> Self {
        let _ = std::fs::create_dir_all(RECORD_DIR);
        let r = Record {
            path: std::path::Path::new(RECORD_DIR).join(prefix),
        };
        r.write(namespaces);
        r
    }

    /// (Re)write the record: this process owns `namespaces`.
    pub(crate) fn write(&self, namespaces: &[String]) {
        let body = format!("{}\n{}\n", std::process::id(), namespaces.join("\n"));
        if let Err(e) = std::fs::write(&self.path, body) {
            eprintln!("xvs-tests: cannot write {}: {e}", self.path.display());
        }
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Removes the connection tables (and their id files) that an xvsd in
/// namespace `ns` left in /dev/shm: a daemon that crashed, was killed or
/// failed keeps its table for the next start, which in a test never comes.
/// xvsd names them after the namespace's inode (`xvs-net<INODE>-...`).
fn remove_tables_of(ns: &str) {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(format!("/run/netns/{ns}")) else {
        return;
    };
    let prefix = format!("xvs-net{}-", meta.ino());
    let Ok(dir) = std::fs::read_dir("/dev/shm") else {
        return;
    };
    for e in dir.flatten() {
        if e.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Deletes the namespaces of topologies whose owning process is gone (a run
/// that was killed before its guards could run). Live runs are untouched.
pub fn reap_stale() {
    let Ok(dir) = std::fs::read_dir(RECORD_DIR) else {
        return;
    };
    for entry in dir.flatten() {
        let Ok(body) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        let mut lines = body.lines();
        let Some(pid) = lines.next().and_then(|p| p.trim().parse::<u32>().ok()) else {
            continue;
        };
        if std::path::Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let existing = list_netns();
        for name in lines.filter(|n| existing.iter().any(|e| e == n)) {
            eprintln!("xvs-tests: removing stale namespace {name} (owner {pid} is gone)");
            drop(Netns {
                name: name.to_owned(),
            });
        }
        let _ = std::fs::remove_file(entry.path());
    }
}

/// One host on the LAN: its namespace, its interface on the bridge, address
/// and MAC.
#[derive(Debug, Clone)]
pub struct Host {
    /// Role name (`client`, `director`, `rs1`...).
    pub role: String,
    /// Namespace name.
    pub ns: String,
    /// Interface name inside `ns`.
    pub iface: String,
    /// Bridge port (the veth peer, in the switch namespace).
    pub port: String,
    /// Primary address (/24).
    pub ip: Ipv4Addr,
    /// MAC of `iface` as `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
}

impl Host {
    /// Runs `cmd` in this host's namespace; see [`exec`].
    pub fn exec(&self, cmd: &[&str]) -> Output {
        exec(&self.ns, cmd)
    }

    /// Runs `cmd` in this host's namespace, panicking on failure; see [`exec_ok`].
    pub fn exec_ok(&self, cmd: &[&str]) -> String {
        exec_ok(&self.ns, cmd)
    }

    /// Starts `cmd` in this host's namespace; see [`spawn`].
    pub fn spawn(&self, cmd: &[&str]) -> Proc {
        spawn(&self.ns, cmd)
    }

    /// Starts a server in this host's namespace and waits for it; see [`spawn_ready`].
    pub fn spawn_ready(&self, cmd: &[&str]) -> Proc {
        spawn_ready(&self.ns, cmd)
    }
}

/// Writes sysctls inside `ns` (`key` in dotted form, as `sysctl` takes it).
///
/// Goes through `/proc/sys` with `sh`, so procps need not be installed.
pub fn sysctl(ns: &str, settings: &[(&str, &str)]) {
    let script: Vec<String> = settings
        .iter()
        .map(|(k, v)| {
            // Interface names here never contain '.', so dots map to '/'.
            format!("echo {v} > /proc/sys/{}", k.replace('.', "/"))
        })
        .collect();
    exec_ok(ns, &["sh", "-ec", &script.join("\n")]);
}

/// Adds address `cidr` to interface `dev` in namespace `ns`.
pub fn add_addr(ns: &str, cidr: &str, dev: &str) {
    run_ok(&["ip", "-n", ns, "addr", "add", cidr, "dev", dev]);
}

/// Turns IPv6 off in namespace `ns` (router solicitations and MLD
/// reports stay off the wire).
pub fn disable_ipv6(ns: &str) {
    sysctl(
        ns,
        &[
            ("net.ipv6.conf.all.disable_ipv6", "1"),
            ("net.ipv6.conf.default.disable_ipv6", "1"),
        ],
    );
}

/// Builds a topology with `try_build` under a fresh name prefix, after
/// mounting bpffs and reaping what killed runs left; tries again (at most
/// 5 times in all) only when a concurrently created namespace took the
/// name. Panics with `what` and the last error.
pub(crate) fn build<T>(what: &str, try_build: impl Fn(&str) -> Result<T, String>) -> T {
    ensure_bpffs();
    reap_stale();
    let mut last_err = String::new();
    for _ in 0..5 {
        match try_build(&unique_prefix()) {
            Ok(t) => return t,
            Err(e) => last_err = e,
        }
    }
    panic!("could not create {what}: {last_err}");
}

/// The DR test LAN: one bridge (in its own switch namespace) joining a
/// client, the director and three real servers.
///
/// | host     | address          | notes                                   |
/// |----------|------------------|-----------------------------------------|
/// | client   | 198.18.0.10/24   |                                         |
/// | director | 198.18.0.2/24    | VIP 198.18.0.100/32 as second address   |
/// | rs1..rs3 | 198.18.0.11..13  | VIP on `lo`, arp_ignore=1, arp_announce=2 |
///
/// Every veth has one RX and one TX queue (so one AF_XDP socket on queue 0
/// sees all traffic) and keeps the kernel's default offloads, as every
/// container and namespace does: TX checksum offload on, so clients and
/// servers send partial checksums that the director must complete
/// ([`DrLan::tx_offload_off`] turns that off). IPv6 is disabled on every
/// test namespace to keep router solicitations and MLD reports off the
/// wire.
#[derive(Debug)]
pub struct DrLan {
    /// The per-run name prefix shared by every namespace and link.
    pub prefix: String,
    /// Namespace of the switch (holds the bridge and the bridge ports).
    pub switch_ns: String,
    /// Bridge name inside `switch_ns`.
    pub bridge: String,
    /// The client.
    pub client: Host,
    /// The director (runs xvsd on `director.iface`).
    pub director: Host,
    /// The real servers rs1, rs2, rs3.
    pub rs: Vec<Host>,
    /// The service address.
    pub vip: Ipv4Addr,
    // Fields drop in declaration order: namespaces, then their record.
    namespaces: Vec<Netns>,
    _record: Record,
}

impl DrLan {
    /// Builds the LAN; panics with the failing command if anything fails
    /// (what was created so far is cleaned up while unwinding).
    pub fn new() -> Self {
        build("the DR LAN", Self::try_build)
    }

    fn try_build(p: &str) -> Result<Self, String> {
        const ROLES: [&str; 6] = ["sw", "cl", "dir", "rs1", "rs2", "rs3"];
        // Declared before the namespaces, so dropped after them.
        let record = Record::create(p, &ROLES.map(|r| format!("{p}-{r}")));
        let mut namespaces = Vec::new();
        let switch_ns = format!("{p}-sw");
        namespaces.push(Netns::create(&switch_ns)?);

        let specs: [(&str, [u8; 4]); 5] = [
            ("client", [198, 18, 0, 10]),
            ("director", [198, 18, 0, 2]),
            ("rs1", [198, 18, 0, 11]),
            ("rs2", [198, 18, 0, 12]),
            ("rs3", [198, 18, 0, 13]),
        ];
        let short = |role: &str| match role {
            "client" => "cl".to_owned(),
            "director" => "dir".to_owned(),
            other => other.to_owned(),
        };
        let mut hosts = Vec::new();
        for (role, ip) in specs {
            let ns = format!("{p}-{}", short(role));
            namespaces.push(Netns::create(&ns)?);
            hosts.push(Host {
                role: role.to_owned(),
                iface: ns.clone(),
                port: format!("{ns}p"),
                ns,
                ip: Ipv4Addr::from(ip),
                // Locally administered, unicast; last byte = host part.
                mac: format!("02:58:56:00:00:{:02x}", ip[3]),
            });
        }

        for ns in &namespaces {
            disable_ipv6(ns.name());
        }

        let bridge = format!("{p}-br");
        run_ok(&[
            "ip", "-n", &switch_ns, "link", "add", &bridge, "type", "bridge",
        ]);
        run_ok(&["ip", "-n", &switch_ns, "link", "set", &bridge, "up"]);

        for h in &hosts {
            if h.role.starts_with("rs") {
                // Real servers hold the VIP on lo but must never answer ARP
                // for it nor use it as an ARP source (set before the link
                // comes up; the interface's own settings follow below).
                sysctl(
                    &h.ns,
                    &[
                        ("net.ipv4.conf.all.arp_ignore", "1"),
                        ("net.ipv4.conf.all.arp_announce", "2"),
                    ],
                );
                add_addr(&h.ns, &format!("{VIP}/32"), "lo");
            }
            plug(&switch_ns, &bridge, h);
            if h.role.starts_with("rs") {
                let iface_ignore = format!("net.ipv4.conf.{}.arp_ignore", h.iface);
                let iface_announce = format!("net.ipv4.conf.{}.arp_announce", h.iface);
                sysctl(&h.ns, &[(&iface_ignore, "1"), (&iface_announce, "2")]);
            }
            if h.role == "director" {
                add_addr(&h.ns, &format!("{VIP}/32"), &h.iface);
            }
        }

        let mut it = hosts.into_iter();
        let client = it.next().expect("client");
        let director = it.next().expect("director");
        let rs: Vec<Host> = it.collect();
        let lan = DrLan {
            prefix: p.to_owned(),
            switch_ns,
            bridge,
            client,
            director,
            rs,
            vip: VIP,
            namespaces,
            _record: record,
        };
        wait_up(lan.hosts());
        Ok(lan)
    }

    /// All hosts: client, director, rs1..rs3.
    pub fn hosts(&self) -> impl Iterator<Item = &Host> {
        [&self.client, &self.director]
            .into_iter()
            .chain(self.rs.iter())
    }

    /// Names of every namespace of this LAN (switch included).
    pub fn namespace_names(&self) -> Vec<String> {
        self.namespaces.iter().map(|n| n.name.clone()).collect()
    }

    /// Runs `cmd` in namespace `ns`; see [`exec`].
    pub fn exec(&self, ns: &str, cmd: &[&str]) -> Output {
        exec(ns, cmd)
    }

    /// Starts `cmd` in namespace `ns`; see [`spawn`].
    pub fn spawn(&self, ns: &str, cmd: &[&str]) -> Proc {
        spawn(ns, cmd)
    }

    /// Whether an XDP program is attached to the director's interface
    /// (`ip -d link show` mentions `xdp`).
    pub fn director_has_xdp(&self) -> bool {
        let out = exec_ok(
            &self.director.ns,
            &["ip", "-d", "link", "show", &self.director.iface],
        );
        out.contains("xdp")
    }

    /// Turns TX checksum offload (and with it segmentation offload) off
    /// on every host's interface, so every frame carries a complete
    /// checksum: the set-up the tests used before the director completed
    /// partial checksums.
    pub fn tx_offload_off(&self) {
        for h in self.hosts() {
            exec_ok(&h.ns, &["ethtool", "-K", &h.iface, "tx", "off"]);
        }
    }

    /// Adds another virtual address: on the director's interface (so the
    /// director answers ARP for it) and on every real server's `lo` (so
    /// they accept DR frames for it; their ARP settings already keep them
    /// quiet). `vip` must lie in 198.18.0.0/24.
    pub fn add_vip(&self, vip: Ipv4Addr) {
        assert_eq!(vip.octets()[..3], [198, 18, 0], "{vip} is not on the LAN");
        let cidr = format!("{vip}/32");
        add_addr(&self.director.ns, &cidr, &self.director.iface);
        for h in &self.rs {
            run_ok(&["ip", "-n", &h.ns, "addr", "add", &cidr, "dev", "lo"]);
        }
    }

    /// Adds a host `role` (at most 5 characters) with address `ip` (in
    /// 198.18.0.0/24) to the LAN, in a namespace of its own that lives as
    /// long as the LAN (and is recorded with it, so a killed run's is
    /// removed too): another client, or a traffic source.
    pub fn add_host(&mut self, role: &str, ip: Ipv4Addr) -> Host {
        assert!(role.len() <= 5, "role {role:?} is too long");
        assert_eq!(ip.octets()[..3], [198, 18, 0], "{ip} is not on the LAN");
        let ns = format!("{}-{role}", self.prefix);
        let netns = Netns::create(&ns).unwrap_or_else(|e| panic!("{e}"));
        let mut names = self.namespace_names();
        names.push(ns.clone());
        self._record.write(&names);
        self.namespaces.push(netns);
        disable_ipv6(&ns);
        let h = Host {
            role: role.to_owned(),
            iface: ns.clone(),
            port: format!("{ns}p"),
            ns,
            ip,
            mac: format!("02:58:56:00:00:{:02x}", ip.octets()[3]),
        };
        plug(&self.switch_ns, &self.bridge, &h);
        wait_up(std::iter::once(&h));
        h
    }

    /// Gives the client extra addresses (/32, in 198.18.0.0/24) it can
    /// send from; see [`DrLan::client_source`].
    pub fn add_client_addrs(&self, addrs: &[Ipv4Addr]) {
        for a in addrs {
            assert_eq!(a.octets()[..3], [198, 18, 0], "{a} is not on the LAN");
            add_addr(&self.client.ns, &format!("{a}/32"), &self.client.iface);
        }
    }

    /// Makes the client's new connections to `dst` leave from source
    /// address `src` (a host route with a preferred source), so one client
    /// namespace can play several clients in turn. `None` returns to the
    /// primary address.
    pub fn client_source(&self, dst: Ipv4Addr, src: Option<Ipv4Addr>) {
        let dst = format!("{dst}/32");
        let src = src.unwrap_or(self.client.ip).to_string();
        run_ok(&[
            "ip",
            "-n",
            &self.client.ns,
            "route",
            "replace",
            &dst,
            "dev",
            &self.client.iface,
            "src",
            &src,
        ]);
    }
}

impl Default for DrLan {
    fn default() -> Self {
        Self::new()
    }
}

/// Creates a veth in `switch_ns` whose peer `h.iface` goes to `h.ns` with
/// one RX and one TX queue, enslaves the switch end to `bridge`, turns
/// IPv6 off on the host end (its offloads stay as the kernel sets them),
/// and adds `h.ip/24`.
pub(crate) fn plug(switch_ns: &str, bridge: &str, h: &Host) {
    run_ok(&[
        "ip",
        "-n",
        switch_ns,
        "link",
        "add",
        "name",
        &h.port,
        "numtxqueues",
        "1",
        "numrxqueues",
        "1",
        "type",
        "veth",
        "peer",
        "name",
        &h.iface,
        "address",
        &h.mac,
        "numtxqueues",
        "1",
        "numrxqueues",
        "1",
        "netns",
        &h.ns,
    ]);
    run_ok(&[
        "ip", "-n", switch_ns, "link", "set", &h.port, "master", bridge, "up",
    ]);
    sysctl(
        &h.ns,
        &[(&format!("net.ipv6.conf.{}.disable_ipv6", h.iface), "1")],
    );
    add_addr(&h.ns, &format!("{}/{LAN_PREFIX_LEN}", h.ip), &h.iface);
    run_ok(&["ip", "-n", &h.ns, "link", "set", &h.iface, "up"]);
}

/// Waits (at most 5 s) until every interface reports carrier.
pub(crate) fn wait_up<'a>(hosts: impl Iterator<Item = &'a Host>) {
    let deadline = Instant::now() + Duration::from_secs(5);
    for h in hosts {
        loop {
            let out = exec(
                &h.ns,
                &["cat", &format!("/sys/class/net/{}/operstate", h.iface)],
            );
            if String::from_utf8_lossy(&out.stdout).trim() == "up" {
                break;
            }
            assert!(Instant::now() < deadline, "{} never came up", h.iface);
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
