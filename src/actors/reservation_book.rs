//! `ReservationBook`: one shard of the reservations, keyed by id. It alone
//! decides confirm, release, fulfil, extend and expiry, so a confirm and an
//! expiry can never both win.

use actix::prelude::*;
use ahash::AHashMap;
use parking_lot::RwLock;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

use super::stock_shard::{send_deltas, ApplyDeltas, Commit, Insert, StockShard};
use crate::clock::Clock;
use crate::collections::{ChunkedQueue, SegmentedMap};
use crate::domain::catalog::Catalog;
use crate::domain::catalog::{LocIdx, SkuIdx};
use crate::domain::event::Event;
use crate::domain::event::SupplyFact;
use crate::domain::history::By;
use crate::domain::ids::{LocationId, ReservationId, SkuId};
use crate::domain::model::{transition_event, TransitionRefused};
use crate::domain::reservation::{
    add_conversions, decide_conversions, Line, Reservation, SplitRefused, Status, Transition,
};
use crate::domain::stock::StockDelta;
use crate::domain::TimeMs;
use crate::limits::{EXPIRY_BATCH_MAX, EXPIRY_TICK_MS, FINISHED_RETENTION_MS, MAILBOX_CAPACITY};
use crate::metrics::Metrics;
use crate::persistence::{Durable, Journal, JournalError};
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};

/// Whether `r` waits for supply to arrive (`ReservationBook::backorders`).
pub fn waits_for_supply(r: &Reservation) -> bool {
    r.status.is_live() && r.backordered() > 0
}

pub struct ReservationBook {
    /// Segmented: a book of a few hundred thousand reservations grows
    /// without one insert moving them all (crate::collections).
    reservations: SegmentedMap<ReservationId, Reservation>,
    /// Held reservations by expiry: the expiry tick pops from the front.
    expiries: BTreeSet<(TimeMs, ReservationId)>,
    /// Finished reservations in the order they finished: forgotten after
    /// `FINISHED_RETENTION_MS`.
    finished: ChunkedQueue<(TimeMs, ReservationId)>,
    /// Live reservations with units sold against supply not arrived, in
    /// the order they were made (the backorder book's only,
    /// `BACKORDER_BOOK`): a delivery converts them first-in first-out.
    backorders: BTreeSet<(TimeMs, ReservationId)>,
    journal: Journal,
    stock: Vec<Addr<StockShard>>,
    catalog: Arc<RwLock<Catalog>>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    /// Supply deliveries journaled by the backorder book (`Receive`).
    deliveries: Arc<AtomicU64>,
}

impl ReservationBook {
    pub fn new(
        reservations: AHashMap<ReservationId, Reservation>,
        journal: Journal,
        stock: Vec<Addr<StockShard>>,
        catalog: Arc<RwLock<Catalog>>,
        clock: Arc<dyn Clock>,
        (metrics, deliveries): (Arc<Metrics>, Arc<AtomicU64>),
    ) -> Self {
        let expiries = reservations
            .values()
            .filter(|r| r.status == Status::Held)
            .map(|r| (r.expires_at_ms, r.id.clone()))
            .collect();
        let mut finished: Vec<(TimeMs, ReservationId)> = reservations
            .values()
            .filter(|r| !r.status.is_live())
            .map(|r| (r.updated_ms, r.id.clone()))
            .collect();
        finished.sort();
        let backorders = reservations
            .values()
            .filter(|r| waits_for_supply(r))
            .map(|r| (r.created_ms, r.id.clone()))
            .collect();
        Self {
            reservations: reservations.into_iter().collect(),
            expiries,
            finished: finished.into_iter().collect(),
            backorders,
            journal,
            stock,
            catalog,
            clock,
            metrics,
            deliveries,
        }
    }

    /// Sends the stock effects of moving `r` to `to` at `at_ms` to the
    /// stock shards.
    fn send_effects(&self, r: &Reservation, to: Status, at_ms: TimeMs, ticket: u64) {
        let catalog = self.catalog.read();
        let n = self.stock.len();
        let mut per_shard: Vec<Vec<_>> = vec![Vec::new(); n];
        for (line, d) in r.stock_effects(to) {
            // Lines were validated against the catalog when held, and the
            // catalog never forgets an entry.
            if let (Some(s), Some(l)) = (
                catalog.sku_idx(line.sku.as_str()),
                catalog.location_idx(line.location.as_str()),
            ) {
                per_shard[s as usize % n].push((s, l, d));
            }
        }
        for (i, deltas) in per_shard.into_iter().enumerate() {
            if !deltas.is_empty() {
                self.stock[i].do_send(ApplyDeltas {
                    deltas,
                    at_ms,
                    sale: to == Status::Fulfilled,
                    ticket: Some(ticket),
                });
            }
        }
    }

