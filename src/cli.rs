//! The command line: `validate`, `plan`, `run`, `verify` and the rest.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::{Args, CommandFactory, Parser, Subcommand};

use crate::engine::{self, EXIT_DEAD_LETTERS, EXIT_FAILED, EXIT_OK, RunOptions};
use crate::pipeline::Pipeline;
use crate::{eprint, eprintln, println};

/// Move helpdesk data in and out of Gleap with declarative YAML pipelines.
#[derive(Debug, Parser)]
#[command(name = "gleap-etl", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// More log output (repeat for more); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check pipeline files and report every problem as file:line:column.
    Validate {
        /// Pipeline files.
        #[arg(required = true)]
        pipelines: Vec<PathBuf>,
    },
    /// Read and transform the first records of each stream and print them; write nothing.
    Plan {
        pipeline: PathBuf,
        /// Records to show per stream.
        #[arg(long, default_value_t = 5)]
        limit: usize,
    },
    /// Run a pipeline.
    Run(RunArgs),
    /// Export Gleap sessions, tickets or messages to a Parquet dataset (the pipeline of
    /// pipelines/export_<entity>.yaml); with --incremental, later runs add what changed.
    Export(ExportArgs),
    /// Show what the state store knows: per stream its checkpoint, mapped ids and open
    /// intents, and the last runs.
    Status {
        pipeline: PathBuf,
        /// The state directory, if not the pipeline's.
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// Print it as JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Prove a migration: read the source again through the transforms and compare every
    /// record with what Gleap holds (arrived and equal, missing, present twice, changed,
    /// messages out of order, gone from the source). Exit 0 when all arrived and equal, 1
    /// otherwise, 2 when it could not check.
    Verify(VerifyArgs),
    /// Take a migration back: delete from Gleap what a run (or every run) of the pipeline
    /// created, as the state store records it (messages, then tickets, then sessions, newest
    /// first). Records it found in Gleap and only updated are listed, not reverted. Shows the
    /// counts and asks first unless --yes; run it again after an interruption.
    Undo(UndoArgs),
    /// Rebuild a lost (or emptied) state store's id map from what Gleap holds: sessions by
    /// userId (or email), tickets by this pipeline's `customData.importId`, messages per
    /// ticket by text, note and author in the source's order. Reports what it could not
    /// match; the next run then creates nothing twice. Exit 1 when a record is ambiguous.
    Reconcile(ReconcileArgs),
    /// Print the JSON Schema of the pipeline format (for editors).
    Schema,
    /// Print a completion script for a shell: `gleap-etl completions bash >
    /// ~/.local/share/bash-completion/completions/gleap-etl`, `gleap-etl completions zsh >
    /// ~/.zfunc/_gleap-etl`, `gleap-etl completions fish > ~/.config/fish/completions/gleap-etl.fish`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff): `gleap-etl man > gleap-etl.1 && man ./gleap-etl.1`; with
    /// --dir, write it and one page per command (gleap-etl-run.1, ...) into DIR.
    Man {
        /// Write gleap-etl.1 and gleap-etl-COMMAND.1 here (e.g. ~/.local/share/man/man1).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Run a local emulator of Gleap's API v3 (sessions, tickets, messages) for rehearsals,
    /// tests and benchmarks; no Gleap account needed.
    Emulator(EmulatorArgs),
    /// Check a Gleap project before a migration (at most 40 requests): answer shapes, paging,
    /// filters, index lag, what a second create does; creates one probe session, ticket and
    /// note, and deletes them. Exit 1 where a migration would go wrong.
    Doctor(DoctorArgs),
}

/// The pipeline and state a command reads after `run`: `verify`, `undo`.
#[derive(Debug, Args)]
pub struct RunStateArgs {
    pub pipeline: PathBuf,
    /// The state directory, if not the pipeline's.
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Work on the embedded emulator `run --emulator` wrote to (<state_dir>/emulator.json).
    #[arg(long)]
    pub emulator: bool,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub target: RunStateArgs,
    /// Check N random tickets message by message (text and order), the other tickets'
    /// messages by counts (default: every ticket message by message, a request each).
    #[arg(long, value_name = "N")]
    pub sample: Option<usize>,
    /// Seed of the sample (default: random), to check the same tickets again.
    #[arg(long, requires = "sample")]
    pub seed: Option<u64>,
    /// Print the findings as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["run", "all"])))]
pub struct UndoArgs {
    #[command(flatten)]
    pub target: RunStateArgs,
    /// Undo only what this run created (`gleap-etl status` lists the runs).
    #[arg(long, value_name = "ID")]
    pub run: Option<i64>,
    /// Undo what every run created.
    #[arg(long)]
    pub all: bool,
    /// Delete without asking (needed when no terminal can answer).
    #[arg(long)]
    pub yes: bool,
}

#[derive(Debug, Args)]
pub struct ReconcileArgs {
    #[command(flatten)]
    pub target: RunStateArgs,
    /// Print the findings as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// A pipeline whose `gleap:` block names the project (default: GLEAP_BASE_URL,
    /// GLEAP_API_KEY, GLEAP_PROJECT_ID).
    pub pipeline: Option<PathBuf>,
    /// Check the embedded emulator instead (it holds 250 generated sessions, so that paging
    /// can be seen); the switches below make it harder.
    #[arg(long)]
    pub emulator: bool,
    #[command(flatten)]
    pub quirks: QuirkArgs,
    /// Save every raw answer here (the key, e-mail addresses, names and the project id
    /// redacted), to attach to a bug report.
    #[arg(long, value_name = "DIR")]
    pub record: Option<PathBuf>,
    /// Print the findings as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// `sessions`, `tickets` or `messages`.
    #[arg(value_parser = parse_entity)]
    pub entity: crate::sinks::gleap::Entity,
    /// The dataset folder (part-NNNNN.parquet files and _manifest.json), or a bucket:
    /// s3://bucket/prefix, gs://, az://, file:///abs/path (credentials from AWS_*, GOOGLE_*,
    /// AZURE_* environment variables).
    #[arg(long)]
    pub out: PathBuf,
    /// Keep the cursor: the next run reads only what changed since this one.
    #[arg(long)]
    pub incremental: bool,
    /// Only records changed (or created, without --incremental) at or after this instant.
    #[arg(long)]
    pub since: Option<String>,
    /// Hive-style folders by a date field: FIELD or FIELD:day|month|year.
    #[arg(long, value_name = "FIELD[:GRANULARITY]")]
    pub partition_by: Option<String>,
    /// Nested fields to give typed columns of their own, e.g. customData.plan, or every key
    /// of an object: customData.* (repeatable). Sessions and tickets get customData.*
    /// unless --no-custom-columns.
    #[arg(long, value_name = "FIELD")]
    pub flatten: Vec<String>,
    /// Keep custom fields only in the customData JSON column, without a typed
    /// customData_<key> column for each.
    #[arg(long)]
    pub no_custom_columns: bool,
    /// Records per part file.
    #[arg(long, default_value_t = 100_000)]
    pub part_rows: u64,
    /// Also keep a current-state table in the dataset's snapshot/ folder: one row per _id,
    /// its latest version, rewritten after each run that added parts.
    #[arg(long)]
    pub snapshot: bool,
    /// A field a later run brings gets a typed column in the parts written from then on
    /// (`evolve`), or goes to the otherFields JSON column as every part keeps the first's
    /// columns (`freeze`).
    #[arg(long, value_name = "POLICY", default_value = "evolve", value_parser = parse_schema_policy)]
    pub schema: crate::sinks::parquet::SchemaPolicy,
    /// Records per request (at most 1000).
    #[arg(long, default_value_t = 1000)]
    pub page_size: usize,
    #[command(flatten)]
    pub flags: RunFlags,
}

fn parse_schema_policy(s: &str) -> Result<crate::sinks::parquet::SchemaPolicy, String> {
    serde_json::from_value(serde_json::Value::String(s.to_string()))
        .map_err(|_| format!("{s:?}: expected evolve or freeze"))
}

fn parse_entity(s: &str) -> Result<crate::sinks::gleap::Entity, String> {
    serde_json::from_value(serde_json::Value::String(s.to_string()))
        .map_err(|_| format!("{s:?}: expected sessions, tickets or messages"))
}

#[derive(Debug, Args)]
pub struct EmulatorArgs {
    /// Where to listen; loopback by default.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: std::net::SocketAddr,
    /// The API key clients must send (default: generated and printed).
    #[arg(long)]
    pub api_key: Option<String>,
    /// The project id clients must send (default: generated and printed).
    #[arg(long)]
    pub project: Option<String>,
    /// Requests allowed per window per project, REQUESTS/SECONDS (Gleap: 1000/60), or
    /// `unlimited`.
    #[arg(long, default_value = "1000/60")]
    pub quota: String,
    /// Answer 429 without a Retry-After header (Gleap does not promise one).
    #[arg(long)]
    pub no_retry_after: bool,
    /// Share of requests answered 500, 502 or 503, from 0 to 1.
    #[arg(long, value_name = "SHARE", default_value_t = 0.0)]
    pub fail_5xx: f64,
    /// Share of requests whose connection is reset before anything is done.
    #[arg(long, value_name = "SHARE", default_value_t = 0.0)]
    pub fail_reset: f64,
    /// Share of requests that are carried out but whose answer is lost (the connection drops).
    #[arg(long, value_name = "SHARE", default_value_t = 0.0)]
    pub fail_lost: f64,
    /// Latency added to every answer, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub latency_ms: u64,
    /// Up to this many more milliseconds, at random.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub latency_jitter_ms: u64,
    /// Seed for faults and ids (default: random; printed, so a run can be repeated).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Load the state from this JSON file (if it exists) and keep saving it there.
    #[arg(long, value_name = "FILE")]
    pub data: Option<PathBuf>,
    /// Insert N synthetic sessions at start (benchmarks; the same ones for the same --seed).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub generate_sessions: usize,
    #[command(flatten)]
    pub quirks: QuirkArgs,
}

/// Switches that make the emulator harder than Gleap may be (`emulator`, `doctor
/// --emulator`).
#[derive(Debug, Args, Clone, Default)]
pub struct QuirkArgs {
    /// No list page longer than N records, whatever `limit` asks.
    #[arg(long, value_name = "N")]
    pub page_cap: Option<usize>,
    /// Ignore `skip` on lists.
    #[arg(long)]
    pub ignore_skip: bool,
    /// Answer lists as if a filter on FIELD were absent (repeatable), e.g.
    /// customData.importId.
    #[arg(long, value_name = "FIELD")]
    pub ignore_filter: Vec<String>,
    /// A new session shows in lists only after MS milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub index_lag_ms: u64,
}

impl QuirkArgs {
    pub fn quirks(&self) -> crate::emulator::Quirks {
        crate::emulator::Quirks {
            page_cap: self.page_cap.map(|n| n.max(1)),
            ignore_skip: self.ignore_skip,
            ignore_filters: self.ignore_filter.clone(),
            index_lag: std::time::Duration::from_millis(self.index_lag_ms),
        }
    }
}

#[derive(Debug, Args)]
pub struct RunArgs {
    pub pipeline: PathBuf,
    #[command(flatten)]
    pub flags: RunFlags,
    /// For scheduled syncs of a full source: after a run that read its whole source, archive
    /// the tickets this pipeline created that are gone from it (`--prune=delete`: delete
    /// them and their messages). A run that did not read it all prunes nothing.
    #[arg(long, value_enum, num_args = 0..=1, require_equals = true, default_missing_value = "archive", value_name = "archive|delete")]
    pub prune: Option<crate::prune::PruneMode>,
    /// With --prune: also delete the sessions this pipeline created that are gone from the
    /// source (sessions cannot be archived).
    #[arg(long, requires = "prune")]
    pub prune_sessions: bool,
    /// A trial: migrate about N tickets with their messages and sessions, picked to include
    /// the longest thread, the most attachments, a note, non-ASCII text and a missing author,
    /// then random ones; `verify` checks them, `undo --all` removes them.
    #[arg(long, value_name = "N")]
    pub sample: Option<usize>,
    /// Seed of the sample's random picks (default: random, printed), to pick the same again.
    #[arg(long, value_name = "S", requires = "sample")]
    pub seed: Option<u64>,
}

/// How to run a pipeline (`run`, `export`).
#[derive(Debug, Args)]
pub struct RunFlags {
    /// Where state and the dead-letter file go (default: the pipeline's state_dir, else
    /// .gleap-etl/<name>).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Also write the run report as JSON to this file.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Stop the run once more than N records went to the dead-letter file.
    #[arg(long, value_name = "N")]
    pub max_errors: Option<u64>,
    /// Do not draw progress bars.
    #[arg(long)]
    pub no_progress: bool,
    /// Gleap sinks look every record the state store does not know up in Gleap and adopt
    /// what is there (a request more per record), instead of refusing to run when Gleap
    /// holds records of an earlier run the state store does not know (a lost state).
    #[arg(long)]
    pub adopt_existing: bool,
    /// Print nothing but errors.
    #[arg(short, long)]
    pub quiet: bool,
    /// Write to an embedded Gleap emulator instead of Gleap (no account needed); its data is
    /// kept in <state_dir>/emulator.json between runs.
    #[arg(long)]
    pub emulator: bool,
    /// The embedded emulator's quota, REQUESTS/SECONDS or `unlimited`.
    #[arg(long, default_value = "1000/60", requires = "emulator")]
    pub emulator_quota: String,
    /// The embedded emulator's faults, as shares of requests: 5XX,RESETS,LOST (a rehearsal
    /// of a bad day: 0.05,0.02,0.01).
    #[arg(long, value_name = "5XX,RESETS,LOST", requires = "emulator")]
    pub emulator_faults: Option<String>,
    /// The embedded emulator's harder switches: page-cap=N, ignore-skip,
    /// ignore-filter=FIELD, index-lag-ms=N, separated by commas.
    #[arg(long, value_name = "SWITCHES", requires = "emulator")]
    pub emulator_quirks: Option<String>,
}

/// `--emulator-faults 0.05,0.02,0.01`.
fn parse_faults(text: &str, seed: u64) -> Result<crate::emulator::FaultConfig, String> {
    let shares: Vec<f64> = text
        .split(',')
        .map(|s| s.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .map_err(|_| {
            format!("{text:?}: write three shares, 5XX,RESETS,LOST, such as 0.05,0.02,0.01")
        })?;
    let [error_rate, reset_rate, lost_rate] = shares[..] else {
        return Err(format!("{text:?}: write three shares, 5XX,RESETS,LOST"));
    };
    check_shares(&[
        ("5xx", error_rate),
        ("resets", reset_rate),
        ("lost", lost_rate),
    ])?;
    Ok(crate::emulator::FaultConfig {
        error_rate,
        reset_rate,
        lost_rate,
        seed,
        ..Default::default()
    })
}

/// Each share between 0 and 1, all together at most 1.
fn check_shares(shares: &[(&str, f64)]) -> Result<(), String> {
    if let Some((name, share)) = shares.iter().find(|(_, s)| !(0.0..=1.0).contains(s)) {
        return Err(format!(
            "{name} {share}: a share is between 0 and 1 (0.05 is 5%)"
        ));
    }
    if shares.iter().map(|(_, s)| s).sum::<f64>() > 1.0 {
        return Err("the shares of faults add up to more than 1".into());
    }
    Ok(())
}

/// `--emulator-quirks page-cap=100,ignore-skip,ignore-filter=customData.importId`.
fn parse_quirks(text: &str) -> Result<crate::emulator::Quirks, String> {
    let mut args = QuirkArgs::default();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, value) = part.split_once('=').unwrap_or((part, ""));
        let number = || {
            value
                .parse::<u64>()
                .map_err(|_| format!("{part:?}: {name} takes a number ({name}=100)"))
        };
        match name {
            "page-cap" => args.page_cap = Some(number()? as usize),
            "ignore-skip" => args.ignore_skip = true,
            "ignore-filter" if !value.is_empty() => args.ignore_filter.push(value.to_string()),
            "index-lag-ms" => args.index_lag_ms = number()?,
            _ => {
                return Err(format!(
                    "{part:?}: expected page-cap=N, ignore-skip, ignore-filter=FIELD or index-lag-ms=N"
                ));
            }
        }
    }
    Ok(args.quirks())
}

/// Parses the arguments, runs the command and returns the process exit code.
pub fn main_with_args<I, T>(args: I) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { EXIT_FAILED } else { EXIT_OK };
        }
    };
    init_logging(cli.verbose);
    match cli.command {
        Command::Validate { pipelines } => validate(&pipelines),
        Command::Plan { pipeline, limit } => plan(&pipeline, limit),
        Command::Run(args) => run(&args),
        Command::Emulator(args) => emulator(&args),
        Command::Export(args) => export(&args),
        Command::Doctor(args) => doctor(&args),
        Command::Verify(args) => verify(&args),
        Command::Undo(args) => undo(&args),
        Command::Reconcile(args) => reconcile(&args),
        Command::Status {
            pipeline,
            state_dir,
            json,
        } => status(&pipeline, state_dir.as_deref(), json),
        Command::Schema => {
            let schema =
                serde_json::to_string_pretty(&crate::pipeline::json_schema()).expect("JSON");
            print_out(&format!("{schema}\n"))
        }
        Command::Completions { shell } => write_raw(completion_script(shell).as_bytes()),
        Command::Man { dir } => man(dir.as_deref()),
    }
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(stderr_in_colour())
        .with_target(false)
        .without_time()
        .with_writer(|| engine::progress::LogWriter)
        .try_init();
}

