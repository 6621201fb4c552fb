use super::*;

/// A reservation line to hold, resolved, with its index in the cart.
#[derive(Debug, Clone, Copy)]
pub struct CartLine {
    pub sku: SkuIdx,
    pub location: LocIdx,
    pub qty: u32,
    /// What is not on hand may be sold against incoming supply, as far
    /// as the SKU allows (its `backorder` or `preorder`).
    pub backorder: bool,
}

impl CartLine {
    /// A line held on hand only.
    pub fn on_hand(sku: SkuIdx, location: LocIdx, qty: u32) -> Self {
        Self {
            sku,
            location,
            qty,
            backorder: false,
        }
    }
}

/// How `l` may be sold against incoming supply at `now`: as its SKU
/// allows if the line asks to (on hand first, a preorder's too: units
/// that arrived early are sold to preorders); before a preorder's
/// release a line that does not ask gets nothing.
fn supply_of(c: &Catalog, l: &CartLine, now: TimeMs) -> Option<SupplySale> {
    let sale = c.sku(l.sku)?.1.supply_sale(now)?;
    match (l.backorder, sale.only_supply) {
        (true, _) => Some(SupplySale {
            only_supply: false,
            ..sale
        }),
        (false, true) => Some(SupplySale {
            max_units: 0,
            only_supply: true,
        }),
        (false, false) => None,
    }
}

/// Each line's `HoldLine`, with its index in the cart.
fn hold_lines<'a>(
    c: &'a Catalog,
    lines: impl IntoIterator<Item = (usize, &'a CartLine)> + 'a,
    now: TimeMs,
) -> impl Iterator<Item = HoldLine> + 'a {
    lines.into_iter().map(move |(i, l)| HoldLine {
        line: i,
        sku: l.sku,
        location: l.location,
        qty: l.qty,
        supply: supply_of(c, l, now),
    })
}

impl Engine {
    /// A new id whose book is `book` (see `book_of`): a cart held in one
    /// stock shard gets the book on the same arbiter thread, so that the
    /// reservation's insert, and later its confirm or release and their
    /// stock deltas, never wake the other thread.
    pub(super) fn new_reservation_id(&self, book: usize) -> ReservationId {
        let n = self.0.books.len() as u64;
        let k = self.0.next_id.fetch_add(1, Ordering::Relaxed);
        let counter = k * n + book as u64;
        let s = format!("r{:016x}{:08x}", self.0.boot_nonce, counter);
        ReservationId::parse(&s).expect("hex ids are valid")
    }

    /// Whether a line of the cart may be sold against incoming supply now.
    fn sells_ahead(&self, lines: &[CartLine]) -> bool {
        if !lines.iter().any(|l| l.backorder) {
            return false;
        }
        let (c, now) = (self.0.catalog.read(), self.0.clock.now_ms());
        lines.iter().any(|l| supply_of(&c, l, now).is_some())
    }

    /// A reservation held: counted, with its units sold against supply.
    fn count_held(&self, r: &Reservation) {
        let m = &self.0.metrics;
        m.reservations_held.fetch_add(1, Ordering::Relaxed);
        let backordered = r.backordered();
        if backordered > 0 {
            m.backorder_units_held
                .fetch_add(u64::from(backordered), Ordering::Relaxed);
        }
    }

