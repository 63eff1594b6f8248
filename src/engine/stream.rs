//! Runs one stream as a pipeline of three threads joined by bounded channels: a reader
//! parses the source into batches, the stream thread pushes them through the transform
//! stages, a writer feeds the sink. Memory stays flat however large the input, and parsing,
//! transforming and encoding use the cores side by side.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;
use std::time::Instant;

use super::progress::StreamBar;
use super::report::{StreamReport, StreamStatus, records};
use crate::dead_letter::{DeadLetter, DeadLetters};
use crate::error::{Error, Result};
use crate::pipeline::StreamConfig;
use crate::record::{Position, Record, Value};
use crate::sinks::{Sink, SinkContext};
use crate::sources::{OpenedSource, SourceItem, SourceIter};
use crate::transforms::{ChainOutput, TransformChain};

/// Records per batch handed between threads.
const BATCH: usize = 1024;
/// Batches in flight between two threads.
const BATCHES_IN_FLIGHT: usize = 4;

/// What the records of a stream are for.
pub enum Target<'a> {
    /// The stream's own sink.
    Sink,
    /// `plan`: keep the first `limit` records, write nothing.
    Preview { limit: usize, records: Vec<Record> },
    /// Hand every record to a function, keep none, write nothing (`run --sample` reading a
    /// whole source).
    Visit(&'a mut dyn FnMut(Record)),
}

/// Everything a stream needs from the run.
pub struct StreamRun<'a> {
    pub config: &'a StreamConfig,
    pub source: OpenedSource,
    pub dead_letters: DeadLetters,
    /// Set when the run is stopping; the stream gives up at the next batch.
    pub cancel: Arc<AtomicBool>,
    pub bar: StreamBar,
    /// The run's Gleap client and state store, when it has Gleap sinks or sources.
    pub gleap: Option<Arc<crate::sinks::gleap::GleapRun>>,
    /// The run's state store, when it needs one (Gleap, datasets).
    pub state: Option<Arc<crate::state::StateStore>>,
    /// `--sample`: only the records of the sample reach the sink.
    pub sample: Option<crate::sample::SampleFilter>,
}

