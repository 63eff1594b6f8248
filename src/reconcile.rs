//! `gleap-etl reconcile PIPELINE`: rebuilds the id map of a lost (or emptied) state store
//! from what Gleap holds, so that the next run creates nothing twice.
//!
//! The source is read again through the pipeline's transforms and prepared as the sink would
//! send it ([`crate::verify::SourceReading`]); then, stream by stream (sessions, tickets,
//! messages, so that references resolve through what was just rebuilt):
//!
//! - sessions are found by their key (`userId` or `email`) in the list of all sessions;
//! - tickets by this pipeline's import marker, `customData.importId`, in the list of all
//!   tickets (no server filter is trusted); tickets that carry the marker of a record the
//!   source no longer has are mapped too, so that `undo` and `run --prune` can reach them;
//! - messages ticket by ticket (`GET /messages?ticket=`), by content, note and author, in the
//!   source's order: the first unused message of the ticket that is the record.
//!
//! A record found and equal is mapped with the hash of what the sink sends (the next run sends
//! nothing for it); one found but different is mapped so that the next run updates it; one
//! not found is left for the next run to create; two candidates for one record are reported
//! and left unmapped. Mappings the store already has are kept. Tickets and messages found are
//! recorded as created by this pipeline (they carry its marker, or sit on its tickets);
//! sessions' maker cannot be known, so `undo` leaves them alone.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use serde::Serialize;
use serde_json::Value;

use crate::engine::{self, GleapTarget};
use crate::error::{Error, Result};
use crate::gleap::answer;
use crate::gleap::client::RequestCounters;
use crate::pipeline::Pipeline;
use crate::sinks::gleap::{Entity, id_text, import_id, matches_remote, same_message};
use crate::state::{Commit, MapEntry, Origin, StateStore};
use crate::verify::{Item, Prepared, SourceReading, list_every, pages};

/// How to reconcile.
#[derive(Debug, Clone, Default)]
pub struct ReconcileOptions {
    /// Overrides the pipeline's `state_dir`.
    pub state_dir: Option<PathBuf>,
    /// Where to read instead of the pipeline's `gleap:` target.
    pub gleap_target: Option<GleapTarget>,
}

/// The counts of one stream.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StreamReconcile {
    pub stream: String,
    pub entity: &'static str,
    /// Records the source holds (after the transforms) that the sink would send.
    pub in_source: u64,
    /// Already in the id map: kept as they were.
    pub already_mapped: u64,
    /// Found in Gleap as the sink would send them: mapped, the next run sends nothing.
    pub matched: u64,
    /// Found in Gleap but different there: mapped, the next run updates them.
    pub matched_changed: u64,
    /// Not in Gleap: the next run creates them.
    pub not_in_gleap: u64,
    /// More than one record in Gleap is this record: none mapped.
    pub ambiguous: u64,
    /// Tickets with this pipeline's marker for records the source no longer has: mapped.
    pub gone_from_source: u64,
    /// Messages on this pipeline's tickets that no source record is (written in Gleap).
    pub others_in_gleap: u64,
    /// Records the pipeline dead-letters (never sent).
    pub dead_lettered: u64,
}

/// A record that could not be matched.
#[derive(Debug, Clone, Serialize)]
pub struct Unmatched {
    pub stream: String,
    /// `not_in_gleap`, `ambiguous` or `gone_from_source`.
    pub kind: &'static str,
    pub record: String,
    pub gleap_ids: Vec<String>,
    pub detail: String,
}

/// What `reconcile` did.
#[derive(Debug, Serialize)]
pub struct ReconcileReport {
    pub pipeline: String,
    pub state_dir: PathBuf,
    /// The requests estimated before the first one.
    pub estimate: u64,
    /// Requests sent (retries included).
    pub requests: u64,
    pub streams: Vec<StreamReconcile>,
    pub unmatched: Vec<Unmatched>,
    /// Streams not reconciled, and why.
    pub not_reconciled: Vec<String>,
}

