//! SKUs and locations, interned to dense `u32` indices so that a stock record
//! is keyed by two small integers instead of two strings.

use ahash::AHashMap;
use serde::{Deserialize, Serialize};

use super::ids::{LocationId, SkuId};

/// Dense index of a SKU, assigned in the order SKUs were first put (so replay
/// assigns the same indices).
pub type SkuIdx = u32;
/// Dense index of a location, same rule.
pub type LocIdx = u32;

/// A SKU as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sku {
    pub name: String,
    pub weight_g: Option<u32>,
    /// Flash-sale guard against scalping bots: no reservation line may ask for
    /// more than this of the SKU. `None`: only the global bound applies.
    pub max_qty_per_reservation: Option<u32>,
    /// Length, width, height in mm, for shipment planning.
    /// (Fields added after the first journal format carry `serde(default)`:
    /// a record written before them decodes with the default.)
    #[serde(default)]
    pub dimensions_mm: Option<[u32; 3]>,
    /// Oversized goods (a sofa, a bicycle): always a shipment of their own,
    /// never packed with other lines.
    #[serde(default)]
    pub ship_alone: bool,
    /// May be sold against incoming supply once on-hand units run out, up
    /// to `max_units` outstanding (sold, not yet arrived) network-wide.
    #[serde(default)]
    pub backorder: Option<Backorder>,
    /// Sold only against incoming supply until `release_ms`, up to
    /// `max_units` outstanding; after its release as any SKU (with its
    /// `backorder`, if any).
    #[serde(default)]
    pub preorder: Option<Preorder>,
    /// Availability at or under which `stock.low` is published, at a
    /// location and across the network (added later: none).
    #[serde(default)]
    pub low_stock: Option<LowStock>,
}

/// A SKU's low-stock thresholds (api.md, Events): `stock.low` when
/// availability falls to one of them or under (and above 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LowStock {
    pub location: Option<u32>,
    pub network: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backorder {
    pub max_units: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preorder {
    pub release_ms: super::TimeMs,
    pub max_units: u32,
}

/// How a SKU may be sold against incoming supply at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SupplySale {
    /// Units that may be outstanding against supply, network-wide.
    pub max_units: u32,
    /// Before a preorder's release: sold only to lines that allow it (a
    /// plain line gets nothing, not even on hand).
    pub only_supply: bool,
}

impl SupplySale {
    /// Units the SKU may still sell against supply, network-wide, with
    /// `outstanding` sold and not arrived (its records' `backordered`).
    pub fn room(&self, outstanding: i64) -> i64 {
        (i64::from(self.max_units) - outstanding).max(0)
    }
}

impl Sku {
    /// A SKU with a name and nothing else set.
    pub fn named(name: impl Into<String>) -> Self {
        Sku {
            name: name.into(),
            weight_g: None,
            max_qty_per_reservation: None,
            dimensions_mm: None,
            ship_alone: false,
            backorder: None,
            preorder: None,
            low_stock: None,
        }
    }

    /// Whether (and how far) it may be sold against incoming supply at
    /// `now`: a preorder before its release, else its backorder.
    pub fn supply_sale(&self, now: super::TimeMs) -> Option<SupplySale> {
        match (self.preorder, self.backorder) {
            (Some(p), _) if now < p.release_ms => Some(SupplySale {
                max_units: p.max_units,
                only_supply: true,
            }),
            (_, Some(b)) => Some(SupplySale {
                max_units: b.max_units,
                only_supply: false,
            }),
            _ => None,
        }
    }
}

/// Store or distribution centre.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LocationKind {
    Store,
    Dc,
}

/// A location as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Location {
    pub name: String,
    pub kind: LocationKind,
    pub lat: f64,
    pub lon: f64,
    /// 0..=1000, lower is preferred.
    pub priority: u32,
    pub ship: bool,
    pub pickup: bool,
    /// Orders a day; `None` is unlimited.
    pub daily_capacity: Option<u32>,
    pub active: bool,
    /// Where carriers collect from (labels need it); added later: default.
    #[serde(default)]
    pub address: Option<super::address::Address>,
}

