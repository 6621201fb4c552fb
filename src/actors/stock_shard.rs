//! `StockShard`: the `SkuActor`s of the SKUs hashed to one shard.
//!
//! One actix actor per SKU would cost a mailbox and a context per SKU (a
//! network of 1,000,000 records would not fit the 64-bytes-a-record budget),
//! so a shard actor owns the stock records of many SKUs and serializes every
//! write to them: no locks, no oversell by construction. There is one shard
//! per arbiter (per core), as in TiKV's batch system.

use actix::prelude::*;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

use crate::clock::Clock;
use crate::domain::catalog::{Catalog, LocIdx, SkuIdx, SupplySale};
use crate::domain::event::{sold_by_adjustment, Count as CountFact, Event, IdemKey};
use crate::domain::history::By;
use crate::domain::ids::ReservationId;
use crate::domain::ids::{LocationId, SkuId};
use crate::domain::model::AdjustKey;
use crate::domain::recent_moves::{LateCountRefused, RecentMoves};
use crate::domain::reservation::{expires_at, sold_by_effect, Line, Reservation, Status};
use crate::domain::rotation::RotationTable;
use crate::domain::stock::{
    AdjustReason, AdjustRefused, Bucket, StockDelta, StockRecord, StockTable,
};
use crate::domain::TimeMs;
use crate::feed::{Change, Feed, Scope};
use crate::limits::{MAILBOX_CAPACITY, STOCK_MAX};
use crate::metrics::Metrics;
use crate::persistence::{Durable, Journal, JournalError};
use ahash::AHashMap;
use std::sync::atomic::Ordering;

pub struct StockShard {
    /// Names a record's SKU and location in a correction it journals
    /// (`keep_in_range`); read only then.
    catalog: Arc<parking_lot::RwLock<Catalog>>,
    table: StockTable,
    /// The sales windows of this shard's records (domain::rotation).
    rotation: RotationTable,
    /// Their recent movements and last counts (domain::recent_moves).
    moves: RecentMoves,
    journal: Journal,
    clock: Arc<dyn Clock>,
    /// The stock feed, this shard's index, and its count of changes sent.
    feed: Feed,
    /// Counts the units moved in and out of unsellable buckets.
    metrics: Arc<Metrics>,
    index: u32,
    changes: u64,
    /// Units held by carts spanning shards whose record is not journaled
    /// yet (`Hold`, then `Commit` or an undo): the feed never shows them.
    /// Reserved on hand and backordered, as in `Line::held`.
    provisional: AHashMap<(SkuIdx, LocIdx), (i64, i64)>,
    /// The keyed adjustments of this shard's SKUs (`Adjust::key`), as long
    /// as idempotency keys are kept.
    applied: AHashMap<String, AdjustKey>,
}

/// What a shard starts from: its records, their sales windows and its
/// keyed adjustments (recovered), and what it shares with the engine.
pub struct ShardStart {
    pub table: StockTable,
    pub rotation: RotationTable,
    pub moves: RecentMoves,
    pub applied: AHashMap<String, AdjustKey>,
    pub catalog: Arc<parking_lot::RwLock<Catalog>>,
    pub journal: Journal,
    pub clock: Arc<dyn Clock>,
    pub feed: Feed,
    pub metrics: Arc<Metrics>,
    pub index: u32,
}

impl StockShard {
    pub fn new(s: ShardStart) -> Self {
        let ShardStart {
            table,
            rotation,
            moves,
            applied,
            catalog,
            journal,
            clock,
            feed,
            metrics,
            index,
        } = s;
        Self {
            catalog,
            table,
            rotation,
            moves,
            journal,
            clock,
            feed,
            metrics,
            index,
            changes: 0,
            provisional: AHashMap::new(),
            applied,
        }
    }

    /// A record as the feed may show it: provisional holds left out.
    fn committed(&self, sku: SkuIdx, mut r: StockRecord) -> StockRecord {
        if let Some(p) = self.provisional.get(&(sku, r.location)) {
            r.reserved -= p.0;
            r.backordered -= p.1;
        }
        r
    }

