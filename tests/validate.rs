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

/// One component with one bad option: the source, transform and sink of a one-stream
/// pipeline, the bad value marked `«like this»` (the marks are taken out; the error must be
/// located where the mark opens), and what the error says.
struct Bad {
    /// Top-level settings (the `gleap:` block), if any.
    head: Option<&'static str>,
    source: &'static str,
    transform: Option<&'static str>,
    sink: &'static str,
    says: &'static str,
}

const CSV: &str = "csv: { path: in.csv }";
const JSONL_OUT: &str = "jsonl: { path: out/o.jsonl }";

fn bad(source: &'static str, sink: &'static str, says: &'static str) -> Bad {
    Bad {
        head: None,
        source,
        transform: None,
        sink,
        says,
    }
}

fn bad_block(head: &'static str, says: &'static str) -> Bad {
    Bad {
        head: Some(head),
        source: CSV,
        transform: None,
        sink: "gleap: { entity: sessions }",
        says,
    }
}

fn bad_stage(transform: &'static str, says: &'static str) -> Bad {
    Bad {
        head: None,
        source: CSV,
        transform: Some(transform),
        sink: JSONL_OUT,
        says,
    }
}

/// Every option with a constraint, with a value that breaks it.
fn bad_options() -> Vec<Bad> {
    vec![
        // csv source
        bad(
            "csv: { path: «\"in/[x.csv\"» }",
            JSONL_OUT,
            "streams[0].source.csv.path: `in/[x.csv` is not a valid glob",
        ),
        bad(
            "csv: { path: «\"\"» }",
            JSONL_OUT,
            "streams[0].source.csv.path: an empty path names no file",
        ),
        bad(
            "csv: { path: in.csv, has_header: «false» }",
            JSONL_OUT,
            "streams[0].source.csv.has_header: `has_header: false` needs `columns:`",
        ),
        bad(
            "csv: { path: in.csv, delimiter: «\";;\"» }",
            JSONL_OUT,
            "streams[0].source.csv.delimiter: expected one ASCII character",
        ),
        bad(
            "csv: { path: in.csv, delimiter: \"|\", quote: «\"|\"» }",
            JSONL_OUT,
            "streams[0].source.csv.quote: '|' is the `delimiter` character too: the two must differ",
        ),
        bad(
            "csv: { path: in.csv, comment: «\"\\n\"» }",
            JSONL_OUT,
            "streams[0].source.csv.comment: a line end cannot separate, quote or mark fields",
        ),
        bad(
            "csv: { path: in.csv, max_field_mib: «0» }",
            JSONL_OUT,
            "streams[0].source.csv.max_field_mib: 0 is not a size limit",
        ),
        bad(
            "csv: { path: in.csv, max_field_mib: «8», max_record_mib: 4 }",
            JSONL_OUT,
            "streams[0].source.csv.max_field_mib: a field (8 MiB) cannot be larger than a record",
        ),
        bad(
            "csv: { path: in.csv, types: { a: «intt» } }",
            JSONL_OUT,
            "streams[0].source.csv.types.a: unknown type `intt`: did you mean `int`?",
        ),
        bad(
            "csv: { path: in.csv, infer_rows: «-1» }",
            JSONL_OUT,
            "streams[0].source.csv.infer_rows: invalid value: integer `-1`, expected usize",
        ),
        // jsonl source
        bad(
            "jsonl: { path: in.jsonl, max_record_mib: «0» }",
            JSONL_OUT,
            "streams[0].source.jsonl.max_record_mib: 0 is not a size limit",
        ),
        bad(
            "jsonl: { path: «\"in/*[.jsonl\"» }",
            JSONL_OUT,
            "streams[0].source.jsonl.path: `in/*[.jsonl` is not a valid glob",
        ),
        // parquet source
        bad(
            "parquet: { path: in.parquet, batch_size: «0» }",
            JSONL_OUT,
            "streams[0].source.parquet.batch_size: must be at least 1",
        ),
        bad(
            "parquet: { path: in.parquet, columns: [a, «a»] }",
            JSONL_OUT,
            "streams[0].source.parquet.columns[1]: `a` is named twice",
        ),
        // zendesk and intercom dumps
        bad(
            "zendesk: { path: in.json, entity: «widgets» }",
            JSONL_OUT,
            "streams[0].source.zendesk.entity.widgets: unknown kind `widgets`",
        ),
        bad(
            "zendesk: { path: [in.json, «\"a[b\"»], entity: users }",
            JSONL_OUT,
            "streams[0].source.zendesk.path[1]: `a[b` is not a valid glob",
        ),
        bad(
            "zendesk: { path: «[]», entity: users }",
            JSONL_OUT,
            "streams[0].source.zendesk.path: an empty list names no file",
        ),
        bad(
            "intercom: { path: in.json, entity: parts, names_from: «in.json» }",
            JSONL_OUT,
            "streams[0].source.intercom.names_from: names tags and companies for `contacts` and `conversations` only",
        ),
        bad(
            "intercom: { path: in.json, entity: contacts, names_from: «\"x[\"» }",
            JSONL_OUT,
            "streams[0].source.intercom.names_from: `x[` is not a valid glob",
        ),
        // gleap source
        bad(
            "gleap: { entity: «articles» }",
            JSONL_OUT,
            "streams[0].source.gleap.entity: the gleap source reads sessions, tickets or messages, not articles",
        ),
        bad(
            "gleap: { entity: tickets, page_size: «0» }",
            JSONL_OUT,
            "streams[0].source.gleap.page_size: 0 is not between 1 and 1000",
        ),
        bad(
            "gleap: { entity: tickets, page_size: «5000» }",
            JSONL_OUT,
            "streams[0].source.gleap.page_size: 5000 is not between 1 and 1000",
        ),
        bad(
            "gleap: { entity: tickets, since: «yesterday» }",
            JSONL_OUT,
            "streams[0].source.gleap.since: \"yesterday\" is not a date or an RFC 3339 instant",
        ),
        bad(
            "gleap: { entity: tickets, order_by: «id» }",
            JSONL_OUT,
            "streams[0].source.gleap.order_by.id: unknown kind `id`",
        ),
        // transforms
        bad_stage(
            "filter: '.a ==«'",
            "streams[0].transforms[0].filter: invalid jq expression `.a ==`: expected term",
        ),
        bad_stage(
            "cast: { a: «nope» }",
            "streams[0].transforms[0].cast.a: unknown type `nope`",
        ),
        bad_stage(
            "dedupe: { key: «[]» }",
            "streams[0].transforms[0].dedupe.key: name at least one field",
        ),
        bad_stage(
            "html_to_tiptap: { from: «[]» }",
            "streams[0].transforms[0].html_to_tiptap.from: name at least one field to convert",
        ),
        bad_stage(
            "html_to_tiptap: { from: [body], images: «float» }",
            "streams[0].transforms[0].html_to_tiptap.images.float: unknown kind `float`",
        ),
        bad_stage(
            "lookup: { on: a, table: { gleap: «{ entity: sessions }» } }",
            "streams[0].transforms[0].lookup.table.gleap: a lookup table is read from files",
        ),
        bad_stage(
            "lookup: { on: a, table: { csv: { path: in.csv, has_header: «false» } } }",
            "streams[0].transforms[0].lookup.table.csv.has_header: `has_header: false` needs `columns:`",
        ),
        bad_stage(
            "lookup: { on: a, table: { jsonl: { path: in.jsonl, max_field_mib: «0» } } }",
            "streams[0].transforms[0].lookup.table.jsonl.max_field_mib: 0 is not a size limit",
        ),
        bad_stage(
            "lookup: { on: a, table: { csv: { path: in.csv } }, missing: «skip» }",
            "streams[0].transforms[0].lookup.missing.skip: unknown kind `skip`",
        ),
        // parquet sink
        bad(
            CSV,
            "parquet: { path: out/o.parquet, compression_level: «40» }",
            "streams[0].sink.parquet.compression_level: 40 is not a zstd level (1 to 22)",
        ),
        bad(
            CSV,
            "parquet: { path: out/o.parquet, compression: gzip, compression_level: «11» }",
            "streams[0].sink.parquet.compression_level: 11 is not a gzip level (0 to 10)",
        ),
        bad(
            CSV,
            "parquet: { path: out/o.parquet, compression: snappy, compression_level: «1» }",
            "streams[0].sink.parquet.compression_level: 1: only zstd and gzip have levels, not snappy",
        ),
        bad(
            CSV,
            "parquet: { path: out/o.parquet, compression: «brotli» }",
            "streams[0].sink.parquet.compression.brotli: unknown kind `brotli`",
        ),
        bad(
            CSV,
            "parquet: { path: out/o.parquet, row_group_mib: «0» }",
            "streams[0].sink.parquet.row_group_mib: must be at least 1",
        ),
        bad(
            CSV,
            "parquet: { path: out/o.parquet, infer_rows: «0» }",
            "streams[0].sink.parquet.infer_rows: must be at least 1",
        ),
        bad(
            CSV,
            "parquet: { path: out/o.parquet, batch_rows: «0» }",
            "streams[0].sink.parquet.batch_rows: must be at least 1",
        ),
        bad(
            CSV,
            "parquet: { path: out/o.parquet, schema: «{ a: json, a.b: int }» }",
            "streams[0].sink.parquet.schema: `a` is declared as json, so `a.b` cannot reach into it",
        ),
        bad(
            CSV,
            "parquet: { path: «out/» }",
            "streams[0].sink.parquet.path: names a folder; name the file to write",
        ),
        bad(
            CSV,
            "parquet: { path: out/d, dataset: { part_rows: «0» } }",
            "streams[0].sink.parquet.dataset.part_rows: must be at least 1",
        ),
        bad(
            CSV,
            "parquet: { path: out/d, dataset: { max_open_files: «0» } }",
            "streams[0].sink.parquet.dataset.max_open_files: must be at least 1",
        ),
        bad(
            CSV,
            "parquet: { path: out/d, dataset: { partition_by: { field: createdAt, granularity: «week» } } }",
            "streams[0].sink.parquet.dataset.partition_by.granularity.week: unknown kind `week`",
        ),
        bad(
            "gleap: { entity: tickets }",
            "parquet: { path: out/d, dataset: { partition_by: { field: «createdAtt» } } }",
            "streams[0].sink.parquet.dataset.partition_by.field: `createdAtt` is not a field of Gleap tickets records",
        ),
        // csv and jsonl sinks
        bad(
            CSV,
            "csv: { path: out/o.csv, delimiter: «\"\\r\"» }",
            "streams[0].sink.csv.delimiter: a line end cannot separate, quote or mark fields",
        ),
        bad(
            CSV,
            "csv: { path: out/o.csv, columns: «[]» }",
            "streams[0].sink.csv.columns: an empty list writes no column",
        ),
        bad(
            CSV,
            "csv: { path: out/o.csv, columns: [a, «a»] }",
            "streams[0].sink.csv.columns[1]: `a` is named twice",
        ),
        bad(
            CSV,
            "csv: { path: out/o.csv, header: «maybe» }",
            "streams[0].sink.csv.header: expected `true` or `false`, found string \"maybe\"",
        ),
        bad(
            CSV,
            "jsonl: { path: «\"\"» }",
            "streams[0].sink.jsonl.path: an empty path names no file",
        ),
        bad(
            "jsonl: { path: in.jsonl }",
            "jsonl: { path: «in.jsonl» }",
            "streams[0].sink: the output in.jsonl is its own input",
        ),
        // gleap sink
        bad(
            CSV,
            "gleap: { entity: «users» }",
            "streams[0].sink.gleap.entity.users: unknown kind `users`",
        ),
        bad(
            CSV,
            "gleap: { entity: sessions, key: «phone» }",
            "streams[0].sink.gleap.key.phone: unknown kind `phone`",
        ),
        bad(
            CSV,
            "gleap: { entity: tickets, key: «email» }",
            "streams[0].sink.gleap.key: is for sessions; tickets are keyed by `id`",
        ),
        bad(
            CSV,
            "gleap: { entity: sessions, id: «uid» }",
            "streams[0].sink.gleap.id: is for tickets and messages",
        ),
        bad(
            CSV,
            "gleap: { entity: sessions, prefetch: «maybe» }",
            "streams[0].sink.gleap.prefetch: expected true, false or `auto`",
        ),
        bad(
            CSV,
            "gleap: { entity: tickets, prefetch: «true» }",
            "streams[0].sink.gleap.prefetch: is for sessions, not tickets",
        ),
        bad(
            CSV,
            "gleap: { entity: tickets, refs: { session: «users» } }",
            "streams[0].sink.gleap.refs.session: there is no stream named `users`",
        ),
        bad(
            CSV,
            "gleap: { entity: tickets, refs: { ticket: «s» } }",
            "streams[0].sink.gleap.refs.ticket: `ticket` is not a reference of tickets; it takes session",
        ),
        bad(
            CSV,
            "gleap: { entity: sessions, refs: { session: «s» } }",
            "streams[0].sink.gleap.refs.session: sessions take no `refs`",
        ),
        bad(
            CSV,
            "gleap: { entity: tickets, article_url: «\"https://h/{docId}\"» }",
            "streams[0].sink.gleap.article_url: is for articles, not tickets",
        ),
        bad(
            CSV,
            "gleap: { entity: tickets, article_hosts: «[h]» }",
            "streams[0].sink.gleap.article_hosts: is for articles, not tickets",
        ),
        bad(
            CSV,
            "gleap: { entity: collections, article_url: «\"https://h/x\"» }",
            "streams[0].sink.gleap.article_url: \"https://h/x\" names no article",
        ),
        bad(
            CSV,
            "gleap: «{ entity: articles }",
            "streams[0].sink.gleap.refs: articles need `refs: {collection: <collections stream>}`",
        ),
        bad(
            CSV,
            "gleap: { entity: tickets, attachments: «copy» }",
            "streams[0].sink.gleap.attachments.copy: unknown kind `copy`",
        ),
        bad(
            CSV,
            "gleap: { entity: tickets, attachments: rehost, files: { max_file_mib: «0» } }",
            "streams[0].sink.gleap.files.max_file_mib: 0 must be above 0",
        ),
        bad(
            CSV,
            "gleap: { entity: tickets, files: { per_host_concurrency: «0» } }",
            "streams[0].sink.gleap.files.per_host_concurrency: must be 1 or more",
        ),
        bad(
            CSV,
            "gleap: { entity: tickets, files: { max_attempts: «0» } }",
            "streams[0].sink.gleap.files.max_attempts: must be 1 or more",
        ),
        bad(
            CSV,
            "gleap: { entity: tickets, files: { timeout_secs: «-1» } }",
            "streams[0].sink.gleap.files.timeout_secs: -1 must be above 0",
        ),
        bad(
            CSV,
            "gleap: { entity: tickets, files: { auth: [{ host: «\"https://a/\"», bearer: t }] } }",
            "streams[0].sink.gleap.files.auth[0].host: must be a host name",
        ),
        bad(
            CSV,
            "gleap: { entity: tickets, files: { auth: [«{ host: a, bearer: t, user: u }»] } }",
            "streams[0].sink.gleap.files.auth[0]: takes either `bearer`, or `user` and `password`",
        ),
        bad(
            CSV,
            "gleap: { entity: sessions, agents: «{ field: agent }» }",
            "streams[0].sink.gleap.agents: `agents` is for tickets and messages, not sessions",
        ),
        // the pipeline's `gleap:` block
        bad_block(
            "gleap: { base_url: «\"ftp://gleap\"» }",
            "gleap.base_url: `ftp://gleap` must start with http:// or https://",
        ),
        bad_block(
            "gleap: { requests_per_minute: «0» }",
            "gleap.requests_per_minute: must be above 0",
        ),
        bad_block(
            "gleap: { concurrency: «many» }",
            "gleap.concurrency: expected a number or `adaptive`, found \"many\"",
        ),
        // the stream's own options
        Bad {
            head: None,
            source: "csv: { path: in.csv }\n    jq_timeout_ms: «0»",
            transform: None,
            sink: JSONL_OUT,
            says: "streams[0].jq_timeout_ms: must be at least 1",
        },
        Bad {
            head: None,
            source: "csv: { path: in.csv }\n    needs: [«nope»]",
            transform: None,
            sink: JSONL_OUT,
            says: "streams[0].needs: there is no stream named `nope`",
        },
    ]
}

