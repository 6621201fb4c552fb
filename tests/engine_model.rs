//! A model-based state-machine test: long random command sequences, restarts
//! and power cuts included, against the engine (actors + journal over
//! simulated storage) and against a plain model written separately.

mod common;

use common::sim::{hold_one, loc, one_record, rt, sku};
use holdfast::actors::stock_shard::CountItem;
use holdfast::actors::{Adjustment, CartLine, Engine};
use holdfast::clock::{Clock, ManualClock};
use holdfast::domain::catalog::{Backorder, Location, LocationKind, Sku};
use holdfast::domain::model::TransitionRefused;
use holdfast::domain::recent_moves::LateCountRefused;
use holdfast::domain::reservation::{Status, Transition};
use holdfast::domain::stock::{AdjustReason, Bucket};
use holdfast::domain::supply::SupplyStep;
use holdfast::domain::transfer::TransferStep;
use holdfast::domain::ReservationId;
use holdfast::persistence::SimStorage;
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const SKUS: u32 = 3;
const LOCS: u32 = 2;
/// SKU 0 may be sold against incoming supply: this many units at most
/// outstanding (`Sku::backorder`).
const BACKORDER_MAX: i64 = 6;

#[derive(Debug, Clone)]
enum Cmd {
    /// A batch of counts, in order; a record may be named more than once.
    /// (sku, location, on_hand, taken this long ago or now).
    Count(Vec<(u32, u32, i64, Option<i64>)>),
    Adjust(u32, u32, i64),
    /// Units set apart as damaged (positive) or back (negative).
    SetApart(u32, u32, i64),
    /// Lines, partial, ttl, and whether they allow a backorder.
    Reserve(Vec<(u32, u32, u32)>, bool, u64, bool),
    Transit(usize, u8),
    /// A transfer of (sku, qty) from a location to the other, requested
    /// and shipped.
    Ship(u32, u32, u32),
    /// The receipt of the i-th transfer shipped: this many arrived.
    Receive(usize, u32),
    /// Supply of (sku, location, qty) expected this long ahead.
    Expect(u32, u32, u32, i64),
    /// A delivery of the i-th supply: this many arrived.
    Deliver(usize, u32),
    CancelSupply(usize),
    Advance(i64),
    Restart,
    PowerCut,
}

fn cmd() -> impl Strategy<Value = Cmd> {
    prop_oneof![
        3 => prop::collection::vec((0..SKUS, 0..LOCS, 0..20i64, prop_oneof![3 => Just(None), 1 => (0..30_000i64).prop_map(Some)]), 1..4).prop_map(Cmd::Count),
        2 => (0..SKUS, 0..LOCS, -6..6i64).prop_filter("nonzero", |x| x.2 != 0).prop_map(|(s, l, d)| Cmd::Adjust(s, l, d)),
        2 => (0..SKUS, 0..LOCS, -4..6i64).prop_filter("nonzero", |x| x.2 != 0).prop_map(|(s, l, d)| Cmd::SetApart(s, l, d)),
        6 => (prop::collection::vec((0..SKUS, 0..LOCS, 1..5u32), 1..4), any::<bool>(), 1..30u64, any::<bool>()).prop_map(|(l, p, t, b)| Cmd::Reserve(l, p, t, b)),
        6 => (0..64usize, 0..4u8).prop_map(|(i, t)| Cmd::Transit(i, t)),
        2 => (0..SKUS, 0..LOCS, 1..8u32).prop_map(|(s, l, q)| Cmd::Ship(s, l, q)),
        2 => (0..16usize, 0..8u32).prop_map(|(i, q)| Cmd::Receive(i, q)),
        2 => (0..SKUS, 0..LOCS, 1..9u32, 0..90_000i64).prop_map(|(s, l, q, a)| Cmd::Expect(s, l, q, a)),
        2 => (0..16usize, 0..6u32).prop_map(|(i, q)| Cmd::Deliver(i, q)),
        1 => (0..16usize).prop_map(Cmd::CancelSupply),
        1 => (1..20_000i64).prop_map(Cmd::Advance),
        1 => Just(Cmd::Restart),
        1 => Just(Cmd::PowerCut),
    ]
}