    /// Hands a change of a record to the feed, committed by `ticket`.
    fn publish(&mut self, sku: SkuIdx, r: StockRecord, at_ms: TimeMs, ticket: u64) {
        self.changes += 1;
        let record = self.committed(sku, r);
        self.feed.change(Change {
            sku,
            record,
            at_ms,
            ticket,
            shard: self.index,
            shard_seq: self.changes,
        });
    }

    /// Applies a journaled change (`ticket`) made at `at_ms`: the record,
    /// its sales window, its recent movements, the feed. `sold`: the units
    /// a movement sold; `None`: a count, which sets the figure and is not
    /// a movement (the count handler notes it).
    fn apply_journaled(
        &mut self,
        sku: SkuIdx,
        loc: LocIdx,
        d: StockDelta,
        at_ms: TimeMs,
        sold: Option<u32>,
        ticket: u64,
    ) -> StockRecord {
        let r = self.table.apply(sku, loc, d);
        if d.on_hand != 0 {
            self.rotation
                .record(sku, loc, at_ms, sold.unwrap_or(0), r.on_hand);
            if sold.is_some() {
                self.moves.moved(sku, loc, at_ms, d.on_hand);
            }
        }
        self.publish(sku, r, at_ms, ticket);
        r
    }

    /// Counts a change `d` of provisional holds (its reserved and
    /// backordered units).
    fn provisional_add(&mut self, sku: SkuIdx, loc: LocIdx, d: StockDelta) {
        let e = self.provisional.entry((sku, loc)).or_insert((0, 0));
        e.0 += d.reserved;
        e.1 += d.backordered;
        if e.0 <= 0 && e.1 <= 0 {
            self.provisional.remove(&(sku, loc));
        }
    }

    /// Units of `sku` sold against incoming supply and not arrived, at
    /// every location (all of a SKU's records live in one shard).
    fn backordered_of(&self, sku: SkuIdx) -> i64 {
        self.table.records_of(sku).map(|r| r.backordered).sum()
    }

    fn view(&self, sku: SkuIdx, record: StockRecord, now: TimeMs) -> RecordView {
        RecordView {
            rotation: self.rotation.index(sku, record.location, now),
            record,
        }
    }
}

/// How often a shard drops the sales windows that sold nothing lately.
const ROTATION_SWEEP: Duration = Duration::from_secs(3600);

impl Actor for StockShard {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
        // A crash between a fulfilment and its correction (`keep_in_range`)
        // recovers the record out of range: corrected before serving.
        let out: Vec<(SkuIdx, StockRecord)> = self
            .table
            .iter()
            .filter(|(_, r)| !(0..=STOCK_MAX).contains(&r.on_hand))
            .collect();
        let now = self.clock.now_ms();
        for (s, r) in out {
            self.keep_in_range(s, r.location, r, now);
        }
        ctx.run_interval(ROTATION_SWEEP, |shard, _| {
            shard.rotation.forget_stale(shard.clock.now_ms())
        });
    }
}

/// A stock record as read: the record and its rotation index today.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RecordView {
    pub record: StockRecord,
    pub rotation: f64,
}

/// One line to hold: its index in the cart, the record, the quantity.
#[derive(Debug, Clone, Copy)]
pub struct HoldLine {
    pub line: usize,
    pub sku: SkuIdx,
    pub location: LocIdx,
    pub qty: u32,
    /// How it may be sold against incoming supply (a backorder or a
    /// preorder; `Catalog`'s `SupplySale`), if at all.
    pub supply: Option<SupplySale>,
}

/// What a line got: `held` (0 when short) and the availability seen.
#[derive(Debug, Clone, Copy)]
pub struct HoldOutcome {
    pub line: usize,
    pub held: u32,
    /// Of `held`, the units sold against incoming supply, and the
    /// earliest time that supply is expected (`Engine::fifo_etas` makes
    /// it the time of the supply first-in first-out gives them).
    pub backordered: u32,
    pub eta: TimeMs,
    /// The units sold ahead at the record before this line's: their
    /// supply comes to them first.
    pub after: u32,
    pub available: i64,
    /// Fewer than the requested quantity were available.
    pub short: bool,
}

