//! The rotation index of a stock record: how fast that location sells that
//! SKU. Units sold (sales adjustments and fulfilled reservations) over the
//! last `WINDOW_DAYS` UTC days, divided by the average on_hand over them
//! (the mean of each day's closing on_hand). The planner prefers slow
//! rotation, so stores keep their fast sellers for walk-in customers.
//!
//! Kept beside the stock table, not in it: a stock record stays 32 bytes,
//! and only records that sold something in the window have an entry (most
//! of a network's records sell nothing in a week). Everything here is
//! derived from journaled facts and their timestamps, so replay and the
//! snapshots rebuild the same figures; time comes in as a value.

use ahash::AHashMap;
use serde::{Deserialize, Serialize};

use super::catalog::{LocIdx, SkuIdx};
use super::TimeMs;

/// Length of the sliding window, in UTC days (today included).
pub const WINDOW_DAYS: usize = 7;
const DAY_MS: TimeMs = 86_400_000;

/// The UTC day of a timestamp, as the day number since the epoch.
pub fn day_of(at_ms: TimeMs) -> i64 {
    at_ms.div_euclid(DAY_MS)
}

/// The window of one record: per day, units sold and the closing on_hand,
/// in a ring indexed by day number modulo the window. 60 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Turnover {
    /// The newest day written (day number since the epoch).
    newest: i64,
    sold: [u32; WINDOW_DAYS],
    close: [u32; WINDOW_DAYS],
}

fn slot(day: i64) -> usize {
    day.rem_euclid(WINDOW_DAYS as i64) as usize
}

fn units(v: i64) -> u32 {
    v.clamp(0, i64::from(u32::MAX)) as u32
}

impl Turnover {
    /// A record first seen selling on `day`, holding `on_hand` before the
    /// sale: the days before are taken to have closed at that level (what
    /// it held is the best knowledge of what it held).
    pub fn new(day: i64, on_hand: i64) -> Self {
        Turnover {
            newest: day,
            sold: [0; WINDOW_DAYS],
            close: [units(on_hand); WINDOW_DAYS],
        }
    }

    /// Moves the window forward to `day`: the days between close at the
    /// last known level and sold nothing.
    fn roll_to(&mut self, day: i64) {
        if day <= self.newest {
            return;
        }
        let last = self.close[slot(self.newest)];
        let from = self.newest.max(day - WINDOW_DAYS as i64) + 1;
        for d in from..=day {
            self.sold[slot(d)] = 0;
            self.close[slot(d)] = last;
        }
        self.newest = day;
    }

    /// A change of the record at `at_ms`: `sold` units sold by it, on_hand
    /// `on_hand` after it. A change timed before the newest day (writers
    /// on other threads journal a moment apart across midnight) counts its
    /// sale on its own day, if still in the window; the close stays the
    /// newest day's, which is the level now.
    pub fn record(&mut self, at_ms: TimeMs, sold: u32, on_hand: i64) {
        let day = day_of(at_ms);
        self.roll_to(day);
        if day > self.newest - WINDOW_DAYS as i64 {
            let s = &mut self.sold[slot(day)];
            *s = s.saturating_add(sold);
        }
        self.close[slot(self.newest)] = units(on_hand);
    }

    /// The index on the day of `now_ms`: units sold over the window per
    /// average unit on hand (an average under one unit counts as one, so a
    /// record that sold out reads as fast, not as infinite).
    pub fn index(&self, now_ms: TimeMs) -> f64 {
        let today = day_of(now_ms).max(self.newest);
        let last = self.close[slot(self.newest)];
        let (mut sold, mut stock) = (0u64, 0u64);
        for d in today + 1 - WINDOW_DAYS as i64..=today {
            if d > self.newest {
                stock += u64::from(last);
            } else if d > self.newest - WINDOW_DAYS as i64 {
                sold += u64::from(self.sold[slot(d)]);
                stock += u64::from(self.close[slot(d)]);
            } else {
                // Before the entry's window: it closed as its oldest day.
                stock += u64::from(self.close[slot(self.newest + 1)]);
            }
        }
        if sold == 0 {
            return 0.0;
        }
        let average = (stock as f64 / WINDOW_DAYS as f64).max(1.0);
        sold as f64 / average
    }

    /// Nothing sold in the window that ends on `today`: the index is 0 and
    /// the entry can go.
    pub fn is_stale(&self, today: i64) -> bool {
        self.newest + (WINDOW_DAYS as i64) <= today
            || self.index(today.saturating_mul(DAY_MS)) == 0.0
    }
}

/// The windows of the records that sold something lately.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RotationTable {
    by_record: AHashMap<(SkuIdx, LocIdx), Turnover>,
}

impl RotationTable {
    /// A change of a record at `at_ms`: `sold` units sold, `on_hand` after
    /// it. Records that never sold are not tracked (their index is 0).
    pub fn record(&mut self, sku: SkuIdx, loc: LocIdx, at_ms: TimeMs, sold: u32, on_hand: i64) {
        match self.by_record.get_mut(&(sku, loc)) {
            Some(t) => t.record(at_ms, sold, on_hand),
            None if sold > 0 => {
                let mut t = Turnover::new(day_of(at_ms), on_hand + i64::from(sold));
                t.record(at_ms, sold, on_hand);
                self.by_record.insert((sku, loc), t);
            }
            None => {}
        }
    }

