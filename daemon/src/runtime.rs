//! What the control plane asks of the running data plane, answered in the
//! control plane's own plain types: connection listings (`-Lnc`), the
//! `-L --dataplane` text and the metrics page's counters. This is the only
//! place that reads the data plane on the control plane's behalf.

use xvs_control::metrics::{DataplaneSample, DataplaneStats};
use xvs_control::{ConnEntry, Runtime};
use xvs_dataplane::director::Director;

use crate::sync::SyncDaemons;
use xvs_control::syncd::SyncStatus;

/// The running data plane (and sync daemons), as the control plane sees
/// it.
pub struct Live<'a>(pub &'a Director, pub &'a SyncDaemons);

impl Runtime for Live<'_> {
    fn dataplane(&self) -> String {
        let d = self.0;
        let table = d.table();
        let used = table.iter().count();
        let mut out = format!("Data plane: {} worker(s)\n", d.workers());
        for l in d.counters().lines("  ") {
            out.push_str(&l);
            out.push('\n');
        }
        out.push_str(&format!(
            "  connection table: {used} of {} entries in use ({:.0} bytes each with its indexes)\n",
            table.capacity(),
            table.bytes_per_entry()
        ));
        out
    }

    fn connections(&self) -> Vec<ConnEntry> {
        self.connections_iter().collect()
    }

    fn sync_status(&self) -> Vec<SyncStatus> {
        self.1.status()
    }

    fn connections_iter(&self) -> Box<dyn Iterator<Item = ConnEntry> + Send> {
        Box::new(self.0.connections_iter().map(|c| ConnEntry {
            proto: c.proto,
            template: c.template,
            state: c.state,
            expire_secs: c.expire_secs,
            cip: c.cip,
            cport: c.cport,
            vip: c.vip,
            vport: c.vport,
            dip: c.rip,
            dport: c.rport,
        }))
    }
}

/// The data plane's counters for the metrics page.
pub fn dataplane_stats(director: &Director, workers: usize) -> DataplaneStats {
    DataplaneStats {
        workers,
        counters: director
            .counters()
            .iter()
            .map(|c| DataplaneSample {
                metric: c.metric,
                label: c.label,
                help: c.help,
                value: c.value,
            })
            .collect(),
    }
}

/// The lines `xvsd` prints at exit with the data plane's totals.
pub fn exit_report(director: &Director) -> Vec<String> {
    director.counters().lines("xvsd: ")
}
