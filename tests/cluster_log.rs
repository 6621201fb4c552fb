//! The shard log on a real `redis-server` of the test's own: leases and
//! their epochs, fenced appends, sequence rules, followers, published
//! snapshots and the trim behind them, Redis down.

mod common;

use common::redis::Redis;
use holdfast::cluster::log::{Appended, Fence, Follower, LogError, Resync, ShardLog};
use std::time::Duration;

const TTL: Duration = Duration::from_millis(300);

fn open(r: &Redis) -> ShardLog {
    ShardLog::open(&r.url(), "t", Duration::from_secs(2)).expect("connect")
}

fn fence(holder: &str, epoch: u64) -> Fence {
    Fence {
        holder: holder.into(),
        epoch,
    }
}

fn events(range: std::ops::RangeInclusive<u64>) -> Vec<Vec<u8>> {
    range.map(|i| format!("event {i}").into_bytes()).collect()
}

#[test]
fn one_owner_an_epoch_and_a_stale_owner_cannot_write() {
    let r = Redis::start();
    let (mut a, mut b) = (open(&r), open(&r));
    assert_eq!(a.acquire(0, "n1/1", TTL, 0), Ok(Some(1)));
    assert_eq!(b.acquire(0, "n2/1", TTL, 0), Ok(None), "held by n1");
    assert_eq!(
        a.acquire(0, "n1/1", TTL, 0),
        Ok(Some(1)),
        "a renewal, same epoch"
    );
    assert_eq!(
        b.acquire(1, "n2/1", TTL, 0),
        Ok(Some(1)),
        "shards are apart"
    );
    // n1 restarted (a new incarnation): it waits for its own old lease.
    assert_eq!(b.acquire(0, "n1/2", TTL, 0), Ok(None));
    assert!(a.renew(0, "n1/1", 1, TTL).expect("renew"));
    assert!(!b.renew(0, "n2/1", 1, TTL).expect("renew"), "not its lease");
    assert!(matches!(
        a.append(0, &fence("n1/1", 1), 1, &events(1..=3)),
        Ok(Appended::Added { .. })
    ));

    // n1 stops renewing; the lease lapses; n2 takes the shard, epoch 2.
    std::thread::sleep(TTL + Duration::from_millis(100));
    assert_eq!(b.acquire(0, "n2/1", TTL, 0), Ok(Some(2)));
    assert_eq!(b.owner(0), Ok(Some(("n2/1".to_string(), 2))));
    assert!(!a.renew(0, "n1/1", 1, TTL).expect("renew"), "n1 lost it");
    // The old owner, back, is refused by Redis itself.
    assert_eq!(
        a.append(0, &fence("n1/1", 1), 4, &events(4..=4)),
        Err(LogError::Stale { current: 2 })
    );
    assert!(matches!(
        b.append(0, &fence("n2/1", 2), 4, &events(4..=5)),
        Ok(Appended::Added { .. })
    ));
    let seen: Vec<(u64, u64)> = a
        .read(0, "0-0", 100)
        .expect("read")
        .iter()
        .map(|e| (e.seq, e.epoch))
        .collect();
    assert_eq!(seen, vec![(1, 1), (2, 1), (3, 1), (4, 2), (5, 2)]);
    // A lease that lapsed with nobody taking it comes back with a new epoch.
    std::thread::sleep(TTL + Duration::from_millis(100));
    assert_eq!(a.acquire(0, "n1/2", TTL, 0), Ok(Some(3)));
}

#[test]
fn sequence_numbers_follow_and_a_retry_is_applied_once() {
    let r = Redis::start();
    let mut log = open(&r);
    let epoch = log
        .acquire(7, "n1/1", Duration::from_secs(30), 0)
        .expect("ok")
        .expect("epoch");
    assert!(matches!(
        log.append(7, &fence("n1/1", epoch), 1, &events(1..=3)),
        Ok(Appended::Added { .. })
    ));
    assert_eq!(
        log.append(7, &fence("n1/1", epoch), 1, &events(1..=3)),
        Ok(Appended::Duplicate)
    );
    assert_eq!(
        log.append(7, &fence("n1/1", epoch), 2, &events(2..=2)),
        Ok(Appended::Duplicate)
    );
    assert_eq!(
        log.append(7, &fence("n1/1", epoch), 5, &events(5..=5)),
        Err(LogError::Gap { expected: 4 })
    );
    assert_eq!(
        log.append(7, &fence("n1/1", epoch), 3, &events(3..=4)),
        Err(LogError::Gap { expected: 4 }),
        "an overlap is not a retry"
    );
    assert_eq!(log.last_seq(7), Ok(3));
    let all = log.read(7, "0-0", 100).expect("read");
    assert_eq!(all.len(), 3, "the refused appends left nothing");
    assert_eq!(all[2].data, b"event 3".to_vec());
    // Read in pages, after an id.
    let tail = log.read(7, &all[0].id, 1).expect("read");
    assert_eq!(tail.len(), 1);
    assert_eq!(tail[0].seq, 2);
}

