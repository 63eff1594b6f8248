//! The hostile corpus: every folder of `tests/hostile/` is a bad input (a pipeline and its
//! files) with what must happen to it in `expect.json`. Each is run through `validate` and
//! `run` in a copy of its folder; no case may panic, and each must end with its exit codes,
//! its dead-letter reasons and its messages, with no secret printed or stored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::util::{Dir, Run, repo};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    /// Which defect the case reproduces.
    why: String,
    validate: Option<i32>,
    run: Option<i32>,
    #[serde(default)]
    emulator: bool,
    #[serde(default)]
    env: BTreeMap<String, String>,
    /// Substrings of reasons in the dead-letter file, each in some line.
    #[serde(default)]
    dead_letters: Vec<String>,
    /// Substrings of what the failing (or last) command printed.
    #[serde(default)]
    stderr: Vec<String>,
    /// Text that must appear nowhere: output, report, dead letters, state files.
    #[serde(default)]
    stderr_absent: Vec<String>,
    #[serde(default)]
    generate: Vec<Generate>,
}

/// A large input written before the case runs: `head`, `repeat` `times` times, `tail`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Generate {
    path: String,
    #[serde(default)]
    head: String,
    repeat: String,
    times: usize,
    #[serde(default)]
    tail: String,
}

fn cases() -> Vec<PathBuf> {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(repo().join("tests/hostile"))
        .expect("tests/hostile exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("expect.json").is_file())
        .collect();
    cases.sort();
    cases
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Every file under `dir`, as text (lossy), for the secret check.
fn all_text(dir: &Path) -> String {
    let mut out = String::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.push_str(&all_text(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.push_str(&String::from_utf8_lossy(&bytes));
        }
    }
    out
}

/// What went wrong with one case, or nothing.
fn check_case(case: &Path) -> Vec<String> {
    let name = case.file_name().unwrap().to_string_lossy().to_string();
    let text = std::fs::read_to_string(case.join("expect.json")).unwrap();
    let expect: Expect =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}/expect.json: {e}"));
    let dir = Dir::new();
    let work = dir.join("case");
    copy_dir(case, &work);
    for g in &expect.generate {
        let mut content = String::with_capacity(g.head.len() + g.repeat.len() * g.times);
        content.push_str(&g.head);
        for _ in 0..g.times {
            content.push_str(&g.repeat);
        }
        content.push_str(&g.tail);
        std::fs::write(work.join(&g.path), content).unwrap();
    }
    let command = |args: &[&str]| -> Run {
        let mut cmd = dir.cmd(args);
        cmd.current_dir(&work)
            .env("STATE_DIR", dir.join("state"))
            .env("OUT_DIR", dir.join("out"))
            .env("NO_COLOR", "1");
        for (k, v) in &expect.env {
            cmd.env(k, v);
        }
        Run::from(cmd.output().expect("gleap-etl runs"))
    };

    let mut problems = Vec::new();
    let mut printed = String::new();
    let mut last = String::new();
    let report = dir.join("report.json");
    let report_arg = report.to_string_lossy().to_string();
    let mut run_args = vec![
        "run",
        "pipeline.yaml",
        "--no-progress",
        "--report",
        &report_arg,
    ];
    if expect.emulator {
        run_args.push("--emulator");
    }
    let commands: [(&str, Option<i32>, Vec<&str>); 2] = [
        (
            "validate",
            expect.validate,
            vec!["validate", "pipeline.yaml"],
        ),
        ("run", expect.run, run_args),
    ];
    for (what, code, args) in commands {
        let Some(code) = code else { continue };
        let r = command(&args);
        let output = format!("{}{}", r.stdout, r.stderr);
        if output.contains("panicked at") || ![0, 1, 2].contains(&r.code) {
            problems.push(format!(
                "{what}: crashed (exit {}): {}",
                r.code,
                tail(&output)
            ));
        } else if r.code != code {
            problems.push(format!(
                "{what}: exit {} (expected {code}): {}",
                r.code,
                tail(&output)
            ));
        }
        printed.push_str(&output);
        last = output;
    }
    for s in &expect.stderr {
        if !last.contains(s.as_str()) {
            problems.push(format!("output lacks {s:?}: {}", tail(&last)));
        }
    }
    let dead = std::fs::read_to_string(dir.join("state/dead-letter.jsonl")).unwrap_or_default();
    let reasons: Vec<String> = dead
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["reason"].as_str().map(str::to_string))
        .collect();
    for want in &expect.dead_letters {
        if !reasons.iter().any(|r| r.contains(want.as_str())) {
            problems.push(format!(
                "no dead letter with reason {want:?}; reasons: {reasons:?}"
            ));
        }
    }
    let stored = all_text(&dir.join("state")) + &all_text(&dir.join("out"));
    let report_text = std::fs::read_to_string(&report).unwrap_or_default();
    for secret in &expect.stderr_absent {
        for (place, text) in [
            ("the output", &printed),
            ("the report", &report_text),
            ("the state or output files", &stored),
        ] {
            if text.contains(secret.as_str()) {
                problems.push(format!("{secret:?} appears in {place}"));
            }
        }
    }
    problems
        .into_iter()
        .map(|p| format!("{name} ({}): {p}", expect.why))
        .collect()
}

fn tail(text: &str) -> String {
    let start = text.len().saturating_sub(600);
    let start = (start..=text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    text[start..].to_string()
}

#[test]
fn every_hostile_input_ends_as_its_case_says() {
    let cases = cases();
    assert!(cases.len() >= 5, "the corpus has {} cases", cases.len());
    let problems: Vec<String> = cases.iter().flat_map(|c| check_case(c)).collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