impl HoldOutcome {
    /// Its record's change: `Line::held` of what it got.
    pub fn delta(&self) -> StockDelta {
        StockDelta {
            reserved: i64::from(self.held - self.backordered),
            backordered: i64::from(self.backordered),
            ..StockDelta::default()
        }
    }
}

/// Holds the lines of this shard. All or nothing within the shard unless
/// `partial`; the coordinator undoes the other shards' holds when needed.
/// Holds are applied in memory only: the reservation book journals the cart.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Hold {
    pub lines: Vec<HoldLine>,
    pub partial: bool,
    /// What the units are held against: a sale's (available) or a
    /// transfer's shipment's (free).
    pub against: Against,
    pub reply: oneshot::Sender<Vec<HoldOutcome>>,
}

/// What a hold may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Against {
    /// A sale: what is available (safety stock kept back).
    Available,
    /// A transfer's shipment: what is free, all or nothing
    /// (`StockRecord::decide_hold_free`).
    Free,
}

impl StockShard {
    /// Holds the lines: all or nothing unless `partial`. Returns what each
    /// line got; on a failed all-or-nothing cart nothing stays held.
    fn hold(
        &mut self,
        lines: &[HoldLine],
        partial: bool,
        against: Against,
    ) -> (Vec<HoldOutcome>, bool) {
        let mut out = Vec::with_capacity(lines.len());
        let mut short = false;
        for l in lines {
            let rec = self.table.get_or_empty(l.sku, l.location);
            let want = i64::from(l.qty);
            // Once short, an all-or-nothing cart fails anyway: nothing
            // more is held, but each line says whether it is short.
            let (available, got, backordered) = match (against, l.supply) {
                (Against::Available, None) => (
                    rec.available(),
                    if partial {
                        rec.decide_hold_partial(want)
                    } else if short {
                        0
                    } else {
                        rec.decide_hold(want).map(|_| want).unwrap_or(0)
                    },
                    0,
                ),
                (Against::Available, Some(sale)) => {
                    let room = i64::from(sale.max_units) - self.backordered_of(l.sku);
                    let (on_hand, backordered) =
                        rec.decide_hold_backorder(want, sale.only_supply, room);
                    let whole = on_hand + backordered == want;
                    if partial || (whole && !short) {
                        (on_hand + backordered, on_hand + backordered, backordered)
                    } else {
                        (on_hand + backordered, 0, 0)
                    }
                }
                (Against::Free, _) => {
                    debug_assert!(!partial, "a transfer's shipment is all or nothing");
                    match rec.decide_hold_free(want) {
                        Ok(_) if !short => (rec.free(), want, 0),
                        Ok(_) => (rec.free(), 0, 0),
                        Err(free) => (free, 0, 0),
                    }
                }
            };
            let o = HoldOutcome {
                line: l.line,
                held: got as u32,
                backordered: backordered as u32,
                eta: if backordered > 0 { rec.incoming_eta } else { 0 },
                after: u32::try_from(rec.backordered).unwrap_or(u32::MAX),
                available,
                short: available < want,
            };
            if got > 0 {
                // Not journaled yet: the version moves once it is.
                self.table.apply_provisional(l.sku, l.location, o.delta());
            }
            short |= o.short;
            out.push(o);
        }
        let failed = (short && !partial) || out.iter().all(|o| o.held == 0);
        if failed {
            self.undo(lines, &mut out);
        }
        (out, failed)
    }

    fn undo(&mut self, lines: &[HoldLine], out: &mut [HoldOutcome]) {
        for (l, o) in lines.iter().zip(out.iter_mut()) {
            if o.held > 0 {
                self.table
                    .apply_provisional(l.sku, l.location, o.delta().hold_undone());
                o.held = 0;
                o.backordered = 0;
            }
        }
    }
}

