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
            .await
            .expect("engine")
            .is_some_and(|o| o.shipments[0].reservation.as_deref() == Some(kept.as_str())));
    });
    e.shutdown();
}

/// An order's split parts live in the cart's book: found, and moved,
/// before and after a restart. Ids of the sharded cluster (`{shard}.r...`,
/// still in journals written then) find the book their counter names, as
/// the same id without the prefix does.
#[test]
fn a_split_s_parts_are_found_in_the_cart_s_book_across_a_restart() {
    use holdfast::actors::book_of;
    use holdfast::domain::ids::ReservationId;
    use holdfast::domain::reservation::Transition;
    let rt = rt();
    let fs = SimStorage::new(11);
    let clock = ManualClock::new(1_700_000_000_000);
    let e = open(&fs, &clock, 4);
    let n = e.books();
    assert!(n > 1, "one book: nothing to tell apart");
    for counter in 0..(2 * n as u64) {
        let bare = ReservationId::parse(&format!("r{:016x}{counter:08x}", 7)).expect("id");
        let old = ReservationId::parse(&format!("3.r{:016x}{counter:08x}", 7)).expect("id");
        assert_eq!(book_of(&old, n), book_of(&bare, n));
        assert_eq!(book_of(&bare, n), (counter % n as u64) as usize);
    }
    let part = rt.block_on(async {
        one_record(&e, 5).await;
        let cart = hold_one(&e, 900).await;
        let split = e
            .split_reservation(cart.id.clone(), vec![cart.lines.clone()], 60)
            .await
            .expect("engine")
            .expect("split");
        assert_eq!(split.len(), 1);
        let part = split[0].id.clone();
        assert_eq!(book_of(&part, n), book_of(&cart.id, n));
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

/// A payment so slow that the order's holds expire while it is
/// authorized: the order is then recorded as paid, so its answer is the
/// order (its lost hold named by the reconciliation the failure asks
/// for), never a 503 that says nothing was done.
#[test]
fn an_order_whose_holds_expired_while_it_was_paid_is_answered_as_placed() {
    use holdfast::carriers::Shipping;
    use holdfast::domain::order::{Delivery, OrderLine};
    use holdfast::domain::sourcing::{PlanOptions, Target};
    use holdfast::domain::SkuId;
    use holdfast::orders::place::{place, NewOrder};
    use holdfast::orders::{Orders, Unsettled};
    use holdfast::payments::{PaymentProvider, Routing};
    use std::sync::Arc;

    let rt = rt();
    let fs = SimStorage::new(9);
    let clock = ManualClock::new(1_700_000_000_000);
    let e = open(&fs, &clock, 1);
    rt.block_on(one_record(&e, 5));
    let slow: Arc<dyn PaymentProvider> = Arc::new(Slow(clock.clone()));
    let orders = Orders {
        engine: e.clone(),
        payments: vec![("slow".into(), slow.clone())],
        scalapay: None,
        payment_routing: Routing::default(),
        shipping: Shipping {
            carriers: Vec::new(),
            routing: Routing::default(),
            labels: "/data/labels".into(),
            storage: Arc::new(fs.clone()),
        },
        unsettled_since: Unsettled::default(),
    };
    let new = NewOrder {
        id: "O-1".into(),
        channel: None,
        customer: Default::default(),
        lines: vec![OrderLine {
            sku: SkuId::parse("S0").expect("id"),
            qty: 1,
            unit_price: 1_000,
        }],
        asked: vec![(0, 1)],
        target: Target::Deliver {
            lat: 45.0,
            lon: 9.0,
        },
        delivery: Delivery::Ship {
            lat: 45.0,
            lon: 9.0,
            address: None,
        },
        provider: slow,
        method: None,
        options: PlanOptions {
            explain: false,
            split_lines: None,
        },
        from: None,
    };
    let placed = rt
        .block_on(place(&orders, new))
        .expect("answered as placed");
    assert_eq!(placed.id, "O-1");
    assert!(
        rt.block_on(e.order("O-1")).expect("read").is_some(),
        "recorded"
    );
    assert!(
        orders.unsettled_since.get().is_some(),
        "the failed confirm asks for a reconciliation"
    );
}

/// Authorizes after the order's holds expired: the clock jumps past their
/// TTL, and the books' expiry tick (real time) sees it.
struct Slow(ManualClock);

impl holdfast::payments::PaymentProvider for Slow {
    fn name(&self) -> &str {
        "slow"
    }
    fn authorize<'a>(
        &'a self,
        _: &'a holdfast::payments::Authorize,
    ) -> futures::future::BoxFuture<
        'a,
        Result<holdfast::payments::Authorization, holdfast::payments::PaymentError>,
    > {
        Box::pin(async move {
            self.0.advance_ms(901_000);
            tokio::time::sleep(Duration::from_millis(800)).await;
            Ok(holdfast::payments::Authorization::Authorized {
                reference: "ref-1".into(),
            })
        })
    }
    fn capture<'a>(
        &'a self,
        _: &'a holdfast::payments::Follow,
    ) -> futures::future::BoxFuture<'a, Result<(), holdfast::payments::PaymentError>> {
        Box::pin(async { Ok(()) })
    }
    fn refund<'a>(
        &'a self,
        _: &'a holdfast::payments::Follow,
    ) -> futures::future::BoxFuture<'a, Result<(), holdfast::payments::PaymentError>> {
        Box::pin(async { Ok(()) })
    }
    fn void<'a>(
        &'a self,
        _: &'a holdfast::payments::Follow,
    ) -> futures::future::BoxFuture<'a, Result<(), holdfast::payments::PaymentError>> {
        Box::pin(async { Ok(()) })
    }
}

