//! The quota (N requests per W seconds per project, answered with 429), seeded fault
//! injection, and the counters `/__emulator/stats` reports.

use std::collections::{BTreeMap, VecDeque};
use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;

/// N requests per window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub requests: u32,
    pub window: Duration,
}

impl Quota {
    /// Gleap's own: 1000 requests per 60 seconds.
    pub const GLEAP: Quota = Quota {
        requests: 1000,
        window: Duration::from_secs(60),
    };
}

impl FromStr for Quota {
    type Err = String;

    /// `1000/60` (seconds), `6000/60s`, `100/1m`.
    fn from_str(s: &str) -> Result<Quota, String> {
        let bad = || {
            format!("`{s}` is not a quota: write REQUESTS/SECONDS such as 1000/60, or `unlimited`")
        };
        let (n, w) = s.split_once('/').ok_or_else(bad)?;
        let requests: u32 = n.trim().parse().map_err(|_| bad())?;
        let w = w.trim();
        let secs: f64 = if let Some(m) = w.strip_suffix('m') {
            m.parse::<f64>().map_err(|_| bad())? * 60.0
        } else {
            w.strip_suffix('s')
                .unwrap_or(w)
                .parse::<f64>()
                .map_err(|_| bad())?
        };
        if requests == 0 || secs <= 0.0 || !secs.is_finite() {
            return Err(bad());
        }
        Ok(Quota {
            requests,
            window: Duration::from_secs_f64(secs),
        })
    }
}

/// Admits requests while fewer than N were admitted in the last W seconds (a sliding window:
/// stricter than a fixed one, so a client that keeps to it keeps to Gleap's).
#[derive(Debug)]
pub struct QuotaWindow {
    quota: Option<Quota>,
    admitted: VecDeque<i64>,
}

impl QuotaWindow {
    pub fn new(quota: Option<Quota>) -> QuotaWindow {
        QuotaWindow {
            quota,
            admitted: VecDeque::new(),
        }
    }

    /// Admits a request at `now_ms`, or says how long until one would be admitted.
    pub fn admit(&mut self, now_ms: i64) -> Result<(), Duration> {
        let Some(quota) = self.quota else {
            return Ok(());
        };
        let window = quota.window.as_millis() as i64;
        while self.admitted.front().is_some_and(|&t| t <= now_ms - window) {
            self.admitted.pop_front();
        }
        if self.admitted.len() < quota.requests as usize {
            self.admitted.push_back(now_ms);
            return Ok(());
        }
        let oldest = *self.admitted.front().expect("full");
        Err(Duration::from_millis(
            (oldest + window - now_ms).max(1) as u64
        ))
    }
}

/// Which faults to inject, as shares of requests.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct FaultConfig {
    /// Answered 500, 502 or 503 without doing anything.
    pub error_rate: f64,
    /// Connection reset before anything is done.
    pub reset_rate: f64,
    /// The write is done, then the connection drops before the answer.
    pub lost_rate: f64,
    /// Added to every answer.
    pub latency: Duration,
    /// Up to this much more, at random.
    pub latency_jitter: Duration,
    pub seed: u64,
}

/// What happens to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    None,
    Error(u16),
    Reset,
    Lost,
}

/// Draws faults from a seeded generator.
#[derive(Debug)]
pub struct Faults {
    config: FaultConfig,
    rng: fastrand::Rng,
}

impl Faults {
    pub fn new(config: FaultConfig) -> Faults {
        Faults {
            rng: fastrand::Rng::with_seed(config.seed),
            config,
        }
    }

    pub fn config(&self) -> &FaultConfig {
        &self.config
    }

