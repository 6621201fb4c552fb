//! Transfers of stock between two locations (issue 20): requested, then
//! shipped (the units leave `from`'s on_hand and show as in transit at
//! `to`), then received (what arrived joins `to`'s on_hand; what did not
//! is the discrepancy, shown on the transfer), or cancelled before it
//! ships.
//!
//! Pure: a transfer's decisions and the stock each step moves. Whoever
//! keeps transfers decides with `Transfer::decide` and journals the step;
//! replay applies it with `Transfer::apply`, never deciding again. Units
//! are conserved by construction: every line ships `qty`, and receives
//! `received` with `qty - received` as its discrepancy.

use super::book::{check_lines, per_line, Book, Kept, LineRefused, LinesInvalid};
use super::ids::{LocationId, SkuId};
use super::stock::StockDelta;
use super::TimeMs;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransferStatus {
    Requested,
    Shipped,
    Received,
    Cancelled,
}

impl TransferStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requested => "requested",
            Self::Shipped => "shipped",
            Self::Received => "received",
            Self::Cancelled => "cancelled",
        }
    }
}

/// One SKU of a transfer: the units sent, and once received, those that
/// arrived.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferLine {
    pub sku: SkuId,
    pub qty: u32,
    pub received: Option<u32>,
}

impl TransferLine {
    /// Sent less arrived (negative: more arrived than was sent); none
    /// before it is received.
    pub fn discrepancy(&self) -> Option<i64> {
        self.received.map(|r| i64::from(self.qty) - i64::from(r))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfer {
    pub id: String,
    pub from: LocationId,
    pub to: LocationId,
    pub lines: Vec<TransferLine>,
    pub status: TransferStatus,
    pub created_ms: TimeMs,
    pub updated_ms: TimeMs,
    /// When it shipped and when it was received (added later: default).
    #[serde(default)]
    pub shipped_ms: Option<TimeMs>,
    #[serde(default)]
    pub received_ms: Option<TimeMs>,
    /// The order's shipment it carries to its pickup store (added later:
    /// none in older records and for a transfer asked through the API).
    #[serde(default)]
    pub order: Option<OrderRef>,
}

/// The shipment of an order a transfer carries to the order's pickup
/// store: an order's transfer, made and moved by its order (shipped,
/// then at the counter), never by a step asked of the transfer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRef {
    pub order: String,
    pub shipment: u32,
}

/// What an order's transfer must be by what its order says
/// (`Order::transfers_owed`): shipped from `from` to the pickup store
/// `to` with `lines` (each SKU once), and whether its goods are at the
/// counter (ready for pickup, or collected).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderTransfer {
    pub of: OrderRef,
    pub from: LocationId,
    pub to: LocationId,
    pub lines: Vec<(SkuId, u32)>,
    pub arrived: bool,
}

/// The id of the transfer of `order`'s shipment `shipment`: `{order}:{n}`
/// (an id of the API's grammar: an order id with a long one's end a
/// hash of it), or on the `attempt`-th try (an id taken by a transfer
/// asked through the API) `{order}:{n}:{attempt}`.
pub fn order_transfer_id(order: &str, shipment: u32, attempt: u32) -> String {
    use crate::limits::ID_LEN_MAX;
    let suffix = if attempt == 0 {
        format!(":{shipment}")
    } else {
        format!(":{shipment}:{attempt}")
    };
    if order.len() + suffix.len() <= ID_LEN_MAX {
        return format!("{order}{suffix}");
    }
    // Order ids are ASCII (their grammar): any byte is a boundary.
    let keep = ID_LEN_MAX - suffix.len() - 17;
    let hash = super::hash::fnv1a64(order.as_bytes());
    format!("{}-{hash:016x}{suffix}", &order[..keep])
}

/// A step asked of a transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferStep {
    Ship,
    /// What arrived, per SKU; a SKU of the transfer not named arrived
    /// not at all.
    Receive(Vec<(SkuId, u32)>),
    Cancel,
}

/// Why a step is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepRefused {
    /// Not in this status (409): shipping a cancelled transfer, receiving
    /// one not shipped, cancelling one shipped, receiving again other
    /// figures.
    NotNow(TransferStatus),
    /// A received line names a SKU the transfer does not carry (422).
    UnknownSku(SkuId),
    /// A received line names a SKU twice (422).
    TwiceNamed(SkuId),
    /// An order's transfer moves with its order's shipment (409).
    OrderOwned(OrderRef),
}