/// Lines (sku, loc, qty, of it backordered), status, expires_at.
type PlainReservation = (Vec<(u32, u32, i64, i64)>, Status, i64);

/// The plain model: what api.md says, in the simplest terms.
#[derive(Debug, Default, Clone, PartialEq)]
struct Plain {
    /// (sku, loc) -> (on_hand, reserved, version): the version counts the
    /// changes of the record that happened (were journaled).
    stock: BTreeMap<(u32, u32), (i64, i64, u64)>,
    /// (sku, loc) -> units set apart as damaged (none: no entry).
    apart: BTreeMap<(u32, u32), i64>,
    /// (sku, loc) -> units in transit to it (none: no entry).
    transit: BTreeMap<(u32, u32), i64>,
    /// (sku, loc) -> units of supply still to come, and the earliest
    /// time expected (none: no entry).
    incoming: BTreeMap<(u32, u32), (i64, i64)>,
    /// (sku, loc) -> units sold against that supply, not arrived (none:
    /// no entry).
    backordered: BTreeMap<(u32, u32), i64>,
    /// in creation order: (lines (sku, loc, qty), status, expires_at)
    res: Vec<PlainReservation>,
}

/// What a late count needs (not observed from the engine): every on_hand
/// movement (when, record, delta) and each record's newest count (when it
/// was taken).
#[derive(Debug, Default)]
struct Moves {
    moves: Vec<(i64, (u32, u32), i64)>,
    last_count: BTreeMap<(u32, u32), i64>,
}

impl Moves {
    /// A count of `k`, taken at `taken`: on_hand becomes the figure plus
    /// what moved after it; `None` (nothing changes) when stale.
    fn count(&mut self, plain: &mut Plain, k: (u32, u32), n: i64, taken: i64) -> Option<i64> {
        if self.last_count.get(&k).is_some_and(|l| taken < *l) {
            return None;
        }
        let since: i64 = self
            .moves
            .iter()
            .filter(|m| m.1 == k && m.0 > taken)
            .map(|m| m.2)
            .sum();
        let target = (n + since).max(0);
        plain.set(k, target);
        let last = self.last_count.entry(k).or_insert(taken);
        *last = (*last).max(taken);
        Some(target)
    }
}

