//! Wall-clock time behind a trait, so that tests move time forward instead of sleeping.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};

/// The current time, in milliseconds.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
}

/// The system's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        let now = Utc::now();
        Utc.timestamp_millis_opt(now.timestamp_millis())
            .single()
            .unwrap_or(now)
    }
}

/// A clock that only moves when told to.
#[derive(Debug)]
pub struct ManualClock {
    millis: AtomicI64,
}

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> ManualClock {
        ManualClock {
            millis: AtomicI64::new(start.timestamp_millis()),
        }
    }

    /// Starts at 2024-01-01T00:00:00Z.
    pub fn at_2024() -> ManualClock {
        Self::new(
            Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0)
                .single()
                .expect("a valid date"),
        )
    }

    pub fn advance(&self, by: Duration) {
        self.millis
            .fetch_add(by.as_millis() as i64, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(self.millis.load(Ordering::SeqCst))
            .single()
            .expect("a valid time")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_when_told() {
        let c = ManualClock::at_2024();
        let t0 = c.now();
        c.advance(Duration::from_millis(1500));
        assert_eq!((c.now() - t0).num_milliseconds(), 1500);
        assert_eq!(SystemClock.now().timestamp_subsec_micros() % 1000, 0);
    }
}
