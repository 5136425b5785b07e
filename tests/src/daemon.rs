//! Running `xvsd` for a test and talking to it with `xvsadm`.
//!
//! The daemon runs inside the director's namespace (`ip netns exec`); its
//! control socket is a Unix socket in the shared file system, so `xvsadm`
//! runs from the test's own namespace. Its stderr goes to a file so that the
//! exit report (per-worker frame accounting) can be checked after SIGTERM,
//! and is printed when a test fails while the daemon runs.

use std::fs::File;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use crate::netns::{unique_prefix, Host};

/// How long to wait for the control socket to appear.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for exit after SIGTERM before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A bpffs shared by every daemon a test starts with
/// [`Start::shared_bpffs`]: what one daemon pins there outlives it (and
/// its private mount namespace), as `/sys/fs/bpf` does on a real host.
pub const SHARED_BPFFS: &str = "/run/xvs-tests/bpffs";

/// Mounts a bpffs at [`SHARED_BPFFS`] unless one is there.
pub fn ensure_shared_bpffs() {
    std::fs::create_dir_all(SHARED_BPFFS)
        .unwrap_or_else(|e| panic!("cannot create {SHARED_BPFFS}: {e}"));
    let mounted = Command::new("mountpoint")
        .args(["-q", SHARED_BPFFS])
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        let out = Command::new("mount")
            .args(["-t", "bpf", "bpf", SHARED_BPFFS])
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "cannot mount bpffs on {SHARED_BPFFS}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Where xvsd pins interface `iface`'s program, seen from the test (with
/// [`Start::shared_bpffs`]).
pub fn shared_pin_dir(iface: &str) -> PathBuf {
    Path::new(SHARED_BPFFS).join("xvs").join(iface)
}

/// How to start `xvsd`, beyond its arguments.
#[derive(Debug, Default, Clone)]
pub struct Start {
    /// The control socket (default: a fresh path). An existing file is
    /// left in place, and the daemon is ready when it answers on it.
    pub socket: Option<PathBuf>,
    /// Give the daemon [`SHARED_BPFFS`] as its `/sys/fs/bpf` (default: a
    /// private bpffs that goes with the daemon's mount namespace).
    pub shared_bpffs: bool,
}

/// A running `xvsd`; stopped with SIGTERM (then SIGKILL) on drop.
#[derive(Debug)]
pub struct Xvsd {
    child: Option<Child>,
    socket: PathBuf,
    stderr_path: PathBuf,
    /// The socket file existed before the daemon: ready means answering.
    preexisting: bool,
    /// The temporary `--state-dir` made for this daemon (removed on drop);
    /// `None` when the caller gave its own.
    own_state_dir: Option<PathBuf>,
}

/// How `xvsd` ended.
#[derive(Debug)]
pub struct XvsdExit {
    /// Its exit status.
    pub status: ExitStatus,
    /// Everything it wrote to stderr.
    pub stderr: String,
    /// Whether SIGTERM was not enough and it had to be killed.
    pub killed: bool,
}

/// One worker's frame accounting, as `xvsd` prints it at exit:
/// `xvsd: worker IFACE:QUEUE frames total=N fill=N rx=N tx=N comp=N free=N lost=N`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerFrames {
    /// `IFACE:QUEUE` as printed.
    pub worker: String,
    /// UMEM frames owned by the worker.
    pub total: u64,
    /// Frames in the fill ring.
    pub fill: u64,
    /// Frames in the RX ring.
    pub rx: u64,
    /// Frames in the TX ring.
    pub tx: u64,
    /// Frames in the completion ring.
    pub comp: u64,
    /// Frames on the free list.
    pub free: u64,
    /// Frames unaccounted for (must be 0; negative when a frame is
    /// counted twice).
    pub lost: i64,
}

impl WorkerFrames {
    /// Parses one exit line; `None` if `line` is not one.
    pub fn parse(line: &str) -> Option<Self> {
        let rest = line.split_once("worker ")?.1;
        let (worker, rest) = rest.split_once(' ')?;
        let rest = rest.trim_start().strip_prefix("frames")?;
        let mut w = WorkerFrames {
            worker: worker.to_owned(),
            ..Default::default()
        };
        let mut seen_lost = false;
        for kv in rest.split_whitespace() {
            let (k, v) = kv.split_once('=')?;
            if k == "lost" {
                w.lost = v.parse().ok()?;
                seen_lost = true;
                continue;
            }
            let v: u64 = v.parse().ok()?;
            match k {
                "total" => w.total = v,
                "fill" => w.fill = v,
                "rx" => w.rx = v,
                "tx" => w.tx = v,
                "comp" => w.comp = v,
                "free" => w.free = v,
                _ => {}
            }
        }
        seen_lost.then_some(w)
    }
}

