//! The cluster's faults on real processes (tests/common/cluster.rs: three
//! nodes, a `redis-server` of the test's own, each node through a proxy of
//! its own): kill -9 of the leader under load and its restart, SIGSTOP of
//! the leader past its lease then SIGCONT, the leader alone cut off from
//! Redis, Redis down then back empty. After each: every acknowledged hold
//! is found with its status through every node, `reserved` is the live
//! holds on every record and node, nothing is oversold, and a write
//! answered 503 never happened (sent again under its key, it is not an
//! answer replayed).

mod common;

use common::cluster::{get_retrying, reserve, Cluster};
use common::redis::Redis;
use common::{call, call_full, client};
use parking_lot::Mutex;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SKUS: usize = 4;
/// The hot SKU `A0`'s stock: sold out during the load, across the faults.
const HOT: i64 = 60;
const ON_HAND: i64 = 100_000;
const TTL_MS: u64 = 1_500;
const REPLICATED: &str = "durability = \"replicated\"";

/// What the clients saw.
#[derive(Default)]
struct Tally {
    /// Acknowledged holds: key → (id, sku).
    acked: BTreeMap<String, (String, String)>,
    /// Keys answered 503 (nothing done): must never be applied.
    refused: Vec<(String, String)>,
    /// Keys whose answer never came, or came 504: settled afterwards by
    /// sending them again under their key.
    unknown: Vec<(String, String)>,
    /// When each 201 was answered.
    answered: Vec<Instant>,
    /// Other answers (409 sold out is expected), by status.
    other: BTreeMap<u16, usize>,
}

/// Clients holding one unit each, under a key each, through every node
/// in turn (those `up` says), until `stop`.
fn load(
    cl: &Cluster,
    up: Arc<Mutex<Vec<bool>>>,
    stop: Arc<AtomicBool>,
    tally: Arc<Mutex<Tally>>,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..4)
        .map(|t| {
            let ports = cl.ports.clone();
            let (up, stop, tally) = (up.clone(), stop.clone(), tally.clone());
            std::thread::spawn(move || {
                let mut k = 0usize;
                while !stop.load(Ordering::Acquire) {
                    k += 1;
                    let n = (t + k) % 3;
                    if !up.lock()[n] {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                    let sku = format!("A{}", k % SKUS);
                    let key = format!("k{t}-{k}");
                    let url = format!("http://127.0.0.1:{}/v1/reservations", ports[n]);
                    let got = reserve(&url, &sku, 1, Some(&key));
                    let mut tl = tally.lock();
                    match got {
                        Some((201, b)) => {
                            let id = b["id"].as_str().expect("id").to_string();
                            tl.acked.insert(key, (id, sku));
                            tl.answered.push(Instant::now());
                        }
                        Some((503, _)) => tl.refused.push((key, sku)),
                        Some((504, _)) | None => tl.unknown.push((key, sku)),
                        Some((st, _)) => *tl.other.entry(st).or_default() += 1,
                    }
                }
            })
        })
        .collect()
}

