//! Transfers between locations: the engine's book of them (one step at a
//! time), a shipment held across the stock shards as a cart's lines are,
//! its receipt.

use super::*;
use crate::domain::event::TransferFact;
use crate::domain::model::TransferRefused;
use crate::domain::transfer::{
    OrderTransfer, RequestRefused, Requested, StepDecision, Transfer, TransferMove, TransferStep,
    Transfers,
};
use crate::limits::BOOK_WAIT;
use stock_shard::{Against, ShipTransfer};

/// A book, once the step before has been taken; past `BOOK_WAIT`, the
/// engine is at capacity (503).
pub(super) async fn locked<T>(
    book: &tokio::sync::Mutex<T>,
) -> Result<tokio::sync::MutexGuard<'_, T>, EngineError> {
    tokio::time::timeout(BOOK_WAIT, book.lock())
        .await
        .map_err(|_| EngineError::Overloaded)
}

/// A transfer step as asked: what the transfer is now, or why not.
pub type StepAnswer = Result<Result<Transfer, TransferRefused>, EngineError>;

impl Engine {
    /// The transfer book, once the step before has been taken (`locked`).
    ///
    /// A lock, not an actor: a shipment waits on the stock shards' holds,
    /// then journals; an actix actor would hold its mailbox through it all
    /// (an atomic response future) to take one step at a time, which is
    /// what this lock is, with its wait bounded. Transfers are few next
    /// to checkouts: one at a time costs nothing.
    async fn transfer_book(&self) -> Result<tokio::sync::MutexGuard<'_, Transfers>, EngineError> {
        locked(&self.0.transfers).await
    }

    /// `f` of the transfer book as it is between steps.
    pub async fn read_transfers<R>(
        &self,
        f: impl FnOnce(&Transfers) -> R,
    ) -> Result<R, EngineError> {
        Ok(f(&*self.transfer_book().await?))
    }

    /// Requests a transfer: the new one (`true`) once its record is
    /// durable, or the one kept under this id if asked alike (`false`: a
    /// retry, answered once what came before is durable).
    pub async fn request_transfer(
        &self,
        id: String,
        (from, to): (LocationId, LocationId),
        lines: Vec<(SkuId, u32)>,
        by: Option<By>,
    ) -> Result<Result<(Transfer, bool), RequestRefused>, EngineError> {
        // In its own task: a caller that goes away cannot cut it short.
        let me = self.clone();
        tokio::spawn(async move {
            let mut book = me.transfer_book().await?;
            let now = me.0.clock.now_ms();
            let t = match book.decide_request(&id, from.clone(), to.clone(), lines.clone(), now) {
                Err(refused) => return Ok(Err(refused)),
                Ok(Requested::Repeat(t)) => {
                    drop(book);
                    me.0.journal.barrier()?.await?;
                    return Ok(Ok((t, false)));
                }
                Ok(Requested::New(t)) => t,
            };
            let durable = me.0.journal.append(&Event::Transfer {
                id,
                step: TransferFact::Requested { from, to, lines },
                at_ms: now,
                by,
            })?;
            book.insert(t.clone());
            drop(book);
            let m = &me.0.metrics;
            m.transfer_steps[0].fetch_add(1, Ordering::Relaxed);
            m.transfers_open.fetch_add(1, Ordering::Relaxed);
            durable.await?;
            Ok(Ok((t, true)))
        })
        .await
        .map_err(|_| EngineError::Stopped)?
    }

    /// Takes a step of transfer `id`: ships it (every line's units free
    /// at the sender, or none), receives it, cancels it. A step taken
    /// already answers the transfer as it is (a retry).
    pub async fn transfer_step(
        &self,
        id: String,
        step: TransferStep,
        by: Option<By>,
    ) -> StepAnswer {
        // In its own task: a shipment's holds are undone by whoever made
        // them, which a caller going away must not cut short.
        let me = self.clone();
        tokio::spawn(async move { me.take_transfer_step(&id, step, by).await })
            .await
            .map_err(|_| EngineError::Stopped)?
    }

    async fn take_transfer_step(&self, id: &str, step: TransferStep, by: Option<By>) -> StepAnswer {
        let mut book = self.transfer_book().await?;
        let Some(t) = book.get(id).cloned() else {
            return Ok(Err(TransferRefused::NotFound));
        };
        match t.decide(&step) {
            Err(refused) => return Ok(Err(TransferRefused::Step(refused))),
            Ok(StepDecision::Unchanged) => {
                drop(book);
                self.0.journal.barrier()?.await?;
                return Ok(Ok(t));
            }
            Ok(StepDecision::To(_)) => {}
        }
        let now = self.0.clock.now_ms();
        let fact = match &step {
            TransferStep::Ship => TransferFact::Shipped,
            TransferStep::Receive(lines) => TransferFact::Received {
                lines: lines.clone(),
            },
            TransferStep::Cancel => TransferFact::Cancelled,
        };
        let event = Event::Transfer {
            id: id.to_string(),
            step: fact,
            at_ms: now,
            by,
        };
        let durable = match &step {
            TransferStep::Ship => match self.ship(&t, &event, now).await? {
                Ok(durable) => durable,
                Err(short) => {
                    self.0
                        .metrics
                        .transfers_short
                        .fetch_add(1, Ordering::Relaxed);
                    return Ok(Err(TransferRefused::Short(short)));
                }
            },
            TransferStep::Receive(_) => self.journal_moves(&event, t.moves(&step), now)?,
            TransferStep::Cancel => self.0.journal.append(&event)?,
        };
        book.apply(id, &step, now);
        let after = book.get(id).cloned().unwrap_or(t);
        drop(book);
        self.count_step(&after);
        durable.await?;
        Ok(Ok(after))
    }

    /// Holds every line at the sender against its free units across the
    /// stock shards (as a cart's lines are held), then journals the
    /// shipment and has each shard move its lines; on any line short,
    /// undoes the holds and answers the short lines with their free units.
    async fn ship(
        &self,
        t: &Transfer,
        event: &Event,
        now: TimeMs,
    ) -> Result<Result<Durable, Vec<(SkuId, i64)>>, EngineError> {
        let lines: Vec<CartLine> = {
            let c = self.0.catalog.read();
            let from = c.location_idx(t.from.as_str());
            t.lines
                .iter()
                .map(|l| Some(CartLine::on_hand(c.sku_idx(l.sku.as_str())?, from?, l.qty)))
                .collect::<Option<_>>()
                // Requests are checked against the catalog, which never
                // forgets.
                .ok_or(EngineError::Stopped)?
        };
        let moves = self.resolved(t.moves(&TransferStep::Ship))?;
        let (outcomes, overloaded) = self
            .hold_in_every_shard(&lines, false, Against::Free)
            .await?;
        if overloaded || outcomes.iter().any(|o| o.short) {
            self.undo_holds(&lines, &outcomes);
            if overloaded {
                self.count_overload();
                return Err(EngineError::Overloaded);
            }
            let mut short: Vec<(usize, SkuId, i64)> = outcomes
                .iter()
                .filter(|o| o.short)
                .map(|o| (o.line, t.lines[o.line].sku.clone(), o.available))
                .collect();
            short.sort_by_key(|s| s.0);
            return Ok(Err(short.into_iter().map(|(_, s, f)| (s, f)).collect()));
        }
        let (durable, ticket) = match self.0.journal.append_ticketed(event) {
            Ok(journaled) => journaled,
            Err(e) => {
                self.undo_holds(&lines, &outcomes);
                return Err(e.into());
            }
        };
        // Each shard its holds to release and its moves (a SKU's records
        // all live in one shard).
        let n = self.0.stock.len();
        let mut per_shard: Vec<ShipTransfer> = (0..n)
            .map(|_| ShipTransfer {
                held: Vec::new(),
                moves: Vec::new(),
                at_ms: now,
                ticket,
            })
            .collect();
        for l in &lines {
            per_shard[l.sku as usize % n]
                .held
                .push((l.sku, l.location, l.qty));
        }
        for m in moves {
            per_shard[m.0 as usize % n].moves.push(m);
        }
        for (i, ship) in per_shard.into_iter().enumerate() {
            if !ship.moves.is_empty() {
                // Must not be dropped: bounded by the transfers in flight
                // (one at a time).
                self.0.stock[i].do_send(ship);
            }
        }
        Ok(Ok(durable))
    }

    /// Journals `event` and has the stock shards apply `moves` in its
    /// order (a receipt, an order's transfer: nothing to hold first).
    fn journal_moves(
        &self,
        event: &Event,
        moves: Vec<TransferMove>,
        now: TimeMs,
    ) -> Result<Durable, EngineError> {
        let deltas = self.resolved(moves)?;
        let (durable, ticket) = self.0.journal.append_ticketed(event)?;
        stock_shard::send_deltas(&self.0.stock, now, Some(ticket), deltas);
        Ok(durable)
    }

    /// Makes the transfer of an order's shipment what its order says
    /// (`Order::transfers_owed`): made, shipped, as its goods leave;
    /// received in full once they are at the pickup store's counter.
    /// Idempotent: what is made already is answered (a reconciliation
    /// asks again whatever it is not sure of). `None`: every id the
    /// transfer may take is another's (logged).
    pub async fn settle_order_transfer(
        &self,
        want: OrderTransfer,
    ) -> Result<Option<Transfer>, EngineError> {
        // In its own task, as a step asked through the API.
        let me = self.clone();
        tokio::spawn(async move { me.take_order_transfer(want).await })
            .await
            .map_err(|_| EngineError::Stopped)?
    }

    async fn take_order_transfer(
        &self,
        want: OrderTransfer,
    ) -> Result<Option<Transfer>, EngineError> {
        let mut book = self.transfer_book().await?;
        let now = self.0.clock.now_ms();
        let mut durable = Vec::new();
        let mut t = match book.of_order(&want.of) {
            Ok(t) => t.clone(),
            Err(None) => {
                tracing::error!(order = %want.of.order, shipment = want.of.shipment, "every id of this shipment's transfer is taken by transfers asked through the API: its goods travel without one");
                return Ok(None);
            }
            Err(Some(_)) if !book.has_room(now) => return Err(EngineError::Overloaded),
            Err(Some(id)) => {
                let t = Transfer::for_order(id.clone(), &want, now);
                let event = Event::Transfer {
                    id,
                    step: TransferFact::ForOrder {
                        from: want.from.clone(),
                        to: want.to.clone(),
                        lines: want.lines.clone(),
                        order: want.of.order.clone(),
                        shipment: want.of.shipment,
                    },
                    at_ms: now,
                    by: None,
                };
                durable.push(self.journal_moves(&event, t.moves(&TransferStep::Ship), now)?);
                book.insert(t.clone());
                self.0
                    .metrics
                    .transfers_open
                    .fetch_add(1, Ordering::Relaxed);
                self.count_step(&t);
                t
            }
        };
        if let Some(lines) = t.at_the_counter().filter(|_| want.arrived) {
            let step = TransferStep::Receive(lines.clone());
            let event = Event::Transfer {
                id: t.id.clone(),
                step: TransferFact::Received { lines },
                at_ms: now,
                by: None,
            };
            durable.push(self.journal_moves(&event, t.moves(&step), now)?);
            book.apply(&t.id, &step, now);
            t.apply(&step, now);
            self.count_step(&t);
        }
        drop(book);
        if durable.is_empty() {
            // Made before: answered once what came before is durable.
            self.0.journal.barrier()?.await?;
        }
        for d in durable {
            d.await?;
        }
        Ok(Some(t))
    }

    /// A step's moves as deltas of records.
    fn resolved(
        &self,
        moves: Vec<TransferMove>,
    ) -> Result<Vec<(SkuIdx, LocIdx, StockDelta)>, EngineError> {
        let c = self.0.catalog.read();
        moves
            .into_iter()
            .map(|m| {
                let s = c.sku_idx(m.sku.as_str()).ok_or(EngineError::Stopped)?;
                let l = c
                    .location_idx(m.location.as_str())
                    .ok_or(EngineError::Stopped)?;
                Ok((s, l, m.delta()))
            })
            .collect()
    }

    /// Counts a step just taken, and the units it moved.
    fn count_step(&self, t: &Transfer) {
        use crate::domain::transfer::TransferStatus::*;
        let m = &self.0.metrics;
        let (step, units) = match t.status {
            Requested => return,
            Shipped => (1, t.lines.iter().map(|l| u64::from(l.qty)).sum::<u64>()),
            Received => (
                2,
                t.lines
                    .iter()
                    .map(|l| u64::from(l.received.unwrap_or(0)))
                    .sum(),
            ),
            Cancelled => (3, 0),
        };
        m.transfer_steps[step].fetch_add(1, Ordering::Relaxed);
        if step < 3 {
            m.transfer_units[step - 1].fetch_add(units, Ordering::Relaxed);
        }
        if matches!(t.status, Received | Cancelled) {
            let _ = m
                .transfers_open
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        }
    }
}
