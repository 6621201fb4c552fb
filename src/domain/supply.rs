//! Incoming supply (issue 20): a purchase order or an advance shipping
//! notice, expected at one location by a time. Its units show as
//! `incoming` on the location's records until they are received (they
//! join on_hand, in one delivery or several) or the rest is cancelled.
//!
//! Pure: a supply's decisions and the stock each step moves. Whoever
//! keeps supplies decides with `Supply::decide` and journals the step;
//! replay applies it with `Supply::apply`, never deciding again. Units
//! are accounted by construction: a line's units come in as `qty`, leave
//! `incoming` as they are received (never more than were still to come)
//! or when the rest is cancelled, and every unit received joins on_hand,
//! more than ordered included (a supplier's over-delivery is on the
//! shelf all the same).

use serde::{Deserialize, Serialize};

use super::book::{check_lines, per_line, Book, Kept, LineRefused, LinesInvalid};
use super::ids::{LocationId, SkuId};
use super::stock::StockDelta;
use super::TimeMs;
use crate::limits::{STOCK_MAX, SUPPLY_RECEIPTS_MAX};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SupplyStatus {
    /// Units still to come.
    Expected,
    /// Every line received in full.
    Received,
    /// What was still to come will not.
    Cancelled,
}

impl SupplyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Expected => "expected",
            Self::Received => "received",
            Self::Cancelled => "cancelled",
        }
    }
}

/// One SKU of a supply: the units ordered, and those received so far.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SupplyLine {
    pub sku: SkuId,
    pub qty: u32,
    pub received: u32,
}

impl SupplyLine {
    /// Units still to come.
    pub fn remaining(&self) -> u32 {
        self.qty.saturating_sub(self.received)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Supply {
    pub id: String,
    pub location: LocationId,
    /// When its units are expected (an ETA).
    pub expected_ms: TimeMs,
    pub lines: Vec<SupplyLine>,
    pub status: SupplyStatus,
    pub created_ms: TimeMs,
    pub updated_ms: TimeMs,
    /// Its deliveries, in order (at most `SUPPLY_RECEIPTS_MAX`).
    pub receipts: Vec<SupplyReceipt>,
}

/// One delivery of a supply: what arrived, when, under which key (a
/// client's retry under the same key is answered, not applied again).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SupplyReceipt {
    pub key: Option<String>,
    pub lines: Vec<(SkuId, u32)>,
    pub at_ms: TimeMs,
}

/// A step asked of a supply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SupplyStep {
    /// A delivery: what arrived of each SKU named, under a key if any.
    Receive(Vec<(SkuId, u32)>, Option<String>),
    /// The rest will not come.
    Cancel,
}

/// Why a supply cannot be expected (422, naming the member).
pub type SupplyInvalid = LinesInvalid;

/// Why a step is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SupplyRefused {
    /// No supply has this id (404).
    NotFound,
    /// Not in this status (409): a receipt or a cancel of a supply
    /// received in full or cancelled.
    NotNow(SupplyStatus),
    /// A delivery names a SKU the supply does not carry (422).
    UnknownSku(SkuId),
    /// A delivery names a SKU twice (422).
    TwiceNamed(SkuId),
    /// A delivery of no units at all (422).
    Nothing,
    /// Its key named another delivery (422).
    KeyReused,
    /// `SUPPLY_RECEIPTS_MAX` deliveries already (409).
    TooManyReceipts,
}

/// What a step decided: to apply, or the repeat of a delivery already
/// applied under its key (nothing to write).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SupplyDecision {
    Apply,
    Repeat,
}

/// A record a supply's step moves (at the supply's location): its
/// on_hand and its incoming units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupplyMove {
    pub sku: SkuId,
    pub on_hand: i64,
    pub incoming: i64,
}

impl SupplyMove {
    /// The change of its record.
    pub fn delta(&self) -> StockDelta {
        StockDelta {
            on_hand: self.on_hand,
            incoming: self.incoming,
            ..StockDelta::default()
        }
    }
}

