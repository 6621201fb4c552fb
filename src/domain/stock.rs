//! Stock records: what one location holds of one SKU, and the decisions on it.
//!
//! Every change to a record is a `StockDelta` (additive), so replaying the
//! journal gives the same record whatever the interleaving of records written
//! by different actors: holds and releases add up the same in any order.
//!
//! The table keeps a record's figures in a 32-byte `Slot` (millions of
//! them), and the few records with unsellable units keep those beside it:
//! a record as read (`StockRecord`) joins the two.

use serde::{Deserialize, Serialize};

use super::catalog::{LocIdx, SkuIdx, SupplySale};
use super::TimeMs;
use crate::limits::STOCK_MAX;

/// Why units are set apart from sale (api.md, Unsellable stock): a fixed
/// list, as a retailer's reports need the same names in every store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Bucket {
    Damaged,
    Quarantine,
    Display,
    Expired,
    Recalled,
    Other,
}

impl Bucket {
    pub const ALL: [Bucket; 6] = [
        Bucket::Damaged,
        Bucket::Quarantine,
        Bucket::Display,
        Bucket::Expired,
        Bucket::Recalled,
        Bucket::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Bucket::Damaged => "damaged",
            Bucket::Quarantine => "quarantine",
            Bucket::Display => "display",
            Bucket::Expired => "expired",
            Bucket::Recalled => "recalled",
            Bucket::Other => "other",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|b| b.as_str() == s)
    }
}

/// A record's unsellable units by bucket: counted in on_hand, never
/// available.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Unsellable([u32; 6]);

impl Unsellable {
    pub fn get(&self, b: Bucket) -> i64 {
        i64::from(self.0[b as usize])
    }

    pub fn total(&self) -> i64 {
        self.0.iter().map(|u| i64::from(*u)).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|u| *u == 0)
    }

    /// The buckets holding units, in the list's order.
    pub fn iter(&self) -> impl Iterator<Item = (Bucket, i64)> + '_ {
        Bucket::ALL
            .into_iter()
            .map(|b| (b, self.get(b)))
            .filter(|(_, u)| *u != 0)
    }

    /// Adds `delta` to a bucket, kept in `0..=STOCK_MAX` (decisions refuse
    /// what would leave it; a replayed fact applies as it was decided).
    fn add(&mut self, b: Bucket, delta: i64) {
        let u = &mut self.0[b as usize];
        debug_assert!((0..=STOCK_MAX).contains(&(i64::from(*u) + delta)));
        *u = (i64::from(*u) + delta).clamp(0, STOCK_MAX) as u32;
    }
}

/// A record's figures as the table stores them. 32 bytes: the table
/// stores millions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
struct Slot {
    location: LocIdx,
    safety_stock: u32,
    on_hand: i64,
    reserved: i64,
    version: u64,
}

/// One stock record as read and decided on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct StockRecord {
    pub location: LocIdx,
    pub safety_stock: u32,
    pub on_hand: i64,
    /// Sum of the held and confirmed lines on this record.
    pub reserved: i64,
    /// Grows by one with every change of the record.
    pub version: u64,
    /// Units of on_hand set apart from sale.
    pub unsellable: Unsellable,
    /// Units shipped here by transfers, not yet received: not on hand,
    /// not available.
    pub in_transit: i64,
    /// Units of incoming supply (purchase orders, advance shipping
    /// notices) still to come here: not on hand, not available; and the
    /// earliest time one of them is expected (0 when none).
    pub incoming: i64,
    pub incoming_eta: TimeMs,
    /// Units sold against incoming supply here (reservation lines that
    /// allowed a backorder), not yet arrived: not in `reserved`, which
    /// counts units on hand.
    pub backordered: i64,
}

/// Units of supply still to come to a record, and the earliest expected;
/// and the units sold against it (a backorder or preorder), not arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Incoming {
    pub units: u32,
    pub eta: TimeMs,
    /// Added later (default): none in older snapshots.
    #[serde(default)]
    pub backordered: u32,
}

