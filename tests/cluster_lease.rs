//! Two nodes' lease keepers on a redis-server of the test's own: each takes
//! its own shards, the survivor takes over a crashed node's shards with a
//! new epoch, never two owners of a shard at one moment, and no ownership
//! outlives Redis.

mod common;

use common::redis::Redis;
use holdfast::cluster::lease::{LeaseKeeper, Placement};
use holdfast::cluster::LeaseTimings;
use std::time::{Duration, Instant};

const SHARDS: u32 = 4;

fn keeper(r: &Redis, index: u32, holder: &str) -> LeaseKeeper {
    LeaseKeeper::start(Placement {
        redis_url: r.url(),
        cluster: "t".into(),
        shards: SHARDS,
        index,
        nodes: 2,
        holder: holder.into(),
        timings: LeaseTimings {
            ttl_ms: 1_200,
            renew_ms: 200,
        },
        wait_aof: false,
        wait_replicas: 0,
        keep_when_unreachable: false,
        peers: vec![],
    })
    .expect("keeper")
}

/// Polls until `done` (checking at every look that no shard has two
/// owners), for at most `within`; how long it took.
fn until(
    within: Duration,
    keepers: &[&LeaseKeeper],
    mut done: impl FnMut() -> bool,
) -> Option<Duration> {
    let t0 = Instant::now();
    while t0.elapsed() < within {
        for s in 0..SHARDS {
            let owners = keepers.iter().filter(|k| k.owns(s).is_some()).count();
            assert!(owners <= 1, "shard {s} has {owners} owners");
        }
        if done() {
            return Some(t0.elapsed());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}

#[test]
fn a_survivor_takes_over_and_a_shard_never_has_two_owners() {
    let mut r = Redis::start();
    let mut n1 = keeper(&r, 0, "n1/1");
    let n2 = keeper(&r, 1, "n2/1");
    let placed = until(Duration::from_secs(5), &[&n1, &n2], || {
        n1.owned() == vec![(0, 1), (2, 1)] && n2.owned() == vec![(1, 1), (3, 1)]
    });
    assert!(placed.is_some(), "n1 {:?}, n2 {:?}", n1.owned(), n2.owned());
    // Still so after the takeover delay: nobody takes a live owner's shard.
    std::thread::sleep(Duration::from_millis(1_500));
    assert_eq!(n1.owned(), vec![(0, 1), (2, 1)]);

    // n1 stops renewing, as a crash would: n2 takes its shards, epoch 2.
    n1.stop();
    let took = until(Duration::from_secs(5), &[&n1, &n2], || {
        n2.owned() == vec![(0, 2), (1, 1), (2, 2), (3, 1)]
    });
    assert!(took.is_some(), "n2 {:?}", n2.owned());

    // n1 back as a new incarnation: its shards are n2's now.
    let n1b = keeper(&r, 0, "n1/2");
    until(Duration::from_secs(1), &[&n1b, &n2], || false);
    assert_eq!(n1b.owned(), vec![]);
    assert_eq!(n2.owned().len(), 4);

    // Redis gone: no ownership outlives the lease it can no longer renew.
    r.kill();
    let gone = until(Duration::from_secs(5), &[&n1b, &n2], || {
        n2.owned().is_empty()
    });
    assert!(gone.is_some(), "n2 {:?}", n2.owned());
}
