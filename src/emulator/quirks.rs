//! Switches that make the emulator harder than Gleap may be, to rehearse what Gleap's spec
//! leaves unsaid: the largest page a list answers, whether `skip` and each filter are
//! applied, and how late a new session shows in lists (Gleap serves session lists from a
//! search index, `/sessions/warmup` says). By default none is on: lists answer up to 1000
//! records, apply `skip` and every filter, and show every record at once.

use std::time::Duration;

use super::query::ListQuery;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Quirks {
    /// No page is longer than this, whatever `limit` asks (`--page-cap N`).
    pub page_cap: Option<usize>,
    /// `skip` is ignored: every page starts at the first record (`--ignore-skip`).
    pub ignore_skip: bool,
    /// Filters on these fields (dotted paths: `customData.importId`) are ignored, as if they
    /// were not in the query (`--ignore-filter FIELD`, repeatable). Sorting on them is kept.
    pub ignore_filters: Vec<String>,
    /// A new session shows in lists only this long after it was created; look-ups by id and
    /// by userId find it at once (`--index-lag-ms N`).
    pub index_lag: Duration,
}

impl Quirks {
    /// Changes a parsed list query as the switches say.
    pub fn apply(&self, query: &mut ListQuery) {
        if let Some(cap) = self.page_cap {
            query.limit = query.limit.min(cap);
        }
        if self.ignore_skip {
            query.skip = 0;
        }
        if !self.ignore_filters.is_empty() {
            query
                .filters
                .retain(|f| !self.ignore_filters.contains(&f.path.join(".")));
        }
    }

    /// What is switched on, for the emulator's banner and stats; empty when nothing is.
    pub fn describe(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(cap) = self.page_cap {
            out.push(format!("pages hold at most {cap} records"));
        }
        if self.ignore_skip {
            out.push("`skip` ignored".into());
        }
        for f in &self.ignore_filters {
            out.push(format!("filter `{f}` ignored"));
        }
        if !self.index_lag.is_zero() {
            out.push(format!(
                "new sessions show in lists after {} ms",
                self.index_lag.as_millis()
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulator::query::parse;

    #[test]
    fn switches_change_the_query() {
        let raw = "limit=1000&skip=200&customData.importId=t:1&status=OPEN&sort=createdAt";
        let mut q = parse(Some(raw)).unwrap();
        Quirks::default().apply(&mut q);
        assert_eq!(q, parse(Some(raw)).unwrap(), "nothing by default");
        let quirks = Quirks {
            page_cap: Some(100),
            ignore_skip: true,
            ignore_filters: vec!["customData.importId".into()],
            index_lag: Duration::from_millis(2000),
        };
        quirks.apply(&mut q);
        assert_eq!((q.limit, q.skip), (100, 0));
        let fields: Vec<String> = q.filters.iter().map(|f| f.path.join(".")).collect();
        assert_eq!(fields, ["status"]);
        assert!(q.sort.is_some());
        assert_eq!(quirks.describe().len(), 4);
        let mut small = parse(Some("limit=5")).unwrap();
        quirks.apply(&mut small);
        assert_eq!(small.limit, 5, "a cap never raises a limit");
    }
}
