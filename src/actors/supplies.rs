//! Incoming supply: the engine's book of it (one step at a time), each
//! step journaled, then its records moved (incoming units, their earliest
//! time expected, and a delivery's units on hand).

use super::reservation_book::Receive;
use super::transfers::locked;
use super::*;
use crate::domain::event::SupplyFact;
use crate::domain::supply::{
    AnnounceRefused, Announced, Supplies, Supply, SupplyDecision, SupplyMove, SupplyRefused,
    SupplyStep,
};

/// A supply's step as asked: what the supply is now, or why not.
pub type SupplyAnswer = Result<Result<Supply, SupplyRefused>, EngineError>;

impl Engine {
    /// The supply book, once the step before has been taken (`locked`).
    async fn supply_book(&self) -> Result<tokio::sync::MutexGuard<'_, Supplies>, EngineError> {
        locked(&self.0.supplies).await
    }

    /// `f` of the supply book as it is between steps.
    pub async fn read_supplies<R>(&self, f: impl FnOnce(&Supplies) -> R) -> Result<R, EngineError> {
        Ok(f(&*self.supply_book().await?))
    }

    /// Announces a supply (a purchase order, an advance shipping notice):
    /// the new one (`true`) once its record is durable, or the one kept
    /// under this id if announced alike (`false`: a retry).
    pub async fn expect_supply(
        &self,
        id: String,
        (location, expected_ms): (LocationId, TimeMs),
        lines: Vec<(SkuId, u32)>,
        by: Option<By>,
    ) -> Result<Result<(Supply, bool), AnnounceRefused>, EngineError> {
        // In its own task: a caller that goes away cannot cut it short
        // between the journal and the records.
        let me = self.clone();
        tokio::spawn(async move {
            let mut book = me.supply_book().await?;
            let now = me.0.clock.now_ms();
            let asked = (location.clone(), expected_ms, lines.clone());
            let s = match book.decide_expect(&id, asked.0, asked.1, asked.2, now) {
                Err(refused) => return Ok(Err(refused)),
                Ok(Announced::Repeat(s)) => {
                    drop(book);
                    me.0.journal.barrier()?.await?;
                    return Ok(Ok((s, false)));
                }
                Ok(Announced::New(s)) => s,
            };
            let fact = SupplyFact::Expected {
                location,
                expected_ms,
                lines,
            };
            let moves = s.expected_moves();
            let durable = me.journal_supply(&mut book, s.clone(), fact, moves, (now, by));
            drop(book);
            me.0.metrics.supply_steps[0].fetch_add(1, Ordering::Relaxed);
            durable?.await?;
            Ok(Ok((s, true)))
        })
        .await
        .map_err(|_| EngineError::Stopped)?
    }

    /// Takes a step of supply `id`: a delivery (its units on hand) or a
    /// cancel of what is still to come. A delivery repeated under its key
    /// answers the supply as it is.
    pub async fn supply_step(&self, id: String, step: SupplyStep, by: Option<By>) -> SupplyAnswer {
        let me = self.clone();
        tokio::spawn(async move {
            let mut book = me.supply_book().await?;
            let Some(s) = book.get(&id).cloned() else {
                return Ok(Err(SupplyRefused::NotFound));
            };
            match s.decide(&step) {
                Err(refused) => return Ok(Err(refused)),
                Ok(SupplyDecision::Repeat) => {
                    drop(book);
                    me.0.journal.barrier()?.await?;
                    return Ok(Ok(s));
                }
                Ok(SupplyDecision::Apply) => {}
            }
            let now = me.0.clock.now_ms();
            let moves = s.moves(&step);
            let mut after = s;
            after.apply(&step, now);
            let durable = match &step {
                SupplyStep::Receive(lines, key) => {
                    // The book of backorders journals a delivery: it
                    // decides what the units arrived convert.
                    let (tx, rx) = oneshot::channel();
                    let sent = me.0.books[BACKORDER_BOOK].try_send(Receive {
                        supply: after.id.clone(),
                        location: after.location.clone(),
                        lines: lines.clone(),
                        key: key.clone(),
                        deltas: book.with_eta(&after, moves),
                        at_ms: now,
                        by,
                        reply: tx,
                    });
                    if let Err(e) = sent {
                        me.count_overload();
                        return Err(full(e));
                    }
                    let durable = reply(rx).await??;
                    book.keep(after.clone());
                    durable
                }
                SupplyStep::Cancel => {
                    let fact = SupplyFact::Cancelled;
                    me.journal_supply(&mut book, after.clone(), fact, moves, (now, by))?
                }
            };
            drop(book);
            me.count_supply_step(&step);
            durable.await?;
            Ok(Ok(after))
        })
        .await
        .map_err(|_| EngineError::Stopped)?
    }

    /// Journals a supply's step that leaves it as `after`, moves its
    /// records (each with its earliest time expected once the step is
    /// taken, as replay does), and keeps it so in the book; a record the
    /// journal does not take changes nothing.
    fn journal_supply(
        &self,
        book: &mut Supplies,
        after: Supply,
        step: SupplyFact,
        moves: Vec<SupplyMove>,
        (now, by): (TimeMs, Option<By>),
    ) -> Result<Durable, EngineError> {
        let deltas = {
            let c = self.0.catalog.read();
            book.with_eta(&after, moves)
                .into_iter()
                .map(|(sku, loc, d)| {
                    let s = c.sku_idx(sku.as_str()).ok_or(EngineError::Stopped)?;
                    let l = c.location_idx(loc.as_str()).ok_or(EngineError::Stopped)?;
                    Ok((s, l, d))
                })
                .collect::<Result<Vec<_>, EngineError>>()?
        };
        let event = Event::Supply {
            id: after.id.clone(),
            step,
            at_ms: now,
            by,
        };
        let (durable, ticket) = self.0.journal.append_ticketed(&event)?;
        stock_shard::send_deltas(&self.0.stock, now, Some(ticket), deltas);
        book.keep(after);
        Ok(durable)
    }

    fn count_supply_step(&self, step: &SupplyStep) {
        let m = &self.0.metrics;
        match step {
            SupplyStep::Receive(lines, _) => {
                m.supply_steps[1].fetch_add(1, Ordering::Relaxed);
                let units: u64 = lines.iter().map(|(_, q)| u64::from(*q)).sum();
                m.supply_units_received.fetch_add(units, Ordering::Relaxed);
            }
            SupplyStep::Cancel => {
                m.supply_steps[2].fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
