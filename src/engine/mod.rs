//! Runs pipelines: streams start once the streams they need have finished, independent
//! streams run side by side, and the run ends with a report. `plan` does the same reading
//! and transforming but keeps the first records instead of writing anything.

pub mod progress;
pub mod report;
pub mod stream;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::dead_letter::{DeadLetter, DeadLetters};
use crate::error::{Error, Result};
use crate::pipeline::Pipeline;
use crate::record::Record;
use crate::sinks::gleap::GleapRun;
use crate::sources::OpenedSource;
use crate::state::StateStore;
use progress::Progress;
use report::{RunReport, RunStatus, StreamReport, StreamStatus};
use stream::{StreamRun, Target, run_stream};

/// Exit codes: everything written; finished with dead-lettered records; failed.
pub const EXIT_OK: i32 = 0;
pub const EXIT_DEAD_LETTERS: i32 = 1;
pub const EXIT_FAILED: i32 = 2;

/// How to run a pipeline.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Overrides the pipeline's `state_dir`.
    pub state_dir: Option<PathBuf>,
    /// Stop once more than this many records went to the dead-letter file.
    pub max_errors: Option<u64>,
    /// Draw progress bars (when stderr is a terminal).
    pub progress: bool,
    /// Set (by a Ctrl-C handler) to stop the run: streams stop at their next batch and their
    /// outputs are left as they were.
    pub interrupt: Option<Arc<AtomicBool>>,
    /// Where Gleap sinks write instead of the pipeline's `gleap:` target (`--emulator`).
    pub gleap_target: Option<GleapTarget>,
    /// Gleap sinks look up every record the state store does not know (`--adopt-existing`).
    pub adopt_existing: bool,
    /// After a run that read its whole source, archive or delete what the pipeline created
    /// that is gone from it (`--prune`, [`crate::prune`]).
    pub prune: Option<crate::prune::PruneOptions>,
    /// `--sample`: Gleap sessions, tickets and messages sinks get only the records of the
    /// sample; other streams do not run.
    pub sample: Option<Arc<crate::sample::Sample>>,
}

/// A Gleap API to talk to.
#[derive(Debug, Clone)]
pub struct GleapTarget {
    pub base_url: String,
    pub api_key: crate::gleap::client::Secret,
    pub project: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Waiting,
    Running,
    Succeeded,
    Failed,
    Skipped,
}

/// Runs every stream of the pipeline. Always returns a report; its `exit_code` says how it
/// went.
pub fn run(pipeline: &Pipeline, options: &RunOptions) -> RunReport {
    stream::contain_thread_panics();
    let started = Instant::now();
    let state_dir = pipeline.state_dir(options.state_dir.as_deref());
    let mut report = RunReport {
        pipeline: pipeline.name().to_string(),
        file: pipeline.file.clone(),
        started_at: crate::record::format_timestamp(&chrono::Utc::now()),
        elapsed_secs: 0.0,
        status: RunStatus::Failed,
        exit_code: EXIT_FAILED,
        records_read: 0,
        records_written: 0,
        dead_lettered: 0,
        dead_letter_file: Some(state_dir.join("dead-letter.jsonl")),
        peak_memory_bytes: None,
        streams: Vec::new(),
        error: None,
        emulator: None,
        prune: None,
        sample: options.sample.clone(),
    };
    let finish = |mut report: RunReport| {
        report.elapsed_secs = started.elapsed().as_secs_f64();
        report.peak_memory_bytes = report::peak_memory_bytes();
        report
    };

    let shared = match Shared::open(pipeline, &state_dir, options) {
        Ok(s) => s,
        Err(e) => {
            report.error = Some(e.to_string());
            return finish(report);
        }
    };
    let run_id = shared
        .gleap
        .as_ref()
        .and_then(|g| g.store.begin_run(pipeline.name(), &report.started_at).ok());
    // What `verify` checks next: the sample this run writes, or (a full run) everything.
    if let (Some(g), Some(id)) = (&shared.gleap, run_id) {
        let recorded = match &options.sample {
            Some(sample) => g.store.set_sample(id, &sample.streams),
            None => g.store.clear_sample(),
        };
        if let Err(e) = recorded {
            report.error = Some(e.to_string());
            return finish(report);
        }
    }
    let opened = match open_first_inputs(pipeline, &shared, options) {
        Ok(o) => o,
        Err(problems) => {
            report.error = Some(problems);
            return finish(report);
        }
    };

    let cancel = options.interrupt.clone().unwrap_or_default();
    let (reports, mut first_error) = run_streams(pipeline, options, &shared, opened, &cancel);
    if cancel.load(Ordering::Relaxed) && first_error.is_none() {
        first_error = Some(Error::Interrupted);
    }
    if let Err(e) = shared.dead_letters.flush() {
        first_error.get_or_insert(e);
    }
    report.streams = reports;
    report.records_read = report.streams.iter().map(|s| s.read).sum();
    report.records_written = report.streams.iter().map(|s| s.written).sum();
    report.dead_lettered = shared.dead_letters.count();
    if let Some(prune) = options.prune {
        let (pruned, stopped) = prune_after_run(
            pipeline,
            shared.gleap.as_deref(),
            prune,
            &report,
            &first_error,
            &cancel,
        );
        if let Some(e) = stopped {
            first_error.get_or_insert(e.within("prune"));
        }
        report.prune = Some(pruned);
    }
    conclude(&mut report, first_error);
    let report = finish(report);
    if let (Some(g), Some(id)) = (&shared.gleap, run_id) {
        let json = serde_json::to_string(&report).unwrap_or_default();
        let now = crate::record::format_timestamp(&chrono::Utc::now());
        if let Err(e) = g.store.finish_run(id, &now, report.status.name(), &json) {
            tracing::warn!("{e}");
        }
    }
    report
}

