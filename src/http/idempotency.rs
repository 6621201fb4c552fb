//! Idempotency keys: the same key from the same token with the same body
//! answers the first answer again and holds nothing more.
//!
//! A key being served is `Pending`: concurrent requests with it wait for its
//! answer instead of holding again (8 clients racing with one key: one hold).
//! 201 answers are durable (the key is in the cart's journal record and is
//! rebuilt at recovery); 409 answers are remembered in memory only, as a 409
//! wrote nothing.

use ahash::AHashMap;
use parking_lot::Mutex;
use std::collections::VecDeque;
use tokio::sync::watch;

use crate::limits::IDEMPOTENCY_KEYS_MAX;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub body_hash: u64,
    pub status: u16,
    pub body: String,
}

enum Slot {
    Pending(watch::Receiver<Option<Answer>>),
    Done(Answer),
}

type Key = (u64, String);

#[derive(Default)]
pub struct IdemTable {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    map: AHashMap<Key, Slot>,
    /// Insertion order, to forget the oldest past the bound.
    order: VecDeque<Key>,
}

/// What to do with a request carrying a key.
pub enum Claim {
    /// Serve it, then `finish` with the answer (or `abandon` on a 5xx).
    Mine(watch::Sender<Option<Answer>>),
    /// Answered before.
    Answered(Answer),
}

impl IdemTable {
    pub fn seed(&self, key: Key, answer: Answer) {
        let mut g = self.inner.lock();
        g.order.push_back(key.clone());
        g.map.insert(key, Slot::Done(answer));
    }

    /// Claims `key`, waiting while another request holds it.
    pub async fn claim(&self, key: &Key) -> Claim {
        loop {
            let mut rx = {
                let mut g = self.inner.lock();
                match g.map.get(key) {
                    Some(Slot::Done(a)) => return Claim::Answered(a.clone()),
                    Some(Slot::Pending(rx)) => rx.clone(),
                    None => {
                        let (tx, rx) = watch::channel(None);
                        g.map.insert(key.clone(), Slot::Pending(rx));
                        return Claim::Mine(tx);
                    }
                }
            };
            // Woken when the holder finishes or abandons (the sender drops).
            let _ = rx.changed().await;
        }
    }

    pub fn finish(&self, key: Key, tx: watch::Sender<Option<Answer>>, answer: Answer) {
        {
            let mut g = self.inner.lock();
            g.map.insert(key.clone(), Slot::Done(answer.clone()));
            g.order.push_back(key);
            while g.order.len() > IDEMPOTENCY_KEYS_MAX {
                if let Some(old) = g.order.pop_front() {
                    g.map.remove(&old);
                }
            }
        }
        let _ = tx.send(Some(answer));
    }

    /// The request failed without an answer worth repeating: free the key.
    pub fn abandon(&self, key: &Key, tx: watch::Sender<Option<Answer>>) {
        self.inner.lock().map.remove(key);
        drop(tx);
    }
}
