//! Signals, panics, locks and full disks (issue 12: defects 1, 2, 3, 9, 16 and parts of 17):
//! whatever stops a run, an unfinished output never replaces the old one, and what the run
//! says it did is what it did.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{Dir, Run, json_lines, repo};

/// A CSV of `rows` rows, big enough that a run is still writing when a test stops it.
fn big_csv(dir: &Dir, name: &str, rows: usize) -> PathBuf {
    let mut text = String::with_capacity(rows * 40);
    text.push_str("id,name,note\n");
    for i in 0..rows {
        text.push_str(&format!("{i},name {i},some text to make the row longer\n"));
    }
    dir.write(name, text)
}

/// Two CSV -> JSON lines streams, state in `state/`, outputs `out/a.jsonl`, `out/b.jsonl`
/// that hold `old` before the run.
fn two_streams(dir: &Dir, rows: usize) -> PathBuf {
    big_csv(dir, "a.csv", rows);
    big_csv(dir, "b.csv", rows);
    dir.write("out/a.jsonl", "old a\n");
    dir.write("out/b.jsonl", "old b\n");
    pipeline(dir, "two.yaml", "state", &[("a", "csv"), ("b", "csv")])
}

/// A pipeline file: per (NAME, KIND) a stream NAME reading `NAME.KIND` (a KIND source) into
/// `out/NAME.jsonl`.
fn pipeline(dir: &Dir, file: &str, state_dir: &str, streams: &[(&str, &str)]) -> PathBuf {
    let mut yaml = format!("version: 1\nname: p\nstate_dir: {state_dir}\nstreams:\n");
    for (name, kind) in streams {
        yaml.push_str(&format!(
            "- name: {name}\n  source: {{ {kind}: {{ path: {name}.{kind} }} }}\n  sink: {{ jsonl: {{ path: out/{name}.jsonl }} }}\n"
        ));
    }
    dir.write(file, yaml)
}

/// `gleap-etl ARGS` started in `dir`, its output kept in files (a pipe could fill up).
fn spawn(dir: &Dir, args: &[&str], envs: &[(&str, &str)]) -> Child {
    let mut cmd = dir.cmd(args);
    cmd.envs(envs.iter().copied())
        .stdout(std::fs::File::create(dir.join("child.stdout")).unwrap())
        .stderr(std::fs::File::create(dir.join("child.stderr")).unwrap())
        .stdin(Stdio::null());
    cmd.spawn().expect("gleap-etl starts")
}

/// Waits (polling, at most a minute) until `ready` holds; false if the child ended first.
fn wait_until(child: &mut Child, mut ready: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if ready() {
            return true;
        }
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("the child did not get there within a minute");
}

/// Waits for the child to end (a minute at most) and returns what it did.
fn finish(dir: &Dir, mut child: Child) -> Run {
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the run did not end within a minute (a hang)");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run {
        code: status.code().unwrap_or(-1),
        stdout: std::fs::read_to_string(dir.join("child.stdout")).unwrap(),
        stderr: std::fs::read_to_string(dir.join("child.stderr")).unwrap(),
    }
}

