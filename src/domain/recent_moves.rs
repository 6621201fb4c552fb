//! Counts as of a time. A store's count is taken at 09:00 and reaches the
//! engine at 09:20, after sales at 09:10: set as it arrives, it would
//! bring back the units sold at 09:10. So each record keeps the on_hand
//! movements of the last `COUNT_REACH_MS` (fulfilments, sales and other
//! adjustments, returns, receipts: every on_hand change but a count) and
//! the time of its last count, and a count taken at `counted_at` sets
//! on_hand to the count plus what moved after `counted_at`.
//!
//! Kept beside the stock table, as the rotation windows are: only records
//! that moved or were counted within the reach have an entry. Derived
//! from journaled facts and their timestamps, so replay and snapshots
//! rebuild the same table; time comes in as a value.

use ahash::AHashMap;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

use super::catalog::{LocIdx, SkuIdx};
use super::TimeMs;
use crate::limits::{COUNT_REACH_MS, MOVES_PER_RECORD_MAX};

/// One record's movements within the reach, oldest first, and its last
/// count.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Moves {
    /// (when, on_hand delta); one entry per instant (deltas at the same
    /// millisecond add up).
    log: VecDeque<(TimeMs, i64)>,
    /// Movements before this were dropped to keep the log bounded: a
    /// count reaching before it cannot be placed. `TimeMs::MIN`: none
    /// dropped but by age.
    complete_from: TimeMs,
    /// The time the newest count was taken (`counted_at`, or when it
    /// arrived); `None`: not counted within the reach.
    counted_at: Option<TimeMs>,
    /// The newest time written (a movement or a count's arrival).
    newest: TimeMs,
}

/// Why a count as of a time cannot be placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LateCountRefused {
    /// The record was counted after `counted_at` (at `last`): the older
    /// count would undo the newer one.
    Stale { last: TimeMs },
    /// `counted_at` reaches back before the movements kept (before
    /// `from`).
    TooOld { from: TimeMs },
}

/// The recent movements of the records that moved or were counted lately.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RecentMoves {
    by_record: AHashMap<(SkuIdx, LocIdx), Moves>,
}

impl RecentMoves {
    /// An on_hand movement of `delta` at `at_ms` (not a count).
    pub fn moved(&mut self, sku: SkuIdx, loc: LocIdx, at_ms: TimeMs, delta: i64) {
        if delta == 0 {
            return;
        }
        let m = self.by_record.entry((sku, loc)).or_insert_with(|| Moves {
            complete_from: TimeMs::MIN,
            ..Moves::default()
        });
        m.newest = m.newest.max(at_ms);
        // Writers on other threads journal a moment apart: a movement timed
        // a little before the newest goes in its place.
        let at = m.log.partition_point(|(t, _)| *t <= at_ms);
        match at.checked_sub(1).and_then(|i| m.log.get_mut(i)) {
            Some((t, d)) if *t == at_ms => *d += delta,
            _ => m.log.insert(at, (at_ms, delta)),
        }
        m.forget_before(m.newest - COUNT_REACH_MS);
        while m.log.len() > MOVES_PER_RECORD_MAX {
            if let Some((t, _)) = m.log.pop_front() {
                m.complete_from = m.complete_from.max(t + 1);
            }
        }
    }

    /// A count of the record, taken at `counted_at`, arrived at `at_ms`.
    pub fn counted(&mut self, sku: SkuIdx, loc: LocIdx, counted_at: TimeMs, at_ms: TimeMs) {
        let m = self.by_record.entry((sku, loc)).or_insert_with(|| Moves {
            complete_from: TimeMs::MIN,
            ..Moves::default()
        });
        m.counted_at = Some(m.counted_at.map_or(counted_at, |c| c.max(counted_at)));
        m.newest = m.newest.max(at_ms);
    }

    /// When the record was last counted, if within the reach.
    pub fn last_counted(&self, sku: SkuIdx, loc: LocIdx) -> Option<TimeMs> {
        self.by_record.get(&(sku, loc)).and_then(|m| m.counted_at)
    }

    /// What a count taken at `counted_at` must add to the figure counted:
    /// the on_hand movements after it. Refused when the record was
    /// counted after it, or when it reaches back past the reach (from
    /// `now`) or past the movements kept.
    pub fn moved_since(
        &self,
        sku: SkuIdx,
        loc: LocIdx,
        counted_at: TimeMs,
        now: TimeMs,
    ) -> Result<i64, LateCountRefused> {
        let reach = now - COUNT_REACH_MS;
        if counted_at < reach {
            return Err(LateCountRefused::TooOld { from: reach });
        }
        let Some(m) = self.by_record.get(&(sku, loc)) else {
            return Ok(0);
        };
        if let Some(last) = m.counted_at.filter(|last| counted_at < *last) {
            return Err(LateCountRefused::Stale { last });
        }
        if counted_at < m.complete_from {
            return Err(LateCountRefused::TooOld {
                from: m.complete_from,
            });
        }
        let after = m.log.partition_point(|(t, _)| *t <= counted_at);
        Ok(m.log.range(after..).map(|(_, d)| d).sum())
    }

