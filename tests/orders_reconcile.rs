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

/// A cluster's order splits a cart into parts of ids it chose (one id per
/// part in every shard): each must be in the book of the cart (the book
/// inserts the parts as it journals the split), and not held already.
/// The parts are found, and move, before and after a restart.
#[test]
fn a_split_into_chosen_ids_keeps_them_in_the_cart_s_book() {
    use holdfast::actors::book_of;
    use holdfast::domain::ids::ReservationId;
    use holdfast::domain::reservation::{SplitRefused, Transition};
    let rt = rt();
    let fs = SimStorage::new(11);
    let clock = ManualClock::new(1_700_000_000_000);
    let e = open(&fs, &clock, 4);
    let n = e.books();
    assert!(n > 1, "one book: nothing to tell apart");
    // An id of the form a cluster node draws, in book `book` or not.
    let id_in = |book: usize, want: bool| {
        (0u64..)
            .map(|i| ReservationId::parse(&format!("0-1.c{i:016x}")).expect("id"))
            .find(|id| (book_of(id, n) == book) == want)
            .expect("an id")
    };
    let part = rt.block_on(async {
        one_record(&e, 5).await;
        let cart = hold_one(&e, 900).await;
        let other = hold_one(&e, 900).await;
        let book = book_of(&cart.id, n);
        let elsewhere = id_in(book, false);
        let refused = e
            .split_reservation_as(cart.id.clone(), vec![(elsewhere, cart.lines.clone())], 60)
            .await
            .expect("engine");
        assert_eq!(refused.err(), Some(SplitRefused::LinesDiffer));
        if book_of(&other.id, n) == book {
            let taken = e
                .split_reservation_as(
                    cart.id.clone(),
                    vec![(other.id.clone(), cart.lines.clone())],
                    60,
                )
                .await
                .expect("engine");
            assert_eq!(taken.err(), Some(SplitRefused::LinesDiffer));
        }
        let part = id_in(book, true);
        let split = e
            .split_reservation_as(
                cart.id.clone(),
                vec![(part.clone(), cart.lines.clone())],
                60,
            )
            .await
            .expect("engine")
            .expect("split");
        assert_eq!(split.len(), 1);
        assert_eq!(split[0].id, part);
        let from = e
            .reservation(cart.id.clone())
            .await
            .expect("engine")
            .expect("cart");
        assert_eq!(from.status, Status::Released);
        let got = e
            .reservation(part.clone())
            .await
            .expect("engine")
            .expect("part");
        assert_eq!((got.status, got.lines), (Status::Held, cart.lines));
        part
    });
    e.shutdown();
    drop(e);
    let e = open(&fs, &clock, 4);
    rt.block_on(async {
        let done = e
            .transition(part.clone(), Transition::Confirm)
            .await
            .expect("engine")
            .expect("confirmed after the restart");
        assert_eq!(done.status, Status::Confirmed);
    });
}