/// Why a transfer cannot be requested (422, naming the member).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferInvalid {
    SameLocation,
    Lines(LinesInvalid),
}

/// What a step decided: a new status, or nothing to write (a repeat).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepDecision {
    To(TransferStatus),
    Unchanged,
}

/// A record a transfer step moves: `on_hand` and `in_transit` deltas of
/// one SKU at one location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferMove {
    pub sku: SkuId,
    pub location: LocationId,
    pub on_hand: i64,
    pub in_transit: i64,
}

impl TransferMove {
    /// The change of its record.
    pub fn delta(&self) -> StockDelta {
        StockDelta {
            on_hand: self.on_hand,
            in_transit: self.in_transit,
            ..StockDelta::default()
        }
    }
}

impl Transfer {
    /// A transfer as requested: two different locations, each SKU once
    /// with at least one unit.
    pub fn request(
        id: String,
        from: LocationId,
        to: LocationId,
        lines: Vec<(SkuId, u32)>,
        now: TimeMs,
    ) -> Result<Transfer, TransferInvalid> {
        if from == to {
            return Err(TransferInvalid::SameLocation);
        }
        check_lines(&lines).map_err(TransferInvalid::Lines)?;
        Ok(Transfer {
            id,
            from,
            to,
            lines: lines
                .into_iter()
                .map(|(sku, qty)| TransferLine {
                    sku,
                    qty,
                    received: None,
                })
                .collect(),
            status: TransferStatus::Requested,
            created_ms: now,
            updated_ms: now,
            shipped_ms: None,
            received_ms: None,
            order: None,
        })
    }

    /// An order's transfer as its goods leave (`OrderTransfer`): shipped
    /// at `now`. Its lines come from a placed order, not a request:
    /// nothing to refuse.
    pub fn for_order(id: String, o: &OrderTransfer, now: TimeMs) -> Transfer {
        Transfer {
            id,
            from: o.from.clone(),
            to: o.to.clone(),
            lines: o
                .lines
                .iter()
                .map(|(sku, qty)| TransferLine {
                    sku: sku.clone(),
                    qty: *qty,
                    received: None,
                })
                .collect(),
            status: TransferStatus::Shipped,
            created_ms: now,
            updated_ms: now,
            shipped_ms: Some(now),
            received_ms: None,
            order: Some(o.of.clone()),
        }
    }

    /// An order's transfer at the pickup store's counter: what its
    /// receipt names, every unit it carries (`None`: it is not shipped,
    /// or was received).
    pub fn at_the_counter(&self) -> Option<Vec<(SkuId, u32)>> {
        (self.order.is_some() && self.status == TransferStatus::Shipped)
            .then(|| self.lines.iter().map(|l| (l.sku.clone(), l.qty)).collect())
    }

    /// Decides a step. A repeat of a step already taken (ship of a
    /// shipped or received transfer, cancel of a cancelled one, the same
    /// receipt again) is `Unchanged`: a client's retry is answered, not
    /// refused.
    pub fn decide(&self, step: &TransferStep) -> Result<StepDecision, StepRefused> {
        use TransferStatus::*;
        if let Some(of) = &self.order {
            return Err(StepRefused::OrderOwned(of.clone()));
        }
        match (step, self.status) {
            (TransferStep::Ship, Requested) => Ok(StepDecision::To(Shipped)),
            (TransferStep::Ship, Shipped | Received) => Ok(StepDecision::Unchanged),
            (TransferStep::Cancel, Requested) => Ok(StepDecision::To(Cancelled)),
            (TransferStep::Cancel, Cancelled) => Ok(StepDecision::Unchanged),
            (TransferStep::Receive(got), Shipped) => {
                self.arrived(got)?;
                Ok(StepDecision::To(Received))
            }
            (TransferStep::Receive(got), Received) => {
                let same =
                    self.arrived(got)? == self.lines.iter().map(|l| l.received).collect::<Vec<_>>();
                if same {
                    Ok(StepDecision::Unchanged)
                } else {
                    Err(StepRefused::NotNow(Received))
                }
            }
            (_, status) => Err(StepRefused::NotNow(status)),
        }
    }