/// A pickup by transfer whose shipment was journaled as shipped, then as
/// ready for pickup, when the process died before its transfer's record:
/// the next start makes the transfer (in transit at the pickup store),
/// then receives it, once each.
#[test]
fn a_pickup_s_transfer_not_recorded_before_a_crash_is_made_at_start() {
    use holdfast::domain::ids::LocationId;
    use holdfast::domain::order::{Delivery, Route, ShipStatus};
    use holdfast::domain::transfer::{OrderRef, TransferStatus};
    let rt = rt();
    let fs = SimStorage::new(13);
    let clock = ManualClock::new(1_700_000_000_000);
    let now = 1_700_000_000_000;
    let pickup = LocationId::parse("P0").expect("id");
    let e = open(&fs, &clock, 2);
    rt.block_on(async {
        one_record(&e, 5).await;
        e.put_location(
            pickup.clone(),
            holdfast::domain::catalog::Location::new(
                "p",
                holdfast::domain::catalog::LocationKind::Store,
                45.1,
                9.1,
            ),
        )
        .await
        .expect("loc");
        let r = hold_one(&e, 900).await;
        let (mut o, paid) = paid_order("O-T", r.id.as_str(), now);
        o.delivery = Delivery::Pickup {
            location: pickup.clone(),
        };
        o.shipments[0].route = Route::Transfer;
        e.place_order(o, paid)
            .await
            .expect("engine")
            .expect("placed");
        // The move is journaled; what follows it (the fulfil, the
        // transfer) is not: the process dies here.
        e.order_change("O-T", move |o| o.decide_move(1, ShipStatus::Shipped, now))
            .await
            .expect("engine")
            .expect("order")
            .expect("moved");
    });
    let of = OrderRef {
        order: "O-T".into(),
        shipment: 1,
    };
    let transfer = |e: &holdfast::actors::Engine| {
        let of = of.clone();
        rt.block_on(e.read_transfers(move |b| b.of_order(&of).ok().cloned()))
            .expect("engine")
    };
    let in_transit = |e: &holdfast::actors::Engine| {
        rt.block_on(e.stock_records(0, Some(vec![1])))
            .expect("engine")[0]
            .record
            .in_transit
    };
    assert_eq!(transfer(&e), None);
    e.shutdown();
    drop(e);

    let e = open(&fs, &clock, 2);
    rt.block_on(e.reconcile_orders()).expect("engine");
    let t = transfer(&e).expect("made at start");
    assert_eq!(
        (t.id.as_str(), t.status),
        ("O-T:1", TransferStatus::Shipped)
    );
    assert_eq!(in_transit(&e), 1);
    rt.block_on(e.reconcile_orders()).expect("engine");
    assert_eq!(in_transit(&e), 1, "made once");
    rt.block_on(e.order_change("O-T", move |o| {
        o.decide_move(1, ShipStatus::ReadyForPickup, now)
    }))
    .expect("engine")
    .expect("order")
    .expect("moved");
    e.shutdown();
    drop(e);

    let e = open(&fs, &clock, 2);
    rt.block_on(e.reconcile_orders()).expect("engine");
    let t = transfer(&e).expect("kept");
    assert_eq!(t.status, TransferStatus::Received);
    assert_eq!(t.lines[0].received, Some(1));
    assert_eq!(in_transit(&e), 0);
    e.shutdown();
}
