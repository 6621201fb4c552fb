//! Three `holdfast serve --cluster` nodes on 127.0.0.1 and a
//! `redis-server` of the test's own, each node reaching Redis through a
//! proxy of its own that the test can cut (`RedisCut`): the faults of
//! tests/cluster_nodes.rs and tests/cluster_faults.rs.

use super::{call, client, free_port, Server};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A TCP proxy to Redis for one node. `cut` drops every connection and
/// refuses new ones (accepted, then closed) until `heal`: the node alone
/// loses Redis, as a partition would.
pub struct RedisCut {
    pub port: u16,
    cut: Arc<AtomicBool>,
    live: Arc<Mutex<Vec<TcpStream>>>,
}

impl RedisCut {
    pub fn start(redis_port: u16) -> RedisCut {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        let cut = Arc::new(AtomicBool::new(false));
        let live: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (c, lv) = (cut.clone(), live.clone());
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(client) = s else { continue };
                if c.load(Ordering::Acquire) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", redis_port)) else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                {
                    let mut v = lv.lock().expect("lock");
                    v.extend(
                        [client.try_clone(), server.try_clone()]
                            .into_iter()
                            .flatten(),
                    );
                }
                pipe(&client, &server);
                pipe(&server, &client);
            }
        });
        RedisCut { port, cut, live }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn cut(&self) {
        self.cut.store(true, Ordering::Release);
        for s in self.live.lock().expect("lock").drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    pub fn heal(&self) {
        self.cut.store(false, Ordering::Release);
    }
}