impl Slot {
    fn record(self, (unsellable, in_transit, incoming): Beside) -> StockRecord {
        StockRecord {
            location: self.location,
            safety_stock: self.safety_stock,
            on_hand: self.on_hand,
            reserved: self.reserved,
            version: self.version,
            unsellable,
            in_transit: i64::from(in_transit),
            incoming: i64::from(incoming.units),
            incoming_eta: incoming.eta,
            backordered: i64::from(incoming.backordered),
        }
    }
}

/// An additive change to a record; applying one bumps the version by one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StockDelta {
    pub on_hand: i64,
    pub reserved: i64,
    pub safety_stock: i64,
    /// Units into (positive) or out of a bucket of unsellable stock.
    pub unsellable: Option<(Bucket, i64)>,
    /// Units shipped here (positive) or received (negative) by transfers.
    pub in_transit: i64,
    /// Units of supply expected here (positive), or received or
    /// cancelled (negative)...
    pub incoming: i64,
    /// ...and the earliest time the rest is expected, set by the book
    /// that keeps the supply (not a change: a figure).
    pub incoming_eta: Option<TimeMs>,
    /// Units sold against incoming supply (positive), or arrived (turned
    /// into reserved units on hand) or released (negative).
    pub backordered: i64,
}

impl StockDelta {
    /// The change that takes back a hold's change `self`: its units
    /// reserved on hand and sold ahead of supply, given back.
    pub fn hold_undone(self) -> StockDelta {
        StockDelta {
            reserved: -self.reserved,
            backordered: -self.backordered,
            ..StockDelta::default()
        }
    }
}

/// What the few records that have any keep beside their figures: units
/// apart from sale, units in transit to them, units of supply to come.
type Beside = (Unsellable, u32, Incoming);

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

/// Why an adjustment (of on_hand, of a bucket of unsellable units, or
/// both) is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdjustRefused {
    /// It would take on_hand out of `0..=STOCK_MAX`.
    OutOfRange { on_hand: i64 },
    /// It takes more units out of the bucket than it holds, or would
    /// take it past `STOCK_MAX`.
    BucketShort { bucket: Bucket, has: i64 },
    /// It sets apart more units than are free (on_hand less what is
    /// reserved and already unsellable).
    NotFree { free: i64 },
    /// Its key was used by another adjustment.
    KeyReused,
}

impl StockRecord {
    pub fn empty(location: LocIdx) -> Self {
        Self {
            location,
            ..Self::default()
        }
    }

    /// api.md: `max(0, on_hand - reserved - safety_stock)`, less the
    /// unsellable units.
    pub fn available(&self) -> i64 {
        (self.on_hand - self.reserved - i64::from(self.safety_stock) - self.unsellable.total())
            .max(0)
    }

