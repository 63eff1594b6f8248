//! Safe paging through Gleap's lists. Gleap documents no paging on `GET /sessions`, says
//! "default up to 1000" on `/tickets` and "max 10000" on `/messages`, and serves session lists
//! from a search index: so a page is never trusted to say how the listing goes on.
//!
//! - A page shorter than asked ends the listing only when the endpoint has answered a longer
//!   page before in this run (a server that caps pages at N answers exactly N while more
//!   remain); otherwise the next page is asked for, and an empty page, or one that adds no id
//!   not already seen, ends it.
//! - A page longer than asked means `limit` is ignored; the same page for two `skip`s means
//!   `skip` is ignored: both stop with an error naming the problem, never a loop or an early,
//!   silent end.
//! - Where Gleap counts (`totalCount` on `/tickets`), a listing that read fewer records than
//!   counted fails.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use reqwest::Method;
use serde_json::Value;

use super::answer;
use super::client::{GleapClient, RequestCounters};

/// No list is taken to cap its pages below this many records: Gleap's own lists answer 20 by
/// default (`GET /tickets`: "limit=20 (default up to 1000)"). A page this short that comes
/// back the same for the next `skip` is the whole list, whether or not `skip` is applied.
pub const SMALLEST_PAGE_CAP: usize = 20;

/// The largest page each list endpoint has answered in this run.
#[derive(Debug, Default)]
pub struct PageSizes(Mutex<HashMap<String, usize>>);

impl PageSizes {
    /// Records a page of `got` records asked for `asked` from `endpoint`, and says whether it
    /// is surely the last: shorter than asked, and shorter than a page the endpoint answered
    /// before (so no cap on page length cut it short).
    pub fn surely_last(&self, endpoint: &str, asked: usize, got: usize) -> bool {
        let mut sizes = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let largest = sizes.entry(endpoint.to_string()).or_default();
        let last = got < asked && got < *largest;
        *largest = (*largest).max(got);
        last
    }
}

/// Why a listing could not be followed.
#[derive(Debug, Clone, PartialEq)]
pub enum PagingError {
    /// The request failed (retries ran out, or Gleap refused it).
    Request(String),
    /// The answer was not a list.
    Shape(String),
    /// Gleap answered more records than `limit` asked for.
    LimitIgnored {
        endpoint: String,
        asked: usize,
        got: usize,
    },
    /// Two `skip`s answered the same page.
    SkipIgnored { endpoint: String, skip: usize },
    /// Fewer records were read than Gleap counted.
    Short {
        endpoint: String,
        read: u64,
        total: u64,
    },
}

impl PagingError {
    /// Whether the server's paging is at fault (rather than the connection or the request).
    pub fn is_paging(&self) -> bool {
        !matches!(self, PagingError::Request(_))
    }
}

impl std::fmt::Display for PagingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PagingError::Request(m) | PagingError::Shape(m) => f.write_str(m),
            PagingError::LimitIgnored {
                endpoint,
                asked,
                got,
            } => write!(
                f,
                "{endpoint} answered {got} records for limit={asked}: it ignores `limit`, so its pages cannot be followed safely"
            ),
            PagingError::SkipIgnored { endpoint, skip } => write!(
                f,
                "{endpoint} answered the same page for skip={skip} as for the page before: it ignores `skip`, so a listing longer than one page cannot be read"
            ),
            PagingError::Short {
                endpoint,
                read,
                total,
            } => write!(
                f,
                "{endpoint}: read {read} records where Gleap counts {total}: its pages left some out"
            ),
        }
    }
}

/// Checks the pages of one listing as they come.
#[derive(Debug)]
pub struct PageGuard {
    endpoint: String,
    /// Hashes of the ids read (16 bytes each, whatever the id: a million fit in ~40 MB).
    seen: HashSet<u128>,
    previous: Option<Vec<String>>,
}

/// What a page means for the listing: the records not seen before, and whether more may
/// follow.
#[derive(Debug, PartialEq)]
pub struct Verdict {
    pub fresh: Vec<Value>,
    pub more: bool,
}

impl PageGuard {
    pub fn new(endpoint: impl Into<String>) -> PageGuard {
        PageGuard {
            endpoint: endpoint.into(),
            seen: HashSet::new(),
            previous: None,
        }
    }

    /// Ids read so far.
    pub fn seen(&self) -> usize {
        self.seen.len()
    }

