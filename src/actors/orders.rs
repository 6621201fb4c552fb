use super::*;

pub(super) fn order_shard(id: &str) -> usize {
    (crate::domain::event::fnv1a64(id.as_bytes()) % ORDER_SHARDS as u64) as usize
}

/// An order with this id exists already.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderExists(pub Order);

/// The engine's order sweeper: every `ORDER_SWEEP_EVERY_S`, drops the
/// orders the snapshotter archived. Holds the engine weakly: it ends with
/// the engine or on `stop`.
pub(super) fn sweep_orders(engine: std::sync::Weak<Inner>, stop: Arc<AtomicBool>) {
    let mut last = std::time::Instant::now();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(std::time::Duration::from_millis(200));
        if last.elapsed() < std::time::Duration::from_secs(crate::limits::ORDER_SWEEP_EVERY_S) {
            continue;
        }
        last = std::time::Instant::now();
        let Some(inner) = engine.upgrade() else {
            return;
        };
        if let Err(e) = Engine(inner).passivate_orders() {
            tracing::warn!(error = %e, "order sweep failed; orders stay in memory");
        }
    }
}

impl Engine {
    /// An order: from memory, or read back from the archive if it was
    /// passivated (without bringing it back: a read changes nothing).
    pub fn order(&self, id: &str) -> Result<Option<Order>, EngineError> {
        if let Some(o) = self.0.orders[order_shard(id)].lock().get(id) {
            return Ok(Some(o.clone()));
        }
        self.archived(id)
    }

    pub(super) fn archived(&self, id: &str) -> Result<Option<Order>, EngineError> {
        match &self.0.archive {
            Some(a) => Ok(a.archived_order(id, None)?),
            None => Ok(None),
        }
    }

    /// The open pickups at `location` (pay and collect orders not yet
    /// collected, cancelled or declined), oldest first, at most `limit`.
    /// A pass over the orders in memory: finished ones are passivated, so
    /// it holds about a day of orders.
    pub fn pickups_at(&self, location: &LocationId, limit: usize) -> Vec<Order> {
        use crate::domain::order::{Delivery, OrderStatus};
        let mut v: Vec<Order> = Vec::new();
        for shard in self.0.orders.iter() {
            for o in shard.lock().values() {
                let here = matches!(&o.delivery, Delivery::Pickup { location: l } if l == location);
                let open = !matches!(
                    o.status(),
                    OrderStatus::Collected
                        | OrderStatus::Cancelled
                        | OrderStatus::PaymentDeclined
                        | OrderStatus::Returned
                );
                if here && open {
                    v.push(o.clone());
                }
            }
        }
        v.sort_by(|a, b| a.created_ms.cmp(&b.created_ms).then(a.id.cmp(&b.id)));
        v.truncate(limit);
        v
    }

    /// Labelled shipments whose parcel its carrier still carries: a
    /// delivery not delivered, a transfer not shipped (at the store, the
    /// store takes over), of orders not cancelled: (order, shipment,
    /// parcel, status, route). A pass over the orders in memory.
    pub fn parcels_in_transit(
        &self,
    ) -> Vec<(
        String,
        u32,
        crate::domain::order::Parcel,
        crate::domain::order::ShipStatus,
        crate::domain::order::Route,
    )> {
        use crate::domain::order::{Route, ShipStatus};
        let mut v = Vec::new();
        for shard in self.0.orders.iter() {
            for o in shard.lock().values().filter(|o| !o.cancelled) {
                for s in &o.shipments {
                    let carried = match s.route {
                        Route::Deliver => s.status < ShipStatus::Delivered,
                        Route::Transfer => s.status < ShipStatus::Shipped,
                        Route::PickupHere => false,
                    };
                    if let (true, Some(p)) = (carried, &s.parcel) {
                        v.push((o.id.clone(), s.id, p.clone(), s.status, s.route));
                    }
                }
            }
        }
        v
    }

