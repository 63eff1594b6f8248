//! The vault: every file a migration had, under its content's SHA-256
//! (`<state_dir>/files/<sha256>`), kept after the run, so that a re-run after the old
//! helpdesk account is closed still has every file. A file is written to `files/tmp/`,
//! synced, and renamed into place: a killed run leaves at most a temporary file, never a
//! half-written content under a hash.

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

pub struct Vault {
    dir: PathBuf,
}

/// A file being written into the vault.
pub struct Incoming {
    file: std::fs::File,
    path: PathBuf,
    hasher: Sha256,
    size: u64,
}

impl Vault {
    pub fn open(dir: &Path) -> std::io::Result<Vault> {
        std::fs::create_dir_all(dir.join("tmp"))?;
        // What killed runs left half-written.
        if let Ok(entries) = std::fs::read_dir(dir.join("tmp")) {
            for entry in entries.flatten() {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(Vault {
            dir: dir.to_path_buf(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path_of(&self, sha256: &str) -> PathBuf {
        self.dir.join(sha256)
    }

    /// Whether the vault holds `sha256` (a 64-digit lowercase hex name).
    pub fn has(&self, sha256: &str) -> bool {
        sha256.len() == 64
            && sha256.bytes().all(|b| b.is_ascii_hexdigit())
            && self.path_of(sha256).is_file()
    }

    pub fn read(&self, sha256: &str) -> std::io::Result<Vec<u8>> {
        std::fs::read(self.path_of(sha256))
    }

    pub fn begin(&self) -> std::io::Result<Incoming> {
        let path = self.dir.join("tmp").join(format!(
            "{:016x}{:016x}.part",
            fastrand::u64(..),
            fastrand::u64(..)
        ));
        let file = std::fs::File::create(&path)?;
        Ok(Incoming {
            file,
            path,
            hasher: Sha256::new(),
            size: 0,
        })
    }
}

impl Incoming {
    pub fn write(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        self.hasher.update(chunk);
        self.size += chunk.len() as u64;
        self.file.write_all(chunk)
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Synced and renamed to its hash: `(sha256, size)`.
    pub fn commit(self, vault: &Vault) -> std::io::Result<(String, u64)> {
        self.file.sync_all()?;
        drop(self.file);
        let sha = hex(&self.hasher.finalize());
        let target = vault.path_of(&sha);
        if target.is_file() {
            std::fs::remove_file(&self.path)?;
        } else {
            std::fs::rename(&self.path, &target)?;
            if let Ok(dir) = std::fs::File::open(&vault.dir) {
                let _ = dir.sync_all();
            }
        }
        Ok((sha, self.size))
    }

    /// Given up: the temporary file goes.
    pub fn discard(self) {
        drop(self.file);
        let _ = std::fs::remove_file(&self.path);
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contents_are_stored_under_their_sha256_once() {
        let dir = tempfile::tempdir().unwrap();
        let vault = Vault::open(&dir.path().join("files")).unwrap();
        let mut a = vault.begin().unwrap();
        a.write(b"hello ").unwrap();
        a.write(b"world").unwrap();
        let (sha, size) = a.commit(&vault).unwrap();
        assert_eq!(
            sha,
            "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
        );
        assert_eq!(size, 11);
        assert!(vault.has(&sha));
        assert_eq!(vault.read(&sha).unwrap(), b"hello world");
        let mut b = vault.begin().unwrap();
        b.write(b"hello world").unwrap();
        assert_eq!(b.commit(&vault).unwrap().0, sha);
        let left: Vec<_> = std::fs::read_dir(vault.dir().join("tmp"))
            .unwrap()
            .collect();
        assert!(left.is_empty(), "no temporary file is left");
        let c = vault.begin().unwrap();
        c.discard();
        assert!(!vault.has("../state.sqlite"));
    }
}
