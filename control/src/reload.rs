//! Reloading a rules file by difference.
//!
//! `xvsadm -R` after `-C` would replace every service and real server with
//! a fresh one: counters back to zero, schedulers restarted, and every
//! established connection cut from the server it was on. A reload instead
//! computes the commands that turn the running configuration into the
//! wanted one — ipvsadm's own `-A -E -D -a -e -d --set --set-mark
//! --del-mark` — and applies them through [`Model::apply`], so each goes
//! through the same checks as if typed. What did not change is not
//! touched; what changed is edited in place; a removed real server is
//! deleted the way `-d` deletes it, so its established connections drain
//! on it (the data plane keeps a deleted destination while connections
//! still count against it).
//!
//! Real servers already present keep their place in the list: reordering
//! them would mean deleting and re-adding, which is exactly what a reload
//! avoids. New ones go to the front, as `-a` puts them.

use std::fmt;

use crate::exec::restore_args;
use crate::grammar::{self, Command, DestSpec, ServiceSpec, SorrySpec};
use crate::model::{Dest, Limits, Model, Service};

/// A rules file that does not load: the 1-based line and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RulesError {
    /// Line number (1-based) of the offending rule.
    pub line: usize,
    /// ipvsadm's message for it.
    pub message: String,
}

impl fmt::Display for RulesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for RulesError {}

/// Build the configuration a rules file (ipvsadm-save format, as `-R`
/// reads it) describes, from an empty one with `limits`.
pub fn load_rules(rules: &str, limits: Limits) -> Result<Model, RulesError> {
    let mut m = Model::with_limits(limits);
    for (n, line) in rules.lines().enumerate() {
        let Some(args) = restore_args(line) else {
            continue;
        };
        let fail = |message: String| RulesError {
            line: n + 1,
            message,
        };
        let cmd = grammar::parse(&args).map_err(|e| fail(e.to_string()))?;
        // xvsd's state file also starts the sync daemons.
        if !cmd.is_change() && !matches!(cmd, Command::StartDaemon(_)) {
            return Err(fail(format!(
                "a rules file may only hold rules, not `{}'",
                args.join(" ")
            )));
        }
        m.apply(&cmd)
            .map_err(|e| fail(format!("`{}': {e}", args.join(" "))))?;
    }
    Ok(m)
}

fn service_spec(s: &Service) -> ServiceSpec {
    ServiceSpec {
        key: s.key,
        sched: s.sched.clone(),
        flags: s.flags,
        persistence: s.persistence,
        netmask: s.netmask,
        ops: s.ops,
        pe: None,
        check: s.check.clone(),
        quorum: s.quorum.weight,
        sorry: s
            .quorum
            .sorry
            .map(|a| SorrySpec::Server(a.ip(), Some(a.port()))),
        replace_checks: true,
    }
}

fn dest_spec(d: &Dest) -> DestSpec {
    DestSpec {
        addr: d.addr,
        port: Some(d.port),
        fwd: d.fwd,
        weight: d.weight,
        u_threshold: d.u_threshold,
        l_threshold: d.l_threshold,
        tun: d.tun,
        check: d.check.clone(),
        replace_checks: true,
    }
}

fn same_service(a: &Service, b: &Service) -> bool {
    service_spec(a) == service_spec(b)
}

fn same_dest(a: &Dest, b: &Dest) -> bool {
    dest_spec(a) == dest_spec(b)
}

