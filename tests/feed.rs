//! The stock feed in-process (api.md, Stock feed): a subscriber gets a view
//! of its scope and then every committed change after it, in each record's
//! version order, and never a hold that was not journaled (a cart across
//! shards that failed). On simulated storage and a manual clock.

mod common;

use common::sim::{loc, open, rt, sku};
use holdfast::actors::stock_shard::CountItem;
use holdfast::actors::{CartLine, Engine};
use holdfast::clock::ManualClock;
use holdfast::domain::catalog::{Location, LocationKind, Sku};
use holdfast::domain::reservation::Transition;
use holdfast::domain::stock::AdjustReason;
use holdfast::feed::{Batch, Change, Scope, Sink};
use holdfast::persistence::SimStorage;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Clone, Default)]
struct Collect(Arc<Mutex<Vec<Change>>>);
impl Sink for Collect {
    fn offer(&self, b: &Arc<Batch>) -> bool {
        self.0.lock().extend_from_slice(&b.changes);
        true
    }
}

async fn setup(e: &Engine) {
    for s in 0..4 {
        e.put_sku(sku(s), Sku::named("x")).await.expect("sku");
    }
    for l in 0..2 {
        e.put_location(loc(l), Location::new("y", LocationKind::Store, 45.0, 9.0))
            .await
            .expect("loc");
    }
}

fn count(s: u32, l: u32, n: i64) -> CountItem {
    CountItem {
        sku_idx: s,
        loc_idx: l,
        sku: sku(s),
        location: loc(l),
        on_hand: n,
        safety_stock: None,
        counted_at: None,
    }
}

/// (on_hand, reserved) per (sku, location) as the engine holds them now.
fn state(rt: &tokio::runtime::Runtime, e: &Engine, l: u32) -> BTreeMap<u32, (i64, i64)> {
    let (_, stock, _) = rt.block_on(e.dump()).expect("dump");
    stock
        .iter()
        .filter(|(_, r)| r.location == l)
        .map(|(s, r)| (s, (r.on_hand, r.reserved)))
        .collect()
}

