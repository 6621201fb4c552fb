//! The rotation index through the engine: sales adjustments and fulfilled
//! reservations count as sold, the window slides with the clock, and the
//! figures after a restart or a power cut (rebuilt from the journal) are the
//! ones served before it. On simulated storage and a manual clock.

mod common;

use common::sim::{loc, open, rt, sku};
use holdfast::actors::stock_shard::CountItem;
use holdfast::actors::{CartLine, Engine};
use holdfast::clock::ManualClock;
use holdfast::domain::catalog::{Location, LocationKind, Sku};
use holdfast::domain::reservation::Transition;
use holdfast::domain::stock::AdjustReason;
use holdfast::persistence::SimStorage;
use std::time::{Duration, Instant};

const DAY: i64 = 86_400_000;

/// The rotation index of S0 at L0 and L1.
fn rotations(rt: &tokio::runtime::Runtime, e: &Engine) -> (f64, f64) {
    let v = rt
        .block_on(e.stock_records(0, Some(vec![0, 1])))
        .expect("read");
    (v[0].rotation, v[1].rotation)
}

/// Waits until the engine serves `want` (a fulfilment's stock effect
/// reaches its shard just after the book answers), or 3 s.
fn settle(rt: &tokio::runtime::Runtime, e: &Engine, want: (f64, f64)) -> (f64, f64) {
    let t0 = Instant::now();
    loop {
        let got = rotations(rt, e);
        let close = (got.0 - want.0).abs() < 1e-9 && (got.1 - want.1).abs() < 1e-9;
        if close || t0.elapsed() > Duration::from_secs(3) {
            return got;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sales_and_fulfilments_make_the_index_and_it_survives_restarts() {
    let rt = rt();
    let fs = SimStorage::new(7);
    // Noon UTC, so the day boundaries are where the arithmetic says.
    let clock = ManualClock::new(20_000 * DAY + DAY / 2);
    let mut e = open(&fs, &clock, 2);
    rt.block_on(async {
        e.put_sku(sku(0), Sku::named("x")).await.expect("sku");
        for l in 0..2 {
            e.put_location(loc(l), Location::new("y", LocationKind::Store, 45.0, 9.0))
                .await
                .expect("loc");
        }
        let counts = (0..2)
            .map(|l| CountItem {
                sku_idx: 0,
                loc_idx: l,
                sku: sku(0),
                location: loc(l),
                on_hand: 100,
                safety_stock: None,
                counted_at: None,
            })
            .collect();
        e.count(counts, None).await.expect("count");
    });
    assert_eq!(rotations(&rt, &e), (0.0, 0.0), "nothing sold yet");

    rt.block_on(async {
        // L0 sells 10 at the till; a receipt or damage is not a sale.
        let sold = e
            .adjust(0, 0, sku(0), loc(0), -10, AdjustReason::Sale)
            .await
            .expect("engine")
            .expect("sold");
        assert!(sold.rotation > 0.0, "the answer carries the index");
        e.adjust(0, 1, sku(0), loc(1), -3, AdjustReason::Damage)
            .await
            .expect("engine")
            .expect("damaged");
        // L1 ships 5 to a web customer: held, confirmed, fulfilled.
        let cart = [CartLine::on_hand(0, 1, 5)];
        let r = e
            .reserve(&cart, false, 600, None)
            .await
            .expect("engine")
            .expect("held");
        e.transition(r.id.clone(), Transition::Confirm)
            .await
            .expect("engine")
            .expect("confirmed");
        e.transition(r.id, Transition::Fulfil)
            .await
            .expect("engine")
            .expect("fulfilled");
    });
    clock.advance_ms(DAY);
    rt.block_on(async {
        e.adjust(0, 0, sku(0), loc(0), -10, AdjustReason::Sale)
            .await
            .expect("engine")
            .expect("sold");
    });
    // L0: 20 sold; closes: five days before the first sale at 100, then
    // 90, then 80. L1: 5 sold; five days at 97 (after the damage), then
    // 92 on the sale's day and the next.
    let want = (
        20.0 / ((5.0 * 100.0 + 90.0 + 80.0) / 7.0),
        5.0 / ((5.0 * 97.0 + 92.0 + 92.0) / 7.0),
    );
    let before = settle(&rt, &e, want);
    assert!((before.0 - want.0).abs() < 1e-9, "{before:?} vs {want:?}");
    assert!((before.1 - want.1).abs() < 1e-9, "{before:?} vs {want:?}");
    assert!(before.0 > before.1, "L0 sells faster");

    // Rebuilt from the journal: a clean restart, then a power cut.
    for cut in [false, true] {
        e.shutdown();
        drop(e);
        if cut {
            fs.power_cut();
            fs.power_on();
        }
        e = open(&fs, &clock, 2);
        assert_eq!(
            rotations(&rt, &e),
            before,
            "after restart (power cut {cut})"
        );
    }

    // The window slides: a week after the last sale, nothing is left.
    clock.advance_ms(6 * DAY);
    let late = rotations(&rt, &e);
    assert!(
        late.0 > 0.0 && late.1 == 0.0,
        "{late:?}: L1's sale left first"
    );
    clock.advance_ms(DAY);
    assert_eq!(rotations(&rt, &e), (0.0, 0.0));
    e.shutdown();
}
