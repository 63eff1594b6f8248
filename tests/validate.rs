//! `gleap-etl validate` and `schema`.

use crate::util::{Dir, repo};

#[test]
fn every_shipped_pipeline_is_valid() {
    let dir = Dir::new();
    let mut files: Vec<String> = std::fs::read_dir(repo().join("pipelines"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .map(|p| p.display().to_string())
        .collect();
    files.sort();
    assert!(!files.is_empty());
    let args: Vec<&str> = std::iter::once("validate")
        .chain(files.iter().map(String::as_str))
        .collect();
    let run = dir.run(&args);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.stdout.lines().filter(|l| l.contains(": ok (")).count(),
        files.len(),
        "{run:?}"
    );
}

/// The three classic mistakes: a misspelt key, a block that lost its indentation and a jq
/// expression that does not parse. All three are reported, each where it is.
#[test]
fn a_misspelt_key_a_lost_indent_and_bad_jq_give_three_located_errors() {
    let dir = Dir::new();
    let path = dir.write(
        "broken.yaml",
        r#"version: 1
name: broken
streams:
  - name: users
    source:
      csv: { path: users.csv, delimter: ";" }
    transforms:
      - filter: '.email != null and (.email'
      - rename: { user_id: userId }
    sink:
    parquet: { path: out/users.parquet }
"#,
    );
    let run = dir.run(&["validate", path.to_str().unwrap()]);
    assert_eq!(run.code, 2, "{run:?}");
    let errors: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with(path.to_str().unwrap()))
        .collect();
    let at = |line_col: &str, text: &str| {
        let prefix = format!("{}:{line_col}: ", path.display());
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with(&prefix) && e.contains(text)),
            "no error at {line_col} containing {text:?} in\n{}",
            run.stderr
        );
    };
    at(
        "6:31",
        "unknown field `delimter`: did you mean `delimiter`?",
    );
    at(
        "8:44",
        "invalid jq expression `.email != null and (.email`: expected closing parenthesis",
    );
    at("11:5", "unknown field `parquet`");
    at("11:5", "indented under `sink` on line 10");
    let located = errors
        .iter()
        .filter(|e| e.contains(": streams[0]."))
        .count();
    assert_eq!(located, 3, "one error per mistake:\n{}", run.stderr);
    assert!(run.stderr.ends_with("3 problems\n"), "{run:?}");
}

#[test]
fn problems_in_several_files_are_all_reported() {
    let dir = Dir::new();
    let a = dir.write("a.yaml", "version: 1\nname: a\nstreams: []\n");
    let b = dir.write("b.yaml", "version: 1\nname: b\nstreams:\n  - name: s\n    source: { jsonl: { path: x } }\n    sink: { jsonl: { path: y } }\n    extra: 1\n");
    let run = dir.run(&["validate", a.to_str().unwrap(), b.to_str().unwrap()]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr
            .contains("a.yaml:3:10: streams: a pipeline needs at least one stream"),
        "{run:?}"
    );
    assert!(
        run.stderr
            .contains("b.yaml:7:5: streams[0].extra: unknown field `extra`"),
        "{run:?}"
    );
}

#[test]
fn an_unreadable_pipeline_file_is_exit_2() {
    let dir = Dir::new();
    let run = dir.run(&["validate", "nope.yaml"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("nope.yaml"), "{run:?}");
}

#[test]
fn schema_is_json_schema_of_the_format() {
    let dir = Dir::new();
    let run = dir.run(&["schema"]);
    assert_eq!(run.code, 0, "{run:?}");
    let schema: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(schema["title"], "gleap-etl pipeline");
    assert_eq!(
        schema["required"],
        serde_json::json!(["version", "name", "streams"])
    );
    assert_eq!(schema["additionalProperties"], false);
}
