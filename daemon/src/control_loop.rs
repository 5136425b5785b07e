//! The control thread: the only owner of the configuration.
//!
//! It executes requests in batches, publishes one new snapshot per batch
//! that changed something and only then answers, so that when xvsadm
//! returns the workers already run the new configuration. If the publish
//! fails (a steering map is full), the batch is undone: the configuration
//! from before it is put back (the data plane already left its maps and
//! the workers' snapshot as they were), and every request of the batch
//! that changed the configuration is answered with the error, exit 255;
//! the others keep their answers. Between requests
//! it ticks the rate estimators, refreshes the metrics page, and, while
//! deleted real servers still have connections, rebuilds the snapshot so
//! that they are released soon after their last connection expires rather
//! than at the next configuration change.
//!
//! After every request it makes the running connection sync daemons the
//! model's ([`crate::sync`]): a `--start-daemon` that cannot start is
//! answered with the reason and forgotten. Between requests it hands the
//! masters' resync requests the table.
//!
//! After a batch that changed the configuration it also hands the rules to
//! the state file writer ([`crate::state`]), so that they survive a restart,
//! without making xvsadm's answer wait for the disk; and on SIGHUP it
//! reloads the rules by difference.
//!
//! It also drives the health checker ([`crate::health`]): after every
//! configuration change it hands the checker the probes the model needs
//! (unchanged probes keep their state), and it applies the statuses the
//! checker reports to the model, publishing a new snapshot when that
//! changes what the workers schedule (a server down or up again, a
//! dynamic weight, the sorry server). Reports are taken in batches, at
//! most every 100 ms, so a burst of results costs one publish.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use xvs_config::check::{CheckKind, HealthStatus, ProbeKey};
use xvs_config::svc::{Fwd, SvcKey};
use xvs_control::grammar::{self, Command};
use xvs_control::model::Model;
use xvs_control::proto::{Reply, Request, Response};
use xvs_control::{metrics, Control, NoRuntime};
use xvs_dataplane::build::SnapshotBuilder;
use xvs_dataplane::director::Director;
use xvs_dataplane::neigh::NeighTable;

use crate::health::{Engine, ProbeCtx, Report, Target, VipPath};

use crate::runtime::{dataplane_stats, Live};
use crate::server::Job;
use crate::state::{self, StateDir, StateWriter};
use crate::sync::SyncDaemons;

/// Requests executed before one publish (and then all answered).
pub const MAX_BATCH: usize = 256;
/// Rate estimator period.
const TICK: Duration = Duration::from_secs(2);
/// Metrics page refresh period.
const METRICS_REFRESH: Duration = Duration::from_secs(1);
/// How often the snapshot is rebuilt while deleted destinations wait for
/// their last connection.
const TRASH_REBUILD: Duration = Duration::from_secs(1);

/// Whether `req` may change the configuration (anything but a listing,
/// help or version, or a command-line error): the batch keeps a copy of
/// the configuration from before the first such request.
fn may_change(req: &Request) -> bool {
    !matches!(
        grammar::parse(&req.args),
        Ok(Command::List { .. } | Command::Save { .. } | Command::Help | Command::Version) | Err(_)
    )
}

/// The answer to a change the data plane could not take: ipvsadm's
/// refusal status (255) and message, with the reason.
fn refused_by_dataplane(e: &std::io::Error) -> Response {
    let what = if e.kind() == std::io::ErrorKind::StorageFull {
        "Memory allocation problem"
    } else {
        "Data plane refused the change"
    };
    Response::fail(255, format_args!("{what}: {e}; nothing changed"))
}

/// The health checker as the control thread sees it.
struct Checks {
    engine: Engine,
    reports: Receiver<Report>,
    /// The probes running.
    keys: HashSet<ProbeKey>,
    /// The last status of every running probe.
    statuses: HashMap<ProbeKey, HealthStatus>,
    /// The model generation the running probes were taken from.
    generation: Option<u64>,
}

