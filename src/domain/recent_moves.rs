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
    /// The time the newest count was taken, in snapshots written before
    /// counts were kept in `RecentMoves::counted`; `None` since.
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

/// The recent movements of the records that moved lately, and the last
/// count of those counted lately.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RecentMoves {
    by_record: AHashMap<(SkuIdx, LocIdx), Moves>,
    /// Per SKU, its records' last count (when it was taken): 8 bytes a
    /// record, as a network counted in bulk has millions (a map entry of
    /// `Moves` a record cost 400 bytes resident). Added later (default).
    #[serde(default)]
    counted: AHashMap<SkuIdx, Counted>,
}

/// The last counts of one SKU's records: locations sorted, and the time
/// of each as milliseconds after `base` (a `u32`, 49 days: the counts
/// that matter are within the reach of the newest, 48 hours).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Counted {
    base: TimeMs,
    locations: Vec<LocIdx>,
    after_base: Vec<u32>,
}

impl Counted {
    fn at(&self, i: usize) -> TimeMs {
        self.base + TimeMs::from(self.after_base[i])
    }

    /// Keeps the counts `keep` keeps, with `add` (a location not kept
    /// yet at its place, and its time) among them, on a base that holds
    /// them all: the earliest kept. Counts older than the reach of the
    /// newest are dropped when the times would not fit otherwise.
    fn rebuild(&mut self, keep: impl Fn(TimeMs) -> bool, add: Option<(usize, LocIdx, TimeMs)>) {
        let mut all: Vec<(LocIdx, TimeMs)> = (0..self.locations.len())
            .map(|i| (self.locations[i], self.at(i)))
            .filter(|(_, t)| keep(*t))
            .collect();
        if let Some((i, l, t)) = add {
            all.insert(i.min(all.len()), (l, t));
            all.sort_by_key(|(l, _)| *l);
        }
        let newest = all.iter().map(|(_, t)| *t).max().unwrap_or(0);
        if all.iter().any(|(_, t)| newest - t > TimeMs::from(u32::MAX)) {
            all.retain(|(_, t)| *t >= newest - COUNT_REACH_MS);
        }
        self.base = all.iter().map(|(_, t)| *t).min().unwrap_or(0);
        self.locations = all.iter().map(|(l, _)| *l).collect();
        self.after_base = all
            .iter()
            .map(|(_, t)| u32::try_from(t - self.base).unwrap_or(u32::MAX))
            .collect();
    }
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

    /// A count of the record, taken at `counted_at` (it is kept as long
    /// as that is within the reach).
    pub fn counted(&mut self, sku: SkuIdx, loc: LocIdx, counted_at: TimeMs) {
        let v = self.counted.entry(sku).or_insert_with(|| Counted {
            base: counted_at,
            ..Counted::default()
        });
        let fits = |t: TimeMs| (0..=TimeMs::from(u32::MAX)).contains(&(t - v.base));
        match v.locations.binary_search(&loc) {
            Ok(i) if counted_at <= v.at(i) => {}
            Ok(i) if fits(counted_at) => v.after_base[i] = (counted_at - v.base) as u32,
            Err(i) if fits(counted_at) => {
                v.locations.insert(i, loc);
                v.after_base.insert(i, (counted_at - v.base) as u32);
            }
            // A new base (rare: an older count than every other, or 49
            // days on).
            Ok(i) => {
                v.locations.remove(i);
                v.after_base.remove(i);
                v.rebuild(|_| true, Some((i, loc, counted_at)));
            }
            Err(i) => v.rebuild(|_| true, Some((i, loc, counted_at))),
        }
    }

    /// When the record was last counted, if within the reach.
    pub fn last_counted(&self, sku: SkuIdx, loc: LocIdx) -> Option<TimeMs> {
        let kept = self.counted.get(&sku).and_then(|v| {
            let i = v.locations.binary_search(&loc).ok()?;
            Some(v.at(i))
        });
        let older = self.by_record.get(&(sku, loc)).and_then(|m| m.counted_at);
        kept.max(older)
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
        if let Some(last) = self
            .last_counted(sku, loc)
            .filter(|last| counted_at < *last)
        {
            return Err(LateCountRefused::Stale { last });
        }
        let Some(m) = self.by_record.get(&(sku, loc)) else {
            return Ok(0);
        };
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
        self.counted.retain(|_, v| {
            // The base is the earliest time kept: nothing to drop past it.
            if v.base < reach {
                v.rebuild(|t| t >= reach, None);
            }
            !v.locations.is_empty()
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
        self.counted.retain(|s, v| {
            if keep(*s) {
                true
            } else {
                out.counted.insert(*s, std::mem::take(v));
                false
            }
        });
        out
    }

    /// Records with movements or a count kept.
    pub fn len(&self) -> usize {
        self.by_record.len()
            + self
                .counted
                .values()
                .map(|v| v.locations.len())
                .sum::<usize>()
    }
    pub fn is_empty(&self) -> bool {
        self.by_record.is_empty() && self.counted.is_empty()
    }

    /// Releases vector slack (after recovery, before serving).
    pub fn shrink_to_fit(&mut self) {
        for v in self.counted.values_mut() {
            v.locations.shrink_to_fit();
            v.after_base.shrink_to_fit();
        }
        self.counted.shrink_to_fit();
        self.by_record.shrink_to_fit();
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
        m.counted(1, 2, t0 + 20);
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
        m.counted(1, 2, t0 + 5);
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
    fn last_counts_keep_their_time_whatever_the_base() {
        let mut m = RecentMoves::default();
        let t0 = 1_000 * H;
        m.counted(1, 5, t0 + 7);
        m.counted(1, 2, t0 - 3); // before the base: a new one
        m.counted(1, 9, t0 + 40 * 24 * H);
        assert_eq!(m.last_counted(1, 2), Some(t0 - 3));
        assert_eq!(m.last_counted(1, 5), Some(t0 + 7));
        m.counted(1, 5, t0 + 1); // older: the newer stays
        assert_eq!(m.last_counted(1, 5), Some(t0 + 7));
        // 60 days on: the counts out of the newest's reach go.
        let later = t0 + 60 * 24 * H;
        m.counted(1, 3, later);
        assert_eq!(m.last_counted(1, 3), Some(later));
        assert_eq!(m.last_counted(1, 9), None, "40 days before the newest");
        assert_eq!(m.last_counted(1, 2), None);
        m.counted(1, 9, later - 5);
        assert_eq!(m.last_counted(1, 9), Some(later - 5));
        assert_eq!(m.len(), 2);
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
        m.counted(2, 1, t0);
        m.counted(4, 1, t0 + 2 * H);
        m.moved(3, 1, t0 + 2 * H, 4);
        m.forget_stale(t0 + COUNT_REACH_MS + H);
        assert_eq!(m.len(), 2);
        assert_eq!(m.last_counted(2, 1), None);
        assert_eq!(m.last_counted(4, 1), Some(t0 + 2 * H));
        let other = m.split_off(|s| s == 4);
        assert_eq!((m.len(), other.len()), (1, 1));
        let other = m.split_off(|_| false);
        assert_eq!((m.len(), other.len()), (0, 1));
        assert!(m.is_empty());
    }
}
