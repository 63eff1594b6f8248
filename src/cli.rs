//! The command line: `validate`, `plan`, `run` and `schema`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::{Args, Parser, Subcommand};

use crate::config::Pipeline;
use crate::engine::{self, EXIT_DEAD_LETTERS, EXIT_FAILED, EXIT_OK, RunOptions};

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
    /// Print the JSON Schema of the pipeline format (for editors).
    Schema,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    pub pipeline: PathBuf,
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
    /// Print nothing but errors.
    #[arg(short, long)]
    pub quiet: bool,
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
        Command::Schema => {
            let schema = serde_json::to_string_pretty(&crate::config::json_schema()).expect("JSON");
            print_out(&format!("{schema}\n"))
        }
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
        .with_target(false)
        .without_time()
        .with_writer(|| engine::progress::LogWriter)
        .try_init();
}

/// Writes to stdout; a closed pipe (`| head`) ends quietly.
fn print_out(text: &str) -> i32 {
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
            "# stream {}: {} -> {}{}: the first {} record{} as the sink will get them\n",
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
        ));
        for record in &preview.records {
            out.push_str(&serde_json::to_string(record).expect("records are JSON"));
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
    // The first Ctrl-C stops the streams cleanly (no half-written output); a second one
    // ends the process at once.
    let interrupt = Arc::new(AtomicBool::new(false));
    let flag = interrupt.clone();
    if let Err(e) = ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("\ninterrupted: stopping (Ctrl-C again to quit at once)");
    }) {
        tracing::debug!("no Ctrl-C handler: {e}");
    }
    let options = RunOptions {
        state_dir: args.state_dir.clone(),
        max_errors: args.max_errors,
        progress: !args.no_progress && !args.quiet,
        interrupt: Some(interrupt),
    };
    let report = engine::run(&pipeline, &options);
    if !args.quiet {
        eprint!("{}", report.human());
    }
    if let Some(error) = &report.error {
        eprintln!("error: {error}");
    }
    if let Some(path) = &args.report {
        let json = serde_json::to_string_pretty(&report).expect("reports are JSON");
        if let Err(e) = std::fs::write(path, json + "\n") {
            eprintln!("error: cannot write the report to {}: {e}", path.display());
            return EXIT_FAILED;
        }
    }
    report.exit_code
}