/// What the streams of a run share: the Gleap client and state store (Gleap sinks or
/// sources), the state store (datasets), the dead-letter file.
struct Shared {
    gleap: Option<Arc<GleapRun>>,
    state: Option<Arc<StateStore>>,
    dead_letters: DeadLetters,
}

impl Shared {
    fn open(
        pipeline: &Pipeline,
        state_dir: &std::path::Path,
        options: &RunOptions,
    ) -> Result<Shared> {
        crate::dirs::create(state_dir, "state dir")?;
        let gleap = gleap_run(pipeline, state_dir, options)?;
        let has_dataset = pipeline.config.streams.iter().any(|s| s.sink.is_dataset());
        let state = match &gleap {
            Some(g) => Some(g.store.clone()),
            None if has_dataset => Some(Arc::new(StateStore::open(state_dir)?)),
            None => None,
        };
        // A run that resumes an interrupted one keeps the dead letters it already wrote.
        let resuming = state
            .as_deref()
            .is_some_and(|store| resumes_interrupted(pipeline, store));
        let dead_letters = DeadLetters::to_file(
            &state_dir.join("dead-letter.jsonl"),
            options.max_errors,
            resuming,
        )?;
        Ok(Shared {
            gleap,
            state,
            dead_letters,
        })
    }
}

/// Whether a stream of `pipeline` was interrupted: a checkpoint, a dataset replacement or an
/// incremental read left unfinished.
fn resumes_interrupted(pipeline: &Pipeline, store: &StateStore) -> bool {
    pipeline.config.streams.iter().any(|s| {
        let name = &s.name.value;
        store
            .checkpoint(name)
            .ok()
            .flatten()
            .is_some_and(|cp| !cp.complete)
            || store.dataset(name).ok().flatten().is_some_and(|d| {
                d.building_generation.is_some() && d.building_generation != d.current_generation
            })
            || crate::sources::gleap::Cursor::stored(store, name)
                .ok()
                .flatten()
                .is_some_and(|c| !c.complete)
    })
}

/// Whether a stream runs: `None` when a sample run leaves it out; else its sample filter
/// (`None` in a full run).
fn sample_of(
    options: &RunOptions,
    s: &crate::pipeline::StreamConfig,
) -> Option<Option<crate::sample::SampleFilter>> {
    match &options.sample {
        Some(sample) => sample.filter(s).map(Some),
        None => Some(None),
    }
}

/// A stream's input: in batches where the source gives them and the sink takes them (not
/// for a sample, whose filter reads records), else as rows.
fn open_input(
    stream: &crate::pipeline::StreamConfig,
    shared: &Shared,
    sampled: bool,
) -> Result<OpenedSource> {
    if !sampled
        && stream.sink.takes_batches()
        && crate::batch::columnar_enabled()
        && let Some(opened) = stream.source.open_columnar()
    {
        return opened;
    }
    stream
        .source
        .open_for(&stream.name.value, shared.gleap.clone())
}

