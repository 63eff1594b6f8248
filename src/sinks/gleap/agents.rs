//! Agents as teammates: the helpdesk's agents and admins become the Gleap project's team
//! members where their e-mail matches one. `GET /v3/projects/users` lists the team (read once
//! a run, shared by the streams); a record names its source agent in a field (`agent:
//! {id, email, name}`, removed before sending), and a matched agent is sent as `user`
//! (messages) or `processingUser` (tickets, the assignee) with the team member's id. An
//! unmatched agent's messages keep the pipeline's `fallbackUser` (a name) and its tickets stay
//! unassigned; each unmatched agent is counted for the run report. An optional mapping file
//! (`source e-mail or id -> Gleap e-mail`) overrides the e-mail match.
//!
//! Gleap's spec leaves the team list's answer as an array of `{}` (operationId GetUsers), so
//! members are read tolerantly: a bare or wrapped list, `id` or `_id`, `email`, and either
//! flat or under `user` (`{role, user: {...}}`).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use super::Entity;
use crate::error::{Error, Result};
use crate::gleap::answer;
use crate::gleap::client::{GleapClient, RequestCounters};
use crate::record::{FieldPath, Record};

/// `agents:` on a tickets or messages sink.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentsConfig {
    /// The record field naming the source agent, `{id, email, name}`: the author of a
    /// message, the assignee of a ticket. It is not sent. Default `agent`.
    #[serde(default)]
    pub field: Option<FieldPath>,
    /// A mapping file that overrides the e-mail match: CSV with two columns (source e-mail or
    /// id, Gleap team member's e-mail; a header row is allowed) or YAML (`source: gleap`). An
    /// empty value means none.
    #[serde(default)]
    pub file: Option<PathBuf>,
}

impl AgentsConfig {
    /// Every problem with these settings for a sink of `entity`; `at` is the `agents`
    /// option's config path. The mapping file is read (a mapping that does not parse is a
    /// problem of the pipeline).
    pub fn check(&self, at: &str, entity: Entity) -> Vec<crate::config::ConfigError> {
        let mut problems = Vec::new();
        if entity == Entity::Sessions {
            problems.push(crate::config::ConfigError::at(
                at,
                "`agents` is for tickets and messages, not sessions",
            ));
        }
        if let Some(file) = self.file()
            && let Err(e) = read_mapping(file)
        {
            problems.push(crate::config::ConfigError::at(format!("{at}.file"), e));
        }
        problems
    }

    fn file(&self) -> Option<&Path> {
        self.file.as_deref().filter(|f| !f.as_os_str().is_empty())
    }

    fn field(&self) -> FieldPath {
        self.field
            .clone()
            .unwrap_or_else(|| FieldPath::parse("agent").expect("a valid path"))
    }
}

/// The project's team members by lower-cased e-mail: their Gleap id.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Team {
    by_email: HashMap<String, String>,
}

impl Team {
    /// Reads `GET /projects/users`'s answer.
    pub fn from_answer(body: Value) -> std::result::Result<Team, String> {
        let items = match body {
            Value::Object(mut o) if o.get("users").is_some_and(Value::is_array) => {
                o.remove("users").unwrap_or_default()
            }
            other => Value::Array(answer::list(other)?.items),
        };
        let mut by_email = HashMap::new();
        for item in items.as_array().map(Vec::as_slice).unwrap_or_default() {
            let member = match item.get("user") {
                Some(u @ Value::Object(_)) => u,
                _ => item,
            };
            let (Some(id), Some(email)) = (
                answer::id(member),
                member.get("email").and_then(Value::as_str),
            ) else {
                continue;
            };
            by_email
                .entry(email.trim().to_lowercase())
                .or_insert_with(|| id.to_string());
        }
        Ok(Team { by_email })
    }

    pub fn len(&self) -> usize {
        self.by_email.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_email.is_empty()
    }

    fn id_of(&self, email: &str) -> Option<&str> {
        self.by_email
            .get(&email.trim().to_lowercase())
            .map(String::as_str)
    }
}

/// The team, read once a run by the first stream that needs it.
#[derive(Default)]
pub struct TeamCache(tokio::sync::OnceCell<std::result::Result<Team, String>>);