    /// Units neither reserved nor unsellable (safety stock is a margin
    /// on availability, not units apart): what may be set apart.
    pub fn free(&self) -> i64 {
        self.on_hand - self.reserved - self.unsellable.total()
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
        if let Some((b, u)) = d.unsellable {
            self.unsellable.add(b, u);
        }
        self.in_transit = (self.in_transit + d.in_transit).clamp(0, STOCK_MAX);
        self.incoming = (self.incoming + d.incoming).clamp(0, STOCK_MAX);
        if let Some(eta) = d.incoming_eta {
            self.incoming_eta = eta;
        }
        if self.incoming == 0 {
            self.incoming_eta = 0;
        }
        self.backordered = (self.backordered + d.backordered).clamp(0, STOCK_MAX);
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

    /// All or nothing against free units (neither reserved nor
    /// unsellable; safety stock is a margin on what is sold online, not
    /// units kept from a transfer's shipment): the hold, or the free units.
    pub fn decide_hold_free(&self, qty: i64) -> Result<StockDelta, i64> {
        debug_assert!(qty > 0);
        let free = self.free().max(0);
        if free >= qty {
            Ok(StockDelta {
                reserved: qty,
                ..StockDelta::default()
            })
        } else {
            Err(free)
        }
    }

    /// Partial: holds what is available up to `qty` (may be zero).
    pub fn decide_hold_partial(&self, qty: i64) -> i64 {
        qty.min(self.available())
    }

    /// Units of the incoming supply not sold yet: what a backorder may
    /// take here (before the SKU's own limit).
    pub fn incoming_unsold(&self) -> i64 {
        (self.incoming - self.backordered).max(0)
    }

    /// What this record offers of a SKU sold against supply (`sale`;
    /// none: a plain SKU): `(available, ahead)`, what any line may hold
    /// and what a line allowing a backorder may get beyond that (units
    /// on hand a plain line may not have before a preorder's release, and
    /// the supply not sold yet within `sku_room`: the SKU's limit less
    /// what it has outstanding, `SupplySale::room`). What availability
    /// shows and what the planner plans with.
    pub fn offered(&self, sale: Option<SupplySale>, sku_room: i64) -> (i64, i64) {
        let Some(sale) = sale else {
            return (self.available(), 0);
        };
        let plain = if sale.only_supply {
            0
        } else {
            self.available()
        };
        let supply = self.incoming_unsold().min(sku_room.max(0));
        (plain, self.available() - plain + supply)
    }

    /// A line that may be sold against incoming supply: `(on hand,
    /// backordered)` units of `qty` it gets, on-hand units first (none
    /// when `only_supply`: a plain line before a preorder's release,
    /// whose `sku_room` is then 0), then against the supply not sold yet,
    /// within `sku_room` (the SKU's limit less what it has outstanding).
    /// The caller decides whether fewer than `qty` will do.
    pub fn decide_hold_backorder(&self, qty: i64, only_supply: bool, sku_room: i64) -> (i64, i64) {
        let on_hand = if only_supply {
            0
        } else {
            qty.min(self.available())
        };
        let rest = qty - on_hand;
        let backordered = rest.min(self.incoming_unsold()).min(sku_room.max(0));
        (on_hand, backordered.max(0))
    }

    /// A count sets on_hand (every unit, unsellable ones too) and
    /// safety_stock; reserved and the buckets are untouched.
    pub fn decide_count(&self, on_hand: i64, safety_stock: i64) -> StockDelta {
        StockDelta {
            on_hand: on_hand - self.on_hand,
            safety_stock: safety_stock - i64::from(self.safety_stock),
            ..StockDelta::default()
        }
    }

    /// An adjustment of on_hand by `delta` and of a bucket by `unsellable`
    /// (units set apart or back; a write-off or a receipt straight into a
    /// bucket moves both alike). on_hand stays in `0..=STOCK_MAX`, a
    /// bucket never goes below 0, and units are set apart only from the
    /// free ones (409).
    pub fn decide_adjust(
        &self,
        delta: i64,
        unsellable: Option<(Bucket, i64)>,
    ) -> Result<StockDelta, AdjustRefused> {
        let next = self.on_hand + delta;
        if !(0..=STOCK_MAX).contains(&next) {
            return Err(AdjustRefused::OutOfRange {
                on_hand: self.on_hand,
            });
        }
        if let Some((bucket, u)) = unsellable {
            let has = self.unsellable.get(bucket);
            if !(0..=STOCK_MAX).contains(&(has + u)) {
                return Err(AdjustRefused::BucketShort { bucket, has });
            }
            // Only what sets apart more than on_hand gains needs free units.
            if u > delta && self.free() < u - delta {
                return Err(AdjustRefused::NotFree {
                    free: self.free().max(0),
                });
            }
        }
        Ok(StockDelta {
            on_hand: delta,
            unsellable,
            ..StockDelta::default()
        })
    }
}

/// The stock records of many SKUs: per SKU, its records' figures sorted
/// by location; the few records with unsellable units or units in
/// transit keep them beside.
/// A `Vec` per SKU keeps a record at 32 bytes plus the vector's slack.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StockTable {
    by_sku: ahash::AHashMap<SkuIdx, Vec<Slot>>,
    records: usize,
    /// Added later (default): none in older snapshots.
    #[serde(default)]
    unsellable: SideMap<Unsellable>,
    /// Added later (default): none in older snapshots.
    #[serde(default)]
    in_transit: SideMap<u32>,
    /// Added later (default): none in older snapshots.
    #[serde(default)]
    incoming: SideMap<Incoming>,
}

/// A figure kept beside the table for the few records where it is not
/// its default (none apart, none in transit): no entry means the default.
type SideMap<V> = ahash::AHashMap<(SkuIdx, LocIdx), V>;

