//! Hostile helpdesk dumps (issue 12): a bad row in a lookup table, large single-document
//! pages, and where dead letters of a JSON page point.

use std::path::Path;

use serde_json::Value;

use crate::util::{Dir, Run, json_lines, repo};

/// Copies a samples folder (`samples/zendesk`) into `dir/<name>`.
fn copy_samples(dir: &Dir, samples: &str, name: &str) -> std::path::PathBuf {
    let to = dir.join(name);
    std::fs::create_dir_all(&to).unwrap();
    for entry in std::fs::read_dir(repo().join(samples)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
    to
}

/// Runs a shipped pipeline into the embedded emulator over the dump in `dump` (its
/// `*_DIR` variable `dump_var`), with its own state dir; returns the run and its report.
fn run_shipped(dir: &Dir, pipeline: &str, dump_var: &str, dump: &Path, tag: &str) -> (Run, Value) {
    let report = dir.join(&format!("report-{tag}.json"));
    let output = dir
        .emulated_run(pipeline, &report)
        .current_dir(repo())
        .env(dump_var, dump)
        .env("STATE_DIR", dir.join(&format!("state-{tag}")))
        .output()
        .unwrap();
    let run = Run::from(output);
    let report = std::fs::read_to_string(&report)
        .map(|t| serde_json::from_str(&t).unwrap())
        .unwrap_or(Value::Null);
    (run, report)
}

fn stream<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no stream {name} in {report}"))
}

/// Defect 12: a null-id row and a truncated line in the table a lookup reads are skipped,
/// counted and dead-lettered with their place; the streams that look up in it still run
/// and write what a clean dump gives them.
fn bad_table_rows_are_skipped(
    pipeline: &str,
    dump_var: &str,
    samples: &str,
    bad_file: &str,
    bad_rows: &str,
    dependents: &[(&str, &str, u64)],
) {
    let dir = Dir::new();
    let clean = copy_samples(&dir, samples, "clean");
    let (run, clean_report) = run_shipped(&dir, pipeline, dump_var, &clean, "clean");
    assert_eq!(run.code, 0, "{run:?}");

    let hostile = copy_samples(&dir, samples, "hostile");
    std::fs::write(hostile.join(bad_file), bad_rows).unwrap();
    let (run, report) = run_shipped(&dir, pipeline, dump_var, &hostile, "hostile");
    assert_eq!(
        run.code, 1,
        "bad rows are dead letters, not a failure: {run:?}"
    );
    assert!(!run.stderr.contains("panicked at"), "{run:?}");
    let letters =
        json_lines(&std::fs::read_to_string(dir.join("state-hostile/dead-letter.jsonl")).unwrap());
    for (name, stage, skipped) in dependents {
        let s = stream(&report, name);
        // The table's bad rows are dead letters of each stream that reads the table.
        assert_eq!(s["status"], "dead_letters", "{name}: {s}");
        assert_eq!(
            s["written"],
            stream(&clean_report, name)["written"],
            "{name} writes what it writes from a clean dump"
        );
        // Each lookup stage that reads the table skips them.
        assert_eq!(s["lookup_rows_skipped"], *skipped, "{name}: {s}");
        let mine: Vec<&Value> = letters
            .iter()
            .filter(|l| l["stream"] == *name && l["stage"] == format!("{stage} table"))
            .collect();
        let places: Vec<(String, u64)> = mine
            .iter()
            .map(|l| {
                (
                    l["file"].as_str().unwrap().to_string(),
                    l["line"].as_u64().unwrap(),
                )
            })
            .collect();
        // The path as the pipeline builds it: `${DUMP_DIR}/...`, whose value is never stored.
        let file = format!("${{{dump_var}}}/{bad_file}");
        assert_eq!(places, [(file.clone(), 2), (file, 3)], "{name}: {mine:?}");
        assert!(
            mine[0]["reason"]
                .as_str()
                .unwrap()
                .starts_with("lookup table row skipped: a "),
            "{mine:?}"
        );
        assert!(
            mine[1]["reason"]
                .as_str()
                .unwrap()
                .contains("invalid JSON: EOF while parsing"),
            "{mine:?}"
        );
    }
    assert!(
        run.stderr.contains("2 lookup-table rows skipped"),
        "the summary counts them: {run:?}"
    );
}

