//! Three `holdfast serve --cluster` nodes and a `redis-server` of the
//! test's own (tests/common/cluster.rs): one leader writes, every node
//! serves every request (followers answer reads from their copy and
//! forward the rest), a new node starts from a published snapshot, the
//! stock feed is served by every node across a takeover. The faults (kill
//! -9, SIGSTOP, Redis cut or restarted) are in tests/cluster_faults.rs.

mod common;

use common::cluster::{get_retrying, reserve, Cluster};
use common::redis::Redis;
use common::ws::{connect, converge, next_json, records};
use common::{call, call_full, client};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const SKUS: usize = 8;
const REPLICATED: &str = "durability = \"replicated\"";

/// `GET url` (with `Cache-Control: no-cache` if `leader`): status, body,
/// and whether a follower's copy answered.
fn read(url: &str, leader: bool) -> (u16, Value, bool) {
    let h: &[(&str, &str)] = if leader {
        &[("cache-control", "no-cache")]
    } else {
        &[]
    };
    let (st, headers, v) = call_full(&client(), "GET", url, None, None, h);
    let follower = headers
        .get("x-holdfast-read")
        .is_some_and(|v| v == "follower");
    (st, v, follower)
}

/// `read` at a follower until its copy answers (fresh: it has read the
/// whole stream since the node's last forwarded write, a poll away).
fn read_copy(url: &str) -> (u16, Value, bool) {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let got = read(url, false);
        if got.2 || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Every route one node serves, the cluster serves through any node: the
/// leader as one node does, followers forwarding what they do not answer
/// from their copy (reads of stock records and availability, with
/// `x-holdfast-read: follower`; a client reads its own writes through one
/// node). `/v1/cluster` names the leader, its epoch and every node's copy.
#[test]
fn one_leader_writes_and_every_node_serves() {
    let redis = Redis::start();
    let cl = Cluster::start(redis.port, REPLICATED, 1500, "");
    let leader = cl.wait_leader();
    let (f1, f2) = ((leader + 1) % 3, (leader + 2) % 3);
    // Catalog and counts through a follower: forwarded whole.
    cl.seed(f1, SKUS, 100);
    let c = client();

    // A hold through every node; each read back through every node.
    let mut ids = Vec::new();
    for n in 0..3 {
        let (st, b) = reserve(&cl.url(n, "/v1/reservations"), "A0", 2, None).expect("answer");
        assert_eq!(st, 201, "n{}: {b}", n + 1);
        ids.push(b["id"].as_str().expect("id").to_string());
        // Read-your-writes through the node that took the write.
        let (st, rec, _) = read(&cl.url(n, "/v1/inventory/S000/A0"), false);
        assert_eq!(
            (st, rec["reserved"].as_i64()),
            (200, Some(2 * (n as i64 + 1))),
            "{rec}"
        );
    }
    for id in &ids {
        for n in 0..3 {
            let (st, v) = call(
                &c,
                "GET",
                &cl.url(n, &format!("/v1/reservations/{id}")),
                None,
                None,
            );
            assert_eq!(
                (st, v["status"].as_str()),
                (200, Some("held")),
                "{id} via n{}: {v}",
                n + 1
            );
        }
    }

    // Followers answer stock reads from their copy, as the leader would.
    let seq = cl.wait_copies_equal();
    assert!(seq > 0);
    let (st, from_leader, copy) = read(&cl.url(leader, "/v1/availability/A0"), false);
    assert_eq!((st, copy), (200, false), "{from_leader}");
    for f in [f1, f2] {
        let (st, v, copy) = read_copy(&cl.url(f, "/v1/availability/A0"));
        assert_eq!((st, copy), (200, true), "{v}");
        assert_eq!(v, from_leader);
        // Asked for the leader's answer: forwarded.
        let (st, v, copy) = read(&cl.url(f, "/v1/inventory/S000/A0"), true);
        assert_eq!(
            (st, copy, v["reserved"].as_i64()),
            (200, false, Some(6)),
            "{v}"
        );
    }

    // What one node answers, any node answers: a 404, a 405, a 422.
    for n in 0..3 {
        let (st, v) = call(&c, "GET", &cl.url(n, "/v1/reservations/r00"), None, None);
        assert_eq!(st, 404, "{v}");
        let (st, _) = call(&c, "DELETE", &cl.url(n, "/v1/skus/A0"), None, None);
        assert_eq!(st, 405);
        let (st, v) = call(&c, "POST", &cl.url(n, "/v1/reservations"), None, Some("{}"));
        assert_eq!(st, 422, "{v}");
    }

    // An order through a follower, read through the other; its holds are
    // the leader's.
    let body = json!({"id": "O-1", "lines": [{"sku": "A1", "qty": 3, "unit_price": "10.00"}],
        "delivery": {"type": "ship", "lat": 45.1, "lon": 9.1}, "payment": {"provider": "sandbox"}});
    let (st, o) = call(
        &c,
        "POST",
        &cl.url(f1, "/v1/orders"),
        None,
        Some(&body.to_string()),
    );
    assert_eq!(st, 201, "{o}");
    let (st, got) = call(&c, "GET", &cl.url(f2, "/v1/orders/O-1"), None, None);
    assert_eq!((st, &got["status"]), (200, &o["status"]), "{got}");
    let (st, rec) = call(
        &c,
        "GET",
        &cl.url(leader, "/v1/inventory/S000/A1"),
        None,
        None,
    );
    assert_eq!((st, rec["reserved"].as_i64()), (200, Some(3)), "{rec}");

    // Reservations and orders, too, from a follower's copy once it has
    // them; what it does not hold, the leader answers.
    cl.wait_copies_equal();
    for f in [f1, f2] {
        let (st, v, copy) = read_copy(&cl.url(f, &format!("/v1/reservations/{}", ids[0])));
        assert_eq!(
            (st, copy, v["status"].as_str()),
            (200, true, Some("held")),
            "{v}"
        );
        let (st, v, copy) = read_copy(&cl.url(f, "/v1/orders/O-1"));
        assert_eq!((st, copy, &v), (200, true, &got), "{v}");
        let (st, v, copy) = read(&cl.url(f, "/v1/orders/O-404"), false);
        assert_eq!((st, copy), (404, false), "{v}");
    }

    // The cluster's view, from every node.
    let name = format!("n{}", leader + 1);
    for n in 0..3 {
        let v = cl.view(n);
        let role = if n == leader { "leader" } else { "follower" };
        assert_eq!(v["role"], role, "{v}");
        assert_eq!(v["leader"]["node"], name.as_str(), "{v}");
        assert!(v["epoch"].as_u64() >= Some(1), "{v}");
        let nodes = v["nodes"].as_array().expect("nodes");
        assert_eq!(nodes.len(), 3, "{v}");
        assert!(
            nodes.iter().all(|x| x["applied_seq"].as_u64().is_some()),
            "{v}"
        );
        let (st, _) = call(&c, "POST", &cl.url(n, "/v1/cluster"), None, None);
        assert_eq!(st, 405);
    }
    let m = client()
        .get(cl.url(f2, "/metrics"))
        .send()
        .and_then(|r| r.text())
        .expect("metrics");
    assert!(
        m.contains("holdfast_cluster_replication_lag_seconds_count"),
        "{m}"
    );
    assert!(m.contains("holdfast_cluster_forwarded_total"), "{m}");
}

/// The leader publishes snapshots and trims the stream behind them; a node
/// that joins with nothing starts from the snapshot and the stream's tail,
/// and, left alone, leads with every hold.
#[test]
fn a_new_node_starts_from_published_snapshots() {
    let redis = Redis::start();
    let mut cl = Cluster::new(
        redis.port,
        REPLICATED,
        1500,
        "[snapshot]\nevery_records = 50\nevery_s = 1\n",
    );
    cl.launch(0);
    cl.launch(1);
    let leader = cl.wait_leader();
    cl.seed(leader, SKUS, 1_000);
    let mut held = Vec::new();
    for k in 0..400 {
        let (st, b) = reserve(
            &cl.url(k % 2, "/v1/reservations"),
            &format!("A{}", k % SKUS),
            1,
            None,
        )
        .expect("answer");
        assert_eq!(st, 201, "{b}");
        held.push(b["id"].as_str().expect("id").to_string());
    }
    let number = |cmd: &str| resp_number(&redis.command(cmd));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let published = number("HGET holdfast:t:snapshot:0 seq");
        let last = number("GET holdfast:t:seq:0");
        let len = number("XLEN holdfast:t:shard:0");
        if published > 0 && len < last {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "published {published}, last {last}, stream length {len}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    cl.launch(2);
    let last = number("GET holdfast:t:seq:0");
    let deadline = Instant::now() + Duration::from_secs(30);
    while cl.view(2)["applied_seq"].as_u64() < Some(last) {
        assert!(Instant::now() < deadline, "n3 behind: {}", cl.view(2));
        std::thread::sleep(Duration::from_millis(100));
    }
    cl.kill(0);
    cl.kill(1);
    assert_eq!(cl.wait_leader(), 2);
    for id in &held {
        let (st, got) = get_retrying(&cl.url(2, &format!("/v1/reservations/{id}")));
        assert_eq!(
            (st, got["status"].as_str()),
            (200, Some("held")),
            "{id}: {got}"
        );
    }
    for i in 0..SKUS {
        let (st, b) = get_retrying(&cl.url(2, &format!("/v1/inventory/S000/A{i}")));
        let reserved = held.len() / SKUS;
        assert_eq!(
            (st, b["reserved"].as_u64()),
            (200, Some(reserved as u64)),
            "A{i}: {b}"
        );
    }
}

/// An integer from a RESP answer: `:n`, or a bulk string holding one (0
/// for nil).
fn resp_number(answer: &str) -> u64 {
    let mut lines = answer.lines();
    match lines.next() {
        Some(l) if l.starts_with(':') => l[1..].parse().unwrap_or(0),
        Some(l) if l.starts_with('$') => lines.next().and_then(|v| v.parse().ok()).unwrap_or(0),
        _ => 0,
    }
}

/// The stock feed on every node: a location's session and a SKU's, each
/// ending at the leader's records; the leader killed, the sessions on the
/// survivors go on (the one that took the lead from a fresh snapshot: its
/// feed now comes from its engine).
#[test]
fn every_node_feeds_its_sessions_across_a_takeover() {
    let redis = Redis::start();
    let mut cl = Cluster::start(redis.port, REPLICATED, 1500, "");
    let leader = cl.wait_leader();
    cl.seed(leader, SKUS, 1_000);
    cl.wait_copies_equal();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let follower = (leader + 1) % 3;
    let mut sessions = rt.block_on(async {
        let mut v = Vec::new();
        for (n, query) in (0..3)
            .map(|n| (n, "location=S000"))
            .chain([(follower, "sku=A3")])
        {
            let mut ws = connect(cl.ports[n], query, "any", true)
                .await
                .unwrap_or_else(|st| panic!("n{}: {query} refused with {st}", n + 1));
            let m = next_json(&mut ws, Duration::from_secs(5))
                .await
                .expect("a snapshot");
            assert_eq!(m["type"], "snapshot", "{m}");
            let state = records(&m);
            let expected = if query.starts_with("sku") { 1 } else { SKUS };
            assert_eq!(state.len(), expected, "n{}: {m}", n + 1);
            v.push((n, ws, state));
        }
        v
    });
    rt.block_on(async {
        assert_eq!(
            connect(cl.ports[follower], "location=S999", "any", true)
                .await
                .err(),
            Some(404)
        );
    });
    let hold_everywhere = |cl: &Cluster, nodes: &[usize]| {
        for i in 0..SKUS {
            let n = nodes[i % nodes.len()];
            let (st, b) =
                reserve(&cl.url(n, "/v1/reservations"), &format!("A{i}"), 1, None).expect("answer");
            assert_eq!(st, 201, "{b}");
        }
    };
    hold_everywhere(&cl, &[0, 1, 2]);
    let want = |reserved: i64| -> BTreeMap<String, (i64, i64)> {
        (0..SKUS)
            .map(|i| (format!("A{i}@S000"), (1_000, reserved)))
            .collect()
    };
    let only = |state: &BTreeMap<String, (i64, i64, i64)>, all: &BTreeMap<String, (i64, i64)>| {
        all.iter()
            .filter(|(k, _)| state.contains_key(*k))
            .map(|(k, v)| (k.clone(), *v))
            .collect::<BTreeMap<_, _>>()
    };
    rt.block_on(async {
        for (n, ws, state) in &mut sessions {
            let w = only(state, &want(1));
            let (changes, _) = converge(ws, state, &w, Duration::from_secs(10)).await;
            assert!(changes > 0, "n{}: no changes read", *n + 1);
        }
    });
    cl.kill(leader);
    sessions.retain(|(n, _, _)| *n != leader);
    let taker = cl.wait_leader();
    let survivors: Vec<usize> = (0..3).filter(|n| *n != leader).collect();
    hold_everywhere(&cl, &survivors);
    rt.block_on(async {
        for (n, ws, state) in &mut sessions {
            let w = only(state, &want(2));
            let (_, snapshots) = converge(ws, state, &w, Duration::from_secs(10)).await;
            if *n == taker {
                assert!(
                    snapshots > 0,
                    "n{}: took the lead, no fresh snapshot",
                    *n + 1
                );
            }
        }
    });
}
