//! The hub of the stock feed: committed changes of stock records, fanned
//! out to subscribers by scope. Pure (no threads, no clock): the feed's
//! thread drives it (`feed::run`), the tests drive it directly.
//!
//! A stock shard hands in every change of a record with the journal ticket
//! that commits it (`Change::ticket`); the hub holds it until the journal's
//! durable ticket reaches it, so a subscriber never sees a change a crash
//! could undo. Changes of one record waiting together are coalesced (the
//! newest value, the highest ticket): api.md allows it, and it bounds the
//! waiting set by the records, not by the writes. A subscriber's sink is
//! bounded: one that refuses a batch is marked lagging, and its reader
//! sends a fresh snapshot instead of the backlog.

use ahash::AHashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::domain::catalog::{LocIdx, SkuIdx};
use crate::domain::stock::StockRecord;
use crate::domain::TimeMs;
use crate::limits::FEED_PENDING_MAX;

/// What a subscriber follows (api.md: `?location=` or `?sku=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    Location(LocIdx),
    Sku(SkuIdx),
}

/// One change of one record, as its stock shard made it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Change {
    pub sku: SkuIdx,
    /// The record after the change, holds not yet journaled left out.
    pub record: StockRecord,
    pub at_ms: TimeMs,
    /// Shown once the journal's durable ticket reaches this.
    pub ticket: u64,
    /// The shard that made it, and its count of changes: a reader drops
    /// changes its snapshot already holds (`shard_seq` at or before it).
    pub shard: u32,
    pub shard_seq: u64,
}

/// What one release sends to the subscribers of one scope: its changes in
/// the shards' order and their messages, encoded once for every
/// subscriber of the scope (for the WebSocket sessions, each a frame, back
/// to back, so that a session writes them as they are).
#[derive(Debug, Default)]
pub struct Batch {
    pub changes: Vec<Change>,
    pub wire: Vec<u8>,
    /// Where each change's message ends in `wire`.
    pub ends: Vec<usize>,
}

impl Batch {
    /// The message of change `i`.
    pub fn message(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.wire[start..self.ends[i]]
    }

    fn push(&mut self, c: &Change, message: &[u8]) {
        self.changes.push(*c);
        self.wire.extend_from_slice(message);
        self.ends.push(self.wire.len());
    }
}

/// Where a subscriber's changes go: bounded, never blocking; a batch is
/// shared by every subscriber of its scope.
pub trait Sink: Send {
    /// False when full: the batch is not taken.
    fn offer(&self, batch: &Arc<Batch>) -> bool;
}

struct Subscriber {
    scope: Scope,
    sink: Box<dyn Sink>,
    lagging: Arc<AtomicBool>,
}

#[derive(Default)]
pub struct Hub {
    pending: AHashMap<(SkuIdx, LocIdx), Change>,
    subs: Vec<Option<Subscriber>>,
    free: Vec<usize>,
    by_location: AHashMap<LocIdx, Vec<usize>>,
    by_sku: AHashMap<SkuIdx, Vec<usize>>,
    /// Subscribers now (kept, not counted: read every tick).
    live: usize,
}

impl Hub {
    /// Adds a subscriber; `lagging` is set when its sink refuses a batch.
    pub fn subscribe(
        &mut self,
        scope: Scope,
        sink: Box<dyn Sink>,
        lagging: Arc<AtomicBool>,
    ) -> usize {
        let s = Subscriber {
            scope,
            sink,
            lagging,
        };
        let id = match self.free.pop() {
            Some(id) => {
                self.subs[id] = Some(s);
                id
            }
            None => {
                self.subs.push(Some(s));
                self.subs.len() - 1
            }
        };
        match scope {
            Scope::Location(l) => self.by_location.entry(l).or_default().push(id),
            Scope::Sku(s) => self.by_sku.entry(s).or_default().push(id),
        }
        self.live += 1;
        id
    }

    pub fn unsubscribe(&mut self, id: usize) {
        let Some(s) = self.subs.get_mut(id).and_then(Option::take) else {
            return;
        };
        let list = match s.scope {
            Scope::Location(l) => self.by_location.get_mut(&l),
            Scope::Sku(k) => self.by_sku.get_mut(&k),
        };
        if let Some(list) = list {
            list.retain(|x| *x != id);
        }
        self.free.push(id);
        self.live -= 1;
    }

    /// The subscribers of `scope`.
    fn followers(&self, scope: Scope) -> &[usize] {
        let list = match scope {
            Scope::Location(l) => self.by_location.get(&l),
            Scope::Sku(k) => self.by_sku.get(&k),
        };
        list.map_or(&[], Vec::as_slice)
    }

