//! The expiry index of a reservation book: held reservations in 100 ms
//! buckets by expiry, with lazy deletion.
//!
//! A `BTreeSet<(expiry, id)>` of a million holds costs a walk of cold tree
//! nodes on every hold and every confirm or release. Here a hold is a push
//! onto its bucket's vector (the buckets are few and stay in cache), and a
//! confirm, release or extension removes nothing: the tick checks each id
//! it takes against the reservation itself and skips the stale ones.
//! A bucket is due once its whole 100 ms has passed, so an expiry is seen at
//! most 100 ms plus one tick after it.

use std::collections::BTreeMap;

use crate::domain::ids::ReservationId;
use crate::domain::TimeMs;

const BUCKET_MS: i64 = 100;

#[derive(Default)]
pub struct ExpiryWheel {
    buckets: BTreeMap<i64, Vec<ReservationId>>,
}

fn bucket_of(expires_at_ms: TimeMs) -> i64 {
    // Rounded up: every entry of bucket k expires at or before k * BUCKET_MS.
    (expires_at_ms + BUCKET_MS - 1).div_euclid(BUCKET_MS)
}

impl ExpiryWheel {
    pub fn insert(&mut self, expires_at_ms: TimeMs, id: ReservationId) {
        self.buckets
            .entry(bucket_of(expires_at_ms))
            .or_default()
            .push(id);
    }

    /// Moves up to `max` ids whose bucket is due at `now` into `out`. Some
    /// may be stale (confirmed, released, extended): the caller checks.
    pub fn take_due(&mut self, now: TimeMs, max: usize, out: &mut Vec<ReservationId>) {
        while out.len() < max {
            let Some(mut entry) = self.buckets.first_entry() else {
                break;
            };
            if *entry.key() * BUCKET_MS > now {
                break;
            }
            let ids = entry.get_mut();
            let n = (max - out.len()).min(ids.len());
            out.extend(ids.drain(ids.len() - n..));
            if ids.is_empty() {
                entry.remove();
            }
        }
    }

    /// Entries held (stale ones included).
    pub fn len(&self) -> usize {
        self.buckets.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> ReservationId {
        ReservationId::parse(s).expect("id")
    }

    #[test]
    fn due_only_once_the_bucket_has_passed_and_bounded() {
        let mut w = ExpiryWheel::default();
        w.insert(1_050, id("a"));
        w.insert(1_100, id("b"));
        w.insert(1_101, id("c"));
        w.insert(5_000, id("d"));
        let mut out = Vec::new();
        w.take_due(1_099, 10, &mut out);
        assert!(out.is_empty(), "bucket (1000, 1100] is not over at 1099");
        w.take_due(1_100, 10, &mut out);
        out.sort();
        assert_eq!(out, vec![id("a"), id("b")]);
        out.clear();
        w.take_due(10_000, 1, &mut out);
        assert_eq!(out, vec![id("c")]);
        out.clear();
        w.take_due(10_000, 10, &mut out);
        assert_eq!(out, vec![id("d")]);
        assert!(w.is_empty());
        assert_eq!(w.len(), 0);
    }
}