fn signal(child: &Child, name: &str) {
    let ok = Command::new("kill")
        .args([format!("-{name}"), child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{name}");
}

/// Both temporary outputs are there and have something in them: the run is writing.
fn writing(dir: &Dir) -> bool {
    ["out/a.jsonl.inprogress", "out/b.jsonl.inprogress"]
        .iter()
        .all(|p| std::fs::metadata(dir.join(p)).is_ok_and(|m| m.len() > 0))
}

/// A two-stream run of 300,000 rows a stream, started and writing; its pipeline file.
fn start_writing(dir: &Dir) -> (Child, String) {
    let pipeline = two_streams(dir, 300_000).to_str().unwrap().to_string();
    let mut child = spawn(dir, &["run", &pipeline, "--no-progress"], &[]);
    assert!(
        wait_until(&mut child, || writing(dir)),
        "the run ended before it wrote"
    );
    (child, pipeline)
}

/// Stops a two-stream run with `sig` while both streams write; nothing may be committed.
fn stop_two_streams_with(sig: &str) {
    for round in 0..3 {
        let dir = Dir::new();
        let (child, _) = start_writing(&dir);
        signal(&child, sig);
        let run = finish(&dir, child);
        assert_eq!(run.code, 2, "round {round}: {run:?}");
        assert!(run.stderr.contains("interrupted"), "{run:?}");
        assert_eq!(dir.read("out/a.jsonl"), "old a\n", "round {round}: {run:?}");
        assert_eq!(dir.read("out/b.jsonl"), "old b\n", "round {round}: {run:?}");
        assert!(!dir.join("out/a.jsonl.inprogress").exists());
        assert!(!dir.join("out/b.jsonl.inprogress").exists());
    }
}

/// A pipeline `p.yaml` of one stream `a`: `a.jsonl` (holding `input`) -> `out/a.jsonl`.
fn one_stream(dir: &Dir, state_dir: &str, input: &str) {
    dir.write("a.jsonl", input);
    pipeline(dir, "p.yaml", state_dir, &[("a", "jsonl")]);
}

/// The run refused at once (exit 2), saying why.
fn assert_refused(run: &Run, why: &str) {
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains(why), "{run:?}");
}

/// Defect 1: Ctrl-C with two streams must not rename a truncated output as final.
#[test]
fn ctrl_c_with_two_streams_commits_no_truncated_output() {
    stop_two_streams_with("INT");
}

/// Defect 17: SIGTERM stops a run the way Ctrl-C does (it used to end it silently).
#[test]
fn sigterm_stops_a_run_like_ctrl_c() {
    stop_two_streams_with("TERM");
}

/// Defect 2: a panic on the reader thread fails the stream (exit 2) and keeps the old output.
#[test]
fn a_panicking_reader_fails_its_stream_and_keeps_the_old_output() {
    let dir = Dir::new();
    let pipeline = two_streams(&dir, 3000);
    let mut cmd = dir.cmd(&["run", pipeline.to_str().unwrap(), "--no-progress"]);
    cmd.env("GLEAP_ETL_TEST_PANIC_READER", "a:1500");
    let run = Run::from(cmd.output().unwrap());
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr
            .contains("stream `a`: reading the input failed: the reader thread panicked"),
        "{run:?}"
    );
    assert_eq!(dir.read("out/a.jsonl"), "old a\n");
    assert!(!dir.join("out/a.jsonl.inprogress").exists());
    // The other stream is not affected.
    assert_eq!(json_lines(&dir.read("out/b.jsonl")).len(), 3000);
}

/// Defect 2 with real data: the parquet crate panics on this corrupt data page ("offset +
/// len out of bounds", found by flipping bytes of a file we wrote). Exit 2, the old output
/// stays, and no raw panic report on stderr.
#[test]
fn a_corrupt_parquet_page_that_panics_keeps_the_old_output() {
    let dir = Dir::new();
    let corrupt = repo().join("tests/hostile/parquet-corrupt-page-panics/corrupt.parquet");
    std::fs::copy(corrupt, dir.join("a.parquet")).unwrap();
    dir.write("out/a.jsonl", "old a\n");
    pipeline(&dir, "p.yaml", "state", &[("a", "parquet")]);
    let run = dir.run(&["run", "p.yaml", "--no-progress"]);
    assert_refused(
        &run,
        "the reader thread panicked: offset + len out of bounds",
    );
    assert!(!run.stderr.contains("panicked at"), "{run:?}");
    assert_eq!(dir.read("out/a.jsonl"), "old a\n");
}

