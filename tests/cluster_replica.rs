//! A cluster shard's copies on a `redis-server` of the test's own: the
//! owner's engine ships every committed record to the shard's stream; a
//! follower's mirror keeps the same state (same records under the same
//! numbers); when the owner's lease lapses the follower takes the shard
//! with the next epoch and serves from the last record it applied; the old
//! owner's next write is refused by the fence and acknowledged to nobody,
//! and back as a follower it drops the tail the cluster never took.

mod common;

use common::redis::Redis;
use common::sim::{hold_one, one_record, rt};
use holdfast::actors::{CartLine, Engine, EngineConfig, EngineError, Start};
use holdfast::clock::ManualClock;
use holdfast::cluster::log::{Fence, ShardLog};
use holdfast::cluster::replica::{Mirror, StreamShip};
use holdfast::domain::reservation::Reservation;
use holdfast::metrics::Metrics;
use holdfast::persistence::journal::Replication;
use holdfast::persistence::snapshot::SnapshotStore;
use holdfast::persistence::{Durability, JournalError, RealStorage};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Long enough for a first owner to seed and ship on a busy machine
/// (the leases here are never renewed).
const TTL: Duration = Duration::from_millis(1_000);

fn log(r: &Redis) -> ShardLog {
    ShardLog::open(&r.url(), "t", Duration::from_secs(2)).expect("connect")
}

fn mirror(dir: &Path, log: &mut ShardLog) -> Mirror {
    Mirror::open(dir, Arc::new(RealStorage), Durability::Fsync, log, 0, None).expect("mirror")
}

/// The engine of the shard's owner, started on what `m` holds.
fn own(r: &Redis, dir: &Path, m: Mirror, holder: &str, epoch: u64, clock: &ManualClock) -> Engine {
    let recovered = m.promote().expect("promote");
    Engine::open_with(
        &EngineConfig {
            data_dir: dir.to_path_buf(),
            durability: Durability::Fsync,
            shards: 2,
            snapshot: None,
            sourcing: Default::default(),
            feed_window: Duration::from_millis(2),
        },
        Arc::new(RealStorage),
        Arc::new(clock.clone()),
        Arc::new(Metrics::default()),
        Start {
            recovered: Some(recovered),
            replication: Some(Replication {
                hook: Box::new(StreamShip::new(
                    &r.url(),
                    "t",
                    0,
                    Fence {
                        holder: holder.into(),
                        epoch,
                    },
                    Duration::from_secs(1),
                )),
                ack_after: true,
                batch_max: 64,
                shipped: 0,
            }),
        },
    )
    .expect("open")
    .0
}

/// Node a takes shard 0 with epoch 1, serves it, and counts 20 units of
/// its one stock record: its connection and its engine.
fn first_owner(
    r: &Redis,
    dir: &Path,
    clock: &ManualClock,
    rt: &tokio::runtime::Runtime,
) -> (ShardLog, Engine) {
    let mut l = log(r);
    assert_eq!(l.acquire(0, "a/1", TTL, 0), Ok(Some(1)));
    let m = mirror(dir, &mut l);
    let a = own(r, dir, m, "a/1", 1, clock);
    rt.block_on(one_record(&a, 20));
    (l, a)
}

fn sorted(mut v: Vec<Reservation>) -> Vec<Reservation> {
    v.sort_by(|a, b| a.id.as_str().cmp(b.id.as_str()));
    v
}

/// The mirror's state equals the engine's: stock and reservations.
fn same_state(rt: &tokio::runtime::Runtime, m: &Mirror, e: &Engine) {
    let (_, stock, res) = rt.block_on(e.dump()).expect("dump");
    assert_eq!(m.model().read().stock, stock, "stock records");
    assert_eq!(
        sorted(m.model().read().reservations.values().cloned().collect()),
        sorted(res),
        "reservations"
    );
}

