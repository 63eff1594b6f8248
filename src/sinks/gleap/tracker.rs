//! Which source records are done, for the checkpoint: a source record is done when the engine
//! has handed over all records it turned into and each of them is confirmed or dead-lettered.
//! The checkpoint is the highest sequence number below which everything is done.

use std::collections::BTreeMap;

#[derive(Debug, Default)]
pub struct SeqTracker {
    /// Source records with records still in flight, and how many.
    outstanding: BTreeMap<u64, u32>,
    /// The highest source record the engine has finished handing over.
    handed_over: Option<u64>,
}

impl SeqTracker {
    /// A record of source record `seq` arrived.
    pub fn add(&mut self, seq: u64) {
        *self.outstanding.entry(seq).or_default() += 1;
    }

    /// A record of source record `seq` is confirmed or dead-lettered.
    pub fn done(&mut self, seq: u64) {
        if let Some(n) = self.outstanding.get_mut(&seq) {
            *n -= 1;
            if *n == 0 {
                self.outstanding.remove(&seq);
            }
        }
    }

    /// Every record of source record `seq` has arrived (source records come in order).
    pub fn handed_over(&mut self, seq: u64) {
        self.handed_over = Some(self.handed_over.map_or(seq, |h| h.max(seq)));
    }

    /// Every source record up to and including this one is done.
    pub fn done_through(&self) -> Option<u64> {
        let handed = self.handed_over?;
        match self.outstanding.keys().next() {
            None => Some(handed),
            Some(&0) => None,
            Some(&first) => Some((first - 1).min(handed)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checkpoint_waits_for_the_oldest_record_in_flight() {
        let mut t = SeqTracker::default();
        assert_eq!(t.done_through(), None);
        t.add(0);
        t.handed_over(0);
        t.handed_over(1); // filtered: no records
        t.add(2);
        t.add(2);
        t.handed_over(2);
        assert_eq!(t.done_through(), None, "record 0 is in flight");
        t.done(2);
        t.done(0);
        assert_eq!(
            t.done_through(),
            Some(1),
            "one of record 2's two outputs is still in flight"
        );
        t.done(2);
        assert_eq!(t.done_through(), Some(2));
        t.add(3);
        assert_eq!(
            t.done_through(),
            Some(2),
            "record 3 has not been handed over"
        );
        t.handed_over(3);
        t.done(3);
        assert_eq!(t.done_through(), Some(3));
    }
}