impl Supply {
    /// A supply as expected: each SKU once with at least one unit.
    pub fn expect(
        id: String,
        location: LocationId,
        expected_ms: TimeMs,
        lines: Vec<(SkuId, u32)>,
        now: TimeMs,
    ) -> Result<Supply, SupplyInvalid> {
        check_lines(&lines)?;
        Ok(Supply {
            id,
            location,
            expected_ms,
            lines: lines
                .into_iter()
                .map(|(sku, qty)| SupplyLine {
                    sku,
                    qty,
                    received: 0,
                })
                .collect(),
            status: SupplyStatus::Expected,
            created_ms: now,
            updated_ms: now,
            receipts: Vec::new(),
        })
    }

    /// The records it moves as it is expected: every line incoming.
    pub fn expected_moves(&self) -> Vec<SupplyMove> {
        self.lines
            .iter()
            .map(|l| SupplyMove {
                sku: l.sku.clone(),
                on_hand: 0,
                incoming: i64::from(l.qty),
            })
            .collect()
    }

    /// Decides a step. A delivery under a key already applied is a
    /// repeat (the same lines) or refused (others), whatever the status;
    /// otherwise only while units are expected: a delivery names SKUs of
    /// the supply, each once, at least one unit in all, and several may
    /// come.
    pub fn decide(&self, step: &SupplyStep) -> Result<SupplyDecision, SupplyRefused> {
        if let SupplyStep::Receive(got, Some(key)) = step {
            let before = self.receipts.iter().find(|r| r.key.as_ref() == Some(key));
            if let Some(r) = before {
                let asked: Vec<(SkuId, u32)> =
                    got.iter().filter(|(_, q)| *q > 0).cloned().collect();
                return if r.lines == asked {
                    Ok(SupplyDecision::Repeat)
                } else {
                    Err(SupplyRefused::KeyReused)
                };
            }
        }
        if *step == SupplyStep::Cancel && self.status == SupplyStatus::Cancelled {
            // A cancel asked again (its answer lost): answered.
            return Ok(SupplyDecision::Repeat);
        }
        if self.status != SupplyStatus::Expected {
            return Err(SupplyRefused::NotNow(self.status));
        }
        if let SupplyStep::Receive(got, _) = step {
            self.delivered(got)?;
            if got.iter().all(|(_, q)| *q == 0) {
                return Err(SupplyRefused::Nothing);
            }
            if self.receipts.len() >= SUPPLY_RECEIPTS_MAX {
                return Err(SupplyRefused::TooManyReceipts);
            }
        }
        Ok(SupplyDecision::Apply)
    }

    /// What a delivery brings of each line, in the lines' order.
    fn delivered(&self, got: &[(SkuId, u32)]) -> Result<Vec<u32>, SupplyRefused> {
        let carried: Vec<&SkuId> = self.lines.iter().map(|l| &l.sku).collect();
        per_line(&carried, got).map_err(|e| match e {
            LineRefused::Unknown(s) => SupplyRefused::UnknownSku(s),
            LineRefused::Twice(s) => SupplyRefused::TwiceNamed(s),
        })
    }

    /// The records a step moves, decided: a delivery's units join on_hand
    /// and leave incoming as far as they were still to come; a cancel
    /// takes what was still to come out of incoming.
    pub fn moves(&self, step: &SupplyStep) -> Vec<SupplyMove> {
        match step {
            SupplyStep::Receive(got, _) => {
                let brought = self.delivered(got).unwrap_or_default();
                self.lines
                    .iter()
                    .zip(brought)
                    .filter(|(_, q)| *q > 0)
                    .map(|(l, q)| SupplyMove {
                        sku: l.sku.clone(),
                        on_hand: i64::from(q),
                        incoming: -i64::from(q.min(l.remaining())),
                    })
                    .collect()
            }
            SupplyStep::Cancel => self
                .lines
                .iter()
                .filter(|l| l.remaining() > 0)
                .map(|l| SupplyMove {
                    sku: l.sku.clone(),
                    on_hand: 0,
                    incoming: -i64::from(l.remaining()),
                })
                .collect(),
        }
    }

