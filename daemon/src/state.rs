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

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

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
/// followed by the timeouts as a `--set` line, which `-R` accepts.
pub fn render(model: &Model) -> String {
    let t = model.timeouts;
    format!(
        "# xvsd rules, rewritten on every change; xvsadm -R reads it.\n{}--set {} {} {}\n",
        listing::save(model),
        t.tcp,
        t.tcp_fin,
        t.udp
    )
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
