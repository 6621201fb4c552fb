//! Property tests of the pure domain over random command sequences: never
//! oversold, conservation (on_hand is always the last count plus the
//! movements after the time it was taken, so a late count never brings
//! back units sold after it), `reserved` equals the sum of live lines, and
//! replay of the events from empty gives the same state as the live run.

use ahash::AHashMap;
use holdfast::domain::catalog::{Location, LocationKind, Sku};
use holdfast::domain::event::{Event, SupplyFact, TransferFact};
use holdfast::domain::history::{cause, Movement};
use holdfast::domain::model::TransferRefused;
use holdfast::domain::model::{LineRequest, Model};
use holdfast::domain::recent_moves::LateCountRefused;
use holdfast::domain::reservation::Transition;
use holdfast::domain::stock::{AdjustReason, Bucket, StockDelta};
use holdfast::domain::supply::{Supply, SupplyDecision};
use holdfast::domain::transfer::Transfer;
use holdfast::domain::{LocationId, ReservationId, SkuId};
use proptest::prelude::*;

const SKUS: u32 = 3;
const LOCS: u32 = 2;

#[derive(Debug, Clone)]
enum Cmd {
    Count {
        sku: u32,
        loc: u32,
        on_hand: i64,
        safety: i64,
        /// Taken this long before it is recorded (`counted_at`), or now.
        ago: Option<i64>,
    },
    Adjust {
        sku: u32,
        loc: u32,
        delta: i64,
    },
    /// Units set apart (or back) in a bucket; `write_off`: taken out of
    /// on_hand and the bucket alike.
    SetApart {
        sku: u32,
        loc: u32,
        bucket: usize,
        delta: i64,
        write_off: bool,
    },
    /// A transfer from a location to the other one.
    TransferRequest {
        from: u32,
        lines: Vec<(u32, u32)>,
    },
    TransferShip(usize),
    TransferReceive(usize, Vec<(u32, u32)>),
    TransferCancel(usize),
    /// Incoming supply at a location, expected some time ahead.
    SupplyExpect {
        loc: u32,
        lines: Vec<(u32, u32)>,
        ahead: i64,
    },
    /// A delivery of the i-th supply (a key from a few: repeats happen).
    SupplyReceive(usize, Vec<(u32, u32)>, Option<u8>),
    SupplyCancel(usize),
    Reserve {
        lines: Vec<(u32, u32, u32)>,
        partial: bool,
        ttl_s: u64,
    },
    Confirm(usize),
    Release(usize),
    Fulfil(usize),
    Extend(usize, u64),
    Advance(i64),
    Expire,
}

fn cmd() -> impl Strategy<Value = Cmd> {
    prop_oneof![
        (
            0..SKUS,
            0..LOCS,
            0..30i64,
            0..3i64,
            prop_oneof![Just(None), (0..20_000i64).prop_map(Some)]
        )
            .prop_map(|(sku, loc, on_hand, safety, ago)| Cmd::Count {
                sku,
                loc,
                on_hand,
                safety,
                ago
            }),
        (0..SKUS, 0..LOCS, -10..10i64).prop_map(|(sku, loc, delta)| Cmd::Adjust {
            sku,
            loc,
            delta
        }),
        (0..SKUS, 0..LOCS, 0..3usize, -6..8i64, any::<bool>()).prop_map(
            |(sku, loc, bucket, delta, write_off)| Cmd::SetApart {
                sku,
                loc,
                bucket,
                delta,
                write_off
            }
        ),
        (
            prop::collection::vec((0..SKUS, 0..LOCS, 1..8u32), 1..4),
            any::<bool>(),
            1..20u64
        )
            .prop_map(|(lines, partial, ttl_s)| Cmd::Reserve {
                lines,
                partial,
                ttl_s
            }),
        (0..LOCS, prop::collection::vec((0..SKUS, 1..6u32), 1..3))
            .prop_map(|(from, lines)| Cmd::TransferRequest { from, lines }),
        (0..20usize).prop_map(Cmd::TransferShip),
        (0..20usize, prop::collection::vec((0..SKUS, 0..7u32), 0..3))
            .prop_map(|(i, got)| Cmd::TransferReceive(i, got)),
        (0..20usize).prop_map(Cmd::TransferCancel),
        (
            0..LOCS,
            prop::collection::vec((0..SKUS, 1..9u32), 1..3),
            0..50_000i64
        )
            .prop_map(|(loc, lines, ahead)| Cmd::SupplyExpect { loc, lines, ahead }),
        (
            0..20usize,
            prop::collection::vec((0..SKUS, 0..9u32), 1..3),
            prop::option::of(0..3u8)
        )
            .prop_map(|(i, got, key)| Cmd::SupplyReceive(i, got, key)),
        (0..20usize).prop_map(Cmd::SupplyCancel),
        (0..40usize).prop_map(Cmd::Confirm),
        (0..40usize).prop_map(Cmd::Release),
        (0..40usize).prop_map(Cmd::Fulfil),
        (0..40usize, 1..20u64).prop_map(|(i, t)| Cmd::Extend(i, t)),
        (0..8000i64).prop_map(Cmd::Advance),
        Just(Cmd::Expire),
    ]
}

