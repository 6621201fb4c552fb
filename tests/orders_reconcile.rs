//! An order journaled as paid, whose holds were not confirmed yet when the
//! process died, gets them confirmed at the next start; one whose hold
//! expired meanwhile is counted as lost. On simulated storage and a manual
//! clock: the crash falls exactly in that window.

mod common;

use common::sim::{hold_one, one_record, open, paid_order, rt};
use holdfast::clock::ManualClock;
use holdfast::domain::reservation::Status;
use holdfast::persistence::SimStorage;
use std::time::Duration;

#[test]
fn a_paid_order_whose_holds_were_not_confirmed_is_reconciled_at_start() {
    let rt = rt();
    let fs = SimStorage::new(7);
    let clock = ManualClock::new(1_700_000_000_000);
    let e = open(&fs, &clock, 1);
    let (kept, expiring) = rt.block_on(async {
        one_record(&e, 5).await;
        let kept = hold_one(&e, 900).await;
        let expiring = hold_one(&e, 1).await;
        let now = 1_700_000_000_000;
        for (id, r) in [("O-1", &kept), ("O-2", &expiring)] {
            let (o, paid) = paid_order(id, r.id.as_str(), now);
            e.place_order(o, paid)
                .await
                .expect("engine")
                .expect("placed");
        }
        (kept.id, expiring.id)
    });
    // The process dies here: both orders are journaled as paid, their
    // holds still held. One hold's TTL runs out before the restart.
    e.shutdown();
    drop(e);
    clock.advance_ms(5_000);
    let e = open(&fs, &clock, 1);
    rt.block_on(async {
        // The expiry tick releases the short hold.
        for _ in 0..50 {
            let r = e.reservation(expiring.clone()).await.expect("engine");
            if r.is_some_and(|r| r.status == Status::Expired) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(e.reconcile_orders().await.expect("engine"), (1, 1));
        let r = e
            .reservation(kept.clone())
            .await
            .expect("engine")
            .expect("kept");
        assert_eq!(r.status, Status::Confirmed);
        // Nothing left to do the second time.
        assert_eq!(e.reconcile_orders().await.expect("engine"), (0, 1));
        assert!(e
            .order("O-1")
            .expect("engine")
            .is_some_and(|o| o.shipments[0].reservation.as_deref() == Some(kept.as_str())));
    });
    e.shutdown();
}