impl Plain {
    fn avail(&self, k: (u32, u32)) -> i64 {
        let (o, r, _) = self.stock.get(&k).copied().unwrap_or((0, 0, 0));
        (o - r - self.apart(k)).max(0)
    }
    fn apart(&self, k: (u32, u32)) -> i64 {
        self.apart.get(&k).copied().unwrap_or(0)
    }
    /// Sets `d` units apart (or back): only free ones, never below none.
    fn set_apart(&mut self, k: (u32, u32), d: i64) -> bool {
        let (o, r, _) = self.stock.get(&k).copied().unwrap_or((0, 0, 0));
        let has = self.apart(k);
        let ok = if d > 0 {
            o - r - has >= d
        } else {
            has + d >= 0
        };
        if ok {
            self.add(k, 0, 0);
            self.apart.insert(k, has + d);
            self.apart.retain(|_, u| *u != 0);
        }
        ok
    }
    /// One change of a record: its version grows by one.
    fn add(&mut self, k: (u32, u32), on_hand: i64, reserved: i64) {
        let e = self.stock.entry(k).or_insert((0, 0, 0));
        e.0 += on_hand;
        e.1 += reserved;
        e.2 += 1;
    }
    /// A count sets on_hand (one change).
    fn set(&mut self, k: (u32, u32), on_hand: i64) {
        let e = self.stock.entry(k).or_insert((0, 0, 0));
        e.0 = on_hand;
        e.2 += 1;
    }
    fn expire(&mut self, now: i64) {
        for i in 0..self.res.len() {
            if self.res[i].1 == Status::Held && self.res[i].2 <= now {
                self.res[i].1 = Status::Expired;
                for (s, l, q, b) in self.res[i].0.clone() {
                    self.add((s, l), 0, -(q - b));
                    self.sell_ahead((s, l), -b);
                }
            }
        }
    }
    fn backordered(&self, k: (u32, u32)) -> i64 {
        self.backordered.get(&k).copied().unwrap_or(0)
    }
    /// `d` units more (or fewer) sold against the supply of `k`.
    fn sell_ahead(&mut self, k: (u32, u32), d: i64) {
        *self.backordered.entry(k).or_insert(0) += d;
        self.backordered.retain(|_, u| *u != 0);
    }
    /// A line of `q` of `k` that may be sold against supply: (on hand,
    /// backordered) units it gets, on hand first, then the supply not
    /// sold yet within SKU 0's limit.
    fn decide_backorder(&self, k: (u32, u32), q: i64) -> (i64, i64) {
        let on_hand = self.avail(k).min(q);
        let outstanding: i64 = (0..LOCS).map(|l| self.backordered((k.0, l))).sum();
        let unsold = (self.incoming.get(&k).map_or(0, |i| i.0) - self.backordered(k)).max(0);
        let b = (q - on_hand)
            .min(unsold)
            .min(BACKORDER_MAX - outstanding)
            .max(0);
        (on_hand, b)
    }
    /// A delivery of `got` units of `k` converts the units waiting for it,
    /// reservations oldest first (`order`: their indexes).
    fn convert(&mut self, k: (u32, u32), mut got: i64, order: &[usize]) {
        let mut took = 0;
        for &i in order {
            if !self.res[i].1.is_live() {
                continue;
            }
            for line in self.res[i].0.iter_mut() {
                if (line.0, line.1) == k {
                    let n = got.min(line.3);
                    line.3 -= n;
                    got -= n;
                    took += n;
                }
            }
        }
        if let Some(e) = self.stock.get_mut(&k) {
            e.1 += took;
        }
        self.sell_ahead(k, -took);
    }
}

/// Each record's units of supply still to come and the earliest time
/// expected, from the supplies (id, sku, loc, eta, qty, received, open).
fn incoming_of(
    supplies: &[(String, u32, u32, i64, u32, u32, bool)],
) -> BTreeMap<(u32, u32), (i64, i64)> {
    let mut out: BTreeMap<(u32, u32), (i64, i64)> = BTreeMap::new();
    for (_, s, l, eta, q, received, open) in supplies {
        let left = i64::from(q.saturating_sub(*received));
        if *open && left > 0 {
            let e = out.entry((*s, *l)).or_insert((0, *eta));
            e.0 += left;
            e.1 = e.1.min(*eta);
        }
    }
    out
}

fn open(fs: &SimStorage, clock: &ManualClock) -> Engine {
    common::sim::open(fs, clock, 2)
}

/// The engine's state in the plain model's terms.
fn observe(rt: &tokio::runtime::Runtime, e: &Engine, ids: &[ReservationId]) -> Plain {
    let (catalog, stock, res) = rt.block_on(e.dump()).expect("dump");
    let mut p = Plain::default();
    for (s, r) in stock.iter() {
        if r.version > 0 {
            p.stock
                .insert((s, r.location), (r.on_hand, r.reserved, r.version));
            let apart = r.unsellable.get(Bucket::Damaged);
            if apart != 0 {
                p.apart.insert((s, r.location), apart);
            }
            if r.in_transit != 0 {
                p.transit.insert((s, r.location), r.in_transit);
            }
            if r.incoming != 0 {
                p.incoming
                    .insert((s, r.location), (r.incoming, r.incoming_eta));
            }
            if r.backordered != 0 {
                p.backordered.insert((s, r.location), r.backordered);
            }
        }
    }
    let by_id: BTreeMap<_, _> = res.into_iter().map(|r| (r.id.clone(), r)).collect();
    for id in ids {
        let r = &by_id[id];
        let lines = r
            .lines
            .iter()
            .map(|l| {
                (
                    catalog.sku_idx(l.sku.as_str()).expect("sku"),
                    catalog.location_idx(l.location.as_str()).expect("loc"),
                    i64::from(l.qty),
                    i64::from(l.backordered),
                )
            })
            .collect();
        p.res.push((lines, r.status, r.expires_at_ms));
    }
    p
}