impl TeamCache {
    pub async fn get(&self, client: &GleapClient) -> std::result::Result<Team, String> {
        self.0
            .get_or_init(|| async {
                let counters = RequestCounters::default();
                let answer = client
                    .call_optional("/projects/users", &counters)
                    .await
                    .map_err(|e| format!("listing the team (GET /projects/users): {e}"))?;
                if !(200..300).contains(&answer.status) {
                    return Err(format!(
                        "listing the team (GET /projects/users): Gleap answered {}",
                        answer.status
                    ));
                }
                Team::from_answer(answer.body)
                    .map_err(|e| format!("listing the team (GET /projects/users): {e}"))
            })
            .await
            .clone()
    }
}

/// Source e-mail (lower-cased) or id -> Gleap e-mail (lower-cased).
fn read_mapping(path: &Path) -> std::result::Result<HashMap<String, String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let is_yaml = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "yaml" | "yml"));
    let mut map = HashMap::new();
    if is_yaml {
        let parsed: BTreeMap<String, String> = serde_saphyr::from_str(&text).map_err(|e| {
            format!(
                "{}: expected `source: gleap e-mail` lines: {e}",
                path.display()
            )
        })?;
        for (from, to) in parsed {
            map.insert(from.trim().to_lowercase(), to.trim().to_lowercase());
        }
        return Ok(map);
    }
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    for (i, row) in reader.records().enumerate() {
        let row = row.map_err(|e| format!("{}: {e}", path.display()))?;
        if row.iter().all(str::is_empty) {
            continue;
        }
        if row.len() != 2 {
            return Err(format!(
                "{}:{}: expected two columns (source e-mail or id, Gleap e-mail), found {}",
                path.display(),
                i + 1,
                row.len()
            ));
        }
        let (from, to) = (&row[0], &row[1]);
        // A header row: its second column is not an e-mail.
        if i == 0 && !to.contains('@') {
            continue;
        }
        map.insert(from.to_lowercase(), to.to_lowercase());
    }
    Ok(map)
}

/// Matches the source agents of one stream's records with team members.
pub struct Agents {
    field: FieldPath,
    /// `user` (messages) or `processingUser` (tickets).
    target: &'static str,
    entity: Entity,
    mapping: HashMap<String, String>,
    team: Team,
    /// Why the team could not be read, if it could not (every agent is then unmatched).
    team_error: Option<String>,
    counts: Mutex<Counts>,
}

#[derive(Default)]
struct Counts {
    matched: u64,
    /// An unmatched agent, as shown, -> its records.
    unmatched: BTreeMap<String, u64>,
}

impl Agents {
    /// `team` is the project's team, or why it could not be read.
    pub fn new(
        config: &AgentsConfig,
        entity: Entity,
        team: std::result::Result<Team, String>,
    ) -> Result<Agents> {
        let mapping = match config.file() {
            // As `check` says it: a mapping that does not read is a problem of the pipeline.
            Some(file) => read_mapping(file).map_err(|e| Error::config(format!("agents: {e}")))?,
            None => HashMap::new(),
        };
        let (team, team_error) = match team {
            Ok(t) => (t, None),
            Err(e) => (Team::default(), Some(e)),
        };
        Ok(Agents {
            field: config.field(),
            target: if entity == Entity::Tickets {
                "processingUser"
            } else {
                "user"
            },
            entity,
            mapping,
            team,
            team_error,
            counts: Mutex::default(),
        })
    }

    /// For `plan`: no team is read, so no agent matches; the field is still taken out.
    pub fn offline(config: &AgentsConfig, entity: Entity) -> Agents {
        Agents::new(config, entity, Ok(Team::default())).unwrap_or_else(|_| Agents {
            field: config.field(),
            target: "user",
            entity,
            mapping: HashMap::new(),
            team: Team::default(),
            team_error: None,
            counts: Mutex::default(),
        })
    }

