//! Idempotency keys: the same key from the same token with the same body
//! answers the first answer again and holds nothing more.
//!
//! A key being served is `Pending`: concurrent requests with it wait for its
//! answer instead of holding again (8 clients racing with one key: one hold).
//! 201 answers are durable (the key is in the cart's journal record and is
//! rebuilt at recovery); 409 answers are remembered in memory only, as a 409
//! wrote nothing.

use parking_lot::Mutex;
use tokio::sync::watch;

use serde_json::Value;

use super::error::{json_response, ApiError, ApiResult, Code, FieldError};
use super::Request;
use crate::collections::{ChunkedQueue, SegmentedMap};
use crate::domain::ids::validate_id;
use crate::limits::IDEMPOTENCY_KEYS_MAX;

/// The header naming a write's key.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

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

/// Segmented, so that growing never moves every key while the lock is
/// held (crate::collections).
#[derive(Default)]
struct Inner {
    map: SegmentedMap<Key, Slot>,
    /// Insertion order, to forget the oldest past the bound.
    order: ChunkedQueue<Key>,
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
                    // A holder that went away without an answer (its task
                    // panicked): the key is free again.
                    Some(Slot::Pending(rx)) if rx.has_changed().is_err() => {
                        let (tx, rx) = watch::channel(None);
                        g.map.insert(key.clone(), Slot::Pending(rx));
                        return Claim::Mine(tx);
                    }
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

/// The first answer of a key again: the same status and body, said to
/// be replayed; 422 if this request's body is not the first one's.
pub fn replay(a: &Answer, body_hash: u64) -> ApiResult {
    if a.body_hash != body_hash {
        return Err(ApiError::new(
            Code::IdempotencyKeyReused,
            "this Idempotency-Key was used with a different body",
        ));
    }
    let v: Value = serde_json::from_str(&a.body).unwrap_or(Value::Null);
    if a.status >= 400 {
        let mut resp = json_response(a.status, &v);
        resp.headers_mut().insert(
            warp::http::header::CONTENT_TYPE,
            warp::http::HeaderValue::from_static("application/problem+json"),
        );
        return Ok(resp);
    }
    let mut resp = json_response(a.status, &v);
    // Said, so that a client (or a follower that sent the write again to
    // a new leader) can tell a hold made now from one answered from its
    // key.
    resp.headers_mut().insert(
        REPLAYED_HEADER,
        warp::http::HeaderValue::from_static("true"),
    );
    Ok(resp)
}

/// On a hold answered from its Idempotency-Key (the first answer again),
/// not made now.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";

/// The request's `Idempotency-Key` with its token's scope, if it has one.
pub fn idempotency_key(req: &Request) -> Result<Option<(u64, String)>, ApiError> {
    let Some(v) = req.headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let k = v
        .to_str()
        .ok()
        .filter(|k| validate_id(k).is_ok())
        .ok_or_else(|| {
            ApiError::validation(vec![FieldError {
                field: "Idempotency-Key".into(),
                message: "must be 1 to 64 characters of A-Z a-z 0-9 . _ : -".into(),
            }])
        })?;
    Ok(Some((req.principal.scope, k.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16) -> Answer {
        Answer {
            body_hash: 1,
            status,
            body: "{}".into(),
        }
    }

    #[tokio::test]
    async fn a_waiter_gets_the_holders_answer_and_a_dead_holder_frees_the_key() {
        let t = std::sync::Arc::new(IdemTable::default());
        let key = (7u64, "k".to_string());
        let Claim::Mine(tx) = t.claim(&key).await else {
            panic!("first claim")
        };
        let (t2, k2) = (t.clone(), key.clone());
        let waiter = tokio::spawn(async move {
            match t2.claim(&k2).await {
                Claim::Answered(a) => a.status,
                Claim::Mine(_) => 0,
            }
        });
        tokio::task::yield_now().await;
        t.finish(key.clone(), tx, answer(201));
        assert_eq!(waiter.await.expect("waiter"), 201);

        // A holder that vanished without finishing (its sender dropped).
        let key2 = (7u64, "k2".to_string());
        let Claim::Mine(tx) = t.claim(&key2).await else {
            panic!("claim")
        };
        drop(tx);
        let got = tokio::time::timeout(std::time::Duration::from_secs(1), t.claim(&key2)).await;
        assert!(matches!(got, Ok(Claim::Mine(_))), "the key stayed stuck");
    }
}
