//! An engine on simulated storage and a manual clock, in-process.

use holdfast::actors::stock_shard::CountItem;
use holdfast::actors::{CartLine, Engine, EngineConfig};
use holdfast::clock::ManualClock;
use holdfast::domain::catalog::{Location, LocationKind, Sku};
use holdfast::domain::order::{
    Delivery, Order, OrderEvent, OrderLine, Route, ShipStatus, Shipment,
};
use holdfast::domain::reservation::Reservation;
use holdfast::domain::{LocationId, SkuId};
use holdfast::metrics::Metrics;
use holdfast::persistence::{Durability, SimStorage};
use std::sync::Arc;

/// A single-threaded runtime for driving an in-process engine.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt")
}

/// SKU `S{i}` and location `L{i}`: the sim tests' naming (index `i` once
/// they are put in that order).
pub fn sku(i: u32) -> SkuId {
    SkuId::parse(&format!("S{i}")).expect("id")
}
pub fn loc(i: u32) -> LocationId {
    LocationId::parse(&format!("L{i}")).expect("id")
}

pub fn open(fs: &SimStorage, clock: &ManualClock, shards: usize) -> Engine {
    Engine::open(
        &EngineConfig {
            data_dir: "/sim".into(),
            durability: Durability::Fsync,
            shards,
            snapshot: None,
            sourcing: Default::default(),
            feed_window: std::time::Duration::from_millis(2),
        },
        Arc::new(fs.clone()),
        Arc::new(clock.clone()),
        Arc::new(Metrics::default()),
    )
    .expect("open")
    .0
}

/// SKU `S0` at location `L0` with `on_hand` units.
pub async fn one_record(e: &Engine, on_hand: i64) {
    let (sku, loc) = (
        SkuId::parse("S0").expect("id"),
        LocationId::parse("L0").expect("id"),
    );
    e.put_sku(sku.clone(), Sku::named("x")).await.expect("sku");
    e.put_location(
        loc.clone(),
        Location::new("y", LocationKind::Store, 45.0, 9.0),
    )
    .await
    .expect("loc");
    e.count(
        vec![CountItem {
            sku_idx: 0,
            loc_idx: 0,
            sku,
            location: loc,
            on_hand,
            safety_stock: None,
            counted_at: None,
        }],
        None,
    )
    .await
    .expect("count");
}

/// Holds one unit of `S0` at `L0` for `ttl_s`.
pub async fn hold_one(e: &Engine, ttl_s: u64) -> Reservation {
    let cart = [CartLine::on_hand(0, 0, 1)];
    e.reserve(&cart, false, ttl_s, None)
        .await
        .expect("engine")
        .expect("held")
}

/// An order of one `S0` from `L0`, shipped to an address, held by
/// `reservation`, and its payment's yes.
pub fn paid_order(id: &str, reservation: &str, now: i64) -> (Order, OrderEvent) {
    let lines = vec![OrderLine {
        sku: SkuId::parse("S0").expect("id"),
        qty: 1,
        unit_price: 100,
    }];
    let shipments = vec![Shipment {
        id: 1,
        location: LocationId::parse("L0").expect("id"),
        route: Route::Deliver,
        lines: vec![(0, 1)],
        status: ShipStatus::Pending,
        reservation: Some(reservation.to_string()),
        parcel: None,
    }];
    let o = Order::new(
        id.into(),
        lines,
        Delivery::Ship {
            lat: 45.0,
            lon: 9.0,
            address: None,
        },
        shipments,
        "sandbox".into(),
        now,
    );
    let paid = OrderEvent::PaymentAuthorized {
        amount: 100,
        reference: "sbx-test".into(),
        at_ms: now,
    };
    (o, paid)
}

/// Record `i` of a journal test: receipts of SKU `SKU-{i % 7}` at `S001`.
pub fn journal_event(i: u64) -> holdfast::domain::event::Event {
    holdfast::domain::event::Event::Adjusted {
        sku: SkuId::parse(&format!("SKU-{}", i % 7)).expect("id"),
        location: LocationId::parse("S001").expect("id"),
        delta: i as i64 + 1,
        reason: holdfast::domain::stock::AdjustReason::Receipt,
        at_ms: 0,
        key: None,
        by: None,
        note: None,
        unsellable: None,
    }
}