/// Waits until the engine agrees with the model, or 3 s. The engine gets
/// there on its own: its expiry tick catches up with the clock, and an
/// expiry's stock delta reaches the stock shard just after the book marks
/// the reservation expired (a dump reads the shards, then the books, so it
/// can see the mark without the delta). What must hold is the state it
/// settles in, which is what is compared.
fn settle(rt: &tokio::runtime::Runtime, e: &Engine, ids: &[ReservationId], want: &Plain) -> Plain {
    let t0 = Instant::now();
    loop {
        let got = observe(rt, e, ids);
        if got == *want || t0.elapsed() > Duration::from_secs(3) {
            return got;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

proptest! {
    // Few shrink steps: each runs actors and waits on their ticks.
    #![proptest_config(ProptestConfig { cases: 48, max_shrink_iters: 32, ..ProptestConfig::default() })]

    #[test]
    fn engine_matches_the_plain_model(cmds in prop::collection::vec(cmd(), 10..80), seed in any::<u64>()) {
        let rt = rt();
        let fs = SimStorage::new(seed);
        let clock = ManualClock::new(1_700_000_000_000);
        let mut e = open(&fs, &clock);
        rt.block_on(async {
            for s in 0..SKUS {
                let backorder = (s == 0).then_some(Backorder { max_units: BACKORDER_MAX as u32 });
                e.put_sku(sku(s), Sku { backorder, ..Sku::named("x") }).await.expect("sku");
            }
            for l in 0..LOCS {
                e.put_location(loc(l), Location::new("y", LocationKind::Store, 0.0, 0.0)).await.expect("loc");
            }
        });
        let mut plain = Plain::default();
        let mut moves = Moves::default();
        let mut ids: Vec<ReservationId> = Vec::new();
        // When each was made (a delivery converts oldest first, ties by id).
        let mut made: Vec<i64> = Vec::new();
        // Transfers shipped: (id, sku, to, qty, what arrived once received),
        // and how many were requested.
        let mut shipped: Vec<(String, u32, u32, u32, Option<u32>)> = Vec::new();
        let mut requested = 0;
        // Supplies: (id, sku, loc, eta, qty, received, open).
        let mut supplies: Vec<(String, u32, u32, i64, u32, u32, bool)> = Vec::new();
        for c in cmds {
            let now = clock.now_ms();
            match c.clone() {
                Cmd::Count(items) => {
                    let batch = items.iter().map(|&(s, l, n, ago)| CountItem { sku_idx: s, loc_idx: l, sku: sku(s), location: loc(l), on_hand: n, safety_stock: Some(0), counted_at: ago.map(|a| now - a) }).collect();
                    let recs = rt.block_on(e.count(batch, None)).expect("count");
                    // Items apply in order: each answers the record after it,
                    // and the last count of a record is what it holds; a
                    // late one adds what moved after it was taken, a stale
                    // one is refused and changes nothing.
                    for (i, &(s, l, n, ago)) in items.iter().enumerate() {
                        match (moves.count(&mut plain, (s, l), n, now - ago.unwrap_or(0)), &recs[i]) {
                            (Some(want), Ok(r)) => {
                                prop_assert_eq!(r.record.on_hand, want, "item {} of {:?}", i, items);
                                prop_assert_eq!(r.record.version, plain.stock[&(s, l)].2, "item {} of {:?}", i, items);
                            }
                            (None, Err(LateCountRefused::Stale { .. })) => {}
                            (want, got) => prop_assert!(false, "item {} of {:?}: want {:?}, got {:?}", i, items, want, got),
                        }
                    }
                }
                Cmd::Adjust(s, l, d) => {
                    let r = rt.block_on(e.adjust(s, l, sku(s), loc(l), d, AdjustReason::Correction)).expect("adjust");
                    let old = plain.stock.get(&(s, l)).copied().unwrap_or((0, 0, 0));
                    let ok = old.0 + d >= 0;
                    prop_assert_eq!(r.is_ok(), ok, "adjust {} on {:?}", d, old);
                    if ok {
                        plain.add((s, l), d, 0);
                        moves.moves.push((now, (s, l), d));
                    }
                }
                Cmd::SetApart(s, l, d) => {
                    let r = rt.block_on(e.adjust_as(Adjustment {
                        sku_idx: s, loc_idx: l, sku: sku(s), location: loc(l), delta: 0,
                        reason: AdjustReason::Damage, key: None, by: None, note: None,
                        unsellable: Some((Bucket::Damaged, d)),
                    })).expect("set apart");
                    let before = plain.clone();
                    prop_assert_eq!(r.is_ok(), plain.set_apart((s, l), d), "set apart {} on {:?} {:?}", d, before.stock, before.apart);
                }
                Cmd::Reserve(lines, partial, ttl, backorder) => {
                    let cart: Vec<CartLine> = lines.iter().map(|(s, l, q)| CartLine { backorder, ..CartLine::on_hand(*s, *l, *q) }).collect();
                    let r = rt.block_on(e.reserve(&cart, partial, ttl, None)).expect("reserve");
                    // The plain rule: all or nothing, or each line what is left.
                    let mut trial = plain.clone();
                    let mut held = Vec::new();
                    let mut short = false;
                    for (s, l, q) in &lines {
                        let (k, q) = ((*s, *l), i64::from(*q));
                        let (on_hand, ahead) = if backorder && *s == 0 { trial.decide_backorder(k, q) } else { (trial.avail(k).min(q), 0) };
                        let can = on_hand + ahead;
                        let (got, b) = if partial || can == q { (can, ahead) } else { (0, 0) };
                        if can < q { short = true; }
                        if got > 0 {
                            trial.add(k, 0, got - b);
                            trial.sell_ahead(k, b);
                            held.push((*s, *l, got, b));
                        }
                    }
                    let granted = if partial { !held.is_empty() } else { !short };
                    prop_assert_eq!(r.is_ok(), granted, "cart {:?} partial {} on {:?}", lines, partial, plain.stock);
                    if let Ok(res) = r {
                        trial.res.push((held, Status::Held, now + ttl as i64 * 1000));
                        plain = trial;
                        ids.push(res.id);
                        made.push(now);
                    }
                }
                Cmd::Transit(_, _) if ids.is_empty() => {}
                Cmd::Transit(i, t) => {
                    let i = i % ids.len();
                    let t = match t { 0 => Transition::Confirm, 1 => Transition::Release, 2 => Transition::Fulfil, _ => Transition::Extend { ttl_s: 20 } };
                    let r = rt.block_on(e.transition(ids[i].clone(), t)).expect("transition");
                    let (lines, st, exp) = plain.res[i].clone();
                    use Status::*;
                    let next = match (t, st) {
                        (Transition::Confirm, Held | Confirmed) => Some((Confirmed, exp)),
                        (Transition::Release, Held | Confirmed) => Some((Released, exp)),
                        (Transition::Release, Released | Expired) => Some((st, exp)),
                        (Transition::Fulfil, Confirmed) if lines.iter().all(|l| l.3 == 0) => Some((Fulfilled, exp)),
                        (Transition::Extend { ttl_s }, Held) => Some((Held, now + ttl_s as i64 * 1000)),
                        _ => None,
                    };
                    match (&r, next) {
                        (Ok(_), Some((to, exp))) => {
                            if st.is_live() && !to.is_live() {
                                for (s, l, q, b) in &lines {
                                    let out = if to == Fulfilled { -q } else { 0 };
                                    plain.add((*s, *l), out, -(q - b));
                                    plain.sell_ahead((*s, *l), -b);
                                    moves.moves.push((now, (*s, *l), out));
                                    // A fulfilment past a lower count: the
                                    // record is corrected to 0, one change more.
                                    let e = plain.stock.get_mut(&(*s, *l)).expect("added");
                                    if e.0 < 0 {
                                        moves.moves.push((now, (*s, *l), -e.0));
                                        e.0 = 0;
                                        e.2 += 1;
                                    }
                                }
                            }
                            plain.res[i].1 = to;
                            plain.res[i].2 = exp;
                        }
                        (Err(TransitionRefused::NotHeld(_)), None) => {}
                        (Err(TransitionRefused::Backordered(_)), None) if st == Confirmed => {}
                        _ => prop_assert!(false, "{:?} on {:?}: engine {:?}", t, st, r),
                    }
                }
                Cmd::Ship(s, from, q) => {
                    let (to, id) = (1 - from, format!("T{requested}"));
                    requested += 1;
                    let asked = rt.block_on(e.request_transfer(id.clone(), (loc(from), loc(to)), vec![(sku(s), q)], None)).expect("request");
                    prop_assert!(asked.is_ok(), "{:?}", asked);
                    let r = rt.block_on(e.transfer_step(id.clone(), TransferStep::Ship, None)).expect("ship");
                    // Only units free at the sender (neither reserved nor
                    // set apart), all of them or none.
                    let (o, res, _) = plain.stock.get(&(s, from)).copied().unwrap_or((0, 0, 0));
                    let free = o - res - plain.apart((s, from));
                    prop_assert_eq!(r.is_ok(), free >= i64::from(q), "ship {} of {:?}", q, plain);
                    if r.is_ok() {
                        plain.add((s, from), -i64::from(q), 0);
                        moves.moves.push((now, (s, from), -i64::from(q)));
                        plain.add((s, to), 0, 0);
                        *plain.transit.entry((s, to)).or_insert(0) += i64::from(q);
                        shipped.push((id, s, to, q, None));
                    } else {
                        // Refused: requested still; cancelled, it never ships.
                        let c = rt.block_on(e.transfer_step(id.clone(), TransferStep::Cancel, None)).expect("cancel");
                        prop_assert!(c.is_ok(), "{:?}", c);
                        let again = rt.block_on(e.transfer_step(id, TransferStep::Ship, None)).expect("ship");
                        prop_assert!(again.is_err(), "{:?}", again);
                    }
                }
                Cmd::Receive(_, _) if shipped.is_empty() => {}
                Cmd::Receive(i, got) => {
                    let i = i % shipped.len();
                    let (id, s, to, q, received) = shipped[i].clone();
                    let r = rt.block_on(e.transfer_step(id, TransferStep::Receive(vec![(sku(s), got)]), None)).expect("receive");
                    // Received once: the same figures again answer it, other
                    // figures are refused; nothing moves twice.
                    prop_assert_eq!(r.is_ok(), received.is_none_or(|r| r == got), "receive {} of {:?}", got, shipped[i]);
                    if received.is_none() {
                        plain.add((s, to), i64::from(got), 0);
                        moves.moves.push((now, (s, to), i64::from(got)));
                        let t = plain.transit.entry((s, to)).or_insert(0);
                        *t -= i64::from(q);
                        plain.transit.retain(|_, u| *u != 0);
                        shipped[i].4 = Some(got);
                    }
                }
                Cmd::Expect(s, l, q, ahead) => {
                    let id = format!("P{}", supplies.len());
                    let r = rt.block_on(e.expect_supply(id.clone(), (loc(l), now + ahead), vec![(sku(s), q)], None)).expect("expect");
                    prop_assert!(matches!(r, Ok((_, true))), "{:?}", r);
                    supplies.push((id, s, l, now + ahead, q, 0, true));
                    plain.add((s, l), 0, 0);
                    plain.incoming = incoming_of(&supplies);
                }
                Cmd::Deliver(_, _) | Cmd::CancelSupply(_) if supplies.is_empty() => {}
                Cmd::Deliver(i, got) => {
                    let i = i % supplies.len();
                    let (id, s, l, _, q, received, open) = supplies[i].clone();
                    let r = rt.block_on(e.supply_step(id, SupplyStep::Receive(vec![(sku(s), got)], None), None)).expect("deliver");
                    // Only while expected, and only a delivery of something.
                    prop_assert_eq!(r.is_ok(), open && got > 0, "deliver {} of {:?}", got, supplies[i]);
                    if r.is_ok() {
                        plain.add((s, l), i64::from(got), 0);
                        let mut order: Vec<usize> = (0..ids.len()).collect();
                        order.sort_by_key(|&j| (made[j], ids[j].as_str().to_string()));
                        plain.convert((s, l), i64::from(got), &order);
                        moves.moves.push((now, (s, l), i64::from(got)));
                        supplies[i].5 = received + got;
                        supplies[i].6 = received + got < q;
                        plain.incoming = incoming_of(&supplies);
                    }
                }
                Cmd::CancelSupply(i) => {
                    let i = i % supplies.len();
                    let (id, s, l, _, q, received, open) = supplies[i].clone();
                    let r = rt.block_on(e.supply_step(id, SupplyStep::Cancel, None)).expect("cancel");
                    // While expected; asked again once cancelled, answered
                    // (nothing moves); refused once received.
                    let cancelled = !open && received < q;
                    prop_assert_eq!(r.is_ok(), open || cancelled, "cancel {:?}", supplies[i]);
                    if r.is_ok() && open {
                        plain.add((s, l), 0, 0);
                        supplies[i].6 = false;
                        plain.incoming = incoming_of(&supplies);
                    }
                }
                Cmd::Advance(ms) => {
                    clock.advance_ms(ms);
                    plain.expire(clock.now_ms());
                }
                Cmd::Restart | Cmd::PowerCut => {
                    e.shutdown();
                    drop(e);
                    if matches!(c, Cmd::PowerCut) {
                        fs.power_cut();
                        fs.power_on();
                    }
                    e = open(&fs, &clock);
                }
            }
            let got = settle(&rt, &e, &ids, &plain);
            prop_assert_eq!(&got, &plain, "after {:?}", c);
        }
        e.shutdown();
    }
}

#[test]
fn finished_reservations_are_forgotten_after_a_day_live_ones_never() {
    let rt = rt();
    let fs = SimStorage::new(1);
    let clock = ManualClock::new(1_700_000_000_000);
    let e = open(&fs, &clock);
    let (released, confirmed) = rt.block_on(async {
        one_record(&e, 10).await;
        let a = hold_one(&e, 900).await;
        let b = hold_one(&e, 900).await;
        e.transition(a.id.clone(), Transition::Release)
            .await
            .expect("engine")
            .expect("released");
        e.transition(b.id.clone(), Transition::Confirm)
            .await
            .expect("engine")
            .expect("confirmed");
        (a.id, b.id)
    });
    clock.advance_ms(23 * 3600 * 1000);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        rt.block_on(e.reservation(released.clone()))
            .expect("engine")
            .is_some(),
        "kept within the day"
    );
    clock.advance_ms(3600 * 1000 + 1000);
    let t0 = Instant::now();
    while rt
        .block_on(e.reservation(released.clone()))
        .expect("engine")
        .is_some()
    {
        assert!(t0.elapsed() < Duration::from_secs(5), "never forgotten");
        std::thread::sleep(Duration::from_millis(50));
    }
    let kept = rt
        .block_on(e.reservation(confirmed))
        .expect("engine")
        .expect("a live reservation stays");
    assert_eq!(kept.status, Status::Confirmed);
    e.shutdown();
}
