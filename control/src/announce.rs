//! Which VIPs this director asks its router to send it, and the feed that
//! tells the BGP speaker.
//!
//! Behind an ECMP router every director that announces a VIP gets a share
//! of its flows, so a director must announce a VIP only while it can serve
//! it, and must stop at once when it cannot: the data plane is attached,
//! every service on the VIP has a server it may schedule (weight above 0),
//! and the operator has not put the director in maintenance
//! (`xvsadm --maintenance on`, which drains it: the router stops sending
//! new flows, established ones keep being forwarded for as long as they
//! still arrive). The decision is one function of the model,
//! [`Model::announceable`], so that health checks' quorum plugs in at one
//! place ([`can_serve`]).
//!
//! The speaker (ExaBGP) runs `xvsadm --bgp-feed` as its process. The feed
//! holds a connection to xvsd's control socket and is sent the whole set
//! whenever it changes, and at least every [`HEARTBEAT`]; it prints
//! ExaBGP's text API lines for the difference. The announcement is bound
//! to the daemon's liveness through that connection: when it closes (xvsd
//! stopped or was killed) or stays silent for [`FEED_TIMEOUT`] (xvsd hung),
//! the feed withdraws everything at once, then reconnects with backoff.

use std::collections::BTreeSet;
use std::io::{self, Write};
use std::net::IpAddr;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use xvs_config::svc::SvcKey;

use crate::model::{Model, Service};
use crate::proto::{self, Request};

/// The daemon repeats the set at least this often, so a silent daemon is
/// a hung one.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// The feed withdraws everything after this long without a word from the
/// daemon.
pub const FEED_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest wait between two attempts to reach the daemon.
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// First wait after a failed attempt.
const MIN_BACKOFF: Duration = Duration::from_millis(50);
/// First word of each line of the feed.
const SET_WORD: &str = "announce";

/// Whether `svc` can take new flows on its own real servers: the
/// effective weights of its up servers (health checks applied) reach its
/// quorum (`--quorum`, default 1). A service running on its sorry server
/// has lost quorum, so its director withdraws the VIP and leaves the flows
/// to directors that still have servers.
pub fn can_serve(model: &Model, svc: &Service) -> bool {
    let st = model.service_state(svc);
    st.up_weight > 0 && st.up_weight >= i64::from(svc.quorum.weight())
}

/// The VIP of each service: an address service's own, a firewall-mark
/// service's through the marks set on it.
fn vips_of<'m>(model: &'m Model, svc: &'m Service) -> impl Iterator<Item = IpAddr> + 'm {
    let own = match svc.key {
        SvcKey::Addr { vip, .. } => Some(vip),
        SvcKey::Fwmark { .. } => None,
    };
    let marked = model
        .marks
        .iter()
        .filter_map(move |(triple, mark)| match (svc.key, triple) {
            (SvcKey::Fwmark { mark: m, .. }, SvcKey::Addr { vip, .. }) if m == *mark => Some(*vip),
            _ => None,
        });
    own.into_iter().chain(marked)
}

impl Model {
    /// The VIPs this configuration may have announced, sorted: those on
    /// which every service [`can_serve`]. (Whether the daemon serves at
    /// all and maintenance are [`Announcer`]'s.)
    pub fn announceable(&self) -> Vec<IpAddr> {
        let mut all = BTreeSet::new();
        let mut dead = BTreeSet::new();
        for svc in &self.services {
            let ok = can_serve(self, svc);
            for vip in vips_of(self, svc) {
                all.insert(vip);
                if !ok {
                    dead.insert(vip);
                }
            }
        }
        all.difference(&dead).copied().collect()
    }
}

/// The set the feeds read, with a version that moves on every change.
#[derive(Debug, Default)]
struct Board {
    vips: Vec<IpAddr>,
    version: u64,
    closed: bool,
}

