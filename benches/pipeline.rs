//! Throughput of the local conversion path: CSV (10 columns) -> 4 transform stages ->
//! Parquet, in rows per second.
//!
//!     cargo bench --bench pipeline

mod common;

use std::path::Path;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gleap_etl::engine::{RunOptions, run};
use gleap_etl::pipeline::{Pipeline, ProcessEnv};

const ROWS: usize = 100_000;

fn csv_to_parquet(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("contacts.csv");
    common::write_contacts_csv(&input, ROWS);
    let yaml = common::pipeline_yaml(
        &input,
        &dir.path().join("out.parquet"),
        &dir.path().join("state"),
    );
    let pipeline = Pipeline::parse(&yaml, Path::new("bench.yaml"), &ProcessEnv).unwrap();
    let options = RunOptions::default();

    let mut group = c.benchmark_group("csv_to_parquet");
    group.throughput(Throughput::Elements(ROWS as u64));
    group.sample_size(10);
    group.bench_function("100k_rows_10_columns_4_stages", |b| {
        b.iter(|| {
            let report = run(&pipeline, &options);
            assert_eq!(report.exit_code, 0, "{:?}", report.error);
            report.records_written
        })
    });
    group.finish();
}

criterion_group!(benches, csv_to_parquet);
criterion_main!(benches);