/// Colours on stderr only for a terminal, and never with `NO_COLOR` set (no-color.org).
fn stderr_in_colour() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Writes to stdout; a closed pipe (`| head`) ends quietly.
/// The completion script for `shell`. Bash's is mended: clap_complete names the states of a
/// hyphenated program's subcommands one way where it sets them (`gleap__etl__subcmd__run`)
/// and another where it matches them (`gleap__subcmd__etl__subcmd__run`), so no option of a
/// command would complete (clap-rs/clap#6421, open for clap_complete 4.6).
fn completion_script(shell: clap_complete::Shell) -> String {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "gleap-etl", &mut script);
    let script = String::from_utf8_lossy(&script).into_owned();
    match shell {
        clap_complete::Shell::Bash => script.replace("gleap__subcmd__etl", "gleap__etl"),
        _ => script,
    }
}

/// `man`: the page of gleap-etl on stdout, or every page (gleap-etl and one per command,
/// which it names) written into `dir`.
fn man(dir: Option<&Path>) -> i32 {
    let render = |cmd: clap::Command| -> std::io::Result<Vec<u8>> {
        let mut page = Vec::new();
        clap_mangen::Man::new(cmd).render(&mut page)?;
        Ok(page)
    };
    let cli = Cli::command();
    let Some(dir) = dir else {
        return match render(cli) {
            Ok(page) => write_raw(&page),
            Err(e) => {
                eprintln!("error: cannot render the man page: {e}");
                EXIT_FAILED
            }
        };
    };
    if let Err(e) = crate::dirs::create(dir, "--dir") {
        eprintln!("error: {e}");
        return EXIT_FAILED;
    }
    let mut pages = vec![("gleap-etl".to_string(), cli.clone())];
    for sub in cli.get_subcommands().filter(|s| s.get_name() != "help") {
        let name = format!("gleap-etl-{}", sub.get_name());
        pages.push((name.clone(), sub.clone().name(name)));
    }
    for (name, cmd) in pages {
        let path = dir.join(format!("{name}.1"));
        if let Err(e) = render(cmd).and_then(|page| std::fs::write(&path, page)) {
            eprintln!("error: {}: {e}", path.display());
            return EXIT_FAILED;
        }
        eprintln!("{}", path.display());
    }
    EXIT_OK
}

