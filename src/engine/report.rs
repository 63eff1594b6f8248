//! What a run did, per stream: as a human summary on stderr and as JSON for `--report`.

use std::path::PathBuf;

use serde::Serialize;

use crate::sinks::SinkSummary;
use crate::transforms::StageStats;

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Every record written.
    Ok,
    /// Finished; some records in the dead-letter file.
    DeadLetters,
    Failed,
}

impl RunStatus {
    /// Its serde name (`dead_letters`), as the state store records it.
    pub fn name(self) -> &'static str {
        match self {
            RunStatus::Ok => "ok",
            RunStatus::DeadLetters => "dead_letters",
            RunStatus::Failed => "failed",
        }
    }
}

/// How a stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamStatus {
    #[default]
    Ok,
    /// Finished; some of its records in the dead-letter file.
    DeadLetters,
    /// Finished; every record it read went to the dead-letter file.
    Rejected,
    Failed,
    /// Did not run (a stream it needs failed, its source could not be opened).
    Skipped,
    /// A `--sample` run writes only Gleap sessions, tickets and messages.
    NotInSample,
}

impl StreamStatus {
    /// Whether the stream ran to its end.
    pub fn finished(self) -> bool {
        !matches!(
            self,
            StreamStatus::Failed | StreamStatus::Skipped | StreamStatus::NotInSample
        )
    }
}

/// The outcome of `gleap-etl run`.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub pipeline: String,
    pub file: PathBuf,
    pub started_at: String,
    pub elapsed_secs: f64,
    pub status: RunStatus,
    pub exit_code: i32,
    pub records_read: u64,
    pub records_written: u64,
    pub dead_lettered: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_letter_file: Option<PathBuf>,
    /// The process's peak resident memory, where the platform tells it (Linux).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_memory_bytes: Option<u64>,
    pub streams: Vec<StreamReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// With `--emulator`: the embedded emulator's stats at the end (entities, requests,
    /// faults, `messages_out_of_order`, sessions sharing a userId).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub emulator: Option<serde_json::Value>,
    /// `--prune`: what was archived, deleted, already gone and left, per stream, or why
    /// nothing was pruned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prune: Option<crate::prune::PruneReport>,
    /// `--sample`: the tickets picked and why, the seed, and the records per stream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample: Option<std::sync::Arc<crate::sample::Sample>>,
}

