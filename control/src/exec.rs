//! One xvsadm invocation, end to end: parse, apply, format.
//!
//! [`Control`] is what the daemon's control thread owns. It answers a
//! [`Request`] with the [`Response`] xvsadm prints, with ipvsadm's exit
//! statuses: 0 success, 1 listing something missing, 2 command-line error
//! (message and hint), 255 refused. A restore (`-R`) is applied to a copy
//! of the configuration that replaces the real one only when every line
//! succeeded, so a bad line leaves nothing half-applied; the copy is
//! staged ([`Model::stage`]), so even the counters and overload flags it
//! shares with the workers change only when it is kept.

use std::time::Instant;

use crate::announce::Announcer;
use crate::grammar::{self, Command, ParseError, HINT};
use crate::json;
use crate::listing;
use crate::model::{ConfigError, Limits, Model};
use crate::proto::{Reply, Request, Response, CHUNK};
use crate::rate::Estimator;
use crate::reload::{self, RulesError};
use crate::syncd;

pub use crate::listing::{ConnEntry, NoRuntime, Runtime};

/// Default size of the connection hash table shown in `-L`'s header.
pub const DEFAULT_CONN_TAB_SIZE: u32 = 4096;

/// The control plane's state: configuration and rate estimators.
#[derive(Debug, Clone)]
pub struct Control {
    model: Model,
    est: Estimator,
    conn_tab_size: u32,
    /// What the router is told (see [`crate::announce`]).
    announce: Announcer,
    /// The model generation the announced set was computed from.
    announced_gen: u64,
}

impl Default for Control {
    fn default() -> Self {
        Control::new()
    }
}

fn parse_error(e: &ParseError) -> Response {
    Response {
        code: 2,
        stdout: String::new(),
        stderr: format!("{e}\n{HINT}\n"),
    }
}

fn refused(e: &ConfigError) -> Response {
    Response::fail(255, e)
}

/// The lines of `-L -c`, about [`CHUNK`] bytes at a time.
struct ConnLines {
    conns: Box<dyn Iterator<Item = crate::ConnEntry> + Send>,
    templates_only: bool,
}

impl Iterator for ConnLines {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        let mut out = String::new();
        for c in self.conns.by_ref() {
            if c.template || !self.templates_only {
                listing::push_conn(&mut out, &c);
                if out.len() >= CHUNK - 256 {
                    break;
                }
            }
        }
        (!out.is_empty()).then_some(out)
    }
}

/// Split one `-R` line into arguments; `None` for blank and comment lines.
/// A leading `ipvsadm` (or `xvsadm`, or a path ending in either) is dropped.
///
/// Words are split on blanks, as ipvsadm's own restore does; a value with
/// blanks (a `--check-cmd`, say) is quoted as a shell would quote it:
/// `'...'` literally, `"..."` with `\"` and `\\` escapes, and `\` before
/// a quote, a blank or a backslash outside quotes. Any other backslash
/// stays, so `--check-send GET\r\n` reads as written.
pub(crate) fn restore_args(line: &str) -> Option<Vec<String>> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let mut words: Vec<String> = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                words.extend(word.take());
            }
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    w.push(c);
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' if matches!(chars.peek(), Some('"' | '\\')) => {
                            w.extend(chars.next());
                        }
                        c => w.push(c),
                    }
                }
            }
            '\\' if chars
                .peek()
                .is_some_and(|n| n.is_whitespace() || matches!(n, '\'' | '"' | '\\')) =>
            {
                word.get_or_insert_with(String::new).extend(chars.next());
            }
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    if words
        .first()
        .is_some_and(|w| w.ends_with("ipvsadm") || w.ends_with("xvsadm"))
    {
        words.remove(0);
    }
    (!words.is_empty()).then_some(words)
}

impl Control {
    /// An empty configuration with default limits and a 4096-bucket
    /// connection table in the header.
    pub fn new() -> Self {
        Control::with_config(Limits::default(), DEFAULT_CONN_TAB_SIZE)
    }

    /// An empty configuration with the given table limits and the
    /// connection-table size to show as `size=N`.
    pub fn with_config(limits: Limits, conn_tab_size: u32) -> Self {
        Control {
            model: Model::with_limits(limits),
            est: Estimator::new(),
            conn_tab_size,
            announce: Announcer::new(),
            announced_gen: 0,
        }
    }

