//! Output files written under a temporary name (`<name>.inprogress`) and renamed into place
//! once complete. Dropping an uncommitted output removes the temporary file. The temporary
//! file is locked while it is written: a second run writing the same output refuses.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// What is wrong with an output file's `path:` as written: empty, or naming a folder
/// (`out/`, `.`). `at` is the sink's config path.
pub fn check_path(path: &str, at: &str) -> Vec<crate::config::ConfigError> {
    let problem = if path.trim().is_empty() {
        Some("an empty path names no file")
    } else if path.ends_with(['/', '\\']) || Path::new(path).file_name().is_none() {
        Some("names a folder; name the file to write")
    } else {
        None
    };
    problem
        .map(|p| crate::config::ConfigError::at(format!("{at}.path"), p))
        .into_iter()
        .collect()
}

/// The rename still to be done for an output file.
#[derive(Debug)]
pub struct PendingOutput {
    final_path: PathBuf,
    temp_path: PathBuf,
    done: bool,
}

impl PendingOutput {
    /// Creates `<path>.inprogress` (and the parent directories), locked, and returns it open.
    pub fn create(path: &Path) -> Result<(File, PendingOutput)> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            crate::dirs::create(dir, "output folder")?;
        }
        if path.is_dir() {
            return Err(Error::output(path, "is a folder, not a file"));
        }
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(".inprogress");
        let temp_path = path.with_file_name(name);
        // Opened without truncating: another run may be writing it, and only the lock says.
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&temp_path)
            .map_err(|e| Error::io(&temp_path, e))?;
        crate::dirs::lock_output(&file, path)?;
        // The run that held it may have removed it before we locked: start on the file that
        // is there now.
        if !same_file(&file, &temp_path) {
            return PendingOutput::create(path);
        }
        file.set_len(0).map_err(|e| Error::io(&temp_path, e))?;
        Ok((
            file,
            PendingOutput {
                final_path: path.to_path_buf(),
                temp_path,
                done: false,
            },
        ))
    }

    pub fn final_path(&self) -> &Path {
        &self.final_path
    }

    pub fn temp_path(&self) -> &Path {
        &self.temp_path
    }

    /// Makes the finished file durable and moves it to its real name; returns its size.
    pub fn commit(mut self, file: File) -> Result<u64> {
        file.sync_all().map_err(|e| Error::io(&self.temp_path, e))?;
        let size = file
            .metadata()
            .map_err(|e| Error::io(&self.temp_path, e))?
            .len();
        drop(file);
        std::fs::rename(&self.temp_path, &self.final_path)
            .map_err(|e| Error::io(&self.final_path, e))?;
        self.done = true;
        Ok(size)
    }
}

impl Drop for PendingOutput {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.temp_path);
        }
    }
}

/// Whether `file` is still the file at `path`.
fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// A text output: buffered, gzip-compressed when the name ends in `.gz`.
pub enum TextOutput {
    Plain(BufWriter<File>),
    Gzip(Box<flate2::write::GzEncoder<BufWriter<File>>>),
}

impl TextOutput {
    pub fn new(file: File, path: &Path) -> TextOutput {
        let buffered = BufWriter::with_capacity(256 * 1024, file);
        if crate::sources::files::is_gzip(path) {
            TextOutput::Gzip(Box::new(flate2::write::GzEncoder::new(
                buffered,
                flate2::Compression::default(),
            )))
        } else {
            TextOutput::Plain(buffered)
        }
    }

    /// Flushes everything and returns the file.
    pub fn finish(self) -> std::io::Result<File> {
        let buffered = match self {
            TextOutput::Plain(w) => w,
            TextOutput::Gzip(gz) => gz.finish()?,
        };
        buffered.into_inner().map_err(|e| e.into_error())
    }
}

impl Write for TextOutput {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            TextOutput::Plain(w) => w.write(buf),
            TextOutput::Gzip(w) => w.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        match self {
            TextOutput::Plain(w) => w.write_all(buf),
            TextOutput::Gzip(w) => w.write_all(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            TextOutput::Plain(w) => w.flush(),
            TextOutput::Gzip(w) => w.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_renames_and_drop_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out/a.jsonl");
        let (mut file, pending) = PendingOutput::create(&path).unwrap();
        file.write_all(b"x\n").unwrap();
        assert!(pending.temp_path().exists() && !path.exists());
        assert_eq!(pending.commit(file).unwrap(), 2);
        assert_eq!(std::fs::read(&path).unwrap(), b"x\n");

        let (_file, pending) = PendingOutput::create(&path).unwrap();
        let temp = pending.temp_path().to_path_buf();
        drop(pending);
        assert!(!temp.exists());
        assert_eq!(
            std::fs::read(&path).unwrap(),
            b"x\n",
            "the previous output stays"
        );
    }
}