#[test]
fn zendesk_bad_user_rows_do_not_stop_tickets_or_comments() {
    bad_table_rows_are_skipped(
        "pipelines/zendesk_to_gleap.yaml",
        "ZENDESK_DIR",
        "samples/zendesk",
        "users-bad.jsonl",
        concat!(
            "{\"id\": 900000000777, \"name\": \"Fine\", \"role\": \"end-user\"}\n",
            "{\"id\": null, \"name\": \"Ghost\", \"role\": \"end-user\"}\n",
            "{\"id\": 900000000778, \"name\": \"Trunc\n",
        ),
        &[
            // The requester's and the assignee's lookups.
            ("tickets", "transforms[1] (lookup)", 4),
            ("comments", "transforms[3] (lookup)", 2),
        ],
    );
}

#[test]
fn intercom_bad_contact_rows_do_not_stop_conversations_or_parts() {
    bad_table_rows_are_skipped(
        "pipelines/intercom_to_gleap.yaml",
        "INTERCOM_DIR",
        "samples/intercom",
        "contacts-bad.jsonl",
        concat!(
            "{\"type\": \"contact\", \"id\": \"c-777\", \"role\": \"user\"}\n",
            "{\"type\": \"contact\", \"id\": null, \"role\": \"user\"}\n",
            "{\"type\": \"contact\", \"id\": \"c-778\", \"na\n",
        ),
        &[
            // The contact's lookup, and the assignee's (admins in any file of the dump: it
            // cannot read the truncated line either).
            ("conversations", "transforms[0] (lookup)", 3),
            ("parts", "transforms[3] (lookup)", 2),
        ],
    );
}

/// The 1-based line on which the `n`th (0-based) line starting with `prefix` stands.
fn line_of(text: &str, prefix: &str, n: usize) -> u64 {
    text.lines()
        .enumerate()
        .filter(|(_, l)| l.starts_with(prefix))
        .nth(n)
        .map(|(i, _)| i as u64 + 1)
        .unwrap_or_else(|| panic!("no {n}th line starting with {prefix:?}"))
}

/// Defect 17: a dead letter of a JSON page names the line its element starts on, not 1.
#[test]
fn dead_letters_of_a_json_page_name_the_elements_line() {
    let dir = Dir::new();
    let users = "{\n  \"users\": [\n    {\n      \"id\": 1,\n      \"name\": \"Ada\"\n    },\n    {\n      \"id\": null,\n      \"name\": \"Ghost\"\n    },\n    {\"id\": 3, \"name\": \"Bob\"},\n    {\n      \"name\": \"No id either\"\n    }\n  ],\n  \"next_page\": null\n}\n";
    dir.write("dump/users.json", users);
    dir.write(
        "pipeline.yaml",
        "version: 1\nname: page-lines\nstate_dir: state\nstreams:\n  - name: users\n    source:\n      zendesk: { path: dump/users.json, entity: users }\n    sink:\n      jsonl: { path: out/users.jsonl }\n",
    );
    let run = dir.run(&["run", "pipeline.yaml", "--no-progress"]);
    assert_eq!(run.code, 1, "{run:?}");
    let letters = json_lines(&dir.read("state/dead-letter.jsonl"));
    let lines: Vec<u64> = letters
        .iter()
        .map(|l| l["line"].as_u64().unwrap())
        .collect();
    assert_eq!(
        lines,
        [line_of(users, "    {", 1), line_of(users, "    {", 3)],
        "{letters:?}"
    );
    assert_eq!(letters[0]["record"]["name"], "Ghost");
    let written = json_lines(&dir.read("out/users.jsonl"));
    assert_eq!(written.len(), 2);
}