    /// The fault for the next request and the latency to add.
    pub fn draw(&mut self) -> (Fault, Duration) {
        let c = self.config;
        let latency = if c.latency_jitter.is_zero() {
            c.latency
        } else {
            c.latency + c.latency_jitter.mul_f64(self.rng.f64())
        };
        if c.error_rate + c.reset_rate + c.lost_rate <= 0.0 {
            return (Fault::None, latency);
        }
        let r = self.rng.f64();
        let fault = if r < c.error_rate {
            Fault::Error([500, 502, 503][self.rng.usize(..3)])
        } else if r < c.error_rate + c.reset_rate {
            Fault::Reset
        } else if r < c.error_rate + c.reset_rate + c.lost_rate {
            Fault::Lost
        } else {
            Fault::None
        };
        (fault, latency)
    }
}

/// Counters for `/__emulator/stats`.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Stats {
    /// `"POST /sessions" -> {"200": 12, "429": 1, "reset": 2}`.
    pub requests: BTreeMap<String, BTreeMap<String, u64>>,
    pub total_requests: u64,
    /// Answered 429.
    pub rate_limited: u64,
    pub unauthorized: u64,
    pub forbidden: u64,
    pub faults: FaultCounts,
    /// Unknown body fields Gleap would drop silently: `"sessions" -> {"emial": 3}`.
    pub dropped_fields: BTreeMap<String, BTreeMap<String, u64>>,
    /// Agent messages that, on the real Gleap, would be sent to the customer (public, not a
    /// note, and `sendToChannel` not `false`).
    pub customer_notifications: u64,
}

#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct FaultCounts {
    pub errors: u64,
    pub resets: u64,
    pub lost_responses: u64,
}

impl Stats {
    pub fn record(&mut self, route: &str, outcome: &str) {
        self.total_requests += 1;
        *self
            .requests
            .entry(route.to_string())
            .or_default()
            .entry(outcome.to_string())
            .or_default() += 1;
    }

    pub fn dropped(&mut self, entity: &str, fields: &[String]) {
        for f in fields {
            *self
                .dropped_fields
                .entry(entity.to_string())
                .or_default()
                .entry(f.clone())
                .or_default() += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_parse() {
        assert_eq!("1000/60".parse::<Quota>().unwrap(), Quota::GLEAP);
        assert_eq!(
            "6000/1m".parse::<Quota>().unwrap(),
            Quota {
                requests: 6000,
                window: Duration::from_secs(60)
            }
        );
        assert_eq!(
            "5/0.5s".parse::<Quota>().unwrap().window,
            Duration::from_millis(500)
        );
        assert!("1000".parse::<Quota>().is_err());
        assert!("0/60".parse::<Quota>().is_err());
    }

    #[test]
    fn the_window_slides() {
        let mut w = QuotaWindow::new(Some(Quota {
            requests: 2,
            window: Duration::from_secs(10),
        }));
        assert!(w.admit(0).is_ok());
        assert!(w.admit(4_000).is_ok());
        assert_eq!(w.admit(5_000), Err(Duration::from_secs(5)));
        assert!(w.admit(10_000).is_ok(), "the first request left the window");
        assert_eq!(w.admit(10_001), Err(Duration::from_millis(3_999)));
        assert!(QuotaWindow::new(None).admit(0).is_ok());
    }

    #[test]
    fn faults_are_seeded_and_near_their_rates() {
        let config = FaultConfig {
            error_rate: 0.05,
            reset_rate: 0.02,
            lost_rate: 0.01,
            seed: 42,
            ..Default::default()
        };
        let draw = |n: usize| {
            let mut f = Faults::new(config);
            (0..n).map(|_| f.draw().0).collect::<Vec<_>>()
        };
        let a = draw(20_000);
        assert_eq!(a, draw(20_000), "the same seed, the same faults");
        let share =
            |p: fn(&Fault) -> bool| a.iter().filter(|f| p(f)).count() as f64 / a.len() as f64;
        assert!((share(|f| matches!(f, Fault::Error(_))) - 0.05).abs() < 0.01);
        assert!((share(|f| *f == Fault::Reset) - 0.02).abs() < 0.005);
        assert!((share(|f| *f == Fault::Lost) - 0.01).abs() < 0.005);
    }
}
