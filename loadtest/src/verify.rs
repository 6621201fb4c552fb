//! Setup of a run's network, and the end-of-run verification through the
//! API: never oversold, conservation, every confirmed reservation present.
//! A run that breaks an invariant exits non-zero.

use hyper::Method;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::client::Conn;
use crate::workload::{Ledger, Network, Scenario};

/// Connections used for setup and verification.
const SIDE_CONNECTIONS: usize = 8;
/// Items per `POST /v1/inventory/batch` (api.md's bound).
const BATCH_ITEMS_MAX: usize = 10_000;
/// A backorder SKU's limit of units sold ahead of supply (`store-day`).
const BACKORDER_MAX_UNITS: u32 = 200;

#[derive(Debug, Clone, serde::Serialize)]
pub struct Check {
    pub name: String,
    pub passed: bool,
    pub detail: String,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Verification {
    pub passed: bool,
    pub checks: Vec<Check>,
}

/// Runs `f` over `items` on `SIDE_CONNECTIONS` connections at once.
async fn parallel<T, R, F, Fut>(
    base: &str,
    token: &Option<String>,
    items: Vec<T>,
    f: F,
) -> Result<Vec<R>, String>
where
    T: Send + 'static,
    R: Send + 'static,
    F: Fn(Conn, Vec<T>) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<R>, String>> + Send + 'static,
{
    let per = items.len().div_ceil(SIDE_CONNECTIONS).max(1);
    let mut chunks = Vec::new();
    let mut it = items.into_iter().peekable();
    while it.peek().is_some() {
        chunks.push(it.by_ref().take(per).collect::<Vec<T>>());
    }
    let mut handles = Vec::new();
    for chunk in chunks {
        let conn = Conn::new(base, token.clone(), Duration::from_secs(30))?;
        handles.push(tokio::spawn(f(conn, chunk)));
    }
    let mut out = Vec::new();
    for h in handles {
        out.extend(h.await.map_err(|e| e.to_string())??);
    }
    Ok(out)
}

fn expect(status: u16, want: &[u16], what: &str, body: &Value) -> Result<(), String> {
    if want.contains(&status) {
        Ok(())
    } else {
        Err(format!("{what}: HTTP {status} {body}"))
    }
}

/// Creates the SKUs and locations and counts every record to `on_hand`.
pub async fn setup(base: &str, token: &Option<String>, net: &Arc<Network>) -> Result<(), String> {
    let skus: Vec<u32> = (0..net.skus).collect();
    let n = net.clone();
    parallel(base, token, skus, move |mut conn, chunk| {
        let n = n.clone();
        async move {
            for s in chunk {
                let mut sku = json!({"name": format!("load-test SKU {s}")});
                if n.backorder(s) {
                    sku["backorder"] = json!({"max_units": BACKORDER_MAX_UNITS});
                }
                let (st, b) = conn
                    .json(Method::PUT, &format!("/v1/skus/{}", n.sku(s)), Some(sku))
                    .await?;
                expect(st, &[200, 201], "PUT sku", &b)?;
            }
            Ok(Vec::<()>::new())
        }
    })
    .await?;
    let mut conn = Conn::new(base, token.clone(), Duration::from_secs(60))?;
    for j in 0..net.locations {
        // Spread over northern Italy; the DC first.
        let (kind, lat, lon) = if j == 0 {
            ("dc", 45.46, 9.19)
        } else {
            (
                "store",
                44.0 + f64::from(j % 20) * 0.1,
                8.0 + f64::from(j / 20) * 0.1,
            )
        };
        let (st, b) = conn
            .json(
                Method::PUT,
                &format!("/v1/locations/{}", net.location(j)),
                Some(
                    json!({"name": format!("load-test location {j}"), "kind": kind,
                            "lat": lat, "lon": lon, "priority": 1}),
                ),
            )
            .await?;
        expect(st, &[200, 201], "PUT location", &b)?;
    }
    let mut items = Vec::with_capacity(BATCH_ITEMS_MAX);
    for s in 0..net.skus {
        for j in 0..net.locations {
            items.push(json!({"location": net.location(j), "sku": net.sku(s),
                              "on_hand": net.initial(s), "safety_stock": 0}));
            if items.len() == BATCH_ITEMS_MAX {
                let (st, b) = conn
                    .json(
                        Method::POST,
                        "/v1/inventory/batch",
                        Some(json!({"items": std::mem::take(&mut items)})),
                    )
                    .await?;
                expect(st, &[200], "inventory batch", &b)?;
            }
        }
    }
    if !items.is_empty() {
        let (st, b) = conn
            .json(
                Method::POST,
                "/v1/inventory/batch",
                Some(json!({"items": items})),
            )
            .await?;
        expect(st, &[200], "inventory batch", &b)?;
    }
    Ok(())
}

fn check(checks: &mut Vec<Check>, name: &str, passed: bool, detail: String) {
    checks.push(Check {
        name: name.into(),
        passed,
        detail,
    });
}

/// Reads back what the run touched and holds it to the ledger.
pub async fn verify(
    base: &str,
    token: &Option<String>,
    scenario: Scenario,
    net: &Arc<Network>,
    ledger: &Ledger,
    confirmed_max: usize,
) -> Result<Verification, String> {
    let mut checks = Vec::new();
    // Abandoned carts expire within a second of their TTL (api.md).
    if let Some(deadline) = ledger.abandon_deadline {
        let until = deadline + Duration::from_millis(1500);
        let now = Instant::now();
        if until > now {
            tokio::time::sleep(until - now).await;
        }
    }
    check(
        &mut checks,
        "only expected answers",
        ledger.unexpected_count == 0,
        if ledger.unexpected.is_empty() {
            "every answer was one the contract allows".into()
        } else {
            format!(
                "{} unexpected, first: {}",
                ledger.unexpected_count,
                ledger.unexpected.join("; ")
            )
        },
    );

    // Every record a write touched.
    let mut keys: Vec<(u32, u32)> = ledger.touched.iter().copied().collect();
    keys.sort_unstable();
    let n = net.clone();
    let records: Vec<((u32, u32), Value)> = parallel(base, token, keys, move |mut conn, chunk| {
        let n = n.clone();
        async move {
            let mut out = Vec::with_capacity(chunk.len());
            for k in chunk {
                let path = format!("/v1/inventory/{}/{}", n.location(k.1), n.sku(k.0));
                let (st, b) = conn.json(Method::GET, &path, None).await?;
                expect(st, &[200], &path, &b)?;
                out.push((k, b));
            }
            Ok(out)
        }
    })
    .await?;
    let (mut oversold, mut unconserved, mut reserved_off) = (Vec::new(), Vec::new(), Vec::new());
    let mut exact = 0usize;
    let figure = |r: &Value, k: &str| r.get(k).and_then(Value::as_i64).unwrap_or(0);
    for (k, r) in &records {
        let on_hand = r["on_hand"].as_i64().unwrap_or(i64::MIN);
        let reserved = r["reserved"].as_i64().unwrap_or(i64::MIN);
        let name = format!("{}/{}", net.location(k.1), net.sku(k.0));
        // A count or a sale adjustment may leave fewer units on the shelf
        // than are reserved (units found missing): not an oversell.
        let counted = ledger.counted.contains(k);
        let shrunk = ledger.shrunk.contains(k);
        if on_hand < 0 || reserved < 0 || (reserved > on_hand && !shrunk) {
            oversold.push(format!("{name}: on_hand {on_hand}, reserved {reserved}"));
        }
        if ledger.doubt.contains(k) {
            continue;
        }
        exact += 1;
        let want_on_hand = net.initial(k.0) + ledger.adjusted.get(k).copied().unwrap_or(0)
            - ledger.fulfilled.get(k).copied().unwrap_or(0);
        // Where units were found missing, a fulfilment past on_hand is
        // corrected up to 0 (the engine's `keep_in_range`): never below.
        let off = if shrunk {
            on_hand < want_on_hand
        } else {
            on_hand != want_on_hand
        };
        if off && !counted {
            unconserved.push(format!(
                "{name}: on_hand {on_hand}, expected {want_on_hand}"
            ));
        }
        // Units sold ahead of supply are held too: on hand once arrived.
        let want_reserved = ledger.open.get(k).copied().unwrap_or(0);
        let held = reserved + figure(r, "backordered");
        let (in_transit, incoming) = (figure(r, "in_transit"), figure(r, "incoming"));
        let want_moving = (
            ledger.in_transit.get(k).copied().unwrap_or(0),
            ledger.incoming.get(k).copied().unwrap_or(0),
        );
        if held != want_reserved || (in_transit, incoming) != want_moving {
            reserved_off.push(format!(
                "{name}: reserved+backordered {held}, in_transit {in_transit}, incoming {incoming}, expected {want_reserved}, {want_moving:?}"
            ));
        }
    }
    let first = |v: &Vec<String>| v.iter().take(5).cloned().collect::<Vec<_>>().join("; ");
    check(
        &mut checks,
        "never oversold",
        oversold.is_empty(),
        if oversold.is_empty() {
            format!(
                "{} records: 0 <= reserved <= on_hand, on_hand >= 0",
                records.len()
            )
        } else {
            format!("{} records oversold: {}", oversold.len(), first(&oversold))
        },
    );
    check(
        &mut checks,
        "conservation of on_hand",
        unconserved.is_empty(),
        if unconserved.is_empty() {
            format!(
                "{exact} records (of {}; {} in doubt, {} counted late): on_hand = count + adjustments - fulfilled (at least, where a sale adjustment took units: a fulfilment past on_hand is corrected to 0)",
                records.len(),
                ledger.doubt.len(),
                ledger.counted.len()
            )
        } else {
            format!("{} records off: {}", unconserved.len(), first(&unconserved))
        },
    );
    check(
        &mut checks,
        "reserved = live holds",
        reserved_off.is_empty(),
        if reserved_off.is_empty() {
            format!("{exact} records: reserved (+ backordered) = held + confirmed lines the run knows of; in transit and incoming as shipped and announced")
        } else {
            format!(
                "{} records off: {}",
                reserved_off.len(),
                first(&reserved_off)
            )
        },
    );

    if scenario == Scenario::StoreDay {
        store_day_checks(base, token, net, ledger, &mut checks).await?;
    }

    if scenario == Scenario::FlashSale {
        let in_doubt = !ledger.doubt.is_empty();
        let reserved = records
            .first()
            .and_then(|(_, r)| r["reserved"].as_i64())
            .unwrap_or(0);
        // Sold out: exactly the stock won. Still on sale at the end (no
        // buyer was turned away): nothing is over- or under-sold so far.
        let sold_out = ledger.carts_short > 0;
        let passed = ledger.won <= net.on_hand
            && if sold_out {
                (in_doubt || ledger.won == net.on_hand) && reserved == net.on_hand
            } else {
                in_doubt || reserved == ledger.won
            };
        check(
            &mut checks,
            "flash sale: exactly the stock won",
            passed,
            format!(
                "{} units of {} won by {} buyers ({} turned away), reserved {reserved}{}",
                ledger.won,
                net.on_hand,
                ledger.carts_held,
                ledger.carts_short,
                match (in_doubt, sold_out) {
                    _ if ledger.won > net.on_hand => " (more units won than exist)".to_string(),
                    (true, _) => " (some answers lost: won may be short)".to_string(),
                    (false, false) => format!(
                        " (still on sale at the end, {} left: raise --duration or lower --hot-stock to see it sell out)",
                        net.on_hand - ledger.won
                    ),
                    (false, true) => String::new(),
                }
            ),
        );
    }

    // Every confirmed reservation, with its status (a sample beyond the cap).
    let total = ledger.confirmed.len();
    let step = total.div_ceil(confirmed_max.max(1)).max(1);
    let sample: Vec<(String, bool)> = ledger.confirmed.iter().step_by(step).cloned().collect();
    let checked = sample.len();
    let wrong: Vec<String> = parallel(base, token, sample, |mut conn, chunk| async move {
        let mut bad = Vec::new();
        for (id, fulfilled) in chunk {
            let (st, b) = conn
                .json(Method::GET, &format!("/v1/reservations/{id}"), None)
                .await?;
            let want = if fulfilled { "fulfilled" } else { "confirmed" };
            if st != 200 || b["status"] != want {
                bad.push(format!(
                    "{id}: HTTP {st} status {} (want {want})",
                    b["status"]
                ));
            }
        }
        Ok(bad)
    })
    .await?;
    check(
        &mut checks,
        "every confirmed reservation present",
        wrong.is_empty(),
        if wrong.is_empty() {
            format!("{checked} of {total} confirmed reservations read back with their status")
        } else {
            format!("{} of {checked} wrong: {}", wrong.len(), first(&wrong))
        },
    );
    Ok(Verification {
        passed: checks.iter().all(|c| c.passed),
        checks,
    })
}

/// `store-day`'s own invariants: each record counted late tells its story
/// whole (every movement of its history's newest page leaves the figure
/// the next starts from, and the newest is the record's on_hand), and no
/// more units were converted from backorders than supply delivered.
async fn store_day_checks(
    base: &str,
    token: &Option<String>,
    net: &Arc<Network>,
    ledger: &Ledger,
    checks: &mut Vec<Check>,
) -> Result<(), String> {
    let mut keys: Vec<(u32, u32)> = ledger.counted.iter().copied().collect();
    keys.sort_unstable();
    let n = net.clone();
    let broken: Vec<String> = parallel(base, token, keys.clone(), move |mut conn, chunk| {
        let n = n.clone();
        async move {
            let mut bad = Vec::new();
            for k in chunk {
                let rec = format!("/v1/inventory/{}/{}", n.location(k.1), n.sku(k.0));
                let (st, r) = conn.json(Method::GET, &rec, None).await?;
                expect(st, &[200], &rec, &r)?;
                let path = format!("{rec}/history?limit=200");
                let (st, h) = conn.json(Method::GET, &path, None).await?;
                expect(st, &[200], &path, &h)?;
                let moves = h["movements"].as_array().cloned().unwrap_or_default();
                let at = |i: usize, f: &str| moves[i][f].as_i64().unwrap_or(i64::MIN);
                if moves.first().is_some_and(|m| m["on_hand"] != r["on_hand"]) {
                    bad.push(format!(
                        "{rec}: newest movement {} is not the record {}",
                        moves[0], r
                    ));
                }
                for i in 1..moves.len() {
                    if at(i - 1, "on_hand") - at(i - 1, "delta_on_hand") != at(i, "on_hand") {
                        bad.push(format!(
                            "{rec}: {} does not follow {}",
                            moves[i - 1],
                            moves[i]
                        ));
                        break;
                    }
                }
            }
            Ok(bad)
        }
    })
    .await?;
    let first = |v: &[String]| v.iter().take(3).cloned().collect::<Vec<_>>().join("; ");
    check(
        checks,
        "store day: every late count's history adds up",
        broken.is_empty(),
        if broken.is_empty() {
            format!(
                "{} records counted late: each movement leaves the figure the next starts from, the newest the record's",
                keys.len()
            )
        } else {
            format!("{} records: {}", broken.len(), first(&broken))
        },
    );
    let mut conn = Conn::new(base, token.clone(), Duration::from_secs(30))?;
    let (st, m) = conn
        .call(Method::GET, "/metrics", None)
        .await
        .map_err(|f| format!("GET /metrics: {f:?}"))?;
    expect(st, &[200], "/metrics", &Value::Null)?;
    let m = String::from_utf8_lossy(&m);
    let metric = |name: &str| {
        m.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    let converted = metric("holdfast_backorder_units_converted_total ");
    let received = metric("holdfast_supply_units_received_total ");
    let held = metric("holdfast_backorder_units_held_total ");
    check(
        checks,
        "store day: backorder conversions never exceed receipts",
        converted <= received && converted <= held,
        format!(
            "{held} units sold ahead of supply, {converted} converted as {received} units were delivered; {} fulfilments waited for supply",
            ledger.backorder_waits
        ),
    );
    Ok(())
}