impl Handler<Hold> for StockShard {
    type Result = ();
    fn handle(&mut self, m: Hold, _: &mut Context<Self>) {
        let (out, _) = self.hold(&m.lines, m.partial, m.against);
        // Not journaled yet: the coordinator commits or undoes them.
        for (l, o) in m.lines.iter().zip(&out) {
            if o.held > 0 {
                self.provisional_add(l.sku, l.location, o.delta());
            }
        }
        let _ = m.reply.send(out);
    }
}

/// The record of a cart spanning shards is in the journal (`ticket`): its
/// holds here stop being provisional and the feed may show them.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Commit {
    /// Each hold's record and its change (`HoldOutcome::delta`).
    pub lines: Vec<(SkuIdx, LocIdx, StockDelta)>,
    pub at_ms: TimeMs,
    pub ticket: u64,
}

impl Handler<Commit> for StockShard {
    type Result = ();
    fn handle(&mut self, m: Commit, _: &mut Context<Self>) {
        for (s, l, d) in m.lines {
            self.provisional_add(s, l, d.hold_undone());
            let r = self.table.commit(s, l);
            self.publish(s, r, m.at_ms, m.ticket);
        }
    }
}

pub type HoldAndRecordReply =
    Result<Result<(Reservation, Durable), Vec<HoldOutcome>>, JournalError>;

/// A reservation whose cart a stock shard journaled (the fast path), for
/// its reservation book to keep.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Insert(pub Reservation);

/// The fast path of a cart whose lines all live in this shard: hold, journal
/// the cart, hand it to its book, answer; one round trip instead of two.
/// The book gets the reservation before the client can name it: the client
/// learns the id only after the record is durable, and the book's mailbox
/// is FIFO.
#[derive(Message)]
#[rtype(result = "()")]
pub struct HoldAndRecord {
    pub lines: Vec<HoldLine>,
    /// The names of each line's SKU and location, by line index.
    pub names: Vec<(SkuId, LocationId)>,
    pub partial: bool,
    pub id: ReservationId,
    pub now: TimeMs,
    pub ttl_s: u64,
    pub idem: Option<IdemKey>,
    /// Whose word (the movement history names it).
    pub by: Option<By>,
    /// The reservation book that keeps the reservation (`Insert`).
    pub book: Recipient<Insert>,
    pub reply: oneshot::Sender<HoldAndRecordReply>,
}

impl Handler<HoldAndRecord> for StockShard {
    type Result = ();
    fn handle(&mut self, m: HoldAndRecord, _: &mut Context<Self>) {
        let (mut out, failed) = self.hold(&m.lines, m.partial, Against::Available);
        if failed {
            let _ = m.reply.send(Ok(Err(out)));
            return;
        }
        // `hold` answers one outcome per line, in the lines' order.
        let lines: Vec<Line> = m
            .lines
            .iter()
            .zip(&out)
            .filter(|(_, o)| o.held > 0)
            .map(|(l, o)| Line {
                sku: m.names[l.line].0.clone(),
                location: m.names[l.line].1.clone(),
                qty: o.held,
                requested: l.qty,
                backordered: o.backordered,
                eta_ms: o.eta,
            })
            .collect();
        let reservation = Reservation::held(m.id, lines, m.now, expires_at(m.now, m.ttl_s));
        let event = Event::held(&reservation, m.idem, m.by);
        match self.journal.append_ticketed(&event) {
            Err(e) => {
                self.undo(&m.lines, &mut out);
                let _ = m.reply.send(Err(e));
            }
            Ok((durable, ticket)) => {
                for (l, o) in m.lines.iter().zip(&out) {
                    if o.held > 0 {
                        let r = self.table.commit(l.sku, l.location);
                        self.publish(l.sku, r, m.now, ticket);
                    }
                }
                // Internal, must not be dropped: bounded by the carts in flight.
                m.book.do_send(Insert(reservation.clone()));
                let _ = m.reply.send(Ok(Ok((reservation, durable))));
            }
        }
    }
}

/// A transfer's shipment is in the journal (`ticket`): its units held at
/// the sender (`Hold` against free units) are released and its moves
/// (`Transfer::moves`: off the sender's on_hand, in transit at the
/// receiver) applied, in one turn: nobody sees the hold released before
/// the units left.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ShipTransfer {
    /// The holds: (SKU, sender, units).
    pub held: Vec<(SkuIdx, LocIdx, u32)>,
    pub moves: Vec<(SkuIdx, LocIdx, StockDelta)>,
    pub at_ms: TimeMs,
    pub ticket: u64,
}