#[test]
fn a_follower_takes_over_and_the_old_owner_is_fenced_then_rebuilt() {
    let redis = Redis::start();
    let tmp = tempfile::tempdir().expect("tmp");
    let (dir_a, dir_b) = (tmp.path().join("a"), tmp.path().join("b"));
    let clock = ManualClock::new(1_700_000_000_000);
    let rt = rt();

    // Node a takes shard 0 (epoch 1) and serves it.
    let (mut log_a, a) = first_owner(&redis, &dir_a, &clock, &rt);
    let mut held = Vec::new();
    for _ in 0..12 {
        held.push(rt.block_on(hold_one(&a, 600)));
    }
    let last_a = a
        .journal()
        .stats
        .last_seq
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        log_a.last_seq(0),
        Ok(last_a),
        "every acknowledged record is in the stream"
    );

    // Node b follows: the same records, the same state.
    let mut log_b = log(&redis);
    let mut b_copy = mirror(&dir_b, &mut log_b);
    b_copy.catch_up(&mut log_b).expect("catch up");
    assert_eq!(b_copy.last_seq(), last_a);
    same_state(&rt, &b_copy, &a);

    // Node a stops renewing (as if it hung); its lease lapses and b takes
    // the shard with the next epoch, from the last record it applied.
    std::thread::sleep(TTL + Duration::from_millis(150));
    assert_eq!(log_b.acquire(0, "b/1", TTL, b_copy.epoch()), Ok(Some(2)));
    b_copy.catch_up(&mut log_b).expect("catch up");
    let b = own(&redis, &dir_b, b_copy, "b/1", 2, &clock);
    let (_, _, res) = rt.block_on(b.dump()).expect("dump");
    assert_eq!(res.len(), 12, "every hold a acknowledged is b's");
    // Only 20 - 12 = 8 units are left: b never oversells what a held.
    let cart = [CartLine::on_hand(0, 0, 9)];
    let short = rt
        .block_on(b.reserve(&cart, false, 600, None))
        .expect("engine");
    assert!(short.is_err(), "9 of 8 available");
    for _ in 0..3 {
        rt.block_on(hold_one(&b, 600));
    }

    // a, stale, tries to write (a hold it would grant: it sees 8 units):
    // the fence refuses it, nobody is told it happened, and a refuses
    // every write from then on.
    let one = [CartLine { qty: 1, ..cart[0] }];
    let refused = rt.block_on(a.reserve(&one, false, 600, None));
    assert!(
        matches!(
            refused,
            Err(EngineError::Storage(JournalError::Replication(ref e))) if e.contains("stale")
        ),
        "{refused:?}"
    );
    let again = rt.block_on(a.reserve(&one, false, 600, None));
    assert!(matches!(again, Err(EngineError::Storage(_))), "{again:?}");
    let epochs: Vec<(u64, u64)> = log_b
        .read(0, "0-0", 10_000)
        .expect("read")
        .iter()
        .map(|e| (e.seq, e.epoch))
        .collect();
    assert_eq!(epochs.len() as u64, last_a + 3);
    for (i, (seq, epoch)) in epochs.iter().enumerate() {
        assert_eq!(*seq, i as u64 + 1, "one sequence, no gap");
        assert_eq!(*epoch, if *seq <= last_a { 1 } else { 2 }, "seq {seq}");
    }

    // a restarts as a follower: its journal ends with the refused hold,
    // which the stream holds no record of under that number: it rebuilds
    // from the stream and ends at b's state.
    a.shutdown();
    drop(a);
    let mut a_copy = mirror(&dir_a, &mut log_a);
    assert_eq!(
        a_copy.last_seq(),
        0,
        "the tail the cluster never took is dropped"
    );
    a_copy.catch_up(&mut log_a).expect("catch up");
    assert_eq!(a_copy.last_seq(), last_a + 3);
    same_state(&rt, &a_copy, &b);
    assert_eq!(
        a_copy.model().read().reservations.len(),
        15,
        "12 holds of epoch 1, 3 of epoch 2, not a's refused one"
    );
    drop(held);

    // A follower whose copy is the stream's resumes where it stopped.
    b.shutdown();
    drop(b);
    let b_again = mirror(&dir_b, &mut log_b);
    assert_eq!(
        b_again.last_seq(),
        last_a + 3,
        "b's own records are the stream's"
    );
    assert_eq!(b_again.epoch(), 2);
}