/// Bytes to stdout as they are (a script, a man page: nothing in them comes from the
/// environment, so nothing is redacted).
fn write_raw(bytes: &[u8]) -> i32 {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => EXIT_OK,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => EXIT_OK,
        Err(e) => {
            eprintln!("error: cannot write to stdout: {e}");
            EXIT_FAILED
        }
    }
}

fn print_out(text: &str) -> i32 {
    let text = crate::redact::redact(text);
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => EXIT_OK,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => EXIT_OK,
        Err(e) => {
            eprintln!("error: cannot write to stdout: {e}");
            EXIT_FAILED
        }
    }
}

fn load(path: &Path) -> Result<Pipeline, i32> {
    Pipeline::load(path).map_err(|e| {
        eprintln!("{e}");
        EXIT_FAILED
    })
}

fn validate(paths: &[PathBuf]) -> i32 {
    let mut code = EXIT_OK;
    for path in paths {
        match Pipeline::load(path) {
            Ok(p) => {
                let n = p.config.streams.len();
                let code = print_out(&format!(
                    "{}: ok ({n} stream{})\n",
                    path.display(),
                    if n == 1 { "" } else { "s" }
                ));
                if code != EXIT_OK {
                    return code;
                }
            }
            Err(crate::Error::Config(errors)) => {
                eprintln!("{errors}");
                eprintln!(
                    "{}: {} problem{}",
                    path.display(),
                    errors.errors.len(),
                    if errors.errors.len() == 1 { "" } else { "s" }
                );
                code = EXIT_FAILED;
            }
            Err(e) => {
                eprintln!("{e}");
                code = EXIT_FAILED;
            }
        }
    }
    code
}