    /// The announcer: its feeds, and its set (see [`crate::announce`]).
    pub fn announcer(&self) -> &Announcer {
        &self.announce
    }

    /// The data plane is attached and forwarding (or no longer is): the
    /// VIPs that can be served are announced (or all withdrawn).
    pub fn set_serving(&mut self, on: bool) {
        self.announce.set_serving(on, &self.model);
        self.announced_gen = self.model.generation;
    }

    /// Recompute what is announced now: call it after anything that
    /// changes whether a service can serve without going through
    /// [`Control::execute`] (a health check's quorum). The feeds hear of
    /// it only if the set changed.
    pub fn refresh_announce(&mut self) {
        self.announce.update(&self.model);
        self.announced_gen = self.model.generation;
    }

    /// [`Control::refresh_announce`] if the configuration changed since.
    fn refresh_if_changed(&mut self) {
        if self.announced_gen != self.model.generation {
            self.refresh_announce();
        }
    }

    /// Open connections on any TCP segment, not only a SYN (`xvsd
    /// --sloppy-tcp`, IPVS's `sloppy_tcp`).
    pub fn set_sloppy_tcp(&mut self, on: bool) {
        self.model.sloppy_tcp = on;
    }

    /// The configuration (the daemon builds its snapshot from it).
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Record the health checker's results ([`Model::set_health`]):
    /// returns whether the data plane must change, in which case the
    /// generation has moved on.
    pub fn set_health(
        &mut self,
        statuses: &std::collections::HashMap<
            xvs_config::check::ProbeKey,
            xvs_config::check::HealthStatus,
        >,
    ) -> bool {
        let changed = self.model.set_health(statuses);
        self.refresh_if_changed();
        changed
    }

    /// Incremented on every successful configuration change.
    pub fn generation(&self) -> u64 {
        self.model.generation
    }

    /// Update the rate estimates; the daemon calls this every 2 s.
    pub fn tick(&mut self, now: Instant) {
        if let Some(sample) = self.est.tick(now) {
            self.model.sample_rates(sample);
        }
    }

    /// Run one xvsadm invocation.
    pub fn execute(&mut self, req: &Request, rt: &dyn Runtime) -> Response {
        let resp = match grammar::parse(&req.args) {
            Ok(cmd) => self.run(&cmd, req.stdin.as_deref(), rt),
            Err(e) => parse_error(&e),
        };
        self.refresh_if_changed();
        resp
    }

    /// Run one xvsadm invocation for the socket: like
    /// [`Control::execute`], but a connection listing (`-L -c`) comes
    /// back as a [`Reply`] whose lines are formatted from the runtime's
    /// connections as the client takes them, never all at once.
    pub fn execute_reply(&mut self, req: &Request, rt: &dyn Runtime) -> Reply {
        match grammar::parse(&req.args) {
            Ok(Command::List { opts, .. }) if opts.connection && !opts.json && !opts.dataplane => {
                Reply {
                    resp: Response::ok(listing::conns_header()),
                    rest: Some(Box::new(ConnLines {
                        conns: rt.connections_iter(),
                        templates_only: opts.persistent_conn,
                    })),
                }
            }
            // The feed streams for as long as the client listens.
            Ok(Command::BgpFeed) => Reply {
                resp: Response::ok(""),
                rest: Some(Box::new(self.announce.feed())),
            },
            _ => self.execute(req, rt).into(),
        }
    }