    /// Applies a step decided earlier (replay never decides again): a
    /// delivery adds to what each line received, and the supply is
    /// received once nothing remains; a cancel closes it.
    pub fn apply(&mut self, step: &SupplyStep, now: TimeMs) {
        match step {
            SupplyStep::Receive(got, key) => {
                if let Ok(brought) = self.delivered(got) {
                    for (l, q) in self.lines.iter_mut().zip(brought) {
                        l.received = l.received.saturating_add(q);
                    }
                }
                // Lines of no units are not kept (the key compares the
                // delivery as asked: `decide`).
                self.receipts.push(SupplyReceipt {
                    key: key.clone(),
                    lines: got.iter().filter(|(_, q)| *q > 0).cloned().collect(),
                    at_ms: now,
                });
                if self.lines.iter().all(|l| l.remaining() == 0) {
                    self.status = SupplyStatus::Received;
                }
            }
            SupplyStep::Cancel => self.status = SupplyStatus::Cancelled,
        }
        self.updated_ms = now;
    }

    /// Its units still to come, per SKU (none once closed).
    pub fn incoming(&self) -> impl Iterator<Item = (&SkuId, u32)> {
        let open = self.status == SupplyStatus::Expected;
        self.lines
            .iter()
            .filter(move |l| open && l.remaining() > 0)
            .map(|l| (&l.sku, l.remaining()))
    }
}

/// Every supply by id (`book`).
pub type Supplies = Book<Supply>;

impl Kept for Supply {
    fn id(&self) -> &str {
        &self.id
    }
    fn is_open(&self) -> bool {
        self.status == SupplyStatus::Expected
    }
    fn created_ms(&self) -> TimeMs {
        self.created_ms
    }
    fn updated_ms(&self) -> TimeMs {
        self.updated_ms
    }
}

/// What announcing a supply decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Announced {
    /// To journal and keep.
    New(Supply),
    /// Kept already as announced: nothing to write.
    Repeat(Supply),
}

/// Why a supply cannot be announced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnnounceRefused {
    Invalid(SupplyInvalid),
    /// Another supply has this id (409).
    Exists,
    /// The book has no room (`Book::has_room`, 503).
    Full,
    /// The record's incoming units would pass `STOCK_MAX` (422).
    TooMuch(SkuId),
}

impl Book<Supply> {
    /// Decides an announced supply: a new one, or the repeat of one kept
    /// (the same place, time and lines: a client's retry).
    pub fn decide_expect(
        &self,
        id: &str,
        location: LocationId,
        expected_ms: TimeMs,
        lines: Vec<(SkuId, u32)>,
        now: TimeMs,
    ) -> Result<Announced, AnnounceRefused> {
        if let Some(s) = self.get(id) {
            let same = s.location == location
                && s.expected_ms == expected_ms
                && s.lines.len() == lines.len()
                && s.lines
                    .iter()
                    .zip(&lines)
                    .all(|(l, (k, q))| &l.sku == k && l.qty == *q);
            return if same {
                Ok(Announced::Repeat(s.clone()))
            } else {
                Err(AnnounceRefused::Exists)
            };
        }
        if !self.has_room(now) {
            return Err(AnnounceRefused::Full);
        }
        // A record's incoming units stay within STOCK_MAX, as every
        // figure of it does (a clamped figure would no longer be what the
        // book says is to come).
        for (sku, qty) in &lines {
            let coming: i64 = self
                .values()
                .filter(|s| s.location == location)
                .flat_map(|s| s.incoming())
                .filter(|(k, _)| *k == sku)
                .map(|(_, q)| i64::from(q))
                .sum();
            if coming + i64::from(*qty) > STOCK_MAX {
                return Err(AnnounceRefused::TooMuch(sku.clone()));
            }
        }
        Supply::expect(id.to_string(), location, expected_ms, lines, now)
            .map(Announced::New)
            .map_err(AnnounceRefused::Invalid)
    }

