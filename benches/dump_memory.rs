//! Peak memory of migrating a Zendesk dump whose audits come as one large API page (one
//! line, `{"audits": [...], "next_page": null, "count": N}`, as the API answers), through
//! the shipped `pipelines/zendesk_to_gleap.yaml` into the embedded emulator (no quota), at a
//! quarter of the size and at the full size, each in a fresh process. Target (issue 12): a
//! 1 GB audits page migrates under 250 MB peak, and memory stays flat (the full size's peak
//! no more than 1.2 x the quarter's).
//!
//!     cargo bench --bench dump_memory                      # 1024 MB
//!     DUMP_BENCH_MB=256 cargo bench --bench dump_memory    # smaller
//!     GLEAP_ETL_BIN=path/to/gleap-etl cargo bench ...      # another build (a before/after)
//!
//! The dump: 200 users, 500 tickets, and audits of about 8 KB each (a change, a notification
//! with a long body, request metadata), 2,000 of them, evenly spread, with a public or
//! private comment: whatever the page's size, the emulator holds as many messages, so the
//! peak measures the reading of the page (130,000 audits per GB).

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET_PEAK_BYTES: u64 = 250 * 1024 * 1024;
const TARGET_GROWTH: f64 = 1.20;
const USERS: u64 = 200;
const TICKETS: u64 = 500;
const COMMENTS: u64 = 2_000;
/// About the size of one audit.
const AUDIT_BYTES: u64 = 7_700;

