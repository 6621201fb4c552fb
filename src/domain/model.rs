//! The whole engine state in one struct: decide (pure, time passed in) and
//! apply (replay). Recovery replays the journal into a `Model` and splits it
//! among the actors; the property tests hold the decisions to the invariants.

use ahash::AHashMap;
use serde::{Deserialize, Serialize};

use super::catalog::{Catalog, LocIdx, SkuIdx};
use super::event::{sold_by_adjustment, Count, Event, IdemKey, SupplyFact, TransferFact};
use super::history::{By, Moved};
use super::ids::{LocationId, ReservationId, SkuId};
use super::recent_moves::{LateCountRefused, RecentMoves};
use super::reservation::{
    add_conversions, expires_at, sold_by_effect, Decision, Line, NotHeld, Reservation, Status,
    Transition,
};
use super::rotation::RotationTable;
use super::stock::{Bucket, StockDelta, StockRecord, StockTable};
use super::supply::{Supplies, Supply};
use super::transfer::{
    OrderRef, OrderTransfer, StepDecision, StepRefused, Transfer, TransferStatus, TransferStep,
    Transfers,
};
use super::TimeMs;

/// A line short of stock (api.md 409 `insufficient_stock`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Shortage {
    pub sku: SkuId,
    pub location: LocationId,
    pub requested: u32,
    pub available: i64,
}

/// A reservation line to hold, resolved to indices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineRequest {
    pub sku: SkuIdx,
    pub location: LocIdx,
    pub qty: u32,
}

/// What an idempotency key maps to after a 201.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdemEntry {
    pub body_hash: u64,
    pub reservation: ReservationId,
    /// The first answer's expiry and lines, as answered.
    pub expires_at_ms: TimeMs,
    pub lines: Vec<Line>,
    pub created_ms: TimeMs,
}

/// The journal holds a fact the state cannot take: the journal is corrupt or
/// was written by a different program.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("replay: {0}")]
pub struct ReplayError(pub String);

