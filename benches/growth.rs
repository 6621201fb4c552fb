//! The longest single insert while a reservation book grows.
//!
//! `cargo bench --bench growth` inserts `--count N` (default 1,000,000)
//! one-line reservations, as the book holds them, into a plain `AHashMap`
//! and into `holdfast::collections::SegmentedMap`, timing every insert, and
//! prints for each: the total, the longest insert, and where it happened.
//! Three rounds, alternating, so the two see the same machine.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod common;
use common::{arg, smoke};

use ahash::AHashMap;
use holdfast::collections::SegmentedMap;
use holdfast::domain::reservation::{Line, Reservation};
use holdfast::domain::{LocationId, ReservationId, SkuId};
use std::time::{Duration, Instant};

fn reservation(i: u64, sku: &SkuId, loc: &LocationId) -> (ReservationId, Reservation) {
    let id = ReservationId::parse(&format!("r{:016x}{:08x}", 0x5eed_u64, i)).expect("hex id");
    let line = Line {
        sku: sku.clone(),
        location: loc.clone(),
        qty: 1,
        requested: 1,
        backordered: 0,
        eta_ms: 0,
    };
    let r = Reservation::held(id.clone(), vec![line], 1_000, 601_000);
    (id, r)
}

/// Inserts `n` reservations through `insert`; returns (total, longest
/// insert, the count at which it happened, inserts over 1 ms).
fn run(
    n: u64,
    mut insert: impl FnMut(ReservationId, Reservation),
) -> (Duration, Duration, u64, u64) {
    let sku = SkuId::parse("SKU-000123").expect("id");
    let loc = LocationId::parse("S0042").expect("id");
    // Built outside the timing: only the inserts are measured.
    let items: Vec<_> = (0..n).map(|i| reservation(i, &sku, &loc)).collect();
    let (mut longest, mut at, mut over_1ms) = (Duration::ZERO, 0, 0);
    let start = Instant::now();
    for (i, (id, r)) in items.into_iter().enumerate() {
        let t = Instant::now();
        insert(id, r);
        let d = t.elapsed();
        if d > longest {
            longest = d;
            at = i as u64;
        }
        if d > Duration::from_millis(1) {
            over_1ms += 1;
        }
    }
    (start.elapsed(), longest, at, over_1ms)
}

fn main() {
    let n: u64 = if smoke() {
        20_000
    } else {
        arg("--count", 1_000_000)
    };
    println!("{n} one-line reservations inserted one by one, three rounds");
    println!(
        "{:<14} {:>10} {:>14} {:>10} {:>12}",
        "map", "total ms", "longest ms", "at", "over 1 ms"
    );
    for round in 0..3 {
        let mut worst = [0.0f64; 2];
        for (k, name) in ["AHashMap", "SegmentedMap"].iter().enumerate() {
            let (total, longest, at, over) = if k == 0 {
                let mut m = AHashMap::new();
                let r = run(n, |id, v| {
                    m.insert(id, v);
                });
                assert_eq!(m.len() as u64, n);
                r
            } else {
                let mut m = SegmentedMap::new();
                let r = run(n, |id, v| {
                    m.insert(id, v);
                });
                assert_eq!(m.len() as u64, n);
                r
            };
            worst[k] = longest.as_secs_f64() * 1e3;
            println!(
                "{:<14} {:>10.1} {:>14.3} {:>10} {:>12}",
                name,
                total.as_secs_f64() * 1e3,
                longest.as_secs_f64() * 1e3,
                at,
                over
            );
        }
        println!(
            "round {}: longest insert, segmented / plain = {:.3}",
            round + 1,
            worst[1] / worst[0]
        );
    }
}
