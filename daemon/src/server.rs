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

/// Create the control socket: mode 0600, or 0660 owned by `group`. A
/// socket a live daemon listens on is left alone (see [`claim_socket`]).
pub fn bind_socket(socket: &Path, group: Option<&Group>) -> Result<UnixListener, String> {
    let fail = |e: &dyn std::fmt::Display| format!("{}: {e}", socket.display());
    if let Some(dir) = socket.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
    }
    claim_socket(socket)?;
    // No permissions for group and others from the start; widened below
    // only for --group.
    let listener = {
        let old = xvs_dataplane::io::set_umask(0o177);
        let l = UnixListener::bind(socket);
        xvs_dataplane::io::set_umask(old);
        l.map_err(|e| fail(&e))?
    };
    let mode = match group {
        Some(g) => {
            std::os::unix::fs::chown(socket, None, Some(g.gid))
                .map_err(|e| fail(&format_args!("cannot give it to group {}: {e}", g.gid)))?;
            0o660
        }
        None => 0o600,
    };
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(mode))
        .map_err(|e| fail(&e))?;
    Ok(listener)
}
