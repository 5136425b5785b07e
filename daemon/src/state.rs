//! The rules that survive the process: a state file in ipvsadm-save
//! format under the state directory.
//!
//! A restarted daemon (after a crash, an upgrade, a reboot) must come back
//! with the rules it had, not with whatever `--config` said when it was
//! first installed, since xvsadm may have changed them since. So every
//! change is written here, and a start loads this file first. The write is
//! atomic (a temporary file in the same directory, fsync, rename, fsync of
//! the directory): a crash in the middle leaves the old rules or the new
//! ones, never half a file.
//!
//! The writes (two fsyncs each) happen on a thread of their own,
//! [`StateWriter`], so that xvsadm's answers never wait for the disk: the
//! control thread hands over the rendered rules and carries on, and when
//! changes come faster than the disk takes them only the newest text is
//! written.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use xvs_control::listing;
use xvs_control::model::Model;
use xvs_control::Control;

/// Default state directory (`--state-dir`).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/xvs";
/// Name of the rules file inside the state directory.
pub const RULES_FILE: &str = "rules";

/// The state directory and its rules file.
#[derive(Debug, Clone)]
pub struct StateDir {
    dir: PathBuf,
}

/// The rules text of `model`: `xvsadm -S -n` (firewall marks included)
/// followed by the timeouts as a `--set` line and the running sync
/// daemons as `--start-daemon` lines (which `-S` leaves out, as ipvsadm),
/// all of which `-R` accepts.
pub fn render(model: &Model) -> String {
    let t = model.timeouts;
    let mut s = format!(
        "# xvsd rules, rewritten on every change; xvsadm -R reads it.\n{}--set {} {} {}\n",
        listing::save(model),
        t.tcp,
        t.tcp_fin,
        t.udp
    );
    for d in &model.sync_daemons {
        s.push_str(&xvs_control::syncd::start_line(d));
        s.push('\n');
    }
    s
}

/// Whether a model holds no rules (timeouts alone do not count): such a
/// state lets `--config` seed it.
pub fn is_empty(model: &Model) -> bool {
    model.services.is_empty() && model.marks.is_empty()
}

impl StateDir {
    /// The state directory `dir`, created (mode 0700) if missing.
    pub fn open(dir: &Path) -> io::Result<Self> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        Ok(StateDir {
            dir: dir.to_path_buf(),
        })
    }

    /// The rules file.
    pub fn rules_path(&self) -> PathBuf {
        self.dir.join(RULES_FILE)
    }

    /// The saved rules; `None` when there is no state file yet.
    pub fn read(&self) -> io::Result<Option<String>> {
        match fs::read_to_string(self.rules_path()) {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Replace the rules file with `text`, atomically and durably.
    pub fn write(&self, text: &str) -> io::Result<()> {
        let tmp = self.dir.join(format!(".{RULES_FILE}.tmp"));
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, self.rules_path())?;
        File::open(&self.dir)?.sync_all()
    }
}

/// What the control thread and the writer share.
#[derive(Debug, Default)]
struct Slot {
    /// Rules to write next (newest wins).
    text: Option<String>,
    /// A write is under way.
    busy: bool,
    /// Write what is pending, then end.
    stop: bool,
}

/// The thread that writes the state file.
#[derive(Debug)]
pub struct StateWriter {
    shared: Arc<(Mutex<Slot>, Condvar)>,
    errors: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

fn lock(m: &Mutex<Slot>) -> std::sync::MutexGuard<'_, Slot> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl StateWriter {
    /// Start the writer of `dir`'s rules file.
    pub fn start(dir: StateDir) -> io::Result<Self> {
        let shared = Arc::new((Mutex::new(Slot::default()), Condvar::new()));
        let errors = Arc::new(AtomicU64::new(0));
        let thread = {
            let shared = shared.clone();
            let errors = errors.clone();
            std::thread::Builder::new()
                .name("xvs-state".into())
                .spawn(move || write_loop(&dir, &shared, &errors))?
        };
        Ok(StateWriter {
            shared,
            errors,
            thread: Some(thread),
        })
    }

