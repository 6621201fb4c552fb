//! Stock records: what one location holds of one SKU, and the decisions on it.
//!
//! Every change to a record is a `StockDelta` (additive), so replaying the
//! journal gives the same record whatever the interleaving of records written
//! by different actors: holds and releases add up the same in any order.

use serde::{Deserialize, Serialize};

use super::catalog::{LocIdx, SkuIdx};
use crate::limits::STOCK_MAX;

/// One stock record. 32 bytes: the table stores millions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct StockRecord {
    pub location: LocIdx,
    pub safety_stock: u32,
    pub on_hand: i64,
    /// Sum of the held and confirmed lines on this record.
    pub reserved: i64,
    /// Grows by one with every change of the record.
    pub version: u64,
}

/// An additive change to a record; applying one bumps the version by one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StockDelta {
    pub on_hand: i64,
    pub reserved: i64,
    pub safety_stock: i64,
}

/// Why an adjustment was made (api.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdjustReason {
    Receipt,
    Sale,
    Return,
    Damage,
    Correction,
    /// Units gone missing (added later: a new name, older records keep theirs).
    Theft,
}

impl AdjustReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Receipt => "receipt",
            Self::Sale => "sale",
            Self::Return => "return",
            Self::Damage => "damage",
            Self::Correction => "correction",
            Self::Theft => "theft",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "receipt" => Self::Receipt,
            "sale" => Self::Sale,
            "return" => Self::Return,
            "damage" => Self::Damage,
            "correction" => Self::Correction,
            "theft" => Self::Theft,
            _ => return None,
        })
    }
}

/// The adjustment would take on_hand out of range, or (`key_reused`) its
/// key was used by another adjustment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdjustRefused {
    pub on_hand: i64,
    pub key_reused: bool,
}

impl StockRecord {
    pub fn empty(location: LocIdx) -> Self {
        Self {
            location,
            ..Self::default()
        }
    }

    /// api.md: `max(0, on_hand - reserved - safety_stock)`.
    pub fn available(&self) -> i64 {
        (self.on_hand - self.reserved - i64::from(self.safety_stock)).max(0)
    }

    /// A change that happened (it is journaled): applied, and the version
    /// grows by one.
    pub fn apply(&mut self, d: StockDelta) {
        self.apply_provisional(d);
        self.version += 1;
    }

    /// A change not journaled (yet): a cart's hold until its record is
    /// written, or the undo of one that never will be. The version counts
    /// changes that happened, so it stays: a refused cart leaves its
    /// records as they were, and a restart (which replays the journal)
    /// reads the same version (`StockTable::commit` counts the hold once
    /// it is journaled).
    pub fn apply_provisional(&mut self, d: StockDelta) {
        self.on_hand += d.on_hand;
        self.reserved += d.reserved;
        self.safety_stock =
            (i64::from(self.safety_stock) + d.safety_stock).clamp(0, STOCK_MAX) as u32;
        debug_assert!(self.reserved >= 0, "reserved below zero: {self:?}");
    }

    /// All or nothing: a hold is granted only when `available >= qty`.
    pub fn decide_hold(&self, qty: i64) -> Result<StockDelta, i64> {
        debug_assert!(qty > 0);
        if self.available() >= qty {
            Ok(StockDelta {
                reserved: qty,
                ..StockDelta::default()
            })
        } else {
            Err(self.available())
        }
    }

    /// Partial: holds what is available up to `qty` (may be zero).
    pub fn decide_hold_partial(&self, qty: i64) -> i64 {
        qty.min(self.available())
    }

    /// A count sets on_hand and safety_stock; reserved is untouched.
    pub fn decide_count(&self, on_hand: i64, safety_stock: i64) -> StockDelta {
        StockDelta {
            on_hand: on_hand - self.on_hand,
            reserved: 0,
            safety_stock: safety_stock - i64::from(self.safety_stock),
        }
    }

    /// An adjustment may not take on_hand below 0 (409) nor past the bound.
    pub fn decide_adjust(&self, delta: i64) -> Result<StockDelta, AdjustRefused> {
        let next = self.on_hand + delta;
        if !(0..=STOCK_MAX).contains(&next) {
            return Err(AdjustRefused {
                on_hand: self.on_hand,
                key_reused: false,
            });
        }
        Ok(StockDelta {
            on_hand: delta,
            ..StockDelta::default()
        })
    }
}

/// The stock records of many SKUs: per SKU, its records sorted by location.
/// A `Vec` per SKU keeps a record at 32 bytes plus the vector's slack.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StockTable {
    by_sku: ahash::AHashMap<SkuIdx, Vec<StockRecord>>,
    records: usize,
}

impl StockTable {
    pub fn get(&self, sku: SkuIdx, loc: LocIdx) -> Option<&StockRecord> {
        let v = self.by_sku.get(&sku)?;
        v.binary_search_by_key(&loc, |r| r.location)
            .ok()
            .map(|i| &v[i])
    }

    /// The record, or zeros (version 0) when there is none.
    pub fn get_or_empty(&self, sku: SkuIdx, loc: LocIdx) -> StockRecord {
        self.get(sku, loc)
            .copied()
            .unwrap_or_else(|| StockRecord::empty(loc))
    }

