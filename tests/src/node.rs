//! What `xvs-node client` reports, parsed.
//!
//! The client prints one `NAME COUNT` line per server name that answered and
//! a final `total=N ok=N failed=N` line; tests assert on the parsed form.
//! [`Holder`] drives `xvs-node hold` (long-lived connections).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Result of one `xvs-node client` run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientSummary {
    /// Replies per server name.
    pub counts: BTreeMap<String, u64>,
    /// Requests attempted.
    pub total: u64,
    /// Requests that got a name back.
    pub ok: u64,
    /// Requests that failed (connect, timeout, empty reply).
    pub failed: u64,
}

impl ClientSummary {
    /// Parses the client's stdout; `None` if the summary line is missing.
    pub fn parse(stdout: &str) -> Option<Self> {
        let mut s = ClientSummary::default();
        let mut seen_summary = false;
        for line in stdout.lines() {
            if line.starts_with("total=") {
                for kv in line.split_whitespace() {
                    let (k, v) = kv.split_once('=')?;
                    let v: u64 = v.parse().ok()?;
                    match k {
                        "total" => s.total = v,
                        "ok" => s.ok = v,
                        "failed" => s.failed = v,
                        _ => {}
                    }
                }
                seen_summary = true;
            } else if let Some((name, count)) = line.rsplit_once(' ') {
                s.counts.insert(name.to_owned(), count.trim().parse().ok()?);
            }
        }
        seen_summary.then_some(s)
    }