impl Handler<ShipTransfer> for StockShard {
    type Result = ();
    fn handle(&mut self, m: ShipTransfer, _: &mut Context<Self>) {
        for (s, from, q) in m.held {
            let release = StockDelta {
                reserved: -i64::from(q),
                ..StockDelta::default()
            };
            self.table.apply_provisional(s, from, release);
            self.provisional_add(s, from, release);
        }
        for (s, l, d) in m.moves {
            // Movements, not sales: a count taken before them must see them.
            let r = self.apply_journaled(s, l, d, m.at_ms, Some(0), m.ticket);
            self.keep_in_range(s, l, r, m.at_ms);
        }
    }
}

/// Applies deltas decided elsewhere and already queued in the journal
/// (undoing holds of a failed cart, the effects of a release, expiry or
/// fulfilment, a return's restock). Sent with `do_send`: these must never
/// be dropped, and their number is bounded by the holds that exist.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ApplyDeltas {
    pub deltas: Vec<(SkuIdx, LocIdx, StockDelta)>,
    /// The time of the journaled fact (for the rotation window).
    pub at_ms: TimeMs,
    /// The on_hand these deltas take out was sold (a fulfilment).
    pub sale: bool,
    /// The ticket of the journal record they come from; `None`: they undo
    /// provisional holds of a cart that was never journaled.
    pub ticket: Option<u64>,
}

impl Handler<ApplyDeltas> for StockShard {
    type Result = ();
    fn handle(&mut self, m: ApplyDeltas, _: &mut Context<Self>) {
        for (s, l, d) in m.deltas {
            match m.ticket {
                Some(t) => {
                    let sold = if m.sale {
                        sold_by_effect(Status::Fulfilled, d)
                    } else {
                        0
                    };
                    let r = self.apply_journaled(s, l, d, m.at_ms, Some(sold), t);
                    self.keep_in_range(s, l, r, m.at_ms);
                }
                // Undoing holds the feed never showed: on_hand untouched.
                None => {
                    self.table.apply_provisional(s, l, d);
                    self.provisional_add(s, l, d);
                }
            }
        }
    }
}

/// A count of one record, resolved.
#[derive(Debug, Clone)]
pub struct CountItem {
    pub sku_idx: SkuIdx,
    pub loc_idx: LocIdx,
    pub sku: SkuId,
    pub location: LocationId,
    pub on_hand: i64,
    /// `None` keeps the current safety stock.
    pub safety_stock: Option<i64>,
    /// When it was taken, if earlier than now: on_hand becomes the count
    /// plus what moved since (`domain::recent_moves`).
    pub counted_at: Option<TimeMs>,
}

/// What a batch of counts answers: per item, its record after the count,
/// or why a count as of a time was refused (the rest are applied).
pub type CountReply = Result<(Vec<Result<RecordView, LateCountRefused>>, Durable), JournalError>;

/// Counts (sets on_hand and safety_stock) as one journal record.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Count {
    pub items: Vec<CountItem>,
    pub by: Option<By>,
    pub reply: oneshot::Sender<CountReply>,
}

impl StockShard {
    /// Decides one item of a batch on its record as the items before it
    /// left it (`rec`, and `last`, the record's last count).
    fn decide_count_item(
        &self,
        c: &CountItem,
        rec: &mut StockRecord,
        last: &mut Option<TimeMs>,
        now: TimeMs,
    ) -> Result<CountFact, LateCountRefused> {
        // A device's clock a little ahead (the API bounds how far) is now.
        let counted_at = c.counted_at.map(|t| t.min(now));
        let taken = counted_at.unwrap_or(now);
        if let Some(l) = last.filter(|l| taken < *l) {
            return Err(LateCountRefused::Stale { last: l });
        }
        let target = self
            .moves
            .count_target(c.sku_idx, c.loc_idx, c.on_hand, counted_at, now)?;
        let safety_stock = c.safety_stock.unwrap_or(i64::from(rec.safety_stock));
        let d = rec.decide_count(target, safety_stock);
        rec.apply(d);
        *last = Some(last.map_or(taken, |l| l.max(taken)));
        Ok(CountFact {
            sku: c.sku.clone(),
            location: c.location.clone(),
            on_hand: c.on_hand,
            safety_stock,
            on_hand_delta: d.on_hand,
            safety_stock_delta: d.safety_stock,
            counted_at,
        })
    }
}

