//! Crash consistency of the journal beyond SIGKILL, over `SimStorage`: a
//! power cut drops every byte not yet fdatasync'd (keeping a random torn
//! prefix of the rest) at a random moment; an fsync can fail. After each,
//! recovery gives a prefix of the written history that holds every
//! acknowledged record, and nothing is acknowledged after a failed fsync.

mod common;

use common::sim::journal_event as event;
use holdfast::domain::event::Event;
use holdfast::domain::stock::AdjustReason;
use holdfast::domain::{LocationId, SkuId};
use holdfast::persistence::journal::{decode_event, recover};
use holdfast::persistence::{Durability, Journal, JournalError, SimStorage, Storage};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

fn dir() -> PathBuf {
    PathBuf::from("/data/journal")
}

/// Recovers and returns the records found, in order.
fn recovered(fs: &SimStorage, d: &Path) -> Result<Vec<(u64, Event)>, JournalError> {
    let mut out = Vec::new();
    recover(fs, d, 0, |seq, body| {
        out.push((seq, decode_event(body)?));
        Ok(())
    })?;
    Ok(out)
}

/// Appends `n` records from one thread (so seq i is record i-1 of this run,
/// after `base`), each waited on by a helper thread; returns the sequences
/// acknowledged. `during` runs in the middle (the power cut or the fault).
fn append_run(
    journal: &Journal,
    base: u64,
    n: u64,
    cut_after: u64,
    during: impl FnOnce(),
) -> Vec<u64> {
    let mut waiters = Vec::new();
    let mut during = Some(during);
    for i in 0..n {
        if i == cut_after {
            if let Some(f) = during.take() {
                f();
            }
        }
        match journal.append(&event(base + i)) {
            Ok(d) => waiters.push(std::thread::spawn(move || d.wait().ok())),
            Err(_) => break,
        }
        if i % 16 == 0 {
            // Let batches of varied sizes form.
            std::thread::sleep(Duration::from_micros(50));
        }
    }
    if let Some(f) = during.take() {
        f();
    }
    waiters
        .into_iter()
        .filter_map(|w| w.join().ok().flatten())
        .collect()
}

#[test]
fn power_cuts_keep_every_acknowledged_record() {
    for seed in 1..=40u64 {
        let fs = SimStorage::new(seed);
        let storage: Arc<dyn Storage> = Arc::new(fs.clone());
        let mut history: Vec<Event> = Vec::new(); // what is durable so far, by seq - 1
        let mut acked_max = 0u64;
        for round in 0..3u64 {
            let found = recovered(&fs, &dir()).expect("recovery after a power cut");
            // A prefix of what was written, holding everything acknowledged.
            assert!(
                found.len() as u64 >= acked_max,
                "seed {seed}: lost acknowledged records"
            );
            for (i, (seq, e)) in found.iter().enumerate() {
                assert_eq!(*seq, i as u64 + 1);
                if i < history.len() {
                    assert_eq!(e, &history[i], "seed {seed}: record {seq} changed");
                }
            }
            history.truncate(found.len());
            history.extend(found[history.len()..].iter().map(|(_, e)| e.clone()));
            let last = found.len() as u64;
            acked_max = last;
            let (journal, writer) = Journal::start_with_segment_size(
                storage.clone(),
                dir(),
                last,
                Durability::Fsync,
                4096, // roll segments often
            )
            .expect("start");
            let n = 200 + (seed * 37 + round * 11) % 300;
            let cut_after = (seed * 13 + round * 7) % n;
            let base = last;
            let fs2 = fs.clone();
            let acked = append_run(&journal, base, n, cut_after, move || fs2.power_cut());
            drop(journal);
            let _ = writer.join();
            acked_max = acked.iter().copied().fold(acked_max, u64::max);
            // What this run wrote, in order, for the prefix check.
            history.extend((0..n).map(|i| event(base + i)));
            fs.power_on();
        }
        let found = recovered(&fs, &dir()).expect("final recovery");
        assert!(
            found.len() as u64 >= acked_max,
            "seed {seed}: lost acknowledged records at the end"
        );
    }
}

