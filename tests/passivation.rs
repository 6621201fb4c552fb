//! Finished orders leave memory (passivation) and come back on demand: a
//! snapshot archives them in sled, the engine drops them, a read finds
//! them, a late return brings one back, and restarts (also from the older
//! snapshot, when the newest is damaged) rebuild the same orders. On real
//! storage in a temporary directory, with a manual clock.

mod common;

use common::sim::{hold_one, one_record, paid_order, rt};
use holdfast::actors::{Engine, EngineConfig};
use holdfast::clock::{Clock, ManualClock};
use holdfast::domain::order::{OrderStatus, ShipStatus};
use holdfast::domain::reservation::Transition;
use holdfast::domain::LocationId;
use holdfast::metrics::Metrics;
use holdfast::persistence::snapshot::{
    take_snapshot, HistoryPolicy, SnapshotPolicy, SnapshotStore,
};
use holdfast::persistence::{Durability, RealStorage};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

const DAY: i64 = 86_400_000;

/// An engine whose snapshotter snapshots after every record (`auto`), or
/// never by itself (the test takes them, engine stopped: `snapshot`).
fn open(dir: &Path, clock: &ManualClock, auto: bool) -> Engine {
    let policy = if auto {
        SnapshotPolicy {
            every_records: 1,
            every_s: 1,
            history: HistoryPolicy::default(),
            events: Default::default(),
        }
    } else {
        SnapshotPolicy {
            every_records: 1 << 40,
            every_s: 1 << 30,
            history: HistoryPolicy::default(),
            events: Default::default(),
        }
    };
    Engine::open(
        &EngineConfig {
            data_dir: dir.to_path_buf(),
            durability: Durability::Fsync,
            shards: 1,
            snapshot: Some(policy),
            sourcing: Default::default(),
            feed_window: std::time::Duration::from_millis(2),
        },
        Arc::new(RealStorage),
        Arc::new(clock.clone()),
        Arc::new(Metrics::default()),
    )
    .expect("open")
    .0
}

/// A snapshot of everything journaled, taken with the engine stopped.
fn snapshot(dir: &Path) {
    let store = SnapshotStore::open(&dir.join("snapshots")).expect("store");
    take_snapshot(&store, &RealStorage, &dir.join("journal"), u64::MAX).expect("snapshot");
}

fn status(e: &Engine, id: &str) -> Option<OrderStatus> {
    rt().block_on(e.order(id))
        .expect("engine")
        .map(|o| o.status())
}

fn in_memory(e: &Engine) -> usize {
    rt().block_on(e.orders_in_memory()).expect("engine")
}

fn passivate(e: &Engine) -> usize {
    rt().block_on(e.passivate_orders()).expect("sweep")
}

/// Places a paid order of one unit; its hold confirmed.
fn place(rt: &tokio::runtime::Runtime, e: &Engine, id: &str) {
    rt.block_on(async {
        let r = hold_one(e, 900).await;
        let (o, paid) = paid_order(id, r.id.as_str(), e.clock().now_ms());
        e.place_order(o, paid)
            .await
            .expect("engine")
            .expect("placed");
        e.transition(r.id, Transition::Confirm)
            .await
            .expect("engine")
            .expect("confirmed");
    });
}

fn change(
    rt: &tokio::runtime::Runtime,
    e: &Engine,
    id: &str,
    decide: impl FnOnce(
            &holdfast::domain::order::Order,
        ) -> Result<
            Option<holdfast::domain::order::OrderEvent>,
            holdfast::domain::order::Refused,
        > + Send
        + 'static,
) {
    rt.block_on(e.order_change(id, decide))
        .expect("engine")
        .expect("an order")
        .expect("allowed");
}