/// `wait_replicas`: a batch counts as shipped only once a Redis replica
/// has it: refused while there is none, taken once one has synced, and the
/// replica holds the events. `wait_aof` on a Redis that cannot (no AOF, or
/// older than 7.2) refuses rather than pretends.
#[test]
fn shipping_waits_for_redis_replicas_when_asked() {
    use holdfast::persistence::journal::Replicate;
    let primary = Redis::start();
    let mut log = log(&primary);
    assert_eq!(
        log.acquire(0, "a/1", Duration::from_secs(30), 0),
        Ok(Some(1))
    );
    let fence = Fence {
        holder: "a/1".into(),
        epoch: 1,
    };
    let ship = |aof: bool, replicas: u32, patience_ms: u64| {
        StreamShip::new(
            &primary.url(),
            "t",
            0,
            fence.clone(),
            Duration::from_millis(patience_ms),
        )
        .waiting_for(aof, replicas)
    };
    let events: Vec<Vec<u8>> = (0..3).map(|i| format!("event {i}").into_bytes()).collect();
    let refs: Vec<&[u8]> = events.iter().map(Vec::as_slice).collect();

    let alone = ship(false, 1, 400).ship(1, &refs[..1]);
    assert!(
        matches!(&alone, Err(e) if e.contains("0 of 1 replicas")),
        "{alone:?}"
    );
    let replica = Redis::replica_of(&primary);
    assert_eq!(
        ship(false, 1, 5000).ship(1, &refs[..1]),
        Ok(()),
        "a retry once a replica has it"
    );
    assert_eq!(ship(false, 1, 5000).ship(2, &refs[1..]), Ok(()));
    assert!(
        replica.command("XLEN holdfast:t:shard:0").contains(":3"),
        "the replica holds the three events"
    );
    assert!(
        ship(true, 0, 400).ship(4, &refs[..1]).is_err(),
        "no AOF here"
    );
}

/// A snapshot published at the stream's last entry trims the stream empty:
/// a copy can then no longer be checked against records. A stale owner's
/// copy, whose journal ends with a record the cluster never took, starts
/// again from the snapshot rather than keep that record (which would pass
/// for the cluster's: found by the simulation).
#[test]
fn a_stale_tail_is_dropped_when_the_stream_was_trimmed_empty() {
    let redis = Redis::start();
    let tmp = tempfile::tempdir().expect("tmp");
    let (dir_a, dir_b, dir_c) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("c"),
    );
    let clock = ManualClock::new(1_700_000_000_000);
    let rt = rt();
    let (mut log_a, a) = first_owner(&redis, &dir_a, &clock, &rt);
    for _ in 0..3 {
        rt.block_on(hold_one(&a, 600));
    }

    // b takes over after a's lease lapsed, and holds two more.
    let mut log_b = log(&redis);
    let mut b_copy = mirror(&dir_b, &mut log_b);
    b_copy.catch_up(&mut log_b).expect("catch up");
    std::thread::sleep(TTL + Duration::from_millis(150));
    assert_eq!(log_b.acquire(0, "b/1", TTL, b_copy.epoch()), Ok(Some(2)));
    let b = own(&redis, &dir_b, b_copy, "b/1", 2, &clock);
    for _ in 0..2 {
        rt.block_on(hold_one(&b, 600));
    }
    // a, stale, journals a hold the fence refuses.
    let one = [CartLine::on_hand(0, 0, 1)];
    assert!(rt.block_on(a.reserve(&one, false, 600, None)).is_err());
    a.shutdown();
    drop(a);

    // b's state at its last record, published: the stream is trimmed empty.
    let mut log_c = log(&redis);
    let mut c = mirror(&dir_c, &mut log_c);
    c.catch_up(&mut log_c).expect("catch up");
    let last = c.last_seq();
    let store = SnapshotStore::open(&tmp.path().join("snap")).expect("store");
    store.save(last, &c.model().read()).expect("save");
    let (seq, bytes) = store.newest_encoded().expect("encoded");
    let id = log_b.id_of(0, seq).expect("read").expect("in the stream");
    let fence = Fence {
        holder: "b/1".into(),
        epoch: 2,
    };
    log_b
        .publish_snapshot(0, &fence, seq, &id, &bytes)
        .expect("publish");
    assert_eq!(log_b.read(0, "0-0", 10).expect("read"), vec![]);

    // a comes back as a follower: its copy cannot be checked, so it is
    // dropped, and started again from the snapshot it ends at b's state.
    let mut a_copy = mirror(&dir_a, &mut log_a);
    assert_eq!(a_copy.last_seq(), 0, "the stale tail is not kept");
    a_copy.rebuild(&mut log_a).expect("rebuild");
    assert_eq!(a_copy.last_seq(), last);
    same_state(&rt, &a_copy, &b);
}

