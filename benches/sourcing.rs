//! Planning time of the sourcing planner, in-process.
//!
//! `cargo bench --bench sourcing` builds a network of `--locations N`
//! (default 5,000: one DC and stores spread over Italy, Spain and France)
//! and `--skus M` (default 10,000): the DC stocks every SKU, each store
//! about one SKU in five. It then plans `--plans P` (default 20,000) carts
//! of `--lines L` (default 5) Zipf-popular SKUs, half delivered to a random
//! address, half picked up at a random store, and prints p50, p99 and max
//! of one `plan` call (the stock lists are gathered before the clock
//! starts, as the engine gathers them from the shards), the share of exact
//! plans and the mean shipments; and, for the same carts in the same run,
//! the same figures without the one-location path (`plan_every_location`),
//! with the ratio. `--assortment N`: stores also stock the N most popular
//! SKUs, so that the store near the customer can serve the whole cart.
//! `--qty-max Q` (default 2): lines of 1 to Q units; past the 5 units a
//! store holds at most, a line the DC is short of is split across stores
//! (the count of lines split is printed).

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod common;
use common::{arg, smoke};

use holdfast::domain::sourcing::{
    plan, plan_every_location, LineStock, Method, PlanLine, Site, Sites, Target, Weights,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::time::Instant;

/// Country boxes (lat, lon ranges) the stores are spread over.
const BOXES: [((f64, f64), (f64, f64)); 3] = [
    ((37.0, 46.5), (7.0, 16.0)), // Italy
    ((36.5, 43.5), (-8.5, 3.0)), // Spain
    ((43.5, 50.5), (-1.5, 7.5)), // France
];

fn point(rng: &mut StdRng) -> (f64, f64) {
    let ((la0, la1), (lo0, lo1)) = BOXES[rng.gen_range(0..BOXES.len())];
    (rng.gen_range(la0..la1), rng.gen_range(lo0..lo1))
}

fn main() {
    let small = smoke();
    let locations: usize = if small {
        200
    } else {
        arg("--locations", 5_000)
    };
    let skus: usize = if small { 300 } else { arg("--skus", 10_000) };
    let plans: usize = if small { 300 } else { arg("--plans", 20_000) };
    let lines: usize = arg("--lines", 5);
    // Stores also stock the `--assortment N` most popular SKUs (0: only
    // one SKU in five): the store near the customer can serve the cart.
    let assortment: usize = arg("--assortment", 0);
    let qty_max: u32 = arg("--qty-max", 2);
    let mut rng = StdRng::seed_from_u64(7);

    let mut sites = Vec::with_capacity(locations);
    sites.push({
        let mut dc = Site::new(45.5, 9.3);
        dc.priority = 50;
        dc
    });
    for _ in 1..locations {
        let (lat, lon) = point(&mut rng);
        let mut s = Site::new(lat, lon);
        s.priority = rng.gen_range(0..1000);
        s.pickup = true;
        s.at_capacity = rng.gen_bool(0.02);
        sites.push(s);
    }
    let sites = Sites(sites);
    let mut stock: Vec<Vec<LineStock>> = vec![Vec::new(); skus];
    for (sku, recs) in stock.iter_mut().enumerate() {
        recs.push(LineStock {
            location: 0,
            available: rng.gen_range(0..500),
            rotation: 0.5,
        });
        for loc in 1..locations {
            if sku < assortment || (sku + loc) % 5 == 0 || rng.gen_bool(0.02) {
                recs.push(LineStock {
                    location: loc as u32,
                    available: rng.gen_range(0..6),
                    rotation: rng.gen_range(0.0..3.0),
                });
            }
        }
    }
    let records: usize = stock.iter().map(|s| s.len()).sum();
    println!(
        "network: {locations} locations, {skus} SKUs, {records} stock records; {plans} plans of {lines} lines"
    );

    // Zipf-like popularity: rank r with weight 1/r.
    let zipf: Vec<f64> = {
        let mut acc = 0.0;
        (1..=skus)
            .map(|r| {
                acc += 1.0 / r as f64;
                acc
            })
            .collect()
    };
    let pick = |rng: &mut StdRng| {
        let x = rng.gen_range(0.0..zipf[skus - 1]);
        zipf.partition_point(|&c| c < x)
    };
    let weights = Weights::default();
    let mut times = Vec::with_capacity(plans);
    let mut baseline = Vec::with_capacity(plans);
    let (mut exact, mut shipments, mut unsourced, mut split) = (0usize, 0usize, 0usize, 0usize);
    for i in 0..plans {
        let cart: Vec<PlanLine> = (0..lines)
            .map(|_| {
                let sku = pick(&mut rng);
                PlanLine {
                    sku: sku as u32,
                    qty: rng.gen_range(1..qty_max + 1),
                    stock: stock[sku].clone(),
                    ship_alone: false,
                }
            })
            .collect();
        let target = if i % 2 == 0 {
            let (lat, lon) = point(&mut rng);
            Target::Deliver { lat, lon }
        } else {
            Target::Pickup {
                location: rng.gen_range(1..locations) as u32,
            }
        };
        // The same cart over every location, alternating which runs
        // first: the baseline of the same run.
        let (p, base) = if i % 4 < 2 {
            let t = Instant::now();
            let p = plan(&cart, target, &sites, &weights, false);
            times.push(t.elapsed());
            let t = Instant::now();
            let base = plan_every_location(&cart, target, &sites, &weights);
            baseline.push(t.elapsed());
            (p, base)
        } else {
            let t = Instant::now();
            let base = plan_every_location(&cart, target, &sites, &weights);
            baseline.push(t.elapsed());
            let t = Instant::now();
            let p = plan(&cart, target, &sites, &weights, false);
            times.push(t.elapsed());
            (p, base)
        };
        assert_eq!(p, base, "the one-location path changed a plan");
        if let Ok(p) = p {
            exact += usize::from(p.method == Method::Exact);
            shipments += p.shipments.len();
            unsourced += p.unsourced.len();
            // A split line is in more than one shipment.
            let mut in_shipments: Vec<usize> = p
                .shipments
                .iter()
                .flat_map(|s| s.lines.iter().map(|l| l.0))
                .collect();
            in_shipments.sort_unstable();
            let all = in_shipments.len();
            in_shipments.dedup();
            split += usize::from(in_shipments.len() < all);
        }
    }
    // The DC stocks every SKU: every plan that was not refused served
    // something.
    assert!(shipments > 0 && exact > 0, "plans served nothing");
    times.sort_unstable();
    baseline.sort_unstable();
    let q = |f: f64| times[((times.len() - 1) as f64 * f) as usize].as_secs_f64() * 1e6;
    let qb = |f: f64| baseline[((baseline.len() - 1) as f64 * f) as usize].as_secs_f64() * 1e6;
    println!(
        "plan: p50 {:.1} us, p99 {:.1} us, max {:.1} us; exact {:.1} %, mean shipments {:.2}, unsourced lines {}, plans splitting a line {}",
        q(0.5),
        q(0.99),
        q(1.0),
        100.0 * exact as f64 / plans as f64,
        shipments as f64 / plans as f64,
        unsourced,
        split
    );
    println!(
        "every location (no one-location path): p50 {:.1} us, p99 {:.1} us, max {:.1} us; p50 ratio {:.2}x, p99 ratio {:.2}x",
        qb(0.5),
        qb(0.99),
        qb(1.0),
        qb(0.5) / q(0.5),
        qb(0.99) / q(0.99)
    );
}
