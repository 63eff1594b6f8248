//! Fuzz targets for the parsers that meet other people's bytes: the CSV source, the pipeline
//! (YAML) loader and `html_to_tiptap`. Each target generates inputs with proptest (structured
//! generators that produce the quotes, aliases, nesting and schemes the parsers must survive)
//! for `GLEAP_ETL_FUZZ_SECS` seconds (default 2; `.ci/run` gives each 60). Every input that
//! once failed is kept in `tests/fuzz-corpus/<target>/` and replayed first: a failure found
//! here writes its shrunk input there, to be committed with the fix.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};

use gleap_etl::pipeline::Pipeline;
use gleap_etl::sources::{SourceConfig, SourceItem};
use gleap_etl::transforms::tiptap;

use crate::util::repo;

fn budget() -> Duration {
    let secs = std::env::var("GLEAP_ETL_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(2.0);
    Duration::from_secs_f64(secs)
}

fn corpus(target: &str) -> PathBuf {
    repo().join("tests/fuzz-corpus").join(target)
}

/// Replays the saved inputs of `target`, then runs generated ones until the budget is spent.
/// A failure saves its shrunk input under the corpus and fails the test.
fn fuzz<S>(target: &str, strategy: S, check: impl Fn(&[u8]) -> Result<(), TestCaseError>)
where
    S: Strategy<Value = Vec<u8>>,
{
    let saved = corpus(target);
    if let Ok(entries) = std::fs::read_dir(&saved) {
        for entry in entries.flatten() {
            let input = std::fs::read(entry.path()).unwrap();
            if let Err(e) = check(&input) {
                panic!("{}: {e}", entry.path().display());
            }
        }
    }
    let deadline = Instant::now() + budget();
    let mut cases = 0u64;
    while Instant::now() < deadline {
        let mut runner = TestRunner::new(Config {
            cases: 64,
            failure_persistence: None,
            ..Config::default()
        });
        match runner.run(&strategy, |input| check(&input)) {
            Ok(()) => cases += 64,
            Err(TestError::Fail(reason, input)) => {
                std::fs::create_dir_all(&saved).unwrap();
                let name = format!("{:016x}", xxhash(&input));
                let path = saved.join(name);
                std::fs::write(&path, &input).unwrap();
                panic!(
                    "{target}: {reason}; the input is saved as {}",
                    path.display()
                );
            }
            Err(TestError::Abort(reason)) => panic!("{target}: aborted: {reason}"),
        }
    }
    eprintln!("fuzz {target}: {cases} inputs, no failure");
}

/// A stable name for a saved input (FNV-1a; no need for more).
fn xxhash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    })
}

/// Pieces that concatenate into inputs: the grammar's own tokens plus stray bytes.
fn pieces(tokens: &'static [&'static str], max: usize) -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        8 => proptest::sample::select(tokens).prop_map(|t| t.as_bytes().to_vec()),
        2 => "[a-z0-9 ]{0,6}".prop_map(String::into_bytes),
        1 => any::<u8>().prop_map(|b| vec![b]),
        1 => (proptest::sample::select(tokens), 1usize..200)
            .prop_map(|(t, n)| t.repeat(n).into_bytes()),
    ];
    proptest::collection::vec(token, 0..max).prop_map(|parts| parts.concat())
}

/// Every item a source gives, one line each (a batch's rows as the records they are).
fn item_lines(items: gleap_etl::sources::SourceIter) -> Vec<String> {
    let mut lines = Vec::new();
    for item in items {
        match item {
            Ok(SourceItem::Record(r, p)) => lines.push(format!("ok {p:?} {r:?}")),
            Ok(SourceItem::Batch(b)) => {
                for (r, p) in b.to_rows() {
                    lines.push(format!("ok {p:?} {r:?}"));
                }
            }
            Ok(SourceItem::Rejected(r)) => lines.push(format!("bad {r:?}")),
            Err(e) => lines.push(format!("error {e}")),
        }
    }
    lines
}

/// Records and rejections read from `bytes`, or `None` when the file cannot be read to its
/// end (a located error, not a crash). The file read in batches gives the same items.
fn read_csv(dir: &Path, bytes: &[u8]) -> Result<Option<(u64, u64)>, TestCaseError> {
    let path = dir.join("in.csv");
    std::fs::write(&path, bytes).unwrap();
    let config: SourceConfig =
        serde_json::from_value(serde_json::json!({"csv": {"path": path}})).unwrap();
    let opened = match config.open() {
        Ok(o) => o,
        Err(_) => return Ok(None),
    };
    if let Some(Ok(columnar)) = config.open_columnar() {
        let by_rows = item_lines(config.open().unwrap().items);
        prop_assert_eq!(
            item_lines(columnar.items),
            by_rows,
            "batches differ from rows"
        );
    }
    let lines = bytes.iter().filter(|&&b| b == b'\n').count() as u64 + 1;
    let (mut records, mut rejected) = (0u64, 0u64);
    for item in opened.items {
        let position = match item {
            Ok(SourceItem::Record(_, p)) => {
                records += 1;
                p
            }
            Ok(SourceItem::Rejected(r)) => {
                rejected += 1;
                prop_assert!(!r.reason.is_empty(), "a rejection without a reason");
                r.position
            }
            Ok(SourceItem::Batch(_)) => unreachable!("a source opened for rows gives no batch"),
            // A fatal error names its place; the rows after it are not read.
            Err(e) => {
                prop_assert!(
                    e.to_string().contains("in.csv"),
                    "{e} does not name the file"
                );
                return Ok(None);
            }
        };
        if let Some(line) = position.line {
            prop_assert!(line <= lines, "line {line} of a {lines}-line file");
        }
    }
    Ok(Some((records, rejected)))
}