fn pipe(from: &TcpStream, to: &TcpStream) {
    let (Ok(mut from), Ok(mut to)) = (from.try_clone(), to.try_clone()) else {
        return;
    };
    std::thread::spawn(move || {
        let mut buf = [0u8; 16384];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}

pub struct Cluster {
    pub nodes: Vec<Option<Server>>,
    pub ports: Vec<u16>,
    pub cuts: Vec<RedisCut>,
    pub ttl_ms: u64,
    files: Vec<PathBuf>,
    dirs: Vec<PathBuf>,
    node_config: String,
    _tmp: tempfile::TempDir,
}

impl Cluster {
    /// Three nodes on the Redis at `redis_port` (each through its own
    /// `RedisCut`), cluster.toml's `[replication]` section `replication`,
    /// leases of `ttl_ms` (renewed every fifth), holdfast.toml
    /// `node_config`; none started.
    pub fn new(redis_port: u16, replication: &str, ttl_ms: u64, node_config: &str) -> Cluster {
        let tmp = tempfile::tempdir().expect("tmp");
        let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let cuts: Vec<RedisCut> = (0..3).map(|_| RedisCut::start(redis_port)).collect();
        let dirs: Vec<PathBuf> = (0..3)
            .map(|i| tmp.path().join(format!("n{}", i + 1)))
            .collect();
        let mut nodes = String::new();
        for (i, p) in ports.iter().enumerate() {
            nodes.push_str(&format!(
                "[[nodes]]\nid = \"n{}\"\nhttp = \"127.0.0.1:{p}\"\ndata_dir = \"{}\"\n",
                i + 1,
                dirs[i].display()
            ));
        }
        let files = (0..3)
            .map(|i| {
                let text = format!(
                    "cluster = \"t\"\nshards = 4\nredis_url = \"{}\"\n[replication]\n{replication}\n\
                     [lease]\nttl_ms = {ttl_ms}\nrenew_ms = {}\n{nodes}",
                    cuts[i].url(),
                    ttl_ms / 5
                );
                holdfast::cluster::ClusterConfig::parse(&text).expect("valid cluster.toml");
                let f = tmp.path().join(format!("cluster-n{}.toml", i + 1));
                std::fs::write(&f, text).expect("cluster.toml");
                f
            })
            .collect();
        Cluster {
            nodes: vec![None, None, None],
            ports,
            cuts,
            ttl_ms,
            files,
            dirs,
            node_config: node_config.to_string(),
            _tmp: tmp,
        }
    }

    /// `new`, every node started, a leader agreed on.
    pub fn start(redis_port: u16, replication: &str, ttl_ms: u64, node_config: &str) -> Cluster {
        let mut c = Cluster::new(redis_port, replication, ttl_ms, node_config);
        for i in 0..3 {
            c.launch(i);
        }
        c.wait_leader();
        c
    }

    pub fn launch(&mut self, i: usize) {
        self.nodes[i] = Some(Server::start_node(
            &self.files[i],
            &format!("n{}", i + 1),
            self.ports[i],
            &self.dirs[i],
            &self.node_config,
        ));
    }

    /// SIGKILL, and waited for.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut s) = self.nodes[i].take() {
            let _ = s.child.kill();
            let _ = s.child.wait();
        }
    }

    pub fn signal(&self, i: usize, sig: &str) {
        let pid = self.nodes[i].as_ref().expect("running").pid();
        let ok = std::process::Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill {sig} {pid}");
    }

    pub fn url(&self, i: usize, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.ports[i])
    }

    pub fn live(&self) -> Vec<usize> {
        (0..3).filter(|i| self.nodes[*i].is_some()).collect()
    }

    /// Node `i`'s `/v1/cluster`.
    pub fn view(&self, i: usize) -> Value {
        let (st, v) = call(&client(), "GET", &self.url(i, "/v1/cluster"), None, None);
        assert_eq!(st, 200, "{v}");
        v
    }

    /// The node that says it leads, once every live node names it as the
    /// leader under one epoch.
    pub fn wait_leader(&self) -> usize {
        self.wait_leader_within(Duration::from_secs(30))
    }

    pub fn wait_leader_within(&self, within: Duration) -> usize {
        let deadline = Instant::now() + within;
        loop {
            let views: Vec<(usize, Value)> =
                self.live().into_iter().map(|i| (i, self.view(i))).collect();
            let leading: Vec<usize> = views
                .iter()
                .filter(|(_, v)| v["role"] == "leader")
                .map(|(i, _)| *i)
                .collect();
            if let [l] = leading[..] {
                let name = format!("n{}", l + 1);
                let epoch = &views.iter().find(|(i, _)| *i == l).expect("leader").1["epoch"];
                if views
                    .iter()
                    .all(|(_, v)| v["leader"]["node"] == name.as_str() && &v["epoch"] == epoch)
                {
                    return l;
                }
            }
            assert!(Instant::now() < deadline, "no leader agreed on: {views:?}");
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Waits until every live node's copy ends at the same record.
    pub fn wait_copies_equal(&self) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let seqs: Vec<u64> = self
                .live()
                .into_iter()
                .map(|i| self.view(i)["applied_seq"].as_u64().unwrap_or(0))
                .collect();
            if seqs.iter().all(|s| *s == seqs[0]) && seqs[0] > 0 {
                return seqs[0];
            }
            assert!(Instant::now() < deadline, "copies at {seqs:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SKUs `A0..A{skus}` with `on_hand` each at store S000, written
    /// through node `via`.
    pub fn seed(&self, via: usize, skus: usize, on_hand: i64) {
        let c = client();
        for i in 0..skus {
            let (st, b) = call(
                &c,
                "PUT",
                &self.url(via, &format!("/v1/skus/A{i}")),
                None,
                Some(r#"{"name":"x"}"#),
            );
            assert_eq!(st, 200, "{b}");
        }
        let (st, b) = call(
            &c,
            "PUT",
            &self.url(via, "/v1/locations/S000"),
            None,
            Some(r#"{"name":"s","kind":"store","lat":45.0,"lon":9.0,"ship":true}"#),
        );
        assert_eq!(st, 200, "{b}");
        let items: Vec<Value> = (0..skus)
            .map(|i| serde_json::json!({"location": "S000", "sku": format!("A{i}"), "on_hand": on_hand}))
            .collect();
        let (st, b) = call(
            &c,
            "POST",
            &self.url(via, "/v1/inventory/batch"),
            None,
            Some(&serde_json::json!({ "items": items }).to_string()),
        );
        assert_eq!((st, b["applied"].as_u64()), (200, Some(skus as u64)), "{b}");
    }
}

/// A hold of `qty` of `sku` at S000 through `url`, with an
/// `Idempotency-Key` if given: the status and body, or `None` when the
/// answer never came.
pub fn reserve(url: &str, sku: &str, qty: u32, key: Option<&str>) -> Option<(u16, Value)> {
    let c = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .ok()?;
    let mut req = c.post(url).header("content-type", "application/json");
    if let Some(key) = key {
        req = req.header("idempotency-key", key);
    }
    let r = req
        .body(format!(
            r#"{{"lines":[{{"sku":"{sku}","qty":{qty},"location":"S000"}}],"ttl_s":3600}}"#
        ))
        .send()
        .ok()?;
    let st = r.status().as_u16();
    Some((st, r.json().unwrap_or(Value::Null)))
}

/// GET, retried while the answer is 503 (no leader for a moment, as its
/// Retry-After says) for up to 20 s.
pub fn get_retrying(url: &str) -> (u16, Value) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (st, v) = call(&client(), "GET", url, None, None);
        if st != 503 || Instant::now() > deadline {
            return (st, v);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