/// Why a transfer's step is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferRefused {
    NotFound,
    Step(StepRefused),
    /// Lines whose units are not free at the sender: (SKU, free units).
    Short(Vec<(SkuId, i64)>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransitionRefused {
    NotFound,
    NotHeld(Status),
    /// A fulfilment of a reservation with these units sold against
    /// supply not arrived yet.
    Backordered(u32),
    /// A fulfilment of a preorder before its release (the SKU and when).
    NotReleased(SkuId, TimeMs),
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Model {
    pub catalog: Catalog,
    pub stock: StockTable,
    pub reservations: AHashMap<ReservationId, Reservation>,
    pub idem: AHashMap<(u64, String), IdemEntry>,
    /// Orders by id (added after the first snapshot format: default).
    #[serde(default)]
    pub orders: std::collections::BTreeMap<String, super::order::Order>,
    /// The sales windows of the records selling lately (added later: default).
    #[serde(default)]
    pub rotation: RotationTable,
    /// The keys of keyed adjustments, kept as long as idempotency keys
    /// (added later: default).
    #[serde(default)]
    pub adjust_keys: AHashMap<String, AdjustKey>,
    /// The records' recent on_hand movements and last counts, for counts
    /// as of a time (added later: default).
    #[serde(default)]
    pub moves: RecentMoves,
    /// Transfers between locations by id (added later: default).
    #[serde(default)]
    pub transfers: Transfers,
    /// Incoming supply by id (added later: default).
    #[serde(default)]
    pub supplies: Supplies,
    /// Events published through the last fact applied (the last one's
    /// id): counted by whoever derives them (`published::Watch`, the
    /// snapshotter's copy), and carried by the snapshot so that a node
    /// started from one numbers the next event as every node does
    /// (added later: default). Applying a fact does not move it.
    #[serde(default)]
    pub events_published: u64,
    /// Webhook subscriptions by id (added later: default).
    #[serde(default)]
    pub webhooks: super::webhook::Webhooks,
}

/// What a keyed adjustment did: applied once under its key, a repeat of
/// the same is answered without applying it again, another under the same
/// key refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdjustKey {
    pub sku: SkuId,
    pub location: LocationId,
    pub delta: i64,
    pub at_ms: TimeMs,
    /// The bucket it moved (added later: none in older snapshots).
    #[serde(default)]
    pub unsellable: Option<(Bucket, i64)>,
}

/// Where `apply_noting` notes the stock records a fact moved, if asked.
type Touched<'a> = Option<&'a mut Vec<Moved>>;

/// A stock change of `apply_noting`: applied, and noted if asked.
fn noted(
    stock: &mut StockTable,
    touched: &mut Touched<'_>,
    s: SkuIdx,
    l: LocIdx,
    d: StockDelta,
) -> super::stock::StockRecord {
    let after = stock.apply(s, l, d);
    if let Some(t) = touched.as_deref_mut() {
        t.push(Moved {
            sku: s,
            location: l,
            delta: d,
            after,
            applied: true,
        });
    }
    after
}

impl Model {
    fn sku_loc(&self, sku: &SkuId, loc: &LocationId) -> Result<(SkuIdx, LocIdx), ReplayError> {
        let s = self
            .catalog
            .sku_idx(sku.as_str())
            .ok_or_else(|| ReplayError(format!("unknown sku {sku}")))?;
        let l = self
            .catalog
            .location_idx(loc.as_str())
            .ok_or_else(|| ReplayError(format!("unknown location {loc}")))?;
        Ok((s, l))
    }

    /// Applies one fact. Never decides: a hold is applied even if it would not
    /// be granted now, because it was granted when it was written.
    pub fn apply(&mut self, e: &Event) -> Result<(), ReplayError> {
        self.apply_noting(e, None)
    }

    /// `apply`, and, with `touched`, each stock record it moved noted
    /// there, in the order it moved them (a followed copy's feed sends
    /// them; the movement history keeps them). A confirm notes its lines'
    /// records unchanged: a step of theirs all the same.
    pub fn apply_noting(
        &mut self,
        e: &Event,
        mut touched: Option<&mut Vec<Moved>>,
    ) -> Result<(), ReplayError> {
        let touched = &mut touched;
        match e {
            Event::SkuPut { sku, value } => {
                self.catalog.put_sku(sku.clone(), value.clone());
            }
            Event::Order { id, events } => self.apply_order(id, events, touched)?,
            Event::SkusPut { skus } => {
                for (sku, value) in skus {
                    self.catalog.put_sku(sku.clone(), value.clone());
                }
            }
            Event::LocationPut { location, value } => {
                self.catalog.put_location(location.clone(), value.clone());
            }
            Event::Counted { items, at_ms, .. } => self.apply_counted(items, *at_ms, touched)?,
            Event::Adjusted { .. } => self.apply_adjusted(e, touched)?,
            Event::ReservationHeld {
                id,
                lines,
                created_ms,
                expires_at_ms,
                idem,
                ..
            } => self.apply_held(
                id,
                lines,
                *created_ms,
                *expires_at_ms,
                idem.as_ref(),
                touched,
            )?,
            Event::ReservationStatus {
                id, status, at_ms, ..
            } => self.apply_status(id, *status, *at_ms, touched)?,
            Event::ReservationSplit {
                from,
                into,
                at_ms,
                expires_at_ms,
            } => self.apply_split(from, into, *at_ms, *expires_at_ms)?,
            Event::ReservationExtended {
                id,
                expires_at_ms,
                at_ms,
            } => self.apply_extended(id, *expires_at_ms, *at_ms)?,
            Event::Transfer {
                id, step, at_ms, ..
            } => self.apply_transfer(id, step, *at_ms, touched)?,
            Event::Supply {
                id, step, at_ms, ..
            } => self.apply_supply(id, step, *at_ms, touched)?,
            Event::Webhook { id, fact, at_ms } => {
                super::webhook::apply(&mut self.webhooks, id, fact, *at_ms)
            }
        }
        Ok(())
    }

    /// Applies a transfer's step: its request, or the stock its shipment
    /// or receipt moves (the units are movements of on_hand, as a count
    /// taken before them must know), and its new status.
    fn apply_transfer(
        &mut self,
        id: &str,
        fact: &TransferFact,
        at_ms: TimeMs,
        touched: &mut Touched<'_>,
    ) -> Result<(), ReplayError> {
        if let TransferFact::Requested { from, to, lines } = fact {
            let t = Transfer::request(
                id.to_string(),
                from.clone(),
                to.clone(),
                lines.clone(),
                at_ms,
            )
            .map_err(|e| ReplayError(format!("transfer {id} requested as {e:?}")))?;
            self.transfers.insert(t);
            return Ok(());
        }
        if let TransferFact::ForOrder {
            from,
            to,
            lines,
            order,
            shipment,
        } = fact
        {
            let of = OrderTransfer {
                of: OrderRef {
                    order: order.clone(),
                    shipment: *shipment,
                },
                from: from.clone(),
                to: to.clone(),
                lines: lines.clone(),
                arrived: false,
            };
            let t = Transfer::for_order(id.to_string(), &of, at_ms);
            for m in t.moves(&TransferStep::Ship) {
                let (s, l) = self.sku_loc(&m.sku, &m.location)?;
                noted(&mut self.stock, touched, s, l, m.delta());
            }
            self.transfers.insert(t);
            return Ok(());
        }
        let (Some(step), Some(t)) = (fact.step(), self.transfers.get(id)) else {
            return Err(ReplayError(format!("step of unknown transfer {id}")));
        };
        for m in t.moves(&step) {
            let (s, l) = self.sku_loc(&m.sku, &m.location)?;
            let r = noted(&mut self.stock, touched, s, l, m.delta());
            if m.on_hand != 0 {
                self.rotation.record(s, l, at_ms, 0, r.on_hand);
                self.moves.moved(s, l, at_ms, m.on_hand);
            }
        }
        self.transfers.apply(id, &step, at_ms);
        Ok(())
    }

    /// Applies a supply's step: its announcement (its units incoming), or
    /// a delivery (units on hand, movements a count taken before them
    /// must know) or a cancel; each record moved shows its earliest time
    /// expected as the book has it after the step.
    fn apply_supply(
        &mut self,
        id: &str,
        fact: &SupplyFact,
        at_ms: TimeMs,
        touched: &mut Touched<'_>,
    ) -> Result<(), ReplayError> {
        let (changed, moves) = match (fact, fact.step()) {
            (
                SupplyFact::Expected {
                    location,
                    expected_ms,
                    lines,
                },
                _,
            ) => {
                let s = Supply::expect(
                    id.to_string(),
                    location.clone(),
                    *expected_ms,
                    lines.clone(),
                    at_ms,
                )
                .map_err(|e| ReplayError(format!("supply {id} expected as {e:?}")))?;
                let moves = s.expected_moves();
                (s, moves)
            }
            (_, Some(step)) => {
                let mut s = self
                    .supplies
                    .get(id)
                    .cloned()
                    .ok_or_else(|| ReplayError(format!("step of unknown supply {id}")))?;
                let moves = s.moves(&step);
                s.apply(&step, at_ms);
                (s, moves)
            }
            (_, None) => return Err(ReplayError(format!("supply {id}: no step"))),
        };
        let mut deltas = self.supplies.with_eta(&changed, moves);
        if let SupplyFact::Received { converted, .. } = fact {
            add_conversions(&mut deltas, &changed.location, converted);
            for c in converted {
                if let Some(r) = self.reservations.get_mut(&c.reservation) {
                    r.convert(&c.sku, &changed.location, c.units);
                }
            }
        }
        for (sku, loc, d) in deltas {
            let (s, l) = self.sku_loc(&sku, &loc)?;
            let r = noted(&mut self.stock, touched, s, l, d);
            if d.on_hand != 0 {
                self.rotation.record(s, l, at_ms, 0, r.on_hand);
                self.moves.moved(s, l, at_ms, d.on_hand);
            }
        }
        self.supplies.keep(changed);
        Ok(())
    }

    /// Applies an order's facts; a return not owed restocks where the
    /// goods came back.
    fn apply_order(
        &mut self,
        id: &str,
        events: &[super::order::OrderEvent],
        touched: &mut Touched<'_>,
    ) -> Result<(), ReplayError> {
        for e in events {
            if let super::order::OrderEvent::Placed(o) = e {
                self.orders.insert(id.to_string(), (**o).clone());
                continue;
            }
            // A return restocks where the goods came back.
            if let (
                super::order::OrderEvent::Returned {
                    lines,
                    location,
                    at_ms,
                    restock_owed: false,
                    ..
                },
                Some(o),
            ) = (e, self.orders.get(id))
            {
                let back: Vec<(SkuId, StockDelta)> =
                    o.restock(lines).map(|(s, d)| (s.clone(), d)).collect();
                for (sku, d) in back {
                    let (s, l) = self.sku_loc(&sku, location)?;
                    let r = noted(&mut self.stock, touched, s, l, d);
                    self.rotation.record(s, l, *at_ms, 0, r.on_hand);
                    self.moves.moved(s, l, *at_ms, d.on_hand);
                }
            }
            if let Some(o) = self.orders.get_mut(id) {
                o.apply(e);
            }
        }
        Ok(())
    }

    /// Applies a batch of counts by the deltas they applied when counted.
    fn apply_counted(
        &mut self,
        items: &[Count],
        at_ms: TimeMs,
        touched: &mut Touched<'_>,
    ) -> Result<(), ReplayError> {
        for c in items {
            let (s, l) = self.sku_loc(&c.sku, &c.location)?;
            let r = noted(
                &mut self.stock,
                touched,
                s,
                l,
                StockDelta {
                    on_hand: c.on_hand_delta,
                    safety_stock: c.safety_stock_delta,
                    ..StockDelta::default()
                },
            );
            self.rotation.record(s, l, at_ms, 0, r.on_hand);
            self.moves.counted(s, l, c.counted_at.unwrap_or(at_ms));
        }
        Ok(())
    }

    /// Applies an adjustment (`e` is an `Event::Adjusted`), and remembers
    /// its key if it has one.
    fn apply_adjusted(&mut self, e: &Event, touched: &mut Touched<'_>) -> Result<(), ReplayError> {
        let Event::Adjusted {
            sku,
            location,
            delta,
            reason,
            at_ms,
            key,
            unsellable,
            ..
        } = e
        else {
            return Ok(());
        };
        let (delta, at_ms, unsellable) = (*delta, *at_ms, *unsellable);
        let (s, l) = self.sku_loc(sku, location)?;
        if let Some(k) = key {
            self.adjust_keys.insert(
                k.clone(),
                AdjustKey {
                    sku: sku.clone(),
                    location: location.clone(),
                    delta,
                    at_ms,
                    unsellable,
                },
            );
        }
        let d = StockDelta {
            on_hand: delta,
            unsellable,
            ..Default::default()
        };
        let r = noted(&mut self.stock, touched, s, l, d);
        if delta != 0 {
            let sold = sold_by_adjustment(*reason, delta);
            self.rotation.record(s, l, at_ms, sold, r.on_hand);
            self.moves.moved(s, l, at_ms, delta);
        }
        Ok(())
    }

    /// Applies a cart held: its lines reserved, the reservation and its
    /// idempotency key recorded.
    fn apply_held(
        &mut self,
        id: &ReservationId,
        lines: &[Line],
        created_ms: TimeMs,
        expires_at_ms: TimeMs,
        idem: Option<&IdemKey>,
        touched: &mut Touched<'_>,
    ) -> Result<(), ReplayError> {
        if self.reservations.contains_key(id) {
            return Err(ReplayError(format!("reservation {id} held twice")));
        }
        // The lines share the catalog's id strings instead of the
        // copies decoded from the record (a million reservations
        // would otherwise hold two million small strings).
        let mut shared = Vec::with_capacity(lines.len());
        for line in lines {
            let (s, l) = self.sku_loc(&line.sku, &line.location)?;
            noted(&mut self.stock, touched, s, l, line.held());
            shared.push(self.shared_line(line, s, l));
        }
        let r = Reservation::held(id.clone(), shared, created_ms, expires_at_ms);
        if let Some(k) = idem {
            self.idem.insert(
                (k.scope, k.key.clone()),
                IdemEntry {
                    body_hash: k.body_hash,
                    reservation: id.clone(),
                    expires_at_ms,
                    lines: lines.to_vec(),
                    created_ms,
                },
            );
        }
        self.reservations.insert(id.clone(), r);
        Ok(())
    }

    /// `line` with the catalog's id strings of its record `(s, l)`.
    fn shared_line(&self, line: &Line, s: SkuIdx, l: LocIdx) -> Line {
        Line {
            sku: self
                .catalog
                .sku(s)
                .map(|x| x.0.clone())
                .unwrap_or_else(|| line.sku.clone()),
            location: self
                .catalog
                .location(l)
                .map(|x| x.0.clone())
                .unwrap_or_else(|| line.location.clone()),
            qty: line.qty,
            requested: line.requested,
            backordered: line.backordered,
            eta_ms: line.eta_ms,
        }
    }

    /// Applies a reservation's new status and its effects on the stock.
    fn apply_status(
        &mut self,
        id: &ReservationId,
        status: Status,
        at_ms: TimeMs,
        touched: &mut Touched<'_>,
    ) -> Result<(), ReplayError> {
        let r = self
            .reservations
            .get(id)
            .ok_or_else(|| ReplayError(format!("status of unknown reservation {id}")))?;
        let effects: Vec<(SkuId, LocationId, StockDelta)> = r
            .stock_effects(status)
            .map(|(l, d)| (l.sku.clone(), l.location.clone(), d))
            .collect();
        if let (Status::Confirmed, Some(t)) = (status, touched.as_deref_mut()) {
            for line in &r.lines {
                let (s, l) = self.sku_loc(&line.sku, &line.location)?;
                t.push(Moved {
                    sku: s,
                    location: l,
                    delta: StockDelta::default(),
                    after: self.stock.get_or_empty(s, l),
                    applied: false,
                });
            }
        }
        for (sku, loc, d) in effects {
            let (s, l) = self.sku_loc(&sku, &loc)?;
            let r = noted(&mut self.stock, touched, s, l, d);
            if d.on_hand != 0 {
                self.rotation
                    .record(s, l, at_ms, sold_by_effect(status, d), r.on_hand);
                self.moves.moved(s, l, at_ms, d.on_hand);
            }
        }
        if let Some(r) = self.reservations.get_mut(id) {
            r.status = status;
            r.updated_ms = at_ms;
        }
        Ok(())
    }

    /// Applies a reservation split: `from` released, each of `into` held.
    fn apply_split(
        &mut self,
        from: &ReservationId,
        into: &[(ReservationId, Vec<Line>)],
        at_ms: TimeMs,
        expires_at_ms: TimeMs,
    ) -> Result<(), ReplayError> {
        // The release of `from` and the holds of `into` cancel out
        // on every record: the stock is left as it is.
        let r = self
            .reservations
            .get_mut(from)
            .ok_or_else(|| ReplayError(format!("split of unknown reservation {from}")))?;
        r.status = Status::Released;
        r.updated_ms = at_ms;
        // The parts were made when `from` was (`ReservationBook::apply_split`).
        let made = r.created_ms;
        for (id, lines) in into {
            if self.reservations.contains_key(id) {
                return Err(ReplayError(format!("reservation {id} held twice")));
            }
            let mut part = Reservation::held(id.clone(), lines.clone(), made, expires_at_ms);
            part.updated_ms = at_ms;
            self.reservations.insert(id.clone(), part);
        }
        Ok(())
    }

    /// Applies a reservation's new expiry.
    fn apply_extended(
        &mut self,
        id: &ReservationId,
        expires_at_ms: TimeMs,
        at_ms: TimeMs,
    ) -> Result<(), ReplayError> {
        let r = self
            .reservations
            .get_mut(id)
            .ok_or_else(|| ReplayError(format!("extension of unknown reservation {id}")))?;
        r.expires_at_ms = expires_at_ms;
        r.updated_ms = at_ms;
        Ok(())
    }

    /// Decides a cart: all or nothing (or partial). Pure.
    #[allow(clippy::too_many_arguments)]
    pub fn decide_hold(
        &self,
        id: ReservationId,
        lines: &[LineRequest],
        allow_partial: bool,
        now: TimeMs,
        ttl_s: u64,
        idem: Option<IdemKey>,
    ) -> Result<Event, Vec<Shortage>> {
        // Lines of one cart may name the same record twice: count them together.
        let mut taken: AHashMap<(SkuIdx, LocIdx), i64> = AHashMap::new();
        let mut held = Vec::with_capacity(lines.len());
        let mut short = Vec::new();
        for l in lines {
            // The same decisions as the stock actors, on a scratch copy
            // that counts this cart's earlier lines.
            let mut rec = self.stock.get_or_empty(l.sku, l.location);
            let t = taken.entry((l.sku, l.location)).or_insert(0);
            rec.reserved += *t;
            let available = rec.available();
            let qty = i64::from(l.qty);
            let got = if allow_partial {
                rec.decide_hold_partial(qty)
            } else {
                rec.decide_hold(qty).map(|d| d.reserved).unwrap_or(0)
            };
            if got < qty && !allow_partial || got == 0 {
                short.push(self.shortage(l, available));
                continue;
            }
            *t += got;
            held.push(self.line(l, got as u32));
        }
        if held.is_empty() || (!allow_partial && !short.is_empty()) {
            return Err(short);
        }
        Ok(Event::ReservationHeld {
            id,
            lines: held,
            created_ms: now,
            expires_at_ms: expires_at(now, ttl_s),
            idem,
            by: None,
        })
    }

    fn line(&self, l: &LineRequest, qty: u32) -> Line {
        Line {
            sku: self
                .catalog
                .sku(l.sku)
                .map(|s| s.0.clone())
                .expect("resolved sku"),
            location: self
                .catalog
                .location(l.location)
                .map(|s| s.0.clone())
                .expect("resolved location"),
            qty,
            requested: l.qty,
            backordered: 0,
            eta_ms: 0,
        }
    }

    fn shortage(&self, l: &LineRequest, available: i64) -> Shortage {
        let line = self.line(l, 0);
        Shortage {
            sku: line.sku,
            location: line.location,
            requested: l.qty,
            available,
        }
    }

    /// Decides a transition of one reservation. `Ok(None)`: nothing to write.
    pub fn decide_transition(
        &self,
        id: &ReservationId,
        t: Transition,
        now: TimeMs,
    ) -> Result<Option<Event>, TransitionRefused> {
        let r = self
            .reservations
            .get(id)
            .ok_or(TransitionRefused::NotFound)?;
        transition_event(r, t, (now, &self.catalog), None)
    }

    /// Decides a count of one record at `now`, taken then or (`counted_at`)
    /// earlier: on_hand becomes the count plus what moved since.
    pub fn decide_count(
        &self,
        sku: SkuIdx,
        loc: LocIdx,
        on_hand: i64,
        safety_stock: i64,
        counted_at: Option<TimeMs>,
        now: TimeMs,
    ) -> Result<Count, LateCountRefused> {
        let target = self
            .moves
            .count_target(sku, loc, on_hand, counted_at, now)?;
        let d = self
            .stock
            .get_or_empty(sku, loc)
            .decide_count(target, safety_stock);
        let line = self.line(
            &LineRequest {
                sku,
                location: loc,
                qty: 0,
            },
            0,
        );
        Ok(Count {
            sku: line.sku,
            location: line.location,
            on_hand,
            safety_stock,
            on_hand_delta: d.on_hand,
            safety_stock_delta: d.safety_stock,
            counted_at,
        })
    }

    /// Decides a step of transfer `id` at `now`: `Ok(None)` when it was
    /// taken already (a retry). A shipment takes every line or none, and
    /// only units free at the sender (neither reserved nor unsellable:
    /// safety stock is a margin on what is sold online, not units kept
    /// back from a transfer).
    pub fn decide_transfer(
        &self,
        id: &str,
        fact: TransferFact,
        now: TimeMs,
    ) -> Result<Option<Event>, TransferRefused> {
        let t = self.transfers.get(id).ok_or(TransferRefused::NotFound)?;
        let step = fact.step().ok_or(TransferRefused::NotFound)?;
        match t.decide(&step).map_err(TransferRefused::Step)? {
            StepDecision::Unchanged => return Ok(None),
            StepDecision::To(_) => {}
        }
        if fact == TransferFact::Shipped {
            let from = self
                .catalog
                .location_idx(t.from.as_str())
                .ok_or(TransferRefused::NotFound)?;
            let short: Vec<(SkuId, i64)> = t
                .lines
                .iter()
                .filter_map(|l| {
                    let s = self.catalog.sku_idx(l.sku.as_str())?;
                    let rec = self.stock.get_or_empty(s, from);
                    let free = rec.decide_hold_free(i64::from(l.qty)).err()?;
                    Some((l.sku.clone(), free))
                })
                .collect();
            if !short.is_empty() {
                return Err(TransferRefused::Short(short));
            }
        }
        Ok(Some(Event::Transfer {
            id: id.to_string(),
            step: fact,
            at_ms: now,
            by: None,
        }))
    }

    /// Reservations held past their expiry at `now`.
    pub fn due(&self, now: TimeMs) -> Vec<ReservationId> {
        let mut v: Vec<_> = self
            .reservations
            .values()
            .filter(|r| r.is_due(now))
            .map(|r| r.id.clone())
            .collect();
        v.sort();
        v
    }

    /// Forgets idempotency keys first used before `cutoff_ms` (api.md keeps
    /// them at least 24 hours; snapshots drop the older ones), and the keys
    /// of keyed adjustments made before it.
    pub fn forget_idempotency_before(&mut self, cutoff_ms: TimeMs) -> usize {
        let before = self.idem.len() + self.adjust_keys.len();
        self.idem.retain(|_, e| e.created_ms >= cutoff_ms);
        self.adjust_keys.retain(|_, k| k.at_ms >= cutoff_ms);
        before - self.idem.len() - self.adjust_keys.len()
    }

    /// Forgets reservations that finished (released, expired, fulfilled)
    /// before `cutoff_ms`, as the books do.
    pub fn forget_finished_before(&mut self, cutoff_ms: TimeMs) -> usize {
        let before = self.reservations.len();
        self.reservations
            .retain(|_, r| r.status.is_live() || r.updated_ms >= cutoff_ms);
        before - self.reservations.len()
    }

    /// The latest time any record of this state carries (a clock-free "now").
    pub fn latest_ms(&self) -> TimeMs {
        let reservations = self
            .reservations
            .values()
            .map(|r| r.updated_ms.max(r.created_ms));
        let orders = self.orders.values().map(|o| o.updated_ms.max(o.created_ms));
        reservations.chain(orders).max().unwrap_or(0)
    }

    /// Takes out the orders that may leave memory at `now` (finished and
    /// idle: `Order::is_passivable`), for the order archive.
    pub fn take_passivable(&mut self, now: TimeMs) -> Vec<(String, super::order::Order)> {
        let ids: Vec<String> = self
            .orders
            .iter()
            .filter(|(_, o)| o.is_passivable(now))
            .map(|(id, _)| id.clone())
            .collect();
        ids.into_iter()
            .filter_map(|id| self.orders.remove(&id).map(|o| (id, o)))
            .collect()
    }

    /// The invariants of ARCHITECTURE.md that a state can show by itself.
    pub fn check_invariants(&self) -> Result<(), String> {
        check_reserved(&self.catalog, &self.stock, self.reservations.values())?;
        self.check_in_transit()?;
        self.check_incoming()
    }

    /// Each record's units in transit are its shipped transfers' lines.
    fn check_in_transit(&self) -> Result<(), String> {
        let mut want: AHashMap<(SkuIdx, LocIdx), i64> = AHashMap::new();
        for t in self.transfers.values() {
            if t.status != TransferStatus::Shipped {
                continue;
            }
            for l in &t.lines {
                let (s, c) = self
                    .sku_loc(&l.sku, &t.to)
                    .map_err(|_| "transfer of an unknown sku or place")?;
                *want.entry((s, c)).or_default() += i64::from(l.qty);
            }
        }
        self.check_figure("in transit", want, |r| r.in_transit)
    }

    /// Each record's incoming units are what its expected supplies still
    /// bring, and its earliest time expected theirs.
    fn check_incoming(&self) -> Result<(), String> {
        // One pass: the units and the earliest time per record.
        let mut want: AHashMap<(SkuIdx, LocIdx), i64> = AHashMap::new();
        let mut eta: AHashMap<(SkuIdx, LocIdx), TimeMs> = AHashMap::new();
        for sup in self.supplies.values() {
            for (sku, q) in sup.incoming() {
                let (s, c) = self
                    .sku_loc(sku, &sup.location)
                    .map_err(|_| "supply of an unknown sku or place")?;
                *want.entry((s, c)).or_default() += i64::from(q);
                let e = eta.entry((s, c)).or_insert(sup.expected_ms);
                *e = (*e).min(sup.expected_ms);
            }
        }
        for ((s, c), at) in eta {
            let r = self.stock.get_or_empty(s, c);
            if r.incoming_eta != at {
                return Err(format!(
                    "record sku#{s} loc#{c}: expected at {} but its supplies say {at}",
                    r.incoming_eta
                ));
            }
        }
        self.check_figure("incoming", want, |r| r.incoming)
    }

    /// Each record's `figure` is what `want` says (none: 0).
    fn check_figure(
        &self,
        name: &str,
        mut want: AHashMap<(SkuIdx, LocIdx), i64>,
        figure: impl Fn(&StockRecord) -> i64,
    ) -> Result<(), String> {
        for (s, r) in self.stock.iter().filter(|(_, r)| figure(r) != 0) {
            let w = want.remove(&(s, r.location)).unwrap_or(0);
            if figure(&r) != w {
                return Err(format!(
                    "record sku#{s} loc#{}: {name} {} but its sources say {w}",
                    r.location,
                    figure(&r)
                ));
            }
        }
        match want.into_iter().find(|(_, q)| *q != 0) {
            Some(((s, l), q)) => Err(format!("{name} {q} of sku#{s} loc#{l} not on its record")),
            None => Ok(()),
        }
    }
}

/// The event a transition writes, if any, on `by`'s word. Shared by the
/// model and the book.
pub fn transition_event(
    r: &Reservation,
    t: Transition,
    (now, catalog): (TimeMs, &Catalog),
    by: Option<&By>,
) -> Result<Option<Event>, TransitionRefused> {
    let decided = r
        .decide(t, now)
        .map_err(|NotHeld(s)| TransitionRefused::NotHeld(s))?;
    // A fulfilment the status allows, of units not all arrived, or of a
    // preorder before its release.
    if let Decision::Change {
        status: Status::Fulfilled,
        ..
    } = &decided
    {
        let backordered = r.backordered();
        if backordered > 0 {
            return Err(TransitionRefused::Backordered(backordered));
        }
        if let Some((sku, release_ms)) = r.unreleased(catalog, now) {
            return Err(TransitionRefused::NotReleased(sku, release_ms));
        }
    }
    Ok(match decided {
        Decision::Unchanged => None,
        Decision::Change {
            status: Status::Held,
            expires_at_ms,
        } => Some(Event::ReservationExtended {
            id: r.id.clone(),
            expires_at_ms,
            at_ms: now,
        }),
        Decision::Change { status, .. } => Some(Event::ReservationStatus {
            id: r.id.clone(),
            status,
            at_ms: now,
            by: by.cloned(),
        }),
    })
}

/// `0 <= reserved` and `reserved == sum of held and confirmed lines` (on
/// hand) for every record, and its `backordered` the sum of their units
/// not arrived.
pub fn check_reserved<'a>(
    catalog: &Catalog,
    stock: &StockTable,
    reservations: impl Iterator<Item = &'a Reservation>,
) -> Result<(), String> {
    let mut sums: AHashMap<(SkuIdx, LocIdx), (i64, i64)> = AHashMap::new();
    for r in reservations.filter(|r| r.status.is_live()) {
        for l in &r.lines {
            let s = catalog
                .sku_idx(l.sku.as_str())
                .ok_or("line of unknown sku")?;
            let c = catalog
                .location_idx(l.location.as_str())
                .ok_or("line of unknown location")?;
            let e = sums.entry((s, c)).or_insert((0, 0));
            e.0 += l.on_hand();
            e.1 += i64::from(l.backordered);
        }
    }
    for (s, r) in stock.iter() {
        let (want, backordered) = sums.remove(&(s, r.location)).unwrap_or((0, 0));
        if r.reserved != want || r.reserved < 0 {
            return Err(format!(
                "record sku#{s} loc#{}: reserved {} but live lines sum to {want}",
                r.location, r.reserved
            ));
        }
        if r.backordered != backordered {
            return Err(format!(
                "record sku#{s} loc#{}: backordered {} but live lines sum to {backordered}",
                r.location, r.backordered
            ));
        }
    }
    if let Some(((s, l), q)) = sums.into_iter().find(|(_, q)| *q != (0, 0)) {
        return Err(format!(
            "live lines of {q:?} on sku#{s} loc#{l} without a record"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_not_arrived_are_never_fulfilled_but_may_be_confirmed_or_released() {
        let line = Line {
            sku: SkuId::parse("A").expect("id"),
            location: LocationId::parse("S").expect("id"),
            qty: 3,
            requested: 3,
            backordered: 1,
            eta_ms: 0,
        };
        let mut r = Reservation::held(ReservationId::parse("r1").expect("id"), vec![line], 0, 1000);
        assert_eq!(
            transition_event(&r, Transition::Fulfil, (10, &Catalog::default()), None),
            Err(TransitionRefused::NotHeld(Status::Held)),
            "the status's refusal first, as api.md's table says"
        );
        assert!(transition_event(&r, Transition::Confirm, (10, &Catalog::default()), None).is_ok());
        r.status = Status::Confirmed;
        assert_eq!(
            transition_event(&r, Transition::Fulfil, (10, &Catalog::default()), None),
            Err(TransitionRefused::Backordered(1))
        );
        assert!(transition_event(&r, Transition::Release, (10, &Catalog::default()), None).is_ok());
        let at = LocationId::parse("S").expect("id");
        r.convert(&SkuId::parse("A").expect("id"), &at, 5);
        assert!(transition_event(&r, Transition::Fulfil, (10, &Catalog::default()), None).is_ok());
    }

    #[test]
    fn idempotency_keys_are_forgotten_after_the_cutoff_only() {
        let mut m = Model::default();
        for (i, t) in [(0u64, 1_000i64), (1, 5_000)] {
            m.idem.insert(
                (i, format!("k{i}")),
                IdemEntry {
                    body_hash: 0,
                    reservation: ReservationId::parse(&format!("r{i}")).expect("id"),
                    expires_at_ms: t,
                    lines: Vec::new(),
                    created_ms: t,
                },
            );
        }
        assert_eq!(m.forget_idempotency_before(2_000), 1);
        assert!(m.idem.contains_key(&(1, "k1".to_string())));
        assert_eq!(m.forget_idempotency_before(2_000), 0);
    }

    #[test]
    fn only_finished_reservations_are_forgotten() {
        let mut m = Model::default();
        for (i, status) in [
            Status::Released,
            Status::Confirmed,
            Status::Fulfilled,
            Status::Held,
        ]
        .into_iter()
        .enumerate()
        {
            let id = ReservationId::parse(&format!("r{i}")).expect("id");
            m.reservations.insert(
                id.clone(),
                Reservation {
                    id,
                    lines: Vec::new(),
                    status,
                    created_ms: 0,
                    expires_at_ms: 10,
                    updated_ms: if i == 2 { 5_000 } else { 1_000 },
                },
            );
        }
        assert_eq!(m.forget_finished_before(2_000), 1);
        let left: Vec<&str> = {
            let mut v: Vec<&str> = m.reservations.keys().map(|k| k.as_str()).collect();
            v.sort();
            v
        };
        assert_eq!(left, vec!["r1", "r2", "r3"]);
    }
}