/// The inputs of the streams that can start at once, opened before anything is written so
/// that a missing file fails the run first; the problems, one a line, if any cannot be.
fn open_first_inputs(
    pipeline: &Pipeline,
    shared: &Shared,
    options: &RunOptions,
) -> std::result::Result<Vec<Option<OpenedSource>>, String> {
    let streams = &pipeline.config.streams;
    let mut opened: Vec<Option<OpenedSource>> = Vec::with_capacity(streams.len());
    let mut problems = Vec::new();
    for s in streams {
        if s.dependencies().is_empty()
            && let Some(sample) = sample_of(options, s)
        {
            match open_input(s, shared, sample.is_some()) {
                Ok(o) => opened.push(Some(o)),
                Err(e) => {
                    problems.push(format!("stream `{}`: {e}", s.name.value));
                    opened.push(None);
                }
            }
        } else {
            opened.push(None);
        }
    }
    if problems.is_empty() {
        Ok(opened)
    } else {
        Err(problems.join("\n"))
    }
}

/// Runs the streams, each on its own thread once the streams it needs succeeded (skipped
/// when one failed), until all are done or the run is cancelled: a report per stream, in
/// the pipeline's order, and the first error.
fn run_streams(
    pipeline: &Pipeline,
    options: &RunOptions,
    shared: &Shared,
    mut opened: Vec<Option<OpenedSource>>,
    cancel: &Arc<AtomicBool>,
) -> (Vec<StreamReport>, Option<Error>) {
    let streams = &pipeline.config.streams;
    let progress = Progress::new(options.progress);
    let mut states = vec![State::Waiting; streams.len()];
    let mut reports: Vec<Option<StreamReport>> = vec![None; streams.len()];
    let mut first_error: Option<Error> = None;
    let index_of = |name: &str| streams.iter().position(|s| s.name.value == name);

    std::thread::scope(|scope| {
        let (done_tx, done_rx) =
            std::sync::mpsc::channel::<(usize, StreamReport, Result<(), Error>)>();
        let mut running = 0usize;
        loop {
            // Skip what cannot run, start what can; repeat until nothing changes.
            let mut changed = true;
            while changed {
                changed = false;
                for i in 0..streams.len() {
                    if states[i] != State::Waiting {
                        continue;
                    }
                    let needs: Vec<usize> = streams[i]
                        .dependencies()
                        .into_iter()
                        .filter_map(index_of)
                        .collect();
                    if let Some(&j) = needs
                        .iter()
                        .find(|&&j| matches!(states[j], State::Failed | State::Skipped))
                    {
                        states[i] = State::Skipped;
                        let why = Error::DependencyFailed {
                            stream: streams[i].name.value.clone(),
                            needs: streams[j].name.value.clone(),
                        };
                        reports[i] = Some(StreamReport::skipped(
                            &streams[i].name.value,
                            why.to_string(),
                        ));
                        changed = true;
                        continue;
                    }
                    if cancel.load(Ordering::Relaxed)
                        || !needs.iter().all(|&j| states[j] == State::Succeeded)
                    {
                        continue;
                    }
                    let Some(sample) = sample_of(options, &streams[i]) else {
                        states[i] = State::Succeeded;
                        reports[i] = Some(StreamReport {
                            name: streams[i].name.value.clone(),
                            status: StreamStatus::NotInSample,
                            ..Default::default()
                        });
                        changed = true;
                        continue;
                    };
                    let source = match opened[i]
                        .take()
                        .map_or_else(|| open_input(&streams[i], shared, sample.is_some()), Ok)
                    {
                        Ok(s) => s,
                        Err(e) => {
                            states[i] = State::Failed;
                            let mut r =
                                StreamReport::skipped(&streams[i].name.value, e.to_string());
                            r.status = StreamStatus::Failed;
                            reports[i] = Some(r);
                            first_error.get_or_insert(e);
                            changed = true;
                            continue;
                        }
                    };
                    states[i] = State::Running;
                    running += 1;
                    changed = true;
                    let run = StreamRun {
                        config: &streams[i],
                        bar: progress.stream(&streams[i].name.value, &source.progress),
                        source,
                        dead_letters: shared.dead_letters.clone(),
                        cancel: cancel.clone(),
                        gleap: shared.gleap.clone(),
                        state: shared.state.clone(),
                        sample,
                    };
                    let done_tx = done_tx.clone();
                    let name = format!("stream-{}", streams[i].name.value);
                    let spawned =
                        std::thread::Builder::new()
                            .name(name)
                            .spawn_scoped(scope, move || {
                                let (report, result) = run_contained(run);
                                let _ = done_tx.send((i, report, result));
                            });
                    if let Err(e) = spawned {
                        states[i] = State::Failed;
                        running -= 1;
                        first_error
                            .get_or_insert(Error::internal(format!("cannot start a thread: {e}")));
                    }
                }
            }
            if running == 0 {
                break;
            }
            let Ok((i, stream_report, result)) = done_rx.recv() else {
                break;
            };
            running -= 1;
            reports[i] = Some(stream_report);
            match result {
                Ok(()) => states[i] = State::Succeeded,
                Err(e) => {
                    states[i] = State::Failed;
                    if matches!(e, Error::TooManyErrors { .. }) {
                        cancel.store(true, Ordering::Relaxed);
                    }
                    if !matches!(e, Error::Interrupted) || first_error.is_none() {
                        first_error = match first_error.take() {
                            Some(Error::Interrupted) | None => Some(e),
                            Some(other) => Some(other),
                        };
                    }
                }
            }
        }
    });
    drop(progress);
    let reports = reports
        .into_iter()
        .zip(streams)
        .map(|(r, s)| {
            r.unwrap_or_else(|| {
                StreamReport::skipped(&s.name.value, "the run stopped before it started".into())
            })
        })
        .collect();
    (reports, first_error)
}

