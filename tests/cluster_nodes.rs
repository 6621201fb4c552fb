//! Three `holdfast serve --cluster` nodes on 127.0.0.1 and a
//! `redis-server` of the test's own: reservations through any node (served
//! by the shard's owner, forwarded otherwise); kill -9 of a shard's owner
//! under a write load: a standby takes the shard over within 5 s, no
//! acknowledged reservation is lost (`replicated`), nothing is oversold;
//! the old owner, restarted, follows and does not write the shard.

mod common;

use common::redis::Redis;
use common::ws::{connect, converge, next_json, records, Socket};
use common::{call, client, free_port, Server};
use holdfast::cluster::ClusterConfig;
use parking_lot::Mutex;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SKUS: usize = 16;
const ON_HAND: i64 = 100_000;
/// The hot SKU's stock: sold out during the run, across the failover.
const HOT_ON_HAND: i64 = 25;

struct Cluster {
    file: std::path::PathBuf,
    config: ClusterConfig,
    nodes: Vec<Option<Server>>,
    ports: Vec<u16>,
    /// Each node's holdfast.toml.
    node_config: String,
    _tmp: tempfile::TempDir,
}

impl Cluster {
    /// Three nodes (each with holdfast.toml `node_config`), all started.
    fn start(redis: &Redis, node_config: &str) -> Cluster {
        let mut c = Cluster::new(redis, node_config);
        for i in 0..3 {
            c.nodes[i] = Some(c.launch(i));
        }
        c
    }

    /// Three nodes (each with holdfast.toml `node_config`), none started.
    fn new(redis: &Redis, node_config: &str) -> Cluster {
        Cluster::replicating(redis, "durability = \"replicated\"", node_config)
    }

    /// `new`, with cluster.toml's `[replication]` section `replication`.
    fn replicating(redis: &Redis, replication: &str, node_config: &str) -> Cluster {
        Cluster::leased(redis, replication, 1500, node_config)
    }

    /// `replicating`, with leases of `ttl_ms` (renewed every fifth).
    fn leased(redis: &Redis, replication: &str, ttl_ms: u64, node_config: &str) -> Cluster {
        let tmp = tempfile::tempdir().expect("tmp");
        let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let mut text = format!(
            "cluster = \"t\"\nshards = 4\nredis_url = \"{}\"\n\
             [replication]\n{replication}\n\
             [lease]\nttl_ms = {ttl_ms}\nrenew_ms = {}\n",
            redis.url(),
            ttl_ms / 5
        );
        for (i, p) in ports.iter().enumerate() {
            text.push_str(&format!(
                "[[nodes]]\nid = \"n{}\"\nhttp = \"127.0.0.1:{p}\"\ndata_dir = \"{}\"\n",
                i + 1,
                tmp.path().join(format!("n{}", i + 1)).display()
            ));
        }
        let file = tmp.path().join("cluster.toml");
        std::fs::write(&file, &text).expect("cluster.toml");
        let config = ClusterConfig::parse(&text).expect("valid");
        Cluster {
            file,
            config,
            nodes: vec![None, None, None],
            ports,
            node_config: node_config.to_string(),
            _tmp: tmp,
        }
    }

    fn launch(&self, i: usize) -> Server {
        let dir = self.config.nodes[i].data_dir.clone();
        Server::start_node(
            &self.file,
            &format!("n{}", i + 1),
            self.ports[i],
            &dir,
            &self.node_config,
        )
    }

