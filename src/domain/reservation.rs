//! A reservation: its lines, its status and the transitions between statuses.
//!
//! The reservation book alone decides a transition, so a confirm and an expiry
//! can never both win: each is a pure function of the current status and `now`.

use serde::{Deserialize, Serialize};

use super::ids::{LocationId, ReservationId, SkuId};
use super::stock::StockDelta;
use super::TimeMs;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Held,
    Confirmed,
    Released,
    Expired,
    Fulfilled,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Held => "held",
            Status::Confirmed => "confirmed",
            Status::Released => "released",
            Status::Expired => "expired",
            Status::Fulfilled => "fulfilled",
        }
    }
    /// Held and confirmed lines count in `reserved`.
    pub fn is_live(self) -> bool {
        matches!(self, Status::Held | Status::Confirmed)
    }
}

/// One line of a reservation: `qty` held of `requested` (equal unless the
/// cart allowed partial holds); of `qty`, `backordered` units are sold
/// against incoming supply and not arrived yet (the rest are on hand).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    pub sku: SkuId,
    pub location: LocationId,
    pub qty: u32,
    pub requested: u32,
    /// Added later (default): none in older records.
    #[serde(default)]
    pub backordered: u32,
    /// When the supply the backordered units wait for was expected as
    /// they were held (0: none, or not known).
    #[serde(default)]
    pub eta_ms: TimeMs,
}

impl Line {
    /// Its units held on hand (counted in the record's `reserved`).
    pub fn on_hand(&self) -> i64 {
        i64::from(self.qty) - i64::from(self.backordered)
    }

    /// Its record's change when it stops being held: what it held on
    /// hand and against supply, given back.
    pub fn released(&self) -> StockDelta {
        self.held().hold_undone()
    }

    /// Its record's change when it is held.
    pub fn held(&self) -> StockDelta {
        StockDelta {
            reserved: self.on_hand(),
            backordered: i64::from(self.backordered),
            ..StockDelta::default()
        }
    }
}

/// `units` of a line of a reservation sold against supply arrived: they
/// are reserved units on hand now (`SupplyFact::Received`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conversion {
    pub reservation: ReservationId,
    pub sku: SkuId,
    pub units: u32,
}

/// The record's change of `units` of backorder converted: reserved on hand.
pub fn converted_delta(units: u32) -> StockDelta {
    StockDelta {
        reserved: i64::from(units),
        backordered: -i64::from(units),
        ..StockDelta::default()
    }
}

/// Decides what a delivery of `arrived` (units per SKU) at `location`
/// converts: the units of the reservations' lines there not arrived yet,
/// reservations in `order` (first in, first converted), each as far as
/// what arrived reaches. Never more of a SKU than arrived.
pub fn decide_conversions<'a>(
    location: &LocationId,
    arrived: &[(SkuId, u32)],
    order: impl IntoIterator<Item = &'a Reservation>,
) -> Vec<Conversion> {
    let mut left: Vec<(&SkuId, u32)> = Vec::new();
    for (sku, q) in arrived {
        match left.iter_mut().find(|(s, _)| *s == sku) {
            Some(e) => e.1 += q,
            None => left.push((sku, *q)),
        }
    }
    let mut out: Vec<Conversion> = Vec::new();
    for r in order.into_iter().filter(|r| r.status.is_live()) {
        for l in r.lines.iter().filter(|l| &l.location == location) {
            let Some(e) = left.iter_mut().find(|(s, _)| *s == &l.sku) else {
                continue;
            };
            let k = e.1.min(l.backordered);
            if k == 0 {
                continue;
            }
            e.1 -= k;
            match out
                .iter_mut()
                .find(|c| c.reservation == r.id && c.sku == l.sku)
            {
                Some(c) => c.units += k,
                None => out.push(Conversion {
                    reservation: r.id.clone(),
                    sku: l.sku.clone(),
                    units: k,
                }),
            }
        }
    }
    out
}

