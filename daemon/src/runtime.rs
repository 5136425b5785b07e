//! What the control plane asks of the running data plane, answered in the
//! control plane's own plain types: connection listings (`-Lnc`), the
//! `-L --dataplane` text and the metrics page's counters. This is the only
//! place that reads the data plane on the control plane's behalf.

use xvs_control::metrics::DataplaneStats;
use xvs_control::{ConnEntry, Runtime};
use xvs_dataplane::director::Director;
use xvs_dataplane::pipeline::DropReason;

/// The running data plane, as the control plane sees it.
pub struct Live<'a>(pub &'a Director);

impl Runtime for Live<'_> {
    fn dataplane(&self) -> String {
        let d = self.0;
        let t = d.stats();
        let table = d.table();
        let used = table.iter().count();
        let mut out = String::new();
        out.push_str(&format!(
            "Data plane: {} worker(s)\n  tx {}  pass {}  conns_created {}  conns_expired {}  templates_created {}  frag_needed {}\n  drops:",
            d.workers(),
            t.tx,
            t.pass,
            t.conns_created,
            t.conns_expired,
            t.templates_created,
            t.frag_needed
        ));
        for r in DropReason::ALL {
            out.push_str(&format!(" {} {}", r.name(), t.drops[r as usize]));
        }
        out.push_str(&format!(
            "\n  connection table: {used} of {} entries in use ({:.0} bytes each with its indexes)\n",
            table.capacity(),
            table.bytes_per_entry()
        ));
        out
    }

    fn connections(&self) -> Vec<ConnEntry> {
        self.0
            .connections()
            .into_iter()
            .map(|c| ConnEntry {
                proto: c.proto,
                template: c.template,
                state: c.state,
                expire_secs: c.expire_secs,
                cip: c.cip.into(),
                cport: c.cport,
                vip: c.vip.into(),
                vport: c.vport,
                dip: c.rip,
                dport: c.rport,
            })
            .collect()
    }
}

/// The data plane's summed counters for the metrics page.
pub fn dataplane_stats(director: &Director, workers: usize) -> DataplaneStats {
    let t = director.stats();
    DataplaneStats {
        workers,
        tx: t.tx,
        pass: t.pass,
        drops: DropReason::ALL
            .iter()
            .map(|r| (r.name(), t.drops[*r as usize]))
            .collect(),
        conns_created: t.conns_created,
        conns_expired: t.conns_expired,
    }
}

/// The line `xvsd` prints at exit with the pipeline's totals.
pub fn exit_report(director: &Director) -> String {
    let totals = director.stats();
    let drops: Vec<String> = DropReason::ALL
        .iter()
        .map(|r| format!("{}={}", r.name(), totals.drops[*r as usize]))
        .collect();
    format!(
        "xvsd: pipeline tx={} pass={} conns_created={} conns_expired={} drops: {}",
        totals.tx,
        totals.pass,
        totals.conns_created,
        totals.conns_expired,
        drops.join(" ")
    )
}