    fn url(&self, i: usize, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.ports[i])
    }

    /// Node `i`'s view: per shard, (owner, epoch, owned here).
    fn view(&self, i: usize) -> Vec<(Option<String>, u64, bool)> {
        let (st, v) = call(&client(), "GET", &self.url(i, "/v1/cluster"), None, None);
        assert_eq!(st, 200, "{v}");
        v["shards"]
            .as_array()
            .expect("shards")
            .iter()
            .map(|s| {
                (
                    s["owner"].as_str().map(String::from),
                    s["epoch"].as_u64().unwrap_or(0),
                    s["owned_here"].as_bool().unwrap_or(false),
                )
            })
            .collect()
    }

    /// Waits until every shard is served by some live node and every live
    /// node knows it: a node still naming a dead owner (its lease not yet
    /// seen to lapse) answers 503 for the shard, as it should, so a test
    /// writing through every node waits for their views to agree.
    fn wait_served(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let live: Vec<usize> = (0..3).filter(|i| self.nodes[*i].is_some()).collect();
        loop {
            let views: Vec<_> = live.iter().map(|i| (*i, self.view(*i))).collect();
            let agreed: Vec<bool> = (0..self.config.shards as usize)
                .map(|s| {
                    let Some((i, v)) = views.iter().find(|(_, v)| v[s].2) else {
                        return false;
                    };
                    let owner = Some(format!("n{}", i + 1));
                    views
                        .iter()
                        .all(|(_, w)| w[s].0 == owner && w[s].1 == v[s].1)
                })
                .collect();
            if agreed.iter().all(|x| *x) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "shards not served, or their owner not known on every node: {agreed:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The catalog through node 0, the counts (`on_hand(i)` of `A{i}` at
    /// `S000`) through node 1: split by shard.
    fn seed(&self, on_hand: &dyn Fn(usize) -> i64) {
        let c = client();
        for i in 0..SKUS {
            let (st, b) = call(
                &c,
                "PUT",
                &self.url(0, &format!("/v1/skus/A{i}")),
                None,
                Some(r#"{"name":"x"}"#),
            );
            assert_eq!(st, 200, "{b}");
        }
        let (st, b) = call(
            &c,
            "PUT",
            &self.url(0, "/v1/locations/S000"),
            None,
            Some(r#"{"name":"s","kind":"store","lat":45.0,"lon":9.0}"#),
        );
        assert_eq!(st, 200, "{b}");
        let items: Vec<Value> = (0..SKUS)
            .map(|i| serde_json::json!({"location": "S000", "sku": format!("A{i}"), "on_hand": on_hand(i)}))
            .collect();
        let (st, b) = call(
            &c,
            "POST",
            &self.url(1, "/v1/inventory/batch"),
            None,
            Some(&serde_json::json!({ "items": items }).to_string()),
        );
        assert_eq!((st, b["applied"].as_u64()), (200, Some(SKUS as u64)), "{b}");
    }

    /// After Redis came back: a hold of one `A1` through node 0 once the
    /// cluster serves again (503 until then), and every shard served. Its id.
    fn hold_when_back(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (st, b) = reserve(&self.url(0, "/v1/reservations"), "A1", 1).expect("reserve");
            if st == 201 {
                self.wait_served();
                return b["id"].as_str().expect("id").to_string();
            }
            assert_eq!(st, 503, "{b}");
            assert!(Instant::now() < deadline, "not serving again: {st}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Every reservation of `ids` is read as held through every node.
    fn expect_held_everywhere<'a>(&self, ids: impl Iterator<Item = &'a String>) {
        for id in ids {
            for n in 0..3 {
                let (st, got) = get_retrying(&self.url(n, &format!("/v1/reservations/{id}")));
                assert_eq!(
                    (st, &got["status"]),
                    (200, &Value::from("held")),
                    "{id} via n{n}: {got}"
                );
            }
        }
    }

    /// Waits until every node's copy of every shard ends at the same
    /// record (the streams hold them all).
    fn wait_copies_equal(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        'synced: loop {
            let views: Vec<Vec<Value>> = (0..3)
                .map(|n| {
                    let (_, v) = call(&client(), "GET", &self.url(n, "/v1/cluster"), None, None);
                    v["shards"].as_array().expect("shards").clone()
                })
                .collect();
            for s in 0..self.config.shards as usize {
                let seqs: Vec<u64> = views
                    .iter()
                    .map(|v| v[s]["applied_seq"].as_u64().unwrap_or(0))
                    .collect();
                if seqs.iter().any(|x| *x != seqs[0]) || seqs[0] == 0 {
                    assert!(Instant::now() < deadline, "shard {s}: copies at {seqs:?}");
                    std::thread::sleep(Duration::from_millis(100));
                    continue 'synced;
                }
            }
            return;
        }
    }

    /// The node (index) that serves `shard` now.
    fn owner_of(&self, shard: u32) -> usize {
        (0..3)
            .filter(|i| self.nodes[*i].is_some())
            .find(|i| self.view(*i)[shard as usize].2)
            .expect("an owner")
    }
}

fn reserve(url: &str, sku: &str, qty: u32) -> Result<(u16, Value), reqwest::Error> {
    reserve_keyed(url, sku, qty, None)
}

/// A hold of `qty` of `sku` at S000, with an `Idempotency-Key` if given.
fn reserve_keyed(
    url: &str,
    sku: &str,
    qty: u32,
    key: Option<&str>,
) -> Result<(u16, Value), reqwest::Error> {
    let c = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let mut req = c.post(url).header("content-type", "application/json");
    if let Some(key) = key {
        req = req.header("idempotency-key", key);
    }
    let r = req
        .body(format!(
            r#"{{"lines":[{{"sku":"{sku}","qty":{qty},"location":"S000"}}],"ttl_s":3600}}"#
        ))
        .send()?;
    let st = r.status().as_u16();
    Ok((st, r.json().unwrap_or(Value::Null)))
}

/// GET, retried while the answer is 503 (a shard changing hands, as the
/// answer's Retry-After says) for up to 20 s.
fn get_retrying(url: &str) -> (u16, Value) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (st, v) = call(&client(), "GET", url, None, None);
        if st != 503 || Instant::now() > deadline {
            return (st, v);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[derive(Default)]
struct Tally {
    /// Acknowledged holds: (id, sku).
    acked: Vec<(String, String)>,
    /// Per SKU: requests whose answer never came (the node died under
    /// them, or a node forwarding them answered 504 `outcome_unknown`):
    /// they may or may not have been held.
    unknown: HashMap<String, i64>,
    /// (key, sku) of the keyed requests whose answer never came: sent
    /// again under their key once the shard is served, as a client would.
    resend: Vec<(String, String)>,
    /// Keyed requests a node answered 504: it lost the owner's answer and
    /// could not settle it by sending the request again under its key.
    keyed_unsettled: usize,
    /// Per SKU: the details of its 503s (nothing held), for a failure's
    /// message.
    refused: HashMap<String, Vec<String>>,
    /// (sku, sent, answered) of every 201.
    times: Vec<(String, Instant, Instant)>,
}

/// A node forwarding a write whose owner goes away before answering
/// never answers 503 (nothing done) for it: a keyed write is sent again
/// under its key to the shard's next owner and held once, a PUT of a
/// count sent again as it is; a keyless hold is answered 504
/// `outcome_unknown`.
#[test]
fn a_forwarded_write_whose_answer_is_lost_is_settled() {
    let redis = Redis::start();
    let mut cl = Cluster::start(&redis, "");
    cl.wait_served();
    cl.seed(&|_| ON_HAND);
    let shard = cl.config.shard_of("A0");
    let victim = cl.owner_of(shard);
    let via = (0..3).find(|i| *i != victim).expect("another node");
    let url = cl.url(via, "/v1/reservations");
    // The owner stopped: the forwarded requests wait in its sockets.
    let mut dead = cl.nodes[victim].take().expect("running");
    let stopped = std::process::Command::new("kill")
        .args(["-STOP", &dead.child.id().to_string()])
        .status()
        .expect("kill -STOP");
    assert!(stopped.success());
    let keyed = {
        let url = url.clone();
        std::thread::spawn(move || reserve_keyed(&url, "A0", 2, Some("lost-1")))
    };
    let keyless = {
        let url = url.clone();
        std::thread::spawn(move || reserve(&url, "A0", 3))
    };
    let count = {
        let url = cl.url(via, "/v1/inventory/S000/A0");
        std::thread::spawn(move || call(&client(), "PUT", &url, None, Some(r#"{"on_hand": 777}"#)))
    };
    std::thread::sleep(Duration::from_millis(500));
    // Killed with both unanswered: their connections are reset.
    dead.child.kill().expect("kill -9");
    let _ = dead.child.wait();
    std::mem::forget(dead); // its data dir is the cluster's; Drop would only kill again
    let (st, first) = keyed.join().expect("keyed").expect("answered");
    assert_eq!(st, 201, "{first}");
    let (st, b) = keyless.join().expect("keyless").expect("answered");
    assert_eq!(
        (st, &b["code"]),
        (504, &Value::from("outcome_unknown")),
        "{b}"
    );
    // A count is the value itself: sent again as it was.
    let (st, b) = count.join().expect("count");
    assert_eq!((st, b["on_hand"].as_i64()), (200, Some(777)), "{b}");
    // The client sends the keyed one again: the same hold answers.
    let (st, again) = reserve_keyed(&url, "A0", 2, Some("lost-1")).expect("again");
    assert_eq!((st, &again["id"]), (201, &first["id"]), "{again}");
    // Held once; the keyless one never reached the stopped owner's engine.
    let (st, r, _) = read(&cl.url(via, "/v1/inventory/S000/A0"), true);
    assert_eq!((st, r["reserved"].as_i64()), (200, Some(2)), "{r}");
}

#[test]
fn any_node_serves_and_a_killed_owner_loses_nothing() {
    let redis = Redis::start();
    let mut cl = Cluster::start(&redis, "");
    cl.wait_served();
    let c = client();

    // The hot SKU: another of A0's shard, with little stock.
    let shards: Vec<u32> = (0..SKUS)
        .map(|i| cl.config.shard_of(&format!("A{i}")))
        .collect();
    let hot = (1..SKUS)
        .find(|i| shards[*i] == shards[0])
        .expect("two SKUs in one shard");
    let on_hand = |i: usize| if i == hot { HOT_ON_HAND } else { ON_HAND };
    // Catalog through one node, counts through another, reads through the
    // third (the owners' answers: a follower's may be a moment behind).
    cl.seed(&on_hand);
    for i in 0..SKUS {
        let (st, b, _) = read(&cl.url(2, &format!("/v1/inventory/S000/A{i}")), true);
        assert_eq!((st, b["on_hand"].as_i64()), (200, Some(on_hand(i))), "{b}");
    }
    // The node's view is described and measured.
    let (_, doc) = call(&c, "GET", &cl.url(1, "/v1/openapi.json"), None, None);
    assert!(doc["paths"]["/v1/cluster"]["get"].is_object());
    // The node's own resources are read only.
    for path in ["/healthz", "/metrics", "/v1/openapi.json", "/v1/cluster"] {
        let (st, h, v) = common::call_full(&c, "DELETE", &cl.url(1, path), None, None, &[]);
        let allow = h.get("allow").and_then(|a| a.to_str().ok());
        assert_eq!((st, allow), (405, Some("GET, HEAD")), "{path}: {v}");
    }
    let m = c
        .get(cl.url(2, "/metrics"))
        .send()
        .expect("metrics")
        .text()
        .expect("text");
    assert!(m.contains("holdfast_cluster_owned_shards "), "{m}");
    assert!(
        m.contains("holdfast_cluster_shard_epoch{shard=\"0\"} "),
        "{m}"
    );

    // A reservation through each node, read back through the others.
    for n in 0..3 {
        let (st, b) = reserve(&cl.url(n, "/v1/reservations"), "A0", 1).expect("reserve");
        assert_eq!(st, 201, "{b}");
        let id = b["id"].as_str().expect("id");
        assert!(id.starts_with(&format!("{}.", shards[0])), "{id}");
        for m in 0..3 {
            expect_status("GET", &cl.url(m, &format!("/v1/reservations/{id}")), "held");
        }
    }

    // Load through every node; then kill -9 the owner of A0's shard.
    let victim_shard = shards[0];
    let victim = cl.owner_of(victim_shard);
    let tally = Arc::new(Mutex::new(Tally::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..4usize {
        let (tally, stop) = (tally.clone(), stop.clone());
        let urls: Vec<String> = (0..3).map(|n| cl.url(n, "/v1/reservations")).collect();
        workers.push(std::thread::spawn(move || {
            let mut k = w;
            while !stop.load(Ordering::Relaxed) {
                k += 1;
                // The hot SKU gets a share of its own.
                let sku = if k % 4 == 0 {
                    format!("A{hot}")
                } else {
                    format!("A{}", k % SKUS)
                };
                let node = k % 3;
                // Half the workers send an Idempotency-Key, as checkouts do.
                let key = (w < 2).then(|| format!("w{w}-{k}"));
                let sent = Instant::now();
                let unknown = |t: &mut Tally| match &key {
                    Some(key) => t.resend.push((key.clone(), sku.clone())),
                    None => *t.unknown.entry(sku.clone()).or_default() += 1,
                };
                match reserve_keyed(&urls[node], &sku, 1, key.as_deref()) {
                    Ok((201, b)) => {
                        let id = b["id"].as_str().expect("id").to_string();
                        let mut t = tally.lock();
                        t.times.push((sku.clone(), sent, Instant::now()));
                        t.acked.push((id, sku));
                    }
                    Ok((409, _)) => {}
                    Ok((503, b)) => {
                        let why = b["detail"].as_str().unwrap_or("").to_string();
                        tally.lock().refused.entry(sku).or_default().push(why);
                    }
                    Ok((504, b)) => {
                        assert_eq!(b["code"], "outcome_unknown", "{b}");
                        let mut t = tally.lock();
                        t.keyed_unsettled += usize::from(key.is_some());
                        unknown(&mut t);
                    }
                    Ok((st, b)) => panic!("unexpected {st}: {b}"),
                    Err(e) if e.is_connect() => {} // the dead node: never reached it
                    Err(_) => unknown(&mut tally.lock()),
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }));
    }
    std::thread::sleep(Duration::from_millis(800));
    let killed_at = Instant::now();
    let mut dead = cl.nodes[victim].take().expect("running");
    dead.child.kill().expect("kill -9");
    let _ = dead.child.wait();
    std::mem::forget(dead); // its data dir is the cluster's; Drop would only kill again
    std::thread::sleep(Duration::from_secs(7));
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().expect("worker");
    }
    let mut t = tally.lock();

    // A standby took the shard within 5 s: a hold of one of its SKUs,
    // asked for after the kill (so not by the dead process), was
    // acknowledged that soon after it.
    let back = t
        .times
        .iter()
        .filter(|(sku, sent, _)| *sent > killed_at && cl.config.shard_of(sku) == victim_shard)
        .map(|(_, _, answered)| answered.duration_since(killed_at))
        .min()
        .expect("the shard served again");
    eprintln!(
        "{} holds acknowledged, {} answers lost with the node; shard {victim_shard} served again {back:?} after the kill",
        t.acked.len(),
        t.unknown.values().sum::<i64>()
    );
    assert!(back < Duration::from_secs(5), "took over after {back:?}");
    cl.wait_served();
    let new_owner = cl.owner_of(victim_shard);
    assert_ne!(new_owner, victim);
    let (_, _, here) = &cl.view(new_owner)[victim_shard as usize];
    assert!(here);
    let live = (0..3).find(|i| *i != victim).expect("a live node");
    // A node that lost the owner's answer to a keyed write sent it again
    // under its key within the takeover: none of those was left unknown.
    assert_eq!(t.keyed_unsettled, 0, "keyed writes left unsettled");
    // The keyed requests whose answer never came, sent again under their
    // keys: each answers the first answer (the key came back with the hold
    // on the new owner) or holds now; never twice.
    let resend = std::mem::take(&mut t.resend);
    eprintln!("{} keyed requests sent again", resend.len());
    for (key, sku) in resend {
        match reserve_keyed(&cl.url(live, "/v1/reservations"), &sku, 1, Some(&key)) {
            Ok((201, b)) => t.acked.push((b["id"].as_str().expect("id").into(), sku)),
            Ok((409, b)) => assert_eq!(b["code"], "insufficient_stock", "{b}"),
            other => panic!("{key} sent again: {other:?}"),
        }
    }

    // Nothing acknowledged is lost; nothing is oversold.
    let mut acked_per_sku: HashMap<String, i64> = HashMap::new();
    for (id, sku) in &t.acked {
        let (st, got) = call(
            &c,
            "GET",
            &cl.url(live, &format!("/v1/reservations/{id}")),
            None,
            None,
        );
        assert_eq!(
            (st, &got["status"]),
            (200, &Value::from("held")),
            "{id}: {got}"
        );
        *acked_per_sku.entry(sku.clone()).or_default() += 1;
    }
    assert!(
        t.acked
            .iter()
            .any(|(_, sku)| cl.config.shard_of(sku) == victim_shard),
        "the victim's shard was written"
    );
    for i in 0..SKUS {
        let sku = format!("A{i}");
        // The owner's answer: every acknowledged hold in it.
        let (st, r, _) = read(&cl.url(live, &format!("/v1/inventory/S000/{sku}")), true);
        assert_eq!(st, 200, "{r}");
        let reserved = r["reserved"].as_i64().expect("reserved");
        // The three first holds were of A0.
        let acked = acked_per_sku.get(&sku).copied().unwrap_or(0) + if i == 0 { 3 } else { 0 };
        let unknown = t.unknown.get(&sku).copied().unwrap_or(0);
        assert!(
            reserved >= acked && reserved <= acked + unknown,
            "{sku}: reserved {reserved}, acknowledged {acked}, unknown {unknown}; refused with 503: {:?}",
            t.refused.get(&sku)
        );
        assert!(reserved <= on_hand(i), "{sku} oversold: {r}");
        assert_eq!(r["on_hand"].as_i64(), Some(on_hand(i)));
        if i == hot {
            assert_eq!(
                reserved, HOT_ON_HAND,
                "the hot SKU sold out across the failover"
            );
        }
    }
    drop(t);

    // The old owner restarts: it follows (the shard is the new owner's, at
    // a higher epoch) and answers through the owner.
    let restarted = cl.launch(victim);
    cl.nodes[victim] = Some(restarted);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v = cl.view(victim);
        let (owner, epoch, here) = &v[victim_shard as usize];
        if owner.is_some() {
            assert!(!here, "the restarted node took its old shard back: {v:?}");
            assert!(*epoch >= 2, "{v:?}");
            break;
        }
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(50));
    }
    let (st, b) = reserve(&cl.url(victim, "/v1/reservations"), "A0", 1).expect("reserve");
    assert_eq!(st, 201, "{b}");
    let id = b["id"].as_str().expect("id").to_string();
    expect_status(
        "GET",
        &cl.url(new_owner, &format!("/v1/reservations/{id}")),
        "held",
    );
    assert!(Path::new(&cl.config.nodes[victim].data_dir)
        .join(format!("shard-{victim_shard}"))
        .exists());
}

#[test]
fn with_redis_down_writes_are_refused_and_an_empty_redis_is_filled_again() {
    let mut redis = Redis::start();
    // Snapshots often: when Redis comes back empty, the owners' copies
    // hold part of their shards as snapshots only, and start the streams
    // again from them.
    let cl = Cluster::start(&redis, "[snapshot]\nevery_records = 5\nevery_s = 1\n");
    cl.wait_served();
    cl.seed(&|_| 100);
    let mut held = Vec::new();
    for i in 0..SKUS {
        let (st, b) =
            reserve(&cl.url(i % 3, "/v1/reservations"), &format!("A{i}"), 2).expect("reserve");
        assert_eq!(st, 201, "{b}");
        held.push(b["id"].as_str().expect("id").to_string());
    }

    // Redis goes away: within a lease's time every write is refused with
    // 503 unavailable (durability "replicated", redis_down "refuse").
    redis.kill();
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut refused = 0;
    let mut k = 0;
    while refused < 2 * SKUS {
        assert!(
            Instant::now() < deadline,
            "writes still taken without Redis"
        );
        k += 1;
        let i = k % SKUS;
        let (st, b) =
            reserve(&cl.url(k % 3, "/v1/reservations"), &format!("A{i}"), 1).expect("reserve");
        match st {
            503 => {
                assert_eq!(b["code"], "unavailable", "{b}");
                refused += 1;
            }
            // Still within the lease and Redis's answer came before it
            // died: acknowledged, so it must be kept (checked below).
            201 => {
                refused = 0;
                held.push(b["id"].as_str().expect("id").to_string());
            }
            _ => panic!("{st}: {b}"),
        }
    }

    // Redis comes back empty (as one that lost everything): the nodes'
    // copies are longer than the streams; the new owners ship them again,
    // and every acknowledged hold is there.
    redis.restart_empty();
    held.push(cl.hold_when_back());
    cl.expect_held_everywhere(held.iter());
    // The streams hold every shard's records again.
    cl.wait_copies_equal();
}

/// `method url` answers 200 with a reservation in `status`.
fn expect_status(method: &str, url: &str, status: &str) -> Value {
    let (st, got) = call(&client(), method, url, None, None);
    assert_eq!(
        (st, &got["status"]),
        (200, &Value::from(status)),
        "{method} {url}: {got}"
    );
    got
}

/// Posts a cart of `(sku, qty)` lines at S000 through node `n`.
fn cart(cl: &Cluster, n: usize, lines: &[(&str, i64)], key: Option<&str>) -> (u16, Value) {
    let lines: Vec<Value> = lines
        .iter()
        .map(|(sku, qty)| serde_json::json!({"sku": sku, "qty": qty, "location": "S000"}))
        .collect();
    let body = serde_json::json!({ "lines": lines, "ttl_s": 600 }).to_string();
    let headers: Vec<(&str, &str)> = key.map(|k| ("Idempotency-Key", k)).into_iter().collect();
    let (st, _, v) = common::call_full(
        &client(),
        "POST",
        &cl.url(n, "/v1/reservations"),
        None,
        Some(&body),
        &headers,
    );
    (st, v)
}

#[test]
fn a_cart_across_nodes_is_all_or_nothing() {
    let redis = Redis::start();
    let cl = Cluster::start(&redis, "");
    cl.wait_served();
    cl.seed(&|_| 10);
    let c = client();
    // Two SKUs whose shards two different nodes own.
    let skus: Vec<String> = (0..SKUS).map(|i| format!("A{i}")).collect();
    let owner = |sku: &str| cl.owner_of(cl.config.shard_of(sku));
    let (x, y) = skus
        .iter()
        .flat_map(|a| skus.iter().map(move |b| (a, b)))
        .find(|(a, b)| owner(a) != owner(b))
        .expect("two SKUs on two nodes");
    let third = (0..3)
        .find(|n| *n != owner(x) && *n != owner(y))
        .expect("a third node");
    // The owner's answers (read-your-writes), through the third node.
    let record = |sku: &str| {
        let (st, r, _) = read(&cl.url(third, &format!("/v1/inventory/S000/{sku}")), true);
        assert_eq!(st, 200, "{r}");
        r
    };
    let reserved = |sku: &str| record(sku)["reserved"].as_i64().expect("reserved");

    // Held whole, through the node that owns neither line.
    let (st, held) = cart(&cl, third, &[(x, 2), (y, 3)], None);
    assert_eq!(st, 201, "{held}");
    let id = held["id"].as_str().expect("id").to_string();
    assert!(id.contains('-') && id.contains(".c"), "a cart id: {id}");
    assert_eq!(held["lines"].as_array().map(Vec::len), Some(2), "{held}");
    for n in 0..3 {
        let got = expect_status("GET", &cl.url(n, &format!("/v1/reservations/{id}")), "held");
        assert_eq!(got["lines"].as_array().map(Vec::len), Some(2), "{got}");
    }
    assert_eq!((reserved(x), reserved(y)), (2, 3));

    // One line short: nothing held anywhere, the short line named.
    let (st, short) = cart(&cl, owner(x), &[(x, 1), (y, 100)], None);
    assert_eq!(
        (st, &short["code"]),
        (409, &Value::from("insufficient_stock")),
        "{short}"
    );
    let named: Vec<&str> = short["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .filter_map(|l| l["sku"].as_str())
        .collect();
    assert_eq!(named, vec![y.as_str()], "{short}");
    assert_eq!(
        (reserved(x), reserved(y)),
        (2, 3),
        "the part held was released"
    );

    // A request that names a shard (as a forwarded one does) must be that
    // shard's: x's count sent to y's shard is refused, not stored there.
    let (st, _, b) = common::call_full(
        &c,
        "PUT",
        &cl.url(owner(y), &format!("/v1/inventory/S000/{x}")),
        None,
        Some(r#"{"on_hand":99}"#),
        &[("x-holdfast-shard", &cl.config.shard_of(y).to_string())],
    );
    assert_eq!(st, 400, "{b}");
    assert_eq!(record(x)["on_hand"], 10, "not stored in y's shard");

    // A batch across shards with one bad item writes nothing, and names
    // the item as the client numbered it.
    let (st, b) = call(
        &c,
        "POST",
        &cl.url(third, "/v1/inventory/batch"),
        None,
        Some(
            &serde_json::json!({"items": [
                {"location": "S000", "sku": x, "on_hand": 50},
                {"location": "S000", "sku": y, "on_hand": -1},
            ]})
            .to_string(),
        ),
    );
    assert_eq!(st, 422, "{b}");
    assert_eq!(b["errors"][0]["field"], "items[1].on_hand", "{b}");
    assert_eq!(record(x)["on_hand"], 10, "x's part was not written");

    // A bad line is named in the cart's numbering.
    let (st, bad) = cart(&cl, third, &[(x, 1), (y, 0)], None);
    assert_eq!(st, 422, "{bad}");
    assert_eq!(bad["errors"][0]["field"], "lines[1].qty", "{bad}");
    assert_eq!((reserved(x), reserved(y)), (2, 3));

    // A retry with the same key answers the same cart and holds nothing more.
    let (st, a) = cart(&cl, third, &[(x, 1), (y, 1)], Some("cart-k1"));
    assert_eq!(st, 201, "{a}");
    let (st, b) = cart(&cl, owner(y), &[(x, 1), (y, 1)], Some("cart-k1"));
    assert_eq!((st, &b["id"]), (201, &a["id"]), "{b}");
    assert_eq!((reserved(x), reserved(y)), (3, 4));

    // Confirm the first cart, release the keyed one: every part moves.
    expect_status(
        "POST",
        &cl.url(owner(x), &format!("/v1/reservations/{id}/confirm")),
        "confirmed",
    );
    let keyed = a["id"].as_str().expect("id");
    expect_status(
        "POST",
        &cl.url(owner(y), &format!("/v1/reservations/{keyed}/release")),
        "released",
    );
    assert_eq!((reserved(x), reserved(y)), (2, 3));
    expect_status(
        "GET",
        &cl.url(third, &format!("/v1/reservations/{id}")),
        "confirmed",
    );
}

/// Owners publish snapshots of their shards and trim the streams behind
/// them; a node that joins with nothing starts from the snapshots and the
/// streams' tails (the streams no longer hold the history), and, the two
/// others killed, serves every acknowledged hold.
#[test]
fn a_new_node_starts_from_published_snapshots() {
    let redis = Redis::start();
    let mut cl = Cluster::new(&redis, "[snapshot]\nevery_records = 50\nevery_s = 1\n");
    for i in 0..2 {
        cl.nodes[i] = Some(cl.launch(i));
    }
    cl.wait_served();
    cl.seed(&|_| ON_HAND);
    let mut held = Vec::new();
    for k in 0..600 {
        let (st, b) = reserve(
            &cl.url(k % 2, "/v1/reservations"),
            &format!("A{}", k % SKUS),
            1,
        )
        .expect("reserve");
        assert_eq!(st, 201, "{b}");
        held.push(b["id"].as_str().expect("id").to_string());
    }
    // Every shard's snapshot published, its stream trimmed behind it.
    let number = |cmd: &str| resp_number(&redis.command(cmd));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let trimmed: Vec<(u64, u64, u64)> = (0..cl.config.shards)
            .map(|s| {
                let published = number(&format!("HGET holdfast:t:snapshot:{s} seq"));
                let last = number(&format!("GET holdfast:t:seq:{s}"));
                let len = number(&format!("XLEN holdfast:t:shard:{s}"));
                (published, last, len)
            })
            .collect();
        if trimmed.iter().all(|(p, last, len)| *p > 0 && *len < *last) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "(published, last, stream length) per shard: {trimmed:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let m = client()
        .get(cl.url(0, "/metrics"))
        .send()
        .expect("metrics")
        .text()
        .expect("text");
    assert!(
        m.lines().any(
            |l| l.starts_with("holdfast_cluster_snapshots_published_total ") && !l.ends_with(" 0")
        ),
        "{m}"
    );

    // n3 joins with nothing, catches up, and is left alone with the shards.
    cl.nodes[2] = Some(cl.launch(2));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, v) = call(&client(), "GET", &cl.url(2, "/v1/cluster"), None, None);
        let behind: Vec<(u64, u64)> = (0..cl.config.shards)
            .map(|s| {
                let applied = v["shards"][s as usize]["applied_seq"].as_u64().unwrap_or(0);
                let last = number(&format!("GET holdfast:t:seq:{s}"));
                (applied, last)
            })
            .filter(|(a, l)| a < l)
            .collect();
        if behind.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "n3 behind: {behind:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    for i in 0..2 {
        drop(cl.nodes[i].take()); // SIGKILL
    }
    cl.wait_served();
    for id in &held {
        let (st, got) = get_retrying(&cl.url(2, &format!("/v1/reservations/{id}")));
        assert_eq!(
            (st, &got["status"]),
            (200, &Value::from("held")),
            "{id}: {got}"
        );
    }
    for i in 0..SKUS {
        let (st, b) = get_retrying(&cl.url(2, &format!("/v1/inventory/S000/A{i}")));
        let reserved = held.len() / SKUS + usize::from(i < held.len() % SKUS);
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

/// GET `url` (with `Cache-Control: no-cache` if `owner`): status, body,
/// and whether a follower's copy answered.
fn read(url: &str, owner: bool) -> (u16, Value, bool) {
    let mut rq = client().get(url);
    if owner {
        rq = rq.header("cache-control", "no-cache");
    }
    let r = rq.send().expect("read");
    let follower = r
        .headers()
        .get("x-holdfast-read")
        .is_some_and(|v| v == "follower");
    let st = r.status().as_u16();
    (st, r.json().unwrap_or(Value::Null), follower)
}

/// Availability and stock-record reads through a node that follows the
/// shard are answered from its copy: the owner's answer, a write showing
/// within moments; `Cache-Control: no-cache` asks the owner; a copy that
/// cannot follow its stream (Redis gone) answers nothing.
#[test]
fn followers_answer_reads() {
    let mut redis = Redis::start();
    let cl = Cluster::start(&redis, "");
    cl.wait_served();
    cl.seed(&|_| 50);
    let mut answered = 0;
    for i in 0..SKUS {
        let sku = format!("A{i}");
        let owner = cl.owner_of(cl.config.shard_of(&sku));
        let paths = [
            format!("/v1/availability/{sku}"),
            format!("/v1/inventory/S000/{sku}"),
        ];
        for n in (0..3).filter(|n| *n != owner) {
            for path in &paths {
                let (_, want, by_follower) = read(&cl.url(owner, path), false);
                assert!(!by_follower, "the owner answers itself");
                // Whoever answers, the answer is the owner's; the node's
                // copy answers once it has read past the writes this node
                // took (the seeding's), within moments.
                let deadline = Instant::now() + Duration::from_secs(2);
                loop {
                    let (st, got, follower) = read(&cl.url(n, path), false);
                    assert_eq!(st, 200, "{got}");
                    assert_eq!(got, want, "{path} via n{}", n + 1);
                    if follower {
                        answered += 1;
                        break;
                    }
                    assert!(
                        Instant::now() < deadline,
                        "{path}: n{}'s copy never answered",
                        n + 1
                    );
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
    }
    // Every follower answered (two followers of each shard, two reads).
    assert_eq!(answered, SKUS * 2 * 2);

    // A write through the owner shows at a follower within moments.
    let owner = cl.owner_of(cl.config.shard_of("A0"));
    let follower = (owner + 1) % 3;
    let (st, b) = reserve(&cl.url(owner, "/v1/reservations"), "A0", 3).expect("reserve");
    assert_eq!(st, 201, "{b}");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, got, by_follower) = read(&cl.url(follower, "/v1/availability/A0"), false);
        if by_follower && got["available"] == 47 {
            break;
        }
        assert!(got["available"] == 50 || got["available"] == 47, "{got}");
        assert!(
            Instant::now() < deadline,
            "the write never showed at the copy: {got}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // Read-your-writes: the owner's answer, forwarded.
    let (st, got, by_follower) = read(&cl.url(follower, "/v1/inventory/S000/A0"), true);
    assert_eq!(
        (st, got["reserved"].as_i64(), by_follower),
        (200, Some(3), false),
        "{got}"
    );
    // Through one node, a client reads its own writes without asking: the
    // node's copy answers again once it has read past them.
    let mut from_copy = 0;
    for k in 1..=20 {
        let (st, b) = reserve(&cl.url(follower, "/v1/reservations"), "A0", 1).expect("reserve");
        assert_eq!(st, 201, "{b}");
        let (st, got, by_follower) = read(&cl.url(follower, "/v1/availability/A0"), false);
        assert_eq!(
            (st, got["available"].as_i64()),
            (200, Some(47 - k)),
            "{got}"
        );
        std::thread::sleep(Duration::from_millis(20));
        let (_, got, by_follower_later) = read(&cl.url(follower, "/v1/availability/A0"), false);
        assert_eq!(got["available"].as_i64(), Some(47 - k), "{got}");
        from_copy += usize::from(by_follower) + usize::from(by_follower_later);
    }
    assert!(from_copy > 0, "the copy answered again after the writes");
    // Bad input is refused by the follower as by the owner.
    let (st, got, _) = read(&cl.url(follower, "/v1/inventory/S000/nope"), false);
    assert_eq!(
        (st, got["code"].as_str()),
        (404, Some("not_found")),
        "{got}"
    );

    // Redis gone: a copy that cannot follow stops answering within a
    // moment (the read goes to the owner, or is refused once no one owns).
    redis.kill();
    std::thread::sleep(Duration::from_millis(600));
    for _ in 0..20 {
        let (st, got, by_follower) = read(&cl.url(follower, "/v1/availability/A0"), false);
        assert!(!by_follower, "a stale copy answered: {got}");
        assert!(st == 200 || st == 503, "{st}: {got}");
    }
}

/// `redis_down = "local"` (with `durability = "local"`): Redis gone, the
/// owners keep taking writes, acknowledged on their own fsync, well past
/// the lease's time; Redis back empty, they ship what it lost, and every
/// hold is read through every node, every copy equal.
#[test]
fn with_redis_down_local_owners_keep_serving() {
    let mut redis = Redis::start();
    let mut cl = Cluster::replicating(
        &redis,
        "durability = \"local\"\nredis_down = \"local\"",
        "[snapshot]\nevery_records = 20\nevery_s = 1\n",
    );
    for i in 0..3 {
        cl.nodes[i] = Some(cl.launch(i));
    }
    cl.wait_served();
    cl.seed(&|_| 1_000);
    // (id, SKU index) of every hold acknowledged.
    let mut held: Vec<(String, usize)> = Vec::new();
    let mut hold = |k: usize| {
        let (st, b) = reserve(
            &cl.url(k % 3, "/v1/reservations"),
            &format!("A{}", k % SKUS),
            1,
        )
        .expect("reserve");
        assert_eq!(st, 201, "hold {k}: {b}");
        held.push((b["id"].as_str().expect("id").to_string(), k % SKUS));
    };
    for k in 0..SKUS {
        hold(k);
    }
    redis.kill();
    // Three lease times without Redis, writes through every node.
    let until = Instant::now() + Duration::from_millis(4_500);
    let mut k = SKUS;
    while Instant::now() < until {
        hold(k);
        k += 1;
        std::thread::sleep(Duration::from_millis(10));
    }
    let during = k - SKUS;
    assert!(during > 50, "{during} holds during the outage");

    redis.restart_empty();
    held.push((cl.hold_when_back(), 1));
    cl.expect_held_everywhere(held.iter().map(|(id, _)| id));
    cl.wait_copies_equal();
    // Every hold counted once: on each SKU, reserved is what was held.
    for i in 0..SKUS {
        let want = held.iter().filter(|(_, sku)| *sku == i).count() as u64;
        let (st, b) = get_retrying(&cl.url(1, &format!("/v1/inventory/S000/A{i}")));
        assert_eq!((st, b["reserved"].as_u64()), (200, Some(want)), "A{i}: {b}");
    }
}

/// Each SKU's record at `S000` as the owners answer it: (on_hand, reserved).
fn owners_records(cl: &Cluster, through: usize) -> BTreeMap<String, (i64, i64)> {
    (0..SKUS)
        .map(|i| {
            let (st, b, _) = read(&cl.url(through, &format!("/v1/inventory/S000/A{i}")), true);
            assert_eq!(st, 200, "{b}");
            let v = (
                b["on_hand"].as_i64().unwrap_or(-1),
                b["reserved"].as_i64().unwrap_or(-1),
            );
            (format!("A{i}@S000"), v)
        })
        .collect()
}

/// A feed session on a node: (node, socket, its records).
type Session = (usize, Socket, BTreeMap<String, (i64, i64, i64)>);

/// Reads every session until its records show `want` (those it follows);
/// per session: (node, changes read, snapshots read).
fn converge_all(
    rt: &tokio::runtime::Runtime,
    sessions: &mut [Session],
    want: &BTreeMap<String, (i64, i64)>,
) -> Vec<(usize, usize, usize)> {
    rt.block_on(async {
        let mut out = Vec::new();
        for (n, ws, state) in sessions.iter_mut() {
            let only: BTreeMap<String, (i64, i64)> = want
                .iter()
                .filter(|(k, _)| state.contains_key(*k))
                .map(|(k, v)| (k.clone(), *v))
                .collect();
            let (changes, snapshots) = converge(ws, state, &only, Duration::from_secs(10)).await;
            out.push((*n, changes, snapshots));
        }
        out
    })
}

/// The stock feed on cluster nodes: a location's session on every node
/// (its snapshot and changes from the node's copies of every shard, the
/// engines of those it owns), a SKU's on a node that follows its shard;
/// every session ends at the owners' records, versions only growing.
/// The owner of a shard killed: the sessions on the node that takes it
/// over follow again from a fresh snapshot and go on.
#[test]
fn every_node_feeds_its_sessions_across_a_takeover() {
    let redis = Redis::start();
    let mut cl = Cluster::start(&redis, "");
    cl.wait_served();
    cl.seed(&|_| 1_000);
    cl.wait_copies_equal();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let hot = "A3";
    let hot_shard = cl.config.shard_of(hot);
    let victim = cl.owner_of(hot_shard);
    let follower = (victim + 1) % 3;
    // Connected and snapshotted: (node, socket, state).
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
            assert!(
                state.values().all(|r| (r.0, r.1) == (1_000, 0)),
                "n{}: {state:?}",
                n + 1
            );
            v.push((n, ws, state));
        }
        v
    });
    // Unknown scopes are refused before the upgrade, as on one node.
    rt.block_on(async {
        assert_eq!(
            connect(cl.ports[0], "location=S999", "any", true)
                .await
                .err(),
            Some(404)
        );
        assert_eq!(
            connect(cl.ports[1], "sku=nope", "any", true).await.err(),
            Some(404)
        );
    });

    // Holds through every node, on every SKU: every session ends at the
    // owners' records.
    let hold_everywhere = |cl: &Cluster, nodes: &[usize], rounds: usize| {
        for k in 0..rounds {
            for i in 0..SKUS {
                let n = nodes[(k + i) % nodes.len()];
                let (st, b) =
                    reserve(&cl.url(n, "/v1/reservations"), &format!("A{i}"), 1).expect("reserve");
                assert_eq!(st, 201, "{b}");
            }
        }
    };
    hold_everywhere(&cl, &[0, 1, 2], 3);
    let want = owners_records(&cl, 0);
    assert!(want.values().all(|r| *r == (1_000, 3)), "{want:?}");
    for (n, changes, _) in converge_all(&rt, &mut sessions, &want) {
        assert!(changes > 0, "n{}: no changes read", n + 1);
    }
    let m = client()
        .get(cl.url(follower, "/metrics"))
        .send()
        .expect("metrics")
        .text()
        .expect("text");
    assert!(m.contains("holdfast_cluster_feed_sessions 2\n"), "{m}");

    // The owner of A3's shard killed: a standby takes it over; sessions on
    // the survivors go on, those on the one that took it from a fresh
    // snapshot (its feed now comes from its engine).
    drop(cl.nodes[victim].take()); // SIGKILL
    sessions.retain(|(n, _, _)| *n != victim);
    cl.wait_served();
    let taker = cl.owner_of(hot_shard);
    let survivors: Vec<usize> = (0..3).filter(|n| *n != victim).collect();
    hold_everywhere(&cl, &survivors, 2);
    let want = owners_records(&cl, survivors[0]);
    assert!(want.values().all(|r| *r == (1_000, 5)), "{want:?}");
    rt.block_on(async {
        for (n, ws, state) in &mut sessions {
            let only: BTreeMap<String, (i64, i64)> = want
                .iter()
                .filter(|(k, _)| state.contains_key(*k))
                .map(|(k, v)| (k.clone(), *v))
                .collect();
            let (_, snapshots) = converge(ws, state, &only, Duration::from_secs(10)).await;
            if *n == taker {
                assert!(
                    snapshots > 0,
                    "n{}: took the shard, no fresh snapshot",
                    *n + 1
                );
            }
        }
    });
}

/// Lines without a location in a cart across shards: every node plans them
/// as one node with the same catalog and stock does (the stock of each SKU
/// gathered from its shard, the whole cart weighed together: two SKUs of
/// two shards go in one shipment from the farther store that has both,
/// not in two from the nearest of each), and holds the plan all or
/// nothing; an Idempotency-Key holds it once; a line no store can serve is
/// refused whole, a bad line named by its place in the cart. The store
/// board's page is served by every node.
#[test]
fn sourcing_across_shards_plans_as_one_node_does() {
    let redis = Redis::start();
    let cl = Cluster::start(&redis, "");
    cl.wait_served();
    let single = Server::start("");
    let c = client();
    // Two SKUs of two shards.
    let (x, y) = skus_of_two_shards(&cl);
    // S1 is 1 km from the shopper, S2 22 km.
    let setup = |url: &dyn Fn(&str) -> String| {
        stores_network(
            url,
            &[&x, &y],
            &[("S1", 45.01), ("S2", 45.2)],
            &[("S1", &x, 5), ("S2", &x, 5), ("S2", &y, 5)],
        )
    };
    setup(&|p| cl.url(0, p));
    setup(&|p| single.url(p));
    let cart = |extra: Value| {
        let mut b = serde_json::json!({
            "lines": [{"sku": x, "qty": 1}, {"sku": y, "qty": 1}],
            "destination": {"lat": 45.0, "lon": 9.0},
            "ttl_s": 600,
        });
        if let (Some(b), Some(e)) = (b.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        b.to_string()
    };

    // The plan: one node's, through every node of the cluster.
    let (st, one) = call(
        &c,
        "POST",
        &single.url("/v1/sourcing/plan"),
        None,
        Some(&cart(Value::Null)),
    );
    assert_eq!(st, 200, "{one}");
    let ships = one["shipments"].as_array().expect("shipments");
    assert_eq!(ships.len(), 1, "grouped: {one}");
    assert_eq!(ships[0]["location"], "S2", "{one}");
    for n in 0..3 {
        let (st, p) = call(
            &c,
            "POST",
            &cl.url(n, "/v1/sourcing/plan"),
            None,
            Some(&cart(Value::Null)),
        );
        assert_eq!(st, 200, "{p}");
        assert_eq!(
            (&p["shipments"], &p["unsourced"], &p["method"]),
            (&one["shipments"], &one["unsourced"], &one["method"]),
            "node {n}: {p}"
        );
    }

    // For pickup at a store: the same plan as one node's.
    let pickup = |at: &str| {
        serde_json::json!({"lines": [{"sku": x, "qty": 1}, {"sku": y, "qty": 1}], "pickup_location": at})
            .to_string()
    };
    for at in ["S1", "S2"] {
        let (st, one) = call(
            &c,
            "POST",
            &single.url("/v1/sourcing/plan"),
            None,
            Some(&pickup(at)),
        );
        assert_eq!(st, 200, "{one}");
        let (st, p) = call(
            &c,
            "POST",
            &cl.url(1, "/v1/sourcing/plan"),
            None,
            Some(&pickup(at)),
        );
        assert_eq!(st, 200, "{p}");
        assert_eq!(
            (&p["shipments"], &p["unsourced"]),
            (&one["shipments"], &one["unsourced"]),
            "{at}: {p}"
        );
    }

    // Held as planned, all or nothing, through a node.
    let reserved = |loc: &str, sku: &str| {
        let (st, r, _) = read(&cl.url(1, &format!("/v1/inventory/{loc}/{sku}")), true);
        assert_eq!(st, 200, "{r}");
        r["reserved"].as_i64().expect("reserved")
    };
    let (st, held) = call(
        &c,
        "POST",
        &cl.url(2, "/v1/reservations"),
        None,
        Some(&cart(Value::Null)),
    );
    assert_eq!(st, 201, "{held}");
    let at: Vec<(&str, &str)> = held["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .map(|l| {
            (
                l["sku"].as_str().unwrap_or(""),
                l["location"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(at.len(), 2, "{held}");
    assert!(at.iter().all(|(_, loc)| *loc == "S2"), "{held}");
    assert_eq!(
        (reserved("S2", &x), reserved("S2", &y), reserved("S1", &x)),
        (1, 1, 0)
    );
    let id = held["id"].as_str().expect("id");
    expect_status("GET", &cl.url(0, &format!("/v1/reservations/{id}")), "held");

    // With a key: held once, the same answer again.
    let keyed = |n: usize| {
        let r = c
            .post(cl.url(n, "/v1/reservations"))
            .header("content-type", "application/json")
            .header("idempotency-key", "sourced-1")
            .body(cart(Value::Null))
            .send()
            .expect("keyed");
        (
            r.status().as_u16(),
            r.json::<Value>().unwrap_or(Value::Null),
        )
    };
    let (st, first) = keyed(0);
    assert_eq!(st, 201, "{first}");
    let (st, again) = keyed(1);
    assert_eq!((st, &again["id"]), (201, &first["id"]), "{again}");
    assert_eq!((reserved("S2", &x), reserved("S2", &y)), (2, 2));

    // `lines` to the shopper's door, through node `n`.
    let deliver = |n: usize, lines: Value| {
        let body = serde_json::json!({"lines": lines, "destination": {"lat": 45.0, "lon": 9.0}});
        call(
            &c,
            "POST",
            &cl.url(n, "/v1/reservations"),
            None,
            Some(&body.to_string()),
        )
    };
    let counts = || (reserved("S1", &x), reserved("S2", &x), reserved("S2", &y));

    // A line the client placed stays where it is; the other is sourced.
    let (st, b) = deliver(
        0,
        serde_json::json!([{"sku": x, "qty": 1, "location": "S1"}, {"sku": y, "qty": 1}]),
    );
    assert_eq!(st, 201, "{b}");
    assert_eq!(counts(), (1, 2, 3));

    // No store holds 100 of Y: refused whole, nothing held.
    let (st, b) = deliver(
        1,
        serde_json::json!([{"sku": x, "qty": 1}, {"sku": y, "qty": 100}]),
    );
    assert_eq!(
        (st, &b["code"]),
        (409, &Value::from("insufficient_stock")),
        "{b}"
    );
    assert_eq!(b["lines"][0]["sku"], Value::from(y.clone()), "{b}");
    assert_eq!(counts(), (1, 2, 3));

    // A bad sourced line is named by its place in the cart.
    let (st, b) = deliver(
        2,
        serde_json::json!([{"sku": x, "qty": 1, "location": "S1"}, {"sku": y, "qty": 0}]),
    );
    assert_eq!(st, 422, "{b}");
    assert_eq!(b["errors"][0]["field"], "lines[1].qty", "{b}");

    // The store board's page through every node (its stock comes from the
    // node's feed), and its pickups (none here; gathered from every shard:
    // `orders_through_any_node_answer_as_one_node`).
    for n in 0..3 {
        let r = c.get(cl.url(n, "/ui/stores/S1")).send().expect("board");
        assert_eq!(r.status().as_u16(), 200);
        assert!(r.text().expect("page").contains("\"location\":\"S1\""));
        let (st, b) = call(
            &c,
            "GET",
            &cl.url(n, "/v1/locations/S1/pickups"),
            None,
            None,
        );
        assert_eq!(
            (st, &b["location"], &b["pickups"]),
            (200, &Value::from("S1"), &serde_json::json!([])),
            "{b}"
        );
    }
}

/// A node that owns no shard (it joined after the others took them all)
/// has a cart across shards planned by a node that owns some, and holds
/// it as any node does.
#[test]
fn a_node_owning_no_shard_plans_through_one_that_does() {
    let redis = Redis::start();
    let mut cl = Cluster::new(&redis, "");
    for i in 0..2 {
        cl.nodes[i] = Some(cl.launch(i));
    }
    cl.wait_served();
    cl.nodes[2] = Some(cl.launch(2));
    let c = client();
    let (x, y) = skus_of_two_shards(&cl);
    stores_network(
        &|p| cl.url(0, p),
        &[&x, &y],
        &[("S1", 45.01)],
        &[("S1", &x, 5), ("S1", &y, 5)],
    );
    // Node 2 owns nothing.
    let deadline = Instant::now() + Duration::from_secs(10);
    while call(&c, "GET", &cl.url(2, "/v1/cluster"), None, None).0 != 200 {
        assert!(Instant::now() < deadline, "node 2 never answered");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        cl.view(2).iter().all(|(_, _, here)| !here),
        "{:?}",
        cl.view(2)
    );
    let cart = serde_json::json!({
        "lines": [{"sku": x, "qty": 1}, {"sku": y, "qty": 1}],
        "destination": {"lat": 45.0, "lon": 9.0},
    })
    .to_string();
    let (st, owner) = call(
        &c,
        "POST",
        &cl.url(0, "/v1/sourcing/plan"),
        None,
        Some(&cart),
    );
    assert_eq!(st, 200, "{owner}");
    assert_eq!(owner["shipments"][0]["location"], "S1", "{owner}");
    let (st, p) = call(
        &c,
        "POST",
        &cl.url(2, "/v1/sourcing/plan"),
        None,
        Some(&cart),
    );
    assert_eq!((st, &p["shipments"]), (200, &owner["shipments"]), "{p}");
    let (st, held) = call(
        &c,
        "POST",
        &cl.url(2, "/v1/reservations"),
        None,
        Some(&cart),
    );
    assert_eq!(st, 201, "{held}");
    assert!(
        held["lines"]
            .as_array()
            .is_some_and(|l| l.len() == 2 && l.iter().all(|l| l["location"] == "S1")),
        "{held}"
    );
}

/// Two SKUs of two shards: `A0` and the first of another shard.
fn skus_of_two_shards(cl: &Cluster) -> (String, String) {
    let x = "A0".to_string();
    let y = (1..SKUS)
        .map(|i| format!("A{i}"))
        .find(|s| cl.config.shard_of(s) != cl.config.shard_of(&x))
        .expect("a SKU of another shard");
    (x, y)
}

/// Through `url`: the SKUs `skus`, stores (id, latitude; longitude 9)
/// that ship and take pickups, and the counts (store, SKU, on_hand).
fn stores_network(
    url: &dyn Fn(&str) -> String,
    skus: &[&String],
    stores: &[(&str, f64)],
    counts: &[(&str, &String, i64)],
) {
    let c = client();
    for sku in skus {
        let (st, b) = call(
            &c,
            "PUT",
            &url(&format!("/v1/skus/{sku}")),
            None,
            Some(r#"{"name":"x"}"#),
        );
        assert_eq!(st, 200, "{b}");
    }
    for (id, lat) in stores {
        let body = serde_json::json!({"name": id, "kind": "store", "lat": lat, "lon": 9.0, "priority": 10, "ship": true, "pickup": true, "active": true});
        let (st, b) = call(
            &c,
            "PUT",
            &url(&format!("/v1/locations/{id}")),
            None,
            Some(&body.to_string()),
        );
        assert_eq!(st, 200, "{b}");
    }
    let items: Vec<Value> = counts
        .iter()
        .map(|(l, sku, n)| serde_json::json!({"location": l, "sku": sku, "on_hand": n}))
        .collect();
    let body = serde_json::json!({ "items": items }).to_string();
    let (st, b) = call(&c, "POST", &url("/v1/inventory/batch"), None, Some(&body));
    assert_eq!(
        (st, b["applied"].as_u64()),
        (200, Some(counts.len() as u64)),
        "{b}"
    );
}

/// A keyed cart across shards refused and undone stays refused under its
/// key: asked again after the shard that refused it forgot its refusal
/// (kept in memory only: its owner killed) and got stock, the part that
/// answers its first hold from its key is found released, the part held
/// now is released, and nothing is held.
#[test]
fn a_keyed_cart_undone_is_not_held_again_in_part() {
    let redis = Redis::start();
    let mut cl = Cluster::start(&redis, "");
    cl.wait_served();
    let (x, y) = skus_of_two_shards(&cl);
    cl.seed(&|i| if i == 0 { 0 } else { ON_HAND });
    let c = client();
    let cart = serde_json::json!({"lines": [
        {"sku": x, "qty": 1, "location": "S000"},
        {"sku": y, "qty": 1, "location": "S000"},
    ]})
    .to_string();
    let keyed = |url: String| {
        let r = c
            .post(url)
            .header("content-type", "application/json")
            .header("idempotency-key", "undone-1")
            .body(cart.clone())
            .send()
            .expect("cart");
        (
            r.status().as_u16(),
            r.json::<Value>().unwrap_or(Value::Null),
        )
    };
    let (st, b) = keyed(cl.url(0, "/v1/reservations"));
    assert_eq!(
        (st, &b["code"]),
        (409, &Value::from("insufficient_stock")),
        "{b}"
    );

    // The owner of x's shard dies: its refusal is forgotten; x gets stock.
    let shard = cl.config.shard_of(&x);
    let victim = cl.owner_of(shard);
    let mut dead = cl.nodes[victim].take().expect("running");
    dead.child.kill().expect("kill -9");
    let _ = dead.child.wait();
    std::mem::forget(dead);
    cl.wait_served();
    let live = (0..3).find(|i| *i != victim).expect("a live node");
    let (st, b) = call(
        &c,
        "PUT",
        &cl.url(live, &format!("/v1/inventory/S000/{x}")),
        None,
        Some(r#"{"on_hand": 5}"#),
    );
    assert_eq!(st, 200, "{b}");

    let (st, b) = keyed(cl.url(live, "/v1/reservations"));
    assert_eq!(
        (st, &b["code"]),
        (409, &Value::from("insufficient_stock")),
        "{b}"
    );
    for sku in [&x, &y] {
        let (st, r, _) = read(&cl.url(live, &format!("/v1/inventory/S000/{sku}")), true);
        assert_eq!((st, r["reserved"].as_i64()), (200, Some(0)), "{sku}: {r}");
    }
}

/// The tokens of the order tests: an admin, a checkout, the Roma store.
fn order_tokens() -> String {
    common::auth_with(
        "[[auth.tokens]]\ntoken = \"store-roma\"\nrole = \"store\"\nlocation = \"S_RM\"\n",
    )
}

/// An answer without what differs between two runs of the same script
/// (times, reservation ids, the provider's references).
fn comparable(mut v: Value) -> Value {
    fn strip(v: &mut Value) {
        match v {
            Value::Object(m) => {
                for k in [
                    "created_at",
                    "updated_at",
                    "reservation_id",
                    "reference",
                    "at",
                    "detail",
                ] {
                    m.remove(k);
                }
                m.values_mut().for_each(strip);
            }
            Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    strip(&mut v);
    v
}

/// `send(method, path, token, body, turn)`: the status and body of the
/// answer (`turn` picks a node on a cluster).
type Sender<'a> = dyn Fn(&str, &str, &str, Option<Value>, usize) -> (u16, Value) + 'a;

/// The orders script: a network (a DC near Milano, stores in Milano and
/// Roma) of SKUs `k` (four, in several shards), then orders placed,
/// moved, cancelled, declined, refused for short stock, split across
/// locations, collected at a store: every answer and the stock after each
/// step, as `send(method, path, token, body, turn)` answered it (`turn`
/// picks a node on a cluster).
fn orders_script(k: &[String], capped: &[String], send: &Sender<'_>) -> Vec<(String, u16, Value)> {
    use serde_json::json;
    let mut out = Vec::new();
    let (a, b, cc, d) = (&k[0], &k[1], &k[2], &k[3]);
    for sku in k {
        let (st, v) = send(
            "PUT",
            &format!("/v1/skus/{sku}"),
            "admin-secret",
            Some(json!({"name": sku})),
            0,
        );
        assert_eq!(st, 200, "{v}");
    }
    for (id, kind, lat, lon) in [
        ("DC1", "dc", 45.52, 9.21),
        ("S_MI", "store", 45.4642, 9.19),
        ("S_RM", "store", 41.9028, 12.4964),
    ] {
        let body = json!({"name": id, "kind": kind, "lat": lat, "lon": lon, "priority": 10, "ship": true, "pickup": kind == "store"});
        let (st, v) = send(
            "PUT",
            &format!("/v1/locations/{id}"),
            "admin-secret",
            Some(body),
            1,
        );
        assert_eq!(st, 200, "{v}");
    }
    let items = json!({"items": [
        {"location": "DC1", "sku": a, "on_hand": 10}, {"location": "DC1", "sku": b, "on_hand": 10}, {"location": "DC1", "sku": d, "on_hand": 3},
        {"location": "S_MI", "sku": a, "on_hand": 2},
        {"location": "S_RM", "sku": a, "on_hand": 5}, {"location": "S_RM", "sku": b, "on_hand": 5}, {"location": "S_RM", "sku": cc, "on_hand": 3},
    ]});
    let (st, v) = send(
        "POST",
        "/v1/inventory/batch",
        "admin-secret",
        Some(items),
        2,
    );
    assert_eq!(st, 200, "{v}");
    let roma = json!({"type": "ship", "lat": 41.89, "lon": 12.49});
    let mut turn = 0;
    let mut step = |label: &str, method: &str, path: &str, token: &str, body: Option<Value>| {
        turn += 1;
        let (st, v) = send(method, path, token, body, turn);
        out.push((label.to_string(), st, comparable(v)));
        let mut stock = Vec::new();
        for (loc, sku) in [
            ("DC1", a),
            ("DC1", b),
            ("DC1", d),
            ("S_MI", a),
            ("S_RM", a),
            ("S_RM", b),
            ("S_RM", cc),
        ] {
            let (_, r) = send(
                "GET",
                &format!("/v1/inventory/{loc}/{sku}"),
                "admin-secret",
                None,
                turn + 1,
            );
            stock.push(json!([loc, sku, r["on_hand"], r["reserved"]]));
        }
        out.push((format!("{label}: stock"), 200, Value::Array(stock)));
    };
    let order = |id: &str, lines: Value, delivery: &Value| {
        Some(
            json!({"id": id, "lines": lines, "delivery": delivery, "payment": {"provider": "sandbox"}}),
        )
    };
    step(
        "placed",
        "POST",
        "/v1/orders",
        "web-checkout",
        order(
            "O-1",
            json!([{"sku": a, "qty": 2, "unit_price": "10.00"}, {"sku": b, "qty": 1, "unit_price": "5.50"}]),
            &roma,
        ),
    );
    step(
        "placed again",
        "POST",
        "/v1/orders",
        "web-checkout",
        order(
            "O-1",
            json!([{"sku": a, "qty": 1, "unit_price": "1"}]),
            &roma,
        ),
    );
    step("read", "GET", "/v1/orders/O-1", "web-checkout", None);
    step(
        "picked",
        "POST",
        "/v1/orders/O-1/shipments/1/events",
        "store-roma",
        Some(json!({"status": "picked"})),
    );
    step(
        "shipped",
        "POST",
        "/v1/orders/O-1/shipments/1/events",
        "store-roma",
        Some(json!({"status": "shipped"})),
    );
    step(
        "shipped again",
        "POST",
        "/v1/orders/O-1/shipments/1/events",
        "store-roma",
        Some(json!({"status": "shipped"})),
    );
    step(
        "delivered",
        "POST",
        "/v1/orders/O-1/shipments/1/events",
        "store-roma",
        Some(json!({"status": "delivered"})),
    );
    // Returns: restocked where the goods came back (another shard's
    // stock, on a cluster), refunded; more than was delivered refused.
    step(
        "returned",
        "POST",
        "/v1/orders/O-1/returns",
        "admin-secret",
        Some(json!({"lines": [{"sku": a, "qty": 1}, {"sku": b, "qty": 1}], "location": "S_MI"})),
    );
    step(
        "returned again",
        "POST",
        "/v1/orders/O-1/returns",
        "admin-secret",
        Some(json!({"lines": [{"sku": a, "qty": 2}], "location": "S_MI"})),
    );
    step(
        "returned, the rest",
        "POST",
        "/v1/orders/O-1/returns",
        "admin-secret",
        Some(json!({"lines": [{"sku": a, "qty": 1}], "location": "S_RM"})),
    );
    step(
        "to cancel",
        "POST",
        "/v1/orders",
        "web-checkout",
        order(
            "C-1",
            json!([{"sku": a, "qty": 3, "unit_price": "2"}]),
            &roma,
        ),
    );
    step(
        "cancelled",
        "POST",
        "/v1/orders/C-1/cancel",
        "admin-secret",
        None,
    );
    step(
        "cancelled again",
        "POST",
        "/v1/orders/C-1/cancel",
        "admin-secret",
        None,
    );
    step(
        "declined",
        "POST",
        "/v1/orders",
        "web-checkout",
        order(
            "D-1",
            json!([{"sku": a, "qty": 1, "unit_price": "10.51"}]),
            &roma,
        ),
    );
    step(
        "declined, read",
        "GET",
        "/v1/orders/D-1",
        "admin-secret",
        None,
    );
    step(
        "provider down",
        "POST",
        "/v1/orders",
        "web-checkout",
        order(
            "U-1",
            json!([{"sku": a, "qty": 1, "unit_price": "10.52"}]),
            &roma,
        ),
    );
    step(
        "provider down, read",
        "GET",
        "/v1/orders/U-1",
        "admin-secret",
        None,
    );
    step(
        "short",
        "POST",
        "/v1/orders",
        "web-checkout",
        order(
            "X-1",
            json!([{"sku": d, "qty": 5, "unit_price": "1"}, {"sku": a, "qty": 1, "unit_price": "1"}]),
            &roma,
        ),
    );
    step(
        "split",
        "POST",
        "/v1/orders",
        "web-checkout",
        order(
            "S-1",
            json!([{"sku": d, "qty": 2, "unit_price": "3"}, {"sku": cc, "qty": 1, "unit_price": "4"}]),
            &roma,
        ),
    );
    step(
        "split, first shipped",
        "POST",
        "/v1/orders/S-1/shipments/1/events",
        "admin-secret",
        Some(json!({"status": "shipped"})),
    );
    step(
        "pickup",
        "POST",
        "/v1/orders",
        "web-checkout",
        order(
            "P-1",
            json!([{"sku": a, "qty": 1, "unit_price": "7"}, {"sku": cc, "qty": 1, "unit_price": "8"}]),
            &json!({"type": "pickup", "location": "S_RM"}),
        ),
    );
    step(
        "transfer",
        "POST",
        "/v1/orders",
        "web-checkout",
        order(
            "P-2",
            json!([{"sku": d, "qty": 1, "unit_price": "9"}]),
            &json!({"type": "pickup", "location": "S_RM"}),
        ),
    );
    step(
        "pickups",
        "GET",
        "/v1/locations/S_RM/pickups",
        "store-roma",
        None,
    );
    step(
        "ready",
        "POST",
        "/v1/orders/P-1/shipments/1/events",
        "store-roma",
        Some(json!({"status": "ready_for_pickup"})),
    );
    step(
        "collected",
        "POST",
        "/v1/orders/P-1/shipments/1/events",
        "store-roma",
        Some(json!({"status": "collected"})),
    );
    step(
        "pickups after",
        "GET",
        "/v1/locations/S_RM/pickups",
        "store-roma",
        None,
    );
    step(
        "another store's",
        "GET",
        "/v1/locations/S_MI/pickups",
        "store-roma",
        None,
    );
    // A cart held at checkout, then its order: the cart's lines (in
    // several shards) become the order's shipments, one per location.
    let (st, cart) = send(
        "POST",
        "/v1/reservations",
        "web-checkout",
        Some(json!({"lines": [
            {"sku": a, "qty": 1, "location": "S_RM"},
            {"sku": b, "qty": 1, "location": "S_RM"},
            {"sku": b, "qty": 1, "location": "DC1"},
        ], "ttl_s": 600})),
        0,
    );
    assert_eq!(st, 201, "{cart}");
    let rid = cart["id"].as_str().expect("id").to_string();
    let from_cart = |id: &str, price: &str| {
        Some(json!({"id": id, "reservation_id": rid,
            "lines": [{"sku": a, "qty": 1, "unit_price": price}, {"sku": b, "qty": 2, "unit_price": "1"}],
            "delivery": roma, "payment": {"provider": "sandbox"}}))
    };
    step(
        "from a cart, declined",
        "POST",
        "/v1/orders",
        "web-checkout",
        from_cart("R-0", "1.51"),
    );
    step(
        "from a cart",
        "POST",
        "/v1/orders",
        "web-checkout",
        from_cart("R-1", "1"),
    );
    let (_, after) = send(
        "GET",
        &format!("/v1/reservations/{rid}"),
        "web-checkout",
        None,
        1,
    );
    assert_eq!(
        after["status"], "released",
        "the cart after its order: {after}"
    );
    step(
        "from a cart again",
        "POST",
        "/v1/orders",
        "web-checkout",
        from_cart("R-2", "1"),
    );
    step(
        "from a cart, shipped",
        "POST",
        "/v1/orders/R-1/shipments/1/events",
        "admin-secret",
        Some(json!({"status": "shipped"})),
    );
    step(
        "from a cart, cancelled",
        "POST",
        "/v1/orders/R-1/cancel",
        "admin-secret",
        None,
    );
    // A daily capacity: the Milano store takes two pickups today, orders
    // kept in several shards (`capped`: ids of other homes) counted
    // together; a cancel gives its slot back.
    let body = json!({"name": "S_MI", "kind": "store", "lat": 45.4642, "lon": 9.19, "priority": 10, "ship": true, "pickup": true, "daily_capacity": 2});
    let (st, v) = send("PUT", "/v1/locations/S_MI", "admin-secret", Some(body), 0);
    assert_eq!(st, 200, "{v}");
    let at_milano = json!({"type": "pickup", "location": "S_MI"});
    for (n, id) in capped.iter().enumerate() {
        step(
            &format!("capped {n}"),
            "POST",
            "/v1/orders",
            "web-checkout",
            order(
                id,
                json!([{"sku": a, "qty": 1, "unit_price": "1"}]),
                &at_milano,
            ),
        );
    }
    // A plan, as an order's, sees the store full (every shard's orders).
    step(
        "capped, a plan to pick up",
        "POST",
        "/v1/sourcing/plan",
        "web-checkout",
        Some(json!({"lines": [{"sku": a, "qty": 1}], "pickup_location": "S_MI"})),
    );
    step(
        "capped, a plan to a door",
        "POST",
        "/v1/sourcing/plan",
        "web-checkout",
        Some(json!({"lines": [{"sku": a, "qty": 1}], "destination": {"lat": 45.46, "lon": 9.19}})),
    );
    step(
        "capped, a cancel",
        "POST",
        &format!("/v1/orders/{}/cancel", capped[0]),
        "admin-secret",
        None,
    );
    step(
        "capped, its slot",
        "POST",
        "/v1/orders",
        "web-checkout",
        order(
            &capped[capped.len() - 1],
            json!([{"sku": a, "qty": 1, "unit_price": "1"}]),
            &at_milano,
        ),
    );
    out
}

/// Orders on cluster nodes: each lives with the shard of its id, its
/// stock with each SKU's shard. The same script of orders (placed, moved,
/// cancelled, declined, short, split, picked up; with tokens: the stock
/// operations go with the node's own) answers through the three nodes in
/// turn exactly what it answers on one node, stock included; an order
/// from a cart held across shards is split into its shipments as one
/// node splits it. An order survives its home shard's owner killed.
/// Returns restock each SKU's shard, once.
#[test]
fn orders_through_any_node_answer_as_one_node() {
    use serde_json::json;
    let redis = Redis::start();
    let mut cl = Cluster::start(&redis, &order_tokens());
    cl.wait_served();
    // Four SKUs in at least three shards; the orders' ids in others.
    let mut k: Vec<String> = Vec::new();
    for i in 0.. {
        let name = format!("K{i}");
        let s = cl.config.shard_of(&name);
        let shards: std::collections::BTreeSet<u32> =
            k.iter().map(|x| cl.config.shard_of(x)).collect();
        if k.len() < 3 && shards.contains(&s) {
            continue;
        }
        k.push(name);
        if k.len() == 4 {
            break;
        }
    }
    let c = client();
    let on_cluster = |m: &str, path: &str, token: &str, body: Option<Value>, turn: usize| {
        let b = body.map(|b| b.to_string());
        let (st, _, v) = common::call_full(
            &c,
            m,
            &cl.url(turn % 3, path),
            Some(token),
            b.as_deref(),
            &[("cache-control", "no-cache")],
        );
        (st, v)
    };
    // Three orders' ids, each kept by another shard.
    let mut capped: Vec<String> = Vec::new();
    for i in 0.. {
        let id = format!("Q-{i}");
        if capped
            .iter()
            .all(|c| cl.config.shard_of(c) != cl.config.shard_of(&id))
        {
            capped.push(id);
        }
        if capped.len() == 3 {
            break;
        }
    }
    let clustered = orders_script(&k, &capped, &on_cluster);
    let one = Server::start(&order_tokens());
    let on_one = |m: &str, path: &str, token: &str, body: Option<Value>, _: usize| {
        let b = body.map(|b| b.to_string());
        call(&c, m, &one.url(path), Some(token), b.as_deref())
    };
    let single = orders_script(&k, &capped, &on_one);
    assert_eq!(clustered.len(), single.len());
    for (x, y) in clustered.iter().zip(&single) {
        assert_eq!(x, y, "a cluster node answered otherwise than one node");
    }
    // The script did what it says (not only the same on both).
    let status = |label: &str| {
        single
            .iter()
            .find(|x| x.0 == label)
            .map(|x| {
                (
                    x.1,
                    x.2["status"].as_str().map(String::from),
                    x.2["code"].as_str().map(String::from),
                )
            })
            .expect("step")
    };
    assert_eq!(status("placed").0, 201);
    assert_eq!(status("placed again").2.as_deref(), Some("order_exists"));
    assert_eq!(status("shipped").1.as_deref(), Some("shipped"));
    assert_eq!(status("cancelled").1.as_deref(), Some("cancelled"));
    assert_eq!(status("declined").0, 402);
    assert_eq!(status("provider down").0, 503);
    assert_eq!(status("provider down, read").0, 404);
    assert_eq!(status("short").2.as_deref(), Some("insufficient_stock"));
    assert_eq!(status("collected").1.as_deref(), Some("collected"));
    assert_eq!(status("returned").0, 200);
    assert_eq!(
        status("returned again").2.as_deref(),
        Some("invalid_transition")
    );
    assert_eq!(status("returned, the rest").1.as_deref(), Some("returned"));
    assert_eq!(status("from a cart, declined").0, 402);
    assert_eq!(status("from a cart").0, 201);
    let capacity: Vec<(u16, Option<String>)> =
        ["capped 0", "capped 1", "capped 2", "capped, its slot"]
            .iter()
            .map(|l| {
                let (st, _, code) = status(l);
                (st, code)
            })
            .collect();
    assert_eq!(
        capacity,
        [
            (201, None),
            (201, None),
            (422, Some("validation_failed".to_string())),
            (201, None)
        ],
        "Milano's two pickups a day"
    );
    assert_eq!(status("capped, a plan to pick up").0, 422);
    let door = single
        .iter()
        .find(|x| x.0 == "capped, a plan to a door")
        .map(|x| x.2.clone())
        .expect("step");
    assert!(
        door["shipments"]
            .as_array()
            .is_some_and(|v| !v.is_empty() && v.iter().all(|s| s["location"] != "S_MI")),
        "a full store is not planned: {door}"
    );
    assert_eq!(
        status("from a cart again").2.as_deref(),
        Some("reservation_not_held")
    );
    let shipments = single
        .iter()
        .find(|x| x.0 == "from a cart")
        .map(|x| x.2["shipments"].as_array().map_or(0, Vec::len))
        .expect("step");
    assert_eq!(shipments, 2, "one shipment per location of the cart");
    let stock_after = |label: &str| {
        single
            .iter()
            .find(|x| x.0 == format!("{label}: stock"))
            .map(|x| x.2.clone())
            .expect("stock")
    };
    // Restocked where they came back (S_MI had 2 of the first SKU).
    let back = stock_after("returned");
    assert!(
        back.as_array()
            .is_some_and(|v| v.contains(&json!(["S_MI", &k[0], 3, 0]))),
        "{back}"
    );
    // Nothing held by what was refused or cancelled: only P-1 and P-2
    // (a transfer) hold at the end; what left is gone from on_hand.
    assert_eq!(
        stock_after("short"),
        stock_after("provider down"),
        "a refused order held something"
    );
    let pickups = single
        .iter()
        .find(|x| x.0 == "pickups")
        .map(|x| x.2.clone())
        .expect("pickups");
    let ids: Vec<&str> = pickups["pickups"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|o| o["id"].as_str())
        .collect();
    assert_eq!(ids, ["P-1", "P-2"], "{pickups}");
    let homes: std::collections::BTreeSet<u32> = ["O-1", "C-1", "D-1", "S-1", "P-1", "P-2"]
        .iter()
        .map(|id| cl.config.shard_of(id))
        .collect();
    assert!(
        homes.len() > 1,
        "the orders all live in one shard: {homes:?}"
    );

    // The shipment of the cart's lines at Roma, in two shards, is one
    // hold across them (an id naming both).
    let (_, r1) = on_cluster("GET", "/v1/orders/R-1", "admin-secret", None, 0);
    let at_roma = r1["shipments"][0]["reservation_id"].as_str().unwrap_or("");
    assert_eq!(
        at_roma.split_once('.').map(|(s, _)| s.split('-').count()),
        Some(2),
        "{r1}"
    );

    // The owner of O-1's home shard killed: the order is read and moved
    // on through the others.
    let home = cl.config.shard_of("S-1");
    let victim = cl.owner_of(home);
    drop(cl.nodes[victim].take()); // SIGKILL
    cl.wait_served();
    let other = (victim + 1) % 3;
    let (st, _, o) = common::call_full(
        &c,
        "GET",
        &cl.url(other, "/v1/orders/S-1"),
        Some("admin-secret"),
        None,
        &[],
    );
    assert_eq!(st, 200, "{o}");
    let want = single
        .iter()
        .find(|x| x.0 == "split, first shipped")
        .map(|x| x.2.clone())
        .expect("step");
    assert_eq!(comparable(o), want, "the order after its home's owner died");
    let (st, _, o) = common::call_full(
        &c,
        "POST",
        &cl.url(other, "/v1/orders/S-1/shipments/2/events"),
        Some("admin-secret"),
        Some(&json!({"status": "shipped"}).to_string()),
        &[],
    );
    assert_eq!((st, o["status"].as_str()), (200, Some("shipped")), "{o}");
}

/// An order journaled on its home shard whose holds, in another node's
/// shard, were never confirmed (the home's owner died between the two,
/// the confirm stuck at the stopped owner of the SKU's shard, which died
/// too): the node that takes the shards over reconciles the order with
/// its holds (`orders::reconcile`) and confirms them, as one node does at
/// its start. Without it they would stay held and expire, the order
/// having lost its stock. Leases of 10 s: the stopped owner keeps its
/// shard while the order's confirm reaches it.
#[test]
fn a_takeover_confirms_the_holds_of_an_order_its_owner_left_unconfirmed() {
    use serde_json::json;
    let redis = Redis::start();
    let mut cl = Cluster::leased(
        &redis,
        "durability = \"replicated\"",
        10_000,
        "[payments]\nretry_every_s = 1\n",
    );
    for i in 0..3 {
        cl.nodes[i] = Some(cl.launch(i));
    }
    cl.wait_served();
    cl.seed(&|_| 100);
    let sku = "A0";
    let x = cl.owner_of(cl.config.shard_of(sku));
    // An order whose home is another node's.
    let (id, y) = (0..)
        .map(|i| format!("R-{i}"))
        .map(|id| {
            let y = cl.owner_of(cl.config.shard_of(&id));
            (id, y)
        })
        .find(|(_, y)| *y != x)
        .expect("an id");
    let z = 3 - x - y;
    // Paid slowly (3 s: `sandbox::SLOW`), so the owner of the SKU's shard
    // can be stopped between the hold and the confirm.
    let placing = {
        let url = cl.url(y, "/v1/orders");
        let body = json!({"id": id, "lines": [{"sku": sku, "qty": 1, "unit_price": "10.53"}],
            "delivery": {"type": "ship", "lat": 45.1, "lon": 9.1}, "payment": {"provider": "sandbox"}});
        std::thread::spawn(move || {
            let c = reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .expect("client");
            c.post(url).json(&body).send().map(|r| r.status().as_u16())
        })
    };
    std::thread::sleep(Duration::from_millis(1_500));
    let held = call(
        &client(),
        "GET",
        &cl.url(z, &format!("/v1/inventory/S000/{sku}")),
        None,
        None,
    );
    assert_eq!(
        held.1["reserved"], 1,
        "not held before the stop: {}",
        held.1
    );
    let stopped = std::process::Command::new("kill")
        .args([
            "-STOP",
            &cl.nodes[x].as_ref().expect("x").child.id().to_string(),
        ])
        .status()
        .expect("kill -STOP");
    assert!(stopped.success());
    // The order is journaled once paid (at 3 s); its confirm waits at x.
    std::thread::sleep(Duration::from_millis(3_000));
    drop(cl.nodes[y].take()); // SIGKILL
    drop(cl.nodes[x].take()); // SIGKILL: the confirm dies unread
    let placed = placing.join().expect("placing");
    assert!(
        !matches!(placed, Ok(201)),
        "placed before its confirm was stopped"
    );
    cl.wait_served();
    let c = client();
    let (st, o) = call(
        &c,
        "GET",
        &cl.url(z, &format!("/v1/orders/{id}")),
        None,
        None,
    );
    assert_eq!((st, o["status"].as_str()), (200, Some("confirmed")), "{o}");
    let rid = o["shipments"][0]["reservation_id"]
        .as_str()
        .expect("a hold")
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (st, r) = call(
            &c,
            "GET",
            &cl.url(z, &format!("/v1/reservations/{rid}")),
            None,
            None,
        );
        assert_eq!(st, 200, "{r}");
        if r["status"] == "confirmed" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the order's hold was not confirmed after the takeover: {r}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (_, rec) = call(
        &c,
        "GET",
        &cl.url(z, &format!("/v1/inventory/S000/{sku}")),
        None,
        None,
    );
    assert_eq!(
        (rec["on_hand"].as_i64(), rec["reserved"].as_i64()),
        (Some(100), Some(1)),
        "{rec}"
    );
}

/// Adyen's webhook through any cluster node: a delivery naming orders kept
/// by two shards is read by every shard, each keeping its own orders'
/// notices, once however often it comes; a forged one is refused and
/// nothing kept.
#[test]
fn an_adyen_delivery_reaches_the_orders_of_every_shard() {
    use common::adyen::{self, AdyenSim};
    use serde_json::json;
    const HMAC: &str = "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056";
    let sim = AdyenSim::start("AQEyhmfxK4-test-key", "HoldfastECOM");
    std::env::set_var("HOLDFAST_T_CLUSTER_ADYEN_KEY", "AQEyhmfxK4-test-key");
    std::env::set_var("HOLDFAST_T_CLUSTER_ADYEN_HMAC", HMAC);
    let node_config = format!(
        "[payments.adyen]\nbase_url = \"{}\"\nmerchant_account = \"HoldfastECOM\"\n\
         return_url = \"https://shop.example.com/checkout/return\"\n\
         api_key_env = \"HOLDFAST_T_CLUSTER_ADYEN_KEY\"\nhmac_key_env = \"HOLDFAST_T_CLUSTER_ADYEN_HMAC\"\n",
        sim.base_url()
    );
    let redis = Redis::start();
    let cl = Cluster::start(&redis, &node_config);
    cl.wait_served();
    cl.seed(&|_| 100);
    // Two orders kept by two shards.
    let ids: Vec<String> = {
        let mut v: Vec<String> = Vec::new();
        for i in 0.. {
            let id = format!("W-{i}");
            if v.iter()
                .all(|x| cl.config.shard_of(x) != cl.config.shard_of(&id))
            {
                v.push(id);
            }
            if v.len() == 2 {
                break;
            }
        }
        v
    };
    let c = client();
    let card = json!({"type": "scheme", "encryptedCardNumber": "test_4111111111111111",
        "encryptedExpiryMonth": "test_03", "encryptedExpiryYear": "test_2030", "encryptedSecurityCode": "test_737"});
    let mut items = Vec::new();
    for id in &ids {
        let body = json!({"id": id, "lines": [{"sku": "A1", "qty": 1, "unit_price": "20.00"}],
            "delivery": {"type": "ship", "lat": 45.1, "lon": 9.1}, "payment": {"provider": "adyen", "method": card}});
        let (st, o) = call(
            &c,
            "POST",
            &cl.url(0, "/v1/orders"),
            None,
            Some(&body.to_string()),
        );
        assert_eq!(st, 201, "{o}");
        let psp = o["payment"]["reference"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        items.push(adyen::item(
            &format!("SIMCAPTURE{id}"),
            &psp,
            id,
            2000,
            "CAPTURE",
            true,
        ));
    }
    let hook = cl.url(1, "/v1/webhooks/adyen");
    for _ in 0..2 {
        assert_eq!(
            adyen::webhook(&hook, &items, HMAC),
            (200, "[accepted]".into())
        );
    }
    let forged = adyen::webhook(&hook, &items, &"AB".repeat(32));
    assert_eq!(forged.0, 401, "{forged:?}");
    for id in &ids {
        let (st, o) = call(
            &c,
            "GET",
            &cl.url(2, &format!("/v1/orders/{id}")),
            None,
            None,
        );
        assert_eq!(st, 200, "{o}");
        let notices = o["payment"]["notices"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(notices.len(), 1, "{id}: {o}");
        assert_eq!(notices[0]["event"], "CAPTURE", "{o}");
    }
}