/// Runs the stream to its end; the report says what happened, `Err` only for failures.
pub fn run_stream(run: StreamRun<'_>, target: &mut Target) -> (StreamReport, Result<()>) {
    let started = Instant::now();
    let StreamRun {
        config,
        source,
        dead_letters,
        cancel,
        bar,
        gleap,
        state,
        sample,
    } = run;
    let name = config.name.value.clone();
    let mut report = StreamReport {
        name: name.clone(),
        status: StreamStatus::Ok,
        source: config.source.kind().to_string(),
        files: source
            .files
            .iter()
            .map(|f| f.display().to_string())
            .collect(),
        ..Default::default()
    };
    let dead_before = dead_letters.count_for(&name);
    let stream = Stream {
        name: &name,
        dead_letters: &dead_letters,
        cancel: &cancel,
        bar: &bar,
        sample: sample.as_ref(),
    };

    let result = (|| -> Result<()> {
        let mut chain = TransformChain::build_with(&config.transforms, config.jq_limits())?;
        // A lookup table's unreadable rows: skipped, each a dead letter located in the table.
        for (stage, row) in chain.take_skipped_rows() {
            report.lookup_rows_skipped += 1;
            stream.reject(
                &row.position,
                format!("{stage} table"),
                format!("lookup table row skipped: {}", row.reason),
                row.record,
            )?;
        }
        let mut output = match target {
            Target::Sink => {
                let column_types = if config.transforms.is_empty() {
                    config.source.column_types()
                } else {
                    Default::default()
                };
                let context = SinkContext {
                    stream: name.clone(),
                    dead_letters: dead_letters.clone(),
                    input_fingerprint: match &sample {
                        Some(s) => format!("{}:{}", fingerprint(&source.files), s.fingerprint),
                        None => fingerprint(&source.files),
                    },
                    gleap: gleap.clone(),
                    state: state.clone(),
                    cursor: source.cursor.clone(),
                    column_types,
                };
                Output::Writer(Writer::start(&name, config.sink.build(context)?)?)
            }
            Target::Preview { limit, records } => Output::Preview {
                limit: *limit,
                records,
            },
            Target::Visit(each) => Output::Visit(&mut **each),
        };
        let cursor = source.cursor.clone();
        let pumped = stream.pump(source.items, &mut chain, &mut output, &mut report);
        report.transforms = chain.stats();
        match output {
            Output::Writer(writer) => {
                let (sink, written) = writer.stop();
                // A stop asked for while the last records were written still leaves the
                // output as it was: an interrupted stream never commits.
                let interrupted = if cancel.load(Ordering::SeqCst) {
                    Err(Error::Interrupted)
                } else {
                    Ok(())
                };
                match (written.and(pumped).and(interrupted), sink) {
                    (Ok(()), Some(sink)) => {
                        report.sink = sink.finish()?;
                        // An API source read to its end: the next run starts after it.
                        if let (Some(log), Some(store)) = (&cursor, &state)
                            && let Some(last) = log.last()
                        {
                            store.set_source_cursor(&name, &last)?;
                        }
                        Ok(())
                    }
                    (Ok(()), None) => Err(Error::internal("the sink's writer thread stopped")),
                    (Err(e), sink) => {
                        if let Some(sink) = sink {
                            sink.abort();
                        }
                        Err(e)
                    }
                }
            }
            Output::Preview { .. } | Output::Visit(_) => pumped,
        }
    })();

    for stage in &report.transforms {
        report.transform_rejected += stage.rejected;
        report.filtered += stage.input.saturating_sub(stage.output + stage.rejected);
    }
    report.written = report.sink.written;
    report.sink_rejected = report.sink.rejected;
    if let Target::Preview { records, .. } = target {
        report.written = records.len() as u64;
    }
    report.dead_lettered = dead_letters.count_for(&name).saturating_sub(dead_before);
    report.elapsed_secs = started.elapsed().as_secs_f64();
    report.records_per_sec = report.read as f64 / report.elapsed_secs.max(1e-9);
    match &result {
        Err(e) => {
            report.status = StreamStatus::Failed;
            report.error = Some(e.to_string());
            bar.finish(format!("failed: {e}"));
        }
        Ok(()) => {
            if report.dead_lettered > 0 {
                // Every record read went to the dead-letter file: nothing of it arrived.
                report.status = if report.written == 0 && report.dead_lettered >= report.read {
                    StreamStatus::Rejected
                } else {
                    StreamStatus::DeadLetters
                };
            }
            bar.finish(records(report.read));
        }
    }
    (report, result)
}

/// Where transformed records go.
enum Output<'t> {
    Writer(Writer),
    Preview {
        limit: usize,
        records: &'t mut Vec<Record>,
    },
    Visit(&'t mut dyn FnMut(Record)),
}

/// Names, sizes and modification times of a stream's input files, hashed: a resumed run
/// must read the same input.
pub fn fingerprint(files: &[std::path::PathBuf]) -> String {
    let mut text = String::new();
    for f in files {
        let meta = std::fs::metadata(f).ok();
        let size = meta.as_ref().map_or(0, |m| m.len());
        let modified = meta
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        text.push_str(&format!("{}\u{0}{size}\u{0}{modified}\n", f.display()));
    }
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(text.as_bytes()))
}

/// What the writer thread is sent.
enum WriterItem {
    Record(Record, Position),
    /// Rows as columns, for a sink that takes them (`SinkConfig::takes_batches`).
    Batch(crate::batch::Batch),
    SourceDone(u64),
}

/// The thread that owns the sink and writes what it is sent.
struct Writer {
    batches: Option<SyncSender<Vec<WriterItem>>>,
    thread: JoinHandle<(Box<dyn Sink>, Result<()>)>,
    batch: Vec<WriterItem>,
    /// What the sink says an interrupted run already confirmed.
    resume_after: Option<u64>,
}

