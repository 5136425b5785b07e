//! The control socket: an acceptor that checks each peer's credentials and
//! hands each connection to a thread of its own that reads the request,
//! so that a slow or silent client never holds up the control thread,
//! which only ever sees whole requests ([`Job`]s) on a channel, nor other
//! clients: a fixed pool of readers would be held by as many silent
//! clients for a whole request deadline each.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use xvs_control::access::{self, Group};
use xvs_control::proto::{self, Reply, Request, Response};

/// Connections served at once, each by its own thread for at most
/// [`proto::REQUEST_DEADLINE`] + [`proto::WRITE_TIMEOUT`] plus the time its
/// command runs; further ones wait in the socket's listen backlog.
const MAX_CLIENTS: usize = 256;
/// Stack of a connection's thread (it parses a request and waits).
const CLIENT_STACK: usize = 256 << 10;

/// Counts the connections being served, to bound them.
#[derive(Default)]
struct Slots {
    busy: Mutex<usize>,
    freed: Condvar,
}

impl Slots {
    /// Wait for a free slot and take it.
    fn take(&self) {
        let mut busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        while *busy >= MAX_CLIENTS {
            busy = self.freed.wait(busy).unwrap_or_else(|e| e.into_inner());
        }
        *busy += 1;
    }

    /// Give a slot back.
    fn give(&self) {
        *self.busy.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        self.freed.notify_one();
    }
}

/// One request on its way to the control thread, with where to answer.
pub struct Job {
    /// The request.
    pub req: Request,
    /// Where the reader waits for the response (a listing's lines are
    /// produced by the reader as it writes them).
    pub reply: mpsc::Sender<Reply>,
}

/// Accept connections until `stop`; serve each on a thread of its own
/// (at most [`MAX_CLIENTS`] at once) with whether its peer may use the
/// daemon.
pub fn accept_loop(
    listener: UnixListener,
    jobs: SyncSender<Job>,
    stop: Arc<AtomicBool>,
    group: Option<Group>,
) {
    let slots = Arc::new(Slots::default());
    for conn in listener.incoming() {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let stream = match conn {
            Ok(s) => s,
            Err(e) => {
                eprintln!("xvsd: accept: {e}");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let allowed = xvs_dataplane::io::peer_uid(&stream)
            .map(|uid| access::allowed(uid, group.as_ref()))
            .unwrap_or(false);
        slots.take();
        let (jobs, done) = (jobs.clone(), slots.clone());
        let spawned = std::thread::Builder::new()
            .name("xvs-ctl-client".into())
            .stack_size(CLIENT_STACK)
            .spawn(move || {
                serve(stream, allowed, &jobs);
                done.give();
            });
        if let Err(e) = spawned {
            // The connection is closed unanswered; the next may fare better.
            eprintln!("xvsd: cannot start a thread for a control client: {e}");
            slots.give();
        }
    }
}

/// Read the connection's one request, have the control thread execute it
/// (or refuse it for a peer that may not use the daemon) and answer.
fn serve(stream: UnixStream, allowed: bool, jobs: &SyncSender<Job>) {
    // Peers that may not use the daemon get a small ceiling: their
    // request is read only to be answered with a refusal.
    let max = if allowed {
        proto::MAX_FRAME
    } else {
        proto::MAX_UNPRIVILEGED_FRAME
    };
    let req = match proto::read_request(&stream, max) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("xvsd: control request: {e}");
            return;
        }
    };
    let reply = if allowed {
        let (tx, rx) = mpsc::channel();
        if jobs.send(Job { req, reply: tx }).is_err() {
            return;
        }
        match rx.recv() {
            Ok(r) => r,
            Err(_) => return,
        }
    } else {
        Response::fail(
            255,
            "xvsd: permission denied (only root, or the --group given to xvsd, may use it)",
        )
        .into()
    };
    if let Err(e) = proto::write_reply(&stream, reply) {
        eprintln!("xvsd: control response: {e}");
    }
}