fn side_get<V: Copy + Default>(m: &SideMap<V>, k: (SkuIdx, LocIdx)) -> V {
    if m.is_empty() {
        return V::default();
    }
    m.get(&k).copied().unwrap_or_default()
}

fn side_set<V: Copy + Default + PartialEq>(m: &mut SideMap<V>, k: (SkuIdx, LocIdx), v: V) {
    if v == V::default() {
        m.remove(&k);
    } else {
        m.insert(k, v);
    }
}

/// Takes out the entries of the SKUs `moved` names.
fn side_take<V>(m: &mut SideMap<V>, moved: impl Fn(SkuIdx) -> bool) -> SideMap<V> {
    let keys: Vec<(SkuIdx, LocIdx)> = m.keys().copied().filter(|(s, _)| moved(*s)).collect();
    keys.into_iter()
        .filter_map(|k| m.remove(&k).map(|v| (k, v)))
        .collect()
}

impl StockTable {
    fn beside(&self, sku: SkuIdx, loc: LocIdx) -> Beside {
        (
            side_get(&self.unsellable, (sku, loc)),
            side_get(&self.in_transit, (sku, loc)),
            side_get(&self.incoming, (sku, loc)),
        )
    }

    pub fn get(&self, sku: SkuIdx, loc: LocIdx) -> Option<StockRecord> {
        let v = self.by_sku.get(&sku)?;
        let i = v.binary_search_by_key(&loc, |r| r.location).ok()?;
        Some(v[i].record(self.beside(sku, loc)))
    }

    /// The record, or zeros (version 0) when there is none.
    pub fn get_or_empty(&self, sku: SkuIdx, loc: LocIdx) -> StockRecord {
        self.get(sku, loc)
            .unwrap_or_else(|| StockRecord::empty(loc))
    }

    /// Changes a record (made if there is none) by `f`, and answers it.
    fn update(
        &mut self,
        sku: SkuIdx,
        loc: LocIdx,
        f: impl FnOnce(&mut StockRecord),
    ) -> StockRecord {
        let before = self.beside(sku, loc);
        let v = self.by_sku.entry(sku).or_default();
        let i = match v.binary_search_by_key(&loc, |r| r.location) {
            Ok(i) => i,
            Err(i) => {
                v.insert(
                    i,
                    Slot {
                        location: loc,
                        ..Slot::default()
                    },
                );
                self.records += 1;
                i
            }
        };
        let mut r = v[i].record(before);
        f(&mut r);
        v[i] = Slot {
            location: r.location,
            safety_stock: r.safety_stock,
            on_hand: r.on_hand,
            reserved: r.reserved,
            version: r.version,
        };
        if r.unsellable != before.0 {
            side_set(&mut self.unsellable, (sku, loc), r.unsellable);
        }
        let in_transit = u32::try_from(r.in_transit).unwrap_or(u32::MAX);
        if in_transit != before.1 {
            side_set(&mut self.in_transit, (sku, loc), in_transit);
        }
        let incoming = Incoming {
            units: u32::try_from(r.incoming).unwrap_or(u32::MAX),
            eta: r.incoming_eta,
            backordered: u32::try_from(r.backordered).unwrap_or(u32::MAX),
        };
        if incoming != before.2 {
            side_set(&mut self.incoming, (sku, loc), incoming);
        }
        r
    }

    /// Sets a record as it is elsewhere (a copy of another table).
    pub fn put(&mut self, sku: SkuIdx, record: StockRecord) {
        self.update(sku, record.location, |r| *r = record);
    }

    pub fn apply(&mut self, sku: SkuIdx, loc: LocIdx, d: StockDelta) -> StockRecord {
        self.update(sku, loc, |r| r.apply(d))
    }

    /// `StockRecord::apply_provisional` on a record.
    pub fn apply_provisional(&mut self, sku: SkuIdx, loc: LocIdx, d: StockDelta) -> StockRecord {
        self.update(sku, loc, |r| r.apply_provisional(d))
    }

    /// A provisional change of the record is now journaled: it counts as
    /// one change (its version grows by one, as its replay will make it).
    pub fn commit(&mut self, sku: SkuIdx, loc: LocIdx) -> StockRecord {
        self.update(sku, loc, |r| r.version += 1)
    }