impl Writer {
    fn start(name: &str, mut sink: Box<dyn Sink>) -> Result<Writer> {
        let resume_after = sink.resume_after();
        let (tx, rx): (_, Receiver<Vec<WriterItem>>) = sync_channel(BATCHES_IN_FLIGHT);
        let thread = std::thread::Builder::new()
            .name(format!("write-{name}"))
            .spawn(move || {
                for batch in rx {
                    for item in batch {
                        let result = match item {
                            WriterItem::Record(record, position) => sink.write(record, position),
                            WriterItem::Batch(batch) => sink.write_batch(batch),
                            WriterItem::SourceDone(seq) => sink.source_done(seq),
                        };
                        if let Err(e) = result {
                            return (sink, Err(e));
                        }
                    }
                }
                (sink, Ok(()))
            })
            .map_err(|e| Error::internal(format!("cannot start a writer thread: {e}")))?;
        Ok(Writer {
            batches: Some(tx),
            thread,
            batch: Vec::with_capacity(BATCH),
            resume_after,
        })
    }

    /// Queues a record; `Err` when the writer has stopped (its error comes from `stop`).
    fn push(&mut self, item: WriterItem) -> std::result::Result<(), ()> {
        // A batch of rows goes at once, so that no more than a few are in flight.
        let rows = matches!(item, WriterItem::Batch(_));
        self.batch.push(item);
        if rows || self.batch.len() >= BATCH {
            return self.send();
        }
        Ok(())
    }

    fn send(&mut self) -> std::result::Result<(), ()> {
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH));
        match &self.batches {
            Some(tx) if !batch.is_empty() => tx.send(batch).map_err(|_| ()),
            _ => Ok(()),
        }
    }

    /// Sends what is left, waits for the thread and returns the sink with how writing went.
    fn stop(mut self) -> (Option<Box<dyn Sink>>, Result<()>) {
        let _ = self.send();
        drop(self.batches.take());
        match self.thread.join() {
            Ok((sink, result)) => (Some(sink), result),
            Err(panic) => (
                None,
                Err(Error::internal(format!(
                    "the sink's writer thread panicked: {}",
                    panic_message(&*panic)
                ))),
            ),
        }
    }
}

/// What the stream thread shares with the run.
struct Stream<'a> {
    name: &'a str,
    dead_letters: &'a DeadLetters,
    cancel: &'a Arc<AtomicBool>,
    bar: &'a StreamBar,
    sample: Option<&'a crate::sample::SampleFilter>,
}

