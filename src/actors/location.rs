//! `LocationActor`: one per store or warehouse, holding its live state:
//! the orders it has taken today against its `daily_capacity`, and the pay
//! and collect orders waiting at its counter. A store's pause, its pick
//! queue and its rejections belong here too.
//!
//! The order books tell it what their orders do (`TakeOrders`, `Pickup`);
//! it alone writes its state. The planner reads which locations are full
//! from `FullBoard`, which only location actors write: a plan must not wait
//! on a message per location.

use actix::prelude::*;
use ahash::AHashMap;
use parking_lot::RwLock;
use std::collections::BTreeSet;
use std::sync::Arc;
use tokio::sync::oneshot;

use crate::domain::catalog::Catalog;
use crate::domain::ids::LocationId;
use crate::domain::order::Order;
use crate::domain::TimeMs;
use crate::limits::MAILBOX_CAPACITY;

/// The locations at their daily capacity, with the day (since the epoch,
/// UTC) they reached it. Written by the location actors only.
#[derive(Default)]
pub struct FullBoard(RwLock<AHashMap<LocationId, i64>>);

impl FullBoard {
    /// The locations full on `day`.
    pub fn full_on(&self, day: i64) -> Vec<LocationId> {
        self.0
            .read()
            .iter()
            .filter(|(_, d)| **d == day)
            .map(|(l, _)| l.clone())
            .collect()
    }
}

/// What a location actor starts from: recovered, or nothing.
#[derive(Default)]
pub struct LocationStart {
    /// (day since the epoch, UTC; orders taken that day)
    pub today: (i64, u32),
    /// Open pickups: (placed at, order id).
    pub pickups: BTreeSet<(TimeMs, String)>,
}

impl LocationStart {
    /// The state recovered orders leave at each location: today's counts
    /// and open pickups.
    pub fn of_orders<'a>(
        orders: impl Iterator<Item = &'a Order>,
    ) -> AHashMap<LocationId, LocationStart> {
        let mut at: AHashMap<LocationId, LocationStart> = AHashMap::new();
        for o in orders {
            if o.takes_capacity() {
                for l in o.capacity_locations() {
                    at.entry(l).or_default().take(o.created_ms, 1);
                }
            }
            if let Some(l) = o.open_pickup() {
                let p = (o.created_ms, o.id.clone());
                at.entry(l.clone()).or_default().pickups.insert(p);
            }
        }
        at
    }

    /// Adds `delta` orders of the day of `at_ms`: a newer day starts from
    /// zero, an older one no longer matters.
    fn take(&mut self, at_ms: TimeMs, delta: i32) {
        let day = crate::domain::rotation::day_of(at_ms);
        if day > self.today.0 {
            self.today = (day, 0);
        }
        if day == self.today.0 {
            self.today.1 = self.today.1.saturating_add_signed(delta);
        }
    }
}

pub struct LocationActor {
    id: LocationId,
    state: LocationStart,
    catalog: Arc<RwLock<Catalog>>,
    full: Arc<FullBoard>,
}

impl LocationActor {
    /// Its capacity is read from the catalog at each decision, so a
    /// location written while a count is in flight is never judged by a
    /// stale figure.
    fn capacity(&self) -> Option<u32> {
        self.catalog
            .read()
            .location_by_id(self.id.as_str())
            .and_then(|l| l.daily_capacity)
    }

    /// Publishes whether the location is full on the day it counts.
    fn recheck(&self) {
        let (day, n) = self.state.today;
        let full = self.capacity().is_some_and(|c| n >= c);
        let mut board = self.full.0.write();
        if full {
            board.insert(self.id.clone(), day);
        } else {
            board.remove(&self.id);
        }
    }
}

impl Actor for LocationActor {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
    }
}

/// The location actors, one per location, started on first use on the
/// engine's arbiters. The registry's lock is never held with the
/// catalog's in the other order: starting one reads nothing.
pub struct Locations {
    actors: RwLock<AHashMap<LocationId, Addr<LocationActor>>>,
    arbiters: Vec<ArbiterHandle>,
    catalog: Arc<RwLock<Catalog>>,
    full: Arc<FullBoard>,
}