    /// Applies a journaled transition event (its journal ticket) to the
    /// book (and the stock).
    fn apply(&mut self, e: &Event, ticket: u64) {
        match e {
            Event::ReservationStatus {
                id, status, at_ms, ..
            } => {
                if let Some(r) = self.reservations.get(id) {
                    self.send_effects(r, *status, *at_ms, ticket);
                    self.expiries.remove(&(r.expires_at_ms, id.clone()));
                    if !status.is_live() {
                        self.backorders.remove(&(r.created_ms, id.clone()));
                    }
                }
                if let Some(r) = self.reservations.get_mut(id) {
                    r.status = *status;
                    r.updated_ms = *at_ms;
                }
                if !status.is_live() {
                    self.finished.push_back((*at_ms, id.clone()));
                }
                self.metrics.reservation_transition(*status);
            }
            Event::ReservationExtended {
                id,
                expires_at_ms,
                at_ms,
            } => {
                if let Some(r) = self.reservations.get_mut(id) {
                    self.expiries.remove(&(r.expires_at_ms, id.clone()));
                    r.expires_at_ms = *expires_at_ms;
                    r.updated_ms = *at_ms;
                    self.expiries.insert((*expires_at_ms, id.clone()));
                }
            }
            _ => {}
        }
    }

    /// Forgets reservations finished more than `FINISHED_RETENTION_MS` ago.
    fn forget_finished(&mut self, now: TimeMs) {
        for _ in 0..EXPIRY_BATCH_MAX {
            match self.finished.front() {
                Some((at, _)) if *at + FINISHED_RETENTION_MS <= now => {}
                _ => break,
            }
            if let Some((_, id)) = self.finished.pop_front() {
                if self
                    .reservations
                    .get(&id)
                    .is_some_and(|r| !r.status.is_live())
                {
                    self.reservations.remove(&id);
                }
            }
        }
    }

    fn expire_due(&mut self) {
        let now = self.clock.now_ms();
        self.forget_finished(now);
        for _ in 0..EXPIRY_BATCH_MAX {
            let Some((at, id)) = self.expiries.first().cloned() else {
                break;
            };
            if at > now {
                break;
            }
            let Some(r) = self.reservations.get(&id) else {
                self.expiries.remove(&(at, id));
                continue;
            };
            match transition_event(r, Transition::Expire, (now, &Catalog::default()), None) {
                Ok(Some(e)) => {
                    let Ok(ticket) = self.journal.append_unacknowledged(&e) else {
                        // Queue full or journal poisoned: try again next tick.
                        break;
                    };
                    self.apply(&e, ticket);
                }
                _ => {
                    self.expiries.remove(&(at, id));
                }
            }
        }
    }
}

impl Actor for ReservationBook {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
        ctx.run_interval(Duration::from_millis(EXPIRY_TICK_MS), |book, _| {
            book.expire_due()
        });
    }
}

/// One stock shard's holds of a cart to commit: (shard, its records' changes).
pub type ShardCommit = (usize, Vec<(SkuIdx, LocIdx, StockDelta)>);

/// Records a new reservation whose lines the stock shards hold: journals the
/// cart as one record and answers when it is queued; the caller awaits the
/// `Durable` before answering its client.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Create {
    pub event: Event,
    pub reservation: Reservation,
    /// Each stock shard's provisional holds of the cart, committed by the
    /// book as it journals the cart: so any change the book makes to
    /// those records later (a conversion) reaches the shard after them.
    pub commits: Vec<ShardCommit>,
    /// A cart sold ahead of supply: the deliveries journaled before its
    /// holds were decided. Another since, and it is not recorded (`None`):
    /// it may have been decided without the units that arrived.
    pub deliveries_seen: Option<u64>,
    /// The record's durability and its journal ticket; `None`: overtaken.
    pub reply: oneshot::Sender<Result<Option<(Durable, u64)>, JournalError>>,
}

impl Handler<Create> for ReservationBook {
    type Result = ();
    fn handle(&mut self, m: Create, _: &mut Context<Self>) {
        // A chosen id (a cluster cart's part) must be new: a second
        // reservation under one id would hide the first one's units.
        if self.reservations.get(&m.reservation.id).is_some() {
            let _ = m.reply.send(Err(JournalError::Encode(format!(
                "reservation id {} is taken",
                m.reservation.id
            ))));
            return;
        }
        if m.deliveries_seen
            .is_some_and(|d| d != self.deliveries.load(SeqCst))
        {
            let _ = m.reply.send(Ok(None));
            return;
        }
        let r = self
            .journal
            .append_ticketed(&m.event)
            .inspect(|(_, ticket)| {
                for (shard, lines) in m.commits {
                    // Must not be dropped: bounded by the carts in flight.
                    self.stock[shard].do_send(Commit {
                        lines,
                        at_ms: m.reservation.created_ms,
                        ticket: *ticket,
                    });
                }
                self.keep(m.reservation);
            });
        let _ = m.reply.send(r.map(Some));
    }
}