    /// What arrived of each line, in the lines' order, from a receipt.
    fn arrived(&self, got: &[(SkuId, u32)]) -> Result<Vec<Option<u32>>, StepRefused> {
        let carried: Vec<&SkuId> = self.lines.iter().map(|l| &l.sku).collect();
        match per_line(&carried, got) {
            Ok(q) => Ok(q.into_iter().map(Some).collect()),
            Err(LineRefused::Unknown(s)) => Err(StepRefused::UnknownSku(s)),
            Err(LineRefused::Twice(s)) => Err(StepRefused::TwiceNamed(s)),
        }
    }

    /// The records a step moves, decided: a shipment takes every line's
    /// units off `from`'s on_hand and shows them in transit at `to`; a
    /// receipt turns them into `to`'s on_hand as far as they arrived.
    ///
    /// An order's transfer carries goods sold already: they left `from`
    /// with their reservation's fulfilment (so its shipment moves only
    /// `to`'s in transit), and they reach the counter, not the pickup
    /// store's stock (its receipt only ends their transit).
    pub fn moves(&self, step: &TransferStep) -> Vec<TransferMove> {
        let sold = self.order.is_some();
        match step {
            TransferStep::Ship => self
                .lines
                .iter()
                .flat_map(|l| {
                    let q = i64::from(l.qty);
                    let leaves = (!sold).then(|| TransferMove {
                        sku: l.sku.clone(),
                        location: self.from.clone(),
                        on_hand: -q,
                        in_transit: 0,
                    });
                    leaves.into_iter().chain([TransferMove {
                        sku: l.sku.clone(),
                        location: self.to.clone(),
                        on_hand: 0,
                        in_transit: q,
                    }])
                })
                .collect(),
            TransferStep::Receive(got) => {
                let arrived = self.arrived(got).unwrap_or_default();
                self.lines
                    .iter()
                    .zip(arrived)
                    .map(|(l, a)| TransferMove {
                        sku: l.sku.clone(),
                        location: self.to.clone(),
                        on_hand: if sold { 0 } else { i64::from(a.unwrap_or(0)) },
                        in_transit: -i64::from(l.qty),
                    })
                    .collect()
            }
            TransferStep::Cancel => Vec::new(),
        }
    }

    /// Applies a step decided earlier (replay never decides again).
    pub fn apply(&mut self, step: &TransferStep, now: TimeMs) {
        if let TransferStep::Receive(got) = step {
            if let Ok(arrived) = self.arrived(got) {
                for (l, a) in self.lines.iter_mut().zip(arrived) {
                    l.received = a;
                }
            }
        }
        self.status = match step {
            TransferStep::Ship => {
                self.shipped_ms = Some(now);
                TransferStatus::Shipped
            }
            TransferStep::Receive(_) => {
                self.received_ms = Some(now);
                TransferStatus::Received
            }
            TransferStep::Cancel => TransferStatus::Cancelled,
        };
        self.updated_ms = now;
    }

    /// The request it was made from, to tell a client's retry (the same
    /// places and lines) from another transfer under the same id.
    pub fn same_request(&self, from: &LocationId, to: &LocationId, lines: &[(SkuId, u32)]) -> bool {
        &self.from == from
            && &self.to == to
            && self.lines.len() == lines.len()
            && self
                .lines
                .iter()
                .zip(lines)
                .all(|(l, (sku, qty))| &l.sku == sku && l.qty == *qty)
    }

    /// Requested or shipped: its units are still to move.
    pub fn is_open(&self) -> bool {
        matches!(
            self.status,
            TransferStatus::Requested | TransferStatus::Shipped
        )
    }

    /// Whether it leaves or reaches `location`.
    pub fn touches(&self, location: &str) -> bool {
        self.from.as_str() == location || self.to.as_str() == location
    }
}

/// Every transfer by id (`book`).
pub type Transfers = Book<Transfer>;

impl Kept for Transfer {
    fn id(&self) -> &str {
        &self.id
    }
    fn is_open(&self) -> bool {
        Transfer::is_open(self)
    }
    fn created_ms(&self) -> TimeMs {
        self.created_ms
    }
    fn updated_ms(&self) -> TimeMs {
        self.updated_ms
    }
}

/// What a request decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requested {
    /// To journal and keep.
    New(Transfer),
    /// Kept already as asked: nothing to write.
    Repeat(Transfer),
}

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestRefused {
    Invalid(TransferInvalid),
    /// Another transfer has this id (409).
    Exists,
    /// The book has no room (`Book::has_room`, 503).
    Full,
    /// The receiver's units on their way by transfer would pass
    /// `STOCK_MAX` (422).
    TooMuch(SkuId),
}