fn plan(path: &Path, limit: usize) -> i32 {
    let pipeline = match load(path) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let mut out = String::new();
    let mut code = EXIT_OK;
    for (preview, stream) in engine::plan(&pipeline, limit)
        .iter()
        .zip(&pipeline.config.streams)
    {
        out.push_str(&format!(
            "# stream {}: {} -> {}{}: the first {} record{} {}\n",
            preview.name,
            stream.source.kind(),
            stream.sink.kind(),
            stream
                .sink
                .path()
                .map(|p| format!(" {p}"))
                .unwrap_or_default(),
            preview.records.len(),
            if preview.records.len() == 1 { "" } else { "s" },
            if stream.sink.writes_gleap() {
                "as the request bodies Gleap will get (<stream key> stands for the Gleap id of that stream's record)"
            } else {
                "as the sink will get them"
            },
        ));
        // Records bound for Gleap are shown as the bodies that will be sent.
        let gleap = stream
            .sink
            .gleap()
            .map(|g| crate::sinks::gleap::Preparer::preview(&preview.name, g));
        for record in &preview.records {
            match &gleap {
                Some(preparer) => match preparer.prepare(record.clone()) {
                    Ok(p) => {
                        out.push_str(&serde_json::to_string(&p.body).expect("records are JSON"))
                    }
                    Err((reason, _)) => {
                        eprintln!(
                            "{}: a record would go to the dead-letter file (sink): {reason}",
                            preview.name
                        );
                        code = code.max(EXIT_DEAD_LETTERS);
                        continue;
                    }
                },
                None => out.push_str(&serde_json::to_string(record).expect("records are JSON")),
            }
            out.push('\n');
        }
        for d in &preview.dead_letters {
            let at = d.line.map_or(format!("{} row {}", d.file, d.row), |l| {
                format!("{}:{l}", d.file)
            });
            eprintln!(
                "{}: {at}: would go to the dead-letter file ({}): {}",
                preview.name, d.stage, d.reason
            );
            code = code.max(EXIT_DEAD_LETTERS);
        }
        if let Some(e) = &preview.error {
            eprintln!("{}: {e}", preview.name);
            code = EXIT_FAILED;
        }
    }
    match print_out(&out) {
        EXIT_OK => code,
        other => other,
    }
}