/// Check that no live daemon answers on `socket`: a leftover file whose
/// daemon is gone (nobody listens: `ECONNREFUSED`) is removed; one that
/// answers is refused, never unlinked.
pub fn claim_socket(socket: &Path) -> Result<(), String> {
    match UnixStream::connect(socket) {
        Ok(_) => Err(format!(
            "{}: another xvsd is listening on this control socket (use another --socket)",
            socket.display()
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            std::fs::remove_file(socket).map_err(|e| format!("{}: {e}", socket.display()))
        }
        Err(e) => Err(format!("{}: {e}", socket.display())),
    }
}

/// Longest path a Unix socket can be bound to (`sun_path` less its NUL).
const SUN_PATH_MAX: usize = 107;

/// Create the control socket: mode 0600, or 0660 owned by `group`. A
/// socket a live daemon listens on is left alone (see [`claim_socket`]).
///
/// The socket is bound under a staging name beside `socket`, given its
/// group and mode there, and only then renamed into place, so whoever
/// waits for `socket` to appear (a health checker run as the group, an
/// init script) never finds it with the wrong owner or mode. A staging
/// name that would not fit `sun_path` falls back to binding in place.
pub fn bind_socket(socket: &Path, group: Option<&Group>) -> Result<UnixListener, String> {
    let fail = |e: &dyn std::fmt::Display| format!("{}: {e}", socket.display());
    if let Some(dir) = socket.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
    }
    claim_socket(socket)?;
    let staged = staging_path(socket);
    let at = staged.as_deref().unwrap_or(socket);
    if staged.is_some() {
        // A crashed daemon of the same pid may have left it.
        let _ = std::fs::remove_file(at);
    }
    let fail_at = |e: &dyn std::fmt::Display| {
        let _ = std::fs::remove_file(at);
        fail(e)
    };
    // No permissions for group and others from the start; widened below
    // only for --group.
    let listener = {
        let old = xvs_dataplane::io::set_umask(0o177);
        let l = UnixListener::bind(at);
        xvs_dataplane::io::set_umask(old);
        l.map_err(|e| fail(&e))?
    };
    let mode = match group {
        Some(g) => {
            std::os::unix::fs::chown(at, None, Some(g.gid))
                .map_err(|e| fail_at(&format_args!("cannot give it to group {}: {e}", g.gid)))?;
            0o660
        }
        None => 0o600,
    };
    std::fs::set_permissions(at, std::fs::Permissions::from_mode(mode)).map_err(|e| fail_at(&e))?;
    if staged.is_some() {
        std::fs::rename(at, socket).map_err(|e| fail_at(&e))?;
    }
    Ok(listener)
}

/// `DIR/.xvsd-PID.sock` beside `socket`, if it fits a socket address.
fn staging_path(socket: &Path) -> Option<std::path::PathBuf> {
    let name = format!(".xvsd-{}.sock", std::process::id());
    let staged = match socket.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join(name),
        _ => std::path::PathBuf::from(name),
    };
    (staged.as_os_str().len() <= SUN_PATH_MAX).then_some(staged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    /// The socket never shows up with less than its final owner and mode:
    /// a watcher spinning on the path sees it first as it will stay.
    #[test]
    fn socket_appears_with_its_final_group_and_mode() {
        let dir = std::env::temp_dir().join(format!("xvs-bind-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let group = Group {
            gid: 4242,
            name: None,
        };
        for round in 0..50 {
            let socket = dir.join(format!("s{round}.sock"));
            let seen = {
                let socket = socket.clone();
                std::thread::spawn(move || {
                    let until = std::time::Instant::now() + Duration::from_secs(10);
                    loop {
                        if let Ok(m) = std::fs::symlink_metadata(&socket) {
                            return Some((m.mode() & 0o777, m.gid()));
                        }
                        if std::time::Instant::now() > until {
                            return None;
                        }
                        std::hint::spin_loop();
                    }
                })
            };
            let listener = bind_socket(&socket, Some(&group)).expect("bind");
            assert_eq!(seen.join().unwrap(), Some((0o660, 4242)), "round {round}");
            drop(listener);
            std::fs::remove_file(&socket).unwrap();
        }
        // Nothing staged is left behind.
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        std::fs::remove_dir(&dir).unwrap();
    }

    #[test]
    fn a_staging_name_too_long_for_sun_path_binds_in_place() {
        let long = std::env::temp_dir().join("d".repeat(96));
        assert!(staging_path(&long.join("s")).is_none());
        let short = Path::new("/run/xvs/xvsd.sock");
        let staged = staging_path(short).unwrap();
        assert_eq!(staged.parent(), short.parent());
    }
}
