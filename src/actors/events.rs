//! Reads of the published events (api.md, Events). The snapshotter's
//! copy derives and writes them (`persistence::events`); every node keeps
//! its own store, numbered alike, so any node answers.

use std::sync::atomic::Ordering;

use super::{Engine, EngineError};
use crate::domain::published::Kind;
use crate::limits::{EVENTS_SCAN_MAX, EVENTS_WAIT};
use crate::persistence::events::{Page, Stored};

/// Which events a reader is shown.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Type patterns (`stock.*`, `order.placed`, `*`); none: every type.
    pub types: Vec<String>,
    /// Only events concerning this location (a store token's own).
    pub location: Option<String>,
}

impl EventFilter {
    pub fn keeps(&self, e: &Stored) -> bool {
        let typed = self.types.is_empty()
            || e.kind()
                .is_some_and(|k| self.types.iter().any(|p| k.matches(p)));
        typed
            && self
                .location
                .as_ref()
                .is_none_or(|l| e.locations.iter().any(|x| x == l))
    }

    /// Whether `pattern` names at least one type.
    pub fn known(pattern: &str) -> bool {
        Kind::is_pattern(pattern)
    }
}

/// What a read of the events found.
pub enum EventsRead {
    Page(Page),
    /// The store has not caught up with what was durable when asked
    /// within `EVENTS_WAIT` (a restart's catch-up on a long journal).
    CatchingUp,
    /// No events here: snapshots are off (they are kept beside them).
    Off,
}

impl Engine {
    /// Up to `limit` events after `after` that `filter` keeps. With
    /// `own_writes`, once the store holds the events of every record
    /// durable when asked (a client reads what it did); without, what is
    /// written now (a stream that waits for more by itself).
    pub async fn events(
        &self,
        after: u64,
        limit: usize,
        filter: EventFilter,
        own_writes: bool,
    ) -> Result<EventsRead, EngineError> {
        let Some(store) = self.snapshots() else {
            return Ok(EventsRead::Off);
        };
        if own_writes && !self.events_caught_up().await {
            return Ok(EventsRead::CatchingUp);
        }
        let events = store.events().clone();
        let page = tokio::task::spawn_blocking(move || {
            events.page(after, limit, EVENTS_SCAN_MAX, |e| filter.keeps(e))
        })
        .await
        .map_err(|_| EngineError::Stopped)??;
        Ok(EventsRead::Page(page))
    }

    /// Waits (up to `EVENTS_WAIT`) until the store holds the events of
    /// every record settled when asked: `false` if it did not.
    async fn events_caught_up(&self) -> bool {
        let stats = &self.journal().stats;
        let wanted = stats.settled_seq();
        let deadline = std::time::Instant::now() + EVENTS_WAIT;
        while stats.events_seq.load(Ordering::Acquire) < wanted {
            if std::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        true
    }

    /// The newest event's number once the store holds the events of what
    /// was settled when asked (a subscription made now hears what comes
    /// after it): `None` without events, or while they catch up.
    pub async fn latest_event(&self) -> Option<u64> {
        self.snapshots()?;
        self.events_caught_up()
            .await
            .then(|| self.journal().stats.events_last.load(Ordering::Acquire))
    }

    /// Resolves when the newest event's number may have moved past
    /// `last` (at once if it has).
    pub async fn events_after(&self, last: u64) {
        let stats = &self.journal().stats;
        let notified = stats.events_written.notified();
        if stats.events_last.load(Ordering::Acquire) > last {
            return;
        }
        notified.await
    }

    /// Whether the engine is stopping (a stream of its events ends).
    pub fn stopping(&self) -> bool {
        self.0.stop_snapshots.load(Ordering::Relaxed)
    }

    /// The newest event's number written (what the snapshotter said last).
    pub fn latest_written(&self) -> u64 {
        self.journal().stats.events_last.load(Ordering::Acquire)
    }

    /// The newest event's number written, and the oldest kept.
    pub fn events_marks(&self) -> Option<(u64, u64)> {
        let store = self.snapshots()?;
        Some((self.latest_written(), store.events().oldest().ok()?))
    }
}
