//! How the adapters call a provider over HTTP: each call bounded by a
//! timeout, retried with backoff while the provider may recover (a
//! timeout, a refused connection, 429, 5xx; every call carries its
//! idempotency key, so a retry never charges twice), and a circuit that
//! opens after `trip` failures in a row: while open, calls fail at once
//! with `Unavailable` (the order waits, nothing is sent) until `open_for`
//! has passed; calls try again then, and one more failure opens it again
//! at once.

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use super::PaymentError;

/// The timing of a provider's calls (`[payments.*]` of holdfast.toml).
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

/// A provider's answer: its status and body.
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
    /// For the logs and errors: the provider's name.
    name: &'static str,
    client: reqwest::Client,
    policy: Policy,
    circuit: Mutex<Circuit>,
}

impl Caller {
    pub fn new(name: &'static str, policy: Policy) -> Result<Caller, String> {
        let client = reqwest::Client::builder()
            .timeout(policy.timeout)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Caller {
            name,
            client,
            policy,
            circuit: Mutex::default(),
        })
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Sends what `request` builds (built again for each attempt) until
    /// the provider gives an answer that retrying cannot change: any
    /// status but 429 and 5xx. Those, timeouts and unreachable providers
    /// are retried `retries` times, then `Unavailable`.
    pub async fn send(
        &self,
        request: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<Answer, PaymentError> {
        if let Some(until) = self.circuit.lock().open_until {
            if Instant::now() < until {
                return Err(PaymentError::Unavailable(format!(
                    "{}: not called for {} ms more (it failed {} times in a row)",
                    self.name,
                    until.saturating_duration_since(Instant::now()).as_millis(),
                    self.policy.trip
                )));
            }
        }
        let mut backoff = self.policy.backoff;
        let mut attempt = 0;
        loop {
            let why = match request(&self.client).send().await {
                Ok(r) => {
                    let status = r.status().as_u16();
                    match r.bytes().await {
                        Ok(body) if status != 429 && status < 500 => {
                            self.succeeded();
                            return Ok(Answer { status, body });
                        }
                        Ok(body) => format!(
                            "{status}: {}",
                            String::from_utf8_lossy(&body[..body.len().min(200)])
                        ),
                        Err(e) => e.to_string(),
                    }
                }
                Err(e) => e.to_string(),
            };
            tracing::warn!(provider = self.name, attempt, error = %why, "payment provider call failed");
            if attempt >= self.policy.retries {
                self.failed();
                return Err(PaymentError::Unavailable(format!("{}: {why}", self.name)));
            }
            attempt += 1;
            tokio::time::sleep(backoff).await;
            backoff *= 2;
        }
    }

    fn succeeded(&self) {
        *self.circuit.lock() = Circuit::default();
    }

    fn failed(&self) {
        let mut c = self.circuit.lock();
        c.failures += 1;
        // Open before (half open now): one failure is enough.
        if c.open_until.is_some() || c.failures >= self.policy.trip {
            tracing::error!(
                provider = self.name,
                open_for_ms = self.policy.open_for.as_millis() as u64,
                "payment provider circuit open"
            );
            c.open_until = Some(Instant::now() + self.policy.open_for);
            c.failures = 0;
        }
    }
}