#[test]
fn followers_resume_from_a_published_snapshot_and_see_trimmed_gaps() {
    let r = Redis::start();
    let mut log = open(&r);
    let epoch = log
        .acquire(3, "n1/1", Duration::from_secs(30), 0)
        .expect("ok")
        .expect("epoch");
    log.append(3, &fence("n1/1", epoch), 1, &events(1..=5))
        .expect("append");
    let all = log.read(3, "0-0", 100).expect("read");

    // A follower from the start applies each once, however often delivered.
    let mut f = Follower::default();
    let applied: Vec<u64> = all
        .iter()
        .chain(all.iter())
        .filter(|e| f.accept(e).expect("in order"))
        .map(|e| e.seq)
        .collect();
    assert_eq!(applied, vec![1, 2, 3, 4, 5]);

    // Refused: a stale epoch, an entry not holding the sequence, an old seq.
    assert_eq!(
        log.publish_snapshot(3, &fence("n1/1", epoch + 1), 3, &all[2].id, b"state@3"),
        Err(LogError::Stale { current: epoch })
    );
    assert!(matches!(
        log.publish_snapshot(3, &fence("n1/1", epoch), 3, &all[1].id, b"state@3"),
        Err(LogError::Snapshot(_))
    ));
    log.publish_snapshot(3, &fence("n1/1", epoch), 3, &all[2].id, b"state@3")
        .expect("publish");
    assert!(matches!(
        log.publish_snapshot(3, &fence("n1/1", epoch), 2, &all[1].id, b"state@2"),
        Err(LogError::Snapshot(_))
    ));
    let p = log.snapshot(3).expect("read").expect("published");
    assert_eq!(
        (p.seq, p.epoch, p.data.as_slice()),
        (3, epoch, &b"state@3"[..])
    );

    // Trimmed up to the snapshot's entry, never past it.
    let left: Vec<u64> = log
        .read(3, "0-0", 100)
        .expect("read")
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(left, vec![4, 5]);
    // A new node bootstraps from the snapshot and the rest of the stream.
    let mut g = Follower::at(&p);
    let rest = log.read(3, &g.after.clone(), 100).expect("read");
    assert!(rest.iter().all(|e| g.accept(e).expect("no gap")));
    assert_eq!(g.next_seq, 6);
    // A follower that was behind the trim finds the gap and must resync.
    let mut behind = Follower::default();
    behind.accept(&all[0]).expect("1");
    let next = log.read(3, &behind.after.clone(), 100).expect("read");
    assert_eq!(
        behind.accept(&next[0]),
        Err(Resync::Gap {
            expected: 2,
            got: 4
        })
    );
}

#[test]
fn redis_down_is_an_error_never_a_silent_write() {
    let mut r = Redis::start();
    let mut log = open(&r);
    let epoch = log
        .acquire(0, "n1/1", Duration::from_secs(30), 0)
        .expect("ok")
        .expect("epoch");
    log.append(0, &fence("n1/1", epoch), 1, &events(1..=1))
        .expect("append");
    r.kill();
    assert!(matches!(
        log.append(0, &fence("n1/1", epoch), 2, &events(2..=2)),
        Err(LogError::Redis(_))
    ));
    assert!(matches!(
        log.renew(0, "n1/1", epoch, TTL),
        Err(LogError::Redis(_))
    ));
    assert!(ShardLog::open(&r.url(), "t", Duration::from_millis(500)).is_err());
}

/// A Redis failover can lose the last writes of the lease and the epoch
/// counter. The next epoch is still above every epoch the stream, the
/// snapshot or the taker has seen, and a holder is fenced by its name as
/// well as its epoch.
#[test]
fn epochs_are_never_handed_out_twice_even_when_redis_forgets_the_counter() {
    let r = Redis::start();
    let mut log = open(&r);
    let long = Duration::from_secs(30);
    let e1 = log.acquire(0, "n1/1", long, 0).expect("ok").expect("epoch");
    log.append(0, &fence("n1/1", e1), 1, &events(1..=2))
        .expect("append");
    // A second holder name under the same epoch is not the lease's.
    assert_eq!(
        log.append(0, &fence("n2/1", e1), 3, &events(3..=3)),
        Err(LogError::Stale { current: e1 })
    );
    // What a failover could lose: the lease and the counter, not the
    // (replicated) stream.
    let mut raw = redis::Client::open(r.url())
        .expect("client")
        .get_connection()
        .expect("conn");
    let _: () = redis::cmd("DEL")
        .arg("holdfast:t:lease:0")
        .arg("holdfast:t:epoch:0")
        .query(&mut raw)
        .expect("del");
    let e2 = log.acquire(0, "n2/1", long, 0).expect("ok").expect("epoch");
    assert_eq!(e2, e1 + 1, "above the stream's last entry");
    // And the entries themselves may be lost: the taker's floor counts.
    let _: () = redis::cmd("DEL")
        .arg("holdfast:t:lease:0")
        .arg("holdfast:t:epoch:0")
        .arg("holdfast:t:shard:0")
        .query(&mut raw)
        .expect("del");
    let e3 = log
        .acquire(0, "n3/1", long, e2)
        .expect("ok")
        .expect("epoch");
    assert_eq!(e3, e2 + 1, "above the floor");
    assert_eq!(
        log.append(0, &fence("n2/1", e2), 3, &events(3..=3)),
        Err(LogError::Stale { current: e3 })
    );
}

