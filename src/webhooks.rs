//! Delivery of the published events to webhook subscriptions (api.md,
//! Webhooks), signed as the Standard Webhooks specification says.
//!
//! Each subscription has a task of its own: it reads the events after
//! the last one acknowledged from the event store (nothing is queued: the
//! store is the queue, bounded by its retention), sends them in order,
//! one a request or up to the subscription's `batch`, and after a
//! failure sends the same request again after 1 s, 2 s, ... up to
//! `WEBHOOK_BACKOFF_MAX`; failing for 24 hours it is
//! marked failing and still tried. A slow or dead receiver holds back its
//! own subscription only: checkouts never wait for a delivery, and other
//! subscriptions have tasks of their own. How far delivery got is
//! journaled (`WebhookFact::Delivered`) at most once a second, so after a
//! crash or on a new leader the events after that mark are sent again:
//! at least once, in order. The tasks run on the server's background
//! runtime, below the requests' CPU priority.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ahash::AHashMap;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use parking_lot::Mutex;
use sha2::Sha256;

use crate::actors::Engine;
use crate::actors::{EventFilter, EventsRead};
use crate::domain::webhook::{Webhook, WebhookFact};
use crate::domain::TimeMs;
use crate::limits::{
    WEBHOOK_ATTEMPTS_KEPT, WEBHOOK_BACKOFF_MAX, WEBHOOK_FAILING_AFTER, WEBHOOK_MARK_EVERY,
    WEBHOOK_READ, WEBHOOK_REPLY_MAX, WEBHOOK_SUPERVISE_EVERY, WEBHOOK_TIMEOUT,
};
use crate::persistence::events::Read;
use crate::wire::{Caller, Policy};

/// The Standard Webhooks signature of `body` sent as message `id` at
/// `timestamp` (Unix seconds) with `secret` (`whsec_` and the key in
/// base64): `v1,` and the base64 HMAC-SHA256 of `id.timestamp.body`.
/// `None` for a secret that is not one.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &str) -> Option<String> {
    Some(Signer::new(secret)?.sign(id, timestamp, body.as_bytes()))
}

/// A subscription's key, decoded once and its HMAC keyed once: each
/// message costs the hash of its own bytes only.
#[derive(Clone)]
struct Signer(Hmac<Sha256>);

impl Signer {
    fn new(secret: &str) -> Option<Signer> {
        Hmac::<Sha256>::new_from_slice(&secret_key(secret)?)
            .ok()
            .map(Signer)
    }

    fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac = self.0.clone();
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        format!("v1,{sig}")
    }
}

/// The key of a `whsec_` secret (base64, padded or not).
pub fn secret_key(secret: &str) -> Option<Vec<u8>> {
    let b64 = secret.strip_prefix("whsec_")?;
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true),
    );
    engine.decode(b64).ok().filter(|k| !k.is_empty())
}

/// A new secret: `whsec_` and 24 random bytes in base64.
pub fn new_secret() -> String {
    let key: [u8; 24] = rand::random();
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    )
}

/// One delivery attempt, as `GET /v1/webhooks/{id}/deliveries` shows it.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// The last event sent (of a batch, its newest).
    pub event: u64,
    /// Events sent in the request (1 unless the subscription batches).
    pub events: u32,
    pub at_ms: TimeMs,
    /// The receiver's status, if it answered.
    pub status: Option<u16>,
    pub error: Option<String>,
    pub latency_ms: u64,
    /// 1 for the first attempt at this event, then 2, 3, ...
    pub attempt: u32,
}

