//! What the control tests share: one xvsadm command line through
//! `Control::execute`, and a runtime that only lists connections. Each
//! test file uses part of it, hence the `dead_code` allowance.
#![allow(dead_code)]

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
