//! Three nodes' lease keepers on a redis-server of the test's own: the
//! first takes the network's lease, a survivor takes it over with a new
//! epoch once it lapses, never two holders at one moment, and no lease
//! outlives Redis.

mod common;

use common::redis::Redis;
use holdfast::cluster::lease::{LeaseKeeper, Placement};
use holdfast::cluster::{LeaseTimings, PARTITION};
use std::time::{Duration, Instant};

fn keeper(r: &Redis, index: u32, holder: &str) -> LeaseKeeper {
    LeaseKeeper::start(Placement {
        redis_url: r.url(),
        cluster: "t".into(),
        index,
        holder: holder.into(),
        timings: LeaseTimings {
            ttl_ms: 1_200,
            renew_ms: 200,
        },
        wait_aof: false,
        wait_replicas: 0,
    })
    .expect("keeper")
}

/// Polls until `done` (checking at every look that the lease has at most
/// one holder), for at most `within`; how long it took.
fn until(
    within: Duration,
    keepers: &[&LeaseKeeper],
    mut done: impl FnMut() -> bool,
) -> Option<Duration> {
    let t0 = Instant::now();
    while t0.elapsed() < within {
        let holders = keepers
            .iter()
            .filter(|k| k.owns(PARTITION).is_some())
            .count();
        assert!(holders <= 1, "{holders} holders");
        if done() {
            return Some(t0.elapsed());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}

#[test]
fn a_survivor_takes_over_and_the_lease_never_has_two_holders() {
    let mut r = Redis::start();
    let mut n1 = keeper(&r, 0, "n1/1");
    let n2 = keeper(&r, 1, "n2/1");
    let n3 = keeper(&r, 2, "n3/1");
    let all = |a: &LeaseKeeper| [a.owns(PARTITION), n2.owns(PARTITION), n3.owns(PARTITION)];
    let placed = until(Duration::from_secs(5), &[&n1, &n2, &n3], || {
        all(&n1) == [Some(1), None, None]
    });
    assert!(placed.is_some(), "{:?}", all(&n1));
    // Still so after the takeover delay: nobody takes a live holder's lease.
    until(Duration::from_millis(1_500), &[&n1, &n2, &n3], || false);
    assert_eq!(all(&n1), [Some(1), None, None]);

    // n1 stops renewing, as a crash would: one survivor takes it, epoch 2.
    n1.stop();
    let took = until(Duration::from_secs(5), &[&n1, &n2, &n3], || {
        n2.owns(PARTITION).or(n3.owns(PARTITION)) == Some(2)
    });
    assert!(took.is_some(), "{:?}", all(&n1));

    // n1 back as a new incarnation: the lease stays where it is.
    let n1b = keeper(&r, 0, "n1/2");
    until(Duration::from_secs(2), &[&n1b, &n2, &n3], || false);
    assert_eq!(n1b.owns(PARTITION), None);
    assert_eq!(n2.owns(PARTITION).or(n3.owns(PARTITION)), Some(2));

    // Redis gone: no lease outlives what it can no longer renew.
    r.kill();
    let gone = until(Duration::from_secs(5), &[&n1b, &n2, &n3], || {
        n2.owns(PARTITION).or(n3.owns(PARTITION)).is_none()
    });
    assert!(gone.is_some());
}