/// What the checker must run for `model`: its probes, each with the first
/// service it serves (for `exec` arguments) and, for `vip` checks, the
/// way to the server (its forwarding method; for direct routing, the
/// next-hop cell the data plane keeps for it).
pub fn probe_targets(model: &Model, neigh: &NeighTable) -> Vec<Target> {
    model
        .probes()
        .into_iter()
        .map(|(key, users)| {
            let service = users.first().map(|(svc, _, _)| match *svc {
                SvcKey::Addr { vip, port, .. } => (vip.to_string(), port),
                SvcKey::Fwmark { mark, .. } => (format!("fwmark:{mark}"), 0),
            });
            let mut path = VipPath::None;
            if key.spec.kind == CheckKind::Vip {
                let dest = users
                    .iter()
                    .find_map(|(svc, addr, port)| model.service(svc)?.dest(*addr, *port));
                path = match dest.map(|d| (d.fwd, d.tun.kind())) {
                    Some((Fwd::Dr, _)) => VipPath::Dr(neigh.cell(key.addr)),
                    Some((Fwd::Tun, kind)) => VipPath::Tun(kind, neigh.cell(key.addr)),
                    _ => VipPath::None,
                };
            }
            Target {
                key,
                ctx: ProbeCtx { service, path },
            }
        })
        .collect()
}

/// The control thread's state.
pub struct ControlLoop {
    /// The configuration and its executor.
    pub control: Control,
    /// Carries scheduler state and ids from one snapshot to the next.
    builder: SnapshotBuilder,
    /// The data plane the snapshots go to.
    pub director: Director,
    /// Worker count (for the metrics page).
    workers: usize,
    /// The model generation last published.
    published: u64,
    /// The metrics page, when `--metrics` serves it.
    page: Option<Arc<Mutex<String>>>,
    /// Where the rules are kept across restarts, if anywhere.
    state: Option<StateDir>,
    /// Writes the state file off the control thread.
    writer: Option<StateWriter>,
    /// The model generation last handed to the writer.
    saved: u64,
    /// The rules file a reload reads (`--config`); without one, a reload
    /// re-reads the state file.
    reload_from: Option<PathBuf>,
    /// The connection sync daemons running.
    sync: SyncDaemons,
    /// The health checker, once started.
    checks: Option<Checks>,
}

impl ControlLoop {
    /// A control loop over `control` and `director` that has published
    /// nothing yet.
    pub fn new(control: Control, director: Director, workers: usize) -> Self {
        ControlLoop {
            control,
            sync: SyncDaemons::new(director.sync_port()),
            builder: SnapshotBuilder::with_id_file(director.id_file()),
            director,
            workers,
            published: 0,
            page: None,
            state: None,
            writer: None,
            saved: 0,
            reload_from: None,
            checks: None,
        }
    }

    /// Start the health checker; from now on the loop keeps its probes in
    /// line with the configuration and applies what it reports.
    pub fn start_checks(&mut self) -> std::io::Result<()> {
        let (tx, rx) = mpsc::channel();
        let engine = Engine::start(tx)?;
        self.checks = Some(Checks {
            engine,
            reports: rx,
            keys: HashSet::new(),
            statuses: HashMap::new(),
            generation: None,
        });
        self.sync_checks();
        Ok(())
    }

    /// Hand the checker the model's probes if the configuration changed
    /// since the last time (statuses of probes no longer needed go).
    fn sync_checks(&mut self) {
        let generation = self.control.generation();
        let Some(c) = &mut self.checks else {
            return;
        };
        if c.generation == Some(generation) {
            return;
        }
        c.generation = Some(generation);
        let targets = probe_targets(self.control.model(), self.director.neigh());
        // Without checks, before as now, there is nothing to tell anyone
        // (a configuration without checks pays one pass over it).
        if targets.is_empty() && c.keys.is_empty() {
            return;
        }
        c.keys = targets.iter().map(|t| t.key.clone()).collect();
        c.statuses.retain(|k, _| c.keys.contains(k));
        c.engine.reconcile(targets);
        // Servers a change added have no status yet (down until their
        // checks pass); the others keep theirs.
        self.apply_health(true);
    }