impl Handler<Count> for StockShard {
    type Result = ();
    fn handle(&mut self, m: Count, _: &mut Context<Self>) {
        // Items apply in order: each is decided on the record as the items
        // before it left it (a batch naming a record twice sets it twice;
        // the last count wins), not on the record before the batch.
        let now = self.clock.now_ms();
        let mut after: AHashMap<(SkuIdx, LocIdx), (StockRecord, Option<TimeMs>)> = AHashMap::new();
        let decided: Vec<Result<CountFact, LateCountRefused>> = m
            .items
            .iter()
            .map(|c| {
                let key = (c.sku_idx, c.loc_idx);
                let (rec, last) = after.entry(key).or_insert_with(|| {
                    let rec = self.table.get_or_empty(c.sku_idx, c.loc_idx);
                    (rec, self.moves.last_counted(c.sku_idx, c.loc_idx))
                });
                self.decide_count_item(c, rec, last, now)
            })
            .collect();
        let facts: Vec<CountFact> = decided.iter().flatten().cloned().collect();
        // Persist first (the record's place is fixed), then apply.
        let r = self
            .journal
            .append_ticketed(&Event::Counted {
                items: facts,
                at_ms: now,
                by: m.by,
            })
            .map(|(durable, ticket)| {
                let recs = m
                    .items
                    .iter()
                    .zip(decided)
                    .map(|(c, fact)| {
                        let f = fact?;
                        let d = StockDelta {
                            on_hand: f.on_hand_delta,
                            safety_stock: f.safety_stock_delta,
                            ..StockDelta::default()
                        };
                        let r = self.apply_journaled(c.sku_idx, c.loc_idx, d, now, None, ticket);
                        let taken = f.counted_at.unwrap_or(now);
                        self.moves.counted(c.sku_idx, c.loc_idx, taken);
                        Ok(self.view(c.sku_idx, r, now))
                    })
                    .collect();
                (recs, durable)
            });
        let _ = m.reply.send(r);
    }
}