#[test]
fn finished_orders_leave_memory_and_come_back_on_demand() {
    let rt = rt();
    let tmp = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(20_000 * DAY + DAY / 2);
    let e = open(tmp.path(), &clock, true);
    rt.block_on(one_record(&e, 10));
    for id in ["O-DELIVERED", "O-CANCELLED", "O-OPEN"] {
        place(&rt, &e, id);
    }
    for to in [
        ShipStatus::Picked,
        ShipStatus::Packed,
        ShipStatus::Shipped,
        ShipStatus::Delivered,
    ] {
        let now = clock.now_ms();
        change(&rt, &e, "O-DELIVERED", move |o| o.decide_move(1, to, now));
    }
    let now = clock.now_ms();
    change(&rt, &e, "O-CANCELLED", move |o| o.decide_cancel(now));
    assert_eq!(in_memory(&e), 3);
    assert_eq!(passivate(&e), 0, "not idle yet");

    // The next day: today's order moves the records' clock on, a snapshot
    // archives yesterday's finished orders, the sweep drops them.
    clock.advance_ms(DAY + 2 * 3600 * 1000);
    place(&rt, &e, "O-TODAY");
    let t0 = Instant::now();
    let mut dropped = 0;
    while dropped < 2 {
        assert!(t0.elapsed() < Duration::from_secs(15), "never passivated");
        std::thread::sleep(Duration::from_millis(100));
        dropped += passivate(&e);
    }
    assert_eq!(dropped, 2);
    assert_eq!(in_memory(&e), 2, "the open order and today's stay");
    assert_eq!(e.metrics().orders_passivated.load(Ordering::Relaxed), 2);
    // Read back on demand, without coming back to memory.
    assert_eq!(status(&e, "O-DELIVERED"), Some(OrderStatus::Delivered));
    assert_eq!(status(&e, "O-CANCELLED"), Some(OrderStatus::Cancelled));
    assert_eq!(in_memory(&e), 2);
    // Its id stays taken.
    let (o, paid) = paid_order("O-CANCELLED", "r-x", clock.now_ms());
    assert!(rt
        .block_on(e.place_order(o, paid))
        .expect("engine")
        .is_err());

    e.shutdown();
    drop(e);

    // Restarted from a snapshot without them: only two orders in memory.
    let e = open(tmp.path(), &clock, false);
    assert_eq!(in_memory(&e), 2);
    assert_eq!(status(&e, "O-CANCELLED"), Some(OrderStatus::Cancelled));
    // A late return brings the delivered order back to memory.
    let now = clock.now_ms();
    change(&rt, &e, "O-DELIVERED", move |o| {
        o.decide_return(&[(0, 1)], LocationId::parse("L0").expect("id"), now)
            .map(Some)
    });
    assert_eq!(in_memory(&e), 3);
    assert_eq!(e.metrics().orders_activated.load(Ordering::Relaxed), 1);
    assert_eq!(status(&e, "O-DELIVERED"), Some(OrderStatus::Returned));
    // A day later it is archived again, returned, by a snapshot that also
    // covers the return: the older snapshot predates the return, so the
    // fallback below replays the return over the version archived before
    // it (the newer version already holds it: it must not count twice).
    clock.advance_ms(DAY + 2 * 3600 * 1000);
    place(&rt, &e, "O-NEXT");
    e.shutdown();
    drop(e);
    snapshot(tmp.path());

    for damaged in [false, true] {
        if damaged {
            let store = SnapshotStore::open(&tmp.path().join("snapshots")).expect("store");
            store.corrupt_newest().expect("corrupt");
        }
        let e = open(tmp.path(), &clock, false);
        let o = rt
            .block_on(e.order("O-DELIVERED"))
            .expect("engine")
            .expect("order");
        assert_eq!(o.status(), OrderStatus::Returned, "damaged: {damaged}");
        assert_eq!(o.returned, vec![1], "returned once (damaged: {damaged})");
        assert_eq!(status(&e, "O-CANCELLED"), Some(OrderStatus::Cancelled));
        assert_eq!(status(&e, "O-OPEN"), Some(OrderStatus::Confirmed));
        assert_eq!(status(&e, "O-TODAY"), Some(OrderStatus::Confirmed));
        assert_eq!(status(&e, "O-NEXT"), Some(OrderStatus::Confirmed));
        e.shutdown();
    }
}

/// `(ids, next)` of a search page.
fn search(
    e: &Engine,
    q: &holdfast::domain::order::OrderQuery,
    before: Option<(i64, String)>,
    (limit, budget): (usize, usize),
) -> (Vec<String>, Option<(i64, String)>) {
    let (orders, next) = e
        .search_orders_within(q, before, limit, budget)
        .expect("search");
    (orders.into_iter().map(|o| o.id).collect(), next)
}