/// Defect 3: a second run on a locked state dir refuses at once, naming the holder's pid; a
/// holder killed with SIGKILL leaves no stale lock.
#[test]
fn a_second_run_refuses_while_the_state_dir_is_in_use() {
    let dir = Dir::new();
    let pipeline = two_streams(&dir, 300_000);
    let pipeline = pipeline.to_str().unwrap();

    // Held by this process, through the library.
    let lock = gleap_etl::dirs::StateDirLock::acquire(&dir.join("state")).unwrap();
    let run = dir.run(&["run", pipeline, "--no-progress"]);
    assert_refused(
        &run,
        &format!("in use by gleap-etl (pid {})", std::process::id()),
    );
    assert!(run.stderr.contains("wait for it or stop it"), "{run:?}");
    assert_eq!(dir.read("out/a.jsonl"), "old a\n");
    drop(lock);

    // Held by a running gleap-etl, then killed.
    let (mut first, _) = start_writing(&dir);
    let second = dir.run(&["run", pipeline, "--no-progress"]);
    assert_refused(
        &second,
        &format!("in use by gleap-etl (pid {})", first.id()),
    );
    first.kill().unwrap();
    first.wait().unwrap();
    let third = dir.run(&["run", pipeline, "--no-progress"]);
    assert_eq!(third.code, 0, "{third:?}");
    assert_eq!(json_lines(&dir.read("out/a.jsonl")).len(), 300_000);
}

/// Defect 3: two runs with different state dirs writing the same output: the second refuses.
#[test]
fn a_second_run_refuses_an_output_being_written() {
    let dir = Dir::new();
    let (mut first, pipeline) = start_writing(&dir);
    let second = dir.run(&["run", &pipeline, "--no-progress", "--state-dir", "other"]);
    first.kill().unwrap();
    first.wait().unwrap();
    assert_refused(&second, "another gleap-etl run is writing this output");
}

/// Sessions of a new embedded emulator (none) exported to `ds`.
const EXPORT_TO_DS: [&str; 6] = [
    "export",
    "sessions",
    "--out",
    "ds",
    "--emulator",
    "--no-progress",
];

/// Defect 3: a dataset folder another run is writing (here: this process, through the
/// library) is refused.
#[test]
fn an_export_refuses_a_dataset_folder_being_written() {
    let dir = Dir::new();
    std::fs::create_dir(dir.join("ds")).unwrap();
    let held = std::fs::File::open(dir.join("ds")).unwrap();
    gleap_etl::dirs::lock_output(&held, &dir.join("ds")).unwrap();
    let run = dir.run(&EXPORT_TO_DS);
    assert_refused(&run, "another gleap-etl run is writing this output");
    drop(held);
    let run = dir.run(&EXPORT_TO_DS);
    assert_eq!(run.code, 0, "{run:?}");
}

/// Defect 16: per-stream dead-letter counts are the stream's own, and a stream whose every
/// record was rejected does not say `ok`.
#[test]
fn each_stream_reports_its_own_dead_letters() {
    let dir = Dir::new();
    dir.write("a.jsonl", "{\"x\": 1}\n{\"x\": 2}\nnot json\n");
    dir.write("b.jsonl", "nope\nnot json either\n");
    pipeline(&dir, "p.yaml", "state", &[("a", "jsonl"), ("b", "jsonl")]);
    let run = dir.run(&["run", "p.yaml", "--no-progress", "--report", "r.json"]);
    assert_eq!(run.code, 1, "{run:?}");
    let report: serde_json::Value = serde_json::from_str(&dir.read("r.json")).unwrap();
    let stream = |name: &str| crate::util::report_stream(&report, name);
    assert_eq!(stream("a")["dead_lettered"], 1, "{report:#}");
    assert_eq!(stream("a")["status"], "dead_letters", "{report:#}");
    assert_eq!(stream("b")["dead_lettered"], 2, "{report:#}");
    assert_eq!(stream("b")["status"], "rejected", "{report:#}");
    assert_eq!(report["dead_lettered"], 3);
    assert_eq!(report["status"], "dead_letters");
}