    /// Whether a text handed over is still waiting to be written (a new
    /// one would replace it).
    pub fn has_pending(&self) -> bool {
        lock(&self.shared.0).text.is_some()
    }

    /// Hand over the rules to write (replacing any not written yet).
    pub fn submit(&self, text: String) {
        lock(&self.shared.0).text = Some(text);
        self.shared.1.notify_one();
    }

    /// Wait (at most `timeout`) until everything handed over is written.
    pub fn flush(&self, timeout: std::time::Duration) -> bool {
        let (m, cv) = &*self.shared;
        let slot = lock(m);
        let (slot, _) = cv
            .wait_timeout_while(slot, timeout, |s| s.text.is_some() || s.busy)
            .unwrap_or_else(|e| e.into_inner());
        slot.text.is_none() && !slot.busy
    }

    /// State file writes that failed so far.
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }
}

impl Drop for StateWriter {
    /// Write what is pending, then stop the thread.
    fn drop(&mut self) {
        lock(&self.shared.0).stop = true;
        self.shared.1.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn write_loop(dir: &StateDir, shared: &(Mutex<Slot>, Condvar), errors: &AtomicU64) {
    let (m, cv) = shared;
    let mut slot = lock(m);
    loop {
        if let Some(text) = slot.text.take() {
            slot.busy = true;
            drop(slot);
            if let Err(e) = dir.write(&text) {
                let n = errors.fetch_add(1, Ordering::Relaxed) + 1;
                eprintln!(
                    "xvsd: ERROR: cannot write the state file {}: {e} ({n} failed write(s)); \
                     the rules in force are NOT saved and a restart would lose them",
                    dir.rules_path().display()
                );
            }
            slot = lock(m);
            slot.busy = false;
            cv.notify_all();
            continue;
        }
        if slot.stop {
            return;
        }
        slot = cv.wait(slot).unwrap_or_else(|e| e.into_inner());
    }
}

/// Where the rules at start came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Loaded {
    /// The state file.
    State(PathBuf),
    /// `--config`, seeding an empty state.
    Config(PathBuf),
    /// Nothing: no rules.
    Nothing,
}

/// Load the rules at start into `control`: the state file when it holds
/// rules, otherwise `config` when given. An unreadable or bad file is an
/// error (starting empty would then overwrite the saved rules).
pub fn load_at_start(
    control: &mut Control,
    state: Option<&StateDir>,
    config: Option<&Path>,
) -> Result<Loaded, String> {
    if let Some(st) = state {
        let path = st.rules_path();
        let text = st.read().map_err(|e| format!("{}: {e}", path.display()))?;
        if let Some(text) = text {
            control
                .reload(&text)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            if !is_empty(control.model()) {
                return Ok(Loaded::State(path));
            }
        }
    }
    if let Some(path) = config {
        let text = fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        control
            .reload(&text)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        return Ok(Loaded::Config(path.to_path_buf()));
    }
    Ok(Loaded::Nothing)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("xvsd-state-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    const RULES: &str = "\
-A -t 198.18.0.10:80 -s rr
-a -t 198.18.0.10:80 -r 198.18.1.1:80 -g -w 3
--set-mark 5 -u 198.18.0.10:53
--set 600 60 100
";

    #[test]
    fn written_rules_load_back_the_same_model() {
        let dir = tempdir("roundtrip");
        let st = StateDir::open(&dir.join("sub")).unwrap();
        assert_eq!(st.read().unwrap(), None);
        let mut a = Control::new();
        a.reload(RULES).unwrap();
        st.write(&render(a.model())).unwrap();
        // No temporary file is left behind.
        assert_eq!(fs::read_dir(dir.join("sub")).unwrap().count(), 1);
        let mut b = Control::new();
        assert_eq!(
            load_at_start(&mut b, Some(&st), None),
            Ok(Loaded::State(st.rules_path()))
        );
        assert_eq!(render(b.model()), render(a.model()));
        assert_eq!(b.model().timeouts.udp, 100);
        assert_eq!(b.model().marks.len(), 1);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_sync_daemons_come_back_from_the_state_file() {
        let dir = tempdir("daemons");
        let st = StateDir::open(&dir).unwrap();
        let mut a = Control::new();
        a.reload(RULES).unwrap();
        for line in [
            "--start-daemon master --mcast-interface sync0 --syncid 9 --mcast-ttl 3",
            "--start-daemon backup --mcast-interface sync1 --mcast-group 239.0.0.9",
        ] {
            let args: Vec<&str> = line.split_whitespace().collect();
            let cmd = xvs_control::grammar::parse(&args).unwrap();
            let r = a.run(&cmd, None, &xvs_control::NoRuntime);
            assert_eq!(r.code, 0, "{line}: {}", r.stderr);
        }
        let text = render(a.model());
        assert!(text.contains("--start-daemon master"), "{text}");
        // -S leaves them out, as ipvsadm.
        assert!(!xvs_control::listing::save(a.model()).contains("daemon"));
        st.write(&text).unwrap();
        let mut b = Control::new();
        load_at_start(&mut b, Some(&st), None).unwrap();
        assert_eq!(b.model().sync_daemons, a.model().sync_daemons);
        assert_eq!(b.model().sync_daemons.len(), 2);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_writer_writes_the_newest_text_and_everything_before_it_stops() {
        let dir = tempdir("writer");
        let st = StateDir::open(&dir).unwrap();
        let w = StateWriter::start(st.clone()).unwrap();
        for i in 0..50 {
            w.submit(format!("--set {} 2 3\n", i + 1));
        }
        assert!(w.flush(std::time::Duration::from_secs(10)));
        assert!(!w.has_pending());
        assert_eq!(st.read().unwrap().unwrap(), "--set 50 2 3\n");
        w.submit("--set 7 7 7\n".into());
        drop(w);
        assert_eq!(st.read().unwrap().unwrap(), "--set 7 7 7\n");
        assert_eq!(errors_after_the_directory_is_removed(&dir), 1);
    }

    /// A writer whose directory is gone counts the failure and keeps going.
    fn errors_after_the_directory_is_removed(dir: &Path) -> u64 {
        let st = StateDir::open(dir).unwrap();
        let w = StateWriter::start(st).unwrap();
        fs::remove_dir_all(dir).unwrap();
        w.submit("--set 1 1 1\n".into());
        assert!(w.flush(std::time::Duration::from_secs(10)));
        w.errors()
    }

    #[test]
    fn the_state_file_wins_over_config_unless_it_is_empty() {
        let dir = tempdir("precedence");
        let st = StateDir::open(&dir).unwrap();
        let config = dir.join("config");
        fs::write(&config, "-A -u 198.18.0.20:53 -s sh\n").unwrap();

        // No state file: the config seeds it.
        let mut c = Control::new();
        let got = load_at_start(&mut c, Some(&st), Some(&config)).unwrap();
        assert_eq!(got, Loaded::Config(config.clone()));
        assert_eq!(c.model().services.len(), 1);

        // An empty state (timeouts only): the config seeds it too.
        st.write(&render(&Model::default())).unwrap();
        let mut c = Control::new();
        let got = load_at_start(&mut c, Some(&st), Some(&config)).unwrap();
        assert_eq!(got, Loaded::Config(config.clone()));

        // A state with rules wins.
        st.write(RULES).unwrap();
        let mut c = Control::new();
        let got = load_at_start(&mut c, Some(&st), Some(&config)).unwrap();
        assert_eq!(got, Loaded::State(st.rules_path()));
        assert_eq!(c.model().services[0].sched, "rr");

        // A broken state file is an error naming the file and line.
        st.write("-A -t 198.18.0.10:80\n-a -t 198.18.0.99:80 -r 198.18.1.1\n")
            .unwrap();
        let e = load_at_start(&mut Control::new(), Some(&st), Some(&config)).unwrap_err();
        assert!(
            e.contains("rules: line 2") && e.contains("Service not defined"),
            "{e}"
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