impl Handler<Insert> for ReservationBook {
    type Result = ();
    fn handle(&mut self, m: Insert, _: &mut Context<Self>) {
        self.keep(m.0);
    }
}

impl ReservationBook {
    /// Keeps a new held reservation (its record journaled).
    fn keep(&mut self, res: Reservation) {
        self.expiries.insert((res.expires_at_ms, res.id.clone()));
        if waits_for_supply(&res) {
            self.backorders.insert((res.created_ms, res.id.clone()));
        }
        self.reservations.insert(res.id.clone(), res);
    }
}

pub type TransitionReply = Result<Result<(Reservation, Durable), TransitionRefused>, JournalError>;

/// Confirm, release, fulfil or extend a reservation.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Transit {
    pub id: ReservationId,
    pub transition: Transition,
    pub now: TimeMs,
    /// Whose word (none: the engine's own, an order's step).
    pub by: Option<By>,
    pub reply: oneshot::Sender<TransitionReply>,
}

impl Handler<Transit> for ReservationBook {
    type Result = ();
    fn handle(&mut self, m: Transit, _: &mut Context<Self>) {
        let decided = self.reservations.get(&m.id).map(|r| {
            let c = self.catalog.read();
            (
                r,
                transition_event(r, m.transition, (m.now, &c), m.by.as_ref()),
            )
        });
        let reply = match decided {
            None => Ok(Err(TransitionRefused::NotFound)),
            Some((r, decided)) => match decided {
                Err(refused) => Ok(Err(refused)),
                // Nothing changes, but the write that made it so may still be
                // in flight: answer once everything queued is durable.
                Ok(None) => self.journal.barrier().map(|d| Ok((r.clone(), d))),
                Ok(Some(e)) => match self.journal.append_ticketed(&e) {
                    Err(err) => Err(err),
                    Ok((d, ticket)) => {
                        self.apply(&e, ticket);
                        let r = self.reservations.get(&m.id).cloned();
                        Ok(r.map(|r| (r, d)).ok_or(TransitionRefused::NotFound))
                    }
                },
            },
        };
        let _ = m.reply.send(reply);
    }
}

pub type SplitReply = Result<Result<(Vec<Reservation>, Durable), SplitRefused>, JournalError>;

/// Turns a held reservation into parts (an order's shipments), each a new
/// reservation of this same book. The book that holds `from` decides, so a
/// split and an expiry or a release can never both win; no stock moves.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Split {
    pub from: ReservationId,
    pub into: Vec<(ReservationId, Vec<Line>)>,
    pub now: TimeMs,
    pub expires_at_ms: TimeMs,
    pub reply: oneshot::Sender<SplitReply>,
}

impl Handler<Split> for ReservationBook {
    type Result = ();
    fn handle(&mut self, m: Split, _: &mut Context<Self>) {
        let reply = match self.reservations.get(&m.from) {
            None => Ok(Err(SplitRefused::NotHeld(Status::Released))),
            Some(r) => {
                let mut parts: Vec<Vec<Line>> = m.into.iter().map(|p| p.1.clone()).collect();
                match r.decide_split(&parts, m.now) {
                    Err(refused) => Ok(Err(refused)),
                    Ok(()) => {
                        r.spread_backorders(&mut parts);
                        let into: Vec<(ReservationId, Vec<Line>)> =
                            m.into.into_iter().map(|p| p.0).zip(parts).collect();
                        let e = Event::ReservationSplit {
                            from: m.from.clone(),
                            into: into.clone(),
                            at_ms: m.now,
                            expires_at_ms: m.expires_at_ms,
                        };
                        self.journal.append(&e).map(|d| {
                            Ok((self.apply_split(&m.from, into, m.now, m.expires_at_ms), d))
                        })
                    }
                }
            }
        };
        let _ = m.reply.send(reply);
    }
}