/// Rebuilds the id map of `pipeline`; `on_estimate` hears the cost before the first request.
pub fn reconcile(
    pipeline: &Pipeline,
    options: &ReconcileOptions,
    on_estimate: impl FnOnce(u64, &str),
) -> Result<ReconcileReport> {
    let state_dir = pipeline.state_dir(options.state_dir.as_deref());
    crate::dirs::create(&state_dir, "state dir")?;
    let _lock = crate::dirs::StateDirLock::acquire(&state_dir)?;
    let store = StateStore::open(&state_dir)?;
    let reading = SourceReading::open(pipeline, options.gleap_target.as_ref(), "reconcile")?;
    let mut streams = reading.streams.clone();
    // Contacts, tickets, messages: undo's order reversed, so that references resolve.
    streams.sort_by_key(|(_, g)| std::cmp::Reverse(crate::undo::rank(g.entity)));

    // The cost: list pages of sessions and tickets, sized by the source; a request per
    // ticket of the source (its messages), before any request.
    let source_size = |entity: Entity| -> u64 {
        streams
            .iter()
            .filter(|(_, g)| g.entity == entity)
            .map(|(name, _)| reading.source_len(name))
            .sum()
    };
    let has = |entity: Entity| streams.iter().any(|(_, g)| g.entity == entity);
    let session_pages = if has(Entity::Sessions) {
        pages(source_size(Entity::Sessions))
    } else {
        0
    };
    let ticket_pages = if has(Entity::Tickets) {
        pages(source_size(Entity::Tickets))
    } else {
        0
    };
    let tickets_with_messages = if has(Entity::Messages) {
        source_size(Entity::Tickets)
    } else {
        0
    };
    let team = u64::from(reading.has_team());
    let estimate = session_pages + ticket_pages + tickets_with_messages + team;
    on_estimate(
        estimate,
        &format!(
            "about {estimate} requests: list pages {session_pages} of sessions, {ticket_pages} of tickets{}{}",
            if tickets_with_messages > 0 {
                format!("; the messages of up to {tickets_with_messages} tickets, one request each")
            } else {
                String::new()
            },
            if team > 0 { "; the team, once" } else { "" }
        ),
    );

    let counters = RequestCounters::default();
    let mut listed: HashMap<&'static str, Vec<Value>> = HashMap::new();
    let mut summaries = Vec::new();
    let mut unmatched = Vec::new();
    for (name, config) in &streams {
        // Prepared now: references resolve through the mappings rebuilt just before.
        let prepared = reading.prepare(name, config, &store, None)?;
        let mut summary = StreamReconcile {
            stream: name.clone(),
            entity: config.entity.name(),
            in_source: prepared.items.len() as u64,
            dead_lettered: prepared.not_sent.len() as u64,
            ..Default::default()
        };
        let commit = match config.entity {
            Entity::Sessions | Entity::Tickets => {
                let path = config.entity.path();
                let docs = match listed.entry(path) {
                    std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::hash_map::Entry::Vacant(e) => {
                        let all = reading
                            .runtime
                            .block_on(list_every(&reading.client, &counters, path))
                            .map_err(|e| Error::paging("reading Gleap", &e))?;
                        e.insert(all)
                    }
                };
                match_keyed(&prepared, docs, &mut summary, &mut unmatched)
            }
            _ => {
                let mut by_ticket: Vec<(String, Vec<&Item>)> = Vec::new();
                let mut at: HashMap<&str, usize> = HashMap::new();
                for item in &prepared.items {
                    let Some((_, ticket)) = &item.ticket else {
                        continue;
                    };
                    let n = *at.entry(ticket).or_insert_with(|| {
                        by_ticket.push((ticket.clone(), Vec::new()));
                        by_ticket.len() - 1
                    });
                    by_ticket[n].1.push(item);
                }
                let mut commit = Commit::default();
                for (ticket, items) in by_ticket {
                    let docs = reading
                        .runtime
                        .block_on(crate::verify::ticket_messages(
                            &reading.client,
                            &counters,
                            &ticket,
                        ))
                        .map_err(|e| Error::paging("reading Gleap", &e))?;
                    match_messages(
                        &prepared,
                        &ticket,
                        &items,
                        &docs,
                        &mut commit,
                        &mut summary,
                        &mut unmatched,
                    );
                }
                commit
            }
        };
        for (record, reason) in &prepared.not_sent {
            unmatched.push(Unmatched {
                stream: name.clone(),
                kind: "dead_lettered",
                record: record.clone(),
                gleap_ids: Vec::new(),
                detail: reason.clone(),
            });
        }
        store.commit(name, &commit)?;
        summaries.push(summary);
    }
    let (requests, _, _) = reading.client.totals.snapshot();
    Ok(ReconcileReport {
        pipeline: pipeline.name().to_string(),
        state_dir,
        estimate,
        requests,
        streams: summaries,
        unmatched,
        not_reconciled: reading.not_covered.clone(),
    })
}