    /// Takes the agent field out of the record and, when the agent is a team member, sets
    /// `user`/`processingUser` (a matched message's `fallbackUser` goes: it has its user).
    pub fn apply(&self, record: &mut Record) {
        let Some(agent) = self.field.remove(record) else {
            return;
        };
        let text = |k: &str| match agent.get(k) {
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_string()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        let (id, email, name) = (text("id"), text("email"), text("name"));
        if id.is_none() && email.is_none() {
            return;
        }
        let mapped = [email.as_deref(), id.as_deref()]
            .into_iter()
            .flatten()
            .find_map(|k| self.mapping.get(&k.to_lowercase()));
        let member = mapped
            .map(String::as_str)
            .or(email.as_deref())
            .and_then(|e| self.team.id_of(e));
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        match member {
            Some(member) => {
                counts.matched += 1;
                record.insert(self.target.into(), Value::String(member.to_string()));
                if self.entity == Entity::Messages {
                    record.shift_remove("fallbackUser");
                }
            }
            None => {
                let shown = match (&email, &name, &id) {
                    (Some(e), Some(n), _) => format!("{e} ({n})"),
                    (Some(e), None, _) => e.clone(),
                    (None, Some(n), Some(i)) => format!("{n} (id {i})"),
                    (None, _, Some(i)) => format!("id {i}"),
                    (None, _, None) => unreachable!("an agent has an id or an e-mail"),
                };
                *counts.unmatched.entry(shown).or_default() += 1;
            }
        }
    }

    /// For the run report: how many records went to a team member, and the agents that
    /// matched none with their record counts, most first.
    pub fn summary(&self) -> Value {
        let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let mut unmatched: Vec<(&String, &u64)> = counts.unmatched.iter().collect();
        unmatched.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let mut out = json!({
            "team_members": self.team.len(),
            "matched": counts.matched,
            "unmatched": unmatched
                .into_iter()
                .map(|(agent, n)| json!({"agent": agent, "records": n}))
                .collect::<Vec<_>>(),
        });
        if let Some(e) = &self.team_error {
            out["team_error"] = json!(e);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(v: Value) -> Record {
        serde_json::from_value(v).unwrap()
    }

    fn team() -> Team {
        Team::from_answer(json!([
            {"_id": "u1", "email": "Sam@Acme.example", "firstName": "Sam"},
            {"role": "ADMIN", "user": {"id": "u2", "email": "boss@acme.example"}},
            {"id": "u3"},
        ]))
        .unwrap()
    }

    #[test]
    fn the_team_is_read_tolerantly() {
        let t = team();
        assert_eq!(t.len(), 2);
        assert_eq!(t.id_of("sam@acme.EXAMPLE"), Some("u1"));
        assert_eq!(t.id_of("boss@acme.example"), Some("u2"));
        let wrapped = Team::from_answer(json!({"users": [{"id": "x", "email": "a@b"}]})).unwrap();
        assert_eq!(wrapped.id_of("a@b"), Some("x"));
        let items = Team::from_answer(json!({"items": [{"id": "y", "email": "c@d"}]})).unwrap();
        assert_eq!(items.id_of("c@d"), Some("y"));
        assert!(Team::from_answer(json!("nope")).is_err());
    }

    #[test]
    fn matched_agents_become_users_and_the_rest_are_counted() {
        let a = Agents::new(&AgentsConfig::default(), Entity::Messages, Ok(team())).unwrap();
        let mut m = rec(json!({"comment": "hi", "fallbackUser": {"username": "Sam"},
            "agent": {"id": 7, "email": "SAM@acme.example", "name": "Sam"}}));
        a.apply(&mut m);
        assert_eq!(m, rec(json!({"comment": "hi", "user": "u1"})));
        for _ in 0..2 {
            let mut m = rec(json!({"fallbackUser": {"username": "Olivia"},
                "agent": {"id": "9", "email": "owner@acme.example", "name": "Olivia"}}));
            a.apply(&mut m);
            assert_eq!(m, rec(json!({"fallbackUser": {"username": "Olivia"}})));
        }
        let mut bot = rec(json!({"agent": {"id": "278", "name": "Fin"}}));
        a.apply(&mut bot);
        let mut none = rec(json!({"agent": null, "session": "s"}));
        a.apply(&mut none);
        assert_eq!(none, rec(json!({"session": "s"})));
        assert_eq!(
            a.summary(),
            json!({"team_members": 2, "matched": 1, "unmatched": [
                {"agent": "owner@acme.example (Olivia)", "records": 2},
                {"agent": "Fin (id 278)", "records": 1},
            ]})
        );
    }

    #[test]
    fn a_mapping_file_overrides_by_email_or_id() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("agents.csv");
        std::fs::write(
            &csv,
            "source,gleap\nowner@acme.example, boss@acme.example\n278,sam@acme.example\n",
        )
        .unwrap();
        let config = AgentsConfig {
            field: None,
            file: Some(csv),
        };
        assert!(config.check("agents", Entity::Tickets).is_empty());
        let a = Agents::new(&config, Entity::Tickets, Ok(team())).unwrap();
        let mut t = rec(json!({"title": "x", "agent": {"id": "9", "email": "Owner@acme.example"}}));
        a.apply(&mut t);
        assert_eq!(t, rec(json!({"title": "x", "processingUser": "u2"})));
        let mut t = rec(json!({"agent": {"id": 278}}));
        a.apply(&mut t);
        assert_eq!(t, rec(json!({"processingUser": "u1"})));

        let yaml = dir.path().join("agents.yaml");
        std::fs::write(&yaml, "\"9\": boss@acme.example\n").unwrap();
        let config = AgentsConfig {
            field: None,
            file: Some(yaml),
        };
        let a = Agents::new(&config, Entity::Tickets, Ok(team())).unwrap();
        let mut t = rec(json!({"agent": {"id": "9", "email": "x@y"}}));
        a.apply(&mut t);
        assert_eq!(t, rec(json!({"processingUser": "u2"})));

        let bad = dir.path().join("bad.csv");
        std::fs::write(&bad, "a,b,c\n").unwrap();
        let config = AgentsConfig {
            field: None,
            file: Some(bad),
        };
        let problems = config.check("agents", Entity::Messages);
        assert!(
            problems[0].message.starts_with("agents.file: ")
                && problems[0]
                    .message
                    .contains("bad.csv:1: expected two columns"),
            "{problems:?}"
        );
    }

    #[tokio::test]
    async fn the_team_is_read_once_and_a_refusal_does_not_stop_the_run() {
        use crate::emulator::{Emulator, EmulatorConfig};
        use crate::gleap::client::{ClientSettings, ConcurrencySetting, Secret};
        let emulator = Emulator::start(EmulatorConfig::default()).await.unwrap();
        let client = |key: &str| {
            GleapClient::new(ClientSettings {
                base_url: emulator.base_url(),
                api_key: Secret::new(key),
                project: emulator.project().to_string(),
                requests_per_minute: 60_000.0,
                concurrency: ConcurrencySetting::Fixed(1),
                timeout: std::time::Duration::from_secs(30),
                max_attempts: 2,
                lookup_settle: std::time::Duration::ZERO,
                upload_token: None,
            })
            .unwrap()
        };
        let good = client(emulator.api_key());
        let cache = TeamCache::default();
        let team = cache.get(&good).await.unwrap();
        assert_eq!(
            team.id_of("SAM@acme.example"),
            Some("64b0000000000000000000a2")
        );
        cache.get(&good).await.unwrap();
        let asked = emulator.stats()["total_requests"].as_u64().unwrap();
        assert_eq!(asked, 1, "read once: {}", emulator.stats());

        let refused = client("not-the-key");
        let e = TeamCache::default().get(&refused).await.unwrap_err();
        assert!(e.contains("401"), "{e}");
        assert!(!e.contains("not-the-key"), "{e}");
        assert_eq!(refused.halted(), None, "the run goes on without the team");
        emulator.shutdown().await.unwrap();
    }

    #[test]
    fn a_team_that_cannot_be_read_leaves_every_agent_unmatched_and_says_why() {
        let a = Agents::new(
            &AgentsConfig::default(),
            Entity::Messages,
            Err("Gleap answered 403".into()),
        )
        .unwrap();
        let mut m = rec(json!({"agent": {"email": "sam@acme.example"}}));
        a.apply(&mut m);
        assert!(m.get("user").is_none());
        assert_eq!(a.summary()["team_error"], "Gleap answered 403");
    }
}
