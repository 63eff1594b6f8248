//! Progress bars on stderr, one per stream, with the record count, the rate and (where the
//! size of the input is known) an ETA. Hidden when stderr is not a terminal. Log lines are
//! printed above the bars rather than through them.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::report::count;
use crate::sources::{ProgressUnit, SourceProgress};

/// The bars of the current run, so log output can step around them.
static ACTIVE: Mutex<Option<MultiProgress>> = Mutex::new(None);

/// The bars of one run.
pub struct Progress {
    multi: Option<MultiProgress>,
}

impl Progress {
    /// Bars are drawn only when asked for and stderr is a terminal.
    pub fn new(wanted: bool) -> Progress {
        if !(wanted && std::io::stderr().is_terminal()) {
            return Progress { multi: None };
        }
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10));
        *ACTIVE.lock().unwrap_or_else(|p| p.into_inner()) = Some(multi.clone());
        Progress { multi: Some(multi) }
    }

    pub fn hidden() -> Progress {
        Progress { multi: None }
    }

    /// A bar for a stream reading `source`.
    pub fn stream(&self, name: &str, source: &SourceProgress) -> StreamBar {
        let bar = self.multi.as_ref().map(|multi| {
            let bar = match source.total {
                Some(total) => {
                    let template = match source.unit {
                        ProgressUnit::Bytes => {
                            "{prefix:>14.bold} [{bar:28.cyan/blue}] {percent:>3}% {msg} ({binary_bytes_per_sec}, ETA {eta})"
                        }
                        ProgressUnit::Rows => "{prefix:>14.bold} [{bar:28.cyan/blue}] {percent:>3}% {msg} (ETA {eta})",
                    };
                    ProgressBar::new(total).with_style(
                        ProgressStyle::with_template(template).expect("valid template").progress_chars("=> "),
                    )
                }
                None => ProgressBar::new_spinner()
                    .with_style(ProgressStyle::with_template("{prefix:>14.bold} {spinner} {msg}").expect("valid template")),
            };
            let bar = multi.add(bar.with_prefix(name.to_string()));
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        StreamBar {
            bar,
            source: source.clone(),
            started: Instant::now(),
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if self.multi.is_some() {
            *ACTIVE.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
    }
}

/// One stream's bar.
pub struct StreamBar {
    bar: Option<ProgressBar>,
    source: SourceProgress,
    started: Instant,
}

impl StreamBar {
    /// Shows how far the source is and how many records went through.
    pub fn update(&self, records: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(self.source.done.load(Ordering::Relaxed));
            let rate = records as f64 / self.started.elapsed().as_secs_f64().max(1e-3);
            bar.set_message(format!(
                "{}, {}/s",
                super::report::records(records),
                count(rate as u64)
            ));
        }
    }

    pub fn finish(&self, message: String) {
        if let Some(bar) = &self.bar {
            if let Some(total) = self.source.total {
                bar.set_position(total);
            }
            bar.finish_with_message(message);
        }
    }
}

/// A writer for log lines that keeps progress bars intact.
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let active = ACTIVE.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let text = String::from_utf8_lossy(buf);
        let redacted = crate::redact::redact(&text);
        let out = redacted.as_bytes();
        match active {
            Some(multi) => multi.suspend(|| std::io::stderr().write_all(out))?,
            None => std::io::stderr().write_all(out)?,
        }
        // All of `buf` was taken, whatever length its redacted text has: a shorter count would
        // make the caller write the rest of `buf` again.
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_writer_takes_the_whole_buffer_when_redaction_shortens_it() {
        let secret = "/tmp/a-rather-long-dump-folder-for-the-log-writer-test";
        crate::redact::remember("LOG_WRITER_TEST_DIR", secret);
        let line = format!("WARN lookup table {secret}/users.json: 1 rows repeat a key\n");
        // write_all would write the tail again if `write` answered fewer bytes than given.
        assert_eq!(LogWriter.write(line.as_bytes()).unwrap(), line.len());
    }
}