fn run(args: &RunArgs) -> i32 {
    let pipeline = match load(&args.pipeline) {
        Ok(p) => p,
        Err(code) => return code,
    };
    if args.sample.is_some() && args.prune.is_some() {
        eprintln!(
            "error: --prune follows deletions of a whole source; a --sample run reads only its sample, so it cannot prune: run without one of them"
        );
        return EXIT_FAILED;
    }
    let sample = match args.sample {
        None => None,
        Some(n) => match crate::sample::select(&pipeline, n, args.seed) {
            Ok(sample) => {
                if !args.flags.quiet {
                    eprint!("{}", sample.table());
                }
                Some(Arc::new(sample))
            }
            Err(e) => {
                eprintln!("error: {e}");
                return EXIT_FAILED;
            }
        },
    };
    let prune = args.prune.map(|mode| crate::prune::PruneOptions {
        mode,
        sessions: args.prune_sessions,
    });
    run_pipeline(&pipeline, &args.flags, prune, sample)
}

/// `export ENTITY --out DIR`: the pipeline of `pipelines/export_<entity>.yaml`, built from
/// the arguments as typed configs and checked as a pipeline file is.
fn export(args: &ExportArgs) -> i32 {
    match export_pipeline(args) {
        Ok(p) => run_pipeline(&p, &args.flags, None, None),
        Err(e) => {
            eprintln!("{e}");
            EXIT_FAILED
        }
    }
}

fn export_pipeline(args: &ExportArgs) -> std::result::Result<Pipeline, String> {
    use crate::config::Spanned;
    use crate::pipeline::{PipelineConfig, StreamConfig};
    use crate::sinks::parquet::{DatasetConfig, Granularity, PartitionBy};
    let entity = args.entity.name();
    let mut source = crate::sources::gleap::GleapSourceConfig::new(args.entity);
    source.page_size = args.page_size;
    source.incremental = args.incremental;
    source.since = args.since.clone();
    let partition_by = match &args.partition_by {
        None => None,
        Some(p) => {
            let (field, granularity) = p.split_once(':').unwrap_or((p, "month"));
            let granularity = match granularity {
                "day" => Granularity::Day,
                "month" => Granularity::Month,
                "year" => Granularity::Year,
                other => {
                    return Err(format!(
                        "error: --partition-by {p}: `{other}` is not a granularity: day, month or year"
                    ));
                }
            };
            let field = crate::record::FieldPath::parse(field)
                .map_err(|e| format!("error: --partition-by {p}: {e}"))?;
            Some(PartitionBy { field, granularity })
        }
    };
    let mut sink = crate::sinks::parquet::ParquetSinkConfig::new(args.out.display().to_string());
    sink.dataset = Some(DatasetConfig {
        part_rows: args.part_rows,
        partition_by,
        snapshot: args.snapshot,
        schema: args.schema,
        ..DatasetConfig::default()
    });
    sink.row_group_mib = 16;
    sink.rest = Some("otherFields".into());
    sink.flatten = args
        .flatten
        .iter()
        .map(|f| {
            crate::record::FieldPath::parse(f).map_err(|e| format!("error: --flatten {f}: {e}"))
        })
        .collect::<std::result::Result<_, _>>()?;
    // Custom fields are what each Gleap project adds: each gets a typed column, and with
    // `--schema evolve` a field added later gets one in the parts from then on.
    let has_custom_data = matches!(
        args.entity,
        crate::sinks::gleap::Entity::Sessions | crate::sinks::gleap::Entity::Tickets
    );
    if has_custom_data && !args.no_custom_columns {
        sink.flatten
            .push(crate::record::FieldPath::parse("customData.*").expect("a field path"));
    }
    let config = PipelineConfig {
        version: Spanned::new(crate::pipeline::FORMAT_VERSION),
        name: Spanned::new(format!("export-{entity}")),
        state_dir: Some(format!(".gleap-etl/export-{entity}")),
        gleap: None,
        streams: vec![StreamConfig {
            name: Spanned::new(entity.to_string()),
            needs: Vec::new(),
            source: crate::sources::SourceConfig::Gleap(source),
            transforms: Vec::new(),
            sink: crate::sinks::SinkConfig::Parquet(sink),
            jq_timeout_ms: None,
            jq_max_outputs: None,
        }],
    };
    // Problems are named by the flag that set the option.
    const FLAGS: [(&str, &str); 5] = [
        ("streams[0].source.gleap.since", "--since"),
        ("streams[0].source.gleap.page_size", "--page-size"),
        ("streams[0].sink.parquet.dataset.part_rows", "--part-rows"),
        (
            "streams[0].sink.parquet.dataset.partition_by",
            "--partition-by",
        ),
        ("streams[0].sink.parquet.flatten", "--flatten"),
    ];
    Pipeline::from_config(config, Path::new(&format!("<export {entity}>"))).map_err(|e| {
        let lines: Vec<String> = e
            .errors
            .iter()
            .map(|e| {
                let message = crate::redact::redact(&e.message);
                match FLAGS.iter().find(|(path, _)| message.starts_with(path)) {
                    Some((path, flag)) => format!("error: {flag}{}", &message[path.len()..]),
                    None => format!("error: export {entity}: {message}"),
                }
            })
            .collect();
        lines.join("\n")
    })
}