impl Locations {
    /// Starts the actors of the locations with recovered state; the board
    /// is marked before the first plan reads it.
    pub fn start(
        recovered: AHashMap<LocationId, LocationStart>,
        arbiters: Vec<ArbiterHandle>,
        catalog: Arc<RwLock<Catalog>>,
    ) -> Self {
        let locations = Locations {
            actors: RwLock::new(AHashMap::new()),
            arbiters,
            catalog,
            full: Arc::new(FullBoard::default()),
        };
        for (id, state) in recovered {
            let actor = locations.actor(id.clone(), state);
            actor.recheck();
            locations.spawn(id, actor);
        }
        locations
    }

    fn actor(&self, id: LocationId, state: LocationStart) -> LocationActor {
        LocationActor {
            id,
            state,
            catalog: self.catalog.clone(),
            full: self.full.clone(),
        }
    }

    fn spawn(&self, id: LocationId, actor: LocationActor) -> Addr<LocationActor> {
        let i = crate::domain::hash::fnv1a64(id.as_str().as_bytes()) as usize % self.arbiters.len();
        let mut actors = self.actors.write();
        actors
            .entry(id)
            .or_insert_with(|| LocationActor::start_in_arbiter(&self.arbiters[i], |_| actor))
            .clone()
    }

    /// `id`'s actor, started if it has none yet.
    pub fn of(&self, id: &LocationId) -> Addr<LocationActor> {
        if let Some(a) = self.actors.read().get(id) {
            return a.clone();
        }
        let actor = self.actor(id.clone(), LocationStart::default());
        self.spawn(id.clone(), actor)
    }

    /// `id`'s actor if it has one (a location without one holds nothing).
    pub fn existing(&self, id: &LocationId) -> Option<Addr<LocationActor>> {
        self.actors.read().get(id).cloned()
    }

    pub fn board(&self) -> &FullBoard {
        &self.full
    }
}

/// `delta` orders (+1 placed, -1 cancelled) of the day of `at_ms` taken at
/// this location.
#[derive(Message)]
#[rtype(result = "()")]
pub struct TakeOrders {
    pub at_ms: TimeMs,
    pub delta: i32,
}

impl Handler<TakeOrders> for LocationActor {
    type Result = ();
    fn handle(&mut self, m: TakeOrders, _: &mut Context<Self>) {
        self.state.take(m.at_ms, m.delta);
        self.recheck();
    }
}

/// The location was written: its capacity may have changed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Recheck;

impl Handler<Recheck> for LocationActor {
    type Result = ();
    fn handle(&mut self, _: Recheck, _: &mut Context<Self>) {
        self.recheck();
    }
}

/// A pay and collect order opened (placed) or closed (collected,
/// cancelled, returned) at this location's counter.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Pickup {
    pub order: String,
    pub placed_ms: TimeMs,
    pub open: bool,
}

impl Handler<Pickup> for LocationActor {
    type Result = ();
    fn handle(&mut self, m: Pickup, _: &mut Context<Self>) {
        let key = (m.placed_ms, m.order);
        if m.open {
            self.state.pickups.insert(key);
        } else {
            self.state.pickups.remove(&key);
        }
    }
}

/// The live state: today's count and the first `pickups` open pickups,
/// oldest first. Answered after every message sent before it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct LiveState {
    pub pickups: usize,
    pub reply: oneshot::Sender<LiveView>,
}

/// What `LiveState` answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveView {
    /// (day since the epoch, UTC; orders taken that day)
    pub today: (i64, u32),
    pub open_pickups: usize,
    /// Order ids, oldest first.
    pub pickups: Vec<String>,
}

impl Handler<LiveState> for LocationActor {
    type Result = ();
    fn handle(&mut self, m: LiveState, _: &mut Context<Self>) {
        let s = &self.state;
        let _ = m.reply.send(LiveView {
            today: s.today,
            open_pickups: s.pickups.len(),
            pickups: s
                .pickups
                .iter()
                .take(m.pickups)
                .map(|p| p.1.clone())
                .collect(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY_MS: TimeMs = 86_400_000;

    #[test]
    fn a_day_counts_from_zero_and_an_older_day_changes_nothing() {
        let mut s = LocationStart::default();
        s.take(3 * DAY_MS + 5, 1);
        s.take(3 * DAY_MS + 9, 1);
        assert_eq!(s.today, (3, 2));
        s.take(2 * DAY_MS, -1);
        assert_eq!(s.today, (3, 2), "yesterday's cancel is not today's");
        s.take(4 * DAY_MS, 1);
        assert_eq!(s.today, (4, 1));
        s.take(4 * DAY_MS, -2);
        assert_eq!(s.today, (4, 0), "never below zero");
    }
}