#[test]
fn subscribers_get_every_committed_change_in_order_and_no_unjournaled_hold() {
    let rt = rt();
    let fs = SimStorage::new(3);
    let clock = ManualClock::new(1_700_000_000_000);
    // Two shards: SKUs 0 and 2 in one, 1 and 3 in the other.
    let e = open(&fs, &clock, 2);
    rt.block_on(setup(&e));
    rt.block_on(e.count(vec![count(0, 0, 10), count(1, 0, 5)], None))
        .expect("count");

    let at_l0 = Collect::default();
    let at_l1 = Collect::default();
    let (_sub0, view) = rt
        .block_on(e.feed_subscribe(Scope::Location(0), Box::new(at_l0.clone())))
        .expect("subscribe");
    let (_sub1, _) = rt
        .block_on(e.feed_subscribe(Scope::Location(1), Box::new(at_l1.clone())))
        .expect("subscribe");
    let mut shown: BTreeMap<u32, (i64, i64, u64)> = view
        .records
        .iter()
        .map(|(s, r)| (*s, (r.on_hand, r.reserved, r.version)))
        .collect();
    assert_eq!(shown.get(&0).map(|x| (x.0, x.1)), Some((10, 0)));
    assert_eq!(shown.get(&1).map(|x| (x.0, x.1)), Some((5, 0)));

    let cart = |lines: &[(u32, u32)]| -> Vec<CartLine> {
        lines
            .iter()
            .map(|&(s, q)| CartLine::on_hand(s, 0, q))
            .collect()
    };
    rt.block_on(async {
        // Across shards, held.
        let a = e
            .reserve(&cart(&[(0, 2), (1, 1)]), false, 600, None)
            .await
            .expect("engine")
            .expect("held");
        // Across shards, short on SKU 1: SKU 0's hold of 5 is provisional
        // and undone; the feed must never show it, though one-unit carts
        // on SKU 0, held and released meanwhile, show SKU 0 all along.
        let shorts = async {
            for _ in 0..200 {
                let short = e
                    .reserve(&cart(&[(0, 5), (1, 100)]), false, 600, None)
                    .await
                    .expect("engine");
                assert!(short.is_err());
            }
        };
        let ones = async {
            for _ in 0..200 {
                let one = e
                    .reserve(&cart(&[(0, 1)]), false, 600, None)
                    .await
                    .expect("engine")
                    .expect("held");
                e.transition(one.id, Transition::Release)
                    .await
                    .expect("engine")
                    .expect("released");
            }
        };
        futures::join!(shorts, ones);
        // One shard, held; then released.
        let b = e
            .reserve(&cart(&[(2, 1)]), false, 600, None)
            .await
            .expect("engine");
        assert!(b.is_err(), "no stock of SKU 2 yet");
        e.count(vec![count(2, 0, 4)], None).await.expect("count");
        let b = e
            .reserve(&cart(&[(2, 1)]), false, 600, None)
            .await
            .expect("engine")
            .expect("held");
        e.transition(b.id, Transition::Release)
            .await
            .expect("engine")
            .expect("released");
        e.transition(a.id.clone(), Transition::Confirm)
            .await
            .expect("engine")
            .expect("confirmed");
        e.transition(a.id, Transition::Fulfil)
            .await
            .expect("engine")
            .expect("fulfilled");
        e.adjust(1, 0, sku(1), loc(0), 7, AdjustReason::Receipt)
            .await
            .expect("engine")
            .expect("received");
    });

    // Everything reaches the subscriber: the last value of each record is
    // the engine's.
    let want = state(&rt, &e, 0);
    let t0 = Instant::now();
    loop {
        let got: BTreeMap<u32, (i64, i64)> = {
            let mut m: BTreeMap<u32, (i64, i64)> =
                shown.iter().map(|(s, x)| (*s, (x.0, x.1))).collect();
            for c in at_l0.0.lock().iter() {
                m.insert(c.sku, (c.record.on_hand, c.record.reserved));
            }
            m
        };
        if got == want {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "feed {got:?} vs engine {want:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let changes = at_l0.0.lock().clone();
    for c in &changes {
        assert_eq!(c.record.location, 0, "scope");
        // After the view, in version order per record.
        let seen = view.seen[c.shard as usize];
        if c.shard_seq <= seen {
            continue;
        }
        let last = shown.entry(c.sku).or_insert((0, 0, 0));
        assert!(
            c.record.version > last.2,
            "version grows: {c:?} after {last:?}"
        );
        *last = (c.record.on_hand, c.record.reserved, c.record.version);
        // SKU 0 at L0 is reserved by the held cart (2 units) and at most
        // one one-unit cart at a time: 5 more is the short carts' hold.
        if c.sku == 0 {
            assert!(
                c.record.reserved <= 3,
                "a hold that was never journaled shows: {c:?}"
            );
        }
    }
    assert!(at_l1.0.lock().is_empty(), "L1 saw changes of L0");
    // Changes of one record waiting together are coalesced: at least one
    // per record that changed after the view (SKUs 0, 1 and 2 at L0).
    let changed: std::collections::BTreeSet<u32> = changes.iter().map(|c| c.sku).collect();
    assert_eq!(changed.len(), 3, "{changes:?}");
    e.shutdown();
}

/// A change whose journal record never became durable (the disk failed
/// its sync) is never shown, though the shard applied it in memory.
#[test]
fn a_change_the_journal_could_not_keep_is_never_shown() {
    let rt = rt();
    let fs = SimStorage::new(9);
    let clock = ManualClock::new(1_700_000_000_000);
    let e = open(&fs, &clock, 2);
    rt.block_on(setup(&e));
    rt.block_on(e.count(vec![count(0, 0, 10)], None))
        .expect("count");
    let sink = Collect::default();
    let (_sub, view) = rt
        .block_on(e.feed_subscribe(Scope::Sku(0), Box::new(sink.clone())))
        .expect("subscribe");
    assert_eq!(view.records.len(), 1);
    // A committed change shows.
    rt.block_on(e.adjust(0, 0, sku(0), loc(0), -1, AdjustReason::Sale))
        .expect("engine")
        .expect("sold");
    // What the view holds already is dropped, as a reader does.
    let after = |sink: &Collect| -> Vec<i64> {
        sink.0
            .lock()
            .iter()
            .filter(|c| c.shard_seq > view.seen[c.shard as usize])
            .map(|c| c.record.on_hand)
            .collect()
    };
    let t0 = Instant::now();
    while after(&sink).is_empty() {
        assert!(t0.elapsed() < Duration::from_secs(5), "never shown");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(after(&sink), vec![9]);
    // The disk fails: the next write is applied in memory, never durable.
    fs.fail_syncs_after(0);
    let r = rt.block_on(e.adjust(0, 0, sku(0), loc(0), -1, AdjustReason::Sale));
    assert!(r.is_err(), "not acknowledged");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(after(&sink), vec![9], "only the committed change");
    e.shutdown();
}