fn run_pipeline(
    pipeline: &Pipeline,
    args: &RunFlags,
    prune: Option<crate::prune::PruneOptions>,
    sample: Option<Arc<crate::sample::Sample>>,
) -> i32 {
    // Checked before anything runs: a report that cannot be written must not fail a run
    // that has done its work.
    if let Some(dir) = args
        .report
        .as_deref()
        .and_then(Path::parent)
        .filter(|d| !d.as_os_str().is_empty())
        && let Err(e) = crate::dirs::create(dir, "--report folder")
    {
        eprintln!("error: {e}");
        return EXIT_FAILED;
    }
    // One run per state dir: a second one would send the same records again.
    let state_dir = pipeline.state_dir(args.state_dir.as_deref());
    let _lock = match crate::dirs::StateDirLock::acquire(&state_dir) {
        Ok(lock) => lock,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_FAILED;
        }
    };
    // The first Ctrl-C (or SIGTERM, SIGHUP) stops the streams cleanly: what is confirmed is
    // kept, no half-written output replaces an old one; a second one ends the process at once.
    let interrupt = Arc::new(AtomicBool::new(false));
    let flag = interrupt.clone();
    if let Err(e) = ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!(
            "\ninterrupted: stopping; what is confirmed is kept, unfinished outputs are left as they were (interrupt again to quit at once)"
        );
    }) {
        tracing::debug!("no Ctrl-C handler: {e}");
    }
    let mut emulator = None;
    let mut gleap_target = None;
    if args.emulator {
        let quota = match args.emulator_quota.as_str() {
            "unlimited" | "off" | "none" => None,
            q => match q.parse::<crate::emulator::Quota>() {
                Ok(q) => Some(q),
                Err(e) => {
                    eprintln!("error: --emulator-quota: {e}");
                    return EXIT_FAILED;
                }
            },
        };
        let faults = match args
            .emulator_faults
            .as_deref()
            .map(|f| parse_faults(f, fastrand::u64(..)))
        {
            None => Default::default(),
            Some(Ok(f)) => f,
            Some(Err(e)) => {
                eprintln!("error: --emulator-faults {e}");
                return EXIT_FAILED;
            }
        };
        let quirks = match args.emulator_quirks.as_deref().map(parse_quirks) {
            None => Default::default(),
            Some(Ok(q)) => q,
            Some(Err(e)) => {
                eprintln!("error: --emulator-quirks {e}");
                return EXIT_FAILED;
            }
        };
        let config = crate::emulator::EmulatorConfig {
            quota,
            faults,
            quirks,
            data_file: Some(state_dir.join("emulator.json")),
            ..Default::default()
        };
        match crate::emulator::BackgroundEmulator::start(config) {
            Ok(e) => {
                if !args.quiet {
                    eprintln!(
                        "embedded Gleap emulator at {} (data in {})",
                        e.base_url,
                        state_dir.join("emulator.json").display()
                    );
                }
                gleap_target = Some(engine::GleapTarget {
                    base_url: e.base_url.clone(),
                    api_key: crate::gleap::client::Secret::new(e.api_key.clone()),
                    project: e.project.clone(),
                });
                emulator = Some(e);
            }
            Err(e) => {
                eprintln!("error: {e}");
                return EXIT_FAILED;
            }
        }
    }
    let options = RunOptions {
        state_dir: args.state_dir.clone(),
        max_errors: args.max_errors,
        progress: !args.no_progress && !args.quiet,
        interrupt: Some(interrupt),
        gleap_target,
        adopt_existing: args.adopt_existing,
        prune,
        sample,
    };
    let mut report = engine::run(pipeline, &options);
    if !args.quiet {
        eprint!("{}", report.human());
    }
    if let Some(emulator) = emulator {
        match emulator.stop() {
            Ok(stats) => {
                if !args.quiet {
                    eprintln!(
                        "emulator now holds {} sessions, {} tickets, {} messages ({} requests answered, {} with 429, {} faults); {} messages created out of thread order, {} sessions sharing a userId",
                        stats["entities"]["sessions"],
                        stats["entities"]["tickets"],
                        stats["entities"]["messages"],
                        stats["total_requests"],
                        stats["rate_limited"],
                        ["errors", "resets", "lost_responses"]
                            .iter()
                            .filter_map(|k| stats["faults"][k].as_u64())
                            .sum::<u64>(),
                        stats["messages_out_of_order"],
                        stats["sessions_sharing_a_user_id"]["user_ids"],
                    );
                    let help = &stats["help_centre"];
                    if help["collections"].as_u64().unwrap_or(0) > 0 {
                        eprintln!(
                            "emulator help centre: {} collections, {} articles",
                            help["collections"], help["articles"]
                        );
                    }
                    if stats["uploads"]["uploads"].as_u64().unwrap_or(0) > 0 {
                        eprintln!(
                            "emulator received {} uploads: {} distinct contents, {} duplicates",
                            stats["uploads"]["uploads"],
                            stats["uploads"]["distinct_contents"],
                            stats["uploads"]["duplicate_uploads"],
                        );
                    }
                }
                report.emulator = Some(stats);
            }
            Err(e) => eprintln!("warning: the emulator: {e}"),
        }
    }
    if let Some(error) = &report.error {
        eprintln!("error: {error}");
    }
    if let Some(path) = &args.report {
        let json = serde_json::to_string_pretty(&report).expect("reports are JSON");
        if let Err(e) = std::fs::write(path, crate::redact::redact(&json).into_owned() + "\n") {
            eprintln!("error: cannot write the report to {}: {e}", path.display());
            return EXIT_FAILED;
        }
    }
    report.exit_code
}