#[test]
fn a_failed_fsync_poisons_and_acknowledges_nothing_after() {
    for fail_after in [0u64, 1, 3, 10] {
        let fs = SimStorage::new(fail_after + 7);
        let storage: Arc<dyn Storage> = Arc::new(fs.clone());
        // The segment header takes one fdatasync and the directory one fsync.
        let (journal, writer) =
            Journal::start(storage.clone(), dir(), 0, Durability::Fsync).expect("start");
        fs.fail_syncs_after(fail_after);
        let mut results = Vec::new();
        for i in 0..100u64 {
            match journal.append(&event(i)) {
                Ok(d) => results.push(d.wait()),
                Err(e) => results.push(Err(e)),
            }
        }
        // Acknowledgements form a prefix: once one failed, none succeeds again.
        let first_err = results.iter().position(|r| r.is_err()).expect("a failure");
        assert!(
            results[first_err..].iter().all(|r| r.is_err()),
            "acknowledged after a failed fsync"
        );
        assert!(journal.is_poisoned());
        assert_eq!(
            journal.append(&event(999)).err(),
            Some(JournalError::Poisoned)
        );
        drop(journal);
        let _ = writer.join();
        // Restart: every acknowledged record is there, and nothing changed.
        fs.power_cut();
        fs.power_on();
        let found = recovered(&fs, &dir()).expect("recovery");
        assert!(found.len() >= first_err, "lost acknowledged records");
        for (i, (_, e)) in found.iter().enumerate() {
            assert_eq!(e, &event(i as u64));
        }
    }
}

/// A write whose fdatasync failed may be on the disk all the same (found
/// at the next start): it is answered "outcome unknown" (504), never
/// refused (503: not written) and then found at a restart. The writes
/// refused once the journal was poisoned were never written.
#[test]
fn a_write_whose_sync_failed_is_unknown_never_refused() {
    for fail_after in [0u64, 1, 3, 10] {
        let fs = SimStorage::new(fail_after + 11);
        let storage: Arc<dyn Storage> = Arc::new(fs.clone());
        let (journal, writer) =
            Journal::start(storage.clone(), dir(), 0, Durability::Fsync).expect("start");
        fs.fail_syncs_landing_after(fail_after);
        let mut results = Vec::new();
        for i in 0..100u64 {
            results.push(journal.append(&event(i)).and_then(|d| d.wait()));
        }
        drop(journal);
        let _ = writer.join();
        fs.power_cut();
        fs.power_on();
        let found = recovered(&fs, &dir()).expect("recovery");
        let mut unknown = 0;
        for (i, r) in results.iter().enumerate() {
            let there = found.iter().any(|(_, e)| e == &event(i as u64));
            match r {
                Ok(_) => assert!(there, "{fail_after}: acknowledged record {i} lost"),
                Err(JournalError::WriteUnknown(_)) => unknown += 1,
                Err(e) => assert!(
                    !there,
                    "{fail_after}: record {i} refused ({e}), yet written"
                ),
            }
        }
        assert!(unknown > 0, "{fail_after}: no write's outcome was unknown");
    }
}