impl XvsdExit {
    /// Asserts that the daemon ended by itself after SIGTERM (not killed)
    /// with status 0; the message carries its stderr.
    pub fn assert_clean(&self) {
        assert!(
            !self.killed,
            "xvsd ignored SIGTERM; stderr:\n{}",
            self.stderr
        );
        assert!(
            self.status.success(),
            "xvsd exited with {}; stderr:\n{}",
            self.status,
            self.stderr
        );
    }

    /// Asserts that the exit report accounts for the frames of at least
    /// one worker and that no worker lost one; returns the workers' lines.
    pub fn assert_frames_accounted(&self) -> Vec<WorkerFrames> {
        let workers = self.worker_frames();
        assert!(
            !workers.is_empty(),
            "no `xvsd: worker IFACE:Q frames total=.. lost=..` line in stderr:\n{}",
            self.stderr
        );
        for w in &workers {
            assert_eq!(w.lost, 0, "worker {} lost frames: {w:?}", w.worker);
        }
        workers
    }

    /// The per-worker frame lines found in stderr.
    pub fn worker_frames(&self) -> Vec<WorkerFrames> {
        self.stderr
            .lines()
            .filter(|l| l.contains("frames total="))
            .filter_map(WorkerFrames::parse)
            .collect()
    }
}

impl Xvsd {
    /// Starts `xvsd --iface IFACE... --socket S` inside namespace `ns` and
    /// waits for its control socket.
    ///
    /// `ip netns exec` gives the command a fresh `/sys` without bpffs, so
    /// bpffs is mounted again in that (private) mount namespace first.
    pub fn start(ns: &str, ifaces: &[&str]) -> Self {
        let mut args: Vec<String> = Vec::new();
        for i in ifaces {
            args.push("--iface".into());
            args.push((*i).to_owned());
        }
        Self::start_with(Some(ns), &args)
    }

    /// Starts `xvsd --socket S` with no interface (control only) in the
    /// test's own namespace and waits for its socket.
    pub fn start_control_only() -> Self {
        Self::start_with(None, &[])
    }

    /// Starts `xvsd EXTRA... --socket S`, inside `ns` if given. Unless
    /// EXTRA has a `--state-dir`, the daemon gets a fresh temporary one, so
    /// a test never reads or writes the system's `/var/lib/xvs`.
    pub fn start_with(ns: Option<&str>, extra: &[String]) -> Self {
        Self::start_opts(ns, extra, &Start::default())
    }

    /// Starts `xvsd EXTRA... --socket S` as `how` says, inside `ns` if
    /// given, and waits until it is ready.
    pub fn start_opts(ns: Option<&str>, extra: &[String], how: &Start) -> Self {
        let (child, socket, stderr_path, own_state_dir) = spawn(ns, extra, how);
        let mut d = Xvsd {
            child: Some(child),
            preexisting: how.socket.as_ref().is_some_and(|s| s.exists()),
            socket,
            stderr_path,
            own_state_dir,
        };
        d.wait_ready();
        d
    }

    /// Runs `xvsd EXTRA... --socket S` as `how` says, inside `ns` if
    /// given, expecting it to exit by itself; killed (and reported so)
    /// after `timeout`.
    pub fn run_to_exit(
        ns: Option<&str>,
        extra: &[String],
        how: &Start,
        timeout: Duration,
    ) -> XvsdExit {
        let (mut child, socket, stderr_path, state_dir) = spawn(ns, extra, how);
        let (status, killed) = wait_or_kill(&mut child, timeout);
        let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
        let _ = std::fs::remove_file(&stderr_path);
        if let Some(d) = state_dir {
            let _ = std::fs::remove_dir_all(d);
        }
        if how.socket.is_none() {
            let _ = std::fs::remove_file(&socket);
        }
        XvsdExit {
            status,
            stderr,
            killed,
        }
    }