    /// The rotation index of a record on the day of `now_ms`.
    pub fn index(&self, sku: SkuIdx, loc: LocIdx, now_ms: TimeMs) -> f64 {
        self.by_record
            .get(&(sku, loc))
            .map_or(0.0, |t| t.index(now_ms))
    }

    /// Drops the entries with nothing sold in the window (bounded memory:
    /// the table holds only the records selling this week).
    pub fn forget_stale(&mut self, now_ms: TimeMs) {
        let today = day_of(now_ms);
        self.by_record.retain(|_, t| !t.is_stale(today));
    }

    /// Moves the entries of the SKUs for which `keep` is false into a new
    /// table (splitting the recovered state among the stock shards).
    pub fn split_off(&mut self, mut keep: impl FnMut(SkuIdx) -> bool) -> RotationTable {
        let mut out = RotationTable::default();
        self.by_record.retain(|k, t| {
            if keep(k.0) {
                true
            } else {
                out.by_record.insert(*k, *t);
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

#[cfg(test)]
mod tests {
    use super::*;

    const D: TimeMs = DAY_MS;

    #[test]
    fn sold_over_average_stock() {
        // 10 on hand all week, 7 sold today: 7 / average close.
        let mut t = Turnover::new(100, 17);
        t.record(100 * D + 5, 7, 10);
        // closes: six days at 17 (before the entry), today at 10.
        let avg = (6.0 * 17.0 + 10.0) / 7.0;
        assert!((t.index(100 * D) - 7.0 / avg).abs() < 1e-9);
    }

    #[test]
    fn the_window_slides() {
        let mut t = Turnover::new(100, 20);
        t.record(100 * D, 10, 10);
        let day0 = t.index(100 * D);
        assert!(day0 > 0.0);
        // Later days carry the close forward; the sale is still in (and
        // the average stock is lower: the days before the entry held 20).
        let day3 = t.index(103 * D);
        assert!(day3 > day0, "{day3} vs {day0}");
        assert!((t.index(106 * D) - 10.0 / 10.0).abs() < 1e-9);
        // Seven days on, the sale has left the window.
        assert_eq!(t.index(107 * D), 0.0);
        assert!(t.is_stale(107));
        assert!(!t.is_stale(106));
    }

    #[test]
    fn days_roll_and_sales_add_up() {
        let mut t = Turnover::new(10, 100);
        t.record(10 * D, 5, 95);
        t.record(12 * D + 1, 5, 90);
        t.record(12 * D + 2, 0, 190); // a receipt
        t.record(13 * D, 10, 180);
        // Window ends day 13: days 7..=13. Closes: 7,8,9 -> 100 (before
        // the entry), 10 -> 95, 11 -> 95, 12 -> 190, 13 -> 180.
        let avg = (3.0 * 100.0 + 95.0 + 95.0 + 190.0 + 180.0) / 7.0;
        assert!((t.index(13 * D) - 20.0 / avg).abs() < 1e-9);
        // A late write timed on an earlier day in the window counts there.
        t.record(11 * D + 9, 3, 177);
        assert!(
            (t.index(13 * D) - 23.0 / ((3.0 * 100.0 + 95.0 + 95.0 + 190.0 + 177.0) / 7.0)).abs()
                < 1e-9
        );
        // One timed before the window is not a sale of the window.
        t.record(2 * D, 50, 177);
        assert!(
            (t.index(13 * D) - 23.0 / ((3.0 * 100.0 + 95.0 + 95.0 + 190.0 + 177.0) / 7.0)).abs()
                < 1e-9
        );
    }

    #[test]
    fn a_sold_out_record_is_fast_not_infinite() {
        let mut t = Turnover::new(5, 3);
        t.record(5 * D, 3, 0);
        let i = t.index(5 * D);
        assert!(i.is_finite() && i >= 3.0 / (18.0 / 7.0) - 1e-9);
    }

    #[test]
    fn a_long_gap_clears_the_ring() {
        let mut t = Turnover::new(1, 10);
        t.record(D, 4, 6);
        t.record(1000 * D, 2, 4);
        // Only the newest sale counts; the closes before it are 6.
        let avg = (6.0 * 6.0 + 4.0) / 7.0;
        assert!((t.index(1000 * D) - 2.0 / avg).abs() < 1e-9);
    }

    #[test]
    fn table_tracks_sellers_only_and_forgets_them() {
        let mut r = RotationTable::default();
        r.record(1, 2, 50 * D, 0, 10); // a count: not tracked
        assert!(r.is_empty());
        r.record(1, 2, 50 * D, 4, 6);
        r.record(1, 3, 50 * D, 1, 99);
        assert_eq!(r.len(), 2);
        assert!(r.index(1, 2, 50 * D) > r.index(1, 3, 50 * D));
        assert_eq!(r.index(9, 9, 50 * D), 0.0);
        let other = r.split_off(|_| false);
        assert_eq!((r.len(), other.len()), (0, 2));
        let mut r = other;
        r.forget_stale(56 * D);
        assert_eq!(r.len(), 2);
        r.forget_stale(57 * D);
        assert!(r.is_empty());
    }
}