impl Book<Transfer> {
    /// Decides a request: a new transfer, or the repeat of one kept
    /// (the same places and lines: a client's retry, answered as the
    /// transfer is now).
    pub fn decide_request(
        &self,
        id: &str,
        from: LocationId,
        to: LocationId,
        lines: Vec<(SkuId, u32)>,
        now: TimeMs,
    ) -> Result<Requested, RequestRefused> {
        if let Some(t) = self.get(id) {
            return if t.same_request(&from, &to, &lines) {
                Ok(Requested::Repeat(t.clone()))
            } else {
                Err(RequestRefused::Exists)
            };
        }
        if !self.has_room(now) {
            return Err(RequestRefused::Full);
        }
        // The receiver's in_transit stays within STOCK_MAX, as every
        // figure of a record does (clamped, it would no longer be what
        // the shipped transfers say): open ones count, requested too.
        for (sku, qty) in &lines {
            let coming: i64 = self
                .values()
                .filter(|t| t.to == to && t.is_open())
                .flat_map(|t| t.lines.iter().filter(|l| &l.sku == sku))
                .map(|l| i64::from(l.qty))
                .sum();
            if coming + i64::from(*qty) > crate::limits::STOCK_MAX {
                return Err(RequestRefused::TooMuch(sku.clone()));
            }
        }
        Transfer::request(id.to_string(), from, to, lines, now)
            .map(Requested::New)
            .map_err(RequestRefused::Invalid)
    }

    /// The transfer kept for order shipment `of` (`Ok`), or else the id a
    /// new one takes (`Err(Some)`; `Err(None)`: every id it may take is
    /// another transfer's).
    pub fn of_order(&self, of: &OrderRef) -> Result<&Transfer, Option<String>> {
        let ids = (0..crate::limits::ORDER_TRANSFER_IDS)
            .map(|attempt| order_transfer_id(&of.order, of.shipment, attempt));
        // Every id first: an earlier one freed since (a transfer asked
        // through the API, forgotten) must not make it a second time.
        let mut free = None;
        for id in ids {
            match self.get(&id) {
                Some(t) if t.order.as_ref() == Some(of) => return Ok(t),
                Some(_) => {}
                None => {
                    free.get_or_insert(id);
                }
            }
        }
        Err(free)
    }

