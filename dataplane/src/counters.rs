//! Every data-plane counter in one snapshot, so that the listing
//! (`-L --dataplane`), the metrics page and the exit report show the same
//! set, each counter once: they iterate [`DataplaneCounters::iter`]
//! instead of naming fields, so a counter added here appears in all three.
//!
//! Three places count: the steering program (per interface, per CPU, in a
//! BPF map), the AF_XDP rings of each worker, and each worker's pipeline.
//! A frame is counted once per place it goes through: the program's
//! `redirect` counts what reaches the sockets, `rx` what the workers read,
//! and every frame read ends as exactly one of `tx` or a drop reason.

use crate::io::xdp::SteerCounters;
use crate::io::RingCounters;
use crate::pipeline::{DropReason, PipelineStats};
use crate::sync::SyncCounters;

/// What one worker counted: frames read, its pipeline, its rings.
#[derive(Debug, Default, Clone)]
pub struct WorkerCounters {
    /// Frames read from the RX rings.
    pub rx: u64,
    /// The pipeline's counters (a frame the pipeline passed but the port
    /// could not give back to the kernel counts as `pass_unavailable`,
    /// not as `pass`).
    pub pipeline: PipelineStats,
    /// The rings' counters.
    pub rings: RingCounters,
}

/// One counter, as every consumer shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counter {
    /// The group it is listed in: `pipeline`, `drops`, or `steering IFACE`.
    pub group: String,
    /// Its name within the group (`tx`, `no_neigh`, `redirect`).
    pub name: &'static str,
    /// Metric family, without the `xvs_dataplane_` prefix.
    pub metric: &'static str,
    /// The metric's label, if the family has several samples.
    pub label: Option<(&'static str, String)>,
    /// What it counts (the metric family's help).
    pub help: &'static str,
    /// The value.
    pub value: u64,
}

/// Every data-plane counter at one instant, summed over workers.
#[derive(Debug, Default, Clone)]
pub struct DataplaneCounters {
    /// Worker threads (one per RX queue).
    pub workers: usize,
    /// The workers' counters, summed.
    pub sum: WorkerCounters,
    /// The steering program's counters, per interface name.
    pub steering: Vec<(String, SteerCounters)>,
    /// Connection sync: records emitted, installed, rejected by reason.
    pub sync: SyncCounters,
}

impl DataplaneCounters {
    /// Add one worker's counters to the sum (the only place they are
    /// summed). A ring's `no_port` is the `no_port` drop reason.
    pub fn add(&mut self, w: &WorkerCounters) {
        let (s, p) = (&mut self.sum, &w.pipeline);
        s.rx += w.rx;
        s.pipeline.tx += p.tx;
        s.pipeline.pass += p.pass;
        s.pipeline.conns_created += p.conns_created;
        s.pipeline.conns_expired += p.conns_expired;
        s.pipeline.templates_created += p.templates_created;
        s.pipeline.frag_needed += p.frag_needed;
        s.pipeline.conns_evicted += p.conns_evicted;
        s.pipeline.stateless += p.stateless;
        for r in DropReason::ALL {
            s.pipeline.drops[r as usize] += p.drops[r as usize];
        }
        s.pipeline.drops[DropReason::NoPort as usize] += w.rings.no_port;
        s.rings.tx_ring_full += w.rings.tx_ring_full;
    }