    /// Kills the daemon with SIGKILL (a crash: nothing of its own runs)
    /// and returns how it ended; its socket file is left behind.
    pub fn kill9(&mut self) -> XvsdExit {
        let mut child = self.child.take().expect("xvsd is running");
        let _ = child.kill();
        let status = child.wait().expect("wait for killed xvsd");
        XvsdExit {
            status,
            stderr: self.stderr_so_far(),
            killed: true,
        }
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let ready = if self.preexisting {
                UnixStream::connect(&self.socket).is_ok()
            } else {
                self.socket.exists()
            };
            if ready {
                return;
            }
            let child = self.child.as_mut().expect("running");
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                panic!(
                    "xvsd exited before creating its socket ({status}); stderr:\n{}",
                    self.stderr_so_far()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "xvsd did not create {} within {START_TIMEOUT:?}; stderr:\n{}",
                    self.socket.display(),
                    self.stderr_so_far()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the daemon with SIGKILL, as a crash would (nothing is cleaned
    /// up: its socket file is removed here so a new daemon's can be
    /// awaited), and returns what it wrote to stderr.
    pub fn kill_hard(mut self) -> String {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(&self.socket);
        self.stderr_so_far()
    }

    /// Sends SIGUSR2 (live upgrade) and waits until the re-executed daemon
    /// serves its control socket again (at most [`START_TIMEOUT`]). Panics
    /// if the daemon exits instead.
    pub fn upgrade(&mut self) {
        let pid = self.pid().expect("running");
        let listening = |s: &str| s.matches("xvsd: listening on").count();
        let before = listening(&self.stderr_so_far());
        let out = Command::new("sh")
            .args(["-c", &format!("kill -USR2 {pid}")])
            .output()
            .expect("run kill");
        assert!(out.status.success(), "kill -USR2 {pid} failed");
        let deadline = Instant::now() + START_TIMEOUT;
        while listening(&self.stderr_so_far()) <= before {
            let child = self.child.as_mut().expect("running");
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                panic!(
                    "xvsd exited during a live upgrade ({status}); stderr:\n{}",
                    self.stderr_so_far()
                );
            }
            assert!(
                Instant::now() < deadline,
                "xvsd did not come back from a live upgrade within {START_TIMEOUT:?}; stderr:\n{}",
                self.stderr_so_far()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Path of the control socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Process id of the daemon, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// What the daemon has written to stderr so far.
    pub fn stderr_so_far(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Runs `xvsadm --socket S ARGS...` and returns its output.
    pub fn adm(&self, args: &[&str]) -> Output {
        Command::new(crate::bin("xvsadm"))
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run xvsadm: {e}"))
    }

    /// Runs `xvsadm` and panics with its stderr unless it exits 0; returns stdout.
    pub fn adm_ok(&self, args: &[&str]) -> String {
        let out = self.adm(args);
        assert!(
            out.status.success(),
            "xvsadm {args:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `xvsadm --socket S ARGS...` with `stdin` on its standard
    /// input (`-R`) and returns its output.
    pub fn adm_stdin(&self, args: &[&str], stdin: &str) -> Output {
        use std::io::Write;
        let mut child = Command::new(crate::bin("xvsadm"))
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run xvsadm");
        let mut input = child.stdin.take().expect("piped");
        input.write_all(stdin.as_bytes()).expect("write rules");
        drop(input);
        child.wait_with_output().expect("wait for xvsadm")
    }

    /// Adds each of `hosts` to service `svc` by direct routing (`-a -t SVC
    /// -r IP -g`: the service's port, the default weight).
    pub fn add_direct(&self, svc: &str, hosts: &[Host]) {
        for h in hosts {
            self.adm_ok(&["-a", "-t", svc, "-r", &h.ip.to_string(), "-g"]);
        }
    }

    /// Adds TCP service `svc` with scheduler `sched` and each of `hosts`
    /// as its direct-routing real servers ([`Xvsd::add_direct`]).
    pub fn add_dr_service(&self, svc: &str, sched: &str, hosts: &[Host]) {
        self.adm_ok(&["-A", "-t", svc, "-s", sched]);
        self.add_direct(svc, hosts);
    }

    /// Sends SIGTERM, waits (bounded) for the exit and returns how it ended.
    pub fn stop(mut self) -> XvsdExit {
        self.terminate()
            .expect("xvsd is running until stop or drop")
    }

    fn terminate(&mut self) -> Option<XvsdExit> {
        let mut child = self.child.take()?;
        // `kill` as a shell builtin: no unsafe libc call, no procps needed.
        let _ = Command::new("sh")
            .args(["-c", &format!("kill -TERM {}", child.id())])
            .stderr(Stdio::null())
            .status();
        let (status, killed) = wait_or_kill(&mut child, STOP_TIMEOUT);
        Some(XvsdExit {
            status,
            stderr: self.stderr_so_far(),
            killed,
        })
    }
}

/// Spawns xvsd: the child, its socket path and its stderr file.
/// Waits for `child` to exit, at most `timeout`; then kills it. Returns
/// how it ended and whether it had to be killed.
fn wait_or_kill(child: &mut Child, timeout: Duration) -> (std::process::ExitStatus, bool) {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return (status, false),
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            _ => {
                let _ = child.kill();
                return (child.wait().expect("wait for killed xvsd"), true);
            }
        }
    }
}

/// Starts xvsd; returns the child, its socket, its stderr file and the
/// temporary `--state-dir` made for it (`None` when `extra` names one).
fn spawn(
    ns: Option<&str>,
    extra: &[String],
    how: &Start,
) -> (Child, PathBuf, PathBuf, Option<PathBuf>) {
    let xvsd = crate::bin("xvsd");
    let tag = format!("{}-{}", unique_prefix(), std::process::id());
    let tmp = std::env::temp_dir();
    let socket = match &how.socket {
        Some(s) => s.clone(),
        None => {
            let s = tmp.join(format!("xvs-{tag}.sock"));
            let _ = std::fs::remove_file(&s);
            s
        }
    };
    let stderr_path = tmp.join(format!("xvs-{tag}.stderr"));
    let own_state_dir =
        (!extra.iter().any(|a| a == "--state-dir")).then(|| tmp.join(format!("xvs-{tag}.state")));
    if let Some(d) = &own_state_dir {
        let _ = std::fs::remove_dir_all(d);
    }
    let stderr = File::create(&stderr_path)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", stderr_path.display()));
    if how.shared_bpffs {
        ensure_shared_bpffs();
    }
    let mut cmd = match ns {
        Some(ns) => {
            let mount = if how.shared_bpffs {
                format!("mount --bind {SHARED_BPFFS} /sys/fs/bpf")
            } else {
                "mount -t bpf bpf /sys/fs/bpf 2>/dev/null".to_owned()
            };
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, "sh", "-c"]).arg(format!(
                "mountpoint -q /sys/fs/bpf || {mount}; exec \"$0\" \"$@\""
            ));
            c.arg(&xvsd);
            c
        }
        None => Command::new(&xvsd),
    };
    cmd.args(extra);
    if let Some(d) = &own_state_dir {
        cmd.arg("--state-dir").arg(d);
    }
    cmd.arg("--socket")
        .arg(&socket)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr);
    // `ip netns exec` and `sh -c 'exec ...'` both exec in place: the
    // child's pid is xvsd's pid, so signals reach the daemon itself.
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", xvsd.display()));
    (child, socket, stderr_path, own_state_dir)
}

impl Drop for Xvsd {
    fn drop(&mut self) {
        if let Some(exit) = self.terminate() {
            if std::thread::panicking() {
                eprintln!(
                    "--- xvsd ({}{}) stderr ---\n{}--- end of xvsd stderr ---",
                    exit.status,
                    if exit.killed { ", killed" } else { "" },
                    exit.stderr
                );
            }
        }
        let _ = std::fs::remove_file(&self.socket);
        let _ = std::fs::remove_file(&self.stderr_path);
        if let Some(d) = &self.own_state_dir {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// A file in the temporary directory, named per run, removed on drop: a
/// rules file for `--config`, a bad one for a failing start.
#[derive(Debug)]
pub struct TempFile(pub PathBuf);

impl TempFile {
    /// Writes `text` to a new file whose name ends in `name`.
    pub fn new(name: &str, text: &str) -> Self {
        let p = std::env::temp_dir().join(format!(
            "xvs-{}-{}-{name}",
            crate::netns::unique_prefix(),
            std::process::id()
        ));
        std::fs::write(&p, text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        TempFile(p)
    }

    /// Its path, as a command-line argument.
    pub fn arg(&self) -> String {
        self.0.display().to_string()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_worker_frames_line() {
        let w = WorkerFrames::parse(
            "xvsd: worker x1a2b-dir:0 frames total=4096 fill=2048 rx=0 tx=0 comp=0 free=2048 lost=0",
        )
        .unwrap();
        assert_eq!(w.worker, "x1a2b-dir:0");
        assert_eq!((w.total, w.fill, w.free, w.lost), (4096, 2048, 2048, 0));
        assert_eq!(WorkerFrames::parse("xvsd: worker eth0:0 started"), None);
        // A frame counted twice shows as a negative loss, not as none.
        let w = WorkerFrames::parse(
            "xvsd: worker d:1 frames total=8 fill=4 rx=0 tx=1 comp=0 free=4 lost=-1",
        )
        .unwrap();
        assert_eq!(w.lost, -1);
    }
}