    /// Checks a page asked for `asked` records at `skip`: the records it adds (documents
    /// without an id are kept: the caller decides about them) and whether to ask for more.
    pub fn check(
        &mut self,
        sizes: &PageSizes,
        asked: usize,
        skip: usize,
        items: Vec<Value>,
    ) -> Result<Verdict, PagingError> {
        let got = items.len();
        if got > asked {
            return Err(PagingError::LimitIgnored {
                endpoint: self.endpoint.clone(),
                asked,
                got,
            });
        }
        let surely_last = sizes.surely_last(&self.endpoint, asked, got);
        if got == 0 {
            return Ok(Verdict {
                fresh: Vec::new(),
                more: false,
            });
        }
        let ids: Vec<String> = items
            .iter()
            .filter_map(|d| answer::id(d).map(str::to_string))
            .collect();
        if skip > 0 && !ids.is_empty() && self.previous.as_ref() == Some(&ids) {
            // `skip` is not applied. A page shorter than any cap is the whole list; a longer
            // one may have more behind it that cannot be reached.
            if got < asked && got < SMALLEST_PAGE_CAP {
                return Ok(Verdict {
                    fresh: Vec::new(),
                    more: false,
                });
            }
            return Err(PagingError::SkipIgnored {
                endpoint: self.endpoint.clone(),
                skip,
            });
        }
        let mut fresh = Vec::with_capacity(got);
        let mut new_ids = 0usize;
        for doc in items {
            match answer::id(&doc) {
                Some(id) if !self.seen.insert(xxhash_rust::xxh3::xxh3_128(id.as_bytes())) => {
                    continue;
                }
                Some(_) => new_ids += 1,
                None => {}
            }
            fresh.push(doc);
        }
        self.previous = Some(ids);
        // A page that adds no id ends the listing (the server is past its end, or repeats).
        let more = new_ids > 0 && !surely_last;
        Ok(Verdict { fresh, more })
    }

    /// Fails when fewer ids were read than Gleap counted.
    pub fn check_total(&self, total: Option<u64>) -> Result<(), PagingError> {
        match total {
            Some(total) if (self.seen.len() as u64) < total => Err(PagingError::Short {
                endpoint: self.endpoint.clone(),
                read: self.seen.len() as u64,
                total,
            }),
            _ => Ok(()),
        }
    }
}

/// Reads every page of `GET path?query` by `limit`/`skip`, checking each ([`PageGuard`]), and
/// hands the records no earlier page had to `on_page`. Returns how many it read.
pub async fn list_all(
    client: &GleapClient,
    counters: &RequestCounters,
    path: &str,
    query: &[(&str, &str)],
    page_size: usize,
    on_page: impl FnMut(Vec<Value>),
) -> Result<u64, PagingError> {
    list_paced(client, counters, path, query, page_size, None, on_page).await
}