/// Runs one stream; a panic fails it (and keeps its previous output: the unwinding drops
/// the uncommitted one) instead of leaving the run waiting for a stream that never ends.
fn run_contained(run: StreamRun<'_>) -> (StreamReport, Result<(), Error>) {
    let name = run.config.name.value.clone();
    let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run_stream(run, &mut Target::Sink)
    }));
    ran.unwrap_or_else(|panic| {
        let e = Error::internal(format!(
            "stream `{name}` panicked: {}",
            stream::panic_message(&*panic)
        ));
        let mut r = StreamReport::skipped(&name, e.to_string());
        r.status = StreamStatus::Failed;
        (r, Err(e))
    })
}

/// The run's status and exit code from how its streams and prune ended.
fn conclude(report: &mut RunReport, first_error: Option<Error>) {
    let all_ran = report
        .streams
        .iter()
        .all(|s| !matches!(s.status, StreamStatus::Failed | StreamStatus::Skipped));
    (report.status, report.exit_code) = match (&first_error, all_ran, report.dead_lettered) {
        (None, true, 0) => (RunStatus::Ok, EXIT_OK),
        (None, true, _) => (RunStatus::DeadLetters, EXIT_DEAD_LETTERS),
        _ => (RunStatus::Failed, EXIT_FAILED),
    };
    // Records Gleap refused to archive or delete (named in the summary): not all done.
    if report.exit_code == EXIT_OK
        && report
            .prune
            .as_ref()
            .is_some_and(|p| p.streams.iter().any(|s| !s.failed.is_empty()))
    {
        report.exit_code = EXIT_DEAD_LETTERS;
    }
    if report.dead_lettered == 0 {
        report.dead_letter_file = None;
    }
    report.error = first_error.map(|e| e.to_string());
}

/// `--prune`, once every stream has finished: nothing when the run did not read its whole
/// source (the report says why). With the error the prune stopped at, if it did.
fn prune_after_run(
    pipeline: &Pipeline,
    gleap: Option<&GleapRun>,
    options: crate::prune::PruneOptions,
    report: &RunReport,
    first_error: &Option<Error>,
    cancel: &AtomicBool,
) -> (crate::prune::PruneReport, Option<Error>) {
    use crate::prune::{PruneReport, SeenIds};
    let none = SeenIds::default();
    let seen = gleap.and_then(|g| g.prune_seen.as_deref()).unwrap_or(&none);
    let why = crate::prune::blockers(pipeline, &report.streams, first_error.as_ref(), seen);
    match gleap {
        Some(g) if why.is_empty() => crate::prune::prune(pipeline, g, options, seen, cancel),
        _ => (PruneReport::not_run(options, why), None),
    }
}

