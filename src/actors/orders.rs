use super::*;
use crate::domain::order::OrderQuery;
use crate::domain::transfer::OrderTransfer;
use crate::limits::ORDER_SEARCH_ARCHIVE_SCAN;

/// A page of an order search: the orders, and the `(created_ms, id)` the
/// next page starts before, if one may hold more.
pub type OrderSearchPage = (Vec<Order>, Option<(TimeMs, String)>);

/// The engine's side of the order books: routes each order to its book,
/// asks every book for the passes over all orders, and waits for the
/// locations a change told.
impl Engine {
    fn order_book(&self, id: &str) -> &Addr<OrderBook> {
        &self.0.order_books[order_book_of(id, self.0.order_books.len())]
    }

    /// An order: from memory, or read back from the archive if it was
    /// passivated (without bringing it back: a read changes nothing). A
    /// passivated order is archived before it leaves memory, so a miss
    /// here finds it there.
    pub async fn order(&self, id: &str) -> Result<Option<Order>, EngineError> {
        let book = order_book_of(id, self.0.order_maps.len());
        if let Some(o) = self.0.order_maps[book].read().get(id) {
            return Ok(Some(o.clone()));
        }
        match &self.0.archive {
            Some(a) => Ok(a.archived_order(id, None)?),
            None => Ok(None),
        }
    }

    /// An order search's page (`GET /v1/orders`): the orders `q` matches
    /// placed before `before` (`(created_ms, id)`, exclusive), newest
    /// first, at most `limit`, in memory or archived; and where the next
    /// page starts, if one may hold more. Memory is read before the
    /// archive: an order passivated between the two was archived before
    /// it left memory, so it is found once.
    pub fn search_orders(
        &self,
        q: &OrderQuery,
        before: Option<(TimeMs, String)>,
        limit: usize,
    ) -> Result<OrderSearchPage, EngineError> {
        self.search_orders_within(q, before, limit, ORDER_SEARCH_ARCHIVE_SCAN)
    }

    /// `search_orders` reading at most `budget` archived orders (tests
    /// spend small ones).
    pub fn search_orders_within(
        &self,
        q: &OrderQuery,
        before: Option<(TimeMs, String)>,
        limit: usize,
        budget: usize,
    ) -> Result<OrderSearchPage, EngineError> {
        let earlier = |at: TimeMs, id: &str| {
            before
                .as_ref()
                .is_none_or(|(t, b)| (at, id) < (*t, b.as_str()))
        };
        let mut found: Vec<(TimeMs, Order)> = Vec::new();
        // Every order in memory the archive's read could also meet (found
        // or not): their archived copies are older. One brought back to
        // memory after this pass is read from the archive instead: never
        // from neither.
        let mut in_memory: ahash::AHashSet<String> = ahash::AHashSet::new();
        for map in &self.0.order_maps {
            let map = map.read();
            let mut keys: Vec<(TimeMs, &String)> = Vec::new();
            for o in map.values() {
                if !earlier(o.created_ms, &o.id) || !q.may_match(o.created_ms, &o.id) {
                    continue;
                }
                in_memory.insert(o.id.clone());
                if q.matches(o) {
                    keys.push((o.created_ms, &o.id));
                }
            }
            keys.sort_unstable_by(|a, b| b.cmp(a));
            keys.truncate(limit);
            found.extend(
                keys.iter()
                    .filter_map(|(t, id)| Some((*t, map.get(*id)?.clone()))),
            );
        }
        let mut stopped = None;
        if let Some(archive) = &self.0.archive {
            let page = archive.archived_before(
                before.as_ref().map(|(t, id)| (*t, id.as_str())),
                (q.from_ms, q.to_ms),
                limit,
                budget,
                |at, id| q.may_match(at, id) && !in_memory.contains(id),
                |o| q.matches(o),
            )?;
            found.extend(page.orders);
            stopped = page.stopped_at;
        }
        found.sort_unstable_by(|a, b| (b.0, &b.1.id).cmp(&(a.0, &a.1.id)));
        found.dedup_by(|a, b| a.1.id == b.1.id);
        // Past where the archive's read stopped, an order in memory could
        // come after archived ones not read yet: the next page has it.
        if let Some((t, id)) = &stopped {
            found.retain(|(at, o)| (*at, o.id.as_str()) >= (*t, id.as_str()));
        }
        found.truncate(limit);
        let next = match found.last() {
            Some((t, o)) if found.len() == limit => Some((*t, o.id.clone())),
            _ => stopped,
        };
        Ok((found.into_iter().map(|(_, o)| o).collect(), next))
    }