/// [`list_all`], each page waiting first for a permit of `pace` (taken, not given back); a
/// closed `pace` stops the listing with an error.
pub async fn list_paced(
    client: &GleapClient,
    counters: &RequestCounters,
    path: &str,
    query: &[(&str, &str)],
    page_size: usize,
    pace: Option<&tokio::sync::Semaphore>,
    mut on_page: impl FnMut(Vec<Value>),
) -> Result<u64, PagingError> {
    let endpoint = format!("GET {path}");
    let mut guard = PageGuard::new(endpoint.clone());
    let mut skip = 0usize;
    let mut total = None;
    let mut read = 0u64;
    loop {
        let (limit_text, skip_text) = (page_size.to_string(), skip.to_string());
        let mut q: Vec<(&str, &str)> = query.to_vec();
        q.push(("limit", &limit_text));
        if skip > 0 {
            q.push(("skip", &skip_text));
        }
        if let Some(pace) = pace {
            pace.acquire()
                .await
                .map_err(|_| PagingError::Request(format!("{endpoint}: stopped")))?
                .forget();
        }
        let answer = client
            .call(Method::GET, path, &q, None, false, counters)
            .await
            .map_err(|e| PagingError::Request(format!("{endpoint}: {e}")))?;
        if answer.status == 404 {
            return Err(PagingError::Request(format!("{endpoint}: 404 Not Found")));
        }
        let page = answer::list(answer.body)
            .map_err(|e| PagingError::Shape(format!("{endpoint} answered {e}")))?;
        total = total.or(page.total);
        let got = page.items.len();
        let Verdict { fresh, more } =
            guard.check(client.page_sizes(), page_size, skip, page.items)?;
        read += fresh.len() as u64;
        if !fresh.is_empty() {
            on_page(fresh);
        }
        if !more {
            guard.check_total(total)?;
            return Ok(read);
        }
        skip += got;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn docs(ids: std::ops::Range<usize>) -> Vec<Value> {
        ids.map(|i| json!({"id": format!("d{i}")})).collect()
    }

    fn fresh_ids(v: &Verdict) -> Vec<String> {
        v.fresh
            .iter()
            .map(|d| d["id"].as_str().unwrap().to_string())
            .collect()
    }

    fn more(v: &Verdict) -> bool {
        v.more
    }

    #[test]
    fn a_short_page_ends_only_once_a_longer_one_was_seen() {
        let sizes = PageSizes::default();
        let mut g = PageGuard::new("GET /sessions");
        // Capped at 100 whatever limit asks: the short page is not taken for the end.
        let v = g.check(&sizes, 1000, 0, docs(0..100)).unwrap();
        assert!(more(&v));
        let v = g.check(&sizes, 1000, 100, docs(100..200)).unwrap();
        assert!(more(&v), "100 again: a cap, not the end");
        let v = g.check(&sizes, 1000, 200, docs(200..230)).unwrap();
        assert!(!more(&v), "30 < the 100 seen: the end");
        assert_eq!(g.seen(), 230);
        // A new listing of the same endpoint knows the cap is at least 100.
        let mut g = PageGuard::new("GET /sessions");
        let v = g.check(&sizes, 1000, 0, docs(0..7)).unwrap();
        assert!(!more(&v));
        // Of another endpoint, it does not.
        let mut g = PageGuard::new("GET /tickets");
        assert!(more(&g.check(&sizes, 1000, 0, docs(0..7)).unwrap()));
        let v = g.check(&sizes, 1000, 7, Vec::new()).unwrap();
        assert!(!more(&v) && fresh_ids(&v).is_empty());
    }

    #[test]
    fn ignored_limits_and_skips_are_errors_and_repeats_end() {
        let sizes = PageSizes::default();
        let mut g = PageGuard::new("GET /sessions");
        let e = g.check(&sizes, 10, 0, docs(0..11)).unwrap_err();
        assert!(e.to_string().contains("11 records for limit=10"), "{e}");
        let mut g = PageGuard::new("GET /sessions");
        g.check(&sizes, 10, 0, docs(0..10)).unwrap();
        let e = g.check(&sizes, 10, 10, docs(0..10)).unwrap_err();
        // A short page repeated is the whole list; a page of a cap's size repeated is not.
        let mut g = PageGuard::new("GET /messages");
        assert!(g.check(&sizes, 1000, 0, docs(0..3)).unwrap().more);
        let v = g.check(&sizes, 1000, 3, docs(0..3)).unwrap();
        assert!(!v.more && v.fresh.is_empty());
        let mut g = PageGuard::new("GET /tickets");
        g.check(&sizes, 1000, 0, docs(0..100)).unwrap();
        assert!(g.check(&sizes, 1000, 100, docs(0..100)).is_err());
        assert_eq!(
            e,
            PagingError::SkipIgnored {
                endpoint: "GET /sessions".into(),
                skip: 10
            }
        );
        assert!(e.to_string().contains("ignores `skip`"));
        assert!(e.is_paging());
        // A page that overlaps but adds nothing (records moved) ends the listing.
        let mut g = PageGuard::new("GET /x");
        g.check(&sizes, 10, 0, docs(0..10)).unwrap();
        let v = g.check(&sizes, 10, 10, docs(5..10)).unwrap();
        assert!(!more(&v) && fresh_ids(&v).is_empty());
        // Records already read on an earlier page are left out of a later one.
        let mut g = PageGuard::new("GET /y");
        g.check(&sizes, 10, 0, docs(0..10)).unwrap();
        let v = g.check(&sizes, 10, 10, docs(8..18)).unwrap();
        assert_eq!(
            fresh_ids(&v),
            (10..18).map(|i| format!("d{i}")).collect::<Vec<_>>()
        );
    }

    #[test]
    fn fewer_records_than_counted_fail() {
        let sizes = PageSizes::default();
        let mut g = PageGuard::new("GET /tickets");
        g.check(&sizes, 100, 0, docs(0..40)).unwrap();
        assert!(g.check_total(Some(40)).is_ok());
        assert!(g.check_total(None).is_ok());
        let e = g.check_total(Some(59)).unwrap_err();
        assert!(
            e.to_string()
                .contains("read 40 records where Gleap counts 59"),
            "{e}"
        );
    }
}