#[derive(Debug, Default)]
struct Shared {
    board: Mutex<Board>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Board> {
        self.board.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The daemon's side: what is announced now, and the feeds that follow
/// it. Clones share the set (the control thread keeps a copy of the
/// control state while a batch runs).
#[derive(Debug, Clone, Default)]
pub struct Announcer {
    shared: Arc<Shared>,
    /// The data plane is attached and its workers run.
    serving: bool,
    /// `--maintenance on`.
    maintenance: bool,
}

impl Announcer {
    /// Nothing announced: not serving yet.
    pub fn new() -> Self {
        Announcer::default()
    }

    /// Whether the data plane serves (set by the daemon once attached).
    pub fn serving(&self) -> bool {
        self.serving
    }

    /// Whether the director is in maintenance.
    pub fn maintenance(&self) -> bool {
        self.maintenance
    }

    /// The data plane is attached (or no longer is).
    pub fn set_serving(&mut self, on: bool, model: &Model) {
        self.serving = on;
        self.update(model);
    }

    /// Enter or leave maintenance.
    pub fn set_maintenance(&mut self, on: bool, model: &Model) {
        self.maintenance = on;
        self.update(model);
    }

    /// What should be announced now for `model`.
    pub fn wanted(&self, model: &Model) -> Vec<IpAddr> {
        if self.serving && !self.maintenance {
            model.announceable()
        } else {
            Vec::new()
        }
    }

    /// Recompute the set; the feeds hear of it only if it changed.
    pub fn update(&self, model: &Model) {
        let vips = self.wanted(model);
        let mut b = self.shared.lock();
        if b.vips != vips && !b.closed {
            b.vips = vips;
            b.version += 1;
            self.shared.changed.notify_all();
        }
    }

    /// The set announced now.
    pub fn announced(&self) -> Vec<IpAddr> {
        self.shared.lock().vips.clone()
    }

    /// The daemon stops: every feed is told so (and withdraws), and no
    /// set is published any more.
    pub fn close(&self) {
        let mut b = self.shared.lock();
        b.closed = true;
        b.vips.clear();
        self.shared.changed.notify_all();
    }

    /// A feed: the set now, then on every change and every [`HEARTBEAT`],
    /// as lines for [`parse_set`]; it ends when the announcer is closed.
    pub fn feed(&self) -> Feed {
        Feed {
            shared: self.shared.clone(),
            seen: None,
        }
    }

    /// `-L --announce`: the state, then each VIP of the configuration and
    /// whether it is announced, or why not.
    pub fn listing(&self, model: &Model) -> String {
        let mut out = format!(
            "Announce: data plane {}, maintenance {}\n",
            if self.serving {
                "serving"
            } else {
                "not attached"
            },
            if self.maintenance { "on" } else { "off" }
        );
        out.push_str("VIP                                      State\n");
        let announced: BTreeSet<IpAddr> = self.announced().into_iter().collect();
        let mut why: Vec<(IpAddr, Option<String>)> = Vec::new();
        for svc in &model.services {
            for vip in vips_of(model, svc) {
                let pos = match why.iter().position(|(v, _)| *v == vip) {
                    Some(p) => p,
                    None => {
                        why.push((vip, None));
                        why.len() - 1
                    }
                };
                if !can_serve(model, svc) && why[pos].1.is_none() {
                    let up = model.service_state(svc).up_weight;
                    why[pos].1 = Some(if up == 0 {
                        format!(
                            "no schedulable real server in {}",
                            crate::listing::svc_rule(&svc.key)
                        )
                    } else {
                        format!(
                            "no quorum in {} (up weight {up} < quorum {})",
                            crate::listing::svc_rule(&svc.key),
                            svc.quorum.weight()
                        )
                    });
                }
            }
        }
        why.sort_by_key(|(v, _)| *v);
        for (vip, reason) in why {
            let state = if announced.contains(&vip) {
                "announced".to_string()
            } else if let Some(r) = reason {
                format!("withdrawn: {r}")
            } else if !self.serving {
                "withdrawn: data plane not attached".to_string()
            } else if self.maintenance {
                "withdrawn: maintenance".to_string()
            } else {
                "withdrawn".to_string()
            };
            out.push_str(&format!("{:<40} {state}\n", crate::listing::ip_text(vip)));
        }
        out
    }
}

/// What a feed connection streams: a line per set, see [`Announcer::feed`].
pub struct Feed {
    shared: Arc<Shared>,
    seen: Option<u64>,
}

impl Iterator for Feed {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        let deadline = Instant::now() + HEARTBEAT;
        let mut b = self.shared.lock();
        loop {
            if b.closed {
                return None;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if self.seen != Some(b.version) || left.is_zero() {
                self.seen = Some(b.version);
                return Some(render_set(&b.vips));
            }
            b = self
                .shared
                .changed
                .wait_timeout(b, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// One line of the feed: the whole set.
pub fn render_set(vips: &[IpAddr]) -> String {
    let mut line = SET_WORD.to_string();
    for v in vips {
        line.push(' ');
        line.push_str(&v.to_string());
    }
    line.push('\n');
    line
}

/// The set of one feed line (the last whole line of `text`); `None` if
/// it is not one.
pub fn parse_set(text: &str) -> Option<Vec<IpAddr>> {
    let line = text.lines().rfind(|l| !l.trim().is_empty())?;
    let mut words = line.split_whitespace();
    if words.next()? != SET_WORD {
        return None;
    }
    let mut vips: Vec<IpAddr> = words.map(|w| w.parse().ok()).collect::<Option<_>>()?;
    vips.sort();
    vips.dedup();
    Some(vips)
}

/// The route of `vip` for ExaBGP: a host route.
fn route(vip: IpAddr) -> String {
    match vip {
        IpAddr::V4(a) => format!("{a}/32"),
        IpAddr::V6(a) => format!("{a}/128"),
    }
}

/// ExaBGP text API lines that take the announced set from `old` to `new`:
/// withdrawals first, then announcements.
pub fn exabgp_lines(old: &[IpAddr], new: &[IpAddr]) -> String {
    let mut out = String::new();
    for v in old.iter().filter(|v| !new.contains(v)) {
        out.push_str(&format!("withdraw route {} next-hop self\n", route(*v)));
    }
    for v in new.iter().filter(|v| !old.contains(v)) {
        out.push_str(&format!("announce route {} next-hop self\n", route(*v)));
    }
    out
}

/// Follow the daemon at `socket` for ever, writing ExaBGP lines to `out`:
/// the set on every change; everything withdrawn when the connection ends
/// or falls silent, then a new connection after a wait that doubles from
/// 50 ms up to 1 s. Returns only when `out` fails (the speaker is gone).
/// `log` gets one line per connection event.
pub fn run_feed(socket: &Path, out: &mut dyn Write, log: &mut dyn Write) -> io::Error {
    let mut announced: Vec<IpAddr> = Vec::new();
    let mut backoff = MIN_BACKOFF;
    // The daemon is known to be out of reach (and that was said).
    let mut down = false;
    loop {
        let outcome = follow(socket, &mut announced, out);
        match &outcome {
            Ok(true) => {
                backoff = MIN_BACKOFF;
                down = false;
                let _ = writeln!(log, "xvsadm: bgp-feed: xvsd ended the feed: all withdrawn");
            }
            Ok(false) | Err(Lost::Out(_)) => {}
            Err(Lost::Daemon(e, talked)) => {
                if *talked {
                    backoff = MIN_BACKOFF;
                    down = false;
                }
                // Said once, not on every retry.
                if !down {
                    let _ = writeln!(
                        log,
                        "xvsadm: bgp-feed: xvsd at {}: {e}: all withdrawn",
                        socket.display()
                    );
                    down = true;
                }
            }
        }
        if let Err(Lost::Out(e)) = outcome {
            return e;
        }
        let lines = exabgp_lines(&announced, &[]);
        announced.clear();
        if let Err(e) = out.write_all(lines.as_bytes()).and_then(|_| out.flush()) {
            return e;
        }
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Why a feed connection ended badly.
enum Lost {
    /// Writing to the speaker failed.
    Out(io::Error),
    /// The daemon could not be reached, closed the connection or fell
    /// silent; whether it had sent anything.
    Daemon(String, bool),
}

/// One connection: `Ok(true)` when the daemon ended the feed, `Ok(false)`
/// when it refused it.
fn follow(socket: &Path, announced: &mut Vec<IpAddr>, out: &mut dyn Write) -> Result<bool, Lost> {
    let daemon = |e: &dyn std::fmt::Display, talked| Lost::Daemon(e.to_string(), talked);
    let mut stream = UnixStream::connect(socket).map_err(|e| daemon(&e, false))?;
    let req = Request {
        args: vec!["--bgp-feed".into()],
        stdin: None,
    };
    proto::write_frame(&mut stream, &req).map_err(|e| daemon(&e, false))?;
    stream
        .set_read_timeout(Some(FEED_TIMEOUT))
        .map_err(|e| daemon(&e, false))?;
    let mut talked = false;
    loop {
        let (more, part) = proto::read_part(&mut stream).map_err(|e| match e {
            proto::FrameError::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                daemon(&"the connection closed", talked)
            }
            proto::FrameError::Io(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                daemon(&format_args!("silent for {FEED_TIMEOUT:?}"), talked)
            }
            e => daemon(&e, talked),
        })?;
        if !more {
            if part.code != 0 {
                return Err(daemon(&part.stderr.trim_end(), talked));
            }
            return Ok(talked);
        }
        talked = true;
        let Some(set) = parse_set(&part.stdout) else {
            return Err(daemon(&"not a feed line", talked));
        };
        let lines = exabgp_lines(announced, &set);
        *announced = set;
        if !lines.is_empty() {
            out.write_all(lines.as_bytes())
                .and_then(|_| out.flush())
                .map_err(Lost::Out)?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::Control;
    use crate::listing::NoRuntime;

    fn run(c: &mut Control, line: &str) {
        let req = Request {
            args: line.split_whitespace().map(String::from).collect(),
            stdin: None,
        };
        let r = c.execute(&req, &NoRuntime);
        assert_eq!(r.code, 0, "{line}: {}", r.stderr);
    }

    fn ips(v: &[&str]) -> Vec<IpAddr> {
        v.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn a_vip_is_announceable_while_every_service_on_it_has_a_server_of_weight() {
        let mut c = Control::new();
        run(&mut c, "-A -t 198.18.0.10:80 -s mh");
        run(&mut c, "-A -t 198.18.0.11:80");
        // No server yet: nothing.
        assert!(c.model().announceable().is_empty());
        run(&mut c, "-a -t 198.18.0.10:80 -r 198.18.1.1 -w 0");
        assert!(c.model().announceable().is_empty());
        run(&mut c, "-a -t 198.18.0.10:80 -r 198.18.1.2");
        run(&mut c, "-a -t 198.18.0.11:80 -r 198.18.1.2");
        assert_eq!(
            c.model().announceable(),
            ips(&["198.18.0.10", "198.18.0.11"])
        );
        // A second service on .10 without servers holds the VIP back.
        run(&mut c, "-A -u 198.18.0.10:53");
        assert_eq!(c.model().announceable(), ips(&["198.18.0.11"]));
        run(&mut c, "-a -u 198.18.0.10:53 -r 198.18.1.2");
        assert_eq!(c.model().announceable().len(), 2);
        // Weight 0 everywhere on a service withdraws its VIP only.
        run(&mut c, "-e -t 198.18.0.10:80 -r 198.18.1.2 -w 0");
        assert_eq!(c.model().announceable(), ips(&["198.18.0.11"]));
        // A firewall-mark service's VIPs come from its marks.
        run(&mut c, "-A -f 7");
        run(&mut c, "-a -f 7 -r 198.18.1.3");
        run(&mut c, "--set-mark 7 -t 198.18.0.12:443");
        assert_eq!(
            c.model().announceable(),
            ips(&["198.18.0.11", "198.18.0.12"])
        );
    }

    #[test]
    fn a_service_below_its_quorum_withholds_its_vip() {
        let mut c = Control::new();
        run(&mut c, "-A -t 198.18.0.10:80 -s mh --quorum 3");
        run(&mut c, "-a -t 198.18.0.10:80 -r 198.18.1.1 -w 2");
        // Up weight 2 < quorum 3.
        assert!(c.model().announceable().is_empty());
        let why = c.announcer().listing(c.model());
        assert!(
            why.contains("no quorum in -t 198.18.0.10:80 (up weight 2 < quorum 3)"),
            "{why}"
        );
        run(&mut c, "-a -t 198.18.0.10:80 -r 198.18.1.2 -w 1");
        assert_eq!(c.model().announceable(), ips(&["198.18.0.10"]));
        // A checked server without a result yet is down: its weight does
        // not count, and the sorry server does not make up for it.
        run(
            &mut c,
            "-a -t 198.18.0.10:80 -r 198.18.1.3 -w 5 --check tcp --check-port 80",
        );
        run(
            &mut c,
            "-E -t 198.18.0.10:80 --quorum 4 --sorry-server 198.18.1.9:80",
        );
        assert!(c.model().announceable().is_empty());
    }

    #[test]
    fn maintenance_and_serving_gate_the_set_and_feeds_hear_of_changes() {
        let mut c = Control::new();
        run(&mut c, "-A -t 198.18.0.10:80");
        run(&mut c, "-a -t 198.18.0.10:80 -r 198.18.1.2");
        let mut feed = c.announcer().feed();
        // Not serving yet: an empty set.
        assert_eq!(feed.next().as_deref(), Some("announce\n"));
        c.set_serving(true);
        assert_eq!(feed.next().as_deref(), Some("announce 198.18.0.10\n"));
        run(&mut c, "--maintenance on");
        assert_eq!(feed.next().as_deref(), Some("announce\n"));
        let list = c.execute(
            &Request {
                args: vec!["-L".into(), "--announce".into()],
                stdin: None,
            },
            &NoRuntime,
        );
        assert!(list.stdout.contains("maintenance on"), "{}", list.stdout);
        assert!(
            list.stdout.contains("withdrawn: maintenance"),
            "{}",
            list.stdout
        );
        run(&mut c, "--maintenance off");
        assert_eq!(feed.next().as_deref(), Some("announce 198.18.0.10\n"));
        // Nothing changed: the set again after a heartbeat.
        let t = Instant::now();
        assert_eq!(feed.next().as_deref(), Some("announce 198.18.0.10\n"));
        assert!(t.elapsed() >= HEARTBEAT - Duration::from_millis(50));
        // Closing ends every feed, at once.
        let a = c.announcer().clone();
        let waiter = std::thread::spawn(move || feed.next());
        std::thread::sleep(Duration::from_millis(100));
        a.close();
        assert_eq!(waiter.join().unwrap(), None);
    }

    #[test]
    fn feed_lines_parse_and_become_exabgp_commands() {
        let set = ips(&["198.18.0.11", "198.18.0.10"]);
        assert_eq!(
            parse_set(&render_set(&set)),
            Some(ips(&["198.18.0.10", "198.18.0.11"]))
        );
        assert_eq!(parse_set("announce\n"), Some(vec![]));
        assert_eq!(parse_set("announce 198.18.0.300\n"), None);
        assert_eq!(parse_set("nonsense\n"), None);
        let old = ips(&["198.18.0.10", "198.18.0.11"]);
        let new = ips(&["198.18.0.11", "198.18.0.12"]);
        assert_eq!(
            exabgp_lines(&old, &new),
            "withdraw route 198.18.0.10/32 next-hop self\n\
             announce route 198.18.0.12/32 next-hop self\n"
        );
        assert_eq!(exabgp_lines(&new, &new), "");
    }

    /// Records what the feed writes; fails once it withdrew, to end it.
    struct Out(Arc<Mutex<String>>);
    impl Write for Out {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            let mut s = self.0.lock().unwrap();
            s.push_str(std::str::from_utf8(b).unwrap());
            if s.contains("withdraw") {
                return Err(io::Error::other("enough"));
            }
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_feed_withdraws_everything_when_the_daemon_goes_away() {
        let dir = std::env::temp_dir().join(format!("xvs-feed-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let mut c = Control::new();
        run(&mut c, "-A -t 198.18.0.10:80");
        run(&mut c, "-a -t 198.18.0.10:80 -r 198.18.1.2");
        c.set_serving(true);
        let a = c.announcer().clone();
        // A daemon that sends the set once, ends the feed and goes away.
        let server = std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            let _req: Request = proto::read_frame(&mut &s).unwrap();
            let reply = proto::Reply {
                resp: crate::Response::ok(""),
                rest: Some(Box::new(a.feed().take(1))),
            };
            proto::write_reply_to(&mut &s, reply).unwrap();
        });
        let text = Arc::new(Mutex::new(String::new()));
        let mut out = Out(text.clone());
        let feed = std::thread::spawn(move || {
            let mut log = Vec::new();
            run_feed(&path, &mut out, &mut log);
            String::from_utf8(log).unwrap()
        });
        server.join().unwrap();
        let log = feed.join().unwrap();
        let text = text.lock().unwrap().clone();
        assert!(
            text.starts_with(
                "announce route 198.18.0.10/32 next-hop self\n\
                 withdraw route 198.18.0.10/32 next-hop self\n"
            ),
            "{text}"
        );
        assert!(log.contains("all withdrawn"), "{log}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_feed_withdraws_everything_when_the_daemon_falls_silent() {
        let dir = std::env::temp_dir().join(format!("xvs-feed-hang-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        // A daemon that sends one set, then hangs with the connection open.
        let server = std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            let _req: Request = proto::read_frame(&mut &s).unwrap();
            let hang = std::iter::from_fn(|| {
                std::thread::sleep(FEED_TIMEOUT + Duration::from_millis(500));
                None
            });
            let reply = proto::Reply {
                resp: crate::Response::ok(""),
                rest: Some(Box::new(
                    std::iter::once("announce 198.18.0.10\n".to_string()).chain(hang),
                )),
            };
            // The feed is gone by the time the reply ends.
            let _ = proto::write_reply_to(&mut &s, reply);
        });
        let text = Arc::new(Mutex::new(String::new()));
        let mut out = Out(text.clone());
        let start = Instant::now();
        let mut log = Vec::new();
        run_feed(&path, &mut out, &mut log);
        let waited = start.elapsed();
        assert!(waited >= FEED_TIMEOUT, "{waited:?}");
        assert_eq!(
            text.lock().unwrap().as_str(),
            "announce route 198.18.0.10/32 next-hop self\n\
             withdraw route 198.18.0.10/32 next-hop self\n"
        );
        let log = String::from_utf8(log).unwrap();
        assert!(log.contains("silent for 3s: all withdrawn"), "{log}");
        server.join().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