fn emulator(args: &EmulatorArgs) -> i32 {
    use crate::emulator::{Emulator, EmulatorConfig, FaultConfig, Quota};
    let quota = match args.quota.as_str() {
        "unlimited" | "off" | "none" => None,
        q => match q.parse::<Quota>() {
            Ok(q) => Some(q),
            Err(e) => {
                eprintln!("error: --quota: {e}");
                return EXIT_FAILED;
            }
        },
    };
    let shares = [
        ("--fail-5xx", args.fail_5xx),
        ("--fail-reset", args.fail_reset),
        ("--fail-lost", args.fail_lost),
    ];
    if let Err(e) = check_shares(&shares) {
        eprintln!("error: {e}");
        return EXIT_FAILED;
    }
    let seed = args.seed.unwrap_or_else(|| fastrand::u64(..));
    let config = EmulatorConfig {
        addr: args.addr,
        api_key: args.api_key.clone(),
        project: args.project.clone(),
        quota,
        retry_after: !args.no_retry_after,
        faults: FaultConfig {
            error_rate: args.fail_5xx,
            reset_rate: args.fail_reset,
            lost_rate: args.fail_lost,
            latency: std::time::Duration::from_millis(args.latency_ms),
            latency_jitter: std::time::Duration::from_millis(args.latency_jitter_ms),
            seed,
        },
        data_file: args.data.clone(),
        generate_sessions: args.generate_sessions,
        quirks: args.quirks.quirks(),
        ..EmulatorConfig::default()
    };
    let Some(runtime) = runtime(&mut tokio::runtime::Builder::new_multi_thread()) else {
        return EXIT_FAILED;
    };
    runtime.block_on(async {
        let emulator = match Emulator::start(config).await {
            Ok(e) => e,
            Err(e) => {
                eprintln!("error: {e}");
                return EXIT_FAILED;
            }
        };
        if !emulator.addr().ip().is_loopback() {
            eprintln!(
                "warning: listening on {}, not loopback: anyone who reaches it can use the API key",
                emulator.addr()
            );
        }
        let quota = quota.map_or("unlimited".to_string(), |q| {
            format!("{} requests per {} s", q.requests, q.window.as_secs_f64())
        });
        let faults = if shares.iter().all(|(_, s)| *s == 0.0) && args.latency_ms == 0 {
            "none".to_string()
        } else {
            format!(
                "5xx {:.1}%, resets {:.1}%, lost answers {:.1}%, latency {} ms (+ up to {} ms)",
                args.fail_5xx * 100.0,
                args.fail_reset * 100.0,
                args.fail_lost * 100.0,
                args.latency_ms,
                args.latency_jitter_ms
            )
        };
        println!("Gleap API v3 emulator listening on {}", emulator.base_url());
        println!();
        println!("  export GLEAP_BASE_URL={}", emulator.base_url());
        println!("  export GLEAP_API_KEY={}", emulator.api_key());
        println!("  export GLEAP_PROJECT_ID={}", emulator.project());
        println!();
        println!(
            "quota: {quota}{}",
            if args.no_retry_after {
                " (no Retry-After)"
            } else {
                ""
            }
        );
        println!("faults: {faults} (seed {seed})");
        let quirks = args.quirks.quirks().describe();
        if !quirks.is_empty() {
            println!("harder than Gleap may be: {}", quirks.join("; "));
        }
        println!(
            "stats: http://{}/__emulator/stats   dump: http://{}/__emulator/dump",
            emulator.addr(),
            emulator.addr()
        );
        if let Some(data) = &args.data {
            println!("data: {}", data.display());
        }
        println!("Ctrl-C to stop.");
        let _ = std::io::stdout().flush();
        let _ = tokio::signal::ctrl_c().await;
        match emulator.shutdown().await {
            Ok(()) => EXIT_OK,
            Err(e) => {
                eprintln!("error: {e}");
                EXIT_FAILED
            }
        }
    })
}

fn doctor(args: &DoctorArgs) -> i32 {
    let quirks = args.quirks.quirks();
    if quirks != crate::emulator::Quirks::default() && !args.emulator {
        eprintln!(
            "error: --page-cap, --ignore-skip, --ignore-filter and --index-lag-ms go with --emulator"
        );
        return EXIT_FAILED;
    }
    let mut config = match &args.pipeline {
        Some(path) => match load(path) {
            Ok(p) => p.config.gleap.clone().unwrap_or_default(),
            Err(code) => return code,
        },
        None => Default::default(),
    };
    let mut emulator = None;
    if args.emulator {
        let started = crate::emulator::BackgroundEmulator::start(crate::emulator::EmulatorConfig {
            quirks,
            generate_sessions: 250,
            ..Default::default()
        });
        match started {
            Ok(e) => {
                config.base_url = Some(e.base_url.clone());
                config.api_key = Some(e.api_key.clone());
                config.project = Some(e.project.clone());
                emulator = Some(e);
            }
            Err(e) => {
                eprintln!("error: {e}");
                return EXIT_FAILED;
            }
        }
    }
    let settings = match config.resolve(&|name| std::env::var(name).ok()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_FAILED;
        }
    };
    let options = crate::doctor::DoctorOptions {
        record: args.record.clone(),
        lookup_settle: settings.lookup_settle,
    };
    let client = match crate::gleap::client::GleapClient::new(settings) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_FAILED;
        }
    };
    let Some(runtime) = runtime(&mut tokio::runtime::Builder::new_current_thread()) else {
        return EXIT_FAILED;
    };
    let report = match runtime.block_on(crate::doctor::examine(&client, &options)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: doctor --record: {e}");
            return EXIT_FAILED;
        }
    };
    drop(emulator);
    let text = if args.json {
        serde_json::to_string_pretty(&report).expect("JSON") + "\n"
    } else {
        report.table()
    };
    match print_out(&text) {
        EXIT_OK if report.failed() => EXIT_DEAD_LETTERS,
        code => code,
    }
}

impl RunStateArgs {
    /// The pipeline, and with `--emulator` the embedded emulator and the target that
    /// points at it; a failure is printed and answered with its exit code.
    #[allow(clippy::type_complexity)]
    fn open(
        &self,
    ) -> Result<
        (
            Pipeline,
            Option<crate::emulator::BackgroundEmulator>,
            Option<engine::GleapTarget>,
        ),
        i32,
    > {
        let pipeline = load(&self.pipeline)?;
        let (emulator, target) =
            embedded_emulator(&pipeline, self.state_dir.as_deref(), self.emulator)?;
        Ok((pipeline, emulator, target))
    }
}

/// `--emulator` of `verify` and `undo`: the embedded emulator over what `run --emulator`
/// wrote (<state_dir>/emulator.json), and the target that points at it.
fn embedded_emulator(
    pipeline: &Pipeline,
    state_dir: Option<&std::path::Path>,
    wanted: bool,
) -> Result<
    (
        Option<crate::emulator::BackgroundEmulator>,
        Option<engine::GleapTarget>,
    ),
    i32,
