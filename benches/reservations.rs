//! In-process benchmarks of the engine (actors + journal, no HTTP).
//!
//! `cargo bench --bench reservations` prints:
//! - reservations/s with `durability = "none"` and `"fsync"`, single-line and
//!   5-line carts, C concurrent callers (ratios against the "none" 1-line run);
//! - with `--big`: memory per stock record and restart time with 1,000,000
//!   stock records and 1,000,000 live reservations.
//!
//! Options: `--seconds N` per run (default 3), `--callers C` (default 256),
//! `--big` (only the 1M data set, in a fresh process), `--records N` to size it.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod common;
use common::{arg, smoke};

use holdfast::actors::stock_shard::CountItem;
use holdfast::actors::{CartLine, Engine, EngineConfig};
use holdfast::clock::SystemClock;
use holdfast::domain::catalog::{Location, LocationKind, Sku};
use holdfast::domain::{LocationId, SkuId};
use holdfast::metrics::Metrics;
use holdfast::persistence::{Durability, RealStorage};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

fn open(dir: &std::path::Path, durability: Durability) -> Engine {
    Engine::open(
        &EngineConfig {
            data_dir: dir.to_path_buf(),
            durability,
            shards: arg("--shards", 0),
            snapshot: None,
            sourcing: Default::default(),
            feed_window: std::time::Duration::from_millis(2),
        },
        Arc::new(RealStorage),
        Arc::new(SystemClock),
        Arc::new(Metrics::default()),
    )
    .expect("engine")
    .0
}

/// SKUs `0..skus` at locations `0..locs`, each record with `on_hand`.
async fn load(engine: &Engine, skus: u32, locs: u32, on_hand: i64, progress: bool) {
    for s in 0..skus {
        engine
            .put_sku(
                SkuId::parse(&format!("A{s}")).expect("id"),
                Sku::named(format!("sku {s}")),
            )
            .await
            .expect("sku");
    }
    for l in 0..locs {
        engine
            .put_location(
                LocationId::parse(&format!("S{l}")).expect("id"),
                Location::new(format!("store {l}"), LocationKind::Store, 45.0, 9.0),
            )
            .await
            .expect("location");
    }
    let total = u64::from(skus) * u64::from(locs);
    let mut batch = Vec::with_capacity(10_000);
    let mut done = 0u64;
    for s in 0..skus {
        for l in 0..locs {
            batch.push(CountItem {
                sku_idx: s,
                loc_idx: l,
                sku: SkuId::parse(&format!("A{s}")).expect("id"),
                location: LocationId::parse(&format!("S{l}")).expect("id"),
                on_hand,
                safety_stock: Some(0),
                counted_at: None,
            });
            if batch.len() == 10_000 {
                done += batch.len() as u64;
                engine
                    .count(std::mem::take(&mut batch), None)
                    .await
                    .expect("count");
                if progress && done.is_multiple_of(200_000) {
                    eprintln!("  loaded {done}/{total} stock records");
                }
            }
        }
    }
    if !batch.is_empty() {
        engine.count(batch, None).await.expect("count");
    }
}

/// Reservations per second for `secs` with `callers` concurrent callers.
async fn run(
    engine: &Engine,
    skus: u32,
    locs: u32,
    lines: usize,
    callers: usize,
    secs: f64,
) -> (f64, u64) {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let mut hs = Vec::new();
    for c in 0..callers {
        let (engine, stop, done, failed) =
            (engine.clone(), stop.clone(), done.clone(), failed.clone());
        hs.push(tokio::spawn(async move {
            let mut n = c as u64 * 2654435761 + 1;
            while !stop.load(Ordering::Relaxed) {
                let cart: Vec<CartLine> = (0..lines)
                    .map(|_| {
                        n = n
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        CartLine::on_hand(
                            ((n >> 33) % u64::from(skus)) as u32,
                            ((n >> 13) % u64::from(locs)) as u32,
                            1,
                        )
                    })
                    .collect();
                match engine.reserve(&cart, false, 900, None).await {
                    Ok(Ok(_)) => {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Err(_)) | Err(_) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        tokio::task::yield_now().await;
                    }
                }
            }
        }));
    }
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let elapsed = t0.elapsed().as_secs_f64();
    let n = done.load(Ordering::Relaxed);
    for h in hs {
        let _ = h.await;
    }
    (n as f64 / elapsed, failed.load(Ordering::Relaxed))
}

/// In a fresh process (this binary with `--measure-restart DIR`): opens the
/// engine on DIR and prints the restart time and the resident memory.
fn measure_restart(dir: &str) {
    let t0 = Instant::now();
    let engine = open(std::path::Path::new(dir), Durability::None);
    println!("{} {}", t0.elapsed().as_secs_f64(), rss_bytes());
    engine.shutdown();
}

