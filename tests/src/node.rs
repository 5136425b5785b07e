//! What `xvs-node client` reports, parsed.
//!
//! The client prints one `NAME COUNT` line per server name that answered and
//! a final `total=N ok=N failed=N` line; tests assert on the parsed form.

use std::collections::BTreeMap;
use std::process::Output;

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
