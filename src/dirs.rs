//! The folders a run writes into: created with errors that say what is wrong with them (a
//! file in the way, not writable), and the state dir locked so that two runs never share it.
//!
//! The lock is an OS advisory lock (`flock`) on `<state_dir>/lock`, held by an open file: it
//! goes away with the process however the process ends (even SIGKILL), so it is never stale.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Creates `dir` and its parents. `what` names it in errors ("state dir", "output folder").
pub fn create(dir: &Path, what: &str) -> Result<()> {
    match std::fs::create_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) => Err(explain(dir, what, e)),
    }
}

/// An error about `dir` (or a file in it) in words: a file where a folder should be, a folder
/// that cannot be written. `Error::Io` on `dir`, its cause said with `what`.
pub fn explain(dir: &Path, what: &str, e: std::io::Error) -> Error {
    // The nearest existing ancestor that is not a folder is what is in the way.
    let cause = if let Some(file) = dir.ancestors().find(|a| a.exists()).filter(|a| !a.is_dir()) {
        if file == dir {
            format!("{what} is a file, not a folder")
        } else {
            format!(
                "{what} cannot be made: {} is a file, not a folder",
                file.display()
            )
        }
    } else {
        match e.kind() {
            std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem => {
                format!("{what} is not writable ({e}); choose another one or fix its permissions")
            }
            _ => format!("{what}: {e}"),
        }
    };
    Error::io(dir, std::io::Error::new(e.kind(), cause))
}

/// The exclusive lock on a state dir, held until dropped.
#[derive(Debug)]
pub struct StateDirLock {
    _file: File,
    path: PathBuf,
}

impl StateDirLock {
    /// Creates the state dir if needed and locks it, or says which process holds it.
    pub fn acquire(dir: &Path) -> Result<StateDirLock> {
        create(dir, "state dir")?;
        let path = dir.join("lock");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| explain(dir, "state dir", e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                let holder = if holder.is_empty() {
                    "another gleap-etl process".to_string()
                } else {
                    holder.to_string()
                };
                return Err(Error::State {
                    path: dir.to_path_buf(),
                    message: format!("in use by {holder}; wait for it or stop it"),
                });
            }
            Err(TryLockError::Error(e)) => return Err(Error::io(&path, e)),
        }
        let since = crate::record::format_timestamp(&chrono::Utc::now());
        let who = format!("gleap-etl (pid {}) since {since}\n", std::process::id());
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(who.as_bytes()))
            .map_err(|e| Error::io(&path, e))?;
        Ok(StateDirLock { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Locks a file (or a dataset folder) this process is about to write, so that a second run
/// writing the same output refuses at once instead of mixing its records in. The lock lasts
/// as long as `file` is open.
pub fn lock_output(file: &File, path: &Path) -> Result<()> {
    match file.try_lock() {
        Ok(()) => Ok(()),
        Err(TryLockError::WouldBlock) => Err(Error::output(
            path,
            "another gleap-etl run is writing this output; wait for it or stop it",
        )),
        Err(TryLockError::Error(e)) => Err(Error::io(path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_names_the_holder_and_a_dropped_one_is_free() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let first = StateDirLock::acquire(&state).unwrap();
        let err = StateDirLock::acquire(&state).unwrap_err().to_string();
        assert!(
            err.contains(&format!("pid {}", std::process::id())) && err.contains("wait for it"),
            "{err}"
        );
        drop(first);
        StateDirLock::acquire(&state).unwrap();
    }

    #[test]
    fn a_file_in_the_way_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "x").unwrap();
        let err = create(&file.join("sub"), "state dir")
            .unwrap_err()
            .to_string();
        assert!(err.contains("is a file, not a folder"), "{err}");
        assert!(!err.contains("os error"), "{err}");
    }
}