#[test]
fn torn_tail_is_cut_and_corrupt_middle_is_refused() {
    let fs = SimStorage::new(3);
    let storage: Arc<dyn Storage> = Arc::new(fs.clone());
    let (journal, writer) =
        Journal::start(storage.clone(), dir(), 0, Durability::Fsync).expect("start");
    for i in 0..50 {
        journal
            .append(&event(i))
            .expect("append")
            .wait()
            .expect("durable");
    }
    drop(journal);
    let _ = writer.join();
    let seg = dir().join(format!("{:020}.log", 1));
    let len = fs.file_len(&seg).expect("segment");

    // A torn tail: half a record at the end.
    {
        let mut f = fs.bytes(&seg);
        f.extend_from_slice(&[40, 0, 0, 0, 1, 2, 3]);
        fs.replace(&seg, f);
    }
    let found = recovered(&fs, &dir()).expect("a torn tail is cut");
    assert_eq!(found.len(), 50);
    assert_eq!(fs.file_len(&seg), Some(len), "the tail was cut off");

    // A corrupt record in the middle: refuse to start.
    fs.corrupt(&seg, len / 2);
    match recovered(&fs, &dir()) {
        Err(JournalError::Corrupt(msg)) => assert!(msg.contains("refusing"), "{msg}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// The snapshot writer reads and removes journal segments through the same
/// `Storage`: with power cuts after each snapshot (and a damaged newest
/// snapshot now and then), recovery from snapshot + journal still holds
/// every acknowledged record.
#[test]
fn snapshots_and_segment_removal_survive_power_cuts() {
    use holdfast::persistence::recovery::recover_model;
    use holdfast::persistence::snapshot::{take_snapshot, SnapshotStore};

    let fs = SimStorage::new(11);
    let storage: Arc<dyn Storage> = Arc::new(fs.clone());
    let tmp = tempfile::tempdir().expect("tmp");
    let store = SnapshotStore::open(&tmp.path().join("snapshots")).expect("sled");
    let mut last = 0u64;
    let mut acked_delta = 0i64;
    let setup = catalog();
    for round in 0..8u64 {
        let (journal, writer) =
            Journal::start_with_segment_size(storage.clone(), dir(), last, Durability::Fsync, 2048)
                .expect("start");
        if round == 0 {
            for e in &setup {
                journal.append(e).expect("append").wait().expect("durable");
            }
        }
        for i in 0..60 {
            let e = Event::Adjusted {
                sku: SkuId::parse("A").expect("id"),
                location: LocationId::parse("S001").expect("id"),
                delta: i + 1,
                reason: AdjustReason::Receipt,
                at_ms: 0,
                key: None,
                by: None,
                note: None,
                unsellable: None,
            };
            journal.append(&e).expect("append").wait().expect("durable");
            acked_delta += i + 1;
        }
        let durable = journal
            .stats
            .last_seq
            .load(std::sync::atomic::Ordering::Relaxed);
        take_snapshot(&store, &fs, &dir(), durable).expect("snapshot");
        if round % 3 == 2 {
            store.corrupt_newest().expect("corrupt");
        }
        // More records after the snapshot, then the power goes.
        for _ in 0..5 {
            let e = Event::Adjusted {
                sku: SkuId::parse("A").expect("id"),
                location: LocationId::parse("S001").expect("id"),
                delta: 1,
                reason: AdjustReason::Receipt,
                at_ms: 0,
                key: None,
                by: None,
                note: None,
                unsellable: None,
            };
            journal.append(&e).expect("append").wait().expect("durable");
            acked_delta += 1;
        }
        fs.power_cut();
        drop(journal);
        let _ = writer.join();
        fs.power_on();
        let (model, report) =
            recover_model(&fs, &dir(), store.load(), Some(&store)).expect("recovery");
        let rec = model.stock.get_or_empty(0, 0);
        assert_eq!(
            rec.on_hand, acked_delta,
            "round {round}: lost acknowledged records"
        );
        last = report.last_seq;
    }
    let segments = fs.list_len(&dir());
    eprintln!("segments left: {segments}");
    assert!(
        segments < 20,
        "covered segments were not removed: {segments}"
    );
}

/// Tickets follow the queue: once a record is acknowledged, the durable
/// ticket covers it and every append before it, whatever the threads; and
/// each ticket is given once.
#[test]
fn durable_tickets_cover_every_acknowledged_append() {
    let fs = SimStorage::new(5);
    let storage: Arc<dyn Storage> = Arc::new(fs.clone());
    let (journal, writer) = Journal::start(storage, dir(), 0, Durability::Fsync).expect("start");
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let j = journal.clone();
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                for i in 0..500u64 {
                    let before = j.ticket_issued();
                    let (d, ticket) = j.append_ticketed(&event(t * 1000 + i)).expect("append");
                    assert!(ticket > before, "a new ticket is past every earlier one");
                    d.wait().expect("durable");
                    let durable = j.durable_ticket();
                    assert!(
                        durable >= ticket,
                        "acknowledged {ticket}, durable {durable}"
                    );
                    mine.push(ticket);
                }
                mine
            })
        })
        .collect();
    let mut all: Vec<u64> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("thread"))
        .collect();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), 2000, "each ticket given once");
    // A barrier takes a ticket too and, answered, covers everything.
    journal.barrier().expect("barrier").wait().expect("durable");
    assert_eq!(journal.durable_ticket(), journal.ticket_issued());
    assert_eq!(journal.ticket_issued(), 2001);
    drop(journal);
    let _ = writer.join();
}

