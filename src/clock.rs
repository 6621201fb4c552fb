//! The only place that reads the wall clock. The domain gets time as a value.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use crate::domain::TimeMs;

pub trait Clock: Send + Sync + 'static {
    fn now_ms(&self) -> TimeMs;
}

/// The system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> TimeMs {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as TimeMs)
            .unwrap_or(0)
    }
}

/// A clock that tests move by hand.
#[derive(Debug, Default, Clone)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    pub fn new(start_ms: TimeMs) -> Self {
        Self(Arc::new(AtomicI64::new(start_ms)))
    }
    pub fn advance_ms(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> TimeMs {
        self.0.load(Ordering::SeqCst)
    }
}

/// An RFC 3339 date-time (any offset) as milliseconds since the epoch.
pub fn parse_rfc3339(s: &str) -> Option<TimeMs> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

/// RFC 3339 in UTC with milliseconds (pure: it lives beside `TimeMs`).
pub use crate::domain::rfc3339;