impl ReservationBook {
    /// The book's side of a journaled split: `from` released without stock
    /// effects (the parts hold the same units), the parts held.
    fn apply_split(
        &mut self,
        from: &ReservationId,
        into: Vec<(ReservationId, Vec<Line>)>,
        now: TimeMs,
        expires_at_ms: TimeMs,
    ) -> Vec<Reservation> {
        // The parts were made when `from` was: a backorder waits its turn.
        let made = self.reservations.get(from).map_or(now, |r| r.created_ms);
        if let Some(r) = self.reservations.get_mut(from) {
            self.expiries.remove(&(r.expires_at_ms, from.clone()));
            r.status = Status::Released;
            r.updated_ms = now;
            self.finished.push_back((now, from.clone()));
            self.backorders.remove(&(r.created_ms, from.clone()));
            self.metrics.reservation_transition(Status::Released);
        }
        into.into_iter()
            .map(|(id, lines)| {
                let mut part = Reservation::held(id, lines, made, expires_at_ms);
                part.updated_ms = now;
                self.keep(part.clone());
                part
            })
            .collect()
    }
}

/// A supply's delivery, for the backorder book (`BACKORDER_BOOK`) to
/// journal: it decides what the units arrived convert of the backorders
/// waiting there, first-in first-out, writes both as one record, and
/// moves the records (the delivery's `deltas` and the conversions).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Receive {
    pub supply: String,
    pub location: LocationId,
    pub lines: Vec<(SkuId, u32)>,
    pub key: Option<String>,
    /// The delivery's record changes (`Supplies::with_eta`).
    pub deltas: Vec<(SkuId, LocationId, StockDelta)>,
    pub at_ms: TimeMs,
    pub by: Option<By>,
    pub reply: oneshot::Sender<Result<Durable, JournalError>>,
}

impl Handler<Receive> for ReservationBook {
    type Result = ();
    fn handle(&mut self, m: Receive, _: &mut Context<Self>) {
        let converted = decide_conversions(
            &m.location,
            &m.lines,
            self.backorders
                .iter()
                .filter_map(|(_, id)| self.reservations.get(id)),
        );
        let mut deltas = m.deltas;
        add_conversions(&mut deltas, &m.location, &converted);
        let event = Event::Supply {
            id: m.supply,
            step: SupplyFact::Received {
                lines: m.lines,
                key: m.key,
                converted: converted.clone(),
            },
            at_ms: m.at_ms,
            by: m.by,
        };
        let (durable, ticket) = match self.journal.append_ticketed(&event) {
            Ok(x) => x,
            Err(e) => {
                let _ = m.reply.send(Err(e));
                return;
            }
        };
        for c in &converted {
            self.convert(&c.reservation, &c.sku, &m.location, c.units);
        }
        let units: u64 = converted.iter().map(|c| u64::from(c.units)).sum();
        self.metrics
            .backorder_units_converted
            .fetch_add(units, Relaxed);
        let named = {
            let catalog = self.catalog.read();
            deltas
                .into_iter()
                .filter_map(|(sku, loc, d)| {
                    // The delivery was checked against the catalog, which
                    // never forgets an entry.
                    Some((
                        catalog.sku_idx(sku.as_str())?,
                        catalog.location_idx(loc.as_str())?,
                        d,
                    ))
                })
                .collect::<Vec<_>>()
        };
        send_deltas(&self.stock, m.at_ms, Some(ticket), named);
        // After the changes are on their way to the shards: a hold decided
        // after this count reads them (`Create::deliveries_seen`).
        self.deliveries.fetch_add(1, SeqCst);
        let _ = m.reply.send(Ok(durable));
    }
}

impl ReservationBook {
    /// `units` of reservation `id`'s lines of `sku` at `location` arrived.
    fn convert(&mut self, id: &ReservationId, sku: &SkuId, location: &LocationId, units: u32) {
        if let Some(r) = self.reservations.get_mut(id) {
            r.convert(sku, location, units);
            if !waits_for_supply(r) {
                self.backorders.remove(&(r.created_ms, id.clone()));
            }
        }
    }
}

/// Reads one reservation.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Get {
    pub id: ReservationId,
    pub reply: oneshot::Sender<Option<Reservation>>,
}

impl Handler<Get> for ReservationBook {
    type Result = ();
    fn handle(&mut self, m: Get, _: &mut Context<Self>) {
        let _ = m.reply.send(self.reservations.get(&m.id).cloned());
    }
}

/// A copy of every reservation of the shard (invariant checks, snapshots).
#[derive(Message)]
#[rtype(result = "()")]
pub struct DumpBook {
    pub reply: oneshot::Sender<Vec<Reservation>>,
}

impl Handler<DumpBook> for ReservationBook {
    type Result = ();
    fn handle(&mut self, m: DumpBook, _: &mut Context<Self>) {
        let _ = m.reply.send(self.reservations.values().cloned().collect());
    }
}
