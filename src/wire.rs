//! How the adapters call a payment provider or a carrier over HTTP: each
//! call bounded by a timeout, retried with backoff while the other side
//! may recover, and a circuit that opens after `trip` failures in a row:
//! while open, calls fail at once (the order waits, nothing is sent)
//! until `open_for` has passed; calls try again then, and one more
//! failure opens it again at once.
//!
//! What is retried depends on whether the call is idempotent. One that
//! carries an idempotency key (every payment call) is retried after a
//! timeout, a refused connection, 429 and any 5xx: a retry never charges
//! twice. One that is not (a carrier's new shipment: FedEx takes no key)
//! is retried only when it surely did nothing: a connection that never
//! opened, 429, 503; after a timeout or another 5xx it may have been done,
//! and the caller is told so instead.

use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// A call that got no answer retrying could not change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallError {
    pub why: String,
    /// The call was not idempotent and its last attempt may have been
    /// done (a timeout, a 5xx other than 503): sending it again could do
    /// it twice. Never set for idempotent calls, which may be sent again.
    pub maybe_done: bool,
    /// The other side's last status, when it answered (429, a 5xx).
    pub status: Option<u16>,
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.why)
    }
}

/// An error with the causes under it (reqwest's own text is "error
/// sending request": the refused connection, the TLS alert, the timeout
/// are below).
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// An answer's body, its first `max` bytes at most.
async fn read_at_most(
    mut r: reqwest::Response,
    max: usize,
) -> Result<bytes::Bytes, reqwest::Error> {
    if max == usize::MAX {
        return r.bytes().await;
    }
    let mut out = bytes::BytesMut::new();
    while out.len() < max {
        match r.chunk().await? {
            Some(c) => out.extend_from_slice(&c[..c.len().min(max - out.len())]),
            None => break,
        }
    }
    Ok(out.freeze())
}

/// What a caller did, for `/metrics`.
#[derive(Debug, Default)]
pub struct CallStats {
    /// Calls that got an answer (any status but 429 and 5xx).
    pub answered: AtomicU64,
    /// Calls that failed after their retries.
    pub failed: AtomicU64,
    /// Calls refused at once by the open circuit.
    pub short_circuited: AtomicU64,
    pub open: AtomicBool,
}

/// Every caller of the process, by the name of what it calls.
type Registry = Mutex<Vec<(&'static str, Arc<CallStats>)>>;

fn registry() -> &'static Registry {
    static R: OnceLock<Registry> = OnceLock::new();
    R.get_or_init(Mutex::default)
}

/// The outbound calls' lines of `/metrics`.
pub fn render_metrics(s: &mut String) {
    use std::fmt::Write;
    let r = registry().lock();
    if r.is_empty() {
        return;
    }
    let _ = writeln!(s, "# HELP holdfast_outbound_calls_total Calls to payment providers and carriers, by outcome.\n# TYPE holdfast_outbound_calls_total counter");
    for (to, st) in r.iter() {
        for (outcome, v) in [
            ("answered", &st.answered),
            ("failed", &st.failed),
            ("short_circuited", &st.short_circuited),
        ] {
            let _ = writeln!(
                s,
                "holdfast_outbound_calls_total{{to=\"{to}\",outcome=\"{outcome}\"}} {}",
                v.load(Ordering::Relaxed)
            );
        }
    }
    let _ = writeln!(s, "# HELP holdfast_outbound_circuit_open 1 from its circuit opening until a call succeeds again.\n# TYPE holdfast_outbound_circuit_open gauge");
    for (to, st) in r.iter() {
        let _ = writeln!(
            s,
            "holdfast_outbound_circuit_open{{to=\"{to}\"}} {}",
            u8::from(st.open.load(Ordering::Relaxed))
        );
    }
}

/// The timing of a provider's calls (`calls` of a provider's or a
/// carrier's section of holdfast.toml).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// One attempt's limit.
    pub timeout: Duration,
    /// Attempts after the first.
    pub retries: u32,
    /// The first wait between attempts; doubled each time.
    pub backoff: Duration,
    /// Failures in a row that open the circuit.
    pub trip: u32,
    pub open_for: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            timeout: Duration::from_secs(10),
            retries: 2,
            backoff: Duration::from_millis(200),
            trip: 5,
            open_for: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Default)]
struct Circuit {
    failures: u32,
    open_until: Option<Instant>,
}

/// The other side's answer: its status and body.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: bytes::Bytes,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

pub struct Caller {
    /// For the logs, errors and metrics: what it calls.
    name: &'static str,
    client: reqwest::Client,
    policy: Policy,
    circuit: Mutex<Circuit>,
    stats: Arc<CallStats>,
    /// An answer's bytes read at most (the rest is not read).
    reply_max: usize,
}

