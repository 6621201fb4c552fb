//! `OrderBook`: one shard of the orders, keyed by id, as `ReservationBook`
//! is of the reservations. It alone decides, journals and applies its
//! orders' changes, one at a time: one order is one state machine, never
//! two writers. It tells the location actors what its orders do (today's
//! capacity, open pickups), sends a return's restock to the stock shards,
//! and passivates its finished orders (`Order::passivable_from`) once the
//! snapshotter has archived them.

use actix::prelude::*;
use ahash::AHashMap;
use parking_lot::RwLock;
use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

use super::location::{LiveState, LiveView, LocationActor, Locations, Pickup, TakeOrders};
use super::stock_shard::{send_deltas, StockShard};
use crate::clock::Clock;
use crate::domain::catalog::Catalog;
use crate::domain::event::Event;
use crate::domain::ids::LocationId;
use crate::domain::order::{Order, OrderEvent, Refused};
use crate::domain::TimeMs;
use crate::limits::{MAILBOX_CAPACITY, ORDER_SWEEP_BATCH, ORDER_SWEEP_EVERY_S};
use crate::metrics::Metrics;
use crate::persistence::snapshot::SnapshotStore;
use crate::persistence::{Durable, Journal, JournalError};

/// An order with this id exists already.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderExists(pub Order);

/// The book (of `n`) that keeps order `id`.
pub fn order_book_of(id: &str, n: usize) -> usize {
    (crate::domain::hash::fnv1a64(id.as_bytes()) % n as u64) as usize
}

/// What an order book needs beside its orders.
pub struct OrderBookStart {
    pub orders: AHashMap<String, Order>,
    pub journal: Journal,
    /// The order archive: `None` without snapshots (nothing passivates).
    pub archive: Option<Arc<SnapshotStore>>,
    pub stock: Vec<Addr<StockShard>>,
    pub locations: Arc<Locations>,
    pub catalog: Arc<RwLock<Catalog>>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
}

/// A book's orders in memory: written by the book alone (one order, one
/// writer), read by the engine without a message (`Engine::order`): a
/// message per read cost an order request a thread wake-up more, about a
/// tenth of its CPU (BENCHMARKS.md, "Order books").
pub type OrderMap = Arc<RwLock<AHashMap<String, Order>>>;

pub struct OrderBook {
    orders: OrderMap,
    /// Finished orders by when they may leave memory. An entry whose order
    /// has changed since is stale and dropped when met (the change put a
    /// new one in if the order is still finished).
    passivable: BTreeSet<(TimeMs, String)>,
    start: OrderBookStart,
}

impl OrderBook {
    /// The book, and its orders as the engine reads them.
    pub fn new(mut start: OrderBookStart) -> (Self, OrderMap) {
        let orders = std::mem::take(&mut start.orders);
        let passivable = orders
            .values()
            .filter_map(|o| Some((o.passivable_from()?, o.id.clone())))
            .collect();
        let orders: OrderMap = Arc::new(RwLock::new(orders));
        let book = OrderBook {
            orders: orders.clone(),
            passivable,
            start,
        };
        (book, orders)
    }

    /// Brings a passivated order back to memory (a change is coming);
    /// `false`: no such order.
    fn activate(&mut self, id: &str) -> Result<bool, JournalError> {
        if !self.orders.read().contains_key(id) {
            let Some(o) = self.archived(id)? else {
                return Ok(false);
            };
            self.start
                .metrics
                .orders_activated
                .fetch_add(1, Ordering::Relaxed);
            self.orders.write().insert(id.to_string(), o);
        }
        Ok(true)
    }

    fn archived(&self, id: &str) -> Result<Option<Order>, JournalError> {
        match &self.start.archive {
            Some(a) => a.archived_order(id, None),
            None => Ok(None),
        }
    }

    /// Tells the locations what `o` now takes from them, against what it
    /// took before (`was`: capacity today, an open pickup), and notes when
    /// it may leave memory. Answers when the locations told have taken it
    /// in (`Told`).
    fn after_change(&mut self, was: Footprint, o: &Order) -> Told {
        let now = Footprint::of(o);
        let mut told: Vec<(LocationId, Addr<LocationActor>)> = Vec::new();
        let mut tell = |l: &LocationId| {
            let a = self.start.locations.of(l);
            if !told.iter().any(|t| &t.0 == l) {
                told.push((l.clone(), a.clone()));
            }
            a
        };
        if was.takes_capacity != now.takes_capacity {
            let delta = if now.takes_capacity { 1 } else { -1 };
            for l in o.capacity_locations() {
                tell(&l).do_send(TakeOrders {
                    at_ms: o.created_ms,
                    delta,
                });
            }
        }
        if was.pickup != now.pickup {
            for (l, open) in [(&was.pickup, false), (&now.pickup, true)] {
                if let Some(l) = l {
                    tell(l).do_send(Pickup {
                        order: o.id.clone(),
                        placed_ms: o.created_ms,
                        open,
                    });
                }
            }
        }
        if let Some(at) = o.passivable_from() {
            self.passivable.insert((at, o.id.clone()));
        }
        Told(
            told.into_iter()
                .map(|(_, a)| {
                    let (tx, rx) = oneshot::channel();
                    a.do_send(LiveState {
                        pickups: 0,
                        reply: tx,
                    });
                    rx
                })
                .collect(),
        )
    }