    /// Apply the checker's reports that arrived since the last call (all
    /// statuses again if `force`) to the model; publish if the workers
    /// must schedule differently. If the data plane refuses that, the
    /// model goes back to the statuses it had.
    fn apply_health(&mut self, force: bool) {
        let Some(c) = &mut self.checks else {
            return;
        };
        // A report of a probe stopped meanwhile is dropped.
        let fresh: Vec<Report> = c
            .reports
            .try_iter()
            .filter(|(k, _)| c.keys.contains(k))
            .collect();
        if fresh.is_empty() && !force {
            return;
        }
        let before = c.statuses.clone();
        c.statuses.extend(fresh);
        // A change of what the workers schedule moves the model's
        // generation: the snapshot goes out through the same publish as a
        // command's.
        if self.control.set_health(&c.statuses) {
            if let Err(e) = self.publish() {
                eprintln!(
                    "xvsd: cannot program the steering map after a health change: {e}; \
                     the previous statuses stay in force"
                );
                if let Some(c) = &mut self.checks {
                    c.statuses = before;
                    self.control.set_health(&c.statuses);
                    self.published = self.control.generation();
                }
            }
        }
    }

    /// After the model was put back from a copy: hand the checker its
    /// probes and the model the statuses again on the next turn.
    fn resync_checks(&mut self) {
        if let Some(c) = &mut self.checks {
            c.generation = None;
        }
    }

    /// Stop the health checker (at exit).
    pub fn stop_checks(&mut self) {
        if let Some(c) = self.checks.take() {
            c.engine.stop();
        }
    }

    /// Keep the rules in `state` (whose file already matches the current
    /// model unless `dirty`); a reload (SIGHUP) reads `reload_from`, else
    /// the state file.
    pub fn keep_state(
        &mut self,
        state: Option<StateDir>,
        dirty: bool,
        reload_from: Option<PathBuf>,
    ) {
        self.writer = state.clone().and_then(|st| match StateWriter::start(st) {
            Ok(w) => Some(w),
            Err(e) => {
                eprintln!(
                    "xvsd: ERROR: cannot start the state file writer: {e}; rules are NOT saved"
                );
                None
            }
        });
        self.state = state;
        self.saved = self.control.generation();
        if dirty {
            self.saved = self.saved.wrapping_sub(1);
        }
        self.reload_from = reload_from;
        self.save_state();
        // The rules loaded at start are on disk before the socket listens,
        // so whoever sees xvsd ready also finds them saved.
        if let Some(w) = &self.writer {
            if !w.flush(Duration::from_secs(5)) {
                eprintln!("xvsd: ERROR: the first state file write did not finish within 5 s");
            }
        }
    }

    /// Hand the rules to the state file writer if the model changed since
    /// the last hand-over and the writer has taken that one (else the next
    /// call does it: the loop calls this at least every 100 ms). A failed
    /// write is logged and counted by the writer; the running
    /// configuration is kept.
    pub fn save_state(&mut self) {
        let Some(w) = &self.writer else {
            return;
        };
        let generation = self.control.generation();
        if generation == self.saved || w.has_pending() {
            return;
        }
        w.submit(state::render(self.control.model()));
        self.saved = generation;
    }

    /// Write the last rules and stop the state file writer (at exit).
    pub fn finish_state(&mut self) {
        self.save_state();
        if let Some(w) = &self.writer {
            if !w.flush(Duration::from_secs(10)) {
                eprintln!("xvsd: ERROR: the state file writer did not finish within 10 s");
            }
            if w.errors() > 0 {
                eprintln!("xvsd: {} state file write(s) failed", w.errors());
            }
        }
        self.save_state();
        self.writer = None;
    }

