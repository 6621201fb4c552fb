//! The load models, latency recording and the progress bar.
//!
//! - Closed loop: C connections, each sends its next request as soon as the
//!   last one is answered: the peak a target sustains.
//! - Open loop: requests arrive at a fixed total rate R, spread over C
//!   connections (each at R / C, like wrk2); latency is measured from the
//!   intended send time, so a stalled target is charged for the requests it
//!   delayed (no coordinated omission).
//!
//! Requests started before the end are measured; after it each connection
//! only finishes the carts it holds (unmeasured), so the ledger is exact.

use hdrhistogram::Histogram;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::client::Conn;
use crate::workload::{Ledger, Op, Session, OPS};

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[serde(tag = "model", rename_all = "snake_case")]
pub enum Model {
    Closed,
    Open { rate_per_s: f64 },
}

pub struct Plan {
    pub base: String,
    pub token: Option<String>,
    pub connections: usize,
    pub duration: Duration,
    pub model: Model,
    pub timeout: Duration,
    pub progress: bool,
}

/// Latencies in microseconds, 1 us to 60 s, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

fn coarse_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 2).expect("valid histogram bounds")
}

/// Answers by class.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Counts {
    pub ok_2xx: u64,
    /// 409: a business answer (sold out, not held), not an error.
    pub conflict_409: u64,
    /// 503: the target refused under load (nothing done).
    pub unavailable_503: u64,
    pub other_4xx: u64,
    pub server_5xx: u64,
    /// No answer: connect error, broken connection or timeout.
    pub no_answer: u64,
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.ok_2xx += o.ok_2xx;
        self.conflict_409 += o.conflict_409;
        self.unavailable_503 += o.unavailable_503;
        self.other_4xx += o.other_4xx;
        self.server_5xx += o.server_5xx;
        self.no_answer += o.no_answer;
    }
    pub fn total(&self) -> u64 {
        self.ok_2xx
            + self.conflict_409
            + self.unavailable_503
            + self.other_4xx
            + self.server_5xx
            + self.no_answer
    }
}

/// One second of the run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Second {
    pub t_s: u32,
    pub requests: u64,
    pub p50_us: u64,
    pub p99_us: u64,
}

pub struct Driven {
    pub elapsed: Duration,
    pub per_op: Vec<(Op, Histogram<u64>)>,
    pub all: Histogram<u64>,
    pub counts: Counts,
    pub timeline: Vec<Second>,
    pub ledger: Ledger,
}

struct Shared {
    stop: AtomicBool,
    done: AtomicU64,
    /// Per second of the run, every request's latency.
    timeline: Mutex<Vec<Histogram<u64>>>,
}

struct WorkerOut {
    per_op: Vec<Histogram<u64>>,
    counts: Counts,
    ledger: Ledger,
}

pub async fn drive(plan: &Plan, sessions: Vec<Session>) -> Result<Driven, String> {
    let secs = plan.duration.as_secs() as usize + 2;
    let shared = Arc::new(Shared {
        stop: AtomicBool::new(false),
        done: AtomicU64::new(0),
        timeline: Mutex::new((0..secs).map(|_| coarse_histogram()).collect()),
    });
    let c = sessions.len();
    let start = Instant::now() + Duration::from_millis(20);
    let mut handles = Vec::with_capacity(c);
    for (k, session) in sessions.into_iter().enumerate() {
        let conn = Conn::new(&plan.base, plan.token.clone(), plan.timeout)?;
        // Open loop: connection k sends at R / C, offset so that the
        // connections interleave evenly.
        let schedule = match plan.model {
            Model::Closed => None,
            Model::Open { rate_per_s } => {
                let period = Duration::from_secs_f64(c as f64 / rate_per_s.max(0.001));
                Some((start + period.mul_f64(k as f64 / c as f64), period))
            }
        };
        handles.push(tokio::spawn(worker(
            conn,
            session,
            schedule,
            start,
            shared.clone(),
        )));
    }
    let bar = progress_bar(plan);
    let deadline = start + plan.duration;
    loop {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        tokio::time::sleep((deadline - now).min(Duration::from_millis(250))).await;
        if let Some(b) = &bar {
            let el = start.elapsed().as_secs_f64().max(0.001);
            let done = shared.done.load(Ordering::Relaxed);
            b.set_position(start.elapsed().as_millis() as u64);
            b.set_message(format!("{done} requests, {:.0} req/s", done as f64 / el));
        }
    }
    shared.stop.store(true, Ordering::Relaxed);
    let elapsed = start.elapsed();
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let mut per_op: Vec<Histogram<u64>> = OPS.iter().map(|_| histogram()).collect();
    let mut counts = Counts::default();
    let mut ledger = Ledger::default();
    for h in handles {
        let out = h.await.map_err(|e| format!("a load worker failed: {e}"))?;
        for (a, b) in per_op.iter_mut().zip(&out.per_op) {
            a.add(b).map_err(|e| e.to_string())?;
        }
        counts.add(&out.counts);
        ledger.merge(out.ledger);
    }
    let mut all = histogram();
    for h in &per_op {
        all.add(h).map_err(|e| e.to_string())?;
    }
    let timeline = shared
        .timeline
        .lock()
        .iter()
        .enumerate()
        .take(plan.duration.as_secs() as usize)
        .map(|(i, h)| Second {
            t_s: i as u32 + 1,
            requests: h.len(),
            p50_us: h.value_at_quantile(0.5),
            p99_us: h.value_at_quantile(0.99),
        })
        .collect();
    Ok(Driven {
        elapsed: elapsed.min(plan.duration),
        per_op: OPS.iter().copied().zip(per_op).collect(),
        all,
        counts,
        timeline,
        ledger,
    })
}