    /// Run one parsed command (`stdin` feeds `-R`).
    pub fn run(&mut self, cmd: &Command, stdin: Option<&str>, rt: &dyn Runtime) -> Response {
        match cmd {
            Command::Help => Response::ok(grammar::usage()),
            Command::Version => Response::ok(grammar::version()),
            Command::List { svc, opts } if opts.json => {
                if opts.connection {
                    Response::ok(json::list_conns(&rt.connections(), opts.persistent_conn))
                } else if opts.timeout {
                    Response::ok(json::list_timeout(&self.model.timeouts))
                } else if opts.daemon {
                    Response::ok(syncd::list_daemon_json(&self.model, &rt.sync_status()))
                } else if let Some(key) = svc {
                    match json::list_service(&self.model, key, opts, self.conn_tab_size) {
                        Ok(out) => Response::ok(out),
                        Err(e) => Response::fail(1, e),
                    }
                } else {
                    Response::ok(json::list_all(&self.model, opts, self.conn_tab_size))
                }
            }
            Command::List { opts, .. } if opts.dataplane => Response::ok(rt.dataplane()),
            Command::List { opts, .. } if opts.announce => {
                Response::ok(self.announce.listing(&self.model))
            }
            Command::Maintenance(on) => {
                self.announce.set_maintenance(*on, &self.model);
                Response::ok("")
            }
            Command::BgpFeed => Response::fail(
                255,
                "--bgp-feed: a feed is streamed over the control socket only",
            ),
            Command::List { svc, opts } if opts.check => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                match svc {
                    Some(key) => match listing::list_checks(&self.model, key, opts.nosort, now) {
                        Ok(out) => Response::ok(out),
                        Err(e) => Response::fail(1, e),
                    },
                    None => Response::ok(listing::list_checks_all(
                        &self.model,
                        opts.nosort,
                        self.conn_tab_size,
                        now,
                    )),
                }
            }
            Command::List { svc, opts } => {
                if opts.connection {
                    Response::ok(listing::list_conns(&rt.connections(), opts.persistent_conn))
                } else if opts.timeout {
                    Response::ok(listing::list_timeout(&self.model.timeouts))
                } else if opts.daemon {
                    Response::ok(syncd::list_daemon(
                        &self.model,
                        &rt.sync_status(),
                        opts.stats,
                    ))
                } else if let Some(key) = svc {
                    match listing::list_service(&self.model, key, opts) {
                        Ok(out) => Response::ok(out),
                        Err(e) => Response::fail(1, e),
                    }
                } else {
                    Response::ok(listing::list_all(&self.model, opts, self.conn_tab_size))
                }
            }
            Command::Save { .. } => Response::ok(listing::save(&self.model)),
            Command::Restore => self.restore(stdin.unwrap_or("")),
            other => match self.model.apply(other) {
                Ok(()) => Response::ok(""),
                Err(e) => refused(&e),
            },
        }
    }

    /// Reload: make the configuration the one `rules` (ipvsadm-save
    /// format) describes by applying only the difference (see
    /// [`crate::reload`]). A file with an error changes nothing. Returns
    /// the number of commands applied. Sync daemons the file starts
    /// (xvsd's state file does) are started if their role is not running;
    /// none is stopped, since an ipvsadm-save file never names them.
    pub fn reload(&mut self, rules: &str) -> Result<usize, RulesError> {
        let wanted = reload::load_rules(rules, self.model.limits)?;
        let cmds = reload::diff(&self.model, &wanted);
        let mut copy = self.model.clone();
        copy.stage();
        for cmd in &cmds {
            // The wanted model passed the same checks, so this cannot fail
            // unless the two disagree; then nothing changes.
            copy.apply(cmd).map_err(|e| RulesError {
                line: 0,
                message: format!("cannot apply {cmd:?}: {e}"),
            })?;
        }
        let mut n = cmds.len();
        for d in &wanted.sync_daemons {
            if copy.sync_daemon(d.role).is_none() {
                copy.apply(&Command::StartDaemon(d.clone()))
                    .map_err(|e| RulesError {
                        line: 0,
                        message: format!("cannot start the {} sync daemon: {e}", d.role.name()),
                    })?;
                n += 1;
            }
        }
        copy.commit();
        self.model = copy;
        self.refresh_if_changed();
        Ok(n)
    }

    /// `-R`: apply every rule line to a copy; swap it in only if all
    /// succeeded. The first bad line stops the restore: exit 2 for a
    /// command-line error, 255 for a refused rule.
    fn restore(&mut self, rules: &str) -> Response {
        let mut copy = self.model.clone();
        copy.stage();
        for line in rules.lines() {
            let Some(args) = restore_args(line) else {
                continue;
            };
            let cmd = match grammar::parse(&args) {
                Ok(cmd) => cmd,
                Err(e) => return parse_error(&e),
            };
            if !(cmd.is_change()
                || matches!(
                    cmd,
                    Command::Zero(_) | Command::StartDaemon { .. } | Command::StopDaemon { .. }
                ))
            {
                return parse_error(&ParseError(format!(
                    "a restore may only hold rules, not `{}'",
                    args.join(" ")
                )));
            }
            if let Err(e) = copy.apply(&cmd) {
                return refused(&e);
            }
        }
        copy.commit();
        self.model = copy;
        Response::ok("")
    }
}