    /// What a count of `on_hand` units sets on_hand to at `now`: the figure
    /// if taken now (`counted_at` `None`), else the figure plus what moved
    /// after `counted_at`, within the stock bounds (a late count never
    /// brings back units sold after it, nor goes below zero).
    pub fn count_target(
        &self,
        sku: SkuIdx,
        loc: LocIdx,
        on_hand: i64,
        counted_at: Option<TimeMs>,
        now: TimeMs,
    ) -> Result<i64, LateCountRefused> {
        let Some(at) = counted_at else {
            return Ok(on_hand);
        };
        let moved = self.moved_since(sku, loc, at, now)?;
        Ok((on_hand + moved).clamp(0, crate::limits::STOCK_MAX))
    }

    /// Drops what is past the reach: movements older than it, and records
    /// with nothing newer (a count reaching back that far is refused
    /// anyway, so their last count no longer matters).
    pub fn forget_stale(&mut self, now: TimeMs) {
        let reach = now - COUNT_REACH_MS;
        self.by_record.retain(|_, m| {
            m.forget_before(reach);
            m.newest >= reach
        });
    }

    /// Moves the entries of the SKUs for which `keep` is false into a new
    /// table (splitting the recovered state among the stock shards).
    pub fn split_off(&mut self, mut keep: impl FnMut(SkuIdx) -> bool) -> RecentMoves {
        let mut out = RecentMoves::default();
        self.by_record.retain(|k, m| {
            if keep(k.0) {
                true
            } else {
                out.by_record.insert(*k, std::mem::take(m));
                false
            }
        });
        out
    }

    pub fn len(&self) -> usize {
        self.by_record.len()
    }
    pub fn is_empty(&self) -> bool {
        self.by_record.is_empty()
    }
}

impl Moves {
    fn forget_before(&mut self, t: TimeMs) {
        while self.log.front().is_some_and(|(at, _)| *at < t) {
            self.log.pop_front();
        }
        if self.counted_at.is_some_and(|c| c < t) {
            self.counted_at = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: TimeMs = 3_600_000;

    #[test]
    fn a_late_count_adds_what_moved_after_it() {
        let mut m = RecentMoves::default();
        let t0 = 1_000 * H;
        m.moved(1, 2, t0 + 10, -2); // sold before the count: in the figure
        m.moved(1, 2, t0 + 30, -3); // sold after: taken off the count
        m.moved(1, 2, t0 + 40, 5); // received after: added
        m.moved(9, 2, t0 + 30, -7); // another record
        assert_eq!(m.moved_since(1, 2, t0 + 20, t0 + 50), Ok(2));
        assert_eq!(
            m.moved_since(1, 2, t0 + 30, t0 + 50),
            Ok(5),
            "at it: in the count"
        );
        assert_eq!(m.moved_since(3, 3, t0, t0 + 50), Ok(0), "never moved");
    }

    #[test]
    fn a_count_older_than_the_last_or_the_reach_is_refused() {
        let mut m = RecentMoves::default();
        let t0 = 1_000 * H;
        m.counted(1, 2, t0 + 20, t0 + 25);
        assert_eq!(
            m.moved_since(1, 2, t0 + 10, t0 + 30),
            Err(LateCountRefused::Stale { last: t0 + 20 })
        );
        assert_eq!(
            m.moved_since(1, 2, t0 + 20, t0 + 30),
            Ok(0),
            "the same instant"
        );
        // An older count arriving later does not move the last one back.
        m.counted(1, 2, t0 + 5, t0 + 40);
        assert_eq!(m.last_counted(1, 2), Some(t0 + 20));
        let now = t0 + COUNT_REACH_MS + 100;
        assert_eq!(
            m.moved_since(1, 2, t0 + 50, now),
            Err(LateCountRefused::TooOld {
                from: now - COUNT_REACH_MS
            })
        );
    }

    #[test]
    fn the_log_is_bounded_and_says_how_far_back_it_is_whole() {
        let mut m = RecentMoves::default();
        let t0 = 1_000 * H;
        let n = MOVES_PER_RECORD_MAX as i64 + 10;
        for i in 0..n {
            m.moved(1, 1, t0 + i, -1);
        }
        assert_eq!(
            m.moved_since(1, 1, t0 + 5, t0 + n),
            Err(LateCountRefused::TooOld { from: t0 + 10 })
        );
        assert_eq!(m.moved_since(1, 1, t0 + 10, t0 + n), Ok(-(n - 11)));
    }

    #[test]
    fn a_movement_timed_a_moment_back_goes_in_its_place() {
        let mut m = RecentMoves::default();
        let t0 = 1_000 * H;
        m.moved(1, 1, t0 + 30, -1);
        m.moved(1, 1, t0 + 10, -4);
        m.moved(1, 1, t0 + 10, -1);
        assert_eq!(m.moved_since(1, 1, t0 + 20, t0 + 40), Ok(-1));
        assert_eq!(m.moved_since(1, 1, t0, t0 + 40), Ok(-6));
    }

    #[test]
    fn records_past_the_reach_are_forgotten() {
        let mut m = RecentMoves::default();
        let t0 = 1_000 * H;
        m.moved(1, 1, t0, -1);
        m.counted(2, 1, t0, t0);
        m.moved(3, 1, t0 + 2 * H, 4);
        m.forget_stale(t0 + COUNT_REACH_MS + H);
        assert_eq!(m.len(), 1);
        let other = m.split_off(|_| false);
        assert_eq!((m.len(), other.len()), (0, 1));
        assert!(m.is_empty());
    }
}