fn progress_bar(plan: &Plan) -> Option<indicatif::ProgressBar> {
    if !plan.progress {
        return None;
    }
    let b = indicatif::ProgressBar::new(plan.duration.as_millis() as u64);
    b.set_style(
        indicatif::ProgressStyle::with_template("  [{bar:30}] {elapsed_precise} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    Some(b)
}

async fn worker(
    mut conn: Conn,
    mut session: Session,
    schedule: Option<(Instant, Duration)>,
    start: Instant,
    shared: Arc<Shared>,
) -> WorkerOut {
    let mut per_op: Vec<Histogram<u64>> = OPS.iter().map(|_| histogram()).collect();
    let mut counts = Counts::default();
    let mut sec_hist = coarse_histogram();
    let mut sec_index = 0usize;
    let mut next_at = schedule.map(|(first, _)| first);
    tokio::time::sleep_until(start.into()).await;
    loop {
        let stopping = shared.stop.load(Ordering::Relaxed);
        let Some(req) = session.next(stopping) else {
            break;
        };
        // When the request was meant to go: its latency starts there.
        let intended = match (next_at, stopping) {
            (Some(at), false) => {
                tokio::time::sleep_until(at.into()).await;
                if let (Some(n), Some((_, period))) = (next_at.as_mut(), schedule) {
                    *n += period;
                }
                at
            }
            _ => Instant::now(),
        };
        let measured = !stopping && !shared.stop.load(Ordering::Relaxed);
        let result = conn
            .call(req.method.clone(), &req.path, req.body.clone())
            .await;
        if measured {
            let us = intended.elapsed().as_micros().max(1) as u64;
            let _ = per_op[req.op.index()].record(us.min(60_000_000));
            match &result {
                Ok((s, _)) if (200..300).contains(s) => counts.ok_2xx += 1,
                Ok((409, _)) => counts.conflict_409 += 1,
                Ok((503, _)) => counts.unavailable_503 += 1,
                Ok((s, _)) if *s < 500 => counts.other_4xx += 1,
                Ok(_) => counts.server_5xx += 1,
                Err(_) => counts.no_answer += 1,
            }
            shared.done.fetch_add(1, Ordering::Relaxed);
            let i = (intended.saturating_duration_since(start).as_secs()) as usize;
            if i != sec_index {
                flush_second(&shared, sec_index, &mut sec_hist);
                sec_index = i;
            }
            let _ = sec_hist.record(us.min(60_000_000));
        }
        session.answer(req, &result);
    }
    flush_second(&shared, sec_index, &mut sec_hist);
    WorkerOut {
        per_op,
        counts,
        ledger: session.ledger,
    }
}

fn flush_second(shared: &Shared, i: usize, h: &mut Histogram<u64>) {
    if h.is_empty() {
        return;
    }
    if let Some(slot) = shared.timeline.lock().get_mut(i) {
        let _ = slot.add(&*h);
    }
    h.reset();
}