/// The Gleap client, state store and runtime, when the pipeline has Gleap sinks or sources.
fn gleap_run(
    pipeline: &Pipeline,
    state_dir: &std::path::Path,
    options: &RunOptions,
) -> Result<Option<Arc<GleapRun>>> {
    if !pipeline
        .config
        .streams
        .iter()
        .any(|s| s.sink.writes_gleap() || s.source.reads_gleap())
    {
        return Ok(None);
    }
    let settings = gleap_settings(pipeline, options.gleap_target.as_ref())?;
    let mut run = GleapRun::start(state_dir, settings)?;
    run.adopt_existing = options.adopt_existing;
    run.prune_seen = options.prune.map(|_| Default::default());
    Ok(Some(Arc::new(run)))
}

/// The client settings of the pipeline's `gleap:` block, or of `target` (`--emulator`).
pub fn gleap_settings(
    pipeline: &Pipeline,
    target: Option<&GleapTarget>,
) -> Result<crate::gleap::client::ClientSettings> {
    let config = pipeline.config.gleap.clone().unwrap_or_default();
    let overrides = target.cloned();
    let env = move |name: &str| -> Option<String> {
        if let Some(t) = &overrides {
            match name {
                "GLEAP_BASE_URL" => return Some(t.base_url.clone()),
                "GLEAP_API_KEY" => return Some(t.api_key.expose().to_string()),
                "GLEAP_PROJECT_ID" => return Some(t.project.clone()),
                _ => {}
            }
        }
        std::env::var(name).ok()
    };
    let mut config = config;
    if target.is_some() {
        // --emulator wins over the pipeline's own target.
        config.base_url = None;
        config.api_key = None;
        config.project = None;
    }
    config.resolve(&env)
}

/// What `plan` shows of one stream.
pub struct StreamPreview {
    pub name: String,
    /// The first records as they would reach the sink.
    pub records: Vec<Record>,
    /// Records that would go to the dead-letter file on the way.
    pub dead_letters: Vec<DeadLetter>,
    pub report: StreamReport,
    pub error: Option<String>,
}

/// Reads and transforms the first `limit` records of every stream, in dependency order,
/// writing nothing.
pub fn plan(pipeline: &Pipeline, limit: usize) -> Vec<StreamPreview> {
    let streams = &pipeline.config.streams;
    let mut done: Vec<String> = Vec::new();
    let mut previews = Vec::new();
    while done.len() < streams.len() {
        let next = streams.iter().find(|s| {
            !done.contains(&s.name.value)
                && s.dependencies().iter().all(|n| done.iter().any(|d| d == n))
        });
        let Some(stream) = next else { break };
        done.push(stream.name.value.clone());
        let dead_letters = DeadLetters::in_memory(None);
        let mut target = Target::Preview {
            limit,
            records: Vec::new(),
        };
        let (report, error) = read_stream(stream, &dead_letters, &mut target);
        let Target::Preview { records, .. } = target else {
            unreachable!()
        };
        previews.push(StreamPreview {
            name: stream.name.value.clone(),
            records,
            dead_letters: dead_letters.take(),
            report,
            error: error.map(|e| e.to_string()),
        });
    }
    previews
}

/// Reads stream `stream` through its transforms into `target` (not the sink), writing
/// nothing; its report and why it failed, if it did.
fn read_stream(
    stream: &crate::pipeline::StreamConfig,
    dead_letters: &DeadLetters,
    target: &mut Target,
) -> (StreamReport, Option<Error>) {
    match stream.source.open() {
        Ok(source) => {
            let run = StreamRun {
                config: stream,
                bar: Progress::hidden().stream(&stream.name.value, &source.progress),
                source,
                dead_letters: dead_letters.clone(),
                cancel: Arc::new(AtomicBool::new(false)),
                gleap: None,
                state: None,
                sample: None,
            };
            let (report, result) = run_stream(run, target);
            (report, result.err())
        }
        Err(e) => (
            StreamReport::skipped(&stream.name.value, e.to_string()),
            Some(e),
        ),
    }
}

/// Hands every record of stream `name` (through its transforms) to `each`, keeping none:
/// a whole source read without holding it. Writes nothing (its dead letters stay in
/// memory, then go).
pub fn visit(pipeline: &Pipeline, name: &str, each: &mut dyn FnMut(Record)) -> Result<()> {
    let stream = pipeline
        .config
        .streams
        .iter()
        .find(|s| s.name.value == name)
        .ok_or_else(|| Error::config(format!("no stream `{name}`")))?;
    let dead_letters = DeadLetters::in_memory(None);
    match read_stream(stream, &dead_letters, &mut Target::Visit(each)) {
        (_, None) => Ok(()),
        (_, Some(e)) => Err(e.within(format!("stream `{name}`: cannot read its source"))),
    }
}
