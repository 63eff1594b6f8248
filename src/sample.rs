//! `run PIPELINE --sample N`: a trial migration of about N tickets, chosen to meet the hard
//! cases early: the longest thread, the most attachments, a note, non-ASCII text, a message
//! nobody in Gleap can be named as the author of, then random tickets (seeded) up to N; with
//! their messages and the sessions they refer to. The run writes only those records
//! ([`SampleFilter`]), `verify` then checks them and `undo --all` removes them.
//!
//! The source is read as `plan` reads it (through the transforms), and each record keyed as
//! the Gleap sink keys it ([`GleapSinkConfig::source_id`]), so the selection names exactly
//! the id-map entries the run will write.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use indexmap::IndexMap;
use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::pipeline::Pipeline;
use crate::record::Record;
use crate::sinks::gleap::{Entity, GleapSinkConfig, id_text};

/// One ticket of the sample, and why it was picked.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Pick {
    /// The ticket's source id.
    pub ticket: String,
    pub messages: usize,
    /// Attachments of the ticket and its messages, and images in their TipTap documents.
    pub attachments: usize,
    /// `longest thread: 14 messages`, `a note`, `random`...
    pub reasons: Vec<String>,
}

/// What a sample run writes: for each Gleap stream, the source ids of its records in the
/// sample (streams not named: none).
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// The seed of the random picks (`--seed` picks the same tickets again).
    pub seed: u64,
    /// Tickets asked for (`--sample N`).
    pub asked: usize,
    /// The stream that writes tickets.
    pub tickets_stream: String,
    /// Tickets in the source (after the transforms).
    pub tickets_in_source: usize,
    pub picks: Vec<Pick>,
    /// Stream name -> the source ids of its records in the sample.
    #[serde(serialize_with = "counts_only")]
    pub streams: IndexMap<String, HashSet<String>>,
}

/// The report shows how many records of each stream are in the sample, not every id.
fn counts_only<S: serde::Serializer>(
    streams: &IndexMap<String, HashSet<String>>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = s.serialize_map(Some(streams.len()))?;
    for (name, ids) in streams {
        map.serialize_entry(name, &ids.len())?;
    }
    map.end()
}

/// Lets through to a stream's sink only the records of the sample.
#[derive(Debug, Clone)]
pub struct SampleFilter {
    sink: GleapSinkConfig,
    ids: Arc<HashSet<String>>,
    /// Identifies the selection, to mix into the stream's input fingerprint: a checkpoint an
    /// interrupted sample run leaves is never resumed by a run over other records.
    pub fingerprint: String,
}

impl SampleFilter {
    /// Whether the record is in the sample (a record without a source id is not).
    pub fn keeps(&self, record: &Record) -> bool {
        self.sink
            .source_id(record)
            .is_some_and(|id| self.ids.contains(&id))
    }
}

/// What a ticket holds that makes it hard to migrate.
#[derive(Debug, Default)]
struct Features {
    id: String,
    messages: usize,
    attachments: usize,
    notes: usize,
    /// The first non-ASCII character of its text, and where.
    non_ascii: Option<(char, String)>,
    /// Who has no author Gleap can name: `the ticket`, `message 123`.
    no_author: Option<String>,
}

impl Sample {
    /// The filter of a stream in a sample run; `None`: the stream does not run (it is not a
    /// Gleap sessions, tickets or messages stream).
    pub fn filter(&self, stream: &crate::pipeline::StreamConfig) -> Option<SampleFilter> {
        let g = stream.sink.gleap_records()?;
        Some(SampleFilter {
            sink: g.clone(),
            ids: Arc::new(
                self.streams
                    .get(&stream.name.value)
                    .cloned()
                    .unwrap_or_default(),
            ),
            fingerprint: self.fingerprint(&stream.name.value),
        })
    }

    /// Identifies the selection of a stream.
    fn fingerprint(&self, stream: &str) -> String {
        let mut ids: Vec<&String> = self
            .streams
            .get(stream)
            .map(|s| s.iter().collect())
            .unwrap_or_default();
        ids.sort();
        let mut text = String::new();
        for id in ids {
            text.push_str(id);
            text.push('\0');
        }
        format!(
            "sample:{:032x}",
            xxhash_rust::xxh3::xxh3_128(text.as_bytes())
        )
    }

    fn count(&self, stream: &str) -> usize {
        self.streams.get(stream).map_or(0, HashSet::len)
    }