    /// Applies a step decided earlier to transfer `id`; false if unknown.
    pub fn apply(&mut self, id: &str, step: &TransferStep, now: TimeMs) -> bool {
        match self.get_mut(id) {
            Some(t) => {
                t.apply(step, now);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sku(i: u32) -> SkuId {
        SkuId::parse(&format!("A{i}")).expect("id")
    }
    fn loc(s: &str) -> LocationId {
        LocationId::parse(s).expect("id")
    }

    fn transfer(lines: &[(u32, u32)]) -> Transfer {
        let lines = lines.iter().map(|(s, q)| (sku(*s), *q)).collect();
        Transfer::request("T1".into(), loc("DC"), loc("S1"), lines, 0).expect("valid")
    }

    #[test]
    fn units_on_their_way_to_a_place_stay_within_stock_max() {
        let mut book = Transfers::default();
        let big = crate::limits::STOCK_MAX as u32 / 2;
        for i in 0..2 {
            let id = format!("T{i}");
            let Ok(Requested::New(t)) =
                book.decide_request(&id, loc("DC"), loc("S1"), vec![(sku(1), big)], 0)
            else {
                panic!("the first two fit");
            };
            book.keep(t);
        }
        let one = vec![(sku(1), 1)];
        assert_eq!(
            book.decide_request("T2", loc("DC"), loc("S1"), one.clone(), 0)
                .err(),
            Some(RequestRefused::TooMuch(sku(1)))
        );
        // Elsewhere, or of another SKU, it fits.
        assert!(book
            .decide_request("T2", loc("DC"), loc("S2"), one, 0)
            .is_ok());
        let other = vec![(sku(2), 1)];
        assert!(book
            .decide_request("T2", loc("DC"), loc("S1"), other, 0)
            .is_ok());
    }

    #[test]
    fn a_request_names_two_places_and_each_sku_once() {
        let one = vec![(sku(1), 2)];
        let same = Transfer::request("T".into(), loc("S1"), loc("S1"), one.clone(), 0);
        assert_eq!(same.err(), Some(TransferInvalid::SameLocation));
        let none = Transfer::request("T".into(), loc("DC"), loc("S1"), vec![], 0);
        assert_eq!(
            none.err(),
            Some(TransferInvalid::Lines(LinesInvalid::NoLines))
        );
        let twice = vec![(sku(1), 2), (sku(1), 1)];
        let twice = Transfer::request("T".into(), loc("DC"), loc("S1"), twice, 0);
        assert_eq!(
            twice.err(),
            Some(TransferInvalid::Lines(LinesInvalid::TwiceNamed(sku(1))))
        );
        let zero = Transfer::request("T".into(), loc("DC"), loc("S1"), vec![(sku(2), 0)], 0);
        assert_eq!(
            zero.err(),
            Some(TransferInvalid::Lines(LinesInvalid::ZeroQty(sku(2))))
        );
    }

    #[test]
    fn steps_go_in_order_and_repeats_change_nothing() {
        use StepDecision::*;
        use TransferStatus::*;
        let mut t = transfer(&[(1, 5), (2, 3)]);
        let got = TransferStep::Receive(vec![(sku(1), 4)]);
        assert_eq!(t.decide(&got), Err(StepRefused::NotNow(Requested)));
        assert_eq!(t.decide(&TransferStep::Ship), Ok(To(Shipped)));
        t.apply(&TransferStep::Ship, 1);
        assert_eq!(t.decide(&TransferStep::Ship), Ok(Unchanged));
        assert_eq!(
            t.decide(&TransferStep::Cancel),
            Err(StepRefused::NotNow(Shipped))
        );
        let stray = TransferStep::Receive(vec![(sku(9), 1)]);
        assert_eq!(t.decide(&stray), Err(StepRefused::UnknownSku(sku(9))));
        let twice = TransferStep::Receive(vec![(sku(1), 1), (sku(1), 1)]);
        assert_eq!(t.decide(&twice), Err(StepRefused::TwiceNamed(sku(1))));
        assert_eq!(t.decide(&got), Ok(To(Received)));
        t.apply(&got, 2);
        assert_eq!(t.lines[0].discrepancy(), Some(1));
        assert_eq!(t.lines[1].discrepancy(), Some(3), "not named: none arrived");
        assert_eq!(t.decide(&got), Ok(Unchanged), "the same receipt again");
        let other = TransferStep::Receive(vec![(sku(1), 5)]);
        assert_eq!(t.decide(&other), Err(StepRefused::NotNow(Received)));
        let mut c = transfer(&[(1, 1)]);
        assert_eq!(c.decide(&TransferStep::Cancel), Ok(To(Cancelled)));
        c.apply(&TransferStep::Cancel, 1);
        assert_eq!(c.decide(&TransferStep::Cancel), Ok(Unchanged));
        assert_eq!(
            c.decide(&TransferStep::Ship),
            Err(StepRefused::NotNow(Cancelled))
        );
    }

    /// An order's transfer: its ids within the API's grammar, the next
    /// one when a transfer asked through the API holds one; its goods
    /// left with their reservation and reach the counter, not the stock;
    /// no step may be asked of it.
    #[test]
    fn an_order_s_transfer_moves_only_what_is_in_transit() {
        use crate::domain::ids::validate_id;
        assert_eq!(order_transfer_id("O-1", 2, 0), "O-1:2");
        assert_eq!(order_transfer_id("O-1", 2, 3), "O-1:2:3");
        let long = "O".repeat(64);
        let ids: Vec<String> = (0..3).map(|a| order_transfer_id(&long, 7, a)).collect();
        for id in &ids {
            assert_eq!(validate_id(id), Ok(()), "{id}");
        }
        assert!(ids[0] != ids[1] && ids[0] != order_transfer_id(&"O".repeat(63), 7, 0));
        let of = OrderRef {
            order: "O-1".into(),
            shipment: 2,
        };
        let want = OrderTransfer {
            of: of.clone(),
            from: loc("DC"),
            to: loc("S1"),
            lines: vec![(sku(1), 3)],
            arrived: true,
        };
        let mut book = Transfers::default();
        book.insert(transfer(&[(1, 1)]));
        let mut taken = transfer(&[(1, 1)]);
        taken.id = "O-1:2".into();
        book.insert(taken);
        assert_eq!(book.of_order(&of), Err(Some("O-1:2:1".into())));
        let mut t = Transfer::for_order("O-1:2:1".into(), &want, 5);
        assert_eq!(t.status, TransferStatus::Shipped);
        book.insert(t.clone());
        assert_eq!(book.of_order(&of), Ok(&t));
        // The id before it freed (forgotten): still found, not made again.
        let mut freed = Transfers::default();
        freed.insert(t.clone());
        assert_eq!(freed.of_order(&of), Ok(&t));
        let moved = t.moves(&TransferStep::Ship);
        assert_eq!(
            moved.len(),
            1,
            "the sender's units left with the reservation"
        );
        assert_eq!((moved[0].location.as_str(), moved[0].in_transit), ("S1", 3));
        for step in [
            TransferStep::Ship,
            TransferStep::Cancel,
            TransferStep::Receive(vec![]),
        ] {
            assert_eq!(t.decide(&step), Err(StepRefused::OrderOwned(of.clone())));
        }
        let lines = t.at_the_counter().expect("shipped");
        let got = TransferStep::Receive(lines);
        let moved = t.moves(&got);
        assert_eq!(
            (moved[0].on_hand, moved[0].in_transit),
            (0, -3),
            "to the counter"
        );
        t.apply(&got, 6);
        assert_eq!(
            (t.status, t.lines[0].discrepancy()),
            (TransferStatus::Received, Some(0))
        );
        assert_eq!(t.at_the_counter(), None, "received once");
    }

    #[test]
    fn a_full_book_forgets_long_closed_transfers_to_take_more() {
        use crate::limits::{BOOK_CLOSED_KEPT_MS, BOOK_MAX};
        let mut book = Transfers::default();
        for i in 0..BOOK_MAX {
            let mut t = transfer(&[(1, 1)]);
            t.id = format!("T{i:06}");
            t.status = TransferStatus::Cancelled;
            book.insert(t);
        }
        assert_eq!(book.len(), BOOK_MAX, "nothing closed long enough ago");
        let ask = |book: &Transfers, now| {
            book.decide_request("N", loc("DC"), loc("S1"), vec![(sku(1), 1)], now)
        };
        assert_eq!(ask(&book, 1), Err(RequestRefused::Full));
        // 90 days on, the closed ones may go: the request is taken and
        // its insert forgets them (replay forgets alike).
        let later = BOOK_CLOSED_KEPT_MS + 1;
        let Ok(Requested::New(t)) = ask(&book, later) else {
            panic!("taken once closed transfers may be forgotten");
        };
        book.insert(t);
        assert_eq!(book.len(), 1);
        assert!(book.get("N").is_some());
    }

    proptest! {
        /// Transfers conserve units: what left `from` equals what arrived
        /// at `to` plus the discrepancy, and nothing stays in transit.
        #[test]
        fn what_left_is_what_arrived_plus_the_discrepancy(
            lines in prop::collection::btree_map(0..20u32, 1..50u32, 1..6),
            arrived in prop::collection::vec((0..24u32, 0..60u32), 0..8),
        ) {
            let lines: Vec<(u32, u32)> = lines.into_iter().collect();
            let mut t = transfer(&lines);
            let ship = TransferStep::Ship;
            let mut moved: Vec<TransferMove> = t.moves(&ship);
            t.apply(&ship, 1);
            let got = TransferStep::Receive(arrived.iter().map(|(s, q)| (sku(*s), *q)).collect());
            if t.decide(&got).is_ok() {
                moved.extend(t.moves(&got));
                t.apply(&got, 2);
                let left: i64 = moved.iter().filter(|m| m.location == t.from).map(|m| -m.on_hand).sum();
                let came: i64 = moved.iter().filter(|m| m.location == t.to).map(|m| m.on_hand).sum();
                let lost: i64 = t.lines.iter().filter_map(TransferLine::discrepancy).sum();
                prop_assert_eq!(left, came + lost);
                let in_transit: i64 = moved.iter().map(|m| m.in_transit).sum();
                prop_assert_eq!(in_transit, 0);
                prop_assert!(t.lines.iter().all(|l| l.received.is_some()));
            } else {
                // Refused only for a SKU not carried or named twice.
                let names: Vec<u32> = arrived.iter().map(|x| x.0).collect();
                let stray = names.iter().any(|s| !lines.iter().any(|l| l.0 == *s));
                let mut sorted = names.clone();
                sorted.sort_unstable();
                sorted.dedup();
                prop_assert!(stray || sorted.len() < names.len());
            }
        }
    }
}