    /// SIGHUP: re-read the rules file (`--config`, else the state file)
    /// and apply only what differs. A file with an error changes nothing.
    pub fn reload(&mut self) {
        let path = match (&self.reload_from, &self.state) {
            (Some(p), _) => p.clone(),
            (None, Some(st)) => st.rules_path(),
            (None, None) => {
                eprintln!("xvsd: reload: no --config and no state file: nothing to reload");
                return;
            }
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("xvsd: reload: {}: {e}; nothing changed", path.display());
                return;
            }
        };
        let before = self.control.clone();
        match self.control.reload(&text) {
            Ok(n) => eprintln!(
                "xvsd: reload: {}: {n} change(s), {} service(s)",
                path.display(),
                self.control.model().services.len()
            ),
            Err(e) => {
                eprintln!("xvsd: reload: {}: {e}; nothing changed", path.display());
                return;
            }
        }
        if self.control.generation() != self.published {
            if let Err(e) = self.publish() {
                eprintln!("xvsd: reload: cannot program the steering map: {e}; nothing changed");
                self.control = before;
                self.resync_checks();
                self.published = self.control.generation();
            }
        }
        self.save_state();
    }

    /// Build the snapshot of the current configuration and give it to the
    /// workers.
    pub fn publish(&mut self) -> std::io::Result<()> {
        let snap = self
            .builder
            .build(&self.control.model().config(), self.director.neigh());
        self.published = self.control.generation();
        self.director.publish(snap)
    }

    /// Give the sync records the workers parked (their real server is not
    /// configured here) synced-only destinations, publish if any was made,
    /// and queue the records parked before again (see [`crate::sync`]).
    fn sync_parked(&mut self) {
        self.sync.requeue_parked(Instant::now());
        let neigh = self.director.neigh().clone();
        let builder = &mut self.builder;
        let made = self.sync.take_parked(&mut |svc, addr, port, fwd| {
            builder.want_synced(svc, addr, port, fwd, &neigh)
        });
        if made {
            if let Err(e) = self.publish() {
                eprintln!("xvsd: cannot program the steering map: {e}");
            }
        }
    }

    /// The data plane, to stop it (after writing the last rules and
    /// stopping the sync daemons).
    pub fn into_director(mut self) -> Director {
        self.stop_checks();
        self.finish_state();
        self.sync.stop_all();
        self.director
    }

    /// Make the running sync daemons the model's; a daemon that cannot
    /// start is removed from the model, and the error (ipvsadm's exit
    /// status 255 and the reason) returned.
    fn sync_daemons(&mut self) -> Option<Response> {
        let failed = self.sync.reconcile(&self.control.model().sync_daemons);
        let mut resp = None;
        for (role, why) in failed {
            eprintln!("xvsd: cannot start the {} sync daemon: {why}", role.name());
            let stop = Command::StopDaemon { role, syncid: None };
            let _ = self.control.run(&stop, None, &NoRuntime);
            resp = Some(Response::fail(255, why));
        }
        resp
    }

    /// Render the metrics page into `page` now and on every refresh.
    pub fn serve_metrics(&mut self, page: Arc<Mutex<String>>) {
        *page.lock().unwrap_or_else(|e| e.into_inner()) = self.render_metrics();
        self.page = Some(page);
    }

    fn render_metrics(&self) -> String {
        let mut page = metrics::render(
            self.control.model(),
            &dataplane_stats(&self.director, self.workers),
        );
        page.push_str(&metrics::render_sync(
            self.control.model(),
            &self.sync.status(),
        ));
        page
    }

    /// Serve `jobs` until `stop` is set or every sender is gone (`Ok`), or
    /// until a worker stops on its own (`Err`, naming it: the daemon must
    /// stop too). `hup` set (SIGHUP) runs [`ControlLoop::reload`].
    pub fn run(
        &mut self,
        jobs: &Receiver<Job>,
        stop: &AtomicBool,
        hup: &AtomicBool,
    ) -> Result<(), String> {
        let mut next_tick = Instant::now() + TICK;
        let mut next_metrics = Instant::now() + METRICS_REFRESH;
        let mut next_trash = Instant::now() + TRASH_REBUILD;
        let mut batch: Vec<(Reply, bool, mpsc::Sender<Reply>)> = Vec::with_capacity(MAX_BATCH);
        while !stop.load(Ordering::Relaxed) {
            if let Some(w) = self.director.failed_worker() {
                return Err(format!("worker {w} stopped"));
            }
            if hup.swap(false, Ordering::Relaxed) {
                eprintln!("xvsd: SIGHUP: reload");
                self.reload();
            }
            // The state file's daemons at start, a reload's, a batch undone.
            self.sync_daemons();
            self.sync.serve_resync(&self.director);
            self.sync_parked();
            self.sync_checks();
            self.apply_health(false);
            let now = Instant::now();
            if now >= next_tick {
                self.control.tick(now);
                next_tick += TICK;
                if next_tick <= now {
                    next_tick = now + TICK;
                }
            }
            if self.page.is_some() && now >= next_metrics {
                let text = self.render_metrics();
                if let Some(page) = &self.page {
                    *page.lock().unwrap_or_else(|e| e.into_inner()) = text;
                }
                next_metrics = Instant::now() + METRICS_REFRESH;
            }
            if now >= next_trash {
                if self.builder.has_trash() {
                    if let Err(e) = self.publish() {
                        eprintln!("xvsd: cannot program the steering map: {e}");
                    }
                }
                next_trash = Instant::now() + TRASH_REBUILD;
            }
            let mut wake = next_tick.min(next_trash);
            if let Some(due) = self.sync.requeue_due() {
                wake = wake.min(due);
            }
            if self.page.is_some() {
                wake = wake.min(next_metrics);
            }
            // Wake at least every 100 ms to notice a stop signal.
            let wait = wake
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(100));
            let first = match jobs.recv_timeout(wait) {
                Ok(job) => job,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => {
                    eprintln!("xvsd: the control acceptor stopped");
                    return Ok(());
                }
            };
            // Execute everything queued, publish once, then answer: when
            // xvsadm returns, the workers already have the new
            // configuration. The configuration from before the batch is
            // kept (copied before its first request that may change it)
            // in case the publish fails.
            let mut before: Option<xvs_control::Control> = None;
            let mut job = Some(first);
            while let Some(j) = job.take() {
                if before.is_none() && may_change(&j.req) {
                    before = Some(self.control.clone());
                }
                let generation = self.control.generation();
                let mut resp = self
                    .control
                    .execute_reply(&j.req, &Live(&self.director, &self.sync));
                if let Some(refused) = self.sync_daemons() {
                    resp = refused.into();
                }
                let changed = self.control.generation() != generation;
                batch.push((resp, changed, j.reply));
                if batch.len() < MAX_BATCH {
                    job = jobs.try_recv().ok();
                }
            }
            if self.control.generation() != self.published {
                if let Err(e) = self.publish() {
                    eprintln!("xvsd: cannot program the steering map: {e}; batch undone");
                    if let Some(old) = before.take() {
                        self.control = old;
                        self.resync_checks();
                        self.published = self.control.generation();
                    }
                    for (resp, changed, _) in batch.iter_mut() {
                        if *changed {
                            *resp = refused_by_dataplane(&e).into();
                        }
                    }
                }
            }
            self.save_state();
            for (resp, _, reply) in batch.drain(..) {
                let _ = reply.send(resp);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xvs_config::tun::TunKind;

    #[test]
    fn probe_targets_carry_the_service_and_the_way_to_each_server() {
        let mut c = Control::new();
        c.reload(
            "-A -t 198.18.0.100:80 -s rr --check vip\n\
             -a -t 198.18.0.100:80 -r 198.18.0.11:80 -g -w 1\n\
             -a -t 198.18.0.100:80 -r 198.18.0.12:80 -i --tun-type gue --tun-port 6080 -w 1\n\
             -A -t 198.18.0.101:443 -s rr --check exec --check-cmd true\n\
             -a -t 198.18.0.101:443 -r 198.18.0.13:8080 -m -w 1\n\
             -A -t 198.18.0.102:443 -s rr --check exec --check-cmd true\n\
             -a -t 198.18.0.102:443 -r 198.18.0.13:8080 -m -w 1\n",
        )
        .unwrap();
        let neigh = NeighTable::new(Vec::new());
        let targets = probe_targets(c.model(), &neigh);
        let find = |kind: CheckKind, addr: &str| {
            targets
                .iter()
                .find(|t| t.key.spec.kind == kind && t.key.addr.to_string() == addr)
                .unwrap_or_else(|| panic!("no {kind} probe of {addr}: {targets:?}"))
        };
        assert!(matches!(
            find(CheckKind::Vip, "198.18.0.11").ctx.path,
            VipPath::Dr(_)
        ));
        assert!(matches!(
            find(CheckKind::Vip, "198.18.0.12").ctx.path,
            VipPath::Tun(TunKind::Gue { port: 6080, .. }, _)
        ));
        // Two services share the exec probe of .13:8080; it runs once, with
        // the first service as its arguments.
        let exec: Vec<&Target> = targets
            .iter()
            .filter(|t| t.key.spec.kind == CheckKind::Exec)
            .collect();
        assert_eq!(exec.len(), 1, "{exec:?}");
        assert_eq!(exec[0].key.port, 8080);
        assert_eq!(exec[0].ctx.service, Some(("198.18.0.101".to_string(), 443)));
        assert_eq!(targets.len(), 3);
    }
}
