//! Input files: glob expansion, transparent `.gz` decompression, and byte counting for
//! progress bars.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

/// The files a `path:` names: the file itself, or every file a glob matches, sorted.
pub fn expand(pattern: &str) -> Result<Vec<PathBuf>> {
    if !pattern.contains(['*', '?', '[']) {
        let path = PathBuf::from(pattern);
        let meta = std::fs::metadata(&path).map_err(|e| Error::io(&path, e))?;
        if meta.is_dir() {
            return Err(Error::io(
                &path,
                std::io::Error::new(
                    std::io::ErrorKind::IsADirectory,
                    format!("is a directory; name a file or a glob such as {pattern}/*.csv"),
                ),
            ));
        }
        return Ok(vec![path]);
    }
    let paths = glob::glob(pattern).map_err(|e| Error::config(glob_problem(pattern, &e)))?;
    let mut files = Vec::new();
    for entry in paths {
        let path = entry.map_err(|e| {
            let p = e.path().to_path_buf();
            Error::io(p, e.into())
        })?;
        if path.is_file() {
            files.push(path);
        }
    }
    if files.is_empty() {
        return Err(Error::config(format!("no file matches `{pattern}`")));
    }
    files.sort();
    Ok(files)
}

fn glob_problem(pattern: &str, e: &glob::PatternError) -> String {
    format!("`{pattern}` is not a valid glob: {e}")
}

/// What is wrong with a `path:` as written (a glob that does not parse), found without
/// looking at the disk. `at` is the option's config path.
pub fn check_pattern(pattern: &str, at: &str) -> Option<crate::config::ConfigError> {
    if pattern.trim().is_empty() {
        return Some(crate::config::ConfigError::at(
            at,
            "an empty path names no file",
        ));
    }
    if !pattern.contains(['*', '?', '[']) {
        return None;
    }
    let e = glob::Pattern::new(pattern).err()?;
    Some(crate::config::ConfigError::at(
        at,
        glob_problem(pattern, &e),
    ))
}

/// One path or glob, or a list of them: `path: dump/users*.json*` or
/// `path: [dump/comments*, dump/audits*]`.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum PathSpec {
    One(String),
    Many(Vec<String>),
}

impl PathSpec {
    /// The paths and globs as written.
    pub fn patterns(&self) -> Vec<&str> {
        match self {
            PathSpec::One(p) => vec![p.as_str()],
            PathSpec::Many(ps) => ps.iter().map(String::as_str).collect(),
        }
    }

    /// [`check_pattern`] for each of them; `at` is the option's config path.
    pub fn check(&self, at: &str) -> Vec<crate::config::ConfigError> {
        match self {
            PathSpec::One(p) => check_pattern(p, at).into_iter().collect(),
            PathSpec::Many(ps) if ps.is_empty() => vec![crate::config::ConfigError::at(
                at,
                "an empty list names no file",
            )],
            PathSpec::Many(ps) => ps
                .iter()
                .enumerate()
                .filter_map(|(i, p)| check_pattern(p, &format!("{at}[{i}]")))
                .collect(),
        }
    }

    /// Every file named, in the order of the patterns, each file once.
    pub fn expand(&self) -> Result<Vec<PathBuf>> {
        let patterns = self.patterns();
        let mut files: Vec<PathBuf> = Vec::new();
        let mut misses = Vec::new();
        for pattern in &patterns {
            match expand(pattern) {
                Ok(found) => {
                    for f in found {
                        if !files.contains(&f) {
                            files.push(f);
                        }
                    }
                }
                Err(e) => misses.push(e),
            }
        }
        // A list may name patterns a dump does not have; only nothing at all is an error.
        match (files.is_empty(), misses.into_iter().next()) {
            (true, Some(e)) => Err(e),
            _ => Ok(files),
        }
    }
}

impl std::fmt::Display for PathSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PathSpec::One(p) => f.write_str(p),
            PathSpec::Many(ps) => f.write_str(&ps.join(", ")),
        }
    }
}

/// The total size on disk of `files`.
pub fn total_size(files: &[PathBuf]) -> u64 {
    files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum()
}

/// Whether the file is gzip-compressed, by its name.
pub fn is_gzip(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gz"))
}

/// Opens `path` for buffered reading, decompressing `.gz` files; bytes read from disk are
/// added to `counter`.
pub fn open(path: &Path, counter: Arc<AtomicU64>) -> Result<Box<dyn BufRead + Send>> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let counted = CountingReader {
        inner: file,
        counter,
    };
    Ok(if is_gzip(path) {
        Box::new(BufReader::with_capacity(
            256 * 1024,
            flate2::read::MultiGzDecoder::new(BufReader::new(counted)),
        ))
    } else {
        Box::new(BufReader::with_capacity(256 * 1024, counted))
    })
}

/// Counts the bytes that pass through a reader.
pub struct CountingReader<R> {
    inner: R,
    counter: Arc<AtomicU64>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.counter.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// The name a file goes by in positions and messages.
pub fn display_name(path: &Path) -> Arc<str> {
    Arc::from(path.to_string_lossy().as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn expands_globs_sorted_and_reports_no_match() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["b.csv", "a.csv", "c.txt"] {
            std::fs::write(dir.path().join(name), "x").unwrap();
        }
        let pattern = format!("{}/*.csv", dir.path().display());
        let files = expand(&pattern).unwrap();
        let names: Vec<_> = files
            .iter()
            .map(|f| f.file_name().unwrap().to_str().unwrap())
            .collect();
        assert_eq!(names, ["a.csv", "b.csv"]);
        let none = format!("{}/*.parquet", dir.path().display());
        assert!(
            expand(&none)
                .unwrap_err()
                .to_string()
                .contains("no file matches")
        );
        let missing = format!("{}/missing.csv", dir.path().display());
        assert!(
            expand(&missing)
                .unwrap_err()
                .to_string()
                .contains("missing.csv")
        );
    }

    #[test]
    fn a_list_of_patterns_needs_only_one_to_match() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["comments-1.json", "audits.json"] {
            std::fs::write(dir.path().join(name), "x").unwrap();
        }
        let d = dir.path().display();
        let spec = PathSpec::Many(vec![
            format!("{d}/comments*"),
            format!("{d}/audits*"),
            format!("{d}/ticket_events*"),
        ]);
        assert_eq!(spec.expand().unwrap().len(), 2);
        let none = PathSpec::Many(vec![format!("{d}/nothing*")]);
        assert!(
            none.expand()
                .unwrap_err()
                .to_string()
                .contains("no file matches")
        );
    }

    #[test]
    fn reads_gzip_and_counts_compressed_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.csv.gz");
        let mut gz = flate2::write::GzEncoder::new(
            File::create(&path).unwrap(),
            flate2::Compression::default(),
        );
        gz.write_all(b"a,b\n1,2\n").unwrap();
        gz.finish().unwrap();
        let counter = Arc::new(AtomicU64::new(0));
        let mut text = String::new();
        open(&path, counter.clone())
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "a,b\n1,2\n");
        assert_eq!(
            counter.load(Ordering::Relaxed),
            std::fs::metadata(&path).unwrap().len()
        );
    }
}