impl Location {
    /// A location with the defaults a back office would expect: a middling
    /// priority, shipping on, pickup where there is a counter (stores),
    /// active, no daily cap.
    pub fn new(name: impl Into<String>, kind: LocationKind, lat: f64, lon: f64) -> Self {
        Location {
            name: name.into(),
            kind,
            lat,
            lon,
            priority: 100,
            ship: true,
            pickup: kind == LocationKind::Store,
            daily_capacity: None,
            active: true,
            address: None,
        }
    }
}

/// Every SKU and location known, with their indices.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Catalog {
    skus: Vec<(SkuId, Sku)>,
    locations: Vec<(LocationId, Location)>,
    #[serde(skip)]
    sku_index: AHashMap<SkuId, SkuIdx>,
    #[serde(skip)]
    location_index: AHashMap<LocationId, LocIdx>,
}

impl Catalog {
    /// Rebuilds the lookup maps after deserialization.
    pub fn reindex(&mut self) {
        self.sku_index = self
            .skus
            .iter()
            .enumerate()
            .map(|(i, (id, _))| (id.clone(), i as SkuIdx))
            .collect();
        self.location_index = self
            .locations
            .iter()
            .enumerate()
            .map(|(i, (id, _))| (id.clone(), i as LocIdx))
            .collect();
    }

    pub fn put_sku(&mut self, id: SkuId, sku: Sku) -> SkuIdx {
        if let Some(&i) = self.sku_index.get(&id) {
            self.skus[i as usize].1 = sku;
            return i;
        }
        let i = self.skus.len() as SkuIdx;
        self.sku_index.insert(id.clone(), i);
        self.skus.push((id, sku));
        i
    }

    pub fn put_location(&mut self, id: LocationId, location: Location) -> LocIdx {
        if let Some(&i) = self.location_index.get(&id) {
            self.locations[i as usize].1 = location;
            return i;
        }
        let i = self.locations.len() as LocIdx;
        self.location_index.insert(id.clone(), i);
        self.locations.push((id, location));
        i
    }

    pub fn sku_idx(&self, id: &str) -> Option<SkuIdx> {
        self.sku_index.get(id).copied()
    }
    pub fn location_idx(&self, id: &str) -> Option<LocIdx> {
        self.location_index.get(id).copied()
    }
    pub fn sku(&self, idx: SkuIdx) -> Option<&(SkuId, Sku)> {
        self.skus.get(idx as usize)
    }
    pub fn location(&self, idx: LocIdx) -> Option<&(LocationId, Location)> {
        self.locations.get(idx as usize)
    }
    pub fn sku_by_id(&self, id: &str) -> Option<&Sku> {
        self.sku_idx(id).and_then(|i| self.sku(i)).map(|(_, s)| s)
    }
    pub fn location_by_id(&self, id: &str) -> Option<&Location> {
        self.location_idx(id)
            .and_then(|i| self.location(i))
            .map(|(_, l)| l)
    }
    pub fn locations(&self) -> impl Iterator<Item = &(LocationId, Location)> {
        self.locations.iter()
    }
    pub fn sku_count(&self) -> usize {
        self.skus.len()
    }
    pub fn location_count(&self) -> usize {
        self.locations.len()
    }
}

// Borrowing a `SkuId` as `str` lets the maps be queried with a `&str`.
impl std::borrow::Borrow<str> for SkuId {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}
impl std::borrow::Borrow<str> for LocationId {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sku_journaled_before_dimensions_and_ship_alone_still_decodes() {
        // The journal's shape of a SKU before those fields: an array of
        // three (rmp-serde writes structs as arrays).
        let old = rmp_serde::to_vec(&("Sofa", Some(52_000u32), None::<u32>)).expect("encode");
        let sku: Sku = rmp_serde::from_slice(&old).expect("decodes with defaults");
        assert_eq!(
            sku,
            Sku {
                weight_g: Some(52_000),
                ..Sku::named("Sofa")
            }
        );
        let new = Sku {
            dimensions_mm: Some([2100, 900, 800]),
            ship_alone: true,
            ..Sku::named("Sofa")
        };
        let back: Sku =
            rmp_serde::from_slice(&rmp_serde::to_vec(&new).expect("encode")).expect("decode");
        assert_eq!(back, new);
    }
}