/// Adds to a delivery's record changes (`Supplies::with_eta`, one per
/// SKU at one location) what its conversions change there.
pub fn add_conversions(
    deltas: &mut Vec<(SkuId, LocationId, StockDelta)>,
    location: &LocationId,
    converted: &[Conversion],
) {
    for c in converted {
        let d = converted_delta(c.units);
        match deltas
            .iter_mut()
            .find(|(s, l, _)| s == &c.sku && l == location)
        {
            Some(e) => {
                e.2.reserved += d.reserved;
                e.2.backordered += d.backordered;
            }
            None => deltas.push((c.sku.clone(), location.clone(), d)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    pub id: ReservationId,
    pub lines: Vec<Line>,
    pub status: Status,
    pub created_ms: TimeMs,
    pub expires_at_ms: TimeMs,
    /// When it reached its current status.
    pub updated_ms: TimeMs,
}

/// A transition the book may be asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Confirm,
    Release,
    Fulfil,
    Extend { ttl_s: u64 },
    Expire,
}

/// The reservation is not in a status that allows the transition (409).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotHeld(pub Status);

/// What a transition decided: the new status and expiry, or nothing to do
/// (idempotent repeats such as confirming a confirmed reservation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Change {
        status: Status,
        expires_at_ms: TimeMs,
    },
    Unchanged,
}

/// When a hold taken at `now` for `ttl_s` seconds expires.
pub fn expires_at(now: TimeMs, ttl_s: u64) -> TimeMs {
    now + ttl_s as i64 * 1000
}

impl Reservation {
    /// A reservation just held.
    pub fn held(
        id: ReservationId,
        lines: Vec<Line>,
        created_ms: TimeMs,
        expires_at_ms: TimeMs,
    ) -> Self {
        Reservation {
            id,
            lines,
            status: Status::Held,
            created_ms,
            expires_at_ms,
            updated_ms: created_ms,
        }
    }

    /// Decides a transition at time `now`. Pure.
    pub fn decide(&self, t: Transition, now: TimeMs) -> Result<Decision, NotHeld> {
        use Status::*;
        let change = |status| Decision::Change {
            status,
            expires_at_ms: self.expires_at_ms,
        };
        match (t, self.status) {
            // A held reservation whose time has passed is as good as expired:
            // the expiry tick may just not have run yet.
            (Transition::Confirm | Transition::Extend { .. }, Held) if self.is_due(now) => {
                Err(NotHeld(Expired))
            }
            (Transition::Confirm, Held) => Ok(change(Confirmed)),
            (Transition::Confirm, Confirmed) => Ok(Decision::Unchanged),
            (Transition::Confirm, s) => Err(NotHeld(s)),
            (Transition::Release, Held | Confirmed) => Ok(change(Released)),
            (Transition::Release, Released | Expired) => Ok(Decision::Unchanged),
            (Transition::Release, s @ Fulfilled) => Err(NotHeld(s)),
            (Transition::Fulfil, Confirmed) => Ok(change(Fulfilled)),
            (Transition::Fulfil, s) => Err(NotHeld(s)),
            (Transition::Extend { ttl_s }, Held) => Ok(Decision::Change {
                status: Held,
                expires_at_ms: expires_at(now, ttl_s),
            }),
            (Transition::Extend { .. }, s) => Err(NotHeld(s)),
            (Transition::Expire, Held) if self.is_due(now) => Ok(change(Expired)),
            (Transition::Expire, s) => Err(NotHeld(s)),
        }
    }

    pub fn is_due(&self, now: TimeMs) -> bool {
        self.status == Status::Held && self.expires_at_ms <= now
    }

    /// Units of its lines sold against supply not arrived yet: while
    /// any are, it cannot be fulfilled.
    pub fn backordered(&self) -> u32 {
        self.lines.iter().map(|l| l.backordered).sum()
    }

    /// A line of a preorder SKU not released at `now` (`unreleased`).
    pub fn unreleased(&self, c: &super::catalog::Catalog, now: TimeMs) -> Option<(SkuId, TimeMs)> {
        unreleased(&self.lines, c, now)
    }

    /// Converts `units` of its line of `sku` at `location` (backordered
    /// units arrived); the units it took.
    pub fn convert(&mut self, sku: &SkuId, location: &LocationId, units: u32) -> u32 {
        let mut left = units;
        for l in &mut self.lines {
            if &l.sku == sku && &l.location == location {
                let k = left.min(l.backordered);
                l.backordered -= k;
                left -= k;
            }
        }
        units - left
    }