    /// Every record at one location, by SKU: a binary search in each SKU's
    /// records (not a pass over every record).
    pub fn at_location(&self, loc: LocIdx) -> impl Iterator<Item = (SkuIdx, StockRecord)> + '_ {
        self.by_sku.iter().filter_map(move |(s, v)| {
            v.binary_search_by_key(&loc, |r| r.location)
                .ok()
                .map(|i| (*s, v[i].record(self.beside(*s, loc))))
        })
    }

    /// Every record of one SKU, sorted by location index.
    pub fn records_of(&self, sku: SkuIdx) -> impl Iterator<Item = StockRecord> + '_ {
        self.by_sku
            .get(&sku)
            .map(Vec::as_slice)
            .unwrap_or(&[])
            .iter()
            .map(move |r| r.record(self.beside(sku, r.location)))
    }

    pub fn iter(&self) -> impl Iterator<Item = (SkuIdx, StockRecord)> + '_ {
        self.by_sku.iter().flat_map(move |(s, v)| {
            v.iter()
                .map(move |r| (*s, r.record(self.beside(*s, r.location))))
        })
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
        let moved = |s: SkuIdx| out.by_sku.contains_key(&s);
        let unsellable = side_take(&mut self.unsellable, moved);
        let in_transit = side_take(&mut self.in_transit, moved);
        let incoming = side_take(&mut self.incoming, moved);
        out.unsellable = unsellable;
        out.in_transit = in_transit;
        out.incoming = incoming;
        out
    }

    /// Releases vector slack (after recovery, before serving).
    pub fn shrink_to_fit(&mut self) {
        for v in self.by_sku.values_mut() {
            v.shrink_to_fit();
        }
        self.by_sku.shrink_to_fit();
        self.unsellable.shrink_to_fit();
        self.in_transit.shrink_to_fit();
        self.incoming.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_sold_ahead_ride_in_the_incoming_side_map_without_growing_it() {
        // The few records with incoming supply keep it beside their
        // figures (`StockTable::incoming`); a record without any stays
        // within the 64 bytes a record may take.
        assert_eq!(std::mem::size_of::<Incoming>(), 16);
    }

    #[test]
    fn a_backorder_takes_on_hand_first_then_unsold_supply_within_room() {
        let r = StockRecord {
            on_hand: 3,
            reserved: 1,
            safety_stock: 1,
            incoming: 5,
            backordered: 2,
            ..StockRecord::empty(0)
        };
        assert_eq!(r.incoming_unsold(), 3);
        assert_eq!(r.decide_hold_backorder(2, false, 10), (1, 1));
        assert_eq!(r.decide_hold_backorder(9, false, 10), (1, 3));
        assert_eq!(r.decide_hold_backorder(9, false, 2), (1, 2));
        assert_eq!(r.decide_hold_backorder(9, false, -4), (1, 0));
        assert_eq!(r.decide_hold_backorder(2, true, 10), (0, 2));
    }

    #[test]
    fn stored_figures_are_32_bytes() {
        assert_eq!(std::mem::size_of::<Slot>(), 32);
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
        assert!(r.decide_adjust(-3, None).is_err());
        assert!(r.decide_adjust(-2, None).is_ok());
        assert!(r.decide_adjust(STOCK_MAX, None).is_err());
    }

    #[test]
    fn unsellable_units_are_on_hand_but_never_available() {
        let mut r = StockRecord::empty(0);
        r.apply(r.decide_count(10, 1));
        r.apply(r.decide_hold(3).expect("hold"));
        // 10 on hand, 3 reserved: 7 free, 6 available (safety stock 1).
        let damaged = Some((Bucket::Damaged, 7));
        assert_eq!(
            r.decide_adjust(0, Some((Bucket::Damaged, 8))),
            Err(AdjustRefused::NotFree { free: 7 })
        );
        r.apply(r.decide_adjust(0, damaged).expect("7 free"));
        assert_eq!((r.on_hand, r.available(), r.free()), (10, 0, 0));
        assert_eq!(
            r.decide_adjust(0, Some((Bucket::Display, 1))),
            Err(AdjustRefused::NotFree { free: 0 })
        );
        assert_eq!(
            r.decide_adjust(0, Some((Bucket::Display, -1))),
            Err(AdjustRefused::BucketShort {
                bucket: Bucket::Display,
                has: 0
            })
        );
        // A write-off takes units out of on_hand and the bucket alike:
        // what is available does not move.
        r.apply(
            r.decide_adjust(-2, Some((Bucket::Damaged, -2)))
                .expect("write-off"),
        );
        assert_eq!(
            (r.on_hand, r.unsellable.get(Bucket::Damaged), r.available()),
            (8, 5, 0)
        );
        // A receipt straight into quarantine needs no free units.
        r.apply(
            r.decide_adjust(4, Some((Bucket::Quarantine, 4)))
                .expect("receipt"),
        );
        assert_eq!((r.on_hand, r.unsellable.total(), r.available()), (12, 9, 0));
        // Set back: sellable again.
        r.apply(
            r.decide_adjust(0, Some((Bucket::Damaged, -5)))
                .expect("back"),
        );
        assert_eq!(r.available(), 4);
        let names: Vec<_> = r.unsellable.iter().map(|(b, u)| (b.as_str(), u)).collect();
        assert_eq!(names, vec![("quarantine", 4)]);
        assert_eq!(Bucket::parse("quarantine"), Some(Bucket::Quarantine));
        // A bucket stays within the bound, whatever a count did to on_hand.
        let mut r = StockRecord::empty(0);
        r.apply(r.decide_count(STOCK_MAX, 0));
        let all = Some((Bucket::Quarantine, STOCK_MAX));
        r.apply(r.decide_adjust(0, all).expect("all of them"));
        r.apply(r.decide_count(0, 0));
        assert_eq!(
            r.decide_adjust(1, Some((Bucket::Quarantine, 1))),
            Err(AdjustRefused::BucketShort {
                bucket: Bucket::Quarantine,
                has: STOCK_MAX
            })
        );
        assert_eq!(Bucket::parse("Damaged"), None);
    }

    #[test]
    fn the_table_keeps_unsellable_units_beside_the_figures() {
        let mut t = StockTable::default();
        t.apply(1, 2, StockRecord::empty(2).decide_count(5, 0));
        let apart = StockDelta {
            unsellable: Some((Bucket::Display, 2)),
            ..StockDelta::default()
        };
        let r = t.apply(1, 2, apart);
        assert_eq!((r.version, r.available()), (2, 3));
        assert_eq!(t.get_or_empty(1, 2).unsellable.get(Bucket::Display), 2);
        assert_eq!(t.records_of(1).next().map(|r| r.available()), Some(3));
        assert_eq!(t.at_location(2).next().map(|(_, r)| r.free()), Some(3));
        let moved = t.split_off(|s| s != 1);
        assert!(t.unsellable.is_empty(), "the buckets moved with their SKU");
        assert_eq!(moved.get_or_empty(1, 2).unsellable.get(Bucket::Display), 2);
        let mut moved = moved;
        let back = StockDelta {
            unsellable: Some((Bucket::Display, -2)),
            ..StockDelta::default()
        };
        moved.apply(1, 2, back);
        assert!(
            moved.unsellable.is_empty(),
            "an empty bucket set is not kept"
        );
        // Units in transit live beside too, and go at zero.
        let coming = StockDelta {
            in_transit: 4,
            ..StockDelta::default()
        };
        let r = moved.apply(1, 3, coming);
        assert_eq!((r.in_transit, r.on_hand, r.available()), (4, 0, 0));
        assert_eq!(moved.records_of(1).map(|r| r.in_transit).sum::<i64>(), 4);
        let mut again = moved.split_off(|_| false);
        assert!(moved.in_transit.is_empty(), "moved with their SKU");
        let arrived = StockDelta {
            on_hand: 3,
            in_transit: -4,
            ..StockDelta::default()
        };
        assert_eq!(again.apply(1, 3, arrived).in_transit, 0);
        assert!(again.in_transit.is_empty());
        let moved = again;
        let bytes = rmp_serde::to_vec(&moved).expect("encode");
        let again: StockTable = rmp_serde::from_slice(&bytes).expect("decode");
        assert_eq!(again, moved);
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
        let locs: Vec<_> = t.records_of(7).map(|r| r.location).collect();
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