    /// The earliest time units of `sku` are still expected at `location`
    /// (0: none are), with `changed` in place of the supply of its id
    /// (or beside the others, if new): the book as it will be after a
    /// step, decided before it is taken.
    /// When the supply still to come of `sku` at `location` that
    /// first-in first-out gives to `units` sold ahead after `after` others
    /// is expected: the supplies taken in the order they are expected, the
    /// one whose units reach `after + units`; past them all (supply
    /// cancelled after units were sold against it), the last one's.
    /// `None`: none is expected.
    pub fn fifo_eta(
        &self,
        sku: &SkuId,
        location: &LocationId,
        after: u32,
        units: u32,
    ) -> Option<TimeMs> {
        let mut coming: Vec<(TimeMs, &str, u32)> = self
            .values()
            .filter(|s| &s.location == location)
            .filter_map(|s| {
                let q: u32 = s
                    .incoming()
                    .filter(|(k, _)| *k == sku)
                    .map(|(_, q)| q)
                    .sum();
                (q > 0).then_some((s.expected_ms, s.id.as_str(), q))
            })
            .collect();
        coming.sort_unstable();
        let need = u64::from(after) + u64::from(units);
        let mut got = 0u64;
        for &(at, _, q) in &coming {
            got += u64::from(q);
            if got >= need {
                return Some(at);
            }
        }
        coming.last().map(|c| c.0)
    }

    pub fn eta(&self, sku: &SkuId, location: &LocationId, changed: Option<&Supply>) -> TimeMs {
        let others = self
            .values()
            .filter(|s| changed.is_none_or(|c| c.id != s.id));
        others
            .chain(changed)
            .filter(|s| &s.location == location)
            .filter(|s| s.incoming().any(|(k, _)| k == sku))
            .map(|s| s.expected_ms)
            .min()
            .unwrap_or(0)
    }