    /// A write refused for a full mailbox (503): counted.
    pub(super) fn count_overload(&self) {
        self.0
            .metrics
            .overload_rejections
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Holds a cart: every line or none (or what is available with
    /// `partial`). Answers once the cart's journal record is durable.
    pub async fn reserve(
        &self,
        lines: &[CartLine],
        partial: bool,
        ttl_s: u64,
        idem: Option<IdemKey>,
    ) -> Result<Result<Reservation, Vec<Shortage>>, EngineError> {
        self.reserve_as(lines, partial, ttl_s, idem, None).await
    }

    /// `reserve` on `by`'s word (the movement history names it).
    pub async fn reserve_as(
        &self,
        lines: &[CartLine],
        partial: bool,
        ttl_s: u64,
        idem: Option<IdemKey>,
        by: Option<By>,
    ) -> Result<Result<Reservation, Vec<Shortage>>, EngineError> {
        if lines.is_empty() {
            // The HTTP layer refuses empty carts; an empty one holds nothing.
            return Ok(Err(Vec::new()));
        }
        let n = self.0.stock.len();
        let first_shard = lines.first().map(|l| l.sku as usize % n);
        // A cart that may be sold against supply is journaled by the
        // backorder book (`reserve_across_shards`), never by a stock
        // shard: so a delivery, which that book journals too, either
        // precedes the cart or sees it (`reservation_book::Receive`).
        if !self.sells_ahead(lines)
            && lines
                .iter()
                .all(|l| Some(l.sku as usize % n) == first_shard)
        {
            if let Some(shard) = first_shard {
                // Cancelling this future after the send is harmless: the
                // shard completes the cart on its own.
                return self
                    .reserve_in_one_shard(shard, lines, partial, ttl_s, (idem, by))
                    .await;
            }
        }
        // Across shards the coordinator itself undoes holds: it runs in its
        // own task so that a caller that goes away cannot leak them.
        let (me, lines) = (self.clone(), lines.to_vec());
        tokio::spawn(async move {
            me.reserve_across_shards(&lines, partial, ttl_s, (idem, by))
                .await
        })
        .await
        .map_err(|_| EngineError::Stopped)?
    }

    /// Holds the cart in every shard it spans, then has its book journal
    /// it. A cart sold ahead of supply that a delivery overtook between
    /// its holds and its record is held again (`Create::deliveries_seen`),
    /// at most `BACKORDER_HOLD_TRIES` times, then 503: nothing is held.
    pub(super) async fn reserve_across_shards(
        &self,
        lines: &[CartLine],
        partial: bool,
        ttl_s: u64,
        (idem, by): (Option<IdemKey>, Option<By>),
    ) -> Result<Result<Reservation, Vec<Shortage>>, EngineError> {
        for _ in 0..crate::limits::BACKORDER_HOLD_TRIES {
            let seen = self.0.deliveries.load(Ordering::SeqCst);
            let (mut outcomes, overloaded) = self
                .hold_in_every_shard(lines, partial, stock_shard::Against::Available)
                .await?;
            let short = outcomes.iter().any(|o| o.short);
            let nothing = outcomes.iter().all(|o| o.held == 0);
            if overloaded || (short && !partial) || nothing {
                self.undo_holds(lines, &outcomes);
                if overloaded {
                    self.count_overload();
                    return Err(EngineError::Overloaded);
                }
                self.0
                    .metrics
                    .reservations_rejected
                    .fetch_add(1, Ordering::Relaxed);
                return Ok(Err(self.shortages(lines, &outcomes)));
            }
            outcomes.sort_by_key(|o| o.line);
            let ahead = outcomes.iter().any(|o| o.backordered > 0);
            if ahead {
                if let Err(e) = self.fifo_etas(lines, &mut outcomes).await {
                    self.undo_holds(lines, &outcomes);
                    return Err(e);
                }
            }
            let now = self.0.clock.now_ms();
            let book = if ahead {
                BACKORDER_BOOK
            } else {
                self.0.next_id.load(Ordering::Relaxed) as usize % self.0.books.len()
            };
            let id = self.new_reservation_id(book);
            let held = self.held_lines(lines, &outcomes);
            let reservation = Reservation::held(id.clone(), held, now, expires_at(now, ttl_s));
            let (tx, rx) = oneshot::channel();
            if let Err(e) = self.book_for(&id).try_send(Create {
                event: Event::held(&reservation, idem.clone(), by.clone()),
                reservation: reservation.clone(),
                commits: self.holds_to_commit(lines, &outcomes),
                deliveries_seen: ahead.then_some(seen),
                reply: tx,
            }) {
                self.undo_holds(lines, &outcomes);
                self.count_overload();
                return Err(full(e));
            }
            match reply(rx).await? {
                Ok(Some((durable, _))) => {
                    durable.await?;
                    self.count_held(&reservation);
                    return Ok(Ok(reservation));
                }
                // Overtaken by a delivery: not journaled, held again.
                Ok(None) => self.undo_holds(lines, &outcomes),
                Err(e) => {
                    // Not journaled: nothing of it exists.
                    self.undo_holds(lines, &outcomes);
                    return Err(e.into());
                }
            }
        }
        self.count_overload();
        Err(EngineError::Overloaded)
    }

    /// Asks every stock shard of the cart at once to hold its lines
    /// provisionally: each line's outcome, and whether a shard's mailbox
    /// was full (its lines not asked).
    pub(super) async fn hold_in_every_shard(
        &self,
        lines: &[CartLine],
        partial: bool,
        against: stock_shard::Against,
    ) -> Result<(Vec<stock_shard::HoldOutcome>, bool), EngineError> {
        let n = self.0.stock.len();
        let mut per_shard: Vec<Vec<HoldLine>> = vec![Vec::new(); n];
        {
            let c = self.0.catalog.read();
            for hl in hold_lines(&c, lines.iter().enumerate(), self.0.clock.now_ms()) {
                let shard = hl.sku as usize % n;
                per_shard[shard].push(hl);
            }
        }
        let mut waiting = Vec::with_capacity(n);
        let mut overloaded = false;
        for (shard, hl) in per_shard.into_iter().enumerate() {
            if hl.is_empty() {
                continue;
            }
            let (tx, rx) = oneshot::channel();
            match self.0.stock[shard].try_send(Hold {
                lines: hl,
                partial,
                against,
                reply: tx,
            }) {
                Ok(()) => waiting.push(rx),
                Err(_) => overloaded = true,
            }
        }
        let mut outcomes = Vec::with_capacity(lines.len());
        for rx in waiting {
            outcomes.extend(reply(rx).await?);
        }
        Ok((outcomes, overloaded))
    }

    /// Each line sold ahead of supply gets the time the supply that
    /// first-in first-out gives its units is expected (the units sold
    /// ahead before it first), not merely the earliest one's. An
    /// estimate, as every ETA: supply arrives in its own order.
    async fn fifo_etas(
        &self,
        lines: &[CartLine],
        outcomes: &mut [stock_shard::HoldOutcome],
    ) -> Result<(), EngineError> {
        let named: Vec<(usize, SkuId, LocationId)> = {
            let c = self.0.catalog.read();
            outcomes
                .iter()
                .enumerate()
                .filter(|(_, o)| o.backordered > 0)
                .filter_map(|(i, o)| {
                    let l = &lines[o.line];
                    Some((
                        i,
                        c.sku(l.sku)?.0.clone(),
                        c.location(l.location)?.0.clone(),
                    ))
                })
                .collect()
        };
        let etas: Vec<(usize, Option<TimeMs>)> = self
            .read_supplies(|b| {
                named
                    .iter()
                    .map(|(i, sku, loc)| {
                        let o = &outcomes[*i];
                        (*i, b.fifo_eta(sku, loc, o.after, o.backordered))
                    })
                    .collect()
            })
            .await?;
        for (i, eta) in etas {
            if let Some(eta) = eta {
                outcomes[i].eta = eta;
            }
        }
        Ok(())
    }

    /// The reservation's lines: what each held line got.
    fn held_lines(&self, lines: &[CartLine], outcomes: &[stock_shard::HoldOutcome]) -> Vec<Line> {
        let c = self.0.catalog.read();
        outcomes
            .iter()
            .filter(|o| o.held > 0)
            .filter_map(|o| {
                let l = &lines[o.line];
                Some(Line {
                    sku: c.sku(l.sku)?.0.clone(),
                    location: c.location(l.location)?.0.clone(),
                    qty: o.held,
                    requested: l.qty,
                    backordered: o.backordered,
                    eta_ms: o.eta,
                })
            })
            .collect()
    }

    /// What each stock shard is to count as committed once the cart is
    /// journaled (`reservation_book::Create` sends it).
    fn holds_to_commit(
        &self,
        lines: &[CartLine],
        outcomes: &[stock_shard::HoldOutcome],
    ) -> Vec<reservation_book::ShardCommit> {
        let held = outcomes.iter().filter(|o| o.held > 0).map(|o| {
            let l = &lines[o.line];
            (l.sku, (l.sku, l.location, o.delta()))
        });
        stock_shard::by_shard(self.0.stock.len(), held).collect()
    }

    /// The fast path: every line in one stock shard, which journals the cart.
    pub(super) async fn reserve_in_one_shard(
        &self,
        shard: usize,
        lines: &[CartLine],
        partial: bool,
        ttl_s: u64,
        (idem, by): (Option<IdemKey>, Option<By>),
    ) -> Result<Result<Reservation, Vec<Shortage>>, EngineError> {
        let now = self.0.clock.now_ms();
        let (names, hold_lines): (Vec<(SkuId, LocationId)>, Vec<HoldLine>) = {
            let c = self.0.catalog.read();
            let names = lines
                .iter()
                .filter_map(|l| Some((c.sku(l.sku)?.0.clone(), c.location(l.location)?.0.clone())))
                .collect();
            // Never sold ahead here (`reserve_as` sends such carts across
            // shards): a SKU allowing it since `sells_ahead` read the
            // catalog holds on hand only.
            let hold = hold_lines(&c, lines.iter().enumerate(), now).map(|mut h| {
                h.supply = h.supply.map(|s| SupplySale { max_units: 0, ..s });
                h
            });
            (names, hold.collect())
        };
        if names.len() != lines.len() {
            // Lines are resolved against the catalog, which never forgets.
            return Err(EngineError::Stopped);
        }
        let id = self.new_reservation_id(shard);
        let (tx, rx) = oneshot::channel();
        let sent = self.0.stock[shard].try_send(HoldAndRecord {
            lines: hold_lines,
            names,
            partial,
            book: self.0.book_inserts[self.book_index(&id)].clone(),
            id,
            now,
            ttl_s,
            idem,
            by,
            reply: tx,
        });
        if let Err(e) = sent {
            self.count_overload();
            return Err(full(e));
        }
        match reply(rx).await?? {
            Ok((reservation, durable)) => {
                durable.await?;
                self.count_held(&reservation);
                Ok(Ok(reservation))
            }
            Err(outcomes) => {
                self.0
                    .metrics
                    .reservations_rejected
                    .fetch_add(1, Ordering::Relaxed);
                Ok(Err(self.shortages(lines, &outcomes)))
            }
        }
    }

    pub(super) fn undo_holds(&self, lines: &[CartLine], outcomes: &[stock_shard::HoldOutcome]) {
        // Provisional holds only: on_hand untouched (the time does not
        // matter), never journaled (no ticket).
        stock_shard::send_deltas(
            &self.0.stock,
            0,
            None,
            outcomes.iter().filter(|o| o.held > 0).map(|o| {
                let l = &lines[o.line];
                (l.sku, l.location, o.delta().hold_undone())
            }),
        );
    }

    pub(super) fn shortages(
        &self,
        lines: &[CartLine],
        outcomes: &[stock_shard::HoldOutcome],
    ) -> Vec<Shortage> {
        let c = self.0.catalog.read();
        let mut v: Vec<_> = outcomes
            .iter()
            .filter(|o| o.short)
            .filter_map(|o| {
                let l = &lines[o.line];
                Some((
                    o.line,
                    Shortage {
                        sku: c.sku(l.sku)?.0.clone(),
                        location: c.location(l.location)?.0.clone(),
                        requested: l.qty,
                        available: o.available,
                    },
                ))
            })
            .collect();
        v.sort_by_key(|(i, _)| *i);
        v.into_iter().map(|(_, s)| s).collect()
    }

    pub async fn transition(
        &self,
        id: ReservationId,
        transition: Transition,
    ) -> Result<Result<Reservation, TransitionRefused>, EngineError> {
        self.transition_as(id, transition, None).await
    }

    /// `transition` on `by`'s word (the movement history names it).
    pub async fn transition_as(
        &self,
        id: ReservationId,
        transition: Transition,
        by: Option<By>,
    ) -> Result<Result<Reservation, TransitionRefused>, EngineError> {
        let (tx, rx) = oneshot::channel();
        let now = self.0.clock.now_ms();
        self.book_for(&id)
            .try_send(Transit {
                id,
                transition,
                now,
                by,
                reply: tx,
            })
            .map_err(full)?;
        durable_reply(rx).await
    }

    /// Turns the held reservation `from` into one new reservation per part
    /// (an order's shipments), expiring `ttl_s` from now: one journal
    /// record, no stock moved. Answers once it is durable.
    pub async fn split_reservation(
        &self,
        from: ReservationId,
        parts: Vec<Vec<Line>>,
        ttl_s: u64,
    ) -> Result<Result<Vec<Reservation>, SplitRefused>, EngineError> {
        let book = self.book_index(&from);
        // The parts live in the same book as `from`: the book inserts them
        // as it journals the split, no other actor involved.
        let into = parts
            .into_iter()
            .map(|lines| (self.new_reservation_id(book), lines))
            .collect();
        let now = self.0.clock.now_ms();
        let (tx, rx) = oneshot::channel();
        self.0.books[book]
            .try_send(Split {
                from,
                into,
                now,
                expires_at_ms: expires_at(now, ttl_s),
                reply: tx,
            })
            .map_err(full)?;
        durable_reply(rx).await
    }

    pub async fn reservation(&self, id: ReservationId) -> Result<Option<Reservation>, EngineError> {
        let (tx, rx) = oneshot::channel();
        self.book_for(&id)
            .try_send(Get { id, reply: tx })
            .map_err(full)?;
        reply(rx).await
    }

    /// A copy of the whole state (tests, invariant checks). Not for the hot path.
    pub async fn dump(&self) -> Result<(Catalog, StockTable, Vec<Reservation>), EngineError> {
        let mut stock = StockTable::default();
        for s in &self.0.stock {
            let (tx, rx) = oneshot::channel();
            s.send(Dump { reply: tx })
                .await
                .map_err(|_| EngineError::Stopped)?;
            for (sku, r) in reply(rx).await?.iter() {
                stock.put(sku, r);
            }
        }
        let mut res = Vec::new();
        for b in &self.0.books {
            let (tx, rx) = oneshot::channel();
            b.send(DumpBook { reply: tx })
                .await
                .map_err(|_| EngineError::Stopped)?;
            res.extend(reply(rx).await?);
        }
        Ok((self.0.catalog.read().clone(), stock, res))
    }
}