#[test]
fn fuzz_csv_source() {
    const TOKENS: &[&str] = &[
        ",",
        "\"",
        "\"\"",
        "\n",
        "\r\n",
        "\r",
        "id,name,n\n",
        "a",
        "1",
        "-2.5",
        "true",
        "12345678901234567890123",
        "\u{e9}",
        "\u{1F600}",
        "\t",
        " ",
        "\\",
        "\u{0}",
    ];
    let dir = tempfile::tempdir().unwrap();
    fuzz("csv_source", pieces(TOKENS, 60), |bytes| {
        let Some((records, rejected)) = read_csv(dir.path(), bytes)? else {
            return Ok(());
        };
        // Without quotes every non-blank line after the header (the first non-blank line)
        // is a record or a rejection.
        if !bytes.contains(&b'"') && !bytes.contains(&b'\r') && bytes.ends_with(b"\n") {
            let text = String::from_utf8_lossy(bytes);
            let lines = text.split('\n').filter(|l| !l.is_empty()).count() as u64;
            let rows = lines.saturating_sub(1);
            prop_assert_eq!(records + rejected, rows, "rows lost or invented");
        }
        Ok(())
    });
}

#[test]
fn fuzz_pipeline_loader() {
    const TOKENS: &[&str] = &[
        "version: 1\n",
        "name: p\n",
        "streams:\n",
        "  - name: s\n",
        "    source: ",
        "{ csv: { path: a.csv } }\n",
        "    sink: ",
        "{ jsonl: { path: b.jsonl } }\n",
        "    transforms:\n",
        "      - jq: '.a'\n",
        "      - cast: { a: int }\n",
        "&a ",
        "*a",
        "&b [",
        "*b, ",
        "]",
        "[",
        "{",
        "}",
        ": ",
        "- ",
        "\n",
        "  ",
        "\t",
        "'",
        "\"",
        "${X}",
        "${X:-d}",
        "${",
        "$$",
        "#",
        "---\n",
        "!!str ",
        "|\n",
        ">\n",
        "? ",
        "<<: *a\n",
        "\u{feff}",
        "\u{e9}",
    ];
    let file = Path::new("fuzz.yaml");
    let env = |name: &str| (name == "X").then(|| "value".to_string());
    fuzz("pipeline_loader", pieces(TOKENS, 80), |bytes| {
        let Ok(text) = std::str::from_utf8(bytes) else {
            return Ok(());
        };
        let lines = text.lines().count() as u32 + 1;
        if let Err(errors) = Pipeline::parse(text, file, &env) {
            prop_assert!(!errors.errors.is_empty(), "an error without a message");
            for e in &errors.errors {
                prop_assert!(e.location.line <= lines, "{e:?} past the end");
            }
        }
        Ok(())
    });
}

#[test]
fn fuzz_html_to_tiptap() {
    const TOKENS: &[&str] = &[
        "<p>",
        "</p>",
        "<div>",
        "</div>",
        "<b>",
        "</b>",
        "<i>",
        "<a href=\"",
        "\">",
        "</a>",
        "<img src=\"",
        "javascript:alert(1)",
        "data:image/png;base64,AAAA",
        "https://x.test/a.png",
        "cid:part1",
        "\"/>",
        "<ul><li>",
        "</li></ul>",
        "<ol>",
        "<br>",
        "<hr>",
        "<blockquote>",
        "<h1>",
        "<pre><code>",
        "</code></pre>",
        "<table><tr><td>",
        "&amp;",
        "&lt;",
        "&#0;",
        "&#x1F600;",
        "<!--",
        "-->",
        "<script>",
        "</script>",
        "<style>",
        "text",
        " ",
        "\n",
        "<",
        ">",
        "\"",
        "'",
        "<svg><image href=\"",
        "vbscript:x",
    ];
    fuzz("html_to_tiptap", pieces(TOKENS, 80), |bytes| {
        let html = String::from_utf8_lossy(bytes);
        let (doc, attachments) = tiptap::html_to_doc(&html);
        prop_assert_eq!(doc["type"].as_str(), Some("doc"));
        for a in &attachments {
            let url = a["url"].as_str().unwrap_or_default().to_ascii_lowercase();
            prop_assert!(
                !url.trim_start().starts_with("javascript:")
                    && !url.trim_start().starts_with("vbscript:")
                    && !url.trim_start().starts_with("data:"),
                "attachment url {url}"
            );
        }
        let _ = tiptap::html_text(&html);
        Ok(())
    });
}