    /// Every counter, in listing order: the pipeline's, the drops by
    /// reason (the ring's `tx_ring_full` among them), connection sync's,
    /// then each interface's steering program.
    pub fn iter(&self) -> impl Iterator<Item = Counter> + '_ {
        let s = &self.sum;
        let p = &s.pipeline;
        let plain = |name, metric, help, value| Counter {
            group: "pipeline".into(),
            name,
            metric,
            label: None,
            help,
            value,
        };
        let pipeline = [
            plain(
                "rx",
                "rx_frames_total",
                "Frames read from the AF_XDP sockets",
                s.rx,
            ),
            plain("tx", "tx_frames_total", "Frames transmitted", p.tx),
            plain(
                "pass",
                "pass_frames_total",
                "Frames passed to the kernel",
                p.pass,
            ),
            plain(
                "conns_created",
                "connections_created_total",
                "Connections created",
                p.conns_created,
            ),
            plain(
                "conns_expired",
                "connections_expired_total",
                "Connections expired",
                p.conns_expired,
            ),
            plain(
                "templates_created",
                "templates_created_total",
                "Persistence templates created",
                p.templates_created,
            ),
            plain(
                "frag_needed",
                "frag_needed_total",
                "ICMP fragmentation-needed sent back for tunnelled packets",
                p.frag_needed,
            ),
            plain(
                "conns_evicted",
                "connections_evicted_total",
                "Half-open or expired connections evicted to make room for new ones",
                p.conns_evicted,
            ),
            plain(
                "stateless",
                "stateless_frames_total",
                "Frames forwarded without a connection entry (table full), by a hash of their flow",
                p.stateless,
            ),
        ];
        let drop = |name: &'static str, value| Counter {
            group: "drops".into(),
            name,
            metric: "drops_total",
            label: Some(("reason", name.to_string())),
            help: "Frames dropped, by reason",
            value,
        };
        let drops = DropReason::ALL
            .into_iter()
            .map(move |r| drop(r.name(), p.drops[r as usize]))
            .chain(std::iter::once(drop("tx_ring_full", s.rings.tx_ring_full)));
        let sync = self.sync.named().into_iter().map(|(name, value)| Counter {
            group: "sync".into(),
            name,
            metric: "sync_records_total",
            label: Some(("what", name.to_string())),
            help: "Connection sync records: emitted by the workers, dropped on a full queue, installed, updated, replaced, stale, rejected by reason",
            value,
        });
        let steering = self.steering.iter().flat_map(|(iface, c)| {
            let one = move |name: &'static str, metric, help, value| Counter {
                group: format!("steering {iface}"),
                name,
                metric,
                label: Some(("iface", iface.clone())),
                help,
                value,
            };
            [
                one(
                    "pass",
                    "steer_pass_frames_total",
                    "Frames the steering program left to the kernel",
                    c.pass,
                ),
                one(
                    "redirect",
                    "steer_redirect_frames_total",
                    "Frames the steering program sent to an AF_XDP socket",
                    c.redirect,
                ),
                one(
                    "no_socket",
                    "steer_no_socket_frames_total",
                    "Frames for a service dropped for want of an AF_XDP socket on their queue",
                    c.no_socket,
                ),
                one(
                    "other_host",
                    "steer_other_host_frames_total",
                    "Frames for a service addressed to another host's MAC, left to the kernel (which drops them)",
                    c.other_host,
                ),
            ]
        });
        pipeline
            .into_iter()
            .chain(drops)
            .chain(sync)
            .chain(steering)
    }

    /// The counters as lines of `GROUP: NAME VALUE NAME VALUE ...`, each
    /// line starting with `indent` (the listing and the exit report).
    pub fn lines(&self, indent: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut group = String::new();
        for c in self.iter() {
            if c.group != group || out.is_empty() {
                group = c.group.clone();
                out.push(format!("{indent}{group}:"));
            }
            if let Some(l) = out.last_mut() {
                l.push_str(&format!(" {} {}", c.name, c.value));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn workers_sum_and_every_counter_is_listed_once() {
        let mut w = WorkerCounters {
            rx: 10,
            ..Default::default()
        };
        w.pipeline.tx = 7;
        w.pipeline.conns_evicted = 5;
        w.pipeline.stateless = 9;
        w.pipeline.drops[DropReason::NoNeigh as usize] = 2;
        w.pipeline.drops[DropReason::PassUnavailable as usize] = 1;
        w.rings = RingCounters {
            tx_ring_full: 3,
            no_port: 4,
        };
        let mut d = DataplaneCounters {
            workers: 2,
            ..Default::default()
        };
        d.add(&w);
        d.add(&w);
        d.steering.push((
            "eth0".into(),
            SteerCounters {
                pass: 5,
                redirect: 20,
                no_socket: 1,
                other_host: 2,
            },
        ));
        let all: Vec<Counter> = d.iter().collect();
        let value = |g: &str, n: &str| {
            all.iter()
                .find(|c| c.group == g && c.name == n)
                .map(|c| c.value)
        };
        assert_eq!(value("pipeline", "rx"), Some(20));
        assert_eq!(value("pipeline", "tx"), Some(14));
        assert_eq!(value("pipeline", "conns_evicted"), Some(10));
        assert_eq!(value("pipeline", "stateless"), Some(18));
        assert_eq!(value("drops", "no_neigh"), Some(4));
        assert_eq!(value("drops", "no_port"), Some(8));
        assert_eq!(value("drops", "tx_ring_full"), Some(6));
        assert_eq!(value("steering eth0", "redirect"), Some(20));
        assert_eq!(value("steering eth0", "no_socket"), Some(1));
        assert_eq!(value("steering eth0", "other_host"), Some(2));
        assert_eq!(value("drops", "other_host"), Some(0));
        // Every drop reason is there; no (metric, label) twice.
        for r in DropReason::ALL {
            assert!(value("drops", r.name()).is_some(), "{}", r.name());
        }
        let keys: HashSet<_> = all.iter().map(|c| (c.metric, c.label.clone())).collect();
        assert_eq!(keys.len(), all.len());
        d.sync.installed = 4;
        d.sync.rejected_no_dest = 1;
        let lines = d.lines("  ");
        assert_eq!(lines.len(), 4, "{lines:?}");
        assert!(lines[0].starts_with("  pipeline: rx 20 tx 14 pass 0"));
        assert!(lines[1].contains(" no_port 8 ") && lines[1].ends_with(" tx_ring_full 6"));
        assert!(lines[2].starts_with("  sync: emitted 0 out_dropped 0 in_dropped 0 installed 4 "));
        assert!(lines[2].contains(" rejected_no_dest 1 "));
        assert_eq!(
            lines[3],
            "  steering eth0: pass 5 redirect 20 no_socket 1 other_host 2"
        );
    }
}