impl Attempt {
    pub fn ok(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

/// What a subscription's task did, for its page and `/metrics`.
#[derive(Debug, Default)]
struct Log {
    attempts: VecDeque<Attempt>,
    delivered: u64,
    failed: u64,
    /// The last event acknowledged (journaled or not yet).
    through: u64,
}

/// The delivery of one engine's subscriptions (one node's; on a cluster
/// the leader's).
pub struct Webhooking {
    engine: Engine,
    logs: Mutex<AHashMap<String, Log>>,
    workers: Mutex<AHashMap<String, tokio::task::JoinHandle<()>>>,
}

impl Webhooking {
    pub fn new(engine: Engine) -> Arc<Webhooking> {
        Arc::new(Webhooking {
            engine,
            logs: Mutex::default(),
            workers: Mutex::default(),
        })
    }

    /// A subscription's recent attempts, newest first, and the last event
    /// it acknowledged.
    pub fn attempts(&self, id: &str) -> (Vec<Attempt>, Option<u64>) {
        let logs = self.logs.lock();
        match logs.get(id) {
            Some(l) => (l.attempts.iter().rev().cloned().collect(), Some(l.through)),
            None => (Vec::new(), None),
        }
    }

    /// Starts a task for each subscription without one; stops those of
    /// subscriptions gone.
    async fn supervise(self: &Arc<Self>) {
        let Ok(subs) = self.engine.webhooks().await else {
            return;
        };
        let mut workers = self.workers.lock();
        workers.retain(|id, task| {
            let keep = subs.iter().any(|s| &s.id == id) && !task.is_finished();
            if !keep {
                task.abort();
            }
            keep
        });
        self.logs
            .lock()
            .retain(|id, _| subs.iter().any(|s| &s.id == id));
        for s in subs {
            if !workers.contains_key(&s.id) {
                let me = self.clone();
                let id = s.id.clone();
                workers.insert(s.id, tokio::spawn(async move { me.deliver(id).await }));
            }
        }
    }

    /// Stops every task (this engine no longer leads, or stops).
    pub fn stop(&self) {
        for (_, t) in self.workers.lock().drain() {
            t.abort();
        }
    }

    /// Stops subscription `id`'s task at once (deleted, or replayed: the
    /// supervisor starts it again from what the subscription says).
    pub fn stop_one(&self, id: &str) {
        if let Some(t) = self.workers.lock().remove(id) {
            t.abort();
        }
    }

    /// What the subscription's log shows as acknowledged, after a replay.
    fn replayed(&self, id: &str, delivered: u64) {
        if let Some(l) = self.logs.lock().get_mut(id) {
            l.through = delivered;
        }
    }

    fn record(&self, id: &str, a: Attempt, through: u64) {
        let mut logs = self.logs.lock();
        if !logs.contains_key(id) {
            logs.insert(id.to_string(), Log::default());
        }
        let Some(log) = logs.get_mut(id) else {
            return;
        };
        if a.ok() {
            log.delivered += 1;
        } else {
            log.failed += 1;
        }
        log.through = through;
        if log.attempts.len() == WEBHOOK_ATTEMPTS_KEPT {
            log.attempts.pop_front();
        }
        log.attempts.push_back(a);
    }

    /// The subscriptions' lines of `/metrics`.
    pub fn render_metrics(&self, s: &mut String) {
        use std::fmt::Write;
        let logs = self.logs.lock();
        let latest = self.engine.latest_written();
        let _ = writeln!(s, "# HELP holdfast_webhook_deliveries_total Webhook delivery attempts, by subscription and outcome.\n# TYPE holdfast_webhook_deliveries_total counter");
        for (id, l) in logs.iter() {
            let _ = writeln!(
                s,
                "holdfast_webhook_deliveries_total{{webhook=\"{id}\",outcome=\"delivered\"}} {}",
                l.delivered
            );
            let _ = writeln!(
                s,
                "holdfast_webhook_deliveries_total{{webhook=\"{id}\",outcome=\"failed\"}} {}",
                l.failed
            );
        }
        let _ = writeln!(s, "# HELP holdfast_webhook_lag_events Events published and not yet acknowledged by the subscription (of every type).\n# TYPE holdfast_webhook_lag_events gauge");
        for (id, l) in logs.iter() {
            let _ = writeln!(
                s,
                "holdfast_webhook_lag_events{{webhook=\"{id}\"}} {}",
                latest.saturating_sub(l.through)
            );
        }
    }

    /// Subscription `id`'s task: until it is deleted (or the task is
    /// stopped).
    async fn deliver(self: Arc<Self>, id: String) {
        let policy = Policy {
            timeout: WEBHOOK_TIMEOUT,
            // The task retries by itself, with its own backoff.
            retries: 0,
            ..Policy::default()
        };
        let Ok(caller) = Caller::to_receiver("webhook", policy, WEBHOOK_REPLY_MAX) else {
            return;
        };
        let mut d = Delivery {
            id,
            caller,
            sub: None,
            signer: None,
            url: None,
            cursor: 0,
            marked: 0,
            marked_at: Instant::now(),
            failing_since: None,
        };
        loop {
            match d.round(&self).await {
                Ok(true) => {}
                Ok(false) => return,
                Err(why) => {
                    tracing::warn!(webhook = %d.id, error = %why, "webhook delivery: tried again in 1 s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
}

/// Runs the deliveries of the engines `states` names each round (one
/// node's; a cluster node's while it leads) until dropped: on the
/// server's background runtime, at a lower CPU priority than requests
/// (`server::background_runtime`).
pub async fn run(states: impl Fn() -> Vec<Arc<Webhooking>>) {
    let mut last: Vec<Arc<Webhooking>> = Vec::new();
    loop {
        tokio::time::sleep(WEBHOOK_SUPERVISE_EVERY).await;
        let now = states();
        for gone in last
            .iter()
            .filter(|w| !now.iter().any(|n| Arc::ptr_eq(n, w)))
        {
            gone.stop();
        }
        for w in &now {
            w.supervise().await;
        }
        last = now;
    }
}

/// One subscription's delivery state.
struct Delivery {
    id: String,
    caller: Caller,
    /// The subscription as last read, its key, and its URL parsed (once,
    /// not per request).
    sub: Option<Webhook>,
    signer: Option<Signer>,
    url: Option<reqwest::Url>,
    /// The last event acknowledged (or passed over: not its types).
    cursor: u64,
    /// What is journaled of it, and when.
    marked: u64,
    marked_at: Instant,
    /// The first failure of the event it is stuck on.
    failing_since: Option<Instant>,
}

impl Delivery {
    /// Reads the subscription again: `false` if it is gone. A replay
    /// (or the first read) starts again from what it says.
    async fn refresh(&mut self, w: &Webhooking) -> Result<bool, String> {
        let Some(now) = w
            .engine
            .webhook(&self.id)
            .await
            .map_err(|e| e.to_string())?
        else {
            return Ok(false);
        };
        let replayed = self.sub.as_ref().is_none_or(|s| s.replays != now.replays);
        if replayed {
            self.cursor = now.delivered;
            self.marked = now.delivered;
            self.failing_since = None;
            w.replayed(&self.id, now.delivered);
        }
        if self.sub.as_ref().is_none_or(|s| s.secret != now.secret) {
            self.signer = Signer::new(&now.secret);
        }
        if self.sub.as_ref().is_none_or(|s| s.url != now.url) {
            self.url = reqwest::Url::parse(&now.url).ok();
        }
        self.sub = Some(now);
        Ok(true)
    }

    /// Journals how far delivery got, if it moved and it is time (or
    /// `now`).
    async fn mark(&mut self, w: &Webhooking, now: bool) -> Result<(), String> {
        if self.cursor == self.marked || !(now || self.marked_at.elapsed() >= WEBHOOK_MARK_EVERY) {
            return Ok(());
        }
        let replays = self.sub.as_ref().map_or(0, |s| s.replays);
        let fact = WebhookFact::Delivered {
            through: self.cursor,
            replays,
        };
        w.engine
            .webhook_step(self.id.clone(), fact)
            .await
            .map_err(|e| e.to_string())?
            .ok();
        self.marked = self.cursor;
        self.marked_at = Instant::now();
        Ok(())
    }

    /// One round: a page of events sent (or waited for). `false` when the
    /// subscription is gone.
    async fn round(&mut self, w: &Webhooking) -> Result<bool, String> {
        if !self.refresh(w).await? {
            return Ok(false);
        }
        let Some(sub) = self.sub.clone() else {
            return Ok(false);
        };
        let filter = EventFilter {
            types: sub.types.clone(),
            location: None,
        };
        let read = w
            .engine
            .events(self.cursor, WEBHOOK_READ, filter, false)
            .await
            .map_err(|e| e.to_string())?;
        let page = match read {
            EventsRead::Page(p) => p,
            // Journaled subscriptions on a node now without events: the
            // task waits (the supervisor would start it again at once).
            EventsRead::Off => {
                tokio::time::sleep(Duration::from_secs(5)).await;
                return Ok(true);
            }
            EventsRead::CatchingUp => return Err("events catching up".into()),
        };
        if let Some(oldest) = page.gone {
            // Dropped before it could be sent ([events] retention or
            // events_max): said in the log and among its attempts, and on.
            let (from, to) = (self.cursor + 1, oldest - 1);
            tracing::error!(webhook = %self.id, from, to, "webhook: events dropped before delivery");
            let a = Attempt {
                event: to,
                at_ms: w.engine.clock().now_ms(),
                events: 0,
                status: None,
                error: Some(format!("events {from} to {to} were dropped ([events] retention) before they could be delivered")),
                latency_ms: 0,
                attempt: 1,
            };
            w.record(&self.id, a, to);
            self.cursor = to;
            return Ok(true);
        }
        for group in page.events.chunks(sub.batch.max(1) as usize) {
            if !self.send_until_acknowledged(w, &sub, group).await? {
                return Ok(true);
            }
            self.cursor = group.last().map_or(self.cursor, |(n, _)| *n);
            self.mark(w, false).await?;
        }
        let looked = page.through > self.cursor;
        self.cursor = self.cursor.max(page.through);
        self.mark(w, false).await?;
        if page.events.is_empty() && !looked {
            // Nothing new: wait for more (or a second, to mark and look
            // at the subscription again).
            tokio::select! {
                _ = w.engine.events_after(self.cursor) => {}
                _ = tokio::time::sleep(WEBHOOK_MARK_EVERY) => {}
            }
            self.mark(w, true).await?;
        }
        Ok(true)
    }

    /// Sends `group` (one event, or a batch of them) until the receiver
    /// acknowledges it: `false` if the subscription changed meanwhile
    /// (deleted, replayed).
    async fn send_until_acknowledged(
        &mut self,
        w: &Webhooking,
        sub: &Webhook,
        group: &[(u64, Arc<Read>)],
    ) -> Result<bool, String> {
        let (Some((first, _)), Some((n, _))) = (group.first(), group.last()) else {
            return Ok(true);
        };
        let n = *n;
        let body = message(sub.batch, group);
        // The same message for every attempt: a receiver deduplicates by
        // it (and, batched, by each event's id: a batch made again after
        // a restart may group otherwise).
        let msg_id = if *first == n {
            format!("evt_{n}")
        } else {
            format!("evt_{first}-{n}")
        };
        let mut backoff = Duration::from_secs(1);
        let mut attempt = 1u32;
        loop {
            let now_ms = w.engine.clock().now_ms();
            let timestamp = now_ms.div_euclid(1000);
            let signature = self
                .signer
                .as_ref()
                .ok_or_else(|| format!("webhook {}: its secret is not one", sub.id))?
                .sign(&msg_id, timestamp, &body);
            let url = self
                .url
                .clone()
                .ok_or_else(|| format!("webhook {}: its url is not one", sub.id))?;
            let t0 = Instant::now();
            let answer = self
                .caller
                .send(true, |c| {
                    c.post(url.clone())
                        .header("content-type", "application/json")
                        .header("user-agent", "holdfast-webhooks")
                        .header("webhook-id", &msg_id)
                        .header("webhook-timestamp", timestamp.to_string())
                        .header("webhook-signature", &signature)
                        .body(body.clone())
                })
                .await;
            let latency_ms = t0.elapsed().as_millis() as u64;
            let (status, error) = match &answer {
                Ok(a) => (Some(a.status), None),
                Err(e) => (e.status, Some(e.why.clone())),
            };
            let a = Attempt {
                event: n,
                events: group.len() as u32,
                at_ms: now_ms,
                status,
                error,
                latency_ms,
                attempt,
            };
            let ok = a.ok();
            w.record(&self.id, a, if ok { n } else { self.cursor });
            if ok {
                self.failing_since = None;
                return Ok(true);
            }
            let since = *self.failing_since.get_or_insert_with(Instant::now);
            let failing = self.sub.as_ref().is_some_and(|s| s.failing);
            if since.elapsed() >= WEBHOOK_FAILING_AFTER && !failing {
                let fact = WebhookFact::Failing { failing: true };
                w.engine
                    .webhook_step(self.id.clone(), fact)
                    .await
                    .map_err(|e| e.to_string())?
                    .ok();
                tracing::error!(webhook = %self.id, "webhook failing for 24 h: marked failing, still tried");
            }
            self.mark(w, true).await?;
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(WEBHOOK_BACKOFF_MAX);
            attempt = attempt.saturating_add(1);
            let before = self.sub.as_ref().map(|s| s.replays);
            if !self.refresh(w).await? || self.sub.as_ref().map(|s| s.replays) != before {
                return Ok(false);
            }
        }
    }
}

/// The body of a request carrying `group`: the event itself for a
/// subscription of one event a request, `{"events":[...]}` for one that
/// batches (however many the group has).
fn message(batch: u32, group: &[(u64, Arc<Read>)]) -> bytes::Bytes {
    if let ([(_, e)], 1) = (group, batch) {
        return bytes::Bytes::copy_from_slice(e.json().as_bytes());
    }
    let len: usize = group.iter().map(|(_, e)| e.json().len() + 1).sum();
    let mut b = String::with_capacity(len + 13);
    b.push_str(r#"{"events":["#);
    for (i, (_, e)) in group.iter().enumerate() {
        if i > 0 {
            b.push(',');
        }
        b.push_str(e.json());
    }
    b.push_str("]}");
    bytes::Bytes::from(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Standard Webhooks reference libraries' own test vector
    /// (standard-webhooks/standard-webhooks, libraries/python/tests,
    /// `test_sign_function`).
    #[test]
    fn signs_as_the_reference_library_does() {
        let sig = sign(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            r#"{"test": 2432232314}"#,
        );
        assert_eq!(
            sig.as_deref(),
            Some("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
        );
        assert_eq!(sign("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "m", 1, "{}"), None);
        assert_eq!(sign("whsec_", "m", 1, "{}"), None);
        assert_eq!(sign("whsec_!!", "m", 1, "{}"), None);
        let s = new_secret();
        assert_eq!(secret_key(&s).map(|k| k.len()), Some(24));
        assert_ne!(s, new_secret());
    }
}
