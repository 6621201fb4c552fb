//! What is acknowledged is durable, and stock is never oversold under races:
//! the real binary, killed with SIGKILL in the middle of a write load.

mod common;

use common::{client, get, post, seed, try_call, Server};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[test]
fn thirty_two_clients_race_for_500_units_and_win_exactly_500() {
    let s = Server::start("");
    let c = client();
    seed(&c, &s, None, 1, 1, 500);
    let won: Vec<usize> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..32)
            .map(|_| {
                sc.spawn(|| {
                    let c = client();
                    let mut wins = 0;
                    loop {
                        let (st, v) = post(
                            &c,
                            &s,
                            "/v1/reservations",
                            Some(r#"{"lines":[{"sku":"A0","qty":1,"location":"S000"}]}"#),
                        );
                        match st {
                            201 => wins += 1,
                            409 => return wins,
                            _ => panic!("unexpected {st}: {v}"),
                        }
                    }
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("client")).collect()
    });
    assert_eq!(won.iter().sum::<usize>(), 500, "{won:?}");
    let v = get(&c, &s, "/v1/inventory/S000/A0").1;
    assert_eq!(
        (v["reserved"].as_i64(), v["available"].as_i64()),
        (Some(500), Some(0))
    );
}

/// What a load client knows of one reservation.
#[derive(Debug, Clone)]
struct Known {
    lines: Vec<(String, String, i64)>,
    /// The last acknowledged status.
    status: String,
    /// A transition sent but not answered when the server died.
    pending: Option<String>,
}

#[test]
fn sigkill_under_write_load_loses_nothing_acknowledged() {
    // Two shards: carts across shards are killed in flight too.
    let mut s = Server::start("shards = 2");
    let c = client();
    seed(&c, &s, None, 4, 2, 1_000_000);
    let known: Arc<Mutex<HashMap<String, Known>>> = Arc::default();
    let mut receipts_acked = 0i64;
    let mut in_flight_total = 0i64;
    for round in 0..3 {
        let stop = Arc::new(AtomicBool::new(false));
        let in_flight_creates = Arc::new(Mutex::new(0i64));
        let mut hs = Vec::new();
        for t in 0..8u64 {
            let (base, known, stop, in_flight) = (
                s.base.clone(),
                known.clone(),
                stop.clone(),
                in_flight_creates.clone(),
            );
            hs.push(std::thread::spawn(move || {
                let c = client();
                let mut n = t * 7919 + round;
                while !stop.load(Ordering::Relaxed) {
                    n = n.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    let lines: Vec<(String, String, i64)> = (0..1 + (n >> 60) % 2)
                        .map(|k| (format!("A{}", (n >> (8 + k * 4)) % 4), format!("S{:03}", (n >> (16 + k)) % 2), 1 + ((n >> 24) % 3) as i64))
                        .collect();
                    let body = serde_json::json!({"lines": lines.iter().map(|(s, l, q)| serde_json::json!({"sku": s, "location": l, "qty": q})).collect::<Vec<_>>()}).to_string();
                    let qty: i64 = lines.iter().map(|l| l.2).sum();
                    *in_flight.lock().expect("lock") += qty;
                    let r = try_call(&c, "POST", &format!("{base}/v1/reservations"), Some(&body));
                    let Some((201, v)) = r else {
                        // Died in flight: it may or may not exist; the count stays in `in_flight`.
                        if r.is_some() {
                            *in_flight.lock().expect("lock") -= qty;
                        }
                        break;
                    };
                    *in_flight.lock().expect("lock") -= qty;
                    let id = v["id"].as_str().expect("id").to_string();
                    known.lock().expect("lock").insert(id.clone(), Known { lines, status: "held".into(), pending: None });
                    let action = match n % 4 {
                        0 | 1 => "confirm",
                        2 => "release",
                        _ => continue,
                    };
                    known.lock().expect("lock").get_mut(&id).expect("known").pending = Some(action.into());
                    match try_call(&c, "POST", &format!("{base}/v1/reservations/{id}/{action}"), None) {
                        Some((200, v)) => {
                            let mut k = known.lock().expect("lock");
                            let e = k.get_mut(&id).expect("known");
                            e.status = v["status"].as_str().expect("status").into();
                            e.pending = None;
                        }
                        _ => break,
                    }
                }
            }));
        }
        // A receipts writer: acknowledged adjustments must all be there.
        let adj = {
            let (base, stop) = (s.base.clone(), stop.clone());
            std::thread::spawn(move || {
                let c = client();
                let mut acked = 0i64;
                while !stop.load(Ordering::Relaxed) {
                    match try_call(
                        &c,
                        "POST",
                        &format!("{base}/v1/inventory/S000/A0/adjustments"),
                        Some(r#"{"delta":1,"reason":"receipt"}"#),
                    ) {
                        Some((200, _)) => acked += 1,
                        _ => break,
                    }
                }
                acked
            })
        };
        std::thread::sleep(Duration::from_millis(600 + 200 * round));
        s.kill_and_restart("shards = 2");
        stop.store(true, Ordering::Relaxed);
        for h in hs {
            h.join().expect("load thread");
        }
        receipts_acked += adj.join().expect("adjuster");
        let in_flight = *in_flight_creates.lock().expect("lock");

        // Every acknowledged reservation is there with its status.
        let mut live: HashMap<(String, String), i64> = HashMap::new();
        let mut k = known.lock().expect("lock");
        assert!(
            k.len() > 50,
            "round {round}: the load made only {} reservations",
            k.len()
        );
        for (id, e) in k.iter_mut() {
            let (st, v) = get(&c, &s, &format!("/v1/reservations/{id}"));
            assert_eq!(st, 200, "round {round}: acknowledged reservation {id} lost");
            let now = v["status"].as_str().expect("status").to_string();
            let ok = now == e.status
                || e.pending.as_deref().is_some_and(|p| {
                    (p == "confirm" && now == "confirmed") || (p == "release" && now == "released")
                });
            assert!(
                ok,
                "round {round}: {id} was {} (pending {:?}), now {now}",
                e.status, e.pending
            );
            e.status = now;
            e.pending = None;
            if e.status == "held" || e.status == "confirmed" {
                for (sku, loc, q) in &e.lines {
                    *live.entry((sku.clone(), loc.clone())).or_default() += q;
                }
            }
        }
        // Counts: reserved is the acknowledged live lines plus, at most, the carts in flight.
        let mut total_reserved = 0;
        let mut total_known = 0;
        for sku in 0..4 {
            for loc in 0..2 {
                let (sku, loc) = (format!("A{sku}"), format!("S{loc:03}"));
                let v = get(&c, &s, &format!("/v1/inventory/{loc}/{sku}")).1;
                let want = live.get(&(sku.clone(), loc.clone())).copied().unwrap_or(0);
                let reserved = v["reserved"].as_i64().expect("reserved");
                assert!(
                    reserved >= want,
                    "round {round}: {loc}/{sku} reserved {reserved} < acknowledged {want}"
                );
                total_reserved += reserved;
                total_known += want;
                if (loc.as_str(), sku.as_str()) == ("S000", "A0") {
                    let on_hand = v["on_hand"].as_i64().expect("on_hand");
                    assert!(
                        on_hand == 1_000_000 + receipts_acked
                            || on_hand == 1_000_000 + receipts_acked + 1,
                        "round {round}: on_hand {on_hand}, {receipts_acked} receipts acknowledged"
                    );
                    receipts_acked = on_hand - 1_000_000;
                } else {
                    assert_eq!(v["on_hand"], 1_000_000);
                }
            }
        }
        // Carts in flight at a kill may have become durable unanswered: they
        // stay held (their TTL is 900 s), so the bound adds up over rounds.
        in_flight_total += in_flight;
        assert!(
            total_reserved - total_known <= in_flight_total,
            "round {round}: {} reserved beyond the acknowledged, at most {in_flight_total} were in flight",
            total_reserved - total_known
        );
    }
}

#[test]
fn sigterm_finishes_and_exits_cleanly() {
    let mut s = Server::start("");
    let c = client();
    seed(&c, &s, None, 1, 1, 10);
    let (st, r) = post(
        &c,
        &s,
        "/v1/reservations",
        Some(r#"{"lines":[{"sku":"A0","qty":4,"location":"S000"}]}"#),
    );
    assert_eq!(st, 201);
    let status = std::process::Command::new("kill")
        .args(["-TERM", &s.pid().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let exit = s.child.wait().expect("wait");
    assert!(exit.success(), "exit status {exit:?}");
    s.kill_and_restart("");
    let id = r["id"].as_str().expect("id");
    assert_eq!(
        get(&c, &s, &format!("/v1/reservations/{id}")).1["status"],
        "held"
    );
    assert_eq!(get(&c, &s, "/v1/inventory/S000/A0").1["reserved"], 4);
}

#[test]
fn snapshots_bound_the_journal_and_a_bad_one_is_rebuilt() {
    let cfg = "[snapshot]\nevery_records = 50\nevery_s = 1\n";
    let mut s = Server::start(cfg);
    let c = client();
    seed(&c, &s, None, 3, 2, 100_000);
    let mut ids = Vec::new();
    let journal_dir = s.data_dir.join("journal");
    let segments = |d: &std::path::Path| std::fs::read_dir(d).map(|r| r.count()).unwrap_or(0);
    for round in 0..4 {
        for i in 0..120 {
            let (st, v) = post(
                &c,
                &s,
                "/v1/reservations",
                Some(&format!(
                    r#"{{"lines":[{{"sku":"A{}","qty":2,"location":"S00{}"}}]}}"#,
                    i % 3,
                    i % 2
                )),
            );
            assert_eq!(st, 201, "{v}");
            let id = v["id"].as_str().expect("id").to_string();
            if i % 3 == 0 {
                assert_eq!(
                    post(&c, &s, &format!("/v1/reservations/{id}/confirm"), None).0,
                    200
                );
            }
            ids.push((id, if i % 3 == 0 { "confirmed" } else { "held" }));
        }
        // Let the snapshotter run (every second), then crash.
        std::thread::sleep(Duration::from_millis(1800));
        if round == 2 {
            s.child.kill().expect("kill");
            let _ = s.child.wait();
            let store =
                holdfast::persistence::snapshot::SnapshotStore::open(&s.data_dir.join("snapshots"))
                    .expect("open snapshots");
            store.corrupt_newest().expect("corrupt");
            drop(store);
        }
        s.kill_and_restart(cfg);
        for (id, status) in &ids {
            assert_eq!(
                get(&c, &s, &format!("/v1/reservations/{id}")).1["status"],
                *status,
                "round {round}"
            );
        }
        let total: i64 = (0..3)
            .flat_map(|k| (0..2).map(move |l| (k, l)))
            .map(|(k, l)| {
                get(&c, &s, &format!("/v1/inventory/S00{l}/A{k}")).1["reserved"]
                    .as_i64()
                    .expect("reserved")
            })
            .sum();
        assert_eq!(total, 2 * ids.len() as i64, "round {round}");
    }
    assert!(s.data_dir.join("snapshots").exists());
    // Every start opens a segment; snapshots let the covered ones go.
    assert!(
        segments(&journal_dir) < 5,
        "{} segments after 5 starts",
        segments(&journal_dir)
    );
}