    /// What `pick` takes from every order in memory, every book asked at
    /// once.
    async fn scan_orders<T: Send + 'static>(
        &self,
        pick: impl Fn(&Order, &mut Vec<T>) + Send + Clone + 'static,
    ) -> Result<Vec<T>, EngineError> {
        let asks = self.0.order_books.iter().map(|b| {
            let (tx, rx) = oneshot::channel();
            let pick = Box::new(pick.clone());
            async move {
                b.send(ScanOrders { pick, reply: tx })
                    .await
                    .map_err(|_| EngineError::Stopped)?;
                reply(rx).await
            }
        });
        let parts = futures::future::try_join_all(asks).await?;
        Ok(parts.into_iter().flatten().collect())
    }

    /// The open pickups at `location` (pay and collect orders not yet
    /// collected, cancelled or declined), oldest first, at most `limit`,
    /// as its location actor keeps them; and the orders it took today
    /// (`(day since the epoch, UTC; orders)`).
    pub async fn pickups_at(
        &self,
        location: &LocationId,
        limit: usize,
    ) -> Result<((i64, u32), Vec<Order>), EngineError> {
        let today = self.clock().now_ms().div_euclid(86_400_000);
        let Some(actor) = self.0.locations.existing(location) else {
            return Ok(((today, 0), Vec::new()));
        };
        let view = self.live_state(&actor, limit).await?;
        let found =
            futures::future::try_join_all(view.pickups.iter().map(|id| self.order(id))).await?;
        // An order that closed since its location was asked is left out.
        let open = found
            .into_iter()
            .flatten()
            .filter(|o| o.open_pickup() == Some(location))
            .collect();
        // A count of an earlier day is today's 0.
        let taken = if view.today.0 == today {
            view.today.1
        } else {
            0
        };
        Ok(((today, taken), open))
    }

    /// A location's live state (today's count, its first `pickups` open
    /// pickups), after every change told to it before.
    async fn live_state(
        &self,
        actor: &Addr<LocationActor>,
        pickups: usize,
    ) -> Result<LiveView, EngineError> {
        let (tx, rx) = oneshot::channel();
        actor
            .send(LiveState { pickups, reply: tx })
            .await
            .map_err(|_| EngineError::Stopped)?;
        reply(rx).await
    }

    /// Labelled shipments whose parcel its carrier still carries: a
    /// delivery not delivered, a transfer not shipped (at the store, the
    /// store takes over), of orders not cancelled: (order, shipment,
    /// parcel, status, route). A pass over the orders in memory.
    pub async fn parcels_in_transit(&self) -> Result<Vec<ParcelCarried>, EngineError> {
        use crate::domain::order::{Route, ShipStatus};
        self.scan_orders(|o, v| {
            if o.cancelled {
                return;
            }
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
        })
        .await
    }

    /// Orders owing a capture (something left while their provider could
    /// not be reached: `Order::capture_owed`), a refund to send again
    /// (`Payment::refunds_owed`, not unclear) or a restock to another
    /// shard (`Order::restocks_owed`). A pass over the orders in
    /// memory (an order owing one is not finished, or not passivable).
    pub async fn orders_owing(&self) -> Result<Vec<Order>, EngineError> {
        self.scan_orders(|o, v| {
            if o.capture_owed() > 0
                || o.payment.refunds_owed.iter().any(|r| !r.unclear)
                || !o.restocks_owed.is_empty()
            {
                v.push(o.clone());
            }
        })
        .await
    }

    /// Orders held in memory (the rest are passivated).
    pub async fn orders_in_memory(&self) -> Result<usize, EngineError> {
        let asks = self.0.order_books.iter().map(|b| async move {
            let (tx, rx) = oneshot::channel();
            b.send(InMemory { reply: tx })
                .await
                .map_err(|_| EngineError::Stopped)?;
            reply(rx).await
        });
        Ok(futures::future::try_join_all(asks).await?.into_iter().sum())
    }

    /// Drops from memory every finished, idle order that the snapshotter
    /// has archived exactly as it is here; returns how many. A later change
    /// reads one back first (`order_change`). Each book also does this by
    /// itself every `ORDER_SWEEP_EVERY_S`.
    pub async fn passivate_orders(&self) -> Result<usize, EngineError> {
        let mut dropped = 0;
        for b in &self.0.order_books {
            loop {
                let (tx, rx) = oneshot::channel();
                b.send(Passivate {
                    max: crate::limits::ORDER_SWEEP_BATCH,
                    reply: tx,
                })
                .await
                .map_err(|_| EngineError::Stopped)?;
                let (n, more) = reply(rx).await??;
                dropped += n;
                if n == 0 || !more {
                    break;
                }
            }
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
        let record = crate::persistence::journal::encode_event(&Event::Order {
            id: order.id.clone(),
            events: vec![OrderEvent::Placed(Box::new(order.clone())), then.clone()],
        })?;
        let (tx, rx) = oneshot::channel();
        self.order_book(&order.id)
            .try_send(PlaceOrder {
                order,
                then,
                record,
                reply: tx,
            })
            .map_err(full)?;
        match reply(rx).await?? {
            Err(exists) => Ok(Err(exists)),
            Ok((o, durable, told)) => {
                durable.await?;
                told.taken_in().await;
                Ok(Ok(o))
            }
        }
    }

    /// Decides a change of order `id` in its book, journals it and applies
    /// it; a return's restock goes to the stock shard. `None`: no such
    /// order. The event is `None` when nothing changed.
    pub async fn order_change(
        &self,
        id: &str,
        decide: impl FnOnce(&Order) -> Result<Option<OrderEvent>, Refused> + Send + 'static,
    ) -> Result<Option<Result<(Order, Option<OrderEvent>), Refused>>, EngineError> {
        let (tx, rx) = oneshot::channel();
        self.order_book(id)
            .try_send(ChangeOrder {
                id: id.to_string(),
                decide: Box::new(decide),
                reply: tx,
            })
            .map_err(full)?;
        let (o, changed) = match reply(rx).await?? {
            None => return Ok(None),
            Some(Err(refused)) => return Ok(Some(Err(refused))),
            Some(Ok(changed)) => changed,
        };
        let Some((e, durable, told)) = changed else {
            return Ok(Some(Ok((o, None))));
        };
        durable.await?;
        told.taken_in().await;
        Ok(Some(Ok((o, Some(e)))))
    }

    /// The transfers to pickup stores that the orders in memory changed
    /// at or after `since_ms` say are made (or received) and are not
    /// (`Order::transfers_owed`): the process died, or the engine was
    /// busy, between the order's record and its transfer's.
    pub async fn order_transfers_unsettled(
        &self,
        since_ms: TimeMs,
    ) -> Result<Vec<OrderTransfer>, EngineError> {
        // A received transfer is forgotten `BOOK_CLOSED_KEPT_MS` after its
        // order moved it: an order not moved since is not asked about
        // (it would make its transfer again).
        let kept_from = self.0.clock.now_ms() - crate::limits::BOOK_CLOSED_KEPT_MS;
        let owed = self
            .scan_orders(move |o, v| {
                if o.updated_ms >= since_ms.max(kept_from) {
                    v.extend(o.transfers_owed());
                }
            })
            .await?;
        self.read_transfers(|book| {
            owed.into_iter()
                .filter(|w| match book.of_order(&w.of) {
                    Ok(t) => w.arrived && t.at_the_counter().is_some(),
                    Err(_) => true,
                })
                .collect()
        })
        .await
    }

    /// After recovery: an order journaled as paid whose shipments' holds
    /// were not confirmed yet (the process died between the two) gets them
    /// confirmed now; one whose holds expired meanwhile has lost its stock
    /// and is named in the log; a transfer to a pickup store its order
    /// says is made is made (`order_transfers_unsettled`, of every order
    /// in memory). Returns (confirmed, lost).
    pub async fn reconcile_orders(&self) -> Result<(usize, usize), EngineError> {
        // A transfer not made now is the retry job's (logged): it never
        // stops a start.
        for want in self.order_transfers_unsettled(0).await? {
            let (order, shipment) = (want.of.order.clone(), want.of.shipment);
            if let Err(e) = self.settle_order_transfer(want).await {
                tracing::error!(%order, shipment, error = %e, "a pickup's transfer could not be made at start");
            }
        }
        let pending = self.unconfirmed_holds().await?;
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
    pub async fn unconfirmed_holds(&self) -> Result<Vec<(String, ReservationId)>, EngineError> {
        // Only orders nothing has moved yet: once a shipment moved, its
        // holds were confirmed (the 201 came after them), and a finished
        // order's are fulfilled or released. So a start does not ask the
        // books about every order ever kept.
        self.scan_orders(|o, v| {
            if o.status() != crate::domain::order::OrderStatus::Confirmed {
                return;
            }
            for s in &o.shipments {
                if let Some(r) = s.reservation.as_deref() {
                    if let Ok(r) = ReservationId::parse(r) {
                        v.push((o.id.clone(), r));
                    }
                }
            }
        })
        .await
    }

    /// What the holds of the orders in memory changed at or after
    /// `since_ms` must be (`Order::hold_states`): (order, reservation,
    /// status), for a cluster's reconciliation (`orders::reconcile`).
    pub async fn holds_to_settle(
        &self,
        since_ms: TimeMs,
    ) -> Result<Vec<(String, ReservationId, Status)>, EngineError> {
        self.scan_orders(move |o, v| {
            if o.updated_ms < since_ms {
                return;
            }
            for (r, want) in o.hold_states() {
                if let Ok(r) = ReservationId::parse(r) {
                    v.push((o.id.clone(), r, want));
                }
            }
        })
        .await
    }
}

/// A parcel its carrier still carries: (order, shipment, parcel, status,
/// route).
pub type ParcelCarried = (
    String,
    u32,
    crate::domain::order::Parcel,
    crate::domain::order::ShipStatus,
    crate::domain::order::Route,
);