/// A stock adjustment with its reason, and whose word it is on.
#[derive(Debug, Clone)]
pub struct Adjustment {
    pub sku_idx: SkuIdx,
    pub loc_idx: LocIdx,
    pub sku: SkuId,
    pub location: LocationId,
    pub delta: i64,
    pub reason: AdjustReason,
    /// Applied once under it: asked again with the same adjustment, the
    /// record is answered as it is; another adjustment under it is refused.
    pub key: Option<String>,
    pub by: Option<By>,
    pub note: Option<String>,
    /// Units into (positive) or out of a bucket of unsellable stock:
    /// with a `delta` of 0, set apart or back; with one, a write-off of
    /// unsellable units or a receipt straight into a bucket.
    pub unsellable: Option<(Bucket, i64)>,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct Adjust {
    pub what: Adjustment,
    #[allow(clippy::type_complexity)]
    pub reply: oneshot::Sender<Result<Result<(RecordView, Durable), AdjustRefused>, JournalError>>,
}

impl Handler<Adjust> for StockShard {
    type Result = ();
    fn handle(&mut self, m: Adjust, _: &mut Context<Self>) {
        let a = m.what;
        let rec = self.table.get_or_empty(a.sku_idx, a.loc_idx);
        let now = self.clock.now_ms();
        if let Some(before) = a.key.as_ref().and_then(|k| self.applied.get(k)) {
            let same = before.sku == a.sku
                && before.location == a.location
                && before.delta == a.delta
                && before.unsellable == a.unsellable;
            let r = if same {
                Ok((self.view(a.sku_idx, rec, now), Durable::journaled_before()))
            } else {
                Err(AdjustRefused::KeyReused)
            };
            let _ = m.reply.send(Ok(r));
            return;
        }
        let r = match rec.decide_adjust(a.delta, a.unsellable) {
            Err(refused) => Ok(Err(refused)),
            Ok(d) => self
                .journal
                .append_ticketed(&Event::Adjusted {
                    sku: a.sku.clone(),
                    location: a.location.clone(),
                    delta: a.delta,
                    reason: a.reason,
                    at_ms: now,
                    key: a.key.clone(),
                    by: a.by,
                    note: a.note,
                    unsellable: a.unsellable,
                })
                .map(|(durable, ticket)| {
                    let sold = sold_by_adjustment(a.reason, a.delta);
                    let r = self.apply_journaled(a.sku_idx, a.loc_idx, d, now, Some(sold), ticket);
                    if let Some((b, u)) = a.unsellable {
                        self.metrics.unsellable_units[b as usize][usize::from(u < 0)]
                            .fetch_add(u.unsigned_abs(), Ordering::Relaxed);
                    }
                    if let Some(k) = a.key {
                        self.remember(
                            k,
                            AdjustKey {
                                sku: a.sku,
                                location: a.location,
                                delta: a.delta,
                                at_ms: now,
                                unsellable: a.unsellable,
                            },
                        );
                    }
                    Ok((self.view(a.sku_idx, r, now), durable))
                }),
        };
        let _ = m.reply.send(r);
    }
}

impl StockShard {
    /// A fact decided elsewhere took the record's on_hand out of
    /// `0..=STOCK_MAX`: a fulfilment of more than a count left (the count
    /// was lower than what was reserved, and the goods left all the same),
    /// or a return past the bound. The fact stands (the goods did leave or
    /// come back), so the record is corrected to the bound by a journaled
    /// `correction` adjustment, in this same turn of the shard: no read nor
    /// feed ever shows it out of range, and replay applies both records
    /// (additive, so it ends where this does whatever order the shards saw
    /// them in).
    fn keep_in_range(&mut self, sku: SkuIdx, loc: LocIdx, r: StockRecord, at_ms: TimeMs) {
        let delta = r.on_hand.clamp(0, STOCK_MAX) - r.on_hand;
        if delta == 0 {
            return;
        }
        let names = {
            let c = self.catalog.read();
            c.sku(sku)
                .map(|x| x.0.clone())
                .zip(c.location(loc).map(|x| x.0.clone()))
        };
        let Some((sku_id, loc_id)) = names else {
            return;
        };
        tracing::warn!(
            sku = %sku_id,
            location = %loc_id,
            on_hand = r.on_hand,
            delta,
            "on_hand out of range after a fulfilment or return: corrected"
        );
        let fact = Event::Adjusted {
            sku: sku_id,
            location: loc_id,
            delta,
            reason: AdjustReason::Correction,
            at_ms,
            key: None,
            by: None,
            note: Some("on_hand out of range after a fulfilment or return".into()),
            unsellable: None,
        };
        // Nobody waits on it: a journal that fails is poisoned, and the
        // engine stops taking writes.
        if let Ok((_, ticket)) = self.journal.append_ticketed(&fact) {
            let d = StockDelta {
                on_hand: delta,
                ..StockDelta::default()
            };
            self.apply_journaled(sku, loc, d, at_ms, Some(0), ticket);
        }
    }

    /// Keeps a keyed adjustment's key; every 1,024 keys, forgets those
    /// older than idempotency keys are kept (as snapshots do).
    fn remember(&mut self, key: String, done: AdjustKey) {
        let now = done.at_ms;
        self.applied.insert(key, done);
        if self.applied.len().is_multiple_of(1024) {
            self.applied
                .retain(|_, k| k.at_ms >= now - crate::limits::IDEMPOTENCY_RETENTION_MS);
        }
    }
}

/// Reads records of one SKU: at the given locations, or all of them (`None`).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Read {
    pub sku: SkuIdx,
    pub locations: Option<Vec<LocIdx>>,
    /// Counts the holds of carts not journaled yet (which may still be
    /// undone) in `reserved`, as holds decide: the planner's view. A
    /// client's read leaves them out, as the feed does: what it shows
    /// happened, and its version says so.
    pub provisional: bool,
    pub reply: oneshot::Sender<Vec<RecordView>>,
}