> {
    if !wanted {
        return Ok((None, None));
    }
    let data = pipeline.state_dir(state_dir).join("emulator.json");
    if !data.exists() {
        eprintln!(
            "error: --emulator: no {} (run the pipeline with --emulator first)",
            data.display()
        );
        return Err(EXIT_FAILED);
    }
    let config = crate::emulator::EmulatorConfig {
        quota: None,
        data_file: Some(data),
        ..Default::default()
    };
    match crate::emulator::BackgroundEmulator::start(config) {
        Ok(e) => {
            let target = engine::GleapTarget {
                base_url: e.base_url.clone(),
                api_key: crate::gleap::client::Secret::new(e.api_key.clone()),
                project: e.project.clone(),
            };
            Ok((Some(e), Some(target)))
        }
        Err(e) => {
            eprintln!("error: {e}");
            Err(EXIT_FAILED)
        }
    }
}

fn undo(args: &UndoArgs) -> i32 {
    use std::io::{BufRead, IsTerminal};
    let (pipeline, emulator, gleap_target) = match args.target.open() {
        Ok(opened) => opened,
        Err(code) => return code,
    };
    let options = crate::undo::UndoOptions {
        state_dir: args.target.state_dir.clone(),
        run: args.run,
        gleap_target,
    };
    let mut undo = match crate::undo::plan(&pipeline, &options) {
        Ok(u) => u,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_FAILED;
        }
    };
    eprint!("{}", undo.describe());
    let n = undo.to_delete();
    if n == 0 {
        eprintln!("nothing to delete");
    } else if !args.yes {
        if !std::io::stdin().is_terminal() {
            eprintln!(
                "error: undo deletes {n} records from Gleap and asks first, but no terminal can answer: add --yes"
            );
            return EXIT_FAILED;
        }
        eprint!("Delete these {n} records from Gleap? [y/N] ");
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        let _ = std::io::stdin().lock().read_line(&mut answer);
        if !matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
            eprintln!("nothing deleted");
            return EXIT_FAILED;
        }
    }
    let result = if n == 0 { Ok(()) } else { undo.execute() };
    drop(emulator);
    let code = match print_out(&undo.report()) {
        EXIT_OK if undo.failed() => EXIT_DEAD_LETTERS,
        code => code,
    };
    match result {
        Ok(()) => code,
        Err(e) => {
            eprintln!("error: {e}");
            EXIT_FAILED
        }
    }
}

fn reconcile(args: &ReconcileArgs) -> i32 {
    let (pipeline, emulator, gleap_target) = match args.target.open() {
        Ok(opened) => opened,
        Err(code) => return code,
    };
    let options = crate::reconcile::ReconcileOptions {
        state_dir: args.target.state_dir.clone(),
        gleap_target,
    };
    let result = crate::reconcile::reconcile(&pipeline, &options, |_, estimate| {
        eprintln!("reconcile {}: {estimate}", pipeline.name());
    });
    drop(emulator);
    let report = result.map(|r| {
        let (table, code) = (r.table(), r.exit_code());
        (r, table, code)
    });
    print_report(report, args.json)
}

fn verify(args: &VerifyArgs) -> i32 {
    let (pipeline, emulator, gleap_target) = match args.target.open() {
        Ok(opened) => opened,
        Err(code) => return code,
    };
    let options = crate::verify::VerifyOptions {
        state_dir: args.target.state_dir.clone(),
        sample: args.sample,
        seed: args.seed,
        gleap_target,
    };
    let result = crate::verify::verify(&pipeline, &options, |estimate| {
        eprintln!("verify {}: {}", pipeline.name(), estimate.describe());
    });
    drop(emulator);
    let report = result.map(|r| {
        let (table, code) = (r.table(), r.exit_code());
        (r, table, code)
    });
    print_report(report, args.json)
}

/// A command's findings on stdout, as JSON or as its table, and its exit code; or the error.
fn print_report<R: serde::Serialize>(
    report: crate::error::Result<(R, String, i32)>,
    json: bool,
) -> i32 {
    let (report, table, code) = match report {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_FAILED;
        }
    };
    let text = if json {
        serde_json::to_string_pretty(&report).expect("JSON") + "\n"
    } else {
        table
    };
    match print_out(&text) {
        EXIT_OK => code,
        failed => failed,
    }
}

/// An async runtime for a command, or `None` after saying why there is none.
fn runtime(builder: &mut tokio::runtime::Builder) -> Option<tokio::runtime::Runtime> {
    builder
        .enable_all()
        .build()
        .inspect_err(|e| eprintln!("error: cannot start the async runtime: {e}"))
        .ok()
}

fn status(path: &Path, state_dir: Option<&Path>, json: bool) -> i32 {
    let pipeline = match load(path) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let dir = pipeline.state_dir(state_dir);
    if !dir.join("state.sqlite").exists() {
        if json {
            eprintln!(
                "error: {}: no state yet in {} (no run has written to Gleap)",
                pipeline.name(),
                dir.display()
            );
            return EXIT_FAILED;
        }
        return print_out(&format!(
            "{}: no state yet in {} (no run has written to Gleap)\n",
            pipeline.name(),
            dir.display()
        ));
    }
    let streams: Vec<(String, bool)> = pipeline
        .config
        .streams
        .iter()
        .map(|s| (s.name.value.clone(), s.sink.writes_gleap()))
        .collect();
    let report = crate::state::StateStore::open(&dir)
        .and_then(|store| store.status_report(pipeline.name(), &streams, 5));
    match report {
        Ok(r) if json => print_out(&(serde_json::to_string_pretty(&r).expect("JSON") + "\n")),
        Ok(r) => print_out(&r.text()),
        Err(e) => {
            eprintln!("error: {e}");
            EXIT_FAILED
        }
    }
}