/// The load's unknown outcomes sent again under their keys through node
/// `via` until answered: a hold made then (or the first, replayed) is
/// acknowledged; sold out is nothing.
fn settle(cl: &Cluster, via: usize, tally: &mut Tally) {
    for (key, sku) in std::mem::take(&mut tally.unknown) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let got = reserve(&cl.url(via, "/v1/reservations"), &sku, 1, Some(&key));
            match got {
                Some((201, b)) => {
                    let id = b["id"].as_str().expect("id").to_string();
                    tally.acked.insert(key, (id, sku));
                    break;
                }
                Some((409, _)) => break,
                other => {
                    assert!(Instant::now() < deadline, "{key}: {other:?}");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }
}

/// The checks every fault ends with (the cluster healed, `live` nodes).
fn check(cl: &Cluster, tally: &mut Tally) {
    let leader = cl.wait_leader();
    let c = client();
    // A write answered 503 never happened: its key is new to the leader.
    for (key, sku) in tally.refused.clone() {
        let (st, headers, b) = call_full(
            &c,
            "POST",
            &cl.url(leader, "/v1/reservations"),
            None,
            Some(&format!(
                r#"{{"lines":[{{"sku":"{sku}","qty":1,"location":"S000"}}],"ttl_s":3600}}"#
            )),
            &[("idempotency-key", &key)],
        );
        assert!(
            !headers.contains_key("idempotent-replayed"),
            "{key}, answered 503, was applied: {st} {b}"
        );
        // Held now, it counts among the live holds below.
        if st == 201 {
            let id = b["id"].as_str().expect("id").to_string();
            tally.acked.insert(key, (id, sku));
        }
    }
    cl.wait_copies_equal();
    // Every acknowledged hold, held, through every node.
    for (key, (id, _)) in &tally.acked {
        for n in cl.live() {
            let (st, got) = get_retrying(&cl.url(n, &format!("/v1/reservations/{id}")));
            assert_eq!(
                (st, got["status"].as_str()),
                (200, Some("held")),
                "{key} → {id} via n{}: {got}",
                n + 1
            );
        }
    }
    // `reserved` is the live holds, on every record and node; the hot SKU
    // never oversold.
    for i in 0..SKUS {
        let sku = format!("A{i}");
        let live = tally.acked.values().filter(|(_, s)| *s == sku).count() as i64;
        for n in cl.live() {
            let (st, rec) = get_retrying(&cl.url(n, &format!("/v1/inventory/S000/{sku}")));
            assert_eq!(st, 200, "{rec}");
            let (on_hand, reserved) = (rec["on_hand"].as_i64(), rec["reserved"].as_i64());
            assert_eq!(reserved, Some(live), "{sku} via n{}: {rec}", n + 1);
            assert!(reserved <= on_hand, "{sku} oversold via n{}: {rec}", n + 1);
        }
    }
}

/// `up` of node `i` set to `v`.
fn set_up(up: &Mutex<Vec<bool>>, i: usize, v: bool) {
    up.lock()[i] = v;
}

fn seed(cl: &Cluster, via: usize) {
    cl.seed(via, SKUS, ON_HAND);
    let (st, b) = call(
        &client(),
        "PUT",
        &cl.url(via, "/v1/inventory/S000/A0"),
        None,
        Some(&format!(r#"{{"on_hand":{HOT}}}"#)),
    );
    assert_eq!(st, 200, "{b}");
}

/// kill -9 of the leader under load: another node leads within 5 s, every
/// acknowledged hold survives; the old leader, restarted, follows.
#[test]
fn a_killed_leader_loses_no_acknowledged_hold() {
    let redis = Redis::start();
    let mut cl = Cluster::start(redis.port, REPLICATED, TTL_MS, "");
    let leader = cl.wait_leader();
    seed(&cl, leader);
    let up = Arc::new(Mutex::new(vec![true; 3]));
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let clients = load(&cl, up.clone(), stop.clone(), tally.clone());
    std::thread::sleep(Duration::from_millis(800));
    set_up(&up, leader, false);
    let killed_at = Instant::now();
    cl.kill(leader);
    let taker = cl.wait_leader_within(Duration::from_secs(10));
    let took = killed_at.elapsed();
    std::thread::sleep(Duration::from_millis(1_500));
    cl.launch(leader);
    set_up(&up, leader, true);
    std::thread::sleep(Duration::from_millis(1_000));
    stop.store(true, Ordering::Release);
    for c in clients {
        c.join().expect("client");
    }
    let mut tally = std::mem::take(&mut *tally.lock());
    let first_after = tally
        .answered
        .iter()
        .filter(|t| **t > killed_at)
        .min()
        .copied();
    settle(&cl, taker, &mut tally);
    assert!(took < Duration::from_secs(5), "takeover took {took:?}");
    let served_again = first_after.map(|t| t - killed_at);
    assert!(
        served_again.is_some_and(|d| d < Duration::from_secs(5)),
        "first hold after the kill: {served_again:?}"
    );
    assert!(tally.acked.len() > 20, "{} holds", tally.acked.len());
    check(&cl, &mut tally);
    assert_ne!(cl.wait_leader(), leader, "the restarted node follows");
}

/// SIGSTOP of the leader past its lease, then SIGCONT: another leads
/// meanwhile; the old one, resumed, answers nothing from its old state (a
/// hold the new leader made is never 404 there, a read never stale): it
/// forwards, or answers 503.
#[test]
fn a_paused_leader_answers_nothing_past_its_lease() {
    let redis = Redis::start();
    let cl = Cluster::start(redis.port, REPLICATED, TTL_MS, "");
    let leader = cl.wait_leader();
    seed(&cl, leader);
    let others: Vec<usize> = (0..3).filter(|n| *n != leader).collect();
    let up = Arc::new(Mutex::new(vec![true; 3]));
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let clients = load(&cl, up.clone(), stop.clone(), tally.clone());
    std::thread::sleep(Duration::from_millis(500));
    set_up(&up, leader, false);
    cl.signal(leader, "-STOP");
    // Another leads (the paused node's view cannot be asked).
    let deadline = Instant::now() + Duration::from_secs(10);
    let taker = loop {
        if let Some(n) = others.iter().find(|n| cl.view(**n)["role"] == "leader") {
            break *n;
        }
        assert!(Instant::now() < deadline, "nobody took the lead");
        std::thread::sleep(Duration::from_millis(25));
    };
    let (st, made) = reserve(
        &cl.url(taker, "/v1/reservations"),
        "A1",
        1,
        Some("made-new"),
    )
    .expect("answer");
    assert_eq!(st, 201, "{made}");
    let made_id = made["id"].as_str().expect("id").to_string();
    tally
        .lock()
        .acked
        .insert("made-new".into(), (made_id.clone(), "A1".into()));
    // Requests to the paused node wait in its socket; answered once it
    // resumes.
    let asked: Vec<std::thread::JoinHandle<(u16, Value)>> = (0..4)
        .map(|_| {
            let url = cl.url(leader, &format!("/v1/reservations/{made_id}"));
            std::thread::spawn(move || {
                let c = reqwest::blocking::Client::builder()
                    .timeout(Duration::from_secs(30))
                    .build()
                    .expect("client");
                let r = c.get(url).send().expect("answered");
                let st = r.status().as_u16();
                (st, r.json().unwrap_or(Value::Null))
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(3 * TTL_MS));
    cl.signal(leader, "-CONT");
    for a in asked {
        let (st, v) = a.join().expect("asked");
        assert!(
            (st == 200 && v["status"] == "held") || st == 503,
            "the resumed node answered from its old state: {st} {v}"
        );
    }
    set_up(&up, leader, true);
    std::thread::sleep(Duration::from_millis(1_000));
    stop.store(true, Ordering::Release);
    for c in clients {
        c.join().expect("client");
    }
    let mut tally = std::mem::take(&mut *tally.lock());
    settle(&cl, taker, &mut tally);
    check(&cl, &mut tally);
}

/// The leader alone cut off from Redis: a hold it takes then cannot be
/// appended and is not acknowledged (503, or 504: it cannot tell whether
/// Redis took it); another node leads. Healed, the old
/// leader follows, its copy cut back to what the stream took; made leader
/// again (the others killed), the refused hold is nowhere.
#[test]
fn a_write_redis_refused_never_comes_back() {
    let redis = Redis::start();
    let mut cl = Cluster::start(redis.port, REPLICATED, TTL_MS, "");
    let leader = cl.wait_leader();
    seed(&cl, leader);
    let mut tally = Tally::default();
    for k in 0..5 {
        let key = format!("before-{k}");
        let (st, b) =
            reserve(&cl.url(leader, "/v1/reservations"), "A1", 1, Some(&key)).expect("answer");
        assert_eq!(st, 201, "{b}");
        tally.acked.insert(
            key,
            (b["id"].as_str().expect("id").to_string(), "A1".into()),
        );
    }
    cl.wait_copies_equal();
    cl.cuts[leader].cut();
    let (st, b) = reserve(
        &cl.url(leader, "/v1/reservations"),
        "A1",
        1,
        Some("refused"),
    )
    .expect("answer");
    // Cut mid-connection, the leader cannot tell whether its append reached
    // Redis: 504 (or 503 when it could not even send it). Redis did not
    // take it: it must never come back.
    assert!(st == 503 || st == 504, "{st} {b}");
    tally.refused.push(("refused".into(), "A1".into()));
    // Another leads; the old one, cut off, does not.
    let others: Vec<usize> = (0..3).filter(|n| *n != leader).collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !others.iter().any(|n| cl.view(*n)["role"] == "leader") {
        assert!(Instant::now() < deadline, "nobody took the lead");
        std::thread::sleep(Duration::from_millis(25));
    }
    assert_eq!(cl.view(leader)["role"], "follower");
    cl.cuts[leader].heal();
    // Nothing written meanwhile: the stream ends where it did before the
    // refused write, which the old leader's journal had taken.
    let next = cl.wait_leader();
    assert_ne!(next, leader);
    for n in others {
        cl.kill(n);
    }
    assert_eq!(
        cl.wait_leader(),
        leader,
        "alone, the old leader leads again"
    );
    let (st, b) =
        reserve(&cl.url(leader, "/v1/reservations"), "A2", 1, Some("after")).expect("answer");
    assert_eq!(st, 201, "{b}");
    tally.acked.insert(
        "after".into(),
        (b["id"].as_str().expect("id").to_string(), "A2".into()),
    );
    check(&cl, &mut tally);
}

/// Redis down: the leader stops taking writes once its lease runs out
/// (503 with Retry-After, through every node), followers answer reads
/// from their copy with its staleness shown. Redis back empty: the nodes
/// fill it again from the longest copy, every acknowledged hold kept.
#[test]
fn with_redis_down_writes_stop_and_an_empty_redis_is_filled_again() {
    let mut redis = Redis::start();
    let cl = Cluster::start(redis.port, REPLICATED, TTL_MS, "");
    let leader = cl.wait_leader();
    seed(&cl, leader);
    let mut tally = Tally::default();
    for k in 0..10 {
        let key = format!("before-{k}");
        let (st, b) =
            reserve(&cl.url(k % 3, "/v1/reservations"), "A1", 1, Some(&key)).expect("answer");
        assert_eq!(st, 201, "{b}");
        tally.acked.insert(
            key,
            (b["id"].as_str().expect("id").to_string(), "A1".into()),
        );
    }
    cl.wait_copies_equal();
    redis.kill();
    std::thread::sleep(Duration::from_millis(TTL_MS + 500));
    let c = client();
    for n in 0..3 {
        let (st, headers, b) = call_full(
            &c,
            "POST",
            &cl.url(n, "/v1/reservations"),
            None,
            Some(r#"{"lines":[{"sku":"A1","qty":1,"location":"S000"}]}"#),
            &[],
        );
        assert_eq!(st, 503, "n{}: {b}", n + 1);
        assert!(headers.contains_key("retry-after"), "n{}", n + 1);
    }
    for n in (0..3).filter(|n| *n != leader) {
        let (st, headers, b) = call_full(
            &c,
            "GET",
            &cl.url(n, "/v1/inventory/S000/A1"),
            None,
            None,
            &[],
        );
        assert_eq!(
            (st, b["reserved"].as_i64()),
            (200, Some(10)),
            "n{}: {b}",
            n + 1
        );
        assert_eq!(
            headers.get("x-holdfast-read").map(|v| v.as_bytes()),
            Some(&b"follower"[..])
        );
        let stale: u64 = headers
            .get("x-holdfast-stale-ms")
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .expect("staleness shown");
        assert!(stale >= TTL_MS, "stale for {stale} ms");
    }
    redis.restart_empty();
    let (st, b) = {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let got = reserve(&cl.url(0, "/v1/reservations"), "A2", 1, Some("back"));
            match got {
                Some((201, b)) => break (201, b),
                other => {
                    assert!(Instant::now() < deadline, "not serving again: {other:?}");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    };
    assert_eq!(st, 201);
    tally.acked.insert(
        "back".into(),
        (b["id"].as_str().expect("id").to_string(), "A2".into()),
    );
    check(&cl, &mut tally);
}
