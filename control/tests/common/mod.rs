//! What the control tests share: one xvsadm command line through
//! `Control::execute`, and a runtime that only lists connections, and health reports fed in as the
//! daemon feeds them. Each
//! test file uses part of it, hence the `dead_code` allowance.
#![allow(dead_code)]

use std::collections::HashMap;

use xvs_config::check::{Health, HealthStatus, LatencyHist, ProbeKey};
use xvs_control::{ConnEntry, Control, NoRuntime, Request, Response, Runtime};

/// The request for command line `line` (split at white space, no stdin).
pub fn req(line: &str) -> Request {
    Request {
        args: line.split_whitespace().map(String::from).collect(),
        stdin: None,
    }
}

/// Run command line `line` with no data plane behind it.
pub fn run(c: &mut Control, line: &str) -> Response {
    c.execute(&req(line), &NoRuntime)
}

/// Run a command that must succeed silently or with output; return stdout.
pub fn ok(c: &mut Control, line: &str) -> String {
    let r = run(c, line);
    assert_eq!((r.code, r.stderr.as_str()), (0, ""), "{line:?}");
    r.stdout
}

/// A runtime whose data plane holds exactly these connections.
pub struct Conns(pub Vec<ConnEntry>);

impl Runtime for Conns {
    fn connections(&self) -> Vec<ConnEntry> {
        self.0.clone()
    }
}

/// Feed `st` to `c` as the checker's result for every probe of server
/// `addr` (as the daemon feeds its reports); whether anything changed.
pub fn report(c: &mut Control, addr: &str, st: HealthStatus) -> bool {
    let map: HashMap<ProbeKey, HealthStatus> = c
        .model()
        .probes()
        .into_iter()
        .filter(|(k, _)| k.addr.to_string() == addr)
        .map(|(k, _)| (k, st.clone()))
        .collect();
    assert!(!map.is_empty(), "{addr} has a probe");
    c.set_health(&map)
}

/// A checker's status: `state` since `since`, last result `last`, one
/// probe of `latency_us` in the histogram.
pub fn status(state: Health, since: u64, last: &str, latency_us: u64) -> HealthStatus {
    let mut latency = LatencyHist::default();
    latency.record(latency_us);
    HealthStatus {
        state,
        since,
        last: last.into(),
        latency_us,
        weight: None,
        transitions: 1,
        latency,
    }
}