/// A rebuild that fails half-way (Redis gone once the copy was wiped)
/// leaves a copy that can still apply what comes next: its journal runs,
/// so the next entries are applied rather than refused forever.
#[test]
fn a_rebuild_cut_short_leaves_a_copy_that_still_follows() {
    let mut redis = Redis::start();
    let tmp = tempfile::tempdir().expect("tmp");
    let (dir_a, dir_b, dir_x) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("x"),
    );
    let clock = ManualClock::new(1_700_000_000_000);
    let rt = rt();
    let (_log_a, a) = first_owner(&redis, &dir_a, &clock, &rt);
    let mut log_b = log(&redis);
    let mut b = mirror(&dir_b, &mut log_b);
    b.catch_up(&mut log_b).expect("catch up");
    assert!(b.last_seq() > 0);
    a.shutdown();
    drop(a);

    redis.kill();
    assert!(b.rebuild(&mut log_b).is_err(), "Redis is gone");
    assert_eq!(b.last_seq(), 0, "wiped");

    // Redis back (empty); a new owner writes; the copy follows it.
    redis.restart_empty();
    let mut log_b = log(&redis);
    let (_log_x, x) = first_owner(&redis, &dir_x, &clock, &rt);
    let written = x
        .journal()
        .stats
        .last_seq
        .load(std::sync::atomic::Ordering::Relaxed);
    b.catch_up(&mut log_b).expect("the copy applies again");
    assert_eq!(b.last_seq(), written);
    same_state(&rt, &b, &x);
}

/// A leader's journal holds a record the stream never took (its append
/// refused by the fence) and nobody wrote after it: the stream ends one
/// record before the copy. The copy is not kept with that tail (it would
/// ship it if it led again: a write answered 503 come back); it rebuilds
/// from the stream.
#[test]
fn a_copy_longer_than_the_stream_rebuilds_from_it() {
    let redis = Redis::start();
    let tmp = tempfile::tempdir().expect("tmp");
    let dir_a = tmp.path().join("a");
    let clock = ManualClock::new(1_700_000_000_000);
    let rt = rt();
    let (mut log_a, a) = first_owner(&redis, &dir_a, &clock, &rt);
    for _ in 0..3 {
        rt.block_on(hold_one(&a, 600));
    }
    let shipped = log_a.last_seq(0).expect("last");
    // Another takes the lease and writes nothing; a's next hold is fenced.
    std::thread::sleep(TTL + Duration::from_millis(150));
    let mut log_b = log(&redis);
    assert_eq!(log_b.acquire(0, "b/1", TTL, 1), Ok(Some(2)));
    let one = [CartLine::on_hand(0, 0, 1)];
    assert!(rt.block_on(a.reserve(&one, false, 600, None)).is_err());
    let journaled = a
        .journal()
        .stats
        .last_seq
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(journaled, shipped + 1, "the refused hold is in a's journal");
    a.shutdown();
    drop(a);
    let mut a_copy = mirror(&dir_a, &mut log_a);
    assert_eq!(
        a_copy.last_seq(),
        0,
        "the tail the stream never took is not kept"
    );
    a_copy.catch_up(&mut log_a).expect("catch up");
    assert_eq!(a_copy.last_seq(), shipped);
    assert_eq!(a_copy.model().read().reservations.len(), 3);
}