fn child_restart(dir: &std::path::Path) -> (f64, u64) {
    let out = std::process::Command::new(std::env::current_exe().expect("exe"))
        .arg("--measure-restart")
        .arg(dir)
        .output()
        .expect("child");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut it = text.split_whitespace();
    let secs = it
        .next()
        .and_then(|s| s.parse().ok())
        .expect("restart seconds");
    let rss = it.next().and_then(|s| s.parse().ok()).expect("rss");
    (secs, rss)
}

/// Memory per stock record and restart time with `records` records and as
/// many live reservations, each measured in a fresh process.
fn big_run(rt: &tokio::runtime::Runtime, records: u64, callers: usize) {
    let locs = 1000u32;
    let skus = (records / u64::from(locs)).max(1) as u32;
    let n_records = u64::from(skus) * u64::from(locs);
    let empty = tempfile::tempdir().expect("tmp");
    open(empty.path(), Durability::None).shutdown();
    let (_, rss_empty) = child_restart(empty.path());

    let tmp = tempfile::tempdir().expect("tmp");
    let engine = open(tmp.path(), Durability::None);
    let t0 = Instant::now();
    rt.block_on(load(&engine, skus, locs, 1_000_000, true));
    println!(
        "loaded {n_records} stock records in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    engine.shutdown();
    drop(engine);
    let (secs, rss) = child_restart(tmp.path());
    println!(
        "restart with {n_records} stock records: {secs:.2} s; RSS {:.1} MiB over an empty engine's {:.1} MiB: {:.1} bytes/record",
        rss.saturating_sub(rss_empty) as f64 / 1048576.0,
        rss_empty as f64 / 1048576.0,
        rss.saturating_sub(rss_empty) as f64 / n_records as f64
    );

    let engine = open(tmp.path(), Durability::None);
    let t0 = Instant::now();
    let target = records;
    let made = rt.block_on(async {
        let made = Arc::new(AtomicU64::new(0));
        let mut hs = Vec::new();
        for c in 0..callers as u64 {
            let (engine, made) = (engine.clone(), made.clone());
            hs.push(tokio::spawn(async move {
                let mut i = c;
                while made.load(Ordering::Relaxed) < target {
                    let cart = [CartLine::on_hand(
                        (i % u64::from(skus)) as u32,
                        ((i / u64::from(skus)) % u64::from(locs)) as u32,
                        1,
                    )];
                    if let Ok(Ok(_)) = engine.reserve(&cart, false, 86_400, None).await {
                        let m = made.fetch_add(1, Ordering::Relaxed) + 1;
                        if m.is_multiple_of(200_000) {
                            eprintln!("  {m} reservations held");
                        }
                    }
                    i += callers as u64;
                }
            }));
        }
        for h in hs {
            let _ = h.await;
        }
        made.load(Ordering::Relaxed)
    });
    println!(
        "held {made} reservations in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    engine.shutdown();
    drop(engine);
    let (secs2, rss2) = child_restart(tmp.path());
    println!(
        "restart with {n_records} stock records and {made} live reservations: {secs2:.2} s; RSS {:.1} MiB: {:.0} bytes/reservation beyond the records",
        rss2 as f64 / 1048576.0,
        rss2.saturating_sub(rss) as f64 / made as f64
    );
}

fn main() {
    if let Some(dir) = std::env::args()
        .skip_while(|a| a != "--measure-restart")
        .nth(1)
    {
        measure_restart(&dir);
        return;
    }
    let smoke = smoke();
    let secs: f64 = if smoke { 0.2 } else { arg("--seconds", 3.0) };
    let callers: usize = arg("--callers", 256);
    let big = !smoke && std::env::args().any(|a| a == "--big");
    let records: u64 = arg("--records", 1_000_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(arg("--workers", 2))
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "holdfast in-process benchmark: {} cores, {callers} callers, {secs} s a run",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    println!(
        "{:<34} {:>14} {:>10} {:>8}",
        "run", "reservations/s", "vs base", "refused"
    );
    let mut base = None;
    // `--big` alone measures memory: throughput runs first would leave their
    // freed pages in the allocator and blur the RSS figures.
    let runs: &[(Durability, &str)] = if big {
        &[]
    } else {
        &[(Durability::None, "none"), (Durability::Fsync, "fsync")]
    };
    for &(durability, name) in runs {
        for lines in [1usize, 5] {
            let tmp = tempfile::tempdir().expect("tmp");
            let engine = open(tmp.path(), durability);
            let (skus, locs) = (1000, 10);
            rt.block_on(load(&engine, skus, locs, 1_000_000_000, false));
            let (rate, refused) = rt.block_on(run(&engine, skus, locs, lines, callers, secs));
            let b = *base.get_or_insert(rate);
            println!(
                "{:<34} {:>14.0} {:>9.2}x {:>8}",
                format!("durability={name} lines={lines}"),
                rate,
                rate / b,
                refused
            );
            engine.shutdown();
        }
    }
    if big {
        big_run(&rt, records, callers);
    }
}