    pub fn subscribers(&self) -> usize {
        self.live
    }

    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// A change from a stock shard, held until it is committed.
    pub fn offer(&mut self, c: Change) {
        let key = (c.sku, c.record.location);
        match self.pending.get_mut(&key) {
            // One record lives in one shard: its changes come in order.
            Some(p) => {
                let ticket = p.ticket.max(c.ticket);
                *p = c;
                p.ticket = ticket;
            }
            None => {
                if self.pending.len() >= FEED_PENDING_MAX {
                    self.overflow();
                }
                self.pending.insert(key, c);
            }
        }
    }

    /// Changes were lost on the way in (a full queue) or cannot be kept:
    /// every subscriber resyncs from a snapshot.
    pub fn overflow(&mut self) {
        self.pending.clear();
        for s in self.subs.iter().flatten() {
            s.lagging.store(true, Ordering::Release);
        }
    }

    /// Sends every waiting change whose ticket is durable to the
    /// subscribers of its record: one batch a scope, each change encoded
    /// once by `encode` (a change it cannot encode is skipped); returns
    /// how many changes went out.
    pub fn release(
        &mut self,
        durable_ticket: u64,
        encode: impl Fn(&Change) -> Option<Vec<u8>>,
    ) -> usize {
        let mut out = Vec::new();
        self.pending.retain(|_, c| {
            if c.ticket <= durable_ticket {
                out.push(*c);
                false
            } else {
                true
            }
        });
        // In the shards' order, so that a subscriber sees each record's
        // versions grow.
        out.sort_unstable_by_key(|c| (c.shard, c.shard_seq));
        let mut batches: AHashMap<Scope, Batch> = AHashMap::new();
        for c in &out {
            let scopes = [Scope::Location(c.record.location), Scope::Sku(c.sku)];
            let mut message = None;
            for scope in scopes {
                if self.followers(scope).is_empty() {
                    continue;
                }
                if message.is_none() {
                    message = encode(c);
                }
                let Some(m) = &message else { break };
                batches.entry(scope).or_default().push(c, m);
            }
        }
        for (scope, batch) in batches {
            let batch = Arc::new(batch);
            for &id in self.followers(scope) {
                let Some(s) = self.subs.get(id).and_then(Option::as_ref) else {
                    continue;
                };
                if s.lagging.load(Ordering::Acquire) {
                    continue;
                }
                if !s.sink.offer(&batch) {
                    s.lagging.store(true, Ordering::Release);
                }
            }
        }
        out.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parking_lot::Mutex;

    /// A sink of `cap` changes.
    #[derive(Clone)]
    struct Bounded(Arc<Mutex<Vec<Change>>>, usize);
    /// Takes a batch while it holds fewer than `cap` changes.
    impl Sink for Bounded {
        fn offer(&self, b: &Arc<Batch>) -> bool {
            let mut v = self.0.lock();
            if v.len() >= self.1 {
                return false;
            }
            v.extend_from_slice(&b.changes);
            true
        }
    }

    fn change(sku: SkuIdx, loc: LocIdx, on_hand: i64, ticket: u64, seq: u64) -> Change {
        Change {
            sku,
            record: StockRecord {
                location: loc,
                on_hand,
                version: seq,
                ..StockRecord::default()
            },
            at_ms: 0,
            ticket,
            shard: sku % 2,
            shard_seq: seq,
        }
    }

    impl Hub {
        fn release_t(&mut self, d: u64) -> usize {
            self.release(d, |c| Some(format!("{};", c.record.on_hand).into_bytes()))
        }
    }

    fn sub(hub: &mut Hub, scope: Scope, cap: usize) -> (Bounded, Arc<AtomicBool>) {
        let sink = Bounded(Arc::default(), cap);
        let lag = Arc::new(AtomicBool::new(false));
        hub.subscribe(scope, Box::new(sink.clone()), lag.clone());
        (sink, lag)
    }

    #[test]
    fn only_committed_changes_go_out_coalesced_by_record() {
        let mut hub = Hub::default();
        let (at_s1, _) = sub(&mut hub, Scope::Location(1), 100);
        let (of_a, _) = sub(&mut hub, Scope::Sku(7), 100);
        hub.offer(change(7, 1, 10, 5, 1));
        hub.offer(change(7, 1, 9, 4, 2)); // a later change, an earlier ticket
        hub.offer(change(7, 2, 3, 6, 3));
        hub.offer(change(8, 1, 1, 9, 1));
        assert_eq!(hub.release_t(4), 0, "the record's coalesced ticket is 5");
        assert_eq!(hub.release_t(6), 2);
        let s1: Vec<_> = at_s1
            .0
            .lock()
            .iter()
            .map(|c| (c.sku, c.record.on_hand))
            .collect();
        assert_eq!(s1, vec![(7, 9)], "the newest value of S1/7 only");
        let a: Vec<_> = of_a.0.lock().iter().map(|c| c.record.location).collect();
        assert_eq!(a, vec![1, 2]);
        assert_eq!(hub.pending(), 1);
        assert_eq!(hub.release_t(9), 1);
        assert_eq!(at_s1.0.lock().len(), 2);
        assert_eq!(of_a.0.lock().len(), 2, "SKU 8 is not followed");
    }

    #[test]
    fn a_full_sink_marks_its_subscriber_lagging_and_only_it() {
        let mut hub = Hub::default();
        let (slow, slow_lag) = sub(&mut hub, Scope::Location(1), 2);
        let (fast, fast_lag) = sub(&mut hub, Scope::Location(1), 100);
        // A batch a release: the slow sink takes two, then refuses.
        for i in 0..5 {
            hub.offer(change(i, 1, 1, u64::from(i) + 1, u64::from(i)));
            hub.release_t(u64::from(i) + 1);
        }
        assert_eq!(slow.0.lock().len(), 2);
        assert!(slow_lag.load(Ordering::Acquire));
        assert_eq!(fast.0.lock().len(), 5);
        assert!(!fast_lag.load(Ordering::Acquire));
        // A lagging subscriber is skipped until its reader resyncs.
        hub.offer(change(9, 1, 1, 6, 9));
        hub.release_t(6);
        assert_eq!(slow.0.lock().len(), 2);
        assert_eq!(fast.0.lock().len(), 6);
        hub.overflow();
        assert!(
            fast_lag.load(Ordering::Acquire),
            "an overflow resyncs everyone"
        );
    }

    /// Keeps every batch it is offered.
    #[derive(Clone, Default)]
    struct Keep(Arc<Mutex<Vec<Arc<Batch>>>>);
    impl Sink for Keep {
        fn offer(&self, b: &Arc<Batch>) -> bool {
            self.0.lock().push(b.clone());
            true
        }
    }

    #[test]
    fn one_batch_a_scope_shared_by_its_subscribers_in_shard_order() {
        let mut hub = Hub::default();
        let (a, b, other) = (Keep::default(), Keep::default(), Keep::default());
        hub.subscribe(Scope::Location(1), Box::new(a.clone()), Arc::default());
        hub.subscribe(Scope::Location(1), Box::new(b.clone()), Arc::default());
        hub.subscribe(Scope::Sku(4), Box::new(other.clone()), Arc::default());
        // Shard 1 (odd SKUs), then shard 0; offered out of order.
        hub.offer(change(3, 1, 30, 1, 2));
        hub.offer(change(4, 1, 40, 1, 1));
        hub.offer(change(1, 1, 10, 1, 1));
        hub.offer(change(5, 2, 50, 1, 3)); // nobody follows location 2 or SKU 5
        assert_eq!(hub.release_t(1), 4);
        let (a, b, other) = (a.0.lock(), b.0.lock(), other.0.lock());
        assert_eq!(a.len(), 1, "one batch for the release");
        assert!(Arc::ptr_eq(&a[0], &b[0]), "shared, not copied");
        assert_eq!(
            a[0].wire,
            b"40;10;30;".to_vec(),
            "shard 0, then shard 1 in its order"
        );
        assert_eq!(a[0].message(1), b"10;");
        assert_eq!(a[0].ends, vec![3, 6, 9]);
        assert_eq!(other.len(), 1);
        assert_eq!(other[0].wire, b"40;".to_vec());
    }

    #[test]
    fn unsubscribed_ids_are_reused_and_receive_nothing_old() {
        let mut hub = Hub::default();
        let sink = Bounded(Arc::default(), 10);
        let id = hub.subscribe(Scope::Sku(1), Box::new(sink.clone()), Arc::default());
        hub.unsubscribe(id);
        assert_eq!(hub.subscribers(), 0);
        let (other, _) = sub(&mut hub, Scope::Location(3), 10);
        hub.offer(change(1, 3, 1, 1, 1));
        hub.release_t(1);
        assert!(sink.0.lock().is_empty());
        assert_eq!(other.0.lock().len(), 1);
        assert_eq!(hub.subscribers(), 1);
    }
}