fn setup(m: &mut Model, log: &mut Vec<Event>) {
    for s in 0..SKUS {
        let e = Event::SkuPut {
            sku: SkuId::parse(&format!("S{s}")).expect("id"),
            value: Sku::named(format!("sku {s}")),
        };
        m.apply(&e).expect("apply");
        log.push(e);
    }
    for l in 0..LOCS {
        let e = Event::LocationPut {
            location: LocationId::parse(&format!("L{l}")).expect("id"),
            value: Location::new(format!("loc {l}"), LocationKind::Store, 45.0, 9.0),
        };
        m.apply(&e).expect("apply");
        log.push(e);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn invariants_hold_and_replay_matches(cmds in prop::collection::vec(cmd(), 1..120)) {
        let mut m = Model::default();
        let mut log = Vec::new();
        setup(&mut m, &mut log);
        let mut now: i64 = 1_000_000;
        let mut ids: Vec<ReservationId> = Vec::new();
        // Expected on_hand per record: counts set it (plus what moved after
        // the time they were taken), adjustments add, fulfilment subtracts.
        let mut on_hand: AHashMap<(u32, u32), i64> = AHashMap::new();
        // Every movement (when, record, on_hand delta), and each record's
        // newest count (the time it was taken).
        let mut moves: Vec<(i64, (u32, u32), i64)> = Vec::new();
        let mut last_count: AHashMap<(u32, u32), i64> = AHashMap::new();
        // Expected unsellable units per record and bucket.
        let mut apart: AHashMap<(u32, u32, Bucket), i64> = AHashMap::new();
        let mut transfers: Vec<String> = Vec::new();
        let mut supplies: Vec<String> = Vec::new();

        for c in cmds {
            let event = match c {
                Cmd::Count { sku, loc, on_hand: oh, safety, ago } => {
                    let counted_at = ago.map(|a| now - a);
                    let taken = counted_at.unwrap_or(now);
                    let key = (sku, loc);
                    match m.decide_count(sku, loc, oh, safety, counted_at, now) {
                        Ok(count) => {
                            prop_assert!(last_count.get(&key).is_none_or(|l| taken >= *l));
                            let since: i64 = moves
                                .iter()
                                .filter(|(t, k, _)| *k == key && *t > taken)
                                .map(|x| x.2)
                                .sum();
                            on_hand.insert(key, (oh + since).max(0));
                            last_count.insert(key, taken.max(last_count.get(&key).copied().unwrap_or(taken)));
                            Some(Event::Counted { items: vec![count], at_ms: now, by: None })
                        }
                        Err(LateCountRefused::Stale { last }) => {
                            prop_assert_eq!(last_count.get(&key), Some(&last));
                            prop_assert!(taken < last);
                            None
                        }
                        Err(other) => {
                            prop_assert!(false, "a count within the reach refused: {:?}", other);
                            None
                        }
                    }
                }
                Cmd::Adjust { sku, loc, delta } => {
                    let r = m.stock.get_or_empty(sku, loc);
                    match r.decide_adjust(delta, None) {
                        Ok(_) => {
                            *on_hand.entry((sku, loc)).or_default() += delta;
                            moves.push((now, (sku, loc), delta));
                            Some(Event::Adjusted {
                                sku: SkuId::parse(&format!("S{sku}")).expect("id"),
                                location: LocationId::parse(&format!("L{loc}")).expect("id"),
                                delta,
                                reason: AdjustReason::Correction,
                                at_ms: now,
                                key: None,
                                by: None,
                                note: Some("proptest".into()),
                                unsellable: None,
                            })
                        }
                        Err(_) => {
                            prop_assert!(r.on_hand + delta < 0);
                            None
                        }
                    }
                }
                Cmd::SetApart { sku, loc, bucket, delta, write_off } => {
                    let b = Bucket::ALL[bucket];
                    let r = m.stock.get_or_empty(sku, loc);
                    let (oh, u) = if write_off { (-delta.abs(), -delta.abs()) } else { (0, delta) };
                    let has = apart.get(&(sku, loc, b)).copied().unwrap_or(0);
                    prop_assert_eq!(r.unsellable.get(b), has);
                    match r.decide_adjust(oh, Some((b, u))) {
                        Ok(_) => {
                            // Set apart only from free units, never below 0.
                            prop_assert!(has + u >= 0);
                            prop_assert!(u <= oh || r.free() >= u - oh, "set apart past free: {r:?}");
                            *apart.entry((sku, loc, b)).or_default() += u;
                            if oh != 0 {
                                *on_hand.entry((sku, loc)).or_default() += oh;
                                moves.push((now, (sku, loc), oh));
                            }
                            Some(Event::Adjusted {
                                sku: SkuId::parse(&format!("S{sku}")).expect("id"),
                                location: LocationId::parse(&format!("L{loc}")).expect("id"),
                                delta: oh,
                                reason: AdjustReason::Damage,
                                at_ms: now,
                                key: None,
                                by: None,
                                note: None,
                                unsellable: Some((b, u)),
                            })
                        }
                        Err(_) => {
                            prop_assert!(has + u < 0 || r.free() < u - oh || r.on_hand + oh < 0);
                            None
                        }
                    }
                }
                Cmd::Reserve { lines, partial, ttl_s } => {
                    let reqs: Vec<LineRequest> = lines.iter().map(|(s, l, q)| LineRequest { sku: *s, location: *l, qty: *q }).collect();
                    let id = ReservationId::parse(&format!("R{}", ids.len() + log.len())).expect("id");
                    match m.decide_hold(id.clone(), &reqs, partial, now, ttl_s, None) {
                        Ok(e) => {
                            ids.push(id);
                            Some(e)
                        }
                        Err(short) => {
                            prop_assert!(!short.is_empty());
                            None
                        }
                    }
                }
                Cmd::TransferRequest { from, lines } => {
                    let id = format!("T{}", transfers.len());
                    let to = (from + 1) % LOCS;
                    let lines: Vec<(SkuId, u32)> = lines.iter().map(|(s, q)| (SkuId::parse(&format!("S{s}")).expect("id"), *q)).collect();
                    let fact = TransferFact::Requested {
                        from: LocationId::parse(&format!("L{from}")).expect("id"),
                        to: LocationId::parse(&format!("L{to}")).expect("id"),
                        lines,
                    };
                    let ok = match &fact {
                        TransferFact::Requested { from, to, lines } => Transfer::request(id.clone(), from.clone(), to.clone(), lines.clone(), now).is_ok(),
                        _ => false,
                    };
                    ok.then(|| {
                        transfers.push(id.clone());
                        Event::Transfer { id, step: fact, at_ms: now, by: None }
                    })
                }
                Cmd::TransferShip(_) | Cmd::TransferReceive(..) | Cmd::TransferCancel(_) if transfers.is_empty() => None,
                Cmd::TransferShip(i) | Cmd::TransferReceive(i, _) | Cmd::TransferCancel(i) => {
                    let id = transfers[i % transfers.len()].clone();
                    let fact = match &c {
                        Cmd::TransferShip(_) => TransferFact::Shipped,
                        Cmd::TransferReceive(_, got) => TransferFact::Received {
                            lines: got.iter().map(|(s, q)| (SkuId::parse(&format!("S{s}")).expect("id"), *q)).collect(),
                        },
                        _ => TransferFact::Cancelled,
                    };
                    let t = m.transfers.get(&id).cloned().expect("requested");
                    match m.decide_transfer(&id, fact.clone(), now) {
                        Ok(Some(e)) => {
                            // The model's on_hand follows each shipped or
                            // received unit; never past what was free.
                            for mv in t.moves(&fact.step().expect("a step")) {
                                let s = m.catalog.sku_idx(mv.sku.as_str()).expect("sku");
                                let l = m.catalog.location_idx(mv.location.as_str()).expect("loc");
                                if mv.on_hand < 0 {
                                    prop_assert!(m.stock.get_or_empty(s, l).free() >= -mv.on_hand, "shipped past free");
                                }
                                if mv.on_hand != 0 {
                                    *on_hand.entry((s, l)).or_default() += mv.on_hand;
                                    moves.push((now, (s, l), mv.on_hand));
                                }
                            }
                            Some(e)
                        }
                        Ok(None) => None,
                        Err(TransferRefused::Short(short)) => {
                            prop_assert!(fact == TransferFact::Shipped && !short.is_empty());
                            None
                        }
                        Err(_) => None,
                    }
                }
                Cmd::SupplyExpect { loc, lines, ahead } => {
                    let id = format!("P{}", supplies.len());
                    let location = LocationId::parse(&format!("L{loc}")).expect("id");
                    let lines: Vec<(SkuId, u32)> = lines.iter().map(|(s, q)| (SkuId::parse(&format!("S{s}")).expect("id"), *q)).collect();
                    let ok = Supply::expect(id.clone(), location.clone(), now + ahead, lines.clone(), now).is_ok();
                    ok.then(|| {
                        supplies.push(id.clone());
                        Event::Supply { id, step: SupplyFact::Expected { location, expected_ms: now + ahead, lines }, at_ms: now, by: None }
                    })
                }
                Cmd::SupplyReceive(..) | Cmd::SupplyCancel(_) if supplies.is_empty() => None,
                Cmd::SupplyReceive(i, _, _) | Cmd::SupplyCancel(i) => {
                    let id = supplies[i % supplies.len()].clone();
                    let fact = match &c {
                        Cmd::SupplyReceive(_, got, key) => SupplyFact::Received {
                            lines: got.iter().map(|(s, q)| (SkuId::parse(&format!("S{s}")).expect("id"), *q)).collect(),
                            key: key.map(|k| format!("k{k}")),
                            converted: Vec::new(),
                        },
                        _ => SupplyFact::Cancelled,
                    };
                    let sup = m.supplies.get(&id).cloned().expect("expected");
                    let step = fact.step().expect("a step");
                    match sup.decide(&step) {
                        Ok(SupplyDecision::Apply) => {
                            // Every unit delivered joins on_hand.
                            for mv in sup.moves(&step) {
                                let s = m.catalog.sku_idx(mv.sku.as_str()).expect("sku");
                                let l = m.catalog.location_idx(sup.location.as_str()).expect("loc");
                                if mv.on_hand != 0 {
                                    *on_hand.entry((s, l)).or_default() += mv.on_hand;
                                    moves.push((now, (s, l), mv.on_hand));
                                }
                            }
                            Some(Event::Supply { id, step: fact, at_ms: now, by: None })
                        }
                        Ok(SupplyDecision::Repeat) | Err(_) => None,
                    }
                }
                Cmd::Confirm(_) | Cmd::Release(_) | Cmd::Fulfil(_) | Cmd::Extend(..) if ids.is_empty() => None,
                Cmd::Confirm(i) => m.decide_transition(&ids[i % ids.len()], Transition::Confirm, now).ok().flatten(),
                Cmd::Release(i) => m.decide_transition(&ids[i % ids.len()], Transition::Release, now).ok().flatten(),
                Cmd::Fulfil(i) => {
                    let id = &ids[i % ids.len()];
                    let e = m.decide_transition(id, Transition::Fulfil, now).ok().flatten();
                    if e.is_some() {
                        for l in &m.reservations[id].lines {
                            let s = m.catalog.sku_idx(l.sku.as_str()).expect("sku");
                            let c = m.catalog.location_idx(l.location.as_str()).expect("loc");
                            *on_hand.entry((s, c)).or_default() -= i64::from(l.qty);
                            moves.push((now, (s, c), -i64::from(l.qty)));
                        }
                    }
                    e
                }
                Cmd::Extend(i, t) => m.decide_transition(&ids[i % ids.len()], Transition::Extend { ttl_s: t }, now).ok().flatten(),
                Cmd::Advance(ms) => { now += ms; None }
                Cmd::Expire => {
                    for id in m.due(now) {
                        let e = m.decide_transition(&id, Transition::Expire, now).expect("due").expect("event");
                        m.apply(&e).expect("apply");
                        log.push(e);
                    }
                    None
                }
            };
            if let Some(e) = event {
                let before = m.stock.clone();
                m.apply(&e).expect("apply");
                // Never oversold: a hold leaves every record it touched with
                // reserved + safety stock within on_hand.
                if let Event::ReservationHeld { lines, .. } = &e {
                    for l in lines {
                        let s = m.catalog.sku_idx(l.sku.as_str()).expect("sku");
                        let c = m.catalog.location_idx(l.location.as_str()).expect("loc");
                        let r = m.stock.get_or_empty(s, c);
                        let was = before.get_or_empty(s, c);
                        prop_assert!(r.reserved - was.reserved <= was.available(), "hold past availability: {was:?} -> {r:?}");
                    }
                }
                log.push(e);
            }
            // reserved equals the sum of live lines, never negative.
            if let Err(e) = m.check_invariants() { prop_assert!(false, "{}", e); }
            // Conservation of on_hand.
            for ((s, l), want) in &on_hand {
                prop_assert_eq!(m.stock.get_or_empty(*s, *l).on_hand, *want);
            }
            // The buckets hold what was set apart, and nothing else.
            for ((s, l, b), want) in &apart {
                prop_assert_eq!(m.stock.get_or_empty(*s, *l).unsellable.get(*b), *want);
            }
        }
        // Replay from empty gives the same state, and the movement
        // history it notes tells each record's story: every movement
        // starts where the record's last one ended, each fact that moves
        // stock names why, and the last movement is the record as it is.
        let mut replayed = Model::default();
        let mut told: AHashMap<(u32, u32), (i64, i64, i64, i64)> = AHashMap::new();
        let mut moved = Vec::new();
        for e in &log {
            moved.clear();
            replayed.apply_noting(e, Some(&mut moved)).expect("replay");
            // Only incoming units moved (supply announced or cancelled):
            // not a movement of the history.
            let told_of = |mv: &holdfast::domain::history::Moved| {
                let d = mv.delta;
                d.on_hand != 0 || d.reserved != 0 || d.unsellable.is_some() || d.in_transit != 0
            };
            if moved.is_empty() || (matches!(e, Event::Supply { .. }) && !moved.iter().any(told_of)) {
                continue;
            }
            let Some(why) = cause(e) else {
                prop_assert!(false, "a fact moved stock without a cause: {:?}", e);
                continue;
            };
            for mv in &moved {
                let h = Movement::new(&why, mv);
                let (oh, rs, un, tr) = told.get(&(mv.sku, mv.location)).copied().unwrap_or((0, 0, 0, 0));
                let un_delta = h.delta_unsellable.map_or(0, |(_, u)| u);
                let un_after = h.unsellable.map_or(0, |u| u.total());
                prop_assert_eq!(
                    (oh + h.delta_on_hand, rs + h.delta_reserved, un + un_delta, tr + h.delta_in_transit),
                    (h.on_hand, h.reserved, un_after, h.in_transit)
                );
                told.insert((mv.sku, mv.location), (h.on_hand, h.reserved, un_after, h.in_transit));
            }
        }
        for ((s, l), (oh, rs, un, tr)) in &told {
            let r = replayed.stock.get_or_empty(*s, *l);
            prop_assert_eq!((r.on_hand, r.reserved, r.unsellable.total(), r.in_transit), (*oh, *rs, *un, *tr));
        }
        // Transfers conserve units: each received one shipped what arrived
        // plus its discrepancy (domain::transfer), and nothing is left in
        // transit but what shipped transfers carry (check_invariants).
        prop_assert_eq!(&replayed.transfers, &m.transfers);
        // Incoming is what expected supplies still bring, at its earliest
        // time (check_invariants), whatever the order of the steps.
        prop_assert_eq!(&replayed.supplies, &m.supplies);
        prop_assert_eq!(&replayed.stock, &m.stock);
        prop_assert_eq!(&replayed.reservations, &m.reservations);
        prop_assert_eq!(&replayed.moves, &m.moves);
    }
}

#[test]
fn deltas_commute() {
    // Replay does not depend on the interleaving of records from different writers.
    let mut a = holdfast::domain::stock::StockRecord::empty(0);
    let mut b = a;
    let ds = [
        StockDelta {
            on_hand: 10,
            safety_stock: 1,
            ..StockDelta::default()
        },
        StockDelta {
            reserved: 4,
            ..StockDelta::default()
        },
        StockDelta {
            on_hand: -4,
            reserved: -4,
            ..StockDelta::default()
        },
    ];
    for d in ds {
        a.apply(d);
    }
    // A count that a shard journaled after a fulfilment it applied later.
    for d in [ds[1], ds[2], ds[0]] {
        b.apply(d);
    }
    assert_eq!(a, b);
}