/// A journal halted and cut back after record `k` (a cluster leader giving
/// up the lead: `Journal::halt`, `truncate_after`) holds exactly records
/// 1..=k, across segment boundaries, whatever `k`; a journal started on it
/// goes on at k + 1.
#[test]
fn a_journal_cut_back_keeps_exactly_its_prefix() {
    use holdfast::persistence::journal::truncate_after;
    for k in [0u64, 1, 7, 20, 33, 59, 60] {
        let fs = SimStorage::new(5);
        let storage: Arc<dyn Storage> = Arc::new(fs.clone());
        let (journal, writer) =
            Journal::start_with_segment_size(storage.clone(), dir(), 0, Durability::Fsync, 512)
                .expect("start");
        for i in 0..60 {
            journal
                .append(&event(i))
                .expect("append")
                .wait()
                .expect("durable");
        }
        journal.halt();
        assert!(journal.append(&event(99)).is_err(), "halted: refused");
        drop(journal);
        let _ = writer.join();
        let segments = holdfast::persistence::journal::segments(&fs, &dir())
            .expect("segments")
            .len();
        assert!(segments > 3, "the records span segments: {segments}");
        let cut = truncate_after(&fs, &dir(), k).expect("cut back");
        assert_eq!(cut, 60 - k, "k = {k}");
        let found = recovered(&fs, &dir()).expect("recover");
        let seqs: Vec<u64> = found.iter().map(|(s, _)| *s).collect();
        assert_eq!(seqs, (1..=k).collect::<Vec<_>>(), "k = {k}");
        let (journal, writer) =
            Journal::start_with_segment_size(storage.clone(), dir(), k, Durability::Fsync, 512)
                .expect("start again");
        let seq = journal
            .append(&event(100))
            .expect("append")
            .wait()
            .expect("durable");
        assert_eq!(seq, k + 1);
        drop(journal);
        let _ = writer.join();
        assert_eq!(recovered(&fs, &dir()).expect("recover").len() as u64, k + 1);
    }
}

/// A reader following a live journal (`read_on`, the snapshotter's copy)
/// reads every record once, in order, across segment boundaries, however
/// the durable mark moves while the writer goes on; a cursor started
/// after a record starts after it.
#[test]
fn a_reader_following_the_journal_reads_each_record_once() {
    use holdfast::persistence::journal::{read_on, ReadCursor};
    let fs = SimStorage::new(9);
    let storage: Arc<dyn Storage> = Arc::new(fs.clone());
    let (journal, writer) =
        Journal::start_with_segment_size(storage.clone(), dir(), 0, Durability::Fsync, 512)
            .expect("start");
    let mut cursor = ReadCursor::after(0);
    let mut read = Vec::new();
    let follow = |cursor: &mut ReadCursor, upto: u64, read: &mut Vec<u64>| {
        read_on(&fs, &dir(), cursor, upto, |seq, body| {
            assert_eq!(decode_event(body)?, event(seq - 1));
            read.push(seq);
            Ok(())
        })
        .expect("read on");
    };
    for i in 0..90u64 {
        let seq = journal
            .append(&event(i))
            .expect("append")
            .wait()
            .expect("durable");
        assert_eq!(seq, i + 1);
        // The mark moves by 0 to 4 records between reads.
        if i % 5 != 4 {
            follow(&mut cursor, seq - (i % 3), &mut read);
        }
    }
    follow(&mut cursor, 90, &mut read);
    follow(&mut cursor, 90, &mut read);
    assert_eq!(read, (1..=90).collect::<Vec<_>>());
    assert_eq!(cursor.last_seq(), 90);
    let segments = holdfast::persistence::journal::segments(&fs, &dir())
        .expect("segments")
        .len();
    assert!(segments > 5, "the records span segments: {segments}");
    // From the middle of a segment, past its end: the rest, once.
    let mut from_37 = ReadCursor::after(37);
    let mut rest = Vec::new();
    follow(&mut from_37, u64::MAX, &mut rest);
    assert_eq!(rest, (38..=90).collect::<Vec<_>>());
    drop(journal);
    let _ = writer.join();
}