/// Defect 17: "1 record", not "1 records".
#[test]
fn one_record_is_singular() {
    let dir = Dir::new();
    one_stream(&dir, "state", "{\"x\": 1}\nnot json\n");
    let run = dir.run(&["run", "p.yaml", "--no-progress", "--max-errors", "0"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr
            .contains("stopped: 1 record went to the dead-letter file"),
        "{run:?}"
    );
    assert!(!run.stderr.contains("1 records"), "{run:?}");
}

/// Defect 17: a state dir or an output folder that is a file says so, not "File exists".
#[test]
fn a_file_where_a_folder_should_be_is_named() {
    let dir = Dir::new();
    dir.write("statefile", "I am a file");
    one_stream(&dir, "statefile", "{\"x\": 1}\n");
    let run = dir.run(&["run", "p.yaml", "--no-progress"]);
    assert_refused(&run, "statefile: state dir is a file, not a folder");
    assert!(!run.stderr.contains("os error 17"), "{run:?}");

    dir.write("outfile", "I am a file too");
    let run = dir.run(&[
        "export",
        "sessions",
        "--out",
        "outfile",
        "--emulator",
        "--no-progress",
    ]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr
            .contains("outfile: dataset folder is a file, not a folder"),
        "{run:?}"
    );
    assert!(!run.stderr.contains("os error 17"), "{run:?}");
}

/// Defect 17: `--report` into a folder that does not exist yet.
#[test]
fn a_report_into_a_missing_folder_is_written() {
    let dir = Dir::new();
    one_stream(&dir, "state", "{\"x\": 1}\n");
    let run = dir.run(&[
        "run",
        "p.yaml",
        "--no-progress",
        "--report",
        "reports/x/r.json",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    let report: serde_json::Value = serde_json::from_str(&dir.read("reports/x/r.json")).unwrap();
    assert_eq!(report["status"], "ok");
}

/// Defect 17: no colour codes on a stderr that is not a terminal.
#[test]
fn no_colours_on_a_stderr_that_is_not_a_terminal() {
    let dir = Dir::new();
    // The embedded emulator's HTTP client logs at -vv.
    let run = dir.run(&[&["-vv"][..], &EXPORT_TO_DS].concat());
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stderr.contains("DEBUG") || run.stderr.contains("INFO"),
        "{run:?}"
    );
    assert!(!run.stderr.contains('\u{1b}'), "{run:?}");
}

/// A tmpfs mounted for one test, unmounted when dropped.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// `None` (and a note on stderr) where mounting is not permitted.
    fn mount(path: &Path, options: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(path).unwrap();
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                options,
                "tmpfs",
                path.to_str().unwrap(),
            ])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!(
                "skipped: cannot mount a tmpfs here (needs root): {}",
                path.display()
            );
            return None;
        }
        Some(Tmpfs {
            path: path.to_path_buf(),
        })
    }

    fn remount(&self, options: &str) {
        let ok = Command::new("mount")
            .args([
                "-o",
                &format!("remount,{options}"),
                self.path.to_str().unwrap(),
            ])
            .status()
            .unwrap()
            .success();
        assert!(ok, "remount {options}");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).status();
    }
}

