//! Located configuration errors: `file:line:column: message`, several per file.

use std::fmt;
use std::path::{Path, PathBuf};

/// A 1-based line and column in a pipeline file. Line 0 means "unknown".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Location {
    pub line: u32,
    pub column: u32,
}

impl Location {
    pub const UNKNOWN: Location = Location { line: 0, column: 0 };

    pub fn is_known(&self) -> bool {
        self.line > 0
    }

    /// The location `chars` characters to the right on the same line.
    pub fn shifted(self, chars: usize) -> Location {
        Location {
            line: self.line,
            column: self.column + chars as u32,
        }
    }
}

/// One problem in a pipeline file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub location: Location,
    pub message: String,
    /// Another place whose error this one explains (a block that lost its indentation
    /// explains why the key above it is empty); that error is not listed separately.
    pub explains: Option<Location>,
    /// The config path of the option at fault (`streams[0].sink.parquet.compression_level`),
    /// for a problem found on a typed config without spans: the location is then found by
    /// following the path in the YAML tree ([`super::locate`]).
    pub path: Option<String>,
}

impl ConfigError {
    pub fn new(location: Location, message: impl Into<String>) -> Self {
        ConfigError {
            location,
            message: message.into(),
            explains: None,
            path: None,
        }
    }

    /// A problem with the option at config path `path` (`streams[0].sink.parquet.batch_rows`),
    /// reported as `path: message` where that option (or the nearest part of it that is
    /// written) is in the file. This is what components' `check` returns.
    pub fn at(path: impl Into<String>, message: impl fmt::Display) -> Self {
        let path = path.into();
        ConfigError {
            location: Location::UNKNOWN,
            message: format!("{path}: {message}"),
            explains: None,
            path: Some(path),
        }
    }
}

/// The problems a component's `check` found, as the error of its `build` or `open` (which
/// run the same checks, for configs that did not come through `validate`: tests, lookup
/// tables, generated pipelines).
pub fn checked(problems: Vec<ConfigError>) -> Result<(), crate::Error> {
    if problems.is_empty() {
        return Ok(());
    }
    Err(crate::Error::Config(ConfigErrors::unplaced(problems)))
}

/// Every problem found in one pipeline file, in source order.
#[derive(Debug, Clone)]
pub struct ConfigErrors {
    pub file: PathBuf,
    pub errors: Vec<ConfigError>,
}

impl ConfigErrors {
    pub fn new(file: &Path, mut errors: Vec<ConfigError>) -> Self {
        errors.sort_by(|a, b| {
            a.location
                .cmp(&b.location)
                .then_with(|| a.message.cmp(&b.message))
        });
        errors.dedup_by(|a, b| a.location == b.location && a.message == b.message);
        let explained: Vec<Location> = errors.iter().filter_map(|e| e.explains).collect();
        errors.retain(|e| !explained.contains(&e.location));
        ConfigErrors {
            file: file.to_path_buf(),
            errors,
        }
    }

    /// Problems found outside a pipeline file (a component's `build` on a config made in
    /// code, a command's flags): no file to name, kept in the order found, and printed on one
    /// line, `; ` between them, as they are often said within another message.
    pub fn unplaced(errors: Vec<ConfigError>) -> Self {
        ConfigErrors {
            file: PathBuf::new(),
            errors,
        }
    }

    pub fn single(file: &Path, location: Location, message: impl Into<String>) -> Self {
        ConfigErrors::new(file, vec![ConfigError::new(location, message)])
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.file.as_os_str().is_empty() {
            let messages: Vec<&str> = self.errors.iter().map(|e| e.message.as_str()).collect();
            return f.write_str(&crate::redact::redact(&messages.join("; ")));
        }
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            if e.location.is_known() {
                write!(
                    f,
                    "{}:{}:{}: {}",
                    self.file.display(),
                    e.location.line,
                    e.location.column,
                    crate::redact::redact(&e.message)
                )?;
            } else {
                write!(
                    f,
                    "{}: {}",
                    self.file.display(),
                    crate::redact::redact(&e.message)
                )?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// The closest of `candidates` to `word`, if it is close enough to be a likely typo.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let word_lower = word.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| (edit_distance(&word_lower, &c.to_ascii_lowercase()), c))
        .filter(|(d, c)| *d <= (c.len().max(word.len()) / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Damerau-Levenshtein distance (optimal string alignment), by characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_words_only() {
        let fields = ["source", "sink", "transforms", "needs", "name"];
        assert_eq!(did_you_mean("transfroms", fields), Some("transforms"));
        assert_eq!(did_you_mean("snk", fields), Some("sink"));
        assert_eq!(did_you_mean("destination", fields), None);
    }

    #[test]
    fn errors_print_sorted_with_file_line_and_column() {
        let errs = ConfigErrors::new(
            Path::new("p.yaml"),
            vec![
                ConfigError::new(Location { line: 9, column: 3 }, "b"),
                ConfigError::new(Location { line: 2, column: 7 }, "a"),
                ConfigError::new(Location { line: 2, column: 7 }, "a"),
            ],
        );
        assert_eq!(errs.to_string(), "p.yaml:2:7: a\np.yaml:9:3: b");
    }
}