/// The mapping of a record found: the hash of what the sink sends when Gleap holds exactly
/// that (nothing to send next time), else one no body has (the next run updates it).
fn found(item: &Item, doc: &Value, summary: &mut StreamReconcile) -> Option<MapEntry> {
    let id = answer::id(doc)?;
    let same = matches_remote(&item.body, doc);
    if same {
        summary.matched += 1;
    } else {
        summary.matched_changed += 1;
    }
    Some(MapEntry {
        gleap_id: id.to_string(),
        hash: if same { item.hash } else { 0 },
    })
}

/// Maps `source_id`; `created`: recorded as made by this pipeline (tickets, messages).
fn map(commit: &mut Commit, source_id: &str, entry: MapEntry, created: bool) {
    if created {
        commit
            .origins
            .insert(source_id.to_string(), Origin::Created);
    }
    commit.confirmed.push((source_id.to_string(), entry));
}

/// A source record Gleap does not hold: the next run creates it.
fn not_in_gleap(
    s: &Prepared,
    item: &Item,
    detail: String,
    summary: &mut StreamReconcile,
    unmatched: &mut Vec<Unmatched>,
) {
    summary.not_in_gleap += 1;
    unmatched.push(Unmatched {
        stream: s.name.clone(),
        kind: "not_in_gleap",
        record: item.source_id.clone(),
        gleap_ids: Vec::new(),
        detail,
    });
}

/// Sessions by key, tickets by import marker.
fn match_keyed(
    s: &Prepared,
    docs: &[Value],
    summary: &mut StreamReconcile,
    unmatched: &mut Vec<Unmatched>,
) -> Commit {
    let entity = s.config.entity;
    let key_of_doc = |d: &Value| -> Option<String> {
        match entity {
            Entity::Sessions => d.get(s.config.key().field()).and_then(id_text),
            _ => answer::import_marker(d).map(str::to_string),
        }
    };
    let key_of_item = |source_id: &str| match entity {
        Entity::Sessions => source_id.to_string(),
        _ => import_id(&s.name, source_id),
    };
    let key_name = match entity {
        Entity::Sessions => s.config.key().field(),
        _ => "customData.importId",
    };
    let mapped: HashSet<&str> = s.map.values().map(|e| e.gleap_id.as_str()).collect();
    let mut by_key: HashMap<String, Vec<&Value>> = HashMap::new();
    for d in docs {
        if let (Some(k), Some(id)) = (key_of_doc(d), answer::id(d))
            && !mapped.contains(id)
        {
            by_key.entry(k).or_default().push(d);
        }
    }
    let mut commit = Commit::default();
    let mut seen = HashSet::new();
    for item in &s.items {
        seen.insert(key_of_item(&item.source_id));
        if s.map.contains_key(&item.source_id) {
            summary.already_mapped += 1;
            continue;
        }
        let key = key_of_item(&item.source_id);
        match by_key.get(&key).map(Vec::as_slice).unwrap_or_default() {
            [] => not_in_gleap(
                s,
                item,
                format!(
                    "no {} in Gleap has {key_name} {key:?}: the next run creates it",
                    entity.singular()
                ),
                summary,
                unmatched,
            ),
            [doc] => {
                if let Some(entry) = found(item, doc, summary) {
                    map(
                        &mut commit,
                        &item.source_id,
                        entry,
                        entity == Entity::Tickets,
                    );
                }
            }
            several => {
                summary.ambiguous += 1;
                let ids: Vec<String> = several
                    .iter()
                    .filter_map(|d| answer::id(d).map(str::to_string))
                    .collect();
                unmatched.push(Unmatched {
                    stream: s.name.clone(),
                    kind: "ambiguous",
                    record: item.source_id.clone(),
                    detail: format!(
                        "{} {} in Gleap have {key_name} {key:?} ({}): none mapped; delete the extra ones in Gleap and reconcile again",
                        several.len(),
                        entity.name(),
                        ids.join(", ")
                    ),
                    gleap_ids: ids,
                });
            }
        }
    }
    // Tickets this pipeline made for records the source no longer has: mapped (as made by
    // it), so that `undo` and `--prune` reach them.
    if entity == Entity::Tickets {
        let prefix = import_id(&s.name, "");
        let mut gone: Vec<(&String, &Vec<&Value>)> = by_key
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix) && !seen.contains(*k))
            .collect();
        gone.sort_by(|a, b| a.0.cmp(b.0));
        for (key, docs) in gone {
            let source_id = &key[prefix.len()..];
            let ids: Vec<String> = docs
                .iter()
                .filter_map(|d| answer::id(d).map(str::to_string))
                .collect();
            summary.gone_from_source += 1;
            if let [id] = ids.as_slice() {
                let entry = MapEntry {
                    gleap_id: id.clone(),
                    hash: 0,
                };
                map(&mut commit, source_id, entry, true);
            }
            unmatched.push(Unmatched {
                stream: s.name.clone(),
                kind: "gone_from_source",
                record: source_id.to_string(),
                detail: format!(
                    "{} in Gleap carries this pipeline's marker {key:?}; the source no longer has it{}",
                    ids.join(", "),
                    if ids.len() == 1 {
                        " (mapped: `undo` and `run --prune` reach it)"
                    } else {
                        " (several: none mapped)"
                    }
                ),
                gleap_ids: ids,
            });
        }
    }
    commit
}