impl Stream<'_> {
    /// Moves every record from the source through the chain to the output.
    fn pump(
        &self,
        items: SourceIter,
        chain: &mut TransformChain,
        output: &mut Output<'_>,
        report: &mut StreamReport,
    ) -> Result<()> {
        let (tx, rx) = sync_channel::<Vec<Result<SourceItem>>>(BATCHES_IN_FLIGHT);
        let stop_reader = Arc::new(AtomicBool::new(false));
        let reader = {
            let stop = stop_reader.clone();
            let cancel = self.cancel.clone();
            let name = self.name.to_string();
            std::thread::Builder::new()
                .name(format!("read-{}", self.name))
                .spawn(move || read_batches(&name, items, &tx, &stop, &cancel))
                .map_err(|e| Error::internal(format!("cannot start a reader thread: {e}")))?
        };

        let mut outputs = Vec::new();
        let mut rejections = Vec::new();
        let resume_after = match output {
            Output::Writer(writer) => writer.resume_after,
            Output::Preview { .. } | Output::Visit(_) => None,
        };
        report.resumed_after = resume_after;
        let mut next_seq: u64 = 0;
        let result = (|| -> Result<()> {
            for batch in rx.iter() {
                if self.cancel.load(Ordering::Relaxed) {
                    return Err(Error::Interrupted);
                }
                for item in batch {
                    let item = item?;
                    let item = match item {
                        SourceItem::Batch(batch) => {
                            let batch = (batch, &mut next_seq, resume_after);
                            if self.pump_batch(batch, chain, output, report)? {
                                continue;
                            }
                            return Ok(());
                        }
                        item => item,
                    };
                    let seq = next_seq;
                    next_seq += 1;
                    if resume_after.is_some_and(|done| seq <= done) {
                        // Confirmed by the interrupted run this one resumes.
                        report.skipped += 1;
                        continue;
                    }
                    report.read += 1;
                    let (record, mut position) = match item {
                        // Taken above.
                        SourceItem::Batch(_) => continue,
                        SourceItem::Record(record, position) => (record, position),
                        SourceItem::Rejected(r) => {
                            report.source_rejected += 1;
                            self.reject(&r.position, "source".into(), r.reason, r.record)?;
                            if let Output::Writer(writer) = output
                                && writer.push(WriterItem::SourceDone(seq)).is_err()
                            {
                                return Ok(());
                            }
                            continue;
                        }
                    };
                    position.seq = seq;
                    chain.process(record, &mut outputs, &mut rejections);
                    for r in rejections.drain(..) {
                        self.reject(&position, r.stage, r.reason, Value::Object(r.record))?;
                    }
                    match output {
                        Output::Writer(writer) => {
                            for out in outputs.drain(..) {
                                if self.sample.is_some_and(|s| !s.keeps(&out)) {
                                    report.outside_sample += 1;
                                    continue;
                                }
                                if writer
                                    .push(WriterItem::Record(out, position.clone()))
                                    .is_err()
                                {
                                    // The writer stopped; its error is reported by `stop`.
                                    return Ok(());
                                }
                            }
                            if writer.push(WriterItem::SourceDone(seq)).is_err() {
                                return Ok(());
                            }
                        }
                        Output::Preview { limit, records } => {
                            let room = limit.saturating_sub(records.len());
                            records.extend(outputs.drain(..).take(room));
                            if records.len() >= *limit {
                                return Ok(());
                            }
                        }
                        Output::Visit(each) => outputs.drain(..).for_each(&mut **each),
                    }
                }
                self.bar.update(report.read);
            }
            Ok(())
        })();
        stop_reader.store(true, Ordering::Relaxed);
        drop(rx);
        let end = reader.join().map_err(|panic| {
            Error::internal(format!(
                "stream `{}`: reading the input failed: the reader thread panicked: {}",
                self.name,
                panic_message(&*panic)
            ))
        })?;
        result?;
        // The reader stopped before the end of the input without an error: only a stop
        // does that, and a stopped stream must not pass for a finished one.
        match (end, &*output) {
            (ReadEnd::Stopped, Output::Writer(_)) => Err(Error::Interrupted),
            _ => Ok(()),
        }
    }

    /// Moves a batch of source rows through the chain to the output (numbering its rows
    /// from `next_seq`); `false` when the writer stopped or a preview is full.
    fn pump_batch(
        &self,
        (mut batch, next_seq, resume_after): (crate::batch::Batch, &mut u64, Option<u64>),
        chain: &mut TransformChain,
        output: &mut Output<'_>,
        report: &mut StreamReport,
    ) -> Result<bool> {
        let first = *next_seq;
        let rows = batch.len() as u64;
        *next_seq += rows;
        batch.seqs = (first..first + rows).collect();
        if let Some(done) = resume_after {
            // Confirmed by the interrupted run this one resumes.
            let confirmed = (done + 1).saturating_sub(first).min(rows);
            report.skipped += confirmed;
            batch = batch.skip(confirmed as usize);
        }
        if batch.is_empty() {
            return Ok(true);
        }
        report.read += batch.len() as u64;
        let seqs = batch.seqs.clone();
        let mut rejected = Vec::new();
        let out = chain.process_batch(batch, &mut rejected);
        // In row order, as the row path writes them (each stage gives its own in order).
        rejected.sort_by_key(|(_, position)| position.seq);
        for (r, position) in rejected {
            self.reject(&position, r.stage, r.reason, Value::Object(r.record))?;
        }
        let rows = match (out, &mut *output) {
            (ChainOutput::Batch(batch), Output::Writer(writer)) if self.sample.is_none() => {
                let last = *seqs.last().expect("not empty");
                report.columnar_rows += batch.len() as u64;
                if !batch.is_empty() && writer.push(WriterItem::Batch(batch)).is_err() {
                    return Ok(false);
                }
                return Ok(writer.push(WriterItem::SourceDone(last)).is_ok());
            }
            (ChainOutput::Batch(batch), _) => batch.to_rows(),
            (ChainOutput::Rows(rows), _) => rows,
        };
        // As the row path hands them over: each source row's outputs, then that it is done.
        let mut rows = rows.into_iter().peekable();
        for seq in seqs {
            let mine = std::iter::from_fn(|| rows.next_if(|(_, p)| p.seq == seq));
            match output {
                Output::Writer(writer) => {
                    for (out, position) in mine {
                        if self.sample.is_some_and(|s| !s.keeps(&out)) {
                            report.outside_sample += 1;
                            continue;
                        }
                        if writer.push(WriterItem::Record(out, position)).is_err() {
                            return Ok(false);
                        }
                    }
                    if writer.push(WriterItem::SourceDone(seq)).is_err() {
                        return Ok(false);
                    }
                }
                Output::Preview { limit, records } => {
                    let room = limit.saturating_sub(records.len());
                    records.extend(mine.map(|(r, _)| r).take(room));
                    if records.len() >= *limit {
                        return Ok(false);
                    }
                }
                Output::Visit(each) => mine.for_each(|(r, _)| each(r)),
            }
        }
        Ok(true)
    }

    fn reject(
        &self,
        position: &Position,
        stage: String,
        reason: String,
        record: Value,
    ) -> Result<()> {
        self.dead_letters
            .reject(DeadLetter::new(self.name, position, stage, reason, record))
    }
}

