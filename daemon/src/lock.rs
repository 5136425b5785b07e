//! One daemon per interface. Two daemons on one interface fight over its
//! XDP program and AF_XDP sockets and the loser, on its way out, would
//! take the winner's traffic down with it; so each interface is claimed
//! with an exclusive `flock` on `/run/xvs/<iface>.lock` before anything is
//! touched. The kernel drops the lock when its holder dies however it
//! dies, so a stale file never blocks a restart; the holder's pid is
//! written in the file only to name it in the refusal.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The directory of the lock files.
pub const LOCK_DIR: &str = "/run/xvs";

/// An interface held by this process, until dropped.
#[derive(Debug)]
pub struct IfaceLock {
    path: PathBuf,
    _file: File,
}

/// The lock file of interface `iface` in `dir`.
fn lock_path_in(dir: &Path, iface: &str) -> PathBuf {
    dir.join(format!("{iface}.lock"))
}

impl IfaceLock {
    /// Claim `iface`; refused, naming the holder's pid, while another
    /// live process holds it.
    pub fn acquire(iface: &str) -> Result<Self, String> {
        Self::acquire_in(Path::new(LOCK_DIR), iface)
    }

    fn acquire_in(dir: &Path, iface: &str) -> Result<Self, String> {
        let path = lock_path_in(dir, iface);
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        // The file may be removed (by its holder's clean exit) between our
        // open and our lock: then the lock is on an orphan; open again.
        for _ in 0..10 {
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            match file.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => {
                    let mut pid = String::new();
                    let _ = file.read_to_string(&mut pid);
                    let pid = pid.trim();
                    return Err(format!(
                        "interface {iface} is served by another xvsd (pid {}, lock {})",
                        if pid.is_empty() { "unknown" } else { pid },
                        path.display()
                    ));
                }
                Err(TryLockError::Error(e)) => {
                    return Err(format!("{}: {e}", path.display()));
                }
            }
            let same = match (file.metadata(), std::fs::metadata(&path)) {
                (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
                _ => false,
            };
            if !same {
                continue;
            }
            let write = file
                .set_len(0)
                .and_then(|()| file.rewind())
                .and_then(|()| writeln!(file, "{}", std::process::id()));
            write.map_err(|e| format!("{}: {e}", path.display()))?;
            return Ok(IfaceLock { path, _file: file });
        }
        Err(format!("{}: keeps being replaced", path.display()))
    }

    /// Remove the lock file, then let the lock go (a clean exit).
    pub fn release(self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_interface_is_refused_naming_the_holder_until_released() {
        let dir = std::env::temp_dir().join(format!("xvs-lock-test-{}", std::process::id()));
        let a = IfaceLock::acquire_in(&dir, "eth7").unwrap();
        let pid = std::fs::read_to_string(lock_path_in(&dir, "eth7")).unwrap();
        assert_eq!(pid.trim(), std::process::id().to_string());
        let e = IfaceLock::acquire_in(&dir, "eth7").unwrap_err();
        assert!(e.contains("eth7"), "{e}");
        assert!(e.contains(&format!("pid {}", std::process::id())), "{e}");
        // Another interface is another lock.
        let b = IfaceLock::acquire_in(&dir, "eth8").unwrap();
        a.release();
        assert!(!lock_path_in(&dir, "eth7").exists());
        let a = IfaceLock::acquire_in(&dir, "eth7").unwrap();
        drop(a);
        // Dropped without release (a crash): the file stays, the lock goes.
        assert!(lock_path_in(&dir, "eth7").exists());
        IfaceLock::acquire_in(&dir, "eth7").unwrap().release();
        b.release();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