    /// The stock side of a journaled return: on_hand grows where the goods
    /// came back (replay does the same from the order's record).
    fn restock(&self, o: &Order, lines: &[(usize, u32)], at: &LocationId, at_ms: TimeMs, t: u64) {
        let c = self.start.catalog.read();
        let Some(l) = c.location_idx(at.as_str()) else {
            return;
        };
        let deltas = o
            .restock(lines)
            .filter_map(|(sku, d)| Some((c.sku_idx(sku.as_str())?, l, d)));
        send_deltas(&self.start.stock, at_ms, Some(t), deltas);
    }

    /// Drops from memory up to `max` of the orders due to leave it that
    /// the snapshotter has archived exactly as they are here. Returns how
    /// many it dropped, and whether due orders are left unexamined.
    fn passivate(&mut self, now: TimeMs, max: usize) -> Result<(usize, bool), JournalError> {
        let Some(archive) = self.start.archive.clone() else {
            return Ok((0, false));
        };
        let due: Vec<(TimeMs, String)> = self
            .passivable
            .iter()
            .take_while(|(at, _)| *at <= now)
            .take(max + 1)
            .cloned()
            .collect();
        let more = due.len() > max;
        let mut dropped = 0;
        for (at, id) in due.into_iter().take(max) {
            let Some(o) = self.orders.read().get(&id).cloned() else {
                self.passivable.remove(&(at, id));
                continue;
            };
            if o.passivable_from() != Some(at) {
                self.passivable.remove(&(at, id));
                continue;
            }
            // Not archived as it is yet: kept, and met again next sweep.
            // (The book is the only writer: nothing changed it meanwhile.)
            if archive.archived_order(&id, None)?.as_ref() == Some(&o) {
                self.orders.write().remove(&id);
                self.passivable.remove(&(at, id));
                dropped += 1;
            }
        }
        if dropped > 0 {
            let m = &self.start.metrics;
            m.orders_passivated
                .fetch_add(dropped as u64, Ordering::Relaxed);
            tracing::info!(orders = dropped, "passivated finished orders");
        }
        Ok((dropped, more))
    }

    /// The periodic sweep: a batch, and the next one soon while a batch
    /// dropped orders and more are due (a bounded stretch of the arbiter
    /// at a time).
    fn sweep(&mut self, ctx: &mut Context<Self>) {
        let now = self.start.clock.now_ms();
        match self.passivate(now, ORDER_SWEEP_BATCH) {
            Ok((dropped, true)) if dropped > 0 => {
                ctx.run_later(Duration::from_millis(10), |b, ctx| b.sweep(ctx));
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "order sweep failed; orders stay in memory"),
        }
    }
}

impl Actor for OrderBook {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
        if self.start.archive.is_some() {
            ctx.run_interval(Duration::from_secs(ORDER_SWEEP_EVERY_S), |b, ctx| {
                b.sweep(ctx)
            });
        }
    }
}

pub type PlaceReply = Result<Result<(Order, Durable, Told), OrderExists>, JournalError>;

/// The location actors an order step told: each answers once it has taken
/// the step in, so that a plan made after the step sees its capacity.
pub struct Told(Vec<oneshot::Receiver<LiveView>>);

impl Told {
    /// Waits until every location told has taken the step in (or is gone
    /// with the engine: nothing to wait for then).
    pub async fn taken_in(self) {
        for rx in self.0 {
            let _ = rx.await;
        }
    }
}

/// Places `order` with the payment's answer `then`, as one journal record:
/// `record`, `Event::Order` of both, encoded by the asker.
#[derive(Message)]
#[rtype(result = "()")]
pub struct PlaceOrder {
    pub order: Order,
    pub then: OrderEvent,
    pub record: Vec<u8>,
    pub reply: oneshot::Sender<PlaceReply>,
}

impl Handler<PlaceOrder> for OrderBook {
    type Result = ();
    fn handle(&mut self, m: PlaceOrder, _: &mut Context<Self>) {
        let reply = self.place(m.order, m.then, m.record);
        let _ = m.reply.send(reply);
    }
}