    /// Sets the units not arrived of `parts` (a split `decide_split`
    /// allowed) from this reservation as it is now: each record's go to
    /// its parts' lines in order, as far as their quantity. The book does
    /// it as it journals the split, so a conversion between an order's
    /// reading of the lines and its split changes nothing.
    pub fn spread_backorders(&self, parts: &mut [Vec<Line>]) {
        let mut left: Vec<(&SkuId, &LocationId, u32, TimeMs)> = Vec::new();
        for l in self.lines.iter().filter(|l| l.backordered > 0) {
            match left
                .iter_mut()
                .find(|e| e.0 == &l.sku && e.1 == &l.location)
            {
                Some(e) => {
                    e.2 += l.backordered;
                    e.3 = e.3.max(l.eta_ms);
                }
                None => left.push((&l.sku, &l.location, l.backordered, l.eta_ms)),
            }
        }
        for l in parts.iter_mut().flatten() {
            let e = left
                .iter_mut()
                .find(|e| e.0 == &l.sku && e.1 == &l.location);
            let (k, eta) = e.map_or((0, 0), |e| {
                let k = e.2.min(l.qty);
                e.2 -= k;
                (k, e.3)
            });
            l.backordered = k;
            l.eta_ms = if k > 0 { eta } else { 0 };
        }
    }

    /// The stock deltas of moving from the current status to `to`, per line.
    pub fn stock_effects(&self, to: Status) -> impl Iterator<Item = (&Line, StockDelta)> + '_ {
        let from_live = self.status.is_live();
        self.lines.iter().filter_map(move |l| {
            let d = match to {
                Status::Released | Status::Expired if from_live => l.released(),
                // A line with units not arrived is never fulfilled
                // (`TransitionRefused::Backordered`): all on hand.
                Status::Fulfilled if from_live => StockDelta {
                    on_hand: -l.on_hand(),
                    ..l.released()
                },
                _ => return None,
            };
            Some((l, d))
        })
    }
}

/// Why a held reservation cannot be split as asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SplitRefused {
    /// Not held (released, expired, confirmed or fulfilled): 409.
    NotHeld(Status),
    /// The parts do not hold exactly the reservation's lines.
    LinesDiffer,
}

impl Reservation {
    /// Decides turning this held reservation into `parts` (each a list of
    /// lines) at `now`: every unit it holds goes to exactly one part, by
    /// SKU and location. Pure.
    pub fn decide_split(&self, parts: &[Vec<Line>], now: TimeMs) -> Result<(), SplitRefused> {
        if self.status != Status::Held || self.is_due(now) {
            let s = if self.status == Status::Held {
                Status::Expired
            } else {
                self.status
            };
            return Err(SplitRefused::NotHeld(s));
        }
        // Every unit goes to one part (those not arrived: `spread_backorders`).
        let key = |l: &Line| (l.sku.clone(), l.location.clone());
        let mut want: std::collections::BTreeMap<(SkuId, LocationId), i64> = Default::default();
        for l in &self.lines {
            *want.entry(key(l)).or_default() += i64::from(l.qty);
        }
        for l in parts.iter().flatten() {
            *want.entry(key(l)).or_default() -= i64::from(l.qty);
        }
        if want.values().any(|v| *v != 0) || parts.iter().any(Vec::is_empty) {
            return Err(SplitRefused::LinesDiffer);
        }
        Ok(())
    }
}

/// Units sold by a stock effect of moving to `to`: a fulfilled line left
/// the building for a customer.
pub fn sold_by_effect(to: Status, d: StockDelta) -> u32 {
    if to == Status::Fulfilled && d.on_hand < 0 {
        u32::try_from(-d.on_hand).unwrap_or(u32::MAX)
    } else {
        0
    }
}