/// One ticket's messages: each source record, in order, is the first message of the ticket
/// not taken yet with its content, note flag and author.
fn match_messages(
    s: &Prepared,
    ticket: &str,
    items: &[&Item],
    docs: &[Value],
    commit: &mut Commit,
    summary: &mut StreamReconcile,
    unmatched: &mut Vec<Unmatched>,
) {
    let mut used = vec![false; docs.len()];
    let position: HashMap<&str, usize> = docs
        .iter()
        .enumerate()
        .filter_map(|(i, d)| answer::id(d).map(|id| (id, i)))
        .collect();
    for item in items {
        if let Some(e) = s.map.get(&item.source_id)
            && let Some(&at) = position.get(e.gleap_id.as_str())
        {
            used[at] = true;
        }
    }
    for item in items {
        if s.map.contains_key(&item.source_id) {
            summary.already_mapped += 1;
            continue;
        }
        let at = (0..docs.len()).find(|&at| !used[at] && same_message(&item.body, &docs[at]));
        match at.and_then(|at| found(item, &docs[at], summary).map(|e| (at, e))) {
            Some((at, entry)) => {
                used[at] = true;
                map(commit, &item.source_id, entry, true);
            }
            None => not_in_gleap(
                s,
                item,
                format!(
                    "ticket {ticket} has no message with its text, note flag and author left to match: the next run creates it"
                ),
                summary,
                unmatched,
            ),
        }
    }
    summary.others_in_gleap += used.iter().filter(|u| !**u).count() as u64;
}

impl ReconcileReport {
    /// Exit 0 when every record was matched or is left to create; 1 when one was ambiguous
    /// (it needs a decision in Gleap).
    pub fn exit_code(&self) -> i32 {
        if self.streams.iter().any(|s| s.ambiguous > 0) {
            engine::EXIT_DEAD_LETTERS
        } else {
            engine::EXIT_OK
        }
    }

    /// The human table.
    pub fn table(&self) -> String {
        let mut out = format!(
            "reconcile {}: {} requests (estimated {}); id map in {}\n\n",
            self.pipeline,
            self.requests,
            self.estimate,
            self.state_dir.display()
        );
        let header = [
            "stream",
            "entity",
            "in source",
            "kept",
            "matched",
            "matched, to update",
            "not in Gleap",
            "ambiguous",
            "gone from source",
        ];
        let mut rows: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
        for s in &self.streams {
            rows.push(vec![
                s.stream.clone(),
                s.entity.to_string(),
                s.in_source.to_string(),
                s.already_mapped.to_string(),
                s.matched.to_string(),
                s.matched_changed.to_string(),
                s.not_in_gleap.to_string(),
                s.ambiguous.to_string(),
                s.gone_from_source.to_string(),
            ]);
        }
        out.push_str(&crate::verify::render_table(&rows, 2));
        for s in &self.streams {
            if s.others_in_gleap > 0 {
                out.push_str(&format!(
                    "\n{}: {} messages on this pipeline's tickets are no source record (written in Gleap): left alone\n",
                    s.stream, s.others_in_gleap
                ));
            }
        }
        if !self.unmatched.is_empty() {
            const SHOWN: usize = 20;
            out.push_str(&format!("\n{} not matched:\n", self.unmatched.len()));
            for u in self.unmatched.iter().take(SHOWN) {
                out.push_str(&format!(
                    "  {} {} {}: {}\n",
                    u.stream,
                    u.kind.replace('_', " "),
                    u.record,
                    u.detail
                ));
            }
            if self.unmatched.len() > SHOWN {
                out.push_str(&format!(
                    "  and {} more (--json lists all)\n",
                    self.unmatched.len() - SHOWN
                ));
            }
        }
        for n in &self.not_reconciled {
            out.push_str(&format!("\nnot reconciled: {n}\n"));
        }
        out.push_str(
            "\nThe next `run` sends nothing for the records matched, updates those to update and creates those not in Gleap; `verify` checks the result.\n",
        );
        out
    }
}
