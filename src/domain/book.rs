//! A book of things kept by id that open and close (transfers, incoming
//! supply): the engine's and replay's, one type so that both keep and
//! forget alike (their contents must match for a follower's copy and a
//! snapshot to answer what the leader does).
//!
//! Bounded: closed entries are forgotten `BOOK_CLOSED_KEPT_MS` after
//! their last step, looked for every `BOOK_SWEEP_EVERY` inserts and
//! whenever the book holds more than `BOOK_MAX` (a pure function of the
//! inserts in journal order, so every copy forgets the same ones); a book
//! with no room even after that refuses a new entry (`has_room`).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use super::ids::SkuId;
use super::TimeMs;
use crate::limits::{BOOK_CLOSED_KEPT_MS, BOOK_MAX, BOOK_SWEEP_EVERY};

/// What a book needs of what it keeps.
pub trait Kept {
    fn id(&self) -> &str;
    /// Still to move: never forgotten.
    fn is_open(&self) -> bool;
    fn created_ms(&self) -> TimeMs;
    fn updated_ms(&self) -> TimeMs;
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Book<T>(BTreeMap<String, T>);

impl<T> Default for Book<T> {
    fn default() -> Self {
        Book(BTreeMap::new())
    }
}

/// Closed long enough before `now` to be forgotten.
fn forgettable<T: Kept>(t: &T, now: TimeMs) -> bool {
    !t.is_open() && t.updated_ms() < now - BOOK_CLOSED_KEPT_MS
}

impl<T: Kept> Book<T> {
    pub fn get(&self, id: &str) -> Option<&T> {
        self.0.get(id)
    }

    pub fn get_mut(&mut self, id: &str) -> Option<&mut T> {
        self.0.get_mut(id)
    }

    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.0.values()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Room for one more at `now`: under `BOOK_MAX`, or an entry the
    /// insert will forget.
    pub fn has_room(&self, now: TimeMs) -> bool {
        self.0.len() < BOOK_MAX || self.0.values().any(|t| forgettable(t, now))
    }

    /// Keeps a new entry, made at `t.created_ms()` (the decider refuses a
    /// known id), forgetting long-closed ones every `BOOK_SWEEP_EVERY`
    /// inserts and whenever it holds more than `BOOK_MAX`.
    pub fn insert(&mut self, t: T) {
        let now = t.created_ms();
        self.0.insert(t.id().to_string(), t);
        let n = self.0.len();
        if n.is_multiple_of(BOOK_SWEEP_EVERY) || n > BOOK_MAX {
            self.0.retain(|_, t| !forgettable(t, now));
        }
    }

    /// Keeps `t` as it is after a step (new: as `insert`, which may
    /// forget long-closed entries).
    pub fn keep(&mut self, t: T) {
        match self.0.get_mut(t.id()) {
            Some(kept) => *kept = t,
            None => self.insert(t),
        }
    }

    /// Up to `limit` entries `wants` takes, in id order after `after`,
    /// and the id to go on after if there may be more.
    pub fn page(
        &self,
        wants: impl Fn(&T) -> bool,
        after: Option<&str>,
        limit: usize,
    ) -> (Vec<&T>, Option<String>) {
        use std::ops::Bound::{Excluded, Unbounded};
        let from = after.map_or(Unbounded, |a| Excluded(a.to_string()));
        let mut got: Vec<&T> = self
            .0
            .range((from, Unbounded))
            .map(|(_, t)| t)
            .filter(|t| wants(t))
            .take(limit + 1)
            .collect();
        let more = got.len() > limit;
        got.truncate(limit);
        let next = more
            .then(|| got.last().map(|t| t.id().to_string()))
            .flatten();
        (got, next)
    }
}

/// Why the lines of a new entry are refused (422, naming the member).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinesInvalid {
    NoLines,
    TwiceNamed(SkuId),
    ZeroQty(SkuId),
}

/// A new entry's lines: at least one, each SKU once with a unit or more.
pub fn check_lines(lines: &[(SkuId, u32)]) -> Result<(), LinesInvalid> {
    if lines.is_empty() {
        return Err(LinesInvalid::NoLines);
    }
    let mut seen = std::collections::BTreeSet::new();
    for (sku, qty) in lines {
        if !seen.insert(sku) {
            return Err(LinesInvalid::TwiceNamed(sku.clone()));
        }
        if *qty == 0 {
            return Err(LinesInvalid::ZeroQty(sku.clone()));
        }
    }
    Ok(())
}

/// Why a delivery's lines are refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineRefused {
    /// A SKU the entry does not carry.
    Unknown(SkuId),
    /// A SKU named twice.
    Twice(SkuId),
}

/// What a delivery `got` brings of each of `carried` (an entry's lines'
/// SKUs, in order): a SKU not named brings none.
pub fn per_line(carried: &[&SkuId], got: &[(SkuId, u32)]) -> Result<Vec<u32>, LineRefused> {
    let mut out: Vec<Option<u32>> = vec![None; carried.len()];
    for (sku, qty) in got {
        let i = carried
            .iter()
            .position(|c| *c == sku)
            .ok_or_else(|| LineRefused::Unknown(sku.clone()))?;
        if out[i].is_some() {
            return Err(LineRefused::Twice(sku.clone()));
        }
        out[i] = Some(*qty);
    }
    Ok(out.into_iter().map(|q| q.unwrap_or(0)).collect())
}