/// A journal cut back below what the movement history holds (a cluster
/// leader's cut-back killed before it cut the history too; a power cut
/// under `durability = "none"`): the snapshotter's copy, loaded on it,
/// cuts the history back first, so the records written next under the
/// same numbers are told as they are, and the cut ones are not.
#[test]
fn a_history_past_its_journal_is_cut_back_to_it() {
    use holdfast::persistence::journal::truncate_after;
    use holdfast::persistence::snapshot::{SnapshotStore, Tail};
    let fs = SimStorage::new(13);
    let storage: Arc<dyn Storage> = Arc::new(fs.clone());
    let tmp = tempfile::tempdir().expect("tmp");
    let store = SnapshotStore::open(&tmp.path().join("snapshots")).expect("store");
    let adjust = |delta: i64| Event::Adjusted {
        sku: SkuId::parse("A").expect("id"),
        location: LocationId::parse("S001").expect("id"),
        delta,
        reason: AdjustReason::Receipt,
        at_ms: 1,
        key: None,
        by: None,
        note: None,
        unsellable: None,
    };
    let (journal, writer) =
        Journal::start(storage.clone(), dir(), 0, Durability::Fsync).expect("start");
    let setup = catalog();
    for e in setup.iter().cloned().chain((1..=5).map(adjust)) {
        journal.append(&e).expect("append").wait().expect("durable");
    }
    // Seqs 3..=7 moved the record by 1..=5; the history has them all.
    let mut tail = Tail::load(&store, Some(7)).expect("load");
    tail.catch_up(&store, &fs, &dir(), 7).expect("catch up");
    tail.flush_history().expect("flush");
    let history = store.history();
    assert_eq!(
        (
            history.through().expect("through"),
            history.len().expect("len")
        ),
        (7, 5)
    );
    drop(journal);
    let _ = writer.join();

    // The journal loses 6 and 7; 6 and 7 are then other records.
    truncate_after(&fs, &dir(), 5).expect("cut");
    let (journal, writer) =
        Journal::start(storage.clone(), dir(), 5, Durability::Fsync).expect("start");
    for d in [100, 200] {
        journal
            .append(&adjust(d))
            .expect("append")
            .wait()
            .expect("durable");
    }
    // Loaded on a journal opened at 5 (what the restart found before the
    // new records): cut back to it, then told anew.
    let mut tail = Tail::load(&store, Some(5)).expect("load");
    tail.catch_up(&store, &fs, &dir(), 7).expect("catch up");
    tail.flush_history().expect("flush");
    let page = history.page("S001", "A", None, None, 100).expect("page");
    let deltas: Vec<i64> = page.movements.iter().map(|m| m.delta_on_hand).collect();
    assert_eq!(deltas, [200, 100, 3, 2, 1]);
    let on_hand: Vec<i64> = page.movements.iter().map(|m| m.on_hand).collect();
    assert_eq!(on_hand, [306, 106, 6, 3, 1]);
    drop(journal);
    let _ = writer.join();
}

/// SKU `A` and location `S001`: what the records of these tests name.
fn catalog() -> [Event; 2] {
    use holdfast::domain::catalog::{Location, LocationKind, Sku};
    [
        Event::SkuPut {
            sku: SkuId::parse("A").expect("id"),
            value: Sku::named("a"),
        },
        Event::LocationPut {
            location: LocationId::parse("S001").expect("id"),
            value: Location::new("s", LocationKind::Store, 0.0, 0.0),
        },
    ]
}