impl OrderBook {
    fn place(&mut self, order: Order, then: OrderEvent, record: Vec<u8>) -> PlaceReply {
        if let Some(o) = self.orders.read().get(&order.id) {
            return Ok(Err(OrderExists(o.clone())));
        }
        if let Some(o) = self.archived(&order.id)? {
            return Ok(Err(OrderExists(o)));
        }
        let id = order.id.clone();
        let (durable, _) = self.start.journal.append_encoded_ticketed(record)?;
        let mut o = order;
        o.apply(&then);
        let told = self.after_change(Footprint::default(), &o);
        self.orders.write().insert(id, o.clone());
        Ok(Ok((o, durable, told)))
    }

    fn change(&mut self, id: &str, decide: Decide) -> ChangeReply {
        if !self.activate(id)? {
            return Ok(None);
        }
        let mut orders = self.orders.write();
        let Some(o) = orders.get_mut(id) else {
            return Ok(None);
        };
        let e = match decide(o) {
            Err(r) => return Ok(Some(Err(r))),
            Ok(None) => return Ok(Some(Ok((o.clone(), None)))),
            Ok(Some(e)) => e,
        };
        let (durable, ticket) = self.start.journal.append_ticketed(&Event::Order {
            id: id.to_string(),
            events: vec![e.clone()],
        })?;
        let was = Footprint::of(o);
        o.apply(&e);
        let o = o.clone();
        drop(orders);
        // (Owed, on a cluster: another shard's stock takes them.)
        if let OrderEvent::Returned {
            lines,
            location,
            at_ms,
            restock_owed: false,
            ..
        } = &e
        {
            self.restock(&o, lines, location, *at_ms, ticket);
        }
        let told = self.after_change(was, &o);
        Ok(Some(Ok((o, Some((e, durable, told))))))
    }
}

/// What an order takes from its locations: a slot of today's capacity
/// (at each of `capacity_locations`), a place at a pickup counter.
#[derive(Default)]
struct Footprint {
    takes_capacity: bool,
    pickup: Option<LocationId>,
}

impl Footprint {
    fn of(o: &Order) -> Self {
        Footprint {
            takes_capacity: o.takes_capacity(),
            pickup: o.open_pickup().cloned(),
        }
    }
}

/// Decides a change of an order: the event to journal, `None` when nothing
/// changes, or a refusal.
pub type Decide = Box<dyn FnOnce(&Order) -> Result<Option<OrderEvent>, Refused> + Send>;

/// The order after a change, with the event, its record's durability and
/// the locations told (`None`: nothing changed); `None`: no such order.
pub type ChangeReply =
    Result<Option<Result<(Order, Option<(OrderEvent, Durable, Told)>), Refused>>, JournalError>;

/// Decides a change of an order, journals it and applies it. A passivated
/// order is read back into memory first.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ChangeOrder {
    pub id: String,
    pub decide: Decide,
    pub reply: oneshot::Sender<ChangeReply>,
}

impl Handler<ChangeOrder> for OrderBook {
    type Result = ();
    fn handle(&mut self, m: ChangeOrder, _: &mut Context<Self>) {
        let reply = self.change(&m.id, m.decide);
        let _ = m.reply.send(reply);
    }
}

/// Takes what a pass wants of one order into the list.
pub type Pick<T> = Box<dyn Fn(&Order, &mut Vec<T>) + Send>;

/// Collects what `pick` takes from each order in memory: a pass over the
/// book (about a day of orders: finished ones are passivated), for the
/// background jobs and recovery, never for a checkout.
pub struct ScanOrders<T> {
    pub pick: Pick<T>,
    pub reply: oneshot::Sender<Vec<T>>,
}

impl<T: Send + 'static> Message for ScanOrders<T> {
    type Result = ();
}

impl<T: Send + 'static> Handler<ScanOrders<T>> for OrderBook {
    type Result = ();
    fn handle(&mut self, m: ScanOrders<T>, _: &mut Context<Self>) {
        let mut v = Vec::new();
        for o in self.orders.read().values() {
            (m.pick)(o, &mut v);
        }
        let _ = m.reply.send(v);
    }
}

/// How many orders the book holds in memory.
#[derive(Message)]
#[rtype(result = "()")]
pub struct InMemory {
    pub reply: oneshot::Sender<usize>,
}

impl Handler<InMemory> for OrderBook {
    type Result = ();
    fn handle(&mut self, m: InMemory, _: &mut Context<Self>) {
        let _ = m.reply.send(self.orders.read().len());
    }
}

/// Passivates up to `max` due orders now (`OrderBook::passivate`): how
/// many it dropped, and whether more are due.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Passivate {
    pub max: usize,
    pub reply: oneshot::Sender<Result<(usize, bool), JournalError>>,
}

impl Handler<Passivate> for OrderBook {
    type Result = ();
    fn handle(&mut self, m: Passivate, _: &mut Context<Self>) {
        let now = self.start.clock.now_ms();
        let _ = m.reply.send(self.passivate(now, m.max));
    }
}
