//! `xvs-bench restore`: how long `xvsadm -R` of a large table takes.
//!
//! The table is S services × D real servers in `-S` format (10,000 × 10 by
//! default: 110,000 rules). Timed separately, each the median of a few
//! runs: the restore in the control plane (parse every line, apply it to a
//! copy, swap the copy in), the save (`-S`) of the result, and the first
//! snapshot build of the table for the workers (what xvsd does before it
//! answers). The save is checked to restore to itself.

use std::time::{Duration, Instant};

use xvs_control::model::Limits;
use xvs_control::{Control, NoRuntime, Request};
use xvs_dataplane::build::SnapshotBuilder;
use xvs_dataplane::neigh::NeighTable;

/// What one benchmark measured.
#[derive(Debug, Clone)]
pub struct RestoreResult {
    /// Services in the table.
    pub services: usize,
    /// Real servers per service.
    pub dests: usize,
    /// Rule lines.
    pub lines: usize,
    /// Size of the rules in bytes.
    pub bytes: usize,
    /// Median time of the restore (`-R`).
    pub restore: Duration,
    /// Median time of the save (`-S`).
    pub save: Duration,
    /// Median time of building the snapshot of the restored table.
    pub snapshot: Duration,
}

/// The rules of `services` TCP services with `dests` NAT servers each,
/// sorted as `-S` writes them.
pub fn rules(services: usize, dests: usize) -> String {
    let mut out = String::with_capacity(services * (dests + 1) * 64);
    for i in 0..services {
        let svc = format!(
            "198.18.{}.{}:{}",
            i / 250 % 256,
            i % 250 + 1,
            80 + i / 64_000
        );
        out.push_str(&format!("-A -t {svc} -s wlc\n"));
        for j in 0..dests {
            out.push_str(&format!(
                "-a -t {svc} -r 198.19.{}.{}:{} -m -w {}\n",
                j % 256,
                i % 250 + 1,
                8000 + j,
                1 + j % 5
            ));
        }
    }
    out
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn request(args: &[&str], stdin: Option<String>) -> Request {
    Request {
        args: args.iter().map(|s| s.to_string()).collect(),
        stdin,
    }
}

/// Restore `services` × `dests` into an empty control plane `runs` times.
/// Panics if the restore fails or its save does not restore identically.
pub fn run(services: usize, dests: usize, runs: usize) -> RestoreResult {
    let text = rules(services, dests);
    let limits = Limits {
        max_services: services.max(Limits::default().max_services),
        max_dests: dests.max(Limits::default().max_dests),
    };
    let neigh = NeighTable::new(Vec::new());
    let (mut restore, mut save, mut snapshot) = (Vec::new(), Vec::new(), Vec::new());
    let mut saved = String::new();
    for _ in 0..runs.max(1) {
        let mut c = Control::with_config(limits, 4096);
        let req = request(&["-R"], Some(text.clone()));
        let t = Instant::now();
        let r = c.execute(&req, &NoRuntime);
        restore.push(t.elapsed());
        assert_eq!(r.code, 0, "restore failed: {}", r.stderr);

        let t = Instant::now();
        let s = c.execute(&request(&["-S", "-n"], None), &NoRuntime);
        save.push(t.elapsed());
        saved = s.stdout;

        let t = Instant::now();
        let snap = SnapshotBuilder::new().build(&c.model().config(), &neigh);
        snapshot.push(t.elapsed());
        drop(snap);
    }
    assert_eq!(saved, text, "the save differs from the rules restored");
    RestoreResult {
        services,
        dests,
        lines: text.lines().count(),
        bytes: text.len(),
        restore: median(restore),
        save: median(save),
        snapshot: median(snapshot),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_table_round_trips() {
        let r = run(300, 3, 1);
        assert_eq!(r.lines, 1200);
    }
}