/// What one stream did.
#[derive(Debug, Clone, Serialize, Default)]
pub struct StreamReport {
    pub name: String,
    pub status: StreamStatus,
    pub source: String,
    pub files: Vec<String>,
    /// Records the source yielded, readable or not (not counting `skipped`).
    pub read: u64,
    /// Records skipped because the interrupted run this one resumed had confirmed them.
    pub skipped: u64,
    /// The position an interrupted run was resumed after.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resumed_after: Option<u64>,
    /// Records the source could not read.
    pub source_rejected: u64,
    /// Records the transform stages dropped on purpose (filter, dedupe, jq with no output).
    pub filtered: u64,
    /// Records the transform stages rejected.
    pub transform_rejected: u64,
    /// `--sample`: records not in the sample, not written (neither filtered nor rejected).
    #[serde(skip_serializing_if = "is_zero")]
    pub outside_sample: u64,
    /// Rows of lookup tables that could not be read, skipped (each a dead letter).
    pub lookup_rows_skipped: u64,
    /// Rows handed to the sink as columns, stages and all (the rest went as records).
    #[serde(skip_serializing_if = "is_zero")]
    pub columnar_rows: u64,
    pub transforms: Vec<StageStats>,
    pub written: u64,
    pub sink_rejected: u64,
    /// All records of this stream that went to the dead-letter file.
    pub dead_lettered: u64,
    pub elapsed_secs: f64,
    pub records_per_sec: f64,
    pub sink: SinkSummary,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl StreamReport {
    pub fn skipped(name: &str, why: String) -> StreamReport {
        StreamReport {
            name: name.to_string(),
            status: StreamStatus::Skipped,
            error: Some(why),
            ..Default::default()
        }
    }
}

/// A Parquet dataset's columns added by the run and its values that no longer fit their
/// column (`new_columns`, `type_changes` in the sink detail), as notes for the stream line.
fn schema_notes(detail: &serde_json::Value) -> String {
    let mut out = String::new();
    let added: Vec<&str> = detail
        .get("new_columns")
        .and_then(serde_json::Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(serde_json::Value::as_str)
        .collect();
    if !added.is_empty() {
        out.push_str(&format!("; new columns: {}", added.join(", ")));
    }
    for change in detail
        .get("type_changes")
        .and_then(serde_json::Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(warning) = change.get("warning").and_then(serde_json::Value::as_str) {
            out.push_str(&format!("; warning: {warning}"));
        }
    }
    out
}

/// `agents:` in the summary: how many records went to team members, and the agents that
/// matched none (their messages keep their name, their tickets stay unassigned).
fn agents_note(a: &serde_json::Value) -> String {
    let mut note = format!(
        "; {} by Gleap team members",
        count(a["matched"].as_u64().unwrap_or(0))
    );
    if let Some(e) = a.get("team_error").and_then(serde_json::Value::as_str) {
        note.push_str(&format!(" (the team could not be read: {e})"));
    }
    let unmatched: Vec<String> = a["unmatched"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|u| {
            format!(
                "{}: {}",
                u["agent"].as_str().unwrap_or("?"),
                u["records"].as_u64().unwrap_or(0)
            )
        })
        .collect();
    if !unmatched.is_empty() {
        note.push_str(&format!(
            "; agents not in the team: {}",
            unmatched.join(", ")
        ));
    }
    note
}

impl RunReport {
    /// The summary printed at the end of a run.
    pub fn human(&self) -> String {
        let mut out = String::new();
        let verdict = match self.status {
            RunStatus::Ok => "finished",
            RunStatus::DeadLetters => "finished with dead-lettered records",
            RunStatus::Failed => "failed",
        };
        out.push_str(&format!(
            "{}: {verdict} in {}\n",
            self.pipeline,
            seconds(self.elapsed_secs)
        ));
        if let Some(sample) = &self.sample {
            out.push_str(&format!(
                "  a sample run of {} tickets (seed {}): {}; `gleap-etl verify` checks them, `gleap-etl undo --all` removes them\n",
                sample.picks.len(),
                sample.seed,
                sample.describe()
            ));
        }
        let width = self.streams.iter().map(|s| s.name.len()).max().unwrap_or(0);
        for s in &self.streams {
            let mut line = format!("  {:<width$}  ", s.name);
            match s.status {
                StreamStatus::NotInSample => line.push_str(
                    "not run: a sample run writes only Gleap sessions, tickets and messages",
                ),
                StreamStatus::Skipped => {
                    line.push_str(&format!("skipped: {}", s.error.as_deref().unwrap_or("")))
                }
                _ => {
                    line.push_str(&format!(
                        "{} read -> {} written",
                        count(s.read),
                        count(s.written)
                    ));
                    let mut notes = Vec::new();
                    if s.filtered > 0 {
                        notes.push(format!("{} filtered", count(s.filtered)));
                    }
                    if s.outside_sample > 0 {
                        notes.push(format!("{} outside the sample", count(s.outside_sample)));
                    }
                    if s.dead_lettered > 0 {
                        notes.push(format!("{} dead-lettered", count(s.dead_lettered)));
                    }
                    if s.lookup_rows_skipped > 0 {
                        notes.push(format!(
                            "{} skipped",
                            plural(
                                s.lookup_rows_skipped,
                                "lookup-table row",
                                "lookup-table rows"
                            )
                        ));
                    }
                    if s.status == StreamStatus::Rejected {
                        notes.push("every record rejected".into());
                    }
                    for stage in &s.transforms {
                        for (what, n) in &stage.dropped {
                            notes.push(format!("{what} left out: {}", count(*n)));
                        }
                    }
                    if !notes.is_empty() {
                        line.push_str(&format!(" ({})", notes.join(", ")));
                    }
                    line.push_str(&format!(", {}/s", count(s.records_per_sec.round() as u64)));
                    if let Some(d) = s.sink.detail.as_ref().filter(|d| d.get("entity").is_some()) {
                        let n = |k: &str| d.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
                        line.push_str(&format!(
                            " -> Gleap {}: {} created, {} updated, {} unchanged; {} requests ({:.2} per record, {} answered 429, {} retries)",
                            d["entity"].as_str().unwrap_or(""),
                            count(n("created")),
                            count(n("updated")),
                            count(n("unchanged")),
                            count(n("requests")),
                            d.get("requests_per_record").and_then(serde_json::Value::as_f64).unwrap_or(0.0),
                            count(n("rate_limited")),
                            count(n("retries")),
                        ));
                        if n("out_of_order") > 0 {
                            line.push_str(&format!(
                                "; {} created after a later message of their ticket (an earlier run created it; Gleap cannot back-date)",
                                count(n("out_of_order"))
                            ));
                        }
                        if let Some(files) = d.get("files") {
                            let f = |k: &str| {
                                files
                                    .get(k)
                                    .and_then(serde_json::Value::as_u64)
                                    .unwrap_or(0)
                            };
                            line.push_str(&format!(
                                "; files: {} of {} re-hosted ({} downloaded, {} from the vault, {} uploaded)",
                                count(f("rewritten")),
                                count(f("references")),
                                count(f("downloaded")),
                                count(f("from_vault")),
                                count(f("uploaded")),
                            ));
                            if f("failed") > 0 {
                                line.push_str(&format!(
                                    ", {} kept their original URL (why: dead-letter file, --report)",
                                    count(f("failed"))
                                ));
                            }
                        }
                        if let Some(why) = d
                            .get("prefetch_skipped")
                            .and_then(serde_json::Value::as_str)
                        {
                            line.push_str(&format!("; {why}"));
                        }
                        if let Some(a) = d.get("agents") {
                            line.push_str(&agents_note(a));
                        }
                    }
                    if let Some(why) = s
                        .sink
                        .detail
                        .as_ref()
                        .and_then(|d| d.get("full_export"))
                        .and_then(serde_json::Value::as_str)
                    {
                        line.push_str(&format!("; {why}"));
                    }
                    if let Some(d) = &s.sink.detail {
                        line.push_str(&schema_notes(d));
                    }
                    if s.skipped > 0 {
                        line.push_str(&format!(" (resumed: {} already done)", count(s.skipped)));
                    }
                    if let Some(path) = &s.sink.path {
                        line.push_str(&format!(" -> {}", path.display()));
                        if let Some(bytes) = s.sink.bytes {
                            line.push_str(&format!(" ({})", size(bytes)));
                        }
                    }
                    if let Some(e) = &s.error {
                        line.push_str(&format!("\n  {:<width$}  failed: {e}", ""));
                    }
                }
            }
            out.push_str(&line);
            out.push('\n');
        }
        if let Some(prune) = &self.prune {
            out.push_str(&prune.human());
        }
        if self.dead_lettered > 0
            && let Some(file) = &self.dead_letter_file
        {
            out.push_str(&format!(
                "  {} in {}\n",
                records(self.dead_lettered),
                file.display()
            ));
        }
        out
    }
}

/// `1 record`, `1,234 records`.
pub fn records(n: u64) -> String {
    plural(n, "record", "records")
}

/// `n` and the noun that goes with it: `1 record`, `2 records`.
pub fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{} {}", count(n), if n == 1 { one } else { many })
}

/// `1234567` as `1,234,567`.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn seconds(s: f64) -> String {
    if s < 60.0 {
        format!("{s:.1} s")
    } else {
        format!("{}m {:02}s", (s / 60.0) as u64, (s % 60.0) as u64)
    }
}

fn size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

/// The peak resident memory of this process (Linux: `VmHWM`).
pub fn peak_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_counts_and_sizes() {
        assert_eq!(count(0), "0");
        assert_eq!(count(1234567), "1,234,567");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(seconds(75.0), "1m 15s");
    }
}
