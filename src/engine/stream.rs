//! Runs one stream: a reader thread parses the source into batches, this thread pushes them
//! through the transform stages into the sink. The channel between them is bounded, so
//! memory stays flat however large the input.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::sync_channel;
use std::time::Instant;

use super::progress::StreamBar;
use super::report::StreamReport;
use crate::config::StreamConfig;
use crate::dead_letter::{DeadLetter, DeadLetters};
use crate::error::{Error, Result};
use crate::record::{Position, Record, Value};
use crate::sinks::{Sink, SinkContext};
use crate::sources::{OpenedSource, SourceItem, SourceIter};
use crate::transforms::TransformChain;

/// Records per batch handed from the reader thread to the stream thread.
const BATCH: usize = 1024;
/// Batches in flight between the two.
const BATCHES_IN_FLIGHT: usize = 4;

/// What the records of a stream are for.
pub enum Target {
    /// The stream's own sink.
    Sink,
    /// `plan`: keep the first `limit` records, write nothing.
    Preview { limit: usize, records: Vec<Record> },
}

/// Everything a stream needs from the run.
pub struct StreamRun<'a> {
    pub config: &'a StreamConfig,
    pub source: OpenedSource,
    pub dead_letters: DeadLetters,
    /// Set when the run is stopping; the stream gives up at the next batch.
    pub cancel: Arc<AtomicBool>,
    pub bar: StreamBar,
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
    } = run;
    let run = Pump {
        dead_letters,
        cancel,
        bar,
    };
    let name = config.name.value.clone();
    let mut report = StreamReport {
        name: name.clone(),
        status: "ok",
        source: config.source.kind().to_string(),
        files: source
            .files
            .iter()
            .map(|f| f.display().to_string())
            .collect(),
        ..Default::default()
    };
    let items = source.items;
    let dead_before = run.dead_letters.count();

    let result = (|| -> Result<()> {
        let mut chain = TransformChain::build(&config.transforms)?;
        let mut sink = match target {
            Target::Sink => Some(config.sink.build(SinkContext {
                stream: name.clone(),
                dead_letters: run.dead_letters.clone(),
            })?),
            Target::Preview { .. } => None,
        };
        let pumped = pump(
            items,
            &run,
            &name,
            &mut chain,
            &mut sink,
            target,
            &mut report,
        );
        report.transforms = chain.stats();
        match (pumped, sink) {
            (Ok(()), Some(sink)) => {
                report.sink = sink.finish()?;
                Ok(())
            }
            (Ok(()), None) => Ok(()),
            (Err(e), Some(sink)) => {
                sink.abort();
                Err(e)
            }
            (Err(e), None) => Err(e),
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
    report.dead_lettered = run.dead_letters.count().saturating_sub(dead_before);
    report.elapsed_secs = started.elapsed().as_secs_f64();
    report.records_per_sec = report.read as f64 / report.elapsed_secs.max(1e-9);
    if let Err(e) = &result {
        report.status = "failed";
        report.error = Some(e.to_string());
        run.bar.finish(format!("failed: {e}"));
    } else {
        run.bar
            .finish(format!("{} records", super::report::count(report.read)));
    }
    (report, result)
}

/// What the pumping loop shares with the run.
struct Pump {
    dead_letters: DeadLetters,
    cancel: Arc<AtomicBool>,
    bar: StreamBar,
}

/// Moves every record from the source through the chain into the sink (or the preview).
fn pump(
    items: SourceIter,
    run: &Pump,
    name: &str,
    chain: &mut TransformChain,
    sink: &mut Option<Box<dyn Sink>>,
    target: &mut Target,
    report: &mut StreamReport,
) -> Result<()> {
    let (tx, rx) = sync_channel::<Vec<Result<SourceItem>>>(BATCHES_IN_FLIGHT);
    let stop_reader = Arc::new(AtomicBool::new(false));
    let reader_stop = stop_reader.clone();
    let cancel = run.cancel.clone();
    let reader = std::thread::Builder::new()
        .name(format!("read-{name}"))
        .spawn(move || {
            let mut batch = Vec::with_capacity(BATCH);
            for item in items {
                let fatal = item.is_err();
                batch.push(item);
                if batch.len() == BATCH || fatal {
                    if tx
                        .send(std::mem::replace(&mut batch, Vec::with_capacity(BATCH)))
                        .is_err()
                    {
                        return;
                    }
                    if fatal
                        || reader_stop.load(Ordering::Relaxed)
                        || cancel.load(Ordering::Relaxed)
                    {
                        return;
                    }
                }
            }
            if !batch.is_empty() {
                let _ = tx.send(batch);
            }
        })
        .map_err(|e| Error::Other(format!("cannot start a reader thread: {e}")))?;

    let mut outputs = Vec::new();
    let mut rejections = Vec::new();
    let result = (|| -> Result<()> {
        for batch in rx.iter() {
            if run.cancel.load(Ordering::Relaxed) {
                return Err(Error::Interrupted);
            }
            for item in batch {
                let (record, position) = match item? {
                    SourceItem::Record(record, position) => (record, position),
                    SourceItem::Rejected(r) => {
                        report.read += 1;
                        report.source_rejected += 1;
                        run.dead_letters.reject(DeadLetter::new(
                            name,
                            &r.position,
                            "source",
                            r.reason,
                            r.record,
                        ))?;
                        continue;
                    }
                };
                report.read += 1;
                chain.process(record, &mut outputs, &mut rejections);
                for r in rejections.drain(..) {
                    run.dead_letters.reject(DeadLetter::new(
                        name,
                        &position,
                        r.stage,
                        r.reason,
                        Value::Object(r.record),
                    ))?;
                }
                if deliver(&mut outputs, &position, sink, target)? {
                    return Ok(());
                }
            }
            run.bar.update(report.read);
        }
        Ok(())
    })();
    stop_reader.store(true, Ordering::Relaxed);
    drop(rx);
    let _ = reader.join();
    result
}

/// Hands the outputs of one record to the sink or the preview; `true` when the preview is
/// full.
fn deliver(
    outputs: &mut Vec<Record>,
    position: &Position,
    sink: &mut Option<Box<dyn Sink>>,
    target: &mut Target,
) -> Result<bool> {
    match (sink.as_mut(), target) {
        (Some(sink), _) => {
            for out in outputs.drain(..) {
                sink.write(out, position.clone())?;
            }
            Ok(false)
        }
        (None, Target::Preview { limit, records }) => {
            for out in outputs.drain(..) {
                if records.len() < *limit {
                    records.push(out);
                }
            }
            Ok(records.len() >= *limit)
        }
        (None, Target::Sink) => unreachable!("a sink target always has a sink"),
    }
}