/// The commands that turn `current` into `wanted`, touching only what
/// differs: removals first (so limits are not crossed on the way), then
/// edits and additions.
pub fn diff(current: &Model, wanted: &Model) -> Vec<Command> {
    let mut out = Vec::new();
    for (triple, _) in &current.marks {
        if !wanted.marks.iter().any(|(k, _)| k == triple) {
            out.push(Command::DelMark(*triple));
        }
    }
    for s in &current.services {
        if wanted.service(&s.key).is_none() {
            out.push(Command::DeleteService(s.key));
        }
    }
    for w in &wanted.services {
        let Some(c) = current.service(&w.key) else {
            out.push(Command::AddService(service_spec(w)));
            // Oldest first, so the list ends up newest first as wanted.
            for d in w.dests.iter().rev() {
                out.push(Command::AddServer {
                    svc: w.key,
                    dest: dest_spec(d),
                });
            }
            continue;
        };
        if !same_service(c, w) {
            out.push(Command::EditService(service_spec(w)));
        }
        for d in &c.dests {
            if w.dest(d.addr, d.port).is_none() {
                out.push(Command::DeleteServer {
                    svc: c.key,
                    addr: d.addr,
                    port: Some(d.port),
                });
            }
        }
        for d in w.dests.iter().rev() {
            match c.dest(d.addr, d.port) {
                None => out.push(Command::AddServer {
                    svc: w.key,
                    dest: dest_spec(d),
                }),
                Some(cd) if !same_dest(cd, d) => out.push(Command::EditServer {
                    svc: w.key,
                    dest: dest_spec(d),
                }),
                Some(_) => {}
            }
        }
    }
    for (triple, mark) in &wanted.marks {
        if !current.marks.contains(&(*triple, *mark)) {
            out.push(Command::SetMark {
                triple: *triple,
                mark: *mark,
            });
        }
    }
    if current.timeouts != wanted.timeouts {
        let t = wanted.timeouts;
        out.push(Command::Set {
            tcp: t.tcp,
            tcpfin: t.tcp_fin,
            udp: t.udp,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const BASE: &str = "\
-A -t 198.18.0.10:80 -s wrr
-a -t 198.18.0.10:80 -r 198.18.1.1:80 -g -w 1
-a -t 198.18.0.10:80 -r 198.18.1.2:80 -g -w 1
-A -u 198.18.0.10:53 -s rr
-a -u 198.18.0.10:53 -r 198.18.1.1:5353 -m -w 2
--set-mark 7 -t 198.18.0.11:443
";

    fn load(rules: &str) -> Model {
        load_rules(rules, Limits::default()).expect("rules load")
    }

    /// Apply `diff(current, wanted)` to `current` and check it now saves
    /// exactly as `wanted` does.
    fn reload(current: &mut Model, wanted: &Model) -> Vec<Command> {
        let cmds = diff(current, wanted);
        for c in &cmds {
            current.apply(c).expect("diff applies");
        }
        assert_eq!(crate::listing::save(current), crate::listing::save(wanted));
        assert_eq!(current.timeouts, wanted.timeouts);
        assert!(diff(current, wanted).is_empty(), "a second diff is empty");
        cmds
    }

    #[test]
    fn identical_rules_give_no_commands() {
        let cur = load(BASE);
        assert!(diff(&cur, &load(BASE)).is_empty());
    }

    #[test]
    fn a_removed_server_is_deleted_and_the_others_keep_their_counters() {
        let mut cur = load(BASE);
        let kept = cur.services[0]
            .dest("198.18.1.1".parse().unwrap(), 80)
            .unwrap()
            .counters
            .clone();
        let svc_counters = cur.services[0].counters.clone();
        let gen = cur.generation;
        let wanted = load(&BASE.replace("-a -t 198.18.0.10:80 -r 198.18.1.2:80 -g -w 1\n", ""));
        let cmds = reload(&mut cur, &wanted);
        assert_eq!(cmds.len(), 1);
        assert!(matches!(
            &cmds[0],
            Command::DeleteServer { addr, port: Some(80), .. } if addr.to_string() == "198.18.1.2"
        ));
        assert!(cur.generation > gen);
        let d = cur.services[0]
            .dest("198.18.1.1".parse().unwrap(), 80)
            .unwrap();
        assert!(Arc::ptr_eq(&d.counters, &kept));
        assert!(Arc::ptr_eq(&cur.services[0].counters, &svc_counters));
    }

    #[test]
    fn changed_servers_and_services_are_edited_in_place() {
        let mut cur = load(BASE);
        let load_before = cur.services[1].dests[0].load.clone();
        let wanted = load(
            &BASE
                .replace("-s rr", "-s wlc -p 60")
                .replace("5353 -m -w 2", "5353 -m -w 5 -x 100 -y 10"),
        );
        let cmds = reload(&mut cur, &wanted);
        assert_eq!(cmds.len(), 2);
        assert!(matches!(cmds[0], Command::EditService(_)));
        assert!(matches!(cmds[1], Command::EditServer { .. }));
        assert!(Arc::ptr_eq(&cur.services[1].dests[0].load, &load_before));
        assert_eq!(cur.services[1].persistence, Some(60));
    }

    #[test]
    fn services_marks_and_timeouts_come_and_go() {
        let mut cur = load(BASE);
        let wanted = load(
            "\
-A -t 198.18.0.10:80 -s wrr
-a -t 198.18.0.10:80 -r 198.18.1.3:80 -g -w 1
-a -t 198.18.0.10:80 -r 198.18.1.2:80 -g -w 1
-a -t 198.18.0.10:80 -r 198.18.1.1:80 -g -w 1
-A -f 7 -s sh
-a -f 7 -r 198.18.1.9 -i
--set-mark 8 -t 198.18.0.11:443
--set-mark 7 -u 198.18.0.11:443
--set 600 60 120
",
        );
        let cmds = reload(&mut cur, &wanted);
        assert!(cmds.contains(&Command::DeleteService(cur_key("-u 198.18.0.10:53"))));
        // The new server goes to the front, ahead of the two kept ones.
        assert_eq!(cur.services[0].dests[0].addr.to_string(), "198.18.1.3");
        assert_eq!(cur.timeouts.tcp, 600);
    }

    #[test]
    fn a_new_service_gets_its_servers_in_the_wanted_order() {
        let mut cur = Model::default();
        let wanted = load(BASE);
        reload(&mut cur, &wanted);
        let order = |m: &Model| {
            m.services[0]
                .dests
                .iter()
                .map(|d| d.addr)
                .collect::<Vec<_>>()
        };
        assert_eq!(order(&cur), order(&wanted));
    }

    #[test]
    fn everything_removed_leaves_an_empty_configuration() {
        let mut cur = load(BASE);
        reload(&mut cur, &Model::default());
        assert!(cur.services.is_empty() && cur.marks.is_empty());
    }

    #[test]
    fn a_bad_rule_is_reported_with_its_line() {
        let e = load_rules(
            "# rules\n-A -t 198.18.0.10:80\n-a -t 198.18.0.10:80 -r 198.18.1.1 -w x\n",
            Limits::default(),
        )
        .unwrap_err();
        assert_eq!(e.line, 3);
        let e = load_rules("-a -t 198.18.0.10:80 -r 198.18.1.1\n", Limits::default()).unwrap_err();
        assert_eq!(e.line, 1);
        assert!(e.message.contains("Service not defined"), "{e}");
        let e = load_rules("-L -n\n", Limits::default()).unwrap_err();
        assert!(e.message.contains("only hold rules"), "{e}");
    }

    const CHECKED: &str = "\
-A -t 198.18.0.10:80 -s rr --check http --check-path /health --check-expect 200-299,301 --quorum 2 --sorry-server 198.18.2.1:80
-a -t 198.18.0.10:80 -r 198.18.1.1:80 -g -w 3 --check-fall 2
-a -t 198.18.0.10:80 -r 198.18.1.2:80 -g -w 1 --check exec --check-cmd '/usr/local/bin/probe --say \"it'\\''s up\"' --check-on-fail remove
-a -t 198.18.0.10:80 -r 198.18.1.3:80 -g -w 1 --check tcp --check-send 'GET /\\r\\n' --check-regex '^HTTP/1\\.[01] \\d+'
-A -f 7 -s wlc --check ping --check-interval 1
-a -f 7 -r 198.18.1.1 -g -w 1
";

    fn up_everywhere(m: &mut Model) {
        use xvs_config::check::{Health, HealthStatus};
        let all = m
            .probes()
            .into_iter()
            .map(|(k, _)| {
                let st = HealthStatus {
                    state: Health::Up,
                    since: 1,
                    ..HealthStatus::default()
                };
                (k, st)
            })
            .collect();
        m.set_health(&all);
    }

    #[test]
    fn check_options_survive_save_and_restore() {
        let m = load(CHECKED);
        let s = &m.services[0];
        let exec = s.dest("198.18.1.2".parse().unwrap(), 80).unwrap();
        assert_eq!(
            exec.check.cmd.as_deref(),
            Some("/usr/local/bin/probe --say \"it's up\"")
        );
        let tcp = s.dest("198.18.1.3".parse().unwrap(), 80).unwrap();
        assert_eq!(tcp.check.send.as_deref(), Some("GET /\\r\\n"));
        assert_eq!(tcp.check.regex.as_deref(), Some("^HTTP/1\\.[01] \\d+"));
        assert_eq!(s.quorum.weight, Some(2));
        // What -S writes (and the daemon's state file holds) loads back
        // to the same configuration, configured weights included.
        let saved = crate::listing::save(&m);
        assert!(
            saved.contains("--check-cmd '/usr/local/bin/probe --say \"it'\\''s up\"'"),
            "{saved}"
        );
        assert!(
            saved.contains("-r 198.18.1.1:80 -g -w 3 --check-fall 2\n"),
            "{saved}"
        );
        let back = load(&saved);
        assert_eq!(crate::listing::save(&back), saved);
        assert!(diff(&m, &back).is_empty());
        // -R takes it too, and so does a reload through Control.
        let mut c = crate::Control::new();
        let r = c.run(&Command::Restore, Some(&saved), &crate::NoRuntime);
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_eq!(crate::listing::save(c.model()), saved);
        let mut c = crate::Control::new();
        c.reload(&saved).unwrap();
        assert_eq!(crate::listing::save(c.model()), saved);
    }

    #[test]
    fn a_saved_model_under_failed_checks_keeps_configured_weights() {
        let mut m = load(CHECKED);
        // Nothing reported: every checked server is down (weight 0 or
        // removed), yet -S writes the configured weights.
        assert!(m.config().services[0]
            .dests
            .iter()
            .all(|d| d.weight == 0 || d.addr.to_string() == "198.18.2.1"));
        assert!(crate::listing::save(&m).contains("-r 198.18.1.1:80 -g -w 3"));
        up_everywhere(&mut m);
        assert_eq!(m.config().services[0].dests.len(), 3);
    }

    #[test]
    fn a_reload_keeps_the_state_of_unchanged_checks() {
        let mut cur = load(CHECKED);
        up_everywhere(&mut cur);
        let before = cur.config();
        let w = |m: &Model, addr: &str| {
            m.config().services[0]
                .dests
                .iter()
                .find(|d| d.addr.to_string() == addr)
                .map(|d| d.weight)
        };
        // The same file: nothing to do, nothing changes.
        assert!(diff(&cur, &load(CHECKED)).is_empty());
        // One server's check changes: it alone starts over (down), the
        // others keep their state, and a check option removed from the
        // file is removed from the server.
        let wanted = load(&CHECKED.replace(" --check-fall 2", ""));
        let cmds = reload(&mut cur, &wanted);
        assert_eq!(cmds.len(), 1, "{cmds:?}");
        let d = cur.services[0]
            .dest("198.18.1.1".parse().unwrap(), 80)
            .unwrap();
        assert_eq!(d.check.fall, None);
        assert_eq!(w(&cur, "198.18.1.1"), Some(0));
        assert_eq!(w(&cur, "198.18.1.3"), Some(1));
        assert_eq!(
            cur.config().services[1].dests[0].weight,
            before.services[1].dests[0].weight
        );
        // The service's defaults and quorum are replaced as a whole too.
        let wanted = load(&CHECKED.replace(" --quorum 2 --sorry-server 198.18.2.1:80", ""));
        reload(&mut cur, &wanted);
        assert!(cur.services[0].sorry.is_none() && cur.services[0].quorum.weight.is_none());
        assert_eq!(w(&cur, "198.18.1.3"), Some(1), "kept through the -E");
    }

    fn cur_key(s: &str) -> xvs_config::svc::SvcKey {
        let line = format!("-D {s}");
        let args: Vec<&str> = line.split_whitespace().collect();
        match grammar::parse(&args).unwrap() {
            Command::DeleteService(k) => k,
            other => panic!("{other:?}"),
        }
    }
}