impl Caller {
    pub fn new(name: &'static str, policy: Policy) -> Result<Caller, String> {
        let client = reqwest::Client::builder().timeout(policy.timeout);
        let c = Caller::with(name, policy, client, usize::MAX)?;
        registry().lock().push((name, c.stats.clone()));
        Ok(c)
    }

    /// A caller to a receiver someone named (a webhook subscription's),
    /// whose calls its owner shows on `/metrics` itself (`stats`). It
    /// follows no redirect (a 3xx is the answer: a signed body never goes
    /// where it was not sent) and reads at most `reply_max` bytes of an
    /// answer.
    pub fn to_receiver(
        name: &'static str,
        policy: Policy,
        reply_max: usize,
    ) -> Result<Caller, String> {
        let client = reqwest::Client::builder()
            .timeout(policy.timeout)
            .redirect(reqwest::redirect::Policy::none());
        Caller::with(name, policy, client, reply_max)
    }

    fn with(
        name: &'static str,
        policy: Policy,
        client: reqwest::ClientBuilder,
        reply_max: usize,
    ) -> Result<Caller, String> {
        Ok(Caller {
            name,
            client: client.build().map_err(|e| e.to_string())?,
            policy,
            circuit: Mutex::default(),
            stats: Arc::new(CallStats::default()),
            reply_max,
        })
    }

    /// Sends what `request` builds (built again for each attempt) until
    /// the other side gives an answer that retrying cannot change: any
    /// status but 429 and 5xx. Those, timeouts and unreachable hosts are
    /// retried `retries` times (only those that surely did nothing when
    /// the call is not `idempotent`), then the reason is the error.
    pub async fn send(
        &self,
        idempotent: bool,
        request: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<Answer, CallError> {
        if let Some(until) = self.circuit.lock().open_until {
            if Instant::now() < until {
                self.stats.short_circuited.fetch_add(1, Ordering::Relaxed);
                return Err(CallError {
                    why: format!(
                        "{}: not called for {} ms more (it failed {} times in a row)",
                        self.name,
                        until.saturating_duration_since(Instant::now()).as_millis(),
                        self.policy.trip
                    ),
                    maybe_done: false,
                    status: None,
                });
            }
        }
        let mut backoff = self.policy.backoff;
        let mut attempt = 0;
        loop {
            // Whether this attempt surely did nothing.
            let mut answered = None;
            let (why, nothing_done) = match request(&self.client).send().await {
                Ok(r) => {
                    let status = r.status().as_u16();
                    answered = Some(status);
                    match read_at_most(r, self.reply_max).await {
                        Ok(body) if status != 429 && status < 500 => {
                            self.succeeded();
                            return Ok(Answer { status, body });
                        }
                        Ok(body) => (
                            format!(
                                "{status}: {}",
                                String::from_utf8_lossy(&body[..body.len().min(200)])
                            ),
                            status == 429 || status == 503,
                        ),
                        Err(e) => (with_causes(&e), false),
                    }
                }
                Err(e) => (with_causes(&e), e.is_connect()),
            };
            tracing::warn!(to = self.name, attempt, error = %why, "outbound call failed");
            if attempt >= self.policy.retries || !(idempotent || nothing_done) {
                self.failed();
                let maybe_done = !(idempotent || nothing_done);
                let done = if maybe_done {
                    " (it may have been done)"
                } else {
                    ""
                };
                return Err(CallError {
                    why: format!("{}: {why}{done}", self.name),
                    maybe_done,
                    status: answered,
                });
            }
            attempt += 1;
            tokio::time::sleep(backoff).await;
            backoff *= 2;
        }
    }

    pub fn stats(&self) -> &CallStats {
        &self.stats
    }

    fn succeeded(&self) {
        *self.circuit.lock() = Circuit::default();
        self.stats.answered.fetch_add(1, Ordering::Relaxed);
        self.stats.open.store(false, Ordering::Relaxed);
    }

    fn failed(&self) {
        self.stats.failed.fetch_add(1, Ordering::Relaxed);
        let mut c = self.circuit.lock();
        c.failures += 1;
        // Open before (half open now): one failure is enough.
        if c.open_until.is_some() || c.failures >= self.policy.trip {
            tracing::error!(
                to = self.name,
                open_for_ms = self.policy.open_for.as_millis() as u64,
                "circuit open: calls refused"
            );
            c.open_until = Some(Instant::now() + self.policy.open_for);
            c.failures = 0;
            self.stats.open.store(true, Ordering::Relaxed);
        }
    }
}