    /// Parses a finished client's output, panicking with its stderr when the
    /// summary is missing.
    pub fn from_output(out: &Output) -> Self {
        let stdout = String::from_utf8_lossy(&out.stdout);
        Self::parse(&stdout).unwrap_or_else(|| {
            panic!(
                "xvs-node client printed no summary ({}):\nstdout:\n{stdout}\nstderr:\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }

    /// Replies from server `name` (0 if none).
    pub fn count(&self, name: &str) -> u64 {
        self.counts.get(name).copied().unwrap_or(0)
    }
}

/// The bounds of a run of sequential `xvs-node client` exchanges: what
/// differs between tests is only these knobs, so every test runs its
/// clients through one place and a failing run always shows the client's
/// stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clients {
    /// `--timeout-ms`: how long one exchange may take.
    pub timeout_ms: u64,
    /// `--deadline-ms`: how long the whole run may take.
    pub deadline_ms: u64,
    /// `--max-failures`: failures after which the client gives up.
    pub max_failures: u64,
    /// UDP exchanges (`--udp`) instead of TCP connections.
    pub udp: bool,
}

impl Default for Clients {
    /// 2 s an exchange, 30 s in all, at most 5 failures, TCP.
    fn default() -> Self {
        Clients {
            timeout_ms: 2000,
            deadline_ms: 30_000,
            max_failures: 5,
            udp: false,
        }
    }
}

impl Clients {
    /// These bounds with `--timeout-ms`, `--deadline-ms` and
    /// `--max-failures` set; TCP.
    pub fn new(timeout_ms: u64, deadline_ms: u64, max_failures: u64) -> Self {
        Clients {
            timeout_ms,
            deadline_ms,
            max_failures,
            udp: false,
        }
    }

    /// The same bounds, with UDP exchanges if `udp`.
    pub fn udp(self, udp: bool) -> Self {
        Clients { udp, ..self }
    }

    /// Runs `xvs-node client` in namespace `ns`: `count` exchanges with
    /// `target`, one after the other; its raw output.
    pub fn output(&self, ns: &str, target: &str, count: u64) -> Output {
        let node = crate::bin("xvs-node");
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns])
            .arg(node)
            .args(["client", "--connect", target])
            .args(["--count", &count.to_string()])
            .args(["--timeout-ms", &self.timeout_ms.to_string()])
            .args(["--deadline-ms", &self.deadline_ms.to_string()])
            .args(["--max-failures", &self.max_failures.to_string()]);
        if self.udp {
            cmd.arg("--udp");
        }
        cmd.stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run xvs-node client in {ns}: {e}"))
    }

    /// Like [`Clients::output`], parsed; the client's stderr is printed
    /// when it did not exit 0.
    pub fn run(&self, ns: &str, target: &str, count: u64) -> ClientSummary {
        let out = self.output(ns, target, count);
        if !out.status.success() {
            eprintln!("client stderr:\n{}", String::from_utf8_lossy(&out.stderr));
        }
        ClientSummary::from_output(&out)
    }

    /// Like [`Clients::run`], asserting that all `count` exchanges
    /// succeeded (the message carries the client's stderr).
    pub fn run_all_ok(&self, ns: &str, target: &str, count: u64) -> ClientSummary {
        let out = self.output(ns, target, count);
        let s = ClientSummary::from_output(&out);
        assert_eq!(
            (s.ok, s.failed),
            (count, 0),
            "{count} connections to {target}: {s:?}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        s
    }
}

/// A running `xvs-node hold` inside a namespace: connections opened and
/// kept idle until [`Holder::release`]. Killed on drop.
#[derive(Debug)]
pub struct Holder {
    child: Option<Child>,
    lines: mpsc::Receiver<String>,
    held: u64,
    what: String,
}

impl Holder {
    /// Starts `xvs-node hold --connect TARGET --count N` in namespace `ns`
    /// and waits (at most `timeout`) for it to report its connections
    /// open; panics if it does not. `node` is the path of `xvs-node`.
    pub fn start(ns: &str, node: &str, target: &str, count: u64, timeout: Duration) -> Self {
        let what = format!("xvs-node hold {target} x{count} in {ns}");
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns, node, "hold", "--connect", target])
            .args(["--count", &count.to_string()])
            .args(["--timeout-ms", "4000", "--hold-max-ms", "60000"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut h = Holder {
            child: Some(child),
            lines,
            held: 0,
            what,
        };
        match h.lines.recv_timeout(timeout) {
            Ok(line) => {
                h.held = line
                    .strip_prefix("held ")
                    .and_then(|n| n.trim().parse().ok())
                    .unwrap_or_else(|| panic!("{} said {line:?}, not `held N`", h.what));
            }
            Err(_) => panic!("{} did not report within {timeout:?}", h.what),
        }
        h
    }

    /// How many connections are open.
    pub fn held(&self) -> u64 {
        self.held
    }

    /// Lets the connections complete their exchange and returns the
    /// report (waiting at most `timeout`).
    pub fn release(mut self, timeout: Duration) -> ClientSummary {
        let mut child = self.child.take().expect("running until release");
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(b"go\n");
        }
        let deadline = Instant::now() + timeout;
        let mut out = String::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    out.push_str(&line);
                    out.push('\n');
                    if line.starts_with("total=") {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        ClientSummary::parse(&out)
            .unwrap_or_else(|| panic!("{} printed no summary after release:\n{out}", self.what))
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A command run in a namespace whose stdout lines arrive on a channel;
/// killed on drop.
#[derive(Debug)]
pub struct Lines {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Lines {
    /// Starts `cmd` inside namespace `ns`.
    pub fn spawn(ns: &str, cmd: &[&str]) -> Lines {
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns])
            .args(cmd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start {cmd:?}: {e}"));
        let out = child.stdout.take().expect("piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Lines { child, lines }
    }

    /// The next line it prints, waiting at most `within`.
    pub fn next_line(&self, within: Duration) -> Option<String> {
        self.lines.recv_timeout(within).ok()
    }

    /// Everything it prints until it exits (at most `within`), and whether
    /// it exited successfully.
    pub fn finish(mut self, within: Duration) -> (String, bool) {
        let deadline = Instant::now() + within;
        let mut out = String::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    out.push_str(&l);
                    out.push('\n');
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let _ = self.child.kill();
                    panic!("did not end in time; so far:\n{out}");
                }
            }
        }
        let ok = self.child.wait().is_ok_and(|s| s.success());
        (out, ok)
    }
}

impl Drop for Lines {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_counts_and_summary() {
        let s = ClientSummary::parse("rs1 2\nrs2 1\ntotal=4 ok=3 failed=1\n").unwrap();
        assert_eq!(s.count("rs1"), 2);
        assert_eq!(s.count("rs2"), 1);
        assert_eq!(s.count("rs3"), 0);
        assert_eq!((s.total, s.ok, s.failed), (4, 3, 1));
    }

    #[test]
    fn missing_summary_is_none() {
        assert_eq!(ClientSummary::parse("rs1 2\n"), None);
    }
}