impl Handler<Read> for StockShard {
    type Result = ();
    fn handle(&mut self, m: Read, _: &mut Context<Self>) {
        let now = self.clock.now_ms();
        let shown = |r: StockRecord| {
            let r = if m.provisional {
                r
            } else {
                self.committed(m.sku, r)
            };
            self.view(m.sku, r, now)
        };
        let out = match m.locations {
            Some(locs) => locs
                .iter()
                .map(|l| shown(self.table.get_or_empty(m.sku, *l)))
                .collect(),
            None => self.table.records_of(m.sku).map(shown).collect(),
        };
        let _ = m.reply.send(out);
    }
}

/// A copy of the whole table (for invariant checks and snapshots).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Dump {
    pub reply: oneshot::Sender<StockTable>,
}

impl Handler<Dump> for StockShard {
    type Result = ();
    fn handle(&mut self, m: Dump, _: &mut Context<Self>) {
        let _ = m.reply.send(self.table.clone());
    }
}

/// What the feed may show of a scope now, for a new subscriber: the
/// committed records of this shard in `scope`, and the shard's count of
/// changes so far (the changes the reader gets later that are at or
/// before it are in the snapshot already). Every change they show was
/// queued to the journal before this answer: the reader waits on a
/// journal barrier before showing them (`Engine::feed_view`).
#[derive(Message)]
#[rtype(result = "()")]
pub struct FeedSnapshot {
    pub scope: Scope,
    pub reply: oneshot::Sender<FeedSnapshotReply>,
}

pub struct FeedSnapshotReply {
    pub records: Vec<(SkuIdx, StockRecord)>,
    pub shard: u32,
    pub changes: u64,
}

impl Handler<FeedSnapshot> for StockShard {
    type Result = ();
    fn handle(&mut self, m: FeedSnapshot, _: &mut Context<Self>) {
        let records = match m.scope {
            Scope::Sku(s) => self
                .table
                .records_of(s)
                .map(|r| (s, self.committed(s, r)))
                .collect(),
            Scope::Location(l) => {
                let mut v: Vec<(SkuIdx, StockRecord)> = self
                    .table
                    .at_location(l)
                    .map(|(s, r)| (s, self.committed(s, r)))
                    .collect();
                v.sort_unstable_by_key(|(s, _)| *s);
                v
            }
        };
        let _ = m.reply.send(FeedSnapshotReply {
            records,
            shard: self.index,
            changes: self.changes,
        });
    }
}

/// Sends deltas already decided (journaled at `at_ms` with `ticket`, or
/// `None`: undoing provisional holds; none is a sale) to their stock
/// shards, one message per shard touched.
pub fn send_deltas(
    shards: &[Addr<StockShard>],
    at_ms: TimeMs,
    ticket: Option<u64>,
    deltas: impl IntoIterator<Item = (SkuIdx, LocIdx, StockDelta)>,
) {
    for (i, d) in by_shard(shards.len(), deltas.into_iter().map(|d| (d.0, d))) {
        shards[i].do_send(ApplyDeltas {
            deltas: d,
            at_ms,
            sale: false,
            ticket,
        });
    }
}

/// Items grouped by the stock shard (of `n`) of their SKU: each shard
/// touched with its items, in their order.
pub fn by_shard<T>(
    n: usize,
    items: impl IntoIterator<Item = (SkuIdx, T)>,
) -> impl Iterator<Item = (usize, Vec<T>)> {
    let mut per_shard: Vec<Vec<T>> = (0..n).map(|_| Vec::new()).collect();
    for (sku, item) in items {
        per_shard[sku as usize % n].push(item);
    }
    per_shard
        .into_iter()
        .enumerate()
        .filter(|(_, v)| !v.is_empty())
}