/// Where `«` is in `text` (1-based line and column), and the text without the marks.
fn marked(text: &str) -> ((usize, usize), String) {
    let start = text.find('«').expect("a marked value");
    let before = &text[..start];
    let line = before.matches('\n').count() + 1;
    let column = before[before.rfind('\n').map_or(0, |i| i + 1)..]
        .chars()
        .count()
        + 1;
    ((line, column), text.replace(['«', '»'], ""))
}

/// `validate` rejects every bad option `run` would reject, naming the option where it is
/// written, and `run` fails on it with the same message before writing anything.
#[test]
fn validate_and_run_reject_every_bad_option_alike() {
    let mut failures = Vec::new();
    for case in bad_options() {
        let dir = Dir::new();
        dir.write("in.csv", "a,b\n1,2\n");
        dir.write("in.jsonl", "{\"a\": 1}\n");
        dir.write("in.json", "{\"users\": []}\n");
        let transforms = case
            .transform
            .map(|t| format!("    transforms:\n      - {t}\n"))
            .unwrap_or_default();
        let text = format!(
            "version: 1\nname: t\n{}streams:\n  - name: s\n    source:\n      {}\n{transforms}    sink:\n      {}\n",
            case.head.map(|h| format!("{h}\n")).unwrap_or_default(),
            case.source,
            case.sink
        );
        let ((line, column), text) = marked(&text);
        dir.write("p.yaml", &text);
        let expected = format!("p.yaml:{line}:{column}: {}", case.says);
        let validate = dir.run(&["validate", "p.yaml"]);
        let errors: Vec<&str> = validate
            .stderr
            .lines()
            .filter(|l| {
                l.starts_with("p.yaml:") && !l.ends_with(" problem") && !l.ends_with(" problems")
            })
            .collect();
        if validate.code != 2 || !errors.iter().any(|e| e.starts_with(&expected)) {
            failures.push(format!(
                "{text}validate: expected exit 2 and an error starting `{expected}`, got {}:\n{}",
                validate.code, validate.stderr
            ));
            continue;
        }
        let run = dir.run(&["run", "p.yaml", "--no-progress"]);
        let written: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !["in.csv", "in.jsonl", "in.json", "p.yaml"].contains(&n.as_str()))
            .collect();
        if run.code != 2 || run.stderr.lines().collect::<Vec<_>>() != errors || !written.is_empty()
        {
            failures.push(format!(
                "{text}run: expected exit 2 with the errors of validate and nothing written, got {} ({written:?}):\n{}",
                run.code, run.stderr
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n\n{}",
        failures.len(),
        bad_options().len(),
        failures.join("\n")
    );
}