/// The stream id of a sequence number, found by a binary search over the
/// ids' milliseconds: every entry's, in batches spread over time and many
/// in one millisecond; none for numbers the stream does not hold (trimmed
/// or not yet written).
#[test]
fn the_entry_of_a_sequence_number_is_found() {
    let r = Redis::start();
    let mut log = open(&r);
    let epoch = log
        .acquire(1, "n1/1", Duration::from_secs(30), 0)
        .expect("ok")
        .expect("epoch");
    assert_eq!(log.id_of(1, 1), Ok(None), "an empty stream");
    let mut next = 1;
    for batch in 0..40u64 {
        let n = 1 + batch % 7;
        log.append(1, &fence("n1/1", epoch), next, &events(next..=next + n - 1))
            .expect("append");
        next += n;
        if batch % 3 == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    let all = log.read(1, "0-0", 1000).expect("read");
    assert_eq!(all.len() as u64, next - 1);
    for e in &all {
        assert_eq!(log.id_of(1, e.seq), Ok(Some(e.id.clone())), "seq {}", e.seq);
    }
    assert_eq!(log.id_of(1, next), Ok(None), "not written yet");
    log.publish_snapshot(1, &fence("n1/1", epoch), 50, &all[49].id, b"s")
        .expect("publish");
    assert_eq!(
        log.id_of(1, 50),
        Ok(None),
        "trimmed with the snapshot's entry"
    );
    assert_eq!(log.id_of(1, 51), Ok(Some(all[50].id.clone())));
}

/// A log that lost what an owner holds only as a snapshot starts again
/// from it: published with no entry, the sequence set to it, appends
/// continuing after it, a new follower starting from it; refused under a
/// stale lease, a no-op where the log already reaches it.
#[test]
fn a_log_that_lost_everything_is_seeded_from_a_snapshot() {
    let r = Redis::start();
    let mut log = open(&r);
    let epoch = log
        .acquire(2, "n1/1", Duration::from_secs(30), 0)
        .expect("ok")
        .expect("epoch");
    log.append(2, &fence("n1/1", epoch), 1, &events(1..=3))
        .expect("append");
    assert!(matches!(
        log.seed(2, &fence("n1/1", epoch + 1), 40, b"state@40"),
        Err(LogError::Stale { .. })
    ));
    assert_eq!(log.seed(2, &fence("n1/1", epoch), 3, b"state@3"), Ok(false));
    assert_eq!(
        log.last_seq(2),
        Ok(3),
        "the log reaches it: nothing changed"
    );
    assert_eq!(
        log.seed(2, &fence("n1/1", epoch), 40, b"state@40"),
        Ok(true)
    );
    assert_eq!(log.last_seq(2), Ok(40));
    assert_eq!(
        log.read(2, "0-0", 10).expect("read"),
        vec![],
        "older entries dropped"
    );
    assert_eq!(
        log.append(2, &fence("n1/1", epoch), 4, &events(4..=4)),
        Ok(Appended::Duplicate),
        "within the snapshot"
    );
    assert_eq!(
        log.append(2, &fence("n1/1", epoch), 45, &events(45..=45)),
        Err(LogError::Gap { expected: 41 })
    );
    log.append(2, &fence("n1/1", epoch), 41, &events(41..=42))
        .expect("append");
    let p = log.snapshot(2).expect("read").expect("seeded");
    assert_eq!((p.seq, p.data.as_slice()), (40, &b"state@40"[..]));
    let mut f = Follower::at(&p);
    let rest = log.read(2, &f.after.clone(), 10).expect("read");
    let applied: Vec<u64> = rest
        .iter()
        .filter(|e| f.accept(e).expect("in order"))
        .map(|e| e.seq)
        .collect();
    assert_eq!(applied, vec![41, 42]);
    assert_eq!(log.seed(2, &fence("n1/1", epoch), 41, b"x"), Ok(false));
    // A new epoch stays above the seeded snapshot's.
    log.release(2, "n1/1").expect("release");
    let next = log
        .acquire(2, "n2/1", Duration::from_secs(30), 0)
        .expect("ok")
        .expect("epoch");
    assert!(next > epoch);
}