fn main() {
    let mb: u64 = std::env::var("DUMP_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let bin = std::env::var("GLEAP_ETL_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_BIN_EXE_gleap-etl")));
    let dir = tempfile::tempdir().unwrap();
    let mut peaks = Vec::new();
    for size in [mb / 4, mb] {
        let dump = dir.path().join(format!("dump-{size}"));
        let audits = write_dump(&dump, size * 1024 * 1024);
        let report = dir.path().join(format!("report-{size}.json"));
        let started = std::time::Instant::now();
        let status = Command::new(&bin)
            .args([
                "run",
                "pipelines/zendesk_to_gleap.yaml",
                "--emulator",
                "--emulator-quota",
                "unlimited",
                "--quiet",
                "--report",
                report.to_str().unwrap(),
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("ZENDESK_DIR", &dump)
            .env("STATE_DIR", dir.path().join(format!("state-{size}")))
            .env("GLEAP_REQUESTS_PER_MINUTE", "100000000")
            .status()
            .expect("gleap-etl runs");
        let secs = started.elapsed().as_secs_f64();
        let report: serde_json::Value = std::fs::read(&report)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_else(|| panic!("no report from the {size} MB run ({status})"));
        assert!(
            status.code() == Some(0),
            "the {size} MB run did not succeed ({status}): {}",
            report["error"]
        );
        let peak = report["peak_memory_bytes"]
            .as_u64()
            .expect("peak memory is reported on Linux");
        let comments = report["streams"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "comments")
            .map(|s| s["written"].clone())
            .unwrap_or_default();
        let page_mb = std::fs::metadata(dump.join("audits.json")).unwrap().len() as f64 / 1e6;
        println!(
            "zendesk audits page={page_mb:>7.1} MB ({audits} audits, {comments} comments written)  elapsed={secs:>6.1} s  peak_rss={:>6.1} MB",
            peak as f64 / (1024.0 * 1024.0)
        );
        peaks.push(peak);
        std::fs::remove_dir_all(&dump).unwrap();
    }
    common::check_peaks(
        (peaks[0], peaks[1]),
        TARGET_PEAK_BYTES,
        TARGET_GROWTH,
        &format!("peak_rss({mb} MB page) < 250 MB"),
        "peak_rss <= 1.2 x peak_rss(quarter size)",
    );
}

/// Writes users.json, tickets.json and an audits.json page of about `bytes`; returns the
/// number of audits.
fn write_dump(dir: &Path, bytes: u64) -> u64 {
    std::fs::create_dir_all(dir).unwrap();
    let users: Vec<String> = (0..USERS)
        .map(|u| {
            let role = if u < 10 { "agent" } else { "end-user" };
            format!(
                r#"{{"id": {}, "name": "User {u}", "email": "user{u}@example.com", "role": "{role}", "external_id": "crm-{u}", "created_at": "2024-03-01T09:00:00Z", "updated_at": "2024-03-02T09:00:00Z", "tags": [], "user_fields": {{}}}}"#,
                user_id(u)
            )
        })
        .collect();
    std::fs::write(
        dir.join("users.json"),
        format!("{{\"users\": [{}], \"next_page\": null}}", users.join(", ")),
    )
    .unwrap();
    let tickets: Vec<String> = (0..TICKETS)
        .map(|t| {
            format!(
                r#"{{"id": {}, "subject": "Ticket {t}", "description": "Help with {t}", "status": "open", "priority": "normal", "type": "question", "requester_id": {}, "tags": [], "created_at": "2024-03-03T09:00:00Z", "updated_at": "2024-03-04T09:00:00Z"}}"#,
                ticket_id(t),
                user_id(10 + t % (USERS - 10))
            )
        })
        .collect();
    std::fs::write(
        dir.join("tickets.json"),
        format!(
            "{{\"tickets\": [{}], \"next_page\": null}}",
            tickets.join(", ")
        ),
    )
    .unwrap();

    let words = [
        "ticket", "update", "customer", "replied", "status", "changed", "priority", "agent",
        "assigned", "group", "support", "billing", "invoice", "refund", "shipping", "order",
    ];
    let notification: String = (0..900)
        .map(|i| words[(i * 7 + i / 3) % words.len()])
        .collect::<Vec<_>>()
        .join(" ");
    let file = std::fs::File::create(dir.join("audits.json")).unwrap();
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    out.write_all(b"{\"audits\": [").unwrap();
    let mut written = 0u64;
    let mut n = 0u64;
    let stride = (bytes / AUDIT_BYTES / COMMENTS).max(1);
    while written < bytes {
        let ticket = ticket_id(n % TICKETS);
        let author = user_id(n % USERS);
        let mut events = Vec::new();
        if n.is_multiple_of(stride) {
            events.push(format!(
                r#"{{"id": {}, "type": "Comment", "author_id": {author}, "body": "Comment {n} on ticket {ticket}: the {} was {}.", "html_body": "<div class=\"zd-comment\"><p>Comment {n} on ticket {ticket}</p></div>", "public": {}, "attachments": [], "audit_id": {}}}"#,
                n * 10,
                words[(n % 16) as usize],
                words[((n / 16) % 16) as usize],
                n.is_multiple_of(2 * stride),
                n + 1
            ));
        }
        events.push(format!(
            r#"{{"id": {}, "type": "Change", "field_name": "status", "value": "open", "previous_value": "new"}}"#,
            n * 10 + 1
        ));
        events.push(format!(
            r#"{{"id": {}, "type": "Notification", "subject": "[Ticket {ticket}] update {n}", "body": "{n}: {notification}", "recipients": [{author}]}}"#,
            n * 10 + 2
        ));
        let audit = format!(
            r#"{}{{"id": {}, "ticket_id": {ticket}, "created_at": "2024-03-05T10:{:02}:{:02}Z", "author_id": {author}, "via": {{"channel": "web", "source": {{"from": {{}}, "to": {{}}, "rel": null}}}}, "metadata": {{"system": {{"client": "Mozilla/5.0 (X11; Linux x86_64)", "ip_address": "192.0.2.{}", "location": "Berlin, Germany", "latitude": 52.5, "longitude": 13.4}}, "custom": {{}}}}, "events": [{}]}}"#,
            if n == 0 { "" } else { ", " },
            n + 1,
            (n / 60) % 60,
            n % 60,
            n % 250,
            events.join(", ")
        );
        out.write_all(audit.as_bytes()).unwrap();
        written += audit.len() as u64;
        n += 1;
    }
    write!(out, "], \"next_page\": null, \"count\": {n}}}").unwrap();
    out.flush().unwrap();
    n
}

fn user_id(u: u64) -> u64 {
    900_000_000_000 + u
}

fn ticket_id(t: u64) -> u64 {
    10_000 + t
}