/// Defect 17: a read-only state dir says which path and that it is not writable.
#[test]
fn a_read_only_state_dir_is_named() {
    let dir = Dir::new();
    let Some(_ro) = Tmpfs::mount(&dir.join("ro"), "ro,size=1m") else {
        return;
    };
    one_stream(&dir, "ro", "{\"x\": 1}\n");
    let run = dir.run(&["run", "p.yaml", "--no-progress"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("ro: state dir is not writable"),
        "{run:?}"
    );
    assert!(
        !run.stderr.contains("unable to open database file"),
        "{run:?}"
    );
}

/// Helpdesk CSVs of `n` contacts, `n` tickets and `3n` messages.
fn helpdesk(dir: &Dir, n: usize) -> PathBuf {
    let mut users = String::from("user_id,email,name,plan,company\n");
    let mut tickets =
        String::from("ticket_id,user_id,title,status,priority,type,tags,created_at\n");
    let mut messages =
        String::from("message_id,ticket_id,user_id,author,body,internal,created_at\n");
    let pad = "x".repeat(200);
    for i in 0..n {
        users.push_str(&format!("cust-{i},u{i}@example.com,User {i},free,Acme\n"));
        tickets.push_str(&format!(
            "T-{i},cust-{i},Title {i} {pad},OPEN,LOW,BUG,\"mobile,api\",2024-01-10T09:00:00Z\n"
        ));
        for m in 0..3 {
            messages.push_str(&format!(
                "M-{i}-{m},T-{i},cust-{i},customer,\"Body {m} {pad}\",false,2024-03-01T10:00:00Z\n"
            ));
        }
    }
    dir.write("data/users.csv", users);
    dir.write("data/tickets.csv", tickets);
    dir.write("data/messages.csv", messages);
    dir.join("data")
}

/// The Gleap import of `pipelines/csv-to-gleap.yaml` on the embedded emulator, state in
/// `state`, the report in `report.json` (outside the state dir).
fn import(dir: &Dir, data: &Path, state: &Path) -> (Run, serde_json::Value) {
    let pipeline = repo().join("pipelines/csv-to-gleap.yaml");
    let report = dir.join("report.json");
    let _ = std::fs::remove_file(&report);
    let child = spawn(
        dir,
        &[
            "run",
            pipeline.to_str().unwrap(),
            "--emulator",
            "--emulator-quota",
            "unlimited",
            "--no-progress",
            "--report",
            report.to_str().unwrap(),
        ],
        &[
            ("DATA_DIR", data.to_str().unwrap()),
            ("STATE_DIR", state.to_str().unwrap()),
            ("GLEAP_REQUESTS_PER_MINUTE", "600000"),
        ],
    );
    let run = finish(dir, child);
    let report = std::fs::read_to_string(&report)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    (run, report)
}

/// The dead letters a report counts are the lines of the dead-letter file.
fn dead_letters_counted_are_written(report: &serde_json::Value, state: &Path, run: &Run) {
    let counted = report["dead_lettered"].as_u64().unwrap_or(0);
    let written = std::fs::read_to_string(state.join("dead-letter.jsonl"))
        .map(|t| t.lines().count() as u64)
        .unwrap_or(0);
    assert_eq!(counted, written, "counted vs written: {run:?}");
    let per_stream: u64 = report["streams"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| s["dead_lettered"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(per_stream, counted, "{report:#}");
    if let Ok(text) = std::fs::read_to_string(state.join("dead-letter.jsonl")) {
        for letter in json_lines(&text) {
            let reason = letter["reason"].as_str().unwrap_or("");
            assert!(
                !reason.contains("disk is full") && !reason.contains("No space left"),
                "a full local disk is not the record's fault: {letter}"
            );
        }
    }
}

/// Defect 9: a full state dir during a Gleap import is exit 2 naming the path, the dead
/// letters the summary counts are in the file (a local disk never dead-letters a record),
/// and the next run ends. The disk fills at a different point for each size.
#[test]
fn a_full_state_dir_fails_the_import_and_the_next_run_ends() {
    let dir = Dir::new();
    let data = helpdesk(&dir, 150);
    for (i, size) in ["700k", "1m", "1400k"].iter().enumerate() {
        let Some(disk) = Tmpfs::mount(&dir.join(&format!("disk{i}")), &format!("size={size}"))
        else {
            return;
        };
        let state = disk.path.join("state");
        let (run, report) = import(&dir, &data, &state);
        assert_eq!(run.code, 2, "{size}: {run:?}");
        assert!(
            run.stderr.contains("No space left on device") || run.stderr.contains("disk is full"),
            "{size}: {run:?}"
        );
        // The path, as the pipeline names it: `${STATE_DIR}`, whose value is never printed.
        assert!(run.stderr.contains("${STATE_DIR}/state.sqlite"), "{run:?}");
        assert!(!run.stderr.contains("panicked"), "{run:?}");
        dead_letters_counted_are_written(&report, &state, &run);

        // Still full: fails again, at once.
        let (run, report) = import(&dir, &data, &state);
        assert_eq!(run.code, 2, "{size}: {run:?}");
        dead_letters_counted_are_written(&report, &state, &run);

        // Room again: the run ends, and says truly what it did.
        disk.remount("size=64m");
        let (run, report) = import(&dir, &data, &state);
        assert!(run.code == 0 || run.code == 1, "{size}: {run:?}");
        dead_letters_counted_are_written(&report, &state, &run);
    }
}