    /// The moves of a step that leaves the supply as `changed`, each with
    /// its record's earliest time expected then.
    pub fn with_eta(
        &self,
        changed: &Supply,
        moves: Vec<SupplyMove>,
    ) -> Vec<(SkuId, LocationId, StockDelta)> {
        moves
            .into_iter()
            .map(|m| {
                let mut d = m.delta();
                d.incoming_eta = Some(self.eta(&m.sku, &changed.location, Some(changed)));
                (m.sku, changed.location.clone(), d)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// First-in first-out: the supplies in the order they are expected,
    /// each giving its units to those sold ahead before.
    #[test]
    fn the_fifo_eta_is_the_supply_that_reaches_the_units() {
        let mut book = Supplies::default();
        let loc = LocationId::parse("S1").expect("id");
        let a = SkuId::parse("A").expect("id");
        let b = SkuId::parse("B").expect("id");
        for (id, at, sku, qty) in [("P1", 600, &a, 5), ("P2", 200, &a, 3), ("P3", 100, &b, 9)] {
            let lines = vec![(sku.clone(), qty)];
            let s = Supply::expect(id.into(), loc.clone(), at, lines, 0).expect("valid");
            book.insert(s);
        }
        assert_eq!(book.fifo_eta(&a, &loc, 0, 3), Some(200));
        assert_eq!(book.fifo_eta(&a, &loc, 2, 2), Some(600));
        assert_eq!(book.fifo_eta(&a, &loc, 7, 1), Some(600));
        assert_eq!(
            book.fifo_eta(&a, &loc, 8, 4),
            Some(600),
            "past them all: the last"
        );
        assert_eq!(book.fifo_eta(&b, &loc, 0, 1), Some(100));
        let other = LocationId::parse("S2").expect("id");
        assert_eq!(book.fifo_eta(&a, &other, 0, 1), None);
    }

    use proptest::prelude::*;

    fn sku(i: u32) -> SkuId {
        SkuId::parse(&format!("A{i}")).expect("id")
    }

    fn supply(lines: &[(u32, u32)]) -> Supply {
        let lines = lines.iter().map(|(s, q)| (sku(*s), *q)).collect();
        let at = LocationId::parse("DC").expect("id");
        Supply::expect("PO-1".into(), at, 10, lines, 0).expect("valid")
    }

    #[test]
    fn deliveries_add_up_until_nothing_remains() {
        let mut s = supply(&[(1, 5), (2, 3)]);
        let none = SupplyStep::Receive(vec![(sku(1), 0)], None);
        assert_eq!(s.decide(&none), Err(SupplyRefused::Nothing));
        let stray = SupplyStep::Receive(vec![(sku(9), 1)], None);
        assert_eq!(s.decide(&stray), Err(SupplyRefused::UnknownSku(sku(9))));
        let first = SupplyStep::Receive(vec![(sku(1), 4)], Some("k1".into()));
        assert_eq!(s.decide(&first), Ok(SupplyDecision::Apply));
        assert_eq!(
            s.moves(&first),
            [SupplyMove {
                sku: sku(1),
                on_hand: 4,
                incoming: -4
            }]
        );
        s.apply(&first, 1);
        assert_eq!(s.status, SupplyStatus::Expected);
        // The same delivery again under its key: answered, not applied;
        // another under it refused.
        assert_eq!(s.decide(&first), Ok(SupplyDecision::Repeat));
        let other = SupplyStep::Receive(vec![(sku(1), 3)], Some("k1".into()));
        assert_eq!(s.decide(&other), Err(SupplyRefused::KeyReused));
        assert_eq!(
            s.incoming().collect::<Vec<_>>(),
            [(&sku(1), 1), (&sku(2), 3)]
        );
        // One more than ordered of A1: on the shelf all the same; only
        // the one still to come leaves incoming.
        let rest = SupplyStep::Receive(vec![(sku(1), 2), (sku(2), 3)], None);
        assert_eq!(s.moves(&rest)[0].incoming, -1);
        assert_eq!(s.moves(&rest)[0].on_hand, 2);
        s.apply(&rest, 2);
        assert_eq!(s.status, SupplyStatus::Received);
        assert_eq!(
            s.decide(&rest),
            Err(SupplyRefused::NotNow(SupplyStatus::Received))
        );
        assert_eq!(s.incoming().count(), 0);

        let mut c = supply(&[(1, 5)]);
        c.apply(&SupplyStep::Receive(vec![(sku(1), 2)], None), 1);
        assert_eq!(c.moves(&SupplyStep::Cancel)[0].incoming, -3);
        c.apply(&SupplyStep::Cancel, 2);
        // A cancel asked again (its answer lost) is answered; a delivery
        // after it refused.
        assert_eq!(c.decide(&SupplyStep::Cancel), Ok(SupplyDecision::Repeat));
        let late = SupplyStep::Receive(vec![(sku(1), 1)], None);
        assert_eq!(
            c.decide(&late),
            Err(SupplyRefused::NotNow(SupplyStatus::Cancelled))
        );
        // A received supply is not cancelled.
        assert_eq!(
            s.decide(&SupplyStep::Cancel),
            Err(SupplyRefused::NotNow(SupplyStatus::Received))
        );
    }

    proptest! {
        /// Units are accounted: incoming is what is still to come while
        /// expected and nothing once closed; every unit received joins
        /// on_hand; incoming never goes below zero.
        #[test]
        fn incoming_is_what_is_still_to_come(
            lines in prop::collection::btree_map(0..10u32, 1..40u32, 1..5),
            steps in prop::collection::vec(prop::option::of(prop::collection::vec((0..12u32, 0..30u32), 1..4)), 0..8),
        ) {
            let lines: Vec<(u32, u32)> = lines.into_iter().collect();
            let mut s = supply(&lines);
            let (mut incoming, mut on_hand, mut received) = (0i64, 0i64, 0i64);
            for m in s.expected_moves() {
                incoming += m.incoming;
            }
            for step in steps {
                let step = match step {
                    Some(got) => SupplyStep::Receive(got.into_iter().map(|(k, q)| (sku(k), q)).collect(), None),
                    None => SupplyStep::Cancel,
                };
                if s.decide(&step) != Ok(SupplyDecision::Apply) {
                    continue;
                }
                if let SupplyStep::Receive(got, _) = &step {
                    received += got.iter().map(|(_, q)| i64::from(*q)).sum::<i64>();
                }
                for m in s.moves(&step) {
                    incoming += m.incoming;
                    on_hand += m.on_hand;
                    prop_assert!(incoming >= 0);
                }
                s.apply(&step, 1);
                let still: i64 = s.incoming().map(|(_, q)| i64::from(q)).sum();
                prop_assert_eq!(incoming, still);
                prop_assert_eq!(on_hand, received);
            }
        }
    }
}