/// How the reader thread ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadEnd {
    /// At the end of the input, or at a fatal error it sent on.
    Finished,
    /// Told to stop (or the stream thread went away) before the end.
    Stopped,
}

/// The reader thread: batches of source items until the end, a fatal error, or a stop.
fn read_batches(
    name: &str,
    items: SourceIter,
    tx: &SyncSender<Vec<Result<SourceItem>>>,
    stop: &AtomicBool,
    cancel: &AtomicBool,
) -> ReadEnd {
    let panic_after = test_hook_panic_reader(name);
    let mut batch = Vec::with_capacity(BATCH);
    let mut records = 0;
    for item in items {
        let rows = match &item {
            Ok(SourceItem::Batch(b)) => b.len(),
            _ => 1,
        };
        if panic_after.is_some_and(|after| records + rows > after) {
            panic!(
                "test hook GLEAP_ETL_TEST_PANIC_READER: stream `{name}` after {records} records"
            );
        }
        records += rows;
        let fatal = item.is_err();
        let rows = matches!(item, Ok(SourceItem::Batch(_)));
        batch.push(item);
        if batch.len() == BATCH || fatal || rows {
            if tx
                .send(std::mem::replace(&mut batch, Vec::with_capacity(BATCH)))
                .is_err()
            {
                return ReadEnd::Stopped;
            }
            if fatal {
                return ReadEnd::Finished;
            }
            if stop.load(Ordering::Relaxed) || cancel.load(Ordering::Relaxed) {
                return ReadEnd::Stopped;
            }
        }
    }
    if !batch.is_empty() && tx.send(batch).is_err() {
        return ReadEnd::Stopped;
    }
    ReadEnd::Finished
}

/// Debug builds only: `GLEAP_ETL_TEST_PANIC_READER=STREAM:N` makes the reader thread of
/// STREAM panic after N records, so that tests can show what a panicking source does (the
/// parquet crate panics on some corrupt pages).
fn test_hook_panic_reader(name: &str) -> Option<usize> {
    if !cfg!(debug_assertions) {
        return None;
    }
    let hook = std::env::var("GLEAP_ETL_TEST_PANIC_READER").ok()?;
    let (stream, after) = hook.rsplit_once(':')?;
    (stream == name).then(|| after.parse().ok()).flatten()
}

/// Threads whose panics fail their stream with an error that says so (the stream, the
/// reader, the writer): the default hook's report on stderr is only logged (`-vv`).
const CONTAINED_THREADS: [&str; 3] = ["stream-", "read-", "write-"];

/// Installs (once) the panic hook that keeps contained panics off stderr.
pub fn contain_thread_panics() {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let contained = std::thread::current()
                .name()
                .is_some_and(|n| CONTAINED_THREADS.iter().any(|p| n.starts_with(p)));
            if contained {
                tracing::debug!("{info}");
            } else {
                default(info);
            }
        }));
    });
}

/// The message a panic was raised with.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}