/// Every page of `q`, `limit` at a time, each page looking at `budget`
/// archived orders at most (a short page goes on where it stopped).
fn search_all(
    e: &Engine,
    q: &holdfast::domain::order::OrderQuery,
    limit: usize,
    budget: usize,
) -> Vec<String> {
    let (mut out, mut next) = search(e, q, None, (limit, budget));
    while let Some(before) = next {
        let (more, after) = search(e, q, Some(before), (limit, budget));
        assert!(more.len() <= limit);
        out.extend(more);
        next = after;
    }
    out
}

#[test]
fn a_search_finds_archived_orders_beside_those_in_memory() {
    use holdfast::domain::order::{Customer, OrderQuery};
    let rt = rt();
    let tmp = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(20_000 * DAY + DAY / 2);
    let e = open(tmp.path(), &clock, true);
    rt.block_on(one_record(&e, 20));
    let email = |i: usize| (i % 2 == 1).then(|| "Anna@Example.com".to_string());
    for i in 0..6 {
        rt.block_on(async {
            let r = hold_one(&e, 900).await;
            let (mut o, paid) = paid_order(&format!("O-{i}"), r.id.as_str(), clock.now_ms());
            o.customer = Customer {
                email: email(i),
                phone: None,
            };
            e.place_order(o, paid)
                .await
                .expect("engine")
                .expect("placed");
        });
        if i < 4 {
            let now = clock.now_ms();
            change(&rt, &e, &format!("O-{i}"), move |o| o.decide_cancel(now));
        }
        clock.advance_ms(1000);
    }
    // The next day the four cancelled ones leave memory.
    clock.advance_ms(DAY + 2 * 3600 * 1000);
    place(&rt, &e, "O-NEXT");
    let t0 = Instant::now();
    let mut dropped = 0;
    while dropped < 4 {
        assert!(t0.elapsed() < Duration::from_secs(15), "never passivated");
        std::thread::sleep(Duration::from_millis(100));
        dropped += passivate(&e);
    }
    assert_eq!(in_memory(&e), 3);
    let all: Vec<String> = ["O-NEXT", "O-5", "O-4", "O-3", "O-2", "O-1", "O-0"]
        .map(String::from)
        .to_vec();
    let check = |e: &Engine| {
        let everything = OrderQuery::default();
        // Pages across memory and the archive: newest first, each once.
        for limit in [1, 2, 3, 7, 100] {
            for budget in [1, 2, 3, 5_000] {
                let found = search_all(e, &everything, limit, budget);
                assert_eq!(found, all, "limit {limit}, budget {budget}");
            }
        }
        let anna = OrderQuery {
            email: Some("anna@example.COM".into()),
            ..OrderQuery::default()
        };
        assert_eq!(search_all(e, &anna, 1, 5_000), ["O-5", "O-3", "O-1"]);
        assert_eq!(search_all(e, &anna, 2, 1), ["O-5", "O-3", "O-1"]);
        let cancelled = OrderQuery {
            status: Some(OrderStatus::Cancelled),
            ..OrderQuery::default()
        };
        assert_eq!(
            search_all(e, &cancelled, 3, 2),
            ["O-3", "O-2", "O-1", "O-0"]
        );
        let by_id = OrderQuery {
            id_prefix: Some("O-2".into()),
            ..OrderQuery::default()
        };
        assert_eq!(search_all(e, &by_id, 5, 1), ["O-2"]);
    };
    check(&e);
    e.shutdown();
    drop(e);

    // Restarted: the archive's index was kept.
    let e = open(tmp.path(), &clock, false);
    check(&e);
    e.shutdown();
    drop(e);

    // An archive from before the index: indexed when opened.
    let store = SnapshotStore::open(&tmp.path().join("snapshots")).expect("store");
    store.forget_order_index().expect("forget");
    let none = store
        .archived_before(None, (None, None), 10, 100, |_, _| true, |_| true)
        .expect("read");
    assert!(none.orders.is_empty(), "the index was forgotten");
    drop(store);
    let e = open(tmp.path(), &clock, false);
    check(&e);
}