    /// Orders owing a capture (something left while their provider could
    /// not be reached: `Order::capture_owed`), a refund to send again
    /// (`Payment::refunds_owed`, not unclear) or a restock to another
    /// shard (`Order::restocks_owed`). A pass over the orders in
    /// memory (an order owing one is not finished, or not passivable).
    pub fn orders_owing(&self) -> Vec<Order> {
        self.0
            .orders
            .iter()
            .flat_map(|shard| {
                shard
                    .lock()
                    .values()
                    .filter(|o| {
                        o.capture_owed() > 0
                            || o.payment.refunds_owed.iter().any(|r| !r.unclear)
                            || !o.restocks_owed.is_empty()
                    })
                    .cloned()
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Orders held in memory (the rest are passivated).
    pub fn orders_in_memory(&self) -> usize {
        self.0.orders.iter().map(|s| s.lock().len()).sum()
    }

    /// Drops from memory the finished, idle orders that the snapshotter
    /// has archived exactly as they are here; returns how many. A later
    /// change reads one back first (`order_change`).
    pub fn passivate_orders(&self) -> Result<usize, EngineError> {
        let Some(archive) = &self.0.archive else {
            return Ok(0);
        };
        let now = self.0.clock.now_ms();
        let mut dropped = 0;
        for shard in self.0.orders.iter() {
            let due: Vec<String> = shard
                .lock()
                .iter()
                .filter(|(_, o)| o.is_passivable(now))
                .map(|(id, _)| id.clone())
                .collect();
            for id in due {
                let Some(kept) = archive.archived_order(&id, None)? else {
                    continue;
                };
                let mut s = shard.lock();
                if s.get(&id) == Some(&kept) {
                    s.remove(&id);
                    dropped += 1;
                }
            }
        }
        if dropped > 0 {
            self.0
                .metrics
                .orders_passivated
                .fetch_add(dropped as u64, Ordering::Relaxed);
            tracing::info!(orders = dropped, "passivated finished orders");
        }
        Ok(dropped)
    }

    /// Places `order` with the payment's answer `then`, as one journal
    /// record. Answers once it is durable.
    pub async fn place_order(
        &self,
        order: Order,
        then: OrderEvent,
    ) -> Result<Result<Order, OrderExists>, EngineError> {
        let id = order.id.clone();
        let (placed, durable) = {
            let mut shard = self.0.orders[order_shard(&id)].lock();
            if let Some(o) = shard.get(&id) {
                return Ok(Err(OrderExists(o.clone())));
            }
            if let Some(o) = self.archived(&id)? {
                return Ok(Err(OrderExists(o)));
            }
            let events = vec![OrderEvent::Placed(Box::new(order.clone())), then];
            let durable = self.0.journal.append(&Event::Order {
                id: id.clone(),
                events: events.clone(),
            })?;
            let mut o = order;
            for e in &events[1..] {
                o.apply(e);
            }
            if o.takes_capacity() {
                let c = self.catalog();
                self.0.capacity.lock().count_order(&c, &o, 1);
            }
            shard.insert(id, o.clone());
            (o, durable)
        };
        durable.await?;
        Ok(Ok(placed))
    }

    /// Decides a change of order `id` under its shard's lock, journals it
    /// and applies it; a return's restock goes to the stock shard. `None`:
    /// no such order. The event is `None` when nothing changed.
    pub async fn order_change(
        &self,
        id: &str,
        decide: impl FnOnce(&Order) -> Result<Option<OrderEvent>, Refused>,
    ) -> Result<Option<Result<(Order, Option<OrderEvent>), Refused>>, EngineError> {
        let (o, e, durable) = {
            let mut shard = self.0.orders[order_shard(id)].lock();
            if !shard.contains_key(id) {
                // Passivated: read back into memory before it changes.
                let Some(o) = self.archived(id)? else {
                    return Ok(None);
                };
                self.0
                    .metrics
                    .orders_activated
                    .fetch_add(1, Ordering::Relaxed);
                shard.insert(id.to_string(), o);
            }
            let Some(o) = shard.get_mut(id) else {
                return Ok(None);
            };
            let e = match decide(o) {
                Err(r) => return Ok(Some(Err(r))),
                Ok(None) => return Ok(Some(Ok((o.clone(), None)))),
                Ok(Some(e)) => e,
            };
            let (durable, ticket) = self.0.journal.append_ticketed(&Event::Order {
                id: id.to_string(),
                events: vec![e.clone()],
            })?;
            // (Owed, on a cluster: another shard's stock takes them.)
            if let OrderEvent::Returned {
                lines,
                location,
                at_ms,
                restock_owed: false,
                ..
            } = &e
            {
                self.restock(o, lines, location, *at_ms, ticket);
            }
            let took = o.takes_capacity();
            o.apply(&e);
            if took && !o.takes_capacity() {
                // A cancel gives its day's capacity back.
                let c = self.catalog();
                self.0.capacity.lock().count_order(&c, o, -1);
            }
            (o.clone(), e, durable)
        };
        durable.await?;
        Ok(Some(Ok((o, Some(e)))))
    }

    /// After recovery: an order journaled as paid whose shipments' holds
    /// were not confirmed yet (the process died between the two) gets them
    /// confirmed now; one whose holds expired meanwhile has lost its stock
    /// and is named in the log. Returns (confirmed, lost).
    pub async fn reconcile_orders(&self) -> Result<(usize, usize), EngineError> {
        let pending = self.unconfirmed_holds();
        let (mut confirmed, mut lost) = (0, 0);
        for (order, r) in pending {
            match self.reservation(r.clone()).await?.map(|x| x.status) {
                Some(Status::Held) => {
                    let done = self.transition(r, Transition::Confirm).await?;
                    confirmed += usize::from(done.is_ok());
                }
                Some(Status::Expired | Status::Released) => {
                    lost += 1;
                    tracing::warn!(%order, reservation = %r, "an order's hold expired before it was confirmed: the order has lost that stock");
                }
                _ => {}
            }
        }
        Ok((confirmed, lost))
    }

    /// The holds of orders journaled as paid that nothing has moved yet:
    /// (order, reservation), the ones `reconcile_orders` asks about.
    pub fn unconfirmed_holds(&self) -> Vec<(String, ReservationId)> {
        let mut pending = Vec::new();
        for shard in &self.0.orders {
            // Only orders nothing has moved yet: once a shipment moved, its
            // holds were confirmed (the 201 came after them), and a
            // finished order's are fulfilled or released. So a start does
            // not ask the books about every order ever kept.
            let unmoved = |o: &&Order| o.status() == crate::domain::order::OrderStatus::Confirmed;
            for o in shard.lock().values().filter(unmoved) {
                for s in &o.shipments {
                    if let Some(r) = s.reservation.as_deref() {
                        if let Ok(r) = ReservationId::parse(r) {
                            pending.push((o.id.clone(), r));
                        }
                    }
                }
            }
        }
        pending
    }

    /// What the holds of the orders in memory changed at or after
    /// `since_ms` must be (`Order::hold_states`): (order, reservation,
    /// status), for a cluster's reconciliation (`orders::reconcile`).
    pub fn holds_to_settle(&self, since_ms: TimeMs) -> Vec<(String, ReservationId, Status)> {
        let mut v = Vec::new();
        for shard in &self.0.orders {
            for o in shard.lock().values().filter(|o| o.updated_ms >= since_ms) {
                for (r, want) in o.hold_states() {
                    if let Ok(r) = ReservationId::parse(r) {
                        v.push((o.id.clone(), r, want));
                    }
                }
            }
        }
        v
    }

    /// The stock side of a journaled return: on_hand grows where the goods
    /// came back (replay does the same from the order's record).
    pub(super) fn restock(
        &self,
        o: &Order,
        lines: &[(usize, u32)],
        location: &LocationId,
        at_ms: TimeMs,
        ticket: u64,
    ) {
        let c = self.catalog();
        let Some(l) = c.location_idx(location.as_str()) else {
            return;
        };
        self.send_deltas(
            at_ms,
            Some(ticket),
            o.restock(lines)
                .filter_map(|(sku, d)| Some((c.sku_idx(sku.as_str())?, l, d))),
        );
    }
}