    /// The selection as a table, printed before the run writes anything.
    pub fn table(&self) -> String {
        let mut out = format!(
            "sample: {} of the {} tickets of `{}` (seed {}; `--seed {}` picks the same ones again)\n",
            self.picks.len(),
            self.tickets_in_source,
            self.tickets_stream,
            self.seed,
            self.seed
        );
        let mut rows = vec![[
            "ticket".to_string(),
            "messages".to_string(),
            "files".to_string(),
            "why".to_string(),
        ]];
        for p in &self.picks {
            rows.push([
                p.ticket.clone(),
                p.messages.to_string(),
                p.attachments.to_string(),
                p.reasons.join("; "),
            ]);
        }
        let width = |c: usize| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0);
        let (w0, w1, w2) = (width(0), width(1), width(2));
        for r in &rows {
            out.push_str(&format!(
                "  {:<w0$}  {:>w1$}  {:>w2$}  {}\n",
                r[0], r[1], r[2], r[3]
            ));
        }
        let others: Vec<String> = self
            .streams
            .keys()
            .filter(|s| **s != self.tickets_stream)
            .map(|s| format!("{} of `{s}`", self.count(s)))
            .collect();
        if !others.is_empty() {
            out.push_str(&format!("  with {}\n", others.join(", ")));
        }
        out
    }

    /// `20 tickets, 57 messages, 18 sessions` (by stream).
    pub fn describe(&self) -> String {
        self.streams
            .keys()
            .map(|s| format!("{} of `{s}`", self.count(s)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Picks the sample of `pipeline`: about `n` tickets (see the module's doc), their messages
/// and sessions. `seed`: of the random picks (default: random).
pub fn select(pipeline: &Pipeline, n: usize, seed: Option<u64>) -> Result<Sample> {
    if n == 0 {
        return Err(Error::config(
            "--sample 0: give the number of tickets to migrate as a trial (at least 1)",
        ));
    }
    let gleap: Vec<(&str, &GleapSinkConfig)> = pipeline
        .config
        .streams
        .iter()
        .filter_map(|s| Some((s.name.value.as_str(), s.sink.gleap_records()?)))
        .collect();
    let tickets: Vec<&(&str, &GleapSinkConfig)> = gleap
        .iter()
        .filter(|(_, g)| g.entity == Entity::Tickets)
        .collect();
    let (tickets_stream, tickets_config) = match tickets[..] {
        [one] => *one,
        [] => {
            return Err(Error::config(format!(
                "--sample picks tickets, and {} has no stream that writes tickets to Gleap (a sink `gleap: {{entity: tickets}}`)",
                pipeline.file.display()
            )));
        }
        _ => {
            return Err(Error::config(format!(
                "--sample picks the tickets of one stream, and {} has {} that write tickets to Gleap: {}",
                pipeline.file.display(),
                tickets.len(),
                tickets
                    .iter()
                    .map(|(n, _)| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    };
    let messages: Vec<(&str, &GleapSinkConfig)> = gleap
        .iter()
        .filter(|(_, g)| {
            g.entity == Entity::Messages
                && g.refs.get("ticket").map(String::as_str) == Some(tickets_stream)
        })
        .copied()
        .collect();

    // The source is read stream by stream and not held: a ticket keeps its features, the
    // contact it names and the ids of its messages, nothing more.
    let session_of = |config: &GleapSinkConfig, record: &Record| {
        config
            .refs
            .get("session")
            .and_then(|s| Some((s.clone(), record.get("session").and_then(id_text)?)))
    };
    // Tickets in source order.
    let mut features: Vec<Features> = Vec::new();
    let mut at: HashMap<String, usize> = HashMap::new();
    let mut names: Vec<Vec<(String, String)>> = Vec::new();
    crate::engine::visit(pipeline, tickets_stream, &mut |record| {
        if let Some(id) = tickets_config.source_id(&record)
            && !at.contains_key(&id)
        {
            at.insert(id.clone(), features.len());
            features.push(Features::of_ticket(&id, &record));
            names.push(session_of(tickets_config, &record).into_iter().collect());
        }
    })
    .map_err(|e| e.within("--sample"))?;
    // Each ticket's messages: (messages stream, message id), and the contacts they name.
    let mut thread: Vec<Vec<(usize, String)>> = vec![Vec::new(); features.len()];
    for (m, (stream, config)) in messages.iter().enumerate() {
        crate::engine::visit(pipeline, stream, &mut |record| {
            let (Some(id), Some(ticket)) = (
                config.source_id(&record),
                record.get("ticket").and_then(id_text),
            ) else {
                return;
            };
            if let Some(&t) = at.get(&ticket) {
                features[t].add_message(&id, &record);
                names[t].extend(session_of(config, &record));
                thread[t].push((m, id));
            }
        })
        .map_err(|e| e.within("--sample"))?;
    }

    let seed = seed.unwrap_or_else(|| fastrand::u64(..));
    let picks = pick(&features, n, seed);

    // The streams' selections: the tickets, their messages, the sessions they name.
    let mut streams: IndexMap<String, HashSet<String>> = IndexMap::new();
    for (name, _) in &gleap {
        streams.insert(name.to_string(), HashSet::new());
    }
    for p in &picks {
        let t = at[&p.ticket];
        streams[tickets_stream].insert(p.ticket.clone());
        for (m, id) in &thread[t] {
            streams[messages[*m].0].insert(id.clone());
        }
        for (stream, id) in &names[t] {
            if let Some(set) = streams.get_mut(stream) {
                set.insert(id.clone());
            }
        }
    }
    Ok(Sample {
        seed,
        asked: n,
        tickets_stream: tickets_stream.to_string(),
        tickets_in_source: features.len(),
        picks,
        streams,
    })
}

impl Features {
    /// A ticket's own features, before its messages.
    fn of_ticket(id: &str, ticket: &Record) -> Features {
        Features {
            id: id.to_string(),
            attachments: attachments(ticket),
            no_author: (!has_author(ticket)).then(|| "the ticket".into()),
            non_ascii: non_ascii(ticket).map(|c| (c, "the ticket".into())),
            ..Default::default()
        }
    }

    /// One more message of its thread, `mid`.
    fn add_message(&mut self, mid: &str, m: &Record) {
        self.messages += 1;
        self.attachments += attachments(m);
        if m.get("isNote") == Some(&Value::Bool(true)) {
            self.notes += 1;
        }
        if self.no_author.is_none() && !has_author(m) {
            self.no_author = Some(format!("message {mid}"));
        }
        if self.non_ascii.is_none() {
            self.non_ascii = non_ascii(m).map(|c| (c, format!("message {mid}")));
        }
    }
}

/// The record's `attachments` and the images of its TipTap `comment`.
fn attachments(record: &Record) -> usize {
    fn images(v: &Value) -> usize {
        match v {
            Value::Object(o) => {
                usize::from(o.get("type").and_then(Value::as_str) == Some("image"))
                    + o.values().map(images).sum::<usize>()
            }
            Value::Array(a) => a.iter().map(images).sum(),
            _ => 0,
        }
    }
    record
        .get("attachments")
        .and_then(Value::as_array)
        .map_or(0, Vec::len)
        + record.get("comment").map_or(0, images)
}

/// A session, or an agent with an e-mail: someone Gleap can name as the author.
fn has_author(record: &Record) -> bool {
    let session = record.get("session").and_then(id_text).is_some();
    let agent = record
        .get("agent")
        .and_then(|a| a.get("email"))
        .and_then(Value::as_str)
        .is_some_and(|e| !e.trim().is_empty());
    session || agent
}

/// The first non-ASCII character of any string in the record.
fn non_ascii(record: &Record) -> Option<char> {
    fn find(v: &Value) -> Option<char> {
        match v {
            Value::String(s) => s.chars().find(|c| !c.is_ascii()),
            Value::Array(a) => a.iter().find_map(find),
            Value::Object(o) => o.values().find_map(find),
            _ => None,
        }
    }
    record.values().find_map(find)
}

/// The picks, in order: longest thread, most attachments, a note, non-ASCII text, a missing
/// author (each a ticket not picked yet where one qualifies; otherwise the reason is added to
/// the pick that has it), then random tickets up to `n`.
fn pick(features: &[Features], n: usize, seed: u64) -> Vec<Pick> {
    let mut picks: Vec<Pick> = Vec::new();
    let mut picked: HashMap<usize, usize> = HashMap::new();
    let add = |picks: &mut Vec<Pick>, picked: &mut HashMap<usize, usize>, at: usize, why| {
        if let Some(&p) = picked.get(&at) {
            picks[p].reasons.push(why);
        } else if picks.len() < n {
            picked.insert(at, picks.len());
            picks.push(Pick {
                ticket: features[at].id.clone(),
                messages: features[at].messages,
                attachments: features[at].attachments,
                reasons: vec![why],
            });
        }
    };
    // The ticket for a criterion: among those that qualify (best first), one not picked yet.
    let choose = |picked: &HashMap<usize, usize>, qualifies: &dyn Fn(&Features) -> bool| {
        let all: Vec<usize> = (0..features.len())
            .filter(|&i| qualifies(&features[i]))
            .collect();
        all.iter()
            .copied()
            .find(|i| !picked.contains_key(i))
            .or(all.first().copied())
    };
    let longest = features.iter().map(|f| f.messages).max().unwrap_or(0);
    if longest > 0
        && let Some(at) = choose(&picked, &|f| f.messages == longest)
    {
        add(
            &mut picks,
            &mut picked,
            at,
            format!("longest thread: {longest} messages"),
        );
    }
    let most = features.iter().map(|f| f.attachments).max().unwrap_or(0);
    if most > 0
        && let Some(at) = choose(&picked, &|f| f.attachments == most)
    {
        add(
            &mut picks,
            &mut picked,
            at,
            format!("most attachments: {most}"),
        );
    }
    if let Some(at) = choose(&picked, &|f| f.notes > 0) {
        let notes = features[at].notes;
        let why = if notes == 1 {
            "a note".to_string()
        } else {
            format!("{notes} notes")
        };
        add(&mut picks, &mut picked, at, why);
    }
    if let Some(at) = choose(&picked, &|f| f.non_ascii.is_some()) {
        let (c, on) = features[at].non_ascii.clone().expect("qualified");
        add(
            &mut picks,
            &mut picked,
            at,
            format!("non-ASCII text ({c:?} in {on})"),
        );
    }
    if let Some(at) = choose(&picked, &|f| f.no_author.is_some()) {
        let who = features[at].no_author.clone().expect("qualified");
        add(
            &mut picks,
            &mut picked,
            at,
            format!("missing author: {who} has neither a session nor an agent with an e-mail"),
        );
    }
    let mut rest: Vec<usize> = (0..features.len())
        .filter(|i| !picked.contains_key(i))
        .collect();
    fastrand::Rng::with_seed(seed).shuffle(&mut rest);
    for at in rest {
        if picks.len() >= n {
            break;
        }
        add(&mut picks, &mut picked, at, "random".to_string());
    }
    picks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(id: &str, messages: usize, attachments: usize, notes: usize) -> Features {
        Features {
            id: id.into(),
            messages,
            attachments,
            notes,
            ..Default::default()
        }
    }

    #[test]
    fn hard_cases_first_each_on_its_own_ticket_then_random_up_to_n() {
        let mut features = vec![
            f("a", 2, 0, 0),
            f("b", 9, 3, 0),
            f("c", 9, 1, 1),
            f("d", 1, 3, 0),
            f("e", 1, 0, 0),
            f("g", 1, 0, 0),
        ];
        features[4].non_ascii = Some(('ü', "the ticket".into()));
        features[1].no_author = Some("message 7".into());
        let picks = pick(&features, 5, 1);
        let ids: Vec<&str> = picks.iter().map(|p| p.ticket.as_str()).collect();
        // b: longest (first of the two with 9); d: most attachments not yet picked; c: the
        // note; e: non-ASCII; the missing author is b's, picked already; one random.
        assert_eq!(&ids[..4], ["b", "d", "c", "e"]);
        assert_eq!(picks[0].reasons[0], "longest thread: 9 messages");
        assert!(picks[0].reasons[1].starts_with("missing author: message 7"));
        assert_eq!(picks[1].reasons, ["most attachments: 3"]);
        assert_eq!(picks[4].reasons, ["random"]);
        assert!(["a", "g"].contains(&ids[4]));
        // The same seed, the same picks; n caps the hard cases too.
        assert_eq!(pick(&features, 5, 1), picks);
        assert_eq!(pick(&features, 2, 1).len(), 2);
        assert_eq!(pick(&features, 50, 1).len(), 6);
    }

    #[test]
    fn features_read_files_images_notes_text_and_authors() {
        let ticket: Record = serde_json::from_value(serde_json::json!({
            "id": 1, "title": "Printer", "session": null, "agent": {"email": null}
        }))
        .unwrap();
        let m1: Record = serde_json::from_value(serde_json::json!({
            "id": 2, "ticket": 1, "session": "u1", "isNote": false,
            "attachments": [{"name": "a.png"}],
            "comment": {"type": "doc", "content": [{"type": "image", "attrs": {"src": "x"}},
                        {"type": "paragraph", "content": [{"type": "text", "text": "Grüße"}]}]}
        }))
        .unwrap();
        let m2: Record = serde_json::from_value(serde_json::json!({
            "id": 3, "ticket": 1, "isNote": true, "agent": {"email": "sam@acme.example"}
        }))
        .unwrap();
        let mut f = Features::of_ticket("1", &ticket);
        f.add_message("2", &m1);
        f.add_message("3", &m2);
        assert_eq!((f.messages, f.attachments, f.notes), (2, 2, 1));
        assert_eq!(f.non_ascii, Some(('ü', "message 2".to_string())));
        assert_eq!(f.no_author.as_deref(), Some("the ticket"));
    }
}