/// The first of `lines` of a preorder SKU not released at `now` (its
/// units may have arrived early: they are not handed over before the
/// street date), and the release.
pub fn unreleased(
    lines: &[Line],
    c: &super::catalog::Catalog,
    now: TimeMs,
) -> Option<(SkuId, TimeMs)> {
    lines.iter().find_map(|l| {
        let p = c.sku_by_id(l.sku.as_str())?.preorder?;
        (now < p.release_ms).then(|| (l.sku.clone(), p.release_ms))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_split_gives_every_unit_to_one_part() {
        let line = |sku: &str, loc: &str, qty| Line {
            sku: SkuId::parse(sku).expect("id"),
            location: LocationId::parse(loc).expect("id"),
            qty,
            requested: qty,
            backordered: 0,
            eta_ms: 0,
        };
        let mut r = res(Status::Held, 1000);
        r.lines = vec![line("A", "S1", 2), line("B", "S2", 1), line("A", "S1", 1)];
        let good = vec![vec![line("A", "S1", 3)], vec![line("B", "S2", 1)]];
        assert_eq!(r.decide_split(&good, 10), Ok(()));
        let short = vec![vec![line("A", "S1", 2)], vec![line("B", "S2", 1)]];
        assert_eq!(r.decide_split(&short, 10), Err(SplitRefused::LinesDiffer));
        let moved = vec![vec![line("A", "S2", 3)], vec![line("B", "S2", 1)]];
        assert_eq!(r.decide_split(&moved, 10), Err(SplitRefused::LinesDiffer));
        let empty_part = vec![good[0].clone(), good[1].clone(), vec![]];
        assert_eq!(
            r.decide_split(&empty_part, 10),
            Err(SplitRefused::LinesDiffer)
        );
        assert_eq!(
            r.decide_split(&good, 1000),
            Err(SplitRefused::NotHeld(Status::Expired))
        );
        r.status = Status::Confirmed;
        assert_eq!(
            r.decide_split(&good, 10),
            Err(SplitRefused::NotHeld(Status::Confirmed))
        );
    }

    fn bline(sku: &str, loc: &str, qty: u32, backordered: u32) -> Line {
        Line {
            sku: SkuId::parse(sku).expect("id"),
            location: LocationId::parse(loc).expect("id"),
            qty,
            requested: qty,
            backordered,
            eta_ms: 0,
        }
    }

    #[test]
    fn a_split_spreads_the_units_not_arrived_as_they_are_now() {
        let mut r = res(Status::Held, 1000);
        r.lines = vec![bline("A", "S1", 3, 2), bline("B", "S1", 1, 0)];
        // Read before a conversion: the parts say 2 not arrived, now 1.
        let mut parts = vec![
            vec![bline("A", "S1", 1, 1), bline("B", "S1", 1, 0)],
            vec![bline("A", "S1", 2, 1)],
        ];
        assert_eq!(r.decide_split(&parts, 10), Ok(()));
        r.convert(
            &SkuId::parse("A").expect("id"),
            &LocationId::parse("S1").expect("id"),
            1,
        );
        r.spread_backorders(&mut parts);
        let got: Vec<u32> = parts.iter().flatten().map(|l| l.backordered).collect();
        assert_eq!(got, vec![1, 0, 0]);
    }

    #[test]
    fn conversions_go_first_in_first_out_as_far_as_the_delivery_reaches() {
        let mk = |id: &str, lines: Vec<Line>| Reservation {
            id: ReservationId::parse(id).expect("id"),
            lines,
            ..res(Status::Held, 1000)
        };
        let first = mk("r1", vec![bline("A", "S1", 3, 2), bline("B", "S1", 1, 1)]);
        let elsewhere = mk("r2", vec![bline("A", "S2", 5, 5)]);
        let mut gone = mk("r3", vec![bline("A", "S1", 4, 4)]);
        gone.status = Status::Released;
        let second = mk("r4", vec![bline("A", "S1", 4, 4)]);
        let at = LocationId::parse("S1").expect("id");
        let a = SkuId::parse("A").expect("id");
        let got = decide_conversions(
            &at,
            &[(a.clone(), 3), (SkuId::parse("C").expect("id"), 9)],
            [&first, &elsewhere, &gone, &second],
        );
        let units: Vec<(&str, &str, u32)> = got
            .iter()
            .map(|c| (c.reservation.as_str(), c.sku.as_str(), c.units))
            .collect();
        assert_eq!(units, vec![("r1", "A", 2), ("r4", "A", 1)]);
        let mut deltas = vec![(a.clone(), at.clone(), StockDelta::default())];
        add_conversions(&mut deltas, &at, &got);
        assert_eq!((deltas[0].2.reserved, deltas[0].2.backordered), (3, -3));
        let mut r = second.clone();
        assert_eq!(r.convert(&a, &at, 1), 1);
        assert_eq!((r.backordered(), r.lines[0].on_hand()), (3, 1));
    }

    proptest::proptest! {
        /// Never more of a SKU converted than arrived, nor more of a line
        /// than it waits for; and a later reservation gets units of a SKU
        /// only once every earlier one waiting for it has all it waits for.
        #[test]
        fn conversions_never_exceed_receipts_and_keep_their_order(
            waits in proptest::collection::vec(proptest::collection::vec((0u8..3, 0u32..4), 1..3), 0..8),
            arrived in proptest::collection::vec((0u8..3, 0u32..8), 0..4),
        ) {
            let sku = |k: u8| SkuId::parse(&format!("A{k}")).expect("id");
            let at = LocationId::parse("S").expect("id");
            let order: Vec<Reservation> = waits
                .iter()
                .enumerate()
                .map(|(i, ls)| Reservation {
                    id: ReservationId::parse(&format!("r{i}")).expect("id"),
                    lines: ls.iter().map(|&(k, b)| bline(sku(k).as_str(), "S", b + 1, b)).collect(),
                    ..res(Status::Held, 1000)
                })
                .collect();
            let arrived: Vec<(SkuId, u32)> = arrived.iter().map(|&(k, q)| (sku(k), q)).collect();
            let got = decide_conversions(&at, &arrived, &order);
            for k in 0..3u8 {
                let s = sku(k);
                let came: u32 = arrived.iter().filter(|a| a.0 == s).map(|a| a.1).sum();
                let took: u32 = got.iter().filter(|c| c.sku == s).map(|c| c.units).sum();
                proptest::prop_assert!(took <= came);
                let waiting = |r: &Reservation| -> u32 {
                    r.lines.iter().filter(|l| l.sku == s).map(|l| l.backordered).sum()
                };
                let mut short_before = false;
                for r in &order {
                    let had: u32 = got.iter().filter(|c| c.sku == s && c.reservation == r.id).map(|c| c.units).sum();
                    proptest::prop_assert!(had <= waiting(r));
                    proptest::prop_assert!(!(short_before && had > 0), "out of order: {got:?}");
                    short_before |= had < waiting(r);
                }
                // All that arrived is taken while any is still waiting.
                let wanted: u32 = order.iter().map(waiting).sum();
                proptest::prop_assert_eq!(took, came.min(wanted));
            }
        }
    }

    fn res(status: Status, expires_at_ms: TimeMs) -> Reservation {
        Reservation {
            id: ReservationId::parse("r1").expect("id"),
            lines: vec![Line {
                sku: SkuId::parse("A").expect("id"),
                location: LocationId::parse("S").expect("id"),
                qty: 2,
                requested: 2,
                backordered: 0,
                eta_ms: 0,
            }],
            status,
            created_ms: 0,
            expires_at_ms,
            updated_ms: 0,
        }
    }

    #[test]
    fn the_table_of_api_md() {
        use Status::*;
        use Transition::*;
        let now = 500;
        assert!(matches!(
            res(Held, 1000).decide(Confirm, now),
            Ok(Decision::Change {
                status: Confirmed,
                ..
            })
        ));
        assert_eq!(
            res(Confirmed, 1000).decide(Confirm, now),
            Ok(Decision::Unchanged)
        );
        assert_eq!(
            res(Released, 1000).decide(Confirm, now),
            Err(NotHeld(Released))
        );
        assert_eq!(res(Held, 400).decide(Confirm, now), Err(NotHeld(Expired)));
        assert_eq!(
            res(Released, 1000).decide(Release, now),
            Ok(Decision::Unchanged)
        );
        assert_eq!(
            res(Expired, 1000).decide(Release, now),
            Ok(Decision::Unchanged)
        );
        assert_eq!(
            res(Fulfilled, 1000).decide(Release, now),
            Err(NotHeld(Fulfilled))
        );
        assert_eq!(res(Held, 1000).decide(Fulfil, now), Err(NotHeld(Held)));
        assert!(matches!(
            res(Confirmed, 1000).decide(Fulfil, now),
            Ok(Decision::Change {
                status: Fulfilled,
                ..
            })
        ));
        assert_eq!(
            res(Held, 1000).decide(Extend { ttl_s: 10 }, now),
            Ok(Decision::Change {
                status: Held,
                expires_at_ms: 10_500
            })
        );
        assert_eq!(
            res(Confirmed, 1000).decide(Extend { ttl_s: 10 }, now),
            Err(NotHeld(Confirmed))
        );
        assert_eq!(res(Held, 1000).decide(Expire, now), Err(NotHeld(Held)));
        assert!(res(Held, 400).decide(Expire, now).is_ok());
        assert!(res(Confirmed, 400).decide(Expire, now).is_err());
    }

    #[test]
    fn effects() {
        let r = res(Status::Confirmed, 0);
        let f: Vec<_> = r.stock_effects(Status::Fulfilled).map(|(_, d)| d).collect();
        assert_eq!(
            f,
            vec![StockDelta {
                on_hand: -2,
                reserved: -2,
                ..StockDelta::default()
            }]
        );
        let r = res(Status::Released, 0);
        assert_eq!(r.stock_effects(Status::Released).count(), 0);
    }
}