    pub fn get_mut_or_insert(&mut self, sku: SkuIdx, loc: LocIdx) -> &mut StockRecord {
        let v = self.by_sku.entry(sku).or_default();
        let i = match v.binary_search_by_key(&loc, |r| r.location) {
            Ok(i) => i,
            Err(i) => {
                v.insert(i, StockRecord::empty(loc));
                self.records += 1;
                i
            }
        };
        &mut v[i]
    }

    pub fn apply(&mut self, sku: SkuIdx, loc: LocIdx, d: StockDelta) -> StockRecord {
        let r = self.get_mut_or_insert(sku, loc);
        r.apply(d);
        *r
    }

    /// `StockRecord::apply_provisional` on a record.
    pub fn apply_provisional(&mut self, sku: SkuIdx, loc: LocIdx, d: StockDelta) -> StockRecord {
        let r = self.get_mut_or_insert(sku, loc);
        r.apply_provisional(d);
        *r
    }

    /// A provisional change of the record is now journaled: it counts as
    /// one change (its version grows by one, as its replay will make it).
    pub fn commit(&mut self, sku: SkuIdx, loc: LocIdx) -> StockRecord {
        let r = self.get_mut_or_insert(sku, loc);
        r.version += 1;
        *r
    }

    /// Every record at one location, by SKU: a binary search in each SKU's
    /// records (not a pass over every record).
    pub fn at_location(&self, loc: LocIdx) -> impl Iterator<Item = (SkuIdx, &StockRecord)> {
        self.by_sku.iter().filter_map(move |(s, v)| {
            v.binary_search_by_key(&loc, |r| r.location)
                .ok()
                .map(|i| (*s, &v[i]))
        })
    }

    /// Every record of one SKU, sorted by location index.
    pub fn records_of(&self, sku: SkuIdx) -> &[StockRecord] {
        self.by_sku.get(&sku).map(Vec::as_slice).unwrap_or(&[])
    }

    pub fn iter(&self) -> impl Iterator<Item = (SkuIdx, &StockRecord)> {
        self.by_sku
            .iter()
            .flat_map(|(s, v)| v.iter().map(move |r| (*s, r)))
    }

    pub fn len(&self) -> usize {
        self.records
    }
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// Moves the records of the SKUs for which `keep` is false out into a new table.
    pub fn split_off(&mut self, mut keep: impl FnMut(SkuIdx) -> bool) -> StockTable {
        let mut out = StockTable::default();
        let moved: Vec<SkuIdx> = self.by_sku.keys().copied().filter(|s| !keep(*s)).collect();
        for s in moved {
            if let Some(v) = self.by_sku.remove(&s) {
                self.records -= v.len();
                out.records += v.len();
                out.by_sku.insert(s, v);
            }
        }
        out
    }

    /// Releases vector slack (after recovery, before serving).
    pub fn shrink_to_fit(&mut self) {
        for v in self.by_sku.values_mut() {
            v.shrink_to_fit();
        }
        self.by_sku.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_is_32_bytes() {
        assert_eq!(std::mem::size_of::<StockRecord>(), 32);
    }

    #[test]
    fn hold_needs_available() {
        let mut r = StockRecord::empty(0);
        r.apply(r.decide_count(10, 1));
        assert_eq!(r.available(), 9);
        assert_eq!(r.decide_hold(10), Err(9));
        let d = r.decide_hold(9).expect("9 of 9");
        r.apply(d);
        assert_eq!(r.available(), 0);
        assert_eq!(r.reserved, 9);
        assert_eq!(r.version, 2);
        assert_eq!(r.decide_hold_partial(5), 0);
    }

    #[test]
    fn only_changes_that_happened_move_the_version() {
        let mut t = StockTable::default();
        t.apply(1, 0, StockRecord::empty(0).decide_count(5, 0));
        let held = StockDelta {
            reserved: 2,
            ..StockDelta::default()
        };
        let r = t.apply_provisional(1, 0, held);
        assert_eq!((r.reserved, r.version), (2, 1));
        let r = t.commit(1, 0);
        assert_eq!((r.reserved, r.version), (2, 2));
        t.apply_provisional(1, 0, held);
        let r = t.apply_provisional(
            1,
            0,
            StockDelta {
                reserved: -2,
                ..StockDelta::default()
            },
        );
        assert_eq!(
            (r.reserved, r.version),
            (2, 2),
            "an undone hold left a trace"
        );
    }

    #[test]
    fn adjust_bounds() {
        let mut r = StockRecord::empty(0);
        r.apply(r.decide_count(2, 0));
        assert!(r.decide_adjust(-3).is_err());
        assert!(r.decide_adjust(-2).is_ok());
        assert!(r.decide_adjust(STOCK_MAX).is_err());
    }

    #[test]
    fn table_keeps_sorted() {
        let mut t = StockTable::default();
        for loc in [5, 1, 3] {
            t.apply(
                7,
                loc,
                StockDelta {
                    on_hand: 1,
                    ..Default::default()
                },
            );
        }
        let locs: Vec<_> = t.records_of(7).iter().map(|r| r.location).collect();
        assert_eq!(locs, vec![1, 3, 5]);
        assert_eq!(t.len(), 3);
        assert_eq!(t.get_or_empty(7, 2).version, 0);
        t.apply(8, 3, StockDelta::default());
        let mut at3: Vec<SkuIdx> = t.at_location(3).map(|(s, _)| s).collect();
        at3.sort_unstable();
        assert_eq!(at3, vec![7, 8]);
        assert_eq!(t.at_location(2).count(), 0);
    }
}
